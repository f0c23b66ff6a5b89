//! Every operator action killed mid-work, from the CLI and through `lightbox serve`: the kill
//! lands inside the step that applies the action (a crash point, compiled only into test
//! builds, writes where it died before it dies, so the test knows it was not before or after),
//! nothing is half-applied, the audit log names the intent that has no outcome, and doing the
//! action again takes effect exactly once.

mod common;

use std::process::{Command, Output};

use common::Lb;
use serde_json::{Value, json};

const COMP: &str = "[compensation.fails]\nstate_machine = \"fails-undo\"\nstates = [\"Prep\"]\n";

struct Site {
    lb: Lb,
    cfg: String,
}

impl Site {
    fn new() -> Site {
        let lb = Lb::as_user("dr.lee");
        let cfg = lb.file("config.toml", COMP);
        let review = lb.file(
            "review.json",
            &json!({"StartAt": "Review", "States": {
                "Review": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken",
                           "Parameters": {"FunctionName": "echo", "Payload": {"token.$": "$$.Task.Token"}}, "Next": "Signed"},
                "Signed": {"Type": "Pass", "End": true}}}),
        );
        let fails = lb.file(
            "fails.json",
            &json!({"StartAt": "Prep", "States": {"Prep": {"Type": "Pass", "Next": "Boom"}, "Boom": {"Type": "Fail", "Error": "Scanner.Down"}}}),
        );
        let undo = lb.file("undo.json", &json!({"StartAt": "Undo", "States": {"Undo": {"Type": "Pass", "End": true}}}));
        let site = Site { lb, cfg };
        site.json(&["state-machines", "create", "--name", "review", "--definition", &review]);
        site.json(&["state-machines", "create", "--name", "fails", "--definition", &fails]);
        site.json(&["state-machines", "create", "--name", "fails-undo", "--definition", &undo]);
        site
    }
    fn cmd(&self) -> Command {
        let mut c = self.lb.cmd();
        c.arg("--config").arg(&self.cfg);
        c
    }
    fn json(&self, args: &[&str]) -> Value {
        let out = self.cmd().arg("--json").args(args).output().expect("run");
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).expect("json")
    }
    fn review(&self, name: &str) -> (String, String) {
        let arn = self.json(&["executions", "start", "--state-machine", "review", "--name", name])["executionArn"]
            .as_str()
            .expect("arn")
            .to_string();
        let tasks = self.json(&["tasks", "list", "--execution", &arn]);
        (arn, tasks["tasks"][0]["taskToken"].as_str().expect("token").to_string())
    }
    fn failed(&self, name: &str) -> String {
        self.json(&["executions", "start", "--state-machine", "fails", "--name", name])["executionArn"].as_str().expect("arn").to_string()
    }
    fn status(&self, arn: &str) -> Value {
        self.json(&["executions", "describe", arn])
    }
    /// Run `args` with the process killed at `point` while working on a subject containing `part`.
    fn killed(&self, point: &str, part: &str, args: &[&str]) -> Output {
        let note = self.lb.path("points");
        let _ = std::fs::remove_file(&note);
        let out = self
            .cmd()
            .args(args)
            .env("LIGHTBOX_CRASH_AT", format!("{point}@{part}"))
            .env("LIGHTBOX_CRASH_NOTE", &note)
            .output()
            .expect("run");
        assert!(!out.status.success(), "{args:?} was not killed: {}", String::from_utf8_lossy(&out.stdout));
        let died = std::fs::read_to_string(&note).unwrap_or_default();
        assert!(died.starts_with(point) && died.contains(part), "{args:?}: the kill did not land mid-work ({died:?})");
        out
    }
    /// `audit verify` names exactly one intent without an outcome, for `action`.
    fn open_intent(&self, action: &str) {
        let out = self.cmd().args(["audit", "verify"]).output().expect("verify");
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(3), "{text}");
        assert!(text.contains("intent without an outcome") && text.contains(action), "{text}");
        let v = self.json(&["audit", "list"]);
        let open: Vec<&Value> = v["entries"].as_array().expect("entries").iter().filter(|e| e["result"] == "intent").collect();
        let seq = open.iter().find(|e| e["action"] == action).expect("the open intent")["seq"].as_i64().expect("seq").to_string();
        self.json(&["audit", "resolve", &seq, "--reason-code", "operations-incident", "--reason", "checked by hand after the kill test"]);
    }
}

#[test]
fn approve_killed_mid_apply_leaves_the_review_waiting_and_lands_once_when_repeated() {
    let s = Site::new();
    let (arn, token) = s.review("acc-approve");
    s.killed("apply", "acc-approve", &["tasks", "approve", &token]);
    assert_eq!(s.status(&arn)["status"], "RUNNING");
    assert_eq!(s.json(&["tasks", "list", "--execution", &arn])["tasks"][0]["status"], "PENDING");
    s.open_intent("approve");
    s.json(&["tasks", "approve", &token]);
    assert_eq!(s.status(&arn)["status"], "SUCCEEDED");
    let h = s.json(&["executions", "history", &arn]);
    let answers = h["events"].as_array().expect("events").iter().filter(|e| e["type"] == "TaskSucceeded").count();
    assert_eq!(answers, 1, "{h}");
}

#[test]
fn reject_killed_mid_apply_leaves_the_review_waiting() {
    let s = Site::new();
    let (arn, token) = s.review("acc-reject");
    s.killed("apply", "acc-reject", &["tasks", "reject", &token, "--error", "Review.Rejected", "--cause", "draft does not match"]);
    assert_eq!(s.status(&arn)["status"], "RUNNING");
    s.open_intent("reject");
    s.json(&["tasks", "reject", &token, "--error", "Review.Rejected", "--cause", "draft does not match"]);
    let d = s.status(&arn);
    assert_eq!((d["status"].as_str(), d["error"].as_str()), (Some("FAILED"), Some("Review.Rejected")), "{d}");
}

