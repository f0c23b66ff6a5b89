//! Behaviour of the pure core (`apply`) and of the shell around it (`Engine`):
//! determinism, redrive, heartbeats, retry timing, stop, timeouts, the outbox,
//! payload and history limits, and a parser that never panics.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Utc};
use lightbox::asl::model::Definition;
use lightbox::engine::core::{ApplyError, Effect, Env, ExecInfo, ExecState, Input, Step, TaskError, apply};
use lightbox::engine::ephemeral::{self, RunOptions};
use lightbox::engine::tasks::TaskRunner;
use lightbox::engine::{Clock, Engine, EngineError};
use lightbox::history::{ExecutionStatus, HistoryEvent};
use lightbox::model::ExecutionSummary;
use lightbox::store::Store;
use proptest::prelude::*;
use serde_json::{Map, Value, json};

const SQS_CALLBACK: &str = "arn:aws:states:::sqs:sendMessage.waitForTaskToken";

fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2024-03-01T09:00:00Z").expect("t0").with_timezone(&Utc)
}

fn secs(s: f64) -> Duration {
    Duration::milliseconds((s * 1000.0) as i64)
}

// ---------------------------------------------------------------------------
// Shell helpers

/// Invocations of the `flaky` handler by payload `id`; it fails for ids in `broken` while `fixed` is false.
#[derive(Clone, Default)]
struct Flaky {
    fixed: Arc<AtomicBool>,
    calls: Arc<Mutex<BTreeMap<String, u32>>>,
}

impl Flaky {
    fn runner(&self, broken: &[&str]) -> TaskRunner {
        let mut tasks = TaskRunner::new();
        let me = self.clone();
        let broken: Vec<String> = broken.iter().map(|s| s.to_string()).collect();
        tasks.register("flaky", move |v| {
            let id = v["id"].as_str().unwrap_or_default().to_string();
            *me.calls.lock().expect("calls").entry(id.clone()).or_default() += 1;
            if broken.contains(&id) && !me.fixed.load(Ordering::SeqCst) {
                return Err(TaskError { error: "Flaky.Broken".into(), cause: format!("{id} is broken") });
            }
            Ok(json!({"id": id, "done": true}))
        });
        tasks
    }
    fn calls(&self) -> BTreeMap<String, u32> {
        self.calls.lock().expect("calls").clone()
    }
}

fn engine(tasks: TaskRunner) -> Engine {
    Engine::new(Store::in_memory().expect("store"), tasks, Clock::virtual_at(t0()))
}

fn start(e: &mut Engine, definition: &Value, input: &Value) -> String {
    let sm = e.create_state_machine("Core", &definition.to_string(), None).expect("create state machine");
    e.start_execution(&sm.arn, Some("run-1"), &input.to_string()).expect("start").arn
}

fn row(e: &Engine, arn: &str) -> ExecutionSummary {
    e.store.execution(arn).expect("read").expect("execution exists")
}

fn history(e: &Engine, arn: &str) -> Vec<HistoryEvent> {
    e.store.history(arn, 0, 1_000_000, false).expect("history")
}

fn types(e: &Engine, arn: &str) -> Vec<String> {
    history(e, arn).into_iter().map(|ev| ev.event_type).collect()
}

fn output(r: &ExecutionSummary) -> Value {
    r.output.as_deref().map(|o| serde_json::from_str(o).expect("output json")).unwrap_or(Value::Null)
}

/// Run due work until nothing more is due now.
fn run_due(e: &mut Engine) {
    for _ in 0..1000 {
        if e.run_due(64).expect("run_due") == 0 {
            return;
        }
    }
    panic!("run_due never settled");
}

/// Move the virtual clock on by `s` seconds, then run what became due.
fn advance(e: &mut Engine, s: f64) {
    let to = e.clock.now() + secs(s);
    e.clock.advance_to(to);
    run_due(e);
}

/// Jump from timer to timer until the execution stops running (or nothing is left to wait for).
fn settle(e: &mut Engine, arn: &str) -> ExecutionSummary {
    for _ in 0..10_000 {
        let r = row(e, arn);
        if r.status != ExecutionStatus::Running {
            return r;
        }
        if e.run_due(64).expect("run_due") > 0 {
            continue;
        }
        if !e.advance_virtual_clock().expect("advance") {
            return r;
        }
    }
    panic!("execution {arn} did not settle");
}

fn pending_tokens(e: &Engine, arn: &str) -> Vec<String> {
    e.store.tokens(Some("PENDING"), Some(arn), 1000).expect("tokens").into_iter().map(|t| t.token).collect()
}

// ---------------------------------------------------------------------------
// Core helpers

fn info(input: Value) -> ExecInfo {
    ExecInfo {
        execution_arn: "arn:aws:states:us-east-1:000000000000:execution:Core:run-1".into(),
        name: "run-1".into(),
        state_machine_arn: "arn:aws:states:us-east-1:000000000000:stateMachine:Core".into(),
        state_machine_name: "Core".into(),
        role_arn: "arn:aws:iam::000000000000:role/test".into(),
        start_time: t0(),
        input,
        redrive_count: 0,
        redrive_time: None,
    }
}

fn env(now: DateTime<Utc>) -> Env {
    Env::new(now, "us-east-1")
}

/// Drive an execution with the core alone: tasks answer one second after they are
/// asked (the `flaky` function fails on its first attempt, callbacks are approved),
/// and timers fire exactly when due. Returns every step and the final state.
fn drive_core(def: &Definition, input: Value, seed: u64) -> (Vec<Step>, ExecState) {
    let mut st = ExecState::new(info(input), seed);
    let mut now = t0();
    let mut queue: VecDeque<Input> = VecDeque::from([Input::Start]);
    let mut steps = vec![];
    for _ in 0..10_000 {
        let next = match queue.pop_front() {
            Some(i) => {
                if !matches!(i, Input::Start) {
                    now += Duration::seconds(1);
                }
                i
            }
            None => match st.next_wake() {
                Some(w) if st.status == ExecutionStatus::Running => {
                    now = now.max(w);
                    Input::Wake
                }
                _ => break,
            },
        };
        let step = apply(&mut st, def, next, &env(now)).expect("apply");
        for eff in &step.effects {
            let Effect::RunTask(req) = eff;
            match &req.token {
                Some(tok) => {
                    queue.push_back(Input::TaskSubmitted { task_id: req.task_id.clone(), output: json!({"MessageId": "m"}) });
                    queue.push_back(Input::TaskResult { task_id: tok.clone(), result: Ok(json!({"approved": req.parameters})) });
                }
                None => {
                    let flaky = req.parameters["FunctionName"] == "flaky" && req.attempt == 0;
                    let result = if flaky {
                        Err(TaskError { error: "Flaky.Broken".into(), cause: "first attempt".into() })
                    } else {
                        Ok(json!({"Payload": req.parameters["Payload"]}))
                    };
                    queue.push_back(Input::TaskResult { task_id: req.task_id.clone(), result });
                }
            }
        }
        steps.push(step);
    }
    (steps, st)
}

fn determinism_definition() -> Definition {
    Definition::parse(&json!({
        "StartAt": "Ids",
        "States": {
            "Ids": {"Type": "Pass", "Parameters": {"id.$": "States.UUID()", "r.$": "States.MathRandom(1, 1000000)", "items": [1, 2, 3]}, "Next": "Pause"},
            "Pause": {"Type": "Wait", "Seconds": 5, "Next": "Fan"},
            "Fan": {
                "Type": "Map", "ItemsPath": "$.items", "ResultPath": "$.fan",
                "ItemProcessor": {"StartAt": "Work", "States": {"Work": {
                    "Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
                    "Parameters": {"FunctionName": "flaky", "Payload.$": "$"},
                    "Retry": [{"ErrorEquals": ["States.ALL"], "IntervalSeconds": 2, "MaxAttempts": 3, "JitterStrategy": "FULL"}],
                    "End": true}}},
                "Next": "Review"
            },
            "Review": {"Type": "Task", "Resource": SQS_CALLBACK, "Parameters": {"token.$": "$$.Task.Token"}, "ResultPath": "$.review", "End": true}
        }
    }))
    .expect("definition")
}

