//! Certificate generation for the demonstration and the tests: CAs, server, client and
//! ACME-style leaf certificates, made with rcgen and written as PEM.
//!
//! Keys are ECDSA P-256 or Ed25519; RSA keys need an external tool because ring cannot
//! generate them.

use std::net::IpAddr;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType, SerialNumber,
};
use time::{Duration, OffsetDateTime};

/// A failed generation step.
#[derive(Debug)]
pub struct PkiError(pub String);

impl std::fmt::Display for PkiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "generating certificates failed: {}", self.0)
    }
}

impl std::error::Error for PkiError {}

impl From<rcgen::Error> for PkiError {
    fn from(error: rcgen::Error) -> PkiError {
        PkiError(error.to_string())
    }
}

/// Key algorithm of a generated key pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAlgorithm {
    EcdsaP256,
    EcdsaP384,
    Ed25519,
}

impl KeyAlgorithm {
    fn generate(self) -> Result<KeyPair, PkiError> {
        let algorithm = match self {
            KeyAlgorithm::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            KeyAlgorithm::EcdsaP384 => &rcgen::PKCS_ECDSA_P384_SHA384,
            KeyAlgorithm::Ed25519 => &rcgen::PKCS_ED25519,
        };
        Ok(KeyPair::generate_for(algorithm)?)
    }
}

/// A certificate with its private key, both PEM.
#[derive(Debug, Clone)]
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

/// Extended key usage of an issued certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    /// TLS server (serverAuth).
    Server,
    /// TLS client (clientAuth).
    Client,
    /// Both, as Let's Encrypt leaf certificates had until 2025.
    ServerAndClient,
}

/// Parameters of a leaf certificate; `LeafSpec::new` fills sensible defaults.
#[derive(Debug, Clone)]
pub struct LeafSpec {
    pub common_name: String,
    pub dns_names: Vec<String>,
    pub ip_addresses: Vec<IpAddr>,
    pub usage: Usage,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    pub algorithm: KeyAlgorithm,
}

impl LeafSpec {
    /// Creates a spec valid from an hour ago for `days` days, with an ECDSA P-256 key.
    pub fn new(common_name: &str, usage: Usage, days: i64) -> LeafSpec {
        let now = OffsetDateTime::now_utc();
        LeafSpec {
            common_name: common_name.to_owned(),
            dns_names: Vec::new(),
            ip_addresses: Vec::new(),
            usage,
            not_before: now - Duration::hours(1),
            not_after: now + Duration::days(days),
            algorithm: KeyAlgorithm::EcdsaP256,
        }
    }
}

/// A certificate authority that can sign certificates.
#[allow(missing_debug_implementations)]
pub struct Authority {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
}

fn serial() -> SerialNumber {
    let mut bytes = [0u8; 16];
    // NOTE: a failing system random source leaves the serial all zeros; ring reads
    // getrandom(2), which does not fail once the kernel's pool is initialized.
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes);
    bytes[0] &= 0x7f;
    SerialNumber::from_slice(&bytes)
}

fn ca_params(common_name: &str, days: i64) -> Result<CertificateParams, PkiError> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::hours(1);
    params.not_after = now + Duration::days(days);
    params.serial_number = Some(serial());
    Ok(params)
}

impl Authority {
    /// Creates a self-signed root CA valid for `days` days.
    pub fn new_root(common_name: &str, days: i64) -> Result<Authority, PkiError> {
        let params = ca_params(common_name, days)?;
        let key = KeyAlgorithm::EcdsaP256.generate()?;
        let cert = params.self_signed(&key)?;
        Ok(Authority {
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        })
    }

    /// Creates an intermediate CA signed by this one.
    pub fn new_intermediate(&self, common_name: &str, days: i64) -> Result<Authority, PkiError> {
        let params = ca_params(common_name, days)?;
        let key = KeyAlgorithm::EcdsaP256.generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Authority {
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        })
    }

    /// Issues a revocation list, PEM, naming the given serial numbers (big-endian bytes),
    /// valid for `days` days.
    pub fn revocation_list(
        &self,
        serials: &[Vec<u8>],
        number: u64,
        days: i64,
    ) -> Result<String, PkiError> {
        let now = OffsetDateTime::now_utc();
        let params = rcgen::CertificateRevocationListParams {
            this_update: now - Duration::minutes(5),
            next_update: now + Duration::days(days),
            crl_number: SerialNumber::from(number),
            issuing_distribution_point: None,
            revoked_certs: serials
                .iter()
                .map(|serial| rcgen::RevokedCertParams {
                    serial_number: SerialNumber::from_slice(serial),
                    revocation_time: now - Duration::minutes(1),
                    reason_code: Some(rcgen::RevocationReason::KeyCompromise),
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        };
        Ok(params.signed_by(&self.issuer)?.pem()?)
    }

    /// Returns this CA's certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// Issues a leaf certificate with a new key.
    pub fn issue(&self, spec: &LeafSpec) -> Result<Issued, PkiError> {
        let key = spec.algorithm.generate()?;
        let mut params = CertificateParams::new(spec.dns_names.clone())?;
        for ip in &spec.ip_addresses {
            params.subject_alt_names.push(SanType::IpAddress(*ip));
        }
        params
            .distinguished_name
            .push(DnType::CommonName, spec.common_name.as_str());
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = match spec.usage {
            Usage::Server => vec![ExtendedKeyUsagePurpose::ServerAuth],
            Usage::Client => vec![ExtendedKeyUsagePurpose::ClientAuth],
            Usage::ServerAndClient => {
                vec![
                    ExtendedKeyUsagePurpose::ServerAuth,
                    ExtendedKeyUsagePurpose::ClientAuth,
                ]
            }
        };
        params.not_before = spec.not_before;
        params.not_after = spec.not_after;
        params.serial_number = Some(serial());
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}
