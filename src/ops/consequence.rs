//! What an operator action will do, computed from the definition and where the execution
//! stands: which Catch handles an escalation or a rejection and where it goes, or that
//! nothing handles it and the execution fails; where an approval moves the study; whether a
//! redrive is allowed and whether it would fail again at once. Pure: no I/O.

use chrono::{DateTime, Duration, Utc};
use serde_json::Value;

use crate::asl::model::{Definition, Machine, StateKind, error_matches};
use crate::model::ExecutionSummary;

/// AWS lets an execution be redriven at most this many times.
pub const MAX_REDRIVES: u32 = 1000;
/// AWS lets an execution be redriven within this many days of its stop.
pub const REDRIVE_DAYS: i64 = 14;
/// An execution older than this has exceeded the maximum execution time and cannot be redriven.
pub const MAX_EXECUTION_DAYS: i64 = 365;

/// One sentence for a confirmation, and whether it ends with the execution failing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consequence {
    pub text: String,
    /// The execution fails (nothing catches the error, or it is routed to a Fail state).
    pub fails_execution: bool,
}

impl Consequence {
    fn ok(text: String) -> Consequence {
        Consequence { text, fails_execution: false }
    }
    fn fails(text: String) -> Consequence {
        Consequence { text, fails_execution: true }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// The state the token waits in.
    Gate,
    Map,
    Parallel,
}

/// A Catch as the consequence needs it.
#[derive(Debug, Clone, PartialEq)]
struct Catch {
    errors: Vec<String>,
    next: String,
    /// `Some(error)` when `next` is a Fail state (its static `Error`, or "its error").
    next_fails: Option<String>,
}

/// One state on the way out: the gate, then each Map or Parallel that encloses it.
#[derive(Debug, Clone, PartialEq)]
struct Level {
    state: String,
    kind: Kind,
    next: Option<String>,
    next_fails: Option<String>,
    retry: Vec<(Vec<String>, u32)>,
    catch: Vec<Catch>,
    /// A Map that tolerates failed iterations: how (e.g. `ToleratedFailureCount 5`).
    tolerates: Option<String>,
}

/// Where an answer to a task token waiting in one state leads.
#[derive(Debug, Clone, PartialEq)]
pub struct Gate {
    pub state: String,
    /// The gate first, then the states enclosing it, innermost first.
    levels: Vec<Level>,
}

/// The static error of a Fail state named `name` in `m`, if `name` is a Fail state.
fn fail_error(m: &Machine, name: &str) -> Option<String> {
    match &m.state(name)?.kind {
        StateKind::Fail(f) => Some(f.error.as_ref().and_then(Value::as_str).map(str::to_string).unwrap_or_else(|| "its error".into())),
        _ => None,
    }
}

/// The state that owns scope `scope` (a Map processor or a Parallel branch): (its scope, its name).
fn owner(def: &Definition, scope: usize) -> Option<(usize, String)> {
    def.scopes.iter().enumerate().find_map(|(i, m)| {
        m.states.iter().find_map(|s| match &s.kind {
            StateKind::Map(spec) if spec.processor == scope => Some((i, s.name.clone())),
            StateKind::Parallel { branches } if branches.contains(&scope) => Some((i, s.name.clone())),
            _ => None,
        })
    })
}

fn level(def: &Definition, scope: usize, name: &str, kind: Kind) -> Option<Level> {
    let m = def.scope(scope)?;
    let s = m.state(name)?;
    let kind = match (&s.kind, kind) {
        (_, Kind::Gate) => Kind::Gate,
        (StateKind::Map(_), _) => Kind::Map,
        _ => Kind::Parallel,
    };
    let tolerates = match &s.kind {
        StateKind::Map(spec) if kind == Kind::Map => {
            let positive = |v: &Option<Value>| v.as_ref().is_some_and(|v| v.as_f64().is_none_or(|n| n > 0.0));
            if positive(&spec.tolerated_failure_count) {
                Some(format!("ToleratedFailureCount {}", spec.tolerated_failure_count.as_ref().map(Value::to_string).unwrap_or_default()))
            } else if positive(&spec.tolerated_failure_percentage) {
                Some(format!(
                    "ToleratedFailurePercentage {}",
                    spec.tolerated_failure_percentage.as_ref().map(Value::to_string).unwrap_or_default()
                ))
            } else if spec.tolerated_failure_count_path.is_some() || spec.tolerated_failure_percentage_path.is_some() {
                Some("a tolerated failure count or percentage read from its input".into())
            } else {
                None
            }
        }
        _ => None,
    };
    Some(Level {
        tolerates,
        state: s.name.clone(),
        kind,
        next: if s.end { None } else { s.next.clone() },
        next_fails: s.next.as_deref().filter(|_| !s.end).and_then(|n| fail_error(m, n)),
        retry: s.retry.iter().map(|r| (r.error_equals.clone(), r.max_attempts)).collect(),
        catch: s
            .catch
            .iter()
            .map(|c| Catch { errors: c.error_equals.clone(), next: c.next.clone(), next_fails: fail_error(m, &c.next) })
            .collect(),
    })
}

/// The gate named `state` anywhere in `def` (nested Map and Parallel states included).
pub fn gate(def: &Definition, state: &str) -> Option<Gate> {
    let scope = def.scopes.iter().position(|m| m.state(state).is_some())?;
    let mut levels = vec![level(def, scope, state, Kind::Gate)?];
    let mut cur = scope;
    // Scopes nest at most as deep as there are scopes: the bound keeps a bad definition finite.
    for _ in 0..def.scopes.len() {
        let Some((parent, name)) = owner(def, cur) else { break };
        levels.push(level(def, parent, &name, Kind::Map)?);
        cur = parent;
    }
    Some(Gate { state: state.to_string(), levels })
}

/// An error as the dialog names it (a failure sent without a code has none).
fn shown(err: &str) -> &str {
    if err.is_empty() { "a failure with no error code" } else { err }
}

fn kind_name(k: Kind) -> &'static str {
    match k {
        Kind::Gate => "state",
        Kind::Map => "Map",
        Kind::Parallel => "Parallel",
    }
}

