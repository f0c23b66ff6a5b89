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
