//! Test harness that runs the real `certbot` program against a local Pebble ACME server.
//!
//! [`CertbotHarness::start`] starts Pebble (tested with Debian 12's `pebble` 2.4.0 and `certbot`
//! 2.1.0) on free ports of 127.0.0.1 and gives Certbot its own temporary config, work and
//! logs directories. [`CertbotHarness::issue`] and [`CertbotHarness::renew`] then produce the
//! same `live/` and `archive/` layout that Certbot writes under `/etc/letsencrypt`.
//!
//! Pebble runs with `PEBBLE_VA_ALWAYS_VALID=1`, so it marks every challenge valid without
//! contacting the domain, and the domains never need to resolve. Its DNS resolver is set to an
//! unused loopback port, and its management interface listens on 127.0.0.1 only, so neither
//! program sends traffic beyond the loopback interface.

use std::fs::{self, File};
use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Component, Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use tempfile::TempDir;

use super::{print_uncaptured, require_program};

/// File stems that Certbot links from `live/<name>/` into `archive/<name>/`.
pub const LIVE_FILE_STEMS: [&str; 4] = ["cert", "chain", "fullchain", "privkey"];

/// Maximum time that Pebble may take to accept connections after it starts.
const PEBBLE_START_TIMEOUT: Duration = Duration::from_secs(15);

/// Number of times to start Pebble with fresh ports when another process took a port first.
const PEBBLE_START_ATTEMPTS: u32 = 3;

/// Maximum time for one Certbot run. Issuance took about 3 seconds on a 2-core machine, and
/// 2 of those seconds were Certbot's 1-second polling sleeps.
const CERTBOT_TIMEOUT: Duration = Duration::from_secs(120);

/// Maximum time for one `curl` request to Pebble's management interface.
const CURL_TIMEOUT_SECONDS: &str = "10";

/// Proxy variables that are removed from the environment of Certbot and curl, so that requests
/// to 127.0.0.1 never go through a proxy on another host.
const PROXY_VARIABLES: [&str; 6] = [
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
];

/// Private key type that Certbot generates for a certificate (`--key-type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyType {
    /// 2048-bit RSA (`--key-type rsa --rsa-key-size 2048`).
    Rsa,
    /// ECDSA on P-256 (`--key-type ecdsa --elliptic-curve secp256r1`), Certbot 2.1's default.
    Ecdsa,
}

impl KeyType {
    fn certbot_args(self) -> [&'static str; 4] {
        match self {
            KeyType::Rsa => ["--key-type", "rsa", "--rsa-key-size", "2048"],
            KeyType::Ecdsa => ["--key-type", "ecdsa", "--elliptic-curve", "secp256r1"],
        }
    }
}

/// Request for one certificate lineage: the `--cert-name`, the domains and the key type.
#[derive(Clone, Debug)]
pub struct CertificateRequest {
    pub cert_name: String,
    /// Domains in the order passed to `-d`.
    pub domains: Vec<String>,
    pub key_type: KeyType,
}

impl CertificateRequest {
    /// Creates a request for an ECDSA certificate. Names under `.test` or `example.com` are good
    /// choices because Pebble never resolves them.
    pub fn new(cert_name: &str, domains: &[&str]) -> Self {
        assert!(
            !domains.is_empty(),
            "a certificate request needs at least one domain"
        );
        Self {
            cert_name: cert_name.to_owned(),
            domains: domains.iter().map(|domain| (*domain).to_owned()).collect(),
            key_type: KeyType::Ecdsa,
        }
    }

    /// Sets the key type, which is ECDSA unless changed.
    pub fn with_key_type(mut self, key_type: KeyType) -> Self {
        self.key_type = key_type;
        self
    }
}

/// Result of one successful Certbot run for one lineage.
#[derive(Clone, Debug)]
pub struct CertbotRun {
    pub cert_name: String,
    /// Number N of the `archive/<name>/*N.pem` files that `live/<name>/` now links to.
    pub version: u32,
    /// Wall-clock time of the `certbot` process, from spawn to exit.
    pub elapsed: Duration,
}

