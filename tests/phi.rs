//! Patient data on the command line: masked by default in every read command's table
//! and `--json` output (same shape), shown only with `--reveal --reason`, which the
//! audit log records. The real binary on a real store.

mod common;

use common::Lb;

use std::process::Command;

use serde_json::{Value, json};

const SECRETS: [&str; 5] = ["Dana", "Testperson", "SYN-000421", "1961-04-02", "555-0100"];

/// Nothing of an identifier shows: not its digits in another format, not a birth year, not an initial.
const TRACES: [&str; 4] = ["000421", "1961", "D•••", "T•••"];

trait PhiExt {
    fn reveals(&self) -> Vec<Value>;
}

impl PhiExt for Lb {
    fn reveals(&self) -> Vec<Value> {
        self.json(&["audit", "list", "--action", "reveal-phi"])["entries"].as_array().cloned().unwrap_or_default()
    }
}

fn order() -> Value {
    json!({
        "accession": "ACC-1",
        "modality": "CT",
        "patient": {"name": "Dana Testperson", "given": "Dana", "family": "Testperson", "mrn": "SYN-000421",
                    "birthDate": "1961-04-02", "telecom": [{"system": "phone", "value": "555-0100"}]}
    })
}

/// An execution waiting at a review gate that carries the patient, and one that failed
/// naming the patient in its cause.
fn setup(lb: &Lb) -> (String, String) {
    let review = json!({
        "StartAt": "Prepare",
        "States": {
            "Prepare": {"Type": "Pass", "ResultPath": "$.prepared", "Result": {"ok": true}, "Next": "Review"},
            "Review": {
                "Type": "Task",
                "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken",
                "Parameters": {"FunctionName": "echo", "Payload": {"token.$": "$$.Task.Token", "accession.$": "$.accession", "patient.$": "$.patient"}},
                "End": true
            }
        }
    });
    let fail = json!({
        "StartAt": "Check",
        "States": {"Check": {"Type": "Fail", "Error": "Order.Mismatch", "CausePath": "States.Format('no order for {}', $.patient.name)"}}
    });
    let r = lb.file("review.json", &review);
    let f = lb.file("fail.json", &fail);
    lb.ok(&["state-machines", "create", "--name", "review", "--definition", &r]);
    lb.ok(&["state-machines", "create", "--name", "mismatch", "--definition", &f]);
    let input = order().to_string();
    let a = lb.json(&["executions", "start", "--state-machine", "review", "--name", "acc-1", "--input-json", &input]);
    let b = lb.json(&["executions", "start", "--state-machine", "mismatch", "--name", "acc-2", "--input-json", &input]);
    (a["executionArn"].as_str().expect("arn").to_string(), b["executionArn"].as_str().expect("arn").to_string())
}

/// The shape of a document: every leaf replaced by its kind, JSON text inside strings included.
fn shape(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(m.iter().map(|(k, x)| (k.clone(), shape(x))).collect()),
        Value::Array(a) => Value::Array(a.iter().map(shape).collect()),
        Value::String(s) => match serde_json::from_str::<Value>(s) {
            Ok(inner @ (Value::Object(_) | Value::Array(_))) => json!({"json": shape(&inner)}),
            _ => json!("leaf"),
        },
        Value::Null => Value::Null,
        _ => json!("leaf"),
    }
}

fn assert_masked(what: &str, text: &str) {
    for s in SECRETS {
        assert!(!text.contains(s), "{what} shows {s}: {text}");
    }
}

