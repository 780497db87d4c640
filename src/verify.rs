//! Verification of a downloaded certificate set before it may replace an installed one.
//!
//! Every check works on the bytes as downloaded. It covers the announced hashes, the PEM
//! structure, the key matching the leaf, and the full chain being the leaf followed by the
//! chain. It also checks that the first chain certificate signed the leaf, the validity
//! period, and the names.
//! Writing the set to disk is left to `install`.

use std::fmt;
use std::time::SystemTime;

use rustls::pki_types::{
    CertificateDer, PrivateKeyDer, PrivatePkcs1KeyDer, PrivatePkcs8KeyDer, PrivateSec1KeyDer,
};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use crate::lineage::LineageName;
use crate::pem::{self, PemBlock};
use crate::protocol::{SetFile, SetHashes, sha256_hex};

/// The downloaded bytes of a set.
#[derive(Debug, Clone)]
pub struct DownloadedSet {
    pub fullchain: Vec<u8>,
    /// `None` for a set fetched without its key.
    pub privkey: Option<Vec<u8>>,
    pub chain: Vec<u8>,
}

impl DownloadedSet {
    /// Returns the bytes of one protocol file, `None` for a key that was not fetched.
    pub fn get(&self, file: SetFile) -> Option<&[u8]> {
        match file {
            SetFile::Fullchain | SetFile::Cert => Some(&self.fullchain),
            SetFile::Privkey => self.privkey.as_deref(),
            SetFile::Chain => Some(&self.chain),
        }
    }
}

/// The check that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    Hash,
    Pem,
    PrivateKey,
    KeyMismatch,
    Chain,
    Signature,
    Validity,
    Names,
}

/// A failed verification, naming the check and the file.
#[derive(Debug, Clone)]
pub struct VerifyError {
    pub check: Check,
    pub file: SetFile,
    pub detail: String,
}

impl fmt::Display for VerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.file.file_name(), self.detail)
    }
}

impl std::error::Error for VerifyError {}

fn fail(check: Check, file: SetFile, detail: impl Into<String>) -> VerifyError {
    VerifyError {
        check,
        file,
        detail: detail.into(),
    }
}

/// Facts about a verified set, for logs and for installing `cert.pem`.
#[derive(Debug, Clone)]
pub struct VerifiedSet {
    /// The leaf certificate alone, as a PEM block.
    pub leaf_pem: Vec<u8>,
    /// Serial number of the leaf, lower-case hex.
    pub serial: String,
    /// Start of the leaf's validity, seconds since the Unix epoch.
    pub not_before: i64,
    /// End of the leaf's validity, seconds since the Unix epoch.
    pub not_after: i64,
    /// The leaf followed by the chain, DER.
    pub certificates_der: Vec<Vec<u8>>,
    /// The private key as PKCS#8 DER, whatever its PEM form was; `None` without a key.
    pub key_pkcs8_der: Option<Vec<u8>>,
}

/// Verifies a downloaded set for `lineage` at time `now`.
///
/// `announced` is what the check response promised; `names` are the names the leaf must
/// cover, by default the lineage name without Certbot's `-NNNN` suffix.
pub fn verify_set(
    lineage: &LineageName,
    set: &DownloadedSet,
    announced: Option<&SetHashes>,
    names: &[String],
    now: SystemTime,
) -> Result<VerifiedSet, VerifyError> {
    if let Some(announced) = announced {
        for file in crate::protocol::SET_FILES {
            let Some(bytes) = set.get(file) else { continue };
            let actual = sha256_hex(bytes);
            let expected = announced.get(file).unwrap_or_default();
            if actual != expected {
                return Err(fail(
                    Check::Hash,
                    file,
                    format!(
                        "SHA-256 {actual} differs from {expected} announced by the check; the set \
                         probably changed on the server during the download"
                    ),
                ));
            }
        }
    }
    verify_contents(lineage, set, names, Some(now))
}

