//! View 6 (Outbox) in the console's pure core: what it draws from a snapshot (sinks, the rows
//! behind the selected sink, and the Dependencies table), the confirmed actions its keys
//! produce, its keys as rebindable keymap actions, the reasons its dialogs insist on, and a
//! dependency held and released from the console through the jobs thread and the local
//! backend on a real store, audited as the CLI twin audits it.

mod common;

use std::collections::BTreeMap;
use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, TimeZone, Utc};
use common::{Lb, code, console, delivery, dependency, draw, key, sink, type_text};
use lightbox::backend::{DependencyOp, OutboxSnapshot};
use lightbox::outbox::{Action, Breaker};
use lightbox::tui::app::{App, AppEvent, Dialog, Effect, Loaded, Mutation, Request, Settings, View};
use lightbox::tui::keymap::Keymap;
use lightbox::tui::outbox::Focus;
use ratatui::crossterm::event::KeyCode;

const ARN: &str = "arn:aws:states:us-east-1:000000000000:execution:publication:ACC-1";

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 25, 10, 0, 0).single().expect("time")
}

fn settings() -> Settings {
    Settings { user: "ops.kim".into(), tz: chrono::FixedOffset::east_opt(0).expect("utc"), ..Settings::default() }
}

/// View 6 with two sinks (one open, one paused), rows behind both, and three dependencies
/// (one held with its breaker open, one half-open, one fine), loaded a second ago.
fn loaded(mut a: App) -> App {
    a.handle(key('6'));
    let snap = OutboxSnapshot {
        sinks: vec![sink("pacs-webhook", Breaker::Open, Some(14 * 60_000 + 7_000), false), sink("archive", Breaker::Closed, None, true)],
        rows: vec![
            delivery("pacs-webhook", ARN, 7, 3, false, t0()),
            delivery("pacs-webhook", ARN, 8, 0, false, t0()),
            delivery("pacs-webhook", ARN, 3, 10, true, t0()),
            delivery("archive", ARN, 9, 0, false, t0()),
        ],
    };
    let at = t0() - Duration::seconds(1);
    a.handle(AppEvent::Loaded(Loaded::Outbox(snap), at));
    a.handle(AppEvent::Loaded(
        Loaded::Dependencies(vec![
            dependency("clearinghouse", "OPEN", Some(12 * 60 + 1), 5, Some("ops.lee")),
            dependency("dictation", "HALF_OPEN", None, 1, None),
            dependency("pacs-archive", "CLOSED", None, 0, None),
        ]),
        at,
    ));
    a
}

fn app() -> App {
    loaded(console(settings(), t0()))
}

fn confirmed(a: &mut App) -> Mutation {
    let Some(Dialog::Confirm { mutation, .. }) = a.dialog.clone() else { panic!("no confirmation: {:?}", a.dialog) };
    let effects = a.handle(key('y'));
    assert!(effects.contains(&Effect::Mutate(mutation.clone())), "{effects:?}");
    mutation
}

/// The open reason dialog, answered with `reason`: what it carries out.
fn reasoned(a: &mut App, reason: &str) -> Mutation {
    assert!(matches!(a.dialog, Some(Dialog::Reason { .. })), "no reason dialog: {:?}", a.dialog);
    // The reason code first (→: the first, direct-care; ← again: the last, other), then the note.
    a.handle(code(KeyCode::Right));
    a.handle(code(KeyCode::Left));
    type_text(a, reason);
    let effects = a.handle(code(KeyCode::Enter));
    let [Effect::Mutate(m)] = effects.as_slice() else { panic!("{effects:?}") };
    assert!(a.dialog.is_none());
    m.clone()
}

