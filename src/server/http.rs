//! HTTP handling: `POST /api/check`, `GET /download/<lineage>/<file>`, and the routing
//! of `POST /api/renew-identity` to `renewal`.
//!
//! Every request is checked in full (method, path shape, lineage name, file name, body
//! size) before the store is touched, and every request is logged once with the client's
//! identity and the outcome. Bodies of error responses never contain server paths.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use tracing::{error, info, warn};

use super::Shared;
use super::metrics::Endpoint;
use crate::identity::Identity;
use crate::lineage::LineageName;
use crate::policy::Access;
use crate::protocol::{
    CHECK_PATH, CheckRequest, CheckResponse, DOWNLOAD_PREFIX, RENEW_PATH, SetFile,
};
use crate::store::{Current, Snapshot, StoreError, warn_stale};

pub(super) type HttpResponse = Response<Full<Bytes>>;

/// Details of one request that its log line needs.
pub(super) struct RequestLog<'a> {
    pub(super) client: &'a Identity,
    pub(super) peer: SocketAddr,
    method: &'a Method,
    path: &'a str,
}

impl RequestLog<'_> {
    /// Logs a rejected request and builds its plain-text response.
    pub(super) fn reject(&self, status: StatusCode, reason: &str) -> HttpResponse {
        warn!(
            client = %self.client,
            peer = %self.peer,
            method = %self.method,
            path = %shorten_path(self.path),
            status = status.as_u16(),
            reason = %reason,
            "request rejected"
        );
        text_response(status, reason)
    }
}

/// Routes one request and counts its response for the metrics. Errors become responses,
/// so the connection stays usable.
pub(super) async fn handle(
    request: Request<Incoming>,
    shared: Arc<Shared>,
    client: Arc<Identity>,
    peer_state: Arc<super::Peer>,
    peer: SocketAddr,
    saturated: bool,
    request_number: usize,
) -> Result<HttpResponse, Infallible> {
    let endpoint = Endpoint::from_path(request.uri().path());
    let response = respond(
        request,
        &shared,
        &client,
        &peer_state,
        peer,
        saturated,
        request_number,
    )
    .await;
    shared.metrics.count_request(endpoint, response.status());
    Ok(response)
}

