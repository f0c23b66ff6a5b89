//! Escalation ladders, dependency breakers and holds: the engine on a real SQLite store
//! (virtual clock where time matters) and the real `lightbox` binary for the CLI twins.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use chrono::{Duration, TimeZone, Utc};
use common::Lb;
use lightbox::audit::{self, AuditFilter};
use lightbox::engine::core::TaskError;
use lightbox::engine::dependencies::{DependencyConfig, DependencyMatch};
use lightbox::engine::escalation::EscalationConfig;
use lightbox::engine::tasks::TaskRunner;
use lightbox::engine::{Clock, Engine};
use lightbox::history::ExecutionStatus;
use lightbox::store::Store;
use serde_json::{Value, json};

fn gate() -> Value {
    json!({
        "StartAt": "RadiologistReview",
        "States": {
            "RadiologistReview": {
                "Type": "Task",
                "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken",
                "Parameters": {"FunctionName": "echo", "Payload": {"token.$": "$$.Task.Token"}},
                "TimeoutSeconds": 600,
                "Catch": [{"ErrorEquals": ["Review.Escalated"], "ResultPath": "$.escalation", "Next": "SeniorReview"}],
                "Next": "Signed"
            },
            "SeniorReview": {"Type": "Pass", "Result": "senior", "ResultPath": "$.by", "End": true},
            "Signed": {"Type": "Pass", "End": true}
        }
    })
}

fn claims() -> Value {
    json!({
        "StartAt": "SubmitClaim",
        "States": {
            "SubmitClaim": {
                "Type": "Task",
                "Resource": "arn:aws:states:::lambda:invoke",
                "Parameters": {"FunctionName": "submit-claim", "Payload": {}},
                "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "ManualQueue"}],
                "End": true
            },
            "ManualQueue": {"Type": "Pass", "End": true}
        }
    })
}

fn t0() -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 25, 10, 0, 0).single().expect("time")
}

fn outbox(store: &Store, detail_type: &str) -> Vec<Value> {
    store
        .outbox(false, 100_000)
        .expect("outbox")
        .into_iter()
        .filter_map(|r| serde_json::from_str::<Value>(&r.payload).ok())
        .filter(|e| e["detail-type"] == detail_type)
        .collect()
}

fn audit_rows(store: &Store) -> Vec<audit::AuditRecord> {
    audit::list(store.conn(), &AuditFilter { limit: 1000, ..AuditFilter::default() }).expect("audit")
}

fn clearinghouse() -> DependencyConfig {
    DependencyConfig {
        name: "clearinghouse".into(),
        matches: DependencyMatch { handler: Some("submit-claim".into()), host: None },
        failures: 5,
        window: "1m".into(),
        open_for: "15m".into(),
    }
}

