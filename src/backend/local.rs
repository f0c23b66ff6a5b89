//! The embedded engine as a control plane.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use rusqlite::OptionalExtension;

use super::{Acting, ControlPlane, ExecutionFilter, ExecutionSummary, FIND_LIMIT, FeedEvent, Found, PendingTask, Pulse, Result};
use crate::asl::model::Definition;
use crate::engine::Engine;
use crate::history::{ExecutionStatus, HistoryEvent};
use crate::store::StoreError;

/// Something that drives the embedded engine on every tick (the demo hospital's workload).
pub type Driver = Box<dyn FnMut(&mut Engine) + Send>;

pub struct Local {
    pub engine: Engine,
    pub data_dir: PathBuf,
    driver: Option<Driver>,
    /// Parsed definitions by their hash in the store.
    defs: HashMap<String, Arc<Definition>>,
    /// The definition hash of each execution seen.
    def_of: HashMap<String, String>,
    /// The outbox relay's sinks (`[[outbox.sinks]]`).
    sinks: Vec<crate::outbox::Sink>,
    /// Compensation config (the demo's defaults unless set).
    compensation: crate::ops::compensation::CompensationMap,
}

impl Local {
    pub fn new(engine: Engine, data_dir: PathBuf) -> Local {
        let compensation = crate::ops::compensation::demo_defaults();
        Local { engine, data_dir, driver: None, defs: HashMap::new(), def_of: HashMap::new(), sinks: vec![], compensation }
    }

    /// The compensation config in effect (`[compensation]` over the demo's defaults).
    pub fn with_compensation(mut self, map: crate::ops::compensation::CompensationMap) -> Local {
        self.compensation = map;
        self
    }

    pub fn with_driver(mut self, driver: Driver) -> Local {
        self.driver = Some(driver);
        self
    }

    /// The outbox sinks the Outbox view shows and acts on.
    pub fn with_sinks(mut self, sinks: Vec<crate::outbox::Sink>) -> Local {
        self.sinks = sinks;
        self
    }
}

impl Local {
    /// The state an execution last entered before event `id` (for feed rows that do not name it).
    /// The history event behind an outbox row and the state it names: execution and task
    /// events are read from the history (the row keeps its event id); rows written before
    /// events took EventBridge's shape carry it (`event`, `stateName`); Lightbox's own events
    /// about an execution (SLO, escalation, …) show as an event of their detail type. Audit
    /// heads and events of no execution are not in the feed.
    fn feed_event(&self, r: &crate::store::OutboxRow, payload: &serde_json::Value) -> Result<Option<(HistoryEvent, Option<String>)>> {
        use serde_json::Value;
        if let Some(old) = payload.get("event").and_then(HistoryEvent::from_aws_json) {
            return Ok(Some((old, payload.get("stateName").and_then(Value::as_str).map(str::to_string))));
        }
        let detail = payload.get("detail");
        let state = detail.and_then(|d| d.get("stateName")).and_then(Value::as_str).map(str::to_string);
        if r.topic == "execution" || r.topic == "task" {
            let row: Option<(i64, i64, String, Option<String>)> = self
                .engine
                .store
                .conn()
                .prepare_cached("SELECT previous_id, ts_ms, type, details FROM history WHERE execution_arn = ?1 AND id = ?2")
                .and_then(|mut q| {
                    q.query_row(rusqlite::params![r.execution_arn, r.event_id], |x| Ok((x.get(0)?, x.get(1)?, x.get(2)?, x.get(3)?)))
                        .optional()
                })
                .map_err(StoreError::from)?;
            let Some((previous_event_id, ts, event_type, details)) = row else { return Ok(None) };
            let details = details.and_then(|d| serde_json::from_str(&d).ok()).unwrap_or(Value::Null);
            let event = HistoryEvent { id: r.event_id, previous_event_id, timestamp: crate::store::from_ms(ts), event_type, details };
            return Ok(Some((event, state)));
        }
        if !r.execution_arn.starts_with("arn:") {
            return Ok(None);
        }
        let Some(detail_type) = payload.get("detail-type").and_then(Value::as_str) else { return Ok(None) };
        let timestamp = payload
            .get("time")
            .and_then(Value::as_str)
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&chrono::Utc))
            .unwrap_or_default();
        let event = HistoryEvent {
            id: 0,
            previous_event_id: 0,
            timestamp,
            event_type: detail_type.to_string(),
            details: detail.cloned().unwrap_or(Value::Null),
        };
        Ok(Some((event, state)))
    }

    fn state_before(&self, arn: &str, id: i64) -> Result<Option<String>> {
        let details: Option<Option<String>> = self
            .engine
            .store
            .conn()
            .prepare_cached(
                "SELECT details FROM history WHERE execution_arn = ?1 AND id < ?2 AND type LIKE '%StateEntered' ORDER BY id DESC LIMIT 1",
            )
            .and_then(|mut q| q.query_row(rusqlite::params![arn, id], |r| r.get(0)).optional())
            .map_err(StoreError::from)?;
        Ok(details
            .flatten()
            .and_then(|d| serde_json::from_str::<serde_json::Value>(&d).ok())
            .and_then(|d| d.get("name").and_then(serde_json::Value::as_str).map(str::to_string)))
    }
}

