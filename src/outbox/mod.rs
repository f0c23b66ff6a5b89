//! The outbox relay: delivers every outbox row (one workflow event) to each configured sink,
//! at least once, in order per stream (an execution's rows wait while an earlier row of the
//! same execution is undelivered to that sink), with exponential backoff and full jitter, a
//! circuit breaker per sink, and poison rows parked after `max_attempts` — never dropped.
//!
//! Delivery state lives in the store beside the rows (`outbox_sinks`, `outbox_delivery`), so a
//! relay killed between publishing and marking publishes the row again, with the same event id
//! (the sink dedupes by it: the webhook's `Idempotency-Key`, the NDJSON line's `id`).
//!
//! A parked row no longer holds back the rows after it in its stream; requeueing it delivers
//! it after them.

pub mod sink;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};
use serde_json::{Value, json};

pub use sink::{Publisher, SinkError};

#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error("database error: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("{0}")]
    Store(#[from] crate::store::StoreError),
    #[error("config [[outbox.sinks]] {sink}: {key}: {problem}")]
    Config { sink: String, key: &'static str, problem: String },
    #[error("no sink named {0:?} in config [[outbox.sinks]]")]
    UnknownSink(String),
    #[error("outbox row {0} does not exist")]
    UnknownRow(i64),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Sink(#[from] SinkError),
    #[error("{0}")]
    Audit(#[from] crate::audit::AuditError),
}

pub type Result<T> = std::result::Result<T, OutboxError>;

/// The relay's status and actions served to other hosts (`lightbox serve`, read by an AWS
/// context's `outbox_endpoint`): `X-Amz-Target: Lightbox.ListOutbox` / `Lightbox.OutboxAction`.
pub const TARGET_PREFIX: &str = "Lightbox.";
/// Rows per sink one `ListOutbox` lists, at most.
pub const MAX_LISTED_ROWS: usize = 500;

/// `[outbox]` in config.
#[derive(Debug, Default, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboxConfig {
    #[serde(default)]
    pub sinks: Vec<SinkConfig>,
}

/// One `[[outbox.sinks]]` entry as written in config.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkConfig {
    pub name: String,
    /// "webhook" or "ndjson".
    pub kind: String,
    pub url: Option<String>,
    pub path: Option<PathBuf>,
    /// Park a row after this many failed attempts (default 10).
    pub max_attempts: Option<u32>,
    /// Open the breaker after this many failures (default 5) …
    pub breaker_failures: Option<u32>,
    /// … within this window (default "1m") …
    pub breaker_window: Option<String>,
    /// … and keep it open this long before one trial row (default "2s"); each time the trial
    /// fails too it stays open twice as long (less up to a quarter, jitter) …
    pub breaker_open_for: Option<String>,
    /// … up to this (default "5m", or `breaker_open_for` when that is longer). A delivery
    /// that succeeds starts the schedule again.
    pub breaker_max_open_for: Option<String>,
    /// Per-request timeout of a webhook (default "10s").
    pub timeout: Option<String>,
    /// Backoff: the first retry waits up to this long (default "1s") …
    pub base_delay: Option<String>,
    /// … doubling up to this cap (default "5m").
    pub max_delay: Option<String>,
    /// What is delivered: "eventbridge" (default; every event, as its EventBridge envelope),
    /// or "pagerduty" / "slack" (only the escalation notices a ladder's `notify` addresses to
    /// this sink, each as its PagerDuty Events v2 or Slack webhook body).
    pub format: Option<String>,
    /// An EventBridge event pattern (JSON text): only matching events go to this sink. Rows it
    /// does not match are marked as not for this sink, never held back or counted as backlog.
    pub pattern: Option<String>,
    /// PagerDuty integration (routing) key put into each notice's `routing_key` as it is sent.
    /// A secret: never stored with the event, shown, or logged.
    pub routing_key: Option<Secret>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SinkKind {
    Webhook { url: String },
    Ndjson { path: PathBuf },
}

/// What a sink receives, and in which shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkFormat {
    /// Every event (or those its pattern matches), as the EventBridge envelope.
    EventBridge,
    /// Only escalation notices addressed to it, as PagerDuty Events v2 bodies.
    PagerDuty,
    /// Only escalation notices addressed to it, as Slack webhook messages.
    Slack,
}

impl SinkFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            SinkFormat::EventBridge => "eventbridge",
            SinkFormat::PagerDuty => "pagerduty",
            SinkFormat::Slack => "slack",
        }
    }
    /// The notice format a ladder step sends to a sink of this format (None: any).
    pub fn notice_format(self) -> Option<&'static str> {
        match self {
            SinkFormat::EventBridge => None,
            SinkFormat::PagerDuty => Some("pagerduty"),
            SinkFormat::Slack => Some("slack"),
        }
    }
}

/// A secret from config (a PagerDuty routing key): compared, used, never printed (its
/// `Debug` is `***`, in the config as read and in the sink).
#[derive(Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// A validated sink.
#[derive(Debug, Clone, PartialEq)]
pub struct Sink {
    pub name: String,
    pub kind: SinkKind,
    pub max_attempts: u32,
    pub breaker_failures: u32,
    pub breaker_window: Duration,
    /// The first open period; it doubles while trials keep failing …
    pub breaker_open_for: Duration,
    /// … up to this.
    pub breaker_max_open_for: Duration,
    pub timeout: Duration,
    pub base_delay: Duration,
    pub max_delay: Duration,
    pub format: SinkFormat,
    pub pattern: Option<crate::events::pattern::Pattern>,
    pub routing_key: Option<Secret>,
}

/// What a sink gets for one outbox row.
#[derive(Debug, PartialEq)]
pub enum Routed<'a> {
    /// Publish this body.
    Send(std::borrow::Cow<'a, str>),
    /// Not for this sink: marked so, never published.
    Skip,
}

impl Sink {
    /// What this sink gets for the stored event `payload`: the envelope (every event, or those
    /// its pattern matches), or for a PagerDuty/Slack sink the body of a notice addressed to
    /// it (`detail` without Lightbox's own `lightbox` key, the routing key filled in).
    pub fn route<'a>(&self, payload: &'a str) -> Routed<'a> {
        if self.format == SinkFormat::EventBridge && self.pattern.is_none() {
            return Routed::Send(payload.into());
        }
        let Ok(v) = serde_json::from_str::<Value>(payload) else {
            // An unreadable row still reaches a sink that takes everything (above); a filtered
            // sink cannot tell it matches.
            return Routed::Skip;
        };
        if self.format == SinkFormat::EventBridge {
            return match &self.pattern {
                Some(p) if !p.matches(&v) => Routed::Skip,
                _ => Routed::Send(payload.into()),
            };
        }
        let notice = v.get("source").and_then(Value::as_str) == Some("lightbox")
            && v.get("detail-type").and_then(Value::as_str) == Some(crate::events::REVIEW_ESCALATION_NOTICE);
        let addressed = v.pointer("/detail/lightbox/sink").and_then(Value::as_str) == Some(self.name.as_str());
        let format = v.pointer("/detail/lightbox/format").and_then(Value::as_str);
        if !notice || !addressed || format.is_some_and(|f| Some(f) != self.format.notice_format()) {
            return Routed::Skip;
        }
        let Some(mut body) = v.get("detail").cloned() else { return Routed::Skip };
        if self.pattern.as_ref().is_some_and(|p| !p.matches(&v)) {
            return Routed::Skip;
        }
        if let Some(o) = body.as_object_mut() {
            o.remove("lightbox");
            if let (SinkFormat::PagerDuty, Some(Secret(key))) = (self.format, &self.routing_key) {
                o.insert("routing_key".into(), Value::String(key.clone()));
            }
        }
        Routed::Send(body.to_string().into())
    }

    pub fn kind_name(&self) -> &'static str {
        match self.kind {
            SinkKind::Webhook { .. } => "webhook",
            SinkKind::Ndjson { .. } => "ndjson",
        }
    }
    /// Where events go: the URL (credentials and query hidden, see [`shown_url`]) or the file.
    pub fn target(&self) -> String {
        match &self.kind {
            SinkKind::Webhook { url } => shown_url(url),
            SinkKind::Ndjson { path } => path.display().to_string(),
        }
    }
}

