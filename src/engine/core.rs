//! The pure core of the engine: `apply(state, input, env) -> Step`.
//!
//! No I/O, no clock, no randomness of its own: time and entropy arrive in
//! [`Env`], and everything the outside world must do comes back as data in
//! [`Step`] (history events, effects, token changes). The shell commits a
//! step in one transaction and only then runs its effects.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::eval::{self, Failure, JsonataEnv, Origin, Scope, obj, show_scalar, to_json};
use crate::asl::model::{
    ChoiceBranch, ChoiceCondition, Definition, Jitter, MapMode, QueryLanguage, State, StateKind, WaitSpec, error_matches,
};
use crate::history::{ExecutionStatus, HistoryEvent, not_truncated};

/// 256 KiB: Step Functions' payload limit.
pub const PAYLOAD_LIMIT: usize = 256 * 1024;
/// How deeply JSON data may nest: inputs, answers and state outputs deeper than this are
/// refused, so every stored snapshot (data plus its own few levels) reads back.
pub const MAX_DEPTH: usize = 100;

/// Whether `v` nests deeper than [`MAX_DEPTH`] (iteratively: no recursion on input data).
pub fn too_deep(v: &Value) -> bool {
    let mut stack: Vec<(&Value, usize)> = vec![(v, 1)];
    while let Some((v, d)) = stack.pop() {
        let children: Box<dyn Iterator<Item = &Value>> = match v {
            Value::Array(a) => Box::new(a.iter()),
            Value::Object(o) => Box::new(o.values()),
            _ => continue,
        };
        if d > MAX_DEPTH {
            return true;
        }
        stack.extend(children.map(|c| (c, d + 1)));
    }
    false
}
/// Step Functions fails an execution whose history would exceed this.
pub const HISTORY_LIMIT: i64 = 25_000;
/// Longest wait Step Functions accepts (one year).
const MAX_WAIT_SECONDS: i64 = 31_536_000;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ExecInfo {
    pub execution_arn: String,
    pub name: String,
    pub state_machine_arn: String,
    pub state_machine_name: String,
    pub role_arn: String,
    pub start_time: DateTime<Utc>,
    pub input: Value,
    #[serde(default)]
    pub redrive_count: u32,
    #[serde(default)]
    pub redrive_time: Option<DateTime<Utc>>,
}

/// Everything the engine knows about one execution; persisted after every step.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExecState {
    pub info: ExecInfo,
    pub status: ExecutionStatus,
    pub output: Option<Value>,
    pub error: Option<String>,
    pub cause: Option<String>,
    pub stop_time: Option<DateTime<Utc>>,
    pub threads: BTreeMap<u32, Thread>,
    pub next_thread: u32,
    pub next_event_id: i64,
    pub rng: u64,
    pub deadline: Option<DateTime<Utc>>,
    /// Set when a step ran out of its work slice with threads still runnable: the execution
    /// is due again at once (`next_wake`), and the next step goes on where this one stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume: Option<Resume>,
}

