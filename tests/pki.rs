//! `acme-dl pki`: the files it writes load unchanged in OpenSSL, curl, nginx and the
//! acme-dl server and client. A revocation takes effect on SIGHUP, and an OpenSSL-made CA
//! moves over with its earlier clients still accepted.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use support::harness::{
    Identity, ServerProcess, binary, describe, openssl, pki, pki_ok, run_client,
};

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn text(output: Vec<u8>) -> String {
    String::from_utf8(output).unwrap()
}

/// Runs openssl and returns its output whatever the status, for expected failures.
fn openssl_output(dir: &Path, args: &[&str]) -> Output {
    Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap()
}

fn path_str(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// Writes a server configuration with one access rule per client name, and a Certbot
/// store with `example.com`, and returns the arguments that start the server.
fn server_args(dir: &Path, ca: &Path, clients: &[&str]) -> Vec<String> {
    let mut config = format!("crl = [\"{}\"]\n", ca.join("crl.pem").display());
    for client in clients {
        config.push_str(&format!(
            "[[access]]\nclients = [\"cn:{client}\"]\nlineages = [\"example.com\"]\n"
        ));
    }
    support::harness::pki_server_args(dir, ca, &config)
}

fn client_identity(ca: &Path, name: &str) -> Identity {
    Identity {
        cert: ca.join(format!("clients/{name}.crt")),
        key: ca.join(format!("clients/{name}.key")),
        ca: ca.join("ca.crt"),
    }
}

fn sync(server: &ServerProcess, identity: &Identity, dest: &Path) -> Output {
    let mut args = vec![
        "--no-syslog".to_owned(),
        "--config".to_owned(),
        "/dev/null".to_owned(),
        "--server".to_owned(),
        server.url(),
        "--dest".to_owned(),
        dest.display().to_string(),
    ];
    args.extend(identity.args());
    args.push("example.com".to_owned());
    run_client(&args)
}

/// Fetches a file with curl and the client certificate; returns curl's output.
fn curl(server: &ServerProcess, ca: &Path, name: &str) -> Output {
    let url = format!(
        "https://localhost:{}/download/example.com/cert.pem",
        server.addr.port()
    );
    Command::new("curl")
        .args(["--silent", "--show-error", "--fail", "--max-time", "10"])
        .args([
            "--resolve",
            &format!("localhost:{}:127.0.0.1", server.addr.port()),
        ])
        .args(["--cacert", path_str(&ca.join("ca.crt"))])
        .args(["--cert", path_str(&ca.join(format!("clients/{name}.crt")))])
        .args(["--key", path_str(&ca.join(format!("clients/{name}.key")))])
        .arg(url)
        .output()
        .unwrap()
}

/// Verifies with OpenSSL the server certificate against the root, and client `web1`
/// through the client intermediate.
fn openssl_verifies_server_and_web1(ca: &Path) {
    openssl(
        ca,
        &["verify", "-CAfile", "ca.crt", "servers/localhost.crt"],
    );
    openssl(
        ca,
        &[
            "verify",
            "-CAfile",
            "ca.crt",
            "-untrusted",
            "client-ca.crt",
            "clients/web1.crt",
        ],
    );
}

fn init_server_client(ca: &Path, extra: &[&str]) {
    let mut init = vec!["init", "--dir", path_str(ca)];
    init.extend(extra);
    pki_ok(&init);
    // Leaves end before the shortest CA of these tests, which is valid for 30 days.
    pki_ok(&[
        "server",
        "--dir",
        path_str(ca),
        "--name",
        "localhost",
        "--ip",
        "127.0.0.1",
        "--days",
        "20",
    ]);
    pki_ok(&[
        "client",
        "--dir",
        path_str(ca),
        "--name",
        "web1",
        "--days",
        "20",
    ]);
}

#[test]
fn init_files_load_in_openssl() {
    if support::require_program("openssl").is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca");
    let pass = dir.path().join("pass");
    std::fs::write(&pass, "correct horse\n").unwrap();
    let passphrase = format!("--passphrase-file={}", pass.display());
    pki_ok(&["init", "--dir", path_str(&ca), &passphrase]);
    let out = pki_ok(&[
        "server",
        "--dir",
        path_str(&ca),
        "--name",
        "localhost",
        "--ip",
        "127.0.0.1",
        "--dns",
        "certs.example.net",
        &passphrase,
    ]);
    assert!(out.contains("client-trust.pem"), "{out}");
    let out = pki_ok(&[
        "client",
        "--dir",
        path_str(&ca),
        "--name",
        "web1",
        "--lineage",
        "example.com",
        "--lineage",
        "*.shop.example",
        "--certificates-only",
    ]);
    assert!(out.contains("clients = [\"cn:web1\"]"), "{out}");
    assert!(
        out.contains("lineages = [\"example.com\", \"*.shop.example\"]"),
        "{out}"
    );
    assert!(out.contains("private_keys = false"), "{out}");

    assert_eq!(mode(&ca), 0o700);
    for key in [
        "ca.key",
        "client-ca.key",
        "servers/localhost.key",
        "clients/web1.key",
    ] {
        assert_eq!(mode(&ca.join(key)), 0o600, "{key}");
    }
    let root_key = std::fs::read_to_string(ca.join("ca.key")).unwrap();
    assert!(root_key.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----"));
    openssl(
        &ca,
        &[
            "pkey",
            "-in",
            "ca.key",
            "-passin",
            &format!("file:{}", pass.display()),
            "-noout",
        ],
    );
    let wrong = dir.path().join("wrong");
    std::fs::write(&wrong, "wrong\n").unwrap();
    let refused = openssl_output(
        &ca,
        &[
            "pkey",
            "-in",
            "ca.key",
            "-passin",
            &format!("file:{}", wrong.display()),
            "-noout",
        ],
    );
    assert!(!refused.status.success());

    openssl_verifies_server_and_web1(&ca);
    // client-trust.pem, as the server's ca setting, verifies the client and its lists.
    openssl(
        &ca,
        &[
            "verify",
            "-CAfile",
            "client-trust.pem",
            "-CRLfile",
            "crl.pem",
            "-crl_check_all",
            "clients/web1.crt",
        ],
    );
    let server_ext = text(openssl(
        &ca,
        &[
            "x509",
            "-in",
            "servers/localhost.crt",
            "-noout",
            "-ext",
            "extendedKeyUsage,subjectAltName,keyUsage",
        ],
    ));
    assert!(
        server_ext.contains("TLS Web Server Authentication"),
        "{server_ext}"
    );
    assert!(!server_ext.contains("Client"), "{server_ext}");
    assert!(server_ext.contains("DNS:localhost"), "{server_ext}");
    assert!(server_ext.contains("DNS:certs.example.net"), "{server_ext}");
    assert!(server_ext.contains("IP Address:127.0.0.1"), "{server_ext}");
    let client_ext = text(openssl(
        &ca,
        &[
            "x509",
            "-in",
            "clients/web1.crt",
            "-noout",
            "-subject",
            "-ext",
            "extendedKeyUsage",
        ],
    ));
    assert!(client_ext.contains("CN = web1"), "{client_ext}");
    assert!(
        client_ext.contains("TLS Web Client Authentication"),
        "{client_ext}"
    );
    assert!(!client_ext.contains("Server"), "{client_ext}");
    let intermediate = text(openssl(
        &ca,
        &[
            "x509",
            "-in",
            "client-ca.crt",
            "-noout",
            "-ext",
            "basicConstraints,extendedKeyUsage",
        ],
    ));
    assert!(
        intermediate.contains("CA:TRUE, pathlen:0"),
        "{intermediate}"
    );
    assert!(
        intermediate.contains("TLS Web Client Authentication"),
        "{intermediate}"
    );
    // The client's file carries the intermediate after the leaf.
    let chain = std::fs::read_to_string(ca.join("clients/web1.crt")).unwrap();
    assert_eq!(chain.matches("BEGIN CERTIFICATE").count(), 2);
    let crls = std::fs::read_to_string(ca.join("crl.pem")).unwrap();
    assert_eq!(crls.matches("BEGIN X509 CRL").count(), 2);

    // A second init must not overwrite the PKI.
    let again = pki(&["init", "--dir", path_str(&ca)]);
    assert_eq!(again.status.code(), Some(2), "{}", describe(&again));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already holds a PKI"));
    // The encrypted root cannot sign without its passphrase.
    let locked = pki(&["server", "--dir", path_str(&ca), "--name", "other"]);
    assert_eq!(locked.status.code(), Some(2), "{}", describe(&locked));
    assert!(String::from_utf8_lossy(&locked.stderr).contains("--passphrase-file"));
}

#[test]
fn init_supports_rsa_and_ed25519() {
    if support::require_program("openssl").is_none() {
        return;
    }
    for key_type in ["rsa2048", "ed25519", "ecdsa-p384"] {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca");
        init_server_client(
            &ca,
            &["--key-type", key_type, "--days", "30", "--name", "Fleet"],
        );
        let root = text(openssl(&ca, &["x509", "-in", "ca.crt", "-noout", "-text"]));
        let expected = match key_type {
            "rsa2048" => "rsaEncryption",
            "ed25519" => "ED25519",
            _ => "secp384r1",
        };
        assert!(root.contains(expected), "{key_type}: {root}");
        openssl_verifies_server_and_web1(&ca);
        let key_usage = text(openssl(
            &ca,
            &[
                "x509",
                "-in",
                "servers/localhost.crt",
                "-noout",
                "-ext",
                "keyUsage",
            ],
        ));
        assert_eq!(
            key_usage.contains("Key Encipherment"),
            key_type == "rsa2048",
            "{key_type}: {key_usage}"
        );
        openssl(&ca, &["pkey", "-in", "servers/localhost.key", "-noout"]);
    }
}

#[test]
fn nginx_accepts_server_certificate() {
    let Some(nginx) = support::require_program("nginx") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca");
    init_server_client(&ca, &[]);
    // nginx -t parses the configuration and loads the files without binding the port.
    let config = dir.path().join("nginx.conf");
    std::fs::write(
        &config,
        format!(
            "pid {dir}/nginx.pid;\nerror_log {dir}/error.log;\nevents {{}}\nhttp {{\n  \
             access_log off;\n  server {{\n    listen 127.0.0.1:18443 ssl;\n    \
             ssl_certificate {ca}/servers/localhost.crt;\n    \
             ssl_certificate_key {ca}/servers/localhost.key;\n    \
             ssl_client_certificate {ca}/client-trust.pem;\n    ssl_crl {ca}/crl.pem;\n    \
             ssl_verify_client on;\n  }}\n}}\n",
            dir = dir.path().display(),
            ca = ca.display()
        ),
    )
    .unwrap();
    let output = Command::new(nginx)
        .args(["-t", "-c", path_str(&config), "-p", path_str(dir.path())])
        .output()
        .unwrap();
    assert!(output.status.success(), "nginx -t: {}", describe(&output));
}

#[test]
fn server_enforces_revocation_after_reload() {
    if support::require_program("curl").is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca");
    init_server_client(&ca, &[]);
    pki_ok(&["client", "--dir", path_str(&ca), "--name", "web2"]);
    let server = ServerProcess::start(&server_args(dir.path(), &ca, &["web1", "web2"]));

    let before = curl(&server, &ca, "web1");
    assert!(before.status.success(), "curl web1: {}", describe(&before));
    assert!(String::from_utf8_lossy(&before.stdout).contains("BEGIN CERTIFICATE"));
    let synced = sync(
        &server,
        &client_identity(&ca, "web2"),
        &dir.path().join("dest2"),
    );
    assert!(
        synced.status.success(),
        "client web2: {}",
        describe(&synced)
    );

    let out = pki_ok(&[
        "revoke",
        "--dir",
        path_str(&ca),
        "web1",
        "--reason",
        "key-compromise",
    ]);
    assert!(out.contains("SIGHUP"), "{out}");
    server.signal("HUP");
    server.wait_for_log(&["configuration reloaded", "crls=1"]);

    let after = curl(&server, &ca, "web1");
    assert!(
        !after.status.success(),
        "revoked web1 was served: {}",
        describe(&after)
    );
    let refused = sync(
        &server,
        &client_identity(&ca, "web1"),
        &dir.path().join("dest1"),
    );
    assert!(!refused.status.success(), "{}", describe(&refused));
    let other = curl(&server, &ca, "web2");
    assert!(other.status.success(), "curl web2: {}", describe(&other));

    let list = pki_ok(&["list", "--dir", path_str(&ca)]);
    let web1 = list.lines().find(|line| line.contains(" web1 ")).unwrap();
    assert!(web1.ends_with("revoked"), "{list}");
}

#[test]
fn reissue_supersedes_and_crl_renumbers() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca");
    init_server_client(&ca, &[]);
    let out = pki_ok(&["client", "--dir", path_str(&ca), "--name", "web1"]);
    assert!(out.contains("supersedes serial"), "{out}");
    assert!(
        out.contains("rule for cn:web1 applies to the new certificate"),
        "{out}"
    );
    assert!(!out.contains("add this rule"), "{out}");
    let list = pki_ok(&["list", "--dir", path_str(&ca)]);
    let states: Vec<&str> = list
        .lines()
        .filter(|line| line.starts_with("client "))
        .map(|line| line.split_whitespace().nth(5).unwrap())
        .collect();
    assert_eq!(states, ["superseded", "valid"], "{list}");
    assert!(list.contains("valid       replaces "), "{list}");

    let index: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(ca.join("index.json")).unwrap()).unwrap();
    let clients: Vec<&serde_json::Value> = index["certificates"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|record| record["kind"] == "client")
        .collect();
    assert_eq!(clients[1]["supersedes"], clients[0]["serial"]);
    assert_eq!(clients[1]["issuer"], "client-ca");
    let number_before = index["crl_number"].as_u64().unwrap();
    pki_ok(&["crl", "--dir", path_str(&ca), "--days", "7"]);
    let index: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(ca.join("index.json")).unwrap()).unwrap();
    assert_eq!(index["crl_number"].as_u64().unwrap(), number_before + 2);

    // Revoking by serial takes one certificate; an unknown target is a usage error.
    let serial = clients[0]["serial"].as_str().unwrap();
    pki_ok(&["revoke", "--dir", path_str(&ca), serial]);
    let unknown = pki(&["revoke", "--dir", path_str(&ca), "nobody"]);
    assert_eq!(unknown.status.code(), Some(2), "{}", describe(&unknown));
}

