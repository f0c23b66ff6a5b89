//! Every view is rendered from `&App`; nothing here changes state.

use chrono::{DateTime, Utc};
use ratatui::Frame;
use ratatui::layout::{Constraint, Direction, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Sparkline, Wrap};

use super::app::{App, Dialog, Field, InputKind, View, consequence_lines, override_lines};
use super::command::HelpRow;
use super::keymap::Action;
use super::theme::Theme;
use crate::ops::Stage;
use crate::ops::project::{Patient, human};
use crate::phi::mask_str;

pub(super) fn patient(p: &Patient, reveal: bool) -> String {
    if p.name.is_empty() && p.mrn.is_empty() {
        return String::new();
    }
    if reveal {
        format!("{}  MRN {}  DOB {}", p.name, p.mrn, p.birth_date)
    } else {
        format!("{}  MRN {}", mask_str(&p.name), mask_str(&p.mrn))
    }
}

/// Text from definitions and inputs reaches the screen only as what it says: control
/// characters and bidirectional overrides (which would reorder what the terminal shows) are
/// drawn as `�`. One pass over the finished frame covers every view and dialog.
pub fn defang(buf: &mut ratatui::buffer::Buffer) {
    let bad =
        |c: char| c.is_control() || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}');
    for cell in buf.content.iter_mut() {
        if cell.symbol().chars().any(bad) {
            cell.set_symbol("\u{FFFD}");
        }
    }
}

/// The same 8-character prefix the CLI prints and accepts: never the whole token.
fn short_token(t: &str) -> String {
    crate::engine::short_token(t)
}

pub(super) fn clock(t: DateTime<Utc>, tz: &chrono::FixedOffset) -> String {
    t.with_timezone(tz).format("%H:%M:%S").to_string()
}

pub(super) fn machine(arn: &str) -> &str {
    crate::ops::project::machine_of(arn)
}

impl App {
    pub fn render(&self, f: &mut Frame) {
        let area = f.area();
        // The theme's text on its background under everything (widgets set their own on top).
        f.buffer_mut().set_style(area, Style::default().fg(self.theme.text).bg(self.theme.background));
        let rows = Layout::default()
            .direction(Direction::Vertical)
            .constraints([Constraint::Length(1), Constraint::Length(1), Constraint::Min(3), Constraint::Length(1)])
            .split(area);
        self.header(f, rows[0]);
        self.tabs(f, rows[1]);
        if self.locked {
            self.lock_screen(f, rows[2]);
        } else {
            match self.view {
                View::Pipelines => self.pipelines(f, rows[2]),
                View::Reviews => self.reviews_view(f, rows[2]),
                View::Executions => match &self.detail_arn {
                    Some(_) => self.detail_view(f, rows[2]),
                    None => self.executions_view(f, rows[2]),
                },
                View::Events => self.events_view(f, rows[2]),
                View::Outbox => self.outbox_view(f, rows[2]),
                View::Slo => self.slo_view(f, rows[2]),
            }
            self.draw_pane(f, rows[2]);
        }
        self.footer(f, rows[3]);
        if !self.locked {
            self.dialog(f, area);
        }
        defang(f.buffer_mut());
    }

    /// The identifier values of a study, from whatever is loaded about it, for masking its free text.
    pub(super) fn known_identifiers(&self, arn: &str) -> Vec<String> {
        let phi = &self.settings.phi;
        let mut known = vec![];
        if let Some(s) = self.studies.value.iter().find(|s| s.execution_arn == arn) {
            known.extend(s.patient.identifiers());
        }
        if let Some(e) = self.detail.value.execution.as_ref().filter(|e| e.arn == arn) {
            known.extend(phi.identifiers_in_text(&e.input));
        } else if let Some(e) = self.executions.value.iter().find(|e| e.arn == arn) {
            known.extend(phi.identifiers_in_text(&e.input));
        }
        known
    }

    /// An execution's error (free text: an `ErrorPath` or an operator can put a name there):
    /// its study's identifiers masked unless revealed.
    pub(super) fn error_text(&self, arn: &str, error: &str) -> String {
        if error.is_empty() || self.revealed(arn) {
            return error.to_string();
        }
        self.settings.phi.mask_text_with(error, &self.known_identifiers(arn))
    }

    /// A review's draft (free text): its patient's identifiers masked unless revealed.
    pub(super) fn draft(&self, r: &crate::ops::project::Review) -> String {
        if !r.patient.appears_in(&r.draft) || self.revealed(&r.execution_arn) {
            return r.draft.clone();
        }
        self.settings.phi.mask_text_with(&r.draft, &r.patient.identifiers())
    }

