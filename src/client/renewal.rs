//! Renewal of the client's own certificate through the server, over the run's mutual-TLS
//! connection.
//!
//! When the certificate enters its renewal window, the client makes a new key of the same
//! type and sends a signing request for it. It checks that the response is a certificate
//! for that key, with the same identity and issuer, and then switches both files.
//!
//! The new key is written to `KEY.new` before the request, so a run that loses the
//! response sends the same key again and the server recognizes it. The certificate goes
//! to `CERT.new`, and then the key and the certificate are renamed over the old ones. A run interrupted between the
//! two renames leaves a key that matches `CERT.new`, which the next run finishes
//! installing before it loads its certificate.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rcgen::{DnType, KeyPair, PublicKeyData};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use time::OffsetDateTime;
use tracing::{info, warn};
use x509_parser::oid_registry::{
    OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_PKCS1_RSAENCRYPTION,
    OID_SIG_ED25519,
};
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::public_key::PublicKey;

use super::{Connection, SyncError};
use crate::config::IdentityRenewal;
use crate::pki::KeyAlgorithm;
use crate::protocol::{RENEW_PATH, RenewRequest, RenewResponse};
use crate::tls::TlsFiles;

/// The client certificate in use, as the renewal needs it.
#[derive(Debug, Clone)]
pub struct CurrentCertificate {
    pub common_name: String,
    pub serial: String,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    /// DER of the leaf's issuer name.
    issuer_name: Vec<u8>,
    /// The certificate after the leaf in the file, normally the intermediate.
    issuer_cert: Option<Vec<u8>>,
    algorithm: Option<KeyAlgorithm>,
}

impl CurrentCertificate {
    /// Reads the leaf, and the certificate after it, from the client's certificate file.
    pub fn read(path: &Path) -> Result<CurrentCertificate, String> {
        let pem =
            std::fs::read(path).map_err(|error| format!("reading {}: {error}", path.display()))?;
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<_, _>>()
            .map_err(|error| {
                format!("{} is not a PEM certificate file: {error}", path.display())
            })?;
        let Some(leaf) = chain.first() else {
            return Err(format!("{} holds no certificate", path.display()));
        };
        let (_, cert) = X509Certificate::from_der(leaf.as_ref())
            .map_err(|error| format!("{}: invalid certificate: {error}", path.display()))?;
        Ok(CurrentCertificate {
            common_name: cert
                .subject()
                .iter_common_name()
                .next()
                .and_then(|name| name.as_str().ok())
                .unwrap_or_default()
                .to_owned(),
            serial: cert.raw_serial_as_string().replace(':', ""),
            not_before: cert.validity().not_before.to_datetime(),
            not_after: cert.validity().not_after.to_datetime(),
            issuer_name: cert.issuer().as_raw().to_vec(),
            issuer_cert: chain.get(1).map(|der| der.as_ref().to_vec()),
            algorithm: key_algorithm(&cert),
        })
    }

    /// Returns the time from which the certificate is renewed.
    pub fn renew_from(&self, settings: &IdentityRenewal) -> OffsetDateTime {
        let before = match settings.before {
            Some(before) => time::Duration::try_from(before).unwrap_or(time::Duration::MAX),
            None => (self.not_after - self.not_before) / 3,
        };
        self.not_after - before
    }
}

/// Maps the key of a certificate to the generator of a key of the same type.
fn key_algorithm(cert: &X509Certificate<'_>) -> Option<KeyAlgorithm> {
    let spki = cert.public_key();
    let algorithm = &spki.algorithm.algorithm;
    if *algorithm == OID_SIG_ED25519 {
        return Some(KeyAlgorithm::Ed25519);
    }
    if *algorithm == OID_KEY_TYPE_EC_PUBLIC_KEY {
        let curve = spki.algorithm.parameters.as_ref()?.as_oid().ok()?;
        if curve == OID_EC_P256 {
            return Some(KeyAlgorithm::EcdsaP256);
        }
        if curve == OID_NIST_EC_P384 {
            return Some(KeyAlgorithm::EcdsaP384);
        }
        return None;
    }
    if *algorithm == OID_PKCS1_RSAENCRYPTION {
        let Ok(PublicKey::RSA(key)) = spki.parsed() else {
            return None;
        };
        return Some(match key.key_size() {
            ..=2048 => KeyAlgorithm::Rsa2048,
            2049..=3072 => KeyAlgorithm::Rsa3072,
            _ => KeyAlgorithm::Rsa4096,
        });
    }
    None
}

/// A certificate the server issued by renewal and the client installed.
#[derive(Debug, Clone)]
pub struct Renewed {
    pub previous_serial: String,
    pub serial: String,
    pub not_after: OffsetDateTime,
}