// ---------------------------------------------------------------------------
// Determinism

#[test]
fn same_definition_input_seed_and_times_give_identical_steps() {
    let def = determinism_definition();
    let (a, sa) = drive_core(&def, json!({"study": "S1"}), 42);
    let (b, sb) = drive_core(&def, json!({"study": "S1"}), 42);
    assert_eq!(sa.status, ExecutionStatus::Succeeded, "the scripted run must finish: {:?}", sa.error);
    assert!(a.len() > 5, "expected many steps, got {}", a.len());
    assert_eq!(a.len(), b.len());
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        assert_eq!(x.events, y.events, "step {i}: events differ");
        assert_eq!(x.effects, y.effects, "step {i}: effects differ");
        assert_eq!(x.tokens_issued, y.tokens_issued, "step {i}: issued tokens differ");
        assert_eq!(x.tokens_closed, y.tokens_closed, "step {i}: closed tokens differ");
    }
    assert_eq!(serde_json::to_value(&sa).expect("ser"), serde_json::to_value(&sb).expect("ser"), "final states differ");
    // The run really used randomness (UUID, MathRandom, jitter, token): another seed changes it.
    let (c, _) = drive_core(&def, json!({"study": "S1"}), 43);
    let tokens = |s: &[Step]| s.iter().flat_map(|x| x.tokens_issued.iter().map(|t| t.token.clone())).collect::<Vec<_>>();
    assert_eq!(tokens(&a).len(), 1);
    assert_ne!(tokens(&a), tokens(&c), "the seed must drive the task token");
    let events = |s: &[Step]| s.iter().flat_map(|x| x.events.clone()).collect::<Vec<_>>();
    assert_ne!(events(&a), events(&c), "the seed must drive UUID/MathRandom/jitter");
}

#[test]
fn core_refuses_inputs_that_do_not_fit_the_state() {
    let def = Definition::parse(&json!({"StartAt": "P", "States": {"P": {"Type": "Pass", "End": true}}})).expect("def");
    let mut st = ExecState::new(info(json!({})), 1);
    apply(&mut st, &def, Input::Start, &env(t0())).expect("start");
    assert_eq!(st.status, ExecutionStatus::Succeeded);
    let arn = st.info.execution_arn.clone();
    assert_eq!(apply(&mut st, &def, Input::Start, &env(t0())).err(), Some(ApplyError::AlreadyStarted(arn.clone())));
    assert_eq!(apply(&mut st, &def, Input::Stop { error: None, cause: None }, &env(t0())).err(), Some(ApplyError::NotRunning(arn.clone())));
    assert!(matches!(apply(&mut st, &def, Input::Redrive, &env(t0())), Err(ApplyError::NotRedrivable { .. })));
    // A wake on a finished execution changes nothing.
    let step = apply(&mut st, &def, Input::Wake, &env(t0() + Duration::days(1))).expect("wake");
    assert!(step.events.is_empty() && step.effects.is_empty());
}

// ---------------------------------------------------------------------------
// Redrive

#[test]
fn redrive_of_a_map_reruns_only_the_failed_iteration() {
    let flaky = Flaky::default();
    let mut e = engine(flaky.runner(&["b"]));
    // Item b waits 5 s before its task, so a and c have both succeeded when b fails.
    let def = json!({
        "StartAt": "Items",
        "States": {"Items": {
            "Type": "Map", "ItemsPath": "$.items",
            "ItemProcessor": {"StartAt": "Hold", "States": {
                "Hold": {"Type": "Wait", "SecondsPath": "$.hold", "Next": "Work"},
                "Work": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
                         "Parameters": {"FunctionName": "flaky", "Payload.$": "$"}, "OutputPath": "$.Payload", "End": true}}},
            "End": true}}
    });
    let input = json!({"items": [{"id": "a", "hold": 0}, {"id": "b", "hold": 5}, {"id": "c", "hold": 0}]});
    let arn = start(&mut e, &def, &input);
    let failed = settle(&mut e, &arn);
    assert_eq!(failed.status, ExecutionStatus::Failed);
    assert_eq!(failed.error.as_deref(), Some("Flaky.Broken"));
    assert_eq!(flaky.calls(), BTreeMap::from([("a".into(), 1), ("b".into(), 1), ("c".into(), 1)]));

    flaky.fixed.store(true, Ordering::SeqCst);
    let redriven = e.redrive_execution(&arn).expect("redrive");
    assert_eq!(redriven.arn, arn, "a redrive keeps the execution ARN");
    let done = settle(&mut e, &arn);
    assert_eq!(done.status, ExecutionStatus::Succeeded, "{:?} {:?}", done.error, done.cause);
    assert_eq!(done.arn, arn);
    assert_eq!(done.redrive_count, 1);
    assert!(done.redrive.is_some(), "redrive time is recorded");
    assert_eq!(
        output(&done),
        json!([{"id": "a", "done": true}, {"id": "b", "done": true}, {"id": "c", "done": true}]),
        "all three results, in item order"
    );
    assert_eq!(flaky.calls(), BTreeMap::from([("a".into(), 1), ("b".into(), 2), ("c".into(), 1)]), "only b reran");
    let events = history(&e, &arn);
    let redriven: Vec<&HistoryEvent> = events.iter().filter(|ev| ev.event_type == "ExecutionRedriven").collect();
    assert_eq!(redriven.len(), 1);
    assert_eq!(redriven[0].details["redriveCount"], 1);
    let failed_at = events.iter().position(|ev| ev.event_type == "ExecutionFailed").expect("ExecutionFailed");
    let redriven_at = events.iter().position(|ev| ev.event_type == "ExecutionRedriven").expect("ExecutionRedriven");
    assert_eq!(redriven_at, failed_at + 1, "ExecutionRedriven follows the failure");
    // After the redrive only b's task is scheduled again.
    let rescheduled = events[redriven_at..].iter().filter(|ev| ev.event_type == "TaskScheduled").count();
    assert_eq!(rescheduled, 1);
    assert_eq!(events.iter().map(|ev| ev.id).collect::<Vec<_>>(), (1..=events.len() as i64).collect::<Vec<_>>());
}

#[test]
fn redrive_of_a_parallel_reruns_only_the_failed_branch() {
    let flaky = Flaky::default();
    let mut e = engine(flaky.runner(&["p1"]));
    let work = |id: &str| {
        json!({"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
                               "Parameters": {"FunctionName": "flaky", "Payload": {"id": id}}, "OutputPath": "$.Payload", "End": true})
    };
    let def = json!({
        "StartAt": "Fan",
        "States": {
            "Fan": {"Type": "Parallel", "Branches": [
                {"StartAt": "W0", "States": {"W0": work("p0")}},
                {"StartAt": "Hold", "States": {"Hold": {"Type": "Wait", "Seconds": 5, "Next": "W1"}, "W1": work("p1")}},
                {"StartAt": "W2", "States": {"W2": work("p2")}}
            ], "Next": "Done"},
            "Done": {"Type": "Pass", "End": true}
        }
    });
    let arn = start(&mut e, &def, &json!({}));
    let failed = settle(&mut e, &arn);
    assert_eq!(failed.status, ExecutionStatus::Failed);
    assert_eq!(flaky.calls(), BTreeMap::from([("p0".into(), 1), ("p1".into(), 1), ("p2".into(), 1)]));
    flaky.fixed.store(true, Ordering::SeqCst);
    assert_eq!(e.redrive_execution(&arn).expect("redrive").arn, arn);
    let done = settle(&mut e, &arn);
    assert_eq!(done.status, ExecutionStatus::Succeeded, "{:?} {:?}", done.error, done.cause);
    assert_eq!(done.redrive_count, 1);
    assert_eq!(
        output(&done),
        json!([{"id": "p0", "done": true}, {"id": "p1", "done": true}, {"id": "p2", "done": true}]),
        "branch results in branch order"
    );
    assert_eq!(flaky.calls(), BTreeMap::from([("p0".into(), 1), ("p1".into(), 2), ("p2".into(), 1)]), "only branch 1 reran");
    assert!(types(&e, &arn).contains(&"ExecutionRedriven".to_string()));
}

