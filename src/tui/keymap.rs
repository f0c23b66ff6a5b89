//! The keymap is data: every binding names an [`Action`], where it applies,
//! and a description that feeds the footer and the help screen. Config can
//! rebind any action by name.

use std::collections::BTreeMap;
use std::fmt;

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    Up,
    Down,
    Top,
    Bottom,
    PageUp,
    PageDown,
    Open,
    Back,
    NextView,
    PrevView,
    View1,
    View2,
    View3,
    View4,
    View5,
    View6,
    Filter,
    Command,
    Help,
    Quit,
    Approve,
    Reject,
    Claim,
    Escalate,
    Redrive,
    Stop,
    Compensate,
    Mark,
    MarkAll,
    ClearMarks,
    Reveal,
    Refresh,
    ToggleRaw,
    ToggleIo,
    CycleStatus,
    ScrollLeft,
    ScrollRight,
    ToggleWrap,
    SwitchHalf,
    Pause,
    OpenExecution,
    // View 6 (Outbox): the sinks table and the rows behind the selected sink…
    NextSink,
    PauseSink,
    RetryNow,
    ParkRow,
    RequeueParked,
    // …and the Dependencies table.
    HoldDependency,
    ReleaseDependency,
    ResetBreaker,
}

impl Action {
    pub fn name(self) -> &'static str {
        match self {
            Action::Up => "up",
            Action::Down => "down",
            Action::Top => "top",
            Action::Bottom => "bottom",
            Action::PageUp => "page-up",
            Action::PageDown => "page-down",
            Action::Open => "open",
            Action::Back => "back",
            Action::NextView => "next-view",
            Action::PrevView => "prev-view",
            Action::View1 => "view-1",
            Action::View2 => "view-2",
            Action::View3 => "view-3",
            Action::View4 => "view-4",
            Action::View5 => "view-5",
            Action::View6 => "view-6",
            Action::Filter => "filter",
            Action::Command => "command",
            Action::Help => "help",
            Action::Quit => "quit",
            Action::Approve => "approve",
            Action::Reject => "reject",
            Action::Claim => "claim",
            Action::Escalate => "escalate",
            Action::Redrive => "redrive",
            Action::Compensate => "compensate",
            Action::Stop => "stop",
            Action::Mark => "mark",
            Action::MarkAll => "mark-all",
            Action::ClearMarks => "clear-marks",
            Action::Reveal => "reveal",
            Action::Refresh => "refresh",
            Action::ToggleRaw => "toggle-raw",
            Action::ToggleIo => "toggle-io",
            Action::CycleStatus => "cycle-status",
            Action::ScrollLeft => "scroll-left",
            Action::ScrollRight => "scroll-right",
            Action::ToggleWrap => "toggle-wrap",
            Action::SwitchHalf => "switch-half",
            Action::Pause => "pause",
            Action::OpenExecution => "open-execution",
            Action::NextSink => "next-sink",
            Action::PauseSink => "pause-sink",
            Action::RetryNow => "retry-now",
            Action::ParkRow => "park-row",
            Action::RequeueParked => "requeue-parked",
            Action::HoldDependency => "hold-dependency",
            Action::ReleaseDependency => "release-dependency",
            Action::ResetBreaker => "reset-breaker",
        }
    }

    pub fn from_name(s: &str) -> Option<Action> {
        ALL_ACTIONS.iter().copied().find(|a| a.name() == s)
    }

    /// Actions that change workflows (disabled in read-only mode).
    pub fn mutates(self) -> bool {
        matches!(
            self,
            Action::Approve
                | Action::Reject
                | Action::Claim
                | Action::Escalate
                | Action::Redrive
                | Action::Stop
                | Action::Compensate
                | Action::PauseSink
                | Action::RetryNow
                | Action::ParkRow
                | Action::RequeueParked
                | Action::HoldDependency
                | Action::ReleaseDependency
                | Action::ResetBreaker
        )
    }
}

