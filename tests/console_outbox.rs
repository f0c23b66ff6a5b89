//! View 6 (Outbox) in the console's pure core: what it draws from a snapshot, and the
//! confirmed actions its keys produce.

use chrono::{Duration, TimeZone, Utc};
use lightbox::backend::OutboxSnapshot;
use lightbox::outbox::{Action, Breaker, DeliveryRow, SinkStatus};
use lightbox::tui::app::{App, AppEvent, Dialog, Effect, Loaded, Mutation, Request, Settings};
use lightbox::tui::keymap::Keymap;
use lightbox::tui::theme::Theme;
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

const ARN: &str = "arn:aws:states:us-east-1:000000000000:execution:publication:ACC-1";

fn sink(name: &str, breaker: Breaker, left: Option<i64>, paused: bool) -> SinkStatus {
    SinkStatus {
        name: name.into(),
        kind: "webhook".into(),
        target: "http://127.0.0.1:9000/events".into(),
        paused,
        paused_reason: paused.then(|| "maintenance".to_string()),
        breaker,
        breaker_left_ms: left,
        backlog: 2,
        oldest_age_ms: Some(95_000),
        rate_per_min: 0,
        delivered: 40,
        failures: 5,
        parked: 1,
        last_error: Some("webhook answered HTTP 503".into()),
    }
}

fn row(sink: &str, id: i64, attempts: u32, parked: bool) -> DeliveryRow {
    DeliveryRow {
        row_id: id,
        sink: sink.into(),
        stream: ARN.into(),
        event_id: format!("e{id}"),
        detail_type: "Step Functions Execution Status Change".into(),
        created_ms: Utc::now().timestamp_millis() - 60_000,
        attempts,
        next_ms: None,
        parked,
        park_reason: None,
        last_error: None,
    }
}

fn app() -> App {
    let t0 = Utc.with_ymd_and_hms(2026, 11, 25, 10, 0, 0).single().expect("time");
    let settings = Settings { user: "ops.kim".into(), ..Settings::default() };
    let mut a = App::new(settings, Keymap::default(), Theme::dark(), t0);
    a.handle(key('6'));
    let snap = OutboxSnapshot {
        sinks: vec![sink("pacs-webhook", Breaker::Open, Some(14 * 60_000 + 7_000), false), sink("archive", Breaker::Closed, None, true)],
        rows: vec![
            row("pacs-webhook", 7, 3, false),
            row("pacs-webhook", 8, 0, false),
            row("pacs-webhook", 3, 10, true),
            row("archive", 9, 0, false),
        ],
    };
    a.handle(AppEvent::Loaded(Loaded::Outbox(snap), t0 - Duration::seconds(1)));
    a
}

fn key(c: char) -> AppEvent {
    AppEvent::Key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE))
}

fn draw(a: &App) -> String {
    let mut term = Terminal::new(TestBackend::new(140, 30)).expect("terminal");
    term.draw(|f| a.render(f)).expect("draw");
    let buf = term.backend().buffer().clone();
    let mut out = String::new();
    for y in 0..buf.area.height {
        for x in 0..buf.area.width {
            out.push_str(buf[(x, y)].symbol());
        }
        out.push('\n');
    }
    out
}

fn confirmed(a: &mut App) -> Mutation {
    let Some(Dialog::Confirm { mutation, .. }) = a.dialog.clone() else { panic!("no confirmation: {:?}", a.dialog) };
    let effects = a.handle(key('y'));
    assert!(effects.contains(&Effect::Mutate(mutation.clone())), "{effects:?}");
    mutation
}

#[test]
fn view_6_draws_each_sink_and_the_rows_behind_the_selected_one() {
    let a = app();
    let screen = draw(&a);
    assert!(screen.contains("pacs-webhook") && screen.contains("OPEN 14m07s"), "{screen}");
    assert!(screen.contains("archive") && screen.contains("PAUSED"), "{screen}");
    assert!(screen.contains("Rows behind pacs-webhook (3)"), "{screen}");
    assert!(screen.contains("parked") && screen.contains("retrying") && screen.contains("ACC-1"), "{screen}");
    assert!(screen.contains("p pause/resume") && screen.contains("u requeue parked"), "{screen}");
    assert!(a.refresh_requests().contains(&Request::Outbox));
}

#[test]
fn keys_ask_first_then_act_on_the_sink_and_row_selected() {
    let mut a = app();
    // Retry now on a failing row names it.
    a.handle(key('t'));
    assert_eq!(confirmed(&mut a), Mutation::Outbox { action: Action::Retry { sink: "pacs-webhook".into(), row: Some(7) } });
    // Park the selected waiting row.
    a.handle(key('j'));
    a.handle(key('P'));
    assert!(matches!(confirmed(&mut a), Mutation::Outbox { action: Action::Park { row: 8, .. } }));
    // Requeue with no parked row selected: every parked row of the sink.
    a.handle(key('u'));
    assert_eq!(confirmed(&mut a), Mutation::Outbox { action: Action::Requeue { sink: "pacs-webhook".into(), row: None } });
    // Pause this one; the next sink is paused, so p resumes it.
    a.handle(key('p'));
    assert!(matches!(confirmed(&mut a), Mutation::Outbox { action: Action::Pause { ref sink, .. } } if sink == "pacs-webhook"));
    a.handle(key('n'));
    a.handle(key('p'));
    assert_eq!(confirmed(&mut a), Mutation::Outbox { action: Action::Resume { sink: "archive".into() } });
    // Esc cancels.
    a.handle(key('p'));
    a.handle(AppEvent::Key(KeyEvent::new(KeyCode::Esc, KeyModifiers::NONE)));
    assert!(a.dialog.is_none());
}

#[test]
fn enter_opens_the_rows_execution_and_read_only_refuses_actions() {
    let mut a = app();
    let effects = a.handle(AppEvent::Key(KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE)));
    assert!(effects.iter().any(|e| matches!(e, Effect::Load(Request::Detail(arn, _)) if arn == ARN)), "{effects:?}");
    let mut ro = app();
    ro.settings.read_only = true;
    ro.handle(key('p'));
    assert!(ro.dialog.is_none());
    assert!(ro.message.as_ref().is_some_and(|(m, err)| *err && m.contains("read-only")), "{:?}", ro.message);
}
