//! The server: accepts mutual-TLS connections and serves the Certbot store over HTTP/1.1.
//!
//! This file owns the listener, the TLS handshake and its failure log, connection
//! lifetimes and graceful shutdown. Request handling lives in `http`.

mod http;
mod idle;
mod limits;
mod metrics;
mod park;
mod renewal;
mod throttle;

use std::cell::RefCell;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, error, info, warn};

use crate::config::ServerSettings;
use crate::identity::Identity;
use crate::store::Store;
use crate::tls::{self, HandshakeFailure, REJECTED_CLIENT_CERT};

use idle::IdleTimeout;
pub use limits::LimitSettings;
use metrics::{ConnectionCap, Metrics};
use park::Parking;

/// How long in-flight requests may run after a stop signal before connections are dropped.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Largest request head (request line and headers) accepted, in bytes.
const MAX_HEADER_BYTES: usize = 8 * 1024;

/// Failed handshakes logged per second; the rest are counted in the next line.
const HANDSHAKE_LOG_LINES_PER_SECOND: u32 = 20;

/// How long a kept-alive connection may be silent after a response before hyper's
/// buffers are released. Fleet clients send their requests back to back, well within it.
const PARK_AFTER: Duration = Duration::from_millis(250);

/// How long a rejected handshake's connection is drained before it is closed.
const LINGER_TIME: Duration = Duration::from_secs(2);

/// How many bytes a rejected handshake's connection may send while it is drained.
const LINGER_BYTES: usize = 64 * 1024;

/// Failure to start the server.
#[derive(Debug)]
pub enum ServerError {
    Tls(tls::TlsSetupError),
    Store(std::io::Error),
    Bind {
        addr: SocketAddr,
        error: std::io::Error,
    },
    MetricsBind {
        addr: SocketAddr,
        error: std::io::Error,
    },
    Signal(std::io::Error),
}

impl std::fmt::Display for ServerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ServerError::Tls(error) => error.fmt(f),
            ServerError::Store(error) => error.fmt(f),
            ServerError::Bind { addr, error } => write!(f, "listening on {addr} failed: {error}"),
            ServerError::MetricsBind { addr, error } => write!(
                f,
                "listening on {addr} for metrics (metrics_listen) failed: {error}"
            ),
            ServerError::Signal(error) => write!(f, "installing signal handlers failed: {error}"),
        }
    }
}

impl std::error::Error for ServerError {}

/// State shared by every connection.
struct Shared {
    store: Store,
    snapshots: crate::store::SnapshotCache,
    /// The access policy, replaced on reload.
    policy: RwLock<Arc<crate::policy::Policy>>,
    /// The TLS acceptor with its certificate, CA bundle and revocation lists, replaced on
    /// reload. A new acceptor has a new session cache, so no session made before a
    /// revocation can be resumed after it.
    acceptor: RwLock<TlsAcceptor>,
    /// The TLS configuration with its generation, raised by every reload; connections
    /// verified under an older generation are verified again before their next request.
    tls: RwLock<(u64, tls::ServerTls)>,
    /// The settings last applied, whose files the daily expiry check reads.
    settings: RwLock<ServerSettings>,
    max_body_bytes: usize,
    /// Connections open now, handshakes included.
    active: AtomicUsize,
    max_connections: usize,
    retry_after: Duration,
    /// Limits the log lines of failed handshakes, which a scan produces by the thousand.
    handshake_log: throttle::Throttle,
    /// Per-IP, per-connection and per-client limits.
    limits: Arc<limits::Limits>,
    /// Time allowed to read a request body.
    body_timeout: Duration,
    /// Limits the log lines of connections closed, or sent a 503, under overload.
    overload_log: throttle::Throttle,
    /// Renewals signed in the current minute.
    renewal_budget: Arc<renewal::RenewalBudget>,
    /// Counters for the metrics listener, kept whether or not it is on.
    metrics: Metrics,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

/// Certificate chain a connection's client presented, verified again after a reload.
#[derive(Debug)]
struct Peer {
    chain: Vec<rustls::pki_types::CertificateDer<'static>>,
    verified_generation: AtomicU64,
}

impl Shared {
    /// Returns an error when the connection's certificate is no longer accepted, for
    /// example because a reload brought a revocation list that names it.
    fn still_accepted(&self, peer: &Peer) -> Result<(), String> {
        // Every request passes here, so the common case only compares two numbers.
        let current = self
            .tls
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let generation = current.0;
        if peer.verified_generation.load(Ordering::Relaxed) == generation {
            return Ok(());
        }
        let tls = current.1.clone();
        drop(current);
        tls.verify_client(&peer.chain, rustls::pki_types::UnixTime::now())?;
        peer.verified_generation
            .store(generation, Ordering::Relaxed);
        Ok(())
    }

