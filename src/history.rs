//! Step Functions-shaped history events: the one event model every backend speaks.
//!
//! Event type names and detail field names are AWS's wire names, so
//! `--json` output matches `GetExecutionHistory` and the console can read
//! either backend's history through the same projections.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEvent {
    pub id: i64,
    #[serde(rename = "previousEventId")]
    pub previous_event_id: i64,
    pub timestamp: DateTime<Utc>,
    #[serde(rename = "type")]
    pub event_type: String,
    /// The `...EventDetails` object, without its key (see [`details_key`]).
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub details: Value,
}

impl HistoryEvent {
    /// The AWS `GetExecutionHistory` JSON form of this event.
    pub fn to_aws_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("timestamp".into(), Value::String(self.timestamp.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)));
        m.insert("type".into(), Value::String(self.event_type.clone()));
        m.insert("id".into(), Value::from(self.id));
        m.insert("previousEventId".into(), Value::from(self.previous_event_id));
        if !self.details.is_null() {
            // An event type AWS has no details key for (an EventBridge event read from a log
            // group, say) keeps its details under `details`, so opening it shows them.
            m.insert(details_key(&self.event_type).unwrap_or("details").to_string(), self.details.clone());
        }
        Value::Object(m)
    }

    /// Parse an event from its AWS JSON form.
    pub fn from_aws_json(v: &Value) -> Option<HistoryEvent> {
        let event_type = v.get("type")?.as_str()?.to_string();
        let details = v.get(details_key(&event_type).unwrap_or("details")).cloned().unwrap_or(Value::Null);
        let timestamp = v
            .get("timestamp")
            .and_then(Value::as_str)
            .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
            .map(|d| d.with_timezone(&Utc))
            .unwrap_or_default();
        Some(HistoryEvent {
            id: v.get("id")?.as_i64()?,
            previous_event_id: v.get("previousEventId").and_then(Value::as_i64).unwrap_or(0),
            timestamp,
            event_type,
            details,
        })
    }

    /// The state name this event belongs to, where it names one.
    pub fn state_name(&self) -> Option<&str> {
        self.details.get("name").and_then(Value::as_str)
    }
}

/// The key under which AWS puts an event type's details.
pub fn details_key(event_type: &str) -> Option<&'static str> {
    if event_type.ends_with("StateEntered") {
        return Some("stateEnteredEventDetails");
    }
    if event_type.ends_with("StateExited") {
        return Some("stateExitedEventDetails");
    }
    Some(match event_type {
        "ExecutionStarted" => "executionStartedEventDetails",
        "ExecutionSucceeded" => "executionSucceededEventDetails",
        "ExecutionFailed" => "executionFailedEventDetails",
        "ExecutionAborted" => "executionAbortedEventDetails",
        "ExecutionTimedOut" => "executionTimedOutEventDetails",
        "ExecutionRedriven" => "executionRedrivenEventDetails",
        "TaskScheduled" => "taskScheduledEventDetails",
        "TaskStarted" => "taskStartedEventDetails",
        "TaskStartFailed" => "taskStartFailedEventDetails",
        "TaskSubmitted" => "taskSubmittedEventDetails",
        "TaskSubmitFailed" => "taskSubmitFailedEventDetails",
        "TaskSucceeded" => "taskSucceededEventDetails",
        "TaskFailed" => "taskFailedEventDetails",
        "TaskTimedOut" => "taskTimedOutEventDetails",
        "MapStateStarted" => "mapStateStartedEventDetails",
        "MapIterationStarted" => "mapIterationStartedEventDetails",
        "MapIterationSucceeded" => "mapIterationSucceededEventDetails",
        "MapIterationFailed" => "mapIterationFailedEventDetails",
        "MapIterationAborted" => "mapIterationAbortedEventDetails",
        "MapRunStarted" => "mapRunStartedEventDetails",
        "MapRunFailed" => "mapRunFailedEventDetails",
        "MapRunRedriven" => "mapRunRedrivenEventDetails",
        "EvaluationFailed" => "evaluationFailedEventDetails",
        _ => return None,
    })
}

/// The `{"truncated": false}` marker AWS puts beside payloads.
pub fn not_truncated() -> Value {
    serde_json::json!({ "truncated": false })
}

/// Status of an execution, as AWS names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ExecutionStatus {
    Running,
    Succeeded,
    Failed,
    TimedOut,
    Aborted,
    PendingRedrive,
}

impl ExecutionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ExecutionStatus::Running => "RUNNING",
            ExecutionStatus::Succeeded => "SUCCEEDED",
            ExecutionStatus::Failed => "FAILED",
            ExecutionStatus::TimedOut => "TIMED_OUT",
            ExecutionStatus::Aborted => "ABORTED",
            ExecutionStatus::PendingRedrive => "PENDING_REDRIVE",
        }
    }
    pub fn parse(s: &str) -> Option<ExecutionStatus> {
        Some(match s.to_ascii_uppercase().as_str() {
            "RUNNING" => ExecutionStatus::Running,
            "SUCCEEDED" => ExecutionStatus::Succeeded,
            "FAILED" => ExecutionStatus::Failed,
            "TIMED_OUT" => ExecutionStatus::TimedOut,
            "ABORTED" => ExecutionStatus::Aborted,
            "PENDING_REDRIVE" => ExecutionStatus::PendingRedrive,
            _ => return None,
        })
    }
    pub fn is_terminal(self) -> bool {
        !matches!(self, ExecutionStatus::Running | ExecutionStatus::PendingRedrive)
    }
    pub fn is_redrivable(self) -> bool {
        matches!(self, ExecutionStatus::Failed | ExecutionStatus::TimedOut | ExecutionStatus::Aborted)
    }
}

impl std::fmt::Display for ExecutionStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_aws_json() {
        let e = HistoryEvent {
            id: 3,
            previous_event_id: 2,
            timestamp: DateTime::parse_from_rfc3339("2026-01-02T03:04:05.678Z").map(|d| d.with_timezone(&Utc)).unwrap(),
            event_type: "PassStateExited".into(),
            details: serde_json::json!({"name": "A", "output": "{}"}),
        };
        let j = e.to_aws_json();
        assert_eq!(j["stateExitedEventDetails"]["name"], "A");
        assert_eq!(j["timestamp"], "2026-01-02T03:04:05.678Z");
        assert_eq!(HistoryEvent::from_aws_json(&j), Some(e));
    }

    #[test]
    fn an_event_type_aws_has_no_details_key_for_keeps_its_details_under_details() {
        let e = HistoryEvent {
            id: 1,
            previous_event_id: 0,
            timestamp: DateTime::<Utc>::default(),
            event_type: "Image Set Created".into(),
            details: serde_json::json!({"imageSetId": "abc", "imageSetWorkflowStatus": "CREATED"}),
        };
        let j = e.to_aws_json();
        assert_eq!(j["details"]["imageSetWorkflowStatus"], "CREATED");
        assert_eq!(HistoryEvent::from_aws_json(&j), Some(e));
        let bare = HistoryEvent {
            event_type: "ParallelStateStarted".into(),
            details: Value::Null,
            ..HistoryEvent::from_aws_json(&j).expect("event")
        };
        assert!(bare.to_aws_json().get("details").is_none());
    }

    #[test]
    fn details_keys_follow_aws_names() {
        assert_eq!(details_key("MapIterationFailed"), Some("mapIterationFailedEventDetails"));
        assert_eq!(details_key("ChoiceStateEntered"), Some("stateEnteredEventDetails"));
        assert_eq!(details_key("ParallelStateStarted"), None);
    }
}
