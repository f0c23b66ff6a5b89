//! Reading everything: the one detail pane (a titled, bordered text pane that scrolls both
//! ways, wraps on demand and says where it is), the state it needs on [`App`], and what the
//! execution detail draws with it (the cause, the path through Map and Parallel states with
//! each iteration's and branch's status, raw history wrapped or scrolled, input/output).
//!
//! Text reaches the pane already masked: a pane built from a history event masks it with
//! [`crate::phi::Masker::mask_envelope`] on every frame unless the study is revealed, so a
//! reveal that ends (or the idle lock) hides it again at once.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph};
use serde_json::Value;

use super::app::{App, Effect, View};
use super::keymap::Action;
use super::theme::Theme;
use crate::asl::model::{Definition, StateKind};
use crate::backend::FeedEvent;
use crate::history::{ExecutionStatus, HistoryEvent};

/// Rows a page key moves a pane by.
const PAGE_ROWS: usize = 15;
/// Events held while the Events tail is paused (the oldest go first beyond this).
const HELD_MAX: usize = 2000;
/// Map iterations listed one by one under their Map state (the rest are counted).
const ITERATIONS_LISTED: usize = 60;

// ----- the pane's scroll position ---------------------------------------------

/// Where a text pane is scrolled to. Vertical position is kept from the top or from the
/// bottom (`G`), so the last page shows full whatever the pane's height; the draw clamps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PaneScroll {
    /// Rows from the top, or from the bottom when `bottom`.
    pub rows: usize,
    pub bottom: bool,
    /// Columns scrolled right (when not wrapping).
    pub cols: usize,
    pub wrap: bool,
}

impl PaneScroll {
    pub fn wrapped() -> PaneScroll {
        PaneScroll { wrap: true, ..PaneScroll::default() }
    }

    /// Apply a movement key; `total` is how many lines the pane holds (an upper bound).
    pub fn apply(&mut self, a: Action, total: usize) -> bool {
        let max = total.saturating_sub(1);
        let down = |s: &mut PaneScroll, n: usize| {
            if s.bottom {
                s.rows = s.rows.saturating_sub(n);
            } else {
                s.rows = (s.rows + n).min(max);
            }
        };
        let up = |s: &mut PaneScroll, n: usize| {
            if s.bottom {
                s.rows = (s.rows + n).min(max);
            } else {
                s.rows = s.rows.saturating_sub(n);
            }
        };
        match a {
            Action::Down => down(self, 1),
            Action::Up => up(self, 1),
            Action::PageDown => down(self, PAGE_ROWS),
            Action::PageUp => up(self, PAGE_ROWS),
            Action::Top => *self = PaneScroll { rows: 0, bottom: false, ..*self },
            Action::Bottom => *self = PaneScroll { rows: 0, bottom: true, ..*self },
            Action::ScrollLeft if !self.wrap => self.cols = self.cols.saturating_sub(8),
            Action::ScrollRight if !self.wrap => self.cols = (self.cols + 8).min(100_000),
            Action::ToggleWrap => {
                self.wrap = !self.wrap;
                self.cols = 0;
            }
            _ => return false,
        }
        true
    }

    /// The first row shown, for `rows` rows in a pane `height` high.
    pub fn start(&self, rows: usize, height: usize) -> usize {
        let max_start = rows.saturating_sub(height);
        if self.bottom { max_start.saturating_sub(self.rows) } else { self.rows.min(max_start) }
    }
}

// ----- the widget ---------------------------------------------------------------

fn line_chars(l: &Line) -> usize {
    l.spans.iter().map(|s| s.content.chars().count()).sum()
}

/// Columns `skip..skip+take` of a styled line (by characters).
pub fn slice_line<'a>(l: &Line<'a>, skip: usize, take: usize) -> Line<'a> {
    let mut out = vec![];
    let mut pos = 0usize;
    let end = skip.saturating_add(take);
    for s in &l.spans {
        let n = s.content.chars().count();
        let (a, b) = (pos.max(skip), (pos + n).min(end));
        if a < b {
            let text: String = s.content.chars().skip(a - pos).take(b - a).collect();
            out.push(Span::styled(text, s.style));
        }
        pos += n;
        if pos >= end {
            break;
        }
    }
    Line::from(out).style(l.style)
}

/// Cut a line to `width` columns, ending with an ellipsis when something was cut.
pub fn fit_line<'a>(l: &Line<'a>, width: usize) -> Line<'a> {
    let n = line_chars(l);
    if n <= width || width == 0 {
        return l.clone();
    }
    // Only padding goes past the edge: cut it, nothing is lost.
    let text: String = l.spans.iter().map(|s| s.content.as_ref()).collect();
    if text.trim_end().chars().count() <= width {
        return slice_line(l, 0, width);
    }
    let mut cut = slice_line(l, 0, width.saturating_sub(1));
    let style = l.spans.last().map(|s| s.style).unwrap_or_default();
    cut.spans.push(Span::styled("…", style));
    cut
}