#[test]
fn redrive_is_refused_for_succeeded_and_running_executions_and_after_14_days() {
    let mut e = engine(TaskRunner::new());
    let sm = e
        .create_state_machine(
            "Refusals",
            &json!({"StartAt": "Route", "States": {
                "Route": {"Type": "Choice", "Choices": [
                    {"Variable": "$.mode", "StringEquals": "ok", "Next": "Ok"},
                    {"Variable": "$.mode", "StringEquals": "wait", "Next": "Review"}], "Default": "Boom"},
                "Ok": {"Type": "Succeed"},
                "Review": {"Type": "Task", "Resource": SQS_CALLBACK, "Parameters": {"t.$": "$$.Task.Token"}, "End": true},
                "Boom": {"Type": "Fail", "Error": "Boom", "Cause": "always"}}})
            .to_string(),
            None,
        )
        .expect("create");
    let run = |e: &mut Engine, name: &str, mode: &str| {
        e.start_execution(&sm.arn, Some(name), &json!({"mode": mode}).to_string()).expect("start").arn
    };

    let ok = run(&mut e, "ok", "ok");
    assert_eq!(row(&e, &ok).status, ExecutionStatus::Succeeded);
    match e.redrive_execution(&ok) {
        Err(EngineError::NotRedrivable(m)) => assert!(m.contains("SUCCEEDED"), "{m}"),
        other => panic!("redrive of a SUCCEEDED execution: {other:?}"),
    }

    let waiting = run(&mut e, "waiting", "wait");
    assert_eq!(row(&e, &waiting).status, ExecutionStatus::Running);
    match e.redrive_execution(&waiting) {
        Err(EngineError::NotRedrivable(m)) => assert!(m.contains("RUNNING"), "{m}"),
        other => panic!("redrive of a RUNNING execution: {other:?}"),
    }
    assert_eq!(row(&e, &waiting).redrive_count, 0);
    assert!(!types(&e, &waiting).contains(&"ExecutionRedriven".to_string()));
    assert_eq!(pending_tokens(&e, &waiting).len(), 1, "the refused redrive left the waiting task alone");

    let old = run(&mut e, "old", "fail");
    let recent = run(&mut e, "recent", "fail");
    assert_eq!(row(&e, &old).status, ExecutionStatus::Failed);
    e.clock.advance_to(t0() + Duration::days(13));
    let r = e.redrive_execution(&recent).expect("redrive 13 days after the failure");
    assert_eq!(r.redrive_count, 1);
    e.clock.advance_to(t0() + Duration::days(14) + Duration::seconds(1));
    match e.redrive_execution(&old) {
        Err(EngineError::NotRedrivable(m)) => assert!(m.contains("14 days"), "{m}"),
        other => panic!("redrive more than 14 days after the failure: {other:?}"),
    }
    let old_row = row(&e, &old);
    assert_eq!((old_row.status, old_row.redrive_count), (ExecutionStatus::Failed, 0));

    assert!(matches!(
        e.redrive_execution("arn:aws:states:us-east-1:000000000000:execution:Refusals:nope"),
        Err(EngineError::ExecutionDoesNotExist(_))
    ));
}

// ---------------------------------------------------------------------------
// Heartbeats and task timeouts

fn heartbeat_definition() -> Value {
    json!({
        "StartAt": "Review",
        "States": {
            "Review": {
                "Type": "Task", "Resource": SQS_CALLBACK, "HeartbeatSeconds": 5, "TimeoutSeconds": 60,
                "Parameters": {"QueueUrl": "https://sqs.us-east-1.amazonaws.com/000000000000/q", "MessageBody": {"token.$": "$$.Task.Token"}},
                "Catch": [{"ErrorEquals": ["States.HeartbeatTimeout"], "ResultPath": "$.err", "Next": "Escalate"}],
                "End": true
            },
            "Escalate": {"Type": "Pass", "Result": "escalated", "ResultPath": "$.route", "End": true}
        }
    })
}

#[test]
fn heartbeats_keep_a_callback_alive_and_a_missed_heartbeat_times_it_out() {
    let mut e = engine(TaskRunner::new());
    let arn = start(&mut e, &heartbeat_definition(), &json!({"study": "S1"}));
    let tok = pending_tokens(&e, &arn).pop().expect("one token");
    assert_eq!(e.store.token(&tok).expect("t").expect("t").heartbeat, Some(t0() + Duration::seconds(5)));
    // Heartbeats at 4, 8, 12 and 16 s: alive long past the first 5 s.
    for k in 1..=4 {
        advance(&mut e, 4.0);
        assert_eq!(row(&e, &arn).status, ExecutionStatus::Running, "before heartbeat {k}");
        let t = e.send_task_heartbeat(&tok).expect("heartbeat");
        assert_eq!(t.status, "PENDING");
        assert_eq!(t.heartbeat, Some(t0() + Duration::seconds(4 * k + 5)), "heartbeat {k} moves the deadline");
        run_due(&mut e);
    }
    // No more heartbeats: still alive just before 16 + 5 s, timed out at 21 s.
    advance(&mut e, 4.999);
    assert_eq!(row(&e, &arn).status, ExecutionStatus::Running);
    advance(&mut e, 0.001);
    let r = row(&e, &arn);
    assert_eq!(r.status, ExecutionStatus::Succeeded, "the Catch on States.HeartbeatTimeout routes on: {:?}", r.error);
    let out = output(&r);
    assert_eq!(out["err"]["Error"], "States.HeartbeatTimeout");
    assert_eq!(out["route"], "escalated");
    assert_eq!(out["study"], "S1");
    let t = e.store.token(&tok).expect("t").expect("t");
    assert_eq!(t.status, "TIMED_OUT");
    let events = history(&e, &arn);
    let timed_out = events.iter().find(|ev| ev.event_type == "TaskTimedOut").expect("TaskTimedOut");
    assert_eq!(timed_out.details["error"], "States.HeartbeatTimeout");
    assert_eq!(timed_out.timestamp, t0() + Duration::seconds(21));
    let types: Vec<&str> = events.iter().map(|ev| ev.event_type.as_str()).collect();
    assert_eq!(
        types,
        [
            "ExecutionStarted",
            "TaskStateEntered",
            "TaskScheduled",
            "TaskStarted",
            "TaskSubmitted",
            "TaskTimedOut",
            "TaskStateExited",
            "PassStateEntered",
            "PassStateExited",
            "ExecutionSucceeded"
        ]
    );
    // A heartbeat for a timed-out token is refused.
    assert!(matches!(e.send_task_heartbeat(&tok), Err(EngineError::TaskTimedOut { .. })));
}

// A worker may run its timers late; a call that arrives after a deadline has passed (but
// before run_due fired it) must still lose to the deadline, as it does in Step Functions.

#[test]
fn a_heartbeat_after_the_heartbeat_deadline_is_refused() {
    let mut e = engine(TaskRunner::new());
    let arn = start(&mut e, &heartbeat_definition(), &json!({"study": "S1"}));
    let tok = pending_tokens(&e, &arn).pop().expect("token");
    e.clock.advance_to(t0() + Duration::seconds(7));
    let late = e.send_task_heartbeat(&tok);
    run_due(&mut e);
    assert!(matches!(late, Err(EngineError::TaskTimedOut { .. })), "a heartbeat 2 s after the deadline must be refused, got {late:?}");
    let r = row(&e, &arn);
    assert_eq!(output(&r)["err"]["Error"], "States.HeartbeatTimeout", "{r:?}");
}

