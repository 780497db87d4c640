//! Prometheus metrics: counters the serving threads keep, and a plain-HTTP listener of its
//! own that serves them at `GET /metrics` in the text exposition format, version 0.0.4.
//!
//! No metric carries a client's identity. Only the expiry gauge carries lineage names, and
//! it lists every lineage of the store regardless of which client asked for it, so a scrape cannot tell which
//! client fetched which lineage. The listener is off unless `metrics_listen` is set.

use std::cell::Cell;
use std::convert::Infallible;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{debug, error, warn};

use super::Shared;
use crate::protocol::{CHECK_PATH, DOWNLOAD_PREFIX, RENEW_PATH, SetFile};
use crate::store::Current;
use crate::tls::{self, HandshakeFailure};

/// Scrapes served at once; further connections are closed unanswered. A scrape needs one
/// connection, so a few leave room for a second scraper and a curl.
const MAX_CONNECTIONS: usize = 4;

/// Time a scraper has to send its request head.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// Time a metrics connection may stay open in all, response included.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(10);

/// The exposition format's media type, as Prometheus's text format 0.0.4 defines it.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Status codes 100 to 599 each have a counter per endpoint.
const FIRST_STATUS: u16 = 100;
const STATUS_CODES: usize = 500;

/// Endpoint of the mutual-TLS port a request was routed to: the `endpoint` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Endpoint {
    Check,
    Download,
    RenewIdentity,
    Other,
}

impl Endpoint {
    const ALL: [Endpoint; 4] = [
        Endpoint::Check,
        Endpoint::Download,
        Endpoint::RenewIdentity,
        Endpoint::Other,
    ];

    /// Classifies a request path as `http::handle` routes it.
    pub(super) fn from_path(path: &str) -> Endpoint {
        if path == CHECK_PATH {
            Endpoint::Check
        } else if path == RENEW_PATH {
            Endpoint::RenewIdentity
        } else if path.starts_with(DOWNLOAD_PREFIX) {
            Endpoint::Download
        } else {
            Endpoint::Other
        }
    }

    fn label(self) -> &'static str {
        match self {
            Endpoint::Check => "check",
            Endpoint::Download => "download",
            Endpoint::RenewIdentity => "renew-identity",
            Endpoint::Other => "other",
        }
    }
}

/// Cap that closed a connection before its handshake: the `cap` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ConnectionCap {
    /// Twice `max_connections` were open.
    MaxConnections,
    /// The peer's address held `max_connections_per_ip`.
    MaxConnectionsPerIp,
}

impl ConnectionCap {
    const ALL: [ConnectionCap; 2] = [
        ConnectionCap::MaxConnections,
        ConnectionCap::MaxConnectionsPerIp,
    ];

    fn label(self) -> &'static str {
        match self {
            ConnectionCap::MaxConnections => "max_connections",
            ConnectionCap::MaxConnectionsPerIp => "max_connections_per_ip",
        }
    }
}

thread_local! {
    /// Shard of the worker running on this thread; 0 on the thread that called `serve`.
    static WORKER_SHARD: Cell<usize> = const { Cell::new(0) };
}

/// Makes the counters of this thread go to shard `index`. Each worker thread calls it
/// once, so two workers never add to the same cache line.
pub(super) fn set_worker_shard(index: usize) {
    WORKER_SHARD.with(|shard| shard.set(index));
}

/// One worker's counters, aligned so that no two shards share a cache line.
#[repr(align(128))]
#[derive(Debug)]
struct Shard {
    /// Indexed by endpoint, then status code minus 100.
    requests: [[AtomicU64; STATUS_CODES]; Endpoint::ALL.len()],
    connections_accepted: AtomicU64,
    connections_rejected: [AtomicU64; ConnectionCap::ALL.len()],
    handshakes: AtomicU64,
    handshake_failures: [AtomicU64; HandshakeFailure::ALL.len()],
}

