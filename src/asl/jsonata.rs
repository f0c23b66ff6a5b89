//! JSONata support for the Amazon States Language (`QueryLanguage: "JSONata"`).
//!
//! A compact, self-contained JSONata 2.x evaluator over `serde_json` values: tokenizer, Pratt
//! parser (same binding powers and AST post-processing as the reference `jsonata-js`), and a
//! tree-walking evaluator with JSONata's sequence semantics (flattening of path results,
//! singleton unwrapping, `[]` keep-array), predicates, object/array constructors, lambdas,
//! closures, partial application, `~>` chaining, order-by, group-by and the standard function
//! library, plus the functions AWS Step Functions adds (`$partition`, `$range`, `$hash`,
//! `$random`, `$uuid`, `$parse`).
//!
//! Error codes and message templates follow `jsonata-js`, so `Display` renders e.g.
//! `T1006: Attempted to invoke a non-function`, which is what AWS puts into a
//! `States.QueryEvaluationError` cause.
//!
//! Safety: no input can make it panic. Parser nesting and evaluation depth are bounded, the
//! stack is grown on demand (`stacker`), and evaluation has a step budget.
//!
//! Not supported (they give an error, never a wrong answer): the transform operator `| ... |`,
//! the parent operator `%`, positional/context variable binding (`#$i`, `@$v`), and type
//! signatures on user lambdas (parsed, not enforced). `$toMillis` with a picture string is
//! rejected; `$formatNumber`/`$formatInteger`/`$fromMillis` pictures cover the common subset.
//! The root context `$`/`$$` is undefined: Step Functions data is reached through `$states`.
//!
//! Attribution: written from scratch (no code taken from the `jsonata-rs` crate). Evaluation
//! rules, function signatures and error message texts follow the JSONata reference
//! implementation `jsonata-js` (MIT licence, Copyright IBM Corp.). Test vectors come from the
//! AWS-recorded conformance corpus derived from LocalStack's test suite (Apache-2.0); each
//! vector keeps its `source` id.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use indexmap::IndexMap;
use serde_json::Value as Json;

// ---------------------------------------------------------------------------------------------
// Public API
// ---------------------------------------------------------------------------------------------

/// What a JSONata expression in a state can see.
pub struct Bindings<'a> {
    /// The `$states` object: `{input, context, result?, errorOutput?}`.
    pub states: &'a Json,
    /// Workflow variables (from `Assign`), visible as `$name`.
    pub variables: &'a serde_json::Map<String, Json>,
}

/// A JSONata failure. `Display` gives `CODE: message` as JSONata reports it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum JsonataError {
    /// The expression could not be parsed (codes `S0xxx`).
    #[error("{code}: {message}")]
    Syntax { code: &'static str, message: String, position: usize },
    /// Evaluation failed (codes `Txxxx`, `Dxxxx`, `Uxxxx`).
    #[error("{code}: {message}")]
    Evaluation { code: &'static str, message: String, position: usize },
    /// The expression evaluated to a function (or a value containing one). AWS reports this as
    /// "returned an unsupported result type".
    #[error("returned an unsupported result type")]
    UnsupportedResult,
}

impl JsonataError {
    /// The JSONata error code (`"T1006"`, ...), or `None` for [`JsonataError::UnsupportedResult`].
    pub fn code(&self) -> Option<&'static str> {
        match self {
            JsonataError::Syntax { code, .. } | JsonataError::Evaluation { code, .. } => Some(code),
            JsonataError::UnsupportedResult => None,
        }
    }

    /// True when the expression produced a function rather than JSON data.
    pub fn is_function_result(&self) -> bool {
        matches!(self, JsonataError::UnsupportedResult)
    }
}

/// Evaluate one JSONata expression (the text between `{%` and `%}`, already trimmed).
///
/// `Ok(None)` means the result is undefined (JSONata "nothing"). `random` supplies the
/// randomness for `$random()`, `$uuid()` and `$shuffle()`. `$now()`/`$millis()` use the
/// system clock; see [`evaluate_at`] to pin it.
pub fn evaluate(expr: &str, bindings: &Bindings, random: &mut dyn FnMut() -> u64) -> Result<Option<Json>, JsonataError> {
    let now = chrono::Utc::now().timestamp_millis();
    evaluate_at(expr, bindings, random, now)
}

/// Like [`evaluate`], with the time that `$now()` and `$millis()` report (Unix milliseconds).
pub fn evaluate_at(
    expr: &str,
    bindings: &Bindings,
    random: &mut dyn FnMut() -> u64,
    now_millis: i64,
) -> Result<Option<Json>, JsonataError> {
    run(expr, bindings, random, now_millis, MAX_STEPS)
}

fn run(
    expr: &str,
    bindings: &Bindings,
    random: &mut dyn FnMut() -> u64,
    now_millis: i64,
    max_steps: u64,
) -> Result<Option<Json>, JsonataError> {
    // Parsing, evaluation, conversion and the drop of deep intermediate values all happen on a
    // stack with at least 2 MiB to spare (a fresh segment is allocated when the caller's
    // thread has less); deeper recursion inside grows the stack again on demand.
    stacker::maybe_grow(2 * 1024 * 1024, 16 * 1024 * 1024, || run_inner(expr, bindings, random, now_millis, max_steps))
}

fn run_inner(
    expr: &str,
    bindings: &Bindings,
    random: &mut dyn FnMut() -> u64,
    now_millis: i64,
    max_steps: u64,
) -> Result<Option<Json>, JsonataError> {
    let ast = parse(expr).map_err(|f| f.into_error(true))?;
    // Every unit of work below, the conversion to JSON included, draws on this expression's
    // step budget and on any budget the caller has in force (the engine's per step).
    let (out, _) = crate::asl::budget::run(crate::asl::budget::Limits::steps(max_steps), || {
        let mut ev = Evaluator { bindings, root_cache: HashMap::new(), random, now_ms: now_millis, depth: 0, bound_frames: Vec::new() };
        let env = Frame::root();
        let result = ev.eval(&ast, None, &env);
        // Break any closure <-> frame reference cycles created by `:=`.
        for f in ev.bound_frames.drain(..) {
            f.vars.borrow_mut().clear();
        }
        let value = result.map_err(|f| f.into_error(false))?;
        match value {
            None => Ok(None),
            Some(v) => to_json(&v).map(Some),
        }
    });
    out
}

/// Parse an expression without evaluating it (for validating definitions up front).
pub fn check_syntax(expr: &str) -> Result<(), JsonataError> {
    parse(expr).map(|_| ()).map_err(|f| f.into_error(true))
}

// ---------------------------------------------------------------------------------------------
// Internal error representation (fields used by the message templates)
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct FailData {
    code: &'static str,
    pos: usize,
    token: Option<String>,
    value: Option<String>,
    value2: Option<String>,
    index: Option<usize>,
    typ: Option<&'static str>,
    message: Option<String>,
}

/// Boxed so that `Result<_, Fail>` stays small on the (deeply recursive) evaluation paths.
#[derive(Debug, Clone)]
struct Fail(Box<FailData>);

impl std::ops::Deref for Fail {
    type Target = FailData;
    fn deref(&self) -> &FailData {
        &self.0
    }
}

impl std::ops::DerefMut for Fail {
    fn deref_mut(&mut self) -> &mut FailData {
        &mut self.0
    }
}

type R<T> = Result<T, Fail>;

impl Fail {
    fn new(code: &'static str) -> Fail {
        Fail(Box::new(FailData { code, pos: 0, token: None, value: None, value2: None, index: None, typ: None, message: None }))
    }
    fn at(mut self, pos: usize) -> Fail {
        self.pos = pos;
        self
    }
    fn token(mut self, t: impl Into<String>) -> Fail {
        self.token = Some(t.into());
        self
    }
    /// Value rendered as `JSON.stringify` would.
    fn value(mut self, v: Option<&Val>) -> Fail {
        self.value = Some(json_stringify_opt(v));
        self
    }
    fn value2(mut self, v: Option<&Val>) -> Fail {
        self.value2 = Some(json_stringify_opt(v));
        self
    }
    fn raw_value(mut self, v: String) -> Fail {
        self.value = Some(v);
        self
    }
    fn index(mut self, i: usize) -> Fail {
        self.index = Some(i);
        self
    }
    fn msg(mut self, m: impl Into<String>) -> Fail {
        self.message = Some(m.into());
        self
    }

