//! The CLI twins on `--backend aws`: the real `lightbox` binary with a context whose
//! `endpoint_url` is a real `lightbox serve` (the binary, on 127.0.0.1 port 0) and, for a
//! subset, moto's server (`LIGHTBOX_TEST_MOTO_URL`; a missing server FAILS the test). The
//! output has the embedded engine's shapes, actions are audited in the local store (source
//! cli, the status read afresh after the action), read-only and PHI masking hold, and the
//! commands of the embedded engine's only are refused, naming themselves.

mod common;

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::Lb;
use common::serve::Serve;
use serde_json::{Value, json};

impl Serve {
    /// A Pass, then a callback carrying the token (serve's built-in `echo` function), logging
    /// every event to `group` (level ALL).
    fn review_machine(&self, name: &str, group: &str) -> String {
        let def = json!({"StartAt": "Prep", "States": {
            "Prep": {"Type": "Pass", "Result": {"study": "CT-1"}, "ResultPath": "$.prep", "Next": "Review"},
            "Review": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken",
                       "Parameters": {"FunctionName": "echo", "Payload": {"token.$": "$$.Task.Token", "accession.$": "$.accession",
                                      "patient.$": "$.patient"}},
                       "End": true}}});
        let body = json!({"name": name, "definition": def.to_string(), "roleArn": "arn:aws:iam::000000000000:role/lightbox",
            "loggingConfiguration": {"level": "ALL", "includeExecutionData": true, "destinations": [
                {"cloudWatchLogsLogGroup": {"logGroupArn": format!("arn:aws:logs:us-east-1:000000000000:log-group:{group}:*")}}]}});
        self.call("CreateStateMachine", body)["stateMachineArn"].as_str().expect("machine arn").to_string()
    }

    fn start_execution(&self, sm: &str, name: &str) -> String {
        let input = json!({"accession": name, "patient": {"name": "Dana Testperson", "mrn": "SYN-000421"}}).to_string();
        self.call("StartExecution", json!({"stateMachineArn": sm, "name": name, "input": input}))["executionArn"]
            .as_str()
            .expect("execution arn")
            .to_string()
    }

    /// Until `f` holds of the execution's DescribeExecution answer (at most 20 s).
    fn wait(&self, arn: &str, what: &str, f: impl Fn(&Value) -> bool) {
        let end = Instant::now() + Duration::from_secs(20);
        loop {
            let d = self.describe(arn);
            if f(&d) {
                return;
            }
            assert!(Instant::now() < end, "{what}: not within 20 s: {d}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// The operator's side: a data directory (the local store: audit log, claims) and a config
/// whose context `site` is the AWS endpoint `url`.
struct Site {
    lb: Lb,
    config: String,
}

impl Site {
    fn new(url: &str, machines: &[&str], log_group: Option<&str>, extra: &str) -> Site {
        let lb = Lb::new();
        let machines = machines.iter().map(|m| format!("{m:?}")).collect::<Vec<_>>().join(", ");
        let group = log_group.map(|g| format!("log_group = {g:?}\n")).unwrap_or_default();
        let text = format!(
            "{extra}\n[contexts.site]\nbackend = \"aws\"\nregion = \"us-east-1\"\nendpoint_url = {url:?}\nstate_machines = [{machines}]\n{group}"
        );
        let config = lb.file("config.toml", &text);
        Site { lb, config }
    }

    /// `lightbox --config C --context site ARGS`, with static keys in the environment (the
    /// default credential chain reads them) and nothing else of AWS's from the host.
    fn cmd(&self, args: &[&str]) -> Command {
        self.cmd_as("dr.lee", args)
    }

    fn cmd_as(&self, user: &str, args: &[&str]) -> Command {
        let mut c = self.lb.cmd();
        aws_env(&mut c);
        c.args(["--user", user, "--config", &self.config, "--context", "site"]).args(args);
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("run lightbox")
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(out.status.success(), "lightbox {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut a = vec!["--json"];
        a.extend_from_slice(args);
        let text = self.ok(&a);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {text}"))
    }

    /// The audit log's rows (outcomes and intents), read with the local CLI.
    fn audit(&self) -> Vec<Value> {
        let v = self.lb.json(&["audit", "list", "--intents", "--limit", "1000"]);
        v["entries"].as_array().cloned().unwrap_or_default()
    }
}

fn aws_env(c: &mut Command) {
    for k in
        ["AWS_PROFILE", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL", "AWS_SESSION_TOKEN", "LIGHTBOX_BACKEND", "LIGHTBOX_CONTEXT"]
    {
        c.env_remove(k);
    }
    c.env("AWS_ACCESS_KEY_ID", "testing").env("AWS_SECRET_ACCESS_KEY", "testing").env("AWS_EC2_METADATA_DISABLED", "true");
}

/// The pending task of `arn` in `tasks list --json`.
fn task_of(tasks: &Value, arn: &str) -> Value {
    tasks["tasks"].as_array().and_then(|a| a.iter().find(|t| t["executionArn"] == arn)).cloned().unwrap_or(Value::Null)
}

/// The outcome row of `action` on `arn` (an execution ARN) in the audit log.
fn outcome<'a>(rows: &'a [Value], action: &str, arn: &str) -> &'a Value {
    rows.iter()
        .find(|r| r["action"] == action && r["executionArn"] == arn && !r["intentSeq"].is_null())
        .unwrap_or_else(|| panic!("no {action} outcome for {arn}: {rows:#?}"))
}

#[test]
fn executions_and_reviews_work_through_the_cli_on_aws() {
    let serve = Serve::start();
    let group = "/aws/vendedlogs/states/rad-cli";
    let sm = serve.review_machine("rad-cli", group);
    let undo = json!({"StartAt": "Undo", "States": {"Undo": {"Type": "Pass", "End": true}}});
    serve.call(
        "CreateStateMachine",
        json!({"name": "rad-cli-undo", "definition": undo.to_string(), "roleArn": "arn:aws:iam::000000000000:role/lightbox"}),
    );
    let (approved, rejected, stopped) =
        (serve.start_execution(&sm, "ACC-8001"), serve.start_execution(&sm, "ACC-8002"), serve.start_execution(&sm, "ACC-8003"));
    for a in [&approved, &rejected, &stopped] {
        serve.wait(a, "waiting for its review", |d| d["status"] == "RUNNING");
    }
    let site =
        Site::new(&serve.url, &[&sm], Some(group), "[compensation.rad-cli]\nstate_machine = \"rad-cli-undo\"\nstates = [\"Prep\"]\n");

    // executions list: the embedded engine's table and JSON, patient data masked.
    let table = site.ok(&["executions", "list"]);
    assert!(table.starts_with("STATUS"), "{table}");
    for a in [&approved, &rejected, &stopped] {
        assert!(table.lines().any(|l| l.starts_with("RUNNING") && l.ends_with(a.as_str())), "{a} in:\n{table}");
    }
    let list = site.json(&["executions", "list", "--state-machine", "rad-cli", "--max-results", "2"]);
    assert_eq!(list["executions"].as_array().map(Vec::len), Some(2), "{list}");
    assert!(list["nextToken"].is_string(), "a page of 2 of 3 says where the next starts: {list}");
    let next = site.json(&["executions", "list", "--next-token", list["nextToken"].as_str().expect("token")]);
    assert_eq!(next["executions"].as_array().map(Vec::len), Some(1), "{next}");
    assert_eq!(next["executions"][0]["stateMachineArn"], sm.as_str());

    // describe: input masked; history: the events of the one model.
    let d = site.json(&["executions", "describe", &approved]);
    assert_eq!((d["status"].as_str(), d["executionArn"].as_str()), (Some("RUNNING"), Some(approved.as_str())), "{d}");
    let input: Value = serde_json::from_str(d["input"].as_str().expect("input")).expect("json");
    assert_eq!(input["accession"], "ACC-8001");
    assert_eq!(input["patient"]["mrn"], "•••", "{input}");
    assert!(!d.to_string().contains("Testperson"), "{d}");
    // On AWS too a reason is a code from the list and a note of substance.
    for (extra, says) in [
        (&["--reason", "wrong-patient hold on ACC-8001 for Dr Lee"][..], "--reason-code"),
        (&["--reason-code", "direct-care", "--reason", "asdfg qwert"][..], "--reason"),
    ] {
        let mut args = vec!["executions", "describe", approved.as_str(), "--reveal"];
        args.extend(extra.iter());
        let out = site.run(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains(says) && out.stdout.is_empty(), "{args:?}");
    }
    // Revealed with a reason: shown whole, and the reveal audited.
    let revealed = site.json(&[
        "executions",
        "describe",
        &approved,
        "--reveal",
        "--reason-code",
        "operations-incident",
        "--reason",
        "wrong-patient hold on ACC-8001 for Dr Lee",
    ]);
    assert!(revealed["input"].as_str().is_some_and(|i| i.contains("Dana Testperson")), "{revealed}");
    assert!(site.audit().iter().any(|r| r["action"] == "reveal-phi" && r["executionArn"] == approved.as_str() && r["source"] == "cli"));
    // `--backend aws` without a context: the AWS environment names the endpoint and region.
    let mut c = site.lb.cmd();
    aws_env(&mut c);
    let out = c
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ENDPOINT_URL", &serve.url)
        .args(["--backend", "aws", "executions", "describe", &approved])
        .output()
        .expect("run");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("status: RUNNING"), "{text} {}", String::from_utf8_lossy(&out.stderr));
    let h = site.ok(&["executions", "history", &approved]);
    assert!(h.starts_with("   ID") && h.contains("TaskScheduled") && h.contains("Review"), "{h}");
    let hj = site.json(&["executions", "history", &approved, "--reverse-order", "--max-results", "2"]);
    let ids: Vec<i64> = hj["events"].as_array().expect("events").iter().filter_map(|e| e["id"].as_i64()).collect();
    assert!(ids.len() == 2 && ids[0] > ids[1], "newest first: {hj}");
    assert!(!hj.to_string().contains("Testperson"), "{hj}");

    // The review queue, read from the execution log; masked; approved by a token prefix.
    let tasks = site.json(&["tasks", "list"]);
    assert_eq!(tasks["tasks"].as_array().map(Vec::len), Some(3), "{tasks}");
    assert!(!tasks.to_string().contains("Testperson"), "{tasks}");
    let token = task_of(&tasks, &approved)["taskToken"].as_str().expect("token").to_string();
    let out = site.run(&["tasks", "approve", &token[..8], "--output", r#"{"approved": true}"#]);
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("approved by dr.lee (Review), now SUCCEEDED"), "{stdout}");
    assert!(stderr.contains("consequence:"), "what the answer does is said first: {stderr}");
    serve.wait(&approved, "the approved execution to succeed", |d| d["status"] == "SUCCEEDED");
    assert_eq!(site.json(&["executions", "describe", &approved])["status"], "SUCCEEDED");

    // Rejected with a cause quoting the patient: the execution fails with it; shown masked.
    let token = task_of(&tasks, &rejected)["taskToken"].as_str().expect("token").to_string();
    site.ok(&["tasks", "reject", &token, "--error", "Review.Rejected", "--cause", "motion artefact, recall Dana Testperson"]);
    serve.wait(&rejected, "the rejected execution to fail", |d| d["status"] == "FAILED");
    assert_eq!(serve.describe(&rejected)["cause"], "motion artefact, recall Dana Testperson");
    let shown = site.ok(&["executions", "describe", &rejected]);
    assert!(shown.contains("status: FAILED") && shown.contains("error: Review.Rejected"), "{shown}");
    assert!(shown.contains("cause: motion artefact, recall •••") && !shown.contains("Testperson"), "{shown}");

    // Read-only: refused, nothing sent.
    let out = site.run(&["--read-only", "executions", "redrive", &rejected]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("read-only: redrive is disabled"), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(serve.describe(&rejected)["status"], "FAILED");

    // Redriven: running again from the failed state.
    let r = site.ok(&["executions", "redrive", &rejected]);
    assert!(r.contains(&format!("{rejected} redriven (1), now RUNNING")), "{r}");
    assert_eq!(serve.describe(&rejected)["redriveCount"], 1);

    // Stopped while waiting for its token; then its compensation planned and started.
    let s = site.ok(&["executions", "stop", &stopped, "--error", "Ops.Stopped", "--cause", "wrong patient on the order"]);
    assert!(s.contains(&format!("{stopped} ABORTED")), "{s}");
    assert_eq!(serve.describe(&stopped)["status"], "ABORTED");
    let plan = site.json(&["executions", "compensate", &stopped, "--dry-run"]);
    assert_eq!((plan["dryRun"].as_bool(), plan["started"].as_bool()), (Some(true), Some(false)), "{plan}");
    assert!(plan.to_string().contains("Prep"), "the completed compensable state: {plan}");
    let c = site.ok(&[
        "executions",
        "compensate",
        &stopped,
        "--reason-code",
        "operations-incident",
        "--reason",
        "order entered on the wrong patient",
    ]);
    assert!(c.contains("compensation started:") && c.contains("rad-cli-undo"), "{c}");
    let again =
        site.ok(&["executions", "compensate", &stopped, "--reason-code", "operations-incident", "--reason", "asked once more by the ward"]);
    assert!(again.contains("already compensated by"), "started once: {again}");

    // Events: the EventBridge events of the execution log, masked.
    let ev = site.json(&["events", "list", "--pattern", r#"{"detail-type": ["Step Functions Execution Status Change"]}"#]);
    let evs = ev["events"].as_array().expect("events");
    let statuses: Vec<&str> =
        evs.iter().filter(|e| e["resources"][0] == approved.as_str()).filter_map(|e| e["detail"]["status"].as_str()).collect();
    assert_eq!(statuses, ["SUCCEEDED", "RUNNING"], "newest first: {ev}");
    assert!(evs.iter().all(|e| e["detail-type"] == "Step Functions Execution Status Change"), "the pattern filters: {ev}");
    assert!(!ev.to_string().contains("Testperson"), "{ev}");
    assert!(site.ok(&["events", "list"]).contains("Review Approved"), "task events too");

    // Audited in the local store: source cli, the actor, the status read afresh after.
    let rows = site.audit();
    let a = outcome(&rows, "approve", &approved);
    assert_eq!((a["actor"].as_str(), a["source"].as_str(), a["result"].as_str()), (Some("dr.lee"), Some("cli"), Some("ok")), "{a}");
    let after = a["after"].clone();
    assert_eq!(after["status"], "SUCCEEDED", "read afresh after the answer: {a}");
    assert!(after["asOf"].is_string(), "{a}");
    assert!(
        rows.iter().any(|r| r["action"] == "approve" && r["intentSeq"].is_null() && r["executionArn"] == approved.as_str()),
        "the intent"
    );
    let after_of = |action: &str, arn: &str| outcome(&rows, action, arn)["after"]["status"].clone();
    assert_eq!(after_of("reject", &rejected), "FAILED");
    assert_eq!(after_of("redrive", &rejected), "RUNNING");
    assert_eq!(after_of("stop", &stopped), "ABORTED");
    assert_eq!(outcome(&rows, "compensate", &stopped)["source"], "cli");
    assert_eq!(outcome(&rows, "redrive", &rejected)["result"], "ok");
    let redrives = rows.iter().filter(|r| r["action"] == "redrive").count();
    assert_eq!(redrives, 2, "one intent and its outcome: the read-only refusal sent and recorded nothing: {rows:#?}");
    // The chain holds.
    site.lb.ok(&["audit", "verify"]);
    let v = site.json(&["audit", "verify"]);
    assert_eq!(v["result"], "OK", "audit verify works with the AWS context too: {v}");
}

#[test]
fn claims_heartbeats_and_escalations_on_aws() {
    let serve = Serve::start();
    let group = "/aws/vendedlogs/states/rad-claims";
    let sm = serve.review_machine("rad-claims", group);
    let arn = serve.start_execution(&sm, "ACC-8101");
    serve.wait(&arn, "running", |d| d["status"] == "RUNNING");
    let site =
        Site::new(&serve.url, &[&sm], Some(group), "[[slo]]\nname = \"review-4h\"\nfrom = \"start\"\nto = \"Review\"\ntarget = \"4h\"\n");
    // slo list: the console's view 5 projection over the watched executions.
    let slo = site.json(&["slo", "list"]);
    let clock = slo["clocks"].as_array().and_then(|c| c.iter().find(|c| c["executionArn"] == arn.as_str())).cloned();
    assert!(clock.as_ref().is_some_and(|c| c["name"] == "review-4h" && c["status"] == "OK" && c["open"] == true), "{slo}");
    assert!(site.ok(&["slo", "list"]).contains("review-4h"), "the table");
    let kim = |args: &[&str]| site.cmd_as("dr.kim", args).output().expect("run");
    let tasks = site.json(&["tasks", "list", "--execution", &arn]);
    let token = task_of(&tasks, &arn)["taskToken"].as_str().expect("token").to_string();
    assert!(site.ok(&["tasks", "claim", &token]).contains("claimed by dr.lee"));
    assert_eq!(site.json(&["tasks", "list"])["tasks"][0]["claimedBy"], "dr.lee", "the claim is kept locally");
    assert!(site.ok(&["tasks", "heartbeat", &token[..12]]).contains("heartbeat sent by dr.lee"));
    // Someone else cannot answer without an override, which needs a reason.
    let out = kim(&["tasks", "approve", &token]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("dr.lee") && err.contains("--override-claim"), "{err}");
    assert_eq!(serve.describe(&arn)["status"], "RUNNING");
    // A prefix that names no pending task is the embedded engine's error.
    let out = site.run(&["tasks", "approve", "ffffffffffff"]);
    assert!(!out.status.success(), "an unknown prefix");
    // Escalated with an override: the gate has no Catch, so the execution fails with Review.Escalated.
    let out = kim(&[
        "tasks",
        "escalate",
        &token,
        "--override-claim",
        "--reason-code",
        "operations-incident",
        "--reason",
        "dr.lee is off shift, escalating",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serve.wait(&arn, "the escalation to fail the execution", |d| d["status"] == "FAILED");
    assert_eq!(serve.describe(&arn)["error"], "Review.Escalated");
    let rows = site.audit();
    let e = outcome(&rows, "escalate", &arn);
    assert_eq!(e["actor"], "dr.kim");
    assert!(e["reason"].as_str().is_some_and(|r| r.contains("override of the claim held by dr.lee")), "{e}");
    assert!(rows.iter().any(|r| r["action"] == "claim" && r["source"] == "cli" && r["executionArn"] == arn.as_str()), "{rows:#?}");
    assert!(rows.iter().any(|r| r["action"] == "heartbeat" && r["executionArn"] == arn.as_str()), "{rows:#?}");
    // tasks list --status of answered tokens: not known on AWS, said so (exit 2).
    let out = site.run(&["tasks", "list", "--status", "SUCCEEDED"]);
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn embedded_only_commands_are_refused_on_aws_naming_themselves() {
    // Nothing listens on port 9: a refusal is decided before any call.
    let site = Site::new("http://127.0.0.1:9", &[], None, "");
    let def = site.lb.file("def.json", &json!({"StartAt": "P", "States": {"P": {"Type": "Pass", "End": true}}}));
    let cases: [(&[&str], &str); 9] = [
        (&["state-machines", "create", "--name", "x", "--definition", &def], "state-machines create"),
        (&["executions", "start", "--state-machine", "x"], "executions start"),
        (&["engine", "--seconds", "1"], "engine"),
        (&["serve", "--bind", "127.0.0.1:0"], "serve"),
        (&["demo", "--seconds", "1"], "demo"),
        (&["bench", "--patterns"], "bench"),
        (&["store", "check"], "store"),
        (&["store", "check", &def], "store"),
        (&["dependencies", "list"], "dependencies"),
    ];
    for (args, name) in cases {
        for how in ["context", "flag"] {
            let out = if how == "context" {
                site.run(args)
            } else {
                let mut c = site.lb.cmd();
                aws_env(&mut c);
                c.env("AWS_REGION", "us-east-1").env("AWS_ENDPOINT_URL", "http://127.0.0.1:9").args(["--backend", "aws"]).args(args);
                c.output().expect("run")
            };
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{args:?} by {how}: {err}");
            assert!(
                err.contains(&format!("`lightbox {name}`")) && err.contains("--backend aws") && err.contains("instead"),
                "{args:?}: {err}"
            );
        }
    }
    // The pure commands keep working.
    assert!(site.ok(&["validate", "--definition", &def]).contains("OK"));
    assert!(site.ok(&["run", "--definition", &def]).contains('{'));
    // Without a server: a clear error, not a hang or a crash.
    let out = site.run(&["executions", "list"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("AWS context site"), "{}", String::from_utf8_lossy(&out.stderr));
}

/// moto's server: the list, a describe, the review queue read from histories (no log group,
/// said so) and an approval that lets the execution succeed.
#[test]
fn the_cli_on_moto_approves_a_review() {
    use common::aws::{call, moto, run_state_machines, sqs_review_machine, unique};
    let url = moto();
    run_state_machines(&url);
    let machine = unique("rad-cli-moto");
    let sm = sqs_review_machine(&url, &machine, json!({"token.$": "$$.Task.Token", "patient.$": "$.patient"}));
    let input = json!({"accession": "ACC-9101", "patient": {"name": "Dana Testperson", "mrn": "SYN-000421"}}).to_string();
    let arn =
        call(&url, "AWSStepFunctions.StartExecution", json!({"stateMachineArn": sm, "name": "ACC-9101", "input": input}))["executionArn"]
            .as_str()
            .expect("arn")
            .to_string();
    let site = Site::new(&url, &[&sm], None, "");
    let list = site.json(&["executions", "list"]);
    assert!(list["executions"].as_array().is_some_and(|a| a.iter().any(|e| e["executionArn"] == arn.as_str())), "{list}");
    let d = site.json(&["executions", "describe", &arn]);
    assert_eq!(d["status"], "RUNNING");
    assert!(!d.to_string().contains("Testperson"), "{d}");
    // The callback may take moto a moment to schedule: the queue is read again until it shows.
    let end = Instant::now() + Duration::from_secs(30);
    let (token, note) = loop {
        let out = site.run(&["--json", "tasks", "list"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let v: Value = serde_json::from_slice(&out.stdout).expect("json");
        if let Some(t) = task_of(&v, &arn)["taskToken"].as_str() {
            assert!(!v.to_string().contains("Testperson"), "{v}");
            break (t.to_string(), String::from_utf8_lossy(&out.stderr).into_owned());
        }
        assert!(Instant::now() < end, "no pending callback within 30 s: {v}");
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(note.contains("no log_group"), "the context has no log group, and says so: {note}");
    let out = site.ok(&["tasks", "approve", &token]);
    assert!(out.contains("approved by dr.lee"), "{out}");
    let end = Instant::now() + Duration::from_secs(30);
    while call(&url, "AWSStepFunctions.DescribeExecution", json!({"executionArn": arn}))["status"] != "SUCCEEDED" {
        assert!(Instant::now() < end, "the approved execution did not succeed within 30 s");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(site.json(&["executions", "describe", &arn])["status"], "SUCCEEDED");
    let rows = site.audit();
    let a = outcome(&rows, "approve", &arn);
    assert_eq!(a["source"], "cli");
}

/// The outbox relay behind the context's `outbox_endpoint` (a `lightbox serve` running it):
/// listed in the embedded engine's shapes, paused and resumed by the CLI, audited locally
/// (source cli) and by the server (source api); read-only refuses.
#[test]
fn the_outbox_of_the_serve_named_as_outbox_endpoint() {
    let lb = Lb::new();
    let cfg = lb.file("serve.toml", "[[outbox.sinks]]\nname = \"archive\"\nkind = \"ndjson\"\npath = \"events.ndjson\"\n");
    let (child, url) = common::spawn_serve(lb.cmd().args(["--config", &cfg, "serve", "--bind", "127.0.0.1:0"]));
    let serve = Serve { lb: Lb::new(), child, url };
    let site = Site::new(&serve.url, &[], None, "");
    std::fs::write(&site.config, std::fs::read_to_string(&site.config).expect("config") + &format!("outbox_endpoint = {:?}\n", serve.url))
        .expect("config");
    let v = site.json(&["outbox", "list"]);
    assert_eq!(
        v["sinks"].as_array().map(|s| s.iter().filter_map(|x| x["name"].as_str()).collect::<Vec<_>>()),
        Some(vec!["archive"]),
        "{v}"
    );
    let table = site.ok(&["outbox", "list", "--sink", "archive"]);
    assert!(table.starts_with("SINK") && table.contains("archive"), "{table}");
    let out = site.run(&["outbox", "list", "--sink", "nope"]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("nope"));
    let out = site.run(&[
        "--read-only",
        "outbox",
        "pause",
        "archive",
        "--reason-code",
        "operations-incident",
        "--reason",
        "vendor maintenance window",
    ]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("read-only"));
    site.ok(&["outbox", "pause", "archive", "--reason-code", "operations-incident", "--reason", "archive disk swap"]);
    assert_eq!(site.json(&["outbox", "list"])["sinks"][0]["paused"], true);
    site.ok(&["outbox", "resume", "archive"]);
    assert_eq!(site.json(&["outbox", "list"])["sinks"][0]["paused"], false);
    let rows = site.audit();
    let mine: Vec<(&str, &str)> =
        rows.iter().filter(|r| !r["intentSeq"].is_null()).filter_map(|r| Some((r["action"].as_str()?, r["source"].as_str()?))).collect();
    assert_eq!(mine, [("outbox-resume", "cli"), ("outbox-pause", "cli")], "{rows:#?}");
    assert!(rows.iter().any(|r| r["action"] == "outbox-pause" && r["reason"] == "archive disk swap"));
    drop(serve);
    let server = lb.json(&["--config", &cfg, "audit", "list"])["entries"].as_array().cloned().expect("audit");
    assert!(server.iter().any(|r| r["action"] == "outbox-pause" && r["source"] == "api"), "{server:#?}");
}

/// `events list` on AWS lists the EventBridge events of the context's `event_log_groups`
/// (HealthImaging's, tied to no Step Functions execution, or naming one that is gone) as the
/// console's Events view does, their detail masked; a pattern selects among them.
#[test]
fn events_list_on_aws_shows_eventbridge_events_of_the_event_log_groups_masked() {
    use common::aws::{call, moto, unique};
    let url = moto();
    let group = format!("/aws/events/{}", unique("cli-imaging"));
    call(&url, "Logs_20140328.CreateLogGroup", json!({"logGroupName": group}));
    call(&url, "Logs_20140328.CreateLogStream", json!({"logGroupName": group, "logStreamName": "rule-1"}));
    let now = chrono::Utc::now();
    let event = |id: &str, detail_type: &str, resource: &str, detail: Value| {
        json!({"version": "0", "id": id, "detail-type": detail_type, "source": "aws.medical-imaging", "account": "123456789012",
               "time": now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true), "region": "us-east-1", "resources": [resource],
               "detail": detail})
        .to_string()
    };
    let ds = "arn:aws:medical-imaging:us-east-1:123456789012:datastore/ds0001";
    let gone = "arn:aws:states:us-east-1:123456789012:execution:no-such-machine:gone-1";
    let records = [
        event("ev-cli-1", "Import Job Completed", ds, json!({"datastoreId": "ds0001", "jobStatus": "COMPLETED"})),
        event(
            "ev-cli-2",
            "Image Set Created",
            &format!("{ds}/imageset/is0001"),
            json!({"imageSetId": "is0001", "imageSetWorkflowStatus": "CREATED", "patientName": "Dana Testperson"}),
        ),
        event("ev-cli-3", "Study Routed", ds, json!({"executionArn": gone, "status": "ROUTED", "patientName": "Dana Testperson"})),
    ];
    let events: Vec<Value> =
        records.iter().enumerate().map(|(i, m)| json!({"timestamp": now.timestamp_millis() + i as i64, "message": m})).collect();
    call(&url, "Logs_20140328.PutLogEvents", json!({"logGroupName": group, "logStreamName": "rule-1", "logEvents": events}));
    // Machines by a name no machine has: only the event log group has anything to show.
    let site = Site::new(&url, &[&unique("no-machine-named-so")], None, "");
    let text = std::fs::read_to_string(&site.config).expect("config");
    std::fs::write(&site.config, format!("{text}event_log_groups = [{group:?}]\n")).expect("config");

    let out = site.run(&["--json", "events", "list"]);
    let note = String::from_utf8_lossy(&out.stderr);
    assert!(note.contains("only the EventBridge events of event_log_groups are listed"), "{note}");
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    let types: Vec<&str> = v["events"].as_array().map(|a| a.iter().filter_map(|e| e["detail-type"].as_str()).collect()).unwrap_or_default();
    for want in ["Import Job Completed", "Image Set Created", "Study Routed"] {
        assert!(types.contains(&want), "{want} is listed: {v}");
    }
    assert!(!v.to_string().contains("Testperson"), "the detail is masked: {v}");
    let v = site.json(&["events", "list", "--pattern", r#"{"detail-type": ["Image Set Created"]}"#]);
    let types: Vec<&str> = v["events"].as_array().map(|a| a.iter().filter_map(|e| e["detail-type"].as_str()).collect()).unwrap_or_default();
    assert_eq!(types, ["Image Set Created"], "{v}");
    let table = site.ok(&["events", "list"]);
    assert!(table.contains("Import Job Completed") && !table.contains("Testperson"), "{table}");
}

/// A context whose `state_machines` name no machine (yet) has nothing to list: the CLI says
/// so at once instead of waiting out its 30 s and failing as if AWS could not be read.
#[test]
fn a_context_whose_machines_match_none_lists_nothing_at_once() {
    use common::aws::{moto, unique};
    let url = moto();
    let site = Site::new(&url, &[&unique("no-machine-named-so")], None, "");
    let started = Instant::now();
    let v = site.json(&["executions", "list"]);
    assert_eq!(v["executions"], json!([]), "{v}");
    let v = site.json(&["tasks", "list"]);
    assert_eq!(v["tasks"], json!([]), "{v}");
    assert!(started.elapsed() < Duration::from_secs(20), "answered in {:?}", started.elapsed());
}

/// An endpoint that answers every Step Functions call correctly, but only after `delay`: each
/// call well within the SDK's attempt timeout, so only the number of calls makes it slow.
fn slow_endpoint(delay: Duration) -> String {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let Ok(read) = stream.try_clone() else { return };
                let mut reader = BufReader::new(read);
                let mut stream = stream;
                loop {
                    let (mut target, mut length) = (String::new(), 0usize);
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        let line = line.trim_end();
                        if line.is_empty() {
                            break;
                        }
                        if let Some((k, v)) = line.split_once(':') {
                            match k.trim().to_ascii_lowercase().as_str() {
                                "x-amz-target" => target = v.trim().to_string(),
                                "content-length" => length = v.trim().parse().unwrap_or(0),
                                _ => {}
                            }
                        }
                    }
                    let mut body = vec![0; length];
                    if reader.read_exact(&mut body).is_err() {
                        return;
                    }
                    std::thread::sleep(delay);
                    let answer = match target.rsplit('.').next().unwrap_or_default() {
                        "ListExecutions" => json!({"executions": []}),
                        "ListStateMachines" => json!({"stateMachines": []}),
                        _ => json!({}),
                    }
                    .to_string();
                    let head =
                        format!("HTTP/1.1 200 OK\r\ncontent-type: application/x-amz-json-1.0\r\ncontent-length: {}\r\n\r\n", answer.len());
                    if stream.write_all(head.as_bytes()).and_then(|_| stream.write_all(answer.as_bytes())).is_err() {
                        return;
                    }
                }
            });
        }
    });
    url
}

/// The CLI's wait for the backend's first read is bounded (30 s) even when each call of a
/// slow endpoint is answered in time: the call under way at the end is cut off, and the
/// command says what could not be read in time.
#[test]
fn the_readiness_wait_never_outlasts_its_bound_on_a_slow_endpoint() {
    let url = slow_endpoint(Duration::from_secs(9));
    let machine = "arn:aws:states:us-east-1:123456789012:stateMachine:slow-one";
    let site = Site::new(&url, &[machine], None, "");
    let started = Instant::now();
    let out = site.run(&["executions", "list"]);
    let took = started.elapsed();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(took < Duration::from_secs(33), "the wait lasted {took:?}: {err}");
    assert!(!out.status.success(), "nothing could be listed in time: {err}");
    assert!(err.contains("could not be listed within 30 s"), "{err}");
}
