//! SLO clocks: how long a study has been on its way from one point of its workflow to another,
//! against a target, from the execution's input and history alone (so any backend's history
//! gives the same clocks).
//!
//! A clock of an SLO exists for an execution whose input matches every `when` entry (a
//! JSONPath on the input and the value it must hold). It starts when the execution started
//! (`from = "start"`) or when the `from` state was first entered, and stops when the execution
//! ended (`to = "end"`) or when the `to` state was first exited after the clock started.
//! Times are read off the history, so a clock started before anyone looked (a late join) has
//! its true age, and a redriven execution keeps the clock it had: a redrive reopens an
//! `end` clock that its failure had closed.
//!
//! Status: `OK`, then `AT_RISK` from `at_risk × target`, then `BREACHED` once the elapsed time
//! is *more* than the target (a study finished exactly at the target met it).
//!
//! In the demo hospital every duration is compressed by the input's `simulation.speed`
//! (simulated minutes per real minute): a clock's elapsed time is the wall time × that speed.
//!
//! Compliance over a window (24 h by default): met ÷ closed, of the clocks that closed in the
//! window (an execution that ended without reaching the `to` state counts only if it was
//! already breached). Burn rate, the error-budget burn: the breached fraction ÷ (1 − objective),
//! where the breached fraction is breached ÷ (closed + open already breached) in the window and
//! the objective defaults to 0.95; 1.0 burns the budget exactly over the window, above 1 faster.
//!
//! The projection is pure: it takes execution summaries and histories, whichever backend read
//! them. The engine's `slo_watch` reads them from the store (`load`, and the `Watcher` that
//! writes the crossings).

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::asl::path::JsonPath;
use crate::history::{ExecutionStatus, HistoryEvent};

/// Default fraction of the target after which a clock is AT_RISK.
pub const DEFAULT_AT_RISK: f64 = 0.8;
/// Default objective (the fraction of clocks that should meet their target).
pub const DEFAULT_OBJECTIVE: f64 = 0.95;
/// Default compliance window.
pub const DEFAULT_WINDOW_SECONDS: i64 = 24 * 3600;
/// Detail types of the events a clock emits.
pub const AT_RISK_EVENT: &str = "SLO At Risk";
pub const BREACHED_EVENT: &str = "SLO Breached";

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SloError {
    #[error("config [[slo]] {slo:?}: `{key}` {message}")]
    Invalid { slo: String, key: &'static str, message: String },
    #[error("store: {0}")]
    Store(String),
}

/// One `[[slo]]` entry of the config, as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SloConfig {
    pub name: String,
    /// JSONPath on the execution input → the value it must hold; all must match.
    #[serde(default)]
    pub when: BTreeMap<String, Value>,
    /// "start" (the execution started) or a state name (first entered).
    #[serde(default = "default_from")]
    pub from: String,
    /// "end" (the execution ended) or a state name (exited).
    #[serde(default = "default_to")]
    pub to: String,
    /// A duration: `90s`, `15m`, `4h`, `2d` (or combined, `1h30m`).
    pub target: String,
    /// Fraction of the target after which the clock is AT_RISK (0 < at_risk ≤ 1).
    #[serde(default = "default_at_risk")]
    pub at_risk: f64,
    /// Fraction of clocks that should meet the target, for the burn rate (0 < objective < 1).
    #[serde(default = "default_objective")]
    pub objective: f64,
    /// Only executions of this state machine (name), if set.
    #[serde(default)]
    pub machine: Option<String>,
    /// A closed-loop clock (a critical result): JSONPath on a state's output → the value it
    /// must hold. The clock starts when, at or after `from`, a state exits with an output
    /// matching all of them (e.g. the report step flags `$.critical = true`: communicated),
    /// and stops at `to` (e.g. the acknowledgement step).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub flagged: BTreeMap<String, Value>,
    /// `"clock"` or `"closed-loop"` (default: closed-loop when `flagged` is set, else clock). A
    /// closed loop (a critical result) has a stage: `flagged` (started, not yet communicated),
    /// `communicated` (the `from` state exited, or the flag was raised), `acknowledged` (the `to`
    /// state exited after that, not through a Catch) or `unacknowledged` (the execution ended first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<SloKind>,
}

/// What an `[[slo]]` measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SloKind {
    /// Time from one point of the workflow to another.
    Clock,
    /// A closed loop (communicated → acknowledged), e.g. a critical result.
    ClosedLoop,
}

impl SloKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SloKind::Clock => "clock",
            SloKind::ClosedLoop => "closed-loop",
        }
    }
}

/// Where a closed loop stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LoopStage {
    /// Started (the `from` state entered), not yet communicated.
    Flagged,
    Communicated,
    Acknowledged,
    /// The execution ended without the acknowledgement.
    Unacknowledged,
}

impl LoopStage {
    pub fn as_str(self) -> &'static str {
        match self {
            LoopStage::Flagged => "flagged",
            LoopStage::Communicated => "communicated",
            LoopStage::Acknowledged => "acknowledged",
            LoopStage::Unacknowledged => "unacknowledged",
        }
    }
}

fn default_from() -> String {
    "start".into()
}
fn default_to() -> String {
    "end".into()
}
fn default_at_risk() -> f64 {
    DEFAULT_AT_RISK
}
fn default_objective() -> f64 {
    DEFAULT_OBJECTIVE
}

/// Where a clock starts or stops.
#[derive(Debug, Clone, PartialEq)]
pub enum Edge {
    /// The execution started (`from`) or ended (`to`).
    Execution,
    State(String),
}

/// A checked SLO.
#[derive(Debug, Clone, PartialEq)]
pub struct Slo {
    pub name: String,
    pub when: Vec<(JsonPath, Value)>,
    pub from: Edge,
    pub to: Edge,
    pub target_ms: i64,
    pub at_risk: f64,
    pub objective: f64,
    pub machine: Option<String>,
    pub flagged: Vec<(JsonPath, Value)>,
    /// A closed loop: its clocks have a [`LoopStage`].
    pub closed_loop: bool,
}

/// Parse a duration: one or more `<number><unit>` with unit s, m, h or d (`90s`, `1h30m`).
pub fn parse_duration(s: &str) -> Option<i64> {
    crate::duration::parse_ms(s).filter(|ms| *ms > 0)
}

