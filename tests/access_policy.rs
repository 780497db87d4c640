//! The server's access policy, end to end: which client may fetch which lineage, denied
//! and unknown lineages looking alike, certificate-only clients, a server without a
//! policy, and `--check-config --explain`.

mod support;

use std::process::{Command, Stdio};

use acme_dl::pki::{LeafSpec, Usage};
use support::harness::{Deployment, describe, raw_request, run_client, write_lineage};

const POLICY: &str = r#"
[[access]]
clients = ["cn:web412"]
lineages = ["example.com", "*.shop.example"]

[[access]]
clients = ["dns:lb.example.net"]
lineages = ["*"]
private_keys = false
"#;

fn with_policy(lineages: &[&str]) -> Deployment {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("server.toml");
    std::fs::write(&config, POLICY).unwrap();
    let deployment =
        Deployment::with_server_args(lineages, &["--config", config.to_str().unwrap()]);
    // The configuration file must outlive the server start only.
    drop(dir);
    deployment
}

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").into_bytes()
}

fn check(domain: &str) -> Vec<u8> {
    let zeros = "0".repeat(64);
    let body = format!(
        r#"{{"domain":"{domain}","hashes":{{"fullchain_hash":"{zeros}","privkey_hash":"{zeros}","chain_hash":"{zeros}"}}}}"#
    );
    format!(
        "POST /api/check HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[test]
fn allowed_lineages_sync_and_others_look_unknown() {
    let deployment = with_policy(&["example.com", "a.shop.example", "secret.example"]);
    let output = run_client(
        &deployment.client_args(&deployment.pki.client, &["example.com", "a.shop.example"]),
    );
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));

    let client = &deployment.pki.client;
    for (denied, unknown) in [
        (check("secret.example"), check("missing.example")),
        (
            get("/download/secret.example/privkey.pem"),
            get("/download/missing.example/privkey.pem"),
        ),
        (
            get("/download/secret.example/cert.pem"),
            get("/download/missing.example/cert.pem"),
        ),
    ] {
        let denied = raw_request(deployment.server.addr, Some(client), &denied).unwrap();
        let unknown = raw_request(deployment.server.addr, Some(client), &unknown).unwrap();
        assert_eq!(denied.status, 404);
        assert_eq!(denied.status, unknown.status);
        assert_eq!(denied.body, unknown.body);
        let strip_date = |head: &str| {
            head.lines()
                .filter(|line| !line.to_ascii_lowercase().starts_with("date:"))
                .collect::<Vec<_>>()
                .join("\n")
        };
        assert_eq!(strip_date(&denied.head), strip_date(&unknown.head));
    }
    deployment.server.wait_for_log(&[
        "access denied",
        "client=web412",
        "lineage=secret.example",
        "no access rule matches",
    ]);
    deployment
        .server
        .wait_for_log(&["access denied", "lineage=missing.example"]);

    let output = run_client(&deployment.client_args(client, &["secret.example"]));
    assert_eq!(output.status.code(), Some(4), "{}", describe(&output));
    assert!(!deployment.dest.join("secret.example").exists());
}

#[test]
fn certificate_only_client_gets_no_key() {
    let deployment = with_policy(&["example.com"]);
    let mut spec = LeafSpec::new("edge-lb", Usage::Client, 30);
    spec.dns_names = vec!["lb.example.net".to_owned()];
    let balancer = deployment.pki.issue("lb", &spec);

    let chain = raw_request(
        deployment.server.addr,
        Some(&balancer),
        &get("/download/example.com/fullchain.pem"),
    )
    .unwrap();
    assert_eq!(chain.status, 200);
    assert_eq!(
        chain.body,
        deployment.store_file("example.com", "fullchain.pem")
    );
    let key = raw_request(
        deployment.server.addr,
        Some(&balancer),
        &get("/download/example.com/privkey.pem"),
    )
    .unwrap();
    assert_eq!(key.status, 404);
    let check = raw_request(
        deployment.server.addr,
        Some(&balancer),
        &check("example.com"),
    )
    .unwrap();
    assert_eq!(check.status, 200);
    // The key's hash is not disclosed: the response echoes the client's own (all zeros).
    let answer: serde_json::Value = serde_json::from_slice(&check.body).unwrap();
    assert_eq!(answer["server_hashes"]["privkey_hash"], "0".repeat(64));
    deployment.server.wait_for_log(&[
        "access denied",
        "client=edge-lb",
        "path=/download/example.com/privkey.pem",
        "allows certificates only",
    ]);

    // acme-dl client fetches the key unless the lineage's table sets privkey = "".
    let output = run_client(&deployment.client_args(&balancer, &["example.com"]));
    assert_eq!(output.status.code(), Some(4), "{}", describe(&output));
    assert!(!deployment.dest.join("example.com").exists());

    let config = deployment.dir.path().join("certificates-only.toml");
    std::fs::write(&config, "[lineage.\"example.com\"]\nprivkey = \"\"\n").unwrap();
    let mut args = deployment.client_args(&balancer, &[]);
    let position = args.iter().position(|arg| arg == "/dev/null").unwrap();
    args[position] = config.display().to_string();
    for round in ["first", "repeat"] {
        let output = run_client(&args);
        assert_eq!(
            output.status.code(),
            Some(0),
            "{round}: {}",
            describe(&output)
        );
    }
    let installed = deployment.dest.join("example.com");
    assert_eq!(
        std::fs::read(installed.join("fullchain.pem")).unwrap(),
        deployment.store_file("example.com", "fullchain.pem")
    );
    assert!(installed.join("cert.pem").exists());
    assert!(!installed.join("privkey.pem").exists());
    // The raw request, the run that stopped at the key, and the first certificates-only
    // run: the repeat run found the set current.
    let downloads =
        deployment
            .server
            .count_log(&["download", "client=edge-lb", "file=fullchain.pem"]);
    assert_eq!(downloads, 3);
}

