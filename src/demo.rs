//! `acme-dl demo`: the whole loop on one machine, with nothing but the binary.
//!
//! It makes a private CA with server and client certificates and a Certbot-shaped store,
//! then starts the server on a free loopback port and syncs a client directory. After a
//! renewal made the way Certbot makes one, it syncs again, and once more to show that a
//! current copy is left alone. The real server and client code run, in one process.

use std::fs;
use std::os::unix::fs::{OpenOptionsExt, symlink};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use crate::client::{self, LineageOutcome, RunReport};
use crate::config::{ClientSettings, ServerSettings};
use crate::identity::Identity;
use crate::lineage::LineageName;
use crate::pki::{Authority, LeafSpec, Usage};
use crate::server::Server;
use crate::status::ExitStatus;
use crate::tls::TlsFiles;

/// The lineage the demonstration issues and distributes.
const DEMO_LINEAGE: &str = "demo.example";

/// Common name of the demo client's certificate, which the access policy names.
const DEMO_CLIENT: &str = "demo-client";

/// Runs the demonstration; `keep` leaves its files in that directory.
pub async fn run(keep: Option<&Path>) -> ExitStatus {
    let temporary;
    let root = match keep {
        Some(dir) => match prepare_keep_dir(dir) {
            Ok(root) => root,
            Err(message) => {
                eprintln!("acme-dl demo: error: {message}");
                return ExitStatus::Config;
            }
        },
        None => match tempfile::Builder::new().prefix("acme-dl-demo-").tempdir() {
            Ok(dir) => {
                temporary = dir;
                temporary.path().to_owned()
            }
            Err(error) => {
                eprintln!("acme-dl demo: error: creating a temporary directory failed: {error}");
                return ExitStatus::Install;
            }
        },
    };
    match demonstrate(&root, keep.is_some()).await {
        Ok(()) => ExitStatus::Success,
        Err(failure) => {
            eprintln!("acme-dl demo: error: {failure}");
            failure.status
        }
    }
}

/// Creates the directory for `--keep` and returns its absolute path, so the written
/// configuration files work from any working directory. An existing file is never
/// overwritten: the directory must be new or empty.
fn prepare_keep_dir(dir: &Path) -> Result<PathBuf, String> {
    fs::create_dir_all(dir).map_err(|error| format!("creating {}: {error}", dir.display()))?;
    let mut entries =
        fs::read_dir(dir).map_err(|error| format!("reading {}: {error}", dir.display()))?;
    if entries.next().is_some() {
        return Err(format!(
            "{} is not empty; --keep needs a new or empty directory, so no existing file is \
             overwritten",
            dir.display()
        ));
    }
    fs::canonicalize(dir).map_err(|error| format!("resolving {}: {error}", dir.display()))
}

/// A failed demonstration step.
#[derive(Debug)]
struct DemoError {
    status: ExitStatus,
    message: String,
}

impl std::fmt::Display for DemoError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

fn step_failed(what: &str) -> impl FnOnce(&dyn std::fmt::Display) -> DemoError + '_ {
    move |error| DemoError {
        status: ExitStatus::Install,
        message: format!("{what}: {error}"),
    }
}

/// Lets the demo client fetch the demo lineage, key included, and nothing else.
fn demo_policy() -> Result<crate::policy::Policy, String> {
    let rule = crate::policy::RuleFile {
        clients: vec![format!("cn:{DEMO_CLIENT}")],
        lineages: vec![DEMO_LINEAGE.to_owned()],
        private_keys: true,
    };
    crate::policy::Policy::new(&[rule], false)
}

/// Paths of the demonstration's files.
struct Layout {
    tls: PathBuf,
    certbot: PathBuf,
    client_live: PathBuf,
}

