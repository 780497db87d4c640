//! TLS configuration for both ends: PEM loading, mutual authentication, error reasons.
//!
//! Both ends trust exactly one CA bundle. The server demands a client certificate that
//! chains to it; the client checks the server certificate against it and the URL's host.
//! What each end does once the handshake is done is left to `server` and `client`.

use std::cell::RefCell;
use std::error::Error as StdError;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    AlertDescription, CertificateError, ClientConfig, DigitallySignedStruct, DistinguishedName,
    RootCertStore, ServerConfig, SignatureScheme,
};

use crate::identity::Identity;

/// The only application protocol either end speaks.
const ALPN_HTTP1: &[u8] = b"http/1.1";

/// Failure to build a TLS configuration from files.
#[derive(Debug)]
pub enum TlsSetupError {
    /// A file could not be read or holds no usable PEM block.
    File {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
    /// rustls rejected the combination (for example a key that does not match the certificate).
    Config { reason: String },
}

impl fmt::Display for TlsSetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsSetupError::File { what, path, reason } => {
                write!(f, "loading {what} {}: {reason}", path.display())
            }
            TlsSetupError::Config { reason } => write!(f, "invalid TLS configuration: {reason}"),
        }
    }
}

impl StdError for TlsSetupError {}

/// Paths of the three files each end needs.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Loads every certificate of a PEM file; text between the blocks is ignored.
pub fn load_certs(
    what: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsSetupError> {
    let file_error = |reason: String| TlsSetupError::File {
        what,
        path: path.to_owned(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|error| file_error(pem_reason(&error)))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| file_error(pem_reason(&error)))?;
    if certs.is_empty() {
        return Err(file_error("no CERTIFICATE block found".to_owned()));
    }
    Ok(certs)
}

/// Loads a private key in PKCS#1 (RSA), SEC1 (EC) or PKCS#8 form.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsSetupError> {
    PrivateKeyDer::from_pem_file(path).map_err(|error| TlsSetupError::File {
        what: "private key",
        path: path.to_owned(),
        reason: match error {
            rustls::pki_types::pem::Error::NoItemsFound => {
                "no unencrypted PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY block found"
                    .to_owned()
            }
            other => pem_reason(&other),
        },
    })
}

fn pem_reason(error: &rustls::pki_types::pem::Error) -> String {
    match error {
        rustls::pki_types::pem::Error::Io(io) => io.to_string(),
        other => format!("invalid PEM: {other:?}"),
    }
}

/// Loads certificate revocation lists, each file PEM (`X509 CRL` blocks) or DER.
pub fn load_crls(
    paths: &[PathBuf],
) -> Result<Vec<CertificateRevocationListDer<'static>>, TlsSetupError> {
    let mut lists = Vec::new();
    for path in paths {
        let file_error = |reason: String| TlsSetupError::File {
            what: "revocation list",
            path: path.clone(),
            reason,
        };
        let bytes = std::fs::read(path).map_err(|error| file_error(error.to_string()))?;
        let pem: Vec<_> = CertificateRevocationListDer::pem_slice_iter(&bytes)
            .collect::<Result<_, _>>()
            .map_err(|error| file_error(pem_reason(&error)))?;
        let found = if pem.is_empty() {
            vec![CertificateRevocationListDer::from(bytes)]
        } else {
            pem
        };
        // Checked here so that a broken file is named, not reported later by the verifier
        // builder without a path.
        for list in &found {
            use x509_parser::prelude::FromDer;
            if let Err(error) =
                x509_parser::revocation_list::CertificateRevocationList::from_der(list.as_ref())
            {
                return Err(file_error(format!(
                    "not a certificate revocation list in PEM or DER ({error})"
                )));
            }
        }
        lists.extend(found);
    }
    Ok(lists)
}

fn root_store(ca: &Path) -> Result<RootCertStore, TlsSetupError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs("CA bundle", ca)? {
        roots.add(cert).map_err(|error| TlsSetupError::File {
            what: "CA bundle",
            path: ca.to_owned(),
            reason: format!("unusable CA certificate: {error}"),
        })?;
    }
    Ok(roots)
}

