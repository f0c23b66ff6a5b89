//! The apply journal: what this engine is working on right now, in a small file of its own
//! beside the store (`lightbox.db.applying/<owner>`), so that a process that dies in the
//! middle of a step leaves word of which execution it was.
//!
//! Before an input is applied to an execution (or one of its tasks runs) the engine writes
//! `execution ARN, version, what` over its file; when the work ends it empties the file. A
//! `write` that returned is in the kernel, so the record outlives any crash of this process
//! (out of memory, a stack overflow, an abort, the OOM killer) at the cost of one system call
//! and no transaction. An engine that starts reads the files of owners that are gone and
//! records each unfinished piece of work as a crash in the store ([`Store::record_crash`]),
//! which is what quarantine counts.

use std::io::Read;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

use crate::store::Store;

/// The directory beside a store's database that holds the journals.
pub fn dir_for(db: &Path) -> PathBuf {
    let mut name = db.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".applying");
    db.with_file_name(name)
}

/// One engine's journal file.
pub struct Journal {
    path: PathBuf,
    file: std::fs::File,
    /// Whether the file holds a record now.
    busy: bool,
}

impl Journal {
    /// The journal of `owner` in `dir` (made owner-only, as the data directory is).
    pub fn open(dir: &Path, owner: &str) -> std::io::Result<Journal> {
        crate::store::create_private_dir(dir)?;
        let path = dir.join(owner);
        let file = std::fs::OpenOptions::new().create(true).truncate(true).write(true).mode(0o600).open(&path)?;
        Ok(Journal { path, file, busy: false })
    }

    /// Say what is about to be worked on: one write at the start of the file (only its first
    /// line counts; what an earlier, longer record left after it is ignored).
    pub fn begin(&mut self, arn: &str, version: i64, what: &str) -> std::io::Result<()> {
        let line = format!("{version}\t{what}\t{arn}\n");
        self.file.write_all_at(line.as_bytes(), 0)?;
        self.busy = true;
        Ok(())
    }

    /// The work ended (committed, refused or handled): an empty first line, nothing in progress.
    pub fn end(&mut self) -> std::io::Result<()> {
        if std::mem::take(&mut self.busy) {
            self.file.write_all_at(b"\n", 0)?;
        }
        Ok(())
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// What a journal said was in progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InProgress {
    pub arn: String,
    pub version: i64,
    pub what: String,
}

fn parse(text: &str) -> Option<InProgress> {
    let line = text.lines().next()?;
    let mut parts = line.splitn(3, '\t');
    let version = parts.next()?.parse().ok()?;
    let what = parts.next()?.to_string();
    let arn = parts.next()?.to_string();
    (!arn.is_empty()).then_some(InProgress { arn, version, what })
}

/// Record as crashes the work that engines which are gone left unfinished in `dir`, and
/// remove their journals. A journal is claimed by renaming it first, so two engines starting
/// together never count one crash twice. Returns what was recorded.
pub fn recover(dir: &Path, store: &Store, now: DateTime<Utc>) -> Vec<InProgress> {
    let mut found = vec![];
    let Ok(entries) = std::fs::read_dir(dir) else { return found };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.contains(".claimed-") || crate::store::owner_alive(&name) {
            continue;
        }
        let claimed = dir.join(format!("{name}.claimed-{}", std::process::id()));
        if std::fs::rename(entry.path(), &claimed).is_err() {
            continue; // another engine claimed it first
        }
        let mut text = String::new();
        let read = std::fs::File::open(&claimed).and_then(|f| f.take(64 * 1024).read_to_string(&mut text));
        if read.is_ok()
            && let Some(p) = parse(&text)
        {
            match store.record_crash(&p.arn, p.version, &p.what, now) {
                Ok(()) => {
                    tracing::warn!(execution = %p.arn, input = %p.what, "the engine that was working on this execution stopped in the middle; recorded as a crash");
                    found.push(p);
                }
                Err(e) => {
                    // Keep the journal for the next start rather than lose the crash.
                    tracing::warn!(error = %e, "could not record a crash from an engine's journal");
                    let _ = std::fs::rename(&claimed, dir.join(&name));
                    continue;
                }
            }
        }
        let _ = std::fs::remove_file(&claimed);
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_reads_back_and_an_empty_or_torn_one_is_nothing() {
        let p = parse("7\ta task result\tarn:aws:states:us-east-1:0:execution:m:e\n");
        assert_eq!(
            p,
            Some(InProgress { arn: "arn:aws:states:us-east-1:0:execution:m:e".into(), version: 7, what: "a task result".into() })
        );
        assert_eq!(parse(""), None);
        assert_eq!(parse("\n7\ta wake\tarn:left-behind-an-end\n"), None, "an ended journal says nothing");
        assert_eq!(parse("7\ta"), None);
        assert_eq!(parse("x\ty\tz"), None);
    }

    #[test]
    fn only_the_journals_of_engines_that_are_gone_are_recovered() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("lightbox.db");
        let store = Store::open(&db).expect("store");
        let jdir = dir_for(&db);
        // A live engine's journal (this process) stays; a dead one's is recorded and removed.
        let mut live = Journal::open(&jdir, &format!("{}-live", std::process::id())).expect("journal");
        live.begin("arn:live", 3, "a wake").expect("begin");
        std::fs::write(jdir.join("999999999-gone"), "4\ta wake\tarn:gone\n").expect("write");
        std::fs::write(jdir.join("999999998-idle"), "").expect("write");
        let found = recover(&jdir, &store, Utc::now());
        assert_eq!(found.iter().map(|p| p.arn.as_str()).collect::<Vec<_>>(), ["arn:gone"]);
        assert!(!jdir.join("999999999-gone").exists() && !jdir.join("999999998-idle").exists());
        assert!(jdir.join(format!("{}-live", std::process::id())).exists());
        assert_eq!(store.crash_record("arn:gone").expect("read").map(|c| (c.version, c.tries)), Some((4, 1)));
        // Nothing is counted twice.
        assert!(recover(&jdir, &store, Utc::now()).is_empty());
        live.end().expect("end");
        drop(live);
        assert!(std::fs::read_dir(&jdir).expect("dir").next().is_none(), "a dropped journal is removed");
    }
}
