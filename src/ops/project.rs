//! Studies and reviews, projected from executions and task tokens.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use serde_json::Value;

use super::{Ending, Exception, Priority, Stage, StageMap};
use crate::history::ExecutionStatus;
use crate::model::{ExecutionSummary, PendingTask};

/// Patient identifiers: PHI, masked unless an operator reveals them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Patient {
    pub name: String,
    pub mrn: String,
    pub birth_date: String,
}

impl Patient {
    /// The `patient` object of an order (execution input), as the demo's orders carry it.
    pub fn of_input(input: &Value) -> Patient {
        let p = input.get("patient").unwrap_or(&Value::Null);
        Patient { name: s(p, "name"), mrn: s(p, "mrn"), birth_date: s(p, "birthDate") }
    }

    /// Whether any of its identifiers (or a word of the name) is in `text`: the cheap test
    /// before masking free text.
    pub fn appears_in(&self, text: &str) -> bool {
        let words = self.name.split(|c: char| c.is_whitespace() || c == ',');
        [self.mrn.as_str(), self.birth_date.as_str()].into_iter().chain(words).any(|w| w.chars().count() >= 3 && text.contains(w))
    }

    /// Its identifier values and the words of the name, for masking free text about the study.
    pub fn identifiers(&self) -> Vec<String> {
        let mut v = vec![self.name.clone(), self.mrn.clone(), self.birth_date.clone()];
        let words: Vec<&str> = self.name.split(|c: char| c.is_whitespace() || c == ',').filter(|w| !w.is_empty()).collect();
        if words.len() > 1 {
            v.extend(words.into_iter().map(str::to_string));
        }
        v.retain(|x| x.chars().count() >= 3);
        v.sort_by_key(|x| std::cmp::Reverse(x.len()));
        v
    }
}

/// One imaging study as the Pipelines view shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Study {
    pub accession: String,
    pub modality: String,
    pub body_part: String,
    pub priority: Priority,
    pub patient_class: String,
    pub site: String,
    pub stage: Option<Stage>,
    pub exception: Option<Exception>,
    pub state: String,
    pub since: Option<DateTime<Utc>>,
    pub status: ExecutionStatus,
    pub execution_arn: String,
    pub machine: String,
    pub patient: Patient,
    /// The execution's error and cause (free text: mask before showing or searching).
    pub error: Option<String>,
    pub cause: Option<String>,
}

fn s(v: &Value, k: &str) -> String {
    v.get(k).and_then(Value::as_str).unwrap_or_default().to_string()
}

/// The state machine name in an execution ARN.
pub fn machine_of(execution_arn: &str) -> &str {
    let mut parts = execution_arn.rsplit(':');
    parts.next();
    parts.next().unwrap_or_default()
}

/// How an execution's failure reads to an operator: an ABORTED execution (an operator
/// stopped it) is aborted, a failed or timed-out one is named by its error or state.
pub fn exception_for(status: ExecutionStatus, error: Option<&str>, state: &str) -> Option<Exception> {
    match Ending::of(status)? {
        Ending::Aborted => return Some(Exception::Aborted),
        Ending::Failed => {}
    }
    let e = error.unwrap_or_default().to_ascii_lowercase();
    let st = state.to_ascii_lowercase();
    Some(if e == "lightbox.quarantined" {
        Exception::Quarantined
    } else if e.contains("cancel") || st.contains("cancel") {
        Exception::OrderCancelled
    } else if e.contains("discontinu") || st.contains("discontinu") {
        Exception::AcquisitionDiscontinued
    } else if e.contains("publish") || e.contains("archive") || st.contains("publish") {
        Exception::PublicationFailed
    } else if e.contains("claim") || e.contains("billing") || e.contains("clearinghouse") || st.contains("claim") {
        Exception::ClaimDenied
    } else {
        Exception::Failed
    })
}

