//! Containment under a hostile workload: definitions and inputs drawn at random from shapes
//! aimed at evaluator cost (shared structures, deep recursion, nested descents, backtracking
//! patterns, big strings and ranges, endless loops) run in one `lightbox engine` beside
//! innocent executions, under a memory cap. Every innocent execution finishes; every hostile
//! one fails (over a budget or a limit, with a cause that says so) — none takes the engine
//! down, and all of it ends within a time bound.
//!
//! The draw is seeded (`LIGHTBOX_HOSTILE_SEED` picks another), so a failure can be replayed.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::Lb;
use serde_json::{Value, json};

/// splitmix64: a small seeded generator, so the draw is the same on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[(self.next() % items.len() as u64) as usize]
    }
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

/// A machine that first waits a second (so that `executions start` returns at once and the
/// engine does the work), then runs `state`.
fn after_wait(state: Value, jsonata: bool) -> Value {
    let mut def = json!({"StartAt": "Settle", "States": {
        "Settle": {"Type": "Wait", "Seconds": 1, "Next": "Work"},
        "Work": state,
    }});
    if jsonata {
        def["QueryLanguage"] = json!("JSONata");
    }
    def
}

/// One hostile definition and its input.
fn hostile(rng: &mut Rng) -> (String, Value, Value) {
    let kind = rng.range(0, 7);
    match kind {
        0 | 1 => {
            // Shared structure: a value built from itself, then walked.
            let builder = *rng.pick(&["[$a, $a]", "{'l': $a, 'r': $a}", "$append($a, $a)", "[[$a], {'k': $a}]"]);
            let using = *rng.pick(&[
                "$x = $x",
                "$distinct([$x, $x, $x])",
                "$count($x.**)",
                "$string($x)",
                "$x in [$x]",
                "$keys($x)",
                "$sift($x, function($v){$v = $v})",
                "{'o': $x}",
            ]);
            let depth = rng.range(30, 64);
            let expr =
                format!("{{% ($f := function($a, $n){{$n = 0 ? $a : $f({builder}, $n - 1)}}; $x := $f([1, 'x'], {depth}); {using}) %}}");
            ("shared".into(), after_wait(json!({"Type": "Pass", "Output": expr, "End": true}), true), json!({}))
        }
        2 => {
            // Work that stays small but never ends soon: big ranges, nested maps, sorts.
            let expr = *rng.pick(&[
                "{% $sum([1..9999999]) %}",
                "{% $count([1..3000].([1..3000].($ * 2))) %}",
                "{% $sort([1..200000], function($a, $b){ $a < $b }) %}",
                "{% ($f := function($n){$n = 0 ? 0 : 1 + $f($n - 1)}; $f(1000000)) %}",
                "{% $length($join([1..2000000].$string(), '')) %}",
            ]);
            ("cpu".into(), after_wait(json!({"Type": "Pass", "Output": expr, "End": true}), true), json!({}))
        }
        3 => {
            // Nested recursive descents over a wide, deep input (well inside 256 KiB).
            let scans = rng.range(3, 6) as usize;
            let path = format!("${}", "..*".repeat(scans));
            let mut doc = json!(1);
            for i in 0..rng.range(6, 9) {
                doc = json!({"a": doc.clone(), "b": [doc.clone(), i], "c": doc});
            }
            let input = json!({"tree": doc});
            ("descent".into(), after_wait(json!({"Type": "Pass", "Parameters": {"all.$": path}, "End": true}), false), input)
        }
        4 => {
            // Choice rules that each walk the whole input (a descent per rule, thousands of rules).
            let rules: Vec<Value> =
                (0..rng.range(2000, 4000)).map(|i| json!({"Variable": "$..*", "StringEquals": format!("never-{i}")})).collect();
            let mut doc = json!("leaf");
            for _ in 0..8 {
                doc = json!({"a": doc.clone(), "b": doc.clone(), "c": doc});
            }
            let state = json!({"Type": "Choice", "Choices": [{"Or": rules, "Next": "Done"}], "Default": "Done"});
            let mut def = after_wait(state, false);
            def["States"]["Done"] = json!({"Type": "Pass", "End": true});
            ("choice".into(), def, json!({"doc": doc}))
        }
        5 => {
            // An endless loop: the history limit ends it.
            let mut def = after_wait(json!({"Type": "Pass", "Next": "Again"}), false);
            def["States"]["Again"] = json!({"Type": "Pass", "Next": "Work"});
            ("loop".into(), def, json!({}))
        }
        6 => {
            // Big strings: doubling up to the output limit.
            let expr = "{% ($f := function($s, $n){$n = 0 ? $s : $f($s & $s, $n - 1)}; $f('abcdefgh', 40)) %}";
            ("strings".into(), after_wait(json!({"Type": "Pass", "Output": expr, "End": true}), true), json!({}))
        }
        _ => {
            // Intrinsics over what a JSONPath descent gathers.
            let mut doc = json!("v");
            for _ in 0..9 {
                doc = json!([doc.clone(), doc.clone(), doc]);
            }
            let state =
                json!({"Type": "Pass", "Parameters": {"u.$": "States.ArrayUnique($..*)", "s.$": "States.JsonToString($..*)"}, "End": true});
            ("intrinsics".into(), after_wait(state, false), json!({"doc": doc}))
        }
    }
}

