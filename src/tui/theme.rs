//! Themes name colours by meaning (ok, warn, breach, stat, …), never by widget.
//! Built-in themes come from `themes/*.toml`; users add their own to the config
//! directory's `themes/`. Colour only ever adds to what the text already says.

use std::path::Path;

use ratatui::style::{Color, Modifier, Style};
use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum ThemeError {
    #[error("theme {name:?} not found (built-in: {builtin}; or put {name}.toml in {dir})")]
    NotFound { name: String, builtin: String, dir: String },
    #[error("theme file {path}: {message}")]
    Invalid { path: String, message: String },
}

pub const BUILTIN: &[(&str, &str)] = &[
    ("dark", include_str!("../../themes/dark.toml")),
    ("light", include_str!("../../themes/light.toml")),
    ("high-contrast", include_str!("../../themes/high-contrast.toml")),
    ("deuteranopia", include_str!("../../themes/deuteranopia.toml")),
    ("tritanopia", include_str!("../../themes/tritanopia.toml")),
];

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ThemeFile {
    name: String,
    ok: String,
    warn: String,
    breach: String,
    stat: String,
    urgent: String,
    routine: String,
    muted: String,
    accent: String,
    text: String,
    background: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Theme {
    pub name: String,
    pub ok: Color,
    pub warn: Color,
    pub breach: Color,
    pub stat: Color,
    pub urgent: Color,
    pub routine: Color,
    pub muted: Color,
    pub accent: Color,
    pub text: Color,
    pub background: Color,
}

fn color(field: &str, s: &str, path: &str) -> Result<Color, ThemeError> {
    s.parse::<Color>().map_err(|_| ThemeError::Invalid {
        path: path.into(),
        message: format!("{field} = {s:?} is not a colour (use \"#rrggbb\" or a name)"),
    })
}

impl Theme {
    pub fn parse(text: &str, path: &str) -> Result<Theme, ThemeError> {
        let f: ThemeFile = toml::from_str(text).map_err(|e| ThemeError::Invalid { path: path.into(), message: e.to_string() })?;
        Ok(Theme {
            ok: color("ok", &f.ok, path)?,
            warn: color("warn", &f.warn, path)?,
            breach: color("breach", &f.breach, path)?,
            stat: color("stat", &f.stat, path)?,
            urgent: color("urgent", &f.urgent, path)?,
            routine: color("routine", &f.routine, path)?,
            muted: color("muted", &f.muted, path)?,
            accent: color("accent", &f.accent, path)?,
            text: color("text", &f.text, path)?,
            background: color("background", &f.background, path)?,
            name: f.name,
        })
    }

    /// A theme by name: a file in `user_dir` first, then the built-ins.
    pub fn load(name: &str, user_dir: Option<&Path>) -> Result<Theme, ThemeError> {
        if let Some(dir) = user_dir {
            let p = dir.join(format!("{name}.toml"));
            if let Ok(text) = std::fs::read_to_string(&p) {
                return Theme::parse(&text, &p.display().to_string());
            }
        }
        match BUILTIN.iter().find(|(n, _)| *n == name) {
            Some((n, text)) => Theme::parse(text, &format!("themes/{n}.toml")),
            None => Err(ThemeError::NotFound {
                name: name.into(),
                builtin: BUILTIN.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", "),
                dir: user_dir.map(|d| d.display().to_string()).unwrap_or_else(|| "the config directory's themes/".into()),
            }),
        }
    }

    pub fn dark() -> Theme {
        Theme::load("dark", None).unwrap_or(Theme {
            name: "fallback".into(),
            ok: Color::Green,
            warn: Color::Yellow,
            breach: Color::Red,
            stat: Color::Magenta,
            urgent: Color::LightRed,
            routine: Color::Gray,
            muted: Color::DarkGray,
            accent: Color::Cyan,
            text: Color::White,
            background: Color::Black,
        })
    }

    pub fn with_accent(mut self, accent: Option<&str>) -> Result<Theme, ThemeError> {
        if let Some(a) = accent {
            self.accent = color("accent", a, "config")?;
        }
        Ok(self)
    }

    pub fn text(&self) -> Style {
        Style::default().fg(self.text)
    }
    pub fn muted(&self) -> Style {
        Style::default().fg(self.muted)
    }
    pub fn accent(&self) -> Style {
        Style::default().fg(self.accent).add_modifier(Modifier::BOLD)
    }
    pub fn ok(&self) -> Style {
        Style::default().fg(self.ok)
    }
    pub fn warn(&self) -> Style {
        Style::default().fg(self.warn)
    }
    pub fn breach(&self) -> Style {
        Style::default().fg(self.breach).add_modifier(Modifier::BOLD)
    }
    pub fn selected(&self) -> Style {
        Style::default().add_modifier(Modifier::REVERSED)
    }
    pub fn priority(&self, p: &str) -> Style {
        match p {
            "STAT" => Style::default().fg(self.stat).add_modifier(Modifier::BOLD),
            "URGENT" => Style::default().fg(self.urgent),
            _ => Style::default().fg(self.routine),
        }
    }
    pub fn status(&self, s: &str) -> Style {
        match s {
            "SUCCEEDED" => self.ok(),
            "RUNNING" => self.text(),
            "FAILED" | "TIMED_OUT" => self.breach(),
            "ABORTED" => self.warn(),
            _ => self.muted(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_theme_parses_and_names_itself() {
        for (name, _) in BUILTIN {
            let t = Theme::load(name, None).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(&t.name, name);
            assert_ne!(t.ok, t.breach, "{name}: ok and breach must differ");
        }
    }

    #[test]
    fn bad_theme_files_name_the_problem() {
        let e = Theme::parse("name = \"x\"\nok = \"nope\"", "t.toml").err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("t.toml"), "{e}");
        assert!(matches!(Theme::load("no-such", None), Err(ThemeError::NotFound { .. })));
        let t = Theme::dark().with_accent(Some("#ff0000")).expect("accent");
        assert_eq!(t.accent, Color::Rgb(255, 0, 0));
    }
}
