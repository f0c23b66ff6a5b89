//! Compensation: undoing what a failed workflow already did.
//!
//! Config names, per state machine, the compensable states and the state machine that undoes
//! them (`[compensation.<machine>]`). For a FAILED, TIMED_OUT or ABORTED execution the plan is
//! computed from its history alone (so any backend's history works): every compensable state
//! that *completed* (exited without a caught error; inside Map iterations and Parallel branches
//! too; across redrives, each completion counts), newest completion first, each with the input
//! and output it had. Starting the plan starts the compensation state machine once, under a
//! name derived from the original's, so a second request finds the first and starts nothing.
//!
//! Everything here is pure: the plan from a summary and a history ([`plan`]), the names, the
//! payload, the links and the config. The engine's `compensation` module is the thin shell that
//! reads the store and starts the compensation execution; the AWS backend has its own.

use std::collections::{BTreeMap, HashMap, VecDeque};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::history::{ExecutionStatus, HistoryEvent};
use crate::model::ExecutionSummary;

/// `detail-type` of the event written when a compensation starts.
pub const STARTED_DETAIL_TYPE: &str = "Compensation Started";
/// Step Functions' longest execution name.
pub const MAX_NAME: usize = 80;
const SUFFIX: &str = "-undo";

/// `[compensation.<machine>]`: the machine that undoes, and the states it undoes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompensationConfig {
    /// The state machine started to undo (its input: see [`payload`]).
    pub state_machine: String,
    /// The compensable states (any depth: Map iterations and Parallel branches included).
    pub states: Vec<String>,
}

/// Compensation config by the name of the state machine it compensates.
pub type CompensationMap = BTreeMap<String, CompensationConfig>;

#[derive(Debug, thiserror::Error)]
pub enum CompensationError {
    #[error("config [compensation.{machine}]: {key}: {message}")]
    Config { machine: String, key: String, message: String },
    #[error("{arn} is {status}: only a FAILED, TIMED_OUT or ABORTED execution can be compensated ({why})")]
    NotCompensable { arn: String, status: ExecutionStatus, why: &'static str },
    #[error("state machine {machine:?} has no compensation configured (add [compensation.{machine}] to the config)")]
    NotConfigured { machine: String },
    #[error("the compensation state machine {0:?} does not exist (create it, or fix [compensation] in the config)")]
    MachineMissing(String),
}

/// Check every entry: the error names the machine and the bad key.
pub fn validate(map: &CompensationMap) -> Result<(), CompensationError> {
    let bad = |machine: &str, key: &str, message: String| CompensationError::Config {
        machine: machine.to_string(),
        key: key.to_string(),
        message,
    };
    for (machine, c) in map {
        let sm = c.state_machine.trim();
        if sm.is_empty() {
            return Err(bad(machine, "state_machine", "must name the state machine that undoes the states".into()));
        }
        if sm.len() > MAX_NAME || sm.chars().any(|ch| ch.is_whitespace() || ch.is_control() || "<>{}[]?*\"#%\\^|~`$&,;:/".contains(ch)) {
            return Err(bad(machine, "state_machine", format!("{sm:?} is not a valid state machine name")));
        }
        if sm == machine {
            return Err(bad(machine, "state_machine", "a state machine cannot compensate itself".into()));
        }
        if c.states.is_empty() {
            return Err(bad(machine, "states", "must name at least one compensable state".into()));
        }
        let mut seen = std::collections::HashSet::new();
        for s in &c.states {
            if s.trim().is_empty() {
                return Err(bad(machine, "states", "a state name is empty".into()));
            }
            if !seen.insert(s.as_str()) {
                return Err(bad(machine, "states", format!("{s:?} is named twice")));
            }
        }
    }
    Ok(())
}

/// The demo hospital's compensation: the states that reserve a slot, assign a reader, post a
/// charge or submit a claim, undone by the demo's `*-undo` machines.
pub fn demo_defaults() -> CompensationMap {
    let entry = |undo: &str, states: &[&str]| CompensationConfig {
        state_machine: undo.to_string(),
        states: states.iter().map(|s| s.to_string()).collect(),
    };
    let mut m = CompensationMap::new();
    m.insert("scheduled-imaging".into(), entry("scheduled-imaging-undo", &["ScheduleProcedure", "AssignReader", "PostCharge"]));
    m.insert("encounter-imaging".into(), entry("encounter-imaging-undo", &["AssignReader", "PostCharge"]));
    m.insert("teleradiology".into(), entry("teleradiology-undo", &["AssignRemoteReader", "PostCharge"]));
    m.insert("billing".into(), entry("billing-undo", &["PostCharge", "SubmitClaim"]));
    m
}

/// What applies: the demo's defaults, with every configured machine replacing its default.
pub fn effective(configured: &CompensationMap) -> CompensationMap {
    let mut m = demo_defaults();
    m.extend(configured.iter().map(|(k, v)| (k.clone(), v.clone())));
    m
}

/// One compensable state that completed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Step {
    pub state: String,
    pub input: Value,
    pub output: Value,
    /// The `…StateExited` event that completed it.
    #[serde(rename = "exitedEventId")]
    pub exited_event_id: i64,
    #[serde(rename = "completedAt")]
    pub completed_at: DateTime<Utc>,
}

