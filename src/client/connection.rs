//! One mutual-TLS HTTP/1.1 connection to the server, shared by every request of a run.
//!
//! The connection is opened lazily and reopened once if the server closed it between
//! requests (for example after its idle timeout). What to request is left to `client`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{self, HeaderValue};
use hyper::{Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tracing::debug;

use super::{SyncError, pipeline};
use crate::protocol::CHECK_PATH;
use crate::tls;

/// Port of the server when the URL names none, the deployed pair's port.
const DEFAULT_PORT: u16 = 8443;

/// Largest response body read, in bytes; PEM files of a lineage are a few kilobytes.
const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// A parsed `https://host[:port][/prefix]` server URL.
#[derive(Debug, Clone)]
pub struct ServerUrl {
    /// Host name or IP address, without brackets.
    pub host: String,
    pub port: u16,
    /// `host:port` as sent in the Host header.
    authority: String,
    /// Path prefix without a trailing slash, empty for the root.
    prefix: String,
}

impl ServerUrl {
    /// Parses the URL; only https is accepted because the protocol is mutual TLS.
    pub fn parse(url: &str) -> Result<ServerUrl, String> {
        let uri: Uri = url
            .parse()
            .map_err(|error| format!("invalid server URL {url:?}: {error}"))?;
        if uri.scheme_str() != Some("https") {
            return Err(format!(
                "invalid server URL {url:?}: the scheme must be https, for example \
                 https://certs.example.net:8443"
            ));
        }
        let authority = uri
            .authority()
            .ok_or_else(|| format!("invalid server URL {url:?}: no host"))?;
        if authority.as_str().contains('@') {
            return Err(format!(
                "invalid server URL {url:?}: user information is not supported"
            ));
        }
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        // `port_u16` is None both for a missing and for an invalid port, so read it raw.
        let raw_port = authority
            .as_str()
            .rsplit_once(':')
            .map(|(_, port)| port)
            .filter(|port| !port.contains(']'));
        let port = match raw_port {
            None => DEFAULT_PORT,
            Some(text) => match text.parse::<u16>() {
                Ok(port) if port != 0 => port,
                _ => {
                    return Err(format!(
                        "invalid server URL {url:?}: port {text:?} is not a number from 1 to 65535"
                    ));
                }
            },
        };
        if uri.query().is_some() {
            return Err(format!(
                "invalid server URL {url:?}: a query string is not supported"
            ));
        }
        let prefix = uri.path().trim_end_matches('/').to_owned();
        let authority = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        Ok(ServerUrl {
            host,
            port,
            authority,
            prefix,
        })
    }

    /// Returns the name the server certificate must be valid for.
    fn server_name(&self) -> Result<ServerName<'static>, String> {
        if let Ok(ip) = self.host.parse::<IpAddr>() {
            return Ok(ServerName::IpAddress(ip.into()));
        }
        ServerName::try_from(self.host.clone())
            .map_err(|_| format!("invalid server host name {:?}", self.host))
    }
}

impl std::fmt::Display for ServerUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "https://{}{}", self.authority, self.prefix)
    }
}

/// A response: status and body.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub body: Bytes,
    /// The Retry-After header, in seconds or as an HTTP date.
    pub retry_after: Option<Duration>,
}

