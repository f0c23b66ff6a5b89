use super::*;
use crate::store::Store;

fn cfg(toml_text: &str) -> OutboxConfig {
    toml::from_str(toml_text).expect("toml")
}

fn sink(extra: &str) -> Sink {
    let delays = if extra.contains("base_delay") { "" } else { "base_delay = \"10ms\"\nmax_delay = \"20ms\"\n" };
    let c = cfg(&format!("[[sinks]]\nname = \"s\"\nkind = \"ndjson\"\npath = \"e.ndjson\"\n{delays}{extra}"));
    c.sinks(Path::new("/data")).expect("valid").remove(0)
}

#[test]
fn config_defaults_and_relative_paths() {
    let s = sink("");
    assert_eq!(s.kind, SinkKind::Ndjson { path: PathBuf::from("/data/e.ndjson") });
    assert_eq!((s.max_attempts, s.breaker_failures), (10, 5));
    assert_eq!(s.breaker_window, Duration::from_secs(60));
    assert_eq!(s.breaker_open_for, Duration::from_secs(2));
    assert_eq!(s.breaker_max_open_for, Duration::from_secs(300));
    assert_eq!(s.timeout, Duration::from_secs(10));
}

#[test]
fn config_errors_name_the_sink_and_key() {
    let bad = [
        ("[[sinks]]\nname = \"a\"\nkind = \"kafka\"", "kind"),
        ("[[sinks]]\nname = \"a\"\nkind = \"webhook\"", "url"),
        ("[[sinks]]\nname = \"a\"\nkind = \"webhook\"\nurl = \"ftp://x\"", "url"),
        ("[[sinks]]\nname = \"a\"\nkind = \"ndjson\"", "path"),
        ("[[sinks]]\nname = \"a\"\nkind = \"ndjson\"\npath = \"p\"\nbreaker_window = \"soon\"", "breaker_window"),
        ("[[sinks]]\nname = \"a\"\nkind = \"ndjson\"\npath = \"p\"\nmax_attempts = 0", "max_attempts"),
        (
            "[[sinks]]\nname = \"a\"\nkind = \"ndjson\"\npath = \"p\"\nbreaker_open_for = \"1m\"\nbreaker_max_open_for = \"10s\"",
            "breaker_max_open_for",
        ),
        ("[[sinks]]\nname = \"a\"\nkind = \"ndjson\"\npath = \"p\"\n[[sinks]]\nname = \"a\"\nkind = \"ndjson\"\npath = \"q\"", "name"),
    ];
    for (text, key) in bad {
        let e = cfg(text).sinks(Path::new("/d")).expect_err(text).to_string();
        assert!(e.contains("\"a\"") && e.contains(&format!(": {key}:")), "{text} → {e}");
    }
}

#[test]
fn breaker_opens_after_failures_in_the_window_and_half_opens_later() {
    let s = sink("breaker_failures = 3\nbreaker_window = \"1m\"\nbreaker_open_for = \"15m\"");
    assert_eq!(s.breaker_max_open_for, Duration::from_secs(900), "a longer first period is its own cap");
    let mut b = BreakerState::closed();
    assert!(!b.on_failure(&s, 0, 0.0));
    assert!(!b.on_failure(&s, 30_000, 0.0));
    // The first failure has left the window: still two.
    assert!(!b.on_failure(&s, 61_000, 0.0));
    assert_eq!(b.effective(&s, 61_000), Breaker::Closed);
    assert!(b.on_failure(&s, 62_000, 0.0), "three failures within a minute open it");
    assert_eq!(b.effective(&s, 62_000), Breaker::Open);
    assert_eq!(b.open_left_ms(&s, 62_000 + 60_000), Some(14 * 60_000));
    assert_eq!(b.effective(&s, 62_000 + 900_000), Breaker::HalfOpen);
    // The trial fails: open again, for no longer than the cap.
    assert!(b.on_failure(&s, 62_000 + 900_000, 0.0));
    assert_eq!(b.effective(&s, 62_000 + 900_001), Breaker::Open);
    assert_eq!(b.trial_at(&s), Some(62_000 + 1_800_000));
    b.on_success();
    assert_eq!(b.effective(&s, 0), Breaker::Closed);
}