async fn respond(
    request: Request<Incoming>,
    shared: &Arc<Shared>,
    client: &Identity,
    peer_state: &super::Peer,
    peer: SocketAddr,
    saturated: bool,
    request_number: usize,
) -> HttpResponse {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let log = RequestLog {
        client,
        peer,
        method: &method,
        path: &path,
    };
    if saturated {
        return unavailable(&log, shared);
    }
    if let Err(reason) = shared.still_accepted(peer_state) {
        // A reload revoked or distrusted this certificate: the connection ends here.
        warn!(
            client = %client,
            fingerprint = %client.short_fingerprint(),
            serial = %client.serial,
            peer = %peer,
            reason = %reason,
            "connection closed: client certificate no longer accepted after a reload"
        );
        let mut response = text_response(
            StatusCode::FORBIDDEN,
            "client certificate no longer accepted",
        );
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return response;
    }
    if let Err(wait) = shared
        .limits
        .admit_request(&client.fingerprint, std::time::Instant::now())
    {
        return rate_limited(&log, shared, wait);
    }

    let response = if path == CHECK_PATH {
        if method == Method::POST {
            check(request, shared, &log).await
        } else {
            method_not_allowed(&log, "POST")
        }
    } else if path == RENEW_PATH {
        if method == Method::POST {
            super::renewal::renew(request, shared, &log, peer_state).await
        } else {
            method_not_allowed(&log, "POST")
        }
    } else if let Some(rest) = path.strip_prefix(DOWNLOAD_PREFIX) {
        if method == Method::GET || method == Method::HEAD {
            download(&request, rest, shared, &log)
        } else {
            method_not_allowed(&log, "GET, HEAD")
        }
    } else {
        log.reject(StatusCode::NOT_FOUND, "no such endpoint")
    };
    let mut response = response;
    if request_number >= shared.limits.settings.max_requests_per_connection {
        // hyper closes the connection after a response with this header.
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

async fn check(request: Request<Incoming>, shared: &Shared, log: &RequestLog<'_>) -> HttpResponse {
    let body = match read_request_body(request, shared, log).await {
        Ok(body) => body,
        Err(response) => return *response,
    };
    let check: CheckRequest = match serde_json::from_slice(&body) {
        Ok(check) => check,
        Err(error) => {
            return log.reject(
                StatusCode::BAD_REQUEST,
                &format!("invalid JSON body: {error}"),
            );
        }
    };
    let lineage = match LineageName::parse(&check.domain) {
        Ok(lineage) => lineage,
        Err(error) => return log.reject(StatusCode::BAD_REQUEST, &error.to_string()),
    };
    if let Err(reason) = check.hashes.validate() {
        return log.reject(
            StatusCode::BAD_REQUEST,
            &format!("invalid hashes: {reason}"),
        );
    }

    let decision = shared.policy().decide(log.client, &lineage);
    if decision.access == Access::Denied {
        return denied(log, &lineage, &decision.reason);
    }
    let snapshot = match consistent_set(log, &lineage, shared) {
        Ok(snapshot) => snapshot,
        Err(response) => return *response,
    };
    let mut announced = snapshot.hashes.clone();
    if decision.access == Access::CertificatesOnly {
        // The key's hash would show which lineages share a key and confirm a guessed one.
        // Echoing the client's own value keeps it out of the comparison.
        announced.privkey_hash = check.hashes.privkey_hash.clone();
    }
    let answer = CheckResponse::compare(&check.hashes, &announced);
    info!(
        client = %log.client,
        fingerprint = %log.client.short_fingerprint(),
        peer = %log.peer,
        lineage = %lineage,
        outcome = if answer.update_required { "update-required" } else { "up-to-date" },
        "check"
    );
    let body = serde_json::to_vec(&answer).unwrap_or_default();
    let mut response = Response::new(Full::new(Bytes::from(body)));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// Reads a request body within the size limit and the body timeout, or builds the
/// response that rejects it.
pub(super) async fn read_request_body(
    request: Request<Incoming>,
    shared: &Shared,
    log: &RequestLog<'_>,
) -> Result<Bytes, Box<HttpResponse>> {
    let limit = shared.max_body_bytes;
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > DRAIN_MAX_BYTES as u64) {
        return Err(Box::new(log.reject(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("request body is larger than {limit} bytes"),
        )));
    }
    // A client trickling its body byte by byte would otherwise hold the connection for as
    // long as each byte comes before the idle timeout.
    let reading = tokio::time::timeout(shared.body_timeout, read_body(request.into_body(), limit));
    let Ok(read) = reading.await else {
        let mut response = log.reject(
            StatusCode::REQUEST_TIMEOUT,
            &format!(
                "the request body took longer than {} s",
                shared.body_timeout.as_secs()
            ),
        );
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return Err(Box::new(response));
    };
    match read {
        Ok(body) => Ok(body),
        Err(BodyError::TooLarge) => Err(Box::new(log.reject(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("request body is larger than {limit} bytes"),
        ))),
        Err(BodyError::Read(error)) => Err(Box::new(log.reject(
            StatusCode::BAD_REQUEST,
            &format!("reading the body failed: {error}"),
        ))),
    }
}

/// Most bytes of an oversized body that are read and discarded before the 413 is sent.
const DRAIN_MAX_BYTES: usize = 256 * 1024;

/// How long an oversized body is drained before the 413 is sent.
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(2);

enum BodyError {
    TooLarge,
    Read(hyper::Error),
}

/// Reads a body of at most `limit` bytes.
///
/// An oversized body is drained up to a bound before the response is sent, because
/// closing a connection with unread data resets it, and the client would never see the 413.
async fn read_body(mut body: Incoming, limit: usize) -> Result<Bytes, BodyError> {
    let mut collected = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(BodyError::Read)?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if collected.len() + data.len() > limit {
            let mut drained = collected.len() + data.len();
            let _ = tokio::time::timeout(DRAIN_TIME, async {
                while drained < DRAIN_MAX_BYTES {
                    match body.frame().await {
                        Some(Ok(frame)) => {
                            drained += frame.data_ref().map_or(0, |data| data.len());
                        }
                        _ => break,
                    }
                }
            })
            .await;
            return Err(BodyError::TooLarge);
        }
        collected.extend_from_slice(&data);
    }
    Ok(Bytes::from(collected))
}

fn download(
    request: &Request<Incoming>,
    rest: &str,
    shared: &Shared,
    log: &RequestLog<'_>,
) -> HttpResponse {
    let mut segments = rest.split('/');
    let (Some(name), Some(file_name), None) = (segments.next(), segments.next(), segments.next())
    else {
        return log.reject(
            StatusCode::BAD_REQUEST,
            "expected /download/<lineage>/<file> with exactly two segments",
        );
    };
    let lineage = match LineageName::parse(name) {
        Ok(lineage) => lineage,
        Err(error) => return log.reject(StatusCode::BAD_REQUEST, &error.to_string()),
    };
    let Some(file) = SetFile::from_file_name(file_name) else {
        return log.reject(
            StatusCode::BAD_REQUEST,
            "unknown file name; expected fullchain.pem, privkey.pem, chain.pem or cert.pem",
        );
    };

    let decision = shared.policy().decide(log.client, &lineage);
    let allowed = match decision.access {
        Access::Full => true,
        Access::CertificatesOnly => !file.is_private_key(),
        Access::Denied => false,
    };
    if !allowed {
        let reason = match decision.access {
            Access::CertificatesOnly => format!("{} allows certificates only", decision.reason),
            _ => decision.reason,
        };
        return denied(log, &lineage, &reason);
    }
    let snapshot = match consistent_set(log, &lineage, shared) {
        Ok(snapshot) => snapshot,
        Err(response) => return *response,
    };
    let Some(stored) = snapshot.file(file) else {
        return log.reject(StatusCode::NOT_FOUND, "file not found for this lineage");
    };
    let response = file_response(request, stored.bytes.clone(), stored.modified);
    info!(
        client = %log.client,
        fingerprint = %log.client.short_fingerprint(),
        serial = %log.client.serial,
        peer = %log.peer,
        lineage = %lineage,
        file = file.file_name(),
        status = response.status().as_u16(),
        // hyper sends no body for HEAD.
        bytes = if request.method() == Method::HEAD { 0 } else { response.body().size_hint().exact().unwrap_or(0) },
        "download"
    );
    response
}

/// Builds a static-file response: conditional GET and a single byte range, as the deployed
/// server (Go's file server) offers them.
fn file_response(
    request: &Request<Incoming>,
    bytes: Vec<u8>,
    modified: SystemTime,
) -> HttpResponse {
    let last_modified = httpdate::fmt_http_date(modified);
    let unchanged = request
        .headers()
        .get(header::IF_MODIFIED_SINCE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| httpdate::parse_http_date(value).ok())
        .is_some_and(|since| truncate_to_seconds(modified) <= since);
    let mut response = if unchanged {
        let mut response = Response::new(Full::new(Bytes::new()));
        *response.status_mut() = StatusCode::NOT_MODIFIED;
        response
    } else {
        range_response(request, bytes)
    };
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&last_modified) {
        headers.insert(header::LAST_MODIFIED, value);
    }
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn range_response(request: &Request<Incoming>, bytes: Vec<u8>) -> HttpResponse {
    let total = bytes.len();
    let range = request
        .headers()
        .get(header::RANGE)
        .and_then(|value| value.to_str().ok());
    let mut response = match range.map(|value| parse_range(value, total)) {
        None | Some(RangeRequest::Ignore) => Response::new(Full::new(Bytes::from(bytes))),
        Some(RangeRequest::Satisfiable(start, end)) => {
            let mut response = Response::new(Full::new(Bytes::from(bytes).slice(start..=end)));
            *response.status_mut() = StatusCode::PARTIAL_CONTENT;
            if let Ok(value) = HeaderValue::from_str(&format!("bytes {start}-{end}/{total}")) {
                response.headers_mut().insert(header::CONTENT_RANGE, value);
            }
            response
        }
        Some(RangeRequest::Unsatisfiable) => {
            let mut response = Response::new(Full::new(Bytes::new()));
            *response.status_mut() = StatusCode::RANGE_NOT_SATISFIABLE;
            if let Ok(value) = HeaderValue::from_str(&format!("bytes */{total}")) {
                response.headers_mut().insert(header::CONTENT_RANGE, value);
            }
            response
        }
    };
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-pem-file"),
    );
    response
}

