//! The store's file and the files beside it.
//!
//! - `<db>.id`: written once when the store is created. If it exists and the database
//!   is missing or empty, the store lost its data: it is never taken for a new one.
//! - `<db>.checked`: the size and modification time of the database file when it last
//!   passed `PRAGMA quick_check` (or when this process closed it cleanly). Opening runs
//!   the quick check again only when the file changed behind Lightbox's back, so a
//!   normal open stays fast on a large store.
//!
//! Every file Lightbox creates here is readable by its owner only (0600, directories
//! 0700): the store holds patient data.

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};

use super::{Result, StoreError};

const MAGIC: &[u8; 16] = b"SQLite format 3\0";

pub(super) fn sidecar(db: &Path, suffix: &str) -> PathBuf {
    let mut s = db.as_os_str().to_os_string();
    s.push(suffix);
    PathBuf::from(s)
}

/// The marker written when a store is created.
pub fn marker_path(db: &Path) -> PathBuf {
    sidecar(db, ".id")
}

fn checked_path(db: &Path) -> PathBuf {
    sidecar(db, ".checked")
}

/// Create a directory (and its parents) readable by its owner only.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        b.mode(0o700);
    }
    b.create(dir)
}

/// Open a file for writing, created 0600 if new.
pub fn private_file(path: &Path, append: bool, create_new: bool) -> std::io::Result<std::fs::File> {
    let mut o = std::fs::OpenOptions::new();
    o.write(true);
    if create_new {
        o.create_new(true);
    } else {
        o.create(true);
    }
    if append {
        o.append(true);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        o.mode(0o600);
    }
    o.open(path)
}

/// Write a small file atomically (temp file + rename), 0600.
pub(super) fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    let tmp = sidecar(path, ".tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = private_file(&tmp, false, true)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)
}

/// The cheap checks on a database file: the header's magic string, a valid page size,
/// and a file size that is a whole number of pages and at least what the header says.
pub fn header_problem(db: &Path) -> std::io::Result<Option<String>> {
    let mut f = std::fs::File::open(db)?;
    let len = f.metadata()?.len();
    if len == 0 {
        return Ok(Some("the file is empty".into()));
    }
    let mut h = [0u8; 100];
    let mut got = 0;
    while got < h.len() {
        let n = f.read(&mut h[got..])?;
        if n == 0 {
            break;
        }
        got += n;
    }
    if got < 100 || &h[..16] != MAGIC {
        return Ok(Some("the file does not start with an SQLite header".into()));
    }
    let page = match u16::from_be_bytes([h[16], h[17]]) {
        1 => 65536u64,
        p if p >= 512 && p.is_power_of_two() => u64::from(p),
        p => return Ok(Some(format!("the header names an invalid page size ({p})"))),
    };
    if !len.is_multiple_of(page) {
        return Ok(Some(format!("the file size ({len} bytes) is not a whole number of {page}-byte pages (truncated or appended to)")));
    }
    let change = u32::from_be_bytes([h[24], h[25], h[26], h[27]]);
    let pages = u64::from(u32::from_be_bytes([h[28], h[29], h[30], h[31]]));
    let valid_for = u32::from_be_bytes([h[92], h[93], h[94], h[95]]);
    if valid_for == change && pages > 0 && pages * page > len {
        return Ok(Some(format!("the file holds {} pages but its header says {pages} (truncated)", len / page)));
    }
    Ok(None)
}

/// One file's identity and state: inode, device, size, modification time and inode
/// change time (nanoseconds). `touch` and `dd conv=notrunc` can keep a file's size and
/// restore its modification time, but every write or `touch` moves the change time,
/// which ordinary tools cannot set back.
fn file_stamp(p: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt as _;
    let m = std::fs::metadata(p).ok()?;
    Some(format!(
        "dev={} ino={} size={} mtime={}.{:09} ctime={}.{:09}",
        m.dev(),
        m.ino(),
        m.len(),
        m.mtime(),
        m.mtime_nsec(),
        m.ctime(),
        m.ctime_nsec()
    ))
}

/// The key of the quick-check cache: the database file's stamp, and the `-wal` file's
/// when it holds anything (an empty `-wal`, as a reader leaves it, changes nothing).
pub(super) fn stamp(db: &Path) -> Option<String> {
    let mut s = format!("db {}", file_stamp(db)?);
    let wal = sidecar(db, "-wal");
    if std::fs::metadata(&wal).map(|m| m.len() > 0).unwrap_or(false) {
        s.push_str(&format!("\nwal {}", file_stamp(&wal)?));
    }
    Some(s)
}

