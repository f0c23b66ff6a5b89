//! The operator audit log: who did what to which execution or task, when, why,
//! and with what result.
//!
//! Every operator action (approve or reject a review task, claim, redrive, stop,
//! escalate, reveal PHI, …), from the console or the CLI, appends one row to
//! `audit_log` in the store's SQLite file. Rows form a hash chain: each row's
//! `hash` is SHA-256 over a canonical encoding of all its fields and the previous
//! row's hash, and a one-row table `audit_head` holds the last `seq` and `hash`,
//! updated in the same transaction. [`verify`] therefore detects an edited row, a
//! removed row (in the middle or at the end), an inserted row and reordered rows.
//! Triggers reject `UPDATE` and `DELETE` on the log, so an accidental edit fails
//! outright; a deliberate one (dropping the triggers first) is caught by [`verify`].
//!
//! Beyond the database:
//!
//! - every append also writes `seq hash` to the **anchor file** beside the database
//!   ([`anchor_path`], fsync'd after the commit), so a log cut short or wiped, head
//!   included, no longer verifies;
//! - every append publishes the new head as a workflow event (an outbox row, topic
//!   [`HEAD_TOPIC`]), so a copy of the head leaves the machine;
//! - with a key ([`set_key`]) every row's hash is HMAC-SHA256, and a rewrite of the whole
//!   chain and its anchor by someone without the key is detected. Without a key, someone
//!   who rewrites every hash from the tampered row onwards *and* the anchor file is not
//!   detected by [`verify`] alone.
//!
//! An action is announced by an intent row ([`begin`]) committed before it is carried
//! out, and closed by its outcome row ([`finish`]); [`verify`] reports every intent
//! without an outcome (a process killed between the action and its record), until an
//! operator records what happened ([`resolve`]).
//!
//! # What goes into a row (PHI)
//!
//! The audit log must not become a second copy of patient data. Callers pass
//! identifiers, never clinical content or demographics:
//!
//! - `execution_arn`: the execution ARN (its name is an accession number or a
//!   generated id, never a patient name);
//! - `task_token`: the task token. It is stored shortened (the first 8
//!   characters), never in full, because a full token lets anyone complete the task;
//! - `reason`: what the operator typed or a reason code. This is the only free text
//!   an operator controls; it is stored as typed, with control characters replaced
//!   and its length capped;
//! - `before` / `after`: a short status object such as `{"status": "RUNNING"}` or
//!   `{"stage": "REPORTING", "claimedBy": "dr.lee"}`. Never a task's input or
//!   output, an HL7/DICOM payload or a patient name;
//! - the error message of a failed action, capped.
//!
//! As a safety net, a full task token given in `task_token` is replaced wherever it
//! appears in `reason`, `before`, `after` or the error message, and so is any run
//! of 32 or more hex digits (the engine's tokens) or 64 or more base64 characters.
//!
//! The actor is whoever the configuration or the operating system says is running
//! the console ([`actor`], [`os_user`]); it is not authenticated here. Access to
//! the data directory is what the operating system controls.
//!
//! # Wiring
//!
//! ```no_run
//! use lightbox::audit::{self, Action, AuditEntry, Source};
//! # fn approve() -> anyhow::Result<()> { Ok(()) }
//! # fn main() -> anyhow::Result<()> {
//! let store = lightbox::store::Store::open(std::path::Path::new("lightbox.db"))?;
//! let entry = AuditEntry::new(audit::actor(None), Source::Cli, Action::Approve)
//!     .execution("arn:aws:states:us-east-1:000000000000:execution:Read:ACC-1")
//!     .reason("read complete");
//! audit::audited(store.conn(), entry, approve)?; // intent, action, outcome
//! # Ok(()) }
//! ```

use std::fmt;
use std::sync::LazyLock;

use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OptionalExtension, params_from_iter};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::store::{from_ms, ms};

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit database error: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("invalid audit entry: {0}")]
    Invalid(String),
    #[error("the audit log is damaged: {0} (run `lightbox audit verify`)")]
    Damaged(String),
    /// The action ran (and succeeded) but its audit record could not be written.
    #[error("{action} was carried out, but its audit record could not be written")]
    NotRecorded {
        action: String,
        #[source]
        source: Box<AuditError>,
    },
}

pub type Result<T> = std::result::Result<T, AuditError>;

/// `prev_hash` of the first row.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Version tag of the canonical encoding, hashed into every row.
const DOMAIN: &[u8] = b"lightbox-audit-v1\0";

const MAX_ACTOR: usize = 128;
const MAX_ARN: usize = 2048;
const MAX_REASON: usize = 1000;
const MAX_ERROR: usize = 1000;
/// Serialized `before` / `after` larger than this are cut down to a JSON string.
const MAX_STATUS_JSON: usize = 1024;
const MAX_ACTION: usize = 40;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS audit_log (
    seq           INTEGER PRIMARY KEY,
    ts_ms         INTEGER NOT NULL,
    actor         TEXT NOT NULL,
    source        TEXT NOT NULL,
    action        TEXT NOT NULL,
    execution_arn TEXT,
    task_token    TEXT,
    reason        TEXT,
    before        TEXT,
    after         TEXT,
    result        TEXT NOT NULL,
    error         TEXT,
    prev_hash     TEXT NOT NULL,
    hash          TEXT NOT NULL,
    intent_seq    INTEGER
);
CREATE INDEX IF NOT EXISTS audit_log_by_time ON audit_log (ts_ms);
CREATE INDEX IF NOT EXISTS audit_log_by_execution ON audit_log (execution_arn);
CREATE TABLE IF NOT EXISTS audit_head (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    seq   INTEGER NOT NULL,
    hash  TEXT NOT NULL
);
CREATE TRIGGER IF NOT EXISTS audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_head_forward BEFORE UPDATE ON audit_head
WHEN NEW.seq <> OLD.seq + 1 OR NEW.id <> OLD.id
BEGIN SELECT RAISE(ABORT, 'audit_head only moves forward one row at a time'); END;
CREATE TRIGGER IF NOT EXISTS audit_head_no_delete BEFORE DELETE ON audit_head
BEGIN SELECT RAISE(ABORT, 'audit_head cannot be deleted'); END;
"#;

/// Create the audit tables, indexes and append-only triggers if they are missing.
/// Idempotent; [`record`] calls it too, so a store that never called it still works.
pub fn ensure_schema(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(SCHEMA)?;
    if !column_exists(conn, "audit_log", "intent_seq")? {
        // Outcome rows name the intent row they close (see [`begin`]).
        conn.execute_batch("ALTER TABLE audit_log ADD COLUMN intent_seq INTEGER")?;
    }
    if !column_exists(conn, "audit_log", "reason_code")? {
        // The reason code of an action taken for a reason (`phi::Reason`), apart from its note.
        conn.execute_batch("ALTER TABLE audit_log ADD COLUMN reason_code TEXT")?;
    }
    conn.execute_batch("CREATE INDEX IF NOT EXISTS audit_log_by_intent ON audit_log (intent_seq) WHERE intent_seq IS NOT NULL")?;
    Ok(())
}

fn column_exists(conn: &Connection, table: &str, column: &str) -> rusqlite::Result<bool> {
    conn.query_row("SELECT EXISTS (SELECT 1 FROM pragma_table_info(?1) WHERE name = ?2)", [table, column], |r| r.get(0))
}

// ----- the optional key --------------------------------------------------------

static KEY: std::sync::RwLock<Option<Vec<u8>>> = std::sync::RwLock::new(None);

