//! PKCS#12 (PFX) output of a certificate set, for Java, Windows and appliance consumers.
//!
//! The layout is the one `openssl pkcs12 -export` writes in OpenSSL 3.0 (compared with
//! 3.0.19). The authenticated safe has two parts: the certificates in PBES2-encrypted data,
//! then the private key in a PKCS8ShroudedKeyBag. Both use PBES2 with PBKDF2-HMAC-SHA256
//! and AES-256-CBC. An HMAC-SHA256 MAC, keyed by the PKCS#12 KDF of RFC 7292 appendix B.2,
//! covers the whole authenticated safe. The leaf certificate bag and the key bag carry the
//! same friendlyName and localKeyId attributes, so readers pair the key with its leaf.
//!
//! yasna writes the DER. ring provides PBKDF2, HMAC, SHA-256 and the random source, and the
//! aes and cbc crates provide AES-256-CBC, which ring lacks.

use std::fmt;
use std::num::NonZeroU32;

use aes::Aes256;
use cbc::cipher::block_padding::Pkcs7;
use cbc::cipher::{BlockModeDecrypt, BlockModeEncrypt, KeyIvInit};
use ring::digest;
use ring::hmac;
use ring::pbkdf2;
use ring::rand::{SecureRandom, SystemRandom};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use yasna::models::ObjectIdentifier;
use yasna::{DERWriter, Tag};

/// Iteration count of PBKDF2 and of the MAC key derivation.
///
/// OpenSSL 3.0 writes 2048 and OpenJDK 17 writes 10,000 (the `keystore.pkcs12.*IterationCount`
/// defaults in its `java.security`). Java consumers derive the keys again on every keystore
/// load, so this follows Java's count rather than a password-hashing count in the hundreds of
/// thousands.
const ITERATIONS: NonZeroU32 = NonZeroU32::new(10_000).unwrap();

/// Salt length of PBKDF2 and of the MAC key derivation. OpenSSL 3.0 writes 8 bytes, and 16
/// random bytes make a salt repeated across files negligible.
const SALT_LEN: usize = 16;

const AES_256_KEY_LEN: usize = 32;
const AES_BLOCK_LEN: usize = 16;

/// SHA-256 input block length in bytes, the `v` of RFC 7292 appendix B.2.
const SHA256_BLOCK_LEN: usize = 64;

const OID_DATA: &[u64] = &[1, 2, 840, 113549, 1, 7, 1];
const OID_ENCRYPTED_DATA: &[u64] = &[1, 2, 840, 113549, 1, 7, 6];
const OID_PBES2: &[u64] = &[1, 2, 840, 113549, 1, 5, 13];
const OID_PBKDF2: &[u64] = &[1, 2, 840, 113549, 1, 5, 12];
const OID_HMAC_WITH_SHA256: &[u64] = &[1, 2, 840, 113549, 2, 9];
const OID_AES_256_CBC: &[u64] = &[2, 16, 840, 1, 101, 3, 4, 1, 42];
const OID_SHA256: &[u64] = &[2, 16, 840, 1, 101, 3, 4, 2, 1];
const OID_PKCS8_SHROUDED_KEY_BAG: &[u64] = &[1, 2, 840, 113549, 1, 12, 10, 1, 2];
const OID_CERT_BAG: &[u64] = &[1, 2, 840, 113549, 1, 12, 10, 1, 3];
const OID_X509_CERTIFICATE: &[u64] = &[1, 2, 840, 113549, 1, 9, 22, 1];
const OID_FRIENDLY_NAME: &[u64] = &[1, 2, 840, 113549, 1, 9, 20];
const OID_LOCAL_KEY_ID: &[u64] = &[1, 2, 840, 113549, 1, 9, 21];

/// An input that cannot go into a PKCS#12 file, or a failed random source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pkcs12Error {
    /// The chain is empty, so there is no leaf certificate.
    MissingLeaf,
    /// The chain entry at `index` (0 is the leaf) is not a DER X.509 certificate.
    InvalidCertificate { index: usize, reason: String },
    /// The key is not PKCS#8 DER of an RSA, ECDSA P-256/P-384 or Ed25519 key.
    InvalidPrivateKey(String),
    /// The private key does not belong to the leaf certificate.
    KeyMismatch(String),
    /// The password is empty or contains U+0000.
    InvalidPassword(String),
    /// The friendly name is empty or has a character that a BMPString cannot encode.
    InvalidFriendlyName(String),
    /// The system random source failed.
    RandomFailed,
}

impl fmt::Display for Pkcs12Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pkcs12Error::MissingLeaf => {
                write!(f, "building PKCS#12 failed: the certificate chain is empty")
            }
            Pkcs12Error::InvalidCertificate { index, reason } => write!(
                f,
                "building PKCS#12 failed: certificate {index} of the chain (0 is the leaf) is invalid: {reason}"
            ),
            Pkcs12Error::InvalidPrivateKey(reason) => write!(
                f,
                "building PKCS#12 failed: invalid private key, expected PKCS#8 DER of an RSA, ECDSA P-256/P-384 or Ed25519 key: {reason}"
            ),
            Pkcs12Error::KeyMismatch(reason) => write!(
                f,
                "building PKCS#12 failed: the private key does not match the leaf certificate: {reason}"
            ),
            Pkcs12Error::InvalidPassword(reason) => {
                write!(f, "building PKCS#12 failed: invalid password: {reason}")
            }
            Pkcs12Error::InvalidFriendlyName(reason) => {
                write!(
                    f,
                    "building PKCS#12 failed: invalid friendly name: {reason}"
                )
            }
            Pkcs12Error::RandomFailed => write!(
                f,
                "building PKCS#12 failed: the system random source failed to produce a salt or IV"
            ),
        }
    }
}