/// A webhook URL as Lightbox shows it anywhere (lists, JSON, errors, audit): the user and
/// password (`https://user:secret@host`), the query (`?token=…`) and long path segments (a
/// Slack webhook's `/services/T…/B…/<secret>`) may be credentials, so they are replaced by
/// `***`; scheme, host, port, short path segments and a short fragment stay. Works on text
/// that is not a valid URL too, so an error about a bad URL never prints its secret either:
/// there, everything up to the last `@` is taken for credentials (a password holding `/`,
/// `?` or `#` makes the text no URL, and would otherwise be shown as a host and path). A
/// backslash separates path segments as a slash does (URL parsing reads it so for http).
pub fn shown_url(url: &str) -> String {
    let (scheme, rest) = match url.find("://") {
        Some(i) => url.split_at(i + 3),
        None => ("", url),
    };
    let (hidden_user, rest) = match rest.rfind('@') {
        Some(i) if reqwest::Url::parse(url).is_err() => (true, &rest[i + 1..]),
        _ => (false, rest),
    };
    let end = rest.find(['/', '\\', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let authority = match authority.rfind('@') {
        Some(i) => format!("***@{}", &authority[i + 1..]),
        None if hidden_user => format!("***@{authority}"),
        None => authority.to_string(),
    };
    let (path, rest) = tail.split_at(tail.find(['?', '#']).unwrap_or(tail.len()));
    // A long path segment is a key more often than a name (Slack's `/services/T…/B…/<secret>`,
    // Discord's and Teams' webhook tokens): 16 characters or more are hidden too.
    let long = |seg: &str| seg.chars().count() >= 16;
    let path: String = path
        .split_inclusive(['/', '\\'])
        .map(|seg| {
            let (name, sep) = seg.split_at(seg.trim_end_matches(['/', '\\']).len());
            if long(name) { format!("***{sep}") } else { seg.to_string() }
        })
        .collect();
    let (query, fragment) = match rest.find('#') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let query = if query.is_empty() { "" } else { "?***" };
    let fragment = if long(fragment.trim_start_matches('#')) { "#***" } else { fragment };
    format!("{scheme}{authority}{path}{query}{fragment}")
}

/// Check a webhook URL: http(s), with a host, no whitespace or control characters (which
/// URL parsing would otherwise drop or encode silently).
fn check_url(url: &str) -> std::result::Result<(), String> {
    let shown = shown_url(url);
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("{shown:?} holds whitespace or control characters"));
    }
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("{shown:?} is not a URL ({e})"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!("{shown:?} is not an http:// or https:// URL"));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(format!("{shown:?} names no host"));
    }
    Ok(())
}

/// A duration such as "500ms", "10s", "1m", "15m", "2h", "1d".
pub fn parse_duration(s: &str) -> Option<Duration> {
    crate::duration::parse_ms(s).and_then(|ms| u64::try_from(ms).ok()).map(Duration::from_millis)
}

impl OutboxConfig {
    /// Check every sink; relative NDJSON paths are taken relative to `data_dir`.
    pub fn sinks(&self, data_dir: &Path) -> Result<Vec<Sink>> {
        let mut seen = HashSet::new();
        self.sinks.iter().map(|s| s.validate(data_dir, &mut seen)).collect()
    }
}

impl SinkConfig {
    fn validate(&self, data_dir: &Path, seen: &mut HashSet<String>) -> Result<Sink> {
        let bad = |key: &'static str, problem: String| OutboxError::Config { sink: format!("{:?}", self.name), key, problem };
        if self.name.is_empty()
            || self.name.len() > 64
            || !self.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        {
            return Err(bad("name", "must be 1–64 letters, digits, '-', '_' or '.'".into()));
        }
        if !seen.insert(self.name.clone()) {
            return Err(bad("name", "names another sink already".into()));
        }
        let kind = match self.kind.as_str() {
            "webhook" => {
                let url = self.url.clone().ok_or_else(|| bad("url", "a webhook sink needs url".into()))?;
                check_url(&url).map_err(|problem| bad("url", problem))?;
                if self.path.is_some() {
                    return Err(bad("path", "is for ndjson sinks; a webhook sink has url".into()));
                }
                SinkKind::Webhook { url }
            }
            "ndjson" => {
                let p = self.path.clone().ok_or_else(|| bad("path", "an ndjson sink needs path".into()))?;
                if self.url.is_some() {
                    return Err(bad("url", "is for webhook sinks; an ndjson sink has path".into()));
                }
                let path = if p.is_relative() { data_dir.join(&p) } else { p.clone() };
                // A file the relay can append to: not empty, not a directory (it would fail
                // every row, quietly, until parked). A relative path is looked at only once
                // the data directory is known (an empty `data_dir` checks the shape alone).
                let looked_at = p.is_absolute() || !data_dir.as_os_str().is_empty();
                if p.as_os_str().is_empty() || p.to_string_lossy().ends_with('/') || (looked_at && path.is_dir()) {
                    return Err(bad("path", format!("{} is a directory, not a file to append events to", path.display())));
                }
                SinkKind::Ndjson { path }
            }
            other => return Err(bad("kind", format!("{other:?} is not \"webhook\" or \"ndjson\""))),
        };
        let dur = |key: &'static str, v: &Option<String>, default: &str| -> Result<Duration> {
            let text = v.as_deref().unwrap_or(default);
            match parse_duration(text) {
                Some(d) if !d.is_zero() => Ok(d),
                _ => Err(bad(
                    key,
                    format!("{text:?} is not a duration such as \"500ms\", \"10s\", \"1m\" or \"15m\" ({})", crate::duration::RANGE),
                )),
            }
        };
        let count = |key: &'static str, v: Option<u32>, default: u32| -> Result<u32> {
            match v.unwrap_or(default) {
                0 => Err(bad(key, "must be at least 1".into())),
                n => Ok(n),
            }
        };
        let format = match self.format.as_deref() {
            None | Some("eventbridge") => SinkFormat::EventBridge,
            Some("pagerduty") => SinkFormat::PagerDuty,
            Some("slack") => SinkFormat::Slack,
            Some(other) => {
                return Err(bad("format", format!("{other:?} is not \"eventbridge\", \"pagerduty\" or \"slack\"")));
            }
        };
        let pattern = match &self.pattern {
            None => None,
            Some(text) => Some(crate::events::pattern::Pattern::parse(text).map_err(|e| bad("pattern", e.to_string()))?),
        };
        let routing_key = match &self.routing_key {
            None => None,
            Some(_) if format != SinkFormat::PagerDuty => {
                return Err(bad("routing_key", "is for format = \"pagerduty\" sinks".into()));
            }
            // A file would keep the key beside every notice.
            Some(_) if !matches!(kind, SinkKind::Webhook { .. }) => {
                return Err(bad("routing_key", "is for webhook sinks (an ndjson file would keep the key)".into()));
            }
            Some(Secret(k)) if k.trim().is_empty() || k.len() > 256 || k.chars().any(|c| c.is_whitespace() || c.is_control()) => {
                return Err(bad("routing_key", "must be 1–256 characters with no spaces or control characters".into()));
            }
            Some(k) => Some(k.clone()),
        };
        let base_delay = dur("base_delay", &self.base_delay, "1s")?;
        let max_delay = dur("max_delay", &self.max_delay, "5m")?;
        if max_delay < base_delay {
            return Err(bad("max_delay", "must not be shorter than base_delay".into()));
        }
        let breaker_open_for = dur("breaker_open_for", &self.breaker_open_for, "2s")?;
        let breaker_max_open_for = match &self.breaker_max_open_for {
            Some(_) => dur("breaker_max_open_for", &self.breaker_max_open_for, "5m")?,
            None => dur("breaker_max_open_for", &None, "5m")?.max(breaker_open_for),
        };
        if breaker_max_open_for < breaker_open_for {
            return Err(bad("breaker_max_open_for", "must not be shorter than breaker_open_for".into()));
        }
        Ok(Sink {
            name: self.name.clone(),
            kind,
            max_attempts: count("max_attempts", self.max_attempts, 10)?,
            breaker_failures: count("breaker_failures", self.breaker_failures, 5)?,
            breaker_window: dur("breaker_window", &self.breaker_window, "1m")?,
            breaker_open_for,
            breaker_max_open_for,
            timeout: dur("timeout", &self.timeout, "10s")?,
            base_delay,
            max_delay,
            format,
            pattern,
            routing_key,
        })
    }
}

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS outbox_sinks (
    name          TEXT PRIMARY KEY,
    paused        INTEGER NOT NULL DEFAULT 0,
    paused_reason TEXT,
    breaker       TEXT NOT NULL DEFAULT 'closed',
    opened_ms     INTEGER,
    open_until_ms INTEGER,
    trips         INTEGER NOT NULL DEFAULT 0,
    fail_times    TEXT NOT NULL DEFAULT '[]',
    floor         INTEGER NOT NULL DEFAULT 0,
    delivered     INTEGER NOT NULL DEFAULT 0,
    failed        INTEGER NOT NULL DEFAULT 0,
    last_error    TEXT
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS outbox_delivery (
    sink          TEXT NOT NULL,
    row_id        INTEGER NOT NULL,
    attempts      INTEGER NOT NULL DEFAULT 0,
    next_ms       INTEGER NOT NULL DEFAULT 0,
    parked        INTEGER NOT NULL DEFAULT 0,
    park_reason   TEXT,
    delivered_ms  INTEGER,
    last_error    TEXT,
    skipped       INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (sink, row_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS outbox_delivery_parked ON outbox_delivery (sink, parked);
"#;

/// Create the relay's tables (idempotent) and a state row for every configured sink.
pub fn ensure(conn: &Connection, sinks: &[Sink]) -> Result<()> {
    conn.execute_batch(SCHEMA)?;
    // `skipped` (a row not for this sink) came later: stores from before get the column.
    let has_skipped: i64 =
        conn.query_row("SELECT COUNT(*) FROM pragma_table_info('outbox_delivery') WHERE name = 'skipped'", [], |r| r.get(0))?;
    if has_skipped == 0 {
        conn.execute_batch("ALTER TABLE outbox_delivery ADD COLUMN skipped INTEGER NOT NULL DEFAULT 0")?;
    }
    // So did the growing open period (`open_until_ms`, `trips`).
    let has_trips: i64 = conn.query_row("SELECT COUNT(*) FROM pragma_table_info('outbox_sinks') WHERE name = 'trips'", [], |r| r.get(0))?;
    if has_trips == 0 {
        conn.execute_batch(
            "ALTER TABLE outbox_sinks ADD COLUMN open_until_ms INTEGER;
             ALTER TABLE outbox_sinks ADD COLUMN trips INTEGER NOT NULL DEFAULT 0;",
        )?;
    }
    for s in sinks {
        conn.execute("INSERT OR IGNORE INTO outbox_sinks (name) VALUES (?1)", [&s.name])?;
    }
    Ok(())
}

/// Breaker state of a sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Breaker {
    Closed,
    Open,
    HalfOpen,
}

impl Breaker {
    pub fn as_str(self) -> &'static str {
        match self {
            Breaker::Closed => "CLOSED",
            Breaker::Open => "OPEN",
            Breaker::HalfOpen => "HALF_OPEN",
        }
    }
    fn parse(s: &str) -> Breaker {
        match s {
            "open" => Breaker::Open,
            "half_open" => Breaker::HalfOpen,
            _ => Breaker::Closed,
        }
    }
    fn db(self) -> &'static str {
        match self {
            Breaker::Closed => "closed",
            Breaker::Open => "open",
            Breaker::HalfOpen => "half_open",
        }
    }
}

