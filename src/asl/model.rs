//! Typed model of an Amazon States Language definition, with validation.
//!
//! Parsing collects every problem it finds (each naming the state and field),
//! so `lightbox validate` can report them all at once.

use std::collections::HashMap;

use serde_json::{Map, Value};

use super::choice::ChoiceRule;
use super::path::JsonPath;

/// One problem found in a definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Where: `States.MyState.Retry[0].ErrorEquals`.
    pub location: String,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.location, self.message)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DefinitionError {
    #[error("definition is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("definition has {} problem(s):\n{}", .0.len(), .0.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Problem>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryLanguage {
    JsonPath,
    Jsonata,
}

/// A whole machine or a nested one (Parallel branch, Map processor).
#[derive(Debug, Clone)]
pub struct Machine {
    pub start_at: String,
    pub states: Vec<State>,
    index: HashMap<String, usize>,
    pub timeout_seconds: Option<u64>,
    pub comment: Option<String>,
}

impl Machine {
    pub fn state(&self, name: &str) -> Option<&State> {
        self.index.get(name).map(|&i| &self.states[i])
    }
}

/// A parsed definition: the root machine plus every nested machine, flattened
/// into `scopes` so executions can refer to a scope by number.
#[derive(Debug, Clone)]
pub struct Definition {
    pub scopes: Vec<Machine>,
    pub raw: Value,
}

impl Definition {
    pub fn root(&self) -> &Machine {
        &self.scopes[0]
    }
    pub fn scope(&self, id: usize) -> Option<&Machine> {
        self.scopes.get(id)
    }
    pub fn parse_str(text: &str) -> Result<Definition, DefinitionError> {
        if text.len() > MAX_DEFINITION_BYTES {
            return Err(DefinitionError::Invalid(vec![Problem {
                location: "(root)".into(),
                message: format!(
                    "the definition is {} bytes; Step Functions accepts at most {MAX_DEFINITION_BYTES} bytes (1 MiB)",
                    text.len()
                ),
            }]));
        }
        let v: Value = serde_json::from_str(text)?;
        Definition::parse(&v)
    }
    pub fn parse(v: &Value) -> Result<Definition, DefinitionError> {
        let mut p = Parser { scopes: vec![], problems: vec![] };
        let ql = match v.get("QueryLanguage").and_then(Value::as_str) {
            Some("JSONata") => QueryLanguage::Jsonata,
            Some("JSONPath") | None => QueryLanguage::JsonPath,
            Some(other) => {
                p.problem("QueryLanguage", format!("must be JSONPath or JSONata, not {other:?}"));
                QueryLanguage::JsonPath
            }
        };
        p.machine(v, "", ql, true);
        if p.problems.is_empty() { Ok(Definition { scopes: p.scopes, raw: v.clone() }) } else { Err(DefinitionError::Invalid(p.problems)) }
    }
}

#[derive(Debug, Clone)]
pub struct State {
    pub name: String,
    pub kind: StateKind,
    pub query_language: QueryLanguage,
    pub next: Option<String>,
    pub end: bool,
    /// `None`: field absent (default `$`); `Some(None)`: explicit null.
    pub input_path: Option<Option<String>>,
    pub output_path: Option<Option<String>>,
    pub result_path: Option<Option<String>>,
    pub parameters: Option<Value>,
    pub result_selector: Option<Value>,
    pub arguments: Option<Value>,
    pub output: Option<Value>,
    pub assign: Option<Value>,
    pub retry: Vec<Retrier>,
    pub catch: Vec<Catcher>,
    pub raw: Value,
}

impl State {
    pub fn type_name(&self) -> &'static str {
        match self.kind {
            StateKind::Pass { .. } => "Pass",
            StateKind::Task(_) => "Task",
            StateKind::Choice { .. } => "Choice",
            StateKind::Wait(_) => "Wait",
            StateKind::Succeed => "Succeed",
            StateKind::Fail(_) => "Fail",
            StateKind::Parallel { .. } => "Parallel",
            StateKind::Map(_) => "Map",
        }
    }
    pub fn field(&self, name: &str) -> Option<&Value> {
        self.raw.get(name)
    }
}

#[derive(Debug, Clone)]
pub enum StateKind {
    Pass { result: Option<Value> },
    Task(Box<TaskSpec>),
    Choice { choices: Vec<ChoiceBranch>, default: Option<String> },
    Wait(WaitSpec),
    Succeed,
    Fail(FailSpec),
    Parallel { branches: Vec<usize> },
    Map(Box<MapSpec>),
}

#[derive(Debug, Clone)]
pub struct TaskSpec {
    pub resource: String,
    pub timeout: Option<Value>,
    pub timeout_path: Option<String>,
    pub heartbeat: Option<Value>,
    pub heartbeat_path: Option<String>,
}

#[derive(Debug, Clone)]
pub struct ChoiceBranch {
    pub rule: ChoiceCondition,
    pub next: String,
    pub assign: Option<Value>,
    pub output: Option<Value>,
}

