//! The embedded engine as a control plane.

use std::path::PathBuf;

use super::{ControlPlane, ExecutionFilter, ExecutionRow, FeedEvent, Pulse, Result, TokenRow};
use crate::engine::Engine;
use crate::history::{ExecutionStatus, HistoryEvent};
use crate::store::StoreError;

/// Something that drives the embedded engine on every tick (the demo hospital's workload).
pub type Driver = Box<dyn FnMut(&mut Engine) + Send>;

pub struct Local {
    pub engine: Engine,
    pub data_dir: PathBuf,
    driver: Option<Driver>,
}

impl Local {
    pub fn new(engine: Engine, data_dir: PathBuf) -> Local {
        Local { engine, data_dir, driver: None }
    }

    pub fn with_driver(mut self, driver: Driver) -> Local {
        self.driver = Some(driver);
        self
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
        Ok(rows
            .into_iter()
            .filter_map(|r| {
                let payload: serde_json::Value = serde_json::from_str(&r.payload).ok()?;
                let event = HistoryEvent::from_aws_json(payload.get("event")?)?;
                Some(FeedEvent { seq: r.id, execution_arn: r.execution_arn, event })
            })
            .collect())
    }

    fn find(&mut self, needle: &str) -> Result<Option<String>> {
        Ok(self.engine.store.find_execution(needle)?)
    }

    fn approve(&mut self, token: &str, output: &str) -> Result<()> {
        self.engine.send_task_success(token, output)?;
        Ok(())
    }

    fn reject(&mut self, token: &str, error: &str, cause: &str) -> Result<()> {
        self.engine.send_task_failure(token, Some(error), Some(cause))?;
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

    fn escalate(&mut self, token: &str, cause: &str) -> Result<()> {
        self.engine.escalate_task(token, cause)?;
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

    fn tick(&mut self) -> Result<usize> {
        if self.engine.store.is_read_only() {
            // A store this process may not write: show it, run nothing.
            return Ok(0);
        }
        if let Some(d) = self.driver.as_mut() {
            d(&mut self.engine);
        }
        Ok(self.engine.run_due(256)?)
    }
}