    fn header(&self, f: &mut Frame, area: Rect) {
        let t = &self.theme;
        let p = &self.pulse.value;
        let stat = self.reviews.value.iter().filter(|r| r.priority == crate::ops::Priority::Stat).count();
        let failed = crate::ops::Ending::Failed.count(p.by_status());
        let aborted = crate::ops::Ending::Aborted.count(p.by_status());
        let mut spans = vec![
            Span::styled(" LIGHTBOX ", t.accent().add_modifier(Modifier::REVERSED)),
            Span::raw(" "),
            Span::styled(
                {
                    let ctx = if self.settings.context == self.settings.backend {
                        String::new()
                    } else {
                        format!(" · {}", self.settings.context)
                    };
                    // The data directory too, where the terminal is wide enough; on AWS its
                    // region always (the endpoint, where wide enough).
                    let loc = if self.settings.backend == "aws" && area.width < 150 {
                        let region = self.settings.location.split(" via ").next().unwrap_or_default();
                        if region.is_empty() { String::new() } else { format!(" {region}") }
                    } else if self.settings.location.is_empty() || area.width < 150 {
                        String::new()
                    } else {
                        format!(" {}", self.settings.location)
                    };
                    format!(
                        "{}{loc}{ctx}{} · user {}",
                        self.settings.backend,
                        if self.settings.demo { " · DEMO" } else { "" },
                        self.settings.user
                    )
                },
                t.muted(),
            ),
            Span::raw("   "),
            Span::styled(format!("running {}", p.running), t.text()),
            Span::raw("  "),
            // Counted as the Exceptions panel counts them (`ops::Ending`).
            Span::styled(format!("failed {failed}"), if failed > 0 { t.breach() } else { t.muted() }),
        ];
        if aborted > 0 {
            spans.push(Span::raw("  "));
            spans.push(Span::styled(format!("aborted {aborted}"), t.warn()));
        }
        spans.extend([
            Span::raw("  "),
            Span::styled(format!("reviews {}", p.pending_reviews), if p.pending_reviews > 0 { t.warn() } else { t.muted() }),
        ]);
        if stat > 0 {
            spans.push(Span::styled(format!(" ({stat} STAT)"), t.priority("STAT")));
        }
        if self.settings.read_only {
            spans.push(Span::styled("  READ-ONLY", t.warn().add_modifier(Modifier::BOLD)));
        }
        // A remote backend's condition (throttled, credentials expired, network lost…).
        if let Some(c) = &p.condition {
            spans.push(Span::raw("  "));
            spans.push(Span::styled(format!("⚠ {c}"), t.warn()));
        }
        let banner = self.reveal.as_ref().filter(|r| self.now < r.until).map(|r| {
            let left = (r.until - self.now).num_seconds().max(0);
            Span::styled(
                format!(" PHI REVEALED: {} — {}:{:02} left ", r.label, left / 60, left % 60),
                t.breach().add_modifier(Modifier::REVERSED | Modifier::BOLD),
            )
        });
        if let Some(b) = &banner {
            spans.push(Span::raw("  "));
            spans.push(b.clone());
        }
        let right = clock(self.now, &self.settings.tz);
        let width = |spans: &[Span]| spans.iter().map(|s| s.content.chars().count()).sum::<usize>();
        if width(&spans) + right.len() + 1 > area.width as usize {
            // Narrow terminal: the counts and the clock matter more than who and where; which
            // context is live (other than the default local one) stays.
            let s = &self.settings;
            let named = (s.context != s.backend || s.backend != "local").then_some(s.context.as_str());
            let short: Vec<&str> = named.into_iter().chain(s.demo.then_some("DEMO")).collect();
            spans[2] = Span::styled(short.join(" · "), t.muted());
        }
        if let Some(b) = banner
            && width(&spans) + right.len() + 1 > area.width as usize
        {
            // Still too narrow: that patient data shows matters most.
            spans.truncate(2);
            spans.push(b);
        }
        let used: usize = width(&spans);
        let pad = (area.width as usize).saturating_sub(used + right.len() + 1);
        spans.push(Span::raw(" ".repeat(pad)));
        spans.push(Span::styled(right, t.text()));
        f.render_widget(Paragraph::new(Line::from(spans)), area);
    }

    fn breadcrumb(&self) -> String {
        match (self.view, &self.detail_arn) {
            (View::Executions, Some(arn)) => format!("Executions › {} › {}", machine(arn), arn.rsplit(':').next().unwrap_or(arn)),
            (v, _) => {
                let mut s = v.title().to_string();
                if let Some(f) = &self.filters[v.index()] {
                    s.push_str(&format!(" › /{}", f.text));
                }
                if v == View::Executions
                    && let Some(st) = self.status_filter
                {
                    s.push_str(&format!(" › {st}"));
                }
                s
            }
        }
    }

    /// The breadcrumb in `avail` columns: the execution name always whole when it fits at all
    /// (the machine is cut first, then dropped), anything else cut with `…`.
    fn breadcrumb_in(&self, avail: usize) -> String {
        use super::table::{fit, width};
        let crumb = self.breadcrumb();
        if width(&crumb) <= avail {
            return crumb;
        }
        if let (View::Executions, Some(arn)) = (self.view, &self.detail_arn) {
            let name = arn.rsplit(':').next().unwrap_or(arn);
            let rest = avail.saturating_sub(width(name));
            // "Executions › " + machine + " › ", with at least a few letters of the machine.
            if rest >= 13 + 3 + 4 {
                return format!("Executions › {} › {name}", fit(machine(arn), rest - 16));
            }
            if rest >= 3 + 4 {
                return format!("{} › {name}", fit(machine(arn), rest - 3));
            }
            return fit(name, avail);
        }
        fit(&crumb, avail)
    }

