//! The background job: owns the control plane, runs loads and mutations off
//! the UI thread. A newer load of a kind replaces a pending one of the same
//! kind; mutations run in the order given. The UI never blocks on it.

use std::collections::BTreeSet;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use chrono::Utc;

use super::app::{Detail, Loaded, Mutation, Request};
use crate::backend::{ControlPlane, ExecutionFilter};
use crate::ops::StageMap;
use crate::ops::project::{Review, Study, sort_by_urgency};

pub enum Job {
    Load(Request),
    Mutate(Mutation),
    /// `:ctx NAME`: build the named context's control plane and make it the live one; what
    /// comes back afterwards is tagged with `generation`.
    Switch {
        name: String,
        generation: u64,
    },
    Stop,
}

/// A context's control plane, connected, with the audit hook that records its actions.
pub struct Connected {
    pub cp: Box<dyn ControlPlane>,
    pub on_action: OnAction,
    /// Whether the context refuses actions that change workflows.
    pub read_only: bool,
    /// The operator's name in this context's audit log.
    pub user: String,
    /// The context's theme and accent (`None`: keep the console's).
    pub theme: Option<super::theme::Theme>,
    /// Whether its data is the demo hospital's (the header says DEMO).
    pub demo: bool,
}

/// Builds a context's control plane by name (`:ctx NAME`), on the jobs thread.
pub trait Connector: Send {
    fn connect(&mut self, name: &str) -> Result<Connected, String>;
    /// Takes back the control plane of the context switched away from, so switching back
    /// reuses it (its caches, and the one `Store` a data directory may have in a process).
    fn park(&mut self, _name: &str, _cp: Box<dyn ControlPlane>, _on_action: OnAction) {}
}

/// What the jobs thread sends back: a result, when it was made, and the generation of the
/// control plane that made it (it grows at each switch of context).
pub type Output = (Loaded, chrono::DateTime<Utc>, u64);

/// The audit hook: asked before an action whether it can be recorded (if not, the action is
/// not carried out), then told each target's outcome.
pub trait AuditHook: Send {
    fn check(&mut self, m: &Mutation) -> Result<(), String>;
    /// Asked right before the action on one target: commit an intent record, so a
    /// crash before [`AuditHook::record`] leaves a visible trace. An error skips the target.
    fn intent(&mut self, _m: &Mutation, _target: &str) -> Result<(), String> {
        Ok(())
    }
    fn record(&mut self, m: &Mutation, target: &str, outcome: &Result<(), String>);
}

/// A plain closure records outcomes and never refuses (benchmarks, tests).
impl<F: FnMut(&Mutation, &str, &Result<(), String>) + Send> AuditHook for F {
    fn check(&mut self, _: &Mutation) -> Result<(), String> {
        Ok(())
    }
    fn record(&mut self, m: &Mutation, target: &str, outcome: &Result<(), String>) {
        self(m, target, outcome)
    }
}

pub type OnAction = Box<dyn AuditHook>;

pub struct Worker {
    pub tx: Sender<Job>,
    pub rx: Receiver<Output>,
    handle: Option<JoinHandle<()>>,
}

impl Worker {
    pub fn spawn(cp: Box<dyn ControlPlane>, stages: StageMap, on_action: OnAction, tick_every: Duration) -> Worker {
        Worker::spawn_with(cp, stages, on_action, tick_every, None)
    }

    /// As [`Worker::spawn`], able to switch context (`Job::Switch`) through `contexts`,
    /// starting in the context named `live`.
    pub fn spawn_with(
        mut cp: Box<dyn ControlPlane>,
        stages: StageMap,
        mut on_action: OnAction,
        tick_every: Duration,
        contexts: Option<(String, Box<dyn Connector>)>,
    ) -> Worker {
        let (mut live, mut connector) = match contexts {
            Some((live, c)) => (live, Some(c)),
            None => (String::new(), None),
        };
        let mut generation = 0u64;
        let (tx, jobs) = channel::<Job>();
        let (out, rx) = channel();
        let handle = std::thread::Builder::new()
            .name("lightbox-jobs".into())
            .spawn(move || {
                let mut last_tick = Instant::now() - tick_every;
                loop {
                    // Wait for work, but keep the engine moving.
                    let first = match jobs.recv_timeout(tick_every.saturating_sub(last_tick.elapsed()).max(Duration::from_millis(10))) {
                        Ok(j) => Some(j),
                        Err(RecvTimeoutError::Timeout) => None,
                        Err(RecvTimeoutError::Disconnected) => return,
                    };
                    let mut batch: Vec<Job> = first.into_iter().collect();
                    while let Ok(j) = jobs.try_recv() {
                        batch.push(j);
                    }
                    if batch.iter().any(|j| matches!(j, Job::Stop)) {
                        return;
                    }
                    if last_tick.elapsed() >= tick_every {
                        last_tick = Instant::now();
                        if let Err(e) = cp.tick() {
                            tracing::warn!(error = %e, "background engine tick failed");
                        }
                    }
                    for job in coalesce(batch) {
                        let results = match job {
                            Job::Load(r) => load(cp.as_mut(), &stages, r),
                            Job::Mutate(m) => vec![mutate(cp.as_mut(), &m, &mut on_action)],
                            Job::Switch { name, generation: next } => {
                                let said = switch(connector.as_mut(), &name, next, &mut live, &mut cp, &mut on_action);
                                if matches!(said, Loaded::Switched { .. }) {
                                    generation = next;
                                }
                                vec![said]
                            }
                            Job::Stop => return,
                        };
                        for result in results {
                            if out.send((result, Utc::now(), generation)).is_err() {
                                return;
                            }
                        }
                    }
                }
            })
            .ok();
        Worker { tx, rx, handle }
    }