#[test]
fn a_result_after_the_task_timeout_is_refused() {
    let mut e = engine(TaskRunner::new());
    let def = json!({"StartAt": "Review", "States": {"Review": {"Type": "Task", "Resource": SQS_CALLBACK, "TimeoutSeconds": 10,
                     "Parameters": {"t.$": "$$.Task.Token"}, "End": true}}});
    let arn = start(&mut e, &def, &json!({}));
    let tok = pending_tokens(&e, &arn).pop().expect("token");
    e.clock.advance_to(t0() + Duration::seconds(11));
    let late = e.send_task_success(&tok, "{\"late\":true}");
    run_due(&mut e);
    let r = row(&e, &arn);
    assert!(late.is_err(), "a success 1 s after TimeoutSeconds must be refused, got {late:?}");
    assert_eq!((r.status, r.error.as_deref()), (ExecutionStatus::Failed, Some("States.Timeout")));
}

#[test]
fn a_result_after_the_execution_timeout_does_not_succeed_the_execution() {
    let mut e = engine(TaskRunner::new());
    let def = json!({"TimeoutSeconds": 10, "StartAt": "Review", "States": {"Review": {"Type": "Task", "Resource": SQS_CALLBACK,
                     "Parameters": {"t.$": "$$.Task.Token"}, "End": true}}});
    let arn = start(&mut e, &def, &json!({}));
    let tok = pending_tokens(&e, &arn).pop().expect("token");
    e.clock.advance_to(t0() + Duration::seconds(11));
    let _ = e.send_task_success(&tok, "{}");
    run_due(&mut e);
    let r = row(&e, &arn);
    assert_eq!(r.status, ExecutionStatus::TimedOut, "the execution's deadline passed before the result came: {r:?}");
}

// ---------------------------------------------------------------------------
// Retry timing

fn retry_definition(retrier: Value) -> Value {
    json!({"StartAt": "Call", "States": {"Call": {
        "Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
        "Parameters": {"FunctionName": "fail", "Payload": {"error": "Scanner.Offline", "cause": "down"}},
        "Retry": [retrier], "End": true}}})
}

/// Seconds between consecutive TaskScheduled events of a run on the shell's virtual clock.
fn scheduled_gaps(retrier: Value) -> (Vec<f64>, ExecutionSummary) {
    let mut e = engine(TaskRunner::new());
    let arn = start(&mut e, &retry_definition(retrier), &json!({}));
    let r = settle(&mut e, &arn);
    let at: Vec<DateTime<Utc>> =
        history(&e, &arn).into_iter().filter(|ev| ev.event_type == "TaskScheduled").map(|ev| ev.timestamp).collect();
    assert_eq!(at[0], t0());
    let gaps = at.windows(2).map(|w| (w[1] - w[0]).num_milliseconds() as f64 / 1000.0).collect();
    (gaps, r)
}

#[test]
fn retry_backoff_schedules_attempts_at_2_6_and_18_seconds() {
    let (gaps, r) = scheduled_gaps(json!({"ErrorEquals": ["States.ALL"], "IntervalSeconds": 2, "BackoffRate": 3, "MaxAttempts": 3}));
    assert_eq!(gaps, vec![2.0, 6.0, 18.0]);
    assert_eq!((r.status, r.error.as_deref(), r.cause.as_deref()), (ExecutionStatus::Failed, Some("Scanner.Offline"), Some("down")));
    assert_eq!(r.stop, Some(t0() + Duration::seconds(26)));
}

#[test]
fn next_wake_follows_the_backoff_in_the_core() {
    let def = Definition::parse(&retry_definition(
        json!({"ErrorEquals": ["Scanner.Offline"], "IntervalSeconds": 2, "BackoffRate": 3, "MaxAttempts": 3}),
    ))
    .expect("def");
    let mut st = ExecState::new(info(json!({})), 7);
    let mut now = t0();
    let mut step = apply(&mut st, &def, Input::Start, &env(now)).expect("start");
    let mut wakes = vec![];
    loop {
        let Some(Effect::RunTask(req)) = step.effects.first().cloned() else { panic!("expected a task: {step:?}") };
        assert_eq!(req.attempt as usize, wakes.len(), "attempt number");
        let err = TaskError { error: "Scanner.Offline".into(), cause: "down".into() };
        apply(&mut st, &def, Input::TaskResult { task_id: req.task_id, result: Err(err) }, &env(now)).expect("result");
        let Some(w) = st.next_wake() else { break };
        wakes.push((w - now).num_milliseconds());
        // Nothing happens just before the instant.
        let early = apply(&mut st, &def, Input::Wake, &env(w - Duration::milliseconds(1))).expect("early wake");
        assert!(early.events.is_empty() && early.effects.is_empty(), "woke early: {early:?}");
        now = w;
        step = apply(&mut st, &def, Input::Wake, &env(now)).expect("wake");
    }
    assert_eq!(wakes, vec![2000, 6000, 18000]);
    assert_eq!(st.status, ExecutionStatus::Failed);
}

#[test]
fn max_delay_seconds_caps_the_backoff() {
    let (gaps, r) = scheduled_gaps(
        json!({"ErrorEquals": ["States.ALL"], "IntervalSeconds": 2, "BackoffRate": 3, "MaxAttempts": 4, "MaxDelaySeconds": 5}),
    );
    assert_eq!(gaps, vec![2.0, 5.0, 5.0, 5.0]);
    assert_eq!(r.status, ExecutionStatus::Failed);
}

#[test]
fn full_jitter_stays_within_zero_and_the_delay() {
    let def = Definition::parse(&retry_definition(
        json!({"ErrorEquals": ["States.ALL"], "IntervalSeconds": 2, "BackoffRate": 3, "MaxAttempts": 3, "JitterStrategy": "FULL"}),
    ))
    .expect("def");
    let capped = Definition::parse(&retry_definition(json!({"ErrorEquals": ["States.ALL"], "IntervalSeconds": 2, "BackoffRate": 3,
        "MaxAttempts": 3, "MaxDelaySeconds": 3, "JitterStrategy": "FULL"})))
    .expect("def");
    let mut seen = std::collections::BTreeSet::new();
    for (d, bounds) in [(&def, [2000i64, 6000, 18000]), (&capped, [2000, 3000, 3000])] {
        for seed in 0..60u64 {
            let mut st = ExecState::new(info(json!({})), seed);
            let mut now = t0();
            let mut step = apply(&mut st, d, Input::Start, &env(now)).expect("start");
            let mut i = 0;
            while let Some(Effect::RunTask(req)) = step.effects.first().cloned() {
                let err = TaskError { error: "Scanner.Offline".into(), cause: String::new() };
                apply(&mut st, d, Input::TaskResult { task_id: req.task_id, result: Err(err) }, &env(now)).expect("result");
                let Some(w) = st.next_wake() else { break };
                let delay = (w - now).num_milliseconds();
                assert!((0..=bounds[i]).contains(&delay), "seed {seed}, retry {i}: delay {delay} ms outside [0, {}]", bounds[i]);
                seen.insert((i, delay));
                now = w;
                step = apply(&mut st, d, Input::Wake, &env(now)).expect("wake");
                i += 1;
            }
            assert_eq!(i, 3, "seed {seed}: three retries");
            assert_eq!(st.status, ExecutionStatus::Failed);
        }
    }
    // Jitter really randomises: many distinct delays, and not simply the full delay.
    assert!(seen.len() > 100, "only {} distinct (retry, delay) pairs", seen.len());
    assert!(seen.iter().any(|(i, d)| *i == 2 && *d < 9000), "no third-retry delay below half of 18 s");
}

// ---------------------------------------------------------------------------
// Stop and execution timeout