/// Cut a string to `width` characters, ending with an ellipsis when something was cut.
pub fn fit(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        return s.to_string();
    }
    let mut out: String = s.chars().take(width.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// How many rows a line takes in `width` columns when wrapped (at least one).
fn rows_of(l: &Line, width: usize) -> usize {
    line_chars(l).div_ceil(width.max(1)).max(1)
}

/// The rows a pane `width` wide shows for `lines`: wrapped (hard, at the width) or cut
/// after scrolling `cols` to the right, with an ellipsis where a line goes on.
fn pane_rows<'a>(lines: &[Line<'a>], width: usize, scroll: &PaneScroll) -> Vec<Line<'a>> {
    let width = width.max(1);
    let mut rows = vec![];
    for l in lines {
        if scroll.wrap {
            for k in 0..rows_of(l, width) {
                rows.push(slice_line(l, k * width, width));
            }
        } else {
            let n = line_chars(l);
            let shown = slice_line(l, scroll.cols, width + 1);
            rows.push(if n > scroll.cols + width { fit_line(&shown, width) } else { shown });
        }
    }
    rows
}

/// One text pane to draw: the detail pane of an event, an execution's input or output.
pub struct TextPane<'a> {
    pub title: String,
    pub lines: Vec<Line<'a>>,
    pub scroll: PaneScroll,
    /// Keys that work here, on the bottom border.
    pub hint: String,
    pub focused: bool,
}

impl TextPane<'_> {
    /// Draw with a border, the title, the keys and the position (`rows a–b of n`, column, wrap).
    pub fn draw(self, f: &mut Frame, area: Rect, t: &Theme) {
        let border = if self.focused { Style::default().fg(t.accent) } else { t.muted() };
        let inner_w = area.width.saturating_sub(2) as usize;
        let inner_h = area.height.saturating_sub(2) as usize;
        let rows = pane_rows(&self.lines, inner_w, &self.scroll);
        let start = self.scroll.start(rows.len(), inner_h);
        let end = (start + inner_h).min(rows.len());
        let mut pos = if rows.is_empty() { "empty".to_string() } else { format!("{}–{} of {}", start + 1, end, rows.len()) };
        if self.scroll.wrap {
            pos.push_str(" · wrap");
        } else if self.scroll.cols > 0 {
            pos.push_str(&format!(" · col {}", self.scroll.cols + 1));
        }
        let title_w = inner_w.saturating_sub(2);
        let mut block = Block::default()
            .borders(Borders::ALL)
            .border_style(border)
            .title(Span::styled(fit(&self.title, title_w), if self.focused { t.accent() } else { t.text() }))
            .title_bottom(Line::from(Span::styled(format!(" {pos} "), t.muted())).right_aligned());
        let room = inner_w.saturating_sub(pos.chars().count() + 4);
        if !self.hint.is_empty() && room > 8 {
            block = block.title_bottom(Line::from(Span::styled(fit(&format!(" {} ", self.hint), room), t.muted())));
        }
        let shown: Vec<Line> = rows.into_iter().skip(start).take(inner_h).collect();
        f.render_widget(Paragraph::new(shown).style(t.text()).block(block), area);
    }
}

// ----- what is open, and the path ---------------------------------------------

/// What the detail pane shows: kept as data, masked when drawn.
#[derive(Debug, Clone, PartialEq)]
pub enum PaneBody {
    /// A history event of an execution (`from_feed`: opened from the Events view).
    Event { arn: String, event: HistoryEvent, from_feed: bool },
}

#[derive(Debug, Clone, PartialEq)]
pub struct DetailPane {
    pub body: PaneBody,
    pub scroll: PaneScroll,
}

/// How a state (or a Map iteration, or a Parallel branch) went, from the history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    NotRun,
    Running,
    Done,
    Failed,
    Aborted,
}

impl Mark {
    pub fn glyph(self) -> &'static str {
        match self {
            Mark::NotRun => "·",
            Mark::Running => "▶",
            Mark::Done => "✓",
            Mark::Failed => "✗",
            Mark::Aborted => "⊘",
        }
    }
    fn style(self, t: &Theme) -> Style {
        match self {
            Mark::NotRun => t.muted(),
            Mark::Running => t.accent(),
            Mark::Done => t.ok(),
            Mark::Failed => t.breach(),
            Mark::Aborted => t.warn(),
        }
    }
}

/// One line of the path pane: a state, a branch or a row of Map iterations, indented by depth.
#[derive(Debug, Clone, PartialEq)]
pub struct PathLine {
    pub depth: usize,
    /// Marks and texts: one for a state or branch, several for a row of iterations (no
    /// mark: a summary).
    pub items: Vec<(Option<Mark>, String)>,
}

impl PathLine {
    fn width(&self) -> usize {
        1 + self.depth * 2 + self.items.iter().map(|(_, s)| s.chars().count() + 4).sum::<usize>()
    }
}

