//! CloudWatch Logs Live Tail (`StartLiveTail`): one session streams the new records of the
//! context's log groups (the execution log and the event log groups, up to
//! [`MAX_GROUPS`]) as they are ingested, instead of a `FilterLogEvents` call per group every
//! few seconds. The session's event stream is read by a task on the backend's runtime into a
//! bounded buffer that each tick drains ([`Session::drain`]); when the session ends — after at
//! most three hours, on an error, when the service samples the stream (more than 500 records a
//! second) or the buffer fills — the backend goes back to its `FilterLogEvents` cursor, which
//! resumes from the last timestamp it saw, so no record is lost, and none is taken twice
//! (records are known by their time, stream and text in both modes).
//!
//! Also here: the DNS resolver the backend's HTTP client uses, so that an emulator reached by
//! IP address (`endpoint_url = "http://127.0.0.1:…"`) is reached for `StartLiveTail` too, which
//! the SDK sends to the endpoint's host with a `stream-` prefix.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use aws_sdk_cloudwatchlogs as cwl;
use aws_sdk_cloudwatchlogs::error::ProvideErrorMetadata;
use aws_smithy_runtime_api::client::dns::{DnsFuture, ResolveDns, ResolveDnsError};
use cwl::types::StartLiveTailResponseStream;
use cwl::types::error::StartLiveTailResponseStreamError;

/// Log groups one session may tail (the service's limit).
pub const MAX_GROUPS: usize = 10;
/// Records held between two ticks, at most, and their bytes (a record may be 256 KB); a
/// session that would hold more ends, and the cursor reads them (a context that is not live in
/// the console, parked by `:ctx`, is not ticked: its session ends so).
pub const BUFFER_MAX: usize = 20_000;
pub const BUFFER_MAX_BYTES: usize = 16 << 20;

/// One record as the session delivered it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The log group's name (from the ARN the session names it by).
    pub group: String,
    pub stream: String,
    pub timestamp: i64,
    pub message: String,
}

/// Why a session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// The service ends every session after three hours (`SessionTimeoutException`).
    TimedOut,
    /// More than 500 records a second: the service sends a sample only.
    Sampled,
    /// The buffer filled before the ticks drained it.
    Backlog,
    /// The stream ended without saying why (the connection closed).
    Closed,
    Failed(String),
}

impl End {
    pub fn text(&self) -> String {
        match self {
            End::TimedOut => "live tail session ended after 3 h, restarting".into(),
            End::Sampled => "live tail sampled the records (over 500/s)".into(),
            End::Backlog => "live tail delivered more than the console took".into(),
            End::Closed => "live tail session closed".into(),
            End::Failed(why) => format!("live tail failed: {why}"),
        }
    }

    /// How long the cursor serves before a new session is tried.
    pub fn restart_after(&self) -> Duration {
        match self {
            End::TimedOut => Duration::ZERO,
            End::Sampled | End::Backlog => Duration::from_secs(600),
            End::Closed | End::Failed(_) => Duration::from_secs(60),
        }
    }
}

#[derive(Debug, Default)]
struct Shared {
    records: VecDeque<Record>,
    bytes: usize,
    ended: Option<End>,
}

