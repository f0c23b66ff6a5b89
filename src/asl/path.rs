//! JSONPath for Amazon States Language (`InputPath`, `ResultPath`, `.$` fields, …) with the
//! semantics of Java's Jayway JsonPath, which AWS Step Functions uses:
//!
//! * A *definite* path (single names and single indexes only) selects one value or nothing.
//! * An *indefinite* path (wildcard, `..`, filter, slice, several indexes) selects an array of all
//!   matches; non-matching branches (missing keys, wrong types) are skipped.
//! * A filter on an object tests the object itself; on an array it tests each element.
//! * A trailing function (`length()`, `min()`, …) applies to the selected value (or to the array of
//!   matches of an indefinite path) and yields one value.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::fmt;

use serde_json::{Map, Number, Value};

/// Maximum nesting of `(`, `!`, `[` literals and sub-paths in filters (no stack overflow).
const MAX_DEPTH: usize = 64;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PathError {
    /// The text is not a valid JSONPath.
    #[error("invalid JSONPath '{path}': {message}")]
    Parse { path: String, message: String },
    /// A value cannot be written at the path (`ResultPath` semantics).
    #[error("cannot set a value at JSONPath '{path}': {message}")]
    Set { path: String, message: String },
}

/// A compiled JSONPath.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonPath {
    text: String,
    query: Query,
}

#[derive(Debug, Clone, PartialEq)]
struct Query {
    segs: Vec<Seg>,
    func: Option<&'static str>,
    definite: bool,
}

#[derive(Debug, Clone, PartialEq)]
enum Seg {
    Names(Vec<String>),                   // .name ['name'] ['a','b']
    Indexes(Vec<i64>),                    // [0] [-1] [0,2]
    Slice(Option<i64>, Option<i64>, i64), // [start:end:step], step > 0
    Wildcard,                             // .* [*]
    Scan,                                 // .. (always followed by another segment)
    Filter(Box<Expr>, String),            // [?(expr)] and its source text
}

/// Functions allowed as the last segment (`size` is an alias of `length`).
const FUNCS: [&str; 10] = ["length", "size", "min", "max", "avg", "sum", "stddev", "keys", "first", "last"];

#[derive(Debug, Clone, PartialEq)]
enum Expr {
    Or(Box<Expr>, Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    /// A bare path: true when it exists (even when its value is `null` or `false`).
    Exists(bool, Query),
    Cmp(Operand, Op, Operand),
}

#[derive(Debug, Clone, PartialEq)]
enum Operand {
    /// `@...` (current node) or, with `true`, `$...` (document root).
    Path(bool, Query),
    Lit(Value),
    Regex(Re),
}

#[derive(Debug, Clone)]
struct Re(regex::Regex);

impl PartialEq for Re {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_str() == other.0.as_str()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Match,
    In,
    Nin,
    SubsetOf,
    AnyOf,
    NoneOf,
    Size,
    Empty,
}

/// Longest first, so that prefixes do not win. Word operators must match a whole word.
const OPS: [(&str, Op); 16] = [
    ("===", Op::Eq),
    ("!==", Op::Ne),
    ("==", Op::Eq),
    ("!=", Op::Ne),
    ("<=", Op::Le),
    (">=", Op::Ge),
    ("=~", Op::Match),
    ("<", Op::Lt),
    (">", Op::Gt),
    ("subsetof", Op::SubsetOf),
    ("anyof", Op::AnyOf),
    ("noneof", Op::NoneOf),
    ("size", Op::Size),
    ("empty", Op::Empty),
    ("nin", Op::Nin),
    ("in", Op::In),
];

impl JsonPath {
    /// Compiles a JSONPath; it must start with `$`. Surrounding whitespace is ignored.
    pub fn parse(s: &str) -> Result<JsonPath, PathError> {
        let fail = |message| PathError::Parse { path: s.to_string(), message };
        let mut p = Parser { src: s.trim(), pos: 0, depth: 0 };
        if !p.eat('$') {
            return Err(fail("a JSONPath must start with '$'".into()));
        }
        let query = p.query(false).map_err(fail)?;
        if let Some(c) = p.peek() {
            return Err(fail(p.at(if query.func.is_some() {
                "a function call must be the last segment of the path".into()
            } else {
                format!("unexpected character '{c}'")
            })));
        }
        Ok(JsonPath { text: s.to_string(), query })
    }

    /// The original text of the path.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// True when the path selects at most one node (Jayway): only single names and indexes, or a
    /// multi-name `['a','b']` as last segment (which selects one merged object).
    pub fn is_definite(&self) -> bool {
        self.query.definite
    }

    /// True for `$` itself.
    pub fn is_root(&self) -> bool {
        self.query.segs.is_empty() && self.query.func.is_none()
    }

    /// Definite path: `Some(value)`, or `None` when it does not exist. Indefinite path:
    /// `Some(array of all matches)`, possibly empty. Path ending in a function: its result, or
    /// `None` when the function does not apply (e.g. `length()` of a number).
    pub fn select(&self, root: &Value) -> Option<Value> {
        self.query.eval(root, root).map(Cow::into_owned)
    }

