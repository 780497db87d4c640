//! Private key files of the PKI: generation by key type, PEM encoding, optional
//! passphrase encryption as PKCS#8 (PBES2), and loading of keys made by OpenSSL.

use std::num::NonZeroU32;
use std::path::Path;

use clap::ValueEnum;
use rcgen::KeyPair;
use ring::rand::SystemRandom;
use rustls::pki_types::PrivatePkcs8KeyDer;

use super::CaError;
use crate::cli::KeyType;
use crate::pki::KeyAlgorithm;

/// PBKDF2-HMAC-SHA256 iterations of an encrypted root key. A command decrypts the key at
/// most once, so the count is far higher than the 10,000 of PKCS#12 outputs, which Java
/// consumers derive again on every load.
const KEY_FILE_ITERATIONS: NonZeroU32 = NonZeroU32::new(600_000).unwrap();

const OID_RSA_ENCRYPTION: &[u64] = &[1, 2, 840, 113549, 1, 1, 1];
const OID_EC_PUBLIC_KEY: &[u64] = &[1, 2, 840, 10045, 2, 1];

/// Returns the generator algorithm of a key type.
pub fn algorithm(key_type: KeyType) -> KeyAlgorithm {
    match key_type {
        KeyType::EcdsaP256 => KeyAlgorithm::EcdsaP256,
        KeyType::EcdsaP384 => KeyAlgorithm::EcdsaP384,
        KeyType::Ed25519 => KeyAlgorithm::Ed25519,
        KeyType::Rsa2048 => KeyAlgorithm::Rsa2048,
        KeyType::Rsa3072 => KeyAlgorithm::Rsa3072,
        KeyType::Rsa4096 => KeyAlgorithm::Rsa4096,
    }
}

/// Returns the command-line name of a key type, such as `ecdsa-p256`.
pub fn key_type_name(key_type: KeyType) -> String {
    key_type
        .to_possible_value()
        .map(|value| value.get_name().to_owned())
        .unwrap_or_default()
}

/// Parses a key type name as [`key_type_name`] writes it.
pub fn parse_key_type(name: &str) -> Option<KeyType> {
    KeyType::from_str(name, false).ok()
}

/// Reads a passphrase file: its first line, without the line ending, as
/// `openssl -passin file:FILE` reads it.
pub fn read_passphrase(path: &Path) -> Result<String, CaError> {
    let text = std::fs::read_to_string(path).map_err(|error| {
        CaError::Invalid(format!(
            "reading passphrase file {}: {error}",
            path.display()
        ))
    })?;
    let line = text.lines().next().unwrap_or_default();
    if line.is_empty() {
        return Err(CaError::Invalid(format!(
            "passphrase file {} is empty: write the passphrase on its first line",
            path.display()
        )));
    }
    Ok(line.to_owned())
}

/// Encodes a PKCS#8 key as PEM, encrypted with PBES2 (PBKDF2-HMAC-SHA256, AES-256-CBC)
/// when a passphrase is given.
pub fn encode_key(pkcs8_der: &[u8], passphrase: Option<&str>) -> Result<Vec<u8>, CaError> {
    let pkcs8_der = &ed25519_v1(pkcs8_der);
    let Some(passphrase) = passphrase else {
        return Ok(crate::pem::encode("PRIVATE KEY", pkcs8_der));
    };
    let (algorithm, ciphertext) = crate::pkcs12::encrypt_pbes2(
        pkcs8_der,
        passphrase,
        KEY_FILE_ITERATIONS,
        &SystemRandom::new(),
    )
    .map_err(|error| CaError::Invalid(format!("encrypting the root key failed: {error}")))?;
    // EncryptedPrivateKeyInfo (RFC 5958 section 3).
    let der = yasna::construct_der(|writer| {
        writer.write_sequence(|writer| {
            writer.next().write_der(&algorithm);
            writer.next().write_bytes(&ciphertext);
        });
    });
    Ok(crate::pem::encode("ENCRYPTED PRIVATE KEY", &der))
}

/// Re-encodes a PEM private key from rcgen for the key file, as [`encode_key`] does.
pub fn encode_key_pem(key_pem: &str) -> Result<Vec<u8>, CaError> {
    let blocks = crate::pem::parse(key_pem.as_bytes())
        .map_err(|error| CaError::Invalid(format!("generated key: {error}")))?;
    let block = blocks
        .first()
        .ok_or_else(|| CaError::Invalid("generated key: no PEM block".to_owned()))?;
    encode_key(&block.der, None)
}

/// Rewrites an Ed25519 PKCS#8 key as version 1 (RFC 8410 section 7), without the public
/// key that ring adds. OpenSSL 3.0 rejects ring's version 2 form; ring reads both. Other
/// keys are returned unchanged.
fn ed25519_v1(pkcs8_der: &[u8]) -> Vec<u8> {
    const OID_ED25519: &[u64] = &[1, 3, 101, 112];
    let parsed = yasna::parse_ber(pkcs8_der, |reader| {
        reader.read_sequence(|reader| {
            let _version = reader.next().read_u8()?;
            let algorithm = reader
                .next()
                .read_sequence(|reader| reader.next().read_oid())?;
            let private_key = reader.next().read_bytes()?;
            // Attributes [0] and the public key [1] may follow; both are dropped.
            let _rest = reader.read_optional(|reader| reader.read_der())?;
            let _rest = reader.read_optional(|reader| reader.read_der())?;
            Ok((algorithm, private_key))
        })
    });
    match parsed {
        Ok((algorithm, private_key))
            if algorithm == yasna::models::ObjectIdentifier::from_slice(OID_ED25519) =>
        {
            yasna::construct_der(|writer| {
                writer.write_sequence(|writer| {
                    writer.next().write_u8(0);
                    writer
                        .next()
                        .write_sequence(|writer| writer.next().write_oid(&algorithm));
                    writer.next().write_bytes(&private_key);
                });
            })
        }
        _ => pkcs8_der.to_vec(),
    }
}