/// State the read side of the console keeps: the open detail pane, the execution's path
/// (built when its history or definition loads, never per frame), scroll positions of the
/// raw history and input/output, and the paused Events tail.
#[derive(Debug, Clone, Default)]
pub struct ReadState {
    pub pane: Option<DetailPane>,
    /// The execution the path and parsed definition belong to.
    pub path_for: Option<String>,
    pub definition: Option<Arc<Definition>>,
    pub path: Vec<PathLine>,
    /// Raw history: columns scrolled, or wrapped.
    pub history: PaneScroll,
    /// Input (0) and output (1), and which one the movement keys scroll.
    pub io: [PaneScroll; 2],
    pub io_half: usize,
    /// After jumping from an event to its execution: select that event once it loads.
    pub goto_event: Option<i64>,
    pub events_paused: bool,
    pub events_held: Vec<FeedEvent>,
    /// New events since the pause (including any dropped beyond [`HELD_MAX`]).
    pub events_waiting: usize,
}

/// The path through `def` as `history` tells it: every state (nested ones indented under their
/// Map or Parallel), each Parallel branch's status and each Map iteration's.
///
/// A state entered and never left is running while its execution (and enclosing Map or
/// Parallel) runs; once they stopped, it failed if a failure was recorded while it was the
/// state last entered (or the execution failed in it, `failed_at`), else it was cancelled
/// (a sibling branch or iteration failed, or the execution was stopped).
pub fn build_path(def: &Definition, history: &[HistoryEvent], status: Option<ExecutionStatus>, failed_at: Option<&str>) -> Vec<PathLine> {
    let mut tally: HashMap<&str, (usize, usize)> = HashMap::new();
    let mut iterations: HashMap<&str, BTreeMap<i64, Mark>> = HashMap::new();
    let mut failed_in: std::collections::HashSet<&str> = failed_at.into_iter().collect();
    let mut last_entered: Option<&str> = None;
    for e in history {
        let ty = e.event_type.as_str();
        let failure = (ty.ends_with("Failed") || ty.ends_with("TimedOut"))
            && !ty.starts_with("Execution")
            && !ty.starts_with("Map")
            && !ty.starts_with("Parallel");
        if failure && let Some(n) = last_entered {
            failed_in.insert(n);
        }
        let Some(name) = e.state_name() else { continue };
        if ty.ends_with("StateEntered") {
            last_entered = Some(name);
            tally.entry(name).or_default().0 += 1;
        } else if ty.ends_with("StateExited") {
            tally.entry(name).or_default().1 += 1;
        } else if let Some(kind) = ty.strip_prefix("MapIteration") {
            let index = e.details.get("index").and_then(Value::as_i64).unwrap_or(-1);
            let mark = match kind {
                "Started" => Mark::Running,
                "Succeeded" => Mark::Done,
                "Failed" => Mark::Failed,
                _ => Mark::Aborted,
            };
            iterations.entry(name).or_default().insert(index, mark);
        }
    }
    let running = status == Some(ExecutionStatus::Running);
    let succeeded = status == Some(ExecutionStatus::Succeeded);
    let cx = PathCx { def, tally: &tally, iterations: &iterations, failed_in: &failed_in, succeeded };
    let mut out = vec![];
    cx.scope(0, 0, running, &mut out);
    out
}

struct PathCx<'a> {
    def: &'a Definition,
    tally: &'a HashMap<&'a str, (usize, usize)>,
    iterations: &'a HashMap<&'a str, BTreeMap<i64, Mark>>,
    failed_in: &'a std::collections::HashSet<&'a str>,
    succeeded: bool,
}

