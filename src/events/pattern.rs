//! EventBridge event patterns: compile a pattern once into a typed matcher, then test events.
//!
//! Why not the `quamina` crate: quamina 0.7.0 (a maintained Rust port of the Go matcher
//! EventBridge's engine descends from) was evaluated. It matches fast, but it lacks `$or`,
//! `anything-but` with `prefix`/`suffix`/`wildcard`/`equals-ignore-case`, and
//! `prefix`/`suffix` with `equals-ignore-case`, all of which EventBridge has and this issue
//! asks for; it would also bring six dependencies. Lightbox matches a few thousand events
//! against tens of patterns, so a direct tree walk is fast enough (see `lightbox bench`).
//!
//! The language (as EventBridge's content filtering documents it):
//! - a pattern is a JSON object; a key whose value is an object descends into the event, a
//!   key whose value is an array lists matchers of which one must match (OR), and every key
//!   must match (AND); `"$or": [pattern, …]` at any level needs one of its patterns to match;
//! - matchers: exact values (string, number — compared as numbers —, boolean, `null`),
//!   `prefix`, `suffix` (each also as `{"equals-ignore-case": …}`), `equals-ignore-case`,
//!   `wildcard` (`*` any run, `\*` a star, `\\` a backslash), `anything-but` (a value, a list
//!   of strings or numbers, or `{"prefix"|"suffix"|"wildcard"|"equals-ignore-case": …}`),
//!   `numeric` (`["=", n]`, or a lower and/or an upper bound: `[">", 0, "<=", 5]`),
//!   `exists` (`true`/`false`, on leaves), `cidr` (IPv4 or IPv6);
//! - event arrays: a value that is an array matches when any element matches, and objects
//!   inside arrays are each tried on their own (fields of one sub-pattern come from the same
//!   element);
//! - `anything-but` needs the field to be there; its string forms apply to string values.
//!
//! Bounded: a pattern of at most [`MAX_PATTERN_BYTES`], nested at most [`MAX_DEPTH`] deep,
//! with at most [`MAX_MATCHERS`] matchers. Errors name the offending part by its path.

use serde_json::{Map, Value};
use std::net::IpAddr;

/// Largest pattern text accepted.
pub const MAX_PATTERN_BYTES: usize = 65_536;
/// Deepest nesting of objects and `$or` in a pattern.
pub const MAX_DEPTH: usize = 32;
/// Most matchers (array elements) in one pattern.
pub const MAX_MATCHERS: usize = 4_096;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PatternError {
    #[error("event pattern is not valid JSON: {0}")]
    Json(String),
    #[error("event pattern is not valid: {path}: {message}")]
    Invalid { path: String, message: String },
    #[error("event pattern is too large: {0}")]
    TooLarge(String),
}

/// A compiled event pattern.
#[derive(Debug, Clone)]
pub struct Pattern {
    root: Node,
    text: String,
}

#[derive(Debug, Clone, Default)]
struct Node {
    fields: Vec<(String, Field)>,
    ors: Vec<Vec<Node>>,
}

#[derive(Debug, Clone)]
enum Field {
    Nested(Node),
    Leaf(Vec<Matcher>),
}

#[derive(Debug, Clone)]
enum Matcher {
    Exact(Value),
    Prefix { s: String, ignore_case: bool },
    Suffix { s: String, ignore_case: bool },
    IgnoreCase(String),
    Wildcard(Wildcard),
    AnythingBut(But),
    Numeric(Vec<(Cmp, f64)>),
    Exists(bool),
    Cidr(Cidr),
}

#[derive(Debug, Clone)]
enum But {
    Values(Vec<Value>),
    Prefix(String),
    Suffix(String),
    IgnoreCase(Vec<String>),
    Wildcard(Vec<Wildcard>),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Cmp {
    Lt,
    Le,
    Eq,
    Gt,
    Ge,
}

/// A wildcard as literal segments around `*`.
#[derive(Debug, Clone)]
struct Wildcard {
    segments: Vec<String>,
}

#[derive(Debug, Clone)]
struct Cidr {
    net: IpAddr,
    bits: u8,
}

/// Two patterns are the same when their texts are.
impl PartialEq for Pattern {
    fn eq(&self, other: &Pattern) -> bool {
        self.text == other.text
    }
}

impl Pattern {
    /// Compile a pattern from its JSON text.
    pub fn parse(text: &str) -> Result<Pattern, PatternError> {
        if text.len() > MAX_PATTERN_BYTES {
            return Err(PatternError::TooLarge(format!("{} bytes (at most {MAX_PATTERN_BYTES})", text.len())));
        }
        let v: Value = serde_json::from_str(text).map_err(|e| PatternError::Json(e.to_string()))?;
        let mut budget = MAX_MATCHERS;
        let root = match &v {
            Value::Object(o) => node(o, "", 0, &mut budget)?,
            _ => return Err(invalid("(top)", "a pattern must be a JSON object")),
        };
        Ok(Pattern { root, text: text.to_string() })
    }

