//! Interoperability with the deployed Go pair, `acme_dl_server` and `acme_dl_client`, during a
//! migration: the old client against acme-dl's server, acme-dl's client against the old server,
//! and files installed by one client read by the other.
//!
//! The Go pair in `tests/go-pair/` is a test fixture written from the wire contract, because the
//! deployed source is not available. It uses only Go's standard library, and this file builds it
//! once per test run with `go build`, offline. Without `go` on `PATH` each test reports itself as
//! skipped, except under `CI=true`, where it fails.

mod support;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use acme_dl::pki::Authority;
use support::harness::{
    Identity, Pki, ServerProcess, anonymous_handshake, describe, raw_request, run_client,
    write_lineage,
};
use tempfile::TempDir;

/// Paths of the built Go programs.
struct GoPair {
    server: PathBuf,
    client: PathBuf,
}

impl GoPair {
    /// Builds both programs from `tests/go-pair/` into cargo's temporary directory for
    /// integration tests. The Go build cache lives there too, so a later run reuses the compiled
    /// packages.
    fn build(go: &Path) -> GoPair {
        let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/go-pair");
        let work = Path::new(env!("CARGO_TARGET_TMPDIR")).join("go-pair");
        let pair = GoPair {
            server: work.join("bin/acme_dl_server"),
            client: work.join("bin/acme_dl_client"),
        };
        let started = Instant::now();
        for (package, output) in [("./server", &pair.server), ("./client", &pair.client)] {
            let result = Command::new(go)
                .current_dir(&source)
                .args(["build", "-o"])
                .arg(output)
                .arg(package)
                // Keep the build offline and independent of the user's Go settings. The pair
                // uses only the standard library, so nothing needs to be fetched.
                .env("GOPROXY", "off")
                .env("GOTOOLCHAIN", "local")
                .env("GOFLAGS", "")
                .env("GOENV", "off")
                .env("GOWORK", "off")
                .env("GO111MODULE", "on")
                .env("GOCACHE", work.join("cache"))
                .env("GOPATH", work.join("gopath"))
                // A pure Go build needs no C compiler.
                .env("CGO_ENABLED", "0")
                .stdin(Stdio::null())
                .output()
                .unwrap_or_else(|error| panic!("running {} failed: {error}", go.display()));
            assert!(
                result.status.success(),
                "go build {package} in {} failed:\n{}",
                source.display(),
                describe(&result)
            );
        }
        support::print_uncaptured(&format!(
            "built the Go pair in {:.1} s",
            started.elapsed().as_secs_f64()
        ));
        pair
    }
}

/// Returns the Go pair, built on first use, or `None` after reporting the test as skipped
/// because `go` is missing. Panics under `CI=true` when `go` is missing.
fn go_pair() -> Option<&'static GoPair> {
    static PAIR: OnceLock<GoPair> = OnceLock::new();
    let go = support::require_program("go")?;
    Some(PAIR.get_or_init(|| GoPair::build(&go)))
}

/// A running Go `acme_dl_server`, killed on drop.
struct GoServer {
    child: Child,
    addr: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
}

