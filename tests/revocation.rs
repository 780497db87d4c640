//! Revocation and reload. A client certificate revoked through a CRL and a SIGHUP is
//! rejected on fresh and resumed connections, while other clients keep being served, even
//! on connections opened before the reload. A broken reload keeps the old setup.

mod support;

use acme_dl::identity::Identity as PeerIdentity;
use acme_dl::pki::{LeafSpec, Usage};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use support::harness::{
    Deployment, Identity, describe, keep_alive_get as get, keep_alive_stream as connect, run_client,
};

fn serial_bytes(identity: &Identity) -> (String, Vec<u8>) {
    let der = CertificateDer::from_pem_file(&identity.cert).unwrap();
    let serial = PeerIdentity::from_der(&der).serial;
    let bytes = (0..serial.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&serial[i..i + 2], 16).unwrap())
        .collect();
    (serial, bytes)
}

#[test]
fn revoked_client_is_rejected_after_reload() {
    let dir = tempfile::tempdir().unwrap();
    let crl = dir.path().join("fleet.crl");
    let config = dir.path().join("server.toml");
    // The deployment's PKI does not exist yet, so an empty list is written after it.
    std::fs::write(
        &config,
        format!("allow_all_clients = true\ncrl = [\"{}\"]\n", crl.display()),
    )
    .unwrap();
    let pki_dir = tempfile::tempdir().unwrap();
    let pki = support::harness::Pki::new(pki_dir.path(), "web412");
    std::fs::write(&crl, pki.authority.revocation_list(&[], 1, 7).unwrap()).unwrap();
    let deployment = Deployment::with_pki(
        pki,
        &["example.com"],
        &["--config", config.to_str().unwrap()],
    );

    let revoked = deployment.pki.client.clone();
    let other = deployment
        .pki
        .issue("web413", &LeafSpec::new("web413", Usage::Client, 30));
    let revoked_config = support::harness::client_tls_config(&revoked);
    let other_config = support::harness::client_tls_config(&other);

    // Before the revocation both clients are served; the other keeps its connection open.
    let mut first = connect(deployment.server.addr, &revoked_config);
    assert_eq!(get(&mut first, "/download/example.com/chain.pem"), Ok(200));
    drop(first);
    // The session is resumable: the attempt after the revocation is a resumption.
    let mut second = connect(deployment.server.addr, &revoked_config);
    assert_eq!(get(&mut second, "/download/example.com/chain.pem"), Ok(200));
    assert_eq!(
        second.conn.handshake_kind(),
        Some(rustls::HandshakeKind::Resumed)
    );
    drop(second);
    let mut opened_before = connect(deployment.server.addr, &revoked_config);
    assert_eq!(
        get(&mut opened_before, "/download/example.com/chain.pem"),
        Ok(200)
    );
    let mut established = connect(deployment.server.addr, &other_config);
    assert_eq!(
        get(&mut established, "/download/example.com/chain.pem"),
        Ok(200)
    );

    let (serial, serial_bytes) = serial_bytes(&revoked);
    std::fs::write(
        &crl,
        deployment
            .pki
            .authority
            .revocation_list(&[serial_bytes], 2, 7)
            .unwrap(),
    )
    .unwrap();
    deployment.server.signal("HUP");
    deployment
        .server
        .wait_for_log(&["configuration reloaded", "crls=1"]);

    // A connection the revoked client opened before is closed at its next request.
    let after = get(&mut opened_before, "/download/example.com/privkey.pem");
    assert!(
        after == Ok(403) || after.is_err(),
        "revoked client kept its connection: {after:?}"
    );
    deployment.server.wait_for_log(&[
        "client certificate no longer accepted after a reload",
        "certificate revoked",
    ]);

    // Fresh and resumed connections of the revoked client fail in the handshake.
    let mut resumed = connect(deployment.server.addr, &revoked_config);
    let result = get(&mut resumed, "/download/example.com/chain.pem");
    assert!(result.is_err(), "revoked client was served: {result:?}");
    deployment.server.wait_for_log(&[
        "TLS handshake failed",
        "certificate revoked",
        &format!("serial={serial}"),
    ]);
    let output = run_client(&deployment.client_args(&revoked, &["example.com"]));
    assert_eq!(output.status.code(), Some(4), "{}", describe(&output));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("revoked"),
        "{}",
        describe(&output)
    );

    // The other client's old connection and new ones are unaffected.
    assert_eq!(
        get(&mut established, "/download/example.com/cert.pem"),
        Ok(200)
    );
    let output = run_client(&deployment.client_args(&other, &["example.com"]));
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));

    // A broken list on reload keeps the running configuration.
    std::fs::write(
        &crl,
        "-----BEGIN X509 CRL-----\nnot base64\n-----END X509 CRL-----\n",
    )
    .unwrap();
    deployment.server.signal("HUP");
    deployment.server.wait_for_log(&[
        "reload failed; the running configuration stays",
        "revocation list",
    ]);
    let output = run_client(&deployment.client_args(&revoked, &["example.com"]));
    assert_eq!(output.status.code(), Some(4), "{}", describe(&output));
    let output = run_client(&deployment.client_args(&other, &["example.com"]));
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
}