/// Builds the server's configuration: TLS 1.2 and 1.3, client certificate required.
pub fn server_config(files: &TlsFiles, crls: &[PathBuf]) -> Result<ServerTls, TlsSetupError> {
    let provider = provider();
    let roots = Arc::new(root_store(&files.ca)?);
    let mut builder = WebPkiClientVerifier::builder_with_provider(roots, provider.clone());
    let revocation_lists = load_crls(crls)?;
    check_crl_issuers(&files.ca, crls, &revocation_lists)?;
    if !revocation_lists.is_empty() {
        // Only the client's own certificate is checked, and a certificate from an issuer
        // that no list covers is accepted: the lists are the operator's, for the fleet CA.
        builder = builder
            .with_crls(revocation_lists)
            .only_check_end_entity_revocation()
            .allow_unknown_revocation_status();
    }
    let webpki = builder.build().map_err(|error| TlsSetupError::Config {
        reason: error.to_string(),
    })?;
    let chain = load_certs("server certificate", &files.cert)?;
    let key = load_key(&files.key)?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|error| TlsSetupError::Config {
            reason: error.to_string(),
        })?
        .with_client_cert_verifier(Arc::new(RecordingVerifier {
            inner: webpki.clone(),
        }))
        .with_single_cert(chain, key)
        .map_err(|error| TlsSetupError::Config {
            reason: format!(
                "server certificate {} and key {}: {}",
                files.cert.display(),
                files.key.display(),
                describe_key_error(&error)
            ),
        })?;
    config.alpn_protocols = vec![ALPN_HTTP1.to_vec()];
    Ok(ServerTls {
        config: Arc::new(config),
        verifier: webpki,
    })
}

/// The server's TLS configuration and the verifier inside it, kept to check established
/// connections again after a reload and to explain a certificate.
#[derive(Debug, Clone)]
pub struct ServerTls {
    pub config: Arc<ServerConfig>,
    pub verifier: Arc<dyn ClientCertVerifier>,
}

impl ServerTls {
    /// Verifies a client chain as the handshake does: CA bundle, revocation lists,
    /// clientAuth usage and validity at `now`.
    pub fn verify_client(
        &self,
        chain: &[CertificateDer<'static>],
        now: UnixTime,
    ) -> Result<(), String> {
        let Some((leaf, intermediates)) = chain.split_first() else {
            return Err("no certificate".to_owned());
        };
        self.verifier
            .verify_client_cert(leaf, intermediates, now)
            .map(|_| ())
            .map_err(|error| describe_server_side(&error))
    }
}

/// Refuses revocation lists whose issuer is not a CA of the bundle: such a list would
/// revoke nothing, and revocation would look in force while it is not.
fn check_crl_issuers(
    ca: &Path,
    paths: &[PathBuf],
    lists: &[CertificateRevocationListDer<'_>],
) -> Result<(), TlsSetupError> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    use x509_parser::revocation_list::CertificateRevocationList;
    let subjects: Vec<Vec<u8>> = load_certs("CA bundle", ca)?
        .iter()
        .filter_map(|der| {
            X509Certificate::from_der(der.as_ref())
                .ok()
                .map(|(_, cert)| cert.subject().as_raw().to_vec())
        })
        .collect();
    for list in lists {
        let Ok((_, crl)) = CertificateRevocationList::from_der(list.as_ref()) else {
            continue;
        };
        if !subjects
            .iter()
            .any(|subject| subject == crl.issuer().as_raw())
        {
            let files: Vec<String> = paths
                .iter()
                .map(|path| path.display().to_string())
                .collect();
            return Err(TlsSetupError::Config {
                reason: format!(
                    "revocation list issued by {} in {} matches no CA of {}; it would revoke \
                     nothing, so give the list of the fleet's CA, or add its issuer to the CA \
                     bundle (with acme-dl pki, ca is client-trust.pem)",
                    crl.issuer(),
                    files.join(", "),
                    ca.display()
                ),
            });
        }
    }
    Ok(())
}

/// Builds the client's configuration: trusts only the CA bundle, presents its certificate.
pub fn client_config(files: &TlsFiles) -> Result<Arc<ClientConfig>, TlsSetupError> {
    let roots = root_store(&files.ca)?;
    let chain = load_certs("client certificate", &files.cert)?;
    let key = load_key(&files.key)?;
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|error| TlsSetupError::Config {
            reason: error.to_string(),
        })?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|error| TlsSetupError::Config {
            reason: format!(
                "client certificate {} and key {}: {}",
                files.cert.display(),
                files.key.display(),
                describe_key_error(&error)
            ),
        })?;
    config.alpn_protocols = vec![ALPN_HTTP1.to_vec()];
    Ok(Arc::new(config))
}

fn describe_key_error(error: &rustls::Error) -> String {
    match error {
        rustls::Error::InconsistentKeys(_) => {
            "the key does not match the certificate; pass the key the certificate was issued for"
                .to_owned()
        }
        other => other.to_string(),
    }
}

/// Days before a certificate's end from which the server warns at start and daily.
const CERTIFICATE_WARNING_DAYS: i64 = 30;
/// Days before a revocation list's next update from which the server warns.
const CRL_WARNING_DAYS: i64 = 2;