impl PathCx<'_> {
    /// The states of scope `id` at `depth`; `live`: the scope is still running (its
    /// execution, Map or Parallel state has not finished), so a state entered and not left
    /// is running there rather than failed.
    fn scope(&self, id: usize, depth: usize, live: bool, out: &mut Vec<PathLine>) -> Mark {
        let Some(m) = self.def.scope(id) else { return Mark::NotRun };
        let mut marks = vec![];
        for s in &m.states {
            let (entered, exited) = self.tally.get(s.name.as_str()).copied().unwrap_or((0, 0));
            let open = entered > exited;
            let mark = if entered == 0 {
                Mark::NotRun
            } else if matches!(s.kind, StateKind::Fail(_)) {
                Mark::Failed
            } else if !open || self.succeeded {
                Mark::Done
            } else if live {
                Mark::Running
            } else if self.failed_in.contains(s.name.as_str()) || matches!(s.kind, StateKind::Map(_) | StateKind::Parallel { .. }) {
                Mark::Failed
            } else {
                Mark::Aborted
            };
            marks.push(mark);
            let times = if entered > 1 { format!(" ×{entered}") } else { String::new() };
            out.push(PathLine { depth, items: vec![(Some(mark), format!("{} ({}){times}", s.name, s.type_name()))] });
            let inner_live = live && mark == Mark::Running;
            match &s.kind {
                StateKind::Map(spec) => {
                    self.scope(spec.processor, depth + 1, inner_live, out);
                    self.iteration_lines(&s.name, depth + 1, inner_live, out);
                }
                StateKind::Parallel { branches } => {
                    for (i, b) in branches.iter().enumerate() {
                        let at = out.len();
                        let mut lines = vec![];
                        let branch = self.scope(*b, depth + 2, inner_live, &mut lines);
                        out.insert(at, PathLine { depth: depth + 1, items: vec![(Some(branch), format!("branch {}", i + 1))] });
                        out.extend(lines);
                    }
                }
                _ => {}
            }
        }
        // A scope's own status: failed anywhere, else running anywhere, else done if it began.
        if marks.contains(&Mark::Failed) {
            Mark::Failed
        } else if marks.contains(&Mark::Aborted) {
            Mark::Aborted
        } else if marks.contains(&Mark::Running) {
            Mark::Running
        } else if marks.iter().any(|m| *m != Mark::NotRun) {
            Mark::Done
        } else {
            Mark::NotRun
        }
    }

    fn iteration_lines(&self, map: &str, depth: usize, live: bool, out: &mut Vec<PathLine>) {
        let Some(its) = self.iterations.get(map) else { return };
        let mark = |m: Mark| if m == Mark::Running && !live && !self.succeeded { Mark::Aborted } else { m };
        let count = |want: Mark| its.values().filter(|m| mark(**m) == want).count();
        let mut summary = format!("iterations: {}", its.len());
        for m in [Mark::Done, Mark::Running, Mark::Failed, Mark::Aborted] {
            let n = count(m);
            if n > 0 {
                summary.push_str(&format!(" · {n} {}", m.glyph()));
            }
        }
        out.push(PathLine { depth, items: vec![(None, summary)] });
        let listed: Vec<(Option<Mark>, String)> =
            its.iter().take(ITERATIONS_LISTED).map(|(i, m)| (Some(mark(*m)), format!("#{i}"))).collect();
        for row in listed.chunks(5) {
            out.push(PathLine { depth, items: row.to_vec() });
        }
        if its.len() > ITERATIONS_LISTED {
            out.push(PathLine { depth, items: vec![(None, format!("… {} more", its.len() - ITERATIONS_LISTED))] });
        }
    }
}

// ----- App: state logic ---------------------------------------------------------

impl App {
    /// The detail pane is open over the view.
    pub fn pane_open(&self) -> bool {
        self.read.pane.is_some()
    }

    /// The detail's history (or the Events view's feed) loaded: rebuild the path (parsing the
    /// definition only when it is new) and select the event a jump asked for.
    pub(super) fn detail_loaded(&mut self) {
        let Some(arn) = self.detail_arn.clone() else { return };
        let d = &self.detail.value;
        if d.execution.as_ref().is_some_and(|e| e.arn != arn) {
            return;
        }
        if self.read.path_for.as_deref() != Some(arn.as_str()) {
            self.read.definition = None;
            self.read.history.cols = 0;
            self.read.io = [PaneScroll::default(); 2];
            self.read.io_half = 0;
        }
        if self.read.definition.is_none() || self.read.path_for.as_deref() != Some(arn.as_str()) {
            self.read.definition = d.definition.as_deref().and_then(|t| Definition::parse_str(t).ok()).map(Arc::new);
        }
        self.read.path_for = Some(arn);
        self.read.path = match &self.read.definition {
            Some(def) => {
                let e = d.execution.as_ref();
                let failed_at = e
                    .filter(|e| matches!(e.status, ExecutionStatus::Failed | ExecutionStatus::TimedOut))
                    .and_then(|e| e.current_state.as_deref());
                build_path(def, &d.history, e.map(|e| e.status), failed_at)
            }
            None => vec![],
        };
        if let Some(id) = self.read.goto_event
            && let Some(i) = d.history.iter().position(|e| e.id == id)
        {
            self.detail_scroll = i;
            self.read.goto_event = None;
        }
    }

    /// New feed events: while the tail is paused they wait (counted) and the list stays
    /// still; otherwise they are handed back to be shown.
    pub(super) fn hold_events(&mut self, e: Vec<FeedEvent>, at: DateTime<Utc>) -> Option<Vec<FeedEvent>> {
        // The first fill of the list is shown even when paused: there is nothing to keep still yet.
        if !self.read.events_paused || self.events.loaded_at.is_none() {
            return Some(e);
        }
        self.read.events_waiting += e.len();
        self.read.events_held.extend(e);
        if self.read.events_held.len() > HELD_MAX {
            self.read.events_held.drain(..self.read.events_held.len() - HELD_MAX);
        }
        self.events.loading = false;
        self.events.loaded_at = Some(at);
        None
    }

    /// The feed position the next Events load continues after (held events count).
    pub fn events_after(&self) -> Option<i64> {
        self.read.events_held.last().or(self.events.value.last()).map(|e| e.seq)
    }

