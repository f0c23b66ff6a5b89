//! `lightbox bench`: throughput and latency of the durable engine on a real
//! SQLite file, measured, not asserted. Figures go in README.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::engine::core::{ExecInfo, ExecState, Input, apply};
use crate::engine::tasks::TaskRunner;
use crate::engine::{Clock, Engine, EngineError};
use crate::store::{ExecutionFilter, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("bench setup: {0}")]
    Setup(String),
}

/// Ten states with a callback gate in the middle.
pub fn workflow() -> Value {
    let task = |next: &str| {
        json!({"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke", "Parameters": {"FunctionName": "echo", "Payload.$": "$"},
               "ResultSelector": {"ok.$": "$.StatusCode"}, "ResultPath": "$.last", "Next": next})
    };
    json!({
        "StartAt": "Ordered",
        "States": {
            "Ordered": {"Type": "Pass", "Result": "ordered", "ResultPath": "$.stage", "Next": "Schedule"},
            "Schedule": task("Priority?"),
            "Priority?": {"Type": "Choice", "Choices": [{"Variable": "$.priority", "StringEquals": "STAT", "Next": "Arrived"}], "Default": "Arrived"},
            "Arrived": {"Type": "Pass", "Result": "arrived", "ResultPath": "$.stage", "Next": "Imaged"},
            "Imaged": {"Type": "Wait", "Seconds": 0, "Next": "Review"},
            "Review": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken",
                       "Parameters": {"FunctionName": "echo", "Payload": {"token.$": "$$.Task.Token"}}, "ResultPath": "$.review", "Next": "Signed"},
            "Signed": {"Type": "Pass", "Result": "signed", "ResultPath": "$.stage", "Next": "Publish"},
            "Publish": task("Billed"),
            "Billed": {"Type": "Pass", "Result": "billed", "ResultPath": "$.stage", "Next": "Done"},
            "Done": {"Type": "Succeed"}
        }
    })
}

#[derive(Debug, Clone)]
pub struct Report {
    pub executions: usize,
    pub transitions: u64,
    pub seconds: f64,
    pub transitions_per_second: f64,
    pub step_p50_ms: f64,
    pub step_p99_ms: f64,
    pub list_rows: usize,
    pub list_ms: f64,
    pub restart_inflight: usize,
    pub restart_ms: f64,
}

impl Report {
    pub fn to_json(&self) -> Value {
        json!({
            "executions": self.executions,
            "transitions": self.transitions,
            "seconds": self.seconds,
            "transitionsPerSecond": self.transitions_per_second,
            "stepLatencyMs": {"p50": self.step_p50_ms, "p99": self.step_p99_ms},
            "listExecutions": {"storedRows": self.list_rows, "ms": self.list_ms},
            "restart": {"inFlight": self.restart_inflight, "msToResumeAll": self.restart_ms},
        })
    }
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)].as_secs_f64() * 1000.0
}

fn count_transitions(store: &Store) -> Result<u64, BenchError> {
    let n: i64 = store
        .conn()
        .query_row("SELECT COUNT(*) FROM history WHERE type LIKE '%StateEntered'", [], |r| r.get(0))
        .map_err(StoreError::from)?;
    Ok(n as u64)
}

