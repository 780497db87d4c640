//! Configuration: TOML files merged with command-line flags into settings.
//!
//! Precedence is flag, then file, then the built-in default. The defaults reproduce the
//! deployed Go pair: paths under `tls/` relative to the working directory, port 8443.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::cli::ServerArgs;
use crate::tls::TlsFiles;

mod client;

pub use client::{ClientSettings, HookSettings, IdentityRenewal, LineageSettings};

/// Server configuration file read when `--config` is not given and the file exists.
pub const DEFAULT_SERVER_CONFIG: &str = "/etc/acme-dl/server.toml";
/// Client configuration file read when `--config` is not given and the file exists.
pub const DEFAULT_CLIENT_CONFIG: &str = "/etc/acme-dl/client.toml";

const DEFAULT_LISTEN: &str = "0.0.0.0:8443";
const DEFAULT_CERTBOT_DIR: &str = "/etc/letsencrypt";
const DEFAULT_HEADER_TIMEOUT_SECS: u64 = 10;
const DEFAULT_IDLE_TIMEOUT_SECS: u64 = 60;
const DEFAULT_MAX_BODY_BYTES: usize = 16 * 1024;
const DEFAULT_MAX_CONNECTIONS: usize = 1024;
const DEFAULT_RETRY_AFTER_SECS: u64 = 10;

/// A configuration problem, reported before anything else happens.
#[derive(Debug)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// Parses the metrics listener's address: `ADDR:PORT`, or a port alone, which binds
/// loopback so that turning metrics on exposes nothing beyond the host.
pub fn parse_metrics_listen(text: &str) -> Result<SocketAddr, String> {
    if let Ok(port) = text.trim().parse::<u16>() {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    text.trim().parse().map_err(|_| {
        format!("invalid metrics_listen {text:?}: expected a port such as 9464, or ADDR:PORT")
    })
}

/// Reads `metrics_listen` as a string (`"9464"`, `"127.0.0.1:9464"`) or a number.
fn metrics_listen_key<'de, D>(deserializer: D) -> Result<Option<SocketAddr>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Value {
        Port(u16),
        Text(String),
    }
    match Value::deserialize(deserializer)? {
        Value::Port(port) => Ok(Some(SocketAddr::from(([127, 0, 0, 1], port)))),
        Value::Text(text) => parse_metrics_listen(&text)
            .map(Some)
            .map_err(serde::de::Error::custom),
    }
}

/// Keys of the server's TOML file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerFile {
    /// Address and port to listen on.
    pub listen: Option<SocketAddr>,
    /// Address and port of the plain-HTTP Prometheus metrics listener, or a port alone
    /// for 127.0.0.1; off when absent.
    #[serde(default, deserialize_with = "metrics_listen_key")]
    pub metrics_listen: Option<SocketAddr>,
    /// Certbot's configuration directory.
    pub certbot_dir: Option<PathBuf>,
    /// Server certificate chain.
    pub cert: Option<PathBuf>,
    /// Server private key.
    pub key: Option<PathBuf>,
    /// CA bundle for client certificates.
    pub ca: Option<PathBuf>,
    /// Seconds a client may take to send a request's headers.
    pub header_timeout_secs: Option<u64>,
    /// Seconds an established connection may stay silent before it is closed.
    pub idle_timeout_secs: Option<u64>,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: Option<usize>,
    /// Connections served at once; connections beyond it get 503 with Retry-After.
    pub max_connections: Option<usize>,
    /// Connections one IP address may hold open at once.
    pub max_connections_per_ip: Option<usize>,
    /// Requests served on one connection before the server closes it.
    pub max_requests_per_connection: Option<usize>,
    /// Requests a client certificate may send at once before the rate applies.
    pub client_burst: Option<u32>,
    /// Requests per second a client certificate may sustain.
    pub client_requests_per_second: Option<f64>,
    /// Seconds sent in Retry-After when the server is saturated.
    pub retry_after_secs: Option<u64>,
    /// Threads serving connections; each accepts and serves its own.
    pub workers: Option<usize>,
    /// Certificate revocation lists for client certificates, PEM or DER.
    #[serde(default)]
    pub crl: Vec<PathBuf>,
    /// Lets every client of the CA fetch every lineage and key.
    pub allow_all_clients: Option<bool>,
    /// Access rules mapping clients to lineages.
    #[serde(default)]
    pub access: Vec<crate::policy::RuleFile>,
    /// Renewal of client certificates through the server; off without this table.
    pub renewal: Option<RenewalFile>,
}

