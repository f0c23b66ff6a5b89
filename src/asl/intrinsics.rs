//! Amazon States Language intrinsic functions (`States.Format(...)` and friends) for
//! JSONPath-mode state machines.
//!
//! [`parse`] turns an expression into a typed [`Call`] (and validates function names and
//! argument counts, so an engine can reject a definition up front); [`evaluate`] runs it.
//! Path arguments (`$.a`, `$$.Execution.Id`, `$var.x`) are resolved by the caller through
//! [`IntrinsicContext`], which also supplies randomness (`States.UUID`, `States.MathRandom`).
//!
//! Behaviour follows the recordings of real AWS Step Functions in the conformance corpus
//! (LocalStack's snapshot tests): e.g. `States.MathAdd` rounds each argument half-up,
//! `States.StringSplit` splits on any delimiter character and drops empty tokens,
//! `States.ArrayRange` includes its end, `States.Format` renders objects Java-style
//! (`{k=v, k2=v2}`), `States.StringToJson("")` is `null`.

use base64::Engine as _;
use serde_json::{Map, Value};

/// Services an intrinsic function needs from the engine.
pub trait IntrinsicContext {
    /// The caller resolves path arguments. `path` is the raw argument text: "$.a.b", "$",
    /// "$$.Execution.Id", "$myVar.field[0]". Return Ok(None) when the path does not exist.
    fn resolve_path(&self, path: &str) -> Result<Option<Value>, String>;
    /// Deterministic randomness supplied by the engine (time and ids are passed in as data).
    fn next_random_u64(&mut self) -> u64;
}

/// A parsed intrinsic function call such as `States.Format('{}', $.a)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    /// Full function name, e.g. `States.Format`.
    pub name: String,
    pub args: Vec<Arg>,
    /// Source text of each argument as written (string literals keep their quotes and
    /// escapes; `States.Format` needs them to tell `\{` from a `{}` placeholder).
    pub raw_args: Vec<String>,
}

/// One argument of a [`Call`].
#[derive(Debug, Clone, PartialEq)]
pub enum Arg {
    /// A string (escapes resolved), number, boolean or null literal.
    Literal(Value),
    /// A path to resolve through [`IntrinsicContext::resolve_path`] (raw text, trimmed).
    Path(String),
    /// A nested intrinsic function call.
    Call(Call),
}

/// Why an intrinsic function expression could not be parsed or evaluated.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum IntrinsicError {
    /// The expression is not valid intrinsic function syntax.
    #[error("The value '{expr}' is not a valid intrinsic function call: {message} (at offset {offset})")]
    Syntax { expr: String, offset: usize, message: String },
    /// Unknown function name or wrong number of arguments.
    #[error("{message}")]
    InvalidCall { function: String, message: String },
    /// A path argument matched nothing.
    #[error("The JSONPath '{path}' specified as an intrinsic function argument could not be found in the input")]
    PathNotFound { path: String },
    /// The caller failed to resolve a path argument.
    #[error("{message}")]
    Path { path: String, message: String },
    /// A function rejected its arguments at run time.
    #[error("{function}: {message}")]
    Function { function: String, message: String },
}

impl IntrinsicError {
    /// The Step Functions error name to report.
    pub fn error_name(&self) -> &'static str {
        match self {
            Self::Function { .. } => "States.IntrinsicFailure",
            _ => "States.Runtime",
        }
    }

    /// The cause text (the engine prefixes AWS's "An error occurred while executing the
    /// state '…' (entered at the event id #N). ").
    pub fn cause(&self) -> String {
        self.to_string()
    }
}

type Result<T, E = IntrinsicError> = std::result::Result<T, E>;

/// Deepest nesting of calls accepted by [`parse`].
pub const MAX_NESTING: usize = 32;
/// AWS limit on the input of `States.Base64Encode`, `States.Base64Decode` and `States.Hash`
/// (in UTF-16 code units, as Java counts characters).
pub const MAX_INPUT_CHARS: usize = 10_000;
/// AWS limit on the length of the array `States.ArrayRange` produces.
pub const MAX_RANGE_ITEMS: i128 = 1000;

/// Name and accepted argument counts (min, max) of every supported function.
const FUNCTIONS: &[(&str, usize, usize)] = &[
    ("States.Format", 1, usize::MAX),
    ("States.StringToJson", 1, 1),
    ("States.JsonToString", 1, 1),
    ("States.Array", 0, usize::MAX),
    ("States.ArrayPartition", 2, 2),
    ("States.ArrayContains", 2, 2),
    ("States.ArrayRange", 3, 3),
    ("States.ArrayGetItem", 2, 2),
    ("States.ArrayLength", 1, 1),
    ("States.ArrayUnique", 1, 1),
    ("States.Base64Encode", 1, 1),
    ("States.Base64Decode", 1, 1),
    ("States.Hash", 2, 2),
    ("States.JsonMerge", 3, 3),
    ("States.MathRandom", 2, 3),
    ("States.MathAdd", 2, 2),
    ("States.StringSplit", 2, 2),
    ("States.UUID", 0, 0),
];

/// True when `s` starts with `States.<Name>(`: a string an engine should evaluate as an
/// intrinsic function rather than as a path.
pub fn looks_like_intrinsic(s: &str) -> bool {
    s.trim_start().strip_prefix("States.").is_some_and(|rest| {
        let name_len = rest.bytes().take_while(u8::is_ascii_alphanumeric).count();
        name_len > 0 && rest[name_len..].starts_with('(')
    })
}

/// Parses an intrinsic function expression, checking function names and argument counts.
pub fn parse(expr: &str) -> Result<Call> {
    let mut p = Parser { src: expr, pos: 0 };
    p.skip_ws();
    let call = p.call(0)?;
    p.skip_ws();
    if p.pos < expr.len() {
        return Err(p.err("unexpected text after the closing parenthesis"));
    }
    Ok(call)
}

/// Parses and evaluates an intrinsic function expression.
pub fn evaluate(expr: &str, ctx: &mut dyn IntrinsicContext) -> Result<Value> {
    evaluate_call(&parse(expr)?, ctx)
}

struct Parser<'a> {
    src: &'a str,
    pos: usize,
}

impl Parser<'_> {
    fn err(&self, message: &str) -> IntrinsicError {
        IntrinsicError::Syntax { expr: self.src.to_string(), offset: self.pos, message: message.to_string() }
    }

    fn rest(&self) -> &str {
        self.src.get(self.pos..).unwrap_or("")
    }

    fn peek(&self) -> Option<u8> {
        self.src.as_bytes().get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(|b| b.is_ascii_whitespace()) {
            self.pos += 1;
        }
    }

    fn call(&mut self, depth: usize) -> Result<Call> {
        if depth >= MAX_NESTING {
            return Err(self.err("intrinsic functions are nested too deeply"));
        }
        let start = self.pos;
        if !self.rest().starts_with("States.") {
            return Err(self.err("expected an intrinsic function starting with 'States.'"));
        }
        self.pos += "States.".len();
        let name_len = self.rest().bytes().take_while(u8::is_ascii_alphanumeric).count();
        self.pos += name_len;
        let name = self.src[start..self.pos].to_string();
        if name_len == 0 || self.peek() != Some(b'(') {
            return Err(self.err("expected a function name followed by '('"));
        }
        self.pos += 1;
        let (mut args, mut raw_args) = (Vec::new(), Vec::new());
        self.skip_ws();
        if self.peek() == Some(b')') {
            self.pos += 1;
        } else {
            loop {
                self.skip_ws();
                let arg_start = self.pos;
                args.push(self.arg(depth)?);
                raw_args.push(self.src[arg_start..self.pos].to_string());
                self.skip_ws();
                match self.peek() {
                    Some(b',') => self.pos += 1,
                    Some(b')') => {
                        self.pos += 1;
                        break;
                    }
                    _ => return Err(self.err("expected ',' or ')' after an argument")),
                }
            }
        }
        check_arity(&name, args.len())?;
        Ok(Call { name, args, raw_args })
    }

    fn arg(&mut self, depth: usize) -> Result<Arg> {
        match self.peek() {
            Some(b'\'') => self.string().map(|s| Arg::Literal(Value::String(s))),
            Some(b'$') => Ok(Arg::Path(self.path())),
            Some(b'-' | b'0'..=b'9') => self.number().map(Arg::Literal),
            _ if self.rest().starts_with("States.") => self.call(depth + 1).map(Arg::Call),
            _ => {
                for (word, value) in [("true", true.into()), ("false", false.into()), ("null", Value::Null)] {
                    let after = self.rest().as_bytes().get(word.len()).copied();
                    if self.rest().starts_with(word) && after.is_none_or(|b| b == b',' || b == b')' || b.is_ascii_whitespace()) {
                        self.pos += word.len();
                        return Ok(Arg::Literal(value));
                    }
                }
                Err(self.err("expected a string, number, boolean, null, path or function call"))
            }
        }
    }

    /// A single-quoted string; `\'`, `\\`, `\{` and `\}` are escapes, any other backslash
    /// is kept as written (so JSON text such as `'{"a":"\"q\""}'` survives).
    fn string(&mut self) -> Result<String> {
        self.pos += 1;
        let mut out = String::new();
        let mut chars = self.rest().char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '\'' => {
                    self.pos += i + 1;
                    return Ok(out);
                }
                '\\' => match chars.next() {
                    Some((_, e @ ('\'' | '\\' | '{' | '}'))) => out.push(e),
                    Some((_, e)) => {
                        out.push('\\');
                        out.push(e);
                    }
                    None => break,
                },
                _ => out.push(c),
            }
        }
        self.pos = self.src.len();
        Err(self.err("unterminated string literal"))
    }

    /// A path runs to the first `,` or `)` outside brackets, parentheses and quotes.
    fn path(&mut self) -> String {
        let bytes = self.src.as_bytes();
        let start = self.pos;
        let (mut depth, mut quote) = (0usize, None::<u8>);
        while let Some(&b) = bytes.get(self.pos) {
            match (quote, b) {
                (Some(_), b'\\') => self.pos += 1,
                (Some(q), _) if b == q => quote = None,
                (Some(_), _) => {}
                (None, b'\'' | b'"') => quote = Some(b),
                (None, b'[' | b'(') => depth += 1,
                (None, b']' | b')') if depth > 0 => depth -= 1,
                (None, b',' | b')') => break,
                _ => {}
            }
            self.pos += 1;
        }
        self.pos = self.pos.min(self.src.len());
        self.src.get(start..self.pos).unwrap_or("").trim_end().to_string()
    }

    fn number(&mut self) -> Result<Value> {
        let start = self.pos;
        let len = self.rest().bytes().take_while(|b| b.is_ascii_digit() || matches!(b, b'-' | b'+' | b'.' | b'e' | b'E')).count();
        self.pos += len;
        match serde_json::from_str::<Value>(&self.src[start..self.pos]) {
            Ok(mut v @ Value::Number(_)) => {
                integer_negative_zero(&mut v);
                Ok(v)
            }
            _ => {
                self.pos = start;
                Err(self.err("invalid number literal"))
            }
        }
    }
}

