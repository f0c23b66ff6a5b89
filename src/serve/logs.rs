//! CloudWatch Logs' `FilterLogEvents` (`X-Amz-Target: Logs_20140328.FilterLogEvents`) for the
//! log groups that state machines log to (`loggingConfiguration`): each history event of
//! their executions as Step Functions writes it to its execution log (`id`, `type`,
//! `details`, `previous_event_id`, `event_timestamp`, `execution_arn`, `redrive_count`), so a
//! client that follows executions through their logs can be tested against `lightbox serve`.
//! Level ALL logs every event, ERROR the failures, FATAL how failed executions ended.

use serde_json::{Value, json};

use super::api::{Api, ApiError};
use crate::store::StoreError;

const MAX_LIMIT: u64 = 10_000;
/// History rows read per logging machine for one page.
const FETCH: usize = 256;

fn opt_i64(b: &Value, k: &str) -> Result<Option<i64>, ApiError> {
    match b.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_i64().map(Some).ok_or_else(|| ApiError::new("InvalidParameterException", format!("{k} must be an integer"))),
    }
}

fn opt_str<'a>(b: &'a Value, k: &str) -> Result<Option<&'a str>, ApiError> {
    match b.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(ApiError::new("InvalidParameterException", format!("{k} must be a string"))),
    }
}

/// Whether a level logs an event of this type.
fn logged(level: &str, event_type: &str) -> bool {
    match level {
        "ALL" => true,
        "ERROR" => event_type.ends_with("Failed") || event_type.ends_with("TimedOut") || event_type.ends_with("Aborted"),
        "FATAL" => matches!(event_type, "ExecutionFailed" | "ExecutionTimedOut" | "ExecutionAborted"),
        _ => false,
    }
}

/// A filter pattern of plain terms: an event matches when its message holds every term.
/// (JSON and metric patterns are refused, not ignored.)
fn terms(pattern: &str) -> Result<Vec<String>, ApiError> {
    let p = pattern.trim();
    if p.starts_with('{') || p.starts_with('[') {
        return Err(ApiError::new("InvalidParameterException", "this server supports filter patterns of plain terms only"));
    }
    let mut out = vec![];
    let mut rest = p;
    while !rest.is_empty() {
        if let Some(q) = rest.strip_prefix('"') {
            let end = q.find('"').ok_or_else(|| ApiError::new("InvalidParameterException", "unterminated quoted term in filterPattern"))?;
            out.push(q[..end].to_string());
            rest = q[end + 1..].trim_start();
        } else {
            let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
            out.push(rest[..end].to_string());
            rest = rest[end..].trim_start();
        }
    }
    Ok(out)
}

struct Row {
    arn: String,
    id: i64,
    previous: i64,
    ts: i64,
    event_type: String,
    details: Option<String>,
    name: String,
    machine: String,
    redrive_count: i64,
}