#[test]
fn stop_aborts_every_token_of_a_map_waiting_on_callbacks() {
    let mut e = engine(TaskRunner::new());
    let def = json!({"StartAt": "Series", "States": {"Series": {
        "Type": "Map", "ItemsPath": "$.series",
        "ItemProcessor": {"StartAt": "Read", "States": {"Read": {
            "Type": "Task", "Resource": SQS_CALLBACK, "Parameters": {"series.$": "$", "token.$": "$$.Task.Token"}, "End": true}}},
        "End": true}}});
    let arn = start(&mut e, &def, &json!({"series": ["T1", "T2", "T3"]}));
    let tokens = pending_tokens(&e, &arn);
    assert_eq!(tokens.len(), 3, "every iteration waits on its own token");
    advance(&mut e, 30.0);
    let stopped = e.stop_execution(&arn, Some("Ops.Cancelled".into()), Some("patient withdrew".into())).expect("stop");
    assert_eq!(stopped.status, ExecutionStatus::Aborted);
    assert_eq!(stopped.error.as_deref(), Some("Ops.Cancelled"));
    assert_eq!(stopped.stop, Some(t0() + Duration::seconds(30)));
    for tok in &tokens {
        let t = e.store.token(tok).expect("t").expect("t");
        assert_eq!(t.status, "ABORTED", "token of {}", t.parameters);
        assert_eq!(t.closed, Some(t0() + Duration::seconds(30)));
    }
    assert!(pending_tokens(&e, &arn).is_empty());
    let last = history(&e, &arn).pop().expect("events");
    assert_eq!(last.event_type, "ExecutionAborted");
    assert_eq!(last.details["error"], "Ops.Cancelled");
    assert_eq!(last.details["cause"], "patient withdrew");
    // Completing an aborted token is refused and changes nothing.
    assert!(e.send_task_success(&tokens[0], "{}").is_err());
    assert!(matches!(e.stop_execution(&arn, None, None), Err(EngineError::Apply(ApplyError::NotRunning(_)))));
    assert_eq!(row(&e, &arn).status, ExecutionStatus::Aborted);
    assert_eq!(e.store.next_timer().expect("timers"), None, "a stopped execution keeps no timer");
}

#[test]
fn machine_timeout_seconds_times_the_execution_out() {
    let mut e = engine(TaskRunner::new());
    let def = json!({"TimeoutSeconds": 10, "StartAt": "Pause", "States": {
        "Pause": {"Type": "Wait", "Seconds": 3, "Next": "Review"},
        "Review": {"Type": "Task", "Resource": SQS_CALLBACK, "Parameters": {"t.$": "$$.Task.Token"}, "End": true}}});
    let arn = start(&mut e, &def, &json!({}));
    advance(&mut e, 9.999);
    assert_eq!(row(&e, &arn).status, ExecutionStatus::Running);
    let tok = pending_tokens(&e, &arn).pop().expect("token after the wait");
    let r = settle(&mut e, &arn);
    assert_eq!(r.status, ExecutionStatus::TimedOut);
    assert_eq!(r.error.as_deref(), Some("States.Timeout"));
    assert_eq!(r.stop, Some(t0() + Duration::seconds(10)));
    let last = history(&e, &arn).pop().expect("events");
    assert_eq!(last.event_type, "ExecutionTimedOut");
    assert_eq!(last.timestamp, t0() + Duration::seconds(10));
    assert_ne!(e.store.token(&tok).expect("t").expect("t").status, "PENDING", "the timed-out execution's token is closed");
    assert!(e.send_task_success(&tok, "{}").is_err());
}

// ---------------------------------------------------------------------------
// Outbox

#[test]
fn outbox_rows_are_written_with_their_events() {
    let mut e = engine(TaskRunner::new());
    let sm = e
        .create_state_machine(
            "Outbox",
            &json!({"StartAt": "Route", "States": {
                "Route": {"Type": "Choice", "Choices": [{"Variable": "$.review", "BooleanEquals": true, "Next": "Review"}], "Default": "Done"},
                "Review": {"Type": "Task", "Resource": SQS_CALLBACK, "Parameters": {"t.$": "$$.Task.Token"}, "End": true},
                "Done": {"Type": "Pass", "End": true}}})
            .to_string(),
            None,
        )
        .expect("create");
    let quick = e.start_execution(&sm.arn, Some("quick"), "{\"review\": false}").expect("start").arn;
    let slow = e.start_execution(&sm.arn, Some("slow"), "{\"review\": true}").expect("start").arn;
    let tok = pending_tokens(&e, &slow).pop().expect("token");
    e.send_task_failure(&tok, Some("Review.Rejected"), Some("no")).expect("reject");

    let rows = e.store.outbox(false, 10_000).expect("outbox");
    let topic = |t: &str| match t {
        "ExecutionStarted" | "ExecutionSucceeded" | "ExecutionFailed" | "ExecutionAborted" | "ExecutionTimedOut" | "ExecutionRedriven" => {
            Some("execution")
        }
        "TaskSubmitted" | "TaskSucceeded" | "TaskFailed" | "TaskTimedOut" => Some("task"),
        _ => None,
    };
    for (arn, want) in [
        (&quick, vec!["ExecutionStarted", "ExecutionSucceeded"]),
        (&slow, vec!["ExecutionStarted", "TaskSubmitted", "TaskFailed", "ExecutionFailed"]),
    ] {
        let events = history(&e, arn);
        let mine: Vec<_> = rows.iter().filter(|r| &r.execution_arn == arn).collect();
        let got: Vec<&str> = mine
            .iter()
            .map(|r| events.iter().find(|ev| ev.id == r.event_id).expect("outbox row names a history event").event_type.as_str())
            .collect();
        assert_eq!(got, want, "{arn}");
        for r in &mine {
            let ev = events.iter().find(|ev| ev.id == r.event_id).expect("event");
            let payload: Value = serde_json::from_str(&r.payload).expect("payload json");
            assert_eq!(payload["resources"], json!([arn]));
            assert_eq!(payload["id"], json!(format!("{arn}#{}", ev.id)));
            assert_eq!(payload["detail"]["executionArn"], json!(arn));
            if ev.event_type.starts_with("Execution") {
                assert_eq!(payload["detail-type"], "Step Functions Execution Status Change");
            } else {
                assert_eq!(payload["detail"]["historyEventType"], json!(ev.event_type));
            }
            assert_eq!(Some(r.topic.as_str()), topic(&ev.event_type));
        }
        // Every event that has a topic has its row, and only those do.
        let expected_ids: Vec<i64> = events.iter().filter(|ev| topic(&ev.event_type).is_some()).map(|ev| ev.id).collect();
        assert_eq!(mine.iter().map(|r| r.event_id).collect::<Vec<_>>(), expected_ids, "{arn}");
    }
    // Rows are in commit order: ids grow.
    assert!(rows.windows(2).all(|w| w[0].id < w[1].id));
}

#[test]
fn a_step_that_loses_its_commit_writes_neither_events_nor_outbox_rows() {
    let mut e = engine(TaskRunner::new());
    let def = json!({"StartAt": "Review", "States": {"Review": {"Type": "Task", "Resource": SQS_CALLBACK, "Parameters": {"t.$": "$$.Task.Token"}, "End": true}}});
    let arn = start(&mut e, &def, &json!({}));
    let before_events = history(&e, &arn).len();
    let before_outbox = e.store.outbox(false, 10_000).expect("outbox").len();
    let loaded = e.store.load(&arn).expect("load").expect("exists");
    let parsed = Definition::parse_str(&loaded.definition).expect("def");
    let mut st = loaded.state.clone();
    let step = apply(&mut st, &parsed, Input::Stop { error: Some("E".into()), cause: None }, &env(e.clock.now())).expect("stop");
    assert_eq!(step.events.len(), 1);
    // Another process applied a step first: this one is refused as a whole.
    assert!(e.store.commit_step(&st, loaded.version - 1, &step).is_err(), "a stale version must not commit");
    assert_eq!(history(&e, &arn).len(), before_events);
    assert_eq!(e.store.outbox(false, 10_000).expect("outbox").len(), before_outbox);
    assert_eq!(row(&e, &arn).status, ExecutionStatus::Running);
    // At the right version the event and its outbox row land together.
    e.store.commit_step(&st, loaded.version, &step).expect("commit");
    let events = history(&e, &arn);
    assert_eq!(events.len(), before_events + 1);
    let rows = e.store.outbox(false, 10_000).expect("outbox");
    assert_eq!(rows.len(), before_outbox + 1);
    let last = rows.last().expect("row");
    assert_eq!((last.execution_arn.as_str(), last.event_id), (arn.as_str(), events.last().expect("event").id));
    assert_eq!(row(&e, &arn).status, ExecutionStatus::Aborted);
}

// ---------------------------------------------------------------------------
// Payload and history limits