    fn tabs(&self, f: &mut Frame, area: Rect) {
        let t = &self.theme;
        let tab_spans = |compact: bool| {
            let mut spans = vec![Span::raw(" ")];
            for (i, v) in View::ALL.iter().enumerate() {
                let label = format!("{} {}", i + 1, v.title());
                if *v == self.view {
                    spans.push(Span::styled(format!("[{label}]"), t.accent()));
                } else if compact {
                    // Narrow: the other tabs by number only, so the breadcrumb stays readable.
                    spans.push(Span::styled(format!("{}", i + 1), t.muted()));
                } else {
                    spans.push(Span::styled(format!(" {label} "), t.muted()));
                }
                spans.push(Span::raw(" "));
            }
            spans
        };
        let span_width = |spans: &[Span]| spans.iter().map(|s| super::table::width(&s.content)).sum::<usize>();
        let mut spans = tab_spans(false);
        let full = super::table::width(&self.breadcrumb());
        if span_width(&spans) + full + 1 > area.width as usize {
            spans = tab_spans(true);
        }
        let crumb = self.breadcrumb_in((area.width as usize).saturating_sub(span_width(&spans) + 1));
        let used: usize = span_width(&spans);
        let pad = (area.width as usize).saturating_sub(used + super::table::width(&crumb) + 1);
        spans.push(Span::raw(" ".repeat(pad)));
        spans.push(Span::styled(crumb, t.text()));
        f.render_widget(Paragraph::new(Line::from(spans)), area);
    }

    fn footer(&self, f: &mut Frame, area: Rect) {
        let t = &self.theme;
        // `? help` always shows, at the right, whatever else the line holds.
        let help_key = self.keymap.bindings.iter().find(|b| b.action == Action::Help).map(|b| b.key.to_string()).unwrap_or_default();
        let help = vec![Span::styled(help_key.clone(), t.accent()), Span::styled(" help ", t.muted())];
        let help_w = help_key.chars().count() + 6;
        if let Some((msg, err)) = &self.message {
            let room = (area.width as usize).saturating_sub(help_w + 2);
            let mut text = format!(" {msg}");
            if text.chars().count() > room {
                text = text.chars().take(room.saturating_sub(1)).collect::<String>() + "…";
            }
            let pad = (area.width as usize).saturating_sub(text.chars().count() + help_w);
            let mut spans = vec![Span::styled(text, if *err { t.breach() } else { t.ok() }), Span::raw(" ".repeat(pad))];
            spans.extend(help);
            f.render_widget(Paragraph::new(Line::from(spans)), area);
            return;
        }
        // Before the freshness note, set apart from it.
        let help = vec![Span::styled(help_key.clone(), t.accent()), Span::styled(" help · ", t.muted())];
        let help_w = help_w + 2;
        let mut spans = vec![Span::raw(" ")];
        for (k, d, action) in self.keymap.footer(self.scope()) {
            if (self.settings.read_only && action.mutates()) || action == Action::Help || !self.applies(action) {
                continue;
            }
            spans.push(Span::styled(k, t.accent()));
            spans.push(Span::styled(format!(" {d}  "), t.muted()));
        }
        let fresh = self.freshness();
        let need = fresh.chars().count() + 1 + help_w;
        let used: usize = spans.iter().map(|s| s.content.chars().count()).sum();
        let pad = (area.width as usize).saturating_sub(used + need);
        if pad == 0 {
            // Too narrow: drop whole key hints (key and description) from the end until freshness and help fit.
            while spans.len() > 2 && spans.iter().map(|s| s.content.chars().count()).sum::<usize>() + need > area.width as usize {
                spans.pop();
                spans.pop();
            }
        }
        let used: usize = spans.iter().map(|s| s.content.chars().count()).sum();
        spans.push(Span::raw(" ".repeat((area.width as usize).saturating_sub(used + need))));
        spans.extend(help);
        spans.push(Span::styled(fresh, t.muted()));
        f.render_widget(Paragraph::new(Line::from(spans)), area);
    }

    fn freshness(&self) -> String {
        let pane_at = match self.view {
            View::Pipelines => (self.studies.loaded_at, self.studies.loading),
            View::Reviews => (self.reviews.loaded_at, self.reviews.loading),
            View::Executions if self.detail_arn.is_some() => (self.detail.loaded_at, self.detail.loading),
            View::Executions => (self.executions.loaded_at, self.executions.loading),
            View::Events => (self.events.loaded_at, self.events.loading),
            View::Slo => (self.slo.loaded_at, self.slo.loading),
            View::Outbox => (self.outbox.data.loaded_at, self.outbox.data.loading),
        };
        let ro = if self.settings.read_only { "read-only: on" } else { "read-only: off" };
        match pane_at {
            (None, _) => format!("⟳ loading… · {ro}"),
            (Some(at), loading) => {
                let age = human(self.now - at);
                let stale = self.now - at > self.settings.refresh * 3;
                format!("{}{} ago{} · {ro}", if loading { "⟳ " } else { "" }, age, if stale { " STALE" } else { "" })
            }
        }
    }