fn innocent(i: usize) -> (Value, Value) {
    let def = json!({"StartAt": "Settle", "States": {
        "Settle": {"Type": "Wait", "Seconds": 1, "Next": "Fan"},
        "Fan": {"Type": "Map", "ItemsPath": "$.items", "ItemProcessor": {"StartAt": "Each", "States": {"Each": {"Type": "Pass", "End": true}}}, "Next": "Done"},
        "Done": {"Type": "Pass", "End": true},
    }});
    (def, json!({"items": (0..(i % 7 + 1)).collect::<Vec<_>>()}))
}

fn capped(lb: &Lb, args: &[&str]) -> Command {
    let mut c = Command::new("prlimit");
    // A memory cap: a process that tried to take more would die, not the machine.
    c.arg(format!("--as={}", 4u64 << 30)).arg("--").arg(common::bin());
    c.env("HOME", lb.dir.path()).env_remove("LIGHTBOX_CONFIG").env_remove("LIGHTBOX_AUDIT_KEY").env_remove("LIGHTBOX_USER");
    c.arg("--config").arg(lb.path("config.toml")).arg("--data-dir").arg(lb.data());
    c.args(args);
    c
}

fn status_of(lb: &Lb, arn: &str) -> Value {
    let out = capped(lb, &["--json", "executions", "describe", arn]).output().expect("describe");
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

#[test]
fn hostile_executions_fail_and_innocent_ones_finish() {
    let seed = std::env::var("LIGHTBOX_HOSTILE_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x5EED_2026_u64);
    let mut rng = Rng(seed);
    let lb = Lb::as_user("ops.lead");
    // A short wall-clock budget keeps the run short in a debug build.
    lb.write("config.toml", "[engine]\nstep_wall_ms = 2000\n");

    let mut hostile_arns = vec![];
    let mut innocent_arns = vec![];
    for i in 0..16 {
        let (kind, def, input) = hostile(&mut rng);
        let name = format!("hostile-{i}-{kind}");
        let d = lb.file(&format!("{name}.json"), &def);
        let inp = lb.file(&format!("{name}.in.json"), &input);
        let out = capped(&lb, &["state-machines", "create", "--name", &name, "--definition", &d]).output().expect("create");
        assert!(out.status.success(), "{name}: {}", String::from_utf8_lossy(&out.stderr));
        let out = capped(&lb, &["--json", "executions", "start", "--state-machine", &name, "--name", "run", "--input", &inp])
            .output()
            .expect("start");
        assert!(out.status.success(), "{name}: {}", String::from_utf8_lossy(&out.stderr));
        let v: Value = serde_json::from_slice(&out.stdout).expect("start json");
        hostile_arns.push((name, v["executionArn"].as_str().expect("arn").to_string()));

        let (def, input) = innocent(i);
        let name = format!("innocent-{i}");
        let d = lb.file(&format!("{name}.json"), &def);
        let inp = lb.file(&format!("{name}.in.json"), &input);
        assert!(capped(&lb, &["state-machines", "create", "--name", &name, "--definition", &d]).status().expect("create").success());
        let out = capped(&lb, &["--json", "executions", "start", "--state-machine", &name, "--input", &inp]).output().expect("start");
        let v: Value = serde_json::from_slice(&out.stdout).expect("start json");
        innocent_arns.push(v["executionArn"].as_str().expect("arn").to_string());
    }

    let started = Instant::now();
    let mut engine = capped(&lb, &["engine", "--seconds", "600"]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("engine");
    let bound = Duration::from_secs(240);
    let mut pending: Vec<String> = innocent_arns.clone();
    let mut hostile_left = hostile_arns.clone();
    let mut failures = vec![];
    while !(pending.is_empty() && hostile_left.is_empty()) {
        if let Some(status) = engine.try_wait().expect("wait") {
            panic!("the engine died ({status}) with {} innocent and {} hostile executions unfinished", pending.len(), hostile_left.len());
        }
        assert!(
            started.elapsed() < bound,
            "not done within {bound:?}: innocent {pending:?}, hostile {:?}",
            hostile_left.iter().map(|h| &h.0).collect::<Vec<_>>()
        );
        pending.retain(|a| status_of(&lb, a)["status"] != "SUCCEEDED");
        hostile_left.retain(|(name, arn)| {
            let d = status_of(&lb, arn);
            match d["status"].as_str() {
                Some("RUNNING") | None => true,
                Some("FAILED") => {
                    failures.push((name.clone(), d["error"].as_str().unwrap_or_default().to_string(), d["cause"].clone()));
                    false
                }
                Some(other) => panic!("{name} ended {other}, not FAILED (error {}, cause {:.300})", d["error"], d["cause"].to_string()),
            }
        });
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = engine.kill();
    let _ = engine.wait();
    for (name, error, cause) in &failures {
        // Each says which limit stopped it.
        let known = [
            "Lightbox.BudgetExceeded",
            "States.QueryEvaluationError",
            "States.DataLimitExceeded",
            "States.Runtime",
            "States.IntrinsicFailure",
        ];
        assert!(known.contains(&error.as_str()), "{name}: {error}: {cause}");
        if error == "Lightbox.BudgetExceeded" {
            let c = cause.as_str().unwrap_or_default();
            assert!(c.contains("state 'Work'") || c.contains("state 'Again'"), "{name}: the cause names the state: {c}");
            assert!(c.contains("step_budget") || c.contains("step_wall_ms"), "{name}: the cause names the budget: {c}");
        }
    }
    assert_eq!(failures.len(), hostile_arns.len());
}
