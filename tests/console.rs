//! The console's pure core and its rendering: every view and dialog drawn on
//! ratatui's TestBackend and compared with reviewed snapshots, and the key
//! handler's effects checked without a terminal.

use chrono::{DateTime, Duration, TimeZone, Utc};
use lightbox::asl::model::Definition;
use lightbox::backend::{ExecutionRow, FeedEvent, Pulse};
use lightbox::history::{ExecutionStatus, HistoryEvent};
use lightbox::ops::project::{GateKind, Patient, Review, Study};
use lightbox::ops::{Exception, Priority, Stage};
use lightbox::tui::app::{App, AppEvent, Detail, Effect, Loaded, Mutation, Settings, View};
use lightbox::tui::keymap::Keymap;
use lightbox::tui::theme::Theme;
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use serde_json::json;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 22, 14, 2, 31).single().expect("time")
}

fn arn(name: &str) -> String {
    format!("arn:aws:states:us-east-1:000000000000:execution:scheduled-imaging:{name}")
}

fn study(acc: &str, prio: Priority, stage: Option<Stage>, exception: Option<Exception>, mins: i64) -> Study {
    Study {
        accession: acc.into(),
        modality: "CT".into(),
        body_part: "head".into(),
        priority: prio,
        patient_class: "ED".into(),
        site: "NORTH".into(),
        stage,
        exception,
        state: "Dictate".into(),
        since: Some(t0() - Duration::minutes(mins)),
        status: if exception.is_some() { ExecutionStatus::Failed } else { ExecutionStatus::Running },
        execution_arn: arn(acc),
        machine: "scheduled-imaging".into(),
        patient: Patient { name: "Dana Testperson".into(), mrn: "SYN-000421".into(), birth_date: "1961-04-02".into() },
        error: None,
        cause: None,
    }
}

fn review(acc: &str, prio: Priority, issued_min: i64, timeout_min: i64) -> Review {
    Review {
        token: format!("{acc}-0123456789abcdef0123456789abcdef"),
        execution_arn: arn(acc),
        state: "RadiologistReview".into(),
        gate: GateKind::FirstRead,
        entered: t0() - Duration::minutes(issued_min),
        accession: acc.into(),
        study: "CT head".into(),
        draft: "No acute intracranial haemorrhage. No mass effect.".into(),
        priority: prio,
        reviewer_group: "neuro".into(),
        issued: t0() - Duration::minutes(issued_min),
        timeout: Some(t0() + Duration::minutes(timeout_min)),
        claimed_by: None,
        patient: Patient { name: "Dana Testperson".into(), mrn: "SYN-000421".into(), birth_date: "1961-04-02".into() },
    }
}

fn execution(name: &str, status: ExecutionStatus, error: Option<&str>) -> ExecutionRow {
    ExecutionRow {
        arn: arn(name),
        state_machine_arn: "arn:aws:states:us-east-1:000000000000:stateMachine:scheduled-imaging".into(),
        name: name.into(),
        status,
        start: t0() - Duration::minutes(41),
        stop: None,
        input: json!({"accession": name}).to_string(),
        output: None,
        error: error.map(str::to_string),
        cause: None,
        redrive_count: 0,
        redrive: None,
        current_state: Some(if status == ExecutionStatus::Failed { "Publish".into() } else { "RadiologistReview".into() }),
        state_since: Some(t0() - Duration::minutes(5)),
    }
}

const DEFINITION: &str = r#"{"StartAt":"Schedule","States":{
  "Schedule":{"Type":"Pass","Next":"Acquire"},
  "Acquire":{"Type":"Pass","Next":"RadiologistReview"},
  "RadiologistReview":{"Type":"Pass","Next":"Publish"},
  "Publish":{"Type":"Pass","Next":"Bill"},
  "Bill":{"Type":"Pass","End":true}}}"#;

fn event(id: i64, ty: &str, state: Option<&str>, mins: i64) -> HistoryEvent {
    let details = match state {
        Some(s) => json!({"name": s}),
        None => serde_json::Value::Null,
    };
    HistoryEvent { id, previous_event_id: id - 1, timestamp: t0() - Duration::minutes(mins), event_type: ty.into(), details }
}

/// An app with data in every pane, as after the first refresh.
fn app(read_only: bool) -> App {
    let settings = Settings {
        user: "dr.lee".into(),
        read_only,
        demo: true,
        tz: chrono::FixedOffset::east_opt(0).expect("utc"),
        ..Settings::default()
    };
    let mut a = App::new(settings, Keymap::default(), Theme::dark(), t0());
    let at = t0() - Duration::seconds(1);
    let load = |a: &mut App, l: Loaded| {
        a.handle(AppEvent::Loaded(l, at));
    };
    load(&mut a, Loaded::Pulse(Pulse { running: 412, failed: 7, timed_out: 0, aborted: 1, succeeded: 900, pending_reviews: 3 }));
    load(
        &mut a,
        Loaded::Studies(vec![
            study("ACC-20401", Priority::Stat, Some(Stage::Dictated), None, 31),
            study("ACC-20418", Priority::Stat, Some(Stage::Dictated), None, 12),
            study("ACC-20377", Priority::Urgent, Some(Stage::Imaged), None, 4),
            study("ACC-20391", Priority::Routine, Some(Stage::Signed), Some(Exception::PublicationFailed), 41),
            study("ACC-20300", Priority::Routine, Some(Stage::Billed), None, 90),
        ]),
    );
    let scheduled = std::sync::Arc::new(Definition::parse_str(lightbox::sim::SCHEDULED_IMAGING).expect("demo definition"));
    load(
        &mut a,
        Loaded::Definitions(["ACC-20418", "ACC-20377", "ACC-20299", "ACC-20391"].iter().map(|n| (arn(n), scheduled.clone())).collect()),
    );
    load(
        &mut a,
        Loaded::Reviews(vec![
            review("ACC-20418", Priority::Stat, 9, 6),
            review("ACC-20377", Priority::Urgent, 41, 79),
            review("ACC-20299", Priority::Routine, 300, -7),
        ]),
    );
    load(
        &mut a,
        Loaded::Executions(vec![
            execution("ACC-20418", ExecutionStatus::Running, None),
            execution("ACC-20391", ExecutionStatus::Failed, Some("States.Timeout")),
            execution("ACC-20300", ExecutionStatus::Succeeded, None),
        ]),
    );
    load(
        &mut a,
        Loaded::Events(vec![
            FeedEvent { seq: 1, execution_arn: arn("ACC-20391"), event: event(7, "TaskFailed", None, 2), state: Some("Publish".into()) },
            FeedEvent {
                seq: 2,
                execution_arn: arn("ACC-20418"),
                event: event(12, "TaskSubmitted", None, 1),
                state: Some("RadiologistReview".into()),
            },
        ]),
    );
    a
}

