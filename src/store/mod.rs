//! SQLite storage for the embedded engine.
//!
//! One transaction per step: the execution row (with its snapshot), the step's
//! history events, the execution's timers, task-token changes and outbox rows
//! commit together or not at all. Several processes may share one file; an
//! execution is worked on only under a lease, and every step checks the row's
//! version so no step is applied twice.

mod files;
mod secrets;

use std::path::{Path, PathBuf};

use chrono::{DateTime, TimeZone, Utc};
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::Value;

use crate::engine::core::{ExecState, Step, TokenOutcome};
use crate::history::{ExecutionStatus, HistoryEvent};
use crate::model::{ExecutionFilter, ExecutionSummary, PendingTask};

pub use files::{create_private_dir, header_problem, marker_path, private_file, tighten_permissions};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("execution {0} changed underneath this step (another process applied it first)")]
    Conflict(String),
    // The I/O error is part of the message, not a separate cause, so it is not repeated.
    #[error("could not create data directory {path}: {err}")]
    Dir { path: String, err: std::io::Error },
    #[error("{path}: {err}")]
    Io { path: String, err: std::io::Error },
    #[error(
        "the store {path} cannot be written ({detail}); this command changes the store: run it as the owner of the data directory, or use a command that only reads"
    )]
    ReadOnly { path: String, detail: String },
    #[error(
        "the store {path} is damaged: {detail}. Nothing was written to it. The way back: restore the last good copy made with \
         `lightbox store backup FILE` (check it with `lightbox store check FILE`), stop every Lightbox process, copy it over {path} \
         and delete {path}-wal and {path}-shm"
    )]
    Damaged { path: String, detail: String },
    #[error(
        "the store {path} lost its data: {detail}, but {marker} says a store was created here. Lightbox does not start a new \
         empty store in its place. Restore the last good copy made with `lightbox store backup FILE` over {path}; to really start \
         afresh, delete {marker}"
    )]
    Lost { path: String, detail: String, marker: String },
    #[error(
        "the store {path} was replaced: it holds the store {found}, but {marker} says the store created here is {expected}. \
         Lightbox does not use another store's data in its place. Restore the last good copy of this store made with \
         `lightbox store backup FILE` over {path} (and delete {path}-wal and {path}-shm); to really use the other store here, \
         delete {marker}"
    )]
    Replaced { path: String, found: String, expected: String, marker: String },
    #[error(
        "the store {path} cannot be opened read-only: {wal} holds committed changes that SQLite must first recover (it was not \
         closed cleanly), and that needs {path}-shm, which cannot be created in a directory this process may not write. \
         The store is not damaged. Run one Lightbox command as the owner of the data directory (or with write access to it), \
         or copy the whole data directory somewhere writable and use --data-dir"
    )]
    NeedsRecovery { path: String, wal: String },
}

impl StoreError {
    /// The store file or its directory is not writable by this process.
    pub fn is_read_only(&self) -> bool {
        matches!(self, StoreError::ReadOnly { .. } | StoreError::NeedsRecovery { .. })
    }
}

