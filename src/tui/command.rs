//! Moving around the console: the `:` command line (its commands are data: name, aliases,
//! argument kind and description feed parsing, Tab completion, error messages and the help
//! screen), its history, the back stack Esc walks, the help screen's rows, the pick list,
//! keys that explain why they do nothing, marking all rows, and the lock.
//!
//! Everything here is part of the pure handler: no terminal, no backend.

use std::collections::HashMap;

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::app::{App, Dialog, Effect, Filter, InputKind, Pane, Request, View};
use super::keymap::{Action, Key, Scope};
use crate::audit::AuditRecord;
use crate::backend::{FIND_LIMIT, Found};
use crate::history::ExecutionStatus;

/// Audit-log rows `:audit` shows (newest first).
pub const AUDIT_ROWS: usize = 200;
/// Commands remembered for ↑/↓ this session.
pub const HISTORY_KEPT: usize = 100;
/// Places Esc can walk back through.
pub const BACK_KEPT: usize = 32;
/// Rows a scrolling pane shows at least (80×24): the end of its scroll.
const PANE_ROWS: usize = 20;
/// Text in panes is wrapped to this width (the inside of a dialog at 80 columns), so a
/// pane's rows are known without the terminal.
pub const PANE_WIDTH: usize = 74;
/// The longest name typed at the lock screen.
const LOCK_INPUT_MAX: usize = 64;

/// What a command takes after its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arg {
    None,
    /// An execution status, or `redriven`.
    Status,
    /// A regular expression (the rest of the line).
    Pattern,
    /// A context name.
    Context,
    /// An accession, order number, execution name or ARN.
    Study,
}

/// One `:` command.
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    pub name: &'static str,
    pub aliases: &'static [&'static str],
    pub arg: Arg,
    /// The argument must be given.
    pub required: bool,
    pub usage: &'static str,
    pub description: &'static str,
}

/// Every `:` command, in the order help lists them.
pub const COMMANDS: &[Spec] = &[
    Spec { name: "pipelines", aliases: &["p"], arg: Arg::None, required: false, usage: "pipelines", description: "the Pipelines view" },
    Spec { name: "reviews", aliases: &["r"], arg: Arg::None, required: false, usage: "reviews", description: "the Reviews queue" },
    Spec {
        name: "executions",
        aliases: &["x", "exec"],
        arg: Arg::Status,
        required: false,
        usage: "executions [STATUS]",
        description: "all, or by STATUS (Tab lists them)",
    },
    Spec {
        name: "events",
        aliases: &["e"],
        arg: Arg::Pattern,
        required: false,
        usage: "events [FILTER]",
        description: "the event tail: regex, {pattern} or its name",
    },
    Spec {
        name: "study",
        aliases: &["s", "find"],
        arg: Arg::Study,
        required: true,
        usage: "study TEXT",
        description: "accession, order, name, ARN; MRN once revealed",
    },
    Spec { name: "audit", aliases: &[], arg: Arg::None, required: false, usage: "audit", description: "recent audit-log rows (masked)" },
    Spec {
        name: "ctx",
        aliases: &["context"],
        arg: Arg::Context,
        required: false,
        usage: "ctx [NAME]",
        description: "the live context and those configured",
    },
    Spec { name: "help", aliases: &["h"], arg: Arg::None, required: false, usage: "help", description: "keys and commands" },
    Spec { name: "lock", aliases: &[], arg: Arg::None, required: false, usage: "lock", description: "lock the screen now" },
    Spec { name: "quit", aliases: &["q"], arg: Arg::None, required: false, usage: "quit", description: "leave the console" },
];

/// What `:executions` takes.
pub const STATUSES: &[&str] = &["running", "failed", "timed-out", "aborted", "succeeded", "redriven"];

/// A parsed command.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Pipelines,
    Reviews,
    Executions(Option<StatusArg>),
    Events(Option<String>),
    Study(String),
    Audit,
    Ctx(Option<String>),
    Help,
    Lock,
    Quit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusArg {
    Is(ExecutionStatus),
    Redriven,
}

/// The command named `word` (or one of its aliases), in any letter case.
pub fn spec(word: &str) -> Option<&'static Spec> {
    let w = word.to_ascii_lowercase();
    COMMANDS.iter().find(|s| s.name == w || s.aliases.contains(&w.as_str()))
}

fn names() -> String {
    COMMANDS.iter().map(|s| s.name).collect::<Vec<_>>().join(", ")
}