/// What compensating an execution would do.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub execution_arn: String,
    pub execution_name: String,
    pub execution_input: Value,
    pub status: ExecutionStatus,
    /// The original's state machine.
    pub state_machine: String,
    /// The machine started to undo it, and the name its execution gets.
    pub compensation_machine: String,
    pub compensation_name: String,
    /// Newest completion first.
    pub steps: Vec<Step>,
}

impl Plan {
    /// One line for a dialog or the CLI: what confirming does.
    pub fn summary(&self) -> String {
        if self.steps.is_empty() {
            return format!(
                "nothing to compensate: none of {}'s compensable states completed; no compensation will start",
                self.state_machine
            );
        }
        let states: Vec<&str> = self.steps.iter().map(|s| s.state.as_str()).collect();
        format!(
            "starts {} as {} to undo {} step(s), newest first: {}",
            self.compensation_machine,
            self.compensation_name,
            states.len(),
            states.join(" → ")
        )
    }
}

/// The state machine name in a state machine or execution ARN.
pub fn machine_of(arn: &str) -> &str {
    let parts: Vec<&str> = arn.split(':').collect();
    match parts.iter().position(|p| *p == "stateMachine" || *p == "execution") {
        Some(i) if i + 1 < parts.len() => parts[i + 1],
        _ => arn,
    }
}

/// The compensation execution's name: `<name>-undo`, or, when that is longer than 80
/// characters, the name cut short plus a hash of the whole name (stable, unique per name).
pub fn compensation_name(original: &str) -> String {
    let whole = format!("{original}{SUFFIX}");
    if whole.chars().count() <= MAX_NAME {
        return whole;
    }
    use sha2::Digest as _;
    let d = sha2::Sha256::digest(original.as_bytes());
    let hash: String = d.iter().take(4).map(|b| format!("{b:02x}")).collect();
    let keep = MAX_NAME - SUFFIX.len() - hash.len() - 1;
    let head: String = original.chars().take(keep).collect();
    format!("{head}-{hash}{SUFFIX}")
}

/// Whether an execution of this status can be compensated, and why not.
pub fn check_status(arn: &str, status: ExecutionStatus) -> Result<(), CompensationError> {
    let why = match status {
        ExecutionStatus::Failed | ExecutionStatus::TimedOut | ExecutionStatus::Aborted => return Ok(()),
        ExecutionStatus::Running => "it is still running: stop it first, or let it finish",
        ExecutionStatus::PendingRedrive => "it is being redriven",
        ExecutionStatus::Succeeded => "it succeeded, so there is nothing to undo",
    };
    Err(CompensationError::NotCompensable { arn: arn.to_string(), status, why })
}

fn parse_payload(v: Option<&Value>) -> Value {
    match v {
        Some(Value::String(s)) => serde_json::from_str(s).unwrap_or_else(|_| Value::String(s.clone())),
        Some(v) => v.clone(),
        None => Value::Null,
    }
}

/// Event types that end a state's work with an error: a `…StateExited` right after one of them
/// left the state through a Catch, so the state did not complete.
fn is_failure(event_type: &str) -> bool {
    matches!(
        event_type,
        "TaskFailed"
            | "TaskTimedOut"
            | "TaskStartFailed"
            | "TaskSubmitFailed"
            | "MapStateFailed"
            | "MapStateAborted"
            | "ParallelStateFailed"
            | "ParallelStateAborted"
            | "MapRunFailed"
            | "MapRunAborted"
            | "LambdaFunctionFailed"
            | "LambdaFunctionTimedOut"
            | "LambdaFunctionStartFailed"
            | "ActivityFailed"
            | "ActivityTimedOut"
            | "EvaluationFailed"
    )
}

