//! One control plane used from two places on the same thread: the console's job thread acts
//! through it, and the audit hook asks it (between actions) for what the audit record names —
//! the execution a token belongs to and an execution's status after the action — so the audit
//! record says the same on every backend. Each call holds the lock for that call only.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use super::{
    Acting, ControlPlane, DependencyOp, ExecutionFilter, ExecutionSummary, FeedEvent, Found, OutboxSnapshot, PendingTask, Pulse, Result,
    StatusNow,
};
use crate::asl::model::Definition;
use crate::history::HistoryEvent;

/// A handle on one control plane; clones share it.
#[derive(Clone)]
pub struct Shared(Arc<Mutex<Box<dyn ControlPlane>>>);

impl Shared {
    pub fn new(cp: Box<dyn ControlPlane>) -> Shared {
        Shared(Arc::new(Mutex::new(cp)))
    }

    /// The control plane, locked. A panic elsewhere while it was held leaves it as it was:
    /// every call on it is a whole request, so it is used on.
    fn get(&self) -> MutexGuard<'_, Box<dyn ControlPlane>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The execution an audited action's target names: the target itself when it is an ARN,
    /// else the execution of the task token.
    pub fn execution_of(&self, target: &str) -> Option<String> {
        if target.starts_with("arn:") {
            return Some(target.to_string());
        }
        match self.get().task_execution(target) {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "the execution of a task token could not be looked up for the audit log");
                None
            }
        }
    }

    /// An execution's status after an action, as the backend can vouch for it now (for the
    /// audit record's `after`: on AWS read afresh, with when).
    pub fn status_after(&self, arn: &str) -> Option<StatusNow> {
        match self.get().status_now(arn) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "an execution's status could not be looked up for the audit log");
                None
            }
        }
    }
}

impl ControlPlane for Shared {
    fn name(&self) -> String {
        self.get().name()
    }
    fn location(&self) -> String {
        self.get().location()
    }
    fn pulse(&mut self) -> Result<Pulse> {
        self.get().pulse()
    }
    fn executions(&mut self, filter: &ExecutionFilter) -> Result<Vec<ExecutionSummary>> {
        self.get().executions(filter)
    }
    fn execution(&mut self, arn: &str) -> Result<Option<ExecutionSummary>> {
        self.get().execution(arn)
    }
    fn status_now(&mut self, arn: &str) -> Result<Option<StatusNow>> {
        self.get().status_now(arn)
    }
    fn definition_of(&mut self, arn: &str) -> Result<Option<String>> {
        self.get().definition_of(arn)
    }
    fn history(&mut self, arn: &str, after_id: i64, limit: usize) -> Result<Vec<HistoryEvent>> {
        self.get().history(arn, after_id, limit)
    }
    fn pending_tasks(&mut self, limit: usize) -> Result<Vec<PendingTask>> {
        self.get().pending_tasks(limit)
    }
    fn tasks_of(&mut self, arn: &str) -> Result<Vec<PendingTask>> {
        self.get().tasks_of(arn)
    }
    fn task_execution(&mut self, token: &str) -> Result<Option<String>> {
        self.get().task_execution(token)
    }
    fn find(&mut self, needle: &str) -> Result<Vec<Found>> {
        self.get().find(needle)
    }
    fn audit_log(&mut self, limit: usize) -> Result<Vec<crate::audit::AuditRecord>> {
        self.get().audit_log(limit)
    }
    fn events_after(&mut self, after: Option<i64>, limit: usize) -> Result<Vec<FeedEvent>> {
        self.get().events_after(after, limit)
    }
    fn definitions_of(&mut self, arns: &[String]) -> Result<HashMap<String, Arc<Definition>>> {
        self.get().definitions_of(arns)
    }
    fn approve(&mut self, token: &str, output: &str, acting: &Acting) -> Result<()> {
        self.get().approve(token, output, acting)
    }
    fn reject(&mut self, token: &str, error: &str, cause: &str, acting: &Acting) -> Result<()> {
        self.get().reject(token, error, cause, acting)
    }
    fn claim(&mut self, token: &str, by: &str) -> Result<()> {
        self.get().claim(token, by)
    }
    fn unclaim(&mut self, token: &str, by: &str) -> Result<()> {
        self.get().unclaim(token, by)
    }
    fn escalate(&mut self, token: &str, cause: &str, acting: &Acting) -> Result<()> {
        self.get().escalate(token, cause, acting)
    }
    fn heartbeat(&mut self, token: &str) -> Result<()> {
        self.get().heartbeat(token)
    }
    fn redrive(&mut self, arn: &str) -> Result<()> {
        self.get().redrive(arn)
    }
    fn stop(&mut self, arn: &str, error: &str, cause: &str) -> Result<()> {
        self.get().stop(arn, error, cause)
    }
    fn compensation_plan(&mut self, arn: &str) -> Result<crate::ops::compensation::Outcome> {
        self.get().compensation_plan(arn)
    }
    fn compensate(&mut self, arn: &str, reason: &str) -> Result<String> {
        self.get().compensate(arn, reason)
    }
    fn compensation_info(&mut self, arn: &str) -> Result<crate::ops::compensation::Info> {
        self.get().compensation_info(arn)
    }
    fn tick(&mut self) -> Result<usize> {
        self.get().tick()
    }
    fn outbox(&mut self, rows_per_sink: usize) -> Result<OutboxSnapshot> {
        self.get().outbox(rows_per_sink)
    }
    fn outbox_act(&mut self, action: &crate::outbox::Action) -> Result<String> {
        self.get().outbox_act(action)
    }
    fn dependencies(&mut self) -> Result<Vec<crate::engine::dependencies::DependencyStatus>> {
        self.get().dependencies()
    }
    fn dependency_act(&mut self, op: DependencyOp, name: &str, reason: &str, actor: &str) -> Result<String> {
        self.get().dependency_act(op, name, reason, actor)
    }
}
