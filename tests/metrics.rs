//! The Prometheus metrics listener of the real server: off by default, the exposition text
//! it serves, counters that move with checks, downloads and failed handshakes, the expiry
//! gauge, labels that never name a client, and its routes and connection cap.

mod support;

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use acme_dl::identity::Identity as CertIdentity;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use support::harness::{
    Deployment, anonymous_handshake, binary, describe, raw_request, run_client,
};
use x509_parser::prelude::{FromDer, X509Certificate};

/// One sample line: `name{label="value",...} value`.
#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: Vec<(String, String)>,
    value: f64,
}

impl Sample {
    fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

/// A parsed scrape.
#[derive(Debug)]
struct Scrape {
    samples: Vec<Sample>,
    /// Family name to its TYPE.
    types: HashMap<String, String>,
}

impl Scrape {
    /// Returns the value of the one sample of `name` with exactly these labels, if any.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let matches: Vec<&Sample> = self
            .samples
            .iter()
            .filter(|sample| {
                sample.name == name
                    && sample.labels.len() == labels.len()
                    && labels
                        .iter()
                        .all(|(key, value)| sample.label(key) == Some(*value))
            })
            .collect();
        assert!(matches.len() <= 1, "duplicate series {name} {labels:?}");
        matches.first().map(|sample| sample.value)
    }

    /// Returns the value of a counter, 0 when its series has not appeared yet.
    fn counter(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.value(name, labels).unwrap_or(0.0)
    }
}

fn is_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic() || first == '_' || first == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// Parses `{a="x",b="y"}` at the start of `text`; returns the labels and the rest.
fn parse_labels(text: &str) -> (Vec<(String, String)>, &str) {
    let Some(mut rest) = text.strip_prefix('{') else {
        return (Vec::new(), text);
    };
    let mut labels = Vec::new();
    loop {
        if let Some(after) = rest.strip_prefix('}') {
            return (labels, after);
        }
        let (name, after_name) = rest
            .split_once("=\"")
            .unwrap_or_else(|| panic!("label without =\" in {text:?}"));
        assert!(
            is_metric_name(name),
            "invalid label name {name:?} in {text:?}"
        );
        let mut value = String::new();
        let mut chars = after_name.char_indices();
        let end = loop {
            let (index, character) = chars
                .next()
                .unwrap_or_else(|| panic!("unterminated label value in {text:?}"));
            match character {
                '"' => break index,
                '\\' => match chars.next().map(|(_, escaped)| escaped) {
                    Some('\\') => value.push('\\'),
                    Some('"') => value.push('"'),
                    Some('n') => value.push('\n'),
                    other => panic!("invalid escape {other:?} in {text:?}"),
                },
                other => value.push(other),
            }
        };
        labels.push((name.to_owned(), value));
        rest = &after_name[end + 1..];
        if let Some(after) = rest.strip_prefix(',') {
            rest = after;
        }
    }
}

/// Parses exposition text version 0.0.4 and asserts what the format requires: HELP and
/// TYPE once per family and before its samples, valid names, numeric values and no
/// duplicate series.
fn parse_exposition(text: &str) -> Scrape {
    assert!(
        text.ends_with('\n'),
        "exposition text must end with a newline"
    );
    let mut helps: HashMap<String, usize> = HashMap::new();
    let mut types: HashMap<String, String> = HashMap::new();
    let mut type_counts: HashMap<String, usize> = HashMap::new();
    let mut samples = Vec::new();
    let mut series = HashSet::new();
    for line in text.lines() {
        assert!(!line.is_empty(), "empty line in:\n{text}");
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            assert!(is_metric_name(name), "invalid name in {line:?}");
            assert!(!help.is_empty(), "empty help in {line:?}");
            *helps.entry(name.to_owned()).or_default() += 1;
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(is_metric_name(name), "invalid name in {line:?}");
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "invalid type in {line:?}"
            );
            *type_counts.entry(name.to_owned()).or_default() += 1;
            types.insert(name.to_owned(), kind.to_owned());
            continue;
        }
        assert!(!line.starts_with('#'), "unexpected comment {line:?}");
        let name_end = line.find(['{', ' ']).unwrap_or(line.len());
        let name = &line[..name_end];
        assert!(is_metric_name(name), "invalid sample name in {line:?}");
        assert!(
            types.contains_key(name) && helps.contains_key(name),
            "sample before the HELP and TYPE of its family: {line:?}"
        );
        let (labels, rest) = parse_labels(&line[name_end..]);
        let value_text = rest
            .strip_prefix(' ')
            .unwrap_or_else(|| panic!("no space before the value in {line:?}"));
        let value: f64 = value_text
            .parse()
            .unwrap_or_else(|_| panic!("invalid value in {line:?}"));
        let mut key: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        key.sort();
        assert!(
            series.insert((name.to_owned(), key)),
            "duplicate series {line:?}"
        );
        samples.push(Sample {
            name: name.to_owned(),
            labels,
            value,
        });
    }
    for (name, count) in &helps {
        assert_eq!(*count, 1, "HELP of {name} appears {count} times");
    }
    for (name, count) in &type_counts {
        assert_eq!(*count, 1, "TYPE of {name} appears {count} times");
    }
    for name in types.keys() {
        assert!(helps.contains_key(name), "{name} has a TYPE but no HELP");
    }
    Scrape { samples, types }
}