impl SloConfig {
    /// Check one entry; the error names the SLO and the bad key.
    pub fn check(&self) -> Result<Slo, SloError> {
        let bad = |key: &'static str, message: String| SloError::Invalid { slo: self.name.clone(), key, message };
        if self.name.trim().is_empty() || self.name.chars().any(|c| c.is_whitespace() || c.is_control() || c == ':') {
            return Err(bad("name", "must be non-empty, without spaces, colons or control characters".into()));
        }
        let paths = |m: &BTreeMap<String, Value>, key: &'static str| -> Result<Vec<(JsonPath, Value)>, SloError> {
            let mut out = Vec::with_capacity(m.len());
            for (p, v) in m {
                let path = JsonPath::parse(p).map_err(|e| bad(key, format!("path {p:?} is not a JSONPath: {e}")))?;
                if !path.is_definite() {
                    return Err(bad(key, format!("path {p:?} must name one value (no wildcards or filters)")));
                }
                out.push((path, v.clone()));
            }
            Ok(out)
        };
        let when = paths(&self.when, "when")?;
        let flagged = paths(&self.flagged, "flagged")?;
        let edge = |s: &str, word: &str, key: &'static str| -> Result<Edge, SloError> {
            if s.trim().is_empty() {
                return Err(bad(key, format!("must be \"{word}\" or a state name")));
            }
            Ok(if s == word { Edge::Execution } else { Edge::State(s.to_string()) })
        };
        let target_ms = parse_duration(&self.target).ok_or_else(|| {
            bad("target", format!("{:?} is not a duration like 90s, 15m, 4h or 2d ({})", self.target, crate::duration::RANGE))
        })?;
        if !(self.at_risk > 0.0 && self.at_risk <= 1.0) {
            return Err(bad("at_risk", format!("{} must be more than 0 and at most 1", self.at_risk)));
        }
        if !(self.objective > 0.0 && self.objective < 1.0) {
            return Err(bad("objective", format!("{} must be between 0 and 1", self.objective)));
        }
        let closed_loop = self.kind.unwrap_or(if flagged.is_empty() { SloKind::Clock } else { SloKind::ClosedLoop }) == SloKind::ClosedLoop;
        let (from, to) = (edge(&self.from, "start", "from")?, edge(&self.to, "end", "to")?);
        if closed_loop && flagged.is_empty() && matches!(&from, Edge::State(_)) && from == to {
            return Err(bad("to", "of a closed loop must be another state than `from` (communicated, then acknowledged)".into()));
        }
        Ok(Slo {
            name: self.name.clone(),
            when,
            from,
            to,
            target_ms,
            at_risk: self.at_risk,
            objective: self.objective,
            machine: self.machine.clone(),
            flagged,
            closed_loop,
        })
    }
}

/// Check every entry (names must be unique).
pub fn check_all(cfgs: &[SloConfig]) -> Result<Vec<Slo>, SloError> {
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(cfgs.len());
    for c in cfgs {
        if !seen.insert(c.name.clone()) {
            return Err(SloError::Invalid { slo: c.name.clone(), key: "name", message: "is used by another [[slo]]".into() });
        }
        out.push(c.check()?);
    }
    Ok(out)
}

/// The demo hospital's SLOs, used when the config has none and the store holds the demo.
/// Reads (AI draft → signed report) per priority × patient class (× modality for STAT ED),
/// the review gate per priority, and publication.
pub fn demo_defaults() -> Vec<SloConfig> {
    let slo = |name: &str, when: &[(&str, &str)], from: &str, to: &str, target: &str| SloConfig {
        name: name.into(),
        when: when.iter().map(|(k, v)| (k.to_string(), Value::String(v.to_string()))).collect(),
        from: from.into(),
        to: to.into(),
        target: target.into(),
        at_risk: DEFAULT_AT_RISK,
        objective: DEFAULT_OBJECTIVE,
        machine: None,
        flagged: BTreeMap::new(),
        kind: None,
    };
    let (p, c, m) = ("$.priority", "$.patientClass", "$.modality");
    vec![
        slo("stat-ed-ct-read", &[(p, "STAT"), (c, "ED"), (m, "CT")], "AwaitAiDraft", "SignReport", "60m"),
        slo("stat-ed-xr-read", &[(p, "STAT"), (c, "ED"), (m, "XR")], "AwaitAiDraft", "SignReport", "30m"),
        slo("stat-ed-read", &[(p, "STAT"), (c, "ED")], "AwaitAiDraft", "SignReport", "60m"),
        slo("stat-inpatient-read", &[(p, "STAT"), (c, "INPATIENT")], "AwaitAiDraft", "SignReport", "1h"),
        slo("urgent-ed-read", &[(p, "URGENT"), (c, "ED")], "AwaitAiDraft", "SignReport", "4h"),
        slo("urgent-inpatient-read", &[(p, "URGENT"), (c, "INPATIENT")], "AwaitAiDraft", "SignReport", "6h"),
        slo("urgent-outpatient-read", &[(p, "URGENT"), (c, "OUTPATIENT")], "AwaitAiDraft", "SignReport", "12h"),
        slo("routine-inpatient-read", &[(p, "ROUTINE"), (c, "INPATIENT")], "AwaitAiDraft", "SignReport", "24h"),
        slo("routine-outpatient-read", &[(p, "ROUTINE"), (c, "OUTPATIENT")], "AwaitAiDraft", "SignReport", "2d"),
        slo("stat-review-gate", &[(p, "STAT")], "RadiologistReview", "RadiologistReview", "15m"),
        slo("urgent-review-gate", &[(p, "URGENT")], "RadiologistReview", "RadiologistReview", "1h"),
        slo("routine-review-gate", &[(p, "ROUTINE")], "RadiologistReview", "RadiologistReview", "8h"),
        slo("publication", &[], "PublishReport", "PublishReport", "10m"),
        // The closed loop of a critical finding: from the moment the signed report's finding
        // goes to the ordering clinician (CommunicateCriticalResult entered; communicated when it
        // exits) to their acknowledgement (AcknowledgeCriticalResult exited): within the hour,
        // AT_RISK at half of it.
        SloConfig {
            at_risk: 0.5,
            kind: Some(SloKind::ClosedLoop),
            ..slo("critical-result", &[], "CommunicateCriticalResult", "AcknowledgeCriticalResult", "60m")
        },
    ]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    Ok,
    AtRisk,
    Breached,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::AtRisk => "AT_RISK",
            Status::Breached => "BREACHED",
        }
    }
}

/// What a projection needs of one execution.
#[derive(Debug, Clone, Copy)]
pub struct ExecView<'a> {
    pub arn: &'a str,
    /// State machine name.
    pub machine: &'a str,
    pub status: ExecutionStatus,
    pub start: DateTime<Utc>,
    pub stop: Option<DateTime<Utc>>,
    pub input: &'a Value,
    /// Its history, oldest first (at least the execution and state entered/exited events).
    pub history: &'a [HistoryEvent],
    /// Where the study is now (the top-level state it is in or stopped in).
    pub current_state: Option<&'a str>,
}

