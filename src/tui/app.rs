//! Console state and its pure event handler: `handle(event) -> Vec<Effect>`.
//! Nothing here touches the terminal or the backend; the loop in `tui/mod.rs`
//! runs the effects (loads and mutations) in a background job.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use regex::Regex;

use super::keymap::{Action, Key, Keymap, Scope};
use super::theme::Theme;
use crate::asl::model::Definition;
use crate::backend::{ExecutionSummary, FeedEvent, Pulse};
use crate::engine::{Acting, ESCALATED};
use crate::history::{ExecutionStatus, HistoryEvent};
use crate::ops::consequence::{self, Consequence, Gate};
use crate::ops::project::{Review, StageCounts, Study};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    Pipelines,
    Reviews,
    Executions,
    Events,
    Slo,
    Outbox,
}

impl View {
    pub const ALL: [View; 6] = [View::Pipelines, View::Reviews, View::Executions, View::Events, View::Slo, View::Outbox];
    pub fn title(self) -> &'static str {
        match self {
            View::Pipelines => "Pipelines",
            View::Reviews => "Reviews",
            View::Executions => "Executions",
            View::Events => "Events",
            View::Slo => "SLO",
            View::Outbox => "Outbox",
        }
    }
    pub fn index(self) -> usize {
        View::ALL.iter().position(|v| *v == self).unwrap_or(0)
    }
}

/// Data a pane shows, with whether it is loading and how fresh it is.
#[derive(Debug, Clone)]
pub struct Pane<T> {
    pub value: T,
    pub loaded_at: Option<DateTime<Utc>>,
    pub loading: bool,
    pub error: Option<String>,
}

impl<T: Default> Default for Pane<T> {
    fn default() -> Self {
        Pane { value: T::default(), loaded_at: None, loading: false, error: None }
    }
}

impl<T> Pane<T> {
    pub fn set(&mut self, value: T, at: DateTime<Utc>) {
        self.value = value;
        self.loaded_at = Some(at);
        self.loading = false;
        self.error = None;
    }
    /// Older than twice the refresh interval: shown as stale.
    pub fn stale(&self, now: DateTime<Utc>, refresh: Duration) -> bool {
        self.loaded_at.is_none_or(|t| now - t > refresh * 2)
    }
}

#[derive(Debug, Clone, Default)]
pub struct Detail {
    pub execution: Option<ExecutionSummary>,
    /// Loaded so far: pages arrive as the operator scrolls and as the execution moves on.
    pub history: Vec<HistoryEvent>,
    pub definition: Option<String>,
    /// The id this page continues after (0: the first page).
    pub after: i64,
}

/// History events per page: enough for a screen and scrolling, cheap at 25,000 events.
pub const HISTORY_PAGE: usize = 1000;

/// What the background job should load or do.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    Pulse,
    Studies,
    Reviews,
    Executions(Option<ExecutionStatus>, bool),
    Find(String),
    /// An execution, and its history after event `after`.
    Detail(String, i64),
    /// Events after this feed position (`None`: the latest ones).
    Events(Option<i64>),
    /// The newest audit-log rows (`:audit`).
    Audit,
    /// View 6: the outbox relay's sinks and rows.
    Outbox,
    /// View 6: the dependencies' breakers and holds.
    Dependencies,
    /// The compensation plan of an execution (for `C`'s confirmation).
    CompensationPlan(String),
    /// SLO clocks of these SLOs (view 5).
    Slo(Arc<Vec<crate::ops::slo::Slo>>),
}

/// What an operator asks for. `RevealPhi` shows one study's patient data (`arn`: its
/// execution) for a reason the audit log keeps.
#[derive(Debug, Clone, PartialEq)]
pub enum Mutation {
    Approve {
        tokens: Vec<String>,
        output: String,
        comment: String,
        acting: Acting,
    },
    Reject {
        tokens: Vec<String>,
        error: String,
        cause: String,
        acting: Acting,
    },
    Redrive {
        arns: Vec<String>,
    },
    Stop {
        arns: Vec<String>,
        cause: String,
    },
    Claim {
        token: String,
        claim: bool,
        by: String,
    },
    Escalate {
        tokens: Vec<String>,
        cause: String,
        acting: Acting,
    },
    RevealPhi {
        reason: String,
        arn: String,
    },
    /// View 6: retry, park, requeue, pause or resume (the target is the sink).
    Outbox {
        action: crate::outbox::Action,
    },
    /// Start an execution's compensation (once), for a reason.
    Compensate {
        arn: String,
        reason: String,
    },
    /// View 6: hold, release or reset a dependency `by` an operator, for a reason.
    Dependency {
        op: crate::backend::DependencyOp,
        name: String,
        reason: String,
        by: String,
    },
}

impl Mutation {
    /// The items (task tokens, execution ARNs) this acts on.
    pub fn targets(&self) -> Vec<&str> {
        match self {
            Mutation::Approve { tokens, .. } | Mutation::Reject { tokens, .. } | Mutation::Escalate { tokens, .. } => {
                tokens.iter().map(String::as_str).collect()
            }
            Mutation::Redrive { arns } | Mutation::Stop { arns, .. } => arns.iter().map(String::as_str).collect(),
            Mutation::Claim { token, .. } => vec![token.as_str()],
            Mutation::RevealPhi { .. } | Mutation::Outbox { .. } | Mutation::Dependency { .. } => vec![],
            Mutation::Compensate { arn, .. } => vec![arn.as_str()],
        }
    }

    /// The same action, for the reason the operator gave in its dialog: an escalation's cause,
    /// why a sink is paused or a row parked, why a dependency is held, released or reset.
    pub fn with_reason(self, reason: &str) -> Mutation {
        let reason = reason.trim().to_string();
        match self {
            Mutation::Escalate { tokens, acting, .. } => Mutation::Escalate { tokens, cause: reason, acting },
            Mutation::Outbox { action: crate::outbox::Action::Pause { sink, .. } } => {
                Mutation::Outbox { action: crate::outbox::Action::Pause { sink, reason } }
            }
            Mutation::Outbox { action: crate::outbox::Action::Park { sink, row, .. } } => {
                Mutation::Outbox { action: crate::outbox::Action::Park { sink, row, reason } }
            }
            Mutation::Dependency { op, name, by, .. } => Mutation::Dependency { op, name, reason, by },
            Mutation::Compensate { arn, .. } => Mutation::Compensate { arn, reason },
            Mutation::RevealPhi { arn, .. } => Mutation::RevealPhi { arn, reason },
            other => other,
        }
    }

