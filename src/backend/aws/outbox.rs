//! View 6 on an AWS context: the outbox relay's sinks and rows, and the operator's actions on
//! them, from the context's `outbox_endpoint` — a server that answers Lightbox's
//! `Lightbox.ListOutbox` and `Lightbox.OutboxAction` (AWS JSON 1.1), as `lightbox serve` does
//! for the relay it runs. Requests are signed with SigV4 in the Step Functions scope
//! (`states`) with the context's credentials, so the server audits the caller's access key.

use std::time::{Duration, SystemTime};

use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use serde_json::Value;

use crate::backend::OutboxSnapshot;
use crate::outbox::sink::request_error;
use crate::outbox::{DeliveryRow, SinkStatus, shown_url};

/// The largest answer read (a listing of 500 rows per sink for a few sinks is far smaller).
const MAX_ANSWER: usize = 8 * 1024 * 1024;
/// Rows per sink asked for, at most (what `lightbox serve` lists at most).
pub const MAX_ROWS_ASKED: usize = crate::outbox::MAX_LISTED_ROWS;
/// Sinks and rows read from one answer, at most.
const MAX_ITEMS: usize = 20_000;
const TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum OutboxEndpointError {
    #[error("outbox_endpoint {0}: not an http:// or https:// URL with a host")]
    Url(String),
    #[error("outbox endpoint {url}: {what}")]
    Call { url: String, what: String },
}

/// The endpoint, checked, and the HTTP client that calls it.
pub struct OutboxEndpoint {
    url: String,
    http: reqwest::Client,
}

impl OutboxEndpoint {
    pub fn new(url: &str) -> Result<OutboxEndpoint, OutboxEndpointError> {
        let parsed = reqwest::Url::parse(url).map_err(|_| OutboxEndpointError::Url(shown_url(url)))?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none_or(str::is_empty) {
            return Err(OutboxEndpointError::Url(shown_url(url)));
        }
        let http = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .connect_timeout(Duration::from_secs(3))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| OutboxEndpointError::Call { url: shown_url(url), what: e.to_string() })?;
        Ok(OutboxEndpoint { url: url.to_string(), http })
    }

    fn err(&self, what: impl Into<String>) -> OutboxEndpointError {
        OutboxEndpointError::Call { url: shown_url(&self.url), what: what.into() }
    }

    /// Call `Lightbox.<op>` with `body`, signed with `identity` (none: unsigned, for a loopback
    /// server without credentials).
    pub async fn call(&self, identity: Option<Identity>, region: &str, op: &str, body: &Value) -> Result<Value, OutboxEndpointError> {
        let payload = body.to_string();
        let url = reqwest::Url::parse(&self.url).map_err(|_| self.err("not a URL"))?;
        let host = match (url.host_str(), url.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_string(),
            (None, _) => return Err(self.err("names no host")),
        };
        let target = format!("{}{op}", crate::outbox::TARGET_PREFIX);
        let mut headers: Vec<(String, String)> =
            vec![("host".into(), host), ("content-type".into(), "application/x-amz-json-1.1".into()), ("x-amz-target".into(), target)];
        if let Some(identity) = identity {
            let signable = SignableRequest::new(
                "POST",
                self.url.clone(),
                headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
                SignableBody::Bytes(payload.as_bytes()),
            )
            .map_err(|e| self.err(format!("cannot sign the request: {e}")))?;
            let params = v4::SigningParams::builder()
                .identity(&identity)
                .region(region)
                .name("states")
                .time(SystemTime::now())
                .settings(SigningSettings::default())
                .build()
                .map_err(|e| self.err(format!("cannot sign the request: {e}")))?;
            let (instructions, _) =
                sign(signable, &params.into()).map_err(|e| self.err(format!("cannot sign the request: {e}")))?.into_parts();
            for (k, v) in instructions.headers() {
                headers.push((k.to_string(), v.to_string()));
            }
        }
        let mut req = self.http.post(url.clone()).body(payload);
        for (k, v) in headers.iter().filter(|(k, _)| k != "host") {
            req = req.header(k.as_str(), v.as_str());
        }
        let mut resp = req.send().await.map_err(|e| self.err(request_error(e)))?;
        let status = resp.status();
        let mut bytes = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| self.err(request_error(e)))? {
            if bytes.len() + chunk.len() > MAX_ANSWER {
                return Err(self.err(format!("the answer is larger than {MAX_ANSWER} bytes")));
            }
            bytes.extend_from_slice(&chunk);
        }
        let v: Value = serde_json::from_slice(&bytes).map_err(|_| self.err(format!("HTTP {}: the answer is not JSON", status.as_u16())))?;
        if !status.is_success() {
            // What the endpoint says, bounded: one line of each (they reach the screen and the
            // audit log).
            let line = |k: &str, max: usize| -> String {
                v.get(k).and_then(Value::as_str).unwrap_or_default().lines().next().unwrap_or_default().chars().take(max).collect()
            };
            let code = Some(line("__type", 100)).filter(|c| !c.is_empty()).unwrap_or_else(|| format!("HTTP {}", status.as_u16()));
            return Err(self.err(format!("{code}: {}", line("message", 300))));
        }
        Ok(v)
    }
}