/// The breaker as stored, and what it is at `now` (an open breaker whose time is up is half-open).
#[derive(Debug, Clone, PartialEq)]
pub struct BreakerState {
    pub state: Breaker,
    pub opened_ms: Option<i64>,
    /// When an open breaker lets its trial row through (None: `opened_ms` + the first period,
    /// as a store from before the growing period has it).
    pub until_ms: Option<i64>,
    /// Openings in a row without a delivery between them: the open period grows with them.
    pub trips: u32,
    /// Failure times inside the window (closed breaker).
    pub fail_times: Vec<i64>,
}

impl BreakerState {
    pub fn closed() -> BreakerState {
        BreakerState { state: Breaker::Closed, opened_ms: None, until_ms: None, trips: 0, fail_times: vec![] }
    }
    pub fn effective(&self, sink: &Sink, now_ms: i64) -> Breaker {
        match self.trial_at(sink) {
            Some(at) if now_ms >= at => Breaker::HalfOpen,
            _ => self.state,
        }
    }
    /// When an open breaker lets one trial row through (None unless open).
    pub fn trial_at(&self, sink: &Sink) -> Option<i64> {
        match self.state {
            Breaker::Open => self.until_ms.or_else(|| self.opened_ms.map(|at| at.saturating_add(ms_of(sink.breaker_open_for)))),
            _ => None,
        }
    }
    /// Milliseconds until an open breaker lets a trial row through.
    pub fn open_left_ms(&self, sink: &Sink, now_ms: i64) -> Option<i64> {
        self.trial_at(sink).map(|at| at.saturating_sub(now_ms).max(0))
    }
    /// A delivery failed at `now` (`unit`: a random number in [0, 1) for the jitter): returns
    /// true when this opened the breaker.
    pub fn on_failure(&mut self, sink: &Sink, now_ms: i64, unit: f64) -> bool {
        match self.effective(sink, now_ms) {
            Breaker::HalfOpen => {
                self.open(sink, now_ms, unit);
                true
            }
            Breaker::Open => false,
            Breaker::Closed => {
                let since = now_ms.saturating_sub(ms_of(sink.breaker_window));
                self.fail_times.retain(|t| *t > since);
                self.fail_times.push(now_ms);
                if self.fail_times.len() >= sink.breaker_failures as usize {
                    self.open(sink, now_ms, unit);
                    true
                } else {
                    false
                }
            }
        }
    }
    fn open(&mut self, sink: &Sink, now_ms: i64, unit: f64) {
        self.trips = self.trips.saturating_add(1);
        self.state = Breaker::Open;
        self.opened_ms = Some(now_ms);
        self.until_ms = Some(now_ms.saturating_add(open_period_ms(sink, self.trips, unit)));
        self.fail_times.clear();
    }
    /// A delivery succeeded: the breaker closes, and its next opening is short again.
    pub fn on_success(&mut self) {
        *self = BreakerState::closed();
    }
}

/// How long a breaker stays open at its `trips`-th opening in a row: `breaker_open_for`,
/// doubled for each opening before, capped at `breaker_max_open_for`, less up to a quarter of
/// it (`unit` in [0, 1): jitter, so sinks that failed together are not tried together).
pub fn open_period_ms(sink: &Sink, trips: u32, unit: f64) -> i64 {
    let exp = 2f64.powi(trips.saturating_sub(1).min(40) as i32);
    let nominal = (ms_of(sink.breaker_open_for) as f64 * exp).min(ms_of(sink.breaker_max_open_for) as f64);
    (nominal * (1.0 - 0.25 * unit.clamp(0.0, 1.0))) as i64
}

