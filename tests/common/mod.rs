//! What the command-line tests share: the real `lightbox` binary on a store in a fresh
//! temporary directory, with no user config, audit key or user from the environment.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::Value;

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_lightbox")
}

pub struct Lb {
    pub dir: tempfile::TempDir,
    /// `--user` on every command, when set.
    pub user: Option<String>,
}

impl Lb {
    pub fn new() -> Lb {
        Lb { dir: tempfile::tempdir().expect("tempdir"), user: None }
    }
    pub fn as_user(user: &str) -> Lb {
        Lb { user: Some(user.to_string()), ..Lb::new() }
    }
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    pub fn data(&self) -> PathBuf {
        self.path("data")
    }
    pub fn db(&self) -> PathBuf {
        self.data().join("lightbox.db")
    }
    /// Write `text` (a JSON value or a string) to a file in the temporary directory.
    pub fn write(&self, name: &str, text: &(impl std::fmt::Display + ?Sized)) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, text.to_string()).expect("write");
        p
    }
    /// [`Lb::write`], returning the path as a string for an argument list.
    pub fn file(&self, name: &str, text: &(impl std::fmt::Display + ?Sized)) -> String {
        self.write(name, text).to_str().expect("utf-8 path").to_string()
    }
    pub fn cmd(&self) -> Command {
        let mut c = Command::new(bin());
        c.env("HOME", self.dir.path()).env_remove("LIGHTBOX_CONFIG").env_remove("LIGHTBOX_AUDIT_KEY").env_remove("LIGHTBOX_USER");
        c.arg("--data-dir").arg(self.data());
        if let Some(u) = &self.user {
            c.args(["--user", u]);
        }
        c
    }
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().expect("run lightbox")
    }
    /// Run, expect success, return stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(out.status.success(), "lightbox {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
    /// Run with `--json`, expect success, parse stdout.
    pub fn json(&self, args: &[&str]) -> Value {
        let mut a = vec!["--json"];
        a.extend_from_slice(args);
        let text = self.ok(&a);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {text}"))
    }
    /// Run, expect failure, return stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(!out.status.success(), "lightbox {args:?} should have failed: {}", String::from_utf8_lossy(&out.stdout));
        String::from_utf8_lossy(&out.stderr).into_owned()
    }
}
