//! The command line, driven as scripts drive it: the real binary on a real store.

mod common;

use common::{Lb, bin};

use std::process::{Command, Output};

use serde_json::{Value, json};

fn review_machine(timeout: u64) -> Value {
    json!({
        "StartAt": "Review",
        "States": {
            "Review": {
                "Type": "Task",
                "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken",
                "Parameters": {"FunctionName": "echo", "Payload": {"token.$": "$$.Task.Token", "accession.$": "$.accession"}},
                "TimeoutSeconds": timeout,
                "ResultPath": "$.review",
                "Next": "Signed"
            },
            "Signed": {"Type": "Pass", "End": true}
        }
    })
}

fn setup(lb: &Lb, timeout: u64) -> String {
    let def = lb.write("review.json", &review_machine(timeout));
    let sm = lb.json(&["state-machines", "create", "--name", "review", "--definition", def.to_str().expect("path")]);
    assert_eq!(sm["stateMachineArn"], "arn:aws:states:us-east-1:000000000000:stateMachine:review");
    let started =
        lb.json(&["executions", "start", "--state-machine", "review", "--name", "acc-1", "--input-json", r#"{"accession":"ACC1"}"#]);
    started["executionArn"].as_str().expect("arn").to_string()
}

fn pending(lb: &Lb) -> Vec<Value> {
    lb.json(&["tasks", "list"])["tasks"].as_array().cloned().unwrap_or_default()
}

fn history_types(lb: &Lb, arn: &str) -> Vec<String> {
    lb.json(&["executions", "history", arn])["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["type"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn approve_completes_the_execution_and_a_second_approve_changes_nothing() {
    let lb = Lb::new();
    let arn = setup(&lb, 3600);
    let d = lb.json(&["executions", "describe", &arn]);
    assert_eq!(d["status"], "RUNNING");
    let tasks = pending(&lb);
    assert_eq!(tasks.len(), 1);
    assert_eq!(tasks[0]["stateName"], "Review");
    assert_eq!(tasks[0]["executionArn"], arn.as_str());
    let token = tasks[0]["taskToken"].as_str().expect("token").to_string();
    // The token the task was given through $$.Task.Token is the one the queue lists.
    let input: Value = serde_json::from_str(tasks[0]["input"].as_str().expect("input")).expect("json");
    assert_eq!(input["Payload"]["token"], token.as_str());

    assert_eq!(lb.json(&["tasks", "approve", &token, "--output", r#"{"reviewer":"dr.a"}"#]), json!({}));
    let d = lb.json(&["executions", "describe", &arn]);
    assert_eq!(d["status"], "SUCCEEDED");
    let out: Value = serde_json::from_str(d["output"].as_str().expect("output")).expect("json");
    assert_eq!(out, json!({"accession": "ACC1", "review": {"reviewer": "dr.a"}}));
    let before = history_types(&lb, &arn);
    assert!(before.contains(&"TaskSubmitted".to_string()), "{before:?}");

    let err = lb.fails(&["tasks", "approve", &token]);
    assert!(err.contains("TaskTimedOut"), "{err}");
    let err = lb.fails(&["tasks", "reject", &token]);
    assert!(err.contains("TaskTimedOut"), "{err}");
    assert_eq!(history_types(&lb, &arn), before, "a second completion must not change history");
    assert!(pending(&lb).is_empty());
    let closed = lb.json(&["tasks", "list", "--status", "SUCCEEDED"]);
    assert_eq!(closed["tasks"][0]["status"], "SUCCEEDED");
}

#[test]
fn reject_fails_the_execution_and_redrive_resumes_it_with_the_same_arn() {
    let lb = Lb::new();
    let arn = setup(&lb, 3600);
    let token = pending(&lb)[0]["taskToken"].as_str().expect("token").to_string();
    // A unique prefix is enough for operators.
    lb.json(&["tasks", "reject", &token[..12], "--error", "Review.Rejected", "--cause", "wrong laterality"]);
    let d = lb.json(&["executions", "describe", &arn]);
    assert_eq!(d["status"], "FAILED");
    assert_eq!(d["error"], "Review.Rejected");
    assert_eq!(d["cause"], "wrong laterality");
    assert_eq!(d["redriveStatus"], "REDRIVABLE");

    let r = lb.json(&["executions", "redrive", &arn]);
    assert!(r["redriveDate"].is_string());
    let d = lb.json(&["executions", "describe", &arn]);
    assert_eq!(d["status"], "RUNNING");
    assert_eq!(d["redriveCount"], 1);
    let tasks = pending(&lb);
    assert_eq!(tasks.len(), 1, "the review gate waits again");
    assert_ne!(tasks[0]["taskToken"], token.as_str(), "a redriven task gets a new token");
    lb.json(&["tasks", "approve", tasks[0]["taskToken"].as_str().expect("token")]);
    assert_eq!(lb.json(&["executions", "describe", &arn])["status"], "SUCCEEDED");
    let types = history_types(&lb, &arn);
    assert_eq!(types.iter().filter(|t| *t == "ExecutionRedriven").count(), 1);
    assert_eq!(types.iter().filter(|t| *t == "ExecutionStarted").count(), 1);
    assert_eq!(types.last().map(String::as_str), Some("ExecutionSucceeded"));
    let listed = lb.json(&["executions", "list", "--redriven"]);
    assert_eq!(listed["executions"].as_array().map(Vec::len), Some(1));

    let err = lb.fails(&["executions", "redrive", &arn]);
    assert!(err.contains("cannot be redriven"), "{err}");
}

#[test]
fn stop_aborts_a_waiting_execution_and_its_token() {
    let lb = Lb::new();
    let arn = setup(&lb, 3600);
    let token = pending(&lb)[0]["taskToken"].as_str().expect("token").to_string();
    let s = lb.json(&["executions", "stop", &arn, "--error", "Ops.Cancelled", "--cause", "order cancelled"]);
    assert!(s["stopDate"].is_string());
    let d = lb.json(&["executions", "describe", &arn]);
    assert_eq!(d["status"], "ABORTED");
    assert_eq!(d["error"], "Ops.Cancelled");
    let err = lb.fails(&["tasks", "approve", &token]);
    assert!(err.contains("TaskTimedOut") && err.contains("ABORTED"), "{err}");
    let err = lb.fails(&["executions", "stop", &arn]);
    assert!(err.contains("not running"), "{err}");
    // An aborted execution can be redriven back into its review gate.
    lb.json(&["executions", "redrive", &arn]);
    assert_eq!(pending(&lb).len(), 1);
}

#[test]
fn a_callback_that_times_out_fails_and_cannot_be_approved_late() {
    let lb = Lb::new();
    let arn = setup(&lb, 1);
    let token = pending(&lb)[0]["taskToken"].as_str().expect("token").to_string();
    std::thread::sleep(std::time::Duration::from_millis(1200));
    let out = lb.run(&["engine", "--seconds", "2"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let d = lb.json(&["executions", "describe", &arn]);
    assert_eq!(d["status"], "FAILED");
    assert_eq!(d["error"], "States.Timeout");
    assert!(history_types(&lb, &arn).contains(&"TaskTimedOut".to_string()));
    let err = lb.fails(&["tasks", "approve", &token]);
    assert!(err.contains("TaskTimedOut"), "{err}");
    assert_eq!(lb.json(&["tasks", "list", "--status", "TIMED_OUT"])["tasks"].as_array().map(Vec::len), Some(1));
}

#[test]
fn bad_input_gets_a_clear_error_and_stores_nothing() {
    let lb = Lb::new();
    setup(&lb, 3600);
    let err = lb.fails(&["executions", "start", "--state-machine", "review", "--input-json", "{not json"]);
    assert!(err.contains("not valid JSON"), "{err}");
    let err = lb.fails(&["executions", "start", "--state-machine", "nope"]);
    assert!(err.contains("StateMachineDoesNotExist") && err.contains("nope"), "{err}");
    let err = lb.fails(&["executions", "start", "--state-machine", "review", "--name", "acc-1"]);
    assert!(err.contains("ExecutionAlreadyExists"), "{err}");
    let err = lb.fails(&["executions", "start", "--state-machine", "review", "--name", "has space"]);
    assert!(err.contains("InvalidName"), "{err}");
    let err = lb.fails(&["tasks", "approve", "0000000000000000000000"]);
    assert!(err.contains("TaskDoesNotExist"), "{err}");
    let token = pending(&lb)[0]["taskToken"].as_str().expect("token").to_string();
    let err = lb.fails(&["tasks", "approve", &token, "--output", "{oops"]);
    assert!(err.contains("InvalidOutput"), "{err}");
    let err = lb.fails(&["executions", "list", "--status", "DONE"]);
    assert!(err.contains("DONE"), "{err}");
    assert_eq!(lb.json(&["executions", "list"])["executions"].as_array().map(Vec::len), Some(1));
    assert_eq!(pending(&lb).len(), 1, "the failed approve left the token pending");

    let bad = lb.write(
        "bad.json",
        &json!({"StartAt": "A", "States": {"A": {"Type": "Pass", "Next": "Nowhere"}, "B": {"Type": "Wait", "End": true}}}),
    );
    let out = lb.run(&["state-machines", "create", "--name", "bad", "--definition", bad.to_str().expect("path")]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("States.A.Next") && err.contains("Nowhere"), "{err}");
    let out = lb.run(&["validate", "--definition", bad.to_str().expect("path")]);
    assert_eq!(out.status.code(), Some(2));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("States.A.Next") && text.contains("States.B"), "{text}");
}

#[test]
fn executions_list_pages_through_everything_once() {
    let lb = Lb::new();
    let def = lb.write("p.json", &json!({"StartAt": "P", "States": {"P": {"Type": "Pass", "End": true}}}));
    lb.json(&["state-machines", "create", "--name", "p", "--definition", def.to_str().expect("path")]);
    for i in 0..7 {
        lb.json(&["executions", "start", "--state-machine", "p", "--name", &format!("e{i}")]);
    }
    let mut seen = vec![];
    let mut next: Option<String> = None;
    loop {
        let mut args = vec!["executions", "list", "--max-results", "3"];
        if let Some(t) = &next {
            args.extend(["--next-token", t.as_str()]);
        }
        let page = lb.json(&args);
        for e in page["executions"].as_array().expect("executions") {
            assert_eq!(e["status"], "SUCCEEDED");
            seen.push(e["name"].as_str().expect("name").to_string());
        }
        match page["nextToken"].as_str() {
            Some(t) => next = Some(t.to_string()),
            None => break,
        }
    }
    seen.sort();
    assert_eq!(seen, (0..7).map(|i| format!("e{i}")).collect::<Vec<_>>());
}

#[test]
fn run_prints_one_result_object_and_exits_2_on_an_invalid_definition() {
    let lb = Lb::new();
    let def = lb.write(
        "w.json",
        &json!({"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 3600, "Next": "F"}, "F": {"Type": "Fail", "Error": "E", "Cause": "c"}}}),
    );
    let out = Command::new(bin())
        .args(["run", "--definition", def.to_str().expect("path"), "--virtual-time", "--history"])
        .output()
        .expect("run");
    assert!(out.status.success());
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["status"], "FAILED");
    assert_eq!(v["error"], "E");
    assert_eq!(v["events"].as_array().map(Vec::len), Some(5));
    let bad = lb.write("bad.json", &json!({"StartAt": "X", "States": {}}));
    let out = Command::new(bin()).args(["run", "--definition", bad.to_str().expect("path")]).output().expect("run");
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn mock_config_drives_task_results_by_attempt() {
    let lb = Lb::new();
    let def = lb.write(
        "m.json",
        &json!({"StartAt": "Call", "States": {"Call": {
            "Type": "Task", "Resource": "arn:aws:states:::dynamodb:putItem", "Parameters": {"TableName": "t"},
            "Retry": [{"ErrorEquals": ["Throttled"], "IntervalSeconds": 30, "MaxAttempts": 2}],
            "End": true}}}),
    );
    let mocks = lb.write(
        "mocks.json",
        &json!({
            "StateMachines": {"Orders": {"TestCases": {"RetryThenOk": {"Call": "ThrottledOnce"}}}},
            "MockedResponses": {"ThrottledOnce": {"0": {"Throw": {"Error": "Throttled", "Cause": "slow down"}}, "1": {"Return": {"ok": true}}}}
        }),
    );
    let out = Command::new(bin())
        .args(["run", "--definition", def.to_str().expect("p"), "--virtual-time", "--history", "--name", "Orders"])
        .args(["--mock-config", mocks.to_str().expect("p"), "--test-case", "RetryThenOk"])
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["status"], "SUCCEEDED");
    assert_eq!(v["output"], json!({"ok": true}));
    let types: Vec<&str> = v["events"].as_array().expect("events").iter().filter_map(|e| e["type"].as_str()).collect();
    assert_eq!(types.iter().filter(|t| **t == "TaskFailed").count(), 1);
    assert_eq!(types.iter().filter(|t| **t == "TaskScheduled").count(), 2);
    let out = Command::new(bin())
        .args(["run", "--definition", def.to_str().expect("p"), "--mock-config", mocks.to_str().expect("p"), "--test-case", "Nope"])
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("Nope"));
}

#[test]
fn test_state_reports_each_processing_step() {
    let lb = Lb::new();
    let def = lb.write(
        "s.json",
        &json!({"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke", "InputPath": "$.order",
                "Parameters": {"FunctionName": "f", "Payload.$": "$"}, "ResultSelector": {"code.$": "$.StatusCode"},
                "ResultPath": "$.result", "Retry": [{"ErrorEquals": ["Busy"], "MaxAttempts": 2}], "Next": "After"}),
    );
    let input = lb.write("in.json", &json!({"order": {"acc": "ACC9"}}));
    let req = lb.write("req.json", &json!({"inspectionLevel": "DEBUG", "mock": {"result": "{\"StatusCode\": 200}"}}));
    let out = Command::new(bin())
        .args([
            "test-state",
            "--definition",
            def.to_str().expect("p"),
            "--input",
            input.to_str().expect("p"),
            "--request",
            req.to_str().expect("p"),
        ])
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["status"], "SUCCEEDED");
    assert_eq!(v["nextState"], "After");
    assert_eq!(v["output"], json!({"order": {"acc": "ACC9"}, "result": {"code": 200}}), "ResultPath merges into the raw state input");
    assert_eq!(v["inspectionData"]["afterInputPath"], json!({"acc": "ACC9"}));
    let req = lb.write("req2.json", &json!({"mock": {"errorOutput": {"error": "Busy", "cause": "try later"}}}));
    let out = Command::new(bin())
        .args([
            "test-state",
            "--definition",
            def.to_str().expect("p"),
            "--input",
            input.to_str().expect("p"),
            "--request",
            req.to_str().expect("p"),
        ])
        .output()
        .expect("run");
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["status"], "RETRIABLE");
    assert_eq!(v["error"], "Busy");
    let bad = lb.write("bad.json", &json!({"Type": "Nope"}));
    let out = Command::new(bin()).args(["test-state", "--definition", bad.to_str().expect("p")]).output().expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Nope"));
}

#[test]
fn config_file_sets_the_data_dir_and_unknown_keys_are_refused() {
    let lb = Lb::new();
    let data = lb.path("from-config");
    let cfg = lb.path("config.toml");
    std::fs::write(&cfg, format!("data_dir = {:?}\nlog = \"debug\"\n", data.to_str().expect("p"))).expect("write");
    let out = Command::new(bin()).args(["--config", cfg.to_str().expect("p"), "--json", "state-machines", "list"]).output().expect("run");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(data.join("lightbox.db").exists(), "the store is created where the config says");
    std::fs::write(&cfg, "data_dri = \"/tmp/x\"\n").expect("write");
    let out = Command::new(bin()).args(["--config", cfg.to_str().expect("p"), "state-machines", "list"]).output().expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("data_dri") && err.contains("config.toml"), "{err}");
    let out = Command::new(bin())
        .args(["--config", lb.path("missing.toml").to_str().expect("p"), "state-machines", "list"])
        .output()
        .expect("run");
    assert!(!out.status.success(), "an explicitly named config file must exist");
}

/// A one-request HTTP server on loopback; returns its address and the request it received.
fn serve_once(status: &str, body: &str) -> (String, std::thread::JoinHandle<String>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let response =
        format!("HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
    let h = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().expect("accept");
        s.set_read_timeout(Some(std::time::Duration::from_secs(5))).expect("timeout");
        let mut buf = vec![0u8; 65536];
        let mut got = Vec::new();
        loop {
            let n = s.read(&mut buf).unwrap_or(0);
            got.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&got).to_string();
            if n == 0 || text.contains("\r\n\r\n") && text.split("\r\n\r\n").nth(1).is_some_and(|b| !b.is_empty()) {
                break;
            }
        }
        s.write_all(response.as_bytes()).expect("write");
        String::from_utf8_lossy(&got).into_owned()
    });
    (addr, h)
}

#[test]
fn http_invoke_calls_the_endpoint_and_maps_errors() {
    let lb = Lb::new();
    let (addr, server) = serve_once("200 OK", r#"{"published":true}"#);
    let def = lb.write(
        "h.json",
        &json!({"StartAt": "Publish", "States": {"Publish": {
            "Type": "Task", "Resource": "arn:aws:states:::http:invoke",
            "Parameters": {"ApiEndpoint": format!("http://{addr}/studies"), "Method": "POST",
                           "QueryParameters": {"site": "MAIN"}, "RequestBody": {"accession.$": "$.accession"}},
            "ResultSelector": {"status.$": "$.StatusCode", "body.$": "$.ResponseBody"}, "End": true}}}),
    );
    let input = lb.write("in.json", &json!({"accession": "ACC5"}));
    let out = Command::new(bin())
        .args(["run", "--definition", def.to_str().expect("p"), "--input", input.to_str().expect("p")])
        .output()
        .expect("run");
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["status"], "SUCCEEDED", "{v}");
    assert_eq!(v["output"], json!({"status": 200, "body": {"published": true}}));
    let request = server.join().expect("server");
    assert!(request.starts_with("POST /studies?site=MAIN"), "{request}");
    assert!(request.contains(r#"{"accession":"ACC5"}"#), "{request}");

    let (addr, server) = serve_once("404 Not Found", r#"{"message":"no such study"}"#);
    let def = lb.write(
        "h404.json",
        &json!({"StartAt": "Publish", "States": {"Publish": {
            "Type": "Task", "Resource": "arn:aws:states:::http:invoke",
            "Parameters": {"ApiEndpoint": format!("http://{addr}/studies/x"), "Method": "GET"}, "End": true}}}),
    );
    let out = Command::new(bin()).args(["run", "--definition", def.to_str().expect("p")]).output().expect("run");
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    server.join().expect("server");
    assert_eq!(v["status"], "FAILED");
    assert_eq!(v["error"], "States.Http.StatusCode.404");
}

#[test]
fn every_cli_action_is_audited_and_tampering_is_detected() {
    let lb = Lb::new();
    let arn = setup(&lb, 3600);
    let token = pending(&lb)[0]["taskToken"].as_str().expect("token").to_string();
    let out = Command::new(bin())
        .args([
            "--data-dir",
            lb.path("data").to_str().expect("p"),
            "--user",
            "dr.lee",
            "tasks",
            "reject",
            &token,
            "--error",
            "Review.Rejected",
            "--cause",
            "laterality",
        ])
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    lb.json(&["--user", "ops.kim", "executions", "redrive", &arn]);
    let err = lb.fails(&["tasks", "approve", &token]);
    assert!(err.contains("TaskTimedOut"), "{err}");
    let entries = lb.json(&["audit", "list"])["entries"].as_array().cloned().expect("entries");
    let actions: Vec<(&str, &str, &str)> = entries
        .iter()
        .map(|e| (e["action"].as_str().unwrap_or(""), e["actor"].as_str().unwrap_or(""), e["result"].as_str().unwrap_or("")))
        .collect();
    assert_eq!(actions.len(), 3, "{entries:?}");
    assert_eq!(actions[2].0, "reject");
    assert_eq!(actions[2].1, "dr.lee");
    assert_eq!(actions[1], ("redrive", "ops.kim", "ok"));
    assert_eq!(actions[0].0, "approve");
    assert_eq!(actions[0].2, "error", "a refused action is audited with its outcome");
    let all = serde_json::to_string(&entries).expect("json");
    assert!(!all.contains(&token), "the audit log never holds a full task token");
    assert!(entries[1]["before"].to_string().contains("FAILED") && entries[1]["after"].to_string().contains("RUNNING"), "{}", entries[1]);
    let v = lb.json(&["audit", "verify"]);
    assert_eq!(v["result"], "OK", "{v}");

    // Edit one row behind the log's back: verify must say so and exit 3.
    let conn = rusqlite::Connection::open(lb.path("data").join("lightbox.db")).expect("open");
    let triggers: Vec<String> = {
        let mut st = conn.prepare("SELECT name FROM sqlite_master WHERE type = 'trigger'").expect("prepare");
        st.query_map([], |r| r.get(0)).expect("query").filter_map(Result::ok).collect()
    };
    for t in triggers {
        conn.execute(&format!("DROP TRIGGER {t}"), []).expect("drop trigger");
    }
    conn.execute("UPDATE audit_log SET actor = 'someone.else' WHERE seq = 2", []).expect("tamper");
    drop(conn);
    let out = lb.run(&["audit", "verify"]);
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stdout));
}

#[test]
fn read_only_refuses_every_mutating_command() {
    let lb = Lb::new();
    let arn = setup(&lb, 3600);
    let token = pending(&lb)[0]["taskToken"].as_str().expect("token").to_string();
    for args in
        [vec!["tasks", "approve", token.as_str()], vec!["tasks", "reject", token.as_str()], vec!["executions", "stop", arn.as_str()]]
    {
        let mut a = vec!["--read-only"];
        a.extend(args.iter().copied());
        let err = lb.fails(&a);
        assert!(err.contains("read-only"), "{args:?}: {err}");
    }
    assert_eq!(pending(&lb).len(), 1);
    assert_eq!(lb.json(&["executions", "describe", &arn])["status"], "RUNNING");
}

#[test]
fn the_example_config_is_accepted_as_is() {
    let lb = Lb::new();
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/config.example.toml");
    let out = Command::new(bin())
        .args(["--config", example, "--data-dir", lb.path("data").to_str().expect("p"), "state-machines", "list"])
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// The example's AWS context, uncommented, is a valid context: its keys parse and it selects
/// the AWS backend (which refuses the embedded engine's own commands with a usage error naming them).
#[test]
fn the_example_aws_context_is_accepted_when_uncommented() {
    let lb = Lb::new();
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config.example.toml")).expect("example");
    let block: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.starts_with("# [contexts.imaging-east]"))
        .take_while(|l| l.starts_with("# ") && !l.trim_start_matches("# ").is_empty())
        .map(|l| &l[2..])
        .collect();
    assert!(block.len() >= 9 && block.iter().any(|l| l.starts_with("backend = \"aws\"")), "the example's aws context: {block:?}");
    let config = lb.file("aws.toml", &format!("{text}\n{}\n", block.join("\n")));
    let out = lb.run(&["--config", &config, "--context", "imaging-east", "state-machines", "list"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("`lightbox state-machines list` works on the embedded engine only, not on --backend aws"), "{err}");
}

#[test]
fn claims_are_shared_and_escalation_routes_to_the_catcher() {
    let lb = Lb::new();
    let def = lb.write(
        "gate.json",
        &json!({"StartAt": "RadiologistReview", "States": {
            "RadiologistReview": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken",
                "Parameters": {"FunctionName": "echo", "Payload": {"token.$": "$$.Task.Token"}}, "HeartbeatSeconds": 3600,
                "Catch": [{"ErrorEquals": ["Review.Escalated"], "ResultPath": "$.escalation", "Next": "SeniorReview"}], "Next": "Done"},
            "SeniorReview": {"Type": "Pass", "Result": "senior", "ResultPath": "$.reader", "Next": "Done"},
            "Done": {"Type": "Succeed"}}}),
    );
    lb.json(&["state-machines", "create", "--name", "gate", "--definition", def.to_str().expect("p")]);
    let arn =
        lb.json(&["executions", "start", "--state-machine", "gate", "--name", "g1"])["executionArn"].as_str().expect("arn").to_string();
    let token = pending(&lb)[0]["taskToken"].as_str().expect("token").to_string();
    lb.json(&["--user", "dr.a", "tasks", "claim", &token]);
    assert_eq!(pending(&lb)[0]["claimedBy"], "dr.a");
    let err = lb.fails(&["--user", "dr.b", "tasks", "claim", &token]);
    assert!(err.contains("claimed by dr.a"), "{err}");
    let err = lb.fails(&["--user", "dr.b", "tasks", "unclaim", &token]);
    assert!(err.contains("claimed by dr.a"), "{err}");
    lb.json(&["--user", "dr.a", "tasks", "unclaim", &token]);
    assert_eq!(pending(&lb)[0]["claimedBy"], Value::Null);
    lb.json(&["--user", "dr.a", "tasks", "escalate", &token, "--reason-code", "direct-care", "--cause", "needs neuro"]);
    let d = lb.json(&["executions", "describe", &arn]);
    assert_eq!(d["status"], "SUCCEEDED");
    let out: Value = serde_json::from_str(d["output"].as_str().expect("output")).expect("json");
    assert_eq!(out["reader"], "senior");
    assert_eq!(out["escalation"]["Error"], "Review.Escalated");
    let actions: Vec<String> = lb.json(&["audit", "list"])["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| e["action"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(actions, vec!["escalate", "unclaim", "unclaim", "claim", "claim"]);
}

#[test]
fn a_named_context_sets_data_dir_and_read_only() {
    let lb = Lb::new();
    let prod = lb.path("prod-data");
    let cfg = lb.path("ctx.toml");
    std::fs::write(
        &cfg,
        format!("[contexts.production]\ndata_dir = {:?}\nread_only = true\naccent = \"#ff0000\"\n", prod.to_str().expect("p")),
    )
    .expect("write");
    let out = Command::new(bin())
        .args(["--config", cfg.to_str().expect("p"), "--context", "production", "state-machines", "list"])
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(prod.join("lightbox.db").exists(), "the context's data dir is used");
    let out = Command::new(bin())
        .args([
            "--config",
            cfg.to_str().expect("p"),
            "--context",
            "production",
            "executions",
            "stop",
            "arn:aws:states:us-east-1:000000000000:execution:x:y",
        ])
        .output()
        .expect("run");
    assert!(String::from_utf8_lossy(&out.stderr).contains("read-only"), "{}", String::from_utf8_lossy(&out.stderr));
    let out = Command::new(bin())
        .args(["--config", cfg.to_str().expect("p"), "--context", "staging", "state-machines", "list"])
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("production"), "names the contexts there are");
}

#[test]
fn demo_runs_the_hospital_headless_and_summarises() {
    let lb = Lb::new();
    let v = lb.json(&["demo", "--seconds", "3", "--speed", "120"]);
    assert!(v["started"].as_u64().is_some_and(|n| n >= 3), "{v}");
    assert!(v["simulatedMinutes"].as_f64().is_some_and(|m| m > 1.0), "{v}");
    assert!(v["executions"]["RUNNING"].as_u64().is_some_and(|n| n > 0), "{v}");
    assert_eq!(
        lb.json(&["state-machines", "list"])["stateMachines"].as_array().map(Vec::len),
        Some(10),
        "the six workflows and their four compensation machines"
    );
    let err = lb.fails(&["demo", "--speed", "0"]);
    assert!(err.contains("--speed"), "{err}");
}

// ----- nothing takes effect without its audit record --------------------------------

#[test]
fn an_approval_killed_before_its_audit_outcome_fails_verify_naming_the_intent() {
    let lb = Lb::new();
    let arn = setup(&lb, 3600);
    let token = pending(&lb)[0]["taskToken"].as_str().expect("token").to_string();
    let out =
        lb.cmd().args(["--user", "dr.lee", "tasks", "approve", &token]).env("LIGHTBOX_CRASH_AT", "action-done").output().expect("run");
    assert!(!out.status.success(), "the process was killed mid-way");
    // The approval took effect…
    assert_eq!(lb.json(&["executions", "describe", &arn])["status"], "SUCCEEDED");
    // …and verify says which action may have gone unrecorded.
    let out = lb.run(&["audit", "verify"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(3), "{text}");
    assert!(text.contains("intent without an outcome") && text.contains("approve") && text.contains("dr.lee"), "{text}");
    let v = lb.json(&["audit", "list"]);
    let intent = v["entries"].as_array().expect("entries").iter().find(|e| e["result"] == "intent").cloned().expect("open intent listed");
    let seq = intent["seq"].as_i64().expect("seq").to_string();
    assert!(text.contains(&format!("seq {seq}")), "{text}");
    // The operator checks and records what happened; the log verifies again.
    lb.json(&[
        "--user",
        "ops.kim",
        "audit",
        "resolve",
        &seq,
        "--reason-code",
        "operations-incident",
        "--reason",
        "approval took effect, execution SUCCEEDED",
    ]);
    let v = lb.json(&["audit", "verify"]);
    assert_eq!(v["result"], "OK", "{v}");

    // The same for stop and redrive.
    let def = lb.write("fail.json", &json!({"StartAt": "F", "States": {"F": {"Type": "Fail", "Error": "E"}}}));
    lb.json(&["state-machines", "create", "--name", "fails", "--definition", def.to_str().expect("p")]);
    let failed = lb.json(&["executions", "start", "--state-machine", "fails"])["executionArn"].as_str().expect("arn").to_string();
    let out = lb.cmd().args(["executions", "redrive", &failed]).env("LIGHTBOX_CRASH_AT", "action-done").output().expect("run");
    assert!(!out.status.success());
    assert_eq!(lb.run(&["audit", "verify"]).status.code(), Some(3));
}

fn run_keyed(lb: &Lb, key: Option<&str>, args: &[&str]) -> Output {
    let mut c = lb.cmd();
    c.args(args);
    match key {
        Some(k) => c.env("LIGHTBOX_AUDIT_KEY", k),
        None => c.env_remove("LIGHTBOX_AUDIT_KEY"),
    };
    c.output().expect("run")
}

/// Claim and unclaim the review a few times: audited actions.
fn audited_actions(lb: &Lb, key: Option<&str>, who: &str) {
    let token = pending(lb)[0]["taskToken"].as_str().expect("token").to_string();
    for verb in ["claim", "unclaim", "claim"] {
        let out = run_keyed(lb, key, &["--user", who, "tasks", verb, &token]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
}

#[test]
fn with_a_key_a_rewrite_of_the_whole_chain_and_its_anchor_is_detected() {
    const KEY: &str = "correct horse battery staple 42";
    let real = Lb::new();
    setup(&real, 3600);
    audited_actions(&real, Some(KEY), "dr.lee");
    let ok = run_keyed(&real, Some(KEY), &["audit", "verify"]);
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stdout));
    assert!(String::from_utf8_lossy(&ok.stdout).contains("keyed"));
    // Verifying a keyed log without the key does not pass, and says why without also
    // calling every intent unfinished.
    let unkeyed = run_keyed(&real, None, &["audit", "verify"]);
    assert_eq!(unkeyed.status.code(), Some(3));
    let said = String::from_utf8_lossy(&unkeyed.stdout);
    assert!(said.contains("signed with an audit key") && !said.contains("intent without an outcome"), "{said}");
    // A wrong key does not pass either.
    assert_eq!(run_keyed(&real, Some("another key of enough length"), &["audit", "verify"]).status.code(), Some(3));

    // A forger without the key builds a consistent chain of their own, and replaces the
    // log, its head, the heads it published and the anchor file with it.
    let forged = Lb::new();
    setup(&forged, 3600);
    audited_actions(&forged, None, "someone.else");
    let db = real.path("data").join("lightbox.db");
    let conn = rusqlite::Connection::open(&db).expect("open");
    let triggers: Vec<String> = {
        let mut st = conn.prepare("SELECT name FROM sqlite_master WHERE type = 'trigger'").expect("prepare");
        st.query_map([], |r| r.get(0)).expect("query").filter_map(Result::ok).collect()
    };
    for t in triggers {
        conn.execute(&format!("DROP TRIGGER {t}"), []).expect("drop trigger");
    }
    conn.execute_batch(&format!(
        "ATTACH '{}' AS f; DELETE FROM audit_log; INSERT INTO audit_log SELECT * FROM f.audit_log;
         DELETE FROM audit_head; INSERT INTO audit_head SELECT * FROM f.audit_head;
         DELETE FROM outbox WHERE topic = 'audit';
         INSERT INTO outbox (execution_arn, event_id, topic, payload, created_ms)
           SELECT execution_arn, event_id, topic, payload, created_ms FROM f.outbox WHERE topic = 'audit'; DETACH f;",
        forged.path("data").join("lightbox.db").display()
    ))
    .expect("forge");
    drop(conn);
    std::fs::copy(forged.path("data").join("lightbox.db.anchor"), real.path("data").join("lightbox.db.anchor")).expect("anchor");
    // Without the key the forgery is consistent: that is the limit README states.
    assert!(run_keyed(&real, None, &["audit", "verify"]).status.success());
    // With the key it is caught.
    let out = run_keyed(&real, Some(KEY), &["audit", "verify"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(3), "{text}");
    assert!(text.contains("not signed with the audit key"), "{text}");
}

// ----- AWS-faithful edges -----------------------------------------------------------

#[test]
fn creating_a_state_machine_again_is_idempotent_only_with_the_same_definition() {
    let lb = Lb::new();
    let def = lb.write("a.json", &review_machine(60));
    let first = lb.json(&["state-machines", "create", "--name", "review", "--definition", def.to_str().expect("p")]);
    let again = lb.json(&["state-machines", "create", "--name", "review", "--definition", def.to_str().expect("p")]);
    assert_eq!(first, again, "same name and definition: the existing state machine");
    let other = lb.write("b.json", &review_machine(120));
    let err = lb.fails(&["state-machines", "create", "--name", "review", "--definition", other.to_str().expect("p")]);
    assert!(
        err.contains(
            "StateMachineAlreadyExists: State Machine Already Exists: 'arn:aws:states:us-east-1:000000000000:stateMachine:review'"
        ),
        "{err}"
    );
    let err = lb.fails(&[
        "state-machines",
        "create",
        "--name",
        "review",
        "--definition",
        def.to_str().expect("p"),
        "--role-arn",
        "arn:aws:iam::1:role/x",
    ]);
    assert!(err.contains("StateMachineAlreadyExists"), "{err}");
}

#[test]
fn starting_a_running_execution_again_with_the_same_input_returns_it() {
    let lb = Lb::new();
    let arn = setup(&lb, 3600);
    let again =
        lb.json(&["executions", "start", "--state-machine", "review", "--name", "acc-1", "--input-json", r#"{ "accession" : "ACC1" }"#]);
    assert_eq!(again["executionArn"], arn.as_str());
    assert_eq!(pending(&lb).len(), 1, "nothing new was started");
    let err = lb.fails(&["executions", "start", "--state-machine", "review", "--name", "acc-1", "--input-json", r#"{"accession":"ACC2"}"#]);
    assert!(err.contains(&format!("ExecutionAlreadyExists: Execution Already Exists: '{arn}'")), "{err}");
    lb.json(&["executions", "stop", &arn]);
    let err = lb.fails(&["executions", "start", "--state-machine", "review", "--name", "acc-1", "--input-json", r#"{"accession":"ACC1"}"#]);
    assert!(err.contains("ExecutionAlreadyExists"), "a closed execution's name cannot be reused: {err}");
}

#[test]
fn missing_non_utf8_or_directory_inputs_exit_2_naming_the_file() {
    let lb = Lb::new();
    let good = lb.write("good.json", &review_machine(60));
    let good = good.to_str().expect("p");
    let missing = lb.path("missing.json");
    let missing = missing.to_str().expect("p");
    let latin1 = lb.path("latin1.json");
    std::fs::write(&latin1, b"{\"name\": \"Ren\xe9\"}").expect("write");
    let latin1 = latin1.to_str().expect("p");
    let dir = lb.path("a-directory");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let dir = dir.to_str().expect("p");
    for (bad, why) in [(missing, "does not exist"), (latin1, "not UTF-8"), (dir, "is a directory")] {
        for args in [
            vec!["validate", "--definition", bad],
            vec!["run", "--definition", bad],
            vec!["run", "--definition", good, "--input", bad],
            vec!["run", "--definition", good, "--mock-config", bad, "--test-case", "t"],
            vec!["test-state", "--definition", good, "--request", bad],
            vec!["state-machines", "create", "--name", "x", "--definition", bad],
        ] {
            let out = lb.run(&args);
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
            assert!(err.contains(bad) && err.contains(why), "{args:?}: {err}");
            assert!(!err.contains("panicked"), "{err}");
        }
    }
    lb.json(&["state-machines", "create", "--name", "review", "--definition", good]);
    let out = lb.run(&["executions", "start", "--state-machine", "review", "--input", latin1]);
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn state_names_with_control_characters_are_escaped_in_tables() {
    let lb = Lb::new();
    let name = "Review\u{1b}[2J\u{1b}]0;pwned\u{7}";
    let def = lb.write(
        "esc.json",
        &json!({"StartAt": name, "States": {name: {
            "Type": "Task", "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken",
            "Parameters": {"FunctionName": "echo", "Payload": {"t.$": "$$.Task.Token"}}, "End": true}}}),
    );
    lb.json(&["state-machines", "create", "--name", "esc", "--definition", def.to_str().expect("p")]);
    let arn = lb.json(&["executions", "start", "--state-machine", "esc"])["executionArn"].as_str().expect("arn").to_string();
    for args in [vec!["tasks", "list"], vec!["executions", "history", arn.as_str()]] {
        let out = lb.run(&args);
        assert!(out.status.success());
        assert!(!out.stdout.contains(&0x1b) && !out.stdout.contains(&0x07), "{args:?}: raw control characters reached the terminal");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains(r"Review\u{1b}[2J\u{1b}]0;pwned\u{7}"), "{args:?}: {text}");
    }
    // JSON output keeps the exact name (JSON escapes it).
    assert_eq!(pending(&lb)[0]["stateName"], name);
}

#[test]
fn redrive_on_the_command_line_says_first_when_it_would_fail_again_at_once() {
    let lb = Lb::new();
    let def = lb.write(
        "f.json",
        &json!({"StartAt": "Check", "States": {
        "Check": {"Type": "Pass", "Next": "Refuse"},
        "Refuse": {"Type": "Fail", "Error": "Order.Cancelled", "Cause": "cancelled"}}}),
    );
    lb.json(&["state-machines", "create", "--name", "f", "--definition", def.to_str().expect("p")]);
    let arn = lb.json(&["executions", "start", "--state-machine", "f", "--name", "x"])["executionArn"].as_str().expect("arn").to_string();
    let out = lb.run(&["executions", "redrive", &arn]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("consequence: WARNING") && err.contains("Fail state") && err.contains("fails again at once"), "{err}");
}

/// Seen: with `$USER` unset (as root under a service manager), actions were recorded as
/// "unknown". The OS account's name is used instead.
#[test]
fn with_no_user_in_the_environment_the_account_name_acts() {
    let lb = Lb::new();
    setup(&lb, 3600);
    let token = pending(&lb)[0]["taskToken"].as_str().expect("token").to_string();
    let out =
        lb.cmd().env_remove("USER").env_remove("LOGNAME").env_remove("USERNAME").args(["tasks", "claim", &token]).output().expect("run");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let entries = lb.json(&["audit", "list"]);
    let actor = entries["entries"][0]["actor"].as_str().expect("actor").to_string();
    assert!(!actor.is_empty() && actor != "unknown", "{entries}");
    let id = Command::new("id").arg("-un").output().expect("id");
    assert_eq!(actor, String::from_utf8_lossy(&id.stdout).trim(), "{entries}");
}

/// Seen: `validate --definition /dev/zero` and `run --input /dev/zero` filled memory.
/// Reading stops past the most a file may hold, and says so (exit 2).
#[test]
fn endless_or_oversized_input_files_are_refused_without_reading_them_whole() {
    let lb = Lb::new();
    let out = lb.run(&["validate", "--definition", "/dev/zero"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("larger than 1048576 bytes"), "{}", String::from_utf8_lossy(&out.stderr));
    let def = lb.write("p.json", &json!({"StartAt": "P", "States": {"P": {"Type": "Pass", "End": true}}}));
    let out = lb.run(&["run", "--definition", def.to_str().expect("p"), "--input", "/dev/zero"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("larger than 262144 bytes"), "{}", String::from_utf8_lossy(&out.stderr));
}

/// The shortened token a table prints (`c234d0eb…`) is accepted as the prefix it is; a
/// prefix under 8 characters is refused as too short, not as a token that does not exist.
#[test]
fn the_printed_short_token_is_accepted_and_a_short_prefix_says_why() {
    let lb = Lb::new();
    setup(&lb, 3600);
    let token = pending(&lb)[0]["taskToken"].as_str().expect("token").to_string();
    let shown: String = token.chars().take(8).chain(std::iter::once('…')).collect();
    lb.json(&["--user", "dr.lee", "tasks", "claim", &shown]);
    let err = lb.fails(&["tasks", "approve", &token[..7]]);
    assert!(err.contains("at least 8 characters"), "{err}");
}

/// State names from a definition are printed escaped by `validate`, `run` and
/// `state-machines create`: a name cannot send escape sequences or bidi overrides to the terminal.
#[test]
fn invalid_definitions_print_state_names_escaped() {
    let lb = Lb::new();
    let def = lb.write(
        "ctl.json",
        &json!({"StartAt": "A\u{1b}[31m\u{202e}", "States": {"A\u{1b}[31m\u{202e}": {"Type": "Pass", "Next": "Nowhere"}}}),
    );
    for args in
        [vec!["validate", "--definition"], vec!["run", "--definition"], vec!["state-machines", "create", "--name", "c", "--definition"]]
    {
        let mut a = args.clone();
        a.push(def.to_str().expect("p"));
        let out = lb.run(&a);
        let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(!all.contains('\u{1b}') && !all.contains('\u{202e}'), "{args:?}: {all:?}");
        assert!(all.contains("\\u{1b}"), "{args:?}: {all}");
    }
}

/// Every byte the CLI writes to a terminal is defanged: a user name, reason, sink name or
/// dependency match holding an escape sequence, a bell or a bidirectional override is shown
/// escaped in tables, messages and errors, and `--json` stays valid JSON with the exact value.
#[test]
fn control_characters_from_config_users_and_arguments_never_reach_the_terminal() {
    let evil = "x\u{1b}[2J\u{1b}]0;pwned\u{7}\u{202e}";
    // A handler name cannot hold control characters (config refuses it), but an override can.
    let handler = "h\u{202e}x";
    let lb = Lb::as_user(evil);
    let config = lb.file(
        "evil.toml",
        &format!(
            "[[dependencies]]\nname = \"dep\"\nmatch = {{ handler = {h} }}\n\n[[outbox.sinks]]\nname = \"a\"\nkind = \"ndjson\"\npath = \"ev.ndjson\"\n",
            h = serde_json::to_string(handler).expect("toml string")
        ),
    );
    let c = config.as_str();
    // A reason of substance with control characters in it (they are dropped from the note).
    let evil_reason = format!("vendor maintenance window {evil}");
    let runs: Vec<Vec<&str>> = vec![
        vec!["--config", c, "dependencies", "hold", "dep", "--reason-code", "operations-incident", "--reason", &evil_reason],
        vec!["--config", c, "dependencies", "list"],
        vec!["--config", c, "dependencies", "hold", evil, "--reason-code", "operations-incident", "--reason", "vendor maintenance window"],
        vec!["--config", c, "outbox", "requeue", "--sink", evil],
        vec!["--config", c, "outbox", "pause", evil, "--reason-code", "operations-incident", "--reason", evil],
        vec!["--config", c, "outbox", "pause", "a", "--reason-code", "operations-incident", "--reason", evil],
        vec!["--config", c, "outbox", "list"],
        vec!["--config", c, "audit", "list"],
        vec!["--config", c, "events", "list", "--pattern", evil],
        vec!["--config", c, "tasks", "escalate", "12345678", "--reason-code", "operations-incident", "--reason", evil],
        vec!["--config", c, "executions", "compensate", evil, "--reason-code", "operations-incident", "--reason", evil],
        vec!["--config", c, "slo", "list", "--window", evil],
    ];
    for args in &runs {
        let out = lb.run(args);
        for (what, bytes) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
            let text = String::from_utf8_lossy(bytes);
            assert!(
                !bytes.iter().any(|&b| b == 0x1b || b == 0x07) && !text.contains('\u{202e}'),
                "{args:?}: a raw control character reached {what}: {text:?}"
            );
        }
    }
    let listed = lb.ok(&["--config", c, "dependencies", "list"]);
    assert!(listed.contains(r"by x\u{1b}[2J") && listed.contains(r"h\u{202e}x"), "who holds it and the match, escaped: {listed}");
    // JSON: valid, the exact value back, no raw override in the text.
    let out = lb.run(&["--json", "--config", c, "dependencies", "list"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).expect("utf-8");
    assert!(!text.contains('\u{202e}') && !text.contains('\u{1b}'), "{text}");
    let v: Value = serde_json::from_str(&text).expect("valid JSON");
    assert_eq!(v[0]["matches"], format!("handler {handler}"));
    assert_eq!(v[0]["heldBy"], evil);
}

/// One bound for every duration (config keys and flags): past 366 days it is refused with the
/// range named, never fed to date arithmetic (`--window 99999999999d` panicked, exit 101).
#[test]
fn absurd_durations_are_refused_by_every_key_and_flag_never_a_panic() {
    let lb = Lb::new();
    lb.ok(&["slo", "list"]);
    for w in ["99999999999d", "367d", "9999999999999s"] {
        for all in [false, true] {
            let mut args = vec!["--json", "slo", "list", "--window", w, "--at", "9999-12-31T23:59:59Z"];
            if all {
                args.push("--all");
            }
            let out = lb.run(&args);
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
            assert!(err.contains("--window") && err.contains("at most 366d"), "{args:?}: {err}");
        }
    }
    lb.ok(&["slo", "list", "--window", "366d", "--all", "--at", "0001-01-01T00:00:00Z"]);
    for (toml, key) in [
        ("[[slo]]\nname = \"s\"\nwhen = {}\nfrom = \"start\"\nto = \"end\"\ntarget = \"99999999999d\"\n", "target"),
        ("[[outbox.sinks]]\nname = \"a\"\nkind = \"ndjson\"\npath = \"e\"\nbreaker_open_for = \"99999999999d\"\n", "breaker_open_for"),
        ("[[outbox.sinks]]\nname = \"a\"\nkind = \"webhook\"\nurl = \"http://127.0.0.1:9/\"\ntimeout = \"400d\"\n", "timeout"),
        ("[[dependencies]]\nname = \"d\"\nmatch = { handler = \"h\" }\nwindow = \"99999999999d\"\n", "window"),
        ("[[escalation]]\nstate = \"Review\"\nsteps = [ { after = \"99999999999d\", fail = \"\" } ]\n", "after"),
    ] {
        let config = lb.file("absurd.toml", toml);
        let err = lb.fails(&["--config", &config, "slo", "list"]);
        assert!(err.contains(key) && err.contains("at most 366d") && !err.contains("panicked"), "{key}: {err}");
    }
}

/// Every bad value in the issue-8 sections is refused when the config is read, before the
/// store opens, with the file, the key path and the problem named; a secret in a webhook URL
/// is never printed (in errors, `outbox list` or its JSON); nothing stored changes.
#[test]
fn bad_resilience_config_names_the_file_and_key_and_never_prints_url_credentials() {
    let lb = Lb::new();
    let def = lb.file("w.json", &json!({"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 3600, "End": true}}}));
    lb.json(&["state-machines", "create", "--name", "w", "--definition", &def]);
    lb.json(&["executions", "start", "--state-machine", "w", "--name", "kept"]);
    let before = lb.json(&["executions", "list"]);
    let dir = lb.path("a-directory");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let sink = |extra: &str| format!("[[outbox.sinks]]\nname = \"a\"\n{extra}\n");
    let cases: Vec<(String, &str)> = vec![
        (sink("kind = \"webhook\"\nurl = \"ftp://user:s3cret@host/x\""), "url"),
        (sink("kind = \"webhook\"\nurl = \"file:///etc/passwd\""), "url"),
        (sink("kind = \"webhook\"\nurl = \"http://\""), "url"),
        (sink("kind = \"webhook\"\nurl = \"http://host/a b\""), "url"),
        (sink("kind = \"webhook\"\nurl = \"http://u:s3cret@host/\\u001b[2J\""), "url"),
        (sink("kind = \"webhook\"\nurl = \"http:// user:s3cret@host/\""), "url"),
        (sink(&format!("kind = \"ndjson\"\npath = {:?}", dir.display().to_string())), "path"),
        (sink("kind = \"ndjson\"\npath = \"\""), "path"),
        (sink("kind = \"ndjson\"\npath = \"e\"\nbreaker_failures = 0"), "breaker_failures"),
        (format!("{0}{0}", sink("kind = \"ndjson\"\npath = \"e\"")), "name"),
        ("[[slo]]\nname = \"s\"\nwhen = {}\nfrom = \"start\"\nto = \"end\"\ntarget = \"60m\"\nat_risk = 7.0\n".into(), "at_risk"),
        ("[[slo]]\nname = \"s\"\nwhen = {}\nfrom = \"start\"\nto = \"end\"\ntarget = \"0s\"\n".into(), "target"),
        ("[[dependencies]]\nname = \"d\"\nmatch = { host = \"https://user:s3cret@clearinghouse.example:443/x\" }\n".into(), "match.host"),
        ("[[dependencies]]\nname = \"d\"\nmatch = { handler = \"\" }\n".into(), "match.handler"),
        ("[[escalation]]\nstate = \"Review\"\nsteps = [ { at = 7.0, fail = \"\" } ]\n".into(), "steps[0].at"),
        ("[compensation.w]\nstate_machine = \"w\"\nstates = [\"W\"]\n".into(), "state_machine"),
        ("[[event_patterns]]\nname = \"p\"\npattern = '{\"a\": [{\"numeric\": [\">\", 5, \"<\", 1]}]}'\n".into(), "numeric"),
    ];
    for (toml, key) in &cases {
        let config = lb.file("bad.toml", toml);
        for args in [vec!["outbox", "list"], vec!["--json", "slo", "list"], vec!["dependencies", "list"]] {
            let mut a = vec!["--config", config.as_str()];
            a.extend(args.iter().copied());
            let out = lb.run(&a);
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success() && out.stdout.is_empty(), "{toml}: accepted: {}", String::from_utf8_lossy(&out.stdout));
            assert!(err.contains(&format!("config file {config} is not valid")), "{toml}: the file is not named: {err}");
            assert!(err.contains(key), "{toml}: the key {key} is not named: {err}");
            assert!(!err.contains("s3cret"), "{toml}: a credential was printed: {err}");
        }
    }
    assert_eq!(lb.json(&["executions", "list"]), before, "a bad config changed nothing stored");
    // A URL with credentials is accepted (basic auth), and shown without them.
    let config = lb.file("ok.toml", &sink("kind = \"webhook\"\nurl = \"https://user:s3cret@127.0.0.1:9/hook?token=s3cret#f\""));
    let table = lb.ok(&["--config", &config, "outbox", "list"]);
    let listed = lb.json(&["--config", &config, "outbox", "list"]);
    assert_eq!(listed["sinks"][0]["target"], "https://***@127.0.0.1:9/hook?***#f");
    assert!(!table.contains("s3cret") && !listed.to_string().contains("s3cret"), "{table}\n{listed}");
}