async fn demonstrate(root: &Path, keep: bool) -> Result<(), DemoError> {
    let layout = Layout {
        tls: root.join("tls"),
        certbot: root.join("letsencrypt"),
        client_live: root.join("client-live"),
    };
    println!(
        "acme-dl demo: a complete run on loopback, in {}\n",
        root.display()
    );

    make_pki(&layout.tls).map_err(|e| step_failed("making the PKI")(&e))?;
    println!("1. Made a private CA with a server certificate for localhost and a client");
    println!("   certificate for demo-client ({}).", layout.tls.display());

    let acme = Authority::new_root("acme-dl demo ACME root", 3650)
        .and_then(|root| {
            root.new_intermediate("acme-dl demo ACME intermediate", 3650)
                .map(|i| (root, i))
        })
        .map_err(|e| step_failed("making the ACME CA")(&e))?;
    let first =
        renew(&layout.certbot, &acme.1, 1).map_err(|e| step_failed("building the store")(&e))?;
    println!("2. Built a Certbot-style store: archive/{DEMO_LINEAGE}/*1.pem and relative links");
    println!("   in live/{DEMO_LINEAGE}/ ({}).", layout.certbot.display());

    let server_settings = ServerSettings {
        listen: ([127, 0, 0, 1], 0).into(),
        metrics_listen: None,
        certbot_dir: layout.certbot.clone(),
        tls: tls_files(&layout.tls, "server"),
        header_timeout: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(60),
        max_body_bytes: 16 * 1024,
        max_connections: 64,
        retry_after: Duration::from_secs(10),
        // One worker: the demonstration serves one client at a time.
        workers: 1,
        crls: Vec::new(),
        renewal: None,
        limits: crate::server::LimitSettings {
            max_connections_per_ip: 64,
            max_requests_per_connection: 1000,
            client_burst: 1000,
            client_requests_per_second: 50.0,
        },
        policy: demo_policy().map_err(|e| step_failed("building the access policy")(&e))?,
    };
    let server = Server::bind(server_settings)
        .await
        .map_err(|failure| DemoError {
            status: ExitStatus::Config,
            message: format!("starting the server failed: {failure}"),
        })?;
    let port = server.local_addr().port();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.serve(async move {
        let _ = stopped.await;
    }));
    let url = format!("https://localhost:{port}");
    println!("3. Started the server on {url}; it accepts only clients with a certificate");
    println!("   from the demo CA.");

    let lineage = LineageName::parse(DEMO_LINEAGE).map_err(|e| step_failed("lineage")(&e))?;
    let client_settings = ClientSettings::with_defaults(
        url.clone(),
        layout.client_live.clone(),
        tls_files(&layout.tls, "client"),
        vec![lineage],
    );
    let installed = layout.client_live.join(DEMO_LINEAGE);

    let report = sync(&client_settings).await?;
    println!("4. First sync into {}:", layout.client_live.display());
    print_report(&report);
    expect_serial(&installed, &first, "the first certificate")?;

    let second = renew(&layout.certbot, &acme.1, 2).map_err(|e| step_failed("renewing")(&e))?;
    println!("5. Renewed the certificate as Certbot does: wrote archive/{DEMO_LINEAGE}/*2.pem");
    println!("   with a new key, then repointed the four live/ links one by one.");

    let report = sync(&client_settings).await?;
    println!("6. Second sync: the client saw different hashes and fetched the new set:");
    print_report(&report);
    expect_serial(&installed, &second, "the renewed certificate")?;
    println!("   The installed certificate's serial is now {second} (was {first}).");

    let before = modification_times(&installed);
    let report = sync(&client_settings).await?;
    println!("7. Third sync: nothing changed on the server, so nothing was written:");
    print_report(&report);
    if !matches!(report.outcomes.first(), Some((_, LineageOutcome::UpToDate)))
        || modification_times(&installed) != before
    {
        return Err(DemoError {
            status: ExitStatus::Install,
            message: "the third sync rewrote files that were current".to_owned(),
        });
    }
    println!("   Modification times are unchanged.");

    let _ = stop.send(());
    let _ = serving.await;
    if keep {
        write_configs(root, &layout, port).map_err(|e| step_failed("writing configuration")(&e))?;
        println!(
            "\nServer stopped. The PKI, store and configuration files are in {}:",
            root.display()
        );
        println!("  acme-dl server --config {}/server.toml", root.display());
        println!("  acme-dl client --config {}/client.toml", root.display());
    } else {
        println!(
            "\nServer stopped and the demo files removed. Run `acme-dl demo --keep DIR` to keep them."
        );
    }
    Ok(())
}

async fn sync(settings: &ClientSettings) -> Result<RunReport, DemoError> {
    let deadline = std::time::Instant::now() + settings.run_timeout;
    let report = client::sync_and_run_hooks(settings, deadline)
        .await
        .map_err(|failure| DemoError {
            status: failure.exit_status(),
            message: format!("client run failed: {failure}"),
        })?;
    if let Some((lineage, LineageOutcome::Failed(failure))) = report.outcomes.first() {
        return Err(DemoError {
            status: failure.exit_status(),
            message: format!("lineage {lineage}: {failure}"),
        });
    }
    Ok(report)
}

fn print_report(report: &RunReport) {
    for line in report.summary().lines() {
        println!("   {line}");
    }
}

fn tls_files(dir: &Path, role: &str) -> TlsFiles {
    TlsFiles {
        cert: dir.join(format!("{role}.crt")),
        key: dir.join(format!("{role}.key")),
        ca: dir.join("ca.crt"),
    }
}

