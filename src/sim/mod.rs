//! The demo hospital: radiology workflow definitions shipped with the binary
//! (modelled on the IHE Scheduled Workflow), the built-in task handlers they
//! call, their lifecycle stage map, and a workload generator ([`workload`]).
//!
//! Every patient is synthetic (MRNs start with `SYN-`, family names such as
//! "Testperson"), and every demo execution's input carries `"demo": true`.
//!
//! The machines share state names, and a shared state has the same meaning and
//! the same stage everywhere: the review gate, publication and billing states
//! are inlined into each workflow family (tests check they stay identical).

mod handlers;
pub mod workload;

use serde_json::{Value, json};

use crate::ops::{Exception, Stage, StageMap};

pub use handlers::register_handlers;
pub use workload::{Demo, DemoConfig, Family, TickReport, Window};

pub const SCHEDULED_IMAGING: &str = include_str!("definitions/scheduled_imaging.asl.json");
pub const ENCOUNTER_IMAGING: &str = include_str!("definitions/encounter_imaging.asl.json");
pub const TELERADIOLOGY: &str = include_str!("definitions/teleradiology.asl.json");
pub const AI_REVIEW_GATE: &str = include_str!("definitions/ai_review_gate.asl.json");
pub const REPORT_PUBLICATION: &str = include_str!("definitions/report_publication.asl.json");
pub const BILLING: &str = include_str!("definitions/billing.asl.json");

/// The key every demo execution's input carries (`"demo": true`), so the console can say it is a demo.
pub const DEMO_MARKER: &str = "demo";

/// The demo's state machines: (name, definition). The first three are the workflow families
/// the workload starts; the last three are their building blocks, deployable on their own.
pub fn definitions() -> Vec<(&'static str, &'static str)> {
    vec![
        ("scheduled-imaging", SCHEDULED_IMAGING),
        ("encounter-imaging", ENCOUNTER_IMAGING),
        ("teleradiology", TELERADIOLOGY),
        ("ai-review-gate", AI_REVIEW_GATE),
        ("report-publication", REPORT_PUBLICATION),
        ("billing", BILLING),
    ]
}

/// The demo's compensation machine (one definition, deployed once per compensated workflow).
pub const UNDO: &str = include_str!("definitions/undo.asl.json");

/// The demo's compensation state machines: (name, definition), named in
/// [`crate::ops::compensation::demo_defaults`]. Installed with the demo; not part of
/// [`definitions`] (a data directory holds the demo when it has those six).
pub fn undo_definitions() -> Vec<(&'static str, &'static str)> {
    vec![("scheduled-imaging-undo", UNDO), ("encounter-imaging-undo", UNDO), ("teleradiology-undo", UNDO), ("billing-undo", UNDO)]
}

/// Whether an execution input came from the demo workload.
pub fn is_demo_input(input: &Value) -> bool {
    input.get(DEMO_MARKER).and_then(Value::as_bool).unwrap_or(false)
}

/// Whether `machine` is one of the demo's state machines.
pub fn is_demo_machine(machine: &str) -> bool {
    definitions().iter().any(|(n, _)| *n == machine)
}

/// Whether a store with these state machines holds the demo hospital (all six demo machines
/// were installed): reopening such a data directory resumes the demo workload.
pub fn holds_demo(machines: &[String]) -> bool {
    definitions().iter().all(|(n, _)| machines.iter().any(|m| m == n))
}

/// The demo hospital's outbox sinks, used when the config names none: its workflow events are
/// archived, one per line, to `demo-events.ndjson` in the data directory, so view 6 and
/// `lightbox outbox list` show a living relay; the escalation ladders' pages and posts go to
/// `demo-pager.ndjson` (PagerDuty Events v2 bodies) and `demo-slack.ndjson` (Slack messages).
/// `[[outbox.sinks]]` in the config replaces them.
pub fn outbox_defaults() -> crate::outbox::OutboxConfig {
    let ndjson = |name: &str, path: &str, format: Option<&str>| crate::outbox::SinkConfig {
        name: name.into(),
        kind: "ndjson".into(),
        url: None,
        path: Some(path.into()),
        max_attempts: None,
        breaker_failures: None,
        breaker_window: None,
        breaker_open_for: None,
        breaker_max_open_for: None,
        timeout: None,
        base_delay: None,
        max_delay: None,
        format: format.map(str::to_string),
        pattern: None,
        routing_key: None,
    };
    crate::outbox::OutboxConfig {
        sinks: vec![
            ndjson("demo-archive", "demo-events.ndjson", None),
            // Where the demo's ladders page and post: files of PagerDuty and Slack bodies, so
            // the demo shows what a real pager or channel would get, with no network.
            ndjson("reading-room-pager", "demo-pager.ndjson", Some("pagerduty")),
            ndjson("radiology-slack", "demo-slack.ndjson", Some("slack")),
        ],
    }
}