    /// Movement and read keys the detail side handles before the view does: `None` leaves
    /// the action to the view.
    pub(super) fn read_action(&mut self, a: Action) -> Option<Vec<Effect>> {
        let in_detail = self.view == View::Executions && self.detail_arn.is_some();
        if in_detail && self.show_io {
            let half = self.read.io_half.min(1);
            let total = self.io_text(half).lines().count().max(1);
            if self.read.io[half].apply(a, total) {
                if a == Action::ToggleWrap {
                    let wrap = self.read.io[half].wrap;
                    self.read.io[1 - half].wrap = wrap;
                    self.read.io[1 - half].cols = 0;
                }
                return Some(vec![]);
            }
            if a == Action::SwitchHalf {
                self.read.io_half = 1 - half;
                return Some(vec![]);
            }
        }
        match a {
            Action::Open if self.view == View::Events => Some(self.open_feed_event()),
            Action::Open if in_detail && !self.show_io => {
                let i = self.detail_scroll;
                let arn = self.detail_arn.clone().unwrap_or_default();
                match self.detail.value.history.get(i).cloned() {
                    Some(event) => {
                        self.read.pane =
                            Some(DetailPane { body: PaneBody::Event { arn, event, from_feed: false }, scroll: PaneScroll::wrapped() });
                    }
                    None => self.message = Some(("no history event selected yet".into(), true)),
                }
                Some(vec![])
            }
            Action::Open if in_detail => {
                self.message = Some(("open: events open from the history (i shows it again)".into(), true));
                Some(vec![])
            }
            Action::OpenExecution if self.view == View::Events => {
                let cur = self.selected();
                let hit = self.visible_events().get(cur).map(|e| (e.execution_arn.clone(), e.event.id));
                Some(match hit {
                    Some((arn, id)) => self.jump_to(arn, id),
                    None => vec![],
                })
            }
            Action::Pause if self.view == View::Events => {
                self.read.events_paused = !self.read.events_paused;
                if !self.read.events_paused {
                    let held = std::mem::take(&mut self.read.events_held);
                    self.read.events_waiting = 0;
                    let mut all = std::mem::take(&mut self.events.value);
                    all.extend(held);
                    if all.len() > super::app::EVENTS_KEPT {
                        all.drain(..all.len() - super::app::EVENTS_KEPT);
                    }
                    self.events.value = all;
                    self.message = Some(("live tail resumed".into(), false));
                } else {
                    self.message = Some(("live tail paused: new events wait until p".into(), false));
                }
                Some(vec![])
            }
            Action::ScrollLeft | Action::ScrollRight | Action::ToggleWrap if in_detail && self.raw_history && !self.show_io => {
                let n = self.detail.value.history.len();
                self.read.history.apply(a, n);
                Some(vec![])
            }
            Action::ScrollLeft | Action::ScrollRight | Action::ToggleWrap => {
                self.message = Some((
                    format!("{}: only raw history (h), input/output (i) and the detail pane scroll sideways or wrap", a.name()),
                    true,
                ));
                Some(vec![])
            }
            Action::SwitchHalf => {
                self.message = Some(("switch-half: show input/output first (i)".into(), true));
                Some(vec![])
            }
            Action::Pause | Action::OpenExecution => {
                self.message = Some((format!("{}: works in the Events view", a.name()), true));
                Some(vec![])
            }
            _ => None,
        }
    }

    fn open_feed_event(&mut self) -> Vec<Effect> {
        let cur = self.selected();
        match self.visible_events().get(cur).map(|e| (e.execution_arn.clone(), e.event.clone())) {
            Some((arn, event)) => {
                self.read.pane = Some(DetailPane { body: PaneBody::Event { arn, event, from_feed: true }, scroll: PaneScroll::wrapped() });
            }
            None => self.message = Some(("no event selected".into(), true)),
        }
        vec![]
    }

    /// Open an execution with one of its history events selected.
    fn jump_to(&mut self, arn: String, event: i64) -> Vec<Effect> {
        self.read.pane = None;
        self.read.goto_event = Some(event);
        self.open_execution(arn)
    }

    /// A key while the detail pane is open: it scrolls, wraps, closes (Esc) or jumps to the
    /// event's execution (Enter, `o`); a view, help or command key closes it and goes on.
    pub(super) fn pane_action(&mut self, a: Action) -> Vec<Effect> {
        let Some(mut p) = self.read.pane.take() else { return self.action(a) };
        let total = self.pane_text(&p.body).lines().count();
        if p.scroll.apply(a, total) {
            self.read.pane = Some(p);
            return vec![];
        }
        match a {
            Action::Back => vec![],
            Action::Open | Action::OpenExecution => {
                let PaneBody::Event { arn, event, .. } = &p.body;
                if self.view == View::Executions && self.detail_arn.as_deref() == Some(arn.as_str()) {
                    self.message = Some(("this event's execution is the one open (Esc closes the event)".into(), false));
                    self.read.pane = Some(p);
                    return vec![];
                }
                let (arn, id) = (arn.clone(), event.id);
                self.jump_to(arn, id)
            }
            // Reveal applies to the event's study (the one selected or open behind the pane).
            Action::Refresh | Action::Reveal => {
                self.read.pane = Some(p);
                self.action(a)
            }
            Action::Quit
            | Action::Help
            | Action::Command
            | Action::Filter
            | Action::View1
            | Action::View2
            | Action::View3
            | Action::View4
            | Action::View5
            | Action::View6
            | Action::NextView
            | Action::PrevView => self.action(a),
            other => {
                self.message = Some((format!("{}: close the event first (Esc)", other.name()), true));
                self.read.pane = Some(p);
                vec![]
            }
        }
    }

