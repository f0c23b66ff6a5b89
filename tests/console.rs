//! The console's pure core and its rendering: every view and dialog drawn on
//! ratatui's TestBackend and compared with reviewed snapshots, and the key
//! handler's effects checked without a terminal.

use chrono::{DateTime, Duration, TimeZone, Utc};
use lightbox::asl::model::Definition;
use lightbox::backend::{ExecutionSummary, FeedEvent, Pulse};
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

fn execution(name: &str, status: ExecutionStatus, error: Option<&str>) -> ExecutionSummary {
    ExecutionSummary {
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
    load(
        &mut a,
        Loaded::Pulse(Pulse { running: 412, failed: 7, timed_out: 0, aborted: 1, succeeded: 900, pending_reviews: 3, condition: None }),
    );
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
            FeedEvent {
                seq: 1,
                execution_arn: arn("ACC-20391"),
                event: event(7, "TaskFailed", None, 2),
                state: Some("Publish".into()),
                envelope: None,
            },
            FeedEvent {
                seq: 2,
                execution_arn: arn("ACC-20418"),
                event: event(12, "TaskSubmitted", None, 1),
                state: Some("RadiologistReview".into()),
                envelope: None,
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
    // The reason code first (→ picks the first, direct-care), then the note.
    a.handle(code(KeyCode::Right));
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
    assert!(screen.contains("•••  MRN •••"), "{screen}");
    a.handle(key('v'));
    a.handle(code(KeyCode::Enter));
    assert!(a.dialog.is_some(), "a reason is required");
    for c in "stroke call".chars() {
        a.handle(key(c));
    }
    assert!(a.handle(code(KeyCode::Enter)).is_empty(), "a note without a reason code is not a reason");
    assert!(message(&a).contains("pick a reason code") && message(&a).contains("patient-request"), "{}", message(&a));
    a.handle(code(KeyCode::Right));
    let effects = a.handle(code(KeyCode::Enter));
    assert_eq!(effects, vec![Effect::Mutate(Mutation::RevealPhi { reason: "[direct-care] stroke call".into(), arn: arn("ACC-20401") })]);
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
        assert!(draw(&a, 140, 30).contains("must say why"), "the operator is told why");
    }
    // The audit log refused it: nothing shows.
    let mut a = app(false);
    a.handle(key('v'));
    a.handle(code(KeyCode::Right));
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
    assert!(screen.contains("\"given\": \"•••\"") && screen.contains("\"family\": \"•••\""), "{screen}");
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
    assert_eq!(a.view, View::Reviews, "to the view it came from");
    assert_eq!(a.visible_reviews().len(), 2, "with its filter");
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
    a.handle(AppEvent::Loaded(
        Loaded::Found {
            needle: "ACC-99999".into(),
            hits: vec![lightbox::backend::Found { arn: arn("ACC-99999"), label: "ACC-99999".into() }],
        },
        t0(),
    ));
    assert_eq!(a.detail_arn.as_deref(), Some(arn("ACC-99999").as_str()));
    a.handle(AppEvent::Loaded(Loaded::Found { needle: "nope".into(), hits: vec![] }, t0()));
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
    a.handle(code(KeyCode::Down));
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
    // The escalation's own reason starts as the override's, to keep or change.
    assert!(screen.contains("note   sick today, STAT") && screen.contains("[direct-care]"), "{screen}");
    let effects = a.handle(code(KeyCode::Enter));
    let [Effect::Mutate(Mutation::Escalate { tokens, acting, cause })] = effects.as_slice() else { panic!("{effects:?}") };
    assert_eq!(cause, "[direct-care] sick today, STAT");
    assert_eq!(tokens, &vec![claimed.token]);
    assert_eq!(acting.user.as_deref(), Some("dr.lee"));
    assert_eq!(acting.override_reason.as_deref(), Some("[direct-care] sick today, STAT"));
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
    assert!(last.contains("ACC-60029") && last.contains("Enter escalate"), "{last}");
    // No reason, no escalation: the dialog stays and says why.
    assert!(a.handle(code(KeyCode::Enter)).is_empty());
    assert!(matches!(a.dialog, Some(lightbox::tui::app::Dialog::Reason { .. })), "{:?}", a.dialog);
    assert!(message(&a).contains("escalate: pick a reason code"), "{}", message(&a));
    a.handle(code(KeyCode::Left));
    for c in "no reader free".chars() {
        a.handle(key(c));
    }
    let effects = a.handle(code(KeyCode::Enter));
    assert!(
        matches!(effects.as_slice(), [Effect::Mutate(Mutation::Escalate { tokens, cause, .. })] if tokens.len() == 30 && cause == "[other] no reader free"),
        "{effects:?}"
    );
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
        Loaded::Events(vec![FeedEvent {
            seq: 3,
            execution_arn: arn("ACC-20391"),
            event: ev,
            state: Some("Publish".into()),
            envelope: None,
        }]),
        t0(),
    ));
    a.handle(key('3'));
    let screen = draw(&a, 160, 30);
    assert!(!screen.contains("Testperson") && screen.contains("•••"), "executions view: {screen}");
    a.handle(key('4'));
    let screen = draw(&a, 160, 30);
    assert!(screen.contains("TaskFailed"), "the events view: {screen}");
    assert!(!screen.to_lowercase().contains("testperson") && screen.contains("•••"), "events view: {screen}");
    detail(&mut a);
    if let Some(e) = a.detail.value.execution.as_mut() {
        e.error = Some("Dana Testperson".into());
    }
    a.detail.value.history[6].details = json!({"name": "Publish", "error": "Dana Testperson"});
    let screen = draw(&a, 160, 30);
    assert!(!screen.contains("Testperson") && screen.contains("••• at Publish"), "detail: {screen}");
    reveal(&mut a, "consult with the referring physician");
    assert!(draw(&a, 160, 30).contains("Dana Testperson at Publish"));
}

// ----- move: the command line, going back, help, marks, keys that explain, the lock -----

fn ctrl(c: char) -> AppEvent {
    AppEvent::Key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::CONTROL))
}

/// Type a `:` command and press Enter.
fn command(a: &mut App, text: &str) -> Vec<Effect> {
    a.handle(key(':'));
    for c in text.chars() {
        a.handle(key(c));
    }
    a.handle(code(KeyCode::Enter))
}

