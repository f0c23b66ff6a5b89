//! Dependency breakers and holds: a task resource (a built-in handler, or an
//! `http:invoke` endpoint's host) named in `[[dependencies]]` gets a circuit breaker
//! (open after `failures` failures within `window`, fail fast with
//! [`CIRCUIT_OPEN`] for `open_for`, then one half-open trial) and can be put on hold by an
//! operator: tasks for a held dependency stay scheduled, durably, until the hold is released.
//!
//! The breaker arithmetic ([`Breaker`]) is pure; its state lives in the store's
//! `dependencies` table (created here), and every transition is a Lightbox event
//! ("Dependency Breaker Opened/Closed", "Dependency Held/Released") and an audit row.

use chrono::{DateTime, Duration, Utc};
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::{Value, json};

use super::core::TaskRequest;
use crate::audit::{self, Action, AuditEntry, Source};
use crate::store::{Store, StoreError, from_ms, ms};

/// The error a task fails with, without being run, while its dependency's breaker is open.
pub const CIRCUIT_OPEN: &str = "Lightbox.CircuitOpen";
/// The event stream of dependency events (rows of one stream relay in order).
pub const STREAM: &str = "lightbox:dependency";
/// The actor of automatic transitions in the audit log.
pub const ENGINE_ACTOR: &str = "lightbox";

#[derive(Debug, thiserror::Error)]
pub enum DependencyError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("store: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error(transparent)]
    Audit(#[from] audit::AuditError),
    #[error("no dependency named {0:?} in the configuration ([[dependencies]])")]
    Unknown(String),
    #[error("dependencies: {0}")]
    Config(String),
    #[error("a reason is required (what was checked, or why)")]
    NoReason,
}

pub type Result<T> = std::result::Result<T, DependencyError>;

/// `[[dependencies]]`: one dependency and its breaker.
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct DependencyConfig {
    pub name: String,
    /// `{ handler = "lightbox-submit-claim" }` or `{ host = "clearinghouse.example" }`.
    #[serde(rename = "match")]
    pub matches: DependencyMatch,
    /// Failures within `window` that open the breaker (default 5; 0 = no breaker, holds only).
    #[serde(default = "default_failures")]
    pub failures: u32,
    /// Default "1m".
    #[serde(default = "default_window")]
    pub window: String,
    /// How long an open breaker fails fast before a half-open trial (default "15m").
    #[serde(default = "default_open_for")]
    pub open_for: String,
}

#[derive(Debug, Clone, PartialEq, Default, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct DependencyMatch {
    pub handler: Option<String>,
    pub host: Option<String>,
}

fn default_failures() -> u32 {
    5
}
fn default_window() -> String {
    "1m".into()
}
fn default_open_for() -> String {
    "15m".into()
}

/// A duration such as "90s", "10m", "2h", "1d" or "1h30m".
pub fn parse_duration(s: &str) -> Option<Duration> {
    crate::duration::parse_ms(s).filter(|ms| *ms > 0 && *ms <= 366 * 86_400_000).map(Duration::milliseconds)
}

impl DependencyConfig {
    pub fn window(&self) -> Duration {
        parse_duration(&self.window).unwrap_or_else(|| Duration::minutes(1))
    }
    pub fn open_for(&self) -> Duration {
        parse_duration(&self.open_for).unwrap_or_else(|| Duration::minutes(15))
    }
    /// Whether this dependency serves `key` (the task's handler or host).
    pub fn serves(&self, key: &ResourceKey) -> bool {
        match key {
            ResourceKey::Handler(h) => self.matches.handler.as_deref() == Some(h.as_str()),
            ResourceKey::Host(h) => self.matches.host.as_deref().is_some_and(|m| m.eq_ignore_ascii_case(h)),
        }
    }
}

