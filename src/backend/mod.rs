//! One interface to a workflow control plane. `local` drives the embedded
//! engine; an AWS implementation will speak to Step Functions. The console and
//! the CLI twins of its actions talk only to this trait.

pub mod aws;
pub mod local;
pub mod shared;

use std::collections::HashMap;
use std::sync::Arc;

use crate::asl::model::Definition;
pub use crate::engine::Acting;
use crate::history::{ExecutionStatus, HistoryEvent};
pub use crate::model::{ExecutionFilter, ExecutionSummary, PendingTask};

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error(transparent)]
    Engine(#[from] crate::engine::EngineError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Outbox(#[from] crate::outbox::OutboxError),
    #[error(transparent)]
    Compensation(#[from] crate::ops::compensation::CompensationError),
    #[error(transparent)]
    Compensate(#[from] crate::engine::compensation::CompensateError),
    #[error(transparent)]
    Dependency(#[from] crate::engine::dependencies::DependencyError),
    #[error(transparent)]
    Aws(#[from] aws::AwsError),
}

pub type Result<T> = std::result::Result<T, BackendError>;

/// The pulse line: what needs attention right now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pulse {
    pub running: u64,
    pub failed: u64,
    pub timed_out: u64,
    pub aborted: u64,
    pub succeeded: u64,
    pub pending_reviews: u64,
    /// What is wrong with the backend, if anything (throttled, credentials expired, network
    /// lost…): the data shown is the last known. The header shows it.
    pub condition: Option<String>,
}

/// One workflow event with the execution it belongs to (the events tail): execution
/// status changes and task events, in the order they committed.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedEvent {
    /// Position in the feed: ask for events after the last one seen.
    pub seq: i64,
    pub execution_arn: String,
    pub event: HistoryEvent,
    /// The state the event happened in: task events carry no state name in their AWS
    /// details, so the feed records it beside the event (`None` for feeds written before).
    pub state: Option<String>,
    /// The EventBridge event the row holds (what the Events view's pattern filter tests).
    pub envelope: Option<serde_json::Value>,
}

impl FeedEvent {
    /// The state this event belongs to: the one the feed recorded, else the event's own `name`.
    pub fn state_name(&self) -> Option<&str> {
        self.state.as_deref().or_else(|| self.event.state_name())
    }
}

/// At most this many executions come back from [`ControlPlane::find`].
pub const FIND_LIMIT: usize = 50;

/// One execution a search found, and how a pick list names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub arn: String,
    /// Accession, order number, machine/name and status, as known.
    pub label: String,
}

pub trait ControlPlane: Send {
    /// "local" or "aws", and where (data directory, region).
    fn name(&self) -> String;
    fn location(&self) -> String;
    fn pulse(&mut self) -> Result<Pulse>;
    fn executions(&mut self, filter: &ExecutionFilter) -> Result<Vec<ExecutionSummary>>;
    fn execution(&mut self, arn: &str) -> Result<Option<ExecutionSummary>>;
    /// An execution's status as this backend can vouch for it now: what the audit record of
    /// an action says the execution was left in. The default reads [`ControlPlane::execution`],
    /// which for the embedded engine is the state the action committed; a backend that caches
    /// a remote service reads it afresh and says when ([`StatusNow::as_of`]).
    fn status_now(&mut self, arn: &str) -> Result<Option<StatusNow>> {
        Ok(self.execution(arn)?.map(|r| StatusNow { status: r.status, as_of: None, last_known: None }))
    }
    /// The definition an execution runs (for the state graph).
    fn definition_of(&mut self, arn: &str) -> Result<Option<String>>;
    fn history(&mut self, arn: &str, after_id: i64, limit: usize) -> Result<Vec<HistoryEvent>>;
    /// Pending review tokens, oldest first.
    fn pending_tasks(&mut self, limit: usize) -> Result<Vec<PendingTask>>;
    /// Every task token an execution was issued, whatever its status, oldest first (when the
    /// study entered review). Backends that cannot tell return none.
    fn tasks_of(&mut self, arn: &str) -> Result<Vec<PendingTask>> {
        let _ = arn;
        Ok(vec![])
    }
    /// The execution a task token was issued to, if this backend knows the token (for the
    /// audit record of an action on it). The default looks among the pending tasks.
    fn task_execution(&mut self, token: &str) -> Result<Option<String>> {
        Ok(self.pending_tasks(10_000)?.into_iter().find(|t| t.token == token).map(|t| t.execution_arn))
    }
    /// Executions whose accession, order number, name or ARN contains `needle` (any letter
    /// case), exact matches first, then the newest; at most [`FIND_LIMIT`]. Patient fields are
    /// never searched here: a revealed study's MRN is matched by the console itself.
    fn find(&mut self, needle: &str) -> Result<Vec<Found>>;
    /// The newest audit-log rows (outcomes and open intents), newest first. A backend
    /// without an audit log of its own has none.
    fn audit_log(&mut self, _limit: usize) -> Result<Vec<crate::audit::AuditRecord>> {
        Ok(vec![])
    }
    /// Workflow events across all executions after feed position `after` (oldest first);
    /// with `None`, the latest `limit` events.
    fn events_after(&mut self, after: Option<i64>, limit: usize) -> Result<Vec<FeedEvent>>;
    /// The definitions these executions run, parsed, by execution ARN (unknown ones left out).
    fn definitions_of(&mut self, arns: &[String]) -> Result<HashMap<String, Arc<Definition>>> {
        let mut out = HashMap::new();
        for a in arns {
            if let Some(d) = self.definition_of(a)?.and_then(|t| Definition::parse_str(&t).ok()) {
                out.insert(a.clone(), Arc::new(d));
            }
        }
        Ok(out)
    }
    /// Answers are given by `acting`: a review someone else claimed is refused unless
    /// `acting` overrides the claim with a reason.
    fn approve(&mut self, token: &str, output: &str, acting: &Acting) -> Result<()>;
    fn reject(&mut self, token: &str, error: &str, cause: &str, acting: &Acting) -> Result<()>;
    fn claim(&mut self, token: &str, by: &str) -> Result<()>;
    fn unclaim(&mut self, token: &str, by: &str) -> Result<()>;
    fn escalate(&mut self, token: &str, cause: &str, acting: &Acting) -> Result<()>;
    /// Tell the workflow a task is still being worked on (`SendTaskHeartbeat`).
    fn heartbeat(&mut self, token: &str) -> Result<()> {
        let _ = token;
        Err(BackendError::Refused("heartbeats are not supported by this backend".into()))
    }
    fn redrive(&mut self, arn: &str) -> Result<()>;
    fn stop(&mut self, arn: &str, error: &str, cause: &str) -> Result<()>;
    /// Compensation: the plan for a FAILED, TIMED_OUT or ABORTED execution, and the compensation
    /// that already exists, if any (nothing is started).
    fn compensation_plan(&mut self, arn: &str) -> Result<crate::ops::compensation::Outcome> {
        let _ = arn;
        Err(BackendError::Refused("compensation is not available on this backend".into()))
    }
    /// Start the compensation once (see [`crate::engine::compensation::run`]); says what happened.
    fn compensate(&mut self, arn: &str, reason: &str) -> Result<String> {
        let _ = (arn, reason);
        Err(BackendError::Refused("compensation is not available on this backend".into()))
    }
    /// The links to and from compensations, and what compensating would do.
    fn compensation_info(&mut self, arn: &str) -> Result<crate::ops::compensation::Info> {
        let _ = arn;
        Ok(Default::default())
    }
    /// Fire due timers and run due tasks (the embedded engine); a no-op for remote backends.
    fn tick(&mut self) -> Result<usize>;
    /// The outbox relay's sinks and the rows behind them (view 6).
    fn outbox(&mut self, rows_per_sink: usize) -> Result<OutboxSnapshot> {
        let _ = rows_per_sink;
        Err(BackendError::Refused("the outbox relay is not supported by this backend".into()))
    }
    /// An operator action on the relay (the caller audits it); returns what happened.
    fn outbox_act(&mut self, action: &crate::outbox::Action) -> Result<String> {
        let _ = action;
        Err(BackendError::Refused("the outbox relay is not supported by this backend".into()))
    }
    /// Every configured dependency with its breaker and hold (view 6's Dependencies table).
    fn dependencies(&mut self) -> Result<Vec<crate::engine::dependencies::DependencyStatus>> {
        Err(BackendError::Refused("dependency breakers and holds are not supported by this backend".into()))
    }
    /// Hold, release or reset dependency `name` as `actor`, for `reason`. The backend audits it
    /// exactly as its CLI twin (`lightbox dependencies hold|release|reset`): an intent row before,
    /// the outcome after. Returns what happened.
    fn dependency_act(&mut self, op: DependencyOp, name: &str, reason: &str, actor: &str) -> Result<String> {
        let _ = (op, name, reason, actor);
        Err(BackendError::Refused("dependency breakers and holds are not supported by this backend".into()))
    }
}

/// An operator's change to a dependency (`lightbox dependencies hold|release|reset`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DependencyOp {
    Hold,
    Release,
    Reset,
}