/// The demo hospital's escalation ladders and dependency breakers, used when the config
/// names none (`[[escalation]]`, `[[dependencies]]` in config.example.toml show the same):
/// - every radiologist review pages the reading room (PagerDuty) at half its deadline; a STAT
///   review is escalated to the senior reader (`Review.Escalated`) at 90 % of it;
/// - a senior review posts to the radiology Slack channel at half its deadline;
/// - the claims clearinghouse (handler `lightbox-submit-claim`) opens its breaker after 5
///   failures in a minute and fails fast with `Lightbox.CircuitOpen` for 2 minutes (short,
///   because the demo runs on an accelerated clock).
pub fn resilience_defaults() -> (Vec<crate::engine::escalation::EscalationConfig>, Vec<crate::engine::dependencies::DependencyConfig>) {
    use crate::engine::dependencies::{DependencyConfig, DependencyMatch};
    use crate::engine::escalation::{EscalationConfig, LadderStep};
    let step = |at: f64, notify: Option<&str>, format: Option<&str>, fail: Option<&str>| LadderStep {
        at: Some(at),
        after: None,
        notify: notify.map(str::to_string),
        format: format.map(str::to_string),
        fail: fail.map(str::to_string),
    };
    let ladders = vec![
        EscalationConfig {
            state: "RadiologistReview".into(),
            machine: None,
            when: Default::default(),
            steps: vec![step(0.5, Some("reading-room-pager"), Some("pagerduty"), None)],
        },
        EscalationConfig {
            state: "RadiologistReview".into(),
            machine: None,
            when: [("$.priority".to_string(), json!("STAT"))].into_iter().collect(),
            steps: vec![step(0.9, None, None, Some(crate::engine::ESCALATED))],
        },
        EscalationConfig {
            state: "SeniorReview".into(),
            machine: None,
            when: Default::default(),
            steps: vec![step(0.5, Some("radiology-slack"), Some("slack"), None)],
        },
    ];
    let deps = vec![DependencyConfig {
        name: "clearinghouse".into(),
        matches: DependencyMatch { handler: Some("lightbox-submit-claim".into()), host: None },
        failures: 5,
        window: "1m".into(),
        open_for: "2m".into(),
    }];
    (ladders, deps)
}

/// The lifecycle stage each top-level state of the demo machines belongs to.
/// Shared states mean the same thing in every machine; the only exception is the
/// series acquisition, which precedes *imaged* in scheduled imaging but is how
/// encounter-based studies join the workflow (already imaged).
const STAGES: &[(Stage, &[&str])] = &[
    (Stage::Ordered, &["ReceiveOrder", "AwaitProtocol"]),
    (
        Stage::Scheduled,
        &["ScheduleProcedure", "AwaitArrival", "CheckOrderStatus", "IsOrderActive", "ReleaseWorklistEntry", "OrderCancelled"],
    ),
    (
        Stage::Arrived,
        &[
            "RegisterArrival",
            "AwaitScanner",
            "StartProcedure",
            "ScanInProgress",
            "AcquireSeries",
            "CompleteProcedure",
            "IsDiscontinued",
            "AcquisitionDiscontinued",
        ],
    ),
    (
        Stage::Imaged,
        &[
            "CommitStorage",
            "ReceiveEncounterStudy",
            "ReconcileContext",
            "IsContextMatched",
            "HoldForReconciliation",
            "Unreconciled",
            "ReceiveStudy",
            "PrepareRead",
            "AssignReader",
            "AwaitAiDraft",
            "DraftReport",
        ],
    ),
    (Stage::Dictated, &["RadiologistReview", "SeniorReview", "DictateManually", "WrongPatient"]),
    (Stage::Transcribed, &["Transcribe", "AwaitSignature"]),
    (
        Stage::Signed,
        &[
            "SignReport",
            "IsCriticalResult",
            "CommunicateCriticalResult",
            "AcknowledgeCriticalResult",
            "PublishReport",
            "PublishFailed",
            "AwaitCoding",
        ],
    ),
    (
        Stage::Billed,
        &[
            "PostCharge",
            "SubmitClaim",
            "ClaimQueuedManually",
            "AwaitRemittance",
            "ReconcileRemittance",
            "ClaimOutcome",
            "Reconciled",
            "ClaimDenied",
        ],
    ),
];