#[derive(Debug, Clone)]
pub enum ChoiceCondition {
    Rule(ChoiceRule),
    /// JSONata `Condition` expression (or literal boolean).
    Condition(Value),
}

#[derive(Debug, Clone)]
pub enum WaitSpec {
    Seconds(Value),
    Timestamp(Value),
    SecondsPath(String),
    TimestampPath(String),
}

#[derive(Debug, Clone, Default)]
pub struct FailSpec {
    pub error: Option<Value>,
    pub error_path: Option<String>,
    pub cause: Option<Value>,
    pub cause_path: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapMode {
    Inline,
    Distributed,
}

#[derive(Debug, Clone)]
pub struct MapSpec {
    pub processor: usize,
    pub mode: MapMode,
    pub items_path: Option<String>,
    pub items: Option<Value>,
    pub item_selector: Option<Value>,
    pub max_concurrency: Option<Value>,
    pub max_concurrency_path: Option<String>,
    pub tolerated_failure_count: Option<Value>,
    pub tolerated_failure_count_path: Option<String>,
    pub tolerated_failure_percentage: Option<Value>,
    pub tolerated_failure_percentage_path: Option<String>,
    pub item_reader: Option<Value>,
    pub item_batcher: Option<Value>,
    pub result_writer: Option<Value>,
    pub label: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Jitter {
    None,
    Full,
}

#[derive(Debug, Clone)]
pub struct Retrier {
    pub error_equals: Vec<String>,
    pub interval_seconds: f64,
    pub max_attempts: u32,
    pub backoff_rate: f64,
    pub max_delay_seconds: Option<f64>,
    pub jitter: Jitter,
}

#[derive(Debug, Clone)]
pub struct Catcher {
    pub error_equals: Vec<String>,
    pub next: String,
    pub result_path: Option<Option<String>>,
    pub output: Option<Value>,
    pub assign: Option<Value>,
}

/// Whether an error matches a Retrier's or Catcher's `ErrorEquals`: by name, `States.ALL`
/// (all but the terminal `States.Runtime` and `States.DataLimitExceeded`), or
/// `States.TaskFailed` (any error not named `States.*`, terminal ones excepted).
pub fn error_matches(patterns: &[String], error: &str) -> bool {
    let terminal = matches!(error, "States.Runtime" | "States.DataLimitExceeded");
    patterns
        .iter()
        .any(|p| p == error || (!terminal && p == "States.ALL") || (p == "States.TaskFailed" && !error.starts_with("States.") && !terminal))
}

/// Largest definition Step Functions accepts, in bytes of JSON.
pub const MAX_DEFINITION_BYTES: usize = 1_048_576;
/// Largest TimeoutSeconds, HeartbeatSeconds, Wait Seconds, Retry IntervalSeconds and
/// MaxAttempts Step Functions accepts in a definition.
pub const MAX_SECONDS: u64 = 99_999_999;
/// Largest Retry MaxDelaySeconds Step Functions accepts (366 days).
pub const MAX_DELAY_SECONDS: u64 = 31_622_400;

/// The error names defined by the States language.
pub const KNOWN_STATES_ERRORS: &[&str] = &[
    "States.ALL",
    "States.HeartbeatTimeout",
    "States.Timeout",
    "States.TaskFailed",
    "States.Permissions",
    "States.ResultPathMatchFailure",
    "States.ParameterPathFailure",
    "States.QueryEvaluationError",
    "States.BranchFailed",
    "States.NoChoiceMatched",
    "States.IntrinsicFailure",
    "States.ExceedToleratedFailureThreshold",
    "States.ItemReaderFailed",
    "States.ResultWriterFailed",
    "States.Runtime",
    "States.DataLimitExceeded",
];

struct Parser {
    scopes: Vec<Machine>,
    problems: Vec<Problem>,
}

fn loc(prefix: &str, field: &str) -> String {
    if prefix.is_empty() { field.to_string() } else { format!("{prefix}.{field}") }
}

const COMMON: &[&str] = &["Type", "Comment", "QueryLanguage"];

fn allowed_fields(ty: &str, ql: QueryLanguage) -> &'static [&'static str] {
    use QueryLanguage::*;
    match (ty, ql) {
        ("Pass", JsonPath) => &["Next", "End", "InputPath", "OutputPath", "ResultPath", "Parameters", "Result", "Assign"],
        ("Pass", Jsonata) => &["Next", "End", "Output", "Assign"],
        ("Task", JsonPath) => &[
            "Next",
            "End",
            "InputPath",
            "OutputPath",
            "ResultPath",
            "Parameters",
            "ResultSelector",
            "Resource",
            "TimeoutSeconds",
            "TimeoutSecondsPath",
            "HeartbeatSeconds",
            "HeartbeatSecondsPath",
            "Retry",
            "Catch",
            "Credentials",
            "Assign",
        ],
        ("Task", Jsonata) => &[
            "Next",
            "End",
            "Output",
            "Arguments",
            "Resource",
            "TimeoutSeconds",
            "HeartbeatSeconds",
            "Retry",
            "Catch",
            "Credentials",
            "Assign",
        ],
        ("Choice", JsonPath) => &["Choices", "Default", "InputPath", "OutputPath", "Assign"],
        ("Choice", Jsonata) => &["Choices", "Default", "Output", "Assign"],
        ("Wait", JsonPath) => &["Next", "End", "InputPath", "OutputPath", "Seconds", "Timestamp", "SecondsPath", "TimestampPath", "Assign"],
        ("Wait", Jsonata) => &["Next", "End", "Output", "Seconds", "Timestamp", "Assign"],
        ("Succeed", JsonPath) => &["InputPath", "OutputPath"],
        ("Succeed", Jsonata) => &["Output"],
        ("Fail", JsonPath) => &["Error", "ErrorPath", "Cause", "CausePath"],
        ("Fail", Jsonata) => &["Error", "Cause"],
        ("Parallel", JsonPath) => &[
            "Next",
            "End",
            "InputPath",
            "OutputPath",
            "ResultPath",
            "Parameters",
            "ResultSelector",
            "Branches",
            "Retry",
            "Catch",
            "Assign",
        ],
        ("Parallel", Jsonata) => &["Next", "End", "Output", "Arguments", "Branches", "Retry", "Catch", "Assign"],
        ("Map", JsonPath) => &[
            "Next",
            "End",
            "InputPath",
            "OutputPath",
            "ResultPath",
            "Parameters",
            "ResultSelector",
            "ItemsPath",
            "ItemSelector",
            "Iterator",
            "ItemProcessor",
            "MaxConcurrency",
            "MaxConcurrencyPath",
            "ToleratedFailureCount",
            "ToleratedFailureCountPath",
            "ToleratedFailurePercentage",
            "ToleratedFailurePercentagePath",
            "ItemReader",
            "ItemBatcher",
            "ResultWriter",
            "Label",
            "Retry",
            "Catch",
            "Assign",
        ],
        ("Map", Jsonata) => &[
            "Next",
            "End",
            "Output",
            "Arguments",
            "Items",
            "ItemSelector",
            "Iterator",
            "ItemProcessor",
            "MaxConcurrency",
            "ToleratedFailureCount",
            "ToleratedFailurePercentage",
            "ItemReader",
            "ItemBatcher",
            "ResultWriter",
            "Label",
            "Retry",
            "Catch",
            "Assign",
        ],
        _ => &[],
    }
}

impl Parser {
    fn problem(&mut self, location: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem { location: location.into(), message: message.into() });
    }

