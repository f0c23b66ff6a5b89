//! Pure: Step Functions execution-log records and history pages mapped to the one history
//! model ([`HistoryEvent`]), and what they say about executions and pending callbacks.
//!
//! An execution log record at level ALL is `{"id", "type", "details", "previous_event_id",
//! "event_timestamp", "execution_arn", …}` (ids and the millisecond timestamp as strings);
//! `details` holds the same fields as the history event's `…EventDetails`.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, TimeZone, Utc};
use serde_json::Value;

use crate::history::{ExecutionStatus, HistoryEvent};
use crate::model::{ExecutionSummary, PendingTask};

/// A number that logs write as a string or as a number.
fn num(v: Option<&Value>) -> Option<i64> {
    match v? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// One execution-log record, parsed: the execution it belongs to and its history event.
pub fn from_log_record(text: &str) -> Option<(String, HistoryEvent)> {
    let v: Value = serde_json::from_str(text).ok()?;
    let arn = v.get("execution_arn")?.as_str()?.to_string();
    let event_type = v.get("type")?.as_str()?.to_string();
    let id = num(v.get("id"))?;
    let previous_event_id = num(v.get("previous_event_id")).unwrap_or(0);
    let timestamp = num(v.get("event_timestamp")).and_then(|ms| Utc.timestamp_millis_opt(ms).single()).unwrap_or_default();
    let details = match v.get("details") {
        // Some writers put the details in as JSON text.
        Some(Value::String(s)) => serde_json::from_str(s).unwrap_or(Value::Null),
        Some(d) => d.clone(),
        None => Value::Null,
    };
    Some((arn, HistoryEvent { id, previous_event_id, timestamp, event_type, details }))
}

/// The task token inside a `.waitForTaskToken` task's resolved parameters. `path` is where
/// the definition put `$$.Task.Token` (see [`token_path`]); without it, the first string under
/// a key named like a token (`TaskToken`, `taskToken`, `token`, …).
pub fn token_in(parameters: &Value, path: Option<&[String]>) -> Option<String> {
    if let Some(path) = path {
        let mut v = parameters;
        for k in path {
            v = v.get(k)?;
        }
        return v.as_str().map(str::to_string);
    }
    fn walk(v: &Value, depth: usize) -> Option<String> {
        if depth > 32 {
            return None;
        }
        match v {
            Value::Object(m) => {
                for (k, x) in m {
                    if k.to_ascii_lowercase().replace(['_', '-'], "").ends_with("token")
                        && let Some(s) = x.as_str()
                    {
                        return Some(s.to_string());
                    }
                }
                m.values().find_map(|x| walk(x, depth + 1))
            }
            Value::Array(a) => a.iter().find_map(|x| walk(x, depth + 1)),
            _ => None,
        }
    }
    walk(parameters, 0)
}

/// Where a state's `Parameters` (or JSONata `Arguments`) put `$$.Task.Token`: the keys from the
/// root of the resolved parameters (a `"key.$"` loses its `.$` once resolved).
pub fn token_path(state: &Value) -> Option<Vec<String>> {
    fn walk(v: &Value, at: &mut Vec<String>, depth: usize) -> bool {
        if depth > 32 {
            return false;
        }
        match v {
            Value::Object(m) => {
                for (k, x) in m {
                    let key = k.strip_suffix(".$").unwrap_or(k);
                    at.push(key.to_string());
                    let here = match x {
                        Value::String(s) => {
                            let s = s.trim();
                            s == "$$.Task.Token" || s == "{% $states.context.Task.Token %}"
                        }
                        _ => walk(x, at, depth + 1),
                    };
                    if here {
                        return true;
                    }
                    at.pop();
                }
                false
            }
            _ => false,
        }
    }
    let params = state.get("Parameters").or_else(|| state.get("Arguments"))?;
    let mut at = vec![];
    walk(params, &mut at, 0).then_some(at)
}

/// What the history of the watched executions says, built from events in any order of
/// arrival (each execution's events are applied once, by id).
#[derive(Debug, Default)]
pub struct Tracker {
    /// Per execution: the state last entered, the task each task event belongs to.
    execs: HashMap<String, ExecTrack>,
    /// Open callbacks by token.
    pub pending: BTreeMap<String, PendingTask>,
}

#[derive(Debug, Default)]
struct ExecTrack {
    last_state: Option<(String, DateTime<Utc>)>,
    /// Task event id → the id of the `TaskScheduled` it follows from, and that task's token.
    task_of: HashMap<i64, (i64, Option<String>)>,
    /// Event ids applied (so a record read twice changes nothing).
    seen: std::collections::BTreeSet<i64>,
}

/// At most this many executions are tracked at once (the oldest finished ones go first).
const TRACKED_MAX: usize = 50_000;

/// How an event changes an execution's summary.
pub enum Change {
    None,
    Started { input: String, at: DateTime<Utc> },
    State { name: String, at: DateTime<Utc> },
    Ended { status: ExecutionStatus, at: DateTime<Utc>, output: Option<String>, error: Option<String>, cause: Option<String> },
    Redriven { at: DateTime<Utc> },
}

impl Tracker {
    /// Apply one event of `arn`. `token_path` finds where a state put its task token (from
    /// the definition), by state name. Returns whether the event was new, and its change.
    pub fn apply(&mut self, arn: &str, e: &HistoryEvent, token_path: &dyn Fn(&str) -> Option<Vec<String>>) -> (bool, Change) {
        if self.execs.len() >= TRACKED_MAX && !self.execs.contains_key(arn) {
            // Forget executions with no open callback first; never grow without bound.
            let open: std::collections::HashSet<&str> = self.pending.values().map(|t| t.execution_arn.as_str()).collect();
            let drop: Vec<String> = self.execs.keys().filter(|a| !open.contains(a.as_str())).take(TRACKED_MAX / 10).cloned().collect();
            for a in drop {
                self.execs.remove(&a);
            }
        }
        let x = self.execs.entry(arn.to_string()).or_default();
        if !x.seen.insert(e.id) {
            return (false, Change::None);
        }
        let d = &e.details;
        let s = |k: &str| d.get(k).and_then(Value::as_str).map(str::to_string);
        let t = e.event_type.as_str();
        if t.ends_with("StateEntered") {
            let name = s("name").unwrap_or_default();
            x.last_state = Some((name.clone(), e.timestamp));
            return (true, Change::State { name, at: e.timestamp });
        }
        match t {
            "ExecutionStarted" => (true, Change::Started { input: s("input").unwrap_or_else(|| "{}".into()), at: e.timestamp }),
            "ExecutionRedriven" => (true, Change::Redriven { at: e.timestamp }),
            "ExecutionSucceeded" | "ExecutionFailed" | "ExecutionAborted" | "ExecutionTimedOut" => {
                let status = match t {
                    "ExecutionSucceeded" => ExecutionStatus::Succeeded,
                    "ExecutionFailed" => ExecutionStatus::Failed,
                    "ExecutionAborted" => ExecutionStatus::Aborted,
                    _ => ExecutionStatus::TimedOut,
                };
                self.pending.retain(|_, p| p.execution_arn != arn);
                (true, Change::Ended { status, at: e.timestamp, output: s("output"), error: s("error"), cause: s("cause") })
            }
            "TaskScheduled" => {
                let resource = s("resource").unwrap_or_default();
                let mut token = None;
                if resource.ends_with(".waitForTaskToken") {
                    let state = x.last_state.as_ref().map(|(n, _)| n.clone()).unwrap_or_default();
                    let params: Value = s("parameters").and_then(|p| serde_json::from_str(&p).ok()).unwrap_or(Value::Null);
                    token = token_in(&params, token_path(&state).as_deref());
                    if let Some(tok) = &token {
                        let secs = |k: &str| d.get(k).and_then(Value::as_i64).filter(|n| *n > 0 && *n < 10 * 365 * 86_400);
                        let resource_type = s("resourceType").unwrap_or_default();
                        self.pending.insert(
                            tok.clone(),
                            PendingTask {
                                token: tok.clone(),
                                execution_arn: arn.to_string(),
                                task_id: format!("{arn}#{}", e.id),
                                state_name: state,
                                resource: if resource_type.is_empty() {
                                    resource
                                } else {
                                    format!("arn:aws:states:::{resource_type}:{resource}")
                                },
                                parameters: params.to_string(),
                                status: "PENDING".into(),
                                issued: e.timestamp,
                                timeout: secs("timeoutInSeconds").map(|n| e.timestamp + chrono::Duration::seconds(n)),
                                heartbeat: secs("heartbeatInSeconds").map(|n| e.timestamp + chrono::Duration::seconds(n)),
                                closed: None,
                                claimed_by: None,
                            },
                        );
                    }
                }
                x.task_of.insert(e.id, (e.id, token));
                (true, Change::None)
            }
            _ if t.starts_with("Task") => {
                let Some((root, token)) = x.task_of.get(&e.previous_event_id).cloned() else { return (true, Change::None) };
                x.task_of.insert(e.id, (root, token.clone()));
                if matches!(t, "TaskSucceeded" | "TaskFailed" | "TaskTimedOut" | "TaskStartFailed" | "TaskSubmitFailed")
                    && let Some(tok) = token
                {
                    self.pending.remove(&tok);
                }
                (true, Change::None)
            }
            _ => (true, Change::None),
        }
    }

    /// Forget a callback at once (answered from this console); its closing event follows.
    pub fn close(&mut self, token: &str) -> Option<PendingTask> {
        self.pending.remove(token)
    }
}

/// Apply a change to an execution's summary (creating it on `ExecutionStarted`).
pub fn change_summary(rows: &mut BTreeMap<String, ExecutionSummary>, arn: &str, c: Change) {
    if let Change::Started { input, at } = &c
        && !rows.contains_key(arn)
    {
        rows.insert(arn.to_string(), summary_for(arn, input.clone(), *at));
    }
    let Some(r) = rows.get_mut(arn) else { return };
    match c {
        Change::None => {}
        Change::Started { input, .. } => {
            if r.input.is_empty() {
                r.input = input;
            }
        }
        Change::State { name, at } => {
            r.current_state = Some(name);
            r.state_since = Some(at);
        }
        Change::Ended { status, at, output, error, cause } => {
            r.status = status;
            r.stop = Some(at);
            r.output = output.or(r.output.take());
            r.error = error;
            r.cause = cause;
        }
        Change::Redriven { at } => {
            r.status = ExecutionStatus::Running;
            r.stop = None;
            r.redrive_count = r.redrive_count.saturating_add(1);
            r.redrive = Some(at);
        }
    }
}

/// A new RUNNING summary for an execution first seen in its log.
pub fn summary_for(arn: &str, input: String, start: DateTime<Utc>) -> ExecutionSummary {
    ExecutionSummary {
        arn: arn.to_string(),
        state_machine_arn: machine_of_execution(arn),
        name: arn.rsplit(':').next().unwrap_or_default().to_string(),
        status: ExecutionStatus::Running,
        start,
        stop: None,
        input,
        output: None,
        error: None,
        cause: None,
        redrive_count: 0,
        redrive: None,
        current_state: None,
        state_since: None,
    }
}

/// `arn:aws:states:R:A:execution:MACHINE:NAME` → `arn:aws:states:R:A:stateMachine:MACHINE`.
pub fn machine_of_execution(arn: &str) -> String {
    let parts: Vec<&str> = arn.split(':').collect();
    if parts.len() >= 8 && (parts[5] == "execution" || parts[5] == "express") {
        format!("{}:stateMachine:{}", parts[..5].join(":"), parts[6])
    } else {
        String::new()
    }
}

/// The largest message read as an EventBridge event (EventBridge's own limit on an event).
pub const BUS_EVENT_MAX_BYTES: usize = 256 * 1024;

/// An EventBridge event routed to a log group (a rule whose target is CloudWatch Logs writes
/// each event as one log record, the envelope as JSON).
#[derive(Debug, Clone, PartialEq)]
pub struct BusEvent {
    pub id: String,
    pub detail_type: String,
    pub source: String,
    pub time: DateTime<Utc>,
    pub resources: Vec<String>,
    /// The whole envelope, as written.
    pub envelope: Value,
}

/// Why a log record was not read as an EventBridge event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    TooLarge,
    NotJson,
    NotEnvelope,
}