    /// Jayway's normalized bracket form as used in AWS error messages, e.g. `$['a'][0]['b']`.
    /// Filters are rendered with their source text: `$['a'][?(@.b > 1)]`.
    pub fn canonical(&self) -> String {
        canonical(&self.query.segs, self.query.func)
    }
}

impl fmt::Display for JsonPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Writes `value` at a definite `path` (Step Functions `ResultPath`). `$` replaces the whole
/// document; missing intermediate fields are created as objects; an existing intermediate that is
/// not an object (or not an array, for an index), or an index out of bounds, is an error.
pub fn set_path(root: &mut Value, path: &JsonPath, value: Value) -> Result<(), PathError> {
    let fail = |message| Err(PathError::Set { path: path.text.clone(), message });
    let segs = &path.query.segs;
    let single = |s: &Seg| matches!(s, Seg::Names(n) if n.len() == 1) || matches!(s, Seg::Indexes(i) if i.len() == 1);
    if path.query.func.is_some() || !segs.iter().all(single) {
        return fail("only definite paths of single names and indexes can be written to".into());
    }
    let mut cur = root;
    for (i, seg) in segs.iter().enumerate() {
        // Only needed for error messages: the path so far, and this segment.
        let at = || canonical(&segs[..i], None);
        let this = || canonical(&segs[i..=i], None).split_off(1);
        cur = match (seg, cur) {
            // `n` has exactly one element, so `concat` is that name.
            (Seg::Names(n), Value::Object(map)) if !map.contains_key(&n.concat()) => {
                // Build the missing rest of the path; only names can be created, and `root` is
                // left untouched on error.
                let rest = &segs[i + 1..];
                if let Some(j) = rest.iter().position(|s| matches!(s, Seg::Indexes(_))) {
                    let (missing, index) = (&segs[..=i + j], &segs[i + j + 1..=i + j + 1]);
                    return fail(format!(
                        "{} does not exist, so index {} cannot be set",
                        canonical(missing, None),
                        canonical(index, None).split_off(1)
                    ));
                }
                let wrap = |v, s: &Seg| match s {
                    Seg::Names(n) => Value::Object(Map::from_iter([(n.concat(), v)])),
                    _ => v,
                };
                map.insert(n.concat(), rest.iter().rev().fold(value, wrap));
                return Ok(());
            }
            (Seg::Names(n), Value::Object(map)) => map.entry(n.concat()).or_insert(Value::Null),
            (Seg::Indexes(ix), Value::Array(arr)) => {
                let len = arr.len();
                match ix.first().and_then(|&k| resolve(k, len)).and_then(|k| arr.get_mut(k)) {
                    Some(v) => v,
                    None => {
                        return fail(format!("index {} is out of bounds at {} (length {len})", this(), at()));
                    }
                }
            }
            (seg, other) => {
                let want = if matches!(seg, Seg::Names(_)) { "an object" } else { "an array" };
                return fail(format!("{} is {}, not {want}, so {} cannot be set", at(), kind(other), this()));
            }
        };
    }
    *cur = value;
    Ok(())
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn canonical(segs: &[Seg], func: Option<&str>) -> String {
    let mut out = String::from("$");
    for seg in segs {
        let join = |v: Vec<String>| v.join(",");
        match seg {
            Seg::Names(n) => out += &format!("[{}]", join(n.iter().map(|s| format!("'{s}'")).collect())),
            Seg::Indexes(ix) => out += &format!("[{}]", join(ix.iter().map(i64::to_string).collect())),
            Seg::Slice(s, e, step) => {
                let opt = |v: &Option<i64>| v.map(|v| v.to_string()).unwrap_or_default();
                let step = if *step == 1 { String::new() } else { format!(":{step}") };
                out += &format!("[{}:{}{step}]", opt(s), opt(e));
            }
            Seg::Wildcard => out += "[*]",
            Seg::Scan => out += "..",
            Seg::Filter(_, text) => out += &format!("[{text}]"),
        }
    }
    if let Some(name) = func {
        out += &format!(".{name}()");
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Parser (recursive descent). Errors are messages; `JsonPath::parse` adds the path.
// ---------------------------------------------------------------------------------------------

struct Parser<'s> {
    src: &'s str,
    pos: usize,
    depth: usize,
}

type PResult<T> = Result<T, String>;

impl Parser<'_> {
    fn rest(&self) -> &str {
        self.src.get(self.pos..).unwrap_or("")
    }
    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }
    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }
    fn eat(&mut self, c: char) -> bool {
        self.eat_str(c.encode_utf8(&mut [0; 4]))
    }
    fn eat_str(&mut self, s: &str) -> bool {
        let ok = self.rest().starts_with(s);
        if ok {
            self.pos += s.len();
        }
        ok
    }
    fn ws(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.bump();
        }
    }
    fn at(&self, msg: impl fmt::Display) -> String {
        let col = self.src.get(..self.pos).unwrap_or("").chars().count();
        format!("{msg} at position {col}")
    }
    fn err<T>(&self, msg: impl fmt::Display) -> PResult<T> {
        Err(self.at(msg))
    }
    fn found(&self) -> String {
        self.peek().map_or("found the end of the path".into(), |c| format!("found '{c}'"))
    }
    fn expect(&mut self, c: char) -> PResult<()> {
        if self.eat(c) { Ok(()) } else { self.err(format!("expected '{c}', {}", self.found())) }
    }
    /// Guards recursion; pair with `self.depth -= 1` on success.
    fn enter(&mut self) -> PResult<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH { self.err("filter expression is nested too deeply") } else { Ok(()) }
    }

    /// Segments after `$` or `@`; inside a filter, stops at anything that cannot continue a path.
    fn query(&mut self, in_filter: bool) -> PResult<Query> {
        self.enter()?;
        let (mut segs, mut func) = (Vec::new(), None);
        loop {
            if self.eat('[') {
                segs.push(self.bracket()?);
                continue;
            }
            if !self.eat('.') {
                break;
            }
            let scan = self.eat('.');
            if scan {
                segs.push(Seg::Scan);
            }
            if self.eat('[') {
                segs.push(self.bracket()?);
            } else if self.eat('*') {
                segs.push(Seg::Wildcard);
            } else {
                let name = self.dot_name(in_filter)?;
                if self.peek() != Some('(') {
                    segs.push(Seg::Names(vec![name]));
                } else if scan {
                    return self.err("a function cannot directly follow '..'");
                } else {
                    func = Some(self.func(&name)?);
                    break;
                }
            }
        }
        let n = segs.len();
        let definite = segs.iter().enumerate().all(|(i, s)| match s {
            Seg::Names(names) => names.len() == 1 || i + 1 == n,
            Seg::Indexes(ix) => ix.len() == 1,
            _ => false,
        });
        self.depth -= 1;
        Ok(Query { segs, func, definite })
    }

    fn dot_name(&mut self, in_filter: bool) -> PResult<String> {
        let start = self.pos;
        while let Some(c) = self.peek().filter(|c| !matches!(c, '.' | '[' | '(')) {
            if in_filter && (c.is_whitespace() || "<>=~!)&|,]".contains(c)) {
                break;
            }
            if c.is_whitespace() {
                return self.err("blanks in a property name need bracket notation ['a b']");
            }
            self.pos += c.len_utf8();
        }
        if start == self.pos {
            return self.err(format!("expected a property name, {}", self.found()));
        }
        Ok(self.src[start..self.pos].to_string())
    }

    fn func(&mut self, name: &str) -> PResult<&'static str> {
        let Some(&f) = FUNCS.iter().find(|f| **f == name) else {
            return self.err(format!("unknown function '{name}()'"));
        };
        self.expect('(')?;
        self.ws();
        if !self.eat(')') {
            return self.err(format!("function '{name}()' takes no arguments"));
        }
        Ok(f)
    }

    /// After `[`: `*`, quoted names, indexes, a slice or a filter, then `]`.
    fn bracket(&mut self) -> PResult<Seg> {
        self.ws();
        let seg = match self.peek() {
            Some('*') => {
                self.pos += 1;
                Seg::Wildcard
            }
            Some('\'' | '"') => {
                let mut names = vec![self.quoted()?];
                while self.ws_eat(',') {
                    self.ws();
                    names.push(self.quoted()?);
                }
                Seg::Names(names)
            }
            Some('?') => {
                let start = self.pos;
                self.pos += 1;
                self.ws();
                self.expect('(')?;
                let e = self.or_expr()?;
                self.ws();
                self.expect(')')?;
                Seg::Filter(Box::new(e), self.src[start..self.pos].to_string())
            }
            Some(c) if c == '-' || c == ':' || c.is_ascii_digit() => self.indexes()?,
            _ => {
                return self.err(format!("expected '*', a quoted name, an index, a slice or a filter after '[', {}", self.found()));
            }
        };
        self.ws();
        self.expect(']')?;
        Ok(seg)
    }

    fn ws_eat(&mut self, c: char) -> bool {
        self.ws();
        self.eat(c)
    }

    fn indexes(&mut self) -> PResult<Seg> {
        let first = self.opt_int()?;
        if self.ws_eat(':') {
            self.ws();
            let end = self.opt_int()?;
            let step = if self.ws_eat(':') {
                self.ws();
                self.opt_int()?.unwrap_or(1)
            } else {
                1
            };
            if step <= 0 {
                return self.err("a slice step must be a positive integer");
            }
            return Ok(Seg::Slice(first, end, step));
        }
        let mut ix = vec![first];
        while self.ws_eat(',') {
            self.ws();
            ix.push(self.opt_int()?);
        }
        match ix.into_iter().collect::<Option<Vec<_>>>() {
            Some(ix) => Ok(Seg::Indexes(ix)),
            None => self.err(format!("expected an index, {}", self.found())),
        }
    }

    fn opt_int(&mut self) -> PResult<Option<i64>> {
        let start = self.pos;
        self.eat('-');
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.pos += 1;
        }
        match &self.src[start..self.pos] {
            "" => Ok(None),
            "-" => self.err(format!("expected digits after '-', {}", self.found())),
            text => text.parse().map(Some).or_else(|_| self.err(format!("index {text} is out of range"))),
        }
    }

    /// A quoted string. `\` escapes the quote character and `\` itself; any other backslash is
    /// kept literally (AWS resolves `$['a\"b']` to the key `a\"b`).
    fn quoted(&mut self) -> PResult<String> {
        let Some(q) = self.bump().filter(|c| matches!(c, '\'' | '"')) else {
            return self.err("expected a quoted string");
        };
        let mut s = String::new();
        loop {
            match (self.bump(), q) {
                (None, _) => return self.err("unterminated string"),
                (Some('\\'), _) => match self.bump() {
                    Some(c) if c == q || c == '\\' => s.push(c),
                    Some(c) => s.extend(['\\', c]),
                    None => return self.err("unterminated string"),
                },
                (Some(c), q) if c == q => return Ok(s),
                (Some(c), _) => s.push(c),
            }
        }
    }

    fn or_expr(&mut self) -> PResult<Expr> {
        self.enter()?;
        let mut e = self.and_expr()?;
        while self.ws_eat_str("||") {
            e = Expr::Or(Box::new(e), Box::new(self.and_expr()?));
        }
        self.depth -= 1;
        Ok(e)
    }

    fn ws_eat_str(&mut self, s: &str) -> bool {
        self.ws();
        self.eat_str(s)
    }

    fn and_expr(&mut self) -> PResult<Expr> {
        let mut e = self.unary()?;
        while self.ws_eat_str("&&") {
            e = Expr::And(Box::new(e), Box::new(self.unary()?));
        }
        Ok(e)
    }

    fn unary(&mut self) -> PResult<Expr> {
        if self.ws_eat('!') {
            self.enter()?;
            let e = self.unary()?;
            self.depth -= 1;
            return Ok(Expr::Not(Box::new(e)));
        }
        if self.eat('(') {
            let e = self.or_expr()?;
            self.ws();
            self.expect(')')?;
            return Ok(e);
        }
        let left = self.operand()?;
        self.ws();
        let Some(op) = self.op() else {
            return match left {
                Operand::Path(root, q) => Ok(Expr::Exists(root, q)),
                _ => self.err(format!("expected a comparison operator, {}", self.found())),
            };
        };
        let right = self.operand()?;
        let regex = matches!(left, Operand::Regex(_)) || matches!(right, Operand::Regex(_));
        if (op == Op::Match) != regex {
            return self.err("'=~' needs a /regex/ operand, and a /regex/ is only allowed with '=~'");
        }
        Ok(Expr::Cmp(left, op, right))
    }

    fn op(&mut self) -> Option<Op> {
        let word = self.rest().find(|c: char| !c.is_ascii_alphabetic()).unwrap_or(self.rest().len());
        let &(s, op) = OPS
            .iter()
            .find(|(s, _)| self.rest().starts_with(s) && (!s.starts_with(|c: char| c.is_ascii_alphabetic()) || s.len() == word))?;
        self.pos += s.len();
        Some(op)
    }

    fn operand(&mut self) -> PResult<Operand> {
        self.ws();
        match self.peek() {
            Some(c @ ('@' | '$')) => {
                self.pos += 1;
                Ok(Operand::Path(c == '$', self.query(true)?))
            }
            Some('/') => self.regex(),
            _ => Ok(Operand::Lit(self.literal()?)),
        }
    }

    /// `/pattern/flags`; like Java's `Matcher.matches()`, the whole input must match.
    fn regex(&mut self) -> PResult<Operand> {
        self.expect('/')?;
        let mut src = String::new();
        loop {
            match self.bump() {
                None => return self.err("unterminated /regex/"),
                Some('/') => break,
                Some('\\') if self.eat('/') => src.push('/'),
                Some(c) => src.push(c),
            }
        }
        let mut flags = String::new();
        while let Some(c) = self.peek().filter(char::is_ascii_alphabetic) {
            self.pos += 1;
            match c {
                'i' | 'm' | 's' | 'x' => flags.push(c),
                'u' | 'U' | 'd' => {} // Java-only flags without an equivalent here
                _ => return self.err(format!("unknown regex flag '{c}'")),
            }
        }
        // With `x`, a `#` comment in the pattern must not swallow the closing `)`.
        let nl = if flags.contains('x') { "\n" } else { "" };
        let flags = if flags.is_empty() { flags } else { format!("(?{flags})") };
        match regex::Regex::new(&format!("{flags}\\A(?:{src}{nl})\\z")) {
            Ok(re) => Ok(Operand::Regex(Re(re))),
            Err(e) => {
                let e = e.to_string(); // the last line of a syntax error names the problem
                let why = e.lines().last().unwrap_or_default().trim_start_matches("error: ");
                self.err(format!("invalid regex /{src}/ ({why})"))
            }
        }
    }

    /// Numbers, 'single' or "double" quoted strings, true, false, null and arrays of those.
    fn literal(&mut self) -> PResult<Value> {
        self.enter()?;
        self.ws();
        let start = self.pos;
        let v = match self.peek() {
            Some('\'' | '"') => Value::String(self.quoted()?),
            Some('[') => {
                self.pos += 1;
                let mut items = Vec::new();
                if !self.ws_eat(']') {
                    loop {
                        items.push(self.literal()?);
                        if self.ws_eat(']') {
                            break;
                        }
                        self.expect(',')?;
                    }
                }
                Value::Array(items)
            }
            _ => {
                while self.peek().is_some_and(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)) {
                    self.pos += 1;
                }
                match &self.src[start..self.pos] {
                    "true" => Value::Bool(true),
                    "false" => Value::Bool(false),
                    "null" => Value::Null,
                    t if t.starts_with(|c: char| c == '-' || c.is_ascii_digit()) => match serde_json::from_str::<Number>(t) {
                        Ok(n) => Value::Number(n),
                        Err(_) => return self.err(format!("invalid number '{t}'")),
                    },
                    _ => {
                        self.pos = start;
                        return self.err(format!("expected a value, {}", self.found()));
                    }
                }
            }
        };
        self.depth -= 1;
        Ok(v)
    }
}

