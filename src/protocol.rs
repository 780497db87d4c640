//! Wire types of the acme_dl protocol, version 1, shared with the deployed Go pair.
//!
//! Field names and messages are fixed by that pair: renaming any of them breaks old peers.
//! Unknown fields are ignored in both directions so that either side can add fields.

use serde::{Deserialize, Serialize};

/// The three files of a lineage that the protocol hashes and transfers, in download order.
pub const SET_FILES: [SetFile; 3] = [SetFile::Fullchain, SetFile::Privkey, SetFile::Chain];

/// The hash sent for a file that does not exist locally: 64 zeros.
pub const MISSING_FILE_HASH: &str =
    "0000000000000000000000000000000000000000000000000000000000000000";

/// Message of a check response when the client's files differ from the server's.
pub const MESSAGE_UPDATE_REQUIRED: &str = "Update required: Certificate hashes differ.";

/// Message of a check response when the client's files are current.
pub const MESSAGE_UP_TO_DATE: &str = "Certificates are up to date.";

/// Path of the check endpoint.
pub const CHECK_PATH: &str = "/api/check";

/// Path prefix of the download endpoint: `/download/<lineage>/<file>`.
pub const DOWNLOAD_PREFIX: &str = "/download/";

/// Path of the renewal endpoint, an acme-dl extension: a client sends a certificate
/// signing request for a new key and gets a new certificate for its own identity. The
/// deployed Go server responds with 404, which the client reports as a server that does
/// not renew client certificates.
pub const RENEW_PATH: &str = "/api/renew-identity";

/// One file of a Certbot lineage that the protocol names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SetFile {
    Fullchain,
    Privkey,
    Chain,
    /// The leaf alone. The deployed pair ignores it, acme-dl's server offers it for download.
    Cert,
}

impl SetFile {
    /// Returns the file name Certbot gives this file in `live/<lineage>/`.
    pub fn file_name(self) -> &'static str {
        match self {
            SetFile::Fullchain => "fullchain.pem",
            SetFile::Privkey => "privkey.pem",
            SetFile::Chain => "chain.pem",
            SetFile::Cert => "cert.pem",
        }
    }

    /// Parses a download file name; anything but the four Certbot names is `None`.
    pub fn from_file_name(name: &str) -> Option<SetFile> {
        [
            SetFile::Fullchain,
            SetFile::Privkey,
            SetFile::Chain,
            SetFile::Cert,
        ]
        .into_iter()
        .find(|file| file.file_name() == name)
    }

    /// Returns true for the private key, which gets restrictive modes everywhere.
    pub fn is_private_key(self) -> bool {
        self == SetFile::Privkey
    }
}

/// SHA-256 digests, in lower-case hex, of the three files of a set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetHashes {
    pub fullchain_hash: String,
    pub privkey_hash: String,
    pub chain_hash: String,
}

impl SetHashes {
    /// Returns the hash announced for one of the three protocol files.
    pub fn get(&self, file: SetFile) -> Option<&str> {
        match file {
            SetFile::Fullchain => Some(&self.fullchain_hash),
            SetFile::Privkey => Some(&self.privkey_hash),
            SetFile::Chain => Some(&self.chain_hash),
            SetFile::Cert => None,
        }
    }

    /// Checks that every hash is 64 lower-case hex characters.
    pub fn validate(&self) -> Result<(), String> {
        for file in SET_FILES {
            let hash = self.get(file).unwrap_or_default();
            if !is_sha256_hex(hash) {
                return Err(format!(
                    "{} hash {hash:?} is not 64 lower-case hex characters",
                    file.file_name()
                ));
            }
        }
        Ok(())
    }
}

/// Body of `POST /api/check`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckRequest {
    /// Lineage name. The deployed pair calls it the domain.
    pub domain: String,
    pub hashes: SetHashes,
}

/// Body of a 200 response to `POST /api/check`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckResponse {
    pub update_required: bool,
    pub message: String,
    /// The server's hashes, present only when an update is required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_hashes: Option<SetHashes>,
}

