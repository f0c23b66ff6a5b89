//! A claim taken an instant before an answer commits is honoured: the claim check is part of
//! the transaction that applies the answer, not a read before it.
//!
//! The answering process is held (a `wait` point, compiled only into test builds) right after
//! its first claim check passed, another user claims the review, and the answer goes on: it
//! must be refused with nothing changed, on every answering path (approve, reject).

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::Lb;
use serde_json::json;

fn setup(lb: &Lb) -> (String, String) {
    let def = lb.write(
        "review.json",
        &json!({"StartAt": "Review", "States": {
            "Review": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken",
                       "Parameters": {"FunctionName": "echo", "Payload": {"token.$": "$$.Task.Token"}}, "Next": "Signed"},
            "Signed": {"Type": "Pass", "End": true}}}),
    );
    lb.json(&["state-machines", "create", "--name", "review", "--definition", def.to_str().expect("path")]);
    let arn = lb.json(&["executions", "start", "--state-machine", "review", "--name", "acc-1"])["executionArn"]
        .as_str()
        .expect("arn")
        .to_string();
    let token = lb.json(&["tasks", "list"])["tasks"][0]["taskToken"].as_str().expect("token").to_string();
    (arn, token)
}

/// Wait until the answering process stands at its `answer-checked` wait point.
fn held_at_check(note: &std::path::Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !std::fs::read_to_string(note).unwrap_or_default().contains("answer-checked") {
        assert!(Instant::now() < deadline, "the answer never reached its check");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn race(answer: &[&str]) {
    let lb = Lb::new();
    let (arn, token) = setup(&lb);
    let note = lb.path("points");
    let mut args = vec!["--user", "dr.lee", "tasks"];
    args.extend_from_slice(answer);
    args.push(&token);
    let mut cmd: Command = lb.cmd();
    cmd.args(&args).env("LIGHTBOX_CRASH_AT", "answer-checked:wait").env("LIGHTBOX_CRASH_NOTE", &note);
    let child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("answer");

    // The answer has passed its first check and is about to apply.
    held_at_check(&note);
    // Another reviewer claims it in that instant…
    lb.json(&["--user", "dr.kim", "tasks", "claim", &token]);
    // …then the answer goes on.
    std::fs::write(format!("{}.go", note.display()), "").expect("go");
    let out = child.wait_with_output().expect("answer ends");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the answer landed over dr.kim's claim without an override");
    assert!(stderr.contains("claimed by dr.kim"), "{stderr}");
    // Nothing changed: the review still waits, claimed by dr.kim.
    assert_eq!(lb.json(&["executions", "describe", &arn])["status"], "RUNNING");
    let t = &lb.json(&["tasks", "list"])["tasks"][0];
    assert_eq!(t["status"], "PENDING", "{t}");
    assert_eq!(t["claimedBy"], "dr.kim", "{t}");
    // And dr.kim can still answer it.
    let mut ok = vec!["--user", "dr.kim", "tasks"];
    ok.extend_from_slice(answer);
    ok.push(&token);
    lb.ok(&ok);
}

#[test]
fn an_approval_racing_a_claim_is_refused() {
    race(&["approve"]);
}

#[test]
fn a_rejection_racing_a_claim_is_refused() {
    race(&["reject", "--error", "Review.Rejected", "--cause", "draft does not match the images"]);
}

/// Through `lightbox serve`: SendTaskSuccess, held after its first check while another
/// reviewer claims the review, is refused with TaskClaimed, and a plain SendTaskSuccess on a
/// claimed review is refused too.
#[test]
fn serve_honours_a_claim_taken_while_an_answer_is_in_flight() {
    let lb = Lb::new();
    let (arn, token) = setup(&lb);
    let note = lb.path("points");
    let (mut child, url) = common::spawn_serve(
        lb.cmd().args(["serve", "--bind", "127.0.0.1:0"]).env("LIGHTBOX_CRASH_AT", "answer-checked:wait").env("LIGHTBOX_CRASH_NOTE", &note),
    );
    let call = |body: serde_json::Value| {
        let url = url.clone();
        std::thread::spawn(move || {
            let r = reqwest::blocking::Client::new()
                .post(&url)
                .header("X-Amz-Target", "AWSStepFunctions.SendTaskSuccess")
                .header("Content-Type", "application/x-amz-json-1.0")
                .body(body.to_string())
                .send()
                .expect("call");
            (r.status().as_u16(), r.text().unwrap_or_default())
        })
    };
    let answer = call(json!({"taskToken": token, "output": "{}"}));
    held_at_check(&note);
    lb.json(&["--user", "dr.kim", "tasks", "claim", &token]);
    std::fs::write(format!("{}.go", note.display()), "").expect("go");
    let (status, body) = answer.join().expect("answer");
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("TaskClaimed") && body.contains("dr.kim"), "{body}");
    assert_eq!(lb.json(&["executions", "describe", &arn])["status"], "RUNNING");
    // Claimed before the call: refused at once (the wait point lets it through).
    let (status, body) = call(json!({"taskToken": token, "output": "{}"})).join().expect("answer");
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("TaskClaimed"), "{body}");
    let _ = child.kill();
    let _ = child.wait();
}

/// The store's read-then-write transactions (a crash record, a guarded commit, a release,
/// a direct finish) take the write lock first: with another connection writing all the
/// while, none of them fails with "database is locked" (a deferred transaction overtaken
/// between its read and its first write cannot wait, SQLite refuses it at once).
#[test]
fn crash_records_taken_beside_another_writer_never_fail_as_locked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("lightbox.db");
    let a = lightbox::store::Store::open(&path).expect("store a");
    let b = lightbox::store::Store::open(&path).expect("store b");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let t = format!("tok-{}", n % 7);
                b.claim_task(&t, "dr.kim", chrono::Utc::now()).expect("claim");
                b.unclaim_task(&t, "dr.kim").expect("unclaim");
                n += 1;
            }
            n
        })
    };
    for i in 0..3000 {
        let arn = format!("arn:aws:states:us-east-1:000000000000:execution:m:e{}", i % 5);
        a.record_crash(&arn, i, "a wake", chrono::Utc::now()).unwrap_or_else(|e| panic!("crash {i}: {e}"));
        a.apply_verdict(&arn, i).unwrap_or_else(|e| panic!("verdict {i}: {e}"));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(writer.join().expect("writer") > 0, "the other writer wrote");
}