// ---------------------------------------------------------------------------------------------
// Evaluation
// ---------------------------------------------------------------------------------------------

impl Query {
    fn eval<'a>(&self, node: &'a Value, root: &'a Value) -> Option<Cow<'a, Value>> {
        let mut out = Vec::new();
        walk(&self.segs, node, root, &mut out);
        let v = if self.definite {
            out.into_iter().next()
        } else {
            // Copies out of the document are charged by what they hold, before they are made:
            // overlapping matches (`$..*`) cannot copy more than the budget allows.
            if out.iter().any(|m| crate::asl::budget::charge_json(m).is_err()) {
                return None;
            }
            Some(Cow::Owned(Value::Array(out.into_iter().map(Cow::into_owned).collect())))
        };
        match self.func {
            None => v,
            Some(f) => apply(f, v?.as_ref()).map(Cow::Owned),
        }
    }
}

fn walk<'a>(segs: &[Seg], node: &'a Value, root: &'a Value, out: &mut Vec<Cow<'a, Value>>) {
    // Every node visited is charged to the evaluation budget; once it is spent the walk stops
    // (the engine then fails the execution with the budget's cause).
    if crate::asl::budget::charge(1).is_err() {
        return;
    }
    let Some((seg, rest)) = segs.split_first() else {
        out.push(Cow::Borrowed(node));
        return;
    };
    let mut next = |v: &'a Value| walk(rest, v, root, out);
    match (seg, node) {
        (Seg::Names(names), Value::Object(map)) if names.len() > 1 && rest.is_empty() => {
            // Jayway merges several properties of a leaf into one object.
            let merged = names.iter().filter_map(|n| Some((n.clone(), map.get(n)?.clone())));
            out.push(Cow::Owned(Value::Object(merged.collect())));
        }
        (Seg::Names(names), Value::Object(map)) => names.iter().filter_map(|n| map.get(n)).for_each(next),
        (Seg::Indexes(ix), Value::Array(arr)) => ix.iter().filter_map(|&i| arr.get(resolve(i, arr.len())?)).for_each(next),
        (Seg::Slice(start, end, step), Value::Array(arr)) => {
            let len = i64::try_from(arr.len()).unwrap_or(i64::MAX);
            let norm = |v: i64| if v < 0 { (len + v).max(0) } else { v.min(len) };
            let range = start.map_or(0, norm)..end.map_or(len, norm);
            let step = usize::try_from(*step).unwrap_or(usize::MAX);
            range.step_by(step).filter_map(|i| arr.get(usize::try_from(i).ok()?)).for_each(next)
        }
        (Seg::Wildcard, Value::Object(map)) => map.values().for_each(next),
        (Seg::Wildcard, Value::Array(arr)) => arr.iter().for_each(next),
        (Seg::Scan, _) => scan(rest, node, root, out),
        (Seg::Filter(e, _), Value::Object(_)) if e.test(node, root) => next(node),
        (Seg::Filter(e, _), Value::Array(arr)) => arr.iter().filter(|v| e.test(v, root)).for_each(next),
        _ => {}
    }
}

