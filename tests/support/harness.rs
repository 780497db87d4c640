//! Starts the real `acme-dl` binary on loopback and builds what it needs: a PKI made with
//! acme-dl's own generator or with plain OpenSSL commands, and Certbot-shaped stores.
//!
//! Servers listen on port 0 of 127.0.0.1 or ::1; the harness reads the bound address from
//! the "server started" log line on stderr.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use acme_dl::pki::{Authority, LeafSpec, Usage};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tempfile::TempDir;

/// Runs `openssl` with `args` in `dir`, panics with its stderr when it fails, and
/// returns its stdout.
pub fn openssl(dir: &Path, args: &[&str]) -> Vec<u8> {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

/// Path of the binary under test.
pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_acme-dl")
}

/// Certificate and key files of one TLS end, and the CA bundle it trusts.
#[derive(Debug, Clone)]
pub struct Identity {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

impl Identity {
    /// Returns `--cert X --key Y --ca Z`.
    pub fn args(&self) -> Vec<String> {
        vec![
            "--cert".into(),
            self.cert.display().to_string(),
            "--key".into(),
            self.key.display().to_string(),
            "--ca".into(),
            self.ca.display().to_string(),
        ]
    }
}

/// A CA with its server and client identities, written to a directory.
pub struct Pki {
    pub authority: Authority,
    pub dir: PathBuf,
    pub server: Identity,
    pub client: Identity,
}

impl Pki {
    /// Makes a CA, a server certificate for localhost, 127.0.0.1 and ::1, and a client
    /// certificate with common name `client_name`.
    pub fn new(dir: &Path, client_name: &str) -> Pki {
        std::fs::create_dir_all(dir).unwrap();
        let authority = Authority::new_root(&format!("test CA {}", dir.display()), 30).unwrap();
        std::fs::write(dir.join("ca.crt"), authority.cert_pem()).unwrap();
        let mut pki = Pki {
            server: Identity {
                cert: PathBuf::new(),
                key: PathBuf::new(),
                ca: dir.join("ca.crt"),
            },
            client: Identity {
                cert: PathBuf::new(),
                key: PathBuf::new(),
                ca: dir.join("ca.crt"),
            },
            authority,
            dir: dir.to_owned(),
        };
        pki.server = pki.issue_server("server", &["localhost"]);
        pki.client = pki.issue("client", &LeafSpec::new(client_name, Usage::Client, 30));
        pki
    }

    /// Issues a server certificate for `names` plus the loopback addresses.
    pub fn issue_server(&self, file_stem: &str, names: &[&str]) -> Identity {
        let mut spec = LeafSpec::new(names[0], Usage::Server, 30);
        spec.dns_names = names.iter().map(|name| (*name).to_owned()).collect();
        spec.ip_addresses = vec!["127.0.0.1".parse().unwrap(), "::1".parse().unwrap()];
        self.issue(file_stem, &spec)
    }

    /// Issues any leaf and writes `<stem>.crt` and `<stem>.key`.
    pub fn issue(&self, file_stem: &str, spec: &LeafSpec) -> Identity {
        let issued = self.authority.issue(spec).unwrap();
        let cert = self.dir.join(format!("{file_stem}.crt"));
        let key = self.dir.join(format!("{file_stem}.key"));
        std::fs::write(&cert, issued.cert_pem).unwrap();
        std::fs::write(&key, issued.key_pem).unwrap();
        Identity {
            cert,
            key,
            ca: self.dir.join("ca.crt"),
        }
    }
}

/// Writes version `number` of `lineage` into a Certbot-shaped store under `certbot_dir` and
/// repoints its `live/` links, as a Certbot renewal does.
pub fn write_lineage(certbot_dir: &Path, issuer: &Authority, lineage: &str, number: u32) {
    let archive = certbot_dir.join("archive").join(lineage);
    let live = certbot_dir.join("live").join(lineage);
    std::fs::create_dir_all(&archive).unwrap();
    std::fs::create_dir_all(&live).unwrap();
    // Certbot names a second lineage for the same domain `NAME-0001`; the certificate
    // itself is still for NAME.
    let domain = match lineage.rsplit_once('-') {
        Some((base, suffix)) if suffix.len() == 4 && suffix.bytes().all(|b| b.is_ascii_digit()) => {
            base
        }
        _ => lineage,
    };
    let mut spec = LeafSpec::new(domain, Usage::Server, 90);
    spec.dns_names = vec![domain.to_owned()];
    let leaf = issuer.issue(&spec).unwrap();
    let contents = [
        ("cert", leaf.cert_pem.clone()),
        ("chain", issuer.cert_pem().to_owned()),
        (
            "fullchain",
            format!("{}{}", leaf.cert_pem, issuer.cert_pem()),
        ),
        ("privkey", leaf.key_pem.clone()),
    ];
    for (name, text) in contents {
        std::fs::write(archive.join(format!("{name}{number}.pem")), text).unwrap();
        let link = live.join(format!("{name}.pem"));
        let _ = std::fs::remove_file(&link);
        symlink(format!("../../archive/{lineage}/{name}{number}.pem"), &link).unwrap();
    }
}

/// A server over a fresh store, and paths for a client to install into.
pub struct Deployment {
    pub dir: TempDir,
    pub pki: Pki,
    pub acme: Authority,
    pub certbot: PathBuf,
    pub dest: PathBuf,
    pub server: ServerProcess,
}

impl Deployment {
    pub fn new(lineages: &[&str]) -> Deployment {
        Deployment::with_server_args(lineages, &[])
    }

