//! Crash points are compiled only into test builds: the kill tests' ways of making the
//! process die (src/crash.rs) exist only with the `crash-points` feature, which is not a
//! default feature, and nothing else in src/ aborts the process or reads their variables.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src") {
        let p = entry.expect("entry").path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn nothing_outside_src_crash_rs_aborts_the_process_or_reads_a_crash_variable() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = vec![];
    rust_files(&root, &mut files);
    for f in files.iter().filter(|f| !f.ends_with("crash.rs")) {
        let text = std::fs::read_to_string(f).expect("read");
        for (i, line) in text.lines().enumerate() {
            let code = line.trim_start();
            if code.starts_with("//") {
                continue;
            }
            for mark in ["process::abort", "LIGHTBOX_CRASH", "LIGHTBOX_TEST_CRASH"] {
                assert!(!code.contains(mark), "{}:{}: {mark} outside src/crash.rs: {line}", f.display(), i + 1);
            }
        }
    }
}

#[test]
fn every_crash_point_is_behind_the_feature_and_the_default_build_has_an_empty_one() {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/crash.rs")).expect("read");
    let lines: Vec<&str> = text.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        if line.starts_with("fn ") || line.starts_with("pub fn ") {
            // The attribute lines just above the item.
            let attrs: Vec<&str> = lines[..i].iter().rev().take_while(|l| l.starts_with("#[") || l.starts_with("///")).copied().collect();
            if attrs.iter().any(|a| a.contains("cfg(not(feature = \"crash-points\"))")) {
                assert!(line.trim_end().ends_with("{}"), "the default build's crash point must do nothing: {line}");
            } else {
                assert!(
                    attrs.iter().any(|a| a.contains("cfg(feature = \"crash-points\")")),
                    "src/crash.rs:{}: not behind the feature: {line}",
                    i + 1
                );
            }
        }
    }
    let manifest = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml")).expect("Cargo.toml");
    let default = manifest.lines().find(|l| l.trim_start().starts_with("default =")).unwrap_or_default();
    assert!(!default.contains("crash-points"), "crash points must not be a default feature: {default}");
}
