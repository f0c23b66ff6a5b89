//! A crash is never repeated: an execution whose step kills the engine is applied again at
//! most once more after a restart, then quarantined (failed with `Lightbox.Quarantined`),
//! while every other execution goes on; `executions release` allows one more try.
//!
//! The engine is killed by crash points (`src/crash.rs`, compiled only into test builds)
//! inside the step itself: each kill writes a note naming the point and the execution before
//! it dies, so the test knows every kill landed mid-apply, not before or after it.

mod common;

use std::path::Path;
use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

use common::Lb;
use serde_json::Value;

const DEF: &str = r#"{"StartAt":"Wait","States":{"Wait":{"Type":"Wait","Seconds":1,"Next":"Done"},"Done":{"Type":"Pass","End":true}}}"#;

fn setup(lb: &Lb, names: &[&str]) -> Vec<String> {
    let def = lb.file("def.json", DEF);
    lb.ok(&["state-machines", "create", "--name", "ward", "--definition", &def]);
    names
        .iter()
        .map(|n| {
            let v = lb.json(&["executions", "start", "--state-machine", "ward", "--name", n, "--input-json", "{}"]);
            v["executionArn"].as_str().expect("arn").to_string()
        })
        .collect()
}

fn describe(lb: &Lb, arn: &str) -> Value {
    lb.json(&["executions", "describe", arn])
}

