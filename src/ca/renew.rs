//! Renewal of a client certificate by the server: a new certificate for the identity of
//! the one the client presented, for the key of its signing request, signed with the
//! client intermediate and recorded in the index.
//!
//! The server calls this with the certificate the handshake verified. The index decides
//! whether that certificate may renew: it must be a client certificate of this PKI, not
//! revoked, not expired and not replaced. The one exception is a request that repeats a
//! renewal whose response the client never received. Its new key is the key the index
//! records for the renewals that replaced the presented certificate, so a new certificate
//! for that key replaces the newest of them. The key of any other certificate in the index
//! is rejected.

use std::path::Path;

use rustls::pki_types::CertificateSigningRequestDer;
use time::{Duration, OffsetDateTime};
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::oid_registry::{
    OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_PKCS1_RSAENCRYPTION,
    OID_SIG_ED25519,
};
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey;
use x509_parser::x509::SubjectPublicKeyInfo;

use super::certs;
use super::files::{DirLock, Layout};
use super::index::{Index, IssuerName, Kind, Record, State};
use crate::pki::{LeafSpec, Usage};
use crate::protocol::sha256_hex;

/// Smallest RSA key a renewal accepts, in bits.
const MIN_RSA_BITS: usize = 2048;
/// Largest RSA key a renewal accepts, in bits; larger keys only cost the server time.
const MAX_RSA_BITS: usize = 8192;
/// Smallest RSA public exponent a renewal accepts, the one every current tool uses.
const MIN_RSA_EXPONENT: u64 = 65_537;
/// Shortest validity a renewal may give, once cut to the intermediate's end.
const MIN_VALIDITY: Duration = Duration::days(1);

/// A renewal request as the server received it.
#[derive(Debug)]
pub struct RenewalRequest<'a> {
    /// DER of the client certificate the handshake verified.
    pub presented: &'a [u8],
    /// The certificate signing request, PEM.
    pub csr_pem: &'a str,
    /// Validity of the new certificate; `None` gives it the lifetime of the presented one.
    pub validity: Option<Duration>,
    /// Time a certificate that the server issued must be held before it renews again.
    pub min_interval: Duration,
}

/// A certificate issued by renewal.
#[derive(Debug, Clone)]
pub struct Renewed {
    /// The new certificate followed by the client intermediate, PEM.
    pub chain_pem: String,
    pub identity: String,
    /// Serial of the certificate the client presented.
    pub presented_serial: String,
    /// Serial the new certificate replaces in the index: the presented one, or the
    /// newest renewal of it when the request repeated a lost response.
    pub replaced_serial: String,
    pub serial: String,
    pub not_after: OffsetDateTime,
    /// True when the request repeated a renewal whose response was lost.
    pub repeated: bool,
    /// True when the validity was cut to end before the client intermediate.
    pub shortened: bool,
}

/// Failure of a renewal, by the status the server responds with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RenewalError {
    /// The signing request is malformed, badly signed, or its key is unsuitable.
    BadRequest(String),
    /// The presented certificate may not renew.
    Refused(String),
    /// The presented certificate was itself issued by a renewal too recently.
    TooSoon {
        reason: String,
        retry_after: std::time::Duration,
    },
    /// The PKI directory cannot be read or written.
    Failed(String),
}

impl std::fmt::Display for RenewalError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RenewalError::BadRequest(reason)
            | RenewalError::Refused(reason)
            | RenewalError::TooSoon { reason, .. }
            | RenewalError::Failed(reason) => f.write_str(reason),
        }
    }
}

impl std::error::Error for RenewalError {}

/// A checked signing request: its public key and that key's SPKI fingerprint.
struct SigningRequest {
    public_key: rcgen::PublicKey,
    spki_sha256: String,
}

