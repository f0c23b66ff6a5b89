//! JSONPath-mode Choice rules of the Amazon States Language: typed parsing, validation and
//! evaluation with AWS Step Functions semantics.
//!
//! * A value of the wrong type for the operator (e.g. `NumericEquals` on a string) is `false`.
//! * Numbers compare by value (`1 == 1.0`); strings by UTF-16 code units (Java `compareTo`).
//! * `StringMatches`: only `*` is special; `\*` is a literal star, `\\` a literal backslash.
//! * Timestamps follow RFC 3339 as restricted by the ASL spec: `YYYY-MM-DDTHH:MM:SS[.f{1,9}]`
//!   then `Z` or `±HH:MM`; uppercase `T` and `Z` only; compared as instants.
//! * A `Variable` (or `...Path` operand) that selects nothing raises `States.Runtime`, except for
//!   `IsPresent`, which is then simply false. `And`/`Or` short-circuit, so
//!   `And: [IsPresent, ...]` guards against missing fields exactly as on AWS.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::fmt;

use chrono::{Duration, NaiveDate, NaiveDateTime};
use serde_json::Value;

/// One Choice rule: a boolean combination or a single comparison.
#[derive(Debug, Clone, PartialEq)]
pub enum ChoiceRule {
    And(Vec<ChoiceRule>),
    Or(Vec<ChoiceRule>),
    Not(Box<ChoiceRule>),
    Compare { variable: String, op: Op, operand: Operand },
}

/// Comparison operators. A `...Path` spelling sets [`Operand::Path`] instead of a literal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    StringEquals,
    StringLessThan,
    StringGreaterThan,
    StringLessThanEquals,
    StringGreaterThanEquals,
    StringMatches,
    NumericEquals,
    NumericLessThan,
    NumericGreaterThan,
    NumericLessThanEquals,
    NumericGreaterThanEquals,
    BooleanEquals,
    TimestampEquals,
    TimestampLessThan,
    TimestampGreaterThan,
    TimestampLessThanEquals,
    TimestampGreaterThanEquals,
    IsNull,
    IsPresent,
    IsNumeric,
    IsString,
    IsBoolean,
    IsTimestamp,
}

/// Right-hand side of a comparison: a literal (`"NumericEquals": 3`) or a path
/// (`"NumericEqualsPath": "$.limit"`) resolved at evaluation time.
#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    Value(Value),
    Path(String),
}

/// A definition problem, e.g. at `States.Choose.Choices[0].And[1]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationError {
    pub location: String,
    pub message: String,
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.location, self.message)
    }
}

impl std::error::Error for ValidationError {}

/// Runtime failure of a Choice rule. Its `cause()` is the text AWS puts after
/// "An error occurred while executing the state '<name>' (entered at the event id #<n>). ".
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ChoiceError {
    /// `Variable` or a `...Path` operand selected nothing.
    #[error("Invalid path '{path}': The choice state's condition path references an invalid value.")]
    InvalidPath { path: String },
    /// The resolver rejected the path; `message` is passed through as the cause.
    #[error("{message}")]
    MalformedPath { path: String, message: String },
}

impl ChoiceError {
    pub fn error_name(&self) -> &'static str {
        "States.Runtime"
    }

    pub fn cause(&self) -> String {
        self.to_string()
    }
}

/// Path resolver supplied by the caller: `Ok(None)` when the path selects nothing,
/// `Err(cause)` when it is malformed.
pub type Resolve<'a> = dyn Fn(&str) -> Result<Option<Value>, String> + 'a;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Family {
    String,
    Matches,
    Numeric,
    Boolean,
    Timestamp,
    Is,
}

impl Op {
    pub const ALL: [Op; 23] = [
        Op::StringEquals,
        Op::StringLessThan,
        Op::StringGreaterThan,
        Op::StringLessThanEquals,
        Op::StringGreaterThanEquals,
        Op::StringMatches,
        Op::NumericEquals,
        Op::NumericLessThan,
        Op::NumericGreaterThan,
        Op::NumericLessThanEquals,
        Op::NumericGreaterThanEquals,
        Op::BooleanEquals,
        Op::TimestampEquals,
        Op::TimestampLessThan,
        Op::TimestampGreaterThan,
        Op::TimestampLessThanEquals,
        Op::TimestampGreaterThanEquals,
        Op::IsNull,
        Op::IsPresent,
        Op::IsNumeric,
        Op::IsString,
        Op::IsBoolean,
        Op::IsTimestamp,
    ];

