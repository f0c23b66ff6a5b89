//! A webhook receiver on loopback: records each request's `Idempotency-Key` and body, and
//! answers 500 to the first N requests or to keys containing a text, a redirect when told to,
//! 200 otherwise.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the receiver got: (Idempotency-Key, body), in arrival order, answered or not.
#[derive(Default)]
pub struct Seen {
    pub requests: Vec<(String, String)>,
    pub delivered: Vec<(String, String)>,
}

pub struct Receiver {
    pub url: String,
    pub seen: Arc<Mutex<Seen>>,
    /// Answer 500 to the first N requests.
    pub fail_first: Arc<Mutex<usize>>,
    /// Answer 500 to every request whose key contains this.
    pub fail_key: Arc<Mutex<Option<String>>>,
    /// Answer every request with this redirect (status, `Location`) instead.
    pub redirect: Arc<Mutex<Option<(u16, String)>>>,
}

impl Receiver {
    pub fn start(delay: Duration) -> Receiver {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}/events", l.local_addr().expect("addr"));
        let seen = Arc::new(Mutex::new(Seen::default()));
        let fail_first = Arc::new(Mutex::new(0usize));
        let fail_key: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
        let redirect: Arc<Mutex<Option<(u16, String)>>> = Arc::new(Mutex::new(None));
        let (s, ff, fk, rd) = (seen.clone(), fail_first.clone(), fail_key.clone(), redirect.clone());
        std::thread::spawn(move || {
            for stream in l.incoming() {
                let Ok(mut stream) = stream else { continue };
                let (s, ff, fk, rd) = (s.clone(), ff.clone(), fk.clone(), rd.clone());
                std::thread::spawn(move || {
                    let mut r = BufReader::new(stream.try_clone().expect("clone"));
                    loop {
                        let mut key = String::new();
                        let mut len = 0usize;
                        let mut line = String::new();
                        if r.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        loop {
                            line.clear();
                            if r.read_line(&mut line).unwrap_or(0) == 0 {
                                return;
                            }
                            let l = line.trim_end();
                            if l.is_empty() {
                                break;
                            }
                            if let Some((k, v)) = l.split_once(':') {
                                match k.to_ascii_lowercase().as_str() {
                                    "idempotency-key" => key = v.trim().to_string(),
                                    "content-length" => len = v.trim().parse().unwrap_or(0),
                                    _ => {}
                                }
                            }
                        }
                        let mut body = vec![0u8; len];
                        if r.read_exact(&mut body).is_err() {
                            return;
                        }
                        let body = String::from_utf8_lossy(&body).into_owned();
                        std::thread::sleep(delay);
                        let redirect = rd.lock().expect("lock").clone();
                        let fail = redirect.is_some() || {
                            let mut n = ff.lock().expect("lock");
                            let by_key = fk.lock().expect("lock").as_ref().is_some_and(|k| key.contains(k.as_str()));
                            if *n > 0 {
                                *n -= 1;
                                true
                            } else {
                                by_key
                            }
                        };
                        {
                            let mut seen = s.lock().expect("lock");
                            seen.requests.push((key.clone(), body.clone()));
                            if !fail {
                                seen.delivered.push((key, body));
                            }
                        }
                        let answer = match (&redirect, fail) {
                            (Some((code, location)), _) => {
                                format!("HTTP/1.1 {code} Redirect\r\nLocation: {location}\r\nContent-Length: 0\r\n\r\n")
                            }
                            (None, true) => "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n".to_string(),
                            (None, false) => "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n".to_string(),
                        };
                        if stream.write_all(answer.as_bytes()).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Receiver { url, seen, fail_first, fail_key, redirect }
    }
    pub fn delivered_keys(&self) -> Vec<String> {
        self.seen.lock().expect("lock").delivered.iter().map(|(k, _)| k.clone()).collect()
    }
    pub fn requests(&self) -> usize {
        self.seen.lock().expect("lock").requests.len()
    }
    /// The bodies delivered (answered 2xx), as JSON, in arrival order.
    pub fn delivered_bodies(&self) -> Vec<serde_json::Value> {
        self.seen.lock().expect("lock").delivered.iter().map(|(_, b)| serde_json::from_str(b).expect("a JSON body")).collect()
    }
}