pub(super) fn retry_after(headers: &hyper::HeaderMap) -> Option<Duration> {
    let value = headers.get(header::RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let date = httpdate::parse_http_date(value).ok()?;
    Some(
        date.duration_since(std::time::SystemTime::now())
            .unwrap_or_default(),
    )
}

/// The run's connection to the server.
#[derive(Debug)]
pub struct Connection {
    url: ServerUrl,
    config: Arc<ClientConfig>,
    connect_timeout: Duration,
    request_timeout: Duration,
    sender: Option<SendRequest<Full<Bytes>>>,
    /// The task driving the connection; its error explains a request that failed because
    /// the connection died, such as a TLS alert against our certificate.
    driver: Option<JoinHandle<Result<(), hyper::Error>>>,
    /// Responses to pipelined checks, by request body, not yet taken by `post_json`.
    prefetched: HashMap<Vec<u8>, Reply>,
}

impl Connection {
    pub fn new(
        url: ServerUrl,
        config: Arc<ClientConfig>,
        connect_timeout: Duration,
        request_timeout: Duration,
    ) -> Connection {
        Connection {
            url,
            config,
            connect_timeout,
            request_timeout,
            sender: None,
            driver: None,
            prefetched: HashMap::new(),
        }
    }

    pub fn url(&self) -> &ServerUrl {
        &self.url
    }

    /// Opens the TCP connection and runs the TLS handshake.
    async fn connect(&self) -> Result<TlsStream<TcpStream>, SyncError> {
        let server = self.url.to_string();
        let name = self.url.server_name().map_err(SyncError::Config)?;
        let connect = async {
            let tcp = TcpStream::connect((self.url.host.as_str(), self.url.port))
                .await
                .map_err(|error| SyncError::Unreachable {
                    server: server.clone(),
                    reason: format!("connecting failed: {error}"),
                })?;
            let _ = tcp.set_nodelay(true);
            TlsConnector::from(self.config.clone())
                .connect(name, tcp)
                .await
                .map_err(|error| tls_failure(&server, &error))
        };
        tokio::time::timeout(self.connect_timeout, connect)
            .await
            .map_err(|_| SyncError::Unreachable {
                server: server.clone(),
                reason: format!(
                    "connecting and the TLS handshake timed out after {} s",
                    self.connect_timeout.as_secs()
                ),
            })?
    }

    /// Starts HTTP/1.1 on an established stream.
    async fn start_http(
        &mut self,
        tls_stream: TlsStream<TcpStream>,
    ) -> Result<SendRequest<Full<Bytes>>, SyncError> {
        let (sender, connection) =
            http1::handshake(TokioIo::new(tls_stream))
                .await
                .map_err(|error| SyncError::Unreachable {
                    server: self.url.to_string(),
                    reason: error.to_string(),
                })?;
        self.driver = Some(tokio::spawn(connection));
        debug!(server = %self.url, "connected");
        Ok(sender)
    }

    /// Opens the TCP connection, runs the TLS handshake and starts HTTP/1.1.
    async fn open(&mut self) -> Result<SendRequest<Full<Bytes>>, SyncError> {
        let tls_stream = self.connect().await?;
        self.start_http(tls_stream).await
    }

    /// Opens the connection and sends every check body at once (see `pipeline`). The
    /// responses are kept for `post_json`, which sends again any check left without one.
    /// Failures here are not errors: the checks are then simply sent one by one.
    pub async fn pipeline_checks(&mut self, bodies: &[&[u8]]) {
        if self.sender.is_some() || bodies.len() < 2 {
            return;
        }
        let Ok(mut tls_stream) = self.connect().await else {
            // The first request reconnects and reports the failure with its context.
            return;
        };
        let head = format!(
            "POST {}{CHECK_PATH} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n",
            self.url.prefix, self.url.authority
        );
        let exchange = pipeline::send_checks(&mut tls_stream, &head, bodies, MAX_RESPONSE_BYTES);
        let Ok((answers, stop)) = tokio::time::timeout(self.request_timeout, exchange).await else {
            debug!(server = %self.url, "pipelined checks timed out; sending them one by one");
            return;
        };
        match &stop {
            Some(pipeline::Stop::Failed(reason)) => debug!(
                server = %self.url,
                sent = bodies.len(),
                answered = answers.len(),
                reason = %reason,
                "pipelined checks stopped early; the rest are sent one by one"
            ),
            Some(pipeline::Stop::Closed) => debug!(
                server = %self.url,
                sent = bodies.len(),
                answered = answers.len(),
                "the server closed the connection during pipelined checks"
            ),
            None => {
                debug!(server = %self.url, sent = bodies.len(), "pipelined checks all got responses")
            }
        }
        self.prefetched = answers;
        if stop.is_none()
            && let Ok(sender) = self.start_http(tls_stream).await
        {
            self.sender = Some(sender);
        }
    }

    /// Sends a request on the shared connection, reconnecting once if it was closed.
    async fn send(&mut self, build: impl Fn() -> Request<Full<Bytes>>) -> Result<Reply, SyncError> {
        let server = self.url.to_string();
        let mut sender = match self.sender.take() {
            Some(mut sender) => match sender.ready().await {
                Ok(()) => sender,
                Err(_) => self.open().await?,
            },
            None => self.open().await?,
        };
        let exchange = async {
            let response = sender.send_request(build()).await?;
            let status = response.status();
            let retry_after = retry_after(response.headers());
            let body = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
                .collect()
                .await
                .map_err(|error| std::io::Error::other(error.to_string()))
                .map(|collected| collected.to_bytes());
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>((status, retry_after, body))
        };
        let result = tokio::time::timeout(self.request_timeout, exchange)
            .await
            .map_err(|_| SyncError::Unreachable {
                server: server.clone(),
                reason: format!(
                    "request timed out after {} s",
                    self.request_timeout.as_secs()
                ),
            })?;
        match result {
            Ok((status, retry_after, Ok(body))) => {
                self.sender = Some(sender);
                Ok(Reply {
                    status,
                    body,
                    retry_after,
                })
            }
            Ok((status, _, Err(error))) if error.to_string().contains("length limit") => {
                Err(SyncError::Rejected {
                    reason: format!(
                        "the response ({status}) is larger than the {MAX_RESPONSE_BYTES}-byte \
                         limit; a certificate file is a few kilobytes"
                    ),
                })
            }
            Ok((_, _, Err(error))) => Err(SyncError::Unreachable {
                server,
                reason: format!("reading the response failed, the connection broke: {error}"),
            }),
            Err(error) => {
                // When the connection itself failed, its error carries the cause, while
                // the request's own error only reports that the connection went away.
                if let Some(driver) = self.driver.take()
                    && let Ok(Ok(Err(connection_error))) =
                        tokio::time::timeout(Duration::from_secs(1), driver).await
                {
                    return Err(request_failure(&server, &connection_error));
                }
                Err(request_failure(&server, error.as_ref()))
            }
        }
    }

    /// Sends `POST /api/check` with a JSON body.
    pub async fn post_json(&mut self, path: &str, body: Vec<u8>) -> Result<Reply, SyncError> {
        if path == CHECK_PATH
            && let Some(reply) = self.prefetched.remove(&body)
        {
            return Ok(reply);
        }
        let uri = format!("{}{path}", self.url.prefix);
        let host = self.url.authority.clone();
        let body = Bytes::from(body);
        self.send(|| {
            let mut request = Request::new(Full::new(body.clone()));
            *request.method_mut() = hyper::Method::POST;
            *request.uri_mut() = uri.parse().unwrap_or_default();
            let headers = request.headers_mut();
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            if let Ok(value) = HeaderValue::from_str(&host) {
                headers.insert(header::HOST, value);
            }
            request
        })
        .await
    }

    /// Sends a GET request.
    pub async fn get(&mut self, path: &str) -> Result<Reply, SyncError> {
        let uri = format!("{}{path}", self.url.prefix);
        let host = self.url.authority.clone();
        self.send(|| {
            let mut request = Request::new(Full::new(Bytes::new()));
            *request.uri_mut() = uri.parse().unwrap_or_default();
            if let Ok(value) = HeaderValue::from_str(&host) {
                request.headers_mut().insert(header::HOST, value);
            }
            request
        })
        .await
    }
}

/// Classifies a failed handshake: our certificate rejected, or the server's distrusted.
fn tls_failure(server: &str, error: &std::io::Error) -> SyncError {
    match tls::find_tls_error(error) {
        Some(tls_error @ rustls::Error::AlertReceived(_)) => SyncError::Rejected {
            reason: format!("{server}: {}", tls::describe_client_side(tls_error)),
        },
        // A server certificate that is not trusted stays so: retrying would not help.
        Some(tls_error @ rustls::Error::InvalidCertificate(_)) => SyncError::Untrusted {
            server: server.to_owned(),
            reason: tls::describe_client_side(tls_error),
        },
        Some(tls_error) => SyncError::Unreachable {
            server: server.to_owned(),
            reason: format!(
                "TLS handshake failed: {}",
                tls::describe_client_side(tls_error)
            ),
        },
        None => SyncError::Unreachable {
            server: server.to_owned(),
            reason: format!("TLS handshake failed: {error}"),
        },
    }
}

/// Classifies a failed request. With TLS 1.3 a rejected client certificate shows up here,
/// as an alert on the first read after the handshake.
fn request_failure(server: &str, error: &(dyn std::error::Error + 'static)) -> SyncError {
    match tls::find_tls_error(error) {
        Some(tls_error @ rustls::Error::AlertReceived(_)) => SyncError::Rejected {
            reason: format!("{server}: {}", tls::describe_client_side(tls_error)),
        },
        _ => {
            let mut reason = error.to_string();
            let mut source = error.source();
            while let Some(inner) = source {
                reason.push_str(": ");
                reason.push_str(&inner.to_string());
                source = inner.source();
            }
            SyncError::Unreachable {
                server: server.to_owned(),
                reason: format!("request failed: {reason}"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_with_port_and_prefix() {
        let url = ServerUrl::parse("https://certs.example.net:9443/acme/").unwrap();
        assert_eq!(url.host, "certs.example.net");
        assert_eq!(url.port, 9443);
        assert_eq!(url.to_string(), "https://certs.example.net:9443/acme");
    }

    #[test]
    fn url_defaults_to_port_8443() {
        let url = ServerUrl::parse("https://certs.example.net").unwrap();
        assert_eq!(url.port, 8443);
        assert_eq!(url.to_string(), "https://certs.example.net:8443");
    }

    #[test]
    fn url_with_ipv6_literal() {
        let url = ServerUrl::parse("https://[::1]:8443").unwrap();
        assert_eq!(url.host, "::1");
        assert!(matches!(
            url.server_name().unwrap(),
            ServerName::IpAddress(_)
        ));
        assert_eq!(url.to_string(), "https://[::1]:8443");
    }

    #[test]
    fn invalid_ports_and_queries_are_rejected() {
        for url in [
            "https://localhost:99999",
            "https://localhost:65536",
            "https://localhost:abc",
            "https://localhost:0",
            "https://localhost:8443x",
            "https://[::1]:70000",
            "https://localhost:8443/?x=1",
        ] {
            assert!(ServerUrl::parse(url).is_err(), "{url} should be rejected");
        }
        assert_eq!(ServerUrl::parse("https://localhost:1").unwrap().port, 1);
    }

    #[test]
    fn url_must_be_https() {
        let error = ServerUrl::parse("http://certs.example.net:8443").unwrap_err();
        assert!(error.contains("must be https"), "{error}");
        assert!(ServerUrl::parse("certs.example.net").is_err());
    }
}
