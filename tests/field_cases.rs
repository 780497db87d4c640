//! Field cases of the client's install path. They cover mixed sets on the server,
//! readers during installs, broken files, a full disk, a dropped connection, odd PEM
//! files, every key format and the key's mode. The hooks, exit statuses and lock around
//! the install are tested here too.

mod support;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use acme_dl::lineage::LineageName;
use acme_dl::verify::{self, DownloadedSet};
use support::harness::{Deployment, describe, run_client, write_lineage};

/// Returns every file of an installed lineage with its bytes, following the lineage link.
fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| {
            let entry = entry.unwrap();
            (
                entry.file_name().to_string_lossy().into_owned(),
                std::fs::read(entry.path()).unwrap(),
            )
        })
        .collect();
    files.sort();
    files
}

/// Returns leftovers of interrupted installs beside a lineage: staging directories and links.
fn leftovers(dest: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dest).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".acme-dl-link") {
            found.push(entry.path());
        }
        if name.ends_with(".acme-dl") && entry.path().is_dir() {
            for inner in std::fs::read_dir(entry.path()).unwrap().flatten() {
                if inner.file_name().to_string_lossy().starts_with(".tmp-") {
                    found.push(inner.path());
                }
            }
        }
    }
    found
}

fn args(deployment: &Deployment, extra: &[&str], lineages: &[&str]) -> Vec<String> {
    let mut args = deployment.client_args(&deployment.pki.client, lineages);
    args.extend(extra.iter().map(|arg| (*arg).to_owned()));
    args
}

/// Repoints one `live/` link of a lineage to archive version `number`.
fn repoint(certbot: &Path, lineage: &str, stem: &str, number: u32) {
    let link = certbot
        .join("live")
        .join(lineage)
        .join(format!("{stem}.pem"));
    std::fs::remove_file(&link).unwrap();
    symlink(format!("../../archive/{lineage}/{stem}{number}.pem"), &link).unwrap();
}

fn marker_hook(dir: &Path) -> (PathBuf, String) {
    let marker = dir.join("hook-ran");
    (
        marker.clone(),
        format!("echo \"$ACME_DL_CHANGED_LINEAGES\" >> {}", marker.display()),
    )
}

/// Builds version 1 and 2 of `shop.example` with `key_type` keys and points the store at 1.
fn two_versions(deployment: &Deployment, key_type: &str) -> bool {
    let store = &deployment.certbot;
    if key_type == "rsa" {
        if support::require_program("openssl").is_none() {
            return false;
        }
        openssl_lineage(store, "shop.example", 1, "rsa");
        openssl_lineage(store, "shop.example", 2, "rsa");
    } else {
        write_lineage(store, &deployment.acme, "shop.example", 1);
        write_lineage(store, &deployment.acme, "shop.example", 2);
    }
    for stem in ["cert", "chain", "fullchain", "privkey"] {
        repoint(store, "shop.example", stem, 1);
    }
    true
}

#[test]
fn server_never_offers_a_mixed_set() {
    for key_type in ["ecdsa", "rsa"] {
        let deployment = Deployment::new(&[]);
        if !two_versions(&deployment, key_type) {
            return;
        }
        let first = run_client(&args(&deployment, &[], &["shop.example"]));
        assert_eq!(
            first.status.code(),
            Some(0),
            "{key_type}: {}",
            describe(&first)
        );
        let installed = deployment.dest.join("shop.example");
        let before = snapshot(&installed);

        // Certbot repointed fullchain (with the new key's certificate) but not privkey yet:
        // the server keeps offering the last consistent set.
        repoint(&deployment.certbot, "shop.example", "fullchain", 2);
        repoint(&deployment.certbot, "shop.example", "cert", 2);
        let output = run_client(&args(&deployment, &["--retries", "0"], &["shop.example"]));
        assert_eq!(
            output.status.code(),
            Some(0),
            "{key_type}: {}",
            describe(&output)
        );
        assert_eq!(
            snapshot(&installed),
            before,
            "{key_type}: the old set changed"
        );
        deployment
            .server
            .wait_for_log(&["lineage=shop.example", "serving its last consistent set"]);

        // A server that never saw a consistent set responds 503 until there is one.
        let mut client = args(&deployment, &["--retries", "0"], &["shop.example"]);
        let restarted = restart_on(&deployment);
        let server_index = client.iter().position(|arg| arg == "--server").unwrap() + 1;
        client[server_index] = restarted.url();
        let output = run_client(&client);
        assert_eq!(
            output.status.code(),
            Some(3),
            "{key_type}: {}",
            describe(&output)
        );
        assert!(
            String::from_utf8_lossy(&output.stderr).contains("503"),
            "{}",
            describe(&output)
        );
        assert_eq!(
            snapshot(&installed),
            before,
            "{key_type}: the old set changed"
        );
        restarted.wait_for_log(&["lineage=shop.example", "no consistent set seen yet"]);
    }
}

