//! Pure: the client-side rate limiter (a token bucket per API, set to Step Functions' and
//! CloudWatch Logs' documented default quotas, see [`default_quota`]) and the conditions the
//! console shows.

use std::collections::HashMap;
use std::time::Instant;

/// A token bucket: `capacity` calls at once, refilled at `per_sec`.
#[derive(Debug, Clone)]
pub struct Bucket {
    capacity: f64,
    per_sec: f64,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    pub fn new(capacity: f64, per_sec: f64, now: Instant) -> Bucket {
        Bucket { capacity, per_sec, tokens: capacity, at: now }
    }

    /// Take one token if there is one.
    pub fn take(&mut self, now: Instant) -> bool {
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + dt * self.per_sec).min(self.capacity);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Seconds until a token is there.
    pub fn wait_secs(&self) -> f64 {
        if self.tokens >= 1.0 || self.per_sec <= 0.0 { 0.0 } else { (1.0 - self.tokens) / self.per_sec }
    }
}

/// Default quotas (bucket size, refill per second) per API, as documented; the client-side
/// bucket of each API is set to them so this console alone never exceeds them.
///
/// Step Functions (standard workflows): the "All other regions" column of the API action
/// throttling tables (the largest regions, us-east-1, us-west-2 and eu-west-1, have equal or
/// larger buckets), from
/// <https://docs.aws.amazon.com/step-functions/latest/dg/service-quotas.html> (formerly
/// limits-overview.html; read from its source, `doc_source/limits-overview.md` of
/// <https://github.com/awsdocs/aws-step-functions-developer-guide>).
/// `RedriveExecution` is not in those tables: it gets `StopExecution`'s bucket, the smaller of
/// the two execution-changing APIs it resembles.
///
/// CloudWatch Logs: `FilterLogEvents` 5 transactions per second per account and region,
/// `PutLogEvents` 5 requests per second per log stream (the audit log ships to one stream; the
/// per-account quota is 800 to 1,500 a second), from
/// <https://docs.aws.amazon.com/AmazonCloudWatchLogs/latest/logs/cloudwatch_limits_cwl.html>
/// (read from its source, `doc_source/cloudwatch_limits_cwl.md` of
/// <https://github.com/awsdocs/amazon-cloudwatch-logs-user-guide>);
/// `CreateLogStream` 50 a second, from
/// <https://docs.aws.amazon.com/AmazonCloudWatchLogs/latest/APIReference/API_CreateLogStream.html>.
pub fn default_quota(api: &str) -> (f64, f64) {
    match api {
        "ListExecutions" => (100.0, 2.0),
        "DescribeExecution" => (250.0, 10.0),
        "GetExecutionHistory" => (400.0, 20.0),
        "DescribeStateMachine" => (200.0, 20.0),
        "DescribeStateMachineForExecution" => (200.0, 1.0),
        "ListStateMachines" => (100.0, 5.0),
        "StartExecution" => (800.0, 150.0),
        "StopExecution" | "RedriveExecution" => (500.0, 25.0),
        "SendTaskSuccess" | "SendTaskFailure" | "SendTaskHeartbeat" => (1500.0, 300.0),
        "FilterLogEvents" => (5.0, 5.0),
        "PutLogEvents" => (5.0, 5.0),
        "CreateLogStream" => (50.0, 50.0),
        _ => (50.0, 1.0),
    }
}

/// One bucket per API, made on first use.
#[derive(Debug, Default)]
pub struct Limiter {
    buckets: HashMap<&'static str, Bucket>,
    /// Calls made per API (for `bench --aws-calls` and tests).
    pub calls: HashMap<&'static str, u64>,
}

impl Limiter {
    /// May `api` be called now? Counts the call when it may.
    pub fn admit(&mut self, api: &'static str, now: Instant) -> Result<(), f64> {
        let b = self.buckets.entry(api).or_insert_with(|| {
            let (c, r) = default_quota(api);
            Bucket::new(c, r, now)
        });
        if b.take(now) {
            *self.calls.entry(api).or_default() += 1;
            Ok(())
        } else {
            Err(b.wait_secs())
        }
    }

    pub fn total_calls(&self) -> u64 {
        self.calls.values().sum()
    }
}

/// What went wrong talking to AWS, as the status line says it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    Throttled,
    CredentialsExpired,
    NoCredentials(String),
    AccessDenied {
        region: String,
        api: String,
    },
    NetworkLost,
    /// This console's own rate limiter held a call back.
    RateLimited(String),
    Other(String),
}

impl Condition {
    /// Classify an error by its AWS error code (if any) and its text.
    pub fn classify(code: Option<&str>, text: &str, region: &str, api: &str) -> Condition {
        let lower = text.to_ascii_lowercase();
        match code.unwrap_or_default() {
            "ThrottlingException"
            | "Throttling"
            | "TooManyRequestsException"
            | "RequestLimitExceeded"
            | "ProvisionedThroughputExceededException" => Condition::Throttled,
            "ExpiredTokenException" | "ExpiredToken" | "RequestExpired" => Condition::CredentialsExpired,
            "UnrecognizedClientException" | "InvalidClientTokenId" | "InvalidSignatureException" | "SignatureDoesNotMatch" => {
                Condition::NoCredentials("the credentials were not accepted".into())
            }
            "AccessDeniedException" | "AccessDenied" | "UnauthorizedOperation" => {
                Condition::AccessDenied { region: region.to_string(), api: api.to_string() }
            }
            _ if lower.contains("expired") && (lower.contains("token") || lower.contains("credential")) => Condition::CredentialsExpired,
            _ if lower.contains("credential") => Condition::NoCredentials(first_line(text)),
            _ if code.is_none()
                && (lower.contains("dispatch")
                    || lower.contains("timeout")
                    || lower.contains("timed out")
                    || lower.contains("connect")
                    || lower.contains("io error")
                    || lower.contains("connection")) =>
            {
                Condition::NetworkLost
            }
            c if !c.is_empty() => Condition::Other(format!("{api}: {c}: {}", first_line(text))),
            _ => Condition::Other(format!("{api}: {}", first_line(text))),
        }
    }