    fn policy(&self) -> Arc<crate::policy::Policy> {
        self.policy
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    fn acceptor(&self) -> TlsAcceptor {
        self.acceptor
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}

/// Replaces the TLS configuration and the policy of a running server.
#[derive(Debug, Clone)]
pub struct Reloader(Arc<Shared>);

impl Reloader {
    /// Applies new settings. On any error the running configuration stays as it was.
    pub fn reload(&self, settings: &ServerSettings) -> Result<(), ServerError> {
        let tls_config =
            tls::server_config(&settings.tls, &settings.crls).map_err(ServerError::Tls)?;
        *self
            .0
            .acceptor
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) =
            TlsAcceptor::from(tls_config.config.clone());
        {
            let mut current = self
                .0
                .tls
                .write()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            *current = (current.0 + 1, tls_config);
        }
        *self
            .0
            .policy
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(settings.policy.clone());
        *self
            .0
            .settings
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = settings.clone();
        self.0
            .metrics
            .set_validity_ends(tls::validity_ends(&settings.tls, &settings.crls));
        info!(
            cert = %settings.tls.cert.display(),
            ca = %settings.tls.ca.display(),
            crls = settings.crls.len(),
            "configuration reloaded"
        );
        warn_expiring(settings);
        Ok(())
    }
}

/// Warns about the server certificate, the CA bundle or a revocation list running out.
fn warn_expiring(settings: &ServerSettings) {
    for warning in tls::expiry_warnings(&settings.tls, &settings.crls, std::time::SystemTime::now())
    {
        warn!("{warning}");
    }
}

/// Counts a connection as active until dropped.
struct ActiveGuard(Arc<Shared>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A bound server, ready to serve.
#[allow(missing_debug_implementations)]
pub struct Server {
    listener: TcpListener,
    /// The plain-HTTP metrics listener, when `metrics_listen` is set.
    metrics_listener: Option<std::net::TcpListener>,
    shared: Arc<Shared>,
    settings: ServerSettings,
}

impl Server {
    /// Loads the TLS files and the store, and binds the listening socket.
    pub async fn bind(settings: ServerSettings) -> Result<Server, ServerError> {
        let tls_config =
            tls::server_config(&settings.tls, &settings.crls).map_err(ServerError::Tls)?;
        let store = Store::open(&settings.certbot_dir).map_err(ServerError::Store)?;
        let listener =
            TcpListener::bind(settings.listen)
                .await
                .map_err(|error| ServerError::Bind {
                    addr: settings.listen,
                    error,
                })?;
        let metrics_listener = settings
            .metrics_listen
            .map(|addr| {
                metrics::bind(addr).map_err(|error| ServerError::MetricsBind { addr, error })
            })
            .transpose()?;
        let validity_ends = tls::validity_ends(&settings.tls, &settings.crls);
        Ok(Server {
            listener,
            metrics_listener,
            shared: Arc::new(Shared {
                acceptor: RwLock::new(TlsAcceptor::from(tls_config.config.clone())),
                tls: RwLock::new((0, tls_config)),
                settings: RwLock::new(settings.clone()),
                store,
                snapshots: crate::store::SnapshotCache::default(),
                policy: RwLock::new(Arc::new(settings.policy.clone())),
                max_body_bytes: settings.max_body_bytes,
                active: AtomicUsize::new(0),
                max_connections: settings.max_connections,
                retry_after: settings.retry_after,
                overload_log: throttle::Throttle::new(1),
                renewal_budget: Arc::new(renewal::RenewalBudget::new()),
                handshake_log: throttle::Throttle::new(HANDSHAKE_LOG_LINES_PER_SECOND),
                body_timeout: settings.header_timeout,
                limits: Arc::new(limits::Limits::new(settings.limits)),
                metrics: Metrics::new(settings.workers, validity_ends),
            }),
            settings,
        })
    }

    /// Returns a handle that reloads the configuration of this server while it runs.
    pub fn reloader(&self) -> Reloader {
        Reloader(self.shared.clone())
    }

    /// Returns the address actually bound, useful when the port was 0.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().unwrap_or(self.settings.listen)
    }

    /// Returns the metrics listener's bound address, or `None` when metrics are off.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        let listener = self.metrics_listener.as_ref()?;
        listener.local_addr().ok().or(self.settings.metrics_listen)
    }

