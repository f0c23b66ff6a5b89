//! A scripted stand-in for the Step Functions and CloudWatch Logs endpoints, on loopback:
//! `N` running executions of one machine, an empty execution log, and faults on demand
//! (throttling, expired credentials, dropped connections). For the AWS backend's tests and
//! `lightbox bench --aws-calls`; it is no emulator (use moto or `lightbox serve` for that).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

/// What every request gets while it is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fault {
    #[default]
    None,
    /// `ThrottlingException`, HTTP 400.
    Throttle,
    /// `ExpiredTokenException`, HTTP 400.
    Expired,
    /// `AccessDeniedException`, HTTP 400.
    Denied,
    /// The connection is closed without an answer.
    Drop,
}

pub const MACHINE: &str = "arn:aws:states:us-east-1:123456789012:stateMachine:stub-review";

#[derive(Default)]
struct State {
    fault: Fault,
    /// The next this many requests are throttled, whatever the fault.
    throttle_next: u64,
    calls: BTreeMap<String, u64>,
}

pub struct Stub {
    pub url: String,
    running: Arc<AtomicUsize>,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
}

impl Stub {
    /// Listen on 127.0.0.1 (a free port) with `running` executions.
    pub fn start(running: usize) -> std::io::Result<Stub> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let url = format!("http://{}", listener.local_addr()?);
        let running = Arc::new(AtomicUsize::new(running));
        let state = Arc::new(Mutex::new(State::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let live = Arc::new(AtomicUsize::new(0));
        let (r, s, st) = (running.clone(), state.clone(), stop.clone());
        std::thread::Builder::new().name("aws-stub".into()).spawn(move || {
            for conn in listener.incoming() {
                if st.load(Ordering::Relaxed) {
                    return;
                }
                let Ok(conn) = conn else { continue };
                // At most 32 connections at once; more are closed.
                if live.load(Ordering::Relaxed) >= 32 {
                    continue;
                }
                live.fetch_add(1, Ordering::Relaxed);
                let (r, s, l) = (r.clone(), s.clone(), live.clone());
                let spawned = std::thread::Builder::new().name("aws-stub-conn".into()).spawn(move || {
                    let _ = serve(conn, &r, &s);
                    l.fetch_sub(1, Ordering::Relaxed);
                });
                if spawned.is_err() {
                    live.fetch_sub(1, Ordering::Relaxed);
                }
            }
        })?;
        Ok(Stub { url, running, state, stop })
    }

    pub fn set_fault(&self, f: Fault) {
        if let Ok(mut s) = self.state.lock() {
            s.fault = f;
        }
    }

    /// Throttle the next `n` requests only (then answer as set).
    pub fn throttle_next(&self, n: u64) {
        if let Ok(mut s) = self.state.lock() {
            s.throttle_next = n;
        }
    }

    pub fn set_running(&self, n: usize) {
        self.running.store(n, Ordering::Relaxed);
    }

    /// Requests answered so far, by API name.
    pub fn calls(&self) -> BTreeMap<String, u64> {
        self.state.lock().map(|s| s.calls.clone()).unwrap_or_default()
    }
}

impl Drop for Stub {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the accept loop so it sees the flag.
        if let Some(addr) = self.url.strip_prefix("http://") {
            let _ = TcpStream::connect(addr);
        }
    }
}

