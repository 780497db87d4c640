//! Checks the certificate store layout that real Certbot writes, which acme-dl reads and
//! distributes: `live/<name>/*.pem` links into numbered files under `archive/<name>/`.

mod support;

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};

use support::certbot::{CertbotHarness, CertificateRequest, KeyType, read_live_version};
use support::require_program;
use x509_parser::pem::parse_x509_pem;
use x509_parser::public_key::PublicKey;

#[test]
fn ecdsa_lineage_issue_and_renew() {
    let Some(harness) = CertbotHarness::start() else {
        return;
    };
    let Some(openssl) = require_program("openssl") else {
        return;
    };
    let request = CertificateRequest::new("demo", &["demo.test", "www.demo.test"]);

    let issued = harness.issue(&request);
    assert_eq!(issued.version, 1);
    assert_eq!(read_live_version(harness.config_dir(), "demo"), Ok(1));
    assert_eq!(
        archive_file_names(&harness.archive_dir("demo")),
        archive_names_up_to(1)
    );

    let live_dir = harness.live_dir("demo");
    let first_cert = fs::read(live_dir.join("cert.pem")).expect("failed to read cert.pem");
    let first_key = fs::read(live_dir.join("privkey.pem")).expect("failed to read privkey.pem");
    assert_eq!(
        subject_alt_names(&first_cert),
        ["demo.test", "www.demo.test"]
    );
    assert!(matches!(public_key_kind(&first_cert), KeyKind::Ecdsa));
    assert_key_matches_certificate(&openssl, &live_dir);
    assert_chain_verifies(&openssl, &harness, &live_dir);

    let renewed = harness.renew("demo");
    assert_eq!(renewed.version, 2);
    assert_eq!(read_live_version(harness.config_dir(), "demo"), Ok(2));
    assert_eq!(
        archive_file_names(&harness.archive_dir("demo")),
        archive_names_up_to(2)
    );
    for stem in ["cert", "chain", "fullchain", "privkey"] {
        let link = live_dir.join(format!("{stem}.pem"));
        let target = fs::read_link(&link).expect("failed to read a live/ link");
        assert_eq!(
            target,
            Path::new(&format!("../../archive/demo/{stem}2.pem"))
        );
    }

    let archive_dir = harness.archive_dir("demo");
    let second_cert = fs::read(live_dir.join("cert.pem")).expect("failed to read cert.pem");
    let second_key = fs::read(live_dir.join("privkey.pem")).expect("failed to read privkey.pem");
    assert_ne!(
        second_cert, first_cert,
        "renewal must produce a new certificate"
    );
    // Certbot 2.1 generates a new key on renewal unless --reuse-key is given.
    assert_ne!(
        second_key, first_key,
        "renewal must produce a new private key"
    );
    let archived_cert = fs::read(archive_dir.join("cert1.pem")).expect("failed to read cert1.pem");
    assert_eq!(
        archived_cert, first_cert,
        "renewal must keep version 1 unchanged"
    );
    assert_eq!(
        subject_alt_names(&second_cert),
        ["demo.test", "www.demo.test"]
    );
    assert_key_matches_certificate(&openssl, &live_dir);
    assert_chain_verifies(&openssl, &harness, &live_dir);
}

#[test]
fn rsa_lineage_modulus_matches() {
    let Some(harness) = CertbotHarness::start() else {
        return;
    };
    let Some(openssl) = require_program("openssl") else {
        return;
    };
    let request =
        CertificateRequest::new("example", &["a.example.com"]).with_key_type(KeyType::Rsa);

    let issued = harness.issue(&request);
    assert_eq!(issued.version, 1);
    assert_eq!(read_live_version(harness.config_dir(), "example"), Ok(1));

    let live_dir = harness.live_dir("example");
    let cert = fs::read(live_dir.join("cert.pem")).expect("failed to read cert.pem");
    assert_eq!(subject_alt_names(&cert), ["a.example.com"]);
    assert!(matches!(public_key_kind(&cert), KeyKind::Rsa));

    let cert_modulus = run_openssl(
        &openssl,
        &["x509", "-noout", "-modulus", "-in"],
        &live_dir.join("cert.pem"),
    );
    let key_modulus = run_openssl(
        &openssl,
        &["rsa", "-noout", "-modulus", "-in"],
        &live_dir.join("privkey.pem"),
    );
    assert!(
        cert_modulus.starts_with("Modulus="),
        "unexpected output: {cert_modulus}"
    );
    assert_eq!(cert_modulus, key_modulus);
    assert_key_matches_certificate(&openssl, &live_dir);
}

#[test]
fn cert_name_expands_to_new_domains() {
    let Some(harness) = CertbotHarness::start() else {
        return;
    };
    harness.issue(&CertificateRequest::new("shop", &["shop.test"]));

    let expanded = harness.issue(&CertificateRequest::new(
        "shop",
        &["shop.test", "api.shop.test"],
    ));
    assert_eq!(expanded.version, 2);
    let cert =
        fs::read(harness.live_dir("shop").join("cert.pem")).expect("failed to read cert.pem");
    assert_eq!(subject_alt_names(&cert), ["api.shop.test", "shop.test"]);
}