    /// Serves until `shutdown` completes, then drains connections for a grace period.
    ///
    /// Connections are served by `workers` threads, each with its own single-threaded
    /// runtime accepting from the shared listening socket, as nginx's workers do. A
    /// connection stays on the thread that accepted it, so serving it wakes no other thread.
    /// The calling task is the first worker.
    pub async fn serve(mut self, shutdown: impl Future<Output = ()>) {
        let metrics_addr = self.metrics_addr();
        info!(
            listen = %self.local_addr(),
            certbot_dir = %self.shared.store.root().display(),
            ca = %self.settings.tls.ca.display(),
            workers = self.settings.workers,
            renewal = %self
                .settings
                .renewal
                .as_ref()
                .map_or("off".to_owned(), |renewal| renewal.pki_dir.display().to_string()),
            metrics = %metrics_addr.map_or("off".to_owned(), |addr| addr.to_string()),
            "server started"
        );
        warn_expiring(&self.settings);
        if self.shared.policy().allows_all() {
            warn!(
                "allow_all_clients is set: every client certificate from the CA may fetch every \
                 lineage and private key; add [[access]] rules to limit each client"
            );
        }
        let (stop_sender, stop_receiver) = watch::channel(false);
        let context = Worker {
            shared: self.shared.clone(),
            header_timeout: self.settings.header_timeout,
            idle_timeout: self.settings.idle_timeout,
        };
        let mut threads = Vec::new();
        if let Some(listener) = self.metrics_listener.take() {
            self.start_metrics(listener, stop_receiver.clone(), &mut threads);
        }
        for number in 1..self.settings.workers {
            match self.start_worker(number, context.clone(), stop_receiver.clone()) {
                Ok(done) => threads.push(done),
                Err(error) => {
                    warn!(worker = number, error = %error, "starting a worker thread failed; serving with fewer");
                    break;
                }
            }
        }

        let own = context.accept_loop(self.listener, stop_receiver);
        tokio::pin!(own);
        tokio::pin!(shutdown);
        tokio::select! {
            () = &mut shutdown => {}
            () = &mut own => {}
        }
        info!("server stopping");
        let _ = stop_sender.send(true);
        own.await;
        for done in threads {
            let _ = done.await;
        }
        info!("server stopped");
    }

    /// Starts the metrics listener's thread and logs where it listens. A failure to start
    /// it is logged and the server runs without metrics.
    fn start_metrics(
        &self,
        listener: std::net::TcpListener,
        stop: watch::Receiver<bool>,
        threads: &mut Vec<tokio::sync::oneshot::Receiver<()>>,
    ) {
        let addr = listener.local_addr().ok();
        let listen = addr.map_or("unknown".to_owned(), |addr| addr.to_string());
        match metrics::start(listener, self.shared.clone(), stop) {
            Ok(done) => threads.push(done),
            Err(error) => {
                error!(listen = %listen, error = %error, "starting the metrics thread failed; serving without metrics");
                return;
            }
        }
        info!(listen = %listen, path = "/metrics", "metrics listener started");
        if addr.is_some_and(|addr| !addr.ip().is_loopback()) {
            warn!(
                listen = %listen,
                "metrics_listen is not a loopback address: every host that can reach it may \
                 read, without authentication, the lineage names with their expiry times and \
                 the request and handshake counts; limit it with a firewall"
            );
        }
    }

