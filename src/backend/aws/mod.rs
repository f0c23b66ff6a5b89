//! AWS Step Functions (and CloudWatch Logs) as a control plane. The only module that imports
//! the AWS SDK.
//!
//! Reading stays within a flat budget of API calls whatever the number of running executions:
//! `ListExecutions` pages per watched machine are paced (at most [`LIST_PAGES_PER_MIN`]),
//! live events come from the machines' execution log group, streamed by a Live Tail session
//! where the endpoint offers it ([`live`]), else through a `FilterLogEvents` cursor,
//! and `DescribeExecution`/`GetExecutionHistory` are called for what the operator opens (and,
//! once, to learn the input and open callbacks of executions started before the console).
//! Without a log group the histories of running executions are polled instead, at a bounded
//! rate, and the status says so. EventBridge events that rules deliver to log groups
//! (`event_log_groups`, e.g. HealthImaging's) are read through a cursor of their own per group
//! and join the Events feed, their details masked. Every call passes a client-side token bucket per API; the
//! SDK retries in adaptive mode (see [`retry_config`]): a throttled call is retried with a
//! short, bounded backoff and the client slows its own rate, and a call that still fails ends
//! well within the operation timeout as "throttled". On any error the backend keeps what it last
//! knew and reports the condition ([`Aws::status`]); it never fails a read it can answer from memory.
//!
//! Claims and the audit log stay in the local store (`lightbox.db` under the data directory).

// The scripted endpoint is a loopback HTTP server: only in builds with the `bench-stub`
// feature (tests, `bench --aws-calls`), so a default build serves HTTP only in src/serve.
#[cfg(feature = "bench-stub")]
pub mod budget;
pub mod events;
pub mod limit;
pub mod live;
pub mod outbox;
#[cfg(feature = "bench-stub")]
pub mod stub;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_cloudwatchlogs as cwl;
use aws_sdk_sfn as sfn;
use aws_sdk_sfn::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use chrono::{DateTime, TimeZone, Utc};
use serde_json::{Map, Value};

use self::events::{Change, Tracker, change_summary};
use self::limit::{Condition, Limiter};
use super::{Acting, BackendError, ControlPlane, ExecutionFilter, FIND_LIMIT, FeedEvent, Found, Pulse, Result, StatusNow};
use crate::asl::model::Definition;
use crate::history::{ExecutionStatus, HistoryEvent};
use crate::model::{ExecutionSummary, PendingTask};

/// At most this many `ListExecutions` pages a minute once the first sweep is done.
pub const LIST_PAGES_PER_MIN: u32 = 20;
/// The execution log is read at most this often.
pub const LOG_POLL: Duration = Duration::from_secs(2);
/// Without a log group: histories of running executions polled per minute.
pub const HISTORY_POLLS_PER_MIN: u32 = 30;
/// A sweep over the watched machines starts at most this often.
const SWEEP_EVERY: Duration = Duration::from_secs(15);
/// Terminal executions kept per status and machine (the newest).
const RECENT_TERMINAL: i32 = 100;
/// Histories read in one tick, at most.
const BACKFILL_PER_TICK: usize = 8;
/// Events kept for the Events view.
const FEED_MAX: usize = 5000;
/// Histories kept for opened executions.
const OPENED_MAX: usize = 32;
/// Answered tokens remembered with their execution.
const ANSWERED_MAX: usize = 64;
/// Attempts per call (the first and two retries).
pub const RETRY_ATTEMPTS: u32 = 3;
/// The first retry's backoff (exponential with jitter after it) and the cap on any backoff,
/// including the adaptive client-side wait after throttling.
pub const RETRY_INITIAL_BACKOFF: Duration = Duration::from_millis(250);
pub const RETRY_MAX_BACKOFF: Duration = Duration::from_secs(2);
/// One attempt, and one call with its retries and waits, at most.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(20);
/// A call that times out this soon after a throttling answer was held back by throttling.
const THROTTLE_MEMORY: Duration = Duration::from_secs(60);
/// Log records read again after the cursor, for late arrivals.
const LOG_LOOKBACK_MS: i64 = 10_000;
/// The first read of a log group looks back this far.
const LOG_FIRST_LOOKBACK_MS: i64 = 3_600_000;
/// `FilterLogEvents` pages read from one group in one poll, at most.
const LOG_PAGES: usize = 10;
/// Each event log group (`event_log_groups`) is read at most this often.
pub const EVENT_LOG_POLL: Duration = Duration::from_secs(5);
/// EventBridge event ids remembered to drop a second delivery of one event.
const BUS_SEEN_MAX: usize = 20_000;

#[derive(Debug, thiserror::Error)]
pub enum AwsError {
    #[error("AWS context {0}: no region (set `region` in the context, AWS_REGION, or a profile's region)")]
    NoRegion(String),
    #[error("could not start the AWS client runtime: {0}")]
    Runtime(String),
    #[error("{0}")]
    Api(String),
    #[error("{0}")]
    Local(#[from] rusqlite::Error),
}

/// `[contexts.NAME]` with `backend = "aws"`: where and what to watch.
#[derive(Debug, Default, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
pub struct AwsContext {
    pub region: Option<String>,
    pub profile: Option<String>,
    /// An emulator or VPC endpoint (`AWS_ENDPOINT_URL` is honoured too).
    pub endpoint_url: Option<String>,
    /// State machine ARNs, or name prefixes; none: every state machine in the region.
    #[serde(default)]
    pub state_machines: Vec<String>,
    /// The CloudWatch Logs group the machines write execution logs to (level ALL).
    pub log_group: Option<String>,
    /// Ship audit rows to this CloudWatch Logs group too.
    pub audit_log_group: Option<String>,
    /// CloudWatch Logs groups EventBridge rules write events to (e.g. HealthImaging's "Import
    /// Job Completed", "Image Set Created"): shown in the Events view beside execution events.
    #[serde(default)]
    pub event_log_groups: Vec<String>,
    /// A server answering `Lightbox.ListOutbox` / `Lightbox.OutboxAction` (`lightbox serve`
    /// does, for the relay it runs): view 6 shows and drives that relay (see [`outbox`]).
    pub outbox_endpoint: Option<String>,
}

/// One execution's history, as far as it was read.
#[derive(Debug, Default)]
struct Opened {
    events: Vec<HistoryEvent>,
    used: u64,
}

/// Where reading a log group has got to: records up to `cursor_ms` were read, those of the
/// last [`LOG_LOOKBACK_MS`] (read again for late arrivals) are known by [`record_key`], in
/// both modes (the cursor and live tail).
#[derive(Debug, Default)]
struct LogCursor {
    group: String,
    cursor_ms: Option<i64>,
    seen: HashMap<String, i64>,
    last_poll: Option<Instant>,
    /// Records live tail delivered, not yet taken: `(timestamp, stream, message)`.
    pending: Vec<(i64, String, String)>,
    /// Read by the cursor once since the live session started (what was ingested before the
    /// session began): from then on live tail alone serves this group.
    caught_up: bool,
}

impl LogCursor {
    fn new(group: &str) -> LogCursor {
        LogCursor { group: group.to_string(), ..Default::default() }
    }
}

/// A log record's identity in both modes: its time, stream and text (live tail gives records
/// no event id), so a record read by the cursor and delivered by live tail is taken once.
fn record_key(timestamp: i64, stream: &str, message: &str) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    message.hash(&mut h);
    format!("{timestamp}/{stream}/{:x}", h.finish())
}

/// A sweep over (machine × status): where the next `ListExecutions` page starts.
#[derive(Debug, Default)]
struct Sweep {
    unit: usize,
    next_token: Option<String>,
    seen: BTreeMap<String, ExecutionSummary>,
    started: Option<Instant>,
}

const STATUSES: [sfn::types::ExecutionStatus; 4] = [
    sfn::types::ExecutionStatus::Running,
    sfn::types::ExecutionStatus::Failed,
    sfn::types::ExecutionStatus::TimedOut,
    sfn::types::ExecutionStatus::Aborted,
];

pub struct Aws {
    rt: tokio::runtime::Runtime,
    /// A one-shot caller's end of patience ([`Aws::set_deadline`]): no call outlasts it.
    deadline: Option<Instant>,
    sfn: sfn::Client,
    logs: cwl::Client,
    /// The context's credentials, for calls outside the SDK (the outbox endpoint).
    credentials: Option<aws_credential_types::provider::SharedCredentialsProvider>,
    context: String,
    cfg: AwsContext,
    region: String,
    /// The local store's database: claims and the audit log.
    local: Option<rusqlite::Connection>,
    compensation: crate::ops::compensation::CompensationMap,
    pub limiter: Limiter,
    machines: Vec<String>,
    machines_at: Option<Instant>,
    sweep: Sweep,
    sweeps_done: u32,
    last_sweep: Option<Instant>,
    sweep_every: Duration,
    log_every: Duration,
    list_budget: limit::Bucket,
    history_budget: limit::Bucket,
    rows: BTreeMap<String, ExecutionSummary>,
    /// Executions whose history was read once (input, open callbacks), with the last event id.
    known: HashMap<String, i64>,
    /// Round-robin position for history polling without a log group.
    poll_at: usize,
    tracker: Tracker,
    /// Definitions by state machine ARN (text and parsed), for token paths and consequences.
    defs: HashMap<String, (String, Option<Arc<Definition>>)>,
    opened: HashMap<String, Opened>,
    use_counter: u64,
    feed: VecDeque<FeedEvent>,
    seq: i64,
    /// The execution log (`log_group`).
    exec_log: Option<LogCursor>,
    /// The event log groups (`event_log_groups`).
    event_logs: Vec<LogCursor>,
    event_every: Duration,
    /// EventBridge event ids already in the feed (at most [`BUS_SEEN_MAX`], oldest forgotten first).
    bus_seen: HashSet<String>,
    bus_order: VecDeque<String>,
    /// Records of the event log groups that were no EventBridge event, by reason.
    bus_skipped: BTreeMap<&'static str, u64>,
    /// Masks what EventBridge events' details carry before they reach the feed.
    phi: crate::phi::Masker,
    /// The live tail session, while one runs; else the cursor reads, and `live_note` says why.
    live: Option<live::Session>,
    live_note: Option<String>,
    live_retry_at: Option<Instant>,
    condition: Option<Condition>,
    last_ok: Option<DateTime<Utc>>,
    /// When a call was last answered with throttling (after the SDK's retries).
    throttled_at: std::cell::Cell<Option<Instant>>,
    audit_stream: Option<String>,
    audit_shipped: i64,
    /// Tokens answered from this console lately, with their execution (for the audit record
    /// written after the answer); at most [`ANSWERED_MAX`].
    answered: VecDeque<(String, String)>,
}