/// Where a sliced step left off.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct Resume {
    /// When the slice ended: the execution is due again from then.
    pub at: DateTime<Utc>,
    /// Work done since the execution last waited for something outside.
    pub work: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Thread {
    pub id: u32,
    pub scope: usize,
    pub parent: Option<u32>,
    pub index: usize,
    pub state: String,
    pub input: Value,
    pub phase: Phase,
    pub entered_event: i64,
    pub entered_time: DateTime<Utc>,
    pub retries: Vec<u32>,
    pub retry_count: u32,
    pub vars: Map<String, Value>,
    pub item: Option<(usize, Value)>,
    /// Events of threads under a distributed Map are kept out of the parent history.
    pub quiet: bool,
    /// A Map or Parallel that failed keeps its children's record, so redrive reruns only what failed.
    #[serde(default)]
    pub failed_fanout: Option<Box<Fanout>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Phase {
    /// About to enter `state` with `input`.
    Enter,
    /// Entered; run the state's action (again, after a retry back-off).
    Run,
    /// Leave the state with `output`, then go to `next` (or finish).
    Exit {
        output: Value,
        next: Option<String>,
        assigned: Option<Map<String, Value>>,
    },
    /// Wait state or retry back-off; a Wait state carries its output and assignments in `then_exit`.
    Sleep {
        until: DateTime<Utc>,
        then_exit: Option<(Value, Option<Map<String, Value>>)>,
    },
    Task(Box<TaskWait>),
    Children(Box<Fanout>),
    Done {
        output: Value,
    },
    /// Failed at `state` with `input`: kept so redrive can resume here.
    Failed {
        error: String,
        cause: String,
    },
    /// Stopped or timed out while in `state`.
    Aborted,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskWait {
    pub task_id: String,
    pub token: Option<String>,
    pub resource: String,
    pub effective: Value,
    pub timeout_at: Option<DateTime<Utc>>,
    pub heartbeat_seconds: Option<i64>,
    pub heartbeat_at: Option<DateTime<Utc>>,
    pub submitted: bool,
    pub attempt: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FanKind {
    Map,
    Parallel,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Slot {
    Pending,
    /// A failed or aborted iteration that redrive will restart (in turn, like a pending one).
    Resume(u32),
    Running(u32),
    Succeeded(Value),
    Failed(u32),
    Aborted(u32),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Fanout {
    pub kind: FanKind,
    pub effective: Value,
    /// Map: each iteration's input. Parallel: one entry per branch (its scope id).
    pub inputs: Vec<Value>,
    pub scopes: Vec<usize>,
    pub slots: Vec<Slot>,
    pub max_concurrency: usize,
    pub tolerated_count: Option<u64>,
    pub tolerated_pct: Option<f64>,
    pub failures: usize,
    pub distributed: bool,
    /// Where the next pending slot and the first unsettled one are, and how many run: kept
    /// as slots change, so starting or finishing an iteration costs O(1), not O(slots).
    /// Rebuilt from the slots after a load (one pass per step, as reading the snapshot is).
    #[serde(skip)]
    idx: FanIndex,
}

/// See [`Fanout::idx`]. Invariants once `built`: every slot before `pending` is neither
/// `Pending` nor `Resume`, every slot before `settled` is `Succeeded` or `Failed`, and
/// `running` counts the `Running` slots.
#[derive(Debug, Clone, Copy, Default)]
struct FanIndex {
    built: bool,
    pending: usize,
    settled: usize,
    running: usize,
}

fn is_settled(s: &Slot) -> bool {
    matches!(s, Slot::Succeeded(_) | Slot::Failed(_))
}

fn is_pending(s: &Slot) -> bool {
    matches!(s, Slot::Pending | Slot::Resume(_))
}

impl Fanout {
    fn index(&mut self) -> &mut FanIndex {
        if !self.idx.built {
            self.idx = FanIndex {
                built: true,
                pending: self.slots.iter().position(is_pending).unwrap_or(self.slots.len()),
                settled: self.slots.iter().position(|s| !is_settled(s)).unwrap_or(self.slots.len()),
                running: self.slots.iter().filter(|s| matches!(s, Slot::Running(_))).count(),
            };
        }
        &mut self.idx
    }

    /// Change one slot, keeping the index.
    fn set_slot(&mut self, i: usize, new: Slot) {
        let Some(old) = self.slots.get(i) else { return };
        if self.idx.built {
            let was_running = matches!(old, Slot::Running(_));
            let idx = &mut self.idx;
            match (was_running, matches!(new, Slot::Running(_))) {
                (true, false) => idx.running = idx.running.saturating_sub(1),
                (false, true) => idx.running += 1,
                _ => {}
            }
            if is_pending(&new) {
                idx.pending = idx.pending.min(i);
            }
            if !is_settled(&new) {
                idx.settled = idx.settled.min(i);
            }
        }
        self.slots[i] = new;
    }

    /// The first slot waiting to start (`Pending` or `Resume`).
    fn next_pending(&mut self) -> Option<usize> {
        self.index();
        while self.idx.pending < self.slots.len() && !is_pending(&self.slots[self.idx.pending]) {
            self.idx.pending += 1;
        }
        (self.idx.pending < self.slots.len()).then_some(self.idx.pending)
    }

    /// Whether every slot has succeeded or failed.
    fn all_settled(&mut self) -> bool {
        self.index();
        while self.idx.settled < self.slots.len() && is_settled(&self.slots[self.idx.settled]) {
            self.idx.settled += 1;
        }
        self.idx.settled == self.slots.len()
    }

    fn running(&mut self) -> usize {
        self.index().running
    }

    /// After slots were changed without [`Fanout::set_slot`]: rebuild the index when next needed.
    fn reindex(&mut self) {
        self.idx.built = false;
    }

    fn parallel(input: Value, branches: &[usize]) -> Fanout {
        let n = branches.len();
        Fanout {
            kind: FanKind::Parallel,
            effective: input.clone(),
            inputs: vec![input; n],
            scopes: branches.to_vec(),
            slots: vec![Slot::Pending; n],
            max_concurrency: 0,
            tolerated_count: None,
            tolerated_pct: None,
            failures: 0,
            distributed: false,
            idx: FanIndex::default(),
        }
    }
}

/// What happened from outside, fed to [`apply`].
#[derive(Debug, Clone)]
pub enum Input {
    Start,
    /// Fire whatever timers are due at `env.now`.
    Wake,
    /// A callback task's request was sent (`TaskSubmitted`).
    TaskSubmitted {
        task_id: String,
        output: Value,
    },
    /// A task finished, or a task token was completed.
    TaskResult {
        task_id: String,
        result: Result<Value, TaskError>,
    },
    Heartbeat {
        token: String,
    },
    Stop {
        error: Option<String>,
        cause: Option<String>,
    },
    Redrive,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskError {
    pub error: String,
    pub cause: String,
}

#[derive(Debug, Clone, Copy)]
pub struct Env {
    pub now: DateTime<Utc>,
    pub region: &'static str,
    /// Secret key for task tokens (HMAC-SHA256). It never leaves the store; the same key,
    /// state and input give the same token, so replay stays deterministic.
    pub token_key: [u8; 32],
    /// Work one call of [`apply`] may do (thread-phase steps and iteration starts) before it
    /// returns with the rest left runnable ([`ExecState::resume`]): a long fan-out or loop is
    /// committed in slices, and other executions' steps run between them. An execution
    /// holding fan-outs of more than twice this many slots gets half their slots per call,
    /// so that the snapshot written after each step never costs more than the work done.
    pub slice: u32,
}

/// The work [`apply`] does per call by default: see [`Env::slice`].
pub const SLICE: u32 = 1_000;

/// Work an execution may do without waiting for anything outside (a task, a timer, a token)
/// before it fails with `States.Runtime`, across slices: an endless loop of quiet threads
/// (a distributed Map's iterations write no history) ends instead of running forever.
const MAX_BURST: u64 = 2_000_000;

impl Env {
    /// An environment with an all-zero token key: for tests and benchmarks only.
    pub fn new(now: DateTime<Utc>, region: &'static str) -> Env {
        Env { now, region, token_key: [0; 32], slice: SLICE }
    }
}

/// `at + secs` seconds, or `None` when the instant is beyond what a timestamp can hold.
pub fn add_seconds(at: DateTime<Utc>, secs: i64) -> Option<DateTime<Utc>> {
    at.checked_add_signed(Duration::try_seconds(secs)?)
}

/// `at + ms` milliseconds, or `None` when out of range.
pub fn add_millis(at: DateTime<Utc>, ms: i64) -> Option<DateTime<Utc>> {
    at.checked_add_signed(Duration::try_milliseconds(ms)?)
}

/// Largest TimeoutSeconds / HeartbeatSeconds / Wait Seconds Step Functions accepts in a definition.
pub const MAX_DEFINITION_SECONDS: i64 = 99_999_999;

/// Something the shell must do after committing the step.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    RunTask(TaskRequest),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskRequest {
    pub task_id: String,
    pub state: String,
    pub resource: String,
    pub parameters: Value,
    pub attempt: u32,
    pub token: Option<String>,
}

/// A task token as the review queue sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenRecord {
    pub token: String,
    pub task_id: String,
    pub state: String,
    pub resource: String,
    pub parameters: Value,
    pub issued_at: DateTime<Utc>,
    pub timeout_at: Option<DateTime<Utc>>,
    pub heartbeat_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TokenOutcome {
    Succeeded,
    Failed,
    TimedOut,
    Aborted,
}

impl TokenOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenOutcome::Succeeded => "SUCCEEDED",
            TokenOutcome::Failed => "FAILED",
            TokenOutcome::TimedOut => "TIMED_OUT",
            TokenOutcome::Aborted => "ABORTED",
        }
    }
}

#[derive(Debug, Default)]
pub struct Step {
    pub events: Vec<HistoryEvent>,
    pub effects: Vec<Effect>,
    pub tokens_issued: Vec<TokenRecord>,
    pub tokens_closed: Vec<(String, TokenOutcome)>,
    /// The state each task event of `events` happened in, by event id: AWS task events carry
    /// no state name, and the workflow feed shows it.
    pub event_states: Vec<(i64, String)>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ApplyError {
    #[error("execution {0} is not running")]
    NotRunning(String),
    #[error("execution {0} has already started")]
    AlreadyStarted(String),
    #[error("no task {0} is waiting in this execution")]
    UnknownTask(String),
    #[error("Execution {arn} cannot be redriven: {reason}")]
    NotRedrivable { arn: String, reason: String },
}

impl ExecState {
    pub fn new(info: ExecInfo, seed: u64) -> ExecState {
        ExecState {
            info,
            status: ExecutionStatus::Running,
            output: None,
            error: None,
            cause: None,
            stop_time: None,
            threads: BTreeMap::new(),
            next_thread: 0,
            next_event_id: 1,
            rng: seed,
            deadline: None,
            resume: None,
        }
    }

    /// The earliest instant at which `Input::Wake` has work to do.
    pub fn next_wake(&self) -> Option<DateTime<Utc>> {
        match (self.next_deadline(), self.resume.filter(|_| self.status == ExecutionStatus::Running)) {
            (Some(d), Some(r)) => Some(d.min(r.at)),
            (d, r) => d.or(r.map(|r| r.at)),
        }
    }

    /// The earliest timer (a wait, a back-off, a task's or the execution's timeout), leaving
    /// out the work a sliced step left (`resume`).
    pub fn next_deadline(&self) -> Option<DateTime<Utc>> {
        if self.status != ExecutionStatus::Running {
            return None;
        }
        let mut best = self.deadline;
        let mut consider = |t: Option<DateTime<Utc>>| {
            if let Some(t) = t {
                best = Some(best.map_or(t, |b| b.min(t)));
            }
        };
        for th in self.threads.values() {
            match &th.phase {
                Phase::Sleep { until, .. } => consider(Some(*until)),
                Phase::Task(t) => {
                    consider(t.timeout_at);
                    consider(t.heartbeat_at);
                }
                _ => {}
            }
        }
        best
    }

    /// Tasks that were dispatched but have not reported back: re-run them after a crash.
    pub fn outstanding_tasks(&self) -> Vec<TaskRequest> {
        let mut out = vec![];
        for th in self.threads.values() {
            if let Phase::Task(t) = &th.phase {
                if t.token.is_some() && t.submitted {
                    continue;
                }
                out.push(TaskRequest {
                    task_id: t.task_id.clone(),
                    state: th.state.clone(),
                    resource: t.resource.clone(),
                    parameters: t.effective.clone(),
                    attempt: t.attempt,
                    token: t.token.clone(),
                });
            }
        }
        out
    }

    /// The top-level workflow's current (or last) state and when it was entered.
    pub fn root_state(&self) -> Option<(String, DateTime<Utc>)> {
        self.threads.values().find(|t| t.parent.is_none()).map(|t| (t.state.clone(), t.entered_time))
    }

    /// The state (name, type) each running root-level or nested thread is in.
    pub fn current_states(&self) -> Vec<String> {
        self.threads.values().filter(|t| !matches!(t.phase, Phase::Done { .. })).map(|t| t.state.clone()).collect()
    }
}

/// Apply one input to an execution. Mutates `st`; returns what happened.
///
/// Does at most `env.slice` units of work (or half the fan-out slots the execution holds, if
/// more): when that is spent with threads still runnable,
/// it returns with [`ExecState::resume`] set, and the next call (any input; the shell sends
/// `Wake`) goes on from there. The same state, input and `env` give the same step.
pub fn apply(st: &mut ExecState, def: &Definition, input: Input, env: &Env) -> Result<Step, ApplyError> {
    let mut m = Machine::new(st, def, env);
    let resumed = m.st.resume.take();
    let r = m.input(input);
    if let Err(e) = r {
        m.st.resume = resumed;
        return Err(e);
    }
    if let Some(r) = resumed {
        m.carried = r.work;
        m.requeue();
    }
    let slots: usize = m.st.threads.values().map(|t| if let Phase::Children(f) = &t.phase { f.slots.len() } else { 0 }).sum();
    m.widen_slice(slots);
    m.run();
    Ok(m.step)
}

/// Fail a running execution because the engine itself went wrong while applying an input
/// (a caught panic). Every waiting thread is aborted and its token closed; the history gets
/// `ExecutionFailed` with `error` and `cause`. Does nothing to an execution that is not running.
pub fn fail_internal(st: &mut ExecState, def: &Definition, env: &Env, error: &str, cause: &str) -> Step {
    let mut m = Machine::new(st, def, env);
    m.st.resume = None;
    if m.st.status == ExecutionStatus::Running {
        m.fail_execution(error.to_string(), cause.to_string());
    }
    m.step
}

struct Machine<'a> {
    st: &'a mut ExecState,
    def: &'a Definition,
    env: &'a Env,
    step: Step,
    runq: VecDeque<u32>,
    /// Work done in this call, and before it since the execution last waited.
    work: u64,
    carried: u64,
    /// Work this call may do: `env.slice`, or half the fan-out slots the execution holds if
    /// that is more, so a large fan-out takes a bounded number of steps and writing its
    /// snapshot after each costs no more than the work done (linear, not quadratic).
    slice: u64,
    /// Map threads that may have iterations to start, newest last (built on first use).
    maps: Option<BTreeSet<u32>>,
    /// Per (scope, state): whether the state may read `$$.Execution.Input` (see `context`).
    reads_input: RefCell<HashMap<(usize, String), bool>>,
}

/// Whether a state (its definition, nested states included) may read the execution's input
/// through the context object. Conservative: any `$$` (a JSONPath error quotes the whole
/// context), `$eval`, or a `$states` not followed by a member known to hold no execution input.
pub(crate) fn reads_execution_input(raw: &Value) -> bool {
    const SAFE: [&str; 11] = [
        ".input",
        ".result",
        ".errorOutput",
        ".context.Map",
        ".context.State",
        ".context.Task",
        ".context.Execution.Id",
        ".context.Execution.Name",
        ".context.Execution.RoleArn",
        ".context.Execution.StartTime",
        ".context.Execution.Redrive",
    ];
    let text_reads = |t: &str| {
        t.contains("$$")
            || t.contains("$eval")
            || t.match_indices("$states").any(|(i, m)| {
                let rest = &t[i + m.len()..];
                !SAFE.iter().any(|p| rest.starts_with(p))
            })
    };
    let mut stack = vec![raw];
    while let Some(v) = stack.pop() {
        match v {
            Value::String(t) if text_reads(t) => return true,
            Value::Array(a) => stack.extend(a.iter()),
            Value::Object(o) => {
                for (k, v) in o {
                    if text_reads(k) {
                        return true;
                    }
                    stack.push(v);
                }
            }
            _ => {}
        }
    }
    false
}

fn resource_parts(resource: &str) -> (String, String) {
    if let Some(rest) = resource.strip_prefix("arn:aws:states:::") {
        // "lambda:invoke", "aws-sdk:dynamodb:putItem", "sqs:sendMessage.waitForTaskToken"
        if let Some((ty, res)) = rest.rsplit_once(':') {
            return (ty.to_string(), res.to_string());
        }
        return (rest.to_string(), String::new());
    }
    let parts: Vec<&str> = resource.split(':').collect();
    if parts.len() > 2 && parts[0] == "arn" {
        return (parts[2].to_string(), resource.to_string());
    }
    ("local".to_string(), resource.to_string())
}

impl<'a> Machine<'a> {
    fn new(st: &'a mut ExecState, def: &'a Definition, env: &'a Env) -> Machine<'a> {
        Machine {
            st,
            def,
            env,
            step: Step::default(),
            runq: VecDeque::new(),
            work: 0,
            carried: 0,
            slice: u64::from(env.slice.max(1)),
            maps: None,
            reads_input: RefCell::new(HashMap::new()),
        }
    }

    /// Let this call do at least half of `slots` units of work (see `slice`).
    fn widen_slice(&mut self, slots: usize) {
        self.slice = self.slice.max(u64::try_from(slots / 2).unwrap_or(u64::MAX));
    }

    /// After a sliced step: every thread that was left runnable runs again, in id order.
    fn requeue(&mut self) {
        let ids: Vec<u32> =
            self.st.threads.values().filter(|t| matches!(t.phase, Phase::Enter | Phase::Run | Phase::Exit { .. })).map(|t| t.id).collect();
        self.runq.extend(ids);
    }

    fn now(&self) -> DateTime<Utc> {
        self.env.now
    }

    /// The execution's deadline for a machine-level TimeoutSeconds. Validation keeps it at
    /// most 99999999 seconds; a larger stored value saturates to the latest instant.
    fn machine_deadline(&self, secs: u64) -> DateTime<Utc> {
        add_seconds(self.now(), i64::try_from(secs).unwrap_or(i64::MAX)).unwrap_or(DateTime::<Utc>::MAX_UTC)
    }

    /// Emit a task event of thread `th`, remembering the state it happened in.
    fn emit_task(&mut self, quiet: bool, state: &str, ty: &str, details: Value) {
        let id = self.emit(quiet, ty, details);
        if id > 0 {
            self.step.event_states.push((id, state.to_string()));
        }
    }

    fn emit(&mut self, quiet: bool, ty: &str, details: Value) -> i64 {
        if quiet {
            return 0;
        }
        let id = self.st.next_event_id;
        self.st.next_event_id += 1;
        let previous = self.step.events.last().map(|e| e.id).unwrap_or(id - 1);
        self.step.events.push(HistoryEvent { id, previous_event_id: previous, timestamp: self.now(), event_type: ty.to_string(), details });
        id
    }

    fn thread(&self, id: u32) -> Option<&Thread> {
        self.st.threads.get(&id)
    }

    fn state_of(&self, th: &Thread) -> Option<&State> {
        self.def.scope(th.scope).and_then(|m| m.state(&th.state))
    }

    /// Whether the state `th` is in may read `$$.Execution.Input` (cached per state).
    fn may_read_input(&self, th: &Thread) -> bool {
        let key = (th.scope, th.state.clone());
        if let Some(b) = self.reads_input.borrow().get(&key) {
            return *b;
        }
        let b = self.state_of(th).is_none_or(|s| reads_execution_input(&s.raw));
        self.reads_input.borrow_mut().insert(key, b);
        b
    }

    fn context(&self, th: &Thread, with_token: Option<&str>) -> Value {
        let info = &self.st.info;
        // The execution's input may be as large as the payload limit: copying it into every
        // state's context made a Map over its items cost O(items × input). It is left out for
        // a state that cannot read it (`reads_execution_input`), which cannot tell.
        let input = if self.may_read_input(th) { info.input.clone() } else { Value::Null };
        let mut exec = json!({
            "Id": info.execution_arn,
            "Input": input,
            "Name": info.name,
            "RoleArn": info.role_arn,
            "StartTime": info.start_time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "RedriveCount": info.redrive_count,
        });
        if let (Some(t), Some(o)) = (info.redrive_time, exec.as_object_mut()) {
            o.insert("RedriveTime".into(), Value::String(t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)));
        }
        let mut state = json!({
            "EnteredTime": th.entered_time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "Name": th.state,
        });
        let retryable =
            self.state_of(th).is_some_and(|s| matches!(s.kind, StateKind::Task(_) | StateKind::Map(_) | StateKind::Parallel { .. }));
        if retryable && let Some(o) = state.as_object_mut() {
            o.insert("RetryCount".into(), Value::from(th.retry_count));
        }
        let mut ctx = json!({
            "Execution": exec,
            "State": state,
            "StateMachine": { "Id": info.state_machine_arn, "Name": info.state_machine_name },
        });
        if let (Some(tok), Some(o)) = (with_token, ctx.as_object_mut()) {
            o.insert("Task".into(), json!({ "Token": tok }));
        }
        if let (Some((i, v)), Some(o)) = (&th.item, ctx.as_object_mut()) {
            o.insert("Map".into(), json!({ "Item": { "Index": i, "Value": v } }));
        }
        ctx
    }

    // -----------------------------------------------------------------------
    // Inputs

    fn input(&mut self, input: Input) -> Result<(), ApplyError> {
        let arn = self.st.info.execution_arn.clone();
        match input {
            Input::Start => {
                if self.st.next_event_id != 1 {
                    return Err(ApplyError::AlreadyStarted(arn));
                }
                let info = &self.st.info;
                let details = json!({
                    "input": to_json(&info.input),
                    "inputDetails": not_truncated(),
                    "roleArn": info.role_arn,
                });
                self.emit(false, "ExecutionStarted", details);
                if let Some(t) = self.def.root().timeout_seconds {
                    self.st.deadline = Some(self.machine_deadline(t));
                }
                let start = self.def.root().start_at.clone();
                let input = self.st.info.input.clone();
                let id = self.spawn(0, None, 0, start, input, Map::new(), None, false);
                self.runq.push_back(id);
            }
            Input::Wake => {
                if self.st.status != ExecutionStatus::Running {
                    return Ok(());
                }
                let now = self.now();
                if self.st.deadline.is_some_and(|d| d <= now) {
                    self.finish_abnormally(ExecutionStatus::TimedOut, "States.Timeout".into(), "The execution timed out.".into());
                    return Ok(());
                }
                let ids: Vec<u32> = self.st.threads.keys().copied().collect();
                for id in ids {
                    let Some(th) = self.thread(id) else { continue };
                    match &th.phase {
                        Phase::Sleep { until, then_exit } if *until <= now => {
                            let next = match then_exit {
                                Some((out, assigned)) => {
                                    let st = self.state_of(th).map(|s| s.next.clone()).unwrap_or_default();
                                    Phase::Exit { output: out.clone(), next: st, assigned: assigned.clone() }
                                }
                                None => Phase::Run,
                            };
                            self.set_phase(id, next);
                            self.runq.push_back(id);
                        }
                        Phase::Task(t) => {
                            let timed_out = t.timeout_at.is_some_and(|d| d <= now);
                            let hb = t.heartbeat_at.is_some_and(|d| d <= now);
                            if timed_out || hb {
                                let (error, cause) =
                                    if timed_out { ("States.Timeout", String::new()) } else { ("States.HeartbeatTimeout", String::new()) };
                                self.task_failed(id, "TaskTimedOut", TaskError { error: error.into(), cause }, TokenOutcome::TimedOut);
                            }
                        }
                        _ => {}
                    }
                }
            }
            Input::TaskSubmitted { task_id, output } => {
                let id = self.find_task(&task_id)?;
                let Some(Phase::Task(t)) = self.thread(id).map(|t| &t.phase) else { return Ok(()) };
                if t.submitted {
                    return Ok(());
                }
                let (rt, res) = resource_parts(&t.resource);
                let details = json!({"resourceType": rt, "resource": res, "output": to_json(&output), "outputDetails": not_truncated()});
                if let Some((quiet, state)) = self.thread(id).map(|t| (t.quiet, t.state.clone())) {
                    self.emit_task(quiet, &state, "TaskSubmitted", details);
                }
                if let Some(th) = self.st.threads.get_mut(&id)
                    && let Phase::Task(t) = &mut th.phase
                {
                    t.submitted = true;
                }
            }
            Input::TaskResult { task_id, result } => {
                let id = self.find_task(&task_id)?;
                match result {
                    Ok(v) => self.task_succeeded(id, v),
                    Err(e) => self.task_failed(id, "TaskFailed", e, TokenOutcome::Failed),
                }
            }
            Input::Heartbeat { token } => {
                let id = self.find_task(&token)?;
                let now = self.now();
                if let Some(th) = self.st.threads.get_mut(&id)
                    && let Phase::Task(t) = &mut th.phase
                    && let Some(h) = t.heartbeat_seconds
                {
                    t.heartbeat_at = Some(add_seconds(now, h).unwrap_or(DateTime::<Utc>::MAX_UTC));
                }
            }
            Input::Stop { error, cause } => {
                if self.st.status != ExecutionStatus::Running {
                    return Err(ApplyError::NotRunning(arn));
                }
                let mut details = Map::new();
                if let Some(e) = &error {
                    details.insert("error".into(), Value::String(e.clone()));
                }
                if let Some(c) = &cause {
                    details.insert("cause".into(), Value::String(c.clone()));
                }
                self.abort_all();
                self.emit(false, "ExecutionAborted", Value::Object(details));
                self.st.status = ExecutionStatus::Aborted;
                self.st.error = error;
                self.st.cause = cause;
                self.st.stop_time = Some(self.now());
            }
            Input::Redrive => self.redrive()?,
        }
        Ok(())
    }

    fn find_task(&self, task_id: &str) -> Result<u32, ApplyError> {
        if self.st.status != ExecutionStatus::Running {
            return Err(ApplyError::NotRunning(self.st.info.execution_arn.clone()));
        }
        self.st
            .threads
            .values()
            .find(|t| matches!(&t.phase, Phase::Task(w) if w.task_id == task_id || w.token.as_deref() == Some(task_id)))
            .map(|t| t.id)
            .ok_or_else(|| ApplyError::UnknownTask(task_id.to_string()))
    }

    #[allow(clippy::too_many_arguments)]
    fn spawn(
        &mut self,
        scope: usize,
        parent: Option<u32>,
        index: usize,
        state: String,
        input: Value,
        vars: Map<String, Value>,
        item: Option<(usize, Value)>,
        quiet: bool,
    ) -> u32 {
        // A thread starts with its own copy of its input and of the variables it sees: the
        // copies are charged to the evaluation budget like any other (a Map of many items over
        // a large variable copies it once an item).
        let _ = crate::asl::budget::charge_json(&input);
        for v in vars.values() {
            if crate::asl::budget::charge_json(v).is_err() {
                break;
            }
        }
        let id = self.st.next_thread;
        self.st.next_thread += 1;
        let th = Thread {
            id,
            scope,
            parent,
            index,
            state,
            input,
            phase: Phase::Enter,
            entered_event: 0,
            entered_time: self.now(),
            retries: vec![],
            retry_count: 0,
            vars,
            item,
            quiet,
            failed_fanout: None,
        };
        self.st.threads.insert(id, th);
        id
    }

    fn set_phase(&mut self, id: u32, phase: Phase) {
        if let Some(th) = self.st.threads.get_mut(&id) {
            th.phase = phase;
        }
    }

    // -----------------------------------------------------------------------
    // Scheduler

    fn runnable(&self, id: u32) -> bool {
        self.thread(id).is_some_and(|t| matches!(t.phase, Phase::Enter | Phase::Run | Phase::Exit { .. }))
    }

    fn run(&mut self) {
        loop {
            let slice = self.slice;
            while let Some(id) = self.runq.pop_front() {
                if self.st.status != ExecutionStatus::Running || !self.runnable(id) {
                    continue;
                }
                if self.work >= slice {
                    self.runq.push_front(id);
                    self.pause();
                    return;
                }
                if self.spend() {
                    return;
                }
                self.tick(id);
                if self.runnable(id) {
                    self.runq.push_back(id);
                }
            }
            if self.st.status != ExecutionStatus::Running {
                return;
            }
            let Some((map, i)) = self.next_fill() else { return };
            if self.work >= slice {
                self.pause();
                return;
            }
            if self.spend() {
                return;
            }
            self.fill(map, i);
        }
    }

    /// Count one unit of work; true when the execution failed for having done too much
    /// (the history limit, or [`MAX_BURST`] without waiting).
    fn spend(&mut self) -> bool {
        self.work += 1;
        if self.carried.saturating_add(self.work) >= MAX_BURST || self.st.next_event_id >= HISTORY_LIMIT {
            self.fail_execution(
                "States.Runtime".into(),
                format!("The execution reached the maximum number of history events ({HISTORY_LIMIT})."),
            );
            return true;
        }
        false
    }

    /// The slice is spent with work left: the next step goes on from here.
    fn pause(&mut self) {
        self.st.resume = Some(Resume { at: self.now(), work: self.carried.saturating_add(self.work) });
    }

    /// The Map iteration to start next: in the newest Map with an iteration waiting to start
    /// and room under its MaxConcurrency. Called when no thread can run, so every iteration
    /// of every Map waits (or is done): the next one starts. O(Maps), not O(slots).
    fn next_fill(&mut self) -> Option<(u32, usize)> {
        if self.maps.is_none() {
            let ids = self.st.threads.values().filter(|t| matches!(&t.phase, Phase::Children(f) if f.kind == FanKind::Map)).map(|t| t.id);
            self.maps = Some(ids.collect());
        }
        let ids: Vec<u32> = self.maps.as_ref().map(|m| m.iter().rev().copied().collect()).unwrap_or_default();
        for id in ids {
            let candidate = match self.st.threads.get_mut(&id).map(|t| &mut t.phase) {
                Some(Phase::Children(f)) if f.kind == FanKind::Map => match f.next_pending() {
                    Some(i) => (f.max_concurrency == 0 || f.running() < f.max_concurrency).then_some(i),
                    None => {
                        self.forget_map(id);
                        continue;
                    }
                },
                _ => {
                    self.forget_map(id);
                    continue;
                }
            };
            if let Some(i) = candidate {
                return Some((id, i));
            }
        }
        None
    }

    fn forget_map(&mut self, id: u32) {
        if let Some(m) = self.maps.as_mut() {
            m.remove(&id);
        }
    }

    /// A Map thread whose iterations may start (entered, or redriven).
    fn note_map(&mut self, id: u32) {
        if let Some(m) = self.maps.as_mut() {
            m.insert(id);
        }
    }

    /// Start (or restart, after a redrive) iteration `i` of Map `id`.
    fn fill(&mut self, id: u32, i: usize) {
        let resume = match self.thread(id).map(|t| &t.phase) {
            Some(Phase::Children(f)) => match f.slots.get(i) {
                Some(Slot::Resume(c)) => Some(*c),
                _ => None,
            },
            _ => return,
        };
        match resume {
            Some(c) => {
                let name = self.thread(id).map(|t| t.state.clone()).unwrap_or_default();
                let quiet = self.thread(id).is_some_and(|t| t.quiet || matches!(&t.phase, Phase::Children(f) if f.distributed));
                if let Some(Phase::Children(f)) = self.st.threads.get_mut(&id).map(|t| &mut t.phase) {
                    f.set_slot(i, Slot::Running(c));
                }
                // A rescheduled iteration starts again in the history.
                self.emit(quiet, "MapIterationStarted", json!({"name": name, "index": i}));
                self.redrive_thread(c);
            }
            None => self.start_iteration(id, i),
        }
    }

    fn start_iteration(&mut self, parent: u32, i: usize) {
        // Once the step's budget is spent no more copies are made: the step is failed anyway.
        if crate::asl::budget::spent() {
            return;
        }
        let Some(th) = self.thread(parent) else { return };
        let Phase::Children(f) = &th.phase else { return };
        let scope = f.scopes.get(i).copied().unwrap_or(f.scopes[0]);
        let input = f.inputs.get(i).cloned().unwrap_or(Value::Null);

        let distributed = f.distributed;
        let quiet = th.quiet || distributed;
        // The copies below are the Map's own work: a spent budget names it.
        crate::asl::budget::label(&th.state);
        let vars = th.vars.clone();
        let map_name = th.state.clone();
        let Some(start) = self.def.scope(scope).map(|m| m.start_at.clone()) else { return };
        // $$.Map.Item is visible to ItemSelector only, not inside the iteration.
        let child = self.spawn(scope, Some(parent), i, start, input, vars, None, quiet);
        if let Some(Phase::Children(f)) = self.st.threads.get_mut(&parent).map(|t| &mut t.phase) {
            f.set_slot(i, Slot::Running(child));
        }
        if self.thread(parent).is_some_and(|t| matches!(&t.phase, Phase::Children(f) if f.kind == FanKind::Map)) {
            self.emit(quiet, "MapIterationStarted", json!({"name": map_name, "index": i}));
        }
        self.runq.push_back(child);
    }

    // -----------------------------------------------------------------------
    // One step of one thread

    fn tick(&mut self, id: u32) {
        let Some(th) = self.thread(id) else { return };
        // Only these phases step; the others (a Map's or Parallel's children above all) are
        // not cloned here, or a fan-out of n children would cost O(n) on every child's step.
        if !matches!(th.phase, Phase::Enter | Phase::Run | Phase::Exit { .. }) {
            return;
        }
        match th.phase.clone() {
            Phase::Enter => {
                let Some(state) = self.state_of(th).cloned() else {
                    let name = th.state.clone();
                    self.thread_failed(id, Failure::runtime(format!("State '{name}' does not exist")));
                    return;
                };
                let quiet = th.quiet;
                let input = th.input.clone();
                let ev = self.emit(
                    quiet,
                    &format!("{}StateEntered", state.type_name()),
                    json!({"name": state.name, "input": to_json(&input), "inputDetails": not_truncated()}),
                );
                let now = self.now();
                if let Some(th) = self.st.threads.get_mut(&id) {
                    th.entered_event = ev;
                    th.entered_time = now;
                    th.retries = vec![0; state.retry.len()];
                    th.retry_count = 0;
                    th.phase = Phase::Run;
                }
                self.run_state(id, &state);
            }
            Phase::Run => {
                if let Some(state) = self.state_of(th).cloned() {
                    self.run_state(id, &state);
                }
            }
            Phase::Exit { output, next, assigned } => self.exit_state(id, output, next, assigned),
            _ => {}
        }
    }

    fn exit_state(&mut self, id: u32, output: Value, next: Option<String>, assigned: Option<Map<String, Value>>) {
        let Some(th) = self.thread(id) else { return };
        let Some(state) = self.state_of(th).cloned() else { return };
        let quiet = th.quiet;
        let mut details = json!({"name": state.name, "output": to_json(&output), "outputDetails": not_truncated()});
        if let (Some(a), Some(o)) = (&assigned, details.as_object_mut()) {
            let shown: Map<String, Value> = a.iter().map(|(k, v)| (k.clone(), Value::String(to_json(v)))).collect();
            o.insert("assignedVariables".into(), Value::Object(shown));
            o.insert("assignedVariablesDetails".into(), not_truncated());
        }
        if !matches!(state.kind, StateKind::Fail(_)) {
            self.emit(quiet, &format!("{}StateExited", state.type_name()), details);
        }
        if let Some(th) = self.st.threads.get_mut(&id)
            && let Some(a) = assigned
        {
            th.vars.extend(a);
        }
        match next {
            Some(n) => {
                if let Some(th) = self.st.threads.get_mut(&id) {
                    th.state = n;
                    th.input = output;
                    th.phase = Phase::Enter;
                }
            }
            None => self.thread_done(id, output),
        }
    }

    fn scope_parts(&mut self, id: u32) -> Option<(Value, Map<String, Value>, u64)> {
        let th = self.thread(id)?;
        Some((self.context(th, None), th.vars.clone(), self.st.rng))
    }

    /// For a callback task about to run: a fresh token, also placed in the context as `Task.Token`.
    fn callback_token(&mut self, state: &State, ctx: &mut Value) -> Option<String> {
        let StateKind::Task(spec) = &state.kind else { return None };
        if !spec.resource.ends_with(".waitForTaskToken") {
            return None;
        }
        // The two draws keep the execution's random sequence as it always was; the token
        // itself is a keyed PRF of where it was issued, so no token reveals another.
        let a = eval::next_random(&mut self.st.rng);
        let b = eval::next_random(&mut self.st.rng);
        let tok = task_token(&self.env.token_key, &self.st.info.execution_arn, self.st.info.redrive_count, self.st.next_event_id, a, b);
        if let Some(o) = ctx.as_object_mut() {
            o.insert("Task".into(), json!({ "Token": tok }));
        }
        Some(tok)
    }

    fn run_state(&mut self, id: u32, state: &State) {
        // What a spent evaluation budget names; each state run is a unit of work too.
        crate::asl::budget::label(&state.name);
        let _ = crate::asl::budget::charge(1);
        let r = match state.query_language {
            QueryLanguage::JsonPath => self.run_jsonpath(id, state),
            QueryLanguage::Jsonata => self.run_jsonata(id, state),
        };
        if let Err(f) = r {
            if f.location.is_some() {
                let quiet = self.thread(id).is_some_and(|t| t.quiet);
                self.emit(
                    quiet,
                    "EvaluationFailed",
                    json!({"error": f.error, "cause": f.cause, "location": f.location, "state": state.name}),
                );
            }
            self.handle_error(id, f);
        }
    }

    // -----------------------------------------------------------------------
    // JSONPath states

    fn run_jsonpath(&mut self, id: u32, state: &State) -> Result<(), Failure> {
        let Some(th) = self.thread(id) else { return Ok(()) };
        let raw = th.input.clone();
        let entered = th.entered_event;
        let name = state.name.clone();
        let Some((mut ctx, vars, _)) = self.scope_parts(id) else { return Ok(()) };
        let token = self.callback_token(state, &mut ctx);
        let mut rng = self.st.rng;
        let res = (|| -> Result<Option<Phase>, Failure> {
            let mut scope = Scope { context: &ctx, vars: &vars, rng: &mut rng };
            let after_input = eval::select_path(&state.input_path, &raw, &scope, &name, entered)?;
            let effective = match &state.parameters {
                Some(p) if !matches!(state.kind, StateKind::Map(_)) => eval::template(p, &after_input, &mut scope, &name, entered)?,
                _ => after_input.clone(),
            };
            match &state.kind {
                StateKind::Pass { result } => {
                    let result = result.clone().unwrap_or(effective);
                    Ok(Some(self.finish_jsonpath(state, &raw, result, &mut scope, entered, state.next.clone())?))
                }
                StateKind::Succeed => {
                    let out = eval::select_path(&state.output_path, &after_input, &scope, &name, entered)?;
                    Ok(Some(Phase::Exit { output: out, next: None, assigned: None }))
                }
                StateKind::Fail(f) => {
                    let pick =
                        |v: &Option<Value>, p: &Option<String>, field: &str, scope: &mut Scope<'_>| -> Result<Option<String>, Failure> {
                            if let Some(v) = v {
                                return Ok(v.as_str().map(str::to_string));
                            }
                            let Some(p) = p else { return Ok(None) };
                            let val = if crate::asl::intrinsics::looks_like_intrinsic(p) {
                                eval::template(&json!({"v.$": p}), &raw, scope, &name, entered)?.get("v").cloned().unwrap_or(Value::Null)
                            } else {
                                match eval::resolve(p, &raw, scope) {
                                    Ok(Some(v)) => v,
                                    _ => {
                                        return Err(Failure::runtime(eval::state_cause(
                                            &name,
                                            entered,
                                            &format!(
                                                "The JSONPath '{p}' specified for the field '{field}' could not be found in the input '{}'",
                                                to_json(&raw)
                                            ),
                                        )));
                                    }
                                }
                            };
                            Ok(Some(match val {
                                Value::String(s) => s,
                                other => to_json(&other),
                            }))
                        };
                    let error = pick(&f.error, &f.error_path, "ErrorPath", &mut scope)?;
                    let cause = pick(&f.cause, &f.cause_path, "CausePath", &mut scope)?;
                    Err(Failure { origin: Origin::FailState, ..Failure::new(error.unwrap_or_default(), cause.unwrap_or_default()) })
                }
                StateKind::Choice { choices, default } => {
                    for c in choices {
                        let ChoiceCondition::Rule(rule) = &c.rule else { continue };
                        let resolver = |p: &str| eval::resolve(p, &after_input, &scope);
                        let hit = rule
                            .evaluate(&resolver)
                            .map_err(|e| Failure::new(e.error_name(), eval::state_cause(&name, entered, &e.cause())))?;
                        if hit {
                            let assigned = match &c.assign {
                                Some(a) => Some(obj(eval::template(a, &after_input, &mut scope, &name, entered)?)),
                                None => None,
                            };
                            let out = eval::select_path(&state.output_path, &after_input, &scope, &name, entered)?;
                            return Ok(Some(Phase::Exit { output: out, next: Some(c.next.clone()), assigned }));
                        }
                    }
                    match default {
                        Some(d) => {
                            let assigned = match &state.assign {
                                Some(a) => Some(obj(eval::template(a, &after_input, &mut scope, &name, entered)?)),
                                None => None,
                            };
                            let out = eval::select_path(&state.output_path, &after_input, &scope, &name, entered)?;
                            Ok(Some(Phase::Exit { output: out, next: Some(d.clone()), assigned }))
                        }
                        None => Err(Failure::new("States.NoChoiceMatched", format!("No Matches! at state '{name}'"))),
                    }
                }
                StateKind::Wait(spec) => {
                    let until = match spec {
                        WaitSpec::Seconds(v) => wait_until(self.now(), v.as_i64().unwrap_or(0), &name, entered)?,
                        WaitSpec::Timestamp(v) => parse_ts(v.as_str().unwrap_or_default()).unwrap_or(self.now()),
                        WaitSpec::SecondsPath(p) => {
                            let v = eval::select_required(p, &after_input, &scope, &name, entered)?;
                            let secs = match v.as_i64() {
                                Some(n) if v.is_i64() || v.is_u64() => n,
                                _ => {
                                    return Err(Failure::runtime(eval::state_cause(
                                        &name,
                                        entered,
                                        &format!("The SecondsPath parameter cannot be parsed as a long value: {p} == {}", show_scalar(&v)),
                                    )));
                                }
                            };
                            if secs < 0 {
                                return Err(Failure::runtime(eval::state_cause(
                                    &name,
                                    entered,
                                    &format!("The SecondsPath parameter references a negative value: {p} == {secs}"),
                                )));
                            }
                            wait_until(self.now(), secs, &name, entered)?
                        }
                        WaitSpec::TimestampPath(p) => {
                            let v = eval::select_required(p, &after_input, &scope, &name, entered)?;
                            match v.as_str().and_then(parse_ts) {
                                Some(t) => t,
                                None => {
                                    return Err(Failure::runtime(eval::state_cause(
                                        &name,
                                        entered,
                                        &format!(
                                            "The TimestampPath parameter does not reference a valid ISO-8601 extended offset date-time format string: {p} == {}",
                                            show_scalar(&v)
                                        ),
                                    )));
                                }
                            }
                        }
                    };
                    if until.signed_duration_since(self.now()).num_seconds() > MAX_WAIT_SECONDS {
                        return Err(Failure::runtime(eval::state_cause(&name, entered, "Wait state delay is too long.")));
                    }
                    let assigned = match &state.assign {
                        Some(a) => Some(obj(eval::template(a, &after_input, &mut scope, &name, entered)?)),
                        None => None,
                    };
                    let out = eval::select_path(&state.output_path, &after_input, &scope, &name, entered)?;
                    Ok(Some(Phase::Sleep { until, then_exit: Some((out, assigned)) }))
                }
                StateKind::Task(spec) => {
                    // A literal (validated already), or a value read through its `*Path` field.
                    let seconds = |lit: &Option<Value>, path: &Option<String>, field: &str| -> Result<Option<i64>, Failure> {
                        Ok(match (lit, path) {
                            (Some(v), _) => v.as_i64().map(|n| n.min(MAX_DEFINITION_SECONDS)),
                            (None, Some(p)) => Some(seconds_at_path(
                                &eval::select_required(p, &after_input, &scope, &name, entered)?,
                                field,
                                p,
                                &name,
                                entered,
                            )?),
                            _ => None,
                        })
                    };
                    let timeout = seconds(&spec.timeout, &spec.timeout_path, "TimeoutSecondsPath")?;
                    let heartbeat = seconds(&spec.heartbeat, &spec.heartbeat_path, "HeartbeatSecondsPath")?;
                    Ok(Some(self.schedule_task(id, state, effective, timeout, heartbeat, token.clone())))
                }
                StateKind::Parallel { branches } => Ok(Some(Phase::Children(Box::new(Fanout::parallel(effective, branches))))),
                StateKind::Map(spec) => {
                    let items_v = match &spec.items_path {
                        Some(p) => eval::select_required(p, &after_input, &scope, &name, entered)?,
                        None => after_input.clone(),
                    };
                    let Value::Array(items) = items_v else {
                        let p = spec.items_path.clone().unwrap_or_else(|| "$".into());
                        return Err(Failure::runtime(eval::state_cause(
                            &name,
                            entered,
                            &format!("Reference path \"{p}\" must point to array."),
                        )));
                    };
                    let mut inputs = Vec::with_capacity(items.len());
                    // One copy of the context for all items (each sets its own `Map.Item`).
                    let mut c = if spec.item_selector.is_some() { ctx.clone() } else { Value::Null };
                    for (i, item) in items.iter().enumerate() {
                        match &spec.item_selector {
                            Some(sel) => {
                                if let Some(o) = c.as_object_mut() {
                                    o.insert("Map".into(), json!({"Item": {"Index": i, "Value": item}}));
                                }
                                let mut s2 = Scope { context: &c, vars: &vars, rng: scope.rng };
                                inputs.push(eval::template(sel, &after_input, &mut s2, &name, entered)?);
                            }
                            None => inputs.push(item.clone()),
                        }
                    }
                    let num = |v: &Option<Value>, p: &Option<String>, field: &str| -> Result<Option<Value>, Failure> {
                        match (v, p) {
                            (Some(v), _) => Ok(Some(v.clone())),
                            (None, Some(p)) => {
                                let v = eval::select_required(p, &after_input, &scope, &name, entered)?;
                                let _ = field;
                                Ok(Some(v))
                            }
                            _ => Ok(None),
                        }
                    };
                    let maxc = num(&spec.max_concurrency, &spec.max_concurrency_path, "MaxConcurrencyPath")?;
                    let max_concurrency = match maxc.map(numeric_string) {
                        None => 0,
                        Some(v) => match v.as_u64() {
                            Some(n) => n as usize,
                            None => {
                                return Err(Failure::runtime(eval::state_cause(
                                    &name,
                                    entered,
                                    &format!(
                                        "The MaxConcurrencyPath field refers to value \"{}\" which is not a valid integer: {}",
                                        to_json(&v),
                                        spec.max_concurrency_path.clone().unwrap_or_default()
                                    ),
                                )));
                            }
                        },
                    };
                    let n_items = inputs.len();
                    let started = |f: Failure| Failure { origin: Origin::MapStarted(n_items), ..f };
                    let tc = num(&spec.tolerated_failure_count, &spec.tolerated_failure_count_path, "ToleratedFailureCountPath")?;
                    let tolerated_count = match tc.map(numeric_string) {
                        None => None,
                        Some(v) => match v.as_i64() {
                            Some(n) if n < 0 => {
                                return Err(started(Failure::runtime(eval::state_cause(
                                    &name,
                                    entered,
                                    "ToleratedFailureCount cannot be negative.",
                                ))));
                            }
                            Some(n) => Some(n as u64),
                            None => {
                                return Err(started(Failure::runtime(eval::state_cause(
                                    &name,
                                    entered,
                                    &format!(
                                        "The ToleratedFailureCountPath field refers to value \"{}\" which is not a valid integer: {}",
                                        to_json(&v),
                                        spec.tolerated_failure_count_path.clone().unwrap_or_default()
                                    ),
                                ))));
                            }
                        },
                    };
                    let tp =
                        num(&spec.tolerated_failure_percentage, &spec.tolerated_failure_percentage_path, "ToleratedFailurePercentagePath")?;
                    let tolerated_pct = match tp.map(numeric_string) {
                        None => None,
                        Some(v) => match v.as_f64() {
                            Some(n) if (0.0..=100.0).contains(&n) => Some(n),
                            _ => {
                                return Err(started(Failure::runtime(eval::state_cause(
                                    &name,
                                    entered,
                                    "ToleratedFailurePercentage must be between 0 and 100.",
                                ))));
                            }
                        },
                    };
                    let inputs = match &spec.item_batcher {
                        Some(b) => {
                            let field = |k: &str| -> Result<Option<u64>, Failure> {
                                match (b.get(k), b.get(format!("{k}Path")).and_then(Value::as_str)) {
                                    (Some(v), _) => Ok(v.as_u64()),
                                    (None, Some(p)) => {
                                        let v = numeric_string(eval::select_required(p, &after_input, &scope, &name, entered)?);
                                        match v.as_u64() {
                                            Some(n) if n > 0 => Ok(Some(n)),
                                            _ => Err(Failure::runtime(eval::state_cause(
                                                &name,
                                                entered,
                                                &format!(
                                                    "The {k}Path field refers to value \"{}\" which is not a valid positive integer: {p}",
                                                    to_json(&v)
                                                ),
                                            ))),
                                        }
                                    }
                                    _ => Ok(None),
                                }
                            };
                            let (items, bytes) = (field("MaxItemsPerBatch")?, field("MaxInputBytesPerBatch")?);
                            let batch_input = match b.get("BatchInput") {
                                Some(t) => Some(eval::template(t, &after_input, &mut scope, &name, entered)?),
                                None => None,
                            };
                            make_batches(inputs, items, bytes, batch_input)
                        }
                        None => inputs,
                    };
                    let n = inputs.len();
                    Ok(Some(Phase::Children(Box::new(Fanout {
                        kind: FanKind::Map,
                        effective: after_input,
                        inputs,
                        scopes: vec![spec.processor],
                        slots: vec![Slot::Pending; n],
                        max_concurrency,
                        tolerated_count,
                        tolerated_pct,
                        failures: 0,
                        distributed: spec.mode == MapMode::Distributed,
                        idx: FanIndex::default(),
                    }))))
                }
            }
        })();
        self.st.rng = rng;
        let phase = match res {
            Ok(Some(p)) => p,
            Ok(None) => return Ok(()),
            Err(f) if f.origin == Origin::FailState => {
                self.fail_state(id, f);
                return Ok(());
            }
            Err(f) if matches!(f.origin, Origin::MapStarted(_)) => {
                let Origin::MapStarted(n) = f.origin else { return Err(f) };
                let quiet = self.thread(id).is_some_and(|t| t.quiet);
                self.emit(quiet, "MapStateStarted", json!({"length": n}));
                return Err(Failure { origin: Origin::State, ..f });
            }
            Err(f) => return Err(f),
        };
        self.enter_phase(id, state, phase);
        Ok(())
    }

    /// ResultSelector, ResultPath, OutputPath and Assign for a JSONPath state's result.
    fn finish_jsonpath(
        &self,
        state: &State,
        raw: &Value,
        result: Value,
        scope: &mut Scope<'_>,
        entered: i64,
        next: Option<String>,
    ) -> Result<Phase, Failure> {
        let name = &state.name;
        let selected = match &state.result_selector {
            Some(sel) => eval::template(sel, &result, scope, name, entered)?,
            None => result,
        };
        let assigned = match &state.assign {
            Some(a) => Some(obj(eval::template(a, &selected, scope, name, entered)?)),
            None => None,
        };
        let combined = eval::apply_result_path(&state.result_path, raw, selected, name, entered)?;
        let out = eval::select_path(&state.output_path, &combined, scope, name, entered)?;
        check_size(&out, name)?;
        Ok(Phase::Exit { output: out, next, assigned })
    }

    fn enter_phase(&mut self, id: u32, state: &State, phase: Phase) {
        let quiet = self.thread(id).is_some_and(|t| t.quiet);
        match phase {
            Phase::Children(f) => {
                let kind = f.kind;
                let n = f.slots.len();
                self.widen_slice(n);
                let distributed = f.distributed;
                self.set_phase(id, Phase::Children(f));
                match kind {
                    FanKind::Map => {
                        self.note_map(id);
                        self.emit(quiet, "MapStateStarted", json!({"length": n}));
                        if distributed {
                            let arn = format!(
                                "{}/{}:{}",
                                self.st.info.execution_arn.replace(":execution:", ":mapRun:"),
                                state.name,
                                self.st.next_event_id
                            );
                            self.emit(quiet, "MapRunStarted", json!({"mapRunArn": arn}));
                        }
                        if n == 0 {
                            self.children_done(id);
                        }
                    }
                    FanKind::Parallel => {
                        self.emit(quiet, "ParallelStateStarted", Value::Null);
                        for i in 0..n {
                            self.start_iteration(id, i);
                        }
                    }
                }
            }
            Phase::Sleep { until, then_exit: Some((output, assigned)) } if until <= self.now() => {
                self.set_phase(id, Phase::Exit { output, next: state.next.clone(), assigned });
            }
            other => self.set_phase(id, other),
        }
    }

    fn schedule_task(
        &mut self,
        id: u32,
        state: &State,
        effective: Value,
        timeout: Option<i64>,
        heartbeat: Option<i64>,
        token: Option<String>,
    ) -> Phase {
        let StateKind::Task(spec) = &state.kind else { return Phase::Run };
        let Some(th) = self.thread(id) else { return Phase::Run };
        let quiet = th.quiet;
        let attempt = th.retry_count;
        let task_id = format!("{}#{}.{}", self.st.info.execution_arn, id, self.st.next_event_id);
        let (rt, res) = resource_parts(&spec.resource);
        let mut details = json!({"resourceType": rt, "resource": res, "region": self.env.region, "parameters": to_json(&effective)});
        if let Some(o) = details.as_object_mut() {
            if let Some(t) = timeout {
                o.insert("timeoutInSeconds".into(), Value::from(t));
            }
            if let Some(h) = heartbeat {
                o.insert("heartbeatInSeconds".into(), Value::from(h));
            }
        }
        let scheduled = self.emit(quiet, "TaskScheduled", details);
        let started = self.emit(quiet, "TaskStarted", json!({"resourceType": rt, "resource": res}));
        for e in [scheduled, started].into_iter().filter(|e| *e > 0) {
            self.step.event_states.push((e, state.name.clone()));
        }
        let now = self.now();
        let timeout_at = timeout.map(|t| add_seconds(now, t).unwrap_or(DateTime::<Utc>::MAX_UTC));
        let heartbeat_at = heartbeat.map(|h| add_seconds(now, h).unwrap_or(DateTime::<Utc>::MAX_UTC));
        if let Some(tok) = &token {
            self.step.tokens_issued.push(TokenRecord {
                token: tok.clone(),
                task_id: task_id.clone(),
                state: state.name.clone(),
                resource: spec.resource.clone(),
                parameters: effective.clone(),
                issued_at: now,
                timeout_at,
                heartbeat_at,
            });
        }
        self.step.effects.push(Effect::RunTask(TaskRequest {
            task_id: task_id.clone(),
            state: state.name.clone(),
            resource: spec.resource.clone(),
            parameters: effective.clone(),
            attempt,
            token: token.clone(),
        }));
        Phase::Task(Box::new(TaskWait {
            task_id,
            token,
            resource: spec.resource.clone(),
            effective,
            timeout_at,
            heartbeat_seconds: heartbeat,
            heartbeat_at,
            submitted: false,
            attempt,
        }))
    }

    fn task_succeeded(&mut self, id: u32, result: Value) {
        let Some(th) = self.thread(id).cloned() else { return };
        let Phase::Task(t) = &th.phase else { return };
        let Some(state) = self.state_of(&th).cloned() else { return };
        if let Some(tok) = &t.token {
            self.step.tokens_closed.push((tok.clone(), TokenOutcome::Succeeded));
        }
        let (rt, res) = resource_parts(&t.resource);
        self.emit_task(
            th.quiet,
            &th.state,
            "TaskSucceeded",
            json!({"resourceType": rt, "resource": res, "output": to_json(&result), "outputDetails": not_truncated()}),
        );
        if to_json(&result).len() > PAYLOAD_LIMIT {
            self.handle_error(
                id,
                Failure::new(
                    "States.DataLimitExceeded",
                    format!(
                        "The state/task '{}' returned a result with a size exceeding the maximum number of bytes service limit.",
                        state.name
                    ),
                ),
            );
            return;
        }
        let phase = self.result_phase(id, &state, result);
        match phase {
            Ok(p) => {
                self.set_phase(id, p);
                self.runq.push_back(id);
            }
            Err(f) => {
                if f.location.is_some() {
                    self.emit(
                        th.quiet,
                        "EvaluationFailed",
                        json!({"error": f.error, "cause": f.cause, "location": f.location, "state": state.name}),
                    );
                }
                self.handle_error(id, f);
            }
        }
    }

    /// Turn a state's raw result (Task, Map, Parallel) into its exit.
    fn result_phase(&mut self, id: u32, state: &State, result: Value) -> Result<Phase, Failure> {
        let Some(th) = self.thread(id).cloned() else { return Ok(Phase::Run) };
        let (ctx, vars, mut rng) = self.scope_parts(id).unwrap_or_default();
        let r = match state.query_language {
            QueryLanguage::JsonPath => {
                let mut scope = Scope { context: &ctx, vars: &vars, rng: &mut rng };
                self.finish_jsonpath(state, &th.input, result, &mut scope, th.entered_event, state.next.clone())
            }
            QueryLanguage::Jsonata => {
                let mut env = self.jsonata_env(&th, &ctx, &vars, &mut rng, Some(result.clone()), None);
                jsonata_finish(&mut env, state, &th.input, Some(result), state.next.clone(), None)
            }
        };
        self.st.rng = rng;
        r
    }

    fn task_failed(&mut self, id: u32, event: &str, err: TaskError, outcome: TokenOutcome) {
        let Some(th) = self.thread(id).cloned() else { return };
        let Phase::Task(t) = &th.phase else { return };
        if let Some(tok) = &t.token {
            self.step.tokens_closed.push((tok.clone(), outcome));
        }
        let (rt, res) = resource_parts(&t.resource);
        let mut details = json!({"resourceType": rt, "resource": res, "error": err.error});
        if !err.cause.is_empty()
            && let Some(o) = details.as_object_mut()
        {
            o.insert("cause".into(), Value::String(err.cause.clone()));
        }
        self.emit_task(th.quiet, &th.state, event, details);
        self.handle_error(id, Failure::new(err.error, err.cause));
    }

    // -----------------------------------------------------------------------
    // Errors: retry, catch, fail

    fn handle_error(&mut self, id: u32, f: Failure) {
        let Some(th) = self.thread(id).cloned() else { return };
        let Some(state) = self.state_of(&th).cloned() else {
            self.thread_failed(id, f);
            return;
        };
        // Retry
        if let Some(i) = state.retry.iter().position(|r| error_matches(&r.error_equals, &f.error)) {
            let r = &state.retry[i];
            let used = th.retries.get(i).copied().unwrap_or(0);
            if used < r.max_attempts {
                let mut delay = r.interval_seconds * r.backoff_rate.powi(i32::try_from(used).unwrap_or(i32::MAX));
                if let Some(m) = r.max_delay_seconds {
                    delay = delay.min(m);
                }
                // Back-off grows without bound at high attempt counts: never wait longer than
                // an execution may live (one year), and never compute an instant out of range.
                if !delay.is_finite() || delay > MAX_WAIT_SECONDS as f64 {
                    delay = MAX_WAIT_SECONDS as f64;
                }
                delay = delay.max(0.0);
                if r.jitter == Jitter::Full {
                    let x = eval::next_random(&mut self.st.rng);
                    delay *= (x >> 11) as f64 / (1u64 << 53) as f64;
                }
                let until = add_millis(self.now(), (delay * 1000.0) as i64).unwrap_or(DateTime::<Utc>::MAX_UTC);
                if let Some(th) = self.st.threads.get_mut(&id) {
                    if let Some(c) = th.retries.get_mut(i) {
                        *c += 1;
                    }
                    th.retry_count += 1;
                    th.phase = Phase::Sleep { until, then_exit: None };
                }
                if until <= self.now() {
                    self.set_phase(id, Phase::Run);
                    self.runq.push_back(id);
                }
                return;
            }
        }
        // Not retried: a Map or Parallel state reports its failure now (a runtime
        // error fails the execution without it).
        match state.kind {
            _ if f.error == "States.Runtime" => {}
            StateKind::Map(_) => {
                self.emit(th.quiet, "MapStateFailed", Value::Null);
            }
            StateKind::Parallel { .. } => {
                self.emit(th.quiet, "ParallelStateFailed", Value::Null);
            }
            _ => {}
        }
        // Catch
        if let Some(c) = state.catch.iter().find(|c| error_matches(&c.error_equals, &f.error)) {
            let err_out = json!({"Error": f.error, "Cause": f.cause});
            let r = match state.query_language {
                QueryLanguage::JsonPath => {
                    let (ctx, vars, mut rng) = self.scope_parts(id).unwrap_or_default();
                    let res = (|| {
                        let mut scope = Scope { context: &ctx, vars: &vars, rng: &mut rng };
                        let assigned = match &c.assign {
                            Some(a) => Some(obj(eval::template(a, &err_out, &mut scope, &state.name, th.entered_event)?)),
                            None => None,
                        };
                        let out = eval::apply_result_path(&c.result_path, &th.input, err_out.clone(), &state.name, th.entered_event)?;
                        Ok::<_, Failure>(Phase::Exit { output: out, next: Some(c.next.clone()), assigned })
                    })();
                    self.st.rng = rng;
                    res
                }
                QueryLanguage::Jsonata => {
                    let (ctx, vars, mut rng) = self.scope_parts(id).unwrap_or_default();
                    let res = {
                        let mut env = self.jsonata_env(&th, &ctx, &vars, &mut rng, None, Some(err_out.clone()));
                        let out = match &c.output {
                            Some(o) => env.value("Output", o),
                            None => Ok(err_out.clone()),
                        };
                        let assigned = match &c.assign {
                            Some(a) => env.value("Assign", a).map(|v| Some(obj(v))),
                            None => Ok(None),
                        };
                        match (out, assigned) {
                            (Ok(o), Ok(a)) => Ok(Phase::Exit { output: o, next: Some(c.next.clone()), assigned: a }),
                            (Err(e), _) | (_, Err(e)) => Err(e),
                        }
                    };
                    self.st.rng = rng;
                    res
                }
            };
            match r {
                Ok(p) => {
                    self.set_phase(id, p);
                    self.runq.push_back(id);
                }
                Err(e) => self.thread_failed(id, e),
            }
            return;
        }
        self.thread_failed(id, f);
    }

    /// A Fail state: the thread fails with the state's error (no retry/catch).
    fn fail_state(&mut self, id: u32, f: Failure) {
        self.thread_failed(id, f);
    }

    fn thread_failed(&mut self, id: u32, f: Failure) {
        let Some(th) = self.thread(id).cloned() else { return };
        // Abort whatever runs below this thread.
        if let Phase::Children(fan) = &th.phase {
            for s in &fan.slots {
                if let Slot::Running(c) = s {
                    self.abort_thread(*c);
                }
            }
        }
        if let Phase::Task(t) = &th.phase
            && let Some(tok) = &t.token
            && !self.step.tokens_closed.iter().any(|(k, _)| k == tok)
        {
            self.step.tokens_closed.push((tok.clone(), TokenOutcome::Aborted));
        }
        let error = f.error.clone();
        let cause = f.cause.clone();
        if let Some(th) = self.st.threads.get_mut(&id) {
            // Keep the fan-out record under the failure so redrive can rerun only what failed.
            if let Phase::Children(fan) = std::mem::replace(&mut th.phase, Phase::Failed { error: error.clone(), cause: cause.clone() }) {
                th.failed_fanout = Some(fan);
            }
        }
        match th.parent {
            None => self.fail_execution(error, cause),
            Some(p) => self.child_failed(p, id, th.index, f),
        }
    }

    fn fail_execution(&mut self, error: String, cause: String) {
        self.abort_all();
        let mut d = Map::new();
        if !error.is_empty() {
            d.insert("error".into(), Value::String(error.clone()));
        }
        if !cause.is_empty() {
            d.insert("cause".into(), Value::String(cause.clone()));
        }
        self.emit(false, "ExecutionFailed", Value::Object(d));
        self.st.status = ExecutionStatus::Failed;
        self.st.error = Some(error).filter(|e| !e.is_empty());
        self.st.cause = Some(cause).filter(|c| !c.is_empty());
        self.st.stop_time = Some(self.now());
    }

    fn finish_abnormally(&mut self, status: ExecutionStatus, error: String, cause: String) {
        self.abort_all();
        let ty = match status {
            ExecutionStatus::TimedOut => "ExecutionTimedOut",
            _ => "ExecutionAborted",
        };
        self.emit(false, ty, json!({"error": error, "cause": cause}));
        self.st.status = status;
        self.st.error = Some(error);
        self.st.cause = Some(cause);
        self.st.stop_time = Some(self.now());
    }

    /// Stop every waiting thread (execution stopped, timed out or failed).
    fn abort_all(&mut self) {
        let ids: Vec<u32> = self.st.threads.keys().copied().collect();
        for id in ids {
            let Some(th) = self.st.threads.get_mut(&id) else { continue };
            match &th.phase {
                Phase::Task(t) => {
                    if let Some(tok) = t.token.clone()
                        && !self.step.tokens_closed.iter().any(|(k, _)| *k == tok)
                    {
                        self.step.tokens_closed.push((tok, TokenOutcome::Aborted));
                    }
                    th.phase = Phase::Aborted;
                }
                Phase::Enter | Phase::Run | Phase::Exit { .. } | Phase::Sleep { .. } => th.phase = Phase::Aborted,
                _ => {}
            }
        }
        self.runq.clear();
    }

    fn abort_thread(&mut self, id: u32) {
        let Some(th) = self.thread(id).cloned() else { return };
        match &th.phase {
            Phase::Children(f) => {
                for s in &f.slots {
                    if let Slot::Running(c) = s {
                        self.abort_thread(*c);
                    }
                }
            }
            Phase::Task(t) => {
                if let Some(tok) = &t.token {
                    self.step.tokens_closed.push((tok.clone(), TokenOutcome::Aborted));
                }
            }
            _ => {}
        }
        if let Some(p) = th.parent {
            if let Some(Phase::Children(f)) = self.thread(p).map(|t| &t.phase)
                && f.kind == FanKind::Map
            {
                let name = self.thread(p).map(|t| t.state.clone()).unwrap_or_default();
                let quiet = self.thread(p).is_some_and(|t| t.quiet || f.distributed);
                self.emit(quiet, "MapIterationAborted", json!({"name": name, "index": th.index}));
            }
            if let Some(Phase::Children(f)) = self.st.threads.get_mut(&p).map(|t| &mut t.phase) {
                f.set_slot(th.index, Slot::Aborted(id));
            }
        }
        self.set_phase(id, Phase::Aborted);
    }

    fn thread_done(&mut self, id: u32, output: Value) {
        let Some((parent, index)) = self.thread(id).map(|t| (t.parent, t.index)) else { return };
        match parent {
            None => {
                self.set_phase(id, Phase::Done { output: output.clone() });
                self.emit(false, "ExecutionSucceeded", json!({"output": to_json(&output), "outputDetails": not_truncated()}));
                self.st.status = ExecutionStatus::Succeeded;
                self.st.output = Some(output);
                self.st.stop_time = Some(self.now());
                // Finished threads carry nothing redrive or the console needs.
                self.st.threads.clear();
            }
            Some(p) => {
                // Only what is needed of the parent: it holds every slot, so cloning it here
                // would cost O(items) per finished iteration.
                let Some((name, quiet, is_map)) = self.thread(p).and_then(|t| match &t.phase {
                    Phase::Children(f) => Some((t.state.clone(), t.quiet || f.distributed, f.kind == FanKind::Map)),
                    _ => None,
                }) else {
                    self.set_phase(id, Phase::Done { output });
                    return;
                };
                if is_map {
                    self.emit(quiet, "MapIterationSucceeded", json!({"name": name, "index": index}));
                }
                if let Some(Phase::Children(f)) = self.st.threads.get_mut(&p).map(|t| &mut t.phase) {
                    f.set_slot(index, Slot::Succeeded(output));
                }
                self.st.threads.remove(&id);
                self.children_done(p);
            }
        }
    }

    fn child_failed(&mut self, p: u32, child: u32, index: usize, f: Failure) {
        // What is needed of the parent's fan-out, without its slots (O(1), not O(items)).
        let Some((name, quiet, kind, distributed, total, failures, tolerated_count, tolerated_pct)) =
            self.thread(p).and_then(|t| match &t.phase {
                Phase::Children(f) => {
                    Some((t.state.clone(), t.quiet, f.kind, f.distributed, f.slots.len(), f.failures, f.tolerated_count, f.tolerated_pct))
                }
                _ => None,
            })
        else {
            return;
        };
        if let Some(Phase::Children(fm)) = self.st.threads.get_mut(&p).map(|t| &mut t.phase) {
            fm.set_slot(index, Slot::Failed(child));
            fm.failures += 1;
        }
        match kind {
            FanKind::Parallel => {
                self.parent_fails(p, f);
            }
            FanKind::Map => {
                self.emit(quiet || distributed, "MapIterationFailed", json!({"name": name, "index": index}));
                let total = total.max(1);
                let failures = failures + 1;
                let tolerance_set = tolerated_count.is_some() || tolerated_pct.is_some();
                let within = tolerance_set
                    && tolerated_count.is_none_or(|c| failures as u64 <= c)
                    && tolerated_pct.is_none_or(|pct| (failures as f64) * 100.0 / (total as f64) <= pct);
                let within = within
                    || (tolerated_count.is_some_and(|c| failures as u64 <= c))
                    || (tolerated_pct.is_some_and(|pct| (failures as f64) * 100.0 / (total as f64) <= pct));
                if within {
                    self.children_done(p);
                } else if tolerance_set {
                    self.parent_fails(
                        p,
                        Failure::new("States.ExceedToleratedFailureThreshold", "The specified tolerated failure threshold was exceeded"),
                    );
                } else {
                    self.parent_fails(p, f);
                }
            }
        }
    }

    /// A Map or Parallel state fails because of a child: stop the others, then retry/catch/fail.
    fn parent_fails(&mut self, p: u32, f: Failure) {
        let Some(parent) = self.thread(p).cloned() else { return };
        let Phase::Children(fan) = &parent.phase else { return };
        for s in &fan.slots {
            if let Slot::Running(c) = s {
                self.abort_thread(*c);
            }
        }
        if fan.distributed {
            self.emit(parent.quiet, "MapRunFailed", json!({"error": f.error, "cause": f.cause}));
        }
        // Remember the fan-out for redrive before the phase changes.
        if let Some(th) = self.st.threads.get_mut(&p)
            && let Phase::Children(fan) = std::mem::replace(&mut th.phase, Phase::Run)
        {
            th.failed_fanout = Some(fan);
        }
        self.handle_error(p, Failure { location: None, origin: Origin::State, ..f });
        // A retry reruns everything; a catch leaves the state: drop the record either way.
        if let Some(th) = self.st.threads.get_mut(&p)
            && !matches!(th.phase, Phase::Failed { .. })
        {
            th.failed_fanout = None;
        }
        let dead: Vec<u32> =
            self.st.threads.values().filter(|t| t.parent == Some(p) && !matches!(t.phase, Phase::Failed { .. })).map(|t| t.id).collect();
        let keep_failed = self.thread(p).is_some_and(|t| matches!(t.phase, Phase::Failed { .. }));
        for d in dead {
            if !keep_failed {
                self.remove_tree(d);
            }
        }
        if !keep_failed {
            let failed: Vec<u32> = self.st.threads.values().filter(|t| t.parent == Some(p)).map(|t| t.id).collect();
            for d in failed {
                self.remove_tree(d);
            }
        }
    }

    fn remove_tree(&mut self, id: u32) {
        let kids: Vec<u32> = self.st.threads.values().filter(|t| t.parent == Some(id)).map(|t| t.id).collect();
        for k in kids {
            self.remove_tree(k);
        }
        self.st.threads.remove(&id);
    }

    fn children_done(&mut self, p: u32) {
        // Look before cloning: this runs as each child finishes, and the parent holds them all.
        let finished = match self.st.threads.get_mut(&p).map(|t| &mut t.phase) {
            Some(Phase::Children(fan)) => fan.all_settled(),
            _ => return,
        };
        if !finished {
            return;
        }
        let Some(parent) = self.thread(p).cloned() else { return };
        let Phase::Children(fan) = &parent.phase else { return };
        let results: Vec<Value> = fan
            .slots
            .iter()
            .map(|s| match s {
                Slot::Succeeded(v) => v.clone(),
                _ => Value::Null,
            })
            .collect();
        if fan.kind == FanKind::Map {
            if fan.distributed {
                self.emit(parent.quiet, "MapRunSucceeded", Value::Null);
            }
            self.emit(parent.quiet, "MapStateSucceeded", Value::Null);
        }
        let dead: Vec<u32> = self.st.threads.values().filter(|t| t.parent == Some(p)).map(|t| t.id).collect();
        for d in dead {
            self.remove_tree(d);
        }
        let Some(state) = self.state_of(&parent).cloned() else { return };
        match self.result_phase(p, &state, Value::Array(results)) {
            Ok(phase) => {
                self.set_phase(p, phase);
                self.runq.push_back(p);
            }
            Err(f) => {
                self.set_phase(p, Phase::Run);
                self.handle_error(p, f);
            }
        }
    }

    // -----------------------------------------------------------------------
    // Redrive

    fn redrive(&mut self) -> Result<(), ApplyError> {
        let arn = self.st.info.execution_arn.clone();
        if !self.st.status.is_redrivable() {
            return Err(ApplyError::NotRedrivable {
                arn,
                reason: format!("it is {}; only FAILED, TIMED_OUT or ABORTED executions can be redriven", self.st.status),
            });
        }
        if let Some(stop) = self.st.stop_time
            && self.now() - stop > Duration::days(14)
        {
            return Err(ApplyError::NotRedrivable { arn, reason: "it stopped more than 14 days ago".into() });
        }
        if self.st.threads.is_empty() {
            return Err(ApplyError::NotRedrivable { arn, reason: "it has no unsuccessful state to resume from".into() });
        }
        self.st.info.redrive_count += 1;
        self.st.info.redrive_time = Some(self.now());
        self.st.status = ExecutionStatus::Running;
        self.st.error = None;
        self.st.cause = None;
        self.st.stop_time = None;
        if let Some(t) = self.def.root().timeout_seconds {
            self.st.deadline = Some(self.machine_deadline(t));
        }
        self.emit(false, "ExecutionRedriven", json!({"redriveCount": self.st.info.redrive_count}));
        // Resume from the top: every failed or aborted thread re-enters its state;
        // a failed Map/Parallel reruns only its unsuccessful children.
        let roots: Vec<u32> = self.st.threads.values().filter(|t| t.parent.is_none()).map(|t| t.id).collect();
        for r in roots {
            self.redrive_thread(r);
        }
        Ok(())
    }

    fn redrive_thread(&mut self, id: u32) {
        let Some(th) = self.thread(id).cloned() else { return };
        match (&th.phase, th.failed_fanout.clone()) {
            (Phase::Failed { .. } | Phase::Aborted, Some(mut fan)) => {
                if let Some(t) = self.st.threads.get_mut(&id) {
                    t.failed_fanout = None;
                }
                fan.failures = 0;
                // Map iterations are rescheduled in turn (fill_maps); Parallel branches resume at once.
                let kind = fan.kind;
                let mut rerun = vec![];
                for s in fan.slots.iter_mut() {
                    if let Slot::Failed(c) | Slot::Aborted(c) | Slot::Running(c) | Slot::Resume(c) = s {
                        let c = *c;
                        *s = match (self.st.threads.contains_key(&c), kind) {
                            (false, _) => Slot::Pending,
                            (true, FanKind::Map) => Slot::Resume(c),
                            (true, FanKind::Parallel) => {
                                rerun.push(c);
                                Slot::Running(c)
                            }
                        };
                    }
                }
                fan.reindex();
                self.set_phase(id, Phase::Children(fan));
                if kind == FanKind::Map {
                    self.note_map(id);
                }
                for c in rerun {
                    self.redrive_thread(c);
                }
                if kind == FanKind::Parallel {
                    let pending: Vec<usize> = match self.thread(id).map(|t| &t.phase) {
                        Some(Phase::Children(f)) => {
                            f.slots.iter().enumerate().filter(|(_, s)| matches!(s, Slot::Pending)).map(|(i, _)| i).collect()
                        }
                        _ => vec![],
                    };
                    for i in pending {
                        self.start_iteration(id, i);
                    }
                }
            }
            (Phase::Failed { .. }, None) => {
                self.set_phase(id, Phase::Enter);
                self.runq.push_back(id);
            }
            (Phase::Aborted, None) => {
                self.set_phase(id, Phase::Enter);
                self.runq.push_back(id);
            }
            (Phase::Children(fan), _) => {
                // Stopped or timed out while children ran. A Map reschedules its stopped
                // iterations in turn; anything still in flight below resumes where it was.
                let is_map = fan.kind == FanKind::Map;
                let kids: Vec<(usize, u32)> =
                    fan.slots.iter().enumerate().filter_map(|(i, s)| if let Slot::Running(c) = s { Some((i, *c)) } else { None }).collect();
                for (i, k) in kids {
                    let stopped = self
                        .thread(k)
                        .is_some_and(|t| matches!(t.phase, Phase::Aborted | Phase::Failed { .. }) && t.failed_fanout.is_none());
                    if is_map && stopped {
                        if let Some(Phase::Children(f)) = self.st.threads.get_mut(&id).map(|t| &mut t.phase) {
                            f.set_slot(i, Slot::Resume(k));
                        }
                        self.note_map(id);
                    } else {
                        self.redrive_thread(k);
                    }
                }
            }
            _ => {}
        }
    }

    // -----------------------------------------------------------------------
    // JSONata states

    fn jsonata_env<'e>(
        &self,
        th: &'e Thread,
        ctx: &Value,
        vars: &'e Map<String, Value>,
        rng: &'e mut u64,
        result: Option<Value>,
        error_output: Option<Value>,
    ) -> JsonataEnv<'e> {
        let mut states = json!({"input": th.input, "context": ctx});
        if let Some(o) = states.as_object_mut() {
            if let Some(r) = result {
                o.insert("result".into(), r);
            }
            if let Some(e) = error_output {
                o.insert("errorOutput".into(), e);
            }
        }
        JsonataEnv { states, vars, rng, state: &th.state, entered: th.entered_event, now_ms: self.now().timestamp_millis() }
    }

    fn run_jsonata(&mut self, id: u32, state: &State) -> Result<(), Failure> {
        let Some(th) = self.thread(id).cloned() else { return Ok(()) };
        let (mut ctx, vars, _) = self.scope_parts(id).unwrap_or_default();
        let token = self.callback_token(state, &mut ctx);
        let mut rng = self.st.rng;
        let now = self.now();
        let res = (|| -> Result<Phase, Failure> {
            let mut env = self.jsonata_env(&th, &ctx, &vars, &mut rng, None, None);
            match &state.kind {
                StateKind::Pass { .. } | StateKind::Succeed => jsonata_finish(&mut env, state, &th.input, None, state.next.clone(), None),
                StateKind::Fail(f) => {
                    let error = match &f.error {
                        Some(v) => Some(env.value("Error", v)?),
                        None => None,
                    };
                    let cause = match &f.cause {
                        Some(v) => Some(env.value("Cause", v)?),
                        None => None,
                    };
                    let s = |v: Option<Value>| match v {
                        Some(Value::String(s)) => s,
                        Some(other) => to_json(&other),
                        None => String::new(),
                    };
                    Err(Failure { origin: Origin::FailState, ..Failure::new(s(error), s(cause)) })
                }
                StateKind::Choice { choices, default } => {
                    let (next, own) = jsonata_choose(&mut env, state, choices, default)?;
                    jsonata_finish(&mut env, state, &th.input, None, Some(next), own)
                }
                StateKind::Wait(spec) => {
                    let until = match spec {
                        WaitSpec::Seconds(v) => {
                            let s = env.value("Seconds", v)?;
                            let secs = s.as_i64().filter(|n| *n >= 0).ok_or_else(|| env.unexpected_type("Seconds", v, "integer", &s))?;
                            wait_until(now, secs, &state.name, th.entered_event)?
                        }
                        WaitSpec::Timestamp(v) => {
                            let s = env.value("Timestamp", v)?;
                            match s.as_str().and_then(parse_ts) {
                                Some(t) => {
                                    if t.signed_duration_since(now).num_seconds() > MAX_WAIT_SECONDS {
                                        return Err(Failure::runtime(eval::state_cause(
                                            &state.name,
                                            th.entered_event,
                                            "Wait state delay is too long.",
                                        )));
                                    }
                                    t
                                }
                                None => {
                                    return Err(Failure {
                                        origin: eval::Origin::State,
                                        error: "States.QueryEvaluationError".into(),
                                        cause: eval::state_cause(
                                            &state.name,
                                            th.entered_event,
                                            &format!(
                                                "The Timestamp field cannot be parsed as an ISO-8601 extended offset date-time format string: {}",
                                                s.as_str().map(str::to_string).unwrap_or_else(|| to_json(&s))
                                            ),
                                        ),
                                        location: Some("Timestamp".into()),
                                    });
                                }
                            }
                        }
                        _ => now,
                    };
                    let Phase::Exit { output, next, assigned } =
                        jsonata_finish(&mut env, state, &th.input, None, state.next.clone(), None)?
                    else {
                        return Ok(Phase::Run);
                    };
                    if until <= now {
                        return Ok(Phase::Exit { output, next, assigned });
                    }
                    Ok(Phase::Sleep { until, then_exit: Some((output, assigned)) })
                }
                StateKind::Task(spec) => {
                    let args = match &state.arguments {
                        Some(a) => env.value("Arguments", a)?,
                        None => th.input.clone(),
                    };
                    let num = |env: &mut JsonataEnv<'_>, v: &Option<Value>, field: &str| -> Result<Option<i64>, Failure> {
                        match v {
                            None => Ok(None),
                            Some(v) => {
                                let r = env.value(field, v)?;
                                let n = r.as_i64().filter(|n| *n > 0).ok_or_else(|| env.unexpected_type(field, v, "integer", &r))?;
                                if n > MAX_DEFINITION_SECONDS {
                                    return Err(env.fail(
                                        field,
                                        format!(
                                            "The JSONata expression '{}' specified for the field '{field}' returned {n}, which is larger than the maximum of {MAX_DEFINITION_SECONDS} seconds.",
                                            v.as_str().and_then(eval::jsonata_expr).unwrap_or_default()
                                        ),
                                    ));
                                }
                                Ok(Some(n))
                            }
                        }
                    };
                    let timeout = num(&mut env, &spec.timeout, "TimeoutSeconds")?;
                    let heartbeat = num(&mut env, &spec.heartbeat, "HeartbeatSeconds")?;
                    Ok(Phase::Task(Box::new(TaskWait {
                        task_id: String::new(),
                        token: None,
                        resource: spec.resource.clone(),
                        effective: args,
                        timeout_at: None,
                        heartbeat_seconds: timeout.map(|_| 0).and(heartbeat).or(heartbeat),
                        heartbeat_at: None,
                        submitted: false,
                        attempt: timeout.map(|t| u32::try_from(t).unwrap_or(u32::MAX)).unwrap_or(0),
                    })))
                    .map(|p| match p {
                        Phase::Task(mut t) => {
                            t.timeout_at = timeout.map(|s| add_seconds(now, s).unwrap_or(DateTime::<Utc>::MAX_UTC));
                            Phase::Task(t)
                        }
                        other => other,
                    })
                }
                StateKind::Parallel { branches } => {
                    let args = match &state.arguments {
                        Some(a) => env.value("Arguments", a)?,
                        None => th.input.clone(),
                    };
                    Ok(Phase::Children(Box::new(Fanout::parallel(args, branches))))
                }
                StateKind::Map(spec) => {
                    let items = match &spec.items {
                        Some(src) => {
                            let v = env.value("Items", src)?;
                            match v {
                                Value::Array(a) => a,
                                other => return Err(env.unexpected_type("Items", src, "array", &other)),
                            }
                        }
                        None => match &th.input {
                            Value::Array(a) => a.clone(),
                            other => {
                                return Err(Failure {
                                    origin: eval::Origin::State,
                                    error: "States.QueryEvaluationError".into(),
                                    cause: eval::state_cause(
                                        &state.name,
                                        th.entered_event,
                                        &format!("Map state input must be an array but was: {}", to_json(other)),
                                    ),
                                    location: Some("Items".into()),
                                });
                            }
                        },
                    };
                    let mut inputs = Vec::with_capacity(items.len());
                    for (i, item) in items.iter().enumerate() {
                        match &spec.item_selector {
                            Some(sel) => {
                                if let Some(o) = env.states.get_mut("context").and_then(Value::as_object_mut) {
                                    o.insert("Map".into(), json!({"Item": {"Index": i, "Value": item}}));
                                }
                                inputs.push(env.value("ItemSelector", sel)?);
                            }
                            None => inputs.push(item.clone()),
                        }
                    }
                    // Each field must give a number (an integer for the counts) from 0 to `max`;
                    // anything else fails the state, as TimeoutSeconds does.
                    let int = |env: &mut JsonataEnv<'_>,
                               v: &Option<Value>,
                               field: &str,
                               integer: bool,
                               max: f64|
                     -> Result<Option<f64>, Failure> {
                        let Some(src) = v else { return Ok(None) };
                        let r = env.value(field, src)?;
                        let Some(n) = r.as_f64().filter(|n| !integer || n.fract() == 0.0) else {
                            return Err(env.unexpected_type(field, src, if integer { "integer" } else { "number" }, &r));
                        };
                        let bound = if n < 0.0 {
                            "less than the minimum of 0".to_string()
                        } else if n > max {
                            format!("larger than the maximum of {max}")
                        } else {
                            return Ok(Some(n));
                        };
                        Err(env.fail(
                            field,
                            format!(
                                "The JSONata expression '{}' specified for the field '{field}' returned {}, which is {bound}.",
                                src.as_str().and_then(eval::jsonata_expr).unwrap_or_default(),
                                to_json(&r)
                            ),
                        ))
                    };
                    let maxc = int(&mut env, &spec.max_concurrency, "MaxConcurrency", true, 100_000.0)?.unwrap_or(0.0) as usize;
                    let tc =
                        int(&mut env, &spec.tolerated_failure_count, "ToleratedFailureCount", true, f64::from(i32::MAX))?.map(|n| n as u64);
                    let tp = int(&mut env, &spec.tolerated_failure_percentage, "ToleratedFailurePercentage", false, 100.0)?;
                    let inputs = match &spec.item_batcher {
                        Some(b) => {
                            let mut field = |k: &str| -> Result<Option<u64>, Failure> {
                                match b.get(k) {
                                    Some(v) => Ok(numeric_string(env.value(&format!("ItemBatcher/{k}"), v)?).as_u64()),
                                    None => Ok(None),
                                }
                            };
                            let (items, bytes) = (field("MaxItemsPerBatch")?, field("MaxInputBytesPerBatch")?);
                            let batch_input = match b.get("BatchInput") {
                                Some(t) => Some(env.value("ItemBatcher/BatchInput", t)?),
                                None => None,
                            };
                            make_batches(inputs, items, bytes, batch_input)
                        }
                        None => inputs,
                    };
                    let n = inputs.len();
                    Ok(Phase::Children(Box::new(Fanout {
                        kind: FanKind::Map,
                        effective: th.input.clone(),
                        inputs,
                        scopes: vec![spec.processor],
                        slots: vec![Slot::Pending; n],
                        max_concurrency: maxc,
                        tolerated_count: tc,
                        tolerated_pct: tp,
                        failures: 0,
                        distributed: spec.mode == MapMode::Distributed,
                        idx: FanIndex::default(),
                    })))
                }
            }
        })();
        self.st.rng = rng;
        match res {
            Ok(Phase::Task(t)) => {
                let timeout = t.timeout_at.map(|at| at.signed_duration_since(now).num_seconds());
                let phase = self.schedule_task(id, state, t.effective.clone(), timeout, t.heartbeat_seconds, token);
                self.set_phase(id, phase);
                Ok(())
            }
            Ok(p) => {
                self.enter_phase(id, state, p);
                Ok(())
            }
            Err(f) if f.origin == Origin::FailState => {
                self.fail_state(id, f);
                Ok(())
            }
            Err(f) => Err(f),
        }
    }
}

