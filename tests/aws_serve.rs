//! The AWS backend against a real `lightbox serve` (the binary, on 127.0.0.1 port 0), for the
//! calls moto lacks or gets wrong: RedriveExecution, SendTaskFailure's error and cause,
//! StopExecution of an execution waiting for its token, and the review queue read from the
//! execution log (`FilterLogEvents`). And one engine, many operators: two consoles (two local
//! stores) on one serve.

mod common;

use std::time::{Duration, Instant};

use common::Lb;
use common::serve::Serve;
use lightbox::backend::aws::{Aws, AwsContext};
use lightbox::backend::{Acting, ControlPlane};
use lightbox::history::ExecutionStatus;
use lightbox::model::PendingTask;
use serde_json::{Value, json};

impl Serve {
    /// A review machine: a Pass, then a callback (`.waitForTaskToken`) carrying the token in
    /// its payload (serve's built-in `echo` function). With `log_group`, it logs every event
    /// there (level ALL).
    fn review_machine(&self, name: &str, log_group: Option<&str>) -> String {
        let def = json!({"StartAt": "Prep", "States": {
            "Prep": {"Type": "Pass", "Result": {"study": "CT-1"}, "ResultPath": "$.prep", "Next": "Review"},
            "Review": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken",
                       "Parameters": {"FunctionName": "echo", "Payload": {"token.$": "$$.Task.Token", "accession.$": "$.accession"}},
                       "End": true}}});
        let mut body = json!({"name": name, "definition": def.to_string(), "roleArn": "arn:aws:iam::000000000000:role/lightbox"});
        if let Some(g) = log_group {
            body["loggingConfiguration"] = json!({"level": "ALL", "includeExecutionData": true, "destinations": [
                {"cloudWatchLogsLogGroup": {"logGroupArn": format!("arn:aws:logs:us-east-1:000000000000:log-group:{g}:*")}}]});
        }
        self.call("CreateStateMachine", body)["stateMachineArn"].as_str().expect("machine arn").to_string()
    }

    fn start_execution(&self, sm: &str, name: &str) -> String {
        let input = json!({"accession": name, "patient": {"name": "Dana Testperson"}}).to_string();
        let ex = self.call("StartExecution", json!({"stateMachineArn": sm, "name": name, "input": input}));
        ex["executionArn"].as_str().expect("execution arn").to_string()
    }
}

/// A local store of its own (claims, the audit log), as each console has.
fn local_store() -> (tempfile::TempDir, rusqlite::Connection) {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("lightbox.db");
    drop(lightbox::store::Store::open(&db).expect("store"));
    let conn = rusqlite::Connection::open(&db).expect("conn");
    (dir, conn)
}

fn connect(serve: &Serve, sm: &str, log_group: Option<&str>, conn: rusqlite::Connection) -> Aws {
    let cfg = AwsContext {
        region: Some("us-east-1".into()),
        endpoint_url: Some(serve.url.clone()),
        state_machines: vec![sm.to_string()],
        log_group: log_group.map(str::to_string),
        ..Default::default()
    };
    Aws::connect_with("serve", &cfg, Some(conn), Some(("test", "test")))
        .expect("connect")
        .with_pacing(Duration::from_millis(300), Duration::from_millis(300))
}

fn wait_for(cp: &mut Aws, what: &str, mut f: impl FnMut(&mut Aws) -> bool) {
    let end = Instant::now() + Duration::from_secs(40);
    while !f(cp) {
        assert!(Instant::now() < end, "{what}: not within 40 s (status {:?})", cp.pulse().map(|p| p.condition));
        std::thread::sleep(Duration::from_millis(300));
        cp.tick().expect("tick");
    }
}

fn task_of(cp: &mut Aws, arn: &str) -> Option<PendingTask> {
    cp.pending_tasks(100).expect("pending").into_iter().find(|t| t.execution_arn == arn)
}

fn has_event(cp: &mut Aws, arn: &str, event_type: &str) -> bool {
    cp.history(arn, 0, 1000).expect("history").iter().any(|e| e.event_type == event_type)
}

