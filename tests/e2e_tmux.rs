//! The console as an operator uses it: the real binary in a real terminal
//! (tmux), driven with keystrokes, checked through the CLI, the audit log and
//! the log file. tmux is installed by the test command (scripts/test.sh).

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::tmux::Tmux;
use serde_json::{Value, json};

use common::{bin, describe_at as describe, lb_at as lb, reviews_and_a_failed_publication as setup};

#[test]
fn operator_approves_rejects_and_redrives_from_the_console() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = setup(dir.path());
    let tokens: Vec<String> = lb(&data, &["tasks", "list"])["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .filter_map(|t| t["taskToken"].as_str().map(str::to_string))
        .collect();
    assert_eq!(tokens.len(), 2);
    let cmd = format!("{} --data-dir {} --user dr.e2e console --no-demo", bin(), data.display());
    let t = Tmux::start("lightbox-e2e", &cmd, 120, 32);
    t.wait_for("LIGHTBOX");

    // Reviews: STAT first. Approve it.
    t.keys(&["2"]);
    let s = t.wait_for("ACC-E2E-1");
    assert!(s.find("ACC-E2E-1") < s.find("ACC-E2E-2"), "STAT sorts first:\n{s}");
    assert!(!s.contains("Testperson") && !s.contains("SYN-000777"), "PHI is masked:\n{s}");
    t.keys(&["a"]);
    t.wait_for("Approve ACC-E2E-1");
    t.keys(&["Enter"]);
    t.wait_for("approve: 1 done");

    // Reject the other with the second reason code.
    t.wait_for("1 pending");
    t.keys(&["r"]);
    t.wait_for("Reject ACC-E2E-2");
    t.keys(&["Down", "Enter"]);
    t.wait_for("reject: 1 done");

    // Executions: failed ones, redrive the publication.
    t.keys(&["3", "s", "s"]);
    // Both failed executions listed (the status line may name the selection that left the view).
    let s = t.wait_for("Executions · 2 · status FAILED");
    assert!(s.contains("ACC-E2E-2"), "the rejected study failed too:\n{s}");
    t.keys(&["/"]);
    for c in ["A", "C", "C", "-", "E", "2", "E", "-", "3", "Enter"] {
        t.keys(&[c]);
    }
    t.keys(&["R"]);
    t.wait_for("Redrive 1 execution(s)");
    t.keys(&["y"]);
    t.wait_for("redrive: 1 done");

    // Drill into it and back out.
    t.keys(&["Enter"]);
    t.wait_for("History · compact");
    t.wait_for("Publish (Task)");
    t.keys(&["Escape", "q"]);
    let start = Instant::now();
    while t.alive() && start.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(100));
    }

    // What happened, seen through the CLI.
    assert_eq!(describe(&data, "review", "ACC-E2E-1")["status"], "SUCCEEDED");
    let rejected = describe(&data, "review", "ACC-E2E-2");
    assert_eq!(rejected["status"], "FAILED");
    assert_eq!(rejected["error"], "Review.WrongPatient");
    let redriven = describe(&data, "publish", "ACC-E2E-3");
    assert_eq!(redriven["redriveCount"], 1);
    let audit = lb(&data, &["audit", "list"]);
    let rows: Vec<(String, String, String, String)> = audit["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| {
            let s = |k: &str| e[k].as_str().unwrap_or_default().to_string();
            (s("action"), s("actor"), s("source"), s("result"))
        })
        .collect();
    for action in ["approve", "reject", "redrive"] {
        assert!(rows.iter().any(|r| r.0 == action && r.1 == "dr.e2e" && r.2 == "console" && r.3 == "ok"), "{action} not audited: {rows:?}");
    }
    assert_eq!(lb(&data, &["audit", "verify"])["result"], "OK");

    // The log file holds no patient data and no full task token.
    let logs: String = std::fs::read_dir(data.join("logs"))
        .expect("logs dir")
        .filter_map(Result::ok)
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .collect();
    assert!(logs.contains("console started"), "the console logs to the file:\n{logs}");
    for secret in ["Testperson", "SYN-000777", "1950-02-03"].iter().map(|s| s.to_string()).chain(tokens.iter().cloned()) {
        assert!(!logs.contains(&secret), "log file contains {secret:?}");
    }
}