/// Keys shorter than this are refused.
pub const MIN_KEY_BYTES: usize = 16;

/// Set (or clear) the audit key for this process. With a key every new row's hash is
/// HMAC-SHA256 under it (stored as `hmac-sha256:<hex>`), and [`verify`] requires every
/// row to carry a valid keyed hash: a rewrite of the whole chain (and the anchor file)
/// by someone without the key is detected.
pub fn set_key(key: Option<Vec<u8>>) -> Result<()> {
    if let Some(k) = &key
        && k.len() < MIN_KEY_BYTES
    {
        return Err(AuditError::Invalid(format!("the audit key must be at least {MIN_KEY_BYTES} bytes")));
    }
    if let Ok(mut g) = KEY.write() {
        *g = key;
    }
    Ok(())
}

fn key() -> Option<Vec<u8>> {
    KEY.read().ok().and_then(|g| g.clone())
}

const KEYED_PREFIX: &str = "hmac-sha256:";

// ----- what callers fill -----------------------------------------------------

/// Where the action was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Console,
    Cli,
    /// The engine itself (automatic escalations, breaker transitions), actor "lightbox".
    Engine,
    /// The Step Functions API (`lightbox serve`), actor the caller's access key id or "loopback".
    Api,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Console => "console",
            Source::Cli => "cli",
            Source::Engine => "engine",
            Source::Api => "api",
        }
    }

    pub fn parse(s: &str) -> Option<Source> {
        match s {
            "console" => Some(Source::Console),
            "cli" => Some(Source::Cli),
            "engine" => Some(Source::Engine),
            "api" => Some(Source::Api),
            _ => None,
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the operator did. `Other` takes a lowercase kebab-case name
/// (`[a-z][a-z0-9-]*`, at most 40 characters) for actions added later.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Approve,
    Reject,
    Claim,
    Unclaim,
    Redrive,
    Stop,
    Start,
    Escalate,
    Compensate,
    RevealPhi,
    Heartbeat,
    Other(String),
}

impl Action {
    pub fn as_str(&self) -> &str {
        match self {
            Action::Approve => "approve",
            Action::Reject => "reject",
            Action::Claim => "claim",
            Action::Unclaim => "unclaim",
            Action::Redrive => "redrive",
            Action::Stop => "stop",
            Action::Start => "start",
            Action::Escalate => "escalate",
            Action::Compensate => "compensate",
            Action::RevealPhi => "reveal-phi",
            Action::Heartbeat => "heartbeat",
            Action::Other(s) => s,
        }
    }

    /// The known action with this name, or `Other`.
    pub fn parse(s: &str) -> Action {
        match s {
            "approve" => Action::Approve,
            "reject" => Action::Reject,
            "claim" => Action::Claim,
            "unclaim" => Action::Unclaim,
            "redrive" => Action::Redrive,
            "stop" => Action::Stop,
            "start" => Action::Start,
            "escalate" => Action::Escalate,
            "compensate" => Action::Compensate,
            "reveal-phi" => Action::RevealPhi,
            "heartbeat" => Action::Heartbeat,
            other => Action::Other(other.to_string()),
        }
    }

    fn validate(&self) -> Result<()> {
        let s = self.as_str();
        let ok = s.len() <= MAX_ACTION
            && s.starts_with(|c: char| c.is_ascii_lowercase())
            && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if ok {
            Ok(())
        } else {
            Err(AuditError::Invalid(format!("action name {s:?} is not lowercase kebab-case (at most {MAX_ACTION} characters)")))
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the action ended.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Outcome {
    #[default]
    Ok,
    /// The action failed; the message is stored (capped, tokens shortened).
    Error(String),
}

/// One operator action, as the caller describes it. See the module docs for what
/// may and may not go into each field.
#[derive(Clone, PartialEq)]
pub struct AuditEntry {
    /// Configured user name, else the OS user: see [`actor`].
    pub actor: String,
    pub source: Source,
    pub action: Action,
    /// The execution acted on.
    pub execution_arn: Option<String>,
    /// The task token acted on, full or shortened: only its first 8 characters are stored.
    pub task_token: Option<String>,
    /// What the operator typed, or a reason code. Empty means none.
    pub reason: Option<String>,
    /// The reason code (`direct-care`, …) of an action taken for a [`crate::phi::Reason`];
    /// a reason carried as text (`[code] note`) gives it too.
    pub reason_code: Option<String>,
    /// Short status object before the action, e.g. `{"status": "FAILED"}`.
    pub before: Option<Value>,
    /// Short status object after the action.
    pub after: Option<Value>,
    pub outcome: Outcome,
}

/// Never prints a full task token (shortened everywhere, as in a stored row).
impl fmt::Debug for AuditEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let token = self.task_token.as_deref().map(str::trim).filter(|t| !t.is_empty());
        let outcome = match &self.outcome {
            Outcome::Ok => Outcome::Ok,
            Outcome::Error(m) => Outcome::Error(redact(m, token)),
        };
        f.debug_struct("AuditEntry")
            .field("actor", &self.actor)
            .field("source", &self.source)
            .field("action", &self.action)
            .field("execution_arn", &self.execution_arn)
            .field("task_token", &token.map(short_token))
            .field("reason", &self.reason.as_deref().map(|r| redact(r, token)))
            .field("before", &self.before.as_ref().map(|v| status_json(v, token)))
            .field("after", &self.after.as_ref().map(|v| status_json(v, token)))
            .field("outcome", &outcome)
            .finish()
    }
}

impl AuditEntry {
    pub fn new(actor: impl Into<String>, source: Source, action: Action) -> AuditEntry {
        AuditEntry {
            actor: actor.into(),
            source,
            action,
            execution_arn: None,
            task_token: None,
            reason: None,
            reason_code: None,
            before: None,
            after: None,
            outcome: Outcome::Ok,
        }
    }

    pub fn execution(mut self, arn: impl Into<String>) -> AuditEntry {
        self.execution_arn = Some(arn.into());
        self
    }

    pub fn token(mut self, token: impl Into<String>) -> AuditEntry {
        self.task_token = Some(token.into());
        self
    }

    /// A checked reason: its code and its note.
    pub fn why(mut self, reason: &crate::phi::Reason) -> AuditEntry {
        self.reason = Some(reason.note().to_string());
        self.reason_code = Some(reason.code().to_string());
        self
    }

    pub fn reason(mut self, reason: impl Into<String>) -> AuditEntry {
        self.reason = Some(reason.into());
        self
    }

    pub fn before(mut self, status: Value) -> AuditEntry {
        self.before = Some(status);
        self
    }

    pub fn after(mut self, status: Value) -> AuditEntry {
        self.after = Some(status);
        self
    }

    pub fn outcome(mut self, outcome: Outcome) -> AuditEntry {
        self.outcome = outcome;
        self
    }
}

/// The configured user name if there is a non-empty one, else [`os_user`].
pub fn actor(configured: Option<&str>) -> String {
    match configured.map(str::trim) {
        Some(u) if !u.is_empty() => u.to_string(),
        _ => os_user(),
    }
}

/// The operating-system user from `USER`, `LOGNAME` or `USERNAME`, else the account name of
/// the process's user (the password database), else `uid N`.
pub fn os_user() -> String {
    ["USER", "LOGNAME", "USERNAME"]
        .iter()
        .filter_map(|k| std::env::var(k).ok())
        .map(|v| v.trim().to_string())
        .find(|v| !v.is_empty())
        .unwrap_or_else(account_name)
}

/// The account name of the real user id, from the password database.
fn account_name() -> String {
    // SAFETY: getuid has no preconditions.
    let uid = unsafe { libc::getuid() };
    let mut pwd = std::mem::MaybeUninit::<libc::passwd>::uninit();
    let mut buf = vec![0 as libc::c_char; 4096];
    let mut out: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call; `buf` outlives the use of `pwd`'s fields,
    // and `out` is non-null only when `pwd` was filled in.
    let rc = unsafe { libc::getpwuid_r(uid, pwd.as_mut_ptr(), buf.as_mut_ptr(), buf.len(), &mut out) };
    if rc == 0 && !out.is_null() {
        // SAFETY: on success `pw_name` points to a NUL-terminated string inside `buf`.
        let name = unsafe { std::ffi::CStr::from_ptr((*out).pw_name) }.to_string_lossy().trim().to_string();
        if !name.is_empty() {
            return name;
        }
    }
    format!("uid {uid}")
}

/// A task token as the audit log stores it: the first 8 characters and `…`.
/// Idempotent, so an already shortened token stays as it is.
pub fn short_token(token: &str) -> String {
    crate::engine::short_token(token.trim().trim_end_matches('…'))
}

// ----- what the log returns ------------------------------------------------

/// One stored row, exactly as hashed.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRecord {
    pub seq: i64,
    pub time: DateTime<Utc>,
    pub actor: String,
    pub source: String,
    pub action: String,
    pub execution_arn: Option<String>,
    /// Shortened token.
    pub task_token: Option<String>,
    pub reason: Option<String>,
    /// The reason code, apart from the note in `reason` (rows from before reason codes have none).
    pub reason_code: Option<String>,
    /// Compact JSON text.
    pub before: Option<String>,
    /// Compact JSON text.
    pub after: Option<String>,
    /// `ok` or `error`.
    pub result: String,
    pub error: Option<String>,
    /// For the outcome of an action begun with [`begin`]: the seq of its intent row.
    pub intent_seq: Option<i64>,
    pub prev_hash: String,
    pub hash: String,
}

/// `result` of a row written before the action it names is carried out ([`begin`]).
pub const INTENT: &str = "intent";

impl AuditRecord {
    pub fn is_ok(&self) -> bool {
        self.result == "ok"
    }

    pub fn is_intent(&self) -> bool {
        self.result == INTENT
    }

    /// The record for `--json` output.
    pub fn to_json(&self) -> Value {
        let status = |s: &Option<String>| s.as_deref().map(|t| serde_json::from_str(t).unwrap_or_else(|_| Value::String(t.to_string())));
        json!({
            "seq": self.seq,
            "time": self.time.to_rfc3339_opts(SecondsFormat::Millis, true),
            "actor": self.actor,
            "source": self.source,
            "action": self.action,
            "executionArn": self.execution_arn,
            "taskToken": self.task_token,
            "reason": self.reason,
            "reasonCode": self.reason_code,
            "before": status(&self.before),
            "after": status(&self.after),
            "result": self.result,
            "error": self.error,
            "intentSeq": self.intent_seq,
            "prevHash": self.prev_hash,
            "hash": self.hash,
        })
    }

    /// The target for display: execution ARN and/or shortened token.
    pub fn target(&self) -> String {
        match (&self.execution_arn, &self.task_token) {
            (Some(a), Some(t)) => format!("{a} task {t}"),
            (Some(a), None) => a.clone(),
            (None, Some(t)) => format!("task {t}"),
            (None, None) => "-".to_string(),
        }
    }

    /// The row's hash: SHA-256 of its canonical encoding, or HMAC-SHA256 under `key`.
    fn canonical_hash(&self, key: Option<&[u8]>) -> String {
        let mut h: Vec<u8> = Vec::with_capacity(512);
        h.extend_from_slice(DOMAIN);
        put_int(&mut h, self.seq);
        put_int(&mut h, ms(self.time));
        for field in [
            Some(self.actor.as_str()),
            Some(self.source.as_str()),
            Some(self.action.as_str()),
            self.execution_arn.as_deref(),
            self.task_token.as_deref(),
            self.reason.as_deref(),
            self.before.as_deref(),
            self.after.as_deref(),
            Some(self.result.as_str()),
            self.error.as_deref(),
            Some(self.prev_hash.as_str()),
        ] {
            put_str(&mut h, field);
        }
        // Added later: present only on outcome rows, so older rows hash as before.
        if let Some(i) = self.intent_seq {
            put_int(&mut h, i);
        }
        // Added later still: only rows with a reason code hash it, after a tag of its own.
        if let Some(c) = &self.reason_code {
            h.extend_from_slice(b"reason_code");
            put_str(&mut h, Some(c.as_str()));
        }
        match key {
            None => hex(&Sha256::digest(&h)),
            Some(k) => format!("{KEYED_PREFIX}{}", hex(&crate::engine::core::hmac_sha256(k, &h))),
        }
    }
}

/// One line for plain-text listings: `seq time actor source action target result [reason]`.
impl fmt::Display for AuditRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:>6}  {}  {}  {}  {}  {}  ",
            self.seq,
            self.time.to_rfc3339_opts(SecondsFormat::Millis, true),
            self.actor,
            self.source,
            self.action,
            self.target()
        )?;
        match &self.error {
            Some(e) if !self.is_ok() => write!(f, "error: {e}")?,
            _ => f.write_str(&self.result)?,
        }
        match (&self.reason_code, &self.reason) {
            (Some(c), r) => write!(f, "  reason: [{c}] {}", r.as_deref().unwrap_or_default())?,
            (None, Some(r)) => write!(f, "  reason: {r}")?,
            (None, None) => {}
        }
        Ok(())
    }
}