    fn opt_str(&mut self, obj: &Map<String, Value>, key: &str, at: &str) -> Option<String> {
        match obj.get(key) {
            None => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => {
                self.problem(loc(at, key), "must be a string");
                None
            }
        }
    }

    /// A JSONPath-valued field (`InputPath`, `ItemsPath`, `SecondsPath`, ...).
    fn opt_path(&mut self, obj: &Map<String, Value>, key: &str, at: &str, reference: bool) -> Option<String> {
        let s = self.opt_str(obj, key, at)?;
        self.check_path(&s, &loc(at, key), reference);
        Some(s)
    }

    fn check_path(&mut self, s: &str, at: &str, reference: bool) {
        let target = if let Some(rest) = s.strip_prefix("$$") {
            format!("${rest}")
        } else if s.starts_with('$') && s.len() > 1 && !s[1..].starts_with(['.', '[']) {
            // variable reference: $name.rest
            let rest = s[1..].trim_start_matches(|c: char| c.is_alphanumeric() || c == '_');
            format!("${rest}")
        } else {
            s.to_string()
        };
        match JsonPath::parse(&target) {
            Ok(p) => {
                if reference && !p.is_definite() {
                    self.problem(at, format!("{s:?} must be a reference path (no wildcards, filters or slices)"));
                }
            }
            Err(e) => self.problem(at, format!("invalid JSONPath {s:?}: {e}")),
        }
    }

    /// Field that is absent, null, or a path.
    fn nullable_path(&mut self, obj: &Map<String, Value>, key: &str, at: &str, reference: bool) -> Option<Option<String>> {
        match obj.get(key) {
            None => None,
            Some(Value::Null) => Some(None),
            Some(Value::String(s)) => {
                self.check_path(s, &loc(at, key), reference);
                Some(Some(s.clone()))
            }
            Some(_) => {
                self.problem(loc(at, key), "must be a JSONPath string or null");
                None
            }
        }
    }

    fn check_template(&mut self, v: &Value, at: &str) {
        match v {
            Value::Object(m) => {
                for (k, val) in m {
                    let here = format!("{at}.{k}");
                    if let Some(_stripped) = k.strip_suffix(".$") {
                        match val {
                            Value::String(s) => {
                                if super::intrinsics::looks_like_intrinsic(s) {
                                    if let Err(e) = super::intrinsics::parse(s) {
                                        self.problem(here, format!("invalid intrinsic function: {e}"));
                                    }
                                } else if s.starts_with('$') {
                                    self.check_path(s, &here, false);
                                } else {
                                    self.problem(
                                        here,
                                        format!("value of a field ending in .$ must be a path or intrinsic function, not {s:?}"),
                                    );
                                }
                            }
                            _ => self.problem(here, "value of a field ending in .$ must be a string"),
                        }
                    } else {
                        self.check_template(val, &here);
                    }
                }
            }
            Value::Array(a) => {
                for (i, x) in a.iter().enumerate() {
                    self.check_template(x, &format!("{at}[{i}]"));
                }
            }
            _ => {}
        }
    }