#[test]
fn read_only_console_refuses_actions_and_survives_resizes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = setup(dir.path());
    let cmd = format!("{} --data-dir {} --read-only console --no-demo", bin(), data.display());
    let t = Tmux::start("lightbox-e2e", &cmd, 80, 24);
    t.wait_for("READ-ONLY");
    t.keys(&["2"]);
    t.wait_for("ACC-E2E-1");
    t.keys(&["a"]);
    t.wait_for("read-only: approve is disabled");
    for (w, h) in [("200", "50"), ("80", "24"), ("40", "10"), ("120", "30")] {
        let ok = Command::new("tmux").args(["resize-window", "-t", &t.session, "-x", w, "-y", h]).status().expect("resize");
        assert!(ok.success());
        std::thread::sleep(Duration::from_millis(300));
        assert!(t.alive(), "console died at {w}x{h}");
    }
    t.wait_for("Reviews");
    t.keys(&["q"]);
    assert_eq!(lb(&data, &["tasks", "list"])["tasks"].as_array().map(Vec::len), Some(2), "nothing was approved");
}

#[test]
fn the_readme_command_starts_the_demo_hospital_on_a_fresh_data_dir() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("fresh");
    // What `cargo run --release` runs: no subcommand.
    let t = Tmux::start("lightbox-e2e", &format!("{} --data-dir {}", bin(), data.display()), 140, 36);
    // Wait for the panel itself: a capture can land between the header and the body of a draw.
    let s = t.wait_for("Stages · demo hospital (synthetic patients)");
    assert!(s.contains("DEMO"), "{s}");
    // Studies arrive as the simulated hospital runs.
    let s = t.wait_for("ACC-");
    assert!(!s.contains("Testperson"), "patient names are masked:\n{s}");
    t.keys(&["2"]);
    t.wait_for("Reviews —");
    t.keys(&["q"]);
    let machines = lb(&data, &["state-machines", "list"]);
    assert_eq!(machines["stateMachines"].as_array().map(Vec::len), Some(10), "six workflows and four compensation machines: {machines}");
    assert!(lb(&data, &["executions", "list"])["executions"].as_array().is_some_and(|e| !e.is_empty()));
}

