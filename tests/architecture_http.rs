//! Only the serve module speaks HTTP as a server (issue 9): no source file of a default build
//! outside `src/serve/` opens a listening socket or an HTTP server. The scripted loopback
//! servers for tests and benchmarks (`backend::aws::stub`, the relay benchmark's webhook) are
//! compiled only with the `bench-stub` feature, which is off by default.

use std::path::{Path, PathBuf};

const FEATURE_GATE: &str = "#[cfg(feature = \"bench-stub\")]";

/// What starts a server: a listening socket (TCP or Unix, std or tokio) or hyper's server side.
const SERVER_MARKS: &[&str] = &["TcpListener", "UnixListener", "hyper::server", "hyper_util::server", "serve_connection"];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("reading {}: {e}", dir.display())) {
        let p = entry.expect("directory entry").path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Lines of `text` that start a server. A free-port probe — a listener bound and dropped in
/// the same expression to learn a port for a child process — accepts nothing and is allowed.
fn server_lines(text: &str) -> Vec<(usize, String)> {
    let probe = regex::Regex::new(r"TcpListener::bind\([^;]*\)\??\.local_addr\(\)\??\.port\(\)").expect("regex");
    text.lines()
        .enumerate()
        .filter(|(_, l)| {
            let code = l.trim_start();
            !code.starts_with("//") && SERVER_MARKS.iter().any(|m| code.contains(m)) && !probe.is_match(code)
        })
        .map(|(i, l)| (i + 1, l.trim().to_string()))
        .collect()
}

/// The file that declares module file `path` (`a/b.rs` or `a/b/mod.rs` → `a.rs`, `a/mod.rs`,
/// or the crate root), and the module's name; `None` for a crate root.
fn declaring(path: &Path) -> Option<(PathBuf, String)> {
    let root = src();
    if path == root.join("lib.rs") || path == root.join("main.rs") {
        return None;
    }
    let (name, dir) = if path.file_name().is_some_and(|f| f == "mod.rs") {
        let d = path.parent()?;
        (d.file_name()?.to_str()?.to_string(), d.parent()?.to_path_buf())
    } else {
        (path.file_stem()?.to_str()?.to_string(), path.parent()?.to_path_buf())
    };
    let parent = if dir == root {
        // Modules at the top are declared by the library (the binary declares none of src/).
        root.join("lib.rs")
    } else if dir.join("mod.rs").exists() {
        dir.join("mod.rs")
    } else {
        dir.with_extension("rs")
    };
    Some((parent, name))
}

/// Whether module file `path` is compiled only with the `bench-stub` feature: its own `mod`
/// declaration, or an ancestor's, carries the feature gate.
fn feature_gated(path: &Path) -> bool {
    let Some((parent, name)) = declaring(path) else { return false };
    let text = std::fs::read_to_string(&parent).unwrap_or_else(|e| panic!("reading {}: {e}", parent.display()));
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    let decl = lines.iter().position(|l| {
        let l = l.strip_prefix("pub(crate) ").or_else(|| l.strip_prefix("pub(super) ")).or_else(|| l.strip_prefix("pub ")).unwrap_or(l);
        *l == format!("mod {name};")
    });
    let Some(decl) = decl else { panic!("{} declares no `mod {name};`", parent.display()) };
    // The attributes (and comments) right above the declaration.
    let gated = lines[..decl].iter().rev().take_while(|l| l.starts_with("#[") || l.starts_with("//")).any(|l| *l == FEATURE_GATE);
    gated || feature_gated(&parent)
}

#[test]
fn a_default_build_serves_http_only_from_src_serve() {
    let mut files = vec![];
    rust_files(&src(), &mut files);
    files.sort();
    assert!(files.len() > 20, "src/ was not found: {files:?}");
    let serve = src().join("serve");
    let mut found = vec![];
    for f in files.iter().filter(|f| !f.starts_with(&serve)) {
        let text = std::fs::read_to_string(f).unwrap_or_else(|e| panic!("reading {}: {e}", f.display()));
        let lines = server_lines(&text);
        if lines.is_empty() || feature_gated(f) {
            continue;
        }
        for (n, l) in lines {
            found.push(format!("{}:{n}: {l}", f.strip_prefix(src()).unwrap_or(f).display()));
        }
    }
    assert!(
        found.is_empty(),
        "a default build starts a server outside src/serve (move it to src/serve, or behind {FEATURE_GATE} \
         if only tests and benchmarks need it):\n{}",
        found.join("\n")
    );
}

#[test]
fn the_test_servers_are_behind_a_feature_that_is_off_by_default() {
    // The check above sees them…
    for f in ["backend/aws/stub.rs", "bench/webhook.rs"] {
        let path = src().join(f);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        assert!(!server_lines(&text).is_empty(), "{f} starts a server, but the check does not see it");
        // … and lets them through only because they are behind the feature.
        assert!(feature_gated(&path), "{f} is compiled in a default build");
    }
    // A module that is not gated is not let through.
    assert!(!feature_gated(&src().join("backend/aws/limit.rs")));
    assert!(!feature_gated(&src().join("bench.rs")));
    // The probe for a free port is allowed, a listener kept is not.
    assert!(server_lines(r#"let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();"#).is_empty());
    assert_eq!(server_lines(r#"let l = std::net::TcpListener::bind("127.0.0.1:0")?;"#).len(), 1);
    assert_eq!(server_lines("let l = tokio::net::TcpListener::bind(addr).await?;").len(), 1);

    let manifest: toml::Table = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"))
        .expect("Cargo.toml")
        .parse()
        .expect("Cargo.toml parses");
    let features = manifest.get("features").and_then(|f| f.as_table()).expect("a [features] table");
    assert!(features.contains_key("bench-stub"), "{features:?}");
    let default: Vec<&str> =
        features.get("default").and_then(|d| d.as_array()).map(|a| a.iter().filter_map(|v| v.as_str()).collect()).unwrap_or_default();
    assert!(!default.contains(&"bench-stub"), "bench-stub is on by default: {default:?}");
    // The tests build the crate with it (a dev-dependency on itself), so none of them skips.
    let dev = manifest.get("dev-dependencies").and_then(|d| d.get("lightbox")).expect("a dev-dependency on lightbox");
    assert!(dev.get("features").and_then(|f| f.as_array()).is_some_and(|a| a.iter().any(|v| v.as_str() == Some("bench-stub"))), "{dev:?}");
}
