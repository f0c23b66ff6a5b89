//! `lightbox bench`: throughput and latency of the durable engine on a real
//! SQLite file, measured, not asserted. Figures go in README.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::engine::core::{ExecInfo, ExecState, Input, apply};
use crate::engine::tasks::TaskRunner;
use crate::engine::{Clock, Engine, EngineError};
use crate::model::ExecutionFilter;
use crate::store::{Store, StoreError};

// The relay benchmark's webhook is a loopback HTTP server: only in builds with the
// `bench-stub` feature, so a default build serves HTTP only in src/serve.
#[cfg(feature = "bench-stub")]
mod webhook;

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
    /// SLO clocks read, sorted by time to breach and summed into compliance, and how long it took.
    pub slo_clocks: usize,
    pub slo_recompute_ms: f64,
    /// One Map over 1,000, 10,000 and 40,000 items, run to its end ([`fanout`]).
    pub fanout: Vec<FanoutPoint>,
}

/// One fan-out run: a Map of `items` trivial iterations, durable, driven as `lightbox engine`
/// drives it (each `run_due` round gives it one step).
#[derive(Debug, Clone)]
pub struct FanoutPoint {
    pub items: usize,
    /// "distributed" (iterations write no history) or "inline" (each writes four events, so
    /// 10,000 and more reach the 25,000-event history limit and fail).
    pub mode: &'static str,
    pub status: String,
    pub seconds: f64,
    pub steps: i64,
    pub events: i64,
    /// The longest single step (load, apply, commit), ms.
    pub max_step_ms: f64,
}

impl FanoutPoint {
    pub fn to_json(&self) -> Value {
        json!({
            "items": self.items, "mode": self.mode, "status": self.status, "seconds": self.seconds,
            "steps": self.steps, "events": self.events, "maxStepMs": self.max_step_ms,
            "usPerItem": self.seconds * 1e6 / self.items.max(1) as f64,
        })
    }
}

/// The fan-out sizes `lightbox bench` measures.
pub const FANOUT_SIZES: [usize; 3] = [1_000, 10_000, 40_000];

/// Run a Map over `items` integers (a Pass per item) to its end on a fresh store in `dir`.
pub fn fanout(dir: &Path, items: usize, distributed: bool) -> Result<FanoutPoint, BenchError> {
    let mode = if distributed { "distributed" } else { "inline" };
    let path = dir.join(format!("fanout-{mode}-{items}.db"));
    let _ = std::fs::remove_file(&path);
    let store = Store::open(&path)?;
    let mut engine = Engine::new(store, TaskRunner::new(), Clock::Real);
    let processor = if distributed {
        json!({"ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"}, "StartAt": "P", "States": {"P": {"Type": "Pass", "End": true}}})
    } else {
        json!({"StartAt": "P", "States": {"P": {"Type": "Pass", "End": true}}})
    };
    let def = json!({"StartAt": "Fan", "States": {"Fan": {"Type": "Map", "ItemsPath": "$.items", "ItemProcessor": processor, "ResultPath": null, "End": true}}});
    engine.create_state_machine("fanout", &def.to_string(), None)?;
    let input = json!({"items": (0..items).collect::<Vec<usize>>()}).to_string();
    let t0 = Instant::now();
    let s = Instant::now();
    let arn = engine.start_execution("fanout", Some("fan"), &input)?.arn;
    let mut max_step = s.elapsed();
    loop {
        let s = Instant::now();
        let n = engine.run_due(64)?;
        max_step = max_step.max(s.elapsed());
        if n == 0 {
            break;
        }
    }
    let seconds = t0.elapsed().as_secs_f64();
    let row = engine.store.execution(&arn)?.ok_or_else(|| BenchError::Setup("the fan-out execution is gone".into()))?;
    let (steps, events): (i64, i64) = engine
        .store
        .conn()
        .query_row(
            "SELECT (SELECT version FROM executions WHERE arn = ?1), (SELECT COUNT(*) FROM history WHERE execution_arn = ?1)",
            [&arn],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .map_err(StoreError::from)?;
    drop(engine);
    for suffix in ["", "-wal", "-shm", ".id"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    Ok(FanoutPoint {
        items,
        mode,
        status: row.status.as_str().to_string(),
        seconds,
        steps,
        events,
        max_step_ms: max_step.as_secs_f64() * 1000.0,
    })
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
            "sloRecompute": {"openClocks": self.slo_clocks, "ms": self.slo_recompute_ms},
            "fanout": self.fanout.iter().map(FanoutPoint::to_json).collect::<Vec<_>>(),
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
        slo_clocks: SLO_CLOCKS,
        slo_recompute_ms: slo_recompute(SLO_CLOCKS)?,
        fanout: {
            let mut points = vec![];
            for distributed in [true, false] {
                for n in FANOUT_SIZES {
                    points.push(fanout(dir, n, distributed)?);
                }
            }
            points
        },
    })
}