    /// The pattern's text as given.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Whether `event` matches. Only a JSON object can.
    pub fn matches(&self, event: &Value) -> bool {
        match event {
            Value::Object(o) => match_node(&self.root, Some(o)),
            _ => false,
        }
    }

    /// Whether the event JSON text matches (invalid JSON never does).
    pub fn matches_str(&self, event: &str) -> bool {
        serde_json::from_str::<Value>(event).is_ok_and(|v| self.matches(&v))
    }
}

fn invalid(path: &str, message: impl Into<String>) -> PatternError {
    PatternError::Invalid { path: if path.is_empty() { "(top)".into() } else { path.to_string() }, message: message.into() }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() { key.to_string() } else { format!("{path}.{key}") }
}

fn node(o: &Map<String, Value>, path: &str, depth: usize, budget: &mut usize) -> Result<Node, PatternError> {
    if depth >= MAX_DEPTH {
        return Err(PatternError::TooLarge(format!("{path}: nested more than {MAX_DEPTH} levels")));
    }
    let mut n = Node::default();
    for (k, v) in o {
        let p = join(path, k);
        if k == "$or" {
            let Value::Array(alts) = v else { return Err(invalid(&p, "$or must be an array of patterns")) };
            if alts.len() < 2 {
                return Err(invalid(&p, "$or needs at least two patterns"));
            }
            let mut list = Vec::with_capacity(alts.len());
            for (i, a) in alts.iter().enumerate() {
                let ap = format!("{p}[{i}]");
                let Value::Object(ao) = a else { return Err(invalid(&ap, "each $or alternative must be an object")) };
                if ao.is_empty() {
                    return Err(invalid(&ap, "an $or alternative must not be empty"));
                }
                list.push(node(ao, path, depth + 1, budget)?);
            }
            n.ors.push(list);
            continue;
        }
        let f = match v {
            Value::Object(sub) => {
                if sub.is_empty() {
                    return Err(invalid(&p, "an object in a pattern must not be empty"));
                }
                Field::Nested(node(sub, &p, depth + 1, budget)?)
            }
            Value::Array(items) => {
                if items.is_empty() {
                    return Err(invalid(&p, "a list of matchers must not be empty"));
                }
                let mut ms = Vec::with_capacity(items.len());
                for (i, it) in items.iter().enumerate() {
                    *budget = budget.checked_sub(1).ok_or_else(|| PatternError::TooLarge(format!("more than {MAX_MATCHERS} matchers")))?;
                    ms.push(matcher(it, &format!("{p}[{i}]"))?);
                }
                Field::Leaf(ms)
            }
            _ => return Err(invalid(&p, "must be an array of matchers or an object")),
        };
        n.fields.push((k.clone(), f));
    }
    Ok(n)
}

fn string<'a>(v: &'a Value, path: &str, what: &str) -> Result<&'a str, PatternError> {
    v.as_str().ok_or_else(|| invalid(path, format!("{what} must be a string")))
}

fn number(v: &Value, path: &str) -> Result<f64, PatternError> {
    v.as_f64().filter(|f| f.is_finite()).ok_or_else(|| invalid(path, "must be a finite number"))
}

/// A string, or `{"equals-ignore-case": string}` (prefix and suffix take both).
fn maybe_ignore_case(v: &Value, path: &str, what: &str) -> Result<(String, bool), PatternError> {
    match v {
        Value::String(s) => Ok((s.clone(), false)),
        Value::Object(o) if o.len() == 1 && o.contains_key("equals-ignore-case") => {
            Ok((string(&o["equals-ignore-case"], &format!("{path}.equals-ignore-case"), "equals-ignore-case")?.to_string(), true))
        }
        _ => Err(invalid(path, format!("{what} must be a string or {{\"equals-ignore-case\": string}}"))),
    }
}

fn matcher(v: &Value, path: &str) -> Result<Matcher, PatternError> {
    let o = match v {
        Value::Object(o) => o,
        Value::Array(_) => return Err(invalid(path, "a matcher cannot be an array")),
        _ => return Ok(Matcher::Exact(v.clone())),
    };
    if o.len() != 1 {
        return Err(invalid(path, "a matcher object must have exactly one operator"));
    }
    let Some((op, arg)) = o.iter().next() else { return Err(invalid(path, "empty matcher")) };
    let p = format!("{path}.{op}");
    Ok(match op.as_str() {
        "prefix" => {
            let (s, ignore_case) = maybe_ignore_case(arg, &p, "prefix")?;
            Matcher::Prefix { s: if ignore_case { s.to_lowercase() } else { s }, ignore_case }
        }
        "suffix" => {
            let (s, ignore_case) = maybe_ignore_case(arg, &p, "suffix")?;
            Matcher::Suffix { s: if ignore_case { s.to_lowercase() } else { s }, ignore_case }
        }
        "equals-ignore-case" => Matcher::IgnoreCase(string(arg, &p, "equals-ignore-case")?.to_lowercase()),
        "wildcard" => Matcher::Wildcard(wildcard(string(arg, &p, "wildcard")?, &p)?),
        "exists" => Matcher::Exists(arg.as_bool().ok_or_else(|| invalid(&p, "exists must be true or false"))?),
        "numeric" => Matcher::Numeric(numeric(arg, &p)?),
        "anything-but" => Matcher::AnythingBut(anything_but(arg, &p)?),
        "cidr" => Matcher::Cidr(cidr(string(arg, &p, "cidr")?, &p)?),
        other => return Err(invalid(path, format!("unknown operator {other:?}"))),
    })
}

