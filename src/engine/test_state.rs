//! The AWS TestState API: run one state with its input processing, mocks and inspection data.
//!
//! `definition` is one state, or a whole state machine when `args.stateName` names the state to
//! test (any state, also one nested in a Map or Parallel). The state runs once: a Task calls its
//! mock (`mock.result` / `mock.errorOutput`) or a local handler; a Map or Parallel state needs a
//! mock and never runs its children. An error is matched against the state's retriers first (a
//! retrier with attempts left, counting `stateConfiguration.retrierRetryCount` as already used,
//! gives `RETRIABLE` without retrying), then its catchers (`CAUGHT_ERROR`, the catcher's output
//! and `nextState`), else `FAILED`. `inspectionData` (DEBUG and TRACE) holds the data after each
//! processing step, as AWS reports it for each state type.

use chrono::{SecondsFormat, Utc};
use serde_json::{Map, Value, json};

use super::core::{TaskRequest, parse_ts};
use super::eval::{self, Failure, JsonataEnv, Scope, obj, show_scalar, to_json};
use super::tasks::{TaskOutcome, TaskRunner};
use crate::asl::model::{Catcher, ChoiceCondition, Definition, MapSpec, QueryLanguage, State, StateKind, WaitSpec};

/// What AWS reports as `$$.State.Name` in TestState, whatever the state is called.
const CONTEXT_STATE_NAME: &str = "StateName";
/// The state machine name the context object reports.
const MACHINE_NAME: &str = "TestStateMachine";
/// Longest wait Step Functions accepts (one year).
const MAX_WAIT_SECONDS: i64 = 31_536_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Level {
    Info,
    Debug,
    Trace,
}

#[derive(Debug, Clone)]
enum Mock {
    Result(Value),
    Error { error: String, cause: String },
}

/// The TestState request fields besides `definition` and `input`.
#[derive(Debug, Clone)]
struct Request {
    level: Level,
    mock: Option<Mock>,
    retrier_retry_count: u32,
    map_iteration_failure_count: Option<u64>,
    map_item_reader_data: Option<Value>,
    context: Option<Value>,
    variables: Map<String, Value>,
    state_name: Option<String>,
    role_arn: Option<String>,
}

/// A field that carries JSON text (or, leniently, the JSON value itself).
fn json_text(v: Option<&Value>, field: &str) -> Result<Option<Value>, String> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => serde_json::from_str(s).map(Some).map_err(|e| format!("{field} is not valid JSON: {e}")),
        Some(other) => Ok(Some(other.clone())),
    }
}

fn opt_string(v: Option<&Value>, field: &str) -> Result<Option<String>, String> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(format!("{field} must be a string")),
    }
}

fn opt_count(v: Option<&Value>, field: &str) -> Result<Option<u64>, String> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(n) => n.as_u64().map(Some).ok_or_else(|| format!("{field} must be a non-negative integer, not {n}")),
    }
}

impl Request {
    fn parse(args: &Value) -> Result<Request, String> {
        let empty = Map::new();
        let args = match args {
            Value::Object(m) => m,
            Value::Null => &empty,
            _ => return Err("TestState arguments must be a JSON object".into()),
        };
        let level = match args.get("inspectionLevel") {
            None | Some(Value::Null) => Level::Info,
            Some(Value::String(s)) => match s.as_str() {
                "INFO" => Level::Info,
                "DEBUG" => Level::Debug,
                "TRACE" => Level::Trace,
                other => return Err(format!("inspectionLevel must be INFO, DEBUG or TRACE, not {other:?}")),
            },
            Some(other) => return Err(format!("inspectionLevel must be INFO, DEBUG or TRACE, not {other}")),
        };
        let mock = match args.get("mock") {
            None | Some(Value::Null) => None,
            Some(Value::Object(m)) => {
                if let Some(mode) = opt_string(m.get("fieldValidationMode"), "mock.fieldValidationMode")?
                    && !matches!(mode.as_str(), "STRICT" | "PRESENT" | "NONE")
                {
                    return Err(format!("mock.fieldValidationMode must be STRICT, PRESENT or NONE, not {mode:?}"));
                }
                let result = json_text(m.get("result"), "mock.result")?;
                let error = match m.get("errorOutput") {
                    None | Some(Value::Null) => None,
                    Some(Value::Object(e)) => Some(Mock::Error {
                        error: opt_string(e.get("error"), "mock.errorOutput.error")?.unwrap_or_default(),
                        cause: opt_string(e.get("cause"), "mock.errorOutput.cause")?.unwrap_or_default(),
                    }),
                    Some(_) => return Err("mock.errorOutput must be an object with error and cause".into()),
                };
                match (result, error) {
                    (Some(_), Some(_)) => return Err("mock can have result or errorOutput, not both".into()),
                    (Some(r), None) => Some(Mock::Result(r)),
                    (None, Some(e)) => Some(e),
                    (None, None) => return Err("mock needs result or errorOutput".into()),
                }
            }
            Some(_) => return Err("mock must be an object".into()),
        };
        let config = match args.get("stateConfiguration") {
            None | Some(Value::Null) => &empty,
            Some(Value::Object(m)) => m,
            Some(_) => return Err("stateConfiguration must be an object".into()),
        };
        let retrier_retry_count = opt_count(config.get("retrierRetryCount"), "stateConfiguration.retrierRetryCount")?.unwrap_or(0);
        let retrier_retry_count =
            u32::try_from(retrier_retry_count).map_err(|_| "stateConfiguration.retrierRetryCount is too large".to_string())?;
        // errorCausedByState only names where a mocked Map/Parallel error comes from; it does not change the outcome.
        opt_string(config.get("errorCausedByState"), "stateConfiguration.errorCausedByState")?;
        let map_iteration_failure_count = opt_count(config.get("mapIterationFailureCount"), "stateConfiguration.mapIterationFailureCount")?;
        let map_item_reader_data = json_text(config.get("mapItemReaderData"), "stateConfiguration.mapItemReaderData")?;
        let context = json_text(args.get("context"), "context")?;
        if context.as_ref().is_some_and(|c| !c.is_object()) {
            return Err("context must be a JSON object".into());
        }
        let variables = match json_text(args.get("variables"), "variables")? {
            None => Map::new(),
            Some(Value::Object(m)) => m,
            Some(_) => return Err("variables must be a JSON object".into()),
        };
        Ok(Request {
            level,
            mock,
            retrier_retry_count,
            map_iteration_failure_count,
            map_item_reader_data,
            context,
            variables,
            state_name: opt_string(args.get("stateName"), "stateName")?,
            role_arn: opt_string(args.get("roleArn"), "roleArn")?,
        })
    }
}

