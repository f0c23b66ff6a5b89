//! Patient identifiers (PHI): which JSON fields hold them, and the one masking
//! function every surface (console views and dialogs, CLI tables and `--json`)
//! draws through.
//!
//! A [`Masker`] knows identifier *field names* (matched case-insensitively, with
//! `_` and `-` ignored, anywhere in a document) and *JSON paths* (`$.patient`,
//! `$.order.patientName`, `$.items[*].mrn`, matched from a document's root); a
//! `name` field is a patient's unless its object names a workflow resource by ARN
//! and holds no other identifier (an execution's or state machine's name). It
//! masks a payload document ([`Masker::mask_value`]) keeping its shape: every
//! value under an identifier field or path becomes a masked string (`"D•••"`),
//! objects and arrays there are masked leaf by leaf. JSON carried inside strings
//! (history events embed state input and output as JSON text) is masked too, and
//! free text (causes, comments, drafts) loses the identifier values found in the
//! same study's documents.
//!
//! API responses and history events are *envelopes*: their own fields (ARNs,
//! state names, status) are not patient data, so [`Masker::mask_envelope`] masks
//! only the payload fields they carry (`input`, `output`, `parameters`, `result`,
//! `cause`, `assignedVariables`).

use std::collections::HashSet;

use serde_json::{Map, Value};

/// What a masked value shows: its first character and this.
pub const MASK: &str = "•••";

/// Identifier field names masked by default (config `[phi] fields` replaces them,
/// `extra_fields` adds to them). The demo's `patient` object is covered by `patient`.
pub const DEFAULT_FIELDS: &[&str] = &[
    "patient",
    "patientName",
    "patientId",
    "name",
    "fullName",
    "given",
    "givenName",
    "firstName",
    "middleName",
    "family",
    "familyName",
    "lastName",
    "surname",
    "maidenName",
    "mrn",
    "medicalRecordNumber",
    "birthDate",
    "dateOfBirth",
    "dob",
    "deceasedDate",
    "address",
    "street",
    "streetAddress",
    "postalCode",
    "zip",
    "zipCode",
    "phone",
    "phoneNumber",
    "telephone",
    "mobile",
    "fax",
    "telecom",
    "email",
    "ssn",
    "socialSecurityNumber",
    "insuranceId",
    "memberId",
    "accountNumber",
    "driversLicense",
    "identifier",
    "cell",
    "nhsNumber",
];

/// With the default fields, a field is also an identifier when its normalized name
/// (lowercase, no `_`/`-`) starts or ends with one of these stems (`ssnNumber`,
/// `emailAddress`, `homeAddress`, `mrn_num`, `patientMrn`). Chosen so that workflow
/// fields (`accession`, `modality`, `priority`, `status`, `state`) never match.
pub const DEFAULT_STEMS: &[&str] = &[
    "mrn",
    "ssn",
    "email",
    "phone",
    "address",
    "nhs",
    "birth",
    "dob",
    "zip",
    "postcode",
    "postalcode",
    "surname",
    "firstname",
    "lastname",
    "familyname",
    "givenname",
    "patientname",
    "patientid",
    "passport",
    "medicare",
    "medicaid",
    "socialsecurity",
    "driverslicense",
];

/// Identifier paths masked by default (config `[phi] paths` replaces them, `extra_paths` adds).
pub const DEFAULT_PATHS: &[&str] = &["$.patient"];

/// Fields of an API response or history event that carry a payload document.
/// `error` and `cause` are free text (an `ErrorPath` or an operator can put anything there).
pub const PAYLOAD_KEYS: &[&str] = &["input", "output", "parameters", "result", "cause", "error", "assignedVariables"];

/// How many layers of JSON-string encoding (`"\"{\\\"mrn\\\": …}\""`) are unwrapped.
const MAX_STRING_LAYERS: usize = 3;

/// How many `{` in one free text are tried as the start of an embedded JSON object.
const MAX_EMBEDDED_TRIES: usize = 64;

