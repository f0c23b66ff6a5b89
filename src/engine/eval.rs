//! Data processing for one state: paths, payload templates, intrinsics,
//! JSONata, the context object. Pure functions over `serde_json::Value`.

use serde_json::{Map, Value};

use crate::asl::intrinsics::{self, IntrinsicContext};
use crate::asl::jsonata;
use crate::asl::path::{self, JsonPath};

/// A state failure: an error name and a cause, as Step Functions reports them.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub error: String,
    pub cause: String,
    /// For JSONata evaluation failures: the field (`Output/result`), so an
    /// `EvaluationFailed` event can name it.
    pub location: Option<String>,
    pub origin: Origin,
}

/// Where a failure came from, when that changes what the engine records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Origin {
    #[default]
    State,
    /// A Fail state: no retry or catch applies.
    FailState,
    /// A Map state failed after starting `n` items (AWS records `MapStateStarted` first).
    MapStarted(usize),
}

impl Failure {
    pub fn new(error: impl Into<String>, cause: impl Into<String>) -> Failure {
        Failure { error: error.into(), cause: cause.into(), location: None, origin: Origin::State }
    }
    pub fn runtime(cause: impl Into<String>) -> Failure {
        Failure::new("States.Runtime", cause)
    }
}

/// What data a path or expression can see while a state runs.
pub struct Scope<'a> {
    pub context: &'a Value,
    pub vars: &'a Map<String, Value>,
    pub rng: &'a mut u64,
}

/// SplitMix64: deterministic randomness from a seed carried in the execution state.
pub fn next_random(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// An object's members (anything else has none).
pub fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// A value as AWS quotes it in messages: strings bare, everything else as JSON.
pub fn show_scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => to_json(other),
    }
}

/// Compact JSON text, as AWS renders payloads in messages and events.
pub fn to_json(v: &Value) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// Split "$$.a.b" / "$var.a" / "$.a" into the value it is rooted at and a plain "$..." path.
fn rooted<'v>(p: &str, input: &'v Value, scope: &'v Scope<'_>) -> Result<(Option<&'v Value>, String), String> {
    if let Some(rest) = p.strip_prefix("$$") {
        return Ok((Some(scope.context), format!("${rest}")));
    }
    if p == "$" || p.starts_with("$.") || p.starts_with("$[") {
        return Ok((Some(input), p.to_string()));
    }
    let Some(body) = p.strip_prefix('$') else {
        return Err(format!("'{p}' is not a path"));
    };
    let name_len = body.find(|c: char| !(c.is_alphanumeric() || c == '_')).unwrap_or(body.len());
    if name_len == 0 {
        return Err(format!("'{p}' is not a valid path"));
    }
    let (name, rest) = body.split_at(name_len);
    Ok((scope.vars.get(name), format!("${rest}")))
}

/// Resolve a path over the input, the context object (`$$`) or a variable (`$name`).
/// `Ok(None)`: the path does not exist.
pub fn resolve(p: &str, input: &Value, scope: &Scope<'_>) -> Result<Option<Value>, String> {
    let (root, rest) = rooted(p, input, scope)?;
    let Some(root) = root else {
        return Ok(None);
    };
    let jp = JsonPath::parse(&rest).map_err(|e| e.to_string())?;
    Ok(jp.select(root))
}

/// Is this path rooted at a variable that does not exist?
fn undefined_variable(p: &str, scope: &Scope<'_>) -> Option<String> {
    if p.starts_with("$$") || p == "$" || p.starts_with("$.") || p.starts_with("$[") {
        return None;
    }
    let body = p.strip_prefix('$')?;
    let n = body.find(|c: char| !(c.is_alphanumeric() || c == '_')).unwrap_or(body.len());
    let name = &body[..n];
    (!scope.vars.contains_key(name)).then(|| name.to_string())
}

struct IntrinsicScope<'a, 'b> {
    input: &'a Value,
    scope: &'a mut Scope<'b>,
}

