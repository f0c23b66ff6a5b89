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

    /// The colours body text is drawn in, by name, each of which must stand out from the
    /// background: text, muted, ok, warn, breach, stat, urgent, routine, accent.
    pub fn foregrounds(&self) -> [(&'static str, Color); 9] {
        [
            ("text", self.text),
            ("muted", self.muted),
            ("ok", self.ok),
            ("warn", self.warn),
            ("breach", self.breach),
            ("stat", self.stat),
            ("urgent", self.urgent),
            ("routine", self.routine),
            ("accent", self.accent),
        ]
    }

    /// Every foreground colour whose contrast with the background is below WCAG 2.x AA for
    /// body text (4.5:1), as "muted #6c7080 on #16181d: 3.6:1". Colours that have no fixed RGB
    /// (the terminal's default `reset`) are not checked.
    pub fn contrast_problems(&self) -> Vec<String> {
        let Some(bg) = rgb(self.background) else { return vec![] };
        self.foregrounds()
            .into_iter()
            .filter_map(|(name, c)| {
                let fg = rgb(c)?;
                let ratio = contrast_ratio(fg, bg);
                (ratio < MIN_CONTRAST).then(|| format!("{name} {} on {}: {ratio:.1}:1", hex(fg), hex(bg)))
            })
            .collect()
    }

    /// The warning a theme that fails the contrast check loads with, if any.
    pub fn contrast_warning(&self) -> Option<String> {
        let p = self.contrast_problems();
        (!p.is_empty())
            .then(|| format!("theme {:?} has colours below WCAG AA contrast (4.5:1) and may be hard to read: {}", self.name, p.join(", ")))
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

/// WCAG 2.x AA: the least contrast ratio for body text.
pub const MIN_CONTRAST: f64 = 4.5;

/// The RGB a colour is drawn in. `#rrggbb` and 256-colour indices are exact; the 16 ANSI
/// names depend on the terminal, and are taken as xterm's defaults: black 000000, red cd0000,
/// green 00cd00, yellow cdcd00, blue 0000ee, magenta cd00cd, cyan 00cdcd, gray e5e5e5,
/// darkgray 7f7f7f, lightred ff0000, lightgreen 00ff00, lightyellow ffff00, lightblue 5c5cff,
/// lightmagenta ff00ff, lightcyan 00ffff, white ffffff. `reset` (the terminal's own) has none.
pub fn rgb(c: Color) -> Option<(u8, u8, u8)> {
    const ANSI: [(u8, u8, u8); 16] = [
        (0x00, 0x00, 0x00),
        (0xcd, 0x00, 0x00),
        (0x00, 0xcd, 0x00),
        (0xcd, 0xcd, 0x00),
        (0x00, 0x00, 0xee),
        (0xcd, 0x00, 0xcd),
        (0x00, 0xcd, 0xcd),
        (0xe5, 0xe5, 0xe5),
        (0x7f, 0x7f, 0x7f),
        (0xff, 0x00, 0x00),
        (0x00, 0xff, 0x00),
        (0xff, 0xff, 0x00),
        (0x5c, 0x5c, 0xff),
        (0xff, 0x00, 0xff),
        (0x00, 0xff, 0xff),
        (0xff, 0xff, 0xff),
    ];
    Some(match c {
        Color::Reset => return None,
        Color::Rgb(r, g, b) => (r, g, b),
        Color::Black => ANSI[0],
        Color::Red => ANSI[1],
        Color::Green => ANSI[2],
        Color::Yellow => ANSI[3],
        Color::Blue => ANSI[4],
        Color::Magenta => ANSI[5],
        Color::Cyan => ANSI[6],
        Color::Gray => ANSI[7],
        Color::DarkGray => ANSI[8],
        Color::LightRed => ANSI[9],
        Color::LightGreen => ANSI[10],
        Color::LightYellow => ANSI[11],
        Color::LightBlue => ANSI[12],
        Color::LightMagenta => ANSI[13],
        Color::LightCyan => ANSI[14],
        Color::White => ANSI[15],
        Color::Indexed(i) if i < 16 => ANSI[usize::from(i)],
        Color::Indexed(i) if i < 232 => {
            // The 6x6x6 cube.
            let level = |v: u8| if v == 0 { 0 } else { 55 + v * 40 };
            let i = i - 16;
            (level(i / 36), level((i / 6) % 6), level(i % 6))
        }
        Color::Indexed(i) => {
            let v = 8 + (i - 232) * 10;
            (v, v, v)
        }
    })
}

/// WCAG 2.x relative luminance of an sRGB colour.
pub fn luminance((r, g, b): (u8, u8, u8)) -> f64 {
    let lin = |v: u8| {
        let c = f64::from(v) / 255.0;
        if c <= 0.04045 { c / 12.92 } else { ((c + 0.055) / 1.055).powf(2.4) }
    };
    0.2126 * lin(r) + 0.7152 * lin(g) + 0.0722 * lin(b)
}

/// WCAG 2.x contrast ratio of two colours, from 1 (same) to 21 (black on white).
pub fn contrast_ratio(a: (u8, u8, u8), b: (u8, u8, u8)) -> f64 {
    let (la, lb) = (luminance(a), luminance(b));
    (la.max(lb) + 0.05) / (la.min(lb) + 0.05)
}

fn hex((r, g, b): (u8, u8, u8)) -> String {
    format!("#{r:02x}{g:02x}{b:02x}")
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
    fn every_builtin_theme_meets_wcag_aa_for_body_text() {
        for (name, text) in BUILTIN {
            let t = Theme::load(name, None).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(t.contrast_problems(), Vec::<String>::new(), "{name}");
            assert!(t.contrast_warning().is_none(), "{name}");
            // Built-in themes give exact colours, so the check does not rest on a guess of the terminal's palette.
            for line in text.lines().filter(|l| l.contains('=') && !l.starts_with("name")) {
                let v = line.split('=').nth(1).unwrap_or_default().trim().trim_matches('"');
                assert!(v.starts_with('#') && v.len() == 7, "{name}: {line} is not #rrggbb");
            }
        }
    }

    #[test]
    fn contrast_is_computed_as_wcag_defines_it() {
        assert!((contrast_ratio((0, 0, 0), (255, 255, 255)) - 21.0).abs() < 1e-9);
        assert!((contrast_ratio((10, 20, 30), (10, 20, 30)) - 1.0).abs() < 1e-9);
        // #777777 on white is the classic just-below-AA grey (4.48:1).
        let r = contrast_ratio((0x77, 0x77, 0x77), (255, 255, 255));
        assert!(r > 4.4 && r < 4.5, "{r}");
        assert_eq!(rgb(Color::DarkGray), Some((0x7f, 0x7f, 0x7f)));
        assert_eq!(rgb(Color::Indexed(196)), Some((255, 0, 0)));
        assert_eq!(rgb(Color::Indexed(244)), Some((128, 128, 128)));
        assert_eq!(rgb(Color::Reset), None);
    }

    #[test]
    fn a_low_contrast_theme_is_named_with_its_failing_colours() {
        let text = BUILTIN[0].1.replace("#858a9a", "#303030").replace("name = \"dark\"", "name = \"dim\"");
        let t = Theme::parse(&text, "dim.toml").expect("parses");
        let w = t.contrast_warning().unwrap_or_default();
        assert!(w.contains("dim") && w.contains("muted #303030 on #16181d"), "{w}");
        assert!(!w.contains("text "), "{w}");
        // Named colours are checked too, by their xterm RGB: dark grey on white fails.
        let named = text.replace("#303030", "darkgray").replace("#16181d", "white");
        let t = Theme::parse(&named, "dim.toml").expect("parses");
        let w = t.contrast_warning().unwrap_or_default();
        assert!(w.contains("muted #7f7f7f on #ffffff"), "{w}");
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
