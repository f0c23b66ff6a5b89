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
    assert_eq!(cp.pulse().expect("pulse").condition, None, "all is well");
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
        until(&mut cp, "cleared", |c| c.is_none());
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
    assert_eq!(cp.pulse().expect("pulse").condition, None, "two throttled attempts, then an answer");
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
    until(&mut cp, "cleared", |c| c.is_none());
    stub.set_running(5);
    let end = Instant::now() + Duration::from_secs(30);
    while all(&mut cp) != 5 {
        assert!(Instant::now() < end, "the list never refreshed after throttling ended");
        std::thread::sleep(Duration::from_millis(250));
        cp.tick().expect("tick");
    }
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
