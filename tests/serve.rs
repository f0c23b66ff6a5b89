//! `lightbox serve` with real clients: the real binary on 127.0.0.1 (port 0), driven by boto3
//! and the AWS CLI from the venv `scripts/py-env.sh` makes (`LIGHTBOX_TEST_PYTHON`), plus
//! raw HTTP for what no SDK sends. SigV4, TLS and the audit trail are checked end to end.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use common::Lb;
use serde_json::Value;

/// The venv's python; a missing one fails the test saying how to get it.
fn python() -> PathBuf {
    match std::env::var_os("LIGHTBOX_TEST_PYTHON") {
        Some(p) if Path::new(&p).exists() => PathBuf::from(p),
        Some(p) => panic!("LIGHTBOX_TEST_PYTHON={p:?} does not exist: run scripts/py-env.sh (scripts/test.sh does) to create the venv"),
        None => panic!(
            "LIGHTBOX_TEST_PYTHON is not set: run the tests with scripts/test.sh, or export LIGHTBOX_TEST_PYTHON=\"$(scripts/py-env.sh | tail -n 1)\" (it installs boto3, awscli and moto into a venv)"
        ),
    }
}

fn py_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py")
}

/// A running `lightbox serve`; killed when dropped.
struct Server {
    child: Child,
    url: String,
    port: u16,
}

impl Server {
    fn start(lb: &Lb, extra: &[&str]) -> Server {
        Server::start_with(lb.cmd(), extra)
    }

    /// Start `cmd` (a `lightbox` command with its global options) with `serve` and `extra`.
    fn start_with(mut cmd: Command, extra: &[&str]) -> Server {
        let (child, url) = common::spawn_serve(cmd.args(["serve", "--bind", "127.0.0.1:0"]).args(extra));
        let port = url.rsplit(':').next().and_then(|p| p.parse().ok()).expect("a port");
        Server { child, url, port }
    }

    /// Run `tests/py/<script>` against this server; panics with its output unless it passes.
    fn py(&self, script: &str, env: &[(&str, &str)]) -> String {
        let mut c = Command::new(python());
        c.arg(py_dir().join(script)).current_dir(py_dir()).env("LIGHTBOX_ENDPOINT", &self.url);
        for (k, v) in env {
            c.env(k, v);
        }
        let out = c.output().expect("run python");
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "{script} failed:\n{text}");
        text
    }

    /// One raw HTTP/1.1 request; returns the status code and body.
    fn raw(&self, head: &str, body: &[u8]) -> (u16, String) {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
        s.write_all(head.as_bytes()).expect("write head");
        let _ = s.write_all(body);
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf);
        let text = String::from_utf8_lossy(&buf).into_owned();
        let status = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
        (status, text)
    }

    fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn config(lb: &Lb, text: &str) -> String {
    lb.file("config.toml", text)
}

/// The audit log's outcome rows, newest first.
fn audit_rows(lb: &Lb) -> Vec<Value> {
    lb.json(&["audit", "list", "--limit", "1000"])["entries"].as_array().cloned().expect("audit entries")
}

const CREDS: &str = r#"
[serve]
credentials = [{ access_key_id = "AKIDRADIOLOGY", secret_access_key = "correct-horse-battery" }]
"#;

#[test]
fn boto3_drives_state_machines_executions_tokens_redrive_and_stop() {
    let lb = Lb::new();
    let server = Server::start(&lb, &[]);
    let out = server.py("serve_core.py", &[]);
    assert!(out.contains("serve_core: all passed"), "{out}");
    server.stop();
    // Every mutating call was audited, unsigned on loopback as "loopback", from the API.
    let rows = audit_rows(&lb);
    let actions: Vec<&str> = rows.iter().filter_map(|r| r["action"].as_str()).collect();
    for a in [
        "create-state-machine",
        "start",
        "approve",
        "reject",
        "heartbeat",
        "redrive",
        "stop",
        "update-state-machine",
        "delete-state-machine",
    ] {
        assert!(actions.contains(&a), "no audit row for {a}: {actions:?}");
    }
    assert!(rows.iter().all(|r| r["actor"] == "loopback" && r["source"] == "api"), "{rows:?}");
    // Task tokens are never logged.
    let logs = std::fs::read_dir(lb.data().join("logs")).expect("logs").filter_map(|e| e.ok()).map(|e| e.path()).collect::<Vec<_>>();
    let text: String = logs.iter().map(|p| std::fs::read_to_string(p).unwrap_or_default()).collect();
    assert!(text.contains("API call"), "the server logs its calls");
    let db = rusqlite::Connection::open(lb.db()).expect("db");
    let tokens: Vec<String> =
        db.prepare("SELECT token FROM task_tokens").expect("q").query_map([], |r| r.get(0)).expect("q").map(|t| t.expect("t")).collect();
    assert!(!tokens.is_empty());
    for t in tokens {
        assert!(!text.contains(&t[..16]), "a task token is in the log");
    }
}

