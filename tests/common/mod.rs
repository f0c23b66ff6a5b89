//! What the command-line tests share: the real `lightbox` binary on a store in a fresh
//! temporary directory, with no user config, audit key or user from the environment.
#![allow(dead_code)]

pub mod aws;
pub mod receiver;
pub mod serve;
pub mod tmux;

use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::Value;

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_lightbox")
}

/// `lightbox --data-dir DATA --json ARGS`, expected to succeed, its output parsed.
pub fn lb_at(data: &std::path::Path, args: &[&str]) -> Value {
    let out = Command::new(bin()).arg("--data-dir").arg(data).arg("--json").args(args).output().expect("run lightbox");
    assert!(out.status.success(), "lightbox {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("json")
}

/// The console tests' hospital in `dir/data`: two reviews waiting (ACC-E2E-1 STAT, ACC-E2E-2
/// ROUTINE, of machine `review`) and a publication that failed (ACC-E2E-3, of `publish`), all
/// of one synthetic patient.
pub fn reviews_and_a_failed_publication(dir: &std::path::Path) -> PathBuf {
    use serde_json::json;
    let data = dir.join("data");
    let review = json!({"StartAt": "RadiologistReview", "States": {
        "RadiologistReview": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken",
            "Parameters": {"FunctionName": "echo", "Payload": {"token.$": "$$.Task.Token", "accession.$": "$.accession",
                           "priority.$": "$.priority", "draft": "No acute findings."}},
            "TimeoutSeconds": 3600, "ResultPath": "$.review", "Next": "Signed"},
        "Signed": {"Type": "Succeed"}}});
    let publish = json!({"StartAt": "Publish", "States": {"Publish": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
        "Parameters": {"FunctionName": "fail", "Payload": {"error": "Archive.Unavailable", "cause": "PACS down"}}, "End": true}}});
    std::fs::write(dir.join("review.json"), review.to_string()).expect("write");
    std::fs::write(dir.join("publish.json"), publish.to_string()).expect("write");
    lb_at(&data, &["state-machines", "create", "--name", "review", "--definition", dir.join("review.json").to_str().expect("p")]);
    lb_at(&data, &["state-machines", "create", "--name", "publish", "--definition", dir.join("publish.json").to_str().expect("p")]);
    let patient = json!({"name": "Ada Testperson", "mrn": "SYN-000777", "birthDate": "1950-02-03"});
    for (acc, prio) in [("ACC-E2E-1", "STAT"), ("ACC-E2E-2", "ROUTINE")] {
        let input = json!({"accession": acc, "priority": prio, "modality": "CT", "bodyPart": "head", "patient": patient}).to_string();
        lb_at(&data, &["executions", "start", "--state-machine", "review", "--name", acc, "--input-json", &input]);
    }
    let input = json!({"accession": "ACC-E2E-3", "patient": patient}).to_string();
    lb_at(&data, &["executions", "start", "--state-machine", "publish", "--name", "ACC-E2E-3", "--input-json", &input]);
    data
}

/// The demo's billing workflow stopped after it posted a charge (ACC-E2E-9 of `billing`, its
/// compensation machine `billing-undo`), in `dir/data`.
pub fn stopped_billing(dir: &std::path::Path) -> PathBuf {
    use serde_json::json;
    let data = dir.join("data");
    for (name, text) in [
        ("billing", include_str!("../../src/sim/definitions/billing.asl.json")),
        ("billing-undo", include_str!("../../src/sim/definitions/undo.asl.json")),
    ] {
        let f = dir.join(format!("{name}.json"));
        std::fs::write(&f, text).expect("write");
        lb_at(&data, &["state-machines", "create", "--name", name, "--definition", f.to_str().expect("p")]);
    }
    let input = json!({
        "accession": "ACC-E2E-9", "patient": {"name": "Ada Testperson", "mrn": "SYN-000999"},
        "procedureCode": "70450", "diagnosisCodes": ["R51"], "patientClass": "O", "site": "MAIN",
        "timing": {"codingSeconds": 0, "remittanceSeconds": 0}, "faults": {"clearinghouseDown": true}
    })
    .to_string();
    let arn =
        lb_at(&data, &["executions", "start", "--state-machine", "billing", "--name", "ACC-E2E-9", "--input-json", &input])["executionArn"]
            .as_str()
            .expect("arn")
            .to_string();
    // The engine posts the charge; the claim then waits to be retried, and the operator stops it.
    let out = Command::new(bin()).arg("--data-dir").arg(&data).args(["engine", "--seconds", "2"]).output().expect("engine");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    lb_at(&data, &["executions", "stop", &arn]);
    assert_eq!(describe_at(&data, "billing", "ACC-E2E-9")["status"], "ABORTED");
    data
}

