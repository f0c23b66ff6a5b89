//! Reading workflow events back from the outbox (`lightbox events list`), filtered by an
//! event pattern, and the named patterns a config keeps (`[[event_patterns]]`).

use rusqlite::Connection;
use serde_json::Value;

use super::pattern::{Pattern, PatternError};

#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    #[error("store: {0}")]
    Store(#[from] rusqlite::Error),
    #[error("event_patterns[{index}] ({name:?}): {message}")]
    Config { index: usize, name: String, message: String },
}

/// At most this many outbox rows are read to find `limit` events that match a pattern.
pub const SCAN_MAX: usize = 200_000;
/// Rows read per query while scanning.
const PAGE: usize = 2_000;

/// One listed event: the outbox row's position and stream, and the event itself.
#[derive(Debug, Clone, PartialEq)]
pub struct Listed {
    pub seq: i64,
    /// The execution ARN the row belongs to, or `lightbox:<kind>` for events of no execution.
    pub stream: String,
    pub topic: String,
    pub event: Value,
}

/// The newest `limit` events that `pattern` matches (all of them without one), newest first.
/// Rows whose payload is not JSON are skipped. Reads at most [`SCAN_MAX`] rows.
pub fn latest(conn: &Connection, pattern: Option<&Pattern>, limit: usize) -> Result<Vec<Listed>, FeedError> {
    let mut out = Vec::new();
    let mut before = i64::MAX;
    let mut scanned = 0usize;
    let mut q = conn.prepare_cached("SELECT id, execution_arn, topic, payload FROM outbox WHERE id < ?1 ORDER BY id DESC LIMIT ?2")?;
    while out.len() < limit && scanned < SCAN_MAX {
        let rows: Vec<(i64, String, String, String)> = q
            .query_map(rusqlite::params![before, PAGE as i64], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
            .collect::<Result<_, _>>()?;
        let Some(last) = rows.last() else { break };
        before = last.0;
        scanned += rows.len();
        for (seq, stream, topic, payload) in rows {
            let Ok(event) = serde_json::from_str::<Value>(&payload) else { continue };
            if pattern.is_some_and(|p| !p.matches(&event)) {
                continue;
            }
            out.push(Listed { seq, stream, topic, event });
            if out.len() == limit {
                break;
            }
        }
    }
    Ok(out)
}

/// `[[event_patterns]]` in config: a name and a pattern, used as `:events NAME` in the
/// console and `--pattern NAME` on the command line.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamedPattern {
    pub name: String,
    pub pattern: String,
}

/// Compile the configured patterns; an error names the entry and what is wrong with it.
pub fn compile_named(list: &[NamedPattern]) -> Result<Vec<(String, Pattern)>, FeedError> {
    let mut out: Vec<(String, Pattern)> = Vec::with_capacity(list.len());
    for (index, n) in list.iter().enumerate() {
        let bad = |message: String| FeedError::Config { index, name: n.name.clone(), message };
        let name = n.name.trim();
        if name.is_empty() || name.starts_with('{') || name.starts_with('@') || name.contains(char::is_whitespace) {
            return Err(bad("name must be one word, not starting with { or @".into()));
        }
        if out.iter().any(|(x, _)| x == name) {
            return Err(bad("name is used twice".into()));
        }
        let p = Pattern::parse(&n.pattern).map_err(|e: PatternError| bad(format!("pattern: {e}")))?;
        out.push((name.to_string(), p));
    }
    Ok(out)
}

/// A pattern given as text: JSON when it starts with `{`, else the name of a configured one.
pub fn resolve<'a>(text: &str, named: &'a [(String, Pattern)]) -> Result<std::borrow::Cow<'a, Pattern>, PatternError> {
    let t = text.trim();
    if t.starts_with('{') {
        return Pattern::parse(t).map(std::borrow::Cow::Owned);
    }
    named.iter().find(|(n, _)| n == t).map(|(_, p)| std::borrow::Cow::Borrowed(p)).ok_or_else(|| PatternError::Invalid {
        path: "(top)".into(),
        message: if named.is_empty() {
            format!("{t:?} is neither a JSON pattern nor a named pattern (config has no [[event_patterns]])")
        } else {
            format!(
                "{t:?} is neither a JSON pattern nor a named pattern ({})",
                named.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(", ")
            )
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_patterns_are_checked_and_name_the_bad_entry() {
        let ok = NamedPattern { name: "failures".into(), pattern: r#"{"detail": {"status": ["FAILED"]}}"#.into() };
        let named = compile_named(std::slice::from_ref(&ok)).expect("compile");
        assert!(resolve("failures", &named).is_ok());
        assert!(resolve(r#"{"source": ["lightbox"]}"#, &named).is_ok());
        assert!(resolve("nope", &named).expect_err("unknown").to_string().contains("failures"));
        let bad = NamedPattern { name: "broken".into(), pattern: r#"{"source": "x"}"#.into() };
        let e = compile_named(&[ok.clone(), bad]).expect_err("bad").to_string();
        assert!(e.contains("event_patterns[1]") && e.contains("broken") && e.contains("source"), "{e}");
        assert!(compile_named(&[ok.clone(), ok]).expect_err("twice").to_string().contains("twice"));
    }
}
