//! Load generator that makes a full mutual-TLS handshake for every request.
//!
//! Each of `--connections` workers loops for `--duration` seconds: it opens a new TCP
//! connection, makes a TLS handshake with session resumption disabled
//! (`rustls::client::Resumption::disabled()`), sends one HTTP/1.1 request with
//! `Connection: close`, reads the whole response and closes the connection. A request that
//! started before the deadline runs to its end. This matches a fleet in which every check comes
//! from a new process, which has no TLS session to resume. oha 1.16.0 keeps one rustls session
//! cache per run, so its new connections mostly resume a session: with `--disable-keepalive`,
//! nginx logged 99.8% of them as resumed in bench/run.
//!
//! The result is one JSON object on standard output. Only loopback addresses are accepted as the
//! target, because this tool exists for bench/run, which measures servers on the same machine.
//!
//! ```text
//! cargo build --release --example handshake_load
//! target/release/examples/handshake_load --url https://127.0.0.1:8443 \
//!     --ca ca.crt --cert client.crt --key client.key \
//!     --connections 32 --duration 10 --method post --body-file check.json
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use rustls::client::Resumption;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, HandshakeKind, ProtocolVersion, RootCertStore};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// Maximum time for one request, from the TCP connect to the end of the response.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Maximum size of the response headers that a worker reads before it gives up.
const MAX_HEADER_BYTES: usize = 64 * 1024;

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Method {
    Get,
    Post,
}

/// Opens a new TCP connection and makes a full mutual-TLS handshake for every request.
#[derive(Debug, Parser)]
struct Options {
    /// Server base URL, https://HOST:PORT (no path: use --path). Replaces --host and --port.
    #[arg(long, conflicts_with_all = ["host", "port"])]
    url: Option<String>,
    /// Server host name or IP address. It must resolve to a loopback address.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Server TCP port.
    #[arg(long, default_value_t = 443)]
    port: u16,
    /// PEM file of the CA certificates that verify the server.
    #[arg(long)]
    ca: PathBuf,
    /// PEM file of the client certificate chain.
    #[arg(long)]
    cert: PathBuf,
    /// PEM file of the client private key.
    #[arg(long)]
    key: PathBuf,
    /// Name that the server certificate must match (SNI). Defaults to the host.
    #[arg(long)]
    server_name: Option<String>,
    /// Number of concurrent workers, each with one connection at a time.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Seconds during which workers start new requests.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// HTTP method: get sends `GET --path`, post sends --body-file as JSON.
    #[arg(long, value_enum, default_value = "get")]
    method: Method,
    /// File whose contents are the request body (application/json) of a post.
    #[arg(long, required_if_eq("method", "post"))]
    body_file: Option<PathBuf>,
    /// Request path. Defaults to /api/check for a post and is required for a get.
    #[arg(long)]
    path: Option<String>,
}

/// Measurements of one worker, merged into the totals at the end.
#[derive(Debug, Default)]
struct Tally {
    requests: u64,
    successes: u64,
    other_statuses: BTreeMap<u16, u64>,
    errors: BTreeMap<String, u64>,
    /// Microseconds from the TCP connect to the end of the response, for every response.
    latencies_us: Vec<u64>,
    tls_versions: BTreeMap<String, u64>,
    handshake_kinds: BTreeMap<String, u64>,
}

impl Tally {
    fn merge(&mut self, other: Tally) {
        self.requests += other.requests;
        self.successes += other.successes;
        self.latencies_us.extend(other.latencies_us);
        for (counts, other_counts) in [
            (&mut self.errors, other.errors),
            (&mut self.tls_versions, other.tls_versions),
            (&mut self.handshake_kinds, other.handshake_kinds),
        ] {
            for (key, count) in other_counts {
                *counts.entry(key).or_default() += count;
            }
        }
        for (status, count) in other.other_statuses {
            *self.other_statuses.entry(status).or_default() += count;
        }
    }
}

/// Shared state of all workers: the TLS connector, the address and the encoded request.
struct Target {
    connector: TlsConnector,
    address: SocketAddr,
    server_name: ServerName<'static>,
    request: Vec<u8>,
}

/// One completed exchange.
struct Response {
    status: u16,
    tls_version: Option<ProtocolVersion>,
    handshake_kind: Option<HandshakeKind>,
}

/// Failure of one request, with the step that failed and the error message.
struct RequestError {
    step: &'static str,
    message: String,
}

impl RequestError {
    fn new(step: &'static str, error: impl std::fmt::Display) -> Self {
        Self {
            step,
            message: error.to_string(),
        }
    }
}