/// Run one TestState request; returns the TestState response, or why the request is invalid.
pub fn run(definition: &str, input: &str, args: &Value) -> Result<Value, String> {
    let req = Request::parse(args)?;
    let input: Value = if input.trim().is_empty() {
        Value::Object(Map::new())
    } else {
        serde_json::from_str(input).map_err(|e| format!("input is not valid JSON: {e}"))?
    };
    let (def, name) = load(definition, req.state_name.as_deref())?;
    let state = def.scopes.iter().find_map(|m| m.state(&name)).ok_or_else(|| format!("state {name:?} does not exist in the definition"))?;
    check_mock(state, req.mock.as_ref())?;
    let ctx = req.context.clone().unwrap_or_else(|| default_context(&req, state, &input));
    let mut t = Tester {
        state,
        vars: req.variables.clone(),
        ctx,
        rng: uuid::Uuid::new_v4().as_u64_pair().0,
        now_ms: Utc::now().timestamp_millis(),
        insp: Map::new(),
        req: &req,
    };
    // One state under the engine's step budget: a TestState call cannot hold its caller (or
    // `lightbox serve`) longer than a step of a real execution could.
    let budget = super::StepBudget::process_default();
    let (out, spent) = crate::asl::budget::run(budget.limits(), || t.respond(&input));
    match spent.exhausted {
        Some((e, _)) => Err(format!("evaluating state {name:?} passed {e} per step (the engine's step budget)")),
        None => Ok(out),
    }
}

/// Parse the definition: a whole machine (`stateName` set) or one state, which is wrapped in a
/// machine with a placeholder for every state it can go to.
fn load(definition: &str, state_name: Option<&str>) -> Result<(Definition, String), String> {
    let v: Value = serde_json::from_str(definition).map_err(|e| format!("definition is not valid JSON: {e}"))?;
    if let Some(name) = state_name {
        let def = Definition::parse(&v).map_err(|e| format!("invalid state machine definition: {e}"))?;
        return Ok((def, name.to_string()));
    }
    let Some(obj) = v.as_object() else {
        return Err("definition must be a JSON object: one state, or a state machine together with stateName".into());
    };
    if !obj.contains_key("Type") && obj.contains_key("States") {
        return Err("definition is a state machine: set stateName to the state to test".into());
    }
    let mut targets: Vec<&str> = [obj.get("Next"), obj.get("Default")].into_iter().flatten().filter_map(Value::as_str).collect();
    for key in ["Choices", "Catch"] {
        for c in obj.get(key).and_then(Value::as_array).into_iter().flatten() {
            targets.extend(c.get("Next").and_then(Value::as_str));
        }
    }
    let mut name = CONTEXT_STATE_NAME.to_string();
    while targets.contains(&name.as_str()) {
        name.push('_');
    }
    let mut states = Map::new();
    states.insert(name.clone(), v.clone());
    for t in targets {
        states.entry(t.to_string()).or_insert_with(|| json!({"Type": "Succeed"}));
    }
    let machine = json!({"StartAt": name, "States": states});
    let def = Definition::parse(&machine).map_err(|e| format!("invalid state definition: {e}"))?;
    Ok((def, name))
}

/// TestState runs Map and Parallel states, callback and `.sync` tasks only with a mock, and
/// mocks only Task, Map and Parallel states.
fn check_mock(state: &State, mock: Option<&Mock>) -> Result<(), String> {
    match (&state.kind, mock) {
        (StateKind::Map(_) | StateKind::Parallel { .. }, None) => {
            Err(format!("testing a {} state needs a mock (mock.result or mock.errorOutput)", state.type_name()))
        }
        (StateKind::Task(spec), None) if spec.resource.ends_with(".waitForTaskToken") || spec.resource.contains(".sync") => {
            Err(format!("testing a Task state with resource {:?} needs a mock (mock.result or mock.errorOutput)", spec.resource))
        }
        (StateKind::Task(_) | StateKind::Map(_) | StateKind::Parallel { .. }, _) | (_, None) => Ok(()),
        (_, Some(_)) => Err(format!("mock is only supported for Task, Map and Parallel states, not for a {} state", state.type_name())),
    }
}

fn can_retry(state: &State) -> bool {
    matches!(state.kind, StateKind::Task(_) | StateKind::Map(_) | StateKind::Parallel { .. })
}

fn default_context(req: &Request, state: &State, input: &Value) -> Value {
    let now = Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true);
    let exec = uuid::Uuid::new_v4().to_string();
    // AWS required a role for single-state tests; a whole-machine test may omit it (then null).
    let role = match (&req.role_arn, &req.state_name) {
        (Some(r), _) => Value::String(r.clone()),
        (None, None) => Value::String(super::DEFAULT_ROLE.into()),
        (None, Some(_)) => Value::Null,
    };
    let mut st = json!({"EnteredTime": now, "Name": CONTEXT_STATE_NAME});
    if can_retry(state)
        && let Some(o) = st.as_object_mut()
    {
        o.insert("RetryCount".into(), Value::from(req.retrier_retry_count));
    }
    let mut ctx = json!({
        "Execution": {
            "Id": format!("arn:aws:states:{}:{}:express:{MACHINE_NAME}:{exec}", super::REGION, super::ACCOUNT),
            "Input": input,
            "Name": exec,
            "RoleArn": role,
            "StartTime": now,
        },
        "State": st,
        "StateMachine": {"Id": super::state_machine_arn(MACHINE_NAME), "Name": MACHINE_NAME},
    });
    if let (StateKind::Task(spec), Some(o)) = (&state.kind, ctx.as_object_mut())
        && spec.resource.ends_with(".waitForTaskToken")
    {
        o.insert("Task".into(), json!({"Token": uuid::Uuid::new_v4().simple().to_string()}));
    }
    ctx
}