/// Keys of the server's `[renewal]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenewalFile {
    /// PKI directory made by `acme-dl pki init` or `pki import`.
    pub pki_dir: PathBuf,
    /// Days a renewed certificate is valid; by default as long as the one it replaces.
    pub days: Option<i64>,
    /// Seconds a certificate issued by a renewal must be held before it renews again.
    pub min_interval_secs: Option<u64>,
    /// Renewals the server signs per minute, across all clients.
    pub max_per_minute: Option<u32>,
}

/// Renewal of client certificates, resolved.
#[derive(Debug, Clone)]
pub struct RenewalSettings {
    pub pki_dir: PathBuf,
    pub validity: Option<time::Duration>,
    pub min_interval: time::Duration,
    pub max_per_minute: u32,
}

const DEFAULT_RENEWAL_MIN_INTERVAL_SECS: u64 = 24 * 3600;
const DEFAULT_RENEWALS_PER_MINUTE: u32 = 60;

impl RenewalSettings {
    /// Checks that the PKI directory contains what renewal reads. The files are read again
    /// for each renewal, so a `pki` command's changes apply at once.
    pub fn check_files(&self) -> Result<(), ConfigError> {
        for name in ["index.json", "client-ca.crt", "client-ca.key"] {
            let path = self.pki_dir.join(name);
            if let Err(error) = std::fs::File::open(&path) {
                return Err(ConfigError(format!(
                    "[renewal] pki_dir: cannot read {}: {error}; point pki_dir at a directory \
                     made by acme-dl pki init, readable by the server",
                    path.display()
                )));
            }
        }
        Ok(())
    }

    /// Checks the table's values; the files are checked by `check_files`.
    fn resolve(file: &RenewalFile) -> Result<RenewalSettings, ConfigError> {
        let dir = &file.pki_dir;
        let validity = match file.days {
            None => None,
            Some(days) if (1..=3650).contains(&days) => Some(time::Duration::days(days)),
            Some(days) => {
                return Err(ConfigError(format!(
                    "[renewal] days must be 1 to 3650, got {days}"
                )));
            }
        };
        let min_interval_secs = file
            .min_interval_secs
            .unwrap_or(DEFAULT_RENEWAL_MIN_INTERVAL_SECS);
        Ok(RenewalSettings {
            pki_dir: dir.clone(),
            validity,
            min_interval: time::Duration::seconds(
                i64::try_from(min_interval_secs).unwrap_or(i64::MAX),
            ),
            max_per_minute: file
                .max_per_minute
                .unwrap_or(DEFAULT_RENEWALS_PER_MINUTE)
                .max(1),
        })
    }
}

/// Everything the server needs to start.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub listen: SocketAddr,
    /// The metrics listener's address, `None` when metrics are off.
    pub metrics_listen: Option<SocketAddr>,
    pub certbot_dir: PathBuf,
    pub tls: TlsFiles,
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_body_bytes: usize,
    pub max_connections: usize,
    pub retry_after: Duration,
    pub workers: usize,
    pub policy: crate::policy::Policy,
    pub crls: Vec<PathBuf>,
    pub limits: crate::server::LimitSettings,
    pub renewal: Option<RenewalSettings>,
}

/// Reads a TOML file: the explicit one, else the default one when it exists, else nothing.
fn read_file<T: Default + serde::de::DeserializeOwned>(
    explicit: Option<&Path>,
    default: &str,
) -> Result<T, ConfigError> {
    let path = match explicit {
        Some(path) => path.to_owned(),
        None if Path::new(default).exists() => PathBuf::from(default),
        None => return Ok(T::default()),
    };
    let text = std::fs::read_to_string(&path).map_err(|error| {
        ConfigError(format!(
            "reading configuration file {}: {error}",
            path.display()
        ))
    })?;
    toml::from_str(&text).map_err(|error| {
        ConfigError(format!(
            "invalid configuration file {}: {error}",
            path.display()
        ))
    })
}