fn to_chrono(d: &sfn::primitives::DateTime) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(d.to_millis().unwrap_or(0)).single().unwrap_or_default()
}

fn status_of(s: &sfn::types::ExecutionStatus) -> ExecutionStatus {
    ExecutionStatus::parse(s.as_str()).unwrap_or(ExecutionStatus::Running)
}

fn classify_error<E, R>(e: &SdkError<E, R>, region: &str, api: &str) -> Condition
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let text = DisplayErrorContext(e).to_string();
    let code = e.code();
    if code.is_none()
        && matches!(e, SdkError::TimeoutError(_) | SdkError::DispatchFailure(_))
        && !text.to_ascii_lowercase().contains("credential")
    {
        return Condition::NetworkLost;
    }
    Condition::classify(code, &text, region, api)
}

/// Why live tail could not start, for the status, and when to try again: an endpoint without
/// it (an emulator, a VPC endpoint without `stream-logs`: an unknown operation, or a name that
/// does not resolve) or a denial for a while; a lost answer or throttling sooner.
fn live_unavailable<E, R>(e: &SdkError<E, R>) -> (String, Duration)
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
{
    const LATER: Duration = Duration::from_secs(600);
    const SOON: Duration = Duration::from_secs(60);
    let dns = {
        let mut at: Option<&(dyn std::error::Error + 'static)> = Some(e);
        let mut found = false;
        while let Some(x) = at {
            found |= x.is::<aws_smithy_runtime_api::client::dns::ResolveDnsError>();
            at = x.source();
        }
        found
    };
    match (e, e.code()) {
        (_, Some("AccessDeniedException" | "AccessDenied")) => ("access denied (logs:StartLiveTail)".into(), LATER),
        (_, Some(c)) if Condition::classify(Some(c), "", "", "") == Condition::Throttled => ("throttled".into(), SOON),
        (SdkError::DispatchFailure(_), _) if dns => ("not offered by this endpoint".into(), LATER),
        (SdkError::DispatchFailure(_) | SdkError::TimeoutError(_), _) => ("no answer".into(), SOON),
        (SdkError::ServiceError(_) | SdkError::ResponseError(_), None)
        | (_, Some("UnknownOperationException" | "InvalidAction" | "UnrecognizedClientException")) => {
            ("not offered by this endpoint".into(), LATER)
        }
        (_, Some(code)) => (code.to_string(), SOON),
        (_, None) => ("no answer".into(), SOON),
    }
}

/// The SDK's retries: adaptive mode — a throttled call is retried after a backoff, and the client
/// lowers its own sending rate until calls stop being throttled — with every wait bounded.
/// Adaptive mode's default backoff cap (20 s) let two retries outlast the operation timeout, so
/// the status could only say "timed out"; here [`RETRY_MAX_BACKOFF`] caps each backoff (and
/// the adaptive limiter's wait folded into it), and a send waits at most 2 s for the limiter
/// at its lowest rate (0.5/s, one token), so [`RETRY_ATTEMPTS`] attempts of a throttled call
/// end in about 6 s plus round trips (10 s under Retry Behavior 2.1, where a retry waits for
/// the limiter on top of its backoff), well within [`OPERATION_TIMEOUT`]: the status says
/// "throttled".
pub fn retry_config() -> aws_config::retry::RetryConfig {
    aws_config::retry::RetryConfig::adaptive()
        .with_max_attempts(RETRY_ATTEMPTS)
        .with_initial_backoff(RETRY_INITIAL_BACKOFF)
        .with_max_backoff(RETRY_MAX_BACKOFF)
}

/// One SDK history event in the one history model (AWS's wire names).
fn history_event(e: &sfn::types::HistoryEvent) -> HistoryEvent {
    let mut d = Map::new();
    let mut put = |k: &str, v: Option<&str>| {
        if let Some(v) = v {
            d.insert(k.to_string(), Value::String(v.to_string()));
        }
    };
    if let Some(x) = e.execution_started_event_details() {
        put("input", x.input());
        put("roleArn", x.role_arn());
    } else if let Some(x) = e.execution_succeeded_event_details() {
        put("output", x.output());
    } else if let Some(x) = e.execution_failed_event_details() {
        put("error", x.error());
        put("cause", x.cause());
    } else if let Some(x) = e.execution_aborted_event_details() {
        put("error", x.error());
        put("cause", x.cause());
    } else if let Some(x) = e.execution_timed_out_event_details() {
        put("error", x.error());
        put("cause", x.cause());
    } else if let Some(x) = e.state_entered_event_details() {
        put("name", Some(x.name()));
        put("input", x.input());
    } else if let Some(x) = e.state_exited_event_details() {
        put("name", Some(x.name()));
        put("output", x.output());
    } else if let Some(x) = e.task_scheduled_event_details() {
        put("resourceType", Some(x.resource_type()));
        put("resource", Some(x.resource()));
        put("region", Some(x.region()));
        put("parameters", Some(x.parameters()));
        if let Some(n) = x.timeout_in_seconds() {
            d.insert("timeoutInSeconds".into(), n.into());
        }
        if let Some(n) = x.heartbeat_in_seconds() {
            d.insert("heartbeatInSeconds".into(), n.into());
        }
    } else if let Some(x) = e.task_started_event_details() {
        put("resourceType", Some(x.resource_type()));
        put("resource", Some(x.resource()));
    } else if let Some(x) = e.task_submitted_event_details() {
        put("resourceType", Some(x.resource_type()));
        put("resource", Some(x.resource()));
        put("output", x.output());
    } else if let Some(x) = e.task_succeeded_event_details() {
        put("resourceType", Some(x.resource_type()));
        put("resource", Some(x.resource()));
        put("output", x.output());
    } else if let Some(x) = e.task_failed_event_details() {
        put("resourceType", Some(x.resource_type()));
        put("resource", Some(x.resource()));
        put("error", x.error());
        put("cause", x.cause());
    } else if let Some(x) = e.task_timed_out_event_details() {
        put("resourceType", Some(x.resource_type()));
        put("resource", Some(x.resource()));
        put("error", x.error());
        put("cause", x.cause());
    } else if let Some(x) = e.task_start_failed_event_details() {
        put("error", x.error());
        put("cause", x.cause());
    } else if let Some(x) = e.task_submit_failed_event_details() {
        put("error", x.error());
        put("cause", x.cause());
    } else if let Some(x) = e.execution_redriven_event_details() {
        if let Some(n) = x.redrive_count() {
            d.insert("redriveCount".into(), n.into());
        }
    } else if let Some(x) = e.map_iteration_started_event_details() {
        put("name", x.name());
        d.insert("index".into(), x.index().into());
    } else if let Some(x) = e.evaluation_failed_event_details() {
        put("error", x.error());
        put("cause", x.cause());
        put("state", Some(x.state()));
    }
    HistoryEvent {
        id: e.id(),
        previous_event_id: e.previous_event_id(),
        timestamp: to_chrono(e.timestamp()),
        event_type: e.r#type().as_str().to_string(),
        details: if d.is_empty() { Value::Null } else { Value::Object(d) },
    }
}

impl Aws {
    /// Connect to the context: AWS's default credential chain (environment, profiles, SSO,
    /// assumed roles, instance roles) with the context's profile, region and endpoint.
    /// `local` is the local store's database (claims, the audit log).
    pub fn connect(context: &str, cfg: &AwsContext, local: Option<rusqlite::Connection>) -> std::result::Result<Aws, AwsError> {
        Aws::connect_with(context, cfg, local, None)
    }

    /// As [`Aws::connect`], with fixed access keys in place of the credential chain (for
    /// emulators such as moto or `lightbox serve`, and tests).
    pub fn connect_with(
        context: &str,
        cfg: &AwsContext,
        local: Option<rusqlite::Connection>,
        keys: Option<(&str, &str)>,
    ) -> std::result::Result<Aws, AwsError> {
        // One worker thread: calls block on it from the caller's thread, and a live tail
        // session's stream is read on it between calls.
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("lightbox-aws")
            .enable_all()
            .build()
            .map_err(|e| AwsError::Runtime(e.to_string()))?;
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring))
            .build_with_resolver(live::Resolver);
        let timeouts = aws_config::timeout::TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(3))
            .operation_attempt_timeout(ATTEMPT_TIMEOUT)
            .operation_timeout(OPERATION_TIMEOUT)
            .build();
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .http_client(http)
            .retry_config(retry_config())
            .timeout_config(timeouts);
        if let Some((id, secret)) = keys {
            loader = loader.credentials_provider(sfn::config::Credentials::new(id, secret, None, None, "lightbox-static"));
        }
        if let Some(p) = &cfg.profile {
            loader = loader.profile_name(p);
        }
        if let Some(r) = &cfg.region {
            loader = loader.region(aws_config::Region::new(r.clone()));
        }
        if let Some(u) = &cfg.endpoint_url {
            loader = loader.endpoint_url(u);
        }
        let conf = rt.block_on(loader.load());
        let region = conf.region().map(|r| r.to_string()).ok_or_else(|| AwsError::NoRegion(context.to_string()))?;
        let now = Instant::now();
        // The adaptive client-side rate of each context is its own (not shared with another
        // context of this process, in another region or account, say).
        let sfn_conf = sfn::config::Builder::from(&conf)
            .retry_partition(sfn::config::retry::RetryPartition::new(format!("lightbox-sfn-{context}-{region}")))
            .build();
        let logs_conf = cwl::config::Builder::from(&conf)
            .retry_partition(cwl::config::retry::RetryPartition::new(format!("lightbox-logs-{context}-{region}")))
            .build();
        Ok(Aws {
            sfn: sfn::Client::from_conf(sfn_conf),
            logs: cwl::Client::from_conf(logs_conf),
            credentials: conf.credentials_provider(),
            throttled_at: std::cell::Cell::new(None),
            rt,
            deadline: None,
            context: context.to_string(),
            cfg: cfg.clone(),
            region,
            local,
            compensation: crate::ops::compensation::CompensationMap::default(),
            limiter: Limiter::default(),
            machines: vec![],
            machines_at: None,
            sweep: Sweep::default(),
            sweeps_done: 0,
            last_sweep: None,
            sweep_every: SWEEP_EVERY,
            log_every: LOG_POLL,
            list_budget: limit::Bucket::new(5.0, f64::from(LIST_PAGES_PER_MIN) / 60.0, now),
            history_budget: limit::Bucket::new(
                if cfg.log_group.is_some() { 20.0 } else { 10.0 },
                if cfg.log_group.is_some() { 4.0 } else { f64::from(HISTORY_POLLS_PER_MIN) / 60.0 },
                now,
            ),
            rows: BTreeMap::new(),
            known: HashMap::new(),
            poll_at: 0,
            tracker: Tracker::default(),
            defs: HashMap::new(),
            opened: HashMap::new(),
            use_counter: 0,
            feed: VecDeque::new(),
            seq: 0,
            exec_log: cfg.log_group.as_deref().map(LogCursor::new),
            event_logs: cfg.event_log_groups.iter().map(|g| LogCursor::new(g)).collect(),
            event_every: EVENT_LOG_POLL,
            bus_seen: HashSet::new(),
            bus_order: VecDeque::new(),
            bus_skipped: BTreeMap::new(),
            phi: crate::phi::Masker::from_config(None, &[], None, &[]).unwrap_or_default(),
            live: None,
            live_note: None,
            live_retry_at: None,
            condition: None,
            last_ok: None,
            audit_stream: None,
            audit_shipped: 0,
            answered: VecDeque::new(),
        })
    }

    /// The compensation config in effect (`[compensation]`).
    pub fn with_compensation(mut self, map: crate::ops::compensation::CompensationMap) -> Aws {
        self.compensation = map;
        self
    }

    /// How often a new sweep of the list may start and the log is read (tests shorten them;
    /// the `ListExecutions` page budget stays).
    pub fn with_pacing(mut self, sweep_every: Duration, log_every: Duration) -> Aws {
        self.sweep_every = sweep_every;
        self.log_every = log_every;
        self.event_every = log_every;
        self
    }

    /// The masking of patient identifiers (`[phi]`) applied to the details of EventBridge
    /// events before they reach the feed (the defaults unless set).
    pub fn with_phi(mut self, phi: crate::phi::Masker) -> Aws {
        self.phi = phi;
        self
    }

    pub fn region(&self) -> &str {
        &self.region
    }

    /// One call (a ListStateMachines page of one) to learn whether this context answers, for
    /// `:ctx NAME`, which keeps the live context when it does not: no network, no or expired
    /// credentials, denied access. Throttling counts as an answer.
    pub fn probe(&mut self) -> std::result::Result<(), String> {
        let r = self.admit("ListStateMachines", Duration::from_secs(2)).and_then(|()| {
            let r = self.wait_for(self.sfn.list_state_machines().max_results(1).send());
            r.map(|_| ()).map_err(|e| self.api_err(&e, "ListStateMachines"))
        });
        match r {
            Ok(()) | Err(Condition::Throttled | Condition::RateLimited(_)) => Ok(()),
            Err(Condition::NetworkLost) => Err(format!("region {}: no answer (network lost, or nothing listens there)", self.region)),
            Err(c) => Err(c.text(None)),
        }
    }

    /// The condition the console shows, if anything is wrong (or a mode worth knowing).
    pub fn status(&self) -> Option<String> {
        let at = self.last_ok.map(|t| t.with_timezone(&chrono::Local).format("%H:%M").to_string());
        match &self.condition {
            Some(c) => Some(c.text(at.as_deref())),
            None if self.cfg.log_group.is_none() => {
                Some(format!("no log group: polling histories ({HISTORY_POLLS_PER_MIN}/min), reviews and events may lag"))
            }
            // Live tail is the quiet mode; the cursor says why it reads instead.
            None if self.live.is_none() => {
                let every = match self.log_every.as_millis() {
                    ms if ms < 1000 => format!("{ms} ms"),
                    ms => format!("{} s", ms / 1000),
                };
                self.live_note.as_ref().map(|n| format!("{n} — reading the log every {every}"))
            }
            None => None,
        }
    }

    /// What a failed call means for the status. A call that timed out soon after throttling was
    /// held back by the adaptive client-side wait: throttled, not a lost network.
    fn api_err<E, R>(&self, e: &SdkError<E, R>, api: &str) -> Condition
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug,
    {
        let c = classify_error(e, &self.region, api);
        if c == Condition::Throttled {
            self.throttled_at.set(Some(Instant::now()));
        } else if matches!(e, SdkError::TimeoutError(_)) && self.throttled_at.get().is_some_and(|t| t.elapsed() < THROTTLE_MEMORY) {
            return Condition::Throttled;
        }
        c
    }

    fn fail(&mut self, c: Condition) -> BackendError {
        let text = c.text(None);
        tracing::warn!(context = %self.context, condition = c.kind(), "AWS call failed");
        self.condition = Some(c);
        BackendError::Refused(text)
    }

    fn ok(&mut self) {
        self.condition = None;
        self.last_ok = Some(Utc::now());
    }

    /// A one-shot caller (the CLI) that waits at most until `deadline` for what it needs:
    /// every call made before it is cleared is cut off then (as a timeout), and no wait for
    /// the limiter lasts past it. The console sets none.
    pub fn set_deadline(&mut self, deadline: Option<Instant>) {
        self.deadline = deadline;
    }

    /// Run one SDK call to its end, or until the deadline (a timeout error then).
    fn wait_for<T, E, R>(
        &self,
        call: impl std::future::Future<Output = std::result::Result<T, SdkError<E, R>>>,
    ) -> std::result::Result<T, SdkError<E, R>> {
        match self.deadline {
            None => self.rt.block_on(call),
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                self.rt.block_on(async move {
                    tokio::time::timeout(left, call).await.unwrap_or_else(|_| Err(SdkError::timeout_error("the caller's wait ended")))
                })
            }
        }
    }

    /// The client-side limiter: wait up to `patience` for a token, else report the hold-back.
    fn admit(&mut self, api: &'static str, patience: Duration) -> std::result::Result<(), Condition> {
        let mut until = Instant::now() + patience;
        if let Some(d) = self.deadline {
            until = until.min(d);
        }
        loop {
            match self.limiter.admit(api, Instant::now()) {
                Ok(()) => return Ok(()),
                Err(wait) => {
                    let wait = Duration::from_secs_f64(wait.clamp(0.01, 5.0));
                    if Instant::now() + wait > until {
                        return Err(Condition::RateLimited(api.to_string()));
                    }
                    std::thread::sleep(wait);
                }
            }
        }
    }

    /// The watched state machines: ARNs as given, name prefixes (or all) resolved by
    /// `ListStateMachines` every five minutes.
    fn resolve_machines(&mut self) -> std::result::Result<(), Condition> {
        if self.machines_at.is_some_and(|t| t.elapsed() < Duration::from_secs(300)) {
            return Ok(());
        }
        let mut out: Vec<String> = self.cfg.state_machines.iter().filter(|m| m.starts_with("arn:")).cloned().collect();
        let prefixes: Vec<String> = self.cfg.state_machines.iter().filter(|m| !m.starts_with("arn:")).cloned().collect();
        if prefixes.is_empty() && !out.is_empty() {
            self.machines = out;
            self.machines_at = Some(Instant::now());
            return Ok(());
        }
        let mut token = None;
        for _ in 0..20 {
            self.admit("ListStateMachines", Duration::from_secs(2))?;
            let r = self.wait_for(self.sfn.list_state_machines().max_results(1000).set_next_token(token.take()).send());
            let page = r.map_err(|e| self.api_err(&e, "ListStateMachines"))?;
            for m in page.state_machines() {
                if prefixes.is_empty() || prefixes.iter().any(|p| m.name().starts_with(p.as_str())) {
                    out.push(m.state_machine_arn().to_string());
                }
            }
            token = page.next_token().map(str::to_string);
            if token.is_none() {
                break;
            }
        }
        out.sort();
        out.dedup();
        self.machines = out;
        self.machines_at = Some(Instant::now());
        Ok(())
    }

    /// One step of the sweep: pages as the budget allows (the first sweep runs whole).
    fn sweep_step(&mut self) -> std::result::Result<(), Condition> {
        let units = self.machines.len() * STATUSES.len();
        if units == 0 {
            // No machine to watch (the names match none yet): the sweep of nothing is whole,
            // so a one-shot caller waiting for the first sweep answers "none" at once.
            if self.machines_at.is_some() {
                self.sweeps_done = self.sweeps_done.max(1);
            }
            return Ok(());
        }
        if self.sweep.started.is_none() {
            if self.last_sweep.is_some_and(|t| t.elapsed() < self.sweep_every) {
                return Ok(());
            }
            self.sweep.started = Some(Instant::now());
        }
        for _ in 0..200 {
            let first = self.sweeps_done == 0;
            if !first && !self.list_budget.take(Instant::now()) {
                return Ok(());
            }
            let machine = self.machines[self.sweep.unit / STATUSES.len()].clone();
            let status = STATUSES[self.sweep.unit % STATUSES.len()].clone();
            let running = status == sfn::types::ExecutionStatus::Running;
            self.admit("ListExecutions", Duration::from_secs(if first { 5 } else { 1 }))?;
            let next_token = self.sweep.next_token.take();
            let r = self.wait_for(
                self.sfn
                    .list_executions()
                    .state_machine_arn(&machine)
                    .status_filter(status)
                    .max_results(if running { 1000 } else { RECENT_TERMINAL })
                    .set_next_token(next_token)
                    .send(),
            );
            let page = r.map_err(|e| self.api_err(&e, "ListExecutions"))?;
            for x in page.executions() {
                let arn = x.execution_arn().to_string();
                let mut row =
                    self.rows.get(&arn).cloned().unwrap_or_else(|| events::summary_for(&arn, String::new(), to_chrono(x.start_date())));
                row.state_machine_arn = x.state_machine_arn().to_string();
                row.name = x.name().to_string();
                row.status = status_of(x.status());
                row.start = to_chrono(x.start_date());
                row.stop = x.stop_date().map(to_chrono);
                row.redrive_count = x.redrive_count().unwrap_or(0).max(0) as u32;
                row.redrive = x.redrive_date().map(to_chrono);
                self.sweep.seen.insert(arn, row);
            }
            self.sweep.next_token = if running { page.next_token().map(str::to_string) } else { None };
            if self.sweep.next_token.is_none() {
                self.sweep.unit += 1;
            }
            if self.sweep.unit >= units {
                // The sweep is whole: what it saw replaces the list, except what the log
                // changed since it began.
                let started = self.sweep.started.unwrap_or_else(Instant::now);
                let seen = std::mem::take(&mut self.sweep.seen);
                let began = Utc::now() - chrono::Duration::from_std(started.elapsed()).unwrap_or_default() - chrono::Duration::seconds(5);
                let hour_ago = Utc::now() - chrono::Duration::hours(1);
                // Kept beside the sweep: executions the log or a history started since it
                // began, and those that ended within the hour (SUCCEEDED is not listed).
                let mut fresh_from_log: Vec<ExecutionSummary> = self
                    .rows
                    .values()
                    .filter(|r| !seen.contains_key(&r.arn))
                    .filter(|r| r.start > began || r.stop.is_some_and(|s| s > hour_ago))
                    .cloned()
                    .collect();
                fresh_from_log.sort_by_key(|r| std::cmp::Reverse(r.stop));
                fresh_from_log.truncate(5000);
                let mut rows = seen;
                for (arn, r) in rows.iter_mut() {
                    // The input and current state come from history or the log, not the list.
                    if let Some(old) = self.rows.get(arn) {
                        if r.input.is_empty() {
                            r.input = old.input.clone();
                        }
                        r.current_state = old.current_state.clone();
                        r.state_since = old.state_since;
                        if r.status.is_terminal() {
                            r.output = old.output.clone();
                            r.error = old.error.clone().or(r.error.take());
                            r.cause = old.cause.clone().or(r.cause.take());
                        }
                    }
                }
                for r in fresh_from_log {
                    rows.insert(r.arn.clone(), r);
                }
                self.rows = rows;
                self.known.retain(|a, _| self.rows.contains_key(a));
                self.sweep = Sweep::default();
                self.sweeps_done = self.sweeps_done.saturating_add(1);
                self.last_sweep = Some(Instant::now());
                return Ok(());
            }
        }
        Ok(())
    }

    /// A definition by state machine ARN (`DescribeStateMachineForExecution`, cached).
    fn definition_for(&mut self, arn: &str) -> Option<(String, Option<Arc<Definition>>)> {
        let machine = self.rows.get(arn).map(|r| r.state_machine_arn.clone()).unwrap_or_else(|| events::machine_of_execution(arn));
        if let Some(d) = self.defs.get(&machine) {
            return Some(d.clone());
        }
        self.admit("DescribeStateMachineForExecution", Duration::from_secs(2)).ok()?;
        let r = self.wait_for(self.sfn.describe_state_machine_for_execution().execution_arn(arn).send());
        match r {
            Ok(o) => {
                let text = o.definition().to_string();
                let parsed = Definition::parse_str(&text).ok().map(Arc::new);
                if self.defs.len() > 512 {
                    self.defs.clear();
                }
                self.defs.insert(o.state_machine_arn().to_string(), (text.clone(), parsed.clone()));
                Some((text, parsed))
            }
            Err(e) => {
                let c = self.api_err(&e, "DescribeStateMachineForExecution");
                self.condition = Some(c);
                None
            }
        }
    }

    /// Where each state of an execution's definition puts `$$.Task.Token`.
    fn token_paths(&mut self, arn: &str) -> HashMap<String, Vec<String>> {
        let Some((text, _)) = self.definition_for(arn) else { return HashMap::new() };
        let Ok(v) = serde_json::from_str::<Value>(&text) else { return HashMap::new() };
        let mut out = HashMap::new();
        fn walk(states: &Value, out: &mut HashMap<String, Vec<String>>, depth: usize) {
            let Some(m) = states.as_object() else { return };
            if depth > 16 {
                return;
            }
            for (name, st) in m {
                if let Some(p) = events::token_path(st) {
                    out.insert(name.clone(), p);
                }
                for b in st.get("Branches").and_then(Value::as_array).into_iter().flatten() {
                    walk(b.get("States").unwrap_or(&Value::Null), out, depth + 1);
                }
                for k in ["Iterator", "ItemProcessor"] {
                    if let Some(s) = st.get(k).and_then(|i| i.get("States")) {
                        walk(s, out, depth + 1);
                    }
                }
            }
        }
        walk(v.get("States").unwrap_or(&Value::Null), &mut out, 0);
        out
    }

    /// Apply events of one execution (oldest first) to the summaries, the callbacks and the feed.
    fn absorb(&mut self, arn: &str, evs: &[HistoryEvent], to_feed: bool) {
        let needs_paths = evs.iter().any(|e| {
            e.event_type == "TaskScheduled"
                && e.details.get("resource").and_then(Value::as_str).is_some_and(|r| r.ends_with(".waitForTaskToken"))
        });
        let paths = if needs_paths { self.token_paths(arn) } else { HashMap::new() };
        let mut state: Option<String> = self.rows.get(arn).and_then(|r| r.current_state.clone());
        for e in evs {
            let (new, change) = self.tracker.apply(arn, e, &|s| paths.get(s).cloned());
            if !new {
                continue;
            }
            if let Change::State { name, .. } = &change {
                state = Some(name.clone());
            }
            change_summary(&mut self.rows, arn, change);
            let k = self.known.entry(arn.to_string()).or_insert(0);
            *k = (*k).max(e.id);
            let kind = &e.event_type;
            if to_feed && (kind.starts_with("Execution") || (kind.starts_with("Task") && !kind.contains("State"))) {
                self.push_feed(arn.to_string(), e.clone(), state.clone(), None);
            }
        }
    }

    /// New history events of an execution: newest first until one already known, so a
    /// re-read costs one page. At most `max_pages` pages.
    fn fetch_new_events(&mut self, arn: &str, after: i64, max_pages: usize) -> std::result::Result<Vec<HistoryEvent>, Condition> {
        let mut out = vec![];
        let mut token = None;
        for _ in 0..max_pages {
            self.admit("GetExecutionHistory", Duration::from_secs(2))?;
            let r = self.wait_for(
                self.sfn
                    .get_execution_history()
                    .execution_arn(arn)
                    .reverse_order(true)
                    .include_execution_data(true)
                    .max_results(if after > 0 { 100 } else { 1000 })
                    .set_next_token(token.take())
                    .send(),
            );
            let page = r.map_err(|e| self.api_err(&e, "GetExecutionHistory"))?;
            // Newest first, down to one already known (emulators may ignore the order asked for).
            let mut reached = false;
            for e in page.events() {
                if e.id() <= after {
                    reached = true;
                } else {
                    out.push(history_event(e));
                }
            }
            token = page.next_token().map(str::to_string);
            if reached || token.is_none() {
                break;
            }
        }
        out.sort_by_key(|e| e.id);
        out.dedup_by_key(|e| e.id);
        Ok(out)
    }

    /// Learn the input and open callbacks of executions not yet read (once each), and without
    /// a log group, poll running executions' histories round-robin; both within a budget.
    fn backfill(&mut self) -> std::result::Result<(), Condition> {
        let polling = self.cfg.log_group.is_none();
        let mut todo: Vec<(String, i64)> =
            self.rows.values().filter(|r| !self.known.contains_key(&r.arn)).map(|r| (r.arn.clone(), 0)).collect();
        // Running ones first, the newest first.
        todo.sort_by_key(|(a, _)| self.rows.get(a).map(|r| (r.status.is_terminal(), std::cmp::Reverse(r.start))));
        if polling && todo.is_empty() {
            let running: Vec<String> = self.rows.values().filter(|r| !r.status.is_terminal()).map(|r| r.arn.clone()).collect();
            if !running.is_empty() {
                let n = running.len();
                for i in 0..n.min(4) {
                    let a = &running[(self.poll_at + i) % n];
                    todo.push((a.clone(), self.known.get(a).copied().unwrap_or(0)));
                }
            }
        }
        // A tick stays short: the jobs thread also serves the operator.
        for (arn, after) in todo.into_iter().take(BACKFILL_PER_TICK) {
            if !self.history_budget.take(Instant::now()) {
                return Ok(());
            }
            self.poll_at = self.poll_at.wrapping_add(1);
            let evs = self.fetch_new_events(&arn, after, 25)?;
            self.absorb(&arn, &evs, after > 0);
            self.known.entry(arn).or_insert(0);
        }
        Ok(())
    }

    /// One event into the Events feed (at most [`FEED_MAX`] kept, the oldest go first).
    fn push_feed(&mut self, execution_arn: String, event: HistoryEvent, state: Option<String>, envelope: Option<Value>) {
        self.seq += 1;
        self.feed.push_back(FeedEvent { seq: self.seq, execution_arn, event, state, envelope });
        while self.feed.len() > FEED_MAX {
            self.feed.pop_front();
        }
    }

    /// The records of a log group not read before, from its cursor (`FilterLogEvents`, at most
    /// [`LOG_PAGES`] pages): `(timestamp, message)`. The cursor moves only when the read
    /// succeeds whole, so a failed read loses nothing; records read again (the lookback for
    /// late arrivals) are known by their log event id and not returned twice.
    fn read_log(&mut self, cur: &mut LogCursor) -> std::result::Result<Vec<(i64, String)>, Condition> {
        let now_ms = Utc::now().timestamp_millis();
        let cursor = cur.cursor_ms.unwrap_or(now_ms - LOG_FIRST_LOOKBACK_MS);
        let start = cursor - LOG_LOOKBACK_MS;
        let mut token = None;
        let mut newest = cursor;
        let mut fresh: HashMap<String, i64> = HashMap::new();
        let mut out = vec![];
        for _ in 0..LOG_PAGES {
            self.admit("FilterLogEvents", Duration::from_secs(1))?;
            let r = self
                .wait_for(self.logs.filter_log_events().log_group_name(&cur.group).start_time(start).set_next_token(token.take()).send());
            let page = r.map_err(|e| self.api_err(&e, "FilterLogEvents"))?;
            for le in page.events() {
                let ts = le.timestamp().unwrap_or(0);
                let message = le.message().unwrap_or_default();
                let key = record_key(ts, le.log_stream_name().unwrap_or_default(), message);
                if cur.seen.contains_key(&key) || fresh.contains_key(&key) {
                    continue;
                }
                fresh.insert(key, ts);
                newest = newest.max(ts);
                out.push((ts, message.to_string()));
            }
            token = page.next_token().map(str::to_string);
            if token.is_none() {
                break;
            }
        }
        cur.cursor_ms = Some(newest.max(cursor));
        cur.seen.extend(fresh);
        let floor = newest - 2 * LOG_LOOKBACK_MS;
        cur.seen.retain(|_, ts| *ts >= floor);
        Ok(out)
    }

    /// Read the execution log from the cursor (`FilterLogEvents`), a few pages at most.
    fn poll_logs(&mut self) -> std::result::Result<(), Condition> {
        let Some(mut cur) = self.exec_log.take() else { return Ok(()) };
        let every = self.log_every;
        let (records, failed) = self.fresh_records(&mut cur, every);
        self.exec_log = Some(cur);
        let mut by_exec: BTreeMap<String, Vec<HistoryEvent>> = BTreeMap::new();
        for (_, text) in records {
            if let Some((arn, e)) = events::from_log_record(&text) {
                by_exec.entry(arn).or_default().push(e);
            }
        }
        for (arn, mut evs) in by_exec {
            evs.sort_by_key(|e| e.id);
            if !self.rows.contains_key(&arn) && !evs.iter().any(|e| e.event_type == "ExecutionStarted") {
                // Seen first mid-way: its history fills in what came before (within budget).
                self.rows.insert(arn.clone(), events::summary_for(&arn, String::new(), evs[0].timestamp));
            }
            self.absorb(&arn, &evs, true);
        }
        failed.map_or(Ok(()), Err)
    }

    /// Read the event log groups (`event_log_groups`) from their cursors: each record that is
    /// an EventBridge event goes into the feed once (by its event id), its detail masked;
    /// anything else is skipped and counted.
    fn poll_event_logs(&mut self) -> std::result::Result<(), Condition> {
        let mut failure = None;
        for i in 0..self.event_logs.len() {
            let mut cur = std::mem::take(&mut self.event_logs[i]);
            let every = self.event_every;
            let (records, failed) = self.fresh_records(&mut cur, every);
            let group = cur.group.clone();
            self.event_logs[i] = cur;
            if let Some(c) = failed {
                failure = failure.or(Some(match c {
                    Condition::Other(m) => Condition::Other(format!("event log group {group}: {m}")),
                    c => c,
                }));
            }
            let mut skipped = 0u64;
            for (_, text) in records {
                let ev = match events::bus_event(&text) {
                    Ok(ev) => ev,
                    Err(why) => {
                        skipped += 1;
                        *self.bus_skipped.entry(why.as_str()).or_default() += 1;
                        continue;
                    }
                };
                if !self.bus_seen.insert(ev.id.clone()) {
                    continue;
                }
                self.bus_order.push_back(ev.id.clone());
                while self.bus_order.len() > BUS_SEEN_MAX {
                    if let Some(old) = self.bus_order.pop_front() {
                        self.bus_seen.remove(&old);
                    }
                }
                let (listed, event, state, envelope) = events::bus_feed_parts(&ev, &self.phi);
                self.push_feed(listed, event, state, Some(envelope));
            }
            if skipped > 0 {
                tracing::warn!(context = %self.context, group = %group, skipped, "log records that are no EventBridge event were skipped");
            }
        }
        failure.map_or(Ok(()), Err)
    }

    /// The records of a log group to take now: those live tail delivered (known ones dropped,
    /// the cursor moved past them), then, unless live tail serves the group, the cursor's read
    /// when it is due (every `every`; at once after a session started, to catch up on what was
    /// ingested before it). A failed read keeps what live tail delivered and says why.
    fn fresh_records(&mut self, cur: &mut LogCursor, every: Duration) -> (Vec<(i64, String)>, Option<Condition>) {
        let mut out = vec![];
        let pending = std::mem::take(&mut cur.pending);
        if !pending.is_empty() {
            let mut newest = cur.cursor_ms.unwrap_or(i64::MIN);
            for (ts, stream, message) in pending {
                let key = record_key(ts, &stream, &message);
                if cur.seen.insert(key, ts).is_none() {
                    newest = newest.max(ts);
                    out.push((ts, message));
                }
            }
            cur.cursor_ms = Some(newest);
            let floor = newest - 2 * LOG_LOOKBACK_MS;
            cur.seen.retain(|_, ts| *ts >= floor);
        }
        let live = self.live.is_some();
        if live && cur.caught_up {
            return (out, None);
        }
        if !live && cur.last_poll.is_some_and(|t| t.elapsed() < every) {
            return (out, None);
        }
        cur.last_poll = Some(Instant::now());
        match self.read_log(cur) {
            Ok(read) => {
                out.extend(read);
                cur.caught_up = live;
                (out, None)
            }
            Err(c) => (out, Some(c)),
        }
    }

    /// Live tail: drain the running session into the groups' pending records, or, when it has
    /// ended, go back to the cursors (which resume from the last timestamp seen); start a
    /// session when one is due. Never fails the tick: without live tail the cursors read, and
    /// the status says why.
    fn live_step(&mut self) -> std::result::Result<(), Condition> {
        if let Some(session) = &self.live {
            let (records, mut ended) = session.drain();
            let started = session.started;
            let mut held: usize =
                self.exec_log.iter().chain(self.event_logs.iter()).flat_map(|c| c.pending.iter()).map(|(_, _, m)| m.len()).sum();
            for r in records {
                let cur = match self.exec_log.as_mut().filter(|c| c.group == r.group) {
                    Some(c) => Some(c),
                    None => self.event_logs.iter_mut().find(|c| c.group == r.group),
                };
                if let Some(cur) = cur {
                    // Ticks that fail before a group's turn leave its records waiting; past the
                    // bound the session ends, and the cursor (not moved past them) reads them.
                    if cur.pending.len() >= live::BUFFER_MAX || held + r.message.len() > live::BUFFER_MAX_BYTES {
                        ended = Some(live::End::Backlog);
                        continue;
                    }
                    held += r.message.len();
                    cur.pending.push((r.timestamp, r.stream, r.message));
                }
            }
            if let Some(end) = ended {
                tracing::info!(context = %self.context, why = %end.text(), lasted_s = started.elapsed().as_secs(), "live tail ended; reading the logs by cursor");
                self.live = None;
                self.live_note = Some(end.text());
                self.live_retry_at = Some(Instant::now() + end.restart_after());
                for cur in self.exec_log.iter_mut().chain(self.event_logs.iter_mut()) {
                    cur.caught_up = false;
                    cur.last_poll = None;
                }
            }
            return Ok(());
        }
        if self.exec_log.is_none() && self.event_logs.is_empty() {
            return Ok(());
        }
        if self.live_retry_at.is_some_and(|t| Instant::now() < t) {
            return Ok(());
        }
        match self.start_live() {
            Ok(session) => {
                tracing::info!(context = %self.context, "live tail started");
                self.live = Some(session);
                self.live_note = None;
                for cur in self.exec_log.iter_mut().chain(self.event_logs.iter_mut()) {
                    cur.caught_up = false;
                }
            }
            Err((why, retry)) => {
                tracing::info!(context = %self.context, why = %why, "live tail unavailable; reading the logs by cursor");
                self.live_note = Some(format!("live tail unavailable: {why}"));
                self.live_retry_at = Some(Instant::now() + retry);
            }
        }
        Ok(())
    }

    /// Start one live tail session for every log group of the context (their ARNs from
    /// `DescribeLogGroups`). The error says why not, for the status.
    fn start_live(&mut self) -> std::result::Result<live::Session, (String, Duration)> {
        let mut names: Vec<String> = self.exec_log.iter().chain(self.event_logs.iter()).map(|c| c.group.clone()).collect();
        names.dedup();
        if names.len() > live::MAX_GROUPS {
            return Err((format!("more than {} log groups", live::MAX_GROUPS), Duration::from_secs(3600)));
        }
        let held = |c: Condition| (c.text(None), Duration::from_secs(60));
        let mut arns = vec![];
        for name in &names {
            self.admit("DescribeLogGroups", Duration::from_secs(1)).map_err(held)?;
            let r = self.wait_for(self.logs.describe_log_groups().log_group_name_prefix(name).limit(50).send());
            let out = r.map_err(|e| live_unavailable(&e))?;
            let arn = out
                .log_groups()
                .iter()
                .find(|g| g.log_group_name() == Some(name.as_str()))
                .and_then(|g| g.log_group_arn().map(str::to_string).or_else(|| g.arn().map(|a| live::group_name(a).to_string())))
                .ok_or_else(|| (format!("log group {name} not found"), Duration::from_secs(600)))?;
            arns.push(arn);
        }
        self.admit("StartLiveTail", Duration::from_secs(1)).map_err(held)?;
        let r = self.wait_for(self.logs.start_live_tail().set_log_group_identifiers(Some(arns)).send());
        let out = r.map_err(|e| live_unavailable(&e))?;
        Ok(live::Session::spawn(&self.rt, out.response_stream))
    }

    /// Ship audit rows written since the last shipment to `audit_log_group` (one stream per
    /// console session); a failure leaves them for the next tick.
    fn ship_audit(&mut self) -> std::result::Result<(), Condition> {
        let (Some(group), Some(conn)) = (self.cfg.audit_log_group.clone(), self.local.as_ref()) else { return Ok(()) };
        let rows = crate::audit::list(conn, &crate::audit::AuditFilter { limit: 500, ..Default::default() }).unwrap_or_default();
        let mut fresh: Vec<&crate::audit::AuditRecord> = rows.iter().filter(|r| r.seq > self.audit_shipped).collect();
        if fresh.is_empty() {
            return Ok(());
        }
        fresh.sort_by_key(|r| r.seq);
        let stream = match &self.audit_stream {
            Some(s) => s.clone(),
            None => {
                let s = format!("lightbox-{}-{}", self.context, uuid::Uuid::new_v4());
                self.admit("CreateLogStream", Duration::from_secs(1))?;
                let r = self.wait_for(self.logs.create_log_stream().log_group_name(&group).log_stream_name(&s).send());
                r.map_err(|e| self.api_err(&e, "CreateLogStream"))?;
                self.audit_stream = Some(s.clone());
                s
            }
        };
        let mut batch = vec![];
        let mut last = self.audit_shipped;
        for r in fresh {
            let msg = serde_json::json!({
                "seq": r.seq, "time": r.time.to_rfc3339(), "actor": r.actor, "source": r.source, "action": r.action,
                "executionArn": r.execution_arn, "taskToken": r.task_token, "reason": r.reason, "result": r.result,
                "error": r.error, "intentSeq": r.intent_seq, "hash": r.hash, "prevHash": r.prev_hash,
            })
            .to_string();
            if let Ok(ev) = cwl::types::InputLogEvent::builder().timestamp(r.time.timestamp_millis()).message(msg).build() {
                batch.push(ev);
                last = r.seq;
            }
        }
        self.admit("PutLogEvents", Duration::from_secs(1))?;
        let r =
            self.wait_for(self.logs.put_log_events().log_group_name(&group).log_stream_name(&stream).set_log_events(Some(batch)).send());
        r.map_err(|e| self.api_err(&e, "PutLogEvents"))?;
        self.audit_shipped = last;
        Ok(())
    }

    /// A claim in the local store.
    fn claim_of(&self, token: &str) -> Option<String> {
        self.local.as_ref()?.query_row("SELECT claimed_by FROM claims WHERE token = ?1", [token], |r| r.get(0)).ok()
    }

    fn with_claim(&self, mut t: PendingTask) -> PendingTask {
        t.claimed_by = self.claim_of(&t.token);
        t
    }

    /// The task a token names (known callbacks), checked against its claim.
    fn check_answer(&self, token: &str, acting: &Acting) -> Result<()> {
        let t = self
            .tracker
            .pending
            .get(token)
            .cloned()
            .map(|t| self.with_claim(t))
            .unwrap_or_else(|| PendingTask { claimed_by: self.claim_of(token), ..PendingTask::unknown(token, Utc::now()) });
        acting.check_claim(&t)?;
        Ok(())
    }

    /// An action's call: its error says what AWS said.
    fn act<T, E>(&mut self, api: &'static str, r: std::result::Result<T, SdkError<E, sfn::config::http::HttpResponse>>) -> Result<T>
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        match r {
            Ok(v) => Ok(v),
            Err(e) => {
                let code = e.code().map(str::to_string);
                let msg = e.message().map(str::to_string);
                let c = self.api_err(&e, api);
                match (&c, code) {
                    (Condition::Other(_), Some(code)) => {
                        // What the endpoint said, as much of it as an error line holds.
                        let msg: String = msg.as_deref().unwrap_or_default().lines().next().unwrap_or_default().chars().take(300).collect();
                        Err(BackendError::Refused(format!("{}: {msg}", code.chars().take(100).collect::<String>())))
                    }
                    _ => Err(self.fail(c)),
                }
            }
        }
    }

    /// An answer's call ([`Aws::act`]) whose error text, or the condition it leaves, never
    /// holds the task token whole (an endpoint may quote the token it refuses): its first 8
    /// characters stand for it, as everywhere else.
    fn act_on_token<T, E>(
        &mut self,
        api: &'static str,
        token: &str,
        r: std::result::Result<T, SdkError<E, sfn::config::http::HttpResponse>>,
    ) -> Result<T>
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        let hide = |text: &str| hide_token(text, token);
        let r = self.act(api, r);
        if let Some(Condition::Other(text) | Condition::NoCredentials(text)) = &mut self.condition {
            *text = hide(text);
        }
        r.map_err(|e| match e {
            BackendError::Refused(text) => BackendError::Refused(hide(&text)),
            other => other,
        })
    }

    /// `DescribeExecution` (the caller has admitted it): the execution's row, refreshed in the
    /// cache; `None` if it does not exist.
    fn describe(&mut self, arn: &str) -> std::result::Result<Option<ExecutionSummary>, Condition> {
        let r = self.wait_for(self.sfn.describe_execution().execution_arn(arn).send());
        match r {
            Ok(o) => {
                let cached = self.rows.get(arn).cloned();
                let mut row = cached.unwrap_or_else(|| events::summary_for(arn, String::new(), to_chrono(o.start_date())));
                row.state_machine_arn = o.state_machine_arn().to_string();
                if let Some(n) = o.name() {
                    row.name = n.to_string();
                }
                row.status = status_of(o.status());
                row.start = to_chrono(o.start_date());
                row.stop = o.stop_date().map(to_chrono);
                row.input = o.input().unwrap_or("{}").to_string();
                row.output = o.output().map(str::to_string);
                row.error = o.error().map(str::to_string);
                row.cause = o.cause().map(str::to_string);
                row.redrive_count = o.redrive_count().unwrap_or(0).max(0) as u32;
                row.redrive = o.redrive_date().map(to_chrono);
                self.rows.insert(arn.to_string(), row.clone());
                Ok(Some(row))
            }
            Err(e) if e.code() == Some("ExecutionDoesNotExist") => Ok(None),
            Err(e) => Err(self.api_err(&e, "DescribeExecution")),
        }
    }

    fn forget_token(&mut self, token: &str) {
        if let Some(t) = self.tracker.close(token) {
            if self.answered.len() >= ANSWERED_MAX {
                self.answered.pop_front();
            }
            self.answered.push_back((token.to_string(), t.execution_arn));
        }
        if let Some(c) = self.local.as_ref() {
            let _ = c.execute("DELETE FROM claims WHERE token = ?1", [token]);
        }
    }
}

