//! The call budget, measured: the backend against the scripted stub ([`super::stub`]) with a
//! given number of running executions, in steady state (after the first sweep has listed them
//! and their histories are taken as read), at the real pacing. For `lightbox bench
//! --aws-calls` and the tests.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::stub::Stub;
use super::{Aws, AwsContext, AwsError};
use crate::backend::ControlPlane;

/// One measurement.
#[derive(Debug, Clone)]
pub struct CallsReport {
    pub running: usize,
    /// How long the first sweep (listing every running execution) took.
    pub first_sweep: Duration,
    pub window: Duration,
    /// Calls in the window, by API.
    pub calls: BTreeMap<String, u64>,
    pub per_minute: f64,
}

impl CallsReport {
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "running": self.running,
            "firstSweepMs": self.first_sweep.as_millis() as u64,
            "windowSeconds": self.window.as_secs_f64(),
            "calls": self.calls,
            "callsPerMinute": self.per_minute,
        })
    }
}

/// API calls per minute over `window` of steady state with `running` executions (a log group
/// configured, as recommended, and one event log group). The window is at least a second.
pub fn calls_per_minute(running: usize, window: Duration) -> Result<CallsReport, AwsError> {
    let window = window.max(Duration::from_secs(1));
    let stub = Stub::start(running).map_err(|e| AwsError::Runtime(format!("starting the scripted endpoint: {e}")))?;
    let cfg = AwsContext {
        region: Some("us-east-1".into()),
        endpoint_url: Some(stub.url.clone()),
        log_group: Some("/aws/vendedlogs/states/stub-review".into()),
        event_log_groups: vec!["/aws/events/healthimaging".into()],
        ..Default::default()
    };
    // Real pacing: a sweep at most every 15 s, the execution log every 2 s, the event log every 5 s.
    let mut cp = Aws::connect_with("bench", &cfg, None, Some(("AKIDSTUB", "secret")))?;
    let t0 = Instant::now();
    let _ = cp.tick();
    let first_sweep = t0.elapsed();
    if cp.known_executions() != running {
        return Err(AwsError::Api(format!(
            "the first sweep listed {} of {running} running executions ({:?})",
            cp.known_executions(),
            cp.pulse().ok().and_then(|p| p.condition)
        )));
    }
    cp.assume_backfilled();
    let before = stub.calls();
    let end = Instant::now() + window;
    while Instant::now() < end {
        std::thread::sleep(Duration::from_millis(200));
        let _ = cp.tick();
    }
    let after = stub.calls();
    let calls: BTreeMap<String, u64> = after
        .into_iter()
        .map(|(k, v)| {
            let d = v.saturating_sub(before.get(&k).copied().unwrap_or(0));
            (k, d)
        })
        .filter(|(_, v)| *v > 0)
        .collect();
    let total: u64 = calls.values().sum();
    Ok(CallsReport { running, first_sweep, window, calls, per_minute: total as f64 * 60.0 / window.as_secs_f64() })
}