/// Parse a command line (without the `:`). `Ok(None)`: nothing typed. Every error names
/// what was not understood.
pub fn parse(text: &str) -> Result<Option<Command>, String> {
    let text = text.trim();
    let (word, rest) = match text.split_once(char::is_whitespace) {
        Some((w, r)) => (w, r.trim()),
        None => (text, ""),
    };
    if word.is_empty() {
        return Ok(None);
    }
    let Some(s) = spec(word) else {
        return Err(format!("unknown command {word:?} (commands: {})", names()));
    };
    let words: Vec<&str> = rest.split_whitespace().collect();
    let one = |what: &str| -> Result<Option<String>, String> {
        match words.as_slice() {
            [] if s.required => Err(format!(":{} needs {what}", s.name)),
            [] => Ok(None),
            [w] => Ok(Some((*w).to_string())),
            [_, extra, ..] => Err(format!(":{} takes one {what}; {extra:?} is extra", s.name)),
        }
    };
    let cmd = match s.arg {
        Arg::None => {
            if let Some(extra) = words.first() {
                return Err(format!(":{} takes no argument; {extra:?} is extra", s.name));
            }
            match s.name {
                "pipelines" => Command::Pipelines,
                "reviews" => Command::Reviews,
                "audit" => Command::Audit,
                "help" => Command::Help,
                "lock" => Command::Lock,
                _ => Command::Quit,
            }
        }
        Arg::Status => Command::Executions(match one("status")? {
            None => None,
            Some(a) if a.eq_ignore_ascii_case("redriven") => Some(StatusArg::Redriven),
            Some(a) => match ExecutionStatus::parse(&a.replace('-', "_")).filter(|st| *st != ExecutionStatus::PendingRedrive) {
                Some(st) => Some(StatusArg::Is(st)),
                None => return Err(format!("{a:?} is not a status :executions knows ({})", STATUSES.join(", "))),
            },
        }),
        Arg::Pattern => {
            if rest.is_empty() {
                Command::Events(None)
            } else {
                Filter::parse(rest)?;
                Command::Events(Some(rest.to_string()))
            }
        }
        Arg::Context => Command::Ctx(one("context name")?),
        Arg::Study => Command::Study(one("an accession, order number, execution name or ARN")?.unwrap_or_default()),
    };
    Ok(Some(cmd))
}

/// `text` in lines of at most `width` characters, broken at spaces where it can; the
/// continuation lines are indented.
pub fn wrap(text: &str, width: usize) -> Vec<String> {
    let width = width.max(8);
    let mut out = vec![];
    let mut line = String::new();
    for word in text.split(' ') {
        let mut word = word.to_string();
        loop {
            let used = line.chars().count();
            let need = word.chars().count() + usize::from(used > 0);
            if used + need <= width {
                if used > 0 {
                    line.push(' ');
                }
                line.push_str(&word);
                break;
            }
            if used > 4 {
                out.push(std::mem::replace(&mut line, "    ".into()));
                continue;
            }
            // A word longer than a line: cut it.
            let room = width - used;
            let head: String = word.chars().take(room).collect();
            line.push_str(&head);
            word = word.chars().skip(room).collect();
            out.push(std::mem::replace(&mut line, "    ".into()));
        }
    }
    if line.trim().is_empty() && !out.is_empty() {
        return out;
    }
    out.push(line);
    out
}

/// The result of Tab: the new text, and the choices left when it is not unique.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    pub text: String,
    pub candidates: Vec<String>,
}

fn common_prefix(items: &[String]) -> String {
    let Some(first) = items.first() else { return String::new() };
    let mut n = first.chars().count();
    for it in &items[1..] {
        n = n.min(first.chars().zip(it.chars()).take_while(|(a, b)| a.eq_ignore_ascii_case(b)).count());
    }
    first.chars().take(n).collect()
}

/// Complete `text`: a command name, or the argument of the command typed (`values` gives the
/// choices for an argument kind). One choice completes; several complete their common
/// prefix and are listed.
pub fn complete(text: &str, values: impl Fn(Arg) -> Vec<String>) -> Completion {
    let trimmed = text.trim_start();
    match trimmed.split_once(char::is_whitespace) {
        None => {
            let w = trimmed.to_ascii_lowercase();
            let hits: Vec<String> = COMMANDS.iter().filter(|s| s.name.starts_with(&w)).map(|s| s.name.to_string()).collect();
            match hits.as_slice() {
                [] => Completion { text: text.to_string(), candidates: vec![] },
                [one] => {
                    let takes = spec(one).is_some_and(|s| s.arg != Arg::None);
                    Completion { text: if takes { format!("{one} ") } else { one.clone() }, candidates: vec![] }
                }
                _ => Completion { text: common_prefix(&hits), candidates: hits },
            }
        }
        Some((word, rest)) => {
            let Some(s) = spec(word) else { return Completion { text: text.to_string(), candidates: vec![] } };
            let prefix = rest.trim_start().to_lowercase();
            let mut hits: Vec<String> = values(s.arg).into_iter().filter(|v| v.to_lowercase().starts_with(&prefix)).collect();
            hits.sort();
            hits.dedup();
            match hits.as_slice() {
                [] => Completion { text: text.to_string(), candidates: vec![] },
                [one] => Completion { text: format!("{word} {one}"), candidates: vec![] },
                _ => {
                    let p = common_prefix(&hits);
                    let p = if p.chars().count() >= prefix.chars().count() { p } else { rest.trim_start().to_string() };
                    Completion { text: format!("{word} {p}"), candidates: hits }
                }
            }
        }
    }
}