impl Aws {
    /// Call `Lightbox.<op>` on the context's `outbox_endpoint`, signed with its credentials.
    fn outbox_call(&mut self, op: &str, body: &Value) -> Result<Value> {
        let Some(url) = self.cfg.outbox_endpoint.clone() else {
            return Err(BackendError::Refused(format!(
                "context {}: no outbox_endpoint, so no outbox relay to show (set it to a server answering Lightbox.ListOutbox, such as lightbox serve)",
                self.context
            )));
        };
        let endpoint = outbox::OutboxEndpoint::new(&url).map_err(|e| AwsError::Api(e.to_string()))?;
        let provider = self.credentials.clone();
        let region = self.region.clone();
        let answer = self.rt.block_on(async {
            use aws_credential_types::provider::ProvideCredentials as _;
            let identity = match provider {
                Some(p) => Some(
                    p.provide_credentials()
                        .await
                        .map_err(|e| format!("no credentials to sign the outbox call with: {}", DisplayErrorContext(&e)))?
                        .into(),
                ),
                None => None,
            };
            endpoint.call(identity, &region, op, body).await.map_err(|e| e.to_string())
        });
        answer.map_err(|e| BackendError::Aws(AwsError::Api(e)))
    }
}

impl ControlPlane for Aws {
    fn name(&self) -> String {
        "aws".into()
    }