#[test]
fn a_result_over_256_kib_fails_with_data_limit_exceeded_even_under_catch_all() {
    // A Pass state whose Result is over the limit.
    let big = "x".repeat(256 * 1024 + 1);
    let def = json!({"StartAt": "Big", "States": {"Big": {"Type": "Pass", "Result": big, "End": true}}});
    let out = ephemeral::run(&def.to_string(), "{}", RunOptions { start: t0(), ..RunOptions::default() }).expect("run");
    assert_eq!(out["status"], "FAILED");
    assert_eq!(out["error"], "States.DataLimitExceeded");
    // Just under the limit is fine.
    let fits = "x".repeat(256 * 1024 - 2);
    let def = json!({"StartAt": "Big", "States": {"Big": {"Type": "Pass", "Result": fits, "End": true}}});
    let out = ephemeral::run(&def.to_string(), "{}", RunOptions { start: t0(), ..RunOptions::default() }).expect("run");
    assert_eq!(out["status"], "SUCCEEDED");

    // A task result over the limit: States.ALL does not catch States.DataLimitExceeded.
    let mut tasks = TaskRunner::new();
    tasks.register("bloat", |_| Ok(json!({"blob": "z".repeat(300 * 1024)})));
    let mut e = engine(tasks);
    let def = json!({"StartAt": "Call", "States": {
        "Call": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke", "Parameters": {"FunctionName": "bloat"},
                 "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Caught"}], "End": true},
        "Caught": {"Type": "Pass", "End": true}}});
    let arn = start(&mut e, &def, &json!({}));
    let r = settle(&mut e, &arn);
    assert_eq!((r.status, r.error.as_deref()), (ExecutionStatus::Failed, Some("States.DataLimitExceeded")));
    assert!(!types(&e, &arn).contains(&"PassStateEntered".to_string()), "the Catch must not run");
}

#[test]
fn an_input_over_256_kib_is_refused_at_start() {
    let mut e = engine(TaskRunner::new());
    let sm = e
        .create_state_machine("Limits", &json!({"StartAt": "P", "States": {"P": {"Type": "Pass", "End": true}}}).to_string(), None)
        .expect("sm");
    // A JSON string of exactly 256 KiB (quotes included) is accepted; one byte more is not.
    let exact = serde_json::to_string(&"y".repeat(256 * 1024 - 2)).expect("json");
    assert_eq!(exact.len(), 256 * 1024);
    let ok = e.start_execution(&sm.arn, Some("exact"), &exact).expect("an input of exactly 256 KiB");
    assert_eq!(ok.status, ExecutionStatus::Succeeded);
    let over = serde_json::to_string(&"y".repeat(256 * 1024 - 1)).expect("json");
    match e.start_execution(&sm.arn, Some("over"), &over) {
        Err(EngineError::InvalidInput(m)) => assert!(m.contains("256 KiB"), "{m}"),
        other => panic!("an input over 256 KiB must be refused: {other:?}"),
    }
    assert!(e.store.execution(&lightbox::engine::execution_arn("Limits", "over")).expect("read").is_none(), "nothing was stored");
    // The same limit applies to a task result sent back with a token.
    let sm2 = e
        .create_state_machine(
            "Limits2",
            &json!({"StartAt": "R", "States": {"R": {"Type": "Task", "Resource": SQS_CALLBACK, "Parameters": {"t.$": "$$.Task.Token"}, "End": true}}})
                .to_string(),
            None,
        )
        .expect("sm");
    let arn = e.start_execution(&sm2.arn, Some("cb"), "{}").expect("start").arn;
    let tok = pending_tokens(&e, &arn).pop().expect("token");
    assert!(matches!(e.send_task_success(&tok, &over), Err(EngineError::InvalidOutput(_))));
    assert_eq!(pending_tokens(&e, &arn), vec![tok], "the token still waits");
}

#[test]
fn an_endless_pass_loop_fails_with_states_runtime_instead_of_hanging() {
    let def = json!({"StartAt": "A", "States": {
        "A": {"Type": "Pass", "Next": "B"},
        "B": {"Type": "Pass", "Next": "A"}}});
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let out = ephemeral::run(&def.to_string(), "{}", RunOptions { start: t0(), history: true, ..RunOptions::default() });
        let _ = tx.send(out.map_err(|e| e.to_string()));
    });
    let out = rx.recv_timeout(std::time::Duration::from_secs(120)).expect("the run must end within 120 s").expect("run");
    assert_eq!(out["status"], "FAILED");
    assert_eq!(out["error"], "States.Runtime");
    let events = out["events"].as_array().expect("events");
    assert_eq!(events.last().expect("last")["type"], "ExecutionFailed");
    assert!(events.len() > 20_000, "the loop ran until the history limit: {} events", events.len());
    assert!(events.len() <= 25_001, "history has {} events", events.len());
}

#[test]
fn the_history_limit_failure_stays_within_25000_events() {
    let def = json!({"StartAt": "A", "States": {"A": {"Type": "Pass", "Next": "B"}, "B": {"Type": "Pass", "Next": "A"}}});
    let out = ephemeral::run(&def.to_string(), "{}", RunOptions { start: t0(), history: true, ..RunOptions::default() }).expect("run");
    assert_eq!(out["error"], "States.Runtime");
    let n = out["events"].as_array().expect("events").len();
    assert!(n <= 25_000, "history must stay within the 25,000-event limit, has {n}");
}

// ---------------------------------------------------------------------------
// Wait + Assign

#[test]
fn assign_on_a_wait_state_is_applied_after_the_wait() {
    // Regression: the Assign of a Wait that really waits used to be dropped (fixed in 270e911).
    for seconds in [0, 3] {
        let def = json!({"StartAt": "Hold", "States": {
            "Hold": {"Type": "Wait", "Seconds": seconds, "Assign": {"held": "yes", "n.$": "$.n"}, "Next": "Show"},
            "Show": {"Type": "Pass", "Parameters": {"held.$": "$held", "n.$": "$n"}, "End": true}}});
        let out = ephemeral::run(&def.to_string(), "{\"n\": 7}", RunOptions { start: t0(), ..RunOptions::default() }).expect("run");
        assert_eq!(out["status"], "SUCCEEDED", "Seconds {seconds}: {out}");
        assert_eq!(out["output"], json!({"held": "yes", "n": 7}), "Seconds {seconds}");
        let def = json!({"QueryLanguage": "JSONata", "StartAt": "Hold", "States": {
            "Hold": {"Type": "Wait", "Seconds": seconds, "Assign": {"held": "yes", "n": "{% $states.input.n %}"}, "Next": "Show"},
            "Show": {"Type": "Pass", "Output": {"held": "{% $held %}", "n": "{% $n %}"}, "End": true}}});
        let out = ephemeral::run(&def.to_string(), "{\"n\": 7}", RunOptions { start: t0(), ..RunOptions::default() }).expect("run");
        assert_eq!(out["output"], json!({"held": "yes", "n": 7}), "JSONata, Seconds {seconds}: {out}");
    }
}