    /// The ASL field name (without any `Path` suffix).
    pub fn name(self) -> &'static str {
        match self {
            Op::StringEquals => "StringEquals",
            Op::StringLessThan => "StringLessThan",
            Op::StringGreaterThan => "StringGreaterThan",
            Op::StringLessThanEquals => "StringLessThanEquals",
            Op::StringGreaterThanEquals => "StringGreaterThanEquals",
            Op::StringMatches => "StringMatches",
            Op::NumericEquals => "NumericEquals",
            Op::NumericLessThan => "NumericLessThan",
            Op::NumericGreaterThan => "NumericGreaterThan",
            Op::NumericLessThanEquals => "NumericLessThanEquals",
            Op::NumericGreaterThanEquals => "NumericGreaterThanEquals",
            Op::BooleanEquals => "BooleanEquals",
            Op::TimestampEquals => "TimestampEquals",
            Op::TimestampLessThan => "TimestampLessThan",
            Op::TimestampGreaterThan => "TimestampGreaterThan",
            Op::TimestampLessThanEquals => "TimestampLessThanEquals",
            Op::TimestampGreaterThanEquals => "TimestampGreaterThanEquals",
            Op::IsNull => "IsNull",
            Op::IsPresent => "IsPresent",
            Op::IsNumeric => "IsNumeric",
            Op::IsString => "IsString",
            Op::IsBoolean => "IsBoolean",
            Op::IsTimestamp => "IsTimestamp",
        }
    }

    /// Parses an ASL field name; the flag is true for the `...Path` spelling.
    pub fn from_field(field: &str) -> Option<(Op, bool)> {
        let find = |name: &str| Op::ALL.into_iter().find(|op| op.name() == name);
        match field.strip_suffix("Path").and_then(find) {
            Some(op) if op.has_path_variant() => Some((op, true)),
            _ => find(field).map(|op| (op, false)),
        }
    }

    /// Whether ASL defines a `...Path` variant (all but `StringMatches` and the `Is*` tests).
    pub fn has_path_variant(self) -> bool {
        !matches!(self.family(), Family::Matches | Family::Is)
    }

    fn family(self) -> Family {
        use Op::*;
        match self {
            StringEquals | StringLessThan | StringGreaterThan | StringLessThanEquals | StringGreaterThanEquals => Family::String,
            StringMatches => Family::Matches,
            NumericEquals | NumericLessThan | NumericGreaterThan | NumericLessThanEquals | NumericGreaterThanEquals => Family::Numeric,
            BooleanEquals => Family::Boolean,
            TimestampEquals | TimestampLessThan | TimestampGreaterThan | TimestampLessThanEquals | TimestampGreaterThanEquals => {
                Family::Timestamp
            }
            IsNull | IsPresent | IsNumeric | IsString | IsBoolean | IsTimestamp => Family::Is,
        }
    }

    /// Whether `ord` (variable compared to operand) satisfies this ordering operator.
    fn holds(self, ord: Ordering) -> bool {
        use Op::*;
        match self {
            StringLessThan | NumericLessThan | TimestampLessThan => ord.is_lt(),
            StringGreaterThan | NumericGreaterThan | TimestampGreaterThan => ord.is_gt(),
            StringLessThanEquals | NumericLessThanEquals | TimestampLessThanEquals => ord.is_le(),
            StringGreaterThanEquals | NumericGreaterThanEquals | TimestampGreaterThanEquals => ord.is_ge(),
            _ => ord.is_eq(),
        }
    }

    fn literal_kind(self) -> &'static str {
        match self.family() {
            Family::String | Family::Matches => "a string",
            Family::Numeric => "a number",
            Family::Boolean | Family::Is => "a boolean",
            Family::Timestamp => "an RFC 3339 timestamp string (e.g. \"2016-03-14T01:59:00Z\")",
        }
    }

    fn accepts_literal(self, v: &Value) -> bool {
        match self.family() {
            Family::String | Family::Matches => v.is_string(),
            Family::Numeric => v.is_number(),
            Family::Boolean | Family::Is => v.is_boolean(),
            Family::Timestamp => timestamp(v).is_some(),
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl ChoiceRule {
    /// Parses one rule object (a top-level `Choices[]` element, where `Next`, `Assign` and
    /// `Comment` are ignored, or a nested `And`/`Or`/`Not` element). Collects all problems found.
    pub fn parse(v: &Value, location: &str) -> Result<ChoiceRule, Vec<ValidationError>> {
        let mut errors = Vec::new();
        match parse_rule(v, location, true, &mut errors) {
            Some(rule) if errors.is_empty() => Ok(rule),
            _ => Err(errors),
        }
    }

    /// Evaluates the rule; `resolve` maps a JSONPath (`$.x`, `$$.Execution.Input.y`, `$var.f`)
    /// to its value.
    pub fn evaluate(&self, resolve: &Resolve) -> Result<bool, ChoiceError> {
        // Each rule evaluated is charged to the evaluation budget (and a comparison by what it
        // compares, in `compare`); a spent budget fails the execution after the step.
        let _ = crate::asl::budget::charge(1);
        match self {
            ChoiceRule::And(rules) => {
                for rule in rules {
                    if !rule.evaluate(resolve)? {
                        return Ok(false);
                    }
                }
                Ok(true)
            }
            ChoiceRule::Or(rules) => {
                for rule in rules {
                    if rule.evaluate(resolve)? {
                        return Ok(true);
                    }
                }
                Ok(false)
            }
            ChoiceRule::Not(rule) => Ok(!rule.evaluate(resolve)?),
            ChoiceRule::Compare { variable, op, operand } => {
                let Some(value) = lookup(resolve, variable)? else {
                    return match (op, operand) {
                        (Op::IsPresent, Operand::Value(Value::Bool(want))) => Ok(!want),
                        _ => Err(ChoiceError::InvalidPath { path: variable.clone() }),
                    };
                };
                let rhs = match operand {
                    Operand::Value(v) => Cow::Borrowed(v),
                    Operand::Path(path) => {
                        Cow::Owned(lookup(resolve, path)?.ok_or_else(|| ChoiceError::InvalidPath { path: path.clone() })?)
                    }
                };
                Ok(compare(*op, &value, &rhs))
            }
        }
    }
}

/// Choice state semantics: the index of the first matching rule, `None` for `Default`.
pub fn first_match(rules: &[ChoiceRule], resolve: &Resolve) -> Result<Option<usize>, ChoiceError> {
    for (i, rule) in rules.iter().enumerate() {
        if rule.evaluate(resolve)? {
            return Ok(Some(i));
        }
    }
    Ok(None)
}

fn parse_rule(v: &Value, loc: &str, top: bool, errors: &mut Vec<ValidationError>) -> Option<ChoiceRule> {
    let mut error = |message: String| {
        errors.push(ValidationError { location: loc.to_string(), message });
    };
    let Some(obj) = v.as_object() else {
        error("Choice rule must be a JSON object".into());
        return None;
    };
    let mut operators = Vec::new();
    for key in obj.keys() {
        match key.as_str() {
            "And" | "Or" | "Not" => operators.push(key.as_str()),
            "Variable" | "Comment" => {}
            "Next" | "Assign" if top => {}
            k if Op::from_field(k).is_some() => operators.push(k),
            k => error(format!("The field '{k}' is not supported by Step Functions")),
        }
    }
    let [field] = operators[..] else {
        let found = if operators.is_empty() { "none".to_string() } else { operators.join(", ") };
        error(format!("Choice rule must contain exactly one of And, Or, Not or a comparison operator; found {found}"));
        return None;
    };
    let value = obj.get(field)?;
    let variable = obj.get("Variable");
    match (field, Op::from_field(field)) {
        ("Not", _) => {
            if variable.is_some() {
                error("Variable is not allowed with Not".into());
            }
            if !value.is_object() {
                error("Not must be a Choice rule object".into());
                return None;
            }
            let inner = parse_rule(value, &format!("{loc}.Not"), false, errors)?;
            Some(ChoiceRule::Not(Box::new(inner)))
        }
        (_, Some((op, is_path))) => {
            let variable = match variable {
                None => {
                    error(format!("Variable is required with {field}"));
                    None
                }
                Some(Value::String(s)) if s.starts_with('$') => Some(s.clone()),
                Some(_) => {
                    error("Variable must be a JSONPath string starting with '$'".into());
                    None
                }
            };
            let operand = match value {
                Value::String(s) if is_path && s.starts_with('$') => Some(Operand::Path(s.clone())),
                _ if is_path => {
                    error(format!("{field} must be a JSONPath string starting with '$'"));
                    None
                }
                v if op.accepts_literal(v) => Some(Operand::Value(v.clone())),
                _ => {
                    error(format!("{field} must be {}", op.literal_kind()));
                    None
                }
            };
            Some(ChoiceRule::Compare { variable: variable?, op, operand: operand? })
        }
        // "And" | "Or"
        _ => {
            if variable.is_some() {
                error(format!("Variable is not allowed with {field}"));
            }
            let items = match value.as_array() {
                Some(items) if !items.is_empty() => items,
                _ => {
                    error(format!("{field} must be a non-empty array of Choice rules"));
                    return None;
                }
            };
            let rules: Vec<_> =
                items.iter().enumerate().map(|(i, item)| parse_rule(item, &format!("{loc}.{field}[{i}]"), false, errors)).collect();
            let rules = rules.into_iter().collect::<Option<Vec<_>>>()?;
            Some(if field == "And" { ChoiceRule::And(rules) } else { ChoiceRule::Or(rules) })
        }
    }
}

fn lookup(resolve: &Resolve, path: &str) -> Result<Option<Value>, ChoiceError> {
    resolve(path).map_err(|message| ChoiceError::MalformedPath { path: path.to_string(), message })
}

/// Applies `op` to a present variable value and a resolved operand; wrong types give false.
fn compare(op: Op, v: &Value, rhs: &Value) -> bool {
    match op.family() {
        Family::String => match (v, rhs) {
            (Value::String(a), Value::String(b)) => op.holds(a.encode_utf16().cmp(b.encode_utf16())),
            _ => false,
        },
        Family::Matches => match (v, rhs) {
            (Value::String(text), Value::String(pattern)) => matches_glob(pattern, text),
            _ => false,
        },
        Family::Numeric => numeric_cmp(v, rhs).is_some_and(|ord| op.holds(ord)),
        Family::Boolean => matches!((v, rhs), (Value::Bool(a), Value::Bool(b)) if a == b),
        Family::Timestamp => match (timestamp(v), timestamp(rhs)) {
            (Some(a), Some(b)) => op.holds(a.cmp(&b)),
            _ => false,
        },
        Family::Is => {
            let is = match op {
                Op::IsNull => v.is_null(),
                Op::IsNumeric => v.is_number(),
                Op::IsString => v.is_string(),
                Op::IsBoolean => v.is_boolean(),
                Op::IsTimestamp => timestamp(v).is_some(),
                _ => true, // IsPresent
            };
            rhs.as_bool() == Some(is)
        }
    }
}

fn numeric_cmp(a: &Value, b: &Value) -> Option<Ordering> {
    let (Value::Number(a), Value::Number(b)) = (a, b) else {
        return None;
    };
    let int = |n: &serde_json::Number| n.as_i64().map(i128::from).or_else(|| n.as_u64().map(i128::from));
    match (int(a), int(b)) {
        (Some(x), Some(y)) => Some(x.cmp(&y)),
        _ => a.as_f64()?.partial_cmp(&b.as_f64()?),
    }
}

/// `StringMatches`: `*` matches any run of characters; `\*` and `\\` are literal `*` and `\`.
fn matches_glob(pattern: &str, text: &str) -> bool {
    let mut tokens = Vec::new(); // None = wildcard
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '*' => tokens.push(None),
            '\\' => tokens.push(Some(chars.next_if(|n| matches!(n, '*' | '\\')).unwrap_or('\\'))),
            c => tokens.push(Some(c)),
        }
    }
    let text: Vec<char> = text.chars().collect();
    let (mut p, mut t) = (0, 0);
    let mut backtrack: Option<(usize, usize)> = None; // (token after the last '*', text index)
    while let Some(&c) = text.get(t) {
        // Backtracking can cost pattern × text steps: each is charged, and a spent budget ends it.
        if crate::asl::budget::charge(1).is_err() {
            return false;
        }
        match tokens.get(p) {
            Some(None) => {
                p += 1;
                backtrack = Some((p, t));
            }
            Some(Some(lit)) if *lit == c => {
                p += 1;
                t += 1;
            }
            _ => match backtrack {
                Some((bp, bt)) => {
                    p = bp;
                    t = bt + 1;
                    backtrack = Some((bp, bt + 1));
                }
                None => return false,
            },
        }
    }
    tokens.get(p..).is_some_and(|rest| rest.iter().all(Option::is_none))
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.fraction]` + `Z` or `±HH:MM` into a UTC instant.
fn timestamp(v: &Value) -> Option<NaiveDateTime> {
    let s = v.as_str()?.as_bytes();
    let num = |range: std::ops::Range<usize>| -> Option<u32> {
        let digits = s.get(range)?;
        digits.iter().try_fold(0u32, |acc, &d| d.is_ascii_digit().then(|| acc * 10 + u32::from(d - b'0')))
    };
    let sep = |i: usize, c: u8| s.get(i) == Some(&c);
    if !(sep(4, b'-') && sep(7, b'-') && sep(10, b'T') && sep(13, b':') && sep(16, b':')) {
        return None;
    }
    let (mut i, mut nanos) = (19, 0u32);
    if sep(i, b'.') {
        let digits = s.get(i + 1..)?.iter().take_while(|d| d.is_ascii_digit()).count();
        if !(1..=9).contains(&digits) {
            return None;
        }
        nanos = num(i + 1..i + 1 + digits)? * 10u32.pow(9 - digits as u32);
        i += 1 + digits;
    }
    let offset_minutes = match s.get(i..)? {
        b"Z" => 0,
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let (h, m) = (num(i + 1..i + 3)?, num(i + 4..i + 6)?);
            if h > 23 || m > 59 {
                return None;
            }
            let minutes = i64::from(h * 60 + m);
            if *sign == b'-' { -minutes } else { minutes }
        }
        _ => return None,
    };
    let date = NaiveDate::from_ymd_opt(i32::try_from(num(0..4)?).ok()?, num(5..7)?, num(8..10)?)?;
    let local = date.and_hms_nano_opt(num(11..13)?, num(14..16)?, num(17..19)?, nanos)?;
    local.checked_sub_signed(Duration::minutes(offset_minutes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    /// Tiny resolver over `{"$": input, "$$": context, "<var>": value}`: dotted keys only.
    /// `$$` defaults to `{"Execution": {"Input": <$>}}`.
    fn resolve_in(env: &Value, path: &str) -> Result<Option<Value>, String> {
        let (root, rest) = if let Some(rest) = path.strip_prefix("$$") {
            let ctx = env.get("$$").cloned();
            (ctx.or_else(|| Some(json!({"Execution": {"Input": env.get("$")}}))), rest)
        } else if let Some(rest) = path.strip_prefix('$') {
            let split = rest.find('.').unwrap_or(rest.len());
            let name = if split == 0 { "$" } else { &rest[..split] };
            (env.get(name).cloned(), &rest[split..])
        } else {
            return Err(format!("Invalid JSONPath: {path}"));
        };
        Ok(root.and_then(|root| rest.split('.').skip(1).try_fold(root, |cur, key| cur.get(key).cloned())))
    }

    fn eval(rule: Value, env: Value) -> Result<bool, ChoiceError> {
        let rule = ChoiceRule::parse(&rule, "States.S.Choices[0]").expect("valid rule");
        rule.evaluate(&|p| resolve_in(&env, p))
    }

    fn check(op: &str, operand: Value, variable: Value) -> bool {
        eval(json!({"Variable": "$.v", op: operand}), json!({"$": {"v": variable}})).expect("no error")
    }

    fn errors(rule: Value) -> Vec<String> {
        match ChoiceRule::parse(&rule, "States.S.Choices[0]") {
            Ok(r) => panic!("expected errors, parsed {r:?}"),
            Err(es) => es.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn corpus_vectors_match_aws() {
        let doc: Value = serde_json::from_str(include_str!("choice_vectors.json")).expect("json");
        let vectors = doc["vectors"].as_array().expect("vectors");
        let mut failures = Vec::new();
        for v in vectors {
            let id = v["id"].as_str().unwrap_or("?");
            let rules: Result<Vec<_>, _> = v["choices"]
                .as_array()
                .expect("choices")
                .iter()
                .enumerate()
                .map(|(i, r)| ChoiceRule::parse(r, &format!("States.S.Choices[{i}]")))
                .collect();
            let got = rules
                .map_err(|e| format!("{e:?}"))
                .and_then(|rules| first_match(&rules, &|p| resolve_in(&v["env"], p)).map_err(|e| e.cause()))
                .map(|m| m.map_or(-1, |i| i as i64));
            if got != Ok(v["want"].as_i64().expect("want")) {
                failures.push(format!("{id}: got {got:?}, want {}", v["want"]));
            }
        }
        assert!(vectors.len() >= 400, "only {} vectors", vectors.len());
        assert!(failures.is_empty(), "{} of {} mismatched:\n{}", failures.len(), vectors.len(), failures.join("\n"));
    }

    #[test]
    fn type_mismatch_is_false_and_numbers_compare_by_value() {
        assert!(!check("NumericEquals", json!(1), json!("1")));
        assert!(!check("StringEquals", json!("1"), json!(1)));
        assert!(!check("BooleanEquals", json!(true), json!(1)));
        assert!(!check("BooleanEquals", json!(false), json!(null)));
        assert!(!check("TimestampEquals", json!("2012-10-09T19:00:55Z"), json!(0)));
        assert!(check("NumericEquals", json!(1), json!(1.0)));
        assert!(check("NumericLessThan", json!(1.5), json!(1)));
        assert!(check("NumericGreaterThanEquals", json!(-3), json!(-3.0)));
        assert!(check("NumericGreaterThan", json!(i64::MIN), json!(u64::MAX)));
        assert!(!check("NumericEquals", json!(9007199254740993_u64), json!(9007199254740992_u64)));
    }

    #[test]
    fn string_ordering_uses_utf16_code_units() {
        assert!(check("StringLessThan", json!("AB"), json!("A")));
        assert!(check("StringGreaterThanEquals", json!("A"), json!("AB")));
        // U+10000 is a surrogate pair (0xD800...), below U+FFFF in UTF-16 order.
        assert!(check("StringLessThan", json!("\u{FFFF}"), json!("\u{10000}")));
    }

    #[test]
    fn string_matches_wildcards_and_escapes() {
        let m = |pattern: &str, text: &str| check("StringMatches", json!(pattern), json!(text));
        assert!(m("log-*.txt", "log-2024.txt"));
        assert!(m("*", ""));
        assert!(m("a*b*c", "aXXbYYbc"));
        assert!(!m("a*b", "ab-"));
        assert!(m("a\\*b", "a*b"));
        assert!(!m("a\\*b", "aXb"));
        assert!(m("a\\\\*", "a\\tail"));
        assert!(m("a\\b", "a\\b")); // backslash before an ordinary character stays literal
        assert!(m("x?[y]", "x?[y]"));
        assert!(!m("abc", "ABC"));
        assert!(!check("StringMatches", json!("*"), json!(1)));
    }

    #[test]
    fn timestamp_formats() {
        let ts = |s: &str| timestamp(&json!(s)).is_some();
        for ok in [
            "2016-03-14T01:59:00Z",
            "2016-03-14T01:59:00.5Z",
            "2016-03-14T01:59:00.123456789+05:30",
            "2016-03-14T01:59:00-00:00",
            "2016-02-29T23:59:59Z",
        ] {
            assert!(ts(ok), "{ok}");
        }
        for bad in [
            "2016-03-14t01:59:00Z",
            "2016-03-14T01:59:00z",
            "2016-03-14 01:59:00Z",
            "2016-03-14T01:59:00",
            "2016-03-14T01:59Z",
            "2016-03-14",
            "2016-13-05T21:29:29Z",
            "2015-02-29T00:00:00Z",
            "2016-12-05T25:29:29Z",
            "2016-03-14T01:59:60Z",
            "2016-03-14T01:59:00.Z",
            "2016-03-14T01:59:00.1234567890Z",
            "2016-03-14T01:59:00+0100",
            "2016-03-14T01:59:00+24:00",
            "05-12-2016T21:29:29Z",
            "+2016-03-14T01:59:00Z",
        ] {
            assert!(!ts(bad), "{bad}");
        }
        let v = "2012-10-09T20:00:55.000+01:00";
        assert!(check("TimestampEquals", json!("2012-10-09T19:00:55Z"), json!(v)));
        assert!(check("TimestampLessThan", json!("2012-10-09T19:00:55.001Z"), json!(v)));
        assert!(check("TimestampGreaterThanEquals", json!("2012-10-09T19:00:55Z"), json!(v)));
        assert!(!check("TimestampEquals", json!("2012-10-09T19:00:55Z"), json!("2012-10-09T19:00:55")));
        assert!(check("IsTimestamp", json!(true), json!("2012-10-09T19:00:55Z")));
        assert!(check("IsTimestamp", json!(false), json!("2012-10-09T19:00:55")));
        assert!(check("IsTimestamp", json!(false), json!(1349809255)));
    }

    #[test]
    fn missing_paths() {
        let env = json!({"$": {"v": 1, "n": null}});
        let e = |rule| eval(rule, env.clone());
        assert_eq!(e(json!({"Variable": "$.x", "IsPresent": true})), Ok(false));
        assert_eq!(e(json!({"Variable": "$.x", "IsPresent": false})), Ok(true));
        assert_eq!(e(json!({"Variable": "$.n", "IsPresent": true})), Ok(true));
        assert_eq!(e(json!({"Variable": "$.n", "IsNull": true})), Ok(true));
        let missing = e(json!({"Variable": "$.x", "IsNull": true})).unwrap_err();
        assert_eq!(missing.error_name(), "States.Runtime");
        assert_eq!(missing.cause(), "Invalid path '$.x': The choice state's condition path references an invalid value.");
        assert_eq!(e(json!({"Variable": "$.x", "NumericEquals": 1})), Err(ChoiceError::InvalidPath { path: "$.x".into() }));
        assert_eq!(e(json!({"Variable": "$.v", "NumericEqualsPath": "$.y"})), Err(ChoiceError::InvalidPath { path: "$.y".into() }));
        // And short-circuits: the AWS-recommended IsPresent guard.
        let guarded = json!({"And": [{"Variable": "$.x", "IsPresent": true}, {"Variable": "$.x", "NumericEquals": 1}]});
        assert_eq!(e(guarded), Ok(false));
        let or = json!({"Or": [{"Variable": "$.v", "NumericEquals": 1}, {"Variable": "$.x", "NumericEquals": 1}]});
        assert_eq!(e(or), Ok(true));
        let bad = ChoiceRule::Compare { variable: "x".into(), op: Op::IsNull, operand: Operand::Value(json!(true)) };
        let err = bad.evaluate(&|p| resolve_in(&env, p)).unwrap_err();
        assert_eq!((err.error_name(), err.cause().as_str()), ("States.Runtime", "Invalid JSONPath: x"));
    }

    #[test]
    fn variables_context_and_paths() {
        let env = json!({"$": {"a": 5}, "$$": {"Execution": {"Input": {"b": 5}}}, "lim": {"max": 5}});
        let e = |rule| eval(rule, env.clone());
        assert_eq!(e(json!({"Variable": "$.a", "NumericEqualsPath": "$$.Execution.Input.b"})), Ok(true));
        assert_eq!(e(json!({"Variable": "$lim.max", "NumericLessThanEqualsPath": "$.a"})), Ok(true));
        assert_eq!(e(json!({"Not": {"Variable": "$.a", "NumericGreaterThanPath": "$lim.max"}})), Ok(true));
        assert_eq!(e(json!({"Variable": "$.a", "StringEqualsPath": "$.a"})), Ok(false));
    }

    #[test]
    fn parse_builds_typed_rules() {
        let rule = json!({"Next": "X", "Assign": {"a": 1}, "Comment": "c", "And": [
            {"Variable": "$.a", "StringMatchesPath": "$.b"}, // StringMatchesPath does not exist
        ]});
        assert_eq!(
            errors(rule),
            [
                "States.S.Choices[0].And[0]: The field 'StringMatchesPath' is not supported by Step Functions",
                "States.S.Choices[0].And[0]: Choice rule must contain exactly one of And, Or, Not or a comparison operator; found none"
            ]
        );
        let rule = json!({"Not": {"Or": [{"Variable": "$.t", "TimestampLessThanPath": "$.u"}, {"Variable": "$$.x", "IsNull": false}]}});
        let expected = ChoiceRule::Not(Box::new(ChoiceRule::Or(vec![
            ChoiceRule::Compare { variable: "$.t".into(), op: Op::TimestampLessThan, operand: Operand::Path("$.u".into()) },
            ChoiceRule::Compare { variable: "$$.x".into(), op: Op::IsNull, operand: Operand::Value(json!(false)) },
        ])));
        assert_eq!(ChoiceRule::parse(&rule, "L"), Ok(expected));
        for op in Op::ALL {
            assert_eq!(Op::from_field(op.name()), Some((op, false)));
            let path = format!("{op}Path");
            assert_eq!(Op::from_field(&path), op.has_path_variant().then_some((op, true)));
        }
    }

    #[test]
    fn validation_errors() {
        let loc = "States.S.Choices[0]";
        assert_eq!(
            errors(json!({"Variable": "$.a"})),
            [format!("{loc}: Choice rule must contain exactly one of And, Or, Not or a comparison operator; found none")]
        );
        assert_eq!(
            errors(json!({"Variable": "$.a", "NumericEquals": 1, "IsNull": true})),
            [format!("{loc}: Choice rule must contain exactly one of And, Or, Not or a comparison operator; found NumericEquals, IsNull")]
        );
        let cases = [
            (json!({"Variable": "$.a", "NumericEquals": "1"}), "NumericEquals must be a number"),
            (json!({"Variable": "$.a", "StringEquals": 1}), "StringEquals must be a string"),
            (json!({"Variable": "$.a", "StringMatches": null}), "StringMatches must be a string"),
            (json!({"Variable": "$.a", "BooleanEquals": "true"}), "BooleanEquals must be a boolean"),
            (json!({"Variable": "$.a", "IsNull": "true"}), "IsNull must be a boolean"),
            (json!({"Variable": "$.a", "TimestampEquals": "2016-03-14"}), "TimestampEquals must be an RFC 3339"),
            (json!({"Variable": "$.a", "NumericEqualsPath": 3}), "NumericEqualsPath must be a JSONPath"),
            (json!({"Variable": "$.a", "StringEqualsPath": "a.b"}), "StringEqualsPath must be a JSONPath"),
            (json!({"Variable": "a", "IsNull": true}), "Variable must be a JSONPath"),
            (json!({"IsNull": true}), "Variable is required with IsNull"),
            (json!({"And": []}), "And must be a non-empty array"),
            (json!({"Or": {}}), "Or must be a non-empty array"),
            (json!({"Not": []}), "Not must be a Choice rule object"),
            (json!({"Not": {"Variable": "$.a", "IsNull": true}, "Variable": "$.a"}), "Variable is not allowed with Not"),
            (json!({"And": [{"Variable": "$.a", "IsNull": true}], "Variable": "$.a"}), "Variable is not allowed with And"),
            (json!({"Condition": "{% true %}"}), "The field 'Condition' is not supported"),
            (json!([1]), "Choice rule must be a JSON object"),
        ];
        for (rule, want) in cases {
            let got = errors(rule.clone());
            assert!(got.iter().any(|e| e.starts_with(&format!("{loc}: {want}"))), "{rule}: {got:?}");
        }
        // Nested locations; all problems are collected.
        let rule = json!({"And": [
            {"Variable": "$.a", "IsNull": true},
            {"Or": [{"Variable": "$.a", "NumericEquals": true}, {"Next": "X", "Variable": "$.a", "IsNull": true}]},
            {"Not": {"Variable": 7, "StringEquals": 7}},
        ]});
        assert_eq!(
            errors(rule),
            [
                format!("{loc}.And[1].Or[0]: NumericEquals must be a number"),
                format!("{loc}.And[1].Or[1]: The field 'Next' is not supported by Step Functions"),
                format!("{loc}.And[2].Not: Variable must be a JSONPath string starting with '$'"),
                format!("{loc}.And[2].Not: StringEquals must be a string"),
            ]
        );
    }

    fn arb_json() -> impl Strategy<Value = Value> {
        let mut keys: Vec<String> = ["And", "Or", "Not", "Variable", "Next", "Assign"].map(String::from).to_vec();
        keys.extend(Op::ALL.iter().flat_map(|op| [op.name().to_string(), format!("{op}Path")]));
        let key = prop_oneof![3 => proptest::sample::select(keys), 1 => "[a-zA-Z]{0,4}"];
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>().prop_map(|f| json!(f)),
            "(\\$[.a-z$]{0,6})|([a-z*\\\\]{0,6})|(20[0-9]{2}-[01][0-9]-[0-3][0-9]T[0-2][0-9]:[0-5][0-9]:[0-6][0-9](\\.[0-9]{0,10})?(Z|z|[+-][0-2][0-9]:[0-9]{2})?)"
                .prop_map(Value::from),
        ];
        leaf.prop_recursive(5, 48, 5, move |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                proptest::collection::vec((key.clone(), inner), 0..4).prop_map(|kv| Value::Object(kv.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn parse_and_evaluate_never_panic(rule in arb_json(), input in arb_json()) {
            let env = json!({"$": {"a": input.clone(), "b": input.clone()}, "v": input});
            if let Ok(rule) = ChoiceRule::parse(&rule, "L") {
                let _ = rule.evaluate(&|p| resolve_in(&env, p));
                let _ = rule.evaluate(&|p| if p.len() % 2 == 0 { Err(p.to_string()) } else { Ok(None) });
            }
        }

        #[test]
        fn every_operator_evaluates_without_panic(
            op in proptest::sample::select(Op::ALL.to_vec()),
            operand in arb_json(),
            variable in arb_json(),
        ) {
            let env = json!({"$": {"v": variable, "o": operand.clone()}});
            for rule in [json!({"Variable": "$.v", op.name(): operand}), json!({"Variable": "$.v", format!("{op}Path"): "$.o"})] {
                if let Ok(rule) = ChoiceRule::parse(&rule, "L") {
                    prop_assert!(rule.evaluate(&|p| resolve_in(&env, p)).is_ok());
                }
            }
        }

        #[test]
        fn glob_without_specials_is_equality(p in "[a-c]{0,5}", t in "[a-c]{0,5}") {
            prop_assert_eq!(matches_glob(&p, &t), p == t);
            let (pattern, text) = (format!("*{p}*"), format!("{t}{p}{t}"));
            prop_assert!(matches_glob(&pattern, &text));
        }
    }
}
