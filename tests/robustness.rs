//! One execution never stops the engine: bad durations, panics and unreadable state in one
//! execution fail that execution (or nothing at all) and every other one goes on; stopping
//! always works; definitions over Step Functions' limits are refused; task tokens are keyed.

use chrono::{DateTime, TimeZone, Utc};
use serde_json::{Value, json};

use lightbox::asl::model::Definition;
use lightbox::engine::core::{self, Env, ExecInfo, ExecState, Input, apply};
use lightbox::engine::ephemeral::{self, RunOptions};
use lightbox::engine::tasks::TaskRunner;
use lightbox::engine::{Clock, Engine, INTERNAL_ERROR};
use lightbox::history::ExecutionStatus;
use lightbox::store::Store;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 5, 9, 0, 0).single().expect("time")
}

fn engine_on(dir: &tempfile::TempDir, tasks: TaskRunner) -> Engine {
    let store = Store::open(&dir.path().join("lightbox.db")).expect("store");
    Engine::new(store, tasks, Clock::virtual_at(t0()))
}

/// Run the engine's background loop under virtual time until nothing is due or left.
fn settle(engine: &mut Engine) {
    for _ in 0..200 {
        let n = engine.run_due(64).expect("run_due keeps going");
        if n == 0 && !engine.advance_virtual_clock().expect("clock") {
            return;
        }
    }
}

fn status(engine: &Engine, arn: &str) -> (ExecutionStatus, Option<String>, Option<String>) {
    let r = engine.store.execution(arn).expect("read").expect("exists");
    (r.status, r.error, r.cause)
}

/// `n` unrelated executions of the "good" machine (a short Wait), started now.
fn start_goods(engine: &mut Engine, n: usize) -> Vec<String> {
    (0..n).map(|i| engine.start_execution("good", Some(&format!("g{i}")), "{}").expect("start good").arn).collect()
}

fn all_succeeded(engine: &Engine, arns: &[String]) {
    for a in arns {
        assert_eq!(status(engine, a).0, ExecutionStatus::Succeeded, "{a}");
    }
}

fn run(def: Value, input: Value) -> Value {
    ephemeral::run(&def.to_string(), &input.to_string(), RunOptions { start: t0(), ..Default::default() }).expect("run")
}