/// How long a console reveal lasts by default, in minutes.
pub const DEFAULT_REVEAL_MINUTES: u32 = 5;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PhiError {
    #[error("PHI path {path:?} is not a JSON path like $.patient or $.order.patientName: {why}")]
    BadPath { path: String, why: String },
    #[error("{0}")]
    Reason(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    Key(String),
    Index(usize),
    Any,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Step<'a> {
    Key(&'a str),
    Index(usize),
}

/// Which fields and paths hold patient identifiers, and how to mask them.
#[derive(Debug, Clone)]
pub struct Masker {
    fields: HashSet<String>,
    stems: Vec<String>,
    paths: Vec<Vec<Seg>>,
}

impl Default for Masker {
    fn default() -> Masker {
        let fields: Vec<String> = DEFAULT_FIELDS.iter().map(|s| s.to_string()).collect();
        let paths: Vec<String> = DEFAULT_PATHS.iter().map(|s| s.to_string()).collect();
        // The defaults are valid paths; an empty path list is the (unreachable) fallback.
        let m = Masker::new(&fields, &paths).unwrap_or(Masker {
            fields: fields.iter().map(|f| norm(f)).collect(),
            stems: vec![],
            paths: vec![],
        });
        m.with_default_stems()
    }
}

fn norm(field: &str) -> String {
    field.chars().filter(|c| *c != '_' && *c != '-').flat_map(char::to_lowercase).collect()
}

fn parse_path(p: &str) -> Result<Vec<Seg>, PhiError> {
    let bad = |why: &str| PhiError::BadPath { path: p.to_string(), why: why.to_string() };
    let rest = p.trim().strip_prefix('$').ok_or_else(|| bad("it must start with $"))?;
    let chars: Vec<char> = rest.chars().collect();
    let mut segs = vec![];
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '.' => {
                i += 1;
                let start = i;
                while i < chars.len() && chars[i] != '.' && chars[i] != '[' {
                    i += 1;
                }
                let key: String = chars[start..i].iter().collect();
                match key.as_str() {
                    "" => return Err(bad("an empty field name after '.'")),
                    "*" => segs.push(Seg::Any),
                    _ => segs.push(Seg::Key(key)),
                }
            }
            '[' => {
                let close = chars[i..].iter().position(|c| *c == ']').ok_or_else(|| bad("'[' without ']'"))? + i;
                let inner: String = chars[i + 1..close].iter().collect();
                let inner = inner.trim();
                if inner == "*" {
                    segs.push(Seg::Any);
                } else if let Ok(n) = inner.parse::<usize>() {
                    segs.push(Seg::Index(n));
                } else if inner.len() >= 2
                    && ((inner.starts_with('\'') && inner.ends_with('\'')) || (inner.starts_with('"') && inner.ends_with('"')))
                {
                    segs.push(Seg::Key(inner[1..inner.len() - 1].to_string()));
                } else {
                    return Err(bad("a bracket holds an index, * or a quoted field name"));
                }
                i = close + 1;
            }
            _ => return Err(bad("expected '.' or '['")),
        }
    }
    Ok(segs)
}

/// A masked form of one identifier value: its first character and `•••`
/// (values of one or two characters show nothing).
pub fn mask_str(s: &str) -> String {
    let n = s.chars().count();
    if n == 0 {
        return String::new();
    }
    if n <= 2 {
        return MASK.to_string();
    }
    let first: String = s.chars().take(1).collect();
    format!("{first}{MASK}")
}

/// Every leaf of `v` masked, keys and shape kept (null stays null).
fn mask_all(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(m.iter().map(|(k, x)| (k.clone(), mask_all(x))).collect()),
        Value::Array(a) => Value::Array(a.iter().map(mask_all).collect()),
        Value::String(s) => Value::String(mask_str(s)),
        Value::Null => Value::Null,
        Value::Number(_) | Value::Bool(_) => Value::String(MASK.to_string()),
    }
}

/// Text that holds a JSON object or array, parsed.
fn embedded_json(s: &str) -> Option<Value> {
    let t = s.trim_start();
    if !(t.starts_with('{') || t.starts_with('[')) {
        return None;
    }
    serde_json::from_str::<Value>(s).ok().filter(|v| v.is_object() || v.is_array())
}

/// Text that holds a JSON object or array, possibly encoded again as a JSON string
/// (up to [`MAX_STRING_LAYERS`] times): the document and how many string layers wrap it.
fn layered_json(s: &str) -> Option<(Value, usize)> {
    let mut cur = s.to_string();
    for layers in 0..=MAX_STRING_LAYERS {
        if let Some(v) = embedded_json(&cur) {
            return Some((v, layers));
        }
        if !cur.trim_start().starts_with('"') {
            return None;
        }
        match serde_json::from_str::<Value>(&cur) {
            Ok(Value::String(inner)) => cur = inner,
            _ => return None,
        }
    }
    None
}

/// A document serialized like `like`, then wrapped in `layers` JSON-string encodings.
fn relayer(v: &Value, like: &str, layers: usize) -> String {
    let mut out = reserialize(v, like);
    for _ in 0..layers {
        out = serde_json::to_string(&Value::String(out)).unwrap_or_default();
    }
    out
}

/// The JSON objects embedded in free text (`wrong patient {"mrn":"X"} …`): byte spans
/// and the parsed objects, trying at most [`MAX_EMBEDDED_TRIES`] opening braces.
fn embedded_objects(text: &str) -> Vec<(usize, usize, Value)> {
    let mut out = vec![];
    let mut from = 0;
    let mut tries = 0;
    while tries < MAX_EMBEDDED_TRIES {
        let Some(off) = text[from..].find('{') else { break };
        let start = from + off;
        tries += 1;
        let mut it = serde_json::Deserializer::from_str(&text[start..]).into_iter::<Value>();
        match it.next() {
            Some(Ok(v)) if v.is_object() => {
                let end = start + it.byte_offset();
                out.push((start, end, v));
                from = end;
            }
            _ => from = start + 1,
        }
    }
    out
}

fn reserialize(v: &Value, like: &str) -> String {
    if like.contains('\n') { serde_json::to_string_pretty(v) } else { serde_json::to_string(v) }.unwrap_or_default()
}