#[test]
fn certificates_only_lineage_ignores_the_key_hash() {
    // A full-access rule announces the key's hash; a client that installs no key compares
    // the certificates alone, so its second run downloads nothing.
    let deployment = Deployment::new(&["example.com"]);
    let config = deployment.dir.path().join("client.toml");
    std::fs::write(&config, "[lineage.\"example.com\"]\nprivkey = \"\"\n").unwrap();
    let mut args = deployment.client_args(&deployment.pki.client, &[]);
    let position = args.iter().position(|arg| arg == "/dev/null").unwrap();
    args[position] = config.display().to_string();
    for round in ["first", "repeat"] {
        let output = run_client(&args);
        assert_eq!(
            output.status.code(),
            Some(0),
            "{round}: {}",
            describe(&output)
        );
    }
    assert!(!deployment.installed("example.com", "privkey.pem").exists());
    let keys = deployment
        .server
        .count_log(&["download", "file=privkey.pem"]);
    assert_eq!(keys, 0);
    let chains = deployment
        .server
        .count_log(&["download", "file=fullchain.pem"]);
    assert_eq!(chains, 1);

    std::fs::write(
        &config,
        "[lineage.\"example.com\"]\nprivkey = \"\"\ncombined = \"all.pem\"\n",
    )
    .unwrap();
    let output = run_client(&args);
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("combined and pkcs12 contain the key"),
        "{}",
        describe(&output)
    );
}

#[test]
fn fingerprint_rule_names_one_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let pki = support::harness::Pki::new(&dir.path().join("pki"), "web412");
    let other = pki.issue("other", &LeafSpec::new("web412", Usage::Client, 30));
    let der = rustls::pki_types::CertificateDer::from(
        acme_dl::pem::parse(&std::fs::read(&other.cert).unwrap())
            .unwrap()
            .remove(0)
            .der,
    );
    let fingerprint = acme_dl::protocol::sha256_hex(der.as_ref());
    let config = dir.path().join("server.toml");
    std::fs::write(
        &config,
        format!("[[access]]\nclients = [\"sha256:{fingerprint}\"]\nlineages = [\"example.com\"]\n"),
    )
    .unwrap();
    let certbot = dir.path().join("letsencrypt");
    write_lineage(&certbot, &pki.authority, "example.com", 1);
    let mut args: Vec<String> = ["--no-syslog", "--listen", "127.0.0.1:0", "--config"]
        .iter()
        .map(|a| (*a).to_owned())
        .collect();
    args.push(config.display().to_string());
    args.extend(["--certbot-dir".to_owned(), certbot.display().to_string()]);
    args.extend(pki.server.args());
    let server = support::harness::ServerProcess::start(&args);

    // Same common name, different certificate: only the fingerprinted one is allowed.
    let allowed = raw_request(
        server.addr,
        Some(&other),
        &get("/download/example.com/chain.pem"),
    )
    .unwrap();
    assert_eq!(allowed.status, 200);
    let refused = raw_request(
        server.addr,
        Some(&pki.client),
        &get("/download/example.com/chain.pem"),
    )
    .unwrap();
    assert_eq!(refused.status, 404);
}

#[test]
fn server_without_policy_refuses_to_start() {
    let deployment_dir = tempfile::tempdir().unwrap();
    let pki = support::harness::Pki::new(&deployment_dir.path().join("pki"), "web412");
    let certbot = deployment_dir.path().join("letsencrypt");
    std::fs::create_dir_all(certbot.join("live")).unwrap();
    let output = Command::new(support::harness::binary())
        .args([
            "server",
            "--no-syslog",
            "--config",
            "/dev/null",
            "--listen",
            "127.0.0.1:0",
            "--certbot-dir",
        ])
        .arg(&certbot)
        .args(pki.server.args())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("no access policy"), "{stderr}");
    assert!(stderr.contains("allow_all_clients"), "{stderr}");
}

