//! The embedded engine as a control plane.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use rusqlite::OptionalExtension;

use super::{Acting, ControlPlane, ExecutionFilter, ExecutionRow, FeedEvent, Pulse, Result, TokenRow};
use crate::asl::model::Definition;
use crate::engine::Engine;
use crate::history::{ExecutionStatus, HistoryEvent};
use crate::store::StoreError;

/// Something that drives the embedded engine on every tick (the demo hospital's workload).
pub type Driver = Box<dyn FnMut(&mut Engine) + Send>;

pub struct Local {
    pub engine: Engine,
    pub data_dir: PathBuf,
    driver: Option<Driver>,
    /// Parsed definitions by their hash in the store.
    defs: HashMap<String, Arc<Definition>>,
    /// The definition hash of each execution seen.
    def_of: HashMap<String, String>,
}

impl Local {
    pub fn new(engine: Engine, data_dir: PathBuf) -> Local {
        Local { engine, data_dir, driver: None, defs: HashMap::new(), def_of: HashMap::new() }
    }

    pub fn with_driver(mut self, driver: Driver) -> Local {
        self.driver = Some(driver);
        self
    }
}

impl Local {
    /// The state an execution last entered before event `id` (for feed rows that do not name it).
    fn state_before(&self, arn: &str, id: i64) -> Result<Option<String>> {
        let details: Option<Option<String>> = self
            .engine
            .store
            .conn()
            .prepare_cached(
                "SELECT details FROM history WHERE execution_arn = ?1 AND id < ?2 AND type LIKE '%StateEntered' ORDER BY id DESC LIMIT 1",
            )
            .and_then(|mut q| q.query_row(rusqlite::params![arn, id], |r| r.get(0)).optional())
            .map_err(StoreError::from)?;
        Ok(details
            .flatten()
            .and_then(|d| serde_json::from_str::<serde_json::Value>(&d).ok())
            .and_then(|d| d.get("name").and_then(serde_json::Value::as_str).map(str::to_string)))
    }
}

impl ControlPlane for Local {
    fn name(&self) -> String {
        "local".into()
    }

    fn location(&self) -> String {
        self.data_dir.display().to_string()
    }

    fn pulse(&mut self) -> Result<Pulse> {
        let mut p = Pulse::default();
        for (status, n) in self.engine.store.count_executions()? {
            if let Some(s) = ExecutionStatus::parse(&status) {
                p.add_status(s, n.max(0) as u64);
            }
        }
        let pending: i64 = self
            .engine
            .store
            .conn()
            .query_row("SELECT COUNT(*) FROM task_tokens WHERE status = 'PENDING'", [], |r| r.get(0))
            .map_err(StoreError::from)?;
        p.pending_reviews = pending.max(0) as u64;
        Ok(p)
    }

    fn executions(&mut self, filter: &ExecutionFilter) -> Result<Vec<ExecutionRow>> {
        Ok(self.engine.store.executions(filter)?)
    }

    fn execution(&mut self, arn: &str) -> Result<Option<ExecutionRow>> {
        Ok(self.engine.store.execution(arn)?)
    }

    fn definition_of(&mut self, arn: &str) -> Result<Option<String>> {
        Ok(self.engine.store.load(arn)?.map(|l| l.definition))
    }

    fn history(&mut self, arn: &str, after_id: i64, limit: usize) -> Result<Vec<HistoryEvent>> {
        Ok(self.engine.store.history(arn, after_id, limit, false)?)
    }

    fn pending_tasks(&mut self, limit: usize) -> Result<Vec<TokenRow>> {
        Ok(self.engine.store.tokens(Some("PENDING"), None, limit)?)
    }

    fn tasks_of(&mut self, arn: &str) -> Result<Vec<TokenRow>> {
        Ok(self.engine.store.tokens(None, Some(arn), 1000)?)
    }