#[tokio::main]
async fn main() {
    let options = Options::parse();
    let target = match build_target(&options).await {
        Ok(target) => Arc::new(target),
        Err(message) => {
            eprintln!("handshake_load: {message}");
            std::process::exit(2);
        }
    };

    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(options.duration);
    let workers: Vec<_> = (0..options.connections)
        .map(|_| tokio::spawn(run_worker(target.clone(), deadline)))
        .collect();
    let mut total = Tally::default();
    for worker in workers {
        total.merge(worker.await.expect("a worker task panicked"));
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!("{}", summarize(total, &options, elapsed));
}

/// Checks the options, reads the PEM files and resolves the address into a [`Target`].
async fn build_target(options: &Options) -> Result<Target, String> {
    if options.connections == 0 {
        return Err("--connections must be at least 1".into());
    }
    if !(options.duration.is_finite() && options.duration > 0.0) {
        return Err(format!(
            "invalid --duration {}: expected a positive number of seconds",
            options.duration
        ));
    }
    let (host, port) = match &options.url {
        Some(url) => parse_url(url)?,
        None => (options.host.clone(), options.port),
    };
    let address = tokio::net::lookup_host((host.as_str(), port))
        .await
        .map_err(|error| format!("cannot resolve {host}:{port}: {error}"))?
        .next()
        .ok_or_else(|| format!("{host}:{port} resolved to no address"))?;
    if !address.ip().is_loopback() {
        return Err(format!(
            "{host} resolved to {}, which is not a loopback address; this tool loads only \
             servers on this machine",
            address.ip()
        ));
    }
    let name = options.server_name.clone().unwrap_or(host);
    let server_name = ServerName::try_from(name.clone())
        .map_err(|error| format!("invalid --server-name {name:?}: {error}"))?;

    let mut request = match (options.method, &options.path) {
        (Method::Get, None) => return Err("--path is required with --method get".into()),
        (Method::Get, Some(path)) => format!("GET {path} HTTP/1.1\r\n").into_bytes(),
        (Method::Post, path) => {
            let path = path.as_deref().unwrap_or("/api/check");
            format!("POST {path} HTTP/1.1\r\n").into_bytes()
        }
    };
    request.extend(format!("Host: {name}\r\nConnection: close\r\n").into_bytes());
    if let Some(body_file) = &options.body_file {
        let body = std::fs::read(body_file)
            .map_err(|error| format!("cannot read {}: {error}", body_file.display()))?;
        let length = body.len();
        request.extend(
            format!("Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n")
                .into_bytes(),
        );
        request.extend(body);
    } else {
        request.extend(b"\r\n");
    }

    Ok(Target {
        connector: TlsConnector::from(Arc::new(client_config(options)?)),
        address,
        server_name,
        request,
    })
}

/// Splits `https://HOST:PORT` into the host and the port.
fn parse_url(url: &str) -> Result<(String, u16), String> {
    let invalid = || format!("invalid --url {url:?}: expected https://HOST:PORT");
    let authority = url.strip_prefix("https://").ok_or_else(invalid)?;
    let authority = authority.strip_suffix('/').unwrap_or(authority);
    if authority.contains('/') {
        return Err(format!(
            "--url {url:?} has a path; give the path with --path"
        ));
    }
    let (host, port) = authority.rsplit_once(':').ok_or_else(invalid)?;
    let port = port.parse().map_err(|_| invalid())?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Ok((host.to_owned(), port))
}

/// Builds a client configuration with the ring provider, TLS 1.3 and 1.2, the client
/// certificate, and no session resumption.
fn client_config(options: &Options) -> Result<ClientConfig, String> {
    let mut roots = RootCertStore::empty();
    for certificate in read_certificates(&options.ca)? {
        roots.add(certificate).map_err(|error| {
            format!(
                "invalid CA certificate in {}: {error}",
                options.ca.display()
            )
        })?;
    }
    let chain = read_certificates(&options.cert)?;
    let key = PrivateKeyDer::from_pem_file(&options.key).map_err(|error| {
        format!(
            "cannot read a private key from {}: {error}",
            options.key.display()
        )
    })?;

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|error| format!("invalid TLS versions: {error}"))?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|error| format!("invalid client certificate or key: {error}"))?;
    config.resumption = Resumption::disabled();
    Ok(config)
}

fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certificates = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|error| format!("cannot read certificates from {}: {error}", path.display()))?;
    if certificates.is_empty() {
        return Err(format!("no certificate found in {}", path.display()));
    }
    Ok(certificates)
}

/// Sends requests one after another, each on a new connection, until `deadline`.
async fn run_worker(target: Arc<Target>, deadline: Instant) -> Tally {
    let mut tally = Tally::default();
    while Instant::now() < deadline {
        let started = Instant::now();
        tally.requests += 1;
        let outcome = tokio::time::timeout(REQUEST_TIMEOUT, send_request(&target)).await;
        let response = match outcome {
            Ok(Ok(response)) => response,
            Ok(Err(error)) => {
                let kind = format!("{}: {}", error.step, error.message);
                *tally.errors.entry(kind).or_default() += 1;
                continue;
            }
            Err(_) => {
                *tally.errors.entry("timed out".into()).or_default() += 1;
                continue;
            }
        };
        tally
            .latencies_us
            .push(started.elapsed().as_micros() as u64);
        if (200..300).contains(&response.status) {
            tally.successes += 1;
        } else {
            *tally.other_statuses.entry(response.status).or_default() += 1;
        }
        let version = match response.tls_version {
            Some(ProtocolVersion::TLSv1_3) => "TLSv1.3".to_owned(),
            Some(ProtocolVersion::TLSv1_2) => "TLSv1.2".to_owned(),
            other => format!("{other:?}"),
        };
        *tally.tls_versions.entry(version).or_default() += 1;
        let kind = match response.handshake_kind {
            Some(HandshakeKind::Full) => "full",
            Some(HandshakeKind::FullWithHelloRetryRequest) => "full with HelloRetryRequest",
            Some(HandshakeKind::Resumed) => "resumed",
            None => "unknown",
        };
        *tally.handshake_kinds.entry(kind.to_owned()).or_default() += 1;
    }
    tally
}