pub type Result<T> = std::result::Result<T, StoreError>;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS state_machines (
    arn         TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    definition  TEXT NOT NULL,
    role_arn    TEXT NOT NULL,
    type        TEXT NOT NULL DEFAULT 'STANDARD',
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS definitions (
    hash        TEXT PRIMARY KEY,
    definition  TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS executions (
    arn               TEXT PRIMARY KEY,
    state_machine_arn TEXT NOT NULL,
    name              TEXT NOT NULL,
    status            TEXT NOT NULL,
    start_ms          INTEGER NOT NULL,
    stop_ms           INTEGER,
    input             TEXT NOT NULL,
    output            TEXT,
    error             TEXT,
    cause             TEXT,
    redrive_count     INTEGER NOT NULL DEFAULT 0,
    redrive_ms        INTEGER,
        definition_hash   TEXT NOT NULL REFERENCES definitions (hash),
    current_state     TEXT,
    state_since_ms    INTEGER,
    snapshot          TEXT NOT NULL,
    version           INTEGER NOT NULL,
    lease_owner       TEXT,
    lease_until_ms    INTEGER,
    UNIQUE (state_machine_arn, name)
);
CREATE INDEX IF NOT EXISTS executions_by_start ON executions (start_ms DESC);
CREATE INDEX IF NOT EXISTS executions_by_status ON executions (status, start_ms DESC);
CREATE TABLE IF NOT EXISTS history (
    execution_arn TEXT NOT NULL,
    id            INTEGER NOT NULL,
    previous_id   INTEGER NOT NULL,
    ts_ms         INTEGER NOT NULL,
    type          TEXT NOT NULL,
    details       TEXT,
    PRIMARY KEY (execution_arn, id)
) WITHOUT ROWID;
DROP INDEX IF EXISTS history_by_time;
DROP INDEX IF EXISTS history_feed;
CREATE TABLE IF NOT EXISTS timers (
    execution_arn TEXT NOT NULL,
    fire_ms       INTEGER NOT NULL,
    PRIMARY KEY (execution_arn)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS timers_by_fire ON timers (fire_ms);
CREATE TABLE IF NOT EXISTS task_tokens (
    token         TEXT PRIMARY KEY,
    execution_arn TEXT NOT NULL,
    task_id       TEXT NOT NULL,
    state_name    TEXT NOT NULL,
    resource      TEXT NOT NULL,
    parameters    TEXT NOT NULL,
    status        TEXT NOT NULL,
    issued_ms     INTEGER NOT NULL,
    timeout_ms    INTEGER,
    heartbeat_ms  INTEGER,
    closed_ms     INTEGER
);
CREATE INDEX IF NOT EXISTS task_tokens_by_status ON task_tokens (status, issued_ms);
CREATE INDEX IF NOT EXISTS task_tokens_by_execution ON task_tokens (execution_arn);
CREATE TABLE IF NOT EXISTS claims (
    token       TEXT PRIMARY KEY,
    claimed_by  TEXT NOT NULL,
    claimed_ms  INTEGER NOT NULL
) WITHOUT ROWID;
-- Executions whose work a process died in the middle of, at `version` (from the engines'
-- journals, `engine::journal`): `tries` crashes so far. The transaction that commits a step
-- of the execution removes its row. Quarantine counts them (see `Store::apply_verdict`).
CREATE TABLE IF NOT EXISTS crashed (
    execution_arn TEXT PRIMARY KEY,
    version       INTEGER NOT NULL,
    tries         INTEGER NOT NULL,
    input         TEXT NOT NULL,
    first_ms      INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS outbox (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    execution_arn TEXT NOT NULL,
    event_id      INTEGER NOT NULL,
    topic         TEXT NOT NULL,
    payload       TEXT NOT NULL,
    created_ms    INTEGER NOT NULL,
    relayed_ms    INTEGER,
    UNIQUE (execution_arn, event_id)
);
"#;

/// What a guard may read inside the transaction of the step it guards
/// ([`Store::commit_step_guarded`]).
pub struct TxView<'a>(&'a rusqlite::Transaction<'a>);

impl TxView<'_> {
    /// Who holds the claim on a review, as committed at this instant.
    pub fn claim_holder(&self, token: &str) -> Result<Option<String>> {
        Ok(self.0.prepare_cached("SELECT claimed_by FROM claims WHERE token = ?1")?.query_row([token], |r| r.get(0)).optional()?)
    }
}

/// The error of an execution the engine quarantined: applying an input to it crashed the
/// engine twice (see [`Store::apply_verdict`]).
pub const QUARANTINED: &str = "Lightbox.Quarantined";

/// Crashes recorded against an execution ([`Store::record_crash`]).
#[derive(Debug, Clone, PartialEq)]
pub struct CrashRecord {
    pub version: i64,
    pub tries: i64,
    pub input: String,
    pub first: DateTime<Utc>,
}

impl ApplyMark {
    /// The verdict for work at `version` given the crashes recorded (if any).
    pub fn of(crash: Option<CrashRecord>, version: i64) -> ApplyMark {
        match crash {
            Some(c) if c.version == version && c.tries >= 2 => ApplyMark::Quarantine { crashes: c.tries, input: c.input, since: c.first },
            Some(c) if c.version == version => ApplyMark::Retry { crashes: c.tries },
            _ => ApplyMark::Go,
        }
    }
}

/// What [`Store::apply_verdict`] found.
#[derive(Debug, Clone, PartialEq)]
pub enum ApplyMark {
    /// No crash recorded at this version: go ahead.
    Go,
    /// The engine crashed `crashes` time(s) on this work: this is the one more try.
    Retry { crashes: i64 },
    /// The engine crashed `crashes` times on this work (first on `input`, at `since`): do not
    /// try again.
    Quarantine { crashes: i64, input: String, since: DateTime<Utc> },
}

pub fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

pub fn from_ms(v: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(v).single().unwrap_or_default()
}

/// Event types that other systems must see: each becomes an outbox row in the same transaction.
pub fn outbox_topic(event_type: &str) -> Option<&'static str> {
    Some(match event_type {
        "ExecutionStarted" | "ExecutionSucceeded" | "ExecutionFailed" | "ExecutionAborted" | "ExecutionTimedOut" | "ExecutionRedriven" => {
            "execution"
        }
        "TaskSubmitted" | "TaskSucceeded" | "TaskFailed" | "TaskTimedOut" => "task",
        _ => return None,
    })
}

#[derive(Debug, Clone, PartialEq)]
pub struct StateMachineRow {
    pub arn: String,
    pub name: String,
    pub definition: String,
    pub role_arn: String,
    pub kind: String,
    pub created_at: DateTime<Utc>,
}

/// An execution's version and status ([`Store::execution_heads`]).
#[derive(Debug, Clone, PartialEq)]
pub struct ExecutionHead {
    pub arn: String,
    pub version: i64,
    pub status: ExecutionStatus,
    pub stop: Option<DateTime<Utc>>,
    pub current_state: Option<String>,
}

/// A workflow event waiting to be relayed to other systems.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxRow {
    pub id: i64,
    pub execution_arn: String,
    pub event_id: i64,
    pub topic: String,
    pub payload: String,
}

/// A loaded execution, ready for [`crate::engine::core::apply`].
pub struct Loaded {
    pub state: ExecState,
    pub definition: String,
    pub version: i64,
    /// Crashes recorded against this version ([`Store::record_crash`]), read in the same query.
    pub crash: Option<CrashRecord>,
}

pub struct Store {
    conn: Connection,
    /// The database file, for a store on disk.
    path: Option<PathBuf>,
    read_only: bool,
    /// Set when the store was opened read-only although damaged.
    damage: Option<String>,
    /// The file passed its checks at open (or is new): remember it as good on a clean close.
    good: bool,
}

impl Store {
    /// Open (or create) the store for reading and writing.
    ///
    /// Refuses a store that cannot be written ([`StoreError::ReadOnly`]), a damaged one
    /// ([`StoreError::Damaged`]: bad header, size, or `PRAGMA quick_check` when the file
    /// changed since it was last found good) and one that lost its data
    /// ([`StoreError::Lost`]: the creation marker exists but the file is missing or empty).
    pub fn open(path: &Path) -> Result<Store> {
        let shown = path.display().to_string();
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            create_private_dir(dir).map_err(|e| {
                if files::io_read_only(&e) {
                    StoreError::ReadOnly { path: shown.clone(), detail: format!("cannot create {}: {e}", dir.display()) }
                } else {
                    StoreError::Dir { path: dir.display().to_string(), err: e }
                }
            })?;
        }
        if let Some(detail) = files::lost_data(path) {
            return Err(StoreError::Lost { path: shown, detail, marker: marker_path(path).display().to_string() });
        }
        let existed = path.exists();
        if existed {
            if let Some(detail) = header_problem(path).map_err(|e| StoreError::Io { path: shown.clone(), err: e })? {
                return Err(StoreError::Damaged { path: shown, detail });
            }
            if let Err(e) = std::fs::OpenOptions::new().read(true).write(true).open(path) {
                return Err(if files::io_read_only(&e) {
                    StoreError::ReadOnly { path: shown, detail: format!("the file is not writable: {e}") }
                } else {
                    StoreError::Io { path: shown, err: e }
                });
            }
        }
        if let Err(e) = files::dir_writable(path) {
            return Err(if files::io_read_only(&e) {
                StoreError::ReadOnly { path: shown, detail: format!("its directory does not take new files: {e}") }
            } else {
                StoreError::Io { path: shown, err: e }
            });
        }
        if !existed {
            files::private_file(path, false, false).map_err(|e| StoreError::Io { path: shown.clone(), err: e })?;
        }
        let classify = |e: rusqlite::Error| -> StoreError {
            if files::sql_damaged(&e) {
                StoreError::Damaged { path: shown.clone(), detail: e.to_string() }
            } else if files::sql_read_only(&e) {
                StoreError::ReadOnly { path: shown.clone(), detail: e.to_string() }
            } else {
                StoreError::Sql(e)
            }
        };
        let conn = Connection::open(path).map_err(classify)?;
        conn.busy_timeout(std::time::Duration::from_secs(10)).map_err(classify)?;
        let (tables, id) = identity(&conn).map_err(classify)?;
        check_identity(path, existed && tables, id.as_deref())?;
        let cached_good = existed && files::known_good(path);
        let mut store = Self::init(conn, true).map_err(|e| match e {
            StoreError::Sql(e) => classify(e),
            e => e,
        })?;
        store.path = Some(path.to_path_buf());
        if existed && !cached_good {
            if let Some(detail) = store.quick_check().map_err(|e| match e {
                StoreError::Sql(e) => classify(e),
                e => e,
            })? {
                return Err(StoreError::Damaged { path: shown, detail });
            }
            files::mark_good(path);
        }
        store.good = true;
        // The store's id, in the database and in the marker beside it. A store made before
        // the database kept its id adopts the marker's.
        let id = match id {
            Some(id) => id,
            None => {
                let id = files::marker_id(path).unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
                store.conn.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('store_id', ?1)", [&id]).map_err(classify)?;
                // Another process creating the store at the same moment may have won.
                store.conn.query_row("SELECT value FROM meta WHERE key = 'store_id'", [], |r| r.get(0)).map_err(classify)?
            }
        };
        if !marker_path(path).exists() {
            files::write_marker(path, &id)?;
        }
        Ok(store)
    }

    /// Open an existing store for reading only: for a data directory this process may not
    /// write (read commands still work there) or a damaged store (what can be read is
    /// shown; [`Store::damage`] says what is wrong). Writes fail.
    pub fn open_read_only(path: &Path) -> Result<Store> {
        let shown = path.display().to_string();
        if let Some(detail) = files::lost_data(path) {
            return Err(StoreError::Lost { path: shown, detail, marker: marker_path(path).display().to_string() });
        }
        if !path.exists() {
            return Err(StoreError::Io { path: shown, err: std::io::Error::from(std::io::ErrorKind::NotFound) });
        }
        let mut damage = header_problem(path).map_err(|e| StoreError::Io { path: shown.clone(), err: e })?;
        let flags =
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_URI | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let probe = |c: &Connection| c.query_row("SELECT COUNT(*) FROM sqlite_master", [], |r| r.get::<_, i64>(0));
        let conn = match Connection::open_with_flags(files::uri(path, "mode=ro"), flags) {
            Ok(c) if probe(&c).is_ok() => c,
            _ => {
                // A WAL database in a directory that does not take the `-shm` file: with no
                // `-wal` file (or an empty one) every committed page is in the main file, and
                // it can be read as immutable.
                let wal = files::sidecar(path, "-wal");
                let wal_empty = std::fs::metadata(&wal).map(|m| m.len() == 0).unwrap_or(true);
                if !wal_empty {
                    return Err(StoreError::NeedsRecovery { path: shown, wal: wal.display().to_string() });
                }
                let c = Connection::open_with_flags(files::uri(path, "immutable=1"), flags)?;
                if let Err(e) = probe(&c) {
                    if files::sql_damaged(&e) {
                        return Err(StoreError::Damaged { path: shown, detail: e.to_string() });
                    }
                    return Err(e.into());
                }
                c
            }
        };
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        match identity(&conn) {
            Ok((tables, id)) => check_identity(path, tables, id.as_deref())?,
            Err(e) if files::sql_damaged(&e) => {}
            Err(e) => return Err(e.into()),
        }
        conn.pragma_update(None, "cache_size", -65536)?;
        let mut store = Store { conn, path: Some(path.to_path_buf()), read_only: true, damage: None, good: false };
        if damage.is_none() && !files::known_good(path) {
            damage = match store.quick_check() {
                Ok(d) => d,
                Err(StoreError::Sql(e)) if files::sql_damaged(&e) => Some(e.to_string()),
                Err(e) => return Err(e),
            };
        }
        store.damage = damage;
        Ok(store)
    }

    /// A second connection to this store's file, for another thread of this process (the
    /// engine loop of `lightbox serve`, beside the API's). No file checks: this store passed
    /// them, and opening the file through them again would drop this process's POSIX locks.
    /// `None` for an in-memory or read-only store.
    pub fn second_connection(&self) -> Result<Option<Store>> {
        let Some(path) = self.path.clone().filter(|_| !self.read_only) else { return Ok(None) };
        let mut store = Self::init(Connection::open(&path)?, true)?;
        store.path = Some(path);
        Ok(Some(store))
    }

    pub fn in_memory() -> Result<Store> {
        Self::init(Connection::open_in_memory()?, false)
    }

    /// The database file, for a store on disk.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Opened with [`Store::open_read_only`].
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// What is wrong with a store opened read-only although damaged.
    pub fn damage(&self) -> Option<&str> {
        self.damage.as_deref()
    }

    /// `PRAGMA quick_check`: `None` when the file's structure is sound.
    pub fn quick_check(&self) -> Result<Option<String>> {
        pragma_check(&self.conn, "quick_check")
    }

    /// `PRAGMA integrity_check` and `PRAGMA foreign_key_check`: every problem found
    /// (empty when the store is sound). Reads every page: slow on a big store.
    pub fn integrity_check(&self) -> Result<Vec<String>> {
        let mut out = vec![];
        {
            let mut st = self.conn.prepare("PRAGMA integrity_check(100)")?;
            let rows = st.query_map([], |r| r.get::<_, String>(0))?;
            for r in rows {
                let r = r?;
                if r != "ok" {
                    out.push(r);
                }
            }
        }
        let mut st = self.conn.prepare("PRAGMA foreign_key_check")?;
        let rows = st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, Option<i64>>(1)?, r.get::<_, String>(2)?)))?;
        for r in rows.take(100) {
            let (table, row, parent) = r?;
            out.push(format!("row {} of {table} names a missing {parent} row", row.unwrap_or(-1)));
        }
        Ok(out)
    }

    /// A consistent copy of the live store in `dest` (SQLite's online backup API), made
    /// while other processes keep working. `dest` must not exist; it is created 0600.
    pub fn backup_to(&self, dest: &Path) -> Result<()> {
        let shown = dest.display().to_string();
        if dest.exists() {
            let e = std::io::Error::new(std::io::ErrorKind::AlreadyExists, "the file already exists (a backup never overwrites a file)");
            return Err(StoreError::Io { path: shown, err: e });
        }
        let tmp = files::sidecar(dest, &format!(".partial-{}", std::process::id()));
        let _ = std::fs::remove_file(&tmp);
        files::private_file(&tmp, false, true).map_err(|e| StoreError::Io { path: tmp.display().to_string(), err: e })?;
        let done = self.conn.backup(rusqlite::MAIN_DB, &tmp, None).and_then(|()| {
            let c = Connection::open(&tmp)?;
            // A copy is one self-contained file: no -wal beside it.
            c.pragma_update(None, "journal_mode", "DELETE")?;
            Ok(())
        });
        if let Err(e) = done {
            let _ = std::fs::remove_file(&tmp);
            return Err(e.into());
        }
        std::fs::rename(&tmp, dest).map_err(|e| StoreError::Io { path: shown, err: e })?;
        Ok(())
    }

    fn init(conn: Connection, wal: bool) -> Result<Store> {
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        if wal {
            conn.pragma_update(None, "journal_mode", "WAL")?;
        }
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        // Fewer, larger checkpoints: steps are small and frequent.
        conn.pragma_update(None, "wal_autocheckpoint", 4000)?;
        // Keep hot pages in memory (64 MiB cache, 256 MiB memory-mapped reads).
        conn.pragma_update(None, "cache_size", -65536)?;
        conn.pragma_update(None, "mmap_size", 268_435_456)?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.execute_batch(SCHEMA)?;
        Ok(Store { conn, path: None, read_only: false, damage: None, good: false })
    }

    pub fn conn(&self) -> &Connection {
        &self.conn
    }

    // ----- state machines ---------------------------------------------------

    pub fn put_state_machine(&self, row: &StateMachineRow) -> Result<bool> {
        let n = self.conn.execute(
            "INSERT INTO state_machines (arn, name, definition, role_arn, type, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)
             ON CONFLICT (arn) DO UPDATE SET definition = excluded.definition, role_arn = excluded.role_arn, updated_at = excluded.updated_at
             WHERE state_machines.definition != excluded.definition OR state_machines.role_arn != excluded.role_arn",
            params![row.arn, row.name, row.definition, row.role_arn, row.kind, ms(row.created_at)],
        )?;
        Ok(n > 0)
    }

    pub fn state_machine(&self, arn_or_name: &str) -> Result<Option<StateMachineRow>> {
        Ok(self
            .conn
            .query_row(
                "SELECT arn, name, definition, role_arn, type, created_at FROM state_machines WHERE arn = ?1 OR name = ?1",
                [arn_or_name],
                |r| {
                    Ok(StateMachineRow {
                        arn: r.get(0)?,
                        name: r.get(1)?,
                        definition: r.get(2)?,
                        role_arn: r.get(3)?,
                        kind: r.get(4)?,
                        created_at: from_ms(r.get(5)?),
                    })
                },
            )
            .optional()?)
    }

    pub fn state_machines(&self) -> Result<Vec<StateMachineRow>> {
        let mut st = self.conn.prepare("SELECT arn, name, definition, role_arn, type, created_at FROM state_machines ORDER BY name")?;
        let rows = st.query_map([], |r| {
            Ok(StateMachineRow {
                arn: r.get(0)?,
                name: r.get(1)?,
                definition: r.get(2)?,
                role_arn: r.get(3)?,
                kind: r.get(4)?,
                created_at: from_ms(r.get(5)?),
            })
        })?;
        Ok(rows.collect::<std::result::Result<_, _>>()?)
    }

    /// One page of state machines by name, after `after`: at most `limit` rows, each without
    /// its definition (left empty), so listing never reads megabytes of definitions.
    pub fn state_machine_page(&self, after: Option<&str>, limit: usize) -> Result<Vec<StateMachineRow>> {
        let mut st = self.conn.prepare_cached(
            "SELECT arn, name, role_arn, type, created_at FROM state_machines WHERE ?1 IS NULL OR name > ?1 ORDER BY name LIMIT ?2",
        )?;
        let rows = st.query_map(params![after, i64::try_from(limit).unwrap_or(i64::MAX)], |r| {
            Ok(StateMachineRow {
                arn: r.get(0)?,
                name: r.get(1)?,
                definition: String::new(),
                role_arn: r.get(2)?,
                kind: r.get(3)?,
                created_at: from_ms(r.get(4)?),
            })
        })?;
        Ok(rows.collect::<std::result::Result<_, _>>()?)
    }

    // ----- executions -------------------------------------------------------

    /// Insert a new execution together with its first step. `false` if the name is taken.
    pub fn insert_execution(&mut self, st: &ExecState, definition: &str, step: &Step) -> Result<bool> {
        let tx = self.conn.transaction()?;
        let inserted = insert_in(&tx, st, definition, step)?;
        tx.commit()?;
        Ok(inserted)
    }

    /// Insert many new executions in one transaction (imports and benchmarks). Returns how many were new.
    pub fn insert_executions(&mut self, items: &[(ExecState, String, Step)]) -> Result<usize> {
        let tx = self.conn.transaction()?;
        let mut n = 0;
        for (st, def, step) in items {
            n += usize::from(insert_in(&tx, st, def, step)?);
        }
        tx.commit()?;
        Ok(n)
    }

    /// Commit one step: the execution row moves from `version` to `version + 1`.
    pub fn commit_step(&mut self, st: &ExecState, version: i64, step: &Step) -> Result<i64> {
        self.commit_step_guarded(st, version, step, |_| Ok(true)).map(|v| v.unwrap_or(version))
    }

    /// [`Store::commit_step`], with a guard checked inside the same transaction before
    /// anything is written: `Ok(None)` (nothing written) when the guard says no. What the
    /// guard reads (a claim, say) cannot change between its check and the step's commit.
    pub fn commit_step_guarded(
        &mut self,
        st: &ExecState,
        version: i64,
        step: &Step,
        guard: impl FnOnce(&TxView<'_>) -> Result<bool>,
    ) -> Result<Option<i64>> {
        let current = st.root_state();
        // IMMEDIATE: the guard reads before anything is written, and a deferred transaction
        // that another writer overtook between that read and its first write could not
        // upgrade (SQLite answers "database is locked" at once, without waiting).
        let tx = self.conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        if !guard(&TxView(&tx))? {
            return Ok(None);
        }
        let snapshot = serde_json::to_string(st).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let n = tx
            .prepare_cached(
                "UPDATE executions SET status = ?2, stop_ms = ?3, output = ?4, error = ?5, cause = ?6, redrive_count = ?7, redrive_ms = ?8,
                snapshot = ?9, version = version + 1, current_state = COALESCE(?11, current_state), state_since_ms = COALESCE(?12, state_since_ms)
             WHERE arn = ?1 AND version = ?10",
            )?
            .execute(params![
                st.info.execution_arn,
                st.status.as_str(),
                st.stop_time.map(ms),
                st.output.as_ref().map(|o| serde_json::to_string(o).unwrap_or_default()),
                st.error,
                st.cause,
                st.info.redrive_count,
                st.info.redrive_time.map(ms),
                                snapshot,
                version,
                current.as_ref().map(|c| c.0.clone()),
                current.as_ref().map(|c| ms(c.1)),
        ])?;
        if n == 0 {
            return Err(StoreError::Conflict(st.info.execution_arn.clone()));
        }
        write_step(&tx, st, step)?;
        // The step is done: the mark that it was being applied goes with it.
        tx.prepare_cached("DELETE FROM crashed WHERE execution_arn = ?1")?.execute([&st.info.execution_arn])?;
        tx.commit()?;
        Ok(Some(version + 1))
    }

    /// Whether work on `arn` at `version` may go ahead: how often a process died doing it
    /// (recorded from the engines' journals by [`Store::record_crash`]). None: go; one: this
    /// is the one more try; two: do not try a third time ([`ApplyMark::Quarantine`]).
    pub fn apply_verdict(&self, arn: &str, version: i64) -> Result<ApplyMark> {
        Ok(ApplyMark::of(self.crash_record(arn)?, version))
    }

    /// The crashes recorded against `arn`, if any.
    pub fn crash_record(&self, arn: &str) -> Result<Option<CrashRecord>> {
        Ok(self
            .conn
            .prepare_cached("SELECT version, tries, input, first_ms FROM crashed WHERE execution_arn = ?1")?
            .query_row([arn], |r| Ok(CrashRecord { version: r.get(0)?, tries: r.get(1)?, input: r.get(2)?, first: from_ms(r.get(3)?) }))
            .optional()?)
    }

    /// A process died working on `arn` at `version` (applying `input`): one more crash at
    /// that version, or the first (a record of another version is stale and replaced).
    pub fn record_crash(&self, arn: &str, version: i64, input: &str, now: DateTime<Utc>) -> Result<()> {
        // IMMEDIATE: read, then write, with no other writer in between.
        let tx = rusqlite::Transaction::new_unchecked(&self.conn, rusqlite::TransactionBehavior::Immediate)?;
        let same: Option<i64> = tx
            .query_row("SELECT tries FROM crashed WHERE execution_arn = ?1 AND version = ?2", params![arn, version], |r| r.get(0))
            .optional()?;
        match same {
            Some(_) => tx.execute("UPDATE crashed SET tries = tries + 1 WHERE execution_arn = ?1", [arn])?,
            None => tx.execute(
                "INSERT OR REPLACE INTO crashed (execution_arn, version, tries, input, first_ms) VALUES (?1, ?2, 1, ?3, ?4)",
                params![arn, version, input, ms(now)],
            )?,
        };
        tx.commit()?;
        Ok(())
    }

    /// Let a quarantined execution try once more: back to RUNNING from the state it had
    /// before the input that crashed the engine (kept in its snapshot), with an
    /// `ExecutionRedriven` event, and marked as one crash down so that another crash
    /// quarantines it again at once. `false` when `arn` is not a quarantined execution.
    pub fn release_quarantine(&self, arn: &str, now: DateTime<Utc>) -> Result<bool> {
        let now_ms = ms(now);
        let tx = rusqlite::Transaction::new_unchecked(&self.conn, rusqlite::TransactionBehavior::Immediate)?;
        let row: Option<(String, i64, i64, Option<i64>)> = tx
            .query_row(
                "SELECT snapshot, redrive_count, version, stop_ms FROM executions WHERE arn = ?1 AND status = 'FAILED' AND error = ?2",
                params![arn, QUARANTINED],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()?;
        let Some((snapshot, redrive_count, version, stop_ms)) = row else { return Ok(false) };
        let mut snap: serde_json::Value = serde_json::from_str(&snapshot).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let count = redrive_count.saturating_add(1);
        let last: i64 = tx.query_row("SELECT COALESCE(MAX(id), 0) FROM history WHERE execution_arn = ?1", [arn], |r| r.get(0))?;
        if let Some(o) = snap.as_object_mut() {
            // Events go on after the failure and the redrive written here.
            o.insert("next_event_id".into(), serde_json::Value::from(last + 2));
            o.insert("status".into(), serde_json::to_value(ExecutionStatus::Running).unwrap_or(serde_json::Value::Null));
            for k in ["error", "cause", "stop_time"] {
                o.insert(k.into(), serde_json::Value::Null);
            }
            if let Some(info) = o.get_mut("info").and_then(|i| i.as_object_mut()) {
                info.insert("redrive_count".into(), serde_json::Value::from(count));
                info.insert("redrive_time".into(), serde_json::to_value(now).unwrap_or(serde_json::Value::Null));
            }
        }
        // The state must still read as an execution before it is put back to work.
        let st: ExecState = serde_json::from_value(snap).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let details = serde_json::json!({ "redriveCount": count });
        tx.execute(
            "INSERT INTO history (execution_arn, id, previous_id, ts_ms, type, details) VALUES (?1, ?2, ?3, ?4, 'ExecutionRedriven', ?5)",
            params![arn, last + 1, last, now_ms, details.to_string()],
        )?;
        let snapshot = serde_json::to_string(&st).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        tx.execute(
            "UPDATE executions SET status = 'RUNNING', stop_ms = NULL, error = NULL, cause = NULL, snapshot = ?2,
             redrive_count = ?3, redrive_ms = ?4, version = version + 1 WHERE arn = ?1",
            params![arn, snapshot, count, now_ms],
        )?;
        // The reviews it waited on wait again (quarantine closed them as it failed the
        // execution), and its timer is back.
        tx.execute(
            "UPDATE task_tokens SET status = 'PENDING', closed_ms = NULL WHERE execution_arn = ?1 AND status = 'ABORTED' AND closed_ms = ?2",
            params![arn, stop_ms],
        )?;
        write_timer(&tx, &st)?;
        // One more try: the next crash at this version is the second.
        tx.execute(
            "INSERT OR REPLACE INTO crashed (execution_arn, version, tries, input, first_ms) VALUES (?1, ?2, 1, 'a release', ?3)",
            params![arn, version + 1, now_ms],
        )?;
        tx.commit()?;
        Ok(true)
    }

    pub fn load(&self, arn: &str) -> Result<Option<Loaded>> {
        type Row = (String, String, i64, Option<i64>, Option<String>, Option<i64>);
        let row: Option<Row> = self
            .conn
            .prepare_cached(
                "SELECT e.snapshot, d.definition, e.version, c.tries, c.input, c.first_ms FROM executions e
                 JOIN definitions d ON d.hash = e.definition_hash
                 LEFT JOIN crashed c ON c.execution_arn = e.arn AND c.version = e.version WHERE e.arn = ?1",
            )?
            .query_row([arn], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?)))
            .optional()?;
        let Some((snap, definition, version, tries, input, first_ms)) = row else { return Ok(None) };
        let state: ExecState = serde_json::from_str(&snap).map_err(|e| StoreError::Corrupt(format!("snapshot of {arn}: {e}")))?;
        let crash =
            tries.map(|tries| CrashRecord { version, tries, input: input.unwrap_or_default(), first: from_ms(first_ms.unwrap_or(0)) });
        Ok(Some(Loaded { state, definition, version, crash }))
    }

    pub fn execution(&self, arn: &str) -> Result<Option<ExecutionSummary>> {
        Ok(self.conn.query_row(&format!("SELECT {EXEC_COLS} FROM executions WHERE arn = ?1"), [arn], exec_row).optional()?)
    }

    pub fn executions(&self, f: &ExecutionFilter) -> Result<Vec<ExecutionSummary>> {
        let mut sql = format!("SELECT {EXEC_COLS} FROM executions WHERE 1=1");
        let mut args: Vec<rusqlite::types::Value> = vec![];
        if let Some(sm) = &f.state_machine_arn {
            sql.push_str(" AND state_machine_arn = ?");
            args.push(sm.clone().into());
        }
        if let Some(s) = f.status {
            sql.push_str(" AND status = ?");
            args.push(s.as_str().to_string().into());
        }
        if f.redriven {
            sql.push_str(" AND redrive_count > 0");
        }
        if let Some((start, arn)) = &f.after {
            sql.push_str(" AND (start_ms < ? OR (start_ms = ? AND arn > ?))");
            args.push((*start).into());
            args.push((*start).into());
            args.push(arn.clone().into());
        }
        sql.push_str(" ORDER BY start_ms DESC, arn ASC LIMIT ?");
        args.push((f.limit.max(1) as i64).into());
        let mut st = self.conn.prepare(&sql)?;
        let rows = st.query_map(rusqlite::params_from_iter(args), exec_row)?;
        Ok(rows.collect::<std::result::Result<_, _>>()?)
    }

    /// The newest execution with this name or ARN, or whose input's `accession` is `needle`.
    pub fn find_execution(&self, needle: &str) -> Result<Option<String>> {
        Ok(self
            .conn
            .query_row(
                "SELECT arn FROM executions WHERE arn = ?1 OR name = ?1 OR json_extract(input, '$.accession') = ?1 COLLATE NOCASE
                 ORDER BY start_ms DESC LIMIT 1",
                [needle],
                |r| r.get(0),
            )
            .optional()?)
    }

    pub fn count_executions(&self) -> Result<Vec<(String, i64)>> {
        let mut st = self.conn.prepare("SELECT status, COUNT(*) FROM executions GROUP BY status")?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<std::result::Result<_, _>>()?)
    }

    /// What changed of every execution that is running or stopped at or after `since`: its
    /// version (every step, stop and redrive moves it on), status and where it is. No input,
    /// output or snapshot is read: a watcher compares versions and asks for more only on a change.
    pub fn execution_heads(&self, since: DateTime<Utc>) -> Result<Vec<ExecutionHead>> {
        let mut st = self.conn.prepare_cached(
            "SELECT arn, version, status, stop_ms, current_state FROM executions WHERE status = 'RUNNING' OR stop_ms >= ?1",
        )?;
        let rows = st.query_map([ms(since)], |r| {
            let status: String = r.get(2)?;
            Ok(ExecutionHead {
                arn: r.get(0)?,
                version: r.get(1)?,
                status: ExecutionStatus::parse(&status).unwrap_or(ExecutionStatus::Failed),
                stop: r.get::<_, Option<i64>>(3)?.map(from_ms),
                current_state: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<std::result::Result<_, _>>()?)
    }

    pub fn history(&self, arn: &str, after_id: i64, limit: usize, reverse: bool) -> Result<Vec<HistoryEvent>> {
        let sql = if reverse {
            "SELECT id, previous_id, ts_ms, type, details FROM history WHERE execution_arn = ?1 AND id < ?2 ORDER BY id DESC LIMIT ?3"
        } else {
            "SELECT id, previous_id, ts_ms, type, details FROM history WHERE execution_arn = ?1 AND id > ?2 ORDER BY id ASC LIMIT ?3"
        };
        let after = if reverse && after_id <= 0 { i64::MAX } else { after_id };
        let mut st = self.conn.prepare_cached(sql)?;
        let rows = st.query_map(params![arn, after, limit as i64], |r| {
            let details: Option<String> = r.get(4)?;
            Ok(HistoryEvent {
                id: r.get(0)?,
                previous_event_id: r.get(1)?,
                timestamp: from_ms(r.get(2)?),
                event_type: r.get(3)?,
                details: details.and_then(|d| serde_json::from_str(&d).ok()).unwrap_or(Value::Null),
            })
        })?;
        Ok(rows.collect::<std::result::Result<_, _>>()?)
    }

    // ----- leases and due work ----------------------------------------------

    /// Try to take the lease on an execution. `false` if another owner holds a live lease.
    /// A lease whose owner process has died (see [`owner_alive`]) is taken over at once.
    pub fn acquire_lease(&self, arn: &str, owner: &str, now: DateTime<Utc>, ttl_ms: i64) -> Result<bool> {
        let n = self.conn.execute(
            "UPDATE executions SET lease_owner = ?2, lease_until_ms = ?3
             WHERE arn = ?1 AND (lease_owner IS NULL OR lease_owner = ?2 OR lease_until_ms < ?4)",
            params![arn, owner, ms(now) + ttl_ms, ms(now)],
        )?;
        if n > 0 {
            return Ok(true);
        }
        let holder: Option<Option<String>> =
            self.conn.query_row("SELECT lease_owner FROM executions WHERE arn = ?1", [arn], |r| r.get(0)).optional()?;
        match holder {
            Some(Some(h)) if !owner_alive(&h) => {
                let n = self.conn.execute(
                    "UPDATE executions SET lease_owner = ?2, lease_until_ms = ?3 WHERE arn = ?1 AND lease_owner = ?4",
                    params![arn, owner, ms(now) + ttl_ms, h],
                )?;
                Ok(n > 0)
            }
            _ => Ok(false),
        }
    }

    /// Take the leases of many executions in one transaction; returns those now held.
    pub fn claim(&mut self, arns: &[String], owner: &str, now: DateTime<Utc>, ttl_ms: i64) -> Result<Vec<String>> {
        let tx = self.conn.transaction()?;
        let mut got = vec![];
        {
            let mut up = tx.prepare_cached(
                "UPDATE executions SET lease_owner = ?2, lease_until_ms = ?3
                 WHERE arn = ?1 AND (lease_owner IS NULL OR lease_owner = ?2 OR lease_until_ms < ?4)",
            )?;
            let mut holder = tx.prepare_cached("SELECT lease_owner FROM executions WHERE arn = ?1")?;
            let mut steal =
                tx.prepare_cached("UPDATE executions SET lease_owner = ?2, lease_until_ms = ?3 WHERE arn = ?1 AND lease_owner = ?4")?;
            for arn in arns {
                if up.execute(params![arn, owner, ms(now) + ttl_ms, ms(now)])? > 0 {
                    got.push(arn.clone());
                    continue;
                }
                let h: Option<Option<String>> = holder.query_row([arn], |r| r.get(0)).optional()?;
                if let Some(Some(h)) = h
                    && !owner_alive(&h)
                    && steal.execute(params![arn, owner, ms(now) + ttl_ms, h])? > 0
                {
                    got.push(arn.clone());
                }
            }
        }
        tx.commit()?;
        Ok(got)
    }

    /// Finish a running execution without the core: status, stop time, one history event
    /// (`ExecutionAborted` or `ExecutionFailed`) with its outbox row, its pending tokens
    /// closed, its timer removed, all in one transaction. The version moves on, so a step
    /// still being computed from the old state cannot commit. Returns false when the
    /// execution was not running.
    pub fn finish_directly(
        &self,
        arn: &str,
        status: ExecutionStatus,
        error: Option<&str>,
        cause: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let now_ms = ms(now);
        let event = match status {
            ExecutionStatus::Aborted => "ExecutionAborted",
            _ => "ExecutionFailed",
        };
        let mut details = serde_json::Map::new();
        if let Some(e) = error {
            details.insert("error".into(), serde_json::Value::String(e.to_string()));
        }
        if let Some(c) = cause {
            details.insert("cause".into(), serde_json::Value::String(c.to_string()));
        }
        let details = serde_json::Value::Object(details);
        // IMMEDIATE: it reads the row, then writes (see `commit_step_guarded`).
        let tx = rusqlite::Transaction::new_unchecked(&self.conn, rusqlite::TransactionBehavior::Immediate)?;
        type Row = (String, String, String, i64, String, i64, Option<i64>);
        let row: Option<Row> = tx
            .query_row(
                "SELECT snapshot, state_machine_arn, name, start_ms, input, redrive_count, redrive_ms
                 FROM executions WHERE arn = ?1 AND status = 'RUNNING'",
                [arn],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?)),
            )
            .optional()?;
        let Some((snapshot, state_machine_arn, name, start_ms, input, redrive_count, redrive_ms)) = row else { return Ok(false) };
        let last: i64 = tx.query_row("SELECT COALESCE(MAX(id), 0) FROM history WHERE execution_arn = ?1", [arn], |r| r.get(0))?;
        // Keep the snapshot in step with the row when it can be read; leave it alone otherwise.
        let snapshot = match serde_json::from_str::<serde_json::Value>(&snapshot) {
            Ok(serde_json::Value::Object(mut o)) => {
                // A redrive (or a release) goes on after the event written here.
                o.insert("next_event_id".into(), serde_json::Value::from(last + 2));
                o.insert("status".into(), serde_json::to_value(status).unwrap_or(serde_json::Value::Null));
                o.insert("error".into(), error.map_or(serde_json::Value::Null, |e| serde_json::Value::String(e.into())));
                o.insert("cause".into(), cause.map_or(serde_json::Value::Null, |c| serde_json::Value::String(c.into())));
                o.insert("stop_time".into(), serde_json::to_value(now).unwrap_or(serde_json::Value::Null));
                serde_json::Value::Object(o).to_string()
            }
            _ => snapshot,
        };
        tx.execute(
            "INSERT INTO history (execution_arn, id, previous_id, ts_ms, type, details) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![arn, last + 1, last, now_ms, event, details.to_string()],
        )?;
        tx.execute(
            "UPDATE executions SET status = ?2, stop_ms = ?3, error = ?4, cause = ?5, snapshot = ?6, version = version + 1 WHERE arn = ?1",
            params![arn, status.as_str(), now_ms, error, cause, snapshot],
        )?;
        tx.execute("DELETE FROM timers WHERE execution_arn = ?1", [arn])?;
        tx.execute("DELETE FROM crashed WHERE execution_arn = ?1", [arn])?;
        tx.execute(
            "UPDATE task_tokens SET status = 'ABORTED', closed_ms = ?2 WHERE execution_arn = ?1 AND status = 'PENDING'",
            params![arn, now_ms],
        )?;
        if let Some(topic) = outbox_topic(event) {
            let ev = crate::history::HistoryEvent {
                id: last + 1,
                previous_event_id: last,
                timestamp: now,
                event_type: event.to_string(),
                details,
            };
            let facts = crate::events::ExecutionFacts {
                execution_arn: arn,
                state_machine_arn: &state_machine_arn,
                name: &name,
                start: from_ms(start_ms),
                input: &input,
                redrive_count: u32::try_from(redrive_count).unwrap_or(0),
                redrive_date: redrive_ms.map(from_ms),
            };
            if let Some(payload) = outbox_payload(&facts, &ev, None) {
                tx.execute(
                    "INSERT OR IGNORE INTO outbox (execution_arn, event_id, topic, payload, created_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![arn, last + 1, topic, payload.to_string(), now_ms],
                )?;
            }
        }
        tx.commit()?;
        Ok(true)
    }

    /// Give back many leases in one transaction.
    pub fn release_many(&mut self, arns: &[String], owner: &str) -> Result<()> {
        let tx = self.conn.transaction()?;
        {
            let mut st =
                tx.prepare_cached("UPDATE executions SET lease_owner = NULL, lease_until_ms = NULL WHERE arn = ?1 AND lease_owner = ?2")?;
            for arn in arns {
                st.execute(params![arn, owner])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    pub fn release_lease(&self, arn: &str, owner: &str) -> Result<()> {
        self.conn.execute(
            "UPDATE executions SET lease_owner = NULL, lease_until_ms = NULL WHERE arn = ?1 AND lease_owner = ?2",
            params![arn, owner],
        )?;
        Ok(())
    }

    /// Executions with a timer due at `now` and no live lease held by someone else.
    pub fn due(&self, now: DateTime<Utc>, owner: &str, limit: usize) -> Result<Vec<String>> {
        let mut st = self.conn.prepare_cached(
            "SELECT t.execution_arn, e.lease_owner, e.lease_until_ms FROM timers t JOIN executions e ON e.arn = t.execution_arn
             WHERE t.fire_ms <= ?1 ORDER BY t.fire_ms LIMIT ?2",
        )?;
        let rows = st.query_map(params![ms(now), (limit * 4) as i64], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?, r.get::<_, Option<i64>>(2)?))
        })?;
        let mut out = vec![];
        for row in rows {
            let (arn, holder, until) = row?;
            let free = match holder {
                None => true,
                Some(h) => h == owner || until.is_none_or(|u| u < ms(now)) || !owner_alive(&h),
            };
            if free {
                out.push(arn);
                if out.len() >= limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// The earliest timer in the store.
    pub fn next_timer(&self) -> Result<Option<DateTime<Utc>>> {
        let v: Option<i64> = self.conn.query_row("SELECT MIN(fire_ms) FROM timers", [], |r| r.get(0))?;
        Ok(v.map(from_ms))
    }

    // ----- task tokens ------------------------------------------------------

    pub fn token(&self, token: &str) -> Result<Option<PendingTask>> {
        Ok(self.conn.query_row(&format!("SELECT {TOKEN_COLS} FROM {TOKEN_FROM} WHERE t.token = ?1"), [token], token_row).optional()?)
    }

    /// Find a token by a unique prefix (operators paste shortened tokens).
    pub fn tokens_with_prefix(&self, prefix: &str, limit: usize) -> Result<Vec<PendingTask>> {
        let mut st =
            self.conn.prepare(&format!("SELECT {TOKEN_COLS} FROM {TOKEN_FROM} WHERE t.token >= ?1 AND t.token < ?1 || x'ff' LIMIT ?2"))?;
        let rows = st.query_map(params![prefix, limit as i64], token_row)?;
        Ok(rows.collect::<std::result::Result<_, _>>()?)
    }

    pub fn tokens(&self, status: Option<&str>, execution: Option<&str>, limit: usize) -> Result<Vec<PendingTask>> {
        let mut sql = format!("SELECT {TOKEN_COLS} FROM {TOKEN_FROM} WHERE 1=1");
        let mut args: Vec<rusqlite::types::Value> = vec![];
        if let Some(s) = status {
            sql.push_str(" AND t.status = ?");
            args.push(s.to_string().into());
        }
        if let Some(e) = execution {
            sql.push_str(" AND t.execution_arn = ?");
            args.push(e.to_string().into());
        }
        sql.push_str(" ORDER BY t.issued_ms ASC LIMIT ?");
        args.push((limit as i64).into());
        let mut st = self.conn.prepare(&sql)?;
        let rows = st.query_map(rusqlite::params_from_iter(args), token_row)?;
        Ok(rows.collect::<std::result::Result<_, _>>()?)
    }

    /// Claim a task for `by`. `Ok(None)` when claimed (or already theirs); `Ok(Some(holder))`
    /// when someone else holds it.
    pub fn claim_task(&self, token: &str, by: &str, now: DateTime<Utc>) -> Result<Option<String>> {
        self.conn
            .execute("INSERT OR IGNORE INTO claims (token, claimed_by, claimed_ms) VALUES (?1, ?2, ?3)", params![token, by, ms(now)])?;
        let holder: String = self.conn.query_row("SELECT claimed_by FROM claims WHERE token = ?1", [token], |r| r.get(0))?;
        Ok((holder != by).then_some(holder))
    }

    /// Give a claim back. `Ok(Some(holder))` when someone else holds it (nothing changes).
    pub fn unclaim_task(&self, token: &str, by: &str) -> Result<Option<String>> {
        let holder: Option<String> =
            self.conn.query_row("SELECT claimed_by FROM claims WHERE token = ?1", [token], |r| r.get(0)).optional()?;
        match holder {
            Some(h) if h != by => Ok(Some(h)),
            _ => {
                self.conn.execute("DELETE FROM claims WHERE token = ?1", [token])?;
                Ok(None)
            }
        }
    }

    // ----- outbox -----------------------------------------------------------

    /// Write a Lightbox event (EventBridge shape, `source` "lightbox") to the outbox, once:
    /// the row is keyed by `stream` (an execution ARN, or `lightbox:<kind>` for events of no
    /// execution; rows of one stream are relayed in order) and by the event `id`, which names
    /// the business transition (e.g. `slo:<name>:<arn>:breached`). Writing the same id again
    /// writes nothing and returns false.
    pub fn emit_event(
        &self,
        stream: &str,
        id: &str,
        detail_type: &str,
        at: DateTime<Utc>,
        resources: &[String],
        detail: serde_json::Value,
    ) -> Result<bool> {
        emit_event_with(&self.conn, stream, id, detail_type, at, resources, detail)
    }

    /// Outbox rows after `id`, oldest first.
    pub fn outbox_after(&self, id: i64, limit: usize) -> Result<Vec<OutboxRow>> {
        self.outbox_query("SELECT id, execution_arn, event_id, topic, payload FROM outbox WHERE id > ?1 ORDER BY id LIMIT ?2", id, limit)
    }

    /// The newest `limit` outbox rows, newest first.
    pub fn outbox_latest(&self, limit: usize) -> Result<Vec<OutboxRow>> {
        self.outbox_query(
            "SELECT id, execution_arn, event_id, topic, payload FROM outbox WHERE id > ?1 ORDER BY id DESC LIMIT ?2",
            0,
            limit,
        )
    }

    fn outbox_query(&self, sql: &str, id: i64, limit: usize) -> Result<Vec<OutboxRow>> {
        let mut st = self.conn.prepare_cached(sql)?;
        let rows = st.query_map(params![id, limit as i64], |r| {
            Ok(OutboxRow { id: r.get(0)?, execution_arn: r.get(1)?, event_id: r.get(2)?, topic: r.get(3)?, payload: r.get(4)? })
        })?;
        Ok(rows.collect::<std::result::Result<_, _>>()?)
    }

    pub fn outbox(&self, only_unrelayed: bool, limit: usize) -> Result<Vec<OutboxRow>> {
        let sql = if only_unrelayed {
            "SELECT id, execution_arn, event_id, topic, payload FROM outbox WHERE relayed_ms IS NULL ORDER BY id LIMIT ?1"
        } else {
            "SELECT id, execution_arn, event_id, topic, payload FROM outbox ORDER BY id LIMIT ?1"
        };
        let mut st = self.conn.prepare(sql)?;
        let rows = st.query_map([limit as i64], |r| {
            Ok(OutboxRow { id: r.get(0)?, execution_arn: r.get(1)?, event_id: r.get(2)?, topic: r.get(3)?, payload: r.get(4)? })
        })?;
        Ok(rows.collect::<std::result::Result<_, _>>()?)
    }
}

/// On a clean close, checkpoint and remember the file as good, so the next open skips
/// the quick check unless something else changed the file in between.
impl Drop for Store {
    fn drop(&mut self) {
        if self.read_only || !self.good {
            return;
        }
        let Some(path) = self.path.clone() else { return };
        let full = self
            .conn
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?)));
        if !matches!(full, Ok((0, log, done)) if log == done) {
            return;
        }
        // Stamp the files as closing leaves them (the last connection removes the -wal).
        let Ok(spare) = Connection::open_in_memory() else { return };
        let conn = std::mem::replace(&mut self.conn, spare);
        if conn.close().is_ok() {
            files::mark_good(&path);
        }
    }
}