/// Known identifier values, longest first, so that "Dana Testperson" goes before "Dana".
fn finish_known(mut known: Vec<String>) -> Vec<String> {
    known.retain(|k| k.chars().count() >= 3);
    known.sort_by(|a, b| b.len().cmp(&a.len()).then(a.cmp(b)));
    known.dedup();
    known
}

/// `text` with every occurrence of a known identifier value masked, in any letter case
/// ("ERNEST HERON" for "Ernest Heron"). One linear-time pass: the values are escaped
/// literals of one case-insensitive alternation, longest first.
pub fn mask_free_text(text: &str, known: &[String]) -> String {
    // A cheap prefilter: only values that occur (lowercased) go into the automaton.
    let lower = text.to_lowercase();
    let mut ks: Vec<&String> = known.iter().filter(|k| k.chars().count() >= 3 && lower.contains(&k.to_lowercase())).collect();
    if ks.is_empty() {
        return text.to_string();
    }
    ks.sort_by(|a, b| b.len().cmp(&a.len()).then(a.cmp(b)));
    ks.dedup();
    let pattern = ks.iter().map(|k| regex::escape(k)).collect::<Vec<_>>().join("|");
    match regex::RegexBuilder::new(&pattern).case_insensitive(true).size_limit(64 << 20).build() {
        Ok(re) => re.replace_all(text, |c: &regex::Captures| mask_str(&c[0])).into_owned(),
        Err(_) => {
            // Too many values for one automaton: exact matches, value by value.
            let mut out = text.to_string();
            for k in ks {
                out = out.replace(k.as_str(), &mask_str(k));
            }
            out
        }
    }
}

impl Masker {
    /// A masker for these identifier field names and JSON paths.
    pub fn new(fields: &[String], paths: &[String]) -> Result<Masker, PhiError> {
        Ok(Masker {
            fields: fields.iter().map(|f| norm(f)).filter(|f| !f.is_empty()).collect(),
            stems: vec![],
            paths: paths.iter().map(|p| parse_path(p)).collect::<Result<_, _>>()?,
        })
    }

    /// Also treat fields whose normalized name starts or ends with a [`DEFAULT_STEMS`] stem as identifiers.
    pub fn with_default_stems(mut self) -> Masker {
        self.stems = DEFAULT_STEMS.iter().map(|s| s.to_string()).collect();
        self
    }

    /// From config: `fields`/`paths` replace the defaults when given, `extra_*` add to them.
    pub fn from_config(
        fields: Option<&[String]>,
        extra_fields: &[String],
        paths: Option<&[String]>,
        extra_paths: &[String],
    ) -> Result<Masker, PhiError> {
        let defaults = fields.is_none();
        let mut f: Vec<String> = match fields {
            Some(f) => f.to_vec(),
            None => DEFAULT_FIELDS.iter().map(|s| s.to_string()).collect(),
        };
        f.extend(extra_fields.iter().cloned());
        let mut p: Vec<String> = match paths {
            Some(p) => p.to_vec(),
            None => DEFAULT_PATHS.iter().map(|s| s.to_string()).collect(),
        };
        p.extend(extra_paths.iter().cloned());
        let m = Masker::new(&f, &p)?;
        Ok(if defaults { m.with_default_stems() } else { m })
    }

    /// Whether a field of this name holds a patient identifier.
    pub fn is_identifier_field(&self, key: &str) -> bool {
        let n = norm(key);
        self.fields.contains(&n) || self.stems.iter().any(|s| n.starts_with(s.as_str()) || n.ends_with(s.as_str()))
    }

    /// Whether key `k` of object `m` holds a patient identifier by its name. A `name` is the
    /// patient's unless its object describes a workflow resource: the object names one by ARN
    /// (`executionArn`, the context object's `Id`) and holds no other identifier field — so an
    /// execution's or state machine's name (a compensation's `execution`, `$$.Execution`)
    /// shows, while `{"name", "mrn", …}` or a bare `{"name"}` is masked.
    fn is_identifier_key(&self, m: &Map<String, Value>, k: &str) -> bool {
        if !self.is_identifier_field(k) {
            return false;
        }
        if norm(k) != "name" {
            return true;
        }
        let names_a_resource = m.values().any(|v| v.as_str().is_some_and(is_arn));
        !names_a_resource || m.keys().any(|o| norm(o) != "name" && self.is_identifier_field(o))
    }

    fn path_hit(&self, at: &[Step]) -> bool {
        self.paths.iter().any(|p| {
            p.len() == at.len()
                && p.iter().zip(at).all(|(s, a)| match (s, a) {
                    (Seg::Any, _) => true,
                    (Seg::Key(k), Step::Key(x)) => k == x,
                    (Seg::Index(i), Step::Index(j)) => i == j,
                    _ => false,
                })
        })
    }

    /// The identifier values in a payload document (and the JSON text inside it),
    /// with the words of multi-word values, for masking free text of the same study.
    pub fn identifiers(&self, doc: &Value) -> Vec<String> {
        let mut out = vec![];
        self.collect(doc, &mut vec![], false, &mut out);
        finish_known(out)
    }