#[test]
fn a_claimed_review_is_answered_only_with_an_audited_override() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = setup(dir.path());
    let tasks = lb(&data, &["tasks", "list"]);
    let stat = tasks["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .find(|t| t["input"].as_str().is_some_and(|i| i.contains("ACC-E2E-1")))
        .and_then(|t| t["taskToken"].as_str())
        .expect("the STAT review")
        .to_string();
    lb(&data, &["--user", "dr.a", "tasks", "claim", &stat]);
    let cmd = format!("{} --data-dir {} --user dr.e2e console --no-demo", bin(), data.display());
    let t = Tmux::start("lightbox-e2e", &cmd, 120, 32);
    t.keys(&["2"]);
    t.wait_for("ACC-E2E-1");
    t.keys(&["a"]);
    t.wait_for("claimed by dr.a");
    // The reason code (→: the first), then the note, word by word (tmux types a string that is
    // not a key name as it is).
    t.keys(&["Right", "dr.a", "Space", "is", "Space", "in", "Space", "theatre", "Enter"]);
    t.wait_for("OVERRIDES dr.a's claim");
    t.keys(&["Enter"]);
    t.wait_for("approve: 1 done");
    t.keys(&["q"]);
    assert_eq!(describe(&data, "review", "ACC-E2E-1")["status"], "SUCCEEDED");
    let audit = lb(&data, &["audit", "list", "--action", "approve"]);
    let row = &audit["entries"][0];
    assert_eq!(row["actor"], "dr.e2e");
    assert_eq!(row["source"], "console");
    let reason = row["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("override of the claim held by dr.a: dr.a is in theatre"), "{row}");
    assert_eq!(row["reasonCode"], "direct-care", "{row}");
}

/// Seen: an execution whose JSONata Wait resolved to 10^15 seconds panicked the engine at
/// every restart; five unrelated executions with due timers never moved, and the console on
/// that data dir drew a blank screen and ignored `q`. Now the console draws, drives the
/// others to completion, and quits.
#[test]
fn one_bad_execution_never_blanks_the_console_or_stalls_the_others() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let long = json!({"QueryLanguage": "JSONata", "StartAt": "Long", "States": {
        "Long": {"Type": "Wait", "Seconds": "{% 1000000000000000 %}", "End": true}}});
    let short = json!({"StartAt": "Nap", "States": {"Nap": {"Type": "Wait", "Seconds": 1, "Next": "Done"}, "Done": {"Type": "Succeed"}}});
    for (name, def) in [("long", &long), ("short", &short)] {
        let f = dir.path().join(format!("{name}.json"));
        std::fs::write(&f, def.to_string()).expect("write");
        lb(&data, &["state-machines", "create", "--name", name, "--definition", f.to_str().expect("p")]);
    }
    for i in 0..5 {
        lb(&data, &["executions", "start", "--state-machine", "short", "--name", &format!("nap-{i}")]);
    }
    // Started last, so its failure (or a panic) would come first on the next pass.
    let out = Command::new(bin())
        .arg("--data-dir")
        .arg(&data)
        .args(["executions", "start", "--state-machine", "long", "--name", "bad"])
        .output()
        .expect("run");
    assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"), "{}", String::from_utf8_lossy(&out.stderr));
    let t = Tmux::start("lightbox-e2e", &format!("{} --data-dir {} console --no-demo", bin(), data.display()), 120, 30);
    t.wait_for("Pipelines");
    t.keys(&["3"]);
    t.wait_for("Executions");
    let start = Instant::now();
    loop {
        let list = lb(&data, &["executions", "list", "--status", "SUCCEEDED"]);
        if list["executions"].as_array().map(Vec::len) == Some(5) {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "the console's engine never finished the five: {list}\n{}", t.screen());
        std::thread::sleep(Duration::from_millis(200));
    }
    let bad = describe(&data, "long", "bad");
    assert_eq!(bad["status"], "FAILED", "{bad}");
    assert_eq!(bad["error"], "States.Runtime", "{bad}");
    let s = t.screen();
    assert!(s.contains("Executions") && !s.contains("panicked"), "{s}");
    t.keys(&["q"]);
    let start = Instant::now();
    while t.alive() {
        assert!(start.elapsed() < Duration::from_secs(5), "q did not quit:\n{}", t.screen());
        std::thread::sleep(Duration::from_millis(100));
    }
}

// ----- look, identity and CLI -----

/// The "running N" count in the console's header.
fn header_running(screen: &str) -> Option<u64> {
    let line = screen.lines().next()?;
    let at = line.find("running ")? + "running ".len();
    line[at..].split_whitespace().next()?.parse().ok()
}