impl IntrinsicContext for IntrinsicScope<'_, '_> {
    fn resolve_path(&self, path: &str) -> Result<Option<Value>, String> {
        resolve(path, self.input, self.scope)
    }
    fn next_random_u64(&mut self) -> u64 {
        next_random(self.scope.rng)
    }
}

pub fn state_cause(state: &str, entered: i64, msg: &str) -> String {
    format!("An error occurred while executing the state '{state}' (entered at the event id #{entered}). {msg}")
}

/// Evaluate a JSONPath-mode payload template (`Parameters`, `ResultSelector`, `ItemSelector`, `Assign`).
pub fn template(tpl: &Value, input: &Value, scope: &mut Scope<'_>, state: &str, entered: i64) -> Result<Value, Failure> {
    match tpl {
        Value::Object(m) => {
            let mut out = Map::new();
            for (k, v) in m {
                if let (Some(name), Value::String(expr)) = (k.strip_suffix(".$"), v) {
                    let val = dynamic(k, expr, input, scope, state, entered)?;
                    out.insert(name.to_string(), val);
                } else {
                    out.insert(k.clone(), template(v, input, scope, state, entered)?);
                }
            }
            Ok(Value::Object(out))
        }
        Value::Array(a) => Ok(Value::Array(a.iter().map(|x| template(x, input, scope, state, entered)).collect::<Result<_, _>>()?)),
        other => Ok(other.clone()),
    }
}

fn dynamic(field: &str, expr: &str, input: &Value, scope: &mut Scope<'_>, state: &str, entered: i64) -> Result<Value, Failure> {
    if intrinsics::looks_like_intrinsic(expr) {
        let mut ctx = IntrinsicScope { input, scope };
        return intrinsics::evaluate(expr, &mut ctx).map_err(|e| {
            let cause = e.cause();
            let cause = if e.error_name() == "States.Runtime" { state_cause(state, entered, &cause) } else { cause };
            Failure::new(e.error_name(), cause)
        });
    }
    if let Some(var) = undefined_variable(expr, scope) {
        return Err(Failure::runtime(state_cause(
            state,
            entered,
            &format!(
                "The JSONPath '{expr}' specified for the field '{field}' could not be found in the input '{}'",
                undefined_var_input(&var)
            ),
        )));
    }
    match resolve(expr, input, scope) {
        Ok(Some(v)) => Ok(v),
        Ok(None) => {
            let shown = if expr.starts_with("$$") { to_json(scope.context) } else { to_json(input) };
            Err(Failure::runtime(state_cause(
                state,
                entered,
                &format!("The JSONPath '{expr}' specified for the field '{field}' could not be found in the input '{shown}'"),
            )))
        }
        Err(msg) => Err(Failure::runtime(state_cause(state, entered, &msg))),
    }
}

fn undefined_var_input(var: &str) -> String {
    format!("${var}")
}

/// `InputPath` / `OutputPath` / `ItemsPath` style selection with AWS's message.
pub fn select_path(p: &Option<Option<String>>, input: &Value, scope: &Scope<'_>, state: &str, entered: i64) -> Result<Value, Failure> {
    match p {
        None => Ok(input.clone()),
        Some(None) => Ok(Value::Object(Map::new())),
        Some(Some(p)) => select_required(p, input, scope, state, entered),
    }
}

pub fn select_required(p: &str, input: &Value, scope: &Scope<'_>, state: &str, entered: i64) -> Result<Value, Failure> {
    match resolve(p, input, scope) {
        Ok(Some(v)) => Ok(v),
        Ok(None) => {
            let canon = canonical(p);
            Err(Failure::runtime(state_cause(state, entered, &format!("Invalid path '{p}' : No results for path: {canon}"))))
        }
        Err(msg) => Err(Failure::runtime(state_cause(state, entered, &msg))),
    }
}

fn canonical(p: &str) -> String {
    let plain = if let Some(rest) = p.strip_prefix("$$") { format!("${rest}") } else { p.to_string() };
    JsonPath::parse(&plain).map(|j| j.canonical()).unwrap_or(plain)
}