fn pick<T>(flag: Option<T>, file: Option<T>, default: impl FnOnce() -> T) -> T {
    flag.or(file).unwrap_or_else(default)
}

fn seconds(name: &str, value: u64) -> Result<Duration, ConfigError> {
    if value == 0 {
        return Err(ConfigError(format!("{name} must be at least 1 second")));
    }
    Ok(Duration::from_secs(value))
}

impl ServerSettings {
    /// Merges the server's flags with its configuration file.
    pub fn resolve(args: &ServerArgs) -> Result<ServerSettings, ConfigError> {
        let file: ServerFile = read_file(args.config.as_deref(), DEFAULT_SERVER_CONFIG)?;
        let listen = pick(args.listen, file.listen, || {
            DEFAULT_LISTEN
                .parse()
                .unwrap_or_else(|_| unreachable!("valid default address"))
        });
        let metrics_listen = args.metrics_listen.or(file.metrics_listen);
        if let Some(metrics) = metrics_listen
            && metrics.port() != 0
            && metrics.port() == listen.port()
            && (metrics.ip() == listen.ip()
                || metrics.ip().is_unspecified()
                || listen.ip().is_unspecified())
        {
            return Err(ConfigError(format!(
                "metrics_listen {metrics} overlaps listen {listen}; give the metrics listener \
                 a port of its own, such as 127.0.0.1:9464"
            )));
        }
        Ok(ServerSettings {
            listen,
            metrics_listen,
            certbot_dir: pick(args.certbot_dir.clone(), file.certbot_dir, || {
                DEFAULT_CERTBOT_DIR.into()
            }),
            tls: TlsFiles {
                cert: pick(args.cert.clone(), file.cert, || "tls/server.crt".into()),
                key: pick(args.key.clone(), file.key, || "tls/server.key".into()),
                ca: pick(args.ca.clone(), file.ca, || "tls/ca.crt".into()),
            },
            header_timeout: seconds(
                "header_timeout_secs",
                file.header_timeout_secs
                    .unwrap_or(DEFAULT_HEADER_TIMEOUT_SECS),
            )?,
            idle_timeout: seconds(
                "idle_timeout_secs",
                file.idle_timeout_secs.unwrap_or(DEFAULT_IDLE_TIMEOUT_SECS),
            )?,
            max_body_bytes: file.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY_BYTES),
            limits: crate::server::LimitSettings {
                max_connections_per_ip: file.max_connections_per_ip.unwrap_or(256).max(1),
                max_requests_per_connection: file
                    .max_requests_per_connection
                    .unwrap_or(1000)
                    .max(1),
                client_burst: file.client_burst.unwrap_or(1000).max(1),
                client_requests_per_second: file.client_requests_per_second.unwrap_or(50.0),
            },
            crls: if args.crl.is_empty() {
                file.crl.clone()
            } else {
                args.crl.clone()
            },
            policy: crate::policy::Policy::new(
                &file.access,
                args.allow_all_clients || file.allow_all_clients.unwrap_or(false),
            )
            .map_err(ConfigError)?,
            max_connections: file
                .max_connections
                .unwrap_or(DEFAULT_MAX_CONNECTIONS)
                .max(1),
            retry_after: Duration::from_secs(
                file.retry_after_secs.unwrap_or(DEFAULT_RETRY_AFTER_SECS),
            ),
            workers: file
                .workers
                .unwrap_or_else(|| {
                    std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
                })
                .max(1),
            renewal: file
                .renewal
                .as_ref()
                .map(RenewalSettings::resolve)
                .transpose()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn server_args(extra: &[&str]) -> ServerArgs {
        let cli = crate::cli::Cli::parse_from(
            ["acme-dl", "server", "--config", "/nonexistent/acme-dl.toml"]
                .iter()
                .chain(extra),
        );
        match cli.command {
            crate::cli::Command::Server(args) => args,
            _ => unreachable!(),
        }
    }

    #[test]
    fn unknown_key_is_rejected() {
        let error = toml::from_str::<ServerFile>("listen = \"127.0.0.1:1\"\nlisten_port = 1\n")
            .unwrap_err();
        assert!(error.to_string().contains("listen_port"), "{error}");
    }

    #[test]
    fn explicit_missing_file_is_an_error() {
        let error = ServerSettings::resolve(&server_args(&[])).unwrap_err();
        assert!(
            error.to_string().contains("/nonexistent/acme-dl.toml"),
            "{error}"
        );
    }

    #[test]
    fn flags_override_file_and_defaults_apply() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("server.toml");
        std::fs::write(
            &path,
            "listen = \"[::1]:9443\"\ncertbot_dir = \"/srv/le\"\nallow_all_clients = true\n",
        )
        .unwrap();
        let cli = crate::cli::Cli::parse_from([
            "acme-dl",
            "server",
            "--config",
            path.to_str().unwrap(),
            "--certbot-dir",
            "/other",
        ]);
        let crate::cli::Command::Server(args) = cli.command else {
            unreachable!()
        };
        let settings = ServerSettings::resolve(&args).unwrap();
        assert_eq!(settings.listen, "[::1]:9443".parse().unwrap());
        assert_eq!(settings.certbot_dir, PathBuf::from("/other"));
        assert_eq!(settings.tls.cert, PathBuf::from("tls/server.crt"));
        assert_eq!(settings.tls.ca, PathBuf::from("tls/ca.crt"));
        assert_eq!(settings.metrics_listen, None);
    }

    #[test]
    fn metrics_listen_comes_from_flag_or_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("server.toml");
        std::fs::write(
            &path,
            "allow_all_clients = true\nmetrics_listen = \"127.0.0.1:9464\"\n",
        )
        .unwrap();
        let config = path.to_str().unwrap();
        let parse = |extra: &[&str]| {
            let cli = crate::cli::Cli::parse_from(
                ["acme-dl", "server", "--config", config]
                    .iter()
                    .chain(extra),
            );
            let crate::cli::Command::Server(args) = cli.command else {
                unreachable!()
            };
            ServerSettings::resolve(&args)
        };

        let from_file = parse(&[]).unwrap();
        assert_eq!(
            from_file.metrics_listen,
            Some("127.0.0.1:9464".parse().unwrap())
        );

        let from_flag = parse(&["--metrics-listen", "[::1]:9100"]).unwrap();
        assert_eq!(
            from_flag.metrics_listen,
            Some("[::1]:9100".parse().unwrap())
        );

        let port_alone = parse(&["--metrics-listen", "9100"]).unwrap();
        assert_eq!(
            port_alone.metrics_listen,
            Some("127.0.0.1:9100".parse().unwrap())
        );
    }

    #[test]
    fn metrics_port_alone_binds_loopback() {
        for text in ["metrics_listen = 9464", "metrics_listen = \"9464\""] {
            let file: ServerFile = toml::from_str(text).unwrap();
            assert_eq!(file.metrics_listen, Some("127.0.0.1:9464".parse().unwrap()));
        }
        let error = toml::from_str::<ServerFile>("metrics_listen = \"localhost\"").unwrap_err();
        assert!(error.to_string().contains("expected a port"), "{error}");
    }

    #[test]
    fn metrics_listen_on_the_main_port_is_rejected() {
        let args = server_args(&[]);
        let args = crate::cli::ServerArgs {
            config: Some(PathBuf::from("/dev/null")),
            listen: Some("0.0.0.0:8443".parse().unwrap()),
            metrics_listen: Some("127.0.0.1:8443".parse().unwrap()),
            ..args
        };
        let error = ServerSettings::resolve(&args).unwrap_err().to_string();
        assert!(
            error.contains("metrics_listen 127.0.0.1:8443 overlaps"),
            "{error}"
        );
    }
}
