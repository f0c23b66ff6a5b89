//! `:ctx NAME` to another local context runs it as the console runs the one it started on:
//! the demo workload advances in the context switched to and its outbox relay delivers, while
//! the context switched away from stands still and its relay is stopped (rows written to it
//! meanwhile are delivered once it is live again). One relay thread at a time, whatever the
//! number of switches. The real binary in tmux (installed by scripts/test.sh; missing, the
//! test FAILS).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::tmux::Tmux;

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_lightbox")
}

fn lb(config: &Path, context: &str, args: &[&str]) -> String {
    let out = Command::new(bin()).arg("--config").arg(config).args(["--context", context]).args(args).output().expect("run lightbox");
    assert!(out.status.success(), "lightbox --context {context} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Executions in a data directory's store (a plain read connection beside the console's).
fn executions(dir: &Path) -> i64 {
    let conn = rusqlite::Connection::open_with_flags(dir.join("lightbox.db"), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .expect("open the store to read");
    let _ = conn.busy_timeout(Duration::from_secs(10));
    conn.query_row("SELECT COUNT(*) FROM executions", [], |r| r.get(0)).expect("count executions")
}

/// What the demo's outbox sink (an NDJSON archive in the data directory) has received.
fn delivered(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("demo-events.ndjson")).unwrap_or_default()
}

fn lines(dir: &Path) -> usize {
    delivered(dir).lines().count()
}

/// Threads of process `pid` named `name`.
fn threads(pid: u32, name: &str) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("the console's threads")
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|c| c.trim() == name)
        .count()
}

fn until(secs: u64, what: &str, ok: impl Fn() -> bool) {
    let end = Instant::now() + Duration::from_secs(secs);
    while !ok() {
        assert!(Instant::now() < end, "{what}: not within {secs} s");
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn a_local_context_switched_to_runs_its_demo_and_relay_and_the_one_left_stands_still() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (a, b): (PathBuf, PathBuf) = (tmp.path().join("a"), tmp.path().join("b"));
    let config = tmp.path().join("config.toml");
    std::fs::write(&config, format!("[contexts.a]\ndata_dir = {:?}\n\n[contexts.b]\ndata_dir = {:?}\n", a.display(), b.display()))
        .expect("config");
    // Both data directories hold the demo hospital (a short headless run of it each).
    for ctx in ["a", "b"] {
        lb(&config, ctx, &["demo", "--seconds", "2"]);
    }
    let ping = tmp.path().join("ping.json");
    std::fs::write(&ping, r#"{"StartAt": "P", "States": {"P": {"Type": "Pass", "End": true}}}"#).expect("definition");
    lb(&config, "a", &["state-machines", "create", "--name", "ping", "--definition", ping.to_str().expect("path")]);

    // `exec`: the pane's process is the console itself.
    let cmd = format!("exec {} --config {} --context a --user dr.ctx console", bin(), config.display());
    let t = Tmux::start("lightbox-ctx", &cmd, 140, 36);
    t.wait_for("demo running");
    let pid: u32 = String::from_utf8_lossy(
        &Command::new("tmux").args(["display-message", "-p", "-t", &t.session, "#{pane_pid}"]).output().expect("pane pid").stdout,
    )
    .trim()
    .parse()
    .expect("the console's pid");
    until(20, "the start-up context's relay thread", || threads(pid, "outbox-relay") == 1);

    // To b: its demo workload starts new studies and its relay delivers their events.
    t.command("ctx b");
    t.wait_for("ctx: b is live");
    let (b_runs, b_lines) = (executions(&b), lines(&b));
    std::thread::sleep(Duration::from_secs(1));
    let (a_runs, a_lines) = (executions(&a), lines(&a));
    until(120, "b's demo workload to start studies", || executions(&b) > b_runs);
    until(60, "b's relay to deliver", || lines(&b) > b_lines);
    assert_eq!(threads(pid, "outbox-relay"), 1, "a's relay stopped when b's started");

    // a, parked, stands still: no studies start, and rows written to its store by another
    // process are not delivered while it is not live (its relay is stopped).
    lb(&config, "a", &["executions", "start", "--state-machine", "ping", "--name", "PING-1", "--input-json", "{}"]);
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(executions(&a), a_runs + 1, "only the execution started from the CLI: a's demo does not run while parked");
    assert_eq!(lines(&a), a_lines, "a's relay delivered while a was not live");
    assert!(!delivered(&a).contains("PING-1"));

    // Back to a: its relay delivers what waited, its workload goes on; b stands still.
    t.command("ctx a");
    t.wait_for("ctx: a is live");
    until(30, "a's relay to deliver the rows written while it was parked", || delivered(&a).contains("PING-1"));
    std::thread::sleep(Duration::from_secs(1));
    let (b_runs, b_lines) = (executions(&b), lines(&b));
    until(120, "a's demo workload to go on", || executions(&a) > a_runs + 1);
    assert_eq!((executions(&b), lines(&b)), (b_runs, b_lines), "b stood still once a was live again");
    assert_eq!(threads(pid, "outbox-relay"), 1);

    // Switching back and forth leaves one relay thread, not one per switch.
    for ctx in ["b", "a", "b"] {
        t.command(&format!("ctx {ctx}"));
        t.wait_for(&format!("ctx: {ctx} is live"));
        until(10, "one relay after the switch", || threads(pid, "outbox-relay") == 1);
    }
    t.keys(&["q"]);
    until(20, "the console to quit", || !t.alive() || std::fs::metadata(format!("/proc/{pid}")).is_err());
}
