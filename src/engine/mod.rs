//! The embedded, durable ASL engine: a pure core ([`core`]) and the shell
//! around it (this module) that loads an execution under a lease, applies one
//! input, commits the step, and only then runs the step's effects.

pub mod compensation;
pub mod core;
pub mod dependencies;
pub mod ephemeral;
pub mod escalation;
pub mod eval;
pub mod journal;
pub mod slo_watch;
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
use crate::model::{ExecutionSummary, PendingTask};
use crate::store::{StateMachineRow, Store, StoreError};

pub const REGION: &str = "us-east-1";
pub const ACCOUNT: &str = "000000000000";
pub const DEFAULT_ROLE: &str = "arn:aws:iam::000000000000:role/lightbox-local";
const LEASE_MS: i64 = 30_000;
/// The error an escalation sends. Where it goes is up to the gate's Catch (`ops::consequence`).
pub const ESCALATED: &str = "Review.Escalated";

/// The error an execution fails with when the engine itself went wrong while working on it
/// (a panic while applying an input, or a stored state that can no longer be read). The
/// execution is failed so that every other execution goes on; the details are in the log.
pub const INTERNAL_ERROR: &str = "Lightbox.InternalError";

/// The error an execution fails with when one step of it passed the step budget
/// ([`StepBudget`]): more evaluation work, or more wall-clock time, than one step may take.
pub const BUDGET_EXCEEDED: &str = "Lightbox.BudgetExceeded";

pub use crate::store::QUARANTINED;

/// What one step (one input applied to one execution) may spend: units of evaluation work
/// (JSONata, JSONPath, intrinsics and Choice rules draw on them, see [`crate::asl::budget`])
/// and wall-clock time. A step that passes either fails its execution with
/// [`BUDGET_EXCEEDED`], naming the state and the budget; every other execution goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepBudget {
    /// `[engine] step_budget`: units of evaluation work per step.
    #[serde(default = "StepBudget::default_steps")]
    pub step_budget: u64,
    /// `[engine] step_wall_ms`: wall-clock milliseconds per step.
    #[serde(default = "StepBudget::default_wall_ms")]
    pub step_wall_ms: u64,
}

impl StepBudget {
    fn default_steps() -> u64 {
        50_000_000
    }
    fn default_wall_ms() -> u64 {
        5_000
    }
    /// Refuse a budget no step could work in.
    pub fn check(&self) -> std::result::Result<(), String> {
        if self.step_budget < 10_000 {
            return Err(format!("engine.step_budget must be at least 10000 units of work; got {}", self.step_budget));
        }
        if !(50..=600_000).contains(&self.step_wall_ms) {
            return Err(format!("engine.step_wall_ms must be between 50 and 600000 milliseconds; got {}", self.step_wall_ms));
        }
        Ok(())
    }
    pub(crate) fn limits(&self) -> crate::asl::budget::Limits {
        crate::asl::budget::Limits { steps: self.step_budget, wall: Some(std::time::Duration::from_millis(self.step_wall_ms)) }
    }
    /// The budget every engine made after this in this process starts with (`[engine]`).
    pub fn set_process_default(b: StepBudget) {
        if let Ok(mut d) = PROCESS_BUDGET.lock() {
            *d = Some(b);
        }
    }
    pub(crate) fn process_default() -> StepBudget {
        PROCESS_BUDGET.lock().ok().and_then(|d| *d).unwrap_or_default()
    }
}

impl Default for StepBudget {
    fn default() -> StepBudget {
        StepBudget { step_budget: StepBudget::default_steps(), step_wall_ms: StepBudget::default_wall_ms() }
    }
}

static PROCESS_BUDGET: Mutex<Option<StepBudget>> = Mutex::new(None);

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
    #[error("TaskClaimed: the review {token} is claimed by {holder}; {user} may answer it only by overriding the claim with a reason")]
    ClaimedByOther { token: String, holder: String, user: String },
    #[error("InvalidParameter: overriding {holder}'s claim on {token} needs a reason (at least 8 characters)")]
    OverrideNeedsReason { token: String, holder: String },
    #[error("TaskClaimed: the review {token} is now claimed by {holder}, not {seen} as when you chose to override: look again")]
    ClaimChanged { token: String, holder: String, seen: String },
    #[error("ExecutionNotRedrivable: {0}")]
    NotRedrivable(String),
    #[error("{0}")]
    Apply(#[from] ApplyError),
    #[error("execution {0} is busy in another process (its lease did not free up in time)")]
    Busy(String),
    #[error("{INTERNAL_ERROR}: {0}")]
    Internal(String),
    #[error("NotQuarantined: execution {0} is not quarantined (only an execution that failed with {QUARANTINED} can be released)")]
    NotQuarantined(String),
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

/// Who answers a task token, and whether they override a claim someone else holds.
/// A pending review claimed by another user can be answered only with an override that
/// gives a reason; an anonymous caller never holds a claim.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Acting {
    pub user: Option<String>,
    /// The reason for answering a review someone else claimed.
    pub override_reason: Option<String>,
    /// The claims the operator saw and chose to override (token → holder; a token absent
    /// here was seen unclaimed). Empty: override whoever holds it (the CLI's `--override-claim`).
    pub seen_holders: std::collections::BTreeMap<String, String>,
}

/// The shortest reason an override of someone's claim takes.
pub const OVERRIDE_REASON_MIN: usize = 8;