#[test]
fn stop_killed_mid_apply_leaves_it_running_and_stops_it_when_repeated() {
    let s = Site::new();
    let (arn, _) = s.review("acc-stop");
    s.killed("apply", "acc-stop", &["executions", "stop", &arn, "--cause", "wrong patient on the order"]);
    assert_eq!(s.status(&arn)["status"], "RUNNING");
    s.open_intent("stop");
    s.json(&["executions", "stop", &arn, "--cause", "wrong patient on the order"]);
    assert_eq!(s.status(&arn)["status"], "ABORTED");
}

#[test]
fn redrive_killed_mid_apply_leaves_it_failed_and_redrives_once_when_repeated() {
    let s = Site::new();
    let arn = s.failed("ord-redrive");
    s.killed("apply", "ord-redrive", &["executions", "redrive", &arn]);
    let d = s.status(&arn);
    assert_eq!((d["status"].as_str(), d["redriveCount"].as_i64().unwrap_or(0)), (Some("FAILED"), 0), "{d}");
    s.open_intent("redrive");
    s.json(&["executions", "redrive", &arn]);
    assert_eq!(s.status(&arn)["redriveCount"], 1);
}

#[test]
fn compensate_killed_mid_start_starts_the_compensation_once_when_repeated() {
    let s = Site::new();
    let arn = s.failed("ord-comp");
    s.killed(
        "apply",
        "ord-comp-undo",
        &["executions", "compensate", &arn, "--reason-code", "operations-incident", "--reason", "scanner booking must be undone"],
    );
    let list = s.json(&["executions", "list", "--state-machine", "fails-undo"]);
    assert_eq!(list["executions"].as_array().map(Vec::len), Some(0), "the killed start stored nothing: {list}");
    s.open_intent("compensate");
    let first =
        s.json(&["executions", "compensate", &arn, "--reason-code", "operations-incident", "--reason", "scanner booking must be undone"]);
    assert_eq!(first["started"], true, "{first}");
    let again =
        s.json(&["executions", "compensate", &arn, "--reason-code", "operations-incident", "--reason", "scanner booking must be undone"]);
    assert_eq!(again["started"], false, "{again}");
    let list = s.json(&["executions", "list", "--state-machine", "fails-undo"]);
    assert_eq!(list["executions"].as_array().map(Vec::len), Some(1), "{list}");
}

/// Makes the execution a call acts on: its ARN and the call's body.
type Make = Box<dyn Fn(&Site) -> (String, Value)>;

/// Through `lightbox serve`: the server dies inside the step applying SendTaskSuccess,
/// SendTaskFailure, StopExecution or RedriveExecution; a new server finds the execution as it
/// was, and the call made again takes effect once.
#[test]
fn serve_killed_mid_apply_for_each_action_leaves_nothing_half_done() {
    let s = Site::new();
    let calls: Vec<(&str, Make, &str)> = vec![
        (
            "SendTaskSuccess",
            Box::new(|s: &Site| {
                let (a, t) = s.review("srv-ok");
                (a, json!({"taskToken": t, "output": "{}"}))
            }),
            "SUCCEEDED",
        ),
        (
            "SendTaskFailure",
            Box::new(|s: &Site| {
                let (a, t) = s.review("srv-no");
                (a, json!({"taskToken": t, "error": "Review.Rejected"}))
            }),
            "FAILED",
        ),
        (
            "StopExecution",
            Box::new(|s: &Site| {
                let (a, _) = s.review("srv-stop");
                (a.clone(), json!({"executionArn": a}))
            }),
            "ABORTED",
        ),
        (
            "RedriveExecution",
            Box::new(|s: &Site| {
                let a = s.failed("srv-redrive");
                (a.clone(), json!({"executionArn": a}))
            }),
            "FAILED",
        ),
    ];
    for (op, make, after) in calls {
        let (arn, body) = make(&s);
        let before = s.status(&arn);
        let note = s.lb.path("points");
        let _ = std::fs::remove_file(&note);
        let name = arn.rsplit(':').next().unwrap_or_default().to_string();
        let (mut child, url) = common::spawn_serve(
            s.cmd()
                .args(["serve", "--bind", "127.0.0.1:0"])
                .env("LIGHTBOX_CRASH_AT", format!("apply@{name}"))
                .env("LIGHTBOX_CRASH_NOTE", &note),
        );
        let post = |url: &str| {
            reqwest::blocking::Client::new()
                .post(url)
                .header("X-Amz-Target", format!("AWSStepFunctions.{op}"))
                .header("Content-Type", "application/x-amz-json-1.0")
                .body(body.to_string())
                .send()
        };
        assert!(post(&url).is_err_and(|e| !e.is_timeout()), "{op}: the server answered instead of dying mid-apply");
        let _ = child.wait();
        let died = std::fs::read_to_string(&note).unwrap_or_default();
        assert!(died.starts_with("apply") && died.contains(&name), "{op}: the kill did not land mid-apply ({died:?})");
        let now = s.status(&arn);
        assert_eq!((&now["status"], &now["redriveCount"]), (&before["status"], &before["redriveCount"]), "{op}: half-applied: {now}");
        // A server without the crash: the same call lands, once.
        let (mut child, url) = common::spawn_serve(s.cmd().args(["serve", "--bind", "127.0.0.1:0"]));
        let r = post(&url).expect("call");
        assert!(r.status().is_success(), "{op}: {}", r.text().unwrap_or_default());
        let d = s.status(&arn);
        assert_eq!(d["status"], after, "{op}: {d}");
        if op == "RedriveExecution" {
            assert_eq!(d["redriveCount"], 1, "{d}");
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}