/// Output and Assign of a JSONata state (a matched Choice rule's own fields first). Both see
/// the variables as they were before this state: Output does not see what Assign sets.
pub(crate) fn jsonata_outputs(
    env: &mut JsonataEnv<'_>,
    state: &State,
    raw: &Value,
    result: Option<Value>,
    choice: Option<(Option<&Value>, Option<&Value>)>,
) -> Result<(Value, Option<Map<String, Value>>), Failure> {
    let (out_tpl, assign_tpl) = match choice {
        Some((o, a)) => (o.or(state.output.as_ref()), a.or(state.assign.as_ref())),
        None => (state.output.as_ref(), state.assign.as_ref()),
    };
    let assigned = match assign_tpl {
        Some(a) => Some(obj(env.value("Assign", a)?)),
        None => None,
    };
    let output = match out_tpl {
        Some(o) => env.value("Output", o)?,
        None => result.unwrap_or_else(|| raw.clone()),
    };
    Ok((output, assigned))
}

/// A JSONata Choice: the first rule whose Condition holds (its Next, and its own Output and
/// Assign), else the Default; `States.NoChoiceMatched` when neither.
#[allow(clippy::type_complexity)]
pub(crate) fn jsonata_choose<'s>(
    env: &mut JsonataEnv<'_>,
    state: &State,
    choices: &'s [ChoiceBranch],
    default: &Option<String>,
) -> Result<(String, Option<(Option<&'s Value>, Option<&'s Value>)>), Failure> {
    for c in choices {
        let ChoiceCondition::Condition(cond) = &c.rule else { continue };
        match env.value("Condition", cond)? {
            Value::Bool(true) => return Ok((c.next.clone(), Some((c.output.as_ref(), c.assign.as_ref())))),
            Value::Bool(false) => {}
            other => return Err(env.unexpected_type("Condition", cond, "boolean", &other)),
        }
    }
    match default {
        Some(d) => Ok((d.clone(), None)),
        None => Err(Failure::new("States.NoChoiceMatched", format!("No Matches! at state '{}'", state.name))),
    }
}