/// Seen: a reopened demo data directory stood still with no word. The console resumes the
/// demo's workload, says so, and the hospital moves on (new studies, the header's count).
#[test]
fn a_reopened_demo_data_dir_says_the_demo_runs_and_time_moves() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("demo");
    let out = Command::new(bin()).arg("--data-dir").arg(&data).args(["demo", "--seconds", "1"]).output().expect("demo");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let before = lb(&data, &["executions", "list"])["executions"].as_array().map(Vec::len).unwrap_or(0);
    assert!(before > 0, "the demo left studies behind");

    let t = Tmux::start("lightbox-e2e", &format!("{} --data-dir {}", bin(), data.display()), 120, 30);
    let s = t.wait_for("demo running");
    assert!(s.contains("resumed on this data directory") && s.contains("DEMO"), "{s}");
    let first = header_running(&s);
    // The workload runs: new studies start and the header's count follows.
    let start = Instant::now();
    loop {
        let now = lb(&data, &["executions", "list"])["executions"].as_array().map(Vec::len).unwrap_or(0);
        let screen = t.screen();
        if now > before && header_running(&screen).is_some() && header_running(&screen) != first {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "the demo stood still: {before} → {now} executions\n{screen}");
        std::thread::sleep(Duration::from_millis(300));
    }
    t.keys(&["q"]);

    // With --no-demo it says the demo is paused, and nothing starts.
    let paused = lb(&data, &["executions", "list"])["executions"].as_array().map(Vec::len).unwrap_or(0);
    let t = Tmux::start("lightbox-e2e", &format!("{} --data-dir {} console --no-demo", bin(), data.display()), 120, 30);
    let s = t.wait_for("demo paused");
    assert!(s.contains("--no-demo"), "{s}");
    std::thread::sleep(Duration::from_secs(2));
    t.keys(&["q"]);
    assert_eq!(
        lb(&data, &["executions", "list"])["executions"].as_array().map(Vec::len).unwrap_or(0),
        paused,
        "a paused demo starts nothing"
    );
}

// ----- move -----

/// The `:` command line remembers and completes, `:study` with part of a name opens a pick
/// list, Esc comes back to the view and row the search started from (seen: always
/// Executions), and the lock opens only to the operator's name (seen: any Enter).
#[test]
fn command_history_study_pick_list_back_and_unlock_by_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = setup(dir.path());
    let cmd = format!("{} --data-dir {} --user dr.e2e console --no-demo", bin(), data.display());
    let t = Tmux::start("lightbox-e2e", &cmd, 120, 30);
    t.wait_for("LIGHTBOX");
    // Tab completes the command, Enter runs it; ↑ recalls it.
    t.keys(&[":", "exe", "Tab"]);
    t.wait_for(":executions ▏");
    t.keys(&["fa", "Tab", "Enter"]);
    t.wait_for("status FAILED");
    t.keys(&[":", "Up"]);
    t.wait_for(":executions failed▏");
    t.keys(&["Escape"]);
    // From the second review, find by part of a name: three match.
    t.keys(&["2"]);
    t.wait_for("ACC-E2E-2");
    t.keys(&["j", ":", "study", "Space", "e2e", "Enter"]);
    t.wait_for("3 matches for \"e2e\"");
    t.keys(&["Down", "Enter"]);
    let s = t.wait_for("RadiologistReview");
    assert!(s.contains("Executions › review › ACC-E2E-2"), "the chosen match opened:\n{s}");
    t.keys(&["Escape"]);
    let s = t.wait_for("Reviews —");
    let selected = s.lines().find(|l| l.contains('▶')).unwrap_or_default();
    assert!(selected.contains("ACC-E2E-2"), "back on the row it came from:\n{s}");
    // Lock; a stray Enter and a wrong name do not open it.
    t.keys(&[":", "lock", "Enter"]);
    t.wait_for("type your user name (dr.e2e)");
    t.keys(&["Enter"]);
    t.keys(&["dr.x", "Enter"]);
    let s = t.wait_for("not the operator's name");
    assert!(s.contains("Locked.") && !s.contains("ACC-E2E"), "{s}");
    t.keys(&["dr.e2e", "Enter"]);
    t.wait_for("Reviews —");
    t.keys(&["q"]);
}

// ----- read: the detail pane -----

