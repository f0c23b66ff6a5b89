//! `lightbox serve`: the Step Functions API (AWS JSON 1.0, `X-Amz-Target:
//! AWSStepFunctions.*`) on the embedded engine, so the AWS SDKs, the AWS CLI and Lightbox's
//! own AWS backend can drive it. The only module that speaks HTTP server-side.
//!
//! One engine sits behind a lock ([`api::Api`]); requests run on tokio's blocking pool so
//! the reactor never waits on SQLite, and a worker thread runs the engine's due work
//! (timers, retries, tasks) as `lightbox engine` does. Loopback by default; any other address
//! needs configured credentials (SigV4, [`sigv4`]) and TLS or an explicit opt-out.

pub mod api;
pub mod error;
pub mod fields;
pub mod logs;
pub mod outbox;
pub mod sigv4;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::Value;

pub use api::{Api, ApiError, Caller};

use crate::engine::{Engine, REGION};

/// The largest request body taken (a definition may be 1 MB; inputs 256 KiB).
pub const MAX_BODY: usize = 2 * 1024 * 1024;
/// How long a client may take to send a request's headers (and, on a kept-alive connection,
/// to start the next request): a silent or slow socket is closed after this.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a client may take to send a request's body.
const READ_TIMEOUT: Duration = Duration::from_secs(20);
/// Connections of one peer (IP address) that may be open without a call being worked on
/// (idle, in a TLS handshake, sending headers or a body) for longer than [`GRACE`]. A new
/// connection beyond this closes that peer's oldest such connection: a flood of silent or
/// slow sockets displaces its own.
const IDLE_PER_PEER: usize = 16;
/// How long a new connection has to get its first call going before it counts as idle and
/// may be closed to make room (so a burst of new clients does not displace itself).
const GRACE: Duration = Duration::from_secs(1);
/// How long one connection may stay open (clients reconnect).
const CONNECTION_LIFETIME: Duration = Duration::from_secs(600);
/// How long a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const JSON_10: &str = "application/x-amz-json-1.0";
const JSON_11: &str = "application/x-amz-json-1.1";

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("{0}")]
    Refused(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("TLS: {0}")]
    Tls(String),
    #[error("reading {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path} is not valid: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error("the server's runtime: {0}")]
    Runtime(#[from] std::io::Error),
}

/// One access key the server accepts.
#[derive(Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credential {
    pub access_key_id: String,
    pub secret_access_key: String,
}

/// Never prints a secret.
impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential").field("access_key_id", &self.access_key_id).field("secret_access_key", &"<redacted>").finish()
    }
}

/// `[serve]` in config.toml.
#[derive(Debug, Default, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeConfig {
    /// Address to listen on (default 127.0.0.1:8083); `--bind` overrides it.
    pub bind: Option<String>,
    /// Access keys whose SigV4 signatures are accepted. With none, only loopback is served
    /// and requests are not checked.
    #[serde(default)]
    pub credentials: Vec<Credential>,
    /// A TOML file with more `credentials = [{access_key_id, secret_access_key}]` (keep it
    /// out of config.toml, readable by its owner only).
    pub credentials_file: Option<PathBuf>,
    /// PEM certificate chain and private key for TLS; `--tls-cert`/`--tls-key` override them.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// How long StartSyncExecution waits for an execution to finish (default 60 seconds).
    pub sync_timeout_seconds: Option<u64>,
    /// Connections served at once (default 128); more wait to be accepted.
    pub max_connections: Option<usize>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CredentialsFile {
    #[serde(default)]
    credentials: Vec<Credential>,
}

impl ServeConfig {
    /// Every configured credential: the config's and the credentials file's.
    pub fn all_credentials(&self) -> Result<Vec<Credential>, ServeError> {
        let mut out = self.credentials.clone();
        if let Some(path) = &self.credentials_file {
            let text = std::fs::read_to_string(path).map_err(|source| ServeError::Read { path: path.clone(), source })?;
            let f: CredentialsFile =
                toml::from_str(&text).map_err(|e| ServeError::Invalid { path: path.clone(), message: e.message().to_string() })?;
            out.extend(f.credentials);
        }
        for c in &out {
            if c.access_key_id.trim().is_empty() || c.secret_access_key.len() < 8 {
                return Err(ServeError::Refused(format!(
                    "[serve] credentials: access key {:?} needs a non-empty id and a secret of at least 8 characters",
                    c.access_key_id
                )));
            }
        }
        Ok(out)
    }
}

