//! The Step Functions API operations on the embedded engine, in AWS's JSON shapes.
//!
//! Synchronous: [`Api::call`] takes the operation name (`X-Amz-Target` without its
//! `AWSStepFunctions.` prefix), the request body and the caller, locks the one engine, and
//! returns the response body or an AWS-shaped error. The HTTP layer (`super`) runs it on a
//! blocking thread. Dates are epoch seconds (floats) as the SDKs expect, `nextToken`s are
//! sealed with a key derived from the store's secret (tampering is `InvalidToken`), and every
//! call that changes something is audited with the caller's access key id.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use base64::Engine as _;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use crate::asl::model::{Definition, DefinitionError};
use crate::audit::{self, Action, AuditEntry, Outcome, Source};
use crate::engine::core::{ApplyError, hmac_sha256};
use crate::engine::{self, Acting, Engine, EngineError};
use crate::history::{ExecutionStatus, HistoryEvent, details_key};
use crate::model::{ExecutionFilter, ExecutionSummary};
use crate::store::{StateMachineRow, StoreError, ms};

/// Largest `maxResults` a list operation takes, and its default.
const MAX_RESULTS: u64 = 1000;
const DEFAULT_RESULTS: u64 = 100;
/// A ListExecutions with `redriveFilter: NOT_REDRIVEN` reads at most this many rows per page.
const SCAN_LIMIT: usize = 20_000;
/// Where a page of history or log events ends, in bytes of JSON (at least one event is
/// always returned); CloudWatch Logs caps FilterLogEvents at 1 MB the same way.
pub(crate) const PAGE_BYTES: usize = 1024 * 1024;
/// History events read from the store at a time.
const HISTORY_BATCH: usize = 32;
/// The longest `nextToken` accepted.
const MAX_TOKEN: usize = 2048;
/// Prefix of the `meta` keys that keep a state machine's `loggingConfiguration`.
const LOGGING_KEY: &str = "serve.logging:";

pub use super::error::ApiError;

impl From<audit::AuditError> for ApiError {
    fn from(e: audit::AuditError) -> ApiError {
        ApiError::internal(format!("the call could not be audited, so it was not carried out: {e}"))
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        tracing::error!(error = %e, "store error while serving an API call");
        ApiError::internal("the store could not complete the request (the server log has the details)")
    }
}

/// The AWS error an engine error is.
impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> ApiError {
        let text = e.to_string();
        // Engine messages begin with the AWS code ("ExecutionDoesNotExist: …"): keep the rest.
        let rest = |code: &str| text.strip_prefix(code).and_then(|t| t.strip_prefix(": ")).unwrap_or(&text).to_string();
        let code: &'static str = match &e {
            EngineError::Store(s) => return ApiError::from(StoreError::Corrupt(s.to_string())),
            EngineError::Definition(d) => return invalid_definition(d),
            EngineError::StateMachineDoesNotExist(_) => "StateMachineDoesNotExist",
            EngineError::StateMachineAlreadyExists(_) => "StateMachineAlreadyExists",
            EngineError::ExecutionDoesNotExist(_) => "ExecutionDoesNotExist",
            EngineError::ExecutionAlreadyExists(_) => "ExecutionAlreadyExists",
            EngineError::InvalidName(_) => "InvalidName",
            EngineError::InvalidInput(_) => "InvalidExecutionInput",
            EngineError::InvalidOutput(_) => "InvalidOutput",
            EngineError::InvalidToken(_) => "InvalidToken",
            EngineError::TaskDoesNotExist(_) => "TaskDoesNotExist",
            EngineError::TaskTimedOut { .. } => "TaskTimedOut",
            EngineError::Claimed(_)
            | EngineError::ClaimedByOther { .. }
            | EngineError::OverrideNeedsReason { .. }
            | EngineError::ClaimChanged { .. } => "TaskClaimed",
            EngineError::NotRedrivable(_) | EngineError::Apply(ApplyError::NotRedrivable { .. }) => "ExecutionNotRedrivable",
            EngineError::NotQuarantined(_) => "ValidationException",
            EngineError::Apply(_) => "ValidationException",
            EngineError::Busy(_) => return ApiError { code: "ServiceUnavailable", message: text, status: 503 },
            EngineError::Internal(_) => return ApiError::internal(text),
        };
        ApiError::new(code, rest(code))
    }
}

fn invalid_definition(d: &DefinitionError) -> ApiError {
    let what = match d {
        DefinitionError::Json(e) => format!("INVALID_JSON_DESCRIPTION: {e}"),
        DefinitionError::Invalid(p) => {
            p.iter().map(|p| format!("SCHEMA_VALIDATION_FAILED: {} at /{}", p.message, p.location)).collect::<Vec<_>>().join(", ")
        }
    };
    ApiError::new("InvalidDefinition", format!("Invalid State Machine Definition: '{what}'"))
}

/// Who made a call: the access key id that signed it, or nobody (unsigned, on loopback).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Caller {
    pub access_key_id: Option<String>,
}

impl Caller {
    /// The actor in the audit log.
    pub fn actor(&self) -> String {
        self.access_key_id.clone().unwrap_or_else(|| "loopback".into())
    }
}

/// StartSyncExecution calls that may wait at once (the server has 16 blocking threads).
pub const MAX_SYNC: usize = 8;

/// One waiting StartSyncExecution; the count drops when it ends, however it ends.
struct SyncSlot<'a>(&'a AtomicUsize);