fn message(a: &App) -> String {
    a.message.as_ref().map(|m| m.0.clone()).unwrap_or_default()
}

fn input_text(a: &App) -> String {
    match &a.dialog {
        Some(lightbox::tui::app::Dialog::Input { text, .. }) => text.clone(),
        other => panic!("no input open: {other:?}"),
    }
}

#[test]
fn every_view_and_filter_is_reachable_from_the_command_line() {
    use lightbox::tui::app::{Dialog, Request};
    let mut a = app(false);
    command(&mut a, "reviews");
    assert_eq!(a.view, View::Reviews);
    let effects = command(&mut a, "executions redriven");
    assert_eq!((a.view, a.status_filter, a.redriven_filter), (View::Executions, None, true));
    assert!(effects.contains(&Effect::Load(Request::Executions(None, true))), "{effects:?}");
    command(&mut a, "x timed-out");
    assert_eq!((a.status_filter, a.redriven_filter), (Some(ExecutionStatus::TimedOut), false));
    command(&mut a, "pipelines");
    assert_eq!(a.view, View::Pipelines);
    // Seen: `:events failed` ignored its argument. It filters the Events view now.
    command(&mut a, "events failed");
    assert_eq!(a.view, View::Events);
    let shown: Vec<&str> = a.visible_events().iter().map(|e| e.event.event_type.as_str()).collect();
    assert_eq!(shown, vec!["TaskFailed"]);
    assert!(draw(&a, 120, 30).contains("Events › /failed"));
    command(&mut a, "events");
    assert_eq!(a.visible_events().len(), 2, ":events alone shows every event");
    command(&mut a, "help");
    assert_eq!(a.dialog, Some(Dialog::Help));
    a.handle(code(KeyCode::Esc));
    command(&mut a, "ctx");
    let screen = draw(&a, 100, 30);
    assert!(screen.contains("Contexts") && screen.contains("* local (live: backend local"), "{screen}");
    a.handle(code(KeyCode::Esc));
    assert_eq!(command(&mut a, "ctx staging"), vec![]);
    assert!(message(&a).contains("no context \"staging\""), "{}", message(&a));
    a.settings.contexts = vec!["staging".into()];
    assert_eq!(command(&mut a, "ctx staging"), vec![Effect::Switch { name: "staging".into(), generation: 1 }]);
    assert!(message(&a).contains("connecting to staging"), "{}", message(&a));
    assert_eq!(command(&mut a, "audit"), vec![Effect::Load(Request::Audit)]);
    command(&mut a, "lock");
    assert!(a.locked);
    let mut q = app(false);
    assert_eq!(command(&mut q, "quit"), vec![Effect::Quit]);
}

#[test]
fn an_unknown_command_or_argument_says_so_naming_it() {
    let mut a = app(false);
    for (line, says) in [
        ("frobnicate", "unknown command \"frobnicate\""),
        ("executions bogus", "\"bogus\" is not a status"),
        ("executions failed running", "\"running\" is extra"),
        ("reviews now", "\"now\" is extra"),
        ("study", ":study needs"),
        ("events (", "not a valid regex"),
    ] {
        let view = a.view;
        assert!(command(&mut a, line).is_empty(), "{line}");
        assert!(message(&a).contains(says), "{line}: {}", message(&a));
        assert_eq!(a.view, view, "{line} went nowhere");
        assert!(draw(&a, 120, 30).contains(says), "{line}: the footer says it");
    }
}

#[test]
fn the_audit_pane_lists_recent_rows_masked_and_scrolls() {
    let mut a = app(false);
    command(&mut a, "audit");
    let row = |seq: i64, reason: &str| lightbox::audit::AuditRecord {
        seq,
        time: t0(),
        actor: "dr.lee".into(),
        source: "console".into(),
        action: "reject".into(),
        execution_arn: Some(arn("ACC-20391")),
        task_token: Some("abcdef01…".into()),
        reason: Some(reason.into()),
        reason_code: None,
        before: None,
        after: None,
        result: "ok".into(),
        error: None,
        intent_seq: None,
        prev_hash: String::new(),
        hash: String::new(),
    };
    let mut rows: Vec<_> = (1..=40).rev().map(|i| row(i, "wrong patient: Dana Testperson")).collect();
    rows[0].reason_code = Some("quality-review".into());
    let inputs = [(arn("ACC-20391"), order_input("ACC-20391"))].into_iter().collect();
    a.handle(AppEvent::Loaded(Loaded::Audit { rows, inputs }, t0()));
    let screen = draw(&a, 100, 30);
    assert!(screen.contains("Audit log") && screen.contains("#40") && screen.contains("ACC-20391 task abcdef01"), "{screen}");
    assert!(!screen.contains("Testperson") && screen.contains("wrong patient"), "{screen}");
    assert!(screen.contains("[quality-review] wrong patient"), "the code shows: {screen}");
    for _ in 0..3 {
        a.handle(code(KeyCode::PageDown));
    }
    assert!(draw(&a, 100, 30).contains("#1 "), "scrolls to the oldest row");
    a.handle(code(KeyCode::Esc));
    assert!(a.dialog.is_none());
}

#[test]
fn the_command_line_has_history_and_tab_completion() {
    let mut a = app(false);
    command(&mut a, "executions failed");
    command(&mut a, "reviews");
    a.handle(key(':'));
    a.handle(key('p'));
    a.handle(code(KeyCode::Up));
    assert_eq!(input_text(&a), "reviews");
    a.handle(code(KeyCode::Up));
    assert_eq!(input_text(&a), "executions failed");
    a.handle(code(KeyCode::Down));
    assert_eq!(input_text(&a), "reviews");
    a.handle(code(KeyCode::Down));
    assert_eq!(input_text(&a), "p", "back to what was typed");
    a.handle(code(KeyCode::Tab));
    assert_eq!(input_text(&a), "pipelines");
    a.handle(code(KeyCode::Esc));
    // Arguments: statuses, and the accessions loaded.
    a.handle(key(':'));
    for c in "ex".chars() {
        a.handle(key(c));
    }
    a.handle(code(KeyCode::Tab));
    assert_eq!(input_text(&a), "executions ");
    for c in "ti".chars() {
        a.handle(key(c));
    }
    a.handle(code(KeyCode::Tab));
    assert_eq!(input_text(&a), "executions timed-out");
    a.handle(code(KeyCode::Esc));
    a.handle(key('1'));
    a.handle(key(':'));
    for c in "study acc-204".chars() {
        a.handle(key(c));
    }
    a.handle(code(KeyCode::Tab));
    assert_eq!(input_text(&a), "study ACC-204");
    assert_eq!(a.cmdline.candidates, vec!["ACC-20401".to_string(), "ACC-20418".to_string()]);
    insta::assert_snapshot!("command_completion_80x24", draw(&a, 80, 24));
    a.handle(key('1'));
    a.handle(code(KeyCode::Tab));
    assert_eq!(input_text(&a), "study ACC-20418");
    assert!(a.cmdline.candidates.is_empty());
}