impl Skip {
    pub fn as_str(self) -> &'static str {
        match self {
            Skip::TooLarge => "too large",
            Skip::NotJson => "not JSON",
            Skip::NotEnvelope => "not an EventBridge event",
        }
    }
}

/// A log record as an EventBridge event: `version`, `id`, `detail-type`, `source`, `account`,
/// `time` (RFC 3339), `region`, `resources` (strings) and `detail` (an object), all present.
pub fn bus_event(text: &str) -> Result<BusEvent, Skip> {
    if text.len() > BUS_EVENT_MAX_BYTES {
        return Err(Skip::TooLarge);
    }
    let v: Value = serde_json::from_str(text).map_err(|_| Skip::NotJson)?;
    let s = |k: &str| v.get(k).and_then(Value::as_str);
    let (Some(id), Some(detail_type), Some(source), Some(_), Some(time), Some(_), Some(_)) =
        (s("id"), s("detail-type"), s("source"), s("account"), s("time"), s("region"), s("version"))
    else {
        return Err(Skip::NotEnvelope);
    };
    let time = DateTime::parse_from_rfc3339(time).map_err(|_| Skip::NotEnvelope)?.with_timezone(&Utc);
    let resources = match v.get("resources") {
        Some(Value::Array(a)) if a.iter().all(Value::is_string) => a.iter().filter_map(Value::as_str).map(str::to_string).collect(),
        _ => return Err(Skip::NotEnvelope),
    };
    if id.is_empty() || id.len() > 256 || detail_type.is_empty() || !v.get("detail").is_some_and(Value::is_object) {
        return Err(Skip::NotEnvelope);
    }
    Ok(BusEvent {
        id: id.to_string(),
        detail_type: detail_type.to_string(),
        source: source.to_string(),
        time,
        resources,
        envelope: v.clone(),
    })
}

