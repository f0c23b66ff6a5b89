//! Compensation on the embedded engine: the store-reading shell around the pure plan of
//! [`crate::ops::compensation`]. It reads an execution's row and whole history from the store,
//! starts the compensation state machine once under the derived name, and writes the
//! "Compensation Started" event.

use serde_json::json;

use super::{Engine, EngineError};
use crate::history::HistoryEvent;
use crate::ops::compensation::{
    CompensationError, CompensationMap, Info, Outcome, Plan, STARTED_DETAIL_TYPE, compensation_arn, links as plan_links, payload, plan,
};
use crate::store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum CompensateError {
    #[error(transparent)]
    Compensation(#[from] CompensationError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Links between an execution and its compensation (see [`crate::ops::compensation::links`]),
/// asking the store whether the derived compensation exists.
pub fn links(
    map: &CompensationMap,
    store: &Store,
    row: &crate::model::ExecutionSummary,
) -> Result<Vec<(&'static str, String)>, StoreError> {
    plan_links(map, row, |arn| Ok(store.execution(arn)?.is_some()))
}

/// [`Info`] for one execution.
pub fn info(engine: &mut Engine, map: &CompensationMap, arn: &str) -> Result<Info, CompensateError> {
    let Some(row) = engine.store.execution(arn)? else { return Ok(Info::default()) };
    let links = links(map, &engine.store, &row)?;
    let offer = row.status.is_redrivable().then(|| match run(engine, map, arn, "", true) {
        Ok(Outcome { existing: Some(r), .. }) => format!("already compensated by {} ({})", r.name, r.status),
        Ok(o) => o.plan.summary(),
        Err(e) => e.to_string(),
    });
    Ok(Info { links, offer })
}

/// Every history event of an execution, oldest first.
pub fn full_history(store: &Store, arn: &str) -> Result<Vec<HistoryEvent>, StoreError> {
    let mut all = vec![];
    let mut after = 0;
    loop {
        let page = store.history(arn, after, 1000, false)?;
        let Some(last) = page.last() else { break };
        after = last.id;
        let done = page.len() < 1000;
        all.extend(page);
        if done {
            break;
        }
    }
    Ok(all)
}

/// The plan for `arn`, read from the store.
pub fn plan_for(engine: &Engine, map: &CompensationMap, arn: &str) -> Result<Plan, CompensateError> {
    let row = engine.store.execution(arn)?.ok_or_else(|| EngineError::ExecutionDoesNotExist(arn.to_string()))?;
    let history = full_history(&engine.store, arn)?;
    Ok(plan(map, &row, &history)?)
}

/// Compute the plan and, unless `dry_run`, start the compensation once: an existing
/// compensation (by its derived name) is returned instead, and an empty plan starts nothing.
/// A start writes the "Compensation Started" event once.
pub fn run(engine: &mut Engine, map: &CompensationMap, arn: &str, reason: &str, dry_run: bool) -> Result<Outcome, CompensateError> {
    let plan = plan_for(engine, map, arn)?;
    let target = compensation_arn(arn, &plan.compensation_machine, &plan.compensation_name);
    let existing = engine.store.execution(&target)?;
    if let (false, Some(r)) = (dry_run, &existing) {
        // Written once per id: this repairs an event lost to a crash right after the start.
        started_event(engine, &plan, &r.arn)?;
    }
    if dry_run || existing.is_some() || plan.steps.is_empty() {
        return Ok(Outcome { plan, started: None, existing });
    }
    if engine.store.state_machine(&plan.compensation_machine)?.is_none() {
        return Err(CompensationError::MachineMissing(plan.compensation_machine.clone()).into());
    }
    let input = payload(&plan, reason).to_string();
    let started = match engine.start_execution(&plan.compensation_machine, Some(&plan.compensation_name), &input) {
        Ok(r) => r,
        // Another process started it just now: that one is the compensation.
        Err(EngineError::ExecutionAlreadyExists(_)) => {
            let existing = engine.store.execution(&target)?;
            return Ok(Outcome { plan, started: None, existing });
        }
        Err(e) => return Err(e.into()),
    };
    started_event(engine, &plan, &started.arn)?;
    Ok(Outcome { plan, started: Some(started), existing: None })
}

/// The "Compensation Started" event (`source` "lightbox"), once per original execution. Its
/// detail names executions, machines and states only: no input or output, no reason.
fn started_event(engine: &Engine, plan: &Plan, compensation_arn: &str) -> Result<bool, StoreError> {
    let arn = plan.execution_arn.as_str();
    let states: Vec<&str> = plan.steps.iter().map(|s| s.state.as_str()).collect();
    engine.store.emit_event(
        arn,
        &format!("compensation:{arn}:started"),
        STARTED_DETAIL_TYPE,
        engine.clock.now(),
        &[arn.to_string(), compensation_arn.to_string()],
        json!({
            "executionArn": arn,
            "compensationExecutionArn": compensation_arn,
            "stateMachine": plan.state_machine,
            "compensationStateMachine": plan.compensation_machine,
            "states": states,
        }),
    )
}
