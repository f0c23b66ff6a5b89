//! Data-driven conformance suite: ASL cases recorded against AWS Step Functions
//! (see tests/conformance/README.md and NOTICE for their origin), run through the
//! embedded engine. Every case passes, or is listed with a reason in
//! tests/conformance/known_failures.tsv; a listed case that starts passing fails
//! the suite too, so the list stays true.

use std::collections::BTreeMap;

use lightbox::engine::ephemeral::{self, RunOptions};
use lightbox::engine::tasks::Mocks;
use lightbox::engine::test_state;
use regex::Regex;
use serde_json::{Value, json};

const CASES: &str = include_str!("conformance/cases.jsonl");
const KNOWN: &str = include_str!("conformance/known_failures.tsv");

fn iso_re() -> Regex {
    Regex::new(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})").expect("regex")
}

/// Replace timestamps in our values with "date", as the recordings were normalised.
fn normalise(v: &Value, re: &Regex) -> Value {
    match v {
        Value::String(s) => Value::String(
            re.replace_all(
                s,
                |c: &regex::Captures<'_>| {
                    if chrono::DateTime::parse_from_rfc3339(&c[0]).is_ok() { "date".to_string() } else { c[0].to_string() }
                },
            )
            .into_owned(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(|x| normalise(x, re)).collect()),
        Value::Object(m) => Value::Object(m.iter().map(|(k, x)| (k.clone(), normalise(x, re))).collect()),
        other => other.clone(),
    }
}

/// Masks name keys whose values are random: replace ours under that key.
fn apply_masks(v: &mut Value, masks: &[(String, Value)]) {
    match v {
        Value::Object(m) => {
            for (k, x) in m.iter_mut() {
                if let Some((_, r)) = masks.iter().find(|(key, _)| key == k) {
                    *x = r.clone();
                } else {
                    apply_masks(x, masks);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| apply_masks(x, masks)),
        _ => {}
    }
}

fn placeholder_match(expected: &str, actual: &str) -> bool {
    if expected == actual {
        return true;
    }
    if !(expected.contains('<') || expected.contains("111111111111") || expected.contains("snf_role_arn")) {
        return false;
    }
    let mut pat = String::from("^");
    let tok = Regex::new(r"<[^<>]*>|111111111111|snf_role_arn").expect("regex");
    let mut last = 0;
    for m in tok.find_iter(expected) {
        pat.push_str(&regex::escape(&expected[last..m.start()]));
        pat.push_str("(?s:.*)");
        last = m.end();
    }
    pat.push_str(&regex::escape(&expected[last..]));
    pat.push('$');
    Regex::new(&pat).map(|r| r.is_match(actual)).unwrap_or(false)
}

fn same(expected: &Value, actual: &Value, at: &str) -> Result<(), String> {
    match (expected, actual) {
        (Value::Number(a), Value::Number(b)) => {
            if a.as_f64() == b.as_f64() {
                Ok(())
            } else {
                Err(format!("{at}: expected {a}, got {b}"))
            }
        }
        (Value::String(a), Value::String(b)) => {
            if placeholder_match(a, b) {
                Ok(())
            } else {
                Err(format!("{at}: expected {a:?}, got {b:?}"))
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            if a.len() != b.len() {
                return Err(format!("{at}: expected {} items, got {}: {}", a.len(), b.len(), short(actual)));
            }
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                same(x, y, &format!("{at}[{i}]"))?;
            }
            Ok(())
        }
        (Value::Object(a), Value::Object(b)) => {
            for (k, x) in a {
                match b.get(k) {
                    Some(y) => same(x, y, &format!("{at}.{k}"))?,
                    None => return Err(format!("{at}: missing key {k:?} in {}", short(actual))),
                }
            }
            if let Some(k) = b.keys().find(|k| !a.contains_key(*k)) {
                return Err(format!("{at}: unexpected key {k:?}"));
            }
            Ok(())
        }
        (a, b) if a == b => Ok(()),
        (a, b) => Err(format!("{at}: expected {}, got {}", short(a), short(b))),
    }
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 160 { format!("{}…", &s[..s.char_indices().nth(160).map(|(i, _)| i).unwrap_or(s.len())]) } else { s }
}

fn check_case(case: &Value, re: &Regex) -> Result<(), String> {
    let api = case["api"].as_str().unwrap_or_default();
    let definition = case["definition"].to_string();
    let input = case["input"].to_string();
    let expected = &case["expected"];
    let masks: Vec<(String, Value)> = case["masks"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|m| {
                    let p = m["jsonpath"].as_str()?;
                    let key = p.rsplit(['.', '$']).find(|s| !s.is_empty())?;
                    Some((key.to_string(), m["replacement"].clone()))
                })
                .collect()
        })
        .unwrap_or_default();
    let actual = match api {
        "StartExecution" => {
            let opts = RunOptions { virtual_time: true, history: true, ..RunOptions::default() };
            ephemeral::run(&definition, &input, opts).map_err(|e| format!("run failed: {e}"))?
        }
        "TestState" => {
            let args = case.get("test_state_args").cloned().unwrap_or(json!({}));
            test_state::run(&definition, &input, &args).map_err(|e| format!("test-state failed: {e}"))?
        }
        other => return Err(format!("unknown api {other}")),
    };
    let mut actual = normalise(&actual, re);
    apply_masks(&mut actual, &masks);
    let status = actual["status"].as_str().unwrap_or_default();
    if status != expected["status"].as_str().unwrap_or_default() {
        return Err(format!(
            "status: expected {}, got {status} ({} / {})",
            expected["status"],
            short(&actual["error"]),
            short(&actual["cause"])
        ));
    }
    for key in ["output", "error", "cause", "nextState"] {
        match (expected.get(key), actual.get(key)) {
            (None, _) | (Some(Value::Null), None) => {}
            (Some(e), Some(a)) => same(e, a, key)?,
            (Some(e), None) => return Err(format!("{key}: expected {}, got nothing", short(e))),
        }
    }
    if let Some(e) = expected.get("inspectionData") {
        same(e, actual.get("inspectionData").unwrap_or(&Value::Null), "inspectionData")?;
    }
    if let Some(types) = case.get("expected_event_types").and_then(Value::as_array) {
        let mut ours: Vec<&str> =
            actual["events"].as_array().map(|a| a.iter().filter_map(|e| e["type"].as_str()).collect()).unwrap_or_default();
        let mut theirs: Vec<&str> = types.iter().filter_map(Value::as_str).collect();
        // The recorder sorted events whose order depends on AWS's timing (Parallel branches)
        // and gave them the id [0] instead of a number: compare each such run as a multiset.
        if let Some(hist) = case.get("expected_history").and_then(Value::as_array) {
            let unordered: Vec<bool> = hist.iter().map(|e| !e["id"].is_number()).collect();
            let mut i = 0;
            while i < unordered.len() {
                if !unordered[i] {
                    i += 1;
                    continue;
                }
                let j = (i..unordered.len()).find(|&k| !unordered[k]).unwrap_or(unordered.len());
                if j <= ours.len() && j <= theirs.len() {
                    ours[i..j].sort_unstable();
                    theirs[i..j].sort_unstable();
                }
                i = j;
            }
        }
        if ours != theirs {
            let at = ours.iter().zip(&theirs).position(|(a, b)| a != b).unwrap_or(ours.len().min(theirs.len()));
            return Err(format!(
                "history event types differ at #{}: expected {:?}, got {:?}",
                at + 1,
                theirs.get(at).copied().unwrap_or("(end)"),
                ours.get(at).copied().unwrap_or("(end)")
            ));
        }
    }
    Ok(())
}