/// The command line's session state: history and the last completion's choices.
#[derive(Debug, Clone, Default)]
pub struct CommandLine {
    /// Commands run, oldest first.
    pub history: Vec<String>,
    /// Which history entry ↑/↓ shows (`None`: the line being typed).
    pub recall: Option<usize>,
    /// The line being typed before ↑ replaced it.
    pub draft: String,
    /// Choices the last Tab left.
    pub candidates: Vec<String>,
}

impl CommandLine {
    fn reset(&mut self) {
        self.recall = None;
        self.draft.clear();
        self.candidates.clear();
    }

    fn remember(&mut self, text: &str) {
        let t = text.trim();
        if t.is_empty() {
            return;
        }
        self.history.retain(|h| h != t);
        self.history.push(t.to_string());
        if self.history.len() > HISTORY_KEPT {
            self.history.remove(0);
        }
    }

    /// ↑ (`older`) or ↓ from the line `text`: the text to show.
    pub fn recall(&mut self, text: &str, older: bool) -> String {
        let n = self.history.len();
        if n == 0 {
            return text.to_string();
        }
        let next = match (self.recall, older) {
            (None, true) => {
                self.draft = text.to_string();
                Some(n - 1)
            }
            (None, false) => None,
            (Some(i), true) => Some(i.saturating_sub(1)),
            (Some(i), false) if i + 1 < n => Some(i + 1),
            (Some(_), false) => None,
        };
        self.recall = next;
        match next {
            Some(i) => self.history[i].clone(),
            None => std::mem::take(&mut self.draft),
        }
    }
}

/// Where the operator was: what Esc returns to.
#[derive(Debug, Clone, PartialEq)]
pub struct Location {
    pub view: View,
    pub detail_arn: Option<String>,
    pub filter: Option<String>,
    pub status: Option<ExecutionStatus>,
    pub redriven: bool,
    /// The selected row, by identity, and its name.
    pub selected: Option<(String, String)>,
}

/// One row of the help screen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HelpRow {
    Heading(String),
    /// Keys and what they do.
    Entry(String, String),
    /// A `:` command's usage and description.
    Command(String, String),
}

fn scope_title(s: Scope) -> &'static str {
    match s {
        Scope::Everywhere => "Everywhere",
        Scope::Pipelines => "Pipelines",
        Scope::Reviews => "Reviews",
        Scope::Executions => "Executions",
        Scope::Detail => "Execution detail",
        Scope::Events => "Events",
        Scope::Slo => "SLO",
        Scope::Outbox => "Outbox (sinks, rows, dependencies)",
        Scope::Pane => "Detail pane (history event, event)",
    }
}

const SCOPES: [Scope; 9] = [
    Scope::Pipelines,
    Scope::Reviews,
    Scope::Executions,
    Scope::Detail,
    Scope::Events,
    Scope::Slo,
    Scope::Outbox,
    Scope::Pane,
    Scope::Everywhere,
];

impl App {
    // ----- the back stack ------------------------------------------------------

    /// Where the operator is now.
    pub fn location(&self) -> Location {
        let i = self.view.index();
        Location {
            view: self.view,
            detail_arn: if self.view == View::Executions { self.detail_arn.clone() } else { None },
            filter: self.filters[i].as_ref().map(|f| f.text.clone()),
            status: self.status_filter,
            redriven: self.redriven_filter,
            selected: self.sel_keys[i].clone(),
        }
    }

    /// Remember where the operator is, before moving elsewhere.
    pub fn remember(&mut self) {
        let here = self.location();
        if self.back.last() == Some(&here) {
            return;
        }
        self.back.push(here);
        if self.back.len() > BACK_KEPT {
            self.back.remove(0);
        }
    }

    /// Return to the last place remembered: its view, open execution, filter, status filter
    /// and selected row. `None`: nowhere to go back to.
    pub fn go_back(&mut self) -> Option<Vec<Effect>> {
        let loc = self.back.pop()?;
        self.view = loc.view;
        if loc.detail_arn != self.detail_arn {
            self.detail = Pane::default();
            self.detail_scroll = 0;
        }
        self.detail_arn = loc.detail_arn;
        let i = loc.view.index();
        self.filters[i] = loc.filter.as_deref().and_then(|t| Filter::parse_named(t, &self.settings.event_patterns).ok());
        self.status_filter = loc.status;
        self.redriven_filter = loc.redriven;
        if loc.selected.is_some() {
            self.sel_keys[i] = loc.selected;
        }
        self.follow_selection(loc.view, false);
        self.message = None;
        Some(self.loads())
    }

    // ----- the command line ----------------------------------------------------