    /// The pane's text as drawn (masked unless the study is revealed).
    pub fn pane_text(&self, body: &PaneBody) -> String {
        match body {
            PaneBody::Event { arn, event, .. } => {
                let raw = event.to_aws_json();
                let v = if self.revealed(arn) { raw } else { self.settings.phi.mask_envelope(&raw, &self.known_identifiers(arn)) };
                let mut text = serde_json::to_string_pretty(&v).unwrap_or_default();
                // Payloads travel as JSON text: show each one parsed, too.
                if let Some(details) = v.as_object().and_then(|o| o.values().find(|x| x.is_object())).and_then(Value::as_object) {
                    for (k, x) in details {
                        let parsed =
                            x.as_str().and_then(|s| serde_json::from_str::<Value>(s).ok()).filter(|p| p.is_object() || p.is_array());
                        if let Some(p) = parsed {
                            text.push_str(&format!("\n\n── {k} (as JSON) ──\n"));
                            text.push_str(&serde_json::to_string_pretty(&p).unwrap_or_default());
                        }
                    }
                }
                text
            }
        }
    }

    /// The execution's input (0) or output (1), pretty and masked unless revealed.
    pub fn io_text(&self, half: usize) -> String {
        let e = self.detail.value.execution.as_ref();
        let raw = if half == 0 { e.map(|e| e.input.as_str()) } else { e.and_then(|e| e.output.as_deref()) };
        let pretty = raw
            .and_then(|t| serde_json::from_str::<Value>(t).ok())
            .map(|v| serde_json::to_string_pretty(&v).unwrap_or_default())
            .unwrap_or_else(|| "—".into());
        let arn = self.detail_arn.as_deref().unwrap_or_default();
        if self.revealed(arn) { pretty } else { self.settings.phi.mask_text_with(&pretty, &self.known_identifiers(arn)) }
    }

    // ----- drawing ------------------------------------------------------------

    /// The detail pane over the view's area.
    pub(super) fn draw_pane(&self, f: &mut Frame, area: Rect) {
        let Some(p) = &self.read.pane else { return };
        let t = &self.theme;
        let PaneBody::Event { arn, event, .. } = &p.body;
        let name = arn.rsplit(':').next().unwrap_or(arn);
        let same = self.view == View::Executions && self.detail_arn.as_deref() == Some(arn.as_str());
        let title = format!("Event #{} {} · {} ({})", event.id, event.event_type, name, crate::ops::project::machine_of(arn));
        let hint = if same {
            "Esc close · w wrap · ←→ scroll".to_string()
        } else {
            "Enter go to execution · Esc close · w wrap · ←→".to_string()
        };
        let lines: Vec<Line> = self.pane_text(&p.body).lines().map(|l| Line::from(l.to_string())).collect();
        f.render_widget(Clear, area);
        TextPane { title, lines, scroll: p.scroll, hint, focused: true }.draw(f, area, t);
    }

    /// The Events view's title: live, or paused with how many wait.
    pub(super) fn events_title(&self, shown: usize) -> String {
        if self.read.events_paused {
            format!("Events · PAUSED · {} waiting (p resumes) · {shown} shown", self.read.events_waiting)
        } else {
            format!("Events · live (p pauses) · {shown} shown")
        }
    }