    fn template(&self) -> &'static str {
        match self.code {
            "S0101" => "String literal must be terminated by a matching quote",
            "S0102" => "Number out of range: {{token}}",
            "S0103" => "Unsupported escape sequence: \\{{{token}}}",
            "S0104" => "The escape sequence \\u must be followed by 4 hex digits",
            "S0105" => "Quoted property name must be terminated with a backquote (`)",
            "S0106" => "Comment has no closing tag",
            "S0201" => "Syntax error: {{token}}",
            "S0202" => "Expected {{value}}, got {{token}}",
            "S0203" => "Expected {{value}} before end of expression",
            "S0204" => "Unknown operator: {{token}}",
            "S0205" => "Unexpected token: {{token}}",
            "S0207" => "Unexpected end of expression",
            "S0208" => "Parameter {{value}} of function definition must be a variable name (start with $)",
            "S0209" => "A predicate cannot follow a grouping expression in a step",
            "S0210" => "Each step can only have one grouping expression",
            "S0211" => "The symbol {{token}} cannot be used as a unary operator",
            "S0212" => "The left side of := must be a variable name (start with $)",
            "S0213" => "The literal value {{value}} cannot be used as a step within a path expression",
            "S0301" => "Empty regular expressions are not allowed",
            "S0302" => "No terminating / in regular expression",
            "S0303" => "Invalid or unsupported regular expression: {{{message}}}",
            "S0999" => "{{{message}}}",
            "T0410" => "Argument {{index}} of function {{token}} does not match function signature",
            "T0411" => "Context value is not a compatible type with argument {{index}} of function {{token}}",
            "T0412" => "Argument {{index}} of function {{token}} must be an array of {{type}}",
            "D1001" => "Number out of range: {{value}}",
            "D1002" => "Cannot negate a non-numeric value: {{value}}",
            "T1003" => "Key in object structure must evaluate to a string; got: {{value}}",
            "D1004" => "Regular expression matches zero length string",
            "T1005" => "Attempted to invoke a non-function. Did you mean ${{{token}}}?",
            "T1006" => "Attempted to invoke a non-function",
            "T1007" => "Attempted to partially apply a non-function. Did you mean ${{{token}}}?",
            "T1008" => "Attempted to partially apply a non-function",
            "D1009" => "Multiple key definitions evaluate to same key: {{value}}",
            "T1010" => "The matcher function argument passed to function {{token}} does not return the correct object structure",
            "T2001" => "The left side of the {{token}} operator must evaluate to a number",
            "T2002" => "The right side of the {{token}} operator must evaluate to a number",
            "T2003" => "The left side of the range operator (..) must evaluate to an integer",
            "T2004" => "The right side of the range operator (..) must evaluate to an integer",
            "T2006" => "The right side of the function application operator ~> must be a function",
            "T2007" => "Type mismatch when comparing values {{value}} and {{value2}} in order-by clause",
            "T2008" => "The expressions within an order-by clause must evaluate to numeric or string values",
            "T2009" => "The values {{value}} and {{value2}} either side of operator {{token}} must be of the same data type",
            "T2010" => "The expressions either side of operator {{token}} must evaluate to numeric or string values",
            "D2014" => {
                "The size of the sequence allocated by the range operator (..) must not exceed 1e7.  Attempted to allocate {{value}}."
            }
            "D3001" => "Attempting to invoke string function on Infinity or NaN",
            "D3010" => "Second argument of replace function cannot be an empty string",
            "D3011" => "Fourth argument of replace function must evaluate to a positive number",
            "D3012" => "Attempted to replace a matched string with a non-string value",
            "D3020" => "Third argument of split function must evaluate to a positive number",
            "D3030" => "Unable to cast value to a number: {{value}}",
            "D3040" => "Third argument of match function must evaluate to a positive number",
            "D3050" => "The second argument of reduce function must be a function with at least two arguments",
            "D3060" => "The sqrt function cannot be applied to a negative number: {{value}}",
            "D3061" => {
                "The power function has resulted in a value that cannot be represented as a JSON number: base={{value}}, exponent={{value2}}"
            }
            "D3070" => {
                "The single argument form of the sort function can only be applied to an array of strings or an array of numbers.  Use the second argument to specify a comparison function"
            }
            "D3080" => "The picture string must only contain a maximum of two sub-pictures",
            "D3100" => "The radix of the formatBase function must be between 2 and 36.  It was given {{value}}",
            "D3110" => "Unable to parse timestamp: {{value}}",
            "D3120" => "Syntax error in expression passed to function eval: {{value}}",
            "D3121" => "Dynamic error evaluating the expression passed to function eval: {{value}}",
            "D3137" => "{{{message}}}",
            "D3138" => "The $single() function expected exactly 1 matching result.  Instead it matched more.",
            "D3139" => "The $single() function expected exactly 1 matching result.  Instead it matched 0.",
            "D3140" => "Malformed URL passed to ${{{token}}}(): {{value}}",
            "D3141" => "{{{message}}}",
            "D3200" => "{{{message}}}",
            "U1001" => "Stack overflow error: Check for non-terminating recursive function.  Consider rewriting as tail-recursive.",
            "U1002" => "Expression evaluation exceeded the maximum number of steps",
            "U1003" => "{{{message}}}",
            _ => "{{{message}}}",
        }
    }

    fn render(&self) -> String {
        let q = |s: &Option<String>| match s {
            Some(t) => quote_json_string(t),
            None => "undefined".to_string(),
        };
        let raw = |s: &Option<String>| s.clone().unwrap_or_else(|| "undefined".to_string());
        let mut out = String::new();
        let t = self.template();
        let mut rest = t;
        while let Some(i) = rest.find("{{") {
            out.push_str(&rest[..i]);
            let triple = rest[i..].starts_with("{{{");
            let start = i + if triple { 3 } else { 2 };
            let close = if triple { "}}}" } else { "}}" };
            let Some(len) = rest[start..].find(close) else {
                out.push_str(&rest[i..]);
                rest = "";
                break;
            };
            let field = &rest[start..start + len];
            let text = match (field, triple) {
                ("token", true) => raw(&self.token),
                ("token", false) => q(&self.token),
                ("value", _) => raw(&self.value),
                ("value2", _) => raw(&self.value2),
                ("message", _) => raw(&self.message),
                ("index", _) => self.index.map(|i| i.to_string()).unwrap_or_else(|| "undefined".into()),
                ("type", _) => self.typ.map(quote_json_string).unwrap_or_default(),
                _ => String::new(),
            };
            out.push_str(&text);
            rest = &rest[start + len + close.len()..];
        }
        out.push_str(rest);
        out
    }

    fn into_error(self, syntax: bool) -> JsonataError {
        let message = self.render();
        if syntax || self.code.starts_with('S') {
            JsonataError::Syntax { code: self.code, message, position: self.pos }
        } else {
            JsonataError::Evaluation { code: self.code, message, position: self.pos }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Values
// ---------------------------------------------------------------------------------------------

type Obj = IndexMap<String, Val>;

#[derive(Clone, Debug)]
enum Val {
    Null,
    Bool(bool),
    Num(f64),
    Str(Rc<str>),
    Arr(Rc<Arr>),
    Obj(Rc<ObjVal>),
    Func(Rc<Func>),
}

/// What a value is once expanded: values share structure (`[$a, $a]` holds `$a` twice without
/// copying it), so the tree a walk over it visits can be exponentially larger than the memory
/// it takes. Each array and object works this out once, from its children's, and keeps it.
#[derive(Clone, Copy, Debug)]
struct Meta {
    /// The expanded value's size, estimated as its JSON text length.
    size: u64,
    /// A function somewhere inside.
    func: bool,
}

/// An array plus the JSONata bookkeeping flags: `seq` (a result sequence, flattened and
/// unwrapped when singleton), `cons` (built by an array constructor inside a path, not
/// flattened), `keep` (singleton kept as an array, from `[]`).
#[derive(Debug, Default)]
struct Arr {
    items: Vec<Val>,
    seq: bool,
    cons: bool,
    keep: bool,
    meta: std::cell::OnceCell<Meta>,
}

impl Clone for Arr {
    /// A copy works its size out afresh, so items changed after the copy are counted.
    fn clone(&self) -> Arr {
        Arr { items: self.items.clone(), seq: self.seq, cons: self.cons, keep: self.keep, meta: std::cell::OnceCell::new() }
    }
}

/// An object's members and what it is once expanded ([`Meta`]).
#[derive(Debug, Default)]
struct ObjVal {
    map: Obj,
    meta: std::cell::OnceCell<Meta>,
}

impl std::ops::Deref for ObjVal {
    type Target = Obj;
    fn deref(&self) -> &Obj {
        &self.map
    }
}

/// The expanded size and function content of `v` (cached per array and object).
fn meta(v: &Val) -> Meta {
    let leaf = |size: usize| Meta { size: size as u64, func: false };
    match v {
        Val::Null => leaf(4),
        Val::Bool(_) => leaf(5),
        Val::Num(_) => leaf(2),
        Val::Str(s) => leaf(s.len().saturating_add(2)),
        Val::Func(_) => Meta { size: 1, func: true },
        Val::Arr(a) => *a.meta.get_or_init(|| {
            grow(|| {
                a.items.iter().fold(Meta { size: 2u64.saturating_add(a.items.len() as u64), func: false }, |m, x| {
                    let c = meta(x);
                    Meta { size: m.size.saturating_add(c.size), func: m.func || c.func }
                })
            })
        }),
        Val::Obj(o) => *o.meta.get_or_init(|| {
            grow(|| {
                o.map.iter().fold(Meta { size: 2, func: false }, |m, (k, x)| {
                    let c = meta(x);
                    Meta { size: m.size.saturating_add(k.len() as u64 + 4).saturating_add(c.size), func: m.func || c.func }
                })
            })
        }),
    }
}

/// The expanded size of `v`: what a walk over all of it visits, and about its JSON length.
fn logical_size(v: &Val) -> u64 {
    meta(v).size
}

/// Charge `units` of work to the evaluation budget ([`crate::asl::budget`]).
fn spend(units: u64) -> R<()> {
    crate::asl::budget::charge(units).map_err(|_| Fail::new("U1002"))
}

enum Func {
    Native(&'static str),
    Lambda { def: Rc<LambdaDef>, env: Env, input: Option<Val> },
    Partial { func: Val, args: Vec<Option<Option<Val>>> },
    Compose(Val, Val),
    Regex(Rc<regex::Regex>),
}

impl std::fmt::Debug for Func {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Func::Native(n) => write!(f, "<native ${n}>"),
            Func::Lambda { def, .. } => write!(f, "<lambda/{}>", def.params.len()),
            Func::Partial { .. } => write!(f, "<partial>"),
            Func::Compose(..) => write!(f, "<composition>"),
            Func::Regex(r) => write!(f, "<regex {}>", r.as_str()),
        }
    }
}

impl Val {
    fn str(s: &str) -> Val {
        Val::Str(Rc::from(s))
    }
    fn string(s: String) -> Val {
        Val::Str(Rc::from(s))
    }
    fn array(items: Vec<Val>) -> Val {
        Val::Arr(Rc::new(Arr { items, ..Arr::default() }))
    }
    fn seq(items: Vec<Val>) -> Val {
        Val::Arr(Rc::new(Arr { items, seq: true, ..Arr::default() }))
    }
    fn object(o: Obj) -> Val {
        Val::Obj(Rc::new(ObjVal { map: o, meta: std::cell::OnceCell::new() }))
    }
}

fn from_json(v: &Json) -> Val {
    grow(|| from_json_inner(v))
}

fn from_json_inner(v: &Json) -> Val {
    match v {
        Json::Null => Val::Null,
        Json::Bool(b) => Val::Bool(*b),
        Json::Number(n) => Val::Num(n.as_f64().unwrap_or(0.0)),
        Json::String(s) => Val::str(s),
        Json::Array(a) => Val::array(a.iter().map(from_json).collect()),
        Json::Object(o) => Val::object(o.iter().map(|(k, v)| (k.clone(), from_json(v))).collect()),
    }
}

fn num_to_json(n: f64) -> R<Json> {
    if !n.is_finite() {
        return Err(Fail::new("D1001").raw_value(js_number_to_string(n)));
    }
    if n.fract() == 0.0 && n.abs() < 9.007_199_254_740_992e15 {
        return Ok(Json::from(n as i64));
    }
    Ok(serde_json::Number::from_f64(n).map(Json::Number).unwrap_or(Json::Null))
}

fn to_json(v: &Val) -> Result<Json, JsonataError> {
    // Values share structure (`[[$a], [$a]]` nests without copying), so the JSON tree can be
    // exponentially larger than the value. `size` estimates its JSON text length; conversion
    // stops with U1003 past the string limit.
    fn go(v: &Val, size: &mut usize) -> Result<Json, JsonataError> {
        grow(|| go_inner(v, size))
    }
    fn add(size: &mut usize, n: usize) -> Result<(), JsonataError> {
        spend(1).map_err(|f| f.into_error(false))?;
        *size = size.saturating_add(n);
        check_str_len(*size, "the expression").map_err(|f| f.into_error(false))
    }
    fn go_inner(v: &Val, size: &mut usize) -> Result<Json, JsonataError> {
        Ok(match v {
            Val::Null => {
                add(size, 4)?;
                Json::Null
            }
            Val::Bool(b) => {
                add(size, 5)?;
                Json::Bool(*b)
            }
            Val::Num(n) => {
                add(size, 2)?;
                num_to_json(*n).map_err(|f| f.into_error(false))?
            }
            Val::Str(s) => {
                add(size, s.len() + 2)?;
                Json::String(s.to_string())
            }
            Val::Arr(a) => {
                add(size, 2 + a.items.len())?;
                Json::Array(a.items.iter().map(|x| go(x, size)).collect::<Result<_, _>>()?)
            }
            Val::Obj(o) => {
                add(size, 2)?;
                let mut m = serde_json::Map::new();
                for (k, v) in o.iter() {
                    add(size, k.len() + 4)?;
                    m.insert(k.clone(), go(v, size)?);
                }
                Json::Object(m)
            }
            Val::Func(_) => return Err(JsonataError::UnsupportedResult),
        })
    }
    go(v, &mut 0)
}

// ---------------------------------------------------------------------------------------------
// Tokenizer
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Op(&'static str),
    Name(String),
    Var(String),
    Str(String),
    Num(f64),
    Regex(String, String),
    Bool(bool),
    Null,
    End,
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    pos: usize,
}

impl Tok {
    /// The token's value as JSONata puts it in error messages.
    fn text(&self) -> String {
        match self {
            Tok::Op(o) => (*o).to_string(),
            Tok::Name(n) | Tok::Var(n) | Tok::Str(n) => n.clone(),
            Tok::Num(n) => js_number_to_string(*n),
            Tok::Regex(p, _) => p.clone(),
            Tok::Bool(b) => b.to_string(),
            Tok::Null => "null".into(),
            Tok::End => "(end)".into(),
        }
    }
}

const OPS2: [&str; 9] = ["..", ":=", "!=", ">=", "<=", "**", "~>", "?:", "??"];
const OPS1: [&str; 26] =
    [".", "[", "]", "{", "}", "(", ")", ",", "@", "#", ";", ":", "?", "+", "-", "*", "/", "%", "|", "=", "<", ">", "^", "&", "!", "~"];

fn is_op_char(c: char) -> bool {
    matches!(
        c,
        '.' | '['
            | ']'
            | '{'
            | '}'
            | '('
            | ')'
            | ','
            | '@'
            | '#'
            | ';'
            | ':'
            | '?'
            | '+'
            | '-'
            | '*'
            | '/'
            | '%'
            | '|'
            | '='
            | '<'
            | '>'
            | '^'
            | '&'
            | '!'
            | '~'
    )
}

fn is_ws(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r' | '\u{b}')
}

fn tokenize(src: &str) -> R<Vec<Token>> {
    let chars: Vec<char> = src.chars().collect();
    let n = chars.len();
    let mut i = 0;
    let mut out: Vec<Token> = Vec::new();
    while i < n {
        let c = chars[i];
        if is_ws(c) {
            i += 1;
            continue;
        }
        let pos = i;
        // comments
        if c == '/' && chars.get(i + 1) == Some(&'*') {
            let mut j = i + 2;
            loop {
                if j + 1 >= n {
                    return Err(Fail::new("S0106").at(pos));
                }
                if chars[j] == '*' && chars[j + 1] == '/' {
                    break;
                }
                j += 1;
            }
            i = j + 2;
            continue;
        }
        // regex literal, when an operand is expected
        if c == '/' && regex_allowed(out.last()) {
            let start = i + 1;
            let mut j = start;
            let mut depth: i32 = 0;
            let mut found = None;
            while j < n {
                let ch = chars[j];
                if ch == '/' && depth == 0 {
                    let mut bs = 0;
                    while j > bs && chars[j - 1 - bs] == '\\' {
                        bs += 1;
                    }
                    if bs % 2 == 0 {
                        found = Some(j);
                        break;
                    }
                }
                let escaped = j > 0 && chars[j - 1] == '\\';
                if matches!(ch, '(' | '[' | '{') && !escaped {
                    depth += 1;
                }
                if matches!(ch, ')' | ']' | '}') && !escaped {
                    depth -= 1;
                }
                j += 1;
            }
            let Some(end) = found else {
                return Err(Fail::new("S0302").at(pos));
            };
            let pattern: String = chars[start..end].iter().collect();
            if pattern.is_empty() {
                return Err(Fail::new("S0301").at(pos));
            }
            let mut k = end + 1;
            let mut flags = String::new();
            while k < n && (chars[k] == 'i' || chars[k] == 'm') {
                flags.push(chars[k]);
                k += 1;
            }
            out.push(Token { tok: Tok::Regex(pattern, flags), pos });
            i = k;
            continue;
        }
        // operators
        if i + 1 < n {
            let two: String = chars[i..i + 2].iter().collect();
            if let Some(op) = OPS2.iter().find(|o| **o == two) {
                out.push(Token { tok: Tok::Op(op), pos });
                i += 2;
                continue;
            }
        }
        if let Some(op) = OPS1.iter().find(|o| o.starts_with(c)) {
            out.push(Token { tok: Tok::Op(op), pos });
            i += 1;
            continue;
        }
        // strings
        if c == '"' || c == '\'' {
            let (s, next) = lex_string(&chars, i)?;
            out.push(Token { tok: Tok::Str(s), pos });
            i = next;
            continue;
        }
        // numbers
        if c.is_ascii_digit() {
            let mut j = i;
            if chars[j] == '0' {
                j += 1;
            } else {
                while j < n && chars[j].is_ascii_digit() {
                    j += 1;
                }
            }
            if j + 1 < n && chars[j] == '.' && chars[j + 1].is_ascii_digit() {
                j += 1;
                while j < n && chars[j].is_ascii_digit() {
                    j += 1;
                }
            }
            if j < n && (chars[j] == 'e' || chars[j] == 'E') {
                let mut k = j + 1;
                if k < n && (chars[k] == '+' || chars[k] == '-') {
                    k += 1;
                }
                if k < n && chars[k].is_ascii_digit() {
                    while k < n && chars[k].is_ascii_digit() {
                        k += 1;
                    }
                    j = k;
                }
            }
            let text: String = chars[i..j].iter().collect();
            let v: f64 = text.parse().unwrap_or(f64::INFINITY);
            if !v.is_finite() {
                return Err(Fail::new("S0102").at(pos).token(text));
            }
            out.push(Token { tok: Tok::Num(v), pos });
            i = j;
            continue;
        }
        // quoted names
        if c == '`' {
            let Some(len) = chars[i + 1..].iter().position(|&ch| ch == '`') else {
                return Err(Fail::new("S0105").at(pos));
            };
            let name: String = chars[i + 1..i + 1 + len].iter().collect();
            out.push(Token { tok: Tok::Name(name), pos });
            i += len + 2;
            continue;
        }
        // names and variables
        let mut j = i;
        while j < n && !is_ws(chars[j]) && !is_op_char(chars[j]) {
            j += 1;
        }
        if c == '$' {
            let name: String = chars[i + 1..j].iter().collect();
            out.push(Token { tok: Tok::Var(name), pos });
        } else {
            let name: String = chars[i..j].iter().collect();
            let tok = match name.as_str() {
                "and" => Tok::Op("and"),
                "or" => Tok::Op("or"),
                "in" => Tok::Op("in"),
                "true" => Tok::Bool(true),
                "false" => Tok::Bool(false),
                "null" => Tok::Null,
                _ => Tok::Name(name),
            };
            out.push(Token { tok, pos });
        }
        i = j.max(i + 1);
    }
    out.push(Token { tok: Tok::End, pos: n });
    Ok(out)
}

fn regex_allowed(prev: Option<&Token>) -> bool {
    match prev.map(|t| &t.tok) {
        None => true,
        Some(Tok::Op(op)) => !matches!(*op, ")" | "]" | "}" | "*" | "**" | "%"),
        Some(_) => false,
    }
}

fn lex_string(chars: &[char], start: usize) -> R<(String, usize)> {
    let quote = chars[start];
    let mut s = String::new();
    let mut i = start + 1;
    let n = chars.len();
    while i < n {
        let c = chars[i];
        if c == '\\' {
            i += 1;
            let Some(&e) = chars.get(i) else {
                break;
            };
            match e {
                '"' | '\\' | '/' | '\'' => s.push(e),
                'b' => s.push('\u{8}'),
                'f' => s.push('\u{c}'),
                'n' => s.push('\n'),
                'r' => s.push('\r'),
                't' => s.push('\t'),
                'u' => {
                    let hex = |at: usize| -> Option<u32> {
                        if at + 4 > n {
                            return None;
                        }
                        let h: String = chars[at..at + 4].iter().collect();
                        if h.chars().all(|c| c.is_ascii_hexdigit()) { u32::from_str_radix(&h, 16).ok() } else { None }
                    };
                    let Some(cp) = hex(i + 1) else {
                        return Err(Fail::new("S0104").at(i));
                    };
                    i += 4;
                    if (0xD800..0xDC00).contains(&cp)
                        && chars.get(i + 1) == Some(&'\\')
                        && chars.get(i + 2) == Some(&'u')
                        && let Some(lo) = hex(i + 3).filter(|lo| (0xDC00..0xE000).contains(lo))
                    {
                        let full = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                        s.push(char::from_u32(full).unwrap_or('\u{FFFD}'));
                        i += 6;
                        i += 1;
                        continue;
                    }
                    s.push(char::from_u32(cp).unwrap_or('\u{FFFD}'));
                }
                other => {
                    return Err(Fail::new("S0103").at(i).token(other.to_string()));
                }
            }
            i += 1;
            continue;
        }
        if c == quote {
            return Ok((s, i + 1));
        }
        s.push(c);
        i += 1;
    }
    Err(Fail::new("S0101").at(start))
}

// ---------------------------------------------------------------------------------------------
// AST
// ---------------------------------------------------------------------------------------------

const MAX_PARSE_DEPTH: usize = 500;
const MAX_EVAL_DEPTH: usize = 5000;
const MAX_STEPS: u64 = 10_000_000;
const MAX_RANGE: f64 = 1e7;
/// Largest string (in UTF-8 bytes) that a function, operator or conversion may produce.
const MAX_STRING_LEN: usize = 10_000_000;
/// Largest array (in items) that a function or constructor may produce.
const MAX_ARRAY_LEN: usize = 10_000_000;

/// `U1003`: a single function or operator would build a value beyond the size limits (the step
/// budget counts work, not the size of one result, so this bounds memory).
fn too_large(what: &str, len: usize, limit: usize, unit: &str) -> Fail {
    Fail::new("U1003").msg(format!("The result of {what} would exceed the size limit ({len} > {limit} {unit})"))
}

/// Fail with `U1003` when a string of `len` bytes would be over [`MAX_STRING_LEN`].
fn check_str_len(len: usize, what: &str) -> R<()> {
    if len > MAX_STRING_LEN {
        return Err(too_large(what, len, MAX_STRING_LEN, "bytes"));
    }
    Ok(())
}

/// Fail with `U1003` when an array of `len` items would be over [`MAX_ARRAY_LEN`].
fn check_arr_len(len: usize, what: &str) -> R<()> {
    if len > MAX_ARRAY_LEN {
        return Err(too_large(what, len, MAX_ARRAY_LEN, "items"));
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Concat,
    And,
    Or,
    In,
}

impl BinOp {
    fn symbol(self) -> &'static str {
        match self {
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::Mod => "%",
            BinOp::Eq => "=",
            BinOp::Ne => "!=",
            BinOp::Lt => "<",
            BinOp::Le => "<=",
            BinOp::Gt => ">",
            BinOp::Ge => ">=",
            BinOp::Concat => "&",
            BinOp::And => "and",
            BinOp::Or => "or",
            BinOp::In => "in",
        }
    }
}

#[derive(Debug)]
struct LambdaDef {
    params: Vec<String>,
    body: Node,
}

#[derive(Debug)]
enum Kind {
    Str(Rc<str>),
    Num(f64),
    Bool(bool),
    Null,
    Name(String),
    Var(String),
    Regex(Rc<regex::Regex>),
    Wildcard,
    Descendant,
    Parent,
    Neg(Box<Node>),
    Array(Vec<Node>),
    Range(Box<Node>, Box<Node>),
    Object(Vec<(Node, Node)>),
    Block(Vec<Node>),
    Binary(BinOp, Box<Node>, Box<Node>),
    Cond(Box<Node>, Box<Node>, Option<Box<Node>>),
    Elvis(Box<Node>, Box<Node>),
    Coalesce(Box<Node>, Box<Node>),
    Bind(String, Box<Node>),
    Call(Box<Node>, Vec<Node>),
    Partial(Box<Node>, Vec<Node>),
    Placeholder,
    Lambda(Rc<LambdaDef>),
    Apply(Box<Node>, Box<Node>),
    Path(Vec<Node>),
    Sort(Vec<(Node, bool)>),
    Transform,
    // raw-only forms, removed by `process`
    Dot(Box<Node>, Box<Node>),
    Filter(Box<Node>, Box<Node>),
    GroupBy(Box<Node>, Vec<(Node, Node)>),
    OrderBy(Box<Node>, Vec<(Node, bool)>),
}

#[derive(Debug)]
struct Node {
    kind: Kind,
    pos: usize,
    keep_array: bool,
    cons_array: bool,
    keep_singleton: bool,
    predicates: Vec<Node>,
    stages: Vec<Node>,
    group: Option<Vec<(Node, Node)>>,
}

impl Node {
    fn new(kind: Kind, pos: usize) -> Node {
        Node {
            kind,
            pos,
            keep_array: false,
            cons_array: false,
            keep_singleton: false,
            predicates: Vec::new(),
            stages: Vec::new(),
            group: None,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Parser (Pratt / top-down operator precedence, as jsonata-js)
// ---------------------------------------------------------------------------------------------

struct Parser {
    toks: Vec<Token>,
    i: usize,
    depth: usize,
}

fn lbp(t: &Tok) -> u32 {
    match t {
        Tok::Op(op) => match *op {
            "." => 75,
            "[" | "(" | "@" | "#" => 80,
            "{" => 70,
            "?" => 20,
            "+" | "-" | "&" => 50,
            "*" | "/" | "%" => 60,
            "=" | "<" | ">" | "!=" | "<=" | ">=" | "^" | "~>" | "?:" | "??" | "in" => 40,
            ":=" => 10,
            "and" => 30,
            "or" => 25,
            _ => 0,
        },
        _ => 0,
    }
}

fn parse(src: &str) -> R<Node> {
    let toks = tokenize(src)?;
    let mut p = Parser { toks, i: 0, depth: 0 };
    let raw = p.expression(0)?;
    if p.cur().tok != Tok::End {
        let t = p.cur();
        return Err(Fail::new("S0201").at(t.pos).token(t.tok.text()));
    }
    process(raw, 0)
}

impl Parser {
    fn cur(&self) -> &Token {
        // the token list always ends with End, and `i` never moves past it
        &self.toks[self.i.min(self.toks.len() - 1)]
    }
    fn is(&self, op: &str) -> bool {
        matches!(&self.cur().tok, Tok::Op(o) if *o == op)
    }
    fn take(&mut self) -> Token {
        let t = self.cur().clone();
        if self.i < self.toks.len() - 1 {
            self.i += 1;
        }
        t
    }
    fn expect(&mut self, op: &'static str) -> R<()> {
        if self.is(op) {
            self.take();
            return Ok(());
        }
        let t = self.cur();
        if t.tok == Tok::End {
            Err(Fail::new("S0203").at(t.pos).raw_value(quote_json_string(op)))
        } else {
            Err(Fail::new("S0202").at(t.pos).raw_value(quote_json_string(op)).token(t.tok.text()))
        }
    }

    fn expression(&mut self, rbp: u32) -> R<Node> {
        self.depth += 1;
        if self.depth > MAX_PARSE_DEPTH {
            return Err(Fail::new("S0999").at(self.cur().pos).msg("Expression is nested too deeply"));
        }
        let r = stacker::maybe_grow(64 * 1024, 1024 * 1024, || {
            let t = self.take();
            let mut left = self.nud(t)?;
            while rbp < lbp(&self.cur().tok) {
                let t = self.take();
                left = self.led(t, left)?;
            }
            Ok(left)
        });
        self.depth -= 1;
        r
    }

    fn nud(&mut self, t: Token) -> R<Node> {
        let pos = t.pos;
        let kind = match t.tok {
            Tok::Num(n) => Kind::Num(n),
            Tok::Str(s) => Kind::Str(Rc::from(s)),
            Tok::Bool(b) => Kind::Bool(b),
            Tok::Null => Kind::Null,
            Tok::Name(n) => Kind::Name(n),
            Tok::Var(v) => Kind::Var(v),
            Tok::Regex(p, f) => Kind::Regex(Rc::new(compile_regex(&p, &f).map_err(|e| e.at(pos))?)),
            Tok::Op(op) => match op {
                "and" | "or" | "in" => Kind::Name(op.to_string()),
                "-" => Kind::Neg(Box::new(self.expression(70)?)),
                "*" => Kind::Wildcard,
                "**" => Kind::Descendant,
                "%" => Kind::Parent,
                "(" => {
                    let mut exprs = Vec::new();
                    while !self.is(")") {
                        exprs.push(self.expression(0)?);
                        if !self.is(";") {
                            break;
                        }
                        self.take();
                    }
                    self.expect(")")?;
                    Kind::Block(exprs)
                }
                "[" => {
                    let mut items = Vec::new();
                    if !self.is("]") {
                        loop {
                            let mut item = self.expression(0)?;
                            if self.is("..") {
                                let rpos = self.take().pos;
                                let rhs = self.expression(0)?;
                                item = Node::new(Kind::Range(Box::new(item), Box::new(rhs)), rpos);
                            }
                            items.push(item);
                            if !self.is(",") {
                                break;
                            }
                            self.take();
                        }
                    }
                    self.expect("]")?;
                    Kind::Array(items)
                }
                "{" => Kind::Object(self.object_pairs()?),
                "|" => {
                    // transform: | pattern | update [, delete] |  -- parsed, not supported
                    self.expression(0)?;
                    self.expect("|")?;
                    self.expression(0)?;
                    if self.is(",") {
                        self.take();
                        self.expression(0)?;
                    }
                    self.expect("|")?;
                    Kind::Transform
                }
                _ => return Err(Fail::new("S0211").at(pos).token(op)),
            },
            Tok::End => return Err(Fail::new("S0207").at(pos).token("(end)")),
        };
        Ok(Node::new(kind, pos))
    }

    fn object_pairs(&mut self) -> R<Vec<(Node, Node)>> {
        let mut pairs = Vec::new();
        if !self.is("}") {
            loop {
                let k = self.expression(0)?;
                self.expect(":")?;
                let v = self.expression(0)?;
                pairs.push((k, v));
                if !self.is(",") {
                    break;
                }
                self.take();
            }
        }
        self.expect("}")?;
        Ok(pairs)
    }

    fn led(&mut self, t: Token, left: Node) -> R<Node> {
        let pos = t.pos;
        let Tok::Op(op) = t.tok else {
            return Err(Fail::new("S0201").at(pos).token(t.tok.text()));
        };
        let kind = match op {
            "." => {
                let rhs = self.expression(75)?;
                Kind::Dot(Box::new(left), Box::new(rhs))
            }
            "+" | "-" | "*" | "/" | "%" | "=" | "!=" | "<" | "<=" | ">" | ">=" | "&" | "and" | "or" | "in" => {
                let o = match op {
                    "+" => BinOp::Add,
                    "-" => BinOp::Sub,
                    "*" => BinOp::Mul,
                    "/" => BinOp::Div,
                    "%" => BinOp::Mod,
                    "=" => BinOp::Eq,
                    "!=" => BinOp::Ne,
                    "<" => BinOp::Lt,
                    "<=" => BinOp::Le,
                    ">" => BinOp::Gt,
                    ">=" => BinOp::Ge,
                    "&" => BinOp::Concat,
                    "and" => BinOp::And,
                    "or" => BinOp::Or,
                    _ => BinOp::In,
                };
                let rhs = self.expression(lbp(&Tok::Op(op)))?;
                Kind::Binary(o, Box::new(left), Box::new(rhs))
            }
            ":=" => {
                let Kind::Var(name) = &left.kind else {
                    return Err(Fail::new("S0212").at(pos).token(":="));
                };
                let name = name.clone();
                let rhs = self.expression(9)?;
                Kind::Bind(name, Box::new(rhs))
            }
            "?" => {
                let then = self.expression(0)?;
                let els = if self.is(":") {
                    self.take();
                    Some(Box::new(self.expression(0)?))
                } else {
                    None
                };
                Kind::Cond(Box::new(left), Box::new(then), els)
            }
            "?:" => Kind::Elvis(Box::new(left), Box::new(self.expression(0)?)),
            "??" => Kind::Coalesce(Box::new(left), Box::new(self.expression(0)?)),
            "~>" => Kind::Apply(Box::new(left), Box::new(self.expression(40)?)),
            "(" => {
                let mut args = Vec::new();
                let mut partial = false;
                if !self.is(")") {
                    loop {
                        if self.is("?") {
                            let p = self.take().pos;
                            partial = true;
                            args.push(Node::new(Kind::Placeholder, p));
                        } else {
                            args.push(self.expression(0)?);
                        }
                        if !self.is(",") {
                            break;
                        }
                        self.take();
                    }
                }
                self.expect(")")?;
                let is_lambda = matches!(&left.kind, Kind::Name(n) if n == "function" || n == "\u{3bb}");
                if is_lambda {
                    let mut params = Vec::new();
                    for a in &args {
                        match &a.kind {
                            Kind::Var(v) => params.push(v.clone()),
                            _ => {
                                return Err(Fail::new("S0208").at(a.pos).raw_value(format!("\"{}\"", params.len() + 1)));
                            }
                        }
                    }
                    if self.is("<") {
                        // type signature: skipped (not enforced)
                        let mut depth = 0i32;
                        loop {
                            let t = self.cur().clone();
                            match &t.tok {
                                Tok::End => break,
                                Tok::Op("{") if depth <= 0 => break,
                                Tok::Op("<") => depth += 1,
                                Tok::Op(">") => {
                                    depth -= 1;
                                    if depth == 0 {
                                        self.take();
                                        break;
                                    }
                                }
                                _ => {}
                            }
                            self.take();
                        }
                    }
                    self.expect("{")?;
                    let body = self.expression(0)?;
                    self.expect("}")?;
                    Kind::Lambda(Rc::new(LambdaDef { params, body }))
                } else if partial {
                    Kind::Partial(Box::new(left), args)
                } else {
                    Kind::Call(Box::new(left), args)
                }
            }
            "[" => {
                if self.is("]") {
                    self.take();
                    let mut left = left;
                    {
                        let mut step = &mut left;
                        while let Kind::Filter(l, _) = &mut step.kind {
                            step = l;
                        }
                        step.keep_array = true;
                    }
                    return Ok(left);
                }
                let rhs = self.expression(0)?;
                self.expect("]")?;
                Kind::Filter(Box::new(left), Box::new(rhs))
            }
            "{" => Kind::GroupBy(Box::new(left), self.object_pairs()?),
            "^" => {
                self.expect("(")?;
                let mut terms = Vec::new();
                loop {
                    let mut desc = false;
                    if self.is("<") {
                        self.take();
                    } else if self.is(">") {
                        self.take();
                        desc = true;
                    }
                    terms.push((self.expression(0)?, desc));
                    if !self.is(",") {
                        break;
                    }
                    self.take();
                }
                self.expect(")")?;
                Kind::OrderBy(Box::new(left), terms)
            }
            "@" | "#" => {
                return Err(Fail::new("S0999").at(pos).msg(format!("The {op} operator (variable binding in paths) is not supported")));
            }
            _ => return Err(Fail::new("S0201").at(pos).token(op)),
        };
        Ok(Node::new(kind, pos))
    }
}

/// AST post-processing, as `processAST` in jsonata-js: builds path steps, attaches
/// predicates/stages, group-by and order-by.
fn process(node: Node, depth: usize) -> R<Node> {
    if depth > MAX_PARSE_DEPTH * 2 {
        return Err(Fail::new("S0999").at(node.pos).msg("Expression is nested too deeply"));
    }
    stacker::maybe_grow(64 * 1024, 1024 * 1024, || process_inner(node, depth + 1))
}

fn process_pairs(pairs: Vec<(Node, Node)>, d: usize) -> R<Vec<(Node, Node)>> {
    pairs.into_iter().map(|(k, v)| Ok((process(k, d)?, process(v, d)?))).collect()
}

fn process_inner(node: Node, d: usize) -> R<Node> {
    let Node { kind, pos, keep_array, .. } = node;
    let pb = |n: Box<Node>| -> R<Box<Node>> { Ok(Box::new(process(*n, d)?)) };
    let mut result = match kind {
        Kind::Dot(l, r) => {
            let lstep = process(*l, d)?;
            let mut result = if matches!(lstep.kind, Kind::Path(_)) {
                lstep
            } else {
                let mut p = Node::new(Kind::Path(vec![lstep]), pos);
                p.keep_singleton = false;
                p
            };
            let mut rest = process(*r, d)?;
            let Kind::Path(steps) = &mut result.kind else {
                return Err(Fail::new("S0201").at(pos).token("."));
            };
            if let Kind::Path(rsteps) = &mut rest.kind {
                steps.append(rsteps);
            } else {
                if !rest.predicates.is_empty() {
                    rest.stages = std::mem::take(&mut rest.predicates);
                }
                steps.push(rest);
            }
            for s in steps.iter_mut() {
                match &s.kind {
                    Kind::Num(_) | Kind::Bool(_) | Kind::Null => {
                        let v = match &s.kind {
                            Kind::Num(n) => js_number_to_string(*n),
                            Kind::Bool(b) => b.to_string(),
                            _ => "null".into(),
                        };
                        return Err(Fail::new("S0213").at(s.pos).raw_value(v));
                    }
                    Kind::Str(st) => {
                        s.kind = Kind::Name(st.to_string());
                    }
                    _ => {}
                }
            }
            if steps.iter().any(|s| s.keep_array) {
                result.keep_singleton = true;
            }
            if let Some(first) = steps.first_mut()
                && matches!(first.kind, Kind::Array(_))
            {
                first.cons_array = true;
            }
            if let Some(last) = steps.last_mut()
                && matches!(last.kind, Kind::Array(_))
            {
                last.cons_array = true;
            }
            result
        }
        Kind::Filter(l, r) => {
            let mut result = process(*l, d)?;
            let pred = process(*r, d)?;
            if let Kind::Path(steps) = &mut result.kind {
                let Some(step) = steps.last_mut() else {
                    return Err(Fail::new("S0201").at(pos).token("["));
                };
                if step.group.is_some() {
                    return Err(Fail::new("S0209").at(pos));
                }
                step.stages.push(pred);
            } else {
                if result.group.is_some() {
                    return Err(Fail::new("S0209").at(pos));
                }
                result.predicates.push(pred);
            }
            result
        }
        Kind::GroupBy(l, pairs) => {
            let mut result = process(*l, d)?;
            if result.group.is_some() {
                return Err(Fail::new("S0210").at(pos));
            }
            result.group = Some(process_pairs(pairs, d)?);
            result
        }
        Kind::OrderBy(l, terms) => {
            let lhs = process(*l, d)?;
            let mut result = if matches!(lhs.kind, Kind::Path(_)) { lhs } else { Node::new(Kind::Path(vec![lhs]), pos) };
            let terms = terms.into_iter().map(|(e, desc)| Ok((process(e, d)?, desc))).collect::<R<Vec<_>>>()?;
            if let Kind::Path(steps) = &mut result.kind {
                steps.push(Node::new(Kind::Sort(terms), pos));
            }
            result
        }
        Kind::Name(n) => {
            let mut step = Node::new(Kind::Name(n), pos);
            step.keep_array = keep_array;
            let mut p = Node::new(Kind::Path(vec![step]), pos);
            p.keep_singleton = keep_array;
            return Ok(p);
        }
        Kind::Neg(e) => {
            let e = process(*e, d)?;
            match e.kind {
                Kind::Num(n) if e.predicates.is_empty() && !e.keep_array => Node::new(Kind::Num(-n), pos),
                _ => Node::new(Kind::Neg(Box::new(e)), pos),
            }
        }
        Kind::Array(items) => Node::new(Kind::Array(items.into_iter().map(|i| process(i, d)).collect::<R<_>>()?), pos),
        Kind::Range(a, b) => Node::new(Kind::Range(pb(a)?, pb(b)?), pos),
        Kind::Object(pairs) => Node::new(Kind::Object(process_pairs(pairs, d)?), pos),
        Kind::Block(exprs) => Node::new(Kind::Block(exprs.into_iter().map(|i| process(i, d)).collect::<R<_>>()?), pos),
        Kind::Binary(op, a, b) => Node::new(Kind::Binary(op, pb(a)?, pb(b)?), pos),
        Kind::Cond(c, t, e) => Node::new(Kind::Cond(pb(c)?, pb(t)?, e.map(pb).transpose()?), pos),
        Kind::Elvis(a, b) => Node::new(Kind::Elvis(pb(a)?, pb(b)?), pos),
        Kind::Coalesce(a, b) => Node::new(Kind::Coalesce(pb(a)?, pb(b)?), pos),
        Kind::Bind(n, v) => Node::new(Kind::Bind(n, pb(v)?), pos),
        Kind::Call(p, args) => Node::new(Kind::Call(pb(p)?, args.into_iter().map(|i| process(i, d)).collect::<R<_>>()?), pos),
        Kind::Partial(p, args) => Node::new(Kind::Partial(pb(p)?, args.into_iter().map(|i| process(i, d)).collect::<R<_>>()?), pos),
        Kind::Lambda(def) => {
            let def = Rc::try_unwrap(def).map_err(|_| Fail::new("S0201").at(pos))?;
            let body = process(def.body, d)?;
            Node::new(Kind::Lambda(Rc::new(LambdaDef { params: def.params, body })), pos)
        }
        Kind::Apply(a, b) => Node::new(Kind::Apply(pb(a)?, pb(b)?), pos),
        other => Node::new(other, pos),
    };
    if keep_array {
        result.keep_array = true;
    }
    Ok(result)
}

// ---------------------------------------------------------------------------------------------
// Regular expressions: JavaScript syntax translated to the `regex` crate
// ---------------------------------------------------------------------------------------------

fn compile_regex(pattern: &str, flags: &str) -> R<regex::Regex> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = String::new();
    if flags.contains('i') {
        out.push_str("(?i)");
    }
    if flags.contains('m') {
        out.push_str("(?m)");
    }
    let mut in_class = false;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '\\' => {
                i += 1;
                let Some(&e) = chars.get(i) else {
                    out.push_str("\\\\");
                    break;
                };
                match e {
                    'd' => out.push_str(if in_class { "0-9" } else { "[0-9]" }),
                    'D' => out.push_str(if in_class { "\\D" } else { "[^0-9]" }),
                    'w' => out.push_str(if in_class { "A-Za-z0-9_" } else { "[A-Za-z0-9_]" }),
                    'W' => out.push_str(if in_class { "\\W" } else { "[^A-Za-z0-9_]" }),
                    's' | 'S' | 'n' | 'r' | 't' | 'f' | 'v' => {
                        out.push('\\');
                        out.push(e);
                    }
                    'b' if in_class => out.push_str("\\x08"),
                    'b' | 'B' => {
                        out.push_str("(?-u:\\");
                        out.push(e);
                        out.push(')');
                    }
                    '0' => out.push_str("\\x00"),
                    'x' => {
                        let h: String = chars.iter().skip(i + 1).take(2).collect();
                        if h.len() == 2 && h.chars().all(|c| c.is_ascii_hexdigit()) {
                            out.push_str("\\x");
                            out.push_str(&h);
                            i += 2;
                        } else {
                            out.push('x');
                        }
                    }
                    'u' => {
                        let h: String = chars.iter().skip(i + 1).take(4).collect();
                        if h.len() == 4 && h.chars().all(|c| c.is_ascii_hexdigit()) {
                            out.push_str("\\x{");
                            out.push_str(&h);
                            out.push('}');
                            i += 4;
                        } else {
                            out.push('u');
                        }
                    }
                    c if c.is_ascii_digit() => {
                        return Err(Fail::new("S0303").msg("back-references are not supported"));
                    }
                    c if c.is_alphanumeric() => {
                        out.push('\\');
                        out.push(c);
                    }
                    c => {
                        let mut buf = [0u8; 4];
                        out.push_str(&regex::escape(c.encode_utf8(&mut buf)));
                    }
                }
            }
            '[' if !in_class => {
                // JS: `[]` matches nothing, `[^]` matches anything
                if chars.get(i + 1) == Some(&']') {
                    out.push_str("[^\\x00-\\x{10FFFF}]");
                    i += 2;
                    continue;
                }
                if chars.get(i + 1) == Some(&'^') && chars.get(i + 2) == Some(&']') {
                    out.push_str("[\\x00-\\x{10FFFF}]");
                    i += 3;
                    continue;
                }
                in_class = true;
                out.push('[');
                if chars.get(i + 1) == Some(&'^') {
                    out.push('^');
                    i += 1;
                }
                if chars.get(i + 1) == Some(&']') {
                    out.push_str("\\]");
                    i += 1;
                }
            }
            '[' if in_class => out.push_str("\\["),
            ']' if in_class => {
                in_class = false;
                out.push(']');
            }
            '&' | '~' | '-' if in_class => {
                if c == '-' {
                    out.push('-');
                } else {
                    out.push('\\');
                    out.push(c);
                }
            }
            '(' if chars.get(i + 1) == Some(&'?') => {
                match chars.get(i + 2) {
                    Some(':') => out.push_str("(?:"),
                    Some('<') if !matches!(chars.get(i + 3), Some('=') | Some('!')) => {
                        out.push_str("(?P<");
                    }
                    _ => {
                        return Err(Fail::new("S0303").msg("lookaround is not supported"));
                    }
                }
                i += 3;
                continue;
            }
            _ => out.push(c),
        }
        i += 1;
    }
    regex::RegexBuilder::new(&out)
        .size_limit(1 << 22)
        .build()
        .map_err(|e| Fail::new("S0303").msg(e.to_string().lines().last().unwrap_or("").trim().to_string()))
}

// ---------------------------------------------------------------------------------------------
// Environment
// ---------------------------------------------------------------------------------------------

type Env = Rc<Frame>;

struct Frame {
    vars: RefCell<HashMap<String, Option<Val>>>,
    parent: Option<Env>,
}

impl Frame {
    fn root() -> Env {
        Rc::new(Frame { vars: RefCell::new(HashMap::new()), parent: None })
    }
    fn child(parent: &Env) -> Env {
        Rc::new(Frame { vars: RefCell::new(HashMap::new()), parent: Some(parent.clone()) })
    }
}

struct Evaluator<'b, 'r> {
    bindings: &'b Bindings<'b>,
    root_cache: HashMap<String, Val>,
    random: &'r mut dyn FnMut() -> u64,
    now_ms: i64,
    depth: usize,
    bound_frames: Vec<Env>,
}

enum Lookup {
    Found(Option<Val>),
    Missing,
}

impl Evaluator<'_, '_> {
    fn lookup_var(&mut self, name: &str, env: &Env) -> Option<Val> {
        match self.lookup_frames(name, env) {
            Lookup::Found(v) => v,
            Lookup::Missing => self.lookup_root(name),
        }
    }

    fn lookup_frames(&self, name: &str, env: &Env) -> Lookup {
        let mut cur = Some(env);
        while let Some(f) = cur {
            if let Some(v) = f.vars.borrow().get(name) {
                return Lookup::Found(v.clone());
            }
            cur = f.parent.as_ref();
        }
        Lookup::Missing
    }

    fn lookup_root(&mut self, name: &str) -> Option<Val> {
        if let Some(v) = self.root_cache.get(name) {
            return Some(v.clone());
        }
        let json = if name == "states" { Some(self.bindings.states) } else { self.bindings.variables.get(name) };
        if let Some(j) = json {
            let v = from_json(j);
            self.root_cache.insert(name.to_string(), v.clone());
            return Some(v);
        }
        builtin(name).map(|n| Val::Func(Rc::new(Func::Native(n))))
    }

    fn is_bound(&mut self, name: &str, env: &Env) -> bool {
        self.lookup_var(name, env).is_some()
    }

    /// Count `units` of work against the step budget (also bounds memory growth from
    /// repeated doubling of strings or arrays).
    fn charge(&mut self, units: usize) -> R<()> {
        spend(units as u64)
    }

    fn bind(&mut self, env: &Env, name: &str, v: Option<Val>) {
        env.vars.borrow_mut().insert(name.to_string(), v);
    }

    // -----------------------------------------------------------------------------------------
    // evaluate
    // -----------------------------------------------------------------------------------------

    fn eval(&mut self, node: &Node, input: Option<&Val>, env: &Env) -> R<Option<Val>> {
        self.depth += 1;
        if self.depth > MAX_EVAL_DEPTH {
            self.depth -= 1;
            return Err(Fail::new("U1001").at(node.pos));
        }
        if let Err(f) = spend(1) {
            self.depth -= 1;
            return Err(f.at(node.pos));
        }
        let r = stacker::maybe_grow(256 * 1024, 2 * 1024 * 1024, || self.eval_inner(node, input, env));
        self.depth -= 1;
        // No value larger than the output limit once expanded leaves a node, however little
        // memory its shared parts take: every walk over a value is bounded by that limit.
        if let Ok(Some(v)) = &r {
            let size = logical_size(v);
            if size > MAX_STRING_LEN as u64 {
                return Err(
                    too_large("the expression", usize::try_from(size).unwrap_or(usize::MAX), MAX_STRING_LEN, "characters").at(node.pos)
                );
            }
        }
        r
    }

    fn eval_inner(&mut self, node: &Node, input: Option<&Val>, env: &Env) -> R<Option<Val>> {
        let mut result = match &node.kind {
            Kind::Path(steps) => self.eval_path(node, steps, input, env)?,
            Kind::Binary(op, l, r) => self.eval_binary(*op, l, r, input, env, node.pos)?,
            Kind::Neg(e) => match self.eval(e, input, env)? {
                None => None,
                Some(Val::Num(n)) => Some(Val::Num(-n)),
                Some(v) => return Err(Fail::new("D1002").at(node.pos).value(Some(&v))),
            },
            Kind::Name(n) => lookup_field(input, n)?,
            Kind::Str(s) => Some(Val::Str(s.clone())),
            Kind::Num(n) => Some(Val::Num(*n)),
            Kind::Bool(b) => Some(Val::Bool(*b)),
            Kind::Null => Some(Val::Null),
            Kind::Wildcard => eval_wildcard(input)?,
            Kind::Descendant => eval_descendants(input)?,
            Kind::Parent => {
                return Err(Fail::new("S0999").at(node.pos).msg("The parent operator (%) is not supported"));
            }
            Kind::Transform => {
                return Err(Fail::new("S0999").at(node.pos).msg("The transform operator (| ... |) is not supported"));
            }
            Kind::Cond(c, t, e) => {
                let cv = self.eval(c, input, env)?;
                if boolean(cv.as_ref()).unwrap_or(false) {
                    self.eval(t, input, env)?
                } else if let Some(e) = e {
                    self.eval(e, input, env)?
                } else {
                    None
                }
            }
            Kind::Elvis(a, b) => {
                let av = self.eval(a, input, env)?;
                if boolean(av.as_ref()).unwrap_or(false) { av } else { self.eval(b, input, env)? }
            }
            Kind::Coalesce(a, b) => {
                let av = self.eval(a, input, env)?;
                if av.is_some() { av } else { self.eval(b, input, env)? }
            }
            Kind::Block(exprs) => {
                let frame = Frame::child(env);
                let mut r = None;
                for e in exprs {
                    r = self.eval(e, input, &frame)?;
                }
                r
            }
            Kind::Bind(name, v) => {
                let value = self.eval(v, input, env)?;
                self.bind(env, name, value.clone());
                if value.as_ref().is_some_and(contains_func) {
                    self.bound_frames.push(env.clone());
                }
                value
            }
            Kind::Regex(re) => Some(Val::Func(Rc::new(Func::Regex(re.clone())))),
            Kind::Var(name) => {
                if name.is_empty() {
                    input.cloned()
                } else if name == "$" {
                    // root context: AWS Step Functions evaluates with no input document
                    None
                } else {
                    self.lookup_var(name, env)
                }
            }
            Kind::Lambda(def) => Some(Val::Func(Rc::new(Func::Lambda { def: def.clone(), env: env.clone(), input: input.cloned() }))),
            Kind::Array(items) => {
                let mut out: Vec<Val> = Vec::new();
                for item in items {
                    let v = self.eval(item, input, env)?;
                    if let Some(v) = v {
                        if matches!(item.kind, Kind::Array(_)) {
                            out.push(v);
                        } else if let Val::Arr(a) = v {
                            check_arr_len(out.len().saturating_add(a.items.len()), "the array constructor").map_err(|e| e.at(node.pos))?;
                            out.extend(a.items.iter().cloned());
                        } else {
                            out.push(v);
                        }
                    }
                }
                self.charge(out.len() * 4)?;
                Some(Val::Arr(Rc::new(Arr { items: out, cons: node.cons_array, ..Arr::default() })))
            }
            Kind::Range(l, r) => {
                let lv = self.eval(l, input, env)?;
                let rv = self.eval(r, input, env)?;
                eval_range(lv.as_ref(), rv.as_ref()).map_err(|e| e.at(node.pos))?
            }
            Kind::Object(pairs) => Some(self.eval_group(pairs, input.cloned(), env, node.pos)?),
            Kind::Call(proc, args) => self.eval_call(proc, args, input, env, None, node.pos)?,
            Kind::Partial(proc, args) => Some(self.eval_partial(proc, args, input, env, node.pos)?),
            Kind::Placeholder => None,
            Kind::Apply(l, r) => self.eval_apply(l, r, input, env, node.pos)?,
            Kind::Sort(_) => {
                let seq = match input {
                    Some(Val::Arr(a)) => Some(a.clone()),
                    Some(v) => Some(Rc::new(Arr { items: vec![v.clone()], seq: true, ..Arr::default() })),
                    None => None,
                };
                Some(self.eval_step(node, seq.as_ref(), env, true)?)
            }
            Kind::Dot(..) | Kind::Filter(..) | Kind::GroupBy(..) | Kind::OrderBy(..) => {
                return Err(Fail::new("S0201").at(node.pos).token("?"));
            }
        };

        for p in &node.predicates {
            result = Some(self.filter(p, result, env)?);
        }
        if !matches!(node.kind, Kind::Path(_))
            && let Some(g) = &node.group
        {
            result = Some(self.eval_group(g, result, env, node.pos)?);
        }

        if let Some(Val::Arr(a)) = &result
            && a.seq
        {
            if a.items.is_empty() {
                return Ok(None);
            }
            let keep = a.keep || node.keep_array;
            if a.items.len() == 1 && !keep {
                return Ok(Some(a.items[0].clone()));
            }
            if node.keep_array && !a.keep {
                let mut na = (**a).clone();
                na.keep = true;
                return Ok(Some(Val::Arr(Rc::new(na))));
            }
        }
        Ok(result)
    }

    fn eval_path(&mut self, node: &Node, steps: &[Node], input: Option<&Val>, env: &Env) -> R<Option<Val>> {
        let first_is_var = steps.first().is_some_and(|s| matches!(s.kind, Kind::Var(_)));
        let mut seq: Option<Rc<Arr>> = match input {
            Some(Val::Arr(a)) if !first_is_var => Some(a.clone()),
            Some(v) => Some(Rc::new(Arr { items: vec![v.clone()], seq: true, ..Arr::default() })),
            None => None,
        };
        let mut result: Option<Val> = None;
        let last = steps.len().saturating_sub(1);
        for (i, step) in steps.iter().enumerate() {
            let r = if i == 0 && step.cons_array {
                let inp = seq.as_ref().map(|a| Val::Arr(a.clone()));
                self.eval(step, inp.as_ref(), env)?
            } else {
                Some(self.eval_step(step, seq.as_ref(), env, i == last)?)
            };
            let empty = match &r {
                None => true,
                Some(Val::Arr(a)) => a.items.is_empty(),
                Some(_) => false,
            };
            result = r;
            if empty {
                break;
            }
            seq = match &result {
                Some(Val::Arr(a)) => Some(a.clone()),
                Some(v) => Some(Rc::new(Arr { items: vec![v.clone()], seq: true, ..Arr::default() })),
                None => None,
            };
        }
        if node.keep_singleton
            && let Some(Val::Arr(a)) = &result
        {
            let mut na =
                if a.cons && !a.seq { Arr { items: vec![Val::Arr(a.clone())], seq: true, ..Arr::default() } } else { (**a).clone() };
            na.keep = true;
            result = Some(Val::Arr(Rc::new(na)));
        }
        if let Some(g) = &node.group {
            result = Some(self.eval_group(g, result, env, node.pos)?);
        }
        Ok(result)
    }

    fn eval_step(&mut self, step: &Node, seq: Option<&Rc<Arr>>, env: &Env, last: bool) -> R<Val> {
        if let Kind::Sort(terms) = &step.kind {
            let mut res = Some(self.eval_sort(terms, seq, env)?);
            for stage in &step.stages {
                res = Some(self.filter(stage, res, env)?);
            }
            return Ok(res.unwrap_or_else(|| Val::seq(vec![])));
        }
        let mut results: Vec<Val> = Vec::new();
        let mut run = |this: &mut Self, item: Option<&Val>| -> R<()> {
            let mut res = this.eval(step, item, env)?;
            for stage in &step.stages {
                res = Some(this.filter(stage, res, env)?);
            }
            if let Some(r) = res {
                results.push(r);
            }
            Ok(())
        };
        match seq {
            Some(a) => {
                for item in a.items.iter() {
                    run(self, Some(item))?;
                }
            }
            None => run(self, None)?,
        }
        if last
            && results.len() == 1
            && let Val::Arr(a) = &results[0]
            && !a.seq
        {
            return Ok(results.swap_remove(0));
        }
        let mut out = Vec::new();
        for r in results {
            match r {
                Val::Arr(a) if !a.cons => out.extend(a.items.iter().cloned()),
                other => out.push(other),
            }
        }
        Ok(Val::seq(out))
    }

    fn eval_sort(&mut self, terms: &[(Node, bool)], seq: Option<&Rc<Arr>>, env: &Env) -> R<Val> {
        let Some(a) = seq else {
            return Ok(Val::seq(vec![]));
        };
        if a.items.len() <= 1 {
            return Ok(Val::Arr(a.clone()));
        }
        let items = a.items.clone();
        let sorted = merge_sort(items, &mut |x: &Val, y: &Val| -> R<bool> {
            let mut comp = 0i32;
            for (expr, desc) in terms {
                if comp != 0 {
                    break;
                }
                let aa = self.eval(expr, Some(x), env)?;
                let bb = self.eval(expr, Some(y), env)?;
                let (aa, bb) = match (aa, bb) {
                    (None, None) => {
                        comp = 0;
                        continue;
                    }
                    (None, _) => {
                        comp = 1;
                        continue;
                    }
                    (_, None) => {
                        comp = -1;
                        continue;
                    }
                    (Some(a), Some(b)) => (a, b),
                };
                let ok = |v: &Val| matches!(v, Val::Num(_) | Val::Str(_));
                if !ok(&aa) || !ok(&bb) {
                    let bad = if ok(&aa) { &bb } else { &aa };
                    return Err(Fail::new("T2008").value(Some(bad)));
                }
                comp = match (&aa, &bb) {
                    (Val::Num(p), Val::Num(q)) => cmp_f64(*p, *q),
                    (Val::Str(p), Val::Str(q)) => cmp_str(p, q),
                    _ => {
                        return Err(Fail::new("T2007").value(Some(&aa)).value2(Some(&bb)));
                    }
                };
                if *desc {
                    comp = -comp;
                }
            }
            Ok(comp == 1)
        })?;
        Ok(Val::array(sorted))
    }

    /// Apply one predicate `[expr]` to a value (evaluateFilter).
    fn filter(&mut self, pred: &Node, input: Option<Val>, env: &Env) -> R<Val> {
        let items: Vec<Val> = match input {
            None => Vec::new(),
            Some(Val::Arr(a)) => a.items.clone(),
            Some(v) => vec![v],
        };
        let mut results = Vec::new();
        if let (Kind::Num(n), true) = (&pred.kind, pred.predicates.is_empty()) {
            let len = items.len() as f64;
            let mut idx = n.floor();
            if idx < 0.0 {
                idx += len;
            }
            if idx >= 0.0 && idx < len {
                let item = &items[idx as usize];
                if let Val::Arr(_) = item {
                    return Ok(item.clone());
                }
                results.push(item.clone());
            }
            return Ok(Val::seq(results));
        }
        let len = items.len() as f64;
        for (index, item) in items.iter().enumerate() {
            let res = self.eval(pred, Some(item), env)?;
            let nums: Option<Vec<f64>> = match &res {
                Some(Val::Num(n)) => Some(vec![*n]),
                Some(Val::Arr(a)) if a.items.iter().all(|v| matches!(v, Val::Num(_))) => {
                    Some(a.items.iter().map(|v| if let Val::Num(n) = v { *n } else { 0.0 }).collect())
                }
                _ => None,
            };
            if let Some(nums) = nums {
                for n in nums {
                    check_finite(n)?;
                    let mut ii = n.floor();
                    if ii < 0.0 {
                        ii += len;
                    }
                    if ii == index as f64 {
                        results.push(item.clone());
                    }
                }
            } else if boolean(res.as_ref()).unwrap_or(false) {
                results.push(item.clone());
            }
        }
        Ok(Val::seq(results))
    }

    /// Object constructor / group-by (evaluateGroupExpression).
    fn eval_group(&mut self, pairs: &[(Node, Node)], input: Option<Val>, env: &Env, pos: usize) -> R<Val> {
        let items: Vec<Option<Val>> = match input {
            None => vec![None],
            Some(Val::Arr(a)) => {
                if a.items.is_empty() {
                    vec![None]
                } else {
                    a.items.iter().cloned().map(Some).collect()
                }
            }
            Some(v) => vec![Some(v)],
        };
        let mut groups: IndexMap<String, (Option<Val>, usize)> = IndexMap::new();
        for item in &items {
            for (pi, (k, _)) in pairs.iter().enumerate() {
                let key = self.eval(k, item.as_ref(), env)?;
                match key {
                    None => {}
                    Some(Val::Str(s)) => {
                        if let Some(entry) = groups.get_mut(&*s) {
                            if entry.1 != pi {
                                return Err(Fail::new("D1009").at(pos).raw_value(quote_json_string(&s)));
                            }
                            entry.0 = append(entry.0.take(), item.clone())?;
                        } else {
                            groups.insert(s.to_string(), (item.clone(), pi));
                        }
                    }
                    Some(other) => {
                        return Err(Fail::new("T1003").at(pos).value(Some(&other)));
                    }
                }
            }
        }
        let mut out = Obj::new();
        for (key, (data, pi)) in groups {
            let v = self.eval(&pairs[pi].1, data.as_ref(), env)?;
            if let Some(v) = v {
                out.insert(key, v);
            }
        }
        Ok(Val::object(out))
    }

    fn eval_binary(&mut self, op: BinOp, l: &Node, r: &Node, input: Option<&Val>, env: &Env, pos: usize) -> R<Option<Val>> {
        let lhs = self.eval(l, input, env)?;
        if op == BinOp::And || op == BinOp::Or {
            let lb = boolean(lhs.as_ref()).unwrap_or(false);
            let res = match op {
                BinOp::And => lb && boolean(self.eval(r, input, env)?.as_ref()).unwrap_or(false),
                _ => lb || boolean(self.eval(r, input, env)?.as_ref()).unwrap_or(false),
            };
            return Ok(Some(Val::Bool(res)));
        }
        let rhs = self.eval(r, input, env)?;
        let tok = op.symbol();
        let fail = |f: Fail| f.at(pos).token(tok);
        match op {
            BinOp::Add | BinOp::Sub | BinOp::Mul | BinOp::Div | BinOp::Mod => {
                let ln = match &lhs {
                    None => None,
                    Some(Val::Num(n)) => Some(check_finite(*n).map_err(fail)?),
                    Some(v) => return Err(fail(Fail::new("T2001").value(Some(v)))),
                };
                let rn = match &rhs {
                    None => None,
                    Some(Val::Num(n)) => Some(check_finite(*n).map_err(fail)?),
                    Some(v) => return Err(fail(Fail::new("T2002").value(Some(v)))),
                };
                let (Some(a), Some(b)) = (ln, rn) else {
                    return Ok(None);
                };
                Ok(Some(Val::Num(match op {
                    BinOp::Add => a + b,
                    BinOp::Sub => a - b,
                    BinOp::Mul => a * b,
                    BinOp::Div => a / b,
                    _ => a % b,
                })))
            }
            BinOp::Eq | BinOp::Ne => {
                let (Some(a), Some(b)) = (&lhs, &rhs) else {
                    return Ok(Some(Val::Bool(false)));
                };
                let eq = deep_equal(a, b)?;
                Ok(Some(Val::Bool(if op == BinOp::Eq { eq } else { !eq })))
            }
            BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge => {
                let comparable = |v: &Option<Val>| matches!(v, None | Some(Val::Num(_)) | Some(Val::Str(_)));
                if !comparable(&lhs) || !comparable(&rhs) {
                    let bad = if comparable(&lhs) { &rhs } else { &lhs };
                    return Err(fail(Fail::new("T2010").value(bad.as_ref())));
                }
                let (Some(a), Some(b)) = (&lhs, &rhs) else {
                    return Ok(None);
                };
                let c = match (a, b) {
                    (Val::Num(x), Val::Num(y)) => {
                        check_finite(*x).map_err(fail)?;
                        check_finite(*y).map_err(fail)?;
                        cmp_f64(*x, *y)
                    }
                    (Val::Str(x), Val::Str(y)) => cmp_str(x, y),
                    _ => {
                        return Err(fail(Fail::new("T2009").value(Some(a)).value2(Some(b))));
                    }
                };
                Ok(Some(Val::Bool(match op {
                    BinOp::Lt => c < 0,
                    BinOp::Le => c <= 0,
                    BinOp::Gt => c > 0,
                    _ => c >= 0,
                })))
            }
            BinOp::Concat => {
                let ls = match &lhs {
                    None => String::new(),
                    Some(v) => fn_string(v, false).map_err(fail)?,
                };
                let rs = match &rhs {
                    None => String::new(),
                    Some(v) => fn_string(v, false).map_err(fail)?,
                };
                check_str_len(ls.len().saturating_add(rs.len()), "the & operator").map_err(fail)?;
                self.charge((ls.len() + rs.len()) / 4)?;
                Ok(Some(Val::string(ls + &rs)))
            }
            BinOp::In => {
                let (Some(a), Some(b)) = (&lhs, &rhs) else {
                    return Ok(Some(Val::Bool(false)));
                };
                let mut found = false;
                match b {
                    Val::Arr(arr) => {
                        for x in arr.items.iter() {
                            if strict_equal(x, a)? {
                                found = true;
                                break;
                            }
                        }
                    }
                    other => found = strict_equal(other, a)?,
                }
                Ok(Some(Val::Bool(found)))
            }
            BinOp::And | BinOp::Or => Ok(None),
        }
    }

    fn proc_name(proc: &Node) -> String {
        match &proc.kind {
            Kind::Path(steps) => match steps.first().map(|s| &s.kind) {
                Some(Kind::Name(n)) => n.clone(),
                _ => String::new(),
            },
            Kind::Var(v) => v.clone(),
            _ => String::new(),
        }
    }

    fn eval_call(
        &mut self,
        proc: &Node,
        args: &[Node],
        input: Option<&Val>,
        env: &Env,
        applyto: Option<Option<Val>>,
        pos: usize,
    ) -> R<Option<Val>> {
        let f = self.eval(proc, input, env)?;
        let name = Self::proc_name(proc);
        if f.is_none() && matches!(proc.kind, Kind::Path(_)) && self.is_bound(&name, env) {
            return Err(Fail::new("T1005").at(pos).token(name));
        }
        let mut evaluated = Vec::with_capacity(args.len() + 1);
        if let Some(first) = applyto {
            evaluated.push(first);
        }
        for a in args {
            evaluated.push(self.eval(a, input, env)?);
        }
        let Some(f) = f else {
            return Err(Fail::new("T1006").at(pos).token(name));
        };
        self.apply(&f, evaluated, input, env).map_err(|mut e| {
            if e.token.is_none() {
                e.token = Some(name);
            }
            if e.pos == 0 {
                e.pos = pos;
            }
            e
        })
    }

    fn eval_partial(&mut self, proc: &Node, args: &[Node], input: Option<&Val>, env: &Env, pos: usize) -> R<Val> {
        let mut evaluated = Vec::with_capacity(args.len());
        for a in args {
            if matches!(a.kind, Kind::Placeholder) {
                evaluated.push(None);
            } else {
                evaluated.push(Some(self.eval(a, input, env)?));
            }
        }
        let f = self.eval(proc, input, env)?;
        let name = Self::proc_name(proc);
        match f {
            Some(f @ Val::Func(_)) => Ok(Val::Func(Rc::new(Func::Partial { func: f, args: evaluated }))),
            None if matches!(proc.kind, Kind::Path(_)) && self.is_bound(&name, env) => Err(Fail::new("T1007").at(pos).token(name)),
            _ => Err(Fail::new("T1008").at(pos).token(name)),
        }
    }

    fn eval_apply(&mut self, l: &Node, r: &Node, input: Option<&Val>, env: &Env, pos: usize) -> R<Option<Val>> {
        let lhs = self.eval(l, input, env)?;
        if let Kind::Call(proc, args) = &r.kind {
            return self.eval_call(proc, args, input, env, Some(lhs), r.pos);
        }
        let f = self.eval(r, input, env)?;
        let Some(f @ Val::Func(_)) = f else {
            return Err(Fail::new("T2006").at(pos).value(f.as_ref()));
        };
        if let Some(lf @ Val::Func(_)) = lhs {
            return Ok(Some(Val::Func(Rc::new(Func::Compose(lf, f)))));
        }
        self.apply(&f, vec![lhs], None, env)
    }

    /// Invoke a function value with evaluated arguments.
    fn apply(&mut self, f: &Val, args: Vec<Option<Val>>, input: Option<&Val>, env: &Env) -> R<Option<Val>> {
        let Val::Func(func) = f else {
            return Err(Fail::new("T1006"));
        };
        self.depth += 1;
        if self.depth > MAX_EVAL_DEPTH {
            self.depth -= 1;
            return Err(Fail::new("U1001"));
        }
        let r = stacker::maybe_grow(256 * 1024, 2 * 1024 * 1024, || match &**func {
            Func::Native(name) => {
                let args = validate_args(name, args, input)?;
                let r = self.call_native(name, args, input, env)?;
                match &r {
                    Some(Val::Str(s)) => check_str_len(s.len(), &format!("${name}"))?,
                    Some(Val::Arr(a)) => check_arr_len(a.items.len(), &format!("${name}"))?,
                    _ => {}
                }
                let size = match &r {
                    Some(Val::Arr(a)) => a.items.len() * 4,
                    Some(Val::Str(s)) => s.len() / 4,
                    Some(Val::Obj(o)) => o.len() * 4,
                    _ => 0,
                };
                self.charge(size)?;
                Ok(r)
            }
            Func::Lambda { def, env: cenv, input: cinput } => {
                let frame = Frame::child(cenv);
                {
                    let mut vars = frame.vars.borrow_mut();
                    let mut it = args.into_iter();
                    for p in &def.params {
                        vars.insert(p.clone(), it.next().flatten());
                    }
                }
                self.eval(&def.body, cinput.as_ref(), &frame)
            }
            Func::Partial { func, args: pargs } => {
                let mut it = args.into_iter();
                let full: Vec<Option<Val>> = pargs
                    .iter()
                    .map(|a| match a {
                        Some(v) => v.clone(),
                        None => it.next().flatten(),
                    })
                    .collect();
                self.apply(func, full, None, env)
            }
            Func::Compose(f1, f2) => {
                let r = self.apply(f1, args, None, env)?;
                self.apply(f2, vec![r], None, env)
            }
            Func::Regex(re) => {
                let s = match args.into_iter().next().flatten() {
                    Some(Val::Str(s)) => s,
                    _ => return Ok(None),
                };
                let m = regex_matches(re, &s, Some(1))?;
                Ok(m.into_iter().next().map(|m| {
                    let mut o = Obj::new();
                    o.insert("match".into(), Val::string(m.matched));
                    o.insert("start".into(), Val::Num(m.start as f64));
                    o.insert("end".into(), Val::Num(m.end as f64));
                    o.insert("groups".into(), Val::array(m.groups.into_iter().map(Val::string).collect()));
                    Val::object(o)
                }))
            }
        });
        self.depth -= 1;
        r
    }

    /// Number of arguments a higher-order function passes to `f`.
    fn arity(f: &Val) -> usize {
        match f {
            Val::Func(func) => match &**func {
                Func::Lambda { def, .. } => def.params.len(),
                Func::Native(n) => native_arity(n),
                Func::Partial { args, .. } => args.iter().filter(|a| a.is_none()).count(),
                Func::Compose(f1, _) => Self::arity(f1),
                Func::Regex(_) => 1,
            },
            _ => 0,
        }
    }

    fn hof_args(f: &Val, v: &Val, i: usize, arr: &Val) -> Vec<Option<Val>> {
        let n = Self::arity(f);
        let mut a = vec![Some(v.clone())];
        if n >= 2 {
            a.push(Some(Val::Num(i as f64)));
        }
        if n >= 3 {
            a.push(Some(arr.clone()));
        }
        a
    }
}

/// Run `f` with enough stack for another level of recursion over a value.
fn grow<T>(f: impl FnOnce() -> T) -> T {
    stacker::maybe_grow(64 * 1024, 1024 * 1024, f)
}

/// A function anywhere inside `v` (worked out once per array and object, see [`Meta`]).
fn contains_func(v: &Val) -> bool {
    meta(v).func
}

fn check_finite(n: f64) -> R<f64> {
    if n.is_finite() { Ok(n) } else { Err(Fail::new("D1001").raw_value(js_number_to_string(n))) }
}

fn cmp_f64(a: f64, b: f64) -> i32 {
    if a < b {
        -1
    } else if a > b {
        1
    } else {
        0
    }
}

/// JavaScript string ordering (UTF-16 code units).
fn cmp_str(a: &str, b: &str) -> i32 {
    match a.encode_utf16().cmp(b.encode_utf16()) {
        std::cmp::Ordering::Less => -1,
        std::cmp::Ordering::Equal => 0,
        std::cmp::Ordering::Greater => 1,
    }
}

/// Stable top-down merge sort with a fallible "should swap" comparator (as jsonata's $sort).
fn merge_sort(items: Vec<Val>, swap: &mut dyn FnMut(&Val, &Val) -> R<bool>) -> R<Vec<Val>> {
    if items.len() <= 1 {
        return Ok(items);
    }
    let mut items = items;
    let right = items.split_off(items.len() / 2);
    let left = merge_sort(items, swap)?;
    let right = merge_sort(right, swap)?;
    let mut out = Vec::with_capacity(left.len() + right.len());
    let (mut i, mut j) = (0, 0);
    while i < left.len() && j < right.len() {
        if swap(&left[i], &right[j])? {
            out.push(right[j].clone());
            j += 1;
        } else {
            out.push(left[i].clone());
            i += 1;
        }
    }
    out.extend_from_slice(&left[i..]);
    out.extend_from_slice(&right[j..]);
    Ok(out)
}

/// `fn.lookup`: field access, mapping over arrays and flattening one level.
fn lookup_field(input: Option<&Val>, key: &str) -> R<Option<Val>> {
    grow(|| lookup_field_inner(input, key))
}

fn lookup_field_inner(input: Option<&Val>, key: &str) -> R<Option<Val>> {
    Ok(match input {
        Some(Val::Arr(a)) => {
            spend(a.items.len() as u64)?;
            let mut out = Vec::new();
            for item in a.items.iter() {
                match lookup_field(Some(item), key)? {
                    Some(Val::Arr(r)) => {
                        spend(r.items.len() as u64)?;
                        out.extend(r.items.iter().cloned())
                    }
                    Some(v) => out.push(v),
                    None => {}
                }
            }
            Some(Val::seq(out))
        }
        Some(Val::Obj(o)) => o.get(key).cloned(),
        _ => None,
    })
}

fn flatten_into(v: &Val, out: &mut Vec<Val>) -> R<()> {
    grow(|| flatten_into_inner(v, out))
}

fn flatten_into_inner(v: &Val, out: &mut Vec<Val>) -> R<()> {
    spend(1)?;
    match v {
        Val::Arr(a) => a.items.iter().try_for_each(|x| flatten_into(x, out)),
        other => {
            out.push(other.clone());
            Ok(())
        }
    }
}

fn eval_wildcard(input: Option<&Val>) -> R<Option<Val>> {
    let mut out = Vec::new();
    if let Some(Val::Obj(o)) = input {
        spend(o.len() as u64)?;
        for v in o.values() {
            if let Val::Arr(_) = v {
                flatten_into(v, &mut out)?;
            } else {
                out.push(v.clone());
            }
        }
    }
    Ok(Some(Val::seq(out)))
}

fn eval_descendants(input: Option<&Val>) -> R<Option<Val>> {
    fn rec(v: &Val, out: &mut Vec<Val>) {
        match v {
            Val::Arr(a) => grow(|| a.items.iter().for_each(|x| rec(x, out))),
            Val::Obj(o) => {
                out.push(v.clone());
                grow(|| o.values().for_each(|x| rec(x, out)));
            }
            other => out.push(other.clone()),
        }
    }
    let Some(input) = input else { return Ok(None) };
    // The walk visits the expanded value: charge all of it before taking a step.
    spend(logical_size(input))?;
    let mut out = Vec::new();
    rec(input, &mut out);
    Ok(if out.len() == 1 { out.pop() } else { Some(Val::seq(out)) })
}

fn eval_range(l: Option<&Val>, r: Option<&Val>) -> R<Option<Val>> {
    let int = |v: Option<&Val>, code: &'static str| -> R<Option<f64>> {
        match v {
            None => Ok(None),
            Some(Val::Num(n)) if n.is_finite() && n.fract() == 0.0 => Ok(Some(*n)),
            Some(other) => Err(Fail::new(code).value(Some(other))),
        }
    };
    let a = int(l, "T2003")?;
    let b = int(r, "T2004")?;
    let (Some(a), Some(b)) = (a, b) else {
        return Ok(None);
    };
    if a > b {
        return Ok(None);
    }
    let size = b - a + 1.0;
    if size > MAX_RANGE {
        return Err(Fail::new("D2014").raw_value(js_number_to_string(size)));
    }
    // Count the items rather than step a float up to `b`: near 2^53 and beyond, `x + 1.0`
    // can equal `x`, and a loop on `x <= b` would never end.
    let n = size as usize;
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        out.push(Val::Num(a + i as f64));
    }
    Ok(Some(Val::seq(out)))
}