/// A state that finished normally.
struct Exit {
    output: Value,
    next: Option<String>,
    assigned: Option<Map<String, Value>>,
}

struct Tester<'a> {
    req: &'a Request,
    state: &'a State,
    ctx: Value,
    vars: Map<String, Value>,
    rng: u64,
    /// The clock JSONata's `$now()` / `$millis()` read.
    now_ms: i64,
    insp: Map<String, Value>,
}

/// Record one inspection step. AWS returns these as JSON text; objects come back as objects in
/// the recordings, everything else as the text Python's `json.dumps` would print.
/// InputPath, then Parameters, each recorded for the inspection data.
fn input_then_parameters(st: &State, raw: &Value, scope: &mut Scope<'_>, insp: &mut Map<String, Value>) -> Result<Value, Failure> {
    let after = eval::select_path(&st.input_path, raw, scope, &st.name, 0)?;
    rec(insp, "afterInputPath", &after);
    let effective = match &st.parameters {
        Some(p) => eval::template(p, &after, scope, &st.name, 0)?,
        None => after,
    };
    rec(insp, "afterParameters", &effective);
    Ok(effective)
}

fn rec(insp: &mut Map<String, Value>, key: &str, v: &Value) {
    let shown = match v {
        Value::Object(_) => v.clone(),
        other => Value::String(py_json(other)),
    };
    insp.insert(key.to_string(), shown);
}

use crate::asl::model::error_matches;