/// The anchors of one clock: all later arithmetic is from these and `now`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Clock {
    pub slo: String,
    #[serde(rename = "executionArn")]
    pub execution_arn: String,
    pub machine: String,
    pub started: DateTime<Utc>,
    /// When it stopped (the `to` edge, or the execution ended without reaching it).
    pub stopped: Option<DateTime<Utc>>,
    /// Stopped at the `to` edge (false: the execution ended elsewhere).
    pub reached: bool,
    pub target_ms: i64,
    pub at_risk: f64,
    /// Simulated time per wall time (1 outside the demo).
    pub speed: f64,
    pub state: Option<String>,
    pub priority: Option<String>,
    /// The study's accession, when the input has one.
    pub accession: Option<String>,
    /// A closed loop's stage (None: a plain clock).
    pub stage: Option<LoopStage>,
}

/// A clock evaluated at `now`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reading {
    pub elapsed_ms: i64,
    pub remaining_ms: i64,
    pub status: Status,
    pub open: bool,
}

impl Clock {
    /// Elapsed (simulated) milliseconds at `now` (stopped clocks stand still).
    pub fn elapsed_ms(&self, now: DateTime<Utc>) -> i64 {
        let end = self.stopped.unwrap_or(now);
        let wall = end.timestamp_millis().saturating_sub(self.started.timestamp_millis()).max(0);
        if self.speed == 1.0 { wall } else { (wall as f64 * self.speed).round() as i64 }
    }

    pub fn read(&self, now: DateTime<Utc>) -> Reading {
        let elapsed_ms = self.elapsed_ms(now);
        let status = if elapsed_ms > self.target_ms {
            Status::Breached
        } else if elapsed_ms as f64 >= self.at_risk * self.target_ms as f64 {
            Status::AtRisk
        } else {
            Status::Ok
        };
        Reading { elapsed_ms, remaining_ms: self.target_ms.saturating_sub(elapsed_ms), status, open: self.stopped.is_none() }
    }

    /// The wall-clock moment the clock enters `status` (None for OK).
    pub fn crossing(&self, status: Status) -> Option<DateTime<Utc>> {
        let sim_ms = match status {
            Status::Ok => return None,
            Status::AtRisk => (self.at_risk * self.target_ms as f64).ceil(),
            // Breached is "more than the target": the first millisecond past it.
            Status::Breached => self.target_ms as f64 + 1.0,
        };
        let wall = (sim_ms / self.speed.max(1e-9)).ceil();
        if !wall.is_finite() || wall > 1e15 {
            return None;
        }
        Some(self.started + Duration::milliseconds(wall as i64))
    }

    pub fn kind(&self) -> SloKind {
        if self.stage.is_some() { SloKind::ClosedLoop } else { SloKind::Clock }
    }

    /// Where the study is, with a closed loop's stage: `communicated · AcknowledgeCriticalResult`.
    pub fn where_now(&self) -> String {
        let state = self.state.as_deref().unwrap_or("—");
        match self.stage {
            Some(s) => format!("{} · {state}", s.as_str()),
            None => state.to_string(),
        }
    }

    fn priority_rank(&self) -> u8 {
        match self.priority.as_deref() {
            Some(p) if p.eq_ignore_ascii_case("STAT") => 0,
            Some(p) if p.eq_ignore_ascii_case("URGENT") => 1,
            Some(p) if p.eq_ignore_ascii_case("ROUTINE") => 2,
            _ => 3,
        }
    }
}

/// The demo's time scale of an input (`simulation.speed`), else 1.
pub fn speed_of(input: &Value) -> f64 {
    input
        .get("simulation")
        .and_then(|s| s.get("speed"))
        .and_then(Value::as_f64)
        .filter(|s| s.is_finite() && *s > 0.0 && *s <= 100_000.0)
        .unwrap_or(1.0)
}

fn is_terminal_event(t: &str) -> bool {
    matches!(t, "ExecutionSucceeded" | "ExecutionFailed" | "ExecutionAborted" | "ExecutionTimedOut")
}

impl Slo {
    pub fn matches(&self, machine: &str, input: &Value) -> bool {
        self.machine.as_deref().is_none_or(|m| m == machine) && self.when.iter().all(|(p, v)| p.select(input).as_ref() == Some(v))
    }

    /// This SLO's clock for one execution, if its input matches and the clock started.
    pub fn clock(&self, x: &ExecView<'_>) -> Option<Clock> {
        if !self.matches(x.machine, x.input) {
            return None;
        }
        let mut fold = Fold::new(self);
        for e in x.history {
            fold.feed(self, e);
        }
        fold.clock(self, &Facts::of(x))
    }

    fn flag_raised(&self, e: &HistoryEvent) -> bool {
        e.event_type.ends_with("StateExited")
            && e.details
                .get("output")
                .and_then(Value::as_str)
                .and_then(|o| serde_json::from_str::<Value>(o).ok())
                .is_some_and(|o| self.flagged.iter().all(|(p, v)| p.select(&o).as_ref() == Some(v)))
    }
}

/// What a clock needs of an execution besides its history (kept by the watcher between ticks
/// instead of the input).
#[derive(Debug, Clone, PartialEq)]
pub struct Facts<'a> {
    pub arn: &'a str,
    pub machine: &'a str,
    pub status: ExecutionStatus,
    pub start: DateTime<Utc>,
    pub stop: Option<DateTime<Utc>>,
    pub current_state: Option<&'a str>,
    pub speed: f64,
    pub priority: Option<&'a str>,
    pub accession: Option<&'a str>,
}

impl<'a> Facts<'a> {
    pub fn of(x: &ExecView<'a>) -> Facts<'a> {
        Facts {
            arn: x.arn,
            machine: x.machine,
            status: x.status,
            start: x.start,
            stop: x.stop,
            current_state: x.current_state,
            speed: speed_of(x.input),
            priority: x.input.get("priority").and_then(Value::as_str),
            accession: x.input.get("accession").and_then(Value::as_str),
        }
    }
}

fn is_failure_event(t: &str) -> bool {
    t.ends_with("Failed") || t.ends_with("TimedOut") || t.ends_with("Aborted")
}

/// One SLO's projection of one execution's history, fed one event at a time (oldest first):
/// [`Slo::clock`] folds a whole history, the engine's SLO watcher only the events after the last it saw.
/// A few ids and times, whatever the history's length.
#[derive(Debug, Clone, PartialEq)]
pub struct Fold {
    /// The `from` edge: the first entry into the `from` state (id, time); time None is the
    /// execution's start.
    anchor: Option<(i64, Option<DateTime<Utc>>)>,
    /// The clock's start: the anchor, or the first exit raising the flag after it.
    start: Option<(i64, Option<DateTime<Utc>>)>,
    /// Closed loop: the result was communicated (the flag raised, or the `from` state exited).
    communicated: bool,
    /// The `to` state exited after the start (a closed loop: after communication, not by a Catch).
    reached: Option<DateTime<Utc>>,
    /// The execution's end, unless a redrive reopened it.
    ended: Option<DateTime<Utc>>,
    /// The previous event was a failure (a state exited right after one exits through a Catch).
    after_failure: bool,
}

impl Fold {
    pub fn new(slo: &Slo) -> Fold {
        let anchor = (slo.from == Edge::Execution).then_some((0, None));
        Fold {
            anchor,
            start: anchor.filter(|_| slo.flagged.is_empty()),
            communicated: anchor.is_some() && slo.flagged.is_empty() && slo.closed_loop,
            reached: None,
            ended: None,
            after_failure: false,
        }
    }