impl Study {
    /// A study from an execution whose input describes an imaging order (has an `accession`).
    pub fn from_execution(row: &ExecutionSummary, map: &StageMap) -> Option<Study> {
        let input: Value = serde_json::from_str(&row.input).ok()?;
        let accession = s(&input, "accession");
        if accession.is_empty() {
            return None;
        }
        let machine = machine_of(&row.arn).to_string();
        let state = row.current_state.clone().unwrap_or_default();
        let mut stage = map.stage(&machine, &state);
        if stage.is_none() && row.status == ExecutionStatus::Succeeded {
            stage = map.entries.iter().filter(|(m, _, _)| *m == machine || m == "*").map(|(_, _, st)| *st).max();
        }
        Some(Study {
            accession,
            modality: s(&input, "modality"),
            body_part: s(&input, "bodyPart"),
            priority: Priority::parse(&s(&input, "priority")).unwrap_or(Priority::Routine),
            patient_class: s(&input, "patientClass"),
            site: s(&input, "site"),
            stage,
            exception: map
                .exception(&machine, &state, row.error.as_deref())
                .filter(|_| row.status != ExecutionStatus::Running)
                .or_else(|| exception_for(row.status, row.error.as_deref(), &state)),
            since: row.state_since,
            status: row.status,
            execution_arn: row.arn.clone(),
            machine,
            state,
            patient: Patient::of_input(&input),
            error: row.error.clone(),
            cause: row.cause.clone(),
        })
    }
}

/// Counts per stage and priority, and per exception.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StageCounts {
    pub by_stage: BTreeMap<Stage, (usize, usize)>,
    pub exceptions: BTreeMap<Exception, usize>,
}

impl StageCounts {
    /// `(total, STAT)` per stage, counting studies that are still in flight there.
    pub fn of(studies: &[Study]) -> StageCounts {
        let mut c = StageCounts::default();
        for st in studies {
            if let Some(e) = st.exception {
                *c.exceptions.entry(e).or_default() += 1;
                continue;
            }
            if let Some(stage) = st.stage {
                let e = c.by_stage.entry(stage).or_default();
                e.0 += 1;
                if st.priority == Priority::Stat {
                    e.1 += 1;
                }
            }
        }
        c
    }
}

/// What a task an operator answers is: a read (first, or escalated to a senior reader) or a
/// hold that is not a read at all (reconciling the patient and encounter before reading).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum GateKind {
    FirstRead,
    SeniorRead,
    Reconciliation,
    /// Another callback task: an operator answers it, but it is not a read.
    OtherHold,
}

impl GateKind {
    /// From the task's state name and its parameters (as the token carries them): the demo's
    /// reads ask `lightbox-review-request` with `escalated` false (first read) or true
    /// (senior read); `lightbox-reconcile-request` is a reconciliation hold. Other sites'
    /// states are told apart by name.
    pub fn of(state: &str, params: &Value) -> GateKind {
        let payload = params.get("Payload").unwrap_or(params);
        let function = params.get("FunctionName").and_then(Value::as_str).unwrap_or_default().to_ascii_lowercase();
        let st = state.to_ascii_lowercase();
        if function.contains("reconcil") || st.contains("reconcil") {
            return GateKind::Reconciliation;
        }
        let escalated = payload.get("escalated").and_then(Value::as_bool);
        let read = function.contains("review") || function.contains("read") || st.contains("review") || st.contains("read");
        match escalated {
            Some(true) => GateKind::SeniorRead,
            Some(false) => GateKind::FirstRead,
            None if st.contains("senior") || st.contains("escalat") => GateKind::SeniorRead,
            None if read => GateKind::FirstRead,
            None => GateKind::OtherHold,
        }
    }

    /// What the GATE column says (11 columns at most): a reconciliation hold is `recon. hold`.
    pub fn as_str(self) -> &'static str {
        match self {
            GateKind::FirstRead => "first read",
            GateKind::SeniorRead => "senior read",
            GateKind::Reconciliation => "recon. hold",
            GateKind::OtherHold => "hold",
        }
    }

    pub fn is_read(self) -> bool {
        matches!(self, GateKind::FirstRead | GateKind::SeniorRead)
    }
}

