//! End-to-end tests of the real binary on loopback: a server over a Certbot-shaped store
//! and clients syncing from it, including the ways a connection or a request is rejected.

mod support;

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::SystemTime;

use acme_dl::pki::{LeafSpec, Usage};
use support::harness::{
    Deployment as Setup, Identity, Pki, ServerProcess, anonymous_handshake, client_tls_config,
    describe, keep_alive_get, keep_alive_stream, raw_request, run_client, write_lineage,
};

fn mtimes(dir: &Path) -> Vec<(String, SystemTime)> {
    let mut times: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| {
            let entry = entry.unwrap();
            (
                entry.file_name().to_string_lossy().into_owned(),
                entry.metadata().unwrap().modified().unwrap(),
            )
        })
        .collect();
    times.sort();
    times
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

#[test]
fn first_sync_installs_store_files() {
    let setup = Setup::new(&["example.com"]);
    let output = setup.sync(&["example.com"]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));

    for name in ["fullchain.pem", "privkey.pem", "chain.pem", "cert.pem"] {
        let installed = std::fs::read(setup.installed("example.com", name)).unwrap();
        assert_eq!(
            installed,
            setup.store_file("example.com", name),
            "{name} differs"
        );
    }
    assert_eq!(mode(&setup.installed("example.com", "privkey.pem")), 0o600);
    assert_eq!(
        mode(&setup.installed("example.com", "fullchain.pem")),
        0o644
    );
    assert_eq!(mode(&setup.dest.join("example.com")), 0o755);
    setup.server.wait_for_log(&[
        "check",
        "client=web412",
        "lineage=example.com",
        "outcome=update-required",
    ]);
    setup.server.wait_for_log(&[
        "download",
        "lineage=example.com",
        "file=privkey.pem",
        "status=200",
    ]);
}

