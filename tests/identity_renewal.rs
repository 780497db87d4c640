//! Client certificates renewed through the server: a client in its renewal window gets a
//! new certificate for a new key over its mutual-TLS connection, signed by the client
//! intermediate and recorded in the index. Revoked, replaced, expired and
//! fingerprint-named identities are rejected, a lost response is repeated for the same key,
//! and an install interrupted between its two renames is finished by the next run.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;

use acme_dl::ca::{RenewalError, RenewalRequest};
use acme_dl::pki::{Authority, LeafSpec, Usage};
use rcgen::KeyPair;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use support::harness::{ServerProcess, describe, pki, pki_ok, run_client};

fn path_str(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// A PKI with a server certificate and client `web1`, valid for 30 days, and a server
/// whose `[renewal]` table has the extra lines `renewal`, or none when `None`. The access
/// rule names `client_rule`, which may list several clients as `cn:a", "cn:b`.
struct Setup {
    dir: tempfile::TempDir,
    ca: PathBuf,
    server: ServerProcess,
}

impl Setup {
    fn new(renewal: Option<&str>, client_rule: &str) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca");
        pki_ok(&["init", "--dir", path_str(&ca)]);
        pki_ok(&[
            "server",
            "--dir",
            path_str(&ca),
            "--name",
            "localhost",
            "--ip",
            "127.0.0.1",
        ]);
        pki_ok(&[
            "client",
            "--dir",
            path_str(&ca),
            "--name",
            "web1",
            "--days",
            "30",
        ]);
        let client_rule =
            client_rule.replace("FINGERPRINT", &fingerprint(&ca.join("clients/web1.crt")));
        let server = start_server(dir.path(), &ca, renewal, &client_rule);
        Setup { dir, ca, server }
    }

    fn cert(&self) -> PathBuf {
        self.ca.join("clients/web1.crt")
    }

    fn key(&self) -> PathBuf {
        self.ca.join("clients/web1.key")
    }

    /// Runs the client for `example.com` with `extra` arguments.
    fn sync(&self, extra: &[&str]) -> Output {
        let mut args: Vec<String> = [
            "--no-syslog",
            "--log-stderr",
            "--config",
            "/dev/null",
            "--server",
            &self.server.url(),
            "--dest",
            path_str(&self.dir.path().join("dest")),
            "--cert",
            path_str(&self.cert()),
            "--key",
            path_str(&self.key()),
            "--ca",
            path_str(&self.ca.join("ca.crt")),
        ]
        .iter()
        .map(|arg| (*arg).to_owned())
        .collect();
        args.extend(extra.iter().map(|arg| (*arg).to_owned()));
        args.push("example.com".to_owned());
        run_client(&args)
    }

    fn list(&self) -> String {
        pki_ok(&["list", "--dir", path_str(&self.ca)])
    }
}

fn start_server(dir: &Path, ca: &Path, renewal: Option<&str>, client_rule: &str) -> ServerProcess {
    let mut config =
        format!("[[access]]\nclients = [\"{client_rule}\"]\nlineages = [\"example.com\"]\n");
    if let Some(extra) = renewal {
        config.push_str(&format!(
            "[renewal]\npki_dir = \"{}\"\n{extra}",
            ca.display()
        ));
    }
    ServerProcess::start(&support::harness::pki_server_args(dir, ca, &config))
}

fn leaf(path: &Path) -> CertificateDer<'static> {
    CertificateDer::pem_file_iter(path)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
}

fn fingerprint(path: &Path) -> String {
    acme_dl::protocol::sha256_hex(leaf(path).as_ref())
}