#[test]
fn study_finds_partial_matches_with_a_pick_list_and_mrns_only_once_revealed() {
    use lightbox::backend::Found;
    use lightbox::tui::app::{Dialog, Request};
    let mut a = app(false);
    a.handle(key('j'));
    let from = a.location();
    let effects = command(&mut a, "study ACC-2");
    assert_eq!(effects, vec![Effect::Load(Request::Find("ACC-2".into()))]);
    let hits: Vec<Found> = ["ACC-20401", "ACC-20418", "ACC-20455"]
        .iter()
        .map(|n| Found { arn: arn(n), label: format!("{n} · ORD-5{} · scheduled-imaging/{n} · RUNNING", &n[4..]) })
        .collect();
    a.handle(AppEvent::Loaded(Loaded::Found { needle: "ACC-2".into(), hits }, t0()));
    assert!(matches!(a.dialog, Some(Dialog::Pick { .. })));
    insta::assert_snapshot!("study_pick_list_80x24", draw(&a, 80, 24));
    a.handle(key('j'));
    a.handle(code(KeyCode::Down));
    a.handle(code(KeyCode::Down));
    let effects = a.handle(code(KeyCode::Enter));
    assert_eq!(a.detail_arn.as_deref(), Some(arn("ACC-20455").as_str()));
    assert!(effects.contains(&Effect::Load(Request::Detail(arn("ACC-20455"), 0))));
    a.handle(code(KeyCode::Esc));
    assert_eq!(a.location(), from, "Esc returns to the view and row the search started from");
    // Esc cancels a pick list.
    a.handle(AppEvent::Loaded(
        Loaded::Found {
            needle: "x".into(),
            hits: vec![Found { arn: arn("A"), label: "A".into() }, Found { arn: arn("B"), label: "B".into() }],
        },
        t0(),
    ));
    a.handle(code(KeyCode::Esc));
    assert!(a.dialog.is_none() && a.detail_arn.is_none());
    // An MRN matches nothing until that study is revealed, and then only that study.
    let effects = command(&mut a, "study SYN-000421");
    assert_eq!(effects, vec![Effect::Load(Request::Find("SYN-000421".into()))], "not matched on screen while masked");
    a.handle(key('k'));
    reveal(&mut a, "wrong-patient hold on this study");
    command(&mut a, "study syn-000421");
    assert_eq!(a.detail_arn.as_deref(), Some(arn("ACC-20401").as_str()));
}

#[test]
fn esc_returns_to_the_view_filter_and_row_it_came_from() {
    let mut a = app(false);
    // Pipelines, filtered, on the second row: open it, Esc comes back to exactly that.
    a.handle(key('/'));
    for c in "ACC-204".chars() {
        a.handle(key(c));
    }
    a.handle(code(KeyCode::Enter));
    a.handle(key('j'));
    let row = a.visible_studies()[a.selected()].accession.clone();
    a.handle(code(KeyCode::Enter));
    assert!(a.detail_arn.is_some());
    a.handle(code(KeyCode::Esc));
    assert_eq!(a.view, View::Pipelines, "seen: Esc always went to Executions");
    assert_eq!(a.filters[View::Pipelines.index()].as_ref().map(|f| f.text.as_str()), Some("ACC-204"));
    assert_eq!(a.visible_studies()[a.selected()].accession, row);
    // From Reviews to failed executions by command, then back.
    a.handle(key('2'));
    a.handle(key('j'));
    command(&mut a, "executions failed");
    a.handle(code(KeyCode::Esc));
    assert_eq!(a.view, View::Reviews);
    assert_eq!(a.visible_reviews()[a.selected()].accession, "ACC-20377");
    assert_eq!(a.status_filter, None);
    // Further back: Pipelines with its filter.
    a.handle(code(KeyCode::Esc));
    assert_eq!(a.view, View::Pipelines);
    // A filter set here is cleared first, as before.
    a.handle(code(KeyCode::Esc));
    assert!(a.filters[View::Pipelines.index()].is_none());
    assert!(a.back.len() <= lightbox::tui::command::BACK_KEPT);
}

#[test]
fn mark_all_and_clear_marks_and_the_bulk_dialog_lists_every_item() {
    let mut a = app(false);
    a.handle(key('2'));
    a.handle(ctrl('a'));
    assert_eq!(a.marks.len(), 3);
    assert!(message(&a).contains("marked all 3"), "{}", message(&a));
    a.handle(key('e'));
    let screen = draw(&a, 100, 30);
    assert!(screen.contains("Escalate 3 reviews"), "{screen}");
    for acc in ["ACC-20418", "ACC-20377", "ACC-20299"] {
        assert!(screen.contains(acc), "{acc}: {screen}");
    }
    a.handle(code(KeyCode::Esc));
    a.handle(key('u'));
    assert!(a.marks.is_empty());
    assert!(message(&a).contains("cleared 3 marks"));
    // Executions: all shown (a filter narrows "all").
    a.handle(key('3'));
    a.handle(key('/'));
    for c in "ACC-203".chars() {
        a.handle(key(c));
    }
    a.handle(code(KeyCode::Enter));
    a.handle(ctrl('a'));
    assert_eq!(a.marks.len(), 2);
    a.handle(key('u'));
    assert!(a.marks.is_empty());
    // Keys that are not for this view say where they work.
    a.handle(key('1'));
    a.handle(ctrl('a'));
    assert!(message(&a).contains("ctrl-a (mark all shown) works in Reviews — press 2"), "{}", message(&a));
}