fn good_wait() -> String {
    json!({"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 10, "Next": "Done"}, "Done": {"Type": "Succeed"}}}).to_string()
}

/// The seen case: a JSONata Wait of 10^15 seconds in one execution, five unrelated executions
/// with due timers. The bad one fails as a runtime error; all five complete; nothing panics.
#[test]
fn a_wait_of_ten_to_the_fifteen_seconds_fails_only_its_execution() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut engine = engine_on(&dir, TaskRunner::new());
    let bad = json!({"QueryLanguage": "JSONata", "StartAt": "First", "States": {
        "First": {"Type": "Wait", "Seconds": 5, "Next": "Long"},
        "Long": {"Type": "Wait", "Seconds": "{% 1000000000000000 %}", "End": true}}});
    engine.create_state_machine("bad", &bad.to_string(), None).expect("bad machine is valid");
    engine.create_state_machine("good", &good_wait(), None).expect("good machine");
    let b = engine.start_execution("bad", Some("bad-1"), "{}").expect("start bad").arn;
    let goods = start_goods(&mut engine, 5);
    settle(&mut engine);
    all_succeeded(&engine, &goods);
    let (st, error, cause) = status(&engine, &b);
    assert_eq!(st, ExecutionStatus::Failed);
    assert_eq!(error.as_deref(), Some("States.Runtime"));
    assert_eq!(
        cause.as_deref(),
        Some("An error occurred while executing the state 'Long' (entered at the event id #4). Wait state delay is too long.")
    );

    // Stop on a second bad one while it still runs (in its first Wait) works too.
    let b2 = engine.start_execution("bad", Some("bad-2"), "{}").expect("start").arn;
    let row = engine.stop_execution(&b2, Some("Operator.Stop".into()), None).expect("stop works");
    assert_eq!(row.status, ExecutionStatus::Aborted);
}

/// A panic inside `apply` (here: a snapshot that breaks a core invariant, a Map with no
/// iteration scope) fails that execution with an internal error, committed durably, and
/// `run_due` goes on with every other execution.
#[test]
fn a_panic_while_applying_fails_only_that_execution() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut engine = engine_on(&dir, TaskRunner::new());
    let map = json!({"StartAt": "M", "States": {"M": {"Type": "Map", "MaxConcurrency": 1, "End": true,
        "ItemProcessor": {"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 10, "End": true}}}}}});
    engine.create_state_machine("map", &map.to_string(), None).expect("map");
    engine.create_state_machine("good", &good_wait(), None).expect("good");
    let victim = engine.start_execution("map", Some("victim"), "[1, 2]").expect("start").arn;
    let goods = start_goods(&mut engine, 5);
    // Break the invariant: the Map's iteration scope list is empty, so starting the second
    // iteration indexes out of bounds.
    let snap: String =
        engine.store.conn().query_row("SELECT snapshot FROM executions WHERE arn = ?1", [&victim], |r| r.get(0)).expect("snapshot");
    let mut snap: Value = serde_json::from_str(&snap).expect("json");
    let threads = snap["threads"].as_object_mut().expect("threads");
    let mut broke = false;
    for th in threads.values_mut() {
        if let Some(f) = th.pointer_mut("/phase/Children") {
            f["scopes"] = json!([]);
            broke = true;
        }
    }
    assert!(broke, "the Map thread is in its Children phase: {snap}");
    engine.store.conn().execute("UPDATE executions SET snapshot = ?2 WHERE arn = ?1", [&victim, &snap.to_string()]).expect("write");

    settle(&mut engine);
    all_succeeded(&engine, &goods);
    let (st, error, cause) = status(&engine, &victim);
    assert_eq!(st, ExecutionStatus::Failed);
    assert_eq!(error.as_deref(), Some(INTERNAL_ERROR));
    assert!(cause.is_some_and(|c| c.contains("internal error")));
    let history = engine.store.history(&victim, 0, 1000, false).expect("history");
    assert_eq!(history.last().map(|e| e.event_type.as_str()), Some("ExecutionFailed"));
    // Durable: a new engine on the same store sees the same.
    drop(engine);
    let engine = engine_on(&dir, TaskRunner::new());
    assert_eq!(status(&engine, &victim).0, ExecutionStatus::Failed);
}

/// A handler that panics (outside `apply`) fails its execution; the others complete.
#[test]
fn a_panicking_task_handler_fails_only_its_execution() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut tasks = TaskRunner::new();
    tasks.register("boom", |_| panic!("handler bug"));
    let mut engine = engine_on(&dir, tasks);
    let def = json!({"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 1, "Next": "T"},
        "T": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke", "Parameters": {"FunctionName": "boom"}, "End": true}}});
    engine.create_state_machine("boom", &def.to_string(), None).expect("boom");
    engine.create_state_machine("good", &good_wait(), None).expect("good");
    let victim = engine.start_execution("boom", Some("victim"), "{}").expect("start").arn;
    let goods = start_goods(&mut engine, 3);
    settle(&mut engine);
    all_succeeded(&engine, &goods);
    let (st, error, _) = status(&engine, &victim);
    assert_eq!((st, error.as_deref()), (ExecutionStatus::Failed, Some(INTERNAL_ERROR)));
}

/// An execution whose stored state cannot be read does not stop `run_due`, and stopping it works.
#[test]
fn an_unreadable_snapshot_stops_nothing_and_can_be_stopped() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut engine = engine_on(&dir, TaskRunner::new());
    engine.create_state_machine("good", &good_wait(), None).expect("good");
    let a = engine.start_execution("good", Some("a"), "{}").expect("a").arn;
    let b = engine.start_execution("good", Some("b"), "{}").expect("b").arn;
    let c = engine.start_execution("good", Some("c"), "{}").expect("c").arn;
    for arn in [&a, &b] {
        engine.store.conn().execute("UPDATE executions SET snapshot = '{\"garbage\": true' WHERE arn = ?1", [arn]).expect("corrupt");
    }
    // Stop on a damaged execution: aborted directly, with its history event.
    let row = engine.stop_execution(&a, Some("Ops.Stop".into()), Some("damaged".into())).expect("stop always works");
    assert_eq!(row.status, ExecutionStatus::Aborted);
    assert_eq!(row.error.as_deref(), Some("Ops.Stop"));
    let history = engine.store.history(&a, 0, 100, false).expect("history");
    let last = history.last().expect("events");
    assert_eq!(last.event_type, "ExecutionAborted");
    assert_eq!(last.id, history.len() as i64);
    // The other damaged one is failed by the background loop; the healthy one completes.
    settle(&mut engine);
    assert_eq!(status(&engine, &c).0, ExecutionStatus::Succeeded);
    let (st, error, _) = status(&engine, &b);
    assert_eq!((st, error.as_deref()), (ExecutionStatus::Failed, Some(INTERNAL_ERROR)));
}

#[test]
fn out_of_range_durations_at_run_time_fail_the_execution_as_aws_does() {
    // TimeoutSecondsPath / HeartbeatSecondsPath: States.Runtime naming the field and path, quoting the value.
    let task = |field: &str| {
        let mut s =
            json!({"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke", "Parameters": {"FunctionName": "echo"}, "End": true});
        s[field] = json!("$.t");
        json!({"StartAt": "T", "States": {"T": s}})
    };
    for field in ["TimeoutSecondsPath", "HeartbeatSecondsPath"] {
        let out = run(task(field), json!({"t": 1_000_000_000_000_000i64}));
        assert_eq!(out["status"], "FAILED", "{out}");
        assert_eq!(out["error"], "States.Runtime");
        assert_eq!(
            out["cause"],
            format!(
                "An error occurred while executing the state 'T' (entered at the event id #2). The {field} parameter references a value that is too large: $.t == 1000000000000000"
            )
        );
        let out = run(task(field), json!({"t": 1.5}));
        assert_eq!(
            out["cause"],
            format!(
                "An error occurred while executing the state 'T' (entered at the event id #2). The {field} parameter cannot be parsed as a long value: $.t == 1.5"
            )
        );
    }
    // SecondsPath far beyond a year.
    let wait = json!({"StartAt": "W", "States": {"W": {"Type": "Wait", "SecondsPath": "$.s", "End": true}}});
    let out = run(wait, json!({"s": 1_000_000_000_000_000i64}));
    assert_eq!((out["status"].as_str(), out["error"].as_str()), (Some("FAILED"), Some("States.Runtime")));
    // JSONata TimeoutSeconds / HeartbeatSeconds far beyond the limit.
    for field in ["TimeoutSeconds", "HeartbeatSeconds"] {
        let mut s =
            json!({"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke", "Arguments": {"FunctionName": "echo"}, "End": true});
        s[field] = json!("{% 1000000000000000 %}");
        let out = run(json!({"QueryLanguage": "JSONata", "StartAt": "T", "States": {"T": s}}), json!({}));
        assert_eq!(out["status"], "FAILED", "{out}");
        assert_eq!(out["error"], "States.QueryEvaluationError", "{out}");
    }
    // A JSONata Timestamp in the year 275000 is out of range, not a panic.
    let ts = json!({"QueryLanguage": "JSONata", "StartAt": "W", "States": {"W": {"Type": "Wait", "Timestamp": "{% '+275000-01-01T00:00:00Z' %}", "End": true}}});
    assert_eq!(run(ts, json!({}))["status"], "FAILED");
}

/// Retry with MaxAttempts 60 and no MaxDelaySeconds: the back-off grows past what a
/// timestamp holds at attempt 43; under virtual time the execution still ends.
#[test]
fn retry_backoff_at_high_attempt_counts_does_not_overflow() {
    let def = json!({"StartAt": "P", "States": {"P": {"Type": "Parallel", "End": true,
        "Branches": [{"StartAt": "F", "States": {"F": {"Type": "Fail", "Error": "Boom"}}}],
        "Retry": [{"ErrorEquals": ["States.ALL"], "MaxAttempts": 60, "BackoffRate": 2.0, "IntervalSeconds": 1}]}}});
    let out = run(def, json!({}));
    assert_eq!(out["status"], "FAILED", "{out}");
    assert_eq!(out["error"], "Boom");
    let def = json!({"StartAt": "P", "States": {"P": {"Type": "Parallel", "End": true,
        "Branches": [{"StartAt": "F", "States": {"F": {"Type": "Fail", "Error": "Boom"}}}],
        "Retry": [{"ErrorEquals": ["States.ALL"], "MaxAttempts": 50, "BackoffRate": 1e300, "IntervalSeconds": 99999999, "JitterStrategy": "FULL"}]}}});
    assert_eq!(run(def, json!({}))["status"], "FAILED");
}

#[test]
fn item_batcher_sizes_read_through_paths_must_be_positive_integers() {
    let def = json!({"StartAt": "M", "States": {"M": {"Type": "Map", "ItemsPath": "$.a", "End": true,
        "ItemBatcher": {"MaxItemsPerBatchPath": "$.b"},
        "ItemProcessor": {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": true}}}}}});
    for bad in [json!(-1), json!(0), json!("lots"), json!(1.5)] {
        let out = run(def.clone(), json!({"a": [1, 2, 3], "b": bad}));
        assert_eq!(out["status"], "FAILED", "{bad}: {out}");
        assert_eq!(out["error"], "States.Runtime", "{bad}: {out}");
        assert!(out["cause"].as_str().is_some_and(|c| c.contains("MaxItemsPerBatchPath") && c.contains("$.b")), "{out}");
    }
    let out = run(def, json!({"a": [1, 2, 3], "b": 2}));
    assert_eq!(out["status"], "SUCCEEDED", "{out}");
    assert_eq!(out["output"].as_array().map(Vec::len), Some(2), "two batches: {out}");
}

fn problems(def: &Value) -> Vec<String> {
    match Definition::parse_str(&def.to_string()) {
        Ok(_) => vec![],
        Err(e) => e.to_string().lines().skip(1).map(|l| l.trim().trim_start_matches("- ").to_string()).collect(),
    }
}

#[test]
fn definitions_over_aws_limits_are_refused() {
    let one = |s: Value| json!({"StartAt": "S", "States": {"S": s}});
    let cases = [
        (
            json!({"StartAt": "S", "TimeoutSeconds": 10_000_000_000_000u64, "States": {"S": {"Type": "Succeed"}}}),
            "TimeoutSeconds: Maximum value is 99999999",
        ),
        (
            one(json!({"Type": "Wait", "Seconds": 10_000_000_000_000_000u64, "End": true})),
            "States.S.Seconds: must be a non-negative integer no larger than 99999999",
        ),
        (
            one(json!({"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke", "TimeoutSeconds": 100_000_000, "End": true})),
            "States.S.TimeoutSeconds: Maximum value is 99999999",
        ),
        (
            one(json!({"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke", "HeartbeatSeconds": 100_000_000, "End": true})),
            "States.S.HeartbeatSeconds: Maximum value is 99999999",
        ),
        (
            one(
                json!({"Type": "Task", "Resource": "r", "End": true, "Retry": [{"ErrorEquals": ["States.ALL"], "MaxAttempts": 100_000_000}]}),
            ),
            "States.S.Retry[0].MaxAttempts: Maximum value is 99999999",
        ),
        (
            one(
                json!({"Type": "Task", "Resource": "r", "End": true, "Retry": [{"ErrorEquals": ["States.ALL"], "MaxDelaySeconds": 31_622_401}]}),
            ),
            "States.S.Retry[0].MaxDelaySeconds: Maximum value is 31622400",
        ),
        (
            json!({"QueryLanguage": "JSONata", "StartAt": "S", "States": {"S": {"Type": "Wait", "Seconds": 1e16, "End": true}}}),
            "States.S.Seconds: must be a non-negative integer no larger than 99999999",
        ),
    ];
    for (def, want) in cases {
        let got = problems(&def);
        assert!(got.iter().any(|p| p == want), "{def}: expected {want:?}, got {got:?}");
    }
    // Over 1 MiB of definition.
    let big = json!({"StartAt": "S", "Comment": "x".repeat(1_048_600), "States": {"S": {"Type": "Succeed"}}});
    let got = problems(&big);
    assert!(got.iter().any(|p| p.contains("at most 1048576 bytes")), "{got:?}");
}

/// `validate` reports a JSONata syntax error with the state and field.
#[test]
fn jsonata_syntax_errors_are_reported_by_validation() {
    let def = json!({"QueryLanguage": "JSONata", "StartAt": "P", "States": {
        "P": {"Type": "Pass", "Output": {"a": "{% $states.input.x + %}"}, "Next": "C"},
        "C": {"Type": "Choice", "Choices": [{"Condition": "{% ($states.input.x %}", "Next": "M"}], "Default": "M"},
        "M": {"Type": "Map", "Items": "{% [1, 2 %}", "End": true,
              "ItemProcessor": {"StartAt": "I", "States": {"I": {"Type": "Pass", "Assign": {"v": "{% $states.input. %}"}, "End": true}}}}}});
    let got = problems(&def);
    for at in ["States.P.Output.a", "States.C.Choices[0].Condition", "States.M.Items", "States.M.ItemProcessor.States.I.Assign.v"] {
        assert!(got.iter().any(|p| p.starts_with(&format!("{at}: invalid JSONata expression: S0"))), "{at} missing from {got:?}");
    }
    // The CLI shows them too (exit 2, each with its location).
    let dir = tempfile::tempdir().expect("tmp");
    let f = dir.path().join("def.json");
    std::fs::write(&f, def.to_string()).expect("write");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_lightbox"))
        .arg("--data-dir")
        .arg(dir.path())
        .args(["validate", "--definition"])
        .arg(&f)
        .output()
        .expect("run");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("States.P.Output.a") && text.contains("invalid JSONata expression"), "{text}");
}

// ----- task tokens ------------------------------------------------------------------------

fn info(name: &str) -> ExecInfo {
    ExecInfo {
        execution_arn: format!("arn:aws:states:us-east-1:000000000000:execution:review:{name}"),
        name: name.into(),
        state_machine_arn: "arn:aws:states:us-east-1:000000000000:stateMachine:review".into(),
        state_machine_name: "review".into(),
        role_arn: "arn:aws:iam::000000000000:role/x".into(),
        start_time: t0(),
        input: json!([1, 2, 3, 4]),
        redrive_count: 0,
        redrive_time: None,
    }
}

fn map_tokens(key: [u8; 32], seed: u64) -> Vec<String> {
    let def = Definition::parse(
        &json!({"StartAt": "M", "States": {"M": {"Type": "Map", "End": true, "ItemProcessor": {"StartAt": "R", "States": {
        "R": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken",
              "Parameters": {"FunctionName": "echo", "Payload": {"token.$": "$$.Task.Token"}}, "End": true}}}}}}),
    )
    .expect("def");
    let mut st = ExecState::new(info("e1"), seed);
    let env = Env { token_key: key, ..Env::new(t0(), "us-east-1") };
    let step = apply(&mut st, &def, Input::Start, &env).expect("apply");
    step.tokens_issued.iter().map(|t| t.token.clone()).collect()
}

#[test]
fn task_tokens_are_keyed_and_unrelated_to_each_other() {
    let k1 = [7u8; 32];
    let mut k2 = k1;
    k2[31] ^= 1;
    let a = map_tokens(k1, 42);
    assert_eq!(a.len(), 4);
    // Deterministic: the same key, state and input give the same tokens (replay).
    assert_eq!(a, map_tokens(k1, 42));
    // Every token is 256 bits of PRF output, and a one-bit change of key changes every token.
    let b = map_tokens(k2, 42);
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.len(), 64);
        assert!(x.chars().all(|c| c.is_ascii_hexdigit()));
        let same = x.chars().zip(y.chars()).filter(|(p, q)| p == q).count();
        assert!(same < 20, "{x} vs {y}: {same} equal digits");
    }
    // Siblings share no prefix structure (the old tokens were consecutive generator outputs).
    for i in 0..a.len() {
        for j in i + 1..a.len() {
            assert_ne!(a[i][..8], a[j][..8]);
            let same = a[i].chars().zip(a[j].chars()).filter(|(p, q)| p == q).count();
            assert!(same < 20, "{} vs {}", a[i], a[j]);
        }
    }
    // The old generator: splitmix64 outputs in the first 32 hex digits. From the first
    // token's two words, the next two are no longer the sibling's first 32 digits.
    let word = |s: &str| u64::from_str_radix(s, 16).expect("hex");
    let mut state = word(&a[0][16..32]);
    let next = lightbox::engine::eval::next_random(&mut state);
    assert_ne!(format!("{next:016x}"), a[1][..16]);
}

#[test]
fn the_store_keeps_one_secret_token_key_and_prefixes_still_resolve() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("lightbox.db");
    let k1 = Store::open(&path).expect("open").token_key().expect("key");
    let k2 = Store::open(&path).expect("open").token_key().expect("key");
    assert_eq!(k1, k2, "the key is created once and kept");
    assert_ne!(k1, [0u8; 32]);
    assert_ne!(Store::in_memory().expect("mem").token_key().expect("key"), k1, "each store has its own key");

    let mut engine = engine_on(&dir, TaskRunner::new());
    let def = json!({"StartAt": "R", "States": {"R": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken",
        "Parameters": {"FunctionName": "echo", "Payload": {"t.$": "$$.Task.Token"}}, "End": true}}});
    engine.create_state_machine("review", &def.to_string(), None).expect("sm");
    let arn = engine.start_execution("review", Some("r1"), "{}").expect("start").arn;
    let tokens = engine.store.tokens(Some("PENDING"), Some(&arn), 10).expect("tokens");
    assert_eq!(tokens.len(), 1);
    let tok = &tokens[0].token;
    assert_eq!(lightbox::engine::short_token(tok).chars().count(), 9, "8 characters and an ellipsis");
    engine.send_task_success(&tok[..8], "{\"ok\": true}").expect("an 8-character prefix resolves");
    assert_eq!(status(&engine, &arn).0, ExecutionStatus::Succeeded);
    let _ = core::PAYLOAD_LIMIT;
}

// ----- property test: random definitions and inputs, driven to completion ----------------

mod random_workflows {
    use proptest::prelude::*;
    use serde_json::{Value, json};

    use super::{RunOptions, ephemeral, t0};

    fn number() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(json!(0)),
            Just(json!(1)),
            Just(json!(-1)),
            Just(json!(1.5)),
            Just(json!(99_999_999)),
            Just(json!(100_000_000)),
            Just(json!(10_000_000_000_000i64)),
            Just(json!(1_000_000_000_000_000i64)),
            Just(json!(i64::MAX)),
            Just(json!(u64::MAX)),
            Just(json!(1e300)),
            Just(json!("12")),
            (0i64..5).prop_map(|n| json!(n)),
        ]
    }

    fn jsonata_number() -> impl Strategy<Value = Value> {
        prop_oneof![
            number().prop_map(|n| json!(format!("{{% {} %}}", n))),
            Just(json!("{% $states.input.n %}")),
            Just(json!("{% $count([9223372036854775806..9223372036854775807]) %}")),
            Just(json!("{% $sum([1..100000]) %}")),
            Just(json!("{% $states.input.n * 1000000000000 %}")),
            Just(json!("{% [1..20000000] %}")),
            // (Unbounded recursion is bounded too, but takes ~0.3 s a try in a debug build:
            // it is covered by the JSONata unit tests, not retried here 60 times.)
            Just(json!("{% $reduce([1..1000], function($a, $b){$a * $b}) %}")),
        ]
    }

    #[derive(Debug, Clone)]
    #[allow(clippy::large_enum_variant)]
    enum S {
        Pass(Value),
        Wait(&'static str, Value),
        Choice(Value),
        Task { handler: &'static str, field: &'static str, value: Value, retry: Option<(Value, Value, Value, Value)>, catch: bool },
        Map(Value, bool),
        Parallel(bool),
    }

    fn state() -> impl Strategy<Value = S> {
        prop_oneof![
            prop_oneof![number(), jsonata_number()].prop_map(S::Pass),
            (
                prop_oneof![Just("Seconds"), Just("SecondsPath"), Just("Timestamp"), Just("TimestampPath")],
                prop_oneof![number(), jsonata_number()]
            )
                .prop_map(|(k, v)| S::Wait(k, v)),
            prop_oneof![number(), jsonata_number()].prop_map(S::Choice),
            (
                prop_oneof![Just("echo"), Just("fail")],
                prop_oneof![Just("TimeoutSeconds"), Just("HeartbeatSeconds"), Just("TimeoutSecondsPath"), Just("HeartbeatSecondsPath")],
                prop_oneof![number(), jsonata_number()],
                proptest::option::of(prop_oneof![
                    (number(), number(), number(), number()),
                    (
                        prop_oneof![Just(json!(3)), Just(json!(60))],
                        prop_oneof![Just(json!(1)), Just(json!(99_999_999))],
                        prop_oneof![Just(json!(2.0)), Just(json!(1e300))],
                        prop_oneof![Just(json!(1)), Just(json!(31_622_400))],
                    ),
                ]),
                any::<bool>()
            )
                .prop_map(|(handler, field, value, retry, catch)| S::Task { handler, field, value, retry, catch }),
            (prop_oneof![number(), jsonata_number()], any::<bool>()).prop_map(|(v, f)| S::Map(v, f)),
            any::<bool>().prop_map(S::Parallel),
        ]
    }

    fn build(states: &[S], jsonata: bool) -> Value {
        let mut out = serde_json::Map::new();
        let name = |i: usize| format!("S{i}");
        for (i, s) in states.iter().enumerate() {
            let next = if i + 1 < states.len() { json!({"Next": name(i + 1)}) } else { json!({"End": true}) };
            let mut st = match s {
                S::Pass(v) => {
                    if jsonata {
                        json!({"Type": "Pass", "Output": {"v": v, "n": "{% $states.input.n %}"}})
                    } else {
                        json!({"Type": "Pass", "Result": {"v": v}, "ResultPath": "$.r"})
                    }
                }
                S::Wait(k, v) => {
                    let (k, v) = match (*k, jsonata) {
                        ("SecondsPath", false) => ("SecondsPath", json!("$.n")),
                        ("TimestampPath", false) => ("TimestampPath", json!("$.ts")),
                        ("SecondsPath", true) | ("Seconds", _) => ("Seconds", v.clone()),
                        (_, true) => ("Timestamp", json!("{% $states.input.ts %}")),
                        _ => ("Timestamp", v.clone()),
                    };
                    let mut w = json!({"Type": "Wait"});
                    w[k] = v;
                    w
                }
                S::Choice(v) => {
                    let c = if jsonata {
                        json!({"Condition": format!("{{% $states.input.n > {} %}}", v), "Next": name(i + 1)})
                    } else {
                        json!({"Variable": "$.n", "NumericGreaterThan": v, "Next": name(i + 1)})
                    };
                    if i + 1 < states.len() {
                        json!({"Type": "Choice", "Choices": [c], "Default": name(i + 1)})
                    } else {
                        json!({"Type": "Succeed"})
                    }
                }
                S::Task { handler, field, value, retry, catch } => {
                    let mut t = json!({"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke"});
                    if jsonata {
                        t["Arguments"] = json!({"FunctionName": handler, "Payload": "{% $states.input %}"});
                        t["Output"] = json!("{% $states.input %}");
                        t[field.trim_end_matches("Path")] = value.clone();
                    } else {
                        t["Parameters"] = json!({"FunctionName": handler, "Payload.$": "$"});
                        t["ResultPath"] = json!("$.task");
                        if field.ends_with("Path") {
                            t[*field] = json!("$.n");
                        } else {
                            t[*field] = value.clone();
                        }
                    }
                    if let Some((a, b, c, d)) = retry {
                        t["Retry"] = json!([{"ErrorEquals": ["States.ALL"], "MaxAttempts": a, "IntervalSeconds": b, "BackoffRate": c, "MaxDelaySeconds": d, "JitterStrategy": "FULL"}]);
                    }
                    if *catch && i + 1 < states.len() {
                        t["Catch"] = json!([{"ErrorEquals": ["States.ALL"], "Next": name(i + 1)}]);
                    }
                    t
                }
                S::Map(v, fail) => {
                    let inner =
                        if *fail { json!({"Type": "Fail", "Error": "Inner"}) } else { json!({"Type": "Wait", "Seconds": 3, "End": true}) };
                    let mut m = json!({"Type": "Map", "ItemProcessor": {"StartAt": "I", "States": {"I": inner}}});
                    if jsonata {
                        m["Items"] = json!("{% $states.input.items %}");
                        m["MaxConcurrency"] = v.clone();
                        m["Output"] = json!("{% $states.input %}");
                    } else {
                        m["ItemsPath"] = json!("$.items");
                        m["ResultPath"] = json!("$.mapped");
                        m["ToleratedFailureCount"] = v.clone();
                    }
                    m
                }
                S::Parallel(fail) => {
                    let b2 = if *fail { json!({"Type": "Fail", "Error": "Branch"}) } else { json!({"Type": "Pass", "End": true}) };
                    let mut p = json!({"Type": "Parallel", "Branches": [
                        {"StartAt": "A", "States": {"A": {"Type": "Pass", "End": true}}},
                        {"StartAt": "B", "States": {"B": b2}}]});
                    if !jsonata {
                        p["ResultPath"] = json!("$.par");
                    } else {
                        p["Output"] = json!("{% $states.input %}");
                    }
                    p
                }
            };
            if let (Some(o), Some(n)) = (st.as_object_mut(), next.as_object())
                && !matches!(o.get("Type").and_then(Value::as_str), Some("Choice" | "Succeed" | "Fail"))
            {
                o.extend(n.clone());
            }
            out.insert(name(i), st);
        }
        let mut def = json!({"StartAt": "S0", "States": out});
        if jsonata {
            def["QueryLanguage"] = json!("JSONata");
        }
        def
    }

    fn input() -> impl Strategy<Value = Value> {
        (
            number(),
            proptest::collection::vec(number(), 0..4),
            prop_oneof![
                Just(json!("2026-01-05T09:00:10Z")),
                Just(json!("+275000-01-01T00:00:00Z")),
                Just(json!("9999-12-31T23:59:59Z")),
                Just(json!("not a time")),
                Just(json!(5)),
            ],
        )
            .prop_map(|(n, items, ts)| json!({"n": n, "items": items, "ts": ts}))
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 96, failure_persistence: None, ..ProptestConfig::default() })]

        /// No panic, no hang, bounded output: every valid random workflow runs to a terminal
        /// status under virtual time; an invalid one is refused by validation.
        #[test]
        fn random_workflows_finish(states in proptest::collection::vec(state(), 1..6), jsonata in any::<bool>(), input in input()) {
            let def = build(&states, jsonata);
            let t = std::time::Instant::now();
            let r = ephemeral::run(&def.to_string(), &input.to_string(), RunOptions { start: t0(), ..Default::default() });
            prop_assert!(t.elapsed() < std::time::Duration::from_secs(20), "took {:?}: {def}", t.elapsed());
            if let Ok(out) = r {
                let status = out["status"].as_str().unwrap_or_default().to_string();
                prop_assert!(["SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"].contains(&status.as_str()), "{out}");
                prop_assert!(out.to_string().len() < 300 * 1024);
            }
        }
    }
}