/// Whether the database has the Lightbox tables, and the store id it holds (if any).
/// Reads only: run before anything is created in the file.
fn identity(conn: &Connection) -> rusqlite::Result<(bool, Option<String>)> {
    let has = |name: &str| {
        conn.query_row("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = ?1", [name], |r| r.get::<_, i64>(0))
            .map(|n| n > 0)
    };
    let tables = has("executions")?;
    let id = if has("meta")? {
        conn.query_row("SELECT value FROM meta WHERE key = 'store_id'", [], |r| r.get::<_, String>(0)).optional()?
    } else {
        None
    };
    Ok((tables, id))
}

/// With the creation marker present, the database must be that store: Lightbox tables,
/// and the marker's id (a store made before the database kept its id has none yet).
fn check_identity(path: &Path, tables: bool, id: Option<&str>) -> Result<()> {
    let Some(expected) = files::marker_id(path) else { return Ok(()) };
    let shown = path.display().to_string();
    let marker = marker_path(path).display().to_string();
    if !tables {
        let detail = "the database file holds no Lightbox tables (it was replaced by another or a new database)".to_string();
        return Err(StoreError::Lost { path: shown, detail, marker });
    }
    match id {
        Some(found) if found != expected => Err(StoreError::Replaced { path: shown, found: found.to_string(), expected, marker }),
        _ => Ok(()),
    }
}

