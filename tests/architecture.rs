//! The module boundaries ARCHITECTURE.md states, checked on the source text:
//! - `src/ops/` is pure projections: it names no store, engine or backend, no SQLite and no AWS
//!   crate, so every backend's summaries and histories project the same way;
//! - only `src/backend/aws/` imports the AWS SDK crates (`aws-sdk-*`, `aws-config`,
//!   `aws-smithy-*`); `src/serve/sigv4.rs` uses `aws-smithy-runtime-api` only for the identity
//!   type the `aws-sigv4` crate verifies signatures with.

use std::path::{Path, PathBuf};

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `dir`, recursively, sorted.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![];
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = std::fs::read_dir(&d).unwrap_or_else(|e| panic!("read {}: {e}", d.display()));
        for entry in entries {
            let p = entry.unwrap_or_else(|e| panic!("read {}: {e}", d.display())).path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// The path roots `text` names: every `a::b` path (with `crate::`, `super::super::` and
/// `::` prefixes kept) and every item of a `crate::{…}` group, whitespace removed, so a path
/// split over lines or grouped in one `use` is still seen.
fn names(text: &str) -> Vec<String> {
    let flat: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    let mut out = vec![];
    // Grouped imports: `crate::{store::Store, engine}` names `crate::store` and `crate::engine`.
    for (prefix, root) in [("crate::{", "crate::"), ("super::super::{", "crate::")] {
        let mut rest = flat.as_str();
        while let Some(i) = rest.find(prefix) {
            let body = &rest[i + prefix.len()..];
            let mut depth = 1;
            let mut item = String::new();
            for c in body.chars() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 1 => {
                        out.push(format!("{root}{item}"));
                        item.clear();
                        continue;
                    }
                    _ => {}
                }
                if depth == 0 {
                    break;
                }
                item.push(c);
            }
            out.push(format!("{root}{item}"));
            rest = &rest[i + prefix.len()..];
        }
    }
    // `super::super::x` from a file one level down is `crate::x`.
    out.push(flat.replace("super::super::", "crate::"));
    out
}

/// The forbidden names among `text`'s.
fn violations(text: &str, forbidden: &[&str]) -> Vec<String> {
    let all = names(text);
    forbidden.iter().filter(|f| all.iter().any(|n| n.contains(*f))).map(|f| f.to_string()).collect()
}

const OPS_FORBIDDEN: &[&str] = &["crate::store", "crate::engine", "crate::backend", "rusqlite", "aws_sdk", "aws_config", "aws_smithy"];

#[test]
fn the_checker_sees_plain_grouped_split_and_relative_paths() {
    assert_eq!(violations("use crate::store::Store;", OPS_FORBIDDEN), ["crate::store"]);
    assert_eq!(violations("use crate::{history::HistoryEvent, engine::Engine};", OPS_FORBIDDEN), ["crate::engine"]);
    assert_eq!(violations("use crate::{model::{ExecutionSummary}, backend};", OPS_FORBIDDEN), ["crate::backend"]);
    assert_eq!(violations("fn f(s: &crate::\n    store::Store) {}", OPS_FORBIDDEN), ["crate::store"]);
    assert_eq!(violations("use super::super::engine::core::error_matches;", OPS_FORBIDDEN), ["crate::engine"]);
    assert_eq!(violations("let c = rusqlite::Connection::open_in_memory();", OPS_FORBIDDEN), ["rusqlite"]);
    assert_eq!(violations("use aws_sdk_sfn::Client; use aws_config::load_from_env;", OPS_FORBIDDEN), ["aws_sdk", "aws_config"]);
    assert!(violations("use crate::{asl::path::JsonPath, history::HistoryEvent, model::ExecutionSummary};", OPS_FORBIDDEN).is_empty());
    assert!(violations("use crate::asl::model::error_matches; // the engine's rule", OPS_FORBIDDEN).is_empty());
}

#[test]
fn ops_names_no_store_engine_backend_sqlite_or_aws() {
    let files = rust_files(&src().join("ops"));
    assert!(files.len() >= 5, "expected the ops modules under src/ops/, found {files:?}");
    let mut bad = vec![];
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap_or_else(|e| panic!("read {}: {e}", f.display()));
        for v in violations(&text, OPS_FORBIDDEN) {
            bad.push(format!("{} names {v}", f.display()));
        }
    }
    assert!(bad.is_empty(), "src/ops/ must be pure projections over crate::model and crate::history:\n{}", bad.join("\n"));
}

#[test]
fn only_the_aws_backend_imports_the_aws_sdk() {
    let root = src();
    let aws = root.join("backend").join("aws");
    let sigv4 = root.join("serve").join("sigv4.rs");
    let files = rust_files(&root);
    assert!(files.iter().any(|f| f.starts_with(&aws)), "expected src/backend/aws/ in {}", root.display());
    let mut bad = vec![];
    for f in files.iter().filter(|f| !f.starts_with(&aws)) {
        let text = std::fs::read_to_string(f).unwrap_or_else(|e| panic!("read {}: {e}", f.display()));
        let forbidden: &[&str] = if *f == sigv4 { &["aws_sdk", "aws_config"] } else { &["aws_sdk", "aws_config", "aws_smithy"] };
        for v in violations(&text, forbidden) {
            bad.push(format!("{} names {v}", f.display()));
        }
    }
    assert!(bad.is_empty(), "only src/backend/aws/ imports the AWS SDK crates:\n{}", bad.join("\n"));
}