/// A parsed `Range` header.
#[derive(Debug, PartialEq, Eq)]
enum RangeRequest {
    /// Inclusive byte positions.
    Satisfiable(usize, usize),
    Unsatisfiable,
    /// Malformed or multiple ranges: RFC 9110 allows sending the whole file.
    Ignore,
}

fn parse_range(value: &str, total: usize) -> RangeRequest {
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return RangeRequest::Ignore;
    };
    if spec.contains(',') {
        return RangeRequest::Ignore;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeRequest::Ignore;
    };
    let (first, last) = (first.trim(), last.trim());
    let range = if first.is_empty() {
        // A suffix range: the last N bytes.
        match last.parse::<usize>() {
            Ok(0) => return RangeRequest::Unsatisfiable,
            Ok(suffix) => (total.saturating_sub(suffix), total.wrapping_sub(1)),
            Err(_) => return RangeRequest::Ignore,
        }
    } else {
        let Ok(start) = first.parse::<usize>() else {
            return RangeRequest::Ignore;
        };
        let end = if last.is_empty() {
            total.wrapping_sub(1)
        } else {
            match last.parse::<usize>() {
                Ok(end) if end >= start => end.min(total.wrapping_sub(1)),
                _ => return RangeRequest::Ignore,
            }
        };
        (start, end)
    };
    if total == 0 || range.0 >= total {
        return RangeRequest::Unsatisfiable;
    }
    RangeRequest::Satisfiable(range.0, range.1)
}