/// Starts a second server over the same store and PKI as `deployment`.
fn restart_on(deployment: &Deployment) -> support::harness::ServerProcess {
    let mut args: Vec<String> = [
        "--no-syslog",
        "--config",
        "/dev/null",
        "--allow-all-clients",
        "--listen",
        "127.0.0.1:0",
    ]
    .iter()
    .map(|arg| (*arg).to_owned())
    .collect();
    args.extend([
        "--certbot-dir".to_owned(),
        deployment.certbot.display().to_string(),
    ]);
    args.extend(deployment.pki.server.args());
    support::harness::ServerProcess::start(&args)
}

#[test]
fn client_rejects_a_mixed_set() {
    for key_type in ["ecdsa", "rsa"] {
        let deployment = Deployment::new(&[]);
        if !two_versions(&deployment, key_type) {
            return;
        }
        let (marker, hook) = marker_hook(deployment.dir.path());
        let first = run_client(&args(
            &deployment,
            &["--on-change", &hook],
            &["shop.example"],
        ));
        assert_eq!(
            first.status.code(),
            Some(0),
            "{key_type}: {}",
            describe(&first)
        );
        std::fs::remove_file(&marker).unwrap();
        let installed = deployment.dest.join("shop.example");
        let before = snapshot(&installed);

        // A server that offers what the Go server would: the new full chain with the old key.
        let archive = deployment.certbot.join("archive/shop.example");
        let read = |name: &str| std::fs::read(archive.join(name)).unwrap();
        let files = [
            ("fullchain.pem", read("fullchain2.pem")),
            ("privkey.pem", read("privkey1.pem")),
            ("chain.pem", read("chain2.pem")),
        ];
        let port = serve_files(server_config(&deployment), &files);
        let mut client = args(
            &deployment,
            &["--on-change", &hook, "--retries", "0"],
            &["shop.example"],
        );
        let server_index = client.iter().position(|arg| arg == "--server").unwrap() + 1;
        client[server_index] = format!("https://localhost:{port}");
        let output = run_client(&client);
        assert_eq!(
            output.status.code(),
            Some(5),
            "{key_type}: {}",
            describe(&output)
        );
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("private key does not match certificate"),
            "{key_type}: {stderr}"
        );
        assert!(stderr.contains("shop.example"), "{key_type}: {stderr}");
        assert_eq!(
            snapshot(&installed),
            before,
            "{key_type}: the old set changed"
        );
        assert!(!marker.exists(), "{key_type}: a hook ran");
        assert_eq!(leftovers(&deployment.dest), Vec::<PathBuf>::new());
    }
}

/// Serves one mutual-TLS connection that announces `files` as an update and sends them,
/// like the deployed Go server caught in the middle of a renewal. Returns the port.
fn serve_files(config: Arc<rustls::ServerConfig>, files: &[(&str, Vec<u8>)]) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let files: Vec<(String, Vec<u8>)> = files
        .iter()
        .map(|(name, bytes)| ((*name).to_owned(), bytes.clone()))
        .collect();
    std::thread::spawn(move || {
        let Ok((tcp, _)) = listener.accept() else {
            return;
        };
        let connection = rustls::ServerConnection::new(config).unwrap();
        let mut stream = rustls::StreamOwned::new(connection, tcp);
        let hash = |name: &str| {
            let bytes = &files.iter().find(|(file, _)| file == name).unwrap().1;
            acme_dl::protocol::sha256_hex(bytes)
        };
        let check = format!(
            r#"{{"update_required":true,"message":"x","server_hashes":{{"fullchain_hash":"{}","privkey_hash":"{}","chain_hash":"{}"}}}}"#,
            hash("fullchain.pem"),
            hash("privkey.pem"),
            hash("chain.pem")
        );
        let mut pending = Vec::new();
        let mut buffer = [0u8; 4096];
        loop {
            let Some(end) = pending.windows(4).position(|window| window == b"\r\n\r\n") else {
                match stream.read(&mut buffer) {
                    Ok(0) | Err(_) => return,
                    Ok(count) => pending.extend_from_slice(&buffer[..count]),
                }
                continue;
            };
            let head = String::from_utf8_lossy(&pending[..end]).into_owned();
            let length: usize = head
                .lines()
                .find_map(|line| {
                    line.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap_or(0))
                })
                .unwrap_or(0);
            while pending.len() < end + 4 + length {
                match stream.read(&mut buffer) {
                    Ok(0) | Err(_) => return,
                    Ok(count) => pending.extend_from_slice(&buffer[..count]),
                }
            }
            pending.drain(..end + 4 + length);
            let path = head
                .split_whitespace()
                .nth(1)
                .unwrap_or_default()
                .to_owned();
            let body = match path.rsplit('/').next() {
                Some(name) if path.starts_with("/download/") => files
                    .iter()
                    .find(|(file, _)| file == name)
                    .map(|(_, bytes)| bytes.clone())
                    .unwrap_or_default(),
                _ => check.clone().into_bytes(),
            };
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(&body);
            let _ = stream.flush();
        }
    });
    port
}