impl Tester<'_> {
    fn name(&self) -> &str {
        &self.state.name
    }

    /// Causes without the "(entered at the event id #0)" preamble executions carry: TestState has no events.
    fn clean(&self, mut f: Failure) -> Failure {
        let prefix = eval::state_cause(self.name(), 0, "");
        if let Some(rest) = f.cause.strip_prefix(&prefix) {
            f.cause = rest.to_string();
        }
        f
    }

    fn respond(&mut self, input: &Value) -> Value {
        let res = match self.state.query_language {
            QueryLanguage::JsonPath => self.jsonpath(input),
            QueryLanguage::Jsonata => self.jsonata(input),
        };
        let mut out = Map::new();
        match res {
            Ok(exit) => {
                out.insert("status".into(), "SUCCEEDED".into());
                out.insert("output".into(), exit.output);
                if let Some(n) = exit.next {
                    out.insert("nextState".into(), Value::String(n));
                }
                if let Some(a) = exit.assigned {
                    self.vars.extend(a);
                }
            }
            Err(f) => {
                let f = self.clean(f);
                self.handle_error(input, f, &mut out);
            }
        }
        if self.req.level != Level::Info {
            if !self.vars.is_empty() {
                rec(&mut self.insp, "variables", &Value::Object(self.vars.clone()));
            }
            out.insert("inspectionData".into(), Value::Object(std::mem::take(&mut self.insp)));
        }
        Value::Object(out)
    }

    /// Retry (reported, not performed), catch, or fail.
    fn handle_error(&mut self, input: &Value, f: Failure, out: &mut Map<String, Value>) {
        let state = self.state;
        let mut details = Map::new();
        let put_error = |out: &mut Map<String, Value>, f: &Failure| {
            if !f.error.is_empty() {
                out.insert("error".into(), Value::String(f.error.clone()));
            }
            if !f.cause.is_empty() {
                out.insert("cause".into(), Value::String(f.cause.clone()));
            }
        };
        if let Some(i) = state.retry.iter().position(|r| error_matches(&r.error_equals, &f.error)) {
            let r = &state.retry[i];
            details.insert("retryIndex".into(), Value::from(i));
            let used = self.req.retrier_retry_count;
            if used < r.max_attempts {
                let mut delay = r.interval_seconds * r.backoff_rate.powi(i32::try_from(used).unwrap_or(i32::MAX));
                if let Some(m) = r.max_delay_seconds {
                    delay = delay.min(m);
                }
                details.insert("retryBackoffIntervalSeconds".into(), Value::from(delay.clamp(0.0, i64::MAX as f64) as i64));
                out.insert("status".into(), "RETRIABLE".into());
                put_error(out, &f);
                self.insp.insert("errorDetails".into(), Value::Object(details));
                return;
            }
        }
        let caught = state.catch.iter().position(|c| error_matches(&c.error_equals, &f.error));
        match caught.map(|j| (j, &state.catch[j])) {
            Some((j, c)) => match self.catch_output(input, &f, c) {
                Ok((output, assigned)) => {
                    details.insert("catchIndex".into(), Value::from(j));
                    out.insert("status".into(), "CAUGHT_ERROR".into());
                    out.insert("output".into(), output);
                    out.insert("nextState".into(), Value::String(c.next.clone()));
                    put_error(out, &f);
                    if let Some(a) = assigned {
                        self.vars.extend(a);
                    }
                }
                Err(e) => {
                    let e = self.clean(e);
                    out.insert("status".into(), "FAILED".into());
                    put_error(out, &e);
                }
            },
            None => {
                out.insert("status".into(), "FAILED".into());
                put_error(out, &f);
            }
        }
        if !details.is_empty() {
            self.insp.insert("errorDetails".into(), Value::Object(details));
        }
    }

    fn catch_output(&mut self, input: &Value, f: &Failure, c: &Catcher) -> Result<(Value, Option<Map<String, Value>>), Failure> {
        let err_out = json!({"Error": f.error, "Cause": f.cause});
        let name = self.state.name.as_str();
        match self.state.query_language {
            QueryLanguage::JsonPath => {
                let mut scope = Scope { context: &self.ctx, vars: &self.vars, rng: &mut self.rng };
                let assigned = match &c.assign {
                    Some(a) => Some(obj(eval::template(a, &err_out, &mut scope, name, 0)?)),
                    None => None,
                };
                let output = eval::apply_result_path(&c.result_path, input, err_out, name, 0)?;
                Ok((output, assigned))
            }
            QueryLanguage::Jsonata => {
                let states = json!({"input": input, "context": self.ctx, "errorOutput": err_out});
                let mut env = JsonataEnv { states, vars: &self.vars, rng: &mut self.rng, state: name, entered: 0, now_ms: self.now_ms };
                let output = match &c.output {
                    Some(o) => env.value("Output", o)?,
                    None => err_out.clone(),
                };
                let assigned = match &c.assign {
                    Some(a) => Some(obj(env.value("Assign", a)?)),
                    None => None,
                };
                Ok((output, assigned))
            }
        }
    }

    // -----------------------------------------------------------------------
    // JSONPath

    fn jsonpath(&mut self, raw: &Value) -> Result<Exit, Failure> {
        let st = self.state;
        let name = st.name.as_str();
        rec(&mut self.insp, "input", raw);
        let mut scope = Scope { context: &self.ctx, vars: &self.vars, rng: &mut self.rng };
        let insp = &mut self.insp;
        let req = self.req;
        match &st.kind {
            StateKind::Pass { result } => {
                let result = match result {
                    Some(r) => {
                        rec(insp, "result", r);
                        r.clone()
                    }
                    None => input_then_parameters(st, raw, &mut scope, insp)?,
                };
                finish_jsonpath(st, raw, result, &mut scope, insp)
            }
            StateKind::Succeed => {
                let after = eval::select_path(&st.input_path, raw, &scope, name, 0)?;
                rec(insp, "afterInputPath", &after);
                let output = eval::select_path(&st.output_path, &after, &scope, name, 0)?;
                Ok(Exit { output, next: None, assigned: None })
            }
            StateKind::Fail(f) => {
                rec(insp, "afterInputPath", raw);
                let mut pick = |v: &Option<Value>, p: &Option<String>, field: &str| -> Result<String, Failure> {
                    if let Some(v) = v {
                        return Ok(show_scalar(v));
                    }
                    let Some(p) = p else { return Ok(String::new()) };
                    let val = if crate::asl::intrinsics::looks_like_intrinsic(p) {
                        eval::template(&json!({"v.$": p}), raw, &mut scope, name, 0)?.get("v").cloned().unwrap_or(Value::Null)
                    } else {
                        match eval::resolve(p, raw, &scope) {
                            Ok(Some(v)) => v,
                            _ => {
                                return Err(Failure::runtime(format!(
                                    "The JSONPath '{p}' specified for the field '{field}' could not be found in the input '{}'",
                                    to_json(raw)
                                )));
                            }
                        }
                    };
                    Ok(show_scalar(&val))
                };
                let error = pick(&f.error, &f.error_path, "ErrorPath")?;
                let cause = pick(&f.cause, &f.cause_path, "CausePath")?;
                Err(Failure::new(error, cause))
            }
            StateKind::Choice { choices, default } => {
                let after = eval::select_path(&st.input_path, raw, &scope, name, 0)?;
                rec(insp, "afterInputPath", &after);
                let mut chosen = None;
                for c in choices {
                    let ChoiceCondition::Rule(rule) = &c.rule else { continue };
                    let resolver = |p: &str| eval::resolve(p, &after, &scope);
                    if rule.evaluate(&resolver).map_err(|e| Failure::new(e.error_name(), e.cause()))? {
                        chosen = Some((c.next.clone(), c.assign.as_ref()));
                        break;
                    }
                }
                let (next, assign) = match (chosen, default) {
                    (Some(c), _) => c,
                    (None, Some(d)) => (d.clone(), st.assign.as_ref()),
                    (None, None) => return Err(Failure::new("States.NoChoiceMatched", format!("No Matches! at state '{name}'"))),
                };
                let assigned = match assign {
                    Some(a) => Some(obj(eval::template(a, &after, &mut scope, name, 0)?)),
                    None => None,
                };
                let output = eval::select_path(&st.output_path, &after, &scope, name, 0)?;
                Ok(Exit { output, next: Some(next), assigned })
            }
            StateKind::Wait(spec) => {
                let after = eval::select_path(&st.input_path, raw, &scope, name, 0)?;
                rec(insp, "afterInputPath", &after);
                match spec {
                    WaitSpec::SecondsPath(p) => {
                        let v = eval::select_required(p, &after, &scope, name, 0)?;
                        let secs = match v.as_i64() {
                            Some(n) if v.is_i64() || v.is_u64() => n,
                            _ => {
                                return Err(Failure::runtime(format!(
                                    "The SecondsPath parameter cannot be parsed as a long value: {p} == {}",
                                    show_scalar(&v)
                                )));
                            }
                        };
                        if secs < 0 {
                            return Err(Failure::runtime(format!("The SecondsPath parameter references a negative value: {p} == {secs}")));
                        }
                        if secs > MAX_WAIT_SECONDS {
                            return Err(Failure::runtime("Wait state delay is too long."));
                        }
                    }
                    WaitSpec::TimestampPath(p) => {
                        let v = eval::select_required(p, &after, &scope, name, 0)?;
                        if v.as_str().and_then(parse_ts).is_none() {
                            return Err(Failure::runtime(format!(
                                "The TimestampPath parameter does not reference a valid ISO-8601 extended offset date-time format string: {p} == {}",
                                show_scalar(&v)
                            )));
                        }
                    }
                    WaitSpec::Seconds(_) | WaitSpec::Timestamp(_) => {}
                }
                let assigned = match &st.assign {
                    Some(a) => Some(obj(eval::template(a, &after, &mut scope, name, 0)?)),
                    None => None,
                };
                let output = eval::select_path(&st.output_path, &after, &scope, name, 0)?;
                Ok(Exit { output, next: st.next.clone(), assigned })
            }
            StateKind::Task(spec) => {
                let effective = input_then_parameters(st, raw, &mut scope, insp)?;
                for (value, path) in [(&spec.timeout, &spec.timeout_path), (&spec.heartbeat, &spec.heartbeat_path)] {
                    if let (None, Some(p)) = (value, path) {
                        let v = eval::select_required(p, &effective, &scope, name, 0)?;
                        if v.as_i64().is_none_or(|n| n <= 0) {
                            return Err(Failure::runtime(format!("The value at {p} must be a positive integer, but was: {}", to_json(&v))));
                        }
                    }
                }
                let result = task_result(req, st, &spec.resource, &effective)?;
                rec(insp, "result", &result);
                finish_jsonpath(st, raw, result, &mut scope, insp)
            }
            StateKind::Parallel { .. } => {
                let after = eval::select_path(&st.input_path, raw, &scope, name, 0)?;
                if let Some(p) = &st.parameters {
                    eval::template(p, &after, &mut scope, name, 0)?;
                }
                let result = mocked(req, st)?;
                finish_jsonpath(st, raw, result, &mut scope, insp)
            }
            StateKind::Map(spec) => {
                let after = eval::select_path(&st.input_path, raw, &scope, name, 0)?;
                rec(insp, "afterInputPath", &after);
                let items = match reader_items(req, spec)? {
                    Some(items) => items,
                    None => {
                        let v = match &spec.items_path {
                            Some(p) => eval::select_required(p, &after, &scope, name, 0)?,
                            None => after.clone(),
                        };
                        let Value::Array(items) = v else {
                            let p = spec.items_path.as_deref().unwrap_or("$");
                            let shown = p.strip_prefix("$$").map(|r| format!("${r}")).unwrap_or_else(|| p.to_string());
                            return Err(Failure::runtime(format!("Reference path \"{shown}\" must point to array.")));
                        };
                        rec(insp, "afterItemsPath", &Value::Array(items.clone()));
                        items
                    }
                };
                if let Some(sel) = &spec.item_selector {
                    let mut selected = Vec::with_capacity(items.len());
                    for (i, item) in items.iter().enumerate() {
                        let mut c = scope.context.clone();
                        if let Some(o) = c.as_object_mut() {
                            o.insert("Map".into(), json!({"Item": {"Index": i, "Value": item}}));
                        }
                        let mut s2 = Scope { context: &c, vars: scope.vars, rng: &mut *scope.rng };
                        selected.push(eval::template(sel, &after, &mut s2, name, 0)?);
                    }
                    rec(insp, "afterItemSelector", &Value::Array(selected));
                }
                let number = |v: &Option<Value>, p: &Option<String>| -> Result<Option<Value>, Failure> {
                    match (v, p) {
                        (Some(v), _) => Ok(Some(v.clone())),
                        (None, Some(p)) => eval::select_required(p, &after, &scope, name, 0).map(Some),
                        (None, None) => Ok(None),
                    }
                };
                let max_concurrency = match number(&spec.max_concurrency, &spec.max_concurrency_path)? {
                    None => 0,
                    Some(v) => v.as_u64().ok_or_else(|| {
                        Failure::runtime(format!(
                            "The MaxConcurrencyPath field refers to value \"{}\" which is not a valid integer: {}",
                            to_json(&v),
                            spec.max_concurrency_path.clone().unwrap_or_default()
                        ))
                    })?,
                };
                insp.insert("maxConcurrency".into(), Value::from(max_concurrency));
                let tolerated_count = match number(&spec.tolerated_failure_count, &spec.tolerated_failure_count_path)? {
                    None => None,
                    Some(v) => match v.as_i64() {
                        Some(n) if n < 0 => return Err(Failure::runtime("ToleratedFailureCount cannot be negative.")),
                        Some(n) => Some(n.unsigned_abs()),
                        None => {
                            return Err(Failure::runtime(format!(
                                "The ToleratedFailureCountPath field refers to value \"{}\" which is not a valid integer: {}",
                                to_json(&v),
                                spec.tolerated_failure_count_path.clone().unwrap_or_default()
                            )));
                        }
                    },
                };
                if let Some(n) = tolerated_count {
                    insp.insert("toleratedFailureCount".into(), Value::from(n));
                }
                let tolerated_pct = match number(&spec.tolerated_failure_percentage, &spec.tolerated_failure_percentage_path)? {
                    None => None,
                    Some(v) => match v.as_f64() {
                        Some(n) if (0.0..=100.0).contains(&n) => Some(n),
                        _ => return Err(Failure::runtime("ToleratedFailurePercentage must be between 0 and 100.")),
                    },
                };
                if let Some(p) = tolerated_pct {
                    insp.insert("toleratedFailurePercentage".into(), json!(p));
                }
                let result = map_result(req, st, tolerated_count, tolerated_pct, items.len())?;
                finish_jsonpath(st, raw, result, &mut scope, insp)
            }
        }
    }

    // -----------------------------------------------------------------------
    // JSONata

    fn jsonata(&mut self, raw: &Value) -> Result<Exit, Failure> {
        let st = self.state;
        let req = self.req;
        rec(&mut self.insp, "input", raw);
        let states = json!({"input": raw, "context": self.ctx});
        let mut env = JsonataEnv { states, vars: &self.vars, rng: &mut self.rng, state: &st.name, entered: 0, now_ms: self.now_ms };
        let insp = &mut self.insp;
        match &st.kind {
            StateKind::Pass { .. } | StateKind::Succeed => finish_jsonata(&mut env, st, raw, None, st.next.clone(), None),
            StateKind::Fail(f) => {
                let mut text = |v: &Option<Value>, field: &str| -> Result<String, Failure> {
                    Ok(match v {
                        Some(v) => show_scalar(&env.value(field, v)?),
                        None => String::new(),
                    })
                };
                let error = text(&f.error, "Error")?;
                let cause = text(&f.cause, "Cause")?;
                Err(Failure::new(error, cause))
            }
            StateKind::Choice { choices, default } => {
                let (next, own) = super::core::jsonata_choose(&mut env, st, choices, default)?;
                finish_jsonata(&mut env, st, raw, None, Some(next), own)
            }
            StateKind::Wait(spec) => {
                match spec {
                    WaitSpec::Seconds(v) => {
                        let s = env.value("Seconds", v)?;
                        if !s.as_i64().is_some_and(|n| (0..=MAX_WAIT_SECONDS).contains(&n)) {
                            return Err(env.unexpected_type("Seconds", v, "integer", &s));
                        }
                    }
                    WaitSpec::Timestamp(v) => {
                        let s = env.value("Timestamp", v)?;
                        if s.as_str().and_then(parse_ts).is_none() {
                            return Err(Failure {
                                origin: eval::Origin::State,
                                error: "States.QueryEvaluationError".into(),
                                cause: format!(
                                    "The Timestamp field cannot be parsed as an ISO-8601 extended offset date-time format string: {}",
                                    show_scalar(&s)
                                ),
                                location: Some("Timestamp".into()),
                            });
                        }
                    }
                    WaitSpec::SecondsPath(_) | WaitSpec::TimestampPath(_) => {}
                }
                finish_jsonata(&mut env, st, raw, None, st.next.clone(), None)
            }
            StateKind::Task(spec) => {
                let args = match &st.arguments {
                    Some(a) => env.value("Arguments", a)?,
                    None => raw.clone(),
                };
                rec(insp, "afterArguments", &args);
                for (field, v) in [("TimeoutSeconds", &spec.timeout), ("HeartbeatSeconds", &spec.heartbeat)] {
                    if let Some(v) = v {
                        let n = env.value(field, v)?;
                        if n.as_i64().is_none_or(|n| n <= 0) {
                            return Err(env.unexpected_type(field, v, "integer", &n));
                        }
                    }
                }
                let result = task_result(req, st, &spec.resource, &args)?;
                rec(insp, "result", &result);
                with_result(&mut env, &result);
                finish_jsonata(&mut env, st, raw, Some(result), st.next.clone(), None)
            }
            StateKind::Parallel { .. } => {
                if let Some(a) = &st.arguments {
                    env.value("Arguments", a)?;
                }
                let result = mocked(req, st)?;
                with_result(&mut env, &result);
                finish_jsonata(&mut env, st, raw, Some(result), st.next.clone(), None)
            }
            StateKind::Map(spec) => {
                let items = match reader_items(req, spec)? {
                    Some(items) => items,
                    None => match &spec.items {
                        Some(src) => match env.value("Items", src)? {
                            Value::Array(a) => a,
                            other => return Err(env.unexpected_type("Items", src, "array", &other)),
                        },
                        None => match raw {
                            Value::Array(a) => a.clone(),
                            other => {
                                return Err(Failure {
                                    origin: eval::Origin::State,
                                    error: "States.QueryEvaluationError".into(),
                                    cause: format!("Map state input must be an array but was: {}", to_json(other)),
                                    location: Some("Items".into()),
                                });
                            }
                        },
                    },
                };
                if let Some(sel) = &spec.item_selector {
                    for (i, item) in items.iter().enumerate() {
                        if let Some(o) = env.states.get_mut("context").and_then(Value::as_object_mut) {
                            o.insert("Map".into(), json!({"Item": {"Index": i, "Value": item}}));
                        }
                        env.value("ItemSelector", sel)?;
                    }
                    if let Some(o) = env.states.get_mut("context").and_then(Value::as_object_mut) {
                        o.remove("Map");
                    }
                }
                let mut number = |v: &Option<Value>, field: &str, ty: &str| -> Result<Option<Value>, Failure> {
                    let Some(src) = v else { return Ok(None) };
                    let n = env.value(field, src)?;
                    let ok = match ty {
                        "integer" => n.as_u64().is_some(),
                        _ => n.as_f64().is_some_and(|p| (0.0..=100.0).contains(&p)),
                    };
                    if ok { Ok(Some(n)) } else { Err(env.unexpected_type(field, src, ty, &n)) }
                };
                let max_concurrency = number(&spec.max_concurrency, "MaxConcurrency", "integer")?.and_then(|v| v.as_u64()).unwrap_or(0);
                let tolerated_count = number(&spec.tolerated_failure_count, "ToleratedFailureCount", "integer")?.and_then(|v| v.as_u64());
                let tolerated_pct =
                    number(&spec.tolerated_failure_percentage, "ToleratedFailurePercentage", "number")?.and_then(|v| v.as_f64());
                insp.insert("maxConcurrency".into(), Value::from(max_concurrency));
                if let Some(n) = tolerated_count {
                    insp.insert("toleratedFailureCount".into(), Value::from(n));
                }
                if let Some(p) = tolerated_pct {
                    insp.insert("toleratedFailurePercentage".into(), json!(p));
                }
                let result = map_result(req, st, tolerated_count, tolerated_pct, items.len())?;
                with_result(&mut env, &result);
                finish_jsonata(&mut env, st, raw, Some(result), st.next.clone(), None)
            }
        }
    }
}