    /// Run a `:` command line; it joins the history whether or not it was understood.
    pub fn run_command(&mut self, text: &str) -> Vec<Effect> {
        self.cmdline.remember(text);
        self.cmdline.reset();
        let cmd = match parse(text) {
            Ok(Some(c)) => c,
            Ok(None) => return vec![],
            Err(e) => {
                self.message = Some((e, true));
                return vec![];
            }
        };
        match cmd {
            Command::Quit => {
                self.quit = true;
                vec![Effect::Quit]
            }
            Command::Pipelines => self.switch(View::Pipelines),
            Command::Reviews => self.switch(View::Reviews),
            Command::Executions(arg) => {
                self.remember();
                (self.status_filter, self.redriven_filter) = match arg {
                    None => (None, false),
                    Some(StatusArg::Is(s)) => (Some(s), false),
                    Some(StatusArg::Redriven) => (None, true),
                };
                self.detail_arn = None;
                self.detail = Pane::default();
                self.view = View::Executions;
                self.follow_selection(View::Executions, false);
                self.message = None;
                self.loads()
            }
            Command::Events(pattern) => {
                let effects = self.switch(View::Events);
                self.filters[View::Events.index()] =
                    pattern.as_deref().and_then(|p| Filter::parse_named(p, &self.settings.event_patterns).ok());
                self.follow_selection(View::Events, false);
                effects
            }
            Command::Study(needle) => self.find_study(&needle),
            Command::Audit => {
                self.message = Some(("audit: loading the latest rows…".into(), false));
                vec![Effect::Load(Request::Audit)]
            }
            Command::Ctx(name) => self.show_contexts(name.as_deref()),
            Command::Help => {
                self.dialog_scroll = 0;
                self.dialog = Some(Dialog::Help);
                vec![]
            }
            Command::Lock => {
                self.lock();
                vec![]
            }
        }
    }

    /// `:ctx` lists the contexts, marking the live one; `:ctx NAME` switches to a configured
    /// one (the jobs thread connects it; the current one stays if that fails).
    fn show_contexts(&mut self, name: Option<&str>) -> Vec<Effect> {
        let s = &self.settings;
        let configured =
            if s.contexts.is_empty() { "none ([contexts.NAME] in the config adds some)".to_string() } else { s.contexts.join(", ") };
        match name {
            Some(n) if n == s.context => self.message = Some((format!("ctx: {n} is the live context"), false)),
            Some(n) if s.contexts.iter().any(|c| c == n) => {
                self.asked_generation = self.asked_generation.max(self.generation) + 1;
                self.message = Some((format!("ctx: connecting to {n}… ({} stays live until it answers)", s.context), false));
                return vec![Effect::Switch { name: n.to_string(), generation: self.asked_generation }];
            }
            Some(n) => self.message = Some((format!("ctx: no context {n:?} (configured: {configured}); still on {}", s.context), true)),
            None => {
                let live = format!(
                    "* {} (live: backend {}{})",
                    s.context,
                    s.backend,
                    if s.location.is_empty() { String::new() } else { format!(", {}", s.location) }
                );
                let mut lines = vec![live];
                for c in s.contexts.iter().filter(|c| **c != s.context) {
                    lines.push(format!("  {c}"));
                }
                if s.contexts.is_empty() {
                    lines.push(format!("configured: {configured}"));
                }
                lines.push(String::new());
                lines.push(if s.read_only { "read-only: on".into() } else { "read-only: off".into() });
                lines.push(":ctx NAME switches to another context".into());
                self.dialog_scroll = 0;
                self.dialog = Some(Dialog::Lines { title: "Contexts".into(), lines });
            }
        }
        vec![]
    }

    /// `:study X`: the revealed study by its MRN, a study or execution on screen by its exact
    /// name, else ask the backend (partial matches, a pick list when several).
    fn find_study(&mut self, needle: &str) -> Vec<Effect> {
        let n = needle.to_lowercase();
        // An MRN is matched only for the study whose patient data is revealed.
        if let Some(r) = self.reveal.as_ref().filter(|r| self.now < r.until) {
            let arn = r.arn.clone();
            let mrns: Vec<String> = self
                .studies
                .value
                .iter()
                .filter(|s| s.execution_arn == arn)
                .map(|s| s.patient.mrn.clone())
                .chain(self.reviews.value.iter().filter(|x| x.execution_arn == arn).map(|x| x.patient.mrn.clone()))
                .collect();
            if mrns.iter().any(|m| !m.is_empty() && m.to_lowercase().contains(&n)) {
                return self.open_execution(arn);
            }
        }
        let exact = self
            .studies
            .value
            .iter()
            .find(|s| s.accession.eq_ignore_ascii_case(needle))
            .map(|s| s.execution_arn.clone())
            .or_else(|| {
                self.executions.value.iter().find(|e| e.name.eq_ignore_ascii_case(needle) || e.arn == needle).map(|e| e.arn.clone())
            })
            .or_else(|| self.reviews.value.iter().find(|r| r.accession.eq_ignore_ascii_case(needle)).map(|r| r.execution_arn.clone()));
        match exact {
            Some(arn) => self.open_execution(arn),
            None => {
                self.message = Some((format!("study: searching for {needle:?}…"), false));
                vec![Effect::Load(Request::Find(needle.to_string()))]
            }
        }
    }