#[test]
fn conformance_cases_recorded_against_aws() {
    let _ = Mocks::default();
    let re = iso_re();
    let known: BTreeMap<&str, &str> = KNOWN
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('\t'))
        .map(|(id, reason)| (id.trim(), reason.trim()))
        .collect();
    let cases: Vec<Value> =
        CASES.lines().filter(|l| !l.trim().is_empty()).map(|l| serde_json::from_str(l).expect("case is JSON")).collect();
    assert!(cases.len() > 800, "expected the whole corpus, found {} cases", cases.len());
    let mut unexpected = vec![];
    let mut now_passing = vec![];
    let mut passed = 0usize;
    let mut jsonpath_total = 0usize;
    let mut jsonpath_passed = 0usize;
    let mut report = String::new();
    for case in &cases {
        let id = case["id"].as_str().expect("case id");
        let jsonata = case["features"].as_array().is_some_and(|f| f.iter().any(|x| x == "jsonata"));
        let r = std::panic::catch_unwind(|| check_case(case, &re)).unwrap_or_else(|_| Err("panicked".into()));
        if !jsonata {
            jsonpath_total += 1;
        }
        match (&r, known.get(id)) {
            (Ok(()), None) => {
                passed += 1;
                if !jsonata {
                    jsonpath_passed += 1;
                }
            }
            (Ok(()), Some(_)) => {
                passed += 1;
                if !jsonata {
                    jsonpath_passed += 1;
                }
                now_passing.push(id.to_string());
            }
            (Err(e), None) => {
                unexpected.push(format!("{id}\n    {e}"));
                report.push_str(&format!("{id}\t{e}\n"));
            }
            (Err(e), Some(_)) => report.push_str(&format!("{id}\t{e}\n")),
        }
    }
    let total = cases.len();
    let _ = std::fs::write(concat!(env!("CARGO_TARGET_TMPDIR"), "/conformance-failures.tsv"), &report);
    println!(
        "conformance: {passed} of {total} cases pass ({:.1}%); JSONPath cases: {jsonpath_passed} of {jsonpath_total}; known failures listed: {}",
        passed as f64 * 100.0 / total as f64,
        known.len()
    );
    assert!(unexpected.is_empty(), "{} case(s) fail that are not known failures:\n{}", unexpected.len(), unexpected.join("\n"));
    assert!(
        now_passing.is_empty(),
        "{} known failure(s) now pass; remove them from tests/conformance/known_failures.tsv:\n{}",
        now_passing.len(),
        now_passing.join("\n")
    );
}
