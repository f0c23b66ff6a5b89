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
//! value under an identifier field or path becomes `"•••"` (nothing of the value
//! is kept, not even its first character), objects and arrays there are masked leaf
//! by leaf, and their keys too unless a key is a field name (a map keyed by MRN
//! under `patient` shows `"•••#3f2a9c"`, a per-process pseudonym, so rows can still be
//! told apart). JSON carried inside strings (history events embed state input and
//! output as JSON text) is masked too, and free text (causes, comments, drafts, keys)
//! loses the identifier values found in the same study's documents, in any letter
//! case and in their other formats (an MRN without its prefix or punctuation, a date
//! written another way), after NFKC normalisation; dates and labelled identifiers
//! (`MRN 000421`) in free text are masked even when no document names them.
//!
//! API responses and history events are *envelopes*: their own fields (ARNs,
//! state names, status) are not patient data, so [`Masker::mask_envelope`] masks
//! only the payload fields they carry (`input`, `output`, `parameters`, `result`,
//! `cause`, `assignedVariables`).

use std::collections::HashSet;
use std::sync::OnceLock;

use hmac::{Hmac, Mac};
use regex::Regex;
use serde_json::{Map, Value};
use sha2::Sha256;
use unicode_normalization::UnicodeNormalization;

/// What a masked value shows: this, and nothing of the value.
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
    #[error("a reason code is required: one of {}", .codes.join(", "))]
    MissingReasonCode { codes: Vec<String> },
    #[error("{code:?} is not a reason code: one of {}", .codes.join(", "))]
    UnknownReasonCode { code: String, codes: Vec<String> },
    #[error("reason code {0:?} is not a lowercase word like direct-care (letters, digits and '-')")]
    BadReasonCode(String),
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

/// A masked form of one identifier value: [`MASK`], nothing of the value kept
/// (the empty string stays empty).
pub fn mask_str(s: &str) -> String {
    if s.is_empty() { String::new() } else { MASK.to_string() }
}