/// Verifies a set installed on the client as `verify_set` verifies a download, except for
/// the validity period: the caller judges `not_before` and `not_after` of the result
/// against thresholds of its own. `cert`, when given, must be the leaf alone.
pub fn verify_installed(
    lineage: &LineageName,
    set: &DownloadedSet,
    cert: Option<&[u8]>,
    names: &[String],
) -> Result<VerifiedSet, VerifyError> {
    let verified = verify_contents(lineage, set, names, None)?;
    if let Some(cert) = cert {
        let leaf = CertificateDer::from(verified.certificates_der[0].as_slice());
        check_cert_is_leaf(cert, &leaf)?;
    }
    Ok(verified)
}

/// Runs every check of `verify_set` after the hashes; the validity period only when `now`
/// is given.
fn verify_contents(
    lineage: &LineageName,
    set: &DownloadedSet,
    names: &[String],
    now: Option<SystemTime>,
) -> Result<VerifiedSet, VerifyError> {
    let fullchain = certificates(SetFile::Fullchain, &set.fullchain)?;
    let chain = certificates(SetFile::Chain, &set.chain)?;
    let key = set.privkey.as_deref().map(private_key).transpose()?;

    if fullchain.len() != chain.len() + 1 || fullchain[1..] != chain[..] {
        return Err(fail(
            Check::Chain,
            SetFile::Fullchain,
            format!(
                "expected the leaf followed by the {} certificate(s) of chain.pem, found {} \
                 certificate(s) that do not match",
                chain.len(),
                fullchain.len()
            ),
        ));
    }
    let leaf_der = &fullchain[0];
    let leaf = parse_certificate(SetFile::Fullchain, leaf_der)?;
    let issuer = parse_certificate(SetFile::Chain, &chain[0])?;

    let key_pkcs8_der = match key {
        Some(key) => {
            let der = to_pkcs8(&key, &leaf);
            check_key_matches(leaf_der, key, lineage)?;
            Some(der)
        }
        None => None,
    };
    if leaf.issuer() != issuer.subject() {
        return Err(fail(
            Check::Signature,
            SetFile::Chain,
            format!(
                "the first chain certificate ({}) is not the issuer of the leaf ({})",
                issuer.subject(),
                leaf.issuer()
            ),
        ));
    }
    leaf.verify_signature(Some(issuer.public_key()))
        .map_err(|error| {
            fail(
                Check::Signature,
                SetFile::Chain,
                format!(
                    "the leaf's signature does not verify with the first chain certificate: {error}"
                ),
            )
        })?;
    if let Some(now) = now {
        check_validity(&leaf, now)?;
    }
    check_names(&leaf, names)?;

    Ok(VerifiedSet {
        leaf_pem: pem::encode("CERTIFICATE", leaf_der.as_ref()),
        serial: leaf.raw_serial_as_string().replace(':', ""),
        not_before: leaf.validity().not_before.timestamp(),
        not_after: leaf.validity().not_after.timestamp(),
        certificates_der: fullchain
            .iter()
            .map(|cert| cert.as_ref().to_vec())
            .collect(),
        key_pkcs8_der,
    })
}