fn lock(m: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A running session: its stream read on the backend's runtime.
pub struct Session {
    shared: Arc<Mutex<Shared>>,
    task: tokio::task::JoinHandle<()>,
    pub started: Instant,
}

impl Session {
    pub fn spawn(
        rt: &tokio::runtime::Runtime,
        rx: cwl::primitives::event_stream::EventReceiver<StartLiveTailResponseStream, StartLiveTailResponseStreamError>,
    ) -> Session {
        let shared = Arc::new(Mutex::new(Shared::default()));
        let task = rt.spawn(read(rx, shared.clone()));
        Session { shared, task, started: Instant::now() }
    }

    /// The records delivered since the last drain (oldest first), and why the session ended
    /// if it did (its records up to then are all in the first part).
    pub fn drain(&self) -> (Vec<Record>, Option<End>) {
        let mut s = lock(&self.shared);
        s.bytes = 0;
        (s.records.drain(..).collect(), s.ended.clone())
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A log group's name from how a session names it (`arn:…:log-group:NAME[:*]`, or the name).
pub fn group_name(identifier: &str) -> &str {
    match identifier.split_once(":log-group:") {
        Some((_, rest)) => rest.strip_suffix(":*").unwrap_or(rest),
        None => identifier,
    }
}

async fn read(
    mut rx: cwl::primitives::event_stream::EventReceiver<StartLiveTailResponseStream, StartLiveTailResponseStreamError>,
    shared: Arc<Mutex<Shared>>,
) {
    let end = loop {
        match rx.recv().await {
            Ok(Some(StartLiveTailResponseStream::SessionUpdate(u))) => {
                if u.session_metadata().is_some_and(|m| m.sampled()) {
                    break End::Sampled;
                }
                let mut s = lock(&shared);
                let bytes: usize = u.session_results().iter().map(|e| e.message().map_or(0, str::len)).sum();
                if s.records.len() + u.session_results().len() > BUFFER_MAX || s.bytes + bytes > BUFFER_MAX_BYTES {
                    break End::Backlog;
                }
                s.bytes += bytes;
                for e in u.session_results() {
                    s.records.push_back(Record {
                        group: group_name(e.log_group_identifier().unwrap_or_default()).to_string(),
                        stream: e.log_stream_name().unwrap_or_default().to_string(),
                        timestamp: e.timestamp().unwrap_or(0),
                        message: e.message().unwrap_or_default().to_string(),
                    });
                }
            }
            Ok(Some(_)) => {}
            Ok(None) => break End::Closed,
            Err(e) => {
                let timed_out = e.as_service_error().is_some_and(|x| x.is_session_timeout_exception());
                break if timed_out {
                    End::TimedOut
                } else {
                    // The code only: the message may quote what the stream carried.
                    End::Failed(e.code().map(str::to_string).unwrap_or_else(|| "the stream broke".into()))
                };
            }
        }
    };
    lock(&shared).ended = Some(end);
}

/// The system resolver, except that `stream-ADDRESS` (the SDK's host prefix for
/// `StartLiveTail` before an endpoint given by IP address) is that address.
#[derive(Debug, Clone, Default)]
pub struct Resolver;

impl ResolveDns for Resolver {
    fn resolve_dns<'a>(&'a self, name: &'a str) -> DnsFuture<'a> {
        if let Some(ip) = name.strip_prefix("stream-").and_then(|a| a.trim_matches(['[', ']']).parse::<IpAddr>().ok()) {
            return DnsFuture::ready(Ok(vec![ip]));
        }
        let name = name.to_string();
        DnsFuture::new(async move {
            let addrs = tokio::net::lookup_host((name.as_str(), 0)).await.map_err(ResolveDnsError::new)?;
            Ok(addrs.map(|a| a.ip()).collect())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_are_named_by_arn_or_name() {
        assert_eq!(group_name("arn:aws:logs:us-east-1:123456789012:log-group:/aws/vendedlogs/states/x:*"), "/aws/vendedlogs/states/x");
        assert_eq!(group_name("arn:aws:logs:us-east-1:123456789012:log-group:/aws/events/hi"), "/aws/events/hi");
        assert_eq!(group_name("/plain"), "/plain");
    }

    #[test]
    fn a_prefixed_ip_endpoint_resolves_to_its_address_and_names_resolve_as_usual() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let r = Resolver;
        assert_eq!(rt.block_on(r.resolve_dns("stream-127.0.0.1")).expect("ip"), vec!["127.0.0.1".parse::<IpAddr>().expect("ip")]);
        assert_eq!(rt.block_on(r.resolve_dns("stream-[::1]")).expect("ip6"), vec!["::1".parse::<IpAddr>().expect("ip")]);
        let local = rt.block_on(r.resolve_dns("localhost")).expect("localhost resolves");
        assert!(local.iter().all(|a| a.is_loopback()) && !local.is_empty(), "{local:?}");
    }

    #[test]
    fn every_end_says_why_and_when_live_tail_is_tried_again() {
        assert_eq!(End::TimedOut.restart_after(), Duration::ZERO, "a session over its 3 h restarts at once");
        assert!(End::Sampled.restart_after() >= Duration::from_secs(60));
        assert!(End::Failed("X".into()).text().contains('X'));
    }
}
