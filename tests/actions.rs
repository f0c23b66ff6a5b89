//! Actions land on what the operator chose: claims are respected by every surface, and the
//! CLI says what an answer will do before it acts. The real binary on a real store.

mod common;

use common::Lb;

use serde_json::{Value, json};

trait ActionsExt {
    fn gate(&self) -> String;
    fn token(&self) -> String;
    fn token_status(&self, token: &str) -> String;
    fn audit(&self) -> Vec<Value>;
}

impl ActionsExt for Lb {
    fn gate(&self) -> String {
        let def = self.path("senior.json");
        let d = json!({"StartAt": "SeniorReview", "States": {
            "SeniorReview": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken",
                "Parameters": {"FunctionName": "echo", "Payload": {"token.$": "$$.Task.Token"}},
                "Catch": [{"ErrorEquals": ["Review.Rejected"], "Next": "DictateManually"}], "Next": "Transcribe"},
            "DictateManually": {"Type": "Pass", "Next": "Transcribe"},
            "Transcribe": {"Type": "Succeed"}}});
        std::fs::write(&def, d.to_string()).expect("write");
        self.json(&["state-machines", "create", "--name", "senior", "--definition", def.to_str().expect("p")]);
        self.json(&["executions", "start", "--state-machine", "senior", "--name", "s1"])["executionArn"].as_str().expect("arn").to_string()
    }
    fn token(&self) -> String {
        self.json(&["tasks", "list"])["tasks"][0]["taskToken"].as_str().expect("token").to_string()
    }
    fn token_status(&self, token: &str) -> String {
        let all = self.json(&["tasks", "list", "--status", "ALL"]);
        let t = all["tasks"].as_array().expect("tasks").iter().find(|t| t["taskToken"] == token).cloned().expect("token listed");
        t["status"].as_str().unwrap_or_default().to_string()
    }
    fn audit(&self) -> Vec<Value> {
        self.json(&["audit", "list"])["entries"].as_array().cloned().unwrap_or_default()
    }
}

#[test]
fn a_review_claimed_by_another_reader_is_refused_unless_overridden_with_a_reason() {
    let lb = Lb::new();
    let arn = lb.gate();
    let token = lb.token();
    lb.json(&["--user", "dr.a", "tasks", "claim", &token]);

    for args in [
        vec!["--user", "dr.b", "tasks", "approve", &token],
        vec!["--user", "dr.b", "tasks", "reject", &token, "--error", "Review.Rejected", "--cause", "no"],
        vec!["--user", "dr.b", "tasks", "escalate", &token],
    ] {
        let err = lb.fails(&args);
        assert!(err.contains("claimed by dr.a") && err.contains("--override-claim"), "{args:?}: {err}");
        assert_eq!(lb.token_status(&token), "PENDING", "{args:?} took effect");
    }
    // A heartbeat would keep dr.a's claim alive: only dr.a sends one.
    let err = lb.fails(&["--user", "dr.b", "tasks", "heartbeat", &token]);
    assert!(err.contains("claimed by dr.a"), "{err}");
    lb.json(&["--user", "dr.a", "tasks", "heartbeat", &token]);
    // An override needs a reason, and a reason of substance.
    let err = lb.fails(&["--user", "dr.b", "tasks", "approve", &token, "--override-claim"]);
    assert!(err.contains("--reason"), "{err}");
    let err = lb.fails(&[
        "--user",
        "dr.b",
        "tasks",
        "approve",
        &token,
        "--override-claim",
        "--reason-code",
        "operations-incident",
        "--reason",
        "  ",
    ]);
    assert!(err.contains("--reason"), "{err}");
    // A one-word shrug is not a reason: the same minimum as the console's.
    let err = lb.fails(&[
        "--user",
        "dr.b",
        "tasks",
        "approve",
        &token,
        "--override-claim",
        "--reason-code",
        "operations-incident",
        "--reason",
        "x",
    ]);
    assert!(err.contains("--reason") && err.contains("must say why"), "{err}");
    assert_eq!(lb.token_status(&token), "PENDING");

    lb.json(&[
        "--user",
        "dr.b",
        "tasks",
        "approve",
        &token,
        "--override-claim",
        "--reason-code",
        "operations-incident",
        "--reason",
        "dr.a is off sick, STAT study",
    ]);
    assert_eq!(lb.token_status(&token), "SUCCEEDED");
    assert_eq!(lb.json(&["executions", "describe", &arn])["status"], "SUCCEEDED");

    let rows = lb.audit();
    let last = &rows[0];
    assert_eq!(last["actor"], "dr.b");
    assert_eq!(last["action"], "approve");
    assert_eq!(last["result"], "ok", "{last}");
    let reason = last["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("override of the claim held by dr.a") && reason.contains("off sick"), "{last}");
    assert_eq!(last["reasonCode"], "operations-incident", "the code apart from the note: {last}");
    assert!(!reason.contains("[operations-incident]"), "{last}");
    // The refused attempts are on record too, as refusals (a thin reason is refused before anything is tried).
    let refused = rows.iter().filter(|r| r["actor"] == "dr.b" && r["result"] != "ok").count();
    assert_eq!(refused, 4, "{rows:?}");
}

#[test]
fn the_claim_holder_answers_without_an_override_and_the_cli_states_the_consequence() {
    let lb = Lb::new();
    let arn = lb.gate();
    let token = lb.token();
    lb.json(&["--user", "dr.a", "tasks", "claim", &token]);
    let out = lb.run(&["--user", "dr.a", "tasks", "escalate", &token]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("nothing catches Review.Escalated at SeniorReview") && err.contains("FAILS"), "{err}");
    assert_eq!(lb.json(&["executions", "describe", &arn])["status"], "FAILED");
}