/// The key pseudonyms are made with: random, per process, never stored or shown.
fn session_key() -> &'static [u8; 32] {
    static KEY: OnceLock<[u8; 32]> = OnceLock::new();
    KEY.get_or_init(|| {
        let mut k = [0u8; 32];
        k[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        k[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        k
    })
}

/// A per-process pseudonym for an identifier (`•••#3f2a9c`): a short HMAC-SHA256 of the
/// value (NFKC, lowercase, letters and digits only, so `SYN-000421` and `syn000421` agree)
/// under a random key of this process. It tells rows apart within one session and says
/// nothing of the value: no part of it is kept, and without the key no guess can be checked.
pub fn pseudonym(s: &str) -> String {
    let canon: String = s.nfkc().flat_map(char::to_lowercase).filter(|c| c.is_alphanumeric()).collect();
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(session_key()) else { return MASK.to_string() };
    mac.update(canon.as_bytes());
    let tag = mac.finalize().into_bytes();
    let hex: String = tag.iter().take(3).map(|b| format!("{b:02x}")).collect();
    format!("{MASK}#{hex}")
}

/// `v` inserted under `key`, or under `key~2`, `key~3`, … when two masked keys meet.
fn insert_unique(o: &mut Map<String, Value>, key: String, v: Value) {
    if !o.contains_key(&key) {
        o.insert(key, v);
        return;
    }
    for n in 2usize.. {
        let k = format!("{key}~{n}");
        if !o.contains_key(&k) {
            o.insert(k, v);
            return;
        }
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

/// An identifier value for free-text masking, and each word of a multi-word value.
fn push_identifier(s: &str, out: &mut Vec<String>) {
    out.push(s.to_string());
    let words: Vec<&str> = s.split(|c: char| c.is_whitespace() || c == ',').filter(|w| !w.is_empty()).collect();
    if words.len() > 1 {
        out.extend(words.into_iter().map(str::to_string));
    }
}

/// Known identifier values, longest first, so that "Dana Testperson" goes before "Dana".
fn finish_known(mut known: Vec<String>) -> Vec<String> {
    known.retain(|k| k.chars().count() >= 3);
    known.sort_by(|a, b| b.len().cmp(&a.len()).then(a.cmp(b)));
    known.dedup();
    known
}

/// Separators an identifier may be written with or without (`SYN-000421`, `SYN 000421`, `SYN000421`).
const SEP: &str = r"[\s\-_./:#,]{0,3}";

/// How many digits an identifier value needs before its other formats are matched too.
const MIN_DIGITS_FOR_FORMATS: usize = 4;

/// The regular expression for one known identifier value: the value itself (whitespace
/// runs matching any whitespace), and for a value with digits (an MRN, a phone or record
/// number, a date) its other formats: punctuation and spaces anywhere between its letters
/// and digits or none, a leading letter prefix left out, leading zeros left out.
fn known_pattern(k: &str) -> String {
    let words: Vec<String> = k.split_whitespace().map(regex::escape).collect();
    let literal = words.join(r"\s+");
    let digits = k.chars().filter(char::is_ascii_digit).count();
    if digits < MIN_DIGITS_FOR_FORMATS {
        return literal;
    }
    // Runs of letters and of digits, in order: "SYN-000421" → ["SYN", "000421"].
    let mut runs: Vec<(bool, String)> = vec![];
    for c in k.chars().filter(|c| c.is_alphanumeric()) {
        let digit = c.is_ascii_digit();
        match runs.last_mut() {
            Some((d, r)) if *d == digit => r.push(c),
            _ => runs.push((digit, c.to_string())),
        }
    }
    let digit_run = |r: &str| {
        let core = r.trim_start_matches('0');
        let spaced = |t: &str| t.chars().map(|c| regex::escape(&c.to_string())).collect::<Vec<_>>().join(r"[\s\-./]?");
        if r.len() > core.len() && core.len() >= MIN_DIGITS_FOR_FORMATS { format!("(?:0{SEP})*{}", spaced(core)) } else { spaced(r) }
    };
    let first_digit = runs.iter().position(|(d, _)| *d).unwrap_or(0);
    let mut body = String::new();
    for (i, (d, r)) in runs.iter().enumerate().skip(first_digit) {
        if i > first_digit {
            body.push_str(SEP);
        }
        body.push_str(&if *d { digit_run(r) } else { regex::escape(r) });
    }
    let prefix: Vec<String> = runs[..first_digit].iter().map(|(_, r)| regex::escape(r)).collect();
    let formats = if prefix.is_empty() { body } else { format!("(?:{}{SEP})?{body}", prefix.join(SEP)) };
    format!("{literal}|{formats}")
}

/// The case-insensitive automaton for `pattern`, compiled once per thread for the last few
/// patterns (the console masks the same study's values frame after frame); `None` when the
/// values are too many for one automaton.
fn known_regex(pattern: &str) -> Option<Regex> {
    const KEPT: usize = 16;
    thread_local! {
        static CACHE: std::cell::RefCell<Vec<(String, Regex)>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if let Some(i) = c.iter().position(|(p, _)| p == pattern) {
            let hit = c.remove(i);
            let re = hit.1.clone();
            c.push(hit);
            return Some(re);
        }
        let re = regex::RegexBuilder::new(pattern).case_insensitive(true).size_limit(64 << 20).build().ok()?;
        if c.len() >= KEPT {
            c.remove(0);
        }
        c.push((pattern.to_string(), re.clone()));
        Some(re)
    })
}

/// Whether known value `k` may occur in a text: its lowercase form does, or (a value with
/// digits) its digits do among the text's digits.
fn may_occur(k: &str, lower: &str, digits: &str) -> bool {
    if lower.contains(&k.to_lowercase()) {
        return true;
    }
    let kd: String = k.chars().filter(char::is_ascii_digit).collect();
    kd.len() >= MIN_DIGITS_FOR_FORMATS && {
        let core = kd.trim_start_matches('0');
        digits.contains(if core.len() >= MIN_DIGITS_FOR_FORMATS { core } else { kd.as_str() })
    }
}

const MONTHS: &str = "january|jan|february|feb|march|mar|april|apr|may|june|jun|july|jul|august|aug|september|sept|sep|october|oct|november|nov|december|dec";

/// Date formats found in free text: year-month-day, day/month/year or month/day/year
/// (`-`, `/`, `.`), `YYYYMMDD`, `4 Mar 1961`, `4th of March 1961`, `March 4, 1961`.
fn date_regexes() -> &'static [Regex] {
    static RES: OnceLock<Vec<Regex>> = OnceLock::new();
    RES.get_or_init(|| {
        [
            r"\b(?P<y>\d{4})[-/.](?P<m>\d{1,2})[-/.](?P<d>\d{1,2})\b".to_string(),
            r"\b(?P<a>\d{1,2})[-/.](?P<b>\d{1,2})[-/.](?P<y>\d{4}|\d{2})\b".to_string(),
            r"\b(?P<y>(?:18|19|20)\d{2})(?P<m>\d{2})(?P<d>\d{2})\b".to_string(),
            format!(r"(?i)\b(?P<d>\d{{1,2}})(?:st|nd|rd|th)?(?:\s+of)?[\s\-]+(?:{MONTHS})\.?,?[\s\-]+(?P<y>\d{{4}}|\d{{2}})\b"),
            format!(r"(?i)\b(?:{MONTHS})\.?\s+(?P<d>\d{{1,2}})(?:st|nd|rd|th)?,?\s+(?P<y>\d{{4}})\b"),
        ]
        .iter()
        .filter_map(|p| Regex::new(p).ok())
        .collect()
    })
}

/// An identifier after its label (`MRN 000421`, `medical record no. 77-1`, `SSN: 123…`).
fn label_regex() -> Option<&'static Regex> {
    static RE: OnceLock<Option<Regex>> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(
            r"(?i)\b(?:mrn|medical\s+record(?:\s+(?:number|no\.?|#))?|patient\s+id|ssn|nhs\s+(?:number|no\.?))\s*[:#=]?\s*(?:is\s+|no\.?\s*|number\s+)?(?P<v>(?:\p{L}{1,5}[\s\-/]?)?[\p{L}\p{N}][\p{L}\p{N}\-./]*)",
        )
        .ok()
    })
    .as_ref()
}