impl std::error::Error for Pkcs12Error {}

/// Builds a PKCS#12 (PFX) file holding the leaf certificate, its chain and the private key.
///
/// `chain_der[0]` is the leaf and the rest follow in the given order. The key must be PKCS#8
/// DER of a key that matches the leaf. Both the key and the certificates are encrypted under
/// `password`, which also keys the MAC. `friendly_name` becomes the friendlyName of the key
/// and of the leaf, which Java's keytool shows as the alias. The keytool of OpenJDK 17.0.15
/// rejected non-ASCII passwords, also on files that OpenSSL wrote, so Java consumers need an
/// ASCII password.
///
/// NOTE: the key goes in unchanged. OpenSSL 3.0 cannot read a PKCS#8 v2 key (one that
/// carries its public key, as ring writes Ed25519 keys), inside a PFX or not, while Java 17
/// reads it. `openssl pkcs8 -topk8` in OpenSSL 3.0 writes v1.
pub fn build(
    chain_der: &[Vec<u8>],
    private_key_pkcs8_der: &[u8],
    password: &str,
    friendly_name: &str,
) -> Result<Vec<u8>, Pkcs12Error> {
    check_password(password)?;
    check_friendly_name(friendly_name)?;
    let Some(leaf) = chain_der.first() else {
        return Err(Pkcs12Error::MissingLeaf);
    };
    for (index, cert) in chain_der.iter().enumerate() {
        check_certificate(index, cert)?;
    }
    check_key_matches(leaf, private_key_pkcs8_der)?;

    let random = SystemRandom::new();
    // Like OpenSSL, the localKeyId is the SHA-1 fingerprint of the leaf. It only pairs the
    // key bag with the certificate bag, so SHA-1's collision weakness does not matter here.
    let local_key_id = digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, leaf);
    let attributes = BagAttributes {
        friendly_name,
        local_key_id: local_key_id.as_ref(),
    };

    let mut cert_bags = Vec::with_capacity(chain_der.len());
    cert_bags.push(cert_bag(leaf, Some(&attributes)));
    for cert in &chain_der[1..] {
        cert_bags.push(cert_bag(cert, None));
    }
    let certs_content_info = encrypted_content_info(&safe_contents(&cert_bags), password, &random)?;

    let key_bag = shrouded_key_bag(private_key_pkcs8_der, password, &attributes, &random)?;
    let key_content_info = data_content_info(&safe_contents(&[key_bag]));

    let authenticated_safe = yasna::construct_der(|writer| {
        writer.write_sequence_of(|writer| {
            writer.next().write_der(&certs_content_info);
            writer.next().write_der(&key_content_info);
        });
    });
    let mac_data = mac_data(&authenticated_safe, password, &random)?;

    Ok(yasna::construct_der(|writer| {
        writer.write_sequence(|writer| {
            writer.next().write_u8(3);
            writer
                .next()
                .write_der(&data_content_info(&authenticated_safe));
            writer.next().write_der(&mac_data);
        });
    }))
}

fn check_password(password: &str) -> Result<(), Pkcs12Error> {
    // PKCS#12 distinguishes an absent password from an empty one, and OpenSSL's PKCS12_parse tries
    // both when given an empty password, so an empty one makes the file ambiguous.
    if password.is_empty() {
        return Err(Pkcs12Error::InvalidPassword(
            "the password is empty, and a PKCS#12 file needs a non-empty one".to_owned(),
        ));
    }
    // The MAC key derivation ends the password with U+0000, so an embedded one would make
    // two different passwords derive the same MAC key.
    if password.contains('\0') {
        return Err(Pkcs12Error::InvalidPassword(
            "the password contains U+0000".to_owned(),
        ));
    }
    Ok(())
}

fn check_friendly_name(friendly_name: &str) -> Result<(), Pkcs12Error> {
    if friendly_name.is_empty() {
        return Err(Pkcs12Error::InvalidFriendlyName(
            "the friendly name is empty".to_owned(),
        ));
    }
    // A BMPString is UCS-2, so characters outside the Basic Multilingual Plane do not fit.
    if let Some(character) = friendly_name.chars().find(|&c| u32::from(c) > 0xFFFF) {
        return Err(Pkcs12Error::InvalidFriendlyName(format!(
            "{friendly_name:?} contains U+{:X}, which is outside the Basic Multilingual Plane that a BMPString can encode",
            u32::from(character)
        )));
    }
    Ok(())
}

fn check_certificate(index: usize, cert: &[u8]) -> Result<(), Pkcs12Error> {
    let invalid = |reason: String| Pkcs12Error::InvalidCertificate { index, reason };
    let (rest, _) =
        x509_parser::parse_x509_certificate(cert).map_err(|error| invalid(error.to_string()))?;
    if !rest.is_empty() {
        return Err(invalid(format!(
            "{} bytes follow the certificate",
            rest.len()
        )));
    }
    Ok(())
}

