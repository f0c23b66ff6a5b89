//! The demo hospital: its definitions are valid, deployable-looking ASL; each machine runs
//! end to end; and a simulated day on a virtual clock fills every stage and exception lane,
//! leaves a review queue for humans, and leaves failures that redrive recovers.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, TimeZone, Utc};
use serde_json::{Value, json};

use lightbox::asl::model::Definition;
use lightbox::engine::tasks::TaskRunner;
use lightbox::engine::{Clock, Engine};
use lightbox::history::ExecutionStatus;
use lightbox::model::{ExecutionFilter, ExecutionSummary};
use lightbox::ops::{Exception, Stage};
use lightbox::sim::{self, Demo, DemoConfig, Family, workload};
use lightbox::store::Store;

fn start_time() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 3, 3, 7, 0, 0).single().expect("valid time")
}

fn engine() -> Engine {
    let mut e = Engine::new(Store::in_memory().expect("store"), TaskRunner::new(), Clock::virtual_at(start_time()));
    Demo::install(&mut e).expect("install");
    e
}

/// Every state of a definition, nested ones included: (path, state).
fn all_states(def: &Value) -> Vec<(String, Value)> {
    fn walk(m: &Value, at: &str, out: &mut Vec<(String, Value)>) {
        for (name, s) in m["States"].as_object().into_iter().flatten() {
            out.push((format!("{at}{name}"), s.clone()));
            for b in s["Branches"].as_array().into_iter().flatten() {
                walk(b, &format!("{at}{name}/"), out);
            }
            for key in ["ItemProcessor", "Iterator"] {
                if s.get(key).is_some() {
                    walk(&s[key], &format!("{at}{name}/"), out);
                }
            }
        }
    }
    let mut out = vec![];
    walk(def, "", &mut out);
    out
}

#[test]
fn definitions_are_valid_and_follow_the_house_rules() {
    let mut runner = TaskRunner::new();
    sim::register_handlers(&mut runner);
    let handlers = runner.handler_names();
    for (name, text) in sim::definitions() {
        Definition::parse_str(text).unwrap_or_else(|e| panic!("{name}: {e}"));
        let def: Value = serde_json::from_str(text).expect("json");
        assert!(def["Comment"].is_string(), "{name}: no Comment");
        for (path, s) in all_states(&def) {
            let at = format!("{name}.{path}");
            assert!(s["Comment"].as_str().is_some_and(|c| c.len() > 20), "{at}: operators need a Comment");
            match s["Type"].as_str() {
                Some("Task") => {
                    let resource = s["Resource"].as_str().unwrap_or_default();
                    assert!(
                        ["arn:aws:states:::lambda:invoke", "arn:aws:states:::lambda:invoke.waitForTaskToken"].contains(&resource),
                        "{at}: {resource}"
                    );
                    let f = s["Parameters"]["FunctionName"].as_str().unwrap_or_default();
                    assert!(f.starts_with("lightbox-") && handlers.iter().any(|h| h == f), "{at}: no handler for {f:?}");
                    let payload = &s["Parameters"]["Payload"];
                    assert!(payload.is_object(), "{at}: the payload lists references, not the whole state");
                    assert!(payload.to_string().len() < 800, "{at}: payload too big");
                    if resource.ends_with(".waitForTaskToken") {
                        assert_eq!(payload["taskToken.$"], "$$.Task.Token", "{at}");
                        assert!(s.get("TimeoutSeconds").or(s.get("TimeoutSecondsPath")).is_some(), "{at}: a human gate needs a timeout");
                    }
                }
                Some("Wait") => assert!(s["SecondsPath"].as_str().is_some_and(|p| p.starts_with("$.timing.")), "{at}: waits scale"),
                Some("Fail") => assert!(s["Error"].is_string() && s["Cause"].is_string(), "{at}: a Fail says why"),
                _ => {}
            }
        }
    }
}