/// Returns a warning for each server certificate, CA certificate or revocation list that
/// runs out soon or already has. Files that cannot be read are left to the loaders.
pub fn expiry_warnings(
    files: &TlsFiles,
    crls: &[PathBuf],
    now: std::time::SystemTime,
) -> Vec<String> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    use x509_parser::revocation_list::CertificateRevocationList;
    let now = now
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let mut warnings = Vec::new();
    let mut check = |what: String, end: i64, margin_days: i64| {
        let left = end - now;
        if left < 0 {
            warnings.push(format!(
                "{what} expired on {}; replace it",
                format_time(end.max(0) as u64)
            ));
        } else if left < margin_days * 86_400 {
            warnings.push(format!(
                "{what} runs out on {} ({} days left); replace it",
                format_time(end as u64),
                left / 86_400
            ));
        }
    };
    let certificate_files = [
        ("server certificate", &files.cert),
        ("CA certificate", &files.ca),
    ];
    for (what, path) in certificate_files {
        for der in load_certs(what, path).unwrap_or_default() {
            if let Ok((_, cert)) = X509Certificate::from_der(der.as_ref()) {
                let name = format!("{what} {} in {}", cert.subject(), path.display());
                check(
                    name,
                    cert.validity().not_after.timestamp(),
                    CERTIFICATE_WARNING_DAYS,
                );
            }
        }
    }
    for list in load_crls(crls).unwrap_or_default() {
        if let Ok((_, crl)) = CertificateRevocationList::from_der(list.as_ref())
            && let Some(next) = crl.next_update()
        {
            check(
                format!("revocation list of {}", crl.issuer()),
                next.timestamp(),
                CRL_WARNING_DAYS,
            );
        }
    }
    warnings
}

/// Ends of validity of the server's own TLS files, for the metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ValidityEnds {
    /// `notAfter` of the server's leaf certificate, seconds since the Unix epoch.
    pub server_certificate: Option<i64>,
    /// Each revocation list's issuer and its `nextUpdate`, seconds since the Unix epoch.
    /// Lists without a next update are left out.
    pub crl_next_updates: Vec<(String, i64)>,
}

/// Reads when the server certificate ends and when each revocation list is next updated.
/// Files that cannot be read or parsed are left out, as the loaders report them.
pub fn validity_ends(files: &TlsFiles, crls: &[PathBuf]) -> ValidityEnds {
    use x509_parser::prelude::{FromDer, X509Certificate};
    use x509_parser::revocation_list::CertificateRevocationList;
    let server_certificate = load_certs("server certificate", &files.cert)
        .ok()
        .and_then(|chain| {
            let (_, leaf) = X509Certificate::from_der(chain.first()?.as_ref()).ok()?;
            Some(leaf.validity().not_after.timestamp())
        });
    let mut crl_next_updates = Vec::new();
    for list in load_crls(crls).unwrap_or_default() {
        if let Ok((_, crl)) = CertificateRevocationList::from_der(list.as_ref())
            && let Some(next) = crl.next_update()
        {
            crl_next_updates.push((crl.issuer().to_string(), next.timestamp()));
        }
    }
    ValidityEnds {
        server_certificate,
        crl_next_updates,
    }
}

tokio::task_local! {
    /// The client certificate rejected during the handshake that runs in this task, if any.
    pub static REJECTED_CLIENT_CERT: RefCell<Option<Identity>>;
}

/// Wraps the WebPKI verifier to record which certificate it rejected, for the log.
///
/// The handshake error alone names the reason but not the certificate. rustls calls the
/// verifier inside the poll of the accept future, so a task-local carries the identity
/// back to the connection handler without changing the alert the client receives.
#[derive(Debug)]
struct RecordingVerifier {
    inner: Arc<dyn ClientCertVerifier>,
}

