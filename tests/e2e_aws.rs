//! The console on `--backend aws` as an operator uses it: the real binary in a real terminal
//! (tmux) against moto's Step Functions (`LIGHTBOX_TEST_MOTO_URL`, started by
//! scripts/test.sh). The pending callback shows in Reviews with its token masked, the operator
//! approves it with the keys a person uses, and the execution is seen SUCCEEDED in the
//! console and through moto's DescribeExecution. A missing server or tmux FAILS the test.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::aws::{call, moto, run_state_machines, sqs_review_machine, unique};
use common::tmux::Tmux;
use serde_json::{Value, json};

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_lightbox")
}

/// A review machine on moto whose one execution waits for its callback; the task token as
/// Step Functions resolved it (from the execution's history).
fn review_waiting(url: &str, machine: &str, accession: &str) -> (String, String, String) {
    run_state_machines(url);
    let sm = sqs_review_machine(url, machine, json!({"token.$": "$$.Task.Token", "accession.$": "$.accession"}));
    let input = json!({"accession": accession, "priority": "STAT", "modality": "CT", "bodyPart": "head",
        "patient": {"name": "Ada Testperson", "mrn": "SYN-000778", "birthDate": "1950-02-03"}});
    let ex = call(url, "AWSStepFunctions.StartExecution", json!({"stateMachineArn": sm, "name": accession, "input": input.to_string()}));
    let arn = ex["executionArn"].as_str().expect("execution arn").to_string();
    let start = Instant::now();
    let token = loop {
        let h = call(url, "AWSStepFunctions.GetExecutionHistory", json!({"executionArn": arn}));
        let found = h["events"].as_array().into_iter().flatten().find_map(|e| {
            let p = e["taskScheduledEventDetails"]["parameters"].as_str()?;
            let p: Value = serde_json::from_str(p).ok()?;
            p["MessageBody"]["token"].as_str().map(str::to_string)
        });
        if let Some(t) = found {
            break t;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "moto never scheduled the review task: {h}");
        std::thread::sleep(Duration::from_millis(300));
    };
    (sm, arn, token)
}

fn status_on_moto(url: &str, arn: &str) -> String {
    call(url, "AWSStepFunctions.DescribeExecution", json!({"executionArn": arn}))["status"].as_str().unwrap_or_default().to_string()
}

/// The console's command line with the AWS environment of this test only: moto's fixed keys,
/// no profile files of the machine's user. Each context names its own data directory (a
/// `--data-dir` would override them all).
fn console_cmd(dir: &Path, config: &Path, context: &str) -> String {
    format!(
        "env AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_CONFIG_FILE={none} AWS_SHARED_CREDENTIALS_FILE={none} \
         AWS_EC2_METADATA_DISABLED=true {bin} --config {config} --user dr.aws --context {context} console",
        none = dir.join("no-aws-config").display(),
        bin = bin(),
        config = config.display(),
    )
}

#[test]
fn on_aws_the_operator_approves_a_callback_and_sees_the_execution_succeed() {
    let url = moto();
    let dir = tempfile::tempdir().expect("tempdir");
    let accession = unique("ACC-AWS");
    let (sm, arn, token) = review_waiting(&url, &unique("rad-review-e2e"), &accession);
    let config = dir.path().join("config.toml");
    let data = dir.path().join("aws-data");
    std::fs::write(
        &config,
        format!(
            "[contexts.moto-east]\nbackend = \"aws\"\nregion = \"us-east-1\"\nendpoint_url = \"{url}\"\nstate_machines = [\"{sm}\"]\n\
             data_dir = \"{}\"\n\n[contexts.training]\ndata_dir = \"{}\"\n\n\
             [contexts.nowhere]\nbackend = \"aws\"\nregion = \"us-west-2\"\nendpoint_url = \"http://127.0.0.1:9\"\ndata_dir = \"{}\"\n",
            data.display(),
            dir.path().join("training").display(),
            dir.path().join("nowhere").display()
        ),
    )
    .expect("config");
    let t = Tmux::start("lightbox-e2e-aws", &console_cmd(dir.path(), &config, "moto-east"), 140, 36);
    // The header names the backend, its region and the live context (and keeps the context's
    // name when the backend's condition leaves no room for the rest).
    t.wait_for("aws us-east-1 · moto-east");

    // Reviews: the pending callback, its token and its patient masked.
    t.keys(&["2"]);
    let s = t.wait_for(&accession);
    assert!(s.lines().next().is_some_and(|h| h.contains("moto-east")), "the header names the live context:\n{s}");
    assert!(!s.contains(&token), "the full task token is on screen:\n{s}");
    let head: String = token.chars().take(12).collect();
    assert!(!s.contains(&head), "more of the token than its short form is on screen:\n{s}");
    for phi in ["Testperson", "SYN-000778", "1950-02-03"] {
        assert!(!s.contains(phi), "{phi} is on screen unmasked:\n{s}");
    }

    // Approve it, as a person does: `a`, then Enter in the approval dialog.
    t.keys(&["a"]);
    let d = t.wait_for(&format!("Approve {accession}"));
    assert!(!d.contains(&token), "the approval dialog shows the token:\n{d}");
    t.keys(&["Enter"]);
    t.wait_for("approve: 1 done");

    // Step Functions (moto) has it SUCCEEDED …
    let start = Instant::now();
    while status_on_moto(&url, &arn) != "SUCCEEDED" {
        assert!(start.elapsed() < Duration::from_secs(30), "moto: {} is {}", arn, status_on_moto(&url, &arn));
        std::thread::sleep(Duration::from_millis(300));
    }
    // … and so does the console: the review is gone, and the execution shows SUCCEEDED.
    t.wait_until("the review leaving the queue", |s| !s.contains(&accession) || s.contains("0 pending"));
    t.keys(&["3"]);
    let s = t.wait_until("the execution SUCCEEDED", |s| s.lines().any(|l| l.contains(&accession) && l.contains("SUCCEEDED")));
    assert!(!s.contains("Testperson"), "{s}");

    // A context that does not answer (nothing listens on its endpoint) is not switched to.
    t.command("ctx nowhere");
    let s = t.wait_until("the failed switch", |s| s.contains("ctx: nowhere not switched to: region us-west-2: no answer"));
    assert!(s.lines().next().is_some_and(|h| h.contains("moto-east") && !h.contains("nowhere")), "{s}");
    assert!(s.contains(&accession), "the live context's data stays:\n{s}");

    // `:ctx training` switches to a local context live: the header names it, and nothing of
    // the AWS context shows under it.
    t.command("ctx training");
    let s = t.wait_for("ctx: training is live");
    let header = s.lines().next().unwrap_or_default();
    assert!(header.contains("local") && header.contains("· training"), "{s}");
    assert!(s.contains(&dir.path().join("training").display().to_string()), "the training context's data directory:\n{s}");
    assert!(!s.contains(&accession), "the AWS context's execution shows under the local one:\n{s}");
    t.keys(&["q"]);

    // The approval is in the local audit log, by this operator, from the console.
    let out = Command::new(bin()).arg("--data-dir").arg(&data).args(["--json", "audit", "list"]).output().expect("audit list");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let audit: Value = serde_json::from_slice(&out.stdout).expect("json");
    let approved = audit["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .any(|e| e["action"] == "approve" && e["actor"] == "dr.aws" && e["source"] == "console" && e["result"] == "ok");
    assert!(approved, "approve not audited: {audit}");
    let text = audit.to_string();
    assert!(!text.contains(&token), "the audit log shows the full token");
}
