//! SLO clocks through the command line: `[[slo]]` in config, `lightbox slo list`, and the
//! "SLO At Risk" / "SLO Breached" events the engine writes once per clock.

mod common;

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use common::Lb;
use serde_json::{Value, json};

const CONFIG: &str = r#"
[[slo]]
name = "stat-read"
when = { "$.priority" = "STAT" }
from = "Read"
to = "Sign"
target = "10m"
at_risk = 0.5

[[slo]]
name = "e2e"
target = "1h"
"#;

fn machine() -> Value {
    json!({
        "StartAt": "Order",
        "States": {
            "Order": {"Type": "Pass", "Next": "Route"},
            "Route": {"Type": "Choice", "Choices": [{"And": [{"Variable": "$.quick", "IsPresent": true}, {"Variable": "$.quick", "BooleanEquals": true}], "Next": "Sign"}], "Default": "Read"},
            "Read": {"Type": "Wait", "Seconds": 3600, "Next": "Sign"},
            "Sign": {"Type": "Pass", "End": true}
        }
    })
}

/// A store with the test machine and a config file; returns the `--config` argument.
fn setup(lb: &Lb, config: &str) -> String {
    let cfg = lb.file("config.toml", config);
    let def = lb.file("m.json", &machine());
    lb.json(&["--config", &cfg, "state-machines", "create", "--name", "m", "--definition", &def]);
    cfg
}

fn start(lb: &Lb, cfg: &str, name: &str, input: Value) -> (String, DateTime<Utc>) {
    let out =
        lb.json(&["--config", cfg, "executions", "start", "--state-machine", "m", "--name", name, "--input-json", &input.to_string()]);
    let arn = out["executionArn"].as_str().expect("arn").to_string();
    let d = lb.json(&["--config", cfg, "executions", "describe", &arn]);
    let started = DateTime::parse_from_rfc3339(d["startDate"].as_str().expect("startDate")).expect("time").with_timezone(&Utc);
    (arn, started)
}

fn list_at(lb: &Lb, cfg: &str, at: DateTime<Utc>, extra: &[&str]) -> Value {
    let at = at.to_rfc3339_opts(SecondsFormat::Millis, true);
    let mut args = vec!["--config", cfg, "slo", "list", "--at", &at];
    args.extend_from_slice(extra);
    lb.json(&args)
}

fn clock<'a>(list: &'a Value, slo: &str, arn: &str) -> Option<&'a Value> {
    list["clocks"].as_array()?.iter().find(|c| c["name"] == slo && c["executionArn"] == arn)
}

#[test]
fn clocks_go_ok_at_risk_breached_with_the_json_fields_scripts_use() {
    let lb = Lb::new();
    let cfg = setup(&lb, CONFIG);
    let (stat, t0) = start(&lb, &cfg, "stat-1", json!({"priority": "STAT"}));
    let (routine, _) = start(&lb, &cfg, "routine-1", json!({"priority": "ROUTINE"}));

    let l = list_at(&lb, &cfg, t0 + Duration::minutes(1), &[]);
    let c = clock(&l, "stat-read", &stat).expect("the STAT read clock");
    assert_eq!(c["status"], "OK");
    assert_eq!(c["targetSeconds"], 600.0);
    assert!(c["elapsedSeconds"].as_f64().is_some_and(|e| (59.0..=61.0).contains(&e)), "{c}");
    assert!(c["remainingSeconds"].as_f64().is_some_and(|r| (539.0..=541.0).contains(&r)), "{c}");
    assert_eq!(c["state"], "Read");
    assert!(clock(&l, "stat-read", &routine).is_none(), "a ROUTINE study has no STAT clock");
    assert!(clock(&l, "e2e", &routine).is_some());
    // Least time to breach first: the 10-minute STAT read before the hour-long ones.
    assert_eq!(l["clocks"][0]["name"], "stat-read");

    let l = list_at(&lb, &cfg, t0 + Duration::minutes(6), &[]);
    assert_eq!(clock(&l, "stat-read", &stat).expect("clock")["status"], "AT_RISK");
    let l = list_at(&lb, &cfg, t0 + Duration::minutes(11), &[]);
    let c = clock(&l, "stat-read", &stat).expect("clock");
    assert_eq!(c["status"], "BREACHED");
    assert!(c["remainingSeconds"].as_f64().is_some_and(|r| r < 0.0));
    let s = l["slos"].as_array().expect("slos").iter().find(|s| s["name"] == "stat-read").expect("compliance").clone();
    assert_eq!((s["open"].as_u64(), s["breaching"].as_u64()), (Some(1), Some(1)));
    // Nothing met, one breaching: the whole breached fraction over a 5% budget.
    assert_eq!(s["burnRate"].as_f64().map(|b| b.round()), Some(20.0));

    // The text form names the SLO, the status and where the study is.
    let text = lb.ok(&["--config", &cfg, "slo", "list", "--at", &(t0 + Duration::minutes(11)).to_rfc3339()]);
    assert!(text.contains("stat-read") && text.contains("BREACHED") && text.contains("Read"), "{text}");
}