impl<'a> SyncSlot<'a> {
    fn take(n: &'a AtomicUsize) -> Option<SyncSlot<'a>> {
        n.fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| (v < MAX_SYNC).then_some(v + 1)).ok().map(|_| SyncSlot(n))
    }
}

impl Drop for SyncSlot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The one engine behind the API, with what the API itself keeps.
pub struct Api {
    engine: Mutex<Engine>,
    page_key: [u8; 32],
    /// Refuse every call that changes something (the store or the config is read-only).
    pub read_only: bool,
    /// How long StartSyncExecution waits for an execution to finish.
    pub sync_timeout: Duration,
    /// The reason codes a call that takes a reason must name.
    pub reasons: crate::phi::ReasonCodes,
    sync_running: AtomicUsize,
}

fn now_epoch(t: DateTime<Utc>) -> Value {
    // Milliseconds as seconds: the SDKs read a JSON number as epoch seconds.
    serde_json::Number::from_f64(ms(t) as f64 / 1000.0).map(Value::Number).unwrap_or(Value::Null)
}

/// The string field `k`: absent is `None`, any other type a ValidationException.
fn opt_str<'a>(b: &'a Value, k: &str) -> Result<Option<&'a str>, ApiError> {
    match b.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(ApiError::new("SerializationException", format!("Value for '{k}' must be a string"))),
    }
}

fn req_str<'a>(b: &'a Value, k: &str) -> Result<&'a str, ApiError> {
    opt_str(b, k)?.ok_or_else(|| {
        ApiError::validation(format!(
            "1 validation error detected: Value null at '{k}' failed to satisfy constraint: Member must not be null"
        ))
    })
}

fn opt_bool(b: &Value, k: &str) -> Result<Option<bool>, ApiError> {
    match b.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(v)) => Ok(Some(*v)),
        Some(_) => Err(ApiError::new("SerializationException", format!("Value for '{k}' must be a boolean"))),
    }
}

fn max_results(b: &Value) -> Result<usize, ApiError> {
    let n = match b.get("maxResults") {
        None | Some(Value::Null) => 0,
        Some(v) => v.as_u64().ok_or_else(|| {
            ApiError::validation("1 validation error detected: Value at 'maxResults' failed to satisfy constraint: Member must have value greater than or equal to 0")
        })?,
    };
    if n > MAX_RESULTS {
        return Err(ApiError::validation(format!(
            "1 validation error detected: Value '{n}' at 'maxResults' failed to satisfy constraint: Member must have value less than or equal to {MAX_RESULTS}"
        )));
    }
    Ok(if n == 0 { DEFAULT_RESULTS } else { n } as usize)
}

/// The parts of a Step Functions ARN: `arn:aws:states:REGION:ACCOUNT:TYPE:NAME[:NAME]`.
fn arn_parts(arn: &str) -> Option<Vec<&str>> {
    let p: Vec<&str> = arn.split(':').collect();
    (p.len() >= 7 && p[0] == "arn" && p[1].starts_with("aws") && p[2] == "states" && p.iter().all(|s| !s.is_empty())).then_some(p)
}

fn check_sm_arn(arn: &str) -> Result<(), ApiError> {
    match arn_parts(arn) {
        Some(p) if p.len() == 7 && p[5] == "stateMachine" => Ok(()),
        Some(p) if p.len() == 8 && p[5] == "stateMachine" => {
            Err(ApiError::new("InvalidArn", format!("Invalid Arn: 'Versions and aliases are not supported: {arn}'")))
        }
        Some(_) => Err(ApiError::new("InvalidArn", format!("Invalid Arn: 'Resource type not valid in this context: {arn}'"))),
        None => Err(ApiError::new("InvalidArn", format!("Invalid Arn: '{arn}'"))),
    }
}

fn check_exec_arn(arn: &str) -> Result<(), ApiError> {
    match arn_parts(arn) {
        Some(p) if p.len() == 8 && (p[5] == "execution" || p[5] == "express") => Ok(()),
        Some(_) => Err(ApiError::new("InvalidArn", format!("Invalid Arn: 'Resource type not valid in this context: {arn}'"))),
        None => Err(ApiError::new("InvalidArn", format!("Invalid Arn: '{arn}'"))),
    }
}

/// A task token as the engine makes them: 64 hex digits (its length is checked by `fields`).
fn check_task_token(t: &str) -> Result<(), ApiError> {
    if t.len() != 64 || !t.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::new("InvalidToken", "Invalid Token: 'Invalid token'"));
    }
    Ok(())
}

fn logging_level_ok(v: &Value) -> Result<(), ApiError> {
    if !v.is_object() {
        return Err(ApiError::new("InvalidLoggingConfiguration", "loggingConfiguration must be an object"));
    }
    match v.get("level").and_then(Value::as_str).unwrap_or("OFF") {
        "ALL" | "ERROR" | "FATAL" | "OFF" => {}
        other => return Err(ApiError::new("InvalidLoggingConfiguration", format!("Invalid logging level: {other}"))),
    }
    if let Some(d) = v.get("destinations")
        && d.as_array().is_none_or(|a| a.len() > 1)
    {
        return Err(ApiError::new("InvalidLoggingConfiguration", "destinations must be a list of at most one log group"));
    }
    Ok(())
}

/// How long after it stopped an execution can be redriven, as on AWS.
const REDRIVE_WINDOW_DAYS: i64 = 14;