/// `lightbox engine` until it exits by itself (a crash) or `done` holds; returns how it ended
/// (`None`: still running when `done` held, then stopped).
fn engine_until(lb: &Lb, crash_at: &str, cap: Option<u64>, done: impl Fn() -> bool) -> Option<ExitStatus> {
    let mut cmd = match cap {
        // Memory exhaustion under a cap: the address space limit makes allocation fail.
        Some(bytes) => {
            let mut c = Command::new("prlimit");
            c.arg(format!("--as={bytes}")).arg("--").arg(common::bin());
            c.env("HOME", lb.dir.path()).env_remove("LIGHTBOX_CONFIG").env_remove("LIGHTBOX_AUDIT_KEY");
            c.arg("--data-dir").arg(lb.data());
            c
        }
        None => lb.cmd(),
    };
    cmd.args(["engine", "--seconds", "120"]).env("LIGHTBOX_CRASH_AT", crash_at).env("LIGHTBOX_CRASH_NOTE", lb.path("crash-notes"));
    cmd.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
    let mut child = cmd.spawn().expect("start lightbox engine");
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return Some(status);
        }
        if done() {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        assert!(Instant::now() < deadline, "the engine neither crashed nor finished the work in 90 s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn notes(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("crash-notes")).unwrap_or_default().lines().map(str::to_string).collect()
}

fn status(lb: &Lb, arn: &str) -> String {
    describe(lb, arn)["status"].as_str().unwrap_or_default().to_string()
}

fn quarantine_cycle(how: &str, cap: Option<u64>) {
    let lb = Lb::as_user("ops.lead");
    let arns = setup(&lb, &["poison-1", "innocent-1", "innocent-2"]);
    let (poison, innocents) = (&arns[0], &arns[1..]);
    let crash_at = format!("apply:{how}@poison");

    // Two starts die inside the poison execution's step (whatever the innocent ones did).
    for n in 1..=2 {
        let ended = engine_until(&lb, &crash_at, cap, || false);
        let ended = ended.expect("the engine crashed");
        assert!(!ended.success(), "crash {n}: the engine should have died, it exited {ended:?}");
        assert_eq!(notes(lb.dir.path()), vec![format!("apply {poison}"); n], "crash {n} landed inside the poison execution's apply");
    }

    // The third start does not apply it again: it is quarantined, and the others finish.
    let ended =
        engine_until(&lb, &crash_at, cap, || status(&lb, poison) == "FAILED" && innocents.iter().all(|a| status(&lb, a) == "SUCCEEDED"));
    assert!(ended.is_none(), "the third engine must not die: {ended:?}");
    assert_eq!(notes(lb.dir.path()).len(), 2, "the poison execution was applied a third time");
    let d = describe(&lb, poison);
    assert_eq!(d["error"], "Lightbox.Quarantined", "{d}");
    let cause = d["cause"].as_str().unwrap_or_default();
    assert!(cause.contains("stopped 2 times") && cause.contains("executions release"), "{cause}");

    // `executions list` shows it with its error.
    let list = lb.ok(&["executions", "list", "--status", "FAILED"]);
    assert!(list.contains("poison-1") && list.contains("Lightbox.Quarantined"), "{list}");

    // Release needs a reason, and only takes a quarantined execution.
    lb.fails(&["executions", "release", poison, "--reason-code", "operations-incident", "--reason", "x"]);
    let refused = lb.fails(&[
        "executions",
        "release",
        &innocents[0],
        "--reason-code",
        "operations-incident",
        "--reason",
        "fixed the handler build, trying again",
    ]);
    assert!(refused.contains("not quarantined"), "{refused}");

    // One more try: with the crash gone it runs to the end from where it was.
    // (The release drives it at once: its timer is long due.)
    let out = lb.json(&[
        "executions",
        "release",
        poison,
        "--reason-code",
        "operations-incident",
        "--reason",
        "fixed the handler build, trying again",
    ]);
    assert_eq!(out["status"], "SUCCEEDED", "{out}");
    assert_eq!(out["redriveCount"], 1, "{out}");
    let audit = lb.json(&["audit", "list"]);
    let rows = audit["entries"].as_array().cloned().unwrap_or_default();
    assert!(
        rows.iter().any(|r| r["action"] == "release"
            && r["executionArn"].as_str() == Some(poison.as_str())
            && r["result"] == "ok"
            && r["after"]["status"] == "SUCCEEDED"),
        "no audited release: {audit}"
    );
    let history = lb.json(&["executions", "history", poison]);
    let types: Vec<&str> = history["events"].as_array().into_iter().flatten().filter_map(|e| e["type"].as_str()).collect();
    assert!(
        types.contains(&"ExecutionFailed") && types.contains(&"ExecutionRedriven") && types.last() == Some(&"ExecutionSucceeded"),
        "{types:?}"
    );
}

#[test]
fn an_execution_that_aborts_the_engine_is_quarantined_after_one_more_try() {
    quarantine_cycle("abort", None);
}

#[test]
fn an_execution_that_exhausts_memory_under_a_cap_is_quarantined() {
    quarantine_cycle("oom", Some(3 << 30));
}

#[test]
fn an_execution_that_overflows_the_stack_is_quarantined() {
    quarantine_cycle("stack", None);
}

/// A released execution that crashes the engine again is quarantined at once: the release
/// allowed one more try, not two.
#[test]
fn a_release_allows_exactly_one_more_try() {
    let lb = Lb::as_user("ops.lead");
    let arns = setup(&lb, &["poison-2"]);
    let poison = &arns[0];
    let crash_at = "apply@poison";
    for _ in 0..2 {
        assert!(engine_until(&lb, crash_at, None, || false).is_some());
    }
    engine_until(&lb, crash_at, None, || status(&lb, poison) == "FAILED");
    assert_eq!(notes(lb.dir.path()).len(), 2);
    // The release drives the execution at once: that is the one more try, and it dies again.
    let out = lb
        .cmd()
        .args(["executions", "release", poison, "--reason-code", "operations-incident", "--reason", "one more try after the patch"])
        .env("LIGHTBOX_CRASH_AT", crash_at)
        .env("LIGHTBOX_CRASH_NOTE", lb.path("crash-notes"))
        .output()
        .expect("run release");
    assert!(!out.status.success(), "the released try should have crashed");
    assert_eq!(notes(lb.dir.path()).len(), 3);
    // The next engine quarantines it again without applying it.
    engine_until(&lb, crash_at, None, || status(&lb, poison) == "FAILED");
    assert_eq!(notes(lb.dir.path()).len(), 3, "a release allows one try, not more");
    assert_eq!(describe(&lb, poison)["error"], "Lightbox.Quarantined");
}