impl Gate {
    /// Whether the gate sits inside a Map or Parallel state.
    pub fn nested(&self) -> bool {
        self.levels.len() > 1
    }

    /// Approve (SendTaskSuccess): the state the study moves to.
    pub fn on_success(&self) -> Consequence {
        let Some(g) = self.levels.first() else { return Consequence::ok(String::new()) };
        match (&g.next, &g.next_fails) {
            (Some(n), Some(e)) => self.fail_from(0, format!("{} succeeds and moves to {n}, a Fail state ({e})", g.state), e.clone()),
            (Some(n), None) => Consequence::ok(format!("{} succeeds and the study moves to {n}", g.state)),
            (None, _) => match self.levels.get(1) {
                Some(p) => {
                    Consequence::ok(format!("{} succeeds and ends this {} {} branch/iteration", g.state, kind_name(p.kind), p.state))
                }
                None => Consequence::ok(format!("{} succeeds and the workflow ends (SUCCEEDED)", g.state)),
            },
        }
    }

    /// Reject or escalate (SendTaskFailure with `error`): the Catch that handles it and where
    /// it goes, or the warning that nothing does and the execution fails.
    pub fn on_error(&self, error: &str) -> Consequence {
        self.error_at(0, error, vec![])
    }

    fn error_at(&self, from: usize, error: &str, mut said: Vec<String>) -> Consequence {
        let mut err = error.to_string();
        for (k, lvl) in self.levels.iter().enumerate().skip(from) {
            if let Some((_, n)) = lvl.retry.iter().find(|(e, n)| *n > 0 && error_matches(e, &err)) {
                let what = if lvl.kind == Kind::Gate { "the review is issued again" } else { "it runs again" };
                said.push(format!("{} retries {} ({what}, up to {n} times), then", lvl.state, shown(&err)));
            }
            match lvl.catch.iter().find(|c| error_matches(&c.errors, &err)) {
                Some(c) => {
                    let how = format!("{}'s Catch [{}] routes {} to {}", lvl.state, c.errors.join(", "), shown(&err), c.next);
                    match &c.next_fails {
                        None => {
                            said.push(how);
                            return Consequence::ok(said.join(" "));
                        }
                        Some(e) => {
                            said.push(format!("{how}, a Fail state ({e})"));
                            err = e.clone();
                            if k + 1 == self.levels.len() {
                                said.push("— the execution FAILS".into());
                                return Consequence::fails(said.join(" "));
                            }
                            let p = &self.levels[k + 1];
                            if let Some(t) = &p.tolerates {
                                said.push(format!("— this iteration of Map {} fails, which {} tolerates ({t}): the Map goes on unless that tolerance is exceeded", p.state, p.state));
                                return Consequence::ok(said.join(" "));
                            }
                            said.push(format!("— the enclosing {} {} fails with {};", kind_name(p.kind), p.state, shown(&err)));
                        }
                    }
                }
                None if k + 1 == self.levels.len() => {
                    said.push(format!("WARNING: nothing catches {} at {} — the execution FAILS", shown(&err), lvl.state));
                    return Consequence::fails(said.join(" "));
                }
                None => {
                    let p = &self.levels[k + 1];
                    if let Some(t) = &p.tolerates {
                        said.push(format!(
                            "nothing at {} catches {}: this iteration of Map {} fails, which {} tolerates ({t}): the Map goes on unless that tolerance is exceeded",
                            lvl.state,
                            shown(&err),
                            p.state,
                            p.state
                        ));
                        return Consequence::ok(said.join(" "));
                    }
                    said.push(format!(
                        "nothing at {} catches {}: the enclosing {} {} fails with it;",
                        lvl.state,
                        shown(&err),
                        kind_name(p.kind),
                        p.state
                    ));
                }
            }
        }
        Consequence::fails(said.join(" "))
    }

