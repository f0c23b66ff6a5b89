//! The outbox relay against real sinks on loopback: a webhook receiver that fails and recovers,
//! an NDJSON file, and `lightbox engine` killed with SIGKILL mid-relay.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::Lb;
use common::receiver::Receiver;
use serde_json::{Value, json};

/// Config with one sink (TOML lines after name/kind).
fn config(lb: &Lb, sink: &str) -> String {
    lb.file("config.toml", &format!("[[outbox.sinks]]\nname = \"hook\"\n{sink}\nbase_delay = \"10ms\"\nmax_delay = \"40ms\"\n"))
}

/// Write `n` events over `streams` streams straight into the store, as the engine writes them.
fn emit(lb: &Lb, n: usize, streams: usize, prefix: &str) -> Vec<String> {
    std::fs::create_dir_all(lb.data()).expect("dir");
    let store = lightbox::store::Store::open(&lb.db()).expect("store");
    let at = chrono::Utc::now();
    let mut ids = vec![];
    let tx = store.conn().unchecked_transaction().expect("tx");
    for i in 0..n {
        let stream = format!("arn:aws:states:us-east-1:000000000000:execution:m:{prefix}{}", i % streams);
        let id = format!("{prefix}-{i}");
        lightbox::store::emit_event_with(&tx, &stream, &id, "Test Event", at, std::slice::from_ref(&stream), json!({"n": i}))
            .expect("emit");
        ids.push(id);
    }
    tx.commit().expect("commit");
    ids
}

/// `lightbox engine`, killed (SIGKILL) when dropped, so a failing test leaves no process behind.
struct Engine(Option<Child>);

