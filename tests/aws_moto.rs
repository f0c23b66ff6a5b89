//! The AWS backend against a real Step Functions emulator: moto's server, started by
//! scripts/test.sh (`LIGHTBOX_TEST_MOTO_URL`). Also runs against `lightbox serve` (point the
//! variable at it) for the calls moto lacks. A missing server FAILS the test.

mod common;

use std::time::{Duration, Instant};

use common::aws::{call, moto, run_state_machines, sqs_review_machine, unique};
use lightbox::backend::aws::{Aws, AwsContext};
use lightbox::backend::{Acting, ControlPlane};
use lightbox::history::ExecutionStatus;
use serde_json::{Value, json};

/// A review machine (and, with `start`, one execution of it waiting for its callback; moto
/// answers StartExecution with an error while another execution waits, so only one test starts one).
fn setup(url: &str, machine: &str, start: bool) -> (String, String) {
    run_state_machines(url);
    let sm = sqs_review_machine(url, machine, json!({"token.$": "$$.Task.Token", "accession.$": "$.accession"}));
    if !start {
        return (sm, String::new());
    }
    let ex = call(
        url,
        "AWSStepFunctions.StartExecution",
        json!({"stateMachineArn": sm, "name": "ACC-9001",
        "input": json!({"accession": "ACC-9001", "patient": {"name": "Dana Testperson"}}).to_string()}),
    );
    (sm, ex["executionArn"].as_str().expect("execution arn").to_string())
}

fn local_store() -> (tempfile::TempDir, rusqlite::Connection) {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("lightbox.db");
    drop(lightbox::store::Store::open(&db).expect("store"));
    let conn = rusqlite::Connection::open(&db).expect("conn");
    (dir, conn)
}

fn connect(url: &str, cfg: AwsContext, conn: rusqlite::Connection) -> Aws {
    let cfg = AwsContext { region: Some("us-east-1".into()), endpoint_url: Some(url.to_string()), ..cfg };
    Aws::connect_with("moto", &cfg, Some(conn), Some(("testing", "testing")))
        .expect("connect")
        .with_pacing(Duration::from_millis(300), Duration::from_millis(300))
}

fn wait_for(cp: &mut Aws, what: &str, mut f: impl FnMut(&mut Aws) -> bool) {
    let end = Instant::now() + Duration::from_secs(40);
    while !f(cp) {
        assert!(Instant::now() < end, "{what}: not within 40 s (status {:?})", cp.status());
        std::thread::sleep(Duration::from_millis(300));
        cp.tick().expect("tick");
    }
}