/// Check `[[dependencies]]`: every problem names the entry and key.
pub fn validate(deps: &[DependencyConfig]) -> Result<()> {
    let mut seen = std::collections::BTreeSet::new();
    for (i, d) in deps.iter().enumerate() {
        let at = format!("dependencies[{i}]");
        if d.name.trim().is_empty() || d.name.len() > 80 || d.name.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(DependencyError::Config(format!("{at}.name {:?} must be 1 to 80 characters without spaces", d.name)));
        }
        if !seen.insert(d.name.clone()) {
            return Err(DependencyError::Config(format!("{at}.name {:?} is used twice", d.name)));
        }
        match (&d.matches.handler, &d.matches.host) {
            (Some(h), None) if h.is_empty() || h.chars().any(|c| c.is_whitespace() || c.is_control()) => {
                return Err(DependencyError::Config(format!("{at}.match.handler {h:?} must be a handler name, without spaces")));
            }
            // Matched against the host of an `http:invoke` URL: a scheme, path, port or
            // user in it would never match, silently.
            (None, Some(h))
                if h.is_empty()
                    || h.chars().any(|c| c.is_whitespace() || c.is_control() || matches!(c, '/' | '@' | '?' | '#'))
                    || (h.contains(':') && !h.starts_with('[')) =>
            {
                return Err(DependencyError::Config(format!(
                    "{at}.match.host {:?} must be a bare host name such as \"clearinghouse.example\" (no scheme, user, port or path)",
                    crate::outbox::shown_url(h)
                )));
            }
            (Some(_), None) | (None, Some(_)) => {}
            _ => return Err(DependencyError::Config(format!("{at}.match needs exactly one of handler or host"))),
        }
        if parse_duration(&d.window).is_none() {
            return Err(DependencyError::Config(format!(
                "{at}.window {:?} is not a duration like \"1m\" ({})",
                d.window,
                crate::duration::RANGE
            )));
        }
        if parse_duration(&d.open_for).is_none() {
            return Err(DependencyError::Config(format!(
                "{at}.open_for {:?} is not a duration like \"15m\" ({})",
                d.open_for,
                crate::duration::RANGE
            )));
        }
    }
    Ok(())
}

/// What a task calls: a built-in handler by name, or an HTTP host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResourceKey {
    Handler(String),
    Host(String),
}

/// The handler or host a task request calls (as [`super::tasks::TaskRunner::run`] resolves it).
pub fn resource_key(req: &TaskRequest) -> Option<ResourceKey> {
    let base = req.resource.trim_end_matches(".waitForTaskToken").trim_end_matches(".sync:2").trim_end_matches(".sync");
    let short = |n: &str| n.rsplit(':').next().unwrap_or(n).to_string();
    match base {
        "arn:aws:states:::lambda:invoke" => {
            req.parameters.get("FunctionName").and_then(Value::as_str).map(|n| ResourceKey::Handler(short(n)))
        }
        "arn:aws:states:::http:invoke" => {
            let url = req.parameters.get("ApiEndpoint").and_then(Value::as_str)?;
            reqwest::Url::parse(url).ok()?.host_str().map(|h| ResourceKey::Host(h.to_ascii_lowercase()))
        }
        r if r.starts_with("arn:aws:lambda:") => Some(ResourceKey::Handler(short(r))),
        r if r.starts_with("lightbox:") => Some(ResourceKey::Handler(r["lightbox:".len()..].to_string())),
        _ => None,
    }
}

/// The configured dependency a task request calls, if any.
pub fn dependency_for<'a>(deps: &'a [DependencyConfig], req: &TaskRequest) -> Option<&'a DependencyConfig> {
    if deps.is_empty() {
        return None;
    }
    let key = resource_key(req)?;
    deps.iter().find(|d| d.serves(&key))
}

// ----- the breaker, pure --------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "CLOSED",
            BreakerState::Open => "OPEN",
            BreakerState::HalfOpen => "HALF_OPEN",
        }
    }
    pub fn parse(s: &str) -> BreakerState {
        match s {
            "OPEN" => BreakerState::Open,
            "HALF_OPEN" => BreakerState::HalfOpen,
            _ => BreakerState::Closed,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Breaker {
    pub state: BreakerState,
    /// Failure times (ms) within the window, oldest first.
    pub failures: Vec<i64>,
    pub opened_ms: Option<i64>,
}

impl Default for Breaker {
    fn default() -> Breaker {
        Breaker { state: BreakerState::Closed, failures: vec![], opened_ms: None }
    }
}

/// Whether a call may go out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    Call,
    /// The open time is over: this call is the half-open trial.
    Trial,
    /// Fail fast until this time.
    Reject {
        until: DateTime<Utc>,
    },
}

/// A state change worth an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Opened,
    HalfOpened,
    Closed,
}

impl Breaker {
    /// Before a call at `now`. An open breaker whose time is up turns half-open (one trial).
    pub fn admit(&mut self, cfg: &DependencyConfig, now: DateTime<Utc>) -> Admit {
        match self.state {
            BreakerState::Closed => Admit::Call,
            BreakerState::HalfOpen => Admit::Trial,
            BreakerState::Open => {
                let until = from_ms(self.opened_ms.unwrap_or(ms(now))) + cfg.open_for();
                if now >= until {
                    self.state = BreakerState::HalfOpen;
                    Admit::Trial
                } else {
                    Admit::Reject { until }
                }
            }
        }
    }