/// An operator reads a failed execution whole (its cause in the header, a history event
/// opened with Enter), then in Events pauses the live tail (new events wait, counted), opens
/// an event and jumps from it to its execution.
#[test]
fn operator_reads_an_event_in_full_and_jumps_from_the_paused_feed_to_its_execution() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = setup(dir.path());
    let cmd = format!("{} --data-dir {} --user dr.e2e console --no-demo", bin(), data.display());
    let t = Tmux::start("lightbox-e2e", &cmd, 120, 32);
    t.wait_for("LIGHTBOX");
    t.keys(&["3"]);
    t.wait_for("ACC-E2E-3");
    t.keys(&["/", "ACC-E2E-3", "Enter", "Enter"]);
    let s = t.wait_for("History · compact");
    t.wait_for("cause PACS down");
    assert!(s.contains("Executions › publish › ACC-E2E-3"), "{s}");
    // The second event (the first state entered) opens to its full, masked detail.
    t.keys(&["j", "Enter"]);
    let s = t.wait_for("Event #2 TaskStateEntered");
    assert!(s.contains("\"stateEnteredEventDetails\": {") && s.contains("Esc close"), "{s}");
    assert!(!s.contains("Testperson") && !s.contains("SYN-000777"), "masked:\n{s}");
    t.keys(&["Escape"]);
    let s = t.wait_for("History · compact");
    assert!(s.contains("▶ 2 (Enter opens)"), "back on the same event:\n{s}");

    // Events: pause, and what arrives meanwhile waits, counted.
    t.keys(&["4"]);
    t.wait_for("Events · live");
    t.keys(&["p"]);
    t.wait_for("Events · PAUSED · 0 waiting");
    let input = json!({"accession": "ACC-E2E-4"}).to_string();
    lb(&data, &["executions", "start", "--state-machine", "publish", "--name", "ACC-E2E-4", "--input-json", &input]);
    let start = Instant::now();
    loop {
        let s = t.screen();
        if s.contains("PAUSED") && !s.contains("PAUSED · 0 waiting") {
            assert!(!s.contains("ACC-E2E-4"), "the paused list did not move:\n{s}");
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "no events counted as waiting:\n{s}");
        std::thread::sleep(Duration::from_millis(150));
    }
    // Open the selected event, then jump to its execution.
    t.keys(&["Enter"]);
    let s = t.wait_for("Enter go to execution");
    let title = s.lines().find(|l| l.contains("Event #")).unwrap_or_default().to_string();
    let name = ["ACC-E2E-1", "ACC-E2E-2", "ACC-E2E-3"].into_iter().find(|n| title.contains(n)).expect("the event names its execution");
    t.keys(&["Enter"]);
    let s = t.wait_for("History · compact");
    assert!(s.contains(&format!("› {name}")), "jumped to {name}:\n{s}");
    t.keys(&["q"]);
}

// ----- tables and the / filter -----

/// Seen on the real feed: the Events STATE column blank in every row, and `/Archive` on a
/// failed execution whose ERROR reads `Archive.Unavailable` giving no rows. Here through the
/// real binary, store and feed, at 80 columns.
#[test]
fn events_name_their_state_and_the_filter_finds_errors_and_causes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = setup(dir.path());
    let cmd = format!("{} --data-dir {} --user dr.e2e console --no-demo", bin(), data.display());
    let t = Tmux::start("lightbox-e2e", &cmd, 80, 24);
    t.wait_for("LIGHTBOX");
    t.keys(&["4"]);
    let s = t.wait_for("TaskFailed");
    let failed = s.lines().find(|l| l.contains("TaskFailed")).unwrap_or_default();
    assert!(failed.contains("Publish"), "the STATE column names the state:\n{s}");
    assert!(s.lines().any(|l| l.contains("TaskSubmitted") && l.contains("Radiologist")), "{s}");
    t.keys(&["3"]);
    t.wait_for("ACC-E2E-3");
    t.keys(&["/", "Archive", "Enter"]);
    let s = t.wait_for("Executions · 1 ·");
    assert!(s.contains("ACC-E2E-3") && !s.contains("ACC-E2E-1"), "{s}");
    // The cause is searched too, though no column shows it.
    // The input opens with the current filter: erase it.
    t.keys(&["/"]);
    t.keys(&["BSpace"; 7]);
    t.keys(&["PACS down", "Enter"]);
    let s = t.wait_for("› /PACS down");
    assert!(s.contains("ACC-E2E-3") && s.contains("Executions · 1 ·"), "{s}");
    // Patient data stays masked and unsearchable.
    t.keys(&["/"]);
    t.keys(&["BSpace"; 9]);
    t.keys(&["Testperson", "Enter"]);
    let s = t.wait_for("Executions · 0 ·");
    assert!(!s.lines().any(|l| l.starts_with('│') && l.contains("ACC-E2E")), "a masked name matches nothing: {s}");
}