#[test]
fn a_callback_found_in_history_is_approved_and_the_execution_succeeds() {
    let url = moto();
    let (sm, arn) = setup(&url, &unique("rad-review-history"), true);
    let (_dir, conn) = local_store();
    let mut cp = connect(&url, AwsContext { state_machines: vec![sm.clone()], ..Default::default() }, conn);
    wait_for(&mut cp, "the pending callback", |cp| cp.pending_tasks(10).expect("pending").iter().any(|t| t.execution_arn == arn));
    let task = cp.pending_tasks(10).expect("pending").into_iter().find(|t| t.execution_arn == arn).expect("task");
    assert_eq!(task.state_name, "Review");
    assert_eq!(task.resource, "arn:aws:states:::sqs:sendMessage.waitForTaskToken");
    let params: Value = serde_json::from_str(&task.parameters).expect("parameters");
    assert_eq!(params["MessageBody"]["token"].as_str(), Some(task.token.as_str()), "the token from where the definition put it");
    let p = cp.pulse().expect("pulse");
    assert!(p.running >= 1 && p.pending_reviews >= 1, "{p:?}");
    assert!(p.condition.as_deref().is_some_and(|c| c.starts_with("no log group")), "{p:?}");

    // What the operator opens: its history, in the one event model.
    let h = cp.history(&arn, 0, 100).expect("history");
    let types: Vec<&str> = h.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(&types[..3], ["ExecutionStarted", "TaskStateEntered", "TaskScheduled"], "{types:?}");
    assert_eq!(h[1].state_name(), Some("Review"));
    let row = cp.execution(&arn).expect("describe").expect("row");
    assert!(row.input.contains("ACC-9001"));
    assert_eq!(cp.find("acc-9001").expect("find").first().map(|f| f.arn.clone()), Some(arn.clone()));

    // A claim lives in the local store; someone else cannot answer without an override.
    cp.claim(&task.token, "dr.lee").expect("claim");
    let refused = cp.approve(&task.token, "{}", &Acting::user("dr.kim")).expect_err("claimed by another");
    assert!(refused.to_string().contains("dr.lee"), "{refused}");
    cp.approve(&task.token, r#"{"approved": true}"#, &Acting::user("dr.lee")).expect("SendTaskSuccess");
    assert!(cp.pending_tasks(10).expect("pending").iter().all(|t| t.token != task.token), "answered: off the queue at once");
    wait_for(&mut cp, "the execution to succeed", |cp| {
        cp.history(&arn, 0, 100).expect("history").iter().any(|e| e.event_type == "ExecutionSucceeded")
    });
    assert_eq!(cp.execution(&arn).expect("describe").map(|r| r.status), Some(ExecutionStatus::Succeeded));
    // An unknown token is AWS's error, said as such.
    let e = cp.approve("no-such-token", "{}", &Acting::user("dr.lee")).expect_err("unknown token");
    assert!(!e.to_string().is_empty());
}

#[test]
fn the_review_queue_and_events_come_from_the_execution_log() {
    let url = moto();
    let machine = unique("rad-review-logs");
    let (sm, _) = setup(&url, &machine, false);
    let group = format!("/aws/vendedlogs/states/{machine}");
    let group = group.as_str();
    call(&url, "Logs_20140328.CreateLogGroup", json!({"logGroupName": group}));
    call(&url, "Logs_20140328.CreateLogStream", json!({"logGroupName": group, "logStreamName": "states/rad-review-logs/1"}));
    // An execution only the log knows (no list or history call can find it).
    let arn = sm.replace(":stateMachine:", ":execution:") + ":from-log-1";
    let now = chrono::Utc::now().timestamp_millis();
    let rec = |id: i64, prev: i64, t: &str, details: Value| {
        json!({"timestamp": now + id, "message": json!({"id": id.to_string(), "type": t, "details": details,
            "previous_event_id": prev.to_string(), "event_timestamp": (now + id).to_string(), "execution_arn": arn}).to_string()})
    };
    let params = json!({"QueueUrl": "q", "MessageBody": {"token": "LOG-TOKEN-1", "accession": "ACC-LOG-1"}}).to_string();
    call(
        &url,
        "Logs_20140328.PutLogEvents",
        json!({"logGroupName": group, "logStreamName": "states/rad-review-logs/1", "logEvents": [
            rec(1, 0, "ExecutionStarted", json!({"input": "{\"accession\":\"ACC-LOG-1\"}"})),
            rec(2, 1, "TaskStateEntered", json!({"name": "Review", "input": "{}"})),
            rec(3, 2, "TaskScheduled", json!({"resourceType": "sqs", "resource": "sendMessage.waitForTaskToken", "parameters": params})),
            rec(4, 3, "TaskStarted", json!({"resourceType": "sqs", "resource": "sendMessage.waitForTaskToken"})),
        ]}),
    );
    let (_dir, conn) = local_store();
    let mut cp = connect(&url, AwsContext { state_machines: vec![sm], log_group: Some(group.into()), ..Default::default() }, conn);
    wait_for(&mut cp, "the callback from the log", |cp| cp.pending_tasks(50).expect("pending").iter().any(|t| t.token == "LOG-TOKEN-1"));
    let t = cp.pending_tasks(50).expect("pending").into_iter().find(|t| t.token == "LOG-TOKEN-1").expect("task");
    assert_eq!((t.execution_arn.as_str(), t.state_name.as_str()), (arn.as_str(), "Review"));
    let evs = cp.events_after(None, 100).expect("events");
    let mine: Vec<&str> = evs.iter().filter(|e| e.execution_arn == arn).map(|e| e.event.event_type.as_str()).collect();
    assert_eq!(mine, ["ExecutionStarted", "TaskScheduled", "TaskStarted"], "execution and task events, once each");
    assert!(evs.iter().filter(|e| e.execution_arn == arn).skip(1).all(|e| e.state_name() == Some("Review")));
    let row = cp.execution(&arn).expect("row").expect("known from the log");
    assert_eq!((row.status, row.current_state.as_deref()), (ExecutionStatus::Running, Some("Review")));
    // moto answers StartLiveTail with the group's records so far, then ends the session: the
    // backend goes back to its cursor, says so, and takes nothing twice across the switch.
    let calls = cp.calls();
    assert_eq!((calls.get("StartLiveTail"), calls.get("DescribeLogGroups")), (Some(&1), Some(&1)), "{calls:?}");
    wait_for(&mut cp, "the end of moto's live tail session", |cp| {
        cp.status().as_deref() == Some("live tail session closed — reading the log every 300 ms")
    });
    let reads = cp.calls().get("FilterLogEvents").copied().unwrap_or(0);
    wait_for(&mut cp, "the cursor reading again", |cp| cp.calls().get("FilterLogEvents").copied().unwrap_or(0) > reads);
    let again: Vec<String> =
        cp.events_after(None, 100).expect("events").iter().filter(|e| e.execution_arn == arn).map(|e| e.event.event_type.clone()).collect();
    assert_eq!(again, ["ExecutionStarted", "TaskScheduled", "TaskStarted"], "live tail and the cursor both delivered them: once each");
    // Reading the log again adds nothing twice.
    let before = cp.events_after(None, 1000).expect("events").len();
    std::thread::sleep(Duration::from_millis(400));
    cp.tick().expect("tick");
    assert_eq!(cp.events_after(None, 1000).expect("events").len(), before);
}

/// One EventBridge event as a rule with a CloudWatch Logs target writes it (HealthImaging's shape).
fn bus_event(id: &str, detail_type: &str, resource: &str, detail: Value) -> String {
    json!({"version": "0", "id": id, "detail-type": detail_type, "source": "aws.medical-imaging",
           "account": "123456789012", "time": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
           "region": "us-east-1", "resources": [resource], "detail": detail})
    .to_string()
}

#[test]
fn eventbridge_events_in_an_event_log_group_show_in_events_once_masked_and_bad_records_are_skipped() {
    let url = moto();
    let group = format!("/aws/events/{}", unique("healthimaging"));
    call(&url, "Logs_20140328.CreateLogGroup", json!({"logGroupName": group}));
    call(&url, "Logs_20140328.CreateLogStream", json!({"logGroupName": group, "logStreamName": "rule-1"}));
    let ds = "arn:aws:medical-imaging:us-east-1:123456789012:datastore/ds0001";
    let set = format!("{ds}/imageset/is0001");
    let now = chrono::Utc::now().timestamp_millis();
    let put = |records: Vec<String>| {
        let events: Vec<Value> = records.into_iter().enumerate().map(|(i, m)| json!({"timestamp": now + i as i64, "message": m})).collect();
        call(&url, "Logs_20140328.PutLogEvents", json!({"logGroupName": group, "logStreamName": "rule-1", "logEvents": events}));
    };
    let imported = bus_event(
        "ev-import-1",
        "Import Job Completed",
        ds,
        json!({"imagingVersion": "1.0", "datastoreId": "ds0001", "jobId": "job-1", "jobName": "nightly", "jobStatus": "COMPLETED",
               "inputS3Uri": "s3://in/", "outputS3Uri": "s3://out/"}),
    );
    put(vec![
        imported.clone(),
        "not json at all".into(),
        json!({"id": "x", "message": "json, but no envelope"}).to_string(),
        bus_event(
            "ev-set-1",
            "Image Set Created",
            &set,
            json!({"imagingVersion": "1.0", "datastoreId": "ds0001", "imageSetId": "is0001", "imageSetState": "ACTIVE",
                   "imageSetWorkflowStatus": "CREATED", "patientName": "Dana Testperson", "note": "study for Dana Testperson"}),
        ),
        // EventBridge delivers at least once: the same event again, in a record of its own.
        imported,
    ]);

    let (_dir, conn) = local_store();
    let mut cp = connect(&url, AwsContext { event_log_groups: vec![group.clone()], ..Default::default() }, conn);
    let bus = |cp: &mut Aws| -> Vec<lightbox::backend::FeedEvent> {
        cp.events_after(None, 1000).expect("events").into_iter().filter(|e| e.execution_arn.starts_with("aws.medical-imaging:")).collect()
    };
    wait_for(&mut cp, "the two events", |cp| bus(cp).len() >= 2);
    let evs = bus(&mut cp);
    let types: Vec<&str> = evs.iter().map(|e| e.event.event_type.as_str()).collect();
    assert_eq!(types, ["Import Job Completed", "Image Set Created"], "each event once, in log order");
    assert_eq!(evs[0].execution_arn, "aws.medical-imaging:datastore/ds0001");
    assert_eq!(evs[1].execution_arn, "aws.medical-imaging:datastore/ds0001/imageset/is0001");
    assert_eq!((evs[0].state_name(), evs[1].state_name()), (Some("COMPLETED"), Some("CREATED")));
    // The envelope is what the Events view's pattern filter tests.
    let pattern = lightbox::events::pattern::Pattern::parse(
        &json!({"source": ["aws.medical-imaging"], "detail-type": ["Image Set Created"]}).to_string(),
    )
    .expect("pattern");
    let kept: Vec<&str> =
        evs.iter().filter(|e| e.envelope.as_ref().is_some_and(|v| pattern.matches(v))).map(|e| e.event.event_type.as_str()).collect();
    assert_eq!(kept, ["Image Set Created"]);
    // The patient's name in the detail is masked wherever the event goes.
    let shown = format!("{:?}", evs);
    assert!(!shown.contains("Dana") && !shown.contains("Testperson"), "{shown}");
    assert_eq!(evs[1].envelope.as_ref().map(|v| v["detail"]["imageSetId"].clone()), Some(json!("is0001")));
    let skipped = cp.skipped_bus_events();
    assert_eq!((skipped.get("not JSON"), skipped.get("not an EventBridge event")), (Some(&1), Some(&1)), "{skipped:?}");
    assert_eq!(cp.status(), Some("no log group: polling histories (30/min), reviews and events may lag".into()), "nothing is wrong");
    // Neither a feed row's pseudo-ARN nor reading the group again costs a call or adds a row.
    assert_eq!(cp.execution(&evs[0].execution_arn).expect("no execution"), None);
    assert!(cp.history(&evs[0].execution_arn, 0, 10).expect("no history").is_empty());
    std::thread::sleep(Duration::from_millis(400));
    cp.tick().expect("tick");
    assert_eq!(bus(&mut cp).len(), 2);
    // A later event arrives through the cursor.
    put(vec![bus_event("ev-set-2", "Image Set Updated", &set, json!({"imageSetId": "is0001", "imageSetWorkflowStatus": "UPDATED"}))]);
    wait_for(&mut cp, "the later event", |cp| bus(cp).len() == 3);
    assert_eq!(bus(&mut cp)[2].event.event_type, "Image Set Updated");
}

#[test]
fn an_event_log_group_that_does_not_exist_is_named_in_the_status() {
    let url = moto();
    let (_dir, conn) = local_store();
    let group = format!("/aws/events/{}", unique("missing"));
    let mut cp = connect(&url, AwsContext { event_log_groups: vec![group.clone()], ..Default::default() }, conn);
    cp.tick().expect("a tick never fails");
    let c = cp.status().expect("a condition");
    assert!(c.starts_with(&format!("event log group {group}: FilterLogEvents")) && c.contains("ResourceNotFound"), "{c}");
}