fn jsonata_finish(
    env: &mut JsonataEnv<'_>,
    state: &State,
    raw: &Value,
    result: Option<Value>,
    next: Option<String>,
    choice: Option<(Option<&Value>, Option<&Value>)>,
) -> Result<Phase, Failure> {
    let (output, assigned) = jsonata_outputs(env, state, raw, result, choice)?;
    check_size(&output, &state.name)?;
    Ok(Phase::Exit { output, next, assigned })
}

fn check_size(v: &Value, state: &str) -> Result<(), Failure> {
    if too_deep(v) {
        return Err(Failure::runtime(format!(
            "The state/task '{state}' returned a result nested deeper than {MAX_DEPTH} levels, the most Lightbox keeps."
        )));
    }
    if to_json(v).len() > PAYLOAD_LIMIT {
        return Err(Failure::new(
            "States.DataLimitExceeded",
            format!("The state/task '{state}' returned a result with a size exceeding the maximum number of bytes service limit."),
        ));
    }
    Ok(())
}

/// A `TimeoutSecondsPath` / `HeartbeatSecondsPath` value: a positive integer no larger than
/// 99999999, else `States.Runtime` in the style Step Functions uses for `SecondsPath`
/// (the field, the path, and the value as `path == value`).
fn seconds_at_path(v: &Value, field: &str, p: &str, state: &str, entered: i64) -> Result<i64, Failure> {
    let fail = |msg: String| Err(Failure::runtime(eval::state_cause(state, entered, &msg)));
    let n = match v.as_i64() {
        Some(n) if v.is_i64() || v.is_u64() => n,
        _ if v.is_u64() => return fail(format!("The {field} parameter references a value that is too large: {p} == {}", show_scalar(v))),
        _ => return fail(format!("The {field} parameter cannot be parsed as a long value: {p} == {}", show_scalar(v))),
    };
    if n <= 0 {
        return fail(format!("The {field} parameter references a non-positive value: {p} == {n}"));
    }
    if n > MAX_DEFINITION_SECONDS {
        return fail(format!("The {field} parameter references a value that is too large: {p} == {n}"));
    }
    Ok(n)
}