/// Whether a date match's parts make a date (a month, a day, a plausible year).
fn is_date(c: &regex::Captures) -> bool {
    let n = |g: &str| c.name(g).and_then(|m| m.as_str().parse::<u32>().ok());
    let year_ok = n("y").is_some_and(|y| c.name("y").is_some_and(|m| m.len() == 2) || (1800..=2199).contains(&y));
    let md_ok = |m: u32, d: u32| (1..=12).contains(&m) && (1..=31).contains(&d);
    match (n("m"), n("d"), n("a"), n("b")) {
        (Some(m), Some(d), _, _) => year_ok && md_ok(m, d),
        (None, Some(d), _, _) => year_ok && (1..=31).contains(&d),
        (_, _, Some(a), Some(b)) => year_ok && (md_ok(a, b) || md_ok(b, a)),
        _ => false,
    }
}

/// Whether the date ending at `end` is the date of a timestamp (`2025-03-03T07:00`,
/// `2025-03-03 07:00`): a workflow time, not a birth date.
fn is_timestamp_at(text: &str, end: usize) -> bool {
    let rest = &text.as_bytes()[end..];
    let digit = |i: usize| rest.get(i).is_some_and(u8::is_ascii_digit);
    match rest.first() {
        Some(b'T') | Some(b't') => digit(1),
        Some(b' ') => digit(1) && (rest.get(2) == Some(&b':') || (digit(2) && rest.get(3) == Some(&b':'))),
        _ => false,
    }
}

/// Byte spans of `text` that are dates (not timestamps) or labelled identifiers.
fn pattern_spans(text: &str, out: &mut Vec<(usize, usize)>) {
    if text.bytes().any(|b| b.is_ascii_digit()) {
        for re in date_regexes() {
            for c in re.captures_iter(text) {
                let Some(m) = c.get(0) else { continue };
                // Part of a longer dotted number (an OID such as a study UID) is not a date.
                let before = text[..m.start()].chars().next_back().is_some_and(|ch| ch.is_ascii_digit() || ch == '.');
                let rest = &text.as_bytes()[m.end()..];
                let after = rest.first() == Some(&b'.') && rest.get(1).is_some_and(u8::is_ascii_digit);
                if is_date(&c) && !is_timestamp_at(text, m.end()) && !before && !after {
                    out.push((m.start(), m.end()));
                }
            }
        }
    }
    if let Some(re) = label_regex().filter(|_| text.bytes().any(|b| b.is_ascii_digit())) {
        for c in re.captures_iter(text) {
            if let Some(v) = c.name("v") {
                let value = v.as_str().trim_end_matches(['.', '-', '/']);
                if value.chars().any(|ch| ch.is_numeric()) {
                    out.push((v.start(), v.start() + value.len()));
                }
            }
        }
    }
}