/// A Pebble ACME server and an empty Certbot configuration that uses it.
///
/// Dropping the harness kills Pebble and deletes every directory it created.
#[derive(Debug)]
pub struct CertbotHarness {
    certbot: PathBuf,
    pebble: Pebble,
    config_dir: PathBuf,
    work_dir: PathBuf,
    logs_dir: PathBuf,
    /// Combined standard output and error of the latest Certbot run.
    output_path: PathBuf,
    directory: TempDir,
}

impl CertbotHarness {
    /// Starts Pebble and creates empty Certbot directories.
    ///
    /// Returns `None` after printing the reason when `certbot` or `pebble` is not installed,
    /// unless `CI=true`, where it panics instead. Panics when Pebble fails to start.
    pub fn start() -> Option<Self> {
        let certbot = require_program("certbot")?;
        let pebble_binary = require_program("pebble")?;
        let pebble = Pebble::start(&pebble_binary);

        let directory = tempfile::Builder::new()
            .prefix("acme-dl-certbot-")
            .tempdir()
            .expect("failed to create a temporary directory for Certbot");
        let config_dir = directory.path().join("config");
        let work_dir = directory.path().join("work");
        let logs_dir = directory.path().join("logs");
        for dir in [&config_dir, &work_dir, &logs_dir] {
            fs::create_dir(dir)
                .unwrap_or_else(|error| panic!("failed to create {}: {error}", dir.display()));
        }
        let output_path = directory.path().join("certbot-output.txt");

        Some(Self {
            certbot,
            pebble,
            config_dir,
            work_dir,
            logs_dir,
            output_path,
            directory,
        })
    }

    /// Returns Certbot's `--config-dir`, which plays the part of `/etc/letsencrypt`.
    pub fn config_dir(&self) -> &Path {
        &self.config_dir
    }

    /// Returns `live/<cert_name>` inside the config directory.
    pub fn live_dir(&self, cert_name: &str) -> PathBuf {
        self.config_dir.join("live").join(cert_name)
    }

    /// Returns `archive/<cert_name>` inside the config directory.
    pub fn archive_dir(&self, cert_name: &str) -> PathBuf {
        self.config_dir.join("archive").join(cert_name)
    }

    /// Returns the Pebble server that this harness started.
    pub fn pebble(&self) -> &Pebble {
        &self.pebble
    }

    /// Runs `certbot certonly` for `request` and checks the resulting `live/` links.
    ///
    /// The run creates version 1 of a new lineage. For an existing `cert_name` with a changed
    /// domain list or key type, Certbot replaces them and writes the next version. For an existing
    /// `cert_name` with the same domains and key type, Certbot 2.1 keeps the lineage unchanged
    /// ("Certificate not yet due for renewal"), so this method panics: use [`Self::renew`].
    /// Panics with Certbot's output when Certbot fails, times out or leaves unexpected links.
    pub fn issue(&self, request: &CertificateRequest) -> CertbotRun {
        let previous_version = self.existing_version(&request.cert_name);

        let mut args: Vec<String> = [
            "certonly",
            "--manual",
            "--manual-auth-hook",
            "/bin/true",
            "--preferred-challenges",
            "http",
            "--agree-tos",
            "--register-unsafely-without-email",
            "--server",
            self.pebble.directory_url(),
            "--cert-name",
            &request.cert_name,
        ]
        .iter()
        .map(|arg| (*arg).to_owned())
        .collect();
        for domain in &request.domains {
            args.push("-d".to_owned());
            args.push(domain.clone());
        }
        args.extend(request.key_type.certbot_args().map(str::to_owned));

        let elapsed = self.run_certbot(&args);
        let version = self.check_new_version(&request.cert_name, previous_version.unwrap_or(0));
        print_uncaptured(&format!(
            "certbot: issued {} for {} ({:?} key, version {version}) in {elapsed:.2?}",
            request.cert_name,
            request.domains.join(", "),
            request.key_type,
        ));
        CertbotRun {
            cert_name: request.cert_name.clone(),
            version,
            elapsed,
        }
    }