/// Recursive descent: applies `segs` to `node` and to every descendant, in pre-order.
fn scan<'a>(segs: &[Seg], node: &'a Value, root: &'a Value, out: &mut Vec<Cow<'a, Value>>) {
    if crate::asl::budget::charge(1).is_err() {
        return;
    }
    let skip = match segs.first() {
        // A filter tests objects only: array elements are visited on their own.
        Some(Seg::Filter(..)) => node.is_array(),
        // `..['a','b']` merges only objects that have one of the names.
        Some(Seg::Names(names)) => !names.iter().any(|n| node.get(n).is_some()),
        _ => false,
    };
    if !skip {
        walk(segs, node, root, out);
    }
    match node {
        Value::Object(map) => map.values().for_each(|v| scan(segs, v, root, out)),
        Value::Array(arr) => arr.iter().for_each(|v| scan(segs, v, root, out)),
        _ => {}
    }
}

/// Resolves a possibly negative index against an array length.
fn resolve(i: i64, len: usize) -> Option<usize> {
    let len = i64::try_from(len).ok()?;
    let i = if i < 0 { len.checked_add(i)? } else { i };
    if (0..len).contains(&i) { usize::try_from(i).ok() } else { None }
}

fn apply(f: &str, v: &Value) -> Option<Value> {
    match f {
        "length" | "size" => match v {
            Value::Array(a) => Some(a.len().into()),
            Value::Object(m) => Some(m.len().into()),
            Value::String(s) => Some(s.chars().count().into()),
            _ => None,
        },
        "keys" => Some(Value::Array(v.as_object()?.keys().cloned().map(Value::String).collect())),
        "first" => v.as_array()?.first().cloned(),
        "last" => v.as_array()?.last().cloned(),
        _ => {
            // Like Jayway: non-numbers are ignored, the result is a double.
            let xs: Vec<f64> = v.as_array()?.iter().filter_map(Value::as_f64).collect();
            let sum: f64 = xs.iter().sum();
            let (n, mean) = (xs.len() as f64, sum / xs.len() as f64);
            let r = match f {
                _ if xs.is_empty() => return None,
                "min" => xs.iter().copied().fold(f64::INFINITY, f64::min),
                "max" => xs.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                "sum" => sum,
                "avg" => mean,
                "stddev" => (xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n).sqrt(),
                _ => return None,
            };
            Number::from_f64(r).map(Value::Number)
        }
    }
}