    pub fn send(&self, j: Job) {
        let _ = self.tx.send(j);
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.tx.send(Job::Stop);
        // Quitting never waits long on a background job (a huge step, a slow backend): after
        // a moment the thread is left to end with the process. Every step is one transaction,
        // so one cut short is rolled back, and its lease is taken over as a dead owner's.
        if let Some(h) = self.handle.take() {
            let until = Instant::now() + Duration::from_secs(2);
            while !h.is_finished() && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(10));
            }
            if h.is_finished() {
                let _ = h.join();
            } else {
                tracing::warn!("a background job was still running at quit; it ends with the process");
            }
        }
    }
}

/// Make the named context the live one: the new control plane is built first, so a context
/// that fails to connect leaves the current one in place.
fn switch(
    connector: Option<&mut Box<dyn Connector>>,
    name: &str,
    generation: u64,
    live: &mut String,
    cp: &mut Box<dyn ControlPlane>,
    on_action: &mut OnAction,
) -> Loaded {
    let Some(connector) = connector else {
        return Loaded::SwitchFailed { name: name.into(), error: "this console cannot switch context".into() };
    };
    match connector.connect(name) {
        Ok(c) => {
            let old_cp = std::mem::replace(cp, c.cp);
            let old_hook = std::mem::replace(on_action, c.on_action);
            let old = std::mem::replace(live, name.to_string());
            connector.park(&old, old_cp, old_hook);
            tracing::info!(context = %name, backend = %cp.name(), "switched context");
            Loaded::Switched {
                name: name.into(),
                backend: cp.name(),
                location: cp.location(),
                read_only: c.read_only,
                user: c.user,
                theme: c.theme.map(Box::new),
                demo: c.demo,
                generation,
            }
        }
        Err(error) => {
            tracing::warn!(context = %name, error = %error, "switching context failed");
            Loaded::SwitchFailed { name: name.into(), error }
        }
    }
}

fn kind(r: &Request) -> u8 {
    match r {
        Request::Pulse => 0,
        Request::Studies => 1,
        Request::Reviews => 2,
        Request::Executions(..) => 3,
        Request::Find(_) => 6,
        Request::Detail(..) => 4,
        Request::Events(_) => 5,
        Request::Audit => 7,
        Request::Outbox => 8,
        Request::Slo(_) => 9,
        Request::Dependencies => 10,
        // Its own kind: a plan asked for must not be dropped for an outbox refresh.
        Request::CompensationPlan(_) => 11,
    }
}

/// Keep every mutation in order and only the newest load of each kind, after the mutations
/// (so a refresh reflects what was just done). A switch of context splits the batch: the
/// mutations before it still run on the context they were confirmed in, its loads are
/// dropped (their results would belong to the old context).
pub fn coalesce(batch: Vec<Job>) -> Vec<Job> {
    let mut out = vec![];
    let mut muts = vec![];
    let mut loads: Vec<Request> = vec![];
    for j in batch {
        match j {
            Job::Mutate(m) => muts.push(Job::Mutate(m)),
            Job::Load(r) => {
                loads.retain(|x| kind(x) != kind(&r));
                loads.push(r);
            }
            Job::Switch { name, generation } => {
                out.append(&mut muts);
                loads.clear();
                out.push(Job::Switch { name, generation });
            }
            Job::Stop => muts.push(Job::Stop),
        }
    }
    out.append(&mut muts);
    out.extend(loads.into_iter().map(Job::Load));
    out
}