/// The mocked result of a Task, Map or Parallel state.
fn mocked(req: &Request, state: &State) -> Result<Value, Failure> {
    match &req.mock {
        Some(Mock::Result(v)) => Ok(v.clone()),
        Some(Mock::Error { error, cause }) => Err(Failure::new(error.clone(), cause.clone())),
        None => Err(Failure::runtime(format!("The {} state needs a mock.", state.type_name()))),
    }
}

/// A Task's result: its mock, or the local task runner (built-in handlers, `http:invoke`).
fn task_result(req: &Request, state: &State, resource: &str, parameters: &Value) -> Result<Value, Failure> {
    if req.mock.is_some() {
        return mocked(req, state);
    }
    let request = TaskRequest {
        task_id: format!("test-state:{}", state.name),
        state: state.name.clone(),
        resource: resource.to_string(),
        parameters: parameters.clone(),
        attempt: req.retrier_retry_count,
        token: None,
    };
    match TaskRunner::new().run(&request) {
        TaskOutcome::Done(Ok(v)) => Ok(v),
        TaskOutcome::Done(Err(e)) => Err(Failure::new(e.error, e.cause)),
        TaskOutcome::Submitted(_) => Err(Failure::runtime(format!("The resource '{resource}' waits for a task token: mock its result."))),
    }
}