    /// After a call at `now` that succeeded (`ok`) or failed.
    pub fn record(&mut self, cfg: &DependencyConfig, now: DateTime<Utc>, ok: bool) -> Option<Transition> {
        let t = ms(now);
        match (self.state, ok) {
            (BreakerState::HalfOpen, true) => {
                *self = Breaker::default();
                Some(Transition::Closed)
            }
            (BreakerState::HalfOpen, false) => {
                self.state = BreakerState::Open;
                self.opened_ms = Some(t);
                self.failures = vec![t];
                Some(Transition::Opened)
            }
            (BreakerState::Closed, false) if cfg.failures > 0 => {
                let since = t - cfg.window().num_milliseconds();
                self.failures.retain(|f| *f > since);
                self.failures.push(t);
                if self.failures.len() >= cfg.failures as usize {
                    self.state = BreakerState::Open;
                    self.opened_ms = Some(t);
                    Some(Transition::Opened)
                } else {
                    None
                }
            }
            _ => None,
        }
    }
}

// ----- the store ---------------------------------------------------------------

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS dependencies (
    name        TEXT PRIMARY KEY,
    state       TEXT NOT NULL DEFAULT 'CLOSED',
    failures    TEXT NOT NULL DEFAULT '[]',
    opened_ms   INTEGER,
    held        INTEGER NOT NULL DEFAULT 0,
    held_by     TEXT,
    hold_reason TEXT,
    held_ms     INTEGER,
    updated_ms  INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS dependency_waits (
    execution_arn TEXT PRIMARY KEY,
    dependency    TEXT NOT NULL,
    since_ms      INTEGER NOT NULL
) WITHOUT ROWID;";

pub fn ensure_schema(conn: &Connection) -> Result<()> {
    conn.execute_batch(SCHEMA)?;
    Ok(())
}

/// A write transaction taken *before* a dependency row is read: `BEGIN IMMEDIATE` holds
/// SQLite's write lock from the load to the commit, so two writers (the engine recording a
/// failure, an operator's `reset` or `hold` in another process) cannot both read the old row
/// and the later save silently drop the other's change. Inside a transaction already, a
/// savepoint. Dropped without [`WriteTx::commit`], it rolls back.
struct WriteTx<'c> {
    conn: &'c Connection,
    nested: bool,
    done: bool,
}

impl<'c> WriteTx<'c> {
    fn begin(conn: &'c Connection) -> Result<WriteTx<'c>> {
        let nested = !conn.is_autocommit();
        conn.execute_batch(if nested { "SAVEPOINT lightbox_dependency" } else { "BEGIN IMMEDIATE" })?;
        Ok(WriteTx { conn, nested, done: false })
    }

    fn commit(mut self) -> Result<()> {
        self.conn.execute_batch(if self.nested { "RELEASE lightbox_dependency" } else { "COMMIT" })?;
        self.done = true;
        Ok(())
    }
}

impl Drop for WriteTx<'_> {
    fn drop(&mut self) {
        if !self.done {
            let sql = if self.nested { "ROLLBACK TO lightbox_dependency; RELEASE lightbox_dependency" } else { "ROLLBACK" };
            let _ = self.conn.execute_batch(sql);
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default)]
struct Row {
    breaker: Breaker,
    held: bool,
    held_by: Option<String>,
    hold_reason: Option<String>,
    held_ms: Option<i64>,
}

fn load(conn: &Connection, name: &str) -> Result<Row> {
    let r = conn
        .prepare_cached("SELECT state, failures, opened_ms, held, held_by, hold_reason, held_ms FROM dependencies WHERE name = ?1")?
        .query_row([name], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, Option<i64>>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, Option<String>>(4)?,
                r.get::<_, Option<String>>(5)?,
                r.get::<_, Option<i64>>(6)?,
            ))
        })
        .optional()?;
    Ok(match r {
        None => Row::default(),
        Some((state, failures, opened_ms, held, held_by, hold_reason, held_ms)) => Row {
            breaker: Breaker {
                state: BreakerState::parse(&state),
                failures: serde_json::from_str(&failures).unwrap_or_default(),
                opened_ms,
            },
            held: held != 0,
            held_by,
            hold_reason,
            held_ms,
        },
    })
}

fn save(conn: &Connection, name: &str, row: &Row, now: DateTime<Utc>) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO dependencies (name, state, failures, opened_ms, held, held_by, hold_reason, held_ms, updated_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
         ON CONFLICT (name) DO UPDATE SET state = ?2, failures = ?3, opened_ms = ?4, held = ?5, held_by = ?6, hold_reason = ?7,
           held_ms = ?8, updated_ms = ?9",
    )?
    .execute(params![
        name,
        row.breaker.state.as_str(),
        serde_json::to_string(&row.breaker.failures).unwrap_or_else(|_| "[]".into()),
        row.breaker.opened_ms,
        row.held as i64,
        row.held_by,
        row.hold_reason,
        row.held_ms,
        ms(now)
    ])?;
    Ok(())
}

fn resources() -> Vec<String> {
    vec![]
}

