//! The rows of each list view: one function per view builds a row's cells (and, for the
//! filter, its hidden searchable text), and both the table ([`super::table`]) and the `/`
//! filter use it, so what the operator reads and what the filter finds never disagree.
//! Patient fields are in a row only as shown (masked unless that study is revealed), and free
//! text about a study (errors, causes, drafts) is masked before it is shown or searched: a
//! filter is never an oracle for a masked value.

use chrono::Duration;
use ratatui::Frame;
use ratatui::layout::Rect;

use super::app::App;
use super::outbox::secs;
use super::render::{clock, machine, patient};
use super::table::{self, Cell, Column, DataTable, Spec, TableRow};
use crate::backend::{ExecutionSummary, FeedEvent};
use crate::engine::dependencies::DependencyStatus;
use crate::ops::project::{GateKind, Review, Study, human};
use crate::outbox::{Breaker as OutboxBreaker, DeliveryRow, SinkStatus};

pub const STUDY_COLUMNS: [Column; 8] = [
    Column::new("ACCESSION", 11).cut(9, 1),
    Column::new("MOD", 3),
    Column::new("PRIO", 7),
    Column::new("CLASS", 10).cut(5, 3),
    Column::new("STAGE", 14).cut(11, 1),
    Column::new("IN", 5),
    Column::new("SITE", 6).cut(4, 2),
    Column::new("PATIENT", 9).cut(5, 4).grow(),
];

pub const REVIEW_COLUMNS: [Column; 8] = [
    Column::new("PRIO", 7),
    Column::new("ACCESSION", 11).cut(9, 3),
    Column::new("STUDY", 14).cut(7, 4),
    Column::new("GATE", 11),
    Column::new("AI DRAFT (advisory)", 14).cut(8, 1).grow(),
    Column::new("AGE", 5),
    Column::new("TIMES OUT", 11).cut(10, 2),
    Column::new("CLAIMED", 10).cut(6, 5),
];

pub const EXECUTION_COLUMNS: [Column; 7] = [
    Column::new("STATUS", 9),
    Column::new("MACHINE", 18).cut(10, 4),
    Column::new("NAME", 22).cut(16, 1),
    Column::new("STATE", 18).cut(14, 3),
    Column::new("AGE", 5),
    Column::new("RDV", 3),
    Column::new("ERROR", 10).cut(8, 2).grow(),
];

pub const EVENT_COLUMNS: [Column; 6] = [
    Column::new("TIME", 8),
    Column::new("EVENT", 17).cut(13, 2),
    Column::new("MACHINE", 18).cut(10, 4),
    Column::new("EXECUTION", 22).cut(12, 1),
    Column::new("STATE", 20).cut(14, 3),
    Column::new("ERROR", 8).cut(6, 2).grow(),
];

pub const SINK_COLUMNS: [Column; 10] = [
    Column::new("SINK", 18).cut(8, 1),
    Column::new("KIND", 17).cut(4, 6),
    Column::new("BREAKER", 12),
    Column::new("BACKLOG", 7).cut(4, 3),
    Column::new("OLDEST", 7).cut(5, 4),
    Column::new("RATE/m", 6).cut(4, 5),
    Column::new("DELIVERED", 9).cut(5, 5),
    Column::new("FAILURES", 8).cut(4, 3),
    Column::new("PARKED", 6).cut(4, 3),
    Column::new("LAST ERROR", 12).cut(0, 7).grow(),
];

pub const DELIVERY_COLUMNS: [Column; 7] = [
    Column::new("ROW", 7),
    Column::new("ATTEMPTS", 8).cut(4, 3),
    Column::new("STATE", 8),
    Column::new("DETAIL-TYPE", 38).cut(14, 1),
    Column::new("AGE", 7),
    Column::new("EXECUTION", 20).cut(10, 2),
    Column::new("LAST ERROR", 10).cut(0, 5).grow(),
];

pub const DEPENDENCY_COLUMNS: [Column; 8] = [
    Column::new("NAME", 16).cut(10, 1),
    Column::new("MATCH", 30).cut(0, 6),
    Column::new("BREAKER", 12),
    Column::new("FAILURES", 8).cut(5, 4),
    Column::new("HELD", 12).cut(8, 2),
    Column::new("SINCE", 8),
    Column::new("WAITING", 7).cut(4, 5),
    Column::new("REASON", 30).cut(6, 3).grow(),
];