fn put_int(h: &mut Vec<u8>, v: i64) {
    h.push(2u8);
    h.extend_from_slice(&v.to_be_bytes());
}

fn put_str(h: &mut Vec<u8>, v: Option<&str>) {
    match v {
        None => h.push(0u8),
        Some(s) => {
            h.push(1u8);
            h.extend_from_slice(&(s.len() as u64).to_be_bytes());
            h.extend_from_slice(s.as_bytes());
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

// ----- appending -------------------------------------------------------------

/// Append `entry` at time `now`. Runs in its own `BEGIN IMMEDIATE` transaction, so
/// appends from several processes on one file serialize (waiting up to the
/// connection's busy timeout); inside a caller's open transaction it uses a
/// savepoint and commits with that transaction.
///
/// Fails with [`AuditError::Damaged`] when the head no longer matches the log
/// (head deleted, or rows appended behind its back): nothing is appended to a log
/// whose end cannot be trusted.
///
/// For an action that changes a workflow use [`begin`] and [`finish`] instead, so a
/// process killed between the action and this record leaves a visible intent.
pub fn record(conn: &Connection, entry: &AuditEntry, now: DateTime<Utc>) -> Result<AuditRecord> {
    append(conn, entry, now, Kind::Plain)
}

/// An action announced in the log by [`begin`]; [`finish`] records its outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Intent {
    pub seq: i64,
}

/// Announce an action before carrying it out: checks the entry and the log as
/// [`preflight`] does, then commits an `intent` row. If the process dies after the
/// action took effect but before [`finish`], [`verify`] reports the intent without an
/// outcome. An error here means the action must not be carried out.
pub fn begin(conn: &Connection, entry: &AuditEntry, now: DateTime<Utc>) -> Result<Intent> {
    preflight(conn, entry)?;
    let rec = append(conn, entry, now, Kind::Intent)?;
    Ok(Intent { seq: rec.seq })
}

/// Record the outcome of an action announced with [`begin`] (the entry's `outcome`,
/// `before` and `after` as the action left them).
pub fn finish(conn: &Connection, intent: Intent, entry: &AuditEntry, now: DateTime<Utc>) -> Result<AuditRecord> {
    append(conn, entry, now, Kind::Outcome(intent.seq))
}

/// Close an intent whose outcome was never recorded (the process died), once an
/// operator has looked at what happened: appends an outcome row with result
/// `resolved`, the operator's reason and what they found.
pub fn resolve(
    conn: &Connection,
    intent_seq: i64,
    actor: &str,
    reason: &str,
    found: Option<Value>,
    now: DateTime<Utc>,
) -> Result<AuditRecord> {
    let columns = columns(conn)?;
    let rec = conn
        .query_row(&format!("SELECT {columns} FROM audit_log WHERE seq = ?1"), [intent_seq], read_record)
        .optional()?
        .ok_or_else(|| AuditError::Invalid(format!("there is no audit row with seq {intent_seq}")))?
        .map_err(AuditError::Damaged)?;
    if !rec.is_intent() {
        return Err(AuditError::Invalid(format!("audit row {intent_seq} is not an intent (it is a {} row)", rec.result)));
    }
    let closed: bool = conn.query_row("SELECT EXISTS (SELECT 1 FROM audit_log WHERE intent_seq = ?1)", [intent_seq], |r| r.get(0))?;
    if closed {
        return Err(AuditError::Invalid(format!("the intent at seq {intent_seq} already has its outcome")));
    }
    if reason.trim().is_empty() {
        return Err(AuditError::Invalid("resolving an intent needs a reason".into()));
    }
    let mut e = AuditEntry::new(actor, Source::Cli, Action::parse(&rec.action)).reason(reason);
    e.execution_arn = rec.execution_arn;
    e.task_token = rec.task_token;
    e.after = found;
    append(conn, &e, now, Kind::Resolved(intent_seq))
}

/// Start a new anchor file for a log that has none (it was deleted, or the log predates
/// anchoring). The new file records the rows as the database holds them now, after a
/// `# re-anchored at seq N` line, and a `reanchor` row names who did it and why; from
/// then on [`verify`] checks the anchor again, and says since which seq.
pub fn reanchor(conn: &Connection, actor: &str, reason: &str, now: DateTime<Utc>) -> Result<AuditRecord> {
    use std::io::Write as _;
    let Some(path) = anchor_path(conn) else {
        return Err(AuditError::Invalid("an in-memory log has no anchor file".into()));
    };
    if path.exists() {
        return Err(AuditError::Invalid(format!("the anchor file {} exists: nothing to do", path.display())));
    }
    if reason.trim().is_empty() {
        return Err(AuditError::Invalid("starting a new anchor file needs a reason".into()));
    }
    let e = AuditEntry::new(actor, Source::Cli, Action::Other("reanchor".into())).reason(reason);
    let rec = append(conn, &e, now, Kind::Plain)?;
    let io = |e: std::io::Error| AuditError::Invalid(format!("anchor file {}: {e}", path.display()));
    let mut f = crate::store::private_file(&path, true, true).map_err(io)?;
    f.write_all(format!("# re-anchored at seq {}\n", rec.seq).as_bytes()).map_err(io)?;
    drop(f);
    anchor_catch_up(conn, &path, false)?;
    Ok(rec)
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Plain,
    Intent,
    Outcome(i64),
    Resolved(i64),
}

fn append(conn: &Connection, entry: &AuditEntry, now: DateTime<Utc>, kind: Kind) -> Result<AuditRecord> {
    let mut fields = Normalized::from_entry(entry)?;
    let intent_seq = match kind {
        Kind::Intent => {
            fields.result = INTENT.to_string();
            fields.error = None;
            fields.after = None;
            None
        }
        Kind::Resolved(i) => {
            fields.result = "resolved".to_string();
            fields.error = None;
            Some(i)
        }
        Kind::Outcome(i) => Some(i),
        Kind::Plain => None,
    };
    let anchor = anchor_path(conn);
    let key = key();
    let tx = Tx::begin(conn)?;
    ensure_schema(conn)?;
    let (last_seq, prev_hash) = head_for_append(conn)?;
    let mut rec = AuditRecord {
        seq: last_seq + 1,
        time: from_ms(ms(now)),
        actor: fields.actor,
        source: entry.source.as_str().to_string(),
        action: entry.action.as_str().to_string(),
        execution_arn: fields.execution_arn,
        task_token: fields.task_token,
        reason: fields.reason,
        reason_code: fields.reason_code,
        before: fields.before,
        after: fields.after,
        result: fields.result,
        error: fields.error,
        intent_seq,
        prev_hash,
        hash: String::new(),
    };
    rec.hash = rec.canonical_hash(key.as_deref());
    conn.prepare_cached(
        "INSERT INTO audit_log (seq, ts_ms, actor, source, action, execution_arn, task_token, reason, before, after, result, error, prev_hash, hash, intent_seq, reason_code)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
    )?
    .execute(rusqlite::params![
        rec.seq,
        ms(rec.time),
        rec.actor,
        rec.source,
        rec.action,
        rec.execution_arn,
        rec.task_token,
        rec.reason,
        rec.before,
        rec.after,
        rec.result,
        rec.error,
        rec.prev_hash,
        rec.hash,
        rec.intent_seq,
        rec.reason_code,
    ])?;
    conn.prepare_cached(
        "INSERT INTO audit_head (id, seq, hash) VALUES (1, ?1, ?2)
         ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash",
    )?
    .execute(rusqlite::params![rec.seq, rec.hash])?;
    publish_head(conn, &rec)?;
    tx.commit()?;
    tracing::info!(target: "lightbox::audit", seq = rec.seq, hash = %rec.hash, action = %rec.action, result = %rec.result, "audit record appended");
    // Inside a caller's transaction the row is not committed yet: the next append anchors it.
    if let Some(path) = anchor
        && conn.is_autocommit()
        && let Err(e) = anchor_catch_up(conn, &path, rec.seq == 1)
    {
        // The row is committed; the next append fills the anchor in.
        tracing::error!(target: "lightbox::audit", error = %e, "audit anchor could not be written");
    }
    Ok(rec)
}

/// Topic of the outbox rows that publish the audit head to other systems.
pub const HEAD_TOPIC: &str = "audit";
/// `execution_arn` of those rows (they belong to no execution).
pub const HEAD_SOURCE: &str = "lightbox:audit";

/// Publish the new head as a workflow event (an outbox row, relayed like every other
/// event), so a copy of the head lives outside this file.
fn publish_head(conn: &Connection, rec: &AuditRecord) -> Result<()> {
    if !table_exists(conn, "outbox")? {
        return Ok(());
    }
    // An EventBridge event ("Audit Head"); the row keeps the seq as its event id, which
    // `check_published` reads.
    let payload = crate::events::audit_head(rec.seq, &rec.hash, rec.time);
    conn.prepare_cached("INSERT OR IGNORE INTO outbox (execution_arn, event_id, topic, payload, created_ms) VALUES (?1, ?2, ?3, ?4, ?5)")?
        .execute(rusqlite::params![HEAD_SOURCE, rec.seq, HEAD_TOPIC, payload.to_string(), ms(rec.time)])?;
    Ok(())
}

/// The log against the heads it published ([`publish_head`]): a published head beyond the
/// log's last row means rows were removed (even with the anchor file emptied or trimmed to
/// match), and a published hash that differs from its row's means the chain was rewritten.
fn check_published(conn: &Connection, rows: &[(i64, String)], last_seq: i64) -> Result<Option<(i64, String)>> {
    if !table_exists(conn, "outbox")? {
        return Ok(None);
    }
    let mut st = conn.prepare("SELECT event_id, payload FROM outbox WHERE execution_arn = ?1 AND topic = ?2 ORDER BY event_id")?;
    let heads = st.query_map(rusqlite::params![HEAD_SOURCE, HEAD_TOPIC], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))?;
    let by_seq: std::collections::HashMap<i64, &str> = rows.iter().map(|(s, h)| (*s, h.as_str())).collect();
    let mut newest = 0i64;
    for h in heads {
        let (seq, payload) = h?;
        newest = newest.max(seq);
        let published = serde_json::from_str::<Value>(&payload).ok().and_then(|v| v["detail"]["hash"].as_str().map(str::to_string));
        if let (Some(p), Some(row)) = (published, by_seq.get(&seq))
            && p != *row
        {
            return Ok(Some((
                seq,
                format!("row {seq}'s hash differs from the one published as the audit head then (the chain was rewritten)"),
            )));
        }
    }
    if newest > last_seq {
        return Ok(Some((
            newest,
            format!("the log ends at seq {last_seq} but seq {newest} was published as the audit head (rows removed)"),
        )));
    }
    Ok(None)
}

// ----- the anchor file -----------------------------------------------------------

/// The anchor file of the log in `conn`'s database: `<db>.anchor` beside it, one
/// `seq hash` line per appended row, written (and fsync'd) after each commit. `None`
/// for an in-memory database.
pub fn anchor_path(conn: &Connection) -> Option<std::path::PathBuf> {
    let p = conn.path().filter(|p| !p.is_empty())?;
    Some(std::path::PathBuf::from(format!("{p}.anchor")))
}

/// The highest seq in the anchor's last few lines.
fn anchor_last_seq(path: &std::path::Path) -> std::io::Result<i64> {
    use std::io::{Read as _, Seek as _, SeekFrom};
    let mut f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let len = f.metadata()?.len();
    f.seek(SeekFrom::Start(len.saturating_sub(1024)))?;
    let mut tail = String::new();
    f.read_to_string(&mut tail)?;
    Ok(tail.lines().filter_map(|l| l.split_once(' ').and_then(|(s, _)| s.parse::<i64>().ok())).max().unwrap_or(0))
}

/// Append the rows the anchor does not hold yet.
///
/// A missing anchor file is created only for a new log (`create`): one deleted under a
/// log that has rows stays missing, so [`verify`] keeps failing until an operator starts
/// a new one with [`reanchor`].
fn anchor_catch_up(conn: &Connection, path: &std::path::Path, create: bool) -> Result<()> {
    use std::io::Write as _;
    let io = |e: std::io::Error| AuditError::Invalid(format!("anchor file {}: {e}", path.display()));
    if !create && !path.exists() {
        return Err(AuditError::Invalid(format!(
            "the anchor file {} is missing; `lightbox audit reanchor` starts a new one",
            path.display()
        )));
    }
    let last = anchor_last_seq(path).map_err(io)?;
    let mut lines = String::new();
    {
        let mut st = conn.prepare_cached("SELECT seq, hash FROM audit_log WHERE seq > ?1 ORDER BY seq")?;
        let rows = st.query_map([last], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))?;
        for r in rows {
            let (seq, hash) = r?;
            lines.push_str(&format!("{seq} {hash}\n"));
        }
    }
    if lines.is_empty() {
        return Ok(());
    }
    let mut f = crate::store::private_file(path, true, false).map_err(io)?;
    f.write_all(lines.as_bytes()).map_err(io)?;
    f.sync_data().map_err(io)?;
    Ok(())
}