#[test]
fn keys_that_do_nothing_here_say_why() {
    let mut a = app(false);
    detail(&mut a);
    // Seen: `a` in the detail view did nothing.
    assert!(a.handle(key('a')).is_empty());
    assert_eq!(message(&a), "a (approve) works in Reviews — press 2");
    a.handle(key('z'));
    assert_eq!(message(&a), "z: no such key here — ? for help");
    a.handle(key('s'));
    assert_eq!(message(&a), "s (status filter) works in Executions — press 3");
    let screen = draw(&a, 80, 24);
    assert!(screen.contains("s (status filter) works in Executions") && screen.contains("? help"), "{screen}");
    // Actions with nothing to act on say so.
    let mut e = app(false);
    e.handle(key('2'));
    reviews_loaded(&mut e, vec![]);
    e.handle(key('a'));
    assert!(message(&e).contains("approve: no review selected"), "{}", message(&e));
    e.handle(key('c'));
    assert!(message(&e).contains("claim: no review selected"), "{}", message(&e));
    e.handle(key(' '));
    assert!(message(&e).contains("mark: no row selected"), "{}", message(&e));
    e.handle(code(KeyCode::Enter));
    assert!(message(&e).contains("open: no row selected"), "{}", message(&e));
    e.handle(key('3'));
    e.handle(AppEvent::Loaded(Loaded::Executions(vec![]), t0()));
    e.handle(key('R'));
    assert!(message(&e).contains("redrive: no execution selected"), "{}", message(&e));
}

#[test]
fn help_fits_80x24_scrolls_lists_commands_and_lets_other_keys_through() {
    let mut a = app(false);
    a.handle(key('2'));
    a.handle(key('?'));
    let first = draw(&a, 80, 24);
    assert!(first.contains("Keys in Reviews") && first.contains("approve"), "this view's keys first: {first}");
    assert!(first.contains("? help"), "{first}");
    insta::assert_snapshot!("help_80x24", first);
    a.handle(code(KeyCode::PageDown));
    let scrolled = draw(&a, 80, 24);
    assert!(scrolled.contains(":executions [STATUS]") && scrolled.contains(":audit"), "{scrolled}");
    insta::assert_snapshot!("help_80x24_scrolled", scrolled);
    a.handle(key('?'));
    assert!(a.dialog.is_none(), "? closes help");
    a.handle(key('?'));
    a.handle(key('j'));
    assert!(a.dialog.is_some(), "j scrolls the help");
    // Any other key closes the help and does its usual action.
    a.handle(key('3'));
    assert!(a.dialog.is_none());
    assert_eq!(a.view, View::Executions, "3 was not swallowed");
}

#[test]
fn the_footer_always_offers_help() {
    let mut a = app(false);
    for v in ['1', '2', '3', '4'] {
        a.handle(key(v));
        assert!(draw(&a, 80, 24).lines().last().unwrap_or_default().contains("? help"), "view {v}");
    }
    a.message = Some(("a very long message that would fill the whole footer line and then some more words to push it over".into(), true));
    let last = draw(&a, 80, 24).lines().last().unwrap_or_default().to_string();
    assert!(last.contains("? help") && last.contains('…'), "{last}");
}

#[test]
fn the_lock_opens_only_to_the_operators_name() {
    let mut a = app(false);
    a.handle(AppEvent::Tick(t0() + Duration::minutes(11)));
    assert!(a.locked);
    // A stray Enter does nothing.
    assert!(a.handle(code(KeyCode::Enter)).is_empty());
    assert!(a.locked);
    for c in "dr.le".chars() {
        a.handle(key(c));
    }
    a.handle(code(KeyCode::Enter));
    assert!(a.locked, "a wrong name does not unlock");
    assert!(draw(&a, 100, 24).contains("not the operator's name"), "and says so");
    for c in "dr.lee".chars() {
        a.handle(key(c));
    }
    assert!(draw(&a, 100, 24).contains("name dr.lee"));
    let effects = a.handle(code(KeyCode::Enter));
    assert!(!a.locked && !effects.is_empty(), "unlocked, and the views reload");
}

// ----- read: the detail pane, the path, cause, history, input/output, paused Events -----

/// Open execution `row` in the detail view with `history` and `definition`, as loaded.
fn open_detail(a: &mut App, row: ExecutionSummary, history: Vec<HistoryEvent>, definition: &str) {
    a.handle(key('3'));
    a.open_execution(row.arn.clone());
    a.handle(AppEvent::Loaded(
        Loaded::Detail(Box::new(Detail { execution: Some(row), history, definition: Some(definition.into()), after: 0 })),
        t0(),
    ));
}

/// The rows of a drawn screen.
fn rows(screen: &str) -> Vec<&str> {
    screen.lines().collect()
}

/// Seen: only the CLI's `describe` had the cause ("Reschedule or cancel the order…"); the
/// console's header had the error alone. The cause shows, masked like the error, and a long
/// one wraps onto more header rows rather than being lost.
#[test]
fn the_execution_header_shows_the_whole_cause_masked() {
    let mut a = app(false);
    let mut row = execution("ACC-20391", ExecutionStatus::Failed, Some("Archive.Unavailable"));
    row.cause = Some(
        "PACS rejected the study of Dana Testperson (SYN-000421) three times: archive unreachable. Reschedule or cancel the order, \
         then redrive once the archive answers."
            .into(),
    );
    open_detail(&mut a, row, vec![event(1, "ExecutionStarted", None, 41)], DEFINITION);
    let screen = draw(&a, 80, 24);
    let flat = screen.replace(['\n', '│'], "");
    assert!(flat.contains("Reschedule or cancel the order"), "{screen}");
    assert!(flat.contains("once the archive answers."), "the end of the cause is on screen too: {screen}");
    for s in ["Testperson", "SYN-000421"] {
        assert!(!screen.contains(s), "{s} shows: {screen}");
    }
    insta::assert_snapshot!("detail_cause_80x24", screen);
    // On a screen too small for all of it, the header says where the rest is.
    let small = draw(&a, 60, 12);
    assert!(small.contains("… (all of it: G, Enter)"), "{small}");
    for (w, h) in [(1, 1), (10, 5), (30, 8), (60, 12)] {
        draw(&a, w, h);
        a.handle(code(KeyCode::Enter));
        draw(&a, w, h);
        a.handle(code(KeyCode::Esc));
    }
    reveal(&mut a, "checking the order with the referring ward");
    assert!(draw(&a, 80, 24).replace('\n', "").contains("Dana Testperson"));
}