fn check_key_matches(leaf: &[u8], private_key_pkcs8_der: &[u8]) -> Result<(), Pkcs12Error> {
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(private_key_pkcs8_der.to_vec()));
    let signing_key = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|error| Pkcs12Error::InvalidPrivateKey(error.to_string()))?;
    let leaf = CertificateDer::from(leaf.to_vec());
    rustls::sign::CertifiedKey::new(vec![leaf], signing_key)
        .keys_match()
        .map_err(|error| Pkcs12Error::KeyMismatch(error.to_string()))
}

/// The friendlyName and localKeyId attributes shared by the key bag and the leaf's bag.
struct BagAttributes<'a> {
    friendly_name: &'a str,
    local_key_id: &'a [u8],
}

impl BagAttributes<'_> {
    fn write(&self, writer: DERWriter<'_>) {
        writer.write_set_of(|writer| {
            writer.next().write_sequence(|writer| {
                writer.next().write_oid(&oid(OID_FRIENDLY_NAME));
                writer.next().write_set_of(|writer| {
                    writer.next().write_bmp_string(self.friendly_name);
                });
            });
            writer.next().write_sequence(|writer| {
                writer.next().write_oid(&oid(OID_LOCAL_KEY_ID));
                writer.next().write_set_of(|writer| {
                    writer.next().write_bytes(self.local_key_id);
                });
            });
        });
    }
}

fn oid(components: &[u64]) -> ObjectIdentifier {
    ObjectIdentifier::from_slice(components)
}

/// Encodes a SafeBag: the bag type, its value and optional attributes (RFC 7292 section 4.2).
fn safe_bag(bag_type: &[u64], value_der: &[u8], attributes: Option<&BagAttributes<'_>>) -> Vec<u8> {
    yasna::construct_der(|writer| {
        writer.write_sequence(|writer| {
            writer.next().write_oid(&oid(bag_type));
            writer
                .next()
                .write_tagged(Tag::context(0), |writer| writer.write_der(value_der));
            if let Some(attributes) = attributes {
                attributes.write(writer.next());
            }
        });
    })
}

fn cert_bag(cert_der: &[u8], attributes: Option<&BagAttributes<'_>>) -> Vec<u8> {
    let value = yasna::construct_der(|writer| {
        writer.write_sequence(|writer| {
            writer.next().write_oid(&oid(OID_X509_CERTIFICATE));
            writer
                .next()
                .write_tagged(Tag::context(0), |writer| writer.write_bytes(cert_der));
        });
    });
    safe_bag(OID_CERT_BAG, &value, attributes)
}

fn shrouded_key_bag(
    private_key_pkcs8_der: &[u8],
    password: &str,
    attributes: &BagAttributes<'_>,
    random: &SystemRandom,
) -> Result<Vec<u8>, Pkcs12Error> {
    let (algorithm, ciphertext) =
        encrypt_pbes2(private_key_pkcs8_der, password, ITERATIONS, random)?;
    // EncryptedPrivateKeyInfo (RFC 5958 section 3).
    let value = yasna::construct_der(|writer| {
        writer.write_sequence(|writer| {
            writer.next().write_der(&algorithm);
            writer.next().write_bytes(&ciphertext);
        });
    });
    Ok(safe_bag(
        OID_PKCS8_SHROUDED_KEY_BAG,
        &value,
        Some(attributes),
    ))
}

fn safe_contents(bags: &[Vec<u8>]) -> Vec<u8> {
    yasna::construct_der(|writer| {
        writer.write_sequence_of(|writer| {
            for bag in bags {
                writer.next().write_der(bag);
            }
        });
    })
}

/// Encodes a PKCS#7 ContentInfo of type data around `content`.
fn data_content_info(content: &[u8]) -> Vec<u8> {
    yasna::construct_der(|writer| {
        writer.write_sequence(|writer| {
            writer.next().write_oid(&oid(OID_DATA));
            writer
                .next()
                .write_tagged(Tag::context(0), |writer| writer.write_bytes(content));
        });
    })
}

/// Encrypts `content` with PBES2 into a PKCS#7 ContentInfo of type encryptedData.
fn encrypted_content_info(
    content: &[u8],
    password: &str,
    random: &SystemRandom,
) -> Result<Vec<u8>, Pkcs12Error> {
    let (algorithm, ciphertext) = encrypt_pbes2(content, password, ITERATIONS, random)?;
    Ok(yasna::construct_der(|writer| {
        writer.write_sequence(|writer| {
            writer.next().write_oid(&oid(OID_ENCRYPTED_DATA));
            writer.next().write_tagged(Tag::context(0), |writer| {
                // EncryptedData (RFC 5652 section 8), version 0.
                writer.write_sequence(|writer| {
                    writer.next().write_u8(0);
                    writer.next().write_sequence(|writer| {
                        writer.next().write_oid(&oid(OID_DATA));
                        writer.next().write_der(&algorithm);
                        writer
                            .next()
                            .write_tagged_implicit(Tag::context(0), |writer| {
                                writer.write_bytes(&ciphertext)
                            });
                    });
                });
            });
        });
    }))
}

