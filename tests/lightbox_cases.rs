//! Data-driven cases written for Lightbox (tests/conformance/lightbox_cases.jsonl): the
//! recorded AWS corpus has nothing for callbacks (.waitForTaskToken), heartbeats,
//! redrive or StringMatches escapes, so these cases were written from the AWS Step
//! Functions documentation in the same shape, plus a `steps` array that this runner
//! replays against an `Engine` on a virtual clock.
//!
//! Steps:
//! * `{"action":"approve","output":V}` / `{"action":"reject","error":E,"cause":C}` /
//!   `{"action":"heartbeat"}`: act on the single PENDING token of the execution, or on
//!   the one whose parameters contain `"match"` when several are pending.
//! * `{"action":"advance","seconds":N}`: move the virtual clock on, then run due work.
//! * `{"action":"redrive"}`, `{"action":"stop","error":E,"cause":C}`.
//! * `{"action":"fix"}`: the `flaky` handler stops failing.
//! * `{"action":"expect", ...}`: check `status`, `pending_tokens`, `token_statuses`
//!   (every token of the execution, in issue order), `redrive_count`, `invocations`
//!   (calls of the `flaky` handler by payload `id`).
//!
//! Any step may carry `"expect_error": "text"`: the call must fail with an error
//! containing that text. Every mismatch of every case is collected and reported.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Utc};
use lightbox::engine::core::TaskError;
use lightbox::engine::tasks::TaskRunner;
use lightbox::engine::{Clock, Engine};
use lightbox::store::Store;
use serde_json::{Value, json};

const CASES: &str = include_str!("conformance/lightbox_cases.jsonl");

fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2024-03-01T09:00:00Z").expect("t0").with_timezone(&Utc)
}

struct Harness {
    engine: Engine,
    arn: String,
    fixed: Arc<AtomicBool>,
    calls: Arc<Mutex<BTreeMap<String, u64>>>,
}

/// Structural JSON equality; numbers compare by value.
fn same(expected: &Value, actual: &Value) -> bool {
    match (expected, actual) {
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        (Value::Array(a), Value::Array(b)) => a.len() == b.len() && a.iter().zip(b).all(|(x, y)| same(x, y)),
        (Value::Object(a), Value::Object(b)) => a.len() == b.len() && a.iter().all(|(k, x)| b.get(k).is_some_and(|y| same(x, y))),
        (a, b) => a == b,
    }
}

impl Harness {
    fn new(case: &Value) -> Result<Harness, String> {
        let fixed = Arc::new(AtomicBool::new(false));
        let calls: Arc<Mutex<BTreeMap<String, u64>>> = Arc::default();
        let mut tasks = TaskRunner::new();
        {
            let fixed = fixed.clone();
            let calls = calls.clone();
            // Fails for payloads with "fail": true until a `fix` step.
            tasks.register("flaky", move |v| {
                let id = v.get("id").map(|x| x.as_str().map(str::to_string).unwrap_or_else(|| x.to_string())).unwrap_or_default();
                *calls.lock().expect("calls").entry(id.clone()).or_default() += 1;
                if v.get("fail") == Some(&Value::Bool(true)) && !fixed.load(Ordering::SeqCst) {
                    return Err(TaskError { error: "Flaky.Broken".into(), cause: format!("item {id} is broken") });
                }
                Ok(json!({"done": id}))
            });
        }
        let mut engine = Engine::new(Store::in_memory().map_err(|e| e.to_string())?, tasks, Clock::virtual_at(t0()));
        let sm = engine.create_state_machine("LightboxCase", &case["definition"].to_string(), None).map_err(|e| format!("create: {e}"))?;
        let row = engine.start_execution(&sm.arn, Some("case"), &case["input"].to_string()).map_err(|e| format!("start: {e}"))?;
        Ok(Harness { engine, arn: row.arn, fixed, calls })
    }

    fn pending_token(&self, step: &Value) -> Result<String, String> {
        let pending = self.engine.store.tokens(Some("PENDING"), Some(&self.arn), 1000).map_err(|e| e.to_string())?;
        let chosen: Vec<_> = match step.get("match").and_then(Value::as_str) {
            Some(m) => pending.iter().filter(|t| t.parameters.contains(m)).collect(),
            None => pending.iter().collect(),
        };
        match chosen.as_slice() {
            [one] => Ok(one.token.clone()),
            other => Err(format!("expected one pending token to act on, found {} (of {} pending)", other.len(), pending.len())),
        }
    }