pub const STUDIES: Spec = Spec { columns: &STUDY_COLUMNS, marks: false };
pub const REVIEWS: Spec = Spec { columns: &REVIEW_COLUMNS, marks: true };
pub const EXECUTIONS: Spec = Spec { columns: &EXECUTION_COLUMNS, marks: true };
pub const EVENTS: Spec = Spec { columns: &EVENT_COLUMNS, marks: false };
pub const SINKS: Spec = Spec { columns: &SINK_COLUMNS, marks: false };
pub const DELIVERIES: Spec = Spec { columns: &DELIVERY_COLUMNS, marks: false };
pub const DEPENDENCIES: Spec = Spec { columns: &DEPENDENCY_COLUMNS, marks: false };

/// The name an execution ARN ends with.
fn name_of(arn: &str) -> &str {
    arn.rsplit(':').next().unwrap_or(arn)
}

impl App {
    /// Free text about a study (error, cause), as the operator may see it: its patient's
    /// identifiers masked unless the study is revealed.
    fn study_text(&self, s: &Study, text: &str) -> String {
        if text.is_empty() || self.revealed(&s.execution_arn) || !(s.patient.appears_in(text) || text.contains('{')) {
            return text.to_string();
        }
        self.settings.phi.mask_text_with(text, &s.patient.identifiers())
    }

    /// Free text about an execution (error, cause), masked with the identifiers in its input
    /// and its study's unless revealed.
    fn execution_text(&self, e: &ExecutionSummary, texts: [&str; 2]) -> [String; 2] {
        if texts.iter().all(|t| t.is_empty()) || self.revealed(&e.arn) {
            return texts.map(str::to_string);
        }
        let mut known = self.settings.phi.identifiers_in_text(&e.input);
        if let Some(s) = self.studies.value.iter().find(|s| s.execution_arn == e.arn) {
            known.extend(s.patient.identifiers());
        }
        texts.map(|t| if t.is_empty() { String::new() } else { self.settings.phi.mask_text_with(t, &known) })
    }

    /// A study in the Pipelines table. Hidden: the execution (name, ARN, machine), the state
    /// it is in, the stage it reached, the body part, the error and the cause.
    pub fn study_row(&self, s: &Study, for_search: bool) -> TableRow {
        let t = &self.theme;
        let stage = match (s.exception, s.stage) {
            (Some(e), _) => Cell::new(e.as_str(), t.warn()),
            (None, Some(st)) => Cell::new(st.as_str(), t.text()),
            (None, None) => Cell::new(s.state.clone(), t.muted()),
        };
        TableRow::new(vec![
            Cell::new(s.accession.clone(), t.text()),
            Cell::new(s.modality.clone(), t.text()),
            Cell::new(s.priority.as_str(), t.priority(s.priority.as_str())),
            Cell::new(s.patient_class.clone(), t.text()),
            stage,
            Cell::new(s.since.map(|x| human(self.now - x)).unwrap_or_default(), t.text()),
            Cell::new(s.site.clone(), t.text()),
            Cell::new(patient(&s.patient, self.revealed(&s.execution_arn)), t.muted()),
        ])
        .search_also(for_search, || {
            vec![
                name_of(&s.execution_arn).to_string(),
                s.execution_arn.clone(),
                s.state.clone(),
                s.stage.map(|x| x.as_str()).unwrap_or_default().to_string(),
                s.body_part.clone(),
                self.study_text(s, s.error.as_deref().unwrap_or_default()),
                self.study_text(s, s.cause.as_deref().unwrap_or_default()),
            ]
        })
    }

    /// A review's draft as the table shows it: quoted, or what a task that is not a read asks.
    pub(super) fn draft_cell(&self, r: &Review) -> String {
        match r.gate {
            GateKind::Reconciliation => "not a read: confirm the patient and encounter".into(),
            GateKind::OtherHold => format!("not a read: answer {}", r.state),
            _ => {
                let d = self.draft(r);
                if d.is_empty() { String::new() } else { format!("\"{d}\"") }
            }
        }
    }

    /// A pending review in the Reviews table. AGE counts from when the study entered review.
    /// Hidden: the gate's state, the reviewer group, the execution.
    pub fn review_row(&self, r: &Review, for_search: bool) -> TableRow {
        let t = &self.theme;
        let left = match r.time_left(self.now) {
            Some(d) if d < Duration::zero() => Cell::new(format!("overdue {}", human(-d)), t.breach()),
            Some(d) if d < Duration::minutes(15) => Cell::new(format!("in {}", human(d)), t.warn()),
            Some(d) => Cell::new(format!("in {}", human(d)), t.text()),
            None => Cell::new("—", t.muted()),
        };
        let gate_style = if r.gate.is_read() { t.text() } else { t.warn() };
        TableRow::new(vec![
            Cell::new(r.priority.as_str(), t.priority(r.priority.as_str())),
            Cell::new(r.accession.clone(), t.text()),
            Cell::new(r.study.clone(), t.text()),
            Cell::new(r.gate.as_str(), gate_style),
            Cell::new(self.draft_cell(r), t.muted()),
            Cell::new(human(self.now - r.entered), t.text()),
            left,
            Cell::new(r.claimed_by.clone().unwrap_or_else(|| "—".into()), t.text()),
        ])
        .search_also(for_search, || {
            vec![r.state.clone(), r.reviewer_group.clone(), machine(&r.execution_arn).to_string(), name_of(&r.execution_arn).to_string()]
        })
        .marked(self.marks.contains(&format!("tok:{}", r.token)))
    }