impl Operand {
    fn eval<'a>(&'a self, cur: &'a Value, root: &'a Value) -> Option<Cow<'a, Value>> {
        match self {
            Operand::Path(from_root, q) => q.eval(if *from_root { root } else { cur }, root),
            Operand::Lit(v) => Some(Cow::Borrowed(v)),
            Operand::Regex(_) => None,
        }
    }
}

impl Expr {
    fn test(&self, cur: &Value, root: &Value) -> bool {
        match self {
            Expr::Or(a, b) => a.test(cur, root) || b.test(cur, root),
            Expr::And(a, b) => a.test(cur, root) && b.test(cur, root),
            Expr::Not(e) => !e.test(cur, root),
            Expr::Exists(from_root, q) => q
                .eval(if *from_root { root } else { cur }, root)
                .is_some_and(|v| q.definite || q.func.is_some() || v.as_array().is_some_and(|a| !a.is_empty())),
            Expr::Cmp(l, Op::Match, r) => {
                let ((Operand::Regex(Re(re)), other) | (other, Operand::Regex(Re(re)))) = (l, r) else {
                    return false;
                };
                // Like Jayway: strings, numbers and booleans match by their text, others as "".
                let input = match other.eval(cur, root).as_deref() {
                    Some(Value::String(s)) => s.clone(),
                    Some(v @ (Value::Number(_) | Value::Bool(_))) => v.to_string(),
                    _ => String::new(),
                };
                re.is_match(&input)
            }
            Expr::Cmp(l, op, r) => compare(l.eval(cur, root).as_deref(), *op, r.eval(cur, root).as_deref()),
        }
    }
}

/// Relational operators; `None` is a missing value (only `!=` and `nin` can be true for it).
fn compare(l: Option<&Value>, op: Op, r: Option<&Value>) -> bool {
    let contains = |arr: &[Value], x: &Value| arr.iter().any(|y| json_eq(x, y));
    let arrays = || Some((l?.as_array()?, r?.as_array()?));
    match op {
        Op::Eq => matches!((l, r), (Some(a), Some(b)) if json_eq(a, b)),
        Op::Ne => !compare(l, Op::Eq, r),
        Op::Lt | Op::Le | Op::Gt | Op::Ge => {
            let ord = match (l, r) {
                (Some(Value::Number(a)), Some(Value::Number(b))) => num_cmp(a, b),
                (Some(Value::String(a)), Some(Value::String(b))) => Some(a.cmp(b)),
                _ => None,
            };
            ord.is_some_and(|o| match op {
                Op::Lt => o.is_lt(),
                Op::Le => o.is_le(),
                Op::Gt => o.is_gt(),
                _ => o.is_ge(),
            })
        }
        Op::In => matches!((l, r), (Some(x), Some(Value::Array(arr))) if contains(arr, x)),
        Op::Nin => !compare(l, Op::In, r),
        Op::SubsetOf => arrays().is_some_and(|(a, b)| a.iter().all(|x| contains(b, x))),
        Op::AnyOf => arrays().is_some_and(|(a, b)| a.iter().any(|x| contains(b, x))),
        Op::NoneOf => arrays().is_some_and(|(a, b)| !a.iter().any(|x| contains(b, x))),
        Op::Size => {
            let len = match l {
                Some(Value::String(s)) => s.chars().count(),
                Some(Value::Array(a)) => a.len(),
                _ => return false,
            };
            r.and_then(Value::as_f64).is_some_and(|n| len as f64 == n.trunc())
        }
        Op::Empty => {
            let empty = match l {
                Some(Value::String(s)) => s.is_empty(),
                Some(Value::Array(a)) => a.is_empty(),
                Some(Value::Object(m)) => m.is_empty(),
                _ => return false,
            };
            r.and_then(Value::as_bool) == Some(empty)
        }
        Op::Match => false, // handled in `Expr::test`
    }
}