/// `text` with every occurrence of a known identifier value masked, in any letter case
/// ("ERNEST HERON" for "Ernest Heron") and, for values with digits, in their other formats
/// (`SYN000421`, `000421`, `1961/04/02`, `19610402`); dates and labelled identifiers are
/// masked whether known or not. Text is NFKC-normalised first (full-width digits and
/// letters match their ASCII forms); it comes back normalised only where something was masked.
/// The known values are escaped literals of one case-insensitive alternation, longest first.
pub fn mask_free_text(text: &str, known: &[String]) -> String {
    let normal: String;
    let t = if unicode_normalization::is_nfkc_quick(text.chars()) == unicode_normalization::IsNormalized::Yes {
        text
    } else {
        normal = text.nfkc().collect();
        normal.as_str()
    };
    let mut spans = vec![];
    // A cheap prefilter: only values that may occur go into the automaton.
    let lower = t.to_lowercase();
    let digits: String = t.chars().filter(char::is_ascii_digit).collect();
    let mut ks: Vec<std::borrow::Cow<str>> = known
        .iter()
        .map(|k| {
            if unicode_normalization::is_nfkc_quick(k.chars()) == unicode_normalization::IsNormalized::Yes {
                std::borrow::Cow::Borrowed(k.as_str())
            } else {
                std::borrow::Cow::Owned(k.nfkc().collect::<String>())
            }
        })
        .filter(|k| k.chars().count() >= 3 && may_occur(k, &lower, &digits))
        .collect();
    if !ks.is_empty() {
        ks.sort_by(|a, b| b.len().cmp(&a.len()).then(a.cmp(b)));
        ks.dedup();
        let pattern = ks.iter().map(|k| known_pattern(k)).collect::<Vec<_>>().join("|");
        match known_regex(&pattern) {
            Some(re) => spans.extend(re.find_iter(t).filter(|m| !m.as_str().is_empty()).map(|m| (m.start(), m.end()))),
            None => {
                // Too many values for one automaton: exact matches, value by value.
                for k in &ks {
                    spans.extend(t.match_indices(k.as_ref()).map(|(i, m)| (i, i + m.len())));
                }
            }
        }
    }
    pattern_spans(t, &mut spans);
    if spans.is_empty() {
        return text.to_string();
    }
    spans.sort();
    let mut merged: Vec<(usize, usize)> = vec![];
    for (start, end) in spans {
        match merged.last_mut() {
            Some(last) if start <= last.1 => last.1 = last.1.max(end),
            _ => merged.push((start, end)),
        }
    }
    let mut out = String::with_capacity(t.len());
    let mut at = 0;
    for (start, end) in merged {
        out.push_str(&t[at..start]);
        out.push_str(MASK);
        at = end;
    }
    out.push_str(&t[at..]);
    out
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
                    if under && !self.schema_key(k) {
                        push_identifier(k, out);
                    }
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
                    push_identifier(s, out);
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
                    let nv = if self.is_identifier_key(m, k) || self.path_hit(at) {
                        self.mask_subtree(x, known)
                    } else {
                        self.walk(x, at, known)
                    };
                    at.pop();
                    insert_unique(&mut o, self.mask_key(k, known, false), nv);
                }
                Value::Object(o)
            }
            Value::Array(a) => Value::Array(
                a.iter()
                    .enumerate()
                    .map(|(i, x)| {
                        at.push(Step::Index(i));
                        let nv = if self.path_hit(at) { self.mask_subtree(x, known) } else { self.walk(x, at, known) };
                        at.pop();
                        nv
                    })
                    .collect(),
            ),
            Value::String(s) => Value::String(self.mask_text_with(s, known)),
            other => other.clone(),
        }
    }

    /// Everything under an identifier: leaves masked, JSON text inside strings masked whole,
    /// keys that are not field names (a map keyed by MRN) replaced by their pseudonyms.
    fn mask_subtree(&self, v: &Value, known: &[String]) -> Value {
        match v {
            Value::String(s) => match layered_json(s) {
                Some((inner, layers)) => Value::String(relayer(&self.mask_subtree(&inner, known), s, layers)),
                None => Value::String(mask_str(s)),
            },
            Value::Object(m) => {
                let mut o = Map::with_capacity(m.len());
                for (k, x) in m {
                    insert_unique(&mut o, self.mask_key(k, known, true), self.mask_subtree(x, known));
                }
                Value::Object(o)
            }
            Value::Array(a) => Value::Array(a.iter().map(|x| self.mask_subtree(x, known)).collect()),
            Value::Null => Value::Null,
            Value::Number(_) | Value::Bool(_) => Value::String(MASK.to_string()),
        }
    }

    /// Whether a key under an identifier is a field name (`mrn`, `birthDate`, `visits`,
    /// `line1`) rather than data: a configured identifier field, or a lowercase-first word of
    /// ASCII letters (`_`, `-` and one final digit allowed). `SYN-000421`, `Dana Testperson`,
    /// `1961-04-02`, `MRN-93317` are data.
    fn schema_key(&self, k: &str) -> bool {
        let body = k.strip_suffix(|c: char| c.is_ascii_digit()).unwrap_or(k);
        if !body.chars().all(|c| c.is_ascii_alphabetic() || c == '_' || c == '-') {
            return false;
        }
        body.starts_with(|c: char| c.is_ascii_lowercase()) || self.is_identifier_field(k)
    }

    /// An object key as shown: its pseudonym when it is an identifier (data under an
    /// identifier, or a key holding a known identifier value, a date or a labelled identifier).
    fn mask_key(&self, k: &str, known: &[String], under: bool) -> String {
        let schema = self.schema_key(k);
        if under && !schema {
            return pseudonym(k);
        }
        // A field name holds no date or labelled identifier (those need digits): only a known value.
        if schema && !k.bytes().any(|b| b.is_ascii_digit()) {
            let lower = k.to_lowercase();
            if !known.iter().any(|v| v.chars().count() >= 3 && lower.contains(&v.to_lowercase())) {
                return k.to_string();
            }
        }
        if mask_free_text(k, known) != k { pseudonym(k) } else { k.to_string() }
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

/// Rows and runs of a keyboard (QWERTY, QWERTZ, AZERTY, digits): a word that is a run of
/// adjacent keys (`asdfg`, `qwert`, `lkjh`, `zxcvb`, `12345`) is a mash, not a word.
const KEY_RUNS: &[&str] = &[
    "qwertyuiop",
    "asdfghjkl",
    "zxcvbnm",
    "qwertzuiop",
    "yxcvbnm",
    "azertyuiop",
    "qsdfghjklm",
    "wxcvbn",
    "1234567890",
    "qazwsxedcrfvtgbyhnujmikolp",
];

/// Whether `w` (lowercase letters/digits) is three or more adjacent keys of one keyboard row, either way.
fn keyboard_run(w: &str) -> bool {
    w.chars().count() >= 3
        && KEY_RUNS.iter().any(|row| {
            let rev: String = row.chars().rev().collect();
            row.contains(w) || rev.contains(w)
        })
}

/// Whether `w` (lowercase) looks like a word: not one letter repeated ("aaaaaaaaaa"), not two
/// letters alternating ("ababab"), not a run of keyboard keys ("asdfg"), and a word of four
/// or more letters has a vowel.
fn wordlike(w: &str) -> bool {
    let letters: Vec<char> = w.chars().filter(|c| c.is_alphabetic()).collect();
    let Some(first) = letters.first() else { return false };
    if letters.len() >= 3 && letters.iter().all(|c| c == first) {
        return false;
    }
    let distinct: HashSet<char> = letters.iter().copied().collect();
    if letters.len() >= 4 && distinct.len() <= 2 {
        return false;
    }
    if keyboard_run(w) {
        return false;
    }
    letters.len() < 4 || letters.iter().any(|c| "aeiouy".contains(*c) || !c.is_ascii())
}

/// A reason as typed, normalised: NFKC (full-width letters, digits and spaces become their
/// ASCII selves), invisible characters (zero-width, bidirectional controls, other controls)
/// dropped, runs of whitespace one space, trimmed.
pub fn normalize_reason(text: &str) -> String {
    let invisible = |c: char| {
        c.is_control()
            || matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{206F}' | '\u{FEFF}' | '\u{00AD}' | '\u{180E}')
    };
    let t: String = text.nfkc().map(|c| if c.is_whitespace() { ' ' } else { c }).filter(|c| !invisible(*c)).collect();
    t.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A reason's note must say something: at least 10 characters, two different words that look
/// like words, and at least one word of four or more letters that is not filler ("test",
/// "because", "want", …), checked after [`normalize_reason`] (full-width filler is filler too)
/// and refusing keyboard mashes ("asdfg qwert") and repeated characters ("xxxxxxxx").
pub fn check_reason(reason: &str) -> Result<(), PhiError> {
    let r = normalize_reason(reason);
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
            "a reason must say why, in at least 10 characters and two real words, one of them of substance (e.g. \"consult with Dr Lee on the wrong-patient hold\"); got {r:?}"
        )));
    }
    Ok(())
}