/// What an EventBridge event from a log group is in the Events feed: the history event
/// (`detail-type` as its type, at the event's time), the "execution" it is listed under and
/// the state column, with its detail masked by `phi` — in the event and in the envelope the
/// pattern filter tests — so no surface shows or finds a patient identifier it carries.
///
/// Listed under: the Step Functions execution it names (`detail.executionArn`, or an execution
/// ARN among its resources), so it sits with that study; else `SOURCE:RESOURCE` (its source and
/// the resource part of its first resource ARN, or its id), so the Events table's machine and
/// name columns read as the service and the resource (`aws.medical-imaging`,
/// `datastore/…/imageset/…`). The state column shows the status the detail carries
/// (`jobStatus`, `imageSetWorkflowStatus`, `status`, …), if any.
pub fn bus_feed_parts(ev: &BusEvent, phi: &crate::phi::Masker) -> (String, HistoryEvent, Option<String>, Value) {
    let detail = ev.envelope.get("detail").cloned().unwrap_or(Value::Null);
    let masked = phi.mask_value(&detail);
    let is_execution = |a: &str| a.starts_with("arn:") && a.split(':').nth(5).is_some_and(|k| k == "execution" || k == "express");
    let listed = detail
        .get("executionArn")
        .and_then(Value::as_str)
        .filter(|a| is_execution(a))
        .or_else(|| ev.resources.iter().map(String::as_str).find(|a| is_execution(a)))
        .map(str::to_string)
        .unwrap_or_else(|| {
            let resource = ev.resources.first().and_then(|a| a.splitn(6, ':').nth(5)).unwrap_or(&ev.id);
            format!("{}:{resource}", ev.source)
        });
    let state = ["jobStatus", "imageSetWorkflowStatus", "imageSetState", "datastoreStatus", "status", "state"]
        .iter()
        .find_map(|k| masked.get(*k).and_then(Value::as_str))
        .map(|s| s.chars().take(64).collect::<String>());
    let event = HistoryEvent {
        id: 0,
        previous_event_id: 0,
        timestamp: ev.time,
        event_type: ev.detail_type.chars().take(128).collect(),
        details: serde_json::json!({ "source": ev.source, "resources": ev.resources, "detail": masked }),
    };
    let mut envelope = ev.envelope.clone();
    if let Some(o) = envelope.as_object_mut() {
        o.insert("detail".into(), masked);
    }
    (listed, event, state, envelope)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ARN: &str = "arn:aws:states:eu-west-1:123456789012:execution:read-study:run-1";

    fn rec(id: i64, prev: i64, t: &str, details: Value) -> String {
        json!({"id": id.to_string(), "type": t, "details": details, "previous_event_id": prev.to_string(),
               "event_timestamp": (1_700_000_000_000i64 + id).to_string(), "execution_arn": ARN, "redrive_count": "0"})
        .to_string()
    }

    fn feed(tr: &mut Tracker, rows: &mut BTreeMap<String, ExecutionSummary>, recs: &[String]) {
        for r in recs {
            let (arn, e) = from_log_record(r).expect("record parses");
            let (_, c) = tr.apply(&arn, &e, &|s| (s == "Review").then(|| vec!["MessageBody".into(), "tok".into()]));
            change_summary(rows, &arn, c);
        }
    }

    #[test]
    fn a_wait_for_task_token_task_is_pending_until_its_task_closes() {
        let mut tr = Tracker::default();
        let mut rows = BTreeMap::new();
        let params = json!({"QueueUrl": "q", "MessageBody": {"tok": "TOKEN-1", "token": "decoy"}}).to_string();
        feed(
            &mut tr,
            &mut rows,
            &[
                rec(1, 0, "ExecutionStarted", json!({"input": "{\"accession\":\"A1\"}"})),
                rec(2, 1, "TaskStateEntered", json!({"name": "Review", "input": "{}"})),
                rec(
                    3,
                    2,
                    "TaskScheduled",
                    json!({"resourceType": "sqs", "resource": "sendMessage.waitForTaskToken",
                    "parameters": params, "timeoutInSeconds": 3600, "heartbeatInSeconds": 0}),
                ),
                rec(4, 3, "TaskStarted", json!({"resourceType": "sqs", "resource": "sendMessage.waitForTaskToken"})),
                rec(5, 4, "TaskSubmitted", json!({"resourceType": "sqs", "resource": "sendMessage.waitForTaskToken"})),
            ],
        );
        let p = tr.pending.get("TOKEN-1").expect("the token from where the definition put it, not a decoy");
        assert_eq!(p.state_name, "Review");
        assert_eq!(p.resource, "arn:aws:states:::sqs:sendMessage.waitForTaskToken");
        assert_eq!(p.timeout.map(|t| (t - p.issued).num_seconds()), Some(3600));
        assert_eq!(p.heartbeat, None, "a zero heartbeat is none");
        let r = &rows[ARN];
        assert_eq!((r.status, r.current_state.as_deref()), (ExecutionStatus::Running, Some("Review")));
        assert_eq!(r.state_machine_arn, "arn:aws:states:eu-west-1:123456789012:stateMachine:read-study");
        // The same record again changes nothing; the success closes the callback.
        feed(&mut tr, &mut rows, &[rec(5, 4, "TaskSubmitted", json!({})), rec(6, 5, "TaskSucceeded", json!({"output": "{}"}))]);
        assert!(tr.pending.is_empty());
        feed(&mut tr, &mut rows, &[rec(8, 7, "ExecutionSucceeded", json!({"output": "{\"ok\":true}"}))]);
        assert_eq!(rows[ARN].status, ExecutionStatus::Succeeded);
        assert_eq!(rows[ARN].output.as_deref(), Some("{\"ok\":true}"));
    }

    #[test]
    fn a_plain_task_is_no_review_and_an_ended_execution_closes_its_callbacks() {
        let mut tr = Tracker::default();
        let mut rows = BTreeMap::new();
        feed(
            &mut tr,
            &mut rows,
            &[
                rec(1, 0, "ExecutionStarted", json!({"input": "{}"})),
                rec(2, 1, "TaskStateEntered", json!({"name": "Lambda"})),
                rec(3, 2, "TaskScheduled", json!({"resourceType": "lambda", "resource": "invoke", "parameters": "{\"token\":\"x\"}"})),
                rec(4, 3, "TaskStateEntered", json!({"name": "Other"})),
                rec(
                    5,
                    4,
                    "TaskScheduled",
                    json!({"resourceType": "lambda", "resource": "invoke.waitForTaskToken",
                    "parameters": "{\"Payload\":{\"TaskToken\":\"T2\"}}"}),
                ),
            ],
        );
        assert_eq!(tr.pending.keys().collect::<Vec<_>>(), vec!["T2"], "found by its key name without a definition path");
        feed(&mut tr, &mut rows, &[rec(6, 5, "ExecutionAborted", json!({"error": "Ops.Stopped", "cause": "x"}))]);
        assert!(tr.pending.is_empty());
        assert_eq!(rows[ARN].error.as_deref(), Some("Ops.Stopped"));
    }

    #[test]
    fn token_paths_come_from_the_definition() {
        let st = json!({"Type": "Task", "Parameters": {"QueueUrl": "q", "MessageBody": {"t.$": "$$.Task.Token", "a.$": "$.a"}}});
        assert_eq!(token_path(&st), Some(vec!["MessageBody".to_string(), "t".to_string()]));
        assert_eq!(token_path(&json!({"Type": "Pass"})), None);
        assert_eq!(token_path(&json!({"Arguments": {"k": "{% $states.context.Task.Token %}"}})), Some(vec!["k".to_string()]));
    }

    #[test]
    fn bad_records_are_skipped_not_fatal() {
        assert!(from_log_record("not json").is_none());
        assert!(from_log_record("{\"type\":\"X\"}").is_none());
        let (_, e) = from_log_record(
            &json!({"id": 3, "type": "PassStateEntered", "details": "{\"name\":\"A\"}",
            "execution_arn": ARN, "event_timestamp": "x"})
            .to_string(),
        )
        .expect("numbers or strings, details as text");
        assert_eq!((e.id, e.state_name()), (3, Some("A")));
    }

    fn bus(id: &str, detail_type: &str, resources: Value, detail: Value) -> String {
        json!({"version": "0", "id": id, "detail-type": detail_type, "source": "aws.medical-imaging",
               "account": "123456789012", "time": "2026-12-06T10:00:00Z", "region": "us-east-1",
               "resources": resources, "detail": detail})
        .to_string()
    }

    #[test]
    fn eventbridge_envelopes_are_read_and_anything_else_is_skipped_with_its_reason() {
        let set = "arn:aws:medical-imaging:us-east-1:123456789012:datastore/ds1/imageset/is1";
        let e =
            bus_event(&bus("e-1", "Image Set Created", json!([set]), json!({"imageSetId": "is1", "imageSetWorkflowStatus": "CREATED"})))
                .expect("an envelope");
        assert_eq!((e.id.as_str(), e.detail_type.as_str(), e.source.as_str()), ("e-1", "Image Set Created", "aws.medical-imaging"));
        assert_eq!(e.time.to_rfc3339(), "2026-12-06T10:00:00+00:00");
        assert_eq!(e.resources, vec![set.to_string()]);

        assert_eq!(bus_event("START RequestId: 1 Version: $LATEST"), Err(Skip::NotJson));
        assert_eq!(bus_event("[1,2]"), Err(Skip::NotEnvelope));
        assert_eq!(bus_event(r#"{"id":"x","type":"TaskScheduled"}"#), Err(Skip::NotEnvelope), "an execution-log record is no bus event");
        let mut v: Value = serde_json::from_str(&bus("e-2", "X", json!([]), json!({}))).expect("json");
        v["time"] = json!("yesterday");
        assert_eq!(bus_event(&v.to_string()), Err(Skip::NotEnvelope));
        v["time"] = json!("2026-12-06T10:00:00Z");
        v["resources"] = json!([1]);
        assert_eq!(bus_event(&v.to_string()), Err(Skip::NotEnvelope));
        v["resources"] = json!([]);
        v["detail"] = json!("text");
        assert_eq!(bus_event(&v.to_string()), Err(Skip::NotEnvelope));
        let huge = bus("e-3", "X", json!([]), json!({"blob": "x".repeat(BUS_EVENT_MAX_BYTES)}));
        assert_eq!(bus_event(&huge), Err(Skip::TooLarge));
    }

    #[test]
    fn a_bus_event_is_listed_under_its_resource_or_execution_with_its_detail_masked() {
        let phi = crate::phi::Masker::default();
        let set = "arn:aws:medical-imaging:us-east-1:123456789012:datastore/ds1/imageset/is1";
        let e = bus_event(&bus(
            "e-1",
            "Image Set Created",
            json!([set]),
            json!({"imageSetId": "is1", "imageSetWorkflowStatus": "CREATED", "patientName": "Dana Testperson",
                   "note": "created for Dana Testperson"}),
        ))
        .expect("an envelope");
        let (listed, ev, state, envelope) = bus_feed_parts(&e, &phi);
        assert_eq!(listed, "aws.medical-imaging:datastore/ds1/imageset/is1");
        assert_eq!(crate::ops::project::machine_of(&listed), "aws.medical-imaging");
        assert_eq!((ev.event_type.as_str(), state.as_deref()), ("Image Set Created", Some("CREATED")));
        assert_eq!(ev.timestamp, e.time);
        let all = format!("{ev:?} {envelope}");
        assert!(!all.contains("Dana") && !all.contains("Testperson"), "the patient's name is masked everywhere: {all}");
        assert_eq!(envelope["detail"]["imageSetId"], "is1", "what is no identifier stays for the pattern filter");
        assert_eq!(envelope["detail-type"], "Image Set Created");
        assert_eq!(ev.state_name(), None);

        // A Step Functions event routed to a log group sits with its execution.
        let e = bus_event(&bus(
            "e-2",
            "Step Functions Execution Status Change",
            json!([ARN]),
            json!({"executionArn": ARN, "status": "FAILED"}),
        ))
        .expect("an envelope");
        let (listed, _, state, _) = bus_feed_parts(&e, &phi);
        assert_eq!((listed.as_str(), state.as_deref()), (ARN, Some("FAILED")));
    }
}