#[test]
fn live_version_rejects_absolute_link() {
    let directory = tempfile::tempdir().expect("failed to create a temporary directory");
    let config_dir = directory.path();
    let live_dir = config_dir.join("live/demo");
    let archive_dir = config_dir.join("archive/demo");
    fs::create_dir_all(&live_dir).expect("failed to create live/demo");
    fs::create_dir_all(&archive_dir).expect("failed to create archive/demo");
    for stem in ["cert", "chain", "fullchain", "privkey"] {
        fs::write(archive_dir.join(format!("{stem}1.pem")), "").expect("failed to write a file");
        let target = format!("../../archive/demo/{stem}1.pem");
        std::os::unix::fs::symlink(&target, live_dir.join(format!("{stem}.pem")))
            .expect("failed to create a link");
    }
    assert_eq!(read_live_version(config_dir, "demo"), Ok(1));

    fs::remove_file(live_dir.join("chain.pem")).expect("failed to remove chain.pem");
    std::os::unix::fs::symlink(archive_dir.join("chain1.pem"), live_dir.join("chain.pem"))
        .expect("failed to create a link");
    let error = read_live_version(config_dir, "demo").expect_err("an absolute link must fail");
    assert!(
        error.contains("chain.pem links to /"),
        "unexpected error: {error}"
    );
}

#[derive(Debug)]
enum KeyKind {
    Rsa,
    Ecdsa,
    Other,
}

fn public_key_kind(cert_pem: &[u8]) -> KeyKind {
    let (_, pem) = parse_x509_pem(cert_pem).expect("cert.pem is not PEM");
    let cert = pem
        .parse_x509()
        .expect("cert.pem is not an X.509 certificate");
    match cert.public_key().parsed() {
        Ok(PublicKey::RSA(_)) => KeyKind::Rsa,
        Ok(PublicKey::EC(_)) => KeyKind::Ecdsa,
        _ => KeyKind::Other,
    }
}

/// Returns the DNS names of the certificate's subjectAltName extension, sorted.
fn subject_alt_names(cert_pem: &[u8]) -> Vec<String> {
    let (_, pem) = parse_x509_pem(cert_pem).expect("cert.pem is not PEM");
    let cert = pem
        .parse_x509()
        .expect("cert.pem is not an X.509 certificate");
    let extension = cert
        .subject_alternative_name()
        .expect("invalid subjectAltName extension")
        .expect("missing subjectAltName extension");
    let mut names: Vec<String> = extension
        .value
        .general_names
        .iter()
        .filter_map(|name| match name {
            x509_parser::extensions::GeneralName::DNSName(name) => Some((*name).to_owned()),
            _ => None,
        })
        .collect();
    names.sort();
    names
}

/// Returns the names of the files in `archive_dir`.
fn archive_file_names(archive_dir: &Path) -> BTreeSet<String> {
    fs::read_dir(archive_dir)
        .unwrap_or_else(|error| panic!("failed to list {}: {error}", archive_dir.display()))
        .map(|entry| {
            let entry = entry.expect("failed to read a directory entry");
            entry.file_name().to_string_lossy().into_owned()
        })
        .collect()
}

/// Returns the archive file names that Certbot writes for versions 1 to `last_version`.
fn archive_names_up_to(last_version: u32) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for version in 1..=last_version {
        for stem in ["cert", "chain", "fullchain", "privkey"] {
            names.insert(format!("{stem}{version}.pem"));
        }
    }
    names
}

/// Asserts that the public key of `privkey.pem` equals the one in `cert.pem`, as `openssl`
/// prints both.
fn assert_key_matches_certificate(openssl: &Path, live_dir: &Path) {
    let cert_public_key = run_openssl(
        openssl,
        &["x509", "-noout", "-pubkey", "-in"],
        &live_dir.join("cert.pem"),
    );
    let key_public_key = run_openssl(
        openssl,
        &["pkey", "-pubout", "-in"],
        &live_dir.join("privkey.pem"),
    );
    assert!(
        cert_public_key.starts_with("-----BEGIN PUBLIC KEY-----"),
        "unexpected output: {cert_public_key}"
    );
    assert_eq!(
        cert_public_key, key_public_key,
        "privkey.pem does not match cert.pem"
    );
}

/// Asserts that `cert.pem` verifies against Pebble's root through `chain.pem`, and that
/// `fullchain.pem` is `cert.pem` followed by `chain.pem`.
fn assert_chain_verifies(openssl: &Path, harness: &CertbotHarness, live_dir: &Path) {
    let root_path = harness.pebble().directory().join("pebble-root.pem");
    fs::write(&root_path, harness.pebble().root_certificate_pem())
        .expect("failed to write the root");
    let output = Command::new(openssl)
        .arg("verify")
        .arg("-CAfile")
        .arg(&root_path)
        .arg("-untrusted")
        .arg(live_dir.join("chain.pem"))
        .arg(live_dir.join("cert.pem"))
        .stdin(Stdio::null())
        .output()
        .expect("failed to run openssl verify");
    assert!(
        output.status.success(),
        "openssl verify failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );

    let cert = fs::read_to_string(live_dir.join("cert.pem")).expect("failed to read cert.pem");
    let chain = fs::read_to_string(live_dir.join("chain.pem")).expect("failed to read chain.pem");
    let fullchain =
        fs::read_to_string(live_dir.join("fullchain.pem")).expect("failed to read fullchain.pem");
    assert_eq!(fullchain, format!("{cert}{chain}"));
}

/// Runs `openssl ARGS FILE` and returns its standard output, panicking with its error output when
/// it fails.
fn run_openssl(openssl: &Path, args: &[&str], file: &Path) -> String {
    let output = Command::new(openssl)
        .args(args)
        .arg(file)
        .stdin(Stdio::null())
        .output()
        .expect("failed to run openssl");
    assert!(
        output.status.success(),
        "openssl {} {} failed: {}",
        args.join(" "),
        file.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("openssl printed invalid UTF-8")
}