    /// An execution in the Executions table. Hidden: its ARN and its cause.
    pub fn execution_table_row(&self, e: &ExecutionSummary, for_search: bool) -> TableRow {
        let t = &self.theme;
        let cause = if for_search { e.cause.as_deref().unwrap_or_default() } else { "" };
        let [error, cause] = self.execution_text(e, [e.error.as_deref().unwrap_or_default(), cause]);
        TableRow::new(vec![
            Cell::new(e.status.as_str(), t.status(e.status.as_str())),
            Cell::new(machine(&e.arn), t.text()),
            Cell::new(e.name.clone(), t.text()),
            Cell::new(e.current_state.clone().unwrap_or_default(), t.text()),
            Cell::new(human(self.now - e.start), t.text()),
            Cell::new(if e.redrive_count > 0 { format!("{}×", e.redrive_count) } else { String::new() }, t.text()),
            Cell::new(error, t.warn()),
        ])
        .search_also(for_search, || vec![e.arn.clone(), cause])
        .marked(self.marks.contains(&format!("exe:{}", e.arn)))
    }

    /// A workflow event in the Events table. Hidden: the execution's ARN and the event's cause
    /// (masked, see `event_cause`).
    pub fn event_row(&self, e: &FeedEvent, for_search: bool) -> TableRow {
        let t = &self.theme;
        let ty = &e.event.event_type;
        let style = if ty.ends_with("Failed") || ty.ends_with("TimedOut") { t.breach() } else { t.text() };
        let detail = |k: &str| e.event.details.get(k).and_then(|v| v.as_str()).unwrap_or_default();
        TableRow::new(vec![
            Cell::new(clock(e.event.timestamp, &self.settings.tz), t.text()),
            Cell::new(ty.clone(), style),
            Cell::new(machine(&e.execution_arn), t.text()),
            Cell::new(name_of(&e.execution_arn), t.text()),
            Cell::new(e.state_name().unwrap_or_default(), t.text()),
            Cell::new(self.error_text(&e.execution_arn, detail("error")), t.text()),
        ])
        .search_also(for_search, || vec![e.execution_arn.clone(), self.event_cause(e, detail("cause"))])
    }

    /// An event's cause, to search: masked with its study's identifiers, and left out when
    /// they are not loaded (unless revealed), so that a filter can never find what a mask hides.
    fn event_cause(&self, e: &FeedEvent, cause: &str) -> String {
        if cause.is_empty() || self.revealed(&e.execution_arn) {
            return cause.to_string();
        }
        let known = self.known_identifiers(&e.execution_arn);
        if known.is_empty() {
            return String::new();
        }
        self.settings.phi.mask_text_with(cause, &known)
    }

    /// An outbox sink in view 6's sinks table. Hidden: where it delivers, why it is paused.
    pub fn sink_row(&self, s: &SinkStatus) -> TableRow {
        let t = &self.theme;
        let (breaker, style) = match (s.paused, s.breaker) {
            (true, _) => ("PAUSED".to_string(), t.warn()),
            (_, OutboxBreaker::Open) => (self.sink_left(s).map(|l| format!("OPEN {l}")).unwrap_or_else(|| "OPEN".into()), t.breach()),
            (_, OutboxBreaker::HalfOpen) => ("HALF_OPEN".to_string(), t.warn()),
            (_, b) => (b.as_str().to_string(), t.ok()),
        };
        let trouble = |n: i64| if n > 0 { t.warn() } else { t.text() };
        TableRow::new(vec![
            Cell::new(s.name.clone(), t.text()),
            Cell::new(if s.format == "eventbridge" { s.kind.clone() } else { format!("{}/{}", s.kind, s.format) }, t.text()),
            Cell::new(breaker, style),
            Cell::new(s.backlog.to_string(), t.text()),
            Cell::new(s.oldest_age_ms.map(secs).unwrap_or_else(|| "-".into()), t.text()),
            Cell::new(s.rate_per_min.to_string(), t.text()),
            Cell::new(s.delivered.to_string(), t.text()),
            Cell::new(s.failures.to_string(), trouble(s.failures)),
            Cell::new(s.parked.to_string(), trouble(s.parked)),
            Cell::new(s.last_error.clone().unwrap_or_default(), t.muted()),
        ])
        .hidden(s.target.clone())
        .hidden(s.paused_reason.clone().unwrap_or_default())
    }