fn ms_of(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Full jitter: a uniformly random wait in `[0, min(max, base · 2^(attempts-1))]`.
pub fn backoff_ms(sink: &Sink, attempts: u32, unit: f64) -> i64 {
    let exp = 2f64.powi(attempts.saturating_sub(1).min(40) as i32);
    let cap = (ms_of(sink.base_delay) as f64 * exp).min(ms_of(sink.max_delay) as f64);
    (cap * unit.clamp(0.0, 1.0)) as i64
}

fn random_unit() -> f64 {
    (uuid::Uuid::new_v4().as_u128() as u64 >> 11) as f64 / (1u64 << 53) as f64
}

/// The id an outbox row's event is delivered under: its `id`, else `<stream>#<event_id>`.
pub fn event_id(stream: &str, event_id: i64, payload: &str) -> String {
    serde_json::from_str::<Value>(payload)
        .ok()
        .and_then(|v| v.get("id").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_else(|| format!("{stream}#{event_id}"))
}

/// The event's `detail-type`, or what an older row calls itself.
fn detail_type(payload: &Value) -> String {
    payload
        .get("detail-type")
        .and_then(Value::as_str)
        .or_else(|| payload.pointer("/event/type").and_then(Value::as_str))
        .unwrap_or("")
        .to_string()
}

fn load_breaker(conn: &Connection, sink: &str) -> Result<(BreakerState, bool, i64)> {
    type Row = (String, Option<i64>, Option<i64>, i64, String, bool, i64);
    let (b, opened, until, trips, fails, paused, floor): Row = conn.query_row(
        "SELECT breaker, opened_ms, open_until_ms, trips, fail_times, paused, floor FROM outbox_sinks WHERE name = ?1",
        [sink],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?)),
    )?;
    let fail_times = serde_json::from_str(&fails).unwrap_or_default();
    let trips = u32::try_from(trips.max(0)).unwrap_or(u32::MAX);
    Ok((BreakerState { state: Breaker::parse(&b), opened_ms: opened, until_ms: until, trips, fail_times }, paused, floor))
}

fn save_breaker(conn: &Connection, sink: &str, b: &BreakerState) -> Result<()> {
    conn.execute(
        "UPDATE outbox_sinks SET breaker = ?2, opened_ms = ?3, fail_times = ?4, open_until_ms = ?5, trips = ?6 WHERE name = ?1",
        params![sink, b.state.db(), b.opened_ms, serde_json::to_string(&b.fail_times).unwrap_or_else(|_| "[]".into()), b.until_ms, b.trips],
    )?;
    Ok(())
}

/// What one pass over a sink did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct PassReport {
    pub delivered: usize,
    /// Rows not for this sink (its format or pattern).
    pub skipped: usize,
    pub failed: usize,
    pub parked: usize,
    pub breaker_opened: bool,
}

struct Candidate {
    id: i64,
    stream: String,
    event_id: i64,
    payload: String,
    attempts: u32,
    next_ms: i64,
}

/// Rows a pass looks at, at most.
const PASS_ROWS: i64 = 2000;
/// Rows sent but not yet marked, at most: once this many are published they are flushed
/// (fsync) and marked in one transaction, so a relay killed mid-pass sends at most this many
/// again (the one in flight included). A webhook marks each delivery as it completes.
pub const MARK_EVERY: usize = 8;
/// … and what is published is marked at least this often, however slowly a sink answers.
pub const MARK_WITHIN: Duration = Duration::from_millis(200);

/// One pass of the relay over one sink: deliver what is due, in order per stream.
pub fn relay_pass(conn: &Connection, sink: &Sink, publisher: &mut dyn Publisher, now_ms: impl Fn() -> i64) -> Result<PassReport> {
    let mut report = PassReport::default();
    let (mut breaker, paused, floor) = load_breaker(conn, &sink.name)?;
    let start = now_ms();
    let state = breaker.effective(sink, start);
    // Paused, or its breaker open: nothing is sent. A sink that filters (its format or
    // pattern) still marks the rows not for it, so they are never its backlog.
    let hold = paused || state == Breaker::Open;
    let filters = sink.format != SinkFormat::EventBridge || sink.pattern.is_some();
    if hold && !filters {
        return Ok(report);
    }
    let mut trial_only = state == Breaker::HalfOpen;
    let rows: Vec<Candidate> = {
        let mut st = conn.prepare_cached(
            // Parked rows are not read: they hold nothing back, and enough of them would fill
            // every pass, so the rows after them would wait for ever.
            "SELECT o.id, o.execution_arn, o.event_id, o.payload, COALESCE(d.attempts, 0), COALESCE(d.next_ms, 0)
             FROM outbox o LEFT JOIN outbox_delivery d ON d.sink = ?1 AND d.row_id = o.id
             WHERE o.id > ?2 AND d.delivered_ms IS NULL AND COALESCE(d.parked, 0) = 0 ORDER BY o.id LIMIT ?3",
        )?;
        st.query_map(params![sink.name, floor, PASS_ROWS], |r| {
            Ok(Candidate {
                id: r.get(0)?,
                stream: r.get(1)?,
                event_id: r.get(2)?,
                payload: r.get(3)?,
                attempts: r.get::<_, i64>(4)?.clamp(0, i64::from(u32::MAX)) as u32,
                next_ms: r.get(5)?,
            })
        })?
        .collect::<std::result::Result<_, _>>()?
    };
    let mut blocked: HashSet<String> = HashSet::new();
    let mut published: Vec<i64> = vec![];
    let mark_every = publisher.mark_every().clamp(1, MARK_EVERY);
    // When the oldest row in `published` was sent.
    let mut unmarked_since = std::time::Instant::now();
    let mut skipped: Vec<i64> = vec![];
    let mut stop = hold;
    // The lowest row still owed (not delivered, not parked): everything below it is done.
    let mut new_floor: Option<i64> = None;
    let mut all_seen = rows.len() < PASS_ROWS as usize;
    for c in &rows {
        // A row not for this sink is done with at once: it holds nothing back.
        let body = match sink.route(&c.payload) {
            Routed::Skip => {
                skipped.push(c.id);
                continue;
            }
            Routed::Send(body) => body,
        };
        if stop || blocked.contains(&c.stream) || c.next_ms > now_ms() {
            blocked.insert(c.stream.clone());
            new_floor.get_or_insert(c.id - 1);
            continue;
        }
        let id = event_id(&c.stream, c.event_id, &c.payload);
        match publisher.publish(&id, &body) {
            Ok(()) => {
                if published.is_empty() {
                    unmarked_since = std::time::Instant::now();
                }
                published.push(c.id)
            }
            Err(e) => {
                // What was published before this failure is flushed and marked first.
                if mark(conn, sink, publisher, &mut published, now_ms(), &mut report, &mut breaker, &mut new_floor, false)? {
                    stop = true;
                    all_seen = false;
                }
                new_floor.get_or_insert(c.id - 1);
                blocked.insert(c.stream.clone());
                let now = now_ms();
                let parked = fail(conn, sink, c.id, c.attempts + 1, &e.to_string(), now)?;
                report.failed += 1;
                if parked {
                    report.parked += 1;
                    blocked.remove(&c.stream);
                }
                breaker_failure(conn, sink, &mut breaker, now, &e, &mut report)?;
                if breaker.state == Breaker::Open {
                    stop = true;
                    all_seen = false;
                }
                continue;
            }
        }
        if trial_only {
            // Half-open: one trial row decides.
            mark(conn, sink, publisher, &mut published, now_ms(), &mut report, &mut breaker, &mut new_floor, true)?;
            trial_only = false;
            if breaker.state != Breaker::Closed {
                stop = true;
            }
        } else if published.len() >= mark_every || (!published.is_empty() && unmarked_since.elapsed() >= MARK_WITHIN) {
            // A flush that failed (a full disk) ends the pass: its rows are retried in order.
            if mark(conn, sink, publisher, &mut published, now_ms(), &mut report, &mut breaker, &mut new_floor, false)? {
                stop = true;
                all_seen = false;
            }
        }
    }
    if mark(conn, sink, publisher, &mut published, now_ms(), &mut report, &mut breaker, &mut new_floor, true)? {
        all_seen = false;
    }
    mark_skipped(conn, sink, &skipped, now_ms())?;
    report.skipped += skipped.len();
    let floor_to = match new_floor {
        Some(f) => Some(f),
        None if all_seen => rows.last().map(|c| c.id),
        None => None,
    };
    // Parked rows below the new floor keep their delivery rows, and requeue lowers the floor.
    if let Some(f) = floor_to.filter(|f| *f > floor) {
        conn.execute("UPDATE outbox_sinks SET floor = ?2 WHERE name = ?1", params![sink.name, f])?;
    }
    // Delivered rows below the floor are only kept a while, for the publish rate.
    conn.execute(
        "DELETE FROM outbox_delivery WHERE sink = ?1 AND parked = 0 AND delivered_ms IS NOT NULL AND delivered_ms < ?2 AND row_id <= (SELECT floor FROM outbox_sinks WHERE name = ?1)",
        params![sink.name, start - 600_000],
    )?;
    Ok(report)
}