/// What a load brings back: the data, then the definitions behind it (for the consequences
/// that confirmations state).
fn load(cp: &mut dyn ControlPlane, stages: &StageMap, r: Request) -> Vec<Loaded> {
    let what = match &r {
        Request::Pulse => "pulse",
        Request::Studies => "studies",
        Request::Reviews => "reviews",
        Request::Executions(..) => "executions",
        Request::Find(_) => "find",
        Request::Detail(..) => "detail",
        Request::Events(_) => "events",
        Request::Audit => "audit",
        Request::Outbox => "outbox",
        Request::Dependencies => "dependencies",
        Request::CompensationPlan(_) => "compensation plan",
        Request::Slo(_) => "slo",
    };
    let res: crate::backend::Result<Vec<Loaded>> = (|| {
        let main = match r {
            Request::Pulse => Loaded::Pulse(cp.pulse()?),
            Request::Studies => {
                let rows = cp.executions(&ExecutionFilter { limit: 2000, ..Default::default() })?;
                let mut studies: Vec<Study> = rows.iter().filter_map(|e| Study::from_execution(e, stages)).collect();
                // Most urgent first: exceptions and STAT at the top, then the longest in their state.
                studies.sort_by(|a, b| {
                    b.exception.is_some().cmp(&a.exception.is_some()).then(a.priority.cmp(&b.priority)).then(a.since.cmp(&b.since))
                });
                Loaded::Studies(studies)
            }
            Request::Reviews => {
                let tokens = cp.pending_tasks(10_000)?;
                let mut reviews: Vec<Review> = Vec::with_capacity(tokens.len());
                for t in &tokens {
                    let input = cp.execution(&t.execution_arn)?.and_then(|e| serde_json::from_str(&e.input).ok());
                    let mut r = Review::from_token(t, input.as_ref());
                    // Past the first gate: AGE counts from when the study entered review.
                    if r.gate == crate::ops::project::GateKind::SeniorRead {
                        r.entered_from(&cp.tasks_of(&t.execution_arn)?);
                    }
                    reviews.push(r);
                }
                sort_by_urgency(&mut reviews);
                Loaded::Reviews(reviews)
            }
            Request::Executions(status, redriven) => {
                Loaded::Executions(cp.executions(&ExecutionFilter { status, redriven, limit: 5000, ..Default::default() })?)
            }
            Request::Find(needle) => Loaded::Found { hits: cp.find(&needle)?, needle },
            Request::Audit => {
                let rows = cp.audit_log(super::command::AUDIT_ROWS)?;
                // The inputs of the executions named, for masking their patients in free text.
                let mut inputs = std::collections::HashMap::new();
                for arn in rows.iter().filter_map(|r| r.execution_arn.clone()).collect::<BTreeSet<_>>() {
                    if let Some(e) = cp.execution(&arn)? {
                        inputs.insert(arn, e.input);
                    }
                }
                Loaded::Audit { rows, inputs }
            }
            Request::Detail(arn, after) => Loaded::Detail(Box::new(Detail {
                execution: cp.execution(&arn)?,
                history: cp.history(&arn, after, super::app::HISTORY_PAGE)?,
                // The definition does not change under an execution: load it with the first page.
                definition: if after == 0 { cp.definition_of(&arn)? } else { None },
                after,
            })),
            Request::CompensationPlan(arn) => {
                let plan = cp.compensation_plan(&arn).map(Box::new).map_err(|e| e.to_string());
                Loaded::CompensationPlan { arn, plan }
            }
            Request::Events(after) => Loaded::Events(cp.events_after(after, 500)?),
            Request::Outbox => Loaded::Outbox(cp.outbox(200)?),
            Request::Dependencies => Loaded::Dependencies(cp.dependencies()?),
            Request::Slo(slos) => Loaded::Slo(super::slo::load(cp, &slos, Utc::now())?),
        };
        // Reviews: the executions they wait in; executions: those a redrive could resume.
        let arns: Vec<String> = match &main {
            Loaded::Reviews(r) => r.iter().map(|x| x.execution_arn.clone()).collect::<BTreeSet<_>>().into_iter().collect(),
            Loaded::Executions(e) => e.iter().filter(|x| x.status.is_redrivable()).map(|x| x.arn.clone()).collect(),
            _ => vec![],
        };
        let defs = if arns.is_empty() { None } else { Some(Loaded::Definitions(cp.definitions_of(&arns)?)) };
        // An execution's detail: its compensation links, and what compensating would do.
        let defs = match &main {
            Loaded::Detail(d) => d
                .execution
                .as_ref()
                .map(|e| Loaded::CompensationInfo { arn: e.arn.clone(), info: Box::new(cp.compensation_info(&e.arn).unwrap_or_default()) }),
            _ => defs,
        };
        // The definitions first: a dialog opened on the new rows can state consequences at once.
        Ok(defs.into_iter().chain(std::iter::once(main)).collect())
    })();
    res.unwrap_or_else(|e| match e {
        // A capability this backend lacks: said in its pane, not as a failure.
        crate::backend::BackendError::Refused(why) => vec![Loaded::Unavailable { what: what.into(), why }],
        e => vec![Loaded::Failed { what: what.into(), error: e.to_string() }],
    })
}