#[test]
fn current_lineage_is_not_touched() {
    let setup = Setup::new(&["example.com"]);
    assert_eq!(setup.sync(&["example.com"]).status.code(), Some(0));
    let before = mtimes(&setup.dest.join("example.com"));
    std::thread::sleep(std::time::Duration::from_millis(20));

    let output = setup.sync(&["example.com"]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert_eq!(mtimes(&setup.dest.join("example.com")), before);
    setup
        .server
        .wait_for_log(&["check", "lineage=example.com", "outcome=up-to-date"]);
}

#[test]
fn renewal_is_installed_on_next_sync() {
    let setup = Setup::new(&["example.com"]);
    assert_eq!(setup.sync(&["example.com"]).status.code(), Some(0));
    let old_key = std::fs::read(setup.installed("example.com", "privkey.pem")).unwrap();

    write_lineage(&setup.certbot, &setup.acme, "example.com", 2);
    let output = setup.sync(&["example.com"]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let new_key = std::fs::read(setup.installed("example.com", "privkey.pem")).unwrap();
    assert_ne!(new_key, old_key);
    assert_eq!(new_key, setup.store_file("example.com", "privkey.pem"));
    assert_eq!(
        std::fs::read(setup.installed("example.com", "fullchain.pem")).unwrap(),
        setup.store_file("example.com", "fullchain.pem")
    );
}

#[test]
fn several_lineages_share_one_connection() {
    let setup = Setup::with_server_args(
        &["a.example", "b.example", "c.example-0001"],
        &["--verbose"],
    );
    let output = setup.sync(&["a.example", "b.example", "c.example-0001"]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    for lineage in ["a.example", "b.example", "c.example-0001"] {
        assert_eq!(
            std::fs::read(setup.installed(lineage, "privkey.pem")).unwrap(),
            setup.store_file(lineage, "privkey.pem")
        );
    }
    setup
        .server
        .wait_for_log(&["lineage=c.example-0001", "file=chain.pem"]);
    let connections = setup.server.log().matches("connection accepted").count();
    assert_eq!(connections, 1, "log:\n{}", setup.server.log());
}

#[test]
fn unknown_lineage_fails_alone() {
    let setup = Setup::new(&["example.com"]);
    let output = setup.sync(&["missing.example", "example.com"]);
    assert_eq!(output.status.code(), Some(4), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("lineage=missing.example"), "{stderr}");
    assert!(stderr.contains("404"), "{stderr}");
    assert!(setup.installed("example.com", "privkey.pem").exists());
    assert!(!setup.dest.join("missing.example").exists());
    setup.server.wait_for_log(&[
        "lineage not found",
        "lineage=missing.example",
        "client=web412",
    ]);
}

#[test]
fn invalid_lineage_is_a_configuration_error() {
    let setup = Setup::new(&["example.com"]);
    let output = setup.sync(&["../etc"]);
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    assert!(String::from_utf8_lossy(&output.stderr).contains("invalid lineage name"));
}

#[test]
fn client_without_certificate_fails_handshake() {
    let setup = Setup::new(&["example.com"]);
    let error = anonymous_handshake(setup.server.addr, &setup.pki.server.ca);
    assert!(
        error.to_string().contains("CertificateRequired") || error.to_string().contains("alert"),
        "{error}"
    );
    setup.server.wait_for_log(&[
        "TLS handshake failed",
        "no client certificate presented",
        "peer=127.0.0.1:",
    ]);
}

#[test]
fn client_from_another_ca_is_rejected() {
    let setup = Setup::new(&["example.com"]);
    let dir = tempfile::tempdir().unwrap();
    let other = Pki::new(dir.path(), "intruder");
    // The intruder trusts the real server, but its certificate comes from another CA.
    let identity = Identity {
        ca: setup.pki.server.ca.clone(),
        ..other.client.clone()
    };
    let output = run_client(&setup.client_args(&identity, &["example.com"]));
    assert_eq!(output.status.code(), Some(4), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("does not trust the CA"), "{stderr}");
    setup.server.wait_for_log(&[
        "TLS handshake failed",
        "unknown CA",
        "subject=\"CN=intruder\"",
    ]);
    assert!(!setup.dest.join("example.com").exists());
}

#[test]
fn expired_client_certificate_is_rejected() {
    let setup = Setup::new(&["example.com"]);
    let mut spec = LeafSpec::new("stale-host", Usage::Client, 30);
    spec.not_before = time::OffsetDateTime::now_utc() - time::Duration::days(60);
    spec.not_after = time::OffsetDateTime::now_utc() - time::Duration::days(1);
    let expired = setup.pki.issue("expired", &spec);

    // The client stops before connecting, since the server would reject the handshake.
    let output = run_client(&setup.client_args(&expired, &["example.com"]));
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    assert!(String::from_utf8_lossy(&output.stderr).contains("expired on"));

    // A peer that sends it anyway fails the handshake.
    let sent = support::harness::raw_request(
        setup.server.addr,
        Some(&expired),
        b"GET /download/example.com/cert.pem HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    );
    assert!(sent.is_err(), "{sent:?}");
    setup.server.wait_for_log(&[
        "TLS handshake failed",
        "certificate expired",
        "CN=stale-host",
    ]);
}

#[test]
fn server_certificate_for_other_host_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(&dir.path().join("pki"), "web412");
    let wrong = pki.issue("wrong", &{
        let mut spec = LeafSpec::new("other.example", Usage::Server, 30);
        spec.dns_names = vec!["other.example".to_owned()];
        spec
    });
    let certbot = dir.path().join("letsencrypt");
    std::fs::create_dir_all(certbot.join("live")).unwrap();
    let mut args: Vec<String> = [
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
    args.extend(["--certbot-dir".to_owned(), certbot.display().to_string()]);
    args.extend(wrong.args());
    let server = ServerProcess::start(&args);

    let mut client: Vec<String> = ["--no-syslog", "--config", "/dev/null", "--server"]
        .iter()
        .map(|arg| (*arg).to_owned())
        .collect();
    client.push(server.url());
    client.extend([
        "--dest".to_owned(),
        dir.path().join("dest").display().to_string(),
    ]);
    client.extend(pki.client.args());
    client.push("example.com".to_owned());
    let output = run_client(&client);
    assert_eq!(output.status.code(), Some(3), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("not valid for localhost"), "{stderr}");
    assert!(stderr.contains("other.example"), "{stderr}");
}

#[test]
fn dead_server_is_unreachable() {
    let setup = Setup::new(&["example.com"]);
    let mut args = setup.client_args(&setup.pki.client, &["example.com"]);
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let server_index = args.iter().position(|arg| arg == "--server").unwrap() + 1;
    args[server_index] = format!("https://127.0.0.1:{port}");
    args.extend(["--retries".to_owned(), "1".to_owned()]);
    let started = std::time::Instant::now();
    let output = run_client(&args);
    assert_eq!(output.status.code(), Some(3), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("connecting failed"), "{stderr}");
    assert_eq!(
        stderr.matches("transient failure; retrying").count(),
        1,
        "{stderr}"
    );
    // The first retry waits between half and all of one second: never a tight loop.
    assert!(started.elapsed() >= std::time::Duration::from_millis(500));
}

#[test]
fn ipv6_loopback_listener_serves() {
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        support::skip_test("no IPv6 loopback address on this machine");
        return;
    }
    let setup = Setup::with_server_args(&["example.com"], &["--listen", "[::1]:0"]);
    let mut args = setup.client_args(&setup.pki.client, &["example.com"]);
    let server_index = args.iter().position(|arg| arg == "--server").unwrap() + 1;
    args[server_index] = format!("https://[::1]:{}", setup.server.addr.port());
    let output = run_client(&args);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
}

#[test]
fn sigterm_stops_server_cleanly() {
    let setup = Setup::new(&["example.com"]);
    assert_eq!(setup.sync(&["example.com"]).status.code(), Some(0));
    let Setup {
        server, dir: _dir, ..
    } = setup;
    let log = std::sync::Arc::new(server.log());
    let status = server.terminate();
    assert_eq!(status.code(), Some(0), "{log}");
}

#[test]
fn missing_syslog_socket_falls_back_to_stderr() {
    let setup = Setup::new(&["example.com"]);
    let mut args = setup.client_args(&setup.pki.client, &["example.com"]);
    args.retain(|arg| arg != "--no-syslog");
    args.extend(["--syslog-socket".to_owned(), "/nonexistent/log".to_owned()]);
    let output = run_client(&args);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("syslog socket /nonexistent/log cannot be reached"),
        "{stderr}"
    );
    assert!(stderr.contains("set installed"), "{stderr}");
}

fn check_body(domain: &str) -> String {
    let zeros = "0".repeat(64);
    format!(
        r#"{{"domain":"{domain}","hashes":{{"fullchain_hash":"{zeros}","privkey_hash":"{zeros}","chain_hash":"{zeros}"}}}}"#
    )
}

fn post_check(body: &str) -> Vec<u8> {
    format!(
        "POST /api/check HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").into_bytes()
}

#[test]
fn hostile_requests_are_rejected() {
    let setup = Setup::new(&["example.com"]);
    let key = setup.store_file("example.com", "privkey.pem");
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        (
            "encoded traversal",
            get("/download/..%2F..%2Faccounts/privkey.pem"),
            400,
        ),
        (
            "encoded dots",
            get("/download/%2e%2e/%2e%2e/etc/passwd"),
            400,
        ),
        (
            "archive file name",
            get("/download/example.com/privkey1.pem"),
            400,
        ),
        ("dot segment", get("/download/../privkey.pem"), 400),
        (
            "three segments",
            get("/download/example.com/x/privkey.pem"),
            400,
        ),
        ("one segment", get("/download/example.com"), 400),
        ("empty lineage", get("/download//privkey.pem"), 400),
        (
            "wildcard lineage",
            get("/download/*.example.com/privkey.pem"),
            400,
        ),
        (
            "unknown lineage",
            get("/download/other.example/privkey.pem"),
            404,
        ),
        ("unknown endpoint", get("/etc/passwd"), 404),
        ("check with GET", get("/api/check"), 405),
        (
            "download with POST",
            post_check_to("/download/example.com/privkey.pem"),
            405,
        ),
        ("not JSON", post_check("domain=example.com"), 400),
        (
            "JSON without hashes",
            post_check(r#"{"domain":"example.com"}"#),
            400,
        ),
        (
            "traversal in domain",
            post_check(&check_body("../../etc")),
            400,
        ),
        (
            "slash in domain",
            post_check(&check_body("live/example.com")),
            400,
        ),
        (
            "unknown domain",
            post_check(&check_body("nothere.example")),
            404,
        ),
        (
            "bad hash",
            post_check(&check_body("example.com").replacen("000", "zzz", 1)),
            400,
        ),
        ("double-encoded dots", get("/download/%252e%252e/privkey.pem"), 400),
        ("overlong UTF-8 dot", get("/download/%c0%ae%c0%ae/privkey.pem"), 400),
        ("encoded NUL", get("/download/example.com%00/privkey.pem"), 400),
        ("backslash", get("/download/..\\..\\etc/privkey.pem"), 400),
        ("encoded slash in file", get("/download/example.com/..%2fprivkey.pem"), 400),
        ("huge URL", get(&format!("/download/{}/privkey.pem", "a".repeat(9000))), 431),
        (
            "deeply nested JSON",
            post_check(&format!(
                r#"{{"domain":"example.com","x":{}{}}}"#,
                "[".repeat(5000),
                "]".repeat(5000)
            )),
            400,
        ),
        (
            "duplicate Content-Length",
            b"POST /api/check HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2\r\nContent-Length: 3\r\nConnection: close\r\n\r\n{}".to_vec(),
            400,
        ),
        (
            "duplicate domain key",
            post_check(&check_body("example.com").replacen("{\"domain\":\"example.com\"", "{\"domain\":\"example.com\",\"domain\":\"other.example\"", 1)),
            400,
        ),
    ];
    for (name, request, expected) in cases {
        let response = raw_request(setup.server.addr, Some(&setup.pki.client), &request)
            .unwrap_or_else(|error| panic!("{name}: {error}"));
        assert_eq!(response.status, expected, "{name}: {}", response.head);
        assert!(
            !response
                .body
                .windows(20)
                .any(|window| key.windows(20).any(|k| k == window)),
            "{name}: key bytes in the response"
        );
    }
    setup
        .server
        .wait_for_log(&["request rejected", "client=web412", "status=400", "..%2F"]);
}

fn post_check_to(path: &str) -> Vec<u8> {
    let body = check_body("example.com");
    format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[test]
fn oversized_body_is_rejected() {
    let setup = Setup::new(&["example.com"]);
    let body = format!(
        r#"{{"domain":"example.com","padding":"{}"}}"#,
        "x".repeat(64 * 1024)
    );
    let response = raw_request(
        setup.server.addr,
        Some(&setup.pki.client),
        &post_check(&body),
    )
    .unwrap();
    assert_eq!(response.status, 413, "{}", response.head);

    // Without Content-Length, a chunked body is cut at the same limit.
    let chunk = "x".repeat(32 * 1024);
    let mut request = b"POST /api/check HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n".to_vec();
    for _ in 0..4 {
        request.extend(format!("{:x}\r\n{chunk}\r\n", chunk.len()).as_bytes());
    }
    request.extend(b"0\r\n\r\n");
    let response = raw_request(setup.server.addr, Some(&setup.pki.client), &request).unwrap();
    assert_eq!(response.status, 413, "{}", response.head);
}

#[test]
fn check_and_download_speak_the_deployed_protocol() {
    let setup = Setup::new(&["example.com"]);
    let response = raw_request(
        setup.server.addr,
        Some(&setup.pki.client),
        &post_check(&check_body("example.com")),
    )
    .unwrap();
    assert_eq!(response.status, 200);
    assert!(
        response
            .head
            .to_ascii_lowercase()
            .contains("content-type: application/json")
    );
    let json: serde_json::Value = serde_json::from_slice(&response.body).unwrap();
    assert_eq!(json["update_required"], true);
    assert_eq!(
        json["message"],
        "Update required: Certificate hashes differ."
    );
    let expected = acme_dl::protocol::sha256_hex(&setup.store_file("example.com", "chain.pem"));
    assert_eq!(json["server_hashes"]["chain_hash"], expected.as_str());

    let response = raw_request(
        setup.server.addr,
        Some(&setup.pki.client),
        &get("/download/example.com/cert.pem"),
    )
    .unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.body, setup.store_file("example.com", "cert.pem"));
    assert!(
        response
            .head
            .to_ascii_lowercase()
            .contains("last-modified:")
    );

    let ranged = b"GET /download/example.com/chain.pem HTTP/1.1\r\nHost: localhost\r\nRange: bytes=0-9\r\nConnection: close\r\n\r\n";
    let response = raw_request(setup.server.addr, Some(&setup.pki.client), ranged).unwrap();
    assert_eq!(response.status, 206);
    assert_eq!(
        response.body,
        setup.store_file("example.com", "chain.pem")[..10]
    );

    let future = httpdate::fmt_http_date(SystemTime::now() + std::time::Duration::from_secs(3600));
    let conditional = format!(
        "GET /download/example.com/chain.pem HTTP/1.1\r\nHost: localhost\r\nIf-Modified-Since: {future}\r\nConnection: close\r\n\r\n"
    );
    let response = raw_request(
        setup.server.addr,
        Some(&setup.pki.client),
        conditional.as_bytes(),
    )
    .unwrap();
    assert_eq!(response.status, 304);
}

#[test]
fn link_outside_store_is_not_served() {
    let setup = Setup::new(&["example.com"]);
    let secret = setup.dir.path().join("secret.pem");
    std::fs::write(&secret, "-----BEGIN SECRET-----\n").unwrap();
    let chain = setup.certbot.join("live/example.com/chain.pem");
    std::fs::remove_file(&chain).unwrap();
    std::os::unix::fs::symlink(&secret, &chain).unwrap();

    let response = raw_request(
        setup.server.addr,
        Some(&setup.pki.client),
        &get("/download/example.com/chain.pem"),
    )
    .unwrap();
    assert_eq!(response.status, 500);
    assert!(!String::from_utf8_lossy(&response.body).contains("SECRET"));
    setup
        .server
        .wait_for_log(&["lineage=example.com", "outside archive/example.com/"]);

    std::fs::remove_file(setup.certbot.join("live/example.com/privkey.pem")).unwrap();
    std::os::unix::fs::symlink(
        "../../archive/example.com/privkey9.pem",
        setup.certbot.join("live/example.com/privkey.pem"),
    )
    .unwrap();
    let output = setup.sync(&["example.com"]);
    assert_ne!(output.status.code(), Some(0), "{}", describe(&output));
    assert!(!setup.dest.join("example.com").exists());
    setup.server.wait_for_log(&[
        "lineage=example.com",
        "privkey.pem is missing: dangling link",
    ]);
}

#[test]
fn slow_and_idle_connections_are_closed() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("server.toml");
    std::fs::write(
        &config,
        "header_timeout_secs = 1\nidle_timeout_secs = 2\nallow_all_clients = true\n",
    )
    .unwrap();
    let setup = Setup::with_server_args(&["example.com"], &["--config", config.to_str().unwrap()]);

    // Half a request head, then silence: the header timeout closes the connection.
    let started = std::time::Instant::now();
    let result = raw_request(
        setup.server.addr,
        Some(&setup.pki.client),
        b"GET /download/example.com/chain.pem HTTP/1.1\r\nHost: loc",
    );
    let elapsed = started.elapsed();
    assert!(
        result.is_err() || result.as_ref().unwrap().status == 408,
        "{result:?}"
    );
    assert!(
        elapsed < std::time::Duration::from_secs(5),
        "closed after {elapsed:?}"
    );

    // Nothing at all after the handshake: the idle timeout closes the connection.
    let started = std::time::Instant::now();
    let result = raw_request(setup.server.addr, Some(&setup.pki.client), b"");
    let elapsed = started.elapsed();
    assert!(result.is_err(), "{result:?}");
    assert!(
        elapsed < std::time::Duration::from_secs(6),
        "closed after {elapsed:?}"
    );

    // A body trickled one byte at a time is cut off by the body deadline.
    let started = std::time::Instant::now();
    let status = support::harness::trickle_request(
        setup.server.addr,
        &setup.pki.client,
        b"POST /api/check HTTP/1.1\r\nHost: localhost\r\nContent-Length: 200\r\n\r\n",
        &[b' '; 200],
        std::time::Duration::from_millis(100),
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        status.as_deref(),
        Ok("HTTP/1.1 408 Request Timeout"),
        "{status:?}"
    );

    // A legitimate client is still served.
    assert_eq!(setup.sync(&["example.com"]).status.code(), Some(0));
}

#[test]
fn key_is_private_under_open_umask() {
    let setup = Setup::new(&["example.com"]);
    let mut command = std::process::Command::new("sh");
    command
        .arg("-c")
        .arg("umask 000; exec \"$0\" client \"$@\"");
    command.arg(support::harness::binary());
    command.args(setup.client_args(&setup.pki.client, &["example.com"]));
    let output = command.output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert_eq!(mode(&setup.installed("example.com", "privkey.pem")), 0o600);
    assert_eq!(mode(&setup.installed("example.com", "chain.pem")), 0o644);
}

#[test]
fn tls_12_and_13_are_both_accepted() {
    let setup = Setup::new(&["example.com"]);
    for (version, expected) in [
        (&rustls::version::TLS12, rustls::ProtocolVersion::TLSv1_2),
        (&rustls::version::TLS13, rustls::ProtocolVersion::TLSv1_3),
    ] {
        let negotiated =
            support::harness::negotiated_version(setup.server.addr, &setup.pki.client, version);
        assert_eq!(negotiated, Ok(expected));
    }
}

#[test]
fn server_auth_only_client_is_rejected() {
    let setup = Setup::new(&["example.com"]);
    let mut spec = LeafSpec::new("misissued-host", Usage::Server, 30);
    spec.dns_names = vec!["misissued-host.example.net".to_owned()];
    let server_only = setup.pki.issue("server-only", &spec);
    let output = run_client(&setup.client_args(&server_only, &["example.com"]));
    assert_eq!(output.status.code(), Some(4), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("clientAuth"), "{stderr}");
    setup.server.wait_for_log(&[
        "TLS handshake failed",
        "extended key usage",
        "subject=\"CN=misissued-host\"",
    ]);
    assert!(!setup.dest.join("example.com").exists());
}

#[test]
fn idle_connection_serves_after_parking() {
    // A pause longer than the server's parking grace (250 ms) ends hyper's side of the
    // connection. The same TLS connection must still serve the next requests, and two
    // requests sent together after another pause must both get responses.
    let deployment = Setup::new(&["example.com"]);
    let config = client_tls_config(&deployment.pki.client);
    let mut stream = keep_alive_stream(deployment.server.addr, &config);
    let path = "/download/example.com/chain.pem";
    assert_eq!(keep_alive_get(&mut stream, path), Ok(200));
    std::thread::sleep(std::time::Duration::from_millis(600));
    assert_eq!(keep_alive_get(&mut stream, path), Ok(200));
    std::thread::sleep(std::time::Duration::from_millis(600));

    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n");
    stream
        .write_all(format!("{request}{request}").as_bytes())
        .unwrap();
    stream.flush().unwrap();
    let mut received = Vec::new();
    let mut buffer = [0u8; 8192];
    while String::from_utf8_lossy(&received)
        .matches("HTTP/1.1 200")
        .count()
        < 2
    {
        let count = stream.read(&mut buffer).unwrap();
        assert!(
            count > 0,
            "connection closed before the second pipelined response"
        );
        received.extend_from_slice(&buffer[..count]);
    }
}
