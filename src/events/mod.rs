//! Workflow events as other systems receive them: every outbox row's payload is one
//! EventBridge event (`version, id, detail-type, source, account, time, region, resources,
//! detail`). Execution status changes use AWS's own shape (`source` "aws.states"); Lightbox's
//! own events (SLO, escalation, review, compensation, breaker, audit head) use `source`
//! "lightbox". An event's `id` names the business transition, so a redelivery keeps it.
//!
//! Pure: no store, no clock.

pub mod feed;
pub mod pattern;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};

/// `source` of Lightbox's own events.
pub const LIGHTBOX_SOURCE: &str = "lightbox";
/// `source` of Step Functions' events.
pub const STATES_SOURCE: &str = "aws.states";
/// `detail-type` of AWS's execution status change events.
pub const STATUS_CHANGE: &str = "Step Functions Execution Status Change";
/// Region and account of events whose resources carry none (the local engine's own).
pub const LOCAL_REGION: &str = "us-east-1";
pub const LOCAL_ACCOUNT: &str = "000000000000";

/// Region and account named in an ARN (`arn:aws:states:REGION:ACCOUNT:…`), if it has them.
pub fn region_account(arn: &str) -> Option<(&str, &str)> {
    let mut parts = arn.splitn(6, ':');
    let (_, _, _, region, account) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    (!region.is_empty() && !account.is_empty()).then_some((region, account))
}

/// EventBridge's time format: seconds, `Z`.
pub fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// One EventBridge event. Region and account come from the first resource ARN that names them.
pub fn envelope(id: &str, source: &str, detail_type: &str, at: DateTime<Utc>, resources: &[String], detail: Value) -> Value {
    let (region, account) = resources.iter().find_map(|r| region_account(r)).unwrap_or((LOCAL_REGION, LOCAL_ACCOUNT));
    json!({
        "version": "0",
        "id": id,
        "detail-type": detail_type,
        "source": source,
        "account": account,
        "time": time(at),
        "region": region,
        "resources": resources,
        "detail": detail,
    })
}

/// A Lightbox event (`source` "lightbox").
pub fn lightbox_event(id: &str, detail_type: &str, at: DateTime<Utc>, resources: &[String], detail: Value) -> Value {
    envelope(id, LIGHTBOX_SOURCE, detail_type, at, resources, detail)
}

/// A stable 63-bit number for an event id: the outbox keeps one row per (stream, number), so
/// writing the same business transition twice writes one row.
pub fn id_number(id: &str) -> i64 {
    use sha2::Digest as _;
    let d = sha2::Sha256::digest(id.as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    (u64::from_be_bytes(b) >> 1) as i64
}

/// Detail types of Lightbox's task events. A callback task (`.waitForTaskToken`: a review
/// gate) is a review; any other task keeps the generic names.
pub const REVIEW_REQUESTED: &str = "Review Requested";
pub const REVIEW_APPROVED: &str = "Review Approved";
pub const REVIEW_REJECTED: &str = "Review Rejected";
/// The gate's token failed with `Review.Escalated` and the workflow's Catch took it on. The
/// escalation itself (who, why, automatic or by hand) is the separate "Review Escalated" event
/// (`engine::escalation::ESCALATED_EVENT`), written once per token.
pub const REVIEW_REROUTED: &str = "Review Rerouted";
pub const REVIEW_TIMED_OUT: &str = "Review Timed Out";
/// The event of an escalation ladder's notify step (its detail is the notice body a
/// PagerDuty or Slack sink receives).
pub const REVIEW_ESCALATION_NOTICE: &str = "Review Escalation Notice";
pub const TASK_SUBMITTED: &str = "Task Submitted";
pub const TASK_SUCCEEDED: &str = "Task Succeeded";
pub const TASK_FAILED: &str = "Task Failed";
pub const TASK_TIMED_OUT: &str = "Task Timed Out";
/// Detail type of the published audit head.
pub const AUDIT_HEAD: &str = "Audit Head";
/// The error a review escalation fails its token with (a rejection with it is an escalation).
pub const ESCALATED_ERROR: &str = "Review.Escalated";

/// What a workflow event says about its execution, besides the history event itself.
#[derive(Debug, Clone)]
pub struct ExecutionFacts<'a> {
    pub execution_arn: &'a str,
    pub state_machine_arn: &'a str,
    pub name: &'a str,
    pub start: DateTime<Utc>,
    /// The execution's input, JSON text.
    pub input: &'a str,
    pub redrive_count: u32,
    pub redrive_date: Option<DateTime<Utc>>,
}

