//! Compensation on the real binary: the plan from history, starting the compensation once,
//! the links between an execution and its compensation, refusals, and the audit rows.

mod common;

use common::Lb;

use serde_json::{Value, json};

/// Reserve (top level), Hold in each of two Map iterations, Charge inside a Parallel branch,
/// then a failure.
fn booking() -> Value {
    json!({
        "StartAt": "Reserve",
        "States": {
            "Reserve": {"Type": "Pass", "Result": {"slot": "R1"}, "ResultPath": "$.slot", "Next": "Holds"},
            "Holds": {
                "Type": "Map",
                "ItemsPath": "$.items",
                "ItemProcessor": {"StartAt": "Hold", "States": {"Hold": {"Type": "Pass", "Parameters": {"held.$": "$"}, "End": true}}},
                "ResultPath": "$.held",
                "Next": "Both"
            },
            "Both": {
                "Type": "Parallel",
                "Branches": [{"StartAt": "Charge", "States": {"Charge": {"Type": "Pass", "Result": "CHG-1", "End": true}}}],
                "ResultPath": "$.charged",
                "Next": "Boom"
            },
            "Boom": {"Type": "Fail", "Error": "Booking.Failed", "Cause": "the scanner is down"}
        }
    })
}

fn undo() -> Value {
    json!({"StartAt": "Undo", "States": {"Undo": {"Type": "Pass", "End": true}}})
}

const CONFIG: &str = "[compensation.booking]\nstate_machine = \"booking-undo\"\nstates = [\"Reserve\", \"Hold\", \"Charge\"]\n";

fn setup(lb: &Lb) -> (String, String) {
    let cfg = lb.file("config.toml", CONFIG);
    let b = lb.file("booking.json", &booking());
    let u = lb.file("undo.json", &undo());
    lb.json(&["--config", &cfg, "state-machines", "create", "--name", "booking", "--definition", &b]);
    lb.json(&["--config", &cfg, "state-machines", "create", "--name", "booking-undo", "--definition", &u]);
    let input = json!({"items": ["a", "b"], "patient": {"name": "Jane Doe", "mrn": "SYN-123"}}).to_string();
    let s = lb.json(&["--config", &cfg, "executions", "start", "--state-machine", "booking", "--name", "ord-7", "--input-json", &input]);
    let arn = s["executionArn"].as_str().expect("arn").to_string();
    assert_eq!(lb.json(&["--config", &cfg, "executions", "describe", &arn])["status"], "FAILED");
    (cfg, arn)
}

#[test]
fn dry_run_shows_the_plan_and_starts_nothing() {
    let lb = Lb::new();
    let (cfg, arn) = setup(&lb);
    let p = lb.json(&["--config", &cfg, "executions", "compensate", &arn, "--dry-run"]);
    let states: Vec<&str> = p["steps"].as_array().expect("steps").iter().filter_map(|s| s["state"].as_str()).collect();
    assert_eq!(states, vec!["Charge", "Hold", "Hold", "Reserve"], "{p}");
    assert_eq!(p["steps"][3]["output"]["slot"], json!({"slot": "R1"}));
    assert_eq!(p["steps"][0]["output"], "CHG-1");
    assert_eq!(p["compensationStateMachine"], "booking-undo");
    assert_eq!(p["compensationName"], "ord-7-undo");
    assert_eq!((p["dryRun"].as_bool(), p["started"].as_bool()), (Some(true), Some(false)));
    // Patient data in the steps' inputs is masked.
    let text = p.to_string();
    assert!(!text.contains("Jane Doe") && !text.contains("SYN-123"), "{text}");
    let list = lb.json(&["executions", "list", "--state-machine", "booking-undo"]);
    assert_eq!(list["executions"].as_array().map(Vec::len), Some(0));
    // A dry run is not an action: no audit row.
    assert!(!lb.ok(&["audit", "list"]).contains("compensate"));
}