#[test]
fn reload_applies_a_new_policy() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("server.toml");
    std::fs::write(
        &config,
        "[[access]]\nclients = [\"cn:web412\"]\nlineages = [\"example.com\"]\n",
    )
    .unwrap();
    let deployment =
        Deployment::with_server_args(&["example.com"], &["--config", config.to_str().unwrap()]);
    let output = run_client(&deployment.client_args(&deployment.pki.client, &["example.com"]));
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));

    std::fs::write(
        &config,
        "[[access]]\nclients = [\"cn:someone-else\"]\nlineages = [\"example.com\"]\n",
    )
    .unwrap();
    deployment.server.signal("HUP");
    deployment.server.wait_for_log(&["configuration reloaded"]);
    let output = run_client(&deployment.client_args(&deployment.pki.client, &["example.com"]));
    assert_eq!(output.status.code(), Some(4), "{}", describe(&output));

    // An invalid policy is refused and the previous one stays.
    std::fs::write(
        &config,
        "[[access]]\nclients = [\"nonsense\"]\nlineages = [\"example.com\"]\n",
    )
    .unwrap();
    deployment.server.signal("HUP");
    deployment
        .server
        .wait_for_log(&["reload failed", "access rule 1"]);
    assert_eq!(deployment.server.count_log(&["configuration reloaded"]), 1);
}

#[test]
fn expiring_certificates_and_lists_are_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    let pki = support::harness::Pki::new(dir.path(), "web412");
    let mut spec = LeafSpec::new("localhost", Usage::Server, 10);
    spec.dns_names = vec!["localhost".to_owned()];
    let server = pki.issue("short-server", &spec);
    let crl = dir.path().join("fleet.crl");
    std::fs::write(&crl, pki.authority.revocation_list(&[], 1, 1).unwrap()).unwrap();
    let deployment = Deployment::with_pki(
        pki,
        &["example.com"],
        &[
            "--cert",
            server.cert.to_str().unwrap(),
            "--key",
            server.key.to_str().unwrap(),
            "--crl",
            crl.to_str().unwrap(),
        ],
    );
    deployment
        .server
        .wait_for_log(&["warning", "server certificate CN=localhost", "days left"]);
    deployment
        .server
        .wait_for_log(&["warning", "revocation list of", "days left"]);
}

#[test]
fn list_from_another_ca_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let pki = support::harness::Pki::new(&dir.path().join("fleet"), "web412");
    let other = support::harness::Pki::new(&dir.path().join("other"), "web412");
    let crl = dir.path().join("other.crl");
    std::fs::write(&crl, other.authority.revocation_list(&[], 1, 7).unwrap()).unwrap();
    let certbot = dir.path().join("letsencrypt");
    std::fs::create_dir_all(certbot.join("live")).unwrap();
    let output = check_config(&certbot, &pki, &crl, None);
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("matches no CA"),
        "{}",
        describe(&output)
    );
}

#[test]
fn explain_reports_a_revoked_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let pki = support::harness::Pki::new(&dir.path().join("fleet"), "web412");
    let (_, serial) = serial_bytes(&pki.client);
    let crl = dir.path().join("fleet.crl");
    std::fs::write(
        &crl,
        pki.authority.revocation_list(&[serial], 1, 7).unwrap(),
    )
    .unwrap();
    let certbot = dir.path().join("letsencrypt");
    support::harness::write_lineage(&certbot, &pki.authority, "example.com", 1);
    let output = check_config(&certbot, &pki, &crl, Some(&pki.client.cert));
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("rejected in the handshake"), "{stdout}");
    assert!(stdout.contains("revoked"), "{stdout}");
}

/// Runs `acme-dl server --check-config` for a store and PKI with one revocation list, and
/// `--explain` when a client certificate is given.
fn check_config(
    certbot: &std::path::Path,
    pki: &support::harness::Pki,
    crl: &std::path::Path,
    explain: Option<&std::path::Path>,
) -> std::process::Output {
    let mut command = std::process::Command::new(support::harness::binary());
    command
        .args([
            "server",
            "--no-syslog",
            "--config",
            "/dev/null",
            "--allow-all-clients",
        ])
        .args(["--check-config", "--certbot-dir"])
        .arg(certbot)
        .args(pki.server.args())
        .arg("--crl")
        .arg(crl);
    if let Some(cert) = explain {
        command.arg("--explain").arg(cert);
    }
    command.output().unwrap()
}