    /// [`Masker::identifiers`] of a JSON text (none if it is not JSON).
    pub fn identifiers_in_text(&self, text: &str) -> Vec<String> {
        match layered_json(text) {
            Some((v, _)) => self.identifiers(&v),
            None => {
                let mut out = vec![];
                for (_, _, v) in embedded_objects(text) {
                    out.extend(self.identifiers(&v));
                }
                finish_known(out)
            }
        }
    }

    fn collect<'a>(&self, v: &'a Value, at: &mut Vec<Step<'a>>, under: bool, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                for (k, x) in m {
                    at.push(Step::Key(k));
                    let hit = under || self.is_identifier_key(m, k) || self.path_hit(at);
                    self.collect(x, at, hit, out);
                    at.pop();
                }
            }
            Value::Array(a) => {
                for (i, x) in a.iter().enumerate() {
                    at.push(Step::Index(i));
                    let hit = under || self.path_hit(at);
                    self.collect(x, at, hit, out);
                    at.pop();
                }
            }
            Value::String(s) => {
                if let Some((inner, _)) = layered_json(s) {
                    let mut found = vec![];
                    self.collect(&inner, &mut vec![], under, &mut found);
                    out.extend(found);
                } else if under {
                    out.push(s.clone());
                    let words: Vec<&str> = s.split(|c: char| c.is_whitespace() || c == ',').filter(|w| !w.is_empty()).collect();
                    if words.len() > 1 {
                        out.extend(words.into_iter().map(str::to_string));
                    }
                }
            }
            Value::Number(n) if under => out.push(n.to_string()),
            _ => {}
        }
    }

    /// The masking function: a payload document with every identifier value masked,
    /// same shape. JSON text inside strings is masked too; other strings lose the
    /// identifier values found anywhere in the document.
    pub fn mask_value(&self, doc: &Value) -> Value {
        self.mask_value_with(doc, &[])
    }

    /// [`Masker::mask_value`], also masking `known` values (of the same study) in free text.
    pub fn mask_value_with(&self, doc: &Value, known: &[String]) -> Value {
        let mut all = self.identifiers(doc);
        all.extend(known.iter().cloned());
        let all = finish_known(all);
        self.walk(doc, &mut vec![], &all)
    }

    fn walk<'a>(&self, v: &'a Value, at: &mut Vec<Step<'a>>, known: &[String]) -> Value {
        match v {
            Value::Object(m) => {
                let mut o = Map::with_capacity(m.len());
                for (k, x) in m {
                    at.push(Step::Key(k));
                    let nv = if self.is_identifier_key(m, k) || self.path_hit(at) { self.mask_subtree(x) } else { self.walk(x, at, known) };
                    at.pop();
                    o.insert(k.clone(), nv);
                }
                Value::Object(o)
            }
            Value::Array(a) => Value::Array(
                a.iter()
                    .enumerate()
                    .map(|(i, x)| {
                        at.push(Step::Index(i));
                        let nv = if self.path_hit(at) { self.mask_subtree(x) } else { self.walk(x, at, known) };
                        at.pop();
                        nv
                    })
                    .collect(),
            ),
            Value::String(s) => Value::String(self.mask_text_with(s, known)),
            other => other.clone(),
        }
    }

    /// Everything under an identifier: leaves masked, JSON text inside strings masked whole.
    fn mask_subtree(&self, v: &Value) -> Value {
        match v {
            Value::String(s) => match layered_json(s) {
                Some((inner, layers)) => Value::String(relayer(&mask_all(&inner), s, layers)),
                None => Value::String(mask_str(s)),
            },
            Value::Object(m) => Value::Object(m.iter().map(|(k, x)| (k.clone(), self.mask_subtree(x))).collect()),
            Value::Array(a) => Value::Array(a.iter().map(|x| self.mask_subtree(x)).collect()),
            other => mask_all(other),
        }
    }

    /// A JSON text masked as [`Masker::mask_value`] does, in the same layout (pretty
    /// stays pretty); text that is not a JSON object or array is returned unchanged.
    pub fn mask_text(&self, text: &str) -> String {
        self.mask_text_with(text, &[])
    }

    /// [`Masker::mask_text`]; text that is not JSON is free text and loses the `known` values,
    /// and the JSON objects embedded in it (`wrong patient {"mrn":"X"}`) are masked in place.
    /// A JSON string that encodes a JSON document (again, up to a few times) is masked inside.
    pub fn mask_text_with(&self, text: &str, known: &[String]) -> String {
        if let Some((v, layers)) = layered_json(text) {
            let inner = if layers == 0 { text.to_string() } else { reserialize(&v, "") };
            return relayer(&self.mask_value_with(&v, known), &inner, layers);
        }
        let spans = embedded_objects(text);
        if spans.is_empty() {
            return mask_free_text(text, known);
        }
        let mut all: Vec<String> = known.to_vec();
        for (_, _, v) in &spans {
            all.extend(self.identifiers(v));
        }
        let all = finish_known(all);
        let mut out = String::with_capacity(text.len());
        let mut at = 0;
        for (start, end, v) in &spans {
            out.push_str(&mask_free_text(&text[at..*start], &all));
            out.push_str(&reserialize(&self.mask_value_with(v, &all), ""));
            at = *end;
        }
        out.push_str(&mask_free_text(&text[at..], &all));
        out
    }

    /// An API response or history event: the payload fields it carries ([`PAYLOAD_KEYS`],
    /// JSON text or JSON) are masked as documents, free text there (a cause) losing `known`
    /// identifier values and those found in its payloads; its own fields (ARNs, names of
    /// states and executions, error codes, dates) keep their values.
    pub fn mask_envelope(&self, v: &Value, known: &[String]) -> Value {
        let mut all: Vec<String> = known.to_vec();
        self.envelope_identifiers(v, &mut all);
        let all = finish_known(all);
        self.envelope(v, &all)
    }

    fn envelope_identifiers(&self, v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                for (k, x) in m {
                    if is_payload_key(k) {
                        out.extend(match x {
                            Value::String(s) => self.identifiers_in_text(s),
                            other => self.identifiers(other),
                        });
                    } else {
                        self.envelope_identifiers(x, out);
                    }
                }
            }
            Value::Array(a) => a.iter().for_each(|x| self.envelope_identifiers(x, out)),
            _ => {}
        }
    }

    fn envelope(&self, v: &Value, known: &[String]) -> Value {
        match v {
            Value::Object(m) => Value::Object(
                m.iter()
                    .map(|(k, x)| {
                        let nv = if is_payload_key(k) {
                            match x {
                                Value::String(s) => Value::String(self.mask_text_with(s, known)),
                                other => self.mask_value_with(other, known),
                            }
                        } else {
                            self.envelope(x, known)
                        };
                        (k.clone(), nv)
                    })
                    .collect(),
            ),
            Value::Array(a) => Value::Array(a.iter().map(|x| self.envelope(x, known)).collect()),
            other => other.clone(),
        }
    }
}

