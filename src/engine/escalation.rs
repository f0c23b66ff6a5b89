//! Escalation ladders: per review gate (state name, optionally machine, and `when` on the
//! execution input), steps at a fraction of the gate's timeout (`at = 0.5`) or after a
//! duration (`after = "10m"`) that either `notify` a sink (an outbox event "Review
//! Escalation Notice" whose detail is a PagerDuty Events v2 or Slack webhook body) or `fail`
//! the token (default [`super::ESCALATED`]) so the gate's Catch reroutes it. Each step fires
//! once per token: a notice's event id names the token and step; a fail closes the token.

use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};

use super::dependencies::parse_duration;
use crate::asl::path::JsonPath;
use crate::model::PendingTask;

/// The event of every escalation (automatic or by hand).
pub const ESCALATED_EVENT: &str = "Review Escalated";
/// The event of a ladder's notify step.
pub const NOTICE_EVENT: &str = crate::events::REVIEW_ESCALATION_NOTICE;

/// `[[escalation]]`: one gate's ladder.
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct EscalationConfig {
    /// The gate's state name.
    pub state: String,
    /// The state machine's name (any when absent).
    pub machine: Option<String>,
    /// JSONPath on the execution input = value; all must match.
    #[serde(default)]
    pub when: std::collections::BTreeMap<String, Value>,
    pub steps: Vec<LadderStep>,
}

#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct LadderStep {
    /// Fraction of the gate's timeout (0 < at <= 1).
    pub at: Option<f64>,
    /// Or a duration after the task was issued ("10m").
    pub after: Option<String>,
    /// Notify this sink.
    pub notify: Option<String>,
    /// "pagerduty" (default) or "slack".
    pub format: Option<String>,
    /// Fail the token with this error ("" or absent with no notify: Review.Escalated).
    pub fail: Option<String>,
}

#[derive(Debug, thiserror::Error)]
#[error("escalation: {0}")]
pub struct EscalationConfigError(pub String);

/// Check `[[escalation]]`: every problem names the entry and key.
pub fn validate(ladders: &[EscalationConfig]) -> Result<(), EscalationConfigError> {
    for (i, l) in ladders.iter().enumerate() {
        let at = format!("escalation[{i}]");
        if l.state.trim().is_empty() {
            return Err(EscalationConfigError(format!("{at}.state must name the review gate")));
        }
        for k in l.when.keys() {
            if JsonPath::parse(k).is_err() {
                return Err(EscalationConfigError(format!("{at}.when: {k:?} is not a JSONPath")));
            }
        }
        if l.steps.is_empty() {
            return Err(EscalationConfigError(format!("{at}.steps is empty")));
        }
        for (j, s) in l.steps.iter().enumerate() {
            let at = format!("{at}.steps[{j}]");
            match (s.at, &s.after) {
                (Some(f), None) if f > 0.0 && f <= 1.0 => {}
                (Some(_), None) => return Err(EscalationConfigError(format!("{at}.at must be a fraction in (0, 1]"))),
                (None, Some(d)) if parse_duration(d).is_some() => {}
                (None, Some(d)) => {
                    return Err(EscalationConfigError(format!(
                        "{at}.after {d:?} is not a duration like \"10m\" ({})",
                        crate::duration::RANGE
                    )));
                }
                _ => return Err(EscalationConfigError(format!("{at} needs exactly one of at or after"))),
            }
            match (&s.notify, &s.fail) {
                (Some(_), None) | (None, Some(_)) => {}
                _ => return Err(EscalationConfigError(format!("{at} needs exactly one of notify or fail"))),
            }
            if let Some(f) = s.format.as_deref().filter(|f| !matches!(*f, "pagerduty" | "slack")) {
                return Err(EscalationConfigError(format!("{at}.format {f:?} must be \"pagerduty\" or \"slack\"")));
            }
        }
    }
    Ok(())
}

