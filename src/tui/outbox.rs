//! View 6, Outbox: per sink its breaker (and time left), backlog, oldest age, publish rate,
//! failures and parked rows; below, the rows behind the selected sink, each linked to its
//! execution (Enter opens it). Keys (this view only): `n` next sink, `p` pause/resume the
//! sink, `t` retry now, `P` park the selected row, `u` requeue parked — each confirmed, and
//! audited by the job that carries it out.

use ratatui::Frame;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::layout::{Constraint, Direction, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::app::{App, Dialog, Effect, Mutation, Pane};
use crate::backend::OutboxSnapshot;
use crate::outbox::{Action, Breaker, DeliveryRow, SinkStatus};

/// What view 6 holds: the last snapshot and the sink selected.
#[derive(Debug, Default)]
pub struct OutboxView {
    pub data: Pane<OutboxSnapshot>,
    pub sink: usize,
}

/// The keys this view adds, as its hint line shows them.
pub const KEYS: [(&str, &str); 6] =
    [("n", "next sink"), ("p", "pause/resume"), ("t", "retry now"), ("P", "park row"), ("u", "requeue parked"), ("Enter", "execution")];

fn secs(ms: i64) -> String {
    let s = ms / 1000;
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
        sinks.get(self.outbox.sink.min(sinks.len().saturating_sub(1)))
    }

    /// The rows behind the selected sink, oldest first.
    pub fn outbox_rows(&self) -> Vec<&DeliveryRow> {
        match self.outbox_sink() {
            Some(s) => self.outbox.data.value.rows.iter().filter(|r| r.sink == s.name).collect(),
            None => vec![],
        }
    }

    /// The execution behind the selected row (streams of no execution open nothing).
    pub fn outbox_selected_execution(&self) -> Option<String> {
        self.outbox_rows().get(self.selected()).map(|r| r.stream.clone()).filter(|s| s.starts_with("arn:"))
    }

    /// A key in view 6 that is the view's own; `None` lets the shared keymap have it.
    pub fn outbox_key(&mut self, k: &KeyEvent) -> Option<Vec<Effect>> {
        if k.modifiers.intersects(KeyModifiers::CONTROL | KeyModifiers::ALT) {
            return None;
        }
        let KeyCode::Char(c) = k.code else { return None };
        if !matches!(c, 'n' | 'p' | 't' | 'P' | 'u') {
            return None;
        }
        let Some(sink) = self.outbox_sink().cloned() else {
            self.message = Some(("no outbox sinks: add [[outbox.sinks]] to the config".into(), true));
            return Some(vec![]);
        };
        if c == 'n' {
            let n = self.outbox.data.value.sinks.len().max(1);
            self.outbox.sink = (self.outbox.sink.min(n - 1) + 1) % n;
            self.sel[super::app::View::Outbox.index()] = 0;
            return Some(vec![]);
        }
        if self.settings.read_only {
            self.message = Some(("read-only: outbox actions are disabled".into(), true));
            return Some(vec![]);
        }
        let row = self.outbox_rows().get(self.selected()).map(|r| (*r).clone());
        let who = &self.settings.user;
        let action = match c {
            'p' if sink.paused => Action::Resume { sink: sink.name.clone() },
            'p' => Action::Pause { sink: sink.name.clone(), reason: format!("paused from the console by {who}") },
            't' => Action::Retry { sink: sink.name.clone(), row: row.as_ref().filter(|r| r.attempts > 0 && !r.parked).map(|r| r.row_id) },
            'P' => match row.as_ref().filter(|r| !r.parked) {
                Some(r) => Action::Park { sink: sink.name.clone(), row: r.row_id, reason: format!("parked from the console by {who}") },
                None => {
                    self.message = Some(("park: select a waiting row first".into(), true));
                    return Some(vec![]);
                }
            },
            _ => Action::Requeue { sink: sink.name.clone(), row: row.as_ref().filter(|r| r.parked).map(|r| r.row_id) },
        };
        let mut lines = vec![action.describe()];
        if let Some(r) = row.as_ref().filter(|_| matches!(action, Action::Park { .. } | Action::Retry { row: Some(_), .. })) {
            lines.push(format!("row {}: {} of {} ({} attempts)", r.row_id, r.detail_type, r.stream, r.attempts));
        }
        lines.push("The audit log records it.".into());
        self.dialog = Some(Dialog::Confirm { title: format!("Outbox: {}", action.name()), lines, mutation: Mutation::Outbox { action } });
        Some(vec![])
    }

    pub(super) fn outbox_view(&self, f: &mut Frame, area: Rect) {
        let t = &self.theme;
        let data = &self.outbox.data;
        let sinks = &data.value.sinks;
        let parts = Layout::default()
            .direction(Direction::Vertical)
            .constraints([Constraint::Length(sinks.len().max(1) as u16 + 3), Constraint::Min(3), Constraint::Length(1)])
            .split(area);
        let mut lines = vec![Line::from(Span::styled(
            format!(
                "  {:<18} {:<8} {:<16} {:>8} {:>8} {:>7} {:>9} {:>8} {:>7}",
                "SINK", "KIND", "BREAKER", "BACKLOG", "OLDEST", "RATE/m", "DELIVERED", "FAILURES", "PARKED"
            ),
            t.muted(),
        ))];
        if let Some(e) = &data.error {
            lines.push(Line::from(Span::styled(format!("  {e}"), t.breach())));
        } else if sinks.is_empty() {
            let text = if data.loaded_at.is_none() { "  loading…" } else { "  no sinks: add [[outbox.sinks]] to the config" };
            lines.push(Line::from(Span::styled(text, t.muted())));
        }
        let chosen = self.outbox.sink.min(sinks.len().saturating_sub(1));
        for (i, s) in sinks.iter().enumerate() {
            let (breaker, style) = match (s.paused, s.breaker, s.breaker_left_ms) {
                (true, ..) => ("PAUSED".to_string(), t.warn()),
                (_, Breaker::Open, Some(left)) => (format!("OPEN {}", secs(left)), t.breach()),
                (_, Breaker::HalfOpen, _) => ("HALF_OPEN".to_string(), t.warn()),
                (_, b, _) => (b.as_str().to_string(), t.ok()),
            };
            let oldest = s.oldest_age_ms.map(secs).unwrap_or_else(|| "-".into());
            let mark = if i == chosen { "▸ " } else { "  " };
            lines.push(Line::from(vec![
                Span::styled(format!("{mark}{:<18} {:<8} ", s.name, s.kind), if i == chosen { t.accent() } else { t.text() }),
                Span::styled(format!("{breaker:<16}"), style),
                Span::styled(
                    format!(" {:>8} {:>8} {:>7} {:>9} {:>8} {:>7}", s.backlog, oldest, s.rate_per_min, s.delivered, s.failures, s.parked),
                    if s.parked > 0 || s.failures > 0 { t.warn() } else { t.text() },
                ),
            ]));
        }
        f.render_widget(Paragraph::new(lines).block(self.block("Outbox · sinks".into())), parts[0]);

        let rows = self.outbox_rows();
        let title = match self.outbox_sink() {
            Some(s) => match (&s.paused_reason, &s.last_error) {
                (Some(r), _) if s.paused => format!("Rows behind {} ({}) · paused: {r}", s.name, rows.len()),
                (_, Some(e)) if s.failures > 0 => format!("Rows behind {} ({}) · last error: {e}", s.name, rows.len()),
                _ => format!("Rows behind {} ({})", s.name, rows.len()),
            },
            None => "Rows".to_string(),
        };
        let now = self.now.timestamp_millis();
        let height = parts[1].height.saturating_sub(3) as usize;
        let sel = self.selected();
        let first = sel.saturating_sub(height.saturating_sub(1));
        let mut body = vec![Line::from(Span::styled(
            format!("  {:>7} {:>8} {:<8} {:<30} {:<10} EXECUTION", "ROW", "ATTEMPTS", "STATE", "DETAIL-TYPE", "AGE"),
            t.muted(),
        ))];
        for (i, r) in rows.iter().enumerate().skip(first).take(height.max(1)) {
            let state = if r.parked {
                "parked"
            } else if r.attempts > 0 {
                "retrying"
            } else {
                "waiting"
            };
            let name = r.stream.rsplit(':').next().unwrap_or(&r.stream);
            let text = format!(
                "{}{:>7} {:>8} {:<8} {:<30} {:<10} {}",
                if i == sel { "▸ " } else { "  " },
                r.row_id,
                r.attempts,
                state,
                r.detail_type.chars().take(30).collect::<String>(),
                secs((now - r.created_ms).max(0)),
                name
            );
            let style = if i == sel {
                t.selected()
            } else if r.parked {
                t.breach()
            } else {
                t.text()
            };
            body.push(Line::from(Span::styled(text, style)));
        }
        if rows.is_empty() {
            body.push(Line::from(Span::styled("  nothing waiting: every event was delivered", t.muted())));
        }
        f.render_widget(Paragraph::new(body).block(self.block(title)), parts[1]);
        let mut hints = vec![Span::raw(" ")];
        for (k, d) in KEYS {
            if self.settings.read_only && k != "n" && k != "Enter" {
                continue;
            }
            hints.push(Span::styled(k, t.accent()));
            hints.push(Span::styled(format!(" {d}  "), t.muted()));
        }
        f.render_widget(Paragraph::new(Line::from(hints)), parts[2]);
    }
}