/// Writes version `number` of a lineage made with OpenSSL: an RSA or EC key and a leaf
/// signed by an OpenSSL CA kept in `store/openssl-ca`.
fn openssl_lineage(store: &Path, lineage: &str, number: u32, key_type: &str) {
    let ca = store.join("openssl-ca");
    let run = |dir: &Path, args: &[&str]| {
        support::harness::openssl(dir, args);
    };
    if !ca.join("ca.crt").exists() {
        std::fs::create_dir_all(&ca).unwrap();
        run(&ca, &["genrsa", "-out", "ca.key", "2048"]);
        run(
            &ca,
            &[
                "req",
                "-x509",
                "-new",
                "-key",
                "ca.key",
                "-days",
                "30",
                "-subj",
                "/CN=OpenSSL ACME CA",
                "-out",
                "ca.crt",
            ],
        );
    }
    let archive = store.join("archive").join(lineage);
    std::fs::create_dir_all(&archive).unwrap();
    std::fs::create_dir_all(store.join("live").join(lineage)).unwrap();
    let key = archive.join(format!("privkey{number}.pem"));
    match key_type {
        "rsa" => run(&ca, &["genrsa", "-out", key.to_str().unwrap(), "2048"]),
        _ => run(
            &ca,
            &[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-out",
                key.to_str().unwrap(),
            ],
        ),
    }
    std::fs::write(
        ca.join("leaf.ext"),
        format!("subjectAltName=DNS:{lineage}\n"),
    )
    .unwrap();
    run(
        &ca,
        &[
            "req",
            "-new",
            "-key",
            key.to_str().unwrap(),
            "-subj",
            &format!("/CN={lineage}"),
            "-out",
            "leaf.csr",
        ],
    );
    let cert = archive.join(format!("cert{number}.pem"));
    run(
        &ca,
        &[
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "30",
            "-extfile",
            "leaf.ext",
            "-out",
            cert.to_str().unwrap(),
        ],
    );
    let ca_pem = std::fs::read(ca.join("ca.crt")).unwrap();
    let mut fullchain = std::fs::read(&cert).unwrap();
    fullchain.extend_from_slice(&ca_pem);
    std::fs::write(archive.join(format!("chain{number}.pem")), &ca_pem).unwrap();
    std::fs::write(archive.join(format!("fullchain{number}.pem")), fullchain).unwrap();
    for stem in ["cert", "chain", "fullchain", "privkey"] {
        let link = store.join("live").join(lineage).join(format!("{stem}.pem"));
        let _ = std::fs::remove_file(&link);
        symlink(format!("../../archive/{lineage}/{stem}{number}.pem"), &link).unwrap();
    }
}

#[test]
fn reader_never_sees_a_broken_set() {
    let deployment = Deployment::new(&["shop.example"]);
    write_lineage(&deployment.certbot, &deployment.acme, "shop.example", 2);
    let lineage = LineageName::parse("shop.example").unwrap();
    let installed = deployment.dest.join("shop.example");
    let first = run_client(&args(&deployment, &[], &["shop.example"]));
    assert_eq!(first.status.code(), Some(0), "{}", describe(&first));

    // The reader resolves the lineage link once per pass, as a service does when it loads
    // its certificate, then reads and verifies the pair from that version.
    let stop = Arc::new(AtomicBool::new(false));
    let passes = Arc::new(AtomicUsize::new(0));
    let reader = {
        let (stop, passes, installed, lineage) = (
            stop.clone(),
            passes.clone(),
            installed.clone(),
            lineage.clone(),
        );
        std::thread::spawn(move || -> Result<(), String> {
            while !stop.load(Ordering::Relaxed) {
                let version =
                    std::fs::canonicalize(&installed).map_err(|e| format!("resolving: {e}"))?;
                let read = |name: &str| {
                    std::fs::read(version.join(name)).map_err(|e| format!("{name}: {e}"))
                };
                let set = DownloadedSet {
                    fullchain: read("fullchain.pem")?,
                    privkey: Some(read("privkey.pem")?),
                    chain: read("chain.pem")?,
                };
                let names = verify::default_names(&lineage);
                verify::verify_set(&lineage, &set, None, &names, SystemTime::now())
                    .map_err(|error| format!("pass {}: {error}", passes.load(Ordering::Relaxed)))?;
                passes.fetch_add(1, Ordering::Relaxed);
            }
            Ok(())
        })
    };
    for round in 0..30 {
        let number = if round % 2 == 0 { 2 } else { 1 };
        for stem in ["cert", "chain", "fullchain", "privkey"] {
            repoint(&deployment.certbot, "shop.example", stem, number);
        }
        let output = run_client(&args(&deployment, &[], &["shop.example"]));
        assert_eq!(
            output.status.code(),
            Some(0),
            "round {round}: {}",
            describe(&output)
        );
    }
    stop.store(true, Ordering::Relaxed);
    reader.join().unwrap().unwrap();
    assert!(
        passes.load(Ordering::Relaxed) > 30,
        "the reader ran too few passes"
    );
}