fn redrive_status(r: &ExecutionSummary, now: DateTime<Utc>) -> (&'static str, Option<String>) {
    match r.status {
        s if s.is_redrivable() && r.stop.is_some_and(|t| now - t > chrono::Duration::days(REDRIVE_WINDOW_DAYS)) => {
            ("NOT_REDRIVABLE", Some(format!("Execution stopped more than {REDRIVE_WINDOW_DAYS} days ago and can no longer be redriven")))
        }
        s if s.is_redrivable() => ("REDRIVABLE", None),
        s => ("NOT_REDRIVABLE", Some(format!("Execution is {s} and cannot be redriven"))),
    }
}

/// Constant-time equality (signatures, page-token seals).
pub fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect()
}

impl Api {
    pub fn new(engine: Engine) -> Result<Api, ApiError> {
        let key = engine.store.token_key()?;
        Ok(Api {
            page_key: hmac_sha256(&key, b"lightbox-serve-page-token-v1"),
            engine: Mutex::new(engine),
            read_only: false,
            reasons: crate::phi::ReasonCodes::default(),
            sync_timeout: Duration::from_secs(60),
            sync_running: AtomicUsize::new(0),
        })
    }

    /// The engine, locked. A panic while it was held does not make it unusable: every
    /// engine step commits or rolls back on its own.
    pub fn lock(&self) -> MutexGuard<'_, Engine> {
        self.engine.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Run one operation.
    pub fn call(&self, op: &str, body: &Value, caller: &Caller) -> Result<Value, ApiError> {
        if !body.is_object() {
            return Err(ApiError::new("SerializationException", "the request body must be a JSON object"));
        }
        super::fields::check(op, body)?;
        if matches!(op, "CreateStateMachine" | "UpdateStateMachine" | "TestState")
            && let Some(role) = opt_str(body, "roleArn")?
        {
            super::fields::check_role_arn(role)?;
        }
        let mutating = matches!(
            op,
            "CreateStateMachine"
                | "UpdateStateMachine"
                | "DeleteStateMachine"
                | "StartExecution"
                | "StartSyncExecution"
                | "StopExecution"
                | "RedriveExecution"
                | "SendTaskSuccess"
                | "SendTaskFailure"
                | "SendTaskHeartbeat"
        );
        if mutating && self.read_only {
            return Err(ApiError::new("AccessDeniedException", format!("{op} is refused: this server is read-only")));
        }
        match op {
            "CreateStateMachine" => self.create_state_machine(body, caller),
            "DescribeStateMachine" => self.describe_state_machine(body),
            "ListStateMachines" => self.list_state_machines(body),
            "UpdateStateMachine" => self.update_state_machine(body, caller),
            "DeleteStateMachine" => self.delete_state_machine(body, caller),
            "StartExecution" => {
                self.start_execution(body, caller).map(|(r, _)| json!({"executionArn": r.arn, "startDate": now_epoch(r.start)}))
            }
            "StartSyncExecution" => self.start_sync_execution(body, caller),
            "DescribeExecution" => self.describe_execution(body),
            "ListExecutions" => self.list_executions(body),
            "GetExecutionHistory" => self.get_execution_history(body),
            "StopExecution" => self.stop_execution(body, caller),
            "RedriveExecution" => self.redrive_execution(body, caller),
            "SendTaskSuccess" => self.send_task(body, caller, Action::Approve),
            "SendTaskFailure" => self.send_task(body, caller, Action::Reject),
            "SendTaskHeartbeat" => self.send_task(body, caller, Action::Heartbeat),
            "TestState" => self.test_state(body),
            "ValidateStateMachineDefinition" => self.validate_definition(body),
            "DescribeStateMachineForExecution" => self.describe_state_machine_for_execution(body),
            _ => Err(ApiError::new("UnknownOperationException", format!("Unknown operation: {op}"))),
        }
    }

    // ----- page tokens ------------------------------------------------------

