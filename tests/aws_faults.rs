//! The AWS backend against a scripted loopback endpoint (`backend::aws::stub`): throttling,
//! expired credentials, denied access and a lost network are reported as the condition the
//! console shows, and the backend keeps answering with what it last knew. And the calls per
//! minute in steady state do not grow with the number of running executions.

use std::time::{Duration, Instant};

use lightbox::backend::ControlPlane;
use lightbox::backend::aws::stub::{Fault, Stub};
use lightbox::backend::aws::{Aws, AwsContext};
use lightbox::model::ExecutionFilter;

fn connect(stub: &Stub, log_group: Option<&str>) -> Aws {
    let cfg = AwsContext {
        region: Some("us-east-1".into()),
        endpoint_url: Some(stub.url.clone()),
        log_group: log_group.map(str::to_string),
        ..Default::default()
    };
    // A context of its own per stub: the SDK's adaptive client-side rate is kept per context.
    Aws::connect_with(&format!("stub-{}", stub.url), &cfg, None, Some(("AKIDSTUB", "secret")))
        .expect("connect")
        .with_pacing(Duration::from_millis(200), Duration::from_millis(200))
}

/// The status of a backend with nothing wrong: the stub offers no live tail, so the log is
/// read by cursor and the status says so.
const CURSOR_NOTE: &str = "live tail unavailable: not offered by this endpoint — reading the log every 200 ms";

fn quiet(c: Option<&str>) -> bool {
    c.is_none_or(|c| c == CURSOR_NOTE)
}

fn all(cp: &mut Aws) -> usize {
    cp.executions(&ExecutionFilter { limit: 100_000, ..Default::default() }).expect("executions never fail from memory").len()
}

/// Tick until the condition satisfies `f` (at most 30 s); returns the condition.
fn until(cp: &mut Aws, what: &str, f: impl Fn(Option<&str>) -> bool) -> Option<String> {
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        std::thread::sleep(Duration::from_millis(250));
        cp.tick().expect("a tick never fails");
        let c = cp.pulse().expect("pulse").condition;
        if f(c.as_deref()) {
            return c;
        }
        assert!(Instant::now() < end, "no {what} condition within 30 s; last: {c:?}");
    }
}

#[test]
fn each_failure_is_named_in_the_status_and_the_last_known_data_stays() {
    let stub = Stub::start(3).expect("stub");
    let mut cp = connect(&stub, Some("/aws/vendedlogs/states/review"));
    cp.tick().expect("tick");
    assert_eq!(all(&mut cp), 3);
    assert_eq!(cp.pulse().expect("pulse").condition.as_deref(), Some(CURSOR_NOTE), "all is well, the log read by cursor");
    assert_eq!(cp.location(), format!("us-east-1 via {}", stub.url));

    for (fault, expect) in [
        (Fault::Throttle, "throttled, backing off"),
        (Fault::Expired, "credentials expired"),
        (Fault::Denied, "region us-east-1: access denied"),
        (Fault::Drop, "network lost — showing last known at "),
    ] {
        stub.set_fault(fault);
        let c = until(&mut cp, expect, |c| c.is_some_and(|c| c.starts_with(expect))).expect("a condition");
        if fault != Fault::Drop {
            assert!(c.contains("showing last known at "), "{c}");
        }
        assert_eq!(all(&mut cp), 3, "{fault:?}: the executions last known are still shown");
        assert!(
            cp.history("arn:aws:states:us-east-1:123456789012:execution:stub-review:run-000000", 0, 10).is_err() || fault == Fault::None
        );
        stub.set_fault(Fault::None);
        until(&mut cp, "cleared", quiet);
    }
}

fn calls_of(stub: &Stub, api: &str) -> u64 {
    stub.calls().get(api).copied().unwrap_or(0)
}