/// A `ListOutbox` answer as view 6's data; anything malformed is an error naming it.
pub fn snapshot(v: &Value) -> Result<OutboxSnapshot, String> {
    let list = |k: &str| -> Result<&Vec<Value>, String> {
        let a = v.get(k).and_then(Value::as_array).ok_or_else(|| format!("the answer has no {k} list"))?;
        if a.len() > MAX_ITEMS { Err(format!("the answer lists more than {MAX_ITEMS} {k}")) } else { Ok(a) }
    };
    let sinks = list("sinks")?
        .iter()
        .enumerate()
        .map(|(i, s)| SinkStatus::from_json(s).map_err(|e| format!("sinks[{i}]: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    let rows = list("rows")?
        .iter()
        .enumerate()
        .map(|(i, r)| DeliveryRow::from_json(r).map_err(|e| format!("rows[{i}]: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(OutboxSnapshot { sinks, rows })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_listing_reads_back_as_the_relay_wrote_it_and_bad_ones_name_the_member() {
        let sink = SinkStatus {
            name: "pager".into(),
            kind: "webhook".into(),
            format: "pagerduty".into(),
            target: "https://events.pagerduty.com/v2/enqueue".into(),
            paused: true,
            paused_reason: Some("maintenance".into()),
            breaker: crate::outbox::Breaker::Open,
            breaker_left_ms: Some(4_000),
            // When the next trial is travels too (to the second, as every time here).
            next_trial_ms: Some(1_700_000_004_000),
            backlog: 3,
            oldest_age_ms: Some(95_000),
            rate_per_min: 2,
            delivered: 40,
            failures: 5,
            parked: 1,
            last_error: Some("webhook answered HTTP 503".into()),
        };
        let row = DeliveryRow {
            row_id: 7,
            sink: "pager".into(),
            stream: "arn:aws:states:us-east-1:1:execution:m:x".into(),
            event_id: "e-7".into(),
            detail_type: "Review Escalation Notice".into(),
            created_ms: 1_700_000_000_000,
            attempts: 3,
            next_ms: Some(1_700_000_060_000),
            parked: false,
            park_reason: None,
            last_error: Some("HTTP 500".into()),
        };
        let v = json!({"sinks": [sink.to_json()], "rows": [row.to_json()]});
        let back = snapshot(&v).expect("reads");
        assert_eq!(back.sinks, vec![sink]);
        assert_eq!(back.rows, vec![row]);
        for (bad, want) in [
            (json!({"rows": []}), "no sinks list"),
            (json!({"sinks": [{"name": 1}], "rows": []}), "sinks[0]: name is not a string"),
            (json!({"sinks": [], "rows": [{"rowId": "x"}]}), "rows[0]: rowId is not a whole number"),
        ] {
            let e = snapshot(&bad).expect_err("bad");
            assert!(e.contains(want), "{want}: {e}");
        }
    }

    #[test]
    fn only_http_urls_with_a_host_are_endpoints_and_errors_hide_credentials() {
        assert!(OutboxEndpoint::new("http://127.0.0.1:8083").is_ok());
        for bad in ["ftp://h/x", "not a url", "https://"] {
            assert!(OutboxEndpoint::new(bad).is_err(), "{bad}");
        }
        let e = OutboxEndpoint::new("ftp://user:secret@h/x").err().map(|e| e.to_string()).unwrap_or_default();
        assert!(!e.contains("secret"), "{e}");
    }
}