impl Acting {
    pub fn user(user: impl Into<String>) -> Acting {
        Acting { user: Some(user.into()), ..Acting::default() }
    }
    pub fn overriding(mut self, reason: impl Into<String>) -> Acting {
        self.override_reason = Some(reason.into());
        self
    }
    /// Override only the claims seen: if one changed hands meanwhile, the answer is refused.
    pub fn seen(mut self, holders: impl IntoIterator<Item = (String, String)>) -> Acting {
        self.seen_holders = holders.into_iter().collect();
        self
    }
    /// Whether `t` may be answered by this actor: `Ok(Some(holder))` when it overrides a claim.
    pub fn check_claim(&self, t: &PendingTask) -> Result<Option<String>> {
        let Some(holder) = t.claimed_by.as_ref().filter(|h| Some(h.as_str()) != self.user.as_deref()) else { return Ok(None) };
        match self.override_reason.as_deref().map(str::trim) {
            Some(_) if !self.seen_holders.is_empty() && self.seen_holders.get(&t.token) != Some(holder) => Err(EngineError::ClaimChanged {
                token: short_token(&t.token),
                holder: holder.clone(),
                seen: self.seen_holders.get(&t.token).cloned().unwrap_or_else(|| "nobody".into()),
            }),
            Some(r) if r.chars().count() >= OVERRIDE_REASON_MIN => Ok(Some(holder.clone())),
            Some(_) => Err(EngineError::OverrideNeedsReason { token: short_token(&t.token), holder: holder.clone() }),
            None => Err(EngineError::ClaimedByOther {
                token: short_token(&t.token),
                holder: holder.clone(),
                user: self.user.clone().unwrap_or_else(|| "an anonymous caller".into()),
            }),
        }
    }
}

pub struct Engine {
    pub store: Store,
    pub tasks: TaskRunner,
    pub clock: Clock,
    owner: String,
    defs: HashMap<String, Arc<Definition>>,
    seed: u64,
    token_key: Option<[u8; 32]>,
    /// `[[escalation]]` ladders, checked on each tick.
    pub escalation: Vec<escalation::EscalationConfig>,
    /// `[[dependencies]]` breakers and holds, applied before each task runs.
    pub dependencies: Vec<dependencies::DependencyConfig>,
    ladders_checked: Option<DateTime<Utc>>,
    /// Per execution: its machine's name and input (immutable), for the ladders' `when`.
    ladder_inputs: HashMap<String, (String, Value)>,
    /// Notice ids already written (the outbox dedupes them too; this spares the writes).
    ladder_sent: std::collections::HashSet<String>,
    /// What one step may spend.
    pub budget: StepBudget,
    /// The execution and version this engine last marked as being worked on ([`Engine::mark`]),
    /// so that a task and the step that applies its result share one mark.
    marked: Option<(String, i64)>,
    /// What this engine is working on, in a file beside the store (none for a store in
    /// memory): a process that dies mid-step leaves word of it ([`journal`]).
    journal: Option<journal::Journal>,
    /// The crash record of the execution and version this engine last loaded or committed
    /// (a commit clears it), so that marking it needs no query of its own.
    crash_known: Option<(String, i64, Option<crate::store::CrashRecord>)>,
    /// Who is answering which review, for the claim check the step that applies the answer
    /// makes inside its own transaction ([`Store::commit_step_guarded`]).
    answering: Option<(PendingTask, Acting)>,
    /// Executions an outside input (a stop, a token answer) waits to deliver to, shared with
    /// this engine's siblings: their `run_due` leaves them alone, so the input gets the lease
    /// between two slices of a long step instead of after the last.
    wanted: Arc<Mutex<std::collections::HashSet<String>>>,
}

impl Engine {
    pub fn new(store: Store, tasks: TaskRunner, clock: Clock) -> Engine {
        let owner = format!("{}-{}", std::process::id(), uuid::Uuid::new_v4().simple());
        let seed = uuid::Uuid::new_v4().as_u64_pair().0;
        // Work that engines which are gone left unfinished counts as a crash; then this
        // engine's own journal.
        let journal = store.path().filter(|_| !store.is_read_only()).and_then(|db| {
            let dir = journal::dir_for(db);
            journal::recover(&dir, &store, Utc::now());
            journal::Journal::open(&dir, &owner)
                .map_err(|e| tracing::warn!(error = %e, "no apply journal: a crash mid-step will not be recognised"))
                .ok()
        });
        Engine {
            store,
            tasks,
            clock,
            owner,
            defs: HashMap::new(),
            seed,
            token_key: None,
            escalation: vec![],
            dependencies: vec![],
            ladders_checked: None,
            ladder_inputs: HashMap::new(),
            ladder_sent: std::collections::HashSet::new(),
            budget: StepBudget::process_default(),
            marked: None,
            journal,
            crash_known: None,
            answering: None,
            wanted: Arc::default(),
        }
    }