#[test]
fn throttling_is_retried_with_adaptive_backoff_and_reported_as_throttling_never_as_timed_out() {
    let stub = Stub::start(3).expect("stub");
    let mut cp = connect(&stub, Some("/aws/vendedlogs/states/review"));
    cp.tick().expect("tick");
    assert_eq!(all(&mut cp), 3);

    // A burst of throttling that the SDK's retries absorb: the refresh succeeds, nothing to say.
    std::thread::sleep(Duration::from_millis(300));
    let before = calls_of(&stub, "FilterLogEvents");
    stub.throttle_next(2);
    cp.tick().expect("tick");
    assert!(quiet(cp.pulse().expect("pulse").condition.as_deref()), "two throttled attempts, then an answer");
    assert_eq!(calls_of(&stub, "FilterLogEvents") - before, 3, "the log read was retried twice");

    // Throttling that outlasts the retries: each refresh ends soon (bounded backoff and
    // adaptive waits, within the operation timeout), says "throttled", and keeps the data.
    stub.set_fault(Fault::Throttle);
    for round in 0..3 {
        std::thread::sleep(Duration::from_millis(300));
        let before = calls_of(&stub, "FilterLogEvents");
        let t = Instant::now();
        cp.tick().expect("a tick never fails");
        let took = t.elapsed();
        assert!(took < Duration::from_secs(15), "round {round}: a throttled refresh took {took:?}");
        assert_eq!(
            calls_of(&stub, "FilterLogEvents") - before,
            u64::from(lightbox::backend::aws::RETRY_ATTEMPTS),
            "round {round}: every attempt was made"
        );
        let c = cp.pulse().expect("pulse").condition.expect("a condition");
        assert!(c.starts_with("throttled, backing off — showing last known at "), "round {round}: {c}");
        assert_eq!(all(&mut cp), 3, "the executions last known are still shown");
    }
    // An operator's action meanwhile is refused as throttled (AWS did not take it).
    let t = Instant::now();
    let e = cp.approve("a-token", "{}", &lightbox::backend::Acting::user("dr.lee")).expect_err("throttled").to_string();
    assert!(e.starts_with("throttled, backing off"), "{e}");
    assert!(t.elapsed() < Duration::from_secs(15), "the action's answer came in {:?}", t.elapsed());

    // Throttling ends: the client's rate climbs back, the condition clears, the data is fresh.
    stub.set_fault(Fault::None);
    until(&mut cp, "cleared", quiet);
    stub.set_running(5);
    let end = Instant::now() + Duration::from_secs(30);
    while all(&mut cp) != 5 {
        assert!(Instant::now() < end, "the list never refreshed after throttling ended");
        std::thread::sleep(Duration::from_millis(250));
        cp.tick().expect("tick");
    }
}

/// The status an audit record gets after an action, when it cannot be read afresh: the
/// last known one, saying so and why — never a cached status passed off as current.
#[test]
fn a_status_that_cannot_be_read_afresh_is_recorded_as_last_known() {
    let stub = Stub::start(2).expect("stub");
    let mut cp = connect(&stub, Some("/aws/vendedlogs/states/review"));
    cp.tick().expect("tick");
    let arn = "arn:aws:states:us-east-1:123456789012:execution:stub-review:run-000000";
    stub.set_fault(Fault::Denied);
    let now = cp.status_now(arn).expect("the last known status, not an error").expect("a known execution");
    assert_eq!(now.status, lightbox::history::ExecutionStatus::Running);
    assert_eq!(now.as_of, None, "not read from AWS just now: {now:?}");
    let why = now.last_known.clone().expect("why it is the last known");
    assert!(why.contains("access denied"), "{why}");
    let after = now.to_json();
    assert_eq!(after["status"], "RUNNING");
    assert!(after.get("asOf").is_none() && after["lastKnown"].as_str().is_some_and(|w| w.contains("access denied")), "{after}");
    // An execution never seen has no status at all.
    assert_eq!(cp.status_now("arn:aws:states:us-east-1:123456789012:execution:stub-review:unknown").expect("status"), None);
}