/// Returns whether a key file contains an encrypted key.
pub fn is_encrypted(path: &Path) -> Result<bool, CaError> {
    let text = super::files::read_text("key", path)?;
    Ok(text.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----"))
}

/// Loads a private key file: PKCS#8, PKCS#1 (`RSA PRIVATE KEY`), SEC1 (`EC PRIVATE KEY`),
/// or encrypted PKCS#8 with `passphrase`.
pub fn load_key(path: &Path, passphrase: Option<&str>) -> Result<KeyPair, CaError> {
    let invalid = |reason: String| CaError::Invalid(format!("key {}: {reason}", path.display()));
    let text = super::files::read_text("key", path)?;
    let blocks = crate::pem::parse(text.as_bytes()).map_err(|error| invalid(error.to_string()))?;
    let Some(block) = blocks
        .iter()
        .find(|block| block.label.ends_with("PRIVATE KEY"))
    else {
        return Err(invalid("no PRIVATE KEY block".to_owned()));
    };
    if block.encrypted {
        return Err(invalid(
            "legacy PEM encryption (Proc-Type) is not supported: convert it with \
             openssl pkcs8 -topk8 -v2 aes-256-cbc"
                .to_owned(),
        ));
    }
    let pkcs8 = match block.label.as_str() {
        "PRIVATE KEY" => block.der.clone(),
        "RSA PRIVATE KEY" => wrap_pkcs8(OID_RSA_ENCRYPTION, None, &block.der),
        "EC PRIVATE KEY" => {
            let curve = sec1_curve(&block.der).map_err(invalid)?;
            wrap_pkcs8(OID_EC_PUBLIC_KEY, Some(&curve), &block.der)
        }
        "ENCRYPTED PRIVATE KEY" => {
            let Some(passphrase) = passphrase else {
                return Err(invalid(
                    "the key is encrypted: pass --passphrase-file FILE".to_owned(),
                ));
            };
            decrypt_pkcs8(&block.der, passphrase).map_err(invalid)?
        }
        other => return Err(invalid(format!("unsupported PEM label {other}"))),
    };
    KeyPair::try_from(&PrivatePkcs8KeyDer::from(pkcs8)).map_err(|error| {
        invalid(format!(
            "unsupported or invalid key ({error}): acme-dl signs with RSA, ECDSA P-256 or \
             P-384, and Ed25519 keys"
        ))
    })
}

fn decrypt_pkcs8(der: &[u8], passphrase: &str) -> Result<Vec<u8>, String> {
    let (algorithm, ciphertext) = yasna::parse_der(der, |reader| {
        reader.read_sequence(|reader| {
            let algorithm = reader.next().read_der()?;
            let ciphertext = reader.next().read_bytes()?;
            Ok((algorithm, ciphertext))
        })
    })
    .map_err(|error| format!("invalid encrypted PKCS#8: {error}"))?;
    crate::pkcs12::decrypt_pbes2(&algorithm, &ciphertext, passphrase)
}

/// Wraps a PKCS#1 or SEC1 key into a PKCS#8 PrivateKeyInfo (RFC 5208 section 5).
fn wrap_pkcs8(
    algorithm: &[u64],
    curve: Option<&yasna::models::ObjectIdentifier>,
    key: &[u8],
) -> Vec<u8> {
    yasna::construct_der(|writer| {
        writer.write_sequence(|writer| {
            writer.next().write_u8(0);
            writer.next().write_sequence(|writer| {
                writer
                    .next()
                    .write_oid(&yasna::models::ObjectIdentifier::from_slice(algorithm));
                match curve {
                    Some(curve) => writer.next().write_oid(curve),
                    // RFC 3279 section 2.3.1: rsaEncryption parameters are NULL.
                    None => writer.next().write_null(),
                }
            });
            writer.next().write_bytes(key);
        });
    })
}

/// Reads the named curve from the parameters of a SEC1 ECPrivateKey (RFC 5915 section 3).
fn sec1_curve(der: &[u8]) -> Result<yasna::models::ObjectIdentifier, String> {
    yasna::parse_der(der, |reader| {
        reader.read_sequence(|reader| {
            let _version = reader.next().read_u8()?;
            let _key = reader.next().read_bytes()?;
            let curve = reader.read_optional(|reader| {
                reader.read_tagged(yasna::Tag::context(0), |reader| reader.read_oid())
            })?;
            // The public key [1] follows; ring requires it and reads it from the wrapped key.
            reader.read_optional(|reader| {
                reader.read_tagged(yasna::Tag::context(1), |reader| reader.read_bitvec_bytes())
            })?;
            Ok(curve)
        })
    })
    .map_err(|error| format!("invalid SEC1 EC key: {error}"))?
    .ok_or_else(|| "SEC1 EC key without a named curve".to_owned())
}
