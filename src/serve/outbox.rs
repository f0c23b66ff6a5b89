//! Lightbox's own operations beside the Step Functions API (`X-Amz-Target: Lightbox.*`,
//! AWS JSON 1.1, signed like the rest): the outbox relay's sinks and the rows behind them
//! (`ListOutbox`) and an operator's action on them (`OutboxAction`), in the shapes
//! `lightbox outbox list --json` prints. A console on `--backend aws` whose context names
//! this server as its `outbox_endpoint` shows and drives view 6 through them.

use serde_json::{Value, json};

use super::api::{Api, ApiError, Caller};
use crate::outbox::{self, Action, Sink};

/// Rows listed per sink, at most (and the default).
const MAX_ROWS: u64 = outbox::MAX_LISTED_ROWS as u64;
const DEFAULT_ROWS: u64 = 50;

/// The target prefix of these operations.
pub const PREFIX: &str = outbox::TARGET_PREFIX;

pub fn call(api: &Api, sinks: &[Sink], op: &str, body: &Value, caller: &Caller) -> Result<Value, ApiError> {
    if !body.is_object() {
        return Err(ApiError::new("SerializationException", "the request body must be a JSON object"));
    }
    match op {
        "ListOutbox" => list(api, sinks, body),
        "OutboxAction" => {
            if api.read_only {
                return Err(ApiError::new("AccessDeniedException", "OutboxAction is refused: this server is read-only"));
            }
            act(api, sinks, body, caller)
        }
        _ => Err(ApiError::new("UnknownOperationException", "unknown Lightbox operation")),
    }
}

fn list(api: &Api, sinks: &[Sink], body: &Value) -> Result<Value, ApiError> {
    let per_sink = match body.get("rowsPerSink") {
        None | Some(Value::Null) => DEFAULT_ROWS,
        Some(v) => v
            .as_u64()
            .filter(|n| (1..=MAX_ROWS).contains(n))
            .ok_or_else(|| ApiError::validation(format!("rowsPerSink must be a whole number from 1 to {MAX_ROWS}")))?,
    };
    let engine = api.lock();
    let conn = engine.store.conn();
    let status = outbox::status(conn, sinks, chrono::Utc::now().timestamp_millis()).map_err(internal)?;
    let mut rows = vec![];
    for s in sinks {
        rows.extend(outbox::rows(conn, s, false, per_sink as usize).map_err(internal)?);
    }
    Ok(json!({
        "sinks": status.iter().map(outbox::SinkStatus::to_json).collect::<Vec<_>>(),
        "rows": rows.iter().map(outbox::DeliveryRow::to_json).collect::<Vec<_>>(),
    }))
}

fn act(api: &Api, sinks: &[Sink], body: &Value, caller: &Caller) -> Result<Value, ApiError> {
    let action = Action::from_json(body).map_err(ApiError::validation)?;
    // A reason is held to the rule every surface applies: `[code] note`, the code from the
    // server's list, the note of substance.
    if let Action::Park { reason, .. } | Action::Pause { reason, .. } = &action {
        let (code, note) = crate::phi::Reason::split(reason).ok_or_else(|| {
            ApiError::validation(format!(
                "reason must begin with a reason code in brackets, then a note: \"[CODE] note\", CODE one of {}",
                api.reasons.codes().join(", ")
            ))
        })?;
        crate::phi::Reason::new(&api.reasons, &code, &note).map_err(|e| ApiError::validation(format!("reason: {e}")))?;
    }
    let engine = api.lock();
    let now = engine.clock.now();
    match outbox::act(engine.store.conn(), sinks, &action, &caller.actor(), crate::audit::Source::Api, now) {
        Ok(said) => Ok(json!({"action": action.name(), "sink": action.sink(), "result": said})),
        Err(e @ (outbox::OutboxError::UnknownSink(_) | outbox::OutboxError::UnknownRow(_))) => {
            Err(ApiError::new("ResourceNotFoundException", e.to_string()))
        }
        Err(e @ outbox::OutboxError::Invalid(_)) => Err(ApiError::validation(e.to_string())),
        Err(e) => Err(internal(e)),
    }
}

fn internal(e: outbox::OutboxError) -> ApiError {
    tracing::error!(error = %e, "outbox error while serving a call");
    ApiError::internal("the outbox could not be read or changed (the server log has the details)")
}