/// When a Wait of `secs` seconds from `now` ends; too long a wait is `States.Runtime`.
fn wait_until(now: DateTime<Utc>, secs: i64, state: &str, entered: i64) -> Result<DateTime<Utc>, Failure> {
    match add_seconds(now, secs) {
        Some(t) if secs <= MAX_WAIT_SECONDS => Ok(t),
        _ => Err(Failure::runtime(eval::state_cause(state, entered, "Wait state delay is too long."))),
    }
}

/// ItemBatcher: group item inputs into `{"BatchInput": .., "Items": [..]}` child inputs,
/// at most `max_items` items and `max_bytes` bytes of JSON each (at least one item per batch).
fn make_batches(items: Vec<Value>, max_items: Option<u64>, max_bytes: Option<u64>, batch_input: Option<Value>) -> Vec<Value> {
    let wrap = |items: Vec<Value>| {
        let mut m = Map::new();
        if let Some(b) = &batch_input {
            m.insert("BatchInput".into(), b.clone());
        }
        m.insert("Items".into(), Value::Array(items));
        Value::Object(m)
    };
    let mut out = vec![];
    let mut cur: Vec<Value> = vec![];
    let mut cur_bytes = 0usize;
    for item in items {
        let size = to_json(&item).len() + 1;
        let full_count = max_items.is_some_and(|m| cur.len() as u64 >= m.max(1));
        let full_bytes = max_bytes.is_some_and(|m| (cur_bytes + size) as u64 > m);
        if !cur.is_empty() && (full_count || full_bytes) {
            out.push(wrap(std::mem::take(&mut cur)));
            cur_bytes = 0;
        }
        cur_bytes += size;
        cur.push(item);
    }
    if !cur.is_empty() {
        out.push(wrap(cur));
    }
    out
}