#[test]
fn compensating_starts_once_links_both_ways_and_is_audited() {
    let lb = Lb::new();
    let (cfg, arn) = setup(&lb);
    let first = lb.json(&[
        "--config",
        &cfg,
        "executions",
        "compensate",
        &arn,
        "--reason-code",
        "operations-incident",
        "--reason",
        "slot double-booked",
    ]);
    assert_eq!(first["started"], true, "{first}");
    let comp = first["compensationExecutionArn"].as_str().expect("compensation arn").to_string();
    assert_eq!(comp, "arn:aws:states:us-east-1:000000000000:execution:booking-undo:ord-7-undo");

    // The compensation's input: the execution, the steps newest first, the reason. Not
    // revealed: the execution's name and ARN show, the patient carried in its input does not.
    let masked = lb.json(&["--config", &cfg, "executions", "describe", &comp]);
    let text = masked["input"].as_str().expect("input");
    assert!(!text.contains("Jane") && !text.contains("SYN-123"), "{text}");
    let input: Value = serde_json::from_str(text).expect("json");
    assert_eq!(input["execution"]["name"], "ord-7");
    assert_eq!(input["execution"]["executionArn"], arn.as_str());
    assert_eq!(masked["compensates"], arn.as_str());
    let d = lb.json(&[
        "--config",
        &cfg,
        "executions",
        "describe",
        &comp,
        "--reveal",
        "--reason-code",
        "operations-incident",
        "--reason",
        "checking the compensation input for ord-7",
    ]);
    let input: Value = serde_json::from_str(d["input"].as_str().expect("input")).expect("json");
    assert_eq!(input["execution"]["input"]["patient"]["name"], "Jane Doe");
    assert_eq!(input["execution"]["executionArn"], arn.as_str());
    assert_eq!(input["execution"]["name"], "ord-7");
    assert_eq!(input["execution"]["input"]["items"], json!(["a", "b"]));
    assert_eq!(input["steps"][0]["state"], "Charge");
    assert_eq!(input["steps"].as_array().map(Vec::len), Some(4));
    assert_eq!(input["reason"], "[operations-incident] slot double-booked", "the compensation receives the code and the note");
    assert_eq!(d["compensates"], arn.as_str());
    let o = lb.json(&["--config", &cfg, "executions", "describe", &arn]);
    assert_eq!(o["compensatedBy"], comp.as_str());

    // A second request starts nothing new and names the existing one (exit 0).
    let again =
        lb.json(&["--config", &cfg, "executions", "compensate", &arn, "--reason-code", "operations-incident", "--reason", "asked again"]);
    assert_eq!((again["started"].as_bool(), again["alreadyCompensated"].as_bool()), (Some(false), Some(true)), "{again}");
    assert_eq!(again["compensationExecutionArn"], comp.as_str());
    let text =
        lb.ok(&["--config", &cfg, "executions", "compensate", &arn, "--reason-code", "operations-incident", "--reason", "third time"]);
    assert!(text.contains("already compensated by") && text.contains(&comp), "{text}");
    let list = lb.json(&["executions", "list", "--state-machine", "booking-undo"]);
    assert_eq!(list["executions"].as_array().map(Vec::len), Some(1));

    // Audited (intent and outcome), and one "Compensation Started" event.
    let audit = lb.json(&["audit", "list", "--intents"]);
    let rows: Vec<&Value> = audit["entries"].as_array().expect("entries").iter().filter(|e| e["action"] == "compensate").collect();
    assert!(rows.len() >= 2, "{audit}");
    assert!(lb.ok(&["audit", "list"]).contains("slot double-booked"));
    lb.ok(&["audit", "verify"]);
    let conn = rusqlite::Connection::open(lb.db()).expect("db");
    let n: i64 =
        conn.query_row("SELECT count(*) FROM outbox WHERE payload LIKE '%\"Compensation Started\"%'", [], |r| r.get(0)).expect("count");
    assert_eq!(n, 1);
}

#[test]
fn running_and_unconfigured_executions_are_refused() {
    let lb = Lb::new();
    let (cfg, _) = setup(&lb);
    let wait = lb.file("wait.json", &json!({"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 3600, "End": true}}}));
    lb.json(&["state-machines", "create", "--name", "booking2", "--definition", &wait]);
    let cfg2 = lb.file("config2.toml", &format!("{CONFIG}[compensation.booking2]\nstate_machine = \"booking-undo\"\nstates = [\"W\"]\n"));
    let s = lb.json(&["executions", "start", "--state-machine", "booking2", "--name", "w1"]);
    let arn = s["executionArn"].as_str().expect("arn");
    let out = lb.run(&[
        "--config",
        &cfg2,
        "executions",
        "compensate",
        arn,
        "--reason-code",
        "operations-incident",
        "--reason",
        "slot double-booked, not yet configured",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("RUNNING") && err.contains("still running"), "{err}");
    // Without config for the machine: says how to configure it.
    lb.ok(&["executions", "stop", arn]);
    let err = lb.fails(&["--config", &cfg, "executions", "compensate", arn, "--dry-run"]);
    assert!(err.contains("[compensation.booking2]"), "{err}");
    // A bad config key is named.
    let bad = lb.file("bad.toml", "[compensation.booking]\nstate_machine = \"booking-undo\"\nstates = []\n");
    let err = lb.fails(&["--config", &bad, "executions", "list"]);
    assert!(err.contains("[compensation.booking]") && err.contains("states"), "{err}");
}

/// Eight processes compensate the same execution at once, each with its own reason: exactly
/// one starts the compensation, every other one names it (or fails cleanly), never a second
/// compensation or a panic; the audit log closes every intent.
#[test]
fn compensating_the_same_execution_concurrently_starts_exactly_one() {
    let lb = Lb::new();
    let (cfg, arn) = setup(&lb);
    let children: Vec<_> = (0..8)
        .map(|i| {
            lb.cmd()
                .args([
                    "--json",
                    "--config",
                    &cfg,
                    "executions",
                    "compensate",
                    &arn,
                    "--reason-code",
                    "operations-incident",
                    "--reason",
                    &format!("racing compensation {i}"),
                ])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("spawn")
        })
        .collect();
    let mut started = 0;
    for c in children {
        let out = c.wait_with_output().expect("wait");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "{err}");
        if out.status.success() {
            let v: Value = serde_json::from_slice(&out.stdout).expect("JSON");
            if v["started"] == true {
                started += 1;
            } else {
                assert_eq!(v["alreadyCompensated"], true, "{v}");
            }
        }
    }
    assert_eq!(started, 1, "exactly one process starts the compensation");
    let list = lb.json(&["executions", "list", "--state-machine", "booking-undo"]);
    assert_eq!(list["executions"].as_array().map(Vec::len), Some(1), "{list}");
    let verify = lb.run(&["audit", "verify"]);
    assert!(verify.status.success(), "{}", String::from_utf8_lossy(&verify.stdout));
}