    /// Every `{% ... %}` string in a JSONata state's field must parse as JSONata.
    fn check_jsonata(&mut self, v: &Value, at: &str) {
        match v {
            Value::String(s) => {
                if let Some(expr) = s.strip_prefix("{%").and_then(|r| r.strip_suffix("%}"))
                    && let Err(e) = super::jsonata::check_syntax(expr.trim())
                {
                    self.problem(at, format!("invalid JSONata expression: {e}"));
                }
            }
            Value::Object(m) => {
                for (k, x) in m {
                    self.check_jsonata(x, &format!("{at}.{k}"));
                }
            }
            Value::Array(a) => {
                for (i, x) in a.iter().enumerate() {
                    self.check_jsonata(x, &format!("{at}[{i}]"));
                }
            }
            _ => {}
        }
    }

    fn machine(&mut self, v: &Value, at: &str, ql: QueryLanguage, root: bool) -> usize {
        let id = self.scopes.len();
        self.scopes.push(Machine { start_at: String::new(), states: vec![], index: HashMap::new(), timeout_seconds: None, comment: None });
        let Some(obj) = v.as_object() else {
            self.problem(if at.is_empty() { "(root)" } else { at }, "must be a JSON object");
            return id;
        };
        let start_at = match obj.get("StartAt") {
            Some(Value::String(s)) => s.clone(),
            _ => {
                self.problem(loc(at, "StartAt"), "is required and must be a string");
                String::new()
            }
        };
        for k in obj.keys() {
            let ok = matches!(k.as_str(), "StartAt" | "States" | "Comment" | "QueryLanguage")
                || (root && matches!(k.as_str(), "TimeoutSeconds" | "Version"))
                || (!root && matches!(k.as_str(), "ProcessorConfig"));
            if !ok {
                self.problem(loc(at, k), "is not a valid field here");
            }
        }
        let timeout_seconds = match obj.get("TimeoutSeconds") {
            None => None,
            Some(t) => match t.as_u64() {
                Some(n) if n > MAX_SECONDS => {
                    self.problem(loc(at, "TimeoutSeconds"), format!("Maximum value is {MAX_SECONDS}"));
                    None
                }
                Some(n) if n > 0 => Some(n),
                _ => {
                    self.problem(loc(at, "TimeoutSeconds"), "must be a positive integer");
                    None
                }
            },
        };
        let comment = obj.get("Comment").and_then(Value::as_str).map(str::to_string);
        let mut states = vec![];
        let mut index = HashMap::new();
        match obj.get("States") {
            Some(Value::Object(m)) if !m.is_empty() => {
                for (name, sv) in m {
                    let sat = loc(at, &format!("States.{name}"));
                    if name.is_empty() || name.chars().count() > 80 {
                        self.problem(&sat, "state names must be 1 to 80 characters long");
                    }
                    if let Some(s) = self.state(name, sv, &sat, ql) {
                        index.insert(name.clone(), states.len());
                        states.push(s);
                    }
                }
            }
            _ => self.problem(loc(at, "States"), "is required and must be a non-empty object"),
        }
        let has = |n: &str| obj.get("States").and_then(|s| s.get(n)).is_some();
        if !start_at.is_empty() && !has(&start_at) {
            self.problem(loc(at, "StartAt"), format!("names state {start_at:?}, which does not exist"));
        }
        for s in &states {
            let sat = loc(at, &format!("States.{}", s.name));
            let mut targets: Vec<(String, &str)> = vec![];
            if let Some(n) = &s.next {
                targets.push((format!("{sat}.Next"), n));
            }
            if let StateKind::Choice { choices, default } = &s.kind {
                for (i, c) in choices.iter().enumerate() {
                    targets.push((format!("{sat}.Choices[{i}].Next"), &c.next));
                }
                if let Some(d) = default {
                    targets.push((format!("{sat}.Default"), d));
                }
            }
            for (i, c) in s.catch.iter().enumerate() {
                targets.push((format!("{sat}.Catch[{i}].Next"), &c.next));
            }
            for (where_, t) in targets {
                if !has(t) {
                    self.problems.push(Problem { location: where_, message: format!("names state {t:?}, which does not exist") });
                }
            }
        }
        // Reachability: every state must be reachable from StartAt.
        if self.problems.is_empty() && !start_at.is_empty() {
            let mut seen = std::collections::HashSet::new();
            let mut stack = vec![start_at.clone()];
            while let Some(n) = stack.pop() {
                if !seen.insert(n.clone()) {
                    continue;
                }
                if let Some(&i) = index.get(&n) {
                    let s: &State = &states[i];
                    stack.extend(s.next.iter().cloned());
                    stack.extend(s.catch.iter().map(|c| c.next.clone()));
                    if let StateKind::Choice { choices, default } = &s.kind {
                        stack.extend(choices.iter().map(|c| c.next.clone()));
                        stack.extend(default.iter().cloned());
                    }
                }
            }
            for s in &states {
                if !seen.contains(&s.name) {
                    self.problem(loc(at, &format!("States.{}", s.name)), "is not reachable from StartAt");
                }
            }
        }
        self.scopes[id] = Machine { start_at, states, index, timeout_seconds, comment };
        id
    }

