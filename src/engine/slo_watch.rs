//! The SLO watcher and clock loading on the embedded engine's store: the store-reading shell
//! around the pure clocks of [`crate::ops::slo`]. It reads execution heads, rows and history
//! events from the [`Store`] and writes "SLO At Risk" / "SLO Breached" events to its outbox.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Duration, Utc};
use serde_json::Value;

use crate::history::ExecutionStatus;
use crate::ops::slo::{
    AT_RISK_EVENT, Clock, DEFAULT_WINDOW_SECONDS, Facts, Fold, Slo, SloConfig, SloError, check_all, collect, crossings, demo_defaults,
    speed_of,
};
use crate::store::{Store, StoreError};

/// Every clock of the executions in the store that are running or stopped within `window` of `now`.
pub fn load(store: &Store, slos: &[Slo], now: DateTime<Utc>, window: Duration) -> Result<Vec<Clock>, SloError> {
    if slos.is_empty() {
        return Ok(vec![]);
    }
    let err = |e: StoreError| SloError::Store(e.to_string());
    let rows = store.executions(&crate::model::ExecutionFilter { limit: 1_000_000, ..Default::default() }).map_err(err)?;
    collect(&rows, slos, now, window, |arn| store.history(arn, 0, 1_000_000, false).map_err(err))
}

/// Emits "SLO At Risk" / "SLO Breached" once per clock from a background tick, incrementally:
/// it keeps a [`Fold`] per clock of each execution it follows and, on a tick, reads only the
/// history events after the last it saw, of the executions whose version moved. An execution
/// that ended (all its clocks stopped, their crossings written) is dropped to its version; one
/// that no SLO matches to a marker; both are forgotten once the store no longer lists them as
/// running or stopped within the compliance window. Memory: a few hundred bytes per execution
/// in that set, whatever the length of their histories.
pub struct Watcher {
    /// The config's SLOs; none: the demo's, once the store holds the demo.
    configured: Vec<Slo>,
    demo: Vec<Slo>,
    /// The names of the SLOs the entries were built for (a change starts afresh).
    built_for: Vec<String>,
    entries: HashMap<String, Entry>,
    /// How many history reads the watcher has made (each a store query).
    history_reads: u64,
    last: Option<std::time::Instant>,
    every: std::time::Duration,
}

/// One execution as the watcher knows it.
enum Entry {
    /// No SLO matches its input (fixed for its life).
    NoClock,
    Live(Box<Live>),
    /// Ended, every crossing written: nothing to do unless a redrive moves its version on.
    Done {
        version: i64,
    },
}

/// A followed execution: what its clocks need besides the history, and a fold per clock.
struct Live {
    version: i64,
    last_id: i64,
    machine: String,
    status: ExecutionStatus,
    start: DateTime<Utc>,
    stop: Option<DateTime<Utc>>,
    current_state: Option<String>,
    speed: f64,
    priority: Option<String>,
    accession: Option<String>,
    /// (index of the SLO, its fold, crossings written: bit 0 AT_RISK, bit 1 BREACHED).
    folds: Vec<(usize, Fold, u8)>,
}

/// History events read per query while catching up.
const HISTORY_PAGE: usize = 1000;

impl Watcher {
    /// Checks the config's entries (the error names the SLO and the key).
    pub fn new(cfgs: &[SloConfig]) -> Result<Watcher, SloError> {
        let demo = if cfgs.is_empty() { check_all(&demo_defaults())? } else { vec![] };
        Ok(Watcher {
            configured: check_all(cfgs)?,
            demo,
            built_for: vec![],
            entries: HashMap::new(),
            history_reads: 0,
            last: None,
            every: std::time::Duration::from_secs(1),
        })
    }

    /// The SLOs in force for this store now (the demo may be installed after start-up).
    pub fn slos(&self, store: &Store) -> &[Slo] {
        if !self.configured.is_empty() {
            return &self.configured;
        }
        let holds_demo =
            store.state_machines().map(|m| crate::sim::holds_demo(&m.into_iter().map(|m| m.name).collect::<Vec<_>>())).unwrap_or(false);
        if holds_demo { &self.demo } else { &[] }
    }

    /// History reads made so far (a tick in which no execution moved makes none).
    pub fn history_reads(&self) -> u64 {
        self.history_reads
    }

    /// Executions followed (live, ended, or without a clock).
    pub fn followed(&self) -> usize {
        self.entries.len()
    }

