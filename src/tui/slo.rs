//! View 5, SLO clocks: every open clock by time to breach, counting down live (readings are
//! taken from the frame's `now`, so no reload is needed for the clock to move), and a
//! compliance and burn-rate panel per SLO. Enter opens the study's execution; `e` escalates
//! the review the study waits in, through the Reviews escalate dialog.
//!
//! The clocks come from executions and their history through the control plane, so any
//! backend shows the same view ([`load`]).

use chrono::{DateTime, Duration, Utc};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::app::{App, Effect, Item};
use super::render::machine;
use super::table::{Cell, Column, Spec, TableRow, fit_pad};
use crate::backend::{ControlPlane, ExecutionFilter};
use crate::engine::Acting;
use crate::ops::consequence;
use crate::ops::slo::{self, Clock, Reading, Slo, Status};

pub const SLO_COLUMNS: [Column; 8] = [
    Column::new("STATUS", 9),
    Column::new("LEFT", 9),
    Column::new("ELAPSED", 9).cut(7, 3),
    Column::new("TARGET", 7).cut(6, 4),
    Column::new("SLO", 22).cut(12, 1),
    Column::new("PRIO", 7).cut(4, 5),
    Column::new("STUDY", 12).cut(9, 2),
    Column::new("WHERE NOW", 18).cut(10, 1).grow(),
];

pub const CLOCKS: Spec = Spec { columns: &SLO_COLUMNS, marks: false };

/// Executions looked at per load (running, and stopped within the compliance window).
const LOAD_LIMIT: usize = 5000;
const HISTORY_LIMIT: usize = 10_000;

/// A clock's identity: its SLO and its execution.
pub fn clock_key(c: &Clock) -> String {
    format!("{}|{}", c.slo, c.execution_arn)
}

/// The clocks of `slos` over the control plane's executions (the background job calls this).
pub fn load(cp: &mut dyn ControlPlane, slos: &[Slo], now: DateTime<Utc>) -> crate::backend::Result<Vec<Clock>> {
    if slos.is_empty() {
        return Ok(vec![]);
    }
    let rows = cp.executions(&ExecutionFilter { limit: LOAD_LIMIT, ..Default::default() })?;
    slo::collect(&rows, slos, now, Duration::seconds(slo::DEFAULT_WINDOW_SECONDS), |arn| cp.history(arn, 0, HISTORY_LIMIT))
}

impl App {
    /// Open clocks read at `now`, by time to breach, as the filter keeps them.
    pub fn visible_clocks(&self) -> Vec<(&Clock, Reading)> {
        let f = &self.filters[super::app::View::Slo.index()];
        let mut v = slo::open_readings(&self.slo.value, self.now);
        if let Some(f) = f {
            v.retain(|(c, r)| self.clock_row(c, r, true).kept_by(f));
        }
        v
    }

    /// One clock in the SLO table. Hidden: the execution's name and machine.
    pub fn clock_row(&self, c: &Clock, r: &Reading, for_search: bool) -> TableRow {
        let t = &self.theme;
        let style = match r.status {
            Status::Ok => t.ok(),
            Status::AtRisk => t.warn(),
            Status::Breached => t.breach(),
        };
        let study = c.accession.clone().unwrap_or_else(|| c.execution_arn.rsplit(':').next().unwrap_or_default().to_string());
        TableRow::new(vec![
            Cell::new(r.status.as_str(), style),
            Cell::new(slo::human_ms(r.remaining_ms), style),
            Cell::new(slo::human_ms(r.elapsed_ms), t.text()),
            Cell::new(slo::human_ms(c.target_ms), t.muted()),
            Cell::new(c.slo.clone(), t.text()),
            Cell::new(c.priority.clone().unwrap_or_else(|| "—".into()), t.priority(c.priority.as_deref().unwrap_or(""))),
            Cell::new(study, t.text()),
            // A closed loop (a critical result) says where it stands: `communicated · <state>`.
            Cell::new(c.where_now(), if c.stage.is_some() { t.warn() } else { t.text() }),
        ])
        .search_also(for_search, || {
            vec![machine(&c.execution_arn).to_string(), c.execution_arn.rsplit(':').next().unwrap_or_default().to_string()]
        })
    }