/// The compensable states that completed, in order of completion (oldest first).
///
/// A state completed when it has a `…StateExited` event whose previous event (by
/// `previousEventId`, the state's own last event) is not a failure: a failure caught by a
/// Catch also exits the state, and did not complete it. Each exit is paired with the oldest
/// open entry of the same name for its input (Map iterations of one state are paired in
/// order); a redrive closes every entry that was open when the execution stopped.
pub fn completed(states: &[String], history: &[HistoryEvent]) -> Vec<Step> {
    let by_id: HashMap<i64, &HistoryEvent> = history.iter().map(|e| (e.id, e)).collect();
    let mut open: HashMap<&str, VecDeque<Value>> = HashMap::new();
    let mut out = vec![];
    for e in history {
        if e.event_type == "ExecutionRedriven" {
            open.clear();
            continue;
        }
        let Some(name) = e.state_name() else { continue };
        let Some(name) = states.iter().find(|s| s.as_str() == name) else { continue };
        if e.event_type.ends_with("StateEntered") {
            open.entry(name.as_str()).or_default().push_back(parse_payload(e.details.get("input")));
        } else if e.event_type.ends_with("StateExited") {
            let input = open.get_mut(name.as_str()).and_then(VecDeque::pop_front).unwrap_or(Value::Null);
            let caught = by_id.get(&e.previous_event_id).is_some_and(|p| is_failure(&p.event_type));
            if !caught {
                out.push(Step {
                    state: name.clone(),
                    input,
                    output: parse_payload(e.details.get("output")),
                    exited_event_id: e.id,
                    completed_at: e.timestamp,
                });
            }
        }
    }
    out
}

/// The plan for one execution (its row and whole history), or why it cannot be compensated.
pub fn plan(map: &CompensationMap, row: &ExecutionSummary, history: &[HistoryEvent]) -> Result<Plan, CompensationError> {
    check_status(&row.arn, row.status)?;
    let machine = machine_of(&row.state_machine_arn).to_string();
    let cfg = map.get(&machine).ok_or_else(|| CompensationError::NotConfigured { machine: machine.clone() })?;
    let mut steps = completed(&cfg.states, history);
    steps.reverse();
    Ok(Plan {
        execution_arn: row.arn.clone(),
        execution_name: row.name.clone(),
        execution_input: serde_json::from_str(&row.input).unwrap_or(Value::Null),
        status: row.status,
        state_machine: machine,
        compensation_machine: cfg.state_machine.clone(),
        compensation_name: compensation_name(&row.name),
        steps,
    })
}

/// The compensation execution's input.
pub fn payload(plan: &Plan, reason: &str) -> Value {
    let steps: Vec<Value> = plan.steps.iter().map(|s| json!({"state": s.state, "input": s.input, "output": s.output})).collect();
    json!({
        "execution": {"executionArn": plan.execution_arn, "name": plan.execution_name, "input": plan.execution_input},
        "steps": steps,
        "reason": reason,
    })
}

/// The plan as `--json` shows it (before masking).
pub fn plan_json(plan: &Plan) -> Value {
    json!({
        "executionArn": plan.execution_arn,
        "name": plan.execution_name,
        "status": plan.status.as_str(),
        "stateMachine": plan.state_machine,
        "compensationStateMachine": plan.compensation_machine,
        "compensationName": plan.compensation_name,
        "steps": plan.steps,
        "summary": plan.summary(),
    })
}

/// The execution ARN of a compensation: same region and account as the original.
pub fn compensation_arn(original_arn: &str, plan_machine: &str, name: &str) -> String {
    match original_arn.find(":execution:") {
        Some(i) => format!("{}:execution:{plan_machine}:{name}", &original_arn[..i]),
        None => format!("arn:aws:states:{}:{}:execution:{plan_machine}:{name}", crate::events::LOCAL_REGION, crate::events::LOCAL_ACCOUNT),
    }
}