#[test]
fn a_backend_that_never_reached_aws_says_so_and_shows_nothing_rather_than_failing() {
    let stub = Stub::start(3).expect("stub");
    stub.set_fault(Fault::Drop);
    let mut cp = connect(&stub, Some("g"));
    let c = until(&mut cp, "network", |c| c.is_some_and(|c| c.starts_with("network lost")));
    assert_eq!(c.as_deref(), Some("network lost — nothing loaded yet"));
    assert_eq!(all(&mut cp), 0);
    assert!(cp.pending_tasks(10).expect("pending").is_empty());
    assert!(cp.events_after(None, 10).expect("events").is_empty());
}

#[test]
fn without_a_log_group_the_status_says_histories_are_polled() {
    let stub = Stub::start(2).expect("stub");
    let mut cp = connect(&stub, None);
    cp.tick().expect("tick");
    let c = cp.pulse().expect("pulse").condition.expect("a note");
    assert!(c.starts_with("no log group: polling histories"), "{c}");
    // The input of each execution comes from its history, read once.
    let end = Instant::now() + Duration::from_secs(20);
    while cp.executions(&ExecutionFilter { limit: 10, ..Default::default() }).expect("rows").iter().any(|r| r.input.is_empty()) {
        assert!(Instant::now() < end, "inputs never read");
        std::thread::sleep(Duration::from_millis(200));
        cp.tick().expect("tick");
    }
}

/// Calls per minute over `window` of steady state, with `n` running executions (the
/// measurement `lightbox bench --aws-calls` reports).
fn calls_per_minute(n: usize, window: Duration) -> f64 {
    let r = lightbox::backend::aws::budget::calls_per_minute(n, window).expect("measure");
    eprintln!("{n} running: first sweep {:?}, calls {:?}", r.first_sweep, r.calls);
    r.per_minute
}

#[test]
fn calls_per_minute_do_not_grow_with_running_executions() {
    let window = Duration::from_secs(std::env::var("LIGHTBOX_TEST_CALLS_WINDOW").ok().and_then(|s| s.parse().ok()).unwrap_or(30));
    let large = calls_per_minute(10_000, window);
    let small = calls_per_minute(10, window);
    eprintln!("calls per minute: 10 running → {small:.0}, 10,000 running → {large:.0}");
    assert!(small > 0.0);
    assert!(large <= small * 1.5 + 10.0, "10,000 running made {large:.0} calls/min against {small:.0} for 10");
    assert!(large <= 80.0, "steady state stays within the budget (log reads + paced list pages): {large:.0}");
}

/// A loopback CloudWatch Logs endpoint with live tail: `StartLiveTail` answers with an event
/// stream (framed as the service frames it) that carries what is ingested while the session is
/// open; `FilterLogEvents` answers everything ingested; `DescribeLogGroups` names each group's
/// ARN. Step Functions calls get empty or minimal answers. Sessions can be ended as the service
/// ends them after 3 hours (`SessionTimeoutException`) or broken off.
mod live_stub {
    use std::collections::{BTreeMap, VecDeque};
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::sync::{Arc, Mutex, MutexGuard};
    use std::time::{Duration, Instant};

    use aws_smithy_types::event_stream::{Header, HeaderValue, Message};
    use serde_json::{Value, json};

    pub fn arn(group: &str) -> String {
        format!("arn:aws:logs:us-east-1:123456789012:log-group:{group}")
    }

    #[derive(Clone, Copy, PartialEq, Eq)]
    enum Ending {
        Open,
        Timeout,
        Break,
    }

    struct State {
        /// (group, stream, timestamp, message): what FilterLogEvents finds.
        records: Vec<(String, String, i64, String)>,
        /// Records for the open session, not yet sent.
        queued: VecDeque<(String, String, i64, String)>,
        session_open: bool,
        sessions: u32,
        ending: Ending,
        /// The next update says the service sampled the records.
        sampled: bool,
        calls: BTreeMap<String, u64>,
    }

    pub struct LiveStub {
        pub url: String,
        state: Arc<Mutex<State>>,
    }

    fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
        m.lock().unwrap_or_else(|e| e.into_inner())
    }

    impl LiveStub {
        pub fn start() -> LiveStub {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
            let url = format!("http://{}", listener.local_addr().expect("addr"));
            let state = Arc::new(Mutex::new(State {
                records: vec![],
                queued: VecDeque::new(),
                session_open: false,
                sessions: 0,
                ending: Ending::Open,
                sampled: false,
                calls: BTreeMap::new(),
            }));
            let s = state.clone();
            std::thread::spawn(move || {
                for conn in listener.incoming().flatten() {
                    let s = s.clone();
                    std::thread::spawn(move || {
                        let _ = serve(conn, &s);
                    });
                }
            });
            LiveStub { url, state }
        }

        /// A record arrives in `group`: FilterLogEvents finds it, and, with `live`, the open
        /// session carries it (without: the session misses it, as one that is ending does).
        pub fn ingest(&self, group: &str, message: &str, live: bool) {
            let mut s = lock(&self.state);
            let ts = chrono::Utc::now().timestamp_millis() + s.records.len() as i64;
            let r = (group.to_string(), "stream-1".to_string(), ts, message.to_string());
            if live && s.session_open {
                s.queued.push_back(r.clone());
            }
            s.records.push(r);
        }

        pub fn end_session(&self, broken: bool) {
            lock(&self.state).ending = if broken { Ending::Break } else { Ending::Timeout };
        }

        /// The next update is a sample (over 500 records a second), as the service sends then.
        pub fn sample(&self) {
            lock(&self.state).sampled = true;
        }

        pub fn sessions(&self) -> u32 {
            lock(&self.state).sessions
        }

        pub fn session_open(&self) -> bool {
            lock(&self.state).session_open
        }

        pub fn calls(&self, api: &str) -> u64 {
            lock(&self.state).calls.get(api).copied().unwrap_or(0)
        }
    }

    fn frame(headers: &[(&'static str, &'static str)], payload: Value) -> Vec<u8> {
        let mut m = Message::new(payload.to_string().into_bytes());
        for (k, v) in headers {
            m = m.add_header(Header::new(*k, HeaderValue::String((*v).into())));
        }
        let mut out = Vec::new();
        aws_smithy_eventstream::frame::write_message_to(&m, &mut out).expect("frame");
        out
    }

    fn event(kind: &'static str, payload: Value) -> Vec<u8> {
        frame(&[(":message-type", "event"), (":event-type", kind), (":content-type", "application/json")], payload)
    }

    fn chunk(out: &mut TcpStream, bytes: &[u8]) -> std::io::Result<()> {
        out.write_all(format!("{:x}\r\n", bytes.len()).as_bytes())?;
        out.write_all(bytes)?;
        out.write_all(b"\r\n")?;
        out.flush()
    }

    fn live_tail(mut out: TcpStream, req: &Value, state: &Mutex<State>) -> std::io::Result<()> {
        let groups = req["logGroupIdentifiers"].clone();
        {
            let mut s = lock(state);
            s.session_open = true;
            s.sessions += 1;
            s.ending = Ending::Open;
            s.queued.clear();
        }
        out.write_all(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.amazon.eventstream\r\nTransfer-Encoding: chunked\r\nx-amzn-RequestId: live\r\n\r\n",
        )?;
        chunk(&mut out, &event("sessionStart", json!({"requestId": "r", "sessionId": "s", "logGroupIdentifiers": groups})))?;
        let mut beat = Instant::now();
        loop {
            std::thread::sleep(Duration::from_millis(50));
            let (records, ending, sampled) = {
                let mut s = lock(state);
                (s.queued.drain(..).collect::<Vec<_>>(), s.ending, std::mem::take(&mut s.sampled))
            };
            if ending != Ending::Open {
                lock(state).session_open = false;
                if ending == Ending::Timeout {
                    let e = frame(
                        &[
                            (":message-type", "exception"),
                            (":exception-type", "SessionTimeoutException"),
                            (":content-type", "application/json"),
                        ],
                        json!({"message": "the session has been open for 3 hours"}),
                    );
                    chunk(&mut out, &e)?;
                    out.write_all(b"0\r\n\r\n")?;
                }
                // Broken: the connection closes mid-stream.
                return Ok(());
            }
            if !records.is_empty() || sampled || beat.elapsed() > Duration::from_millis(400) {
                beat = Instant::now();
                let results: Vec<Value> = records
                    .iter()
                    .map(|(g, st, ts, m)| {
                        json!({"logGroupIdentifier": super::live_stub::arn(g), "logStreamName": st, "timestamp": ts,
                               "ingestionTime": ts, "message": m})
                    })
                    .collect();
                let update = event("sessionUpdate", json!({"sessionMetadata": {"sampled": sampled}, "sessionResults": results}));
                if chunk(&mut out, &update).is_err() {
                    lock(state).session_open = false;
                    return Ok(());
                }
            }
        }
    }

    fn serve(conn: TcpStream, state: &Mutex<State>) -> std::io::Result<()> {
        conn.set_read_timeout(Some(Duration::from_secs(30)))?;
        let mut reader = BufReader::new(conn.try_clone()?);
        let mut out = conn;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line)? == 0 {
                return Ok(());
            }
            let (mut target, mut len) = (String::new(), 0usize);
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
                        "content-length" => len = v.trim().parse().unwrap_or(0),
                        _ => {}
                    }
                }
            }
            let mut body = vec![0; len.min(1 << 20)];
            reader.read_exact(&mut body)?;
            let req: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let api = target.rsplit('.').next().unwrap_or_default().to_string();
            *lock(state).calls.entry(api.clone()).or_default() += 1;
            let reply = match api.as_str() {
                "StartLiveTail" => return live_tail(out, &req, state),
                "DescribeLogGroups" => {
                    let name = req["logGroupNamePrefix"].as_str().unwrap_or_default().to_string();
                    json!({"logGroups": [{"logGroupName": name, "arn": format!("{}:*", arn(&name)), "logGroupArn": arn(&name)}]})
                }
                "FilterLogEvents" => {
                    let group = req["logGroupName"].as_str().unwrap_or_default();
                    let from = req["startTime"].as_i64().unwrap_or(0);
                    let s = lock(state);
                    let events: Vec<Value> = s
                        .records
                        .iter()
                        .filter(|(g, _, ts, _)| g == group && *ts >= from)
                        .enumerate()
                        .map(|(i, (_, st, ts, m))| json!({"logStreamName": st, "timestamp": ts, "ingestionTime": ts, "message": m, "eventId": i.to_string()}))
                        .collect();
                    json!({"events": events, "searchedLogStreams": []})
                }
                "ListStateMachines" => json!({"stateMachines": []}),
                "DescribeStateMachineForExecution" => json!({
                    "stateMachineArn": "arn:aws:states:us-east-1:123456789012:stateMachine:live-review", "name": "live-review",
                    "roleArn": "arn:aws:iam::123456789012:role/x", "updateDate": 1.7e9,
                    "definition": json!({"StartAt": "Review", "States": {"Review": {"Type": "Task",
                        "Resource": "arn:aws:states:::sqs:sendMessage.waitForTaskToken",
                        "Parameters": {"QueueUrl": "q", "MessageBody": {"token.$": "$$.Task.Token"}}, "End": true}}}).to_string()}),
                _ => json!({}),
            };
            let text = reply.to_string();
            write!(out, "HTTP/1.1 200 OK\r\nContent-Type: application/x-amz-json-1.1\r\nContent-Length: {}\r\n\r\n{text}", text.len())?;
            out.flush()?;
        }
    }
}