/// Every `seq → hash` the anchor file records, or `None` when there is no file.
fn read_anchor(path: &std::path::Path) -> std::result::Result<Option<std::collections::BTreeMap<i64, String>>, String> {
    let text = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("the anchor file {} cannot be read: {e}", path.display())),
    };
    let text = String::from_utf8_lossy(&text);
    let mut out = std::collections::BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        if line.starts_with('#') {
            continue;
        }
        let parsed = line.split_once(' ').and_then(|(s, h)| Some((s.parse::<i64>().ok()?, h.trim().to_string())));
        let Some((seq, hash)) = parsed else {
            return Err(format!("line {} of the anchor file {} is malformed", i + 1, path.display()));
        };
        if let Some(prev) = out.insert(seq, hash.clone())
            && prev != hash
        {
            return Err(format!("the anchor file {} records two different hashes for seq {seq}", path.display()));
        }
    }
    Ok(Some(out))
}

/// The last `(seq, hash)` to chain onto, checked against the log's last row.
fn head_for_append(conn: &Connection) -> Result<(i64, String)> {
    // One statement, so one snapshot: read in two, outside a transaction (as `preflight`
    // is), another process's append between them would look like rows behind the head.
    let (head_seq, head_hash, max_seq): (Option<i64>, Option<String>, Option<i64>) = conn
        .prepare_cached(
            "SELECT (SELECT seq FROM audit_head WHERE id = 1), (SELECT hash FROM audit_head WHERE id = 1), (SELECT MAX(seq) FROM audit_log)",
        )?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    let head = head_seq.zip(head_hash);
    match (head, max_seq) {
        (None, None) => Ok((0, GENESIS_HASH.to_string())),
        (None, Some(m)) => Err(AuditError::Damaged(format!("the head row is missing but the log has rows up to seq {m}"))),
        (Some((seq, _)), Some(m)) if m > seq => {
            Err(AuditError::Damaged(format!("rows up to seq {m} were added behind the head at seq {seq}")))
        }
        // A head ahead of the last row means rows were removed; keep chaining from
        // the head so the gap stays visible to `verify`.
        (Some(h), _) => Ok(h),
    }
}

