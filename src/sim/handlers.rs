//! Built-in handlers for the demo's `lightbox-*` functions. Each is a deterministic
//! function of its payload: faults are injected through `faults` in the payload
//! (flags, retry counts, or outage windows compared with the payload's `at`).

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::workload::{hash, unit};
use crate::engine::core::TaskError;
use crate::engine::tasks::TaskRunner;

fn fail(error: &str, cause: &str) -> TaskError {
    TaskError { error: error.into(), cause: cause.into() }
}

fn s<'a>(p: &'a Value, key: &str) -> &'a str {
    p.get(key).and_then(Value::as_str).unwrap_or_default()
}

fn fault<'a>(p: &'a Value, key: &str) -> Option<&'a Value> {
    p.get("faults").and_then(|f| f.get(key))
}

fn flag(p: &Value, key: &str) -> bool {
    fault(p, key).and_then(Value::as_bool).unwrap_or(false)
}

fn time(v: Option<&Value>) -> Option<DateTime<Utc>> {
    v.and_then(Value::as_str).and_then(|t| DateTime::parse_from_rfc3339(t).ok()).map(|t| t.with_timezone(&Utc))
}

/// A fault that is `true`, or an outage window `{"from", "until"}` containing the payload's `at`.
fn in_window(p: &Value, key: &str) -> bool {
    match fault(p, key) {
        Some(Value::Bool(b)) => *b,
        Some(w @ Value::Object(_)) => match (time(p.get("at")), time(w.get("from")), time(w.get("until"))) {
            (Some(at), Some(from), Some(until)) => from <= at && at < until,
            _ => false,
        },
        _ => false,
    }
}

/// A transient fault: the first `faults.<key>` attempts fail (the payload's `attempt` is `$$.State.RetryCount`).
fn busy(p: &Value, key: &str) -> bool {
    let attempts = fault(p, key).and_then(Value::as_u64).unwrap_or(0);
    p.get("attempt").and_then(Value::as_u64).unwrap_or(0) < attempts
}

fn need<'a>(p: &'a Value, key: &str) -> Result<&'a str, TaskError> {
    match s(p, key) {
        "" => Err(fail("Lightbox.InvalidPayload", &format!("the payload has no {key:?}"))),
        v => Ok(v),
    }
}

/// A stable small number for an id, so results look varied but repeat for the same input.
fn pick(key: &str, n: u64) -> u64 {
    hash(&[key]) % n.max(1)
}

fn series_plan(p: &Value) -> Result<Value, TaskError> {
    let study = need(p, "studyUid")?;
    let modality = s(p, "modality");
    let n = p.get("expectedSeries").and_then(Value::as_u64).unwrap_or(2).clamp(1, 12);
    let names: &[&str] = match modality {
        "CT" => &["Scout", "Axial 5 mm", "Axial 1 mm", "Coronal MPR", "Sagittal MPR", "Bone window"],
        "MR" => &["Localizer", "Sag T1", "Ax T2", "Ax FLAIR", "DWI", "Ax T1 post", "Cor T1 post", "SWI", "ADC"],
        "US" => &["B-mode", "Doppler"],
        "NM" => &["Anterior", "Posterior", "SPECT"],
        "PET" => &["CT attenuation", "PET AC", "PET NAC", "Fused"],
        _ => &["PA", "Lateral", "Oblique"],
    };
    let series: Vec<Value> = (0..n)
        .map(|i| {
            let d = names.get(i as usize).copied().unwrap_or("Additional");
            json!({"number": i + 1, "seriesUid": format!("{study}.{}", i + 1), "description": d, "instances": 1 + pick(&format!("{study}/{i}"), 300)})
        })
        .collect();
    Ok(json!({"mppsUid": format!("{study}.900"), "status": "IN PROGRESS", "series": series}))
}