#[test]
fn empty_key_on_server_is_not_offered() {
    let deployment = Deployment::new(&["shop.example"]);
    let installed = deployment.dest.join("shop.example");
    assert_eq!(
        run_client(&args(&deployment, &[], &["shop.example"]))
            .status
            .code(),
        Some(0)
    );
    let before = snapshot(&installed);
    write_lineage(&deployment.certbot, &deployment.acme, "shop.example", 2);
    std::fs::write(
        deployment.certbot.join("archive/shop.example/privkey2.pem"),
        "",
    )
    .unwrap();

    let output = run_client(&args(&deployment, &["--retries", "0"], &["shop.example"]));
    assert_ne!(output.status.code(), Some(0), "{}", describe(&output));
    assert_eq!(snapshot(&installed), before);
    deployment
        .server
        .wait_for_log(&["lineage=shop.example", "privkey.pem is unusable", "empty"]);
}

#[test]
fn full_disk_keeps_old_set() {
    let is_root = Command::new("id").arg("-u").output().unwrap().stdout == b"0\n";
    if !is_root {
        support::skip_test("mounting a small tmpfs needs root");
        return;
    }
    let deployment = Deployment::new(&["shop.example"]);
    let mount = deployment.dir.path().join("small");
    std::fs::create_dir(&mount).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=96k", "tmpfs"])
        .arg(&mount)
        .status()
        .unwrap();
    assert!(mounted.success(), "mounting a tmpfs failed");
    let unmount = scopeguard(mount.clone());

    let dest = mount.join("live");
    let mut client = deployment.client_args(&deployment.pki.client, &["shop.example"]);
    let dest_index = client.iter().position(|arg| arg == "--dest").unwrap() + 1;
    client[dest_index] = dest.display().to_string();
    let (marker, hook) = marker_hook(deployment.dir.path());
    client.extend([
        "--on-change".to_owned(),
        hook,
        "--retries".to_owned(),
        "0".to_owned(),
    ]);
    let first = run_client(&client);
    assert_eq!(first.status.code(), Some(0), "{}", describe(&first));
    std::fs::remove_file(&marker).unwrap();
    let before = snapshot(&dest.join("shop.example"));

    // Fill the file system, then let the server offer a renewal.
    let mut filler = std::fs::File::create(mount.join("filler")).unwrap();
    let block = [0u8; 4096];
    while filler.write_all(&block).is_ok() {}
    drop(filler);
    write_lineage(&deployment.certbot, &deployment.acme, "shop.example", 2);

    let output = run_client(&client);
    assert_eq!(output.status.code(), Some(6), "{}", describe(&output));
    assert_eq!(snapshot(&dest.join("shop.example")), before);
    assert_eq!(leftovers(&dest), Vec::<PathBuf>::new());
    assert!(!marker.exists(), "a hook ran");
    drop(unmount);
}

/// Unmounts a file system when dropped, so a failed assertion does not leave it mounted.
struct Unmount(PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

fn scopeguard(path: PathBuf) -> Unmount {
    Unmount(path)
}

#[test]
fn dropped_connection_keeps_old_set() {
    let deployment = Deployment::new(&["shop.example"]);
    let installed = deployment.dest.join("shop.example");
    assert_eq!(
        run_client(&args(&deployment, &[], &["shop.example"]))
            .status
            .code(),
        Some(0)
    );
    let before = snapshot(&installed);

    // A server that announces an update, then cuts the first download short.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let config = server_config(&deployment);
    let server = std::thread::spawn(move || {
        let (tcp, _) = listener.accept().unwrap();
        let connection = rustls::ServerConnection::new(config).unwrap();
        let mut stream = rustls::StreamOwned::new(connection, tcp);
        let mut request = vec![0u8; 4096];
        let count = stream.read(&mut request).unwrap_or(0);
        let hash = "a".repeat(64);
        let body = format!(
            r#"{{"update_required":true,"message":"x","server_hashes":{{"fullchain_hash":"{hash}","privkey_hash":"{hash}","chain_hash":"{hash}"}}}}"#
        );
        if count > 0 {
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.flush();
            let _ = stream.read(&mut request);
            let _ =
                stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n-----BEGIN CERT");
            let _ = stream.flush();
        }
        stream.sock.shutdown(std::net::Shutdown::Both).ok();
    });
    let (marker, hook) = marker_hook(deployment.dir.path());
    let mut client = args(
        &deployment,
        &["--on-change", &hook, "--retries", "0"],
        &["shop.example"],
    );
    let server_index = client.iter().position(|arg| arg == "--server").unwrap() + 1;
    client[server_index] = format!("https://localhost:{port}");
    let output = run_client(&client);
    server.join().unwrap();
    assert_eq!(output.status.code(), Some(3), "{}", describe(&output));
    assert_eq!(snapshot(&installed), before);
    assert_eq!(leftovers(&deployment.dest), Vec::<PathBuf>::new());
    assert!(!marker.exists(), "a hook ran");
}

fn server_config(deployment: &Deployment) -> Arc<rustls::ServerConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let identity = &deployment.pki.server;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(&identity.ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .unwrap();
    let chain: Vec<_> = CertificateDer::pem_file_iter(&identity.cert)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let key = PrivateKeyDer::from_pem_file(&identity.key).unwrap();
    Arc::new(
        rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)
            .unwrap(),
    )
}