    pub(super) fn block<'a>(&self, title: String) -> Block<'a> {
        Block::default().borders(Borders::ALL).border_style(self.theme.muted()).title(Span::styled(title, self.theme.text()))
    }

    /// The Stages panel's three lines (names, studies in flight, STAT among them) in `width`
    /// columns: whole stage names where they fit, cut with `…` where they cannot.
    fn stage_lines(&self, width: usize) -> (Line<'static>, Line<'static>, Line<'static>) {
        let t = &self.theme;
        let natural: Vec<usize> = Stage::ALL.iter().map(|s| s.as_str().len().max(6) + 1).collect();
        let sum: usize = natural.iter().sum();
        let cols: Vec<usize> = if sum <= width {
            let extra = (width - sum) / Stage::ALL.len();
            natural.iter().map(|n| n + extra.min(6)).collect()
        } else {
            vec![(width / Stage::ALL.len()).max(2); Stage::ALL.len()]
        };
        let (mut names, mut totals, mut stats) = (vec![], vec![], vec![]);
        for (s, col) in Stage::ALL.into_iter().zip(cols) {
            let w = col - 1;
            let (n, stat) = self.counts.by_stage.get(&s).copied().unwrap_or((0, 0));
            let cell = |text: &str| format!(" {}", super::table::fit_pad(text, w, true));
            names.push(Span::styled(cell(s.as_str()), t.muted()));
            totals.push(Span::styled(cell(&n.to_string()), t.text().add_modifier(Modifier::BOLD)));
            let stat_text = if w >= 6 { format!("STAT {stat}") } else { format!("S{stat}") };
            stats.push(if stat > 0 { Span::styled(cell(&stat_text), t.priority("STAT")) } else { Span::styled(cell("—"), t.muted()) });
        }
        (Line::from(names), Line::from(totals), Line::from(stats))
    }

    fn pipelines(&self, f: &mut Frame, area: Rect) {
        let t = &self.theme;
        let parts = Layout::default().direction(Direction::Vertical).constraints([Constraint::Length(6), Constraint::Min(3)]).split(area);
        // Wide enough for every stage name beside the Exceptions panel? Otherwise the
        // exceptions take the Stages panel's last line.
        let side = parts[0].width >= 92;
        let top = Layout::default()
            .direction(Direction::Horizontal)
            .constraints([Constraint::Min(40), Constraint::Length(if side { 22 } else { 0 })])
            .split(parts[0]);
        let stage_block = self.block(format!("Stages{}", if self.settings.demo { " · demo hospital (synthetic patients)" } else { "" }));
        let inner = stage_block.inner(top[0]);
        f.render_widget(stage_block, top[0]);
        let (names, totals, stats) = self.stage_lines(inner.width as usize);
        let lines = Layout::default()
            .direction(Direction::Vertical)
            .constraints([Constraint::Length(1), Constraint::Length(1), Constraint::Length(1), Constraint::Length(1)])
            .split(inner);
        f.render_widget(Paragraph::new(names), lines[0]);
        f.render_widget(Paragraph::new(totals), lines[1]);
        f.render_widget(Paragraph::new(stats), lines[2]);
        let exceptions: Vec<(String, usize)> = self.counts.exceptions.iter().map(|(e, n)| (e.as_str().to_string(), *n)).collect();
        if side {
            if lines[3].height > 0 {
                // What the sparkline shows, said beside it.
                let deltas: Vec<u64> = self.throughput.windows(2).map(|w| w[1].saturating_sub(w[0])).collect();
                let caption = format!(" newly signed per refresh, last {} ", deltas.len());
                let spark = Layout::default()
                    .direction(Direction::Horizontal)
                    .constraints([Constraint::Length(super::table::width(&caption) as u16), Constraint::Min(1)])
                    .split(lines[3]);
                f.render_widget(Paragraph::new(Span::styled(caption, t.muted())), spark[0]);
                f.render_widget(Sparkline::default().data(&deltas).style(t.ok()), spark[1]);
            }
            let mut ex_lines = vec![];
            for (e, n) in &exceptions {
                ex_lines.push(Line::from(vec![
                    Span::styled(format!(" {}", super::table::fit_pad(e, 15, false)), t.warn()),
                    Span::styled(format!("{n:>4}"), t.text()),
                ]));
            }
            if ex_lines.is_empty() {
                ex_lines.push(Line::from(Span::styled(" none", t.muted())));
            }
            f.render_widget(Paragraph::new(ex_lines).block(self.block("Exceptions".into())), top[1]);
        } else {
            let mut spans = vec![Span::styled(" exceptions ", t.muted())];
            if exceptions.is_empty() {
                spans.push(Span::styled("none", t.muted()));
            }
            for (i, (e, n)) in exceptions.iter().enumerate() {
                if i > 0 {
                    spans.push(Span::styled(" · ", t.muted()));
                }
                spans.push(Span::styled(format!("{e} "), t.warn()));
                spans.push(Span::styled(n.to_string(), t.text()));
            }
            f.render_widget(Paragraph::new(Line::from(super::table::fit_spans(spans, lines[3].width as usize))), lines[3]);
        }
        // Studies
        let rows = self.visible_studies();
        let loading = if self.studies.loaded_at.is_none() { " · loading…" } else { "" };
        let title = format!("Studies · {}{loading}", rows.len());
        self.draw_table(f, parts[1], super::rows::STUDIES, rows.len(), |i| rows.get(i).map(|s| self.study_row(s, false)), title);
    }