fn num_cmp(a: &Number, b: &Number) -> Option<Ordering> {
    match (a.as_i64(), b.as_i64(), a.as_u64(), b.as_u64()) {
        (Some(x), Some(y), ..) => Some(x.cmp(&y)),
        (.., Some(x), Some(y)) => Some(x.cmp(&y)),
        _ => a.as_f64()?.partial_cmp(&b.as_f64()?),
    }
}

/// Structural equality where numbers compare by value (`1 == 1.0`).
fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => num_cmp(x, y) == Some(Ordering::Equal),
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_eq(a, b)),
        (Value::Object(x), Value::Object(y)) => x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w))),
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn sel(path: &str, doc: &Value) -> Option<Value> {
        JsonPath::parse(path).unwrap_or_else(|e| panic!("{e}")).select(doc)
    }

    /// Asserts `(path, expected)` pairs; `Value::Null` as expected means "no result" (`None`).
    fn check(doc: &Value, cases: &[(&str, Value)]) {
        for (path, want) in cases {
            let want = if want.is_null() { None } else { Some(want.clone()) };
            assert_eq!(sel(path, doc), want, "{path}");
        }
    }

    fn parse_err(path: &str) -> String {
        JsonPath::parse(path).err().unwrap_or_else(|| panic!("'{path}' parsed")).to_string()
    }

    fn store() -> Value {
        json!({"store": {"book": [
            {"category": "reference", "author": "Nigel Rees", "title": "Sayings", "price": 8.95},
            {"category": "fiction", "author": "Evelyn Waugh", "title": "Sword", "price": 12.99,
             "tags": ["a", "b"]},
            {"category": "fiction", "author": "Herman Melville", "title": "Moby Dick",
             "isbn": "0-553-21311-3", "price": 8.99},
            {"category": "fiction", "author": "J. R. R. Tolkien", "title": "LOTR",
             "isbn": "0-395-19395-8", "price": 22.99}
        ], "bicycle": {"color": "red", "price": 19.95}}, "expensive": 10})
    }

    // Cases recorded against AWS Step Functions (shared/conformance/cases.jsonl).
    #[test]
    fn aws_recorded_cases() {
        let items: Vec<Value> = (0..=10).map(|i| json!({"item_key": i})).collect();
        check(&json!({ "items": items }), &[("$.items[0]", json!({"item_key": 0})), ("$.items[10]", json!({"item_key": 10}))]);
        let empty = [
            "$.item.items[*]",
            "$.item.items[1:5]",
            "$.item.items[1:5].itemValue",
            "$.item.items[1:]",
            "$.item.items[:1]",
            "$.items[*]",
            "$.items[1:].itemValue",
            "$.items[1:]",
            "$.items[:1].itemValue",
            "$.items[:1]",
            "$[*]",
        ];
        check(&json!({}), &empty.map(|p| (p, json!([]))));
        let users = json!({"users": [{"status": 0, "year": 1997}, {"status": 1, "year": 1998}]});
        check(&users, &[("$.users[?(@.status == 0)]", json!([{"status": 0, "year": 1997}]))]);
        // The key is `Test\""Name"`: AWS keeps a backslash that does not escape the quote.
        let doc = json!({"Test\\\"\"Name\"": "Value\"\\", "it's": 1});
        check(&doc, &[(r#"$['Test\""Name"']"#, json!("Value\"\\")), (r"$['it\'s']", json!(1))]);
        let doc = json!([[9, 44, 6], [82, 25, 76], [18, 42, 2]]);
        check(&doc, &[("$[0]", json!([9, 44, 6])), ("$[2]", json!([18, 42, 2]))]);
        let doc = json!({"delivery-partner": "UQS", "sub-values": [1], "int-literal": 0});
        check(&doc, &[("$.delivery-partner", json!("UQS")), ("$.sub-values", json!([1]))]);
        check(&doc, &[("$.NoSuchInputPath", Value::Null), ("$", doc.clone())]);
        let p = JsonPath::parse("$.NoSuchInputPath").unwrap();
        assert_eq!((p.canonical().as_str(), p.as_str()), ("$['NoSuchInputPath']", "$.NoSuchInputPath"));
        // ResultPath "$.detail.shipped_output" of a Map state.
        let mut doc = json!({"detail": {"delivery-partner": "UQS", "shipped": ["A"]}});
        set_path(&mut doc, &JsonPath::parse("$.detail.shipped_output").unwrap(), json!([1])).unwrap();
        assert_eq!(doc, json!({"detail": {"delivery-partner": "UQS", "shipped": ["A"], "shipped_output": [1]}}));
    }

    #[test]
    fn names_indexes_wildcards_slices() {
        let doc = json!({"a": [{"b": 1}, {"c": 2}, {"b": 3}, 7], "o": {"x": 1, "y": 2}, "é:k": 5,
                         "n": [0, 1, 2, 3, 4, 5], "m": {"a": 1, "b": {"c": 2}, "d": {"c": 3}}});
        check(
            &doc,
            &[
                ("$.a[*].b", json!([1, 3])), // elements without `b` are skipped
                ("$.a.*.b", json!([1, 3])),
                ("$.o.*", json!([1, 2])),
                ("$.o[*]", json!([1, 2])), // wildcard on an object gives its values
                ("$.a[-1]", json!(7)),
                ("$.a[4]", Value::Null),
                ("$.a[-5]", Value::Null),
                ("$.a[0,2,9].b", json!([1, 3])),
                ("$.a[ 0 , -1 ]", json!([{"b": 1}, 7])),
                ("$.é:k", json!(5)),
                ("$[\"o\"]['x']", json!(1)),
                ("$.o.['y']", json!(2)),
                ("$.o.x.y", Value::Null),
                ("$.a.b", Value::Null), // no implicit mapping over arrays
                ("$.o[0]", Value::Null),
                ("$.m['a','b','zz']", json!({"a": 1, "b": {"c": 2}})), // Jayway merges leaf names
                ("$.m['b', 'd'].c", json!([2, 3])),
                ("$.n[1:3]", json!([1, 2])),
                ("$.n[:2]", json!([0, 1])),
                ("$.n[4:]", json!([4, 5])),
                ("$.n[-2:]", json!([4, 5])),
                ("$.n[:-4]", json!([0, 1])),
                ("$.n[-3:-1]", json!([3, 4])),
                ("$.n[::2]", json!([0, 2, 4])),
                ("$.n[1:6:3]", json!([1, 4])),
                ("$.n[4:2]", json!([])),
                ("$.n[-100:100]", json!([0, 1, 2, 3, 4, 5])),
                ("$.o[1:]", json!([])),
            ],
        );
    }

    #[test]
    fn recursive_descent() {
        check(
            &store(),
            &[
                ("$..price", json!([8.95, 12.99, 8.99, 22.99, 19.95])),
                ("$..book[2].title", json!(["Moby Dick"])),
                ("$..book[-1:].title", json!(["LOTR"])),
                ("$..[?(@.price > 19)].price", json!([22.99, 19.95])), // each object tested once
                ("$..price.length()", json!(5)),
                ("$..['color','x']", json!([{"color": "red"}])),
            ],
        );
        let doc = json!({"a": {"b": 1}, "c": [2]});
        check(&doc, &[("$..*", json!([{"b": 1}, [2], 1, 2])), ("$..[0]", json!([2])), ("$..b", json!([1]))]);
    }

    #[test]
    fn filters() {
        let price = |f: &str| format!("$.store.book[?({f})].price");
        let cases = [
            ("@.price < 10", json!([8.95, 8.99])),
            ("@.isbn", json!([8.99, 22.99])),
            ("!@.isbn", json!([8.95, 12.99])),
            ("@.category == 'fiction' && @.price > 20 || !(@.isbn)", json!([8.95, 12.99, 22.99])),
            ("@.category == 'fiction' && (@.price > 20 || @.price < 9)", json!([8.99, 22.99])),
            ("@.price <= $.expensive", json!([8.95, 8.99])),
            ("@.author =~ /.*REES/i", json!([8.95])),
            ("@.author =~ /Rees/", json!([])), // the whole string must match
            ("@.author =~ /j\\. r\\. r\\..*/i", json!([22.99])),
            ("@.category in ['reference', \"x\"]", json!([8.95])),
            ("@.category nin ['fiction']", json!([8.95])),
            ("@.tags size 2", json!([12.99])),
            ("@.tags.length() > 1", json!([12.99])),
            ("@.tags anyof ['b', 'z']", json!([12.99])),
            ("@.tags subsetof ['a', 'b', 'c']", json!([12.99])),
            ("@.tags noneof ['z']", json!([12.99])),
            ("@.isbn != '0-553-21311-3'", json!([8.95, 12.99, 22.99])),
            ("@.price > 100", json!([])),
        ];
        let cases: Vec<_> = cases.into_iter().map(|(f, v)| (price(f), v)).collect();
        check(&store(), &cases.iter().map(|(p, v)| (p.as_str(), v.clone())).collect::<Vec<_>>());
        // A filter on an object tests the object itself (Jayway).
        check(
            &store(),
            &[
                ("$.store[?(@.bicycle)].bicycle.color", json!(["red"])),
                ("$.store.bicycle[?(@.color == 'red')].price", json!([19.95])),
                ("$.store.bicycle[?(@.color == 'blue')]", json!([])),
            ],
        );
    }

    #[test]
    fn filter_value_semantics() {
        let doc = json!({"a": [{"v": 1}, {"v": 1.0}, {"v": "1"}, {"v": null}, {"v": true},
                               {"v": [1, 2]}, {"v": {"k": 2}}, {"v": ""}, {}]});
        for (f, n) in [
            ("@.v == 1", 2), // numbers compare by value; no string coercion
            ("@.v === 1.0", 2),
            ("@.v == '1'", 1),
            ("@.v > 0", 2),
            ("@.v < 'a'", 2), // strings only compare with strings
            ("@.v == null", 1),
            ("@.v == true", 1),
            ("@.v == [1, 2.0]", 1),
            ("@.v", 8),      // existence, even for null
            ("@.v != 1", 7), // a missing value is "not equal"
            ("@.v empty true", 1),
            ("@.v empty false", 3),
            ("1 == @.v", 2),
            ("@.v =~ /1(\\.0)?/", 3), // numbers match by their text
            ("@.v in [1, 'x']", 2),
            ("@.v.k == 2", 1),
            ("@.v.length() == 2", 1),
        ] {
            let got = sel(&format!("$.a[?({f})]"), &doc).and_then(|v| v.as_array().map(Vec::len));
            assert_eq!(got, Some(n), "{f}");
        }
    }

    #[test]
    fn functions() {
        let doc = json!({"a": [3, 1, 2, "x"], "o": {"p": 1, "q": 2}, "s": "héllo", "e": [],
                         "v": [2, 4, 4, 4, 5, 5, 7, 9]});
        check(
            &doc,
            &[
                ("$.a.length()", json!(4)),
                ("$.o.length()", json!(2)),
                ("$.s.length()", json!(5)),
                ("$.a.size()", json!(4)),
                ("$.a.min()", json!(1.0)),
                ("$.a.max()", json!(3.0)),
                ("$.a.sum()", json!(6.0)),
                ("$.a.avg()", json!(2.0)),
                ("$.v.stddev()", json!(2.0)),
                ("$.e.avg()", Value::Null),
                ("$.o.keys()", json!(["p", "q"])),
                ("$.a.first()", json!(3)),
                ("$.a.last()", json!("x")),
                ("$.missing.length()", Value::Null),
                ("$.a[0].length()", Value::Null),
                ("$.o.*.length()", json!(2)),
            ],
        );
    }

    #[test]
    fn definiteness_and_canonical_form() {
        for (p, definite, canonical) in [
            ("$", true, "$"),
            (" $ ", true, "$"),
            ("$.a[0].b", true, "$['a'][0]['b']"),
            ("$.a[-1]", true, "$['a'][-1]"),
            ("$.a.length()", true, "$['a'].length()"),
            ("$['a','b']", true, "$['a','b']"),
            ("$['a','b'].c", false, "$['a','b']['c']"),
            ("$.a[*]..c", false, "$['a'][*]..['c']"),
            ("$.*", false, "$[*]"),
            ("$..*", false, "$..[*]"),
            ("$.a[0, 2]", false, "$['a'][0,2]"),
            ("$.a[1:]", false, "$['a'][1:]"),
            ("$.a[:2:3]", false, "$['a'][:2:3]"),
            ("$.a[ ?(@.b<1) ]", false, "$['a'][?(@.b<1)]"),
        ] {
            let path = JsonPath::parse(p).unwrap();
            assert_eq!((path.is_definite(), path.canonical().as_str()), (definite, canonical), "{p}");
        }
        assert!(JsonPath::parse(" $ ").unwrap().is_root());
    }

    #[test]
    fn parse_errors() {
        let bad = r#"
            a|$$|$a|$.|$..|$.a.|$[|$[]|$['a|$['a'|$[a]|$[1|$[-]|$[1,]|$[1:2:0]|$[1:2:-1]
            $[99999999999999999999]|$.a b|$.foo()|$.length(1)|$.length().a|$..length()
            $[?(@.a ==)]|$[?(@.a = 1)]|$[?(@.a =~ 'x')]|$[?(@.a == /x/)]|$[?(@.a =~ /(/)]
            $[?(@.a =~ /x/q)]|$[?(1)]|$[?(@.a == foo)]|$[?(@.a)|$[?@.a]|$[?(@.a == [1,)]
            $[?(@.a == {})]|$[?(@.a == 1e)]|$[?(@.a == 'x)]|$[?(@.a == 'x' | @.b)]"#;
        for p in bad.split(['|', '\n']).map(str::trim) {
            parse_err(p); // includes ""
        }
        let msg = parse_err("$.a[?(@.b ==)]");
        assert!(msg.contains("'$.a[?(@.b ==)]'") && msg.contains("position 12"), "{msg}");
        assert!(parse_err("$.a b").contains("bracket notation"));
        for deep in [
            format!("$[?({}@.a{})]", "(".repeat(5000), ")".repeat(5000)),
            format!("$[?(@.a == {}1{})]", "[".repeat(5000), "]".repeat(5000)),
            format!("$[?({}@.a)]", "!".repeat(5000)),
            format!("$[?(@{})]", "[?(@".repeat(5000)),
        ] {
            assert!(parse_err(&deep).contains("nested too deeply"));
        }
    }

    #[test]
    fn set_path_semantics() {
        let set = |doc: &mut Value, p: &str, v: Value| set_path(doc, &JsonPath::parse(p).unwrap(), v);
        let mut doc = json!({});
        set(&mut doc, "$.a.b.c", json!(1)).unwrap();
        assert_eq!(doc, json!({"a": {"b": {"c": 1}}}));
        set(&mut doc, "$.a.b.d", json!(2)).unwrap();
        set(&mut doc, "$.a.b.c", json!([0, 1])).unwrap();
        set(&mut doc, "$.a.b.c[-1]", json!("x")).unwrap();
        set(&mut doc, "$['a']['b']['c'][0]", json!({})).unwrap();
        set(&mut doc, "$.a.b.c[0].z", json!(true)).unwrap();
        assert_eq!(doc, json!({"a": {"b": {"c": [{"z": true}, "x"], "d": 2}}}));
        set(&mut doc, "$", json!("root")).unwrap();
        assert_eq!(doc, json!("root"));

        let mut doc = json!({"s": "str", "n": 1, "arr": [1], "nul": null});
        let before = doc.clone();
        for (p, needle) in [
            ("$.s.x", "$['s'] is a string, not an object, so ['x'] cannot be set"),
            ("$.n.x.y", "$['n'] is a number"),
            ("$.nul.x", "is null"),
            ("$.arr.x", "is an array, not an object"),
            ("$.arr[1]", "index [1] is out of bounds at $['arr'] (length 1)"),
            ("$.s[0]", "not an array"),
            ("$.new.deep[0]", "$['new']['deep'] does not exist, so index [0] cannot be set"),
            ("$.arr[*]", "only definite paths"),
            ("$..x", "only definite paths"),
            ("$['a','b']", "only definite paths"),
            ("$.arr.length()", "only definite paths"),
        ] {
            let msg = set(&mut doc, p, json!(0)).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(msg.contains(needle) && msg.contains(p), "{p}: {msg}");
        }
        assert_eq!(doc, before);
        assert!(set(&mut json!("x"), "$.a", json!(1)).is_err());
    }

    fn no_panic(s: &str) {
        if let Ok(p) = JsonPath::parse(s) {
            let doc = store();
            let _ = (p.select(&doc), p.canonical(), set_path(&mut doc.clone(), &p, json!(1)));
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]

        #[test]
        fn garbage_never_panics(s in "\\PC{0,40}") {
            no_panic(&s);
        }

        #[test]
        fn path_like_garbage_never_panics(
            s in "\\$[.\\[\\]()?@$'\"*:,0-9 a-e=<>!~&|/\\\\ilnstz-]{0,40}"
        ) {
            no_panic(&s);
        }

        #[test]
        fn canonical_form_reparses(names in proptest::collection::vec("[a-z0-9_-]{1,5}", 1..5), i in -3i64..5) {
            let p = JsonPath::parse(&format!("$.{}[{i}]", names.join("."))).unwrap();
            let q = JsonPath::parse(&p.canonical()).unwrap();
            prop_assert_eq!(&p.query, &q.query);
        }
    }
}
