//! View 5 (SLO clocks) on ratatui's TestBackend: reviewed snapshots, the live countdown, Enter
//! and `e` on a clock.

mod common;

use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};
use common::{code, console, draw, key, type_text};
use lightbox::ops::Priority;
use lightbox::ops::project::{GateKind, Patient, Review};
use lightbox::ops::slo::{Clock, LoopStage, SloConfig, SloKind, check_all};
use lightbox::tui::app::{App, AppEvent, Dialog, Effect, Loaded, Mutation, Settings, View};
use ratatui::crossterm::event::KeyCode;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 22, 14, 2, 31).single().expect("time")
}

fn arn(name: &str) -> String {
    format!("arn:aws:states:us-east-1:000000000000:execution:scheduled-imaging:{name}")
}

fn cfg(name: &str, target: &str) -> SloConfig {
    SloConfig {
        name: name.into(),
        when: Default::default(),
        from: "start".into(),
        to: "end".into(),
        target: target.into(),
        at_risk: 0.8,
        objective: 0.95,
        machine: None,
        flagged: Default::default(),
        kind: None,
    }
}

fn clock(slo: &str, acc: &str, prio: &str, target_min: i64, started_min_ago: i64, stopped: Option<i64>, state: &str) -> Clock {
    Clock {
        slo: slo.into(),
        execution_arn: arn(acc),
        machine: "scheduled-imaging".into(),
        started: t0() - Duration::minutes(started_min_ago),
        stopped: stopped.map(|m| t0() - Duration::minutes(m)),
        reached: true,
        target_ms: target_min * 60_000,
        at_risk: 0.8,
        speed: 1.0,
        state: Some(state.into()),
        priority: Some(prio.into()),
        accession: Some(acc.into()),
        stage: None,
    }
}

fn app() -> App {
    let slos =
        check_all(&[cfg("stat-ed-ct-read", "60m"), cfg("stat-review-gate", "15m"), cfg("routine-outpatient-read", "2d")]).expect("slos");
    let settings = Settings {
        user: "dr.lee".into(),
        demo: true,
        tz: chrono::FixedOffset::east_opt(0).expect("utc"),
        slo: Arc::new(slos),
        ..Settings::default()
    };
    let mut a = console(settings, t0());
    let at = t0() - Duration::seconds(1);
    a.handle(AppEvent::Loaded(
        Loaded::Slo(vec![
            clock("stat-ed-ct-read", "ACC-20401", "STAT", 60, 30, None, "AwaitAiDraft"),
            clock("stat-ed-ct-read", "ACC-20418", "STAT", 60, 52, None, "RadiologistReview"),
            clock("stat-review-gate", "ACC-20418", "STAT", 15, 20, None, "RadiologistReview"),
            clock("routine-outpatient-read", "ACC-20300", "ROUTINE", 2880, 600, None, "Transcribe"),
            clock("stat-ed-ct-read", "ACC-20377", "STAT", 60, 200, Some(150), "SignReport"),
            clock("stat-ed-ct-read", "ACC-20311", "STAT", 60, 300, Some(200), "SignReport"),
        ]),
        at,
    ));
    a.handle(AppEvent::Loaded(
        Loaded::Reviews(vec![Review {
            token: "ACC-20418-0123456789abcdef0123456789abcdef".into(),
            execution_arn: arn("ACC-20418"),
            state: "RadiologistReview".into(),
            gate: GateKind::FirstRead,
            entered: t0() - Duration::minutes(20),
            accession: "ACC-20418".into(),
            study: "CT head".into(),
            draft: "No acute intracranial haemorrhage.".into(),
            priority: Priority::Stat,
            reviewer_group: "neuro".into(),
            issued: t0() - Duration::minutes(20),
            timeout: Some(t0() + Duration::minutes(10)),
            claimed_by: None,
            patient: Patient { name: "Dana Testperson".into(), mrn: "SYN-000421".into(), birth_date: "1961-04-02".into() },
        }]),
        at,
    ));
    a.handle(key('5'));
    a
}

#[test]
fn the_slo_view_renders_as_reviewed() {
    let a = app();
    assert_eq!(a.view, View::Slo);
    insta::assert_snapshot!("slo_120x30", draw(&a, 120, 30));
    insta::assert_snapshot!("slo_80x24", draw(&a, 80, 24));
}

#[test]
fn clocks_sort_by_time_to_breach_and_count_down_without_a_reload() {
    let mut a = app();
    let order: Vec<(String, String)> =
        a.visible_clocks().iter().map(|(c, _)| (c.slo.clone(), c.accession.clone().unwrap_or_default())).collect();
    assert_eq!(
        order,
        [
            ("stat-review-gate".to_string(), "ACC-20418".to_string()),
            ("stat-ed-ct-read".into(), "ACC-20418".into()),
            ("stat-ed-ct-read".into(), "ACC-20401".into()),
            ("routine-outpatient-read".into(), "ACC-20300".into()),
        ],
        "breached first, then the least time left; closed clocks are not listed"
    );
    let before = draw(&a, 120, 30);
    assert!(before.contains("8m00s"), "{before}");
    a.handle(AppEvent::Tick(t0() + Duration::seconds(5)));
    let after = draw(&a, 120, 30);
    assert!(after.contains("7m55s"), "the clock moved on its own: {after}");
    // Past the target: the ACC-20418 read clock breaches at the next frame.
    a.handle(AppEvent::Tick(t0() + Duration::minutes(9)));
    let late = a.visible_clocks();
    assert!(late.iter().filter(|(_, r)| r.status == lightbox::ops::slo::Status::Breached).count() == 2, "{late:?}");
}