/// `executions describe` of `machine`'s execution `name` in `data`.
pub fn describe_at(data: &std::path::Path, machine: &str, name: &str) -> Value {
    lb_at(data, &["executions", "describe", &format!("arn:aws:states:us-east-1:000000000000:execution:{machine}:{name}")])
}

pub struct Lb {
    pub dir: tempfile::TempDir,
    /// `--user` on every command, when set.
    pub user: Option<String>,
}

impl Lb {
    pub fn new() -> Lb {
        Lb { dir: tempfile::tempdir().expect("tempdir"), user: None }
    }
    pub fn as_user(user: &str) -> Lb {
        Lb { user: Some(user.to_string()), ..Lb::new() }
    }
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    pub fn data(&self) -> PathBuf {
        self.path("data")
    }
    pub fn db(&self) -> PathBuf {
        self.data().join("lightbox.db")
    }
    /// Write `text` (a JSON value or a string) to a file in the temporary directory.
    pub fn write(&self, name: &str, text: &(impl std::fmt::Display + ?Sized)) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, text.to_string()).expect("write");
        p
    }
    /// [`Lb::write`], returning the path as a string for an argument list.
    pub fn file(&self, name: &str, text: &(impl std::fmt::Display + ?Sized)) -> String {
        self.write(name, text).to_str().expect("utf-8 path").to_string()
    }
    pub fn cmd(&self) -> Command {
        let mut c = Command::new(bin());
        c.env("HOME", self.dir.path()).env_remove("LIGHTBOX_CONFIG").env_remove("LIGHTBOX_AUDIT_KEY").env_remove("LIGHTBOX_USER");
        c.arg("--data-dir").arg(self.data());
        if let Some(u) = &self.user {
            c.args(["--user", u]);
        }
        c
    }
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().expect("run lightbox")
    }
    /// Run, expect success, return stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(out.status.success(), "lightbox {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
    /// Run with `--json`, expect success, parse stdout.
    pub fn json(&self, args: &[&str]) -> Value {
        let mut a = vec!["--json"];
        a.extend_from_slice(args);
        let text = self.ok(&a);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {text}"))
    }
    /// Run, expect failure, return stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(!out.status.success(), "lightbox {args:?} should have failed: {}", String::from_utf8_lossy(&out.stdout));
        String::from_utf8_lossy(&out.stderr).into_owned()
    }
}

// ----- the console on ratatui's TestBackend (tests/slo_console.rs, tests/console_outbox.rs) -----

use chrono::{DateTime, Utc};
use lightbox::tui::app::{App, AppEvent, Settings};
use lightbox::tui::keymap::Keymap;
use lightbox::tui::theme::Theme;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

/// A console on the dark theme and the default keys at `now`.
pub fn console(settings: Settings, now: DateTime<Utc>) -> App {
    App::new(settings, Keymap::default(), Theme::dark(), now)
}

/// A key press of a character.
pub fn key(c: char) -> AppEvent {
    AppEvent::Key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE))
}

/// A key press of a named key (Enter, Esc, Tab…).
pub fn code(c: KeyCode) -> AppEvent {
    AppEvent::Key(KeyEvent::new(c, KeyModifiers::NONE))
}