#[test]
fn view_6_renders_as_reviewed() {
    let a = app();
    let narrow = draw(&a, 80, 24);
    for want in ["pacs-webhook", "OPEN 14m06s", "PAUSED", "Rows behind pacs-webhook (3)", "retrying", "parked", "ACC-1"] {
        assert!(narrow.contains(want), "{want}: {narrow}");
    }
    for want in ["Dependencies (3)", "clearinghouse", "OPEN 12m00s", "5/5", "by ops.lee", "HALF_OPEN", "pacs-archive"] {
        assert!(narrow.contains(want), "{want}: {narrow}");
    }
    // The view's own keys in the footer, from the keymap.
    assert!(narrow.contains("n next sink") && narrow.contains("p pause/resume"), "{narrow}");
    assert!(narrow.lines().all(|l| l.chars().count() <= 80), "{narrow}");
    insta::assert_snapshot!("outbox_80x24", narrow);
    let wide = draw(&a, 140, 34);
    assert!(wide.contains("handler lightbox-clearinghouse") && wide.contains("clearinghouse maintenance window"), "{wide}");
    assert!(wide.contains("webhook answered HTTP 503"), "{wide}");
    insta::assert_snapshot!("outbox_140x34", wide);
    assert!(a.refresh_requests().contains(&Request::Outbox) && a.refresh_requests().contains(&Request::Dependencies));
}

/// A sink that takes escalation notices shows its format beside its kind.
#[test]
fn a_pagerduty_sink_shows_its_format_beside_its_kind() {
    let mut a = console(settings(), t0());
    a.handle(key('6'));
    let mut pager = sink("reading-room-pager", Breaker::Closed, None, false);
    pager.format = "pagerduty".into();
    let snap = OutboxSnapshot { sinks: vec![sink("archive", Breaker::Closed, None, false), pager], rows: vec![] };
    a.handle(AppEvent::Loaded(Loaded::Outbox(snap), t0()));
    let screen = draw(&a, 140, 24);
    let line = |name: &str| screen.lines().find(|l| l.contains(name)).map(str::to_string).unwrap_or_default();
    assert!(line("reading-room-pager").contains("webhook/pagerduty"), "{screen}");
    assert!(line("archive").contains("webhook") && !line("archive").contains("webhook/"), "{screen}");
}

#[test]
fn breakers_count_down_without_a_reload() {
    let mut a = app();
    a.handle(AppEvent::Tick(t0() + Duration::seconds(60)));
    let s = draw(&a, 80, 24);
    assert!(s.contains("OPEN 13m06s") && s.contains("OPEN 11m00s"), "{s}");
    // The selected sink's title says when its next trial is, counting down too.
    assert!(s.contains("next trial in 13m06s"), "{s}");
}

#[test]
fn keys_ask_first_then_act_on_the_sink_and_row_selected() {
    let mut a = app();
    // Retry now on a failing row names it.
    a.handle(key('t'));
    assert_eq!(confirmed(&mut a), Mutation::Outbox { action: Action::Retry { sink: "pacs-webhook".into(), row: Some(7) } });
    // Park the selected waiting row, for a reason.
    a.handle(key('j'));
    a.handle(key('P'));
    let m = reasoned(&mut a, "poison payload");
    assert_eq!(
        m,
        Mutation::Outbox { action: Action::Park { sink: "pacs-webhook".into(), row: 8, reason: "[other] poison payload".into() } }
    );
    // Requeue with no parked row selected: every parked row of the sink.
    a.handle(key('u'));
    assert_eq!(confirmed(&mut a), Mutation::Outbox { action: Action::Requeue { sink: "pacs-webhook".into(), row: None } });
    // Pause this one, for a reason; the next sink is paused, so p resumes it (no reason asked).
    a.handle(key('p'));
    let m = reasoned(&mut a, "PACS upgrade tonight");
    assert_eq!(
        m,
        Mutation::Outbox { action: Action::Pause { sink: "pacs-webhook".into(), reason: "[other] PACS upgrade tonight".into() } }
    );
    a.handle(key('n'));
    assert!(draw(&a, 80, 24).contains("Rows behind archive (1)"));
    a.handle(key('p'));
    assert_eq!(confirmed(&mut a), Mutation::Outbox { action: Action::Resume { sink: "archive".into() } });
    // Esc cancels.
    a.handle(key('p'));
    a.handle(code(KeyCode::Esc));
    assert!(a.dialog.is_none());
}