/// One pending review (task token) as the Reviews view shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Review {
    pub token: String,
    pub execution_arn: String,
    pub state: String,
    /// Which kind of gate this is (first read, senior read, reconciliation hold).
    pub gate: GateKind,
    /// When the study entered review (its first read gate), for AGE; `issued` for a first
    /// read or a hold.
    pub entered: DateTime<Utc>,
    pub accession: String,
    pub study: String,
    pub draft: String,
    pub priority: Priority,
    pub reviewer_group: String,
    pub issued: DateTime<Utc>,
    pub timeout: Option<DateTime<Utc>>,
    pub claimed_by: Option<String>,
    /// The study's patient (PHI: masked unless revealed), to mask the draft's free text.
    pub patient: Patient,
}

impl Review {
    pub fn from_token(t: &PendingTask, input: Option<&Value>) -> Review {
        let params: Value = serde_json::from_str(&t.parameters).unwrap_or(Value::Null);
        let payload = params.get("Payload").unwrap_or(&params);
        let pick = |k: &str| -> String {
            let v = s(payload, k);
            if v.is_empty() { input.map(|i| s(i, k)).unwrap_or_default() } else { v }
        };
        let study = match input {
            Some(i) => format!("{} {}", s(i, "modality"), s(i, "bodyPart")).trim().to_string(),
            None => String::new(),
        };
        Review {
            token: t.token.clone(),
            execution_arn: t.execution_arn.clone(),
            state: t.state_name.clone(),
            gate: GateKind::of(&t.state_name, &params),
            entered: t.issued,
            accession: pick("accession"),
            study,
            draft: {
                let d = s(payload, "draft");
                if d.is_empty() { s(payload, "summary") } else { d }
            },
            priority: Priority::parse(&pick("priority")).unwrap_or(Priority::Routine),
            reviewer_group: pick("reviewerGroup"),
            issued: t.issued,
            // Whichever deadline comes first: the gate's timeout or its heartbeat.
            timeout: match (t.timeout, t.heartbeat) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            },
            claimed_by: t.claimed_by.clone(),
            patient: input.map(Patient::of_input).unwrap_or_default(),
        }
    }

    /// When the study entered review, from the tokens its execution was issued (any status,
    /// this one included): the first read gate's, for a read; this token's own for a hold.
    pub fn entered_from(&mut self, tokens: &[PendingTask]) {
        if !self.gate.is_read() {
            self.entered = self.issued;
            return;
        }
        self.entered = tokens
            .iter()
            .filter(|t| t.execution_arn == self.execution_arn)
            .filter(|t| GateKind::of(&t.state_name, &serde_json::from_str(&t.parameters).unwrap_or(Value::Null)).is_read())
            .map(|t| t.issued)
            .chain(std::iter::once(self.issued))
            .min()
            .unwrap_or(self.issued);
    }

    /// Time left before the gate times out.
    pub fn time_left(&self, now: DateTime<Utc>) -> Option<Duration> {
        self.timeout.map(|t| t - now)
    }
}

/// Most urgent first: priority, then whoever times out soonest, then the oldest.
pub fn sort_by_urgency(reviews: &mut [Review]) {
    reviews.sort_by(|a, b| {
        a.priority
            .cmp(&b.priority)
            .then_with(|| match (a.timeout, b.timeout) {
                (Some(x), Some(y)) => x.cmp(&y),
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (None, None) => std::cmp::Ordering::Equal,
            })
            .then_with(|| a.issued.cmp(&b.issued))
    });
}