    pub fn feed(&mut self, slo: &Slo, e: &HistoryEvent) {
        let ty = e.event_type.as_str();
        if is_terminal_event(ty) {
            self.ended = Some(e.timestamp);
        } else if ty == "ExecutionRedriven" {
            self.ended = None;
        }
        let after_failure = std::mem::replace(&mut self.after_failure, is_failure_event(ty));
        let is_state = |suffix: &str, edge: &Edge| match edge {
            Edge::State(s) => ty.ends_with(suffix) && e.state_name() == Some(s.as_str()),
            Edge::Execution => false,
        };
        if self.anchor.is_none() {
            if is_state("StateEntered", &slo.from) {
                self.anchor = Some((e.id, Some(e.timestamp)));
                if slo.flagged.is_empty() {
                    self.start = self.anchor;
                }
            }
            return;
        }
        if self.start.is_none() {
            if slo.flag_raised(e) {
                self.start = Some((e.id, Some(e.timestamp)));
                self.communicated = true;
            }
            return;
        }
        if slo.closed_loop && !self.communicated {
            // Acknowledged only after it was communicated: the `from` state's exit.
            self.communicated = is_state("StateExited", &slo.from);
            return;
        }
        if self.reached.is_none() && is_state("StateExited", &slo.to) && !(slo.closed_loop && after_failure) {
            self.reached = Some(e.timestamp);
        }
    }

    /// The clock at this point of the history (None: not started).
    pub fn clock(&self, slo: &Slo, x: &Facts<'_>) -> Option<Clock> {
        let (_, at) = self.start?;
        let started = at.unwrap_or(x.start);
        let mut ended = self.ended;
        if ended.is_none() && x.status.is_terminal() {
            ended = x.stop.or(Some(x.start));
        }
        let (stopped, reached) = match (&slo.to, self.reached) {
            (Edge::Execution, _) => (ended, ended.is_some()),
            (Edge::State(_), Some(t)) => (Some(t), true),
            (Edge::State(_), None) => (ended, false),
        };
        let stage = slo.closed_loop.then_some(match (stopped, reached) {
            (Some(_), true) => LoopStage::Acknowledged,
            (Some(_), false) => LoopStage::Unacknowledged,
            (None, _) if self.communicated => LoopStage::Communicated,
            (None, _) => LoopStage::Flagged,
        });
        Some(Clock {
            slo: slo.name.clone(),
            execution_arn: x.arn.to_string(),
            machine: x.machine.to_string(),
            started,
            stopped: stopped.map(|s| s.max(started)),
            reached,
            target_ms: slo.target_ms,
            at_risk: slo.at_risk,
            speed: x.speed,
            state: x.current_state.map(str::to_string),
            priority: x.priority.map(str::to_string),
            accession: x.accession.map(str::to_string),
            stage,
        })
    }
}

/// Every clock of every SLO for one execution.
pub fn clocks(slos: &[Slo], x: &ExecView<'_>) -> Vec<Clock> {
    slos.iter().filter_map(|s| s.clock(x)).collect()
}

/// Open clocks by time to breach (the least remaining first; then STAT before URGENT before ROUTINE).
pub fn sort_open(clocks: &mut Vec<(&Clock, Reading)>) {
    let mut keyed: Vec<(i64, u8, (&Clock, Reading))> = clocks.drain(..).map(|(c, r)| (r.remaining_ms, c.priority_rank(), (c, r))).collect();
    keyed.sort_unstable_by(|(ra, pa, (a, _)), (rb, pb, (b, _))| {
        ra.cmp(rb).then(pa.cmp(pb)).then_with(|| a.execution_arn.cmp(&b.execution_arn)).then_with(|| a.slo.cmp(&b.slo))
    });
    clocks.extend(keyed.into_iter().map(|(_, _, x)| x));
}

/// Read every clock at `now`; the open ones sorted by time to breach.
pub fn open_readings(all: &[Clock], now: DateTime<Utc>) -> Vec<(&Clock, Reading)> {
    let mut v: Vec<(&Clock, Reading)> = all.iter().filter(|c| c.stopped.is_none()).map(|c| (c, c.read(now))).collect();
    sort_open(&mut v);
    v
}

/// Compliance and burn rate of one SLO over a window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Compliance {
    pub name: String,
    pub open: usize,
    #[serde(rename = "atRisk")]
    pub at_risk: usize,
    /// Open clocks already past their target.
    pub breaching: usize,
    pub closed: usize,
    pub met: usize,
    /// met ÷ closed (None when nothing closed in the window).
    pub compliance: Option<f64>,
    /// breached fraction ÷ (1 − objective).
    #[serde(rename = "burnRate")]
    pub burn_rate: Option<f64>,
    pub objective: f64,
    #[serde(rename = "windowSeconds")]
    pub window_seconds: i64,
}

pub fn compliance(slos: &[Slo], all: &[Clock], now: DateTime<Utc>, window: Duration) -> Vec<Compliance> {
    let since = now - window;
    let mut out: Vec<Compliance> = slos
        .iter()
        .map(|s| Compliance {
            name: s.name.clone(),
            open: 0,
            at_risk: 0,
            breaching: 0,
            closed: 0,
            met: 0,
            compliance: None,
            burn_rate: None,
            objective: s.objective,
            window_seconds: window.num_seconds(),
        })
        .collect();
    let index: std::collections::HashMap<&str, usize> = slos.iter().enumerate().map(|(i, s)| (s.name.as_str(), i)).collect();
    for k in all {
        let Some(c) = index.get(k.slo.as_str()).and_then(|&i| out.get_mut(i)) else { continue };
        let r = k.read(now);
        match k.stopped {
            None => {
                c.open += 1;
                match r.status {
                    Status::AtRisk => c.at_risk += 1,
                    Status::Breached => c.breaching += 1,
                    Status::Ok => {}
                }
            }
            Some(t) if t >= since && t <= now => {
                let breached = r.status == Status::Breached;
                if k.reached || breached {
                    c.closed += 1;
                    if !breached {
                        c.met += 1;
                    }
                }
            }
            Some(_) => {}
        }
    }
    for c in &mut out {
        if c.closed > 0 {
            c.compliance = Some(c.met as f64 / c.closed as f64);
        }
        let total = c.closed + c.breaching;
        if total > 0 {
            let bad = (c.closed - c.met + c.breaching) as f64 / total as f64;
            c.burn_rate = Some(bad / (1.0 - c.objective));
        }
    }
    out
}