#[test]
fn a_ladder_notifies_once_then_fails_the_token_with_review_escalated_and_the_catch_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(&dir.path().join("lightbox.db")).expect("store");
    let clock = Clock::virtual_at(t0());
    let mut engine = Engine::new(store, TaskRunner::new(), clock.clone());
    engine.escalation = vec![
        toml::from_str::<EscalationConfig>(
            r#"state = "RadiologistReview"
               machine = "gate"
               when = { "$.priority" = "STAT" }
               steps = [ { at = 0.5, notify = "pager", format = "pagerduty" }, { at = 0.9, fail = "Review.Escalated" } ]"#,
        )
        .expect("ladder"),
    ];
    let sm = engine.create_state_machine("gate", &gate().to_string(), None).expect("create");
    let stat = engine.start_execution(&sm.arn, Some("stat"), r#"{"priority":"STAT"}"#).expect("start");
    let routine = engine.start_execution(&sm.arn, Some("routine"), r#"{"priority":"ROUTINE"}"#).expect("start");

    // Before half the timeout: nothing.
    clock.advance_to(t0() + Duration::seconds(299));
    engine.run_due(64).expect("tick");
    assert!(outbox(&engine.store, "Review Escalation Notice").is_empty());
    // At half: one PagerDuty notice, for the STAT study only, however many ticks follow.
    for s in [300, 302, 400] {
        clock.advance_to(t0() + Duration::seconds(s));
        engine.run_due(64).expect("tick");
    }
    let notices = outbox(&engine.store, "Review Escalation Notice");
    assert_eq!(notices.len(), 1, "{notices:?}");
    assert_eq!(notices[0]["detail"]["event_action"], "trigger");
    assert_eq!(notices[0]["resources"][0], stat.arn.as_str());
    assert_eq!(engine.store.execution(&stat.arn).expect("row").expect("row").status, ExecutionStatus::Running);

    // At 90 %: the token fails with Review.Escalated and the gate's Catch routes it.
    clock.advance_to(t0() + Duration::seconds(540));
    engine.run_due(64).expect("tick");
    clock.advance_to(t0() + Duration::seconds(545));
    engine.run_due(64).expect("tick");
    let done = engine.store.execution(&stat.arn).expect("row").expect("row");
    assert_eq!(done.status, ExecutionStatus::Succeeded);
    let out: Value = serde_json::from_str(done.output.as_deref().expect("output")).expect("json");
    assert_eq!(out["by"], "senior");
    assert_eq!(out["escalation"]["Error"], "Review.Escalated");
    assert_eq!(engine.store.execution(&routine.arn).expect("row").expect("row").status, ExecutionStatus::Running);

    let escalated = outbox(&engine.store, "Review Escalated");
    assert_eq!(escalated.len(), 1);
    assert_eq!(escalated[0]["detail"]["automatic"], true);
    assert_eq!(escalated[0]["detail"]["ladderStep"], 2);
    let rows = audit_rows(&engine.store);
    let auto: Vec<_> = rows.iter().filter(|r| r.actor == "lightbox" && r.source == "engine").collect();
    assert_eq!(auto.iter().filter(|r| r.action == "escalation-notice").count(), 1, "{rows:?}");
    assert_eq!(auto.iter().filter(|r| r.action == "escalate").count(), 1, "{rows:?}");
    // No row or event holds the full token.
    let token = engine.store.tokens(None, Some(&stat.arn), 10).expect("tokens")[0].token.clone();
    assert!(escalated.iter().chain(notices.iter()).all(|e| !e.to_string().contains(&token)));
}

/// A ladder's notices reach the sink they name in its own shape, through the real relay: a
/// PagerDuty webhook on loopback gets the bare Events v2 body (routing key from config, the
/// event id as Idempotency-Key) and nothing else; the archive gets every event's envelope,
/// the notice's included.
#[test]
fn a_notice_reaches_its_pagerduty_webhook_as_a_bare_body_and_the_archive_as_an_envelope() {
    let receiver = common::receiver::Receiver::start(std::time::Duration::ZERO);
    let dir = tempfile::tempdir().expect("tempdir");
    let outbox: lightbox::outbox::OutboxConfig = toml::from_str(&format!(
        r#"[[sinks]]
           name = "pager"
           kind = "webhook"
           url = "{}"
           format = "pagerduty"
           routing_key = "PDKEY-0123456789"
           [[sinks]]
           name = "archive"
           kind = "ndjson"
           path = "events.ndjson""#,
        receiver.url
    ))
    .expect("sinks");
    let sinks = outbox.sinks(dir.path()).expect("valid sinks");
    let store = Store::open(&dir.path().join("lightbox.db")).expect("store");
    let clock = Clock::virtual_at(t0());
    let mut engine = Engine::new(store, TaskRunner::new(), clock.clone());
    let mut ladders = vec![
        toml::from_str::<EscalationConfig>(
            r#"state = "RadiologistReview"
               steps = [ { at = 0.5, notify = "pager" } ]"#,
        )
        .expect("ladder"),
    ];
    lightbox::engine::escalation::check_sinks(&mut ladders, &sinks).expect("the sink exists");
    assert_eq!(ladders[0].steps[0].format.as_deref(), Some("pagerduty"), "the step takes the sink's format");
    engine.escalation = ladders;
    let sm = engine.create_state_machine("gate", &gate().to_string(), None).expect("create");
    let ex = engine.start_execution(&sm.arn, Some("one"), r#"{"priority":"ROUTINE"}"#).expect("start");
    clock.advance_to(t0() + Duration::seconds(301));
    engine.run_due(64).expect("tick");

    lightbox::outbox::ensure(engine.store.conn(), &sinks).expect("ensure");
    let mut publishers: Vec<_> = sinks.iter().map(lightbox::outbox::sink::publisher).collect();
    for _ in 0..3 {
        lightbox::outbox::relay_once(engine.store.conn(), &sinks, &mut publishers).expect("relay");
    }
    let bodies = receiver.delivered_bodies();
    assert_eq!(bodies.len(), 1, "only the notice, once: {bodies:?}");
    let pd = &bodies[0];
    assert_eq!(pd["routing_key"], "PDKEY-0123456789");
    assert_eq!(pd["event_action"], "trigger");
    assert_eq!(pd["payload"]["severity"], "critical");
    assert_eq!(pd["payload"]["source"], "lightbox");
    assert!(pd["payload"]["summary"].as_str().is_some_and(|s| s.contains("RadiologistReview")), "{pd}");
    assert!(pd["dedup_key"].as_str().is_some_and(|k| !k.is_empty()));
    assert!(pd.get("lightbox").is_none() && pd.get("detail-type").is_none(), "a bare body: {pd}");
    assert_eq!(pd["payload"]["custom_details"]["executionArn"], ex.arn.as_str());
    let keys = receiver.delivered_keys();
    assert!(keys[0].starts_with("escalation-notice:"), "{keys:?}");

    let text = std::fs::read_to_string(dir.path().join("events.ndjson")).expect("archive");
    let events: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).expect("json")).collect();
    let notice: Vec<&Value> = events.iter().filter(|e| e["detail-type"] == "Review Escalation Notice").collect();
    assert_eq!(notice.len(), 1, "{text}");
    assert_eq!(notice[0]["source"], "lightbox");
    assert_eq!(notice[0]["detail"]["lightbox"]["sink"], "pager");
    assert!(events.iter().any(|e| e["detail-type"] == "Step Functions Execution Status Change"), "every event: {text}");
    // The routing key went out with the notice only; it is in no stored row or file.
    assert!(!text.contains("PDKEY-0123456789"));
    let stored = engine.store.outbox(false, 1000).expect("rows");
    assert!(stored.iter().all(|r| !r.payload.contains("PDKEY-0123456789")));
    let listed = lightbox::outbox::status(engine.store.conn(), &sinks, chrono::Utc::now().timestamp_millis()).expect("status");
    assert_eq!((listed[0].backlog, listed[0].delivered, listed[1].backlog), (0, 1, 0), "{listed:?}");
}