/// `fn.append`
fn append(a: Option<Val>, b: Option<Val>) -> R<Option<Val>> {
    let len = |v: &Val| if let Val::Arr(x) = v { x.items.len() } else { 1 };
    Ok(match (a, b) {
        (None, b) => b,
        (a, None) => a,
        (Some(a), Some(b)) => {
            check_arr_len(len(&a).saturating_add(len(&b)), "$append")?;
            let mut items = match a {
                Val::Arr(x) => x.items.clone(),
                v => vec![v],
            };
            match b {
                Val::Arr(y) => items.extend(y.items.iter().cloned()),
                v => items.push(v),
            }
            Some(Val::array(items))
        }
    })
}

/// `fn.boolean` (None = undefined).
fn boolean(v: Option<&Val>) -> Option<bool> {
    grow(|| boolean_inner(v))
}

fn boolean_inner(v: Option<&Val>) -> Option<bool> {
    let v = v?;
    Some(match v {
        Val::Arr(a) => match a.items.len() {
            0 => false,
            1 => boolean(Some(&a.items[0])).unwrap_or(false),
            _ => a.items.iter().any(|x| boolean(Some(x)).unwrap_or(false)),
        },
        Val::Str(s) => !s.is_empty(),
        Val::Num(n) => *n != 0.0 && !n.is_nan(),
        Val::Obj(o) => !o.is_empty(),
        Val::Bool(b) => *b,
        Val::Null | Val::Func(_) => false,
    })
}