impl GoServer {
    /// Starts the Go server on port 0 of 127.0.0.1 and waits for its "listening on" line.
    fn start(binary: &Path, certbot_dir: &Path, identity: &Identity) -> GoServer {
        let mut child = Command::new(binary)
            .arg("-listen")
            .arg("127.0.0.1:0")
            .arg("-certbot-dir")
            .arg(certbot_dir)
            .args(go_identity_args(identity))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (sender, receiver) = std::sync::mpsc::channel();
        let lines = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(addr) = line.split("listening on ").nth(1) {
                    let _ = sender.send(addr.trim().to_owned());
                }
                lines.lock().unwrap().push(line);
            }
        });
        let Ok(addr) = receiver.recv_timeout(Duration::from_secs(20)) else {
            let _ = child.kill();
            let status = child.wait().unwrap();
            std::thread::sleep(Duration::from_millis(100));
            panic!(
                "Go server did not start ({status}); log:\n{}",
                log.lock().unwrap().join("\n")
            );
        };
        GoServer {
            child,
            addr: addr.parse().unwrap(),
            log,
        }
    }

    /// Returns `https://localhost:PORT`.
    fn url(&self) -> String {
        format!("https://localhost:{}", self.addr.port())
    }

    /// Returns every stderr line so far.
    fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// Returns the stderr lines so far that contain all of `parts`.
    fn log_lines(&self, parts: &[&str]) -> Vec<String> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|line| parts.iter().all(|part| line.contains(part)))
            .cloned()
            .collect()
    }

    /// Waits up to five seconds for `count` log lines containing all of `parts`, and returns
    /// them.
    fn wait_for_log_lines(&self, parts: &[&str], count: usize) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let found = self.log_lines(parts);
            if found.len() >= count {
                return found;
            }
            if Instant::now() > deadline {
                panic!(
                    "expected {count} Go server log lines with {parts:?}, found {}; log:\n{}",
                    found.len(),
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for GoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Returns `-cert X -key Y -ca Z`, the Go pair's spelling of [`Identity::args`].
fn go_identity_args(identity: &Identity) -> Vec<String> {
    vec![
        "-cert".to_owned(),
        identity.cert.display().to_string(),
        "-key".to_owned(),
        identity.key.display().to_string(),
        "-ca".to_owned(),
        identity.ca.display().to_string(),
    ]
}

/// A Certbot-shaped store, TLS identities and a destination directory that both clients
/// install into.
struct Setup {
    dir: TempDir,
    go: &'static GoPair,
    server_identity: Identity,
    client_identity: Identity,
    acme: Authority,
    certbot: PathBuf,
    dest: PathBuf,
}

impl Setup {
    /// Writes version 1 of each lineage and a PKI whose client is `web412`, or returns `None`
    /// when the Go pair is unavailable.
    fn new(lineages: &[&str]) -> Option<Setup> {
        let go = go_pair()?;
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::new(&dir.path().join("pki"), "web412");
        Some(Setup::with_identities(
            go, dir, pki.server, pki.client, lineages,
        ))
    }

    fn with_identities(
        go: &'static GoPair,
        dir: TempDir,
        server_identity: Identity,
        client_identity: Identity,
        lineages: &[&str],
    ) -> Setup {
        let acme = Authority::new_root("test ACME CA", 30).unwrap();
        let certbot = dir.path().join("letsencrypt");
        std::fs::create_dir_all(certbot.join("live")).unwrap();
        for lineage in lineages {
            write_lineage(&certbot, &acme, lineage, 1);
        }
        let dest = dir.path().join("dest");
        Setup {
            dir,
            go,
            server_identity,
            client_identity,
            acme,
            certbot,
            dest,
        }
    }

    fn start_acme_dl_server(&self) -> ServerProcess {
        let mut args = vec![
            "--no-syslog".to_owned(),
            "--allow-all-clients".to_owned(),
            "--config".to_owned(),
            "/dev/null".to_owned(),
            "--listen".to_owned(),
            "127.0.0.1:0".to_owned(),
            "--certbot-dir".to_owned(),
            self.certbot.display().to_string(),
        ];
        args.extend(self.server_identity.args());
        ServerProcess::start(&args)
    }

    fn start_go_server(&self) -> GoServer {
        GoServer::start(&self.go.server, &self.certbot, &self.server_identity)
    }

    fn run_go_client(&self, server_url: &str, lineages: &[&str]) -> Output {
        self.run_go_client_into(&self.dest, server_url, lineages)
    }

    fn run_go_client_into(&self, dest: &Path, server_url: &str, lineages: &[&str]) -> Output {
        Command::new(&self.go.client)
            .arg("-server")
            .arg(server_url)
            .arg("-dest")
            .arg(dest)
            .args(go_identity_args(&self.client_identity))
            .args(lineages)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    fn run_acme_dl_client(&self, server_url: &str, lineages: &[&str]) -> Output {
        self.run_acme_dl_client_into(&self.dest, server_url, lineages)
    }

    fn run_acme_dl_client_into(&self, dest: &Path, server_url: &str, lineages: &[&str]) -> Output {
        let mut args = vec![
            "--no-syslog".to_owned(),
            "--config".to_owned(),
            "/dev/null".to_owned(),
            "--server".to_owned(),
            server_url.to_owned(),
            "--dest".to_owned(),
            dest.display().to_string(),
        ];
        args.extend(self.client_identity.args());
        args.extend(lineages.iter().map(|lineage| (*lineage).to_owned()));
        run_client(&args)
    }

    fn renew(&self, lineage: &str, number: u32) {
        write_lineage(&self.certbot, &self.acme, lineage, number);
    }

    fn store_file(&self, lineage: &str, name: &str) -> Vec<u8> {
        std::fs::read(self.certbot.join("live").join(lineage).join(name)).unwrap()
    }

    fn installed(&self, lineage: &str, name: &str) -> PathBuf {
        self.dest.join(lineage).join(name)
    }

    /// Asserts that the three protocol files of `lineage` in the destination equal the store's.
    fn assert_installed_matches_store(&self, lineage: &str) {
        for name in SET_FILES {
            let path = self.installed(lineage, name);
            let installed = std::fs::read(&path)
                .unwrap_or_else(|error| panic!("reading {}: {error}", path.display()));
            assert!(
                installed == self.store_file(lineage, name),
                "{lineage}/{name} differs from the store"
            );
        }
    }

    /// Returns the modification times of the three protocol files of `lineage`.
    fn installed_mtimes(&self, lineage: &str) -> Vec<SystemTime> {
        SET_FILES
            .iter()
            .map(|name| {
                std::fs::metadata(self.installed(lineage, name))
                    .unwrap()
                    .modified()
                    .unwrap()
            })
            .collect()
    }
}

/// The files that the protocol hashes and that the Go client downloads, in download order.
const SET_FILES: [&str; 3] = ["fullchain.pem", "privkey.pem", "chain.pem"];

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

fn stderr_text(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

// The Go client against acme-dl's server.

#[test]
fn go_client_first_sync_installs() {
    let Some(setup) = Setup::new(&["example.com"]) else {
        return;
    };
    let server = setup.start_acme_dl_server();

    let output = setup.run_go_client(&server.url(), &["example.com"]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    setup.assert_installed_matches_store("example.com");
    for name in SET_FILES {
        assert_eq!(mode(&setup.installed("example.com", name)), 0o600, "{name}");
    }
    assert_eq!(mode(&setup.dest.join("example.com")), 0o755);
    assert!(
        !setup.installed("example.com", "cert.pem").exists(),
        "the Go client downloads only the three protocol files"
    );

    server.wait_for_log(&[
        "check",
        "client=web412",
        "lineage=example.com",
        "outcome=update-required",
    ]);
    for name in SET_FILES {
        server.wait_for_log(&[
            "download",
            "client=web412",
            "lineage=example.com",
            &format!("file={name}"),
            "status=200",
        ]);
    }

    // The Go client sends its check and downloads over one keep-alive connection.
    let log = server.log();
    let mut peers: Vec<&str> = log
        .lines()
        .filter(|line| line.contains("client=web412"))
        .filter_map(|line| line.split(" peer=").nth(1))
        .filter_map(|rest| rest.split_whitespace().next())
        .collect();
    assert_eq!(peers.len(), 4, "{log}");
    peers.dedup();
    assert_eq!(peers.len(), 1, "{log}");
}

#[test]
fn go_client_repeat_sync_is_noop() {
    let Some(setup) = Setup::new(&["example.com"]) else {
        return;
    };
    let server = setup.start_acme_dl_server();
    let first = setup.run_go_client(&server.url(), &["example.com"]);
    assert_eq!(first.status.code(), Some(0), "{}", describe(&first));
    let before = setup.installed_mtimes("example.com");

    let second = setup.run_go_client(&server.url(), &["example.com"]);
    assert_eq!(second.status.code(), Some(0), "{}", describe(&second));
    assert_eq!(setup.installed_mtimes("example.com"), before);
    let stderr = stderr_text(&second);
    assert!(stderr.contains("Certificates are up to date."), "{stderr}");
    assert!(!stderr.contains("saved"), "{stderr}");
    server.wait_for_log(&[
        "check",
        "client=web412",
        "lineage=example.com",
        "outcome=up-to-date",
    ]);
}

#[test]
fn go_client_fetches_renewal() {
    let Some(setup) = Setup::new(&["example.com"]) else {
        return;
    };
    let server = setup.start_acme_dl_server();
    let first = setup.run_go_client(&server.url(), &["example.com"]);
    assert_eq!(first.status.code(), Some(0), "{}", describe(&first));
    let old_key = std::fs::read(setup.installed("example.com", "privkey.pem")).unwrap();

    setup.renew("example.com", 2);
    let output = setup.run_go_client(&server.url(), &["example.com"]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    setup.assert_installed_matches_store("example.com");
    let new_key = std::fs::read(setup.installed("example.com", "privkey.pem")).unwrap();
    assert_ne!(new_key, old_key, "the renewal did not replace the key");
}

#[test]
fn go_client_unknown_lineage_fails() {
    let Some(setup) = Setup::new(&["example.com"]) else {
        return;
    };
    let server = setup.start_acme_dl_server();

    let output = setup.run_go_client(&server.url(), &["other.example"]);
    assert_ne!(output.status.code(), Some(0), "{}", describe(&output));
    let stderr = stderr_text(&output);
    assert!(stderr.contains("404"), "{stderr}");
    assert!(!setup.dest.join("other.example").exists());
    server.wait_for_log(&["client=web412", "status=404"]);
}

// acme-dl's client against the Go server.

#[test]
fn acme_dl_client_first_sync_installs() {
    let Some(setup) = Setup::new(&["example.com"]) else {
        return;
    };
    let server = setup.start_go_server();

    let output = setup.run_acme_dl_client(&server.url(), &["example.com"]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    setup.assert_installed_matches_store("example.com");
    // The Go server does not serve cert.pem, so acme-dl cuts it from fullchain.pem.
    let cert = std::fs::read(setup.installed("example.com", "cert.pem")).unwrap();
    assert!(
        cert == setup.store_file("example.com", "cert.pem"),
        "cert.pem differs from the store"
    );

    server.wait_for_log_lines(
        &["check from", "domain example.com: update_required=true"],
        1,
    );
    for name in SET_FILES {
        server.wait_for_log_lines(
            &[
                &format!("download of {name} for domain example.com"),
                "status 200",
            ],
            1,
        );
    }
}

#[test]
fn acme_dl_client_repeat_sync_is_noop() {
    let Some(setup) = Setup::new(&["example.com"]) else {
        return;
    };
    let server = setup.start_go_server();
    let first = setup.run_acme_dl_client(&server.url(), &["example.com"]);
    assert_eq!(first.status.code(), Some(0), "{}", describe(&first));
    let before = setup.installed_mtimes("example.com");
    let cert_before = std::fs::metadata(setup.installed("example.com", "cert.pem"))
        .unwrap()
        .modified()
        .unwrap();

    let second = setup.run_acme_dl_client(&server.url(), &["example.com"]);
    assert_eq!(second.status.code(), Some(0), "{}", describe(&second));
    assert_eq!(setup.installed_mtimes("example.com"), before);
    let cert_after = std::fs::metadata(setup.installed("example.com", "cert.pem"))
        .unwrap()
        .modified()
        .unwrap();
    assert_eq!(cert_after, cert_before);
    server.wait_for_log_lines(&["domain example.com: update_required=false"], 1);
    assert_eq!(
        server.log_lines(&["download of"]).len(),
        3,
        "the second sync downloaded files; log:\n{}",
        server.log()
    );
}

#[test]
fn acme_dl_client_fetches_renewal() {
    let Some(setup) = Setup::new(&["example.com"]) else {
        return;
    };
    let server = setup.start_go_server();
    let first = setup.run_acme_dl_client(&server.url(), &["example.com"]);
    assert_eq!(first.status.code(), Some(0), "{}", describe(&first));
    let old_key = std::fs::read(setup.installed("example.com", "privkey.pem")).unwrap();

    setup.renew("example.com", 2);
    let output = setup.run_acme_dl_client(&server.url(), &["example.com"]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    setup.assert_installed_matches_store("example.com");
    let new_key = std::fs::read(setup.installed("example.com", "privkey.pem")).unwrap();
    assert_ne!(new_key, old_key, "the renewal did not replace the key");
    let cert = std::fs::read(setup.installed("example.com", "cert.pem")).unwrap();
    assert!(
        cert == setup.store_file("example.com", "cert.pem"),
        "cert.pem is not the renewed leaf"
    );
}

#[test]
fn acme_dl_client_unknown_lineage_rejected() {
    let Some(setup) = Setup::new(&["example.com"]) else {
        return;
    };
    let server = setup.start_go_server();

    let output = setup.run_acme_dl_client(&server.url(), &["other.example"]);
    assert_eq!(output.status.code(), Some(4), "{}", describe(&output));
    let stderr = stderr_text(&output);
    assert!(stderr.contains("500"), "{stderr}");
    assert!(!setup.dest.join("other.example").exists());
    server.wait_for_log_lines(&["check from", "domain other.example failed"], 1);
}

#[test]
fn acme_dl_client_syncs_several_lineages() {
    let lineages = [
        "example.com",
        "www.example.org-0001",
        "xn--bcher-kva.example",
    ];
    let Some(setup) = Setup::new(&lineages) else {
        return;
    };
    let server = setup.start_go_server();

    let output = setup.run_acme_dl_client(&server.url(), &lineages);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    for lineage in lineages {
        setup.assert_installed_matches_store(lineage);
    }

    // acme-dl's client shares one connection among all lineages of a run, as the Go client
    // does, so every request comes from the same client port.
    let checks = server.wait_for_log_lines(&["check from"], lineages.len());
    let downloads = server.wait_for_log_lines(&["download of"], 3 * lineages.len());
    let mut peers: Vec<String> = checks
        .iter()
        .chain(&downloads)
        .filter_map(|line| line.split(" from ").nth(1))
        .filter_map(|rest| rest.split_whitespace().next())
        .map(|address| address.trim_end_matches(':').to_owned())
        .collect();
    peers.sort();
    peers.dedup();
    assert_eq!(
        peers.len(),
        1,
        "client ports {peers:?}; log:\n{}",
        server.log()
    );
}

// Files installed by one client, read by the other.

#[test]
fn go_client_files_are_current_for_acme_dl() {
    let Some(setup) = Setup::new(&["example.com"]) else {
        return;
    };
    let go_server = setup.start_go_server();
    let acme_dl_server = setup.start_acme_dl_server();
    let output = setup.run_go_client(&go_server.url(), &["example.com"]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let before = setup.installed_mtimes("example.com");

    for url in [go_server.url(), acme_dl_server.url()] {
        let output = setup.run_acme_dl_client(&url, &["example.com"]);
        assert_eq!(
            output.status.code(),
            Some(0),
            "{url}: {}",
            describe(&output)
        );
        assert_eq!(setup.installed_mtimes("example.com"), before, "{url}");
    }
    go_server.wait_for_log_lines(&["domain example.com: update_required=false"], 1);
    acme_dl_server.wait_for_log(&["check", "lineage=example.com", "outcome=up-to-date"]);
}

#[test]
fn acme_dl_files_are_current_for_go_client() {
    let Some(setup) = Setup::new(&["example.com"]) else {
        return;
    };
    let go_server = setup.start_go_server();
    let acme_dl_server = setup.start_acme_dl_server();
    let output = setup.run_acme_dl_client(&acme_dl_server.url(), &["example.com"]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let before = setup.installed_mtimes("example.com");

    for url in [go_server.url(), acme_dl_server.url()] {
        let output = setup.run_go_client(&url, &["example.com"]);
        assert_eq!(
            output.status.code(),
            Some(0),
            "{url}: {}",
            describe(&output)
        );
        let stderr = stderr_text(&output);
        assert!(
            stderr.contains("Certificates are up to date."),
            "{url}: {stderr}"
        );
        assert_eq!(setup.installed_mtimes("example.com"), before, "{url}");
    }
}

// The fixture itself, so that a failure above points at acme-dl rather than at the fixture.

#[test]
fn go_pair_syncs_with_itself() {
    let Some(setup) = Setup::new(&["example.com"]) else {
        return;
    };
    let server = setup.start_go_server();
    let output = setup.run_go_client(&server.url(), &["example.com"]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    setup.assert_installed_matches_store("example.com");

    setup.renew("example.com", 2);
    let output = setup.run_go_client(&server.url(), &["example.com", "other.example"]);
    assert_ne!(output.status.code(), Some(0), "{}", describe(&output));
    assert!(
        stderr_text(&output).contains("500"),
        "{}",
        describe(&output)
    );
    setup.assert_installed_matches_store("example.com");
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

fn get(path: &str, extra_headers: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n{extra_headers}Connection: close\r\n\r\n")
        .into_bytes()
}

#[test]
fn go_server_fixture_follows_contract() {
    let Some(setup) = Setup::new(&["example.com", "nochain.example"]) else {
        return;
    };
    std::fs::remove_file(setup.certbot.join("live/nochain.example/chain.pem")).unwrap();
    let server = setup.start_go_server();
    let chain = setup.store_file("example.com", "chain.pem");
    let future = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(3600));
    let if_modified_since = format!("If-Modified-Since: {future}\r\n");

    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("check", post_check(&check_body("example.com")), 200),
        (
            "check with unknown fields",
            post_check(&check_body("example.com").replacen('{', r#"{"client_version":"9","#, 1)),
            200,
        ),
        (
            "domain cut to its last component",
            post_check(&check_body("live/example.com")),
            200,
        ),
        ("check with GET", get("/api/check", ""), 405),
        ("not JSON", post_check("domain=example.com"), 400),
        (
            "unknown domain",
            post_check(&check_body("other.example")),
            500,
        ),
        (
            "domain with a missing file",
            post_check(&check_body("nochain.example")),
            500,
        ),
        ("download", get("/download/example.com/chain.pem", ""), 200),
        ("cert.pem", get("/download/example.com/cert.pem", ""), 400),
        (
            "archive file name",
            get("/download/example.com/chain1.pem", ""),
            400,
        ),
        (
            "three segments",
            get("/download/example.com/x/chain.pem", ""),
            400,
        ),
        ("one segment", get("/download/example.com", ""), 400),
        (
            "missing file",
            get("/download/nochain.example/chain.pem", ""),
            404,
        ),
        (
            "unknown domain download",
            get("/download/other.example/chain.pem", ""),
            404,
        ),
        (
            "range",
            get("/download/example.com/chain.pem", "Range: bytes=0-9\r\n"),
            206,
        ),
        (
            "not modified",
            get("/download/example.com/chain.pem", &if_modified_since),
            304,
        ),
    ];
    for (name, request, expected) in cases {
        let response = raw_request(server.addr, Some(&setup.client_identity), &request)
            .unwrap_or_else(|error| panic!("{name}: {error}"));
        assert_eq!(response.status, expected, "{name}: {}", response.head);
        let head = response.head.to_ascii_lowercase();
        match name {
            "check" => {
                assert!(head.contains("content-type: application/json"), "{head}");
                let json: serde_json::Value = serde_json::from_slice(&response.body).unwrap();
                assert_eq!(json["update_required"], true);
                assert_eq!(
                    json["message"],
                    "Update required: Certificate hashes differ."
                );
                let expected = acme_dl::protocol::sha256_hex(&chain);
                assert_eq!(json["server_hashes"]["chain_hash"], expected.as_str());
            }
            "download" => {
                assert_eq!(response.body, chain);
                assert!(head.contains("last-modified:"), "{head}");
            }
            "range" => assert_eq!(response.body, chain[..10]),
            _ => {}
        }
    }

    // Matching hashes get a response without server_hashes.
    let hash = |name: &str| acme_dl::protocol::sha256_hex(&setup.store_file("example.com", name));
    let current = format!(
        r#"{{"domain":"example.com","hashes":{{"fullchain_hash":"{}","privkey_hash":"{}","chain_hash":"{}"}}}}"#,
        hash("fullchain.pem"),
        hash("privkey.pem"),
        hash("chain.pem")
    );
    let response = raw_request(
        server.addr,
        Some(&setup.client_identity),
        &post_check(&current),
    )
    .unwrap();
    assert_eq!(response.status, 200, "{}", response.head);
    let json: serde_json::Value = serde_json::from_slice(&response.body).unwrap();
    assert_eq!(json["update_required"], false);
    assert_eq!(json["message"], "Certificates are up to date.");
    assert!(json.get("server_hashes").is_none(), "{json}");

    // A client without a certificate fails in the TLS handshake, before HTTP.
    // anonymous_handshake panics when the server sends a response.
    anonymous_handshake(server.addr, &setup.client_identity.ca);
    server.wait_for_log_lines(&["TLS handshake error"], 1);
}

// A PKI made the way the deployed pair's guide makes it: RSA 2048 keys in PKCS#1 form.

fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "openssl {}: {}",
        args.join(" "),
        describe(&output)
    );
}

/// Writes an RSA 2048 key in PKCS#1 form to `<stem>.key` and a certificate signed by `ca.crt`
/// with the given X.509 v3 extensions to `<stem>.crt`.
fn openssl_leaf(dir: &Path, stem: &str, subject: &str, extensions: &str) -> Identity {
    let key = format!("{stem}.key");
    let csr = format!("{stem}.csr");
    let cert = format!("{stem}.crt");
    let extension_file = format!("{stem}.ext");
    openssl(dir, &["genrsa", "-traditional", "-out", &key, "2048"]);
    std::fs::write(dir.join(&extension_file), extensions).unwrap();
    openssl(
        dir,
        &["req", "-new", "-key", &key, "-subj", subject, "-out", &csr],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "30",
            "-sha256",
            "-extfile",
            &extension_file,
            "-out",
            &cert,
        ],
    );
    Identity {
        cert: dir.join(cert),
        key: dir.join(key),
        ca: dir.join("ca.crt"),
    }
}

#[test]
fn rsa_pkcs1_pki_works_across_pairs() {
    let Some(go) = go_pair() else {
        return;
    };
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
    let server_identity = openssl_leaf(
        &tls,
        "server",
        "/CN=localhost",
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    );
    let client_identity = openssl_leaf(
        &tls,
        "client",
        "/CN=web-rsa",
        "extendedKeyUsage=clientAuth\n",
    );
    let client_key_pem = std::fs::read_to_string(&client_identity.key).unwrap();
    assert!(
        client_key_pem.starts_with("-----BEGIN RSA PRIVATE KEY-----"),
        "{client_key_pem}"
    );
    let setup = Setup::with_identities(go, dir, server_identity, client_identity, &["example.com"]);
    let go_server = setup.start_go_server();
    let acme_dl_server = setup.start_acme_dl_server();
    let go_dest = setup.dir.path().join("dest-go");
    let acme_dl_dest = setup.dir.path().join("dest-acme-dl");

    // Each client, by host name and by IP address, against the other pair's server.
    let runs = [
        ("Go client", acme_dl_server.url()),
        (
            "Go client",
            format!("https://127.0.0.1:{}", acme_dl_server.addr.port()),
        ),
        ("acme-dl client", go_server.url()),
        (
            "acme-dl client",
            format!("https://127.0.0.1:{}", go_server.addr.port()),
        ),
    ];
    for (client, url) in runs {
        let output = if client == "Go client" {
            setup.run_go_client_into(&go_dest, &url, &["example.com"])
        } else {
            setup.run_acme_dl_client_into(&acme_dl_dest, &url, &["example.com"])
        };
        assert_eq!(
            output.status.code(),
            Some(0),
            "{client} against {url}: {}",
            describe(&output)
        );
    }
    for dest in [&go_dest, &acme_dl_dest] {
        for name in SET_FILES {
            let installed = std::fs::read(dest.join("example.com").join(name)).unwrap();
            assert!(
                installed == setup.store_file("example.com", name),
                "{name} in {} differs from the store",
                dest.display()
            );
        }
    }
    acme_dl_server.wait_for_log(&["check", "client=web-rsa", "lineage=example.com"]);
    go_server.wait_for_log_lines(&["domain example.com: update_required=true"], 1);
}

#[test]
fn acme_dl_client_pipelines_checks_to_go_server() {
    // With several lineages the client sends every check before reading the responses;
    // Go's net/http must respond to them in order on the same connection.
    let lineages = ["a.example", "b.example", "c.example"];
    let Some(setup) = Setup::new(&lineages) else {
        return;
    };
    let server = setup.start_go_server();
    let first = setup.run_acme_dl_client(&server.url(), &lineages);
    assert_eq!(first.status.code(), Some(0), "{}", describe(&first));
    for lineage in lineages {
        assert!(
            setup.installed(lineage, "privkey.pem").exists(),
            "{lineage}"
        );
    }

    let mut args = vec![
        "-v".to_owned(),
        "--no-syslog".to_owned(),
        "--config".to_owned(),
        "/dev/null".to_owned(),
        "--server".to_owned(),
        server.url(),
        "--dest".to_owned(),
        setup.dest.display().to_string(),
    ];
    args.extend(setup.client_identity.args());
    args.extend(lineages.iter().map(|lineage| (*lineage).to_owned()));
    let second = run_client(&args);
    assert_eq!(second.status.code(), Some(0), "{}", describe(&second));
    assert!(
        String::from_utf8_lossy(&second.stderr).contains("pipelined checks all got responses"),
        "the checks were not pipelined: {}",
        describe(&second)
    );
    for lineage in lineages {
        server.wait_for_log_lines(&[&format!("domain {lineage}: update_required=false")], 1);
    }
    assert_eq!(
        server.log_lines(&["download of"]).len(),
        9,
        "the second sync downloaded files; log:\n{}",
        server.log()
    );
}
