//! View 6, Outbox: three tables on the one table widget ([`super::table`], rows built in
//! [`super::rows`]). Sinks: per sink its breaker (and time left), backlog, oldest age,
//! publish rate, failures and parked rows. Below, the rows behind the selected sink, each
//! linked to its execution (Enter opens it). Last, Dependencies: each configured dependency's
//! breaker (and time left), recent failures, and hold (by whom, since when, why).
//!
//! Focus is on the sinks (with their rows) or on the dependencies: Tab walks sinks →
//! dependencies → the next view, S-Tab back. `j`/`k` move in the table in focus; the `/`
//! filter keeps the rows and the dependencies whose cells match. The keys are keymap actions
//! (scope view 6, rebindable): `n` next sink, `p` pause/resume, `t` retry now, `P` park row,
//! `u` requeue parked; `h` hold, `r` release, `b` reset the selected dependency's breaker.
//! A key for the other table moves the focus there. Each action is confirmed (pause, park,
//! hold, release and reset ask for a reason) and carried out by the jobs thread; outbox
//! actions are audited by the console's hook, dependency changes by the backend exactly as
//! their CLI twin (`lightbox dependencies hold|release|reset`).

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::app::{App, Dialog, Effect, Mutation, Pane, View};
use super::keymap::Action;
use crate::backend::{DependencyOp, OutboxSnapshot};
use crate::engine::dependencies::DependencyStatus;
use crate::outbox::{self, DeliveryRow, SinkStatus};

/// Which of view 6's tables `j`/`k` move in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Focus {
    /// The sinks, and the rows behind the selected one (`n` picks the sink, `j`/`k` the row).
    #[default]
    Sinks,
    Dependencies,
}

/// What view 6 holds: the last snapshots and what is selected. The rows table's selection is
/// the view's own (`App::sel`, by identity); the sink and the dependency are kept by name.
#[derive(Debug, Default)]
pub struct OutboxView {
    pub data: Pane<OutboxSnapshot>,
    pub deps: Pane<Vec<DependencyStatus>>,
    /// The selected sink's name (`None`: the first).
    pub sink: Option<String>,
    pub focus: Focus,
    /// The selected dependency: its index among those shown, and its name.
    pub dep_sel: usize,
    pub dep_key: Option<String>,
}