fn pragma_check(conn: &Connection, pragma: &str) -> Result<Option<String>> {
    let mut st = conn.prepare(&format!("PRAGMA {pragma}(20)"))?;
    let rows = st.query_map([], |r| r.get::<_, String>(0))?;
    let mut problems = vec![];
    for r in rows {
        let r = r?;
        if r != "ok" {
            problems.push(r);
        }
    }
    Ok((!problems.is_empty()).then(|| format!("{pragma} found: {}", problems.join("; "))))
}

/// Lease owners are `<pid>-<random>`. The store is a local file, so an owner whose
/// process no longer exists on this host holds nothing. Where that cannot be told,
/// the owner counts as alive and its lease runs out by time.
pub fn owner_alive(owner: &str) -> bool {
    let Some(pid) = owner.split('-').next().and_then(|p| p.parse::<u32>().ok()) else { return true };
    if pid == std::process::id() {
        return true;
    }
    let proc_dir = Path::new("/proc");
    if !proc_dir.is_dir() {
        return true;
    }
    // A zombie (killed, not yet reaped) holds nothing either.
    match std::fs::read_to_string(proc_dir.join(pid.to_string()).join("stat")) {
        Ok(stat) => !stat.rsplit(')').next().is_some_and(|rest| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

const EXEC_COLS: &str = "arn, state_machine_arn, name, status, start_ms, stop_ms, input, output, error, cause, redrive_count, redrive_ms, current_state, state_since_ms";

fn exec_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ExecutionSummary> {
    let status: String = r.get(3)?;
    Ok(ExecutionSummary {
        arn: r.get(0)?,
        state_machine_arn: r.get(1)?,
        name: r.get(2)?,
        status: ExecutionStatus::parse(&status).unwrap_or(ExecutionStatus::Failed),
        start: from_ms(r.get(4)?),
        stop: r.get::<_, Option<i64>>(5)?.map(from_ms),
        input: r.get(6)?,
        output: r.get(7)?,
        error: r.get(8)?,
        cause: r.get(9)?,
        redrive_count: r.get(10)?,
        redrive: r.get::<_, Option<i64>>(11)?.map(from_ms),
        current_state: r.get(12)?,
        state_since: r.get::<_, Option<i64>>(13)?.map(from_ms),
    })
}

const TOKEN_COLS: &str = "t.token, t.execution_arn, t.task_id, t.state_name, t.resource, t.parameters, t.status, t.issued_ms, \
     t.timeout_ms, t.heartbeat_ms, t.closed_ms, c.claimed_by";
const TOKEN_FROM: &str = "task_tokens t LEFT JOIN claims c ON c.token = t.token";

fn token_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<PendingTask> {
    Ok(PendingTask {
        token: r.get(0)?,
        execution_arn: r.get(1)?,
        task_id: r.get(2)?,
        state_name: r.get(3)?,
        resource: r.get(4)?,
        parameters: r.get(5)?,
        status: r.get(6)?,
        issued: from_ms(r.get(7)?),
        timeout: r.get::<_, Option<i64>>(8)?.map(from_ms),
        heartbeat: r.get::<_, Option<i64>>(9)?.map(from_ms),
        closed: r.get::<_, Option<i64>>(10)?.map(from_ms),
        claimed_by: r.get(11)?,
    })
}

fn insert_in(tx: &rusqlite::Transaction<'_>, st: &ExecState, definition: &str, step: &Step) -> Result<bool> {
    let snapshot = serde_json::to_string(st).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let hash = definition_hash(definition);
    tx.prepare_cached("INSERT OR IGNORE INTO definitions (hash, definition) VALUES (?1, ?2)")?.execute(params![hash, definition])?;
    let n = tx
        .prepare_cached(
            "INSERT OR IGNORE INTO executions (arn, state_machine_arn, name, status, start_ms, stop_ms, input, output, error, cause,
            redrive_count, redrive_ms, definition_hash, snapshot, version, current_state, state_since_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, 1, ?15, ?16)",
        )?
        .execute(params![
            st.info.execution_arn,
            st.info.state_machine_arn,
            st.info.name,
            st.status.as_str(),
            ms(st.info.start_time),
            st.stop_time.map(ms),
            serde_json::to_string(&st.info.input).unwrap_or_default(),
            st.output.as_ref().map(|o| serde_json::to_string(o).unwrap_or_default()),
            st.error,
            st.cause,
            st.info.redrive_count,
            st.info.redrive_time.map(ms),
            hash,
            snapshot,
            st.root_state().map(|c| c.0),
            st.root_state().map(|c| ms(c.1)),
        ])?;
    if n == 0 {
        return Ok(false);
    }
    write_step(tx, st, step)?;
    Ok(true)
}

/// Definitions are stored once, keyed by their SHA-256.
pub fn definition_hash(definition: &str) -> String {
    use sha2::Digest as _;
    let d = sha2::Sha256::digest(definition.as_bytes());
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// [`Store::emit_event`] on any connection or open transaction (so an event can commit with
/// the change it reports).
pub fn emit_event_with(
    conn: &rusqlite::Connection,
    stream: &str,
    id: &str,
    detail_type: &str,
    at: DateTime<Utc>,
    resources: &[String],
    detail: serde_json::Value,
) -> Result<bool> {
    let event = crate::events::lightbox_event(id, detail_type, at, resources, detail);
    let n = conn
        .prepare_cached("INSERT OR IGNORE INTO outbox (execution_arn, event_id, topic, payload, created_ms) VALUES (?1, ?2, ?3, ?4, ?5)")?
        .execute(params![stream, crate::events::id_number(id), crate::events::LIGHTBOX_SOURCE, event.to_string(), ms(at)])?;
    Ok(n == 1)
}

/// An outbox row's payload: the EventBridge event a history event becomes (AWS's status
/// change for execution events, a Lightbox task event naming its state for task events).
fn outbox_payload(
    f: &crate::events::ExecutionFacts<'_>,
    e: &crate::history::HistoryEvent,
    state: Option<&str>,
) -> Option<serde_json::Value> {
    if crate::events::status_of(&e.event_type).is_some() {
        crate::events::status_change(f, e)
    } else {
        crate::events::task_event(f, e, state.or_else(|| e.state_name()))
    }
}

/// Everything a step writes besides the execution row.
/// The execution's one timer: when the shell must next look at it (now, when it has local
/// work; its next wake otherwise; none when it waits only for the outside).
fn write_timer(tx: &rusqlite::Transaction<'_>, st: &ExecState) -> Result<()> {
    let arn = &st.info.execution_arn;
    tx.prepare_cached("DELETE FROM timers WHERE execution_arn = ?1")?.execute([arn])?;
    let local_work = st.status == ExecutionStatus::Running && !st.outstanding_tasks().is_empty();
    let wake = match (st.next_wake(), local_work) {
        (_, true) => Some(st.info.start_time.min(Utc::now())),
        (w, false) => w,
    };
    if let Some(w) = wake {
        tx.prepare_cached("INSERT INTO timers (execution_arn, fire_ms) VALUES (?1, ?2)")?.execute(params![arn, ms(w)])?;
    }
    Ok(())
}

fn write_step(tx: &rusqlite::Transaction<'_>, st: &ExecState, step: &Step) -> Result<()> {
    let arn = &st.info.execution_arn;
    {
        let mut ins = tx
            .prepare_cached("INSERT INTO history (execution_arn, id, previous_id, ts_ms, type, details) VALUES (?1, ?2, ?3, ?4, ?5, ?6)")?;
        let mut outbox =
            tx.prepare_cached("INSERT INTO outbox (execution_arn, event_id, topic, payload, created_ms) VALUES (?1, ?2, ?3, ?4, ?5)")?;
        let mut input: Option<String> = None;
        for e in &step.events {
            let details = if e.details.is_null() { None } else { Some(e.details.to_string()) };
            ins.execute(params![arn, e.id, e.previous_event_id, ms(e.timestamp), e.event_type, details])?;
            if let Some(topic) = outbox_topic(&e.event_type) {
                let state = step.event_states.iter().find(|(id, _)| *id == e.id).map(|(_, s)| s.as_str());
                let facts = crate::events::ExecutionFacts {
                    execution_arn: arn,
                    state_machine_arn: &st.info.state_machine_arn,
                    name: &st.info.name,
                    start: st.info.start_time,
                    input: input.get_or_insert_with(|| st.info.input.to_string()),
                    redrive_count: st.info.redrive_count,
                    redrive_date: st.info.redrive_time,
                };
                if let Some(payload) = outbox_payload(&facts, e, state) {
                    outbox.execute(params![arn, e.id, topic, payload.to_string(), ms(e.timestamp)])?;
                }
            }
        }
    }
    write_timer(tx, st)?;
    {
        let mut ins = tx.prepare_cached(
            "INSERT INTO task_tokens (token, execution_arn, task_id, state_name, resource, parameters, status, issued_ms, timeout_ms, heartbeat_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'PENDING', ?7, ?8, ?9)",
        )?;
        for t in &step.tokens_issued {
            ins.execute(params![
                t.token,
                arn,
                t.task_id,
                t.state,
                t.resource,
                t.parameters.to_string(),
                ms(t.issued_at),
                t.timeout_at.map(ms),
                t.heartbeat_at.map(ms)
            ])?;
        }
        let mut upd = tx.prepare_cached("UPDATE task_tokens SET status = ?2, closed_ms = ?3 WHERE token = ?1 AND status = 'PENDING'")?;
        let now = step.events.last().map(|e| ms(e.timestamp)).unwrap_or_else(|| ms(Utc::now()));
        for (tok, outcome) in &step.tokens_closed {
            upd.execute(params![tok, outcome_str(*outcome), now])?;
        }
    }
    Ok(())
}

fn outcome_str(o: TokenOutcome) -> &'static str {
    o.as_str()
}

/// Where the heartbeat of a pending token moved to (heartbeats change no history).
pub fn touch_heartbeat(store: &Store, token: &str, at: Option<DateTime<Utc>>) -> Result<()> {
    store.conn.execute("UPDATE task_tokens SET heartbeat_ms = ?2 WHERE token = ?1", params![token, at.map(ms)])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_machine_page_reads_only_its_rows_and_no_definitions() {
        let s = Store::in_memory().expect("store");
        for name in ["c", "a", "d", "b"] {
            let row = StateMachineRow {
                arn: format!("arn:aws:states:us-east-1:000000000000:stateMachine:{name}"),
                name: name.into(),
                definition: "x".repeat(1000),
                role_arn: "arn:aws:iam::000000000000:role/r".into(),
                kind: "STANDARD".into(),
                created_at: from_ms(1_764_064_800_000),
            };
            s.put_state_machine(&row).expect("put");
        }
        let names = |after: Option<&str>, n| s.state_machine_page(after, n).expect("page").into_iter().map(|m| m.name).collect::<Vec<_>>();
        assert_eq!(names(None, 2), ["a", "b"]);
        assert_eq!(names(Some("b"), 5), ["c", "d"]);
        assert!(names(Some("d"), 5).is_empty());
        assert!(s.state_machine_page(None, 10).expect("page").iter().all(|m| m.definition.is_empty() && m.role_arn.ends_with("role/r")));
    }

    #[test]
    fn a_lightbox_event_is_written_once_per_id() {
        let s = Store::in_memory().expect("store");
        let at = from_ms(1_764_064_800_000);
        let arn = "arn:aws:states:us-east-1:000000000000:execution:m:x".to_string();
        let emit = |id: &str| s.emit_event(&arn, id, "SLO Breached", at, std::slice::from_ref(&arn), serde_json::json!({"n": 1}));
        assert!(emit("slo:a:x:breached").expect("first"));
        assert!(!emit("slo:a:x:breached").expect("again"), "the same transition twice writes one row");
        assert!(emit("slo:a:x:at-risk").expect("another"));
        let rows = s.outbox(false, 10).expect("rows");
        assert_eq!(rows.len(), 2);
        let e: Value = serde_json::from_str(&rows[0].payload).expect("json");
        assert_eq!(
            (e["id"].as_str(), e["detail-type"].as_str(), e["source"].as_str()),
            (Some("slo:a:x:breached"), Some("SLO Breached"), Some("lightbox"))
        );
        assert_eq!(rows[0].topic, "lightbox");
    }
}
