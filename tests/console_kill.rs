//! The console killed mid-action, in a real terminal: approve, reject, stop and redrive each
//! die inside the step that applies them (a crash point, compiled only into test builds, notes
//! where it died first), and afterwards nothing is half-applied and the audit log names the
//! console's intent that has no outcome.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::tmux::Tmux;
use serde_json::{Value, json};

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_lightbox")
}

fn lb(data: &Path, args: &[&str]) -> Value {
    let out = Command::new(bin()).arg("--data-dir").arg(data).arg("--json").args(args).output().expect("run lightbox");
    assert!(out.status.success(), "lightbox {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("json")
}

fn setup(dir: &Path) -> PathBuf {
    let data = dir.join("data");
    let review = json!({"StartAt": "RadiologistReview", "States": {
        "RadiologistReview": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken",
            "Parameters": {"FunctionName": "echo", "Payload": {"token.$": "$$.Task.Token", "accession.$": "$.accession", "priority.$": "$.priority"}},
            "TimeoutSeconds": 3600, "ResultPath": "$.review", "Next": "Signed"},
        "Signed": {"Type": "Succeed"}}});
    let publish = json!({"StartAt": "Publish", "States": {"Publish": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
        "Parameters": {"FunctionName": "fail", "Payload": {"error": "Archive.Unavailable", "cause": "PACS down"}}, "End": true}}});
    std::fs::write(dir.join("review.json"), review.to_string()).expect("write");
    std::fs::write(dir.join("publish.json"), publish.to_string()).expect("write");
    lb(&data, &["state-machines", "create", "--name", "review", "--definition", dir.join("review.json").to_str().expect("p")]);
    lb(&data, &["state-machines", "create", "--name", "publish", "--definition", dir.join("publish.json").to_str().expect("p")]);
    let input = json!({"accession": "ACC-K-1", "priority": "STAT", "modality": "CT"}).to_string();
    lb(&data, &["executions", "start", "--state-machine", "review", "--name", "ACC-K-1", "--input-json", &input]);
    let input = json!({"accession": "ACC-K-3"}).to_string();
    lb(&data, &["executions", "start", "--state-machine", "publish", "--name", "ACC-K-3", "--input-json", &input]);
    data
}

fn describe(data: &Path, machine: &str, name: &str) -> Value {
    lb(data, &["executions", "describe", &format!("arn:aws:states:us-east-1:000000000000:execution:{machine}:{name}")])
}

/// Run the console with a crash point on `name`, do `act`, and wait for it to die there.
fn killed_console(action: &str, name: &str, act: impl Fn(&Tmux)) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = setup(dir.path());
    let note = dir.path().join("points");
    let cmd = format!(
        "env LIGHTBOX_CRASH_AT=apply@{name} LIGHTBOX_CRASH_NOTE={} {} --data-dir {} --user dr.kill console --no-demo",
        note.display(),
        bin(),
        data.display()
    );
    let t = Tmux::start("lightbox-kill", &cmd, 120, 32);
    t.wait_for("LIGHTBOX");
    act(&t);
    let start = Instant::now();
    while t.alive() {
        assert!(start.elapsed() < Duration::from_secs(30), "{action}: the console did not die mid-apply:\n{}", t.screen());
        std::thread::sleep(Duration::from_millis(100));
    }
    let died = std::fs::read_to_string(&note).unwrap_or_default();
    assert!(died.starts_with("apply") && died.contains(name), "{action}: the kill did not land mid-apply ({died:?})");
    // The console's intent is in the log, without an outcome.
    let out = Command::new(bin()).arg("--data-dir").arg(&data).args(["audit", "verify"]).output().expect("verify");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{action}: {text}");
    assert!(text.contains("intent without an outcome") && text.contains(action), "{action}: {text}");
    (dir, data)
}

#[test]
fn the_console_killed_mid_approve_reject_stop_or_redrive_leaves_nothing_half_done() {
    let (_d, data) = killed_console("approve", "ACC-K-1", |t| {
        t.keys(&["2"]);
        t.wait_for("ACC-K-1");
        t.keys(&["a"]);
        t.wait_for("Approve ACC-K-1");
        t.keys(&["Enter"]);
    });
    assert_eq!(describe(&data, "review", "ACC-K-1")["status"], "RUNNING");
    assert_eq!(lb(&data, &["tasks", "list"])["tasks"][0]["status"], "PENDING");

    let (_d, data) = killed_console("reject", "ACC-K-1", |t| {
        t.keys(&["2"]);
        t.wait_for("ACC-K-1");
        t.keys(&["r"]);
        t.wait_for("Reject ACC-K-1");
        t.keys(&["Enter"]);
    });
    assert_eq!(describe(&data, "review", "ACC-K-1")["status"], "RUNNING");

    let (_d, data) = killed_console("stop", "ACC-K-1", |t| {
        t.keys(&["3"]);
        t.wait_for("ACC-K-1");
        t.keys(&["/"]);
        for c in ["A", "C", "C", "-", "K", "-", "1", "Enter"] {
            t.keys(&[c]);
        }
        t.keys(&["x"]);
        t.wait_until("the stop dialog", |s| s.contains("Stop 1"));
        t.keys(&["y"]);
    });
    assert_eq!(describe(&data, "review", "ACC-K-1")["status"], "RUNNING");

    let (_d, data) = killed_console("redrive", "ACC-K-3", |t| {
        t.keys(&["3", "s", "s"]);
        t.wait_for("ACC-K-3");
        t.keys(&["/"]);
        for c in ["A", "C", "C", "-", "K", "-", "3", "Enter"] {
            t.keys(&[c]);
        }
        t.keys(&["R"]);
        t.wait_for("Redrive 1 execution(s)");
        t.keys(&["y"]);
    });
    let d = describe(&data, "publish", "ACC-K-3");
    assert_eq!((d["status"].as_str(), d["redriveCount"].as_i64().unwrap_or(0)), (Some("FAILED"), 0), "{d}");
}