/// Flush what was published and mark it delivered; a failed flush counts against each row
/// (and keeps `floor` below them). Returns true when the flush failed.
#[allow(clippy::too_many_arguments)]
fn mark(
    conn: &Connection,
    sink: &Sink,
    publisher: &mut dyn Publisher,
    published: &mut Vec<i64>,
    now: i64,
    report: &mut PassReport,
    breaker: &mut BreakerState,
    floor: &mut Option<i64>,
    last: bool,
) -> Result<bool> {
    if published.is_empty() {
        return Ok(false);
    }
    let flushed = if last { publisher.sync() } else { publisher.flush() };
    if let Err(e) = flushed {
        let failed: Vec<i64> = std::mem::take(published);
        for &id in &failed {
            let attempts: i64 = conn
                .query_row("SELECT attempts FROM outbox_delivery WHERE sink = ?1 AND row_id = ?2", params![sink.name, id], |r| r.get(0))
                .optional()?
                .unwrap_or(0);
            fail(conn, sink, id, attempts.clamp(0, i64::from(u32::MAX)) as u32 + 1, &e.to_string(), now)?;
            report.failed += 1;
        }
        // They are owed again: the floor stays below them.
        if let Some(lowest) = failed.first() {
            *floor = Some(floor.map_or(lowest - 1, |f| f.min(lowest - 1)));
        }
        breaker_failure(conn, sink, breaker, now, &e, report)?;
        return Ok(true);
    }
    let tx = conn.unchecked_transaction()?;
    {
        let mut up = tx.prepare_cached(
            "INSERT INTO outbox_delivery (sink, row_id, attempts, delivered_ms) VALUES (?1, ?2, 1, ?3)
             ON CONFLICT (sink, row_id) DO UPDATE SET attempts = attempts + 1, delivered_ms = ?3, last_error = NULL",
        )?;
        for id in published.iter() {
            up.execute(params![sink.name, id, now])?;
        }
    }
    tx.execute("UPDATE outbox_sinks SET delivered = delivered + ?2 WHERE name = ?1", params![sink.name, published.len() as i64])?;
    breaker.on_success();
    tx.execute(
        "UPDATE outbox_sinks SET breaker = 'closed', opened_ms = NULL, open_until_ms = NULL, trips = 0, fail_times = '[]' WHERE name = ?1",
        [&sink.name],
    )?;
    tx.commit()?;
    report.delivered += published.len();
    published.clear();
    Ok(false)
}

/// Count a failure against the sink's breaker and save it; opening it is a workflow event.
fn breaker_failure(
    conn: &Connection,
    sink: &Sink,
    breaker: &mut BreakerState,
    now: i64,
    e: &SinkError,
    report: &mut PassReport,
) -> Result<()> {
    if breaker.on_failure(sink, now, random_unit()) {
        report.breaker_opened = true;
        let open_for = breaker.open_left_ms(sink, now).unwrap_or(0).saturating_add(999) / 1000;
        crate::store::emit_event_with(
            conn,
            "lightbox:outbox",
            &format!("outbox:{}:breaker-opened:{now}", sink.name),
            "Outbox Sink Breaker Opened",
            crate::store::from_ms(now),
            &[],
            json!({"sink": sink.name, "openFor": open_for, "lastError": e.to_string()}),
        )?;
    }
    save_breaker(conn, &sink.name, breaker)
}

/// Record rows that are not for this sink (its format or pattern): done, never published,
/// not counted as delivered.
fn mark_skipped(conn: &Connection, sink: &Sink, rows: &[i64], now: i64) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let tx = conn.unchecked_transaction()?;
    {
        let mut up = tx.prepare_cached(
            "INSERT INTO outbox_delivery (sink, row_id, attempts, delivered_ms, skipped) VALUES (?1, ?2, 0, ?3, 1)
             ON CONFLICT (sink, row_id) DO UPDATE SET delivered_ms = ?3, skipped = 1, last_error = NULL",
        )?;
        for id in rows {
            up.execute(params![sink.name, id, now])?;
        }
    }
    tx.commit()?;
    Ok(())
}

/// Record a failed attempt: back off, or park after `max_attempts`. Returns true when parked.
fn fail(conn: &Connection, sink: &Sink, row: i64, attempts: u32, error: &str, now: i64) -> Result<bool> {
    let error: String = error.chars().take(300).collect();
    let parked = attempts >= sink.max_attempts;
    let next = now.saturating_add(backoff_ms(sink, attempts, random_unit()));
    let reason = parked.then(|| format!("parked after {attempts} failed attempts"));
    conn.execute(
        "INSERT INTO outbox_delivery (sink, row_id, attempts, next_ms, parked, park_reason, last_error) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (sink, row_id) DO UPDATE SET attempts = ?3, next_ms = ?4, parked = ?5, park_reason = ?6, last_error = ?7",
        params![sink.name, row, attempts, next, parked, reason, error],
    )?;
    conn.execute("UPDATE outbox_sinks SET failed = failed + 1, last_error = ?2 WHERE name = ?1", params![sink.name, error])?;
    Ok(parked)
}

fn now_wall() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// One pass over every sink with the wall clock.
pub fn relay_once(conn: &Connection, sinks: &[Sink], publishers: &mut [Box<dyn Publisher>]) -> Result<PassReport> {
    let mut total = PassReport::default();
    for (s, p) in sinks.iter().zip(publishers.iter_mut()) {
        let r = relay_pass(conn, s, p.as_mut(), now_wall)?;
        total.delivered += r.delivered;
        total.skipped += r.skipped;
        total.failed += r.failed;
        total.parked += r.parked;
        total.breaker_opened |= r.breaker_opened;
    }
    Ok(total)
}

/// A second connection to an open store, for a thread of its own.
pub fn open_connection(db: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(db)?;
    conn.busy_timeout(Duration::from_secs(10))?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    Ok(conn)
}

/// Run the relay on its own thread and connection until `stop` is set: a pass over every sink,
/// then a short sleep when there was nothing to do.
pub fn spawn(
    db: PathBuf,
    sinks: Vec<Sink>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new().name("outbox-relay".into()).spawn(move || {
        use std::sync::atomic::Ordering;
        // A plain connection, not `Store::open`: its file checks open and close the database
        // file, and closing any descriptor of a file drops every POSIX lock this process holds
        // on it — another process could then take the engine's WAL for unused and remove it.
        let conn = match open_connection(&db) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "outbox relay cannot open the store");
                return;
            }
        };
        if let Err(e) = ensure(&conn, &sinks) {
            tracing::error!(error = %e, "outbox relay cannot create its tables");
            return;
        }
        let mut publishers: Vec<Box<dyn Publisher>> = sinks.iter().map(sink::publisher).collect();
        tracing::info!(sinks = sinks.len(), "outbox relay started");
        while !stop.load(Ordering::Relaxed) {
            let busy = match relay_once(&conn, &sinks, &mut publishers) {
                Ok(r) => {
                    if r.failed > 0 || r.breaker_opened {
                        tracing::info!(
                            delivered = r.delivered,
                            failed = r.failed,
                            parked = r.parked,
                            breaker_opened = r.breaker_opened,
                            "outbox relay pass had failures"
                        );
                    }
                    r.delivered > 0
                }
                Err(e) => {
                    tracing::warn!(error = %e, "outbox relay pass failed");
                    false
                }
            };
            if !busy {
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    })
}