// ----- outbox -----

#[test]
fn view_6_shows_a_sink_and_pausing_and_resuming_it_is_audited() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = setup(dir.path());
    let config = dir.path().join("config.toml");
    std::fs::write(&config, "[[outbox.sinks]]\nname = \"archive\"\nkind = \"ndjson\"\npath = \"events.ndjson\"\n").expect("config");
    let cmd = format!("{} --data-dir {} --config {} console --no-demo", bin(), data.display(), config.display());
    let t = Tmux::start("lightbox-e2e", &cmd, 140, 30);
    t.wait_for("Pipelines");
    t.keys(&["6"]);
    t.wait_for("archive");
    t.wait_for("CLOSED");
    t.keys(&["p"]);
    t.wait_for("pause delivery to archive");
    // Pausing asks why: Enter without a reason is refused.
    t.keys(&["Enter"]);
    t.wait_for("outbox-pause: pick a reason code");
    t.keys(&["Left", "archive disk swap", "Enter"]);
    t.wait_for("PAUSED");
    t.keys(&["p"]);
    t.wait_for("resume delivery to archive");
    t.keys(&["y"]);
    t.wait_for("CLOSED");
    // The relay delivered the setup's events while the console ran.
    let file = data.join("events.ndjson");
    let start = Instant::now();
    while std::fs::read_to_string(&file).map(|t| t.lines().count()).unwrap_or(0) < 3 {
        assert!(start.elapsed() < Duration::from_secs(20), "the relay delivered nothing");
        std::thread::sleep(Duration::from_millis(150));
    }
    t.keys(&["q"]);
    for action in ["outbox-pause", "outbox-resume"] {
        let entries = lb(&data, &["audit", "list", "--action", action]);
        let e = entries["entries"].as_array().expect("entries");
        assert_eq!(e.len(), 1, "{action}: {entries}");
        assert_eq!(e[0]["source"], "console", "{entries}");
        if action == "outbox-pause" {
            assert_eq!(e[0]["reason"], "archive disk swap", "{entries}");
            assert_eq!(e[0]["reasonCode"], "other", "{entries}");
        }
    }
}