    fn events_after(&mut self, after: Option<i64>, limit: usize) -> Result<Vec<FeedEvent>> {
        // The outbox holds exactly the events other systems see, in commit order.
        let rows = match after {
            Some(a) => self.engine.store.outbox_after(a, limit)?,
            None => {
                let mut latest = self.engine.store.outbox_latest(limit)?;
                latest.reverse();
                latest
            }
        };
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let Some(payload) = serde_json::from_str::<serde_json::Value>(&r.payload).ok() else { continue };
            let Some(event) = payload.get("event").and_then(HistoryEvent::from_aws_json) else { continue };
            let mut state = payload.get("stateName").and_then(serde_json::Value::as_str).map(str::to_string);
            if state.is_none() && event.state_name().is_none() {
                // Written before the feed recorded states: the state last entered before it.
                state = self.state_before(&r.execution_arn, event.id)?;
            }
            out.push(FeedEvent { seq: r.id, execution_arn: r.execution_arn, event, state });
        }
        Ok(out)
    }

    fn find(&mut self, needle: &str) -> Result<Option<String>> {
        Ok(self.engine.store.find_execution(needle)?)
    }

    fn definitions_of(&mut self, arns: &[String]) -> Result<HashMap<String, Arc<Definition>>> {
        let mut out = HashMap::new();
        for a in arns {
            // An execution's definition never changes: remember which one it runs.
            let hash = match self.def_of.get(a) {
                Some(h) => Some(h.clone()),
                None => self
                    .engine
                    .store
                    .conn()
                    .prepare_cached("SELECT definition_hash FROM executions WHERE arn = ?1")
                    .and_then(|mut q| q.query_row([a], |r| r.get::<_, String>(0)).optional())
                    .map_err(StoreError::from)?,
            };
            let Some(hash) = hash else { continue };
            if self.def_of.len() > 100_000 {
                self.def_of.clear();
            }
            self.def_of.insert(a.clone(), hash.clone());
            if !self.defs.contains_key(&hash) {
                let text: Option<String> = self
                    .engine
                    .store
                    .conn()
                    .prepare_cached("SELECT definition FROM definitions WHERE hash = ?1")
                    .and_then(|mut q| q.query_row([&hash], |r| r.get(0)).optional())
                    .map_err(StoreError::from)?;
                let Some(d) = text.and_then(|t| Definition::parse_str(&t).ok()) else { continue };
                if self.defs.len() > 256 {
                    self.defs.clear();
                }
                self.defs.insert(hash.clone(), Arc::new(d));
            }
            if let Some(d) = self.defs.get(&hash) {
                out.insert(a.clone(), d.clone());
            }
        }
        Ok(out)
    }

    fn approve(&mut self, token: &str, output: &str, acting: &Acting) -> Result<()> {
        self.engine.send_task_success_as(token, output, acting)?;
        Ok(())
    }

    fn reject(&mut self, token: &str, error: &str, cause: &str, acting: &Acting) -> Result<()> {
        self.engine.send_task_failure_as(token, Some(error), Some(cause), acting)?;
        Ok(())
    }

    fn claim(&mut self, token: &str, by: &str) -> Result<()> {
        self.engine.claim_task(token, by)?;
        Ok(())
    }

    fn unclaim(&mut self, token: &str, by: &str) -> Result<()> {
        self.engine.unclaim_task(token, by)?;
        Ok(())
    }

    fn escalate(&mut self, token: &str, cause: &str, acting: &Acting) -> Result<()> {
        self.engine.escalate_task_as(token, cause, acting)?;
        Ok(())
    }

    fn redrive(&mut self, arn: &str) -> Result<()> {
        self.engine.redrive_execution(arn)?;
        Ok(())
    }

    fn stop(&mut self, arn: &str, error: &str, cause: &str) -> Result<()> {
        self.engine.stop_execution(arn, Some(error.to_string()), Some(cause.to_string()))?;
        Ok(())
    }

    /// Never dies: a panic in the driver or the engine is logged (and, inside the engine,
    /// fails only the execution it came from); the next tick runs as usual.
    fn tick(&mut self) -> Result<usize> {
        if self.engine.store.is_read_only() {
            // A store this process may not write: show it, run nothing.
            return Ok(0);
        }
        use std::panic::{AssertUnwindSafe, catch_unwind};
        if let Some(d) = self.driver.as_mut() {
            let engine = &mut self.engine;
            if catch_unwind(AssertUnwindSafe(|| d(engine))).is_err() {
                tracing::error!("the engine driver panicked; the tick goes on");
            }
        }
        match catch_unwind(AssertUnwindSafe(|| self.engine.run_due(256))) {
            Ok(r) => Ok(r?),
            Err(_) => {
                tracing::error!("the engine panicked outside any one execution; the tick goes on");
                Err(crate::engine::EngineError::Internal("the engine panicked during a tick; see the log".into()).into())
            }
        }
    }
}