/// An Amazon Resource Name (`arn:partition:service:region:account:resource`).
fn is_arn(s: &str) -> bool {
    s.starts_with("arn:") && s.matches(':').count() >= 5
}

fn is_payload_key(k: &str) -> bool {
    PAYLOAD_KEYS.iter().any(|p| p.eq_ignore_ascii_case(k))
}

/// Words that are not a reason.
const NOT_REASONS: &[&str] = &[
    "test",
    "testing",
    "tested",
    "tests",
    "asdf",
    "qwerty",
    "xxx",
    "foo",
    "bar",
    "baz",
    "reason",
    "reasons",
    "none",
    "na",
    "n/a",
    "because",
    "cause",
    "yes",
    "no",
    "ok",
    "okay",
    "reveal",
    "revealing",
    "phi",
    "todo",
    "tbd",
    "abc",
    "aaa",
    "just",
    "want",
    "wanted",
    "wanna",
    "it",
    "i",
    "to",
    "me",
    "my",
    "the",
    "a",
    "an",
    "and",
    "or",
    "of",
    "is",
    "this",
    "that",
    "so",
    "see",
    "look",
    "need",
    "please",
    "curious",
    "stuff",
    "thing",
    "things",
    "something",
    "whatever",
    "hello",
    "hi",
    "lol",
    "blah",
    "random",
    "why",
    "not",
    "do",
    "can",
    "let",
    "show",
];

/// Whether `w` (lowercase) looks like a word: not one letter repeated ("aaaaaaaaaa"),
/// and a word of four or more letters has a vowel.
fn wordlike(w: &str) -> bool {
    let letters: Vec<char> = w.chars().filter(|c| c.is_alphabetic()).collect();
    let Some(first) = letters.first() else { return false };
    if letters.len() >= 3 && letters.iter().all(|c| c == first) {
        return false;
    }
    letters.len() < 4 || letters.iter().any(|c| "aeiouy".contains(*c) || !c.is_ascii())
}