/// Check that an entry is valid and the log can take an append, without appending.
/// [`audited`] calls this before running the action.
pub fn preflight(conn: &Connection, entry: &AuditEntry) -> Result<()> {
    Normalized::from_entry(entry)?;
    ensure_schema(conn)?;
    head_for_append(conn)?;
    if let Some(path) = anchor_path(conn)
        && path.exists()
    {
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(|e| AuditError::Invalid(format!("the anchor file {} cannot be written: {e}", path.display())))?;
    }
    Ok(())
}

/// Run `f` and record its outcome (`ok`, or `error` with its message).
///
/// Before running `f` the entry is validated and the log checked ([`preflight`]):
/// if the action cannot be audited it is not carried out. If `f` succeeds but the
/// record cannot be written, the error is [`AuditError::NotRecorded`] converted
/// into `E`; callers must treat that as "done, but unaudited" (for `reveal-phi`:
/// do not show the data). If `f` fails and its record cannot be written, `f`'s
/// error is returned and the audit failure goes to the log file.
pub fn audited<T, E>(conn: &Connection, entry: AuditEntry, f: impl FnOnce() -> std::result::Result<T, E>) -> std::result::Result<T, E>
where
    E: fmt::Display + From<AuditError>,
{
    audited_with(conn, entry, |_| f())
}