/// A receiver down for 6 s at start once stopped delivery for 15 minutes. By default the open
/// period starts at 2 s and doubles (less up to a quarter, jitter) while trials keep failing,
/// up to 5 minutes; a delivery starts the schedule again.
#[test]
fn the_open_period_starts_short_grows_while_trials_fail_and_resets_after_a_delivery() {
    let s = sink("");
    assert_eq!((s.breaker_failures, s.breaker_open_for, s.breaker_max_open_for), (5, Duration::from_secs(2), Duration::from_secs(300)));
    let mut b = BreakerState::closed();
    let mut now = 0;
    for _ in 0..4 {
        assert!(!b.on_failure(&s, now, 0.0));
        now += 100;
    }
    assert!(b.on_failure(&s, now, 0.0), "the fifth failure opens it");
    // Each failed trial opens it for twice as long: 2 s, 4 s, 8 s, … 256 s, then 5 min.
    let mut periods = vec![];
    for _ in 0..10 {
        let at = b.trial_at(&s).expect("open");
        periods.push(at - now);
        assert_eq!(b.effective(&s, at - 1), Breaker::Open);
        assert_eq!(b.effective(&s, at), Breaker::HalfOpen, "the trial is due");
        now = at;
        assert!(b.on_failure(&s, now, 0.0), "a failed trial opens it again");
    }
    let secs: Vec<i64> = periods.iter().map(|p| p / 1000).collect();
    assert_eq!(secs, [2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
    // Jitter takes up to a quarter off, never adds.
    assert_eq!(open_period_ms(&s, 1, 0.999_999), 1_500);
    assert_eq!(open_period_ms(&s, 3, 0.5), 7_000);
    assert_eq!(open_period_ms(&s, 40, 0.0), 300_000);
    // A delivery closes it; the next opening is 2 s again.
    b.on_success();
    for i in 0..5 {
        b.on_failure(&s, now + i, 0.0);
    }
    assert_eq!(b.open_left_ms(&s, now + 4), Some(2_000));
    // Its status says when the next trial is.
    let store = Store::in_memory().expect("store");
    ensure(store.conn(), std::slice::from_ref(&s)).expect("ensure");
    save_breaker(store.conn(), &s.name, &b).expect("save");
    let st = status(store.conn(), std::slice::from_ref(&s), now + 1_004).expect("status");
    assert_eq!((st[0].breaker, st[0].breaker_left_ms, st[0].next_trial_ms), (Breaker::Open, Some(1_000), Some(now + 2_004)));
    let v = st[0].to_json();
    assert_eq!(v["nextTrialAt"], crate::events::time(crate::store::from_ms(now + 2_004)), "{v}");
    // (to the second, as every time in the JSON)
    assert_eq!(SinkStatus::from_json(&v).expect("read back").next_trial_ms.map(|t| t / 1000), Some((now + 2_004) / 1000));
}

#[test]
fn backoff_is_full_jitter_under_an_exponential_cap() {
    let s = sink("base_delay = \"1s\"\nmax_delay = \"30s\"");
    assert_eq!(backoff_ms(&s, 1, 1.0), 1000);
    assert_eq!(backoff_ms(&s, 3, 1.0), 4000);
    assert_eq!(backoff_ms(&s, 20, 1.0), 30_000);
    assert_eq!(backoff_ms(&s, 3, 0.0), 0);
    assert_eq!(backoff_ms(&s, 3, 0.5), 2000);
    for _ in 0..100 {
        let u = random_unit();
        assert!((0.0..1.0).contains(&u));
    }
}

/// Fails the events whose id is in `fail`, records the rest.
struct Fake {
    got: Vec<String>,
    fail: std::collections::HashSet<String>,
}

impl Publisher for Fake {
    fn publish(&mut self, id: &str, _event: &str) -> std::result::Result<(), SinkError> {
        if self.fail.contains(id) {
            return Err(SinkError::Status(500));
        }
        self.got.push(id.to_string());
        Ok(())
    }
}

fn row(store: &Store, stream: &str, id: &str) {
    store.emit_event(stream, id, "Test", chrono::Utc::now(), &[], json!({})).expect("emit");
}

#[test]
fn a_failing_row_holds_back_its_stream_only_and_parks_after_max_attempts() {
    let store = Store::in_memory().expect("store");
    let s = sink("max_attempts = 2\nbreaker_failures = 100");
    ensure(store.conn(), std::slice::from_ref(&s)).expect("ensure");
    row(&store, "a", "a1");
    row(&store, "a", "a2");
    row(&store, "b", "b1");
    let mut p = Fake { got: vec![], fail: ["a1".to_string()].into() };
    let r = relay_pass(store.conn(), &s, &mut p, || 1_000).expect("pass");
    assert_eq!(p.got, vec!["b1"], "a2 waits behind a1");
    assert_eq!((r.delivered, r.failed, r.parked), (1, 1, 0));
    // Before the backoff is over nothing is tried.
    let r = relay_pass(store.conn(), &s, &mut p, || 1_000).expect("pass");
    assert_eq!((r.delivered, r.failed), (0, 0));
    let r = relay_pass(store.conn(), &s, &mut p, || 10_000).expect("pass");
    assert_eq!(r.parked, 1, "second failure parks it");
    // Parked, it no longer holds back a2.
    assert_eq!(p.got, vec!["b1", "a2"]);
    assert_eq!(r.delivered, 1);
    let st = status(store.conn(), std::slice::from_ref(&s), 10_000).expect("status");
    assert_eq!((st[0].backlog, st[0].parked, st[0].delivered), (0, 1, 2));
    let parked = rows(store.conn(), &s, true, 10).expect("rows");
    assert_eq!(parked.len(), 1);
    assert_eq!(parked[0].event_id, "a1");
    // Requeued, it is delivered once the sink takes it.
    p.fail.clear();
    assert_eq!(requeue(store.conn(), &s, None).expect("requeue"), 1);
    relay_pass(store.conn(), &s, &mut p, || 20_000).expect("pass");
    assert_eq!(p.got, vec!["b1", "a2", "a1"]);
    let st = status(store.conn(), std::slice::from_ref(&s), 20_000).expect("status");
    assert_eq!((st[0].backlog, st[0].parked, st[0].delivered), (0, 0, 3));
}

#[test]
fn the_breaker_stops_a_pass_and_a_paused_sink_gets_nothing() {
    let store = Store::in_memory().expect("store");
    let s = sink("breaker_failures = 2\nbreaker_open_for = \"1m\"");
    ensure(store.conn(), std::slice::from_ref(&s)).expect("ensure");
    for i in 0..5 {
        row(&store, &format!("x{i}"), &format!("e{i}"));
    }
    let mut p = Fake { got: vec![], fail: (0..5).map(|i| format!("e{i}")).collect() };
    let r = relay_pass(store.conn(), &s, &mut p, || 1_000).expect("pass");
    assert!(r.breaker_opened);
    assert_eq!(r.failed, 2, "the pass stops when the breaker opens");
    let st = status(store.conn(), std::slice::from_ref(&s), 1_000).expect("status");
    assert_eq!(st[0].breaker, Breaker::Open);
    // Open: nothing is tried until half-open; then one trial row decides.
    p.fail.clear();
    assert_eq!(relay_pass(store.conn(), &s, &mut p, || 30_000).expect("pass").delivered, 0);
    assert!(set_paused(store.conn(), &s, true, Some("maintenance")).expect("pause"));
    assert_eq!(relay_pass(store.conn(), &s, &mut p, || 120_000).expect("pass").delivered, 0);
    assert!(set_paused(store.conn(), &s, false, None).expect("resume"));
    let r = relay_pass(store.conn(), &s, &mut p, || 120_000).expect("pass");
    // The breaker event itself is a row too.
    assert_eq!(r.delivered, 6);
    assert_eq!(status(store.conn(), std::slice::from_ref(&s), 120_000).expect("status")[0].breaker, Breaker::Closed);
}

#[test]
fn event_ids_come_from_the_payload_or_the_row() {
    assert_eq!(event_id("arn:x", 7, r#"{"id":"abc"}"#), "abc");
    assert_eq!(event_id("arn:x", 7, r#"{"executionArn":"arn:x"}"#), "arn:x#7");
}

#[test]
fn marks_are_visible_to_another_connection_at_once() {
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("lightbox.db");
    let a = Store::open(&db).expect("a");
    let s = sink("");
    ensure(a.conn(), std::slice::from_ref(&s)).expect("ensure");
    let mut p = Fake { got: vec![], fail: Default::default() };
    relay_pass(a.conn(), &s, &mut p, || 1_000).expect("pass");
    let b = Store::open(&db).expect("b");
    set_paused(b.conn(), &s, true, Some("x")).expect("pause");
    relay_pass(a.conn(), &s, &mut p, || 1_000).expect("pass");
    set_paused(b.conn(), &s, false, None).expect("resume");
    row(&b, "a", "a1");
    relay_pass(a.conn(), &s, &mut p, || 1_000).expect("pass");
    assert_eq!(p.got, vec!["a1"]);
    let c = Store::open(&db).expect("c");
    assert_eq!(status(c.conn(), std::slice::from_ref(&s), 1_000).expect("status")[0].delivered, 1);
}

/// An escalation notice as the engine writes it: the body, and `lightbox` naming the sink.
fn notice(store: &Store, stream: &str, id: &str, sink: &str, format: &str) {
    let body = if format == "slack" {
        json!({"text": "Review at RadiologistReview unanswered", "blocks": []})
    } else {
        json!({"routing_key": sink, "event_action": "trigger", "dedup_key": "k", "payload": {"summary": "s", "source": "lightbox", "severity": "critical"}})
    };
    let mut body = body;
    body["lightbox"] = json!({"sink": sink, "format": format, "executionArn": stream});
    store.emit_event(stream, id, crate::engine::escalation::NOTICE_EVENT, chrono::Utc::now(), &[], body).expect("emit");
}

/// Keeps every body it is given.
struct Bodies(Vec<(String, Value)>);

impl Publisher for Bodies {
    fn publish(&mut self, id: &str, event: &str) -> std::result::Result<(), SinkError> {
        self.0.push((id.to_string(), serde_json::from_str(event).expect("json")));
        Ok(())
    }
}

#[test]
fn a_pagerduty_sink_gets_only_its_notices_as_bodies_and_an_eventbridge_sink_gets_every_envelope() {
    let store = Store::in_memory().expect("store");
    let pager = cfg(
        "[[sinks]]\nname = \"s\"\nkind = \"webhook\"\nurl = \"http://127.0.0.1:9/pd\"\nformat = \"pagerduty\"\nrouting_key = \"R0UT1NGKEY\"",
    )
    .sinks(Path::new("/data"))
    .expect("valid")
    .remove(0);
    // The key is a secret in the config as read, too.
    let read =
        cfg("[[sinks]]\nname = \"s\"\nkind = \"webhook\"\nurl = \"http://h/x\"\nformat = \"pagerduty\"\nrouting_key = \"R0UT1NGKEY\"");
    assert!(!format!("{read:?}").contains("R0UT1NGKEY"), "{read:?}");
    let mut slack = sink("format = \"slack\"");
    slack.name = "chat".into();
    let mut archive = sink("");
    archive.name = "archive".into();
    let all = [pager.clone(), slack.clone(), archive.clone()];
    ensure(store.conn(), &all).expect("ensure");
    row(&store, "a", "a1");
    notice(&store, "a", "n-pager", "s", "pagerduty");
    notice(&store, "b", "n-chat", "chat", "slack");
    notice(&store, "b", "n-elsewhere", "other", "pagerduty");
    row(&store, "a", "a2");

    let mut p = Bodies(vec![]);
    let r = relay_pass(store.conn(), &pager, &mut p, || 1_000).expect("pass");
    assert_eq!((r.delivered, r.skipped), (1, 4), "{:?}", p.0);
    let (id, body) = &p.0[0];
    assert_eq!(id, "n-pager", "the event id is the idempotency key");
    assert_eq!(body["event_action"], "trigger");
    assert_eq!(body["routing_key"], "R0UT1NGKEY", "the configured routing key is filled in");
    assert!(body.get("lightbox").is_none() && body.get("detail-type").is_none(), "the bare body: {body}");

    let mut c = Bodies(vec![]);
    relay_pass(store.conn(), &slack, &mut c, || 1_000).expect("pass");
    assert_eq!(c.0.len(), 1);
    assert_eq!(c.0[0].1["text"], "Review at RadiologistReview unanswered");
    assert!(c.0[0].1.get("lightbox").is_none());

    let mut a = Bodies(vec![]);
    let r = relay_pass(store.conn(), &archive, &mut a, || 1_000).expect("pass");
    assert_eq!((r.delivered, r.skipped), (5, 0));
    assert!(a.0.iter().all(|(_, e)| e.get("detail-type").is_some() && e.get("detail").is_some()), "envelopes");
    // Nothing is owed anywhere, and skipped rows are not counted as delivered or as the rate.
    let st = status(store.conn(), &all, 1_000).expect("status");
    for s in &st {
        assert_eq!(s.backlog, 0, "{s:?}");
    }
    assert_eq!((st[0].delivered, st[0].rate_per_min, st[0].format.as_str()), (1, 1, "pagerduty"));
    assert_eq!((st[2].delivered, st[2].rate_per_min), (5, 5));
    // Passes after that publish nothing again.
    relay_pass(store.conn(), &pager, &mut p, || 2_000).expect("pass");
    assert_eq!(p.0.len(), 1);
    // The routing key is a secret: not in the sink's debug form or its status.
    assert!(!format!("{pager:?}").contains("R0UT1NGKEY"));
    assert!(!st[0].to_json().to_string().contains("R0UT1NGKEY"));
    let stored: Vec<String> = store.outbox(false, 100).expect("rows").into_iter().map(|r| r.payload).collect();
    assert!(stored.iter().all(|p| !p.contains("R0UT1NGKEY")), "never stored with the event");
}

#[test]
fn a_pattern_sends_a_sink_only_matching_events_and_never_holds_its_stream_back() {
    let store = Store::in_memory().expect("store");
    let s = sink(r#"pattern = '{"detail-type": ["Wanted"]}'"#);
    ensure(store.conn(), std::slice::from_ref(&s)).expect("ensure");
    for (i, t) in ["Other", "Wanted", "Other", "Wanted"].iter().enumerate() {
        store.emit_event("a", &format!("e{i}"), t, chrono::Utc::now(), &[], json!({})).expect("emit");
    }
    let mut p = Fake { got: vec![], fail: ["e1".to_string()].into() };
    let r = relay_pass(store.conn(), &s, &mut p, || 1_000).expect("pass");
    assert_eq!((r.delivered, r.failed, r.skipped), (0, 1, 2), "e1 fails, e3 waits behind it, e0 and e2 are not for this sink");
    p.fail.clear();
    relay_pass(store.conn(), &s, &mut p, || 100_000).expect("pass");
    assert_eq!(p.got, vec!["e1", "e3"]);
    let st = status(store.conn(), std::slice::from_ref(&s), 100_000).expect("status");
    assert_eq!((st[0].backlog, st[0].delivered), (0, 2));
}

#[test]
fn sink_format_pattern_and_routing_key_errors_name_the_key() {
    let bad = [
        ("format = \"teams\"", "format"),
        ("pattern = '{\"source\": \"x\"}'", "pattern"),
        ("pattern = 'not json'", "pattern"),
        ("routing_key = \"abc\"", "routing_key"),
        ("format = \"pagerduty\"\nrouting_key = \"a b\"", "routing_key"),
        // An ndjson file would keep the key beside every notice.
        ("format = \"pagerduty\"\nrouting_key = \"R0UT1NGKEY\"", "routing_key"),
    ];
    for (extra, key) in bad {
        let text = format!("[[sinks]]\nname = \"a\"\nkind = \"ndjson\"\npath = \"p\"\n{extra}");
        let e = cfg(&text).sinks(Path::new("/d")).expect_err(&text).to_string();
        assert!(e.contains("\"a\"") && e.contains(&format!(": {key}:")), "{text} → {e}");
    }
}

#[test]
fn a_store_from_before_skipped_rows_gets_the_column() {
    let store = Store::in_memory().expect("store");
    store
        .conn()
        .execute_batch(
            "CREATE TABLE outbox_delivery (sink TEXT NOT NULL, row_id INTEGER NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
             next_ms INTEGER NOT NULL DEFAULT 0, parked INTEGER NOT NULL DEFAULT 0, park_reason TEXT, delivered_ms INTEGER,
             last_error TEXT, PRIMARY KEY (sink, row_id)) WITHOUT ROWID;",
        )
        .expect("old table");
    let s = sink("pattern = '{\"detail-type\": [\"Wanted\"]}'");
    ensure(store.conn(), std::slice::from_ref(&s)).expect("ensure");
    ensure(store.conn(), std::slice::from_ref(&s)).expect("twice");
    row(&store, "a", "a1");
    let r = relay_pass(store.conn(), &s, &mut Fake { got: vec![], fail: Default::default() }, || 1_000).expect("pass");
    assert_eq!(r.skipped, 1);
}

#[test]
fn shown_urls_hide_credentials_queries_and_long_path_segments() {
    for (url, shown) in [
        ("http://127.0.0.1:9000/events", "http://127.0.0.1:9000/events"),
        ("https://u:p@h/x?token=abc#f", "https://***@h/x?***#f"),
        ("https://hooks.slack.com/services/T0001/B0001/XXXXXXXXXXXXXXXXXXXXXXXX", "https://hooks.slack.com/services/T0001/B0001/***"),
        ("https://events.pagerduty.com/v2/enqueue", "https://events.pagerduty.com/v2/enqueue"),
        ("https://h/a#frag", "https://h/a#frag"),
        ("not a url/abcdefghijklmnopqrstuvwxyz", "not a url/***"),
        // Odd URLs: IPv6, a user without password, percent-encoding, long fragments.
        ("http://[::1]:8083/events", "http://[::1]:8083/events"),
        ("https://tok3n-only@h/x", "https://***@h/x"),
        ("https://h/hooks/%41%42%43%44%45%46%47%48", "https://h/hooks/***"),
        ("https://h/a#access_token=abcdefghijkl", "https://h/a#***"),
        ("https://h/a?x=1#access_token=abcdefghijkl", "https://h/a?***#***"),
        // A backslash is a path separator to URL parsing (this one is a valid URL).
        (
            "https://hooks.slack.com\\services\\T0001\\B0001\\XXXXXXXXXXXXXXXXXXXXXXXX",
            "https://hooks.slack.com\\services\\T0001\\B0001\\***",
        ),
        // A password holding '/', '?' or '#' makes the text no URL: its error shows no part of it.
        ("https://user:pa/ss@h/x", "https://***@h/x"),
        ("https://user:p?ss@h/x", "https://***@h/x"),
        ("https://user:p#ss@h", "https://***@h"),
    ] {
        assert_eq!(shown_url(url), shown, "{url}");
    }
    assert!(reqwest::Url::parse("https://hooks.slack.com\\services\\T0001\\B0001\\XXXXXXXXXXXXXXXXXXXXXXXX").is_ok());
    // Config errors about such URLs name the key, never the secret.
    for url in ["https://user:pa/ss@h/x", "https://user:s3cr#t@h/x", "https://user:s3cr?t@h"] {
        let toml = format!("name = \"w\"\nkind = \"webhook\"\nurl = {url:?}");
        let cfg: SinkConfig = toml::from_str(&toml).expect("toml");
        let e = OutboxConfig { sinks: vec![cfg] }.sinks(std::path::Path::new("")).expect_err("not a URL").to_string();
        for secret in ["pa/ss", "s3cr", "user"] {
            assert!(!e.contains(secret), "{url}: {e}");
        }
    }
}

#[test]
fn actions_round_trip_through_json_and_bad_bodies_say_what_is_wrong() {
    for a in [
        Action::Retry { sink: "s".into(), row: None },
        Action::Retry { sink: "s".into(), row: Some(4) },
        Action::Park { sink: "s".into(), row: 9, reason: "poison".into() },
        Action::Requeue { sink: "s".into(), row: None },
        Action::Pause { sink: "s".into(), reason: "maintenance".into() },
        Action::Resume { sink: "s".into() },
    ] {
        assert_eq!(Action::from_json(&a.to_json()), Ok(a.clone()));
    }
    for (bad, want) in [
        (json!({"action": "drop", "sink": "s"}), "action must be"),
        (json!({"action": "pause", "sink": "s"}), "reason is required"),
        (json!({"action": "park", "sink": "s", "reason": "r"}), "park needs row"),
        (json!({"action": "retry"}), "sink is required"),
        (json!({"action": "retry", "sink": "s", "row": -1}), "row must be"),
        (json!({"action": "pause", "sink": "s", "reason": "a\u{1b}[2J"}), "control characters"),
    ] {
        let e = Action::from_json(&bad).expect_err("bad");
        assert!(e.contains(want), "{bad} → {e}");
    }
}

/// Parked rows never fill a pass: with more parked rows than one pass looks at, the rows after
/// them are still delivered once the sink takes events again (they waited forever before).
#[test]
fn more_parked_rows_than_a_pass_reads_hold_back_nothing() {
    let store = Store::in_memory().expect("store");
    let s = sink("max_attempts = 1\nbreaker_failures = 100000");
    ensure(store.conn(), std::slice::from_ref(&s)).expect("ensure");
    let n = PASS_ROWS as usize + 100;
    for i in 0..n {
        row(&store, &format!("stream-{i}"), &format!("e{i}"));
    }
    // The sink is down: a pass parks every row it reads (one attempt each).
    let mut p = Fake { got: vec![], fail: (0..n).map(|i| format!("e{i}")).collect() };
    let r = relay_pass(store.conn(), &s, &mut p, || 1_000).expect("pass");
    assert_eq!(r.parked, PASS_ROWS as usize);
    // It is back: the rows the first pass did not reach are delivered, the parked ones kept.
    p.fail.clear();
    let r = relay_pass(store.conn(), &s, &mut p, || 2_000).expect("pass");
    assert_eq!(r.delivered, 100, "the rows after the parked ones");
    let st = status(store.conn(), std::slice::from_ref(&s), 2_000).expect("status");
    assert_eq!((st[0].backlog, st[0].parked), (0, PASS_ROWS));
    assert_eq!(requeue(store.conn(), &s, None).expect("requeue"), PASS_ROWS as usize);
    let mut delivered = 0;
    for t in 0..3 {
        delivered += relay_pass(store.conn(), &s, &mut p, || 3_000 + t).expect("pass").delivered;
    }
    assert_eq!(delivered, PASS_ROWS as usize, "requeued, they are delivered too");
}

/// A filtered sink that is paused, or whose breaker is open, still marks the rows that are not
/// for it: they are never its backlog (a paused PagerDuty sink showed every event as waiting).
#[test]
fn rows_not_for_a_paused_or_open_sink_are_no_backlog() {
    let store = Store::in_memory().expect("store");
    let pager = sink("format = \"pagerduty\"\nbreaker_failures = 1");
    ensure(store.conn(), std::slice::from_ref(&pager)).expect("ensure");
    let backlog = |now| status(store.conn(), std::slice::from_ref(&pager), now).expect("status")[0].backlog;
    assert!(set_paused(store.conn(), &pager, true, Some("maintenance")).expect("pause"));
    row(&store, "a", "a1");
    notice(&store, "a", "n1", "s", "pagerduty");
    row(&store, "a", "a2");
    row(&store, "b", "b1");
    let mut p = Bodies(vec![]);
    let r = relay_pass(store.conn(), &pager, &mut p, || 1_000).expect("pass");
    assert!(p.0.is_empty(), "paused: nothing is sent");
    assert_eq!((r.delivered, r.skipped), (0, 3));
    assert_eq!(backlog(1_000), 1, "only the notice waits");
    // Resumed, the notice goes; then the PagerDuty endpoint fails and the breaker opens.
    assert!(set_paused(store.conn(), &pager, false, None).expect("resume"));
    relay_pass(store.conn(), &pager, &mut p, || 2_000).expect("pass");
    assert_eq!(p.0.len(), 1);
    notice(&store, "c", "n2", "s", "pagerduty");
    let mut f = Fake { got: vec![], fail: ["n2".to_string()].into() };
    assert!(relay_pass(store.conn(), &pager, &mut f, || 3_000).expect("pass").breaker_opened);
    row(&store, "c", "c1");
    row(&store, "d", "d1");
    let r = relay_pass(store.conn(), &pager, &mut f, || 4_000).expect("pass");
    // (The third: the breaker's own "Outbox Sink Breaker Opened" event.)
    assert_eq!((r.failed, r.skipped), (0, 3), "open: nothing is tried, the other rows are marked");
    assert_eq!(backlog(4_000), 1, "only the failed notice waits");
    // An unfiltered sink that is paused reads nothing.
    let mut all = sink("");
    all.name = "all".into();
    ensure(store.conn(), std::slice::from_ref(&all)).expect("ensure");
    assert!(set_paused(store.conn(), &all, true, Some("x")).expect("pause"));
    assert_eq!(relay_pass(store.conn(), &all, &mut p, || 5_000).expect("pass"), PassReport::default());
}

/// Counts, at each publish, the rows sent before it that another connection does not yet see
/// marked: what a relay killed at that moment would send again.
struct Unmarked {
    conn: Connection,
    sink: String,
    sent: i64,
    pause: Duration,
    worst: i64,
}

impl Publisher for Unmarked {
    fn publish(&mut self, _id: &str, _event: &str) -> std::result::Result<(), SinkError> {
        let marked: i64 = self
            .conn
            .query_row("SELECT COUNT(*) FROM outbox_delivery WHERE sink = ?1 AND delivered_ms IS NOT NULL", [&self.sink], |r| r.get(0))
            .expect("count");
        // This one is in flight: it would be sent again too.
        self.worst = self.worst.max(self.sent - marked + 1);
        self.sent += 1;
        std::thread::sleep(self.pause);
        Ok(())
    }
}

/// Marks were committed per 256 rows, so a relay killed mid-pass sent up to 256 events again.
/// Now at most `MARK_EVERY` are ever sent but unmarked, and a slow sink's deliveries are marked
/// within `MARK_WITHIN` of being sent.
#[test]
fn at_most_a_handful_of_deliveries_are_ever_unmarked_and_marks_come_within_200ms() {
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("lightbox.db");
    let store = Store::open(&db).expect("store");
    let s = sink("");
    ensure(store.conn(), std::slice::from_ref(&s)).expect("ensure");
    for i in 0..300 {
        row(&store, &format!("x{}", i % 3), &format!("e{i}"));
    }
    let conn = || open_connection(&db).expect("second connection");
    let mut fast = Unmarked { conn: conn(), sink: s.name.clone(), sent: 0, pause: Duration::ZERO, worst: 0 };
    let r = relay_pass(store.conn(), &s, &mut fast, || 1_000).expect("pass");
    assert_eq!(r.delivered, 300);
    assert!(fast.worst <= 8, "{} sent but unmarked at once", fast.worst);
    // A slow sink (70 ms an event): marks every ~200 ms, long before eight are unmarked.
    for i in 0..12 {
        row(&store, "slow", &format!("s{i}"));
    }
    let mut slow = Unmarked { conn: conn(), sink: s.name.clone(), sent: 300, pause: Duration::from_millis(70), worst: 0 };
    assert_eq!(relay_pass(store.conn(), &s, &mut slow, || 2_000).expect("pass").delivered, 12);
    assert!(slow.worst <= 4, "{} sent but unmarked at once (200 ms is three 70 ms sends)", slow.worst);
}

/// A torn last line (a write cut short) is truncated back to the last whole line before the
/// NDJSON sink writes again; whole lines are kept as they are.
#[test]
fn the_ndjson_sink_cuts_a_torn_tail_before_it_writes_again() {
    let dir = tempfile::tempdir().expect("dir");
    let long = "y".repeat(200_000);
    for (before, kept) in [
        ("{\"a\":1}\n{\"b\":2}\n{\"c\":", "{\"a\":1}\n{\"b\":2}\n"),
        ("{\"a\":1}\n", "{\"a\":1}\n"),
        ("{\"torn", ""),
        ("", ""),
        // A torn line longer than one read back.
        (&format!("{{\"a\":1}}\n{{\"long\":\"{long}"), "{\"a\":1}\n"),
    ] {
        let path = dir.path().join("e.ndjson");
        std::fs::write(&path, before).expect("write");
        let mut p = sink::Ndjson::new(path.clone());
        p.publish("e1", "{\"id\":\"e1\"}").expect("publish");
        p.flush().expect("flush");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), format!("{kept}{{\"id\":\"e1\"}}\n"), "{:.40}", before);
    }
    // An event is one line, whatever whitespace its JSON holds.
    let path = dir.path().join("pretty.ndjson");
    let mut p = sink::Ndjson::new(path.clone());
    p.publish("e2", "{\n  \"id\": \"e2\",\r\n  \"text\": \"a\\nb\"\n}\n").expect("publish");
    let text = std::fs::read_to_string(&path).expect("read");
    assert_eq!(text.lines().count(), 1, "{text:?}");
    let v: Value = serde_json::from_str(text.trim_end()).expect("one JSON event");
    assert_eq!((v["id"].as_str(), v["text"].as_str()), (Some("e2"), Some("a\nb")));
}

/// Publishes into a buffer that `flush` makes durable, or loses when the flush fails.
struct FlushFails {
    pending: Vec<String>,
    got: Vec<String>,
    fail_flush: bool,
}

impl Publisher for FlushFails {
    fn publish(&mut self, id: &str, _event: &str) -> std::result::Result<(), SinkError> {
        self.pending.push(id.to_string());
        Ok(())
    }
    fn flush(&mut self) -> std::result::Result<(), SinkError> {
        let pending = std::mem::take(&mut self.pending);
        if self.fail_flush {
            return Err(SinkError::Io { path: "e.ndjson".into(), err: std::io::Error::other("no space left") });
        }
        self.got.extend(pending);
        Ok(())
    }
}

/// A flush that fails (a full disk at fsync) fails the rows it held and ends the pass: they are
/// still owed and go first, in order, once the sink takes events again (the pass used to go
/// on, and its floor passed over them: they were never sent again).
#[test]
fn rows_whose_flush_failed_are_owed_and_go_first_in_order() {
    let store = Store::in_memory().expect("store");
    let s = sink("breaker_failures = 100");
    ensure(store.conn(), std::slice::from_ref(&s)).expect("ensure");
    let ids: Vec<String> = (0..20).map(|i| format!("e{i:02}")).collect();
    for (i, id) in ids.iter().enumerate() {
        row(&store, if i % 2 == 0 { "a" } else { "b" }, id);
    }
    let mut p = FlushFails { pending: vec![], got: vec![], fail_flush: true };
    let r = relay_pass(store.conn(), &s, &mut p, || 1_000).expect("pass");
    assert_eq!((r.delivered, r.failed), (0, 8), "the pass stops at the failed flush");
    assert_eq!(status(store.conn(), std::slice::from_ref(&s), 1_000).expect("status")[0].backlog, 20);
    p.fail_flush = false;
    let r = relay_pass(store.conn(), &s, &mut p, || 100_000).expect("pass");
    assert_eq!(r.delivered, 20);
    assert_eq!(p.got, ids, "every row, in order");
    assert_eq!(status(store.conn(), std::slice::from_ref(&s), 100_000).expect("status")[0].backlog, 0);
}

/// A redirect's `Location` in an error is masked like every URL, one line, and bounded.
#[test]
fn a_redirects_location_is_shown_masked_on_one_line_and_bounded() {
    use sink::shown_location;
    assert_eq!(shown_location(Some("https://user:pw@idp.example.org/login?next=abc")), "https://***@idp.example.org/login?***");
    assert_eq!(shown_location(Some("/login")), "/login");
    assert_eq!(shown_location(None), "(none)");
    let odd = shown_location(Some("https://h/a\r\nX-Injected: 1"));
    assert!(!odd.chars().any(char::is_control), "{odd:?}");
    let long = shown_location(Some(&format!("https://h/{}", "ab/".repeat(200))));
    assert_eq!(long.chars().count(), 120, "{long}");
    assert!(long.ends_with('…'));
    let e = SinkError::Redirect { status: 302, location: shown_location(Some("https://h/login")) }.to_string();
    assert!(e.contains("HTTP 302") && e.contains("Location https://h/login") && e.contains("not followed"), "{e}");
}