impl DependencyOp {
    /// The audit log's action name, the same as the CLI twin's.
    pub fn audit_name(self) -> &'static str {
        match self {
            DependencyOp::Hold => "dependency-hold",
            DependencyOp::Release => "dependency-release",
            DependencyOp::Reset => "dependency-reset",
        }
    }
}

/// An execution's status for the audit record after an action ([`ControlPlane::status_now`]).
#[derive(Debug, Clone, PartialEq)]
pub struct StatusNow {
    pub status: ExecutionStatus,
    /// When the remote service said so (AWS: the `DescribeExecution` answer after the action).
    /// `None`: read from the store the action itself committed to (the embedded engine).
    pub as_of: Option<chrono::DateTime<chrono::Utc>>,
    /// The status could not be read afresh (why): this is the last one known, possibly stale.
    pub last_known: Option<String>,
}

impl StatusNow {
    /// The audit record's `after`: `{"status"}`, with `asOf` when a remote service said it,
    /// or `lastKnown` (why it is not fresh).
    pub fn to_json(&self) -> serde_json::Value {
        let mut v = serde_json::json!({ "status": self.status.to_string() });
        if let Some(t) = self.as_of {
            v["asOf"] = serde_json::json!(t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
        }
        if let Some(why) = &self.last_known {
            v["lastKnown"] = serde_json::json!(why);
        }
        v
    }
}

/// The Outbox view's data: every sink's status and the rows behind each.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OutboxSnapshot {
    pub sinks: Vec<crate::outbox::SinkStatus>,
    pub rows: Vec<crate::outbox::DeliveryRow>,
}

impl Pulse {
    /// The counts by status, for [`crate::ops::Ending::count`].
    pub fn by_status(&self) -> [(ExecutionStatus, u64); 4] {
        [
            (ExecutionStatus::Failed, self.failed),
            (ExecutionStatus::TimedOut, self.timed_out),
            (ExecutionStatus::Aborted, self.aborted),
            (ExecutionStatus::Succeeded, self.succeeded),
        ]
    }

    pub fn add_status(&mut self, status: ExecutionStatus, n: u64) {
        match status {
            ExecutionStatus::Running | ExecutionStatus::PendingRedrive => self.running += n,
            ExecutionStatus::Failed => self.failed += n,
            ExecutionStatus::TimedOut => self.timed_out += n,
            ExecutionStatus::Aborted => self.aborted += n,
            ExecutionStatus::Succeeded => self.succeeded += n,
        }
    }
}