#[test]
fn e_escalates_the_review_the_clocks_study_waits_in_and_enter_opens_it() {
    let mut a = app();
    // The first clock (stat-review-gate of ACC-20418) has a review waiting.
    a.handle(key('e'));
    let Some(Dialog::Reason { mutation: Mutation::Escalate { tokens, .. }, .. }) = &a.dialog else { panic!("{:?}", a.dialog) };
    assert_eq!(tokens, &vec!["ACC-20418-0123456789abcdef0123456789abcdef".to_string()]);
    // The escalation asks why: an empty reason is refused, the one given is its cause.
    assert!(a.handle(code(KeyCode::Enter)).is_empty());
    assert!(a.message.as_ref().is_some_and(|(m, err)| *err && m.contains("pick a reason code")), "{:?}", a.message);
    a.handle(code(KeyCode::Right));
    type_text(&mut a, "STAT read breaching, no reader");
    let effects = a.handle(code(KeyCode::Enter));
    let [Effect::Mutate(Mutation::Escalate { cause, .. })] = effects.as_slice() else { panic!("{effects:?}") };
    assert_eq!(cause, "[direct-care] STAT read breaching, no reader");
    assert!(a.dialog.is_none());
    // Its clock closing because of it is expected: the outcome stays on the footer.
    let at = t0() + Duration::seconds(1);
    a.handle(AppEvent::Loaded(Loaded::Done { verb: "escalate".into(), ok: 1, failed: vec![] }, at));
    let left: Vec<Clock> = vec![clock("stat-ed-ct-read", "ACC-20401", "STAT", 60, 30, None, "AwaitAiDraft")];
    a.handle(AppEvent::Loaded(Loaded::Slo(left), at));
    assert_eq!(a.message.as_ref().map(|m| m.0.as_str()), Some("escalate: 1 done"));
    a.handle(AppEvent::Loaded(Loaded::Slo(vec![]), at));
    assert!(a.message.as_ref().is_some_and(|(m, _)| m.contains("no longer in this view")), "another clock leaving is announced");
    // Reload the fixture's clocks for what follows.
    let mut a = app();
    // ACC-20401 waits in no review: `e` says so and opens nothing.
    a.handle(key('j'));
    a.handle(key('j'));
    a.handle(key('e'));
    assert!(a.dialog.is_none());
    assert!(a.message.as_ref().is_some_and(|(m, err)| *err && m.contains("no review")), "{:?}", a.message);
    a.handle(code(KeyCode::Enter));
    assert_eq!((a.view, a.detail_arn.clone()), (View::Executions, Some(arn("ACC-20401"))));
}

#[test]
fn the_filter_keeps_matching_clocks() {
    let mut a = app();
    a.handle(key('/'));
    type_text(&mut a, "routine");
    a.handle(code(KeyCode::Enter));
    let left: Vec<String> = a.visible_clocks().iter().map(|(c, _)| c.slo.clone()).collect();
    assert_eq!(left, ["routine-outpatient-read"]);
}

#[test]
fn a_critical_result_clock_shows_where_its_loop_stands() {
    let loop_cfg = SloConfig {
        from: "CommunicateCriticalResult".into(),
        to: "AcknowledgeCriticalResult".into(),
        at_risk: 0.5,
        kind: Some(SloKind::ClosedLoop),
        ..cfg("critical-result", "60m")
    };
    let slos = check_all(&[loop_cfg, cfg("stat-ed-ct-read", "60m")]).expect("slos");
    let settings = Settings {
        user: "dr.lee".into(),
        demo: true,
        tz: chrono::FixedOffset::east_opt(0).expect("utc"),
        slo: Arc::new(slos),
        ..Settings::default()
    };
    let mut a = console(settings, t0());
    let critical = |acc: &str, started_min_ago: i64, stage: LoopStage, stopped: Option<i64>| Clock {
        at_risk: 0.5,
        stage: Some(stage),
        ..clock("critical-result", acc, "STAT", 60, started_min_ago, stopped, "AcknowledgeCriticalResult")
    };
    a.handle(AppEvent::Loaded(
        Loaded::Slo(vec![
            critical("ACC-20422", 34, LoopStage::Communicated, None),
            critical("ACC-20390", 80, LoopStage::Acknowledged, Some(35)),
            clock("stat-ed-ct-read", "ACC-20401", "STAT", 60, 12, None, "AwaitAiDraft"),
        ]),
        t0() - Duration::seconds(1),
    ));
    a.handle(key('5'));
    let screen = draw(&a, 120, 30);
    assert!(screen.contains("communicated · Acknowledge"), "{screen}");
    assert!(!screen.contains("ACC-20390"), "an acknowledged loop is closed: {screen}");
    insta::assert_snapshot!("slo_critical_120x30", screen);
    // Half the hour gone: at risk, first by time to breach.
    let first = a.visible_clocks().first().map(|(c, r)| (c.slo.clone(), r.status));
    assert_eq!(first, Some(("critical-result".to_string(), lightbox::ops::slo::Status::AtRisk)));
    // The stage is searchable text.
    a.handle(key('/'));
    type_text(&mut a, "communicated");
    a.handle(code(KeyCode::Enter));
    let left: Vec<String> = a.visible_clocks().iter().map(|(c, _)| c.slo.clone()).collect();
    assert_eq!(left, ["critical-result"]);
}