    /// What the backend found for `:study`: none says so, one opens, several open a pick list.
    pub fn found(&mut self, needle: String, hits: Vec<Found>) {
        match hits.len() {
            0 => {
                self.message =
                    Some((format!("no study or execution {needle:?} (searched accession, order number, execution name and ARN)"), true))
            }
            1 => {
                self.message = None;
                let arn = hits.into_iter().next().map(|h| h.arn).unwrap_or_default();
                self.open_execution(arn);
            }
            n => {
                self.message = None;
                let more = if n >= FIND_LIMIT { format!(" (the first {FIND_LIMIT})") } else { String::new() };
                let items = hits.into_iter().map(|h| (h.label, h.arn)).collect();
                self.dialog_scroll = 0;
                self.dialog = Some(Dialog::Pick { title: format!("{n} matches for {needle:?}{more}"), items, sel: 0 });
            }
        }
    }

    /// The audit rows arrived: show them, their free text masked with the identifiers of the
    /// executions they name.
    pub fn audit_loaded(&mut self, rows: Vec<AuditRecord>, inputs: HashMap<String, String>) {
        let phi = &self.settings.phi;
        let mut known: HashMap<&str, Vec<String>> = HashMap::new();
        for (arn, input) in &inputs {
            known.insert(arn.as_str(), phi.identifiers_in_text(input));
        }
        let none: Vec<String> = vec![];
        let lines: Vec<String> = rows
            .iter()
            .map(|r| {
                let ids = r.execution_arn.as_deref().and_then(|a| known.get(a)).unwrap_or(&none);
                let mask = |t: &Option<String>| t.as_deref().map(|t| phi.mask_text_with(t, ids)).unwrap_or_default();
                let target = match (&r.execution_arn, &r.task_token) {
                    (Some(a), Some(t)) => format!("{} task {t}", a.rsplit(':').next().unwrap_or(a)),
                    (Some(a), None) => a.rsplit(':').next().unwrap_or(a).to_string(),
                    (None, Some(t)) => format!("task {t}"),
                    (None, None) => "-".into(),
                };
                let mut line = format!(
                    "#{} {} {} {} {} {}",
                    r.seq,
                    r.time.with_timezone(&self.settings.tz).format("%m-%d %H:%M:%S"),
                    r.actor,
                    r.action,
                    target,
                    r.result
                );
                let (reason, error) = (mask(&r.reason), mask(&r.error));
                match &r.reason_code {
                    Some(code) => line.push_str(&format!(" · reason: [{code}] {reason}")),
                    None if !reason.is_empty() => line.push_str(&format!(" · reason: {reason}")),
                    None => {}
                }
                if !error.is_empty() {
                    line.push_str(&format!(" · error: {error}"));
                }
                line
            })
            .collect();
        self.message = None;
        if self.dialog.is_some() {
            return;
        }
        let lines = if lines.is_empty() {
            vec!["the audit log is empty".to_string()]
        } else {
            lines.iter().flat_map(|l| wrap(l, PANE_WIDTH)).collect()
        };
        self.dialog_scroll = 0;
        self.dialog = Some(Dialog::Lines { title: format!("Audit log · newest {} rows", rows.len()), lines });
    }

    fn completion_values(&self, arg: Arg) -> Vec<String> {
        match arg {
            Arg::None | Arg::Pattern => vec![],
            Arg::Status => STATUSES.iter().map(|s| s.to_string()).collect(),
            Arg::Context => std::iter::once(self.settings.context.clone()).chain(self.settings.contexts.iter().cloned()).collect(),
            Arg::Study => self
                .studies
                .value
                .iter()
                .map(|s| s.accession.clone())
                .chain(self.reviews.value.iter().map(|r| r.accession.clone()))
                .filter(|a| !a.is_empty())
                .collect(),
        }
    }

    // ----- keys in dialogs this module owns --------------------------------------