/// Makes a CA and a client certificate with plain OpenSSL commands, RSA 2048 in PKCS#1.
fn openssl_ca(dir: &Path) {
    openssl(dir, &["genrsa", "-traditional", "-out", "ca.key", "2048"]);
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-new",
            "-key",
            "ca.key",
            "-sha256",
            "-days",
            "30",
            "-subj",
            "/CN=OpenSSL Fleet CA",
            "-out",
            "ca.crt",
        ],
    );
    openssl(
        dir,
        &[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            "old.key",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-key",
            "old.key",
            "-subj",
            "/CN=old-client",
            "-out",
            "old.csr",
        ],
    );
    std::fs::write(dir.join("client.ext"), "extendedKeyUsage = clientAuth\n").unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "old.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "30",
            "-sha256",
            "-extfile",
            "client.ext",
            "-out",
            "old.crt",
        ],
    );
}

#[test]
fn import_keeps_openssl_clients_working() {
    if support::require_program("openssl").is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let legacy = dir.path().join("legacy");
    std::fs::create_dir_all(&legacy).unwrap();
    openssl_ca(&legacy);
    let ca = dir.path().join("ca");
    let out = pki_ok(&[
        "import",
        "--dir",
        path_str(&ca),
        "--ca-cert",
        path_str(&legacy.join("ca.crt")),
        "--ca-key",
        path_str(&legacy.join("ca.key")),
    ]);
    assert!(out.contains("keep working"), "{out}");
    assert_eq!(mode(&ca.join("ca.key")), 0o600);
    pki_ok(&[
        "server",
        "--dir",
        path_str(&ca),
        "--name",
        "localhost",
        "--ip",
        "127.0.0.1",
        "--days",
        "20",
    ]);
    pki_ok(&[
        "client",
        "--dir",
        path_str(&ca),
        "--name",
        "web1",
        "--days",
        "20",
    ]);
    openssl(
        &ca,
        &[
            "verify",
            "-CAfile",
            path_str(&legacy.join("ca.crt")),
            "servers/localhost.crt",
        ],
    );
    openssl(
        &ca,
        &[
            "verify",
            "-CAfile",
            path_str(&legacy.join("ca.crt")),
            "-untrusted",
            "client-ca.crt",
            "clients/web1.crt",
        ],
    );

    let server = ServerProcess::start(&server_args(dir.path(), &ca, &["old-client", "web1"]));
    let old = Identity {
        cert: legacy.join("old.crt"),
        key: legacy.join("old.key"),
        ca: legacy.join("ca.crt"),
    };
    let synced = sync(&server, &old, &dir.path().join("dest-old"));
    assert!(
        synced.status.success(),
        "OpenSSL-made client: {}",
        describe(&synced)
    );
    let synced = sync(
        &server,
        &client_identity(&ca, "web1"),
        &dir.path().join("dest-new"),
    );
    assert!(
        synced.status.success(),
        "acme-dl-made client: {}",
        describe(&synced)
    );

    // The OpenSSL-made client is revoked by its serial, which the index never listed.
    let serial = text(openssl(
        &legacy,
        &["x509", "-in", "old.crt", "-noout", "-serial"],
    ));
    let serial = serial.trim().trim_start_matches("serial=");
    let missing = pki(&["revoke", "--dir", path_str(&ca), serial]);
    assert_eq!(missing.status.code(), Some(2), "{}", describe(&missing));
    pki_ok(&["revoke", "--dir", path_str(&ca), serial, "--unindexed"]);
    server.signal("HUP");
    server.wait_for_log(&["configuration reloaded", "crls=1"]);
    let refused = sync(&server, &old, &dir.path().join("dest-old2"));
    assert!(!refused.status.success(), "{}", describe(&refused));
}