    fn run_due(&mut self) -> Result<(), String> {
        for _ in 0..100 {
            if self.engine.run_due(64).map_err(|e| e.to_string())? == 0 {
                return Ok(());
            }
        }
        Err("run_due did not settle after 100 rounds".into())
    }

    fn token_statuses(&self) -> Result<Vec<String>, String> {
        let mut all = self.engine.store.tokens(None, Some(&self.arn), 1000).map_err(|e| e.to_string())?;
        all.sort_by_key(|t| t.issued);
        Ok(all.into_iter().map(|t| t.status).collect())
    }

    fn expect(&self, step: &Value) -> Vec<String> {
        let mut bad = vec![];
        let row = match self.engine.store.execution(&self.arn) {
            Ok(Some(r)) => r,
            other => return vec![format!("cannot read the execution: {other:?}")],
        };
        if let Some(s) = step.get("status").and_then(Value::as_str)
            && row.status.as_str() != s
        {
            bad.push(format!("status {} (expected {s})", row.status));
        }
        if let Some(n) = step.get("redrive_count").and_then(Value::as_u64)
            && u64::from(row.redrive_count) != n
        {
            bad.push(format!("redrive_count {} (expected {n})", row.redrive_count));
        }
        if let Some(n) = step.get("pending_tokens").and_then(Value::as_u64) {
            match self.engine.store.tokens(Some("PENDING"), Some(&self.arn), 1000) {
                Ok(p) if p.len() as u64 == n => {}
                Ok(p) => bad.push(format!("{} pending token(s) (expected {n})", p.len())),
                Err(e) => bad.push(e.to_string()),
            }
        }
        if let Some(want) = step.get("token_statuses") {
            match self.token_statuses() {
                Ok(got) if same(want, &json!(got)) => {}
                Ok(got) => bad.push(format!("token statuses {got:?} (expected {want})")),
                Err(e) => bad.push(e),
            }
        }
        if let Some(want) = step.get("invocations") {
            let got = json!(*self.calls.lock().expect("calls"));
            if !same(want, &got) {
                bad.push(format!("flaky handler invocations {got} (expected {want})"));
            }
        }
        bad
    }

    fn step(&mut self, step: &Value) -> Result<Vec<String>, String> {
        let action = step.get("action").and_then(Value::as_str).unwrap_or_default();
        let s = |k: &str| step.get(k).and_then(Value::as_str).map(str::to_string);
        match action {
            "approve" => {
                let tok = self.pending_token(step)?;
                let out = step.get("output").cloned().unwrap_or(json!({}));
                self.engine.send_task_success(&tok, &out.to_string()).map(|_| ()).map_err(|e| e.to_string())?;
            }
            "reject" => {
                let tok = self.pending_token(step)?;
                self.engine.send_task_failure(&tok, s("error").as_deref(), s("cause").as_deref()).map(|_| ()).map_err(|e| e.to_string())?;
            }
            "heartbeat" => {
                // After a timeout the token is no longer pending: heartbeat the newest token then.
                let tok = match self.pending_token(step) {
                    Ok(t) => t,
                    Err(e) => {
                        let mut all = self.engine.store.tokens(None, Some(&self.arn), 1000).map_err(|e| e.to_string())?;
                        all.sort_by_key(|t| t.issued);
                        all.pop().map(|t| t.token).ok_or(e)?
                    }
                };
                self.engine.send_task_heartbeat(&tok).map(|_| ()).map_err(|e| e.to_string())?;
            }
            "advance" => {
                let secs = step.get("seconds").and_then(Value::as_f64).ok_or("advance needs seconds")?;
                let to = self.engine.clock.now() + Duration::milliseconds((secs * 1000.0) as i64);
                self.engine.clock.advance_to(to);
                self.run_due()?;
            }
            "redrive" => {
                self.engine.redrive_execution(&self.arn).map(|_| ()).map_err(|e| e.to_string())?;
            }
            "stop" => {
                self.engine.stop_execution(&self.arn, s("error"), s("cause")).map(|_| ()).map_err(|e| e.to_string())?;
            }
            "fix" => {
                self.fixed.store(true, Ordering::SeqCst);
                self.run_due()?;
            }
            "expect" => return Ok(self.expect(step)),
            other => return Err(format!("unknown action {other:?}")),
        }
        Ok(vec![])
    }
}