    /// Runs `certbot renew --force-renewal` for one lineage and checks that `live/` now links to
    /// the next version.
    ///
    /// `--no-random-sleep-on-renew` is always passed because Certbot 2.1 otherwise sleeps
    /// 1 second to 8 minutes before renewing when its standard input is not a terminal. Panics
    /// with Certbot's output when the lineage does not exist, Certbot fails or times out, or the
    /// links are wrong.
    pub fn renew(&self, cert_name: &str) -> CertbotRun {
        let Some(previous_version) = self.existing_version(cert_name) else {
            panic!(
                "cannot renew {cert_name}: {} does not exist, so issue it first",
                self.live_dir(cert_name).display()
            );
        };
        let args: Vec<String> = [
            "renew",
            "--cert-name",
            cert_name,
            "--force-renewal",
            "--no-random-sleep-on-renew",
        ]
        .iter()
        .map(|arg| (*arg).to_owned())
        .collect();

        let elapsed = self.run_certbot(&args);
        let version = self.check_new_version(cert_name, previous_version);
        print_uncaptured(&format!(
            "certbot: renewed {cert_name} (version {version}) in {elapsed:.2?}"
        ));
        CertbotRun {
            cert_name: cert_name.to_owned(),
            version,
            elapsed,
        }
    }

    /// Returns the version that `live/<cert_name>` links to, or `None` when it does not exist.
    fn existing_version(&self, cert_name: &str) -> Option<u32> {
        if !self.live_dir(cert_name).exists() {
            return None;
        }
        match read_live_version(&self.config_dir, cert_name) {
            Ok(version) => Some(version),
            Err(error) => panic!("invalid lineage before running Certbot: {error}"),
        }
    }

    /// Checks that `live/<cert_name>` links to version `previous_version + 1` and returns it.
    fn check_new_version(&self, cert_name: &str, previous_version: u32) -> u32 {
        let version = match read_live_version(&self.config_dir, cert_name) {
            Ok(version) => version,
            Err(error) => panic!(
                "unexpected live/ links after Certbot succeeded: {error}\n{}",
                self.certbot_report()
            ),
        };
        assert_eq!(
            version,
            previous_version + 1,
            "live/{cert_name} links to version {version}, expected {}\n{}",
            previous_version + 1,
            self.certbot_report()
        );
        version
    }

    /// Runs Certbot with `args` plus the directory options and returns its wall-clock time.
    fn run_certbot(&self, args: &[String]) -> Duration {
        let output = File::create(&self.output_path).unwrap_or_else(|error| {
            panic!("failed to create {}: {error}", self.output_path.display())
        });
        let output_for_stderr = output
            .try_clone()
            .expect("failed to duplicate the Certbot output file handle");

        let mut command = Command::new(&self.certbot);
        command
            .args(args)
            .arg("--config-dir")
            .arg(&self.config_dir)
            .arg("--work-dir")
            .arg(&self.work_dir)
            .arg("--logs-dir")
            .arg(&self.logs_dir)
            .arg("--non-interactive")
            .env("REQUESTS_CA_BUNDLE", self.pebble.listener_ca_path())
            .stdin(Stdio::null())
            .stdout(output)
            .stderr(output_for_stderr);
        remove_proxy_variables(&mut command);

        let started = Instant::now();
        let mut child = command
            .spawn()
            .unwrap_or_else(|error| panic!("failed to run {}: {error}", self.certbot.display()));
        let status = wait_with_timeout(&mut child, CERTBOT_TIMEOUT);
        let elapsed = started.elapsed();

        match status {
            Some(status) if status.success() => elapsed,
            Some(status) => panic!(
                "certbot {} failed with {status}\n{}",
                args.join(" "),
                self.certbot_report()
            ),
            None => panic!(
                "certbot {} timed out after {CERTBOT_TIMEOUT:?} and was killed\n{}",
                args.join(" "),
                self.certbot_report()
            ),
        }
    }

    /// Formats the latest Certbot output and the ends of Certbot's debug log and Pebble's log for
    /// a panic message.
    fn certbot_report(&self) -> String {
        let output = fs::read_to_string(&self.output_path).unwrap_or_default();
        let log_path = self.logs_dir.join("letsencrypt.log");
        let certbot_log = fs::read_to_string(&log_path).unwrap_or_default();
        let pebble_log = self.pebble.log();
        format!(
            "--- certbot output ---\n{output}\n\
             --- last 40 lines of {} ---\n{}\n\
             --- last 40 lines of the Pebble log ---\n{}",
            log_path.display(),
            last_lines(&certbot_log, 40),
            last_lines(&pebble_log, 40),
        )
    }
}