/// Check every `notify` against the sinks in force and settle each step's format: a notify
/// names a configured sink; a PagerDuty or Slack sink takes notices in its own format only (a
/// step without `format` takes the sink's). Errors name the entry and key.
pub fn check_sinks(ladders: &mut [EscalationConfig], sinks: &[crate::outbox::Sink]) -> Result<(), EscalationConfigError> {
    for (i, l) in ladders.iter_mut().enumerate() {
        for (j, s) in l.steps.iter_mut().enumerate() {
            let Some(name) = &s.notify else { continue };
            let at = format!("escalation[{i}].steps[{j}]");
            let Some(sink) = sinks.iter().find(|k| &k.name == name) else {
                let known: Vec<&str> = sinks.iter().map(|k| k.name.as_str()).collect();
                return Err(EscalationConfigError(format!(
                    "{at}.notify {name:?} names no sink in [[outbox.sinks]] ({})",
                    if known.is_empty() { "none is configured".to_string() } else { format!("configured: {}", known.join(", ")) }
                )));
            };
            if let Some(want) = sink.format.notice_format() {
                match s.format.as_deref() {
                    None => s.format = Some(want.to_string()),
                    Some(f) if f == want => {}
                    Some(f) => {
                        return Err(EscalationConfigError(format!(
                            "{at}.format {f:?} does not fit sink {name:?}, which takes {want:?} notices"
                        )));
                    }
                }
            }
        }
    }
    Ok(())
}

impl EscalationConfig {
    /// Whether this ladder is for `token` of machine `machine` with execution input `input`.
    pub fn applies(&self, machine: &str, state: &str, input: &Value) -> bool {
        self.state == state
            && self.machine.as_deref().is_none_or(|m| m == machine)
            && self.when.iter().all(|(p, want)| JsonPath::parse(p).ok().and_then(|p| p.select(input)).is_some_and(|v| &v == want))
    }
}

impl LadderStep {
    /// When this step is due for a task issued at `issued` with deadline `deadline`. A
    /// fraction of a gate with no timeout never comes due.
    pub fn due_at(&self, issued: DateTime<Utc>, deadline: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
        if let Some(f) = self.at {
            let total = (deadline? - issued).num_milliseconds();
            if total <= 0 {
                return None;
            }
            let off = (total as f64 * f).round();
            return Some(issued + Duration::milliseconds(off as i64));
        }
        self.after.as_deref().and_then(parse_duration).map(|d| issued + d)
    }
    /// The error a fail step sends.
    pub fn error(&self) -> Option<&str> {
        self.fail.as_deref().map(|e| if e.trim().is_empty() { super::ESCALATED } else { e })
    }
}

/// The steps of `ladder` due at `now` for `token`, by index (earliest first).
pub fn due_steps(ladder: &EscalationConfig, token: &PendingTask, now: DateTime<Utc>) -> Vec<usize> {
    let mut v: Vec<(DateTime<Utc>, usize)> = ladder
        .steps
        .iter()
        .enumerate()
        .filter_map(|(i, s)| s.due_at(token.issued, token.timeout).filter(|t| *t <= now).map(|t| (t, i)))
        .collect();
    v.sort();
    v.into_iter().map(|(_, i)| i).collect()
}

/// A stable, short, non-reversible name of a token for event ids (never the token itself).
pub fn token_ref(token: &str) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(token.as_bytes()).iter().take(12).map(|b| format!("{b:02x}")).collect()
}