    fn env(&mut self) -> Result<Env> {
        let token_key = match self.token_key {
            Some(k) => k,
            None => {
                let k = self.store.token_key()?;
                self.token_key = Some(k);
                k
            }
        };
        Ok(Env { now: self.clock.now(), region: REGION, token_key, slice: core::SLICE })
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
    pub fn start_execution(&mut self, state_machine: &str, name: Option<&str>, input: &str) -> Result<ExecutionSummary> {
        let sm =
            self.store.state_machine(state_machine)?.ok_or_else(|| EngineError::StateMachineDoesNotExist(state_machine.to_string()))?;
        let input: Value = serde_json::from_str(input).map_err(|e| EngineError::InvalidInput(format!("input is not valid JSON: {e}")))?;
        if eval::to_json(&input).len() > core::PAYLOAD_LIMIT {
            return Err(EngineError::InvalidInput("input is larger than 256 KiB".into()));
        }
        if core::too_deep(&input) {
            return Err(EngineError::InvalidInput(format!("input is nested deeper than {} levels", core::MAX_DEPTH)));
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
        let seed = self.next_seed();
        let mut st = ExecState::new(info.clone(), seed);
        let env = self.env()?;
        // (A crash here stores nothing: there is no execution yet to crash again.)
        crate::crash::point("apply", &arn);
        // A panic while starting stores nothing: the caller gets an internal error, not a crash.
        let (r, spent) = crate::asl::budget::run(self.budget.limits(), || {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| apply(&mut st, &def, Input::Start, &env)))
        });
        let r = match spent.exhausted {
            // Over budget: the execution is stored as failed, naming the state and the budget.
            Some((e, at)) => {
                st = ExecState::new(info, seed);
                let cause = self.budget_cause(&e, at.as_deref());
                tracing::warn!(execution = %arn, budget = %e, "starting an execution passed the step budget; it is failed");
                Ok(Ok(core::fail_internal(&mut st, &def, &env, BUDGET_EXCEEDED, &cause)))
            }
            None => r,
        };
        let step = match r {
            Ok(step) => step?,
            Err(p) => {
                tracing::error!(execution = %arn, panic = %panic_message(p.as_ref()), "the engine panicked starting an execution; nothing was stored");
                return Err(EngineError::Internal(format!(
                    "the engine could not start {arn}: an internal error occurred (the engine log has the details); nothing was stored"
                )));
            }
        };
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
    fn same_start(existing: ExecutionSummary, input: &Value) -> Result<ExecutionSummary> {
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
        // A panic outside the step guard (a task handler, say) fails this execution only,
        // and the lease is released either way.
        let r = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.drive_leased(arn))) {
            Ok(r) => r,
            Err(p) => {
                self.unworkable(arn, &format!("panic: {}", panic_message(p.as_ref())));
                Ok(())
            }
        };
        self.end_marked(arn);
        self.store.release_lease(arn, &self.owner)?;
        r
    }

    /// Mark `arn` at `version` as being worked on (in this engine's journal, before the work),
    /// unless this engine already has. `false`: the engine crashed on this work twice before, so the
    /// execution has been quarantined instead (failed with [`QUARANTINED`]); do not do it.
    fn mark(&mut self, arn: &str, version: i64, what: &str) -> Result<bool> {
        if self.marked.as_ref().is_some_and(|(a, v)| a == arn && *v == version) {
            return Ok(true);
        }
        let verdict = match self.crash_known.take() {
            Some((a, v, c)) if a == arn && v == version => crate::store::ApplyMark::of(c, version),
            _ => self.store.apply_verdict(arn, version)?,
        };
        match verdict {
            crate::store::ApplyMark::Go => {}
            crate::store::ApplyMark::Retry { crashes } => {
                tracing::warn!(execution = %arn, crashes, input = what, "the engine stopped while working on this execution before; trying once more");
            }
            crate::store::ApplyMark::Quarantine { crashes, input, since } => {
                let cause = format!(
                    "The Lightbox engine stopped {crashes} times while applying {input} to this execution (first at {}): out of memory, a stack \
                     overflow, an abort or a bug. The execution was quarantined so that the engine could go on; its state from before that \
                     input is kept. `lightbox executions release {arn} --reason-code CODE --reason TEXT` allows one more try.",
                    crate::events::time(since)
                );
                tracing::error!(execution = %arn, crashes, input = %input, "quarantined: the engine stopped twice working on this execution");
                self.force_finish(arn, ExecutionStatus::Failed, Some(QUARANTINED), Some(&cause))?;
                self.marked = None;
                return Ok(false);
            }
        }
        // Word of the work before it starts: if this process dies in it, the next engine to
        // start records a crash.
        if let Some(j) = self.journal.as_mut()
            && let Err(e) = j.begin(arn, version, what)
        {
            tracing::warn!(execution = %arn, error = %e, "could not write the apply journal");
        }
        self.marked = Some((arn.to_string(), version));
        Ok(true)
    }

    /// The work on `arn` ended in this process (committed, refused or handled): whatever mark
    /// this engine left is not a crash.
    fn end_marked(&mut self, arn: &str) {
        if self.marked.as_ref().is_some_and(|(a, _)| a == arn) {
            self.marked = None;
            if let Some(j) = self.journal.as_mut()
                && let Err(e) = j.end()
            {
                tracing::warn!(execution = %arn, error = %e, "could not clear the apply journal");
            }
        }
    }

    /// Put `st` back to the execution's committed state (a step that was not committed);
    /// returns the committed version.
    fn reload(&mut self, arn: &str, st: &mut ExecState) -> Result<i64> {
        let fresh = self.load(arn)?.ok_or_else(|| EngineError::ExecutionDoesNotExist(arn.to_string()))?;
        *st = fresh.state;
        Ok(fresh.version)
    }

    /// Load an execution, keeping what is known of its crashes for [`Engine::mark`].
    fn load(&mut self, arn: &str) -> Result<Option<crate::store::Loaded>> {
        let loaded = self.store.load(arn)?;
        if let Some(l) = &loaded {
            self.crash_known = Some((arn.to_string(), l.version, l.crash.clone()));
        }
        Ok(loaded)
    }

    /// `lightbox executions release`: let a quarantined execution try once more (see
    /// [`Store::release_quarantine`]), then drive it.
    pub fn release_execution(&mut self, arn: &str) -> Result<ExecutionSummary> {
        self.store.execution(arn)?.ok_or_else(|| EngineError::ExecutionDoesNotExist(arn.to_string()))?;
        if !self.store.release_quarantine(arn, self.clock.now())? {
            return Err(EngineError::NotQuarantined(arn.to_string()));
        }
        self.drive(arn)?;
        self.store.execution(arn)?.ok_or_else(|| EngineError::ExecutionDoesNotExist(arn.to_string()))
    }

    fn budget_cause(&self, e: &crate::asl::budget::Exhausted, at: Option<&str>) -> String {
        let which = match e {
            crate::asl::budget::Exhausted::Steps { .. } => "[engine] step_budget",
            crate::asl::budget::Exhausted::Time { .. } => "[engine] step_wall_ms",
        };
        let state = at.map(|s| format!("the state '{s}'")).unwrap_or_else(|| "one step".to_string());
        format!("Evaluating {state} passed {e} per step ({which}); the execution was failed so that the engine could go on.")
    }

    fn drive_leased(&mut self, arn: &str) -> Result<()> {
        let Some(loaded) = self.load(arn)? else { return Err(EngineError::ExecutionDoesNotExist(arn.to_string())) };
        if loaded.state.status != ExecutionStatus::Running {
            return Ok(());
        }
        let def = self.definition(&loaded.definition)?;
        let mut st = loaded.state;
        let mut version = loaded.version;
        let mut lease_taken = std::time::Instant::now();
        loop {
            if st.status != ExecutionStatus::Running {
                return Ok(());
            }
            let input = if let Some(t) = st.outstanding_tasks().into_iter().next() {
                // A task that crashes the engine is quarantined like an input that does.
                if !self.mark(arn, version, "a task")? {
                    return Ok(());
                }
                let Some(outcome) = self.run_task(arn, &t)? else { return Ok(()) };
                match outcome {
                    TaskOutcome::Done(result) => Input::TaskResult { task_id: t.task_id, result },
                    TaskOutcome::Submitted(output) => Input::TaskSubmitted { task_id: t.task_id, output },
                }
            } else {
                match st.next_wake() {
                    Some(w) if w <= self.clock.now() => Input::Wake,
                    _ => return Ok(()),
                }
            };
            version = self.step_isolated(arn, &mut st, &def, input, version)?;
            // A step that ran out of its slice is due again at once: let other executions
            // have their turn first (`run_due` comes back to it).
            if st.resume.is_some() {
                return Ok(());
            }
            // Renew the lease only when half of it has gone by.
            if lease_taken.elapsed() > std::time::Duration::from_millis((LEASE_MS / 2) as u64) {
                self.store.acquire_lease(arn, &self.owner, self.clock.now(), LEASE_MS)?;
                lease_taken = std::time::Instant::now();
            }
        }
    }

    /// Run one task through its dependency's hold and breaker. `None`: the dependency is
    /// held, so the task stays scheduled (durably) until the hold is released.
    fn run_task(&mut self, arn: &str, t: &core::TaskRequest) -> Result<Option<TaskOutcome>> {
        let Some(dep) = dependencies::dependency_for(&self.dependencies, t).cloned() else { return Ok(Some(self.tasks.run(t))) };
        let now = self.clock.now();
        let gate = dependencies::before_call(&self.store, &dep, now).map_err(dep_err)?;
        match gate {
            dependencies::Gate::Hold => {
                dependencies::note_wait(&self.store, &dep.name, arn, now, Duration::seconds(5)).map_err(dep_err)?;
                Ok(None)
            }
            dependencies::Gate::FailFast { until } => {
                dependencies::clear_wait(&self.store, arn).map_err(dep_err)?;
                Ok(Some(TaskOutcome::Done(Err(TaskError {
                    error: dependencies::CIRCUIT_OPEN.into(),
                    cause: format!(
                        "The circuit breaker of dependency {} is open until {}: the task was not sent.",
                        dep.name,
                        crate::events::time(until)
                    ),
                }))))
            }
            dependencies::Gate::Run => {
                dependencies::clear_wait(&self.store, arn).map_err(dep_err)?;
                let out = self.tasks.run(t);
                let ok = !matches!(out, TaskOutcome::Done(Err(_)));
                dependencies::after_call(&self.store, &dep, self.clock.now(), ok).map_err(dep_err)?;
                Ok(Some(out))
            }
        }
    }

    /// Apply an outside input to an execution under its lease, then drive it on.
    fn deliver(&mut self, arn: &str, input: Input) -> Result<()> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
        let _wanted = Wanted::new(self.wanted.clone(), arn);
        while !self.store.acquire_lease(arn, &self.owner, self.clock.now(), LEASE_MS)? {
            if std::time::Instant::now() > deadline {
                return Err(EngineError::Busy(arn.to_string()));
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let r = (|| {
            let loaded = self.load(arn)?.ok_or_else(|| EngineError::ExecutionDoesNotExist(arn.to_string()))?;
            let def = self.definition(&loaded.definition)?;
            let mut st = loaded.state;
            let mut version = loaded.version;
            // Deadlines that have passed win over a late answer: fire them first. (Not the rest
            // of a sliced step: the input goes first, and the work goes on after it.)
            if st.next_deadline().is_some_and(|w| w <= self.clock.now()) {
                version = self.step_isolated(arn, &mut st, &def, Input::Wake, version)?;
            }
            self.step_isolated(arn, &mut st, &def, input, version)?;
            self.drive_leased(arn)
        })();
        self.end_marked(arn);
        self.store.release_lease(arn, &self.owner)?;
        r
    }

    pub fn stop_execution(&mut self, arn: &str, error: Option<String>, cause: Option<String>) -> Result<ExecutionSummary> {
        let row = self.store.execution(arn)?.ok_or_else(|| EngineError::ExecutionDoesNotExist(arn.to_string()))?;
        if row.status != ExecutionStatus::Running {
            return Err(EngineError::Apply(ApplyError::NotRunning(arn.to_string())));
        }
        match self.deliver(arn, Input::Stop { error: error.clone(), cause: cause.clone() }) {
            Ok(()) | Err(EngineError::Apply(ApplyError::NotRunning(_))) => {}
            Err(e) => {
                // The core could not stop it (another process holds its lease past the wait,
                // an unreadable state, a definition that no longer parses, a bug): stopping
                // must still work, so record it directly. The version bump makes any step the
                // lease holder is still computing fail to commit, so nothing runs after it.
                tracing::warn!(execution = %arn, error = %e, "stopping through the core failed; aborting the execution directly");
                if self.store.execution(arn)?.is_some_and(|r| r.status == ExecutionStatus::Running) {
                    self.force_finish(arn, ExecutionStatus::Aborted, error.as_deref(), cause.as_deref())?;
                }
            }
        }
        self.store.execution(arn)?.ok_or_else(|| EngineError::ExecutionDoesNotExist(arn.to_string()))
    }

    /// Apply one input to one execution and commit the step, with panics caught: a panic
    /// fails this execution with [`INTERNAL_ERROR`] (committed and logged) instead of taking
    /// the engine down. A panic while stopping is returned as an error, so that
    /// [`Engine::stop_execution`] aborts the execution directly. Returns the new version.
    ///
    /// Before the input is applied, the execution is marked durably as being applied
    /// ([`Engine::mark`]): an execution whose input crashed the engine twice is quarantined,
    /// not applied a third time. The step runs under the step budget ([`StepBudget`]); one
    /// that passes it is not committed, and the execution fails with [`BUDGET_EXCEEDED`].
    /// Stopping is never held back by either.
    fn step_isolated(&mut self, arn: &str, st: &mut ExecState, def: &Definition, input: Input, version: i64) -> Result<i64> {
        let env = self.env()?;
        let stopping = matches!(input, Input::Stop { .. });
        let what = input_kind(&input);
        if !stopping && !self.mark(arn, version, what)? {
            return self.reload(arn, st);
        }
        // The answer to a review is checked against its claim where the answer commits.
        let guard = match &input {
            Input::TaskResult { task_id, .. } => self.answering.take().filter(|(t, _)| &t.token == task_id),
            _ => None,
        };
        crate::crash::point("apply", arn);
        let limits = if stopping { crate::asl::budget::Limits::steps(u64::MAX) } else { self.budget.limits() };
        let (r, spent) =
            crate::asl::budget::run(limits, || std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| apply(st, def, input, &env))));
        let cause = match (r, spent.exhausted) {
            (Ok(_), Some((e, at))) => {
                tracing::warn!(execution = %arn, input = what, budget = %e, "a step passed the step budget; failing this execution");
                (BUDGET_EXCEEDED, self.budget_cause(&e, at.as_deref()))
            }
            (Ok(step), None) => {
                let step = match step {
                    Ok(step) => step,
                    Err(e) => {
                        self.end_marked(arn);
                        return Err(e.into());
                    }
                };
                let Some((task, acting)) = guard else {
                    let v = self.store.commit_step(st, version, &step)?;
                    // The commit cleared any crash record: the next step needs no query.
                    self.crash_known = Some((arn.to_string(), v, None));
                    return Ok(v);
                };
                let mut refusal = None;
                let committed = self.store.commit_step_guarded(st, version, &step, |tx| {
                    let now = PendingTask { claimed_by: tx.claim_holder(&task.token)?, ..task.clone() };
                    match acting.check_claim(&now) {
                        Ok(_) => Ok(true),
                        Err(e) => {
                            refusal = Some(e);
                            Ok(false)
                        }
                    }
                })?;
                return match (committed, refusal) {
                    (Some(v), _) => Ok(v),
                    (None, e) => {
                        // Nothing was written: the execution is as it was.
                        self.reload(arn, st)?;
                        self.end_marked(arn);
                        Err(e.unwrap_or_else(|| EngineError::Claimed(task.token.clone())))
                    }
                };
            }
            (Err(p), _) => {
                let panic = panic_message(p.as_ref());
                tracing::error!(execution = %arn, input = what, panic = %panic, "the engine panicked applying an input; failing this execution");
                if stopping {
                    return Err(EngineError::Internal(format!("the engine panicked while stopping {arn}")));
                }
                (
                    INTERNAL_ERROR,
                    format!(
                        "An internal error occurred in the Lightbox engine while applying {what} to this execution; the execution was failed so that the engine could go on. The engine log has the details."
                    ),
                )
            }
        };
        let (error, cause) = cause;
        // The step was not committed: start again from the committed state.
        let fresh_version = self.reload(arn, st)?;
        let failed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| core::fail_internal(st, def, &env, error, &cause)));
        match failed {
            Ok(step) => Ok(self.store.commit_step(st, fresh_version, &step)?),
            Err(_) => {
                self.force_finish(arn, ExecutionStatus::Failed, Some(error), Some(&cause))?;
                st.status = ExecutionStatus::Failed;
                Ok(fresh_version + 1)
            }
        }
    }

    /// Finish a running execution without the core (see [`Store::finish_directly`]), at
    /// this engine's time. For an execution the core cannot work on.
    fn force_finish(&mut self, arn: &str, status: ExecutionStatus, error: Option<&str>, cause: Option<&str>) -> Result<()> {
        if self.store.finish_directly(arn, status, error, cause, self.clock.now())? {
            tracing::warn!(execution = %arn, status = status.as_str(), "execution finished directly through the store");
        }
        Ok(())
    }

    pub fn redrive_execution(&mut self, arn: &str) -> Result<ExecutionSummary> {
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
    pub fn resolve_token(&self, token: &str) -> Result<PendingTask> {
        // The shortened form tables print (`c234d0eb…`) is accepted as the prefix it shows.
        let token = token.trim().trim_end_matches('…');
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
            if found.len() > 1 {
                return Err(EngineError::InvalidToken(format!("{token} (more than one token starts so: give more characters)")));
            }
        } else {
            return Err(EngineError::InvalidToken(format!("{token} (a token prefix needs at least 8 characters)")));
        }
        Err(EngineError::TaskDoesNotExist(token.to_string()))
    }

    fn pending_token(&self, token: &str) -> Result<PendingTask> {
        let t = self.resolve_token(token)?;
        if t.status != "PENDING" {
            return Err(EngineError::TaskTimedOut { token: short_token(&t.token), status: t.status });
        }
        Ok(t)
    }

    /// Deliver a token answer; if its deadline passed first, say so as AWS does.
    fn deliver_token(&mut self, t: &PendingTask, input: Input) -> Result<()> {
        match self.deliver(&t.execution_arn, input) {
            Err(EngineError::Apply(ApplyError::UnknownTask(_) | ApplyError::NotRunning(_))) => {
                let status = self.store.token(&t.token)?.map(|r| r.status).unwrap_or_else(|| "CLOSED".into());
                Err(EngineError::TaskTimedOut { token: short_token(&t.token), status })
            }
            other => other,
        }
    }

    /// SendTaskSuccess as an anonymous caller: refused when someone has claimed the review.
    pub fn send_task_success(&mut self, token: &str, output: &str) -> Result<PendingTask> {
        self.send_task_success_as(token, output, &Acting::default())
    }

    /// SendTaskSuccess by `acting`: a review claimed by someone else needs an override with a reason.
    pub fn send_task_success_as(&mut self, token: &str, output: &str, acting: &Acting) -> Result<PendingTask> {
        let output: Value =
            serde_json::from_str(output).map_err(|e| EngineError::InvalidOutput(format!("output is not valid JSON: {e}")))?;
        if eval::to_json(&output).len() > core::PAYLOAD_LIMIT {
            return Err(EngineError::InvalidOutput("output is larger than 256 KiB".into()));
        }
        if core::too_deep(&output) {
            return Err(EngineError::InvalidOutput(format!("output is nested deeper than {} levels", core::MAX_DEPTH)));
        }
        let t = self.pending_token(token)?;
        acting.check_claim(&t)?;
        crate::crash::point("answer-checked", &t.token);
        self.answering = Some((t.clone(), acting.clone()));
        let r = self.deliver_token(&t, Input::TaskResult { task_id: t.token.clone(), result: Ok(output) });
        self.answering = None;
        r?;
        Ok(self.store.token(&t.token)?.unwrap_or(t))
    }

    /// SendTaskFailure as an anonymous caller: refused when someone has claimed the review.
    pub fn send_task_failure(&mut self, token: &str, error: Option<&str>, cause: Option<&str>) -> Result<PendingTask> {
        self.send_task_failure_as(token, error, cause, &Acting::default())
    }

    /// SendTaskFailure by `acting`: a review claimed by someone else needs an override with a reason.
    pub fn send_task_failure_as(&mut self, token: &str, error: Option<&str>, cause: Option<&str>, acting: &Acting) -> Result<PendingTask> {
        if error.is_some_and(|e| e.len() > 256) {
            return Err(EngineError::InvalidOutput("error must be at most 256 characters".into()));
        }
        if cause.is_some_and(|c| c.len() > 32_768) {
            return Err(EngineError::InvalidOutput("cause must be at most 32768 characters".into()));
        }
        let t = self.pending_token(token)?;
        acting.check_claim(&t)?;
        crate::crash::point("answer-checked", &t.token);
        let result = Err(TaskError { error: error.unwrap_or_default().to_string(), cause: cause.unwrap_or_default().to_string() });
        self.answering = Some((t.clone(), acting.clone()));
        let r = self.deliver_token(&t, Input::TaskResult { task_id: t.token.clone(), result });
        self.answering = None;
        r?;
        Ok(self.store.token(&t.token)?.unwrap_or(t))
    }

    pub fn send_task_heartbeat(&mut self, token: &str) -> Result<PendingTask> {
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

    /// SendTaskHeartbeat by `acting`: a heartbeat keeps a claim alive, so on a claimed review
    /// only its holder sends one.
    pub fn send_task_heartbeat_as(&mut self, token: &str, acting: &Acting) -> Result<PendingTask> {
        let t = self.pending_token(token)?;
        if let Some(h) = t.claimed_by.as_ref().filter(|h| Some(h.as_str()) != acting.user.as_deref()) {
            return Err(EngineError::Claimed(format!("{h}, whose claim a heartbeat would keep alive; only {h} heartbeats it")));
        }
        self.send_task_heartbeat(&t.token)
    }

    /// Claim a pending review for `by`; a task with a heartbeat deadline gets a heartbeat,
    /// so the claim keeps it alive.
    pub fn claim_task(&mut self, token: &str, by: &str) -> Result<PendingTask> {
        let t = self.pending_token(token)?;
        if let Some(holder) = self.store.claim_task(&t.token, by, self.clock.now())? {
            return Err(EngineError::Claimed(holder));
        }
        if t.heartbeat.is_some() {
            self.send_task_heartbeat(&t.token)?;
        }
        Ok(self.store.token(&t.token)?.unwrap_or(t))
    }

    pub fn unclaim_task(&mut self, token: &str, by: &str) -> Result<PendingTask> {
        let t = self.resolve_token(token)?;
        if let Some(holder) = self.store.unclaim_task(&t.token, by)? {
            return Err(EngineError::Claimed(holder));
        }
        Ok(self.store.token(&t.token)?.unwrap_or(t))
    }

    /// Escalate a review: fails the task with `Review.Escalated`. Where that goes depends on the
    /// gate's Catch (`ops::consequence` says which); a gate that does not catch it fails.
    pub fn escalate_task(&mut self, token: &str, cause: &str) -> Result<PendingTask> {
        self.escalate_task_as(token, cause, &Acting::default())
    }

    /// Escalate by `acting`: a review claimed by someone else needs an override with a reason.
    pub fn escalate_task_as(&mut self, token: &str, cause: &str, acting: &Acting) -> Result<PendingTask> {
        self.escalate_with(token, ESCALATED, cause, acting, None)
    }

    /// Fail a review with `error` and write the "Review Escalated" event (once per token).
    /// `step`: the ladder step that did it (automatic), or `None` (by hand).
    fn escalate_with(&mut self, token: &str, error: &str, cause: &str, acting: &Acting, step: Option<usize>) -> Result<PendingTask> {
        let t = self.send_task_failure_as(token, Some(error), Some(cause), acting)?;
        let id = format!("review-escalated:{}", escalation::token_ref(&t.token));
        let detail = serde_json::json!({
            "executionArn": t.execution_arn,
            "stateName": t.state_name,
            "taskToken": short_token(&t.token),
            "error": error,
            "reason": cause,
            "automatic": step.is_some(),
            "ladderStep": step.map(|s| s + 1),
            "by": acting.user.clone().unwrap_or_else(|| "anonymous".into()),
        });
        self.store.emit_event(
            &t.execution_arn,
            &id,
            escalation::ESCALATED_EVENT,
            self.clock.now(),
            std::slice::from_ref(&t.execution_arn),
            detail,
        )?;
        Ok(t)
    }

    /// Fire the escalation ladders' due steps (at most once a second of engine time). Each
    /// step fires once per token; automatic actions are audited with actor "lightbox".
    /// Returns how many steps fired.
    pub fn run_ladders(&mut self) -> Result<usize> {
        let now = self.clock.now();
        if self.escalation.is_empty() || self.ladders_checked.is_some_and(|c| now >= c && now - c < Duration::seconds(1)) {
            return Ok(0);
        }
        self.ladders_checked = Some(now);
        let pending = self.store.tokens(Some("PENDING"), None, 10_000)?;
        let mut fired = 0;
        if self.ladder_inputs.len() > 50_000 {
            self.ladder_inputs.clear();
        }
        if self.ladder_sent.len() > 200_000 {
            self.ladder_sent.clear();
        }
        for t in pending {
            if !self.escalation.iter().any(|l| l.state == t.state_name) {
                continue;
            }
            if !self.ladder_inputs.contains_key(&t.execution_arn) {
                let Some(row) = self.store.execution(&t.execution_arn)? else { continue };
                let machine = row.state_machine_arn.rsplit(':').next().unwrap_or_default().to_string();
                self.ladder_inputs.insert(t.execution_arn.clone(), (machine, serde_json::from_str(&row.input).unwrap_or(Value::Null)));
            }
            let Some((machine, input)) = self.ladder_inputs.get(&t.execution_arn).cloned() else { continue };
            let ladders: Vec<escalation::EscalationConfig> =
                self.escalation.iter().filter(|l| l.applies(&machine, &t.state_name, &input)).cloned().collect();
            'ladder: for l in ladders {
                for i in escalation::due_steps(&l, &t, now) {
                    let step = &l.steps[i];
                    let due = step.due_at(t.issued, t.timeout).unwrap_or(now);
                    if let Some(sink) = &step.notify {
                        let format = step.format.as_deref().unwrap_or("pagerduty");
                        let id = format!("escalation-notice:{}:{}:{}", escalation::token_ref(&t.token), l.state, i);
                        if self.ladder_sent.contains(&id) {
                            continue;
                        }
                        let mut body = escalation::notice_body(format, sink, &t, i, due);
                        if let Some(o) = body.as_object_mut() {
                            o.insert(
                                "lightbox".into(),
                                serde_json::json!({"sink": sink, "format": format, "executionArn": t.execution_arn}),
                            );
                        }
                        let new = self.store.emit_event(
                            &t.execution_arn,
                            &id,
                            escalation::NOTICE_EVENT,
                            now,
                            std::slice::from_ref(&t.execution_arn),
                            body,
                        )?;
                        self.ladder_sent.insert(id);
                        if new {
                            fired += 1;
                            self.audit_auto(&t, &format!("escalation ladder step {}: notified {sink} ({format})", i + 1), "notify");
                        }
                    } else if let Some(error) = step.error() {
                        let why = format!("escalation ladder step {} of {}: unanswered", i + 1, l.state);
                        let acting = Acting::user(dependencies::ENGINE_ACTOR).overriding(why.clone());
                        match self.escalate_with(&t.token, error, &why, &acting, Some(i)) {
                            Ok(_) => {
                                fired += 1;
                                self.audit_auto(&t, &why, "escalate");
                            }
                            Err(e) => {
                                tracing::warn!(execution = %t.execution_arn, error = %e, "an escalation ladder could not fail its review")
                            }
                        }
                        break 'ladder;
                    }
                }
            }
        }
        Ok(fired)
    }

    /// Every configured dependency with its breaker and hold (for `dependencies list` and the
    /// Outbox view's "Dependencies").
    pub fn dependency_status(&self) -> std::result::Result<Vec<dependencies::DependencyStatus>, dependencies::DependencyError> {
        dependencies::dependencies(&self.store, &self.dependencies, self.clock.now())
    }

    /// Hold a configured dependency (audited as `by` from `source`). False: it was held already.
    pub fn hold_dependency(
        &self,
        name: &str,
        by: &str,
        source: crate::audit::Source,
        reason: &str,
    ) -> std::result::Result<bool, dependencies::DependencyError> {
        dependencies::hold(self.store.conn(), &self.dependencies, name, by, source, reason, self.clock.now())
    }

    /// Release a hold: returns how many waiting executions were woken (`None`: it was not held).
    pub fn release_dependency(
        &self,
        name: &str,
        by: &str,
        source: crate::audit::Source,
        reason: &str,
    ) -> std::result::Result<Option<usize>, dependencies::DependencyError> {
        dependencies::release(self.store.conn(), &self.dependencies, name, by, source, reason, self.clock.now())
    }

    /// Close a breaker by hand. False: it was closed.
    pub fn reset_dependency(
        &self,
        name: &str,
        by: &str,
        source: crate::audit::Source,
        reason: &str,
    ) -> std::result::Result<bool, dependencies::DependencyError> {
        dependencies::reset(self.store.conn(), &self.dependencies, name, by, source, reason, self.clock.now())
    }

    fn audit_auto(&self, t: &PendingTask, reason: &str, what: &str) {
        use crate::audit::{Action, AuditEntry, Source};
        let action = if what == "escalate" { Action::Escalate } else { Action::Other("escalation-notice".into()) };
        let entry = AuditEntry::new(dependencies::ENGINE_ACTOR, Source::Engine, action)
            .execution(t.execution_arn.clone())
            .token(t.token.clone())
            .reason(reason.to_string());
        if let Err(e) = crate::audit::record(self.store.conn(), &entry, self.clock.now()) {
            tracing::warn!(execution = %t.execution_arn, error = %e, "could not audit an automatic escalation");
        }
    }

    // ----- background work --------------------------------------------------

    /// Drive every execution with due work. Returns how many were driven.
    pub fn run_due(&mut self, limit: usize) -> Result<usize> {
        if let Err(e) = self.run_ladders() {
            tracing::warn!(error = %e, "escalation ladders could not run");
        }
        let mut due = self.store.due(self.clock.now(), &self.owner, limit)?;
        if let Ok(w) = self.wanted.lock()
            && !w.is_empty()
        {
            due.retain(|a| !w.contains(a));
        }
        if due.is_empty() {
            return Ok(0);
        }
        // Claim in small batches: one transaction per batch, and a CLI command waiting
        // for one of these executions waits for at most a batch.
        let mut n = 0;
        for chunk in due.chunks(256) {
            let claimed = self.store.claim(chunk, &self.owner, self.clock.now(), LEASE_MS)?;
            for arn in &claimed {
                // One execution never stops the others: an error is logged, a panic that
                // escaped the step guard fails that execution, and the loop goes on.
                match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.drive_leased(arn))) {
                    Ok(Ok(()) | Err(EngineError::Store(StoreError::Conflict(_)))) => {}
                    Ok(Err(e)) => self.unworkable(arn, &e.to_string()),
                    Err(p) => self.unworkable(arn, &format!("panic: {}", panic_message(p.as_ref()))),
                }
            }
            self.store.release_many(&claimed, &self.owner)?;
            n += claimed.len();
        }
        Ok(n)
    }

    /// An execution with due work that could not be driven. A state or definition that cannot
    /// be loaded will not load next time either: fail the execution (with [`INTERNAL_ERROR`])
    /// rather than retry it on every tick. Anything else is logged and retried.
    fn unworkable(&mut self, arn: &str, why: &str) {
        tracing::warn!(execution = %arn, error = %why, "driving an execution failed");
        let permanent = match self.store.load(arn) {
            Err(StoreError::Corrupt(_)) => true,
            Ok(Some(l)) => Definition::parse_str(&l.definition).is_err() || why.starts_with("panic: "),
            _ => false,
        };
        if permanent {
            let cause = "An internal error occurred in the Lightbox engine: this execution's stored state or definition could not be used, so it was failed so that the engine could go on. The engine log has the details.";
            if let Err(e) = self.force_finish(arn, ExecutionStatus::Failed, Some(INTERNAL_ERROR), Some(cause)) {
                tracing::error!(execution = %arn, error = %e, "could not fail an unworkable execution");
            }
        }
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

    /// A second engine on its own connection to this engine's store, with the same tasks,
    /// clock, ladders and dependencies and a lease owner of its own: `lightbox serve` runs
    /// due work on it, so a long step never holds the engine the API answers from.
    /// `None` for an in-memory or read-only store.
    pub fn sibling(&self) -> Result<Option<Engine>> {
        let Some(store) = self.store.second_connection()? else { return Ok(None) };
        let mut e = Engine::new(store, self.tasks.clone(), self.clock.clone());
        e.wanted = self.wanted.clone();
        e.escalation = self.escalation.clone();
        e.dependencies = self.dependencies.clone();
        e.budget = self.budget;
        Ok(Some(e))
    }

    pub fn lease_owner(&self) -> &str {
        &self.owner
    }

    pub fn lease_duration() -> Duration {
        Duration::milliseconds(LEASE_MS)
    }
}