fn check_arity(name: &str, count: usize) -> Result<()> {
    let invalid = |message: String| IntrinsicError::InvalidCall { function: name.to_string(), message };
    let &(_, min, max) = FUNCTIONS
        .iter()
        .find(|(n, _, _)| *n == name)
        .ok_or_else(|| invalid(format!("The function '{name}' is not a supported intrinsic function")))?;
    if count < min || count > max {
        let expected = match (min, max) {
            (min, usize::MAX) => format!("at least {min}"),
            (min, max) if min == max => min.to_string(),
            (min, max) => format!("{min} to {max}"),
        };
        return Err(invalid(format!("The function '{name}' expects {expected} argument(s) but received {count}")));
    }
    Ok(())
}

/// Evaluates an already parsed call; arguments are evaluated left to right.
pub fn evaluate_call(call: &Call, ctx: &mut dyn IntrinsicContext) -> Result<Value> {
    check_arity(&call.name, call.args.len())?;
    let mut args = Vec::with_capacity(call.args.len());
    for arg in &call.args {
        args.push(match arg {
            Arg::Literal(v) => v.clone(),
            Arg::Path(path) => match ctx.resolve_path(path) {
                Ok(Some(v)) => v,
                Ok(None) => return Err(IntrinsicError::PathNotFound { path: path.clone() }),
                Err(message) => {
                    return Err(IntrinsicError::Path { path: path.clone(), message });
                }
            },
            Arg::Call(inner) => evaluate_call(inner, ctx)?,
        });
    }
    // Each call is charged for what it reads and what it makes (nodes, and string bytes in
    // sixteens) against the evaluation budget.
    let budget = |v: &Value| {
        crate::asl::budget::charge_json(v)
            .map_err(|e| IntrinsicError::Function { function: call.name.clone(), message: format!("The evaluation exceeded {e}") })
    };
    for a in &args {
        budget(a)?;
    }
    let out = apply(call, args, ctx).map_err(|message| IntrinsicError::Function { function: call.name.clone(), message })?;
    budget(&out)?;
    Ok(out)
}

fn apply(call: &Call, args: Vec<Value>, ctx: &mut dyn IntrinsicContext) -> Result<Value, String> {
    use Value::{Array, Bool, Object, String as Str};
    Ok(match (call.name.as_str(), args.as_slice()) {
        ("States.Format", [template, values @ ..]) => {
            let Str(template) = template else {
                return Err("The first argument must be a string".into());
            };
            let pieces = match (call.args.first(), call.raw_args.first()) {
                (Some(Arg::Literal(_)), Some(raw)) => template_pieces(strip_quotes(raw), true),
                _ => template_pieces(template, false),
            };
            if pieces.len() != values.len() + 1 {
                return Err(format!(
                    "The number of arguments ({}) does not match the number of placeholders '{{}}' ({})",
                    values.len(),
                    pieces.len().saturating_sub(1)
                ));
            }
            let mut pieces = pieces.into_iter();
            let mut out = pieces.next().unwrap_or_default();
            for (value, piece) in values.iter().zip(pieces) {
                match value {
                    Str(s) => out.push_str(s),
                    other => java_text(other, &mut out),
                }
                out.push_str(&piece);
            }
            Str(out)
        }
        ("States.StringToJson", [Str(s)]) if s.trim().is_empty() => Value::Null,
        ("States.StringToJson", [Str(s)]) => {
            let mut parsed = serde_json::from_str(s).map_err(|e| format!("The argument is not valid JSON: {e}"))?;
            integer_negative_zero(&mut parsed);
            parsed
        }
        ("States.StringToJson", _) => return Err("The argument must be a string".into()),
        ("States.JsonToString", [v]) => {
            let mut out = String::new();
            compact_json(v, &mut out);
            Str(out)
        }
        ("States.Array", values) => Array(values.to_vec()),
        ("States.ArrayPartition", [Array(items), size]) => {
            let size = integer(size, "The chunk size")?;
            let size = usize::try_from(size).ok().filter(|&s| s > 0).ok_or("The chunk size must be a positive integer")?;
            Array(items.chunks(size).map(|c| Array(c.to_vec())).collect())
        }
        ("States.ArrayContains", [Array(items), needle]) => Bool(items.iter().any(|v| json_eq(v, needle))),
        ("States.ArrayRange", [start, end, step]) => {
            let start = i128::from(integer(start, "The start value")?);
            let end = i128::from(integer(end, "The end value")?);
            let step = i128::from(integer(step, "The step value")?);
            if step == 0 {
                return Err("The step value must not be zero".into());
            }
            let count = if (end - start).signum() * step.signum() < 0 { 0 } else { (end - start) / step + 1 };
            if count > MAX_RANGE_ITEMS {
                return Err(format!("The array range cannot contain more than {MAX_RANGE_ITEMS} items"));
            }
            // Every element lies between start and end, so it fits in i64.
            Array((0..count).map(|i| Value::from((start + i * step) as i64)).collect())
        }
        ("States.ArrayGetItem", [Array(items), index]) => {
            let index = integer(index, "The index")?;
            usize::try_from(index)
                .ok()
                .and_then(|i| items.get(i))
                .cloned()
                .ok_or_else(|| format!("The index {index} is out of bounds for an array of length {}", items.len()))?
        }
        ("States.ArrayLength", [Array(items)]) => Value::from(items.len()),
        ("States.ArrayUnique", [Array(items)]) => {
            let mut seen = std::collections::HashSet::new();
            Array(
                items
                    .iter()
                    .filter(|v| {
                        let mut key = String::new();
                        canonical(v, &mut key);
                        seen.insert(key)
                    })
                    .cloned()
                    .collect(),
            )
        }
        ("States.ArrayPartition" | "States.ArrayContains" | "States.ArrayGetItem" | "States.ArrayLength" | "States.ArrayUnique", _) => {
            return Err("The first argument must be an array".into());
        }
        ("States.Base64Encode", [Str(s)]) => {
            check_length(s)?;
            Str(base64::engine::general_purpose::STANDARD.encode(s))
        }
        ("States.Base64Decode", [Str(s)]) => {
            check_length(s)?;
            let bytes = BASE64_LENIENT.decode(s).map_err(|e| format!("The argument is not valid base64: {e}"))?;
            Str(String::from_utf8_lossy(&bytes).into_owned())
        }
        ("States.Hash", [Str(data), Str(algorithm)]) => {
            check_length(data)?;
            Str(hash(data.as_bytes(), algorithm)?)
        }
        ("States.Hash", [_, Str(_)]) => return Err("The input data must be a string".into()),
        ("States.Hash", _) => return Err("The hash algorithm must be a string".into()),
        ("States.Base64Encode" | "States.Base64Decode", _) => {
            return Err("The argument must be a string".into());
        }
        ("States.JsonMerge", [Object(a), Object(b), Bool(false)]) => {
            let mut merged: Map<String, Value> = a.clone();
            merged.extend(b.iter().map(|(k, v)| (k.clone(), v.clone())));
            Object(merged)
        }
        ("States.JsonMerge", [Object(_), Object(_), Bool(true)]) => {
            return Err("Deep merging is not supported; the third argument must be false".into());
        }
        ("States.JsonMerge", [Object(_), Object(_), _]) => {
            return Err("The third argument must be a boolean".into());
        }
        ("States.JsonMerge", _) => {
            return Err("The first two arguments must be JSON objects".into());
        }
        ("States.MathRandom", [start, end, seed @ ..]) => {
            let start = rounded(start, "The start value")?;
            let end = rounded(end, "The end value")?;
            if end < start {
                return Err("The start value must not be greater than the end value".into());
            }
            let span = u64::try_from(i128::from(end) - i128::from(start)).unwrap_or(u64::MAX);
            let offset = match seed.first() {
                _ if span == 0 => 0,
                Some(seed) => JavaRandom::new(rounded(seed, "The seed")?).next_below(span),
                None => ((u128::from(ctx.next_random_u64()) * u128::from(span)) >> 64) as u64,
            };
            Value::from((i128::from(start) + i128::from(offset)) as i64)
        }
        ("States.MathAdd", [a, b]) => {
            let (a, b) = (rounded(a, "The first value")?, rounded(b, "The second value")?);
            Value::from(a.checked_add(b).ok_or("The sum is out of range")?)
        }
        ("States.StringSplit", [Str(s), Str(delims)]) => {
            Array(s.split(|c| delims.contains(c)).filter(|t| !t.is_empty()).map(|t| Str(t.to_string())).collect())
        }
        ("States.StringSplit", _) => return Err("Both arguments must be strings".into()),
        ("States.UUID", []) => {
            let bits = (u128::from(ctx.next_random_u64()) << 64) | u128::from(ctx.next_random_u64());
            Str(uuid::Builder::from_random_bytes(bits.to_be_bytes()).into_uuid().hyphenated().to_string())
        }
        (name, _) => return Err(format!("The function '{name}' is not supported")),
    })
}

