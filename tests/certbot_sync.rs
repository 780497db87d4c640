//! The whole loop on real Certbot output: Certbot issues from a local Pebble, acme-dl's
//! server serves that store, the client installs it, Certbot renews, the client installs
//! the renewal, and OpenSSL confirms each installed key matches its certificate.

mod support;

use std::path::Path;
use std::process::Command;

use support::certbot::{CertbotHarness, CertificateRequest, KeyType};
use support::harness::{Pki, ServerProcess, describe, run_client};

/// Returns the public key of a certificate or key file as OpenSSL prints it.
fn public_key(openssl: &Path, args: &[&str], dir: &Path) -> String {
    let output = Command::new(openssl)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn assert_installed_key_matches(openssl: &Path, dir: &Path) {
    let from_cert = public_key(
        openssl,
        &["x509", "-in", "cert.pem", "-noout", "-pubkey"],
        dir,
    );
    let from_fullchain = public_key(
        openssl,
        &["x509", "-in", "fullchain.pem", "-noout", "-pubkey"],
        dir,
    );
    let from_key = public_key(openssl, &["pkey", "-in", "privkey.pem", "-pubout"], dir);
    assert_eq!(
        from_cert,
        from_key,
        "cert.pem does not match privkey.pem in {}",
        dir.display()
    );
    assert_eq!(
        from_fullchain, from_key,
        "fullchain.pem does not match privkey.pem"
    );
}

fn assert_same_as_store(store: &Path, installed: &Path) {
    for name in ["fullchain.pem", "privkey.pem", "chain.pem", "cert.pem"] {
        assert_eq!(
            std::fs::read(installed.join(name)).unwrap(),
            std::fs::read(store.join(name)).unwrap(),
            "{name} differs from the store"
        );
    }
}

#[test]
fn certbot_issue_and_renewal_reach_the_client() {
    let Some(harness) = CertbotHarness::start() else {
        return;
    };
    let Some(openssl) = support::require_program("openssl") else {
        return;
    };
    harness.issue(&CertificateRequest::new(
        "shop.example",
        &["shop.example", "www.shop.example"],
    ));
    harness.issue(
        &CertificateRequest::new("mail.example", &["mail.example"]).with_key_type(KeyType::Rsa),
    );

    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(&dir.path().join("pki"), "web412");
    let mut server_args: Vec<String> = [
        "--no-syslog",
        "--allow-all-clients",
        "--config",
        "/dev/null",
        "--listen",
        "127.0.0.1:0",
    ]
    .iter()
    .map(|arg| (*arg).to_owned())
    .collect();
    server_args.extend([
        "--certbot-dir".to_owned(),
        harness.config_dir().display().to_string(),
    ]);
    server_args.extend(pki.server.args());
    let server = ServerProcess::start(&server_args);

    let dest = dir.path().join("dest");
    let mut client_args: Vec<String> = ["--no-syslog", "--config", "/dev/null", "--server"]
        .iter()
        .map(|arg| (*arg).to_owned())
        .collect();
    client_args.push(server.url());
    client_args.extend(["--dest".to_owned(), dest.display().to_string()]);
    client_args.extend(pki.client.args());
    client_args.extend(["shop.example".to_owned(), "mail.example".to_owned()]);

    let output = run_client(&client_args);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    for lineage in ["shop.example", "mail.example"] {
        assert_same_as_store(&harness.live_dir(lineage), &dest.join(lineage));
        assert_installed_key_matches(&openssl, &dest.join(lineage));
    }
    let first_key = std::fs::read(dest.join("shop.example/privkey.pem")).unwrap();

    harness.renew("shop.example");
    let output = run_client(&client_args);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert_same_as_store(
        &harness.live_dir("shop.example"),
        &dest.join("shop.example"),
    );
    assert_installed_key_matches(&openssl, &dest.join("shop.example"));
    assert_ne!(
        std::fs::read(dest.join("shop.example/privkey.pem")).unwrap(),
        first_key
    );
    server.wait_for_log(&["check", "lineage=mail.example", "outcome=up-to-date"]);

    // Certbot's README files beside the links are not part of a set and are never served.
    let request = b"GET /download/shop.example/README HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    let response = support::harness::raw_request(server.addr, Some(&pki.client), request).unwrap();
    assert_eq!(response.status, 400, "{}", response.head);
}