fn anything_but(arg: &Value, p: &str) -> Result<But, PatternError> {
    Ok(match arg {
        Value::String(_) | Value::Number(_) => But::Values(vec![arg.clone()]),
        Value::Array(items) => {
            if items.is_empty() {
                return Err(invalid(p, "anything-but list must not be empty"));
            }
            let strings = items.iter().all(Value::is_string);
            let numbers = items.iter().all(Value::is_number);
            if !strings && !numbers {
                return Err(invalid(p, "anything-but list must hold only strings or only numbers"));
            }
            But::Values(items.clone())
        }
        Value::Object(o) if o.len() == 1 => {
            let Some((op, v)) = o.iter().next() else { return Err(invalid(p, "empty anything-but")) };
            let q = format!("{p}.{op}");
            let strings = |what: &str| -> Result<Vec<String>, PatternError> {
                match v {
                    Value::String(s) => Ok(vec![s.clone()]),
                    Value::Array(a) if !a.is_empty() => {
                        a.iter().enumerate().map(|(i, x)| string(x, &format!("{q}[{i}]"), what).map(str::to_string)).collect()
                    }
                    _ => Err(invalid(&q, format!("{what} must be a string or a non-empty list of strings"))),
                }
            };
            match op.as_str() {
                "prefix" => But::Prefix(string(v, &q, "prefix")?.to_string()),
                "suffix" => But::Suffix(string(v, &q, "suffix")?.to_string()),
                "equals-ignore-case" => But::IgnoreCase(strings("equals-ignore-case")?.into_iter().map(|s| s.to_lowercase()).collect()),
                "wildcard" => But::Wildcard(strings("wildcard")?.iter().map(|s| wildcard(s, &q)).collect::<Result<_, _>>()?),
                other => return Err(invalid(p, format!("anything-but does not take {other:?}"))),
            }
        }
        _ => return Err(invalid(p, "anything-but takes a string, a number, a list, or one of prefix/suffix/wildcard/equals-ignore-case")),
    })
}

fn numeric(arg: &Value, p: &str) -> Result<Vec<(Cmp, f64)>, PatternError> {
    let Value::Array(items) = arg else { return Err(invalid(p, "numeric must be a list such as [\">\", 0, \"<=\", 5]")) };
    if items.is_empty() || items.len() % 2 != 0 || items.len() > 4 {
        return Err(invalid(p, "numeric takes one or two (operator, number) pairs"));
    }
    let mut out = vec![];
    for (i, pair) in items.chunks(2).enumerate() {
        let op = match pair[0].as_str() {
            Some("<") => Cmp::Lt,
            Some("<=") => Cmp::Le,
            Some("=") => Cmp::Eq,
            Some(">") => Cmp::Gt,
            Some(">=") => Cmp::Ge,
            _ => return Err(invalid(&format!("{p}[{}]", 2 * i), "operator must be one of <, <=, =, >, >=")),
        };
        out.push((op, number(&pair[1], &format!("{p}[{}]", 2 * i + 1))?));
    }
    if let [(a, lo), (b, hi)] = out.as_slice() {
        let lower = |c: &Cmp| matches!(c, Cmp::Gt | Cmp::Ge);
        let upper = |c: &Cmp| matches!(c, Cmp::Lt | Cmp::Le);
        if !(lower(a) && upper(b)) {
            return Err(invalid(p, "a range is a lower bound (> or >=) then an upper bound (< or <=)"));
        }
        if lo > hi {
            return Err(invalid(p, "the lower bound is above the upper bound"));
        }
    }
    Ok(out)
}

fn wildcard(s: &str, p: &str) -> Result<Wildcard, PatternError> {
    let mut segments = vec![String::new()];
    let mut chars = s.chars();
    let mut last_star = false;
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(e @ ('*' | '\\')) => {
                    if let Some(x) = segments.last_mut() {
                        x.push(e);
                    }
                    last_star = false;
                }
                _ => return Err(invalid(p, "in a wildcard, \\ escapes only * or \\")),
            },
            '*' => {
                if last_star {
                    return Err(invalid(p, "a wildcard cannot have consecutive *"));
                }
                segments.push(String::new());
                last_star = true;
            }
            c => {
                if let Some(x) = segments.last_mut() {
                    x.push(c);
                }
                last_star = false;
            }
        }
    }
    Ok(Wildcard { segments })
}