#[test]
fn read_commands_mask_patient_data_and_keep_the_shape() {
    let lb = Lb::as_user("dr.lee");
    let (waiting, failed) = setup(&lb);
    let commands: Vec<Vec<&str>> = vec![
        vec!["tasks", "list"],
        vec!["tasks", "list", "--status", "ALL"],
        vec!["executions", "describe", &waiting],
        vec!["executions", "describe", &failed],
        vec!["executions", "history", &waiting],
        vec!["executions", "history", &failed],
        vec!["executions", "list"],
    ];
    for c in &commands {
        let masked = lb.json(c);
        assert_masked(&format!("{c:?} --json"), &masked.to_string());
        assert_masked(&format!("{c:?}"), &lb.ok(c));
        let mut with: Vec<&str> = c.clone();
        with.extend(["--reveal", "--reason-code", "operations-incident", "--reason", "wrong-patient hold, consult with Dr Lee"]);
        let revealed = lb.json(&with);
        assert_eq!(shape(&masked), shape(&revealed), "{c:?}: same JSON shape, masked values");
    }
    // What is masked, and what is not.
    let task = &lb.json(&["tasks", "list"])["tasks"][0];
    let input: Value = serde_json::from_str(task["input"].as_str().expect("input is JSON text")).expect("json");
    assert_eq!(input["Payload"]["patient"]["mrn"], "•••");
    assert_eq!(input["Payload"]["accession"], "ACC-1");
    let d = lb.json(&["executions", "describe", &failed]);
    assert_eq!(d["cause"], "no order for •••");
    assert_eq!(d["name"], "acc-2", "an execution's own name is not patient data");
    let h = lb.json(&["executions", "history", &waiting]);
    assert_eq!(h["events"][1]["stateEnteredEventDetails"]["name"], "Prepare");
    assert!(lb.ok(&["executions", "describe", &failed]).contains("cause: no order for •••"));
}

#[test]
fn reveal_shows_patient_data_and_is_audited() {
    let lb = Lb::as_user("dr.lee");
    let (waiting, failed) = setup(&lb);
    assert!(lb.reveals().is_empty());
    let reason = "wrong-patient hold, consult with Dr Lee";
    let t = lb.json(&["tasks", "list", "--reveal", "--reason-code", "operations-incident", "--reason", reason]);
    assert!(t.to_string().contains("SYN-000421"), "{t}");
    let d = lb.json(&["executions", "describe", &failed, "--reveal", "--reason-code", "operations-incident", "--reason", reason]);
    assert_eq!(d["cause"], "no order for Dana Testperson");
    let h = lb.json(&["executions", "history", &waiting, "--reveal", "--reason-code", "operations-incident", "--reason", reason]);
    assert!(h.to_string().contains("1961-04-02"));
    let rows = lb.reveals();
    assert_eq!(rows.len(), 3, "{rows:?}");
    let text = serde_json::to_string(&rows).expect("json");
    assert!(text.contains(reason) && text.contains(&waiting) && text.contains(&failed) && text.contains("dr.lee"), "{text}");
    assert!(lb.ok(&["audit", "verify"]).contains("OK"));
    // The log never holds patient data.
    for e in std::fs::read_dir(lb.path("data/logs")).expect("logs") {
        let text = std::fs::read_to_string(e.expect("entry").path()).unwrap_or_default();
        assert_masked("the log", &text);
    }
}

#[test]
fn reveal_without_a_reason_of_substance_exits_2_and_shows_nothing() {
    let lb = Lb::as_user("dr.lee");
    let (waiting, _) = setup(&lb);
    for bad in [
        vec!["--reveal"],
        vec!["--reveal", "--reason-code", "operations-incident", "--reason", "x"],
        vec!["--reveal", "--reason-code", "operations-incident", "--reason", "asdf"],
        vec!["--reveal", "--reason-code", "operations-incident", "--reason", "test test test"],
    ] {
        let mut args = vec!["--json", "executions", "history", &waiting];
        args.extend(bad.iter());
        let out = lb.run(&args);
        assert_eq!(out.status.code(), Some(2), "{bad:?}");
        assert!(out.stdout.is_empty(), "{bad:?} printed {}", String::from_utf8_lossy(&out.stdout));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("reason"), "{bad:?}: {err}");
    }
    let out = lb.run(&["tasks", "list", "--reason-code", "operations-incident", "--reason", "a reason without reveal"]);
    assert_eq!(out.status.code(), Some(2), "--reason needs --reveal");
    assert!(lb.reveals().is_empty(), "refused reveals are not recorded as reveals");
}

