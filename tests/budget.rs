//! The step budget: a step that passes its evaluation or wall-clock budget fails its own
//! execution with `Lightbox.BudgetExceeded`, naming the state and the budget; the engine goes
//! on with the next execution.

use lightbox::engine::tasks::TaskRunner;
use lightbox::engine::{BUDGET_EXCEEDED, Clock, Engine, StepBudget};
use lightbox::history::ExecutionStatus;
use lightbox::store::Store;

const HEAVY: &str = r#"{"QueryLanguage":"JSONata","StartAt":"Light","States":{
  "Light":{"Type":"Pass","Output":"{% $count([1..100]) %}","Next":"Heavy"},
  "Heavy":{"Type":"Pass","Output":"{% $count([1..2000].([1..2000].($ + 1))) %}","End":true}}}"#;
const LIGHT: &str = r#"{"StartAt":"Only","States":{"Only":{"Type":"Pass","Result":{"ok":true},"End":true}}}"#;

fn engine(budget: StepBudget) -> Engine {
    let mut e = Engine::new(Store::in_memory().expect("store"), TaskRunner::new(), Clock::Real);
    e.budget = budget;
    e.create_state_machine("heavy", HEAVY, None).expect("heavy");
    e.create_state_machine("light", LIGHT, None).expect("light");
    e
}

#[test]
fn a_step_over_its_evaluation_budget_fails_naming_the_state_and_the_budget() {
    let mut e = engine(StepBudget { step_budget: 200_000, step_wall_ms: 600_000 });
    let r = e.start_execution("heavy", Some("h"), "{}").expect("start");
    assert_eq!(r.status, ExecutionStatus::Failed);
    assert_eq!(r.error.as_deref(), Some(BUDGET_EXCEEDED));
    let cause = r.cause.unwrap_or_default();
    assert!(cause.contains("'Heavy'") && cause.contains("200000 steps") && cause.contains("step_budget"), "{cause}");
    // The next execution runs as if nothing happened.
    let ok = e.start_execution("light", Some("l"), "{}").expect("start");
    assert_eq!(ok.status, ExecutionStatus::Succeeded);
}

#[test]
fn a_step_over_its_wall_clock_budget_fails_naming_the_state_and_the_budget() {
    let mut e = engine(StepBudget { step_budget: u64::MAX, step_wall_ms: 50 });
    let r = e.start_execution("heavy", Some("h"), "{}").expect("start");
    assert_eq!(r.error.as_deref(), Some(BUDGET_EXCEEDED), "{r:?}");
    let cause = r.cause.unwrap_or_default();
    assert!(cause.contains("'Heavy'") && cause.contains("50 ms") && cause.contains("step_wall_ms"), "{cause}");
    assert_eq!(e.start_execution("light", Some("l"), "{}").expect("start").status, ExecutionStatus::Succeeded);
}

#[test]
fn budgets_out_of_range_are_refused_by_name() {
    assert!(StepBudget { step_budget: 5, step_wall_ms: 5000 }.check().is_err_and(|e| e.contains("engine.step_budget")));
    assert!(StepBudget { step_budget: 1_000_000, step_wall_ms: 0 }.check().is_err_and(|e| e.contains("engine.step_wall_ms")));
    assert!(StepBudget::default().check().is_ok());
}

/// The copies a fan-out makes are charged too: each Map iteration starts with its own copy of
/// the variables it sees, so a Map over many items beside a large variable passes a step
/// budget that the same Map with a small variable stays well inside.
#[test]
fn the_copies_a_fan_out_makes_are_charged() {
    let def = |n: usize| {
        format!(
            r#"{{"QueryLanguage":"JSONata","StartAt":"Big","States":{{
              "Big":{{"Type":"Pass","Assign":{{"blob":"{{% $pad('', {n}, 'x') %}}"}},"Next":"Fan"}},
              "Fan":{{"Type":"Map","Items":"{{% [1..3000] %}}","ItemProcessor":{{"StartAt":"Each","States":{{"Each":{{"Type":"Pass","End":true}}}}}},"End":true}}}}}}"#
        )
    };
    let mut e = Engine::new(Store::in_memory().expect("store"), TaskRunner::new(), Clock::Real);
    e.budget = StepBudget { step_budget: 5_000_000, step_wall_ms: 600_000 };
    e.create_state_machine("small", &def(160), None).expect("small");
    e.create_state_machine("large", &def(160_000), None).expect("large");
    let ok = e.start_execution("small", Some("s"), "{}").expect("start");
    // Sliced across steps: drive it to its end.
    let mut ok = ok;
    for _ in 0..100 {
        if ok.status != ExecutionStatus::Running {
            break;
        }
        e.drive(&ok.arn).expect("drive");
        ok = e.store.execution(&ok.arn).expect("read").expect("row");
    }
    assert_eq!(ok.status, ExecutionStatus::Succeeded, "error {:?}", ok.error);
    let mut big = e.start_execution("large", Some("l"), "{}").expect("start");
    for _ in 0..100 {
        if big.status != ExecutionStatus::Running {
            break;
        }
        e.drive(&big.arn).expect("drive");
        big = e.store.execution(&big.arn).expect("read").expect("row");
    }
    assert_eq!(big.error.as_deref(), Some(BUDGET_EXCEEDED), "status {:?}", big.status);
    assert!(big.cause.unwrap_or_default().contains("'Fan'"), "the cause names the Map state");
}