fn truncate_to_seconds(time: SystemTime) -> SystemTime {
    let seconds = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(seconds)
}

/// Returns the lineage's consistent set, or the response to send when there is none.
fn consistent_set(
    log: &RequestLog<'_>,
    lineage: &LineageName,
    shared: &Shared,
) -> Result<std::sync::Arc<Snapshot>, Box<HttpResponse>> {
    match shared.snapshots.current(&shared.store, lineage) {
        Ok(Current::Fresh(snapshot)) => Ok(snapshot),
        Ok(Current::Stale(snapshot, reason)) => {
            warn_stale(lineage, &reason);
            Ok(snapshot)
        }
        Ok(Current::Unavailable(reason)) => {
            warn!(
                client = %log.client,
                peer = %log.peer,
                lineage = %lineage,
                status = 503,
                reason = %reason,
                "lineage inconsistent on disk and no consistent set seen yet"
            );
            let mut response = text_response(
                StatusCode::SERVICE_UNAVAILABLE,
                "this lineage is being renewed; retry after the delay in Retry-After",
            );
            let seconds = shared.retry_after.as_secs().max(1).to_string();
            if let Ok(value) = HeaderValue::from_str(&seconds) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
            Err(Box::new(response))
        }
        Err(failure) => Err(Box::new(store_failure(log, lineage, &failure))),
    }
}

/// Rejects a request the policy does not allow, exactly as an unknown lineage is rejected,
/// so a client cannot learn which lineages exist. The log line records the difference.
fn denied(log: &RequestLog<'_>, lineage: &LineageName, reason: &str) -> HttpResponse {
    warn!(
        client = %log.client,
        fingerprint = %log.client.short_fingerprint(),
        peer = %log.peer,
        lineage = %lineage,
        path = %shorten_path(log.path),
        status = 404,
        reason = %reason,
        "access denied"
    );
    text_response(StatusCode::NOT_FOUND, LINEAGE_NOT_FOUND)
}

/// Body of a 404 for an unknown or a denied lineage; both must look the same.
const LINEAGE_NOT_FOUND: &str = "lineage not found";