/// Whether the file is exactly as it was when last found good.
pub(super) fn known_good(db: &Path) -> bool {
    match (stamp(db), std::fs::read_to_string(checked_path(db))) {
        (Some(s), Ok(c)) => c.trim() == s,
        _ => false,
    }
}

/// Remember the file as good as it is now (best effort: a read-only directory just
/// means the next open checks again).
pub(super) fn mark_good(db: &Path) {
    if let Some(s) = stamp(db) {
        let _ = write_private(&checked_path(db), &s);
    }
}

/// The store id the creation marker holds (its first line, `lightbox store <id>`).
pub(super) fn marker_id(db: &Path) -> Option<String> {
    let text = std::fs::read_to_string(marker_path(db)).ok()?;
    let first = text.lines().next()?.trim();
    Some(first.strip_prefix("lightbox store ").unwrap_or(first).trim().to_string())
}

/// Write the creation marker for store `id`.
pub(super) fn write_marker(db: &Path, id: &str) -> Result<()> {
    let p = marker_path(db);
    let text = format!("lightbox store {id}\ncreated {}\n", chrono::Utc::now().to_rfc3339());
    write_private(&p, &text).map_err(|e| StoreError::Io { path: p.display().to_string(), err: e })
}

/// Make the data directory and the store's files readable by their owner only: data
/// directories created by older versions were left world-readable. Only what this user
/// owns is changed; returns what was changed.
pub fn tighten_permissions(data_dir: &Path, db: &Path) -> Vec<String> {
    use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    let mut changed = vec![];
    let mut fix = |p: &Path, want: u32| {
        let Ok(m) = std::fs::symlink_metadata(p) else { return };
        if m.file_type().is_symlink() || m.uid() != me {
            return;
        }
        let mode = m.permissions().mode() & 0o777;
        let tight = mode & want;
        if tight != mode && std::fs::set_permissions(p, std::fs::Permissions::from_mode(tight)).is_ok() {
            changed.push(format!("{} {:o} -> {:o}", p.display(), mode, tight));
        }
    };
    fix(data_dir, 0o700);
    for suffix in ["", "-wal", "-shm", ".id", ".anchor", ".checked"] {
        fix(&sidecar(db, suffix), 0o600);
    }
    let logs = data_dir.join("logs");
    fix(&logs, 0o700);
    if let Ok(entries) = std::fs::read_dir(&logs) {
        for e in entries.flatten() {
            if e.file_type().map(|t| t.is_file()).unwrap_or(false) {
                fix(&e.path(), 0o600);
            }
        }
    }
    changed
}

/// The store lost its data when its marker exists but the database is missing or empty.
pub(super) fn lost_data(db: &Path) -> Option<String> {
    if !marker_path(db).exists() {
        return None;
    }
    match std::fs::metadata(db) {
        Err(_) => Some("the database file is missing".into()),
        Ok(m) if m.len() == 0 => Some("the database file is empty (0 bytes)".into()),
        Ok(_) => None,
    }
}

/// A `file:` URI for SQLite, with the characters URIs reserve escaped.
pub(super) fn uri(db: &Path, query: &str) -> String {
    let raw = db.to_string_lossy();
    let mut s = String::from("file:");
    for c in raw.chars() {
        match c {
            '%' => s.push_str("%25"),
            '?' => s.push_str("%3f"),
            '#' => s.push_str("%23"),
            c => s.push(c),
        }
    }
    s.push('?');
    s.push_str(query);
    s
}

/// Whether an I/O error means "not allowed to write here".
pub(super) fn io_read_only(e: &std::io::Error) -> bool {
    matches!(e.kind(), std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem)
}

/// Whether an SQLite error means "not allowed to write here".
pub(super) fn sql_read_only(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::ReadOnly | rusqlite::ErrorCode::CannotOpen | rusqlite::ErrorCode::PermissionDenied)
    )
}

/// Whether an SQLite error means the file is damaged.
pub(super) fn sql_damaged(e: &rusqlite::Error) -> bool {
    matches!(e.sqlite_error_code(), Some(rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase))
}

/// Whether the directory of `db` takes new files (SQLite needs it for `-wal` and `-shm`).
pub(super) fn dir_writable(db: &Path) -> std::result::Result<(), std::io::Error> {
    let probe = sidecar(db, &format!(".probe-{}", std::process::id()));
    private_file(&probe, false, false)?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}
