//! Workflow events in EventBridge's shape and event patterns, through the real binary:
//! `lightbox events list [--pattern P]` and `lightbox events test-pattern`.

mod common;

use common::Lb;

use serde_json::{Value, json};

/// A review gate (a callback task whose handler is given the token) and a quick machine.
fn setup(lb: &Lb) -> (String, String) {
    let review = json!({"StartAt": "Review", "States": {
        "Review": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken",
                   "Parameters": {"FunctionName": "echo", "Payload": {"token.$": "$$.Task.Token", "accession.$": "$.accession"}},
                   "Next": "Signed"},
        "Signed": {"Type": "Pass", "End": true}}});
    let quick = json!({"StartAt": "Done", "States": {"Done": {"Type": "Pass", "Result": {"ok": true}, "End": true}}});
    for (name, def) in [("review", &review), ("quick", &quick)] {
        let f = lb.file(&format!("{name}.json"), def);
        lb.json(&["state-machines", "create", "--name", name, "--definition", &f]);
    }
    let input = r#"{"accession":"ACC1","patient":{"name":"Testperson, Dana","mrn":"SYN-000421"}}"#;
    let slow = lb.json(&["executions", "start", "--state-machine", "review", "--name", "acc-1", "--input-json", input]);
    let fast = lb.json(&["executions", "start", "--state-machine", "quick", "--name", "q-1", "--input-json", r#"{"n":1}"#]);
    (slow["executionArn"].as_str().expect("arn").to_string(), fast["executionArn"].as_str().expect("arn").to_string())
}

fn events(lb: &Lb, extra: &[&str]) -> Vec<Value> {
    let mut args = vec!["events", "list"];
    args.extend_from_slice(extra);
    lb.json(&args)["events"].as_array().cloned().unwrap_or_default()
}

fn token(lb: &Lb) -> String {
    lb.json(&["tasks", "list"])["tasks"][0]["taskToken"].as_str().expect("token").to_string()
}

/// Seen: an execution's outbox row was Lightbox's own wrapper (`{"executionArn", "status",
/// "event"}`), not the event other systems expect, and a workflow that started and finished in
/// one step reported SUCCEEDED on its ExecutionStarted row.
#[test]
fn status_changes_have_aws_shape_and_keep_their_id() {
    let lb = Lb::new();
    let (_, fast) = setup(&lb);
    let all = events(&lb, &[]);
    let mine: Vec<&Value> = all.iter().filter(|e| e["resources"] == json!([fast])).collect();
    assert_eq!(mine.len(), 2, "{all:#?}");
    // Newest first.
    let (done, started) = (mine[0], mine[1]);
    for e in [done, started] {
        for k in ["version", "id", "detail-type", "source", "account", "time", "region", "resources", "detail"] {
            assert!(e.get(k).is_some(), "{k} missing: {e}");
        }
        assert_eq!(e["source"], "aws.states");
        assert_eq!(e["detail-type"], "Step Functions Execution Status Change");
        assert_eq!(e["account"], "000000000000");
        assert_eq!(e["region"], "us-east-1");
        let d = &e["detail"];
        assert_eq!(d["executionArn"], fast.as_str());
        assert_eq!(d["stateMachineArn"], "arn:aws:states:us-east-1:000000000000:stateMachine:quick");
        assert_eq!(d["name"], "q-1");
        assert!(d["startDate"].as_i64().is_some_and(|ms| ms > 1_600_000_000_000), "epoch millis: {d}");
        assert_eq!(d["input"], r#"{"n":1}"#);
        assert_eq!(d["inputDetails"], json!({"included": true}));
    }
    assert_eq!(started["detail"]["status"], "RUNNING", "the start reports RUNNING even when the same step finished it");
    assert_eq!(started["detail"]["stopDate"], Value::Null);
    assert_eq!(started["detail"]["output"], Value::Null);
    assert_eq!(done["detail"]["status"], "SUCCEEDED");
    assert!(done["detail"]["stopDate"].as_i64().is_some());
    assert_eq!(done["detail"]["output"], r#"{"ok":true}"#);
    assert_eq!(done["detail"]["outputDetails"], json!({"included": true}));
    assert_eq!(done["detail"]["redriveStatus"], "NOT_REDRIVABLE");
    // The id names the transition (execution and history event) and survives a re-read.
    assert!(started["id"].as_str().is_some_and(|id| id.starts_with(&format!("{fast}#"))), "{}", started["id"]);
    let again = events(&lb, &[]);
    let ids = |v: &[Value]| v.iter().map(|e| e["id"].clone()).collect::<Vec<_>>();
    assert_eq!(ids(&all), ids(&again));
}

#[test]
fn review_events_are_lightbox_events_without_the_token() {
    let lb = Lb::new();
    let (slow, _) = setup(&lb);
    let tok = token(&lb);
    assert_eq!(tok.len(), 64);
    lb.ok(&["tasks", "approve", &tok, "--output", r#"{"signed":true}"#]);
    let all =
        events(&lb, &["--reveal", "--reason-code", "operations-incident", "--reason", "checking the review events for the ACC1 study"]);
    let types: Vec<&str> = all.iter().filter(|e| e["resources"] == json!([slow])).filter_map(|e| e["detail-type"].as_str()).collect();
    assert_eq!(
        types,
        vec!["Step Functions Execution Status Change", "Review Approved", "Review Requested", "Step Functions Execution Status Change"]
    );
    let approved = all.iter().find(|e| e["detail-type"] == "Review Approved").expect("approved");
    assert_eq!(approved["source"], "lightbox");
    assert_eq!(approved["detail"]["executionArn"], slow.as_str());
    assert_eq!(approved["detail"]["stateName"], "Review");
    assert_eq!(approved["detail"]["historyEventType"], "TaskSucceeded");
    // No full token anywhere: not in any listed event, not in any stored outbox row.
    let text = serde_json::to_string(&all).expect("json");
    assert!(!text.contains(&tok), "a full task token in an event: {text}");
    assert!(text.contains(&tok[..8]), "the handler's payload keeps the 8-character prefix");
    let conn = rusqlite::Connection::open(lb.db()).expect("open");
    let payloads: Vec<String> = conn
        .prepare("SELECT payload FROM outbox")
        .expect("prepare")
        .query_map([], |r| r.get(0))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    assert!(payloads.iter().all(|p| !p.contains(&tok)), "a stored event holds the full token");
    // The approval's audit rows publish the head as a Lightbox event.
    let heads = events(&lb, &["--pattern", r#"{"detail-type": ["Audit Head"]}"#]);
    assert!(!heads.is_empty());
    assert_eq!(heads[0]["source"], "lightbox");
    assert!(heads[0]["detail"]["seq"].as_i64().is_some());
    // Rejecting and escalating name themselves.
    let (slow2, _) = {
        let s =
            lb.json(&["executions", "start", "--state-machine", "review", "--name", "acc-2", "--input-json", r#"{"accession":"ACC2"}"#]);
        (s["executionArn"].as_str().expect("arn").to_string(), ())
    };
    lb.ok(&["tasks", "reject", &token(&lb), "--error", "Review.Rejected", "--cause", "wrong series"]);
    let rejected = events(&lb, &["--pattern", r#"{"detail-type": ["Review Rejected"]}"#]);
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0]["detail"]["executionArn"], slow2.as_str());
    assert_eq!(rejected[0]["detail"]["error"], "Review.Rejected");
}

#[test]
fn listing_masks_patient_data_unless_revealed() {
    let lb = Lb::new();
    let (slow, _) = setup(&lb);
    let started = |extra: &[&str]| {
        events(&lb, extra).into_iter().find(|e| e["resources"] == json!([slow]) && e["detail"]["status"] == "RUNNING").expect("started")
    };
    let masked = started(&[]);
    let text = masked.to_string();
    assert!(!text.contains("Testperson") && !text.contains("SYN-000421"), "{text}");
    assert!(text.contains("ACC1"), "non-identifiers stay: {text}");
    let table = lb.ok(&["events", "list"]);
    assert!(!table.contains("SYN-000421"));
    assert!(table.lines().next().is_some_and(|h| h.starts_with("TIME")), "{table}");
    let shown = started(&["--reveal", "--reason-code", "operations-incident", "--reason", "wrong-patient hold on ACC1 for Dr Lee"]);
    assert!(shown.to_string().contains("SYN-000421"));
    // The stored row is not masked (relays send what AWS sends).
    let conn = rusqlite::Connection::open(lb.db()).expect("open");
    let n: i64 = conn.query_row("SELECT COUNT(*) FROM outbox WHERE payload LIKE '%SYN-000421%'", [], |r| r.get(0)).expect("count");
    assert!(n > 0);
}

#[test]
fn list_filters_by_pattern_json_file_or_name() {
    let lb = Lb::new();
    let (slow, fast) = setup(&lb);
    let states = events(&lb, &["--pattern", r#"{"source": ["aws.states"], "detail": {"status": ["SUCCEEDED"]}}"#]);
    assert_eq!(states.len(), 1);
    assert_eq!(states[0]["resources"], json!([fast]));
    let f = lb.file("p.json", r#"{"detail": {"name": [{"prefix": "acc-"}]}, "source": ["aws.states"]}"#);
    let by_file = events(&lb, &["--pattern", &format!("@{f}")]);
    assert_eq!(by_file.len(), 1);
    assert_eq!(by_file[0]["resources"], json!([slow]));
    assert_eq!(events(&lb, &["--limit", "1"]).len(), 1);
    // Named patterns in config.
    let config =
        lb.file("config.toml", "[[event_patterns]]\nname = \"reviews\"\npattern = '{\"detail-type\": [{\"prefix\": \"Review \"}]}'\n");
    let named = events(&lb, &["--config", &config, "--pattern", "reviews"]);
    assert_eq!(named.len(), 1);
    assert_eq!(named[0]["detail-type"], "Review Requested");
    let err = lb.run(&["--config", &config, "events", "list", "--pattern", "nope"]);
    assert_eq!(err.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&err.stderr).contains("reviews"), "names the patterns there are");
    let bad = lb.run(&["events", "list", "--pattern", r#"{"source": "aws.states"}"#]);
    assert_eq!(bad.status.code(), Some(2));
    // A config with a broken pattern is refused, naming the entry.
    let broken = lb.file("bad.toml", "[[event_patterns]]\nname = \"x\"\npattern = '{\"a\": [{\"numeric\": [\">\"]}]}'\n");
    let out = lb.run(&["--config", &broken, "events", "list"]);
    assert!(!out.status.success());
    let msg = String::from_utf8_lossy(&out.stderr);
    assert!(msg.contains("event_patterns[0]") && msg.contains("numeric"), "{msg}");
}

#[test]
fn test_pattern_answers_like_aws_and_exits_2_when_invalid() {
    let lb = Lb::new();
    let event = r#"{"id":"1","source":"aws.ec2","detail-type":"EC2 Instance State-change Notification","account":"1","time":"2017-12-22T18:43:48Z","region":"us-west-1","resources":[],"detail":{"state":"terminated","c-count":5}}"#;
    let yes =
        lb.json(&["events", "test-pattern", "--pattern", r#"{"detail": {"c-count": [{"numeric": [">", 0, "<=", 5]}]}}"#, "--event", event]);
    assert_eq!(yes, json!({"Result": true}));
    let no =
        lb.ok(&["events", "test-pattern", "--pattern", r#"{"detail": {"state": [{"anything-but": "terminated"}]}}"#, "--event", event]);
    assert_eq!(serde_json::from_str::<Value>(&no).expect("json"), json!({"Result": false}));
    let f = lb.file("e.json", event);
    let by_file = lb.json(&["events", "test-pattern", "--pattern", r#"{"source": [{"prefix": "aws."}]}"#, "--event", &format!("@{f}")]);
    assert_eq!(by_file["Result"], true);
    let bad = lb.run(&["events", "test-pattern", "--pattern", r#"{"detail": {"state": [{"wildcard": "a**"}]}}"#, "--event", event]);
    assert_eq!(bad.status.code(), Some(2));
    let msg = String::from_utf8_lossy(&bad.stderr);
    assert!(msg.contains("detail.state[0].wildcard"), "names the bad part: {msg}");
    assert_eq!(lb.run(&["events", "test-pattern", "--pattern", "{", "--event", event]).status.code(), Some(2));
    assert_eq!(lb.run(&["events", "test-pattern", "--pattern", r#"{"a": [1]}"#, "--event", "nope"]).status.code(), Some(2));
}