impl ClientCertVerifier for RecordingVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let result = self
            .inner
            .verify_client_cert(end_entity, intermediates, now);
        if result.is_err() {
            let identity = Identity::from_der(end_entity);
            let _ = REJECTED_CLIENT_CERT.try_with(|slot| *slot.borrow_mut() = Some(identity));
        }
        result
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Finds the rustls error somewhere in an error's source chain.
pub fn find_tls_error<'a>(error: &'a (dyn StdError + 'static)) -> Option<&'a rustls::Error> {
    let mut current: Option<&(dyn StdError + 'static)> = Some(error);
    while let Some(error) = current {
        if let Some(tls) = error.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        if let Some(io) = error.downcast_ref::<std::io::Error>()
            && let Some(inner) = io.get_ref()
            && let Some(tls) = inner.downcast_ref::<rustls::Error>()
        {
            return Some(tls);
        }
        current = error.source();
    }
    None
}

/// Describes why the server rejected a client's handshake, for the server's log.
pub fn describe_server_side(error: &rustls::Error) -> String {
    match error {
        rustls::Error::NoCertificatesPresented => "no client certificate presented".to_owned(),
        rustls::Error::InvalidCertificate(cert) => {
            format!(
                "client certificate rejected: {}",
                describe_certificate_error(cert)
            )
        }
        rustls::Error::AlertReceived(alert) => format!("client sent alert {alert:?}"),
        rustls::Error::PeerIncompatible(reason) => format!(
            "the client offered no TLS version, cipher suite or signature scheme this server \
             accepts; TLS 1.2 or 1.3 is required ({reason:?})"
        ),
        other => other.to_string(),
    }
}

/// Reason a client's handshake failed, from a bounded set: the label of the server's
/// handshake failure counter. It follows the cases of [`describe_server_side`], whose text
/// goes to the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeFailure {
    NoCertificate,
    UnknownCa,
    Expired,
    NotYetValid,
    Revoked,
    BadSignature,
    InvalidPurpose,
    /// Any other rejection of the client's certificate, such as a CA certificate
    /// presented as the leaf.
    CertificateRejected,
    /// The client aborted the handshake with a TLS alert.
    AlertReceived,
    /// The client offered no TLS version, cipher suite or signature scheme the server accepts.
    Incompatible,
    /// The connection closed before the handshake finished.
    Closed,
    TimedOut,
    Other,
}

impl HandshakeFailure {
    /// Every reason, in declaration order, so that `reason as usize` indexes it.
    pub const ALL: [HandshakeFailure; 13] = [
        HandshakeFailure::NoCertificate,
        HandshakeFailure::UnknownCa,
        HandshakeFailure::Expired,
        HandshakeFailure::NotYetValid,
        HandshakeFailure::Revoked,
        HandshakeFailure::BadSignature,
        HandshakeFailure::InvalidPurpose,
        HandshakeFailure::CertificateRejected,
        HandshakeFailure::AlertReceived,
        HandshakeFailure::Incompatible,
        HandshakeFailure::Closed,
        HandshakeFailure::TimedOut,
        HandshakeFailure::Other,
    ];

    /// Classifies the error a failed `accept` returned.
    pub fn classify(error: &std::io::Error) -> HandshakeFailure {
        match find_tls_error(error) {
            Some(tls_error) => HandshakeFailure::from_tls(tls_error),
            None if error.kind() == std::io::ErrorKind::UnexpectedEof => HandshakeFailure::Closed,
            None => HandshakeFailure::Other,
        }
    }

    fn from_tls(error: &rustls::Error) -> HandshakeFailure {
        match error {
            rustls::Error::NoCertificatesPresented => HandshakeFailure::NoCertificate,
            rustls::Error::InvalidCertificate(cert) => match cert {
                CertificateError::UnknownIssuer => HandshakeFailure::UnknownCa,
                CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                    HandshakeFailure::Expired
                }
                CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                    HandshakeFailure::NotYetValid
                }
                CertificateError::Revoked => HandshakeFailure::Revoked,
                CertificateError::BadSignature => HandshakeFailure::BadSignature,
                CertificateError::InvalidPurpose
                | CertificateError::InvalidPurposeContext { .. } => {
                    HandshakeFailure::InvalidPurpose
                }
                _ => HandshakeFailure::CertificateRejected,
            },
            rustls::Error::AlertReceived(_) => HandshakeFailure::AlertReceived,
            rustls::Error::PeerIncompatible(_) => HandshakeFailure::Incompatible,
            _ => HandshakeFailure::Other,
        }
    }

    /// Returns the value of the metrics' `reason` label.
    pub fn label(self) -> &'static str {
        match self {
            HandshakeFailure::NoCertificate => "no_client_certificate",
            HandshakeFailure::UnknownCa => "unknown_ca",
            HandshakeFailure::Expired => "certificate_expired",
            HandshakeFailure::NotYetValid => "certificate_not_yet_valid",
            HandshakeFailure::Revoked => "certificate_revoked",
            HandshakeFailure::BadSignature => "bad_signature",
            HandshakeFailure::InvalidPurpose => "invalid_purpose",
            HandshakeFailure::CertificateRejected => "certificate_rejected",
            HandshakeFailure::AlertReceived => "client_alert",
            HandshakeFailure::Incompatible => "incompatible_client",
            HandshakeFailure::Closed => "closed_by_client",
            HandshakeFailure::TimedOut => "timed_out",
            HandshakeFailure::Other => "other",
        }
    }
}