    fn reviews_view(&self, f: &mut Frame, area: Rect) {
        let t = &self.theme;
        let parts = Layout::default().direction(Direction::Vertical).constraints([Constraint::Min(5), Constraint::Length(5)]).split(area);
        let rows = self.visible_reviews();
        let stat = rows.iter().filter(|r| r.priority == crate::ops::Priority::Stat).count();
        let sel = self.selected();
        let title = format!(
            "Reviews — {} pending{} · by urgency{}",
            rows.len(),
            if stat > 0 { format!(" ({stat} STAT)") } else { String::new() },
            if self.marks.is_empty() { String::new() } else { format!(" · {} marked", self.marks.len()) }
        );
        self.draw_table(f, parts[0], super::rows::REVIEWS, rows.len(), |i| rows.get(i).map(|r| self.review_row(r, false)), title);
        let detail = match rows.get(sel) {
            Some(r) => vec![
                Line::from(vec![
                    Span::styled(
                        format!("{} · {} at {} · token {}", machine(&r.execution_arn), r.gate.as_str(), r.state, short_token(&r.token)),
                        t.text(),
                    ),
                    Span::styled(
                        if r.reviewer_group.is_empty() { String::new() } else { format!(" · group {}", r.reviewer_group) },
                        t.muted(),
                    ),
                ]),
                Line::from(Span::styled(
                    if r.gate.is_read() { format!("draft: {}", self.draft(r)) } else { self.draft_cell(r) },
                    t.muted(),
                )),
            ],
            None => vec![Line::from(Span::styled("no pending reviews", t.muted()))],
        };
        let title = rows.get(sel).map(|r| r.accession.clone()).unwrap_or_default();
        f.render_widget(Paragraph::new(detail).wrap(Wrap { trim: true }).block(self.block(title)), parts[1]);
    }

    fn executions_view(&self, f: &mut Frame, area: Rect) {
        let rows = self.visible_executions();
        let filter = match (self.status_filter, self.redriven_filter) {
            (_, true) => "redriven".to_string(),
            (Some(s), _) => s.as_str().to_string(),
            (None, _) => "all".into(),
        };
        let title = format!("Executions · {} · status {filter} (s cycles)", rows.len());
        self.draw_table(f, area, super::rows::EXECUTIONS, rows.len(), |i| rows.get(i).map(|e| self.execution_table_row(e, false)), title);
    }

    fn detail_view(&self, f: &mut Frame, area: Rect) {
        let t = &self.theme;
        let d = &self.detail.value;
        // The header grows to show the whole cause (up to a third of the screen).
        let head = self.detail_header(area.width, (area.height / 3).max(2));
        let parts = Layout::default()
            .direction(Direction::Vertical)
            .constraints([Constraint::Length(head.len() as u16), Constraint::Min(3)])
            .split(area);
        f.render_widget(Paragraph::new(head), parts[0]);
        let path_w = self.path_width(parts[1].width);
        let cols = Layout::default()
            .direction(Direction::Horizontal)
            .constraints([Constraint::Length(path_w), Constraint::Min(20)])
            .split(parts[1]);
        // Path: every state, nested ones under their Map or Parallel, with what happened there.
        let path = self.path_lines(path_w.saturating_sub(2) as usize);
        f.render_widget(Paragraph::new(path).block(self.block("Path".into())), cols[0]);
        if self.show_io {
            let halves = Layout::default()
                .direction(Direction::Vertical)
                .constraints([Constraint::Percentage(50), Constraint::Percentage(50)])
                .split(cols[1]);
            for (half, name) in [(0, "Input"), (1, "Output")] {
                let focused = self.read.io_half == half;
                let lines: Vec<Line> = self.io_text(half).lines().map(|l| Line::from(l.to_string())).collect();
                let title = if focused { format!("{name} ◀ j/k scroll") } else { format!("{name} (f: scroll this)") };
                let hint = if focused { "f other half · w wrap · ←→".to_string() } else { String::new() };
                super::detail::TextPane { title, lines, scroll: self.read.io[half], hint, focused }.draw(f, halves[half], t);
            }
            return;
        }
        let inner_w = cols[1].width.saturating_sub(2) as usize;
        let inner_h = cols[1].height.saturating_sub(2) as usize;
        let (lines, start, end) = self.history_rows(inner_w, inner_h);
        let mode = if !self.raw_history {
            "compact"
        } else if self.read.history.wrap {
            "raw, wrapped (w)"
        } else {
            "raw (w wraps, ←→)"
        };
        let n = d.history.len();
        let span = if n == 0 {
            String::new()
        } else {
            format!(" · {}–{} · ▶ {} (Enter opens)", start + 1, end, self.detail_scroll.min(n - 1) + 1)
        };
        let title = format!("History · {mode} · {n} event{}{span}", if n == 1 { "" } else { "s" });
        let title = super::detail::fit(&title, inner_w.saturating_sub(1));
        f.render_widget(Paragraph::new(lines).block(self.block(title)), cols[1]);
    }