/// A Map state's mocked result, failed when `mapIterationFailureCount` exceeds what the state tolerates.
fn map_result(
    req: &Request,
    state: &State,
    tolerated_count: Option<u64>,
    tolerated_pct: Option<f64>,
    total: usize,
) -> Result<Value, Failure> {
    let result = mocked(req, state)?;
    let failures = req.map_iteration_failure_count.unwrap_or(0);
    if failures > 0 {
        let over_count = tolerated_count.is_some_and(|c| failures > c);
        let over_pct = tolerated_pct.is_some_and(|p| total > 0 && (failures as f64) * 100.0 / (total as f64) > p);
        if over_count || over_pct {
            return Err(Failure::new("States.ExceedToleratedFailureThreshold", "The specified tolerated failure threshold was exceeded"));
        }
    }
    Ok(result)
}

/// Items from `stateConfiguration.mapItemReaderData`, for a Map with an ItemReader.
fn reader_items(req: &Request, spec: &MapSpec) -> Result<Option<Vec<Value>>, Failure> {
    match (&spec.item_reader, &req.map_item_reader_data) {
        (None, _) => Ok(None),
        (Some(_), Some(Value::Array(a))) => Ok(Some(a.clone())),
        (Some(_), Some(other)) => Err(Failure::new(
            "States.ItemReaderFailed",
            format!("The item reader data must be a JSON array, but was: {}", show_scalar(other)),
        )),
        (Some(_), None) => Ok(Some(vec![])),
    }
}