    /// Starts a worker thread accepting from a duplicate of the listening socket. The
    /// returned receiver completes when the worker has drained its connections.
    fn start_worker(
        &self,
        number: usize,
        context: Worker,
        stop: watch::Receiver<bool>,
    ) -> std::io::Result<tokio::sync::oneshot::Receiver<()>> {
        let listener = self.listener_clone()?;
        let (done_sender, done) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name(format!("acme-dl-worker-{number}"))
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(error) => {
                        error!(worker = number, error = %error, "starting a worker's runtime failed");
                        return;
                    }
                };
                metrics::set_worker_shard(number);
                runtime.block_on(async move {
                    match TcpListener::from_std(listener) {
                        Ok(listener) => context.accept_loop(listener, stop).await,
                        Err(error) => {
                            error!(worker = number, error = %error, "registering the listening socket failed");
                        }
                    }
                });
                let _ = done_sender.send(());
            })?;
        Ok(done)
    }

    fn listener_clone(&self) -> std::io::Result<std::net::TcpListener> {
        let fd = std::os::fd::AsFd::as_fd(&self.listener).try_clone_to_owned()?;
        let listener = std::net::TcpListener::from(fd);
        listener.set_nonblocking(true)?;
        Ok(listener)
    }
}

/// Shared state and timeouts that every worker thread serves connections with.
#[derive(Clone)]
struct Worker {
    shared: Arc<Shared>,
    header_timeout: Duration,
    idle_timeout: Duration,
}

impl Worker {
    /// Accepts and serves connections until `stop` turns true, then drains them.
    async fn accept_loop(self, listener: TcpListener, stop: watch::Receiver<bool>) {
        let mut connections = JoinSet::new();
        let mut stopping = stop.clone();
        loop {
            tokio::select! {
                () = async { let _ = stopping.wait_for(|stopping| *stopping).await; } => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        connections.spawn(self.connection(stream, peer, stop.clone()));
                    }
                    Err(error) => {
                        // Running out of file descriptors must not spin the loop.
                        if let Some(suppressed) = self.shared.overload_log.admit() {
                            warn!(
                                error = %error,
                                similar_lines_suppressed = suppressed,
                                "accepting a connection failed"
                            );
                        }
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }
        drop(listener);
        if !connections.is_empty() {
            debug!(open_connections = connections.len(), "draining connections");
        }
        let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
            while connections.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            warn!(
                dropped = connections.len(),
                "connections still open after the grace period"
            );
            connections.abort_all();
        }
    }

    fn connection(
        &self,
        stream: TcpStream,
        peer: SocketAddr,
        stop: watch::Receiver<bool>,
    ) -> impl Future<Output = ()> + Send + 'static {
        // The generation is read first: a reload in between makes it older than the
        // acceptor, which costs one needless verification, never a missed one.
        let generation = self
            .shared
            .tls
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .0;
        let acceptor = self.shared.acceptor();
        let shared = self.shared.clone();
        let header_timeout = self.header_timeout;
        let idle_timeout = self.idle_timeout;
        let active = shared.active.fetch_add(1, Ordering::Relaxed) + 1;
        shared.metrics.count_connection_accepted();
        let guard = ActiveGuard(shared.clone());
        async move {
            let _guard = guard;
            // Far beyond the limit, even a handshake costs too much: close at once.
            if active > shared.max_connections.saturating_mul(2) {
                shared
                    .metrics
                    .count_connection_rejected(ConnectionCap::MaxConnections);
                if let Some(suppressed) = shared.overload_log.admit() {
                    warn!(
                        peer = %peer,
                        active = active,
                        similar_lines_suppressed = suppressed,
                        "connection closed before the handshake: server saturated"
                    );
                }
                return;
            }
            let Some(_ip_slot) = shared.limits.enter(peer.ip()) else {
                shared
                    .metrics
                    .count_connection_rejected(ConnectionCap::MaxConnectionsPerIp);
                if let Some(suppressed) = shared.overload_log.admit() {
                    warn!(
                        peer = %peer,
                        limit = shared.limits.settings.max_connections_per_ip,
                        similar_lines_suppressed = suppressed,
                        "connection closed before the handshake: too many connections from this address"
                    );
                }
                return;
            };
            let saturated = active > shared.max_connections;
            let _ = stream.set_nodelay(true);
            // The handshake's state is about 6 KiB. Boxed, it is freed when the handshake
            // ends instead of staying in every idle connection's task.
            let Some((tls_stream, client)) = Box::pin(handshake(
                acceptor,
                stream,
                peer,
                header_timeout,
                &shared.handshake_log,
                &shared.metrics,
            ))
            .await
            else {
                return;
            };
            let serving = serve_tls(
                tls_stream,
                client,
                shared,
                generation,
                peer,
                saturated,
                (header_timeout, idle_timeout),
                stop,
            );
            serving.await;
        }
    }
}