#[test]
fn import_rejects_mismatched_key() {
    if support::require_program("openssl").is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    openssl_ca(dir.path());
    let ca: PathBuf = dir.path().join("ca");
    let output = pki(&[
        "import",
        "--dir",
        path_str(&ca),
        "--ca-cert",
        path_str(&dir.path().join("ca.crt")),
        "--ca-key",
        path_str(&dir.path().join("old.key")),
    ]);
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    assert!(String::from_utf8_lossy(&output.stderr).contains("does not belong"));
    assert!(!ca.exists(), "a failed import left {}", ca.display());
}

#[test]
fn init_failure_leaves_directory_reusable() {
    // A missing passphrase file fails the command before anything is written. The same
    // command then succeeds once the file exists, because a failed init leaves nothing.
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca");
    let passphrase = dir.path().join("ca.pass");
    let args = [
        "init",
        "--dir",
        path_str(&ca),
        "--passphrase-file",
        path_str(&passphrase),
    ];
    let output = pki(&args);
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    assert!(!ca.exists(), "a failed init left {}", ca.display());

    std::fs::write(&passphrase, "correct horse battery staple\n").unwrap();
    pki_ok(&args);
    assert!(ca.join("index.json").exists());
}

#[test]
fn list_into_closed_pipe_exits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca");
    pki_ok(&["init", "--dir", path_str(&ca)]);
    for name in ["web1", "web2", "web3"] {
        pki_ok(&["client", "--dir", path_str(&ca), "--name", name]);
    }
    let mut child = Command::new(binary())
        .args(["pki", "list", "--dir", path_str(&ca)])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Closing the read end before the command writes, as `| head -0` does.
    drop(child.stdout.take());
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert!(
        !String::from_utf8_lossy(&output.stderr).contains("panicked"),
        "{}",
        describe(&output)
    );
}