    fn state(&mut self, name: &str, v: &Value, at: &str, inherited: QueryLanguage) -> Option<State> {
        let Some(obj) = v.as_object() else {
            self.problem(at, "must be a JSON object");
            return None;
        };
        let ql = match obj.get("QueryLanguage").and_then(Value::as_str) {
            Some("JSONata") => QueryLanguage::Jsonata,
            Some("JSONPath") => {
                if inherited == QueryLanguage::Jsonata {
                    self.problem(loc(at, "QueryLanguage"), "cannot be JSONPath when the state machine uses JSONata");
                }
                QueryLanguage::JsonPath
            }
            None => inherited,
            Some(other) => {
                self.problem(loc(at, "QueryLanguage"), format!("must be JSONPath or JSONata, not {other:?}"));
                inherited
            }
        };
        let ty = match obj.get("Type").and_then(Value::as_str) {
            Some(t) => t.to_string(),
            None => {
                self.problem(loc(at, "Type"), "is required");
                return None;
            }
        };
        let allowed = allowed_fields(&ty, ql);
        if allowed.is_empty() {
            self.problem(loc(at, "Type"), format!("{ty:?} is not a state type (Task, Choice, Wait, Pass, Map, Parallel, Succeed, Fail)"));
            return None;
        }
        for k in obj.keys() {
            if !COMMON.contains(&k.as_str()) && !allowed.contains(&k.as_str()) {
                let hint = if ql == QueryLanguage::Jsonata
                    && matches!(k.as_str(), "InputPath" | "OutputPath" | "ResultPath" | "Parameters" | "ResultSelector" | "ItemsPath")
                {
                    " (not allowed with QueryLanguage JSONata)"
                } else if ql == QueryLanguage::JsonPath && matches!(k.as_str(), "Output" | "Arguments" | "Items") {
                    " (only allowed with QueryLanguage JSONata)"
                } else {
                    ""
                };
                self.problem(loc(at, k), format!("is not a valid field for a {ty} state{hint}"));
            }
        }
        let next = self.opt_str(obj, "Next", at);
        let end = match obj.get("End") {
            None => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => {
                self.problem(loc(at, "End"), "must be a boolean");
                false
            }
        };
        let terminal_type = matches!(ty.as_str(), "Choice" | "Succeed" | "Fail");
        if !terminal_type {
            match (&next, end) {
                (Some(_), true) => self.problem(at, "cannot have both Next and End"),
                (None, false) => self.problem(at, "must have either Next or \"End\": true"),
                _ => {}
            }
        }
        let input_path = self.nullable_path(obj, "InputPath", at, false);
        let output_path = self.nullable_path(obj, "OutputPath", at, false);
        let result_path = self.nullable_path(obj, "ResultPath", at, true);
        if let Some(Some(rp)) = &result_path
            && rp.starts_with("$$")
        {
            self.problem(loc(at, "ResultPath"), "cannot refer to the context object");
        }
        let parameters = obj.get("Parameters").cloned();
        if let Some(p) = &parameters {
            self.check_template(p, &loc(at, "Parameters"));
        }
        let result_selector = obj.get("ResultSelector").cloned();
        if let Some(p) = &result_selector {
            self.check_template(p, &loc(at, "ResultSelector"));
        }
        let assign = obj.get("Assign").cloned();
        if let Some(a) = &assign
            && !a.is_object()
        {
            self.problem(loc(at, "Assign"), "must be a JSON object");
        }
        let retry = self.retriers(obj, at);
        let catch = self.catchers(obj, at, ql);
        let kind = match ty.as_str() {
            "Pass" => StateKind::Pass { result: obj.get("Result").cloned() },
            "Succeed" => StateKind::Succeed,
            "Fail" => {
                let mut f = FailSpec { error: obj.get("Error").cloned(), cause: obj.get("Cause").cloned(), ..Default::default() };
                f.error_path = self.opt_str(obj, "ErrorPath", at);
                f.cause_path = self.opt_str(obj, "CausePath", at);
                for (k, path) in [("ErrorPath", &f.error_path), ("CausePath", &f.cause_path)] {
                    if let Some(p) = path
                        && !super::intrinsics::looks_like_intrinsic(p)
                    {
                        let p = p.clone();
                        self.check_path(&p, &loc(at, k), false);
                    }
                }
                if f.error.is_some() && f.error_path.is_some() {
                    self.problem(at, "cannot have both Error and ErrorPath");
                }
                if f.cause.is_some() && f.cause_path.is_some() {
                    self.problem(at, "cannot have both Cause and CausePath");
                }
                if ql == QueryLanguage::JsonPath {
                    for k in ["Error", "Cause"] {
                        if let Some(v) = obj.get(k)
                            && !v.is_string()
                        {
                            self.problem(loc(at, k), "must be a string");
                        }
                    }
                }
                StateKind::Fail(f)
            }
            "Wait" => {
                let mut specs = vec![];
                if let Some(v) = obj.get("Seconds") {
                    let literal = ql == QueryLanguage::JsonPath || !v.is_string();
                    if literal && v.as_u64().is_none_or(|n| n > MAX_SECONDS) {
                        self.problem(loc(at, "Seconds"), format!("must be a non-negative integer no larger than {MAX_SECONDS}"));
                    }
                    specs.push(WaitSpec::Seconds(v.clone()));
                }
                if let Some(v) = obj.get("Timestamp") {
                    if ql == QueryLanguage::JsonPath && v.as_str().is_none_or(|s| chrono::DateTime::parse_from_rfc3339(s).is_err()) {
                        self.problem(loc(at, "Timestamp"), "must be an ISO-8601 extended offset date-time string");
                    }
                    specs.push(WaitSpec::Timestamp(v.clone()));
                }
                if let Some(p) = self.opt_path(obj, "SecondsPath", at, true) {
                    specs.push(WaitSpec::SecondsPath(p));
                }
                if let Some(p) = self.opt_path(obj, "TimestampPath", at, true) {
                    specs.push(WaitSpec::TimestampPath(p));
                }
                if specs.len() != 1 {
                    self.problem(at, "a Wait state needs exactly one of Seconds, Timestamp, SecondsPath, TimestampPath");
                }
                StateKind::Wait(specs.into_iter().next().unwrap_or(WaitSpec::Seconds(Value::from(0))))
            }
            "Task" => {
                let resource = match obj.get("Resource") {
                    Some(Value::String(s)) if !s.is_empty() => s.clone(),
                    _ => {
                        self.problem(loc(at, "Resource"), "is required and must be a non-empty string");
                        String::new()
                    }
                };
                let timeout_path = self.opt_path(obj, "TimeoutSecondsPath", at, true);
                let heartbeat_path = self.opt_path(obj, "HeartbeatSecondsPath", at, true);
                let timeout = obj.get("TimeoutSeconds").cloned();
                let heartbeat = obj.get("HeartbeatSeconds").cloned();
                if timeout.is_some() && timeout_path.is_some() {
                    self.problem(at, "cannot have both TimeoutSeconds and TimeoutSecondsPath");
                }
                if heartbeat.is_some() && heartbeat_path.is_some() {
                    self.problem(at, "cannot have both HeartbeatSeconds and HeartbeatSecondsPath");
                }
                for (k, v) in [("TimeoutSeconds", &timeout), ("HeartbeatSeconds", &heartbeat)] {
                    // A JSONata state may give an expression; a literal number is checked either way.
                    let Some(v) = v.as_ref().filter(|v| ql == QueryLanguage::JsonPath || !v.is_string()) else { continue };
                    match v.as_u64() {
                        Some(n) if n > MAX_SECONDS => self.problem(loc(at, k), format!("Maximum value is {MAX_SECONDS}")),
                        Some(n) if n > 0 => {}
                        _ => self.problem(loc(at, k), "must be a positive integer"),
                    }
                }
                if ql == QueryLanguage::JsonPath
                    && let (Some(t), Some(h)) = (timeout.as_ref().and_then(Value::as_u64), heartbeat.as_ref().and_then(Value::as_u64))
                    && h >= t
                {
                    self.problem(loc(at, "HeartbeatSeconds"), "must be smaller than TimeoutSeconds");
                }
                StateKind::Task(Box::new(TaskSpec { resource, timeout, timeout_path, heartbeat, heartbeat_path }))
            }
            "Choice" => {
                let default = self.opt_str(obj, "Default", at);
                let mut choices = vec![];
                match obj.get("Choices") {
                    Some(Value::Array(a)) if !a.is_empty() => {
                        for (i, c) in a.iter().enumerate() {
                            let cat = format!("{at}.Choices[{i}]");
                            let Some(cobj) = c.as_object() else {
                                self.problem(cat, "must be a JSON object");
                                continue;
                            };
                            let Some(next) = cobj.get("Next").and_then(Value::as_str).map(str::to_string) else {
                                self.problem(format!("{cat}.Next"), "is required");
                                continue;
                            };
                            let rule = if ql == QueryLanguage::Jsonata {
                                match cobj.get("Condition") {
                                    Some(v) => ChoiceCondition::Condition(v.clone()),
                                    None => {
                                        self.problem(format!("{cat}.Condition"), "is required with QueryLanguage JSONata");
                                        continue;
                                    }
                                }
                            } else {
                                let mut stripped = cobj.clone();
                                stripped.remove("Next");
                                stripped.remove("Assign");
                                stripped.remove("Comment");
                                match ChoiceRule::parse(&Value::Object(stripped), &cat) {
                                    Ok(r) => ChoiceCondition::Rule(r),
                                    Err(errs) => {
                                        for e in errs {
                                            self.problem(e.location, e.message);
                                        }
                                        continue;
                                    }
                                }
                            };
                            choices.push(ChoiceBranch {
                                rule,
                                next,
                                assign: cobj.get("Assign").cloned(),
                                output: cobj.get("Output").cloned(),
                            });
                        }
                    }
                    _ => self.problem(loc(at, "Choices"), "is required and must be a non-empty array"),
                }
                StateKind::Choice { choices, default }
            }
            "Parallel" => {
                let mut branches = vec![];
                match obj.get("Branches") {
                    Some(Value::Array(a)) if !a.is_empty() => {
                        for (i, b) in a.iter().enumerate() {
                            branches.push(self.machine(b, &format!("{at}.Branches[{i}]"), ql, false));
                        }
                    }
                    _ => self.problem(loc(at, "Branches"), "is required and must be a non-empty array"),
                }
                StateKind::Parallel { branches }
            }
            "Map" => {
                let (pkey, pv) = match (obj.get("ItemProcessor"), obj.get("Iterator")) {
                    (Some(p), None) => ("ItemProcessor", p),
                    (None, Some(p)) => ("Iterator", p),
                    (Some(_), Some(_)) => {
                        self.problem(at, "cannot have both ItemProcessor and Iterator");
                        return None;
                    }
                    (None, None) => {
                        self.problem(loc(at, "ItemProcessor"), "is required");
                        return None;
                    }
                };
                let mode = match pv.get("ProcessorConfig").and_then(|c| c.get("Mode")).and_then(Value::as_str) {
                    Some("DISTRIBUTED") => MapMode::Distributed,
                    Some("INLINE") | None => MapMode::Inline,
                    Some(other) => {
                        self.problem(format!("{at}.{pkey}.ProcessorConfig.Mode"), format!("must be INLINE or DISTRIBUTED, not {other:?}"));
                        MapMode::Inline
                    }
                };
                let processor = self.machine(pv, &format!("{at}.{pkey}"), ql, false);
                if obj.contains_key("Parameters") && obj.contains_key("ItemSelector") {
                    self.problem(at, "cannot have both Parameters and ItemSelector");
                }
                let item_selector = obj.get("ItemSelector").or_else(|| obj.get("Parameters")).cloned();
                if let Some(s) = &item_selector {
                    self.check_template(s, &loc(at, "ItemSelector"));
                }
                let items_path = self.opt_path(obj, "ItemsPath", at, true);
                let spec = MapSpec {
                    processor,
                    mode,
                    items_path,
                    items: obj.get("Items").cloned(),
                    item_selector,
                    max_concurrency: obj.get("MaxConcurrency").cloned(),
                    max_concurrency_path: self.opt_path(obj, "MaxConcurrencyPath", at, true),
                    tolerated_failure_count: obj.get("ToleratedFailureCount").cloned(),
                    tolerated_failure_count_path: self.opt_path(obj, "ToleratedFailureCountPath", at, true),
                    tolerated_failure_percentage: obj.get("ToleratedFailurePercentage").cloned(),
                    tolerated_failure_percentage_path: self.opt_path(obj, "ToleratedFailurePercentagePath", at, true),
                    item_reader: obj.get("ItemReader").cloned(),
                    item_batcher: obj.get("ItemBatcher").cloned(),
                    result_writer: obj.get("ResultWriter").cloned(),
                    label: obj.get("Label").and_then(Value::as_str).map(str::to_string),
                };
                if ql == QueryLanguage::JsonPath {
                    if let Some(v) = &spec.max_concurrency
                        && v.as_u64().is_none_or(|n| n > 100_000)
                    {
                        self.problem(loc(at, "MaxConcurrency"), "must be a non-negative integer");
                    }
                    if let Some(v) = &spec.tolerated_failure_percentage
                        && !v.as_f64().is_some_and(|n| (0.0..=100.0).contains(&n))
                    {
                        self.problem(loc(at, "ToleratedFailurePercentage"), "must be a number from 0 to 100");
                    }
                }
                StateKind::Map(Box::new(spec))
            }
            _ => return None,
        };
        if matches!(kind, StateKind::Choice { .. } | StateKind::Succeed | StateKind::Fail(_)) && (next.is_some() || end) {
            self.problem(at, format!("a {ty} state cannot have Next or End"));
        }
        if ql == QueryLanguage::Jsonata {
            for (k, v) in obj {
                // Nested machines are checked as machines, with their own query language.
                if matches!(k.as_str(), "Branches" | "ItemProcessor" | "Iterator" | "Type" | "Comment" | "QueryLanguage" | "Next") {
                    continue;
                }
                self.check_jsonata(v, &loc(at, k));
            }
        }
        Some(State {
            name: name.to_string(),
            kind,
            query_language: ql,
            next,
            end,
            input_path,
            output_path,
            result_path,
            parameters,
            result_selector,
            arguments: obj.get("Arguments").cloned(),
            output: obj.get("Output").cloned(),
            assign,
            retry,
            catch,
            raw: v.clone(),
        })
    }