/// Encrypts `plaintext` with PBES2 (RFC 8018 section 6.2): PBKDF2-HMAC-SHA256 with a fresh
/// salt derives an AES-256 key, and AES-256-CBC with a fresh IV and PKCS#7 padding encrypts.
/// Returns the DER AlgorithmIdentifier and the ciphertext.
pub(crate) fn encrypt_pbes2(
    plaintext: &[u8],
    password: &str,
    iterations: NonZeroU32,
    random: &SystemRandom,
) -> Result<(Vec<u8>, Vec<u8>), Pkcs12Error> {
    let salt: [u8; SALT_LEN] = random_bytes(random)?;
    let iv: [u8; AES_BLOCK_LEN] = random_bytes(random)?;

    // PBES2 takes the password bytes as given, which OpenSSL 3 and Java read as UTF-8.
    let mut key = [0u8; AES_256_KEY_LEN];
    pbkdf2::derive(
        pbkdf2::PBKDF2_HMAC_SHA256,
        iterations,
        &salt,
        password.as_bytes(),
        &mut key,
    );

    // PKCS#7 padding always adds 1 to 16 bytes, so the buffer has room for a full block.
    let mut buffer = plaintext.to_vec();
    buffer.resize(plaintext.len() + AES_BLOCK_LEN, 0);
    let ciphertext_len = cbc::Encryptor::<Aes256>::new(&key.into(), &iv.into())
        .encrypt_padded::<Pkcs7>(&mut buffer, plaintext.len())
        .expect("the buffer has room for a full padding block")
        .len();
    buffer.truncate(ciphertext_len);

    let algorithm = yasna::construct_der(|writer| {
        writer.write_sequence(|writer| {
            writer.next().write_oid(&oid(OID_PBES2));
            writer.next().write_sequence(|writer| {
                writer.next().write_sequence(|writer| {
                    writer.next().write_oid(&oid(OID_PBKDF2));
                    // PBKDF2-params without keyLength, as OpenSSL writes them.
                    writer.next().write_sequence(|writer| {
                        writer.next().write_bytes(&salt);
                        writer.next().write_u32(iterations.get());
                        writer.next().write_sequence(|writer| {
                            writer.next().write_oid(&oid(OID_HMAC_WITH_SHA256));
                            writer.next().write_null();
                        });
                    });
                });
                writer.next().write_sequence(|writer| {
                    writer.next().write_oid(&oid(OID_AES_256_CBC));
                    writer.next().write_bytes(&iv);
                });
            });
        });
    });
    Ok((algorithm, buffer))
}

/// Decrypts what [`encrypt_pbes2`] encrypted: `algorithm` is the DER AlgorithmIdentifier.
/// Only PBES2 with PBKDF2-HMAC-SHA256 and AES-256-CBC is accepted, which is what acme-dl
/// writes and what `openssl pkcs8 -topk8 -v2 aes-256-cbc` writes in OpenSSL 3.
pub(crate) fn decrypt_pbes2(
    algorithm: &[u8],
    ciphertext: &[u8],
    password: &str,
) -> Result<Vec<u8>, String> {
    let (salt, iterations, iv) = parse_pbes2(algorithm)?;
    let iterations = NonZeroU32::new(iterations).ok_or("PBKDF2 iteration count is 0")?;
    let mut key = [0u8; AES_256_KEY_LEN];
    pbkdf2::derive(
        pbkdf2::PBKDF2_HMAC_SHA256,
        iterations,
        &salt,
        password.as_bytes(),
        &mut key,
    );
    let iv: [u8; AES_BLOCK_LEN] = iv
        .try_into()
        .map_err(|_| "AES-256-CBC IV is not 16 bytes".to_owned())?;
    let mut buffer = ciphertext.to_vec();
    // A wrong passphrase almost always shows as invalid padding.
    let plaintext = cbc::Decryptor::<Aes256>::new(&key.into(), &iv.into())
        .decrypt_padded::<Pkcs7>(&mut buffer)
        .map_err(|_| "decryption failed: wrong passphrase or damaged file".to_owned())?;
    Ok(plaintext.to_vec())
}

/// Reads salt, iteration count and IV from a PBES2 AlgorithmIdentifier.
fn parse_pbes2(algorithm: &[u8]) -> Result<(Vec<u8>, u32, Vec<u8>), String> {
    let unsupported = |what: &str| format!("unsupported encryption: {what}");
    yasna::parse_der(algorithm, |reader| {
        reader.read_sequence(|reader| {
            let scheme = reader.next().read_oid()?;
            if scheme != oid(OID_PBES2) {
                return Ok(Err(unsupported(&format!(
                    "scheme {scheme}, expected PBES2"
                ))));
            }
            reader.next().read_sequence(|reader| {
                let (kdf, salt, iterations, prf) = reader.next().read_sequence(|reader| {
                    let kdf = reader.next().read_oid()?;
                    let (salt, iterations, prf) = reader.next().read_sequence(|reader| {
                        let salt = reader.next().read_bytes()?;
                        let iterations = reader.next().read_u32()?;
                        // RFC 8018 appendix A.2: without a prf, PBKDF2 uses HMAC-SHA1.
                        let prf = reader.read_optional(|reader| {
                            reader.read_sequence(|reader| {
                                let prf = reader.next().read_oid()?;
                                reader.read_optional(|reader| reader.read_null())?;
                                Ok(prf)
                            })
                        })?;
                        Ok((salt, iterations, prf))
                    })?;
                    Ok((kdf, salt, iterations, prf))
                })?;
                let (cipher, iv) = reader.next().read_sequence(|reader| {
                    Ok((reader.next().read_oid()?, reader.next().read_bytes()?))
                })?;
                if kdf != oid(OID_PBKDF2) {
                    return Ok(Err(unsupported(&format!("key derivation {kdf}"))));
                }
                if prf != Some(oid(OID_HMAC_WITH_SHA256)) {
                    return Ok(Err(unsupported("PBKDF2 PRF other than HMAC-SHA256")));
                }
                if cipher != oid(OID_AES_256_CBC) {
                    return Ok(Err(unsupported(&format!("cipher {cipher}"))));
                }
                Ok(Ok((salt, iterations, iv)))
            })
        })
    })
    .map_err(|error| format!("invalid PBES2 parameters: {error}"))?
}