#[test]
fn crlf_and_text_lines_are_installed_unchanged() {
    let deployment = Deployment::new(&["shop.example"]);
    let archive = deployment.certbot.join("archive/shop.example");
    for stem in ["cert", "chain", "fullchain", "privkey"] {
        let path = archive.join(format!("{stem}1.pem"));
        let text = std::fs::read_to_string(&path).unwrap();
        let mut odd = String::from("subject=CN = shop.example\r\nissuer=CN = test ACME CA\r\n");
        odd.push_str(&text.replace('\n', "\r\n"));
        std::fs::write(&path, odd).unwrap();
    }
    let output = run_client(&args(&deployment, &[], &["shop.example"]));
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    for name in ["fullchain.pem", "privkey.pem", "chain.pem"] {
        let installed = std::fs::read(deployment.dest.join("shop.example").join(name)).unwrap();
        assert_eq!(
            installed,
            deployment.store_file("shop.example", name),
            "{name}"
        );
    }
    let again = run_client(&args(&deployment, &[], &["shop.example"]));
    assert_eq!(again.status.code(), Some(0));
    deployment
        .server
        .wait_for_log(&["lineage=shop.example", "outcome=up-to-date"]);
}

#[test]
fn every_key_format_matches_and_mismatches() {
    if support::require_program("openssl").is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let openssl = |args: &[&str]| support::harness::openssl(dir.path(), args);
    openssl(&[
        "ecparam",
        "-name",
        "prime256v1",
        "-genkey",
        "-noout",
        "-out",
        "ca.key",
    ]);
    openssl(&[
        "req",
        "-x509",
        "-new",
        "-key",
        "ca.key",
        "-days",
        "30",
        "-subj",
        "/CN=Key Format CA",
        "-out",
        "ca.crt",
    ]);
    std::fs::write(
        dir.path().join("leaf.ext"),
        "subjectAltName=DNS:shop.example\n",
    )
    .unwrap();
    let formats: [(&str, &[&str], &str); 4] = [
        (
            "rsa-pkcs1",
            &["genrsa", "-traditional", "-out", "rsa-pkcs1.key", "2048"],
            "-----BEGIN RSA PRIVATE KEY-----",
        ),
        (
            "rsa-pkcs8",
            &[
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
                "-out",
                "rsa-pkcs8.key",
            ],
            "-----BEGIN PRIVATE KEY-----",
        ),
        (
            "p256-sec1",
            &[
                "ecparam",
                "-name",
                "prime256v1",
                "-genkey",
                "-noout",
                "-out",
                "p256-sec1.key",
            ],
            "-----BEGIN EC PRIVATE KEY-----",
        ),
        (
            "p384-pkcs8",
            &[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-384",
                "-out",
                "p384-pkcs8.key",
            ],
            "-----BEGIN PRIVATE KEY-----",
        ),
    ];
    let lineage = LineageName::parse("shop.example").unwrap();
    let names = verify::default_names(&lineage);
    let chain = std::fs::read(dir.path().join("ca.crt")).unwrap();
    let mut sets = Vec::new();
    for (name, generate, header) in formats {
        openssl(generate);
        let key = std::fs::read(dir.path().join(format!("{name}.key"))).unwrap();
        assert!(
            key.starts_with(header.as_bytes()),
            "{name}: {}",
            String::from_utf8_lossy(&key[..40])
        );
        openssl(&[
            "req",
            "-new",
            "-key",
            &format!("{name}.key"),
            "-subj",
            "/CN=shop.example",
            "-out",
            &format!("{name}.csr"),
        ]);
        openssl(&[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "30",
            "-extfile",
            "leaf.ext",
            "-out",
            &format!("{name}.crt"),
        ]);
        let mut fullchain = std::fs::read(dir.path().join(format!("{name}.crt"))).unwrap();
        fullchain.extend_from_slice(&chain);
        let set = DownloadedSet {
            fullchain,
            privkey: Some(key),
            chain: chain.clone(),
        };
        verify::verify_set(&lineage, &set, None, &names, SystemTime::now())
            .unwrap_or_else(|error| panic!("{name}: {error}"));
        sets.push((name, set));
    }
    // Each key against the certificate of the other key of the same algorithm.
    for (first, second) in [(0, 1), (1, 0), (2, 3), (3, 2)] {
        let mut mixed = sets[first].1.clone();
        mixed.privkey = sets[second].1.privkey.clone();
        let error =
            verify::verify_set(&lineage, &mixed, None, &names, SystemTime::now()).unwrap_err();
        assert_eq!(
            error.check,
            verify::Check::KeyMismatch,
            "{}: {error}",
            sets[first].0
        );
    }
    // And an EC key of the same curve, generated separately.
    openssl(&[
        "ecparam",
        "-name",
        "prime256v1",
        "-genkey",
        "-noout",
        "-out",
        "other.key",
    ]);
    let mut mixed = sets[2].1.clone();
    mixed.privkey = Some(std::fs::read(dir.path().join("other.key")).unwrap());
    let error = verify::verify_set(&lineage, &mixed, None, &names, SystemTime::now()).unwrap_err();
    assert_eq!(
        error.check,
        verify::Check::KeyMismatch,
        "p256 against p256: {error}"
    );
}

