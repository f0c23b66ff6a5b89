//! Local task resources: named built-in handlers, `http:invoke`, and mocked
//! results in the AWS Step Functions Local mock-config format.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Value, json};

use super::core::{TaskError, TaskRequest};

/// What running a task produced.
#[derive(Debug, Clone, PartialEq)]
pub enum TaskOutcome {
    /// A synchronous task finished.
    Done(Result<Value, TaskError>),
    /// A callback task's request went out; its token now waits for approve/reject.
    Submitted(Value),
}

pub type Handler = Arc<dyn Fn(&Value) -> Result<Value, TaskError> + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum MockError {
    #[error("cannot read mock config {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("mock config {path} is not valid JSON: {source}")]
    Json { path: String, source: serde_json::Error },
    #[error("mock config: {0}")]
    Invalid(String),
}

/// Mocked responses for one test case: state name -> responses by attempt.
#[derive(Debug, Clone, Default)]
pub struct Mocks {
    by_state: HashMap<String, Vec<(u32, u32, MockResponse)>>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum MockResponse {
    Return(Value),
    Throw { error: String, cause: String },
}

impl Mocks {
    /// Load `--mock-config FILE --test-case NAME` (Step Functions Local format).
    /// `machine` is the state machine's name; when the config names no such machine,
    /// a test case of that name under any single machine is used.
    pub fn load(path: &str, machine: &str, test_case: &str) -> Result<Mocks, MockError> {
        let text = std::fs::read_to_string(path).map_err(|e| MockError::Read { path: path.into(), source: e })?;
        let v: Value = serde_json::from_str(&text).map_err(|e| MockError::Json { path: path.into(), source: e })?;
        Mocks::from_value(&v, machine, test_case)
    }

    pub fn from_value(v: &Value, machine: &str, test_case: &str) -> Result<Mocks, MockError> {
        let machines = v
            .get("StateMachines")
            .and_then(Value::as_object)
            .ok_or_else(|| MockError::Invalid("missing \"StateMachines\" object".into()))?;
        let responses = v
            .get("MockedResponses")
            .and_then(Value::as_object)
            .ok_or_else(|| MockError::Invalid("missing \"MockedResponses\" object".into()))?;
        let cases: Vec<&Value> = match machines.get(machine) {
            Some(m) => vec![m],
            None => machines.values().collect(),
        };
        let case = cases
            .iter()
            .find_map(|m| m.get("TestCases").and_then(|t| t.get(test_case)))
            .ok_or_else(|| MockError::Invalid(format!("no test case {test_case:?} for state machine {machine:?}")))?;
        let case = case.as_object().ok_or_else(|| MockError::Invalid(format!("test case {test_case:?} must be an object")))?;
        let mut by_state = HashMap::new();
        for (state, resp_name) in case {
            let resp_name = resp_name
                .as_str()
                .ok_or_else(|| MockError::Invalid(format!("test case {test_case:?}: state {state:?} must name a mocked response")))?;
            let resp = responses
                .get(resp_name)
                .and_then(Value::as_object)
                .ok_or_else(|| MockError::Invalid(format!("mocked response {resp_name:?} (for state {state:?}) is not defined")))?;
            let mut list = vec![];
            for (range, r) in resp {
                let (lo, hi) = match range.split_once('-') {
                    Some((a, b)) => (a.trim().parse::<u32>(), b.trim().parse::<u32>()),
                    None => (range.trim().parse::<u32>(), range.trim().parse::<u32>()),
                };
                let (Ok(lo), Ok(hi)) = (lo, hi) else {
                    return Err(MockError::Invalid(format!(
                        "mocked response {resp_name:?}: {range:?} is not an invocation number or range like \"1-3\""
                    )));
                };
                let r = if let Some(ret) = r.get("Return") {
                    MockResponse::Return(ret.clone())
                } else if let Some(t) = r.get("Throw") {
                    MockResponse::Throw {
                        error: t.get("Error").and_then(Value::as_str).unwrap_or("States.TaskFailed").to_string(),
                        cause: t.get("Cause").and_then(Value::as_str).unwrap_or_default().to_string(),
                    }
                } else {
                    return Err(MockError::Invalid(format!("mocked response {resp_name:?} {range:?}: needs \"Return\" or \"Throw\"")));
                };
                list.push((lo, hi, r));
            }
            by_state.insert(state.clone(), list);
        }
        Ok(Mocks { by_state })
    }

    pub fn response(&self, state: &str, attempt: u32) -> Option<&MockResponse> {
        let list = self.by_state.get(state)?;
        list.iter().find(|(lo, hi, _)| attempt >= *lo && attempt <= *hi).map(|(_, _, r)| r).or_else(|| list.last().map(|(_, _, r)| r))
    }
}

/// Runs task resources for the embedded engine.
#[derive(Clone, Default)]
pub struct TaskRunner {
    handlers: HashMap<String, Handler>,
    mocks: Option<Arc<Mocks>>,
}

fn err(error: &str, cause: impl Into<String>) -> TaskError {
    TaskError { error: error.into(), cause: cause.into() }
}

impl TaskRunner {
    pub fn new() -> TaskRunner {
        let mut r = TaskRunner::default();
        r.register("echo", |v| Ok(v.clone()));
        r.register("fail", |v| {
            Err(err(
                v.get("error").and_then(Value::as_str).unwrap_or("Lightbox.Failed"),
                v.get("cause").and_then(Value::as_str).unwrap_or("the fail handler was asked to fail"),
            ))
        });
        r
    }