pub const ALL_ACTIONS: &[Action] = &[
    Action::Up,
    Action::Down,
    Action::Top,
    Action::Bottom,
    Action::PageUp,
    Action::PageDown,
    Action::Open,
    Action::Back,
    Action::NextView,
    Action::PrevView,
    Action::View1,
    Action::View2,
    Action::View3,
    Action::View4,
    Action::View5,
    Action::View6,
    Action::Filter,
    Action::Command,
    Action::Help,
    Action::Quit,
    Action::Approve,
    Action::Reject,
    Action::Claim,
    Action::Escalate,
    Action::Redrive,
    Action::Stop,
    Action::Compensate,
    Action::Mark,
    Action::MarkAll,
    Action::ClearMarks,
    Action::Reveal,
    Action::Refresh,
    Action::ToggleRaw,
    Action::ToggleIo,
    Action::CycleStatus,
    Action::ScrollLeft,
    Action::ScrollRight,
    Action::ToggleWrap,
    Action::SwitchHalf,
    Action::Pause,
    Action::OpenExecution,
    Action::NextSink,
    Action::PauseSink,
    Action::RetryNow,
    Action::ParkRow,
    Action::RequeueParked,
    Action::HoldDependency,
    Action::ReleaseDependency,
    Action::ResetBreaker,
];

/// Where a binding works.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    Everywhere,
    Pipelines,
    Reviews,
    Executions,
    Detail,
    Events,
    /// View 5: SLO clocks.
    Slo,
    /// View 6: the outbox relay's sinks and rows, and the Dependencies table.
    Outbox,
    /// The detail pane (an event's full text) is open over the view.
    Pane,
}

/// A key with modifiers, written like `j`, `G`, `ctrl-c`, `enter`, `pgdn`, `space`, `f5`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Key {
    pub code: KeyCode,
    pub ctrl: bool,
    pub alt: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeymapError {
    #[error("key {0:?} is not a key this console knows (try e.g. \"j\", \"ctrl-r\", \"enter\", \"pgdn\", \"f5\")")]
    BadKey(String),
    #[error("{0:?} is not an action (actions: {1})")]
    BadAction(String, String),
}

impl Key {
    pub fn parse(s: &str) -> Result<Key, KeymapError> {
        let mut ctrl = false;
        let mut alt = false;
        let mut rest = s;
        loop {
            if let Some(r) = rest.strip_prefix("ctrl-").or_else(|| rest.strip_prefix("c-")) {
                ctrl = true;
                rest = r;
            } else if let Some(r) = rest.strip_prefix("alt-").or_else(|| rest.strip_prefix("m-")) {
                alt = true;
                rest = r;
            } else {
                break;
            }
        }
        let code = match rest.to_ascii_lowercase().as_str() {
            "enter" | "return" => KeyCode::Enter,
            "esc" | "escape" => KeyCode::Esc,
            "tab" => KeyCode::Tab,
            "backtab" | "shift-tab" => KeyCode::BackTab,
            "space" => KeyCode::Char(' '),
            "up" => KeyCode::Up,
            "down" => KeyCode::Down,
            "left" => KeyCode::Left,
            "right" => KeyCode::Right,
            "pgup" | "pageup" => KeyCode::PageUp,
            "pgdn" | "pagedown" => KeyCode::PageDown,
            "home" => KeyCode::Home,
            "end" => KeyCode::End,
            "backspace" => KeyCode::Backspace,
            f if f.len() >= 2 && f.starts_with('f') && f[1..].parse::<u8>().is_ok_and(|n| (1..=12).contains(&n)) => {
                KeyCode::F(f[1..].parse().unwrap_or(1))
            }
            _ => {
                let mut chars = rest.chars();
                match (chars.next(), chars.next()) {
                    (Some(c), None) => KeyCode::Char(c),
                    _ => return Err(KeymapError::BadKey(s.to_string())),
                }
            }
        };
        Ok(Key { code, ctrl, alt })
    }