/// Marks an execution wanted (see `Engine::wanted`) while an input waits for its lease.
struct Wanted {
    set: Arc<Mutex<std::collections::HashSet<String>>>,
    arn: String,
}

impl Wanted {
    fn new(set: Arc<Mutex<std::collections::HashSet<String>>>, arn: &str) -> Wanted {
        set.lock().unwrap_or_else(|p| p.into_inner()).insert(arn.to_string());
        Wanted { set, arn: arn.to_string() }
    }
}

impl Drop for Wanted {
    fn drop(&mut self) {
        self.set.lock().unwrap_or_else(|p| p.into_inner()).remove(&self.arn);
    }
}

fn dep_err(e: dependencies::DependencyError) -> EngineError {
    match e {
        dependencies::DependencyError::Store(s) => EngineError::Store(s),
        other => EngineError::Internal(other.to_string()),
    }
}

/// What kind of input this is, for logs (never the payload).
fn input_kind(input: &Input) -> &'static str {
    match input {
        Input::Start => "Start",
        Input::Wake => "Wake",
        Input::TaskSubmitted { .. } => "TaskSubmitted",
        Input::TaskResult { .. } => "TaskResult",
        Input::Heartbeat { .. } => "Heartbeat",
        Input::Stop { .. } => "Stop",
        Input::Redrive => "Redrive",
    }
}

/// A panic's message for the log: the static text code panics with, withheld when it could
/// quote data (anything long or with quotes in it).
fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    let m = p.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| p.downcast_ref::<String>().cloned()).unwrap_or_default();
    if m.is_empty() || m.len() > 200 || m.contains(['"', '\'', '{', '\n']) { "(message withheld: it may quote data)".into() } else { m }
}

/// A task token shortened for display and logs: never print a token in full.
pub fn short_token(t: &str) -> String {
    let head: String = t.chars().take(8).collect();
    format!("{head}…")
}
