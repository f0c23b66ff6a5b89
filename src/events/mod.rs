//! Workflow events as other systems receive them: every outbox row's payload is one
//! EventBridge event (`version, id, detail-type, source, account, time, region, resources,
//! detail`). Execution status changes use AWS's own shape (`source` "aws.states"); Lightbox's
//! own events (SLO, escalation, review, compensation, breaker, audit head) use `source`
//! "lightbox". An event's `id` names the business transition, so a redelivery keeps it.
//!
//! Pure: no store, no clock.

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
    fn id_numbers_are_stable_and_positive() {
        assert_eq!(id_number("a"), id_number("a"));
        assert_ne!(id_number("a"), id_number("b"));
        assert!(id_number("anything") >= 0);
    }
}