/// How to serve.
#[derive(Debug, Clone)]
pub struct Options {
    pub bind: SocketAddr,
    pub credentials: Vec<Credential>,
    /// PEM certificate chain and key.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Serve plain HTTP off loopback (credentials are still required).
    pub insecure_no_tls: bool,
    pub read_only: bool,
    pub sync_timeout: Duration,
    pub max_connections: usize,
    /// The outbox relay's sinks, for `Lightbox.ListOutbox` / `Lightbox.OutboxAction`.
    pub sinks: Vec<crate::outbox::Sink>,
    /// The reason codes an `OutboxAction` that takes a reason must name (`[reasons] codes`).
    pub reasons: crate::phi::ReasonCodes,
}

impl Options {
    /// The security rules: off loopback, credentials are required, and TLS unless the
    /// operator said `--insecure-no-tls`.
    pub fn check(&self) -> Result<(), ServeError> {
        if self.bind.ip().is_loopback() {
            return Ok(());
        }
        if self.credentials.is_empty() {
            return Err(ServeError::Refused(format!(
                "refusing to listen on {}: serving off loopback needs credentials to verify callers with (config [serve] credentials or credentials_file)",
                self.bind
            )));
        }
        if self.tls.is_none() && !self.insecure_no_tls {
            return Err(ServeError::Refused(format!(
                "refusing to listen on {} without TLS: give --tls-cert and --tls-key, or --insecure-no-tls to serve plain HTTP",
                self.bind
            )));
        }
        Ok(())
    }
}

fn tls_acceptor(cert: &Path, key: &Path) -> Result<tokio_rustls::TlsAcceptor, ServeError> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|i| i.collect::<Result<Vec<_>, _>>())
        .map_err(|e| ServeError::Tls(format!("certificate {}: {e}", cert.display())))?;
    if certs.is_empty() {
        return Err(ServeError::Tls(format!("{} holds no certificate", cert.display())));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| ServeError::Tls(format!("private key {}: {e}", key.display())))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ServeError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| ServeError::Tls(e.to_string()))?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(cfg)))
}

/// What the request handler shares.
struct Shared {
    api: Arc<Api>,
    credentials: Vec<Credential>,
    /// Calls running or queued on the blocking pool; a permit is held until the call has
    /// really ended (even after its client was answered that it took too long).
    inflight: Arc<tokio::sync::Semaphore>,
    peer_calls: Arc<PeerCalls>,
    sinks: Arc<Vec<crate::outbox::Sink>>,
}

/// Calls that may be running or waiting for the engine at once; more are throttled.
const MAX_INFLIGHT: usize = 64;
/// Calls of one peer (IP address) that may be in flight at once: a flood from one client is
/// throttled at its share and leaves the rest of [`MAX_INFLIGHT`] to the others.
const INFLIGHT_PER_PEER: usize = 16;

/// Calls in flight per peer ([`INFLIGHT_PER_PEER`]).
#[derive(Default)]
struct PeerCalls(std::sync::Mutex<HashMap<IpAddr, usize>>);

/// One call of a peer counted in flight until dropped.
struct PeerCall {
    calls: Arc<PeerCalls>,
    peer: IpAddr,
}

impl PeerCalls {
    fn enter(self: &Arc<Self>, peer: IpAddr) -> Option<PeerCall> {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let n = m.entry(peer).or_default();
        if *n >= INFLIGHT_PER_PEER {
            return None;
        }
        *n += 1;
        Some(PeerCall { calls: self.clone(), peer })
    }
}

impl Drop for PeerCall {
    fn drop(&mut self) {
        let mut m = self.calls.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = m.get_mut(&self.peer) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                m.remove(&self.peer);
            }
        }
    }
}