const DRAFTS: &[(&str, &[&str])] = &[
    (
        "head",
        &[
            "No acute intracranial haemorrhage. No mass effect or midline shift.",
            "Chronic small vessel ischaemic change. No acute abnormality.",
        ],
    ),
    ("brain", &["No restricted diffusion. No enhancing lesion.", "Scattered nonspecific white matter foci, likely microangiopathic."]),
    ("chest", &["No focal consolidation, effusion or pneumothorax.", "No filling defect in the pulmonary arteries. Lungs clear."]),
    (
        "abdomen",
        &["No free fluid. Liver, gallbladder and kidneys unremarkable.", "Cholelithiasis without sonographic signs of cholecystitis."],
    ),
    ("kidney", &["No hydronephrosis. Kidneys normal in size and echotexture."]),
    ("lumbar spine", &["Mild L4-5 disc bulge without canal stenosis.", "Degenerative change without neural compromise."]),
    ("wrist", &["No acute fracture or dislocation.", "Nondisplaced distal radial fracture."]),
    ("whole body", &["No abnormal uptake to suggest active disease.", "Focal uptake in the right rib, likely traumatic."]),
];

/// Register the handlers the demo definitions call (`lightbox-*` function names).
pub fn register_handlers(r: &mut TaskRunner) {
    r.register("lightbox-receive-order", |p| {
        let acc = need(p, "accession")?;
        if p.get("patient").and_then(|x| x.get("mrn")).and_then(Value::as_str).is_none() {
            return Err(fail("Order.Invalid", "the order has no patient MRN (HL7 PID-3)"));
        }
        Ok(json!({"status": "NW", "placerOrderNumber": s(p, "orderId"), "fillerOrderNumber": acc}))
    });
    r.register("lightbox-schedule", |p| {
        let acc = need(p, "accession")?;
        let modality = s(p, "modality");
        let room = 1 + pick(acc, 3);
        Ok(json!({"spsId": format!("SPS-{acc}"), "room": format!("{}-{modality}-{room}", s(p, "site")), "stationAeTitle": format!("{modality}{room}_{}", s(p, "site"))}))
    });
    r.register("lightbox-order-status", |p| {
        need(p, "accession")?;
        Ok(if flag(p, "cancelled") {
            json!({"status": "CA", "reason": "Cancelled by the ordering provider"})
        } else {
            json!({"status": "SC", "reason": null})
        })
    });
    r.register("lightbox-release-slot", |p| {
        need(p, "accession")?;
        Ok(json!({"released": true, "worklistEntry": s(p, "spsId"), "slot": s(p, "room")}))
    });
    r.register("lightbox-register-arrival", |p| {
        let acc = need(p, "accession")?;
        Ok(json!({"visitNumber": format!("V-{acc}"), "location": format!("{} imaging reception", s(p, "site"))}))
    });
    r.register("lightbox-mpps-start", series_plan);
    r.register("lightbox-encounter-ingest", |p| {
        let mut plan = series_plan(p)?;
        plan["status"] = json!("IN PROGRESS (unscheduled)");
        Ok(plan)
    });
    r.register("lightbox-store-series", |p| {
        need(p, "accession")?;
        let series = p.get("series").cloned().unwrap_or(Value::Null);
        if busy(p, "archiveBusy") {
            return Err(fail("Archive.Busy", "the archive asked to retry later (association limit reached)"));
        }
        Ok(json!({"seriesUid": series.get("seriesUid").cloned().unwrap_or(Value::Null), "instances": series.get("instances").cloned().unwrap_or(json!(0))}))
    });
    r.register("lightbox-mpps-complete", |p| {
        need(p, "accession")?;
        Ok(if flag(p, "discontinued") {
            json!({"status": "DISCONTINUED", "reason": "Patient unable to continue the exam"})
        } else {
            json!({"status": "COMPLETED", "reason": null})
        })
    });
    r.register("lightbox-storage-commit", |p| {
        need(p, "accession")?;
        let instances: u64 = p
            .get("stored")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|x| x.get("instances").and_then(Value::as_u64)).sum())
            .unwrap_or(0);
        Ok(json!({"status": "COMMITTED", "instances": instances}))
    });
    r.register("lightbox-reconcile-context", |p| {
        let acc = need(p, "accession")?;
        Ok(if flag(p, "contextMismatch") {
            json!({"matched": false, "confidence": 0.55 + (pick(acc, 30) as f64) / 100.0, "orderId": null})
        } else {
            json!({"matched": true, "confidence": 1.0, "orderId": format!("ORD-{acc}")})
        })
    });
    r.register("lightbox-reconcile-request", |p| Ok(json!({"queued": true, "queue": s(p, "reviewerGroup")})));
    r.register("lightbox-telerad-ingest", |p| {
        let acc = need(p, "accession")?;
        Ok(json!({"status": "RECEIVED", "instances": 100 + pick(acc, 900), "receivedFrom": s(p, "originSite")}))
    });
    r.register("lightbox-fetch-priors", |p| {
        let acc = need(p, "accession")?;
        if busy(p, "archiveBusy") {
            return Err(fail("Archive.Busy", "the originating site's archive asked to retry later"));
        }
        let n = pick(&format!("{acc}/priors"), 4);
        let priors: Vec<Value> = (0..n)
            .map(|i| json!({"studyUid": format!("{}.{}", s(p, "studyUid"), 800 + i), "modality": s(p, "modality"), "yearsAgo": i + 1}))
            .collect();
        Ok(json!({"priors": priors, "delivered": n}))
    });
    r.register("lightbox-assign-reader", |p| {
        let acc = need(p, "accession")?;
        let group = match (s(p, "modality"), s(p, "bodyPart")) {
            ("NM" | "PET", _) => "nuclear-medicine",
            (_, "head" | "brain" | "lumbar spine") => "neuroradiology",
            ("XR", "wrist") => "msk",
            ("XR", _) => "chest",
            _ => "body",
        };
        let cross = p.get("crossSite").and_then(Value::as_bool).unwrap_or(false);
        let site = s(p, "site");
        let reader_site = if cross { ["MAIN", "NORTH", "SOUTH"][pick(acc, 3) as usize] } else { site };
        let group = if cross { format!("telerad-{group}") } else { group.to_string() };
        Ok(json!({"reviewerGroup": group, "readerSite": reader_site, "crossSite": cross}))
    });
    r.register("lightbox-ai-draft", |p| {
        let acc = need(p, "accession")?;
        let body = s(p, "bodyPart");
        let options = DRAFTS.iter().find(|(b, _)| *b == body).map(|(_, d)| *d).unwrap_or(&["No acute abnormality."]);
        let text = options[pick(acc, options.len() as u64) as usize];
        Ok(json!({"model": "lightbox-draft-sim-1", "summary": format!("{}: {text}", s(p, "procedure"))}))
    });
    r.register("lightbox-review-request", |p| Ok(json!({"queued": true, "queue": s(p, "reviewerGroup")})));
    r.register("lightbox-dictate", |p| {
        need(p, "accession")?;
        Ok(json!({"status": "P", "author": "reading radiologist", "source": "manual dictation (AI draft rejected)"}))
    });
    r.register("lightbox-transcribe", |p| {
        let acc = need(p, "accession")?;
        Ok(json!({"reportId": format!("RPT-{acc}"), "status": "R", "words": 60 + pick(acc, 240)}))
    });
    r.register("lightbox-sign", |p| {
        need(p, "accession")?;
        let review = p.get("review").unwrap_or(&Value::Null);
        let by = ["reviewer", "approvedBy", "user"].iter().map(|k| s(review, k)).find(|v| !v.is_empty()).unwrap_or("attending radiologist");
        Ok(json!({"status": "F", "signedBy": by}))
    });
    // The closed loop of a critical finding: who was told (the ordering clinician), by whom and
    // how; then a callback gate the ordering clinician answers (the acknowledgement).
    r.register("lightbox-communicate-critical", |p| {
        need(p, "accession")?;
        let told = p.get("orderingPhysician").map(|o| s(o, "name")).filter(|n| !n.is_empty()).unwrap_or("ordering clinician on call");
        let by = match s(p, "signedBy") {
            "" => "attending radiologist",
            b => b,
        };
        Ok(json!({"communicatedTo": told, "by": by, "method": "phone", "at": s(p, "at")}))
    });
    r.register("lightbox-critical-ack-request", |p| Ok(json!({"queued": true, "notified": s(p, "communicatedTo")})));
    r.register("lightbox-publish", |p| {
        let acc = need(p, "accession")?;
        if flag(p, "archiveRejects") {
            return Err(fail("Archive.Rejected", "the archive rejected the report: patient identifiers do not match the study"));
        }
        if in_window(p, "archiveOutage") {
            return Err(fail("Archive.Unavailable", "the report archive is not accepting connections (outage)"));
        }
        if busy(p, "archiveBusy") {
            return Err(fail("Archive.Busy", "the archive asked to retry later"));
        }
        Ok(json!({"messageId": format!("ORU-{acc}"), "destinations": ["PACS", "EHR", "portal"]}))
    });
    r.register("lightbox-post-charge", |p| {
        let acc = need(p, "accession")?;
        let cpt = s(p, "procedureCode");
        let amount = 80 + pick(cpt, 40) * 25;
        Ok(json!({"chargeId": format!("CHG-{acc}"), "cpt": cpt, "amount": amount}))
    });
    r.register("lightbox-submit-claim", |p| {
        let acc = need(p, "accession")?;
        if in_window(p, "clearinghouseDown") {
            return Err(fail("Clearinghouse.Unavailable", "the claims clearinghouse is not answering"));
        }
        Ok(json!({"claimId": format!("CLM-{acc}"), "ack": "999 A"}))
    });
    // Compensation (the demo's `*-undo` machines): undo one completed step, by its state.
    r.register("lightbox-undo", |p| {
        let state = need(p, "state")?;
        let out = p.get("output").cloned().unwrap_or(Value::Null);
        let field = |k: &str| out.pointer(k).and_then(Value::as_str).unwrap_or("").to_string();
        let undone = match state {
            "ScheduleProcedure" => format!("slot released {}", field("/scheduled/room")),
            "AssignReader" | "AssignRemoteReader" => "reader unassigned".to_string(),
            "PostCharge" => format!("charge reversed {}", field("/charge/chargeId")),
            "SubmitClaim" => format!("claim voided {}", field("/claim/claimId")),
            other => format!("{other} undone"),
        };
        Ok(json!({"state": state, "undone": undone.trim_end()}))
    });
    r.register("lightbox-reconcile-remittance", |p| {
        need(p, "accession")?;
        let amount = p.get("amount").and_then(Value::as_f64).unwrap_or(0.0);
        Ok(if flag(p, "claimDenied") {
            json!({"status": "DENIED", "paid": 0, "adjustmentReason": "CARC 197: precertification/authorization absent"})
        } else {
            json!({"status": "PAID", "paid": (amount * (0.6 + unit(hash(&[s(p, "accession"), "paid"])) * 0.3)).round(), "adjustmentReason": "CARC 45: contractual adjustment"})
        })
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::core::TaskRequest;

    fn call(r: &TaskRunner, name: &str, payload: Value) -> Result<Value, TaskError> {
        let req = TaskRequest {
            task_id: "t".into(),
            state: "S".into(),
            resource: "arn:aws:states:::lambda:invoke".into(),
            parameters: json!({"FunctionName": name, "Payload": payload}),
            attempt: 1,
            token: None,
        };
        match r.run(&req) {
            crate::engine::tasks::TaskOutcome::Done(r) => r.map(|v| v["Payload"].clone()),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn outage_windows_are_judged_by_the_payload_time() {
        let mut r = TaskRunner::new();
        register_handlers(&mut r);
        let w = json!({"from": "2025-01-01T10:00:00Z", "until": "2025-01-01T11:00:00Z"});
        let at = |t: &str| json!({"accession": "ACC-1", "at": t, "faults": {"archiveOutage": w}});
        assert_eq!(call(&r, "lightbox-publish", at("2025-01-01T10:30:00.000Z")).map_err(|e| e.error), Err("Archive.Unavailable".into()));
        assert!(call(&r, "lightbox-publish", at("2025-01-01T11:00:00.000Z")).is_ok());
        let busy = json!({"accession": "ACC-1", "attempt": 0, "faults": {"archiveBusy": 1}});
        assert_eq!(call(&r, "lightbox-publish", busy).map_err(|e| e.error), Err("Archive.Busy".into()));
        assert!(call(&r, "lightbox-publish", json!({"accession": "ACC-1", "attempt": 1, "faults": {"archiveBusy": 1}})).is_ok());
        assert_eq!(call(&r, "lightbox-transcribe", json!({})).map_err(|e| e.error), Err("Lightbox.InvalidPayload".into()));
    }
}