/// Renews the presented client certificate in the PKI of `pki_dir`. `admit` runs after
/// every check and before the signature, so that a rate limit counts signatures only.
pub fn renew(
    pki_dir: &Path,
    request: &RenewalRequest<'_>,
    admit: impl FnOnce() -> Result<(), RenewalError>,
) -> Result<Renewed, RenewalError> {
    let csr = parse_request(request.csr_pem)?;
    let presented = certs::read_info_der(request.presented).map_err(|error| {
        RenewalError::BadRequest(format!("the presented certificate is unreadable: {error}"))
    })?;
    let layout = Layout::new(pki_dir);
    layout
        .require_existing()
        .map_err(|error| RenewalError::Failed(error.to_string()))?;
    let _lock =
        DirLock::acquire(&layout).map_err(|error| RenewalError::Failed(error.to_string()))?;
    let mut index =
        Index::load(&layout).map_err(|error| RenewalError::Failed(error.to_string()))?;
    let now = OffsetDateTime::now_utc();

    let position = index.find_serial(&presented.serial).ok_or_else(|| {
        RenewalError::Refused(format!(
            "serial {} is not in the PKI's index: only certificates from acme-dl pki client \
             renew; issue one with acme-dl pki client --name {}",
            presented.serial, presented.common_name
        ))
    })?;
    let record = index.certificates[position].clone();
    let replaces = replaced_serial(&index, &record, &csr, now, request.min_interval)?;
    let repeated = replaces != record.serial;
    // A repeated request certifies the key of its lost renewals again, and nothing else.
    let known_key = index.certificates.iter().find(|known| {
        known.public_key_sha256.as_deref() == Some(csr.spki_sha256.as_str())
            && !(repeated && known.renewed.is_some())
    });
    if let Some(known) = known_key {
        return Err(RenewalError::BadRequest(format!(
            "the signing request's key is already certified by serial {}; a renewal needs a \
             new key",
            known.serial
        )));
    }
    admit()?;

    let client_ca = certs::load_client_ca(&layout, None)
        .map_err(|error| RenewalError::Failed(error.to_string()))?;
    let ca_not_after = certs::not_after(&layout.client_ca_cert())
        .map_err(|error| RenewalError::Failed(error.to_string()))?;
    let mut spec = LeafSpec::new(&record.identity, Usage::Client, 1);
    spec.not_after = match request.validity {
        Some(validity) => now + validity,
        // The same span as the presented certificate, from the same backdated start.
        None => spec.not_before + (presented.not_after - presented.not_before),
    };
    let shortened = spec.not_after > ca_not_after;
    if shortened {
        spec.not_after = ca_not_after - Duration::minutes(1);
        if spec.not_after - now < MIN_VALIDITY {
            return Err(RenewalError::Failed(format!(
                "the client intermediate {} expires on {}, too soon to sign renewals; make a \
                 new PKI with acme-dl pki init and issue the clients again",
                layout.client_ca_cert().display(),
                ca_not_after.date()
            )));
        }
    }
    for name in &record.names {
        match name.parse::<std::net::IpAddr>() {
            Ok(ip) => spec.ip_addresses.push(ip),
            Err(_) => spec.dns_names.push(name.clone()),
        }
    }

    let cert_pem = client_ca
        .issue_for_key(&spec, &csr.public_key)
        .map_err(|error| RenewalError::Failed(format!("signing the renewal failed: {error}")))?;
    let mut new_record = certs::record(&cert_pem, Kind::Client, IssuerName::ClientCa)
        .map_err(|error| RenewalError::Failed(error.to_string()))?;
    new_record.supersedes = Some(replaces);
    new_record.renewed = Some(now);
    let renewed = Renewed {
        chain_pem: format!("{cert_pem}{}", client_ca.cert_pem()),
        identity: new_record.identity.clone(),
        presented_serial: record.serial.clone(),
        replaced_serial: new_record.supersedes.clone().unwrap_or_default(),
        serial: new_record.serial.clone(),
        not_after: spec.not_after,
        repeated,
        shortened,
    };
    index.certificates.push(new_record);
    index
        .save(&layout)
        .map_err(|error| RenewalError::Failed(error.to_string()))?;
    Ok(renewed)
}

/// Decides whether `record`, the presented certificate, may renew, and returns the serial
/// the new certificate replaces: the presented one, or its replacement when the request
/// repeats a renewal whose response was lost.
fn replaced_serial(
    index: &Index,
    record: &Record,
    csr: &SigningRequest,
    now: OffsetDateTime,
    min_interval: Duration,
) -> Result<String, RenewalError> {
    if record.kind != Kind::Client || record.issuer != IssuerName::ClientCa {
        return Err(RenewalError::Refused(format!(
            "serial {} is a {} certificate; only client certificates of the client \
             intermediate renew",
            record.serial,
            record.kind.name()
        )));
    }
    match index.state(record, now) {
        State::Valid => {}
        State::Revoked => {
            let when = record
                .revoked
                .as_ref()
                .map(|revoked| revoked.time.date().to_string())
                .unwrap_or_default();
            return Err(RenewalError::Refused(format!(
                "certificate {} serial {} was revoked on {when}; a revoked identity does not \
                 renew: issue a new one with acme-dl pki client --name {}",
                record.identity, record.serial, record.identity
            )));
        }
        State::Expired => {
            return Err(RenewalError::Refused(format!(
                "certificate {} serial {} has expired; issue a new one with acme-dl pki \
                 client --name {}",
                record.identity, record.serial, record.identity
            )));
        }
        State::Superseded => {
            if let Some(newest) = lost_renewal(index, record, csr, now) {
                return Ok(newest.serial.clone());
            }
            let by = index
                .successor(&record.serial)
                .map_or_else(String::new, |s| format!(" by serial {}", s.serial));
            return Err(RenewalError::Refused(format!(
                "certificate {} serial {} was replaced{by}: install that certificate if this \
                 host has it; otherwise revoke the identity and issue a new one with acme-dl \
                 pki client --name {}",
                record.identity, record.serial, record.identity
            )));
        }
    }
    // A short-lived certificate must be able to renew before it ends.
    let lifetime = record
        .not_before
        .zip(record.not_after)
        .map(|(start, end)| end - start);
    let min_interval = lifetime.map_or(min_interval, |lifetime| min_interval.min(lifetime / 2));
    if let Some(renewed) = record.renewed {
        let age = now - renewed;
        if age < min_interval {
            let wait = min_interval - age;
            return Err(RenewalError::TooSoon {
                reason: format!(
                    "certificate {} serial {} was issued by a renewal {} minutes ago; the \
                     server renews it again after {} minutes",
                    record.identity,
                    record.serial,
                    age.whole_minutes(),
                    min_interval.whole_minutes()
                ),
                retry_after: std::time::Duration::from_secs(
                    u64::try_from(wait.whole_seconds()).unwrap_or(0).max(1),
                ),
            });
        }
    }
    Ok(record.serial.clone())
}