/// Step Functions reads integers given as strings ("1") in `...Path` fields.
fn numeric_string(v: Value) -> Value {
    match &v {
        Value::String(s) => s.trim().parse::<i64>().map(Value::from).or_else(|_| s.trim().parse::<f64>().map(Value::from)).unwrap_or(v),
        _ => v,
    }
}

/// ISO-8601 extended offset date-time, as Step Functions accepts it (RFC 3339, upper-case T and Z).
pub fn parse_ts(s: &str) -> Option<DateTime<Utc>> {
    if !s.contains('T') {
        return None;
    }
    DateTime::parse_from_rfc3339(s).ok().map(|d| d.with_timezone(&Utc))
}

/// A task token: HMAC-SHA256 under the store's secret key of the execution ARN, its redrive
/// count, the event id at which the token is issued and the execution's two random draws,
/// as 64 hex digits. Without the key, no token says anything about any other.
pub fn task_token(key: &[u8; 32], execution_arn: &str, redrive: u32, event_id: i64, a: u64, b: u64) -> String {
    let mut msg = Vec::with_capacity(execution_arn.len() + 40);
    msg.extend_from_slice(b"lightbox-task-token-v2\0");
    msg.extend_from_slice(execution_arn.as_bytes());
    msg.push(0);
    msg.extend_from_slice(&redrive.to_be_bytes());
    msg.extend_from_slice(&event_id.to_be_bytes());
    msg.extend_from_slice(&a.to_be_bytes());
    msg.extend_from_slice(&b.to_be_bytes());
    hmac_sha256(key, &msg).iter().map(|b| format!("{b:02x}")).collect()
}