/// `executions start` drives the new execution in the caller: a handler panic there fails
/// that execution, the caller gets its row back, and the lease is free again.
#[test]
fn a_handler_panic_while_starting_fails_the_execution_not_the_caller() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut tasks = TaskRunner::new();
    tasks.register("boom", |_| panic!("handler bug"));
    let mut engine = engine_on(&dir, tasks);
    let def = json!({"StartAt": "T", "States": {
        "T": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke", "Parameters": {"FunctionName": "boom"}, "End": true}}});
    engine.create_state_machine("boom", &def.to_string(), None).expect("boom");
    let row = engine.start_execution("boom", Some("v"), "{}").expect("start returns");
    assert_eq!((row.status, row.error.as_deref()), (ExecutionStatus::Failed, Some(INTERNAL_ERROR)));
    let lease: Option<String> =
        engine.store.conn().query_row("SELECT lease_owner FROM executions WHERE arn = ?1", [&row.arn], |r| r.get(0)).expect("row");
    assert!(lease.is_none(), "lease released");
}

/// Seen: an execution busy in another process (its lease held for minutes by a worker deep
/// in a huge Map) could not be stopped: "busy in another process". Stopping always works:
/// after the wait it is aborted directly, and the holder's own step can no longer commit.
#[test]
fn stop_works_while_another_live_process_holds_the_lease() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut engine = engine_on(&dir, TaskRunner::new());
    let sm = engine.create_state_machine("w", &good_wait(), None).expect("create");
    let row = engine.start_execution(&sm.arn, Some("held"), "{}").expect("start");
    // A live owner (this very process, under another name) holds the lease for a long time.
    let other = format!("{}-someone-else", std::process::id());
    assert!(engine.store.acquire_lease(&row.arn, &other, engine.clock.now(), 3_600_000).expect("lease"));
    let loaded = engine.store.load(&row.arn).expect("load").expect("row");
    let stopped = engine.stop_execution(&row.arn, Some("Ops.Stopped".into()), Some("stuck".into())).expect("stop always works");
    assert_eq!(stopped.status, ExecutionStatus::Aborted);
    // The holder's next commit, computed from the state it loaded, is refused.
    let mut st = loaded.state;
    st.status = ExecutionStatus::Succeeded;
    let step = lightbox::engine::core::Step::default();
    assert!(engine.store.commit_step(&st, loaded.version, &step).is_err(), "a stale step must not commit");
    assert_eq!(status(&engine, &row.arn).0, ExecutionStatus::Aborted);
}

/// Seen: an inline Map over 20,000 items held its execution's lease for minutes (each
/// finishing iteration copied the whole fan-out), stalling the engine. It now runs to the
/// history limit and fails there as Step Functions does.
#[test]
fn a_huge_inline_map_fails_at_the_history_limit_instead_of_stalling() {
    let def = json!({"QueryLanguage": "JSONata", "StartAt": "M", "States": {"M": {"Type": "Map", "Items": "{% [1..8000] %}",
        "ItemProcessor": {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": true}}}, "End": true}}});
    let out = run(def, json!({}));
    assert_eq!(out["status"], "FAILED", "{out}");
    assert!(out["cause"].as_str().is_some_and(|c| c.contains("maximum number of history events")), "{out}");
}

fn nested(depth: usize) -> String {
    format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth))
}

/// Seen: input nested ~126 levels deep was accepted, then its stored state could not be
/// read back ("stored data is corrupt") and the execution was failed as an internal error;
/// an approval with such output took effect but was audited as an error. One depth limit now
/// applies where data comes in and where a state produces it.
#[test]
fn data_nested_too_deep_is_refused_where_it_enters() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut engine = engine_on(&dir, TaskRunner::new());
    let sm = engine.create_state_machine("w", &good_wait(), None).expect("create");
    let err = engine.start_execution(&sm.arn, Some("deep"), &nested(126)).expect_err("too deep");
    assert!(err.to_string().contains("nested deeper than 100 levels"), "{err}");
    assert!(engine.store.execution(&format!("{}:deep", sm.arn.replace(":stateMachine:", ":execution:"))).expect("read").is_none());
    // Just under the limit is kept, and its stored state reads back.
    let ok = engine.start_execution(&sm.arn, Some("ok"), &nested(99)).expect("99 levels");
    assert!(engine.store.load(&ok.arn).expect("snapshot reads back").is_some());
    // A state that builds deeper data fails as a runtime error, not as a corrupt store.
    let def = json!({"QueryLanguage": "JSONata", "StartAt": "P", "States": {"P": {"Type": "Pass", "End": true,
        "Output": format!("{{% {} %}}", nested(110))}}});
    let out = run(def, json!({}));
    assert_eq!(out["status"], "FAILED", "{out}");
    assert_eq!(out["error"], "States.Runtime", "{out}");
    assert!(out["cause"].as_str().is_some_and(|c| c.contains("nested deeper")), "{out}");
}

fn jsonata_output(expr: &str) -> Value {
    let def = json!({"QueryLanguage": "JSONata", "StartAt": "P", "States": {"P": {"Type": "Pass", "Output": expr, "End": true}}});
    run(def, json!({}))
}

fn assert_query_error(out: &Value, needle: &str) {
    assert_eq!(out["status"], "FAILED", "{out}");
    assert_eq!(out["error"], "States.QueryEvaluationError", "{out}");
    assert!(out["cause"].as_str().is_some_and(|c| c.contains(needle)), "cause should mention {needle}: {out}");
}

/// Seen: one `$replace` / `$join` call grew the process to 15.6 GB / 9.6 GB (the step budget
/// counts work, not the size of a single result). Results over 10 MB now fail with U1003
/// before they are built; so do `&`, `$pad`, `$string` of shared structure and the output of
/// an expression whose shared structure would expand past the limit.
#[test]
fn jsonata_results_are_bounded_in_size() {
    for expr in [
        r#"{% $length($replace($pad("",100000,"x"), "x", $pad("",100000,"y"))) %}"#,
        r#"{% $length($join([1..100000].$string(), $pad("",100000,"y"))) %}"#,
        r#"{% $length($replace($pad("",100000,"x"), /x/, $pad("",100000,"y"))) %}"#,
        r#"{% $length($pad("", 1e12, "x")) %}"#,
        r#"{% ($s := $pad("", 9000000, "x"); $length($s & $s)) %}"#,
        r#"{% ($f := function($a, $n){$n = 0 ? $a : $f([[$a], [$a]], $n - 1)}; $length($string($f([1], 40)))) %}"#,
        r#"{% ($f := function($a, $n){$n = 0 ? $a : $f([[$a], [$a]], $n - 1)}; $f([1], 40)) %}"#,
    ] {
        let started = std::time::Instant::now();
        let out = jsonata_output(expr);
        assert_query_error(&out, "U1003");
        assert!(started.elapsed() < std::time::Duration::from_secs(20), "{expr} took {:?}", started.elapsed());
    }
    // Under the limit still works.
    let out = jsonata_output(r#"{% $length($replace($pad("",1000,"x"), "x", $pad("",1000,"y"))) %}"#);
    assert_eq!(out["output"], json!(1_000_000), "{out}");
}

/// Seen: `$formatInteger(1e18, 'w')` panicked (index out of bounds) and 1e15 gave "ten hundred
/// trillion". Words follow jsonata-js (largest scale word "trillion") for any finite value.
#[test]
fn format_integer_words_handle_the_whole_number_range() {
    let out = jsonata_output(
        "{% [$formatInteger(1e15, 'w'), $formatInteger(1e18, 'w'), $formatInteger(-1e18, 'w'), \
         $formatInteger(1234567, 'w;o'), $length($formatInteger(1e300, 'w')) > 0, $formatInteger(1e20, '0')] %}",
    );
    assert_eq!(out["status"], "SUCCEEDED", "{out}");
    assert_eq!(
        out["output"],
        json!([
            "one thousand trillion",
            "one million trillion",
            "-one million trillion",
            "one million, two hundred and thirty-four thousand, five hundred and sixty-seventh",
            true,
            "100000000000000000000"
        ]),
        "{out}"
    );
}

/// Seen: JSONata MaxConcurrency `-1`, `"abc"`, `1e300`, ToleratedFailurePercentage `101` /
/// `1e300` and ToleratedFailureCount `-5` were accepted (or ignored). They now fail the state
/// with States.QueryEvaluationError naming the field.
#[test]
fn jsonata_map_fields_are_checked_at_run_time() {
    let cases = [
        ("MaxConcurrency", json!("{% -1 %}")),
        ("MaxConcurrency", json!("{% \"abc\" %}")),
        ("MaxConcurrency", json!("{% 1e300 %}")),
        ("MaxConcurrency", json!("{% 1.5 %}")),
        ("ToleratedFailurePercentage", json!("{% 101 %}")),
        ("ToleratedFailurePercentage", json!("{% 1e300 %}")),
        ("ToleratedFailurePercentage", json!("{% \"x\" %}")),
        ("ToleratedFailureCount", json!("{% -5 %}")),
        ("ToleratedFailureCount", json!("{% 1e300 %}")),
    ];
    for (field, value) in cases {
        let mut map = json!({"Type": "Map", "Items": "{% [1, 2] %}",
            "ItemProcessor": {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": true}}}, "End": true});
        map[field] = value;
        let def = json!({"QueryLanguage": "JSONata", "StartAt": "M", "States": {"M": map}});
        let out = run(def, json!({}));
        assert_query_error(&out, &format!("'{field}'"));
    }
    // Valid values still run.
    let def = json!({"QueryLanguage": "JSONata", "StartAt": "M", "States": {"M": {"Type": "Map", "Items": "{% [1, 2] %}",
        "MaxConcurrency": "{% 1 %}", "ToleratedFailurePercentage": "{% 50.5 %}", "ToleratedFailureCount": "{% 0 %}",
        "ItemProcessor": {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": true}}}, "End": true}}});
    let out = run(def, json!({}));
    assert_eq!(out["status"], "SUCCEEDED", "{out}");
    assert_eq!(out["output"], json!([1, 2]), "{out}");
}