    fn events_view(&self, f: &mut Frame, area: Rect) {
        let rows = self.visible_events();
        let title = self.events_title(rows.len());
        self.draw_table(f, area, super::rows::EVENTS, rows.len(), |i| rows.get(i).map(|e| self.event_row(e, false)), title);
    }

    fn lock_screen(&self, f: &mut Frame, area: Rect) {
        let text = vec![
            Line::from(""),
            Line::from(Span::styled("Locked. Patient data is hidden.", self.theme.warn())),
            Line::from(Span::styled(
                format!("To unlock, type your user name ({}) and press Enter.", self.settings.user),
                self.theme.text(),
            )),
            Line::from(""),
            Line::from(vec![Span::styled("name ", self.theme.muted()), Span::styled(format!("{}▏", self.lock_input), self.theme.text())]),
        ];
        f.render_widget(Paragraph::new(text).block(self.block("Locked".into())), area);
    }

    fn dialog(&self, f: &mut Frame, area: Rect) {
        let Some(d) = &self.dialog else { return };
        let t = &self.theme;
        let (title, lines, height): (String, Vec<Line>, u16) = match d {
            Dialog::Help => {
                let mut lines = vec![];
                for row in self.help_rows() {
                    lines.push(match row {
                        HelpRow::Heading(h) => Line::from(Span::styled(h, t.muted().add_modifier(Modifier::BOLD))),
                        HelpRow::Command(k, d) => {
                            Line::from(vec![Span::styled(format!("  {k:<20}"), t.accent()), Span::styled(format!(" {d}"), t.text())])
                        }
                        HelpRow::Entry(k, d) => Line::from(vec![Span::styled(format!("{k:>12}  "), t.accent()), Span::styled(d, t.text())]),
                    });
                }
                let h = lines.len().min(u16::MAX as usize - 2) as u16 + 2;
                ("Help · ? or Esc closes".into(), lines, h)
            }
            Dialog::Pick { title, items, sel } => {
                let mut l: Vec<Line> = items
                    .iter()
                    .enumerate()
                    .map(|(i, (label, _))| {
                        if i == *sel {
                            Line::from(Span::styled(format!("▶ {label}"), t.selected()))
                        } else {
                            Line::from(Span::styled(format!("  {label}"), t.text()))
                        }
                    })
                    .collect();
                l.push(Line::from(vec![
                    Span::styled("↑↓", t.accent()),
                    Span::raw(" choose   "),
                    Span::styled("Enter", t.accent()),
                    Span::raw(" open   "),
                    Span::styled("Esc", t.accent()),
                    Span::raw(" cancel"),
                ]));
                let h = l.len().min(u16::MAX as usize - 2) as u16 + 2;
                (title.clone(), l, h)
            }
            Dialog::Lines { title, lines } => {
                let l: Vec<Line> = lines.iter().map(|x| Line::from(Span::styled(x.clone(), t.text()))).collect();
                let h = l.len().min(u16::MAX as usize - 2) as u16 + 2;
                (format!("{title} · Esc closes"), l, h)
            }
            Dialog::Message { title, text } => (title.clone(), vec![Line::from(text.clone())], 4),
            Dialog::Confirm { title, lines, .. } => {
                let mut l: Vec<Line> = lines.iter().map(|x| consequence_line(x, t)).collect();
                l.push(Line::from(""));
                l.push(Line::from(vec![
                    Span::styled("y", t.accent()),
                    Span::raw(" confirm    "),
                    Span::styled("Esc", t.accent()),
                    Span::raw(" cancel"),
                ]));
                let h = l.len() as u16 + 2;
                (title.clone(), l, h)
            }
            Dialog::Approve { title, items, output, comment, field, then, error, .. } => {
                let cursor = |f: &Field| if f == field { "▏" } else { "" };
                let mut l = vec![Line::from(Span::styled(format!("sends success to {} review(s):", items.len()), t.muted()))];
                for x in then {
                    l.push(consequence_line(x, t));
                }
                l.push(Line::from(vec![
                    Span::styled("output  ", t.muted()),
                    Span::styled(format!("{output}{}", cursor(&Field::Output)), t.text()),
                ]));
                l.push(Line::from(vec![
                    Span::styled("comment ", t.muted()),
                    Span::styled(format!("{comment}{}", cursor(&Field::Comment)), t.text()),
                ]));
                if let Some(e) = error {
                    l.push(Line::from(Span::styled(e.clone(), t.breach())));
                }
                l.push(Line::from(""));
                l.push(Line::from(vec![
                    Span::styled("Enter", t.accent()),
                    Span::raw(" confirm   "),
                    Span::styled("Tab", t.accent()),
                    Span::raw(" field   "),
                    Span::styled("Esc", t.accent()),
                    Span::raw(" cancel"),
                ]));
                let h = l.len() as u16 + 2;
                (title.clone(), l, h)
            }
            Dialog::Reject { title, items, code, text, acting } => {
                let mut l = vec![Line::from(Span::styled(format!("sends failure to {} review(s); reason:", items.len()), t.muted()))];
                for (i, r) in self.settings.reject_reasons.iter().enumerate() {
                    let style = if i == *code { t.accent() } else { t.text() };
                    l.push(Line::from(Span::styled(format!("{} {r}", if i == *code { "▶" } else { " " }), style)));
                }
                l.push(Line::from(vec![Span::styled("note ", t.muted()), Span::styled(format!("{text}▏"), t.text())]));
                let (error, _) = self.reject_reason(*code);
                for x in consequence_lines(items, |g| g.on_error(&error)).iter().chain(&override_lines(items, acting)) {
                    l.push(consequence_line(x, t));
                }
                l.push(Line::from(""));
                l.push(Line::from(vec![
                    Span::styled("↑↓", t.accent()),
                    Span::raw(" reason   "),
                    Span::styled("Enter", t.accent()),
                    Span::raw(" confirm   "),
                    Span::styled("Esc", t.accent()),
                    Span::raw(" cancel"),
                ]));
                let h = l.len() as u16 + 2;
                (title.clone(), l, h)
            }
            Dialog::Override { items, code, reason, .. } => {
                let mut l = vec![];
                for i in items {
                    if let Some(h) = i.claimed_by.as_ref().filter(|h| **h != self.settings.user) {
                        l.push(Line::from(Span::styled(format!("{} at {} is claimed by {h}", i.label, i.state), t.breach())));
                    }
                }
                l.push(Line::from(Span::styled(
                    "Answering it takes over the claim. Say why: the reason, the override and the holder go to the audit log.",
                    t.text(),
                )));
                l.push(self.code_line(*code, t));
                l.push(Line::from(vec![Span::styled("note   ", t.muted()), Span::styled(format!("{reason}▏"), t.text())]));
                l.push(Line::from(""));
                l.push(Line::from(vec![
                    Span::styled("Enter", t.accent()),
                    Span::raw(" continue   "),
                    Span::styled("Esc", t.accent()),
                    Span::raw(" cancel"),
                ]));
                let h = l.len() as u16 + 2;
                ("Override a claim".into(), l, h)
            }
            Dialog::Reason { title, lines, mutation, code, reason } => {
                let mut l: Vec<Line> = lines.iter().map(|x| consequence_line(x, t)).collect();
                l.push(Line::from(Span::styled("Recorded in the audit log with your reason (say why, in a few words).", t.muted())));
                l.push(self.code_line(*code, t));
                l.push(Line::from(vec![Span::styled("note   ", t.muted()), Span::styled(format!("{reason}▏"), t.text())]));
                l.push(Line::from(""));
                l.push(Line::from(vec![
                    Span::styled("Enter", t.accent()),
                    Span::raw(format!(" {}   ", mutation.verb())),
                    Span::styled("Esc", t.accent()),
                    Span::raw(" cancel"),
                ]));
                let h = l.len() as u16 + 2;
                (title.clone(), l, h)
            }
            Dialog::Compensate { title, lines, code, reason, .. } => {
                let mut l: Vec<Line> = lines.iter().map(|x| Line::from(Span::styled(x.clone(), t.text()))).collect();
                l.push(Line::from(Span::styled("Recorded in the audit log with your reason, which the compensation receives.", t.muted())));
                l.push(self.code_line(*code, t));
                l.push(Line::from(vec![Span::styled("note   ", t.muted()), Span::styled(format!("{reason}▏"), t.text())]));
                l.push(Line::from(vec![
                    Span::styled("Enter", t.accent()),
                    Span::raw(" compensate   "),
                    Span::styled("Esc", t.accent()),
                    Span::raw(" cancel"),
                ]));
                let h = l.len() as u16 + 2;
                (title.clone(), l, h)
            }
            Dialog::Reveal { code, reason, label, .. } => (
                format!("Reveal patient data of {label}"),
                vec![
                    Line::from(Span::styled(
                        format!(
                            "Names, MRNs and birth dates of {label} only will show for {} minutes, until you press v again or the screen locks.",
                            self.settings.reveal_for.num_minutes()
                        ),
                        t.text(),
                    )),
                    Line::from(Span::styled("Recorded in the audit log with your reason (say why, in a few words).", t.muted())),
                    self.code_line(*code, t),
                    Line::from(vec![Span::styled("note   ", t.muted()), Span::styled(format!("{reason}▏"), t.text())]),
                    Line::from(vec![
                        Span::styled("Enter", t.accent()),
                        Span::raw(" reveal   "),
                        Span::styled("Esc", t.accent()),
                        Span::raw(" cancel"),
                    ]),
                ],
                8,
            ),
            Dialog::Input { kind, text } => {
                let (title, hint) = match kind {
                    InputKind::Filter => ("Filter (regex; ! inverts; empty clears)", "/"),
                    InputKind::Command => ("Command · Tab completes · ↑↓ history · :help lists them", ":"),
                };
                let mut l = vec![Line::from(vec![Span::styled(hint, t.accent()), Span::styled(format!("{text}▏"), t.text())])];
                if *kind == InputKind::Command && !self.cmdline.candidates.is_empty() {
                    l.push(Line::from(Span::styled(self.cmdline.candidates.join("  "), t.muted())));
                }
                let h = l.len() as u16 + 2;
                (title.into(), l, h)
            }
        };
        let w = area.width.saturating_sub(4).min(90);
        // Long lines wrap: make room for every wrapped row, up to the screen.
        let inner = w.saturating_sub(2).max(1) as usize;
        let extra: usize = lines.iter().map(|l| l.width().saturating_sub(1) / inner).sum();
        let height = height.saturating_add(extra.min(u16::MAX as usize) as u16);
        let h = height.min(area.height.saturating_sub(2)).max(3);
        let clipped = height > h
            && matches!(
                d,
                Dialog::Confirm { .. }
                    | Dialog::Approve { .. }
                    | Dialog::Reason { .. }
                    | Dialog::Help
                    | Dialog::Pick { .. }
                    | Dialog::Lines { .. }
            );
        let title = if clipped { format!("{title} (↑↓ scroll: {} rows)", height - 2) } else { title };
        let scroll = match d {
            // The pick list scrolls to keep the chosen row in sight.
            Dialog::Pick { sel, .. } if clipped => (*sel as u16).saturating_add(1).saturating_sub(h.saturating_sub(3)).min(height - h),
            _ if clipped => self.dialog_scroll.min(height - h),
            _ => 0,
        };
        let r =
            Rect { x: area.x + (area.width.saturating_sub(w)) / 2, y: area.y + (area.height.saturating_sub(h)) / 2, width: w, height: h };
        f.render_widget(Clear, r);
        f.buffer_mut().set_style(r, t.text().bg(t.background));
        let block =
            Block::default().borders(Borders::ALL).border_style(Style::default().fg(t.accent)).title(Span::styled(title, t.accent()));
        f.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }).scroll((scroll, 0)).block(block), r);
    }
}