#[test]
fn failed_revoke_reports_nothing_revoked() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca");
    pki_ok(&["init", "--dir", path_str(&ca)]);
    pki_ok(&["client", "--dir", path_str(&ca), "--name", "web415"]);
    let missing = dir.path().join("missing.pass");
    let output = pki(&[
        "revoke",
        "--dir",
        path_str(&ca),
        "web415",
        "--passphrase-file",
        path_str(&missing),
    ]);
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    assert!(
        !String::from_utf8_lossy(&output.stdout).contains("revoked"),
        "a failed revoke claimed success: {}",
        describe(&output)
    );
    let list = pki_ok(&["list", "--dir", path_str(&ca)]);
    let line = list.lines().find(|line| line.contains("web415")).unwrap();
    assert!(line.ends_with("valid"), "{line}");
}

#[test]
fn server_reissue_keeps_its_names() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca");
    pki_ok(&["init", "--dir", path_str(&ca)]);
    let server = |extra: &[&str]| {
        let mut args = vec![
            "server",
            "--dir",
            path_str(&ca),
            "--name",
            "certs.example.net",
        ];
        args.extend(extra);
        pki_ok(&args)
    };
    let names = || {
        let pem = std::fs::read(ca.join("servers/certs.example.net.crt")).unwrap();
        let (_, block) = x509_parser::pem::parse_x509_pem(&pem).unwrap();
        let cert = block.parse_x509().unwrap();
        let san = cert.subject_alternative_name().unwrap().unwrap();
        san.value
            .general_names
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
    };
    server(&["--ip", "127.0.0.1", "--dns", "certs.internal"]);
    let first = names();

    // Issued again with the name alone: the address and the extra name stay.
    let out = server(&[]);
    assert!(out.contains("kept the names"), "{out}");
    assert_eq!(names(), first);

    // Names given on the command line replace the old ones.
    let out = server(&["--dns", "certs.other"]);
    assert!(!out.contains("kept the names"), "{out}");
    let last = names();
    assert_eq!(last.len(), 2, "{last:?}");
    assert!(
        last.iter().any(|name| name.contains("certs.other")),
        "{last:?}"
    );
}