    fn location(&self) -> String {
        match &self.cfg.endpoint_url {
            Some(u) => format!("{} via {u}", self.region),
            None => self.region.clone(),
        }
    }

    fn pulse(&mut self) -> Result<Pulse> {
        let mut p = Pulse::default();
        for r in self.rows.values() {
            p.add_status(r.status, 1);
        }
        p.pending_reviews = self.tracker.pending.len() as u64;
        p.condition = self.status();
        Ok(p)
    }

    fn executions(&mut self, filter: &ExecutionFilter) -> Result<Vec<ExecutionSummary>> {
        let mut out: Vec<ExecutionSummary> = self
            .rows
            .values()
            .filter(|r| filter.status.is_none_or(|s| r.status == s))
            .filter(|r| filter.state_machine_arn.as_ref().is_none_or(|m| &r.state_machine_arn == m))
            .filter(|r| !filter.redriven || r.redrive_count > 0)
            .cloned()
            .collect();
        out.sort_by(|a, b| b.start.cmp(&a.start).then(a.arn.cmp(&b.arn)));
        if let Some((ms, arn)) = &filter.after {
            out.retain(|r| (r.start.timestamp_millis(), &r.arn) < (*ms, arn) || (r.start.timestamp_millis() < *ms));
        }
        out.truncate(if filter.limit == 0 { usize::MAX } else { filter.limit });
        Ok(out)
    }