/// Builds the HTTP/1.1 connection over an established mutual-TLS stream and returns the
/// future that serves it until it closes or `stop` turns true.
///
/// Everything is built here, outside any async state, and the connection is boxed once.
/// An idle connection then keeps a small future, without the moved-from copies of the
/// TLS stream that an async function's state would keep. Once the client has been silent
/// for [`PARK_AFTER`] after a response, hyper's connection and its buffers are dropped
/// (see `park`) and a new one is built when the next request starts.
#[allow(clippy::too_many_arguments)]
fn serve_tls(
    tls_stream: tokio_rustls::server::TlsStream<TcpStream>,
    client: Identity,
    shared: Arc<Shared>,
    generation: u64,
    peer: SocketAddr,
    saturated: bool,
    (header_timeout, idle_timeout): (Duration, Duration),
    mut stop: watch::Receiver<bool>,
) -> Pin<Box<dyn Future<Output = ()> + Send>> {
    debug!(peer = %peer, client = %client, fingerprint = %client.fingerprint, "connection accepted");
    let client_name = client.to_string();
    let client = Arc::new(client);
    let chain = tls_stream
        .get_ref()
        .1
        .peer_certificates()
        .map(|certs| certs.iter().map(|cert| cert.clone().into_owned()).collect())
        .unwrap_or_default();
    let peer_state = Arc::new(Peer {
        chain,
        verified_generation: AtomicU64::new(generation),
    });
    let served = Arc::new(AtomicUsize::new(0));
    let service = service_fn(move |request| {
        let number = served.fetch_add(1, Ordering::Relaxed) + 1;
        // Boxed so that hyper's connection can be taken apart when it parks.
        Box::pin(http::handle(
            request,
            shared.clone(),
            client.clone(),
            peer_state.clone(),
            peer,
            saturated,
            number,
        ))
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .max_buf_size(MAX_HEADER_BYTES.max(8192))
        .max_header_size(MAX_HEADER_BYTES);
    let io = Parking::new(IdleTimeout::new(tls_stream, idle_timeout), PARK_AFTER);
    let mut connection = Box::new(builder.serve_connection(TokioIo::new(io), service));
    Box::pin(async move {
        loop {
            let result = tokio::select! {
                result = std::future::poll_fn(|context| connection.poll_without_shutdown(context)) => result,
                _ = async { stop.wait_for(|stopping| *stopping).await.map(|_| ()) } => {
                    Pin::new(&mut *connection).graceful_shutdown();
                    std::future::poll_fn(|context| connection.poll_without_shutdown(context)).await
                }
            };
            match result {
                // hyper sends these responses itself (408, 431, 400), before any handler runs.
                Err(error)
                    if error.is_timeout() || error.is_parse() || error.is_parse_too_large() =>
                {
                    warn!(peer = %peer, client = %client_name, error = %error, "request rejected by the HTTP parser");
                    return;
                }
                Err(error) => {
                    debug!(peer = %peer, error = %error, "connection closed with an error");
                    return;
                }
                Ok(()) => {}
            }
            // Taken apart in a block of its own: a local that lived across the awaits below
            // would keep a slot for the whole TLS stream in this future. Unread bytes are
            // copied out, because the `Bytes` keeps hyper's 8 KiB read buffer alive, and
            // the stream is boxed while parked.
            let (service, unread, mut io) = {
                let parts = connection.into_parts();
                (
                    parts.service,
                    parts.read_buf.to_vec(),
                    Box::new(parts.io.into_inner()),
                )
            };
            if !io.is_parked() || *stop.borrow() {
                // The client closed the connection, or hyper closed it after the last request.
                let _ = tokio::io::AsyncWriteExt::shutdown(&mut io).await;
                return;
            }
            // Parked: only the TLS stream is held until the client sends its next byte.
            debug!(peer = %peer, "connection parked");
            let mut first = [0u8; 1];
            let read = tokio::select! {
                read = tokio::io::AsyncReadExt::read(io.inner_mut(), &mut first) => read,
                _ = async { stop.wait_for(|stopping| *stopping).await.map(|_| ()) } => return,
            };
            match read {
                Ok(1) => {}
                Ok(_) => return,
                Err(error) => {
                    debug!(peer = %peer, error = %error, "parked connection closed");
                    return;
                }
            }
            let mut replay = unread;
            replay.push(first[0]);
            io.resume(bytes::Bytes::from(replay));
            *connection = builder.serve_connection(TokioIo::new(*io), service);
        }
    })
}

/// Runs the TLS handshake and logs why it failed, naming the rejected certificate.
async fn handshake(
    acceptor: TlsAcceptor,
    stream: TcpStream,
    peer: SocketAddr,
    timeout: Duration,
    log_throttle: &throttle::Throttle,
    metrics: &Metrics,
) -> Option<(tokio_rustls::server::TlsStream<TcpStream>, Identity)> {
    metrics.count_handshake();
    let (result, rejected) = REJECTED_CLIENT_CERT
        .scope(RefCell::new(None), async {
            let result =
                tokio::time::timeout(timeout, acceptor.accept(stream).into_fallible()).await;
            (
                result,
                REJECTED_CLIENT_CERT.with(|slot| slot.borrow_mut().take()),
            )
        })
        .await;
    match result {
        Ok(Ok(tls_stream)) => {
            let identity = tls_stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|certs| certs.first())
                .map(Identity::from_der)?;
            Some((tls_stream, identity))
        }
        Ok(Err((error, tcp))) => {
            metrics.count_handshake_failure(HandshakeFailure::classify(&error));
            if let Some(suppressed) = log_throttle.admit() {
                log_handshake_failure(peer, &error, rejected, suppressed);
            }
            linger(tcp).await;
            None
        }
        Err(_) => {
            metrics.count_handshake_failure(HandshakeFailure::TimedOut);
            if let Some(suppressed) = log_throttle.admit() {
                warn!(
                    peer = %peer,
                    reason = "handshake timed out",
                    similar_lines_suppressed = suppressed,
                    "TLS handshake failed"
                );
            }
            None
        }
    }
}

/// Logs why a handshake failed, with the rejected certificate when there was one.
fn log_handshake_failure(
    peer: SocketAddr,
    error: &std::io::Error,
    rejected: Option<Identity>,
    suppressed: u64,
) {
    let reason = match tls::find_tls_error(error) {
        Some(tls_error) => tls::describe_server_side(tls_error),
        None if error.kind() == std::io::ErrorKind::UnexpectedEof => {
            "connection closed during the handshake".to_owned()
        }
        None => error.to_string(),
    };
    match rejected {
        Some(cert) => warn!(
            peer = %peer,
            reason = %reason,
            subject = %cert.subject,
            serial = %cert.serial,
            fingerprint = %cert.fingerprint,
            similar_lines_suppressed = suppressed,
            "TLS handshake failed"
        ),
        None => warn!(
            peer = %peer,
            reason = %reason,
            similar_lines_suppressed = suppressed,
            "TLS handshake failed"
        ),
    }
}

/// Closes a rejected connection without a TCP reset.
///
/// After its TLS 1.3 Finished, a client may already have sent its request. Closing a
/// socket with unread data makes the kernel send a reset, which can destroy the alert
/// before the client reads it. So the write side is shut first and the rest drained.
async fn linger(mut tcp: TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _ = tcp.shutdown().await;
    let mut buffer = [0u8; 4096];
    let mut total = 0;
    let _ = tokio::time::timeout(LINGER_TIME, async {
        while total < LINGER_BYTES {
            match tcp.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(count) => total += count,
            }
        }
    })
    .await;
}