/// [`audited`], where the action may fill in the entry (typically `before` and `after`
/// once it has looked at the execution) before it is recorded.
pub fn audited_with<T, E>(
    conn: &Connection,
    mut entry: AuditEntry,
    f: impl FnOnce(&mut AuditEntry) -> std::result::Result<T, E>,
) -> std::result::Result<T, E>
where
    E: fmt::Display + From<AuditError>,
{
    let intent = begin(conn, &entry, Utc::now())?;
    let out = f(&mut entry);
    entry.outcome = match &out {
        Ok(_) => Outcome::Ok,
        Err(e) => Outcome::Error(e.to_string()),
    };
    match (finish(conn, intent, &entry, Utc::now()), out) {
        (Ok(_), out) => out,
        (Err(err), Ok(_)) => Err(E::from(AuditError::NotRecorded { action: entry.action.as_str().to_string(), source: Box::new(err) })),
        (Err(err), Err(e)) => {
            tracing::error!(target: "lightbox::audit", action = %entry.action, error = %err, "failed action could not be audited");
            Err(e)
        }
    }
}

/// Entry fields as they are stored: sanitized, capped, tokens shortened.
struct Normalized {
    actor: String,
    execution_arn: Option<String>,
    task_token: Option<String>,
    reason: Option<String>,
    reason_code: Option<String>,
    before: Option<String>,
    after: Option<String>,
    result: String,
    error: Option<String>,
}

impl Normalized {
    fn from_entry(e: &AuditEntry) -> Result<Normalized> {
        e.action.validate()?;
        let actor = cap(&one_line(e.actor.trim()), MAX_ACTOR);
        if actor.is_empty() {
            return Err(AuditError::Invalid("actor is empty".into()));
        }
        let full_token = e.task_token.as_deref().map(str::trim).filter(|t| !t.is_empty());
        let text = |s: &str, max: usize| cap(&redact(&one_line(s.trim()), full_token), max);
        let status = |v: &Option<Value>| v.as_ref().map(|v| status_json(v, full_token));
        let (result, error) = match &e.outcome {
            Outcome::Ok => ("ok".to_string(), None),
            Outcome::Error(m) => ("error".to_string(), Some(text(m, MAX_ERROR))),
        };
        // A reason carried as text (`[code] note`, after a prefix) gives its code apart.
        let mut reason = e.reason.clone();
        let mut reason_code = e.reason_code.clone();
        if reason_code.is_none()
            && let Some((code, rest)) = reason.as_deref().and_then(crate::phi::Reason::split)
        {
            reason_code = Some(code);
            reason = Some(rest);
        }
        Ok(Normalized {
            actor,
            execution_arn: e.execution_arn.as_deref().map(|a| cap(&one_line(a.trim()), MAX_ARN)).filter(|a| !a.is_empty()),
            task_token: full_token.map(|t| short_token(&one_line(t))),
            reason: reason.as_deref().map(|r| text(r, MAX_REASON)).filter(|r| !r.is_empty()),
            reason_code: reason_code.as_deref().map(|c| cap(&one_line(c.trim()), MAX_ACTION)).filter(|c| !c.is_empty()),
            before: status(&e.before),
            after: status(&e.after),
            result,
            error,
        })
    }
}

/// Long hex runs (engine task tokens are 46 hex digits) and long base64 runs (AWS tokens).
static TOKEN_LIKE: LazyLock<Option<regex::Regex>> = LazyLock::new(|| regex::Regex::new(r"[0-9A-Fa-f]{32,}|[A-Za-z0-9+/=_-]{64,}").ok());

/// Replace the full token and anything shaped like one with its short form.
fn redact(s: &str, token: Option<&str>) -> String {
    let mut out = match token {
        Some(t) if t.chars().count() > 8 => s.replace(t, &short_token(t)),
        _ => s.to_string(),
    };
    if let Some(re) = TOKEN_LIKE.as_ref() {
        out = re.replace_all(&out, |c: &regex::Captures<'_>| short_token(&c[0])).into_owned();
    }
    out
}

/// Control characters (terminal escapes) and bidirectional overrides would let a
/// stored value rewrite the console's screen: newlines and tabs become spaces,
/// the rest U+FFFD.
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '\n' | '\r' | '\t' => ' ',
            c if c.is_control() || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}') => '\u{FFFD}',
            c => c,
        })
        .collect()
}

fn cap(s: &str, max_chars: usize) -> String {
    if s.chars().count() <= max_chars {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max_chars.saturating_sub(1)).collect();
    out.push('…');
    out
}

fn status_json(v: &Value, token: Option<&str>) -> String {
    fn clean(v: &Value, token: Option<&str>) -> Value {
        match v {
            Value::String(s) => Value::String(redact(&one_line(s), token)),
            Value::Array(a) => Value::Array(a.iter().map(|x| clean(x, token)).collect()),
            Value::Object(o) => Value::Object(o.iter().map(|(k, x)| (one_line(k), clean(x, token))).collect()),
            other => other.clone(),
        }
    }
    let text = clean(v, token).to_string();
    if text.len() <= MAX_STATUS_JSON { text } else { Value::String(cap(&text, MAX_STATUS_JSON / 2)).to_string() }
}

/// `BEGIN IMMEDIATE` on an idle connection, a savepoint inside a caller's
/// transaction; rolled back on drop unless committed.
struct Tx<'c> {
    conn: &'c Connection,
    nested: bool,
    done: bool,
}

impl<'c> Tx<'c> {
    fn begin(conn: &'c Connection) -> rusqlite::Result<Tx<'c>> {
        let nested = !conn.is_autocommit();
        conn.execute_batch(if nested { "SAVEPOINT lightbox_audit" } else { "BEGIN IMMEDIATE" })?;
        Ok(Tx { conn, nested, done: false })
    }

    fn commit(mut self) -> rusqlite::Result<()> {
        self.conn.execute_batch(if self.nested { "RELEASE lightbox_audit" } else { "COMMIT" })?;
        self.done = true;
        Ok(())
    }
}

impl Drop for Tx<'_> {
    fn drop(&mut self) {
        if !self.done {
            let sql = if self.nested { "ROLLBACK TO lightbox_audit; RELEASE lightbox_audit" } else { "ROLLBACK" };
            let _ = self.conn.execute_batch(sql);
        }
    }
}

// ----- reading ---------------------------------------------------------------

/// What [`list`] returns. `limit` 0 means no limit.
#[derive(Debug, Default, Clone)]
pub struct AuditFilter {
    /// Rows at or after this time.
    pub since: Option<DateTime<Utc>>,
    pub actor: Option<String>,
    pub action: Option<String>,
    /// An execution ARN, or a task token (full or short): matches either column.
    pub target: Option<String>,
    /// Continue below this seq (paging newest first).
    pub before_seq: Option<i64>,
    /// Leave out intent rows whose outcome is recorded (the outcome row names them);
    /// intents without an outcome are still listed.
    pub hide_closed_intents: bool,
    pub limit: usize,
}

const COLUMNS: &str = "seq, ts_ms, actor, source, action, execution_arn, task_token, reason, before, after, result, error, prev_hash, hash, intent_seq, reason_code";

/// [`COLUMNS`], for a log that may predate `intent_seq` (read-only stores are not migrated).
fn columns(conn: &Connection) -> rusqlite::Result<std::borrow::Cow<'static, str>> {
    let mut c = COLUMNS.to_string();
    for column in ["intent_seq", "reason_code"] {
        if !column_exists(conn, "audit_log", column)? {
            c = c.replace(&format!(", {column}"), &format!(", NULL AS {column}"));
        }
    }
    Ok(c.into())
}