    fn execution(&mut self, arn: &str) -> Result<Option<ExecutionSummary>> {
        // An EventBridge event in the feed is listed under `SOURCE:RESOURCE`: no execution.
        if !arn.starts_with("arn:") {
            return Ok(None);
        }
        let cached = self.rows.get(arn).cloned();
        // Terminal rows whose outcome is known, and running ones with their input, need no call.
        if let Some(r) = &cached
            && !r.input.is_empty()
            && (!r.status.is_terminal() || r.output.is_some() || r.error.is_some())
        {
            return Ok(cached);
        }
        if let Err(c) = self.admit("DescribeExecution", Duration::from_secs(1)) {
            self.condition = Some(c);
            return Ok(cached);
        }
        match self.describe(arn) {
            Ok(row) => Ok(row),
            Err(c) => match cached {
                Some(r) => {
                    self.condition = Some(c);
                    Ok(Some(r))
                }
                None => Err(self.fail(c)),
            },
        }
    }

    /// After an action the cached status may be stale (an answered callback lets the
    /// execution run on): read it afresh with one `DescribeExecution` (through the limiter,
    /// so counted in the budget) and say when; if that fails, the last known status and why.
    fn status_now(&mut self, arn: &str) -> Result<Option<StatusNow>> {
        let fresh = self.admit("DescribeExecution", Duration::from_secs(2)).and_then(|()| self.describe(arn));
        match fresh {
            Ok(row) => Ok(row.map(|r| StatusNow { status: r.status, as_of: Some(Utc::now()), last_known: None })),
            Err(c) => {
                let why = c.text(None);
                self.condition = Some(c);
                Ok(self.rows.get(arn).map(|r| StatusNow { status: r.status, as_of: None, last_known: Some(why) }))
            }
        }
    }