/// Describes why a connection to the server failed, for the client's operator.
pub fn describe_client_side(error: &rustls::Error) -> String {
    match error {
        rustls::Error::InvalidCertificate(CertificateError::NotValidForNameContext {
            expected,
            presented,
        }) => {
            let names: Vec<String> = presented.iter().map(|name| plain_name(name)).collect();
            format!(
                "the server certificate is not valid for {expected}; it is valid for {names}. \
                 Use one of those names in --server, or give the server a certificate for \
                 {expected}",
                expected = expected.to_str(),
                names = names.join(", ")
            )
        }
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => {
            "the server certificate is not issued by a CA in this client's --ca bundle".to_owned()
        }
        rustls::Error::InvalidCertificate(cert) => {
            format!(
                "server certificate rejected: {}",
                describe_certificate_error(cert)
            )
        }
        rustls::Error::AlertReceived(alert) => describe_alert_from_server(*alert),
        other => other.to_string(),
    }
}

/// Turns webpki's `DnsName("a.example")` and `IpAddress(127.0.0.1)` into the bare name.
fn plain_name(name: &str) -> String {
    for prefix in ["DnsName(", "IpAddress("] {
        if let Some(inner) = name
            .strip_prefix(prefix)
            .and_then(|rest| rest.strip_suffix(')'))
        {
            return inner.trim_matches('"').to_owned();
        }
    }
    name.to_owned()
}

fn describe_certificate_error(error: &CertificateError) -> String {
    match error {
        CertificateError::UnknownIssuer => "issued by an unknown CA".to_owned(),
        CertificateError::ExpiredContext { time, not_after } => format!(
            "certificate expired on {} (now {})",
            format_time(not_after.as_secs()),
            format_time(time.as_secs())
        ),
        CertificateError::Expired => "certificate expired".to_owned(),
        CertificateError::NotValidYetContext { time, not_before } => format!(
            "certificate not valid before {} (now {})",
            format_time(not_before.as_secs()),
            format_time(time.as_secs())
        ),
        CertificateError::NotValidYet => "certificate not yet valid".to_owned(),
        CertificateError::Revoked => "certificate revoked".to_owned(),
        CertificateError::BadSignature => {
            "the certificate's signature does not verify; it was probably issued by another CA \
             with the same name"
                .to_owned()
        }
        CertificateError::Other(other) if other.to_string().contains("CaUsedAsEndEntity") => {
            "a CA certificate was presented in place of a leaf certificate".to_owned()
        }
        CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
            format!("extended key usage does not allow this use ({error})")
        }
        other => other.to_string(),
    }
}

/// Formats seconds since the Unix epoch as `2026-12-04 15:14:22 UTC`.
pub fn format_time(seconds: u64) -> String {
    let (year, month, day) = crate::logging::civil_from_days((seconds / 86_400) as i64);
    let time = seconds % 86_400;
    format!(
        "{year}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        time / 3600,
        time / 60 % 60,
        time % 60
    )
}

fn describe_alert_from_server(alert: AlertDescription) -> String {
    let hint = match alert {
        AlertDescription::UnknownCA => {
            "the server does not trust the CA that issued this client's certificate; use a \
             certificate from the server's CA bundle"
        }
        AlertDescription::CertificateRequired => {
            "the server requires a client certificate and none was sent; set --cert and --key"
        }
        AlertDescription::CertificateExpired => {
            "the server says this client's certificate is expired or not yet valid; renew it"
        }
        AlertDescription::CertificateRevoked => {
            "the server says this client's certificate is revoked"
        }
        AlertDescription::UnsupportedCertificate => {
            "the server rejected this client's certificate for its key usage; it needs the \
             clientAuth extended key usage"
        }
        AlertDescription::BadCertificate | AlertDescription::CertificateUnknown => {
            "the server rejected this client's certificate"
        }
        AlertDescription::DecryptError => {
            "the server could not verify this client's signature (the key may not match the certificate, or the certificate comes from another CA with the same name)"
        }
        _ => "the server aborted the TLS connection",
    };
    format!("{hint} (TLS alert {alert:?})")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crl_load_names_unreadable_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fleet.crl");
        for content in [&b"garbage\n"[..], b""] {
            std::fs::write(&path, content).unwrap();
            let error = load_crls(std::slice::from_ref(&path))
                .unwrap_err()
                .to_string();
            assert!(error.contains(&path.display().to_string()), "{error}");
            assert!(
                error.contains("not a certificate revocation list"),
                "{error}"
            );
        }
    }
}