const BASE64_LENIENT: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    base64::engine::GeneralPurposeConfig::new()
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

fn check_length(s: &str) -> Result<(), String> {
    if s.encode_utf16().count() > MAX_INPUT_CHARS {
        return Err(format!("The input must not be longer than {MAX_INPUT_CHARS} characters"));
    }
    Ok(())
}

fn hash(data: &[u8], algorithm: &str) -> Result<String, String> {
    use sha2::Digest as _;
    let digest: Vec<u8> = match algorithm {
        "MD5" => md5::Md5::digest(data).to_vec(),
        "SHA-1" => sha1::Sha1::digest(data).to_vec(),
        "SHA-256" => sha2::Sha256::digest(data).to_vec(),
        "SHA-384" => sha2::Sha384::digest(data).to_vec(),
        "SHA-512" => sha2::Sha512::digest(data).to_vec(),
        other => {
            return Err(format!("The hash algorithm '{other}' is not supported; use MD5, SHA-1, SHA-256, SHA-384 or SHA-512"));
        }
    };
    Ok(digest.iter().map(|b| format!("{b:02x}")).collect())
}

/// An integer argument; integral decimals such as `2.0` are accepted.
fn integer(v: &Value, what: &str) -> Result<i64, String> {
    let n = v.as_number().ok_or_else(|| format!("{what} must be an integer"))?;
    n.as_i64()
        .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0 && f.abs() < 9.2e18).map(|f| f as i64))
        .ok_or_else(|| format!("{what} must be an integer, got {n}"))
}

/// A numeric argument rounded like Java's `Math.round` (half up): 1.5 → 2, -1.5 → -1.
fn rounded(v: &Value, what: &str) -> Result<i64, String> {
    let n = v.as_number().ok_or_else(|| format!("{what} must be a number"))?;
    if let Some(i) = n.as_i64() {
        return Ok(i);
    }
    n.as_f64()
        .map(|x| if x - x.floor() >= 0.5 { x.floor() + 1.0 } else { x.floor() })
        .filter(|r| r.is_finite() && r.abs() < 9.2e18)
        .map(|r| r as i64)
        .ok_or_else(|| format!("{what} is out of range: {n}"))
}

/// serde_json reads `-0` as the float -0.0; AWS returns the integer 0 (recorded for
/// `States.StringToJson('-0')`), so negative zero becomes 0.
fn integer_negative_zero(v: &mut Value) {
    match v {
        Value::Number(n) if n.as_f64().is_some_and(|f| f == 0.0 && f.is_sign_negative()) => *v = Value::from(0),
        Value::Array(items) => items.iter_mut().for_each(integer_negative_zero),
        Value::Object(map) => map.values_mut().for_each(integer_negative_zero),
        _ => {}
    }
}

fn strip_quotes(raw: &str) -> &str {
    raw.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')).unwrap_or(raw)
}

/// Splits a format template at its `{}` placeholders. With `escapes` (a template written
/// as a literal), `\{`, `\}`, `\'` and `\\` stand for the character itself.
fn template_pieces(template: &str, escapes: bool) -> Vec<String> {
    let (mut pieces, mut current) = (Vec::new(), String::new());
    let mut chars = template.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if escapes => match chars.next() {
                Some(e @ ('{' | '}' | '\'' | '\\')) => current.push(e),
                Some(e) => current.extend(['\\', e]),
                None => current.push('\\'),
            },
            '{' if chars.peek() == Some(&'}') => {
                chars.next();
                pieces.push(std::mem::take(&mut current));
            }
            _ => current.push(c),
        }
    }
    pieces.push(current);
    pieces
}

/// Java's `toString` of the value Jackson would produce: `{k=v, k2=[1, 2]}`, `1.0E10`.
fn java_text(v: &Value, out: &mut String) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&java_number(n)),
        Value::String(s) => out.push_str(s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                java_text(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            for (i, (k, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(k);
                out.push('=');
                java_text(item, out);
            }
            out.push('}');
        }
    }
}

/// Integers as written; decimals like Java's `Double.toString` (`1.0`, `1.5E-5`).
fn java_number(n: &serde_json::Number) -> String {
    if n.is_i64() || n.is_u64() {
        return n.to_string();
    }
    let f = n.as_f64().unwrap_or(0.0);
    if f == 0.0 || (1e-3..1e7).contains(&f.abs()) {
        let s = f.to_string();
        return if s.contains('.') { s } else { s + ".0" };
    }
    let s = format!("{f:e}");
    let (mantissa, exponent) = s.split_once('e').unwrap_or((&s, "0"));
    let dot = if mantissa.contains('.') { "" } else { ".0" };
    format!("{mantissa}{dot}E{exponent}")
}

/// Compact JSON as Jackson writes it (no spaces; decimals in Java notation).
fn compact_json(v: &Value, out: &mut String) {
    match v {
        Value::Number(n) => out.push_str(&java_number(n)),
        Value::String(s) => json_string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                compact_json(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            for (i, (k, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                json_string(k, out);
                out.push(':');
                compact_json(item, out);
            }
            out.push('}');
        }
        Value::Null | Value::Bool(_) => java_text(v, out),
    }
}

fn json_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// JSON equality where numbers compare by value (1 equals 1.0).
fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(x), Some(y)) => x == y,
            _ => x.as_u64().zip(y.as_u64()).map_or(x.as_f64() == y.as_f64(), |(x, y)| x == y),
        },
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_eq(a, b)),
        (Value::Object(x), Value::Object(y)) => x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w))),
        _ => a == b,
    }
}