#[test]
fn phi_fields_and_paths_come_from_config() {
    let lb = Lb::as_user("dr.lee");
    let (waiting, _) = setup(&lb);
    let cfg =
        lb.file("config.toml", "[phi]\nfields = [\"mrn\"]\nextra_fields = [\"Modality\"]\npaths = [\"$.accession\"]\nreveal_minutes = 2\n");
    let d = lb.json(&["--config", &cfg, "executions", "describe", &waiting]);
    let input: Value = serde_json::from_str(d["input"].as_str().expect("input")).expect("json");
    assert_eq!(input["patient"]["mrn"], "•••");
    assert_eq!(input["patient"]["given"], "Dana", "`fields` replaced the defaults");
    assert_eq!(input["modality"], "•••", "extra field, any case");
    assert_eq!(input["accession"], "•••", "a path");
    let bad = lb.file("bad.toml", "[phi]\npaths = [\"patient\"]\n");
    let out = lb.run(&["--config", &bad, "tasks", "list"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("$.patient"), "{}", String::from_utf8_lossy(&out.stderr));
    let typo = lb.file("typo.toml", "[phi]\nfeilds = [\"mrn\"]\n");
    assert!(!lb.run(&["--config", &typo, "tasks", "list"]).status.success(), "unknown [phi] keys are refused");
}

/// The real console in tmux: `v` on the selected study, a reason, and the audit row names that study.
#[test]
fn console_reveal_is_per_study_and_audited() {
    use std::time::{Duration, Instant};
    let lb = Lb::as_user("dr.lee");
    // Two studies of the same patient; the failed one sorts first and is selected.
    let (_, failed) = setup(&lb);
    let session = format!("lightbox-phi-{}", std::process::id());
    let cmd = format!("{} --data-dir {} --user dr.lee console --no-demo", env!("CARGO_BIN_EXE_lightbox"), lb.path("data").display());
    let tmux = |args: &[&str]| Command::new("tmux").args(args).env_remove("TMUX").output().expect("tmux must be installed");
    assert!(tmux(&["new-session", "-d", "-s", &session, "-x", "140", "-y", "30", &cmd]).status.success());
    struct Kill(String);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = Command::new("tmux").args(["kill-session", "-t", &self.0]).output();
        }
    }
    let _kill = Kill(session.clone());
    let wait_for = |text: &str| -> String {
        let start = Instant::now();
        loop {
            let s = String::from_utf8_lossy(&tmux(&["capture-pane", "-p", "-t", &session]).stdout).into_owned();
            if s.contains(text) {
                return s;
            }
            assert!(start.elapsed() < Duration::from_secs(20), "screen never showed {text:?}:\n{s}");
            std::thread::sleep(Duration::from_millis(150));
        }
    };
    let s = wait_for("ACC-1");
    assert_masked("the pipelines view", &s);
    tmux(&["send-keys", "-t", &session, "v"]);
    wait_for("Reveal patient data of ACC-1");
    tmux(&["send-keys", "-t", &session, "-l", "asdf"]);
    tmux(&["send-keys", "-t", &session, "Enter"]);
    wait_for("pick a reason code");
    // The list is offered; → picks the first code, ← from there the last.
    tmux(&["send-keys", "-t", &session, "Right"]);
    tmux(&["send-keys", "-t", &session, "Left"]);
    wait_for("[other]");
    tmux(&["send-keys", "-t", &session, "Enter"]);
    wait_for("must say why");
    for _ in 0..4 {
        tmux(&["send-keys", "-t", &session, "BSpace"]);
    }
    tmux(&["send-keys", "-t", &session, "-l", "wrong-patient hold, consult with Dr Lee"]);
    tmux(&["send-keys", "-t", &session, "Enter"]);
    let s = wait_for("PHI REVEALED: ACC-1");
    assert_eq!(s.matches("Dana Testperson").count(), 1, "only the selected study shows:\n{s}");
    let rows = lb.reveals();
    assert_eq!(rows.len(), 1, "{rows:?}");
    let row = serde_json::to_string(&rows[0]).expect("json");
    assert!(row.contains(&failed) && row.contains("wrong-patient hold") && row.contains("console"), "{row}");
    assert_eq!(rows[0]["reasonCode"], "other", "the code picked from the list: {row}");
}