/// Writes `ca.crt`, `server.{crt,key}` and `client.{crt,key}`.
fn make_pki(dir: &Path) -> Result<(), Box<dyn std::error::Error>> {
    fs::create_dir_all(dir)?;
    let ca = Authority::new_root("acme-dl demo CA", 3650)?;
    let mut server = LeafSpec::new("localhost", Usage::Server, 365);
    server.dns_names = vec!["localhost".to_owned()];
    server.ip_addresses = vec!["127.0.0.1".parse()?, "::1".parse()?];
    let server = ca.issue(&server)?;
    let client = ca.issue(&LeafSpec::new(DEMO_CLIENT, Usage::Client, 365))?;

    fs::write(dir.join("ca.crt"), ca.cert_pem())?;
    fs::write(dir.join("server.crt"), &server.cert_pem)?;
    write_private(&dir.join("server.key"), &server.key_pem)?;
    fs::write(dir.join("client.crt"), &client.cert_pem)?;
    write_private(&dir.join("client.key"), &client.key_pem)?;
    Ok(())
}

fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(contents.as_bytes())
}

/// Issues version `number` of the demo lineage into `archive/` and points `live/` at it,
/// the way Certbot lays out a renewal. Returns the new certificate's serial.
fn renew(
    certbot: &Path,
    acme: &Authority,
    number: u32,
) -> Result<String, Box<dyn std::error::Error>> {
    let archive = certbot.join("archive").join(DEMO_LINEAGE);
    let live = certbot.join("live").join(DEMO_LINEAGE);
    fs::create_dir_all(&archive)?;
    fs::create_dir_all(&live)?;

    let mut spec = LeafSpec::new(DEMO_LINEAGE, Usage::Server, 90);
    spec.dns_names = vec![DEMO_LINEAGE.to_owned(), format!("www.{DEMO_LINEAGE}")];
    let leaf = acme.issue(&spec)?;
    let files = [
        ("cert", leaf.cert_pem.clone()),
        ("chain", acme.cert_pem().to_owned()),
        ("fullchain", format!("{}{}", leaf.cert_pem, acme.cert_pem())),
    ];
    for (name, contents) in &files {
        fs::write(archive.join(format!("{name}{number}.pem")), contents)?;
    }
    write_private(&archive.join(format!("privkey{number}.pem")), &leaf.key_pem)?;

    for name in ["cert", "chain", "fullchain", "privkey"] {
        let link = live.join(format!("{name}.pem"));
        let staging = live.join(format!(".{name}.pem.new"));
        let _ = fs::remove_file(&staging);
        symlink(
            format!("../../archive/{DEMO_LINEAGE}/{name}{number}.pem"),
            &staging,
        )?;
        fs::rename(&staging, &link)?;
    }
    serial_of(&live.join("cert.pem")).ok_or_else(|| "cannot read the new certificate".into())
}

fn serial_of(path: &Path) -> Option<String> {
    let der = CertificateDer::from_pem_file(path).ok()?;
    Some(Identity::from_der(&der).serial)
}

fn expect_serial(dir: &Path, expected: &str, what: &str) -> Result<(), DemoError> {
    match serial_of(&dir.join("cert.pem")) {
        Some(serial) if serial == expected => Ok(()),
        other => Err(DemoError {
            status: ExitStatus::Verification,
            message: format!("expected {what} (serial {expected}) installed, found {other:?}"),
        }),
    }
}

fn modification_times(dir: &Path) -> Vec<Option<SystemTime>> {
    ["cert.pem", "chain.pem", "fullchain.pem", "privkey.pem"]
        .iter()
        .map(|name| fs::metadata(dir.join(name)).and_then(|m| m.modified()).ok())
        .collect()
}

/// Writes `server.toml` and `client.toml` that reuse the kept files by hand.
fn write_configs(root: &Path, layout: &Layout, port: u16) -> std::io::Result<()> {
    let quote = |path: &Path| toml_string(&path.display().to_string());
    let server = format!(
        "# acme-dl server configuration written by `acme-dl demo --keep`.\n\
         listen = \"127.0.0.1:{port}\"\ncertbot_dir = {}\ncert = {}\nkey = {}\nca = {}\n\n\
         [[access]]\nclients = [\"cn:{DEMO_CLIENT}\"]\nlineages = [\"{DEMO_LINEAGE}\"]\n",
        quote(&layout.certbot),
        quote(&layout.tls.join("server.crt")),
        quote(&layout.tls.join("server.key")),
        quote(&layout.tls.join("ca.crt")),
    );
    let client = format!(
        "# acme-dl client configuration written by `acme-dl demo --keep`.\n\
         server = \"https://localhost:{port}\"\ndest = {}\ncert = {}\nkey = {}\nca = {}\n\
         lineages = [\"{DEMO_LINEAGE}\"]\n",
        quote(&layout.client_live),
        quote(&layout.tls.join("client.crt")),
        quote(&layout.tls.join("client.key")),
        quote(&layout.tls.join("ca.crt")),
    );
    fs::write(root.join("server.toml"), server)?;
    fs::write(root.join("client.toml"), client)
}

fn toml_string(text: &str) -> String {
    toml::Value::String(text.to_owned()).to_string()
}