/// Sends a plain-HTTP request and returns the status, the head and the body, or why
/// there was no response.
fn try_http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
) -> Result<(u16, String, String), String> {
    let mut stream = TcpStream::connect(addr).map_err(|error| error.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .map_err(|error| error.to_string())?;
    let mut bytes = Vec::new();
    stream
        .read_to_end(&mut bytes)
        .map_err(|error| error.to_string())?;
    let text = String::from_utf8(bytes).map_err(|error| error.to_string())?;
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no HTTP head in {text:?}"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("no status in {head:?}"))?;
    Ok((status, head.to_owned(), body.to_owned()))
}

fn http_request(addr: SocketAddr, method: &str, path: &str) -> (u16, String, String) {
    try_http_request(addr, method, path).unwrap_or_else(|error| panic!("{method} {path}: {error}"))
}

fn scrape(addr: SocketAddr) -> Scrape {
    let (status, head, body) = http_request(addr, "GET", "/metrics");
    assert_eq!(status, 200, "{head}\n{body}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/plain; version=0.0.4; charset=utf-8"),
        "{head}"
    );
    parse_exposition(&body)
}

/// Returns the metrics address the server logged at start.
fn metrics_addr(deployment: &Deployment) -> SocketAddr {
    let line = deployment
        .server
        .wait_for_log(&["metrics listener started"]);
    line.split("listen=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|addr| addr.parse().ok())
        .unwrap_or_else(|| panic!("no listen= address in {line:?}"))
}

fn with_metrics(lineages: &[&str]) -> (Deployment, SocketAddr) {
    let deployment = Deployment::with_server_args(lineages, &["--metrics-listen", "127.0.0.1:0"]);
    let addr = metrics_addr(&deployment);
    (deployment, addr)
}

/// Returns a certificate file's `notAfter` in seconds since the Unix epoch.
fn not_after(pem: &[u8]) -> i64 {
    let der = CertificateDer::pem_slice_iter(pem).next().unwrap().unwrap();
    let (_, cert) = X509Certificate::from_der(der.as_ref()).unwrap();
    cert.validity().not_after.timestamp()
}

fn check_config(deployment: &Deployment, extra: &[&str]) -> String {
    let mut command = Command::new(binary());
    command.args([
        "server",
        "--no-syslog",
        "--config",
        "/dev/null",
        "--allow-all-clients",
        "--certbot-dir",
    ]);
    command.arg(&deployment.certbot);
    command.args(deployment.pki.server.args());
    command.arg("--check-config").args(extra);
    let output = command.output().unwrap();
    assert!(output.status.success(), "{}", describe(&output));
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn metrics_are_off_by_default() {
    let deployment = Deployment::new(&["example.com"]);
    let started = deployment.server.wait_for_log(&["server started"]);
    assert!(started.contains("metrics=off"), "{started}");
    assert_eq!(
        deployment.server.count_log(&["metrics listener started"]),
        0,
        "{}",
        deployment.server.log()
    );
    let summary = check_config(&deployment, &[]);
    assert!(summary.contains("\nmetrics: off\n"), "{summary}");
}

#[test]
fn check_config_shows_metrics_address() {
    let deployment = Deployment::new(&["example.com"]);
    let loopback = check_config(&deployment, &["--metrics-listen", "127.0.0.1:9464"]);
    assert!(
        loopback.contains("\nmetrics: http://127.0.0.1:9464/metrics\n"),
        "{loopback}"
    );
    let any = check_config(&deployment, &["--metrics-listen", "0.0.0.0:9464"]);
    assert!(
        any.contains("metrics: http://0.0.0.0:9464/metrics (not loopback"),
        "{any}"
    );
}

#[test]
fn scrape_is_valid_exposition_text() {
    let (deployment, addr) = with_metrics(&["example.com"]);
    let scrape = scrape(addr);
    let expected = [
        ("acme_dl_requests_total", "counter"),
        ("acme_dl_connections_accepted_total", "counter"),
        ("acme_dl_connections_rejected_total", "counter"),
        ("acme_dl_connections_open", "gauge"),
        ("acme_dl_tls_handshakes_total", "counter"),
        ("acme_dl_tls_handshake_failures_total", "counter"),
        ("acme_dl_certificate_not_after_timestamp_seconds", "gauge"),
        ("acme_dl_lineages", "gauge"),
        ("acme_dl_lineages_unusable", "gauge"),
        (
            "acme_dl_server_certificate_not_after_timestamp_seconds",
            "gauge",
        ),
        ("acme_dl_crl_next_update_timestamp_seconds", "gauge"),
        ("acme_dl_build_info", "gauge"),
        ("process_start_time_seconds", "gauge"),
    ];
    for (name, kind) in expected {
        assert_eq!(
            scrape.types.get(name).map(String::as_str),
            Some(kind),
            "{name}"
        );
    }
    assert_eq!(
        scrape.value(
            "acme_dl_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        Some(1.0)
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let started = scrape.value("process_start_time_seconds", &[]).unwrap();
    assert!(
        started <= now && started > now - 120.0,
        "{started} vs {now}"
    );
    let rejected = scrape.counter(
        "acme_dl_connections_rejected_total",
        &[("cap", "max_connections_per_ip")],
    );
    assert_eq!(rejected, 0.0);
    drop(deployment);
}

#[test]
fn counters_move_with_check_download_and_failed_handshake() {
    let (deployment, addr) = with_metrics(&["example.com", "mail.example.com"]);
    let before = scrape(addr);

    let output = deployment.sync(&["example.com"]);
    assert!(output.status.success(), "{}", describe(&output));
    let error = anonymous_handshake(deployment.server.addr, &deployment.pki.client.ca);
    assert!(!error.to_string().is_empty());
    // The mutual-TLS port has no metrics route: /metrics there is an ordinary unknown path.
    let over_tls = raw_request(
        deployment.server.addr,
        Some(&deployment.pki.client),
        b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    assert_eq!(over_tls.status, 404);

    // The server counts a failed handshake just after sending the alert, so wait for it.
    let failure = [("reason", "no_client_certificate")];
    let deadline = Instant::now() + Duration::from_secs(5);
    let after = loop {
        let after = scrape(addr);
        let moved = after.counter("acme_dl_tls_handshake_failures_total", &failure)
            > before.counter("acme_dl_tls_handshake_failures_total", &failure);
        if moved || Instant::now() > deadline {
            break after;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let delta = |name: &str, labels: &[(&str, &str)]| {
        after.counter(name, labels) - before.counter(name, labels)
    };

    let checks = delta(
        "acme_dl_requests_total",
        &[("endpoint", "check"), ("code", "200")],
    );
    assert_eq!(checks, 1.0, "one lineage was checked once");
    let downloads = delta(
        "acme_dl_requests_total",
        &[("endpoint", "download"), ("code", "200")],
    );
    assert!(downloads >= 3.0, "downloads counted: {downloads}");
    let unknown = delta(
        "acme_dl_requests_total",
        &[("endpoint", "other"), ("code", "404")],
    );
    assert_eq!(unknown, 1.0);
    assert_eq!(delta("acme_dl_tls_handshake_failures_total", &failure), 1.0);
    let handshakes = delta("acme_dl_tls_handshakes_total", &[]);
    assert!(handshakes >= 3.0, "handshakes counted: {handshakes}");
    let accepted = delta("acme_dl_connections_accepted_total", &[]);
    assert!(accepted >= 3.0, "connections counted: {accepted}");
    deployment
        .server
        .wait_for_log(&["TLS handshake failed", "no client certificate presented"]);
}

#[test]
fn expiry_gauge_lists_each_lineage() {
    let lineages = ["example.com", "mail.example.com", "shop.example"];
    let (deployment, addr) = with_metrics(&lineages);
    let scrape = scrape(addr);
    for lineage in lineages {
        let expected = not_after(&deployment.store_file(lineage, "cert.pem"));
        let gauge = scrape.value(
            "acme_dl_certificate_not_after_timestamp_seconds",
            &[("lineage", lineage)],
        );
        assert_eq!(gauge, Some(expected as f64), "{lineage}");
    }
    let listed = scrape
        .samples
        .iter()
        .filter(|sample| sample.name == "acme_dl_certificate_not_after_timestamp_seconds")
        .count();
    assert_eq!(listed, lineages.len());
    assert_eq!(scrape.value("acme_dl_lineages", &[]), Some(3.0));
    assert_eq!(scrape.value("acme_dl_lineages_unusable", &[]), Some(0.0));
    let server_cert = std::fs::read(&deployment.pki.server.cert).unwrap();
    assert_eq!(
        scrape.value(
            "acme_dl_server_certificate_not_after_timestamp_seconds",
            &[]
        ),
        Some(not_after(&server_cert) as f64)
    );
}

#[test]
fn labels_never_name_the_client() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("server.toml");
    std::fs::write(
        &config,
        "[[access]]\nclients = [\"cn:web412\"]\nlineages = [\"example.com\"]\n",
    )
    .unwrap();
    let deployment = Deployment::with_server_args(
        &["example.com", "secret.example"],
        &[
            "--config",
            config.to_str().unwrap(),
            "--metrics-listen",
            "127.0.0.1:0",
        ],
    );
    let addr = metrics_addr(&deployment);
    let output = deployment.sync(&["example.com"]);
    assert!(output.status.success(), "{}", describe(&output));
    let denied = run_client(&deployment.client_args(&deployment.pki.client, &["secret.example"]));
    assert!(!denied.status.success(), "{}", describe(&denied));

    let client_pem = std::fs::read(&deployment.pki.client.cert).unwrap();
    let client_der = CertificateDer::pem_slice_iter(&client_pem)
        .next()
        .unwrap()
        .unwrap();
    let client = CertIdentity::from_der(&client_der);
    let scrape = scrape(addr);
    for sample in &scrape.samples {
        for (name, value) in &sample.labels {
            assert_ne!(value, "web412", "{} {name}", sample.name);
            assert!(
                !value.contains(&client.fingerprint[..16]),
                "{} {name}={value}",
                sample.name
            );
            assert!(
                !value.contains(&client.serial),
                "{} {name}={value}",
                sample.name
            );
        }
        if sample.name == "acme_dl_requests_total" {
            let names: Vec<&str> = sample
                .labels
                .iter()
                .map(|(name, _)| name.as_str())
                .collect();
            assert_eq!(names, ["endpoint", "code"], "{sample:?}");
        }
        if sample.name != "acme_dl_certificate_not_after_timestamp_seconds" {
            assert_eq!(sample.label("lineage"), None, "{sample:?}");
        }
    }
    // The expiry gauge lists the lineage this client may not fetch as well.
    for lineage in ["example.com", "secret.example"] {
        let gauge = scrape.value(
            "acme_dl_certificate_not_after_timestamp_seconds",
            &[("lineage", lineage)],
        );
        assert!(gauge.is_some(), "{lineage} missing");
    }
}

#[test]
fn only_get_metrics_is_served() {
    let (_deployment, addr) = with_metrics(&["example.com"]);
    for path in [
        "/",
        "/metrics/",
        "/metrics/extra",
        "/download/example.com/cert.pem",
    ] {
        let (status, _, _) = http_request(addr, "GET", path);
        assert_eq!(status, 404, "{path}");
    }
    let (status, head, _) = http_request(addr, "POST", "/metrics");
    assert_eq!(status, 405);
    assert!(head.to_ascii_lowercase().contains("allow: get"), "{head}");
    let (status, _, body) = http_request(addr, "GET", "/metrics?format=text");
    assert_eq!(status, 200);
    parse_exposition(&body);
}

#[test]
fn metrics_connection_cap_spares_the_main_port() {
    let (deployment, addr) = with_metrics(&["example.com"]);
    // Silent connections fill the metrics listener's cap of 4.
    let silent: Vec<TcpStream> = (0..4).map(|_| TcpStream::connect(addr).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(200));
    let mut extra = TcpStream::connect(addr).unwrap();
    extra
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let _ = extra.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n");
    let mut buffer = Vec::new();
    let read = extra.read_to_end(&mut buffer);
    assert!(
        read.is_err() || buffer.is_empty(),
        "a fifth connection was answered: {:?}",
        String::from_utf8_lossy(&buffer)
    );

    let output = deployment.sync(&["example.com"]);
    assert!(output.status.success(), "{}", describe(&output));

    drop(silent);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Ok((200, _, _)) = try_http_request(addr, "GET", "/metrics") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the metrics listener did not recover"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