/// Returns the certificate and key paths with symbolic links resolved, so that a renewal
/// replaces the files the links point at and keeps the links.
fn link_targets(tls: &TlsFiles) -> TlsFiles {
    let target = |path: &Path| std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
    TlsFiles {
        cert: target(&tls.cert),
        key: target(&tls.key),
        ca: tls.ca.clone(),
    }
}

/// Path of the pending copy of a file: `FILE.new`.
fn pending(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".new");
    PathBuf::from(name)
}

/// Finishes a renewal that a previous run left between its two renames, and removes a
/// pending certificate that matches no key. Runs before the certificate is loaded.
pub fn finish_interrupted(tls: &TlsFiles) -> Result<(), SyncError> {
    let tls = &link_targets(tls);
    let cert_pending = pending(&tls.cert);
    if !cert_pending.exists() {
        return Ok(());
    }
    let local = |action: &str, path: &Path, error: std::io::Error| {
        SyncError::Local(format!("{action} {}: {error}", path.display()))
    };
    let cert_key = std::fs::read(&cert_pending)
        .ok()
        .and_then(|pem| leaf_public_key(&pem));
    let key_pending = pending(&tls.key);
    let pending_key = read_key(&key_pending).map(|key| key.subject_public_key_info());
    let installed_key = read_key(&tls.key).map(|key| key.subject_public_key_info());
    match cert_key {
        Some(spki) if pending_key.as_ref() == Some(&spki) => {
            // Both files are staged and match: the switch had not started.
            switch(tls).map_err(|(path, error)| local("installing", &path, error))?;
        }
        Some(spki) if installed_key.as_ref() == Some(&spki) => {
            // The key was renamed, the certificate was not.
            std::fs::rename(&cert_pending, &tls.cert)
                .map_err(|error| local("installing", &tls.cert, error))?;
            sync_parent(&tls.cert)
                .map_err(|error| local("flushing the directory of", &tls.cert, error))?;
        }
        _ => {
            warn!(
                file = %cert_pending.display(),
                "removing a pending client certificate that matches no key"
            );
            std::fs::remove_file(&cert_pending)
                .map_err(|error| local("removing", &cert_pending, error))?;
            return Ok(());
        }
    }
    info!(
        cert = %tls.cert.display(),
        key = %tls.key.display(),
        "finished installing a client certificate renewed by an interrupted run"
    );
    Ok(())
}

/// Renews the client certificate through the server and installs the new key and
/// certificate.
pub async fn renew(
    connection: &mut Connection,
    tls: &TlsFiles,
    current: &CurrentCertificate,
) -> Result<Renewed, SyncError> {
    let tls = &link_targets(tls);
    let key = pending_key(tls, current)?;
    let reply = match send_request(connection, current, &key).await {
        Ok(reply) => reply,
        Err(failure) => {
            if let SyncError::Rejected { .. } = failure {
                // The server rejected the request, so it signed nothing for this key. The
                // next attempt starts from a new one.
                let path = pending(&tls.key);
                if std::fs::remove_file(&path).is_ok() {
                    info!(key = %path.display(), "removed the pending key of a rejected renewal");
                }
            }
            return Err(failure);
        }
    };
    // From here the server has signed, so a failure keeps the pending key. The next run
    // then sends the same key again, and the server recognizes the repeat.
    let response: RenewResponse =
        serde_json::from_slice(&reply.body).map_err(|error| SyncError::Rejected {
            reason: format!("the server's renewal response is not valid JSON: {error}"),
        })?;
    let new_cert = check_response(&response.certificate, &key, current).map_err(|reason| {
        SyncError::Rejected {
            reason: format!("the server's renewal response was not installed: {reason}"),
        }
    })?;
    install(tls, response.certificate.as_bytes())?;
    Ok(Renewed {
        previous_serial: current.serial.clone(),
        serial: new_cert.serial,
        not_after: new_cert.not_after,
    })
}

/// Sends the signing request for `key` and returns the server's 200 response.
async fn send_request(
    connection: &mut Connection,
    current: &CurrentCertificate,
    key: &KeyPair,
) -> Result<super::connection::Reply, SyncError> {
    let csr = signing_request(key, &current.common_name)?;
    let body = serde_json::to_vec(&RenewRequest { csr })
        .map_err(|error| SyncError::Config(format!("encoding the renewal request: {error}")))?;
    let reply = connection.post_json(RENEW_PATH, body).await?;
    if reply.status == hyper::StatusCode::NOT_FOUND {
        return Err(SyncError::Rejected {
            reason: format!(
                "the server does not renew client certificates (HTTP 404): enable [renewal] \
                 in its configuration, or issue a new certificate with acme-dl pki client \
                 --dir PKI_DIR --name {} before {}",
                current.common_name,
                current.not_after.date()
            ),
        });
    }
    super::ensure_ok(&reply, "client certificate renewal")?;
    Ok(reply)
}