/// History events open to their full detail with Enter (pretty AWS JSON, masked); Esc
/// closes it back on the same event. Seen: Enter in the detail view did nothing.
#[test]
fn a_history_event_opens_to_its_full_masked_detail_and_esc_returns() {
    let mut a = app(false);
    detail(&mut a);
    let input = order_input("ACC-20391");
    a.detail.value.history[1].details = json!({"name": "Schedule", "input": input, "inputDetails": {"truncated": false}});
    for _ in 0..1 {
        a.handle(key('j'));
    }
    a.handle(code(KeyCode::Enter));
    assert!(a.pane_open(), "Enter opens the event");
    let screen = draw(&a, 100, 30);
    assert!(screen.contains("Event #2 PassStateEntered"), "{screen}");
    assert!(screen.contains("\"stateEnteredEventDetails\": {"), "pretty AWS-shaped JSON: {screen}");
    assert!(screen.contains("── input (as JSON) ──") && screen.contains("\"accession\": \"ACC-20391\""), "{screen}");
    for s in SECRETS {
        assert!(!screen.contains(s), "{s} shows: {screen}");
    }
    insta::assert_snapshot!("event_detail_pane_100x30", screen);
    // Scrolling the pane moves the text, not the history selection.
    a.handle(key('G'));
    assert_eq!(a.detail_scroll, 1);
    a.handle(code(KeyCode::Esc));
    assert!(!a.pane_open());
    assert_eq!(a.detail_arn.as_deref(), Some(arn("ACC-20391").as_str()), "Esc closed the event, not the execution");
    assert_eq!(a.detail_scroll, 1, "back on the same event");
}

/// Raw history lines wrap (`w`) or scroll sideways (←/→) instead of being cut.
#[test]
fn raw_history_wraps_or_scrolls_sideways() {
    let mut a = app(false);
    detail(&mut a);
    a.handle(key('h'));
    let cut = draw(&a, 120, 30);
    assert!(!cut.contains("\"previousEventId\":1"), "cut at the edge: {cut}");
    a.handle(code(KeyCode::Right));
    a.handle(code(KeyCode::Right));
    let right = draw(&a, 120, 30);
    assert!(right.contains("col 17") || right.contains("previousEventId\":1,"), "{right}");
    a.handle(key('w'));
    let wrapped = draw(&a, 120, 30);
    assert!(wrapped.contains("tId\":1,\"stateEnteredEventDetails\":{\"name\":\"Schedule\"}}"), "wrapped lines show the rest: {wrapped}");
    insta::assert_snapshot!("detail_raw_wrapped_120x30", wrapped);
}

/// Seen: `G` on a long history showed one event at the top of an empty pane. The last
/// page shows full, the last event on the bottom row.
#[test]
fn g_on_a_long_history_shows_the_last_page_full() {
    let mut a = app(false);
    let history: Vec<HistoryEvent> = (1..=60).map(|i| event(i, "PassStateEntered", Some("Schedule"), 60 - i)).collect();
    open_detail(&mut a, execution("ACC-20418", ExecutionStatus::Running, None), history, DEFINITION);
    a.handle(key('G'));
    let screen = draw(&a, 120, 30);
    let r = rows(&screen);
    // Rows: header 3, history block from row 3 to 28; its last inner row is 27.
    assert!(r[27].contains("▶#60"), "the last event on the bottom row:\n{screen}");
    assert!(r[4].contains("#37 "), "a full page above it:\n{screen}");
    insta::assert_snapshot!("detail_history_end_120x30", screen);
}

/// Input and output scroll (j/k/G in the half `f` selects), each with its position.
#[test]
fn input_and_output_scroll() {
    let mut a = app(false);
    detail(&mut a);
    let big: serde_json::Value =
        json!({"accession": "ACC-20391", "series": (1..=40).map(|i| format!("series-{i:02}")).collect::<Vec<_>>()});
    if let Some(e) = a.detail.value.execution.as_mut() {
        e.input = big.to_string();
        e.output = Some(big.to_string());
    }
    a.handle(key('i'));
    assert!(!draw(&a, 120, 30).contains("series-40"));
    a.handle(key('G'));
    let screen = draw(&a, 120, 30);
    assert!(screen.contains("series-40"), "input scrolled to its end: {screen}");
    a.handle(key('f'));
    for _ in 0..5 {
        a.handle(key('j'));
    }
    let screen = draw(&a, 120, 30);
    assert!(screen.contains("Output ◀") && screen.contains("6–16 of 45"), "output scrolled by five: {screen}");
    assert!(screen.contains("35–45 of 45"), "input stays at its end: {screen}");
    insta::assert_snapshot!("detail_io_scrolled_120x30", screen);
}

const NESTED: &str = r#"{"StartAt":"Fetch","States":{
  "Fetch":{"Type":"Pass","Result":["a","bad","c"],"ResultPath":"$.items","Next":"EachImage"},
  "EachImage":{"Type":"Map","ItemsPath":"$.items","ToleratedFailureCount":1,
    "ItemProcessor":{"StartAt":"CheckImage","States":{
      "CheckImage":{"Type":"Choice","Choices":[{"Variable":"$","StringEquals":"bad","Next":"CorruptImage"}],"Default":"StoreImageInTheLongTermArchive"},
      "CorruptImage":{"Type":"Fail","Error":"Image.Corrupt","Cause":"DICOM header unreadable"},
      "StoreImageInTheLongTermArchive":{"Type":"Pass","End":true}}},
    "ResultPath":"$.stored","Next":"Notify"},
  "Notify":{"Type":"Parallel","Branches":[
      {"StartAt":"NotifyReferrer","States":{"NotifyReferrer":{"Type":"Pass","End":true}}},
      {"StartAt":"NotifyBilling","States":{"NotifyBilling":{"Type":"Fail","Error":"Billing.Unavailable","Cause":"Clearinghouse down"}}}],
    "Next":"Done"},
  "Done":{"Type":"Succeed"}}}"#;