/// The reason codes offered by default (config `[reasons] codes` replaces them).
pub const DEFAULT_REASON_CODES: &[&str] = &["direct-care", "quality-review", "operations-incident", "patient-request", "other"];

/// The configured list of reason codes: lowercase words (`direct-care`), in order, no repeats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReasonCodes(Vec<String>);

impl Default for ReasonCodes {
    fn default() -> ReasonCodes {
        ReasonCodes(DEFAULT_REASON_CODES.iter().map(|c| c.to_string()).collect())
    }
}

impl ReasonCodes {
    /// The list from config; an empty list, a repeat or a code that is not a lowercase word is refused.
    pub fn new(codes: &[String]) -> Result<ReasonCodes, PhiError> {
        let mut out: Vec<String> = vec![];
        for c in codes {
            let n = normalize_reason(c).to_lowercase();
            let ok = !n.is_empty() && n.len() <= 40 && n.chars().all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-');
            if !ok || !n.starts_with(|ch: char| ch.is_ascii_lowercase()) {
                return Err(PhiError::BadReasonCode(c.clone()));
            }
            if !out.contains(&n) {
                out.push(n);
            }
        }
        if out.is_empty() {
            return Err(PhiError::Reason("the list of reason codes is empty".into()));
        }
        Ok(ReasonCodes(out))
    }

    pub fn codes(&self) -> &[String] {
        &self.0
    }
}

/// Why an operator acts: a code from the configured list and a note of substance. The only way
/// to make one is [`Reason::new`], which normalises (NFKC) and checks both, so a `Reason`
/// cannot hold an unchecked one. It reads `[code] note` ([`Reason::fmt`]) where a reason travels
/// as text (an escalation's cause, an override, a dependency hold); the audit log stores the
/// code apart from the note ([`Reason::split`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reason {
    code: String,
    note: String,
}

impl Reason {
    /// A checked reason: `code` (any case, NFKC) must be one of `codes`, `note` must pass [`check_reason`].
    pub fn new(codes: &ReasonCodes, code: &str, note: &str) -> Result<Reason, PhiError> {
        let c = normalize_reason(code).to_lowercase();
        if c.is_empty() {
            return Err(PhiError::MissingReasonCode { codes: codes.0.clone() });
        }
        if !codes.0.contains(&c) {
            return Err(PhiError::UnknownReasonCode { code: c, codes: codes.0.clone() });
        }
        check_reason(note)?;
        Ok(Reason { code: c, note: normalize_reason(note) })
    }

    pub fn code(&self) -> &str {
        &self.code
    }

    pub fn note(&self) -> &str {
        &self.note
    }

    /// The code and the rest of a text that carries a reason as `[code] note` (after a prefix
    /// such as `dependency db: ` or `override of the claim held by h: `): `(code, text without
    /// the marker)`, or `None` when it has no marker.
    pub fn split(text: &str) -> Option<(String, String)> {
        let re = reason_marker()?;
        let c = re.captures(text)?;
        let (m, code) = (c.get(1)?, c.get(2)?);
        Some((code.as_str().to_string(), format!("{}{}", &text[..m.start()], &text[m.end()..])))
    }
}