/// The id of the event a history event becomes: the business transition is "this event of
/// this execution", so writing or relaying it again keeps the id.
pub fn history_event_id(execution_arn: &str, event_id: i64) -> String {
    format!("{execution_arn}#{event_id}")
}

/// The status an execution event reports (`None` for any other event).
pub fn status_of(event_type: &str) -> Option<crate::history::ExecutionStatus> {
    use crate::history::ExecutionStatus as S;
    Some(match event_type {
        "ExecutionStarted" | "ExecutionRedriven" => S::Running,
        "ExecutionSucceeded" => S::Succeeded,
        "ExecutionFailed" => S::Failed,
        "ExecutionTimedOut" => S::TimedOut,
        "ExecutionAborted" => S::Aborted,
        _ => return None,
    })
}

/// AWS's "Step Functions Execution Status Change" event for an execution history event
/// (`ExecutionStarted`, `…Succeeded`, `…Failed`, `…TimedOut`, `…Aborted`, `…Redriven`):
/// dates in epoch milliseconds, `input`/`output` as JSON text, as AWS sends them.
pub fn status_change(f: &ExecutionFacts<'_>, e: &crate::history::HistoryEvent) -> Option<Value> {
    let status = status_of(&e.event_type)?;
    let text = |k: &str| e.details.get(k).and_then(Value::as_str).map_or(Value::Null, |s| Value::String(s.to_string()));
    let terminal = status.is_terminal();
    let output = if e.event_type == "ExecutionSucceeded" { text("output") } else { Value::Null };
    let mut detail = json!({
        "executionArn": f.execution_arn,
        "stateMachineArn": f.state_machine_arn,
        "name": f.name,
        "status": status.as_str(),
        "startDate": f.start.timestamp_millis(),
        "stopDate": if terminal { Value::from(e.timestamp.timestamp_millis()) } else { Value::Null },
        "input": f.input,
        "inputDetails": {"included": true},
        "output": output,
        "outputDetails": if output.is_null() { Value::Null } else { json!({"included": true}) },
        "error": text("error"),
        "cause": text("cause"),
    });
    if let Some(o) = detail.as_object_mut() {
        let redrive_date = if e.event_type == "ExecutionRedriven" { Some(e.timestamp) } else { f.redrive_date };
        let count = if e.event_type == "ExecutionRedriven" { f.redrive_count.max(1) } else { f.redrive_count };
        o.insert("redriveCount".into(), Value::from(count));
        if let Some(d) = redrive_date.filter(|_| count > 0) {
            o.insert("redriveDate".into(), Value::from(d.timestamp_millis()));
        }
        let (rs, reason) = if status.is_redrivable() {
            ("REDRIVABLE", None)
        } else {
            ("NOT_REDRIVABLE", Some(format!("Execution is {} and cannot be redriven", status.as_str())))
        };
        o.insert("redriveStatus".into(), Value::String(rs.into()));
        if let Some(r) = reason {
            o.insert("redriveStatusReason".into(), Value::String(r));
        }
    }
    let mut ev = envelope(
        &history_event_id(f.execution_arn, e.id),
        STATES_SOURCE,
        STATUS_CHANGE,
        e.timestamp,
        &[f.execution_arn.to_string()],
        detail,
    );
    redact_tokens(&mut ev);
    Some(ev)
}