/// The path pane draws the states nested in Map and Parallel under their parent, with each
/// iteration's and branch's status, from a history the engine wrote; it fits the longest name.
#[test]
fn the_path_nests_map_and_parallel_states_with_iteration_and_branch_status() {
    use lightbox::engine::ephemeral::{RunOptions, run};
    let out = run(NESTED, "{}", RunOptions { history: true, start: t0() - Duration::minutes(3), ..RunOptions::default() }).expect("run");
    assert_eq!(out["status"], "FAILED", "{out}");
    let history: Vec<HistoryEvent> = out["events"].as_array().expect("events").iter().filter_map(HistoryEvent::from_aws_json).collect();
    let mut row = execution("ACC-20391", ExecutionStatus::Failed, Some("Billing.Unavailable"));
    row.cause = out["cause"].as_str().map(str::to_string);
    row.current_state = Some("Notify".into());
    let mut a = app(false);
    open_detail(&mut a, row, history, NESTED);
    let screen = draw(&a, 120, 30);
    for want in [
        "✓ Fetch (Pass)",
        "✓ EachImage (Map)",
        "  ✓ CheckImage (Choice) ×3",
        "  ✗ CorruptImage (Fail)",
        "  ✓ StoreImageInTheLongTermArchive (Pass) ×2",
        "iterations: 3 · 2 ✓ · 1 ✗",
        "✓ #0  ✗ #1  ✓ #2",
        "✗ Notify (Parallel)",
        "  ⊘ branch 1",
        "    ⊘ NotifyReferrer (Pass)",
        "  ✗ branch 2",
        "    ✗ NotifyBilling (Fail)",
        "· Done (Succeed)",
        "cause Clearinghouse down",
    ] {
        assert!(screen.contains(want), "{want:?} missing:\n{screen}");
    }
    insta::assert_snapshot!("detail_path_nested_120x30", screen);
}

/// `p` pauses the Events tail: new events are still fetched but the list stays still and the
/// title says how many wait; `p` again shows them.
#[test]
fn events_pause_holds_new_events_and_counts_them() {
    let mut a = app(false);
    a.handle(key('4'));
    a.handle(key('p'));
    let effects = a.handle(AppEvent::Tick(t0() + Duration::seconds(5)));
    assert!(effects.contains(&Effect::Load(lightbox::tui::app::Request::Events(Some(2)))), "still fetched: {effects:?}");
    let more: Vec<FeedEvent> = (3..=5)
        .map(|s| FeedEvent {
            seq: s,
            execution_arn: arn("ACC-20377"),
            event: event(20 + s, "TaskSucceeded", Some("Acquire"), 0),
            state: None,
            envelope: None,
        })
        .collect();
    a.handle(AppEvent::Loaded(Loaded::Events(more), t0()));
    let screen = draw(&a, 120, 30);
    assert!(screen.contains("Events · PAUSED · 3 waiting (p resumes) · 2 shown"), "{screen}");
    assert!(!screen.contains("ACC-20377"), "the list did not move: {screen}");
    insta::assert_snapshot!("events_paused_120x30", screen);
    // The next load continues after the held events.
    let effects = a.handle(AppEvent::Tick(t0() + Duration::seconds(10)));
    assert!(effects.contains(&Effect::Load(lightbox::tui::app::Request::Events(Some(5)))), "{effects:?}");
    a.handle(key('p'));
    let screen = draw(&a, 120, 30);
    assert!(screen.contains("Events · live (p pauses) · 5 shown") && screen.contains("ACC-20377"), "{screen}");
}

/// Enter on an event opens its detail; Enter there jumps to its execution with that event
/// selected; `o` jumps straight from the list.
#[test]
fn an_event_opens_to_its_detail_and_jumps_to_its_execution() {
    let mut a = app(false);
    a.handle(key('4'));
    a.handle(key('j'));
    a.handle(code(KeyCode::Enter));
    assert!(a.pane_open());
    let screen = draw(&a, 100, 30);
    assert!(screen.contains("Event #7 TaskFailed · ACC-20391") && screen.contains("Enter go to execution"), "{screen}");
    insta::assert_snapshot!("events_event_pane_100x30", screen);
    let effects = a.handle(code(KeyCode::Enter));
    assert!(!a.pane_open());
    assert_eq!(a.detail_arn.as_deref(), Some(arn("ACC-20391").as_str()));
    assert!(effects.iter().any(|e| matches!(e, Effect::Load(lightbox::tui::app::Request::Detail(x, 0)) if *x == arn("ACC-20391"))));
    detail(&mut a);
    eight_events_of_acc_20391(&mut a);
    // `o` from the list goes straight to the execution, the event selected.
    let mut b = app(false);
    b.handle(key('4'));
    b.handle(key('j'));
    b.handle(key('o'));
    assert_eq!(b.detail_arn.as_deref(), Some(arn("ACC-20391").as_str()));
    eight_events_of_acc_20391(&mut b);
    assert_eq!(b.detail_scroll, 6, "event #7 selected");
}

