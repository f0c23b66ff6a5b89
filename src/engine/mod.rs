//! The embedded, durable ASL engine: a pure core ([`core`]) and the shell
//! around it (this module) that loads an execution under a lease, applies one
//! input, commits the step, and only then runs the step's effects.

pub mod core;
pub mod ephemeral;
pub mod eval;
pub mod tasks;
pub mod test_state;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Utc};
use serde_json::Value;

use self::core::{ApplyError, Env, ExecInfo, ExecState, Input, TaskError, apply};
use self::tasks::{TaskOutcome, TaskRunner};
use crate::asl::model::{Definition, DefinitionError};
use crate::history::ExecutionStatus;
use crate::store::{ExecutionRow, StateMachineRow, Store, StoreError, TokenRow};

pub const REGION: &str = "us-east-1";
pub const ACCOUNT: &str = "000000000000";
pub const DEFAULT_ROLE: &str = "arn:aws:iam::000000000000:role/lightbox-local";
const LEASE_MS: i64 = 30_000;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("invalid definition: {0}")]
    Definition(#[from] DefinitionError),
    #[error("StateMachineDoesNotExist: State Machine Does Not Exist: '{0}'")]
    StateMachineDoesNotExist(String),
    #[error("StateMachineAlreadyExists: State Machine Already Exists: '{0}'")]
    StateMachineAlreadyExists(String),
    #[error("ExecutionDoesNotExist: Execution Does Not Exist: '{0}'")]
    ExecutionDoesNotExist(String),
    #[error("ExecutionAlreadyExists: Execution Already Exists: '{0}'")]
    ExecutionAlreadyExists(String),
    #[error("InvalidName: {0}")]
    InvalidName(String),
    #[error("InvalidExecutionInput: {0}")]
    InvalidInput(String),
    #[error("InvalidOutput: {0}")]
    InvalidOutput(String),
    #[error("InvalidToken: Invalid Token: '{0}'")]
    InvalidToken(String),
    #[error("TaskDoesNotExist: Task Token does not exist: '{0}'")]
    TaskDoesNotExist(String),
    #[error("TaskTimedOut: Task Timed Out: 'Provided task does not exist anymore' (token {token} is {status})")]
    TaskTimedOut { token: String, status: String },
    #[error("TaskClaimed: the task is claimed by {0}")]
    Claimed(String),
    #[error("ExecutionNotRedrivable: {0}")]
    NotRedrivable(String),
    #[error("{0}")]
    Apply(#[from] ApplyError),
    #[error("execution {0} is busy in another process (its lease did not free up in time)")]
    Busy(String),
}

pub type Result<T> = std::result::Result<T, EngineError>;

/// Where "now" comes from: the wall clock, or a virtual clock that jumps to the next timer.
#[derive(Clone)]
pub enum Clock {
    Real,
    Virtual(Arc<Mutex<DateTime<Utc>>>),
}

impl Clock {
    pub fn virtual_at(t: DateTime<Utc>) -> Clock {
        Clock::Virtual(Arc::new(Mutex::new(t)))
    }
    /// Millisecond precision: the store keeps times in milliseconds, and timers must compare equal.
    pub fn now(&self) -> DateTime<Utc> {
        let t = match self {
            Clock::Real => Utc::now(),
            Clock::Virtual(t) => t.lock().map(|g| *g).unwrap_or_else(|p| *p.into_inner()),
        };
        crate::store::from_ms(t.timestamp_millis())
    }
    pub fn advance_to(&self, to: DateTime<Utc>) {
        if let Clock::Virtual(t) = self {
            let mut g = t.lock().unwrap_or_else(|p| p.into_inner());
            if to > *g {
                *g = to;
            }
        }
    }
    pub fn is_virtual(&self) -> bool {
        matches!(self, Clock::Virtual(_))
    }
}

pub fn state_machine_arn(name: &str) -> String {
    format!("arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:{name}")
}

pub fn execution_arn(sm_name: &str, name: &str) -> String {
    format!("arn:aws:states:{REGION}:{ACCOUNT}:execution:{sm_name}:{name}")
}

/// Names of state machines and executions: 1–80 characters, no whitespace, brackets, wildcards or control characters.
pub fn check_name(kind: &str, name: &str) -> Result<()> {
    let bad = name.chars().find(|c| c.is_whitespace() || c.is_control() || "<>{}[]?*\"#%\\^|~`$&,;:/".contains(*c));
    if name.is_empty() || name.chars().count() > 80 {
        return Err(EngineError::InvalidName(format!("{kind} name {name:?} must be 1 to 80 characters long")));
    }
    if let Some(c) = bad {
        return Err(EngineError::InvalidName(format!("{kind} name {name:?} contains the character {c:?}, which is not allowed")));
    }
    Ok(())
}

pub struct Engine {
    pub store: Store,
    pub tasks: TaskRunner,
    pub clock: Clock,
    owner: String,
    defs: HashMap<String, Arc<Definition>>,
    seed: u64,
}

impl Engine {
    pub fn new(store: Store, tasks: TaskRunner, clock: Clock) -> Engine {
        let owner = format!("{}-{}", std::process::id(), uuid::Uuid::new_v4().simple());
        let seed = uuid::Uuid::new_v4().as_u64_pair().0;
        Engine { store, tasks, clock, owner, defs: HashMap::new(), seed }
    }

    fn env(&self) -> Env {
        Env { now: self.clock.now(), region: REGION }
    }

    fn definition(&mut self, text: &str) -> Result<Arc<Definition>> {
        if let Some(d) = self.defs.get(text) {
            return Ok(d.clone());
        }
        let d = Arc::new(Definition::parse_str(text)?);
        if self.defs.len() > 256 {
            self.defs.clear();
        }
        self.defs.insert(text.to_string(), d.clone());
        Ok(d)
    }

    fn next_seed(&mut self) -> u64 {
        eval::next_random(&mut self.seed)
    }

    // ----- state machines ---------------------------------------------------

    /// CreateStateMachine. As on AWS, the same name with the same definition and role
    /// returns the existing state machine; a different one is `StateMachineAlreadyExists`.
    pub fn create_state_machine(&mut self, name: &str, definition: &str, role_arn: Option<&str>) -> Result<StateMachineRow> {
        check_name("state machine", name)?;
        self.definition(definition)?;
        let role = role_arn.unwrap_or(DEFAULT_ROLE);
        if let Some(existing) = self.store.state_machine(&state_machine_arn(name))? {
            if existing.definition == definition && existing.role_arn == role {
                return Ok(existing);
            }
            return Err(EngineError::StateMachineAlreadyExists(existing.arn));
        }
        self.put_state_machine(name, definition, role_arn)
    }

    /// Create a state machine, or replace its definition and role (UpdateStateMachine):
    /// for definitions Lightbox itself ships, such as the demo's.
    pub fn put_state_machine(&mut self, name: &str, definition: &str, role_arn: Option<&str>) -> Result<StateMachineRow> {
        check_name("state machine", name)?;
        self.definition(definition)?;
        let row = StateMachineRow {
            arn: state_machine_arn(name),
            name: name.to_string(),
            definition: definition.to_string(),
            role_arn: role_arn.unwrap_or(DEFAULT_ROLE).to_string(),
            kind: "STANDARD".into(),
            created_at: self.clock.now(),
        };
        self.store.put_state_machine(&row)?;
        self.store.state_machine(&row.arn)?.ok_or(EngineError::StateMachineDoesNotExist(row.arn))
    }

    // ----- executions -------------------------------------------------------

    /// Start an execution and drive it until it first waits.
    pub fn start_execution(&mut self, state_machine: &str, name: Option<&str>, input: &str) -> Result<ExecutionRow> {
        let sm =
            self.store.state_machine(state_machine)?.ok_or_else(|| EngineError::StateMachineDoesNotExist(state_machine.to_string()))?;
        let input: Value = serde_json::from_str(input).map_err(|e| EngineError::InvalidInput(format!("input is not valid JSON: {e}")))?;
        if eval::to_json(&input).len() > core::PAYLOAD_LIMIT {
            return Err(EngineError::InvalidInput("input is larger than 256 KiB".into()));
        }
        let name = match name {
            Some(n) => n.to_string(),
            None => uuid::Uuid::from_u64_pair(self.next_seed(), self.next_seed()).to_string(),
        };
        check_name("execution", &name)?;
        let def = self.definition(&sm.definition)?;
        let arn = execution_arn(&sm.name, &name);
        let info = ExecInfo {
            execution_arn: arn.clone(),
            name,
            state_machine_arn: sm.arn.clone(),
            state_machine_name: sm.name.clone(),
            role_arn: sm.role_arn.clone(),
            start_time: self.clock.now(),
            input,
            redrive_count: 0,
            redrive_time: None,
        };
        let mut st = ExecState::new(info, self.next_seed());
        let step = apply(&mut st, &def, Input::Start, &self.env())?;
        if !self.store.insert_execution(&st, &sm.definition, &step)? {
            // The name is taken (by an earlier start, or another process just now).
            let existing = self.store.execution(&arn)?.ok_or_else(|| EngineError::ExecutionAlreadyExists(arn.clone()))?;
            return Self::same_start(existing, &st.info.input);
        }
        self.drive(&arn)?;
        self.store.execution(&arn)?.ok_or(EngineError::ExecutionDoesNotExist(arn))
    }

    /// StartExecution with the name of an existing execution: as on AWS for Standard
    /// workflows, the same input while it runs returns it; otherwise `ExecutionAlreadyExists`.
    fn same_start(existing: ExecutionRow, input: &Value) -> Result<ExecutionRow> {
        let same_input = serde_json::from_str::<Value>(&existing.input).is_ok_and(|v| &v == input);
        if existing.status == ExecutionStatus::Running && same_input {
            Ok(existing)
        } else {
            Err(EngineError::ExecutionAlreadyExists(existing.arn))
        }
    }

    /// Work on one execution until it waits for something outside (a token, a timer, another process).
    pub fn drive(&mut self, arn: &str) -> Result<()> {
        if !self.store.acquire_lease(arn, &self.owner, self.clock.now(), LEASE_MS)? {
            return Ok(());
        }
        let r = self.drive_leased(arn);
        self.store.release_lease(arn, &self.owner)?;
        r
    }

    fn drive_leased(&mut self, arn: &str) -> Result<()> {
        let Some(loaded) = self.store.load(arn)? else { return Err(EngineError::ExecutionDoesNotExist(arn.to_string())) };
        let def = self.definition(&loaded.definition)?;
        let mut st = loaded.state;
        let mut version = loaded.version;
        let mut lease_taken = std::time::Instant::now();
        loop {
            if st.status != ExecutionStatus::Running {
                return Ok(());
            }
            let input = if let Some(t) = st.outstanding_tasks().into_iter().next() {
                match self.tasks.run(&t) {
                    TaskOutcome::Done(result) => Input::TaskResult { task_id: t.task_id, result },
                    TaskOutcome::Submitted(output) => Input::TaskSubmitted { task_id: t.task_id, output },
                }
            } else {
                match st.next_wake() {
                    Some(w) if w <= self.clock.now() => Input::Wake,
                    _ => return Ok(()),
                }
            };
            let step = apply(&mut st, &def, input, &self.env())?;
            version = self.store.commit_step(&st, version, &step)?;
            // Renew the lease only when half of it has gone by.
            if lease_taken.elapsed() > std::time::Duration::from_millis((LEASE_MS / 2) as u64) {
                self.store.acquire_lease(arn, &self.owner, self.clock.now(), LEASE_MS)?;
                lease_taken = std::time::Instant::now();
            }
        }
    }

    /// Apply an outside input to an execution under its lease, then drive it on.
    fn deliver(&mut self, arn: &str, input: Input) -> Result<()> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
        while !self.store.acquire_lease(arn, &self.owner, self.clock.now(), LEASE_MS)? {
            if std::time::Instant::now() > deadline {
                return Err(EngineError::Busy(arn.to_string()));
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let r = (|| {
            let loaded = self.store.load(arn)?.ok_or_else(|| EngineError::ExecutionDoesNotExist(arn.to_string()))?;
            let def = self.definition(&loaded.definition)?;
            let mut st = loaded.state;
            let mut version = loaded.version;
            // Deadlines that have passed win over a late answer: fire them first.
            if st.next_wake().is_some_and(|w| w <= self.clock.now()) {
                let step = apply(&mut st, &def, Input::Wake, &self.env())?;
                version = self.store.commit_step(&st, version, &step)?;
            }
            let step = apply(&mut st, &def, input, &self.env())?;
            self.store.commit_step(&st, version, &step)?;
            self.drive_leased(arn)
        })();
        self.store.release_lease(arn, &self.owner)?;
        r
    }

    pub fn stop_execution(&mut self, arn: &str, error: Option<String>, cause: Option<String>) -> Result<ExecutionRow> {
        let row = self.store.execution(arn)?.ok_or_else(|| EngineError::ExecutionDoesNotExist(arn.to_string()))?;
        if row.status != ExecutionStatus::Running {
            return Err(EngineError::Apply(ApplyError::NotRunning(arn.to_string())));
        }
        self.deliver(arn, Input::Stop { error, cause })?;
        self.store.execution(arn)?.ok_or_else(|| EngineError::ExecutionDoesNotExist(arn.to_string()))
    }

    pub fn redrive_execution(&mut self, arn: &str) -> Result<ExecutionRow> {
        self.store.execution(arn)?.ok_or_else(|| EngineError::ExecutionDoesNotExist(arn.to_string()))?;
        match self.deliver(arn, Input::Redrive) {
            Err(EngineError::Apply(ApplyError::NotRedrivable { arn, reason })) => {
                return Err(EngineError::NotRedrivable(format!("Execution '{arn}' cannot be redriven: {reason}")));
            }
            other => other?,
        }
        self.store.execution(arn)?.ok_or_else(|| EngineError::ExecutionDoesNotExist(arn.to_string()))
    }

    // ----- task tokens ------------------------------------------------------

    /// Resolve a full token, or a unique prefix of at least 8 characters.
    pub fn resolve_token(&self, token: &str) -> Result<TokenRow> {
        if token.is_empty() || token.len() > 1024 {
            return Err(EngineError::InvalidToken(token.to_string()));
        }
        if let Some(t) = self.store.token(token)? {
            return Ok(t);
        }
        if token.len() >= 8 {
            let mut found = self.store.tokens_with_prefix(token, 2)?;
            if found.len() == 1 {
                return Ok(found.remove(0));
            }
        }
        Err(EngineError::TaskDoesNotExist(token.to_string()))
    }

    fn pending_token(&self, token: &str) -> Result<TokenRow> {
        let t = self.resolve_token(token)?;
        if t.status != "PENDING" {
            return Err(EngineError::TaskTimedOut { token: short_token(&t.token), status: t.status });
        }
        Ok(t)
    }

    /// Deliver a token answer; if its deadline passed first, say so as AWS does.
    fn deliver_token(&mut self, t: &TokenRow, input: Input) -> Result<()> {
        match self.deliver(&t.execution_arn, input) {
            Err(EngineError::Apply(ApplyError::UnknownTask(_) | ApplyError::NotRunning(_))) => {
                let status = self.store.token(&t.token)?.map(|r| r.status).unwrap_or_else(|| "CLOSED".into());
                Err(EngineError::TaskTimedOut { token: short_token(&t.token), status })
            }
            other => other,
        }
    }

    pub fn send_task_success(&mut self, token: &str, output: &str) -> Result<TokenRow> {
        let output: Value =
            serde_json::from_str(output).map_err(|e| EngineError::InvalidOutput(format!("output is not valid JSON: {e}")))?;
        if eval::to_json(&output).len() > core::PAYLOAD_LIMIT {
            return Err(EngineError::InvalidOutput("output is larger than 256 KiB".into()));
        }
        let t = self.pending_token(token)?;
        self.deliver_token(&t, Input::TaskResult { task_id: t.token.clone(), result: Ok(output) })?;
        Ok(self.store.token(&t.token)?.unwrap_or(t))
    }

    pub fn send_task_failure(&mut self, token: &str, error: Option<&str>, cause: Option<&str>) -> Result<TokenRow> {
        if error.is_some_and(|e| e.len() > 256) {
            return Err(EngineError::InvalidOutput("error must be at most 256 characters".into()));
        }
        if cause.is_some_and(|c| c.len() > 32_768) {
            return Err(EngineError::InvalidOutput("cause must be at most 32768 characters".into()));
        }
        let t = self.pending_token(token)?;
        let result = Err(TaskError { error: error.unwrap_or_default().to_string(), cause: cause.unwrap_or_default().to_string() });
        self.deliver_token(&t, Input::TaskResult { task_id: t.token.clone(), result })?;
        Ok(self.store.token(&t.token)?.unwrap_or(t))
    }

    pub fn send_task_heartbeat(&mut self, token: &str) -> Result<TokenRow> {
        let t = self.pending_token(token)?;
        self.deliver_token(&t, Input::Heartbeat { token: t.token.clone() })?;
        // Heartbeats move the deadline in the snapshot; mirror it on the token row for the review queue.
        if let Some(l) = self.store.load(&t.execution_arn)? {
            let hb = l.state.threads.values().find_map(|th| match &th.phase {
                core::Phase::Task(w) if w.token.as_deref() == Some(t.token.as_str()) => w.heartbeat_at,
                _ => None,
            });
            crate::store::touch_heartbeat(&self.store, &t.token, hb)?;
        }
        Ok(self.store.token(&t.token)?.unwrap_or(t))
    }

    /// Claim a pending review for `by`; a task with a heartbeat deadline gets a heartbeat,
    /// so the claim keeps it alive.
    pub fn claim_task(&mut self, token: &str, by: &str) -> Result<TokenRow> {
        let t = self.pending_token(token)?;
        if let Some(holder) = self.store.claim_task(&t.token, by, self.clock.now())? {
            return Err(EngineError::Claimed(holder));
        }
        if t.heartbeat.is_some() {
            self.send_task_heartbeat(&t.token)?;
        }
        Ok(self.store.token(&t.token)?.unwrap_or(t))
    }

    pub fn unclaim_task(&mut self, token: &str, by: &str) -> Result<TokenRow> {
        let t = self.resolve_token(token)?;
        if let Some(holder) = self.store.unclaim_task(&t.token, by)? {
            return Err(EngineError::Claimed(holder));
        }
        Ok(self.store.token(&t.token)?.unwrap_or(t))
    }

    /// Hand a review to the senior reader: fails the task with `Review.Escalated`,
    /// which the review gates catch and route on.
    pub fn escalate_task(&mut self, token: &str, cause: &str) -> Result<TokenRow> {
        self.send_task_failure(token, Some("Review.Escalated"), Some(cause))
    }

    // ----- background work --------------------------------------------------

    /// Drive every execution with due work. Returns how many were driven.
    pub fn run_due(&mut self, limit: usize) -> Result<usize> {
        let due = self.store.due(self.clock.now(), &self.owner, limit)?;
        if due.is_empty() {
            return Ok(0);
        }
        // Claim in small batches: one transaction per batch, and a CLI command waiting
        // for one of these executions waits for at most a batch.
        let mut n = 0;
        for chunk in due.chunks(256) {
            let claimed = self.store.claim(chunk, &self.owner, self.clock.now(), LEASE_MS)?;
            for arn in &claimed {
                match self.drive_leased(arn) {
                    Ok(()) | Err(EngineError::Store(StoreError::Conflict(_))) => {}
                    Err(e) => tracing::warn!(execution = %arn, error = %e, "driving an execution failed"),
                }
            }
            self.store.release_many(&claimed, &self.owner)?;
            n += claimed.len();
        }
        Ok(n)
    }

    /// With a virtual clock: jump to the next timer. Returns false when there is none.
    pub fn advance_virtual_clock(&self) -> Result<bool> {
        if !self.clock.is_virtual() {
            return Ok(false);
        }
        match self.store.next_timer()? {
            Some(t) => {
                self.clock.advance_to(t.max(self.clock.now()));
                Ok(true)
            }
            None => Ok(false),
        }
    }

    pub fn lease_owner(&self) -> &str {
        &self.owner
    }

    pub fn lease_duration() -> Duration {
        Duration::milliseconds(LEASE_MS)
    }
}

/// A task token shortened for display and logs: never print a token in full.
pub fn short_token(t: &str) -> String {
    let head: String = t.chars().take(8).collect();
    format!("{head}…")
}
