//! Where events go: a webhook (one POST per event, `Idempotency-Key` = event id, 2xx =
//! delivered; a redirect is a failure, never followed) or an NDJSON file (one event per line,
//! fsync'd before rows are marked; a line a failed write cut short is truncated away before
//! anything is written again, so a reader only ever sees whole lines).

use std::io::Write as _;
use std::os::unix::fs::FileExt as _;
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
/// far safe at the sink from a crash of this process (rows are marked delivered only after it
/// returns Ok), and at least every [`super::MARK_WITHIN`] durable on its medium; `sync` makes
/// it durable now (at the end of a pass, and for a breaker's trial).
pub trait Publisher: Send {
    fn publish(&mut self, id: &str, event: &str) -> Result<(), SinkError>;
    fn flush(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
    fn sync(&mut self) -> Result<(), SinkError> {
        self.flush()
    }
    /// Mark once this many rows are published (at most [`super::MARK_EVERY`]): a relay killed
    /// before the mark sends them again.
    fn mark_every(&self) -> usize {
        super::MARK_EVERY
    }
}

pub fn publisher(sink: &Sink) -> Box<dyn Publisher> {
    match &sink.kind {
        SinkKind::Webhook { url } => Box::new(Webhook::new(url.clone(), sink.timeout)),
        SinkKind::Ndjson { path } => Box::new(Ndjson::new(path.clone())),
    }
}

pub struct Webhook {
    url: String,
    client: Result<reqwest::blocking::Client, String>,
}

impl Webhook {
    pub fn new(url: String, timeout: std::time::Duration) -> Webhook {
        // Never follow a redirect (a 3xx is a failed delivery) and never go through a proxy
        // named by the environment: no event (patient data included) goes to an address that
        // is not in the configuration.
        let client = reqwest::blocking::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()
            .map_err(|e| e.to_string());
        Webhook { url, client }
    }
}

impl Publisher for Webhook {
    /// A 2xx is the receiver's word that it has the event: marked at once, one by one (a
    /// round trip costs more than the mark), so a crash sends at most the one in flight again.
    fn mark_every(&self) -> usize {
        1
    }

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
    /// Lines written before a failed write whose file could not be synced: the next flush
    /// fails, so they are not marked delivered without being durable.
    unsynced: bool,
    /// Lines written since the file was last synced, and when that was.
    dirty: bool,
    synced_at: std::time::Instant,
}

impl Ndjson {
    pub fn new(path: PathBuf) -> Ndjson {
        Ndjson { path, file: None, unsynced: false, dirty: false, synced_at: std::time::Instant::now() }
    }

    /// Sync what was written, if anything: `due` only once [`super::MARK_WITHIN`] has passed.
    fn sync_lines(&mut self, due: bool) -> Result<(), SinkError> {
        if std::mem::take(&mut self.unsynced) {
            return Err(self.io(std::io::Error::other("lines written before a failed write could not be synced")));
        }
        if !self.dirty || (due && self.synced_at.elapsed() < super::MARK_WITHIN) {
            return Ok(());
        }
        let r = match self.file.as_mut() {
            Some(f) => f.sync_data(),
            None => Ok(()),
        };
        self.synced_at = std::time::Instant::now();
        self.dirty = false;
        r.map_err(|e| {
            self.file = None;
            self.io(e)
        })
    }

    fn io(&self, err: std::io::Error) -> SinkError {
        SinkError::Io { path: self.path.display().to_string(), err }
    }

    /// Open the file for appending, its torn tail cut first (see [`whole_lines`]).
    fn open(&self) -> std::io::Result<std::fs::File> {
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let f = std::fs::OpenOptions::new().create(true).read(true).append(true).open(&self.path)?;
        whole_lines(&f)?;
        Ok(f)
    }
}

/// Cut a torn last line (what a write that failed part-way left: a full disk, the file size
/// limit, a crash) back to the end of the last whole line, so the next event starts a line of
/// its own. Returns the file's length after.
pub fn whole_lines(f: &std::fs::File) -> std::io::Result<u64> {
    let len = f.metadata()?.len();
    let mut last = [0u8; 1];
    if len == 0 || {
        f.read_exact_at(&mut last, len - 1)?;
        last[0] == b'\n'
    } {
        return Ok(len);
    }
    let mut buf = vec![0u8; 64 * 1024];
    let mut end = len;
    let keep = loop {
        let start = end.saturating_sub(buf.len() as u64);
        let chunk = &mut buf[..usize::try_from(end - start).unwrap_or(0)];
        f.read_exact_at(chunk, start)?;
        if let Some(i) = chunk.iter().rposition(|b| *b == b'\n') {
            break start + i as u64 + 1;
        }
        if start == 0 {
            break 0;
        }
        end = start;
    };
    f.set_len(keep)?;
    f.sync_data()?;
    Ok(keep)
}

impl Publisher for Ndjson {
    fn publish(&mut self, _id: &str, event: &str) -> Result<(), SinkError> {
        if self.file.is_none() {
            let opened = self.open().map_err(|e| self.io(e))?;
            self.file = Some(opened);
        }
        // One line per event: the stored payload is compact JSON, and a line break anywhere
        // else can only be whitespace between JSON tokens (JSON strings escape them): a space.
        let mut line = String::with_capacity(event.len() + 1);
        line.extend(event.trim_end().chars().map(|c| if c == '\n' || c == '\r' { ' ' } else { c }));
        line.push('\n');
        let Some(f) = self.file.as_mut() else { return Ok(()) };
        match f.write_all(line.as_bytes()) {
            Ok(()) => {
                self.dirty = true;
                Ok(())
            }
            Err(e) => {
                // Part of the line may be in the file: cut it at once, back to the last whole
                // line as the file has it (the next open checks again, should this fail too),
                // and make the lines before it durable, as the flush that marks them will find
                // no file.
                if whole_lines(f).and_then(|_| f.sync_data()).is_err() {
                    self.unsynced = true;
                }
                self.file = None;
                Err(self.io(e))
            }
        }
    }

    /// A line `write` returned for is in the kernel: a crash of this process cannot lose it,
    /// so it may be marked at once; the file is synced to its disk at least every
    /// [`super::MARK_WITHIN`] while lines come, and at the end of every pass.
    fn flush(&mut self) -> Result<(), SinkError> {
        self.sync_lines(true)
    }

    fn sync(&mut self) -> Result<(), SinkError> {
        self.sync_lines(false)
    }
}