#[test]
fn key_is_created_private_before_writing() {
    let Some(strace) = support::require_program("strace") else {
        return;
    };
    let deployment = Deployment::new(&["shop.example"]);
    let trace = deployment.dir.path().join("trace");
    let output = Command::new("sh")
        .arg("-c")
        .arg(
            "umask 022; s=$0; t=$1; b=$2; shift 2; \
             exec \"$s\" -f -e trace=openat,fchmod,write -o \"$t\" \"$b\" client \"$@\"",
        )
        .arg(strace)
        .arg(&trace)
        .arg(support::harness::binary())
        .args(args(&deployment, &[], &["shop.example"]))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let log = std::fs::read_to_string(&trace).unwrap();
    let created: Vec<&str> = log
        .lines()
        .filter(|line| line.contains("privkey.pem") && line.contains("O_CREAT"))
        .collect();
    assert!(
        !created.is_empty(),
        "no creation of privkey.pem in the trace:\n{log}"
    );
    for line in created {
        assert!(line.contains("O_EXCL"), "{line}");
        assert!(line.contains(", 0600)"), "{line}");
    }
    let mode = std::fs::metadata(deployment.dest.join("shop.example/privkey.pem"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn hooks_run_once_with_changed_lineages() {
    let deployment = Deployment::new(&["a.example", "b.example"]);
    let (marker, hook) = marker_hook(deployment.dir.path());
    let output = run_client(&args(
        &deployment,
        &["--on-change", &hook, "--exit-code"],
        &["a.example", "b.example"],
    ));
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    assert_eq!(
        std::fs::read_to_string(&marker).unwrap(),
        "a.example b.example\n"
    );

    let output = run_client(&args(
        &deployment,
        &["--on-change", &hook, "--exit-code"],
        &["a.example", "b.example"],
    ));
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert_eq!(
        std::fs::read_to_string(&marker).unwrap(),
        "a.example b.example\n",
        "hook ran without a change"
    );

    write_lineage(&deployment.certbot, &deployment.acme, "b.example", 2);
    let output = run_client(&args(
        &deployment,
        &["--on-change", &hook],
        &["a.example", "b.example"],
    ));
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert_eq!(
        std::fs::read_to_string(&marker).unwrap(),
        "a.example b.example\nb.example\n"
    );
}

#[test]
fn failed_check_restores_previous_set() {
    let deployment = Deployment::new(&["shop.example"]);
    assert_eq!(
        run_client(&args(&deployment, &[], &["shop.example"]))
            .status
            .code(),
        Some(0)
    );
    let installed = deployment.dest.join("shop.example");
    let before = snapshot(&installed);
    write_lineage(&deployment.certbot, &deployment.acme, "shop.example", 2);
    let (marker, hook) = marker_hook(deployment.dir.path());
    let output = run_client(&args(
        &deployment,
        &[
            "--check-command",
            "echo config broken >&2; exit 1",
            "--on-change",
            &hook,
        ],
        &["shop.example"],
    ));
    assert_eq!(output.status.code(), Some(7), "{}", describe(&output));
    assert_eq!(snapshot(&installed), before);
    assert!(!marker.exists(), "on_change ran after a failed check");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("config broken"),
        "the check's output is not logged: {stderr}"
    );
}

#[test]
fn failed_reload_reports_hook_status() {
    let deployment = Deployment::new(&["shop.example"]);
    let output = run_client(&args(
        &deployment,
        &["--on-change", "exit 4"],
        &["shop.example"],
    ));
    assert_eq!(output.status.code(), Some(7), "{}", describe(&output));
    assert!(deployment.dest.join("shop.example/privkey.pem").exists());
}

#[test]
fn slow_hook_is_killed() {
    let deployment = Deployment::new(&["shop.example"]);
    let started = std::time::Instant::now();
    let output = run_client(&args(
        &deployment,
        &["--on-change", "sleep 30", "--hook-timeout", "1"],
        &["shop.example"],
    ));
    assert_eq!(output.status.code(), Some(7), "{}", describe(&output));
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(String::from_utf8_lossy(&output.stderr).contains("timed out"));
}

#[test]
fn rollback_restores_previous_set() {
    let deployment = Deployment::new(&["shop.example"]);
    assert_eq!(
        run_client(&args(&deployment, &[], &["shop.example"]))
            .status
            .code(),
        Some(0)
    );
    let installed = deployment.dest.join("shop.example");
    let first = snapshot(&installed);
    write_lineage(&deployment.certbot, &deployment.acme, "shop.example", 2);
    assert_eq!(
        run_client(&args(&deployment, &[], &["shop.example"]))
            .status
            .code(),
        Some(0)
    );
    assert_ne!(snapshot(&installed), first);

    let (marker, hook) = marker_hook(deployment.dir.path());
    let output = run_client(&args(
        &deployment,
        &["--rollback", "--on-change", &hook],
        &["shop.example"],
    ));
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert_eq!(snapshot(&installed), first);
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), "shop.example\n");
}