#[test]
fn pause_park_hold_release_and_reset_refuse_an_empty_reason() {
    let mut a = app();
    let steps: [(char, &str); 5] =
        [('p', "outbox-pause"), ('P', "outbox-park"), ('h', "dependency-hold"), ('r', "dependency-release"), ('b', "dependency-reset")];
    for (k, verb) in steps {
        a.handle(key(k));
        // hold applies to a dependency not held (the second), release and reset to the first.
        if k == 'h' {
            a.message = None;
            a.handle(key('j'));
            a.handle(key('h'));
        }
        if k == 'r' {
            a.handle(key('k'));
            a.handle(key('r'));
        }
        assert!(matches!(a.dialog, Some(Dialog::Reason { .. })), "{k}: {:?} {:?}", a.dialog, a.message);
        type_text(&mut a, "  ");
        assert!(a.handle(code(KeyCode::Enter)).is_empty(), "{k}: an empty reason carries nothing out");
        assert!(matches!(a.dialog, Some(Dialog::Reason { .. })), "{k}: the dialog stays open");
        let (msg, err) = a.message.clone().expect("message");
        assert!(err && msg.starts_with(verb) && msg.contains("pick a reason code"), "{k}: {msg}");
        // With a code, a blank note is still no reason.
        a.handle(code(KeyCode::Right));
        assert!(a.handle(code(KeyCode::Enter)).is_empty(), "{k}: a code alone carries nothing out");
        assert!(a.message.as_ref().is_some_and(|(m, _)| m.contains("must say why")), "{k}: {:?}", a.message);
        a.handle(code(KeyCode::Esc));
        a.message = None;
    }
}

#[test]
fn tab_walks_sinks_then_dependencies_then_the_next_view() {
    let mut a = app();
    assert_eq!(a.outbox.focus, Focus::Sinks);
    a.handle(code(KeyCode::Tab));
    assert_eq!((a.view, a.outbox.focus), (View::Outbox, Focus::Dependencies));
    let s = draw(&a, 80, 24);
    assert!(s.contains("Dependencies (3) · 1 held · 2 breaker(s) not closed ◀"), "{s}");
    // The footer offers what applies to the held, open clearinghouse: release and reset, not hold.
    let footer = s.lines().last().unwrap_or_default().to_string();
    assert!(footer.contains("r release") && footer.contains("b reset breaker") && !footer.contains("h hold"), "{footer}");
    // j/k move among the dependencies; Enter opens nothing there.
    a.handle(key('j'));
    assert_eq!(a.selected_dependency().map(|d| d.name.as_str()), Some("dictation"));
    a.handle(code(KeyCode::Enter));
    assert_eq!(a.view, View::Outbox);
    // S-Tab back to the sinks, Tab twice on to view 1; S-Tab from view 1 lands on the dependencies.
    a.handle(code(KeyCode::BackTab));
    assert_eq!((a.view, a.outbox.focus), (View::Outbox, Focus::Sinks));
    a.handle(code(KeyCode::Tab));
    a.handle(code(KeyCode::Tab));
    assert_eq!(a.view, View::Pipelines);
    a.handle(code(KeyCode::BackTab));
    assert_eq!((a.view, a.outbox.focus), (View::Outbox, Focus::Dependencies));
    // A sink key from the dependencies moves the focus back and acts on the sink.
    a.handle(key('t'));
    assert_eq!(a.outbox.focus, Focus::Sinks);
    assert!(matches!(a.dialog, Some(Dialog::Confirm { mutation: Mutation::Outbox { action: Action::Retry { .. } }, .. })));
}