/// Formats seconds since the Unix epoch as RFC 3339 in UTC, as the rest of acme-dl prints
/// dates.
fn rfc3339(seconds: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(seconds)
        .ok()
        .and_then(|date| {
            date.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| seconds.to_string())
}

/// Converts a PKCS#1 (RSA) or SEC1 (EC) key to PKCS#8 (RFC 5208), taking the EC curve
/// from the leaf's public key, which the key must match anyway.
fn to_pkcs8(key: &PrivateKeyDer<'_>, leaf: &X509Certificate<'_>) -> Vec<u8> {
    const RSA_ENCRYPTION: &[u64] = &[1, 2, 840, 113_549, 1, 1, 1];
    const EC_PUBLIC_KEY: &[u64] = &[1, 2, 840, 10_045, 2, 1];
    let wrap = |algorithm: &[u64], curve: Option<Vec<u64>>, inner: &[u8]| {
        yasna::construct_der(|writer| {
            writer.write_sequence(|writer| {
                writer.next().write_u8(0);
                writer.next().write_sequence(|writer| {
                    writer
                        .next()
                        .write_oid(&yasna::models::ObjectIdentifier::from_slice(algorithm));
                    match &curve {
                        Some(curve) => writer
                            .next()
                            .write_oid(&yasna::models::ObjectIdentifier::from_slice(curve)),
                        None => writer.next().write_null(),
                    }
                });
                writer.next().write_bytes(inner);
            })
        })
    };
    match key {
        PrivateKeyDer::Pkcs8(der) => der.secret_pkcs8_der().to_vec(),
        PrivateKeyDer::Pkcs1(der) => wrap(RSA_ENCRYPTION, None, der.secret_pkcs1_der()),
        PrivateKeyDer::Sec1(der) => {
            let curve = leaf
                .public_key()
                .algorithm
                .parameters
                .as_ref()
                .and_then(|parameters| parameters.as_oid().ok())
                .and_then(|oid| oid.iter().map(|arcs| arcs.collect::<Vec<u64>>()));
            wrap(EC_PUBLIC_KEY, curve, der.secret_sec1_der())
        }
        _ => Vec::new(),
    }
}

/// Checks that the files of a set on the server belong together: every file is PEM, the
/// key matches the leaf, the full chain is the leaf followed by the chain, and `cert.pem`
/// (when present) is the leaf. Validity and names are the client's business.
pub fn check_consistency(
    fullchain: &[u8],
    privkey: &[u8],
    chain: &[u8],
    cert: Option<&[u8]>,
    lineage: &LineageName,
) -> Result<(), VerifyError> {
    let full = certificates(SetFile::Fullchain, fullchain)?;
    let chain = certificates(SetFile::Chain, chain)?;
    let key = private_key(privkey)?;
    if full.len() != chain.len() + 1 || full[1..] != chain[..] {
        return Err(fail(
            Check::Chain,
            SetFile::Chain,
            "fullchain.pem is not the leaf followed by chain.pem",
        ));
    }
    if let Some(cert) = cert {
        check_cert_is_leaf(cert, &full[0])?;
    }
    check_key_matches(&full[0], key, lineage)
}

fn check_cert_is_leaf(cert: &[u8], leaf: &CertificateDer<'_>) -> Result<(), VerifyError> {
    let certs = certificates(SetFile::Cert, cert)?;
    if certs.len() != 1 || certs[0] != *leaf {
        return Err(fail(
            Check::Chain,
            SetFile::Cert,
            "cert.pem is not the leaf of fullchain.pem",
        ));
    }
    Ok(())
}

/// Returns the names a lineage's certificate must cover by default: the lineage name
/// without Certbot's `-NNNN` suffix.
pub fn default_names(lineage: &LineageName) -> Vec<String> {
    let name = lineage.as_str();
    let base = match name.rsplit_once('-') {
        Some((base, suffix)) if suffix.len() == 4 && suffix.bytes().all(|b| b.is_ascii_digit()) => {
            base
        }
        _ => name,
    };
    vec![base.to_ascii_lowercase()]
}

fn certificates(file: SetFile, data: &[u8]) -> Result<Vec<CertificateDer<'static>>, VerifyError> {
    let blocks = pem::parse(data).map_err(|error| fail(Check::Pem, file, error.to_string()))?;
    let mut certs = Vec::with_capacity(blocks.len());
    for block in blocks {
        if block.label != "CERTIFICATE" {
            return Err(fail(
                Check::Pem,
                file,
                format!(
                    "unexpected {} block; only CERTIFICATE blocks belong here",
                    block.label
                ),
            ));
        }
        certs.push(CertificateDer::from(block.der));
    }
    if certs.is_empty() {
        return Err(fail(Check::Pem, file, "no CERTIFICATE block found"));
    }
    Ok(certs)
}