    /// An outbox row waiting for a sink. Hidden: the stream (execution ARN), the event id, why
    /// it was parked.
    pub fn delivery_row(&self, r: &DeliveryRow, for_search: bool) -> TableRow {
        let t = &self.theme;
        let state = if r.parked {
            "parked"
        } else if r.attempts > 0 {
            "retrying"
        } else {
            "waiting"
        };
        let style = if r.parked { t.breach() } else { t.text() };
        TableRow::new(vec![
            Cell::new(r.row_id.to_string(), t.text()),
            Cell::new(r.attempts.to_string(), t.text()),
            Cell::new(state, style),
            Cell::new(r.detail_type.clone(), t.text()),
            Cell::new(secs(self.now.timestamp_millis() - r.created_ms), t.text()),
            Cell::new(name_of(&r.stream), t.text()),
            Cell::new(r.last_error.clone().unwrap_or_default(), t.muted()),
        ])
        .search_also(for_search, || vec![r.stream.clone(), r.event_id.clone(), r.park_reason.clone().unwrap_or_default()])
    }

    /// A dependency in view 6's Dependencies table. Hidden: the full hold reason.
    pub fn dependency_row(&self, d: &DependencyStatus, for_search: bool) -> TableRow {
        let t = &self.theme;
        let (breaker, style) = match d.breaker.as_str() {
            "OPEN" => (self.dependency_left(d).map(|l| format!("OPEN {l}")).unwrap_or_else(|| "OPEN".into()), t.breach()),
            "HALF_OPEN" => ("HALF_OPEN".to_string(), t.warn()),
            b => (b.to_string(), t.ok()),
        };
        let since = d
            .held_since
            .as_deref()
            .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
            .map(|x| clock(x.with_timezone(&chrono::Utc), &self.settings.tz))
            .unwrap_or_default();
        let failures = Cell::new(format!("{}/{}", d.failures, d.threshold), if d.failures > 0 { t.warn() } else { t.text() });
        TableRow::new(vec![
            Cell::new(d.name.clone(), t.text()),
            Cell::new(d.matches.clone(), t.muted()),
            Cell::new(breaker, style),
            failures,
            match &d.held_by {
                Some(by) if d.held => Cell::new(format!("by {by}"), t.warn()),
                _ if d.held => Cell::new("held", t.warn()),
                _ => Cell::new("no", t.text()),
            },
            Cell::new(since, t.text()),
            Cell::new(d.waiting.to_string(), if d.waiting > 0 { t.warn() } else { t.text() }),
            Cell::new(d.hold_reason.clone().unwrap_or_default(), t.text()),
        ])
        .search_also(for_search, || vec![d.breaker.clone()])
    }

    /// Draw prepared rows (the window starting at row `first`) through the one table widget;
    /// a table with the focus has an accent border.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn draw_rows(
        &self,
        f: &mut Frame,
        area: Rect,
        spec: Spec,
        rows: Vec<TableRow>,
        first: usize,
        selected: Option<usize>,
        title: String,
        focused: bool,
    ) {
        let block = if focused { self.block(title).border_style(self.theme.accent()) } else { self.block(title) };
        DataTable {
            columns: spec.columns,
            rows,
            first,
            selected,
            marks: spec.marks,
            block,
            header_style: self.theme.muted(),
            selected_style: self.theme.selected(),
        }
        .render(f, area);
    }

    /// Draw `n` rows (row `i` built by `row(i)`, only those in view) through the one table widget.
    pub(super) fn draw_table(
        &self,
        f: &mut Frame,
        area: Rect,
        spec: Spec,
        n: usize,
        row: impl Fn(usize) -> Option<TableRow>,
        title: String,
    ) {
        let sel = self.selected();
        let win = table::window(n, sel, area);
        let first = win.start;
        let rows: Vec<TableRow> = win.filter_map(row).collect();
        DataTable {
            columns: spec.columns,
            rows,
            first,
            selected: Some(sel),
            marks: spec.marks,
            block: self.block(title),
            header_style: self.theme.muted(),
            selected_style: self.theme.selected(),
        }
        .render(f, area);
    }
}