/// Reads the version that `live/<cert_name>/` in `config_dir` links to.
///
/// Checks the layout that Certbot writes for a lineage: each of `cert.pem`, `chain.pem`,
/// `fullchain.pem` and `privkey.pem` is a symbolic link whose target is the relative path
/// `../../archive/<cert_name>/<stem>N.pem`, that target is a regular file, and all four links
/// share one version N. Returns N, or an error that names the first link that breaks a rule.
pub fn read_live_version(config_dir: &Path, cert_name: &str) -> Result<u32, String> {
    let live_dir = config_dir.join("live").join(cert_name);
    let mut versions = Vec::new();

    for stem in LIVE_FILE_STEMS {
        let link = live_dir.join(format!("{stem}.pem"));
        let metadata = fs::symlink_metadata(&link)
            .map_err(|error| format!("cannot read {}: {error}", link.display()))?;
        if !metadata.file_type().is_symlink() {
            return Err(format!("{} is not a symbolic link", link.display()));
        }

        let target = fs::read_link(&link)
            .map_err(|error| format!("cannot read link {}: {error}", link.display()))?;
        let version = parse_archive_target(&target, cert_name, stem).ok_or_else(|| {
            format!(
                "{} links to {}, expected ../../archive/{cert_name}/{stem}N.pem",
                link.display(),
                target.display()
            )
        })?;

        let target_metadata = fs::metadata(&link).map_err(|error| {
            format!("{} links to {}: {error}", link.display(), target.display())
        })?;
        if !target_metadata.is_file() {
            return Err(format!(
                "{} links to {}, which is not a regular file",
                link.display(),
                target.display()
            ));
        }
        versions.push((stem, version));
    }

    let (_, first_version) = versions[0];
    if let Some((stem, version)) = versions
        .iter()
        .find(|(_, version)| *version != first_version)
    {
        return Err(format!(
            "{}: {stem}.pem links to version {version} but cert.pem links to version \
             {first_version}",
            live_dir.display()
        ));
    }
    Ok(first_version)
}