// ---------------------------------------------------------------------------
// The parser never panics

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vec![
            "Type", "Next", "End", "States", "StartAt", "Choices", "Branches", "ItemProcessor", "Iterator", "ProcessorConfig", "Mode",
            "Retry", "Catch", "ErrorEquals", "Variable", "StringEquals", "StringMatches", "NumericLessThanPath", "IsPresent", "And", "Or",
            "Not", "Default", "Condition", "Parameters", "Arguments", "Output", "Assign", "ResultPath", "InputPath", "OutputPath",
            "ResultSelector", "ItemsPath", "Items", "ItemSelector", "ItemReader", "ItemBatcher", "ResultWriter", "MaxConcurrency",
            "MaxConcurrencyPath", "ToleratedFailureCount", "ToleratedFailurePercentagePath", "Seconds", "SecondsPath", "Timestamp",
            "TimestampPath", "TimeoutSeconds", "TimeoutSecondsPath", "HeartbeatSeconds", "HeartbeatSecondsPath", "Resource",
            "QueryLanguage", "Comment", "Version", "IntervalSeconds", "BackoffRate", "MaxAttempts", "MaxDelaySeconds", "JitterStrategy",
            "Error", "ErrorPath", "Cause", "CausePath", "Result", "Label", "A", "B", "x.$", "y",
        ]).prop_map(str::to_string),
        1 => "[A-Za-z.$]{0,6}",
    ]
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        (-1e6f64..1e6).prop_map(Value::from),
        prop::sample::select(vec![
            "Pass",
            "Task",
            "Choice",
            "Wait",
            "Succeed",
            "Fail",
            "Parallel",
            "Map",
            "JSONata",
            "JSONPath",
            "INLINE",
            "DISTRIBUTED",
            "FULL",
            "NONE",
            "A",
            "B",
            "$",
            "$.a",
            "$.a[0]",
            "$$.Map.Item.Value",
            "$x",
            "$.items[*]",
            "{% $states.input %}",
            "{% 1 + %}",
            "States.ALL",
            "States.Format('{}', $.a)",
            "States.Array(",
            "arn:aws:states:::lambda:invoke",
            "arn:aws:states:::sqs:sendMessage.waitForTaskToken",
            "2024-01-01T00:00:00Z",
            "not-a-date",
            "",
        ])
        .prop_map(|s| Value::String(s.to_string())),
        "\\PC{0,8}".prop_map(Value::String),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(8, 128, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((key(), inner), 0..7).prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// Something shaped like a machine: StartAt, and States whose fields are random.
fn machine_like() -> impl Strategy<Value = Value> {
    let state = (
        prop::sample::select(vec!["Pass", "Task", "Choice", "Wait", "Succeed", "Fail", "Parallel", "Map", "Bogus"]),
        prop::collection::vec((key(), json_value()), 0..5),
        prop::option::of(prop::sample::select(vec!["A", "B", "C", "Missing"])),
        any::<bool>(),
    );
    let states = prop::collection::vec((prop::sample::select(vec!["A", "B", "C"]), state), 1..4);
    (states, prop::option::of(prop::sample::select(vec!["A", "B", "Z"])), prop::option::of(json_value())).prop_map(
        |(states, start, extra)| {
            let mut m = Map::new();
            for (name, (ty, fields, next, end)) in states {
                let mut s: Map<String, Value> = fields.into_iter().collect();
                s.insert("Type".into(), json!(ty));
                if let Some(n) = next {
                    s.insert("Next".into(), json!(n));
                }
                if end {
                    s.insert("End".into(), json!(true));
                }
                m.insert(name.to_string(), Value::Object(s));
            }
            let mut root = json!({"States": m});
            if let Some(s) = start {
                root["StartAt"] = json!(s);
            }
            if let Some(x) = extra {
                root["Comment"] = x;
            }
            root
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn parse_never_panics_on_arbitrary_json(v in json_value()) {
        let _ = Definition::parse(&v);
        let _ = Definition::parse_str(&v.to_string());
    }

    #[test]
    fn parse_never_panics_on_machine_shaped_json(v in machine_like()) {
        let _ = Definition::parse(&v);
        // Nest it as a Parallel branch and as a Map processor too.
        let nested = json!({"StartAt": "P", "States": {
            "P": {"Type": "Parallel", "Branches": [v.clone()], "Next": "M"},
            "M": {"Type": "Map", "ItemProcessor": v, "End": true}}});
        let _ = Definition::parse(&nested);
    }

    #[test]
    fn parse_str_never_panics_on_arbitrary_text(s in "\\PC{0,200}") {
        let _ = Definition::parse_str(&s);
    }

    #[test]
    fn parse_str_never_panics_on_damaged_definitions(cut in 0usize..2000, junk in "[{}\\[\\]\":,$.A-Za-z0-9 ]{0,6}") {
        let text = determinism_definition().raw.to_string();
        let at = cut.min(text.len());
        let at = (0..=at).rev().find(|i| text.is_char_boundary(*i)).unwrap_or(0);
        let damaged = format!("{}{}{}", &text[..at], junk, &text[at..].get(junk.len().min(text.len() - at)..).unwrap_or(""));
        let _ = Definition::parse_str(&damaged);
    }
}

#[test]
fn parse_survives_the_deepest_nesting_json_text_allows() {
    // serde_json refuses text nested deeper than 128; go as deep as it allows.
    let mut depth = 0;
    let mut m = json!({"StartAt": "L", "States": {"L": {"Type": "Pass", "End": true}}});
    loop {
        let deeper = json!({"StartAt": "P", "States": {"P": {"Type": "Parallel", "Branches": [m.clone()], "End": true}}});
        if serde_json::from_str::<Value>(&deeper.to_string()).is_err() {
            break;
        }
        m = deeper;
        depth += 1;
    }
    assert!(depth > 20, "{depth}");
    let text = m.to_string();
    let d = Definition::parse_str(&text).expect("deep parallel parses");
    assert_eq!(d.scopes.len(), depth + 1);
    let out = ephemeral::run(&text, "{\"a\": 1}", RunOptions { start: t0(), ..RunOptions::default() }).expect("run");
    assert_eq!(out["status"], "SUCCEEDED", "{out}");

    // A Choice rule nested as deep as the text allows.
    let mut rule = json!({"Variable": "$.a", "IsPresent": true});
    let mut nots = 0;
    loop {
        let deeper = json!({"Not": rule.clone()});
        let mut c = deeper.clone();
        c["Next"] = json!("E");
        let def = json!({"StartAt": "C", "States": {"C": {"Type": "Choice", "Choices": [c], "Default": "E"}, "E": {"Type": "Succeed"}}});
        if serde_json::from_str::<Value>(&def.to_string()).is_err() {
            break;
        }
        rule = deeper;
        nots += 1;
    }
    let mut c = rule;
    c["Next"] = json!("E");
    let text =
        json!({"StartAt": "C", "States": {"C": {"Type": "Choice", "Choices": [c], "Default": "E"}, "E": {"Type": "Succeed"}}}).to_string();
    assert!(Definition::parse_str(&text).is_ok(), "{nots} nested Not");
    let out = ephemeral::run(&text, "{\"a\": 1}", RunOptions { start: t0(), ..RunOptions::default() }).expect("run");
    assert_eq!(out["status"], "SUCCEEDED", "{out}");
}

// ---------------------------------------------------------------------------
// Fair progress: the work of one step is bounded

fn fan_definition(distributed: bool) -> Definition {
    let mut processor = json!({"StartAt": "P", "States": {"P": {"Type": "Pass", "End": true}}});
    if distributed {
        processor["ProcessorConfig"] = json!({"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"});
    }
    Definition::parse(
        &json!({"StartAt": "Fan", "States": {"Fan": {"Type": "Map", "ItemsPath": "$.items", "ItemProcessor": processor, "End": true}}}),
    )
    .expect("definition")
}

/// Apply `Start`, then `Wake` while a sliced step left work, all at `now`: every step's events.
fn run_slices(def: &Definition, st: &mut ExecState, now: DateTime<Utc>) -> Vec<Step> {
    let mut steps = vec![apply(st, def, Input::Start, &env(now)).expect("start")];
    while st.status == ExecutionStatus::Running {
        assert_eq!(st.next_wake(), Some(now), "a step that stopped with work left is due again at once");
        steps.push(apply(st, def, Input::Wake, &env(now)).expect("wake"));
        assert!(steps.len() < 10_000, "the fan-out never ended");
    }
    steps
}

/// Most events one step may write for a fan-out of `n` items: a slice of work is at most
/// `SLICE` units (or n/2 for a larger fan-out), each unit writing at most a few events.
fn step_events(n: usize) -> usize {
    4 * (lightbox::engine::core::SLICE as usize).max(n / 2)
}

#[test]
fn a_map_over_thousands_of_items_is_committed_in_bounded_steps_with_the_same_history() {
    // Seen: one step ran a whole Map over tens of thousands of items (tens of seconds, in
    // which nothing else ran). Now each step does a bounded slice and the next goes on.
    let def = fan_definition(false);
    let n = 3_000;
    let items: Vec<usize> = (0..n).collect();
    let mut st = ExecState::new(info(json!({"items": items})), 7);
    let steps = run_slices(&def, &mut st, t0());
    assert_eq!(st.status, ExecutionStatus::Succeeded);
    assert_eq!(st.output, Some(json!(items)));
    assert!(steps.len() >= 4, "3,000 iterations took {} step(s)", steps.len());
    for (i, s) in steps.iter().enumerate() {
        assert!(s.events.len() <= step_events(n), "step {i} wrote {} events", s.events.len());
    }
    // Slicing changes where steps end, not what happens: one unbounded step writes the same history.
    let mut whole = ExecState::new(info(json!({"items": items})), 7);
    let one = apply(&mut whole, &def, Input::Start, &Env { slice: u32::MAX, ..env(t0()) }).expect("start");
    assert_eq!(whole.status, ExecutionStatus::Succeeded);
    let sliced: Vec<(i64, String, Value)> =
        steps.iter().flat_map(|s| s.events.iter().map(|e| (e.id, e.event_type.clone(), e.details.clone()))).collect();
    let unsliced: Vec<(i64, String, Value)> = one.events.iter().map(|e| (e.id, e.event_type.clone(), e.details.clone())).collect();
    assert_eq!(sliced.len(), 4 * n + 6);
    assert!(sliced == unsliced, "the sliced history differs from the unsliced one");
    // And replaying the same inputs gives the same steps.
    let mut again = ExecState::new(info(json!({"items": items})), 7);
    let replay = run_slices(&def, &mut again, t0());
    assert_eq!(replay.iter().map(|s| s.events.len()).collect::<Vec<_>>(), steps.iter().map(|s| s.events.len()).collect::<Vec<_>>());
}

#[test]
fn a_stop_between_slices_stops_the_fan_out() {
    let def = fan_definition(false);
    let mut st = ExecState::new(info(json!({"items": (0..3_000).collect::<Vec<usize>>()})), 7);
    let first = apply(&mut st, &def, Input::Start, &env(t0())).expect("start");
    let started = first.events.iter().filter(|e| e.event_type == "MapIterationStarted").count();
    assert!(started > 0 && started < 3_000, "the first step started {started} iterations");
    assert!(st.next_wake().is_some(), "the rest is due");
    let stop = apply(&mut st, &def, Input::Stop { error: Some("Op.Stop".into()), cause: None }, &env(t0())).expect("stop");
    assert_eq!(st.status, ExecutionStatus::Aborted);
    assert_eq!(stop.events.last().map(|e| e.event_type.as_str()), Some("ExecutionAborted"));
    assert!(!stop.events.iter().any(|e| e.event_type == "MapIterationStarted"), "no iteration starts after the stop");
    assert_eq!(st.next_wake(), None, "nothing is left to do");
    let after = apply(&mut st, &def, Input::Wake, &env(t0())).expect("a late wake does nothing");
    assert!(after.events.is_empty());
}

#[test]
fn a_fan_out_reaching_the_history_limit_fails_in_bounded_steps() {
    // 10,000 inline iterations write four events each: the execution fails at the 25,000-event
    // limit, having written about 25,000 events in steps of bounded size.
    let def = fan_definition(false);
    let mut st = ExecState::new(info(json!({"items": (0..10_000).collect::<Vec<usize>>()})), 7);
    let steps = run_slices(&def, &mut st, t0());
    assert_eq!(st.status, ExecutionStatus::Failed);
    assert_eq!(st.error.as_deref(), Some("States.Runtime"));
    let events: usize = steps.iter().map(|s| s.events.len()).sum();
    assert!((24_000..=25_000).contains(&events), "{events} events");
    assert!(steps.iter().all(|s| s.events.len() <= step_events(10_000)));
    assert!(steps.len() <= events / 1_000 + 10, "{} steps for {events} events: work is not proportional to the events", steps.len());
}

#[test]
fn a_distributed_map_over_tens_of_thousands_of_items_succeeds_in_bounded_steps() {
    // Distributed iterations write no history, so only slicing bounds their steps.
    let def = fan_definition(true);
    let n = 20_000;
    let mut st = ExecState::new(info(json!({"items": (0..n).collect::<Vec<usize>>()})), 7);
    let steps = run_slices(&def, &mut st, t0());
    assert_eq!(st.status, ExecutionStatus::Succeeded);
    assert_eq!(st.output.as_ref().and_then(Value::as_array).map(Vec::len), Some(n));
    // Three units an item (start, enter, exit), n/2 a step.
    assert!((5..=10).contains(&steps.len()), "{} steps", steps.len());
}

#[test]
fn the_engine_drives_a_sliced_fan_out_to_its_end_and_other_executions_between_its_steps() {
    let mut e = engine(TaskRunner::new());
    let fan = json!({"StartAt": "Fan", "States": {"Fan": {"Type": "Map", "ItemsPath": "$.items", "End": true,
        "ItemProcessor": {"ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"}, "StartAt": "P", "States": {"P": {"Type": "Pass", "End": true}}}}}});
    let arn = start(&mut e, &fan, &json!({"items": (0..5_000).collect::<Vec<usize>>()}));
    assert_eq!(row(&e, &arn).status, ExecutionStatus::Running, "StartExecution returns after the first slice");
    let quick = e.create_state_machine("Quick", r#"{"StartAt":"P","States":{"P":{"Type":"Pass","End":true}}}"#, None).expect("quick");
    let q = e.start_execution(&quick.arn, Some("q"), "{}").expect("start quick");
    assert_eq!(q.status, ExecutionStatus::Succeeded, "another execution runs to its end while the fan-out is between slices");
    let r = settle(&mut e, &arn);
    assert_eq!(r.status, ExecutionStatus::Succeeded);
    assert_eq!(output(&r).as_array().map(Vec::len), Some(5_000));
}

#[test]
fn a_fan_out_that_fails_midway_is_redriven_in_bounded_steps_from_where_it_failed() {
    // Item 1,500 fails on the first run only: the Map fails midway through its slices, and
    // redrive reruns that item and the 1,499 never started, in slices again.
    let def = Definition::parse(&json!({"StartAt": "Fan", "States": {"Fan": {"Type": "Map", "ItemsPath": "$.items", "End": true,
        "ItemProcessor": {"StartAt": "Check", "States": {
            // No rule matches item 1,500 before a redrive: States.NoChoiceMatched, at Check,
            // where a redrive resumes it.
            "Check": {"Type": "Choice", "Choices": [{"Not": {"And": [
                {"Variable": "$", "NumericEquals": 1500},
                {"Variable": "$$.Execution.RedriveCount", "NumericEquals": 0}]}, "Next": "Ok"}]},
            "Ok": {"Type": "Pass", "End": true}}}}}}))
    .expect("definition");
    let n = 3_000;
    let mut st = ExecState::new(info(json!({"items": (0..n).collect::<Vec<usize>>()})), 7);
    let first = run_slices(&def, &mut st, t0());
    assert_eq!(st.status, ExecutionStatus::Failed);
    assert_eq!(st.error.as_deref(), Some("States.NoChoiceMatched"));
    assert!(first.len() >= 2, "the failure came after {} step(s)", first.len());
    let started = |steps: &[Step]| steps.iter().flat_map(|s| &s.events).filter(|e| e.event_type == "MapIterationStarted").count();
    assert_eq!(started(&first), 1_501);
    let later = t0() + Duration::seconds(60);
    let mut redriven = vec![apply(&mut st, &def, Input::Redrive, &env(later)).expect("redrive")];
    while st.status == ExecutionStatus::Running {
        redriven.push(apply(&mut st, &def, Input::Wake, &env(later)).expect("wake"));
        assert!(redriven.len() < 1_000);
    }
    assert_eq!(st.status, ExecutionStatus::Succeeded);
    assert_eq!(started(&redriven), 1_500, "only the failed item and those never started run");
    assert!(redriven.len() >= 2 && redriven.iter().all(|s| s.events.len() <= step_events(n)));
    assert_eq!(st.output.as_ref().and_then(Value::as_array).map(Vec::len), Some(n));
}