fn emit(conn: &Connection, name: &str, what: &str, detail_type: &str, at: DateTime<Utc>, detail: Value) -> Result<()> {
    let id = format!("dependency:{name}:{what}:{}", ms(at));
    crate::store::emit_event_with(conn, STREAM, &id, detail_type, at, &resources(), detail)?;
    Ok(())
}

/// One audit row of a dependency change: `who` acted, `change` is (before, after).
fn audit_row(conn: &Connection, who: (&str, Source), action: &str, name: &str, reason: &str, change: (Value, Value), now: DateTime<Utc>) {
    let ((actor, source), (before, after)) = (who, change);
    let entry = AuditEntry::new(actor, source, Action::Other(action.into()))
        .reason(format!("dependency {name}: {reason}"))
        .before(before)
        .after(after);
    if let Err(e) = audit::record(conn, &entry, now) {
        tracing::warn!(dependency = %name, error = %e, "could not audit a dependency transition");
    }
}

/// What the engine should do with a task for dependency `d` at `now`.
#[derive(Debug, Clone, PartialEq)]
pub enum Gate {
    /// Run it (then report with [`after_call`]).
    Run,
    /// Held: do not dispatch; look again after the hold is released.
    Hold,
    /// Fail it now with [`CIRCUIT_OPEN`].
    FailFast { until: DateTime<Utc> },
}

/// Before dispatching a task for `d`.
pub fn before_call(store: &Store, d: &DependencyConfig, now: DateTime<Utc>) -> Result<Gate> {
    before_call_on(store.conn(), d, now)
}

fn before_call_on(conn: &Connection, d: &DependencyConfig, now: DateTime<Utc>) -> Result<Gate> {
    ensure_schema(conn)?;
    // Most calls change nothing: read without the write lock first.
    let row = load(conn, &d.name)?;
    if row.held {
        return Ok(Gate::Hold);
    }
    if let Some(gate) = settled_gate(&row.breaker, d, now) {
        return Ok(gate);
    }
    // An open breaker whose time is up turns half-open: load, transition and save in one
    // write transaction (another writer may have changed the row since the read above).
    let tx = WriteTx::begin(conn)?;
    let mut row = load(conn, &d.name)?;
    if row.held {
        return Ok(Gate::Hold);
    }
    let was = row.breaker.state;
    let admit = row.breaker.admit(d, now);
    if was != row.breaker.state {
        save(conn, &d.name, &row, now)?;
        tracing::info!(dependency = %d.name, "dependency breaker half-open: one trial call");
    }
    tx.commit()?;
    Ok(match admit {
        Admit::Call | Admit::Trial => Gate::Run,
        Admit::Reject { until } => Gate::FailFast { until },
    })
}

/// The gate for a breaker that `admit` would leave as it is (None: it would change it).
fn settled_gate(b: &Breaker, d: &DependencyConfig, now: DateTime<Utc>) -> Option<Gate> {
    let mut probe = b.clone();
    let admit = probe.admit(d, now);
    (probe.state == b.state).then_some(match admit {
        Admit::Call | Admit::Trial => Gate::Run,
        Admit::Reject { until } => Gate::FailFast { until },
    })
}

/// After a call to `d` (`ok`: the task succeeded). Opening and closing are events and audit
/// rows, committed with the breaker's new state.
pub fn after_call(store: &Store, d: &DependencyConfig, now: DateTime<Utc>, ok: bool) -> Result<Option<Transition>> {
    after_call_on(store.conn(), d, now, ok)
}

fn after_call_on(conn: &Connection, d: &DependencyConfig, now: DateTime<Utc>, ok: bool) -> Result<Option<Transition>> {
    ensure_schema(conn)?;
    // A success with the breaker closed changes nothing: no write lock for it.
    if ok && load(conn, &d.name)?.breaker.state == BreakerState::Closed {
        return Ok(None);
    }
    let tx = WriteTx::begin(conn)?;
    let mut row = load(conn, &d.name)?;
    let before = row.breaker.state;
    let t = row.breaker.record(d, now, ok);
    if ok && t.is_none() && before == BreakerState::Closed {
        return Ok(None);
    }
    save(conn, &d.name, &row, now)?;
    match t {
        Some(Transition::Opened) => {
            let until = now + d.open_for();
            emit(
                conn,
                &d.name,
                "opened",
                "Dependency Breaker Opened",
                now,
                json!({"dependency": d.name, "state": "OPEN", "failures": row.breaker.failures.len(), "openUntil": crate::events::time(until), "error": CIRCUIT_OPEN}),
            )?;
        }
        Some(Transition::Closed) => {
            emit(conn, &d.name, "closed", "Dependency Breaker Closed", now, json!({"dependency": d.name, "state": "CLOSED"}))?;
        }
        _ => {}
    }
    if let Some(t) = t {
        let (action, why) = match t {
            Transition::Opened => ("breaker-open", format!("breaker opened after {} failure(s)", row.breaker.failures.len())),
            _ => ("breaker-close", "half-open trial succeeded".to_string()),
        };
        tracing::warn!(dependency = %d.name, action, "dependency breaker transition");
        audit_row(
            conn,
            (ENGINE_ACTOR, Source::Engine),
            action,
            &d.name,
            &why,
            (json!({"breaker": before.as_str()}), json!({"breaker": row.breaker.state.as_str()})),
            now,
        );
    }
    tx.commit()?;
    Ok(t)
}

