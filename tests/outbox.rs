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
    let cfg = config(&lb, &format!("kind = \"webhook\"\nurl = \"{}\"\nbreaker_open_for = \"15m\"", rx.url));
    emit(&lb, 10, 10, "br");
    let e = engine(&lb, &cfg);
    wait_until("five failures", 20, || rx.requests() >= 5);
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(rx.requests(), 5, "an open breaker sends nothing");
    let st = sink_status(&lb, &cfg);
    let s = &st["sinks"][0];
    assert_eq!(s["breaker"], "OPEN", "{st}");
    // 15 minutes, less up to a quarter (jitter).
    assert!(s["breakerSecondsLeft"].as_i64().is_some_and(|n| (670..=900).contains(&n)), "{st}");
    let trial = chrono::DateTime::parse_from_rfc3339(s["nextTrialAt"].as_str().expect("nextTrialAt")).expect("a time");
    assert!(trial > chrono::Utc::now() + chrono::Duration::minutes(10), "{st}");
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
    // At most 8 lines were written but not marked: only they can be written twice.
    let written = std::fs::read_to_string(&file).expect("file").lines().count();
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
    let twice = text.lines().count() - got.len();
    assert!(twice <= 8, "{twice} events written again after the kill ({written} lines before it)");
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

/// A 3xx is a failed delivery that names its `Location` (masked, like every URL): the relay
/// never follows it, so nothing reaches an address that is not in the configuration (a 302
/// was once marked delivered, a 307 re-posted events to another host). It is retried and
/// parked like any failure.
#[test]
fn a_redirect_is_a_failed_delivery_naming_its_location_and_is_never_followed() {
    for code in [302u16, 307, 308] {
        let lb = Lb::new();
        let elsewhere = Receiver::start(Duration::ZERO);
        let rx = Receiver::start(Duration::ZERO);
        let location = format!("{}/login?session=s3cr3t-token", elsewhere.url);
        *rx.redirect.lock().expect("lock") = Some((code, location));
        let cfg = config(&lb, &format!("kind = \"webhook\"\nurl = \"{}\"\nmax_attempts = 2\nbreaker_failures = 100", rx.url));
        let ids = emit(&lb, 2, 1, &format!("rd{code}"));
        let e = engine(&lb, &cfg);
        wait_until("both rows parked", 30, || sink_status(&lb, &cfg)["sinks"][0]["parked"] == 2);
        stop(e);
        assert_eq!(elsewhere.requests(), 0, "HTTP {code}: the redirect was followed");
        assert!(rx.delivered_keys().is_empty(), "HTTP {code}: nothing counts as delivered");
        let tried: Vec<String> = rx.seen.lock().expect("lock").requests.iter().map(|(k, _)| k.clone()).collect();
        assert_eq!(
            tried,
            [ids[0].clone(), ids[0].clone(), ids[1].clone(), ids[1].clone()],
            "HTTP {code}: retried like any failure, then parked"
        );
        let st = sink_status(&lb, &cfg);
        assert_eq!(st["sinks"][0]["delivered"], 0, "{st}");
        let parked = lb.json(&["--config", &cfg, "outbox", "list", "--parked"]);
        let rows = parked["rows"].as_array().expect("rows");
        assert_eq!(rows.len(), 2, "{parked}");
        let shown = format!("{}/login?***", elsewhere.url);
        for r in rows {
            let err = r["lastError"].as_str().unwrap_or_default();
            assert!(err.contains(&format!("HTTP {code}")) && err.contains(&format!("Location {shown}")), "{parked}");
            assert!(!err.contains("s3cr3t") && !err.contains('\n'), "{err}");
        }
    }
}

/// A proxy named by the environment is not a configured address: the webhook goes straight
/// to its URL, and the proxy sees nothing.
#[test]
fn a_proxy_named_by_the_environment_is_never_used() {
    let lb = Lb::new();
    let proxy = Receiver::start(Duration::ZERO);
    let rx = Receiver::start(Duration::ZERO);
    let cfg = config(&lb, &format!("kind = \"webhook\"\nurl = \"{}\"", rx.url));
    let ids = emit(&lb, 3, 1, "px");
    let e = Engine(Some(
        lb.cmd()
            .args(["--config", &cfg, "engine"])
            .env("HTTP_PROXY", &proxy.url)
            .env("http_proxy", &proxy.url)
            .env("ALL_PROXY", &proxy.url)
            .env_remove("NO_PROXY")
            .env_remove("no_proxy")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("engine"),
    ));
    wait_until("every event delivered", 30, || ids.iter().all(|i| rx.delivered_keys().contains(i)));
    stop(e);
    assert_eq!(proxy.requests(), 0, "an event went through the environment's proxy");
}