/// The review gate, publication and billing are inlined in each family: same states, same meaning.
#[test]
fn shared_states_are_identical_across_machines() {
    let strip = |s: &Value| {
        let mut s = s.clone();
        if let Some(o) = s.as_object_mut() {
            o.remove("Next");
            o.remove("End");
        }
        s
    };
    let mut seen: BTreeMap<String, (String, Value)> = BTreeMap::new();
    let mut shared = BTreeSet::new();
    for (name, text) in sim::definitions() {
        let def: Value = serde_json::from_str(text).expect("json");
        for (path, s) in all_states(&def) {
            match seen.get(&path) {
                Some((first, v)) => {
                    assert_eq!(v, &strip(&s), "{path} differs between {first} and {name}");
                    shared.insert(path);
                }
                None => {
                    seen.insert(path, (name.to_string(), strip(&s)));
                }
            }
        }
    }
    for s in ["RadiologistReview", "SeniorReview", "PublishReport", "SubmitClaim", "AcquireSeries", "AssignReader"] {
        assert!(shared.contains(s), "{s} should be shared");
    }
}

fn history_states(e: &Engine, arn: &str) -> Vec<String> {
    e.store
        .history(arn, 0, 100_000, false)
        .expect("history")
        .iter()
        .filter(|ev| ev.event_type.ends_with("StateEntered"))
        .filter_map(|ev| ev.state_name().map(str::to_string))
        .collect()
}

/// The top-level state an execution is in (or stopped in), from its history.
fn current_state(e: &Engine, row: &ExecutionSummary) -> String {
    let machine = row.state_machine_arn.rsplit(':').next().unwrap_or_default();
    let def = sim::definitions().into_iter().find(|(n, _)| *n == machine).map(|(_, d)| d).unwrap_or_default();
    let top = sim::top_level_states(def);
    history_states(e, &row.arn).into_iter().rev().find(|s| top.contains(s)).unwrap_or_default()
}

fn all_rows(e: &Engine) -> Vec<ExecutionSummary> {
    e.store.executions(&ExecutionFilter { limit: 100_000, ..ExecutionFilter::default() }).expect("executions")
}

/// Advance the virtual clock in `step` increments up to `until`, ticking the demo each time.
fn run_until(e: &mut Engine, demo: &mut Demo, until: DateTime<Utc>, step: Duration) -> Vec<usize> {
    let mut pending_stat = vec![];
    let mut t = e.clock.now();
    while t < until {
        t += step;
        e.clock.advance_to(t);
        demo.tick(e).expect("tick");
        let stat = e
            .store
            .tokens(Some("PENDING"), None, 10_000)
            .expect("tokens")
            .iter()
            .filter(|t| t.state_name == "RadiologistReview" && t.parameters.contains("\"STAT\""))
            .count();
        pending_stat.push(stat);
    }
    pending_stat
}

/// Drive engine work only (no new orders, no simulated readers) for `span` of engine time.
fn drain(e: &mut Engine, span: Duration, step: Duration) {
    let mut t = e.clock.now();
    let until = t + span;
    while t < until {
        t += step;
        e.clock.advance_to(t);
        while e.run_due(1024).expect("run_due") > 0 {}
    }
}

fn quick_input(family: Family, n: u64) -> Value {
    let rates = DemoConfig::default().rates;
    let mut o = workload::synthetic_order(11, n, family, &workload::Timing::quick(), &rates);
    o["faults"] = json!({"cancelled": false, "discontinued": false, "archiveBusy": 1, "archiveRejects": false, "claimDenied": false,
                         "contextMismatch": true, "archiveOutage": null, "clearinghouseDown": null});
    o
}