impl Shard {
    fn new() -> Shard {
        Shard {
            requests: [const { [const { AtomicU64::new(0) }; STATUS_CODES] }; Endpoint::ALL.len()],
            connections_accepted: AtomicU64::new(0),
            connections_rejected: [const { AtomicU64::new(0) }; ConnectionCap::ALL.len()],
            handshakes: AtomicU64::new(0),
            handshake_failures: [const { AtomicU64::new(0) }; HandshakeFailure::ALL.len()],
        }
    }
}

/// The server's counters and the values only a reload changes.
///
/// Counters are relaxed atomics, summed over the shards when scraped: a scrape may see one
/// counter a request ahead of another, never a lost increment.
#[derive(Debug)]
pub(super) struct Metrics {
    shards: Box<[Shard]>,
    /// Seconds since the Unix epoch at which the server was bound.
    started: f64,
    /// Ends of the loaded server certificate and revocation lists, replaced on reload.
    validity_ends: RwLock<tls::ValidityEnds>,
}

impl Metrics {
    /// Creates zeroed counters with one shard per worker thread.
    pub(super) fn new(workers: usize, validity_ends: tls::ValidityEnds) -> Metrics {
        Metrics {
            shards: (0..workers.max(1)).map(|_| Shard::new()).collect(),
            started: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0.0, |since| since.as_secs_f64()),
            validity_ends: RwLock::new(validity_ends),
        }
    }

    fn shard(&self) -> &Shard {
        let index = WORKER_SHARD.with(Cell::get);
        &self.shards[index % self.shards.len()]
    }

    /// Counts a response sent on the mutual-TLS port. Codes outside 100 to 599, which no
    /// handler sends, are not counted.
    pub(super) fn count_request(&self, endpoint: Endpoint, status: StatusCode) {
        let index = usize::from(status.as_u16().wrapping_sub(FIRST_STATUS));
        if let Some(counter) = self.shard().requests[endpoint as usize].get(index) {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(super) fn count_connection_accepted(&self) {
        self.shard()
            .connections_accepted
            .fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn count_connection_rejected(&self, cap: ConnectionCap) {
        self.shard().connections_rejected[cap as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn count_handshake(&self) {
        self.shard().handshakes.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn count_handshake_failure(&self, reason: HandshakeFailure) {
        self.shard().handshake_failures[reason as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Records the server certificate and revocation lists a reload brought.
    pub(super) fn set_validity_ends(&self, ends: tls::ValidityEnds) {
        *self
            .validity_ends
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = ends;
    }

    fn sum(&self, counter: impl Fn(&Shard) -> &AtomicU64) -> u64 {
        self.shards
            .iter()
            .map(|shard| counter(shard).load(Ordering::Relaxed))
            .sum()
    }
}

/// Writes every metric in the text exposition format.
fn render(shared: &Shared) -> String {
    let metrics = &shared.metrics;
    let mut text = String::with_capacity(4096);
    render_requests(&mut text, metrics);
    render_connections(&mut text, shared);
    render_handshakes(&mut text, metrics);
    render_store(&mut text, shared);
    render_tls_files(&mut text, metrics);

    family(
        &mut text,
        "acme_dl_build_info",
        "gauge",
        "Always 1; the version label is the running build's.",
    );
    let _ = writeln!(
        text,
        "acme_dl_build_info{{version=\"{}\"}} 1",
        escape(env!("CARGO_PKG_VERSION"))
    );
    family(
        &mut text,
        "process_start_time_seconds",
        "gauge",
        "Time the server started, in seconds since the Unix epoch.",
    );
    let _ = writeln!(text, "process_start_time_seconds {:.3}", metrics.started);
    text
}

/// Writes the HELP and TYPE lines of a metric family.
fn family(text: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(text, "# HELP {name} {help}");
    let _ = writeln!(text, "# TYPE {name} {kind}");
}

fn render_requests(text: &mut String, metrics: &Metrics) {
    family(
        text,
        "acme_dl_requests_total",
        "counter",
        "Requests answered on the mutual-TLS port, by endpoint and status code. A series \
         appears with its first request.",
    );
    for endpoint in Endpoint::ALL {
        for index in 0..STATUS_CODES {
            let count = metrics.sum(|shard| &shard.requests[endpoint as usize][index]);
            if count == 0 {
                continue;
            }
            let code = FIRST_STATUS as usize + index;
            let _ = writeln!(
                text,
                "acme_dl_requests_total{{endpoint=\"{}\",code=\"{code}\"}} {count}",
                endpoint.label()
            );
        }
    }
}

fn render_connections(text: &mut String, shared: &Shared) {
    let metrics = &shared.metrics;
    family(
        text,
        "acme_dl_connections_accepted_total",
        "counter",
        "TCP connections accepted on the mutual-TLS port, before any cap applies.",
    );
    let accepted = metrics.sum(|shard| &shard.connections_accepted);
    let _ = writeln!(text, "acme_dl_connections_accepted_total {accepted}");

    family(
        text,
        "acme_dl_connections_rejected_total",
        "counter",
        "Connections closed before the TLS handshake, by the cap that closed them.",
    );
    for cap in ConnectionCap::ALL {
        let count = metrics.sum(|shard| &shard.connections_rejected[cap as usize]);
        let _ = writeln!(
            text,
            "acme_dl_connections_rejected_total{{cap=\"{}\"}} {count}",
            cap.label()
        );
    }

    family(
        text,
        "acme_dl_connections_open",
        "gauge",
        "Connections open on the mutual-TLS port now, handshakes included.",
    );
    let open = shared.active.load(Ordering::Relaxed);
    let _ = writeln!(text, "acme_dl_connections_open {open}");
}

fn render_handshakes(text: &mut String, metrics: &Metrics) {
    family(
        text,
        "acme_dl_tls_handshakes_total",
        "counter",
        "TLS handshakes started on the mutual-TLS port, failed ones included.",
    );
    let started = metrics.sum(|shard| &shard.handshakes);
    let _ = writeln!(text, "acme_dl_tls_handshakes_total {started}");

    family(
        text,
        "acme_dl_tls_handshake_failures_total",
        "counter",
        "TLS handshakes that failed, by reason.",
    );
    for (index, reason) in HandshakeFailure::ALL.iter().enumerate() {
        let count = metrics.sum(|shard| &shard.handshake_failures[index]);
        let _ = writeln!(
            text,
            "acme_dl_tls_handshake_failures_total{{reason=\"{}\"}} {count}",
            reason.label()
        );
    }
}

/// Writes the expiry of every lineage's served certificate. A lineage without a consistent
/// set, or whose leaf cannot be parsed, is counted as unusable instead.
fn render_store(text: &mut String, shared: &Shared) {
    let lineages = shared.store.lineages();
    let mut unusable = 0usize;
    family(
        text,
        "acme_dl_certificate_not_after_timestamp_seconds",
        "gauge",
        "End of validity of the certificate each lineage serves, in seconds since the Unix \
         epoch. Every lineage of the store is listed, whichever clients fetch it.",
    );
    for lineage in &lineages {
        let snapshot = match shared.snapshots.current(&shared.store, lineage) {
            Ok(Current::Fresh(snapshot) | Current::Stale(snapshot, _)) => snapshot,
            Ok(Current::Unavailable(_)) | Err(_) => {
                unusable += 1;
                continue;
            }
        };
        let not_after = snapshot
            .file(SetFile::Fullchain)
            .and_then(|fullchain| leaf_not_after(&fullchain.bytes));
        match not_after {
            Some(not_after) => {
                let _ = writeln!(
                    text,
                    "acme_dl_certificate_not_after_timestamp_seconds{{lineage=\"{}\"}} {not_after}",
                    escape(lineage.as_str())
                );
            }
            None => unusable += 1,
        }
    }
    family(
        text,
        "acme_dl_lineages",
        "gauge",
        "Lineages in the store's live/ directory.",
    );
    let _ = writeln!(text, "acme_dl_lineages {}", lineages.len());
    family(
        text,
        "acme_dl_lineages_unusable",
        "gauge",
        "Lineages with no consistent set to serve or a broken file; the log names them when \
         a client asks for one.",
    );
    let _ = writeln!(text, "acme_dl_lineages_unusable {unusable}");
}

fn render_tls_files(text: &mut String, metrics: &Metrics) {
    let ends = metrics
        .validity_ends
        .read()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .clone();
    family(
        text,
        "acme_dl_server_certificate_not_after_timestamp_seconds",
        "gauge",
        "End of validity of the server's own certificate as loaded, in seconds since the \
         Unix epoch.",
    );
    if let Some(not_after) = ends.server_certificate {
        let _ = writeln!(
            text,
            "acme_dl_server_certificate_not_after_timestamp_seconds {not_after}"
        );
    }
    family(
        text,
        "acme_dl_crl_next_update_timestamp_seconds",
        "gauge",
        "Next update of the loaded client revocation lists, by issuer, in seconds since the \
         Unix epoch; the earliest when one issuer has several lists.",
    );
    let mut earliest: Vec<(String, i64)> = Vec::new();
    for (issuer, next) in ends.crl_next_updates {
        match earliest.iter_mut().find(|(known, _)| *known == issuer) {
            Some(entry) => entry.1 = entry.1.min(next),
            None => earliest.push((issuer, next)),
        }
    }
    for (issuer, next) in earliest {
        let _ = writeln!(
            text,
            "acme_dl_crl_next_update_timestamp_seconds{{issuer=\"{}\"}} {next}",
            escape(&issuer)
        );
    }
}

/// Returns the `notAfter` of the first certificate of a PEM file, in Unix seconds.
fn leaf_not_after(pem: &[u8]) -> Option<i64> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    use x509_parser::prelude::{FromDer, X509Certificate};
    let der = CertificateDer::pem_slice_iter(pem).next()?.ok()?;
    let (_, leaf) = X509Certificate::from_der(der.as_ref()).ok()?;
    Some(leaf.validity().not_after.timestamp())
}

/// Escapes a label value as the exposition format requires: backslash, double quote and
/// line feed.
fn escape(value: &str) -> String {
    let mut escaped = String::with_capacity(value.len());
    for character in value.chars() {
        match character {
            '\\' => escaped.push_str("\\\\"),
            '"' => escaped.push_str("\\\""),
            '\n' => escaped.push_str("\\n"),
            other => escaped.push(other),
        }
    }
    escaped
}

/// Binds the metrics listener. Plain `std` so that it can move to its own thread.
pub(super) fn bind(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let listener = std::net::TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// Serves scrapes on a thread of its own until `stop` turns true. A slow scraper or a
/// flood of connections to this listener cannot take a worker's time. The returned
/// receiver completes when the thread ends.
pub(super) fn start(
    listener: std::net::TcpListener,
    shared: Arc<Shared>,
    stop: watch::Receiver<bool>,
) -> std::io::Result<tokio::sync::oneshot::Receiver<()>> {
    let (done_sender, done) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("acme-dl-metrics".to_owned())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(error) => {
                    error!(error = %error, "starting the metrics listener's runtime failed");
                    return;
                }
            };
            runtime.block_on(async move {
                match TcpListener::from_std(listener) {
                    Ok(listener) => accept_loop(listener, shared, stop).await,
                    Err(error) => {
                        error!(error = %error, "registering the metrics listening socket failed");
                    }
                }
            });
            let _ = done_sender.send(());
        })?;
    Ok(done)
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = stop.wait_for(|stopping| *stopping) => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    if connections.len() >= MAX_CONNECTIONS {
                        debug!(peer = %peer, limit = MAX_CONNECTIONS, "metrics connection closed: too many open");
                        continue;
                    }
                    connections.spawn(serve_connection(stream, peer, shared.clone()));
                }
                Err(error) => {
                    if let Some(suppressed) = shared.overload_log.admit() {
                        warn!(
                            error = %error,
                            similar_lines_suppressed = suppressed,
                            "accepting a metrics connection failed"
                        );
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    // A scrape takes milliseconds; one still open at a stop is dropped.
    connections.abort_all();
}

async fn serve_connection(stream: tokio::net::TcpStream, peer: SocketAddr, shared: Arc<Shared>) {
    let service = service_fn(move |request| {
        let shared = shared.clone();
        async move { Ok::<_, Infallible>(respond(&request, &shared)) }
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .keep_alive(false)
        .max_buf_size(8192);
    let serving = builder.serve_connection(TokioIo::new(stream), service);
    match tokio::time::timeout(CONNECTION_TIMEOUT, serving).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => debug!(peer = %peer, error = %error, "metrics connection failed"),
        Err(_) => debug!(peer = %peer, "metrics connection timed out"),
    }
}

/// Builds the response to a scrape: the metrics for `GET /metrics`, 404 for any other path
/// and 405 for another method on `/metrics`.
fn respond(request: &Request<Incoming>, shared: &Shared) -> Response<Full<Bytes>> {
    let (status, body, content_type) = if request.uri().path() != "/metrics" {
        (
            StatusCode::NOT_FOUND,
            "not found; metrics are at /metrics\n".to_owned(),
            "text/plain; charset=utf-8",
        )
    } else if request.method() != Method::GET {
        (
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed; use GET\n".to_owned(),
            "text/plain; charset=utf-8",
        )
    } else {
        (StatusCode::OK, render(shared), CONTENT_TYPE)
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if status == StatusCode::METHOD_NOT_ALLOWED {
        headers.insert(header::ALLOW, HeaderValue::from_static("GET"));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape(r#"CN=a "b" \c"#), r#"CN=a \"b\" \\c"#);
        assert_eq!(escape("line\nbreak"), "line\\nbreak");
    }

    #[test]
    fn paths_map_to_endpoints() {
        assert_eq!(Endpoint::from_path(CHECK_PATH), Endpoint::Check);
        assert_eq!(Endpoint::from_path(RENEW_PATH), Endpoint::RenewIdentity);
        assert_eq!(
            Endpoint::from_path("/download/example.com/cert.pem"),
            Endpoint::Download
        );
        assert_eq!(Endpoint::from_path("/metrics"), Endpoint::Other);
    }

    #[test]
    fn handshake_reasons_index_their_counters() {
        for (index, reason) in HandshakeFailure::ALL.iter().enumerate() {
            assert_eq!(*reason as usize, index, "{reason:?}");
        }
    }

    #[test]
    fn request_counts_sum_over_shards() {
        let metrics = Metrics::new(2, tls::ValidityEnds::default());
        metrics.count_request(Endpoint::Check, StatusCode::OK);
        std::thread::scope(|scope| {
            scope.spawn(|| {
                set_worker_shard(1);
                metrics.count_request(Endpoint::Check, StatusCode::OK);
                metrics.count_request(Endpoint::Download, StatusCode::NOT_FOUND);
            });
        });
        let ok = metrics.sum(|shard| &shard.requests[Endpoint::Check as usize][200 - 100]);
        let not_found =
            metrics.sum(|shard| &shard.requests[Endpoint::Download as usize][404 - 100]);
        assert_eq!(ok, 2);
        assert_eq!(not_found, 1);
        assert_eq!(
            metrics.shards[1].requests[Endpoint::Check as usize][100].load(Ordering::Relaxed),
            1
        );
    }
}
