//! `POST /api/renew-identity`: a client whose certificate nears its end sends a signing
//! request for a new key over its mutual-TLS connection, and gets a new certificate for
//! the same identity, signed with the PKI's client intermediate (`crate::ca::renew`).
//!
//! The identity comes from the certificate the handshake verified, never from the
//! request. Requests are rejected when renewal is off, when no access rule names the
//! client, when an access rule names it by fingerprint (a new certificate would lose that
//! access), and beyond `max_per_minute` signatures across all clients.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode};
use tracing::{error, info, warn};

use super::http::{HttpResponse, RequestLog, read_request_body, text_response};
use super::{Peer, Shared};
use crate::ca::{RenewalError, RenewalRequest};
use crate::protocol::{RenewRequest, RenewResponse};

const MINUTE: Duration = Duration::from_secs(60);

/// Counts the renewals signed in the current minute, across all clients, so that a flood
/// of requests cannot keep the server signing. Rejected requests do not count.
#[derive(Debug)]
pub(super) struct RenewalBudget {
    /// Start of the current minute and the renewals taken in it.
    window: Mutex<Option<(Instant, u32)>>,
}

impl RenewalBudget {
    pub(super) fn new() -> RenewalBudget {
        RenewalBudget {
            window: Mutex::new(None),
        }
    }

    /// Takes one renewal of `per_minute`, or returns the time until the next minute.
    fn take(&self, per_minute: u32, now: Instant) -> Result<(), Duration> {
        let mut window = self
            .window
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let (start, taken) = match *window {
            Some((start, taken)) if now.saturating_duration_since(start) < MINUTE => (start, taken),
            _ => (now, 0),
        };
        if taken >= per_minute {
            return Err(MINUTE.saturating_sub(now.saturating_duration_since(start)));
        }
        *window = Some((start, taken + 1));
        Ok(())
    }
}

/// Handles one renewal request.
pub(super) async fn renew(
    request: Request<Incoming>,
    shared: &Shared,
    log: &RequestLog<'_>,
    peer: &Peer,
) -> HttpResponse {
    let settings = shared
        .settings
        .read()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .renewal
        .clone();
    let Some(settings) = settings else {
        return log.reject(
            StatusCode::NOT_FOUND,
            "client certificate renewal is not enabled on this server",
        );
    };
    let policy = shared.policy();
    if !policy.names_client(log.client) {
        return log.reject(
            StatusCode::FORBIDDEN,
            "no access rule names this client; a client without access does not renew",
        );
    }
    let rules = policy.fingerprint_rules(log.client);
    if !rules.is_empty() {
        let numbers: Vec<String> = rules.iter().map(ToString::to_string).collect();
        return log.reject(
            StatusCode::FORBIDDEN,
            &format!(
                "access rule {} names this client by its certificate's fingerprint, which a \
                 renewed certificate would not match; name it by cn: instead",
                numbers.join(", ")
            ),
        );
    }
    let body = match read_request_body(request, shared, log).await {
        Ok(body) => body,
        Err(response) => return *response,
    };
    let renewal: RenewRequest = match serde_json::from_slice(&body) {
        Ok(renewal) => renewal,
        Err(error) => {
            return log.reject(
                StatusCode::BAD_REQUEST,
                &format!("invalid JSON body: {error}"),
            );
        }
    };
    let Some(presented) = peer.chain.first().map(|der| der.as_ref().to_vec()) else {
        return log.reject(StatusCode::FORBIDDEN, "no client certificate");
    };

    // The signature and its log line happen on a blocking thread that finishes even when
    // the client disconnects, so every certificate written to the index is logged.
    let budget = shared.renewal_budget.clone();
    let per_minute = settings.max_per_minute;
    let client = log.client.to_string();
    let fingerprint = log.client.short_fingerprint();
    let peer_addr = log.peer;
    let signing = tokio::task::spawn_blocking(move || {
        let request = RenewalRequest {
            presented: &presented,
            csr_pem: &renewal.csr,
            validity: settings.validity,
            min_interval: settings.min_interval,
        };
        let admit = || {
            budget
                .take(per_minute, Instant::now())
                .map_err(|wait| RenewalError::TooSoon {
                    reason: format!(
                        "the server signs at most {per_minute} renewals a minute; retry after \
                         the delay in Retry-After"
                    ),
                    retry_after: wait,
                })
        };
        let renewed = crate::ca::renew(&settings.pki_dir, &request, admit)?;
        info!(
            client = %client,
            fingerprint = %fingerprint,
            peer = %peer_addr,
            identity = %renewed.identity,
            previous_serial = %renewed.presented_serial,
            replaces = %renewed.replaced_serial,
            serial = %renewed.serial,
            not_after = %renewed.not_after.date(),
            repeated = renewed.repeated,
            "client certificate renewed"
        );
        if renewed.shortened {
            warn!(
                identity = %renewed.identity,
                serial = %renewed.serial,
                not_after = %renewed.not_after.date(),
                "renewed certificate cut short: the client intermediate expires before the \
                 usual lifetime ends"
            );
        }
        Ok(renewed)
    });
    let renewed = match signing.await {
        Ok(Ok(renewed)) => renewed,
        Ok(Err(failure)) => return rejected(log, &failure),
        Err(failure) => {
            return failed(log, &format!("the renewal task ended: {failure}"));
        }
    };
    let body = serde_json::to_vec(&RenewResponse {
        certificate: renewed.chain_pem,
    })
    .unwrap_or_default();
    let mut response = Response::new(Full::new(Bytes::from(body)));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// Maps a rejected or failed renewal to its response. A rejection names its reason, which
/// contains no server paths. A failure is logged in full and gets a short text.
fn rejected(log: &RequestLog<'_>, failure: &RenewalError) -> HttpResponse {
    match failure {
        RenewalError::BadRequest(reason) => log.reject(StatusCode::BAD_REQUEST, reason),
        RenewalError::Refused(reason) => log.reject(StatusCode::FORBIDDEN, reason),
        RenewalError::TooSoon {
            reason,
            retry_after,
        } => {
            let mut response = log.reject(StatusCode::TOO_MANY_REQUESTS, reason);
            insert_retry_after(&mut response, *retry_after);
            response
        }
        RenewalError::Failed(reason) => failed(log, reason),
    }
}

fn failed(log: &RequestLog<'_>, reason: &str) -> HttpResponse {
    error!(
        client = %log.client,
        fingerprint = %log.client.short_fingerprint(),
        peer = %log.peer,
        error = %reason,
        "client certificate renewal failed"
    );
    text_response(
        StatusCode::INTERNAL_SERVER_ERROR,
        "renewal failed on the server; the server's log names the cause",
    )
}

fn insert_retry_after(response: &mut HttpResponse, wait: Duration) {
    if let Ok(value) = HeaderValue::from_str(&wait.as_secs().max(1).to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_refuses_beyond_the_minute_and_resets() {
        let budget = RenewalBudget::new();
        let start = Instant::now();
        assert!(budget.take(2, start).is_ok());
        assert!(budget.take(2, start).is_ok());
        let wait = budget.take(2, start + Duration::from_secs(10)).unwrap_err();
        assert_eq!(wait, Duration::from_secs(50));
        assert!(budget.take(2, start + Duration::from_secs(61)).is_ok());
    }
}