    /// Evaluate (at most once a second) and write each new crossing to the outbox. Returns the
    /// number of events written.
    pub fn tick(&mut self, store: &Store, now: DateTime<Utc>) -> Result<usize, SloError> {
        if store.is_read_only() || self.last.is_some_and(|l| l.elapsed() < self.every) {
            return Ok(0);
        }
        self.last = Some(std::time::Instant::now());
        let slos = self.slos(store).to_vec();
        if slos.is_empty() {
            return Ok(0);
        }
        self.step(store, &slos, now)
    }

    fn step(&mut self, store: &Store, slos: &[Slo], now: DateTime<Utc>) -> Result<usize, SloError> {
        let err = |e: StoreError| SloError::Store(e.to_string());
        let names: Vec<String> = slos.iter().map(|s| s.name.clone()).collect();
        if names != self.built_for {
            self.entries.clear();
            self.built_for = names;
        }
        let heads = store.execution_heads(now - Duration::seconds(DEFAULT_WINDOW_SECONDS)).map_err(err)?;
        let listed: HashSet<&str> = heads.iter().map(|h| h.arn.as_str()).collect();
        self.entries.retain(|arn, _| listed.contains(arn.as_str()));
        let mut written = 0;
        for h in &heads {
            let entry = self.entries.get_mut(&h.arn);
            let live = match entry {
                Some(Entry::NoClock) => continue,
                Some(Entry::Done { version }) if *version == h.version => continue,
                Some(Entry::Live(l)) if l.version == h.version => l,
                Some(Entry::Live(l)) => {
                    l.version = h.version;
                    l.status = h.status;
                    l.stop = h.stop;
                    l.current_state.clone_from(&h.current_state);
                    Self::catch_up(store, slos, &h.arn, l, &mut self.history_reads)?;
                    l
                }
                None | Some(Entry::Done { .. }) => {
                    let Some(row) = store.execution(&h.arn).map_err(err)? else { continue };
                    let machine = row.state_machine_arn.rsplit(':').next().unwrap_or(&row.state_machine_arn).to_string();
                    let input: Value = serde_json::from_str(&row.input).unwrap_or(Value::Null);
                    let folds: Vec<(usize, Fold, u8)> =
                        slos.iter().enumerate().filter(|(_, s)| s.matches(&machine, &input)).map(|(i, s)| (i, Fold::new(s), 0)).collect();
                    if folds.is_empty() {
                        self.entries.insert(h.arn.clone(), Entry::NoClock);
                        continue;
                    }
                    let mut l = Box::new(Live {
                        version: h.version,
                        last_id: 0,
                        machine,
                        status: h.status,
                        start: row.start,
                        stop: h.stop,
                        current_state: h.current_state.clone(),
                        speed: speed_of(&input),
                        priority: input.get("priority").and_then(Value::as_str).map(str::to_string),
                        accession: input.get("accession").and_then(Value::as_str).map(str::to_string),
                        folds,
                    });
                    Self::catch_up(store, slos, &h.arn, &mut l, &mut self.history_reads)?;
                    self.entries.insert(h.arn.clone(), Entry::Live(l));
                    match self.entries.get_mut(&h.arn) {
                        Some(Entry::Live(l)) => l,
                        _ => continue,
                    }
                }
            };
            let l = &mut **live;
            let facts = Facts {
                arn: &h.arn,
                machine: &l.machine,
                status: l.status,
                start: l.start,
                stop: l.stop,
                current_state: l.current_state.as_deref(),
                speed: l.speed,
                priority: l.priority.as_deref(),
                accession: l.accession.as_deref(),
            };
            let mut all_stopped = true;
            for (i, fold, sent) in &mut l.folds {
                let Some(c) = slos.get(*i).and_then(|s| fold.clock(s, &facts)) else {
                    all_stopped &= facts.status.is_terminal();
                    continue;
                };
                all_stopped &= c.stopped.is_some();
                for (id, detail_type, at, detail) in crossings(&c, now) {
                    let mask = if detail_type == AT_RISK_EVENT { 1 } else { 2 };
                    if *sent & mask != 0 {
                        continue;
                    }
                    let resources = vec![c.execution_arn.clone()];
                    if store.emit_event(&c.execution_arn, &id, detail_type, at, &resources, detail).map_err(err)? {
                        written += 1;
                        tracing::info!(slo = %c.slo, status = detail_type, "SLO clock crossed a threshold");
                    }
                    *sent |= mask;
                }
            }
            if all_stopped && h.status.is_terminal() {
                self.entries.insert(h.arn.clone(), Entry::Done { version: h.version });
            }
        }
        Ok(written)
    }