#[test]
fn a_finished_study_closes_its_clock_and_counts_as_met() {
    let lb = Lb::new();
    let cfg = setup(&lb, CONFIG);
    let (quick, t0) = start(&lb, &cfg, "quick-1", json!({"priority": "STAT", "quick": true}));
    let d = lb.json(&["--config", &cfg, "executions", "describe", &quick]);
    assert_eq!(d["status"], "SUCCEEDED");
    let l = list_at(&lb, &cfg, t0 + Duration::minutes(5), &[]);
    assert!(clock(&l, "e2e", &quick).is_none(), "closed clocks are not open ones");
    let l = list_at(&lb, &cfg, t0 + Duration::minutes(5), &["--all"]);
    let c = clock(&l, "e2e", &quick).expect("closed clock with --all");
    assert_eq!((c["open"].as_bool(), c["status"].as_str()), (Some(false), Some("OK")));
    // It never entered Read: no read clock.
    assert!(clock(&l, "stat-read", &quick).is_none());
    let s = l["slos"].as_array().expect("slos").iter().find(|s| s["name"] == "e2e").expect("e2e").clone();
    assert_eq!((s["met"].as_u64(), s["closed"].as_u64(), s["compliance"].as_f64()), (Some(1), Some(1), Some(1.0)));
    // Out of the window, it no longer counts.
    let l = list_at(&lb, &cfg, t0 + Duration::hours(3), &["--window", "1h"]);
    let s = l["slos"].as_array().expect("slos").iter().find(|s| s["name"] == "e2e").expect("e2e").clone();
    assert_eq!(s["closed"].as_u64(), Some(0));
}

#[test]
fn a_bad_slo_in_config_is_named_with_its_key() {
    let lb = Lb::new();
    let cfg = lb.file("config.toml", "[[slo]]\nname = \"stat-read\"\ntarget = \"soon\"\n");
    let err = lb.fails(&["--config", &cfg, "slo", "list"]);
    assert!(err.contains("stat-read") && err.contains("target"), "{err}");
    let cfg = lb.file("config.toml", "[[slo]]\nname = \"x\"\ntarget = \"1h\"\nat_risk = 2.0\n");
    let err = lb.fails(&["--config", &cfg, "slo", "list"]);
    assert!(err.contains("at_risk"), "{err}");
    let cfg = lb.file("config.toml", "[[slo]]\nname = \"x\"\ntarget = \"1h\"\ncolour = \"red\"\n");
    let err = lb.fails(&["--config", &cfg, "slo", "list"]);
    assert!(err.contains("colour"), "{err}");
}