/// An execution-log record (level ALL) of the live tail test's execution.
fn exec_record(id: i64, t: &str, details: serde_json::Value) -> String {
    serde_json::json!({"id": id.to_string(), "type": t, "details": details, "previous_event_id": (id - 1).to_string(),
        "event_timestamp": chrono::Utc::now().timestamp_millis().to_string(),
        "execution_arn": "arn:aws:states:us-east-1:123456789012:execution:live-review:run-1"})
    .to_string()
}

#[test]
fn live_tail_serves_the_logs_and_the_cursor_takes_over_when_a_session_ends_losing_and_doubling_nothing() {
    use live_stub::LiveStub;
    let stub = LiveStub::start();
    let (exec_group, event_group) = ("/aws/vendedlogs/states/live-review", "/aws/events/healthimaging");
    let arn = "arn:aws:states:us-east-1:123456789012:execution:live-review:run-1";
    stub.ingest(exec_group, &exec_record(1, "ExecutionStarted", serde_json::json!({"input": "{\"accession\":\"ACC-L1\"}"})), false);
    let cfg = AwsContext {
        region: Some("us-east-1".into()),
        endpoint_url: Some(stub.url.clone()),
        log_group: Some(exec_group.into()),
        event_log_groups: vec![event_group.into()],
        ..Default::default()
    };
    let mut cp = Aws::connect_with(&format!("live-{}", stub.url), &cfg, None, Some(("AKIDSTUB", "secret")))
        .expect("connect")
        .with_pacing(Duration::from_millis(200), Duration::from_millis(200));
    let types = |cp: &mut Aws| -> Vec<String> {
        cp.events_after(None, 1000).expect("events").iter().filter(|e| e.execution_arn == arn).map(|e| e.event.event_type.clone()).collect()
    };
    let tick_until = |cp: &mut Aws, what: &str, statuses: &mut Vec<Option<String>>, f: &dyn Fn(&mut Aws) -> bool| {
        let end = Instant::now() + Duration::from_secs(30);
        while !f(cp) {
            assert!(Instant::now() < end, "{what}: not within 30 s (status {:?})", cp.status());
            std::thread::sleep(Duration::from_millis(100));
            cp.tick().expect("a tick never fails");
            statuses.push(cp.status());
        }
    };
    let mut statuses = vec![];

    // The session starts (each group's ARN from DescribeLogGroups); the cursor catches up once
    // on what came before it; then live tail alone serves the logs, and the status is quiet.
    tick_until(&mut cp, "the live session", &mut statuses, &|cp| stub.session_open() && types(cp) == ["ExecutionStarted"]);
    assert_eq!((stub.sessions(), stub.calls("DescribeLogGroups"), stub.calls("StartLiveTail")), (1, 2, 1));
    assert_eq!(cp.status(), None, "live tail: nothing to say");
    let cursor_reads = stub.calls("FilterLogEvents");
    let params = serde_json::json!({"QueueUrl": "q", "MessageBody": {"token": "LIVE-TOKEN-1"}}).to_string();
    stub.ingest(exec_group, &exec_record(2, "TaskStateEntered", serde_json::json!({"name": "Review"})), true);
    stub.ingest(
        exec_group,
        &exec_record(
            3,
            "TaskScheduled",
            serde_json::json!({"resourceType": "sqs", "resource": "sendMessage.waitForTaskToken", "parameters": params}),
        ),
        true,
    );
    let bus = serde_json::json!({"version": "0", "id": "ev-live-1", "detail-type": "Image Set Created", "source": "aws.medical-imaging",
        "account": "123456789012", "time": "2026-12-06T10:00:00Z", "region": "us-east-1",
        "resources": ["arn:aws:medical-imaging:us-east-1:123456789012:datastore/ds1/imageset/is1"],
        "detail": {"imageSetId": "is1", "imageSetWorkflowStatus": "CREATED"}})
    .to_string();
    stub.ingest(event_group, &bus, true);
    let has_bus = |cp: &mut Aws| cp.events_after(None, 1000).expect("events").iter().any(|e| e.event.event_type == "Image Set Created");
    tick_until(&mut cp, "the live records", &mut statuses, &|cp| {
        cp.pending_tasks(10).expect("pending").iter().any(|t| t.token == "LIVE-TOKEN-1") && has_bus(cp)
    });
    assert_eq!(stub.calls("FilterLogEvents"), cursor_reads, "live tail delivered them: no cursor read");
    assert!(statuses.iter().all(Option::is_none), "quiet while live: {statuses:?}");

    // The service ends the session (3 h); a record arrives that the ending session misses. The
    // cursor takes over from the last timestamp seen, finds it, and a new session starts.
    stub.ingest(
        exec_group,
        &exec_record(4, "TaskStarted", serde_json::json!({"resourceType": "sqs", "resource": "sendMessage.waitForTaskToken"})),
        false,
    );
    stub.end_session(false);
    tick_until(&mut cp, "a new session", &mut statuses, &|_| stub.sessions() == 2 && stub.session_open());
    tick_until(&mut cp, "the missed record", &mut statuses, &|cp| types(cp).len() == 3);
    assert!(
        statuses.iter().any(|s| s.as_deref() == Some("live tail session ended after 3 h, restarting — reading the log every 200 ms")),
        "the status said the cursor read meanwhile: {statuses:?}"
    );
    assert_eq!(types(&mut cp), ["ExecutionStarted", "TaskScheduled", "TaskStarted"], "each once, across both switches");
    let buses = cp.events_after(None, 1000).expect("events").iter().filter(|e| e.event.event_type == "Image Set Created").count();
    assert_eq!(buses, 1);

    // A session that breaks off: the cursor serves (and says why) until live tail is tried again.
    stub.end_session(true);
    statuses.clear();
    tick_until(&mut cp, "the cursor after a broken session", &mut statuses, &|cp| {
        cp.status().is_some_and(|s| s.starts_with("live tail failed") || s.starts_with("live tail session closed"))
    });
    let s = cp.status().unwrap_or_default();
    assert!(s.ends_with("— reading the log every 200 ms"), "{s}");
    stub.ingest(exec_group, &exec_record(5, "TaskSucceeded", serde_json::json!({"output": "{}"})), true);
    tick_until(&mut cp, "a record by cursor", &mut statuses, &|cp| types(cp).len() == 4);
    assert_eq!(stub.sessions(), 2, "not retried at once after a failure");
    assert!(cp.pending_tasks(10).expect("pending").is_empty(), "the task closed");
}