    /// Keys for the help screen, scrolling panes, the pick list, and the command line's ↑/↓/Tab.
    /// `Some`: handled. `None` with no dialog left: the key closed the help and does its
    /// usual action. `None` with the dialog still open: the dialog's own handler takes it.
    pub fn modal_key(&mut self, k: KeyEvent) -> Option<Vec<Effect>> {
        let ctrl = k.modifiers.contains(KeyModifiers::CONTROL);
        let scroll = |app: &mut App, rows: usize| -> bool {
            let max = rows.saturating_sub(PANE_ROWS).min(usize::from(u16::MAX)) as u16;
            let s = app.dialog_scroll;
            app.dialog_scroll = match k.code {
                KeyCode::Down | KeyCode::Char('j') => s.saturating_add(1),
                KeyCode::Up | KeyCode::Char('k') => s.saturating_sub(1),
                KeyCode::PageDown => s.saturating_add(PANE_ROWS as u16),
                KeyCode::Char('d') if ctrl => s.saturating_add(PANE_ROWS as u16),
                KeyCode::PageUp => s.saturating_sub(PANE_ROWS as u16),
                KeyCode::Char('u') if ctrl => s.saturating_sub(PANE_ROWS as u16),
                KeyCode::Home | KeyCode::Char('g') => 0,
                KeyCode::End | KeyCode::Char('G') => max,
                _ => return false,
            }
            .min(max);
            true
        };
        match self.dialog.as_mut()? {
            Dialog::Help => {
                if matches!(k.code, KeyCode::Esc | KeyCode::Char('?')) {
                    self.dialog = None;
                    return Some(vec![]);
                }
                let rows = self.help_rows().len();
                if scroll(self, rows) {
                    return Some(vec![]);
                }
                // Any other key closes the help and does what it does.
                self.dialog = None;
                self.dialog_scroll = 0;
                None
            }
            Dialog::Lines { lines, .. } => {
                let rows = lines.len();
                if matches!(k.code, KeyCode::Esc | KeyCode::Enter | KeyCode::Char('q')) {
                    self.dialog = None;
                    return Some(vec![]);
                }
                if scroll(self, rows) {
                    return Some(vec![]);
                }
                self.dialog = None;
                self.dialog_scroll = 0;
                None
            }
            Dialog::Pick { items, sel, .. } => {
                let n = items.len();
                match k.code {
                    KeyCode::Down | KeyCode::Char('j') => *sel = (*sel + 1).min(n.saturating_sub(1)),
                    KeyCode::Up | KeyCode::Char('k') => *sel = sel.saturating_sub(1),
                    KeyCode::PageDown => *sel = (*sel + PANE_ROWS).min(n.saturating_sub(1)),
                    KeyCode::PageUp => *sel = sel.saturating_sub(PANE_ROWS),
                    KeyCode::Home | KeyCode::Char('g') => *sel = 0,
                    KeyCode::End | KeyCode::Char('G') => *sel = n.saturating_sub(1),
                    KeyCode::Enter => {
                        let arn = items.get(*sel).map(|(_, a)| a.clone());
                        self.dialog = None;
                        return Some(arn.map(|a| self.open_execution(a)).unwrap_or_default());
                    }
                    KeyCode::Esc => {
                        self.dialog = None;
                        self.message = Some(("study: nothing opened".into(), false));
                    }
                    KeyCode::Char('c') if ctrl => self.dialog = None,
                    _ => {}
                }
                Some(vec![])
            }
            Dialog::Input { kind: InputKind::Command, text } => {
                match k.code {
                    KeyCode::Up | KeyCode::Down => {
                        let t = self.cmdline.recall(text, k.code == KeyCode::Up);
                        *text = t;
                        self.cmdline.candidates.clear();
                    }
                    KeyCode::Tab => {
                        let typed = text.clone();
                        let c = complete(&typed, |a| self.completion_values(a));
                        if let Some(Dialog::Input { text, .. }) = self.dialog.as_mut() {
                            *text = c.text;
                        }
                        self.cmdline.candidates = c.candidates;
                    }
                    KeyCode::Esc | KeyCode::Enter => {
                        self.cmdline.reset();
                        return None;
                    }
                    _ => {
                        self.cmdline.candidates.clear();
                        return None;
                    }
                }
                Some(vec![])
            }
            _ => None,
        }
    }