    /// The execution's header: status, error, state, redrives, age, and the cause below
    /// (masked like the error), wrapped over as many rows as it needs up to `max_rows`.
    pub(super) fn detail_header(&self, width: u16, max_rows: u16) -> Vec<Line<'static>> {
        let t = &self.theme;
        let d = &self.detail.value;
        let Some(e) = &d.execution else {
            return vec![Line::from(Span::styled(if self.detail.error.is_some() { "could not load" } else { " loading…" }, t.muted()))];
        };
        let at = e.current_state.clone().unwrap_or_default();
        let error = self.error_text(&e.arn, e.error.as_deref().unwrap_or_default());
        let mut lines = vec![fit_line(
            &Line::from(vec![
                Span::styled(format!(" {} ", e.status), t.status(e.status.as_str()).add_modifier(Modifier::REVERSED)),
                Span::styled(if error.is_empty() { format!("  at {at}") } else { format!("  {error} at {at}") }, t.text()),
                Span::styled(
                    format!("   redriven {}×   started {} ago", e.redrive_count, crate::ops::project::human(self.now - e.start)),
                    t.muted(),
                ),
            ]),
            width as usize,
        )];
        // Compensation links, and for a failed execution what R and C would each do.
        let comp = self.compensation_info.as_ref().filter(|(a, _)| *a == e.arn).map(|(_, i)| i.as_ref());
        for (k, arn) in comp.iter().flat_map(|c| &c.links) {
            let what = if *k == "compensates" { " compensates " } else { " compensated by " };
            lines.push(fit_line(&Line::from(vec![Span::styled(what, t.muted()), Span::styled(arn.clone(), t.accent())]), width as usize));
        }
        if let Some(offer) = comp.and_then(|c| c.offer.as_ref()) {
            let def = self.read.definition.as_deref().filter(|_| self.read.path_for.as_deref() == Some(e.arn.as_str()));
            let redrive = match crate::ops::consequence::redrive(def, e, self.now) {
                Ok(c) => c.text,
                Err(why) => format!("cannot: {why}"),
            };
            for (key, text) in [("R", format!("redrive: {redrive}")), ("C", format!("compensate: {offer}"))] {
                let line = Line::from(vec![Span::styled(format!(" {key} "), t.accent()), Span::styled(text, t.text())]);
                lines.push(fit_line(&line, width as usize));
            }
        }
        let cause = self.error_text(&e.arn, e.cause.as_deref().unwrap_or_default());
        if !cause.trim().is_empty() && max_rows > 1 {
            let cause = cause.split_whitespace().collect::<Vec<_>>().join(" ");
            let line = Line::from(vec![Span::styled(" cause ", t.muted()), Span::styled(cause, t.warn())]);
            let w = width.max(1) as usize;
            let mut rows: Vec<Line> = (0..rows_of(&line, w)).map(|k| slice_line(&line, k * w, w)).collect();
            let room = (max_rows - 1) as usize;
            if rows.len() > room {
                // Cut: say where the whole of it is (the execution's last event).
                rows.truncate(room);
                let more = " … (all of it: G, Enter)";
                if let Some(last) = rows.last_mut() {
                    let mut cut = slice_line(last, 0, w.saturating_sub(more.chars().count()));
                    cut.spans.push(Span::styled(more, t.muted()));
                    *last = cut;
                }
            }
            lines.extend(rows);
        }
        lines
    }

    /// The path pane's width: the longest line fits, up to nearly half the area.
    pub(super) fn path_width(&self, area: u16) -> u16 {
        let longest = self.read.path.iter().map(PathLine::width).max().unwrap_or(20) + 2;
        let cap = (area as usize * 45 / 100).max(24);
        longest.clamp(24, cap).min(area.saturating_sub(20) as usize) as u16
    }

    /// The path pane's lines, each cut with an ellipsis to `width`.
    pub(super) fn path_lines(&self, width: usize) -> Vec<Line<'static>> {
        let t = &self.theme;
        if self.read.path_for.as_deref() != self.detail_arn.as_deref() {
            return vec![];
        }
        self.read
            .path
            .iter()
            .map(|p| {
                let mut spans = vec![Span::raw(format!(" {}", "  ".repeat(p.depth)))];
                for (m, s) in &p.items {
                    spans.push(match m {
                        Some(m) => Span::styled(format!("{} {s}  ", m.glyph()), m.style(t)),
                        None => Span::styled(format!("{s}  "), t.muted()),
                    });
                }
                let l = Line::from(spans);
                let l = Line::from(slice_line(&l, 0, line_chars(&l).saturating_sub(2)).spans);
                fit_line(&l, width)
            })
            .collect()
    }

    /// History rows for a pane `width`×`height`: the selected event on screen (at the
    /// bottom when the list is past its first page, so `G` shows the last page full), raw
    /// lines wrapped or scrolled sideways. Only the rows shown are built.
    pub(super) fn history_rows(&self, width: usize, height: usize) -> (Vec<Line<'static>>, usize, usize) {
        let t = &self.theme;
        let h = &self.detail.value.history;
        if h.is_empty() || height == 0 {
            return (vec![], 0, 0);
        }
        let sel = self.detail_scroll.min(h.len() - 1);
        let arn = self.detail_arn.as_deref().unwrap_or_default();
        let reveal = self.revealed(arn);
        let known = if reveal { vec![] } else { self.known_identifiers(arn) };
        let line_of = |i: usize| -> Line<'static> {
            let e = &h[i];
            let style = if i == sel { t.selected() } else { Style::default() };
            let marker = Span::styled(if i == sel { "▶" } else { " " }, t.accent());
            if self.raw_history {
                let raw = e.to_aws_json();
                let raw = if reveal { raw } else { self.settings.phi.mask_envelope(&raw, &known) };
                Line::from(vec![marker, Span::styled(raw.to_string(), t.text())]).style(style)
            } else {
                let extra = e
                    .details
                    .get("error")
                    .and_then(|v| v.as_str())
                    .map(|x| if reveal { x.to_string() } else { self.settings.phi.mask_text_with(x, &known) })
                    .or_else(|| e.details.get("resource").and_then(|v| v.as_str()).map(str::to_string))
                    .unwrap_or_default();
                let ev_style = if e.event_type.ends_with("Failed") || e.event_type.ends_with("TimedOut") { t.breach() } else { t.text() };
                let l = Line::from(vec![
                    marker,
                    Span::styled(format!("#{:<5} {} ", e.id, e.timestamp.with_timezone(&self.settings.tz).format("%H:%M:%S")), t.muted()),
                    Span::styled(format!("{:<26}", e.event_type), ev_style),
                    Span::styled(format!(" {:<22} {extra}", e.state_name().unwrap_or("")), t.text()),
                ])
                .style(style);
                fit_line(&l, width)
            }
        };
        let wrap = self.raw_history && self.read.history.wrap;
        // Rows an event takes: one, or its wrapped lines (built only when wrapping).
        let rows_for = |i: usize| if wrap { rows_of(&line_of(i), width) } else { 1 };
        // Walk back from the selection until the pane is full: the first event shown.
        let mut start = sel;
        let mut used = rows_for(sel);
        let first_page: usize = if wrap {
            let mut n = 0;
            let mut i = 0;
            while i <= sel && n <= height {
                n += rows_for(i);
                i += 1;
            }
            n
        } else {
            sel + 1
        };
        if first_page <= height {
            start = 0;
        } else {
            while start > 0 {
                let r = rows_for(start - 1);
                if used + r > height {
                    break;
                }
                used += r;
                start -= 1;
            }
        }
        let mut rows = vec![];
        let mut i = start;
        while i < h.len() && rows.len() < height {
            let l = line_of(i);
            if self.raw_history {
                let scroll =
                    if wrap { PaneScroll::wrapped() } else { PaneScroll { cols: self.read.history.cols, ..PaneScroll::default() } };
                rows.extend(pane_rows(&[l], width, &scroll));
            } else {
                rows.push(l);
            }
            i += 1;
        }
        rows.truncate(height);
        (rows, start, i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_page_shows_full_from_the_bottom() {
        let mut s = PaneScroll::default();
        s.apply(Action::Bottom, 100);
        assert_eq!(s.start(100, 10), 90);
        s.apply(Action::Up, 100);
        assert_eq!(s.start(100, 10), 89);
        s.apply(Action::Top, 100);
        assert_eq!(s.start(100, 10), 0);
        s.apply(Action::PageDown, 100);
        assert_eq!(s.start(100, 10), 15);
    }

    #[test]
    fn lines_cut_with_an_ellipsis_and_wrap_at_the_width() {
        assert_eq!(fit("RadiologistReview", 8), "Radiolo…");
        let l = Line::from(vec![Span::raw("abc"), Span::raw("defgh")]);
        let rows = pane_rows(std::slice::from_ref(&l), 3, &PaneScroll::wrapped());
        assert_eq!(rows.len(), 3);
        let cut = pane_rows(&[l], 4, &PaneScroll { cols: 2, ..PaneScroll::default() });
        let text: String = cut[0].spans.iter().map(|s| s.content.to_string()).collect();
        assert_eq!(text, "cde…");
    }
}