/// Returns N when `target` is exactly `../../archive/<cert_name>/<stem>N.pem`.
fn parse_archive_target(target: &Path, cert_name: &str, stem: &str) -> Option<u32> {
    let components: Vec<Component> = target.components().collect();
    let [
        Component::ParentDir,
        Component::ParentDir,
        Component::Normal(archive),
        Component::Normal(name),
        Component::Normal(file_name),
    ] = components.as_slice()
    else {
        return None;
    };
    if *archive != "archive" || *name != cert_name {
        return None;
    }
    let digits = file_name
        .to_str()?
        .strip_prefix(stem)?
        .strip_suffix(".pem")?;
    if digits.is_empty() || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// A Pebble ACME server on 127.0.0.1, killed when dropped.
#[derive(Debug)]
pub struct Pebble {
    child: Child,
    directory_url: String,
    management_url: String,
    listener_ca_path: PathBuf,
    log_path: PathBuf,
    /// Contains the configuration file, the listener's TLS certificate and key, and the log.
    directory: TempDir,
}

impl Pebble {
    /// Starts `pebble_binary` on free ports of 127.0.0.1 and waits until it accepts connections.
    ///
    /// The listener's TLS certificate is generated for this run and signed by a CA that exists
    /// only in [`Pebble::listener_ca_path`]. Panics when Pebble fails to start.
    pub fn start(pebble_binary: &Path) -> Pebble {
        let directory = tempfile::Builder::new()
            .prefix("acme-dl-pebble-")
            .tempdir()
            .expect("failed to create a temporary directory for Pebble");
        let tls = write_listener_tls(directory.path());

        for attempt in 1..=PEBBLE_START_ATTEMPTS {
            // The ports are free when reserved and released, so another process can take one
            // before Pebble binds it. Pebble then exits, and the loop tries new ports.
            let [listen_port, management_port, dns_port] = reserve_loopback_ports();
            let config_path = directory.path().join("pebble-config.json");
            let config = format!(
                r#"{{
  "pebble": {{
    "listenAddress": "127.0.0.1:{listen_port}",
    "managementListenAddress": "127.0.0.1:{management_port}",
    "certificate": "{}",
    "privateKey": "{}",
    "httpPort": 5002,
    "tlsPort": 5001,
    "ocspResponderURL": "",
    "externalAccountBindingRequired": false
  }}
}}
"#,
                tls.certificate_path.display(),
                tls.private_key_path.display(),
            );
            fs::write(&config_path, config).unwrap_or_else(|error| {
                panic!("failed to write {}: {error}", config_path.display())
            });

            let log_path = directory.path().join(format!("pebble-{attempt}.log"));
            let mut child = spawn_pebble(pebble_binary, &config_path, dns_port, &log_path);
            let started = Instant::now();
            match wait_until_listening(&mut child, &[listen_port, management_port]) {
                Ok(()) => {
                    print_uncaptured(&format!(
                        "pebble: listening on 127.0.0.1:{listen_port} after {:.2?}",
                        started.elapsed()
                    ));
                    return Pebble {
                        child,
                        directory_url: format!("https://127.0.0.1:{listen_port}/dir"),
                        management_url: format!("https://127.0.0.1:{management_port}"),
                        listener_ca_path: tls.ca_path,
                        log_path,
                        directory,
                    };
                }
                Err(error) => {
                    stop_child(&mut child);
                    let log = fs::read_to_string(&log_path).unwrap_or_default();
                    if log.contains("address already in use") && attempt < PEBBLE_START_ATTEMPTS {
                        continue;
                    }
                    panic!("Pebble failed to start: {error}\n--- Pebble log ---\n{log}");
                }
            }
        }
        unreachable!("the last start attempt either returns or panics")
    }

    /// Returns the ACME directory URL, `https://127.0.0.1:PORT/dir`.
    pub fn directory_url(&self) -> &str {
        &self.directory_url
    }

    /// Returns the PEM file of the CA that signed the listener's TLS certificate, which clients
    /// of the ACME and management interfaces must trust.
    pub fn listener_ca_path(&self) -> &Path {
        &self.listener_ca_path
    }

    /// Fetches the root certificate, in PEM, that Pebble generated at startup, from its management
    /// interface with `curl`. Certbot's `chain.pem` contains only the intermediate, so verifying a
    /// chain needs this root.
    ///
    /// Panics when `curl` is missing or the request fails.
    pub fn root_certificate_pem(&self) -> String {
        let url = format!("{}/roots/0", self.management_url);
        let mut command = Command::new("curl");
        command
            .args(["--silent", "--show-error", "--fail", "--noproxy", "*"])
            .args(["--max-time", CURL_TIMEOUT_SECONDS])
            .arg("--cacert")
            .arg(&self.listener_ca_path)
            .arg(&url)
            .stdin(Stdio::null());
        remove_proxy_variables(&mut command);

        let output = command
            .output()
            .unwrap_or_else(|error| panic!("failed to run curl for {url}: {error}"));
        assert!(
            output.status.success(),
            "curl {url} failed with {}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).expect("Pebble's root certificate is not UTF-8")
    }

    /// Returns Pebble's output so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Returns the temporary directory that contains Pebble's configuration and log.
    pub fn directory(&self) -> &Path {
        self.directory.path()
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        stop_child(&mut self.child);
    }
}

fn spawn_pebble(binary: &Path, config_path: &Path, dns_port: u16, log_path: &Path) -> Child {
    let log = File::create(log_path)
        .unwrap_or_else(|error| panic!("failed to create {}: {error}", log_path.display()));
    let log_for_stderr = log
        .try_clone()
        .expect("failed to duplicate the Pebble log file handle");

    Command::new(binary)
        .arg("-config")
        .arg(config_path)
        // Nothing listens on this port, so any DNS lookup that Pebble makes fails on loopback
        // instead of going to the system's resolver.
        .arg("-dnsserver")
        .arg(format!("127.0.0.1:{dns_port}"))
        .env("PEBBLE_VA_ALWAYS_VALID", "1")
        .env("PEBBLE_VA_NOSLEEP", "1")
        .env("PEBBLE_WFE_NONCEREJECT", "0")
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_for_stderr)
        .spawn()
        .unwrap_or_else(|error| panic!("failed to run {}: {error}", binary.display()))
}