/// Run one CloudWatch Logs operation (only FilterLogEvents is served).
pub fn call(api: &Api, op: &str, b: &Value) -> Result<Value, ApiError> {
    if op != "FilterLogEvents" {
        return Err(ApiError::new("UnknownOperationException", format!("Unknown operation: Logs_20140328.{op}")));
    }
    if !b.is_object() {
        return Err(ApiError::new("SerializationException", "the request body must be a JSON object"));
    }
    let group = opt_str(b, "logGroupName")?
        .or(opt_str(b, "logGroupIdentifier")?)
        .ok_or_else(|| ApiError::new("InvalidParameterException", "logGroupName or logGroupIdentifier is required"))?;
    let start = opt_i64(b, "startTime")?.unwrap_or(0);
    let end = opt_i64(b, "endTime")?.unwrap_or(i64::MAX);
    let limit = match b.get("limit") {
        None | Some(Value::Null) => MAX_LIMIT,
        Some(v) => v
            .as_u64()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| ApiError::new("InvalidParameterException", format!("limit must be between 1 and {MAX_LIMIT}")))?,
    } as usize;
    let want = terms(opt_str(b, "filterPattern")?.unwrap_or(""))?;
    let prefix = opt_str(b, "logStreamNamePrefix")?;
    let streams: Option<Vec<String>> = match b.get("logStreamNames") {
        None | Some(Value::Null) => None,
        Some(Value::Array(a)) => Some(a.iter().filter_map(Value::as_str).map(str::to_string).collect()),
        Some(_) => return Err(ApiError::new("InvalidParameterException", "logStreamNames must be a list of strings")),
    };
    let scope = format!("FilterLogEvents\0{group}\0{start}\0{end}");
    let mut after: (i64, String, i64) = (i64::MIN, String::new(), 0);
    if let Some(t) = opt_str(b, "nextToken")? {
        let p = api.unseal(&scope, t)?;
        match (p.get(0).and_then(Value::as_i64), p.get(1).and_then(Value::as_str), p.get(2).and_then(Value::as_i64)) {
            (Some(ts), Some(arn), Some(id)) => after = (ts, arn.to_string(), id),
            _ => return Err(ApiError::new("InvalidToken", "Invalid Token: 'the nextToken is malformed'")),
        }
    }
    let eng = api.lock();
    let machines = Api::machines_logging_to(&eng, group)?;
    if machines.is_empty() {
        return Err(ApiError::new("ResourceNotFoundException", "The specified log group does not exist."));
    }
    let sql = "SELECT h.execution_arn, h.id, h.previous_id, h.ts_ms, h.type, h.details, e.name, e.state_machine_arn, e.redrive_count
               FROM history h JOIN executions e ON e.arn = h.execution_arn
               WHERE e.state_machine_arn = ?1 AND h.ts_ms >= ?2 AND h.ts_ms <= ?3
                 AND (h.ts_ms > ?4 OR (h.ts_ms = ?4 AND (h.execution_arn > ?5 OR (h.execution_arn = ?5 AND h.id > ?6))))
               ORDER BY h.ts_ms, h.execution_arn, h.id LIMIT ?7";
    let sql_err = |e: rusqlite::Error| ApiError::from(StoreError::from(e));
    // Each machine's next rows in order (at most FETCH, so memory stays bounded whatever the
    // limit), merged. A machine that had more than FETCH rows bounds the merge: rows past its
    // last fetched one may come after rows it has not returned yet.
    let fetch = limit.min(FETCH);
    let mut bound: Option<(i64, String, i64)> = None;
    let mut rows: Vec<(Row, String, bool)> = vec![];
    for (arn, cfg) in &machines {
        let level = cfg.get("level").and_then(Value::as_str).unwrap_or("OFF").to_string();
        let with_data = cfg.get("includeExecutionData").and_then(Value::as_bool).unwrap_or(false);
        let mut st = eng.store.conn().prepare_cached(sql).map_err(sql_err)?;
        let got = st
            .query_map(rusqlite::params![arn, start, end, after.0, after.1, after.2, (fetch + 1) as i64], |r| {
                Ok(Row {
                    arn: r.get(0)?,
                    id: r.get(1)?,
                    previous: r.get(2)?,
                    ts: r.get(3)?,
                    event_type: r.get(4)?,
                    details: r.get(5)?,
                    name: r.get(6)?,
                    machine: r.get(7)?,
                    redrive_count: r.get(8)?,
                })
            })
            .and_then(|m| m.collect::<Result<Vec<_>, _>>())
            .map_err(sql_err)?;
        let mut got = got;
        if got.len() > fetch {
            got.truncate(fetch);
            if let Some(l) = got.last() {
                let key = (l.ts, l.arn.clone(), l.id);
                if bound.as_ref().is_none_or(|b| key < *b) {
                    bound = Some(key);
                }
            }
        }
        rows.extend(got.into_iter().map(|r| (r, level.clone(), with_data)));
    }
    rows.sort_by(|a, b| (a.0.ts, &a.0.arn, a.0.id).cmp(&(b.0.ts, &b.0.arn, b.0.id)));
    if let Some(b) = &bound {
        rows.retain(|(r, _, _)| (r.ts, r.arn.clone(), r.id) <= *b);
    }
    let mut more = bound.is_some() || rows.len() > limit;
    rows.truncate(limit);
    let mut last = None;
    let mut events = vec![];
    let mut size = 0usize;
    for (r, level, with_data) in rows {
        if size >= super::api::PAGE_BYTES {
            more = true;
            break;
        }
        last = Some((r.ts, r.arn.clone(), r.id));
        if !logged(&level, &r.event_type) {
            continue;
        }
        let machine_name = r.machine.rsplit(':').next().unwrap_or_default();
        let stream = format!("states/{machine_name}/{}", r.name);
        if prefix.is_some_and(|p| !stream.starts_with(p)) || streams.as_ref().is_some_and(|s| !s.contains(&stream)) {
            continue;
        }
        let mut details: Value = r.details.as_deref().and_then(|d| serde_json::from_str(d).ok()).unwrap_or_else(|| json!({}));
        if !with_data && let Some(o) = details.as_object_mut() {
            for k in ["input", "output", "parameters"] {
                o.remove(k);
            }
        }
        let message = json!({
            "id": r.id.to_string(),
            "type": r.event_type,
            "details": details,
            "previous_event_id": r.previous.to_string(),
            "event_timestamp": r.ts.to_string(),
            "execution_arn": r.arn,
            "redrive_count": r.redrive_count.to_string(),
        })
        .to_string();
        if !want.iter().all(|t| message.contains(t.as_str())) {
            continue;
        }
        size += message.len() + stream.len() + 64;
        events.push(json!({
            "logStreamName": stream,
            "timestamp": r.ts,
            "message": message,
            "ingestionTime": r.ts,
            "eventId": format!("{}-{}", r.ts, crate::engine::core::hmac_sha256(b"event-id", format!("{}#{}", r.arn, r.id).as_bytes()).iter().take(8).map(|b| format!("{b:02x}")).collect::<String>()),
        }));
    }
    let mut out = json!({"events": events, "searchedLogStreams": []});
    if more && let Some((ts, arn, id)) = last {
        out["nextToken"] = Value::String(api.seal(&scope, json!([ts, arn, id])));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_terms_and_levels() {
        assert_eq!(terms(r#"TaskFailed "Review.Rejected""#).unwrap(), vec!["TaskFailed", "Review.Rejected"]);
        assert!(terms("{ $.type = \"X\" }").is_err());
        assert!(logged("ERROR", "TaskFailed") && !logged("ERROR", "TaskSucceeded"));
        assert!(logged("FATAL", "ExecutionFailed") && !logged("FATAL", "TaskFailed"));
        assert!(!logged("OFF", "ExecutionStarted"));
    }
}