/// Links between an execution and its compensation, for `describe --json` and the detail view:
/// `compensatedBy` on an original whose compensation exists, `compensates` on a compensation.
/// `exists` says whether an execution ARN exists (asked only for the derived compensation).
pub fn links<E>(
    map: &CompensationMap,
    row: &ExecutionSummary,
    exists: impl FnOnce(&str) -> Result<bool, E>,
) -> Result<Vec<(&'static str, String)>, E> {
    let mut out = vec![];
    let machine = machine_of(&row.state_machine_arn);
    if let Some(cfg) = map.get(machine) {
        let arn = compensation_arn(&row.arn, &cfg.state_machine, &compensation_name(&row.name));
        if exists(&arn)? {
            out.push(("compensatedBy", arn));
        }
    }
    if map.values().any(|c| c.state_machine == machine)
        && let Ok(input) = serde_json::from_str::<Value>(&row.input)
        && let Some(orig) = input.pointer("/execution/executionArn").and_then(Value::as_str)
        && let Some(oname) = input.pointer("/execution/name").and_then(Value::as_str)
        && compensation_name(oname) == row.name
    {
        out.push(("compensates", orig.to_string()));
    }
    Ok(out)
}

/// What the detail view says about compensation: the links, and what `C` would do.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Info {
    /// `("compensatedBy" | "compensates", execution ARN)`.
    pub links: Vec<(&'static str, String)>,
    /// For a FAILED, TIMED_OUT or ABORTED execution: what compensating would do (or why not).
    pub offer: Option<String>,
}

/// What starting a compensation did (or, on a dry run, would do).
#[derive(Debug, Clone)]
pub struct Outcome {
    pub plan: Plan,
    /// The compensation execution this call started.
    pub started: Option<ExecutionSummary>,
    /// The compensation that already existed (nothing new was started).
    pub existing: Option<ExecutionSummary>,
}