fn key(c: char) -> AppEvent {
    AppEvent::Key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE))
}

fn code(c: KeyCode) -> AppEvent {
    AppEvent::Key(KeyEvent::new(c, KeyModifiers::NONE))
}

fn draw(a: &App, w: u16, h: u16) -> String {
    let mut term = Terminal::new(TestBackend::new(w, h)).expect("terminal");
    term.draw(|f| a.render(f)).expect("draw");
    let buf = term.backend().buffer().clone();
    let mut out = String::new();
    for y in 0..buf.area.height {
        let line: String = (0..buf.area.width).map(|x| buf[(x, y)].symbol().to_string()).collect();
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn detail(a: &mut App) {
    a.handle(code(KeyCode::Char('3')));
    a.open_execution(arn("ACC-20391"));
    a.handle(AppEvent::Loaded(
        Loaded::Detail(Box::new(Detail {
            execution: Some(execution("ACC-20391", ExecutionStatus::Failed, Some("States.Timeout"))),
            history: vec![
                event(1, "ExecutionStarted", None, 41),
                event(2, "PassStateEntered", Some("Schedule"), 41),
                event(3, "PassStateExited", Some("Schedule"), 41),
                event(4, "PassStateEntered", Some("Acquire"), 40),
                event(5, "PassStateExited", Some("Acquire"), 40),
                event(6, "TaskStateEntered", Some("Publish"), 5),
                event(7, "TaskFailed", Some("Publish"), 2),
                event(8, "ExecutionFailed", None, 2),
            ],
            definition: Some(DEFINITION.into()),
            after: 0,
        })),
        t0(),
    ));
}

#[test]
fn views_render_as_reviewed() {
    let mut a = app(false);
    insta::assert_snapshot!("pipelines_120x30", draw(&a, 120, 30));
    insta::assert_snapshot!("pipelines_80x24", draw(&a, 80, 24));
    a.handle(key('2'));
    insta::assert_snapshot!("reviews_120x30", draw(&a, 120, 30));
    a.handle(key('3'));
    insta::assert_snapshot!("executions_120x30", draw(&a, 120, 30));
    a.handle(key('4'));
    insta::assert_snapshot!("events_120x30", draw(&a, 120, 30));
    a.handle(key('5'));
    insta::assert_snapshot!("slo_reserved_80x24", draw(&a, 80, 24));
    let mut d = app(false);
    detail(&mut d);
    insta::assert_snapshot!("detail_120x30", draw(&d, 120, 30));
    d.handle(key('h'));
    insta::assert_snapshot!("detail_raw_120x30", draw(&d, 120, 30));
}

#[test]
fn dialogs_render_as_reviewed() {
    let mut a = app(false);
    a.handle(key('2'));
    a.handle(key('a'));
    insta::assert_snapshot!("approve_dialog", draw(&a, 100, 30));
    a.handle(code(KeyCode::Esc));
    a.handle(key('r'));
    insta::assert_snapshot!("reject_dialog", draw(&a, 100, 30));
    a.handle(code(KeyCode::Esc));
    a.handle(key('?'));
    insta::assert_snapshot!("help_dialog", draw(&a, 100, 60));
    a.handle(code(KeyCode::Esc));
    a.handle(key('v'));
    insta::assert_snapshot!("reveal_dialog", draw(&a, 100, 30));
    a.handle(code(KeyCode::Esc));
    a.handle(key('3'));
    a.handle(key('j'));
    a.handle(key('R'));
    insta::assert_snapshot!("redrive_confirm", draw(&a, 100, 30));
    a.handle(code(KeyCode::Esc));
    a.handle(key('/'));
    for c in "ACC-203".chars() {
        a.handle(key(c));
    }
    insta::assert_snapshot!("filter_input", draw(&a, 100, 30));
    let mut ro = app(true);
    ro.handle(key('2'));
    insta::assert_snapshot!("reviews_read_only", draw(&ro, 100, 24));
    let mut locked = app(false);
    locked.handle(AppEvent::Tick(t0() + Duration::minutes(11)));
    insta::assert_snapshot!("locked", draw(&locked, 100, 24));
}

/// Reveal the selected study's patient data with `reason`, as the audit log confirms it.
fn reveal(a: &mut App, reason: &str) -> Vec<Effect> {
    a.handle(key('v'));
    for c in reason.chars() {
        a.handle(key(c));
    }
    let effects = a.handle(code(KeyCode::Enter));
    if !effects.is_empty() {
        a.handle(AppEvent::Loaded(Loaded::Done { verb: "reveal-phi".into(), ok: 1, failed: vec![] }, a.now));
    }
    effects
}

#[test]
fn patient_data_is_masked_until_revealed_with_a_reason() {
    let mut a = app(false);
    let screen = draw(&a, 140, 30);
    assert!(!screen.contains("Testperson") && !screen.contains("SYN-000421") && !screen.contains("1961"), "{screen}");
    assert!(screen.contains("D•••  MRN S•••"), "{screen}");
    a.handle(key('v'));
    a.handle(code(KeyCode::Enter));
    assert!(a.dialog.is_some(), "a reason is required");
    for c in "stroke call".chars() {
        a.handle(key(c));
    }
    let effects = a.handle(code(KeyCode::Enter));
    assert_eq!(effects, vec![Effect::Mutate(Mutation::RevealPhi { reason: "stroke call".into(), arn: arn("ACC-20401") })]);
    assert!(!draw(&a, 140, 30).contains("Dana Testperson"), "nothing shows before the audit log has the reveal");
    a.handle(AppEvent::Loaded(Loaded::Done { verb: "reveal-phi".into(), ok: 1, failed: vec![] }, t0()));
    assert!(draw(&a, 140, 30).contains("Dana Testperson"));
    // Idle lock hides it again.
    a.handle(AppEvent::Tick(t0() + Duration::minutes(30)));
    assert!(a.locked && a.reveal.is_none());
    let screen = draw(&a, 140, 30);
    assert!(!screen.contains("Testperson") && !screen.contains("ACC-20418"), "locked screen shows no study data");
}

#[test]
fn a_reveal_needs_a_reason_of_substance_and_an_audit_row() {
    for thin in ["x", "asdf", "test", "test test test", "just testing"] {
        let mut a = app(false);
        assert!(reveal(&mut a, thin).is_empty(), "{thin:?} accepted");
        assert!(a.dialog.is_some(), "the dialog stays open for a better reason");
        assert!(draw(&a, 140, 30).contains("reason to reveal"), "the operator is told why");
    }
    // The audit log refused it: nothing shows.
    let mut a = app(false);
    a.handle(key('v'));
    for c in "consult with the referring physician".chars() {
        a.handle(key(c));
    }
    assert_eq!(a.handle(code(KeyCode::Enter)).len(), 1);
    a.handle(AppEvent::Loaded(Loaded::Done { verb: "reveal-phi".into(), ok: 0, failed: vec!["not done: audit".into()] }, t0()));
    assert!(a.reveal.is_none() && !draw(&a, 140, 30).contains("Testperson"));
}

#[test]
fn a_reveal_applies_to_the_selected_study_only_and_expires() {
    let mut a = app(false);
    let mut studies = a.studies.value.clone();
    studies[1].patient = Patient { name: "Robin Sampleton".into(), mrn: "SYN-000777".into(), birth_date: "1950-01-01".into() };
    a.handle(AppEvent::Loaded(Loaded::Studies(studies), t0()));
    // The first row (ACC-20391) is selected.
    assert_eq!(reveal(&mut a, "wrong-patient hold on this study").len(), 1);
    let screen = draw(&a, 140, 30);
    assert!(screen.contains("Dana Testperson"), "{screen}");
    assert!(!screen.contains("Sampleton") && !screen.contains("SYN-000777"), "another study stays masked: {screen}");
    assert!(screen.contains("PHI REVEALED: ACC-20401 — 5:00 left"), "{screen}");
    // Narrow terminal: the banner still shows.
    assert!(draw(&a, 80, 24).contains("PHI REVEALED: ACC-20401"), "{}", draw(&a, 80, 24));
    // The banner counts down; the operator keeps working so the idle lock does not fire.
    a.handle(key('j'));
    a.handle(AppEvent::Tick(t0() + Duration::seconds(28)));
    assert!(draw(&a, 140, 30).contains("PHI REVEALED: ACC-20401 — 4:32 left"));
    // The detail of another study stays masked.
    a.handle(key('3'));
    detail(&mut a);
    if let Some(e) = a.detail.value.execution.as_mut() {
        e.input = order_input("ACC-20391");
    }
    a.handle(key('i'));
    let screen = draw(&a, 140, 30);
    assert!(!screen.contains("Testperson") && screen.contains("PHI REVEALED: ACC-20401"), "{screen}");
    a.handle(key('i'));
    // Expiry (configurable, default 5 minutes) hides it again.
    a.handle(key('1'));
    a.handle(AppEvent::Tick(t0() + Duration::minutes(3)));
    a.handle(key('k'));
    a.handle(AppEvent::Tick(t0() + Duration::minutes(5) + Duration::seconds(1)));
    assert!(a.reveal.is_none());
    let screen = draw(&a, 140, 30);
    assert!(!screen.contains("Testperson") && !screen.contains("PHI REVEALED"), "{screen}");
    // A shorter configured reveal.
    let mut b = app(false);
    b.settings.reveal_for = Duration::minutes(1);
    reveal(&mut b, "stroke call from the ED");
    b.handle(key('j'));
    b.handle(key('k'));
    b.handle(AppEvent::Tick(t0() + Duration::seconds(61)));
    assert!(b.reveal.is_none());
    // v on the revealed study hides it at once.
    let mut c = app(false);
    reveal(&mut c, "stroke call from the ED");
    assert!(c.revealed(&arn("ACC-20401")) && !c.revealed(&arn("ACC-20418")));
    c.handle(key('v'));
    assert!(c.reveal.is_none() && c.dialog.is_none());
}

/// The synthetic patient as the demo's orders carry it.
fn order_input(acc: &str) -> String {
    json!({"accession": acc, "workflow": "scheduled", "modality": "CT",
        "patient": {"name": "Dana Testperson", "given": "Dana", "family": "Testperson", "mrn": "SYN-000421", "birthDate": "1961-04-02"}})
    .to_string()
}

const SECRETS: [&str; 4] = ["Dana", "Testperson", "SYN-000421", "1961-04-02"];

#[test]
fn the_input_view_masks_given_and_family_too() {
    let mut a = app(false);
    detail(&mut a);
    if let Some(e) = a.detail.value.execution.as_mut() {
        e.input = order_input("ACC-20391");
        e.output = Some(order_input("ACC-20391"));
    }
    a.handle(key('i'));
    let screen = draw(&a, 120, 40);
    for s in SECRETS {
        assert!(!screen.contains(s), "{s} shows: {screen}");
    }
    assert!(screen.contains("\"given\": \"D•••\"") && screen.contains("\"family\": \"T•••\""), "{screen}");
    reveal(&mut a, "consult with the referring physician");
    assert!(draw(&a, 120, 40).contains("\"given\": \"Dana\""));
}

#[test]
fn the_raw_history_masks_names_mrns_and_birth_dates() {
    let mut a = app(false);
    detail(&mut a);
    let input = order_input("ACC-20391");
    if let Some(e) = a.detail.value.execution.as_mut() {
        e.input = input.clone();
    }
    let h = &mut a.detail.value.history;
    h[0].details = json!({"input": input, "inputDetails": {"truncated": false}, "roleArn": "arn:aws:iam::000000000000:role/x"});
    h[1].details = json!({"name": "Schedule", "input": input});
    h[2].details = json!({"name": "Schedule", "output": json!({"order": serde_json::from_str::<serde_json::Value>(&input).expect("json")}).to_string()});
    h[6].details = json!({"error": "Archive.Rejected", "cause": "no study for Testperson, Dana (SYN-000421)"});
    a.handle(key('h'));
    let screen = draw(&a, 400, 30);
    for s in SECRETS {
        assert!(!screen.contains(s), "{s} shows: {screen}");
    }
    assert!(screen.contains("\"name\":\"Schedule\""), "state names are not patient data: {screen}");
    assert!(screen.contains("Archive.Rejected"));
    insta::assert_snapshot!("detail_raw_phi_340x14", draw(&a, 340, 14));
    reveal(&mut a, "consult with the referring physician");
    assert!(draw(&a, 400, 30).contains("SYN-000421"), "revealed for this study");
}

#[test]
fn review_drafts_lose_the_studys_identifiers() {
    let mut a = app(false);
    let mut reviews = a.reviews.value.clone();
    reviews[0].execution_arn = arn("ACC-20391");
    reviews[0].draft = "CT head for Dana Testperson: no acute haemorrhage".into();
    a.handle(AppEvent::Loaded(Loaded::Reviews(reviews), t0()));
    a.handle(key('2'));
    let screen = draw(&a, 140, 30);
    assert!(!screen.contains("Testperson") && !screen.contains("Dana"), "{screen}");
    assert!(screen.contains("no acute haemorrhage"), "{screen}");
    // Revealing the selected review's study shows its draft whole.
    reveal(&mut a, "checking the draft against the order");
    assert!(draw(&a, 140, 30).contains("Dana Testperson: no acute"));
}

#[test]
fn approving_asks_first_and_sends_success_for_the_selected_review() {
    let mut a = app(false);
    a.handle(key('2'));
    assert!(a.handle(key('a')).is_empty(), "nothing happens before confirmation");
    let effects = a.handle(code(KeyCode::Enter));
    let [Effect::Mutate(Mutation::Approve { tokens, output, .. })] = effects.as_slice() else { panic!("{effects:?}") };
    assert_eq!(tokens, &vec![review("ACC-20418", Priority::Stat, 0, 0).token]);
    assert!(output.contains("dr.lee"));
    // Invalid output JSON keeps the dialog open with the error.
    a.handle(key('a'));
    a.handle(code(KeyCode::Backspace));
    assert!(a.handle(code(KeyCode::Enter)).is_empty());
    assert!(draw(&a, 100, 30).contains("not valid JSON"));
}

#[test]
fn bulk_reject_uses_marked_rows_and_a_reason_code() {
    let mut a = app(false);
    a.handle(key('2'));
    a.handle(key(' '));
    a.handle(key(' '));
    a.handle(key('r'));
    a.handle(code(KeyCode::Down));
    for c in "left side".chars() {
        a.handle(key(c));
    }
    let effects = a.handle(code(KeyCode::Enter));
    let [Effect::Mutate(Mutation::Reject { tokens, error, cause, .. })] = effects.as_slice() else { panic!("{effects:?}") };
    assert_eq!(tokens.len(), 2);
    assert_eq!(error, "Review.WrongPatient");
    assert!(cause.ends_with("left side"), "{cause}");
}

#[test]
fn redrive_confirms_with_the_count_and_read_only_refuses() {
    let mut a = app(false);
    a.handle(key('3'));
    a.handle(key(' '));
    a.handle(key(' '));
    a.handle(key('R'));
    let screen = draw(&a, 100, 30);
    // Only the FAILED one can be redriven: the RUNNING one is named as left out.
    assert!(screen.contains("Redrive 1 execution(s)") && screen.contains("ACC-20418: cannot be redriven: it is RUNNING"), "{screen}");
    let effects = a.handle(key('y'));
    assert!(matches!(effects.as_slice(), [Effect::Mutate(Mutation::Redrive { arns })] if *arns == vec![arn("ACC-20391")]), "{effects:?}");
    let mut ro = app(true);
    ro.handle(key('3'));
    assert!(ro.handle(key('R')).is_empty());
    assert!(ro.dialog.is_none());
    assert!(draw(&ro, 100, 30).contains("read-only: redrive is disabled"));
}

#[test]
fn navigation_filters_and_commands() {
    let mut a = app(false);
    assert_eq!(a.view, View::Pipelines);
    a.handle(code(KeyCode::Tab));
    assert_eq!(a.view, View::Reviews);
    a.handle(key('G'));
    assert_eq!(a.selected(), 2);
    a.handle(key('g'));
    assert_eq!(a.selected(), 0);
    a.handle(key('/'));
    for c in "!STAT".chars() {
        a.handle(key(c));
    }
    a.handle(code(KeyCode::Enter));
    assert_eq!(a.visible_reviews().len(), 2, "! inverts the filter");
    a.handle(key('/'));
    a.handle(key('('));
    a.handle(code(KeyCode::Enter));
    assert!(a.dialog.is_some(), "an invalid regex keeps the input open");
    a.handle(code(KeyCode::Esc));
    a.handle(key(':'));
    for c in "study acc-20391".chars() {
        a.handle(key(c));
    }
    let effects = a.handle(code(KeyCode::Enter));
    assert_eq!(a.view, View::Executions);
    assert_eq!(a.detail_arn.as_deref(), Some(arn("ACC-20391").as_str()));
    assert!(effects.contains(&Effect::Load(lightbox::tui::app::Request::Detail(arn("ACC-20391"), 0))));
    a.handle(code(KeyCode::Esc));
    assert!(a.detail_arn.is_none(), "Esc goes back");
    a.handle(key(':'));
    for c in "executions failed".chars() {
        a.handle(key(c));
    }
    a.handle(code(KeyCode::Enter));
    assert_eq!(a.status_filter, Some(ExecutionStatus::Failed));
    assert!(a.handle(key('q')).contains(&Effect::Quit));
}

#[test]
fn rendering_never_panics_at_any_size() {
    let mut a = app(false);
    for v in ['1', '2', '3', '4', '5', '6'] {
        a.handle(key(v));
        for (w, h) in [(1, 1), (10, 3), (40, 10), (79, 23), (80, 24), (200, 60)] {
            draw(&a, w, h);
        }
    }
    detail(&mut a);
    a.handle(key('?'));
    draw(&a, 20, 5);
}

#[test]
fn find_asks_the_backend_when_the_study_is_not_on_screen() {
    let mut a = app(false);
    a.handle(key(':'));
    for c in "study ACC-99999".chars() {
        a.handle(key(c));
    }
    let effects = a.handle(code(KeyCode::Enter));
    assert_eq!(effects, vec![Effect::Load(lightbox::tui::app::Request::Find("ACC-99999".into()))]);
    a.handle(AppEvent::Loaded(Loaded::Found { needle: "ACC-99999".into(), arn: Some(arn("ACC-99999")) }, t0()));
    assert_eq!(a.detail_arn.as_deref(), Some(arn("ACC-99999").as_str()));
    a.handle(AppEvent::Loaded(Loaded::Found { needle: "nope".into(), arn: None }, t0()));
    assert!(draw(&a, 100, 24).contains("no study or execution \"nope\""));
}

#[test]
fn detail_shows_input_and_output_with_patient_data_masked() {
    let mut a = app(false);
    detail(&mut a);
    if let Some(e) = a.detail.value.execution.as_mut() {
        e.input = json!({"accession": "ACC-20391", "patient": {"name": "Dana Testperson", "mrn": "SYN-000421", "birthDate": "1961-04-02"}})
            .to_string();
    }
    a.handle(key('i'));
    let screen = draw(&a, 120, 30);
    assert!(screen.contains("Input") && screen.contains("ACC-20391"), "{screen}");
    assert!(!screen.contains("Testperson") && !screen.contains("1961"), "{screen}");
    insta::assert_snapshot!("detail_io_120x30", screen);
}

#[test]
fn status_cycle_reaches_redriven_and_back_to_all() {
    let mut a = app(false);
    a.handle(key('3'));
    let mut seen = vec![];
    for _ in 0..7 {
        let effects = a.handle(key('s'));
        let req = effects.iter().find_map(|e| match e {
            Effect::Load(lightbox::tui::app::Request::Executions(s, r)) => Some((*s, *r)),
            _ => None,
        });
        seen.push(req.expect("a reload"));
    }
    assert_eq!(seen[5], (None, true), "redriven comes after SUCCEEDED: {seen:?}");
    assert_eq!(seen[6], (None, false));
    assert!(seen.contains(&(Some(ExecutionStatus::TimedOut), false)));
}

#[test]
fn long_histories_load_a_page_at_a_time_as_you_scroll() {
    use lightbox::tui::app::{HISTORY_PAGE, Request};
    let mut a = app(false);
    a.handle(key('3'));
    a.open_execution(arn("ACC-BIG"));
    let page = |after: i64| Detail {
        execution: Some(execution("ACC-BIG", ExecutionStatus::Running, None)),
        history: (after + 1..=after + HISTORY_PAGE as i64).map(|i| event(i, "TaskScheduled", Some("Map"), 1)).collect(),
        definition: if after == 0 { Some(DEFINITION.into()) } else { None },
        after,
    };
    a.handle(AppEvent::Loaded(Loaded::Detail(Box::new(page(0))), t0()));
    assert_eq!(a.detail.value.history.len(), HISTORY_PAGE);
    let effects = a.handle(key('G'));
    assert_eq!(
        effects,
        vec![Effect::Load(Request::Detail(arn("ACC-BIG"), HISTORY_PAGE as i64))],
        "scrolling to the end asks for the next page"
    );
    a.handle(AppEvent::Loaded(Loaded::Detail(Box::new(page(HISTORY_PAGE as i64))), t0()));
    assert_eq!(a.detail.value.history.len(), 2 * HISTORY_PAGE);
    assert!(a.detail.value.definition.is_some(), "later pages keep the definition");
    // A stale page (not continuing what is loaded) is ignored.
    a.handle(AppEvent::Loaded(Loaded::Detail(Box::new(page(HISTORY_PAGE as i64))), t0()));
    assert_eq!(a.detail.value.history.len(), 2 * HISTORY_PAGE);
    let screen = draw(&a, 120, 30);
    assert!(screen.contains("2000 events"), "{screen}");
}

#[test]
fn claiming_asks_first_and_names_the_claimer() {
    let mut a = app(false);
    a.handle(key('2'));
    assert!(a.handle(key('c')).is_empty(), "claim waits for confirmation");
    assert!(draw(&a, 100, 30).contains("Claim ACC-20418"));
    let effects = a.handle(key('y'));
    let [Effect::Mutate(Mutation::Claim { claim: true, by, .. })] = effects.as_slice() else { panic!("{effects:?}") };
    assert_eq!(by, "dr.lee");
}

fn reviews_loaded(a: &mut App, rows: Vec<Review>) {
    a.handle(AppEvent::Loaded(Loaded::Reviews(rows), t0()));
}

#[test]
fn the_selection_follows_the_review_when_new_ones_arrive_above_and_the_dialog_acts_on_what_it_named() {
    let mut a = app(false);
    a.handle(key('2'));
    a.handle(key('j'));
    let chosen = review("ACC-20377", Priority::Urgent, 41, 79);
    assert_eq!(a.visible_reviews()[a.selected()].token, chosen.token);
    // Two STAT reviews arrive: they sort above the selected one.
    reviews_loaded(
        &mut a,
        vec![
            review("ACC-30001", Priority::Stat, 1, 10),
            review("ACC-30002", Priority::Stat, 2, 10),
            review("ACC-20418", Priority::Stat, 9, 6),
            chosen.clone(),
            review("ACC-20299", Priority::Routine, 300, -7),
        ],
    );
    assert_eq!(a.visible_reviews()[a.selected()].accession, "ACC-20377", "the cursor stays on the study the operator chose");
    assert!(a.handle(key('a')).is_empty());
    assert!(draw(&a, 100, 30).contains("Approve ACC-20377"));
    // A refresh while the dialog is open reorders everything and drops the chosen row.
    reviews_loaded(&mut a, vec![review("ACC-30003", Priority::Stat, 1, 10), review("ACC-30001", Priority::Stat, 1, 10)]);
    let effects = a.handle(code(KeyCode::Enter));
    let [Effect::Mutate(Mutation::Approve { tokens, .. })] = effects.as_slice() else { panic!("{effects:?}") };
    assert_eq!(tokens, &vec![chosen.token], "the confirmed action names the original review");
}

#[test]
fn when_the_selected_item_is_gone_the_console_says_so_and_acts_on_nothing() {
    let mut a = app(false);
    a.handle(key('3'));
    a.handle(key('j'));
    assert_eq!(a.visible_executions()[a.selected()].name, "ACC-20391");
    // New executions above the selected one: it keeps the selection.
    a.handle(AppEvent::Loaded(
        Loaded::Executions(vec![
            execution("ACC-40001", ExecutionStatus::Running, None),
            execution("ACC-40002", ExecutionStatus::Running, None),
            execution("ACC-20418", ExecutionStatus::Running, None),
            execution("ACC-20391", ExecutionStatus::Failed, Some("States.Timeout")),
        ]),
        t0(),
    ));
    assert_eq!(a.visible_executions()[a.selected()].name, "ACC-20391");
    a.handle(key('R'));
    let screen = draw(&a, 100, 30);
    assert!(screen.contains("Redrive 1 execution(s)") && screen.contains("ACC-20391: resumes at Publish"), "{screen}");
    a.handle(code(KeyCode::Esc));
    // It leaves the view (redriven elsewhere, filtered by status): say so, move to a neighbour.
    a.handle(AppEvent::Loaded(
        Loaded::Executions(vec![
            execution("ACC-40001", ExecutionStatus::Running, None),
            execution("ACC-40002", ExecutionStatus::Running, None),
            execution("ACC-20418", ExecutionStatus::Running, None),
        ]),
        t0(),
    ));
    let screen = draw(&a, 120, 30);
    assert!(screen.contains("the selected execution ACC-20391 is no longer in this view"), "{screen}");
    assert_eq!(a.visible_executions()[a.selected()].name, "ACC-20418");
    assert!(a.dialog.is_none());
    // Filtering keeps the selection on the same item where it still shows.
    a.handle(key('k'));
    assert_eq!(a.visible_executions()[a.selected()].name, "ACC-40002");
    a.handle(key('/'));
    for c in "4000".chars() {
        a.handle(key(c));
    }
    a.handle(code(KeyCode::Enter));
    assert_eq!(a.visible_executions()[a.selected()].name, "ACC-40002");
    // Marks are by identity too: a mark stays on its execution when rows arrive above it.
    a.handle(key(' '));
    a.handle(code(KeyCode::Esc));
    a.handle(AppEvent::Loaded(
        Loaded::Executions(vec![
            execution("ACC-50000", ExecutionStatus::Running, None),
            execution("ACC-40001", ExecutionStatus::Running, None),
            execution("ACC-40002", ExecutionStatus::Running, None),
        ]),
        t0(),
    ));
    a.handle(key('x'));
    let effects = a.handle(key('y'));
    assert!(matches!(effects.as_slice(), [Effect::Mutate(Mutation::Stop { arns, .. })] if *arns == vec![arn("ACC-40002")]), "{effects:?}");
}

#[test]
fn answering_a_review_claimed_by_someone_else_needs_an_override_with_a_reason() {
    let mut a = app(false);
    a.handle(key('2'));
    let mut claimed = review("ACC-20418", Priority::Stat, 9, 6);
    claimed.claimed_by = Some("dr.kim".into());
    reviews_loaded(&mut a, vec![claimed.clone(), review("ACC-20377", Priority::Urgent, 41, 79)]);
    assert!(a.handle(key('e')).is_empty());
    let screen = draw(&a, 100, 30);
    assert!(screen.contains("claimed by dr.kim") && screen.contains("Override a claim"), "{screen}");
    for c in "sick".chars() {
        a.handle(key(c));
    }
    assert!(a.handle(code(KeyCode::Enter)).is_empty());
    assert!(matches!(a.dialog, Some(lightbox::tui::app::Dialog::Override { .. })), "a reason of substance is required");
    for c in " today, STAT".chars() {
        a.handle(key(c));
    }
    a.handle(code(KeyCode::Enter));
    let screen = draw(&a, 100, 30);
    assert!(screen.contains("OVERRIDES dr.kim's claim on ACC-20418"), "{screen}");
    let effects = a.handle(key('y'));
    let [Effect::Mutate(Mutation::Escalate { tokens, acting, .. })] = effects.as_slice() else { panic!("{effects:?}") };
    assert_eq!(tokens, &vec![claimed.token]);
    assert_eq!(acting.user.as_deref(), Some("dr.lee"));
    assert_eq!(acting.override_reason.as_deref(), Some("sick today, STAT"));
    // Without an override the action carries none: the engine refuses it if the claim stands.
    a.handle(key('j'));
    a.handle(key('a'));
    let effects = a.handle(code(KeyCode::Enter));
    let [Effect::Mutate(Mutation::Approve { acting, .. })] = effects.as_slice() else { panic!("{effects:?}") };
    assert_eq!(acting.override_reason, None);
}

#[test]
fn escalating_at_the_senior_gate_warns_that_the_execution_fails() {
    let mut a = app(false);
    a.handle(key('2'));
    let gate = std::sync::Arc::new(Definition::parse_str(lightbox::sim::AI_REVIEW_GATE).expect("demo definition"));
    let mut senior = review("ACC-20418", Priority::Stat, 9, 6);
    senior.state = "SeniorReview".into();
    senior.gate = GateKind::SeniorRead;
    let first = review("ACC-20377", Priority::Urgent, 41, 79);
    a.handle(AppEvent::Loaded(Loaded::Definitions([(arn("ACC-20418"), gate.clone()), (arn("ACC-20377"), gate)].into()), t0()));
    reviews_loaded(&mut a, vec![senior, first]);
    a.handle(key('e'));
    let screen = draw(&a, 100, 30);
    assert!(screen.contains("nothing catches Review.Escalated at SeniorReview") && screen.contains("FAILS"), "{screen}");
    assert!(!screen.contains("senior reader"), "no promise the definition does not keep: {screen}");
    insta::assert_snapshot!("escalate_senior_confirm", screen);
    a.handle(code(KeyCode::Esc));
    // Bulk: every item and every gate with its own consequence.
    a.handle(key(' '));
    a.handle(key(' '));
    a.handle(key('e'));
    let screen = draw(&a, 100, 30);
    assert!(screen.contains("Escalate 2 reviews"), "{screen}");
    assert!(screen.contains("at SeniorReview (1)") && screen.contains("at RadiologistReview (1)"), "{screen}");
    assert!(screen.contains("routes Review.Escalated to SeniorReview"), "{screen}");
    insta::assert_snapshot!("escalate_bulk_confirm", screen);
}

#[test]
fn a_bulk_dialog_lists_every_item_and_scrolls_to_the_last() {
    let mut a = app(false);
    a.handle(key('2'));
    reviews_loaded(&mut a, (0..30).map(|i| review(&format!("ACC-6{i:04}"), Priority::Routine, 60 - i, 60)).collect());
    for _ in 0..30 {
        a.handle(key(' '));
    }
    a.handle(key('e'));
    let first = draw(&a, 100, 30);
    assert!(first.contains("Escalate 30 reviews") && first.contains("scroll"), "{first}");
    assert!(!first.contains("ACC-60029"), "{first}");
    for _ in 0..4 {
        a.handle(code(KeyCode::PageDown));
    }
    let last = draw(&a, 100, 30);
    assert!(last.contains("ACC-60029") && last.contains("y confirm"), "{last}");
    let effects = a.handle(key('y'));
    assert!(matches!(effects.as_slice(), [Effect::Mutate(Mutation::Escalate { tokens, .. })] if tokens.len() == 30), "{effects:?}");
}

#[test]
fn a_review_that_leaves_because_it_was_answered_here_moves_on_quietly() {
    let mut a = app(false);
    a.handle(key('2'));
    a.handle(key('a'));
    a.handle(code(KeyCode::Enter));
    a.handle(AppEvent::Loaded(Loaded::Done { verb: "approve".into(), ok: 1, failed: vec![] }, t0()));
    reviews_loaded(&mut a, vec![review("ACC-20377", Priority::Urgent, 41, 79), review("ACC-20299", Priority::Routine, 300, -7)]);
    assert_eq!(a.message.as_ref().map(|m| m.0.as_str()), Some("approve: 1 done"));
    assert_eq!(a.visible_reviews()[a.selected()].accession, "ACC-20377");
    // One answered elsewhere is announced.
    reviews_loaded(&mut a, vec![review("ACC-20299", Priority::Routine, 300, -7)]);
    let m = a.message.as_ref().map(|m| m.0.clone()).unwrap_or_default();
    assert!(m.contains("review of ACC-20377 at RadiologistReview is no longer in this view; now on review of ACC-20299"), "{m}");
}

/// An error is free text (an `ErrorPath` can name the patient): the Executions ERROR
/// column, the Events view and the detail header mask it, in any letter case.
#[test]
fn errors_naming_the_patient_are_masked() {
    let mut a = app(false);
    let mut rows = a.executions.value.clone();
    rows[1].error = Some("Dana Testperson".into());
    a.handle(AppEvent::Loaded(Loaded::Executions(rows), t0()));
    let mut ev = event(7, "TaskFailed", Some("Publish"), 2);
    ev.details = json!({"name": "Publish", "error": "DANA TESTPERSON"});
    a.handle(AppEvent::Loaded(
        Loaded::Events(vec![FeedEvent { seq: 3, execution_arn: arn("ACC-20391"), event: ev, state: Some("Publish".into()) }]),
        t0(),
    ));
    a.handle(key('3'));
    let screen = draw(&a, 160, 30);
    assert!(!screen.contains("Testperson") && screen.contains("D•••"), "executions view: {screen}");
    a.handle(key('4'));
    let screen = draw(&a, 160, 30);
    assert!(screen.contains("TaskFailed"), "the events view: {screen}");
    assert!(!screen.to_lowercase().contains("testperson") && screen.contains("D•••"), "events view: {screen}");
    detail(&mut a);
    if let Some(e) = a.detail.value.execution.as_mut() {
        e.error = Some("Dana Testperson".into());
    }
    a.detail.value.history[6].details = json!({"name": "Publish", "error": "Dana Testperson"});
    let screen = draw(&a, 160, 30);
    assert!(!screen.contains("Testperson") && screen.contains("D••• at Publish"), "detail: {screen}");
    reveal(&mut a, "consult with the referring physician");
    assert!(draw(&a, 160, 30).contains("Dana Testperson at Publish"));
}

// ----- tables and the / filter -----

/// The app with rows that test every column: an INPATIENT study at another site, an ABORTED
/// one, a failed execution whose cause names the patient, a long execution name, a senior
/// read and a reconciliation hold, and failed events.
fn busy() -> App {
    let mut a = app(false);
    let mut studies = a.studies.value.clone();
    let mut inpatient = study("ACC-20555", Priority::Urgent, Some(Stage::Arrived), None, 7);
    inpatient.patient_class = "INPATIENT".into();
    inpatient.site = "SOUTH".into();
    inpatient.state = "Arrive".into();
    inpatient.machine = "encounter-imaging".into();
    let mut aborted = study("ACC-20556", Priority::Routine, Some(Stage::Scheduled), Some(Exception::Aborted), 3);
    aborted.status = ExecutionStatus::Aborted;
    aborted.cause = Some("stopped by dr.kim: duplicate order for Dana Testperson".into());
    studies.push(inpatient);
    studies.push(aborted);
    a.handle(AppEvent::Loaded(Loaded::Studies(studies), t0()));
    let mut rows = a.executions.value.clone();
    let mut archive = execution("ACC-20391", ExecutionStatus::Failed, Some("Archive.Unavailable"));
    archive.cause = Some("Reschedule or cancel the order: the archive refused the study of Dana Testperson (SYN-000421)".into());
    rows[1] = archive;
    let mut long = execution("ACC-20777-redriven-after-the-archive-outage", ExecutionStatus::Failed, Some("Clearinghouse.Unavailable"));
    long.arn = "arn:aws:states:us-east-1:000000000000:execution:report-publication:ACC-20777-redriven-after-the-archive-outage".into();
    long.current_state = Some("PublishToRegionalArchiveAndNotifyReferrer".into());
    rows.push(long);
    a.handle(AppEvent::Loaded(Loaded::Executions(rows), t0()));
    let mut senior = review("ACC-20401", Priority::Stat, 12, 20);
    senior.state = "SeniorReview".into();
    senior.gate = GateKind::SeniorRead;
    senior.reviewer_group = "on-call-senior".into();
    senior.entered = t0() - Duration::minutes(95);
    let mut hold = review("ACC-20555", Priority::Urgent, 30, 90);
    hold.state = "HoldForReconciliation".into();
    hold.gate = GateKind::Reconciliation;
    hold.draft = String::new();
    hold.study = "MR knee".into();
    let mut reviews = a.reviews.value.clone();
    reviews.insert(1, senior);
    reviews.push(hold);
    a.handle(AppEvent::Loaded(Loaded::Reviews(reviews), t0()));
    let mut failed = event(9, "TaskFailed", None, 1);
    failed.details = json!({"error": "Archive.Unavailable", "cause": "archive down for Dana Testperson"});
    a.handle(AppEvent::Loaded(
        Loaded::Events(vec![FeedEvent { seq: 3, execution_arn: arn("ACC-20391"), event: failed, state: Some("PublishToArchive".into()) }]),
        t0(),
    ));
    a
}

/// Type a filter in the current view.
fn filter(a: &mut App, text: &str) {
    a.handle(key('/'));
    // The input opens with the view's current filter: clear it first.
    while matches!(&a.dialog, Some(lightbox::tui::app::Dialog::Input { text, .. }) if !text.is_empty()) {
        a.handle(code(KeyCode::Backspace));
    }
    for c in text.chars() {
        a.handle(key(c));
    }
    a.handle(code(KeyCode::Enter));
}

fn accessions(a: &App) -> Vec<String> {
    a.visible_studies().iter().map(|s| s.accession.clone()).collect()
}

#[test]
fn tables_render_as_reviewed_at_80x24_and_120x40() {
    let mut a = busy();
    for (v, name) in [('1', "pipelines"), ('2', "reviews"), ('3', "executions"), ('4', "events")] {
        a.handle(key(v));
        insta::assert_snapshot!(format!("table_{name}_80x24"), draw(&a, 80, 24));
        insta::assert_snapshot!(format!("table_{name}_120x40"), draw(&a, 120, 40));
    }
}

/// Every cut ends with `…`: the long execution name, its machine and state at 80 columns.
#[test]
fn every_truncation_ends_with_an_ellipsis() {
    let mut a = busy();
    a.handle(key('3'));
    let screen = draw(&a, 80, 24);
    let row = screen.lines().find(|l| l.contains("ACC-20777")).expect("the long row");
    assert!(row.contains("report-pu… ACC-20777-redriven-… PublishToRegi…"), "the machine is cut first, all with `…`: {row}");
    assert!(row.contains("Clearin") && row.trim_end_matches('│').ends_with('…'), "{row}");
    assert!(screen.lines().nth(3).is_some_and(|l| l.contains("ERROR")), "{screen}");
    a.handle(key('2'));
    let screen = draw(&a, 80, 24);
    assert!(screen.contains("\"No acute") && screen.lines().any(|l| l.contains("\"No") && l.contains('…')), "{screen}");
    // At 80 columns the stage names stay whole.
    a.handle(key('1'));
    let screen = draw(&a, 80, 24);
    for s in Stage::ALL {
        assert!(screen.contains(s.as_str()), "{s:?} cut: {screen}");
    }
}

/// Seen: `/Archive` on failed executions whose ERROR column reads `Archive.Unavailable` gave 0
/// rows; `/INPATIENT` on Pipelines gave 0 rows. The filter matches every column the table
/// shows, uncut, and the cause, the full error and the execution's name and ARN.
#[test]
fn the_filter_matches_every_column_and_the_cause() {
    let mut a = busy();
    for (text, want) in [
        ("INPATIENT", vec!["ACC-20555"]),
        ("SOUTH", vec!["ACC-20555"]),
        ("^URGENT$", vec!["ACC-20377", "ACC-20555"]),
        ("aborted", vec!["ACC-20556"]),
        ("publish failed", vec!["ACC-20391"]),
        ("^Arrive$", vec!["ACC-20555"]),
        ("duplicate order", vec!["ACC-20556"]),
        ("!CT", vec![]),
    ] {
        filter(&mut a, text);
        assert_eq!(accessions(&a), want, "/{text} on Pipelines");
    }
    a.handle(key('3'));
    let names = |a: &App| a.visible_executions().iter().map(|e| e.name.clone()).collect::<Vec<_>>();
    for (text, want) in [
        ("Archive", vec!["ACC-20391", "ACC-20777-redriven-after-the-archive-outage"]),
        ("Archive\\.Unavailable", vec!["ACC-20391"]),
        ("reschedule or cancel", vec!["ACC-20391"]),
        ("report-publication", vec!["ACC-20777-redriven-after-the-archive-outage"]),
        ("NotifyReferrer$", vec!["ACC-20777-redriven-after-the-archive-outage"]),
        ("^SUCCEEDED$", vec!["ACC-20300"]),
        ("!FAILED", vec!["ACC-20418", "ACC-20300"]),
    ] {
        filter(&mut a, text);
        assert_eq!(names(&a), want, "/{text} on Executions");
    }
    a.handle(key('2'));
    let reviews = |a: &App| a.visible_reviews().iter().map(|r| r.accession.clone()).collect::<Vec<_>>();
    for (text, want) in [
        ("senior read", vec!["ACC-20401"]),
        ("recon\\. hold", vec!["ACC-20555"]),
        ("HoldForReconciliation", vec!["ACC-20555"]),
        ("on-call-senior", vec!["ACC-20401"]),
        ("MR knee", vec!["ACC-20555"]),
        ("overdue", vec!["ACC-20299"]),
    ] {
        filter(&mut a, text);
        assert_eq!(reviews(&a), want, "/{text} on Reviews");
    }
    a.handle(key('4'));
    let events = |a: &App| a.visible_events().iter().map(|e| e.seq).collect::<Vec<_>>();
    for (text, want) in [("PublishToArchive", vec![3]), ("RadiologistReview", vec![2]), ("archive down", vec![3]), ("Unavailable", vec![3])]
    {
        filter(&mut a, text);
        assert_eq!(events(&a), want, "/{text} on Events");
    }
}

/// A filter is no oracle for masked patient data: the MRN, name and birth date match nothing
/// until the study is revealed, in the patient column and in free text (causes) alike.
#[test]
fn masked_patient_data_does_not_match_a_filter() {
    let mut a = busy();
    for text in ["000421", "Testperson", "1961", "SYN-"] {
        filter(&mut a, text);
        assert_eq!(accessions(&a), Vec::<String>::new(), "/{text} on masked Pipelines");
    }
    filter(&mut a, "");
    reveal(&mut a, "wrong-patient hold on this study");
    filter(&mut a, "000421");
    assert_eq!(accessions(&a), vec!["ACC-20401"], "the revealed study only");
    a.handle(key('3'));
    for text in ["Testperson", "000421"] {
        filter(&mut a, text);
        assert!(a.visible_executions().is_empty(), "/{text} on the masked cause");
    }
    filter(&mut a, "D•••");
    assert_eq!(a.visible_executions().len(), 1, "the cause as it shows, masked");
    // An event of an execution whose patient is not loaded: its cause is not searched at all.
    let mut ev = event(11, "TaskFailed", None, 1);
    ev.details = json!({"error": "Archive.Unavailable", "cause": "no study for Robin Sampleton"});
    let stranger = "arn:aws:states:us-east-1:000000000000:execution:scheduled-imaging:ACC-99999".to_string();
    a.handle(AppEvent::Loaded(Loaded::Events(vec![FeedEvent { seq: 9, execution_arn: stranger, event: ev, state: None }]), t0()));
    a.handle(key('4'));
    filter(&mut a, "Sampleton");
    assert!(a.visible_events().is_empty(), "unknown identifiers: the cause is not searched");
    filter(&mut a, "archive down");
    assert_eq!(a.visible_events().len(), 1, "a known study's cause is searched, masked");
}

/// Seen: Exceptions said `failed 3` while the header said `failed 2`; ABORTED studies showed
/// as `failed`. One definition (`ops::Ending`) counts both.
#[test]
fn the_header_and_the_exceptions_panel_count_alike() {
    use lightbox::backend::Pulse;
    use lightbox::ops::project::Study;
    let rows: Vec<ExecutionRow> = [
        ("ACC-1", ExecutionStatus::Failed, Some("States.TaskFailed")),
        ("ACC-2", ExecutionStatus::TimedOut, Some("States.Timeout")),
        ("ACC-3", ExecutionStatus::Aborted, None),
        ("ACC-4", ExecutionStatus::Running, None),
    ]
    .into_iter()
    .map(|(n, st, e)| {
        let mut r = execution(n, st, e);
        r.current_state = Some("Acquire".into());
        r
    })
    .collect();
    let map = lightbox::sim::stage_map();
    let studies: Vec<Study> = rows.iter().filter_map(|r| Study::from_execution(r, &map)).collect();
    assert_eq!(studies[2].exception, Some(Exception::Aborted), "an ABORTED study is aborted");
    let mut pulse = Pulse::default();
    for r in &rows {
        pulse.add_status(r.status, 1);
    }
    let mut a = app(false);
    a.handle(AppEvent::Loaded(Loaded::Pulse(pulse), t0()));
    a.handle(AppEvent::Loaded(Loaded::Studies(studies), t0()));
    let screen = draw(&a, 120, 30);
    let header = screen.lines().next().unwrap_or_default();
    assert!(header.contains("failed 2") && header.contains("aborted 1"), "{header}");
    let panel: Vec<&str> = screen.lines().filter_map(|l| l.split("││").nth(1)).collect();
    assert!(panel.iter().any(|l| l.contains("failed") && l.trim_end_matches('│').ends_with(" 2")), "{panel:?}");
    assert!(panel.iter().any(|l| l.contains("aborted") && l.trim_end_matches('│').ends_with(" 1")), "{panel:?}");
    let ex = draw(&a, 80, 24);
    assert!(ex.contains("failed 2") && ex.contains("aborted 1"), "{ex}");
}

/// The execution name is always on screen at 80 columns: the breadcrumb cuts the machine first.
#[test]
fn the_breadcrumb_keeps_the_execution_name_at_80_columns() {
    let mut a = busy();
    a.handle(key('3'));
    let long = "arn:aws:states:us-east-1:000000000000:execution:report-publication:ACC-20777-redriven-after-the-archive-outage";
    a.open_execution(long.into());
    let screen = draw(&a, 80, 24);
    let crumb = screen.lines().nth(1).unwrap_or_default();
    assert!(crumb.contains("ACC-20777-redriven-after-the-archive-outage"), "{crumb}");
    insta::assert_snapshot!("detail_breadcrumb_80x24", screen);
    detail(&mut a);
    let crumb = draw(&a, 80, 24).lines().nth(1).unwrap_or_default().to_string();
    assert!(crumb.contains("scheduled-imaging › ACC-20391"), "short names stay whole: {crumb}");
}