fn with_result(env: &mut JsonataEnv<'_>, result: &Value) {
    if let Some(o) = env.states.as_object_mut() {
        o.insert("result".into(), result.clone());
    }
}

/// ResultSelector, Assign, ResultPath and OutputPath of a JSONPath state's result.
fn finish_jsonpath(st: &State, raw: &Value, result: Value, scope: &mut Scope<'_>, insp: &mut Map<String, Value>) -> Result<Exit, Failure> {
    let name = st.name.as_str();
    let selected = match &st.result_selector {
        Some(sel) => eval::template(sel, &result, scope, name, 0)?,
        None => result,
    };
    rec(insp, "afterResultSelector", &selected);
    let assigned = match &st.assign {
        Some(a) => Some(obj(eval::template(a, &selected, scope, name, 0)?)),
        None => None,
    };
    let combined = eval::apply_result_path(&st.result_path, raw, selected, name, 0)?;
    rec(insp, "afterResultPath", &combined);
    let output = eval::select_path(&st.output_path, &combined, scope, name, 0)?;
    Ok(Exit { output, next: st.next.clone(), assigned })
}

/// Assign and Output of a JSONata state: the engine's own rules.
fn finish_jsonata(
    env: &mut JsonataEnv<'_>,
    st: &State,
    raw: &Value,
    result: Option<Value>,
    next: Option<String>,
    choice: Option<(Option<&Value>, Option<&Value>)>,
) -> Result<Exit, Failure> {
    let (output, assigned) = super::core::jsonata_outputs(env, st, raw, result, choice)?;
    Ok(Exit { output, next, assigned })
}

/// JSON text as Python's `json.dumps` prints it (", " and ": " separators, ASCII only).
fn py_json(v: &Value) -> String {
    let mut out = String::new();
    write_py(v, &mut out);
    out
}

fn write_py(v: &Value, out: &mut String) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => write_py_str(s, out),
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_py(x, out);
            }
            out.push(']');
        }
        Value::Object(m) => {
            out.push('{');
            for (i, (k, x)) in m.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_py_str(k, out);
                out.push_str(": ");
                write_py(x, out);
            }
            out.push('}');
        }
    }
}