/// `ResultPath`: where the result goes within the raw state input.
pub fn apply_result_path(rp: &Option<Option<String>>, raw: &Value, result: Value, state: &str, entered: i64) -> Result<Value, Failure> {
    match rp {
        None => Ok(result),
        Some(None) => Ok(raw.clone()),
        Some(Some(p)) if p == "$" => Ok(result),
        Some(Some(p)) => {
            let jp = JsonPath::parse(p).map_err(|e| Failure::runtime(state_cause(state, entered, &e.to_string())))?;
            let mut out = raw.clone();
            path::set_path(&mut out, &jp, result).map_err(|e| {
                Failure::new("States.ResultPathMatchFailure", format!("Unable to apply ResultPath '{p}' to input '{}': {e}", to_json(raw)))
            })?;
            Ok(out)
        }
    }
}

// ---------------------------------------------------------------------------
// JSONata

/// Bindings for a JSONata evaluation.
pub struct JsonataEnv<'a> {
    pub states: Value,
    pub vars: &'a Map<String, Value>,
    pub rng: &'a mut u64,
    pub state: &'a str,
    pub entered: i64,
    /// `$now()` / `$millis()` read this, not the system clock.
    pub now_ms: i64,
}

impl JsonataEnv<'_> {
    pub(crate) fn fail(&self, field: &str, msg: String) -> Failure {
        Failure {
            origin: Origin::State,
            error: "States.QueryEvaluationError".into(),
            cause: state_cause(self.state, self.entered, &msg),
            location: Some(field.to_string()),
        }
    }

    /// Evaluate one `{% expr %}` string; `None` when the expression is undefined.
    fn expr(&mut self, field: &str, expr: &str) -> Result<Option<Value>, Failure> {
        let bindings = jsonata::Bindings { states: &self.states, variables: self.vars };
        let rng = &mut *self.rng;
        let mut random = move || next_random(rng);
        jsonata::evaluate_at(expr, &bindings, &mut random, self.now_ms).map_err(|e| {
            let what = if e.is_function_result() {
                "returned an unsupported result type.".to_string()
            } else {
                format!("threw an error during evaluation. {e}")
            };
            self.fail(field, format!("The JSONata expression '{expr}' specified for the field '{field}' {what}"))
        })
    }

    /// Evaluate a JSONata-mode template: strings `{% ... %}` are expressions, everything else literal.
    pub fn value(&mut self, field: &str, tpl: &Value) -> Result<Value, Failure> {
        match tpl {
            Value::String(s) => match jsonata_expr(s) {
                Some(expr) => match self.expr(field, expr)? {
                    Some(v) => Ok(v),
                    None => Err(self.fail(
                        field,
                        format!("The JSONata expression '{expr}' specified for the field '{field}' returned nothing (undefined)."),
                    )),
                },
                None => Ok(tpl.clone()),
            },
            Value::Object(m) => {
                let mut out = Map::new();
                for (k, v) in m {
                    let sub = format!("{field}/{k}");
                    // Undefined members are dropped, as JSONata does for object constructors,
                    // except that Step Functions reports them as errors.
                    out.insert(k.clone(), self.value(&sub, v)?);
                }
                Ok(Value::Object(out))
            }
            Value::Array(a) => {
                let mut out = vec![];
                for (i, v) in a.iter().enumerate() {
                    out.push(self.value(&format!("{field}[{i}]"), v)?);
                }
                Ok(Value::Array(out))
            }
            other => Ok(other.clone()),
        }
    }

    pub fn unexpected_type(&self, field: &str, expr_src: &Value, expected: &str, got: &Value) -> Failure {
        let expr = expr_src.as_str().and_then(jsonata_expr).unwrap_or_default();
        self.fail(
            field,
            format!(
                "The JSONata expression '{expr}' specified for the field '{field}' returned an unexpected result type. Expected '{expected}', but was '{}' for value: {}",
                json_type(got),
                to_json(got)
            ),
        )
    }
}

/// The expression inside `{% ... %}`, if `s` is one.
pub fn jsonata_expr(s: &str) -> Option<&str> {
    let t = s.strip_prefix("{%")?.strip_suffix("%}")?;
    Some(t.trim())
}

pub fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}