/// The event as the console's pattern filter sees it: without the payloads that may hold
/// patient data (`input`, `output`, `cause`), so a pattern can never find what a mask hides.
fn searchable(mut v: serde_json::Value) -> serde_json::Value {
    if let Some(d) = v.get_mut("detail").and_then(serde_json::Value::as_object_mut) {
        for k in ["input", "output", "cause", "inputDetails", "outputDetails"] {
            d.remove(k);
        }
    }
    v
}

impl ControlPlane for Local {
    fn name(&self) -> String {
        "local".into()
    }

    fn location(&self) -> String {
        self.data_dir.display().to_string()
    }

    fn pulse(&mut self) -> Result<Pulse> {
        let mut p = Pulse::default();
        for (status, n) in self.engine.store.count_executions()? {
            if let Some(s) = ExecutionStatus::parse(&status) {
                p.add_status(s, n.max(0) as u64);
            }
        }
        let pending: i64 = self
            .engine
            .store
            .conn()
            .query_row("SELECT COUNT(*) FROM task_tokens WHERE status = 'PENDING'", [], |r| r.get(0))
            .map_err(StoreError::from)?;
        p.pending_reviews = pending.max(0) as u64;
        Ok(p)
    }

    fn executions(&mut self, filter: &ExecutionFilter) -> Result<Vec<ExecutionSummary>> {
        Ok(self.engine.store.executions(filter)?)
    }

    fn execution(&mut self, arn: &str) -> Result<Option<ExecutionSummary>> {
        Ok(self.engine.store.execution(arn)?)
    }

    fn definition_of(&mut self, arn: &str) -> Result<Option<String>> {
        Ok(self.engine.store.load(arn)?.map(|l| l.definition))
    }

    fn history(&mut self, arn: &str, after_id: i64, limit: usize) -> Result<Vec<HistoryEvent>> {
        Ok(self.engine.store.history(arn, after_id, limit, false)?)
    }

    fn pending_tasks(&mut self, limit: usize) -> Result<Vec<PendingTask>> {
        Ok(self.engine.store.tokens(Some("PENDING"), None, limit)?)
    }

    fn tasks_of(&mut self, arn: &str) -> Result<Vec<PendingTask>> {
        Ok(self.engine.store.tokens(None, Some(arn), 1000)?)
    }

    fn task_execution(&mut self, token: &str) -> Result<Option<String>> {
        Ok(self.engine.store.token(token)?.map(|t| t.execution_arn))
    }

