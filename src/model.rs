//! Backend-neutral records: what every control plane (the embedded engine's store, AWS Step
//! Functions) reports about executions and pending tasks. History events are in
//! [`crate::history`]. This module depends on no backend, so `ops` projections and the console
//! read either backend through the same types.

use chrono::{DateTime, Utc};

use crate::history::ExecutionStatus;

/// One execution as a list or describe call reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecutionSummary {
    pub arn: String,
    pub state_machine_arn: String,
    pub name: String,
    pub status: ExecutionStatus,
    pub start: DateTime<Utc>,
    pub stop: Option<DateTime<Utc>>,
    pub input: String,
    pub output: Option<String>,
    pub error: Option<String>,
    pub cause: Option<String>,
    pub redrive_count: u32,
    pub redrive: Option<DateTime<Utc>>,
    /// The state the top-level workflow is in (or stopped in), and since when.
    pub current_state: Option<String>,
    pub state_since: Option<DateTime<Utc>>,
}

/// A task token an execution was issued (a callback waiting for an answer, or one answered).
#[derive(Debug, Clone, PartialEq)]
pub struct PendingTask {
    pub token: String,
    pub execution_arn: String,
    pub task_id: String,
    pub state_name: String,
    pub resource: String,
    pub parameters: String,
    pub status: String,
    pub issued: DateTime<Utc>,
    pub timeout: Option<DateTime<Utc>>,
    pub heartbeat: Option<DateTime<Utc>>,
    pub closed: Option<DateTime<Utc>>,
    /// The reviewer who claimed this task, if any.
    pub claimed_by: Option<String>,
}

impl PendingTask {
    /// A pending token known by itself alone (no queue lists it): sent as given, so the
    /// service says whether it exists.
    pub fn unknown(token: &str, issued: DateTime<Utc>) -> PendingTask {
        PendingTask {
            token: token.to_string(),
            execution_arn: String::new(),
            task_id: String::new(),
            state_name: String::new(),
            resource: String::new(),
            parameters: String::new(),
            status: "PENDING".into(),
            issued,
            timeout: None,
            heartbeat: None,
            closed: None,
            claimed_by: None,
        }
    }
}

/// Which executions a list asks for.
#[derive(Debug, Default, Clone)]
pub struct ExecutionFilter {
    pub state_machine_arn: Option<String>,
    pub status: Option<ExecutionStatus>,
    /// Only executions that were redriven at least once.
    pub redriven: bool,
    pub limit: usize,
    /// Continue after this execution (start time descending, then ARN).
    pub after: Option<(i64, String)>,
}