/// Structural equality; every node compared is charged, so equal shared values cannot make
/// it run for ever.
fn deep_equal(a: &Val, b: &Val) -> R<bool> {
    grow(|| deep_equal_inner(a, b))
}

fn deep_equal_inner(a: &Val, b: &Val) -> R<bool> {
    spend(1)?;
    Ok(match (a, b) {
        (Val::Null, Val::Null) => true,
        (Val::Bool(x), Val::Bool(y)) => x == y,
        (Val::Num(x), Val::Num(y)) => x == y,
        (Val::Str(x), Val::Str(y)) => {
            spend(x.len().min(y.len()) as u64 / 16)?;
            x == y
        }
        (Val::Arr(x), Val::Arr(y)) => {
            if x.items.len() != y.items.len() {
                return Ok(false);
            }
            for (p, q) in x.items.iter().zip(y.items.iter()) {
                if !deep_equal(p, q)? {
                    return Ok(false);
                }
            }
            true
        }
        (Val::Obj(x), Val::Obj(y)) => {
            if x.len() != y.len() {
                return Ok(false);
            }
            for (k, v) in x.iter() {
                match y.get(k) {
                    Some(w) if deep_equal(v, w)? => {}
                    _ => return Ok(false),
                }
            }
            true
        }
        (Val::Func(x), Val::Func(y)) => Rc::ptr_eq(x, y),
        _ => false,
    })
}

/// JavaScript `===` (objects and arrays by identity).
fn strict_equal(a: &Val, b: &Val) -> R<bool> {
    match (a, b) {
        (Val::Arr(x), Val::Arr(y)) => Ok(Rc::ptr_eq(x, y)),
        (Val::Obj(x), Val::Obj(y)) => Ok(Rc::ptr_eq(x, y)),
        _ => deep_equal(a, b),
    }
}

// ---------------------------------------------------------------------------------------------
// Function signatures (as jsonata-js signature.js)
// ---------------------------------------------------------------------------------------------

const BUILTINS: &[(&str, &str)] = &[
    ("sum", "<a<n>:n>"),
    ("count", "<a:n>"),
    ("max", "<a<n>:n>"),
    ("min", "<a<n>:n>"),
    ("average", "<a<n>:n>"),
    ("string", "<x-b?:s>"),
    ("substring", "<s-nn?:s>"),
    ("substringBefore", "<s-s:s>"),
    ("substringAfter", "<s-s:s>"),
    ("lowercase", "<s-:s>"),
    ("uppercase", "<s-:s>"),
    ("length", "<s-:n>"),
    ("trim", "<s-:s>"),
    ("pad", "<s-ns?:s>"),
    ("match", "<s-f<s:o>n?:a<o>>"),
    ("contains", "<s-(sf):b>"),
    ("replace", "<s-(sf)(sf)n?:s>"),
    ("split", "<s-(sf)n?:a<s>>"),
    ("join", "<a<s>s?:s>"),
    ("formatNumber", "<n-so?:s>"),
    ("formatBase", "<n-n?:s>"),
    ("formatInteger", "<n-s:s>"),
    ("parseInteger", "<s-s:n>"),
    ("number", "<(nsb)-:n>"),
    ("floor", "<n-:n>"),
    ("ceil", "<n-:n>"),
    ("round", "<n-n?:n>"),
    ("abs", "<n-:n>"),
    ("sqrt", "<n-:n>"),
    ("power", "<n-n:n>"),
    ("random", "<n?:n>"),
    ("boolean", "<x-:b>"),
    ("not", "<x-:b>"),
    ("map", "<af>"),
    ("zip", "<a+>"),
    ("filter", "<af>"),
    ("single", "<af?>"),
    ("reduce", "<afj?:j>"),
    ("sift", "<o-f?:o>"),
    ("keys", "<x-:a<s>>"),
    ("lookup", "<x-s:x>"),
    ("append", "<xx:a>"),
    ("exists", "<x:b>"),
    ("spread", "<x-:a<o>>"),
    ("merge", "<a<o>:o>"),
    ("reverse", "<a:a>"),
    ("each", "<o-f:a>"),
    ("error", "<s?:x>"),
    ("assert", "<bs?:x>"),
    ("type", "<x:s>"),
    ("sort", "<af?:a>"),
    ("shuffle", "<a:a>"),
    ("distinct", "<x:x>"),
    ("base64encode", "<s-:s>"),
    ("base64decode", "<s-:s>"),
    ("encodeUrlComponent", "<s-:s>"),
    ("encodeUrl", "<s-:s>"),
    ("decodeUrlComponent", "<s-:s>"),
    ("decodeUrl", "<s-:s>"),
    ("eval", "<sx?:x>"),
    ("toMillis", "<s-s?:n>"),
    ("fromMillis", "<n-s?s?:s>"),
    ("now", "<s?s?:s>"),
    ("millis", "<:n>"),
    // AWS Step Functions additions
    ("partition", "<an:a>"),
    ("range", "<nnn:a>"),
    ("hash", "<ss?:s>"),
    ("uuid", "<:s>"),
    ("parse", "<s:x>"),
];

fn builtin(name: &str) -> Option<&'static str> {
    BUILTINS.iter().find(|(n, _)| *n == name).map(|(n, _)| *n)
}

fn signature_of(name: &str) -> &'static str {
    BUILTINS.iter().find(|(n, _)| *n == name).map(|(_, s)| *s).unwrap_or("<x*>")
}

#[derive(Debug, Clone)]
struct Param {
    allowed: String,
    typ: char,
    opt: bool,
    plus: bool,
    context: bool,
    subtype: Option<String>,
}

fn parse_signature(sig: &str) -> Vec<Param> {
    let chars: Vec<char> = sig.chars().collect();
    let mut params: Vec<Param> = Vec::new();
    let mut i = 1;
    let new =
        |allowed: &str, typ: char| Param { allowed: allowed.to_string(), typ, opt: false, plus: false, context: false, subtype: None };
    let close = |from: usize, open: char, close: char| -> usize {
        let mut depth = 1;
        let mut j = from + 1;
        while j < chars.len() {
            if chars[j] == open {
                depth += 1;
            } else if chars[j] == close {
                depth -= 1;
                if depth == 0 {
                    return j;
                }
            }
            j += 1;
        }
        chars.len()
    };
    while i < chars.len() {
        let c = chars[i];
        match c {
            ':' => break,
            's' | 'n' | 'b' | 'l' | 'o' => params.push(new(&format!("{c}m"), c)),
            'a' => params.push(new("asnblfom", 'a')),
            'f' => params.push(new("f", 'f')),
            'j' => params.push(new("asnblom", 'j')),
            'x' => params.push(new("asnblfom", 'x')),
            '-' => {
                if let Some(p) = params.last_mut() {
                    p.context = true;
                    p.opt = true;
                }
            }
            '?' => {
                if let Some(p) = params.last_mut() {
                    p.opt = true;
                }
            }
            '+' => {
                if let Some(p) = params.last_mut() {
                    p.plus = true;
                }
            }
            '(' => {
                let end = close(i, '(', ')');
                let choice: String = chars[i + 1..end.min(chars.len())].iter().collect();
                params.push(new(&format!("{choice}m"), '('));
                i = end;
            }
            '<' => {
                let end = close(i, '<', '>');
                let sub: String = chars[i + 1..end.min(chars.len())].iter().collect();
                if let Some(p) = params.last_mut() {
                    p.subtype = Some(sub);
                }
                i = end;
            }
            _ => {}
        }
        i += 1;
    }
    params
}

fn symbol(v: Option<&Val>) -> u8 {
    match v {
        None => b'm',
        Some(Val::Func(_)) => b'f',
        Some(Val::Str(_)) => b's',
        Some(Val::Num(_)) => b'n',
        Some(Val::Bool(_)) => b'b',
        Some(Val::Null) => b'l',
        Some(Val::Arr(_)) => b'a',
        Some(Val::Obj(_)) => b'o',
    }
}

/// Backtracking match of argument symbols against parameters, in the priority order a
/// JavaScript regex `^(p1)(p2)...$` would use. Returns how many symbols each param took.
fn match_params(params: &[Param], sig: &[u8], anchored: bool) -> Option<Vec<usize>> {
    fn go(params: &[Param], sig: &[u8], ai: usize, anchored: bool, out: &mut Vec<usize>) -> bool {
        let Some(p) = params.first() else {
            return !anchored || ai == sig.len();
        };
        let mut max = 0;
        while ai + max < sig.len() && p.allowed.as_bytes().contains(&sig[ai + max]) {
            max += 1;
            if !p.plus {
                break;
            }
        }
        let min = usize::from(!p.opt);
        let mut n = max;
        loop {
            if n < min {
                return false;
            }
            out.push(n);
            if go(&params[1..], sig, ai + n, anchored, out) {
                return true;
            }
            out.pop();
            if n == 0 {
                return false;
            }
            n -= 1;
        }
    }
    let mut out = Vec::new();
    if go(params, sig, 0, anchored, &mut out) { Some(out) } else { None }
}

fn array_type_name(sub: &str) -> &'static str {
    match sub.chars().next() {
        Some('a') => "arrays",
        Some('b') => "booleans",
        Some('f') => "functions",
        Some('n') => "numbers",
        Some('o') => "objects",
        Some('s') => "strings",
        _ => "values",
    }
}

fn validate_args(name: &str, args: Vec<Option<Val>>, context: Option<&Val>) -> R<Vec<Option<Val>>> {
    let params = parse_signature(signature_of(name));
    let sig: Vec<u8> = args.iter().map(|a| symbol(a.as_ref())).collect();
    let Some(counts) = match_params(&params, &sig, true) else {
        // locate the first argument that does not fit
        let mut good_to = 0;
        for k in 0..params.len() {
            match match_params(&params[..=k], &sig, false) {
                None => break,
                Some(c) => good_to = c.iter().sum(),
            }
        }
        return Err(Fail::new("T0410").index(good_to + 1).value(args.get(good_to).and_then(|a| a.as_ref())));
    };
    let mut out = Vec::with_capacity(params.len());
    let mut ai = 0;
    for (p, &count) in params.iter().zip(counts.iter()) {
        if count == 0 {
            if p.context {
                if p.allowed.as_bytes().contains(&symbol(context)) {
                    out.push(context.cloned());
                } else {
                    return Err(Fail::new("T0411").index(ai + 1).value(context));
                }
            } else {
                out.push(args.get(ai).cloned().flatten());
                ai += 1;
            }
            continue;
        }
        for k in 0..count {
            let arg = args.get(ai).cloned().flatten();
            let single = sig[ai];
            if p.typ == 'a' {
                if single == b'm' {
                    out.push(None);
                } else {
                    let arg = arg.unwrap_or(Val::Null);
                    if let Some(sub) = &p.subtype {
                        let want = sub.as_bytes().first().copied().unwrap_or(b'x');
                        let ok = if single != b'a' {
                            single == want || sub.len() > 1
                        } else if let Val::Arr(a) = &arg {
                            match a.items.first() {
                                None => true,
                                Some(first) => {
                                    let t = symbol(Some(first));
                                    t == want && a.items.iter().all(|v| symbol(Some(v)) == t)
                                }
                            }
                        } else {
                            true
                        };
                        if !ok {
                            let mut f = Fail::new("T0412").index(ai + 1).value(Some(&arg));
                            f.typ = Some(array_type_name(sub));
                            return Err(f);
                        }
                    }
                    if single != b'a' {
                        out.push(Some(Val::array(vec![arg])));
                    } else {
                        out.push(Some(arg));
                    }
                }
            } else {
                out.push(arg);
            }
            let _ = k;
            ai += 1;
        }
    }
    Ok(out)
}

fn native_arity(name: &str) -> usize {
    parse_signature(signature_of(name)).iter().filter(|p| !p.opt || p.context).count().max(1)
}

// ---------------------------------------------------------------------------------------------
// Number and string formatting helpers
// ---------------------------------------------------------------------------------------------

/// JavaScript `Number.prototype.toString()`.
fn js_number_to_string(n: f64) -> String {
    if n.is_nan() {
        return "NaN".into();
    }
    if n.is_infinite() {
        return if n > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    if n == 0.0 {
        return "0".into();
    }
    let s = format!("{:e}", n.abs());
    let (mant, exp) = s.split_once('e').unwrap_or((&s, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mant.chars().filter(|c| *c != '.').collect();
    let k = digits.len() as i32;
    let nn = exp + 1;
    let body = if k <= nn && nn <= 21 {
        let mut d = digits;
        d.push_str(&"0".repeat((nn - k) as usize));
        d
    } else if 0 < nn && nn <= 21 {
        format!("{}.{}", &digits[..nn as usize], &digits[nn as usize..])
    } else if -6 < nn && nn <= 0 {
        format!("0.{}{}", "0".repeat((-nn) as usize), digits)
    } else {
        let e = nn - 1;
        let sign = if e >= 0 { '+' } else { '-' };
        if k == 1 { format!("{digits}e{sign}{}", e.abs()) } else { format!("{}.{}e{sign}{}", &digits[..1], &digits[1..], e.abs()) }
    };
    if n < 0.0 { format!("-{body}") } else { body }
}

/// `Number(n.toPrecision(15))`
fn precision15(n: f64) -> f64 {
    format!("{n:.14e}").parse().unwrap_or(n)
}

fn quote_json_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| format!("\"{s}\""))
}

/// `JSON.stringify` as used in error messages (no number normalisation, never fails).
/// A value quoted in an error message is cut at 1,000 characters (with `…`): a cause quotes
/// what was wrong, it does not carry the data.
fn json_stringify_opt(v: Option<&Val>) -> String {
    const QUOTED: usize = 1000;
    match v {
        None => "undefined".into(),
        Some(v) => {
            let mut text = stringify(v, None, false).unwrap_or_default();
            if text.len() > QUOTED {
                let mut end = QUOTED;
                while !text.is_char_boundary(end) {
                    end -= 1;
                }
                text.truncate(end);
                text.push('…');
            }
            text
        }
    }
}

fn stringify(v: &Val, indent: Option<usize>, normalise: bool) -> R<String> {
    let mut out = String::new();
    stringify_into(v, indent, 0, normalise, &mut out)?;
    Ok(out)
}

fn stringify_into(v: &Val, indent: Option<usize>, level: usize, normalise: bool, out: &mut String) -> R<()> {
    grow(|| stringify_into_inner(v, indent, level, normalise, out))
}

fn stringify_into_inner(v: &Val, indent: Option<usize>, level: usize, normalise: bool, out: &mut String) -> R<()> {
    // Values share structure (`[$a, $a]`), so the text can be exponentially larger than the
    // value: stop as soon as it is over the limit. Each node written is charged.
    spend(1)?;
    check_str_len(out.len(), "$string")?;
    if let Some(w) = indent {
        check_str_len(w.saturating_mul(level).saturating_add(out.len()), "$string")?;
    }
    let nl = |out: &mut String, lvl: usize| {
        if let Some(w) = indent {
            out.push('\n');
            out.push_str(&" ".repeat(w * lvl));
        }
    };
    match v {
        Val::Null => out.push_str("null"),
        Val::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Val::Num(n) => {
            if !n.is_finite() {
                if normalise {
                    return Err(Fail::new("D1001").raw_value(js_number_to_string(*n)));
                }
                out.push_str("null");
            } else {
                let x = if normalise { precision15(*n) } else { *n };
                out.push_str(&js_number_to_string(x));
            }
        }
        Val::Str(s) => {
            check_str_len(out.len().saturating_add(s.len()), "$string")?;
            out.push_str(&quote_json_string(s));
        }
        Val::Func(_) => out.push_str("\"\""),
        Val::Arr(a) => {
            out.push('[');
            for (i, x) in a.items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                nl(out, level + 1);
                stringify_into(x, indent, level + 1, normalise, out)?;
            }
            if !a.items.is_empty() {
                nl(out, level);
            }
            out.push(']');
        }
        Val::Obj(o) => {
            out.push('{');
            for (i, (k, x)) in o.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                nl(out, level + 1);
                out.push_str(&quote_json_string(k));
                out.push(':');
                if indent.is_some() {
                    out.push(' ');
                }
                stringify_into(x, indent, level + 1, normalise, out)?;
            }
            if !o.is_empty() {
                nl(out, level);
            }
            out.push('}');
        }
    }
    Ok(())
}

/// `$string()`
fn fn_string(v: &Val, prettify: bool) -> R<String> {
    match v {
        Val::Str(s) => Ok(s.to_string()),
        Val::Func(_) => Ok(String::new()),
        Val::Num(n) if !n.is_finite() => Err(Fail::new("D3001").value(Some(v))),
        other => stringify(other, if prettify { Some(2) } else { None }, true),
    }
}

/// jsonata `$round` (round half to even, with decimal shifting done on the string form).
fn js_round(arg: f64, precision: Option<f64>) -> f64 {
    let shift = |x: f64, p: f64| -> f64 {
        let s = js_number_to_string(x);
        let (m, e) = match s.split_once('e') {
            Some((m, e)) => (m.to_string(), e.parse::<f64>().unwrap_or(0.0)),
            None => (s.clone(), 0.0),
        };
        format!("{m}e{}", js_number_to_string(e + p)).parse().unwrap_or(x)
    };
    let p = precision.filter(|p| *p != 0.0);
    let mut a = arg;
    if let Some(p) = p {
        a = shift(a, p);
    }
    // Math.round: nearest integer, ties towards +infinity
    let fl = a.floor();
    let mut result = if a - fl >= 0.5 { fl + 1.0 } else { fl };
    let diff = result - a;
    if diff.abs() == 0.5 && (result % 2.0).abs() == 1.0 {
        result -= 1.0;
    }
    if let Some(p) = p {
        result = shift(result, -p);
    }
    if result == 0.0 { 0.0 } else { result }
}

struct Match {
    matched: String,
    start: usize,
    end: usize,
    groups: Vec<String>,
}

/// Successive regex matches with jsonata's iteration rules (a zero-length match after the
/// first one is error D1004; iteration stops when the previous match ended at the end).
fn regex_matches(re: &regex::Regex, s: &str, limit: Option<usize>) -> R<Vec<Match>> {
    let mut out = Vec::new();
    let mut pos = 0usize;
    let mut first = true;
    let mut char_pos = 0usize;
    let mut byte_pos = 0usize;
    let mut to_chars = |b: usize| -> usize {
        if b >= byte_pos {
            char_pos += s[byte_pos..b].chars().count();
        } else {
            char_pos = s[..b].chars().count();
        }
        byte_pos = b;
        char_pos
    };
    loop {
        if limit.is_some_and(|l| out.len() >= l) {
            break;
        }
        if !first && pos >= s.len() {
            break;
        }
        let Some(caps) = re.captures_at(s, pos) else {
            break;
        };
        let Some(m) = caps.get(0) else {
            break;
        };
        if !first && m.as_str().is_empty() {
            return Err(Fail::new("D1004"));
        }
        first = false;
        let groups = (1..caps.len()).map(|i| caps.get(i).map(|g| g.as_str().to_string()).unwrap_or_default()).collect();
        let start = to_chars(m.start());
        let end = to_chars(m.end());
        out.push(Match { matched: m.as_str().to_string(), start, end, groups });
        pos = m.end();
    }
    Ok(out)
}

fn byte_index_of_char(s: &str, ci: usize) -> usize {
    s.char_indices().nth(ci).map(|(b, _)| b).unwrap_or(s.len())
}

// ---------------------------------------------------------------------------------------------
// Native functions
// ---------------------------------------------------------------------------------------------

fn nums(a: &Arr) -> impl Iterator<Item = f64> + '_ {
    a.items.iter().map(|v| if let Val::Num(n) = v { *n } else { 0.0 })
}

fn arr_of(v: Option<&Val>) -> Option<Rc<Arr>> {
    match v {
        Some(Val::Arr(a)) => Some(a.clone()),
        Some(other) => Some(Rc::new(Arr { items: vec![other.clone()], ..Arr::default() })),
        None => None,
    }
}

fn num_arg(v: Option<&Val>) -> Option<f64> {
    match v {
        Some(Val::Num(n)) => Some(*n),
        _ => None,
    }
}

fn str_arg(v: Option<&Val>) -> Option<Rc<str>> {
    match v {
        Some(Val::Str(s)) => Some(s.clone()),
        _ => None,
    }
}

fn num(n: f64) -> R<Option<Val>> {
    Ok(Some(Val::Num(n)))
}

fn js_truthy(v: Option<&Val>) -> bool {
    match v {
        None | Some(Val::Null) => false,
        Some(Val::Bool(b)) => *b,
        Some(Val::Num(n)) => *n != 0.0 && !n.is_nan(),
        Some(Val::Str(s)) => !s.is_empty(),
        Some(_) => true,
    }
}

/// JavaScript `String.prototype.split(sep, limit)` (sep a plain string).
fn js_split(s: &str, sep: &str, limit: Option<usize>) -> Vec<Val> {
    let mut parts: Vec<Val> =
        if sep.is_empty() { s.chars().map(|c| Val::string(c.to_string())).collect() } else { s.split(sep).map(Val::str).collect() };
    if let Some(l) = limit {
        parts.truncate(l);
    }
    parts
}

fn to_limit(v: Option<&Val>) -> Option<usize> {
    num_arg(v).map(|n| if n.is_finite() { n.max(0.0) as usize } else { usize::MAX })
}

impl Evaluator<'_, '_> {
    fn random_f64(&mut self) -> f64 {
        ((self.random)() >> 11) as f64 / (1u64 << 53) as f64
    }