#[test]
fn the_engine_emits_at_risk_and_breached_once_per_clock() {
    let lb = Lb::new();
    let cfg = setup(&lb, "[[slo]]\nname = \"fast\"\nfrom = \"Read\"\nto = \"Sign\"\ntarget = \"1s\"\nat_risk = 0.5\n");
    let (arn, _) = start(&lb, &cfg, "a", json!({}));
    std::thread::sleep(std::time::Duration::from_millis(1100));
    lb.ok(&["--config", &cfg, "engine", "--seconds", "1"]);
    lb.ok(&["--config", &cfg, "engine", "--seconds", "1"]);
    let conn = rusqlite::Connection::open(lb.db()).expect("db");
    let mut q = conn.prepare("SELECT execution_arn, payload FROM outbox WHERE topic = 'lightbox' ORDER BY id").expect("query");
    let rows: Vec<(String, Value)> = q
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
        .expect("rows")
        .map(|r| {
            let (s, p) = r.expect("row");
            (s, serde_json::from_str(&p).expect("json"))
        })
        .collect();
    let slo: Vec<&(String, Value)> = rows.iter().filter(|(_, e)| e["id"].as_str().is_some_and(|i| i.starts_with("slo:"))).collect();
    assert_eq!(slo.len(), 2, "{rows:?}");
    assert_eq!(slo[0].1["detail-type"], "SLO At Risk");
    assert_eq!(slo[0].1["id"], format!("slo:fast:{arn}:AT_RISK"));
    assert_eq!(slo[1].1["detail-type"], "SLO Breached");
    assert_eq!(slo[1].1["id"], format!("slo:fast:{arn}:BREACHED"));
    assert_eq!(slo[1].1["source"], "lightbox");
    assert_eq!(slo[1].1["resources"][0], arn.as_str());
    assert_eq!(slo[1].1["detail"]["name"], "fast");
    assert_eq!(slo[1].1["detail"]["targetSeconds"], 1.0);
    assert!(slo.iter().all(|(stream, _)| stream == &arn));
}

#[test]
fn the_demo_hospital_ships_default_slos() {
    let lb = Lb::new();
    lb.ok(&["demo", "--seconds", "2", "--speed", "600"]);
    let l = lb.json(&["slo", "list", "--all"]);
    let names: Vec<&str> = l["slos"].as_array().expect("slos").iter().filter_map(|s| s["name"].as_str()).collect();
    for n in ["stat-ed-ct-read", "routine-outpatient-read", "stat-review-gate", "publication", "critical-result"] {
        assert!(names.contains(&n), "{names:?}");
    }
    // Every demo clock runs on simulated time.
    assert!(l["clocks"].as_array().expect("clocks").iter().all(|c| c["speed"].as_f64().is_some_and(|s| s > 1.0)), "{l}");
}

#[test]
fn a_closed_loop_lists_its_kind_and_stage() {
    let lb = Lb::new();
    let cfg = lb.file(
        "config.toml",
        "[[slo]]\nname = \"critical\"\nkind = \"closed-loop\"\nfrom = \"Communicate\"\nto = \"Acknowledge\"\ntarget = \"60m\"\nat_risk = 0.5\n\n[[slo]]\nname = \"e2e\"\ntarget = \"4h\"\n",
    );
    let def = lb.file(
        "loop.json",
        &json!({
            "StartAt": "Communicate",
            "States": {
                "Communicate": {"Type": "Pass", "Result": {"to": "Dr Demo Clinician"}, "ResultPath": "$.told", "Next": "Acknowledge"},
                "Acknowledge": {"Type": "Wait", "Seconds": 3600, "End": true}
            }
        }),
    );
    lb.json(&["--config", &cfg, "state-machines", "create", "--name", "m", "--definition", &def]);
    let (arn, t0) = start(&lb, &cfg, "crit-1", json!({"priority": "STAT"}));
    let l = list_at(&lb, &cfg, t0 + Duration::minutes(31), &[]);
    let c = clock(&l, "critical", &arn).expect("the loop's clock");
    assert_eq!(
        (c["kind"].as_str(), c["stage"].as_str(), c["status"].as_str()),
        (Some("closed-loop"), Some("communicated"), Some("AT_RISK"))
    );
    let e = clock(&l, "e2e", &arn).expect("a plain clock");
    assert_eq!((e["kind"].as_str(), e["stage"].as_str()), (Some("clock"), None));
    let text = lb.ok(&["--config", &cfg, "slo", "list", "--at", &(t0 + Duration::minutes(31)).to_rfc3339()]);
    assert!(text.contains("communicated · Acknowledge"), "{text}");
    let bad = lb.file("bad.toml", "[[slo]]\nname = \"x\"\nkind = \"loop\"\ntarget = \"1h\"\n");
    assert!(lb.fails(&["--config", &bad, "slo", "list"]).contains("kind"));
}
