//! The console killed mid-action, in a real terminal: approve, reject, stop and redrive each
//! die inside the step that applies them (a crash point, compiled only into test builds, notes
//! where it died first), and afterwards nothing is half-applied and the audit log names the
//! console's intent that has no outcome.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::tmux::Tmux;
use common::{bin, describe_at as describe, lb_at as lb, reviews_and_a_failed_publication as setup};

/// Run the console with a crash point on `name`, do `act`, and wait for it to die there.
fn killed_console(action: &str, name: &str, act: impl Fn(&Tmux)) -> (tempfile::TempDir, PathBuf) {
    killed_console_on(setup, action, name, act)
}

fn killed_console_on(
    fixture: fn(&std::path::Path) -> PathBuf,
    action: &str,
    name: &str,
    act: impl Fn(&Tmux),
) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = fixture(dir.path());
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
    let (_d, data) = killed_console("approve", "ACC-E2E-1", |t| {
        t.keys(&["2"]);
        t.wait_for("ACC-E2E-1");
        t.keys(&["a"]);
        t.wait_for("Approve ACC-E2E-1");
        t.keys(&["Enter"]);
    });
    assert_eq!(describe(&data, "review", "ACC-E2E-1")["status"], "RUNNING");
    assert_eq!(lb(&data, &["tasks", "list"])["tasks"][0]["status"], "PENDING");

    let (_d, data) = killed_console("reject", "ACC-E2E-1", |t| {
        t.keys(&["2"]);
        t.wait_for("ACC-E2E-1");
        t.keys(&["r"]);
        t.wait_for("Reject ACC-E2E-1");
        t.keys(&["Enter"]);
    });
    assert_eq!(describe(&data, "review", "ACC-E2E-1")["status"], "RUNNING");

    let (_d, data) = killed_console("stop", "ACC-E2E-1", |t| {
        t.keys(&["3"]);
        t.wait_for("ACC-E2E-1");
        t.keys(&["/"]);
        for c in ["A", "C", "C", "-", "E", "2", "E", "-", "1", "Enter"] {
            t.keys(&[c]);
        }
        t.keys(&["x"]);
        t.wait_until("the stop dialog", |s| s.contains("Stop 1"));
        t.keys(&["y"]);
    });
    assert_eq!(describe(&data, "review", "ACC-E2E-1")["status"], "RUNNING");

    let (_d, data) = killed_console("redrive", "ACC-E2E-3", |t| {
        t.keys(&["3", "s", "s"]);
        t.wait_for("ACC-E2E-3");
        t.keys(&["/"]);
        for c in ["A", "C", "C", "-", "E", "2", "E", "-", "3", "Enter"] {
            t.keys(&[c]);
        }
        t.keys(&["R"]);
        t.wait_for("Redrive 1 execution(s)");
        t.keys(&["y"]);
    });
    let d = describe(&data, "publish", "ACC-E2E-3");
    assert_eq!((d["status"].as_str(), d["redriveCount"].as_i64().unwrap_or(0)), (Some("FAILED"), 0), "{d}");
}

/// Compensate from the console, killed inside the start of the compensation: nothing was
/// started, and compensating again starts it once.
#[test]
fn the_console_killed_mid_compensate_starts_the_compensation_once_when_repeated() {
    let (_d, data) = killed_console_on(common::stopped_billing, "compensate", "ACC-E2E-9-undo", |t| {
        t.keys(&["3"]);
        t.wait_for("ACC-E2E-9");
        t.keys(&["C"]);
        t.wait_for("Compensate ACC-E2E-9 (ABORTED)");
        t.keys(&["Right", "charge posted for a stopped claim", "Enter"]);
    });
    let list = lb(&data, &["executions", "list", "--state-machine", "billing-undo"]);
    assert_eq!(list["executions"].as_array().map(Vec::len), Some(0), "the killed start stored nothing: {list}");
    let args = ["executions", "compensate", "arn:aws:states:us-east-1:000000000000:execution:billing:ACC-E2E-9"];
    let first =
        lb(&data, &[&args[..], &["--reason-code", "operations-incident", "--reason", "charge posted for a stopped claim"]].concat());
    assert_eq!(first["started"], true, "{first}");
    assert_eq!(describe(&data, "billing-undo", "ACC-E2E-9-undo")["status"], "SUCCEEDED");
}