fn stage_of_state(machine: &str, state: &str) -> Option<Stage> {
    if machine == "encounter-imaging" && state == "AcquireSeries" {
        return Some(Stage::Imaged);
    }
    STAGES.iter().find(|(_, states)| states.contains(&state)).map(|(stage, _)| *stage)
}

/// The top-level state names of a definition, in document order.
pub fn top_level_states(definition: &str) -> Vec<String> {
    serde_json::from_str::<Value>(definition)
        .ok()
        .and_then(|v| v.get("States").and_then(Value::as_object).map(|m| m.keys().cloned().collect()))
        .unwrap_or_default()
}

/// Every top-level state of every demo machine, mapped to the lifecycle stage a study
/// in that state has reached (the console reads the stage off the current state).
pub fn stage_map() -> StageMap {
    let mut entries = vec![];
    for (machine, def) in definitions() {
        for state in top_level_states(def) {
            if let Some(stage) = stage_of_state(machine, &state) {
                entries.push((machine.to_string(), state, stage));
            }
        }
    }
    // The same lanes as `exception_of`, as data the console's projection applies.
    let rule = |machine: &str, state: Option<&str>, error: Option<&str>, exception| crate::ops::ExceptionRule {
        machine: machine.into(),
        state: state.map(str::to_string),
        error: error.map(str::to_string),
        exception,
    };
    StageMap::new(entries).with_exceptions(vec![
        rule("*", Some("OrderCancelled"), None, Exception::OrderCancelled),
        rule("*", None, Some("Order.Cancelled"), Exception::OrderCancelled),
        rule("*", None, Some("Acquisition.Discontinued"), Exception::AcquisitionDiscontinued),
        rule("*", Some("AcquisitionDiscontinued"), None, Exception::AcquisitionDiscontinued),
        rule("*", None, Some("Publication.Failed"), Exception::PublicationFailed),
        rule("*", Some("PublishReport"), None, Exception::PublicationFailed),
        rule("*", Some("PublishFailed"), None, Exception::PublicationFailed),
        rule("*", None, Some("Billing.ClaimDenied"), Exception::ClaimDenied),
        rule("*", Some("ClaimDenied"), None, Exception::ClaimDenied),
    ])
}

/// Which exception lane an execution is in, if any.
///
/// `state` is the top-level state the execution is in or stopped in; `error` is its
/// error when it failed, timed out or was aborted (pass the status name, e.g.
/// `"ABORTED"`, when there is none). A cancelled order ends in the `OrderCancelled`
/// *Succeed* state — an exception, not a failure — so also call this for succeeded
/// executions. Running executions have no exception.
pub fn exception_of(machine: &str, error: Option<&str>, state: &str) -> Option<Exception> {
    if state == "OrderCancelled" || error == Some("Order.Cancelled") {
        return Some(Exception::OrderCancelled);
    }
    let error = error?;
    Some(match (error, state) {
        ("Acquisition.Discontinued", _) | (_, "AcquisitionDiscontinued") => Exception::AcquisitionDiscontinued,
        ("Publication.Failed", _) | (_, "PublishReport" | "PublishFailed") => Exception::PublicationFailed,
        _ if machine == "report-publication" => Exception::PublicationFailed,
        ("Billing.ClaimDenied", _) | (_, "ClaimDenied") => Exception::ClaimDenied,
        _ => Exception::Failed,
    })
}