/// Remember that an execution waits for a held dependency (so a release wakes it).
pub fn note_wait(store: &Store, name: &str, arn: &str, now: DateTime<Utc>, poll: Duration) -> Result<()> {
    let conn = store.conn();
    conn.prepare_cached("INSERT OR IGNORE INTO dependency_waits (execution_arn, dependency, since_ms) VALUES (?1, ?2, ?3)")?
        .execute(params![arn, name, ms(now)])?;
    // Look again later, not on every tick: a release moves this timer back to now.
    conn.prepare_cached("UPDATE timers SET fire_ms = MAX(fire_ms, ?2) WHERE execution_arn = ?1")?.execute(params![arn, ms(now + poll)])?;
    Ok(())
}

/// The task of this execution is no longer waiting.
pub fn clear_wait(store: &Store, arn: &str) -> Result<()> {
    store.conn().prepare_cached("DELETE FROM dependency_waits WHERE execution_arn = ?1")?.execute([arn])?;
    Ok(())
}

fn find<'a>(deps: &'a [DependencyConfig], name: &str) -> Result<&'a DependencyConfig> {
    deps.iter().find(|d| d.name == name).ok_or_else(|| DependencyError::Unknown(name.to_string()))
}

fn need_reason(reason: &str) -> Result<&str> {
    let r = reason.trim();
    if r.is_empty() { Err(DependencyError::NoReason) } else { Ok(r) }
}

/// What an operator's change sees: the connection (inside the change's write transaction),
/// the dependency, the reason given, its row as loaded under the lock, and the audit entry
/// (to set `before` and `after`).
struct Edit<'a> {
    conn: &'a Connection,
    dep: &'a DependencyConfig,
    reason: &'a str,
    row: Row,
    entry: &'a mut AuditEntry,
}

impl Edit<'_> {
    fn save(&self, now: DateTime<Utc>) -> Result<()> {
        save(self.conn, &self.dep.name, &self.row, now)
    }
}