#[test]
fn second_run_waits_for_lock() {
    let Some(flock) = support::require_program("flock") else {
        return;
    };
    let deployment = Deployment::new(&["shop.example"]);
    let lock = deployment.dir.path().join("client.lock");
    let mut holder = Command::new(flock)
        .arg(&lock)
        .args(["sleep", "5"])
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let output = run_client(&args(
        &deployment,
        &["--lock-file", lock.to_str().unwrap(), "--timeout", "1"],
        &["shop.example"],
    ));
    let _ = holder.kill();
    let _ = holder.wait();
    assert_eq!(output.status.code(), Some(8), "{}", describe(&output));
    assert!(!deployment.dest.join("shop.example").exists());

    let output = run_client(&args(
        &deployment,
        &["--lock-file", lock.to_str().unwrap()],
        &["shop.example"],
    ));
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
}

#[test]
fn verification_failure_runs_no_hook() {
    let deployment = Deployment::new(&["shop.example"]);
    // The lineage's certificate names another domain.
    let config = deployment.dir.path().join("client.toml");
    std::fs::write(
        &config,
        "[lineage.\"shop.example\"]\nnames = [\"other.example\"]\n",
    )
    .unwrap();
    let (marker, hook) = marker_hook(deployment.dir.path());
    let mut client = args(&deployment, &["--on-change", &hook], &["shop.example"]);
    let config_index = client.iter().position(|arg| arg == "--config").unwrap() + 1;
    client[config_index] = config.display().to_string();
    let output = run_client(&client);
    assert_eq!(output.status.code(), Some(5), "{}", describe(&output));
    assert!(String::from_utf8_lossy(&output.stderr).contains("does not cover other.example"));
    assert!(!marker.exists());
    assert!(!deployment.dest.join("shop.example").exists());
}

#[test]
fn kill_at_random_instants_leaves_a_complete_set() {
    let deployment = Deployment::new(&["shop.example"]);
    write_lineage(&deployment.certbot, &deployment.acme, "shop.example", 2);
    let lineage = LineageName::parse("shop.example").unwrap();
    let installed = deployment.dest.join("shop.example");
    let names = verify::default_names(&lineage);
    let check_installed = |round: usize| {
        let Ok(version) = std::fs::canonicalize(&installed) else {
            // Killed before the first install finished: nothing may be there at all.
            assert!(
                std::fs::symlink_metadata(&installed).is_err(),
                "round {round}: dangling lineage"
            );
            return;
        };
        let read = |name: &str| std::fs::read(version.join(name)).unwrap();
        let set = DownloadedSet {
            fullchain: read("fullchain.pem"),
            privkey: Some(read("privkey.pem")),
            chain: read("chain.pem"),
        };
        verify::verify_set(&lineage, &set, None, &names, SystemTime::now())
            .unwrap_or_else(|error| panic!("round {round}: {error}"));
    };

    let mut seed = std::process::id() as u64;
    for round in 0..40 {
        let number = if round % 2 == 0 { 2 } else { 1 };
        for stem in ["cert", "chain", "fullchain", "privkey"] {
            repoint(&deployment.certbot, "shop.example", stem, number);
        }
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let delay = Duration::from_micros((seed >> 33) % 30_000);
        let mut child = Command::new(support::harness::binary())
            .arg("client")
            .args(args(&deployment, &[], &["shop.example"]))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        let _ = child.kill();
        let _ = child.wait();
        check_installed(round);
    }
    let output = run_client(&args(&deployment, &[], &["shop.example"]));
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    check_installed(40);
    assert_eq!(leftovers(&deployment.dest), Vec::<PathBuf>::new());
}