/// A key equal for values that [`json_eq`] considers equal (sorted keys, normalised numbers).
fn canonical(v: &Value, out: &mut String) {
    match v {
        Value::Number(n) => match n.as_f64() {
            Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => out.push_str(&(f as i64).to_string()),
            _ => out.push_str(&n.to_string()),
        },
        Value::Array(items) => {
            out.push('[');
            for item in items {
                canonical(item, out);
                out.push(',');
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (k, item) in entries {
                json_string(k, out);
                out.push(':');
                canonical(item, out);
                out.push(',');
            }
            out.push('}');
        }
        other => compact_json(other, out),
    }
}

/// `java.util.Random`, so a seeded `States.MathRandom` is deterministic.
struct JavaRandom(u64);

impl JavaRandom {
    const MULTIPLIER: u64 = 0x5_DEEC_E66D;
    const MASK: u64 = (1 << 48) - 1;

    fn new(seed: i64) -> Self {
        Self((seed as u64 ^ Self::MULTIPLIER) & Self::MASK)
    }

    fn next(&mut self, bits: u32) -> u64 {
        self.0 = (self.0.wrapping_mul(Self::MULTIPLIER).wrapping_add(0xB)) & Self::MASK;
        self.0 >> (48 - bits)
    }

    /// `nextInt(bound)` for bounds that fit in an int, a scaled `nextLong` otherwise.
    fn next_below(&mut self, bound: u64) -> u64 {
        if bound > i32::MAX as u64 {
            let long = (self.next(32) << 32).wrapping_add(self.next(32));
            return ((u128::from(long) * u128::from(bound)) >> 64) as u64;
        }
        if bound.is_power_of_two() {
            return (bound * self.next(31)) >> 31;
        }
        loop {
            let bits = self.next(31);
            let value = bits % bound;
            if bits + (bound - 1) - value < (1 << 31) {
                return value;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Resolves `$...` against the input, `$$...` against a context object and `$name...`
    /// against variables, with a simple `.key` / `[index]` walker.
    struct TestCtx {
        input: Value,
        context: Value,
        vars: Value,
        rng: u64,
    }

    impl TestCtx {
        fn new(input: Value) -> Self {
            let context = json!({
                "Execution": {"Id": "arn:aws:states:us-east-1:111111111111:execution:sm:exec", "Name": "exec", "Input": input.clone()},
                "StateMachine": {"Id": "arn:aws:states:us-east-1:111111111111:stateMachine:sm", "Name": "sm"},
            });
            Self { input, context, vars: json!({}), rng: 0 }
        }

        fn with_vars(mut self, vars: Value) -> Self {
            self.vars = vars;
            self
        }
    }

    impl IntrinsicContext for TestCtx {
        fn resolve_path(&self, path: &str) -> Result<Option<Value>, String> {
            let (mut cur, mut rest) = if let Some(rest) = path.strip_prefix("$$") {
                (&self.context, rest)
            } else if let Some(rest) = path.strip_prefix('$').filter(|r| r.is_empty() || r.starts_with(['.', '['])) {
                (&self.input, rest)
            } else {
                let body = &path[1..];
                let end = body.find(['.', '[']).unwrap_or(body.len());
                match self.vars.get(&body[..end]) {
                    Some(v) => (v, &body[end..]),
                    None => return Ok(None),
                }
            };
            while !rest.is_empty() {
                let next = if let Some(r) = rest.strip_prefix('.') {
                    let end = r.find(['.', '[']).unwrap_or(r.len());
                    rest = &r[end..];
                    cur.get(&r[..end])
                } else if let Some(r) = rest.strip_prefix('[') {
                    let end = r.find(']').ok_or("unclosed bracket")?;
                    rest = &r[end + 1..];
                    cur.get(r[..end].parse::<usize>().map_err(|e| e.to_string())?)
                } else {
                    return Err(format!("unsupported path {path}"));
                };
                match next {
                    Some(v) => cur = v,
                    None => return Ok(None),
                }
            }
            Ok(Some(cur.clone()))
        }

        fn next_random_u64(&mut self) -> u64 {
            self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let z = (self.rng ^ (self.rng >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z ^ (z >> 31)
        }
    }

    fn eval(expr: &str, input: Value) -> Result<Value> {
        evaluate(expr, &mut TestCtx::new(input))
    }

    fn ok(expr: &str, input: Value) -> Value {
        eval(expr, input).unwrap_or_else(|e| panic!("{expr}: {e}"))
    }

    fn fails(expr: &str, input: Value) -> IntrinsicError {
        eval(expr, input).expect_err(expr)
    }

    /// `<...>` in `pattern` matches any text (conformance placeholders).
    fn matches_pattern(pattern: &str, actual: &str) -> bool {
        let mut parts = Vec::new();
        let mut rest = pattern;
        while let Some(open) = rest.find('<') {
            let Some(close) = rest[open..].find('>') else {
                break;
            };
            parts.push(&rest[..open]);
            rest = &rest[open + close + 1..];
        }
        parts.push(rest);
        let Some(tail) = actual.strip_prefix(parts[0]) else {
            return false;
        };
        let mut tail = tail;
        for (i, part) in parts.iter().enumerate().skip(1) {
            if i == parts.len() - 1 {
                return tail.ends_with(part);
            }
            match tail.find(part) {
                Some(at) => tail = &tail[at + part.len()..],
                None => return false,
            }
        }
        tail.is_empty()
    }

    /// (case id, expression, execution input, expected FunctionResult) recorded against AWS
    /// (conformance corpus, from localstack/localstack tests/aws/services/stepfunctions,
    /// Apache-2.0).
    const CORPUS: &[(&str, &str, &str, &str)] = &[
        (r#"test_array_0#0"#, r#"States.Array()"#, r#"{"FunctionInput": "HelloWorld"}"#, r#"[]"#),
        (
            r#"test_array_2#0"#,
            r#"States.Array($.FunctionInput.fst, $.FunctionInput.snd)"#,
            r#"{"FunctionInput": {"fst": "", "snd": ""}}"#,
            r#"["", ""]"#,
        ),
        (
            r#"test_array_2#1"#,
            r#"States.Array($.FunctionInput.fst, $.FunctionInput.snd)"#,
            r#"{"FunctionInput": {"fst": " ", "snd": " "}}"#,
            r#"[" ", " "]"#,
        ),
        (
            r#"test_array_2#2"#,
            r#"States.Array($.FunctionInput.fst, $.FunctionInput.snd)"#,
            r#"{"FunctionInput": {"fst": "HelloWorld", "snd": "HelloWorld"}}"#,
            r#"["HelloWorld", "HelloWorld"]"#,
        ),
        (
            r#"test_array_2#3"#,
            r#"States.Array($.FunctionInput.fst, $.FunctionInput.snd)"#,
            r#"{"FunctionInput": {"fst": null, "snd": null}}"#,
            r#"[null, null]"#,
        ),
        (
            r#"test_array_2#4"#,
            r#"States.Array($.FunctionInput.fst, $.FunctionInput.snd)"#,
            r#"{"FunctionInput": {"fst": 1, "snd": 1}}"#,
            r#"[1, 1]"#,
        ),
        (
            r#"test_array_2#5"#,
            r#"States.Array($.FunctionInput.fst, $.FunctionInput.snd)"#,
            r#"{"FunctionInput": {"fst": 1.1, "snd": 1.1}}"#,
            r#"[1.1, 1.1]"#,
        ),
        (
            r#"test_array_2#6"#,
            r#"States.Array($.FunctionInput.fst, $.FunctionInput.snd)"#,
            r#"{"FunctionInput": {"fst": "{\"Arg1\": 1, \"Arg2\": []}", "snd": "{\"Arg1\": 1, \"Arg2\": []}"}}"#,
            r#"["{\"Arg1\": 1, \"Arg2\": []}", "{\"Arg1\": 1, \"Arg2\": []}"]"#,
        ),
        (
            r#"test_array_2#7"#,
            r#"States.Array($.FunctionInput.fst, $.FunctionInput.snd)"#,
            r#"{"FunctionInput": {"fst": {"Arg1": 1, "Arg2": []}, "snd": {"Arg1": 1, "Arg2": []}}}"#,
            r#"[{"Arg1": 1, "Arg2": []}, {"Arg1": 1, "Arg2": []}]"#,
        ),
        (
            r#"test_array_contains#0"#,
            r#"States.ArrayContains($.FunctionInput.fst, $.FunctionInput.snd)"#,
            r#"{"FunctionInput": {"fst": [], "snd": null}}"#,
            r#"false"#,
        ),
        (
            r#"test_array_contains#1"#,
            r#"States.ArrayContains($.FunctionInput.fst, $.FunctionInput.snd)"#,
            r#"{"FunctionInput": {"fst": [], "snd": []}}"#,
            r#"false"#,
        ),
        (
            r#"test_array_contains#2"#,
            r#"States.ArrayContains($.FunctionInput.fst, $.FunctionInput.snd)"#,
            r#"{"FunctionInput": {"fst": [], "snd": 1}}"#,
            r#"false"#,
        ),
        (
            r#"test_array_contains#3"#,
            r#"States.ArrayContains($.FunctionInput.fst, $.FunctionInput.snd)"#,
            r#"{"FunctionInput": {"fst": [[1, 2, 3], 2], "snd": null}}"#,
            r#"false"#,
        ),
        (
            r#"test_array_contains#5"#,
            r#"States.ArrayContains($.FunctionInput.fst, $.FunctionInput.snd)"#,
            r#"{"FunctionInput": {"fst": [{"1": 2, "2": []}], "snd": []}}"#,
            r#"false"#,
        ),
        (
            r#"test_array_contains#7"#,
            r#"States.ArrayContains($.FunctionInput.fst, $.FunctionInput.snd)"#,
            r#"{"FunctionInput": {"fst": [true, false], "snd": true}}"#,
            r#"true"#,
        ),
        (
            r#"test_array_contains#8"#,
            r#"States.ArrayContains($.FunctionInput.fst, $.FunctionInput.snd)"#,
            r#"{"FunctionInput": {"fst": [true, false], "snd": false}}"#,
            r#"true"#,
        ),
        (
            r#"test_array_get_item#0"#,
            r#"States.ArrayGetItem($.FunctionInput.fst, $.FunctionInput.snd)"#,
            r#"{"FunctionInput": {"fst": [1, 2, 3, 4, 5, 6, 7, 8, 9], "snd": 5}}"#,
            r#"6"#,
        ),
        (r#"test_array_length#0"#, r#"States.ArrayLength($.FunctionInput)"#, r#"{"FunctionInput": [1, 2, 3, 4, 5, 6, 7, 8, 9]}"#, r#"9"#),
        (
            r#"test_array_partition#0"#,
            r#"States.ArrayPartition($.FunctionInput.fst, $.FunctionInput.snd)"#,
            r#"{"FunctionInput": {"fst": [], "snd": 1}}"#,
            r#"[]"#,
        ),
        (
            r#"test_array_partition#1"#,
            r#"States.ArrayPartition($.FunctionInput.fst, $.FunctionInput.snd)"#,
            r#"{"FunctionInput": {"fst": [], "snd": 2}}"#,
            r#"[]"#,
        ),
        (
            r#"test_array_partition#3"#,
            r#"States.ArrayPartition($.FunctionInput.fst, $.FunctionInput.snd)"#,
            r#"{"FunctionInput": {"fst": [], "snd": 4}}"#,
            r#"[]"#,
        ),
        (
            r#"test_array_partition#5"#,
            r#"States.ArrayPartition($.FunctionInput.fst, $.FunctionInput.snd)"#,
            r#"{"FunctionInput": {"fst": [0], "snd": 1}}"#,
            r#"[[0]]"#,
        ),
        (
            r#"test_array_partition#7"#,
            r#"States.ArrayPartition($.FunctionInput.fst, $.FunctionInput.snd)"#,
            r#"{"FunctionInput": {"fst": [0], "snd": 3}}"#,
            r#"[[0]]"#,
        ),
        (
            r#"test_array_partition#8"#,
            r#"States.ArrayPartition($.FunctionInput.fst, $.FunctionInput.snd)"#,
            r#"{"FunctionInput": {"fst": [0], "snd": 4}}"#,
            r#"[[0]]"#,
        ),
        (
            r#"test_array_partition#9"#,
            r#"States.ArrayPartition($.FunctionInput.fst, $.FunctionInput.snd)"#,
            r#"{"FunctionInput": {"fst": [0], "snd": 5}}"#,
            r#"[[0]]"#,
        ),
        (
            r#"test_array_partition#11"#,
            r#"States.ArrayPartition($.FunctionInput.fst, $.FunctionInput.snd)"#,
            r#"{"FunctionInput": {"fst": [0, 1], "snd": 2}}"#,
            r#"[[0, 1]]"#,
        ),
        (
            r#"test_array_partition#12"#,
            r#"States.ArrayPartition($.FunctionInput.fst, $.FunctionInput.snd)"#,
            r#"{"FunctionInput": {"fst": [0, 1], "snd": 3}}"#,
            r#"[[0, 1]]"#,
        ),
        (
            r#"test_array_partition#13"#,
            r#"States.ArrayPartition($.FunctionInput.fst, $.FunctionInput.snd)"#,
            r#"{"FunctionInput": {"fst": [0, 1], "snd": 4}}"#,
            r#"[[0, 1]]"#,
        ),
        (
            r#"test_array_partition#14"#,
            r#"States.ArrayPartition($.FunctionInput.fst, $.FunctionInput.snd)"#,
            r#"{"FunctionInput": {"fst": [0, 1], "snd": 5}}"#,
            r#"[[0, 1]]"#,
        ),
        (
            r#"test_array_partition#17"#,
            r#"States.ArrayPartition($.FunctionInput.fst, $.FunctionInput.snd)"#,
            r#"{"FunctionInput": {"fst": [0, 1, 2], "snd": 3}}"#,
            r#"[[0, 1, 2]]"#,
        ),
        (
            r#"test_array_partition#18"#,
            r#"States.ArrayPartition($.FunctionInput.fst, $.FunctionInput.snd)"#,
            r#"{"FunctionInput": {"fst": [0, 1, 2], "snd": 4}}"#,
            r#"[[0, 1, 2]]"#,
        ),
        (
            r#"test_array_partition#19"#,
            r#"States.ArrayPartition($.FunctionInput.fst, $.FunctionInput.snd)"#,
            r#"{"FunctionInput": {"fst": [0, 1, 2], "snd": 5}}"#,
            r#"[[0, 1, 2]]"#,
        ),
        (
            r#"test_array_partition#20"#,
            r#"States.ArrayPartition($.FunctionInput.fst, $.FunctionInput.snd)"#,
            r#"{"FunctionInput": {"fst": [0, 1, 2, 3], "snd": 1}}"#,
            r#"[[0], [1], [2], [3]]"#,
        ),
        (
            r#"test_array_partition#21"#,
            r#"States.ArrayPartition($.FunctionInput.fst, $.FunctionInput.snd)"#,
            r#"{"FunctionInput": {"fst": [0, 1, 2, 3], "snd": 2}}"#,
            r#"[[0, 1], [2, 3]]"#,
        ),
        (
            r#"test_array_partition#22"#,
            r#"States.ArrayPartition($.FunctionInput.fst, $.FunctionInput.snd)"#,
            r#"{"FunctionInput": {"fst": [0, 1, 2, 3], "snd": 3}}"#,
            r#"[[0, 1, 2], [3]]"#,
        ),
        (
            r#"test_array_partition#23"#,
            r#"States.ArrayPartition($.FunctionInput.fst, $.FunctionInput.snd)"#,
            r#"{"FunctionInput": {"fst": [0, 1, 2, 3], "snd": 4}}"#,
            r#"[[0, 1, 2, 3]]"#,
        ),
        (
            r#"test_array_partition#24"#,
            r#"States.ArrayPartition($.FunctionInput.fst, $.FunctionInput.snd)"#,
            r#"{"FunctionInput": {"fst": [0, 1, 2, 3], "snd": 5}}"#,
            r#"[[0, 1, 2, 3]]"#,
        ),
        (
            r#"test_array_range#1"#,
            r#"States.ArrayRange($.FunctionInput.fst, $.FunctionInput.snd, $.FunctionInput.trd)"#,
            r#"{"FunctionInput": {"fst": 0, "snd": 10, "trd": 3}}"#,
            r#"[0, 3, 6, 9]"#,
        ),
        (
            r#"test_array_range#3"#,
            r#"States.ArrayRange($.FunctionInput.fst, $.FunctionInput.snd, $.FunctionInput.trd)"#,
            r#"{"FunctionInput": {"fst": 1, "snd": 9, "trd": 2}}"#,
            r#"[1, 3, 5, 7, 9]"#,
        ),
        (
            r#"test_base_64_decode#1"#,
            r#"States.Base64Decode($.FunctionInput)"#,
            r#"{"FunctionInput": "RGF0YSB0byBlbmNvZGU="}"#,
            r#""Data to encode""#,
        ),
        (
            r#"test_context_json_path#0"#,
            r#"States.Format('Formatting arguments fst={} and snd={}.', $$.Execution.Name, $$.StateMachine)"#,
            r#"{"FunctionInput": null}"#,
            r#""Formatting arguments fst=<ExecArnPart_0idx> and snd={Id=arn:<partition>:states:<region>:111111111111:stateMachine:<ArnPart_0idx>, Name=<ArnPart_0idx>}.""#,
        ),
        (
            r#"test_format_1#0"#,
            r#"States.Format('Formatting argument {}.', $.FunctionInput)"#,
            r#"{"FunctionInput": ""}"#,
            r#""Formatting argument .""#,
        ),
        (
            r#"test_format_1#1"#,
            r#"States.Format('Formatting argument {}.', $.FunctionInput)"#,
            r#"{"FunctionInput": " "}"#,
            r#""Formatting argument  .""#,
        ),
        (
            r#"test_format_1#2"#,
            r#"States.Format('Formatting argument {}.', $.FunctionInput)"#,
            r#"{"FunctionInput": "HelloWorld"}"#,
            r#""Formatting argument HelloWorld.""#,
        ),
        (
            r#"test_format_1#3"#,
            r#"States.Format('Formatting argument {}.', $.FunctionInput)"#,
            r#"{"FunctionInput": null}"#,
            r#""Formatting argument null.""#,
        ),
        (
            r#"test_format_1#6"#,
            r#"States.Format('Formatting argument {}.', $.FunctionInput)"#,
            r#"{"FunctionInput": "{\"Arg1\": 1, \"Arg2\": []}"}"#,
            r#""Formatting argument {\"Arg1\": 1, \"Arg2\": []}.""#,
        ),
        (
            r#"test_format_2#1"#,
            r#"States.Format('Formatting arguments fst={} and snd={}.', $.FunctionInput.fst, $.FunctionInput.snd)"#,
            r#"{"FunctionInput": {"fst": " ", "snd": " "}}"#,
            r#""Formatting arguments fst=  and snd= .""#,
        ),
        (
            r#"test_format_2#2"#,
            r#"States.Format('Formatting arguments fst={} and snd={}.', $.FunctionInput.fst, $.FunctionInput.snd)"#,
            r#"{"FunctionInput": {"fst": "HelloWorld", "snd": "HelloWorld"}}"#,
            r#""Formatting arguments fst=HelloWorld and snd=HelloWorld.""#,
        ),
        (
            r#"test_format_2#4"#,
            r#"States.Format('Formatting arguments fst={} and snd={}.', $.FunctionInput.fst, $.FunctionInput.snd)"#,
            r#"{"FunctionInput": {"fst": 1, "snd": 1}}"#,
            r#""Formatting arguments fst=1 and snd=1.""#,
        ),
        (
            r#"test_format_2#6"#,
            r#"States.Format('Formatting arguments fst={} and snd={}.', $.FunctionInput.fst, $.FunctionInput.snd)"#,
            r#"{"FunctionInput": {"fst": "{\"Arg1\": 1, \"Arg2\": []}", "snd": "{\"Arg1\": 1, \"Arg2\": []}"}}"#,
            r#""Formatting arguments fst={\"Arg1\": 1, \"Arg2\": []} and snd={\"Arg1\": 1, \"Arg2\": []}.""#,
        ),
        (
            r#"test_hash#0"#,
            r#"States.Hash($.FunctionInput.fst, $.FunctionInput.snd)"#,
            r#"{"FunctionInput": {"fst": "input data", "snd": "MD5"}}"#,
            r#""812f45842bc6d66ee14572ce20db8e86""#,
        ),
        (
            r#"test_hash#1"#,
            r#"States.Hash($.FunctionInput.fst, $.FunctionInput.snd)"#,
            r#"{"FunctionInput": {"fst": "input data", "snd": "SHA-1"}}"#,
            r#""aaff4a450a104cd177d28d18d74485e8cae074b7""#,
        ),
        (
            r#"test_hash#2"#,
            r#"States.Hash($.FunctionInput.fst, $.FunctionInput.snd)"#,
            r#"{"FunctionInput": {"fst": "input data", "snd": "SHA-256"}}"#,
            r#""b4a697a057313163aee33cd8d40c66e9f0f177e00cac2de32475ffff6169c3e3""#,
        ),
        (
            r#"test_hash#3"#,
            r#"States.Hash($.FunctionInput.fst, $.FunctionInput.snd)"#,
            r#"{"FunctionInput": {"fst": "input data", "snd": "SHA-384"}}"#,
            r#""d28a7d5cf25a74f11a50a18452b75e04bb3d70c9dd0510d6123aa008c756511b87525bdc835ebb27e1fb9e9374a15562""#,
        ),
        (
            r#"test_hash#4"#,
            r#"States.Hash($.FunctionInput.fst, $.FunctionInput.snd)"#,
            r#"{"FunctionInput": {"fst": "input data", "snd": "SHA-512"}}"#,
            r#""6ce4adb348546d4f449c4d25aad9a7c9cb711d9e91982d3f0b29ca2f3f47d4ce2deba23bf2954f0f1d593fc50283731a533d30d425402d4f91316d871303aac4""#,
        ),
        (
            r#"test_json_merge#0"#,
            r#"States.JsonMerge($.FunctionInput.fst, $.FunctionInput.snd, false)"#,
            r#"{"FunctionInput": {"fst": {"a": {"a1": 1, "a2": 2}, "b": 2, "d": 3}, "snd": {"a": {"a3": 1, "a4": 2}, "c": 3, "d": 4}}}"#,
            r#"{"a": {"a3": 1, "a4": 2}, "b": 2, "c": 3, "d": 4}"#,
        ),
        (r#"test_json_to_string#0"#, r#"States.JsonToString($.FunctionInput)"#, r#"{"FunctionInput": null}"#, r#""null""#),
        (r#"test_json_to_string#1"#, r#"States.JsonToString($.FunctionInput)"#, r#"{"FunctionInput": 0}"#, r#""0""#),
        (r#"test_json_to_string#2"#, r#"States.JsonToString($.FunctionInput)"#, r#"{"FunctionInput": 1}"#, r#""1""#),
        (r#"test_json_to_string#3"#, r#"States.JsonToString($.FunctionInput)"#, r#"{"FunctionInput": 1.1}"#, r#""1.1""#),
        (r#"test_json_to_string#4"#, r#"States.JsonToString($.FunctionInput)"#, r#"{"FunctionInput": true}"#, r#""true""#),
        (
            r#"test_json_to_string#7"#,
            r#"States.JsonToString($.FunctionInput)"#,
            r#"{"FunctionInput": {"Arg1": 1, "Arg2": []}}"#,
            r#""{\"Arg1\":1,\"Arg2\":[]}""#,
        ),
        (r#"test_string_to_json#0"#, r#"States.StringToJson($.FunctionInput)"#, r#"{"FunctionInput": ""}"#, r#"null"#),
        (r#"test_string_to_json#1"#, r#"States.StringToJson($.FunctionInput)"#, r#"{"FunctionInput": " "}"#, r#"null"#),
        (r#"test_string_to_json#3"#, r#"States.StringToJson($.FunctionInput)"#, r#"{"FunctionInput": "-0"}"#, r#"0"#),
        (r#"test_string_to_json#4"#, r#"States.StringToJson($.FunctionInput)"#, r#"{"FunctionInput": "1"}"#, r#"1"#),
        (r#"test_string_to_json#5"#, r#"States.StringToJson($.FunctionInput)"#, r#"{"FunctionInput": "1.1"}"#, r#"1.1"#),
        (r#"test_string_to_json#6"#, r#"States.StringToJson($.FunctionInput)"#, r#"{"FunctionInput": "true"}"#, r#"true"#),
        (
            r#"test_string_to_json#7"#,
            r#"States.StringToJson($.FunctionInput)"#,
            r#"{"FunctionInput": "\"HelloWorld\""}"#,
            r#""HelloWorld""#,
        ),
        (
            r#"test_string_to_json#9"#,
            r#"States.StringToJson($.FunctionInput)"#,
            r#"{"FunctionInput": "{\"Arg1\": 1, \"Arg2\": []}"}"#,
            r#"{"Arg1": 1, "Arg2": []}"#,
        ),
        (
            r#"test_math_add#0"#,
            r#"States.MathAdd($.FunctionInput.fst, $.FunctionInput.snd)"#,
            r#"{"FunctionInput": {"fst": -9, "snd": 3}}"#,
            r#"-6"#,
        ),
        (
            r#"test_math_add#2"#,
            r#"States.MathAdd($.FunctionInput.fst, $.FunctionInput.snd)"#,
            r#"{"FunctionInput": {"fst": 1.5, "snd": 1.51}}"#,
            r#"4"#,
        ),
        (
            r#"test_math_add#3"#,
            r#"States.MathAdd($.FunctionInput.fst, $.FunctionInput.snd)"#,
            r#"{"FunctionInput": {"fst": -1.49, "snd": -1.5}}"#,
            r#"-2"#,
        ),
        (
            r#"test_math_add#4"#,
            r#"States.MathAdd($.FunctionInput.fst, $.FunctionInput.snd)"#,
            r#"{"FunctionInput": {"fst": -1.5, "snd": -1.51}}"#,
            r#"-3"#,
        ),
        (
            r#"test_math_add#5"#,
            r#"States.MathAdd($.FunctionInput.fst, $.FunctionInput.snd)"#,
            r#"{"FunctionInput": {"fst": 1.49, "snd": 0}}"#,
            r#"1"#,
        ),
        (
            r#"test_math_add#6"#,
            r#"States.MathAdd($.FunctionInput.fst, $.FunctionInput.snd)"#,
            r#"{"FunctionInput": {"fst": 1.49, "snd": -1.49}}"#,
            r#"0"#,
        ),
        (
            r#"test_math_add#8"#,
            r#"States.MathAdd($.FunctionInput.fst, $.FunctionInput.snd)"#,
            r#"{"FunctionInput": {"fst": 1.51, "snd": 0}}"#,
            r#"2"#,
        ),
        (
            r#"test_math_add#9"#,
            r#"States.MathAdd($.FunctionInput.fst, $.FunctionInput.snd)"#,
            r#"{"FunctionInput": {"fst": -1.49, "snd": 0}}"#,
            r#"-1"#,
        ),
        (
            r#"test_math_add#10"#,
            r#"States.MathAdd($.FunctionInput.fst, $.FunctionInput.snd)"#,
            r#"{"FunctionInput": {"fst": -1.5, "snd": 0}}"#,
            r#"-1"#,
        ),
        (
            r#"test_math_add#11"#,
            r#"States.MathAdd($.FunctionInput.fst, $.FunctionInput.snd)"#,
            r#"{"FunctionInput": {"fst": -1.51, "snd": 0}}"#,
            r#"-2"#,
        ),
        (
            r#"test_math_add#12"#,
            r#"States.MathAdd($.FunctionInput.fst, $.FunctionInput.snd)"#,
            r#"{"FunctionInput": {"fst": 0.5, "snd": 0}}"#,
            r#"1"#,
        ),
        (
            r#"test_math_add#13"#,
            r#"States.MathAdd($.FunctionInput.fst, $.FunctionInput.snd)"#,
            r#"{"FunctionInput": {"fst": 1.5, "snd": 0}}"#,
            r#"2"#,
        ),
        (
            r#"test_math_add#14"#,
            r#"States.MathAdd($.FunctionInput.fst, $.FunctionInput.snd)"#,
            r#"{"FunctionInput": {"fst": 2.5, "snd": 0}}"#,
            r#"3"#,
        ),
        (
            r#"test_math_add#15"#,
            r#"States.MathAdd($.FunctionInput.fst, $.FunctionInput.snd)"#,
            r#"{"FunctionInput": {"fst": 3.5, "snd": 0}}"#,
            r#"4"#,
        ),
        (
            r#"test_math_add#16"#,
            r#"States.MathAdd($.FunctionInput.fst, $.FunctionInput.snd)"#,
            r#"{"FunctionInput": {"fst": -0.5, "snd": 0.5}}"#,
            r#"1"#,
        ),
        (
            r#"test_math_add#17"#,
            r#"States.MathAdd($.FunctionInput.fst, $.FunctionInput.snd)"#,
            r#"{"FunctionInput": {"fst": -0.5, "snd": 0}}"#,
            r#"0"#,
        ),
        (
            r#"test_math_add#18"#,
            r#"States.MathAdd($.FunctionInput.fst, $.FunctionInput.snd)"#,
            r#"{"FunctionInput": {"fst": -1.5, "snd": 0}}"#,
            r#"-1"#,
        ),
        (
            r#"test_math_add#19"#,
            r#"States.MathAdd($.FunctionInput.fst, $.FunctionInput.snd)"#,
            r#"{"FunctionInput": {"fst": -2.5, "snd": 0}}"#,
            r#"-2"#,
        ),
        (
            r#"test_math_random#0"#,
            r#"States.MathRandom($.FunctionInput.fst, $.FunctionInput.snd)"#,
            r#"{"FunctionInput": {"fst": 12.5, "snd": 44.51}}"#,
            r#""RandomNumberGenerated""#,
        ),
        (
            r#"test_math_random#1"#,
            r#"States.MathRandom($.FunctionInput.fst, $.FunctionInput.snd)"#,
            r#"{"FunctionInput": {"fst": 9999, "snd": 99999}}"#,
            r#""RandomNumberGenerated""#,
        ),
        (
            r#"test_math_random#2"#,
            r#"States.MathRandom($.FunctionInput.fst, $.FunctionInput.snd)"#,
            r#"{"FunctionInput": {"fst": -99999, "snd": -9999}}"#,
            r#""RandomNumberGenerated""#,
        ),
        (
            r#"test_math_random_seeded#0"#,
            r#"States.MathRandom($.FunctionInput.fst, $.FunctionInput.snd, $.FunctionInput.trd)"#,
            r#"{"FunctionInput": {"fst": 0, "snd": 999, "trd": 3}}"#,
            r#""RandomNumberGenerated""#,
        ),
        (
            r#"test_string_split#0"#,
            r#"States.StringSplit($.FunctionInput.fst, $.FunctionInput.snd)"#,
            r#"{"FunctionInput": {"fst": " ", "snd": ","}}"#,
            r#"[" "]"#,
        ),
        (
            r#"test_string_split#2"#,
            r#"States.StringSplit($.FunctionInput.fst, $.FunctionInput.snd)"#,
            r#"{"FunctionInput": {"fst": ", , ,", "snd": ","}}"#,
            r#"[" ", " "]"#,
        ),
        (
            r#"test_string_split#4"#,
            r#"States.StringSplit($.FunctionInput.fst, $.FunctionInput.snd)"#,
            r#"{"FunctionInput": {"fst": "1,2,3,4,5", "snd": ","}}"#,
            r#"["1", "2", "3", "4", "5"]"#,
        ),
        (
            r#"test_string_split#5"#,
            r#"States.StringSplit($.FunctionInput.fst, $.FunctionInput.snd)"#,
            r#"{"FunctionInput": {"fst": "This.is+a,test=string", "snd": ".+,="}}"#,
            r#"["This", "is", "a", "test", "string"]"#,
        ),
        (
            r#"test_string_split#6"#,
            r#"States.StringSplit($.FunctionInput.fst, $.FunctionInput.snd)"#,
            r#"{"FunctionInput": {"fst": "split on T and \nnew line", "snd": "T\n"}}"#,
            r#"["split on ", " and ", "new line"]"#,
        ),
        (
            r#"test_string_split_context_object#0"#,
            r#"States.StringSplit($$.Execution.Input.FunctionInput, ',')"#,
            r#"{"FunctionInput": "Value1,Value2,Value3\nValue4,Value5,Value6\n,,,\ntrue,1,'HelloWorld'\nNull,None,\n   \n"}"#,
            r#"["Value1", "Value2", "Value3\nValue4", "Value5", "Value6\n", "\ntrue", "1", "'HelloWorld'\nNull", "None", "\n   \n"]"#,
        ),
    ];

    #[test]
    fn corpus_cases() {
        for &(id, expr, input, expected) in CORPUS {
            let input: Value = serde_json::from_str(input).expect("corpus input");
            let expected: Value = serde_json::from_str(expected).expect("corpus output");
            let actual = evaluate(expr, &mut TestCtx::new(input)).unwrap_or_else(|e| panic!("{id}: {e}"));
            let good = match (&expected, &actual) {
                (Value::String(e), Value::Number(n)) if e == "RandomNumberGenerated" => n.is_i64(),
                (Value::String(e), Value::String(a)) if e.contains('<') => matches_pattern(e, a),
                _ => json_eq(&expected, &actual),
            };
            assert!(good, "{id}: {expr}\n expected {expected}\n   actual {actual}");
        }
    }

    #[test]
    fn corpus_variables_and_nesting() {
        // BASE_REFERENCE_IN_INTRINSIC_FUNCTION: arguments are variables.
        let vars = json!({
            "csvString": "a,b,c,d,e", "encodedString": "SGVsbG8gV29ybGQ=", "inputString": "Hash this string",
            "json1": {"a": 1, "b": 2}, "json2": {"c": 3, "d": 4}, "jsonObject": {"test": "object"},
            "jsonString": "{\"key\":\"value\"}", "name": "John", "place": "LocalStack", "rawString": "Hello World",
            "value1": 5, "value2": 3, "AnswerTemplate": "It's {}!", "bias": 4.3,
        });
        let mut ctx = TestCtx::new(json!({})).with_vars(vars);
        let mut run = |e: &str| evaluate(e, &mut ctx).unwrap_or_else(|err| panic!("{e}: {err}"));
        assert_eq!(run("States.Base64Decode($encodedString)"), json!("Hello World"));
        assert_eq!(run("States.Base64Encode($rawString)"), json!("SGVsbG8gV29ybGQ="));
        assert_eq!(run("States.Hash($inputString, 'SHA-256')"), json!("1cac63f39fd68d8c531f27b807610fb3d50f0fc3f186995767fb6316e7200a3e"));
        assert_eq!(run("States.JsonMerge($json1, $json2, false)"), json!({"a": 1, "b": 2, "c": 3, "d": 4}));
        assert_eq!(run("States.StringToJson($jsonString)"), json!({"key": "value"}));
        assert_eq!(run("States.JsonToString($jsonObject)"), json!("{\"test\":\"object\"}"));
        assert_eq!(run("States.MathAdd($value1, $value2)"), json!(8));
        assert_eq!(run("States.Format('Hello {}, welcome to {}!', $name, $place)"), json!("Hello John, welcome to LocalStack!"));
        assert_eq!(run("States.StringSplit($csvString, ',')"), json!(["a", "b", "c", "d", "e"]));
        assert_eq!(run("States.Format($AnswerTemplate, $$.Execution.Name)"), json!("It's exec!"));
        // BASE_REFERENCE_IN_ITERATOR_OUTER_SCOPE: nested calls with a decimal bias.
        assert_eq!(run("States.MathAdd(States.MathAdd(States.MathAdd(44, 9), 6), $bias)"), json!(63));
        // BASE_ASSIGN_FROM_INTRINSIC_FUNCTION / reentrant Map scenarios: literal arguments.
        assert_eq!(run("States.ArrayRange(1, 10, 2)"), json!([1, 3, 5, 7, 9]));
        assert_eq!(run("States.ArrayRange(0, 3, 1)"), json!([0, 1, 2, 3]));
        assert_eq!(run("States.Array('a', 'b', 'c')"), json!(["a", "b", "c"]));
        assert_eq!(run("States.ArrayUnique(States.Array(1, 2, 2, 3, 3, 4))"), json!([1, 2, 3, 4]));
        assert_eq!(run("States.MathAdd(3, -1)"), json!(2));
        assert_eq!(run("States.Format('Format:{}', 101)"), json!("Format:101"));
        let uuid = run("States.UUID()");
        let uuid = uuid.as_str().unwrap_or_default();
        assert_eq!((uuid.len(), &uuid[14..15], uuid.matches('-').count()), (36, "4", 4));
        assert!(matches!(&uuid[19..20], "8" | "9" | "a" | "b"), "{uuid}");
    }

    #[test]
    fn corpus_fail_state_and_escaped_json_literal() {
        let input = json!({"Cause": "cause string", "Error": "error string"});
        assert_eq!(
            ok("States.Format('This is a custom error message for {}, caused by {}.', $.Error, $.Cause)", input),
            json!("This is a custom error message for error string, caused by cause string.")
        );
        let input = json!({"input_field": {"constant_input_field": "constant_value"}});
        assert_eq!(
            ok(
                r#"States.JsonMerge(States.StringToJson('{"constant_in_literal": "false"}'), $$.Execution.Input.input_field, false)"#,
                input
            ),
            json!({"constant_in_literal": "false", "constant_input_field": "constant_value"})
        );
        assert_eq!(ok(r#"States.StringToJson('{"text":"An \"escaped\" quote"}')"#, json!({})), json!({"text": "An \"escaped\" quote"}));
    }

    #[test]
    fn format_rendering_and_escapes() {
        let input = json!({"o": {"a": 1, "b": [1, 2.5, "x"], "c": null}, "f": 1.0, "big": 1e10, "t": true});
        assert_eq!(ok("States.Format('{}', $.o)", input.clone()), json!("{a=1, b=[1, 2.5, x], c=null}"));
        assert_eq!(ok("States.Format('{} {} {}', $.f, $.big, $.t)", input), json!("1.0 1.0E10 true"));
        assert_eq!(ok(r"States.Format('\{\} {} \'q\' \\ \n', 1.5)", json!({})), json!(r"{} 1.5 'q' \ \n"));
        assert_eq!(ok("States.Format('no placeholders')", json!({})), json!("no placeholders"));
        assert_eq!(ok("States.Format('{}{}', -2, null)", json!({})), json!("-2null"));
        let e = fails("States.Format('{} {}', 1)", json!({}));
        assert_eq!(e.error_name(), "States.IntrinsicFailure");
        assert!(e.cause().contains("does not match"), "{}", e.cause());
        fails("States.Format('{}')", json!({}));
        fails("States.Format(1)", json!({}));
    }

    #[test]
    fn json_functions() {
        assert_eq!(ok("States.StringToJson('-0')", json!({})), json!(0));
        assert_eq!(ok("States.StringToJson('  ')", json!({})), Value::Null);
        assert_eq!(ok("States.JsonToString(States.Array(1, 'a\"b', 1.5E-7))", json!({})), json!(r#"[1,"a\"b",1.5E-7]"#));
        fails("States.StringToJson('{bad')", json!({}));
        fails("States.StringToJson(1)", json!({}));
        let e = fails("States.JsonMerge($.a, $.a, true)", json!({"a": {}}));
        assert!(e.cause().contains("Deep merging"), "{}", e.cause());
        fails("States.JsonMerge($.a, 1, false)", json!({"a": {}}));
    }

    #[test]
    fn array_functions() {
        assert_eq!(ok("States.ArrayRange(10, 0, -3)", json!({})), json!([10, 7, 4, 1]));
        assert_eq!(ok("States.ArrayRange(0, 10, -1)", json!({})), json!([]));
        assert_eq!(ok("States.ArrayRange(1, 1000, 1)", json!({})).as_array().map(Vec::len), Some(1000));
        assert!(fails("States.ArrayRange(0, 1000, 1)", json!({})).cause().contains("1000"));
        fails("States.ArrayRange(0, 10, 0)", json!({}));
        fails("States.ArrayRange(0, 1.5, 1)", json!({}));
        assert_eq!(ok("States.ArrayPartition($.a, 2)", json!({"a": [1, 2, 3]})), json!([[1, 2], [3]]));
        fails("States.ArrayPartition($.a, 0)", json!({"a": [1]}));
        fails("States.ArrayPartition($.a, -1)", json!({"a": [1]}));
        assert_eq!(ok("States.ArrayGetItem($.a, 0)", json!({"a": [7]})), json!(7));
        assert!(fails("States.ArrayGetItem($.a, 1)", json!({"a": [7]})).cause().contains("out of bounds"));
        fails("States.ArrayGetItem($.a, -1)", json!({"a": [7]}));
        fails("States.ArrayLength('abc')", json!({}));
        assert_eq!(ok("States.ArrayContains($.a, 1.0)", json!({"a": [{"k": [1]}, 1]})), json!(true));
        assert_eq!(ok("States.ArrayContains($.a, $.b)", json!({"a": [{"x": 1, "y": 2}], "b": {"y": 2, "x": 1}})), json!(true));
        assert_eq!(
            ok("States.ArrayUnique($.a)", json!({"a": [{"x": 1, "y": 2}, {"y": 2, "x": 1}, 1, 1.0, "1", null, null]})),
            json!([{"x": 1, "y": 2}, 1, "1", null])
        );
    }

    #[test]
    fn encoding_hash_and_limits() {
        assert_eq!(ok("States.Base64Decode('SGk')", json!({})), json!("Hi"));
        fails("States.Base64Decode('not base64!')", json!({}));
        let long = "a".repeat(MAX_INPUT_CHARS + 1);
        for f in ["States.Base64Encode($.s)", "States.Base64Decode($.s)", "States.Hash($.s, 'MD5')"] {
            assert!(fails(f, json!({"s": long})).cause().contains("10000"), "{f}");
        }
        assert_eq!(ok("States.Hash('', 'MD5')", json!({})), json!("d41d8cd98f00b204e9800998ecf8427e"));
        assert!(fails("States.Hash('x', 'SHA-3')", json!({})).cause().contains("MD5, SHA-1"));
        fails("States.Hash(1, 'MD5')", json!({}));
    }

    #[test]
    fn math_and_strings() {
        assert_eq!(ok("States.MathAdd(-0.5, 0.5)", json!({})), json!(1));
        fails("States.MathAdd('1', 2)", json!({}));
        fails("States.MathAdd(9223372036854775807, 1)", json!({}));
        let mut ctx = TestCtx::new(json!({}));
        for _ in 0..200 {
            let n = evaluate("States.MathRandom(-3, 3)", &mut ctx).ok().and_then(|v| v.as_i64());
            assert!(n.is_some_and(|n| (-3..3).contains(&n)), "{n:?}");
        }
        assert_eq!(evaluate("States.MathRandom(5, 5)", &mut ctx), Ok(json!(5)));
        fails("States.MathRandom(5, 4)", json!({}));
        let seeded = ok("States.MathRandom(0, 999, 3)", json!({}));
        assert_eq!(seeded, ok("States.MathRandom(0, 999, 3)", json!({})));
        // java.util.Random(42).nextInt(10) == 0, new Random(42).nextInt(100) == 0 ... and nextInt(1000) == 0
        assert_eq!(JavaRandom::new(42).next_below(10), 0);
        assert_eq!(JavaRandom::new(1).next_below(100), 85);
        assert_eq!(ok("States.StringSplit('', ',')", json!({})), json!([]));
        assert_eq!(ok("States.StringSplit('a,b', '')", json!({})), json!(["a,b"]));
        fails("States.StringSplit(1, ',')", json!({}));
    }

    #[test]
    fn parsing() {
        let call = parse(" States.Format( 'a\\'b' , -1.5e2,true , null, $.a[?(@.x == 'a,b)')].c , States.UUID() ) ").expect("parses");
        assert_eq!(call.name, "States.Format");
        assert_eq!(
            call.args,
            vec![
                Arg::Literal(json!("a'b")),
                Arg::Literal(json!(-150.0)),
                Arg::Literal(json!(true)),
                Arg::Literal(Value::Null),
                Arg::Path("$.a[?(@.x == 'a,b)')].c".into()),
                Arg::Call(Call { name: "States.UUID".into(), args: vec![], raw_args: vec![] }),
            ]
        );
        assert_eq!(call.raw_args[0], "'a\\'b'");
        for (bad, why) in [
            ("States.Format('a'", "expected ','"),
            ("States.Format('a", "unterminated"),
            ("States.Format('a') x", "after the closing"),
            ("States.Format(trueish)", "expected a string"),
            ("States.Format('a',)", "expected a string"),
            ("States.Format(--1)", "invalid number"),
            ("$.a", "starting with 'States.'"),
            ("States.(1)", "function name"),
        ] {
            let e = parse(bad).expect_err(bad);
            assert!(matches!(e, IntrinsicError::Syntax { .. }) && e.cause().contains(why), "{bad}: {e}");
            assert_eq!(e.error_name(), "States.Runtime");
        }
        assert!(matches!(parse("States.Nope()"), Err(IntrinsicError::InvalidCall { .. })));
        let e = parse("States.MathAdd(1)").expect_err("arity");
        assert!(e.cause().contains("expects 2 argument(s) but received 1"), "{e}");
        let deep = format!("{}1{}", "States.Array(".repeat(100), ")".repeat(100));
        assert!(parse(&deep).is_err());
        assert!(looks_like_intrinsic("States.Format('x')"));
        assert!(looks_like_intrinsic("  States.UUID()"));
        assert!(!looks_like_intrinsic("States.Format"));
        assert!(!looks_like_intrinsic("States. ()"));
        assert!(!looks_like_intrinsic("$.States.Format('x')"));
    }

    #[test]
    fn path_errors() {
        let e = fails("States.Array($.missing)", json!({}));
        assert_eq!(e, IntrinsicError::PathNotFound { path: "$.missing".into() });
        assert_eq!(e.error_name(), "States.Runtime");
        let e = fails("States.Array($.a[x])", json!({"a": []}));
        assert!(matches!(e, IntrinsicError::Path { .. }), "{e:?}");
    }

    #[test]
    fn java_numbers() {
        let n = |f: f64| java_number(&serde_json::Number::from_f64(f).expect("finite"));
        assert_eq!(
            [n(1.0), n(-0.0), n(0.001), n(1234567.5), n(1e7), n(1.5e-4), n(-2.5e300)],
            ["1.0", "-0.0", "0.001", "1234567.5", "1.0E7", "1.5E-4", "-2.5E300"]
        );
    }

    proptest::proptest! {
        #[test]
        fn never_panics(s in "\\PC*") {
            let _ = parse(&s);
            let _ = evaluate(&s, &mut TestCtx::new(json!({"a": [1, "x", {"b": 2.5}], "s": "a,b"})));
        }

        #[test]
        fn never_panics_on_call_shaped_input(
            name in proptest::sample::select(FUNCTIONS.iter().map(|f| f.0).collect::<Vec<_>>()),
            args in proptest::collection::vec(
                "('[^']{0,8}'|-?[0-9]{1,20}(\\.[0-9]{1,3})?|true|false|null|\\$\\.a(\\[[0-9]\\])?|\\$\\.s|\\$|States\\.Array\\([0-9]?\\))",
                0..4,
            ),
        ) {
            let expr = format!("{name}({})", args.join(", "));
            let _ = evaluate(&expr, &mut TestCtx::new(json!({"a": [1, "x", {"b": 2.5}], "s": "a,b"})));
        }
    }
}