/// View 6's Dependencies table: hold the clearinghouse for a reason, see it held, release it;
/// the audit log has both, under the CLI twin's action names, from the console.
#[test]
fn view_6_holds_and_releases_a_dependency_with_reasons() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = setup(dir.path());
    let config = dir.path().join("config.toml");
    std::fs::write(&config, "[[dependencies]]\nname = \"clearinghouse\"\nmatch = { handler = \"lightbox-submit-claim\" }\n")
        .expect("config");
    let cmd = format!("{} --data-dir {} --config {} --user dr.e2e console --no-demo", bin(), data.display(), config.display());
    let t = Tmux::start("lightbox-e2e", &cmd, 120, 32);
    t.wait_for("Pipelines");
    t.keys(&["6"]);
    t.wait_for("clearinghouse");
    // Tab to the Dependencies table, hold the selected one.
    t.keys(&["Tab"]);
    t.wait_for("breaker(s) not closed ◀");
    t.keys(&["h"]);
    t.wait_for("hold clearinghouse");
    t.keys(&["Left", "clearinghouse answers 502", "Enter"]);
    t.wait_for("dependency-hold: 1 done");
    let s = t.wait_for("by dr.e2e");
    assert!(s.contains("[other] clear"), "the hold and its reason show:\n{s}");
    // Release it, for what was checked.
    t.keys(&["r"]);
    t.wait_for("release the hold on clearinghouse");
    t.keys(&["Left", "vendor confirmed recovery", "Enter"]);
    t.wait_for("dependency-release: 1 done");
    let start = Instant::now();
    while t.screen().contains("by dr.e2e") {
        assert!(start.elapsed() < Duration::from_secs(20), "still shown as held:\n{}", t.screen());
        std::thread::sleep(Duration::from_millis(150));
    }
    t.keys(&["q"]);
    for (action, reason) in [("dependency-hold", "clearinghouse answers 502"), ("dependency-release", "vendor confirmed recovery")] {
        let entries = lb(&data, &["audit", "list", "--action", action]);
        let e = entries["entries"].as_array().expect("entries");
        let done: Vec<&Value> = e.iter().filter(|x| x["result"] == "ok").collect();
        assert_eq!(done.len(), 1, "{action}: {entries}");
        assert_eq!(done[0]["source"], "console", "{entries}");
        assert_eq!(done[0]["actor"], "dr.e2e", "{entries}");
        assert_eq!(done[0]["reason"], format!("dependency clearinghouse: {reason}"), "{entries}");
        assert_eq!(done[0]["reasonCode"], "other", "{entries}");
    }
    assert_eq!(lb(&data, &["audit", "verify"])["result"], "OK");
}

// ----- escalation -----

/// `e` on a review: the confirmation names where the escalation goes (here nothing catches
/// it, so it warns that the execution fails); confirming writes one "Review Escalated" event
/// and an audit row from the console.
#[test]
fn escalating_a_review_from_the_console_is_an_event_and_an_audit_row() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = setup(dir.path());
    let cmd = format!("{} --data-dir {} --user dr.e2e console --no-demo", bin(), data.display());
    let t = Tmux::start("lightbox-e2e", &cmd, 120, 32);
    t.keys(&["2"]);
    t.wait_for("ACC-E2E-1");
    t.keys(&["e"]);
    let s = t.wait_for("Review.Escalated");
    assert!(s.contains("FAILS"), "the confirmation must warn that the execution fails:\n{s}");
    t.keys(&["Right", "no first reader on shift", "Enter"]);
    t.wait_for("escalate: 1 done");
    t.keys(&["q"]);
    let audit = lb(&data, &["audit", "list", "--action", "escalate"]);
    let row = &audit["entries"][0];
    assert_eq!(row["actor"], "dr.e2e");
    assert_eq!(row["source"], "console");
    assert_eq!(row["reason"], "no first reader on shift", "the reason is audited: {audit}");
    assert_eq!(row["reasonCode"], "direct-care", "and its code: {audit}");
    let store = lightbox::store::Store::open_read_only(&data.join("lightbox.db")).expect("store");
    let events: Vec<Value> = store
        .outbox(false, 10_000)
        .expect("outbox")
        .into_iter()
        .filter_map(|r| serde_json::from_str::<Value>(&r.payload).ok())
        .filter(|e| e["detail-type"] == "Review Escalated")
        .collect();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["detail"]["by"], "dr.e2e");
    assert_eq!(events[0]["detail"]["automatic"], false);
    assert_eq!(events[0]["resources"][0], row["execution"].as_str().or(row["executionArn"].as_str()).unwrap_or_default());
}

// ----- compensation -----