    /// The status line, given when data was last fresh (`HH:MM`, local time).
    /// What kind of condition this is, for the log: never the service's free text, which may
    /// quote what the call carried (a task token, an input).
    pub fn kind(&self) -> &'static str {
        match self {
            Condition::Throttled => "throttled",
            Condition::CredentialsExpired => "credentials expired",
            Condition::NoCredentials(_) => "no credentials",
            Condition::AccessDenied { .. } => "access denied",
            Condition::NetworkLost => "network lost",
            Condition::RateLimited(_) => "rate limited",
            Condition::Other(_) => "other error",
        }
    }

    pub fn text(&self, last_ok: Option<&str>) -> String {
        let since = last_ok.map(|t| format!(" — showing last known at {t}")).unwrap_or_default();
        match self {
            Condition::Throttled => format!("throttled, backing off{since}"),
            Condition::CredentialsExpired => format!("credentials expired: renew them (e.g. aws sso login){since}"),
            Condition::NoCredentials(why) => format!("no usable AWS credentials ({why}){since}"),
            Condition::AccessDenied { region, api } => format!("region {region}: access denied ({api}){since}"),
            Condition::NetworkLost => match last_ok {
                Some(t) => format!("network lost — showing last known at {t}"),
                None => "network lost — nothing loaded yet".into(),
            },
            Condition::RateLimited(api) => format!("{api}: holding back to stay within the API quota{since}"),
            Condition::Other(m) => format!("{m}{since}"),
        }
    }
}

fn first_line(s: &str) -> String {
    let l = s.lines().next().unwrap_or_default();
    l.chars().take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_bucket_allows_its_burst_then_its_refill_rate() {
        let t0 = Instant::now();
        let mut b = Bucket::new(3.0, 2.0, t0);
        assert!(b.take(t0) && b.take(t0) && b.take(t0));
        assert!(!b.take(t0), "the burst is spent");
        assert!((b.wait_secs() - 0.5).abs() < 1e-9);
        assert!(b.take(t0 + Duration::from_millis(500)), "one more after half a second at 2/s");
        assert!(!b.take(t0 + Duration::from_millis(600)));
        assert!(b.take(t0 + Duration::from_secs(100)) && b.take(t0 + Duration::from_secs(100)) && b.take(t0 + Duration::from_secs(100)));
        assert!(!b.take(t0 + Duration::from_secs(100)), "never more than the bucket holds");
    }

    #[test]
    fn the_buckets_are_the_documented_default_quotas() {
        // Step Functions, "All other regions"; CloudWatch Logs (see `default_quota`).
        for (api, quota) in [
            ("ListExecutions", (100.0, 2.0)),
            ("DescribeExecution", (250.0, 10.0)),
            ("GetExecutionHistory", (400.0, 20.0)),
            ("DescribeStateMachine", (200.0, 20.0)),
            ("DescribeStateMachineForExecution", (200.0, 1.0)),
            ("ListStateMachines", (100.0, 5.0)),
            ("StartExecution", (800.0, 150.0)),
            ("StopExecution", (500.0, 25.0)),
            ("SendTaskSuccess", (1500.0, 300.0)),
            ("SendTaskFailure", (1500.0, 300.0)),
            ("SendTaskHeartbeat", (1500.0, 300.0)),
            ("FilterLogEvents", (5.0, 5.0)),
            ("PutLogEvents", (5.0, 5.0)),
            ("CreateLogStream", (50.0, 50.0)),
        ] {
            assert_eq!(default_quota(api), quota, "{api}");
        }
        // An API the table does not name gets a small bucket, not an unlimited one.
        assert_eq!(default_quota("ListTagsForResource"), (50.0, 1.0));
    }

    #[test]
    fn the_limiter_counts_only_admitted_calls() {
        let t0 = Instant::now();
        let mut l = Limiter::default();
        let admitted = (0..10).filter(|_| l.admit("FilterLogEvents", t0).is_ok()).count();
        assert_eq!(admitted, 5);
        assert_eq!(l.total_calls(), 5);
    }

    #[test]
    fn conditions_read_as_the_operator_needs_them() {
        let c = |code, text| Condition::classify(code, text, "eu-west-1", "ListExecutions");
        assert_eq!(c(Some("ThrottlingException"), "Rate exceeded"), Condition::Throttled);
        assert_eq!(
            c(Some("ExpiredTokenException"), "The security token included in the request is expired"),
            Condition::CredentialsExpired
        );
        assert_eq!(
            c(Some("AccessDeniedException"), "not authorized"),
            Condition::AccessDenied { region: "eu-west-1".into(), api: "ListExecutions".into() }
        );
        assert_eq!(c(None, "dispatch failure: io error: connection reset"), Condition::NetworkLost);
        assert_eq!(Condition::NetworkLost.text(Some("10:42")), "network lost — showing last known at 10:42");
        assert_eq!(
            Condition::AccessDenied { region: "eu-west-1".into(), api: "ListExecutions".into() }.text(None),
            "region eu-west-1: access denied (ListExecutions)"
        );
        assert!(matches!(c(Some("InvalidArn"), "bad"), Condition::Other(m) if m.contains("InvalidArn")));
    }
}