impl CheckResponse {
    /// Compares the client's hashes with the server's and builds the response.
    pub fn compare(client: &SetHashes, server: &SetHashes) -> CheckResponse {
        if client == server {
            CheckResponse {
                update_required: false,
                message: MESSAGE_UP_TO_DATE.to_owned(),
                server_hashes: None,
            }
        } else {
            CheckResponse {
                update_required: true,
                message: MESSAGE_UPDATE_REQUIRED.to_owned(),
                server_hashes: Some(server.clone()),
            }
        }
    }
}

/// Body of `POST /api/renew-identity`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenewRequest {
    /// PKCS#10 certificate signing request, PEM, signed with the client's new key.
    pub csr: String,
}

/// Body of a 200 response to `POST /api/renew-identity`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenewResponse {
    /// The new certificate followed by the CA certificate that signed it, PEM.
    pub certificate: String,
}

/// Returns the lower-case hex SHA-256 digest of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, data);
    let mut hex = String::with_capacity(64);
    for byte in digest.as_ref() {
        hex.push(char::from_digit(u32::from(byte >> 4), 16).unwrap_or('0'));
        hex.push(char::from_digit(u32::from(byte & 0xf), 16).unwrap_or('0'));
    }
    hex
}

fn is_sha256_hex(text: &str) -> bool {
    text.len() == 64
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hashes(fill: char) -> SetHashes {
        let hash: String = std::iter::repeat_n(fill, 64).collect();
        SetHashes {
            fullchain_hash: hash.clone(),
            privkey_hash: hash.clone(),
            chain_hash: hash,
        }
    }

    #[test]
    fn check_request_uses_deployed_field_names() {
        let request = CheckRequest {
            domain: "example.com".into(),
            hashes: hashes('a'),
        };
        let json: serde_json::Value = serde_json::to_value(&request).unwrap();
        assert_eq!(json["domain"], "example.com");
        assert_eq!(json["hashes"]["fullchain_hash"], "a".repeat(64));
        assert_eq!(json["hashes"]["privkey_hash"], "a".repeat(64));
        assert_eq!(json["hashes"]["chain_hash"], "a".repeat(64));
    }

    #[test]
    fn check_request_ignores_unknown_fields() {
        let body = format!(
            r#"{{"domain":"example.com","client_version":"9","hashes":{{"fullchain_hash":"{0}",
            "privkey_hash":"{0}","chain_hash":"{0}","cert_hash":"{0}"}}}}"#,
            MISSING_FILE_HASH
        );
        let request: CheckRequest = serde_json::from_str(&body).unwrap();
        assert_eq!(request.domain, "example.com");
        assert_eq!(request.hashes.privkey_hash, MISSING_FILE_HASH);
    }

    #[test]
    fn response_up_to_date_has_no_server_hashes() {
        let response = CheckResponse::compare(&hashes('b'), &hashes('b'));
        let json = serde_json::to_value(&response).unwrap();
        assert_eq!(json["update_required"], false);
        assert_eq!(json["message"], "Certificates are up to date.");
        assert!(json.get("server_hashes").is_none());
    }

    #[test]
    fn response_update_required_carries_server_hashes() {
        let response = CheckResponse::compare(&hashes('0'), &hashes('c'));
        let json = serde_json::to_value(&response).unwrap();
        assert_eq!(json["update_required"], true);
        assert_eq!(
            json["message"],
            "Update required: Certificate hashes differ."
        );
        assert_eq!(json["server_hashes"]["chain_hash"], "c".repeat(64));
    }

    #[test]
    fn response_from_old_server_without_hashes_parses() {
        let body = r#"{"update_required":true,"message":"x","extra":[1,2]}"#;
        let response: CheckResponse = serde_json::from_str(body).unwrap();
        assert!(response.update_required);
        assert!(response.server_hashes.is_none());
    }

    #[test]
    fn missing_file_hash_is_64_zeros() {
        assert_eq!(MISSING_FILE_HASH.len(), 64);
        assert!(MISSING_FILE_HASH.bytes().all(|b| b == b'0'));
    }

    #[test]
    fn sha256_hex_matches_known_digest() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn hash_validation_rejects_upper_case_and_short() {
        let mut bad = hashes('a');
        bad.chain_hash = "A".repeat(64);
        assert!(bad.validate().is_err());
        bad.chain_hash = "a".repeat(63);
        assert!(bad.validate().is_err());
        assert!(hashes('f').validate().is_ok());
    }
}
