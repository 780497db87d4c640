//! The index of everything the PKI issued, `index.json`: serial, kind, identity, issuer,
//! validity, fingerprint, revocation, and the serial each certificate superseded.
//!
//! Revocation lists are generated from it. Commands rewrite it whole and atomically
//! under the directory lock, so a later writer, such as a server that renews client
//! certificates, only has to append a record the same way.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::CaError;
use super::files::{self, Layout};

/// Format version of `index.json`; a reader rejects versions it does not know.
const INDEX_VERSION: u32 = 1;

/// Kind of an issued certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    Root,
    ClientCa,
    Server,
    Client,
    /// A serial the root issued outside acme-dl, recorded only to revoke it.
    Unindexed,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Root => "root",
            Kind::ClientCa => "client-ca",
            Kind::Server => "server",
            Kind::Client => "client",
            Kind::Unindexed => "unindexed",
        }
    }
}

/// The CA that signed a certificate. The root is its own issuer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum IssuerName {
    Root,
    ClientCa,
}

/// Revocation of a certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revoked {
    #[serde(with = "time::serde::rfc3339")]
    pub time: OffsetDateTime,
    /// Reason code name, such as `key-compromise`.
    pub reason: String,
}

/// One issued certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Serial number, lower-case hex without colons, as OpenSSL prints it.
    pub serial: String,
    pub kind: Kind,
    /// Common name of the subject.
    pub identity: String,
    pub issuer: IssuerName,
    /// Validity; unknown only for an unindexed serial.
    #[serde(with = "time::serde::rfc3339::option")]
    pub not_before: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub not_after: Option<OffsetDateTime>,
    /// SHA-256 of the DER certificate, lower-case hex, as `sha256:` access rules take it.
    pub sha256: Option<String>,
    /// Subject alternative names, DNS names and IP addresses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
    /// Serial of the certificate of the same kind and identity that this one replaced.
    pub supersedes: Option<String>,
    pub revoked: Option<Revoked>,
    /// True for a CA adopted by `pki import` rather than generated.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub imported: bool,
    /// SHA-256 of the subject public key info, lower-case hex: a renewal request that
    /// repeats a lost response is recognized by its key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key_sha256: Option<String>,
    /// When the server issued this certificate by renewing the one it supersedes.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    pub renewed: Option<OffsetDateTime>,
}

/// State of a certificate, as `pki list` prints it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Valid,
    Expired,
    Revoked,
    Superseded,
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            State::Valid => "valid",
            State::Expired => "expired",
            State::Revoked => "revoked",
            State::Superseded => "superseded",
        }
    }
}

/// The whole index file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Index {
    pub version: u32,
    /// Default key type of issued certificates, as `--key-type` names it.
    pub key_type: String,
    /// CRL number of the last revocation list written; RFC 5280 section 5.2.3 requires
    /// it to increase with every list of an issuer.
    pub crl_number: u64,
    pub certificates: Vec<Record>,
}

impl Index {
    pub fn new(key_type: String) -> Index {
        Index {
            version: INDEX_VERSION,
            key_type,
            crl_number: 0,
            certificates: Vec::new(),
        }
    }

    /// Reads the index of a PKI directory.
    pub fn load(layout: &Layout) -> Result<Index, CaError> {
        let path = layout.index();
        let text = files::read_text("index", &path)?;
        let index: Index = serde_json::from_str(&text).map_err(|error| {
            CaError::Invalid(format!("index {} is invalid: {error}", path.display()))
        })?;
        if index.version != INDEX_VERSION {
            return Err(CaError::Invalid(format!(
                "index {} has version {}, this acme-dl reads version {INDEX_VERSION}",
                path.display(),
                index.version
            )));
        }
        Ok(index)
    }

    /// Writes the index atomically. The caller holds the directory lock.
    pub fn save(&self, layout: &Layout) -> Result<(), CaError> {
        let mut json = serde_json::to_string_pretty(self)
            .map_err(|error| CaError::Invalid(format!("encoding the index failed: {error}")))?;
        json.push('\n');
        files::write_atomic(&layout.index(), json.as_bytes(), files::PUBLIC_MODE)
    }

    /// Returns the next CRL number and records it.
    pub fn next_crl_number(&mut self) -> u64 {
        self.crl_number += 1;
        self.crl_number
    }

    /// Returns the record that names `serial` as the one it superseded.
    pub fn successor(&self, serial: &str) -> Option<&Record> {
        self.certificates
            .iter()
            .find(|record| record.supersedes.as_deref() == Some(serial))
    }

    /// Finds a record by serial, ignoring case, colons and leading zero bytes.
    pub fn find_serial(&self, serial: &str) -> Option<usize> {
        let wanted = normalize_serial(serial)?;
        self.certificates
            .iter()
            .position(|record| normalize_serial(&record.serial).as_deref() == Some(&wanted))
    }

    /// Returns the newest certificate of `kind` and `identity` that is still valid, which
    /// a new one of the same kind and identity supersedes.
    pub fn current(&self, kind: Kind, identity: &str, now: OffsetDateTime) -> Option<&Record> {
        self.certificates.iter().rev().find(|record| {
            record.kind == kind
                && record.identity == identity
                && self.state(record, now) == State::Valid
        })
    }

    /// Returns the state of a record at `now`: revoked first, then expired, then
    /// superseded when a later record names it.
    pub fn state(&self, record: &Record, now: OffsetDateTime) -> State {
        if record.revoked.is_some() {
            return State::Revoked;
        }
        if record.not_after.is_some_and(|not_after| not_after < now) {
            return State::Expired;
        }
        let superseded = self
            .certificates
            .iter()
            .any(|other| other.supersedes.as_deref() == Some(record.serial.as_str()));
        if superseded {
            return State::Superseded;
        }
        State::Valid
    }
}

/// Returns a serial as lower-case hex without colons or leading zero bytes, or `None`
/// when it is not hex.
pub fn normalize_serial(serial: &str) -> Option<String> {
    let hex: String = serial
        .chars()
        .filter(|c| *c != ':')
        .map(|c| c.to_ascii_lowercase())
        .collect();
    if hex.is_empty() || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let trimmed = hex.trim_start_matches('0');
    Some(if trimmed.is_empty() { "0" } else { trimmed }.to_owned())
}

/// Decodes a hex serial into big-endian bytes.
pub fn serial_bytes(serial: &str) -> Option<Vec<u8>> {
    let mut hex = normalize_serial(serial)?;
    if hex.len() % 2 == 1 {
        hex.insert(0, '0');
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serial_normalization_ignores_case_and_colons() {
        assert_eq!(normalize_serial("0A:bC:01").as_deref(), Some("abc01"));
        assert_eq!(normalize_serial("xyz"), None);
        assert_eq!(serial_bytes("abc01"), Some(vec![0x0a, 0xbc, 0x01]));
    }
}