/// The demo's billing workflow posts a charge, then the clearinghouse is down and the operator
/// stops it: `C` shows the plan (the posted charge), takes a reason and starts `billing-undo`.
#[test]
fn operator_compensates_a_stopped_demo_billing_workflow_with_c() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = common::stopped_billing(dir.path());

    let cmd = format!("{} --data-dir {} --user dr.e2e console --no-demo", bin(), data.display());
    let t = Tmux::start("lightbox-e2e", &cmd, 140, 36);
    t.wait_for("LIGHTBOX");
    t.keys(&["3"]);
    t.wait_for("ACC-E2E-9");
    t.keys(&["C"]);
    let s = t.wait_for("Compensate ACC-E2E-9 (ABORTED)");
    assert!(s.contains("billing-undo") && s.contains("PostCharge"), "the plan names the machine and the step:\n{s}");
    assert!(!s.contains("Testperson") && !s.contains("SYN-000999"), "PHI is masked in the plan:\n{s}");
    t.keys(&["Right", "charge posted for a stopped claim", "Enter"]);
    t.wait_for("compensate: 1 done");
    // The detail view links it to its compensation and says what R and C would do.
    t.keys(&["Enter"]);
    t.wait_for("compensated by");
    t.keys(&["Escape", "q"]);

    let o = describe(&data, "billing", "ACC-E2E-9");
    assert_eq!(o["compensatedBy"], "arn:aws:states:us-east-1:000000000000:execution:billing-undo:ACC-E2E-9-undo");
    assert_eq!(describe(&data, "billing-undo", "ACC-E2E-9-undo")["status"], "SUCCEEDED");
    let audit = lb(&data, &["audit", "list"]);
    let hit = audit["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .any(|e| e["action"] == "compensate" && e["actor"] == "dr.e2e" && e["source"] == "console" && e["result"] == "ok");
    assert!(hit, "compensate not audited: {audit}");
    assert_eq!(lb(&data, &["audit", "verify"])["result"], "OK");
}

// ----- SLO clocks (view 5) -----

#[test]
fn the_slo_view_counts_a_stat_read_into_breach_and_e_escalates_its_review() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = setup(dir.path());
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        "[[slo]]\nname = \"stat-first-read\"\nwhen = { \"$.priority\" = \"STAT\" }\nfrom = \"RadiologistReview\"\nto = \"RadiologistReview\"\ntarget = \"3s\"\nat_risk = 0.5\n",
    )
    .expect("config");
    let cmd = format!("{} --data-dir {} --config {} --user dr.e2e console --no-demo", bin(), data.display(), config.display());
    let t = Tmux::start("lightbox-e2e", &cmd, 120, 32);
    t.wait_for("LIGHTBOX");
    t.keys(&["5"]);
    let s = t.wait_for("ACC-E2E-1");
    assert!(s.contains("stat-first-read") && !s.contains("ACC-E2E-2"), "only the STAT study has the clock:\n{s}");
    // The clock counts down on screen and breaches without any key pressed.
    let s = t.wait_for("BREACHED");
    assert!(s.contains("RadiologistReview"), "{s}");
    // `e` escalates the review the study waits in; the confirmation says where it goes.
    t.keys(&["e"]);
    let s = t.wait_for("Escalate ACC-E2E-1");
    assert!(s.contains("Review.Escalated"), "{s}");
    t.keys(&["Right", "STAT read breached", "Enter"]);
    t.wait_for("escalate: 1 done");
    t.keys(&["q"]);
    let audit = lb(&data, &["audit", "list", "--action", "escalate"]);
    let entries = audit["entries"].as_array().cloned().unwrap_or_default();
    assert!(entries.iter().any(|e| e["actor"] == "dr.e2e" && e["source"] == "console"), "{audit}");
    // The console's engine tick wrote the breach once, as a Lightbox event.
    let conn = rusqlite::Connection::open(data.join("lightbox.db")).expect("db");
    let n: i64 = conn
        .query_row("SELECT COUNT(*) FROM outbox WHERE payload LIKE '%\"detail-type\":\"SLO Breached\"%'", [], |r| r.get(0))
        .expect("count");
    assert_eq!(n, 1);
}