/// Rows matching `filter`, newest first.
pub fn list(conn: &Connection, filter: &AuditFilter) -> Result<Vec<AuditRecord>> {
    if !table_exists(conn, "audit_log")? {
        return Ok(Vec::new());
    }
    let columns = columns(conn)?;
    let mut sql = format!("SELECT {columns} FROM audit_log WHERE 1 = 1");
    let mut args: Vec<rusqlite::types::Value> = Vec::new();
    if let Some(t) = filter.since {
        args.push(ms(t).into());
        sql.push_str(&format!(" AND ts_ms >= ?{}", args.len()));
    }
    if let Some(a) = &filter.actor {
        args.push(a.clone().into());
        sql.push_str(&format!(" AND actor = ?{}", args.len()));
    }
    if let Some(a) = &filter.action {
        args.push(a.clone().into());
        sql.push_str(&format!(" AND action = ?{}", args.len()));
    }
    if let Some(t) = &filter.target {
        args.push(t.trim().to_string().into());
        args.push(short_token(t).into());
        sql.push_str(&format!(" AND (execution_arn = ?{} OR task_token = ?{})", args.len() - 1, args.len()));
    }
    if let Some(s) = filter.before_seq {
        args.push(s.into());
        sql.push_str(&format!(" AND seq < ?{}", args.len()));
    }
    if filter.hide_closed_intents && column_exists(conn, "audit_log", "intent_seq")? {
        sql.push_str(&format!(" AND NOT (result = '{INTENT}' AND EXISTS (SELECT 1 FROM audit_log o WHERE o.intent_seq = audit_log.seq))"));
    }
    sql.push_str(" ORDER BY seq DESC");
    if filter.limit > 0 {
        args.push(i64::try_from(filter.limit).unwrap_or(i64::MAX).into());
        sql.push_str(&format!(" LIMIT ?{}", args.len()));
    }
    let mut st = conn.prepare(&sql)?;
    let mut rows = st.query(params_from_iter(args))?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        out.push(read_record(r)?.map_err(AuditError::Damaged)?);
    }
    Ok(out)
}

/// The outcome of [`verify`].
#[derive(Debug, Clone, PartialEq)]
pub struct VerifyReport {
    /// Rows in the log.
    pub rows: u64,
    pub ok: bool,
    /// The first problem: the seq it was found at and what is wrong.
    pub first_bad: Option<(i64, String)>,
    /// The head `(seq, hash)`, to compare with a copy kept elsewhere.
    pub head: Option<(i64, String)>,
    /// Intents with no outcome: actions that may have taken effect unrecorded.
    pub open_intents: Vec<AuditRecord>,
    /// Whether the chain was checked against an anchor file, and with a key.
    pub anchored: bool,
    /// The seq at which the anchor file was started again ([`reanchor`]), if it was.
    pub reanchored_at: Option<i64>,
    pub keyed: bool,
}

impl VerifyReport {
    pub fn to_json(&self) -> Value {
        json!({
            "result": if self.ok { "OK" } else { "FAIL" },
            "rows": self.rows,
            "firstBad": self.first_bad.as_ref().map(|(seq, reason)| json!({"seq": seq, "reason": reason})),
            "head": self.head.as_ref().map(|(seq, hash)| json!({"seq": seq, "hash": hash})),
            "openIntents": self.open_intents.iter().map(|r| r.to_json()).collect::<Vec<_>>(),
            "anchored": self.anchored,
            "reanchoredAt": self.reanchored_at,
            "keyed": self.keyed,
        })
    }
}

impl fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.first_bad {
            None => write!(f, "audit log OK: {} rows", self.rows)?,
            Some((seq, reason)) => write!(f, "audit log FAILED at seq {seq}: {reason} ({} rows)", self.rows)?,
        }
        if let Some((seq, hash)) = &self.head {
            write!(f, "; head seq {seq} hash {hash}")?;
        }
        write!(
            f,
            "; {}, {}",
            match (self.anchored, self.reanchored_at) {
                (true, None) => "checked against the anchor file".to_string(),
                (true, Some(s)) =>
                    format!("checked against the anchor file (started again at seq {s}: earlier rows as the database held them then)"),
                (false, _) => "no anchor file".to_string(),
            },
            if self.keyed { "keyed (HMAC)" } else { "no key" }
        )?;
        for r in &self.open_intents {
            write!(
                f,
                "\nintent without an outcome: seq {} {} {} by {} on {}: it may have taken effect unrecorded (or is still running); \
                 check the target and record what happened with `lightbox audit resolve {} --reason TEXT`",
                r.seq,
                r.time.to_rfc3339_opts(SecondsFormat::Millis, true),
                r.action,
                r.actor,
                r.target(),
                r.seq
            )?;
        }
        Ok(())
    }
}

