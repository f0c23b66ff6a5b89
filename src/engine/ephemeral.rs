//! `lightbox run`: one execution from start to finish on an in-memory store,
//! on a virtual clock (waits, retries and timeouts take no time) or the wall clock.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::tasks::{Mocks, TaskRunner};
use super::{Clock, Engine, EngineError};
use crate::history::ExecutionStatus;
use crate::store::Store;

#[derive(Debug, Clone)]
pub struct RunOptions {
    pub virtual_time: bool,
    pub history: bool,
    pub mocks: Option<Mocks>,
    pub state_machine_name: String,
    pub execution_name: String,
    /// Virtual start instant (the virtual clock starts here).
    pub start: DateTime<Utc>,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            virtual_time: true,
            history: false,
            mocks: None,
            state_machine_name: "LocalTesting".into(),
            execution_name: "local-run".into(),
            start: Utc::now(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(
        "the execution is waiting for {0} task token(s) that nothing in an ephemeral run can complete; use `executions start` and `tasks approve`, or mock the state with --mock-config"
    )]
    Stuck(usize),
}

/// Run a definition to a terminal status; returns the JSON `lightbox run` prints.
pub fn run(definition: &str, input: &str, opts: RunOptions) -> Result<Value, RunError> {
    let store = Store::in_memory().map_err(EngineError::from)?;
    let mut tasks = TaskRunner::new();
    if let Some(m) = opts.mocks.clone() {
        tasks = tasks.with_mocks(m);
    }
    let clock = if opts.virtual_time { Clock::virtual_at(opts.start) } else { Clock::Real };
    let mut engine = Engine::new(store, tasks, clock);
    let sm = engine.create_state_machine(&opts.state_machine_name, definition, None)?;
    let row = engine.start_execution(&sm.arn, Some(&opts.execution_name), input)?;
    let arn = row.arn;
    loop {
        let row =
            engine.store.execution(&arn).map_err(EngineError::from)?.ok_or_else(|| EngineError::ExecutionDoesNotExist(arn.clone()))?;
        if row.status != ExecutionStatus::Running {
            let mut out = json!({"status": row.status.as_str()});
            let o = out.as_object_mut().ok_or(RunError::Stuck(0))?;
            if let Some(output) = &row.output {
                o.insert("output".into(), serde_json::from_str(output).unwrap_or(Value::Null));
            }
            if let Some(e) = &row.error {
                o.insert("error".into(), Value::String(e.clone()));
            }
            if let Some(c) = &row.cause {
                o.insert("cause".into(), Value::String(c.clone()));
            }
            if opts.history {
                let events = engine.store.history(&arn, 0, usize::MAX >> 1, false).map_err(EngineError::from)?;
                o.insert("events".into(), Value::Array(events.iter().map(|e| e.to_aws_json()).collect()));
            }
            return Ok(out);
        }
        if engine.run_due(64)? > 0 {
            continue;
        }
        match engine.store.next_timer().map_err(EngineError::from)? {
            Some(t) if opts.virtual_time => engine.clock.advance_to(t),
            Some(t) => {
                let wait = (t - Utc::now()).to_std().unwrap_or_default();
                std::thread::sleep(wait.min(std::time::Duration::from_secs(1)));
            }
            None => {
                let pending = engine.store.tokens(Some("PENDING"), Some(&arn), 1000).map_err(EngineError::from)?.len();
                return Err(RunError::Stuck(pending));
            }
        }
    }
}