/// HMAC-SHA256 (RFC 2104): task tokens here, and the audit log's keyed chain.
pub fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    use hmac::{Hmac, Mac};
    // HMAC takes a key of any length (a long one is hashed first): the Err arm cannot happen.
    match <Hmac<sha2::Sha256> as Mac>::new_from_slice(key) {
        Ok(m) => m.chain_update(msg).finalize().into_bytes().into(),
        Err(_) => [0; 32],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231() {
        let hex = |b: [u8; 32]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        assert_eq!(
            hex(hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // A key longer than the block is hashed first (test case 6).
        assert_eq!(
            hex(hmac_sha256(&[0xaa; 131], b"Test Using Larger Than Block-Size Key - Hash Key First")),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn batches_respect_item_and_byte_limits() {
        let items: Vec<Value> = (1..=5).map(Value::from).collect();
        let b = make_batches(items.clone(), Some(2), None, Some(json!({"k": 1})));
        assert_eq!(b.len(), 3);
        assert_eq!(b[0], json!({"BatchInput": {"k": 1}, "Items": [1, 2]}));
        assert_eq!(b[2], json!({"BatchInput": {"k": 1}, "Items": [5]}));
        // Each item is 2 bytes of JSON plus a separator: 4 bytes hold two.
        let b = make_batches(items.clone(), None, Some(4), None);
        assert_eq!(b.len(), 3);
        assert_eq!(b[1], json!({"Items": [3, 4]}));
        // An item larger than the byte limit still gets a batch of its own.
        let b = make_batches(vec![json!("a long string")], None, Some(1), None);
        assert_eq!(b, vec![json!({"Items": ["a long string"]})]);
        assert!(make_batches(vec![], Some(2), None, None).is_empty());
    }

    /// A Wait state's Assign takes effect when the wait ends, however long it is.
    #[test]
    fn wait_assign_survives_a_real_wait() {
        for ql in ["JSONPath", "JSONata"] {
            let (assign, output) = if ql == "JSONPath" {
                (json!({"seen.$": "$.n"}), json!({"got.$": "$seen"}))
            } else {
                (json!({"seen": "{% $states.input.n %}"}), json!({"got": "{% $seen %}"}))
            };
            let mut check = json!({"Type": "Pass", "End": true});
            check[if ql == "JSONPath" { "Parameters" } else { "Output" }] = output;
            let def = json!({"QueryLanguage": ql, "StartAt": "W", "States": {
                "W": {"Type": "Wait", "Seconds": 600, "Assign": assign, "Next": "Check"}, "Check": check}});
            let out = crate::engine::ephemeral::run(&def.to_string(), r#"{"n": 42}"#, Default::default()).expect("run");
            assert_eq!(out["status"], "SUCCEEDED", "{ql}: {out}");
            assert_eq!(out["output"], json!({"got": 42}), "{ql}");
        }
    }

    #[test]
    fn terminal_errors_escape_states_all() {
        let all = vec!["States.ALL".to_string()];
        assert!(error_matches(&all, "States.Timeout"));
        assert!(error_matches(&all, "Custom.Error"));
        assert!(!error_matches(&all, "States.Runtime"));
        assert!(!error_matches(&all, "States.DataLimitExceeded"));
        let tf = vec!["States.TaskFailed".to_string()];
        assert!(error_matches(&tf, "Lambda.Unknown"));
        assert!(!error_matches(&tf, "States.Timeout"));
    }
}