#[test]
fn a_notify_must_name_a_configured_sink_of_a_fitting_format() {
    let lb = Lb::new();
    let sinks = "[[outbox.sinks]]\nname = \"pager\"\nkind = \"ndjson\"\npath = \"p.ndjson\"\nformat = \"pagerduty\"\n";
    for (text, want) in [
        (
            format!("{sinks}[[escalation]]\nstate = \"Review\"\nsteps = [{{ at = 0.5, notify = \"pagr\" }}]\n"),
            "escalation[0].steps[0].notify \"pagr\" names no sink",
        ),
        (
            format!("{sinks}[[escalation]]\nstate = \"Review\"\nsteps = [{{ at = 0.5, notify = \"pager\", format = \"slack\" }}]\n"),
            "escalation[0].steps[0].format \"slack\" does not fit sink \"pager\"",
        ),
        // No sinks of its own and no demo: nothing to notify.
        ("[[escalation]]\nstate = \"Review\"\nsteps = [{ at = 0.5, notify = \"pager\" }]\n".to_string(), "none is configured"),
    ] {
        let cfg = lb.file("bad.toml", &text);
        let err = lb.fails(&["--config", &cfg, "dependencies", "list"]);
        assert!(err.contains(want), "{want}: {err}");
    }
    let good = lb.file("good.toml", &format!("{sinks}[[escalation]]\nstate = \"Review\"\nsteps = [{{ at = 0.5, notify = \"pager\" }}]\n"));
    lb.ok(&["--config", &good, "dependencies", "list"]);
}