/// Short human durations: `45s`, `12m`, `3h05`, `2d4h`; negative as `-7m`.
pub fn human(d: Duration) -> String {
    let neg = d < Duration::zero();
    let secs = d.num_seconds().abs();
    let body = if secs < 60 {
        format!("{secs}s")
    } else if secs < 3600 {
        format!("{}m", secs / 60)
    } else if secs < 86_400 {
        format!("{}h{:02}", secs / 3600, secs % 3600 / 60)
    } else {
        format!("{}d{}h", secs / 86_400, secs % 86_400 / 3600)
    };
    if neg { format!("-{body}") } else { body }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn row(input: Value, state: &str, status: ExecutionStatus, error: Option<&str>) -> ExecutionSummary {
        ExecutionSummary {
            arn: "arn:aws:states:us-east-1:000000000000:execution:scheduled-imaging:x1".into(),
            state_machine_arn: "arn:aws:states:us-east-1:000000000000:stateMachine:scheduled-imaging".into(),
            name: "x1".into(),
            status,
            start: Utc::now(),
            stop: None,
            input: input.to_string(),
            output: None,
            error: error.map(str::to_string),
            cause: None,
            redrive_count: 0,
            redrive: None,
            current_state: Some(state.into()),
            state_since: None,
        }
    }

    #[test]
    fn studies_take_their_stage_from_the_state_and_exceptions_from_the_error() {
        let map = StageMap::new(vec![
            ("scheduled-imaging".into(), "Acquire".into(), Stage::Imaged),
            ("scheduled-imaging".into(), "Bill".into(), Stage::Billed),
        ]);
        let input =
            json!({"accession": "ACC1", "modality": "CT", "priority": "STAT", "patient": {"name": "Ada Testperson", "mrn": "SYN-1"}});
        let s = Study::from_execution(&row(input.clone(), "Acquire", ExecutionStatus::Running, None), &map).expect("study");
        assert_eq!((s.stage, s.priority, s.machine.as_str()), (Some(Stage::Imaged), Priority::Stat, "scheduled-imaging"));
        assert_eq!(s.patient.mrn, "SYN-1");
        let f = Study::from_execution(&row(input.clone(), "Publish", ExecutionStatus::Failed, Some("Archive.Unavailable")), &map)
            .expect("study");
        assert_eq!(f.exception, Some(Exception::PublicationFailed));
        let done = Study::from_execution(&row(input, "", ExecutionStatus::Succeeded, None), &map).expect("study");
        assert_eq!(done.stage, Some(Stage::Billed));
        assert!(Study::from_execution(&row(json!({"x": 1}), "A", ExecutionStatus::Running, None), &map).is_none());
        let counts = StageCounts::of(&[s, f]);
        assert_eq!(counts.by_stage.get(&Stage::Imaged), Some(&(1, 1)));
        assert_eq!(counts.exceptions.get(&Exception::PublicationFailed), Some(&1));
    }

    #[test]
    fn reviews_sort_stat_first_then_soonest_timeout() {
        let now = Utc::now();
        let mk = |p: Priority, t: i64, age: i64| Review {
            token: format!("{p:?}{t}"),
            execution_arn: String::new(),
            state: String::new(),
            gate: GateKind::FirstRead,
            entered: now - Duration::minutes(age),
            accession: String::new(),
            study: String::new(),
            draft: String::new(),
            priority: p,
            reviewer_group: String::new(),
            issued: now - Duration::minutes(age),
            timeout: Some(now + Duration::minutes(t)),
            claimed_by: None,
            patient: Patient::default(),
        };
        let mut v = vec![mk(Priority::Routine, 5, 1), mk(Priority::Stat, 30, 1), mk(Priority::Stat, 10, 1), mk(Priority::Urgent, 1, 90)];
        sort_by_urgency(&mut v);
        let order: Vec<&str> = v.iter().map(|r| r.token.as_str()).collect();
        assert_eq!(order, vec!["Stat10", "Stat30", "Urgent1", "Routine5"]);
        assert_eq!(human(Duration::minutes(-7)), "-7m");
        assert_eq!(human(Duration::seconds(3 * 3600 + 5 * 60)), "3h05");
    }

    /// The demo's gates, told apart from their own definitions: first read, senior read,
    /// reconciliation hold (not a read).
    #[test]
    fn gates_are_told_apart_from_the_demo_definitions() {
        let params_of = |def: &str, state: &str| -> Value {
            let d: Value = serde_json::from_str(def).expect("definition");
            d["States"][state]["Parameters"].clone()
        };
        for def in [crate::sim::SCHEDULED_IMAGING, crate::sim::AI_REVIEW_GATE] {
            assert_eq!(GateKind::of("RadiologistReview", &params_of(def, "RadiologistReview")), GateKind::FirstRead);
            assert_eq!(GateKind::of("SeniorReview", &params_of(def, "SeniorReview")), GateKind::SeniorRead);
        }
        let enc = crate::sim::ENCOUNTER_IMAGING;
        let hold = GateKind::of("HoldForReconciliation", &params_of(enc, "HoldForReconciliation"));
        assert_eq!(hold, GateKind::Reconciliation);
        assert!(!hold.is_read(), "a reconciliation hold is not a read");
        // Other sites: by the state's name.
        assert_eq!(GateKind::of("SeniorRead", &Value::Null), GateKind::SeniorRead);
        assert_eq!(GateKind::of("ApproveInvoice", &Value::Null), GateKind::OtherHold);
        let all = [GateKind::FirstRead, GateKind::SeniorRead, GateKind::Reconciliation, GateKind::OtherHold];
        assert!(all.iter().all(|g| g.as_str().chars().count() <= 11), "fits the GATE column");
    }

    #[test]
    fn a_review_entered_review_at_its_first_read_gate() {
        let now = Utc::now();
        let token = |state: &str, escalated: bool, mins: i64| PendingTask {
            token: format!("t-{state}"),
            execution_arn: "arn:x".into(),
            task_id: String::new(),
            state_name: state.into(),
            resource: String::new(),
            parameters: json!({"FunctionName": "lightbox-review-request", "Payload": {"escalated": escalated}}).to_string(),
            status: "PENDING".into(),
            issued: now - Duration::minutes(mins),
            timeout: None,
            heartbeat: None,
            closed: None,
            claimed_by: None,
        };
        let first = token("RadiologistReview", false, 90);
        let senior = token("SeniorReview", true, 10);
        let mut r = Review::from_token(&senior, None);
        assert_eq!((r.gate, r.entered), (GateKind::SeniorRead, senior.issued), "until told otherwise");
        r.entered_from(&[first.clone(), senior.clone()]);
        assert_eq!(r.entered, first.issued);
        // A hold ages from its own issue.
        let mut hold = Review::from_token(&PendingTask { state_name: "HoldForReconciliation".into(), ..senior.clone() }, None);
        hold.entered_from(&[first]);
        assert_eq!(hold.entered, senior.issued);
    }

    /// ABORTED is aborted, FAILED and TIMED_OUT are failed: the header and the panel agree.
    #[test]
    fn endings_are_counted_one_way() {
        use ExecutionStatus::*;
        assert_eq!(exception_for(Aborted, None, "Acquire"), Some(Exception::Aborted));
        assert_eq!(exception_for(Aborted, Some("Archive.Unavailable"), "Publish"), Some(Exception::Aborted));
        assert_eq!(exception_for(TimedOut, Some("States.Timeout"), "Acquire"), Some(Exception::Failed));
        assert_eq!(exception_for(Failed, Some("Lightbox.Quarantined"), "PublishReport"), Some(Exception::Quarantined));
        assert_eq!(exception_for(Running, None, "Acquire"), None);
        let counts = [(Failed, 2), (TimedOut, 1), (Aborted, 4), (Succeeded, 9)];
        assert_eq!(Ending::Failed.count(counts), 3);
        assert_eq!(Ending::Aborted.count(counts), 4);
    }

    #[test]
    fn rules_catch_exceptions_that_end_in_success_and_rules_win_over_guesses() {
        use crate::ops::ExceptionRule;
        let map = StageMap::new(vec![]).with_exceptions(vec![
            ExceptionRule { machine: "*".into(), state: Some("OrderCancelled".into()), error: None, exception: Exception::OrderCancelled },
            ExceptionRule {
                machine: "billing".into(),
                state: None,
                error: Some("Billing.ClaimDenied".into()),
                exception: Exception::ClaimDenied,
            },
        ]);
        assert_eq!(map.exception("any", "OrderCancelled", None), Some(Exception::OrderCancelled));
        assert_eq!(map.exception("billing", "X", Some("Billing.ClaimDenied")), Some(Exception::ClaimDenied));
        assert_eq!(map.exception("other", "X", Some("Billing.ClaimDenied")), None);
        let mut r = row(json!({"accession": "ACC1"}), "OrderCancelled", ExecutionStatus::Succeeded, None);
        let s = Study::from_execution(&r, &map).expect("study");
        assert_eq!(s.exception, Some(Exception::OrderCancelled), "a cancelled order is an exception though it succeeded");
        r.status = ExecutionStatus::Running;
        assert_eq!(Study::from_execution(&r, &map).expect("study").exception, None, "running studies have no exception yet");
    }
}