// ----- operator view and actions -----------------------------------------------------

/// A sink as the Outbox view and `outbox list` show it.
#[derive(Debug, Clone, PartialEq)]
pub struct SinkStatus {
    pub name: String,
    pub kind: String,
    /// "eventbridge", "pagerduty" or "slack" (see [`SinkFormat`]).
    pub format: String,
    pub target: String,
    pub paused: bool,
    pub paused_reason: Option<String>,
    pub breaker: Breaker,
    pub breaker_left_ms: Option<i64>,
    /// When an open breaker lets its next trial row through (ms since the epoch).
    pub next_trial_ms: Option<i64>,
    pub backlog: i64,
    pub oldest_age_ms: Option<i64>,
    /// Events delivered in the last minute.
    pub rate_per_min: i64,
    pub delivered: i64,
    pub failures: i64,
    pub parked: i64,
    pub last_error: Option<String>,
}

impl SinkStatus {
    pub fn to_json(&self) -> Value {
        json!({
            "name": self.name, "kind": self.kind, "format": self.format, "target": self.target,
            "paused": self.paused, "pausedReason": self.paused_reason,
            "breaker": self.breaker.as_str(),
            "breakerSecondsLeft": self.breaker_left_ms.map(|m| m / 1000),
            "nextTrialAt": self.next_trial_ms.map(|n| crate::events::time(crate::store::from_ms(n))),
            "backlog": self.backlog,
            "oldestAgeSeconds": self.oldest_age_ms.map(|m| m / 1000),
            "publishedLastMinute": self.rate_per_min,
            "delivered": self.delivered, "failures": self.failures, "parked": self.parked,
            "lastError": self.last_error,
        })
    }
}

/// Reading [`SinkStatus::to_json`]'s and [`DeliveryRow::to_json`]'s shapes back (an outbox
/// served elsewhere): a missing or mistyped member is an error naming it.
fn field<'a>(v: &'a Value, k: &str) -> std::result::Result<&'a Value, String> {
    v.get(k).ok_or_else(|| format!("{k} is missing"))
}
fn text_of(v: &Value, k: &str) -> std::result::Result<String, String> {
    field(v, k)?.as_str().map(|s| s.chars().take(1000).collect()).ok_or_else(|| format!("{k} is not a string"))
}
fn opt_text_of(v: &Value, k: &str) -> std::result::Result<Option<String>, String> {
    match v.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(_) => text_of(v, k).map(Some),
    }
}
fn int_of(v: &Value, k: &str) -> std::result::Result<i64, String> {
    field(v, k)?.as_i64().ok_or_else(|| format!("{k} is not a whole number"))
}
fn opt_int_of(v: &Value, k: &str) -> std::result::Result<Option<i64>, String> {
    match v.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(_) => int_of(v, k).map(Some),
    }
}
fn time_of(v: &Value, k: &str) -> std::result::Result<Option<i64>, String> {
    match opt_text_of(v, k)? {
        None => Ok(None),
        Some(t) => chrono::DateTime::parse_from_rfc3339(&t).map(|t| Some(t.timestamp_millis())).map_err(|_| format!("{k} is not a time")),
    }
}

impl SinkStatus {
    pub fn from_json(v: &Value) -> std::result::Result<SinkStatus, String> {
        let secs = |k: &str| opt_int_of(v, k).map(|s| s.map(|s| s.saturating_mul(1000)));
        Ok(SinkStatus {
            name: text_of(v, "name")?,
            kind: text_of(v, "kind")?,
            format: opt_text_of(v, "format")?.unwrap_or_else(|| "eventbridge".into()),
            target: text_of(v, "target")?,
            paused: field(v, "paused")?.as_bool().ok_or("paused is not true or false")?,
            paused_reason: opt_text_of(v, "pausedReason")?,
            breaker: Breaker::parse(&text_of(v, "breaker")?.to_ascii_lowercase()),
            breaker_left_ms: secs("breakerSecondsLeft")?,
            next_trial_ms: time_of(v, "nextTrialAt")?,
            backlog: int_of(v, "backlog")?,
            oldest_age_ms: secs("oldestAgeSeconds")?,
            rate_per_min: int_of(v, "publishedLastMinute")?,
            delivered: int_of(v, "delivered")?,
            failures: int_of(v, "failures")?,
            parked: int_of(v, "parked")?,
            last_error: opt_text_of(v, "lastError")?,
        })
    }
}

impl DeliveryRow {
    pub fn from_json(v: &Value) -> std::result::Result<DeliveryRow, String> {
        Ok(DeliveryRow {
            row_id: int_of(v, "rowId")?,
            sink: text_of(v, "sink")?,
            stream: text_of(v, "executionArn")?,
            event_id: text_of(v, "id")?,
            detail_type: text_of(v, "detailType")?,
            created_ms: time_of(v, "createdAt")?.ok_or("createdAt is missing")?,
            attempts: u32::try_from(int_of(v, "attempts")?).map_err(|_| "attempts is out of range")?,
            next_ms: time_of(v, "nextAttempt")?,
            parked: field(v, "parked")?.as_bool().ok_or("parked is not true or false")?,
            park_reason: opt_text_of(v, "parkReason")?,
            last_error: opt_text_of(v, "lastError")?,
        })
    }
}

pub fn status(conn: &Connection, sinks: &[Sink], now_ms: i64) -> Result<Vec<SinkStatus>> {
    ensure(conn, sinks)?;
    let mut out = vec![];
    for s in sinks {
        let (b, paused, floor) = load_breaker(conn, &s.name)?;
        let (reason, delivered, failures, last_error): (Option<String>, i64, i64, Option<String>) =
            conn.query_row("SELECT paused_reason, delivered, failed, last_error FROM outbox_sinks WHERE name = ?1", [&s.name], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })?;
        let (backlog, oldest): (i64, Option<i64>) = conn.query_row(
            "SELECT COUNT(*), MIN(o.created_ms) FROM outbox o LEFT JOIN outbox_delivery d ON d.sink = ?1 AND d.row_id = o.id
             WHERE o.id > ?2 AND d.delivered_ms IS NULL AND COALESCE(d.parked, 0) = 0",
            params![s.name, floor],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        let parked: i64 = conn.query_row("SELECT COUNT(*) FROM outbox_delivery WHERE sink = ?1 AND parked = 1", [&s.name], |r| r.get(0))?;
        let rate: i64 = conn.query_row(
            "SELECT COUNT(*) FROM outbox_delivery WHERE sink = ?1 AND delivered_ms >= ?2 AND skipped = 0",
            params![s.name, now_ms - 60_000],
            |r| r.get(0),
        )?;
        out.push(SinkStatus {
            name: s.name.clone(),
            kind: s.kind_name().into(),
            format: s.format.as_str().into(),
            target: s.target(),
            paused,
            paused_reason: reason,
            breaker: b.effective(s, now_ms),
            breaker_left_ms: b.open_left_ms(s, now_ms),
            next_trial_ms: b.trial_at(s).map(|t| t.max(now_ms)),
            backlog,
            oldest_age_ms: oldest.map(|o| (now_ms - o).max(0)),
            rate_per_min: rate,
            delivered,
            failures,
            parked,
            last_error,
        });
    }
    Ok(out)
}