#[test]
fn a_breaker_opens_after_five_failures_fails_fast_then_a_half_open_trial_closes_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(&dir.path().join("lightbox.db")).expect("store");
    let clock = Clock::virtual_at(t0());
    let calls = Arc::new(AtomicUsize::new(0));
    let up = Arc::new(AtomicUsize::new(0));
    let mut tasks = TaskRunner::new();
    let (c, u) = (calls.clone(), up.clone());
    tasks.register("submit-claim", move |_| {
        c.fetch_add(1, Ordering::SeqCst);
        if u.load(Ordering::SeqCst) == 1 {
            Ok(json!({"ack": "999 A"}))
        } else {
            Err(TaskError { error: "Clearinghouse.Unavailable".into(), cause: "down".into() })
        }
    });
    let mut engine = Engine::new(store, tasks, clock.clone());
    engine.dependencies = vec![clearinghouse()];
    let sm = engine.create_state_machine("claims", &claims().to_string(), None).expect("create");
    let error_of = |engine: &Engine, arn: &str| -> String {
        let row = engine.store.execution(arn).expect("row").expect("row");
        assert_eq!(row.status, ExecutionStatus::Succeeded, "the Catch sends it to the manual queue");
        let out: Value = serde_json::from_str(row.output.as_deref().expect("output")).expect("json");
        out["error"]["Error"].as_str().unwrap_or_default().to_string()
    };
    for i in 0..5 {
        clock.advance_to(t0() + Duration::seconds(i));
        let e = engine.start_execution(&sm.arn, Some(&format!("c{i}")), "{}").expect("start");
        assert_eq!(error_of(&engine, &e.arn), "Clearinghouse.Unavailable");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 5);
    assert_eq!(outbox(&engine.store, "Dependency Breaker Opened").len(), 1);
    // Open: fail fast, the clearinghouse is not called.
    clock.advance_to(t0() + Duration::minutes(10));
    let e = engine.start_execution(&sm.arn, Some("fast"), "{}").expect("start");
    assert_eq!(error_of(&engine, &e.arn), "Lightbox.CircuitOpen");
    assert_eq!(calls.load(Ordering::SeqCst), 5);
    let listed = lightbox::engine::dependencies::dependencies(&engine.store, &engine.dependencies, clock.now()).expect("list");
    assert_eq!(listed[0].breaker, "OPEN");
    assert_eq!(listed[0].open_seconds_left, Some(5 * 60 + 4));

    // After open_for: one trial; it fails, so the breaker opens again.
    clock.advance_to(t0() + Duration::seconds(4) + Duration::minutes(15));
    let e = engine.start_execution(&sm.arn, Some("trial1"), "{}").expect("start");
    assert_eq!(error_of(&engine, &e.arn), "Clearinghouse.Unavailable");
    assert_eq!(calls.load(Ordering::SeqCst), 6);
    let e = engine.start_execution(&sm.arn, Some("fast2"), "{}").expect("start");
    assert_eq!(error_of(&engine, &e.arn), "Lightbox.CircuitOpen");
    // The clearinghouse answers again: the next trial closes the breaker.
    up.store(1, Ordering::SeqCst);
    clock.advance_to(t0() + Duration::minutes(40));
    let e = engine.start_execution(&sm.arn, Some("trial2"), "{}").expect("start");
    assert_eq!(engine.store.execution(&e.arn).expect("row").expect("row").status, ExecutionStatus::Succeeded);
    assert_eq!(outbox(&engine.store, "Dependency Breaker Closed").len(), 1);
    assert_eq!(outbox(&engine.store, "Dependency Breaker Opened").len(), 2);
    let rows = audit_rows(&engine.store);
    assert_eq!(rows.iter().filter(|r| r.action == "breaker-open" && r.actor == "lightbox").count(), 2, "{rows:?}");
    assert_eq!(rows.iter().filter(|r| r.action == "breaker-close").count(), 1, "{rows:?}");
}

fn config(lb: &Lb) -> String {
    lb.file(
        "config.toml",
        r#"
[[dependencies]]
name = "echo-service"
match = { handler = "echo" }
"#,
    )
}