    /// Feed the history events after the last one seen to every fold of `l`.
    fn catch_up(store: &Store, slos: &[Slo], arn: &str, l: &mut Live, reads: &mut u64) -> Result<(), SloError> {
        loop {
            *reads += 1;
            let page = store.history(arn, l.last_id, HISTORY_PAGE, false).map_err(|e| SloError::Store(e.to_string()))?;
            for e in &page {
                for (i, fold, _) in &mut l.folds {
                    if let Some(s) = slos.get(*i) {
                        fold.feed(s, e);
                    }
                }
                l.last_id = l.last_id.max(e.id);
            }
            if page.len() < HISTORY_PAGE {
                return Ok(());
            }
        }
    }
}

/// Write every crossing not yet in `emitted` to the outbox (the outbox keeps one row per id,
/// so another process writing the same crossing writes nothing).
pub fn watch(store: &Store, slos: &[Slo], now: DateTime<Utc>, emitted: &mut HashSet<String>) -> Result<usize, SloError> {
    let all = load(store, slos, now, Duration::seconds(DEFAULT_WINDOW_SECONDS))?;
    let mut n = 0;
    for c in &all {
        for (id, detail_type, at, detail) in crossings(c, now) {
            if emitted.contains(&id) {
                continue;
            }
            let resources = vec![c.execution_arn.clone()];
            if store.emit_event(&c.execution_arn, &id, detail_type, at, &resources, detail).map_err(|e| SloError::Store(e.to_string()))? {
                n += 1;
                tracing::info!(slo = %c.slo, status = detail_type, "SLO clock crossed a threshold");
            }
            emitted.insert(id);
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::slo::tests::{cfg, t0};
    use crate::ops::slo::{BREACHED_EVENT, LoopStage, Status};

    /// The demo on a virtual clock, twice from the same seed: one store watched incrementally,
    /// the other by recomputing every clock from whole histories each tick ([`watch`]).
    #[test]
    fn the_incremental_watcher_writes_what_a_full_reload_writes_and_reads_nothing_when_nothing_moved() {
        use crate::engine::{Clock as EngineClock, Engine, tasks::TaskRunner};
        let start = t0();
        let engine = || {
            let mut e = Engine::new(crate::store::Store::in_memory().expect("store"), TaskRunner::new(), EngineClock::virtual_at(start));
            crate::sim::Demo::install(&mut e).expect("install");
            e
        };
        let (mut a, mut b) = (engine(), engine());
        let demo_cfg = crate::sim::DemoConfig { per_hour: [30.0, 6.0, 10.0], ..crate::sim::DemoConfig::new(5, 240.0) };
        let (mut da, mut db) = (crate::sim::Demo::with_config(demo_cfg.clone()), crate::sim::Demo::with_config(demo_cfg));
        let mut w = Watcher::new(&[]).expect("watcher");
        w.every = std::time::Duration::ZERO;
        let slos = check_all(&demo_defaults()).expect("slos");
        let mut emitted = HashSet::new();
        // Five simulated hours (15 engine seconds a simulated hour), a tick per engine second.
        for s in 1..=75 {
            let now = start + Duration::seconds(s);
            for (e, d) in [(&mut a, &mut da), (&mut b, &mut db)] {
                e.clock.advance_to(now);
                d.tick(e).expect("demo tick");
            }
            let incremental = w.tick(&a.store, now).expect("incremental");
            let full = watch(&b.store, &slos, now, &mut emitted).expect("full");
            assert_eq!(incremental, full, "events written at {s}s");
        }
        let rows = |e: &Engine| -> Vec<(String, String)> {
            let mut q = e.store.conn().prepare("SELECT execution_arn, payload FROM outbox WHERE topic = 'lightbox'").expect("query");
            let mut v: Vec<(String, String)> = q
                .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
                .expect("rows")
                .filter_map(|r| r.ok())
                .filter_map(|(_, p)| serde_json::from_str::<Value>(&p).ok())
                .filter(|e| e["id"].as_str().is_some_and(|i| i.starts_with("slo:")))
                .map(|e| (e["id"].as_str().unwrap_or_default().to_string(), e["time"].as_str().unwrap_or_default().to_string()))
                .collect();
            v.sort();
            v
        };
        let (ra, rb) = (rows(&a), rows(&b));
        assert!(ra.len() > 20, "{} SLO events", ra.len());
        assert_eq!(ra, rb, "the same events, ids and times");

        // Some study went round the critical-result loop, and its clock says so.
        let clocks = load(&a.store, &slos, a.clock.now(), Duration::days(1)).expect("clocks");
        let loops: Vec<&Clock> = clocks.iter().filter(|c| c.slo == "critical-result").collect();
        assert!(loops.iter().any(|c| c.stage == Some(LoopStage::Acknowledged)), "{loops:?}");
        assert!(
            ra.iter().any(|(id, _)| id.starts_with("slo:critical-result:"))
                || loops.iter().all(|c| c.read(a.clock.now()).status == Status::Ok)
        );

        // Nothing moved: a tick reads no history. Ended executions are kept as a version only.
        let reads = w.history_reads();
        assert_eq!(w.tick(&a.store, a.clock.now()).expect("tick"), 0);
        assert_eq!(w.history_reads(), reads, "no execution moved, no history read");
        let done = w.entries.values().filter(|e| matches!(e, Entry::Done { .. })).count();
        assert!(done >= 3, "{done} ended executions dropped to their version");
        // One execution moves: only its history is read, from where the watcher left off.
        let running = a.store.tokens(Some("PENDING"), None, 1).expect("tokens");
        let t = running.first().expect("a pending gate");
        a.send_task_success(&t.token, r#"{"approved": true, "reviewer": "dr.test"}"#).expect("answer");
        w.tick(&a.store, a.clock.now()).expect("tick");
        assert_eq!(w.history_reads(), reads + 1);
        // Executions that leave the window are forgotten.
        let later = a.clock.now() + Duration::days(3);
        w.tick(&a.store, later).expect("tick");
        let running = a
            .store
            .executions(&crate::model::ExecutionFilter { limit: 100_000, status: Some(ExecutionStatus::Running), ..Default::default() })
            .expect("running");
        assert_eq!(w.followed(), running.len(), "only running executions are followed once the rest left the window");
    }

    #[test]
    fn the_watcher_writes_each_crossing_once_and_demo_defaults_only_on_a_demo_store() {
        let store = crate::store::Store::in_memory().expect("store");
        let mut engine = crate::engine::Engine::new(store, crate::engine::tasks::TaskRunner::new(), crate::engine::Clock::Real);
        let def = r#"{"StartAt":"Read","States":{"Read":{"Type":"Wait","Seconds":3600,"End":true}}}"#;
        engine.create_state_machine("m", def, None).expect("create");
        let x = engine.start_execution("m", Some("a"), r#"{"priority":"STAT","patientClass":"ED","modality":"CT"}"#).expect("start");
        let later = Utc::now() + Duration::minutes(5);
        let lightbox_rows = |e: &crate::engine::Engine| -> i64 {
            e.store.conn().query_row("SELECT COUNT(*) FROM outbox WHERE topic = 'lightbox'", [], |r| r.get(0)).expect("count")
        };
        // No [[slo]] and not the demo's store: the demo's defaults do not apply.
        let mut none = Watcher::new(&[]).expect("watcher");
        assert_eq!(none.tick(&engine.store, later).expect("tick"), 0);
        assert_eq!(lightbox_rows(&engine), 0);
        let mut w = Watcher::new(&[cfg("s", &[], "start", "end", "1m")]).expect("watcher");
        assert_eq!(w.tick(&engine.store, later).expect("tick"), 2, "at risk and breached");
        w.last = None;
        assert_eq!(w.tick(&engine.store, later).expect("tick"), 0);
        // Another process (a restart) writes nothing new either.
        let mut again = Watcher::new(&[cfg("s", &[], "start", "end", "1m")]).expect("watcher");
        assert_eq!(again.tick(&engine.store, later).expect("tick"), 0);
        assert_eq!(lightbox_rows(&engine), 2);
        let payload: String = engine
            .store
            .conn()
            .query_row("SELECT payload FROM outbox WHERE topic = 'lightbox' ORDER BY id DESC LIMIT 1", [], |r| r.get(0))
            .expect("row");
        let e: Value = serde_json::from_str(&payload).expect("json");
        assert_eq!(e["id"], format!("slo:s:{}:BREACHED", x.arn));
        assert_eq!(e["detail-type"], BREACHED_EVENT);
        assert!(Watcher::new(&[cfg("bad", &[], "start", "end", "never")]).is_err());
    }
}