/// Connects, makes the handshake, sends the request and reads the whole response.
async fn send_request(target: &Target) -> Result<Response, RequestError> {
    let tcp = TcpStream::connect(target.address)
        .await
        .map_err(|error| RequestError::new("connect", error))?;
    tcp.set_nodelay(true)
        .map_err(|error| RequestError::new("connect", error))?;
    let mut tls = target
        .connector
        .connect(target.server_name.clone(), tcp)
        .await
        .map_err(|error| RequestError::new("TLS handshake", error))?;
    let (_, connection) = tls.get_ref();
    let tls_version = connection.protocol_version();
    let handshake_kind = connection.handshake_kind();

    tls.write_all(&target.request)
        .await
        .map_err(|error| RequestError::new("write", error))?;
    let status = read_response(&mut tls).await?;
    // The server may already have closed its side, so a failed close_notify is no error.
    let _ = tls.shutdown().await;
    Ok(Response {
        status,
        tls_version,
        handshake_kind,
    })
}

/// Reads one HTTP/1.1 response and returns its status code.
///
/// The body is read to its Content-Length, or to the end of the connection when the response
/// has none (the request asked for `Connection: close`). An end without TLS close_notify is
/// accepted only in that second case.
async fn read_response<S: AsyncReadExt + Unpin>(stream: &mut S) -> Result<u16, RequestError> {
    let mut buffer = Vec::with_capacity(4096);
    let header_end = loop {
        if let Some(position) = buffer.windows(4).position(|window| window == b"\r\n\r\n") {
            break position + 4;
        }
        if buffer.len() > MAX_HEADER_BYTES {
            return Err(RequestError::new(
                "read",
                "response headers longer than 64 KiB",
            ));
        }
        let read = stream
            .read_buf(&mut buffer)
            .await
            .map_err(|error| RequestError::new("read", error))?;
        if read == 0 {
            return Err(RequestError::new(
                "read",
                "connection closed before the headers ended",
            ));
        }
    };

    let head = String::from_utf8_lossy(&buffer[..header_end]);
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| {
            line.strip_prefix("HTTP/1.1 ")
                .or(line.strip_prefix("HTTP/1.0 "))
        })
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or_else(|| RequestError::new("read", "invalid HTTP status line"))?;
    let content_length = lines.find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.eq_ignore_ascii_case("content-length")
            .then(|| value.trim().parse::<usize>().ok())
            .flatten()
    });

    let mut body_read = buffer.len() - header_end;
    match content_length {
        Some(length) => {
            while body_read < length {
                buffer.clear();
                let read = stream
                    .read_buf(&mut buffer)
                    .await
                    .map_err(|error| RequestError::new("read", error))?;
                if read == 0 {
                    return Err(RequestError::new(
                        "read",
                        "connection closed inside the body",
                    ));
                }
                body_read += read;
            }
        }
        None => {
            let mut rest = Vec::new();
            match stream.read_to_end(&mut rest).await {
                Ok(_) => {}
                Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => {}
                Err(error) => return Err(RequestError::new("read", error)),
            }
        }
    }
    Ok(status)
}

/// Formats the totals as one JSON object.
fn summarize(mut total: Tally, options: &Options, elapsed_secs: f64) -> serde_json::Value {
    total.latencies_us.sort_unstable();
    let percentile_ms = |fraction: f64| -> Option<f64> {
        let count = total.latencies_us.len();
        if count == 0 {
            return None;
        }
        // Nearest-rank percentile over every response's latency.
        let rank = ((fraction * count as f64).ceil() as usize).clamp(1, count);
        Some(total.latencies_us[rank - 1] as f64 / 1000.0)
    };
    serde_json::json!({
        "connections": options.connections,
        "duration_s": elapsed_secs,
        "requests": total.requests,
        "successes": total.successes,
        "other_statuses": total.other_statuses,
        "errors": total.errors.values().sum::<u64>(),
        "error_kinds": total.errors,
        "requests_per_second": total.requests as f64 / elapsed_secs,
        "successes_per_second": total.successes as f64 / elapsed_secs,
        "p50_ms": percentile_ms(0.50),
        "p99_ms": percentile_ms(0.99),
        "tls_versions": total.tls_versions,
        "handshake_kinds": total.handshake_kinds,
    })
}