    /// The help screen: the keys of this view first, then those that work everywhere, the `:`
    /// commands, and the keys of the other views.
    pub fn help_rows(&self) -> Vec<HelpRow> {
        let here = self.scope();
        let mut out = vec![];
        let section = |out: &mut Vec<HelpRow>, scope: Scope, title: String| {
            let mut entries: Vec<(Action, String, &'static str)> = vec![];
            for b in self.keymap.bindings.iter().filter(|b| b.scope == scope) {
                match entries.iter_mut().find(|(a, _, _)| *a == b.action) {
                    Some(e) => {
                        e.1.push(' ');
                        e.1.push_str(&b.key.to_string());
                    }
                    None => entries.push((b.action, b.key.to_string(), b.description)),
                }
            }
            if entries.is_empty() {
                return;
            }
            out.push(HelpRow::Heading(title));
            out.extend(entries.into_iter().map(|(_, k, d)| HelpRow::Entry(k, d.to_string())));
        };
        if here != Scope::Everywhere {
            section(&mut out, here, format!("Keys in {}", scope_title(here)));
        }
        section(&mut out, Scope::Everywhere, "Keys everywhere".into());
        out.push(HelpRow::Heading(": commands (Tab completes, ↑↓ recall)".into()));
        for c in COMMANDS {
            let aliases = c.aliases.first().map(|a| format!(" (:{a})")).unwrap_or_default();
            out.push(HelpRow::Command(format!(":{}", c.usage), format!("{}{aliases}", c.description)));
        }
        for s in SCOPES.into_iter().filter(|s| *s != here && *s != Scope::Everywhere) {
            section(&mut out, s, format!("Keys in {}", scope_title(s)));
        }
        out
    }

    // ----- keys that do nothing here say why -------------------------------------

    /// A key with no action in this view: say where it works, or that it works nowhere.
    pub fn explain_key(&mut self, key: Key) {
        if matches!(key.code, KeyCode::Null | KeyCode::Modifier(_) | KeyCode::CapsLock | KeyCode::NumLock) {
            return;
        }
        let here = self.scope();
        let elsewhere = self.keymap.bindings.iter().find(|b| b.key == key && b.scope != here && b.scope != Scope::Everywhere);
        let text = match elsewhere {
            Some(b) => format!("{key} ({}) works in {}", b.description, self.how_to_reach(b.scope)),
            None => format!("{key}: no such key here — ? for help"),
        };
        self.message = Some((text, true));
    }

    fn how_to_reach(&self, s: Scope) -> String {
        let press =
            |a: Action| self.keymap.bindings.iter().find(|b| b.action == a).map(|b| format!(" — press {}", b.key)).unwrap_or_default();
        match s {
            Scope::Pipelines => format!("Pipelines{}", press(Action::View1)),
            Scope::Reviews => format!("Reviews{}", press(Action::View2)),
            Scope::Executions => format!("Executions{}", press(Action::View3)),
            Scope::Events => format!("Events{}", press(Action::View4)),
            Scope::Slo => format!("SLO{}", press(Action::View5)),
            Scope::Outbox => format!("Outbox{}", press(Action::View6)),
            Scope::Detail => "an execution's detail — Enter on a row".into(),
            Scope::Pane => "a detail pane — Enter on a history event or an event".into(),
            Scope::Everywhere => "every view".into(),
        }
    }

    // ----- marks -------------------------------------------------------------------

    /// Mark every row the view shows (Reviews, Executions).
    pub fn mark_all(&mut self) {
        let keys: Vec<String> = match self.view {
            View::Reviews => self.visible_reviews().iter().map(|r| format!("tok:{}", r.token)).collect(),
            View::Executions if self.detail_arn.is_none() => self.visible_executions().iter().map(|e| format!("exe:{}", e.arn)).collect(),
            _ => vec![],
        };
        if keys.is_empty() {
            self.message = Some(("mark all: no rows in this view".into(), true));
            return;
        }
        let n = keys.len();
        self.marks.extend(keys);
        self.message = Some((format!("marked all {n} rows shown (u clears)"), false));
    }

    pub fn clear_marks(&mut self) {
        let n = self.marks.len();
        self.marks.clear();
        self.message = Some(if n == 0 { ("no marks to clear".into(), true) } else { (format!("cleared {n} marks"), false) });
    }

    // ----- the lock ------------------------------------------------------------------

    /// Lock now: patient data hidden, dialogs closed.
    pub fn lock(&mut self) {
        self.locked = true;
        self.reveal = None;
        self.pending_reveal = None;
        self.dialog = None;
        self.lock_input.clear();
    }

    /// At the lock screen: typing the operator's name and Enter unlocks; a stray Enter does nothing.
    pub fn lock_key(&mut self, k: KeyEvent) -> Vec<Effect> {
        match k.code {
            KeyCode::Char(c) if !k.modifiers.contains(KeyModifiers::CONTROL) && self.lock_input.chars().count() < LOCK_INPUT_MAX => {
                self.lock_input.push(c);
            }
            KeyCode::Backspace => {
                self.lock_input.pop();
            }
            KeyCode::Esc => self.lock_input.clear(),
            KeyCode::Enter => {
                let typed = std::mem::take(&mut self.lock_input);
                if typed.trim().is_empty() {
                    return vec![];
                }
                if typed.trim() == self.settings.user {
                    self.locked = false;
                    self.message = None;
                    return self.loads();
                }
                self.message = Some(("that is not the operator's name: type it as the lock screen shows it".into(), true));
            }
            _ => {}
        }
        vec![]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_parses_and_unknown_parts_are_named() {
        assert_eq!(parse(""), Ok(None));
        assert_eq!(parse("executions timed-out"), Ok(Some(Command::Executions(Some(StatusArg::Is(ExecutionStatus::TimedOut))))));
        assert_eq!(parse("X redriven"), Ok(Some(Command::Executions(Some(StatusArg::Redriven)))));
        assert_eq!(parse("events Archive.*"), Ok(Some(Command::Events(Some("Archive.*".into())))));
        let e = parse("executions bogus").expect_err("bogus");
        assert!(e.contains("\"bogus\""), "{e}");
        let e = parse("executions failed running").expect_err("extra");
        assert!(e.contains("\"running\" is extra"), "{e}");
        let e = parse("reviews now").expect_err("extra");
        assert!(e.contains("\"now\" is extra"), "{e}");
        let e = parse("frobnicate").expect_err("unknown");
        assert!(e.contains("\"frobnicate\"") && e.contains("pipelines"), "{e}");
        assert!(parse("study").is_err());
        assert!(parse("events (").is_err());
    }

    /// `:events` takes a regex, an EventBridge pattern (`{…}`), or a pattern saved in config.
    #[test]
    fn events_filter_by_regex_pattern_or_saved_name() {
        use crate::backend::FeedEvent;
        use crate::history::HistoryEvent;
        use crate::tui::{keymap::Keymap, theme::Theme};
        use serde_json::json;
        let failures = crate::events::pattern::Pattern::parse(r#"{"detail": {"status": ["FAILED"]}}"#).expect("pattern");
        let settings = super::super::app::Settings { event_patterns: vec![("failures".into(), failures)], ..Default::default() };
        let now = chrono::Utc::now();
        let mut a = App::new(settings, Keymap::default(), Theme::dark(), now);
        let arn = |n: &str| format!("arn:aws:states:us-east-1:000000000000:execution:m:{n}");
        let ev = |seq: i64, n: &str, ty: &str, envelope: serde_json::Value| FeedEvent {
            seq,
            execution_arn: arn(n),
            event: HistoryEvent { id: seq, previous_event_id: seq - 1, timestamp: now, event_type: ty.into(), details: json!(null) },
            state: None,
            envelope: Some(envelope),
        };
        a.events.value = vec![
            ev(1, "a", "ExecutionFailed", json!({"source": "aws.states", "detail": {"status": "FAILED"}})),
            ev(2, "b", "ExecutionSucceeded", json!({"source": "aws.states", "detail": {"status": "SUCCEEDED"}})),
            ev(3, "c", "SLO Breached", json!({"source": "lightbox", "detail-type": "SLO Breached", "detail": {}})),
        ];
        let names =
            |a: &App| a.visible_events().iter().map(|e| e.execution_arn.rsplit(':').next().unwrap_or("").to_string()).collect::<Vec<_>>();
        a.run_command(r#"events {"source": ["lightbox"]}"#);
        assert_eq!(a.view, View::Events);
        assert_eq!(names(&a), vec!["c"]);
        a.run_command(r#"events !{"source": ["lightbox"]}"#);
        assert_eq!(names(&a), vec!["b", "a"], "newest first, inverted");
        a.run_command("events failures");
        assert_eq!(names(&a), vec!["a"]);
        a.run_command("events Succeeded");
        assert_eq!(names(&a), vec!["b"], "anything else is a regex over the row");
        a.run_command("events");
        assert_eq!(names(&a).len(), 3);
        a.run_command(r#"events {"source": "lightbox"}"#);
        let (msg, is_error) = a.message.clone().expect("message");
        assert!(is_error && msg.contains("source: must be an array"), "{msg}");
        assert!(parse(r#"events {"detail": {"n": [{"numeric": [">", "x"]}]}}"#).expect_err("bad").contains("detail.n[0].numeric[1]"));
    }

    #[test]
    fn completion_finishes_unique_names_and_lists_the_rest() {
        let none = |_: Arg| vec![];
        assert_eq!(complete("pip", none), Completion { text: "pipelines".into(), candidates: vec![] });
        assert_eq!(complete("e", none).text, "e");
        assert_eq!(complete("e", none).candidates, vec!["executions".to_string(), "events".to_string()]);
        assert_eq!(complete("ex", none).text, "executions ");
        let st = |a: Arg| if a == Arg::Status { STATUSES.iter().map(|s| s.to_string()).collect() } else { vec![] };
        assert_eq!(complete("executions ti", st).text, "executions timed-out");
        assert_eq!(complete("x r", st).candidates, vec!["redriven".to_string(), "running".to_string()]);
    }

    #[test]
    fn wrapping_keeps_every_word_within_the_width() {
        let lines = wrap(
            "#12 11-22 14:02:31 dr.lee reject scheduled-imaging-ACC-20391 task abcdef01… ok · reason: a fairly long reason text here",
            40,
        );
        assert!(lines.iter().all(|l| l.chars().count() <= 40), "{lines:?}");
        let text =
            "#12 11-22 14:02:31 dr.lee reject scheduled-imaging-ACC-20391 task abcdef01… ok · reason: a fairly long reason text here";
        assert_eq!(lines.join(" ").split_whitespace().collect::<Vec<_>>(), text.split_whitespace().collect::<Vec<_>>(), "no word lost");
        assert_eq!(wrap("short", 40), vec!["short".to_string()]);
        assert!(wrap(&"x".repeat(100), 40).iter().all(|l| l.chars().count() <= 40));
    }

    #[test]
    fn command_help_rows_fit_80_columns() {
        for c in COMMANDS {
            let alias = c.aliases.first().map(|a| a.len() + 4).unwrap_or(0);
            // As help draws it: `  :usage` padded to 22, a space, the description and the alias.
            let w = 2 + (c.usage.len() + 1).max(20) + 1 + c.description.chars().count() + alias;
            assert!(w <= PANE_WIDTH, ":{} is {w} wide", c.name);
        }
    }

    #[test]
    fn history_recalls_older_and_newer_and_the_draft() {
        let mut c = CommandLine::default();
        c.remember("reviews");
        c.remember("executions failed");
        assert_eq!(c.recall("ev", true), "executions failed");
        assert_eq!(c.recall("executions failed", true), "reviews");
        assert_eq!(c.recall("reviews", true), "reviews");
        assert_eq!(c.recall("reviews", false), "executions failed");
        assert_eq!(c.recall("executions failed", false), "ev");
    }
}