/// The event pane masks free text too (a cause naming the patient), shows it whole only while
/// the study is revealed, and hides it again the moment the reveal ends, the pane still open.
#[test]
fn the_event_pane_masks_causes_and_follows_the_reveal() {
    let mut a = app(false);
    let failed = FeedEvent {
        seq: 3,
        execution_arn: arn("ACC-20391"),
        event: HistoryEvent {
            details: json!({"error": "Archive.Rejected", "cause": "no study for Testperson, Dana (SYN-000421)", "resource": "publish"}),
            ..event(9, "TaskFailed", None, 0)
        },
        state: Some("Publish".into()),
        envelope: None,
    };
    a.handle(AppEvent::Loaded(Loaded::Events(vec![failed]), t0()));
    a.handle(key('4'));
    a.handle(key('g'));
    a.handle(code(KeyCode::Enter));
    let screen = draw(&a, 100, 30);
    assert!(screen.contains("Event #9 TaskFailed") && screen.contains("Archive.Rejected"), "{screen}");
    for s in ["Testperson", "Dana", "SYN-000421"] {
        assert!(!screen.contains(s), "{s} shows: {screen}");
    }
    reveal(&mut a, "consult with the referring physician");
    assert!(a.pane_open(), "revealing keeps the event open");
    assert!(draw(&a, 100, 30).contains("no study for Testperson, Dana (SYN-000421)"));
    a.handle(AppEvent::Tick(t0() + Duration::minutes(6)));
    let screen = draw(&a, 100, 30);
    assert!(a.pane_open() && !screen.contains("Testperson"), "hidden again when the reveal ends: {screen}");
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
        Loaded::Events(vec![FeedEvent {
            seq: 3,
            execution_arn: arn("ACC-20391"),
            event: failed,
            state: Some("PublishToArchive".into()),
            envelope: None,
        }]),
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
    filter(&mut a, "•••");
    assert_eq!(a.visible_executions().len(), 1, "the cause as it shows, masked");
    // An event of an execution whose patient is not loaded: its cause is not searched at all.
    let mut ev = event(11, "TaskFailed", None, 1);
    ev.details = json!({"error": "Archive.Unavailable", "cause": "no study for Robin Sampleton"});
    let stranger = "arn:aws:states:us-east-1:000000000000:execution:scheduled-imaging:ACC-99999".to_string();
    a.handle(AppEvent::Loaded(
        Loaded::Events(vec![FeedEvent { seq: 9, execution_arn: stranger, event: ev, state: None, envelope: None }]),
        t0(),
    ));
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
    let rows: Vec<ExecutionSummary> = [
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

/// Seen: redrive was offered on a RUNNING execution and refused only after confirming. The
/// footer offers what applies to the selected execution: stop on a RUNNING one, redrive on a
/// failed one; pressing R on a RUNNING one says why instead of asking.
#[test]
fn the_footer_offers_only_what_applies_to_the_selected_execution() {
    let mut a = app(false);
    a.handle(key('3'));
    let footer = |a: &App| draw(a, 120, 30).lines().last().unwrap_or_default().to_string();
    let running = footer(&a);
    assert!(running.contains("x stop") && !running.contains("R redrive"), "RUNNING selected: {running}");
    a.handle(key('R'));
    assert!(a.dialog.is_none(), "no confirmation for a redrive that cannot happen");
    assert!(footer(&a).contains("redrive: nothing to do"), "{}", footer(&a));
    a.handle(key('j'));
    a.message = None;
    let failed = footer(&a);
    assert!(failed.contains("R redrive") && !failed.contains("x stop"), "FAILED selected: {failed}");
}

/// The open detail of ACC-20391 loads, with eight history events.
fn eight_events_of_acc_20391(a: &mut App) {
    a.handle(AppEvent::Loaded(
        Loaded::Detail(Box::new(Detail {
            execution: Some(execution("ACC-20391", ExecutionStatus::Failed, Some("States.Timeout"))),
            history: (1..=8).map(|i| event(i, "PassStateEntered", Some("Schedule"), 9 - i)).collect(),
            definition: Some(DEFINITION.into()),
            after: 0,
        })),
        t0(),
    ));
}

// ----- compensation -----

/// `C` on a failed execution asks the job thread for the plan; the plan opens a dialog with
/// each step (patient data masked) and a reason; a reason is required; confirming sends one
/// Compensate mutation for exactly that execution. The header then links the compensation.
#[test]
fn c_shows_the_compensation_plan_masked_and_needs_a_reason() {
    use lightbox::ops::compensation::{Info, Outcome, Plan, Step};
    use lightbox::tui::app::Request;
    let mut a = app(false);
    detail(&mut a);
    let target = arn("ACC-20391");
    let fx = a.handle(key('C'));
    assert_eq!(fx, vec![Effect::Load(Request::CompensationPlan(target.clone()))]);
    let patient = json!({"name": "Ada Testperson", "mrn": "SYN-424242"});
    let plan = Plan {
        execution_arn: target.clone(),
        execution_name: "ACC-20391".into(),
        execution_input: json!({"accession": "ACC-20391", "patient": patient}),
        status: ExecutionStatus::Failed,
        state_machine: "scheduled-imaging".into(),
        compensation_machine: "scheduled-imaging-undo".into(),
        compensation_name: "ACC-20391-undo".into(),
        steps: vec![Step {
            state: "ScheduleProcedure".into(),
            input: json!({"accession": "ACC-20391", "patient": patient}),
            output: json!({"scheduled": {"room": "MAIN-CT-2"}}),
            exited_event_id: 3,
            completed_at: t0(),
        }],
    };
    let outcome = Outcome { plan, started: None, existing: None };
    a.handle(AppEvent::Loaded(Loaded::CompensationPlan { arn: target.clone(), plan: Ok(Box::new(outcome)) }, t0()));
    let s = draw(&a, 120, 30);
    assert!(s.contains("Compensate ACC-20391 (FAILED)"), "{s}");
    assert!(s.contains("scheduled-imaging-undo") && s.contains("ScheduleProcedure") && s.contains("MAIN-CT-2"), "{s}");
    assert!(!s.contains("Testperson") && !s.contains("SYN-424242"), "patient data is masked:\n{s}");
    // No reason, no compensation.
    assert!(a.handle(code(KeyCode::Enter)).is_empty());
    for _ in 0..3 {
        a.handle(code(KeyCode::Tab));
    }
    for c in "slot booked twice".chars() {
        a.handle(key(c));
    }
    let fx = a.handle(code(KeyCode::Enter));
    let reason = "[operations-incident] slot booked twice".to_string();
    assert_eq!(fx, vec![Effect::Mutate(Mutation::Compensate { arn: target.clone(), reason })]);

    // The detail header: the link, and what redrive and compensation would each do.
    let info = Info {
        links: vec![("compensatedBy", "arn:aws:states:us-east-1:000000000000:execution:scheduled-imaging-undo:ACC-20391-undo".into())],
        offer: Some("already compensated by ACC-20391-undo (SUCCEEDED)".into()),
    };
    a.handle(AppEvent::Loaded(Loaded::CompensationInfo { arn: target, info: Box::new(info) }, t0()));
    let s = draw(&a, 160, 30);
    assert!(s.contains("compensated by arn:aws:states:us-east-1:000000000000:execution:scheduled-imaging-undo:ACC-20391-undo"), "{s}");
    assert!(s.contains(" R redrive: ") && s.contains(" C compensate: already compensated by ACC-20391-undo"), "{s}");
}

/// `C` on a running execution says why not, and asks for nothing.
#[test]
fn c_on_a_running_execution_says_why_not() {
    let mut a = app(false);
    a.handle(key('3'));
    a.open_execution(arn("ACC-20418"));
    a.handle(AppEvent::Loaded(
        Loaded::Detail(Box::new(Detail {
            execution: Some(execution("ACC-20418", ExecutionStatus::Running, None)),
            history: vec![],
            definition: None,
            after: 0,
        })),
        t0(),
    ));
    assert!(a.handle(key('C')).is_empty());
    let m = a.message.clone().map(|m| m.0).unwrap_or_default();
    assert!(m.contains("RUNNING") && m.contains("still running"), "{m}");
}

/// `:ctx` lists the contexts configured and marks the live one; `:ctx NAME` asks the jobs
/// thread to switch, a name not configured says so and changes nothing.
#[test]
fn ctx_lists_the_contexts_marking_the_live_one_and_asks_to_switch() {
    let mut a = app(false);
    a.settings.context = "east".into();
    a.settings.backend = "aws".into();
    a.settings.location = "us-east-1".into();
    a.settings.contexts = vec!["east".into(), "training".into(), "west".into()];
    command(&mut a, "ctx");
    let screen = draw(&a, 100, 30);
    assert!(screen.contains("* east (live: backend aws, us-east-1)"), "{screen}");
    assert!(screen.contains("  training") && screen.contains("  west"), "{screen}");
    assert!(!screen.contains("* west") && !screen.contains("* training"), "only the live one is marked: {screen}");
    a.handle(code(KeyCode::Esc));
    assert_eq!(command(&mut a, "ctx east"), vec![]);
    assert!(message(&a).contains("east is the live context"), "{}", message(&a));
    assert_eq!(command(&mut a, "ctx north"), vec![]);
    assert!(message(&a).contains("no context \"north\"") && message(&a).contains("still on east"), "{}", message(&a));
    assert_eq!(a.settings.context, "east");
    assert_eq!(command(&mut a, "ctx west"), vec![Effect::Switch { name: "west".into(), generation: 1 }]);
    // Asked again before the first answered: a newer generation.
    assert_eq!(command(&mut a, "ctx training"), vec![Effect::Switch { name: "training".into(), generation: 2 }]);
    assert_eq!(a.settings.context, "east", "live until the switch is done");
}

/// Once the new context is live nothing of the old one shows: its rows, the open
/// execution, marks and a reveal are gone, a late result of the old control plane is
/// dropped, and the header names the new context and its region.
#[test]
fn a_switch_of_context_clears_the_old_data_and_drops_its_late_results() {
    let mut a = app(false);
    a.settings.contexts = vec!["west".into()];
    a.handle(key('2'));
    a.handle(key(' '));
    assert!(!a.marks.is_empty());
    assert!(draw(&a, 120, 30).contains("ACC-20418"));
    let fx = command(&mut a, "ctx west");
    let [Effect::Switch { generation, .. }] = fx.as_slice() else { panic!("{fx:?}") };
    // A result of the old control plane before the switch is done still shows (its context is live).
    a.handle(AppEvent::LoadedFrom(Loaded::Reviews(vec![review("ACC-20418", Priority::Stat, 9, 6)]), t0(), 0));
    assert_eq!(a.reviews.value.len(), 1);
    a.handle(AppEvent::LoadedFrom(
        Loaded::Switched {
            name: "west".into(),
            backend: "aws".into(),
            location: "us-west-2 via http://127.0.0.1:5000".into(),
            read_only: true,
            user: "dr.west".into(),
            theme: Some(Box::new(Theme::dark().with_accent(Some("#ff0000")).expect("accent"))),
            demo: false,
            generation: *generation,
        },
        t0(),
        *generation,
    ));
    assert_eq!(a.generation, *generation);
    assert_eq!((a.settings.context.as_str(), a.settings.backend.as_str(), a.settings.read_only), ("west", "aws", true));
    assert_eq!(a.view, View::Reviews, "the operator stays in the view they were in");
    assert_eq!(a.theme.accent, ratatui::style::Color::Rgb(255, 0, 0), "the context's accent");
    assert!(!a.settings.demo, "the demo app's DEMO is not carried into a context that is not the demo");
    assert!(a.reviews.value.is_empty() && a.studies.value.is_empty() && a.executions.value.is_empty() && a.events.value.is_empty());
    assert!(a.marks.is_empty() && a.definitions.is_empty() && a.detail_arn.is_none() && a.reveal.is_none());
    assert_eq!(a.pulse.value.running, 0);
    // A late result of the old context (tagged with its generation) never lands.
    a.handle(AppEvent::LoadedFrom(Loaded::Reviews(vec![review("ACC-20418", Priority::Stat, 9, 6)]), t0(), 0));
    a.handle(AppEvent::LoadedFrom(Loaded::Executions(vec![execution("ACC-20418", ExecutionStatus::Running, None)]), t0(), 0));
    assert!(a.reviews.value.is_empty() && a.executions.value.is_empty(), "an old context's result was shown");
    let screen = draw(&a, 120, 30);
    assert!(!screen.contains("ACC-20418"), "{screen}");
    assert!(screen.contains("aws us-west-2 · west") && screen.contains("user dr.west"), "{screen}");
    // Narrow, or with a long condition: the live context's name stays in the header.
    let narrow = draw(&a, 70, 20);
    assert!(narrow.lines().next().is_some_and(|h| h.contains("west") && !h.contains("dr.west")), "{narrow}");
    // An action confirmed before the switch: its outcome is told, as the previous context's.
    a.handle(AppEvent::LoadedFrom(Loaded::Done { verb: "approve".into(), ok: 1, failed: vec![] }, t0(), 0));
    assert!(message(&a).contains("approve: 1 done (in the previous context)"), "{}", message(&a));
    // The new context's results land, and the next tick loads the view afresh.
    a.handle(AppEvent::LoadedFrom(Loaded::Reviews(vec![review("ACC-30001", Priority::Urgent, 3, 60)]), t0(), *generation));
    assert_eq!(a.reviews.value.len(), 1);
    let fx = a.handle(AppEvent::Tick(t0() + Duration::seconds(1)));
    assert!(fx.contains(&Effect::Load(lightbox::tui::app::Request::Reviews)), "{fx:?}");
}

#[test]
fn a_context_that_fails_to_connect_says_so_and_keeps_the_current_one() {
    let mut a = app(false);
    a.settings.contexts = vec!["west".into()];
    command(&mut a, "ctx west");
    a.handle(AppEvent::LoadedFrom(Loaded::SwitchFailed { name: "west".into(), error: "no region for context \"west\"".into() }, t0(), 0));
    assert!(message(&a).contains("west not switched to: no region") && message(&a).contains("still on local"), "{}", message(&a));
    assert_eq!((a.settings.context.as_str(), a.generation), ("local", 0));
    assert_eq!(a.reviews.value.len(), 3, "the current context's data stays");
}