impl Wildcard {
    fn matches(&self, s: &str) -> bool {
        let segs = &self.segments;
        if segs.len() == 1 {
            return s == segs[0];
        }
        let (first, rest) = (&segs[0], &segs[1..]);
        let Some(mut tail) = s.strip_prefix(first.as_str()) else { return false };
        let (last, middle) = match rest.split_last() {
            Some(x) => x,
            None => return true,
        };
        for m in middle {
            match tail.find(m.as_str()) {
                Some(i) => tail = &tail[i + m.len()..],
                None => return false,
            }
        }
        tail.len() >= last.len() && tail.ends_with(last.as_str())
    }
}

fn cidr(s: &str, p: &str) -> Result<Cidr, PatternError> {
    let bad = || invalid(p, "cidr must be an address/prefix-length such as 10.0.0.0/24");
    let (addr, bits) = s.split_once('/').ok_or_else(bad)?;
    let net: IpAddr = addr.parse().map_err(|_| bad())?;
    let bits: u8 = bits.parse().map_err(|_| bad())?;
    let max = if net.is_ipv4() { 32 } else { 128 };
    if bits > max {
        return Err(bad());
    }
    Ok(Cidr { net, bits })
}

impl Cidr {
    fn contains(&self, s: &str) -> bool {
        let Ok(ip) = s.parse::<IpAddr>() else { return false };
        let mask = |bits: u8, width: u32| -> u128 {
            if bits == 0 { 0 } else { (!0u128 << (width - u32::from(bits))) & (!0u128 >> (128 - width)) }
        };
        match (self.net, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let m = mask(self.bits, 32);
                (u128::from(u32::from(n)) & m) == (u128::from(u32::from(a)) & m)
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let m = mask(self.bits, 128);
                (u128::from(n) & m) == (u128::from(a) & m)
            }
            _ => false,
        }
    }
}

// ----- matching -------------------------------------------------------------------

/// Every leaf (non-object, non-array value) in `v`, arrays flattened.
fn leaves<'a>(v: &'a Value, out: &mut Vec<&'a Value>) {
    match v {
        Value::Array(a) => a.iter().for_each(|x| leaves(x, out)),
        Value::Object(_) => {}
        v => out.push(v),
    }
}

/// Every object in `v`, arrays flattened.
fn objects<'a>(v: &'a Value, out: &mut Vec<&'a Map<String, Value>>) {
    match v {
        Value::Array(a) => a.iter().for_each(|x| objects(x, out)),
        Value::Object(o) => out.push(o),
        _ => {}
    }
}

fn match_node(n: &Node, obj: Option<&Map<String, Value>>) -> bool {
    n.fields.iter().all(|(k, f)| match_field(f, obj.and_then(|o| o.get(k))))
        && n.ors.iter().all(|alts| alts.iter().any(|a| match_node(a, obj)))
}

/// One field of a pattern against the event's value there (`None`: absent). Objects inside
/// arrays are tried one by one; leaves inside arrays match when any does.
fn match_field(f: &Field, v: Option<&Value>) -> bool {
    match (f, v) {
        (Field::Nested(sub), Some(Value::Object(o))) => match_node(sub, Some(o)),
        (Field::Nested(sub), Some(a @ Value::Array(_))) => {
            let mut objs = vec![];
            objects(a, &mut objs);
            if objs.is_empty() { match_node(sub, None) } else { objs.into_iter().any(|o| match_node(sub, Some(o))) }
        }
        (Field::Nested(sub), _) => match_node(sub, None),
        (Field::Leaf(ms), None | Some(Value::Object(_))) => ms.iter().any(|m| matches!(m, Matcher::Exists(false))),
        (Field::Leaf(ms), Some(a @ Value::Array(_))) => {
            let mut ls = vec![];
            leaves(a, &mut ls);
            ms.iter().any(|m| match_leaf(m, &ls))
        }
        (Field::Leaf(ms), Some(x)) => ms.iter().any(|m| match m {
            Matcher::Exists(want) => *want,
            m => match_value(m, x),
        }),
    }
}

fn match_leaf(m: &Matcher, leaves: &[&Value]) -> bool {
    match m {
        Matcher::Exists(want) => leaves.is_empty() != *want,
        m => leaves.iter().any(|v| match_value(m, v)),
    }
}

fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

// Case-insensitive comparisons against an already lower-cased `want`: ASCII without
// allocating, anything else through `to_lowercase`.
fn fold_eq(s: &str, want: &str) -> bool {
    if s.is_ascii() && want.is_ascii() { s.eq_ignore_ascii_case(want) } else { s.to_lowercase() == want }
}