/// Each machine, started on its own, reaches its happy end when every gate is approved.
#[test]
fn every_machine_runs_to_its_end() {
    let mut e = engine();
    let base = quick_input(Family::Scheduled, 1);
    let mut gate_input = base.clone();
    gate_input["assignment"] = json!({"reviewerGroup": "body", "readerSite": "MAIN", "crossSite": false});
    let mut publish_input = base.clone();
    publish_input["report"] = json!({"reportId": "RPT-1"});
    let cases = [
        ("scheduled-imaging", base, "Reconciled"),
        ("encounter-imaging", quick_input(Family::Encounter, 2), "Reconciled"),
        ("teleradiology", quick_input(Family::Teleradiology, 3), "Reconciled"),
        ("ai-review-gate", gate_input, "SignReport"),
        ("report-publication", publish_input, "PublishReport"),
        ("billing", quick_input(Family::Scheduled, 5), "Reconciled"),
    ];
    let mut arns = vec![];
    for (machine, input, _) in &cases {
        arns.push(e.start_execution(machine, Some(&format!("run-{machine}")), &input.to_string()).expect("start").arn);
    }
    for _ in 0..200 {
        let now = e.clock.now() + Duration::seconds(1);
        e.clock.advance_to(now);
        while e.run_due(1024).expect("run_due") > 0 {}
        for t in e.store.tokens(Some("PENDING"), None, 100).expect("tokens") {
            e.send_task_success(&t.token, r#"{"approved": true, "reviewer": "dr.test"}"#).expect("approve");
        }
    }
    for ((machine, _, last), arn) in cases.iter().zip(&arns) {
        let row = e.store.execution(arn).expect("row").expect("exists");
        assert_eq!(row.status, ExecutionStatus::Succeeded, "{machine}: {:?} {:?}", row.error, row.cause);
        let states = history_states(&e, arn);
        assert_eq!(states.last().map(String::as_str), Some(*last), "{machine}");
        if *machine == "teleradiology" {
            assert!(states.contains(&"FetchPriors".to_string()) && states.contains(&"AssignRemoteReader".to_string()));
            let out: Value = serde_json::from_str(row.output.as_deref().unwrap_or("{}")).expect("output");
            assert!(out["priors"].is_object() && out["assignment"]["crossSite"] == true, "{out}");
        }
        if *machine == "encounter-imaging" {
            assert!(states.contains(&"HoldForReconciliation".to_string()), "a mismatch waits for a person");
        }
    }
}

/// A review left unanswered escalates to the senior reader; a rejection goes to manual dictation.
#[test]
fn review_gate_escalates_and_reworks() {
    let mut e = engine();
    let mut input = quick_input(Family::Scheduled, 4);
    input["assignment"] = json!({"reviewerGroup": "neuroradiology"});
    let a = e.start_execution("ai-review-gate", Some("escalates"), &input.to_string()).expect("start").arn;
    let b = e.start_execution("ai-review-gate", Some("reworks"), &input.to_string()).expect("start").arn;
    drain(&mut e, Duration::seconds(3), Duration::seconds(1));
    let tok =
        |e: &Engine, arn: &str| e.store.tokens(Some("PENDING"), Some(arn), 10).expect("tokens").into_iter().next().expect("a pending gate");
    let tb = tok(&e, &b);
    e.send_task_failure(&tb.token, Some("Review.Rejected"), Some("draft misses a finding")).expect("reject");
    drain(&mut e, Duration::seconds(70), Duration::seconds(1));
    let ta = tok(&e, &a);
    assert_eq!(ta.state_name, "SeniorReview");
    assert!(ta.parameters.contains("on-call-senior") && ta.heartbeat.is_some());
    e.send_task_heartbeat(&ta.token).expect("claim");
    e.send_task_success(&ta.token, r#"{"reviewer": "dr.senior"}"#).expect("approve");
    drain(&mut e, Duration::seconds(5), Duration::seconds(1));
    for arn in [&a, &b] {
        let row = e.store.execution(arn).expect("row").expect("exists");
        assert_eq!(row.status, ExecutionStatus::Succeeded, "{arn}: {:?}", row.cause);
    }
    assert!(history_states(&e, &b).contains(&"DictateManually".to_string()));
    let out: Value =
        serde_json::from_str(e.store.execution(&a).expect("row").expect("exists").output.as_deref().unwrap_or("{}")).expect("json");
    assert_eq!(out["signed"]["signedBy"], "dr.senior");
}

struct DayOutcome {
    rows: Vec<ExecutionSummary>,
    states: BTreeMap<String, String>,
    pending_stat_max: usize,
}

fn simulate_day(seed: u64) -> (Engine, Demo, DayOutcome) {
    let mut e = engine();
    let cfg = DemoConfig { per_hour: [10.0, 2.0, 3.0], ..DemoConfig::new(seed, 60.0) };
    let mut demo = Demo::with_config(cfg);
    // At 60x a simulated day is 24 engine minutes; tick once per simulated minute.
    let pending = run_until(&mut e, &mut demo, start_time() + Duration::minutes(24), Duration::seconds(1));
    let rows = all_rows(&e);
    let states = rows.iter().map(|r| (r.name.clone(), current_state(&e, r))).collect();
    (e, demo, DayOutcome { rows, states, pending_stat_max: pending.into_iter().max().unwrap_or(0) })
}

#[test]
fn a_simulated_day() {
    let (mut e, demo, day) = simulate_day(42);
    assert!(day.rows.len() > 250, "{} studies", day.rows.len());
    let map = sim::stage_map();

    // Studies in every stage, in flight at the end of the day.
    let mut by_stage: BTreeMap<Stage, usize> = BTreeMap::new();
    let mut exceptions: BTreeMap<Exception, usize> = BTreeMap::new();
    for r in &day.rows {
        let machine = r.state_machine_arn.rsplit(':').next().unwrap_or_default();
        let state = &day.states[&r.name];
        let error = match r.status {
            ExecutionStatus::Running => None,
            ExecutionStatus::Succeeded => None,
            s => Some(r.error.clone().unwrap_or_else(|| s.as_str().to_string())),
        };
        if let Some(x) = sim::exception_of(machine, error.as_deref(), state) {
            *exceptions.entry(x).or_default() += 1;
        } else if r.status == ExecutionStatus::Running {
            *by_stage.entry(map.stage(machine, state).expect("every state has a stage")).or_default() += 1;
        }
    }
    for stage in Stage::ALL {
        assert!(by_stage.get(&stage).is_some_and(|n| *n > 0), "no study in flight at {stage:?}: {by_stage:?}");
    }
    let finished = day.rows.iter().filter(|r| r.status == ExecutionStatus::Succeeded && day.states[&r.name] == "Reconciled").count();
    assert!(finished > 20, "{finished} studies fully reconciled");
    for x in [
        Exception::OrderCancelled,
        Exception::AcquisitionDiscontinued,
        Exception::PublicationFailed,
        Exception::ClaimDenied,
        Exception::Failed,
    ] {
        assert!(exceptions.get(&x).is_some_and(|n| *n > 0), "no {x:?}: {exceptions:?}");
    }

    // Critical findings went round the closed loop: communicated, then acknowledged by the
    // simulated ordering clinicians, before publication; never for a study without one.
    let looped: Vec<&ExecutionSummary> = day
        .rows
        .iter()
        .filter(|r| {
            let exited = e.store.history(&r.arn, 0, 100_000, false).expect("history");
            exited.iter().any(|ev| ev.event_type == "TaskStateExited" && ev.state_name() == Some("AcknowledgeCriticalResult"))
        })
        .collect();
    assert!(looped.len() >= 3, "{} studies acknowledged a critical result", looped.len());
    for r in &looped {
        let input: Value = serde_json::from_str(&r.input).expect("input");
        assert_eq!(input["criticalFinding"], true, "{}", r.name);
        let states = history_states(&e, &r.arn);
        let at = |s: &str| states.iter().position(|x| x == s);
        assert!(at("SignReport") < at("CommunicateCriticalResult") && at("AcknowledgeCriticalResult") < at("PublishReport"), "{states:?}");
    }
    let slos = lightbox::ops::slo::check_all(&lightbox::ops::slo::demo_defaults()).expect("slos");
    let clocks = lightbox::engine::slo_watch::load(&e.store, &slos, e.clock.now(), Duration::days(2)).expect("clocks");
    let acknowledged =
        clocks.iter().filter(|c| c.slo == "critical-result" && c.stage == Some(lightbox::ops::slo::LoopStage::Acknowledged)).count();
    assert_eq!(acknowledged, looped.len(), "each acknowledged loop closed its critical-result clock");

    // A queue is left for the humans, STAT reviews among it during the day.
    let pending = e.store.tokens(Some("PENDING"), None, 10_000).expect("tokens");
    assert!(pending.iter().filter(|t| t.state_name == "RadiologistReview").count() >= 3, "{} pending", pending.len());
    assert!(day.pending_stat_max >= 1);

    // Failures from the outage windows: redrive recovers them once the windows are over.
    let windows_over = demo.outages().iter().map(|(_, _, until)| *until).max().expect("fault windows");
    assert!(e.clock.now() > windows_over);
    let outage: Vec<&ExecutionSummary> = day
        .rows
        .iter()
        .filter(|r| r.status == ExecutionStatus::Failed)
        .filter(|r| matches!(r.error.as_deref(), Some("Archive.Unavailable" | "Clearinghouse.Unavailable")))
        .collect();
    let kinds: BTreeSet<&str> = outage.iter().filter_map(|r| r.error.as_deref()).collect();
    assert_eq!(kinds.len(), 2, "both outages should leave failures: {kinds:?}");
    for r in &outage {
        let row = e.redrive_execution(&r.arn).expect("redrive");
        assert_ne!(row.status, ExecutionStatus::Failed, "{}: {:?}", r.name, row.error);
    }
    // A simulated day later every redriven study is financially complete, or a claim denial.
    drain(&mut e, Duration::minutes(24), Duration::seconds(5));
    for r in &outage {
        let row = e.store.execution(&r.arn).expect("row").expect("exists");
        assert_eq!(row.redrive_count, 1);
        match row.status {
            ExecutionStatus::Succeeded => assert_eq!(current_state(&e, &row), "Reconciled"),
            _ => assert_eq!(row.error.as_deref(), Some("Billing.ClaimDenied"), "{}: {:?} {:?}", r.name, row.status, row.cause),
        }
    }
}

#[test]
fn same_seed_same_day() {
    let summary = |seed: u64| {
        let mut e = engine();
        let mut demo = Demo::with_config(DemoConfig { per_hour: [12.0, 3.0, 3.0], ..DemoConfig::new(seed, 120.0) });
        run_until(&mut e, &mut demo, start_time() + Duration::minutes(3), Duration::seconds(1));
        let mut rows: Vec<(String, String, Option<String>, String)> =
            all_rows(&e).into_iter().map(|r| (r.name.clone(), r.status.as_str().to_string(), r.error.clone(), r.input.clone())).collect();
        rows.sort();
        rows
    };
    let a = summary(9);
    assert!(a.len() > 50);
    assert_eq!(a, summary(9));
    assert_ne!(a, summary(10));
}

#[test]
fn generated_patients_are_synthetic() {
    let mut e = engine();
    let mut demo = Demo::new(7, 60.0);
    run_until(&mut e, &mut demo, start_time() + Duration::minutes(4), Duration::seconds(2));
    let rows = all_rows(&e);
    assert!(rows.len() > 50);
    for r in &rows {
        let input: Value = serde_json::from_str(&r.input).expect("input");
        assert!(sim::is_demo_input(&input), "{}", r.name);
        let mrn = input["patient"]["mrn"].as_str().unwrap_or_default();
        assert!(mrn.starts_with("SYN-"), "{mrn}");
        let family = input["patient"]["family"].as_str().unwrap_or_default();
        assert!(workload::SYNTHETIC_FAMILY_NAMES.contains(&family), "{family}");
        assert!(input["patient"]["name"].as_str().is_some_and(|n| n.ends_with(family)));
        assert!(input["orderingPhysician"]["npi"].as_str().is_some_and(|n| n.starts_with('9')), "NPIs outside the issued range");
    }
}
