//! Durability under crashes and concurrency: real processes on one SQLite store.
//! A worker is killed (SIGKILL) at random instants while executions are in flight;
//! after restarts every execution finishes, and its history is exactly the one an
//! uninterrupted run produces: no transition lost, none applied twice.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_lightbox")
}

fn lb(data: &Path, args: &[&str]) -> Value {
    let out = Command::new(bin()).arg("--data-dir").arg(data).arg("--json").args(args).output().expect("run lightbox");
    assert!(out.status.success(), "lightbox {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("json")
}

fn worker(data: &Path, seconds: u64) -> Child {
    Command::new(bin())
        .arg("--data-dir")
        .arg(data)
        .args(["engine", "--seconds", &seconds.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn worker")
}

/// Ten states per execution: waits, tasks, a Map and a Parallel.
fn workflow() -> Value {
    let task = |next: &str| {
        json!({"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke", "Parameters": {"FunctionName": "echo", "Payload.$": "$"},
               "ResultSelector": {"echoed.$": "$.Payload.n"}, "ResultPath": "$.last", "Next": next})
    };
    json!({
        "StartAt": "Arrive",
        "States": {
            "Arrive": {"Type": "Wait", "Seconds": 1, "Next": "Schedule"},
            "Schedule": task("Acquire"),
            "Acquire": task("Series"),
            "Series": {
                "Type": "Map", "ItemsPath": "$.series", "ResultPath": "$.series",
                "ItemProcessor": {"StartAt": "Store", "States": {"Store": {
                    "Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
                    "Parameters": {"FunctionName": "echo", "Payload.$": "$"}, "OutputPath": "$.Payload", "End": true}}},
                "Next": "Settle"
            },
            "Settle": {"Type": "Wait", "Seconds": 1, "Next": "Downstream"},
            "Downstream": {
                "Type": "Parallel", "ResultPath": "$.downstream",
                "Branches": [
                    {"StartAt": "Publish", "States": {"Publish": {"Type": "Task", "Resource": "arn:aws:lambda:us-east-1:000000000000:function:echo", "End": true}}},
                    {"StartAt": "Bill", "States": {"Bill": {"Type": "Pass", "Result": "billed", "End": true}}}
                ],
                "Next": "Sign"
            },
            "Sign": task("Done"),
            "Done": {"Type": "Succeed"}
        }
    })
}

fn event_types(events: &Value) -> Vec<String> {
    events.as_array().expect("events").iter().map(|e| e["type"].as_str().unwrap_or_default().to_string()).collect()
}

fn setup(n: usize) -> (tempfile::TempDir, Vec<String>, Vec<String>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let def = dir.path().join("wf.json");
    std::fs::write(&def, workflow().to_string()).expect("write");
    let input = json!({"n": 7, "series": [1, 2, 3]}).to_string();
    let input_file = dir.path().join("in.json");
    std::fs::write(&input_file, &input).expect("write");
    // The reference: the same definition and input, uninterrupted.
    let out = Command::new(bin())
        .args(["run", "--definition", def.to_str().expect("p"), "--input", input_file.to_str().expect("p"), "--virtual-time", "--history"])
        .output()
        .expect("run");
    let reference: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(reference["status"], "SUCCEEDED");
    let expected = event_types(&reference["events"]);
    lb(&data, &["state-machines", "create", "--name", "wf", "--definition", def.to_str().expect("p")]);
    let mut arns = vec![];
    for i in 0..n {
        let r = lb(&data, &["executions", "start", "--state-machine", "wf", "--name", &format!("x{i}"), "--input-json", &input]);
        arns.push(r["executionArn"].as_str().expect("arn").to_string());
    }
    (dir, arns, expected)
}

fn check_all(data: &Path, arns: &[String], expected: &[String]) {
    for arn in arns {
        let d = lb(data, &["executions", "describe", arn]);
        assert_eq!(d["status"], "SUCCEEDED", "{arn}: {d}");
        let h = lb(data, &["executions", "history", arn]);
        let ids: Vec<i64> = h["events"].as_array().expect("events").iter().filter_map(|e| e["id"].as_i64()).collect();
        assert_eq!(ids, (1..=ids.len() as i64).collect::<Vec<_>>(), "{arn}: event ids must be contiguous");
        assert_eq!(event_types(&h["events"]), expected, "{arn}: history differs from an uninterrupted run");
    }
}

fn wait_until_done(data: &Path, arns: &[String], limit: Duration) {
    let start = Instant::now();
    while start.elapsed() < limit {
        let running = lb(data, &["executions", "list", "--status", "RUNNING", "--max-results", "1000"]);
        if running["executions"].as_array().is_none_or(Vec::is_empty) {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = arns;
}

#[test]
fn killing_the_worker_at_random_instants_loses_and_repeats_nothing() {
    let (dir, arns, expected) = setup(120);
    let data = dir.path().join("data");
    // Kill a worker eight times, each after a random 50–450 ms of work.
    let mut seed: u64 = 0x5eed_1234_abcd_0001;
    for _ in 0..8 {
        let mut w = worker(&data, 30);
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_millis(50 + seed % 400));
        w.kill().expect("kill");
        w.wait().expect("reap");
    }
    let mut w = worker(&data, 60);
    wait_until_done(&data, &arns, Duration::from_secs(60));
    w.kill().expect("kill");
    w.wait().expect("reap");
    check_all(&data, &arns, &expected);
}

#[test]
fn two_workers_on_one_store_apply_each_transition_once() {
    let (dir, arns, expected) = setup(80);
    let data = dir.path().join("data");
    let mut a = worker(&data, 60);
    let mut b = worker(&data, 60);
    wait_until_done(&data, &arns, Duration::from_secs(60));
    for w in [&mut a, &mut b] {
        w.kill().expect("kill");
        w.wait().expect("reap");
    }
    check_all(&data, &arns, &expected);
}