    #[allow(clippy::too_many_lines)]
    fn call_native(&mut self, name: &str, args: Vec<Option<Val>>, input: Option<&Val>, env: &Env) -> R<Option<Val>> {
        let a0 = args.first().and_then(|a| a.as_ref());
        let a1 = args.get(1).and_then(|a| a.as_ref());
        let a2 = args.get(2).and_then(|a| a.as_ref());
        let a3 = args.get(3).and_then(|a| a.as_ref());
        match name {
            // ---------------------------------------------------------------- aggregation
            "sum" => match a0 {
                Some(Val::Arr(a)) => num(nums(a).sum()),
                _ => Ok(None),
            },
            "count" => num(match a0 {
                None => 0.0,
                Some(Val::Arr(a)) => a.items.len() as f64,
                Some(_) => 1.0,
            }),
            "max" | "min" | "average" => {
                let Some(Val::Arr(a)) = a0 else {
                    return Ok(None);
                };
                if a.items.is_empty() {
                    return Ok(None);
                }
                let v = match name {
                    "max" => nums(a).fold(f64::NEG_INFINITY, f64::max),
                    "min" => nums(a).fold(f64::INFINITY, f64::min),
                    _ => nums(a).sum::<f64>() / a.items.len() as f64,
                };
                num(v)
            }
            // ---------------------------------------------------------------- strings
            "string" => match a0 {
                None => Ok(None),
                Some(v) => Ok(Some(Val::string(fn_string(v, matches!(a1, Some(Val::Bool(true))))?))),
            },
            "substring" => {
                let Some(s) = str_arg(a0) else {
                    return Ok(None);
                };
                let chars: Vec<char> = s.chars().collect();
                let len = chars.len() as f64;
                let mut start = num_arg(a1).unwrap_or(0.0);
                if len + start < 0.0 {
                    start = 0.0;
                }
                let slice = |st: f64, en: f64| -> String {
                    let norm = |x: f64| -> usize {
                        let x = if x.is_nan() { 0.0 } else { x.trunc() };
                        let x = if x < 0.0 { (len + x).max(0.0) } else { x.min(len) };
                        x as usize
                    };
                    let (b, e) = (norm(st), norm(en));
                    if b >= e { String::new() } else { chars[b..e].iter().collect() }
                };
                let out = match num_arg(a2) {
                    Some(l) => {
                        if l <= 0.0 {
                            String::new()
                        } else {
                            let end = if start >= 0.0 { start + l } else { len + start + l };
                            slice(start, end)
                        }
                    }
                    None => slice(start, len),
                };
                Ok(Some(Val::string(out)))
            }
            "substringBefore" | "substringAfter" => {
                let Some(s) = str_arg(a0) else {
                    return Ok(None);
                };
                let Some(c) = str_arg(a1) else {
                    return Ok(Some(Val::Str(s)));
                };
                Ok(Some(match s.find(&*c) {
                    None => Val::Str(s.clone()),
                    Some(i) if name == "substringBefore" => Val::str(&s[..i]),
                    Some(i) => Val::str(&s[i + c.len()..]),
                }))
            }
            "lowercase" => Ok(str_arg(a0).map(|s| Val::string(s.to_lowercase()))),
            "uppercase" => Ok(str_arg(a0).map(|s| Val::string(s.to_uppercase()))),
            "length" => Ok(str_arg(a0).map(|s| Val::Num(s.chars().count() as f64))),
            "trim" => Ok(str_arg(a0).map(|s| {
                let collapsed = s.split([' ', '\t', '\n', '\r']).filter(|p| !p.is_empty()).collect::<Vec<_>>().join(" ");
                // jsonata only collapses [ \t\n\r]+ runs, then trims single spaces at the ends
                Val::string(collapsed)
            })),
            "pad" => {
                let Some(s) = str_arg(a0) else {
                    return Ok(None);
                };
                let width = num_arg(a1).unwrap_or(0.0);
                let ch = str_arg(a2).filter(|c| !c.is_empty()).unwrap_or_else(|| Rc::from(" "));
                let len = s.chars().count();
                let target = width.abs().min(1e300) as usize;
                if target <= len {
                    return Ok(Some(Val::Str(s)));
                }
                let widest = ch.chars().map(char::len_utf8).max().unwrap_or(1);
                check_str_len((target - len).saturating_mul(widest).saturating_add(s.len()), "$pad")?;
                let padding: String = ch.chars().cycle().take(target - len).collect();
                Ok(Some(Val::string(if width > 0.0 { format!("{s}{padding}") } else { format!("{padding}{s}") })))
            }
            "contains" => {
                let Some(s) = str_arg(a0) else {
                    return Ok(None);
                };
                let found = match a1 {
                    Some(Val::Str(t)) => s.contains(&**t),
                    Some(f @ Val::Func(_)) => !self.matcher_all(f, &s, Some(1), env)?.is_empty(),
                    _ => false,
                };
                Ok(Some(Val::Bool(found)))
            }
            "match" => {
                let Some(s) = str_arg(a0) else {
                    return Ok(None);
                };
                if num_arg(a2).is_some_and(|l| l < 0.0) {
                    return Err(Fail::new("D3040").value(a2));
                }
                let Some(f) = a1 else {
                    return Ok(None);
                };
                let ms = self.matcher_all(f, &s, to_limit(a2), env)?;
                let out = ms
                    .into_iter()
                    .map(|m| {
                        let mut o = Obj::new();
                        o.insert("match".into(), Val::string(m.matched));
                        o.insert("index".into(), Val::Num(m.start as f64));
                        o.insert("groups".into(), Val::array(m.groups.into_iter().map(Val::string).collect()));
                        Val::object(o)
                    })
                    .collect();
                Ok(Some(Val::seq(out)))
            }
            "replace" => self.fn_replace(a0, a1, a2, a3, env),
            "split" => {
                let Some(s) = str_arg(a0) else {
                    return Ok(None);
                };
                if num_arg(a2).is_some_and(|l| l < 0.0) {
                    return Err(Fail::new("D3020").value(a2));
                }
                let limit = to_limit(a2);
                if limit == Some(0) {
                    return Ok(Some(Val::array(vec![])));
                }
                let parts = match a1 {
                    Some(Val::Str(sep)) => js_split(&s, sep, limit),
                    Some(f @ Val::Func(_)) => {
                        let ms = self.matcher_all(f, &s, limit, env)?;
                        let mut out = Vec::new();
                        let mut start = 0usize;
                        let chars: Vec<char> = s.chars().collect();
                        let count = ms.len();
                        for m in ms {
                            let st = m.start.clamp(start, chars.len());
                            out.push(Val::string(chars[start..st].iter().collect()));
                            start = m.end.min(chars.len()).max(start);
                        }
                        if limit.is_none_or(|l| count < l) {
                            out.push(Val::string(chars[start..].iter().collect()));
                        }
                        out
                    }
                    _ => vec![Val::Str(s.clone())],
                };
                Ok(Some(Val::array(parts)))
            }
            "join" => {
                let Some(Val::Arr(a)) = a0 else {
                    return Ok(None);
                };
                let sep = str_arg(a1).unwrap_or_else(|| Rc::from(""));
                let parts: Vec<&str> = a.items.iter().map(|v| if let Val::Str(s) = v { &**s } else { "" }).collect();
                let total =
                    parts.iter().map(|p| p.len()).fold(sep.len().saturating_mul(parts.len().saturating_sub(1)), usize::saturating_add);
                check_str_len(total, "$join")?;
                Ok(Some(Val::string(parts.join(&sep))))
            }
            "formatBase" => {
                let Some(n) = num_arg(a0) else {
                    return Ok(None);
                };
                let n = js_round(n, None);
                let radix = num_arg(a1).unwrap_or(10.0);
                if !(2.0..=36.0).contains(&radix) {
                    return Err(Fail::new("D3100").value(a1));
                }
                Ok(Some(Val::string(format_radix(n, radix as u32))))
            }
            "formatNumber" => {
                let Some(n) = num_arg(a0) else {
                    return Ok(None);
                };
                let pic = str_arg(a1).unwrap_or_else(|| Rc::from("0"));
                Ok(Some(Val::string(format_number(n, &pic, a2)?)))
            }
            "formatInteger" => {
                let Some(n) = num_arg(a0) else {
                    return Ok(None);
                };
                let pic = str_arg(a1).unwrap_or_else(|| Rc::from("0"));
                Ok(Some(Val::string(format_integer(n, &pic)?)))
            }
            "parseInteger" => {
                let Some(s) = str_arg(a0) else {
                    return Ok(None);
                };
                let pic = str_arg(a1).unwrap_or_else(|| Rc::from("0"));
                Ok(parse_integer(&s, &pic).map(Val::Num))
            }
            "base64encode" => Ok(str_arg(a0).map(|s| {
                use base64::Engine;
                Val::string(base64::engine::general_purpose::STANDARD.encode(s.as_bytes()))
            })),
            "base64decode" => Ok(str_arg(a0).map(|s| {
                use base64::Engine;
                let cleaned: String = s.chars().filter(|c| !c.is_whitespace()).collect();
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(cleaned.trim_end_matches('=').to_string() + &"=".repeat((4 - cleaned.trim_end_matches('=').len() % 4) % 4))
                    .unwrap_or_default();
                Val::string(String::from_utf8_lossy(&bytes).into_owned())
            })),
            "encodeUrlComponent" | "encodeUrl" => {
                let Some(s) = str_arg(a0) else {
                    return Ok(None);
                };
                Ok(Some(Val::string(url_encode(&s, name == "encodeUrl"))))
            }
            "decodeUrlComponent" | "decodeUrl" => {
                let Some(s) = str_arg(a0) else {
                    return Ok(None);
                };
                match url_decode(&s, name == "decodeUrl") {
                    Some(d) => Ok(Some(Val::string(d))),
                    None => Err(Fail::new("D3140").token(name).value(a0)),
                }
            }
            // ---------------------------------------------------------------- numbers
            "number" => match a0 {
                None => Ok(None),
                Some(Val::Num(n)) => num(*n),
                Some(Val::Bool(b)) => num(if *b { 1.0 } else { 0.0 }),
                Some(Val::Str(s)) => match parse_js_number(s) {
                    Some(n) => num(n),
                    None => Err(Fail::new("D3030").value(a0)),
                },
                Some(other) => Err(Fail::new("D3030").value(Some(other))),
            },
            "floor" => Ok(num_arg(a0).map(|n| Val::Num(n.floor()))),
            "ceil" => Ok(num_arg(a0).map(|n| Val::Num(n.ceil()))),
            "abs" => Ok(num_arg(a0).map(|n| Val::Num(n.abs()))),
            "round" => Ok(num_arg(a0).map(|n| Val::Num(js_round(n, num_arg(a1))))),
            "sqrt" => match num_arg(a0) {
                None => Ok(None),
                Some(n) if n < 0.0 => Err(Fail::new("D3060").value(a0)),
                Some(n) => num(n.sqrt()),
            },
            "power" => {
                let (Some(b), Some(e)) = (num_arg(a0), num_arg(a1)) else {
                    return Ok(None);
                };
                let r = b.powf(e);
                if !r.is_finite() {
                    return Err(Fail::new("D3061").value(a0).value2(a1));
                }
                num(r)
            }
            "random" => match num_arg(a0) {
                Some(seed) => {
                    let mut x = seed.to_bits() ^ 0x9E37_79B9_7F4A_7C15;
                    x = splitmix64(&mut x);
                    num((x >> 11) as f64 / (1u64 << 53) as f64)
                }
                None => {
                    let r = self.random_f64();
                    num(r)
                }
            },
            // ---------------------------------------------------------------- booleans
            "boolean" => Ok(boolean(a0).map(Val::Bool)),
            "not" => Ok(boolean(a0).map(|b| Val::Bool(!b))),
            "exists" => Ok(Some(Val::Bool(a0.is_some()))),
            // ---------------------------------------------------------------- arrays / HOFs
            "map" | "filter" => {
                let (Some(arr), Some(f)) = (arr_of(a0), a1) else {
                    return Ok(None);
                };
                let whole = Val::Arr(arr.clone());
                let mut out = Vec::new();
                for (i, v) in arr.items.iter().enumerate() {
                    let r = self.apply(f, Self::hof_args(f, v, i, &whole), None, env)?;
                    if name == "map" {
                        if let Some(r) = r {
                            out.push(r);
                        }
                    } else if boolean(r.as_ref()).unwrap_or(false) {
                        out.push(v.clone());
                    }
                }
                Ok(Some(Val::seq(out)))
            }
            "single" => {
                let Some(arr) = arr_of(a0) else {
                    return Ok(None);
                };
                let whole = Val::Arr(arr.clone());
                let mut found: Option<Val> = None;
                for (i, v) in arr.items.iter().enumerate() {
                    let ok = match a1 {
                        Some(f) => {
                            let r = self.apply(f, Self::hof_args(f, v, i, &whole), None, env)?;
                            boolean(r.as_ref()).unwrap_or(false)
                        }
                        None => true,
                    };
                    if ok {
                        if found.is_some() {
                            return Err(Fail::new("D3138"));
                        }
                        found = Some(v.clone());
                    }
                }
                match found {
                    Some(v) => Ok(Some(v)),
                    None => Err(Fail::new("D3139")),
                }
            }
            "reduce" => {
                let (Some(arr), Some(f)) = (arr_of(a0), a1) else {
                    return Ok(None);
                };
                let arity = Self::arity(f);
                if arity < 2 {
                    return Err(Fail::new("D3050").index(1));
                }
                let whole = Val::Arr(arr.clone());
                let (mut acc, start) = match (a2, arr.items.first()) {
                    (None, Some(first)) => (Some(first.clone()), 1),
                    _ => (a2.cloned(), 0),
                };
                for i in start..arr.items.len() {
                    let mut fa = vec![acc, Some(arr.items[i].clone())];
                    if arity >= 3 {
                        fa.push(Some(Val::Num(i as f64)));
                    }
                    if arity >= 4 {
                        fa.push(Some(whole.clone()));
                    }
                    acc = self.apply(f, fa, None, env)?;
                }
                Ok(acc)
            }
            "sort" => {
                let Some(arr) = arr_of(a0) else {
                    return Ok(None);
                };
                if arr.items.len() <= 1 {
                    return Ok(Some(Val::Arr(arr)));
                }
                let items = arr.items.clone();
                let sorted = match a1 {
                    None => {
                        let all_num = items.iter().all(|v| matches!(v, Val::Num(_)));
                        let all_str = items.iter().all(|v| matches!(v, Val::Str(_)));
                        if !all_num && !all_str {
                            return Err(Fail::new("D3070").index(1));
                        }
                        merge_sort(items, &mut |x, y| {
                            Ok(match (x, y) {
                                (Val::Num(p), Val::Num(q)) => p > q,
                                (Val::Str(p), Val::Str(q)) => cmp_str(p, q) > 0,
                                _ => false,
                            })
                        })?
                    }
                    Some(f) => {
                        let f = f.clone();
                        merge_sort(items, &mut |x, y| {
                            let r = self.apply(&f, vec![Some(x.clone()), Some(y.clone())], None, env)?;
                            Ok(js_truthy(r.as_ref()))
                        })?
                    }
                };
                Ok(Some(Val::array(sorted)))
            }
            "reverse" => Ok(arr_of(a0).map(|a| {
                let mut items = a.items.clone();
                items.reverse();
                Val::array(items)
            })),
            "shuffle" => Ok(arr_of(a0).map(|a| {
                let mut items = a.items.clone();
                for i in (1..items.len()).rev() {
                    let j = ((self.random)() % (i as u64 + 1)) as usize;
                    items.swap(i, j);
                }
                Val::array(items)
            })),
            "distinct" => match a0 {
                Some(Val::Arr(a)) if a.items.len() > 1 => {
                    let mut out: Vec<Val> = Vec::new();
                    for v in a.items.iter() {
                        let mut seen = false;
                        for x in out.iter() {
                            if deep_equal(x, v)? {
                                seen = true;
                                break;
                            }
                        }
                        if !seen {
                            out.push(v.clone());
                        }
                    }
                    Ok(Some(if a.seq { Val::seq(out) } else { Val::array(out) }))
                }
                other => Ok(other.cloned()),
            },
            "zip" => {
                let arrays: Vec<Rc<Arr>> = args.iter().filter_map(|a| arr_of(a.as_ref())).collect();
                let n = arrays.iter().map(|a| a.items.len()).min().unwrap_or(0);
                let out = (0..n).map(|i| Val::array(arrays.iter().map(|a| a.items[i].clone()).collect())).collect();
                Ok(Some(Val::array(out)))
            }
            "append" => append(a0.cloned(), a1.cloned()),
            "partition" => {
                let Some(arr) = arr_of(a0) else {
                    return Ok(None);
                };
                let size = num_arg(a1).unwrap_or(0.0);
                if size.is_nan() || size < 1.0 || size.fract() != 0.0 {
                    return Err(Fail::new("D3200").msg(format!(
                        "The size argument of the partition function must be a positive integer, but was {}",
                        json_stringify_opt(a1)
                    )));
                }
                let chunks = arr.items.chunks(size.min(1e9) as usize).map(|c| Val::array(c.to_vec())).collect();
                Ok(Some(Val::array(chunks)))
            }
            "range" => {
                let (Some(start), Some(end), Some(step)) = (num_arg(a0), num_arg(a1), num_arg(a2)) else {
                    return Ok(None);
                };
                if step == 0.0 || !step.is_finite() || !start.is_finite() || !end.is_finite() {
                    return Err(Fail::new("D3200").msg("The step argument of the range function must be a non-zero number"));
                }
                let count = ((end - start) / step).floor() + 1.0;
                if count > MAX_RANGE {
                    return Err(Fail::new("D2014").raw_value(js_number_to_string(count)));
                }
                let mut out = Vec::new();
                if count >= 1.0 {
                    for i in 0..count as u64 {
                        out.push(Val::Num(start + step * i as f64));
                    }
                }
                Ok(Some(Val::seq(out)))
            }
            // ---------------------------------------------------------------- objects
            "keys" => {
                let mut keys: Vec<String> = Vec::new();
                let mut add = |o: &Obj| {
                    for k in o.keys() {
                        if !keys.contains(k) {
                            keys.push(k.clone());
                        }
                    }
                };
                match a0 {
                    Some(Val::Obj(o)) => add(o),
                    Some(Val::Arr(a)) => {
                        for v in a.items.iter() {
                            if let Val::Obj(o) = v {
                                add(o);
                            }
                        }
                    }
                    _ => {}
                }
                Ok(Some(Val::seq(keys.into_iter().map(Val::string).collect())))
            }
            "lookup" => {
                let key = str_arg(a1).unwrap_or_else(|| Rc::from(""));
                lookup_field(a0, &key)
            }
            "spread" => {
                fn spread(v: &Val, out: &mut Vec<Val>) {
                    match v {
                        Val::Arr(a) => grow(|| a.items.iter().for_each(|x| spread(x, out))),
                        Val::Obj(o) => {
                            for (k, x) in o.iter() {
                                let mut one = Obj::new();
                                one.insert(k.clone(), x.clone());
                                out.push(Val::object(one));
                            }
                        }
                        other => out.push(other.clone()),
                    }
                }
                let Some(v) = a0 else {
                    return Ok(None);
                };
                if !matches!(v, Val::Arr(_) | Val::Obj(_)) {
                    return Ok(Some(v.clone()));
                }
                let mut out = Vec::new();
                spread(v, &mut out);
                Ok(Some(Val::seq(out)))
            }
            "merge" => {
                let Some(Val::Arr(a)) = a0 else {
                    return Ok(None);
                };
                let mut out = Obj::new();
                for v in a.items.iter() {
                    if let Val::Obj(o) = v {
                        for (k, x) in o.iter() {
                            out.insert(k.clone(), x.clone());
                        }
                    }
                }
                Ok(Some(Val::object(out)))
            }
            "each" | "sift" => {
                let (Some(Val::Obj(o)), Some(f)) = (a0, a1) else {
                    return Ok(None);
                };
                let o = o.clone();
                let whole = Val::Obj(o.clone());
                let n = Self::arity(f);
                let mut seq = Vec::new();
                let mut kept = Obj::new();
                for (k, v) in o.iter() {
                    let mut fa = vec![Some(v.clone())];
                    if n >= 2 {
                        fa.push(Some(Val::str(k)));
                    }
                    if n >= 3 {
                        fa.push(Some(whole.clone()));
                    }
                    let r = self.apply(f, fa, None, env)?;
                    if name == "each" {
                        if let Some(r) = r {
                            seq.push(r);
                        }
                    } else if boolean(r.as_ref()).unwrap_or(false) {
                        kept.insert(k.clone(), v.clone());
                    }
                }
                if name == "each" {
                    Ok(Some(Val::seq(seq)))
                } else if kept.is_empty() {
                    Ok(None)
                } else {
                    Ok(Some(Val::object(kept)))
                }
            }
            "type" => Ok(a0.map(|v| {
                Val::str(match v {
                    Val::Null => "null",
                    Val::Num(_) => "number",
                    Val::Str(_) => "string",
                    Val::Bool(_) => "boolean",
                    Val::Arr(_) => "array",
                    Val::Func(_) => "function",
                    Val::Obj(_) => "object",
                })
            })),
            "error" => {
                Err(Fail::new("D3137").msg(str_arg(a0).map(|s| s.to_string()).unwrap_or_else(|| "$error() function evaluated".into())))
            }
            "assert" => {
                if matches!(a0, Some(Val::Bool(true))) {
                    Ok(None)
                } else {
                    Err(Fail::new("D3141").msg(str_arg(a1).map(|s| s.to_string()).unwrap_or_else(|| "$assert() statement failed".into())))
                }
            }
            "eval" => {
                let Some(src) = str_arg(a0) else {
                    return Ok(None);
                };
                let ast = parse(&src).map_err(|e| Fail::new("D3120").raw_value(quote_json_string(&e.render())))?;
                let ctx = if args.len() > 1 { a1.cloned() } else { input.cloned() };
                self.eval(&ast, ctx.as_ref(), env).map_err(|e| {
                    if e.code == "U1001" || e.code == "U1002" { e } else { Fail::new("D3121").raw_value(quote_json_string(&e.render())) }
                })
            }
            // ---------------------------------------------------------------- date/time
            "millis" => num(self.now_ms as f64),
            "now" => Ok(Some(Val::string(format_datetime(self.now_ms as f64, str_arg(a0).as_deref(), str_arg(a1).as_deref())?))),
            "fromMillis" => match num_arg(a0) {
                None => Ok(None),
                Some(ms) => Ok(Some(Val::string(format_datetime(ms, str_arg(a1).as_deref(), str_arg(a2).as_deref())?))),
            },
            "toMillis" => {
                let Some(s) = str_arg(a0) else {
                    return Ok(None);
                };
                if a1.is_some() {
                    return Err(Fail::new("D3200").msg("$toMillis with a picture string is not supported"));
                }
                match parse_iso8601(&s) {
                    Some(ms) => num(ms as f64),
                    None => Err(Fail::new("D3110").value(a0)),
                }
            }
            // ---------------------------------------------------------------- AWS additions
            "uuid" => {
                let hi = (self.random)();
                let lo = (self.random)();
                let mut b = [0u8; 16];
                b[..8].copy_from_slice(&hi.to_be_bytes());
                b[8..].copy_from_slice(&lo.to_be_bytes());
                b[6] = (b[6] & 0x0f) | 0x40;
                b[8] = (b[8] & 0x3f) | 0x80;
                let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
                Ok(Some(Val::string(format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32]))))
            }
            "parse" => {
                let Some(s) = str_arg(a0) else {
                    return Ok(None);
                };
                match serde_json::from_str::<Json>(&s) {
                    Ok(j) => Ok(Some(from_json(&j))),
                    Err(e) => Err(Fail::new("D3200").msg(format!("Unable to parse {} as JSON: {e}", quote_json_string(&s)))),
                }
            }
            "hash" => {
                let Some(s) = str_arg(a0) else {
                    return Ok(None);
                };
                let algo = str_arg(a1).unwrap_or_else(|| Rc::from("SHA-256"));
                let bytes = s.as_bytes();
                let hex = |d: &[u8]| d.iter().map(|x| format!("{x:02x}")).collect::<String>();
                let out = match &*algo {
                    "MD5" => {
                        use md5::Digest;
                        hex(&md5::Md5::digest(bytes))
                    }
                    "SHA-1" => {
                        use sha1::Digest;
                        hex(&sha1::Sha1::digest(bytes))
                    }
                    "SHA-256" => {
                        use sha2::Digest;
                        hex(&sha2::Sha256::digest(bytes))
                    }
                    "SHA-384" => {
                        use sha2::Digest;
                        hex(&sha2::Sha384::digest(bytes))
                    }
                    "SHA-512" => {
                        use sha2::Digest;
                        hex(&sha2::Sha512::digest(bytes))
                    }
                    other => {
                        return Err(Fail::new("D3200").msg(format!(
                            "The hash algorithm {} is not supported; use one of MD5, SHA-1, SHA-256, SHA-384, SHA-512",
                            quote_json_string(other)
                        )));
                    }
                };
                Ok(Some(Val::string(out)))
            }
            _ => Err(Fail::new("T1006")),
        }
    }

    /// All matches of a matcher (regex) over `s`.
    fn matcher_all(&mut self, f: &Val, s: &str, limit: Option<usize>, _env: &Env) -> R<Vec<Match>> {
        match f {
            Val::Func(func) => match &**func {
                Func::Regex(re) => regex_matches(re, s, limit),
                _ => Err(Fail::new("T1010")),
            },
            _ => Err(Fail::new("T1010")),
        }
    }

    fn fn_replace(&mut self, a0: Option<&Val>, a1: Option<&Val>, a2: Option<&Val>, a3: Option<&Val>, env: &Env) -> R<Option<Val>> {
        let Some(s) = str_arg(a0) else {
            return Ok(None);
        };
        if matches!(a1, Some(Val::Str(p)) if p.is_empty()) {
            return Err(Fail::new("D3010").value(a1));
        }
        if num_arg(a3).is_some_and(|l| l < 0.0) {
            return Err(Fail::new("D3011").value(a3));
        }
        let limit = to_limit(a3);
        if limit == Some(0) {
            return Ok(Some(Val::Str(s)));
        }
        match a1 {
            Some(Val::Str(pat)) => {
                let Some(Val::Str(rep)) = a2 else {
                    return Err(Fail::new("D3012"));
                };
                let mut out = String::new();
                let mut rest: &str = &s;
                let mut count = 0;
                while let Some(i) = rest.find(&**pat) {
                    if limit.is_some_and(|l| count >= l) {
                        break;
                    }
                    check_str_len(
                        out.len().saturating_add(i).saturating_add(rep.len()).saturating_add(rest.len() - i - pat.len()),
                        "$replace",
                    )?;
                    out.push_str(&rest[..i]);
                    out.push_str(rep);
                    rest = &rest[i + pat.len()..];
                    count += 1;
                }
                out.push_str(rest);
                Ok(Some(Val::string(out)))
            }
            Some(f @ Val::Func(_)) => {
                let ms = self.matcher_all(f, &s, limit, env)?;
                if ms.is_empty() {
                    return Ok(Some(Val::Str(s)));
                }
                let mut out = String::new();
                let mut pos_b = 0usize;
                for m in ms {
                    let sb = byte_index_of_char(&s, m.start);
                    let eb = byte_index_of_char(&s, m.end);
                    if sb >= pos_b {
                        out.push_str(&s[pos_b..sb]);
                    }
                    let replaced = match a2 {
                        Some(Val::Str(rep)) => substitute(rep, &m, out.len())?,
                        Some(rf @ Val::Func(_)) => {
                            let mut o = Obj::new();
                            o.insert("match".into(), Val::str(&m.matched));
                            o.insert("index".into(), Val::Num(m.start as f64));
                            o.insert("groups".into(), Val::array(m.groups.iter().map(|g| Val::str(g)).collect()));
                            match self.apply(rf, vec![Some(Val::object(o))], None, env)? {
                                Some(Val::Str(r)) => r.to_string(),
                                other => {
                                    return Err(Fail::new("D3012").value(other.as_ref()));
                                }
                            }
                        }
                        _ => return Err(Fail::new("D3012")),
                    };
                    check_str_len(
                        out.len().saturating_add(replaced.len()).saturating_add(s.len() - eb.max(pos_b).min(s.len())),
                        "$replace",
                    )?;
                    out.push_str(&replaced);
                    pos_b = eb.max(pos_b);
                }
                out.push_str(&s[pos_b..]);
                Ok(Some(Val::string(out)))
            }
            _ => Ok(Some(Val::Str(s))),
        }
    }
}