    pub fn with_mocks(mut self, mocks: Mocks) -> TaskRunner {
        self.mocks = Some(Arc::new(mocks));
        self
    }

    pub fn register(&mut self, name: &str, f: impl Fn(&Value) -> Result<Value, TaskError> + Send + Sync + 'static) {
        self.handlers.insert(name.to_string(), Arc::new(f));
    }

    pub fn handler_names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.handlers.keys().cloned().collect();
        v.sort();
        v
    }

    /// Run one task request. Never panics; unknown resources fail the task with a clear cause.
    pub fn run(&self, req: &TaskRequest) -> TaskOutcome {
        let callback = req.resource.ends_with(".waitForTaskToken");
        if let Some(m) = self.mocks.as_ref().and_then(|m| m.response(&req.state, req.attempt)) {
            return TaskOutcome::Done(match m {
                MockResponse::Return(v) => Ok(v.clone()),
                MockResponse::Throw { error, cause } => Err(err(error, cause.clone())),
            });
        }
        let base = req.resource.trim_end_matches(".waitForTaskToken").trim_end_matches(".sync:2").trim_end_matches(".sync");
        let result = match base {
            "arn:aws:states:::lambda:invoke" => {
                let name = req.parameters.get("FunctionName").and_then(Value::as_str).unwrap_or_default();
                let payload = req.parameters.get("Payload").cloned().unwrap_or(Value::Null);
                self.call_handler(name, &payload).map(|out| {
                    json!({
                        "ExecutedVersion": "$LATEST",
                        "Payload": out,
                        "SdkHttpMetadata": {"HttpStatusCode": 200},
                        "SdkResponseMetadata": {},
                        "StatusCode": 200
                    })
                })
            }
            "arn:aws:states:::http:invoke" => http_invoke(&req.parameters),
            r if r.starts_with("arn:aws:lambda:") => {
                let name = r.rsplit(':').next().unwrap_or_default();
                self.call_handler(name, &req.parameters)
            }
            r if r.starts_with("lightbox:") => self.call_handler(&r["lightbox:".len()..], &req.parameters),
            _ if callback => Ok(json!({})),
            r => Err(err(
                "Lightbox.UnsupportedResource",
                format!(
                    "The resource '{r}' has no local handler. Use a built-in handler, http:invoke, or a mock config (--mock-config FILE --test-case NAME)."
                ),
            )),
        };
        if callback {
            // The request went out (or its handler ran); now the token waits.
            return match result {
                Ok(v) => TaskOutcome::Submitted(v),
                Err(e) => TaskOutcome::Done(Err(e)),
            };
        }
        TaskOutcome::Done(result)
    }

    fn call_handler(&self, name: &str, payload: &Value) -> Result<Value, TaskError> {
        let short = name.rsplit(':').next().unwrap_or(name);
        match self.handlers.get(short).or_else(|| self.handlers.get(name)) {
            Some(h) => h(payload),
            None => Err(err(
                "Lambda.ResourceNotFoundException",
                format!("Function not found: {name} (no built-in handler of that name; known: {})", self.handler_names().join(", ")),
            )),
        }
    }
}

/// `arn:aws:states:::http:invoke`: call an HTTP API and return its response as Step Functions does.
fn http_invoke(p: &Value) -> Result<Value, TaskError> {
    let endpoint = p
        .get("ApiEndpoint")
        .and_then(Value::as_str)
        .ok_or_else(|| err("States.Runtime", "http:invoke needs an ApiEndpoint string parameter"))?;
    let method = p.get("Method").and_then(Value::as_str).unwrap_or("GET").to_ascii_uppercase();
    let method = reqwest::Method::from_bytes(method.as_bytes())
        .map_err(|_| err("States.Runtime", format!("http:invoke: {method:?} is not an HTTP method")))?;
    let client = reqwest::blocking::Client::builder()
        .timeout(std::time::Duration::from_secs(60))
        .build()
        .map_err(|e| err("States.Http.Socket", e.to_string()))?;
    let mut url = reqwest::Url::parse(endpoint)
        .map_err(|e| err("States.Runtime", format!("http:invoke: ApiEndpoint {endpoint:?} is not a URL: {e}")))?;
    if let Some(q) = p.get("QueryParameters").and_then(Value::as_object) {
        let mut pairs = url.query_pairs_mut();
        for (k, v) in q {
            pairs.append_pair(k, &v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string()));
        }
    }
    let mut req = client.request(method, url);
    if let Some(h) = p.get("Headers").and_then(Value::as_object) {
        for (k, v) in h {
            req = req.header(k, v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string()));
        }
    }
    if let Some(b) = p.get("RequestBody") {
        req = match b {
            Value::String(s) => req.body(s.clone()),
            other => req.json(other),
        };
    }
    let resp = req.send().map_err(|e| err("States.Http.Socket", e.to_string()))?;
    let status = resp.status();
    let headers: serde_json::Map<String, Value> =
        resp.headers().iter().map(|(k, v)| (k.to_string(), Value::String(v.to_str().unwrap_or_default().to_string()))).collect();
    let text = resp.text().unwrap_or_default();
    let body = serde_json::from_str::<Value>(&text).unwrap_or(Value::String(text));
    let out = json!({
        "Headers": headers,
        "ResponseBody": body,
        "StatusCode": status.as_u16(),
        "StatusText": status.canonical_reason().unwrap_or_default(),
    });
    if status.is_success() { Ok(out) } else { Err(err(&format!("States.Http.StatusCode.{}", status.as_u16()), out.to_string())) }
}