/// Computes the MacData (RFC 7292 section 4) over the DER of the authenticated safe.
fn mac_data(
    authenticated_safe: &[u8],
    password: &str,
    random: &SystemRandom,
) -> Result<Vec<u8>, Pkcs12Error> {
    let salt: [u8; SALT_LEN] = random_bytes(random)?;
    let mac_key = derive_mac_key(password, &salt, ITERATIONS.get());
    let tag = hmac::sign(
        &hmac::Key::new(hmac::HMAC_SHA256, &mac_key),
        authenticated_safe,
    );
    Ok(yasna::construct_der(|writer| {
        writer.write_sequence(|writer| {
            writer.next().write_sequence(|writer| {
                writer.next().write_sequence(|writer| {
                    writer.next().write_oid(&oid(OID_SHA256));
                    writer.next().write_null();
                });
                writer.next().write_bytes(tag.as_ref());
            });
            writer.next().write_bytes(&salt);
            writer.next().write_u32(ITERATIONS.get());
        });
    }))
}

/// Derives the 32-byte HMAC-SHA256 key with the PKCS#12 KDF (RFC 7292 appendix B.2), using
/// SHA-256 and ID 3, which marks MAC key material.
///
/// The key is as long as one SHA-256 output, so the KDF needs only its first block A_1 and
/// steps 6B and 6C, which only feed later blocks, are left out.
fn derive_mac_key(password: &str, salt: &[u8], iterations: u32) -> [u8; 32] {
    // The password as a BMPString with a two-byte terminator. Characters outside the Basic
    // Multilingual Plane become UTF-16 surrogate pairs, as in OpenSSL 3 and Java.
    let mut password_bmp: Vec<u8> = password.encode_utf16().flat_map(u16::to_be_bytes).collect();
    password_bmp.extend([0, 0]);

    // D || S || P, where S and P are the salt and password repeated to a multiple of 64 bytes.
    let mut input = vec![3u8; SHA256_BLOCK_LEN];
    extend_repeated(&mut input, salt);
    extend_repeated(&mut input, &password_bmp);

    let mut hash = digest::digest(&digest::SHA256, &input);
    for _ in 1..iterations {
        hash = digest::digest(&digest::SHA256, hash.as_ref());
    }
    let mut key = [0u8; 32];
    key.copy_from_slice(hash.as_ref());
    key
}

/// Appends `data` repeated to the smallest multiple of 64 bytes that contains it at least once.
fn extend_repeated(output: &mut Vec<u8>, data: &[u8]) {
    let len = data.len().div_ceil(SHA256_BLOCK_LEN) * SHA256_BLOCK_LEN;
    output.extend(data.iter().cycle().take(len));
}