/// Errors are free text too (an `ErrorPath` or an operator can put the patient there),
/// and so are the reasons and causes the audit log lists.
#[test]
fn errors_and_audit_reasons_are_masked_everywhere() {
    let lb = Lb::as_user("dr.lee");
    let (waiting, _) = setup(&lb);
    let fail = json!({
        "StartAt": "F",
        "States": {"F": {"Type": "Fail", "ErrorPath": "$.patient.name", "CausePath": "States.Format('paged {} about DANA TESTPERSON', $.accession)"}}
    });
    let f = lb.file("errpath.json", &fail);
    lb.ok(&["state-machines", "create", "--name", "errpath", "--definition", &f]);
    let input = order().to_string();
    let e = lb.json(&["executions", "start", "--state-machine", "errpath", "--name", "acc-3", "--input-json", &input]);
    let failed = e["executionArn"].as_str().expect("arn").to_string();
    let d = lb.json(&["executions", "describe", &failed]);
    assert_eq!(d["error"], "•••", "{d}");
    assert_eq!(d["cause"], "paged ACC-1 about •••", "matched in any case: {d}");
    assert_masked("describe", &lb.ok(&["executions", "describe", &failed]));
    let h = lb.json(&["executions", "history", &failed]);
    assert_masked("history --json", &h.to_string());
    assert!(h.to_string().contains("\"error\":\"•••\""), "{h}");
    let reason = "wrong-patient hold, consult with Dr Lee";
    let d = lb.json(&["executions", "describe", &failed, "--reveal", "--reason-code", "operations-incident", "--reason", reason]);
    assert_eq!(d["error"], "Dana Testperson");

    // An operator's reject quoting the patient, with JSON inside the cause.
    let tasks = lb.json(&["tasks", "list"]);
    let token = tasks["tasks"][0]["taskToken"].as_str().expect("token").to_string();
    let out = lb.run(&["tasks", "reject", &token, "--error", "Rej.Map Testperson", "--cause", "wrong patient {\"mrn\":\"REJ-MRN\"} Dana"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_masked("tasks reject", &said);
    let h = lb.json(&["executions", "history", &waiting]);
    assert_masked("history after reject", &h.to_string());
    assert!(!h.to_string().contains("REJ-MRN"), "{h}");
    let list = lb.json(&["audit", "list"]);
    assert_masked("audit list --json", &list.to_string());
    assert!(!list.to_string().contains("REJ-MRN"), "{list}");
    let table = lb.ok(&["audit", "list"]);
    assert_masked("audit list", &table);
    assert!(!table.contains("REJ-MRN"), "{table}");
    let before = lb.reveals().len();
    let shown = lb.json(&["audit", "list", "--reveal", "--reason-code", "operations-incident", "--reason", reason]);
    assert!(shown.to_string().contains("REJ-MRN") && shown.to_string().contains("Testperson"), "{shown}");
    assert_eq!(lb.reveals().len(), before + 1, "audit list --reveal is audited");
    let out = lb.run(&["audit", "list", "--reveal", "--reason-code", "operations-incident", "--reason", "testing it"]);
    assert_eq!(out.status.code(), Some(2));
}

/// Identifiers used as keys (records keyed by MRN under the patient), and an MRN and a birth
/// date written in other formats in a cause, are masked in `--json` describe, history, tasks
/// and events alike; distinct keys stay distinct (a per-session pseudonym), and `--reveal`
/// shows them.
#[test]
fn identifier_keys_and_other_formats_are_masked_on_every_surface() {
    let lb = Lb::as_user("dr.lee");
    let review = json!({
        "StartAt": "Review",
        "States": {"Review": {
            "Type": "Task",
            "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken",
            "Parameters": {"FunctionName": "echo", "Payload": {"token.$": "$$.Task.Token", "accession.$": "$.accession", "patient.$": "$.patient"}},
            "End": true
        }}
    });
    let r = lb.file("review.json", &review);
    lb.ok(&["state-machines", "create", "--name", "review", "--definition", &r]);
    let mut input = order();
    input["patient"]["priorStudies"] = json!({"SYN-000421": {"accession": "ACC-0"}, "SYN-000422": {"accession": "ACC-00"}});
    let a = lb.json(&["executions", "start", "--state-machine", "review", "--name", "acc-k", "--input-json", &input.to_string()]);
    let arn = a["executionArn"].as_str().expect("arn").to_string();
    let tasks = lb.json(&["tasks", "list"]);
    let token = tasks["tasks"][0]["taskToken"].as_str().expect("token").to_string();
    let out = lb.run(&[
        "tasks",
        "reject",
        &token,
        "--error",
        "Order.Mismatch",
        "--cause",
        "no order for SYN000421, born 02/04/1961 (2 Apr 1961)",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let surfaces: Vec<(&str, Value)> = vec![
        ("tasks list", lb.json(&["tasks", "list", "--status", "ALL"])),
        ("describe", lb.json(&["executions", "describe", &arn])),
        ("history", lb.json(&["executions", "history", &arn])),
        ("events list", lb.json(&["events", "list"])),
    ];
    // Hashes and tokens (long hex runs) are random and may hold any digits ("…c1961ff…"):
    // the traces are looked for in the rest.
    let hex = regex::Regex::new("[0-9a-f]{16,}").expect("regex");
    for (what, v) in &surfaces {
        let text = v.to_string();
        assert_masked(what, &text);
        let text = hex.replace_all(&text, "<hex>");
        for t in TRACES {
            assert!(!text.contains(t), "{what} shows {t}: {text}");
        }
    }
    let d = &surfaces[1].1;
    assert_eq!(d["cause"], "no order for •••, born ••• (•••)", "{d}");
    let shown: Value = serde_json::from_str(d["input"].as_str().expect("input")).expect("json");
    let prior = shown["patient"]["priorStudies"].as_object().expect("the map keeps its shape");
    assert_eq!(prior.len(), 2, "two records stay two: {prior:?}");
    assert!(prior.keys().all(|k| k.starts_with("•••#")), "{prior:?}");
    assert!(surfaces[3].1.to_string().contains("Order.Mismatch"), "the failure is among the events: {}", surfaces[3].1);
    let revealed = lb.json(&[
        "executions",
        "describe",
        &arn,
        "--reveal",
        "--reason-code",
        "operations-incident",
        "--reason",
        "wrong-patient hold, consult with Dr Lee",
    ]);
    assert!(revealed["input"].as_str().is_some_and(|i| i.contains("SYN-000422")), "{revealed}");
    assert_eq!(revealed["cause"], "no order for SYN000421, born 02/04/1961 (2 Apr 1961)");
}

/// Every action that takes a reason (reveals, claim overrides, escalation, compensation,
/// dependency holds, outbox pauses and parks, audit resolve and reanchor) takes a reason code
/// from the configured list beside a note of substance: without the code, with a code not in
/// the list, or with filler (keyboard rows, repeated characters, full-width filler) it exits 2
/// naming the flag, and nothing is done or recorded. `lightbox reasons` lists the codes and
/// `audit list` shows the code of each row.
#[test]
fn every_action_that_takes_a_reason_needs_a_code_and_a_note_of_substance() {
    let lb = Lb::as_user("dr.lee");
    let (waiting, failed) = setup(&lb);
    let token = lb.json(&["tasks", "list"])["tasks"][0]["taskToken"].as_str().expect("token").to_string();
    let cfg = lb.file(
        "config.toml",
        "[reasons]\ncodes = [\"direct-care\", \"research-irb\"]\n\n[[dependencies]]\nname = \"dep\"\nmatch = { handler = \"echo\" }\n\n[[outbox.sinks]]\nname = \"a\"\nkind = \"ndjson\"\npath = \"ev.ndjson\"\n",
    );
    let listed = lb.json(&["--config", &cfg, "reasons"]);
    assert_eq!(listed["reasonCodes"], json!(["direct-care", "research-irb"]));
    assert_eq!(
        lb.ok(&["reasons"]).lines().collect::<Vec<_>>(),
        ["direct-care", "quality-review", "operations-incident", "patient-request", "other"]
    );
    let before = lb.json(&["audit", "list", "--intents"])["entries"].as_array().map(Vec::len);
    let actions: Vec<Vec<&str>> = vec![
        vec!["executions", "describe", &failed, "--reveal"],
        vec!["tasks", "list", "--reveal"],
        vec!["events", "list", "--reveal"],
        vec!["tasks", "approve", &token, "--override-claim"],
        vec!["tasks", "escalate", &token],
        vec!["executions", "compensate", &waiting],
        vec!["dependencies", "hold", "dep"],
        vec!["dependencies", "release", "dep"],
        vec!["dependencies", "reset", "dep"],
        vec!["outbox", "pause", "a"],
        vec!["outbox", "park", "1", "--sink", "a"],
        vec!["audit", "resolve", "1"],
        vec!["audit", "reanchor"],
    ];
    let good = "wrong-patient hold, consult with Dr Lee";
    for action in &actions {
        let cases: [(&[&str], &str); 6] = [
            (&["--reason", good], "--reason-code"),
            (&["--reason-code", "curiosity", "--reason", good], "is not a reason code"),
            (&["--reason-code", "other", "--reason", good], "is not a reason code"),
            (&["--reason-code", "direct-care", "--reason", "asdfg qwert"], "--reason"),
            (&["--reason-code", "direct-care", "--reason", "xxxxxxxx"], "--reason"),
            (&["--reason-code", "direct-care", "--reason", "ａｓｄｆｇ　ｑｗｅｒｔ　ｘｘｘｘ"], "--reason"),
        ];
        for (extra, says) in cases {
            let mut args = vec!["--config", cfg.as_str()];
            args.extend(action.iter());
            args.extend(extra.iter());
            let out = lb.run(&args);
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{args:?} was accepted: {err}");
            assert!(err.contains(says), "{args:?}: {err}");
            if says != "--reason" {
                assert!(err.contains("direct-care, research-irb"), "the codes are listed: {args:?}: {err}");
            }
            assert!(out.stdout.is_empty(), "{args:?} printed {}", String::from_utf8_lossy(&out.stdout));
        }
    }
    let after = lb.json(&["audit", "list", "--intents"])["entries"].as_array().map(Vec::len);
    assert_eq!(before, after, "nothing refused was attempted or recorded");
    assert_eq!(lb.json(&["tasks", "list"])["tasks"].as_array().map(Vec::len), Some(1), "the review still waits");

    // With a code from the list and a note (NFKC-normalised), the action goes ahead and the
    // audit log keeps the code apart from the note.
    lb.ok(&[
        "--config",
        &cfg,
        "dependencies",
        "hold",
        "dep",
        "--reason-code",
        "RESEARCH-IRB",
        "--reason",
        "ｐｒｏｔｏｃｏｌ review of dep",
    ]);
    let row = &lb.json(&["audit", "list", "--action", "dependency-hold"])["entries"][0];
    assert_eq!(row["reasonCode"], "research-irb", "{row}");
    assert_eq!(row["reason"], "dependency dep: protocol review of dep", "{row}");
    assert!(lb.ok(&["audit", "list"]).contains("reason: [research-irb] dependency dep: protocol review of dep"));
}