/// The body a notify step sends: PagerDuty Events v2 or a Slack webhook message. It names the
/// execution, the gate and how far the review is; never patient data.
pub fn notice_body(format: &str, sink: &str, token: &PendingTask, step: usize, due: DateTime<Utc>) -> Value {
    let summary = format!("Review at {} unanswered: escalation step {} (due {})", token.state_name, step + 1, crate::events::time(due));
    let key = format!("lightbox-escalation-{}", token_ref(&token.token));
    if format == "slack" {
        json!({
            "text": summary,
            "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": format!("*{summary}*\nExecution: `{}`", token.execution_arn)}}],
        })
    } else {
        json!({
            "routing_key": sink,
            "event_action": "trigger",
            "dedup_key": key,
            "payload": {
                "summary": summary,
                "source": "lightbox",
                "severity": "critical",
                "component": token.state_name,
                "custom_details": {"executionArn": token.execution_arn, "taskToken": crate::engine::short_token(&token.token), "step": step + 1}
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 25, 10, 0, 0).single().expect("time")
    }
    fn token(timeout: Option<i64>) -> PendingTask {
        PendingTask {
            token: "abcdefgh12345678".into(),
            execution_arn: "arn:aws:states:us-east-1:000000000000:execution:m:x".into(),
            task_id: "t".into(),
            state_name: "RadiologistReview".into(),
            resource: "r".into(),
            parameters: "{}".into(),
            status: "PENDING".into(),
            issued: t0(),
            timeout: timeout.map(|m| t0() + Duration::minutes(m)),
            heartbeat: None,
            closed: None,
            claimed_by: None,
        }
    }
    fn ladder() -> EscalationConfig {
        toml::from_str(
            r#"state = "RadiologistReview"
               machine = "ai-draft-review"
               when = { "$.priority" = "STAT" }
               steps = [ { at = 0.5, notify = "pager", format = "pagerduty" }, { after = "10m", notify = "slack", format = "slack" }, { at = 0.9, fail = "Review.Escalated" } ]"#,
        )
        .expect("ladder")
    }

    #[test]
    fn fractions_and_durations_come_due_in_order() {
        let l = ladder();
        validate(std::slice::from_ref(&l)).expect("valid");
        let t = token(Some(60));
        assert!(due_steps(&l, &t, t0() + Duration::minutes(9)).is_empty());
        assert_eq!(due_steps(&l, &t, t0() + Duration::minutes(10)), vec![1]);
        assert_eq!(due_steps(&l, &t, t0() + Duration::minutes(30)), vec![1, 0]);
        assert_eq!(due_steps(&l, &t, t0() + Duration::seconds(53 * 60)), vec![1, 0]);
        assert_eq!(due_steps(&l, &t, t0() + Duration::seconds(54 * 60)), vec![1, 0, 2]);
        // No timeout: only the duration step can come due.
        assert_eq!(due_steps(&l, &token(None), t0() + Duration::days(1)), vec![1]);
    }

    #[test]
    fn a_ladder_applies_by_state_machine_and_input() {
        let l = ladder();
        assert!(l.applies("ai-draft-review", "RadiologistReview", &json!({"priority": "STAT"})));
        assert!(!l.applies("ai-draft-review", "RadiologistReview", &json!({"priority": "ROUTINE"})));
        assert!(!l.applies("billing", "RadiologistReview", &json!({"priority": "STAT"})));
        assert!(!l.applies("ai-draft-review", "SeniorReview", &json!({"priority": "STAT"})));
    }

    #[test]
    fn validation_names_the_bad_key_and_fail_defaults() {
        let mut l = ladder();
        l.steps[0].at = Some(1.5);
        assert!(validate(&[l]).expect_err("bad").to_string().contains("escalation[0].steps[0].at"));
        let mut l = ladder();
        l.steps[1].notify = None;
        assert!(validate(&[l]).expect_err("bad").to_string().contains("escalation[0].steps[1]"));
        let s = LadderStep { at: Some(0.5), after: None, notify: None, format: None, fail: Some(String::new()) };
        assert_eq!(s.error(), Some(crate::engine::ESCALATED));
    }

    #[test]
    fn notices_carry_no_full_token() {
        let t = token(Some(60));
        for f in ["pagerduty", "slack"] {
            let b = notice_body(f, "pager", &t, 0, t0());
            assert!(!b.to_string().contains(&t.token), "{b}");
        }
        assert_eq!(notice_body("pagerduty", "pager", &t, 0, t0())["event_action"], "trigger");
        assert!(notice_body("slack", "s", &t, 0, t0())["text"].as_str().is_some());
    }
}