    pub(super) fn slo_view(&self, f: &mut Frame, area: Rect) {
        let slos = self.settings.slo.as_slice();
        let panel_rows = if slos.is_empty() { 0 } else { (slos.len() as u16 + 3).min(area.height / 3).max(4) };
        let [top, bottom] = Layout::vertical([Constraint::Min(3), Constraint::Length(panel_rows)]).areas(area);
        let rows = self.visible_clocks();
        let breached = rows.iter().filter(|(_, r)| r.status == Status::Breached).count();
        let at_risk = rows.iter().filter(|(_, r)| r.status == Status::AtRisk).count();
        let title = if slos.is_empty() {
            "SLO · no SLOs configured ([[slo]] in config)".to_string()
        } else {
            format!("SLO · {} open · {breached} breached · {at_risk} at risk · by time to breach", rows.len())
        };
        self.draw_table(f, top, CLOCKS, rows.len(), |i| rows.get(i).map(|(c, r)| self.clock_row(c, r, false)), title);
        if panel_rows > 0 {
            self.compliance_panel(f, bottom, slos);
        }
    }

    fn compliance_panel(&self, f: &mut Frame, area: Rect, slos: &[Slo]) {
        let t = &self.theme;
        let window = Duration::seconds(slo::DEFAULT_WINDOW_SECONDS);
        let all = slo::compliance(slos, &self.slo.value, self.now, window);
        let w = area.width.saturating_sub(2) as usize;
        let name_w = w.saturating_sub(44).clamp(8, 26);
        let mut lines = vec![Line::from(Span::styled(
            format!(
                "{} {} {} {} {} {}",
                fit_pad("SLO", name_w, false),
                fit_pad("OPEN", 5, true),
                fit_pad("RISK", 5, true),
                fit_pad("BREACH", 6, true),
                fit_pad("MET", 9, true),
                fit_pad("BURN", 7, true)
            ),
            t.muted(),
        ))];
        for c in &all {
            let met = match c.compliance {
                Some(v) => format!("{:.0}% {}/{}", v * 100.0, c.met, c.closed),
                None => "—".into(),
            };
            let burn = c.burn_rate.map(|b| format!("{b:.1}x")).unwrap_or_else(|| "—".into());
            let burn_style = match c.burn_rate {
                Some(b) if b > 1.0 => t.breach(),
                Some(b) if b > 0.5 => t.warn(),
                _ => t.text(),
            };
            lines.push(Line::from(vec![
                Span::styled(format!("{} ", fit_pad(&c.name, name_w, false)), t.text()),
                Span::styled(format!("{} ", fit_pad(&c.open.to_string(), 5, true)), t.text()),
                Span::styled(format!("{} ", fit_pad(&c.at_risk.to_string(), 5, true)), if c.at_risk > 0 { t.warn() } else { t.text() }),
                Span::styled(
                    format!("{} ", fit_pad(&c.breaching.to_string(), 6, true)),
                    if c.breaching > 0 { t.breach() } else { t.text() },
                ),
                Span::styled(format!("{} ", fit_pad(&met, 9, true)), t.text()),
                Span::styled(fit_pad(&burn, 7, true), burn_style),
            ]));
        }
        let title = "Compliance · last 24h · burn = breached share ÷ (1 − objective)".to_string();
        f.render_widget(Paragraph::new(lines).block(self.block(title)), area);
    }

    /// `e` on a clock: escalate the review its study waits in (the Reviews escalate dialog).
    pub(super) fn escalate_clock(&mut self) -> Vec<Effect> {
        let cur = self.selected();
        let Some(arn) = self.visible_clocks().get(cur).map(|(c, _)| c.execution_arn.clone()) else {
            self.message = Some(("escalate: no clock selected (the list is empty)".into(), true));
            return vec![];
        };
        let items: Vec<Item> = self
            .reviews
            .value
            .iter()
            .filter(|r| r.execution_arn == arn)
            .map(|r| Item {
                id: r.token.clone(),
                label: if r.study.is_empty() { r.accession.clone() } else { format!("{} ({})", r.accession, r.study) },
                state: r.state.clone(),
                claimed_by: r.claimed_by.clone(),
                gate: self.definitions.get(&r.execution_arn).and_then(|d| consequence::gate(d, &r.state)),
            })
            .collect();
        if items.is_empty() {
            let name = arn.rsplit(':').next().unwrap_or_default().to_string();
            self.message = Some((format!("escalate: {name} waits in no review (nothing to escalate)"), true));
            return vec![];
        }
        let user = self.settings.user.clone();
        if items.iter().any(|i| i.claimed_by.as_ref().is_some_and(|h| *h != user)) {
            self.dialog =
                Some(super::app::Dialog::Override { action: super::keymap::Action::Escalate, items, code: None, reason: String::new() });
            return vec![];
        }
        self.answer_dialog(super::keymap::Action::Escalate, items, Acting::user(user));
        vec![]
    }
}