/// Returns the newest certificate in the chain of renewals that replaced `record` when
/// every one of them certifies the request's key: the client lost their responses and
/// sends the same pending key again. A certificate `pki client` issued in between, or a
/// revoked one, ends the chain.
fn lost_renewal<'a>(
    index: &'a Index,
    record: &Record,
    csr: &SigningRequest,
    now: OffsetDateTime,
) -> Option<&'a Record> {
    let mut newest = index.successor(&record.serial)?;
    loop {
        let repeat = newest.renewed.is_some()
            && newest.public_key_sha256.as_deref() == Some(csr.spki_sha256.as_str());
        if !repeat {
            return None;
        }
        match index.state(newest, now) {
            State::Valid => return Some(newest),
            State::Superseded => newest = index.successor(&newest.serial)?,
            State::Revoked | State::Expired => return None,
        }
    }
}

/// Parses a signing request, verifies its signature and checks its key.
fn parse_request(pem: &str) -> Result<SigningRequest, RenewalError> {
    let bad = |reason: String| RenewalError::BadRequest(reason);
    let (rest, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).map_err(|_| {
        bad(
            "the signing request is not PEM: expected a -----BEGIN CERTIFICATE REQUEST----- \
             block"
                .to_owned(),
        )
    })?;
    if !rest.iter().all(u8::is_ascii_whitespace) {
        return Err(bad(
            "the signing request has data after its PEM block; send one request".to_owned(),
        ));
    }
    if block.label != "CERTIFICATE REQUEST" {
        return Err(bad(format!(
            "expected a CERTIFICATE REQUEST PEM block, got {:?}",
            block.label
        )));
    }
    let (_, parsed) = X509CertificationRequest::from_der(&block.contents)
        .map_err(|error| bad(format!("the signing request is malformed: {error}")))?;
    let spki = &parsed.certification_request_info.subject_pki;
    check_key(spki).map_err(bad)?;
    let spki_sha256 = sha256_hex(spki.raw);
    let der = CertificateSigningRequestDer::from(block.contents.as_slice());
    let params = rcgen::CertificateSigningRequestParams::from_der(&der).map_err(|error| {
        bad(format!(
            "the signing request's signature does not verify with its own key: {error}"
        ))
    })?;
    Ok(SigningRequest {
        public_key: params.public_key,
        spki_sha256,
    })
}

/// Accepts the key types `pki init` can make: ECDSA P-256 and P-384, Ed25519, and RSA of
/// 2048 to 8192 bits.
fn check_key(spki: &SubjectPublicKeyInfo<'_>) -> Result<(), String> {
    let algorithm = &spki.algorithm.algorithm;
    if *algorithm == OID_SIG_ED25519 {
        return Ok(());
    }
    if *algorithm == OID_KEY_TYPE_EC_PUBLIC_KEY {
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|parameters| parameters.as_oid().ok());
        return match curve {
            Some(curve) if curve == OID_EC_P256 || curve == OID_NIST_EC_P384 => Ok(()),
            Some(curve) => Err(format!(
                "the signing request's elliptic curve {} is not accepted; use P-256 or P-384",
                curve_name(&curve.to_id_string())
            )),
            None => Err("the signing request's elliptic-curve key names no curve".to_owned()),
        };
    }
    if *algorithm == OID_PKCS1_RSAENCRYPTION {
        let (bits, exponent) = match spki.parsed() {
            Ok(PublicKey::RSA(key)) => (key.key_size(), key.try_exponent().unwrap_or(0)),
            _ => return Err("the signing request's RSA key is malformed".to_owned()),
        };
        if exponent < MIN_RSA_EXPONENT {
            return Err(format!(
                "the signing request's RSA key has public exponent {exponent}; use 65537"
            ));
        }
        if !(MIN_RSA_BITS..=MAX_RSA_BITS).contains(&bits) {
            return Err(format!(
                "the signing request's RSA key has {bits} bits; use {MIN_RSA_BITS} to \
                 {MAX_RSA_BITS}"
            ));
        }
        return Ok(());
    }
    Err(format!(
        "the signing request's key type {algorithm} is not accepted; use ECDSA P-256 or \
         P-384, Ed25519, or RSA"
    ))
}

/// Names the elliptic curves that a rejected request most likely uses.
fn curve_name(oid: &str) -> String {
    let name = match oid {
        "1.3.132.0.35" => "P-521",
        "1.3.132.0.10" => "secp256k1",
        "1.3.36.3.3.2.8.1.1.7" => "brainpoolP256r1",
        _ => return oid.to_owned(),
    };
    format!("{name} ({oid})")
}