    pub fn verb(&self) -> &'static str {
        match self {
            Mutation::Approve { .. } => "approve",
            Mutation::Reject { .. } => "reject",
            Mutation::Redrive { .. } => "redrive",
            Mutation::Stop { .. } => "stop",
            Mutation::Claim { claim: true, .. } => "claim",
            Mutation::Claim { claim: false, .. } => "unclaim",
            Mutation::Escalate { .. } => "escalate",
            Mutation::RevealPhi { .. } => "reveal-phi",
            Mutation::Outbox { action } => action.name(),
            Mutation::Compensate { .. } => "compensate",
            Mutation::Dependency { op, .. } => op.audit_name(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    Load(Request),
    Mutate(Mutation),
    /// `:ctx NAME`: make the named context live; results of the new control plane carry
    /// `generation`.
    Switch {
        name: String,
        generation: u64,
    },
    Quit,
}

/// Results the background job sends back. `Definitions`: the definitions behind loaded
/// reviews and redrivable executions, by execution ARN, for the consequences dialogs state.
/// `Audit`: audit rows, and the inputs of the executions they name (to mask their free text).
#[derive(Debug, Clone)]
pub enum Loaded {
    Pulse(Pulse),
    Studies(Vec<Study>),
    Reviews(Vec<Review>),
    Executions(Vec<ExecutionSummary>),
    Detail(Box<Detail>),
    Events(Vec<FeedEvent>),
    Found {
        needle: String,
        hits: Vec<crate::backend::Found>,
    },
    Audit {
        rows: Vec<crate::audit::AuditRecord>,
        inputs: HashMap<String, String>,
    },
    Done {
        verb: String,
        ok: usize,
        failed: Vec<String>,
    },
    Failed {
        what: String,
        error: String,
    },
    /// What this backend cannot show at all (dependency breakers on AWS, say): said in the
    /// pane, not as a failure in the footer on every refresh.
    Unavailable {
        what: String,
        why: String,
    },
    Definitions(HashMap<String, Arc<Definition>>),
    Outbox(crate::backend::OutboxSnapshot),
    /// View 6: every configured dependency's breaker and hold.
    Dependencies(Vec<crate::engine::dependencies::DependencyStatus>),
    /// The open execution's compensation links, and what `C` would do (with each detail load).
    CompensationInfo {
        arn: String,
        info: Box<crate::ops::compensation::Info>,
    },
    /// `C`'s plan: what compensating would do, or why it cannot.
    CompensationPlan {
        arn: String,
        plan: std::result::Result<Box<crate::ops::compensation::Outcome>, String>,
    },
    /// SLO clocks (open, and closed within the compliance window).
    Slo(Vec<crate::ops::slo::Clock>),
    /// The named context is live: what follows comes from its control plane.
    Switched {
        name: String,
        backend: String,
        location: String,
        read_only: bool,
        user: String,
        /// Its theme and accent (`None`: the console's stays).
        theme: Option<Box<super::theme::Theme>>,
        /// Its data is the demo hospital's.
        demo: bool,
        generation: u64,
    },
    /// The named context could not be made live; the current one stays.
    SwitchFailed {
        name: String,
        error: String,
    },
}

#[derive(Debug, Clone)]
pub enum AppEvent {
    Key(KeyEvent),
    Tick(DateTime<Utc>),
    /// A result of the live control plane.
    Loaded(Loaded, DateTime<Utc>),
    /// A result from the jobs thread, with the generation of the control plane that made it:
    /// one from a context switched away from is dropped.
    LoadedFrom(Loaded, DateTime<Utc>, u64),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Field {
    Output,
    Comment,
    Reason,
}

/// One review a dialog acts on, captured when the dialog opened: refreshes while it is
/// open change nothing about what it acts on.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    /// The task token.
    pub id: String,
    /// Accession and study, as the operator saw them.
    pub label: String,
    /// The state (gate) the token waits in.
    pub state: String,
    pub claimed_by: Option<String>,
    /// Where answers lead, when the definition is known.
    pub gate: Option<Gate>,
}

/// Lines naming each claim an override takes over, with the reason.
pub fn override_lines(items: &[Item], acting: &Acting) -> Vec<String> {
    let Some(reason) = &acting.override_reason else { return vec![] };
    items
        .iter()
        .filter_map(|i| {
            let h = i.claimed_by.as_ref().filter(|h| Some(h.as_str()) != acting.user.as_deref())?;
            Some(format!("OVERRIDES {h}'s claim on {} (reason: {reason}; audited)", i.label))
        })
        .collect()
}

/// Consequence lines for `items`: one per gate and outcome, each followed by its items.
pub fn consequence_lines(items: &[Item], outcome: impl Fn(&Gate) -> Consequence) -> Vec<String> {
    let mut groups: Vec<(String, String, Vec<&Item>)> = vec![];
    for it in items {
        let text = match &it.gate {
            Some(g) => outcome(g).text,
            None => "consequence unknown: the definition is not loaded yet".to_string(),
        };
        match groups.iter_mut().find(|(s, t, _)| *s == it.state && *t == text) {
            Some(g) => g.2.push(it),
            None => groups.push((it.state.clone(), text, vec![it])),
        }
    }
    let mut lines = vec![];
    for (state, text, its) in groups {
        lines.push(format!("at {state} ({}): {text}", its.len()));
        lines.extend(its.iter().map(|i| format!("  · {}", i.label)));
    }
    lines
}

#[derive(Debug, Clone, PartialEq)]
pub enum Dialog {
    /// Shows exactly what will happen; `y` confirms.
    Confirm {
        title: String,
        lines: Vec<String>,
        mutation: Mutation,
    },
    Approve {
        title: String,
        items: Vec<Item>,
        output: String,
        comment: String,
        field: Field,
        /// What approving does, per gate.
        then: Vec<String>,
        error: Option<String>,
        acting: Acting,
    },
    Reject {
        title: String,
        items: Vec<Item>,
        code: usize,
        text: String,
        acting: Acting,
    },
    /// Some of `items` are claimed by someone else: answering needs a reason to override.
    Override {
        action: Action,
        items: Vec<Item>,
        /// The reason code picked (an index into `Settings::reason_codes`), none until picked.
        code: Option<usize>,
        reason: String,
    },
    /// Shows what will happen and asks why: Enter carries out `mutation` with the reason
    /// (escalate, pause a sink, park a row, hold/release/reset a dependency).
    Reason {
        title: String,
        lines: Vec<String>,
        mutation: Mutation,
        code: Option<usize>,
        reason: String,
    },
    /// Compensate the execution named when the dialog opened: the plan, and a reason.
    Compensate {
        arn: String,
        title: String,
        lines: Vec<String>,
        code: Option<usize>,
        reason: String,
    },
    /// Reveal the patient data of the study named when the dialog opened.
    Reveal {
        code: Option<usize>,
        reason: String,
        arn: String,
        label: String,
    },
    Input {
        kind: InputKind,
        text: String,
    },
    Help,
    Message {
        title: String,
        text: String,
    },
    /// Several studies matched `:study`: `items` are (label, execution ARN).
    Pick {
        title: String,
        items: Vec<(String, String)>,
        sel: usize,
    },
    /// A scrolling pane of text (`:audit`, `:ctx`).
    Lines {
        title: String,
        lines: Vec<String>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputKind {
    Filter,
    Command,
}

#[derive(Debug, Clone)]
pub struct Filter {
    pub text: String,
    pub regex: Regex,
    pub invert: bool,
    /// An EventBridge event pattern (text starting with `{`, or a name in config's
    /// `[[event_patterns]]`): the Events view keeps the events it matches; other views search
    /// for the text itself.
    pub pattern: Option<crate::events::pattern::Pattern>,
}

impl Filter {
    pub fn parse(text: &str) -> Result<Filter, String> {
        Filter::parse_named(text, &[])
    }
    /// [`Filter::parse`], where a name of `named` stands for that pattern.
    pub fn parse_named(text: &str, named: &[(String, crate::events::pattern::Pattern)]) -> Result<Filter, String> {
        let (invert, pat) = match text.strip_prefix('!') {
            Some(p) => (true, p),
            None => (false, text),
        };
        let named_pattern = named.iter().find(|(n, _)| n == pat.trim()).map(|(_, p)| p.clone());
        if pat.trim_start().starts_with('{') || named_pattern.is_some() {
            let pattern = match named_pattern {
                Some(p) => p,
                None => crate::events::pattern::Pattern::parse(pat.trim()).map_err(|e| e.to_string())?,
            };
            let regex = regex::RegexBuilder::new(&regex::escape(pat)).case_insensitive(true).build().map_err(|e| e.to_string())?;
            return Ok(Filter { text: text.to_string(), regex, invert, pattern: Some(pattern) });
        }
        let regex = regex::RegexBuilder::new(pat)
            .case_insensitive(true)
            .build()
            .map_err(|e| format!("filter {pat:?} is not a valid regex: {e}"))?;
        Ok(Filter { text: text.to_string(), regex, invert, pattern: None })
    }
    pub fn keeps(&self, row: &str) -> bool {
        self.regex.is_match(row) != self.invert
    }
    /// Whether an event's EventBridge form is kept by this filter's pattern (`None`: the
    /// filter has no pattern).
    pub fn keeps_event(&self, envelope: Option<&serde_json::Value>) -> Option<bool> {
        let p = self.pattern.as_ref()?;
        Some(envelope.is_some_and(|v| p.matches(v)) != self.invert)
    }
}

pub struct Settings {
    pub user: String,
    pub read_only: bool,
    pub demo: bool,
    pub backend: String,
    pub location: String,
    pub context: String,
    pub refresh: Duration,
    pub idle_lock: Duration,
    pub reject_reasons: Vec<String>,
    /// The reason codes every dialog that asks why offers (`[reasons] codes`).
    pub reason_codes: crate::phi::ReasonCodes,
    /// Times are shown in this offset (the operator's local time).
    pub tz: chrono::FixedOffset,
    /// Which fields are patient identifiers, and how they are masked.
    pub phi: crate::phi::Masker,
    /// How long a reveal lasts.
    pub reveal_for: Duration,
    /// The contexts configured (`[contexts.NAME]`), for `:ctx`.
    pub contexts: Vec<String>,
    /// The SLOs view 5 shows clocks of.
    pub slo: Arc<Vec<crate::ops::slo::Slo>>,
    /// Named event patterns (`[[event_patterns]]`), for `:events NAME`.
    pub event_patterns: Vec<(String, crate::events::pattern::Pattern)>,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            user: "operator".into(),
            read_only: false,
            demo: false,
            backend: "local".into(),
            location: String::new(),
            context: "local".into(),
            refresh: Duration::seconds(2),
            idle_lock: Duration::minutes(10),
            reject_reasons: vec![
                "Review.Rejected: draft does not match the images".into(),
                "Review.WrongPatient: study attached to the wrong patient".into(),
                "Review.Incomplete: images incomplete, re-acquire".into(),
                "Review.NeedsSpecialist: needs a subspecialty reader".into(),
            ],
            reason_codes: crate::phi::ReasonCodes::default(),
            tz: *chrono::Local::now().offset(),
            phi: crate::phi::Masker::default(),
            reveal_for: Duration::minutes(i64::from(crate::phi::DEFAULT_REVEAL_MINUTES)),
            contexts: vec![],
            slo: Arc::new(vec![]),
            event_patterns: vec![],
        }
    }
}

/// One study whose patient data shows, until a time.
#[derive(Debug, Clone, PartialEq)]
pub struct Revealed {
    /// The study's execution.
    pub arn: String,
    /// What the banner calls it (accession or execution name).
    pub label: String,
    pub until: DateTime<Utc>,
}

pub struct App {
    pub settings: Settings,
    pub keymap: Keymap,
    pub theme: Theme,
    pub view: View,
    /// Executions › detail: the ARN opened, if any.
    pub detail_arn: Option<String>,
    pub raw_history: bool,
    /// The selected row's index in each view, kept in step with `sel_keys`.
    pub sel: [usize; 6],
    /// The selected item in each view by identity (execution ARN, task token, feed position)
    /// and how to name it: the selection follows the item, not the row number.
    pub sel_keys: [Option<(String, String)>; 6],
    pub detail_scroll: usize,
    pub filters: [Option<Filter>; 6],
    pub status_filter: Option<ExecutionStatus>,
    /// Executions view: only those redriven at least once.
    pub redriven_filter: bool,
    /// The execution whose compensation plan `C` asked for (its dialog opens when it loads).
    pub pending_compensation: Option<String>,
    /// The open execution's compensation links and offer (by its ARN), from the last detail load.
    pub compensation_info: Option<(String, Box<crate::ops::compensation::Info>)>,
    /// Detail: show input/output JSON instead of the history.
    pub show_io: bool,
    /// Scrolling reached the end of the loaded history: load the next page.
    pub want_page: bool,
    pub marks: BTreeSet<String>,
    pub dialog: Option<Dialog>,
    /// Rows a long dialog (a bulk action's list) is scrolled by.
    pub dialog_scroll: u16,
    pub message: Option<(String, bool)>,
    /// The study whose patient data shows (one at a time), once the audit log took the reveal.
    pub reveal: Option<Revealed>,
    /// A reveal sent to the audit log and not yet confirmed.
    pub pending_reveal: Option<Revealed>,
    pub locked: bool,
    pub now: DateTime<Utc>,
    pub last_input: DateTime<Utc>,
    pub last_refresh: Option<DateTime<Utc>>,
    pub pulse: Pane<Pulse>,
    pub studies: Pane<Vec<Study>>,
    pub counts: StageCounts,
    pub throughput: Vec<u64>,
    pub reviews: Pane<Vec<Review>>,
    pub executions: Pane<Vec<ExecutionSummary>>,
    pub detail: Pane<Detail>,
    pub events: Pane<Vec<FeedEvent>>,
    /// View 6.
    pub outbox: super::outbox::OutboxView,
    /// View 5: SLO clocks (their anchors; readings are taken from `now` at every frame).
    pub slo: Pane<Vec<crate::ops::slo::Clock>>,
    /// What the operator acted on: when one of these leaves a view, that is expected and
    /// not announced.
    pub acted: BTreeSet<String>,
    /// Definitions by execution ARN, for the consequences confirmations state.
    pub definitions: HashMap<String, Arc<Definition>>,
    pub quit: bool,
    /// The `:` command line's history and completions.
    pub cmdline: super::command::CommandLine,
    /// Where Esc goes back to, newest last.
    pub back: Vec<super::command::Location>,
    /// What the operator typed at the lock screen.
    pub lock_input: String,
    /// The detail pane, the execution's path, scroll positions, the paused Events tail.
    pub read: super::detail::ReadState,
    /// The generation of the live control plane (it grows at each switch of context).
    pub generation: u64,
    /// The generation the last `:ctx NAME` asked for.
    pub asked_generation: u64,
}

pub(super) const EVENTS_KEPT: usize = 2000;
const PAGE: usize = 15;

impl App {
    pub fn new(settings: Settings, keymap: Keymap, theme: Theme, now: DateTime<Utc>) -> App {
        App {
            settings,
            keymap,
            theme,
            view: View::Pipelines,
            detail_arn: None,
            raw_history: false,
            sel: [0; 6],
            sel_keys: Default::default(),
            detail_scroll: 0,
            filters: Default::default(),
            status_filter: None,
            redriven_filter: false,
            pending_compensation: None,
            compensation_info: None,
            show_io: false,
            want_page: false,
            marks: BTreeSet::new(),
            dialog: None,
            dialog_scroll: 0,
            message: None,
            reveal: None,
            pending_reveal: None,
            locked: false,
            now,
            last_input: now,
            last_refresh: None,
            pulse: Pane::default(),
            studies: Pane::default(),
            counts: StageCounts::default(),
            throughput: vec![],
            reviews: Pane::default(),
            executions: Pane::default(),
            detail: Pane::default(),
            events: Pane::default(),
            outbox: Default::default(),
            slo: Pane::default(),
            acted: BTreeSet::new(),
            definitions: HashMap::new(),
            quit: false,
            cmdline: Default::default(),
            back: vec![],
            lock_input: String::new(),
            read: Default::default(),
            generation: 0,
            asked_generation: 0,
        }
    }

    pub fn scope(&self) -> Scope {
        if self.pane_open() {
            return Scope::Pane;
        }
        match (self.view, &self.detail_arn) {
            (View::Executions, Some(_)) => Scope::Detail,
            (View::Executions, None) => Scope::Executions,
            (View::Pipelines, _) => Scope::Pipelines,
            (View::Reviews, _) => Scope::Reviews,
            (View::Events, _) => Scope::Events,
            (View::Slo, _) => Scope::Slo,
            (View::Outbox, _) => Scope::Outbox,
        }
    }

    /// The loads the current view needs (a newer request replaces a pending one in the job).
    pub fn refresh_requests(&self) -> Vec<Request> {
        let mut r = vec![Request::Pulse];
        match self.view {
            View::Pipelines => r.push(Request::Studies),
            View::Reviews => r.push(Request::Reviews),
            View::Executions => match &self.detail_arn {
                Some(arn) => r.push(Request::Detail(arn.clone(), self.detail.value.history.last().map(|e| e.id).unwrap_or(0))),
                None => r.push(Request::Executions(self.status_filter, self.redriven_filter)),
            },
            View::Events => r.push(Request::Events(self.events_after())),
            View::Outbox => r.extend([Request::Outbox, Request::Dependencies]),
            // The reviews too: `e` escalates the selected clock's review.
            View::Slo => r.extend([Request::Slo(self.settings.slo.clone()), Request::Reviews]),
        }
        r
    }

    pub(super) fn loads(&mut self) -> Vec<Effect> {
        for req in self.refresh_requests() {
            match req {
                Request::Studies => self.studies.loading = true,
                Request::Reviews => self.reviews.loading = true,
                Request::Executions(..) => self.executions.loading = true,
                Request::Find(_) | Request::Audit | Request::CompensationPlan(_) => {}
                Request::Slo(_) => self.slo.loading = true,
                Request::Detail(..) => self.detail.loading = true,
                Request::Events(_) => self.events.loading = true,
                Request::Pulse => self.pulse.loading = true,
                Request::Outbox => self.outbox.data.loading = true,
                Request::Dependencies => self.outbox.deps.loading = true,
            }
        }
        self.refresh_requests().into_iter().map(Effect::Load).collect()
    }

    // ----- rows as the views filter them ------------------------------------

    // Each filters on the row the table draws (every column, uncut, patient fields as shown)
    // and its hidden searchable text: see `tui/rows.rs`.

    pub fn visible_studies(&self) -> Vec<&Study> {
        let f = &self.filters[View::Pipelines.index()];
        self.studies.value.iter().filter(|s| f.as_ref().is_none_or(|f| self.study_row(s, true).kept_by(f))).collect()
    }

    pub fn visible_reviews(&self) -> Vec<&Review> {
        let f = &self.filters[View::Reviews.index()];
        self.reviews.value.iter().filter(|r| f.as_ref().is_none_or(|f| self.review_row(r, true).kept_by(f))).collect()
    }

    pub fn visible_executions(&self) -> Vec<&ExecutionSummary> {
        let f = &self.filters[View::Executions.index()];
        self.executions.value.iter().filter(|e| f.as_ref().is_none_or(|f| self.execution_table_row(e, true).kept_by(f))).collect()
    }

    pub fn visible_events(&self) -> Vec<&FeedEvent> {
        let f = &self.filters[View::Events.index()];
        self.events
            .value
            .iter()
            .rev()
            .filter(|e| f.as_ref().is_none_or(|f| f.keeps_event(e.envelope.as_ref()).unwrap_or_else(|| self.event_row(e, true).kept_by(f))))
            .collect()
    }

    fn row_count(&self) -> usize {
        match self.view {
            View::Pipelines => self.visible_studies().len(),
            View::Reviews => self.visible_reviews().len(),
            View::Executions if self.detail_arn.is_some() => self.detail.value.history.len(),
            View::Executions => self.visible_executions().len(),
            View::Events => self.visible_events().len(),
            View::Outbox if self.outbox.focus == super::outbox::Focus::Dependencies => self.visible_dependencies().len(),
            View::Outbox => self.outbox_rows().len(),
            View::Slo => self.visible_clocks().len(),
        }
    }

    pub fn selected(&self) -> usize {
        if self.view == View::Executions && self.detail_arn.is_some() {
            return self.detail_scroll;
        }
        if self.view == View::Outbox && self.outbox.focus == super::outbox::Focus::Dependencies {
            return self.outbox.dep_sel;
        }
        self.sel[self.view.index()]
    }

    fn set_selected(&mut self, i: usize) {
        let n = self.row_count();
        let i = if n == 0 { 0 } else { i.min(n - 1) };
        if self.view == View::Executions && self.detail_arn.is_some() {
            self.detail_scroll = i;
            // Near the end of what is loaded: fetch the next page now rather than at the next refresh.
            if n >= HISTORY_PAGE && i + HISTORY_PAGE / 4 >= n {
                self.want_page = true;
            }
        } else if self.view == View::Outbox && self.outbox.focus == super::outbox::Focus::Dependencies {
            self.outbox.dep_sel = i;
            self.outbox.dep_key = self.visible_dependencies().get(i).map(|d| d.name.clone());
        } else {
            self.sel[self.view.index()] = i;
            self.sel_keys[self.view.index()] = self.row_key(self.view, i);
        }
    }

    /// The identity and the name of row `i` of a list view.
    pub fn row_key(&self, v: View, i: usize) -> Option<(String, String)> {
        match v {
            View::Pipelines => self.visible_studies().get(i).map(|s| (s.execution_arn.clone(), format!("study {}", s.accession))),
            View::Reviews => self.visible_reviews().get(i).map(|r| (r.token.clone(), format!("review of {} at {}", r.accession, r.state))),
            View::Executions => self.visible_executions().get(i).map(|e| (e.arn.clone(), format!("execution {}", e.name))),
            View::Events => self.visible_events().get(i).map(|e| {
                let name = e.execution_arn.rsplit(':').next().unwrap_or_default();
                (e.seq.to_string(), format!("event {} of {name}", e.event.event_type))
            }),
            View::Outbox => self.outbox_rows().get(i).map(|r| (format!("{}#{}", r.sink, r.row_id), format!("outbox row {}", r.row_id))),
            View::Slo => self.visible_clocks().get(i).map(|(c, _)| {
                let name = c.execution_arn.rsplit(':').next().unwrap_or_default();
                (super::slo::clock_key(c), format!("clock {} of {name}", c.slo))
            }),
        }
    }

    fn row_keys(&self, v: View) -> Vec<String> {
        match v {
            View::Pipelines => self.visible_studies().iter().map(|s| s.execution_arn.clone()).collect(),
            View::Reviews => self.visible_reviews().iter().map(|r| r.token.clone()).collect(),
            View::Executions => self.visible_executions().iter().map(|e| e.arn.clone()).collect(),
            View::Events => self.visible_events().iter().map(|e| e.seq.to_string()).collect(),
            View::Outbox => self.outbox_rows().iter().map(|r| format!("{}#{}", r.sink, r.row_id)).collect(),
            View::Slo => self.visible_clocks().iter().map(|(c, _)| super::slo::clock_key(c)).collect(),
        }
    }

    /// After the rows of view `v` changed (a refresh, new rows above, a filter): put the
    /// selection back on the same item. When it is gone, say so (if `announce`) and move to
    /// the row that took its place, acting on nothing.
    pub(super) fn follow_selection(&mut self, v: View, announce: bool) {
        let i = v.index();
        let keys = self.row_keys(v);
        let old = self.sel_keys[i].clone();
        if let Some((k, _)) = &old
            && let Some(p) = keys.iter().position(|x| x == k)
        {
            self.sel[i] = p;
            return;
        }
        let n = keys.len();
        self.sel[i] = if n == 0 { 0 } else { self.sel[i].min(n - 1) };
        self.sel_keys[i] = self.row_key(v, self.sel[i]);
        if let Some((k, label)) = old
            && announce
            && !self.acted.contains(&k)
        {
            let now = match &self.sel_keys[i] {
                Some((_, l)) => format!("; now on {l}"),
                None => String::new(),
            };
            self.message = Some((format!("the selected {label} is no longer in this view{now}"), true));
        }
    }

    // ----- the handler --------------------------------------------------------

    pub fn handle(&mut self, ev: AppEvent) -> Vec<Effect> {
        match ev {
            AppEvent::Tick(now) => self.tick(now),
            AppEvent::Loaded(l, at) => {
                self.loaded(l, at);
                vec![]
            }
            AppEvent::LoadedFrom(l, at, generation) => {
                // A switch makes its generation the live one; anything else must be of the live one.
                let newer_switch = matches!(l, Loaded::Switched { .. }) && generation > self.generation;
                if generation == self.generation || newer_switch {
                    self.loaded(l, at);
                } else if let Loaded::Done { verb, ok, failed } = l {
                    // An action confirmed before the switch ran in the context it was confirmed
                    // in: say how it went, but nothing of that context's data is shown.
                    let msg = if failed.is_empty() {
                        format!("{verb}: {ok} done (in the previous context)")
                    } else {
                        format!("{verb}: {ok} done, {} failed (in the previous context): {}", failed.len(), failed.join("; "))
                    };
                    self.message = Some((msg, !failed.is_empty()));
                } else {
                    tracing::debug!(generation, live = self.generation, "dropped a result of a previous context");
                }
                vec![]
            }
            AppEvent::Key(k) => {
                self.last_input = self.now;
                if self.locked {
                    return self.lock_key(k);
                }
                if self.dialog.is_some()
                    && let Some(effects) = self.modal_key(k)
                {
                    return effects;
                }
                if self.dialog.is_some() {
                    let effects = self.dialog_key(k);
                    for e in &effects {
                        if let Effect::Mutate(m) = e {
                            if self.acted.len() > 10_000 {
                                self.acted.clear();
                            }
                            self.acted.extend(m.targets().into_iter().map(str::to_string));
                            // The row it was done from (a clock, an outbox row) may leave
                            // because of it: expected, not announced over the outcome.
                            if matches!(self.view, View::Slo | View::Outbox)
                                && let Some((k, _)) = &self.sel_keys[self.view.index()]
                            {
                                self.acted.insert(k.clone());
                            }
                        }
                    }
                    return effects;
                }
                self.dialog_scroll = 0;
                let key = Key::from_event(&k);
                let mut effects = match self.keymap.action(key, self.scope()) {
                    Some(a) if self.pane_open() => self.pane_action(a),
                    Some(a) => self.action(a),
                    None => {
                        self.explain_key(key);
                        vec![]
                    }
                };
                if std::mem::take(&mut self.want_page)
                    && let Some(arn) = &self.detail_arn
                {
                    let after = self.detail.value.history.last().map(|e| e.id).unwrap_or(0);
                    effects.push(Effect::Load(Request::Detail(arn.clone(), after)));
                }
                effects
            }
        }
    }

    fn tick(&mut self, now: DateTime<Utc>) -> Vec<Effect> {
        self.now = now;
        if !self.locked && now - self.last_input > self.settings.idle_lock {
            self.lock();
            return vec![];
        }
        if self.reveal.as_ref().is_some_and(|r| now >= r.until) {
            self.reveal = None;
            self.message = Some(("patient data hidden again: the reveal expired".into(), false));
        }
        if self.locked {
            return vec![];
        }
        if self.last_refresh.is_none_or(|t| now - t >= self.settings.refresh) {
            self.last_refresh = Some(now);
            return self.loads();
        }
        vec![]
    }

    fn loaded(&mut self, l: Loaded, at: DateTime<Utc>) {
        let changed = match &l {
            Loaded::Studies(_) => Some(View::Pipelines),
            Loaded::Reviews(_) => Some(View::Reviews),
            Loaded::Executions(_) => Some(View::Executions),
            Loaded::Events(_) => Some(View::Events),
            Loaded::Slo(_) => Some(View::Slo),
            Loaded::Outbox(_) => Some(View::Outbox),
            _ => None,
        };
        match l {
            Loaded::Pulse(p) => self.pulse.set(p, at),
            Loaded::Outbox(o) => self.outbox.data.set(o, at),
            Loaded::Dependencies(d) => {
                self.outbox.deps.set(d, at);
                self.follow_dependency();
            }
            Loaded::Studies(s) => {
                self.counts = StageCounts::of(&s);
                let signed =
                    s.iter().filter(|x| x.stage == Some(crate::ops::Stage::Signed) || x.stage == Some(crate::ops::Stage::Billed)).count()
                        as u64;
                self.throughput.push(signed);
                if self.throughput.len() > 60 {
                    self.throughput.remove(0);
                }
                self.studies.set(s, at);
            }
            Loaded::Reviews(r) => {
                self.marks.retain(|m| !m.starts_with("tok:") || r.iter().any(|x| format!("tok:{}", x.token) == *m));
                self.reviews.set(r, at);
            }
            Loaded::Executions(e) => self.executions.set(e, at),
            Loaded::CompensationInfo { arn, info } => self.compensation_info = Some((arn, info)),
            Loaded::CompensationPlan { arn, plan } => {
                if self.pending_compensation.as_deref() == Some(arn.as_str()) && self.dialog.is_none() {
                    self.pending_compensation = None;
                    self.compensation_dialog(arn, plan);
                }
            }
            Loaded::Slo(c) => self.slo.set(c, at),
            Loaded::Definitions(d) => {
                if self.definitions.len() + d.len() > 20_000 {
                    self.definitions.clear();
                }
                self.definitions.extend(d);
            }
            Loaded::Found { needle, hits } => self.found(needle, hits),
            Loaded::Audit { rows, inputs } => self.audit_loaded(rows, inputs),
            Loaded::Detail(d) => {
                let same = d.execution.as_ref().is_none_or(|e| Some(&e.arn) == self.detail_arn.as_ref());
                if !same {
                    // A page for an execution no longer open.
                } else if d.after > 0 && d.after == self.detail.value.history.last().map(|e| e.id).unwrap_or(0) {
                    let mut cur = std::mem::take(&mut self.detail.value);
                    cur.history.extend(d.history);
                    cur.execution = d.execution;
                    if d.definition.is_some() {
                        cur.definition = d.definition;
                    }
                    self.detail.set(cur, at);
                } else if d.after == 0 {
                    self.detail.set(*d, at);
                }
                self.detail_loaded();
            }
            Loaded::Events(e) => {
                if let Some(mut e) = self.hold_events(e, at) {
                    let mut all = std::mem::take(&mut self.events.value);
                    all.append(&mut e);
                    if all.len() > EVENTS_KEPT {
                        all.drain(..all.len() - EVENTS_KEPT);
                    }
                    self.events.set(all, at);
                }
            }
            Loaded::Done { verb, ok, failed } => {
                if verb == "reveal-phi" {
                    // Shown only once the audit log has the reveal.
                    let pending = self.pending_reveal.take();
                    if ok > 0 && failed.is_empty() {
                        self.reveal = pending.map(|r| Revealed { until: self.now + self.settings.reveal_for, ..r });
                    }
                }
                let msg = if failed.is_empty() {
                    format!("{verb}: {ok} done")
                } else {
                    format!("{verb}: {ok} done, {} failed: {}", failed.len(), failed.join("; "))
                };
                self.message = Some((msg, !failed.is_empty()));
                self.marks.clear();
            }
            Loaded::Switched { name, backend, location, read_only, user, theme, demo, generation } => {
                if let Some(t) = theme {
                    self.theme = *t;
                }
                self.switched(name, backend, location, read_only, user, generation);
                self.settings.demo = demo;
            }
            Loaded::SwitchFailed { name, error } => {
                self.message = Some((format!("ctx: {name} not switched to: {error} (still on {})", self.settings.context), true));
            }
            Loaded::Failed { what, error } => {
                self.message = Some((format!("{what}: {error}"), true));
                self.pane_error(&what, error);
            }
            Loaded::Unavailable { what, why } => self.pane_error(&what, why),
        }
        if let Some(v) = changed {
            let shown = self.view == v && !(v == View::Executions && self.detail_arn.is_some());
            self.follow_selection(v, shown);
        }
        let n = self.row_count();
        if self.selected() >= n && n > 0 {
            self.set_selected(n - 1);
        }
    }

    /// A load's error, shown in its pane.
    fn pane_error(&mut self, what: &str, error: String) {
        match what {
            "studies" => self.studies.error = Some(error),
            "reviews" => self.reviews.error = Some(error),
            "executions" => self.executions.error = Some(error),
            "detail" => self.detail.error = Some(error),
            "events" => self.events.error = Some(error),
            "outbox" => self.outbox.data.error = Some(error),
            "dependencies" => self.outbox.deps.error = Some(error),
            "slo" => self.slo.error = Some(error),
            _ => {}
        }
    }

    /// A new context is live: forget every piece of the old one's data (panes, selections,
    /// marks, the open execution, a reveal, dialogs about its items), name the new one in the
    /// header, and load afresh at the next tick.
    fn switched(&mut self, name: String, backend: String, location: String, read_only: bool, user: String, generation: u64) {
        let settings = std::mem::take(&mut self.settings);
        let mut fresh = App::new(settings, self.keymap.clone(), self.theme.clone(), self.now);
        fresh.cmdline = std::mem::take(&mut self.cmdline);
        fresh.last_input = self.last_input;
        fresh.locked = self.locked;
        fresh.view = self.view;
        fresh.asked_generation = self.asked_generation;
        fresh.generation = generation;
        *self = fresh;
        self.settings.context = name.clone();
        self.settings.backend = backend.clone();
        self.settings.location = location.clone();
        self.settings.read_only = read_only;
        self.settings.user = user;
        self.message = Some((
            format!("ctx: {name} is live (backend {backend}{})", if location.is_empty() { String::new() } else { format!(", {location}") }),
            false,
        ));
    }

    pub(super) fn switch(&mut self, v: View) -> Vec<Effect> {
        if v != self.view {
            self.remember();
            // View 6 opens on its sinks.
            self.outbox.focus = super::outbox::Focus::Sinks;
        }
        self.view = v;
        self.message = None;
        self.loads()
    }

    /// Whether `a` applies to what is selected: the footer offers only those (a RUNNING
    /// execution is offered stop, not redrive; a finished one redrive, not stop). With marks,
    /// the dialog sorts out which items each applies to.
    pub fn applies(&self, a: Action) -> bool {
        let in_detail = self.scope() == Scope::Detail;
        match a {
            Action::SwitchHalf if in_detail => return self.show_io,
            Action::ToggleWrap if in_detail => return self.raw_history && !self.show_io,
            _ => {}
        }
        if self.view == View::Outbox {
            return self.outbox_applies(a);
        }
        if !matches!(a, Action::Redrive | Action::Stop) || !self.marks.is_empty() {
            return true;
        }
        let status = match &self.detail_arn {
            Some(arn) => self.execution_row(arn).map(|e| e.status),
            None => self.visible_executions().get(self.selected()).map(|e| e.status),
        };
        match status {
            None => true,
            Some(s) if a == Action::Stop => s == ExecutionStatus::Running,
            Some(s) => s != ExecutionStatus::Running && s != ExecutionStatus::Succeeded,
        }
    }

    fn refuse_read_only(&mut self, a: Action) -> bool {
        if self.settings.read_only && a.mutates() {
            self.message = Some((format!("read-only: {} is disabled in this context", a.name()), true));
            return true;
        }
        false
    }

    /// Marked rows of the current view, or the selected one.
    fn targets_reviews(&self) -> Vec<&Review> {
        let rows = self.visible_reviews();
        let marked: Vec<&Review> = rows.iter().copied().filter(|r| self.marks.contains(&format!("tok:{}", r.token))).collect();
        if !marked.is_empty() {
            return marked;
        }
        rows.get(self.selected()).copied().into_iter().collect()
    }

    fn targets_executions(&self) -> Vec<String> {
        if let Some(arn) = &self.detail_arn {
            return vec![arn.clone()];
        }
        let rows = self.visible_executions();
        let marked: Vec<String> = rows.iter().filter(|e| self.marks.contains(&format!("exe:{}", e.arn))).map(|e| e.arn.clone()).collect();
        if !marked.is_empty() {
            return marked;
        }
        rows.get(self.selected()).map(|e| vec![e.arn.clone()]).unwrap_or_default()
    }

    pub(super) fn action(&mut self, a: Action) -> Vec<Effect> {
        if self.refuse_read_only(a) {
            return vec![];
        }
        if let Some(e) = self.read_action(a) {
            return e;
        }
        if matches!(a, Action::NextView | Action::PrevView)
            && self.view == View::Outbox
            && let Some(e) = self.outbox_tab(a == Action::NextView)
        {
            return e;
        }
        let n = self.row_count();
        let cur = self.selected();
        match a {
            Action::Quit => {
                self.quit = true;
                vec![Effect::Quit]
            }
            Action::Down => {
                self.set_selected(cur + 1);
                vec![]
            }
            Action::Up => {
                self.set_selected(cur.saturating_sub(1));
                vec![]
            }
            Action::Top => {
                self.set_selected(0);
                vec![]
            }
            Action::Bottom => {
                self.set_selected(n.saturating_sub(1));
                vec![]
            }
            Action::PageDown => {
                self.set_selected(cur + PAGE);
                vec![]
            }
            Action::PageUp => {
                self.set_selected(cur.saturating_sub(PAGE));
                vec![]
            }
            Action::NextView => self.switch(View::ALL[(self.view.index() + 1) % View::ALL.len()]),
            Action::PrevView => {
                let to = View::ALL[(self.view.index() + View::ALL.len() - 1) % View::ALL.len()];
                let effects = self.switch(to);
                // Back into view 6 from view 1: on its last table.
                if to == View::Outbox {
                    self.outbox.focus = super::outbox::Focus::Dependencies;
                }
                effects
            }
            Action::View1 => self.switch(View::Pipelines),
            Action::View2 => self.switch(View::Reviews),
            Action::View3 => self.switch(View::Executions),
            Action::View4 => self.switch(View::Events),
            Action::View5 => self.switch(View::Slo),
            Action::View6 => self.switch(View::Outbox),
            Action::Refresh => self.loads(),
            Action::Help => {
                self.dialog_scroll = 0;
                self.dialog = Some(Dialog::Help);
                vec![]
            }
            Action::Filter => {
                let text = self.filters[self.view.index()].as_ref().map(|f| f.text.clone()).unwrap_or_default();
                self.dialog = Some(Dialog::Input { kind: InputKind::Filter, text });
                vec![]
            }
            Action::Command => {
                self.dialog = Some(Dialog::Input { kind: InputKind::Command, text: String::new() });
                vec![]
            }
            Action::Back => {
                if self.detail_arn.is_some() {
                    if let Some(effects) = self.go_back() {
                        return effects;
                    }
                    self.detail_arn = None;
                    self.detail = Pane::default();
                    return self.loads();
                }
                if self.filters[self.view.index()].take().is_some() {
                    self.follow_selection(self.view, false);
                    if self.view == View::Outbox {
                        self.follow_dependency();
                    }
                    return vec![];
                }
                if let Some(effects) = self.go_back() {
                    return effects;
                }
                self.marks.clear();
                vec![]
            }
            Action::MarkAll => {
                self.mark_all();
                vec![]
            }
            Action::ClearMarks => {
                self.clear_marks();
                vec![]
            }
            Action::Open => self.open(),
            Action::Mark => {
                let key = match self.view {
                    View::Reviews => self.visible_reviews().get(cur).map(|r| format!("tok:{}", r.token)),
                    View::Executions if self.detail_arn.is_none() => self.visible_executions().get(cur).map(|e| format!("exe:{}", e.arn)),
                    _ => None,
                };
                if let Some(k) = key {
                    if !self.marks.remove(&k) {
                        self.marks.insert(k);
                    }
                    self.set_selected(cur + 1);
                } else {
                    self.message = Some(("mark: no row selected".into(), true));
                }
                vec![]
            }
            Action::Reveal => {
                let Some((arn, label)) = self.reveal_target() else {
                    self.message = Some(("reveal: select a study first".into(), true));
                    return vec![];
                };
                if self.revealed(&arn) {
                    self.reveal = None;
                    self.message = Some((format!("patient data of {label} hidden"), false));
                } else {
                    self.dialog = Some(Dialog::Reveal { code: None, reason: String::new(), arn, label });
                }
                vec![]
            }
            Action::ToggleRaw => {
                self.raw_history = !self.raw_history;
                self.show_io = false;
                vec![]
            }
            Action::ToggleIo => {
                self.show_io = !self.show_io;
                vec![]
            }
            // Handled by `read_action` (tui/detail.rs).
            Action::ScrollLeft | Action::ScrollRight | Action::ToggleWrap | Action::SwitchHalf | Action::Pause | Action::OpenExecution => {
                vec![]
            }
            Action::CycleStatus => {
                use ExecutionStatus::*;
                (self.status_filter, self.redriven_filter) = match (self.status_filter, self.redriven_filter) {
                    (_, true) => (None, false),
                    (None, false) => (Some(Running), false),
                    (Some(Running), _) => (Some(Failed), false),
                    (Some(Failed), _) => (Some(TimedOut), false),
                    (Some(TimedOut), _) => (Some(Aborted), false),
                    (Some(Aborted), _) => (Some(Succeeded), false),
                    (Some(_), _) => (None, true),
                };
                self.loads()
            }
            Action::Escalate if self.view == View::Slo => self.escalate_clock(),
            Action::NextSink
            | Action::PauseSink
            | Action::RetryNow
            | Action::ParkRow
            | Action::RequeueParked
            | Action::HoldDependency
            | Action::ReleaseDependency
            | Action::ResetBreaker => self.outbox_action(a),
            Action::Approve | Action::Reject | Action::Escalate => {
                let items = self.target_items();
                if items.is_empty() {
                    self.message = Some((format!("{}: no review selected (the list is empty)", a.name()), true));
                    return vec![];
                }
                let user = self.settings.user.clone();
                if items.iter().any(|i| i.claimed_by.as_ref().is_some_and(|h| *h != user)) {
                    self.dialog = Some(Dialog::Override { action: a, items, code: None, reason: String::new() });
                    return vec![];
                }
                self.answer_dialog(a, items, Acting::user(user));
                vec![]
            }
            Action::Claim => {
                let Some(r) = self.visible_reviews().get(cur).map(|r| (*r).clone()) else {
                    self.message = Some(("claim: no review selected (the list is empty)".into(), true));
                    return vec![];
                };
                let claim = r.claimed_by.is_none();
                if let Some(holder) = r.claimed_by.as_ref().filter(|h| **h != self.settings.user) {
                    self.message = Some((format!("{} is claimed by {holder}", r.accession), true));
                    return vec![];
                }
                let (title, what) = if claim {
                    (
                        format!("Claim {} ({})", r.accession, r.study),
                        "others see this review as yours; a gate with a heartbeat gets one now",
                    )
                } else {
                    (format!("Unclaim {} ({})", r.accession, r.study), "the review goes back to the shared queue")
                };
                self.dialog = Some(Dialog::Confirm {
                    title,
                    lines: vec![what.to_string()],
                    mutation: Mutation::Claim { token: r.token, claim, by: self.settings.user.clone() },
                });
                vec![]
            }
            Action::Compensate => {
                let arn = match &self.detail_arn {
                    Some(a) => Some(a.clone()),
                    None if self.view == View::Executions => self.visible_executions().get(cur).map(|e| e.arn.clone()),
                    None => None,
                };
                let Some(arn) = arn else {
                    self.message = Some(("compensate: no execution selected".into(), true));
                    return vec![];
                };
                if let Some(row) = self.execution_row(&arn)
                    && let Err(e) = crate::ops::compensation::check_status(&arn, row.status)
                {
                    self.message = Some((format!("compensate: {e}"), true));
                    return vec![];
                }
                self.pending_compensation = Some(arn.clone());
                self.message = Some(("compensate: computing the plan from the history…".into(), false));
                vec![Effect::Load(Request::CompensationPlan(arn))]
            }
            Action::Redrive | Action::Stop => {
                let arns = self.targets_executions();
                if arns.is_empty() {
                    self.message = Some((format!("{}: no execution selected (the list is empty)", a.name()), true));
                    return vec![];
                }
                let (mut act, mut each, mut left_out) = (vec![], vec![], vec![]);
                for arn in arns {
                    let name = arn.rsplit(':').next().unwrap_or(&arn).to_string();
                    let Some(row) = self.execution_row(&arn) else {
                        left_out.push(format!("  · {name}: not loaded; its status is unknown"));
                        continue;
                    };
                    if a == Action::Redrive {
                        let def = self.definition_for(&arn);
                        match consequence::redrive(def.as_deref(), row, self.now) {
                            Ok(c) => {
                                each.push(format!("  · {name}: {}", c.text));
                                act.push(arn);
                            }
                            Err(why) => left_out.push(format!("  · {name}: cannot be redriven: {why}")),
                        }
                    } else if row.status == ExecutionStatus::Running {
                        each.push(format!("  · {name} (at {})", row.current_state.as_deref().unwrap_or("?")));
                        act.push(arn);
                    } else {
                        left_out.push(format!("  · {name}: it is {}; only RUNNING executions can be stopped", row.status));
                    }
                }
                // Marked rows the view no longer shows are not acted on: say so.
                if self.detail_arn.is_none() {
                    let shown: BTreeSet<String> = self.visible_executions().iter().map(|e| format!("exe:{}", e.arn)).collect();
                    let hidden = self.marks.iter().filter(|m| m.starts_with("exe:") && !shown.contains(*m)).count();
                    if hidden > 0 {
                        left_out.push(format!("  · {hidden} marked execution(s) not in this view (filter or status)"));
                    }
                }
                let verb = if a == Action::Redrive { "redrive" } else { "stop" };
                if act.is_empty() {
                    let why = left_out.first().map(|l| l.trim_start_matches("  · ").to_string()).unwrap_or_default();
                    self.message = Some((format!("{verb}: nothing to do ({why})"), true));
                    return vec![];
                }
                let (title, mutation, what) = if a == Action::Redrive {
                    (
                        format!("Redrive {} execution(s)", act.len()),
                        Mutation::Redrive { arns: act },
                        "resumes each from its unsuccessful state (same ARN):",
                    )
                } else {
                    (
                        format!("Stop {} execution(s)", act.len()),
                        Mutation::Stop { arns: act, cause: format!("stopped by {} from the console", self.settings.user) },
                        "aborts each; pending review tokens close as ABORTED:",
                    )
                };
                let mut lines = vec![what.to_string()];
                lines.extend(each);
                if !left_out.is_empty() {
                    lines.push(format!("left out ({}):", left_out.len()));
                    lines.extend(left_out);
                }
                self.dialog = Some(Dialog::Confirm { title, lines, mutation });
                vec![]
            }
        }
    }

    /// `C`'s confirmation, from the plan loaded for `arn`: each step (state, short input and
    /// output, masked), and a reason field; or a message when there is nothing to start.
    fn compensation_dialog(&mut self, arn: String, plan: std::result::Result<Box<crate::ops::compensation::Outcome>, String>) {
        let name = arn.rsplit(':').next().unwrap_or(&arn).to_string();
        let o = match plan {
            Ok(o) => o,
            Err(e) => {
                self.message = Some((format!("compensate {name}: {e}"), true));
                return;
            }
        };
        if let Some(r) = &o.existing {
            self.message =
                Some((format!("compensate {name}: already compensated by {} ({}): nothing new would start", r.name, r.status), true));
            return;
        }
        if o.plan.steps.is_empty() {
            self.message = Some((format!("compensate {name}: {}", o.plan.summary()), true));
            return;
        }
        let known = self.settings.phi.identifiers(&o.plan.execution_input);
        let short = |v: &serde_json::Value| {
            let s = self.settings.phi.mask_value_with(v, &known).to_string();
            if s.chars().count() > 60 { format!("{}…", s.chars().take(59).collect::<String>()) } else { s }
        };
        let mut lines = vec![format!(
            "starts {} as {} with these {} step(s), newest first:",
            o.plan.compensation_machine,
            o.plan.compensation_name,
            o.plan.steps.len()
        )];
        for (i, s) in o.plan.steps.iter().enumerate() {
            lines.push(format!("  {}. {}  in {}  out {}", i + 1, s.state, short(&s.input), short(&s.output)));
        }
        lines.push("once only: compensating again starts nothing new".into());
        let title = format!("Compensate {name} ({})", o.plan.status);
        self.message = None;
        self.dialog = Some(Dialog::Compensate { arn, title, lines, code: None, reason: String::new() });
    }

    /// Whether this execution's patient data shows now.
    pub fn revealed(&self, arn: &str) -> bool {
        self.reveal.as_ref().is_some_and(|r| r.arn == arn && self.now < r.until)
    }

    /// The study a reveal would apply to: the one selected (or open), with its label.
    fn reveal_target(&self) -> Option<(String, String)> {
        let cur = self.selected();
        let arn = match self.view {
            View::Executions if self.detail_arn.is_some() => self.detail_arn.clone(),
            View::Pipelines => self.visible_studies().get(cur).map(|s| s.execution_arn.clone()),
            View::Reviews => self.visible_reviews().get(cur).map(|r| r.execution_arn.clone()),
            View::Executions => self.visible_executions().get(cur).map(|e| e.arn.clone()),
            View::Events => self.visible_events().get(cur).map(|e| e.execution_arn.clone()),
            View::Slo => self.visible_clocks().get(cur).map(|(c, _)| c.execution_arn.clone()),
            _ => None,
        }?;
        let label = self
            .studies
            .value
            .iter()
            .find(|s| s.execution_arn == arn)
            .map(|s| s.accession.clone())
            .or_else(|| self.reviews.value.iter().find(|r| r.execution_arn == arn && !r.accession.is_empty()).map(|r| r.accession.clone()))
            .unwrap_or_else(|| arn.rsplit(':').next().unwrap_or(&arn).to_string());
        Some((arn, label))
    }

    /// The loaded row of an execution (the list, or the one open in detail).
    fn execution_row(&self, arn: &str) -> Option<&ExecutionSummary> {
        self.executions.value.iter().find(|e| e.arn == arn).or_else(|| self.detail.value.execution.as_ref().filter(|e| e.arn == arn))
    }

    /// The definition an execution runs, if loaded.
    fn definition_for(&self, arn: &str) -> Option<Arc<Definition>> {
        if let Some(d) = self.definitions.get(arn) {
            return Some(d.clone());
        }
        if self.detail_arn.as_deref() == Some(arn) {
            // Parsed once when the detail loaded (tui/detail.rs).
            if self.read.path_for.as_deref() == Some(arn) && self.read.definition.is_some() {
                return self.read.definition.clone();
            }
            return self.detail.value.definition.as_deref().and_then(|t| Definition::parse_str(t).ok()).map(Arc::new);
        }
        None
    }

    /// The reviews an answer acts on (marked ones, or the selected one), captured with their
    /// names, gates and claims.
    fn target_items(&self) -> Vec<Item> {
        self.targets_reviews()
            .into_iter()
            .map(|r| Item {
                id: r.token.clone(),
                label: if r.study.is_empty() { r.accession.clone() } else { format!("{} ({})", r.accession, r.study) },
                state: r.state.clone(),
                claimed_by: r.claimed_by.clone(),
                gate: self.definition_for(&r.execution_arn).and_then(|d| consequence::gate(&d, &r.state)),
            })
            .collect()
    }

    /// The error code and default cause of reject reason `code`.
    pub fn reject_reason(&self, code: usize) -> (String, String) {
        let reason = self.settings.reject_reasons.get(code).cloned().unwrap_or_else(|| "Review.Rejected".into());
        reason.split_once(':').map(|(e, c)| (e.trim().to_string(), c.trim().to_string())).unwrap_or((reason.clone(), String::new()))
    }

    /// Open the dialog that answers `items` (approve, reject or escalate) as `acting`.
    pub(super) fn answer_dialog(&mut self, a: Action, items: Vec<Item>, acting: Acting) {
        let title = |verb: &str| {
            if items.len() == 1 {
                format!("{verb} {} at {}", items[0].label, items[0].state)
            } else {
                format!("{verb} {} reviews", items.len())
            }
        };
        let overrides = override_lines(&items, &acting);
        match a {
            Action::Approve => {
                let title = title("Approve");
                let output = serde_json::json!({"approved": true, "reviewer": self.settings.user}).to_string();
                let mut then = consequence_lines(&items, Gate::on_success);
                then.extend(overrides);
                self.dialog =
                    Some(Dialog::Approve { title, items, output, comment: String::new(), field: Field::Output, then, error: None, acting });
            }
            Action::Reject => {
                self.dialog = Some(Dialog::Reject { title: title("Reject"), items, code: 0, text: String::new(), acting });
            }
            _ => {
                let title = title("Escalate");
                let mut lines = vec![format!("sends failure {ESCALATED}:")];
                lines.extend(consequence_lines(&items, |g| g.on_error(ESCALATED)));
                lines.extend(overrides);
                lines.push(format!("recorded as escalated by {}; the reason is the escalation's cause", self.settings.user));
                // Overriding a claim already said why: offered again, to keep or change.
                let said = acting.override_reason.as_deref().and_then(crate::phi::Reason::split);
                let code = said.as_ref().and_then(|(c, _)| self.settings.reason_codes.codes().iter().position(|x| x == c));
                let reason = said.map(|(_, note)| note).unwrap_or_default();
                let mutation = Mutation::Escalate { tokens: items.iter().map(|i| i.id.clone()).collect(), cause: String::new(), acting };
                self.dialog = Some(Dialog::Reason { title, lines, mutation, code, reason });
            }
        }
    }

    fn open(&mut self) -> Vec<Effect> {
        let cur = self.selected();
        let arn = match self.view {
            View::Pipelines => self.visible_studies().get(cur).map(|s| s.execution_arn.clone()),
            View::Reviews => self.visible_reviews().get(cur).map(|r| r.execution_arn.clone()),
            View::Executions if self.detail_arn.is_none() => self.visible_executions().get(cur).map(|e| e.arn.clone()),
            View::Events => self.visible_events().get(cur).map(|e| e.execution_arn.clone()),
            View::Outbox => self.outbox_selected_execution(),
            View::Slo => self.visible_clocks().get(cur).map(|(c, _)| c.execution_arn.clone()),
            _ => None,
        };
        match arn {
            Some(a) => self.open_execution(a),
            None if self.view == View::Executions && self.detail_arn.is_some() => {
                self.message = Some(("this execution is open; Esc goes back".into(), false));
                vec![]
            }
            None => {
                self.message = Some(("open: no row selected".into(), true));
                vec![]
            }
        }
    }

    pub fn open_execution(&mut self, arn: String) -> Vec<Effect> {
        self.remember();
        self.view = View::Executions;
        self.detail_arn = Some(arn);
        self.detail_scroll = 0;
        self.detail = Pane::default();
        self.loads()
    }

    /// `:` commands (the command table and what each does are in `command.rs`).
    fn command(&mut self, text: &str) -> Vec<Effect> {
        self.run_command(text)
    }

    fn dialog_key(&mut self, k: KeyEvent) -> Vec<Effect> {
        let Some(d) = self.dialog.take() else { return vec![] };
        let ctrl = k.modifiers.contains(KeyModifiers::CONTROL);
        if k.code == KeyCode::Esc || (ctrl && k.code == KeyCode::Char('c')) {
            return vec![];
        }
        let edit = |s: &mut String| match k.code {
            KeyCode::Char(c) if !ctrl => s.push(c),
            KeyCode::Backspace => {
                s.pop();
            }
            _ => {}
        };
        // A dialog that asks why picks a reason code first: ←/→ or Tab/Shift+Tab (and ↑/↓ where the
        // dialog does not scroll its lines).
        let mut d = d;
        let scrolls = matches!(d, Dialog::Reason { .. });
        let forward = match k.code {
            KeyCode::Right | KeyCode::Tab => Some(true),
            KeyCode::Left | KeyCode::BackTab => Some(false),
            KeyCode::Down if !scrolls => Some(true),
            KeyCode::Up if !scrolls => Some(false),
            _ => None,
        };
        let n = self.settings.reason_codes.codes().len();
        if let Some(forward) = forward
            && let Dialog::Override { code, .. }
            | Dialog::Reason { code, .. }
            | Dialog::Compensate { code, .. }
            | Dialog::Reveal { code, .. } = &mut d
        {
            *code = Some(match (*code, forward) {
                (None, true) => 0,
                (None, false) => n.saturating_sub(1),
                (Some(i), true) => (i + 1) % n.max(1),
                (Some(i), false) => (i + n.max(1) - 1) % n.max(1),
            });
            self.dialog = Some(d);
            return vec![];
        }
        // The reason of a dialog that asks why, checked: a code from the list and a note of substance.
        let codes = self.settings.reason_codes.clone();
        let checked = |code: Option<usize>, note: &str| -> Result<crate::phi::Reason, String> {
            let Some(c) = code.and_then(|i| codes.codes().get(i)) else {
                return Err(format!("pick a reason code with ←/→: {}", codes.codes().join(", ")));
            };
            crate::phi::Reason::new(&codes, c, note).map_err(|e| e.to_string())
        };
        // Long lists (bulk actions) scroll; every item stays reachable.
        if matches!(d, Dialog::Confirm { .. } | Dialog::Approve { .. } | Dialog::Reason { .. }) {
            let by = match k.code {
                KeyCode::Down => Some(1i32),
                KeyCode::Up => Some(-1),
                KeyCode::PageDown => Some(PAGE as i32),
                KeyCode::PageUp => Some(-(PAGE as i32)),
                _ => None,
            };
            if let Some(by) = by {
                self.dialog_scroll = (i32::from(self.dialog_scroll) + by).clamp(0, i32::from(u16::MAX)) as u16;
                self.dialog = Some(d);
                return vec![];
            }
        }
        match d {
            Dialog::Help | Dialog::Message { .. } | Dialog::Pick { .. } | Dialog::Lines { .. } => vec![],
            Dialog::Confirm { title, lines, mutation } => match k.code {
                KeyCode::Char('y') | KeyCode::Char('Y') => vec![Effect::Mutate(mutation)],
                _ => {
                    self.dialog = Some(Dialog::Confirm { title, lines, mutation });
                    vec![]
                }
            },
            Dialog::Approve { title, items, mut output, mut comment, mut field, then, acting, .. } => {
                match k.code {
                    KeyCode::Tab | KeyCode::BackTab => field = if field == Field::Output { Field::Comment } else { Field::Output },
                    KeyCode::Enter => {
                        return match serde_json::from_str::<serde_json::Value>(&output) {
                            Ok(mut v) => {
                                if !comment.is_empty()
                                    && let Some(o) = v.as_object_mut()
                                {
                                    o.insert("comment".into(), serde_json::Value::String(comment.clone()));
                                }
                                let tokens = items.iter().map(|i| i.id.clone()).collect();
                                vec![Effect::Mutate(Mutation::Approve { tokens, output: v.to_string(), comment, acting })]
                            }
                            Err(e) => {
                                let error = Some(format!("output is not valid JSON: {e}"));
                                self.dialog = Some(Dialog::Approve { title, items, output, comment, field, then, error, acting });
                                vec![]
                            }
                        };
                    }
                    _ => match field {
                        Field::Output => edit(&mut output),
                        _ => edit(&mut comment),
                    },
                }
                self.dialog = Some(Dialog::Approve { title, items, output, comment, field, then, error: None, acting });
                vec![]
            }
            Dialog::Reject { title, items, mut code, mut text, acting } => {
                let n = self.settings.reject_reasons.len().max(1);
                match k.code {
                    KeyCode::Up => code = (code + n - 1) % n,
                    KeyCode::Down => code = (code + 1) % n,
                    KeyCode::Enter => {
                        let (error, default_cause) = self.reject_reason(code);
                        let cause = if text.trim().is_empty() { default_cause } else { format!("{default_cause}: {}", text.trim()) };
                        let tokens = items.iter().map(|i| i.id.clone()).collect();
                        return vec![Effect::Mutate(Mutation::Reject { tokens, error, cause, acting })];
                    }
                    _ => edit(&mut text),
                }
                self.dialog = Some(Dialog::Reject { title, items, code, text, acting });
                vec![]
            }
            Dialog::Override { action, items, code, mut reason } => {
                if k.code == KeyCode::Enter {
                    let why = match checked(code, &reason) {
                        Ok(why) => why,
                        Err(e) => {
                            self.message = Some((format!("override a claim: {e}; it goes to the audit log"), true));
                            self.dialog = Some(Dialog::Override { action, items, code, reason });
                            return vec![];
                        }
                    };
                    // Override exactly the claims shown: one that changes hands meanwhile is refused.
                    let seen = items.iter().filter_map(|i| i.claimed_by.clone().map(|h| (i.id.clone(), h)));
                    let acting = Acting::user(self.settings.user.clone()).overriding(why.to_string()).seen(seen);
                    self.message = None;
                    self.answer_dialog(action, items, acting);
                    return vec![];
                }
                edit(&mut reason);
                self.dialog = Some(Dialog::Override { action, items, code, reason });
                vec![]
            }
            Dialog::Reason { title, lines, mutation, code, mut reason } => {
                if k.code == KeyCode::Enter {
                    let why = match checked(code, &reason) {
                        Ok(why) => why,
                        Err(e) => {
                            self.message = Some((format!("{}: {e}; the reason goes to the audit log", mutation.verb()), true));
                            self.dialog = Some(Dialog::Reason { title, lines, mutation, code, reason });
                            return vec![];
                        }
                    };
                    self.message = None;
                    return vec![Effect::Mutate(mutation.with_reason(&why.to_string()))];
                }
                edit(&mut reason);
                self.dialog = Some(Dialog::Reason { title, lines, mutation, code, reason });
                vec![]
            }
            Dialog::Compensate { arn, title, lines, code, mut reason } => {
                if k.code == KeyCode::Enter {
                    let why = match checked(code, &reason) {
                        Ok(why) => why,
                        Err(e) => {
                            self.message = Some((format!("compensate: {e} (the reason goes to the audit log and the compensation)"), true));
                            self.dialog = Some(Dialog::Compensate { arn, title, lines, code, reason });
                            return vec![];
                        }
                    };
                    self.message = None;
                    return vec![Effect::Mutate(Mutation::Compensate { arn, reason: why.to_string() })];
                }
                edit(&mut reason);
                self.dialog = Some(Dialog::Compensate { arn, title, lines, code, reason });
                vec![]
            }
            Dialog::Reveal { code, mut reason, arn, label } => {
                if k.code == KeyCode::Enter {
                    let why = match checked(code, &reason) {
                        Ok(why) => why,
                        Err(e) => {
                            self.message = Some((e, true));
                            self.dialog = Some(Dialog::Reveal { code, reason, arn, label });
                            return vec![];
                        }
                    };
                    self.message = None;
                    self.pending_reveal = Some(Revealed { arn: arn.clone(), label, until: self.now + self.settings.reveal_for });
                    return vec![Effect::Mutate(Mutation::RevealPhi { reason: why.to_string(), arn })];
                }
                edit(&mut reason);
                self.dialog = Some(Dialog::Reveal { code, reason, arn, label });
                vec![]
            }
            Dialog::Input { kind, mut text } => {
                if k.code == KeyCode::Enter {
                    return match kind {
                        InputKind::Command => self.command(&text),
                        InputKind::Filter => {
                            let i = self.view.index();
                            if text.is_empty() {
                                self.filters[i] = None;
                            } else {
                                match Filter::parse_named(&text, &self.settings.event_patterns) {
                                    Ok(f) => self.filters[i] = Some(f),
                                    Err(e) => {
                                        self.message = Some((e, true));
                                        self.dialog = Some(Dialog::Input { kind, text });
                                        return vec![];
                                    }
                                }
                            }
                            self.follow_selection(self.view, true);
                            if self.view == View::Outbox {
                                self.follow_dependency();
                            }
                            vec![]
                        }
                    };
                }
                edit(&mut text);
                self.dialog = Some(Dialog::Input { kind, text });
                vec![]
            }
        }
    }
}