fn fold_prefix(s: &str, want: &str) -> bool {
    if s.is_ascii() && want.is_ascii() {
        s.len() >= want.len() && s.as_bytes()[..want.len()].eq_ignore_ascii_case(want.as_bytes())
    } else {
        s.to_lowercase().starts_with(want)
    }
}

fn fold_suffix(s: &str, want: &str) -> bool {
    if s.is_ascii() && want.is_ascii() {
        s.len() >= want.len() && s.as_bytes()[s.len() - want.len()..].eq_ignore_ascii_case(want.as_bytes())
    } else {
        s.to_lowercase().ends_with(want)
    }
}

fn match_value(m: &Matcher, v: &Value) -> bool {
    let s = v.as_str();
    match m {
        Matcher::Exact(want) => same(want, v),
        Matcher::Prefix { s: p, ignore_case } => {
            s.is_some_and(|s| if *ignore_case { fold_prefix(s, p) } else { s.starts_with(p.as_str()) })
        }
        Matcher::Suffix { s: p, ignore_case } => s.is_some_and(|s| if *ignore_case { fold_suffix(s, p) } else { s.ends_with(p.as_str()) }),
        Matcher::IgnoreCase(want) => s.is_some_and(|s| fold_eq(s, want)),
        Matcher::Wildcard(w) => s.is_some_and(|s| w.matches(s)),
        Matcher::Numeric(cmps) => v.as_f64().is_some_and(|x| {
            cmps.iter().all(|(c, n)| match c {
                Cmp::Lt => x < *n,
                Cmp::Le => x <= *n,
                Cmp::Eq => x == *n,
                Cmp::Gt => x > *n,
                Cmp::Ge => x >= *n,
            })
        }),
        Matcher::Exists(want) => *want,
        Matcher::Cidr(c) => s.is_some_and(|s| c.contains(s)),
        Matcher::AnythingBut(b) => match b {
            But::Values(list) => !list.iter().any(|x| same(x, v)),
            But::Prefix(p) => s.is_some_and(|s| !s.starts_with(p.as_str())),
            But::Suffix(p) => s.is_some_and(|s| !s.ends_with(p.as_str())),
            But::IgnoreCase(list) => s.is_some_and(|s| !list.iter().any(|w| fold_eq(s, w))),
            But::Wildcard(ws) => s.is_some_and(|s| !ws.iter().any(|w| w.matches(s))),
        },
    }
}

// ----- benchmark -------------------------------------------------------------------

/// What [`bench`] measured.
#[derive(Debug, Clone)]
pub struct BenchReport {
    pub events: usize,
    pub patterns: usize,
    /// (event, pattern) pairs that matched: shows the work was done.
    pub matches: usize,
    pub seconds: f64,
    /// Events tested against every pattern, per second.
    pub events_per_second: f64,
}