/// Validates the settings without binding: TLS files, store and policy. Returns a
/// summary, and with `explain`, what the client certificate in that file may fetch.
pub fn check_config(
    settings: &ServerSettings,
    explain: Option<&std::path::Path>,
) -> Result<String, ServerError> {
    use std::fmt::Write as _;
    let server_tls = tls::server_config(&settings.tls, &settings.crls).map_err(ServerError::Tls)?;
    let store = Store::open(&settings.certbot_dir).map_err(ServerError::Store)?;
    let lineages = store.lineages();
    let mut text = String::new();
    let _ = writeln!(text, "configuration valid");
    let _ = writeln!(text, "listen: {}", settings.listen);
    let _ = writeln!(
        text,
        "certbot_dir: {} ({} {})",
        store.root().display(),
        lineages.len(),
        if lineages.len() == 1 {
            "lineage"
        } else {
            "lineages"
        }
    );
    let _ = writeln!(text, "client CA bundle: {}", settings.tls.ca.display());
    match settings.metrics_listen {
        Some(addr) if addr.ip().is_loopback() => {
            let _ = writeln!(text, "metrics: http://{addr}/metrics");
        }
        Some(addr) => {
            let _ = writeln!(
                text,
                "metrics: http://{addr}/metrics (not loopback: readable by every host that can \
                 reach it)"
            );
        }
        None => {
            let _ = writeln!(text, "metrics: off");
        }
    }
    match &settings.renewal {
        Some(renewal) => {
            let _ = writeln!(
                text,
                "renewal of client certificates: on, PKI {}",
                renewal.pki_dir.display()
            );
        }
        None => {
            let _ = writeln!(text, "renewal of client certificates: off");
        }
    }
    if settings.policy.allows_all() {
        let _ = writeln!(
            text,
            "access: every client of the CA may fetch every lineage and key"
        );
    }
    let Some(path) = explain else { return Ok(text) };

    let certificates = tls::load_certs("client certificate", path).map_err(ServerError::Tls)?;
    let identity = Identity::from_der(&certificates[0]);
    let _ = writeln!(
        text,
        "\nclient {identity}: subject {:?}, DNS names {:?}, URIs {:?}, sha256:{}",
        identity.subject, identity.dns_names, identity.uris, identity.fingerprint
    );
    if let Err(reason) = server_tls.verify_client(&certificates, rustls::pki_types::UnixTime::now())
    {
        let _ = writeln!(text, "  rejected in the handshake, so nothing: {reason}");
        return Ok(text);
    }
    for lineage in &lineages {
        let decision = settings.policy.decide(&identity, lineage);
        let access = match decision.access {
            crate::policy::Access::Full => "certificates and private key",
            crate::policy::Access::CertificatesOnly => "certificates only",
            crate::policy::Access::Denied => "nothing",
        };
        let _ = writeln!(text, "  {lineage}: {access} ({})", decision.reason);
    }
    Ok(text)
}