impl Outcome {
    pub fn message(&self) -> String {
        match (&self.started, &self.existing) {
            (Some(r), _) => format!("compensation started: {} ({}), undoing {} step(s)", r.arn, r.status, self.plan.steps.len()),
            (None, Some(r)) => format!("already compensated by {} ({}): nothing new was started", r.arn, r.status),
            (None, None) => self.plan.summary(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn ev(id: i64, prev: i64, ty: &str, details: Value) -> HistoryEvent {
        HistoryEvent {
            id,
            previous_event_id: prev,
            timestamp: Utc.timestamp_opt(1_700_000_000 + id, 0).single().unwrap_or_default(),
            event_type: ty.into(),
            details,
        }
    }
    fn entered(id: i64, name: &str, input: Value) -> HistoryEvent {
        ev(id, id - 1, "TaskStateEntered", json!({"name": name, "input": input.to_string()}))
    }
    fn exited(id: i64, name: &str, output: Value) -> HistoryEvent {
        ev(id, id - 1, "TaskStateExited", json!({"name": name, "output": output.to_string()}))
    }
    fn names(steps: &[Step]) -> Vec<&str> {
        steps.iter().map(|s| s.state.as_str()).collect()
    }
    fn states(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }
    fn row(status: ExecutionStatus) -> ExecutionSummary {
        ExecutionSummary {
            arn: "arn:aws:states:us-east-1:000000000000:execution:scheduled-imaging:ord-1".into(),
            state_machine_arn: "arn:aws:states:us-east-1:000000000000:stateMachine:scheduled-imaging".into(),
            name: "ord-1".into(),
            status,
            start: Utc::now(),
            stop: None,
            input: r#"{"accession":"ACC-1"}"#.into(),
            output: None,
            error: None,
            cause: None,
            redrive_count: 0,
            redrive: None,
            current_state: None,
            state_since: None,
        }
    }

    #[test]
    fn completed_states_in_reverse_order_with_their_input_and_output() {
        let h = vec![
            ev(1, 0, "ExecutionStarted", json!({"input": "{}"})),
            entered(2, "ScheduleProcedure", json!({"a": 1})),
            ev(3, 2, "TaskSucceeded", json!({})),
            exited(4, "ScheduleProcedure", json!({"slot": "R1"})),
            entered(5, "Other", json!({})),
            exited(6, "Other", json!({})),
            entered(7, "PostCharge", json!({"b": 2})),
            ev(8, 7, "TaskSucceeded", json!({})),
            exited(9, "PostCharge", json!({"charge": "C1"})),
            entered(10, "SubmitClaim", json!({})),
            ev(11, 10, "TaskFailed", json!({"error": "X"})),
            ev(12, 11, "ExecutionFailed", json!({"error": "X"})),
        ];
        let map = demo_defaults();
        let p = plan(&map, &row(ExecutionStatus::Failed), &h).expect("plan");
        assert_eq!(names(&p.steps), vec!["PostCharge", "ScheduleProcedure"]);
        assert_eq!(p.steps[0].input, json!({"b": 2}));
        assert_eq!(p.steps[0].output, json!({"charge": "C1"}));
        assert_eq!(p.steps[1].output, json!({"slot": "R1"}));
        assert_eq!(p.compensation_machine, "scheduled-imaging-undo");
        assert_eq!(p.compensation_name, "ord-1-undo");
        let pl = payload(&p, "slot double-booked");
        assert_eq!(pl["execution"]["executionArn"], p.execution_arn.as_str());
        assert_eq!(pl["execution"]["input"]["accession"], "ACC-1");
        assert_eq!(pl["steps"][0]["state"], "PostCharge");
        assert_eq!(pl["reason"], "slot double-booked");
    }

    #[test]
    fn a_state_left_through_a_catch_did_not_complete() {
        let h = vec![
            entered(1, "PostCharge", json!({})),
            ev(2, 1, "TaskFailed", json!({"error": "Billing.Down"})),
            exited(3, "PostCharge", json!({"Error": "Billing.Down"})),
        ];
        assert!(completed(&states(&["PostCharge"]), &h).is_empty());
        // A retry that then succeeded did complete.
        let h = vec![
            entered(1, "PostCharge", json!({})),
            ev(2, 1, "TaskFailed", json!({})),
            ev(3, 2, "TaskScheduled", json!({})),
            ev(4, 3, "TaskSucceeded", json!({})),
            exited(5, "PostCharge", json!({"ok": true})),
        ];
        assert_eq!(names(&completed(&states(&["PostCharge"]), &h)), vec!["PostCharge"]);
    }

    #[test]
    fn map_iterations_and_parallel_branches_count_each_completion() {
        let h = vec![
            ev(1, 0, "MapStateEntered", json!({"name": "AcquireSeries", "input": "{}"})),
            ev(2, 1, "MapIterationStarted", json!({"name": "AcquireSeries", "index": 0})),
            entered(3, "StoreSeries", json!({"series": 1})),
            ev(4, 3, "MapIterationStarted", json!({"name": "AcquireSeries", "index": 1})),
            entered(5, "StoreSeries", json!({"series": 2})),
            ev(6, 5, "TaskSucceeded", json!({})),
            exited(7, "StoreSeries", json!({"uid": 1})),
            ev(8, 7, "TaskSucceeded", json!({})),
            exited(9, "StoreSeries", json!({"uid": 2})),
            ev(10, 9, "ParallelStateEntered", json!({"name": "PrepareRead", "input": "{}"})),
            entered(11, "AssignRemoteReader", json!({"r": 1})),
            ev(12, 11, "TaskSucceeded", json!({})),
            exited(13, "AssignRemoteReader", json!({"reader": "dr.lee"})),
            entered(14, "FetchPriors", json!({})),
            ev(15, 14, "TaskFailed", json!({})),
            ev(16, 15, "ParallelStateFailed", json!(null)),
        ];
        let done = completed(&states(&["StoreSeries", "AssignRemoteReader"]), &h);
        assert_eq!(names(&done), vec!["StoreSeries", "StoreSeries", "AssignRemoteReader"]);
        assert_eq!((done[0].input.clone(), done[0].output.clone()), (json!({"series": 1}), json!({"uid": 1})));
        assert_eq!((done[1].input.clone(), done[1].output.clone()), (json!({"series": 2}), json!({"uid": 2})));
        assert_eq!(done[2].output, json!({"reader": "dr.lee"}));
    }

    #[test]
    fn a_redriven_history_counts_completions_before_and_after_the_redrive() {
        let h = vec![
            entered(1, "PostCharge", json!({"try": 1})),
            ev(2, 1, "TaskSucceeded", json!({})),
            exited(3, "PostCharge", json!({"charge": 1})),
            entered(4, "SubmitClaim", json!({})),
            ev(5, 4, "TaskFailed", json!({})),
            ev(6, 5, "ExecutionFailed", json!({})),
            ev(7, 6, "ExecutionRedriven", json!({"redriveCount": 1})),
            entered(8, "SubmitClaim", json!({"try": 2})),
            ev(9, 8, "TaskSucceeded", json!({})),
            exited(10, "SubmitClaim", json!({"claim": 2})),
            entered(11, "PostCharge", json!({"try": 2})),
            ev(12, 11, "TaskSucceeded", json!({})),
            exited(13, "PostCharge", json!({"charge": 2})),
            entered(14, "Reconcile", json!({})),
            ev(15, 14, "TaskFailed", json!({})),
            ev(16, 15, "ExecutionFailed", json!({})),
        ];
        let mut r = row(ExecutionStatus::Failed);
        r.state_machine_arn = "arn:aws:states:us-east-1:000000000000:stateMachine:billing".into();
        let p = plan(&demo_defaults(), &r, &h).expect("plan");
        assert_eq!(names(&p.steps), vec!["PostCharge", "SubmitClaim", "PostCharge"]);
        // The redrive's SubmitClaim pairs with its own entry, not the failed one before it.
        assert_eq!(p.steps[1].input, json!({"try": 2}));
        assert_eq!(p.steps[0].output, json!({"charge": 2}));
        assert_eq!(p.steps[2].output, json!({"charge": 1}));
    }

    #[test]
    fn nothing_completed_is_an_empty_plan_that_says_so() {
        let h =
            vec![ev(1, 0, "ExecutionStarted", json!({})), entered(2, "ReceiveOrder", json!({})), ev(3, 2, "ExecutionFailed", json!({}))];
        let p = plan(&demo_defaults(), &row(ExecutionStatus::TimedOut), &h).expect("plan");
        assert!(p.steps.is_empty());
        assert!(p.summary().starts_with("nothing to compensate"), "{}", p.summary());
    }

    #[test]
    fn running_and_succeeded_executions_are_refused_with_why() {
        for (s, why) in [(ExecutionStatus::Running, "still running"), (ExecutionStatus::Succeeded, "succeeded")] {
            let e = plan(&demo_defaults(), &row(s), &[]).expect_err("refused");
            assert!(e.to_string().contains(why), "{e}");
        }
        for s in [ExecutionStatus::Failed, ExecutionStatus::TimedOut, ExecutionStatus::Aborted] {
            assert!(check_status("a", s).is_ok());
        }
        let mut r = row(ExecutionStatus::Failed);
        r.state_machine_arn = "arn:aws:states:us-east-1:000000000000:stateMachine:nothing".into();
        assert!(matches!(plan(&demo_defaults(), &r, &[]), Err(CompensationError::NotConfigured { .. })));
    }

    #[test]
    fn names_are_stable_and_within_80_characters() {
        assert_eq!(compensation_name("ord-1"), "ord-1-undo");
        let long = "x".repeat(78);
        let n = compensation_name(&long);
        assert_eq!(n.len(), 80);
        assert_eq!(n, compensation_name(&long));
        assert_ne!(n, compensation_name(&"x".repeat(79)));
        assert!(n.ends_with("-undo"));
        assert_eq!(compensation_name(&"y".repeat(75)).len(), 80);
    }

    #[test]
    fn validation_names_the_machine_and_the_key() {
        let mut m = CompensationMap::new();
        m.insert("billing".into(), CompensationConfig { state_machine: "billing-undo".into(), states: vec![] });
        let e = validate(&m).expect_err("empty states").to_string();
        assert!(e.contains("[compensation.billing]") && e.contains("states"), "{e}");
        m.insert("billing".into(), CompensationConfig { state_machine: " ".into(), states: vec!["A".into()] });
        let e = validate(&m).expect_err("no machine").to_string();
        assert!(e.contains("[compensation.billing]") && e.contains("state_machine"), "{e}");
        m.insert("billing".into(), CompensationConfig { state_machine: "u".into(), states: vec!["A".into(), "A".into()] });
        assert!(validate(&m).expect_err("dup").to_string().contains("named twice"));
        assert!(validate(&demo_defaults()).is_ok());
        let parsed: Result<CompensationMap, _> = toml::from_str("[billing]\nstate_machine = \"u\"\nstatez = [\"A\"]\n");
        assert!(parsed.is_err());
    }

    #[test]
    fn machine_names_come_from_arns() {
        assert_eq!(machine_of("arn:aws:states:us-east-1:1:stateMachine:billing"), "billing");
        assert_eq!(machine_of("arn:aws:states:us-east-1:1:execution:billing:x"), "billing");
        assert_eq!(
            compensation_arn("arn:aws:states:eu-west-2:1:execution:billing:x", "billing-undo", "x-undo"),
            "arn:aws:states:eu-west-2:1:execution:billing-undo:x-undo"
        );
    }
}