/// An operator's change to a dependency: audited as an intent before and its outcome after (a
/// refusal, such as an unknown name or a missing reason, is on record too); the dependency's
/// row is loaded, changed and saved by `f` in one write transaction, committed when `f` succeeds.
fn operator_change<T>(
    conn: &Connection,
    deps: &[DependencyConfig],
    who: (&str, Source),
    action: &str,
    name: &str,
    reason: &str,
    f: impl FnOnce(&mut Edit<'_>) -> Result<T>,
) -> Result<T> {
    let entry = AuditEntry::new(who.0, who.1, Action::Other(action.into())).reason(format!("dependency {name}: {}", reason.trim()));
    audit::audited_with(conn, entry, |entry| {
        let dep = find(deps, name)?;
        let reason = need_reason(reason)?;
        ensure_schema(conn)?;
        let tx = WriteTx::begin(conn)?;
        let row = load(conn, &dep.name)?;
        let out = f(&mut Edit { conn, dep, reason, row, entry })?;
        tx.commit()?;
        Ok(out)
    })
}

/// Put a dependency on hold: its tasks wait instead of being dispatched. False: it was held.
pub fn hold(
    conn: &Connection,
    deps: &[DependencyConfig],
    name: &str,
    actor: &str,
    source: Source,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<bool> {
    operator_change(conn, deps, (actor, source), "dependency-hold", name, reason, |e| {
        e.entry.before = Some(json!({"held": e.row.held}));
        e.entry.after = Some(json!({"held": true}));
        if e.row.held {
            return Ok(false);
        }
        e.row.held = true;
        e.row.held_by = Some(actor.to_string());
        e.row.hold_reason = Some(e.reason.to_string());
        e.row.held_ms = Some(ms(now));
        e.save(now)?;
        let d = e.dep;
        emit(e.conn, &d.name, "held", "Dependency Held", now, json!({"dependency": d.name, "heldBy": actor, "reason": e.reason}))?;
        tracing::info!(dependency = %d.name, "dependency held");
        Ok(true)
    })
}

/// Release a hold: waiting tasks are dispatched on the next tick. Returns how many executions
/// were woken, or `None` when the dependency was not held.
pub fn release(
    conn: &Connection,
    deps: &[DependencyConfig],
    name: &str,
    actor: &str,
    source: Source,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<Option<usize>> {
    operator_change(conn, deps, (actor, source), "dependency-release", name, reason, |e| {
        e.entry.before = Some(json!({"held": e.row.held}));
        e.entry.after = Some(json!({"held": false}));
        if !e.row.held {
            return Ok(None);
        }
        e.row.held = false;
        e.row.held_by = None;
        e.row.hold_reason = None;
        e.row.held_ms = None;
        e.save(now)?;
        let d = e.dep;
        let woken = e.conn.execute(
            "UPDATE timers SET fire_ms = ?2 WHERE execution_arn IN (SELECT execution_arn FROM dependency_waits WHERE dependency = ?1)",
            params![d.name, ms(now)],
        )?;
        e.conn.execute("DELETE FROM dependency_waits WHERE dependency = ?1", [&d.name])?;
        emit(
            e.conn,
            &d.name,
            "released",
            "Dependency Released",
            now,
            json!({"dependency": d.name, "releasedBy": actor, "reason": e.reason, "waiting": woken}),
        )?;
        e.entry.after = Some(json!({"held": false, "resumed": woken}));
        tracing::info!(dependency = %d.name, resumed = woken, "dependency released");
        Ok(Some(woken))
    })
}

/// Close a breaker by hand (after checking the dependency). False: it was closed.
pub fn reset(
    conn: &Connection,
    deps: &[DependencyConfig],
    name: &str,
    actor: &str,
    source: Source,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<bool> {
    operator_change(conn, deps, (actor, source), "dependency-reset", name, reason, |e| {
        let before = e.row.breaker.state;
        e.entry.before = Some(json!({"breaker": before.as_str()}));
        e.entry.after = Some(json!({"breaker": "CLOSED"}));
        e.row.breaker = Breaker::default();
        e.save(now)?;
        if before != BreakerState::Closed {
            let d = e.dep;
            emit(
                e.conn,
                &d.name,
                "closed",
                "Dependency Breaker Closed",
                now,
                json!({"dependency": d.name, "state": "CLOSED", "resetBy": actor, "reason": e.reason}),
            )?;
        }
        Ok(before != BreakerState::Closed)
    })
}

/// One dependency as the Outbox view's "Dependencies" section and `dependencies list` show it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DependencyStatus {
    pub name: String,
    /// "handler NAME" or "host NAME".
    pub matches: String,
    /// CLOSED, OPEN or HALF_OPEN.
    pub breaker: String,
    /// Failures counted in the current window.
    pub failures: usize,
    pub threshold: u32,
    pub window_seconds: i64,
    /// When an open breaker lets a trial call through.
    pub open_until: Option<String>,
    /// Seconds until then (0 when due).
    pub open_seconds_left: Option<i64>,
    pub held: bool,
    pub held_by: Option<String>,
    pub hold_reason: Option<String>,
    pub held_since: Option<String>,
    /// Executions whose task waits for this dependency.
    pub waiting: i64,
}

/// Every configured dependency with its breaker and hold, backend-neutral.
pub fn dependencies(store: &Store, deps: &[DependencyConfig], now: DateTime<Utc>) -> Result<Vec<DependencyStatus>> {
    let conn = store.conn();
    let read_only = store.is_read_only();
    if !read_only {
        ensure_schema(conn)?;
    }
    let has_table: bool = conn
        .query_row("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'dependencies'", [], |r| r.get::<_, i64>(0))?
        > 0;
    let mut out = vec![];
    for d in deps {
        let row = if has_table { load(conn, &d.name)? } else { Row::default() };
        let waiting: i64 = if has_table {
            conn.query_row("SELECT COUNT(*) FROM dependency_waits WHERE dependency = ?1", [&d.name], |r| r.get(0))?
        } else {
            0
        };
        let since = ms(now) - d.window().num_milliseconds();
        let open_until =
            (row.breaker.state == BreakerState::Open).then(|| from_ms(row.breaker.opened_ms.unwrap_or(ms(now))) + d.open_for());
        out.push(DependencyStatus {
            name: d.name.clone(),
            matches: match (&d.matches.handler, &d.matches.host) {
                (Some(h), _) => format!("handler {h}"),
                (_, Some(h)) => format!("host {h}"),
                _ => String::new(),
            },
            breaker: row.breaker.state.as_str().to_string(),
            failures: row.breaker.failures.iter().filter(|f| **f > since).count(),
            threshold: d.failures,
            window_seconds: d.window().num_seconds(),
            open_until: open_until.map(crate::events::time),
            open_seconds_left: open_until.map(|u| (u - now).num_seconds().max(0)),
            held: row.held,
            held_by: row.held_by,
            hold_reason: row.hold_reason,
            held_since: row.held_ms.map(|t| crate::events::time(from_ms(t))),
            waiting,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn cfg() -> DependencyConfig {
        DependencyConfig {
            name: "clearinghouse".into(),
            matches: DependencyMatch { handler: Some("lightbox-submit-claim".into()), host: None },
            failures: 5,
            window: "1m".into(),
            open_for: "15m".into(),
        }
    }
    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 25, 10, 0, 0).single().expect("time")
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("90s"), Some(Duration::seconds(90)));
        assert_eq!(parse_duration("1h30m"), Some(Duration::minutes(90)));
        assert_eq!(parse_duration("15m"), Some(Duration::minutes(15)));
        for bad in ["", "m", "10", "10x", "0s", "-5m"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_breaker_opens_after_five_failures_in_the_window_only() {
        let c = cfg();
        let mut b = Breaker::default();
        // Four failures, then the window passes: they no longer count.
        for i in 0..4 {
            assert_eq!(b.record(&c, t0() + Duration::seconds(i), false), None);
        }
        let later = t0() + Duration::seconds(70);
        assert_eq!(b.record(&c, later, false), None);
        assert_eq!(b.state, BreakerState::Closed);
        for i in 1..4 {
            assert_eq!(b.record(&c, later + Duration::seconds(i), false), None);
        }
        assert_eq!(b.record(&c, later + Duration::seconds(5), false), Some(Transition::Opened));
        assert_eq!(b.state, BreakerState::Open);
    }

    #[test]
    fn open_fails_fast_then_half_open_trial_closes_or_reopens() {
        let c = cfg();
        let mut b = Breaker::default();
        for i in 0..5 {
            b.record(&c, t0() + Duration::seconds(i), false);
        }
        let opened = t0() + Duration::seconds(4);
        assert_eq!(b.admit(&c, opened + Duration::minutes(14)), Admit::Reject { until: opened + Duration::minutes(15) });
        assert_eq!(b.state, BreakerState::Open);
        // Trial fails: open again from now.
        let trial = opened + Duration::minutes(15);
        assert_eq!(b.admit(&c, trial), Admit::Trial);
        assert_eq!(b.state, BreakerState::HalfOpen);
        assert_eq!(b.record(&c, trial, false), Some(Transition::Opened));
        assert_eq!(b.admit(&c, trial + Duration::minutes(1)), Admit::Reject { until: trial + Duration::minutes(15) });
        // Next trial succeeds: closed, failures forgotten.
        let trial2 = trial + Duration::minutes(15);
        assert_eq!(b.admit(&c, trial2), Admit::Trial);
        assert_eq!(b.record(&c, trial2, true), Some(Transition::Closed));
        assert_eq!(b, Breaker::default());
        assert_eq!(b.admit(&c, trial2), Admit::Call);
    }

    #[test]
    fn successes_in_closed_state_change_nothing_and_zero_failures_means_no_breaker() {
        let mut c = cfg();
        let mut b = Breaker::default();
        assert_eq!(b.record(&c, t0(), true), None);
        c.failures = 0;
        for i in 0..10 {
            assert_eq!(b.record(&c, t0() + Duration::seconds(i), false), None);
        }
        assert_eq!(b.state, BreakerState::Closed);
    }

    #[test]
    fn resource_keys_follow_the_task_runner() {
        let req = |resource: &str, params: Value| TaskRequest {
            task_id: "t".into(),
            state: "S".into(),
            resource: resource.into(),
            parameters: params,
            attempt: 1,
            token: None,
        };
        assert_eq!(
            resource_key(&req(
                "arn:aws:states:::lambda:invoke",
                json!({"FunctionName": "arn:aws:lambda:us-east-1:1:function:lightbox-submit-claim"})
            )),
            Some(ResourceKey::Handler("lightbox-submit-claim".into()))
        );
        assert_eq!(
            resource_key(&req("arn:aws:states:::http:invoke", json!({"ApiEndpoint": "https://Claims.Example:8443/x"}))),
            Some(ResourceKey::Host("claims.example".into()))
        );
        assert_eq!(resource_key(&req("lightbox:echo", json!({}))), Some(ResourceKey::Handler("echo".into())));
        let deps = vec![cfg()];
        assert!(dependency_for(&deps, &req("arn:aws:states:::lambda:invoke", json!({"FunctionName": "lightbox-submit-claim"}))).is_some());
        assert!(dependency_for(&deps, &req("arn:aws:states:::lambda:invoke", json!({"FunctionName": "other"}))).is_none());
    }

    /// A store on disk and a plain second connection to it (another writer: the CLI beside
    /// the engine), as two processes would have.
    fn two_writers() -> (tempfile::TempDir, Store, Connection) {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("lightbox.db");
        let store = Store::open(&path).expect("store");
        ensure_schema(store.conn()).expect("schema");
        let other = Connection::open(&path).expect("second connection");
        other.busy_timeout(std::time::Duration::from_secs(10)).expect("busy timeout");
        (dir, store, other)
    }

    fn row_of(conn: &Connection) -> Row {
        load(conn, "clearinghouse").expect("load")
    }

    #[test]
    fn a_failure_recorded_while_another_writer_holds_the_row_keeps_both_changes() {
        let (_dir, store, other) = two_writers();
        let mut c = cfg();
        c.failures = 1000;
        let (began, go) = (std::sync::mpsc::channel(), std::sync::mpsc::channel::<()>());
        let writer = std::thread::spawn(move || {
            // The other writer has read and is about to save the row (an operator's hold).
            other.execute_batch("BEGIN IMMEDIATE").expect("begin");
            other
                .execute(
                    "INSERT INTO dependencies (name, held, held_by, hold_reason, held_ms) VALUES ('clearinghouse', 1, 'ops', 'checking', 1)",
                    [],
                )
                .expect("hold");
            began.0.send(()).expect("send");
            let _ = go.1.recv_timeout(std::time::Duration::from_millis(300));
            other.execute_batch("COMMIT").expect("commit");
        });
        began.1.recv().expect("the other writer began");
        // The engine records a failure meanwhile: it waits for the lock, then reads the held row.
        after_call(&store, &c, t0(), false).expect("after call");
        writer.join().expect("writer");
        let row = row_of(store.conn());
        assert!(row.held, "the hold written by the other connection survives the engine's save");
        assert_eq!(row.breaker.failures.len(), 1, "and the failure is recorded");
    }

    #[test]
    fn interleaved_engine_and_operator_writers_lose_no_update() {
        let (_dir, store, other) = two_writers();
        let mut c = cfg();
        c.failures = 10_000;
        c.window = "1d".into();
        let deps = vec![c.clone()];
        const FAILURES: usize = 60;
        const TOGGLES: usize = 21;
        let operator = std::thread::spawn(move || {
            for i in 0..TOGGLES {
                let now = t0() + Duration::milliseconds(i as i64);
                if i % 2 == 0 {
                    assert_eq!(
                        hold(&other, &deps, "clearinghouse", "ops", Source::Cli, "checking the clearinghouse", now).ok(),
                        Some(true)
                    );
                } else {
                    let released = release(&other, &deps, "clearinghouse", "ops", Source::Cli, "clearinghouse answers", now);
                    assert!(matches!(released, Ok(Some(_))), "{released:?}");
                }
            }
        });
        for i in 0..FAILURES {
            after_call(&store, &c, t0() + Duration::milliseconds(i as i64), false).expect("after call");
        }
        operator.join().expect("operator");
        let row = row_of(store.conn());
        assert_eq!(row.breaker.failures.len(), FAILURES, "every failure the engine recorded is kept");
        assert!(row.held, "the operator's last change (a hold) is kept");
        assert_eq!(row.hold_reason.as_deref(), Some("checking the clearinghouse"));
    }

    #[test]
    fn before_call_turns_an_expired_breaker_half_open_once_under_the_lock() {
        let (_dir, store, other) = two_writers();
        let c = cfg();
        for i in 0..5 {
            after_call(&store, &c, t0() + Duration::seconds(i), false).expect("failure");
        }
        assert_eq!(row_of(store.conn()).breaker.state, BreakerState::Open);
        assert!(matches!(before_call(&store, &c, t0() + Duration::minutes(1)), Ok(Gate::FailFast { .. })));
        let later = t0() + Duration::minutes(20);
        assert_eq!(before_call(&store, &c, later).ok(), Some(Gate::Run));
        assert_eq!(row_of(&other).breaker.state, BreakerState::HalfOpen, "the other connection sees the transition");
        // The operator resets it from the other connection; the engine's next trial result finds it closed.
        assert_eq!(
            reset(&other, std::slice::from_ref(&c), "clearinghouse", "ops", Source::Cli, "clearinghouse checked by phone", later).ok(),
            Some(true)
        );
        assert_eq!(after_call(&store, &c, later, true).ok(), Some(None));
        assert_eq!(row_of(store.conn()).breaker, Breaker::default());
    }

    #[test]
    fn validation_names_the_bad_key() {
        let mut c = cfg();
        c.window = "soon".into();
        let e = validate(&[c]).expect_err("bad window").to_string();
        assert!(e.contains("dependencies[0].window"), "{e}");
        let mut c = cfg();
        c.matches.host = Some("h".into());
        assert!(validate(&[c]).expect_err("both").to_string().contains("dependencies[0].match"));
    }
}