/// One synthetic scheduled-imaging order for quick runs (`lightbox demo`): `n` picks the
/// mix, every wait lasts about a second, and some orders carry injected faults
/// (cancelled, discontinued, claim denied, a busy archive that the retries absorb).
pub fn order(n: u64) -> Value {
    let mut o = workload::synthetic_order(0x5EED, 100_000 + n, Family::Scheduled, &workload::Timing::quick(), &DemoConfig::default().rates);
    o["faults"] = json!({
        "cancelled": n % 13 == 7,
        "discontinued": n % 11 == 5,
        "claimDenied": n % 9 == 4,
        "archiveBusy": if n % 5 == 2 { 1 } else { 0 },
        "archiveRejects": false,
        "contextMismatch": false,
        "archiveOutage": null,
        "clearinghouseDown": null,
    });
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::asl::model::Definition;

    #[test]
    fn demo_definitions_are_valid() {
        for (name, d) in definitions() {
            Definition::parse_str(d).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }

    #[test]
    fn demo_compensation_names_real_states_and_valid_undo_machines() {
        for (name, d) in undo_definitions() {
            Definition::parse_str(d).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        let defaults = crate::ops::compensation::demo_defaults();
        crate::ops::compensation::validate(&defaults).expect("valid defaults");
        for (machine, c) in &defaults {
            let def = definitions().into_iter().find(|(n, _)| n == machine).map(|(_, d)| d).expect("a demo machine");
            for s in &c.states {
                assert!(def.contains(&format!("\"{s}\": {{")), "{machine} has no state {s}");
            }
            assert!(undo_definitions().iter().any(|(n, _)| *n == c.state_machine), "{} is not shipped", c.state_machine);
        }
    }

    #[test]
    fn every_top_level_state_has_a_stage() {
        let map = stage_map();
        for (machine, def) in definitions() {
            for state in top_level_states(def) {
                assert!(map.stage(machine, &state).is_some(), "{machine}.{state} has no stage");
            }
        }
        assert_eq!(map.stage("scheduled-imaging", "AcquireSeries"), Some(Stage::Arrived));
        assert_eq!(map.stage("encounter-imaging", "AcquireSeries"), Some(Stage::Imaged));
        assert_eq!(map.stage("scheduled-imaging", "RadiologistReview"), Some(Stage::Dictated));
        assert_eq!(map.stage("other-machine", "RadiologistReview"), None);
    }

    #[test]
    fn exceptions_are_told_apart() {
        let m = "scheduled-imaging";
        assert_eq!(exception_of(m, None, "OrderCancelled"), Some(Exception::OrderCancelled));
        assert_eq!(exception_of(m, None, "PublishReport"), None);
        assert_eq!(exception_of(m, Some("Acquisition.Discontinued"), "AcquisitionDiscontinued"), Some(Exception::AcquisitionDiscontinued));
        assert_eq!(exception_of(m, Some("Archive.Unavailable"), "PublishReport"), Some(Exception::PublicationFailed));
        assert_eq!(exception_of(m, Some("Publication.Failed"), "PublishFailed"), Some(Exception::PublicationFailed));
        assert_eq!(exception_of("report-publication", Some("States.Runtime"), "X"), Some(Exception::PublicationFailed));
        assert_eq!(exception_of(m, Some("Billing.ClaimDenied"), "ClaimDenied"), Some(Exception::ClaimDenied));
        assert_eq!(exception_of(m, Some("Clearinghouse.Unavailable"), "SubmitClaim"), Some(Exception::Failed));
        assert_eq!(exception_of(m, Some("ABORTED"), "AwaitArrival"), Some(Exception::Failed));
    }

    #[test]
    fn a_store_holds_the_demo_only_with_every_demo_machine() {
        let all: Vec<String> = definitions().iter().map(|(n, _)| n.to_string()).collect();
        assert!(holds_demo(&all));
        let mut more = all.clone();
        more.push("review".into());
        assert!(holds_demo(&more));
        assert!(!holds_demo(&all[1..]));
        assert!(!holds_demo(&[]));
        assert!(!holds_demo(&["review".to_string()]));
    }

    #[test]
    fn quick_orders_are_synthetic_and_varied() {
        let a = order(1);
        let b = order(2);
        assert_ne!(a["accession"], b["accession"]);
        assert!(a["patient"]["mrn"].as_str().is_some_and(|m| m.starts_with("SYN-")));
        assert!(is_demo_input(&a));
        assert!((0..20).any(|n| order(n)["faults"]["discontinued"] == true));
        assert!((0..20).any(|n| order(n)["faults"]["cancelled"] == true));
    }
}