    fn error_equals(&mut self, obj: &Map<String, Value>, at: &str) -> Vec<String> {
        match obj.get("ErrorEquals") {
            Some(Value::Array(a)) if !a.is_empty() => {
                let mut out = vec![];
                for (i, e) in a.iter().enumerate() {
                    match e.as_str() {
                        Some(s) => {
                            if s.starts_with("States.") && !KNOWN_STATES_ERRORS.contains(&s) {
                                self.problem(format!("{at}.ErrorEquals[{i}]"), format!("{s:?} is not a predefined States error"));
                            }
                            out.push(s.to_string());
                        }
                        None => self.problem(format!("{at}.ErrorEquals[{i}]"), "must be a string"),
                    }
                }
                if out.iter().any(|e| e == "States.ALL") && out.len() > 1 {
                    self.problem(format!("{at}.ErrorEquals"), "States.ALL must appear alone");
                }
                out
            }
            _ => {
                self.problem(format!("{at}.ErrorEquals"), "is required and must be a non-empty array of strings");
                vec![]
            }
        }
    }

    fn retriers(&mut self, obj: &Map<String, Value>, at: &str) -> Vec<Retrier> {
        let mut out = vec![];
        let Some(v) = obj.get("Retry") else { return out };
        let Some(a) = v.as_array() else {
            self.problem(loc(at, "Retry"), "must be an array");
            return out;
        };
        for (i, r) in a.iter().enumerate() {
            let rat = format!("{at}.Retry[{i}]");
            let Some(robj) = r.as_object() else {
                self.problem(rat, "must be a JSON object");
                continue;
            };
            let error_equals = self.error_equals(robj, &rat);
            if error_equals.iter().any(|e| e == "States.ALL") && i + 1 != a.len() {
                self.problem(format!("{rat}.ErrorEquals"), "a retrier with States.ALL must be the last one");
            }
            let num = |p: &mut Parser, k: &str, default: f64, min: f64, max: f64| -> f64 {
                match robj.get(k) {
                    None => default,
                    Some(v) => match v.as_f64() {
                        Some(n) if n > max => {
                            p.problem(format!("{rat}.{k}"), format!("Maximum value is {max}"));
                            default
                        }
                        Some(n) if n >= min => n,
                        _ => {
                            p.problem(format!("{rat}.{k}"), format!("must be a number no smaller than {min}"));
                            default
                        }
                    },
                }
            };
            let interval_seconds = num(self, "IntervalSeconds", 1.0, 1.0, MAX_SECONDS as f64);
            let max_attempts = num(self, "MaxAttempts", 3.0, 0.0, MAX_SECONDS as f64) as u32;
            let backoff_rate = num(self, "BackoffRate", 2.0, 1.0, f64::MAX);
            let max_delay_seconds = robj.get("MaxDelaySeconds").map(|_| num(self, "MaxDelaySeconds", 0.0, 1.0, MAX_DELAY_SECONDS as f64));
            let jitter = match robj.get("JitterStrategy").and_then(Value::as_str) {
                None | Some("NONE") => Jitter::None,
                Some("FULL") => Jitter::Full,
                Some(o) => {
                    self.problem(format!("{rat}.JitterStrategy"), format!("must be FULL or NONE, not {o:?}"));
                    Jitter::None
                }
            };
            for k in robj.keys() {
                if !matches!(
                    k.as_str(),
                    "ErrorEquals" | "IntervalSeconds" | "MaxAttempts" | "BackoffRate" | "MaxDelaySeconds" | "JitterStrategy" | "Comment"
                ) {
                    self.problem(format!("{rat}.{k}"), "is not a valid Retry field");
                }
            }
            out.push(Retrier { error_equals, interval_seconds, max_attempts, backoff_rate, max_delay_seconds, jitter });
        }
        out
    }

    fn catchers(&mut self, obj: &Map<String, Value>, at: &str, ql: QueryLanguage) -> Vec<Catcher> {
        let mut out = vec![];
        let Some(v) = obj.get("Catch") else { return out };
        let Some(a) = v.as_array() else {
            self.problem(loc(at, "Catch"), "must be an array");
            return out;
        };
        for (i, c) in a.iter().enumerate() {
            let cat = format!("{at}.Catch[{i}]");
            let Some(cobj) = c.as_object() else {
                self.problem(cat, "must be a JSON object");
                continue;
            };
            let error_equals = self.error_equals(cobj, &cat);
            let next = match cobj.get("Next").and_then(Value::as_str) {
                Some(n) => n.to_string(),
                None => {
                    self.problem(format!("{cat}.Next"), "is required");
                    continue;
                }
            };
            let result_path = if ql == QueryLanguage::JsonPath { self.nullable_path(cobj, "ResultPath", &cat, true) } else { None };
            out.push(Catcher { error_equals, next, result_path, output: cobj.get("Output").cloned(), assign: cobj.get("Assign").cloned() });
        }
        out
    }
}