/// Serve until interrupted (Ctrl-C or SIGTERM). `ready` is called with the bound address
/// once the server listens; `tick` runs on the engine worker before each round of due work
/// (the SLO watcher, say).
pub fn run(
    engine: Engine,
    opts: Options,
    mut tick: Box<dyn FnMut(&Engine) + Send>,
    ready: impl FnOnce(SocketAddr, bool),
) -> Result<(), ServeError> {
    opts.check()?;
    let tls = match &opts.tls {
        Some((c, k)) => Some(tls_acceptor(c, k)?),
        None => None,
    };
    let mut api = Api::new(engine)?;
    api.read_only = opts.read_only;
    api.sync_timeout = opts.sync_timeout;
    api.reasons = opts.reasons.clone();
    let api = Arc::new(api);
    let stop = Arc::new(AtomicBool::new(false));
    // Due work runs on an engine of its own (a second connection to the store, leases keep
    // the two apart), so no step of it, however long, holds the engine the API answers from.
    let own = api.lock().sibling().map_err(|e| ApiError::internal(e.to_string()))?;
    let worker = {
        let (api, stop) = (api.clone(), stop.clone());
        std::thread::Builder::new().name("lightbox-serve-engine".into()).spawn(move || engine_loop(&api, own, &stop, &mut *tick))?
    };
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).max_blocking_threads(16).enable_all().build()?;
    let shared = Arc::new(Shared {
        api,
        credentials: opts.credentials.clone(),
        inflight: Arc::new(tokio::sync::Semaphore::new(MAX_INFLIGHT)),
        peer_calls: Arc::default(),
        sinks: Arc::new(opts.sinks.clone()),
    });
    let r = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(opts.bind).await.map_err(|source| ServeError::Bind { addr: opts.bind, source })?;
        let local = listener.local_addr()?;
        tracing::info!(addr = %local, tls = tls.is_some(), signed = !shared.credentials.is_empty(), "serving the Step Functions API");
        ready(local, tls.is_some());
        let max = opts.max_connections.max(1);
        let limit = Arc::new(tokio::sync::Semaphore::new(max));
        let conns = Arc::new(std::sync::Mutex::new(Conns::default()));
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        loop {
            let (stream, peer) = tokio::select! {
                a = listener.accept() => match a {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "accepting a connection failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                _ = tokio::signal::ctrl_c() => return Ok(()),
                _ = term.recv() => return Ok(()),
            };
            // At the limit, make room by closing the oldest idle connection of the peer with
            // most open (its task ends and frees its permit); only when every connection is
            // working on a call, or has just opened, does a new one wait (and looks again).
            let permit = loop {
                conns.lock().unwrap_or_else(|p| p.into_inner()).make_room(max, std::time::Instant::now());
                tokio::select! {
                    p = limit.clone().acquire_owned() => match p { Ok(p) => break p, Err(_) => return Ok(()) },
                    _ = tokio::time::sleep(GRACE / 4) => continue,
                    _ = tokio::signal::ctrl_c() => return Ok(()),
                    _ = term.recv() => return Ok(()),
                }
            };
            // Beyond its share of idle connections, a peer's oldest idle one is closed.
            let conn = conns.lock().unwrap_or_else(|p| p.into_inner()).admit(peer.ip(), std::time::Instant::now());
            let (shared, tls, conns) = (shared.clone(), tls.clone(), conns.clone());
            tokio::spawn(async move {
                let _permit = permit;
                let _open = OpenConn { conns, id: conn.id };
                let busy = conn.busy.clone();
                let svc = service_fn(move |req| {
                    let (shared, busy) = (shared.clone(), busy.clone());
                    async move { Ok::<_, std::convert::Infallible>(handle(req, &shared, &busy, peer.ip()).await) }
                });
                let mut http = hyper::server::conn::http1::Builder::new();
                http.timer(TokioTimer::new()).header_read_timeout(HEADER_TIMEOUT).max_buf_size(64 * 1024);
                let close = conn.close.clone();
                let served = tokio::select! {
                    s = serve_one(stream, tls, http, svc, peer) => s,
                    _ = close.notified() => {
                        tracing::debug!(peer = %peer, "closed an idle connection to make room");
                        return;
                    }
                };
                if let Some(Ok(Err(e))) = served {
                    tracing::debug!(peer = %peer, error = %e, "connection ended with an error");
                }
            });
        }
    });
    stop.store(true, Ordering::Relaxed);
    rt.shutdown_timeout(Duration::from_secs(5));
    let _ = worker.join();
    tracing::info!("the Step Functions API server stopped");
    r
}

/// Serve one connection (after its TLS handshake): `None` when the handshake failed.
async fn serve_one<S>(
    stream: tokio::net::TcpStream,
    tls: Option<tokio_rustls::TlsAcceptor>,
    http: hyper::server::conn::http1::Builder,
    svc: S,
    peer: SocketAddr,
) -> Option<Result<Result<(), hyper::Error>, tokio::time::error::Elapsed>>
where
    S: hyper::service::HttpService<Incoming, ResBody = Full<Bytes>>,
{
    Some(match tls {
        Some(acceptor) => match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
            Ok(Ok(s)) => tokio::time::timeout(CONNECTION_LIFETIME, http.serve_connection(TokioIo::new(s), svc)).await,
            Ok(Err(e)) => {
                tracing::debug!(peer = %peer, error = %e, "TLS handshake failed");
                return None;
            }
            Err(_) => return None,
        },
        None => tokio::time::timeout(CONNECTION_LIFETIME, http.serve_connection(TokioIo::new(stream), svc)).await,
    })
}