/// Type `text` into whatever has the keys (a dialog's field).
pub fn type_text(a: &mut App, text: &str) {
    for c in text.chars() {
        a.handle(key(c));
    }
}

/// The screen the console draws at `w`×`h`, one line per row, trailing blanks trimmed.
pub fn draw(a: &App, w: u16, h: u16) -> String {
    let mut term = ratatui::Terminal::new(ratatui::backend::TestBackend::new(w, h)).expect("terminal");
    term.draw(|f| a.render(f)).expect("draw");
    let buf = term.backend().buffer().clone();
    let mut out = String::new();
    for y in 0..buf.area.height {
        let line: String = (0..buf.area.width).map(|x| buf[(x, y)].symbol().to_string()).collect();
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

// ----- view 6 fixtures -----

use lightbox::engine::dependencies::DependencyStatus;
use lightbox::outbox::{Breaker, DeliveryRow, SinkStatus};

/// A webhook sink with two rows waiting, five failures and one row parked.
pub fn sink(name: &str, breaker: Breaker, left_ms: Option<i64>, paused: bool) -> SinkStatus {
    SinkStatus {
        name: name.into(),
        kind: "webhook".into(),
        format: "eventbridge".into(),
        target: "http://127.0.0.1:9000/events".into(),
        paused,
        paused_reason: paused.then(|| "maintenance".to_string()),
        breaker,
        breaker_left_ms: left_ms,
        next_trial_ms: None,
        backlog: 2,
        oldest_age_ms: Some(95_000),
        rate_per_min: 0,
        delivered: 40,
        failures: 5,
        parked: 1,
        last_error: Some("webhook answered HTTP 503".into()),
    }
}

/// Outbox row `id` of execution `stream` for `sink`, created a minute before `now`.
pub fn delivery(sink: &str, stream: &str, id: i64, attempts: u32, parked: bool, now: DateTime<Utc>) -> DeliveryRow {
    DeliveryRow {
        row_id: id,
        sink: sink.into(),
        stream: stream.into(),
        event_id: format!("e{id}"),
        detail_type: "Step Functions Execution Status Change".into(),
        created_ms: now.timestamp_millis() - 60_000,
        attempts,
        next_ms: None,
        parked,
        park_reason: None,
        last_error: parked.then(|| "webhook answered HTTP 400".to_string()),
    }
}

/// A dependency as `lightbox dependencies list --json` reports it: `breaker` with `left_s`
/// seconds to its trial, `failures` of 5 in the window, held by `held_by` when given.
pub fn dependency(name: &str, breaker: &str, left_s: Option<i64>, failures: usize, held_by: Option<&str>) -> DependencyStatus {
    DependencyStatus {
        name: name.into(),
        matches: format!("handler lightbox-{name}"),
        breaker: breaker.into(),
        failures,
        threshold: 5,
        window_seconds: 60,
        open_until: left_s.map(|_| "2026-11-25T10:15:00Z".to_string()),
        open_seconds_left: left_s,
        held: held_by.is_some(),
        held_by: held_by.map(str::to_string),
        hold_reason: held_by.map(|_| "clearinghouse maintenance window".to_string()),
        held_since: held_by.map(|_| "2026-11-25T09:40:00Z".to_string()),
        waiting: if held_by.is_some() { 3 } else { 0 },
    }
}

/// Start `cmd` (a `lightbox … serve --bind …` command) and read the address it says it listens
/// on from its first line; fails the test with its stderr if it says none within 20 s.
pub fn spawn_serve(cmd: &mut Command) -> (std::process::Child, String) {
    use std::io::{BufRead, BufReader, Read};
    use std::process::Stdio;
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("start lightbox serve");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = match rx.recv_timeout(std::time::Duration::from_secs(20)) {
        Ok(l) if !l.is_empty() => l,
        _ => {
            let _ = child.kill();
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            panic!("lightbox serve did not say where it listens: {err}");
        }
    };
    let url = line.split_whitespace().find(|w| w.starts_with("http")).expect("an address in the first line").to_string();
    (child, url)
}