/// `strict`: compare the history with `expected_event_types` even for a case with a
/// `known_divergence` (which otherwise is compared with `lightbox_event_types`, what
/// Lightbox emits today, so the rest of the case still guards against regressions).
fn run_case(case: &Value, strict: bool) -> Vec<String> {
    let mut bad = vec![];
    let mut h = match Harness::new(case) {
        Ok(h) => h,
        Err(e) => return vec![e],
    };
    for (i, step) in case["steps"].as_array().cloned().unwrap_or_default().iter().enumerate() {
        let want_err = step.get("expect_error").and_then(Value::as_str);
        match (h.step(step), want_err) {
            (Ok(m), None) => bad.extend(m.into_iter().map(|m| format!("step {i} {step}: {m}"))),
            (Ok(_), Some(w)) => bad.push(format!("step {i} {step}: succeeded, expected an error containing {w:?}")),
            (Err(e), Some(w)) if e.contains(w) => {}
            (Err(e), _) => bad.push(format!("step {i} {step}: {e}")),
        }
    }
    let row = match h.engine.store.execution(&h.arn) {
        Ok(Some(r)) => r,
        other => return vec![format!("cannot read the execution: {other:?}")],
    };
    let exp = &case["expected"];
    if exp["status"].as_str() != Some(row.status.as_str()) {
        bad.push(format!("status {} (expected {})", row.status, exp["status"]));
    }
    if let Some(want) = exp.get("output") {
        let got = row.output.as_deref().and_then(|o| serde_json::from_str::<Value>(o).ok()).unwrap_or(Value::Null);
        if !same(want, &got) {
            bad.push(format!("output {got} (expected {want})"));
        }
    }
    for (k, got) in [("error", &row.error), ("cause", &row.cause)] {
        if let Some(want) = exp.get(k)
            && want.as_str() != got.as_deref()
        {
            bad.push(format!("{k} {got:?} (expected {want})"));
        }
    }
    match h.engine.store.history(&h.arn, 0, 100_000, false) {
        Ok(events) => {
            let got: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
            let key = if !strict && case.get("known_divergence").is_some() { "lightbox_event_types" } else { "expected_event_types" };
            let want: Vec<&str> = case[key].as_array().map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
            if got != want {
                bad.push(format!("event types differ:\n      expected {want:?}\n      actual   {got:?}"));
            }
            let ids: Vec<i64> = events.iter().map(|e| e.id).collect();
            if ids != (1..=ids.len() as i64).collect::<Vec<_>>() {
                bad.push(format!("event ids are not 1..n: {ids:?}"));
            }
        }
        Err(e) => bad.push(format!("history: {e}")),
    }
    bad
}

fn cases() -> Vec<Value> {
    let mut ids = std::collections::HashSet::new();
    let mut out = vec![];
    for (line_no, line) in CASES.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let case: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("line {}: not JSON: {e}", line_no + 1));
        let id = case["id"].as_str().unwrap_or_else(|| panic!("line {}: no id", line_no + 1)).to_string();
        assert!(ids.insert(id.clone()), "duplicate case id {id}");
        assert_eq!(case["source"]["repo"], "lightbox", "{id}: source.repo");
        for k in ["definition", "input", "expected", "expected_event_types", "features", "steps"] {
            assert!(case.get(k).is_some(), "{id}: missing field {k}");
        }
        if case.get("known_divergence").is_some() {
            assert!(case.get("lightbox_event_types").is_some(), "{id}: a known divergence needs lightbox_event_types");
        }
        out.push(case);
    }
    out
}

fn run_all(cases: &[Value], strict: bool) {
    let mut failures = vec![];
    for case in cases {
        let bad = run_case(case, strict);
        if !bad.is_empty() {
            failures.push(format!("{}:\n    {}", case["id"].as_str().unwrap_or_default(), bad.join("\n    ")));
        }
    }
    assert!(failures.is_empty(), "{} of {} case(s) failed:\n{}", failures.len(), cases.len(), failures.join("\n"));
}

#[test]
fn lightbox_cases() {
    let all = cases();
    assert!(all.len() >= 20, "expected at least 20 cases, found {}", all.len());
    run_all(&all, false);
}