/// The open connections, for the limits per peer and overall.
#[derive(Default)]
struct Conns {
    next: u64,
    open: HashMap<u64, ConnInfo>,
}

struct ConnInfo {
    peer: IpAddr,
    opened: std::time::Instant,
    /// Calls this connection has being worked on (past their body); 0: it may be closed.
    busy: Arc<AtomicUsize>,
    close: Arc<tokio::sync::Notify>,
}

/// What a new connection's task gets.
struct Admitted {
    id: u64,
    busy: Arc<AtomicUsize>,
    close: Arc<tokio::sync::Notify>,
}

impl Conns {
    /// Idle past its grace: no call being worked on, open for at least [`GRACE`].
    fn idle(c: &ConnInfo, now: std::time::Instant) -> bool {
        c.busy.load(Ordering::Relaxed) == 0 && now.saturating_duration_since(c.opened) >= GRACE
    }

    /// At `max` open: close the oldest idle connection of the peer with most open.
    fn make_room(&mut self, max: usize, now: std::time::Instant) {
        if self.open.len() < max {
            return;
        }
        let mut per_peer: HashMap<IpAddr, usize> = HashMap::new();
        for c in self.open.values() {
            *per_peer.entry(c.peer).or_default() += 1;
        }
        let victim = self
            .open
            .iter()
            .filter(|(_, c)| Self::idle(c, now))
            .max_by_key(|(id, c)| (per_peer.get(&c.peer).copied().unwrap_or(0), std::cmp::Reverse(**id)))
            .map(|(id, _)| *id);
        if let Some(v) = victim {
            self.evict(v);
        }
    }

    /// Register a new connection from `peer`; beyond its share of idle connections, close
    /// its oldest idle one (ids grow with time, so the smallest is the oldest).
    fn admit(&mut self, peer: IpAddr, now: std::time::Instant) -> Admitted {
        let own_idle: Vec<u64> = self.open.iter().filter(|(_, c)| c.peer == peer && Self::idle(c, now)).map(|(id, _)| *id).collect();
        if own_idle.len() >= IDLE_PER_PEER
            && let Some(oldest) = own_idle.iter().min()
        {
            self.evict(*oldest);
        }
        self.next += 1;
        let (busy, close) = (Arc::new(AtomicUsize::new(0)), Arc::new(tokio::sync::Notify::new()));
        self.open.insert(self.next, ConnInfo { peer, opened: now, busy: busy.clone(), close: close.clone() });
        Admitted { id: self.next, busy, close }
    }

    fn evict(&mut self, id: u64) {
        if let Some(c) = self.open.remove(&id) {
            c.close.notify_one();
        }
    }
}

/// Removes its connection from [`Conns`] when the connection's task ends.
struct OpenConn {
    conns: Arc<std::sync::Mutex<Conns>>,
    id: u64,
}

impl Drop for OpenConn {
    fn drop(&mut self) {
        self.conns.lock().unwrap_or_else(|p| p.into_inner()).open.remove(&self.id);
    }
}

/// Marks a connection busy while one of its calls is worked on.
struct Busy<'a>(&'a AtomicUsize);