    fn definition_of(&mut self, arn: &str) -> Result<Option<String>> {
        Ok(self.definition_for(arn).map(|(t, _)| t))
    }

    fn definitions_of(&mut self, arns: &[String]) -> Result<HashMap<String, Arc<Definition>>> {
        let mut out = HashMap::new();
        for a in arns {
            if let Some((_, Some(d))) = self.definition_for(a) {
                out.insert(a.clone(), d);
            }
        }
        Ok(out)
    }

    fn history(&mut self, arn: &str, after_id: i64, limit: usize) -> Result<Vec<HistoryEvent>> {
        if !arn.starts_with("arn:") {
            return Ok(vec![]);
        }
        self.use_counter += 1;
        let known_last = self.opened.get(arn).and_then(|o| o.events.last()).map(|e| e.id).unwrap_or(0);
        let done = self.rows.get(arn).is_some_and(|r| r.status.is_terminal()) && known_last > 0;
        if !done {
            match self.fetch_new_events(arn, known_last, 25) {
                Ok(evs) => {
                    if self.opened.len() >= OPENED_MAX && !self.opened.contains_key(arn) {
                        let oldest = self.opened.iter().min_by_key(|(_, o)| o.used).map(|(k, _)| k.clone());
                        if let Some(k) = oldest {
                            self.opened.remove(&k);
                        }
                    }
                    let o = self.opened.entry(arn.to_string()).or_default();
                    o.events.extend(evs.iter().cloned());
                    self.absorb(arn, &evs, false);
                }
                Err(c) => {
                    if !self.opened.contains_key(arn) {
                        return Err(self.fail(c));
                    }
                    self.condition = Some(c);
                }
            }
        }
        let counter = self.use_counter;
        let Some(o) = self.opened.get_mut(arn) else { return Ok(vec![]) };
        o.used = counter;
        Ok(o.events.iter().filter(|e| e.id > after_id).take(limit).cloned().collect())
    }

