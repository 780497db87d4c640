//! A PKI made with plain OpenSSL commands, as the deployed pair's guide makes it with
//! RSA 2048 keys in PKCS#1 form, works with acme-dl unchanged. So do PKCS#8 and SEC1 keys.

mod support;

use std::path::Path;
use std::process::Command;

use acme_dl::pki::Authority;
use support::harness::{Identity, ServerProcess, describe, run_client, write_lineage};

fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "openssl {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Signs `<stem>.key` into `<stem>.crt` with the given X.509 v3 extensions.
fn sign(dir: &Path, stem: &str, subject: &str, extensions: &str) {
    std::fs::write(dir.join(format!("{stem}.ext")), extensions).unwrap();
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-key",
            &format!("{stem}.key"),
            "-subj",
            subject,
            "-out",
            &format!("{stem}.csr"),
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &format!("{stem}.csr"),
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "30",
            "-sha256",
            "-extfile",
            &format!("{stem}.ext"),
            "-out",
            &format!("{stem}.crt"),
        ],
    );
}

fn first_line(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// Returns the public key of a certificate or private key, as OpenSSL prints it.
fn public_key(dir: &Path, args: &[&str]) -> String {
    let output = Command::new("openssl")
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

#[test]
fn openssl_made_pki_works_unchanged() {
    if support::require_program("openssl").is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let tls = dir.path().join("tls");
    std::fs::create_dir_all(&tls).unwrap();

    openssl(&tls, &["genrsa", "-traditional", "-out", "ca.key", "2048"]);
    openssl(
        &tls,
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
            "/CN=OpenSSL Test CA",
            "-out",
            "ca.crt",
        ],
    );
    openssl(
        &tls,
        &["genrsa", "-traditional", "-out", "server.key", "2048"],
    );
    sign(
        &tls,
        "server",
        "/CN=localhost",
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    );
    openssl(
        &tls,
        &["genrsa", "-traditional", "-out", "client.key", "2048"],
    );
    sign(
        &tls,
        "client",
        "/CN=web-rsa",
        "extendedKeyUsage=clientAuth\n",
    );
    openssl(
        &tls,
        &[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            "client8.key",
        ],
    );
    sign(
        &tls,
        "client8",
        "/CN=web-pkcs8",
        "extendedKeyUsage=clientAuth\n",
    );
    openssl(
        &tls,
        &[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            "clientec.key",
        ],
    );
    sign(
        &tls,
        "clientec",
        "/CN=web-ec",
        "extendedKeyUsage=clientAuth\n",
    );

    assert_eq!(
        first_line(&tls.join("server.key")),
        "-----BEGIN RSA PRIVATE KEY-----"
    );
    assert_eq!(
        first_line(&tls.join("client8.key")),
        "-----BEGIN PRIVATE KEY-----"
    );
    assert_eq!(
        first_line(&tls.join("clientec.key")),
        "-----BEGIN EC PRIVATE KEY-----"
    );

    let certbot = dir.path().join("letsencrypt");
    let acme = Authority::new_root("test ACME CA", 30).unwrap();
    write_lineage(&certbot, &acme, "example.com", 1);
    let server = ServerProcess::start(&[
        "--no-syslog".into(),
        "--allow-all-clients".into(),
        "--config".into(),
        "/dev/null".into(),
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--certbot-dir".into(),
        certbot.display().to_string(),
        "--cert".into(),
        tls.join("server.crt").display().to_string(),
        "--key".into(),
        tls.join("server.key").display().to_string(),
        "--ca".into(),
        tls.join("ca.crt").display().to_string(),
    ]);

    for (stem, name) in [
        ("client", "web-rsa"),
        ("client8", "web-pkcs8"),
        ("clientec", "web-ec"),
    ] {
        let identity = Identity {
            cert: tls.join(format!("{stem}.crt")),
            key: tls.join(format!("{stem}.key")),
            ca: tls.join("ca.crt"),
        };
        let dest = dir.path().join(format!("dest-{stem}"));
        for url in [
            server.url(),
            format!("https://127.0.0.1:{}", server.addr.port()),
        ] {
            let mut args: Vec<String> = vec![
                "--no-syslog".into(),
                "--config".into(),
                "/dev/null".into(),
                "--server".into(),
                url,
                "--dest".into(),
                dest.display().to_string(),
            ];
            args.extend(identity.args());
            args.push("example.com".into());
            let output = run_client(&args);
            assert_eq!(
                output.status.code(),
                Some(0),
                "{stem}: {}",
                describe(&output)
            );
        }
        server.wait_for_log(&["check", &format!("client={name}")]);

        let live = dest.join("example.com");
        let from_cert = public_key(&live, &["x509", "-in", "cert.pem", "-noout", "-pubkey"]);
        let from_key = public_key(&live, &["pkey", "-in", "privkey.pem", "-pubout"]);
        assert_eq!(
            from_cert, from_key,
            "{stem}: installed key does not match certificate"
        );
    }
}