impl<'a> Busy<'a> {
    fn new(n: &'a AtomicUsize) -> Busy<'a> {
        n.fetch_add(1, Ordering::Relaxed);
        Busy(n)
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The engine's background work, as `lightbox engine` runs it: due executions, then a
/// sleep until the next timer (at most 200 ms, so new work is picked up quickly). On `own`,
/// the loop's own engine; without one (an in-memory store) on the API's, a few executions'
/// steps at a time (each step is one slice of work), so API calls get the lock between them.
fn engine_loop(api: &Api, mut own: Option<Engine>, stop: &AtomicBool, tick: &mut dyn FnMut(&Engine)) {
    while !stop.load(Ordering::Relaxed) {
        let round = |eng: &mut Engine, tick: &mut dyn FnMut(&Engine), limit: usize| {
            tick(eng);
            let n = match eng.run_due(limit) {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(error = %e, "running due work failed");
                    0
                }
            };
            (n, eng.store.next_timer().ok().flatten())
        };
        // Executions claimed by a round stay leased until it ends: small rounds, so that an
        // API call answering one of them (which waits for its lease) waits a few slices at most.
        let (n, next) = match own.as_mut() {
            Some(eng) => round(eng, tick, 16),
            None => round(&mut api.lock(), tick, 4),
        };
        if n > 0 {
            continue;
        }
        let wait = next.map(|t| (t - chrono::Utc::now()).to_std().unwrap_or_default()).unwrap_or(Duration::from_millis(200));
        std::thread::sleep(wait.clamp(Duration::from_millis(5), Duration::from_millis(200)));
    }
}

fn json_response(status: u16, body: &Value, content_type: &str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if let Ok(v) = http::HeaderValue::from_str(content_type) {
        r.headers_mut().insert(http::header::CONTENT_TYPE, v);
    }
    if let Ok(v) = http::HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()) {
        r.headers_mut().insert("x-amzn-requestid", v);
    }
    r
}

fn error_response(e: &ApiError, content_type: &str) -> Response<Full<Bytes>> {
    let mut r = json_response(e.status, &e.to_json(), content_type);
    if let Ok(v) = http::HeaderValue::from_str(e.code) {
        r.headers_mut().insert("x-amzn-errortype", v);
    }
    r
}

/// Which service a target belongs to, for the SigV4 scope and the reply's content type.
/// (Lightbox's own operations are signed in the Step Functions scope, "states".)
fn service_of(target: &str) -> Option<(&'static str, &str, &'static str)> {
    if let Some(op) = target.strip_prefix("AWSStepFunctions.") {
        return Some(("states", op, JSON_10));
    }
    if let Some(op) = target.strip_prefix(outbox::PREFIX) {
        return Some(("lightbox", op, JSON_11));
    }
    target.strip_prefix("Logs_20140328.").map(|op| ("logs", op, JSON_11))
}

/// Without credentials the server trusts whoever can reach loopback, which a web page can do
/// too: by DNS rebinding (its own name resolving to 127.0.0.1, so `Host` names it) or by a
/// plain cross-site POST. SDKs and the CLI send neither `Origin` nor `Sec-Fetch-*` and name a
/// loopback address, `localhost`, a `*.localhost` name or a single-label name from
/// /etc/hosts (`sync-lightbox`); anything else is refused.
fn unsigned_request_allowed(headers: &http::HeaderMap) -> Result<(), ApiError> {
    let denied = |why: &str| ApiError { code: "AccessDeniedException", message: why.to_string(), status: 403 };
    if headers.contains_key(http::header::ORIGIN) || headers.keys().any(|k| k.as_str().starts_with("sec-fetch-")) {
        return Err(denied(
            "requests from a web browser are refused: this server does not verify signatures (configure [serve] credentials)",
        ));
    }
    let Some(host) = headers.get(http::header::HOST) else { return Ok(()) };
    let host = host.to_str().map_err(|_| denied("the Host header is not ASCII"))?;
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or_default(),
        None => host.rsplit_once(':').map(|(h, _)| h).unwrap_or(host),
    };
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    let ok = match name.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => name == "localhost" || name.ends_with(".localhost") || (!name.is_empty() && !name.contains('.')),
    };
    if ok {
        Ok(())
    } else {
        Err(denied(
            "the Host header names another host: unsigned requests are served for loopback names only (configure [serve] credentials)",
        ))
    }
}