/// The detail type of a task history event (`None` for events that are not task events).
pub fn task_detail_type(e: &crate::history::HistoryEvent) -> Option<&'static str> {
    let review = e.details.get("resource").and_then(Value::as_str).is_some_and(|r| r.ends_with(".waitForTaskToken"));
    let escalated = e.details.get("error").and_then(Value::as_str) == Some(ESCALATED_ERROR);
    Some(match (e.event_type.as_str(), review) {
        ("TaskSubmitted", true) => REVIEW_REQUESTED,
        ("TaskSucceeded", true) => REVIEW_APPROVED,
        ("TaskFailed", true) if escalated => REVIEW_REROUTED,
        ("TaskFailed", true) => REVIEW_REJECTED,
        ("TaskTimedOut", true) => REVIEW_TIMED_OUT,
        ("TaskSubmitted", false) => TASK_SUBMITTED,
        ("TaskSucceeded", false) => TASK_SUCCEEDED,
        ("TaskFailed", false) => TASK_FAILED,
        ("TaskTimedOut", false) => TASK_TIMED_OUT,
        _ => return None,
    })
}

/// A Lightbox task event (see [`task_detail_type`]): the execution, the state, the task's
/// resource and outcome (`output` of a success, `error`/`cause` of a failure), and the
/// history event it reports. Task tokens never appear (any is cut to its 8-character prefix).
pub fn task_event(f: &ExecutionFacts<'_>, e: &crate::history::HistoryEvent, state: Option<&str>) -> Option<Value> {
    let detail_type = task_detail_type(e)?;
    let mut detail = json!({
        "executionArn": f.execution_arn,
        "stateMachineArn": f.state_machine_arn,
        "name": f.name,
        "stateName": state,
        "historyEventId": e.id,
        "historyEventType": e.event_type,
    });
    if let (Some(o), Some(d)) = (detail.as_object_mut(), e.details.as_object()) {
        for k in ["resourceType", "resource", "output", "error", "cause"] {
            if let Some(v) = d.get(k) {
                o.insert(k.to_string(), v.clone());
            }
        }
    }
    let mut ev = lightbox_event(&history_event_id(f.execution_arn, e.id), detail_type, e.timestamp, &[f.execution_arn.to_string()], detail);
    redact_tokens(&mut ev);
    Some(ev)
}

/// The audit head (seq and hash of the log's last row) as a Lightbox event. Its id names the
/// row, so publishing the same head again keeps it.
pub fn audit_head(seq: i64, hash: &str, at: DateTime<Utc>) -> Value {
    let short: String = hash.chars().take(16).collect();
    lightbox_event(
        &format!("audit-head:{seq}:{short}"),
        AUDIT_HEAD,
        at,
        &[],
        json!({"seq": seq, "hash": hash, "time": at.to_rfc3339_opts(SecondsFormat::Millis, true)}),
    )
}

/// Cut every task token (64 hex digits) in any string of `v` to its 8-character prefix. A
/// SHA-256 digest in hex has the same form and is cut too: events never hold a full token.
pub fn redact_tokens(v: &mut Value) {
    match v {
        Value::String(s) => {
            if let Some(r) = redact_str(s) {
                *s = r;
            }
        }
        Value::Array(a) => a.iter_mut().for_each(redact_tokens),
        Value::Object(o) => o.values_mut().for_each(redact_tokens),
        _ => {}
    }
}