    /// A `nextToken`: the position, sealed (HMAC) together with the request it continues.
    pub(crate) fn seal(&self, scope: &str, pos: Value) -> String {
        let body = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json!({"s": scope, "p": pos}).to_string());
        let mac = hmac_sha256(&self.page_key, body.as_bytes());
        format!("{body}.{}", hex(&mac[..20]))
    }

    /// The position a `nextToken` holds; a token this server did not issue for this very
    /// request (other filters, another machine, edited) is `InvalidToken`.
    pub(crate) fn unseal(&self, scope: &str, token: &str) -> Result<Value, ApiError> {
        let bad = || ApiError::new("InvalidToken", "Invalid Token: 'the nextToken is not one this server issued for this request'");
        if token.len() > MAX_TOKEN {
            return Err(bad());
        }
        let (body, mac) = token.rsplit_once('.').ok_or_else(bad)?;
        let want = hex(&hmac_sha256(&self.page_key, body.as_bytes())[..20]);
        if !same_bytes(want.as_bytes(), mac.as_bytes()) {
            return Err(bad());
        }
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(body).map_err(|_| bad())?;
        let v: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
        if v.get("s").and_then(Value::as_str) != Some(scope) {
            return Err(bad());
        }
        Ok(v.get("p").cloned().unwrap_or(Value::Null))
    }

    // ----- audit ------------------------------------------------------------

    /// Run `f` under an audit intent row, and record its outcome (with the execution's
    /// status before and after when the entry names one). No intent row, no action.
    fn audited<T>(
        &self,
        eng: &mut Engine,
        mut entry: AuditEntry,
        f: impl FnOnce(&mut Engine) -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        let status = |eng: &Engine, arn: &Option<String>| {
            arn.as_deref().and_then(|a| eng.store.execution(a).ok().flatten()).map(|r| json!({"status": r.status.as_str()}))
        };
        let intent = audit::begin(eng.store.conn(), &entry, Utc::now())?;
        let before = status(eng, &entry.execution_arn);
        let r = f(eng);
        if let Some(b) = before {
            entry = entry.before(b);
        }
        if let Some(a) = status(eng, &entry.execution_arn) {
            entry = entry.after(a);
        }
        entry = entry.outcome(match &r {
            Ok(_) => Outcome::Ok,
            Err(e) => Outcome::Error(e.to_string()),
        });
        match (audit::finish(eng.store.conn(), intent, &entry, Utc::now()), r) {
            (Ok(_), r) => r,
            (Err(e), Ok(_)) => {
                Err(ApiError::internal(format!("the call was carried out but its audit outcome could not be recorded: {e}")))
            }
            (Err(e), Err(err)) => {
                tracing::error!(target: "lightbox::audit", error = %e, "a failed API call could not be audited");
                Err(err)
            }
        }
    }

    fn entry(caller: &Caller, action: Action, op: &str) -> AuditEntry {
        AuditEntry::new(caller.actor(), Source::Api, action).reason(format!("Step Functions API: {op}"))
    }

    // ----- state machines ---------------------------------------------------

    fn logging_of(eng: &Engine, arn: &str) -> Value {
        eng.store
            .conn()
            .query_row("SELECT value FROM meta WHERE key = ?1", [format!("{LOGGING_KEY}{arn}")], |r| r.get::<_, String>(0))
            .ok()
            .and_then(|s| serde_json::from_str(&s).ok())
            .unwrap_or_else(|| json!({"level": "OFF", "includeExecutionData": false}))
    }

    fn set_logging(eng: &Engine, arn: &str, v: Option<&Value>) -> Result<(), ApiError> {
        let key = format!("{LOGGING_KEY}{arn}");
        let c = eng.store.conn();
        match v {
            Some(v) => c.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)", [key, v.to_string()]),
            None => c.execute("DELETE FROM meta WHERE key = ?1", [key]),
        }
        .map_err(|e| ApiError::from(StoreError::from(e)))?;
        Ok(())
    }

    /// The state machines whose `loggingConfiguration` writes to `group` (a log group's name
    /// or ARN), with the configuration.
    pub fn machines_logging_to(eng: &Engine, group: &str) -> Result<Vec<(String, Value)>, ApiError> {
        let mut st = eng
            .store
            .conn()
            .prepare("SELECT key, value FROM meta WHERE key LIKE 'serve.logging:%'")
            .map_err(|e| ApiError::from(StoreError::from(e)))?;
        let rows: Vec<(String, String)> =
            st.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).and_then(|m| m.collect()).map_err(|e| ApiError::from(StoreError::from(e)))?;
        let mut out = vec![];
        for (k, v) in rows {
            let Ok(cfg) = serde_json::from_str::<Value>(&v) else { continue };
            let targets = cfg.get("destinations").and_then(Value::as_array).cloned().unwrap_or_default();
            let hit = targets.iter().filter_map(|d| d.pointer("/cloudWatchLogsLogGroup/logGroupArn").and_then(Value::as_str)).any(|a| {
                let name = a.split(":log-group:").nth(1).map(|n| n.trim_end_matches(":*")).unwrap_or(a);
                a == group || name == group
            });
            if hit && let Some(arn) = k.strip_prefix(LOGGING_KEY) {
                out.push((arn.to_string(), cfg));
            }
        }
        Ok(out)
    }

    fn machine(eng: &Engine, arn: &str) -> Result<StateMachineRow, ApiError> {
        check_sm_arn(arn)?;
        eng.store
            .state_machine(arn)?
            .filter(|m| m.arn == arn)
            .ok_or_else(|| ApiError::new("StateMachineDoesNotExist", format!("State Machine Does Not Exist: '{arn}'")))
    }

    fn create_state_machine(&self, b: &Value, caller: &Caller) -> Result<Value, ApiError> {
        let name = req_str(b, "name")?;
        let definition = req_str(b, "definition")?;
        let role = opt_str(b, "roleArn")?.unwrap_or(engine::DEFAULT_ROLE);
        let kind = opt_str(b, "type")?.unwrap_or("STANDARD");
        if !matches!(kind, "STANDARD" | "EXPRESS") {
            return Err(ApiError::validation(format!(
                "1 validation error detected: Value '{kind}' at 'type' failed to satisfy constraint: Member must satisfy enum value set: [STANDARD, EXPRESS]"
            )));
        }
        let logging = b.get("loggingConfiguration").filter(|v| !v.is_null());
        if let Some(l) = logging {
            logging_level_ok(l)?;
        }
        engine::check_name("state machine", name)?;
        Definition::parse_str(definition).map_err(|e| invalid_definition(&e))?;
        let mut eng = self.lock();
        let arn = engine::state_machine_arn(name);
        if let Some(existing) = eng.store.state_machine(&arn)? {
            // As on AWS: the same request again returns the machine; another is a conflict.
            if existing.definition == definition && existing.role_arn == role && existing.kind == kind {
                return Ok(json!({"stateMachineArn": existing.arn, "creationDate": now_epoch(existing.created_at)}));
            }
            return Err(ApiError::new("StateMachineAlreadyExists", format!("State Machine Already Exists: '{arn}'")));
        }
        let entry = Self::entry(caller, Action::Other("create-state-machine".into()), "CreateStateMachine");
        self.audited(&mut eng, entry, |eng| {
            let row = StateMachineRow {
                arn: arn.clone(),
                name: name.to_string(),
                definition: definition.to_string(),
                role_arn: role.to_string(),
                kind: kind.to_string(),
                created_at: eng.clock.now(),
            };
            eng.store.put_state_machine(&row)?;
            Self::set_logging(eng, &arn, logging)?;
            Ok(json!({"stateMachineArn": arn, "creationDate": now_epoch(row.created_at)}))
        })
    }

    fn describe_state_machine(&self, b: &Value) -> Result<Value, ApiError> {
        let arn = req_str(b, "stateMachineArn")?;
        let eng = self.lock();
        let m = Self::machine(&eng, arn)?;
        Ok(json!({
            "stateMachineArn": m.arn,
            "name": m.name,
            "status": "ACTIVE",
            "definition": m.definition,
            "roleArn": m.role_arn,
            "type": m.kind,
            "creationDate": now_epoch(m.created_at),
            "loggingConfiguration": Self::logging_of(&eng, &m.arn),
            "tracingConfiguration": {"enabled": false},
        }))
    }

    fn list_state_machines(&self, b: &Value) -> Result<Value, ApiError> {
        let max = max_results(b)?;
        let after = match opt_str(b, "nextToken")? {
            Some(t) => self.unseal("ListStateMachines", t)?.as_str().map(str::to_string),
            None => None,
        };
        let eng = self.lock();
        // Only this page (and one more row to know there is more), never the definitions.
        let rest = eng.store.state_machine_page(after.as_deref(), max + 1)?;
        let page: Vec<Value> = rest
            .iter()
            .take(max)
            .map(|m| json!({"stateMachineArn": m.arn, "name": m.name, "type": m.kind, "creationDate": now_epoch(m.created_at)}))
            .collect();
        let mut out = json!({"stateMachines": page});
        if rest.len() > max
            && let Some(last) = rest.get(max - 1)
        {
            out["nextToken"] = Value::String(self.seal("ListStateMachines", json!(last.name)));
        }
        Ok(out)
    }

    fn update_state_machine(&self, b: &Value, caller: &Caller) -> Result<Value, ApiError> {
        let arn = req_str(b, "stateMachineArn")?;
        let definition = opt_str(b, "definition")?;
        let role = opt_str(b, "roleArn")?;
        let logging = b.get("loggingConfiguration").filter(|v| !v.is_null());
        if definition.is_none() && role.is_none() && logging.is_none() && b.get("tracingConfiguration").is_none() {
            return Err(ApiError::new(
                "MissingRequiredParameter",
                "Either the definition, the role ARN, the LoggingConfiguration, or the TracingConfiguration must be specified",
            ));
        }
        if let Some(l) = logging {
            logging_level_ok(l)?;
        }
        if let Some(d) = definition {
            Definition::parse_str(d).map_err(|e| invalid_definition(&e))?;
        }
        let mut eng = self.lock();
        let mut m = Self::machine(&eng, arn)?;
        let entry = Self::entry(caller, Action::Other("update-state-machine".into()), "UpdateStateMachine");
        self.audited(&mut eng, entry, |eng| {
            if let Some(d) = definition {
                m.definition = d.to_string();
            }
            if let Some(r) = role {
                m.role_arn = r.to_string();
            }
            eng.store.put_state_machine(&m)?;
            if logging.is_some() {
                Self::set_logging(eng, &m.arn, logging)?;
            }
            Ok(json!({"updateDate": now_epoch(eng.clock.now())}))
        })
    }

    fn delete_state_machine(&self, b: &Value, caller: &Caller) -> Result<Value, ApiError> {
        let arn = req_str(b, "stateMachineArn")?;
        check_sm_arn(arn)?;
        let mut eng = self.lock();
        let entry = Self::entry(caller, Action::Other("delete-state-machine".into()), "DeleteStateMachine");
        // As on AWS, deleting a machine that is not there succeeds; its executions run on
        // (each keeps its own definition).
        self.audited(&mut eng, entry, |eng| {
            eng.store
                .conn()
                .execute("DELETE FROM state_machines WHERE arn = ?1", [arn])
                .map_err(|e| ApiError::from(StoreError::from(e)))?;
            Self::set_logging(eng, arn, None)?;
            Ok(json!({}))
        })
    }

    // ----- executions -------------------------------------------------------

    fn start_execution(&self, b: &Value, caller: &Caller) -> Result<(ExecutionSummary, String), ApiError> {
        let sm = req_str(b, "stateMachineArn")?;
        let input = opt_str(b, "input")?.unwrap_or("{}");
        let name = match opt_str(b, "name")? {
            Some(n) => n.to_string(),
            None => uuid::Uuid::new_v4().to_string(),
        };
        engine::check_name("execution", &name)?;
        let mut eng = self.lock();
        let m = Self::machine(&eng, sm)?;
        let arn = engine::execution_arn(&m.name, &name);
        let entry = Self::entry(caller, Action::Start, "StartExecution").execution(arn);
        let row = self.audited(&mut eng, entry, |eng| Ok(eng.start_execution(&m.arn, Some(&name), input)?))?;
        Ok((row, m.kind))
    }

    fn start_sync_execution(&self, b: &Value, caller: &Caller) -> Result<Value, ApiError> {
        let sm = req_str(b, "stateMachineArn")?;
        // Each waiting call holds one of the server's few blocking threads for up to the sync
        // timeout: bounded, so waiting callers cannot starve every other call.
        let Some(_slot) = SyncSlot::take(&self.sync_running) else {
            return Err(ApiError::new(
                "ThrottlingException",
                format!("Rate exceeded: at most {MAX_SYNC} StartSyncExecution calls wait at once"),
            ));
        };
        {
            let eng = self.lock();
            if Self::machine(&eng, sm)?.kind != "EXPRESS" {
                return Err(ApiError::new("StateMachineTypeNotSupported", "This operation is not supported by this type of state machine"));
            }
        }
        let started = Instant::now();
        let (mut row, _) = self.start_execution(b, caller)?;
        // The engine loop drives timers meanwhile: wait without holding the engine.
        let mut timed_out = false;
        while row.status == ExecutionStatus::Running {
            if started.elapsed() >= self.sync_timeout {
                timed_out = true;
                let mut eng = self.lock();
                let cause = format!("The execution did not finish within {} seconds.", self.sync_timeout.as_secs());
                row = eng.stop_execution(&row.arn, Some("States.Timeout".into()), Some(cause))?;
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
            let eng = self.lock();
            row = eng.store.execution(&row.arn)?.ok_or_else(|| ApiError::internal("the execution vanished"))?;
        }
        let status = if timed_out { "TIMED_OUT" } else { row.status.as_str() };
        let stop = row.stop.unwrap_or_else(Utc::now);
        let mut out = json!({
            "executionArn": row.arn,
            "stateMachineArn": row.state_machine_arn,
            "name": row.name,
            "startDate": now_epoch(row.start),
            "stopDate": now_epoch(stop),
            "status": status,
            "input": row.input,
            "inputDetails": {"included": true},
            "billingDetails": {"billedMemoryUsedInMB": 64, "billedDurationInMilliseconds": (stop - row.start).num_milliseconds().max(0)},
        });
        if let Some(o) = &row.output {
            out["output"] = json!(o);
            out["outputDetails"] = json!({"included": true});
        }
        if let Some(e) = &row.error {
            out["error"] = json!(e);
        }
        if let Some(c) = &row.cause {
            out["cause"] = json!(c);
        }
        Ok(out)
    }

    fn execution(eng: &Engine, arn: &str) -> Result<ExecutionSummary, ApiError> {
        check_exec_arn(arn)?;
        eng.store.execution(arn)?.ok_or_else(|| ApiError::new("ExecutionDoesNotExist", format!("Execution Does Not Exist: '{arn}'")))
    }

    fn describe_execution(&self, b: &Value) -> Result<Value, ApiError> {
        let arn = req_str(b, "executionArn")?;
        let eng = self.lock();
        let r = Self::execution(&eng, arn)?;
        let (redrive, reason) = redrive_status(&r, eng.clock.now());
        let mut out = json!({
            "executionArn": r.arn,
            "stateMachineArn": r.state_machine_arn,
            "name": r.name,
            "status": r.status.as_str(),
            "startDate": now_epoch(r.start),
            "input": r.input,
            "inputDetails": {"included": true},
            "redriveCount": r.redrive_count,
            "redriveStatus": redrive,
        });
        let o = out.as_object_mut().ok_or_else(|| ApiError::internal("response is not an object"))?;
        if let Some(t) = r.stop {
            o.insert("stopDate".into(), now_epoch(t));
        }
        if let Some(v) = &r.output {
            o.insert("output".into(), json!(v));
            o.insert("outputDetails".into(), json!({"included": true}));
        }
        if let Some(v) = &r.error {
            o.insert("error".into(), json!(v));
        }
        if let Some(v) = &r.cause {
            o.insert("cause".into(), json!(v));
        }
        if let Some(t) = r.redrive {
            o.insert("redriveDate".into(), now_epoch(t));
        }
        if let Some(why) = reason {
            o.insert("redriveStatusReason".into(), json!(why));
        }
        Ok(out)
    }

    fn list_item(r: &ExecutionSummary) -> Value {
        let mut v = json!({
            "executionArn": r.arn,
            "stateMachineArn": r.state_machine_arn,
            "name": r.name,
            "status": r.status.as_str(),
            "startDate": now_epoch(r.start),
            "redriveCount": r.redrive_count,
        });
        if let Some(t) = r.stop {
            v["stopDate"] = now_epoch(t);
        }
        if let Some(t) = r.redrive {
            v["redriveDate"] = now_epoch(t);
        }
        v
    }

    fn list_executions(&self, b: &Value) -> Result<Value, ApiError> {
        let Some(sm) = opt_str(b, "stateMachineArn")? else {
            if opt_str(b, "mapRunArn")?.is_some() {
                return Err(ApiError::new("ResourceNotFound", "Map runs are not supported by this server"));
            }
            return Err(ApiError::validation("Must provide a StateMachine ARN or MapRun ARN"));
        };
        let status = match opt_str(b, "statusFilter")? {
            None => None,
            Some(s) => Some(ExecutionStatus::parse(s).filter(|_| s == s.to_ascii_uppercase()).ok_or_else(|| {
                ApiError::validation(format!("1 validation error detected: Value '{s}' at 'statusFilter' failed to satisfy constraint: Member must satisfy enum value set: [RUNNING, SUCCEEDED, FAILED, TIMED_OUT, ABORTED, PENDING_REDRIVE]"))
            })?),
        };
        let redrive = opt_str(b, "redriveFilter")?;
        if redrive.is_some_and(|r| r != "REDRIVEN" && r != "NOT_REDRIVEN") {
            return Err(ApiError::validation(
                "1 validation error detected: Value at 'redriveFilter' failed to satisfy constraint: Member must satisfy enum value set: [REDRIVEN, NOT_REDRIVEN]",
            ));
        }
        let max = max_results(b)?;
        let scope = format!("ListExecutions\0{sm}\0{}\0{}", status.map(|s| s.as_str()).unwrap_or(""), redrive.unwrap_or(""));
        let mut after = match opt_str(b, "nextToken")? {
            Some(t) => {
                let p = self.unseal(&scope, t)?;
                let start = p.get(0).and_then(Value::as_i64);
                let arn = p.get(1).and_then(Value::as_str);
                match (start, arn) {
                    (Some(s), Some(a)) => Some((s, a.to_string())),
                    _ => return Err(ApiError::new("InvalidToken", "Invalid Token: 'the nextToken is malformed'")),
                }
            }
            None => None,
        };
        let eng = self.lock();
        let m = Self::machine(&eng, sm)?;
        let mut page: Vec<ExecutionSummary> = vec![];
        let mut scanned = 0usize;
        let mut more = false;
        loop {
            let batch = eng.store.executions(&ExecutionFilter {
                state_machine_arn: Some(m.arn.clone()),
                status,
                redriven: redrive == Some("REDRIVEN"),
                limit: max + 1,
                after: after.clone(),
            })?;
            let exhausted = batch.len() <= max;
            for r in batch {
                scanned += 1;
                after = Some((ms(r.start), r.arn.clone()));
                if redrive == Some("NOT_REDRIVEN") && r.redrive_count > 0 {
                    continue;
                }
                if page.len() == max {
                    more = true;
                    break;
                }
                page.push(r);
            }
            if more || exhausted {
                break;
            }
            if scanned >= SCAN_LIMIT {
                // A page may be short; the token says where to go on.
                more = true;
                break;
            }
        }
        let mut out = json!({"executions": page.iter().map(Self::list_item).collect::<Vec<_>>()});
        if more {
            // Continue after the last row returned (or, for a short page, the last row read).
            let pos = match page.last() {
                Some(l) if page.len() == max => (ms(l.start), l.arn.clone()),
                _ => after.unwrap_or_default(),
            };
            out["nextToken"] = Value::String(self.seal(&scope, json!([pos.0, pos.1])));
        }
        Ok(out)
    }

    fn event_json(e: &HistoryEvent, with_data: bool) -> Value {
        let mut m = Map::new();
        m.insert("timestamp".into(), now_epoch(e.timestamp));
        m.insert("type".into(), json!(e.event_type));
        m.insert("id".into(), json!(e.id));
        m.insert("previousEventId".into(), json!(e.previous_event_id));
        if let Some(key) = details_key(&e.event_type)
            && !e.details.is_null()
        {
            let mut d = e.details.clone();
            if !with_data && let Some(o) = d.as_object_mut() {
                for k in ["input", "output", "parameters", "inputDetails", "outputDetails", "parametersDetails"] {
                    o.remove(k);
                }
            }
            m.insert(key.to_string(), d);
        }
        Value::Object(m)
    }

    fn get_execution_history(&self, b: &Value) -> Result<Value, ApiError> {
        let arn = req_str(b, "executionArn")?;
        let max = max_results(b)?;
        let reverse = opt_bool(b, "reverseOrder")?.unwrap_or(false);
        let with_data = opt_bool(b, "includeExecutionData")?.unwrap_or(true);
        let scope = format!("GetExecutionHistory\0{arn}\0{reverse}");
        let after = match opt_str(b, "nextToken")? {
            Some(t) => self
                .unseal(&scope, t)?
                .as_i64()
                .ok_or_else(|| ApiError::new("InvalidToken", "Invalid Token: 'the nextToken is malformed'"))?,
            None => 0,
        };
        let eng = self.lock();
        Self::execution(&eng, arn)?;
        // Events are read a few at a time and a page ends at PAGE_BYTES (always at least one
        // event): 1,000 events each carrying 256 KiB of input and output would otherwise be
        // half a gigabyte in memory for one call. Clients page on nextToken, as on AWS.
        let (mut page, mut size, mut cursor, mut more) = (vec![], 0usize, after, false);
        'read: loop {
            let batch = eng.store.history(arn, cursor, HISTORY_BATCH, reverse)?;
            let last_batch = batch.len() < HISTORY_BATCH;
            for e in batch {
                if page.len() == max || size >= PAGE_BYTES {
                    more = true;
                    break 'read;
                }
                let j = Self::event_json(&e, with_data);
                size += serde_json::to_vec(&j).map(|v| v.len()).unwrap_or(0);
                cursor = e.id;
                page.push(j);
            }
            if last_batch {
                break;
            }
        }
        let mut out = json!({"events": page});
        if more {
            out["nextToken"] = Value::String(self.seal(&scope, json!(cursor)));
        }
        Ok(out)
    }

    fn stop_execution(&self, b: &Value, caller: &Caller) -> Result<Value, ApiError> {
        let arn = req_str(b, "executionArn")?;
        let error = opt_str(b, "error")?;
        let cause = opt_str(b, "cause")?;
        let mut eng = self.lock();
        let row = Self::execution(&eng, arn)?;
        if row.status != ExecutionStatus::Running {
            // Stopping an execution that has stopped changes nothing.
            return Ok(json!({"stopDate": now_epoch(row.stop.unwrap_or(row.start))}));
        }
        let entry = Self::entry(caller, Action::Stop, "StopExecution").execution(arn);
        self.audited(&mut eng, entry, |eng| {
            let r = eng.stop_execution(arn, error.map(str::to_string), cause.map(str::to_string))?;
            Ok(json!({"stopDate": now_epoch(r.stop.unwrap_or_else(|| eng.clock.now()))}))
        })
    }

    fn redrive_execution(&self, b: &Value, caller: &Caller) -> Result<Value, ApiError> {
        let arn = req_str(b, "executionArn")?;
        let mut eng = self.lock();
        let row = Self::execution(&eng, arn)?;
        if let ("NOT_REDRIVABLE", Some(why)) = redrive_status(&row, eng.clock.now()) {
            return Err(ApiError::new("ExecutionNotRedrivable", format!("Execution '{arn}' cannot be redriven. {why}")));
        }
        let entry = Self::entry(caller, Action::Redrive, "RedriveExecution").execution(arn);
        self.audited(&mut eng, entry, |eng| {
            let r = eng.redrive_execution(arn)?;
            Ok(json!({"redriveDate": now_epoch(r.redrive.unwrap_or_else(|| eng.clock.now()))}))
        })
    }

    fn send_task(&self, b: &Value, caller: &Caller, action: Action) -> Result<Value, ApiError> {
        let token = req_str(b, "taskToken")?;
        check_task_token(token)?;
        let op = match action {
            Action::Approve => "SendTaskSuccess",
            Action::Reject => "SendTaskFailure",
            _ => "SendTaskHeartbeat",
        };
        let output = if action == Action::Approve { Some(req_str(b, "output")?) } else { None };
        let error = opt_str(b, "error")?;
        let cause = opt_str(b, "cause")?;
        let mut eng = self.lock();
        // Exactly this token: the API takes no prefixes.
        let Some(t) = eng.store.token(token)? else {
            return Err(ApiError::new("TaskDoesNotExist", "Task Token does not exist"));
        };
        let acting = Acting::user(caller.actor());
        let entry = Self::entry(caller, action.clone(), op).execution(t.execution_arn.clone()).token(token);
        self.audited(&mut eng, entry, |eng| {
            match action {
                Action::Approve => eng.send_task_success_as(token, output.unwrap_or("{}"), &acting)?,
                Action::Reject => eng.send_task_failure_as(token, error, cause, &acting)?,
                _ => eng.send_task_heartbeat_as(token, &acting)?,
            };
            Ok(json!({}))
        })
    }

    // ----- definitions ------------------------------------------------------

    fn test_state(&self, b: &Value) -> Result<Value, ApiError> {
        let definition = req_str(b, "definition")?;
        let input = opt_str(b, "input")?.unwrap_or("");
        let mut out = crate::engine::test_state::run(definition, input, b).map_err(|m| {
            if m.contains("definition") || m.contains("state machine") {
                ApiError::new("InvalidDefinition", m)
            } else {
                ApiError::validation(m)
            }
        })?;
        // On the wire, the output and the inspection steps are JSON text.
        if let Some(o) = out.get_mut("output") {
            *o = Value::String(o.to_string());
        }
        if let Some(insp) = out.get_mut("inspectionData").and_then(Value::as_object_mut) {
            for (k, v) in insp.iter_mut() {
                if k != "errorDetails" && !v.is_string() {
                    *v = Value::String(v.to_string());
                }
            }
        }
        Ok(out)
    }

    fn validate_definition(&self, b: &Value) -> Result<Value, ApiError> {
        let definition = req_str(b, "definition")?;
        if let Some(t) = opt_str(b, "type")?
            && !matches!(t, "STANDARD" | "EXPRESS")
        {
            return Err(ApiError::validation(format!(
                "Value '{t}' at 'type' failed to satisfy constraint: Member must satisfy enum value set: [STANDARD, EXPRESS]"
            )));
        }
        let max = max_results(b)?;
        let diagnostics: Vec<Value> = match Definition::parse_str(definition) {
            Ok(_) => vec![],
            Err(DefinitionError::Json(e)) => {
                vec![json!({"severity": "ERROR", "code": "INVALID_JSON_DESCRIPTION", "message": e.to_string()})]
            }
            Err(DefinitionError::Invalid(p)) => p
                .iter()
                .map(|p| json!({"severity": "ERROR", "code": "SCHEMA_VALIDATION_FAILED", "message": p.message, "location": format!("/{}", p.location.replace('.', "/"))}))
                .collect(),
        };
        let truncated = diagnostics.len() > max;
        let result = if diagnostics.is_empty() { "OK" } else { "FAIL" };
        Ok(json!({"result": result, "diagnostics": diagnostics.into_iter().take(max).collect::<Vec<_>>(), "truncated": truncated}))
    }

    fn describe_state_machine_for_execution(&self, b: &Value) -> Result<Value, ApiError> {
        let arn = req_str(b, "executionArn")?;
        let eng = self.lock();
        let r = Self::execution(&eng, arn)?;
        let definition = match eng.store.load(arn)? {
            Some(l) => l.definition,
            None => return Err(ApiError::new("ExecutionDoesNotExist", format!("Execution Does Not Exist: '{arn}'"))),
        };
        let m = eng.store.state_machine(&r.state_machine_arn)?.filter(|m| m.arn == r.state_machine_arn);
        let name = r.state_machine_arn.rsplit(':').next().unwrap_or_default().to_string();
        Ok(json!({
            "stateMachineArn": r.state_machine_arn,
            "name": m.as_ref().map(|m| m.name.clone()).unwrap_or(name),
            "definition": definition,
            "roleArn": m.as_ref().map(|m| m.role_arn.clone()).unwrap_or_else(|| engine::DEFAULT_ROLE.into()),
            "updateDate": now_epoch(m.as_ref().map(|m| m.created_at).unwrap_or(r.start)),
            "loggingConfiguration": Self::logging_of(&eng, &r.state_machine_arn),
            "tracingConfiguration": {"enabled": false},
        }))
    }
}