/// A reason for revealing patient data must say something: at least 10 characters, two
/// different words that look like words, and at least one word of four or more letters
/// that is not filler ("test", "because", "want", "just", …).
pub fn check_reason(reason: &str) -> Result<(), PhiError> {
    let r = reason.trim();
    let words: Vec<String> = r
        .split(|c: char| !c.is_alphanumeric() && c != '/')
        .filter(|w| w.chars().filter(|c| c.is_alphabetic()).count() >= 2)
        .map(|w| w.to_lowercase())
        .filter(|w| wordlike(w))
        .collect();
    let distinct: HashSet<&str> = words.iter().map(String::as_str).collect();
    let substantive = distinct.iter().filter(|w| !NOT_REASONS.contains(w) && w.chars().filter(|c| c.is_alphabetic()).count() >= 4).count();
    if r.chars().count() < 10 || distinct.len() < 2 || substantive < 1 {
        return Err(PhiError::Reason(format!(
            "a reason to reveal patient data must say why, in at least 10 characters and two real words, one of them of substance (e.g. \"consult with Dr Lee on the wrong-patient hold\"); got {r:?}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn order() -> Value {
        json!({
            "accession": "ACC-100001",
            "family": "scheduled",
            "patient": {"name": "Dana Testperson", "given": "Dana", "family": "Testperson", "mrn": "SYN-000421", "birthDate": "1961-04-02"},
            "order": {"patientName": "Dana Testperson", "code": 42},
            "note": "called Dana Testperson back"
        })
    }

    #[test]
    fn masks_every_identifier_and_keeps_the_shape() {
        let m = Masker::default();
        let v = m.mask_value(&order());
        let s = v.to_string();
        for secret in ["Testperson", "Dana", "SYN-000421", "1961"] {
            assert!(!s.contains(secret), "{secret} in {s}");
        }
        assert_eq!(v["patient"]["name"], "D•••");
        assert_eq!(v["patient"]["mrn"], "S•••");
        assert_eq!(v["accession"], "ACC-100001");
        assert_eq!(v["order"]["code"], 42);
        assert_eq!(v["note"], "called D••• back");
        assert_eq!(v.as_object().map(|o| o.len()), order().as_object().map(|o| o.len()));
    }

    #[test]
    fn paths_and_fields_are_configurable() {
        let m =
            Masker::from_config(Some(&["ssn".into()]), &["Accession".into()], Some(&["$.order.patientName".into()]), &[]).expect("masker");
        let v = m.mask_value(&order());
        assert_eq!(v["accession"], "A•••", "extra field, matched case-insensitively");
        assert_eq!(v["order"]["patientName"], "D•••");
        assert_eq!(v["patient"]["mrn"], "SYN-000421", "fields replaced the defaults");
        let all = Masker::new(&[], &["$.items[*].id".into(), "$['x'].y".into(), "$.z[1]".into()]).expect("paths");
        let v = all.mask_value(&json!({"items": [{"id": "abc"}, {"id": "def", "k": 1}], "x": {"y": 12345}, "z": ["keep", "hide"]}));
        assert_eq!(v, json!({"items": [{"id": "a•••"}, {"id": "d•••", "k": 1}], "x": {"y": "•••"}, "z": ["keep", "h•••"]}));
        assert!(Masker::new(&[], &["patient".into()]).is_err());
        assert!(Masker::new(&[], &["$.a[".into()]).is_err());
        assert!(Masker::new(&[], &["$..a".into()]).is_err());
    }

    #[test]
    fn json_inside_strings_and_envelopes_is_masked() {
        let m = Masker::default();
        let event = json!({
            "type": "TaskStateEntered", "id": 2,
            "stateEnteredEventDetails": {"name": "Review", "input": order().to_string(), "inputDetails": {"truncated": false}}
        });
        let v = m.mask_envelope(&event, &[]);
        assert_eq!(v["stateEnteredEventDetails"]["name"], "Review", "the envelope's own name is a state name");
        let input: Value = serde_json::from_str(v["stateEnteredEventDetails"]["input"].as_str().unwrap_or("")).expect("still JSON");
        assert_eq!(input["patient"]["given"], "D•••");
        let failed = json!({"taskFailedEventDetails": {"error": "Archive.Rejected", "cause": "no match for Testperson, Dana"}});
        let known = m.identifiers(&order());
        let v = m.mask_envelope(&failed, &known);
        assert_eq!(v["taskFailedEventDetails"]["cause"], "no match for T•••, D•••");
        let pretty = serde_json::to_string_pretty(&order()).unwrap_or_default();
        let masked = m.mask_text(&pretty);
        assert!(masked.contains('\n') && !masked.contains("Testperson"));
        assert_eq!(m.mask_text("plain words"), "plain words");
        // A whole embedded document under an identifier field.
        let v = m.mask_value(&json!({"patient": order()["patient"].to_string()}));
        assert!(!v.to_string().contains("Testperson"), "{v}");
    }

    #[test]
    fn a_reason_must_say_something() {
        for bad in ["", "x", "asdf", "test", "test test test", "asdf asdf asdf", "aaaaaaaaaaaa", "ok ok", "just testing"] {
            assert!(check_reason(bad).is_err(), "{bad:?} accepted");
        }
        for good in ["stroke call", "wrong-patient hold for ACC-1", "consult with Dr Lee"] {
            assert!(check_reason(good).is_ok(), "{good:?} refused");
        }
    }

    #[test]
    fn weak_reasons_are_refused() {
        for bad in ["aaaaaaaaaa bbbbbbbbbb", "testing it", "because i want to", "just want to see it", "qwrtzp xxxxxx"] {
            assert!(check_reason(bad).is_err(), "{bad:?} accepted");
        }
        for good in ["stroke call", "ED follow-up on critical finding", "patient called about report"] {
            assert!(check_reason(good).is_ok(), "{good:?} refused");
        }
    }

    #[test]
    fn error_fields_are_masked_like_causes() {
        let m = Masker::default();
        let known = m.identifiers(&json!({"patient": {"name": "Ernest Heron"}}));
        let failed = json!({"executionFailedEventDetails": {"error": "Ernest Heron", "cause": "see Ernest"}});
        let v = m.mask_envelope(&failed, &known);
        assert_eq!(v["executionFailedEventDetails"]["error"], "E•••");
        assert_eq!(v["executionFailedEventDetails"]["cause"], "see E•••");
        let v = m.mask_envelope(&json!({"error": "States.TaskFailed"}), &known);
        assert_eq!(v["error"], "States.TaskFailed", "error codes stay");
    }

    #[test]
    fn known_values_match_in_any_case_and_are_escaped() {
        let known = vec!["Ernest Heron".to_string(), "a.c".to_string(), "(x+".to_string()];
        assert_eq!(mask_free_text("paged ERNEST HERON and ernest heron", &known), "paged E••• and e•••");
        assert_eq!(mask_free_text("abc a.c (x+ y", &known), "abc a••• (••• y", "values are literals, not patterns");
        assert_eq!(mask_free_text("nothing here", &known), "nothing here");
    }

    #[test]
    fn json_embedded_in_free_text_is_masked() {
        let m = Masker::default();
        let t = m.mask_text("prefix {\"mrn\":\"INLINE-MRN\"} suffix INLINE-MRN");
        assert!(!t.contains("INLINE-MRN"), "{t}");
        assert!(t.starts_with("prefix {\"mrn\":\"I•••\"} suffix"), "{t}");
        let t = m.mask_text("wrong patient {\"mrn\":\"REJ-MRN\"} and {not json} {\"a\":1}");
        assert_eq!(t, "wrong patient {\"mrn\":\"R•••\"} and {not json} {\"a\":1}");
        let v = m.mask_value(&json!({"note": "prefix {\"mrn\":\"INLINE-MRN\"} suffix"}));
        assert!(!v.to_string().contains("INLINE-MRN"), "{v}");
        // Doubly (and triply) encoded JSON strings.
        let once = json!({"mrn": "DBL-MRN", "k": 1}).to_string();
        let twice = Value::String(once.clone()).to_string();
        let thrice = Value::String(twice.clone()).to_string();
        for s in [&twice, &thrice] {
            let masked = m.mask_text(s);
            assert!(!masked.contains("DBL-MRN"), "{masked}");
            assert!(masked.starts_with('"'), "still a JSON string: {masked}");
        }
        let v = m.mask_value(&json!({"input": twice}));
        assert!(!v.to_string().contains("DBL-MRN"), "{v}");
        assert!(m.identifiers_in_text(&thrice).contains(&"DBL-MRN".to_string()));
        // Bounded: many braces do not blow up.
        let many = "{".repeat(10_000);
        assert_eq!(m.mask_text(&many), many);
    }

    #[test]
    fn identifier_names_by_stem() {
        let m = Masker::default();
        let doc = json!({
            "ssnNumber": "123-45-6789", "emailAddress": "e@x.org", "homeAddress": "1 Elm St", "cell": "555-0101",
            "nhsNumber": 9434765919u64, "mrn_num": "MRN-77", "patientMrn": "MRN-78", "mobile": "555-0102",
            "identifier": [{"system": "urn:mrn", "value": "FHIR-ID-1"}],
            "accession": "ACC-1", "modality": "CT", "priority": "STAT", "status": "open", "state": "Review"
        });
        let v = m.mask_value(&doc);
        let s = v.to_string();
        for secret in ["6789", "e@x.org", "Elm", "0101", "9434765919", "MRN-77", "MRN-78", "0102", "FHIR-ID-1"] {
            assert!(!s.contains(secret), "{secret} in {s}");
        }
        assert_eq!(v["nhsNumber"], "•••", "masked numbers are strings");
        for (k, val) in [("accession", "ACC-1"), ("modality", "CT"), ("priority", "STAT"), ("status", "open"), ("state", "Review")] {
            assert_eq!(v[k], val, "{k} is a workflow field");
        }
        let only = Masker::new(&["ssn".into()], &[]).expect("masker");
        assert!(!only.is_identifier_field("ssnNumber"), "configured fields replace the defaults, stems included");
    }

    #[test]
    fn a_workflow_resource_name_shows_and_a_patient_name_does_not() {
        let m = Masker::default();
        let arn = "arn:aws:states:us-east-1:000000000000:execution:booking:ord-7";
        // A compensation's input: the original execution (its name and ARN), and its input.
        let input = json!({
            "execution": {"executionArn": arn, "name": "ord-7", "input": {"patient": {"name": "Jane Doe", "mrn": "SYN-123"}}},
            "steps": [{"state": "Reserve", "input": {"patientName": "Jane Doe"}}],
            "reason": "slot double-booked"
        });
        let v = m.mask_value(&input);
        assert_eq!(v["execution"]["name"], "ord-7", "an execution's name is not a patient's");
        assert_eq!(v["execution"]["executionArn"], arn, "nor is its ARN (no identifier value in it)");
        assert_eq!(v["execution"]["input"]["patient"]["name"], "J•••");
        assert_eq!(v["steps"][0]["input"]["patientName"], "J•••");
        assert!(!v.to_string().contains("Jane") && !v.to_string().contains("SYN-123"), "{v}");
        // The context object ($$): the execution and the state machine are named by ARN.
        let ctx = json!({"Execution": {"Id": arn, "Name": "ord-7"}, "StateMachine": {"Id": "arn:aws:states:us-east-1:000000000000:stateMachine:booking", "Name": "booking"}});
        assert_eq!(m.mask_value(&ctx), ctx);
        // As JSON text inside an envelope (describe --json, history events).
        let d = m.mask_envelope(&json!({"name": "ord-7-undo", "input": input.to_string(), "compensates": arn}), &[]);
        let shown: Value = serde_json::from_str(d["input"].as_str().unwrap_or_default()).expect("json");
        assert_eq!((shown["execution"]["name"].as_str(), d["compensates"].as_str()), (Some("ord-7"), Some(arn)));

        // Fail closed: a `name` without a resource ARN beside it, or beside another identifier, is masked.
        for doc in [
            json!({"name": "Jane Doe"}),
            json!({"name": "Jane Doe", "room": "12"}),
            json!({"name": "Jane Doe", "mrn": "SYN-123", "recordArn": "arn:aws:healthlake:us-east-1:1:datastore/x"}),
            json!({"name": "Jane Doe", "birthDate": "1961-04-02", "executionArn": arn}),
            json!({"name": "Jane Doe", "link": "arn:not-an-arn"}),
            json!({"orderingPhysician": {"npi": "9123", "name": "Jane Doe"}}),
        ] {
            let v = m.mask_value(&doc);
            assert!(!v.to_string().contains("Jane"), "{doc} → {v}");
            assert!(m.identifiers(&doc).contains(&"Jane Doe".to_string()), "{doc}: found for free text too");
        }
        // A configured path still masks a resource-looking object's name.
        let by_path = Masker::from_config(None, &[], None, &["$.execution.name".into()]).expect("masker");
        assert_eq!(by_path.mask_value(&input)["execution"]["name"], "o•••");
    }

    #[test]
    fn patient_names_stay_masked_in_every_demo_machine() {
        use crate::engine::{Clock, Engine, tasks::TaskRunner};
        use chrono::{TimeZone, Utc};
        let start = Utc.with_ymd_and_hms(2025, 3, 3, 7, 0, 0).single().expect("time");
        let mut e = Engine::new(crate::store::Store::in_memory().expect("store"), TaskRunner::new(), Clock::virtual_at(start));
        crate::sim::Demo::install(&mut e).expect("install");
        let mut demo =
            crate::sim::Demo::with_config(crate::sim::DemoConfig { per_hour: [20.0, 10.0, 10.0], ..crate::sim::DemoConfig::new(3, 120.0) });
        // The building blocks the workload does not start on their own.
        let rates = crate::sim::DemoConfig::default().rates;
        for (i, machine) in ["ai-review-gate", "report-publication", "billing"].into_iter().enumerate() {
            let t = crate::sim::workload::Timing::Scaled(120.0);
            let mut o = crate::sim::workload::synthetic_order(3, 900 + i as u64, crate::sim::Family::Scheduled, &t, &rates);
            o["assignment"] = json!({"reviewerGroup": "body", "readerSite": "MAIN", "crossSite": false});
            o["report"] = json!({"reportId": "RPT-1"});
            e.start_execution(machine, Some(&format!("block-{machine}")), &o.to_string()).expect("start");
        }
        for s in 1..=120 {
            e.clock.advance_to(start + chrono::Duration::seconds(s));
            demo.tick(&mut e).expect("tick");
        }
        let rows = e.store.executions(&crate::model::ExecutionFilter { limit: 10_000, ..Default::default() }).expect("rows");
        let machines: HashSet<&str> = rows.iter().filter_map(|r| r.state_machine_arn.rsplit(':').next()).collect();
        assert_eq!(machines.len(), crate::sim::definitions().len(), "{machines:?}");
        let m = Masker::default();
        let mut events = 0;
        for r in &rows {
            let input: Value = serde_json::from_str(&r.input).expect("input");
            let p = &input["patient"];
            let secrets: Vec<&str> = ["name", "given", "family", "mrn", "birthDate"].iter().filter_map(|k| p[*k].as_str()).collect();
            assert_eq!(secrets.len(), 5, "{p}");
            let described = m.mask_envelope(&json!({"name": r.name, "executionArn": r.arn, "input": r.input, "output": r.output}), &[]);
            let mut texts = vec![described.to_string()];
            for ev in e.store.history(&r.arn, 0, 10_000, false).expect("history") {
                events += 1;
                texts.push(m.mask_envelope(&ev.details, &m.identifiers_in_text(&r.input)).to_string());
            }
            for t in &texts {
                for secret in &secrets {
                    assert!(!t.contains(secret), "{} shows {secret}: {t}", r.name);
                }
            }
            assert_eq!(described["name"], r.name.as_str());
        }
        assert!(events > 1000, "{events} history events");
    }

    #[test]
    fn short_values_show_nothing() {
        assert_eq!(mask_str(""), "");
        assert_eq!(mask_str("F"), "•••");
        assert_eq!(mask_str("Ada"), "A•••");
    }
}