/// `s` with each run of exactly 64 hex digits (a task token's form) cut to its first 8 and `…`; `None` if it has none.
fn redact_str(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out: Option<String> = None;
    let (mut i, mut copied) = (0, 0);
    while i < b.len() {
        if !b[i].is_ascii_hexdigit() {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && b[i].is_ascii_hexdigit() {
            i += 1;
        }
        if i - start == 64 {
            let o = out.get_or_insert_with(String::new);
            o.push_str(&s[copied..start]);
            o.push_str(&s[start..start + 8]);
            o.push('…');
            copied = i;
        }
    }
    out.map(|mut o| {
        o.push_str(&s[copied..]);
        o
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn an_envelope_has_eventbridge_fields_and_the_resources_region() {
        let at = Utc.with_ymd_and_hms(2026, 11, 25, 10, 0, 0).single().expect("time");
        let arn = "arn:aws:states:eu-west-2:123456789012:execution:m:x".to_string();
        let e = lightbox_event("slo:x:breached", "SLO Breached", at, std::slice::from_ref(&arn), json!({"a": 1}));
        assert_eq!(e["version"], "0");
        assert_eq!(e["detail-type"], "SLO Breached");
        assert_eq!(e["source"], "lightbox");
        assert_eq!(e["region"], "eu-west-2");
        assert_eq!(e["account"], "123456789012");
        assert_eq!(e["time"], "2026-11-25T10:00:00Z");
        assert_eq!(e["resources"][0], arn.as_str());
        let none = lightbox_event("i", "T", at, &[], json!({}));
        assert_eq!((none["region"].as_str(), none["account"].as_str()), (Some(LOCAL_REGION), Some(LOCAL_ACCOUNT)));
    }

    #[test]
    fn a_redrive_and_a_failure_carry_awss_redrive_fields_and_tokens_are_cut() {
        use crate::history::HistoryEvent;
        let at = Utc.with_ymd_and_hms(2026, 11, 25, 10, 0, 0).single().expect("time");
        let arn = "arn:aws:states:us-east-1:000000000000:execution:m:x";
        let f = ExecutionFacts {
            execution_arn: arn,
            state_machine_arn: "arn:aws:states:us-east-1:000000000000:stateMachine:m",
            name: "x",
            start: at,
            input: "{}",
            redrive_count: 0,
            redrive_date: None,
        };
        let ev = |id: i64, ty: &str, details: Value| HistoryEvent {
            id,
            previous_event_id: id - 1,
            timestamp: at,
            event_type: ty.into(),
            details,
        };
        let tok = "ab".repeat(32);
        let failed =
            status_change(&f, &ev(9, "ExecutionFailed", json!({"error": "E", "cause": format!("token {tok} lost")}))).expect("event");
        assert_eq!(failed["id"], format!("{arn}#9"));
        assert_eq!(failed["detail"]["status"], "FAILED");
        assert_eq!(failed["detail"]["redriveStatus"], "REDRIVABLE");
        assert_eq!(failed["detail"]["stopDate"], at.timestamp_millis());
        assert_eq!(failed["detail"]["cause"], format!("token {}… lost", &tok[..8]));
        let redriven = status_change(&f, &ev(10, "ExecutionRedriven", json!({"redriveCount": 1}))).expect("event");
        assert_eq!(redriven["detail"]["status"], "RUNNING");
        assert_eq!(redriven["detail"]["redriveCount"], 1);
        assert_eq!(redriven["detail"]["redriveDate"], at.timestamp_millis());
        assert_eq!(redriven["detail"]["stopDate"], Value::Null);
        assert!(status_change(&f, &ev(3, "TaskSucceeded", json!({}))).is_none());
        // A 65-digit run is not a token; a 64-digit one is.
        let mut v = json!({"a": ["x".to_string() + &tok + "0", tok.clone()]});
        redact_tokens(&mut v);
        assert_eq!(v["a"][1], format!("{}…", &tok[..8]));
        assert!(v["a"][0].as_str().is_some_and(|s| s.len() > 64));
    }

    #[test]
    fn id_numbers_are_stable_and_positive() {
        assert_eq!(id_number("a"), id_number("a"));
        assert_ne!(id_number("a"), id_number("b"));
        assert!(id_number("anything") >= 0);
    }
}