impl Drop for Engine {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn engine(lb: &Lb, cfg: &str) -> Engine {
    Engine(Some(lb.cmd().args(["--config", cfg, "engine"]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("engine")))
}

fn wait_until(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// SIGKILL.
fn stop(e: Engine) {
    drop(e);
}

fn sink_status(lb: &Lb, cfg: &str) -> Value {
    lb.json(&["--config", cfg, "outbox", "list"])
}

/// In each stream, the first delivery of each event comes in the order the events were written.
fn assert_in_order_per_stream(keys: &[String], streams: usize) {
    let mut firsts: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    let mut seen = BTreeSet::new();
    for k in keys {
        if !seen.insert(k.clone()) {
            continue;
        }
        let i: usize = k.rsplit('-').next().and_then(|n| n.parse().ok()).expect("number");
        firsts.entry(i % streams).or_default().push(i);
    }
    for (s, order) in firsts {
        let mut sorted = order.clone();
        sorted.sort_unstable();
        assert_eq!(order, sorted, "stream {s} out of order");
    }
}

#[test]
fn a_webhook_that_fails_then_recovers_gets_every_event_once_after_dedupe_in_order() {
    let lb = Lb::new();
    let rx = Receiver::start(Duration::ZERO);
    *rx.fail_first.lock().expect("lock") = 4;
    let cfg = config(&lb, &format!("kind = \"webhook\"\nurl = \"{}\"\nbreaker_failures = 100", rx.url));
    let ids = emit(&lb, 40, 4, "ev");
    let e = engine(&lb, &cfg);
    wait_until("every event delivered", 30, || rx.delivered_keys().iter().collect::<BTreeSet<_>>().len() == ids.len());
    stop(e);
    let keys = rx.delivered_keys();
    assert_eq!(keys.iter().cloned().collect::<BTreeSet<_>>(), ids.iter().cloned().collect::<BTreeSet<_>>());
    assert!(rx.requests() >= ids.len() + 4, "the four failures were retried");
    assert_in_order_per_stream(&keys, 4);
    // Each body is the event, under the id its Idempotency-Key names.
    for (k, body) in &rx.seen.lock().expect("lock").delivered {
        let v: Value = serde_json::from_str(body).expect("json body");
        assert_eq!(v["id"].as_str(), Some(k.as_str()));
        assert_eq!(v["detail-type"], "Test Event");
    }
    let st = sink_status(&lb, &cfg);
    assert_eq!(st["sinks"][0]["backlog"], 0, "{st}");
    assert_eq!(st["sinks"][0]["delivered"], 40, "{st}");
    assert_eq!(st["sinks"][0]["failures"], 4, "{st}");
    assert_eq!(st["sinks"][0]["breaker"], "CLOSED");
}

#[test]
fn the_breaker_opens_after_five_failures_and_the_status_says_so() {
    let lb = Lb::new();
    let rx = Receiver::start(Duration::ZERO);
    *rx.fail_first.lock().expect("lock") = usize::MAX;
    let cfg = config(&lb, &format!("kind = \"webhook\"\nurl = \"{}\"", rx.url));
    emit(&lb, 10, 10, "br");
    let e = engine(&lb, &cfg);
    wait_until("five failures", 20, || rx.requests() >= 5);
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(rx.requests(), 5, "an open breaker sends nothing");
    let st = sink_status(&lb, &cfg);
    let s = &st["sinks"][0];
    assert_eq!(s["breaker"], "OPEN", "{st}");
    assert!(s["breakerSecondsLeft"].as_i64().is_some_and(|n| n > 800 && n <= 900), "{st}");
    // The opening is a workflow event itself, queued behind the outage.
    assert_eq!(s["backlog"], 11, "{st}");
    let text = lb.ok(&["--config", &cfg, "outbox", "list"]);
    assert!(text.contains("OPEN"), "{text}");
    // Retry now: the breaker lets one trial row through; the receiver is back, so it closes.
    *rx.fail_first.lock().expect("lock") = 0;
    lb.ok(&["--config", &cfg, "outbox", "retry", "--sink", "hook"]);
    wait_until("the backlog delivered", 20, || rx.delivered_keys().len() >= 11);
    stop(e);
    assert_eq!(sink_status(&lb, &cfg)["sinks"][0]["breaker"], "CLOSED");
}

#[test]
fn a_poison_row_parks_after_max_attempts_and_requeue_delivers_it() {
    let lb = Lb::new();
    let rx = Receiver::start(Duration::ZERO);
    *rx.fail_key.lock().expect("lock") = Some("po-3".into());
    let cfg = config(&lb, &format!("kind = \"webhook\"\nurl = \"{}\"\nmax_attempts = 3\nbreaker_failures = 100", rx.url));
    let ids = emit(&lb, 8, 2, "po");
    let e = engine(&lb, &cfg);
    // po-3 is in stream 1 with po-5 and po-7: once it is parked they follow.
    wait_until("the other events", 20, || rx.delivered_keys().len() == 7);
    let st = sink_status(&lb, &cfg);
    assert_eq!(st["sinks"][0]["parked"], 1, "{st}");
    let parked = lb.json(&["--config", &cfg, "outbox", "list", "--parked"]);
    let rows = parked["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), 1, "{parked}");
    assert_eq!(rows[0]["id"], "po-3");
    assert_eq!(rows[0]["attempts"], 3);
    assert!(rows[0]["lastError"].as_str().is_some_and(|e| e.contains("500")), "{parked}");
    assert_eq!(rx.seen.lock().expect("lock").requests.iter().filter(|(k, _)| k == "po-3").count(), 3);
    *rx.fail_key.lock().expect("lock") = None;
    lb.ok(&["--config", &cfg, "outbox", "requeue", "--sink", "hook", "--parked"]);
    wait_until("the requeued row", 20, || rx.delivered_keys().iter().any(|k| k == "po-3"));
    stop(e);
    let got: BTreeSet<String> = rx.delivered_keys().into_iter().filter(|k| k.starts_with("po-")).collect();
    assert_eq!(got, ids.into_iter().collect::<BTreeSet<_>>());
    let audit = lb.json(&["audit", "list", "--action", "outbox-requeue"]);
    assert_eq!(audit["entries"].as_array().map(Vec::len), Some(1), "{audit}");
}

#[test]
fn a_paused_sink_gets_nothing_until_resumed_and_both_are_audited() {
    let lb = Lb::new();
    let rx = Receiver::start(Duration::ZERO);
    let cfg = config(&lb, &format!("kind = \"webhook\"\nurl = \"{}\"", rx.url));
    emit(&lb, 5, 1, "pa");
    lb.ok(&["--config", &cfg, "outbox", "pause", "hook", "--reason-code", "operations-incident", "--reason", "PACS maintenance window"]);
    let e = engine(&lb, &cfg);
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(rx.requests(), 0, "paused");
    let st = sink_status(&lb, &cfg);
    assert_eq!(st["sinks"][0]["paused"], true);
    assert_eq!(st["sinks"][0]["pausedReason"], "[operations-incident] PACS maintenance window", "the code travels with the note");
    lb.ok(&["--config", &cfg, "outbox", "resume", "hook"]);
    // The pause and resume are audited, and the audit head is published too: wait for ours.
    wait_until("delivery after resume", 20, || rx.delivered_keys().iter().filter(|k| k.starts_with("pa-")).count() == 5);
    stop(e);
    for action in ["outbox-pause", "outbox-resume"] {
        let a = lb.json(&["audit", "list", "--action", action]);
        let entries = a["entries"].as_array().expect("entries");
        assert_eq!(entries.len(), 1, "{action}: {a}");
    }
    // An unknown sink is refused, naming it.
    let err = lb.fails(&[
        "--config",
        &cfg,
        "outbox",
        "pause",
        "nope",
        "--reason-code",
        "operations-incident",
        "--reason",
        "PACS maintenance window",
    ]);
    assert!(err.contains("nope"), "{err}");
}

#[test]
fn a_sigkill_mid_relay_loses_no_webhook_event_and_keeps_the_ids() {
    let lb = Lb::new();
    let rx = Receiver::start(Duration::from_millis(3));
    let cfg = config(&lb, &format!("kind = \"webhook\"\nurl = \"{}\"", rx.url));
    let ids = emit(&lb, 300, 5, "kw");
    let e = engine(&lb, &cfg);
    wait_until("some deliveries", 30, || rx.delivered_keys().len() >= 60);
    stop(e); // SIGKILL
    let before = rx.delivered_keys().len();
    assert!(before < ids.len(), "killed mid-relay");
    let e = engine(&lb, &cfg);
    wait_until("every event", 60, || rx.delivered_keys().iter().collect::<BTreeSet<_>>().len() == ids.len());
    stop(e);
    let keys = rx.delivered_keys();
    assert_eq!(keys.iter().cloned().collect::<BTreeSet<_>>(), ids.iter().cloned().collect::<BTreeSet<_>>());
    for (k, body) in &rx.seen.lock().expect("lock").delivered {
        let v: Value = serde_json::from_str(body).expect("json");
        assert_eq!(v["id"].as_str(), Some(k.as_str()), "a redelivery keeps its id");
    }
    assert_in_order_per_stream(&keys, 5);
}

#[test]
fn the_ndjson_sink_after_a_sigkill_has_every_event() {
    let lb = Lb::new();
    let cfg = config(&lb, "kind = \"ndjson\"\npath = \"events.ndjson\"");
    let file = lb.data().join("events.ndjson");
    let ids = emit(&lb, 3000, 7, "nd");
    let lines = || std::fs::read_to_string(&file).map(|t| t.lines().count()).unwrap_or(0);
    let e = engine(&lb, &cfg);
    wait_until("some lines", 30, || lines() > 0);
    stop(e);
    // More events while it is down, then a restart.
    let more = emit(&lb, 100, 7, "nx");
    let e = engine(&lb, &cfg);
    wait_until("every event", 60, || {
        let t = std::fs::read_to_string(&file).unwrap_or_default();
        t.lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter_map(|v| v["id"].as_str().map(str::to_string))
            .collect::<BTreeSet<_>>()
            .len()
            == ids.len() + more.len()
    });
    stop(e);
    let text = std::fs::read_to_string(&file).expect("file");
    let mut got = BTreeMap::<String, Value>::new();
    for l in text.lines() {
        let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("not one event per line ({e}): {l}"));
        let id = v["id"].as_str().expect("id").to_string();
        if let Some(prev) = got.insert(id.clone(), v.clone()) {
            assert_eq!(prev, v, "a duplicate of {id} is the same event");
        }
    }
    let all: BTreeSet<String> = ids.into_iter().chain(more).collect();
    assert_eq!(got.keys().cloned().collect::<BTreeSet<_>>(), all);
    let st = sink_status(&lb, &cfg);
    assert_eq!(st["sinks"][0]["backlog"], 0, "{st}");
}

#[test]
fn execution_events_reach_the_sink_and_bad_sink_config_names_the_key() {
    let lb = Lb::new();
    let cfg = config(&lb, "kind = \"ndjson\"\npath = \"events.ndjson\"");
    let def = lb.file("m.json", &json!({"StartAt": "P", "States": {"P": {"Type": "Pass", "End": true}}}));
    lb.ok(&["state-machines", "create", "--name", "m", "--definition", &def]);
    let started = lb.json(&["executions", "start", "--state-machine", "m", "--name", "one", "--input-json", "{}"]);
    let arn = started["executionArn"].as_str().expect("arn").to_string();
    let file = lb.data().join("events.ndjson");
    let e = engine(&lb, &cfg);
    wait_until("the execution's events", 20, || std::fs::read_to_string(&file).map(|t| t.lines().count() >= 2).unwrap_or(false));
    stop(e);
    let text = std::fs::read_to_string(&file).expect("file");
    assert!(text.lines().all(|l| l.contains(&arn)), "{text}");
    let bad = lb.file("bad.toml", "[[outbox.sinks]]\nname = \"x\"\nkind = \"webhook\"\nurl = \"ftp://nowhere\"\n");
    let err = lb.fails(&["--config", &bad, "outbox", "list"]);
    assert!(err.contains("\"x\"") && err.contains("url"), "{err}");
}

#[test]
fn the_demo_archives_its_events_to_a_relayed_ndjson_sink_unless_the_config_names_sinks() {
    let lb = Lb::new();
    lb.json(&["demo", "--seconds", "3", "--speed", "120"]);
    let list = lb.json(&["outbox", "list"]);
    let sinks = list["sinks"].as_array().expect("sinks");
    let named: Vec<(&str, &str)> = sinks.iter().filter_map(|s| Some((s["name"].as_str()?, s["format"].as_str()?))).collect();
    assert_eq!(named, [("demo-archive", "eventbridge"), ("reading-room-pager", "pagerduty"), ("radiology-slack", "slack")], "{list}");
    assert!(sinks.iter().all(|s| s["kind"] == "ndjson"), "{list}");
    assert!(sinks[0]["delivered"].as_u64().unwrap_or(0) > 0, "the demo ran the relay: {list}");
    // Every line is one EventBridge event, ids unique.
    let text = std::fs::read_to_string(lb.data().join("demo-events.ndjson")).expect("archive");
    let ids: BTreeSet<String> = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("one JSON event per line")["id"].as_str().expect("id").to_string())
        .collect();
    assert_eq!(ids.len(), text.lines().count(), "no event twice");
    assert!(!ids.is_empty());
    // A config that names its own sinks replaces the demo's.
    let config = lb.file("config.toml", "[[outbox.sinks]]\nname = \"site-archive\"\nkind = \"ndjson\"\npath = \"site.ndjson\"\n");
    let list = lb.json(&["--config", &config, "outbox", "list"]);
    let names: Vec<&str> = list["sinks"].as_array().expect("sinks").iter().filter_map(|s| s["name"].as_str()).collect();
    assert_eq!(names, ["site-archive"]);
    // A data directory without the demo has none.
    let empty = Lb::new();
    let list = empty.json(&["outbox", "list"]);
    assert_eq!(list["sinks"].as_array().map(Vec::len), Some(0), "{list}");
}