/// `ms` as `1h02m`, `3m05s` or `42s`.
pub fn secs(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

impl App {
    pub fn outbox_sink(&self) -> Option<&SinkStatus> {
        let sinks = &self.outbox.data.value.sinks;
        self.outbox.sink.as_ref().and_then(|n| sinks.iter().find(|s| s.name == *n)).or_else(|| sinks.first())
    }

    /// The rows behind the selected sink, oldest first, as the filter keeps them.
    pub fn outbox_rows(&self) -> Vec<&DeliveryRow> {
        let Some(s) = self.outbox_sink() else { return vec![] };
        let f = &self.filters[View::Outbox.index()];
        self.outbox
            .data
            .value
            .rows
            .iter()
            .filter(|r| r.sink == s.name && f.as_ref().is_none_or(|f| self.delivery_row(r, true).kept_by(f)))
            .collect()
    }

    /// The dependencies, as the filter keeps them.
    pub fn visible_dependencies(&self) -> Vec<&DependencyStatus> {
        let f = &self.filters[View::Outbox.index()];
        self.outbox.deps.value.iter().filter(|d| f.as_ref().is_none_or(|f| self.dependency_row(d, true).kept_by(f))).collect()
    }

    pub fn selected_dependency(&self) -> Option<&DependencyStatus> {
        self.visible_dependencies().get(self.outbox.dep_sel).copied()
    }

    /// The execution behind the selected row (streams of no execution open nothing).
    pub fn outbox_selected_execution(&self) -> Option<String> {
        if self.outbox.focus != Focus::Sinks {
            return None;
        }
        self.outbox_rows().get(self.selected()).map(|r| r.stream.clone()).filter(|s| s.starts_with("arn:"))
    }

    /// Put the dependency selection back on the same dependency (by name) after the list changed.
    pub(super) fn follow_dependency(&mut self) {
        let names: Vec<String> = self.visible_dependencies().iter().map(|d| d.name.clone()).collect();
        if let Some(p) = self.outbox.dep_key.as_ref().and_then(|k| names.iter().position(|n| n == k)) {
            self.outbox.dep_sel = p;
            return;
        }
        self.outbox.dep_sel = self.outbox.dep_sel.min(names.len().saturating_sub(1));
        self.outbox.dep_key = names.get(self.outbox.dep_sel).cloned();
    }

    /// Tab (`forward`) or S-Tab in view 6: between the two tables first, then to the next
    /// (previous) view. `None`: the view changes.
    pub(super) fn outbox_tab(&mut self, forward: bool) -> Option<Vec<Effect>> {
        match (self.outbox.focus, forward) {
            (Focus::Sinks, true) => self.outbox.focus = Focus::Dependencies,
            (Focus::Dependencies, false) => self.outbox.focus = Focus::Sinks,
            _ => return None,
        }
        self.follow_dependency();
        Some(vec![])
    }

    /// Whether a view-6 action applies to what is selected (the footer offers only those).
    pub(super) fn outbox_applies(&self, a: Action) -> bool {
        // Each table's keys are offered while it has the focus (they work from the other too).
        let sinks = self.outbox.focus == Focus::Sinks;
        let dep = self.selected_dependency().filter(|_| !sinks);
        match a {
            Action::NextSink => sinks && self.outbox.data.value.sinks.len() > 1,
            Action::PauseSink | Action::RetryNow | Action::RequeueParked => sinks && self.outbox_sink().is_some(),
            Action::ParkRow => sinks && self.outbox_rows().get(self.selected()).is_some_and(|r| !r.parked),
            Action::Open => self.outbox_selected_execution().is_some(),
            Action::HoldDependency => dep.is_some_and(|d| !d.held),
            Action::ReleaseDependency => dep.is_some_and(|d| d.held),
            Action::ResetBreaker => dep.is_some_and(|d| d.breaker != "CLOSED"),
            _ => true,
        }
    }

    /// The view-6 actions: each opens its confirmation (or says why it cannot).
    pub(super) fn outbox_action(&mut self, a: Action) -> Vec<Effect> {
        let for_deps = matches!(a, Action::HoldDependency | Action::ReleaseDependency | Action::ResetBreaker);
        let want = if for_deps { Focus::Dependencies } else { Focus::Sinks };
        if self.outbox.focus != want {
            self.outbox.focus = want;
            self.follow_dependency();
        }
        if for_deps { self.dependency_action(a) } else { self.sink_action(a) }
    }

    fn sink_action(&mut self, a: Action) -> Vec<Effect> {
        let Some(sink) = self.outbox_sink().cloned() else {
            self.message = Some(("no outbox sinks: add [[outbox.sinks]] to the config".into(), true));
            return vec![];
        };
        if a == Action::NextSink {
            let sinks = &self.outbox.data.value.sinks;
            let at = sinks.iter().position(|s| s.name == sink.name).unwrap_or(0);
            self.outbox.sink = sinks.get((at + 1) % sinks.len().max(1)).map(|s| s.name.clone());
            let i = View::Outbox.index();
            self.sel[i] = 0;
            self.sel_keys[i] = self.row_key(View::Outbox, 0);
            return vec![];
        }
        let row = self.outbox_rows().get(self.selected()).map(|r| (*r).clone());
        let action = match a {
            Action::PauseSink if sink.paused => outbox::Action::Resume { sink: sink.name.clone() },
            Action::PauseSink => outbox::Action::Pause { sink: sink.name.clone(), reason: String::new() },
            Action::RetryNow => outbox::Action::Retry {
                sink: sink.name.clone(),
                row: row.as_ref().filter(|r| r.attempts > 0 && !r.parked).map(|r| r.row_id),
            },
            Action::ParkRow => match row.as_ref().filter(|r| !r.parked) {
                Some(r) => outbox::Action::Park { sink: sink.name.clone(), row: r.row_id, reason: String::new() },
                None => {
                    self.message = Some(("park: select a waiting row first".into(), true));
                    return vec![];
                }
            },
            _ => outbox::Action::Requeue { sink: sink.name.clone(), row: row.as_ref().filter(|r| r.parked).map(|r| r.row_id) },
        };
        let mut lines = vec![action.describe()];
        if let Some(r) = row.as_ref().filter(|_| matches!(action, outbox::Action::Park { .. } | outbox::Action::Retry { row: Some(_), .. }))
        {
            lines.push(format!("row {}: {} of {} ({} attempts)", r.row_id, r.detail_type, r.stream, r.attempts));
        }
        let title = format!("Outbox: {}", action.name());
        let reasoned = matches!(action, outbox::Action::Pause { .. } | outbox::Action::Park { .. });
        let mutation = Mutation::Outbox { action };
        self.dialog = Some(if reasoned {
            Dialog::Reason { title, lines, mutation, code: None, reason: String::new() }
        } else {
            lines.push("The audit log records it.".into());
            Dialog::Confirm { title, lines, mutation }
        });
        vec![]
    }

    fn dependency_action(&mut self, a: Action) -> Vec<Effect> {
        let Some(d) = self.selected_dependency().cloned() else {
            let why = match &self.outbox.deps.error {
                Some(e) => e.clone(),
                None if self.outbox.deps.value.is_empty() => "no dependencies: add [[dependencies]] to the config".into(),
                None => "no dependency selected (the filter shows none)".into(),
            };
            self.message = Some((why, true));
            return vec![];
        };
        let left = self.dependency_left(&d);
        let (op, lines) = match a {
            Action::HoldDependency if d.held => {
                self.message =
                    Some((format!("{} is already held by {} (r releases it)", d.name, d.held_by.as_deref().unwrap_or("someone")), true));
                return vec![];
            }
            Action::HoldDependency => (
                DependencyOp::Hold,
                vec![
                    format!("hold {} ({}): its tasks wait, durably, instead of being sent, until the hold is released", d.name, d.matches),
                    format!(
                        "breaker {}{}; {} execution(s) waiting now",
                        d.breaker,
                        left.map(|l| format!(" ({l} left)")).unwrap_or_default(),
                        d.waiting
                    ),
                ],
            ),
            Action::ReleaseDependency if !d.held => {
                self.message = Some((format!("{} is not held (h holds it)", d.name), true));
                return vec![];
            }
            Action::ReleaseDependency => (
                DependencyOp::Release,
                vec![
                    format!(
                        "release the hold on {}, held by {} since {}: {}",
                        d.name,
                        d.held_by.as_deref().unwrap_or("?"),
                        d.held_since.as_deref().unwrap_or("?"),
                        d.hold_reason.as_deref().unwrap_or("")
                    ),
                    format!("{} waiting execution(s) resume on the engine's next tick", d.waiting),
                ],
            ),
            _ if d.breaker == "CLOSED" => {
                self.message = Some((format!("{}: the breaker is closed; nothing to reset", d.name), true));
                return vec![];
            }
            _ => (
                DependencyOp::Reset,
                vec![format!(
                    "close {}'s breaker by hand (now {}{}): its tasks are sent again",
                    d.name,
                    d.breaker,
                    left.map(|l| format!(", {l} left")).unwrap_or_default()
                )],
            ),
        };
        let title = format!("Dependency: {} {}", op.audit_name(), d.name);
        let mutation = Mutation::Dependency { op, name: d.name.clone(), reason: String::new(), by: self.settings.user.clone() };
        self.dialog = Some(Dialog::Reason { title, lines, mutation, code: None, reason: String::new() });
        vec![]
    }

    /// An open breaker's time left, counting down from the load.
    pub(super) fn dependency_left(&self, d: &DependencyStatus) -> Option<String> {
        let at = self.outbox.deps.loaded_at.unwrap_or(self.now);
        d.open_seconds_left.map(|s| secs(s.saturating_mul(1000) - (self.now - at).num_milliseconds().max(0)))
    }

    /// A sink's open breaker's time left, counting down from the load.
    pub(super) fn sink_left(&self, s: &SinkStatus) -> Option<String> {
        let at = self.outbox.data.loaded_at.unwrap_or(self.now);
        s.breaker_left_ms.map(|ms| secs(ms - (self.now - at).num_milliseconds().max(0)))
    }

    pub(super) fn outbox_view(&self, f: &mut Frame, area: Rect) {
        let data = &self.outbox.data;
        let sinks = &data.value.sinks;
        let deps = self.visible_dependencies();
        let third = (area.height / 3).max(4);
        let sinks_h = (sinks.len().max(1) as u16 + 3).min(third);
        let deps_h = (deps.len().max(1) as u16 + 3).min(third);
        let [top, middle, bottom] =
            Layout::vertical([Constraint::Length(sinks_h), Constraint::Min(4), Constraint::Length(deps_h)]).areas(area);
        let focus = self.outbox.focus;
        let mark = |title: String, on: bool| if on { format!("{title} ◀") } else { title };

        // Sinks: the selected one marked; `n` moves it.
        let chosen = self.outbox_sink().map(|s| s.name.clone());
        let sel = sinks.iter().position(|s| Some(&s.name) == chosen.as_ref());
        let title = mark(format!("Outbox · sinks ({})", sinks.len()), focus == Focus::Sinks);
        let win = super::table::window(sinks.len(), sel.unwrap_or(0), top);
        let first = win.start;
        let rows = win.filter_map(|i| sinks.get(i).map(|s| self.sink_row(s))).collect();
        self.draw_rows(f, top, super::rows::SINKS, rows, first, sel, title, focus == Focus::Sinks);
        let empty = match (&data.error, data.loaded_at) {
            (Some(e), _) => Some(e.clone()),
            (None, None) => Some("loading…".into()),
            (None, Some(_)) if sinks.is_empty() => Some("no sinks: add [[outbox.sinks]] to the config".into()),
            _ => None,
        };
        self.empty_note(f, top, empty, data.error.is_some());

        // The rows behind the selected sink.
        let rows = self.outbox_rows();
        let filter = self.filters[View::Outbox.index()].as_ref().map(|f| format!(" · /{}", f.text)).unwrap_or_default();
        let title = match self.outbox_sink() {
            Some(s) => {
                // When the breaker lets its next trial row through.
                let trial = match s.breaker {
                    outbox::Breaker::Open => self.sink_left(s).map(|l| format!(" · next trial in {l}")).unwrap_or_default(),
                    outbox::Breaker::HalfOpen => " · next trial now".to_string(),
                    outbox::Breaker::Closed => String::new(),
                };
                match (&s.paused_reason, &s.last_error) {
                    (Some(r), _) if s.paused => format!("Rows behind {} ({}){filter}{trial} · paused: {r}", s.name, rows.len()),
                    (_, Some(e)) if s.failures > 0 => {
                        format!("Rows behind {} ({}){filter}{trial} · last error: {e}", s.name, rows.len())
                    }
                    _ => format!("Rows behind {} ({}){filter}{trial}", s.name, rows.len()),
                }
            }
            None => "Rows".to_string(),
        };
        // Cut to the border with `…`, never silently.
        let title = super::table::fit(&title, usize::from(middle.width.saturating_sub(2)));
        let selected = (focus == Focus::Sinks).then(|| self.selected());
        let win = super::table::window(rows.len(), selected.unwrap_or(0), middle);
        let first = win.start;
        let cells = win.filter_map(|i| rows.get(i).map(|r| self.delivery_row(r, false))).collect();
        self.draw_rows(f, middle, super::rows::DELIVERIES, cells, first, selected, title, false);
        if rows.is_empty() && self.outbox_sink().is_some() {
            let text = if filter.is_empty() { "nothing waiting: every event was delivered" } else { "no row matches the filter" };
            self.empty_note(f, middle, Some(text.into()), false);
        }

        // Dependencies.
        let dep_data = &self.outbox.deps;
        let held = deps.iter().filter(|d| d.held).count();
        let open = deps.iter().filter(|d| d.breaker != "CLOSED").count();
        let title =
            mark(format!("Dependencies ({}) · {held} held · {open} breaker(s) not closed", deps.len()), focus == Focus::Dependencies);
        let selected = (focus == Focus::Dependencies).then_some(self.outbox.dep_sel);
        let win = super::table::window(deps.len(), selected.unwrap_or(0), bottom);
        let first = win.start;
        let cells = win.filter_map(|i| deps.get(i).map(|d| self.dependency_row(d, false))).collect();
        self.draw_rows(f, bottom, super::rows::DEPENDENCIES, cells, first, selected, title, focus == Focus::Dependencies);
        let empty = match (&dep_data.error, dep_data.loaded_at) {
            (Some(e), _) => Some(e.clone()),
            (None, None) => Some("loading…".into()),
            (None, Some(_)) if dep_data.value.is_empty() => Some("no dependencies: add [[dependencies]] to the config".into()),
            (None, Some(_)) if deps.is_empty() => Some("no dependency matches the filter".into()),
            _ => None,
        };
        self.empty_note(f, bottom, empty, dep_data.error.is_some());
    }

    /// A muted (or, for an error, alarmed) line where an empty table's first row would be.
    fn empty_note(&self, f: &mut Frame, area: Rect, text: Option<String>, error: bool) {
        let Some(text) = text else { return };
        let inner = Rect { x: area.x + 2, y: area.y + 2, width: area.width.saturating_sub(4), height: 1 };
        if area.height < 4 || inner.width == 0 {
            return;
        }
        let style = if error { self.theme.breach() } else { self.theme.muted() };
        f.render_widget(Paragraph::new(Line::from(Span::styled(super::table::fit(&text, inner.width as usize), style))), inner);
    }
}