#[test]
fn allow_all_clients_warns_at_start() {
    let deployment = Deployment::new(&["example.com"]);
    deployment.server.wait_for_log(&[
        "warning",
        "allow_all_clients is set",
        "every client certificate",
    ]);
}

#[test]
fn check_config_explains_a_client() {
    let deployment = with_policy(&["example.com", "a.shop.example", "secret.example"]);
    let config = deployment.dir.path().join("server.toml");
    std::fs::write(&config, POLICY).unwrap();
    let output = Command::new(support::harness::binary())
        .args(["server", "--no-syslog", "--check-config", "--config"])
        .arg(&config)
        .arg("--certbot-dir")
        .arg(&deployment.certbot)
        .args(deployment.pki.server.args())
        .arg("--explain")
        .arg(&deployment.pki.client.cert)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("configuration valid"), "{stdout}");
    assert!(
        stdout.contains(
            "example.com: certificates and private key (access rule 1 (cn:web412, example.com))"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("a.shop.example: certificates and private key"),
        "{stdout}"
    );
    assert!(
        stdout.contains("secret.example: nothing (no access rule matches"),
        "{stdout}"
    );

    std::fs::write(
        &config,
        "[[access]]\nclients = [\"web412\"]\nlineages = [\"example.com\"]\n",
    )
    .unwrap();
    let output = Command::new(support::harness::binary())
        .args(["server", "--no-syslog", "--check-config", "--config"])
        .arg(&config)
        .arg("--certbot-dir")
        .arg(&deployment.certbot)
        .args(deployment.pki.server.args())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    assert!(String::from_utf8_lossy(&output.stderr).contains("access rule 1"));
}

#[test]
fn several_common_names_match_no_cn_rule() {
    if support::require_program("openssl").is_none() {
        return;
    }
    let deployment = with_policy(&["example.com"]);
    let dir = deployment.dir.path();
    // The CA key is not on disk, so the ambiguous certificate comes from a CA of its own
    // that the server's bundle also contains.
    let run = |args: &[&str]| {
        support::harness::openssl(dir, args);
    };
    run(&[
        "ecparam",
        "-name",
        "prime256v1",
        "-genkey",
        "-noout",
        "-out",
        "ca2.key",
    ]);
    run(&[
        "req",
        "-x509",
        "-new",
        "-key",
        "ca2.key",
        "-days",
        "30",
        "-subj",
        "/CN=Second CA",
        "-out",
        "ca2.crt",
    ]);
    run(&[
        "ecparam",
        "-name",
        "prime256v1",
        "-genkey",
        "-noout",
        "-out",
        "two.key",
    ]);
    run(&[
        "req",
        "-new",
        "-key",
        "two.key",
        "-subj",
        "/CN=web412/CN=nobody",
        "-out",
        "two.csr",
    ]);
    std::fs::write(dir.join("two.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "two.csr",
        "-CA",
        "ca2.crt",
        "-CAkey",
        "ca2.key",
        "-CAcreateserial",
        "-days",
        "30",
        "-extfile",
        "two.ext",
        "-out",
        "two.crt",
    ]);
    let bundle = dir.join("bundle.crt");
    let mut both = std::fs::read(&deployment.pki.server.ca).unwrap();
    both.extend(std::fs::read(dir.join("ca2.crt")).unwrap());
    std::fs::write(&bundle, both).unwrap();

    let config = dir.join("policy.toml");
    std::fs::write(&config, POLICY).unwrap();
    let mut args: Vec<String> = ["--no-syslog", "--listen", "127.0.0.1:0", "--config"]
        .iter()
        .map(|a| (*a).to_owned())
        .collect();
    args.push(config.display().to_string());
    args.extend([
        "--certbot-dir".to_owned(),
        deployment.certbot.display().to_string(),
    ]);
    args.extend([
        "--cert".to_owned(),
        deployment.pki.server.cert.display().to_string(),
    ]);
    args.extend([
        "--key".to_owned(),
        deployment.pki.server.key.display().to_string(),
    ]);
    args.extend(["--ca".to_owned(), bundle.display().to_string()]);
    let server = support::harness::ServerProcess::start(&args);
    let ambiguous = support::harness::Identity {
        cert: dir.join("two.crt"),
        key: dir.join("two.key"),
        ca: deployment.pki.server.ca.clone(),
    };
    let response = raw_request(
        server.addr,
        Some(&ambiguous),
        &get("/download/example.com/privkey.pem"),
    )
    .unwrap();
    assert_eq!(
        response.status, 404,
        "a certificate with two common names matched cn:web412"
    );
    server.wait_for_log(&["access denied", "lineage=example.com"]);
}