fn write_py_str(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if c.is_ascii() && !c.is_ascii_control() => out.push(c),
            c => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn test(def: Value, input: Value, args: Value) -> Value {
        match run(&def.to_string(), &input.to_string(), &args) {
            Ok(v) => v,
            Err(e) => panic!("request rejected: {e}"),
        }
    }

    #[test]
    fn pass_state_reports_each_jsonpath_step() {
        let def = json!({"Type": "Pass", "InputPath": "$.a", "Parameters": {"x.$": "$.b"}, "ResultPath": "$.r", "Next": "After"});
        let r = test(def, json!({"a": {"b": 1}}), json!({"inspectionLevel": "DEBUG"}));
        assert_eq!(r["status"], "SUCCEEDED");
        assert_eq!(r["nextState"], "After");
        assert_eq!(r["output"], json!({"a": {"b": 1}, "r": {"x": 1}}));
        let insp = &r["inspectionData"];
        assert_eq!(insp["afterInputPath"], json!({"b": 1}));
        assert_eq!(insp["afterParameters"], json!({"x": 1}));
        assert_eq!(insp["afterResultSelector"], json!({"x": 1}));
        assert_eq!(insp["afterResultPath"], json!({"a": {"b": 1}, "r": {"x": 1}}));
        // INFO level carries no inspection data.
        let r = test(json!({"Type": "Pass", "End": true}), json!({}), json!({"inspectionLevel": "INFO"}));
        assert!(r.get("inspectionData").is_none());
    }

    #[test]
    fn mocked_error_is_retriable_until_the_retrier_is_used_up() {
        let def = json!({"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke", "End": true,
            "Retry": [{"ErrorEquals": ["Boom"], "IntervalSeconds": 2, "BackoffRate": 3, "MaxAttempts": 2}]});
        let mock = json!({"errorOutput": {"error": "Boom", "cause": "it broke"}});
        let r =
            test(def.clone(), json!({}), json!({"inspectionLevel": "DEBUG", "mock": mock, "stateConfiguration": {"retrierRetryCount": 1}}));
        assert_eq!(r["status"], "RETRIABLE");
        assert_eq!(r["error"], "Boom");
        assert_eq!(r["cause"], "it broke");
        assert_eq!(r["inspectionData"]["errorDetails"], json!({"retryIndex": 0, "retryBackoffIntervalSeconds": 6}));
        let r = test(def, json!({}), json!({"inspectionLevel": "DEBUG", "mock": mock, "stateConfiguration": {"retrierRetryCount": 2}}));
        assert_eq!(r["status"], "FAILED");
        assert_eq!(r["inspectionData"]["errorDetails"], json!({"retryIndex": 0}));
    }

    #[test]
    fn caught_error_goes_to_the_catcher() {
        let def = json!({"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke", "End": true,
            "Catch": [{"ErrorEquals": ["Other"], "Next": "A"}, {"ErrorEquals": ["States.ALL"], "ResultPath": "$.err", "Next": "B"}]});
        let mock = json!({"errorOutput": {"error": "Boom", "cause": "c"}});
        let r = test(def, json!({"k": 1}), json!({"inspectionLevel": "TRACE", "mock": mock}));
        assert_eq!(r["status"], "CAUGHT_ERROR");
        assert_eq!(r["nextState"], "B");
        assert_eq!(r["output"], json!({"k": 1, "err": {"Error": "Boom", "Cause": "c"}}));
        assert_eq!(r["inspectionData"]["errorDetails"], json!({"catchIndex": 1}));
    }

    #[test]
    fn task_result_comes_from_the_mock_and_context_from_the_request() {
        let def = json!({"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke", "End": true,
            "ResultSelector": {"r.$": "$.v", "who.$": "$$.Execution.Name"}});
        let args =
            json!({"inspectionLevel": "TRACE", "mock": {"result": "{\"v\": [1, 2]}"}, "context": "{\"Execution\": {\"Name\": \"e1\"}}"});
        let r = test(def, json!({}), args);
        assert_eq!(r["output"], json!({"r": [1, 2], "who": "e1"}));
        assert_eq!(r["inspectionData"]["result"], json!({"v": [1, 2]}));
    }

    #[test]
    fn map_state_checks_items_and_tolerated_failures() {
        let def = json!({"Type": "Map", "ItemsPath": "$.xs", "End": true, "ToleratedFailureCount": 1,
            "ItemProcessor": {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": true}}}});
        let ok = json!({"inspectionLevel": "DEBUG", "mock": {"result": "[1, 2]"}, "stateConfiguration": {"mapIterationFailureCount": 1}});
        let r = test(def.clone(), json!({"xs": ["a", "b"]}), ok);
        assert_eq!(r["status"], "SUCCEEDED");
        assert_eq!(r["output"], json!([1, 2]));
        assert_eq!(r["inspectionData"]["afterItemsPath"], "[\"a\", \"b\"]");
        assert_eq!(r["inspectionData"]["maxConcurrency"], 0);
        assert_eq!(r["inspectionData"]["toleratedFailureCount"], 1);
        let over = json!({"mock": {"result": "[1, 2]"}, "stateConfiguration": {"mapIterationFailureCount": 2}});
        let r = test(def.clone(), json!({"xs": ["a", "b"]}), over);
        assert_eq!(r["status"], "FAILED");
        assert_eq!(r["error"], "States.ExceedToleratedFailureThreshold");
        let r = test(def, json!({"xs": 3}), json!({"mock": {"result": "[]"}}));
        assert_eq!(r["error"], "States.Runtime");
        assert_eq!(r["cause"], "Reference path \"$.xs\" must point to array.");
    }

    #[test]
    fn state_of_a_whole_machine_by_name() {
        let def = json!({"StartAt": "A", "States": {
            "A": {"Type": "Choice", "Choices": [{"Variable": "$.n", "NumericGreaterThan": 1, "Next": "Big"}], "Default": "Small"},
            "Big": {"Type": "Succeed"}, "Small": {"Type": "Fail", "Error": "E", "Cause": "small"}}});
        let r = test(def.clone(), json!({"n": 2}), json!({"stateName": "A"}));
        assert_eq!(r["nextState"], "Big");
        let r = test(def, json!({"n": 2}), json!({"stateName": "Small"}));
        assert_eq!((r["status"].as_str(), r["error"].as_str(), r["cause"].as_str()), (Some("FAILED"), Some("E"), Some("small")));
    }

    #[test]
    fn bad_requests_are_rejected_with_a_reason() {
        let pass = json!({"Type": "Pass", "End": true}).to_string();
        let map = json!({"Type": "Map", "End": true, "ItemProcessor": {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": true}}}});
        let cases: Vec<(String, &str, Value, &str)> = vec![
            ("{not json".into(), "{}", json!({}), "definition is not valid JSON"),
            (json!({"Type": "Nope"}).to_string(), "{}", json!({}), "invalid state definition"),
            (pass.clone(), "{oops", json!({}), "input is not valid JSON"),
            (pass.clone(), "{}", json!({"inspectionLevel": "LOUD"}), "inspectionLevel"),
            (pass.clone(), "{}", json!({"mock": {"result": "{}"}}), "mock is only supported"),
            (pass.clone(), "{}", json!({"variables": "[1]"}), "variables must be a JSON object"),
            (pass.clone(), "{}", json!({"stateName": "Missing"}), "invalid state machine definition"),
            (map.to_string(), "{}", json!({}), "needs a mock"),
            (json!({"StartAt": "A", "States": {"A": {"Type": "Pass", "End": true}}}).to_string(), "{}", json!({}), "set stateName"),
        ];
        for (def, input, args, want) in cases {
            match run(&def, input, &args) {
                Err(e) => assert!(e.contains(want), "{e:?} should mention {want:?}"),
                Ok(v) => panic!("{def} / {args} was accepted: {v}"),
            }
        }
    }

    #[test]
    fn odd_inputs_never_panic() {
        let defs = [
            json!({"Type": "Wait", "SecondsPath": "$.s", "End": true}),
            json!({"Type": "Fail", "ErrorPath": "$.nope", "CausePath": "States.Format('{}', $.x)"}),
            json!({"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke", "End": true, "Retry": [{"ErrorEquals": ["States.ALL"], "BackoffRate": 1e300, "MaxAttempts": 99}]}),
            json!({"Type": "Parallel", "End": true, "Branches": [{"StartAt": "P", "States": {"P": {"Type": "Pass", "End": true}}}]}),
            json!({"Type": "Pass", "QueryLanguage": "JSONata", "Output": "{% $states.input.a.b %}", "End": true}),
        ];
        let inputs = [json!({"s": -1}), json!({"s": "x"}), json!([1, "\u{1F600}"]), json!(null), json!({"x": {"y": []}})];
        let args = [
            json!({"inspectionLevel": "TRACE"}),
            json!({"inspectionLevel": "TRACE", "mock": {"errorOutput": {"error": "E"}}, "stateConfiguration": {"retrierRetryCount": 4000000000u64}}),
            json!({"mock": {"result": "\"text\""}, "stateConfiguration": {"mapIterationFailureCount": 9, "mapItemReaderData": "{}"}}),
        ];
        for d in &defs {
            for i in &inputs {
                for a in &args {
                    let _ = run(&d.to_string(), &i.to_string(), a);
                }
            }
        }
    }

    #[test]
    fn inspection_text_is_python_json() {
        assert_eq!(py_json(&json!(["a", 1, {"k": [true, null]}])), "[\"a\", 1, {\"k\": [true, null]}]");
        assert_eq!(py_json(&json!("é\u{1F600}\n")), "\"\\u00e9\\ud83d\\ude00\\n\"");
    }
}