/// Polls until every port in `ports` on 127.0.0.1 accepts a TCP connection, or fails when the
/// child exits or [`PEBBLE_START_TIMEOUT`] passes.
fn wait_until_listening(child: &mut Child, ports: &[u16]) -> Result<(), String> {
    let deadline = Instant::now() + PEBBLE_START_TIMEOUT;
    let mut waiting: Vec<u16> = ports.to_vec();
    loop {
        if let Some(status) = child
            .try_wait()
            .map_err(|error| format!("cannot check the Pebble process: {error}"))?
        {
            return Err(format!("Pebble exited with {status} before it listened"));
        }
        waiting.retain(|port| {
            let address = SocketAddr::from((Ipv4Addr::LOCALHOST, *port));
            TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_err()
        });
        if waiting.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "Pebble did not accept connections on 127.0.0.1 ports {waiting:?} within \
                 {PEBBLE_START_TIMEOUT:?}"
            ));
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// Returns `N` distinct TCP ports that were free on 127.0.0.1 when this function ran.
fn reserve_loopback_ports<const N: usize>() -> [u16; N] {
    let listeners: Vec<TcpListener> = (0..N)
        .map(|_| {
            TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
                .expect("failed to bind a free port on 127.0.0.1")
        })
        .collect();
    let mut ports = [0; N];
    for (port, listener) in ports.iter_mut().zip(&listeners) {
        *port = listener
            .local_addr()
            .expect("failed to read a bound port")
            .port();
    }
    ports
}

/// Paths of the TLS files that [`write_listener_tls`] writes.
struct ListenerTls {
    ca_path: PathBuf,
    certificate_path: PathBuf,
    private_key_path: PathBuf,
}

/// Generates a CA and a server certificate for `localhost` and 127.0.0.1 signed by it, and writes
/// them to `directory`. The keys exist only for this run.
fn write_listener_tls(directory: &Path) -> ListenerTls {
    let ca_key = KeyPair::generate().expect("failed to generate the test CA key");
    let mut ca_params =
        CertificateParams::new(Vec::new()).expect("failed to create test CA parameters");
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "acme-dl test CA for Pebble");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_certificate = ca_params
        .self_signed(&ca_key)
        .expect("failed to sign the test CA certificate");
    let issuer = Issuer::new(ca_params, ca_key);

    let server_key = KeyPair::generate().expect("failed to generate Pebble's TLS key");
    let mut server_params =
        CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .expect("failed to create Pebble's TLS certificate parameters");
    server_params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    server_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    server_params.use_authority_key_identifier_extension = true;
    let server_certificate = server_params
        .signed_by(&server_key, &issuer)
        .expect("failed to sign Pebble's TLS certificate");

    let tls = ListenerTls {
        ca_path: directory.join("listener-ca.pem"),
        certificate_path: directory.join("listener-cert.pem"),
        private_key_path: directory.join("listener-key.pem"),
    };
    for (path, contents) in [
        (&tls.ca_path, ca_certificate.pem()),
        (&tls.certificate_path, server_certificate.pem()),
        (&tls.private_key_path, server_key.serialize_pem()),
    ] {
        fs::write(path, contents)
            .unwrap_or_else(|error| panic!("failed to write {}: {error}", path.display()));
    }
    tls
}

fn remove_proxy_variables(command: &mut Command) {
    for variable in PROXY_VARIABLES {
        command.env_remove(variable);
    }
    command.env("NO_PROXY", "127.0.0.1,localhost");
    command.env("no_proxy", "127.0.0.1,localhost");
}

/// Waits for `child` to exit and returns its status, or kills it and returns `None` when
/// `timeout` passes first.
fn wait_with_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() >= deadline => {
                stop_child(child);
                return None;
            }
            Ok(None) => thread::sleep(Duration::from_millis(50)),
            Err(error) => panic!("cannot wait for process {}: {error}", child.id()),
        }
    }
}

/// Kills `child` unless it already exited, and reaps it.
fn stop_child(child: &mut Child) {
    match child.kill() {
        Ok(()) => {}
        // The process already exited, which kill() reports as InvalidInput.
        Err(error) if error.kind() == ErrorKind::InvalidInput => {}
        Err(error) => print_uncaptured(&format!("failed to kill process {}: {error}", child.id())),
    }
    let _ = child.wait();
}

fn last_lines(text: &str, count: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(count)..].join("\n")
}
