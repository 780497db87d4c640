//! Certificate generation for the demonstration and the tests: CAs, server, client and
//! ACME-style leaf certificates, made with rcgen and written as PEM.
//!
//! ring generates the ECDSA and Ed25519 keys. ring cannot generate RSA keys, so the
//! RustCrypto `rsa` crate generates those, and ring signs with every kind.

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
    Rsa2048,
    Rsa3072,
    Rsa4096,
}

impl KeyAlgorithm {
    /// Generates a new key pair of this algorithm.
    pub fn generate(self) -> Result<KeyPair, PkiError> {
        let algorithm = match self {
            KeyAlgorithm::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            KeyAlgorithm::EcdsaP384 => &rcgen::PKCS_ECDSA_P384_SHA384,
            KeyAlgorithm::Ed25519 => &rcgen::PKCS_ED25519,
            KeyAlgorithm::Rsa2048 => return generate_rsa(2048),
            KeyAlgorithm::Rsa3072 => return generate_rsa(3072),
            KeyAlgorithm::Rsa4096 => return generate_rsa(4096),
        };
        Ok(KeyPair::generate_for(algorithm)?)
    }

    /// Returns whether this is an RSA algorithm.
    pub fn is_rsa(self) -> bool {
        matches!(
            self,
            KeyAlgorithm::Rsa2048 | KeyAlgorithm::Rsa3072 | KeyAlgorithm::Rsa4096
        )
    }
}

/// Generates an RSA key with the `rsa` crate and loads it into ring as PKCS#8, so that
/// certificates are signed with RSASSA-PKCS1-v1_5 and SHA-256.
/// The `rsa` crate only generates the key; ring makes every signature with it.
fn generate_rsa(bits: usize) -> Result<KeyPair, PkiError> {
    use rsa::pkcs8::EncodePrivateKey;

    let key = rsa::PrivateKey::new(&mut getrandom::SysRng, bits)
        .map_err(|error| PkiError(format!("generating an RSA {bits} key failed: {error}")))?;
    let der = key
        .to_pkcs8_der()
        .map_err(|error| PkiError(format!("encoding an RSA key as PKCS#8 failed: {error}")))?;
    let pkcs8 = rustls::pki_types::PrivatePkcs8KeyDer::from(der.as_bytes());
    Ok(KeyPair::from_pkcs8_der_and_sign_algo(
        &pkcs8,
        &rcgen::PKCS_RSA_SHA256,
    )?)
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

/// Constraints of a CA certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaRole {
    /// Any depth of CAs and any usage below it.
    General,
    /// Client certificates only: path length 0 and the clientAuth extended key usage.
    ClientIdentities,
}

/// Parameters of a CA certificate; `CaSpec::new` fills the defaults.
#[derive(Debug, Clone)]
pub struct CaSpec {
    pub common_name: String,
    pub algorithm: KeyAlgorithm,
    pub days: i64,
    pub role: CaRole,
}

impl CaSpec {
    /// Creates a general CA spec with an ECDSA P-256 key, valid for `days` days.
    pub fn new(common_name: &str, days: i64) -> CaSpec {
        CaSpec {
            common_name: common_name.to_owned(),
            algorithm: KeyAlgorithm::EcdsaP256,
            days,
            role: CaRole::General,
        }
    }
}

/// One entry of a revocation list.
#[derive(Debug, Clone)]
pub struct Revocation {
    /// Serial number, big-endian bytes.
    pub serial: Vec<u8>,
    pub time: OffsetDateTime,
    pub reason: Option<rcgen::RevocationReason>,
}

/// A certificate authority that can sign certificates.
#[allow(missing_debug_implementations)]
pub struct Authority {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
    /// Key identifier that revocation lists name in their authority key identifier: the
    /// certificate's own subject key identifier, as RFC 5280 section 5.2.1 requires.
    key_id: rcgen::KeyIdMethod,
}

fn serial() -> SerialNumber {
    let mut bytes = [0u8; 16];
    // NOTE: a failing system random source leaves the serial all zeros; ring reads
    // getrandom(2), which does not fail once the kernel's pool is initialized.
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes);
    bytes[0] &= 0x7f;
    SerialNumber::from_slice(&bytes)
}

fn ca_params(spec: &CaSpec) -> Result<CertificateParams, PkiError> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params
        .distinguished_name
        .push(DnType::CommonName, spec.common_name.as_str());
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    match spec.role {
        CaRole::General => params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained),
        CaRole::ClientIdentities => {
            params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        }
    }
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::hours(1);
    params.not_after = now + Duration::days(spec.days);
    params.serial_number = Some(serial());
    params.use_authority_key_identifier_extension = true;
    Ok(params)
}

/// Returns the subject key identifier of a PEM certificate, when it has one.
fn subject_key_id(cert_pem: &str) -> Option<Vec<u8>> {
    use x509_parser::extensions::ParsedExtension;

    let (_, pem) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes()).ok()?;
    let cert = pem.parse_x509().ok()?;
    cert.extensions()
        .iter()
        .find_map(|extension| match extension.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(id) => Some(id.0.to_vec()),
            _ => None,
        })
}