#[test]
fn dependency_keys_open_a_reasoned_dialog_for_the_selected_one() {
    let mut a = app();
    // From the sinks, `h` moves to the dependencies; the first is already held.
    a.handle(key('h'));
    assert_eq!(a.outbox.focus, Focus::Dependencies);
    assert!(a.dialog.is_none());
    assert!(a.message.as_ref().is_some_and(|(m, e)| *e && m.contains("already held by ops.lee")), "{:?}", a.message);
    a.handle(key('r'));
    let s = draw(&a, 100, 30);
    assert!(s.contains("release the hold on clearinghouse, held by ops.lee") && s.contains("3 waiting execution(s) resume"), "{s}");
    let m = reasoned(&mut a, "clearinghouse answers again");
    assert_eq!(
        m,
        Mutation::Dependency {
            op: DependencyOp::Release,
            name: "clearinghouse".into(),
            reason: "[other] clearinghouse answers again".into(),
            by: "ops.kim".into()
        }
    );
    a.handle(key('b'));
    assert!(matches!(reasoned(&mut a, "checked by hand"), Mutation::Dependency { op: DependencyOp::Reset, .. }));
    a.handle(key('G'));
    a.handle(key('b'));
    assert!(a.dialog.is_none() && a.message.as_ref().is_some_and(|(m, _)| m.contains("breaker is closed")), "{:?}", a.message);
    a.handle(key('h'));
    let m = reasoned(&mut a, "vendor maintenance window");
    assert!(matches!(m, Mutation::Dependency { op: DependencyOp::Hold, ref name, .. } if name == "pacs-archive"), "{m:?}");
}

#[test]
fn a_view_6_key_rebound_in_config_works_and_help_shows_it() {
    let mut o = BTreeMap::new();
    o.insert("pause-sink".to_string(), vec!["z".to_string()]);
    o.insert("hold-dependency".to_string(), vec!["H".to_string()]);
    let keymap = Keymap::default().with_overrides(&o).expect("overrides");
    let mut a = loaded(App::new(settings(), keymap, lightbox::tui::theme::Theme::dark(), t0()));
    // `p` no longer pauses here (it says where it works instead).
    a.handle(key('p'));
    assert!(a.dialog.is_none(), "{:?}", a.dialog);
    a.handle(key('z'));
    assert!(matches!(a.dialog, Some(Dialog::Reason { mutation: Mutation::Outbox { action: Action::Pause { .. } }, .. })), "{:?}", a.dialog);
    a.handle(code(KeyCode::Esc));
    a.message = None;
    let s = draw(&a, 200, 30);
    assert!(s.contains("z pause/resume"), "{s}");
    // The first dependency is held already; the second is not.
    a.handle(key('H'));
    assert!(a.dialog.is_none() && a.outbox.focus == Focus::Dependencies);
    a.handle(key('j'));
    a.handle(key('H'));
    assert!(
        matches!(a.dialog, Some(Dialog::Reason { mutation: Mutation::Dependency { op: DependencyOp::Hold, .. }, .. })),
        "{:?}",
        a.dialog
    );
    a.handle(code(KeyCode::Esc));
    a.handle(key('?'));
    let help = draw(&a, 100, 60);
    assert!(help.contains("Keys in Outbox"), "{help}");
    assert!(help.lines().any(|l| l.contains(" z ") && l.contains("pause/resume")), "{help}");
    assert!(help.lines().any(|l| l.contains(" H ") && l.contains("hold")), "{help}");
}

#[test]
fn the_filter_keeps_the_rows_and_dependencies_that_match() {
    let mut a = app();
    a.handle(key('/'));
    type_text(&mut a, "parked|clearing");
    a.handle(code(KeyCode::Enter));
    let rows: Vec<i64> = a.outbox_rows().iter().map(|r| r.row_id).collect();
    assert_eq!(rows, [3]);
    let deps: Vec<&str> = a.visible_dependencies().iter().map(|d| d.name.as_str()).collect();
    assert_eq!(deps, ["clearinghouse"]);
    let s = draw(&a, 80, 24);
    assert!(s.contains("Rows behind pacs-webhook (1) · /parked|clearing") && s.contains("Dependencies (1)"), "{s}");
    // Esc clears it.
    a.handle(code(KeyCode::Esc));
    assert_eq!(a.outbox_rows().len(), 3);
    assert_eq!(a.visible_dependencies().len(), 3);
}