/// A relay killed (SIGKILL) again and again, each time mid-delivery, still gets every event
/// through, and each restart sends at most one event again (a webhook's deliveries are marked
/// one by one; the one in flight at the kill is sent again): marks were once committed per 256
/// rows, and one event was posted 201 times.
#[test]
fn a_relay_killed_again_and_again_makes_progress_and_resends_only_the_delivery_in_flight() {
    let lb = Lb::new();
    let rx = Receiver::start(Duration::from_millis(2));
    let cfg = config(&lb, &format!("kind = \"webhook\"\nurl = \"{}\"", rx.url));
    let ids = emit(&lb, 400, 4, "kl");
    let all: BTreeSet<String> = ids.iter().cloned().collect();
    let ours = || -> Vec<String> { rx.delivered_keys().into_iter().filter(|k| k.starts_with("kl-")).collect() };
    let bound = 1;
    let kills = 8;
    for run in 0..=kills {
        let before = ours();
        let seen: BTreeSet<String> = before.iter().cloned().collect();
        let e = engine(&lb, &cfg);
        if run < kills {
            // Kill mid-delivery: once this run has delivered 30 new events.
            let end = Instant::now() + Duration::from_secs(30);
            while ours().iter().collect::<BTreeSet<_>>().len() < seen.len() + 30 {
                assert!(Instant::now() < end, "run {run} made no progress");
                std::thread::sleep(Duration::from_millis(2));
            }
            stop(e);
            let now: BTreeSet<String> = ours().into_iter().collect();
            assert!(now.len() < all.len(), "run {run} was killed mid-delivery");
        } else {
            wait_until("every event", 60, || ours().into_iter().collect::<BTreeSet<_>>() == all);
            stop(e);
        }
        let again = ours()[before.len()..].iter().filter(|k| seen.contains(*k)).count();
        assert!(again <= bound, "run {run}, after a kill: {again} events sent again (at most {bound})");
    }
    let keys = ours();
    assert!(keys.len() <= all.len() + kills * bound, "{} deliveries of {} events", keys.len(), all.len());
    assert_in_order_per_stream(&keys, 4);
    let st = sink_status(&lb, &cfg);
    assert_eq!(st["sinks"][0]["backlog"], 0, "{st}");
}