/// `$n` substitution in `$replace` replacement strings (as jsonata-js).
/// `base` is the length of the text already built, for the size limit.
fn substitute(rep: &str, m: &Match, base: usize) -> R<String> {
    let chars: Vec<char> = rep.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    let ng = m.groups.len();
    while i < chars.len() {
        check_str_len(base.saturating_add(out.len()), "$replace")?;
        let c = chars[i];
        if c != '$' {
            out.push(c);
            i += 1;
            continue;
        }
        let next = chars.get(i + 1).copied();
        match next {
            Some('$') => {
                out.push('$');
                i += 2;
            }
            Some('0') => {
                out.push_str(&m.matched);
                i += 2;
            }
            Some(d) if d.is_ascii_digit() => {
                let max_digits = if ng == 0 { 1 } else { ng.to_string().len() };
                let digits: String = chars[i + 1..].iter().take(max_digits).take_while(|c| c.is_ascii_digit()).collect();
                let mut idx: usize = digits.parse().unwrap_or(0);
                let mut used = digits.len();
                if max_digits > 1 && idx > ng && used > 1 {
                    idx = digits[..used - 1].parse().unwrap_or(0);
                    used -= 1;
                }
                if ng > 0
                    && idx >= 1
                    && let Some(g) = m.groups.get(idx - 1)
                {
                    out.push_str(g);
                }
                i += 1 + used;
            }
            _ => {
                out.push('$');
                i += 1;
            }
        }
    }
    Ok(out)
}