fn private_key(data: &[u8]) -> Result<PrivateKeyDer<'static>, VerifyError> {
    let file = SetFile::Privkey;
    let blocks = pem::parse(data).map_err(|error| fail(Check::Pem, file, error.to_string()))?;
    let mut keys = blocks
        .into_iter()
        .filter(|block| block.label != "EC PARAMETERS");
    let Some(block) = keys.next() else {
        return Err(fail(
            Check::PrivateKey,
            file,
            "no private key found in the file",
        ));
    };
    if keys.next().is_some() {
        return Err(fail(
            Check::PrivateKey,
            file,
            "more than one PEM block; expected one private key",
        ));
    }
    key_from_block(block)
}

fn key_from_block(block: PemBlock) -> Result<PrivateKeyDer<'static>, VerifyError> {
    let file = SetFile::Privkey;
    if block.encrypted || block.label == "ENCRYPTED PRIVATE KEY" {
        return Err(fail(
            Check::PrivateKey,
            file,
            "the private key is encrypted; services need it unencrypted, so it cannot be installed",
        ));
    }
    match block.label.as_str() {
        "PRIVATE KEY" => Ok(PrivatePkcs8KeyDer::from(block.der).into()),
        "RSA PRIVATE KEY" => Ok(PrivatePkcs1KeyDer::from(block.der).into()),
        "EC PRIVATE KEY" => Ok(PrivateSec1KeyDer::from(block.der).into()),
        other => Err(fail(
            Check::PrivateKey,
            file,
            format!(
                "{other} block is not a private key; expected PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY"
            ),
        )),
    }
}

fn parse_certificate<'a>(
    file: SetFile,
    der: &'a CertificateDer<'_>,
) -> Result<X509Certificate<'a>, VerifyError> {
    X509Certificate::from_der(der.as_ref())
        .map(|(_, cert)| cert)
        .map_err(|error| fail(Check::Pem, file, format!("invalid certificate: {error}")))
}

fn check_key_matches(
    leaf: &CertificateDer<'_>,
    key: PrivateKeyDer<'static>,
    lineage: &LineageName,
) -> Result<(), VerifyError> {
    let signing_key = rustls::crypto::ring::sign::any_supported_type(&key).map_err(|error| {
        fail(
            Check::PrivateKey,
            SetFile::Privkey,
            format!("unsupported or invalid private key (RSA, ECDSA P-256/P-384 and Ed25519 are supported): {error}"),
        )
    })?;
    let certified = rustls::sign::CertifiedKey::new(vec![leaf.clone().into_owned()], signing_key);
    certified.keys_match().map_err(|error| {
        fail(
            Check::KeyMismatch,
            SetFile::Privkey,
            format!("private key does not match certificate of lineage {lineage} ({error})"),
        )
    })
}

fn check_validity(leaf: &X509Certificate<'_>, now: SystemTime) -> Result<(), VerifyError> {
    let now = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let validity = leaf.validity();
    if now < validity.not_before.timestamp() {
        return Err(fail(
            Check::Validity,
            SetFile::Fullchain,
            format!(
                "the certificate is not valid before {}",
                rfc3339(validity.not_before.timestamp())
            ),
        ));
    }
    if now > validity.not_after.timestamp() {
        return Err(fail(
            Check::Validity,
            SetFile::Fullchain,
            format!(
                "the certificate expired on {}",
                rfc3339(validity.not_after.timestamp())
            ),
        ));
    }
    Ok(())
}

fn check_names(leaf: &X509Certificate<'_>, names: &[String]) -> Result<(), VerifyError> {
    let mut presented: Vec<String> = Vec::new();
    if let Ok(Some(san)) = leaf.subject_alternative_name() {
        for name in &san.value.general_names {
            if let GeneralName::DNSName(dns) = name {
                presented.push(dns.to_ascii_lowercase());
            }
        }
    }
    for name in names {
        let name = name.to_ascii_lowercase();
        if !presented.iter().any(|pattern| name_covered(pattern, &name)) {
            return Err(fail(
                Check::Names,
                SetFile::Fullchain,
                format!("the certificate does not cover {name}; it is valid for {presented:?}"),
            ));
        }
    }
    Ok(())
}