/// `lightbox engine` whose files may grow to `bytes` at most (RLIMIT_FSIZE, SIGXFSZ ignored, so
/// a write past it fails with EFBIG part-way, as on a full disk); killed when dropped.
fn engine_with_file_limit(lb: &Lb, cfg: &str, bytes: u64) -> Engine {
    use std::os::unix::process::CommandExt as _;
    let mut cmd = lb.cmd();
    cmd.args(["--config", cfg, "engine"]).stdout(Stdio::null()).stderr(Stdio::null());
    // SAFETY: between fork and exec only async-signal-safe calls (signal, setrlimit) are made.
    unsafe {
        cmd.pre_exec(move || {
            if libc::signal(libc::SIGXFSZ, libc::SIG_IGN) == libc::SIG_ERR {
                return Err(std::io::Error::last_os_error());
            }
            let limit = libc::rlimit { rlim_cur: bytes as libc::rlim_t, rlim_max: bytes as libc::rlim_t };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Engine(Some(cmd.spawn().expect("engine")))
}

/// After a full disk the NDJSON sink once left a partial line and appended the retried event
/// to it. A write the file size limit cuts short leaves only whole lines in the file, and once
/// the limit is lifted every event is in it exactly once, every line one JSON event.
#[test]
fn a_write_cut_short_by_the_file_size_limit_leaves_only_whole_lines_and_every_event_once() {
    let lb = Lb::new();
    // A retry after the failure waits (up to an hour) until `outbox retry` makes it due.
    let cfg = lb.file(
        "config.toml",
        "[[outbox.sinks]]\nname = \"hook\"\nkind = \"ndjson\"\npath = \"events.ndjson\"\nbase_delay = \"1h\"\nmax_delay = \"1h\"\n",
    );
    let ids = emit(&lb, 30, 1, "fz");
    // The file is whole lines up to a few events below the limit.
    const LIMIT: u64 = 8 << 20;
    let pad = format!("{}\n", json!({"pad": "x".repeat(1000)}));
    let mut text = String::new();
    while (text.len() + pad.len()) as u64 <= LIMIT - 3000 {
        text.push_str(&pad);
    }
    let file = lb.data().join("events.ndjson");
    std::fs::write(&file, &text).expect("pad");
    let ours = || -> Vec<String> {
        let t = std::fs::read_to_string(&file).expect("file");
        t.lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter_map(|v| v["id"].as_str().filter(|i| i.starts_with("fz-")).map(str::to_string))
            .collect()
    };
    let every_line_one_event = || {
        let t = std::fs::read_to_string(&file).expect("file");
        assert!(t.ends_with('\n'), "a torn last line: …{}", &t[t.len().saturating_sub(80)..]);
        for l in t.lines() {
            assert!(serde_json::from_str::<Value>(l).is_ok(), "not one JSON event per line: {}…", &l[..l.len().min(120)]);
        }
    };
    let e = engine_with_file_limit(&lb, &cfg, LIMIT);
    wait_until("a write cut short", 30, || sink_status(&lb, &cfg)["sinks"][0]["failures"].as_i64() >= Some(1));
    let st = sink_status(&lb, &cfg);
    assert!(st["sinks"][0]["lastError"].as_str().is_some_and(|e| e.contains("too large")), "{st}");
    every_line_one_event();
    let fitted = ours().len();
    assert!(fitted > 0 && fitted < ids.len(), "{fitted} of {} events fitted", ids.len());
    stop(e);
    // The limit lifted, the relay restarted and the failed row due now: every event, once.
    let e = engine(&lb, &cfg);
    lb.ok(&["--config", &cfg, "outbox", "retry", "--sink", "hook"]);
    wait_until("every event", 30, || ours().len() >= ids.len());
    stop(e);
    every_line_one_event();
    assert_eq!(ours(), ids, "each event once, in order");
}

/// A receiver down for 6 s at start once stopped delivery for 15 minutes. With the default
/// breaker the first open period is 2 s and grows only while trials fail, so delivery resumes
/// seconds after the receiver is back, and `outbox list` says when the next trial is.
#[test]
fn a_receiver_down_at_start_gets_the_backlog_seconds_after_it_is_back() {
    let lb = Lb::new();
    let rx = Receiver::start(Duration::ZERO);
    *rx.fail_first.lock().expect("lock") = usize::MAX;
    let cfg = config(&lb, &format!("kind = \"webhook\"\nurl = \"{}\"", rx.url));
    let ids = emit(&lb, 20, 20, "dn");
    let e = engine(&lb, &cfg);
    wait_until("the breaker open", 30, || sink_status(&lb, &cfg)["sinks"][0]["breaker"] == "OPEN");
    let st = sink_status(&lb, &cfg);
    let left = st["sinks"][0]["breakerSecondsLeft"].as_i64().expect("seconds left");
    assert!(left <= 2, "the first open period is short: {st}");
    assert!(st["sinks"][0]["nextTrialAt"].is_string(), "{st}");
    let text = lb.ok(&["--config", &cfg, "outbox", "list"]);
    assert!(text.contains("next trial in"), "{text}");
    // A trial fails too: the breaker opens again, for longer.
    let tried = rx.requests();
    wait_until("a failed trial", 30, || rx.requests() > tried);
    *rx.fail_first.lock().expect("lock") = 0;
    let back = Instant::now();
    wait_until("the backlog", 30, || {
        rx.delivered_keys().iter().filter(|k| k.starts_with("dn-")).collect::<BTreeSet<_>>().len() == ids.len()
    });
    let took = back.elapsed();
    stop(e);
    assert!(took < Duration::from_secs(12), "delivery resumed {took:?} after the receiver was back");
    assert_eq!(sink_status(&lb, &cfg)["sinks"][0]["breaker"], "CLOSED");
}