    fn pending_tasks(&mut self, limit: usize) -> Result<Vec<PendingTask>> {
        let mut out: Vec<PendingTask> = self.tracker.pending.values().cloned().collect();
        out.sort_by_key(|t| t.issued);
        out.truncate(limit);
        Ok(out.into_iter().map(|t| self.with_claim(t)).collect())
    }

    fn tasks_of(&mut self, arn: &str) -> Result<Vec<PendingTask>> {
        let mut out: Vec<PendingTask> = self.tracker.pending.values().filter(|t| t.execution_arn == arn).cloned().collect();
        out.sort_by_key(|t| t.issued);
        Ok(out)
    }

    fn task_execution(&mut self, token: &str) -> Result<Option<String>> {
        Ok(match self.tracker.pending.get(token) {
            Some(t) => Some(t.execution_arn.clone()),
            None => self.answered.iter().rev().find(|(t, _)| t == token).map(|(_, a)| a.clone()),
        })
    }

    fn find(&mut self, needle: &str) -> Result<Vec<Found>> {
        let needle = needle.trim().to_lowercase();
        if needle.is_empty() {
            return Ok(vec![]);
        }
        let mut hits: Vec<(bool, DateTime<Utc>, Found)> = vec![];
        for r in self.rows.values() {
            let input: Value = serde_json::from_str(&r.input).unwrap_or(Value::Null);
            let field = |k: &str| match input.get(k) {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Number(n)) => n.to_string(),
                _ => String::new(),
            };
            let acc = field("accession");
            let ord = [field("orderId"), field("orderNumber")].into_iter().find(|s| !s.is_empty()).unwrap_or_default();
            let fields = [acc.to_lowercase(), ord.to_lowercase(), r.name.to_lowercase(), r.arn.to_lowercase()];
            if !fields.iter().any(|f| f.contains(&needle)) {
                continue;
            }
            let exact = fields.contains(&needle);
            let machine = crate::ops::project::machine_of(&r.arn).to_string();
            let label = [acc, ord, format!("{machine}/{}", r.name), r.status.to_string()]
                .into_iter()
                .filter(|x| !x.is_empty())
                .collect::<Vec<_>>()
                .join(" · ");
            hits.push((exact, r.start, Found { arn: r.arn.clone(), label }));
        }
        hits.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.cmp(&a.1)));
        Ok(hits.into_iter().take(FIND_LIMIT).map(|h| h.2).collect())
    }

    fn audit_log(&mut self, limit: usize) -> Result<Vec<crate::audit::AuditRecord>> {
        let Some(conn) = self.local.as_ref() else { return Ok(vec![]) };
        let filter = crate::audit::AuditFilter { hide_closed_intents: true, limit, ..Default::default() };
        Ok(crate::audit::list(conn, &filter)?)
    }

    fn events_after(&mut self, after: Option<i64>, limit: usize) -> Result<Vec<FeedEvent>> {
        Ok(match after {
            Some(a) => self.feed.iter().filter(|e| e.seq > a).take(limit).cloned().collect(),
            None => {
                let skip = self.feed.len().saturating_sub(limit);
                self.feed.iter().skip(skip).cloned().collect()
            }
        })
    }

    fn approve(&mut self, token: &str, output: &str, acting: &Acting) -> Result<()> {
        self.check_answer(token, acting)?;
        serde_json::from_str::<Value>(output)
            .map_err(|e| BackendError::Refused(format!("InvalidOutput: output is not valid JSON: {e}")))?;
        self.admit("SendTaskSuccess", Duration::from_secs(5)).map_err(|c| self.fail(c))?;
        let r = self.wait_for(self.sfn.send_task_success().task_token(token).output(output).send());
        self.act_on_token("SendTaskSuccess", token, r)?;
        self.forget_token(token);
        Ok(())
    }

    fn reject(&mut self, token: &str, error: &str, cause: &str, acting: &Acting) -> Result<()> {
        self.check_answer(token, acting)?;
        self.admit("SendTaskFailure", Duration::from_secs(5)).map_err(|c| self.fail(c))?;
        let r = self.wait_for(self.sfn.send_task_failure().task_token(token).error(error).cause(cause).send());
        self.act_on_token("SendTaskFailure", token, r)?;
        self.forget_token(token);
        Ok(())
    }

    fn claim(&mut self, token: &str, by: &str) -> Result<()> {
        let Some(conn) = self.local.as_ref() else {
            return Err(BackendError::Refused("claims need the local store, which is not open".into()));
        };
        conn.execute(
            "INSERT OR IGNORE INTO claims (token, claimed_by, claimed_ms) VALUES (?1, ?2, ?3)",
            rusqlite::params![token, by, Utc::now().timestamp_millis()],
        )
        .map_err(AwsError::from)?;
        match self.claim_of(token) {
            Some(h) if h != by => Err(BackendError::Refused(format!("TaskClaimed: the task is claimed by {h}"))),
            _ => {
                // A claim keeps a heartbeat-timed task alive, as on the embedded engine.
                if self.tracker.pending.get(token).is_some_and(|t| t.heartbeat.is_some()) {
                    self.heartbeat(token)?;
                }
                Ok(())
            }
        }
    }

    fn unclaim(&mut self, token: &str, by: &str) -> Result<()> {
        match self.claim_of(token) {
            Some(h) if h != by => Err(BackendError::Refused(format!("TaskClaimed: the task is claimed by {h}"))),
            _ => {
                if let Some(c) = self.local.as_ref() {
                    c.execute("DELETE FROM claims WHERE token = ?1", [token]).map_err(AwsError::from)?;
                }
                Ok(())
            }
        }
    }

    fn escalate(&mut self, token: &str, cause: &str, acting: &Acting) -> Result<()> {
        self.reject(token, crate::engine::ESCALATED, cause, acting)
    }

    fn heartbeat(&mut self, token: &str) -> Result<()> {
        self.admit("SendTaskHeartbeat", Duration::from_secs(5)).map_err(|c| self.fail(c))?;
        let r = self.wait_for(self.sfn.send_task_heartbeat().task_token(token).send());
        self.act_on_token("SendTaskHeartbeat", token, r)?;
        Ok(())
    }

    fn redrive(&mut self, arn: &str) -> Result<()> {
        self.admit("RedriveExecution", Duration::from_secs(5)).map_err(|c| self.fail(c))?;
        let r = self.wait_for(self.sfn.redrive_execution().execution_arn(arn).send());
        self.act("RedriveExecution", r)?;
        if let Some(row) = self.rows.get_mut(arn) {
            row.status = ExecutionStatus::Running;
            row.stop = None;
        }
        Ok(())
    }

    fn stop(&mut self, arn: &str, error: &str, cause: &str) -> Result<()> {
        self.admit("StopExecution", Duration::from_secs(5)).map_err(|c| self.fail(c))?;
        let r = self.wait_for(self.sfn.stop_execution().execution_arn(arn).error(error).cause(cause).send());
        let o = self.act("StopExecution", r)?;
        if let Some(row) = self.rows.get_mut(arn) {
            row.status = ExecutionStatus::Aborted;
            row.stop = Some(to_chrono(o.stop_date()));
            row.error = Some(error.to_string());
            row.cause = Some(cause.to_string());
        }
        self.tracker.pending.retain(|_, t| t.execution_arn != arn);
        Ok(())
    }

    fn compensation_plan(&mut self, arn: &str) -> Result<crate::ops::compensation::Outcome> {
        self.compensation_run(arn, "", true)
    }

    fn compensate(&mut self, arn: &str, reason: &str) -> Result<String> {
        Ok(self.compensation_run(arn, reason, false)?.message())
    }

    fn outbox(&mut self, rows_per_sink: usize) -> Result<super::OutboxSnapshot> {
        let rows = rows_per_sink.clamp(1, outbox::MAX_ROWS_ASKED);
        let v = self.outbox_call("ListOutbox", &serde_json::json!({"rowsPerSink": rows}))?;
        outbox::snapshot(&v).map_err(|e| BackendError::Aws(AwsError::Api(format!("outbox endpoint: {e}"))))
    }

    fn outbox_act(&mut self, action: &crate::outbox::Action) -> Result<String> {
        let v = self.outbox_call("OutboxAction", &action.to_json())?;
        Ok(v.get("result").and_then(Value::as_str).unwrap_or("done").chars().take(300).collect())
    }

    fn tick(&mut self) -> Result<usize> {
        type TickStep = fn(&mut Aws) -> std::result::Result<(), Condition>;
        // The event log groups come last: a group that cannot be read holds up nothing else.
        let steps: [TickStep; 7] =
            [Aws::resolve_machines, Aws::live_step, Aws::poll_logs, Aws::sweep_step, Aws::backfill, Aws::ship_audit, Aws::poll_event_logs];
        // The first failure ends the tick: more calls would only add to throttling, or wait
        // on a network that is gone.
        let mut failed = None;
        for step in steps {
            if let Err(c) = step(self) {
                failed = Some(c);
                break;
            }
        }
        match failed {
            Some(c) => {
                tracing::warn!(context = %self.context, condition = c.kind(), "AWS refresh incomplete");
                self.condition = Some(c);
            }
            None => self.ok(),
        }
        Ok(0)
    }
}

