//! The identity of a peer, read from its certificate: names, serial and fingerprint.
//!
//! The server logs every request with it; an unparsable certificate still has a
//! fingerprint, so every line names the peer somehow.

use std::fmt;

use rustls::pki_types::CertificateDer;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::protocol::sha256_hex;

/// The holder of a certificate, as its subject and extensions name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Subject common name, if any.
    pub common_name: Option<String>,
    /// DNS names of the subject alternative name extension.
    pub dns_names: Vec<String>,
    /// URIs of the subject alternative name extension.
    pub uris: Vec<String>,
    /// Serial number in colon-free lower-case hex, as OpenSSL prints it without colons.
    pub serial: String,
    /// Full subject in RFC 4514 form, empty when the certificate could not be parsed.
    pub subject: String,
    /// SHA-256 of the DER certificate, lower-case hex.
    pub fingerprint: String,
}

impl Identity {
    /// Reads the identity of a DER certificate; parsing failures leave only the fingerprint.
    pub fn from_der(der: &CertificateDer<'_>) -> Identity {
        let mut identity = Identity {
            common_name: None,
            dns_names: Vec::new(),
            uris: Vec::new(),
            serial: String::new(),
            subject: String::new(),
            fingerprint: sha256_hex(der.as_ref()),
        };
        let Ok((_, cert)) = X509Certificate::from_der(der.as_ref()) else {
            return identity;
        };
        identity.subject = cert.subject().to_string();
        identity.serial = cert.raw_serial_as_string().replace(':', "");
        // With several common names, programs disagree on which one counts (the first or
        // the last), so such a certificate has none for matching and naming.
        let mut names = cert.subject().iter_common_name();
        identity.common_name = match (names.next(), names.next()) {
            (Some(only), None) => only.as_str().ok().map(str::to_owned),
            _ => None,
        };
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    GeneralName::DNSName(dns) => identity.dns_names.push((*dns).to_owned()),
                    GeneralName::URI(uri) => identity.uris.push((*uri).to_owned()),
                    _ => {}
                }
            }
        }
        identity
    }

    /// Returns the short fingerprint used in log lines: `sha256:` and 16 hex digits.
    pub fn short_fingerprint(&self) -> String {
        format!("sha256:{}", &self.fingerprint[..16])
    }
}

impl fmt::Display for Identity {
    /// Writes the common name, else the first DNS name or URI, else the short fingerprint.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = self
            .common_name
            .as_deref()
            .or(self.dns_names.first().map(String::as_str))
            .or(self.uris.first().map(String::as_str));
        match name {
            Some(name) => f.write_str(name),
            None => f.write_str(&self.short_fingerprint()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_reads_cn_san_and_serial() {
        let mut params = rcgen::CertificateParams::new(vec!["web412.example.net".into()]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "web412");
        params.serial_number = Some(rcgen::SerialNumber::from_slice(&[0x0a, 0xbc]));
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let identity = Identity::from_der(cert.der());
        assert_eq!(identity.common_name.as_deref(), Some("web412"));
        assert_eq!(identity.dns_names, vec!["web412.example.net".to_owned()]);
        assert_eq!(identity.serial, "0abc");
        assert_eq!(identity.to_string(), "web412");
        assert_eq!(identity.fingerprint, sha256_hex(cert.der()));
    }

    #[test]
    fn garbage_certificate_keeps_fingerprint() {
        let der = CertificateDer::from(vec![1, 2, 3]);
        let identity = Identity::from_der(&der);
        assert_eq!(identity.common_name, None);
        assert!(identity.to_string().starts_with("sha256:"));
    }
}