/// A clock's JSON entry (`slo list --json`).
pub fn clock_json(c: &Clock, r: &Reading) -> Value {
    json!({
        "executionArn": c.execution_arn,
        "name": c.slo,
        "status": r.status.as_str(),
        "open": r.open,
        "targetSeconds": c.target_ms as f64 / 1000.0,
        "elapsedSeconds": r.elapsed_ms as f64 / 1000.0,
        "remainingSeconds": r.remaining_ms as f64 / 1000.0,
        "state": c.state,
        "stateMachine": c.machine,
        "priority": c.priority,
        "accession": c.accession,
        "startedAt": crate::events::time(c.started),
        "speed": c.speed,
        "kind": c.kind().as_str(),
        "stage": c.stage.map(LoopStage::as_str),
    })
}

/// The events a clock has earned by `now`: (event id, detail type, time it happened, detail).
pub fn crossings(c: &Clock, now: DateTime<Utc>) -> Vec<(String, &'static str, DateTime<Utc>, Value)> {
    let r = c.read(now);
    let mut out = vec![];
    for (status, detail_type) in [(Status::AtRisk, AT_RISK_EVENT), (Status::Breached, BREACHED_EVENT)] {
        if r.status < status {
            continue;
        }
        let Some(at) = c.crossing(status) else { continue };
        let id = format!("slo:{}:{}:{}", c.slo, c.execution_arn, status.as_str());
        let detail = json!({
            "name": c.slo,
            "executionArn": c.execution_arn,
            "stateMachine": c.machine,
            "status": status.as_str(),
            "targetSeconds": c.target_ms as f64 / 1000.0,
            "elapsedSeconds": c.read(at).elapsed_ms as f64 / 1000.0,
            "state": c.state,
            "priority": c.priority,
            "stage": c.stage.map(LoopStage::as_str),
        });
        out.push((id, detail_type, at, detail));
    }
    out
}

/// A duration for people: `-5m12s`, `1h05m`, `2d3h`, `45s`.
pub fn human_ms(ms: i64) -> String {
    let sign = if ms < 0 { "-" } else { "" };
    let s = ms.unsigned_abs() / 1000;
    let (d, h, m, sec) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    let body = if d > 0 {
        format!("{d}d{h}h")
    } else if h > 0 {
        format!("{h}h{m:02}m")
    } else if m > 0 {
        format!("{m}m{sec:02}s")
    } else {
        format!("{sec}s")
    };
    format!("{sign}{body}")
}

// ----- from summaries and histories ---------------------------------------------

/// The SLOs in force: the config's, else the demo's when the store holds the demo.
pub fn in_force(cfgs: &[SloConfig], store_holds_demo: bool) -> Result<Vec<Slo>, SloError> {
    if cfgs.is_empty() && store_holds_demo {
        return check_all(&demo_defaults());
    }
    check_all(cfgs)
}

