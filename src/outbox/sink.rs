//! Where events go: a webhook (one POST per event, `Idempotency-Key` = event id, 2xx =
//! delivered) or an NDJSON file (one event per line, fsync'd before rows are marked).

use std::io::Write as _;
use std::path::PathBuf;

use super::{Sink, SinkKind};

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("webhook answered HTTP {0}")]
    Status(u16),
    /// A redirect is never followed: the event goes only to the configured URL.
    #[error("webhook answered HTTP {status} (a redirect, not followed) to Location {location}")]
    Redirect { status: u16, location: String },
    #[error("webhook request failed: {0}")]
    Request(String),
    #[error("{path}: {err}")]
    Io { path: String, err: std::io::Error },
    #[error("{0}")]
    Setup(String),
}

/// Publishes events to one sink. `publish` may buffer; `flush` makes everything published so
/// far durable at the sink (rows are marked delivered only after it returns Ok).
pub trait Publisher: Send {
    fn publish(&mut self, id: &str, event: &str) -> Result<(), SinkError>;
    fn flush(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
}

pub fn publisher(sink: &Sink) -> Box<dyn Publisher> {
    match &sink.kind {
        SinkKind::Webhook { url } => Box::new(Webhook::new(url.clone(), sink.timeout)),
        SinkKind::Ndjson { path } => Box::new(Ndjson { path: path.clone(), file: None }),
    }
}

pub struct Webhook {
    url: String,
    client: Result<reqwest::blocking::Client, String>,
}

impl Webhook {
    pub fn new(url: String, timeout: std::time::Duration) -> Webhook {
        // Never follow a redirect: a 3xx is a failed delivery, so no event (patient data
        // included) goes to an address that is not in the configuration.
        let client = reqwest::blocking::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()
            .map_err(|e| e.to_string());
        Webhook { url, client }
    }
}

impl Publisher for Webhook {
    fn publish(&mut self, id: &str, event: &str) -> Result<(), SinkError> {
        let client = self.client.as_ref().map_err(|e| SinkError::Setup(e.clone()))?;
        let resp = client
            .post(&self.url)
            .header("Content-Type", "application/json")
            .header("Idempotency-Key", id)
            .body(event.to_string())
            .send()
            .map_err(|e| SinkError::Request(request_error(e)))?;
        let status = resp.status();
        if status.is_success() {
            Ok(())
        } else if status.is_redirection() {
            let location = resp.headers().get(reqwest::header::LOCATION).map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
            Err(SinkError::Redirect { status: status.as_u16(), location: shown_location(location.as_deref()) })
        } else {
            Err(SinkError::Status(status.as_u16()))
        }
    }
}

/// Longest `Location` an error shows (characters, after masking).
const LOCATION_SHOWN: usize = 120;

/// A redirect's `Location` as an error shows it: masked like every URL ([`super::shown_url`]),
/// one line (control characters dropped), at most [`LOCATION_SHOWN`] characters (cut with `…`).
pub fn shown_location(location: Option<&str>) -> String {
    let Some(location) = location else { return "(none)".into() };
    let shown: String = super::shown_url(location).chars().filter(|c| !c.is_control()).collect();
    if shown.chars().count() > LOCATION_SHOWN {
        let mut cut: String = shown.chars().take(LOCATION_SHOWN - 1).collect();
        cut.push('…');
        cut
    } else if shown.is_empty() {
        "(empty)".into()
    } else {
        shown
    }
}

/// A failed request as text: what failed and why (each cause), without the URL, which may
/// hold credentials, and never what was sent.
pub fn request_error(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut text = e.to_string();
    let mut src = std::error::Error::source(&e);
    while let Some(s) = src {
        text = format!("{text}: {s}");
        src = s.source();
    }
    text
}

pub struct Ndjson {
    path: PathBuf,
    file: Option<std::fs::File>,
}

impl Ndjson {
    fn io(&self, err: std::io::Error) -> SinkError {
        SinkError::Io { path: self.path.display().to_string(), err }
    }
}

impl Publisher for Ndjson {
    fn publish(&mut self, _id: &str, event: &str) -> Result<(), SinkError> {
        if self.file.is_none() {
            if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|e| self.io(e))?;
            }
            let f = std::fs::OpenOptions::new().create(true).append(true).open(&self.path).map_err(|e| self.io(e))?;
            self.file = Some(f);
        }
        // One line per event: the stored payload is compact JSON, so it has no newline.
        let mut line = String::with_capacity(event.len() + 1);
        line.push_str(event.trim_end());
        line.push('\n');
        let r = match self.file.as_mut() {
            Some(f) => f.write_all(line.as_bytes()),
            None => Ok(()),
        };
        r.map_err(|e| {
            self.file = None;
            self.io(e)
        })
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        let r = match self.file.as_mut() {
            Some(f) => f.sync_data(),
            None => Ok(()),
        };
        r.map_err(|e| {
            self.file = None;
            self.io(e)
        })
    }
}