#[test]
fn extra_outputs_follow_the_lineage_table() {
    let Some(openssl) = support::require_program("openssl") else {
        return;
    };
    let deployment = Deployment::new(&["shop.example"]);
    // A full chain without a final newline must still give a combined file whose key
    // block starts on a line of its own.
    let fullchain = deployment
        .certbot
        .join("archive/shop.example/fullchain1.pem");
    let text = std::fs::read_to_string(&fullchain).unwrap();
    std::fs::write(&fullchain, text.trim_end()).unwrap();

    let password = deployment.dir.path().join("p12.pass");
    std::fs::write(&password, "s3cret\n").unwrap();
    let target = deployment.dir.path().join("haproxy/shop");
    let config = deployment.dir.path().join("client.toml");
    std::fs::write(
        &config,
        format!(
            "[lineage.\"shop.example\"]\ndir = \"{}\"\ncombined = \"shop.pem\"\npkcs12 = \"shop.p12\"\n\
             pkcs12_password_file = \"{}\"\nkey_mode = \"0640\"\ngroup = \"0\"\ncert = \"\"\n",
            target.display(),
            password.display()
        ),
    )
    .unwrap();
    let mut client = args(&deployment, &[], &["shop.example"]);
    let config_index = client.iter().position(|arg| arg == "--config").unwrap() + 1;
    client[config_index] = config.display().to_string();
    let output = run_client(&client);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));

    let combined = std::fs::read_to_string(target.join("shop.pem")).unwrap();
    let key = deployment.store_file("shop.example", "privkey.pem");
    assert!(
        combined.starts_with(text.trim_end()),
        "combined does not start with the chain"
    );
    assert!(
        combined.ends_with(std::str::from_utf8(&key).unwrap()),
        "combined does not end with the key"
    );
    assert!(
        combined.contains("-----END CERTIFICATE-----\n-----BEGIN PRIVATE KEY-----"),
        "{combined}"
    );
    let mode = |name: &str| {
        std::fs::metadata(target.join(name))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode("shop.pem"), 0o640);
    assert_eq!(mode("shop.p12"), 0o640);
    assert_eq!(mode("privkey.pem"), 0o640);
    assert_eq!(mode("fullchain.pem"), 0o644);
    assert!(
        !target.join("cert.pem").exists(),
        "cert = \"\" should skip cert.pem"
    );

    let extract = |args: &[&str]| {
        let output = Command::new(&openssl)
            .args(args)
            .current_dir(&target)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        output.stdout
    };
    let from_p12 = extract(&[
        "pkcs12",
        "-in",
        "shop.p12",
        "-passin",
        "pass:s3cret",
        "-nodes",
        "-nocerts",
    ]);
    std::fs::write(target.join("p12-key.pem"), from_p12).unwrap();
    let key_public = extract(&["pkey", "-in", "p12-key.pem", "-pubout"]);
    let cert_public = extract(&["x509", "-in", "fullchain.pem", "-noout", "-pubkey"]);
    assert_eq!(
        key_public, cert_public,
        "the PKCS#12 key does not match the certificate"
    );
    std::fs::remove_file(target.join("p12-key.pem")).unwrap();
}

#[test]
fn fifo_in_place_of_a_key_fails_quickly() {
    let deployment = Deployment::new(&["shop.example"]);
    let dir = deployment.dest.join("shop.example");
    std::fs::create_dir_all(&dir).unwrap();
    let fifo = dir.join("privkey.pem");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    let started = std::time::Instant::now();
    let output = run_client(&args(&deployment, &["--timeout", "20"], &["shop.example"]));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(output.status.code(), Some(6), "{}", describe(&output));
    assert!(String::from_utf8_lossy(&output.stderr).contains("not a regular file"));
}

#[test]
fn killed_hooks_run_next_time() {
    let deployment = Deployment::new(&["shop.example"]);
    let (marker, hook) = marker_hook(deployment.dir.path());
    let started = deployment.dir.path().join("check-started");
    let slow_check = format!("touch {}; sleep 30", started.display());
    let mut child = Command::new(support::harness::binary())
        .arg("client")
        .args(args(
            &deployment,
            &["--check-command", &slow_check, "--on-change", &hook],
            &["shop.example"],
        ))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !started.exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(started.exists(), "the check never started");
    child.kill().unwrap();
    let _ = child.wait();
    assert!(
        !marker.exists(),
        "on_change ran although the check was killed"
    );

    // The set is current now, but its hooks never finished: the next run runs them.
    let output = run_client(&args(
        &deployment,
        &["--check-command", "true", "--on-change", &hook],
        &["shop.example"],
    ));
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), "shop.example\n");
    assert!(String::from_utf8_lossy(&output.stderr).contains("did not finish"));

    // And only once.
    let output = run_client(&args(
        &deployment,
        &["--on-change", &hook],
        &["shop.example"],
    ));
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), "shop.example\n");
}

#[test]
fn missing_output_refetches_set() {
    let deployment = Deployment::new(&["shop.example"]);
    let installed = deployment.dest.join("shop.example");
    assert_eq!(
        run_client(&args(&deployment, &[], &["shop.example"]))
            .status
            .code(),
        Some(0)
    );
    let version = std::fs::canonicalize(&installed).unwrap();
    std::fs::remove_file(version.join("cert.pem")).unwrap();
    let output = run_client(&args(&deployment, &[], &["shop.example"]));
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert!(installed.join("cert.pem").exists());
    assert!(String::from_utf8_lossy(&output.stderr).contains("configured file missing"));
}

#[test]
fn untrusted_server_is_not_retried() {
    let deployment = Deployment::new(&["shop.example"]);
    let dir = tempfile::tempdir().unwrap();
    let other = support::harness::Pki::new(dir.path(), "web412");
    let mut identity = deployment.pki.client.clone();
    identity.ca = other.server.ca.clone();
    let mut client = deployment.client_args(&identity, &["shop.example"]);
    client.extend(["--retries".to_owned(), "3".to_owned()]);
    let started = std::time::Instant::now();
    let output = run_client(&client);
    assert_eq!(output.status.code(), Some(3), "{}", describe(&output));
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
    assert!(!String::from_utf8_lossy(&output.stderr).contains("retrying"));
}
