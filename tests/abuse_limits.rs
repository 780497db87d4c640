//! Abuse limits on the real server: a client over its request rate, one address holding
//! too many connections, long-lived connections, and hundreds of silent connections
//! while a legitimate client keeps being served.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use support::harness::{Deployment, describe, raw_request, run_client};

fn deployment_with(config: &str) -> Deployment {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("server.toml");
    std::fs::write(&path, format!("allow_all_clients = true\n{config}")).unwrap();
    let deployment =
        Deployment::with_server_args(&["example.com"], &["--config", path.to_str().unwrap()]);
    drop(dir);
    deployment
}

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").into_bytes()
}

#[test]
fn client_over_its_rate_gets_429() {
    let deployment = deployment_with("client_burst = 3\nclient_requests_per_second = 0.5\n");
    let client = &deployment.pki.client;
    let statuses: Vec<u16> = (0..5)
        .map(|_| {
            raw_request(
                deployment.server.addr,
                Some(client),
                &get("/download/example.com/chain.pem"),
            )
            .unwrap()
            .status
        })
        .collect();
    assert_eq!(&statuses[..3], &[200, 200, 200]);
    assert_eq!(statuses[3], 429);
    let limited = raw_request(
        deployment.server.addr,
        Some(client),
        &get("/download/example.com/chain.pem"),
    )
    .unwrap();
    assert!(
        limited.head.to_ascii_lowercase().contains("retry-after:"),
        "{}",
        limited.head
    );
    deployment.server.wait_for_log(&[
        "client over its request rate",
        "client=web412",
        "status=429",
    ]);

    // Another client is not limited by the first one's rate.
    let other = deployment.pki.issue(
        "web413",
        &acme_dl::pki::LeafSpec::new("web413", acme_dl::pki::Usage::Client, 30),
    );
    let response = raw_request(
        deployment.server.addr,
        Some(&other),
        &get("/download/example.com/chain.pem"),
    )
    .unwrap();
    assert_eq!(response.status, 200);
}

#[test]
fn one_address_cannot_hold_every_connection() {
    let deployment = deployment_with("max_connections_per_ip = 3\n");
    let silent: Vec<TcpStream> = (0..3)
        .map(|_| TcpStream::connect(deployment.server.addr).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let refused = raw_request(
        deployment.server.addr,
        Some(&deployment.pki.client),
        &get("/download/example.com/chain.pem"),
    );
    assert!(refused.is_err(), "{refused:?}");
    deployment
        .server
        .wait_for_log(&["too many connections from this address"]);
    drop(silent);
    std::thread::sleep(Duration::from_millis(200));
    let output = run_client(&deployment.client_args(&deployment.pki.client, &["example.com"]));
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
}

#[test]
fn connection_closes_after_its_request_budget() {
    let deployment = deployment_with("max_requests_per_connection = 2\n");
    let requests = b"GET /download/example.com/chain.pem HTTP/1.1\r\nHost: localhost\r\n\r\nGET /download/example.com/cert.pem HTTP/1.1\r\nHost: localhost\r\n\r\nGET /download/example.com/fullchain.pem HTTP/1.1\r\nHost: localhost\r\n\r\n";
    let response = raw_request(
        deployment.server.addr,
        Some(&deployment.pki.client),
        requests,
    )
    .unwrap();
    let text = String::from_utf8_lossy(&response.body).into_owned();
    let all = format!("{}\r\n\r\n{text}", response.head);
    assert_eq!(all.matches("HTTP/1.1 200 OK").count(), 2, "{all}");
    assert!(
        all.to_ascii_lowercase().contains("connection: close"),
        "{all}"
    );
}

#[test]
fn silent_connections_do_not_starve_clients() {
    let deployment = deployment_with("max_connections = 600\nmax_connections_per_ip = 1000\n");
    // Three hundred connections that never start TLS, and some that stop mid-handshake.
    let mut silent: Vec<TcpStream> = (0..300)
        .map(|_| TcpStream::connect(deployment.server.addr).unwrap())
        .collect();
    for _ in 0..20 {
        let mut stream = TcpStream::connect(deployment.server.addr).unwrap();
        stream
            .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
            .unwrap();
        silent.push(stream);
    }
    std::thread::sleep(Duration::from_millis(300));
    let started = std::time::Instant::now();
    let output = run_client(&deployment.client_args(&deployment.pki.client, &["example.com"]));
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let mut buffer = [0u8; 1];
    silent[0]
        .set_read_timeout(Some(Duration::from_millis(10)))
        .unwrap();
    let _ = silent[0].read(&mut buffer);
}