fn serial(path: &Path) -> String {
    acme_dl::identity::Identity::from_der(&leaf(path)).serial
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Lines of `pki list` for client `web1`.
fn client_lines(list: &str) -> Vec<String> {
    list.lines()
        .filter(|line| line.starts_with("client ") && line.contains(" web1 "))
        .map(str::to_owned)
        .collect()
}

#[test]
fn renewal_in_window_replaces_both_files() {
    let setup = Setup::new(Some(""), "cn:web1");
    let old_serial = serial(&setup.cert());
    let old_key = std::fs::read(setup.key()).unwrap();

    // Outside the window (the last third of 30 days): nothing to renew.
    let output = setup.sync(&[]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert_eq!(serial(&setup.cert()), old_serial);

    let output = setup.sync(&["--renew-before-days", "40"]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let new_serial = serial(&setup.cert());
    assert_ne!(new_serial, old_serial);
    assert_ne!(
        std::fs::read(setup.key()).unwrap(),
        old_key,
        "a renewal needs a new key"
    );
    let mode = std::fs::metadata(setup.key()).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert!(!setup.key().with_extension("key.new").exists());
    assert!(
        stderr(&output).contains("client certificate renewed"),
        "{}",
        describe(&output)
    );
    let line = setup
        .server
        .wait_for_log(&["client certificate renewed", &new_serial]);
    assert!(
        line.contains(&format!("previous_serial={old_serial}")),
        "{line}"
    );

    // The index lists both: the old one replaced by the renewal.
    let lines = client_lines(&setup.list());
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines[0].contains(&old_serial), "{lines:?}");
    assert!(lines[0].contains("superseded"), "{lines:?}");
    assert!(lines[1].contains(&new_serial), "{lines:?}");
    assert!(lines[1].contains("valid"), "{lines:?}");
    assert!(
        lines[1].contains(&format!("renewed from {old_serial}")),
        "{lines:?}"
    );

    // OpenSSL accepts the new certificate for client authentication.
    if support::require_program("openssl").is_some() {
        let verify = std::process::Command::new("openssl")
            .args(["verify", "-purpose", "sslclient", "-CAfile"])
            .arg(setup.ca.join("ca.crt"))
            .arg("-untrusted")
            .arg(setup.ca.join("client-ca.crt"))
            .arg(setup.cert())
            .output()
            .unwrap();
        assert!(verify.status.success(), "{}", describe(&verify));
    }

    // Still in the window right after a renewal: the server renews it again only after a
    // day (429, exit 3), and the certificate on disk stays the working one.
    let output = setup.sync(&["--renew-before-days", "40"]);
    assert_eq!(output.status.code(), Some(3), "{}", describe(&output));
    assert!(
        stderr(&output).contains("renews it again after"),
        "{}",
        describe(&output)
    );
    assert_eq!(serial(&setup.cert()), new_serial);

    // With renewal off, only a warning.
    let output = setup.sync(&["--renew-before-days", "40", "--no-renew-identity"]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert!(
        stderr(&output).contains("renewal is off"),
        "{}",
        describe(&output)
    );
}

#[test]
fn lost_response_and_interrupted_install_recover() {
    let setup = Setup::new(Some(""), "cn:web1");
    let saved = setup.dir.path().join("saved");
    std::fs::create_dir(&saved).unwrap();
    std::fs::copy(setup.cert(), saved.join("old.crt")).unwrap();
    std::fs::copy(setup.key(), saved.join("old.key")).unwrap();
    let first_serial = serial(&setup.cert());

    let output = setup.sync(&["--renew-before-days", "40"]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let second_serial = serial(&setup.cert());

    // As if the response never arrived: the old files in place, the new key pending.
    let pending_key = PathBuf::from(format!("{}.new", setup.key().display()));
    std::fs::rename(setup.key(), &pending_key).unwrap();
    std::fs::copy(saved.join("old.key"), setup.key()).unwrap();
    std::fs::copy(saved.join("old.crt"), setup.cert()).unwrap();
    let output = setup.sync(&["--renew-before-days", "40"]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let third_serial = serial(&setup.cert());
    assert_ne!(third_serial, second_serial);
    assert!(!pending_key.exists());
    let line = setup
        .server
        .wait_for_log(&["client certificate renewed", &third_serial]);
    assert!(line.contains("repeated=true"), "{line}");
    let lines = client_lines(&setup.list());
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert!(lines[0].contains(&first_serial), "{lines:?}");
    assert!(lines[0].contains("superseded"), "{lines:?}");
    assert!(lines[1].contains(&second_serial), "{lines:?}");
    assert!(lines[1].contains("superseded"), "{lines:?}");
    assert!(lines[2].contains(&third_serial), "{lines:?}");
    assert!(lines[2].contains("valid"), "{lines:?}");

    // The response is lost a second time: the same key is still recognized.
    std::fs::rename(setup.key(), &pending_key).unwrap();
    std::fs::copy(saved.join("old.key"), setup.key()).unwrap();
    std::fs::copy(saved.join("old.crt"), setup.cert()).unwrap();
    let output = setup.sync(&["--renew-before-days", "40"]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let fourth_serial = serial(&setup.cert());
    let line = setup
        .server
        .wait_for_log(&["client certificate renewed", &fourth_serial]);
    assert!(line.contains(&format!("replaces={third_serial}")), "{line}");
    let third_serial = fourth_serial;

    // As if a run stopped between renaming the key and the certificate: the new key is in
    // place, the old certificate too, and the new certificate is pending.
    let pending_cert = PathBuf::from(format!("{}.new", setup.cert().display()));
    std::fs::copy(setup.cert(), &pending_cert).unwrap();
    std::fs::copy(saved.join("old.crt"), setup.cert()).unwrap();
    let output = setup.sync(&[]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert_eq!(serial(&setup.cert()), third_serial);
    assert!(!pending_cert.exists());
    assert!(
        stderr(&output).contains("interrupted run"),
        "{}",
        describe(&output)
    );

    // A pending certificate that matches no key is removed, and the run goes on.
    std::fs::copy(saved.join("old.crt"), &pending_cert).unwrap();
    let output = setup.sync(&[]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert!(!pending_cert.exists());
    assert_eq!(serial(&setup.cert()), third_serial);
}

#[test]
fn revoked_and_replaced_identities_rejected() {
    let setup = Setup::new(Some(""), "cn:web1");
    let before = std::fs::read(setup.cert()).unwrap();
    let saved = setup.dir.path().join("web1.crt");
    let saved_key = setup.dir.path().join("web1.key");
    std::fs::copy(setup.cert(), &saved).unwrap();
    std::fs::copy(setup.key(), &saved_key).unwrap();

    // The operator issues web1 again: the old certificate may still sync, not renew.
    pki_ok(&[
        "client",
        "--dir",
        path_str(&setup.ca),
        "--name",
        "web1",
        "--days",
        "30",
    ]);
    std::fs::copy(&saved, setup.cert()).unwrap();
    std::fs::copy(&saved_key, setup.key()).unwrap();
    let output = setup.sync(&["--renew-before-days", "40"]);
    assert_eq!(output.status.code(), Some(4), "{}", describe(&output));
    assert!(
        stderr(&output).contains("was replaced by serial"),
        "{}",
        describe(&output)
    );
    assert_eq!(std::fs::read(setup.cert()).unwrap(), before);

    // Revoked in the index; the server has not loaded a revocation list, so only the
    // renewal can refuse it.
    let revoke = pki(&["revoke", "--dir", path_str(&setup.ca), "web1"]);
    assert!(revoke.status.success(), "{}", describe(&revoke));
    let output = setup.sync(&["--renew-before-days", "40"]);
    assert_eq!(output.status.code(), Some(4), "{}", describe(&output));
    assert!(
        stderr(&output).contains("was revoked"),
        "{}",
        describe(&output)
    );
    assert_eq!(std::fs::read(setup.cert()).unwrap(), before);
    setup
        .server
        .wait_for_log(&["request rejected", "status=403", "revoked"]);
}

#[test]
fn fingerprint_rule_and_disabled_renewal_rejected() {
    let setup = Setup::new(Some(""), "sha256:FINGERPRINT");
    let output = setup.sync(&["--renew-before-days", "40"]);
    assert_eq!(output.status.code(), Some(4), "{}", describe(&output));
    assert!(
        stderr(&output).contains("fingerprint, which a renewed certificate would not match"),
        "{}",
        describe(&output)
    );

    let setup = Setup::new(None, "cn:web1");
    let before = std::fs::read(setup.cert()).unwrap();
    let output = setup.sync(&["--renew-before-days", "40"]);
    assert_eq!(output.status.code(), Some(4), "{}", describe(&output));
    assert!(
        stderr(&output).contains("does not renew client certificates"),
        "{}",
        describe(&output)
    );
    assert_eq!(std::fs::read(setup.cert()).unwrap(), before);
}

#[test]
fn expired_certificate_names_pki_command() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca");
    pki_ok(&["init", "--dir", path_str(&ca)]);
    let client_ca = Authority::from_pem(
        &std::fs::read_to_string(ca.join("client-ca.crt")).unwrap(),
        KeyPair::from_pem(&std::fs::read_to_string(ca.join("client-ca.key")).unwrap()).unwrap(),
    )
    .unwrap();
    let mut spec = LeafSpec::new("web9", Usage::Client, 1);
    spec.not_before = time::OffsetDateTime::now_utc() - time::Duration::days(40);
    spec.not_after = time::OffsetDateTime::now_utc() - time::Duration::days(10);
    let issued = client_ca.issue(&spec).unwrap();
    let cert = dir.path().join("web9.crt");
    let key = dir.path().join("web9.key");
    std::fs::write(&cert, &issued.cert_pem).unwrap();
    std::fs::write(&key, &issued.key_pem).unwrap();

    // Nothing listens on port 9 of loopback: the client fails before connecting.
    let args: Vec<String> = [
        "--no-syslog",
        "--config",
        "/dev/null",
        "--server",
        "https://127.0.0.1:9",
        "--dest",
        path_str(&dir.path().join("dest")),
        "--cert",
        path_str(&cert),
        "--key",
        path_str(&key),
        "--ca",
        path_str(&ca.join("ca.crt")),
        "example.com",
    ]
    .iter()
    .map(|arg| (*arg).to_owned())
    .collect();
    let output = run_client(&args);
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    let text = stderr(&output);
    assert!(text.contains("expired on"), "{text}");
    assert!(
        text.contains("acme-dl pki client --dir PKI_DIR --name web9"),
        "{text}"
    );
}

/// Calls the server's renewal directly with hand-made signing requests.
#[test]
fn bad_signing_requests_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca");
    pki_ok(&["init", "--dir", path_str(&ca)]);
    pki_ok(&["server", "--dir", path_str(&ca), "--name", "localhost"]);
    pki_ok(&["client", "--dir", path_str(&ca), "--name", "web1"]);
    let client = leaf(&ca.join("clients/web1.crt"));
    let server = leaf(&ca.join("servers/localhost.crt"));
    let current_key =
        KeyPair::from_pem(&std::fs::read_to_string(ca.join("clients/web1.key")).unwrap()).unwrap();
    let request = |presented: &[u8], csr: &str| {
        acme_dl::ca::renew(
            &ca,
            &RenewalRequest {
                presented,
                csr_pem: csr,
                validity: None,
                // The renewal below is presented again at once.
                min_interval: time::Duration::ZERO,
            },
            || Ok(()),
        )
    };
    let csr_for = |key: &KeyPair| {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "someone-else");
        params.serialize_request(key).unwrap().pem().unwrap()
    };
    let new_key = KeyPair::generate().unwrap();

    let same_key = request(client.as_ref(), &csr_for(&current_key)).unwrap_err();
    assert!(
        matches!(&same_key, RenewalError::BadRequest(r) if r.contains("new key")),
        "{same_key:?}"
    );

    let garbage = request(client.as_ref(), "not a request").unwrap_err();
    assert!(
        matches!(&garbage, RenewalError::BadRequest(r) if r.contains("not PEM")),
        "{garbage:?}"
    );

    // A request whose subject was changed after it was signed.
    let signed = csr_for(&new_key);
    let mut der =
        rustls::pki_types::CertificateSigningRequestDer::from_pem_slice(signed.as_bytes())
            .unwrap()
            .as_ref()
            .to_vec();
    let at = der.windows(12).position(|w| w == b"someone-else").unwrap();
    der[at + 11] = b'f';
    let tampered = String::from_utf8(acme_dl::pem::encode("CERTIFICATE REQUEST", &der)).unwrap();
    let forged = request(client.as_ref(), &tampered).unwrap_err();
    assert!(
        matches!(&forged, RenewalError::BadRequest(r) if r.contains("signature does not verify")),
        "{forged:?}"
    );

    let not_client = request(server.as_ref(), &csr_for(&new_key)).unwrap_err();
    assert!(
        matches!(&not_client, RenewalError::Refused(r) if r.contains("server certificate")),
        "{not_client:?}"
    );

    // The identity comes from the presented certificate, not from the request, and the
    // new certificate spans as long as the presented one.
    let renewed = request(client.as_ref(), &csr_for(&new_key)).unwrap();
    assert_eq!(renewed.identity, "web1");
    let span = |der: &[u8]| {
        let info = acme_dl::identity::Identity::from_der(&CertificateDer::from(der));
        assert_eq!(info.common_name.as_deref(), Some("web1"));
        let (_, cert) = x509_parser::parse_x509_certificate(der).unwrap();
        cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp()
    };
    let new_leaf = CertificateDer::pem_slice_iter(renewed.chain_pem.as_bytes())
        .next()
        .unwrap()
        .unwrap();
    assert_eq!(span(new_leaf.as_ref()), span(client.as_ref()));

    // A key that an earlier certificate of the index had is rejected.
    let old_key = request(new_leaf.as_ref(), &csr_for(&current_key)).unwrap_err();
    assert!(
        matches!(&old_key, RenewalError::BadRequest(r) if r.contains("already certified")),
        "{old_key:?}"
    );

    if support::require_program("openssl").is_none() {
        return;
    }
    let weak_key = dir.path().join("weak.key");
    let weak_csr = dir.path().join("weak.csr");
    let status = std::process::Command::new("openssl")
        .args([
            "req", "-new", "-newkey", "rsa:1024", "-nodes", "-subj", "/CN=web1", "-keyout",
        ])
        .arg(&weak_key)
        .arg("-out")
        .arg(&weak_csr)
        .output()
        .unwrap();
    assert!(status.status.success(), "{}", describe(&status));
    let weak = request(
        client.as_ref(),
        &std::fs::read_to_string(&weak_csr).unwrap(),
    );
    assert!(
        matches!(&weak, Err(RenewalError::BadRequest(r)) if r.contains("1024 bits")),
        "{weak:?}"
    );
}

#[test]
fn rejected_requests_leave_the_budget() {
    // One signature a minute: rejected requests must not use it up.
    let setup = Setup::new(Some("max_per_minute = 1\n"), "cn:web1\", \"cn:web2");
    pki_ok(&[
        "client",
        "--dir",
        path_str(&setup.ca),
        "--name",
        "web2",
        "--days",
        "30",
    ]);
    let identity = support::harness::Identity {
        cert: setup.cert(),
        key: setup.key(),
        ca: setup.ca.join("ca.crt"),
    };
    let body = r#"{"csr":"garbage"}"#;
    let request = format!(
        "POST /api/renew-identity HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    for _ in 0..3 {
        let response =
            support::harness::raw_request(setup.server.addr, Some(&identity), request.as_bytes())
                .unwrap();
        assert_eq!(response.status, 400);
    }
    let output = setup.sync(&["--renew-before-days", "40"]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));

    // The signature used the minute's budget: web2 waits (429, exit 3), its files stay.
    let web2 = setup.ca.join("clients/web2.crt");
    let before = std::fs::read(&web2).unwrap();
    let mut args = setup_args(&setup, &web2, &setup.ca.join("clients/web2.key"));
    args.extend(["--renew-before-days".to_owned(), "40".to_owned()]);
    let output = run_client(&args);
    assert_eq!(output.status.code(), Some(3), "{}", describe(&output));
    assert!(
        stderr(&output).contains("renewals a minute"),
        "{}",
        describe(&output)
    );
    assert_eq!(std::fs::read(&web2).unwrap(), before);
    assert!(!PathBuf::from(format!("{}.new", web2.display())).exists());
}

#[test]
fn client_without_access_rule_is_rejected() {
    let setup = Setup::new(Some(""), "cn:someone-else");
    let output = setup.sync(&["--renew-before-days", "40"]);
    assert_eq!(output.status.code(), Some(4), "{}", describe(&output));
    assert!(
        stderr(&output).contains("no access rule names this client"),
        "{}",
        describe(&output)
    );
}

#[test]
fn linked_certificate_and_key_keep_their_links() {
    let setup = Setup::new(Some(""), "cn:web1");
    let links = setup.dir.path().join("links");
    std::fs::create_dir(&links).unwrap();
    let (cert_link, key_link) = (links.join("client.crt"), links.join("client.key"));
    std::os::unix::fs::symlink(setup.cert(), &cert_link).unwrap();
    std::os::unix::fs::symlink(setup.key(), &key_link).unwrap();
    let old_serial = serial(&setup.cert());

    let mut args = setup_args(&setup, &cert_link, &key_link);
    args.extend(["--renew-before-days".to_owned(), "40".to_owned()]);
    let output = run_client(&args);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));

    assert!(std::fs::symlink_metadata(&cert_link).unwrap().is_symlink());
    assert!(std::fs::symlink_metadata(&key_link).unwrap().is_symlink());
    assert_ne!(
        serial(&setup.cert()),
        old_serial,
        "the link's target was renewed"
    );
    let output = run_client(&setup_args(&setup, &cert_link, &key_link));
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
}

/// Returns the client arguments of `setup` with another certificate and key.
fn setup_args(setup: &Setup, cert: &Path, key: &Path) -> Vec<String> {
    [
        "--no-syslog",
        "--log-stderr",
        "--config",
        "/dev/null",
        "--server",
        &setup.server.url(),
        "--dest",
        path_str(&setup.dir.path().join("dest-other")),
        "--cert",
        path_str(cert),
        "--key",
        path_str(key),
        "--ca",
        path_str(&setup.ca.join("ca.crt")),
        "example.com",
    ]
    .iter()
    .map(|arg| (*arg).to_owned())
    .collect()
}