    pub fn with_server_args(lineages: &[&str], extra: &[&str]) -> Deployment {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::new(&dir.path().join("pki"), "web412");
        Deployment::start(dir, pki, lineages, extra)
    }

    /// Starts a deployment with a PKI made by the caller, for tests that need its CA first.
    pub fn with_pki(pki: Pki, lineages: &[&str], extra: &[&str]) -> Deployment {
        Deployment::start(tempfile::tempdir().unwrap(), pki, lineages, extra)
    }

    fn start(dir: TempDir, pki: Pki, lineages: &[&str], extra: &[&str]) -> Deployment {
        let acme = Authority::new_root("test ACME CA", 30).unwrap();
        let certbot = dir.path().join("letsencrypt");
        std::fs::create_dir_all(certbot.join("live")).unwrap();
        for lineage in lineages {
            write_lineage(&certbot, &acme, lineage, 1);
        }
        let mut args = vec![
            "--no-syslog".to_owned(),
            "--certbot-dir".to_owned(),
            certbot.display().to_string(),
        ];
        if !extra.contains(&"--config") {
            args.extend([
                "--config".to_owned(),
                "/dev/null".to_owned(),
                "--allow-all-clients".to_owned(),
            ]);
        }
        if !extra.contains(&"--listen") {
            args.extend(["--listen".to_owned(), "127.0.0.1:0".to_owned()]);
        }
        if extra.contains(&"--cert") {
            args.extend(["--ca".to_owned(), pki.server.ca.display().to_string()]);
        } else {
            args.extend(pki.server.args());
        }
        args.extend(extra.iter().map(|arg| (*arg).to_owned()));
        let server = ServerProcess::start(&args);
        let dest = dir.path().join("dest");
        Deployment {
            dir,
            pki,
            acme,
            certbot,
            dest,
            server,
        }
    }

    pub fn client_args(&self, identity: &Identity, lineages: &[&str]) -> Vec<String> {
        let mut args = vec![
            "--no-syslog".to_owned(),
            "--config".to_owned(),
            "/dev/null".to_owned(),
            "--server".to_owned(),
            self.server.url(),
            "--dest".to_owned(),
            self.dest.display().to_string(),
        ];
        args.extend(identity.args());
        args.extend(lineages.iter().map(|lineage| (*lineage).to_owned()));
        args
    }

    pub fn sync(&self, lineages: &[&str]) -> std::process::Output {
        run_client(&self.client_args(&self.pki.client, lineages))
    }

    pub fn store_file(&self, lineage: &str, name: &str) -> Vec<u8> {
        std::fs::read(self.certbot.join("live").join(lineage).join(name)).unwrap()
    }