/// Walk the whole chain in seq order: every row's hash must match its fields (under
/// the key set with [`set_key`], if any), its `prev_hash` the previous row's hash,
/// seqs must run 1, 2, 3, … without gaps, and the head must name the last row. Then
/// the anchor file ([`anchor_path`]) must agree with every row it records and must not
/// reach past the log's end, and every intent must have its outcome. Database errors
/// are `Err`; tampering is reported in the [`VerifyReport`].
pub fn verify(conn: &Connection) -> Result<VerifyReport> {
    let key = key();
    let has_log = table_exists(conn, "audit_log")?;
    let head: Option<(i64, String)> = if table_exists(conn, "audit_head")? {
        conn.query_row("SELECT seq, hash FROM audit_head WHERE id = 1", [], |r| Ok((r.get(0)?, r.get(1)?))).optional()?
    } else {
        None
    };
    let anchor_file = anchor_path(conn);
    let (anchor, anchor_problem) = match anchor_file.as_deref().map(read_anchor) {
        None => (None, None),
        Some(Ok(a)) => (a, None),
        Some(Err(p)) => (None, Some(p)),
    };
    let mut rows = 0u64;
    let mut first_bad: Option<(i64, String)> = None;
    let mut last: Option<(i64, String)> = None;
    let mut intents: std::collections::BTreeMap<i64, AuditRecord> = std::collections::BTreeMap::new();
    let mut by_seq_hash: Vec<(i64, String)> = Vec::new();
    if has_log {
        let columns = columns(conn)?;
        let mut st = conn.prepare(&format!("SELECT {columns} FROM audit_log ORDER BY seq"))?;
        let mut q = st.query([])?;
        let mut expect_seq = 1i64;
        let mut expect_prev = GENESIS_HASH.to_string();
        while let Some(r) = q.next()? {
            rows += 1;
            let seq: i64 = r.get(0)?;
            let problem = match read_record(r)? {
                Err(p) => {
                    expect_prev = String::new();
                    Some(p)
                }
                Ok(rec) => {
                    let keyed_row = rec.hash.starts_with(KEYED_PREFIX);
                    let p = if rec.seq != expect_seq {
                        Some(if rec.seq > expect_seq {
                            format!("seq {expect_seq}..{} missing (rows removed or reordered)", rec.seq - 1)
                        } else {
                            format!("seq out of order (expected {expect_seq})")
                        })
                    } else if rec.prev_hash != expect_prev {
                        Some("prev_hash does not match the previous row's hash (a row was removed, inserted or reordered)".to_string())
                    } else if key.is_none() && keyed_row {
                        Some("the row is signed with an audit key: verify with the key (audit_key_file or LIGHTBOX_AUDIT_KEY)".to_string())
                    } else if key.is_some() && !keyed_row {
                        Some(
                            "the row is not signed with the audit key (written without it, or rewritten by someone who lacks it)"
                                .to_string(),
                        )
                    } else if rec.canonical_hash(key.as_deref()) != rec.hash {
                        Some(if key.is_some() {
                            "the keyed hash does not match the row's contents (row edited, or signed with another key)".to_string()
                        } else {
                            "hash does not match the row's contents (row edited)".to_string()
                        })
                    } else {
                        None
                    };
                    // Intents are paired whatever else is wrong with a row, so a key problem
                    // is not also reported as every intent left open.
                    let p = match rec.intent_seq {
                        Some(i) if intents.remove(&i).is_none() && p.is_none() => {
                            Some(format!("the row closes intent {i}, which is not an open intent"))
                        }
                        _ => p,
                    };
                    if rec.is_intent() {
                        intents.insert(rec.seq, rec.clone());
                    }
                    by_seq_hash.push((rec.seq, rec.hash.clone()));
                    expect_prev = rec.hash.clone();
                    p
                }
            };
            if let Some(p) = problem
                && first_bad.is_none()
            {
                first_bad = Some((seq, p));
            }
            expect_seq = seq + 1;
            last = Some((seq, expect_prev.clone()));
        }
    }
    if first_bad.is_none() {
        first_bad = match (&head, &last) {
            (None, None) => None,
            (None, Some((seq, _))) => Some((*seq, "the head row is missing".to_string())),
            (Some((hseq, _)), None) => Some((*hseq, format!("the log is empty but the head is at seq {hseq} (rows removed)"))),
            (Some((hseq, hhash)), Some((seq, hash))) => {
                if hseq > seq {
                    Some((*hseq, format!("rows after seq {seq} are missing: the head is at seq {hseq} (rows removed)")))
                } else if hseq < seq {
                    Some((*seq, format!("rows after the head at seq {hseq} were added outside the audit API")))
                } else if hhash != hash {
                    Some((*seq, "the head hash does not match the last row".to_string()))
                } else {
                    None
                }
            }
        };
    }
    if first_bad.is_none() {
        first_bad = check_anchor(anchor_file.as_deref(), anchor.as_ref(), anchor_problem, &by_seq_hash, last.as_ref().map(|l| l.0));
    }
    if first_bad.is_none() {
        first_bad = check_published(conn, &by_seq_hash, last.as_ref().map_or(0, |l| l.0))?;
    }
    let open_intents: Vec<AuditRecord> = intents.into_values().collect();
    if first_bad.is_none()
        && let Some(r) = open_intents.first()
    {
        first_bad = Some((
            r.seq,
            format!("intent without an outcome: {} on {} by {}: it may have taken effect unrecorded", r.action, r.target(), r.actor),
        ));
    }
    let reanchored_at = anchor_file.as_deref().and_then(reanchored_at);
    Ok(VerifyReport {
        rows,
        ok: first_bad.is_none(),
        first_bad,
        head,
        open_intents,
        anchored: anchor.is_some(),
        reanchored_at,
        keyed: key.is_some(),
    })
}

/// The seq of the last `# re-anchored at seq N` line.
fn reanchored_at(path: &std::path::Path) -> Option<i64> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines().filter_map(|l| l.strip_prefix("# re-anchored at seq ")).filter_map(|n| n.trim().parse().ok()).next_back()
}

/// The anchor must record no seq past the log's end and agree with every row it records.
fn check_anchor(
    file: Option<&std::path::Path>,
    anchor: Option<&std::collections::BTreeMap<i64, String>>,
    problem: Option<String>,
    rows: &[(i64, String)],
    last_seq: Option<i64>,
) -> Option<(i64, String)> {
    let file = file?;
    if let Some(p) = problem {
        return Some((0, p));
    }
    let Some(anchor) = anchor else {
        return last_seq.map(|s| {
            (s, format!("the anchor file {} is missing but the log has {s} rows (deleted, or the log predates anchoring)", file.display()))
        });
    };
    let (&max_seq, _) = anchor.last_key_value()?;
    let end = last_seq.unwrap_or(0);
    if max_seq > end {
        return Some((
            end + 1,
            if end == 0 {
                format!("the log is empty but the anchor file {} records {max_seq} rows (the log was wiped)", file.display())
            } else {
                format!(
                    "the log ends at seq {end} but the anchor file {} records rows up to seq {max_seq} (rows removed from the end)",
                    file.display()
                )
            },
        ));
    }
    for (seq, hash) in rows {
        if let Some(a) = anchor.get(seq)
            && a != hash
        {
            return Some((*seq, "the row's hash differs from the one the anchor file recorded (the chain was rewritten)".to_string()));
        }
    }
    None
}

fn table_exists(conn: &Connection, name: &str) -> rusqlite::Result<bool> {
    conn.query_row("SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1)", [name], |r| r.get(0))
}

/// A row in [`COLUMNS`] order; a value of the wrong type is a problem, not an error.
fn read_record(r: &rusqlite::Row<'_>) -> rusqlite::Result<std::result::Result<AuditRecord, String>> {
    fn int(r: &rusqlite::Row<'_>, i: usize, name: &str) -> rusqlite::Result<std::result::Result<i64, String>> {
        Ok(match r.get_ref(i)? {
            ValueRef::Integer(v) => Ok(v),
            _ => Err(format!("column {name} is not an integer")),
        })
    }
    fn opt(r: &rusqlite::Row<'_>, i: usize, name: &str) -> rusqlite::Result<std::result::Result<Option<String>, String>> {
        Ok(match r.get_ref(i)? {
            ValueRef::Null => Ok(None),
            ValueRef::Text(t) => std::str::from_utf8(t).map(|s| Some(s.to_string())).map_err(|_| format!("column {name} is not UTF-8")),
            _ => Err(format!("column {name} is not text")),
        })
    }
    fn text(r: &rusqlite::Row<'_>, i: usize, name: &str) -> rusqlite::Result<std::result::Result<String, String>> {
        Ok(opt(r, i, name)?.and_then(|v| v.ok_or_else(|| format!("column {name} is null"))))
    }
    macro_rules! tri {
        ($e:expr) => {
            match $e? {
                Ok(v) => v,
                Err(p) => return Ok(Err(p)),
            }
        };
    }
    let ts = tri!(int(r, 1, "ts_ms"));
    let time = from_ms(ts);
    if ms(time) != ts {
        return Ok(Err("column ts_ms is out of range".to_string()));
    }
    Ok(Ok(AuditRecord {
        seq: tri!(int(r, 0, "seq")),
        time,
        actor: tri!(text(r, 2, "actor")),
        source: tri!(text(r, 3, "source")),
        action: tri!(text(r, 4, "action")),
        execution_arn: tri!(opt(r, 5, "execution_arn")),
        task_token: tri!(opt(r, 6, "task_token")),
        reason: tri!(opt(r, 7, "reason")),
        before: tri!(opt(r, 8, "before")),
        after: tri!(opt(r, 9, "after")),
        result: tri!(text(r, 10, "result")),
        error: tri!(opt(r, 11, "error")),
        prev_hash: tri!(text(r, 12, "prev_hash")),
        hash: tri!(text(r, 13, "hash")),
        intent_seq: match r.get_ref(14)? {
            ValueRef::Null => None,
            ValueRef::Integer(v) => Some(v),
            _ => return Ok(Err("column intent_seq is not an integer".to_string())),
        },
        reason_code: tri!(opt(r, 15, "reason_code")),
    }))
}