/// Run the whole benchmark in `dir` (a fresh directory).
pub fn run(dir: &Path, executions: usize, list_rows: usize, restart_inflight: usize) -> Result<Report, BenchError> {
    std::fs::create_dir_all(dir).map_err(|e| BenchError::Setup(e.to_string()))?;
    // 1. Throughput: start N executions (each runs to its review gate), then approve every gate.
    let store = Store::open(&dir.join("throughput.db"))?;
    let mut engine = Engine::new(store, TaskRunner::new(), Clock::Real);
    engine.create_state_machine("bench", &workflow().to_string(), None)?;
    let mut latencies = Vec::with_capacity(executions * 8);
    let t0 = Instant::now();
    for i in 0..executions {
        let s = Instant::now();
        engine.start_execution("bench", Some(&format!("b{i}")), r#"{"priority":"ROUTINE","accession":"ACC1"}"#)?;
        latencies.push(s.elapsed());
    }
    let tokens = engine.store.tokens(Some("PENDING"), None, executions + 10)?;
    for t in &tokens {
        let s = Instant::now();
        engine.send_task_success(&t.token, r#"{"approved":true}"#)?;
        latencies.push(s.elapsed());
    }
    let seconds = t0.elapsed().as_secs_f64();
    let transitions = count_transitions(&engine.store)?;
    let steps: i64 = engine.store.conn().query_row("SELECT SUM(version) FROM executions", [], |r| r.get(0)).map_err(StoreError::from)?;
    // Per-step latency: each call above commits several steps; spread its time over them.
    let per_call_steps = (steps as f64 / latencies.len().max(1) as f64).max(1.0);
    let mut step_lat: Vec<Duration> = latencies.iter().map(|d| d.div_f64(per_call_steps)).collect();
    step_lat.sort();

    // 2. executions list over many stored executions.
    let mut list_store = Store::open(&dir.join("list.db"))?;
    seed_finished(&mut list_store, list_rows)?;
    let s = Instant::now();
    let page = list_store.executions(&ExecutionFilter { limit: 100, ..Default::default() })?;
    let page2 = list_store.executions(&ExecutionFilter {
        status: Some(crate::history::ExecutionStatus::Failed),
        limit: 100,
        ..Default::default()
    })?;
    let list_ms = s.elapsed().as_secs_f64() * 1000.0 / 2.0;
    if page.len() != 100 || page2.is_empty() {
        return Err(BenchError::Setup(format!("list returned {} and {} rows", page.len(), page2.len())));
    }

    // 3. Restart: many executions whose timers are due; a fresh engine resumes them all.
    let restart_path = dir.join("restart.db");
    {
        let mut s = Store::open(&restart_path)?;
        seed_inflight(&mut s, restart_inflight)?;
    }
    let s = Instant::now();
    let store = Store::open(&restart_path)?;
    let mut engine = Engine::new(store, TaskRunner::new(), Clock::Real);
    while engine.run_due(1000)? > 0 {}
    let restart_ms = s.elapsed().as_secs_f64() * 1000.0;
    let running = engine.store.executions(&ExecutionFilter {
        status: Some(crate::history::ExecutionStatus::Running),
        limit: 10,
        ..Default::default()
    })?;
    if !running.is_empty() {
        return Err(BenchError::Setup(format!("{} executions did not resume", running.len())));
    }
    Ok(Report {
        executions,
        transitions,
        seconds,
        transitions_per_second: transitions as f64 / seconds,
        step_p50_ms: percentile(&step_lat, 0.50),
        step_p99_ms: percentile(&step_lat, 0.99),
        list_rows,
        list_ms,
        restart_inflight,
        restart_ms,
    })
}

fn info(sm: &str, name: &str, input: Value, start: chrono::DateTime<chrono::Utc>) -> ExecInfo {
    ExecInfo {
        execution_arn: crate::engine::execution_arn(sm, name),
        name: name.to_string(),
        state_machine_arn: crate::engine::state_machine_arn(sm),
        state_machine_name: sm.to_string(),
        role_arn: crate::engine::DEFAULT_ROLE.to_string(),
        start_time: start,
        input,
        redrive_count: 0,
        redrive_time: None,
    }
}

/// Real finished executions (a Pass or Fail machine run through the core), inserted in bulk.
fn seed_finished(store: &mut Store, n: usize) -> Result<(), BenchError> {
    let ok = json!({"StartAt": "P", "States": {"P": {"Type": "Pass", "End": true}}}).to_string();
    let bad = json!({"StartAt": "F", "States": {"F": {"Type": "Fail", "Error": "Archive.Unavailable", "Cause": "simulated"}}}).to_string();
    let defs = [
        crate::asl::model::Definition::parse_str(&ok).map_err(EngineError::from)?,
        crate::asl::model::Definition::parse_str(&bad).map_err(EngineError::from)?,
    ];
    let base = chrono::Utc::now() - chrono::Duration::days(1);
    let mut batch = Vec::with_capacity(5000);
    for i in 0..n {
        let which = usize::from(i % 10 == 0);
        let mut st =
            ExecState::new(info("seeded", &format!("s{i}"), json!({"i": i}), base + chrono::Duration::milliseconds(i as i64)), i as u64);
        let env = crate::engine::core::Env { now: st.info.start_time, region: crate::engine::REGION };
        let step = apply(&mut st, &defs[which], Input::Start, &env).map_err(EngineError::from)?;
        batch.push((st, if which == 0 { ok.clone() } else { bad.clone() }, step));
        if batch.len() == 5000 || i + 1 == n {
            store.insert_executions(&batch)?;
            batch.clear();
        }
    }
    Ok(())
}

/// Executions waiting in a Wait state whose time has come.
fn seed_inflight(store: &mut Store, n: usize) -> Result<(), BenchError> {
    let def = json!({"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 1, "Next": "P"}, "P": {"Type": "Pass", "End": true}}})
        .to_string();
    let parsed = crate::asl::model::Definition::parse_str(&def).map_err(EngineError::from)?;
    let start = chrono::Utc::now() - chrono::Duration::seconds(10);
    let mut batch = Vec::with_capacity(5000);
    for i in 0..n {
        let mut st = ExecState::new(info("inflight", &format!("w{i}"), json!({"i": i}), start), i as u64);
        let env = crate::engine::core::Env { now: start, region: crate::engine::REGION };
        let step = apply(&mut st, &parsed, Input::Start, &env).map_err(EngineError::from)?;
        batch.push((st, def.clone(), step));
        if batch.len() == 5000 || i + 1 == n {
            store.insert_executions(&batch)?;
            batch.clear();
        }
    }
    Ok(())
}