    pub fn from_event(e: &KeyEvent) -> Key {
        let code = e.code;
        Key { code, ctrl: e.modifiers.contains(KeyModifiers::CONTROL), alt: e.modifiers.contains(KeyModifiers::ALT) }
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.ctrl {
            f.write_str("ctrl-")?;
        }
        if self.alt {
            f.write_str("alt-")?;
        }
        match self.code {
            KeyCode::Char(' ') => f.write_str("space"),
            KeyCode::Char(c) => write!(f, "{c}"),
            KeyCode::Enter => f.write_str("Enter"),
            KeyCode::Esc => f.write_str("Esc"),
            KeyCode::Tab => f.write_str("Tab"),
            KeyCode::BackTab => f.write_str("S-Tab"),
            KeyCode::Up => f.write_str("↑"),
            KeyCode::Down => f.write_str("↓"),
            KeyCode::Left => f.write_str("←"),
            KeyCode::Right => f.write_str("→"),
            KeyCode::PageUp => f.write_str("PgUp"),
            KeyCode::PageDown => f.write_str("PgDn"),
            KeyCode::Home => f.write_str("Home"),
            KeyCode::End => f.write_str("End"),
            KeyCode::Backspace => f.write_str("Bksp"),
            KeyCode::F(n) => write!(f, "F{n}"),
            _ => f.write_str("?"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Binding {
    pub key: Key,
    pub action: Action,
    pub scope: Scope,
    pub description: &'static str,
    /// Shown in the footer (the rest only in help).
    pub footer: bool,
}

#[derive(Debug, Clone)]
pub struct Keymap {
    pub bindings: Vec<Binding>,
}

fn b(key: &str, action: Action, scope: Scope, description: &'static str, footer: bool) -> Binding {
    Binding { key: Key::parse(key).unwrap_or(Key { code: KeyCode::Null, ctrl: false, alt: false }), action, scope, description, footer }
}

impl Default for Keymap {
    fn default() -> Keymap {
        use Action::*;
        use Scope::*;
        Keymap {
            bindings: vec![
                b("j", Down, Everywhere, "move down", true),
                b("down", Down, Everywhere, "move down", false),
                b("k", Up, Everywhere, "move up", true),
                b("up", Up, Everywhere, "move up", false),
                b("g", Top, Everywhere, "first row", false),
                b("home", Top, Everywhere, "first row", false),
                b("G", Bottom, Everywhere, "last row", false),
                b("end", Bottom, Everywhere, "last row", false),
                b("pgup", PageUp, Everywhere, "page up", false),
                b("ctrl-u", PageUp, Everywhere, "page up", false),
                b("pgdn", PageDown, Everywhere, "page down", false),
                b("ctrl-d", PageDown, Everywhere, "page down", false),
                b("enter", Open, Everywhere, "open", true),
                b("esc", Back, Everywhere, "back", true),
                b("tab", NextView, Everywhere, "next view", false),
                b("backtab", PrevView, Everywhere, "previous view", false),
                b("1", View1, Everywhere, "Pipelines", false),
                b("2", View2, Everywhere, "Reviews", false),
                b("3", View3, Everywhere, "Executions", false),
                b("4", View4, Everywhere, "Events", false),
                b("5", View5, Everywhere, "SLO", false),
                b("6", View6, Everywhere, "Outbox", false),
                b("/", Filter, Everywhere, "filter", true),
                b(":", Command, Everywhere, "command", true),
                b("?", Help, Everywhere, "help", true),
                b("q", Quit, Everywhere, "quit", true),
                b("ctrl-c", Quit, Everywhere, "quit", false),
                b("a", Approve, Reviews, "approve", true),
                b("r", Reject, Reviews, "reject", true),
                b("c", Claim, Reviews, "claim/unclaim", true),
                b("e", Escalate, Reviews, "escalate", true),
                b("e", Escalate, Slo, "escalate the study's review", true),
                b("R", Redrive, Executions, "redrive", true),
                b("R", Redrive, Detail, "redrive", true),
                b("x", Stop, Executions, "stop", true),
                b("x", Stop, Detail, "stop", true),
                b("C", Compensate, Executions, "compensate", true),
                b("C", Compensate, Detail, "compensate", true),
                b("s", CycleStatus, Executions, "status filter", true),
                b("space", Mark, Reviews, "mark", true),
                b("space", Mark, Executions, "mark", true),
                b("ctrl-a", MarkAll, Reviews, "mark all shown", true),
                b("ctrl-a", MarkAll, Executions, "mark all shown", true),
                b("u", ClearMarks, Reviews, "clear marks", true),
                b("u", ClearMarks, Executions, "clear marks", true),
                b("h", ToggleRaw, Detail, "raw/compact history", true),
                b("i", ToggleIo, Detail, "input/output", true),
                b("v", Reveal, Everywhere, "reveal PHI", false),
                b("ctrl-r", Refresh, Everywhere, "refresh", false),
                // The detail pane and what opens it.
                b("enter", Open, Detail, "open event", true),
                b("f", SwitchHalf, Detail, "in⇄out", true),
                b("w", ToggleWrap, Detail, "wrap", true),
                b("left", ScrollLeft, Detail, "scroll left", false),
                b("right", ScrollRight, Detail, "scroll right", false),
                b("enter", Open, Events, "detail", true),
                b("o", OpenExecution, Events, "execution", true),
                b("p", Pause, Events, "pause", true),
                b("enter", Open, Pane, "go to execution", true),
                b("o", OpenExecution, Pane, "go to execution", false),
                // View 6: Tab walks sinks → dependencies → the next view (S-Tab back).
                b("n", NextSink, Outbox, "next sink", true),
                b("p", PauseSink, Outbox, "pause/resume", true),
                b("t", RetryNow, Outbox, "retry", true),
                b("P", ParkRow, Outbox, "park", true),
                b("u", RequeueParked, Outbox, "requeue", true),
                b("h", HoldDependency, Outbox, "hold", true),
                b("r", ReleaseDependency, Outbox, "release", true),
                b("b", ResetBreaker, Outbox, "reset breaker", true),
                b("tab", NextView, Outbox, "sinks → dependencies → next view", true),
                b("backtab", PrevView, Outbox, "dependencies → sinks → previous view", false),
                b("enter", Open, Outbox, "row's execution", true),
                b("esc", Back, Pane, "close", true),
                b("w", ToggleWrap, Pane, "wrap", true),
                b("left", ScrollLeft, Pane, "scroll ←", true),
                b("right", ScrollRight, Pane, "scroll →", true),
            ],
        }
    }
}

impl Keymap {
    /// The action a key triggers in `scope` (scope-specific bindings first).
    pub fn action(&self, key: Key, scope: Scope) -> Option<Action> {
        self.bindings
            .iter()
            .find(|b| b.key == key && b.scope == scope)
            .or_else(|| self.bindings.iter().find(|b| b.key == key && b.scope == Scope::Everywhere))
            .map(|b| b.action)
    }

    /// Footer entries for a scope: `(keys, description, action)`, one per action.
    pub fn footer(&self, scope: Scope) -> Vec<(String, &'static str, Action)> {
        let mut out: Vec<(String, &'static str, Action)> = vec![];
        let mut seen = vec![];
        // This scope's own bindings first: where it gives a key its own meaning, that is the one shown.
        let own = self.bindings.iter().filter(|b| b.scope == scope);
        for b in own.chain(self.bindings.iter().filter(|b| b.scope == Scope::Everywhere)).filter(|b| b.footer) {
            if seen.contains(&b.action) {
                continue;
            }
            seen.push(b.action);
            out.push((b.key.to_string(), b.description, b.action));
        }
        // Scope-specific actions first: they are what this view is for.
        out.sort_by_key(|(k, d, _)| {
            let specific = self.bindings.iter().any(|b| b.scope == scope && b.description == *d && b.key.to_string() == *k);
            !specific
        });
        out
    }

    /// Rebind actions from config: `action name -> key or keys`. Each given action loses its default keys.
    pub fn with_overrides(mut self, overrides: &BTreeMap<String, Vec<String>>) -> Result<Keymap, KeymapError> {
        for (name, keys) in overrides {
            let action = Action::from_name(name)
                .ok_or_else(|| KeymapError::BadAction(name.clone(), ALL_ACTIONS.iter().map(|a| a.name()).collect::<Vec<_>>().join(", ")))?;
            let template: Vec<Binding> = self.bindings.iter().filter(|b| b.action == action).cloned().collect();
            let parsed: Vec<Key> = keys.iter().map(|k| Key::parse(k)).collect::<Result<_, _>>()?;
            self.bindings.retain(|b| b.action != action);
            let mut scopes: Vec<(Scope, &'static str, bool)> = vec![];
            for t in &template {
                if !scopes.iter().any(|(s, _, _)| *s == t.scope) {
                    scopes.push((t.scope, t.description, t.footer));
                }
            }
            for (i, key) in parsed.into_iter().enumerate() {
                for (scope, description, footer) in &scopes {
                    self.bindings.push(Binding { key, action, scope: *scope, description, footer: *footer && i == 0 });
                }
            }
        }
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_parse_and_print() {
        assert_eq!(Key::parse("ctrl-r").map(|k| k.to_string()), Ok("ctrl-r".into()));
        assert_eq!(Key::parse("G").map(|k| k.code), Ok(KeyCode::Char('G')));
        assert_eq!(Key::parse("pgdn").map(|k| k.code), Ok(KeyCode::PageDown));
        assert!(Key::parse("banana").is_err());
    }

    #[test]
    fn scope_bindings_win_and_overrides_rebind() {
        let km = Keymap::default();
        let r = Key::parse("R").expect("key");
        assert_eq!(km.action(r, Scope::Executions), Some(Action::Redrive));
        assert_eq!(km.action(r, Scope::Pipelines), None);
        assert_eq!(km.action(Key::parse("j").expect("key"), Scope::Reviews), Some(Action::Down));
        let mut o = BTreeMap::new();
        o.insert("approve".to_string(), vec!["y".to_string()]);
        let km = km.with_overrides(&o).expect("override");
        assert_eq!(km.action(Key::parse("y").expect("key"), Scope::Reviews), Some(Action::Approve));
        assert_eq!(km.action(Key::parse("a").expect("key"), Scope::Reviews), None);
        let mut bad = BTreeMap::new();
        bad.insert("fly".to_string(), vec!["f".to_string()]);
        assert!(matches!(Keymap::default().with_overrides(&bad), Err(KeymapError::BadAction(..))));
    }

    #[test]
    fn reading_keys_have_names_and_their_own_meaning_in_the_footer() {
        for a in ALL_ACTIONS {
            assert_eq!(Action::from_name(a.name()), Some(*a));
        }
        let pane = Keymap::default().footer(Scope::Pane);
        assert_eq!(pane.first().map(|(k, d, _)| (k.as_str(), *d)), Some(("Enter", "go to execution")));
        assert!(pane.iter().any(|(k, d, _)| k == "Esc" && *d == "close"), "{pane:?}");
        let events = Keymap::default().footer(Scope::Events);
        assert!(events.iter().any(|(k, d, _)| k == "p" && *d == "pause"), "{events:?}");
        assert!(events.iter().any(|(k, d, _)| k == "Enter" && *d == "detail"), "{events:?}");
    }

    #[test]
    fn view_6_keys_are_scoped_and_rebind_apart_from_the_same_keys_elsewhere() {
        let km = Keymap::default();
        let k = |s: &str| Key::parse(s).expect("key");
        assert_eq!(km.action(k("p"), Scope::Outbox), Some(Action::PauseSink));
        assert_eq!(km.action(k("p"), Scope::Events), Some(Action::Pause));
        assert_eq!(km.action(k("u"), Scope::Outbox), Some(Action::RequeueParked));
        assert_eq!(km.action(k("u"), Scope::Reviews), Some(Action::ClearMarks));
        assert_eq!(km.action(k("r"), Scope::Outbox), Some(Action::ReleaseDependency));
        assert_eq!(km.action(k("r"), Scope::Reviews), Some(Action::Reject));
        assert_eq!(km.action(k("tab"), Scope::Outbox), Some(Action::NextView));
        assert_eq!(km.action(k("h"), Scope::Pipelines), None);
        // Rebinding the Events pause leaves the sink's pause alone, and the other way round.
        let mut o = BTreeMap::new();
        o.insert("pause".to_string(), vec!["space".to_string()]);
        o.insert("hold-dependency".to_string(), vec!["H".to_string()]);
        let km = km.with_overrides(&o).expect("override");
        assert_eq!(km.action(k("p"), Scope::Outbox), Some(Action::PauseSink));
        assert_eq!(km.action(k("p"), Scope::Events), None);
        assert_eq!(km.action(k("H"), Scope::Outbox), Some(Action::HoldDependency));
        assert_eq!(km.action(k("h"), Scope::Outbox), None);
        let footer = km.footer(Scope::Outbox);
        assert_eq!(footer.first().map(|(k, d, _)| (k.as_str(), *d)), Some(("n", "next sink")), "{footer:?}");
        assert!(footer.iter().any(|(k, d, _)| k == "H" && *d == "hold"), "{footer:?}");
        for a in [Action::PauseSink, Action::ParkRow, Action::HoldDependency, Action::ReleaseDependency, Action::ResetBreaker] {
            assert!(a.mutates(), "{a:?} is refused in read-only mode");
        }
        assert!(!Action::NextSink.mutates());
    }

    #[test]
    fn footer_lists_view_actions_first_once_each() {
        let f = Keymap::default().footer(Scope::Reviews);
        assert_eq!(f.first().map(|(_, d, _)| *d), Some("approve"));
        assert_eq!(f.iter().filter(|(_, d, _)| *d == "move down").count(), 1);
    }
}