/// Binds and serves until SIGTERM or SIGINT. SIGHUP calls `resolve` for new settings and
/// applies them; a failed reload keeps the running configuration and logs why.
pub async fn run(
    settings: ServerSettings,
    resolve: impl Fn() -> Result<ServerSettings, String> + Send + 'static,
) -> Result<(), ServerError> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate()).map_err(ServerError::Signal)?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(ServerError::Signal)?;
    let mut hangup = signal(SignalKind::hangup()).map_err(ServerError::Signal)?;
    let server = Server::bind(settings).await?;

    let reloader = server.reloader();
    let listen = server.settings.listen;
    let metrics_listen = server.settings.metrics_listen;
    let certbot_dir = server.settings.certbot_dir.clone();
    tokio::spawn(async move {
        while hangup.recv().await.is_some() {
            info!(signal = "SIGHUP", "reloading the configuration");
            let result = resolve().and_then(|settings| {
                let changed: Vec<&str> = [
                    ("listen", settings.listen != listen),
                    ("certbot_dir", settings.certbot_dir != certbot_dir),
                    ("metrics_listen", settings.metrics_listen != metrics_listen),
                ]
                .into_iter()
                .filter_map(|(name, differs)| differs.then_some(name))
                .collect();
                if !changed.is_empty() {
                    warn!(
                        settings = %changed.join(","),
                        "changes of these settings take effect only after a restart"
                    );
                }
                if let Some(Err(failure)) = settings
                    .renewal
                    .as_ref()
                    .map(crate::config::RenewalSettings::check_files)
                {
                    warn!(error = %failure, "renewal of client certificates will fail until the PKI directory is readable");
                }
                reloader
                    .reload(&settings)
                    .map_err(|failure| failure.to_string())
            });
            if let Err(failure) = result {
                error!(error = %failure, "reload failed; the running configuration stays");
            }
        }
    });
    let daily = server.shared.clone();
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(Duration::from_secs(86_400));
        interval.tick().await;
        loop {
            interval.tick().await;
            let settings = daily
                .settings
                .read()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .clone();
            warn_expiring(&settings);
        }
    });

    server
        .serve(async move {
            let name = tokio::select! {
                _ = terminate.recv() => "SIGTERM",
                _ = interrupt.recv() => "SIGINT",
            };
            info!(signal = name, "stop signal received");
        })
        .await;
    Ok(())
}