impl Authority {
    /// Creates a self-signed root CA valid for `days` days, with an ECDSA P-256 key.
    pub fn new_root(common_name: &str, days: i64) -> Result<Authority, PkiError> {
        Authority::new_root_with(&CaSpec::new(common_name, days))
    }

    /// Creates a self-signed root CA.
    pub fn new_root_with(spec: &CaSpec) -> Result<Authority, PkiError> {
        let mut params = ca_params(spec)?;
        // A self-signed certificate has no authority to identify.
        params.use_authority_key_identifier_extension = false;
        let key = spec.algorithm.generate()?;
        let cert = params.self_signed(&key)?;
        Ok(Authority {
            cert_pem: cert.pem(),
            key_id: params.key_identifier_method.clone(),
            issuer: Issuer::new(params, key),
        })
    }

    /// Creates an intermediate CA signed by this one, with an ECDSA P-256 key.
    pub fn new_intermediate(&self, common_name: &str, days: i64) -> Result<Authority, PkiError> {
        self.new_intermediate_with(&CaSpec::new(common_name, days))
    }

    /// Creates an intermediate CA signed by this one.
    pub fn new_intermediate_with(&self, spec: &CaSpec) -> Result<Authority, PkiError> {
        let params = ca_params(spec)?;
        let key = spec.algorithm.generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Authority {
            cert_pem: cert.pem(),
            key_id: params.key_identifier_method.clone(),
            issuer: Issuer::new(params, key),
        })
    }

    /// Loads an existing CA from its certificate, PEM, and its key. The issued
    /// certificates take their issuer name and authority key identifier from it.
    pub fn from_pem(cert_pem: &str, key: KeyPair) -> Result<Authority, PkiError> {
        let issuer = Issuer::from_ca_cert_pem(cert_pem, key)?;
        let key_id = subject_key_id(cert_pem).map_or(rcgen::KeyIdMethod::Sha256, |id| {
            rcgen::KeyIdMethod::PreSpecified(id)
        });
        Ok(Authority {
            issuer,
            cert_pem: cert_pem.to_owned(),
            key_id,
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
        let entries: Vec<Revocation> = serials
            .iter()
            .map(|serial| Revocation {
                serial: serial.clone(),
                time: now - Duration::minutes(1),
                reason: Some(rcgen::RevocationReason::KeyCompromise),
            })
            .collect();
        self.revocation_list_of(&entries, number, days)
    }

    /// Issues a revocation list, PEM, of `entries`, with CRL number `number`, valid for
    /// `days` days.
    pub fn revocation_list_of(
        &self,
        entries: &[Revocation],
        number: u64,
        days: i64,
    ) -> Result<String, PkiError> {
        let now = OffsetDateTime::now_utc();
        let params = rcgen::CertificateRevocationListParams {
            this_update: now - Duration::minutes(5),
            next_update: now + Duration::days(days),
            crl_number: SerialNumber::from(number),
            issuing_distribution_point: None,
            revoked_certs: entries
                .iter()
                .map(|entry| rcgen::RevokedCertParams {
                    serial_number: SerialNumber::from_slice(&entry.serial),
                    revocation_time: entry.time,
                    reason_code: entry.reason,
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: self.key_id.clone(),
        };
        Ok(params.signed_by(&self.issuer)?.pem()?)
    }

    /// Returns this CA's private key as PKCS#8 DER.
    pub fn key_pkcs8_der(&self) -> Vec<u8> {
        self.issuer.key().serialize_der()
    }

    /// Returns this CA's certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// Issues a leaf certificate with a new key.
    pub fn issue(&self, spec: &LeafSpec) -> Result<Issued, PkiError> {
        let key = spec.algorithm.generate()?;
        let cert_pem = self.issue_for_key(spec, &key)?;
        Ok(Issued {
            cert_pem,
            key_pem: key.serialize_pem(),
        })
    }

    /// Issues a leaf certificate for a public key whose private key stays with its
    /// holder, such as the key of a certificate signing request, and returns it as PEM.
    /// `spec.algorithm` only decides the key usages that depend on the key type.
    pub fn issue_for_key(
        &self,
        spec: &LeafSpec,
        public_key: &impl rcgen::PublicKeyData,
    ) -> Result<String, PkiError> {
        let mut params = CertificateParams::new(spec.dns_names.clone())?;
        for ip in &spec.ip_addresses {
            params.subject_alt_names.push(SanType::IpAddress(*ip));
        }
        params
            .distinguished_name
            .push(DnType::CommonName, spec.common_name.as_str());
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        // TLS 1.2 RSA key exchange encrypts to the server's key (RFC 5246 section 7.4.7.1).
        if spec.algorithm.is_rsa() && spec.usage != Usage::Client {
            params.key_usages.push(KeyUsagePurpose::KeyEncipherment);
        }
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
        Ok(params.signed_by(public_key, &self.issuer)?.pem())
    }
}