/// Every clock of the executions in `rows` that are running or stopped within `window` of
/// `now`; `history` gives an execution's history (oldest first), asked only for executions
/// some SLO matches.
pub fn collect<E>(
    rows: &[crate::model::ExecutionSummary],
    slos: &[Slo],
    now: DateTime<Utc>,
    window: Duration,
    mut history: impl FnMut(&str) -> Result<Vec<HistoryEvent>, E>,
) -> Result<Vec<Clock>, E> {
    let since = now - window;
    let mut out = vec![];
    for r in rows {
        let live = !r.status.is_terminal() || r.stop.is_some_and(|s| s >= since);
        if !live || slos.is_empty() {
            continue;
        }
        let machine = r.state_machine_arn.rsplit(':').next().unwrap_or(&r.state_machine_arn);
        let input: Value = serde_json::from_str(&r.input).unwrap_or(Value::Null);
        if !slos.iter().any(|s| s.matches(machine, &input)) {
            continue;
        }
        let history = history(&r.arn)?;
        let view = ExecView {
            arn: &r.arn,
            machine,
            status: r.status,
            start: r.start,
            stop: r.stop,
            input: &input,
            history: &history,
            current_state: r.current_state.as_deref(),
        };
        out.extend(clocks(slos, &view));
    }
    Ok(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use chrono::TimeZone;

    pub(crate) fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 25, 10, 0, 0).single().expect("time")
    }

    fn ev(id: i64, secs: i64, ty: &str, name: Option<&str>) -> HistoryEvent {
        HistoryEvent {
            id,
            previous_event_id: id - 1,
            timestamp: t0() + Duration::seconds(secs),
            event_type: ty.into(),
            details: name.map(|n| json!({"name": n})).unwrap_or(Value::Null),
        }
    }

    pub(crate) fn cfg(name: &str, when: &[(&str, &str)], from: &str, to: &str, target: &str) -> SloConfig {
        SloConfig {
            name: name.into(),
            when: when.iter().map(|(k, v)| (k.to_string(), json!(v))).collect(),
            from: from.into(),
            to: to.into(),
            target: target.into(),
            at_risk: 0.8,
            objective: 0.95,
            machine: None,
            flagged: BTreeMap::new(),
            kind: None,
        }
    }

    fn view<'a>(input: &'a Value, history: &'a [HistoryEvent], status: ExecutionStatus) -> ExecView<'a> {
        ExecView {
            arn: "arn:aws:states:us-east-1:000000000000:execution:m:x",
            machine: "m",
            status,
            start: t0(),
            stop: None,
            input,
            history,
            current_state: Some("Read"),
        }
    }

    #[test]
    fn durations_parse_and_bad_ones_are_refused() {
        assert_eq!(parse_duration("90s"), Some(90_000));
        assert_eq!(parse_duration("15m"), Some(900_000));
        assert_eq!(parse_duration("4h"), Some(14_400_000));
        assert_eq!(parse_duration("2d"), Some(172_800_000));
        assert_eq!(parse_duration("1h30m"), Some(5_400_000));
        for bad in ["", "60", "m", "5x", "0s", "-5m", "99999999999999999999d"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn validation_names_the_slo_and_the_key() {
        let mut c = cfg("stat", &[], "start", "end", "soon");
        let e = c.check().unwrap_err().to_string();
        assert!(e.contains("\"stat\"") && e.contains("`target`"), "{e}");
        c.target = "1h".into();
        c.at_risk = 1.5;
        assert!(c.check().unwrap_err().to_string().contains("`at_risk`"));
        c.at_risk = 0.8;
        c.when.insert("priority".into(), json!("STAT"));
        assert!(c.check().unwrap_err().to_string().contains("`when`"));
        c.when.clear();
        c.from = "".into();
        assert!(c.check().unwrap_err().to_string().contains("`from`"));
        let dup = check_all(&[cfg("a", &[], "start", "end", "1m"), cfg("a", &[], "start", "end", "2m")]).unwrap_err();
        assert!(dup.to_string().contains("`name`"));
        assert!(check_all(&demo_defaults()).is_ok());
    }

    #[test]
    fn toml_entries_deserialize_as_the_issue_writes_them() {
        #[derive(Deserialize)]
        struct C {
            slo: Vec<SloConfig>,
        }
        let c: C = toml::from_str(
            r#"
            [[slo]]
            name = "stat-ed-ct-read"
            when = { "$.priority" = "STAT", "$.patientClass" = "ED", "$.modality" = "CT" }
            from = "start"
            to = "SignReport"
            target = "60m"
            at_risk = 0.8
            "#,
        )
        .expect("toml");
        let s = c.slo[0].check().expect("valid");
        assert_eq!(s.target_ms, 3_600_000);
        assert_eq!(s.to, Edge::State("SignReport".into()));
        assert!(s.matches("any", &json!({"priority": "STAT", "patientClass": "ED", "modality": "CT"})));
        assert!(!s.matches("any", &json!({"priority": "STAT", "patientClass": "ED", "modality": "XR"})));
    }

    #[test]
    fn priorities_pick_their_own_slo_and_sort_first_on_ties() {
        let slos = check_all(&[
            cfg("stat", &[("$.priority", "STAT")], "start", "end", "60m"),
            cfg("routine", &[("$.priority", "ROUTINE")], "start", "end", "60m"),
        ])
        .expect("slos");
        let h = [ev(1, 0, "ExecutionStarted", None)];
        let stat_in = json!({"priority": "STAT"});
        let routine_in = json!({"priority": "ROUTINE"});
        let stat = clocks(&slos, &view(&stat_in, &h, ExecutionStatus::Running));
        let mut routine = clocks(&slos, &view(&routine_in, &h, ExecutionStatus::Running));
        assert_eq!(stat.iter().map(|c| c.slo.as_str()).collect::<Vec<_>>(), ["stat"]);
        assert_eq!(routine.iter().map(|c| c.slo.as_str()).collect::<Vec<_>>(), ["routine"]);
        routine[0].execution_arn = "a-first-by-name".into();
        let mut all = routine;
        all.extend(stat);
        let open = open_readings(&all, t0() + Duration::minutes(10));
        assert_eq!(open[0].0.slo, "stat", "the same time to breach: STAT first");
    }

    #[test]
    fn status_edges_at_risk_and_exactly_at_target() {
        let slos = check_all(&[cfg("s", &[], "start", "end", "100s")]).expect("slos");
        let h = [ev(1, 0, "ExecutionStarted", None)];
        let input = json!({});
        let c = slos[0].clock(&view(&input, &h, ExecutionStatus::Running)).expect("clock");
        let at = |s: i64| c.read(t0() + Duration::seconds(s));
        assert_eq!(at(79).status, Status::Ok);
        assert_eq!(at(80).status, Status::AtRisk);
        assert_eq!(at(100).status, Status::AtRisk, "exactly at the target is not a breach");
        assert_eq!(at(100).remaining_ms, 0);
        assert_eq!(c.read(t0() + Duration::milliseconds(100_001)).status, Status::Breached);
        assert_eq!(at(130).remaining_ms, -30_000);
        assert_eq!(c.crossing(Status::AtRisk), Some(t0() + Duration::seconds(80)));
        assert_eq!(c.crossing(Status::Breached), Some(t0() + Duration::milliseconds(100_001)));
    }

    #[test]
    fn late_join_state_clock_starts_at_its_first_entry_and_stops_at_exit() {
        let slos = check_all(&[cfg("read", &[], "Read", "Sign", "10m")]).expect("slos");
        let input = json!({});
        let mut h = vec![
            ev(1, 0, "ExecutionStarted", None),
            ev(2, 0, "PassStateEntered", Some("Order")),
            ev(3, 300, "PassStateExited", Some("Order")),
            ev(4, 300, "TaskStateEntered", Some("Read")),
        ];
        // Not started before the `from` state is entered.
        assert!(slos[0].clock(&view(&input, &h[..3], ExecutionStatus::Running)).is_none());
        // Joined late (an hour after it started): its true age.
        let c = slos[0].clock(&view(&input, &h, ExecutionStatus::Running)).expect("clock");
        assert_eq!(c.started, t0() + Duration::seconds(300));
        assert_eq!(c.read(t0() + Duration::seconds(3600)).status, Status::Breached);
        h.push(ev(5, 400, "TaskStateExited", Some("Read")));
        h.push(ev(6, 400, "TaskStateEntered", Some("Sign")));
        h.push(ev(7, 500, "TaskStateExited", Some("Sign")));
        let c = slos[0].clock(&view(&input, &h, ExecutionStatus::Running)).expect("clock");
        assert!(c.reached);
        let r = c.read(t0() + Duration::days(3));
        assert_eq!((r.open, r.elapsed_ms, r.status), (false, 200_000, Status::Ok));
    }

    #[test]
    fn a_redrive_reopens_an_end_clock_and_keeps_its_start() {
        let slos = check_all(&[cfg("e2e", &[], "start", "end", "1h")]).expect("slos");
        let input = json!({});
        let mut h = vec![ev(1, 0, "ExecutionStarted", None), ev(2, 600, "ExecutionFailed", None)];
        let c = slos[0].clock(&view(&input, &h, ExecutionStatus::Failed)).expect("clock");
        assert_eq!(c.stopped, Some(t0() + Duration::seconds(600)));
        assert!(c.reached);
        h.push(ev(3, 1200, "ExecutionRedriven", None));
        let c = slos[0].clock(&view(&input, &h, ExecutionStatus::Running)).expect("clock");
        assert_eq!((c.started, c.stopped), (t0(), None));
        assert_eq!(c.read(t0() + Duration::minutes(50)).status, Status::AtRisk);
        h.push(ev(4, 4000, "ExecutionSucceeded", None));
        let c = slos[0].clock(&view(&input, &h, ExecutionStatus::Succeeded)).expect("clock");
        assert_eq!(c.read(t0() + Duration::days(1)).status, Status::Breached);
    }

    #[test]
    fn a_critical_result_starts_a_closed_loop_clock_at_the_flag_and_stops_at_the_acknowledgement() {
        let mut c = cfg("critical-result", &[], "start", "AcknowledgeCritical", "30m");
        c.flagged.insert("$.critical".into(), json!(true));
        let slos = check_all(&[c]).expect("slos");
        let input = json!({});
        let exited = |id: i64, secs: i64, name: &str, output: Value| HistoryEvent {
            id,
            previous_event_id: id - 1,
            timestamp: t0() + Duration::seconds(secs),
            event_type: "TaskStateExited".into(),
            details: json!({"name": name, "output": output.to_string()}),
        };
        let mut h = vec![ev(1, 0, "ExecutionStarted", None), exited(2, 60, "DraftReport", json!({"critical": false}))];
        assert!(slos[0].clock(&view(&input, &h, ExecutionStatus::Running)).is_none(), "not flagged: no clock");
        h.push(exited(3, 120, "SignReport", json!({"critical": true})));
        let k = slos[0].clock(&view(&input, &h, ExecutionStatus::Running)).expect("communicated: the clock runs");
        assert_eq!((k.started, k.stopped), (t0() + Duration::seconds(120), None));
        h.push(ev(4, 600, "TaskStateEntered", Some("AcknowledgeCritical")));
        h.push(exited(5, 900, "AcknowledgeCritical", json!({"critical": true})));
        let k = slos[0].clock(&view(&input, &h, ExecutionStatus::Running)).expect("clock");
        assert!(k.reached);
        assert_eq!(k.read(t0() + Duration::days(1)).elapsed_ms, 780_000, "acknowledged 13 minutes after it was communicated");
        let mut bad = cfg("x", &[], "start", "end", "1m");
        bad.flagged.insert("$.a[*]".into(), json!(true));
        assert!(bad.check().unwrap_err().to_string().contains("`flagged`"));
    }

    fn loop_cfg() -> SloConfig {
        SloConfig {
            at_risk: 0.5,
            kind: Some(SloKind::ClosedLoop),
            ..cfg("critical-result", &[], "CommunicateCriticalResult", "AcknowledgeCriticalResult", "60m")
        }
    }

    fn exited(id: i64, secs: i64, name: &str) -> HistoryEvent {
        HistoryEvent { details: json!({"name": name, "output": "{}"}), ..ev(id, secs, "TaskStateExited", Some(name)) }
    }

    #[test]
    fn a_closed_loop_goes_flagged_communicated_acknowledged_and_breaches_late() {
        let slos = check_all(&[loop_cfg()]).expect("slos");
        let input = json!({});
        let mut h =
            vec![ev(1, 0, "ExecutionStarted", None), ev(2, 60, "TaskStateEntered", Some("SignReport")), exited(3, 70, "SignReport")];
        assert!(slos[0].clock(&view(&input, &h, ExecutionStatus::Running)).is_none(), "no critical finding: no loop");
        h.push(ev(4, 100, "TaskStateEntered", Some("CommunicateCriticalResult")));
        let k = slos[0].clock(&view(&input, &h, ExecutionStatus::Running)).expect("flagged");
        assert_eq!((k.started, k.stage), (t0() + Duration::seconds(100), Some(LoopStage::Flagged)));
        h.push(exited(5, 160, "CommunicateCriticalResult"));
        h.push(ev(6, 160, "TaskStateEntered", Some("AcknowledgeCriticalResult")));
        let k = slos[0].clock(&view(&input, &h, ExecutionStatus::Running)).expect("communicated");
        assert_eq!(k.stage, Some(LoopStage::Communicated));
        assert_eq!(k.where_now(), "communicated · Read");
        // AT_RISK at half the hour, BREACHED past it, while nobody acknowledges.
        assert_eq!(k.read(t0() + Duration::seconds(100 + 29 * 60)).status, Status::Ok);
        assert_eq!(k.read(t0() + Duration::seconds(100 + 30 * 60)).status, Status::AtRisk);
        assert_eq!(k.read(t0() + Duration::seconds(100 + 3601)).status, Status::Breached);
        let j = clock_json(&k, &k.read(t0() + Duration::minutes(10)));
        assert_eq!((j["kind"].as_str(), j["stage"].as_str()), (Some("closed-loop"), Some("communicated")));
        // Acknowledged 70 minutes after the finding went out: the loop closed, breached.
        h.push(exited(7, 100 + 70 * 60, "AcknowledgeCriticalResult"));
        let k = slos[0].clock(&view(&input, &h, ExecutionStatus::Running)).expect("acknowledged");
        assert_eq!((k.stage, k.reached), (Some(LoopStage::Acknowledged), true));
        let r = k.read(t0() + Duration::days(2));
        assert_eq!((r.open, r.elapsed_ms, r.status), (false, 70 * 60_000, Status::Breached));
        // A plain clock has no stage.
        let plain = check_all(&[cfg("e2e", &[], "start", "end", "1h")]).expect("slos");
        let p = plain[0].clock(&view(&input, &h, ExecutionStatus::Running)).expect("clock");
        assert_eq!((p.stage, p.kind()), (None, SloKind::Clock));
        assert_eq!(clock_json(&p, &p.read(t0()))["stage"], Value::Null);
    }

    #[test]
    fn a_late_join_sees_the_loop_at_its_true_age() {
        let slos = check_all(&[loop_cfg()]).expect("slos");
        let input = json!({});
        let h = vec![
            ev(1, 0, "ExecutionStarted", None),
            ev(2, 600, "TaskStateEntered", Some("CommunicateCriticalResult")),
            exited(3, 601, "CommunicateCriticalResult"),
            ev(4, 601, "TaskStateEntered", Some("AcknowledgeCriticalResult")),
        ];
        // The console opens three hours after the study started, 2h50m after the call.
        let k = slos[0].clock(&view(&input, &h, ExecutionStatus::Running)).expect("clock");
        let r = k.read(t0() + Duration::hours(3));
        assert_eq!((r.elapsed_ms, r.status, r.open), ((3 * 3600 - 600) * 1000, Status::Breached, true));
        assert_eq!(crossings(&k, t0() + Duration::hours(3)).len(), 2, "both thresholds were crossed before anyone looked");
    }

    #[test]
    fn an_acknowledgement_before_communication_or_by_a_catch_does_not_close_the_loop() {
        let slos = check_all(&[loop_cfg()]).expect("slos");
        let input = json!({});
        // An acknowledgement recorded before the result was communicated (e.g. a parallel branch):
        // not the acknowledgement of this result.
        let h = vec![
            ev(1, 0, "ExecutionStarted", None),
            ev(2, 10, "TaskStateEntered", Some("CommunicateCriticalResult")),
            ev(3, 20, "TaskStateEntered", Some("AcknowledgeCriticalResult")),
            exited(4, 30, "AcknowledgeCriticalResult"),
            exited(5, 40, "CommunicateCriticalResult"),
        ];
        let k = slos[0].clock(&view(&input, &h, ExecutionStatus::Running)).expect("clock");
        assert_eq!((k.stage, k.stopped), (Some(LoopStage::Communicated), None));
        // The gate timed out and a Catch moved on: the state exits, but nobody acknowledged.
        let mut h = h[..2].to_vec();
        h.push(exited(3, 20, "CommunicateCriticalResult"));
        h.push(ev(4, 20, "TaskStateEntered", Some("AcknowledgeCriticalResult")));
        h.push(ev(5, 5000, "TaskTimedOut", None));
        h.push(exited(6, 5000, "AcknowledgeCriticalResult"));
        let k = slos[0].clock(&view(&input, &h, ExecutionStatus::Running)).expect("clock");
        assert_eq!(k.stage, Some(LoopStage::Communicated), "still open");
        // The execution ends without it: unacknowledged, breached (it ran past the hour).
        h.push(ev(7, 9000, "ExecutionFailed", None));
        let k = slos[0].clock(&view(&input, &h, ExecutionStatus::Failed)).expect("clock");
        assert_eq!((k.stage, k.reached), (Some(LoopStage::Unacknowledged), false));
        assert_eq!(k.read(t0() + Duration::days(1)).status, Status::Breached);
        // A plain clock keeps its old meaning: any exit of `to` stops it.
        let plain = check_all(&[cfg("gate", &[], "AcknowledgeCriticalResult", "AcknowledgeCriticalResult", "1h")]).expect("slos");
        assert!(plain[0].clock(&view(&input, &h, ExecutionStatus::Failed)).is_some_and(|c| c.reached));
        // A closed loop cannot start and stop at the same state.
        let same = SloConfig { kind: Some(SloKind::ClosedLoop), ..cfg("x", &[], "Call", "Call", "1h") };
        assert!(same.check().unwrap_err().to_string().contains("`to`"));
        let c: SloConfig =
            toml::from_str("name = \"x\"\nkind = \"closed-loop\"\nfrom = \"A\"\nto = \"B\"\ntarget = \"1h\"\n").expect("toml");
        assert!(c.check().expect("valid").closed_loop);
        assert!(toml::from_str::<SloConfig>("name = \"x\"\nkind = \"loop\"\ntarget = \"1h\"\n").is_err());
    }

    #[test]
    fn simulated_speed_scales_elapsed_time() {
        let slos = check_all(&[cfg("s", &[], "start", "end", "60m")]).expect("slos");
        let h = [ev(1, 0, "ExecutionStarted", None)];
        let input = json!({"simulation": {"speed": 60.0}});
        let c = slos[0].clock(&view(&input, &h, ExecutionStatus::Running)).expect("clock");
        assert_eq!(c.read(t0() + Duration::seconds(30)).elapsed_ms, 1_800_000);
        assert_eq!(c.read(t0() + Duration::seconds(61)).status, Status::Breached);
        assert_eq!(c.crossing(Status::AtRisk), Some(t0() + Duration::seconds(48)));
    }

    #[test]
    fn compliance_and_burn_rate_over_the_window() {
        let slos = check_all(&[cfg("s", &[], "start", "end", "10m")]).expect("slos");
        let now = t0() + Duration::hours(2);
        let mk = |start_min: i64, stop_min: Option<i64>, reached: bool| Clock {
            slo: "s".into(),
            execution_arn: format!("x{start_min}"),
            machine: "m".into(),
            started: t0() + Duration::minutes(start_min),
            stopped: stop_min.map(|m| t0() + Duration::minutes(m)),
            reached,
            target_ms: 600_000,
            at_risk: 0.8,
            speed: 1.0,
            state: None,
            priority: None,
            accession: None,
            stage: None,
        };
        let all = vec![
            mk(0, Some(5), true),    // met
            mk(10, Some(15), true),  // met
            mk(20, Some(40), true),  // breached
            mk(30, Some(31), false), // ended elsewhere, not breached: not counted
            mk(115, None, true),     // open, OK
            mk(100, None, true),     // open, breaching
        ];
        let c = &compliance(&slos, &all, now, Duration::hours(24))[0];
        assert_eq!((c.open, c.breaching, c.closed, c.met), (2, 1, 3, 2));
        assert_eq!(c.compliance, Some(2.0 / 3.0));
        // bad = 1 closed breached + 1 open breaching, of 4: 0.5 / 0.05 = 10.
        assert!((c.burn_rate.unwrap_or_default() - 10.0).abs() < 1e-9);
        // A window that ends before any closed: nothing closed.
        let c = &compliance(&slos, &all, now, Duration::minutes(30))[0];
        assert_eq!((c.closed, c.compliance), (0, None));
    }

    #[test]
    fn crossings_name_the_transition_and_come_once_each() {
        let slos = check_all(&[cfg("s", &[], "start", "end", "100s")]).expect("slos");
        let h = [ev(1, 0, "ExecutionStarted", None)];
        let input = json!({});
        let c = slos[0].clock(&view(&input, &h, ExecutionStatus::Running)).expect("clock");
        assert!(crossings(&c, t0() + Duration::seconds(10)).is_empty());
        let x = crossings(&c, t0() + Duration::seconds(90));
        assert_eq!(x.len(), 1);
        assert_eq!(x[0].0, "slo:s:arn:aws:states:us-east-1:000000000000:execution:m:x:AT_RISK");
        let x = crossings(&c, t0() + Duration::seconds(200));
        assert_eq!(x.iter().map(|e| e.1).collect::<Vec<_>>(), [AT_RISK_EVENT, BREACHED_EVENT]);
        // The events' time is the crossing, not when it was seen: a retry writes the same event.
        assert_eq!(x[1].2, t0() + Duration::milliseconds(100_001));
    }

    #[test]
    fn recomputing_many_open_clocks_is_cheap() {
        let c = Clock {
            slo: "s".into(),
            execution_arn: "x".into(),
            machine: "m".into(),
            started: t0(),
            stopped: None,
            reached: false,
            target_ms: 3_600_000,
            at_risk: 0.8,
            speed: 1.0,
            state: None,
            priority: None,
            accession: None,
            stage: None,
        };
        let all: Vec<Clock> = (0..20_000)
            .map(|i| {
                let mut k = c.clone();
                k.started = t0() + Duration::seconds(i % 5000);
                k
            })
            .collect();
        let open = open_readings(&all, t0() + Duration::hours(1));
        assert_eq!(open.len(), 20_000);
        assert!(open.windows(2).all(|w| w[0].1.remaining_ms <= w[1].1.remaining_ms));
    }
}
