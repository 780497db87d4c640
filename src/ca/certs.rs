//! Loading the PKI's two CAs from their files, and reading what the index records about
//! a certificate from its PEM.

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use time::OffsetDateTime;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::CaError;
use super::files::{self, Layout};
use super::index::{IssuerName, Kind, Record};
use super::keys;
use crate::pki::Authority;

/// Loads the root CA. Its key may be encrypted, which needs `passphrase`.
pub fn load_root(layout: &Layout, passphrase: Option<&str>) -> Result<Authority, CaError> {
    load(&layout.root_cert(), &layout.root_key(), passphrase)
}

/// Loads the client intermediate.
pub fn load_client_ca(layout: &Layout, passphrase: Option<&str>) -> Result<Authority, CaError> {
    load(
        &layout.client_ca_cert(),
        &layout.client_ca_key(),
        passphrase,
    )
}

fn load(
    cert: &std::path::Path,
    key: &std::path::Path,
    passphrase: Option<&str>,
) -> Result<Authority, CaError> {
    let cert_pem = files::read_text("CA certificate", cert)?;
    let key_pair = keys::load_key(key, passphrase)?;
    Authority::from_pem(&cert_pem, key_pair)
        .map_err(|error| CaError::Invalid(format!("CA certificate {}: {error}", cert.display())))
}

/// Fields of a certificate that the index records, read from its DER.
#[derive(Debug, Clone)]
pub struct CertInfo {
    pub serial: String,
    pub common_name: String,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    pub sha256: String,
    pub names: Vec<String>,
    pub is_ca: bool,
    /// DER of the subject public key info.
    pub public_key: Vec<u8>,
}

/// Reads the first certificate of a PEM text.
pub fn read_info(pem: &str) -> Result<CertInfo, String> {
    let der = CertificateDer::from_pem_slice(pem.as_bytes())
        .map_err(|error| format!("no PEM certificate: {error}"))?;
    read_info_der(der.as_ref())
}

/// Reads a DER certificate.
pub fn read_info_der(der: &[u8]) -> Result<CertInfo, String> {
    let (_, cert) =
        X509Certificate::from_der(der).map_err(|error| format!("invalid certificate: {error}"))?;
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(dns) => names.push((*dns).to_owned()),
                GeneralName::IPAddress(bytes) => names.push(format_ip(bytes)),
                _ => {}
            }
        }
    }
    Ok(CertInfo {
        serial: cert.raw_serial_as_string().replace(':', ""),
        common_name: cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|name| name.as_str().ok())
            .unwrap_or_default()
            .to_owned(),
        not_before: cert.validity().not_before.to_datetime(),
        not_after: cert.validity().not_after.to_datetime(),
        sha256: crate::protocol::sha256_hex(der),
        names,
        is_ca: cert.is_ca(),
        public_key: cert.public_key().raw.to_vec(),
    })
}

fn format_ip(bytes: &[u8]) -> String {
    match bytes.len() {
        4 => std::net::Ipv4Addr::from(<[u8; 4]>::try_from(bytes).unwrap_or_default()).to_string(),
        16 => std::net::Ipv6Addr::from(<[u8; 16]>::try_from(bytes).unwrap_or_default()).to_string(),
        _ => format!("{bytes:02x?}"),
    }
}

/// Builds the index record of a certificate the PKI just issued or adopted.
pub fn record(pem: &str, kind: Kind, issuer: IssuerName) -> Result<Record, CaError> {
    let info = read_info(pem).map_err(|error| {
        CaError::Invalid(format!(
            "reading back the {} certificate: {error}",
            kind.name()
        ))
    })?;
    Ok(Record {
        serial: info.serial,
        kind,
        identity: info.common_name,
        issuer,
        not_before: Some(info.not_before),
        not_after: Some(info.not_after),
        sha256: Some(info.sha256),
        names: info.names,
        supersedes: None,
        revoked: None,
        imported: false,
        public_key_sha256: Some(crate::protocol::sha256_hex(&info.public_key)),
        renewed: None,
    })
}

/// Returns the expiry of a CA certificate of the PKI, which bounds what it signs.
pub fn not_after(path: &std::path::Path) -> Result<OffsetDateTime, CaError> {
    let pem = files::read_text("CA certificate", path)?;
    read_info(&pem)
        .map(|info| info.not_after)
        .map_err(|error| CaError::Invalid(format!("CA certificate {}: {error}", path.display())))
}