#[cfg(test)]
mod path_tests {
    use super::*;
    use chrono::TimeZone;
    use serde_json::json;

    const DEF: &str = r#"{"StartAt":"Fan","States":{
      "Fan":{"Type":"Map","ItemProcessor":{"StartAt":"Read","States":{"Read":{"Type":"Pass","End":true}}},"Next":"Sign"},
      "Sign":{"Type":"Pass","End":true}}}"#;

    fn ev(id: i64, ty: &str, details: Value) -> HistoryEvent {
        let at = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).single().unwrap_or_default();
        HistoryEvent { id, previous_event_id: id - 1, timestamp: at, event_type: ty.into(), details }
    }

    fn history() -> Vec<HistoryEvent> {
        vec![
            ev(1, "MapStateEntered", json!({"name": "Fan"})),
            ev(2, "MapIterationStarted", json!({"name": "Fan", "index": 0})),
            ev(3, "PassStateEntered", json!({"name": "Read"})),
            ev(4, "PassStateExited", json!({"name": "Read"})),
            ev(5, "MapIterationSucceeded", json!({"name": "Fan", "index": 0})),
            ev(6, "MapIterationStarted", json!({"name": "Fan", "index": 1})),
            ev(7, "PassStateEntered", json!({"name": "Read"})),
        ]
    }

    fn text(lines: &[PathLine]) -> Vec<String> {
        lines
            .iter()
            .map(|l| {
                let items: Vec<String> =
                    l.items.iter().map(|(m, s)| format!("{}{s}", m.map(|m| format!("{} ", m.glyph())).unwrap_or_default())).collect();
                format!("{}{}", "  ".repeat(l.depth), items.join(" "))
            })
            .collect()
    }

    #[test]
    fn a_running_map_shows_its_live_iteration_and_a_stopped_one_shows_it_cancelled() {
        let def = Definition::parse_str(DEF).expect("definition");
        let running = text(&build_path(&def, &history(), Some(ExecutionStatus::Running), None));
        assert_eq!(
            running,
            vec!["▶ Fan (Map)", "  ▶ Read (Pass) ×2", "  iterations: 2 · 1 ✓ · 1 ▶", "  ✓ #0 ▶ #1", "· Sign (Pass)"],
            "{running:#?}"
        );
        let stopped = text(&build_path(&def, &history(), Some(ExecutionStatus::Aborted), None));
        assert_eq!(stopped[0], "✗ Fan (Map)", "{stopped:#?}");
        assert_eq!(stopped[1], "  ⊘ Read (Pass) ×2", "{stopped:#?}");
        assert_eq!(stopped[3], "  ✓ #0 ⊘ #1", "{stopped:#?}");
    }
}
