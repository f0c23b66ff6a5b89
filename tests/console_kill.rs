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