    fn events_after(&mut self, after: Option<i64>, limit: usize) -> Result<Vec<FeedEvent>> {
        // The outbox holds exactly the events other systems see, in commit order.
        let rows = match after {
            Some(a) => self.engine.store.outbox_after(a, limit)?,
            None => {
                let mut latest = self.engine.store.outbox_latest(limit)?;
                latest.reverse();
                latest
            }
        };
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let Some(payload) = serde_json::from_str::<serde_json::Value>(&r.payload).ok() else { continue };
            let Some((event, mut state)) = self.feed_event(&r, &payload)? else { continue };
            if state.is_none() && event.state_name().is_none() && event.id > 0 {
                // An execution event, or one written before the feed recorded states: the
                // state last entered before it.
                state = self.state_before(&r.execution_arn, event.id)?;
            }
            out.push(FeedEvent { seq: r.id, execution_arn: r.execution_arn, event, state, envelope: Some(searchable(payload)) });
        }
        Ok(out)
    }

    fn find(&mut self, needle: &str) -> Result<Vec<Found>> {
        let needle = needle.trim().to_lowercase();
        if needle.is_empty() {
            return Ok(vec![]);
        }
        let conn = self.engine.store.conn();
        let mut q = conn
            .prepare_cached(
                "SELECT arn, name, status, acc, ord FROM (
                   SELECT arn, name, status, start_ms,
                          CASE WHEN json_valid(input) THEN COALESCE(json_extract(input, '$.accession'), '') ELSE '' END AS acc,
                          CASE WHEN json_valid(input)
                               THEN COALESCE(json_extract(input, '$.orderId'), json_extract(input, '$.orderNumber'), '') ELSE '' END AS ord
                   FROM executions)
                 WHERE instr(lower(acc), ?1) > 0 OR instr(lower(ord), ?1) > 0
                    OR instr(lower(name), ?1) > 0 OR instr(lower(arn), ?1) > 0
                 ORDER BY (lower(acc) = ?1 OR lower(ord) = ?1 OR lower(name) = ?1 OR lower(arn) = ?1) DESC, start_ms DESC
                 LIMIT ?2",
            )
            .map_err(StoreError::from)?;
        let rows = q
            .query_map(rusqlite::params![needle, FIND_LIMIT as i64], |r| {
                let text = |i: usize| -> rusqlite::Result<String> {
                    Ok(match r.get_ref(i)? {
                        rusqlite::types::ValueRef::Text(t) => String::from_utf8_lossy(t).into_owned(),
                        rusqlite::types::ValueRef::Integer(n) => n.to_string(),
                        _ => String::new(),
                    })
                };
                Ok((text(0)?, text(1)?, text(2)?, text(3)?, text(4)?))
            })
            .map_err(StoreError::from)?;
        let mut out = vec![];
        for row in rows {
            let (arn, name, status, acc, ord) = row.map_err(StoreError::from)?;
            let machine = crate::ops::project::machine_of(&arn).to_string();
            let label =
                [acc, ord, format!("{machine}/{name}"), status].into_iter().filter(|x| !x.is_empty()).collect::<Vec<_>>().join(" · ");
            out.push(Found { arn, label });
        }
        Ok(out)
    }

    fn audit_log(&mut self, limit: usize) -> Result<Vec<crate::audit::AuditRecord>> {
        let filter = crate::audit::AuditFilter { hide_closed_intents: true, limit, ..Default::default() };
        Ok(crate::audit::list(self.engine.store.conn(), &filter)?)
    }

    fn definitions_of(&mut self, arns: &[String]) -> Result<HashMap<String, Arc<Definition>>> {
        let mut out = HashMap::new();
        for a in arns {
            // An execution's definition never changes: remember which one it runs.
            let hash = match self.def_of.get(a) {
                Some(h) => Some(h.clone()),
                None => self
                    .engine
                    .store
                    .conn()
                    .prepare_cached("SELECT definition_hash FROM executions WHERE arn = ?1")
                    .and_then(|mut q| q.query_row([a], |r| r.get::<_, String>(0)).optional())
                    .map_err(StoreError::from)?,
            };
            let Some(hash) = hash else { continue };
            if self.def_of.len() > 100_000 {
                self.def_of.clear();
            }
            self.def_of.insert(a.clone(), hash.clone());
            if !self.defs.contains_key(&hash) {
                let text: Option<String> = self
                    .engine
                    .store
                    .conn()
                    .prepare_cached("SELECT definition FROM definitions WHERE hash = ?1")
                    .and_then(|mut q| q.query_row([&hash], |r| r.get(0)).optional())
                    .map_err(StoreError::from)?;
                let Some(d) = text.and_then(|t| Definition::parse_str(&t).ok()) else { continue };
                if self.defs.len() > 256 {
                    self.defs.clear();
                }
                self.defs.insert(hash.clone(), Arc::new(d));
            }
            if let Some(d) = self.defs.get(&hash) {
                out.insert(a.clone(), d.clone());
            }
        }
        Ok(out)
    }

    fn approve(&mut self, token: &str, output: &str, acting: &Acting) -> Result<()> {
        self.engine.send_task_success_as(token, output, acting)?;
        Ok(())
    }

    fn reject(&mut self, token: &str, error: &str, cause: &str, acting: &Acting) -> Result<()> {
        self.engine.send_task_failure_as(token, Some(error), Some(cause), acting)?;
        Ok(())
    }

    fn claim(&mut self, token: &str, by: &str) -> Result<()> {
        self.engine.claim_task(token, by)?;
        Ok(())
    }

    fn unclaim(&mut self, token: &str, by: &str) -> Result<()> {
        self.engine.unclaim_task(token, by)?;
        Ok(())
    }

    fn escalate(&mut self, token: &str, cause: &str, acting: &Acting) -> Result<()> {
        self.engine.escalate_task_as(token, cause, acting)?;
        Ok(())
    }

    fn heartbeat(&mut self, token: &str) -> Result<()> {
        self.engine.send_task_heartbeat(token)?;
        Ok(())
    }

    fn compensation_plan(&mut self, arn: &str) -> Result<crate::ops::compensation::Outcome> {
        Ok(crate::engine::compensation::run(&mut self.engine, &self.compensation, arn, "", true)?)
    }

    fn compensate(&mut self, arn: &str, reason: &str) -> Result<String> {
        Ok(crate::engine::compensation::run(&mut self.engine, &self.compensation, arn, reason, false)?.message())
    }

    fn compensation_info(&mut self, arn: &str) -> Result<crate::ops::compensation::Info> {
        Ok(crate::engine::compensation::info(&mut self.engine, &self.compensation, arn)?)
    }

    fn redrive(&mut self, arn: &str) -> Result<()> {
        self.engine.redrive_execution(arn)?;
        Ok(())
    }

    fn stop(&mut self, arn: &str, error: &str, cause: &str) -> Result<()> {
        self.engine.stop_execution(arn, Some(error.to_string()), Some(cause.to_string()))?;
        Ok(())
    }

    /// Never dies: a panic in the driver or the engine is logged (and, inside the engine,
    /// fails only the execution it came from); the next tick runs as usual.
    fn outbox(&mut self, rows_per_sink: usize) -> Result<super::OutboxSnapshot> {
        if self.engine.store.is_read_only() {
            return Err(super::BackendError::Refused("the outbox cannot be shown from a read-only store".into()));
        }
        let conn = self.engine.store.conn();
        let sinks = crate::outbox::status(conn, &self.sinks, chrono::Utc::now().timestamp_millis())?;
        let mut rows = vec![];
        for s in &self.sinks {
            rows.extend(crate::outbox::rows(conn, s, false, rows_per_sink)?);
        }
        Ok(super::OutboxSnapshot { sinks, rows })
    }

    fn outbox_act(&mut self, action: &crate::outbox::Action) -> Result<String> {
        Ok(crate::outbox::apply(self.engine.store.conn(), &self.sinks, action)?)
    }

    fn dependencies(&mut self) -> Result<Vec<crate::engine::dependencies::DependencyStatus>> {
        let now = self.engine.clock.now();
        Ok(crate::engine::dependencies::dependencies(&self.engine.store, &self.engine.dependencies, now)?)
    }

    /// Carried out and audited (source: console) by the same functions as the CLI twin.
    fn dependency_act(&mut self, op: super::DependencyOp, name: &str, reason: &str, actor: &str) -> Result<String> {
        use crate::engine::dependencies as deps;
        if self.engine.store.is_read_only() {
            return Err(super::BackendError::Refused("read-only store: dependency holds and breakers cannot be changed".into()));
        }
        let (store, list, now) = (&self.engine.store, &self.engine.dependencies, self.engine.clock.now());
        let source = crate::audit::Source::Console;
        Ok(match op {
            super::DependencyOp::Hold => match deps::hold(store.conn(), list, name, actor, source, reason, now)? {
                true => format!("{name} held: its tasks wait until the hold is released"),
                false => format!("{name} was already held"),
            },
            super::DependencyOp::Release => match deps::release(store.conn(), list, name, actor, source, reason, now)? {
                Some(n) => format!("{name} released: {n} waiting execution(s) resume"),
                None => format!("{name} was not held"),
            },
            super::DependencyOp::Reset => match deps::reset(store.conn(), list, name, actor, source, reason, now)? {
                true => format!("{name}: breaker closed by hand"),
                false => format!("{name}: the breaker was already closed"),
            },
        })
    }

    fn tick(&mut self) -> Result<usize> {
        if self.engine.store.is_read_only() {
            // A store this process may not write: show it, run nothing.
            return Ok(0);
        }
        use std::panic::{AssertUnwindSafe, catch_unwind};
        if let Some(d) = self.driver.as_mut() {
            let engine = &mut self.engine;
            if catch_unwind(AssertUnwindSafe(|| d(engine))).is_err() {
                tracing::error!("the engine driver panicked; the tick goes on");
            }
        }
        match catch_unwind(AssertUnwindSafe(|| self.engine.run_due(256))) {
            Ok(r) => Ok(r?),
            Err(_) => {
                tracing::error!("the engine panicked outside any one execution; the tick goes on");
                Err(crate::engine::EngineError::Internal("the engine panicked during a tick; see the log".into()).into())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local_with(orders: &[(&str, &str, &str)]) -> Local {
        let store = crate::store::Store::in_memory().expect("store");
        let mut engine = crate::engine::Engine::new(store, crate::engine::tasks::TaskRunner::new(), crate::engine::Clock::Real);
        let def = r#"{"StartAt":"Wait","States":{"Wait":{"Type":"Wait","Seconds":3600,"End":true}}}"#;
        let sm = engine.create_state_machine("scheduled-imaging", def, None).expect("create");
        for (name, acc, order) in orders {
            let input =
                serde_json::json!({"accession": acc, "orderId": order, "patient": {"name": "Dana Testperson", "mrn": "SYN-000421"}});
            engine.start_execution(&sm.arn, Some(name), &input.to_string()).expect("start");
        }
        Local::new(engine, PathBuf::new())
    }

    #[test]
    fn find_matches_part_of_an_accession_order_name_or_arn_in_any_case_and_never_patient_fields() {
        let mut cp =
            local_with(&[("run-1", "ACC-1001", "ORD-500001"), ("run-2", "ACC-1002", "ORD-500002"), ("other", "ACC-2001", "ORD-7")]);
        let arns =
            |hits: Vec<Found>| hits.into_iter().map(|h| h.arn.rsplit(':').next().unwrap_or_default().to_string()).collect::<Vec<_>>();
        let mut hits = arns(cp.find("acc-100").expect("find"));
        hits.sort();
        assert_eq!(hits, vec!["run-1", "run-2"]);
        assert_eq!(arns(cp.find("ord-7").expect("find")), vec!["other"], "by order number");
        assert_eq!(arns(cp.find("RUN-2").expect("find")), vec!["run-2"], "by execution name");
        assert_eq!(cp.find("scheduled-imaging").expect("find").len(), 3, "by ARN");
        // An exact match comes first.
        let first = cp.find("acc-1001").expect("find");
        assert!(first[0].label.starts_with("ACC-1001 · ORD-500001 · scheduled-imaging/run-1"), "{first:?}");
        assert!(cp.find("SYN-000421").expect("find").is_empty(), "an MRN is never matched by the backend");
        assert!(cp.find("Testperson").expect("find").is_empty(), "nor a name");
        assert!(cp.find("   ").expect("find").is_empty());
    }

    #[test]
    fn find_returns_at_most_the_limit() {
        let orders: Vec<(String, String, String)> =
            (0..FIND_LIMIT + 5).map(|i| (format!("r{i}"), format!("ACC-{i}"), String::new())).collect();
        let refs: Vec<(&str, &str, &str)> = orders.iter().map(|(a, b, c)| (a.as_str(), b.as_str(), c.as_str())).collect();
        let mut cp = local_with(&refs);
        assert_eq!(cp.find("acc-").expect("find").len(), FIND_LIMIT);
    }
}
