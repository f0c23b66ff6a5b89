//! Pure projections from workflow data (executions, history events, task
//! tokens) to what operators see: study pipelines, the review queue, counts.
//! No I/O: the console's background jobs load data and call these.

pub mod compensation;
pub mod consequence;
pub mod project;
pub mod slo;

use serde::{Deserialize, Serialize};

/// Where a study is in the imaging order lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    Ordered,
    Scheduled,
    Arrived,
    Imaged,
    Dictated,
    Transcribed,
    Signed,
    Billed,
}

impl Stage {
    pub const ALL: [Stage; 8] = [
        Stage::Ordered,
        Stage::Scheduled,
        Stage::Arrived,
        Stage::Imaged,
        Stage::Dictated,
        Stage::Transcribed,
        Stage::Signed,
        Stage::Billed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Ordered => "ordered",
            Stage::Scheduled => "scheduled",
            Stage::Arrived => "arrived",
            Stage::Imaged => "imaged",
            Stage::Dictated => "dictated",
            Stage::Transcribed => "transcribed",
            Stage::Signed => "signed",
            Stage::Billed => "billed",
        }
    }

    pub fn parse(s: &str) -> Option<Stage> {
        Stage::ALL.into_iter().find(|x| x.as_str().eq_ignore_ascii_case(s))
    }
}

/// Exception states are first-class, not errors to hide.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Exception {
    OrderCancelled,
    AcquisitionDiscontinued,
    PublicationFailed,
    ClaimDenied,
    /// Any other execution that ended failed or timed out (see [`Ending`]).
    Failed,
    /// Stopped by an operator (ABORTED), unless a rule names it otherwise.
    Aborted,
    /// Set aside by the engine: working on it crashed the engine twice (`Lightbox.Quarantined`);
    /// an operator releases it for one more try.
    Quarantined,
}

impl Exception {
    pub fn as_str(self) -> &'static str {
        match self {
            Exception::OrderCancelled => "cancelled",
            Exception::AcquisitionDiscontinued => "discontinued",
            Exception::PublicationFailed => "publish failed",
            Exception::ClaimDenied => "claim denied",
            Exception::Failed => "failed",
            Exception::Aborted => "aborted",
            Exception::Quarantined => "quarantined",
        }
    }
}

/// How an execution that did not succeed counts, the one definition the header and the
/// Exceptions panel share: FAILED and TIMED_OUT count as failed (the workflow gave up),
/// ABORTED as aborted (someone stopped it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Ending {
    Failed,
    Aborted,
}

impl Ending {
    pub fn of(status: crate::history::ExecutionStatus) -> Option<Ending> {
        use crate::history::ExecutionStatus::*;
        match status {
            Failed | TimedOut => Some(Ending::Failed),
            Aborted => Some(Ending::Aborted),
            Running | PendingRedrive | Succeeded => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Ending::Failed => "failed",
            Ending::Aborted => "aborted",
        }
    }

    /// How many executions of `counts` (status, count) end this way.
    pub fn count(self, counts: impl IntoIterator<Item = (crate::history::ExecutionStatus, u64)>) -> u64 {
        counts.into_iter().filter(|(s, _)| Ending::of(*s) == Some(self)).map(|(_, n)| n).sum()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Priority {
    Stat,
    Urgent,
    Routine,
}

impl Priority {
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Stat => "STAT",
            Priority::Urgent => "URGENT",
            Priority::Routine => "ROUTINE",
        }
    }
    pub fn parse(s: &str) -> Option<Priority> {
        match s.to_ascii_uppercase().as_str() {
            "STAT" => Some(Priority::Stat),
            "URGENT" => Some(Priority::Urgent),
            "ROUTINE" => Some(Priority::Routine),
            _ => None,
        }
    }
}

/// Which lifecycle stage a study has reached when its workflow enters a state.
/// Sites configure their own; the demo hospital ships one for its workflows.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StageMap {
    /// (state machine name or `*`, state name, stage)
    pub entries: Vec<(String, String, Stage)>,
    /// How an execution's end reads as an exception, tried in order.
    #[serde(default)]
    pub exceptions: Vec<ExceptionRule>,
}

/// An exception recognised by the state an execution ended in and/or its error, whatever its
/// status (a cancelled order may end in a Succeed state).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExceptionRule {
    /// State machine name or `*`.
    pub machine: String,
    pub state: Option<String>,
    pub error: Option<String>,
    pub exception: Exception,
}

impl StageMap {
    pub fn new(entries: Vec<(String, String, Stage)>) -> StageMap {
        StageMap { entries, exceptions: vec![] }
    }

    pub fn with_exceptions(mut self, rules: Vec<ExceptionRule>) -> StageMap {
        self.exceptions = rules;
        self
    }

    /// The first rule naming this machine (or `*`) whose state and/or error match.
    pub fn exception(&self, machine: &str, state: &str, error: Option<&str>) -> Option<Exception> {
        self.exceptions
            .iter()
            .find(|r| {
                (r.machine == "*" || r.machine == machine)
                    && (r.state.is_some() || r.error.is_some())
                    && r.state.as_deref().is_none_or(|s| s == state)
                    && r.error.as_deref().is_none_or(|e| Some(e) == error)
            })
            .map(|r| r.exception)
    }

    /// The stage entering `state` of `machine` marks, if any.
    pub fn stage(&self, machine: &str, state: &str) -> Option<Stage> {
        self.entries.iter().find(|(m, s, _)| (m == machine || m == "*") && s == state).map(|(_, _, st)| *st)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stage_map_prefers_listed_machine_then_wildcard() {
        let m = StageMap::new(vec![("tele".into(), "Read".into(), Stage::Dictated), ("*".into(), "Sign".into(), Stage::Signed)]);
        assert_eq!(m.stage("tele", "Read"), Some(Stage::Dictated));
        assert_eq!(m.stage("other", "Read"), None);
        assert_eq!(m.stage("any", "Sign"), Some(Stage::Signed));
        assert_eq!(Stage::parse("Imaged"), Some(Stage::Imaged));
        assert!(Stage::Ordered < Stage::Billed);
    }
}