    pub fn installed(&self, lineage: &str, name: &str) -> PathBuf {
        self.dest.join(lineage).join(name)
    }
}

/// A running `acme-dl server`, killed on drop.
pub struct ServerProcess {
    child: Child,
    pub addr: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
}

impl ServerProcess {
    /// Starts `acme-dl server` with `args` (which must include `--listen ...:0`) and waits
    /// for it to listen.
    pub fn start(args: &[String]) -> ServerProcess {
        let mut child = Command::new(binary())
            .arg("server")
            .args(args)
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
                if let Some(rest) = line.split("server started listen=").nth(1) {
                    let addr = rest
                        .split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .to_owned();
                    let _ = sender.send(addr);
                }
                lines.lock().unwrap().push(line);
            }
        });
        let Ok(addr) = receiver.recv_timeout(Duration::from_secs(20)) else {
            let _ = child.kill();
            let status = child.wait().unwrap();
            std::thread::sleep(Duration::from_millis(100));
            panic!(
                "server did not start ({status}); log:\n{}",
                log.lock().unwrap().join("\n")
            );
        };
        ServerProcess {
            child,
            addr: addr.parse().unwrap(),
            log,
        }
    }

    /// Returns `https://localhost:PORT`.
    pub fn url(&self) -> String {
        format!("https://localhost:{}", self.addr.port())
    }

    /// Returns every stderr line so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// Waits up to five seconds for a log line containing all of `parts`, and returns it.
    pub fn wait_for_log(&self, parts: &[&str]) -> String {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let found = self
                .log
                .lock()
                .unwrap()
                .iter()
                .find(|line| parts.iter().all(|part| line.contains(part)))
                .cloned();
            if let Some(line) = found {
                return line;
            }
            if Instant::now() > deadline {
                panic!("no server log line with {parts:?}; log:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends a signal, such as `HUP`, to the server.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success(), "kill -{name} failed");
    }

    /// Returns how many log lines so far contain every one of `parts`.
    pub fn count_log(&self, parts: &[&str]) -> usize {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|line| parts.iter().all(|part| line.contains(part)))
            .count()
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        let status = self.child.wait().unwrap();
        std::thread::sleep(Duration::from_millis(50));
        status
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `acme-dl pki ARGS` and returns its output.
pub fn pki(args: &[&str]) -> Output {
    Command::new(binary())
        .arg("pki")
        .args(args)
        .output()
        .unwrap()
}

/// Runs `acme-dl pki ARGS`, asserts success and returns stdout.
pub fn pki_ok(args: &[&str]) -> String {
    let output = pki(args);
    assert!(
        output.status.success(),
        "pki {args:?}: {}",
        describe(&output)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// Writes `config` as `DIR/server.toml` and a Certbot store with `example.com` under
/// `DIR/letsencrypt`, and returns the arguments that start a server on loopback with the
/// server certificate and client trust bundle of the `acme-dl pki` directory `ca`.
pub fn pki_server_args(dir: &Path, ca: &Path, config: &str) -> Vec<String> {
    let certbot = dir.join("letsencrypt");
    let acme = Authority::new_root("pki test ACME CA", 30).unwrap();
    write_lineage(&certbot, &acme, "example.com", 1);
    let config_path = dir.join("server.toml");
    std::fs::write(&config_path, config).unwrap();
    let path = |path: &Path| path.display().to_string();
    vec![
        "--no-syslog".to_owned(),
        "--config".to_owned(),
        path(&config_path),
        "--listen".to_owned(),
        "127.0.0.1:0".to_owned(),
        "--certbot-dir".to_owned(),
        path(&certbot),
        "--cert".to_owned(),
        path(&ca.join("servers/localhost.crt")),
        "--key".to_owned(),
        path(&ca.join("servers/localhost.key")),
        "--ca".to_owned(),
        path(&ca.join("client-trust.pem")),
    ]
}

/// Runs `acme-dl client` with `args` and returns its output.
pub fn run_client(args: &[String]) -> Output {
    Command::new(binary())
        .arg("client")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// Formats a client's output for assertion messages.
pub fn describe(output: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// A response read by [`raw_request`].
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

/// Sends raw HTTP/1.1 bytes over mutual TLS with `identity` and reads the response until
/// the server closes. The request should carry `Connection: close`.
pub fn raw_request(
    addr: SocketAddr,
    identity: Option<&Identity>,
    request: &[u8],
) -> std::io::Result<RawResponse> {
    let config = raw_client_config(identity);
    let name = ServerName::try_from("localhost").unwrap();
    let connection = rustls::ClientConnection::new(config, name).unwrap();
    let tcp = TcpStream::connect(addr)?;
    tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut stream = rustls::StreamOwned::new(connection, tcp);
    // A server may respond and close before the whole request is written. The response
    // still counts, so a failed write does not end the exchange.
    let _ = stream.write_all(request).and_then(|()| stream.flush());
    let mut bytes = Vec::new();
    match stream.read_to_end(&mut bytes) {
        Ok(_) => {}
        // Servers may close without a TLS close_notify; what arrived still counts.
        Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof && !bytes.is_empty() => {}
        Err(error) => return Err(error),
    }
    let split = bytes
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other(format!("no HTTP head in {} bytes", bytes.len())))?;
    let head = String::from_utf8_lossy(&bytes[..split]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    Ok(RawResponse {
        status,
        head,
        body: bytes[split + 4..].to_vec(),
    })
}

/// Sends a request head, then its body one byte every `interval`, and returns the status
/// line of whatever the server answers, or the error that ended the exchange.
pub fn trickle_request(
    addr: SocketAddr,
    identity: &Identity,
    head: &[u8],
    body: &[u8],
    interval: Duration,
) -> Result<String, String> {
    let config = raw_client_config(Some(identity));
    let name = ServerName::try_from("localhost").unwrap();
    let connection = rustls::ClientConnection::new(config, name).unwrap();
    let tcp = TcpStream::connect(addr).map_err(|error| error.to_string())?;
    tcp.set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let mut stream = rustls::StreamOwned::new(connection, tcp);
    stream.write_all(head).map_err(|error| error.to_string())?;
    let mut received = Vec::new();
    for byte in body {
        if stream
            .write_all(std::slice::from_ref(byte))
            .and_then(|()| stream.flush())
            .is_err()
        {
            break;
        }
        std::thread::sleep(interval);
        let mut buffer = [0u8; 1024];
        match stream.read(&mut buffer) {
            Ok(0) => break,
            Ok(count) => {
                received.extend_from_slice(&buffer[..count]);
                break;
            }
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(error) if error.kind() == std::io::ErrorKind::TimedOut => {}
            Err(error) => return Err(error.to_string()),
        }
    }
    let text = String::from_utf8_lossy(&received).into_owned();
    text.lines()
        .next()
        .map(str::to_owned)
        .ok_or_else(|| "no response".to_owned())
}

/// Returns the TLS version a mutual-TLS handshake with `identity` agrees on when the client
/// offers only `version`, or the handshake's error.
pub fn negotiated_version(
    addr: SocketAddr,
    identity: &Identity,
    version: &'static rustls::SupportedProtocolVersion,
) -> Result<rustls::ProtocolVersion, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(&identity.ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let chain: Vec<_> = CertificateDer::pem_file_iter(&identity.cert)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let key = PrivateKeyDer::from_pem_file(&identity.key).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[version])
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .unwrap();
    let mut connection =
        rustls::ClientConnection::new(Arc::new(config), ServerName::try_from("localhost").unwrap())
            .unwrap();
    let mut tcp = TcpStream::connect(addr).map_err(|error| error.to_string())?;
    while connection.is_handshaking() {
        connection
            .complete_io(&mut tcp)
            .map_err(|error| error.to_string())?;
    }
    connection
        .protocol_version()
        .ok_or_else(|| "no version".to_owned())
}

/// Builds a rustls client configuration that trusts `identity.ca` and presents
/// `identity`'s certificate. Its session cache lives as long as the configuration, so
/// connections made with one configuration resume each other's TLS sessions.
pub fn client_tls_config(identity: &Identity) -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(&identity.ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let chain: Vec<_> = CertificateDer::pem_file_iter(&identity.cert)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let key = PrivateKeyDer::from_pem_file(&identity.key).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .unwrap();
    Arc::new(config)
}

fn raw_client_config(identity: Option<&Identity>) -> Arc<rustls::ClientConfig> {
    let identity = identity.expect("raw_request needs a client identity");
    client_tls_config(identity)
}

/// Connects without a client certificate, trusting `ca`, and returns the first read's error.
pub fn anonymous_handshake(addr: SocketAddr, ca: &Path) -> std::io::Error {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connection =
        rustls::ClientConnection::new(Arc::new(config), ServerName::try_from("localhost").unwrap())
            .unwrap();
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut stream = rustls::StreamOwned::new(connection, tcp);
    let _ = stream.write_all(b"GET /download/x/cert.pem HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut buffer = [0u8; 64];
    match stream.read(&mut buffer) {
        Ok(count) => panic!("server answered {count} bytes without a client certificate"),
        Err(error) => error,
    }
}

/// A client's TLS connection kept open across requests.
pub type KeepAliveStream = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// Opens a mutual-TLS connection for several requests, with a 5 s read timeout.
pub fn keep_alive_stream(
    addr: std::net::SocketAddr,
    config: &Arc<rustls::ClientConfig>,
) -> KeepAliveStream {
    let connection =
        rustls::ClientConnection::new(config.clone(), ServerName::try_from("localhost").unwrap())
            .unwrap();
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    rustls::StreamOwned::new(connection, tcp)
}

/// Sends a GET on a kept-alive connection and returns the status code, or the error.
pub fn keep_alive_get(stream: &mut KeepAliveStream, path: &str) -> Result<u16, String> {
    write!(stream, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").map_err(|e| e.to_string())?;
    stream.flush().map_err(|e| e.to_string())?;
    let mut received = Vec::new();
    let mut buffer = [0u8; 8192];
    loop {
        let count = stream.read(&mut buffer).map_err(|e| e.to_string())?;
        if count == 0 {
            return Err("connection closed".to_owned());
        }
        received.extend_from_slice(&buffer[..count]);
        let text = String::from_utf8_lossy(&received);
        if let Some(head_end) = text.find("\r\n\r\n") {
            let length: usize = text[..head_end]
                .lines()
                .find_map(|line| {
                    line.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap_or(0))
                })
                .unwrap_or(0);
            if received.len() >= head_end + 4 + length {
                return text
                    .split_whitespace()
                    .nth(1)
                    .and_then(|code| code.parse().ok())
                    .ok_or_else(|| text.to_string());
            }
        }
    }
}
