//! The AWS backend against a hostile endpoint (a loopback server answering every call with a
//! scripted error): what it says reaches errors, the status and the audit log bounded, and
//! never with the task token whole.

use std::io::{BufRead, BufReader, Read, Write};
use std::time::Duration;

use lightbox::backend::aws::{Aws, AwsContext};
use lightbox::backend::{Acting, ControlPlane};
use serde_json::json;

/// A server answering every call with HTTP `status` and `body`.
fn endpoint(status: u16, body: String) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let body = body.clone();
            std::thread::spawn(move || {
                let Ok(read) = stream.try_clone() else { return };
                let (mut reader, mut stream) = (BufReader::new(read), stream);
                loop {
                    let mut length = 0usize;
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        let line = line.trim_end();
                        if line.is_empty() {
                            break;
                        }
                        if let Some((k, v)) = line.split_once(':')
                            && k.trim().eq_ignore_ascii_case("content-length")
                        {
                            length = v.trim().parse().unwrap_or(0);
                        }
                    }
                    let mut req = vec![0; length];
                    if reader.read_exact(&mut req).is_err() {
                        return;
                    }
                    let head = format!(
                        "HTTP/1.1 {status} Bad Request\r\ncontent-type: application/x-amz-json-1.0\r\ncontent-length: {}\r\n\r\n",
                        body.len()
                    );
                    if stream.write_all(head.as_bytes()).and_then(|_| stream.write_all(body.as_bytes())).is_err() {
                        return;
                    }
                }
            });
        }
    });
    url
}

fn connect(url: &str) -> Aws {
    let cfg = AwsContext { region: Some("us-east-1".into()), endpoint_url: Some(url.to_string()), ..Default::default() };
    Aws::connect_with(&format!("hostile-{url}"), &cfg, None, Some(("AKIDHOSTILE", "secret")))
        .expect("connect")
        .with_pacing(Duration::from_millis(200), Duration::from_millis(200))
}

/// An endpoint that quotes the task token it refuses (and says a great deal more): the error
/// of approve, reject and heartbeat names the token by its first 8 characters only, one line
/// of bounded length, and the status line holds no token either.
#[test]
fn an_answer_refused_with_the_token_quoted_never_shows_the_token_whole() {
    let token = format!("AAAAQKJ{}", "x9Zq".repeat(60));
    for (code, message) in [
        ("TaskTimedOut", format!("Task Timed Out: '{token}'\nsecond line {}", "y".repeat(100_000))),
        ("InvalidToken", format!("Invalid Token: '{token}' {}", "z".repeat(100_000))),
        // A code that reads as a credentials problem becomes the status.
        ("SomethingElse", format!("credential check failed for '{}'", &token[..150])),
    ] {
        let url = endpoint(400, json!({"__type": code, "message": message}).to_string());
        let mut cp = connect(&url);
        let acting = Acting::user("dr.lee");
        let errors = [
            cp.approve(&token, "{}", &acting).expect_err("refused"),
            cp.reject(&token, "Rejected", "no", &acting).expect_err("refused"),
            cp.heartbeat(&token).expect_err("refused"),
        ];
        for e in errors {
            let text = e.to_string();
            assert!(!text.contains(&token[..40]), "{code}: the token whole in {text:.200}");
            assert!(text.len() < 1000 && !text.contains('\n'), "{code}: one bounded line: {} bytes", text.len());
        }
        let status = cp.pulse().expect("pulse").condition.unwrap_or_default();
        assert!(!status.contains(&token[..40]), "{code}: the status: {status}");
    }
}

/// An outbox endpoint whose refusal is huge and many lines long: the error the CLI prints
/// and audits is one line of bounded length.
#[test]
fn an_outbox_endpoint_refusal_is_one_bounded_line() {
    let body = json!({"__type": format!("Weird{}", "T".repeat(200_000)), "message": format!("first\nsecond {}", "m".repeat(200_000))});
    let url = endpoint(400, body.to_string());
    let cfg = AwsContext {
        region: Some("us-east-1".into()),
        endpoint_url: Some(url.clone()),
        outbox_endpoint: Some(url.clone()),
        ..Default::default()
    };
    let mut cp = Aws::connect_with(&format!("hostile-outbox-{url}"), &cfg, None, Some(("AKIDHOSTILE", "secret"))).expect("connect");
    let action = lightbox::outbox::Action::Resume { sink: "pager".into() };
    for text in [cp.outbox_act(&action).expect_err("refused").to_string(), cp.outbox(10).expect_err("refused").to_string()] {
        assert!(text.len() < 1000 && !text.contains('\n') && text.contains("Weird"), "{} bytes: {text:.300}", text.len());
    }
}