/// Open SLO clocks the SLO case recomputes.
pub const SLO_CLOCKS: usize = 100_000;

/// Recompute `n` open SLO clocks (13 SLOs, mixed priorities and demo speeds) as the console
/// does every frame and the engine every second: read each at `now`, sort by time to breach,
/// and sum compliance and burn per SLO. Returns the median of five runs, in ms.
pub fn slo_recompute(n: usize) -> Result<f64, BenchError> {
    use crate::ops::slo;
    let slos = slo::check_all(&slo::demo_defaults()).map_err(|e| BenchError::Setup(e.to_string()))?;
    let now = chrono::Utc::now();
    let clocks: Vec<slo::Clock> = (0..n)
        .map(|i| {
            let s = &slos[i % slos.len()];
            slo::Clock {
                slo: s.name.clone(),
                execution_arn: crate::engine::execution_arn("bench", &format!("e{i}")),
                machine: "bench".into(),
                started: now - chrono::Duration::seconds((i % 7200) as i64),
                stopped: (i % 5 == 0).then(|| now - chrono::Duration::seconds((i % 600) as i64)),
                reached: true,
                target_ms: s.target_ms,
                at_risk: s.at_risk,
                speed: if i % 2 == 0 { 1.0 } else { 20.0 },
                state: Some("RadiologistReview".into()),
                priority: Some(["STAT", "URGENT", "ROUTINE"][i % 3].into()),
                accession: None,
                stage: None,
            }
        })
        .collect();
    let mut runs = vec![];
    for _ in 0..5 {
        let t = Instant::now();
        let open = slo::open_readings(&clocks, now);
        let c = slo::compliance(&slos, &clocks, now, chrono::Duration::hours(24));
        std::hint::black_box((open.len(), c.len()));
        runs.push(t.elapsed());
    }
    runs.sort();
    Ok(runs[runs.len() / 2].as_secs_f64() * 1000.0)
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
        let env = crate::engine::core::Env::new(st.info.start_time, crate::engine::REGION);
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
        let env = crate::engine::core::Env::new(start, crate::engine::REGION);
        let step = apply(&mut st, &parsed, Input::Start, &env).map_err(EngineError::from)?;
        batch.push((st, def.clone(), step));
        if batch.len() == 5000 || i + 1 == n {
            store.insert_executions(&batch)?;
            batch.clear();
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// The console under load.

#[derive(Debug, Clone)]
pub struct ConsoleReport {
    pub executions: usize,
    pub reviews: usize,
    pub first_frame_ms: f64,
    pub first_data_frame_ms: f64,
    pub frame_p50_ms: f64,
    pub frame_p99_ms: f64,
    pub peak_rss_mb: f64,
    pub idle_cpu_percent: f64,
}

impl ConsoleReport {
    pub fn to_json(&self) -> Value {
        json!({
            "executions": self.executions,
            "pendingReviews": self.reviews,
            "firstFrameMs": self.first_frame_ms,
            "firstFrameWithDataMs": self.first_data_frame_ms,
            "frameMs": {"p50": self.frame_p50_ms, "p99": self.frame_p99_ms},
            "peakRssMb": self.peak_rss_mb,
            "idleCpuPercent": self.idle_cpu_percent,
        })
    }
}

fn proc_field(file: &str, key: &str) -> Option<f64> {
    let text = std::fs::read_to_string(file).ok()?;
    text.lines().find(|l| l.starts_with(key)).and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse().ok())
}

/// CPU seconds this process has used (user + system), from /proc.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let rest = stat.rsplit(')').next()?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// Seed `executions` studies (most finished, some failed) and `reviews` executions waiting on a review token.
pub fn seed_console(store: &mut Store, executions: usize, reviews: usize) -> Result<(), BenchError> {
    let def = crate::sim::SCHEDULED_IMAGING.to_string();
    let review_def = json!({"StartAt": "RadiologistReview", "States": {"RadiologistReview": {
        "Type": "Task", "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken",
        "Parameters": {"FunctionName": "lightbox-review-request", "Payload": {"token.$": "$$.Task.Token", "accession.$": "$.accession",
            "priority.$": "$.priority", "draft": "No acute findings."}}, "TimeoutSeconds": 86400, "End": true}}})
    .to_string();
    let ok = json!({"StartAt": "Bill", "States": {"Bill": {"Type": "Pass", "End": true}}}).to_string();
    let parsed_ok = crate::asl::model::Definition::parse_str(&ok).map_err(EngineError::from)?;
    let parsed_review = crate::asl::model::Definition::parse_str(&review_def).map_err(EngineError::from)?;
    let _ = def;
    let base = chrono::Utc::now() - chrono::Duration::hours(12);
    let mut batch = Vec::with_capacity(5000);
    for i in 0..executions + reviews {
        let waiting = i >= executions;
        let order = crate::sim::order(i as u64);
        let sm = if waiting { "review-gate" } else { "scheduled-imaging" };
        let mut st = ExecState::new(info(sm, &format!("b{i}"), order, base + chrono::Duration::milliseconds(i as i64 * 300)), i as u64);
        let env = crate::engine::core::Env::new(st.info.start_time, crate::engine::REGION);
        let (d, text) = if waiting { (&parsed_review, &review_def) } else { (&parsed_ok, &ok) };
        let mut step = apply(&mut st, d, Input::Start, &env).map_err(EngineError::from)?;
        // A review gate at rest: its request went out, its token waits for a human.
        for t in st.outstanding_tasks() {
            let more = apply(&mut st, d, Input::TaskSubmitted { task_id: t.task_id, output: json!({"queued": true}) }, &env)
                .map_err(EngineError::from)?;
            step.events.extend(more.events);
        }
        batch.push((st, text.clone(), step));
        if batch.len() == 5000 || i + 1 == executions + reviews {
            store.insert_executions(&batch)?;
            batch.clear();
        }
    }
    Ok(())
}

/// The console benchmark's store, seeded (run it in another process so its memory is not counted).
pub fn console_store(dir: &Path) -> std::path::PathBuf {
    dir.join("console.db")
}

/// Seed the console benchmark's store in `dir`.
pub fn seed_console_store(dir: &Path, executions: usize, reviews: usize) -> Result<(), BenchError> {
    std::fs::create_dir_all(dir).map_err(|e| BenchError::Setup(e.to_string()))?;
    let path = console_store(dir);
    let _ = std::fs::remove_file(&path);
    let mut s = Store::open(&path)?;
    seed_console(&mut s, executions, reviews)
}

/// Measure the console on the seeded store in `dir` (see [`seed_console_store`]).
pub fn console(dir: &Path, executions: usize, reviews: usize) -> Result<ConsoleReport, BenchError> {
    use crate::tui::app::{App, AppEvent, Settings, View};
    use crate::tui::jobs::{Job, Worker};
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;

    let path = console_store(dir);
    if !path.exists() {
        return Err(BenchError::Setup(format!("{} is not seeded", path.display())));
    }
    let render = |term: &mut Terminal<TestBackend>, app: &App| -> Result<Duration, BenchError> {
        let s = Instant::now();
        term.draw(|f| app.render(f)).map_err(|e| BenchError::Setup(e.to_string()))?;
        Ok(s.elapsed())
    };
    // First frame: from opening the store to the first frame, then to the first frame with data.
    let t0 = Instant::now();
    let store = Store::open(&path)?;
    let local = crate::backend::local::Local::new(Engine::new(store, TaskRunner::new(), Clock::Real), dir.to_path_buf());
    let worker = Worker::spawn(
        Box::new(local),
        crate::sim::stage_map(),
        Box::new(|_: &crate::tui::app::Mutation, _: &str, _: &Result<(), String>| {}),
        Duration::from_millis(250),
    );
    let mut app = App::new(
        Settings { demo: false, ..Settings::default() },
        crate::tui::keymap::Keymap::default(),
        crate::tui::theme::Theme::dark(),
        chrono::Utc::now(),
    );
    let mut term = Terminal::new(TestBackend::new(160, 48)).map_err(|e| BenchError::Setup(e.to_string()))?;
    for e in app.handle(AppEvent::Tick(chrono::Utc::now())) {
        if let crate::tui::app::Effect::Load(r) = e {
            worker.send(Job::Load(r));
        }
    }
    render(&mut term, &app)?;
    let first_frame_ms = t0.elapsed().as_secs_f64() * 1000.0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while app.studies.loaded_at.is_none() && Instant::now() < deadline {
        if let Ok((l, at, _)) = worker.rx.recv_timeout(Duration::from_millis(50)) {
            app.handle(AppEvent::Loaded(l, at));
        }
    }
    render(&mut term, &app)?;
    let first_data_frame_ms = t0.elapsed().as_secs_f64() * 1000.0;
    // Load every view's data, then time frames across views.
    for r in [crate::tui::app::Request::Reviews, crate::tui::app::Request::Executions(None, false), crate::tui::app::Request::Events(None)]
    {
        worker.send(Job::Load(r));
    }
    // (Loads may bring more than one result: the definitions behind reviews come with them.)
    while [app.reviews.loaded_at, app.executions.loaded_at, app.events.loaded_at].iter().any(Option::is_none) && Instant::now() < deadline {
        if let Ok((l, at, _)) = worker.rx.recv_timeout(Duration::from_millis(100)) {
            app.handle(AppEvent::Loaded(l, at));
        }
    }
    if app.reviews.value.len() < reviews {
        return Err(BenchError::Setup(format!("only {} reviews loaded", app.reviews.value.len())));
    }
    let mut frames = vec![];
    for v in [View::Pipelines, View::Reviews, View::Executions, View::Events] {
        app.view = v;
        for i in 0..100 {
            app.sel[v.index()] = i * 37;
            frames.push(render(&mut term, &app)?);
        }
    }
    frames.sort();
    // Idle: the console loop as it runs in a terminal, nothing happening, for a few seconds.
    let idle_for = Duration::from_secs(6);
    let cpu0 = cpu_seconds().unwrap_or(0.0);
    let w0 = Instant::now();
    let mut last_second = 0;
    while w0.elapsed() < idle_for {
        std::thread::sleep(Duration::from_millis(200));
        let mut dirty = false;
        for e in app.handle(AppEvent::Tick(chrono::Utc::now())) {
            if let crate::tui::app::Effect::Load(r) = e {
                worker.send(Job::Load(r));
            }
        }
        while let Ok((l, at, _)) = worker.rx.try_recv() {
            app.handle(AppEvent::Loaded(l, at));
            dirty = true;
        }
        // As the terminal loop does: draw when something changed or the clock ticked.
        let second = chrono::Utc::now().timestamp();
        if dirty || second != last_second {
            last_second = second;
            render(&mut term, &app)?;
        }
    }
    let idle_cpu_percent = (cpu_seconds().unwrap_or(0.0) - cpu0) / w0.elapsed().as_secs_f64() * 100.0;
    let peak_rss_mb = proc_field("/proc/self/status", "VmHWM:").unwrap_or(0.0) / 1024.0;
    drop(worker);
    Ok(ConsoleReport {
        executions,
        reviews,
        first_frame_ms,
        first_data_frame_ms,
        frame_p50_ms: percentile(&frames, 0.5),
        frame_p99_ms: percentile(&frames, 0.99),
        peak_rss_mb,
        idle_cpu_percent,
    })
}

// ----- outbox relay -----------------------------------------------------------------

/// Outbox relay throughput: events delivered per second to an NDJSON file (fsync per mark batch)
/// and to a loopback webhook (one POST per event, a keep-alive connection).
#[derive(Debug, Clone)]
pub struct RelayReport {
    pub events: usize,
    pub ndjson_per_second: f64,
    /// `None` in a build without the `bench-stub` feature (no loopback webhook to post to).
    pub webhook_per_second: Option<f64>,
}

impl RelayReport {
    pub fn to_json(&self) -> Value {
        json!({"events": self.events, "ndjsonEventsPerSecond": self.ndjson_per_second, "webhookEventsPerSecond": self.webhook_per_second})
    }
}

fn relay_case(dir: &Path, name: &str, events: usize, sink_toml: &str) -> Result<f64, BenchError> {
    let db = dir.join(format!("relay-{name}.db"));
    let _ = std::fs::remove_file(&db);
    let store = Store::open(&db)?;
    let at = chrono::Utc::now();
    {
        let tx = store.conn().unchecked_transaction().map_err(StoreError::from)?;
        for i in 0..events {
            let stream = format!("arn:aws:states:us-east-1:000000000000:execution:bench:e{}", i % 100);
            crate::store::emit_event_with(&tx, &stream, &format!("bench-{i}"), "Bench Event", at, &[], json!({"n": i}))?;
        }
        tx.commit().map_err(StoreError::from)?;
    }
    let cfg: crate::outbox::OutboxConfig =
        toml::from_str(&format!("[[sinks]]\nname = \"{name}\"\n{sink_toml}\n")).map_err(|e| BenchError::Setup(e.to_string()))?;
    let sinks = cfg.sinks(dir).map_err(|e| BenchError::Setup(e.to_string()))?;
    crate::outbox::ensure(store.conn(), &sinks).map_err(|e| BenchError::Setup(e.to_string()))?;
    let mut publishers: Vec<Box<dyn crate::outbox::Publisher>> = sinks.iter().map(crate::outbox::sink::publisher).collect();
    let start = Instant::now();
    let mut delivered = 0;
    while delivered < events {
        let r = crate::outbox::relay_once(store.conn(), &sinks, &mut publishers).map_err(|e| BenchError::Setup(e.to_string()))?;
        if r.delivered == 0 {
            return Err(BenchError::Setup(format!("the {name} relay stalled after {delivered} events ({} failed)", r.failed)));
        }
        delivered += r.delivered;
    }
    Ok(events as f64 / start.elapsed().as_secs_f64().max(1e-9))
}

pub fn relay(dir: &Path, events: usize) -> Result<RelayReport, BenchError> {
    std::fs::create_dir_all(dir).map_err(|e| BenchError::Setup(e.to_string()))?;
    let ndjson = relay_case(dir, "ndjson", events, "kind = \"ndjson\"\npath = \"relay-bench.ndjson\"")?;
    #[cfg(feature = "bench-stub")]
    let webhook = {
        let url = webhook::loopback_webhook()?;
        Some(relay_case(dir, "webhook", events, &format!("kind = \"webhook\"\nurl = \"{url}\""))?)
    };
    #[cfg(not(feature = "bench-stub"))]
    let webhook = None;
    Ok(RelayReport { events, ndjson_per_second: ndjson, webhook_per_second: webhook })
}
