//! The store file and the files around it: read-only data directories, damaged and
//! lost stores, backups and file permissions. The real binary on real files.

mod common;

use common::{Lb, bin};

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::json;

trait StoreExt {
    fn seed(&self) -> (String, String);
}

impl StoreExt for Lb {
    fn seed(&self) -> (String, String) {
        let def = self.path("review.json");
        std::fs::write(
            &def,
            json!({"StartAt": "Review", "States": {
                "Review": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken",
                           "Parameters": {"FunctionName": "echo", "Payload": {"token.$": "$$.Task.Token"}}, "End": true}}})
            .to_string(),
        )
        .expect("write");
        self.json(&["state-machines", "create", "--name", "review", "--definition", def.to_str().expect("p")]);
        let arn = self.json(&["executions", "start", "--state-machine", "review", "--name", "acc-1"])["executionArn"]
            .as_str()
            .expect("arn")
            .to_string();
        let token = self.json(&["tasks", "list"])["tasks"][0]["taskToken"].as_str().expect("token").to_string();
        self.json(&["--user", "dr.a", "tasks", "claim", &token]);
        (arn, token)
    }
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())).permissions().mode() & 0o777
}

fn chmod(p: &Path, m: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap_or_else(|e| panic!("chmod {}: {e}", p.display()));
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

// ----- read-only data directory ---------------------------------------------------

/// The binary where `nobody` can run it: the build's own directory may sit under a folder
/// only its owner can enter (a checkout in root's home), so use a world-readable copy.
fn bin_for_nobody() -> &'static Path {
    static BIN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("lightbox-test-bin-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("bin dir");
        chmod(&dir, 0o755);
        let copy = dir.join("lightbox");
        if std::fs::hard_link(bin(), &copy).is_err() {
            std::fs::copy(bin(), &copy).expect("copy the binary");
        }
        chmod(&copy, 0o755);
        copy
    })
}

/// Permissions do not stop root: as root, run the binary as `nobody` (util-linux `setpriv`).
fn as_nobody(lb: &Lb, args: &[&str]) -> Output {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let mut c = if root {
        let setpriv = Path::new("/usr/bin/setpriv");
        assert!(setpriv.exists(), "this test needs setpriv (util-linux) to run lightbox as an unprivileged user");
        let mut c = Command::new(setpriv);
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups"]).arg(bin_for_nobody());
        c
    } else {
        Command::new(bin())
    };
    c.env("HOME", lb.dir.path()).env_remove("LIGHTBOX_CONFIG");
    c.arg("--data-dir").arg(lb.data()).args(args);
    c.output().expect("run setpriv")
}