/// Returns the key of a renewal: the pending one of an earlier run whose response was
/// lost, else a new key of the current key's type, written to `KEY.new` before use.
fn pending_key(tls: &TlsFiles, current: &CurrentCertificate) -> Result<KeyPair, SyncError> {
    let path = pending(&tls.key);
    let private = std::fs::symlink_metadata(&path)
        .is_ok_and(|meta| meta.is_file() && meta.mode() & 0o077 == 0);
    if private && let Some(key) = read_key(&path) {
        info!(key = %path.display(), "renewing with the pending key of an earlier run");
        return Ok(key);
    }
    if std::fs::symlink_metadata(&path).is_ok() {
        warn!(
            key = %path.display(),
            "removing a pending key that is unreadable, not a file, or open to other users"
        );
        std::fs::remove_file(&path)
            .map_err(|error| SyncError::Local(format!("removing {}: {error}", path.display())))?;
    }
    let algorithm = current.algorithm.ok_or_else(|| {
        SyncError::Config(format!(
            "the client certificate {} has a key type that acme-dl cannot renew; issue a \
             new one with acme-dl pki client",
            tls.cert.display()
        ))
    })?;
    let key = algorithm
        .generate()
        .map_err(|error| SyncError::Local(format!("generating a new key: {error}")))?;
    let pem = crate::ca::encode_private_key(&key.serialize_der(), None)
        .map_err(|error| SyncError::Local(format!("encoding the new key: {error}")))?;
    let mode = std::fs::metadata(&tls.key).map_or(0o600, |meta| meta.mode() & 0o7777);
    write_new(&path, &pem, mode, std::fs::metadata(&tls.key).ok().as_ref())
        .map_err(|error| SyncError::Local(format!("writing {}: {error}", path.display())))?;
    Ok(key)
}

fn signing_request(key: &KeyPair, common_name: &str) -> Result<String, SyncError> {
    let build = || -> Result<String, rcgen::Error> {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.serialize_request(key)?.pem()
    };
    build().map_err(|error| SyncError::Local(format!("building the signing request: {error}")))
}

/// Serial and expiry of the certificate in a checked response.
struct NewCertificate {
    serial: String,
    not_after: OffsetDateTime,
}

/// Checks that the response is a certificate chain for `key`, with the current identity,
/// the clientAuth usage, valid now, and signed by the current certificate's issuer.
fn check_response(
    pem: &str,
    key: &KeyPair,
    current: &CurrentCertificate,
) -> Result<NewCertificate, String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|error| format!("not PEM certificates: {error}"))?;
    let (Some(leaf_der), Some(issuer_der)) = (chain.first(), chain.get(1)) else {
        return Err("expected the new certificate followed by its issuer".to_owned());
    };
    let (_, leaf) = X509Certificate::from_der(leaf_der.as_ref())
        .map_err(|error| format!("invalid certificate: {error}"))?;
    let (_, issuer) = X509Certificate::from_der(issuer_der.as_ref())
        .map_err(|error| format!("invalid issuer certificate: {error}"))?;

    if leaf.public_key().raw != key.subject_public_key_info().as_slice() {
        return Err("the certificate is not for the key this client sent".to_owned());
    }

    let name = leaf
        .subject()
        .iter_common_name()
        .next()
        .and_then(|name| name.as_str().ok())
        .unwrap_or_default();
    if name != current.common_name {
        return Err(format!(
            "the certificate names {name:?}, not {:?}",
            current.common_name
        ));
    }

    let client_auth = leaf
        .extended_key_usage()
        .ok()
        .flatten()
        .is_some_and(|usage| usage.value.client_auth);
    if !client_auth {
        return Err("the certificate lacks the clientAuth extended key usage".to_owned());
    }
    if !leaf.validity().is_valid() {
        return Err("the certificate is not valid now".to_owned());
    }

    if leaf.issuer().as_raw() != current.issuer_name.as_slice() {
        return Err(format!(
            "the certificate's issuer {} differs from the current certificate's",
            leaf.issuer()
        ));
    }
    if current
        .issuer_cert
        .as_ref()
        .is_some_and(|known| known.as_slice() != issuer_der.as_ref())
    {
        return Err("the issuer certificate differs from the one in the current file".to_owned());
    }
    leaf.verify_signature(Some(issuer.public_key()))
        .map_err(|error| format!("the issuer's signature does not verify: {error}"))?;
    Ok(NewCertificate {
        serial: leaf.raw_serial_as_string().replace(':', ""),
        not_after: leaf.validity().not_after.to_datetime(),
    })
}