#[test]
fn a_hold_makes_tasks_wait_durably_and_release_resumes_them_all_audited() {
    let lb = Lb::as_user("dr.ops");
    let cfg = config(&lb);
    let def = lb.file(
        "m.json",
        &json!({"StartAt": "Call", "States": {"Call": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
            "Parameters": {"FunctionName": "echo", "Payload": {"x": 1}}, "End": true}}}),
    );
    let c = |args: &[&str]| -> Vec<String> {
        let mut v = vec!["--config".to_string(), cfg.clone()];
        v.extend(args.iter().map(|s| s.to_string()));
        v
    };
    let json_of = |args: &[&str]| -> Value {
        let a = c(args);
        lb.json(&a.iter().map(String::as_str).collect::<Vec<_>>())
    };
    json_of(&["state-machines", "create", "--name", "m", "--definition", &def]);
    let err = lb.fails(
        &c(&["dependencies", "hold", "nope", "--reason-code", "operations-incident", "--reason", "vendor maintenance window"])
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    assert!(err.contains("no dependency named"), "{err}");
    let held =
        json_of(&["dependencies", "hold", "echo-service", "--reason-code", "operations-incident", "--reason", "vendor maintenance window"]);
    assert_eq!(held["changed"], true);

    let started = json_of(&["executions", "start", "--state-machine", "m", "--name", "e1", "--input-json", "{}"]);
    let arn = started["executionArn"].as_str().expect("arn").to_string();
    // The task waits: the execution runs on, nothing was dispatched, the engine does not fail it.
    let a = c(&["engine", "--seconds", "1"]);
    lb.ok(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(json_of(&["executions", "describe", &arn])["status"], "RUNNING");
    let list = json_of(&["dependencies", "list"]);
    assert_eq!(list[0]["name"], "echo-service");
    assert_eq!(list[0]["held"], true);
    assert_eq!(list[0]["heldBy"], "dr.ops");
    assert_eq!(list[0]["waiting"], 1);
    assert_eq!(list[0]["breaker"], "CLOSED");

    let released = json_of(&[
        "dependencies",
        "release",
        "echo-service",
        "--reason-code",
        "operations-incident",
        "--reason",
        "vendor confirmed it is back",
    ]);
    assert_eq!(released["detail"]["resumed"], 1);
    let a = c(&["engine", "--seconds", "1"]);
    lb.ok(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(json_of(&["executions", "describe", &arn])["status"], "SUCCEEDED");
    assert_eq!(json_of(&["dependencies", "list"])[0]["waiting"], 0);

    let reset = json_of(&["dependencies", "reset", "echo-service", "--reason-code", "operations-incident", "--reason", "checked by hand"]);
    assert_eq!(reset["changed"], false, "a closed breaker needs no reset");

    let audit = json_of(&["audit", "list"]);
    let entries = audit["entries"].as_array().cloned().unwrap_or_default();
    let rows = |action: &str, result: &str| {
        entries.iter().filter(|e| e["action"] == action && e["result"] == result && e["actor"] == "dr.ops" && e["source"] == "cli").count()
    };
    for action in ["dependency-hold", "dependency-release", "dependency-reset"] {
        assert_eq!(rows(action, "ok"), 1, "{action} in {audit}");
    }
    // The refused hold of an unknown dependency is on record too.
    assert_eq!(rows("dependency-hold", "error"), 1, "{audit}");
    let store = Store::open_read_only(&lb.db()).expect("store");
    assert_eq!(outbox(&store, "Dependency Held").len(), 1);
    assert_eq!(outbox(&store, "Dependency Released").len(), 1);
}

#[test]
fn escalating_by_hand_takes_reason_or_the_old_cause_and_writes_one_event_and_audit_row() {
    let lb = Lb::as_user("dr.b");
    let def = lb.file("gate.json", &gate());
    lb.json(&["state-machines", "create", "--name", "gate", "--definition", &def]);
    let mut arns = vec![];
    for (name, flag) in [("a", "--reason"), ("b", "--cause")] {
        let s = lb.json(&["executions", "start", "--state-machine", "gate", "--name", name, "--input-json", "{}"]);
        let arn = s["executionArn"].as_str().expect("arn").to_string();
        let tasks = lb.json(&["tasks", "list"])["tasks"].as_array().cloned().unwrap_or_default();
        let token = tasks.iter().find(|t| t["executionArn"] == arn.as_str()).expect("task")["taskToken"].as_str().expect("t").to_string();
        lb.json(&["tasks", "escalate", &token, "--reason-code", "operations-incident", flag, "reader unavailable for this study"]);
        let d = lb.json(&["executions", "describe", &arn]);
        assert_eq!(d["status"], "SUCCEEDED");
        arns.push(arn);
    }
    let store = Store::open_read_only(&lb.db()).expect("store");
    let ev = outbox(&store, "Review Escalated");
    assert_eq!(ev.len(), 2);
    for (e, arn) in ev.iter().zip(&arns) {
        assert_eq!(e["source"], "lightbox");
        assert_eq!(e["detail"]["executionArn"], arn.as_str());
        assert_eq!(e["detail"]["automatic"], false);
        assert_eq!(e["detail"]["reason"], "[operations-incident] reader unavailable for this study", "the code travels with the cause");
        assert_eq!(e["detail"]["by"], "dr.b");
    }
    let rows = audit_rows(&store);
    assert_eq!(rows.iter().filter(|r| r.action == "escalate" && r.actor == "dr.b" && r.result == "ok").count(), 2, "{rows:?}");
}

#[test]
fn a_bad_ladder_or_dependency_in_the_config_is_refused_naming_the_key() {
    let lb = Lb::new();
    for (text, key) in [
        ("[[dependencies]]\nname = \"x\"\nmatch = { handler = \"echo\" }\nwindow = \"soon\"\n", "dependencies[0].window"),
        ("[[escalation]]\nstate = \"Review\"\nsteps = [{ at = 1.5, fail = \"\" }]\n", "escalation[0].steps[0].at"),
        ("[[escalation]]\nstate = \"Review\"\nsteps = [{ after = \"10m\" }]\n", "escalation[0].steps[0]"),
    ] {
        let cfg = lb.file("bad.toml", text);
        let err = lb.fails(&["--config", &cfg, "dependencies", "list"]);
        assert!(err.contains(key), "{key}: {err}");
    }
}

/// The demo's clearinghouse outage trips the demo's breaker: once it is open, claims fail fast
/// with Lightbox.CircuitOpen and the billing Catch sends them to the manual queue.
#[test]
fn the_demo_clearinghouse_outage_trips_the_breaker_and_claims_go_to_the_manual_queue() {
    use lightbox::sim::{self, DemoConfig, Family, workload};
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(&dir.path().join("lightbox.db")).expect("store");
    let clock = Clock::virtual_at(t0());
    let mut tasks = TaskRunner::new();
    sim::register_handlers(&mut tasks);
    let mut engine = Engine::new(store, tasks, clock.clone());
    sim::Demo::install(&mut engine).expect("install");
    let (ladders, deps) = sim::resilience_defaults();
    lightbox::engine::escalation::validate(&ladders).expect("ladders");
    lightbox::engine::dependencies::validate(&deps).expect("deps");
    engine.dependencies = deps;
    let rates = DemoConfig::default().rates;
    // Three claims in flight during the outage: each fails and retries (10 s, 20 s, 40 s).
    let mut arns = vec![];
    for n in 0..3 {
        let mut input = workload::synthetic_order(11, n, Family::Scheduled, &workload::Timing::quick(), &rates);
        input["faults"] = json!({"cancelled": false, "discontinued": false, "archiveBusy": 0, "archiveRejects": false,
            "claimDenied": false, "contextMismatch": false, "archiveOutage": null, "clearinghouseDown": true});
        arns.push(engine.start_execution("billing", Some(&format!("claim-{n}")), &input.to_string()).expect("start").arn);
    }
    for _ in 0..500 {
        while engine.run_due(64).expect("tick") > 0 {}
        if !engine.advance_virtual_clock().expect("clock") {
            break;
        }
        let running =
            arns.iter().filter(|a| engine.store.execution(a).ok().flatten().is_some_and(|r| r.status == ExecutionStatus::Running));
        if running.count() == 0 {
            break;
        }
    }
    // The fifth failure within the minute opened the breaker; every later attempt failed
    // fast and the billing Catch queued the claim for manual work instead of failing it.
    for arn in &arns {
        let row = engine.store.execution(arn).expect("row").expect("row");
        assert_eq!(row.status, ExecutionStatus::Succeeded, "{arn}: {:?}", row.error);
        let entered: Vec<String> = engine
            .store
            .history(arn, 0, 10_000, false)
            .expect("history")
            .iter()
            .filter(|e| e.event_type.ends_with("StateEntered"))
            .filter_map(|e| e.state_name().map(str::to_string))
            .collect();
        assert_eq!(entered.last().map(String::as_str), Some("ClaimQueuedManually"), "{entered:?}");
        let out: Value = serde_json::from_str(row.output.as_deref().expect("output")).expect("json");
        assert_eq!(out["claimError"]["Error"], "Lightbox.CircuitOpen");
    }
    assert_eq!(outbox(&engine.store, "Dependency Breaker Opened").len(), 1);
}