impl Aws {
    /// Compensation on AWS: the plan from the execution's history (`ops::compensation::plan`),
    /// started once as `StartExecution` of the configured machine under the derived name
    /// (`ExecutionAlreadyExists` means it was started before).
    fn compensation_run(&mut self, arn: &str, reason: &str, dry_run: bool) -> Result<crate::ops::compensation::Outcome> {
        use crate::ops::compensation as comp;
        let row = self.execution(arn)?.ok_or_else(|| BackendError::Refused(format!("ExecutionDoesNotExist: {arn}")))?;
        let mut history = vec![];
        let mut after = 0;
        loop {
            let page = self.history(arn, after, 1000)?;
            let Some(last) = page.last() else { break };
            after = last.id;
            history.extend(page);
            if history.len() >= 25_000 {
                break;
            }
        }
        let plan = comp::plan(&self.compensation, &row, &history)?;
        let target = comp::compensation_arn(arn, &plan.compensation_machine, &plan.compensation_name);
        let existing = self.execution(&target).ok().flatten();
        if dry_run || existing.is_some() || plan.steps.is_empty() {
            return Ok(comp::Outcome { plan, started: None, existing });
        }
        // The compensation machine: in the failed execution's account and region.
        let machine = row
            .state_machine_arn
            .rsplit_once(':')
            .map(|(base, _)| format!("{base}:{}", plan.compensation_machine))
            .unwrap_or_else(|| plan.compensation_machine.clone());
        let input = comp::payload(&plan, reason).to_string();
        self.admit("StartExecution", Duration::from_secs(5)).map_err(|c| self.fail(c))?;
        let r = self.wait_for(self.sfn.start_execution().state_machine_arn(&machine).name(&plan.compensation_name).input(input).send());
        match r {
            Ok(o) => {
                let started = events::summary_for(o.execution_arn(), String::new(), to_chrono(o.start_date()));
                self.rows.insert(started.arn.clone(), started.clone());
                Ok(comp::Outcome { plan, started: Some(started), existing: None })
            }
            // Another console started it just now: that one is the compensation.
            Err(e) if e.code() == Some("ExecutionAlreadyExists") => {
                let existing = self.execution(&target).ok().flatten();
                Ok(comp::Outcome { plan, started: None, existing })
            }
            Err(e) => {
                let c = self.api_err(&e, "StartExecution");
                Err(self.fail(c))
            }
        }
    }
}

/// `text` with every run of `token`'s characters (16 or more of them from its start, so a
/// quote of it cut short counts too) shown as its first 8 characters and `…`.
fn hide_token(text: &str, token: &str) -> String {
    let head: String = token.chars().take(16).collect();
    if head.chars().count() < 8 {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find(&head) {
        out.push_str(&rest[..i]);
        let run: usize = rest[i..].chars().zip(token.chars()).take_while(|(a, b)| a == b).map(|(a, _)| a.len_utf8()).sum();
        out.push_str(&crate::engine::short_token(token));
        rest = &rest[i + run..];
    }
    out.push_str(rest);
    out
}

/// How far a freshly connected backend has read ([`Aws::readiness`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readiness {
    /// The first sweep of the watched machines' executions is whole.
    pub listed: bool,
    /// The execution log was read once (`None`: the context has no log group).
    pub log_read: Option<bool>,
    /// Listed executions whose history has not been read yet (their input, open callbacks).
    pub unread: usize,
    /// What went wrong on the last call, if anything.
    pub condition: Option<String>,
}

/// For tests and `bench --aws-calls`: what the backend knows, without calls.
impl Aws {
    /// For one-shot callers (the CLI), which tick until what they need has been read once.
    pub fn readiness(&self) -> Readiness {
        Readiness {
            listed: self.sweeps_done > 0,
            log_read: self.exec_log.as_ref().map(|c| c.cursor_ms.is_some()),
            unread: self.rows.keys().filter(|a| !self.known.contains_key(*a)).count(),
            condition: self.condition.as_ref().map(|c| c.text(None)),
        }
    }

    pub fn known_executions(&self) -> usize {
        self.rows.len()
    }
    pub fn calls(&self) -> BTreeMap<String, u64> {
        self.limiter.calls.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }
    /// Records of the event log groups skipped as no EventBridge event, by reason.
    pub fn skipped_bus_events(&self) -> BTreeMap<&'static str, u64> {
        self.bus_skipped.clone()
    }
    /// Mark every listed execution as read, so a measurement sees the steady state only.
    pub fn assume_backfilled(&mut self) {
        for a in self.rows.keys() {
            self.known.entry(a.clone()).or_insert(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_sfn::error::ErrorMetadata;
    use aws_sdk_sfn::operation::list_executions::ListExecutionsError;

    #[test]
    fn a_throttled_call_ends_well_within_the_operation_timeout() {
        let r = retry_config();
        assert_eq!(r.mode(), aws_config::retry::RetryMode::Adaptive);
        assert_eq!(r.max_attempts(), RETRY_ATTEMPTS);
        // A send waits at most 2 s for the adaptive limiter (its lowest rate, 0.5/s, one
        // token); each retry at most the backoff cap and, under Retry Behavior 2.1, that wait again.
        let worst = Duration::from_secs(2) + (r.max_backoff() + Duration::from_secs(2)) * (RETRY_ATTEMPTS - 1);
        assert!(worst + Duration::from_secs(5) < OPERATION_TIMEOUT, "{worst:?}");
    }

    #[test]
    fn a_timeout_soon_after_throttling_is_throttling() {
        let cfg = AwsContext { region: Some("us-east-1".into()), endpoint_url: Some("http://127.0.0.1:9".into()), ..Default::default() };
        let aws = Aws::connect_with("unit", &cfg, None, Some(("AKID", "secret"))).expect("connect (no call is made)");
        let timeout = || SdkError::<ListExecutionsError, ()>::timeout_error("operation timed out");
        assert_eq!(aws.api_err(&timeout(), "ListExecutions"), Condition::NetworkLost, "no throttling seen: the network");
        let throttled = SdkError::<ListExecutionsError, ()>::service_error(
            ListExecutionsError::generic(ErrorMetadata::builder().code("ThrottlingException").message("Rate exceeded").build()),
            (),
        );
        assert_eq!(aws.api_err(&throttled, "ListExecutions"), Condition::Throttled);
        assert_eq!(aws.api_err(&timeout(), "ListExecutions"), Condition::Throttled, "held back by the adaptive wait");
    }
}