fn splitmix64(x: &mut u64) -> u64 {
    *x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// `$number()` string conversion: decimal JSON-style numbers, or 0x/0o/0b integers.
fn parse_js_number(s: &str) -> Option<f64> {
    let b = s.as_bytes();
    let mut i = 0;
    if b.first() == Some(&b'-') {
        i += 1;
    }
    let ds = i;
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    let decimal_ok = i > ds && {
        let mut j = i;
        let mut ok = true;
        if j < b.len() && b[j] == b'.' {
            j += 1;
            let fs = j;
            while j < b.len() && b[j].is_ascii_digit() {
                j += 1;
            }
            ok = j > fs;
        }
        if ok && j < b.len() && (b[j] == b'e' || b[j] == b'E') {
            j += 1;
            if j < b.len() && (b[j] == b'+' || b[j] == b'-') {
                j += 1;
            }
            let es = j;
            while j < b.len() && b[j].is_ascii_digit() {
                j += 1;
            }
            ok = j > es;
        }
        ok && j == b.len()
    };
    if decimal_ok {
        return s.parse::<f64>().ok().filter(|n| n.is_finite());
    }
    let lower = s.to_ascii_lowercase();
    let (radix, digits) = if let Some(d) = lower.strip_prefix("0x") {
        (16, d)
    } else if let Some(d) = lower.strip_prefix("0o") {
        (8, d)
    } else if let Some(d) = lower.strip_prefix("0b") {
        (2, d)
    } else {
        return None;
    };
    if digits.is_empty() {
        return None;
    }
    let mut v = 0f64;
    for c in digits.chars() {
        v = v * radix as f64 + c.to_digit(radix)? as f64;
    }
    Some(v)
}

fn format_radix(n: f64, radix: u32) -> String {
    if !n.is_finite() {
        return js_number_to_string(n);
    }
    let neg = n < 0.0;
    let mut x = n.abs();
    let mut digits = Vec::new();
    if x < 1.0 {
        digits.push('0');
    }
    while x >= 1.0 {
        let d = (x % radix as f64) as u32;
        digits.push(std::char::from_digit(d, radix).unwrap_or('0'));
        x = (x / radix as f64).floor();
    }
    if neg {
        digits.push('-');
    }
    digits.iter().rev().collect()
}

fn url_encode(s: &str, whole_uri: bool) -> String {
    let mut out = String::new();
    for c in s.chars() {
        let keep = c.is_ascii_alphanumeric() || "-_.!~*'()".contains(c) || (whole_uri && ";,/?:@&=+$#".contains(c));
        if keep {
            out.push(c);
        } else {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        }
    }
    out
}

fn url_decode(s: &str, whole_uri: bool) -> Option<String> {
    let b = s.as_bytes();
    let mut out: Vec<u8> = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let h = s.get(i + 1..i + 3)?;
            let v = u8::from_str_radix(h, 16).ok()?;
            if whole_uri && v < 0x80 && ";/?:@&=+$,#".contains(v as char) {
                out.extend_from_slice(&b[i..i + 3]);
            } else {
                out.push(v);
            }
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

// ---------------------------------------------------------------------------------------------
// $formatNumber / $formatInteger / $parseInteger (XPath F&O picture strings, common subset)
// ---------------------------------------------------------------------------------------------

fn format_number(n: f64, picture: &str, options: Option<&Val>) -> R<String> {
    let opt = |key: &str, def: char| -> char {
        match options {
            Some(Val::Obj(o)) => match o.get(key) {
                Some(Val::Str(s)) => s.chars().next().unwrap_or(def),
                _ => def,
            },
            _ => def,
        }
    };
    let dec = opt("decimal-separator", '.');
    let grp = opt("grouping-separator", ',');
    let pct = opt("percent", '%');
    let pml = opt("per-mille", '\u{2030}');
    let sep = opt("pattern-separator", ';');
    let subs: Vec<&str> = picture.split(sep).collect();
    if subs.len() > 2 {
        return Err(Fail::new("D3080"));
    }
    let (pic, neg_prefix) = if n < 0.0 {
        match subs.get(1) {
            Some(p) => (*p, ""),
            None => (subs[0], "-"),
        }
    } else {
        (subs[0], "")
    };
    let chars: Vec<char> = pic.chars().collect();
    let active = |c: char| c.is_ascii_digit() || c == '#' || c == dec || c == grp;
    let first = chars.iter().position(|c| active(*c)).unwrap_or(chars.len());
    let last = chars.iter().rposition(|c| active(*c)).map(|i| i + 1).unwrap_or(first);
    // allow an exponent marker between digits
    let mut body_end = last;
    let mut exp_digits = 0usize;
    if body_end < chars.len() && chars[body_end] == 'e' {
        let mut j = body_end + 1;
        while j < chars.len() && chars[j].is_ascii_digit() {
            j += 1;
        }
        exp_digits = j - body_end - 1;
        if exp_digits > 0 {
            body_end = j;
        }
    }
    let prefix: String = chars[..first].iter().collect();
    let suffix: String = chars[body_end..].iter().collect();
    let body: String = chars[first..last].iter().collect();
    let (int_pic, frac_pic) = match body.split_once(dec) {
        Some((i, f)) => (i.to_string(), f.to_string()),
        None => (body.clone(), String::new()),
    };
    let min_int = int_pic.chars().filter(|c| c.is_ascii_digit()).count();
    let min_frac = frac_pic.chars().filter(|c| c.is_ascii_digit()).count();
    let max_frac = frac_pic.chars().filter(|c| c.is_ascii_digit() || *c == '#').count();
    // grouping positions counted from the right of the integer part
    let mut groups = Vec::new();
    let mut count = 0;
    for c in int_pic.chars().rev() {
        if c == grp {
            groups.push(count);
        } else {
            count += 1;
        }
    }
    let mut v = n.abs();
    if prefix.contains(pct) || suffix.contains(pct) {
        v *= 100.0;
    } else if prefix.contains(pml) || suffix.contains(pml) {
        v *= 1000.0;
    }
    let mut exp_str = String::new();
    if exp_digits > 0 && v != 0.0 {
        let int_digits = min_int.max(1) as i32;
        let mut e = v.log10().floor() as i32 + 1 - int_digits;
        let mut m = v / 10f64.powi(e);
        m = js_round(m, Some(max_frac as f64));
        if m >= 10f64.powi(int_digits) {
            m /= 10.0;
            e += 1;
        }
        v = m;
        let es = e.abs().to_string();
        exp_str = format!("e{}{}{}", if e < 0 { "-" } else { "" }, "0".repeat(exp_digits.saturating_sub(es.len())), es);
    } else if exp_digits > 0 {
        exp_str = format!("e{}", "0".repeat(exp_digits));
    }
    let rounded = js_round(v, Some(max_frac as f64));
    let s = format!("{:.*}", max_frac, rounded);
    let (ip, fp) = match s.split_once('.') {
        Some((i, f)) => (i.to_string(), f.to_string()),
        None => (s.clone(), String::new()),
    };
    let mut ip = ip.trim_start_matches('0').to_string();
    while ip.len() < min_int {
        ip.insert(0, '0');
    }
    let mut fp = fp;
    while fp.len() > min_frac && fp.ends_with('0') {
        fp.pop();
    }
    if ip.is_empty() && fp.is_empty() {
        ip.push('0');
    }
    // grouping
    let regular = !groups.is_empty() && groups.iter().all(|g| g % groups[0] == 0) && groups[0] > 0;
    let mut grouped = String::new();
    let digits: Vec<char> = ip.chars().collect();
    for (k, c) in digits.iter().enumerate() {
        let from_right = digits.len() - k;
        if k > 0 {
            let at = from_right;
            let is_group = if regular { at.is_multiple_of(groups[0]) } else { groups.contains(&at) };
            if is_group {
                grouped.push(grp);
            }
        }
        grouped.push(*c);
    }
    let mut out = format!("{neg_prefix}{prefix}{grouped}");
    if !fp.is_empty() {
        out.push(dec);
        out.push_str(&fp);
    }
    out.push_str(&exp_str);
    out.push_str(&suffix);
    Ok(out)
}

fn roman(mut n: u64) -> String {
    const T: [(u64, &str); 13] = [
        (1000, "m"),
        (900, "cm"),
        (500, "d"),
        (400, "cd"),
        (100, "c"),
        (90, "xc"),
        (50, "l"),
        (40, "xl"),
        (10, "x"),
        (9, "ix"),
        (5, "v"),
        (4, "iv"),
        (1, "i"),
    ];
    let mut s = String::new();
    for (v, r) in T {
        while n >= v {
            s.push_str(r);
            n -= v;
        }
    }
    s
}

/// Spreadsheet-style letters (`a`..`z`, `aa`, ...), computed in `f64` as jsonata-js does, so
/// any finite value works.
fn letters(n: f64) -> String {
    let mut s = Vec::new();
    let mut v = n;
    while v > 0.0 {
        // `(v - 1) % 26` is in 0..26 for finite v >= 1.
        let d = ((v - 1.0) % 26.0).clamp(0.0, 25.0) as u8;
        s.push((b'a' + d) as char);
        v = ((v - 1.0) / 26.0).floor();
    }
    s.iter().rev().collect()
}

/// English words for a non-negative integer, as jsonata-js `numberToWords`: the largest scale
/// word is "trillion", so 1e15 is "one thousand trillion" and 1e18 "one million trillion".
/// Computed in `f64` with the same arithmetic, so any finite value gives jsonata's answer.
fn words(n: f64, ordinal: bool) -> String {
    const FEW: [&str; 20] = [
        "zero",
        "one",
        "two",
        "three",
        "four",
        "five",
        "six",
        "seven",
        "eight",
        "nine",
        "ten",
        "eleven",
        "twelve",
        "thirteen",
        "fourteen",
        "fifteen",
        "sixteen",
        "seventeen",
        "eighteen",
        "nineteen",
    ];
    const ORDINALS: [&str; 20] = [
        "zeroth",
        "first",
        "second",
        "third",
        "fourth",
        "fifth",
        "sixth",
        "seventh",
        "eighth",
        "ninth",
        "tenth",
        "eleventh",
        "twelfth",
        "thirteenth",
        "fourteenth",
        "fifteenth",
        "sixteenth",
        "seventeenth",
        "eighteenth",
        "nineteenth",
    ];
    const DECADES: [&str; 8] = ["twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"];
    const MAGNITUDES: [&str; 4] = ["thousand", "million", "billion", "trillion"];
    // Indices below are bounded by the branch conditions (and clamped besides), so no input
    // can index out of range.
    fn idx(x: f64, len: usize) -> usize {
        (x.max(0.0) as usize).min(len - 1)
    }
    fn lookup(num: f64, prev: bool, ord: bool, out: &mut String) {
        if num <= 19.0 {
            if prev {
                out.push_str(" and ");
            }
            out.push_str(if ord { ORDINALS[idx(num, 20)] } else { FEW[idx(num, 20)] });
        } else if num < 100.0 {
            let tens = (num / 10.0).floor();
            let remainder = num % 10.0;
            if prev {
                out.push_str(" and ");
            }
            let decade = DECADES[idx(tens - 2.0, 8)];
            if remainder > 0.0 {
                out.push_str(decade);
                out.push('-');
                lookup(remainder, false, ord, out);
            } else if ord {
                out.push_str(&decade[..decade.len() - 1]);
                out.push_str("ieth");
            } else {
                out.push_str(decade);
            }
        } else if num < 1000.0 {
            let hundreds = (num / 100.0).floor();
            let remainder = num % 100.0;
            if prev {
                out.push_str(", ");
            }
            out.push_str(FEW[idx(hundreds, 20)]);
            out.push_str(" hundred");
            if remainder > 0.0 {
                lookup(remainder, true, ord, out);
            } else if ord {
                out.push_str("th");
            }
        } else {
            let mag = ((num.log10() / 3.0).floor().max(1.0) as usize).min(MAGNITUDES.len());
            let factor = 10f64.powi(3 * mag as i32);
            let mant = (num / factor).floor();
            let remainder = num - mant * factor;
            if prev {
                out.push_str(", ");
            }
            // mant < num / 1000, so the recursion depth is at most ~26 for f64.
            grow(|| lookup(mant, false, false, out));
            out.push(' ');
            out.push_str(MAGNITUDES[mag - 1]);
            if remainder > 0.0 {
                grow(|| lookup(remainder, true, ord, out));
            } else if ord {
                out.push_str("th");
            }
        }
    }
    let mut out = String::new();
    if n.is_finite() {
        lookup(n.max(0.0), false, ordinal, &mut out);
    }
    out
}

fn ordinal_suffix(n: u64) -> &'static str {
    match (n % 10, n % 100) {
        (1, r) if r != 11 => "st",
        (2, r) if r != 12 => "nd",
        (3, r) if r != 13 => "rd",
        _ => "th",
    }
}

fn case_as(s: &str, pic: &str) -> String {
    let mut it = pic.chars();
    let first_upper = it.next().is_some_and(|c| c.is_uppercase());
    let rest_upper = it.next().is_some_and(|c| c.is_uppercase());
    if first_upper && (rest_upper || pic.chars().count() == 1) {
        s.to_uppercase()
    } else if first_upper {
        s.split(' ')
            .map(|w| {
                let mut c = w.chars();
                match c.next() {
                    Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
                    None => String::new(),
                }
            })
            .collect::<Vec<_>>()
            .join(" ")
    } else {
        s.to_string()
    }
}

fn format_integer(n: f64, picture: &str) -> R<String> {
    if !n.is_finite() {
        return Err(Fail::new("D3001").raw_value(js_number_to_string(n)));
    }
    let (pic, modifier) = match picture.rsplit_once(';') {
        Some((p, m)) => (p, m),
        None => (picture, ""),
    };
    let ordinal = modifier.starts_with('o');
    let neg = n < 0.0;
    let value = n.abs().trunc();
    let sign = if neg { "-" } else { "" };
    let body = match pic {
        "I" if value < 100_000.0 => roman(value as u64).to_uppercase(),
        "i" if value < 100_000.0 => roman(value as u64),
        "A" => letters(value).to_uppercase(),
        "a" => letters(value),
        "w" | "W" => case_as(&words(value, ordinal), pic),
        // jsonata-js title case: every number word capitalised ("Thirty-Four"), "and" not.
        "Ww" => {
            let mut out = String::new();
            let mut start = true;
            let w = words(value, ordinal);
            for (i, c) in w.char_indices() {
                if start && !w[i..].starts_with("and ") {
                    out.extend(c.to_uppercase());
                } else {
                    out.push(c);
                }
                start = c == ' ' || c == '-';
            }
            out
        }
        _ => {
            let digits_pic: Vec<char> = pic.chars().collect();
            let min = digits_pic.iter().filter(|c| c.is_ascii_digit()).count();
            let mut groups = Vec::new();
            let mut count = 0;
            let mut gsep = ',';
            for c in digits_pic.iter().rev() {
                if c.is_ascii_digit() || *c == '#' {
                    count += 1;
                } else {
                    groups.push(count);
                    gsep = *c;
                }
            }
            // '' + value, as jsonata-js (exponent form from 1e21 up).
            let mut s = js_number_to_string(value);
            if s.len() < min {
                s = "0".repeat(min - s.len()) + &s;
            }
            let regular = !groups.is_empty() && groups[0] > 0 && groups.iter().all(|g| g % groups[0] == 0);
            let d: Vec<char> = s.chars().collect();
            let mut out = String::new();
            for (k, c) in d.iter().enumerate() {
                let at = d.len() - k;
                if k > 0 && ((regular && at.is_multiple_of(groups[0])) || (!regular && groups.contains(&at))) {
                    out.push(gsep);
                }
                out.push(*c);
            }
            if ordinal {
                let last = d.last().and_then(|c| c.to_digit(10)).unwrap_or(0);
                let tens = if d.len() > 1 { d.get(d.len() - 2).and_then(|c| c.to_digit(10)).unwrap_or(0) } else { 0 };
                out.push_str(ordinal_suffix(u64::from(tens * 10 + last)));
            }
            out
        }
    };
    Ok(format!("{sign}{body}"))
}

fn parse_integer(s: &str, picture: &str) -> Option<f64> {
    let pic = picture.split(';').next().unwrap_or(picture);
    match pic {
        "I" | "i" => {
            let mut total = 0i64;
            let mut prev = 0i64;
            for c in s.to_lowercase().chars().rev() {
                let v = match c {
                    'i' => 1,
                    'v' => 5,
                    'x' => 10,
                    'l' => 50,
                    'c' => 100,
                    'd' => 500,
                    'm' => 1000,
                    _ => return None,
                };
                if v < prev {
                    total -= v;
                } else {
                    total += v;
                    prev = v;
                }
            }
            Some(total as f64)
        }
        "A" | "a" => {
            let mut total = 0f64;
            for c in s.to_lowercase().chars() {
                if !c.is_ascii_lowercase() {
                    return None;
                }
                total = total * 26.0 + (c as u8 - b'a' + 1) as f64;
            }
            Some(total)
        }
        _ => {
            let digits: String = s.chars().filter(|c| c.is_ascii_digit() || *c == '-').collect();
            digits.parse::<f64>().ok()
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Date/time
// ---------------------------------------------------------------------------------------------

fn parse_tz_offset(tz: &str) -> Option<i32> {
    let t = tz.trim();
    let (sign, rest) = match t.chars().next()? {
        '+' => (1, &t[1..]),
        '-' => (-1, &t[1..]),
        _ => (1, t),
    };
    let digits: String = rest.chars().filter(|c| c.is_ascii_digit()).collect();
    let (h, m) = match digits.len() {
        1 | 2 => (digits.parse::<i32>().ok()?, 0),
        3 | 4 => {
            let split = digits.len() - 2;
            (digits[..split].parse().ok()?, digits[split..].parse().ok()?)
        }
        _ => return None,
    };
    Some(sign * (h * 60 + m))
}

const MONTHS: [&str; 12] =
    ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"];
const DAYS: [&str; 7] = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"];

fn format_datetime(ms: f64, picture: Option<&str>, tz: Option<&str>) -> R<String> {
    use chrono::{Datelike, Timelike};
    let bad = || Fail::new("D3200").msg(format!("Unable to format timestamp {}", js_number_to_string(ms)));
    if !ms.is_finite() {
        return Err(bad());
    }
    let offset = match tz {
        Some(t) => parse_tz_offset(t).ok_or_else(bad)?,
        None => 0,
    };
    let utc = chrono::DateTime::from_timestamp_millis(ms.floor() as i64).ok_or_else(bad)?;
    if picture.is_none() && tz.is_none() {
        return Ok(utc.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string());
    }
    let pic = picture.unwrap_or("[Y0001]-[M01]-[D01]T[H01]:[m01]:[s01].[f001][Z01:01t]");
    let dt = utc.naive_utc() + chrono::Duration::minutes(offset as i64);
    let chars: Vec<char> = pic.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '[' && chars.get(i + 1) == Some(&'[') {
            out.push('[');
            i += 2;
            continue;
        }
        if c == ']' && chars.get(i + 1) == Some(&']') {
            out.push(']');
            i += 2;
            continue;
        }
        if c != '[' {
            out.push(c);
            i += 1;
            continue;
        }
        let Some(len) = chars[i + 1..].iter().position(|&x| x == ']') else {
            return Err(Fail::new("D3200").msg("Unterminated marker in date/time picture string"));
        };
        let marker: String = chars[i + 1..i + 1 + len].iter().filter(|c| !c.is_whitespace()).collect();
        i += len + 2;
        let mut mc = marker.chars();
        let Some(comp) = mc.next() else {
            continue;
        };
        let spec: String = mc.collect();
        let (pres, width) = match spec.split_once(',') {
            Some((p, w)) => (p.to_string(), Some(w.to_string())),
            None => (spec, None),
        };
        let max_width: Option<usize> = width.as_deref().and_then(|w| w.split('-').nth(1)).and_then(|m| m.parse().ok());
        let default_pres = match comp {
            'F' | 'P' => "n",
            'm' | 's' => "01",
            'Z' | 'z' => "01:01",
            _ => "1",
        };
        let pres = if pres.is_empty() { default_pres.to_string() } else { pres };
        let (pres, ordinal) = match pres.strip_suffix('o') {
            Some(p) if !p.is_empty() => (p.to_string(), true),
            _ => (pres, false),
        };
        let name = |full: &str| -> String {
            let mut s = case_as(full, &pres);
            if pres == "n" {
                s = s.to_lowercase();
            }
            if let Some(mw) = max_width {
                s = s.chars().take(mw).collect();
            }
            s
        };
        let number = |v: i64| -> String {
            if pres.chars().all(|c| c.is_ascii_digit() || c == '#' || c == ',') {
                let min = pres.chars().filter(|c| c.is_ascii_digit()).count();
                let mut s = v.abs().to_string();
                while s.len() < min {
                    s.insert(0, '0');
                }
                if ordinal {
                    s.push_str(ordinal_suffix(v.unsigned_abs()));
                }
                if v < 0 {
                    s.insert(0, '-');
                }
                s
            } else {
                // v is a finite date component, so this cannot fail.
                format_integer(v as f64, &(pres.clone() + if ordinal { ";o" } else { "" })).unwrap_or_default()
            }
        };
        let text = match comp {
            'Y' => {
                let y = dt.year() as i64;
                let digits = pres.chars().filter(|c| c.is_ascii_digit()).count();
                if digits == 2 && pres.chars().all(|c| c.is_ascii_digit()) { number(y.rem_euclid(100)) } else { number(y) }
            }
            'M' if pres.starts_with(['N', 'n']) => name(MONTHS[dt.month0() as usize]),
            'M' => number(dt.month() as i64),
            'D' => number(dt.day() as i64),
            'd' => number(dt.ordinal() as i64),
            'F' if pres.starts_with(['N', 'n']) => name(DAYS[dt.weekday().num_days_from_monday() as usize]),
            'F' => number(dt.weekday().number_from_monday() as i64),
            'W' => number(dt.iso_week().week() as i64),
            'w' => number(((dt.day() as i64 - 1) / 7) + 1),
            'H' => number(dt.hour() as i64),
            'h' => {
                let h = dt.hour() % 12;
                number(if h == 0 { 12 } else { h as i64 })
            }
            'P' => name(if dt.hour() < 12 { "am" } else { "pm" }),
            'm' => number(dt.minute() as i64),
            's' => number(dt.second() as i64),
            'f' => {
                let d = pres.chars().filter(|c| c.is_ascii_digit()).count().max(1);
                let ms3 = format!("{:03}", dt.nanosecond() / 1_000_000);
                if d <= 3 { ms3[..d].to_string() } else { format!("{ms3}{}", "0".repeat(d - 3)) }
            }
            'Z' | 'z' => {
                let zulu = pres.ends_with('t');
                let p = pres.trim_end_matches('t');
                if zulu && offset == 0 {
                    "Z".to_string()
                } else {
                    let sign = if offset < 0 { '-' } else { '+' };
                    let (h, m) = (offset.abs() / 60, offset.abs() % 60);
                    let body = if p.contains(':') {
                        format!("{h:02}:{m:02}")
                    } else if p.len() >= 4 {
                        format!("{h:02}{m:02}")
                    } else if m == 0 {
                        format!("{h:0w$}", w = p.len().max(1))
                    } else {
                        format!("{h:0w$}:{m:02}", w = p.len().max(1))
                    };
                    if comp == 'z' { format!("GMT{sign}{body}") } else { format!("{sign}{body}") }
                }
            }
            'E' => "AD".to_string(),
            'C' => "ISO".to_string(),
            _ => {
                return Err(Fail::new("D3200").msg(format!("Unsupported component [{comp}] in date/time picture string")));
            }
        };
        out.push_str(&text);
    }
    Ok(out)
}

/// ISO 8601 timestamp to Unix milliseconds (dates without an offset are UTC).
fn parse_iso8601(s: &str) -> Option<i64> {
    use chrono::{NaiveDate, NaiveDateTime, NaiveTime};
    let s = s.trim();
    if let Ok(dt) = chrono::DateTime::parse_from_rfc3339(s) {
        return Some(dt.timestamp_millis());
    }
    let (date_part, time_part) = match s.split_once(['T', 't', ' ']) {
        Some((d, t)) => (d, Some(t)),
        None => (s, None),
    };
    let date = match date_part.len() {
        4 => NaiveDate::from_ymd_opt(date_part.parse().ok()?, 1, 1)?,
        7 => NaiveDate::parse_from_str(&format!("{date_part}-01"), "%Y-%m-%d").ok()?,
        10 => NaiveDate::parse_from_str(date_part, "%Y-%m-%d").ok()?,
        _ => return None,
    };
    let Some(t) = time_part else {
        return Some(date.and_hms_opt(0, 0, 0)?.and_utc().timestamp_millis());
    };
    let (clock, offset) = if let Some(c) = t.strip_suffix(['Z', 'z']) {
        (c, 0)
    } else if let Some(i) = t.rfind(['+', '-']) {
        (&t[..i], parse_tz_offset(&t[i..])?)
    } else {
        (t, 0)
    };
    let time = ["%H:%M:%S%.f", "%H:%M:%S", "%H:%M", "%H%M%S"].iter().find_map(|f| NaiveTime::parse_from_str(clock, f).ok())?;
    let ndt = NaiveDateTime::new(date, time);
    Some(ndt.and_utc().timestamp_millis() - offset as i64 * 60_000)
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Vectors extracted from the AWS-recorded conformance corpus (LocalStack test suite,
    /// Apache-2.0; see each `source`): a Pass state's `Output`/`Assign` templates or a Choice
    /// `Condition`, with the state input, the variables in scope and what AWS produced.
    const CORPUS_VECTORS: &str = r#"
[
{"expected":true,"expr":"$contains(\"hello$world\", /^hello\\$/)","input":{},"source":"localstack:tests/aws/services/stepfunctions/v2/evaluate_jsonata/test_base_evaluate_expressions.py::TestBaseEvaluateJsonata::test_base_jsonata_regular_expressions[BASE]#0","variables":{}},
{"expected":false,"expr":"$contains(\"hello$world\", /^hello\\ /)","input":{},"source":"localstack:tests/aws/services/stepfunctions/v2/evaluate_jsonata/test_base_evaluate_expressions.py::TestBaseEvaluateJsonata::test_base_jsonata_regular_expressions[BASE_FALSE]#0","variables":{}},
{"expected":false,"expr":"$contains('hello$world', /^hello\\ /)","input":{},"source":"localstack:tests/aws/services/stepfunctions/v2/evaluate_jsonata/test_base_evaluate_expressions.py::TestBaseEvaluateJsonata::test_base_jsonata_regular_expressions[BASE_SINGLE_QUOTE_FALSE]#0","variables":{}},
{"expected":{"foo":"bar","hello":"world"},"expr":"$merge([$states.input.part1, $states.input.part2])","input":{"part1":{"hello":"world"},"part2":{"foo":"bar"}},"source":"localstack:tests/aws/services/stepfunctions/v2/evaluate_jsonata/test_base_evaluate_expressions.py::TestBaseEvaluateJsonata::test_merge_with_dynamic_args#0","variables":{}},
{"expected":[[0]],"expr":"$partition($states.input.FunctionInput.fst, $states.input.FunctionInput.snd)","input":{"FunctionInput":{"fst":[0],"snd":2}},"source":"localstack:tests/aws/services/stepfunctions/v2/intrinsic_functions/test_array_jsonata.py::TestArrayJSONata::test_array_partition#1","variables":{}},
{"expected":[[0]],"expr":"$partition($states.input.FunctionInput.fst, $states.input.FunctionInput.snd)","input":{"FunctionInput":{"fst":[0],"snd":3}},"source":"localstack:tests/aws/services/stepfunctions/v2/intrinsic_functions/test_array_jsonata.py::TestArrayJSONata::test_array_partition#2","variables":{}},
{"expected":[[0]],"expr":"$partition($states.input.FunctionInput.fst, $states.input.FunctionInput.snd)","input":{"FunctionInput":{"fst":[0],"snd":4}},"source":"localstack:tests/aws/services/stepfunctions/v2/intrinsic_functions/test_array_jsonata.py::TestArrayJSONata::test_array_partition#3","variables":{}},
{"expected":[[0]],"expr":"$partition($states.input.FunctionInput.fst, $states.input.FunctionInput.snd)","input":{"FunctionInput":{"fst":[0],"snd":5}},"source":"localstack:tests/aws/services/stepfunctions/v2/intrinsic_functions/test_array_jsonata.py::TestArrayJSONata::test_array_partition#4","variables":{}},
{"expected":[[0],[1]],"expr":"$partition($states.input.FunctionInput.fst, $states.input.FunctionInput.snd)","input":{"FunctionInput":{"fst":[0,1],"snd":1}},"source":"localstack:tests/aws/services/stepfunctions/v2/intrinsic_functions/test_array_jsonata.py::TestArrayJSONata::test_array_partition#5","variables":{}},
{"expected":[[0,1]],"expr":"$partition($states.input.FunctionInput.fst, $states.input.FunctionInput.snd)","input":{"FunctionInput":{"fst":[0,1],"snd":2}},"source":"localstack:tests/aws/services/stepfunctions/v2/intrinsic_functions/test_array_jsonata.py::TestArrayJSONata::test_array_partition#6","variables":{}},
{"expected":[[0,1]],"expr":"$partition($states.input.FunctionInput.fst, $states.input.FunctionInput.snd)","input":{"FunctionInput":{"fst":[0,1],"snd":3}},"source":"localstack:tests/aws/services/stepfunctions/v2/intrinsic_functions/test_array_jsonata.py::TestArrayJSONata::test_array_partition#7","variables":{}},
{"expected":[[0,1]],"expr":"$partition($states.input.FunctionInput.fst, $states.input.FunctionInput.snd)","input":{"FunctionInput":{"fst":[0,1],"snd":4}},"source":"localstack:tests/aws/services/stepfunctions/v2/intrinsic_functions/test_array_jsonata.py::TestArrayJSONata::test_array_partition#8","variables":{}},
{"expected":[[0,1]],"expr":"$partition($states.input.FunctionInput.fst, $states.input.FunctionInput.snd)","input":{"FunctionInput":{"fst":[0,1],"snd":5}},"source":"localstack:tests/aws/services/stepfunctions/v2/intrinsic_functions/test_array_jsonata.py::TestArrayJSONata::test_array_partition#9","variables":{}},
{"expected":[[0,1],[2]],"expr":"$partition($states.input.FunctionInput.fst, $states.input.FunctionInput.snd)","input":{"FunctionInput":{"fst":[0,1,2],"snd":2}},"source":"localstack:tests/aws/services/stepfunctions/v2/intrinsic_functions/test_array_jsonata.py::TestArrayJSONata::test_array_partition#11","variables":{}},
{"expected":[[0,1,2]],"expr":"$partition($states.input.FunctionInput.fst, $states.input.FunctionInput.snd)","input":{"FunctionInput":{"fst":[0,1,2],"snd":4}},"source":"localstack:tests/aws/services/stepfunctions/v2/intrinsic_functions/test_array_jsonata.py::TestArrayJSONata::test_array_partition#13","variables":{}},
{"expected":[[0,1,2]],"expr":"$partition($states.input.FunctionInput.fst, $states.input.FunctionInput.snd)","input":{"FunctionInput":{"fst":[0,1,2],"snd":5}},"source":"localstack:tests/aws/services/stepfunctions/v2/intrinsic_functions/test_array_jsonata.py::TestArrayJSONata::test_array_partition#14","variables":{}},
{"expected":[[0],[1],[2],[3]],"expr":"$partition($states.input.FunctionInput.fst, $states.input.FunctionInput.snd)","input":{"FunctionInput":{"fst":[0,1,2,3],"snd":1}},"source":"localstack:tests/aws/services/stepfunctions/v2/intrinsic_functions/test_array_jsonata.py::TestArrayJSONata::test_array_partition#15","variables":{}},
{"expected":[[0,1],[2,3]],"expr":"$partition($states.input.FunctionInput.fst, $states.input.FunctionInput.snd)","input":{"FunctionInput":{"fst":[0,1,2,3],"snd":2}},"source":"localstack:tests/aws/services/stepfunctions/v2/intrinsic_functions/test_array_jsonata.py::TestArrayJSONata::test_array_partition#16","variables":{}},
{"expected":[[0,1,2],[3]],"expr":"$partition($states.input.FunctionInput.fst, $states.input.FunctionInput.snd)","input":{"FunctionInput":{"fst":[0,1,2,3],"snd":3}},"source":"localstack:tests/aws/services/stepfunctions/v2/intrinsic_functions/test_array_jsonata.py::TestArrayJSONata::test_array_partition#17","variables":{}},
{"expected":[[0,1,2,3]],"expr":"$partition($states.input.FunctionInput.fst, $states.input.FunctionInput.snd)","input":{"FunctionInput":{"fst":[0,1,2,3],"snd":5}},"source":"localstack:tests/aws/services/stepfunctions/v2/intrinsic_functions/test_array_jsonata.py::TestArrayJSONata::test_array_partition#19","variables":{}},
{"expected":[0,3,6,9],"expr":"$range($states.input.FunctionInput.fst, $states.input.FunctionInput.snd, $states.input.FunctionInput.trd)","input":{"FunctionInput":{"fst":0,"snd":9,"trd":3}},"source":"localstack:tests/aws/services/stepfunctions/v2/intrinsic_functions/test_array_jsonata.py::TestArrayJSONata::test_array_range#0","variables":{}},
{"expected":[0,3,6,9],"expr":"$range($states.input.FunctionInput.fst, $states.input.FunctionInput.snd, $states.input.FunctionInput.trd)","input":{"FunctionInput":{"fst":0,"snd":10,"trd":3}},"source":"localstack:tests/aws/services/stepfunctions/v2/intrinsic_functions/test_array_jsonata.py::TestArrayJSONata::test_array_range#1","variables":{}},
{"expected":1,"expr":"$range($states.input.FunctionInput.fst, $states.input.FunctionInput.snd, $states.input.FunctionInput.trd)","input":{"FunctionInput":{"fst":1,"snd":9,"trd":9}},"source":"localstack:tests/aws/services/stepfunctions/v2/intrinsic_functions/test_array_jsonata.py::TestArrayJSONata::test_array_range#2","variables":{}},
{"expected":[1,3,5,7,9],"expr":"$range($states.input.FunctionInput.fst, $states.input.FunctionInput.snd, $states.input.FunctionInput.trd)","input":{"FunctionInput":{"fst":1,"snd":9,"trd":2}},"source":"localstack:tests/aws/services/stepfunctions/v2/intrinsic_functions/test_array_jsonata.py::TestArrayJSONata::test_array_range#3","variables":{}},
{"expected":0,"expr":"$parse($states.input.FunctionInput)","input":{"FunctionInput":"-0"},"source":"localstack:tests/aws/services/stepfunctions/v2/intrinsic_functions/test_json_manipulation_jsonata.py::TestJsonManipulationJSONata::test_parse#0","variables":{}},
{"expected":1,"expr":"$parse($states.input.FunctionInput)","input":{"FunctionInput":"1"},"source":"localstack:tests/aws/services/stepfunctions/v2/intrinsic_functions/test_json_manipulation_jsonata.py::TestJsonManipulationJSONata::test_parse#1","variables":{}},
{"expected":1.1,"expr":"$parse($states.input.FunctionInput)","input":{"FunctionInput":"1.1"},"source":"localstack:tests/aws/services/stepfunctions/v2/intrinsic_functions/test_json_manipulation_jsonata.py::TestJsonManipulationJSONata::test_parse#2","variables":{}},
{"expected":true,"expr":"$parse($states.input.FunctionInput)","input":{"FunctionInput":"true"},"source":"localstack:tests/aws/services/stepfunctions/v2/intrinsic_functions/test_json_manipulation_jsonata.py::TestJsonManipulationJSONata::test_parse#3","variables":{}},
{"expected":[1,2,"HelloWorld"],"expr":"$parse($states.input.FunctionInput)","input":{"FunctionInput":"[1, 2, \"HelloWorld\"]"},"source":"localstack:tests/aws/services/stepfunctions/v2/intrinsic_functions/test_json_manipulation_jsonata.py::TestJsonManipulationJSONata::test_parse#5","variables":{}},
{"expected":{"Arg1":1,"Arg2":[]},"expr":"$parse($states.input.FunctionInput)","input":{"FunctionInput":"{\"Arg1\": 1, \"Arg2\": []}"},"source":"localstack:tests/aws/services/stepfunctions/v2/intrinsic_functions/test_json_manipulation_jsonata.py::TestJsonManipulationJSONata::test_parse#6","variables":{}},
{"expected_error":"T1006: Attempted to invoke a non-function","expr":"$randomSeeded($states.input.FunctionInput.fst)","input":{"FunctionInput":"fst"},"source":"localstack:tests/aws/services/stepfunctions/v2/intrinsic_functions/test_math_operations_jsonata.py::TestMathOperationsJSONata::test_math_random_seeded#0","variables":{}},
{"expected":16,"expr":"$sum($states.input.input_values) + $var_constant_1","input":{"input_values":[1,2,3]},"source":"localstack:tests/aws/services/stepfunctions/v2/test_state/test_test_state_scenarios.py::TestStateCaseScenarios::test_state_with_variables[base_expressions]#0","variables":{"var_constant_1":10,"var_input_value":"test_value"}},
{"expected":{"input_values":[1,2,3]},"expr":"$states.input","input":{"input_values":[1,2,3]},"source":"localstack:tests/aws/services/stepfunctions/v2/test_state/test_test_state_scenarios.py::TestStateCaseScenarios::test_state_with_variables[base_expressions]#0","variables":{"var_constant_1":10,"var_input_value":"test_value"}},
{"expected":"test_value","expr":"$var_input_value","input":{"input_values":[1,2,3]},"source":"localstack:tests/aws/services/stepfunctions/v2/test_state/test_test_state_scenarios.py::TestStateCaseScenarios::test_state_with_variables[base_expressions]#0","variables":{"var_constant_1":10,"var_input_value":"test_value"}},
{"expected":{"input_data":"test"},"expr":"$states.input","input":{"input_data":"test"},"source":"localstack:tests/aws/services/stepfunctions/v2/query_language/test_mixed_query_language.py::TestMixedQueryLanguageFlow::test_output_to_state[JSONATA_OUTPUT_TO_JSONPATH]#0","variables":{}},
{"expected":42,"expr":"$theAnswer","input":{},"source":"localstack:tests/aws/services/stepfunctions/v2/query_language/test_mixed_query_language.py::TestMixedQueryLanguageFlow::test_variable_sampling[JSONPATH_ASSIGN_JSONATA_REF]#0","variables":{"theAnswer":42}},
{"expected":false,"expr":"$not($states.input.type = 'Private')","input":{"type":"Private","value":22},"source":"localstack:tests/aws/services/stepfunctions/v2/scenarios/test_base_scenarios.py::TestBaseScenarios::test_choice_aws_docs_scenario[CHOICE_STATE_AWS_SCENARIO_JSONATA]#0","variables":{}},
{"expected":false,"expr":"$states.input.value = 0","input":{"type":"Private","value":22},"source":"localstack:tests/aws/services/stepfunctions/v2/scenarios/test_base_scenarios.py::TestBaseScenarios::test_choice_aws_docs_scenario[CHOICE_STATE_AWS_SCENARIO_JSONATA]#0","variables":{}},
{"expected":true,"expr":"$states.input.value >= 20 and $states.input.value < 30","input":{"type":"Private","value":22},"source":"localstack:tests/aws/services/stepfunctions/v2/scenarios/test_base_scenarios.py::TestBaseScenarios::test_choice_aws_docs_scenario[CHOICE_STATE_AWS_SCENARIO_JSONATA]#0","variables":{}},
{"expected":true,"expr":"$states.input.str_value = \"string literal\"","input":{"str_value":"string literal"},"source":"localstack:tests/aws/services/stepfunctions/v2/scenarios/test_base_scenarios.py::TestBaseScenarios::test_choice_singleton_composite[CHOICE_STATE_SINGLETON_COMPOSITE_LITERAL_JSONATA]#0","variables":{}},
{"expected":false,"expr":"$states.input.result.done","input":{"result":{"done":false}},"source":"localstack:tests/aws/services/stepfunctions/v2/scenarios/test_base_scenarios.py::TestBaseScenarios::test_choice_unsorted_parameters_negative[CHOICE_STATE_UNSORTED_CHOICE_PARAMETERS_JSONATA]#0","variables":{}},
{"expected":true,"expr":"$not($states.input.result.done)","input":{"result":{"done":false}},"source":"localstack:tests/aws/services/stepfunctions/v2/scenarios/test_base_scenarios.py::TestBaseScenarios::test_choice_unsorted_parameters_negative[CHOICE_STATE_UNSORTED_CHOICE_PARAMETERS_JSONATA]#0","variables":{}},
{"expected":true,"expr":"$states.input.result.done","input":{"result":{"done":true}},"source":"localstack:tests/aws/services/stepfunctions/v2/scenarios/test_base_scenarios.py::TestBaseScenarios::test_choice_unsorted_parameters_positive[CHOICE_STATE_UNSORTED_CHOICE_PARAMETERS_JSONATA]#0","variables":{}},
{"expected":true,"expr":"$states.input = '\"'","input":"\"","source":"localstack:tests/aws/services/stepfunctions/v2/scenarios/test_base_scenarios.py::TestBaseScenarios::test_escape_sequence_parsing[ESCAPE_SEQUENCES_JSONATA_COMPARISON_OUTPUT]#0","variables":{}}
]"#;

    const NOW: i64 = 1_700_000_000_123; // 2023-11-14T22:13:20.123Z

    fn rng() -> impl FnMut() -> u64 {
        let mut s = 0x1234_5678_9abc_def0u64;
        move || splitmix64(&mut s)
    }

    fn eval_with(expr: &str, states: &Json, vars: &Json) -> Result<Option<Json>, JsonataError> {
        let empty = serde_json::Map::new();
        let variables = vars.as_object().unwrap_or(&empty);
        let b = Bindings { states, variables };
        let mut r = rng();
        evaluate_at(expr, &b, &mut r, NOW)
    }

    fn sample_states() -> Json {
        json!({
            "input": {
                "a": [1, 2, 3],
                "one": [5],
                "o": {"x": 1, "y": [1, 2]},
                "items": [{"n": "a", "v": 3}, {"n": "b", "v": 1}, {"n": "a", "v": 2}],
                "s": "Hello World",
                "nested": [[1, 2], [3]]
            },
            "context": {"Execution": {"Id": "arn:aws:states:us-east-1:1:execution:sm:run"},
                        "Map": {"Item": {"Value": {"k": 7}, "Index": 2}}},
            "result": [0, 1, 1]
        })
    }

    fn ev(expr: &str) -> Result<Option<Json>, JsonataError> {
        eval_with(expr, &sample_states(), &json!({"v": 10, "arr": [1, 2]}))
    }

    #[track_caller]
    fn ok(expr: &str, expected: Json) {
        match ev(expr) {
            Ok(Some(v)) => assert!(json_equal(&v, &expected), "{expr}: got {v}, expected {expected}"),
            other => panic!("{expr}: got {other:?}, expected {expected}"),
        }
    }

    #[track_caller]
    fn undefined(expr: &str) {
        assert_eq!(ev(expr), Ok(None), "{expr}");
    }

    #[track_caller]
    fn err(expr: &str, display: &str) {
        match ev(expr) {
            Err(e) => assert_eq!(e.to_string(), display, "{expr}"),
            other => panic!("{expr}: expected error {display}, got {other:?}"),
        }
    }

    #[track_caller]
    fn err_code(expr: &str, code: &str) {
        match ev(expr) {
            Err(e) => assert_eq!(e.code(), Some(code), "{expr}: {e}"),
            other => panic!("{expr}: expected error {code}, got {other:?}"),
        }
    }

    /// Structural equality with numbers compared by value.
    fn json_equal(a: &Json, b: &Json) -> bool {
        match (a, b) {
            (Json::Number(x), Json::Number(y)) => x.as_f64() == y.as_f64(),
            (Json::Array(x), Json::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(p, q)| json_equal(p, q)),
            (Json::Object(x), Json::Object(y)) => x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| json_equal(v, w))),
            _ => a == b,
        }
    }

    #[test]
    fn corpus_vectors() {
        let vectors: Vec<Json> = serde_json::from_str(CORPUS_VECTORS).expect("vectors parse");
        assert!(vectors.len() >= 40);
        let mut failures = Vec::new();
        for v in &vectors {
            let expr = v["expr"].as_str().expect("expr");
            let states = json!({"input": v["input"].clone(), "context": {}});
            let got = eval_with(expr, &states, &v["variables"]);
            let pass = if let Some(e) = v.get("expected_error") {
                matches!(&got, Err(err) if err.to_string() == e.as_str().unwrap_or_default())
            } else if v.get("expected_undefined").is_some() {
                matches!(got, Ok(None))
            } else {
                matches!(&got, Ok(Some(g)) if json_equal(g, &v["expected"]))
            };
            if !pass {
                failures.push(format!("{expr} on {}: got {got:?}, want {v}", v["input"]));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    /// Every JSONata expression that appears in the corpus (57 distinct), evaluated against
    /// inputs like those of their cases.
    #[test]
    fn corpus_expressions() {
        let states = json!({
            "input": {
                "FunctionInput": {"fst": [0, 1, 2, 3], "snd": 2, "trd": 1},
                "part1": {"hello": "world"}, "part2": {"foo": "bar"},
                "result": {"done": true}, "type": "Private", "value": 22, "cost": 5,
                "items": [1, 2], "input_values": [1, 2, 3], "str_value": "string literal",
                "Bucket": "b", "Key": "k", "TimestampValue": "2016-03-14T01:59:00Z",
                "Values": [1], "approval": "yes", "cause": "c", "name": "n",
                "parallelInput": [1], "stateMachineArn": "arn", "targetInput": {},
                "waitSeconds": 0
            },
            "context": {"Map": {"Item": {"Value": {"x": 1}}}},
            "result": [0, 1, 1]
        });
        let vars = json!({"ItemsVar": [1], "varname": {"varfield": 1}, "theAnswer": 42,
                          "var_input_value": "v", "var_constant_1": 1});
        let cases: &[(&str, Option<Json>)] = &[
            ("$ItemsVar", Some(json!([1]))),
            ("$contains(\"hello$world\", /^hello\\ /)", Some(json!(false))),
            ("$contains(\"hello$world\", /^hello\\$/)", Some(json!(true))),
            ("$contains('hello$world', /^hello\\ /)", Some(json!(false))),
            ("$count($states.result[$ = 0])", Some(json!(1))),
            ("$count($states.result[$ = 1])", Some(json!(2))),
            ("$doesNotExist", None),
            ("$map($states.result, function($v) { $v = 1 ? 'pass' : 'failed' })", Some(json!(["failed", "pass", "pass"]))),
            ("$merge([$states.input.part1, $states.input.part2])", Some(json!({"hello": "world", "foo": "bar"}))),
            ("$not($states.input.result.done)", Some(json!(false))),
            ("$not($states.input.type = 'Private')", Some(json!(false))),
            ("$number('2')", Some(json!(2))),
            ("$partition($states.input.FunctionInput.fst, $states.input.FunctionInput.snd)", Some(json!([[0, 1], [2, 3]]))),
            ("$range($states.input.FunctionInput.snd, 5, $states.input.FunctionInput.trd)", Some(json!([2, 3, 4, 5]))),
            ("$states.context", Some(json!({"Map": {"Item": {"Value": {"x": 1}}}}))),
            ("$states.context.Map.Item.Value", Some(json!({"x": 1}))),
            ("$states.input.Bucket", Some(json!("b"))),
            ("$states.input.cost < 10", Some(json!(true))),
            ("$states.input.items", Some(json!([1, 2]))),
            ("$states.input.str_value = \"string literal\"", Some(json!(true))),
            ("$states.input.value = 0", Some(json!(false))),
            ("$states.input.value >= 20 and $states.input.value < 30", Some(json!(true))),
            ("$states.input.waitSeconds", Some(json!(0))),
            ("$states.result", Some(json!([0, 1, 1]))),
            ("$states.result.approval", None),
            ("$sum($states.input.input_values) + $var_constant_1", Some(json!(7))),
            ("$theAnswer", Some(json!(42))),
            ("$var_input_value", Some(json!("v"))),
            ("$variable := 1", Some(json!(1))),
            ("$varname", Some(json!({"varfield": 1}))),
            ("$varname.varfield", Some(json!(1))),
            ("'string'", Some(json!("string"))),
            ("1", Some(json!(1))),
            ("[0]", Some(json!([0]))),
            ("[1, 'two', 3]", Some(json!([1, "two", 3]))),
            ("[]", Some(json!([]))),
            ("null", Some(json!(null))),
            ("states.input", None),
            ("true", Some(json!(true))),
            ("{'foo': 'bar'}", Some(json!({"foo": "bar"}))),
        ];
        for (expr, want) in cases {
            let got = eval_with(expr, &states, &vars);
            match (want, &got) {
                (None, Ok(None)) => {}
                (Some(w), Ok(Some(g))) if json_equal(g, w) => {}
                _ => panic!("{expr}: got {got:?}, want {want:?}"),
            }
        }
        // Map `Items` evaluating to a function: AWS reports an unsupported result type
        let got = eval_with("$fn := function($x){$x}", &states, &vars);
        assert!(matches!(&got, Err(e) if e.is_function_result()), "{got:?}");
        let got = eval_with("$randomSeeded($states.input.FunctionInput.fst)", &states, &vars);
        assert_eq!(got.map_err(|e| e.to_string()), Err("T1006: Attempted to invoke a non-function".to_string()));
    }

    /// All 57 distinct JSONata expressions in the corpus evaluate; the only errors are the two
    /// that AWS itself reports (a function result, and `$randomSeeded`, which does not exist).
    #[test]
    fn all_corpus_expressions_evaluate() {
        const ALL: &[&str] = &[
            "$ItemsVar",
            "$contains(\"hello$world\", /^hello\\ /)",
            "$contains(\"hello$world\", /^hello\\$/)",
            "$contains('hello$world', /^hello\\ /)",
            "$count($states.result[$ = 0])",
            "$count($states.result[$ = 1])",
            "$doesNotExist",
            "$fn := function($x){$x}",
            "$map($states.result, function($v) { $v = 1 ? 'pass' : 'failed' })",
            "$merge([$states.input.part1, $states.input.part2])",
            "$not($states.input.result.done)",
            "$not($states.input.type = 'Private')",
            "$number('2')",
            "$parse($states.input.FunctionInput)",
            "$partition($states.input.FunctionInput.fst, $states.input.FunctionInput.snd)",
            "$randomSeeded($states.input.FunctionInput.fst)",
            "$range($states.input.FunctionInput.fst, $states.input.FunctionInput.snd, $states.input.FunctionInput.trd)",
            "$states",
            "$states.context",
            "$states.context.Map.Item.Value",
            "$states.input",
            "$states.input = '\"'",
            "$states.input.Bucket",
            "$states.input.Key",
            "$states.input.TimestampValue",
            "$states.input.Values",
            "$states.input.approval",
            "$states.input.cause",
            "$states.input.cost",
            "$states.input.cost < 10",
            "$states.input.items",
            "$states.input.name",
            "$states.input.parallelInput",
            "$states.input.result.done",
            "$states.input.stateMachineArn",
            "$states.input.str_value = \"string literal\"",
            "$states.input.targetInput",
            "$states.input.value = 0",
            "$states.input.value >= 20 and $states.input.value < 30",
            "$states.input.waitSeconds",
            "$states.result",
            "$states.result.approval",
            "$sum($states.input.input_values) + $var_constant_1",
            "$theAnswer",
            "$var_input_value",
            "$variable := 1",
            "$varname",
            "$varname.varfield",
            "'string'",
            "1",
            "[0]",
            "[1, 'two', 3]",
            "[]",
            "null",
            "states.input",
            "true",
            "{'foo': 'bar'}",
        ];
        assert_eq!(ALL.len(), 57);
        let states = json!({
            "input": {"FunctionInput": {"fst": [1, 2, 3], "snd": 2, "trd": 1}, "part1": {"a": 1},
                      "part2": {"b": 2}, "result": {"done": true}, "input_values": [1, 2]},
            "context": {"Map": {"Item": {"Value": 1}}},
            "result": [0, 1]
        });
        let vars = json!({"ItemsVar": [1], "varname": {"varfield": 1}, "var_constant_1": 1});
        let parse_states = json!({"input": {"FunctionInput": "[1, 2]"}, "context": {}});
        let range_states = json!({"input": {"FunctionInput": {"fst": 0, "snd": 9, "trd": 3}}, "context": {}});
        for expr in ALL {
            let st = if expr.starts_with("$parse") {
                &parse_states
            } else if expr.starts_with("$range") {
                &range_states
            } else {
                &states
            };
            match eval_with(expr, st, &vars) {
                Ok(_) => {}
                Err(e) if e.is_function_result() && expr.starts_with("$fn") => {}
                Err(e) if e.code() == Some("T1006") && expr.starts_with("$randomSeeded") => {}
                Err(e) => panic!("{expr}: {e}"),
            }
        }
    }

    #[test]
    fn paths_and_sequences() {
        ok("$states.input.a", json!([1, 2, 3]));
        ok("$states.input.a[0]", json!(1));
        ok("$states.input.a[-1]", json!(3));
        ok("$states.input.one", json!([5]));
        ok("$states.input.one[0]", json!(5));
        ok("$states.input.one[]", json!([5]));
        ok("$states.input.items.n", json!(["a", "b", "a"]));
        ok("$states.input.items[0].n[]", json!(["a"]));
        ok("$states.input.items[v>1].n", json!(["a", "a"]));
        ok("$states.input.items[n='a'][1].v", json!(2));
        ok("$states.input.items[[0,2]].v", json!([3, 2]));
        ok("$states.input.items[0]", json!({"n": "a", "v": 3}));
        ok("$states.input.a[$ > 1]", json!([2, 3]));
        ok("$states.input.a.($ * 10)", json!([10, 20, 30]));
        ok("$states.input.o.*", json!([1, 1, 2]));
        ok("$states.input.o.y[1]", json!(2));
        ok("$states.input.**.x", json!(1));
        ok("$states.input.nested", json!([[1, 2], [3]]));
        ok("$states.input.nested[0]", json!([1, 2]));
        ok("[[1,2],[3]].$", json!([1, 2, 3]));
        ok("[$states.input.items.v]", json!([3, 1, 2]));
        ok("$states.input.items.[v]", json!([[3], [1], [2]]));
        ok("$states.context.Map.Item.Index", json!(2));
        ok("$states.input.`s`", json!("Hello World"));
        undefined("$states.input.nope");
        undefined("$states.input.a[5]");
        undefined("$states.input.items[v>10]");
        undefined("$");
        undefined("$$");
        undefined("nothing.here");
    }

    #[test]
    fn constructors_and_grouping() {
        ok("{\"a\": 1, \"b\": $states.input.nope}", json!({"a": 1}));
        ok("$states.input.items{n: $sum(v)}", json!({"a": 5, "b": 1}));
        ok("$states.input.items.{n: v}", json!([{"a": 3}, {"b": 1}, {"a": 2}]));
        ok("[1..5]", json!([1, 2, 3, 4, 5]));
        ok("[1, [2, 3], $states.input.one]", json!([1, [2, 3], 5]));
        ok("[$states.input.a, 4]", json!([1, 2, 3, 4]));
        ok("$states.input.items^(v).n", json!(["b", "a", "a"]));
        ok("$states.input.items^(>v).v", json!([3, 2, 1]));
        ok("$states.input.items^(n, >v).v", json!([3, 2, 1]));
        err_code("{'a': 1, 'a': 2}", "D1009");
        err_code("{1: 2}", "T1003");
    }

    #[test]
    fn operators() {
        ok("1 + 2 * 3 - 4 / 2", json!(5));
        ok("7 % 3", json!(1));
        ok("-$states.input.a[0]", json!(-1));
        ok("$states.input.s & '!' & 1.5 & true & null", json!("Hello World!1.5truenull"));
        ok("'x' & $states.input.a", json!("x[1,2,3]"));
        ok("'a' in ['a', 'b']", json!(true));
        ok("3 in $states.input.a", json!(true));
        ok("'b' < 'a'", json!(false));
        ok("[1,2] = [1,2]", json!(true));
        ok("{'a':1} != {'a':1}", json!(false));
        ok("$states.input.nope = 1", json!(false));
        undefined("$states.input.nope < 1");
        undefined("$states.input.nope + 1");
        ok("true and $states.input.nope", json!(false));
        ok("false or 1", json!(true));
        ok("true ? 'y' : 'n'", json!("y"));
        undefined("false ? 'y'");
        ok("$states.input.nope ?: 'default'", json!("default"));
        ok("0 ?: 'd'", json!("d"));
        ok("$states.input.nope ?? 'default'", json!("default"));
        ok("0 ?? 'd'", json!(0));
        ok("(1; 2; 3)", json!(3));
        ok("($a := [1,2,3]; $a[1])", json!(2));
        ok("$v + $arr[1]", json!(12));
        ok("0.1 + 0.2", json!(0.30000000000000004));
        err("1 + 'a'", "T2002: The right side of the \"+\" operator must evaluate to a number");
        err("'a' - 1", "T2001: The left side of the \"-\" operator must evaluate to a number");
        err("'a' < 1", "T2009: The values \"a\" and 1 either side of operator \"<\" must be of the same data type");
        err_code("{} < 1", "T2010");
        err_code("-'a'", "D1002");
        err_code("1/0", "D1001");
        err_code("[1..'a']", "T2004");
        err_code("[1..20000000]", "D2014");
        err(
            "[1..20000000]",
            "D2014: The size of the sequence allocated by the range operator (..) must not exceed 1e7.  Attempted to allocate 20000000.",
        );
    }

    /// Ends near the 64-bit limit: the range ends at once with the items JSONata gives
    /// (both ends are the same double there), instead of looping on `x + 1.0 == x`.
    #[test]
    fn range_near_the_64_bit_limit_ends_at_once() {
        let t = std::time::Instant::now();
        let r = ev("[9223372036854775806..9223372036854775807]").expect("evaluates");
        assert!(r.is_some_and(|v| v.as_array().is_some_and(|a| !a.is_empty() && a.len() <= 2)));
        err_code("[-9223372036854775807..9223372036854775807]", "D2014");
        assert!(t.elapsed() < std::time::Duration::from_secs(2));
    }

    #[test]
    fn functions_and_lambdas() {
        ok("$map([1,2,3], function($x){$x*2})", json!([2, 4, 6]));
        ok("$map([1,2,3], function($x, $i){$i})", json!([0, 1, 2]));
        ok("$map([7], function($x){$x})", json!(7));
        ok("$filter([1,2,3,4], function($x){$x%2=0})", json!([2, 4]));
        ok("$reduce([1,2,3,4], function($a,$b){$a+$b})", json!(10));
        ok("$reduce([1,2,3], function($a,$b){$a+$b}, 10)", json!(16));
        ok("$single([1,2,3], function($x){$x=2})", json!(2));
        ok("$sort([3,1,2])", json!([1, 2, 3]));
        ok("$sort(['b','a'])", json!(["a", "b"]));
        ok("$sort($states.input.items, function($a,$b){$a.v > $b.v}).v", json!([1, 2, 3]));
        ok("($f := function($n){$n <= 1 ? 1 : $n * $f($n-1)}; $f(10))", json!(3628800));
        ok("$states.input.a ~> $sum()", json!(6));
        ok("$states.input.a ~> $map(function($x){$x+1}) ~> $sum()", json!(9));
        ok("($inc := function($x){$x+1}; $dbl := function($x){$x*2}; $f := $inc ~> $dbl; $f(3))", json!(8));
        ok("($add := function($a,$b){$a+$b}; $add5 := $add(?, 5); $add5(1))", json!(6));
        ok("$map(['a','b'], $uppercase)", json!(["A", "B"]));
        ok("$states.input.items.$uppercase(n)", json!(["A", "B", "A"]));
        ok("$states.input.s.$length()", json!(11));
        ok("(function($x){$x + 1})(2)", json!(3));
        ok("λ($x){$x * 3}(2)", json!(6));
        ok("function($x)<n:n>{$x * 3}(2)", json!(6));
        ok("$each({'a':1,'b':2}, function($v,$k){$k&$v})", json!(["a1", "b2"]));
        ok("$sift({'a':1,'b':2}, function($v){$v>1})", json!({"b": 2}));
        ok("$eval('1+2')", json!(3));
        ok("$eval('$ * 2', 4)", json!(8));
        err("foo()", "T1006: Attempted to invoke a non-function");
        err("count(1)", "T1005: Attempted to invoke a non-function. Did you mean $count?");
        err("$undefinedfn(1)", "T1006: Attempted to invoke a non-function");
        err("$count()", "T0410: Argument 1 of function \"count\" does not match function signature");
        err_code("$lowercase(['A'])", "T0410");
        err_code("$sum(['a'])", "T0412");
        err_code("1 ~> 2", "T2006");
        err_code("$reduce([1], function($a){$a})", "D3050");
        err_code("$single([1,2], function($x){true})", "D3138");
        err_code("$single([1,2], function($x){false})", "D3139");
        err("$error('boom')", "D3137: boom");
        err("$assert(false, 'nope')", "D3141: nope");
        err_code("$sort([1,'a'])", "D3070");
        // a workflow variable shadows a built-in of the same name
        let shadow = eval_with("$count([1])", &sample_states(), &json!({"count": 3}));
        assert_eq!(shadow.map_err(|e| e.to_string()), Err("T1006: Attempted to invoke a non-function".to_string()));
        // a function result (even nested) is not JSON
        assert!(ev("{'f': $uppercase}").is_err_and(|e| e.is_function_result()));
    }

    #[test]
    fn string_functions() {
        ok("$string({'a':[1,2.5,'x']})", json!("{\"a\":[1,2.5,\"x\"]}"));
        ok("$string([1,2], true)", json!("[\n  1,\n  2\n]"));
        ok("$string(0.1+0.2)", json!("0.3"));
        ok("$string(1e21)", json!("1e+21"));
        ok("$string(0.0000001)", json!("1e-7"));
        ok("$string(123456789012)", json!("123456789012"));
        ok("$string(true)", json!("true"));
        ok("$uppercase($states.input.s)", json!("HELLO WORLD"));
        ok("$lowercase('ÀB')", json!("àb"));
        ok("$substring($states.input.s, 3, 4)", json!("lo W"));
        ok("$substring('hello', -3, 2)", json!("ll"));
        ok("$substring('hello', 1)", json!("ello"));
        ok("$substringBefore('a-b-c', '-')", json!("a"));
        ok("$substringAfter('a-b-c', '-')", json!("b-c"));
        ok("$length('héllo')", json!(5));
        ok("$trim('  a   b  ')", json!("a b"));
        ok("$pad('x', 4, '-')", json!("x---"));
        ok("$pad('x', -4)", json!("   x"));
        ok("$contains('abc', 'b')", json!(true));
        ok("$contains('abc', /B/i)", json!(true));
        ok("$split($states.input.s, ' ')", json!(["Hello", "World"]));
        ok("$split('a,b,,c', ',', 2)", json!(["a", "b"]));
        ok("$split('a1b2c', /[0-9]/)", json!(["a", "b", "c"]));
        ok("$split('abc', '')", json!(["a", "b", "c"]));
        ok("$join(['a','b'], '-')", json!("a-b"));
        ok("$join('a')", json!("a"));
        ok("$replace('abcabc', 'b', 'X')", json!("aXcaXc"));
        ok("$replace('abcabc', 'b', 'X', 1)", json!("aXcabc"));
        ok("$replace('hello world', /(o)/, '[$1]')", json!("hell[o] w[o]rld"));
        ok("$replace('price: 5', /(\\d+)/, '$$$1')", json!("price: $5"));
        ok("$replace('aaa', /a/, function($m){'<'&$m.match&'>'})", json!("<a><a><a>"));
        ok("$match('ab12cd34', /[0-9]+/).match", json!(["12", "34"]));
        ok("$match('ab12', /([a-z])([0-9])/)", json!({"match": "b1", "index": 1, "groups": ["b", "1"]}));
        ok("$base64encode('hello')", json!("aGVsbG8="));
        ok("$base64decode('aGVsbG8=')", json!("hello"));
        ok("$encodeUrlComponent('a b&c')", json!("a%20b%26c"));
        ok("$encodeUrl('http://x/a b?q=1')", json!("http://x/a%20b?q=1"));
        ok("$decodeUrlComponent('a%20b%26c')", json!("a b&c"));
        err_code("$decodeUrlComponent('%E0%A4%A')", "D3140");
        err_code("$replace('abc', '', 'x')", "D3010");
        err_code("$replace('abc', /x*/, 'y')", "D1004");
        err_code("$string(1/0)", "D3001");
    }

    #[test]
    fn numeric_and_other_functions() {
        ok("$count($states.input.items)", json!(3));
        ok("$sum($states.input.items.v) * 2", json!(12));
        ok("$sum(5)", json!(5));
        ok("$average([1,2,3,4])", json!(2.5));
        ok("$max([1,5,3])", json!(5));
        ok("$min([4,2,8])", json!(2));
        undefined("$max([])");
        undefined("$sum($states.input.nope)");
        ok("$number('0x1F')", json!(31));
        ok("$number('-1.5e2')", json!(-150));
        ok("$number(true)", json!(1));
        err("$number('abc')", "D3030: Unable to cast value to a number: \"abc\"");
        ok("$round(2.5)", json!(2));
        ok("$round(3.5)", json!(4));
        ok("$round(-2.5)", json!(-2));
        ok("$round(1.235, 2)", json!(1.24));
        ok("$round(1250, -2)", json!(1200));
        ok("$floor(-1.5)", json!(-2));
        ok("$ceil(1.2)", json!(2));
        ok("$abs(-3)", json!(3));
        ok("$sqrt(16)", json!(4));
        ok("$power(2, 10)", json!(1024));
        err_code("$sqrt(-1)", "D3060");
        err_code("$power(10, 400)", "D3061");
        ok("$formatNumber(1234.5678, '#,##0.00')", json!("1,234.57"));
        ok("$formatNumber(0.25, '#0%')", json!("25%"));
        ok("$formatNumber(-5, '000')", json!("-005"));
        ok("$formatBase(255, 16)", json!("ff"));
        ok("$formatBase(5, 2)", json!("101"));
        ok("$formatInteger(1234, 'w')", json!("one thousand, two hundred and thirty-four"));
        ok("$formatInteger(1e15, 'w')", json!("one thousand trillion"));
        ok("$formatInteger(1e18, 'w')", json!("one million trillion"));
        ok(
            "$formatInteger(-1234567890123456789, 'w')",
            json!(
                "-one million, two hundred and thirty-four thousand, five hundred and sixty-seven trillion, eight hundred and ninety billion, one hundred and twenty-three million, four hundred and fifty-six thousand, seven hundred and sixty-eight"
            ),
        );
        ok("$formatInteger(1000100, 'w')", json!("one million, one hundred"));
        ok("$formatInteger(1000050, 'w')", json!("one million and fifty"));
        ok("$formatInteger(90, 'w;o')", json!("ninetieth"));
        ok("$formatInteger(1e12, 'w;o')", json!("one trillionth"));
        ok("$formatInteger(34, 'Ww')", json!("Thirty-Four"));
        ok("$formatInteger(101, 'Ww')", json!("One Hundred and One"));
        ok("$formatInteger(1e20, 'a') != ''", json!(true));
        ok("$formatInteger(1e20, '#,##0')", json!("100,000,000,000,000,000,000"));
        ok("$formatInteger(1e300, 'w') != ''", json!(true));
        ok("$formatInteger(2024, 'I')", json!("MMXXIV"));
        ok("$formatInteger(7, '000')", json!("007"));
        ok("$parseInteger('MMXXIV', 'I')", json!(2024));
        ok("$boolean([])", json!(false));
        ok("$boolean('a')", json!(true));
        ok("$not(0)", json!(true));
        ok("$exists($states.input.nope)", json!(false));
        ok("$type($states.input.a)", json!("array"));
        ok("$type(null)", json!("null"));
        ok("$keys($states.input.o)", json!(["x", "y"]));
        ok("$keys({'a': 1})", json!("a"));
        ok("$lookup($states.input.o, 'x')", json!(1));
        ok("$append([1],[2])", json!([1, 2]));
        ok("$append(1, 2)", json!([1, 2]));
        ok("$distinct([1,2,1,'a','a'])", json!([1, 2, "a"]));
        ok("$reverse([1,2,3])", json!([3, 2, 1]));
        ok("$zip([1,2],[3,4])", json!([[1, 3], [2, 4]]));
        ok("$spread({'a':1,'b':2})", json!([{"a": 1}, {"b": 2}]));
        ok("$merge([{'a':1},{'b':2},{'a':3}])", json!({"a": 3, "b": 2}));
        let shuffled = ev("$sort($shuffle([3,1,2]))");
        assert_eq!(shuffled, Ok(Some(json!([1, 2, 3]))));
    }

    #[test]
    fn step_functions_functions() {
        ok("$partition([1,2,3,4,5], 2)", json!([[1, 2], [3, 4], [5]]));
        ok("$partition([0], 2)", json!([[0]]));
        ok("$range(0, 10, 5)", json!([0, 5, 10]));
        ok("$range(1, 9, 9)", json!(1));
        ok("$range(5, 1, -2)", json!([5, 3, 1]));
        err_code("$range(1, 5, 0)", "D3200");
        err_code("$partition([1], 0)", "D3200");
        ok("$hash('abc', 'SHA-256')", json!("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"));
        ok("$hash('abc', 'MD5')", json!("900150983cd24fb0d6963f7d28e17f72"));
        ok("$hash('abc', 'SHA-1')", json!("a9993e364706816aba3e25717850c26c9cd0d89d"));
        err_code("$hash('abc', 'CRC32')", "D3200");
        ok("$parse('{\"a\":1}')", json!({"a": 1}));
        ok("$parse('-0')", json!(0));
        err_code("$parse('{')", "D3200");
        let r = ev("$random()");
        assert!(matches!(&r, Ok(Some(Json::Number(n))) if (0.0..1.0).contains(&n.as_f64().unwrap_or(-1.0))));
        assert_eq!(ev("$random(42)"), ev("$random(42)"));
        assert_ne!(ev("$random(42)"), ev("$random(43)"));
        let u = ev("$uuid()");
        let Ok(Some(Json::String(u))) = u else { panic!("uuid: {u:?}") };
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
        // randomness comes from the caller's source
        let states = sample_states();
        let vars = serde_json::Map::new();
        let b = Bindings { states: &states, variables: &vars };
        let mut calls = 0;
        let mut src = || {
            calls += 1;
            0u64
        };
        assert_eq!(evaluate_at("$random()", &b, &mut src, NOW), Ok(Some(json!(0))));
        assert_eq!(calls, 1);
    }

    #[test]
    fn date_time() {
        ok("$now()", json!("2023-11-14T22:13:20.123Z"));
        ok("$millis()", json!(NOW));
        ok("$toMillis('2023-11-14T22:13:20.123Z')", json!(NOW));
        ok("$toMillis('1970-01-02')", json!(86_400_000));
        ok("$toMillis('2023-11-14T23:13:20.123+01:00')", json!(NOW));
        ok("$fromMillis(0)", json!("1970-01-01T00:00:00.000Z"));
        ok("$fromMillis(0, '[Y0001]-[M01]-[D01] [H01]:[m01] [FNn,*-3]')", json!("1970-01-01 00:00 Thu"));
        ok("$fromMillis(0, '[D1o] [MNn] [Y]')", json!("1st January 1970"));
        ok("$fromMillis(0, '[H01]:[m01][Z]', '+0530')", json!("05:30+05:30"));
        ok("$fromMillis(0, '[h]:[m01] [P]')", json!("12:00 am"));
        err_code("$toMillis('not a date')", "D3110");
    }

    #[test]
    fn syntax_errors() {
        err("(1;2", "S0203: Expected \")\" before end of expression");
        err("[1,2,3][", "S0207: Unexpected end of expression");
        err("$a := 1; $a", "S0201: Syntax error: \";\"");
        err("'abc", "S0101: String literal must be terminated by a matching quote");
        err_code("1 +", "S0207");
        err_code("\"\\u12\"", "S0104");
        err_code("`abc", "S0105");
        err_code("/* abc", "S0106");
        err_code("1 = = 2", "S0211");
        err_code("a.1", "S0213");
        err_code("function(1){1}", "S0208");
        err_code("1 := 2", "S0212");
        err_code("a{'x':1}{'y':2}", "S0210");
        err_code("$contains('a', /(?=a)/)", "S0303");
        err_code("% + 1", "S0999");
        err_code("$x@$y", "S0999");
        err_code("$x.@$y", "S0211");
        assert!(check_syntax("$states.input.a[0] + 1").is_ok());
        assert!(check_syntax("$states.input.a[").is_err());
    }

    #[test]
    fn limits_do_not_overflow_the_stack() {
        let deep = format!("{}1{}", "(".repeat(100_000), ")".repeat(100_000));
        err_code(&deep, "S0999");
        let deep = format!("{}1", "-".repeat(100_000));
        err_code(&deep, "S0999");
        let deep = "[".repeat(100_000);
        err_code(&deep, "S0999");
        err_code("($f := function($x){$f($x)}; $f(1))", "U1001");
        err_code("($f := function($x){1 + $f($x)}; $f(1))", "U1001");
        // doubling strings / arrays is stopped by the budget, not by running out of memory
        // Doubling a string hits the size limit (U1003) before the step budget.
        err_code("($f := function($s, $n){$n = 0 ? $s : $f($s & $s, $n - 1)}; $f('ab', 60))", "U1003");
        err_code("$replace($pad('', 100000, 'x'), 'x', $pad('', 100000, 'y'))", "U1003");
        err_code("$join([1..100000].$string(), $pad('', 100000, 'y'))", "U1003");
        err_code("$pad('', -1e300, 'x')", "U1003");
        err_code("($f := function($a, $n){$n = 0 ? $a : $f([[$a], [$a]], $n - 1)}; $string($f([1], 40)))", "U1003");
        err_code("($f := function($a, $n){$n = 0 ? $a : $f([[$a], [$a]], $n - 1)}; $f([1], 40))", "U1003");
        err_code("$replace($pad('', 100000, 'x'), /x+/, $pad('', 100000, '$0'))", "U1003");
        err_code("($f := function($a, $n){$n = 0 ? $a : $f($append($a, $a), $n - 1)}; $f([1], 60))", "U1002");
        err_code("($f := function($a, $n){$n = 0 ? $a : $f([$a, $a], $n - 1)}; $f([1], 60))", "U1002");
        // a deep but legal recursion
        ok("($f := function($n){$n = 0 ? 0 : 1 + $f($n - 1)}; $f(200))", json!(200));
        // step budget
        let states = sample_states();
        let vars = serde_json::Map::new();
        let b = Bindings { states: &states, variables: &vars };
        let mut r = rng();
        let res = run("($f := function($n){$n = 0 ? 0 : $f($n-1) + $f($n-1)}; $f(30))", &b, &mut r, NOW, 100_000);
        assert_eq!(res.map_err(|e| e.code()), Err(Some("U1002")));
    }

    #[test]
    fn runs_on_a_small_thread_stack() {
        let h = std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(|| {
                let d = ev(&format!("{}1{}", "[".repeat(450), "]".repeat(450)));
                let r = ev("($f := function($n){$n = 0 ? 0 : 1 + $f($n - 1)}; $f(500))");
                let v = ev("($f := function($n){$n = 0 ? [] : [$f($n - 1)]}; $f(390))");
                // build a ~1100-deep value, then stringify, compare and drop it deep in a recursion
                let w = ev("($mk := function($n){$n = 0 ? [] : [$mk($n - 1)]}; \
                     $g := function($n){$n = 0 ? $string($mk(1000)) = $string($mk(1000)) : $g($n - 1)}; \
                     $g(100))");
                (r, d.is_ok() && v.is_ok() && w == Ok(Some(json!(true))))
            })
            .expect("spawn");
        let (r, d) = h.join().expect("no stack overflow");
        assert_eq!(r, Ok(Some(json!(500))));
        assert!(d);
    }

    #[test]
    fn error_display_and_accessors() {
        let e = ev("$nope()").expect_err("error");
        assert_eq!(e.code(), Some("T1006"));
        assert!(!e.is_function_result());
        assert_eq!(JsonataError::UnsupportedResult.code(), None);
        assert!(matches!(ev("(1"), Err(JsonataError::Syntax { .. })));
        assert!(matches!(ev("$nope()"), Err(JsonataError::Evaluation { .. })));
    }

    #[test]
    fn number_formatting_matches_javascript() {
        for (n, s) in [
            (0.0, "0"),
            (-0.0, "0"),
            (1.0, "1"),
            (-1.5, "-1.5"),
            (123456789.0, "123456789"),
            (1e21, "1e+21"),
            (1.5e-7, "1.5e-7"),
            (0.000001, "0.000001"),
            (0.1 + 0.2, "0.30000000000000004"),
            (f64::INFINITY, "Infinity"),
        ] {
            assert_eq!(js_number_to_string(n), s);
        }
    }

    #[test]
    fn variables_are_converted_once_and_bindings_shadow() {
        ok("($v := 1; $v)", json!(1));
        ok("$v", json!(10));
        ok("($v := 1; ($v := 2); $v)", json!(1));
        ok("$arr ~> $count()", json!(2));
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        const ATOMS: &[&str] = &[
            "$",
            "$$",
            "$states",
            ".input",
            ".a",
            "[",
            "]",
            "{",
            "}",
            "(",
            ")",
            ",",
            ":",
            ";",
            "?",
            "?:",
            "??",
            "*",
            "**",
            "..",
            "+",
            "-",
            "/",
            "%",
            "&",
            "=",
            "!=",
            "<",
            ">=",
            "and",
            "or",
            "in",
            "~>",
            ":=",
            "function($x){",
            "$x",
            "$count(",
            "$substring(",
            "$string(",
            "$map(",
            "$sort(",
            "$reduce(",
            "$split(",
            "$replace(",
            "$match(",
            "$formatNumber(",
            "$fromMillis(",
            "$round(",
            "$pad(",
            "$range(",
            "$partition(",
            "^(",
            "|",
            "@",
            "#",
            "'a'",
            "\"b\"",
            "1",
            "-1",
            "0.5",
            "1e308",
            "true",
            "null",
            "/a+/",
            "`x`",
            "[1..3]",
            "\\",
            "λ",
            "$eval(",
        ];

        proptest! {
            #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

            #[test]
            fn never_panics_on_arbitrary_text(s in "\\PC{0,60}") {
                let _ = ev(&s);
            }

            #[test]
            fn never_panics_on_token_soup(toks in proptest::collection::vec(0..ATOMS.len(), 0..24)) {
                let s: String = toks.iter().map(|i| ATOMS[*i]).collect::<Vec<_>>().join(" ");
                let _ = ev(&s);
            }
        }
    }

    /// Shared structure: a value built from itself doubles its expanded size per step without
    /// copying. Every walk over such a value (equality, `$distinct`, binding, descent, keys,
    /// serialisation...) is charged for what it visits, and no value larger than the output
    /// limit once expanded is ever made, so each combination below ends by the step counters
    /// (the wall-clock budget around it is only a backstop and must not be what stops it).
    #[test]
    fn shared_structures_are_charged_for_what_they_expand_to() {
        let builders =
            ["[$a, $a]", "{'l': $a, 'r': $a}", "$append($a, $a)", "[[$a], [$a]]", "[$a, {'k': $a}]", "$merge([{'a': $a}, {'b': $a}])"];
        let uses = [
            "$x = $x",
            "$x != $x",
            "$distinct([$x, $x])",
            "$count($x.**)",
            "$x.**",
            "$string($x)",
            "$x in [$x]",
            "$keys($x)",
            "$lookup($x, 'l')",
            "$x.l.r.l.r",
            "$x.*",
            "$count($x)",
            "$type($x)",
            "($y := $x; $z := [$y, $y]; $count($z))",
            "$exists($x)",
            "$spread($x)",
            "$each($x, function($v, $k){$k})",
            "$sift($x, function($v){$v = $v})",
            "$x ~> $string",
            "$join($x.$string(), ',')",
            "[$x][0] = [$x][0]",
            "{'o': $x}.o = $x",
            "$x.($ = $)",
            "$filter($x, function($v){$v = $x})",
        ];
        let mut checked = 0;
        for b in builders {
            for depth in [12, 40] {
                for u in uses {
                    let expr = format!(
                        "($f := function($a, $n){{$n = 0 ? $a : $f({b}, $n - 1)}}; $x := $f([1, 'two', {{'t': 3}}], {depth}); {u})"
                    );
                    let (r, spent) = crate::asl::budget::run(
                        crate::asl::budget::Limits { steps: u64::MAX, wall: Some(std::time::Duration::from_secs(60)) },
                        || ev(&expr),
                    );
                    assert!(spent.exhausted.is_none(), "{expr}: only the wall clock stopped it ({spent:?})");
                    if depth == 40 {
                        // 2^40 times the seed: far past the limit once expanded, however shared.
                        let code = r.as_ref().err().and_then(|e| e.code());
                        assert!(matches!(code, Some("U1002" | "U1003")), "{expr}: {r:?}");
                    }
                    checked += 1;
                }
            }
        }
        assert_eq!(checked, builders.len() * 2 * uses.len());
    }

    /// Work within the size limit is still charged each time it is done: a legal value compared
    /// with itself many times runs out of steps instead of running for minutes.
    #[test]
    fn repeated_walks_of_a_legal_value_run_out_of_steps() {
        err_code(
            "($f := function($a, $n){$n = 0 ? $a : $f([$a, $a], $n - 1)}; $x := $f([1], 18); $sum([1..100000].($x = $x ? 1 : 0)))",
            "U1002",
        );
        err_code("($f := function($a, $n){$n = 0 ? $a : $f([$a, $a], $n - 1)}; $x := $f([1], 18); $count([1..100000].($x.**)))", "U1002");
        // ...while a single walk of it is fine.
        ok("($f := function($a, $n){$n = 0 ? $a : $f([$a, $a], $n - 1)}; $x := $f([1], 10); $x = $x)", json!(true));
    }

    /// An engine-wide budget in force is drawn on too: the expression stops when it is spent,
    /// and the budget records that it was.
    #[test]
    fn an_outer_budget_is_drawn_on() {
        let (r, spent) =
            crate::asl::budget::run(crate::asl::budget::Limits::steps(50_000), || ev("$sum([1..1000000])").map_err(|e| e.code()));
        assert_eq!(r, Err(Some("U1002")));
        assert!(matches!(spent.exhausted, Some((crate::asl::budget::Exhausted::Steps { limit: 50_000 }, _))));
    }

    /// An error quotes at most 1,000 characters of the value it names, however large.
    #[test]
    fn errors_quote_a_bounded_part_of_a_large_value() {
        let e = ev("$number($join([1..100000].$string(), 'x'))").expect_err("not a number");
        let text = e.to_string();
        assert!(text.starts_with("D3030") && text.len() < 1100 && text.ends_with('…'), "{} chars", text.len());
    }
}