#[test]
fn enter_opens_the_rows_execution_and_read_only_refuses_actions() {
    let mut a = app();
    let effects = a.handle(code(KeyCode::Enter));
    assert!(effects.iter().any(|e| matches!(e, Effect::Load(Request::Detail(arn, _)) if arn == ARN)), "{effects:?}");
    let mut ro = loaded(console(Settings { read_only: true, ..settings() }, t0()));
    for k in ['p', 't', 'P', 'u', 'h', 'r', 'b'] {
        ro.handle(key(k));
        assert!(ro.dialog.is_none(), "{k}");
        assert!(ro.message.as_ref().is_some_and(|(m, err)| *err && m.contains("read-only")), "{k}: {:?}", ro.message);
    }
    ro.message = None;
    let footer = draw(&ro, 80, 24).lines().last().unwrap_or_default().to_string();
    assert!(footer.contains("n next sink") && !footer.contains("pause"), "{footer}");
}

// ----- through the jobs thread and the local backend, on a real store -----

/// Run `effects` on the worker and feed every result back to the console until `done` says so.
fn run(a: &mut App, w: &lightbox::tui::jobs::Worker, effects: Vec<Effect>, done: impl Fn(&Loaded) -> bool) -> Loaded {
    for e in effects {
        match e {
            Effect::Load(r) => w.send(lightbox::tui::jobs::Job::Load(r)),
            Effect::Mutate(m) => w.send(lightbox::tui::jobs::Job::Mutate(m)),
            Effect::Switch { name, generation } => w.send(lightbox::tui::jobs::Job::Switch { name, generation }),
            Effect::Quit => {}
        }
    }
    loop {
        let (l, at, _) = w.rx.recv_timeout(StdDuration::from_secs(20)).expect("the jobs thread answers");
        let stop = done(&l);
        a.handle(AppEvent::Loaded(l.clone(), at));
        if stop {
            return l;
        }
    }
}

fn reload(a: &mut App, w: &lightbox::tui::jobs::Worker) {
    run(a, w, vec![Effect::Load(Request::Dependencies)], |l| {
        matches!(l, Loaded::Dependencies(_) | Loaded::Failed { .. } | Loaded::Unavailable { .. })
    });
}