async fn handle(req: Request<Incoming>, shared: &Shared, busy: &AtomicUsize, peer: IpAddr) -> Response<Full<Bytes>> {
    let started = std::time::Instant::now();
    let (parts, body) = req.into_parts();
    let target = parts.headers.get("x-amz-target").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let (service, op, content_type) = match service_of(&target) {
        Some(s) => s,
        None => {
            let e = ApiError::new("UnknownOperationException", "Missing or unknown X-Amz-Target");
            return error_response(&e, JSON_10);
        }
    };
    if parts.method != http::Method::POST {
        return error_response(&ApiError::new("UnknownOperationException", "Only POST is supported"), content_type);
    }
    let bytes = match tokio::time::timeout(READ_TIMEOUT, Limited::new(body, MAX_BODY).collect()).await {
        Ok(Ok(b)) => b.to_bytes(),
        Ok(Err(e)) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => {
            let e =
                ApiError { code: "ValidationException", message: format!("the request body is larger than {MAX_BODY} bytes"), status: 413 };
            return error_response(&e, content_type);
        }
        Ok(Err(_)) | Err(_) => {
            let e = ApiError { code: "RequestTimeout", message: "the request body did not arrive in time".into(), status: 408 };
            return error_response(&e, content_type);
        }
    };
    // From here the call is worked on: this connection is not closed to make room.
    let _busy = Busy::new(busy);
    let caller = if shared.credentials.is_empty() {
        if let Err(e) = unsigned_request_allowed(&parts.headers) {
            tracing::info!(op, refused = %e.message, "refused an unsigned request from a browser or for another host");
            return error_response(&e, content_type);
        }
        Caller::default()
    } else {
        let path = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
        let signed = sigv4::Signed { method: parts.method.as_str(), path_and_query: path, headers: &parts.headers, body: &bytes };
        let scope = if service == "lightbox" { "states" } else { service };
        match sigv4::verify(&signed, &shared.credentials, REGION, scope, SystemTime::now()) {
            Ok(k) => Caller { access_key_id: Some(k) },
            Err(e) => {
                tracing::info!(op, refused = %e, "refused an unauthenticated request");
                return error_response(&ApiError::from(e), content_type);
            }
        }
    };
    let body: Value = if bytes.iter().all(u8::is_ascii_whitespace) {
        Value::Object(Default::default())
    } else {
        match serde_json::from_slice(&bytes) {
            Ok(v) => v,
            Err(_) => return error_response(&ApiError::new("SerializationException", "the request body is not valid JSON"), content_type),
        }
    };
    // One peer's flood is throttled at its own share first, so the others still get in.
    let Some(peer_call) = shared.peer_calls.enter(peer) else {
        let e = ApiError {
            code: "ThrottlingException",
            message: "Rate exceeded: too many calls in flight from this client".into(),
            status: 400,
        };
        return error_response(&e, content_type);
    };
    let Ok(permit) = shared.inflight.clone().try_acquire_owned() else {
        let e = ApiError { code: "ThrottlingException", message: "Rate exceeded: too many calls in flight".into(), status: 400 };
        return error_response(&e, content_type);
    };
    let (api, op_owned, who, sinks) = (shared.api.clone(), op.to_string(), caller.clone(), shared.sinks.clone());
    let svc = service;
    let job = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let _peer_call = peer_call;
        // A panic in one request fails only that request.
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match svc {
            "logs" => logs::call(&api, &op_owned, &body),
            "lightbox" => outbox::call(&api, &sinks, &op_owned, &body, &who),
            _ => api.call(&op_owned, &body, &who),
        }))
        .unwrap_or_else(|_| Err(ApiError::internal("the request failed inside the server (the server log has the details)")))
    });
    let limit = shared.api.sync_timeout + Duration::from_secs(30);
    let r = match tokio::time::timeout(limit, job).await {
        Ok(Ok(r)) => r,
        Ok(Err(_)) => Err(ApiError::internal("the request failed inside the server")),
        Err(_) => Err(ApiError { code: "ServiceUnavailable", message: "the request took too long".into(), status: 503 }),
    };
    let actor = caller.actor();
    match r {
        Ok(v) => {
            tracing::info!(op, caller = %actor, status = 200, ms = started.elapsed().as_millis() as u64, "API call");
            json_response(200, &v, content_type)
        }
        Err(e) => {
            tracing::info!(op, caller = %actor, status = e.status, error = e.code, ms = started.elapsed().as_millis() as u64, "API call failed");
            error_response(&e, content_type)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().expect("header"));
        }
        h
    }

    #[test]
    fn unsigned_requests_are_served_for_loopback_names_only_and_never_for_browsers() {
        for host in ["127.0.0.1:8083", "localhost:8083", "LOCALHOST", "[::1]:8083", "127.0.0.2", "sync-lightbox:8083", "api.localhost:1"] {
            assert!(unsigned_request_allowed(&headers(&[("host", host)])).is_ok(), "{host}");
        }
        assert!(unsigned_request_allowed(&http::HeaderMap::new()).is_ok());
        for host in ["rebind.attacker.example:8083", "10.0.0.5:8083", "[2001:db8::1]:8083", "localhost.attacker.example"] {
            let e = unsigned_request_allowed(&headers(&[("host", host)])).unwrap_err();
            assert_eq!((e.code, e.status), ("AccessDeniedException", 403), "{host}");
        }
        let e = unsigned_request_allowed(&headers(&[("host", "localhost:8083"), ("origin", "http://evil.example")])).unwrap_err();
        assert_eq!(e.code, "AccessDeniedException");
        assert!(unsigned_request_allowed(&headers(&[("host", "127.0.0.1"), ("sec-fetch-site", "cross-site")])).is_err());
    }
}
