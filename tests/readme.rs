//! README's screen captures are the console's own: each block after a
//! `<!-- capture: NAME -->` line must equal the reviewed snapshot
//! `tests/snapshots/console__NAME.snap`, which tests/console.rs checks against
//! what the console draws. `UPDATE_README=1 cargo test --test readme` rewrites
//! the blocks from the snapshots.

use std::path::Path;

const MARK: &str = "<!-- capture: ";

/// The body of a snapshot file (after insta's front matter), without trailing blank lines.
fn snapshot(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots").join(format!("console__{name}.snap"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("README names capture {name:?}: {}: {e}", path.display()));
    let body = text.splitn(3, "---\n").nth(2).unwrap_or_else(|| panic!("{}: no insta front matter", path.display()));
    body.trim_end_matches('\n').to_string()
}

/// README with every capture block replaced by its snapshot, and the names found.
fn rebuilt(readme: &str) -> (String, Vec<String>) {
    let mut out = Vec::new();
    let mut names = Vec::new();
    let mut lines = readme.lines();
    while let Some(line) = lines.next() {
        out.push(line.to_string());
        let Some(name) = line.strip_prefix(MARK).and_then(|r| r.strip_suffix(" -->")) else { continue };
        names.push(name.to_string());
        let fence = lines.next().unwrap_or_default();
        assert!(fence.starts_with("```"), "capture {name}: the line after the marker must open a ``` block, found {fence:?}");
        out.push(fence.to_string());
        for l in lines.by_ref() {
            if l.starts_with("```") {
                break;
            }
        }
        out.extend(snapshot(name).lines().map(str::to_string));
        out.push("```".to_string());
    }
    (out.join("\n") + "\n", names)
}

#[test]
fn readme_captures_are_what_the_console_draws() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
    let readme = std::fs::read_to_string(&path).expect("README.md");
    let (want, names) = rebuilt(&readme);
    assert!(names.len() >= 4, "README shows the console's views as text captures; found {names:?}");
    if std::env::var_os("UPDATE_README").is_some() {
        std::fs::write(&path, &want).expect("write README.md");
        return;
    }
    if want != readme {
        let diff: Vec<String> = readme
            .lines()
            .zip(want.lines())
            .enumerate()
            .filter(|(_, (a, b))| a != b)
            .take(5)
            .map(|(i, (a, b))| format!("README.md:{}:\n  has  {a:?}\n  draws {b:?}", i + 1))
            .collect();
        panic!("README's captures differ from what the console draws (run UPDATE_README=1 cargo test --test readme):\n{}", diff.join("\n"));
    }
}