/// `patterns` patterns of every rule type, over the events Lightbox writes (status changes
/// and review events, parsed once), each event tested against every pattern.
pub fn bench(events: usize, patterns: usize) -> Result<BenchReport, PatternError> {
    let templates = [
        r#"{"source": ["aws.states"], "detail": {"status": ["FAILED", "TIMED_OUT"]}}"#,
        r#"{"detail-type": [{"prefix": "Review "}], "detail": {"stateName": ["Review{i}"]}}"#,
        r#"{"detail": {"executionArn": [{"suffix": ":acc-{i}"}]}}"#,
        r#"{"detail": {"status": [{"anything-but": ["SUCCEEDED", "RUNNING"]}], "name": [{"wildcard": "acc-*{i}"}]}}"#,
        r#"{"detail": {"startDate": [{"numeric": [">", 1700000000000, "<=", 1800000000000]}], "name": [{"equals-ignore-case": "ACC-{i}"}]}}"#,
        r#"{"$or": [{"detail": {"error": [{"prefix": "Archive."}]}}, {"detail": {"cause": [{"exists": true}], "name": ["acc-{i}"]}}]}"#,
        r#"{"source": ["lightbox"], "detail": {"error": [{"anything-but": {"prefix": "Review."}}], "name": ["acc-{i}"]}}"#,
        r#"{"resources": [{"wildcard": "arn:aws:states:*:execution:scheduled-imaging:acc-{i}"}]}"#,
    ];
    let compiled: Vec<Pattern> =
        (0..patterns).map(|i| Pattern::parse(&templates[i % templates.len()].replace("{i}", &i.to_string()))).collect::<Result<_, _>>()?;
    let statuses = ["RUNNING", "SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"];
    let evs: Vec<Value> = (0..events)
        .map(|i| {
            let arn = format!("arn:aws:states:us-east-1:000000000000:execution:scheduled-imaging:acc-{}", i % 1000);
            if i % 3 == 0 {
                serde_json::json!({"version": "0", "id": format!("{arn}#{i}"), "detail-type": "Review Approved", "source": "lightbox",
                    "account": "000000000000", "time": "2026-11-25T10:00:00Z", "region": "us-east-1", "resources": [arn],
                    "detail": {"executionArn": arn, "name": format!("acc-{}", i % 1000), "stateName": format!("Review{}", i % 100),
                               "resourceType": "lambda", "resource": "invoke.waitForTaskToken", "output": "{}"}})
            } else {
                serde_json::json!({"version": "0", "id": format!("{arn}#{i}"), "detail-type": "Step Functions Execution Status Change",
                    "source": "aws.states", "account": "000000000000", "time": "2026-11-25T10:00:00Z", "region": "us-east-1",
                    "resources": [arn], "detail": {"executionArn": arn, "name": format!("acc-{}", i % 1000),
                    "status": statuses[i % statuses.len()], "startDate": 1_764_064_800_000_i64 + i as i64, "stopDate": null,
                    "input": "{\"accession\":\"ACC1\"}", "error": if i % 7 == 0 { "Archive.Unavailable" } else { "" }}})
            }
        })
        .collect();
    let t = std::time::Instant::now();
    let mut matches = 0usize;
    for e in &evs {
        matches += compiled.iter().filter(|p| p.matches(e)).count();
    }
    let seconds = t.elapsed().as_secs_f64().max(1e-9);
    Ok(BenchReport { events, patterns, matches, seconds, events_per_second: events as f64 / seconds })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn m(pattern: Value, event: Value) -> bool {
        Pattern::parse(&pattern.to_string()).unwrap_or_else(|e| panic!("{pattern}: {e}")).matches(&event)
    }

    fn err(pattern: &str) -> String {
        match Pattern::parse(pattern) {
            Ok(_) => panic!("{pattern} should be invalid"),
            Err(e) => e.to_string(),
        }
    }

    /// AWS's documented EC2 example event.
    fn ec2() -> Value {
        json!({
            "version": "0", "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718", "detail-type": "EC2 Instance State-change Notification",
            "source": "aws.ec2", "account": "111122223333", "time": "2017-12-22T18:43:48Z", "region": "us-west-1",
            "resources": ["arn:aws:ec2:us-west-1:123456789012:instance/i-1234567890abcdef0"],
            "detail": {"instance-id": "i-1234567890abcdef0", "state": "terminated", "c-count": 5, "d-count": 3, "x-limit": 301.8,
                       "source-ip": "10.0.0.123", "FileName": "image.PNG", "service": "EventBridge", "location": "us-east-1"}
        })
    }

    #[test]
    fn exact_values_strings_numbers_booleans_null_and_empty() {
        assert!(m(json!({"source": ["aws.ec2"]}), ec2()));
        assert!(!m(json!({"source": ["aws.s3"]}), ec2()));
        assert!(m(json!({"source": ["aws.s3", "aws.ec2"]}), ec2()), "any listed value");
        assert!(m(json!({"detail": {"c-count": [5]}}), ec2()));
        assert!(m(json!({"detail": {"c-count": [5.0]}}), ec2()), "numbers compare as numbers");
        assert!(!m(json!({"detail": {"c-count": ["5"]}}), ec2()), "a string is not a number");
        assert!(m(json!({"detail": {"b": [true]}}), json!({"detail": {"b": true}})));
        assert!(!m(json!({"detail": {"b": [true]}}), json!({"detail": {"b": false}})));
        assert!(m(json!({"detail": {"n": [null]}}), json!({"detail": {"n": null}})));
        assert!(!m(json!({"detail": {"n": [null]}}), json!({"detail": {}})), "null does not match a missing field");
        assert!(m(json!({"detail": {"e": [""]}}), json!({"detail": {"e": ""}})));
        assert!(!m(json!({"detail": {"e": [""]}}), json!({"detail": {"e": null}})));
        assert!(!m(json!({"source": ["aws.ec2"], "detail": {"state": ["running"]}}), ec2()), "every field must match");
    }

    #[test]
    fn prefix_and_suffix_with_and_without_case() {
        assert!(m(json!({"time": [{"prefix": "2017-12-22"}]}), ec2()));
        assert!(!m(json!({"time": [{"prefix": "2017-10-02"}]}), ec2()));
        assert!(m(json!({"detail": {"service": [{"prefix": {"equals-ignore-case": "eventb"}}]}}), ec2()));
        assert!(!m(json!({"detail": {"service": [{"prefix": "eventb"}]}}), ec2()));
        assert!(m(json!({"detail": {"FileName": [{"suffix": {"equals-ignore-case": ".png"}}]}}), ec2()));
        assert!(!m(json!({"detail": {"FileName": [{"suffix": ".png"}]}}), ec2()));
        assert!(m(json!({"detail": {"FileName": [{"suffix": ".PNG"}]}}), ec2()));
        assert!(!m(json!({"detail": {"c-count": [{"prefix": "5"}]}}), ec2()), "prefix applies to strings");
    }

    #[test]
    fn anything_but_every_form() {
        assert!(m(json!({"detail": {"state": [{"anything-but": "initializing"}]}}), ec2()));
        assert!(!m(json!({"detail": {"state": [{"anything-but": "terminated"}]}}), ec2()));
        assert!(m(json!({"detail": {"x-limit": [{"anything-but": 123}]}}), ec2()));
        assert!(!m(json!({"detail": {"c-count": [{"anything-but": [4, 5]}]}}), ec2()));
        assert!(!m(json!({"detail": {"state": [{"anything-but": ["stopped", "terminated"]}]}}), ec2()));
        assert!(m(json!({"detail": {"state": [{"anything-but": ["stopped", "overloaded"]}]}}), ec2()));
        assert!(!m(json!({"detail": {"location": [{"anything-but": {"prefix": "us-"}}]}}), ec2()));
        assert!(m(json!({"detail": {"location": [{"anything-but": {"prefix": "eu-"}}]}}), ec2()));
        assert!(!m(json!({"detail": {"FileName": [{"anything-but": {"suffix": ".PNG"}}]}}), ec2()));
        assert!(m(json!({"detail": {"FileName": [{"anything-but": {"suffix": ".png"}}]}}), ec2()));
        assert!(!m(json!({"detail": {"state": [{"anything-but": {"equals-ignore-case": ["TERMINATED", "x"]}}]}}), ec2()));
        assert!(m(json!({"detail": {"state": [{"anything-but": {"equals-ignore-case": "RUNNING"}}]}}), ec2()));
        assert!(!m(json!({"detail": {"FileName": [{"anything-but": {"wildcard": "*.PNG"}}]}}), ec2()));
        assert!(m(json!({"detail": {"FileName": [{"anything-but": {"wildcard": ["*/lib/*", "*.gif"]}}]}}), ec2()));
        assert!(!m(json!({"detail": {"missing": [{"anything-but": "x"}]}}), ec2()), "anything-but needs the field");
    }

    #[test]
    fn numeric_comparisons_and_ranges() {
        let p = json!({"detail": {"c-count": [{"numeric": [">", 0, "<=", 5]}], "d-count": [{"numeric": ["<", 10]}], "x-limit": [{"numeric": ["=", 301.8]}]}});
        assert!(m(p, ec2()));
        assert!(!m(json!({"detail": {"c-count": [{"numeric": [">", 5]}]}}), ec2()));
        assert!(m(json!({"detail": {"c-count": [{"numeric": [">=", 5]}]}}), ec2()));
        assert!(!m(json!({"detail": {"state": [{"numeric": [">", 0]}]}}), ec2()), "numeric applies to numbers");
        assert!(m(json!({"detail": {"startDate": [{"numeric": [">", 1.7e12]}]}}), json!({"detail": {"startDate": 1_764_064_800_000_i64}})));
    }

    #[test]
    fn exists_on_leaves() {
        assert!(m(json!({"detail": {"state": [{"exists": true}]}}), ec2()));
        assert!(!m(json!({"detail": {"nope": [{"exists": true}]}}), ec2()));
        assert!(m(json!({"detail": {"nope": [{"exists": false}]}}), ec2()));
        assert!(!m(json!({"detail": {"state": [{"exists": false}]}}), ec2()));
        assert!(m(json!({"other": {"x": [{"exists": false}]}}), ec2()), "a missing parent: the leaf does not exist");
        assert!(m(json!({"detail": {"tags": [{"exists": false}]}}), json!({"detail": {"tags": []}})), "an empty array has no leaf");
        assert!(!m(json!({"detail": [{"exists": true}]}), ec2()), "exists works on leaves, not on objects");
    }

    #[test]
    fn equals_ignore_case_wildcard_and_cidr() {
        assert!(m(json!({"detail-type": [{"equals-ignore-case": "ec2 instance state-change notification"}]}), ec2()));
        assert!(m(json!({"k": [{"equals-ignore-case": "ÉCOLE"}]}), json!({"k": "école"})), "beyond ASCII too");
        assert!(m(json!({"k": [{"prefix": {"equals-ignore-case": "ÉC"}}]}), json!({"k": "école"})));
        assert!(!m(json!({"detail-type": [{"equals-ignore-case": "ec2 instance"}]}), ec2()));
        assert!(m(json!({"detail": {"FileName": [{"wildcard": "*.PNG"}]}}), ec2()));
        assert!(m(json!({"resources": [{"wildcard": "arn:aws:ec2:*:*:instance/*"}]}), ec2()));
        assert!(!m(json!({"resources": [{"wildcard": "arn:aws:s3:*"}]}), ec2()));
        assert!(m(json!({"k": [{"wildcard": "a\\*b*"}]}), json!({"k": "a*bcd"})), "escaped star is literal");
        assert!(!m(json!({"k": [{"wildcard": "a\\*b*"}]}), json!({"k": "axbcd"})));
        assert!(m(json!({"k": [{"wildcard": "*ab*ab"}]}), json!({"k": "xxabab"})));
        assert!(!m(json!({"k": [{"wildcard": "ab*ab"}]}), json!({"k": "ab"})), "segments may not overlap");
        assert!(m(json!({"detail": {"source-ip": [{"cidr": "10.0.0.0/24"}]}}), ec2()));
        assert!(!m(json!({"detail": {"source-ip": [{"cidr": "10.0.1.0/24"}]}}), ec2()));
        assert!(m(json!({"ip": [{"cidr": "2001:db8::/32"}]}), json!({"ip": "2001:db8::1"})));
    }

    #[test]
    fn or_across_fields_and_nested() {
        let p = json!({"source": ["aws.ec2"], "$or": [{"detail": {"c-count": [{"numeric": [">", 10]}]}}, {"detail": {"state": ["terminated"]}}]});
        assert!(m(p, ec2()));
        let p = json!({"$or": [{"detail": {"c-count": [{"numeric": [">", 10]}]}}, {"detail": {"state": ["running"]}}]});
        assert!(!m(p, ec2()));
        let nested = json!({"detail": {"$or": [{"state": ["stopped"]}, {"location": [{"prefix": "us-"}]}]}});
        assert!(m(nested, ec2()));
    }

    #[test]
    fn arrays_in_events() {
        let ev = json!({"tags": ["a", "b"], "items": [{"name": "x", "n": 1}, {"name": "y", "n": 2}]});
        assert!(m(json!({"tags": ["b", "z"]}), ev.clone()), "any element matches");
        assert!(!m(json!({"tags": ["z"]}), ev.clone()));
        assert!(m(json!({"items": {"name": ["y"]}}), ev.clone()), "objects in arrays are tried each");
        assert!(m(json!({"items": {"name": ["x"], "n": [1]}}), ev.clone()));
        assert!(!m(json!({"items": {"name": ["x"], "n": [2]}}), ev), "one sub-pattern matches within one element");
    }

    #[test]
    fn invalid_patterns_name_the_bad_part() {
        assert!(err("{").contains("not valid JSON"));
        assert!(err("[]").contains("must be a JSON object"));
        assert!(err(r#"{"source": "aws.ec2"}"#).contains("source: must be an array"));
        assert!(err(r#"{"source": []}"#).contains("must not be empty"));
        assert!(err(r#"{"detail": {"x": [{"prefix": 1}]}}"#).contains("detail.x[0].prefix"));
        assert!(err(r#"{"x": [{"numeric": [">", "a"]}]}"#).contains("x[0].numeric[1]"));
        assert!(err(r#"{"x": [{"numeric": ["<", 5, ">", 1]}]}"#).contains("lower bound"));
        assert!(err(r#"{"x": [{"numeric": ["~", 5]}]}"#).contains("operator"));
        assert!(err(r#"{"x": [{"wildcard": "a**b"}]}"#).contains("consecutive"));
        assert!(err(r#"{"x": [{"wildcard": "a\\b"}]}"#).contains("escapes"));
        assert!(err(r#"{"x": [{"anything-but": ["a", 1]}]}"#).contains("only strings or only numbers"));
        assert!(err(r#"{"x": [{"anything-but": {"numeric": [">", 1]}}]}"#).contains("anything-but does not take"));
        assert!(err(r#"{"x": [{"exists": "yes"}]}"#).contains("true or false"));
        assert!(err(r#"{"x": [{"bogus": 1}]}"#).contains("unknown operator \"bogus\""));
        assert!(err(r#"{"x": [{"prefix": "a", "suffix": "b"}]}"#).contains("exactly one operator"));
        assert!(err(r#"{"$or": [{"a": ["b"]}]}"#).contains("at least two"));
        assert!(err(r#"{"x": [{"cidr": "10.0.0.0/33"}]}"#).contains("cidr"));
    }

    #[test]
    fn the_benchmark_compiles_every_template_and_matches_some() {
        let r = bench(300, 100).expect("bench");
        assert!(r.matches > 0 && r.matches < 300 * 100, "{r:?}");
    }

    #[test]
    fn patterns_are_bounded() {
        let mut deep = String::from("[\"x\"]");
        for _ in 0..40 {
            deep = format!("{{\"a\": {deep}}}");
        }
        assert!(matches!(Pattern::parse(&deep), Err(PatternError::TooLarge(_))));
        let big = format!("{{\"x\": [{}]}}", vec!["\"aaaaaaaa\""; 10_000].join(","));
        assert!(matches!(Pattern::parse(&big), Err(PatternError::TooLarge(_))));
        let many = format!("{{\"x\": [{}]}}", vec!["1"; MAX_MATCHERS + 1].join(","));
        assert!(matches!(Pattern::parse(&many), Err(PatternError::TooLarge(_))));
    }
}