#[test]
fn read_commands_work_on_a_read_only_data_dir_and_writes_fail_clearly() {
    let lb = Lb::new();
    let (arn, token) = lb.seed();
    // The owner makes the data directory read-only: every file 0444, directories 0555.
    chmod(lb.dir.path(), 0o755);
    for entry in walk(&lb.data()) {
        chmod(&entry, if entry.is_dir() { 0o555 } else { 0o444 });
    }
    assert!(!lb.data().join("lightbox.db-wal").exists(), "a clean close leaves no -wal file");
    for args in [
        vec!["executions", "list"],
        vec!["executions", "describe", arn.as_str()],
        vec!["executions", "history", arn.as_str()],
        vec!["tasks", "list"],
        vec!["state-machines", "list"],
        vec!["audit", "list"],
        vec!["audit", "verify"],
        vec!["store", "check"],
    ] {
        let out = as_nobody(&lb, &args);
        let err = stderr(&out);
        assert!(out.status.success(), "{args:?} on a read-only data dir: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        let warnings: Vec<&str> = err.lines().filter(|l| l.contains("warning")).collect();
        assert_eq!(warnings.len(), 1, "{args:?}: exactly one warning (logging is off): {err}");
        assert!(warnings[0].contains("logging is off"), "{err}");
    }
    let listed = String::from_utf8_lossy(&as_nobody(&lb, &["executions", "list"]).stdout).into_owned();
    assert!(listed.contains(&arn), "{listed}");
    for args in [vec!["tasks", "approve", token.as_str()], vec!["executions", "start", "--state-machine", "review"]] {
        let out = as_nobody(&lb, &args);
        let err = stderr(&out);
        assert!(!out.status.success(), "{args:?} must fail on a read-only data dir");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert!(err.contains(&lb.db().display().to_string()) && err.contains("cannot be written"), "{args:?}: {err}");
    }
    // Give the temp dir back to root's cleanup.
    for entry in walk(&lb.data()) {
        chmod(&entry, 0o700);
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![dir.to_path_buf()];
    for e in std::fs::read_dir(dir).expect("read dir").flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

// ----- damage and loss ------------------------------------------------------------

/// A store of a few MB: enough pages that garbage in the middle lands in table data.
fn big_store(lb: &Lb) {
    use lightbox::engine::{Clock, Engine};
    let store = lightbox::store::Store::open(&lb.db()).expect("open");
    let mut e = Engine::new(store, lightbox::engine::tasks::TaskRunner::new(), Clock::Real);
    e.create_state_machine("pass", &json!({"StartAt": "P", "States": {"P": {"Type": "Pass", "End": true}}}).to_string(), None)
        .expect("create");
    let pad = "x".repeat(3000);
    for i in 0..600 {
        e.start_execution("pass", Some(&format!("e{i}")), &json!({"pad": pad, "i": i}).to_string()).expect("start");
    }
}

fn corrupt_middle(db: &Path) {
    use std::io::{Seek as _, SeekFrom, Write as _};
    let len = std::fs::metadata(db).expect("meta").len();
    let mut f = std::fs::OpenOptions::new().write(true).open(db).expect("open");
    f.seek(SeekFrom::Start(len / 2 + 100)).expect("seek");
    let garbage: Vec<u8> = (0..8192u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    f.write_all(&garbage).expect("write");
}

#[test]
fn garbage_in_the_middle_is_detected_and_nothing_is_written() {
    let lb = Lb::new();
    big_store(&lb);
    lb.ok(&["executions", "list"]);
    corrupt_middle(&lb.db());
    let before = std::fs::read(lb.db()).expect("read");
    let out = lb.run(&["executions", "start", "--state-machine", "pass", "--name", "after-damage"]);
    let err = stderr(&out);
    assert!(!out.status.success(), "starting an execution on a damaged store must fail");
    assert!(err.contains("damaged") && err.contains(&lb.db().display().to_string()), "{err}");
    assert!(err.contains("lightbox store backup"), "names the way back: {err}");
    assert_eq!(std::fs::read(lb.db()).expect("read"), before, "nothing was written to the damaged file");
    let out = lb.run(&["store", "check"]);
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(String::from_utf8_lossy(&out.stdout).contains("DAMAGED"));
}

#[test]
fn a_store_truncated_to_zero_or_deleted_is_never_taken_for_a_new_one() {
    for delete in [false, true] {
        let lb = Lb::new();
        lb.seed();
        if delete {
            std::fs::remove_file(lb.db()).expect("rm");
        } else {
            std::fs::File::create(lb.db()).expect("truncate");
        }
        for args in [vec!["executions", "list"], vec!["state-machines", "list"], vec!["executions", "start", "--state-machine", "review"]] {
            let out = lb.run(&args);
            let err = stderr(&out);
            assert!(!out.status.success(), "{args:?} on a store that lost its data must fail: {}", String::from_utf8_lossy(&out.stdout));
            assert!(err.contains("lost its data") && err.contains(&lb.db().display().to_string()), "{err}");
        }
        let len = std::fs::metadata(lb.db()).map(|m| m.len()).unwrap_or(0);
        assert_eq!(len, 0, "no new empty store was written in its place");
        assert_eq!(lb.run(&["store", "check"]).status.code(), Some(3));
    }
}

#[test]
fn a_torn_file_fails_the_header_check() {
    let lb = Lb::new();
    lb.seed();
    let f = std::fs::OpenOptions::new().write(true).open(lb.db()).expect("open");
    let len = f.metadata().expect("meta").len();
    f.set_len(len - 1000).expect("truncate");
    drop(f);
    let err = stderr(&lb.run(&["tasks", "approve", "00000000"]));
    assert!(err.contains("damaged") && err.contains("whole number"), "{err}");
}

#[test]
fn the_quick_check_runs_only_when_the_file_changed_behind_lightboxs_back() {
    let lb = Lb::new();
    big_store(&lb);
    let checked = lb.data().join("lightbox.db.checked");
    let stamp = || {
        use std::os::unix::fs::MetadataExt as _;
        let m = std::fs::metadata(lb.db()).expect("meta");
        format!(
            "db dev={} ino={} size={} mtime={}.{:09} ctime={}.{:09}",
            m.dev(),
            m.ino(),
            m.len(),
            m.mtime(),
            m.mtime_nsec(),
            m.ctime(),
            m.ctime_nsec()
        )
    };
    // A clean close records the file as it left it.
    assert_eq!(std::fs::read_to_string(&checked).expect("checked"), stamp());
    // Something else touches the file: the stamp no longer matches, the next open checks
    // it again (it is sound) and records it anew.
    let f = std::fs::OpenOptions::new().append(true).open(lb.db()).expect("open");
    f.set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(60)).expect("touch");
    drop(f);
    assert_ne!(std::fs::read_to_string(&checked).expect("checked"), stamp());
    let s = lightbox::store::Store::open_read_only(&lb.db()).expect("open");
    assert_eq!(s.damage(), None);
    drop(s);
    lightbox::store::Store::open(&lb.db()).expect("a changed but sound file passes its quick check");
    assert_eq!(std::fs::read_to_string(&checked).expect("checked"), stamp());
}

/// `touch -r`: the tool a person would use to hide a change from a size-and-mtime check.
fn touch_r(reference: &Path, target: &Path) {
    let ok = Command::new("touch").arg("-r").arg(reference).arg(target).status().expect("touch").success();
    assert!(ok, "touch -r {} {}", reference.display(), target.display());
}

#[test]
fn garbage_that_keeps_the_size_and_modification_time_is_still_detected() {
    let lb = Lb::new();
    big_store(&lb);
    lb.ok(&["executions", "list"]);
    let reference = lb.path("ref");
    std::fs::write(&reference, "").expect("ref");
    touch_r(&lb.db(), &reference);
    let before = std::fs::metadata(lb.db()).expect("meta");
    // Garbage over table pages in the middle of the file, then the old modification time back.
    corrupt_middle(&lb.db());
    touch_r(&reference, &lb.db());
    let after = std::fs::metadata(lb.db()).expect("meta");
    assert_eq!(after.len(), before.len());
    assert_eq!(after.modified().expect("mtime"), before.modified().expect("mtime"));
    let damaged = std::fs::read(lb.db()).expect("read");
    let out = lb.run(&["executions", "start", "--state-machine", "pass", "--name", "after-damage"]);
    let err = stderr(&out);
    assert!(!out.status.success(), "starting an execution on a damaged store must fail");
    assert!(err.contains("damaged") && err.contains(&lb.db().display().to_string()), "{err}");
    assert_eq!(std::fs::read(lb.db()).expect("read"), damaged, "nothing was written to the damaged file");
}

#[test]
fn a_database_without_the_lightbox_tables_or_with_another_stores_id_is_refused() {
    // The file was deleted and a valid, non-empty SQLite file with no tables took its place.
    let lb = Lb::new();
    lb.seed();
    std::fs::remove_file(lb.db()).expect("rm");
    {
        let c = rusqlite::Connection::open(lb.db()).expect("sqlite");
        c.execute_batch("create table t(x); drop table t;").expect("sql");
    }
    assert!(std::fs::metadata(lb.db()).expect("meta").len() > 0);
    let before = std::fs::read(lb.db()).expect("read");
    for args in [vec!["executions", "list"], vec!["state-machines", "list"], vec!["executions", "start", "--state-machine", "review"]] {
        let out = lb.run(&args);
        let err = stderr(&out);
        assert!(!out.status.success(), "{args:?} on a store that lost its tables must fail: {}", String::from_utf8_lossy(&out.stdout));
        assert!(err.contains("lost its data") && err.contains(&lb.db().display().to_string()), "{err}");
        assert!(err.contains("lightbox.db.id") && err.contains("lightbox store backup"), "names the marker and the way back: {err}");
    }
    assert_eq!(std::fs::read(lb.db()).expect("read"), before, "no tables were created in its place");
    let out = lb.run(&["store", "check"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(3), "{text}");
    assert!(!text.contains("null"), "{text}");

    // Another store's database copied over this one.
    let a = Lb::new();
    a.seed();
    let b = Lb::new();
    b.seed();
    std::fs::copy(b.db(), a.db()).expect("copy");
    for args in [vec!["executions", "list"], vec!["executions", "start", "--state-machine", "review"]] {
        let err = a.fails(&args);
        assert!(err.contains("was replaced") && err.contains(&a.db().display().to_string()), "{err}");
        assert!(err.contains("lightbox.db.id") && err.contains("lightbox store backup"), "{err}");
    }
    // Restoring its own backup is the way back.
    let c = Lb::new();
    let (arn_c, _) = c.seed();
    let backup = c.path("backup.db");
    c.ok(&["store", "backup", backup.to_str().expect("p")]);
    c.ok(&["executions", "start", "--state-machine", "review", "--name", "later"]);
    std::fs::copy(&backup, c.db()).expect("restore");
    assert!(c.ok(&["executions", "list"]).contains(&arn_c), "its own backup is accepted");
}

#[test]
fn a_store_made_before_the_database_kept_its_id_adopts_the_markers() {
    let lb = Lb::new();
    let (arn, _) = lb.seed();
    {
        let c = rusqlite::Connection::open(lb.db()).expect("sqlite");
        c.execute_batch("DROP TABLE meta").expect("sql");
    }
    assert!(lb.ok(&["executions", "list"]).contains(&arn));
    let marker = std::fs::read_to_string(lb.data().join("lightbox.db.id")).expect("marker");
    let c = rusqlite::Connection::open(lb.db()).expect("sqlite");
    let id: String = c.query_row("SELECT value FROM meta WHERE key = 'store_id'", [], |r| r.get(0)).expect("id");
    assert!(marker.starts_with(&format!("lightbox store {id}\n")), "{marker} / {id}");
}

#[test]
fn a_read_only_data_dir_with_a_wal_to_recover_is_a_read_only_problem_not_damage() {
    use lightbox::engine::{Clock, Engine};
    let src = Lb::new();
    let lb = Lb::new();
    std::fs::create_dir_all(lb.data()).expect("mkdir");
    {
        // A process that wrote and was killed: its -wal holds committed steps, no -shm is left.
        let store = lightbox::store::Store::open(&src.db()).expect("open");
        let mut e = Engine::new(store, lightbox::engine::tasks::TaskRunner::new(), Clock::Real);
        e.create_state_machine("pass", &json!({"StartAt": "P", "States": {"P": {"Type": "Pass", "End": true}}}).to_string(), None)
            .expect("create");
        for i in 0..5 {
            e.start_execution("pass", Some(&format!("w{i}")), "{}").expect("start");
        }
        for f in ["lightbox.db", "lightbox.db-wal", "lightbox.db.id"] {
            std::fs::copy(src.data().join(f), lb.data().join(f)).expect("copy");
        }
    }
    assert!(std::fs::metadata(lb.data().join("lightbox.db-wal")).expect("wal").len() > 0);
    chmod(lb.dir.path(), 0o755);
    for entry in walk(&lb.data()) {
        chmod(&entry, if entry.is_dir() { 0o555 } else { 0o444 });
    }
    let out = as_nobody(&lb, &["store", "check"]);
    let (text, err) = (String::from_utf8_lossy(&out.stdout).into_owned(), stderr(&out));
    assert_ne!(out.status.code(), Some(3), "{text}{err}");
    assert!(!out.status.success());
    assert!(!text.contains("DAMAGED") && !err.contains("is damaged") && !err.contains("restore"), "{text}{err}");
    assert!(err.contains("lightbox.db-shm") && err.contains("not damaged") && err.contains("owner"), "{err}");
    for args in [vec!["executions", "list"], vec!["state-machines", "list"]] {
        let out = as_nobody(&lb, &args);
        let err = stderr(&out);
        assert!(!out.status.success(), "{args:?}");
        assert!(err.contains("lightbox.db-shm") && err.contains("not damaged"), "{args:?}: {err}");
        assert!(!err.contains("; open") && !err.contains("changes the store") && !err.contains("damaged:"), "{args:?}: {err}");
    }
    // As the owner, with write access, the committed steps are all there.
    for entry in walk(&lb.data()) {
        chmod(&entry, if entry.is_dir() { 0o700 } else { 0o600 });
    }
    assert_eq!(lb.json(&["executions", "list"])["executions"].as_array().map(Vec::len), Some(5));
}

// ----- backup and check ---------------------------------------------------------------

#[test]
fn backup_makes_a_consistent_private_copy_that_check_verifies() {
    let lb = Lb::new();
    let (arn, _) = lb.seed();
    let copy = lb.path("backup.db");
    let out = lb.json(&["store", "backup", copy.to_str().expect("p")]);
    assert_eq!(out["backup"], copy.display().to_string());
    assert_eq!(mode(&copy), 0o600, "a backup holds patient data");
    let check = lb.json(&["store", "check", copy.to_str().expect("p")]);
    assert_eq!(check["result"], "OK", "{check}");
    assert_eq!(check["counts"]["executions"], 1);
    assert!(check["counts"]["auditRows"].as_i64().unwrap_or(0) >= 1, "{check}");
    // The copy is a working store: another data dir can use it as is.
    let other = Lb::new();
    std::fs::create_dir_all(other.data()).expect("mkdir");
    std::fs::copy(&copy, other.db()).expect("copy");
    assert_eq!(other.json(&["executions", "describe", &arn])["status"], "RUNNING");
    // An existing file is not overwritten.
    let out = lb.run(&["store", "backup", copy.to_str().expect("p")]);
    assert!(!out.status.success());
    // A damaged copy fails its check.
    corrupt_middle(&copy);
    std::fs::write(&copy, b"not a database at all").expect("write");
    assert_eq!(lb.run(&["store", "check", copy.to_str().expect("p")]).status.code(), Some(3));
    // A missing file is a usage error naming it.
    let out = lb.run(&["store", "check", lb.path("nope.db").to_str().expect("p")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("nope.db"));
}

#[test]
fn backup_is_consistent_while_another_process_writes() {
    let lb = Lb::new();
    big_store(&lb);
    let mut writer = lb
        .cmd()
        .args(["engine", "--seconds", "3"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("engine");
    let store = lightbox::store::Store::open(&lb.db()).expect("open");
    let mut e = lightbox::engine::Engine::new(store, lightbox::engine::tasks::TaskRunner::new(), lightbox::engine::Clock::Real);
    let copy = lb.path("online.db");
    for i in 0..50 {
        e.start_execution("pass", Some(&format!("during-{i}")), "{}").expect("start");
        if i == 25 {
            e.store.backup_to(&copy).expect("backup");
        }
    }
    let _ = writer.wait();
    let c = lightbox::store::Store::open_read_only(&copy).expect("open copy");
    assert!(c.integrity_check().expect("check").is_empty());
    let n: i64 = c.conn().query_row("SELECT COUNT(*) FROM executions", [], |r| r.get(0)).expect("count");
    assert_eq!(n, 600 + 26, "the copy holds exactly what was committed when it was taken");
}

// ----- permissions -----------------------------------------------------------------

#[test]
fn the_data_dir_and_its_files_are_readable_by_their_owner_only() {
    let lb = Lb::new();
    lb.seed();
    let data = lb.data();
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&data.join("logs")), 0o700);
    let logs: Vec<PathBuf> = std::fs::read_dir(data.join("logs")).expect("logs").flatten().map(|e| e.path()).collect();
    assert!(!logs.is_empty());
    for f in logs.iter().chain([lb.db(), data.join("lightbox.db.id"), data.join("lightbox.db.anchor")].iter()) {
        assert_eq!(mode(f), 0o600, "{}", f.display());
    }
    // While a store is open its -wal and -shm files exist: private too.
    let s = lightbox::store::Store::open(&lb.db()).expect("open");
    s.conn().execute("UPDATE state_machines SET updated_at = updated_at", []).expect("write");
    for f in ["lightbox.db-wal", "lightbox.db-shm"] {
        assert_eq!(mode(&data.join(f)), 0o600, "{f}");
    }
    drop(s);
    // The library makes them private too, without the binary's umask.
    let lib = Lb::new();
    let s = lightbox::store::Store::open(&lib.path("lib/x.db")).expect("open");
    s.conn().execute("UPDATE state_machines SET updated_at = updated_at", []).expect("write");
    assert_eq!(mode(&lib.path("lib")), 0o700);
    for f in ["x.db", "x.db-wal", "x.db-shm", "x.db.id"] {
        assert_eq!(mode(&lib.path("lib").join(f)), 0o600, "{f}");
    }
}

#[test]
fn a_data_dir_made_world_readable_is_made_private_on_a_writable_open() {
    let lb = Lb::new();
    lb.seed();
    let data = lb.data();
    lb.ok(&["store", "check"]);
    chmod(&data, 0o755);
    chmod(&data.join("logs"), 0o755);
    let mut files: Vec<PathBuf> = std::fs::read_dir(data.join("logs")).expect("logs").flatten().map(|e| e.path()).collect();
    files.extend(["lightbox.db", "lightbox.db.id", "lightbox.db.anchor", "lightbox.db.checked"].map(|f| data.join(f)));
    for f in &files {
        chmod(f, 0o644);
    }
    lb.ok(&["executions", "list"]);
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&data.join("logs")), 0o700);
    for f in &files {
        assert_eq!(mode(f), 0o600, "{}", f.display());
    }
    let log: String = std::fs::read_dir(data.join("logs"))
        .expect("logs")
        .flatten()
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .collect();
    assert_eq!(log.matches("readable by their owner only").count(), 1, "one info line: {log}");
}

#[test]
fn a_backup_onto_an_existing_file_says_so_once() {
    let lb = Lb::new();
    lb.seed();
    let copy = lb.file("exists.db", "");
    let err = lb.fails(&["store", "backup", &copy]);
    assert_eq!(err.matches("already exists").count(), 1, "{err}");
    assert!(err.contains(&copy), "{err}");
}

#[test]
fn an_unreadable_default_config_is_skipped_with_a_warning() {
    let lb = Lb::new();
    // A config path that exists but cannot be read as a file (here: a directory).
    let cfg = lb.path("cfg");
    std::fs::create_dir_all(cfg.join("lightbox/config.toml")).expect("mkdir");
    let out = lb.cmd().env("XDG_CONFIG_HOME", &cfg).args(["state-machines", "list"]).output().expect("run");
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    let warnings: Vec<&str> = err.lines().filter(|l| l.contains("warning")).collect();
    assert_eq!(warnings.len(), 1, "{err}");
    assert!(warnings[0].contains("config.toml"), "{err}");
    // One named with --config must be readable.
    let named = cfg.join("lightbox/config.toml");
    let out = lb.cmd().args(["--config", named.to_str().expect("p"), "state-machines", "list"]).output().expect("run");
    assert!(!out.status.success());
}