fn random_bytes<const N: usize>(random: &SystemRandom) -> Result<[u8; N], Pkcs12Error> {
    let mut bytes = [0u8; N];
    random
        .fill(&mut bytes)
        .map_err(|_| Pkcs12Error::RandomFailed)?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::process::{Command, Output};

    use super::*;
    use crate::pki::{Authority, KeyAlgorithm, LeafSpec, Usage};

    const PASSWORD: &str = "correct horse battery";
    const FRIENDLY_NAME: &str = "p12.example.test";

    /// A leaf, its chain and the leaf's PKCS#8 key, all DER.
    struct Fixture {
        chain: Vec<Vec<u8>>,
        key: Vec<u8>,
    }

    fn pem_to_der(pem: &str, label: &str) -> Vec<u8> {
        let mut blocks = crate::pem::parse(pem.as_bytes()).unwrap();
        assert_eq!(blocks.len(), 1, "expected one PEM block in {pem}");
        let block = blocks.remove(0);
        assert_eq!(block.label, label);
        block.der
    }

    /// Issues a leaf under an intermediate under a root, like a Certbot lineage whose
    /// chain is the leaf followed by the intermediate.
    fn fixture(algorithm: KeyAlgorithm) -> Fixture {
        let root = Authority::new_root("PKCS12 Test Root", 30).unwrap();
        let intermediate = root
            .new_intermediate("PKCS12 Test Intermediate", 30)
            .unwrap();
        let mut spec = LeafSpec::new(FRIENDLY_NAME, Usage::Server, 30);
        spec.dns_names = vec![FRIENDLY_NAME.to_owned()];
        spec.algorithm = algorithm;
        let issued = intermediate.issue(&spec).unwrap();
        Fixture {
            chain: vec![
                pem_to_der(&issued.cert_pem, "CERTIFICATE"),
                pem_to_der(intermediate.cert_pem(), "CERTIFICATE"),
            ],
            key: pem_to_der(&issued.key_pem, "PRIVATE KEY"),
        }
    }

    /// Returns whether the openssl command runs. Outside CI a missing openssl prints the
    /// reason and returns false, so the caller skips. With CI=true it panics instead.
    fn openssl_available() -> bool {
        let failure = match Command::new("openssl").arg("version").output() {
            Ok(output) if output.status.success() => return true,
            Ok(output) => String::from_utf8_lossy(&output.stderr).into_owned(),
            Err(error) => error.to_string(),
        };
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!(
                "the openssl command-line tool is required when CI=true, but `openssl version` failed ({failure}); install the Debian package openssl, as scripts/install-test-deps does"
            );
        }
        eprintln!("skipping: `openssl version` failed ({failure}), so the PFX cannot be checked");
        false
    }

    fn openssl(dir: &Path, args: &[&str]) -> Output {
        Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("running openssl failed")
    }

    /// Runs openssl, asserts that it succeeded and returns its stdout.
    fn openssl_stdout(dir: &Path, args: &[&str]) -> String {
        let output = openssl(dir, args);
        assert!(
            output.status.success(),
            "openssl {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    }

    /// Runs `openssl pkcs12` on `file` with `password` and the given options.
    fn pkcs12_command(dir: &Path, file: &str, password: &str, options: &[&str]) -> Output {
        let password_argument = format!("pass:{password}");
        let mut args = vec!["pkcs12", "-in", file, "-passin", &password_argument];
        args.extend_from_slice(options);
        openssl(dir, &args)
    }

    fn pkcs12_stdout(dir: &Path, file: &str, password: &str, options: &[&str]) -> String {
        let output = pkcs12_command(dir, file, password, options);
        assert!(
            output.status.success(),
            "openssl pkcs12 {} failed: {}",
            options.join(" "),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    }

    fn certificates_in(pem: &str) -> Vec<Vec<u8>> {
        crate::pem::parse(pem.as_bytes())
            .unwrap()
            .into_iter()
            .filter(|block| block.label == "CERTIFICATE")
            .map(|block| block.der)
            .collect()
    }

    /// Checks with openssl that the PFX opens with `password`, that its key matches the leaf
    /// and that it contains exactly the given chain.
    fn assert_openssl_reads(dir: &Path, pfx: &[u8], chain: &[Vec<u8>], password: &str) {
        std::fs::write(dir.join("set.p12"), pfx).unwrap();

        pkcs12_stdout(dir, "set.p12", password, &["-nodes", "-info"]);

        let key_pem = pkcs12_stdout(dir, "set.p12", password, &["-nocerts", "-nodes"]);
        std::fs::write(dir.join("key.pem"), key_pem).unwrap();
        let leaf_pem = pkcs12_stdout(dir, "set.p12", password, &["-clcerts", "-nokeys"]);
        std::fs::write(dir.join("leaf.pem"), &leaf_pem).unwrap();
        let key_public = openssl_stdout(dir, &["pkey", "-in", "key.pem", "-pubout"]);
        let leaf_public = openssl_stdout(dir, &["x509", "-in", "leaf.pem", "-pubkey", "-noout"]);
        assert!(key_public.contains("BEGIN PUBLIC KEY"), "{key_public}");
        assert_eq!(
            key_public, leaf_public,
            "extracted key does not match the leaf"
        );

        assert_eq!(certificates_in(&leaf_pem), vec![chain[0].clone()]);
        let ca_pem = pkcs12_stdout(dir, "set.p12", password, &["-cacerts", "-nokeys"]);
        assert_eq!(certificates_in(&ca_pem), chain[1..].to_vec());
    }

    #[test]
    fn openssl_reads_ecdsa_keys() {
        if !openssl_available() {
            return;
        }
        // pki's Ed25519 keys come from ring as PKCS#8 v2, which OpenSSL 3.0 cannot read
        // even outside a PFX, so openssl_reads_genpkey_keys covers Ed25519 instead.
        for algorithm in [KeyAlgorithm::EcdsaP256, KeyAlgorithm::EcdsaP384] {
            let fixture = fixture(algorithm);
            let pfx = build(&fixture.chain, &fixture.key, PASSWORD, FRIENDLY_NAME).unwrap();
            let dir = tempfile::tempdir().unwrap();
            assert_openssl_reads(dir.path(), &pfx, &fixture.chain, PASSWORD);
        }
    }

    /// Generates a key with `openssl genpkey`, converts it to PKCS#8 DER and has rcgen issue
    /// a leaf for it under a new root. pki cannot do this because it makes its own keys.
    fn genpkey_fixture(dir: &Path, genpkey_options: &[&str]) -> Fixture {
        let mut args = vec!["genpkey"];
        args.extend_from_slice(genpkey_options);
        args.extend_from_slice(&["-out", "genpkey.pem"]);
        openssl_stdout(dir, &args);
        openssl_stdout(
            dir,
            &[
                "pkcs8",
                "-topk8",
                "-nocrypt",
                "-in",
                "genpkey.pem",
                "-outform",
                "DER",
                "-out",
                "genpkey.der",
            ],
        );
        let key = std::fs::read(dir.join("genpkey.der")).unwrap();

        let root_key = rcgen::KeyPair::generate().unwrap();
        let mut root_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        root_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "PKCS12 Test Root");
        root_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let root_cert = root_params.self_signed(&root_key).unwrap();
        let root = rcgen::Issuer::new(root_params, root_key);

        let leaf_key = rcgen::KeyPair::try_from(key.as_slice()).unwrap();
        let mut leaf_params =
            rcgen::CertificateParams::new(vec![FRIENDLY_NAME.to_owned()]).unwrap();
        leaf_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, FRIENDLY_NAME);
        let leaf_cert = leaf_params.signed_by(&leaf_key, &root).unwrap();
        Fixture {
            chain: vec![leaf_cert.der().to_vec(), root_cert.der().to_vec()],
            key,
        }
    }

    #[test]
    fn openssl_reads_genpkey_keys() {
        if !openssl_available() {
            return;
        }
        let cases: [&[&str]; 2] = [
            &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
            &["-algorithm", "ED25519"],
        ];
        for genpkey_options in cases {
            let dir = tempfile::tempdir().unwrap();
            let fixture = genpkey_fixture(dir.path(), genpkey_options);
            let pfx = build(&fixture.chain, &fixture.key, PASSWORD, FRIENDLY_NAME).unwrap();
            assert_openssl_reads(dir.path(), &pfx, &fixture.chain, PASSWORD);
        }
    }

    #[test]
    fn openssl_rejects_wrong_password() {
        if !openssl_available() {
            return;
        }
        let fixture = fixture(KeyAlgorithm::EcdsaP256);
        let pfx = build(&fixture.chain, &fixture.key, PASSWORD, FRIENDLY_NAME).unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("set.p12"), &pfx).unwrap();

        let output = pkcs12_command(
            dir.path(),
            "set.p12",
            "wrong password",
            &["-nodes", "-info"],
        );
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            !output.status.success(),
            "openssl accepted a wrong password"
        );
        assert!(stderr.contains("Mac verify error"), "{stderr}");
    }

    #[test]
    fn openssl_reports_pbes2_and_sha256_mac() {
        if !openssl_available() {
            return;
        }
        let fixture = fixture(KeyAlgorithm::EcdsaP256);
        let pfx = build(&fixture.chain, &fixture.key, PASSWORD, FRIENDLY_NAME).unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("set.p12"), &pfx).unwrap();

        // OpenSSL 3.0 prints the -info lines on stderr.
        let output = pkcs12_command(dir.path(), "set.p12", PASSWORD, &["-nodes", "-info"]);
        let info = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{info}");
        let pbes2 = "PBES2, PBKDF2, AES-256-CBC, Iteration 10000, PRF hmacWithSHA256";
        assert!(info.contains("MAC: sha256, Iteration 10000"), "{info}");
        assert!(info.contains("MAC length: 32, salt length: 16"), "{info}");
        assert!(
            info.contains(&format!("PKCS7 Encrypted data: {pbes2}")),
            "{info}"
        );
        assert!(
            info.contains(&format!("Shrouded Keybag: {pbes2}")),
            "{info}"
        );
    }

    #[test]
    fn openssl_shows_bag_attributes() {
        if !openssl_available() {
            return;
        }
        let fixture = fixture(KeyAlgorithm::EcdsaP256);
        let pfx = build(&fixture.chain, &fixture.key, PASSWORD, FRIENDLY_NAME).unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("set.p12"), &pfx).unwrap();

        let fingerprint = digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, &fixture.chain[0]);
        let local_key_id: Vec<String> = fingerprint
            .as_ref()
            .iter()
            .map(|byte| format!("{byte:02X}"))
            .collect();
        let local_key_id_line = format!("localKeyID: {} ", local_key_id.join(" "));
        let friendly_name_line = format!("friendlyName: {FRIENDLY_NAME}");

        let key_pem = pkcs12_stdout(dir.path(), "set.p12", PASSWORD, &["-nocerts", "-nodes"]);
        assert!(key_pem.contains(&friendly_name_line), "{key_pem}");
        assert!(key_pem.contains(&local_key_id_line), "{key_pem}");
        let leaf_pem = pkcs12_stdout(dir.path(), "set.p12", PASSWORD, &["-clcerts", "-nokeys"]);
        assert!(leaf_pem.contains(&friendly_name_line), "{leaf_pem}");
        assert!(leaf_pem.contains(&local_key_id_line), "{leaf_pem}");
        let ca_pem = pkcs12_stdout(dir.path(), "set.p12", PASSWORD, &["-cacerts", "-nokeys"]);
        assert!(!ca_pem.contains("friendlyName"), "{ca_pem}");
        assert!(!ca_pem.contains("localKeyID"), "{ca_pem}");
    }

    #[test]
    fn openssl_reads_non_ascii_password() {
        if !openssl_available() {
            return;
        }
        let password = "pässwörd-€-𝄞";
        let fixture = fixture(KeyAlgorithm::EcdsaP256);
        let pfx = build(&fixture.chain, &fixture.key, password, FRIENDLY_NAME).unwrap();
        let dir = tempfile::tempdir().unwrap();
        assert_openssl_reads(dir.path(), &pfx, &fixture.chain, password);

        // On a MAC failure, openssl retries with the password read as Latin-1 and prints
        // this warning when that works, which would hide a wrong password encoding.
        let output = pkcs12_command(dir.path(), "set.p12", password, &["-nodes", "-info"]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{stderr}");
        assert!(!stderr.contains("using broken algorithm"), "{stderr}");
    }

    #[test]
    fn mac_key_matches_openssl_pkcs12kdf() {
        if !openssl_available() {
            return;
        }
        let salt = [1, 2, 3, 4, 5, 6, 7, 8];
        let dir = tempfile::tempdir().unwrap();
        // OpenSSL's PKCS12KDF takes the password already encoded as a BMPString with its
        // terminator: "pass" is 0070 0061 0073 0073 0000.
        let output = openssl_stdout(
            dir.path(),
            &[
                "kdf",
                "-keylen",
                "32",
                "-kdfopt",
                "digest:SHA256",
                "-kdfopt",
                "hexpass:00700061007300730000",
                "-kdfopt",
                "hexsalt:0102030405060708",
                "-kdfopt",
                "iter:2048",
                "-kdfopt",
                "id:3",
                "PKCS12KDF",
            ],
        );
        let expected: Vec<String> = derive_mac_key("pass", &salt, 2048)
            .iter()
            .map(|byte| format!("{byte:02X}"))
            .collect();
        assert_eq!(output.trim(), expected.join(":"));
    }

    #[test]
    fn builds_use_fresh_salts_and_ivs() {
        let fixture = fixture(KeyAlgorithm::EcdsaP256);
        let first = build(&fixture.chain, &fixture.key, PASSWORD, FRIENDLY_NAME).unwrap();
        let second = build(&fixture.chain, &fixture.key, PASSWORD, FRIENDLY_NAME).unwrap();
        assert_ne!(first, second);
    }

    #[test]
    fn empty_chain_is_rejected() {
        let fixture = fixture(KeyAlgorithm::EcdsaP256);
        let result = build(&[], &fixture.key, PASSWORD, FRIENDLY_NAME);
        assert_eq!(result, Err(Pkcs12Error::MissingLeaf));
    }

    #[test]
    fn invalid_passwords_are_rejected() {
        let fixture = fixture(KeyAlgorithm::EcdsaP256);
        for password in ["", "before\0after"] {
            let result = build(&fixture.chain, &fixture.key, password, FRIENDLY_NAME);
            assert!(
                matches!(result, Err(Pkcs12Error::InvalidPassword(_))),
                "password {password:?}: {result:?}"
            );
        }
    }

    #[test]
    fn invalid_friendly_names_are_rejected() {
        let fixture = fixture(KeyAlgorithm::EcdsaP256);
        for friendly_name in ["", "clef-𝄞"] {
            let result = build(&fixture.chain, &fixture.key, PASSWORD, friendly_name);
            assert!(
                matches!(result, Err(Pkcs12Error::InvalidFriendlyName(_))),
                "friendly name {friendly_name:?}: {result:?}"
            );
        }
        let accepted = build(&fixture.chain, &fixture.key, PASSWORD, "zertifikat-ü-€");
        assert!(accepted.is_ok(), "{accepted:?}");
    }

    #[test]
    fn invalid_certificates_are_rejected() {
        let fixture = fixture(KeyAlgorithm::EcdsaP256);

        let mut garbage = fixture.chain.clone();
        garbage[1] = b"not a certificate".to_vec();
        let result = build(&garbage, &fixture.key, PASSWORD, FRIENDLY_NAME);
        assert!(
            matches!(
                result,
                Err(Pkcs12Error::InvalidCertificate { index: 1, .. })
            ),
            "{result:?}"
        );

        let mut trailing = fixture.chain.clone();
        trailing[0].push(0);
        let result = build(&trailing, &fixture.key, PASSWORD, FRIENDLY_NAME);
        assert!(
            matches!(
                result,
                Err(Pkcs12Error::InvalidCertificate { index: 0, .. })
            ),
            "{result:?}"
        );
    }

    #[test]
    fn key_of_another_leaf_is_rejected() {
        let fixture = fixture(KeyAlgorithm::EcdsaP256);
        let other = self::fixture(KeyAlgorithm::EcdsaP256);
        let result = build(&fixture.chain, &other.key, PASSWORD, FRIENDLY_NAME);
        assert!(
            matches!(result, Err(Pkcs12Error::KeyMismatch(_))),
            "{result:?}"
        );
    }

    #[test]
    fn key_that_is_not_pkcs8_is_rejected() {
        let fixture = fixture(KeyAlgorithm::EcdsaP256);
        // The private key inside PKCS#8 is SEC1 ECPrivateKey DER, the form a caller that
        // skipped the conversion of an `EC PRIVATE KEY` file would pass.
        let sec1 = yasna::parse_der(&fixture.key, |reader| {
            reader.read_sequence(|reader| {
                reader.next().read_u8()?;
                reader.next().read_der()?;
                reader.next().read_bytes()
            })
        })
        .unwrap();
        let result = build(&fixture.chain, &sec1, PASSWORD, FRIENDLY_NAME);
        assert!(
            matches!(result, Err(Pkcs12Error::InvalidPrivateKey(_))),
            "{result:?}"
        );
    }
}