#[test]
fn a_rejected_review_fails_with_its_cause_is_redriven_and_then_approved() {
    let serve = Serve::start();
    let sm = serve.review_machine("rad-review", None);
    let arn = serve.start_execution(&sm, "ACC-7001");
    let (_dir, conn) = local_store();
    let mut cp = connect(&serve, &sm, None, conn);
    wait_for(&mut cp, "the pending callback", |cp| task_of(cp, &arn).is_some());
    let first = task_of(&mut cp, &arn).expect("task");
    assert_eq!(first.state_name, "Review");

    // SendTaskFailure keeps its error and cause: in the history and in DescribeExecution.
    cp.reject(&first.token, "Review.Rejected", "motion artefact on series 3", &Acting::user("dr.lee")).expect("SendTaskFailure");
    assert!(task_of(&mut cp, &arn).is_none(), "answered: off the queue at once");
    wait_for(&mut cp, "the execution to fail", |cp| has_event(cp, &arn, "ExecutionFailed"));
    let h = cp.history(&arn, 0, 1000).expect("history");
    let failed = h.iter().find(|e| e.event_type == "TaskFailed").expect("TaskFailed");
    assert_eq!(failed.details["error"], "Review.Rejected", "{failed:?}");
    assert_eq!(failed.details["cause"], "motion artefact on series 3", "{failed:?}");
    let row = cp.execution(&arn).expect("describe").expect("row");
    assert_eq!(row.status, ExecutionStatus::Failed);
    assert_eq!((row.error.as_deref(), row.cause.as_deref()), (Some("Review.Rejected"), Some("motion artefact on series 3")));

    // RedriveExecution: running again from the failed state, with a new callback.
    cp.redrive(&arn).expect("RedriveExecution");
    assert_eq!(cp.execution(&arn).expect("row").map(|r| r.status), Some(ExecutionStatus::Running));
    let d = serve.describe(&arn);
    assert_eq!((d["status"].as_str(), d["redriveCount"].as_i64()), (Some("RUNNING"), Some(1)), "{d}");
    wait_for(&mut cp, "the callback of the redriven execution", |cp| task_of(cp, &arn).is_some_and(|t| t.token != first.token));
    let second = task_of(&mut cp, &arn).expect("task");
    assert!(has_event(&mut cp, &arn, "ExecutionRedriven"));

    // Approved: the execution succeeds.
    cp.approve(&second.token, r#"{"approved": true}"#, &Acting::user("dr.lee")).expect("SendTaskSuccess");
    wait_for(&mut cp, "the execution to succeed", |cp| has_event(cp, &arn, "ExecutionSucceeded"));
    assert_eq!(serve.describe(&arn)["status"], "SUCCEEDED");
    assert_eq!(cp.execution(&arn).expect("row").map(|r| r.status), Some(ExecutionStatus::Succeeded));
    // The old token is gone: AWS's error, not a success.
    let e = cp.approve(&first.token, "{}", &Acting::user("dr.lee")).expect_err("a spent token");
    assert!(!e.to_string().is_empty());
}

/// The audit record's status after an answer: the cached RUNNING is stale as soon as the
/// callback is answered (nothing has told the cache otherwise), so `status_now` reads the
/// execution afresh — one DescribeExecution, counted by the limiter — and says when.
#[test]
fn the_status_after_an_approval_is_read_afresh_and_says_when() {
    let serve = Serve::start();
    let sm = serve.review_machine("rad-after", None);
    let arn = serve.start_execution(&sm, "ACC-7010");
    let (_dir, conn) = local_store();
    let mut cp = connect(&serve, &sm, None, conn);
    wait_for(&mut cp, "the pending callback", |cp| task_of(cp, &arn).is_some());
    let task = task_of(&mut cp, &arn).expect("task");
    // Read once, so the row is cached whole (with its input).
    assert_eq!(cp.execution(&arn).expect("row").map(|r| r.status), Some(ExecutionStatus::Running));
    let describes = |cp: &Aws| cp.calls().get("DescribeExecution").copied().unwrap_or(0);
    let before = describes(&cp);

    let answered_at = chrono::Utc::now();
    cp.approve(&task.token, r#"{"approved": true}"#, &Acting::user("dr.lee")).expect("SendTaskSuccess");
    // The callback was the last state: the engine behind serve has finished the execution.
    assert_eq!(serve.describe(&arn)["status"], "SUCCEEDED");
    // The cache alone still says RUNNING, without a call: that is what must not be audited.
    assert_eq!(cp.execution(&arn).expect("row").map(|r| r.status), Some(ExecutionStatus::Running));
    assert_eq!(describes(&cp), before, "the cached row answered");

    let now = cp.status_now(&arn).expect("status").expect("the execution exists");
    assert_eq!(now.status, ExecutionStatus::Succeeded, "{now:?}");
    assert!(now.as_of.is_some_and(|t| t >= answered_at), "as of the read after the answer: {now:?}");
    assert_eq!(now.last_known, None);
    assert_eq!(describes(&cp), before + 1, "one DescribeExecution, through the limiter");
    let after = now.to_json();
    assert_eq!(after["status"], "SUCCEEDED", "{after}");
    let as_of = after["asOf"].as_str().expect("asOf");
    assert!(chrono::DateTime::parse_from_rfc3339(as_of).is_ok(), "{after}");
    // The read refreshed the cache as well.
    assert_eq!(cp.execution(&arn).expect("row").map(|r| r.status), Some(ExecutionStatus::Succeeded));

    // An execution that does not exist has no status (not a stale one).
    let missing = arn.replace("ACC-7010", "ACC-none");
    assert_eq!(cp.status_now(&missing).expect("status"), None);
}

#[test]
fn an_execution_waiting_for_its_token_is_stopped() {
    let serve = Serve::start();
    let sm = serve.review_machine("rad-stop", None);
    let arn = serve.start_execution(&sm, "ACC-7002");
    let (_dir, conn) = local_store();
    let mut cp = connect(&serve, &sm, None, conn);
    wait_for(&mut cp, "the pending callback", |cp| task_of(cp, &arn).is_some());
    let task = task_of(&mut cp, &arn).expect("task");

    cp.stop(&arn, "Ops.Stopped", "wrong patient on the order").expect("StopExecution");
    assert!(task_of(&mut cp, &arn).is_none(), "a stopped execution's callback leaves the queue");
    let d = serve.describe(&arn);
    assert_eq!(d["status"], "ABORTED", "{d}");
    assert!(d["stopDate"].is_number() || d["stopDate"].is_string(), "{d}");
    wait_for(&mut cp, "the abort in the history", |cp| has_event(cp, &arn, "ExecutionAborted"));
    let row = cp.execution(&arn).expect("row").expect("row");
    assert_eq!(row.status, ExecutionStatus::Aborted);
    // Its token is dead: answering it is refused by the engine.
    let e = cp.approve(&task.token, "{}", &Acting::user("dr.lee")).expect_err("the token of a stopped execution");
    assert!(!e.to_string().is_empty());
    assert_eq!(serve.describe(&arn)["status"], "ABORTED");
}

#[test]
fn the_review_queue_comes_from_the_execution_log() {
    let serve = Serve::start();
    let group = "/aws/vendedlogs/states/rad-logged";
    let sm = serve.review_machine("rad-logged", Some(group));
    let (_dir, conn) = local_store();
    let mut cp = connect(&serve, &sm, Some(group), conn);
    cp.tick().expect("tick");
    // Started after the console looked: only the log cursor (or a later sweep) can tell.
    let arn = serve.start_execution(&sm, "ACC-7003");
    wait_for(&mut cp, "the callback from the log", |cp| task_of(cp, &arn).is_some());
    let calls = cp.calls();
    assert!(calls.get("FilterLogEvents").copied().unwrap_or(0) > 0, "the log was read: {calls:?}");
    let p = cp.pulse().expect("pulse");
    // serve has no live tail: the log is read by cursor, and the status says so.
    assert_eq!(
        p.condition.as_deref(),
        Some("live tail unavailable: not offered by this endpoint — reading the log every 300 ms"),
        "with a log group nothing is polled: {p:?}"
    );
    let feed = cp.events_after(None, 1000).expect("events");
    let mine: Vec<&str> = feed.iter().filter(|e| e.execution_arn == arn).map(|e| e.event.event_type.as_str()).collect();
    assert!(mine.contains(&"ExecutionStarted") && mine.contains(&"TaskScheduled"), "the log's events in the feed: {mine:?}");

    let task = task_of(&mut cp, &arn).expect("task");
    let params: Value = serde_json::from_str(&task.parameters).expect("parameters");
    assert_eq!(params["Payload"]["token"].as_str(), Some(task.token.as_str()), "the token from the resolved parameters");
    cp.approve(&task.token, r#"{"approved": true}"#, &Acting::user("dr.lee")).expect("SendTaskSuccess");
    wait_for(&mut cp, "the success, from the log", |cp| {
        cp.events_after(None, 1000).expect("events").iter().any(|e| e.execution_arn == arn && e.event.event_type == "ExecutionSucceeded")
    });
    assert_eq!(serve.describe(&arn)["status"], "SUCCEEDED");
}

/// `event_log_groups` against a real server: a group serve answers (its records are execution
/// log records, no EventBridge events: skipped and counted, nothing added to the feed) and one
/// it does not know (named in the status), while the review queue works as before.
#[test]
fn event_log_groups_are_read_from_serve_and_what_is_no_eventbridge_event_is_skipped() {
    let serve = Serve::start();
    let group = "/aws/vendedlogs/states/rad-events";
    let sm = serve.review_machine("rad-events", Some(group));
    let arn = serve.start_execution(&sm, "ACC-7005");
    let (_dir, conn) = local_store();
    let cfg = AwsContext {
        region: Some("us-east-1".into()),
        endpoint_url: Some(serve.url.clone()),
        state_machines: vec![sm.clone()],
        log_group: Some(group.into()),
        event_log_groups: vec![group.into()],
        ..Default::default()
    };
    let mut cp = Aws::connect_with("serve", &cfg, Some(conn), Some(("test", "test")))
        .expect("connect")
        .with_pacing(Duration::from_millis(300), Duration::from_millis(300));
    wait_for(&mut cp, "the callback from the log", |cp| task_of(cp, &arn).is_some());
    wait_for(&mut cp, "the event group read", |cp| cp.skipped_bus_events().get("not an EventBridge event").is_some_and(|n| *n >= 3));
    assert!(cp.pulse().expect("pulse").condition.is_some_and(|c| c.starts_with("live tail unavailable: not offered")));
    let feed = cp.events_after(None, 1000).expect("events");
    assert!(feed.iter().all(|e| e.execution_arn == arn), "only the execution's own events: {feed:?}");
    let started = feed.iter().filter(|e| e.event.event_type == "ExecutionStarted").count();
    assert_eq!(started, 1, "the execution log's records are not read twice through the event group");

    let (_dir2, conn2) = local_store();
    let missing = AwsContext { event_log_groups: vec!["/aws/events/none-here".into()], log_group: None, ..cfg };
    let mut other = Aws::connect_with("serve", &missing, Some(conn2), Some(("test", "test")))
        .expect("connect")
        .with_pacing(Duration::from_millis(300), Duration::from_millis(300));
    other.tick().expect("a tick never fails");
    let c = other.pulse().expect("pulse").condition.expect("a condition");
    assert!(c.starts_with("event log group /aws/events/none-here: FilterLogEvents: ResourceNotFoundException"), "{c}");
    wait_for(&mut other, "the review queue all the same", |cp| task_of(cp, &arn).is_some());
}

#[test]
fn one_engine_many_operators() {
    let serve = Serve::start();
    let group = "/aws/vendedlogs/states/rad-shared";
    let sm = serve.review_machine("rad-shared", Some(group));
    let arn = serve.start_execution(&sm, "ACC-7004");
    let (_a_dir, a_conn) = local_store();
    let (_b_dir, b_conn) = local_store();
    let mut a = connect(&serve, &sm, Some(group), a_conn);
    let mut b = connect(&serve, &sm, Some(group), b_conn);
    wait_for(&mut a, "A's queue", |cp| task_of(cp, &arn).is_some());
    wait_for(&mut b, "B's queue", |cp| task_of(cp, &arn).is_some());
    let token = task_of(&mut a, &arn).expect("task").token;
    assert_eq!(task_of(&mut b, &arn).map(|t| t.token), Some(token.clone()), "both see the same callback");

    // A claim is kept in the claiming console's local store only.
    a.claim(&token, "dr.lee").expect("claim");
    assert_eq!(task_of(&mut a, &arn).and_then(|t| t.claimed_by).as_deref(), Some("dr.lee"));
    assert_eq!(task_of(&mut b, &arn).and_then(|t| t.claimed_by), None, "B's store knows nothing of A's claim");
    let refused = a.approve(&token, "{}", &Acting::user("dr.kim")).expect_err("in A's console the claim guards");
    assert!(refused.to_string().contains("dr.lee"), "{refused}");

    // What A approves, B sees leave its queue and the execution succeed.
    a.approve(&token, r#"{"approved": true}"#, &Acting::user("dr.lee")).expect("SendTaskSuccess");
    wait_for(&mut b, "the callback to leave B's queue", |cp| task_of(cp, &arn).is_none());
    wait_for(&mut b, "B to see the success", |cp| {
        cp.events_after(None, 1000).expect("events").iter().any(|e| e.execution_arn == arn && e.event.event_type == "ExecutionSucceeded")
    });
    assert!(has_event(&mut b, &arn, "ExecutionSucceeded"));
    // B answering the spent token gets the engine's refusal, not a second answer.
    let e = b.approve(&token, "{}", &Acting::user("dr.kim")).expect_err("answered already").to_string();
    assert!(e.contains("TaskTimedOut"), "AWS's error for an answered token: {e}");
    let h = serve.call("GetExecutionHistory", json!({"executionArn": arn}));
    let succeeded = h["events"].as_array().expect("events").iter().filter(|e| e["type"] == "TaskSucceeded").count();
    assert_eq!(succeeded, 1, "one answer only");
}

/// `lightbox bench --aws-calls`: each size measured, by API, against the scripted endpoint
/// (short windows here; the README's numbers are from 60 s each).
#[test]
fn bench_aws_calls_reports_calls_per_minute_for_each_size() {
    let lb = Lb::new();
    let out = lb.run(&["--json", "bench", "--aws-calls", "--seconds", "5"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    let runs = v["runs"].as_array().expect("runs");
    let sizes: Vec<u64> = runs.iter().filter_map(|r| r["running"].as_u64()).collect();
    assert_eq!(sizes, [10, 1_000, 10_000]);
    for r in runs {
        assert!(r["calls"]["FilterLogEvents"].as_u64().unwrap_or(0) > 0, "the log is read in steady state: {r}");
        assert!(r["calls"].get("DescribeExecution").is_none() && r["calls"].get("GetExecutionHistory").is_none(), "{r}");
        let per_minute = r["callsPerMinute"].as_f64().expect("per minute");
        assert!(per_minute > 0.0 && per_minute <= 120.0, "within the budget: {r}");
    }
}

/// View 6 on an AWS context: `outbox_endpoint` names a `lightbox serve` that runs the relay
/// (here with SigV4 required). The backend lists its sinks and rows, and pausing, retrying and
/// resuming go through it, signed: the server audits each under the caller's access key. A
/// wrong key is refused, and a context without an endpoint says what to set.
#[test]
fn view_6_reads_and_drives_the_relay_of_the_serve_named_as_outbox_endpoint() {
    let lb = Lb::new();
    let cfg = lb.file(
        "config.toml",
        r#"
[serve]
credentials = [{ access_key_id = "AKIDOUTBOX", secret_access_key = "outbox-secret-key" }]
[[outbox.sinks]]
name = "pacs"
kind = "webhook"
url = "http://127.0.0.1:9/never"
base_delay = "1h"
max_delay = "2h"
[[outbox.sinks]]
name = "archive"
kind = "ndjson"
path = "events.ndjson"
"#,
    );
    let (child, url) = common::spawn_serve(lb.cmd().args(["--config", &cfg, "serve", "--bind", "127.0.0.1:0"]));
    let serve = Serve { lb: Lb::new(), child, url };
    let ctx = |key: (&str, &str), endpoint: Option<&str>| {
        let cfg = AwsContext {
            region: Some("us-east-1".into()),
            endpoint_url: Some(serve.url.clone()),
            outbox_endpoint: endpoint.map(str::to_string),
            ..Default::default()
        };
        let (_dir, conn) = local_store();
        Aws::connect_with("serve", &cfg, Some(conn), Some(key)).expect("connect")
    };
    let key = ("AKIDOUTBOX", "outbox-secret-key");
    let mut cp = ctx(key, Some(&serve.url));
    // An execution's events wait for the webhook that never answers; the archive gets them.
    let def = lb.file("m.json", &json!({"StartAt": "P", "States": {"P": {"Type": "Pass", "End": true}}}));
    lb.ok(&["--config", &cfg, "state-machines", "create", "--name", "m", "--definition", &def]);
    lb.ok(&["--config", &cfg, "executions", "start", "--state-machine", "m", "--name", "one", "--input-json", "{}"]);
    let end = Instant::now() + Duration::from_secs(30);
    let snap = loop {
        let snap = cp.outbox(50).expect("list");
        if snap.rows.iter().any(|r| r.sink == "pacs" && r.attempts >= 1)
            && snap.sinks.iter().any(|s| s.name == "archive" && s.delivered >= 2)
        {
            break snap;
        }
        assert!(Instant::now() < end, "the relay did not run: {snap:?}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(snap.sinks.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["pacs", "archive"]);
    assert_eq!(snap.sinks[0].target, "http://127.0.0.1:9/never");
    assert!(snap.sinks[0].failures >= 1 && snap.sinks[0].last_error.is_some(), "{:?}", snap.sinks[0]);
    assert!(snap.rows.iter().all(|r| r.sink == "pacs" && r.stream.contains(":execution:m:one")), "{:?}", snap.rows);

    // Pause and resume the webhook through the endpoint: signed, audited under the key.
    use lightbox::outbox::Action;
    // A reason is `[code] note` under the server's codes, as on every surface: none, an
    // unknown code or filler is refused and changes nothing.
    for bad in ["PACS maintenance window", "[made-up] PACS maintenance window", "[other] asdfg qwert"] {
        let e = cp.outbox_act(&Action::Pause { sink: "pacs".into(), reason: bad.into() }).expect_err("refused").to_string();
        assert!(e.contains("ValidationException") && e.contains("reason"), "{bad}: {e}");
    }
    assert!(!cp.outbox(50).expect("list").sinks[0].paused);
    let reason = "[operations-incident] PACS maintenance window";
    let said = cp.outbox_act(&Action::Pause { sink: "pacs".into(), reason: reason.into() }).expect("pause");
    assert!(!said.is_empty());
    let snap = cp.outbox(50).expect("list");
    assert!(snap.sinks[0].paused && snap.sinks[0].paused_reason.as_deref() == Some(reason), "{:?}", snap.sinks[0]);
    cp.outbox_act(&Action::Resume { sink: "pacs".into() }).expect("resume");
    assert!(!cp.outbox(50).expect("list").sinks[0].paused);
    let unknown = cp.outbox_act(&Action::Resume { sink: "nope".into() }).expect_err("unknown sink").to_string();
    assert!(unknown.contains("ResourceNotFoundException") && unknown.contains("nope"), "{unknown}");

    // A wrong secret is refused by the server; no endpoint says what to set.
    let bad = ctx(("AKIDOUTBOX", "wrong"), Some(&serve.url)).outbox(50).expect_err("bad signature").to_string();
    assert!(bad.contains("outbox endpoint") && bad.contains("Signature"), "{bad}");
    let none = ctx(key, None).outbox(50).expect_err("no endpoint").to_string();
    assert!(none.contains("outbox_endpoint"), "{none}");

    drop(serve);
    let rows = lb.json(&["--config", &cfg, "audit", "list", "--limit", "100"])["entries"].as_array().cloned().expect("audit");
    let outbox: Vec<&Value> = rows.iter().filter(|r| r["action"].as_str().is_some_and(|a| a.starts_with("outbox-"))).collect();
    // (The unknown sink changed nothing, so it left no row.)
    assert_eq!(outbox.iter().filter_map(|r| r["action"].as_str()).collect::<Vec<_>>(), ["outbox-resume", "outbox-pause"], "{outbox:?}");
    assert!(outbox.iter().all(|r| r["actor"] == "AKIDOUTBOX" && r["source"] == "api"), "{outbox:?}");
}