fn reason_marker() -> Option<&'static Regex> {
    static RE: OnceLock<Option<Regex>> = OnceLock::new();
    RE.get_or_init(|| Regex::new(r"(?:^|: )(\[([a-z][a-z0-9-]{0,39})\] )").ok()).as_ref()
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[{}] {}", self.code, self.note)
    }
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
        assert_eq!(v["patient"]["name"], "•••");
        assert_eq!(v["patient"]["mrn"], "•••");
        assert_eq!(v["accession"], "ACC-100001");
        assert_eq!(v["order"]["code"], 42);
        assert_eq!(v["note"], "called ••• back");
        assert_eq!(v.as_object().map(|o| o.len()), order().as_object().map(|o| o.len()));
    }

    #[test]
    fn paths_and_fields_are_configurable() {
        let m =
            Masker::from_config(Some(&["ssn".into()]), &["Accession".into()], Some(&["$.order.patientName".into()]), &[]).expect("masker");
        let v = m.mask_value(&order());
        assert_eq!(v["accession"], "•••", "extra field, matched case-insensitively");
        assert_eq!(v["order"]["patientName"], "•••");
        assert_eq!(v["patient"]["mrn"], "SYN-000421", "fields replaced the defaults");
        let all = Masker::new(&[], &["$.items[*].id".into(), "$['x'].y".into(), "$.z[1]".into()]).expect("paths");
        let v = all.mask_value(&json!({"items": [{"id": "abc"}, {"id": "def", "k": 1}], "x": {"y": 12345}, "z": ["keep", "hide"]}));
        assert_eq!(v, json!({"items": [{"id": "•••"}, {"id": "•••", "k": 1}], "x": {"y": "•••"}, "z": ["keep", "•••"]}));
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
        assert_eq!(input["patient"]["given"], "•••");
        let failed = json!({"taskFailedEventDetails": {"error": "Archive.Rejected", "cause": "no match for Testperson, Dana"}});
        let known = m.identifiers(&order());
        let v = m.mask_envelope(&failed, &known);
        assert_eq!(v["taskFailedEventDetails"]["cause"], "no match for •••, •••");
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
        assert_eq!(v["executionFailedEventDetails"]["error"], "•••");
        assert_eq!(v["executionFailedEventDetails"]["cause"], "see •••");
        let v = m.mask_envelope(&json!({"error": "States.TaskFailed"}), &known);
        assert_eq!(v["error"], "States.TaskFailed", "error codes stay");
    }

    #[test]
    fn known_values_match_in_any_case_and_are_escaped() {
        let known = vec!["Ernest Heron".to_string(), "a.c".to_string(), "(x+".to_string()];
        assert_eq!(mask_free_text("paged ERNEST HERON and ernest heron", &known), "paged ••• and •••");
        assert_eq!(mask_free_text("abc a.c (x+ y", &known), "abc ••• ••• y", "values are literals, not patterns");
        assert_eq!(mask_free_text("nothing here", &known), "nothing here");
    }

    #[test]
    fn json_embedded_in_free_text_is_masked() {
        let m = Masker::default();
        let t = m.mask_text("prefix {\"mrn\":\"INLINE-MRN\"} suffix INLINE-MRN");
        assert!(!t.contains("INLINE-MRN"), "{t}");
        assert!(t.starts_with("prefix {\"mrn\":\"•••\"} suffix"), "{t}");
        let t = m.mask_text("wrong patient {\"mrn\":\"REJ-MRN\"} and {not json} {\"a\":1}");
        assert_eq!(t, "wrong patient {\"mrn\":\"•••\"} and {not json} {\"a\":1}");
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
        assert_eq!(v["execution"]["input"]["patient"]["name"], "•••");
        assert_eq!(v["steps"][0]["input"]["patientName"], "•••");
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
        assert_eq!(by_path.mask_value(&input)["execution"]["name"], "•••");
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

    /// Output with pseudonyms taken out (their hex could hold any digits by chance).
    fn without_pseudonyms(s: &str) -> String {
        Regex::new("•••#[0-9a-f]{6}").map(|re| re.replace_all(s, "•••").into_owned()).unwrap_or_default()
    }

    #[test]
    fn identifiers_used_as_keys_are_masked() {
        let m = Masker::default();
        let doc = json!({
            "patient": {
                "name": "Dana Testperson", "mrn": "SYN-000421",
                "visits": {"SYN-000421": {"site": "MAIN"}, "SYN-000422": {"site": "NORTH"}},
                "Dana Testperson": {"line1": "x"}, "1961-03-04": true,
            },
            "results": {"SYN-000421": "ok", "ACC-1": "done"},
            "byDate": {"04/03/1961": 1},
        });
        let v = m.mask_value(&doc);
        let s = without_pseudonyms(&v.to_string());
        for secret in ["SYN", "000421", "000422", "Dana", "Testperson", "1961"] {
            assert!(!s.contains(secret), "{secret} in {s}");
        }
        assert_eq!(v["patient"]["name"], "•••", "nothing of a name is kept");
        let visits = v["patient"]["visits"].as_object().expect("still a map");
        assert_eq!(visits.len(), 2, "two identifiers stay two keys: {visits:?}");
        let p = pseudonym("SYN-000421");
        assert!(visits.contains_key(&p) && p.starts_with("•••#") && p.len() == "•••#".len() + 6, "{visits:?}");
        assert_eq!(pseudonym("syn000421"), p, "one identifier, one pseudonym, in any format");
        assert_ne!(pseudonym("SYN-000422"), p);
        assert_eq!(v["results"][&p], "ok", "a known identifier as a key elsewhere");
        assert_eq!(v["results"]["ACC-1"], "done", "workflow keys stay");
        assert!(v["patient"].get("visits").is_some(), "field names under the patient stay");
        assert_eq!(v["byDate"].as_object().map(|o| o.len()), Some(1));
        // The keys are identifiers for free text too.
        let known = m.identifiers(&json!({"patient": {"byMrn": {"MRN-93317": 1}}}));
        assert!(known.contains(&"MRN-93317".to_string()), "{known:?}");
        assert_eq!(mask_free_text("recall MRN-93317 today", &known), "recall ••• today");
    }

    #[test]
    fn free_text_loses_identifiers_in_their_other_formats() {
        let m = Masker::default();
        let known = m.identifiers(&json!({"patient": {"mrn": "SYN-000421", "birthDate": "1961-03-04", "phone": "555-0100"}}));
        for cause in [
            "no match for SYN000421",
            "no match for syn 000421",
            "no match for 000421",
            "no match for SYN/000-421",
            "no match for ＳＹＮ－０００４２１",
            "patient born 1961-03-04 mismatch",
            "patient born 04/03/1961 mismatch",
            "patient born 03/04/1961 mismatch",
            "patient born 19610304 mismatch",
            "patient born 4 Mar 1961 mismatch",
            "patient born 4th of March 1961 mismatch",
            "patient born March 4, 1961 mismatch",
            "patient born 1961.03.04 mismatch",
            "patient born ０４/０３/１９６１ mismatch",
            "call 5550100 back",
        ] {
            let out = mask_free_text(cause, &known);
            for secret in ["000421", "421", "1961", "0100"] {
                assert!(!out.contains(secret), "{cause:?} → {out:?}");
            }
            assert!(out.contains("•••"), "{cause:?} → {out:?}");
        }
        // Without any document: dates and labelled identifiers are still masked.
        for (text, secret) in [
            ("dob 1958-11-30 does not match", "1958"),
            ("born 30 November 1958", "1958"),
            ("MRN 7734412 not found", "7734412"),
            ("mrn: ab-77344 not found", "77344"),
            ("medical record no. 5521-9 closed", "5521"),
        ] {
            let out = mask_free_text(text, &[]);
            assert!(!out.contains(secret), "{text:?} → {out:?}");
        }
        // Workflow times, accessions, UIDs and codes are not birth dates.
        for keep in [
            "timed out at 2025-03-03T07:00:00Z",
            "started 2025-03-03 07:00:00",
            "study 1.2.840.10008.1961.3.4 and 2.25.19610304",
            "ACC-100001 ORD-500001 States.TaskFailed",
            "retry 3 of 5, 12.5 s",
        ] {
            assert_eq!(mask_free_text(keep, &[]), keep);
        }
        // Inside an envelope's cause, with the study's document as the source.
        let d = m.mask_envelope(
            &json!({"input": "{\"patient\": {\"mrn\": \"SYN-000421\"}}", "cause": "wrong patient 000421", "startDate": "2025-03-03T07:00:00Z"}),
            &[],
        );
        assert_eq!(d["cause"], "wrong patient •••");
        assert_eq!(d["startDate"], "2025-03-03T07:00:00Z", "an envelope's own dates stay");
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        const MONTH_NAMES: [&str; 12] =
            ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"];

        /// A date written in one of the formats people write birth dates in.
        fn date_format(y: u32, mo: u32, d: u32, f: usize) -> String {
            let name = MONTH_NAMES[(mo - 1) as usize];
            match f % 9 {
                0 => format!("{y}-{mo:02}-{d:02}"),
                1 => format!("{d:02}/{mo:02}/{y}"),
                2 => format!("{mo}/{d}/{y}"),
                3 => format!("{y}{mo:02}{d:02}"),
                4 => format!("{d} {} {y}", &name[..3]),
                5 => format!("{name} {d}, {y}"),
                6 => format!("{d}.{mo}.{y}"),
                7 => format!("{d}-{}-{y}", &name[..3]),
                _ => format!("{y}/{mo:02}/{d:02}"),
            }
        }

        /// An MRN written another way: no punctuation, no prefix, other separators, full width.
        fn mrn_format(prefix: &str, digits: &str, f: usize) -> String {
            match f % 6 {
                0 => format!("{prefix}-{digits}"),
                1 => format!("{prefix}{digits}"),
                2 => digits.to_string(),
                3 => format!("{} {digits}", prefix.to_lowercase()),
                4 => format!("{prefix}/{}-{}", &digits[..3], &digits[3..]),
                _ => format!("{prefix}-{digits}").chars().map(|c| char::from_u32(c as u32 + 0xFEE0).unwrap_or(c)).collect(),
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(200))]
            #[test]
            fn identifiers_never_reach_masked_output(
                prefix in "[A-Z]{2,4}",
                digits in "[1-9][0-9]{5,7}",
                y in 1920u32..2020, mo in 1u32..=12, d in 1u32..=28,
                f1 in 0usize..64, f2 in 0usize..64, f3 in 0usize..64,
                family in "[A-Z][a-z]{4,9}",
            ) {
                let m = Masker::default();
                let mrn = format!("{prefix}-{digits}");
                let dob = format!("{y}-{mo:02}-{d:02}");
                let input = json!({
                    "accession": "ACC-1",
                    "patient": {"family": family, "mrn": mrn, "birthDate": dob,
                                "priorStudies": {mrn_format(&prefix, &digits, f1): {"at": dob}},
                                date_format(y, mo, d, f2): "visit"},
                    "byMrn": {mrn.clone(): true},
                });
                let cause = format!("mismatch: {} born {} ({})", mrn_format(&prefix, &digits, f3), date_format(y, mo, d, f1), family.to_uppercase());
                let event = json!({"input": input.to_string(), "cause": cause, "error": mrn_format(&prefix, &digits, f2)});
                let outputs = [
                    m.mask_value(&input).to_string(),
                    m.mask_envelope(&event, &[]).to_string(),
                    mask_free_text(&cause, &m.identifiers(&input)),
                    mask_free_text(&format!("MRN {} DOB {}", mrn_format(&prefix, &digits, f1), date_format(y, mo, d, f3)), &[]),
                ];
                for (i, out) in outputs.iter().enumerate() {
                    let out = without_pseudonyms(out);
                    let plain: String = out.nfkc().collect();
                    prop_assert!(!plain.contains(&digits[1..]), "{i}: MRN digits in {out}");
                    prop_assert!(!plain.contains(&y.to_string()), "{i}: birth year in {out}");
                    if i < 3 {
                        prop_assert!(!plain.to_lowercase().contains(&family.to_lowercase()), "{i}: family name in {out}");
                    }
                }
            }
        }
    }

    #[test]
    fn a_reason_is_a_code_from_the_list_and_a_note_of_substance() {
        let codes = ReasonCodes::default();
        for filler in [
            "asdfg qwert",
            "qwerty asdfgh",
            "xxxxxxxx",
            "xxxxxxxx yyyyyyyy",
            "ａｓｄｆｇ　ｑｗｅｒｔ",
            "ｘｘｘｘｘｘｘｘｘｘ",
            "\u{3000}\u{3000}\u{3000}\u{3000}\u{3000}\u{3000}\u{3000}\u{3000}\u{3000}\u{3000}",
            "te\u{200B}st te\u{200B}sting",
            "abab abab ababab",
            "lkjhg poiuy",
            "zxcvb 12345 mnbvc",
        ] {
            assert!(check_reason(filler).is_err(), "{filler:?} accepted");
            assert!(Reason::new(&codes, "direct-care", filler).is_err(), "{filler:?} accepted");
        }
        let r = Reason::new(&codes, "Direct-Care", "ｃｏｎｓｕｌｔ with Dr Lee on the wrong-patient hold").expect("reason");
        assert_eq!((r.code(), r.note()), ("direct-care", "consult with Dr Lee on the wrong-patient hold"), "NFKC, any case");
        assert_eq!(r.to_string(), "[direct-care] consult with Dr Lee on the wrong-patient hold");
        assert!(matches!(Reason::new(&codes, "", "consult with Dr Lee"), Err(PhiError::MissingReasonCode { .. })));
        let e = Reason::new(&codes, "curiosity", "consult with Dr Lee").expect_err("unknown");
        assert!(e.to_string().contains("direct-care, quality-review, operations-incident, patient-request, other"), "{e}");
        let custom = ReasonCodes::new(&["research-irb".into(), "direct-care".into()]).expect("codes");
        assert!(Reason::new(&custom, "other", "consult with Dr Lee").is_err(), "the list is the configured one");
        assert!(Reason::new(&custom, "research-irb", "protocol 42 follow-up").is_ok());
        assert!(ReasonCodes::new(&[]).is_err() && ReasonCodes::new(&["Has Space".into()]).is_err());
        // Carried as text and split again for the audit log.
        assert_eq!(Reason::split("[other] archive vendor outage"), Some(("other".into(), "archive vendor outage".into())));
        assert_eq!(
            Reason::split("dependency pacs: [other] vendor outage"),
            Some(("other".into(), "dependency pacs: vendor outage".into()))
        );
        assert_eq!(Reason::split("no marker [here] at all"), None);
    }

    #[test]
    fn short_values_show_nothing() {
        assert_eq!(mask_str(""), "");
        assert_eq!(mask_str("F"), "•••");
        assert_eq!(mask_str("Ada"), "•••", "nothing of a value is kept");
    }
}