/// A row behind a sink: waiting, failing or parked.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryRow {
    pub row_id: i64,
    pub sink: String,
    /// The execution ARN (or `lightbox:<kind>` stream) the event belongs to.
    pub stream: String,
    pub event_id: String,
    pub detail_type: String,
    pub created_ms: i64,
    pub attempts: u32,
    pub next_ms: Option<i64>,
    pub parked: bool,
    pub park_reason: Option<String>,
    pub last_error: Option<String>,
}

impl DeliveryRow {
    pub fn to_json(&self) -> Value {
        json!({
            "rowId": self.row_id, "sink": self.sink, "executionArn": self.stream, "id": self.event_id,
            "detailType": self.detail_type, "createdAt": crate::events::time(crate::store::from_ms(self.created_ms)),
            "attempts": self.attempts,
            "nextAttempt": self.next_ms.filter(|n| *n > 0).map(|n| crate::events::time(crate::store::from_ms(n))),
            "parked": self.parked, "parkReason": self.park_reason, "lastError": self.last_error,
        })
    }
}

/// The rows behind a sink, oldest first: undelivered (or only the parked ones).
pub fn rows(conn: &Connection, sink: &Sink, parked_only: bool, limit: usize) -> Result<Vec<DeliveryRow>> {
    ensure(conn, std::slice::from_ref(sink))?;
    let (_, _, floor) = load_breaker(conn, &sink.name)?;
    let sql = if parked_only {
        "SELECT o.id, o.execution_arn, o.event_id, o.payload, o.created_ms, d.attempts, d.next_ms, d.parked, d.park_reason, d.last_error
         FROM outbox_delivery d JOIN outbox o ON o.id = d.row_id WHERE d.sink = ?1 AND d.parked = 1 AND ?2 >= 0 ORDER BY o.id LIMIT ?3"
    } else {
        "SELECT o.id, o.execution_arn, o.event_id, o.payload, o.created_ms, d.attempts, d.next_ms, d.parked, d.park_reason, d.last_error
         FROM outbox o LEFT JOIN outbox_delivery d ON d.sink = ?1 AND d.row_id = o.id
         WHERE (o.id > ?2 OR d.parked = 1) AND d.delivered_ms IS NULL ORDER BY o.id LIMIT ?3"
    };
    let mut st = conn.prepare(sql)?;
    let out = st
        .query_map(params![sink.name, floor, limit as i64], |r| {
            let stream: String = r.get(1)?;
            let payload: String = r.get(3)?;
            let v: Value = serde_json::from_str(&payload).unwrap_or(Value::Null);
            Ok(DeliveryRow {
                row_id: r.get(0)?,
                sink: sink.name.clone(),
                event_id: event_id(&stream, r.get(2)?, &payload),
                detail_type: detail_type(&v),
                stream,
                created_ms: r.get(4)?,
                attempts: r.get::<_, Option<i64>>(5)?.unwrap_or(0).clamp(0, i64::from(u32::MAX)) as u32,
                next_ms: r.get(6)?,
                parked: r.get::<_, Option<i64>>(7)?.unwrap_or(0) != 0,
                park_reason: r.get(8)?,
                last_error: r.get(9)?,
            })
        })?
        .collect::<std::result::Result<_, _>>()?;
    Ok(out)
}

pub fn find_sink<'a>(sinks: &'a [Sink], name: &str) -> Result<&'a Sink> {
    sinks.iter().find(|s| s.name == name).ok_or_else(|| OutboxError::UnknownSink(name.to_string()))
}

fn check_row(conn: &Connection, row: i64) -> Result<()> {
    let n: i64 = conn.query_row("SELECT COUNT(*) FROM outbox WHERE id = ?1", [row], |r| r.get(0))?;
    if n == 0 {
        return Err(OutboxError::UnknownRow(row));
    }
    Ok(())
}

/// Retry now: the row (or every waiting row of the sink) is due at once; an open breaker lets
/// a trial row through. Returns how many rows were made due.
pub fn retry(conn: &Connection, sink: &Sink, row: Option<i64>) -> Result<usize> {
    ensure(conn, std::slice::from_ref(sink))?;
    let n = match row {
        Some(r) => {
            check_row(conn, r)?;
            conn.execute(
                "UPDATE outbox_delivery SET next_ms = 0 WHERE sink = ?1 AND row_id = ?2 AND parked = 0 AND delivered_ms IS NULL",
                params![sink.name, r],
            )?
        }
        None => {
            conn.execute("UPDATE outbox_delivery SET next_ms = 0 WHERE sink = ?1 AND parked = 0 AND delivered_ms IS NULL", [&sink.name])?
        }
    };
    // Open → half-open now: the next pass sends one trial row.
    conn.execute("UPDATE outbox_sinks SET opened_ms = 0, open_until_ms = 0 WHERE name = ?1 AND breaker = 'open'", [&sink.name])?;
    Ok(n)
}

/// Park a row for a sink by hand (it is kept, and requeue delivers it).
pub fn park(conn: &Connection, sink: &Sink, row: i64, reason: &str) -> Result<bool> {
    ensure(conn, std::slice::from_ref(sink))?;
    check_row(conn, row)?;
    let delivered: Option<Option<i64>> = conn
        .query_row("SELECT delivered_ms FROM outbox_delivery WHERE sink = ?1 AND row_id = ?2", params![sink.name, row], |r| r.get(0))
        .optional()?;
    if let Some(Some(_)) = delivered {
        return Err(OutboxError::Invalid(format!("outbox row {row} was already delivered to {}", sink.name)));
    }
    let (_, _, floor) = load_breaker(conn, &sink.name)?;
    if row <= floor && delivered.is_none() {
        return Err(OutboxError::Invalid(format!("outbox row {row} was already delivered to {}", sink.name)));
    }
    conn.execute(
        "INSERT INTO outbox_delivery (sink, row_id, parked, park_reason) VALUES (?1, ?2, 1, ?3)
         ON CONFLICT (sink, row_id) DO UPDATE SET parked = 1, park_reason = ?3",
        params![sink.name, row, format!("parked by hand: {reason}")],
    )?;
    Ok(true)
}

/// Requeue parked rows (one, or every parked row of the sink): attempts start again.
pub fn requeue(conn: &Connection, sink: &Sink, row: Option<i64>) -> Result<usize> {
    ensure(conn, std::slice::from_ref(sink))?;
    let min: Option<i64> = match row {
        Some(r) => {
            check_row(conn, r)?;
            conn.query_row(
                "SELECT row_id FROM outbox_delivery WHERE sink = ?1 AND row_id = ?2 AND parked = 1",
                params![sink.name, r],
                |x| x.get(0),
            )
            .optional()?
        }
        None => conn.query_row("SELECT MIN(row_id) FROM outbox_delivery WHERE sink = ?1 AND parked = 1", [&sink.name], |x| x.get(0))?,
    };
    let Some(min) = min else { return Ok(0) };
    let tx = conn.unchecked_transaction()?;
    let n = match row {
        Some(r) => tx.execute(
            "UPDATE outbox_delivery SET parked = 0, park_reason = NULL, attempts = 0, next_ms = 0 WHERE sink = ?1 AND row_id = ?2",
            params![sink.name, r],
        )?,
        None => tx.execute(
            "UPDATE outbox_delivery SET parked = 0, park_reason = NULL, attempts = 0, next_ms = 0 WHERE sink = ?1 AND parked = 1",
            [&sink.name],
        )?,
    };
    tx.execute("UPDATE outbox_sinks SET floor = MIN(floor, ?2) WHERE name = ?1", params![sink.name, min - 1])?;
    tx.commit()?;
    Ok(n)
}

