//! A running `lightbox serve` for the AWS backend's tests: started on its own data directory
//! (or a given command), called as the SDKs call it, killed when dropped. Each test file adds
//! the machines and inputs it needs in an `impl Serve` of its own.

use std::process::Child;

use serde_json::{Value, json};

use super::Lb;

pub struct Serve {
    /// The server's data directory (kept while it runs).
    pub lb: Lb,
    pub child: Child,
    pub url: String,
}

impl Serve {
    /// On a fresh data directory, loopback, a free port.
    pub fn start() -> Serve {
        let lb = Lb::new();
        let (child, url) = super::spawn_serve(lb.cmd().args(["serve", "--bind", "127.0.0.1:0"]));
        Serve { lb, child, url }
    }

    /// One Step Functions call as the SDKs make it (unsigned: serve accepts that on loopback).
    pub fn call(&self, op: &str, body: Value) -> Value {
        let r = reqwest::blocking::Client::new()
            .post(&self.url)
            .header("X-Amz-Target", format!("AWSStepFunctions.{op}"))
            .header("Content-Type", "application/x-amz-json-1.0")
            .body(body.to_string())
            .send()
            .unwrap_or_else(|e| panic!("{op}: {e}"));
        let status = r.status();
        let v: Value = r.json().unwrap_or(Value::Null);
        assert!(status.is_success(), "{op}: {status} {v}");
        v
    }

    pub fn describe(&self, arn: &str) -> Value {
        self.call("DescribeExecution", json!({"executionArn": arn}))
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