/// Returns true when a certificate name covers a lineage name. A wildcard covers one label
/// and, because Certbot names a wildcard lineage after its base domain, the base domain.
fn name_covered(pattern: &str, name: &str) -> bool {
    if pattern == name {
        return true;
    }
    let Some(base) = pattern.strip_prefix("*.") else {
        return false;
    };
    name == base
        || name
            .split_once('.')
            .is_some_and(|(label, rest)| !label.is_empty() && rest == base)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::{Authority, KeyAlgorithm, LeafSpec, Usage};

    struct Fixture {
        lineage: LineageName,
        set: DownloadedSet,
    }

    fn fixture(algorithm: KeyAlgorithm) -> Fixture {
        let root = Authority::new_root("verify test root", 30).unwrap();
        let intermediate = root
            .new_intermediate("verify test intermediate", 30)
            .unwrap();
        let mut spec = LeafSpec::new("example.com", Usage::Server, 30);
        spec.dns_names = vec!["example.com".into(), "*.example.com".into()];
        spec.algorithm = algorithm;
        let leaf = intermediate.issue(&spec).unwrap();
        Fixture {
            lineage: LineageName::parse("example.com-0001").unwrap(),
            set: DownloadedSet {
                fullchain: format!("{}{}", leaf.cert_pem, intermediate.cert_pem()).into_bytes(),
                privkey: Some(leaf.key_pem.into_bytes()),
                chain: intermediate.cert_pem().as_bytes().to_vec(),
            },
        }
    }

    fn verify(fixture: &Fixture) -> Result<VerifiedSet, VerifyError> {
        let names = default_names(&fixture.lineage);
        verify_set(
            &fixture.lineage,
            &fixture.set,
            None,
            &names,
            SystemTime::now(),
        )
    }

    #[test]
    fn valid_sets_pass_for_each_key_type() {
        for algorithm in [
            KeyAlgorithm::EcdsaP256,
            KeyAlgorithm::EcdsaP384,
            KeyAlgorithm::Ed25519,
        ] {
            let verified = verify(&fixture(algorithm)).unwrap();
            assert!(
                verified
                    .leaf_pem
                    .starts_with(b"-----BEGIN CERTIFICATE-----")
            );
        }
    }

    #[test]
    fn key_of_another_set_is_a_mismatch() {
        let mut first = fixture(KeyAlgorithm::EcdsaP256);
        let second = fixture(KeyAlgorithm::EcdsaP256);
        first.set.privkey = second.set.privkey;
        let error = verify(&first).unwrap_err();
        assert_eq!(error.check, Check::KeyMismatch);
        assert!(
            error
                .to_string()
                .contains("private key does not match certificate"),
            "{error}"
        );
        assert!(error.to_string().contains("example.com-0001"), "{error}");
    }

    #[test]
    fn chain_of_another_set_is_rejected() {
        let mut first = fixture(KeyAlgorithm::EcdsaP256);
        first.set.chain = fixture(KeyAlgorithm::EcdsaP256).set.chain;
        assert_eq!(verify(&first).unwrap_err().check, Check::Chain);
    }

    #[test]
    fn wrong_issuer_signature_is_rejected() {
        let mut first = fixture(KeyAlgorithm::EcdsaP256);
        let other = fixture(KeyAlgorithm::EcdsaP256);
        let leaf_end = first.set.fullchain.len() - first.set.chain.len();
        let mut fullchain = first.set.fullchain[..leaf_end].to_vec();
        fullchain.extend_from_slice(&other.set.chain);
        first.set.fullchain = fullchain;
        first.set.chain = other.set.chain;
        // Same subject names, different key: the issuer check passes, the signature does not.
        assert_eq!(verify(&first).unwrap_err().check, Check::Signature);
    }

    #[test]
    fn hash_mismatch_names_the_file() {
        let fixture = fixture(KeyAlgorithm::EcdsaP256);
        let mut hashes = SetHashes {
            fullchain_hash: sha256_hex(&fixture.set.fullchain),
            privkey_hash: sha256_hex(fixture.set.privkey.as_deref().unwrap_or_default()),
            chain_hash: sha256_hex(&fixture.set.chain),
        };
        hashes.chain_hash = "0".repeat(64);
        let names = default_names(&fixture.lineage);
        let error = verify_set(
            &fixture.lineage,
            &fixture.set,
            Some(&hashes),
            &names,
            SystemTime::now(),
        )
        .unwrap_err();
        assert_eq!(error.check, Check::Hash);
        assert_eq!(error.file, SetFile::Chain);
    }

    #[test]
    fn encrypted_and_missing_keys_are_explicit() {
        let mut fixture = fixture(KeyAlgorithm::EcdsaP256);
        fixture.set.privkey = Some(
            b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nAQID\n-----END ENCRYPTED PRIVATE KEY-----\n"
                .to_vec(),
        );
        let error = verify(&fixture).unwrap_err();
        assert_eq!(error.check, Check::PrivateKey);
        assert!(error.to_string().contains("encrypted"), "{error}");

        fixture.set.privkey = Some(b"no key here\n".to_vec());
        let error = verify(&fixture).unwrap_err();
        assert!(error.to_string().contains("no private key"), "{error}");
    }

    #[test]
    fn expired_and_future_certificates_are_rejected() {
        let fixture = fixture(KeyAlgorithm::EcdsaP256);
        let names = default_names(&fixture.lineage);
        let later = SystemTime::now() + std::time::Duration::from_secs(60 * 86_400);
        let error = verify_set(&fixture.lineage, &fixture.set, None, &names, later).unwrap_err();
        assert_eq!(error.check, Check::Validity);
        let earlier = SystemTime::now() - std::time::Duration::from_secs(86_400);
        let error = verify_set(&fixture.lineage, &fixture.set, None, &names, earlier).unwrap_err();
        assert_eq!(error.check, Check::Validity);
    }

    #[test]
    fn installed_set_returns_validity_and_checks_cert() {
        let fixture = fixture(KeyAlgorithm::EcdsaP256);
        let names = default_names(&fixture.lineage);
        let verified = verify_installed(&fixture.lineage, &fixture.set, None, &names).unwrap();
        assert!(verified.not_before < verified.not_after);

        let leaf = verified.leaf_pem;
        let with_cert = verify_installed(&fixture.lineage, &fixture.set, Some(&leaf), &names);
        assert!(with_cert.is_ok(), "{with_cert:?}");

        let chain = &fixture.set.chain;
        let error =
            verify_installed(&fixture.lineage, &fixture.set, Some(chain), &names).unwrap_err();
        assert_eq!(error.check, Check::Chain);
        assert_eq!(error.file, SetFile::Cert);
    }

    #[test]
    fn names_must_cover_lineage() {
        let fixture = fixture(KeyAlgorithm::EcdsaP256);
        let names = vec!["other.example".to_owned()];
        let error = verify_set(
            &fixture.lineage,
            &fixture.set,
            None,
            &names,
            SystemTime::now(),
        )
        .unwrap_err();
        assert_eq!(error.check, Check::Names);
        assert!(error.to_string().contains("other.example"), "{error}");
    }

    #[test]
    fn wildcard_coverage_rules() {
        assert!(name_covered("*.example.com", "www.example.com"));
        assert!(name_covered("*.example.com", "example.com"));
        assert!(!name_covered("*.example.com", "a.b.example.com"));
        assert!(!name_covered("*.example.com", "example.org"));
        assert!(name_covered("example.com", "example.com"));
    }

    #[test]
    fn certbot_suffix_is_stripped_from_default_names() {
        let lineage = LineageName::parse("Example.com-0003").unwrap();
        assert_eq!(default_names(&lineage), vec!["example.com".to_owned()]);
        let lineage = LineageName::parse("shop-2024").unwrap();
        assert_eq!(default_names(&lineage), vec!["shop".to_owned()]);
    }
}