/// Pause (or resume) delivery to a sink. Returns false when it already was.
pub fn set_paused(conn: &Connection, sink: &Sink, paused: bool, reason: Option<&str>) -> Result<bool> {
    ensure(conn, std::slice::from_ref(sink))?;
    let n = conn.execute(
        "UPDATE outbox_sinks SET paused = ?2, paused_reason = ?3 WHERE name = ?1 AND paused != ?2",
        params![sink.name, paused, if paused { reason } else { None }],
    )?;
    Ok(n == 1)
}

/// An operator action on the relay (console key or CLI twin).
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Retry now: one row, or every waiting row of the sink.
    Retry {
        sink: String,
        row: Option<i64>,
    },
    Park {
        sink: String,
        row: i64,
        reason: String,
    },
    /// Requeue parked rows: one, or every parked row of the sink.
    Requeue {
        sink: String,
        row: Option<i64>,
    },
    Pause {
        sink: String,
        reason: String,
    },
    Resume {
        sink: String,
    },
}

impl Action {
    /// The audit log's action name.
    pub fn name(&self) -> &'static str {
        match self {
            Action::Retry { .. } => "outbox-retry",
            Action::Park { .. } => "outbox-park",
            Action::Requeue { .. } => "outbox-requeue",
            Action::Pause { .. } => "outbox-pause",
            Action::Resume { .. } => "outbox-resume",
        }
    }
    pub fn sink(&self) -> &str {
        match self {
            Action::Retry { sink, .. }
            | Action::Park { sink, .. }
            | Action::Requeue { sink, .. }
            | Action::Pause { sink, .. }
            | Action::Resume { sink } => sink,
        }
    }
    fn row(&self) -> Option<i64> {
        match self {
            Action::Retry { row, .. } | Action::Requeue { row, .. } => *row,
            Action::Park { row, .. } => Some(*row),
            _ => None,
        }
    }
    /// The action as a request body: `{"action": "retry"|"park"|"requeue"|"pause"|"resume",
    /// "sink", "row"?, "reason"?}` (what `lightbox serve`'s `Lightbox.OutboxAction` takes).
    pub fn to_json(&self) -> Value {
        let mut v = json!({"action": self.name().trim_start_matches("outbox-"), "sink": self.sink()});
        if let Some(r) = self.row() {
            v["row"] = r.into();
        }
        if let Action::Park { reason, .. } | Action::Pause { reason, .. } = self {
            v["reason"] = reason.clone().into();
        }
        v
    }

    /// An action from a request body ([`Action::to_json`]'s shape); the error says what is wrong.
    pub fn from_json(v: &Value) -> std::result::Result<Action, String> {
        let text = |k: &str, max: usize| -> std::result::Result<Option<String>, String> {
            match v.get(k) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) if !s.trim().is_empty() && s.chars().count() <= max && !s.chars().any(char::is_control) => {
                    Ok(Some(s.clone()))
                }
                Some(_) => Err(format!("{k} must be a string of 1 to {max} characters without control characters")),
            }
        };
        let sink = text("sink", 64)?.ok_or("sink is required")?;
        let row = match v.get("row") {
            None | Some(Value::Null) => None,
            Some(r) => Some(r.as_i64().filter(|r| *r > 0).ok_or("row must be a positive whole number")?),
        };
        let reason = text("reason", 1000)?;
        let need_reason = || reason.clone().ok_or_else(|| "reason is required".to_string());
        match v.get("action").and_then(Value::as_str) {
            Some("retry") => Ok(Action::Retry { sink, row }),
            Some("park") => Ok(Action::Park { sink, row: row.ok_or("park needs row")?, reason: need_reason()? }),
            Some("requeue") => Ok(Action::Requeue { sink, row }),
            Some("pause") => Ok(Action::Pause { sink, reason: need_reason()? }),
            Some("resume") => Ok(Action::Resume { sink }),
            _ => Err("action must be one of retry, park, requeue, pause, resume".into()),
        }
    }

    /// What it will do, for a confirmation.
    pub fn describe(&self) -> String {
        let rows = |row: &Option<i64>, what: &str| match row {
            Some(r) => format!("row {r}"),
            None => format!("every {what} row"),
        };
        match self {
            Action::Retry { sink, row } => {
                format!("retry {} to {sink} now (an open breaker lets one trial row through)", rows(row, "waiting"))
            }
            Action::Park { sink, row, .. } => format!("park row {row} for {sink}: it is kept, not delivered, until requeued"),
            Action::Requeue { sink, row } => format!("requeue {} of {sink}: delivered again from attempt 1", rows(row, "parked")),
            Action::Pause { sink, .. } => format!("pause delivery to {sink}: events queue up until it is resumed"),
            Action::Resume { sink } => format!("resume delivery to {sink}"),
        }
    }
}

fn sink_state(conn: &Connection, sink: &Sink, row: Option<i64>) -> Value {
    let Ok((b, paused, _)) = load_breaker(conn, &sink.name) else { return Value::Null };
    let mut v = json!({"sink": sink.name, "paused": paused, "breaker": b.state.as_str()});
    if let (Some(r), Some(o)) = (row, v.as_object_mut()) {
        let parked: Option<bool> = conn
            .query_row("SELECT parked FROM outbox_delivery WHERE sink = ?1 AND row_id = ?2", params![sink.name, r], |x| x.get(0))
            .optional()
            .ok()
            .flatten();
        o.insert("row".into(), json!(r));
        o.insert("parked".into(), json!(parked.unwrap_or(false)));
    }
    v
}

/// Carry out an operator action (the caller audits it). Returns a sentence saying what happened.
pub fn apply(conn: &Connection, sinks: &[Sink], action: &Action) -> Result<String> {
    let sink = find_sink(sinks, action.sink())?;
    match action {
        Action::Retry { row, .. } => retry(conn, sink, *row).map(|n| format!("{n} row(s) of {} due now", sink.name)),
        Action::Park { row, reason, .. } => park(conn, sink, *row, reason).map(|_| format!("row {row} parked for {}", sink.name)),
        Action::Requeue { row, .. } => requeue(conn, sink, *row).map(|n| format!("{n} parked row(s) of {} requeued", sink.name)),
        Action::Pause { reason, .. } => set_paused(conn, sink, true, Some(reason))
            .map(|changed| if changed { format!("{} paused", sink.name) } else { format!("{} was already paused", sink.name) }),
        Action::Resume { .. } => set_paused(conn, sink, false, None)
            .map(|changed| if changed { format!("{} resumed", sink.name) } else { format!("{} was not paused", sink.name) }),
    }
}

/// Carry out an operator action, with an audit intent row before and its outcome after.
/// Returns a sentence saying what happened.
pub fn act(
    conn: &Connection,
    sinks: &[Sink],
    action: &Action,
    actor: &str,
    source: crate::audit::Source,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<String> {
    let sink = find_sink(sinks, action.sink())?;
    ensure(conn, std::slice::from_ref(sink))?;
    let mut entry = crate::audit::AuditEntry::new(actor, source, crate::audit::Action::Other(action.name().into()));
    if let Some(r) = action.row()
        && let Ok(stream) = conn.query_row("SELECT execution_arn FROM outbox WHERE id = ?1", [r], |x| x.get::<_, String>(0))
        && stream.starts_with("arn:")
    {
        entry = entry.execution(stream);
    }
    match action {
        Action::Park { reason, .. } | Action::Pause { reason, .. } => entry = entry.reason(reason.clone()),
        _ => {}
    }
    entry = entry.before(sink_state(conn, sink, action.row()));
    let intent = crate::audit::begin(conn, &entry, now)?;
    let r = apply(conn, sinks, action);
    entry = entry.after(sink_state(conn, sink, action.row())).outcome(match &r {
        Ok(_) => crate::audit::Outcome::Ok,
        Err(e) => crate::audit::Outcome::Error(e.to_string()),
    });
    crate::audit::finish(conn, intent, &entry, chrono::Utc::now())?;
    r
}

#[cfg(test)]
mod tests;