#[test]
fn a_sampled_live_tail_session_gives_way_to_the_cursor_which_misses_nothing() {
    use live_stub::LiveStub;
    let stub = LiveStub::start();
    let group = "/aws/vendedlogs/states/live-review";
    let cfg = AwsContext {
        region: Some("us-east-1".into()),
        endpoint_url: Some(stub.url.clone()),
        log_group: Some(group.into()),
        ..Default::default()
    };
    let mut cp = Aws::connect_with(&format!("sampled-{}", stub.url), &cfg, None, Some(("AKIDSTUB", "secret")))
        .expect("connect")
        .with_pacing(Duration::from_millis(200), Duration::from_millis(200));
    let end = Instant::now() + Duration::from_secs(30);
    let tick = |cp: &mut Aws| {
        assert!(Instant::now() < end, "not within 30 s (status {:?})", cp.status());
        std::thread::sleep(Duration::from_millis(100));
        cp.tick().expect("a tick never fails");
    };
    while !(stub.session_open() && cp.status().is_none()) {
        tick(&mut cp);
    }
    // Over 500 records a second: the session carries a sample only, so it is left for the cursor.
    stub.ingest(group, &exec_record(1, "ExecutionStarted", serde_json::json!({"input": "{}"})), false);
    stub.sample();
    while cp.status().as_deref() != Some("live tail sampled the records (over 500/s) — reading the log every 200 ms") {
        tick(&mut cp);
    }
    let arn = "arn:aws:states:us-east-1:123456789012:execution:live-review:run-1";
    while !cp.events_after(None, 100).expect("events").iter().any(|e| e.execution_arn == arn) {
        tick(&mut cp);
    }
    for _ in 0..3 {
        tick(&mut cp);
    }
    assert_eq!(stub.sessions(), 1, "no new session soon after sampling");
    assert!(cp.status().is_some_and(|s| s.starts_with("live tail sampled")));
}