#[test]
fn holding_and_releasing_from_the_console_is_audited_as_the_cli_twin() {
    use lightbox::engine::dependencies::{DependencyConfig, DependencyMatch};
    let lb = Lb::as_user("ops.cli");
    std::fs::create_dir_all(lb.data()).expect("data dir");
    let dep = DependencyConfig {
        name: "clearinghouse".into(),
        matches: DependencyMatch { handler: Some("lightbox-submit-claim".into()), host: None },
        failures: 5,
        window: "1m".into(),
        open_for: "15m".into(),
    };
    {
        let store = lightbox::store::Store::open(&lb.db()).expect("store");
        let mut engine = lightbox::engine::Engine::new(store, lightbox::engine::tasks::TaskRunner::new(), lightbox::engine::Clock::Real);
        engine.dependencies = vec![dep];
        let local = lightbox::backend::local::Local::new(engine, lb.data());
        let hook: lightbox::tui::jobs::OnAction = Box::new(|_: &Mutation, _: &str, _: &Result<(), String>| {});
        let w = lightbox::tui::jobs::Worker::spawn(Box::new(local), Default::default(), hook, StdDuration::from_millis(50));
        let mut a = console(settings(), Utc::now());
        let effects = a.handle(key('6'));
        run(&mut a, &w, effects, |l| matches!(l, Loaded::Dependencies(_)));
        assert!(draw(&a, 100, 30).contains("clearinghouse"), "{}", draw(&a, 100, 30));

        // Hold it, for a reason.
        a.handle(code(KeyCode::Tab));
        a.handle(key('h'));
        a.handle(code(KeyCode::Right));
        type_text(&mut a, "clearinghouse returns 502s");
        let effects = a.handle(code(KeyCode::Enter));
        let done = run(&mut a, &w, effects, |l| matches!(l, Loaded::Done { .. }));
        assert!(matches!(&done, Loaded::Done { verb, ok: 1, failed } if verb == "dependency-hold" && failed.is_empty()), "{done:?}");
        reload(&mut a, &w);
        let s = draw(&a, 140, 30);
        assert!(s.contains("by ops.kim") && s.contains("[direct-care] clearinghouse returns"), "shown as held: {s}");

        // Release it, for a reason.
        a.handle(key('r'));
        for _ in 0..3 {
            a.handle(code(KeyCode::Right));
        }
        type_text(&mut a, "claims go through again");
        let effects = a.handle(code(KeyCode::Enter));
        let done = run(&mut a, &w, effects, |l| matches!(l, Loaded::Done { .. }));
        assert!(matches!(&done, Loaded::Done { verb, ok: 1, .. } if verb == "dependency-release"), "{done:?}");
        reload(&mut a, &w);
        assert!(a.visible_dependencies().iter().all(|d| !d.held));
    }

    // The CLI twin, on the same store afterwards.
    let cfg = lb.file("config.toml", "[[dependencies]]\nname = \"clearinghouse\"\nmatch = { handler = \"lightbox-submit-claim\" }\n");
    lb.json(&[
        "--config",
        &cfg,
        "dependencies",
        "hold",
        "clearinghouse",
        "--reason-code",
        "operations-incident",
        "--reason",
        "from the shell",
    ]);

    let conn = rusqlite::Connection::open(lb.db()).expect("db");
    let rows = lightbox::audit::list(&conn, &lightbox::audit::AuditFilter::default()).expect("audit");
    let done: Vec<_> = rows.iter().filter(|r| r.result == "ok").collect();
    let console_hold = done.iter().find(|r| r.action == "dependency-hold" && r.source == "console").expect("console hold audited");
    assert_eq!(console_hold.actor, "ops.kim");
    assert_eq!(console_hold.reason.as_deref(), Some("dependency clearinghouse: clearinghouse returns 502s"));
    assert_eq!(console_hold.reason_code.as_deref(), Some("direct-care"), "the code apart from the note");
    assert!(console_hold.intent_seq.is_some(), "an intent row came first: {console_hold:?}");
    let release = done.iter().find(|r| r.action == "dependency-release" && r.source == "console").expect("console release audited");
    assert_eq!(release.reason.as_deref(), Some("dependency clearinghouse: claims go through again"));
    assert_eq!(release.reason_code.as_deref(), Some("operations-incident"));
    let cli_hold = done.iter().find(|r| r.action == "dependency-hold" && r.source == "cli").expect("cli hold audited");
    assert_eq!(cli_hold.reason.as_deref(), Some("dependency clearinghouse: from the shell"));
    assert_eq!(cli_hold.reason_code.as_deref(), Some("operations-incident"));
    assert_eq!((cli_hold.before.as_deref(), cli_hold.after.as_deref()), (console_hold.before.as_deref(), console_hold.after.as_deref()));
    assert_eq!(rows.iter().filter(|r| r.action.starts_with("dependency-")).count(), 6, "intent and outcome each: {rows:?}");
}

/// A capability the backend lacks (dependency breakers on AWS) is said in its table, not as a
/// failure in the footer on every refresh; a real failure still goes to the footer.
#[test]
fn what_a_backend_cannot_show_is_said_in_its_pane_not_as_a_failure() {
    let mut a = app();
    let why = "dependency breakers and holds are not supported by this backend";
    a.handle(AppEvent::Loaded(Loaded::Unavailable { what: "dependencies".into(), why: why.into() }, t0()));
    let screen = draw(&a, 140, 34);
    let footer = screen.lines().last().unwrap_or_default().to_string();
    assert!(screen.contains(why), "{screen}");
    assert!(!footer.contains("not supported"), "{footer}");
    a.handle(AppEvent::Loaded(Loaded::Failed { what: "outbox".into(), error: "database is locked".into() }, t0()));
    let screen = draw(&a, 140, 34);
    assert!(screen.lines().last().unwrap_or_default().contains("outbox: database is locked"), "{screen}");
}