    /// Level `k` moved to a Fail state raising `error`: what that does further out.
    fn fail_from(&self, k: usize, head: String, error: String) -> Consequence {
        if k + 1 >= self.levels.len() {
            return Consequence::fails(format!("{head} — the execution FAILS"));
        }
        let p = &self.levels[k + 1];
        self.error_at(k + 1, &error, vec![format!("{head} — the enclosing {} {} fails with {error};", kind_name(p.kind), p.state)])
    }
}

/// Whether an execution can be redriven as AWS allows it, and what a redrive would do.
/// `Err` says why it cannot be redriven.
pub fn redrive(def: Option<&Definition>, row: &ExecutionSummary, now: DateTime<Utc>) -> Result<Consequence, String> {
    let (status, started, stopped, redrive_count, state) =
        (row.status, row.start, row.stop, row.redrive_count, row.current_state.as_deref());
    if !status.is_redrivable() {
        return Err(format!("it is {status}; only FAILED, TIMED_OUT or ABORTED executions can be redriven"));
    }
    if stopped.is_some_and(|s| now - s > Duration::days(REDRIVE_DAYS)) {
        return Err(format!("its redrivable period is over (it stopped more than {REDRIVE_DAYS} days ago)"));
    }
    if now - started > Duration::days(MAX_EXECUTION_DAYS) {
        return Err("it has exceeded the maximum execution time (one year)".into());
    }
    if redrive_count >= MAX_REDRIVES {
        return Err(format!("it was redriven {redrive_count} times already (the limit is {MAX_REDRIVES})"));
    }
    let Some(name) = state else { return Ok(Consequence::ok("resumes from its unsuccessful state (same ARN)".into())) };
    let root = def.map(Definition::root);
    if let Some(e) = root.and_then(|m| fail_error(m, name)) {
        return Ok(Consequence::fails(format!("WARNING: it failed at {name}, a Fail state ({e}): a redrive fails again at once")));
    }
    let next_fail = root.and_then(|m| {
        let s = m.state(name)?;
        let n = s.next.as_deref().filter(|_| !s.end)?;
        fail_error(m, n).map(|e| (n.to_string(), e))
    });
    Ok(match next_fail {
        Some((n, e)) => Consequence::fails(format!(
            "WARNING: resumes at {name}, which leads straight to {n}, a Fail state ({e}): it would fail again at once"
        )),
        None => Consequence::ok(format!("resumes at {name} (same ARN)")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::ExecutionStatus;

    fn demo(name: &str) -> Definition {
        let text = crate::sim::definitions().into_iter().find(|(n, _)| *n == name).map(|(_, t)| t).expect("demo definition");
        Definition::parse_str(text).expect("parses")
    }

    #[test]
    fn escalating_at_the_senior_gate_fails_the_execution() {
        let d = demo("ai-review-gate");
        let g = gate(&d, "SeniorReview").expect("gate");
        let c = g.on_error("Review.Escalated");
        assert!(c.fails_execution, "{c:?}");
        assert!(c.text.contains("nothing catches Review.Escalated at SeniorReview"), "{}", c.text);
    }

    #[test]
    fn every_demo_gate_states_where_each_answer_goes() {
        let mut senior = 0;
        for (name, text) in crate::sim::definitions() {
            let d = Definition::parse_str(text).expect("parses");
            for m in &d.scopes {
                for st in m.states.iter().filter(|s| matches!(&s.kind, StateKind::Task(t) if t.resource.ends_with(".waitForTaskToken"))) {
                    let g = gate(&d, &st.name).expect("gate");
                    assert!(!g.on_success().text.is_empty(), "{name} {}", st.name);
                    let esc = g.on_error("Review.Escalated");
                    match st.name.as_str() {
                        "RadiologistReview" => assert!(!esc.fails_execution && esc.text.contains("to SeniorReview"), "{name}: {esc:?}"),
                        "SeniorReview" | "HoldForReconciliation" | "AcknowledgeCriticalResult" => {
                            senior += usize::from(st.name == "SeniorReview");
                            assert!(esc.fails_execution && esc.text.contains("nothing catches"), "{name} {}: {esc:?}", st.name)
                        }
                        other => panic!("{name}: a gate {other} this test does not know"),
                    }
                }
            }
        }
        assert_eq!(senior, 4, "the four reading workflows have a senior gate");
    }

    #[test]
    fn escalating_at_the_first_gate_routes_to_the_senior_reader() {
        let d = demo("ai-review-gate");
        let c = gate(&d, "RadiologistReview").expect("gate").on_error("Review.Escalated");
        assert!(!c.fails_execution, "{c:?}");
        assert!(c.text.contains("routes Review.Escalated to SeniorReview"), "{}", c.text);
    }

    #[test]
    fn wrong_patient_routes_to_a_fail_state_and_approve_names_the_next_state() {
        let d = demo("ai-review-gate");
        let g = gate(&d, "RadiologistReview").expect("gate");
        let c = g.on_error("Review.WrongPatient");
        assert!(c.fails_execution && c.text.contains("WrongPatient, a Fail state"), "{c:?}");
        assert_eq!(g.on_success().text, "RadiologistReview succeeds and the study moves to Transcribe");
        let c = g.on_error("Review.Rejected");
        assert!(!c.fails_execution && c.text.contains("to DictateManually"), "{c:?}");
    }

    #[test]
    fn a_gate_inside_a_map_says_whether_the_map_catches() {
        let text = r#"{"StartAt":"Each","States":{
            "Each":{"Type":"Map","ItemProcessor":{"StartAt":"Review","States":{
                "Review":{"Type":"Task","Resource":"arn:aws:states:::lambda:invoke.waitForTaskToken","End":true,
                          "Catch":[{"ErrorEquals":["Review.Rejected"],"Next":"Redo"}]},
                "Redo":{"Type":"Pass","End":true}}},
              "Catch":[{"ErrorEquals":["Review.Escalated"],"Next":"Senior"}],"Next":"Done"},
            "Senior":{"Type":"Pass","Next":"Done"},
            "Done":{"Type":"Succeed"}}}"#;
        let d = Definition::parse_str(text).expect("parses");
        let g = gate(&d, "Review").expect("gate");
        assert!(g.nested());
        let c = g.on_error("Review.Escalated");
        assert!(!c.fails_execution, "{c:?}");
        assert!(c.text.contains("the enclosing Map Each fails") && c.text.contains("Each's Catch [Review.Escalated] routes"), "{}", c.text);
        let c = g.on_error("Review.WrongPatient");
        assert!(c.fails_execution && c.text.contains("nothing catches Review.WrongPatient at Each"), "{c:?}");
        assert!(g.on_success().text.contains("ends this Map Each"), "{}", g.on_success().text);
    }

    /// Seen: escalating in a Map that tolerates failed iterations warned "the execution
    /// FAILS", though the Map tolerated it and the execution succeeded.
    #[test]
    fn a_map_that_tolerates_failures_is_said_to_go_on() {
        let text = r#"{"StartAt":"Each","States":{
            "Each":{"Type":"Map","ToleratedFailureCount":5,"ItemProcessor":{"StartAt":"Review","States":{
                "Review":{"Type":"Task","Resource":"arn:aws:states:::lambda:invoke.waitForTaskToken","End":true}}},"End":true}}}"#;
        let d = Definition::parse_str(text).expect("parses");
        let c = gate(&d, "Review").expect("gate").on_error("Review.Escalated");
        assert!(!c.fails_execution, "{c:?}");
        assert!(c.text.contains("tolerates (ToleratedFailureCount 5)"), "{}", c.text);
        let strict = text.replace("\"ToleratedFailureCount\":5,", "\"ToleratedFailureCount\":0,");
        let d = Definition::parse_str(&strict).expect("parses");
        assert!(gate(&d, "Review").expect("gate").on_error("Review.Escalated").fails_execution);
    }

    #[test]
    fn redrive_is_offered_only_when_allowed_and_warns_of_a_fail_state() {
        let d = demo("ai-review-gate");
        let now = Utc::now();
        let row = |status, start: DateTime<Utc>, stop: Option<DateTime<Utc>>, redrives, state: &str| ExecutionSummary {
            arn: "arn:x".into(),
            state_machine_arn: "arn:sm".into(),
            name: "x".into(),
            status,
            start,
            stop,
            input: "{}".into(),
            output: None,
            error: None,
            cause: None,
            redrive_count: redrives,
            redrive: None,
            current_state: Some(state.to_string()),
            state_since: None,
        };
        let r = |row: ExecutionSummary| redrive(Some(&d), &row, now);
        assert!(r(row(ExecutionStatus::Running, now, None, 0, "Transcribe")).is_err());
        assert!(r(row(ExecutionStatus::Succeeded, now, Some(now), 0, "SignReport")).is_err());
        assert!(r(row(ExecutionStatus::Failed, now, Some(now - Duration::days(15)), 0, "Transcribe")).is_err());
        assert!(r(row(ExecutionStatus::Failed, now, Some(now), MAX_REDRIVES, "Transcribe")).is_err());
        assert!(r(row(ExecutionStatus::Failed, now - Duration::days(400), Some(now), 0, "Transcribe")).is_err());
        let c = r(row(ExecutionStatus::Failed, now, Some(now), 0, "WrongPatient")).expect("redrivable");
        assert!(c.fails_execution && c.text.contains("fails again at once"), "{c:?}");
        let c = r(row(ExecutionStatus::TimedOut, now, Some(now), 0, "Transcribe")).expect("redrivable");
        assert!(!c.fails_execution, "{c:?}");
        let straight = Definition::parse_str(
            r#"{"StartAt":"Check","States":{"Check":{"Type":"Pass","Next":"Stop"},"Stop":{"Type":"Fail","Error":"Order.Cancelled"}}}"#,
        )
        .expect("parses");
        let c = redrive(Some(&straight), &row(ExecutionStatus::Aborted, now, Some(now), 0, "Check"), now).expect("redrivable");
        assert!(c.fails_execution && c.text.contains("leads straight to Stop, a Fail state (Order.Cancelled)"), "{c:?}");
    }
}