#[test]
fn the_aws_cli_drives_serve() {
    let lb = Lb::new();
    let server = Server::start(&lb, &[]);
    let aws = python().with_file_name("aws");
    assert!(aws.exists(), "the AWS CLI is missing from the venv: re-run scripts/py-env.sh");
    let run = |args: &[&str]| -> Value {
        let out = Command::new(&aws)
            .args(args)
            .args(["--endpoint-url", &server.url, "--region", "us-east-1", "--output", "json"])
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_CONFIG_FILE", lb.path("no-aws-config"))
            .env("AWS_SHARED_CREDENTIALS_FILE", lb.path("no-aws-credentials"))
            .output()
            .expect("run aws");
        assert!(out.status.success(), "aws {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
    };
    let def = r#"{"StartAt":"A","States":{"A":{"Type":"Pass","Result":{"done":true},"End":true}}}"#;
    let sm = run(&[
        "stepfunctions",
        "create-state-machine",
        "--name",
        "cli",
        "--definition",
        def,
        "--role-arn",
        "arn:aws:iam::000000000000:role/r",
    ]);
    let arn = sm["stateMachineArn"].as_str().expect("arn").to_string();
    let ex = run(&["stepfunctions", "start-execution", "--state-machine-arn", &arn, "--input", r#"{"a":1}"#]);
    let ex_arn = ex["executionArn"].as_str().expect("arn").to_string();
    let d = run(&["stepfunctions", "describe-execution", "--execution-arn", &ex_arn]);
    assert_eq!(d["status"], "SUCCEEDED", "{d}");
    assert_eq!(d["output"], r#"{"done":true}"#);
    let l = run(&["stepfunctions", "list-executions", "--state-machine-arn", &arn]);
    assert_eq!(l["executions"].as_array().map(Vec::len), Some(1), "{l}");
    // An error comes back as the CLI prints AWS errors.
    let out = Command::new(&aws)
        .args(["stepfunctions", "describe-execution", "--execution-arn", "arn:aws:states:us-east-1:000000000000:execution:cli:nope"])
        .args(["--endpoint-url", &server.url, "--region", "us-east-1"])
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .output()
        .expect("run aws");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("ExecutionDoesNotExist"), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn sigv4_is_checked_when_credentials_are_configured_and_audit_rows_carry_the_key() {
    let lb = Lb::new();
    let cfg = config(&lb, CREDS);
    let server = Server::start(&lb, &["--config", &cfg]);
    let out = server.py("serve_sigv4.py", &[("LB_KEY", "AKIDRADIOLOGY"), ("LB_SECRET", "correct-horse-battery")]);
    assert!(out.contains("serve_sigv4: all passed"), "{out}");
    server.stop();
    let rows = audit_rows(&lb);
    assert!(!rows.is_empty());
    assert!(rows.iter().all(|r| r["actor"] == "AKIDRADIOLOGY"), "{rows:?}");
    assert!(rows.iter().any(|r| r["action"] == "start"));
    let log: String = std::fs::read_dir(lb.data().join("logs"))
        .expect("logs")
        .filter_map(|e| e.ok())
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .collect();
    assert!(!log.contains("correct-horse-battery"), "a secret is in the log");
}

#[test]
fn off_loopback_needs_credentials_and_tls_or_an_explicit_opt_out() {
    let lb = Lb::new();
    let err = lb.fails(&["serve", "--bind", "0.0.0.0:0"]);
    assert!(err.contains("needs credentials"), "{err}");
    let cfg = config(&lb, CREDS);
    let err = lb.fails(&["--config", &cfg, "serve", "--bind", "0.0.0.0:0"]);
    assert!(err.contains("without TLS") && err.contains("--insecure-no-tls"), "{err}");
    assert!(!err.contains("correct-horse-battery"));
    let err = lb.fails(&["serve", "--bind", "not-an-address"]);
    assert!(err.contains("not an address"), "{err}");
}

#[test]
fn tls_with_a_generated_certificate() {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
    let lb = Lb::new();
    let ca_key = KeyPair::generate().expect("ca key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    ca.distinguished_name.push(DnType::CommonName, "Lightbox test CA");
    let ca_cert = ca.self_signed(&ca_key).expect("ca cert");
    let issuer = Issuer::new(ca, ca_key);
    let leaf_key = KeyPair::generate().expect("leaf key");
    let mut leaf = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).expect("leaf params");
    leaf.distinguished_name.push(DnType::CommonName, "localhost");
    let leaf_cert = leaf.signed_by(&leaf_key, &issuer).expect("leaf cert");
    let cert = lb.file("server.pem", &leaf_cert.pem());
    let key = lb.file("server.key", &leaf_key.serialize_pem());
    let ca_pem = lb.file("ca.pem", &ca_cert.pem());
    let cfg = config(&lb, CREDS);
    let server = Server::start(&lb, &["--config", &cfg, "--tls-cert", &cert, "--tls-key", &key]);
    assert!(server.url.starts_with("https://"), "{}", server.url);
    let out = server.py("serve_tls.py", &[("LB_CA", &ca_pem), ("LB_KEY", "AKIDRADIOLOGY"), ("LB_SECRET", "correct-horse-battery")]);
    assert!(out.contains("serve_tls: all passed"), "{out}");
}

#[test]
fn filter_log_events_reads_a_logged_machines_executions() {
    let lb = Lb::new();
    let server = Server::start(&lb, &[]);
    let out = server.py("serve_logs.py", &[]);
    assert!(out.contains("serve_logs: all passed"), "{out}");
}

#[test]
fn bad_requests_get_errors_and_the_server_lives_on() {
    let lb = Lb::new();
    let server = Server::start(&lb, &[]);
    let post = |target: &str, len: usize| {
        format!(
            "POST / HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/x-amz-json-1.0\r\nX-Amz-Target: {target}\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n"
        )
    };
    // Too large a body: refused by its length, not read into memory.
    let big = vec![b' '; 3 * 1024 * 1024];
    let (status, text) = server.raw(&post("AWSStepFunctions.ListStateMachines", big.len()), &big);
    assert_eq!(status, 413, "{text}");
    // Not HTTP at all.
    let (status, _) = server.raw("\x00\x01garbage\r\n\r\n", b"");
    assert!(status == 400 || status == 0);
    // No target, an unknown target, not JSON, a JSON array, deep nesting.
    let (status, text) = server.raw(&post("", 2), b"{}");
    assert!(status == 400 && text.contains("UnknownOperationException"), "{text}");
    let (status, text) = server.raw(&post("Other_20200101.Thing", 2), b"{}");
    assert!(status == 400 && text.contains("UnknownOperationException"), "{text}");
    let (status, text) = server.raw(&post("AWSStepFunctions.StartExecution", 5), b"{\"a\":");
    assert!(status == 400 && text.contains("SerializationException"), "{text}");
    let (status, text) = server.raw(&post("AWSStepFunctions.StartExecution", 2), b"[]");
    assert!(status == 400 && text.contains("SerializationException"), "{text}");
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let (status, text) = server.raw(&post("AWSStepFunctions.ListStateMachines", deep.len()), deep.as_bytes());
    assert!(status == 400 && text.contains("SerializationException"), "{text}");
    // A client that sends half its body and stalls does not hold the server up.
    let mut stalled = TcpStream::connect(("127.0.0.1", server.port)).expect("connect");
    stalled.write_all(post("AWSStepFunctions.ListStateMachines", 100).as_bytes()).expect("write");
    let started = Instant::now();
    let (status, text) = server.raw(&post("AWSStepFunctions.ListStateMachines", 2), b"{}");
    assert!(status == 200 && text.contains("stateMachines"), "{text}");
    assert!(started.elapsed() < Duration::from_secs(5));
    drop(stalled);
}

#[test]
fn read_only_refuses_every_change_and_still_answers_reads() {
    let lb = Lb::new();
    let mut cmd = lb.cmd();
    cmd.arg("--read-only");
    let server = Server::start_with(cmd, &[]);
    let post = |target: &str, body: &str| {
        format!(
            "POST / HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/x-amz-json-1.0\r\nX-Amz-Target: AWSStepFunctions.{target}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    };
    let def = r#"{\"StartAt\":\"A\",\"States\":{\"A\":{\"Type\":\"Pass\",\"End\":true}}}"#;
    let (status, text) = server.raw(&post("CreateStateMachine", &format!(r#"{{"name":"m","definition":"{def}"}}"#)), b"");
    assert!(status == 400 && text.contains("AccessDeniedException"), "{text}");
    let (status, text) = server.raw(&post("ListStateMachines", "{}"), b"");
    assert!(status == 200 && text.contains(r#""stateMachines":[]"#), "{text}");
}

#[test]
fn every_operation_checks_its_members_and_payloads_stay_out_of_logs_audit_and_errors() {
    let lb = Lb::new();
    let server = Server::start(&lb, &[]);
    let phi = "SYN-PHI-7731-DOE^JANE";
    let out = server.py("serve_limits.py", &[("LB_PHI", phi)]);
    assert!(out.contains("serve_limits: all passed"), "{out}");
    server.stop();
    // The server's log holds no payload.
    let log: String = std::fs::read_dir(lb.data().join("logs"))
        .expect("logs")
        .filter_map(|e| e.ok())
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .collect();
    assert!(log.contains("API call"), "the server logs its calls");
    assert!(!log.contains("SYN-PHI-7731"), "a payload is in the log");
    // Nor does any column of any audit row.
    let db = rusqlite::Connection::open(lb.db()).expect("db");
    let hits: i64 = db
        .query_row(
            "SELECT count(*) FROM audit_log WHERE coalesce(actor,'') || coalesce(action,'') || coalesce(execution_arn,'') || coalesce(task_token,'') \
             || coalesce(reason,'') || coalesce(before,'') || coalesce(after,'') || coalesce(result,'') || coalesce(error,'') LIKE '%SYN-PHI-7731%'",
            [],
            |r| r.get(0),
        )
        .expect("audit query");
    assert_eq!(hits, 0, "a payload is in the audit log");
    let rows: i64 = db.query_row("SELECT count(*) FROM audit_log", [], |r| r.get(0)).expect("count");
    assert!(rows >= 4, "the calls that ran were audited ({rows} rows)");
}

#[test]
fn an_unsigned_server_refuses_web_pages_dns_rebinding_and_cross_site_posts() {
    let lb = Lb::new();
    let server = Server::start(&lb, &[]);
    let def = r#"{\"StartAt\":\"A\",\"States\":{\"A\":{\"Type\":\"Pass\",\"End\":true}}}"#;
    let body = format!(r#"{{"name":"planted","definition":"{def}"}}"#);
    let post = |extra: &str| {
        format!(
            "POST / HTTP/1.1\r\n{extra}Content-Type: application/x-amz-json-1.0\r\nX-Amz-Target: AWSStepFunctions.CreateStateMachine\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    };
    // A page on a name that rebinds to 127.0.0.1: its requests name that host.
    let (status, text) = server.raw(&post(&format!("Host: rebind.attacker.example:{}\r\n", server.port)), b"");
    assert!(status == 403 && text.contains("AccessDeniedException"), "{text}");
    // A cross-site (or same-site) POST from a browser carries Origin.
    let (status, text) = server.raw(&post("Host: localhost\r\nOrigin: http://attacker.example\r\n"), b"");
    assert!(status == 403 && text.contains("AccessDeniedException"), "{text}");
    let (status, text) = server.raw(&post("Host: 127.0.0.1\r\nSec-Fetch-Mode: no-cors\r\n"), b"");
    assert!(status == 403 && text.contains("AccessDeniedException"), "{text}");
    assert!(audit_rows(&lb).is_empty(), "nothing was carried out");
    // An SDK naming the loopback address is served.
    let (status, text) = server.raw(&post(&format!("Host: 127.0.0.1:{}\r\n", server.port)), b"");
    assert!(status == 200 && text.contains("stateMachine:planted"), "{text}");
}

#[test]
fn history_and_log_pages_are_bounded_in_bytes() {
    let lb = Lb::new();
    let server = Server::start(&lb, &[]);
    let out = server.py("serve_pages.py", &[]);
    assert!(out.contains("serve_pages: all passed"), "{out}");
}

#[test]
fn waiting_start_sync_executions_cannot_starve_other_calls() {
    let lb = Lb::new();
    let cfg = config(&lb, "[serve]\nsync_timeout_seconds = 8\n");
    let server = Server::start(&lb, &["--config", &cfg]);
    let req = |target: &str, body: &str| {
        format!(
            "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-amz-json-1.0\r\nX-Amz-Target: AWSStepFunctions.{target}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    };
    let def = r#"{\"StartAt\":\"W\",\"States\":{\"W\":{\"Type\":\"Wait\",\"Seconds\":30,\"End\":true}}}"#;
    let (status, text) =
        server.raw(&req("CreateStateMachine", &format!(r#"{{"name":"slow","type":"EXPRESS","definition":"{def}"}}"#)), b"");
    assert_eq!(status, 200, "{text}");
    let start = req("StartSyncExecution", r#"{"stateMachineArn":"arn:aws:states:us-east-1:000000000000:stateMachine:slow"}"#);
    // More waiting calls than the server has blocking threads.
    let port = server.port;
    let waiting: Vec<_> = (0..20)
        .map(|_| {
            let start = start.clone();
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
                s.set_read_timeout(Some(Duration::from_secs(60))).expect("timeout");
                s.write_all(start.as_bytes()).expect("write");
                let mut buf = String::new();
                let _ = s.read_to_string(&mut buf);
                buf
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    let started = Instant::now();
    let (status, text) = server.raw(&req("ListStateMachines", "{}"), b"");
    assert!(status == 200 && text.contains("slow"), "{text}");
    assert!(started.elapsed() < Duration::from_secs(4), "ListStateMachines waited {:?} behind StartSyncExecution calls", started.elapsed());
    let answers: Vec<String> = waiting.into_iter().map(|t| t.join().expect("thread")).collect();
    let throttled = answers.iter().filter(|a| a.contains("ThrottlingException")).count();
    let timed_out = answers.iter().filter(|a| a.contains("TIMED_OUT")).count();
    assert!(throttled >= 12 && throttled + timed_out == 20, "throttled {throttled}, timed out {timed_out}: {answers:?}");
}

#[test]
fn an_execution_stopped_more_than_fourteen_days_ago_is_not_redrivable() {
    let lb = Lb::new();
    let server = Server::start(&lb, &[]);
    let req = |target: &str, body: &str| {
        format!(
            "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-amz-json-1.0\r\nX-Amz-Target: AWSStepFunctions.{target}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    };
    let def = r#"{\"StartAt\":\"F\",\"States\":{\"F\":{\"Type\":\"Fail\",\"Error\":\"Archive.Down\"}}}"#;
    let (status, text) = server.raw(&req("CreateStateMachine", &format!(r#"{{"name":"failing","definition":"{def}"}}"#)), b"");
    assert_eq!(status, 200, "{text}");
    let arn = "arn:aws:states:us-east-1:000000000000:execution:failing:old";
    let (status, text) = server.raw(
        &req("StartExecution", r#"{"stateMachineArn":"arn:aws:states:us-east-1:000000000000:stateMachine:failing","name":"old"}"#),
        b"",
    );
    assert_eq!(status, 200, "{text}");
    let describe = req("DescribeExecution", &format!(r#"{{"executionArn":"{arn}"}}"#));
    let (_, text) = server.raw(&describe, b"");
    assert!(text.contains(r#""status":"FAILED""#) && text.contains(r#""redriveStatus":"REDRIVABLE""#), "{text}");
    // It stopped 15 days ago (a plain second connection, as the engine's own writes are).
    let db = rusqlite::Connection::open(lb.db()).expect("db");
    let fifteen_days_ago = chrono::Utc::now().timestamp_millis() - 15 * 24 * 3600 * 1000;
    db.execute("UPDATE executions SET stop_ms = ?1 WHERE arn = ?2", rusqlite::params![fifteen_days_ago, arn]).expect("age it");
    let (_, text) = server.raw(&describe, b"");
    assert!(text.contains(r#""redriveStatus":"NOT_REDRIVABLE""#) && text.contains("14 days"), "{text}");
    let (status, text) = server.raw(&req("RedriveExecution", &format!(r#"{{"executionArn":"{arn}"}}"#)), b"");
    assert!(status == 400 && text.contains("ExecutionNotRedrivable") && text.contains("14 days"), "{text}");
    let (_, text) = server.raw(&describe, b"");
    assert!(text.contains(r#""status":"FAILED""#) && text.contains(r#""redriveCount":0"#), "nothing was redriven: {text}");
}

/// One Step Functions call over a fresh connection: how long it took and the answer.
fn timed_call(url: &str, op: &str, body: &Value) -> (Duration, u16, Value) {
    let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(120)).build().expect("client");
    let started = Instant::now();
    let r = client
        .post(url)
        .header("X-Amz-Target", format!("AWSStepFunctions.{op}"))
        .header("Content-Type", "application/x-amz-json-1.0")
        .body(body.to_string())
        .send();
    match r {
        Ok(r) => {
            let status = r.status().as_u16();
            let v: Value = r.json().unwrap_or(Value::Null);
            (started.elapsed(), status, v)
        }
        Err(e) => (started.elapsed(), 0, Value::String(e.to_string())),
    }
}

/// How long another client may wait for an answer while the server is under load (a loaded
/// 2-core machine, debug build): generous, and far below what the seen failures took (41 s).
const OTHERS_WAIT: Duration = Duration::from_secs(5);

#[test]
fn a_long_fan_out_does_not_hold_up_other_callers() {
    use serde_json::json;
    let lb = Lb::new();
    let server = Server::start(&lb, &[]);
    let url = server.url.clone();
    let fan = json!({"StartAt": "Fan", "States": {"Fan": {"Type": "Map", "ItemsPath": "$.items", "ResultPath": null, "End": true,
        "ItemProcessor": {"ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"}, "StartAt": "P", "States": {"P": {"Type": "Pass", "End": true}}}}}});
    for (name, def) in [("fan", fan), ("quick", json!({"StartAt": "P", "States": {"P": {"Type": "Pass", "End": true}}}))] {
        let (_, status, v) = timed_call(
            &url,
            "CreateStateMachine",
            &json!({"name": name, "definition": def.to_string(), "roleArn": "arn:aws:iam::000000000000:role/r"}),
        );
        assert_eq!(status, 200, "{v}");
    }
    // 40,000 items (well inside the 256 KiB input limit): seconds of work for the engine.
    let input = json!({"items": (0..40_000).collect::<Vec<usize>>()}).to_string();
    let fan_arn = "arn:aws:states:us-east-1:000000000000:execution:fan:long";
    let starter = {
        let url = url.clone();
        std::thread::spawn(move || {
            timed_call(
                &url,
                "StartExecution",
                &json!({"stateMachineArn": "arn:aws:states:us-east-1:000000000000:stateMachine:fan", "name": "long", "input": input}),
            )
        })
    };
    // While the fan-out runs, other callers are answered: reads, and other executions' starts.
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut rounds_while_running = 0;
    let mut slowest = Duration::ZERO;
    for i in 0.. {
        assert!(Instant::now() < deadline, "the fan-out did not end within 120 s");
        let (d, status, v) = timed_call(&url, "DescribeExecution", &json!({"executionArn": fan_arn}));
        slowest = slowest.max(d);
        assert!(d < OTHERS_WAIT, "DescribeExecution waited {d:?} behind the fan-out");
        if status == 400 && v.to_string().contains("ExecutionDoesNotExist") {
            continue;
        }
        assert_eq!(status, 200, "{v}");
        if v["status"] != "RUNNING" {
            assert_eq!(v["status"], "SUCCEEDED", "{v}");
            break;
        }
        rounds_while_running += 1;
        let calls = [
            ("ListExecutions", json!({"stateMachineArn": "arn:aws:states:us-east-1:000000000000:stateMachine:fan"})),
            (
                "StartExecution",
                json!({"stateMachineArn": "arn:aws:states:us-east-1:000000000000:stateMachine:quick", "name": format!("q{i}")}),
            ),
            ("DescribeExecution", json!({"executionArn": format!("arn:aws:states:us-east-1:000000000000:execution:quick:q{i}")})),
        ];
        for (op, body) in calls {
            let (d, status, v) = timed_call(&url, op, &body);
            slowest = slowest.max(d);
            assert!(status == 200 && d < OTHERS_WAIT, "{op} waited {d:?} behind the fan-out: {status} {v}");
        }
    }
    assert!(rounds_while_running >= 1, "no call was measured while the fan-out ran");
    let (d, status, v) = starter.join().expect("starter");
    assert!(status == 200 && d < OTHERS_WAIT, "StartExecution of the fan-out itself took {d:?}: {status} {v}");
    eprintln!("slowest call while the fan-out ran: {slowest:?} ({rounds_while_running} rounds)");
}

#[test]
fn silent_and_slow_sockets_do_not_lock_other_clients_out() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let lb = Lb::new();
    let server = Server::start(&lb, &[]);
    let port = server.port;
    // More silent sockets than the server serves connections at once (128 by default)...
    let silent: Vec<TcpStream> = (0..200).map(|_| TcpStream::connect(("127.0.0.1", port)).expect("connect")).collect();
    // ...and slow ones, a header byte a second.
    let stop = Arc::new(AtomicBool::new(false));
    let slow: Vec<_> = (0..20)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else { return };
                let head = b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Amz-Target: AWSStepFunctions.ListStateMachines\r\n";
                for b in head.iter().cycle() {
                    if stop.load(Ordering::Relaxed) || s.write_all(&[*b]).is_err() {
                        return;
                    }
                    std::thread::sleep(Duration::from_secs(1));
                }
            })
        })
        .collect();
    // Good calls are answered promptly all the while.
    for _ in 0..5 {
        let (d, status, v) = timed_call(&server.url, "ListStateMachines", &serde_json::json!({}));
        assert!(status == 200 && d < OTHERS_WAIT, "ListStateMachines waited {d:?} behind silent and slow sockets: {status} {v}");
    }
    // The server closes every silent socket: made room for others, or after the header timeout.
    let deadline = Instant::now() + Duration::from_secs(15);
    for mut s in silent {
        let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(10));
        s.set_read_timeout(Some(left)).expect("timeout");
        let mut buf = [0u8; 512];
        // End of stream or a reset: closed. (A timeout: still open.)
        let closed = loop {
            match s.read(&mut buf) {
                Ok(0) => break true,
                Ok(_) => continue,
                Err(e) if matches!(e.kind(), std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionAborted) => break true,
                Err(_) => break false,
            }
        };
        assert!(closed && Instant::now() < deadline, "a silent socket was still open after 15 s");
    }
    stop.store(true, Ordering::Relaxed);
    for t in slow {
        let _ = t.join();
    }
    let (d, status, _) = timed_call(&server.url, "ListStateMachines", &serde_json::json!({}));
    assert!(status == 200 && d < OTHERS_WAIT, "after the flood: {d:?}");
}

#[test]
fn a_long_fan_out_is_stopped_between_its_steps() {
    use serde_json::json;
    let lb = Lb::new();
    let server = Server::start(&lb, &[]);
    let url = server.url.clone();
    let fan = json!({"StartAt": "Fan", "States": {"Fan": {"Type": "Map", "ItemsPath": "$.items", "ResultPath": null, "End": true,
        "ItemProcessor": {"ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"}, "StartAt": "P", "States": {"P": {"Type": "Pass", "End": true}}}}}});
    let (_, status, v) = timed_call(
        &url,
        "CreateStateMachine",
        &json!({"name": "fan", "definition": fan.to_string(), "roleArn": "arn:aws:iam::000000000000:role/r"}),
    );
    assert_eq!(status, 200, "{v}");
    let input = json!({"items": (0..40_000).collect::<Vec<usize>>()}).to_string();
    let (_, status, v) = timed_call(
        &url,
        "StartExecution",
        &json!({"stateMachineArn": "arn:aws:states:us-east-1:000000000000:stateMachine:fan", "name": "long", "input": input}),
    );
    assert_eq!(status, 200, "{v}");
    let arn = v["executionArn"].as_str().expect("an execution ARN").to_string();
    // StartExecution answered after the first step: the fan-out is still running.
    let (_, _, v) = timed_call(&url, "DescribeExecution", &json!({"executionArn": arn}));
    assert_eq!(v["status"], "RUNNING");
    let (_, status, v) = timed_call(&url, "StopExecution", &json!({"executionArn": arn, "error": "Op.Stopped"}));
    assert_eq!(status, 200, "{v}");
    // Stopped between two steps of the fan-out, not after its last.
    let (_, _, v) = timed_call(&url, "DescribeExecution", &json!({"executionArn": arn}));
    assert_eq!((v["status"].as_str(), v["error"].as_str()), (Some("ABORTED"), Some("Op.Stopped")));
}

/// A flood of calls from one client (one IP address) is throttled at that client's share of
/// the calls in flight: another client (here 127.0.0.2, another loopback address) is answered
/// throughout, never throttled. Before, the flood could take every slot.
#[test]
fn a_flood_from_one_client_throttles_only_that_client() {
    let lb = Lb::new();
    let server = Server::start(&lb, &[]);
    let url = format!("http://127.0.0.1:{}", server.port);
    let other = reqwest::blocking::Client::builder()
        .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    let call = |client: &reqwest::blocking::Client, op: &str, body: &str| -> (u16, String) {
        let r = client
            .post(&url)
            .header("X-Amz-Target", format!("AWSStepFunctions.{op}"))
            .header("Content-Type", "application/x-amz-json-1.0")
            .body(body.to_string())
            .send()
            .expect("call");
        (r.status().as_u16(), r.text().unwrap_or_default())
    };
    // Each flood call holds the engine a while (an expression with real work in it).
    let def = r#"{\"QueryLanguage\":\"JSONata\",\"StartAt\":\"P\",\"States\":{\"P\":{\"Type\":\"Pass\",\"Output\":\"{% $count([1..300000]) %}\",\"End\":true}}}"#;
    let (status, text) = call(
        &other,
        "CreateStateMachine",
        &format!(r#"{{"name":"busy","definition":"{def}","roleArn":"arn:aws:iam::000000000000:role/r"}}"#),
    );
    assert_eq!(status, 200, "{text}");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flood: Vec<_> = (0..96)
        .map(|_| {
            let (stop, url) = (stop.clone(), url.clone());
            std::thread::spawn(move || {
                let c = reqwest::blocking::Client::builder().timeout(Duration::from_secs(60)).build().expect("client");
                let (mut ok, mut throttled) = (0, 0);
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let r = c
                        .post(&url)
                        .header("X-Amz-Target", "AWSStepFunctions.StartExecution")
                        .header("Content-Type", "application/x-amz-json-1.0")
                        .body(r#"{"stateMachineArn":"arn:aws:states:us-east-1:000000000000:stateMachine:busy"}"#)
                        .send();
                    match r.map(|r| r.text().unwrap_or_default()) {
                        Ok(t) if t.contains("ThrottlingException") => throttled += 1,
                        Ok(_) => ok += 1,
                        Err(_) => {}
                    }
                }
                (ok, throttled)
            })
        })
        .collect();
    // While the flood runs, the other client's calls are answered, none throttled.
    // (Each call still waits its turn for the one engine, behind at most the flood's share of
    // calls: bounded, generously for a loaded 2-core machine running other tests beside.)
    for i in 0..10 {
        let started = Instant::now();
        let (status, text) = call(&other, "ListStateMachines", "{}");
        assert!(status == 200 && text.contains("busy"), "call {i} from the other client: {status} {text}");
        assert!(started.elapsed() < Duration::from_secs(30), "call {i} waited {:?}", started.elapsed());
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (ok, throttled) = flood.into_iter().map(|t| t.join().expect("flood")).fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
    assert!(throttled > 0, "the flood was never throttled (ok {ok}, throttled {throttled})");
    assert!(ok > 0, "the flooding client was served too, at its share");
}
