//! The demo hospital: radiology workflow definitions shipped with the binary,
//! the built-in task handlers they call, and a small workload generator.
//! Every patient is synthetic (MRNs start with `SYN-`).

use serde_json::{Value, json};

use crate::engine::core::TaskError;
use crate::engine::tasks::TaskRunner;

pub const SCHEDULED_IMAGING: &str = include_str!("definitions/scheduled_imaging.asl.json");

/// The demo's state machines: (name, definition).
pub fn definitions() -> Vec<(&'static str, &'static str)> {
    vec![("scheduled-imaging", SCHEDULED_IMAGING)]
}

fn fail(error: &str, cause: &str) -> TaskError {
    TaskError { error: error.into(), cause: cause.into() }
}

fn flag(v: &Value, path: &[&str]) -> bool {
    let mut cur = v;
    for p in path {
        match cur.get(p) {
            Some(x) => cur = x,
            None => return false,
        }
    }
    cur.as_bool().unwrap_or(false)
}

/// Register the handlers the demo definitions call (`lightbox-*` function names).
pub fn register_handlers(r: &mut TaskRunner) {
    r.register("lightbox-schedule", |p| {
        let modality = p.get("modality").and_then(Value::as_str).unwrap_or("CT");
        Ok(json!({"slot": format!("{modality}-room-1")}))
    });
    r.register("lightbox-acquire", |p| {
        let discontinued = flag(p, &["faults", "discontinued"]);
        let series = if discontinued { 0 } else { p.get("expectedSeries").and_then(Value::as_u64).unwrap_or(3) };
        Ok(json!({"series": series, "discontinued": discontinued}))
    });
    r.register("lightbox-ai-draft", |p| {
        let m = p.get("modality").and_then(Value::as_str).unwrap_or("CT");
        let body = p.get("bodyPart").and_then(Value::as_str).unwrap_or("chest");
        Ok(json!({"summary": format!("{m} {body}: no acute findings (AI draft, awaiting radiologist)")}))
    });
    r.register("lightbox-review-request", |_| Ok(json!({"queued": true})));
    r.register("lightbox-publish", |p| {
        if flag(p, &["faults", "archiveOutage"]) {
            return Err(fail("Archive.Unavailable", "PACS archive did not accept the study (simulated outage)"));
        }
        Ok(json!({"published": true}))
    });
    r.register("lightbox-bill", |p| {
        if flag(p, &["faults", "clearinghouseDown"]) {
            return Err(fail("Billing.ClearinghouseDown", "the claims clearinghouse is not answering (simulated)"));
        }
        let acc = p.get("accession").and_then(Value::as_str).unwrap_or("?");
        Ok(json!({"claim": format!("CLM-{acc}")}))
    });
}

const MODALITIES: &[(&str, &str)] =
    &[("CT", "chest"), ("MR", "brain"), ("XR", "wrist"), ("US", "abdomen"), ("NM", "bone"), ("PT", "whole body")];
const PRIORITIES: &[&str] = &["STAT", "URGENT", "ROUTINE", "ROUTINE", "ROUTINE"];
const CLASSES: &[&str] = &["ED", "INPATIENT", "OUTPATIENT"];
const SITES: &[&str] = &["MAIN", "NORTH", "EAST"];
const GIVEN: &[&str] = &["Ada", "Bao", "Cyra", "Dev", "Enzo", "Fenna", "Gil", "Hana"];
const FAMILY: &[&str] = &["Synthtest", "Fakeman", "Demoson", "Sampleton"];

/// One synthetic order. `n` picks the mix; faults are injected on some.
pub fn order(n: u64) -> Value {
    let (modality, body) = MODALITIES[(n % MODALITIES.len() as u64) as usize];
    let priority = PRIORITIES[(n / 2 % PRIORITIES.len() as u64) as usize];
    json!({
        "accession": format!("ACC{:06}", 100_000 + n),
        "modality": modality,
        "bodyPart": body,
        "priority": priority,
        "patientClass": CLASSES[(n % CLASSES.len() as u64) as usize],
        "site": SITES[(n / 3 % SITES.len() as u64) as usize],
        "patient": {
            "name": format!("{} {}", GIVEN[(n % GIVEN.len() as u64) as usize], FAMILY[(n / 5 % FAMILY.len() as u64) as usize]),
            "mrn": format!("SYN-{:06}", 500_000 + n * 7),
            "birthDate": format!("19{:02}-{:02}-{:02}", 40 + n % 55, 1 + n % 12, 1 + n % 28),
        },
        "timing": {"arrivalSeconds": 1 + n % 3},
        "faults": {"archiveOutage": n % 7 == 3, "discontinued": n % 11 == 5},
    })
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
    fn orders_are_synthetic_and_varied() {
        let a = order(1);
        let b = order(2);
        assert_ne!(a["accession"], b["accession"]);
        assert!(a["patient"]["mrn"].as_str().is_some_and(|m| m.starts_with("SYN-")));
        assert!((0..20).any(|n| order(n)["faults"]["archiveOutage"] == true));
    }
}