/// Maps a store failure to a response: unknown lineages are 404, broken ones 500.
fn store_failure(
    log: &RequestLog<'_>,
    lineage: &LineageName,
    failure: &StoreError,
) -> HttpResponse {
    match failure {
        StoreError::LineageNotFound { .. } => {
            warn!(
                client = %log.client,
                peer = %log.peer,
                lineage = %lineage,
                status = 404,
                "lineage not found"
            );
            text_response(StatusCode::NOT_FOUND, LINEAGE_NOT_FOUND)
        }
        StoreError::FileMissing { .. } => {
            error!(client = %log.client, peer = %log.peer, lineage = %lineage, error = %failure, "store file missing");
            text_response(StatusCode::NOT_FOUND, "file not found for this lineage")
        }
        _ => {
            error!(client = %log.client, peer = %log.peer, lineage = %lineage, error = %failure, "store file unusable");
            text_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "this lineage is broken on the server; its log names the file",
            )
        }
    }
}

/// Builds the 503 response sent while the server has more connections than it serves.
/// Its log line is rate-limited, because an overload produces thousands of them.
fn unavailable(log: &RequestLog<'_>, shared: &Shared) -> HttpResponse {
    if let Some(suppressed) = shared.overload_log.admit() {
        warn!(
            client = %log.client,
            peer = %log.peer,
            status = 503,
            similar_lines_suppressed = suppressed,
            "request rejected: server saturated"
        );
    }
    let mut response = text_response(
        StatusCode::SERVICE_UNAVAILABLE,
        "server saturated; retry after the delay in Retry-After",
    );
    let headers = response.headers_mut();
    let seconds = shared.retry_after.as_secs().max(1).to_string();
    if let Ok(value) = HeaderValue::from_str(&seconds) {
        headers.insert(header::RETRY_AFTER, value);
    }
    headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// Builds the 429 response for a client over its request rate; its log line is limited.
fn rate_limited(log: &RequestLog<'_>, shared: &Shared, wait: std::time::Duration) -> HttpResponse {
    if let Some(suppressed) = shared.overload_log.admit() {
        warn!(
            client = %log.client,
            peer = %log.peer,
            status = 429,
            retry_after_secs = wait.as_secs(),
            similar_lines_suppressed = suppressed,
            "request rejected: client over its request rate"
        );
    }
    let mut response = text_response(
        StatusCode::TOO_MANY_REQUESTS,
        "too many requests from this client; retry after the delay in Retry-After",
    );
    if let Ok(value) = HeaderValue::from_str(&wait.as_secs().max(1).to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

fn method_not_allowed(log: &RequestLog<'_>, allowed: &'static str) -> HttpResponse {
    let mut response = log.reject(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allowed));
    response
}

pub(super) fn text_response(status: StatusCode, text: &str) -> HttpResponse {
    let mut response = Response::new(Full::new(Bytes::from(format!("{text}\n"))));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// Cuts a request path for the log; the logging layer escapes what is left.
fn shorten_path(path: &str) -> &str {
    let mut end = path.len().min(200);
    while !path.is_char_boundary(end) {
        end -= 1;
    }
    &path[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_forms_parse() {
        assert_eq!(
            parse_range("bytes=0-9", 100),
            RangeRequest::Satisfiable(0, 9)
        );
        assert_eq!(
            parse_range("bytes=90-", 100),
            RangeRequest::Satisfiable(90, 99)
        );
        assert_eq!(
            parse_range("bytes=-10", 100),
            RangeRequest::Satisfiable(90, 99)
        );
        assert_eq!(
            parse_range("bytes=95-200", 100),
            RangeRequest::Satisfiable(95, 99)
        );
        assert_eq!(
            parse_range("bytes=-500", 100),
            RangeRequest::Satisfiable(0, 99)
        );
    }

    #[test]
    fn range_out_of_bounds_is_unsatisfiable() {
        assert_eq!(parse_range("bytes=100-", 100), RangeRequest::Unsatisfiable);
        assert_eq!(parse_range("bytes=-0", 100), RangeRequest::Unsatisfiable);
    }

    #[test]
    fn odd_ranges_are_ignored() {
        assert_eq!(parse_range("bytes=0-1,5-6", 100), RangeRequest::Ignore);
        assert_eq!(parse_range("items=0-1", 100), RangeRequest::Ignore);
        assert_eq!(parse_range("bytes=9-1", 100), RangeRequest::Ignore);
        assert_eq!(parse_range("bytes=x-1", 100), RangeRequest::Ignore);
    }
}