/// A consequence line: warnings that the execution fails stand out.
impl App {
    /// A reason dialog's code line: every configured code, the one picked in brackets, and how to pick.
    fn code_line<'a>(&self, code: Option<usize>, t: &Theme) -> Line<'a> {
        let mut spans = vec![Span::styled("code   ", t.muted())];
        for (i, c) in self.settings.reason_codes.codes().iter().enumerate() {
            if Some(i) == code {
                spans.push(Span::styled(format!("[{c}]"), t.accent()));
            } else {
                spans.push(Span::styled(format!(" {c} "), t.text()));
            }
        }
        spans.push(Span::styled(" ←→", t.muted()));
        Line::from(spans)
    }
}

fn consequence_line<'a>(x: &str, t: &Theme) -> Line<'a> {
    let style = if x.contains("FAILS") || x.contains("WARNING") || x.contains("OVERRIDES") { t.breach() } else { t.text() };
    Line::from(Span::styled(x.to_string(), style))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bidi_overrides_and_control_characters_never_reach_the_terminal() {
        let mut buf = ratatui::buffer::Buffer::empty(ratatui::layout::Rect::new(0, 0, 20, 1));
        buf.set_string(0, 0, "Gate\u{202e}evil\u{7}x", ratatui::style::Style::default());
        defang(&mut buf);
        let text: String = buf.content.iter().map(|c| c.symbol()).collect();
        assert!(!text.contains('\u{202e}') && !text.contains('\u{7}'), "{text:?}");
        assert!(text.starts_with("Gate"), "{text:?}");
    }

    #[test]
    fn masks_hide_identifiers() {
        assert_eq!(short_token("abcdef0123456789"), "abcdef01…");
        let p = Patient { name: "Ada Testperson".into(), mrn: "SYN-000123".into(), birth_date: "1970-01-01".into() };
        assert!(!patient(&p, false).contains("Testperson"));
        assert!(!patient(&p, false).contains("000123"));
        assert!(!patient(&p, false).contains("1970"));
        assert!(patient(&p, true).contains("Testperson"));
    }
}