fn mutate(cp: &mut dyn ControlPlane, m: &Mutation, on_action: &mut OnAction) -> Loaded {
    if let Err(e) = on_action.check(m) {
        return Loaded::Done { verb: m.verb().into(), ok: 0, failed: vec![format!("not done: the audit log cannot record it ({e})")] };
    }
    let mut ok = 0;
    let mut failed = vec![];
    let mut one = |target: &str, act: &mut dyn FnMut() -> crate::backend::Result<()>| {
        if let Err(e) = on_action.intent(m, target) {
            failed.push(format!("not done: the audit log cannot record it ({e})"));
            return;
        }
        let r = act().map_err(|e| e.to_string());
        on_action.record(m, target, &r);
        match r {
            Ok(()) => ok += 1,
            Err(e) => failed.push(e),
        }
    };
    match m {
        Mutation::Approve { tokens, output, acting, .. } => {
            for t in tokens {
                one(t, &mut || cp.approve(t, output, acting));
            }
        }
        Mutation::Reject { tokens, error, cause, acting } => {
            for t in tokens {
                one(t, &mut || cp.reject(t, error, cause, acting));
            }
        }
        Mutation::Redrive { arns } => {
            for a in arns {
                one(a, &mut || cp.redrive(a));
            }
        }
        Mutation::Stop { arns, cause } => {
            for a in arns {
                one(a, &mut || cp.stop(a, "Ops.Stopped", cause));
            }
        }
        Mutation::Claim { token, claim, by } => one(token, &mut || if *claim { cp.claim(token, by) } else { cp.unclaim(token, by) }),
        Mutation::Escalate { tokens, cause, acting } => {
            for t in tokens {
                one(t, &mut || cp.escalate(t, cause, acting));
            }
        }
        Mutation::RevealPhi { arn, .. } => one(arn, &mut || Ok(())),
        Mutation::Outbox { action } => one(action.sink(), &mut || cp.outbox_act(action).map(|_| ())),
        Mutation::Compensate { arn, reason } => one(arn, &mut || cp.compensate(arn, reason).map(|_| ())),
        // Audited by the backend itself, exactly as the CLI twin: an intent row before, the
        // outcome after (a refusal too). The hook's check above still has to pass.
        Mutation::Dependency { op, name, reason, by } => match cp.dependency_act(*op, name, reason, by) {
            Ok(said) => {
                tracing::info!(dependency = %name, action = op.audit_name(), "{said}");
                ok += 1;
            }
            Err(e) => failed.push(e.to_string()),
        },
    }
    Loaded::Done { verb: m.verb().into(), ok, failed }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Acting;

    struct Refuses(usize);
    impl AuditHook for Refuses {
        fn check(&mut self, _: &Mutation) -> Result<(), String> {
            Err("disk full".into())
        }
        fn record(&mut self, _: &Mutation, _: &str, _: &Result<(), String>) {
            self.0 += 1;
        }
    }

    #[test]
    fn an_action_the_audit_log_cannot_record_is_not_carried_out() {
        let store = crate::store::Store::in_memory().expect("store");
        let engine = crate::engine::Engine::new(store, crate::engine::tasks::TaskRunner::new(), crate::engine::Clock::Real);
        let mut cp = crate::backend::local::Local::new(engine, std::path::PathBuf::new());
        let mut hook: OnAction = Box::new(Refuses(0));
        let out = mutate(&mut cp, &Mutation::Redrive { arns: vec!["arn:x".into()] }, &mut hook);
        let Loaded::Done { ok, failed, .. } = out else { panic!("{out:?}") };
        assert_eq!(ok, 0);
        assert!(failed[0].contains("audit log cannot record it") && failed[0].contains("disk full"), "{failed:?}");
    }

    /// A real engine with one review waiting at a gate that does not catch escalation.
    fn gate() -> (crate::backend::local::Local, String) {
        let store = crate::store::Store::in_memory().expect("store");
        let mut engine = crate::engine::Engine::new(store, crate::engine::tasks::TaskRunner::new(), crate::engine::Clock::Real);
        let def = r#"{"StartAt":"SeniorReview","States":{"SeniorReview":{"Type":"Task",
            "Resource":"arn:aws:states:::sqs:sendMessage.waitForTaskToken","Parameters":{"t.$":"$$.Task.Token"},"End":true}}}"#;
        let sm = engine.create_state_machine("gate", def, None).expect("create");
        engine.start_execution(&sm.arn, Some("g1"), "{}").expect("start");
        let token = engine.store.tokens(Some("PENDING"), None, 10).expect("tokens").remove(0).token;
        (crate::backend::local::Local::new(engine, std::path::PathBuf::new()), token)
    }

    #[test]
    fn a_console_answer_to_a_review_claimed_by_someone_else_needs_an_override() {
        let (mut cp, token) = gate();
        cp.claim(&token, "dr.a").expect("claim");
        let mut hook: OnAction = Box::new(|_: &Mutation, _: &str, _: &Result<(), String>| {});
        let approve =
            |acting: Acting| Mutation::Approve { tokens: vec![token.clone()], output: "{}".into(), comment: String::new(), acting };
        let out = mutate(&mut cp, &approve(Acting::user("dr.b")), &mut hook);
        let Loaded::Done { ok, failed, .. } = out else { panic!("{out:?}") };
        assert_eq!(ok, 0);
        assert!(failed[0].contains("claimed by dr.a"), "{failed:?}");
        assert_eq!(cp.pending_tasks(10).expect("pending").len(), 1, "nothing happened");
        let out = mutate(&mut cp, &approve(Acting::user("dr.b").overriding("dr.a is in theatre")), &mut hook);
        let Loaded::Done { ok, failed, .. } = out else { panic!("{out:?}") };
        assert_eq!((ok, failed.len()), (1, 0), "{failed:?}");
        assert!(cp.pending_tasks(10).expect("pending").is_empty());
    }

    /// Seen: the override dialog stayed open while the claim passed from dr.a to dr.c; the
    /// approval then overrode dr.c without the operator ever seeing that claim.
    #[test]
    fn an_override_covers_only_the_claim_the_operator_saw() {
        let (mut cp, token) = gate();
        cp.claim(&token, "dr.a").expect("claim");
        let acting = Acting::user("dr.b").overriding("dr.a is in theatre").seen([(token.clone(), "dr.a".to_string())]);
        cp.unclaim(&token, "dr.a").expect("unclaim");
        cp.claim(&token, "dr.c").expect("claim");
        let mut hook: OnAction = Box::new(|_: &Mutation, _: &str, _: &Result<(), String>| {});
        let m = Mutation::Approve { tokens: vec![token.clone()], output: "{}".into(), comment: String::new(), acting };
        let out = mutate(&mut cp, &m, &mut hook);
        let Loaded::Done { ok, failed, .. } = out else { panic!("{out:?}") };
        assert_eq!(ok, 0);
        assert!(failed[0].contains("now claimed by dr.c"), "{failed:?}");
        assert_eq!(cp.pending_tasks(10).expect("pending").len(), 1, "nothing happened");
    }

    /// The demo's two read gates: a first read that escalates to a senior read.
    const READS: &str = r#"{"StartAt":"RadiologistReview","States":{
        "RadiologistReview":{"Type":"Task","Resource":"arn:aws:states:::sqs:sendMessage.waitForTaskToken",
          "Parameters":{"FunctionName":"lightbox-review-request","Payload":{"t.$":"$$.Task.Token","accession":"ACC-1","escalated":false}},
          "Catch":[{"ErrorEquals":["Review.Escalated"],"Next":"SeniorReview"}],"Next":"Publish"},
        "SeniorReview":{"Type":"Task","Resource":"arn:aws:states:::sqs:sendMessage.waitForTaskToken",
          "Parameters":{"FunctionName":"lightbox-review-request","Payload":{"t.$":"$$.Task.Token","accession":"ACC-1","escalated":true}},
          "Next":"Publish"},
        "Publish":{"Type":"Pass","End":true}}}"#;

    fn reads_at(clock: crate::engine::Clock) -> crate::backend::local::Local {
        let store = crate::store::Store::in_memory().expect("store");
        let mut engine = crate::engine::Engine::new(store, crate::engine::tasks::TaskRunner::new(), clock);
        let sm = engine.create_state_machine("reads", READS, None).expect("create");
        engine.start_execution(&sm.arn, Some("r1"), r#"{"accession":"ACC-1"}"#).expect("start");
        crate::backend::local::Local::new(engine, std::path::PathBuf::new())
    }

    /// Seen: the Events view's STATE column was blank in every row: the feed's task events
    /// carry no state name in their (AWS) details. The feed records it beside each event.
    #[test]
    fn the_events_feed_names_the_state_of_every_task_and_execution_event() {
        let mut cp = reads_at(crate::engine::Clock::Real);
        let token = cp.pending_tasks(10).expect("pending").remove(0).token;
        cp.escalate(&token, "no first reader", &Acting::user("dr.a")).expect("escalate");
        let senior = cp.pending_tasks(10).expect("pending").remove(0).token;
        cp.approve(&senior, "{}", &Acting::user("dr.b")).expect("approve");
        let out = load(&mut cp, &StageMap::default(), Request::Events(None));
        let [Loaded::Events(events)] = out.as_slice() else { panic!("{out:?}") };
        let seen: Vec<(String, Option<&str>)> = events.iter().map(|e| (e.event.event_type.clone(), e.state_name())).collect();
        let tasks: Vec<&(String, Option<&str>)> = seen.iter().filter(|(t, _)| t.starts_with("Task")).collect();
        assert!(tasks.len() >= 2, "{seen:?}");
        assert!(tasks.iter().all(|(_, s)| s.is_some()), "every task event names its state: {seen:?}");
        assert!(seen.iter().any(|(t, s)| t == "TaskFailed" && *s == Some("RadiologistReview")), "{seen:?}");
        assert!(seen.iter().any(|(t, s)| t == "TaskSucceeded" && *s == Some("SeniorReview")), "{seen:?}");
        assert!(seen.iter().any(|(t, s)| t == "ExecutionSucceeded" && *s == Some("Publish")), "{seen:?}");
        // A feed written before it recorded states (a reopened data directory): the state
        // last entered before each event.
        cp.engine
            .store
            .conn()
            .execute("UPDATE outbox SET payload = json_remove(payload, '$.stateName', '$.detail.stateName')", [])
            .expect("strip");
        let out = load(&mut cp, &StageMap::default(), Request::Events(None));
        let [Loaded::Events(old)] = out.as_slice() else { panic!("{out:?}") };
        let old: Vec<(String, Option<&str>)> = old.iter().map(|e| (e.event.event_type.clone(), e.state_name())).collect();
        assert!(old.iter().any(|(t, s)| t == "TaskFailed" && *s == Some("RadiologistReview")), "{old:?}");
        assert!(old.iter().any(|(t, s)| t == "TaskSucceeded" && *s == Some("SeniorReview")), "{old:?}");
        // Stopped without the core: the execution's current state.
        let mut cp = reads_at(crate::engine::Clock::Real);
        let arn = cp.pending_tasks(10).expect("pending").remove(0).execution_arn;
        cp.stop(&arn, "Ops.Stopped", "stopped by dr.a").expect("stop");
        let out = load(&mut cp, &StageMap::default(), Request::Events(None));
        let [Loaded::Events(events)] = out.as_slice() else { panic!("{out:?}") };
        let aborted = events.iter().find(|e| e.event.event_type == "ExecutionAborted").expect("aborted event");
        assert_eq!(aborted.state_name(), Some("RadiologistReview"));
    }

    /// AGE counts from when the study entered review (its first read gate), not from when
    /// the current (senior) gate was issued; each gate says which kind it is.
    #[test]
    fn a_senior_read_is_aged_from_the_first_read_gate() {
        let start = chrono::Utc::now();
        let clock = crate::engine::Clock::virtual_at(start);
        let crate::engine::Clock::Virtual(at) = &clock else { panic!("virtual clock") };
        let at = at.clone();
        let mut cp = reads_at(clock);
        let first = cp.pending_tasks(10).expect("pending").remove(0).token;
        *at.lock().expect("clock") = start + chrono::Duration::minutes(40);
        cp.escalate(&first, "no first reader", &Acting::user("dr.a")).expect("escalate");
        let out = load(&mut cp, &StageMap::default(), Request::Reviews);
        let [Loaded::Definitions(_), Loaded::Reviews(r)] = out.as_slice() else { panic!("{out:?}") };
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].gate, crate::ops::project::GateKind::SeniorRead);
        assert_eq!(r[0].issued - r[0].entered, chrono::Duration::minutes(40), "entered at the first gate, {:?}", r[0]);
    }

    #[test]
    fn loading_reviews_brings_their_definitions_first() {
        let (mut cp, _) = gate();
        let out = load(&mut cp, &StageMap::default(), Request::Reviews);
        let [Loaded::Definitions(d), Loaded::Reviews(r)] = out.as_slice() else { panic!("{out:?}") };
        assert_eq!(r.len(), 1);
        let def = d.get(&r[0].execution_arn).expect("the definition of the review's execution");
        let c = crate::ops::consequence::gate(def, &r[0].state).expect("gate").on_error(crate::engine::ESCALATED);
        assert!(c.fails_execution, "{c:?}");
    }

    /// Commits an intent for every target before it is acted on; refuses the second.
    struct Intents(Vec<String>);
    impl AuditHook for Intents {
        fn check(&mut self, _: &Mutation) -> Result<(), String> {
            Ok(())
        }
        fn intent(&mut self, _: &Mutation, target: &str) -> Result<(), String> {
            self.0.push(target.to_string());
            if self.0.len() > 1 { Err("disk full".into()) } else { Ok(()) }
        }
        fn record(&mut self, _: &Mutation, _: &str, _: &Result<(), String>) {}
    }

    #[test]
    fn every_target_gets_its_intent_before_the_action_and_a_refused_intent_skips_it() {
        let store = crate::store::Store::in_memory().expect("store");
        let engine = crate::engine::Engine::new(store, crate::engine::tasks::TaskRunner::new(), crate::engine::Clock::Real);
        let mut cp = crate::backend::local::Local::new(engine, std::path::PathBuf::new());
        let mut hook: OnAction = Box::new(Intents(vec![]));
        let out = mutate(&mut cp, &Mutation::Redrive { arns: vec!["arn:a".into(), "arn:b".into()] }, &mut hook);
        let Loaded::Done { failed, .. } = out else { panic!("{out:?}") };
        assert_eq!(failed.len(), 2, "{failed:?}");
        assert!(!failed[0].contains("audit log"), "the first target was tried (and failed on its own): {failed:?}");
        assert!(failed[1].contains("audit log cannot record it") && failed[1].contains("disk full"), "{failed:?}");
    }

    #[test]
    fn audit_loads_bring_the_rows_and_the_inputs_of_the_executions_they_name() {
        let (mut cp, token) = gate();
        let arn = cp.pending_tasks(1).expect("pending").remove(0).execution_arn;
        let entry = crate::audit::AuditEntry::new("dr.a", crate::audit::Source::Console, crate::audit::Action::Claim)
            .execution(arn.clone())
            .token(token);
        crate::audit::record(cp.engine.store.conn(), &entry, Utc::now()).expect("record");
        let out = load(&mut cp, &StageMap::default(), Request::Audit);
        let [Loaded::Audit { rows, inputs }] = out.as_slice() else { panic!("{out:?}") };
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].actor, "dr.a");
        assert!(inputs.contains_key(&arn), "{inputs:?}");
        let out = load(&mut cp, &StageMap::default(), Request::Find("G1".into()));
        let [Loaded::Found { hits, .. }] = out.as_slice() else { panic!("{out:?}") };
        assert_eq!(hits.iter().map(|h| h.arn.as_str()).collect::<Vec<_>>(), vec![arn.as_str()]);
    }

    /// Two local contexts, each its own data directory: a connector that opens a context's
    /// store on first use and reuses the one parked when switching back.
    struct TwoDirs {
        dirs: std::collections::HashMap<String, std::path::PathBuf>,
        parked: std::collections::HashMap<String, Box<dyn ControlPlane>>,
        opened: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    }

    impl Connector for TwoDirs {
        fn connect(&mut self, name: &str) -> Result<Connected, String> {
            let on_action: OnAction = Box::new(|_: &Mutation, _: &str, _: &Result<(), String>| {});
            if let Some(cp) = self.parked.remove(name) {
                return Ok(Connected { cp, on_action, read_only: false, user: "dr.b".into(), theme: None, demo: false });
            }
            let dir = self.dirs.get(name).ok_or_else(|| format!("no context {name:?}"))?;
            let store = crate::store::Store::open(&dir.join("lightbox.db")).map_err(|e| e.to_string())?;
            self.opened.lock().map_err(|e| e.to_string())?.push(name.to_string());
            let engine = crate::engine::Engine::new(store, crate::engine::tasks::TaskRunner::new(), crate::engine::Clock::Real);
            Ok(Connected {
                cp: Box::new(crate::backend::local::Local::new(engine, dir.clone())),
                on_action,
                read_only: false,
                user: "dr.b".into(),
                theme: None,
                demo: false,
            })
        }
        fn park(&mut self, name: &str, cp: Box<dyn ControlPlane>, _: OnAction) {
            self.parked.insert(name.to_string(), cp);
        }
    }

    /// A data directory holding one execution named `name`.
    fn dir_with(root: &std::path::Path, name: &str) -> std::path::PathBuf {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).expect("dir");
        let store = crate::store::Store::open(&dir.join("lightbox.db")).expect("store");
        let mut engine = crate::engine::Engine::new(store, crate::engine::tasks::TaskRunner::new(), crate::engine::Clock::Real);
        let def = r#"{"StartAt":"Wait","States":{"Wait":{"Type":"Task",
            "Resource":"arn:aws:states:::sqs:sendMessage.waitForTaskToken","Parameters":{"t.$":"$$.Task.Token"},"End":true}}}"#;
        let sm = engine.create_state_machine("m", def, None).expect("create");
        engine.start_execution(&sm.arn, Some(name), "{}").expect("start");
        dir
    }

    /// The names of the executions in what came back, by generation.
    fn executions_by_generation(out: &[Output]) -> Vec<(u64, Vec<String>)> {
        out.iter()
            .filter_map(|(l, _, g)| match l {
                Loaded::Executions(e) => Some((*g, e.iter().map(|x| x.name.clone()).collect())),
                _ => None,
            })
            .collect()
    }

    fn collect_until(w: &Worker, mut done: impl FnMut(&[Output]) -> bool) -> Vec<Output> {
        let mut out = vec![];
        let until = Instant::now() + Duration::from_secs(20);
        while !done(&out) && Instant::now() < until {
            if let Ok(o) = w.rx.recv_timeout(Duration::from_millis(50)) {
                out.push(o);
            }
        }
        out
    }

    #[test]
    fn a_switch_of_context_shows_the_other_data_directory_and_never_the_old_ones_results() {
        let root = tempfile::tempdir().expect("tempdir");
        let a = dir_with(root.path(), "in-a");
        let b = dir_with(root.path(), "in-b");
        let opened = std::sync::Arc::new(std::sync::Mutex::new(vec![]));
        let connector = TwoDirs {
            dirs: [("a".to_string(), a.clone()), ("b".to_string(), b)].into_iter().collect(),
            parked: Default::default(),
            opened: opened.clone(),
        };
        let store = crate::store::Store::open(&a.join("lightbox.db")).expect("store a");
        let engine = crate::engine::Engine::new(store, crate::engine::tasks::TaskRunner::new(), crate::engine::Clock::Real);
        let live = crate::backend::local::Local::new(engine, a);
        let hook: OnAction = Box::new(|_: &Mutation, _: &str, _: &Result<(), String>| {});
        let w =
            Worker::spawn_with(Box::new(live), StageMap::default(), hook, Duration::from_secs(60), Some(("a".into(), Box::new(connector))));
        let executions = || Job::Load(Request::Executions(None, false));
        w.send(executions());
        let out = collect_until(&w, |o| !executions_by_generation(o).is_empty());
        assert_eq!(executions_by_generation(&out), vec![(0, vec!["in-a".to_string()])]);

        // A load asked before the switch, in the same batch, is dropped: its result would be a's.
        let _ = w.tx.send(executions());
        let _ = w.tx.send(Job::Switch { name: "b".into(), generation: 1 });
        let _ = w.tx.send(executions());
        let out = collect_until(&w, |o| executions_by_generation(o).iter().any(|(g, _)| *g == 1));
        let switched: Vec<&Loaded> = out.iter().map(|(l, _, _)| l).filter(|l| matches!(l, Loaded::Switched { .. })).collect();
        let [Loaded::Switched { name, backend, generation, .. }] = switched.as_slice() else { panic!("{out:?}") };
        assert_eq!((name.as_str(), backend.as_str(), *generation), ("b", "local", 1));
        let after: Vec<(u64, Vec<String>)> = {
            let at = out.iter().position(|(l, _, _)| matches!(l, Loaded::Switched { .. })).expect("switched");
            executions_by_generation(&out[at..])
        };
        assert_eq!(after, vec![(1, vec!["in-b".to_string()])], "after the switch only b's executions, tagged with its generation");
        // A result before the switch (if the batch split so) is tagged with the old generation.
        let before: Vec<(u64, Vec<String>)> = {
            let at = out.iter().position(|(l, _, _)| matches!(l, Loaded::Switched { .. })).expect("switched");
            executions_by_generation(&out[..at])
        };
        assert!(before.iter().all(|(g, names)| *g == 0 && names == &vec!["in-a".to_string()]), "{before:?}");

        // A context that cannot connect: said so, and b stays live (same generation).
        let _ = w.tx.send(Job::Switch { name: "nowhere".into(), generation: 2 });
        let _ = w.tx.send(executions());
        let out = collect_until(&w, |o| !executions_by_generation(o).is_empty());
        assert!(
            out.iter()
                .any(|(l, _, _)| matches!(l, Loaded::SwitchFailed { name, error } if name == "nowhere" && error.contains("no context"))),
            "{out:?}"
        );
        assert_eq!(executions_by_generation(&out), vec![(1, vec!["in-b".to_string()])]);

        // Back to a: the parked control plane is reused, not a second store on its file.
        let _ = w.tx.send(Job::Switch { name: "a".into(), generation: 3 });
        let _ = w.tx.send(executions());
        let out = collect_until(&w, |o| !executions_by_generation(o).is_empty());
        assert_eq!(executions_by_generation(&out), vec![(3, vec!["in-a".to_string()])]);
        assert_eq!(*opened.lock().expect("opened"), vec!["b".to_string()], "a was parked, not opened again");
        drop(w);
    }

    #[test]
    fn a_switch_splits_a_batch_the_mutations_before_it_run_first_and_its_loads_are_dropped() {
        let batch = vec![
            Job::Load(Request::Reviews),
            Job::Mutate(Mutation::Redrive { arns: vec!["a".into()] }),
            Job::Switch { name: "b".into(), generation: 1 },
            Job::Load(Request::Pulse),
            Job::Mutate(Mutation::Redrive { arns: vec!["b".into()] }),
        ];
        let shape: Vec<String> = coalesce(batch)
            .iter()
            .map(|j| match j {
                Job::Load(r) => format!("load {r:?}"),
                Job::Mutate(Mutation::Redrive { arns }) => format!("redrive {}", arns[0]),
                Job::Switch { name, generation } => format!("switch {name} {generation}"),
                _ => "other".into(),
            })
            .collect();
        assert_eq!(shape, vec!["redrive a", "switch b 1", "redrive b", "load Pulse"]);
    }

    #[test]
    fn newest_load_of_a_kind_wins_and_mutations_come_first() {
        let batch = vec![
            Job::Load(Request::Executions(None, false)),
            Job::Mutate(Mutation::Redrive { arns: vec!["a".into()] }),
            Job::Load(Request::Pulse),
            Job::Load(Request::Executions(Some(crate::history::ExecutionStatus::Failed), false)),
            Job::Mutate(Mutation::Redrive { arns: vec!["b".into()] }),
        ];
        let out = coalesce(batch);
        let shape: Vec<String> = out
            .iter()
            .map(|j| match j {
                Job::Load(r) => format!("load {r:?}"),
                Job::Mutate(Mutation::Redrive { arns }) => format!("redrive {}", arns[0]),
                _ => "other".into(),
            })
            .collect();
        assert_eq!(shape, vec!["redrive a", "redrive b", "load Pulse", "load Executions(Some(Failed), false)"]);
    }
}