fn serve(conn: TcpStream, running: &AtomicUsize, state: &Mutex<State>) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut out = conn;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let mut target = String::new();
        let mut len = 0usize;
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h)? == 0 {
                return Ok(());
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                match k.trim().to_ascii_lowercase().as_str() {
                    "x-amz-target" => target = v.trim().to_string(),
                    "content-length" => len = v.trim().parse().unwrap_or(0).min(1 << 20),
                    _ => {}
                }
            }
        }
        let mut body = vec![0; len];
        reader.read_exact(&mut body)?;
        let req: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let api = target.rsplit('.').next().unwrap_or_default().to_string();
        let fault = match state.lock() {
            Ok(mut s) => {
                *s.calls.entry(api.clone()).or_default() += 1;
                if s.throttle_next > 0 {
                    s.throttle_next -= 1;
                    Fault::Throttle
                } else {
                    s.fault
                }
            }
            Err(_) => Fault::None,
        };
        let (status, reply) = match fault {
            Fault::Drop => return Ok(()),
            Fault::Throttle => (400, json!({"__type": "ThrottlingException", "message": "Rate exceeded"})),
            Fault::Expired => {
                (400, json!({"__type": "ExpiredTokenException", "message": "The security token included in the request is expired"}))
            }
            Fault::Denied => (400, json!({"__type": "AccessDeniedException", "message": "User is not authorized to perform this action"})),
            Fault::None => answer(&api, &req, running.load(Ordering::Relaxed)),
        };
        let text = reply.to_string();
        let head = format!(
            "HTTP/1.1 {status} {}\r\nContent-Type: application/x-amz-json-1.0\r\nContent-Length: {}\r\nx-amzn-RequestId: stub\r\n\r\n",
            if status == 200 { "OK" } else { "Bad Request" },
            text.len()
        );
        out.write_all(head.as_bytes())?;
        out.write_all(text.as_bytes())?;
        out.flush()?;
    }
}

fn answer(api: &str, req: &Value, running: usize) -> (u16, Value) {
    let exec = |i: usize| format!("arn:aws:states:us-east-1:123456789012:execution:stub-review:run-{i:06}");
    match api {
        "ListStateMachines" => (
            200,
            json!({"stateMachines": [{"stateMachineArn": MACHINE, "name": "stub-review", "type": "STANDARD", "creationDate": 1.7e9}]}),
        ),
        "ListExecutions" => {
            if req.get("statusFilter").and_then(Value::as_str) != Some("RUNNING") {
                return (200, json!({"executions": []}));
            }
            let from: usize = req.get("nextToken").and_then(Value::as_str).and_then(|t| t.parse().ok()).unwrap_or(0);
            let max = req.get("maxResults").and_then(Value::as_u64).unwrap_or(100).clamp(1, 1000) as usize;
            let to = (from + max).min(running);
            let items: Vec<Value> = (from..to)
                .map(|i| {
                    json!({"executionArn": exec(i), "stateMachineArn": MACHINE, "name": format!("run-{i:06}"),
                                "status": "RUNNING", "startDate": 1.7e9 + i as f64})
                })
                .collect();
            let mut v = json!({"executions": items});
            if to < running {
                v["nextToken"] = json!(to.to_string());
            }
            (200, v)
        }
        "GetExecutionHistory" => (
            200,
            json!({"events": [{"timestamp": 1.7e9, "type": "ExecutionStarted", "id": 1, "previousEventId": 0,
                "executionStartedEventDetails": {"input": "{\"accession\":\"ACC-1\"}", "roleArn": "arn:aws:iam::123456789012:role/x"}}]}),
        ),
        "DescribeStateMachineForExecution" => (
            200,
            json!({"stateMachineArn": MACHINE, "name": "stub-review", "roleArn": "arn:aws:iam::123456789012:role/x", "updateDate": 1.7e9,
                   "definition": "{\"StartAt\":\"W\",\"States\":{\"W\":{\"Type\":\"Wait\",\"Seconds\":3600,\"End\":true}}}"}),
        ),
        "FilterLogEvents" => (200, json!({"events": [], "searchedLogStreams": []})),
        "DescribeExecution" => {
            let arn = req.get("executionArn").and_then(Value::as_str).unwrap_or_default();
            (200, json!({"executionArn": arn, "stateMachineArn": MACHINE, "status": "RUNNING", "startDate": 1.7e9, "input": "{}"}))
        }
        _ => (400, json!({"__type": "UnknownOperationException", "message": format!("the stub does not answer {api}")})),
    }
}