/// Writes the new certificate to `CERT.new`, then renames the pending key and the
/// certificate over the old ones.
fn install(tls: &TlsFiles, chain_pem: &[u8]) -> Result<(), SyncError> {
    let cert_pending = pending(&tls.cert);
    let old = std::fs::metadata(&tls.cert).ok();
    let mode = old.as_ref().map_or(0o644, |meta| meta.mode() & 0o7777);
    if cert_pending.exists() {
        std::fs::remove_file(&cert_pending).map_err(|error| {
            SyncError::Local(format!("removing {}: {error}", cert_pending.display()))
        })?;
    }
    write_new(&cert_pending, chain_pem, mode, old.as_ref()).map_err(|error| {
        SyncError::Local(format!("writing {}: {error}", cert_pending.display()))
    })?;
    switch(tls).map_err(|(path, error)| {
        SyncError::Local(format!(
            "installing {}: {error}; the next run finishes the switch",
            path.display()
        ))
    })
}

/// Renames `KEY.new` over the key, then `CERT.new` over the certificate, and flushes
/// both directories.
fn switch(tls: &TlsFiles) -> Result<(), (PathBuf, std::io::Error)> {
    for path in [&tls.key, &tls.cert] {
        std::fs::rename(pending(path), path).map_err(|error| (path.clone(), error))?;
        sync_parent(path).map_err(|error| (path.clone(), error))?;
    }
    Ok(())
}

/// Creates `path` with O_EXCL and mode 0600, writes and flushes it, then gives it the
/// owner and group of `like` and `mode`.
fn write_new(
    path: &Path,
    contents: &[u8],
    mode: u32,
    like: Option<&std::fs::Metadata>,
) -> std::io::Result<()> {
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)?;
        file.write_all(contents)?;
        if let Some(like) = like {
            rustix::fs::fchown(
                &file,
                Some(rustix::process::Uid::from_raw(like.uid())),
                Some(rustix::process::Gid::from_raw(like.gid())),
            )?;
        }
        file.set_permissions(std::fs::Permissions::from_mode(mode))?;
        file.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(path);
    }
    result?;
    sync_parent(path)
}

fn sync_parent(path: &Path) -> std::io::Result<()> {
    let parent = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    File::open(parent)?.sync_all()
}

fn read_key(path: &Path) -> Option<KeyPair> {
    let pem = std::fs::read_to_string(path).ok()?;
    KeyPair::from_pem(&pem).ok()
}

fn leaf_public_key(pem: &[u8]) -> Option<Vec<u8>> {
    let der = CertificateDer::pem_slice_iter(pem).next()?.ok()?;
    let (_, cert) = X509Certificate::from_der(der.as_ref()).ok()?;
    Some(cert.public_key().raw.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::{Authority, LeafSpec, Usage};

    /// Writes a certificate for a new key into `dir` as `NAME.crt` and `NAME.key`.
    fn issue(ca: &Authority, dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let key = KeyPair::generate().unwrap();
        let cert = ca
            .issue_for_key(&LeafSpec::new("web1", Usage::Client, 30), &key)
            .unwrap();
        let cert_path = dir.join(format!("{name}.crt"));
        let key_path = dir.join(format!("{name}.key"));
        std::fs::write(&cert_path, cert).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        (cert_path, key_path)
    }

    #[test]
    fn staged_pair_is_installed_together() {
        let dir = tempfile::tempdir().unwrap();
        let ca = Authority::new_root("renewal unit test CA", 30).unwrap();
        let (cert, key) = issue(&ca, dir.path(), "client");
        let (new_cert, new_key) = issue(&ca, dir.path(), "staged");
        std::fs::rename(&new_cert, pending(&cert)).unwrap();
        std::fs::rename(&new_key, pending(&key)).unwrap();
        let staged_cert = std::fs::read(pending(&cert)).unwrap();
        let staged_key = std::fs::read(pending(&key)).unwrap();
        let tls = TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
            ca: dir.path().join("ca.crt"),
        };

        finish_interrupted(&tls).unwrap();

        assert_eq!(std::fs::read(&cert).unwrap(), staged_cert);
        assert_eq!(std::fs::read(&key).unwrap(), staged_key);
        assert!(!pending(&cert).exists());
        assert!(!pending(&key).exists());
    }

    #[test]
    fn pending_key_alone_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let ca = Authority::new_root("renewal unit test CA", 30).unwrap();
        let (cert, key) = issue(&ca, dir.path(), "client");
        let (_, new_key) = issue(&ca, dir.path(), "staged");
        std::fs::rename(&new_key, pending(&key)).unwrap();
        let before = std::fs::read(&cert).unwrap();
        let tls = TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
            ca: dir.path().join("ca.crt"),
        };

        finish_interrupted(&tls).unwrap();

        assert_eq!(std::fs::read(&cert).unwrap(), before);
        assert!(pending(&key).exists());
    }
}
