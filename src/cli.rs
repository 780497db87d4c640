//! Command-line definitions. Every flag of `server` and `client` has a twin key in the
//! TOML configuration file; `config` merges the two, flags winning.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Distributes Certbot certificate sets from one host to a fleet over mutual TLS.
#[derive(Debug, Parser)]
#[command(name = "acme-dl", version, about, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub log: LogArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags that every subcommand accepts.
#[derive(Debug, Args)]
pub struct LogArgs {
    /// Syslog socket to log to (facility daemon); when it cannot be reached, logs go to stderr
    #[arg(long, global = true, value_name = "PATH", default_value = crate::logging::DEFAULT_SYSLOG_SOCKET)]
    pub syslog_socket: PathBuf,
    /// Log to stderr only, not to syslog
    #[arg(long, global = true)]
    pub no_syslog: bool,
    /// Also write every log line to stderr
    #[arg(long, global = true)]
    pub log_stderr: bool,
    /// Log debug messages too
    #[arg(short, long, global = true)]
    pub verbose: bool,
}

// The arguments are parsed once per process, so their size does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the lineages of a Certbot directory to clients with a certificate from the CA
    Server(ServerArgs),
    /// Fetch lineages whose local copy is stale and install them
    Client(ClientArgs),
    /// Run a complete loopback demonstration: PKI, store, server, client, renewal
    Demo(DemoArgs),
    /// Manage the fleet's private CA: root, client intermediate, server and client
    /// certificates, revocation lists
    Pki(PkiArgs),
}

#[derive(Debug, Clone, Args)]
pub struct ServerArgs {
    /// TOML configuration file [default: /etc/acme-dl/server.toml when it exists]
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address and port to listen on, IPv4 or [IPv6] [default: 0.0.0.0:8443]
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Option<SocketAddr>,
    /// Serve Prometheus metrics over plain HTTP at ADDR:PORT/metrics. A port alone, such as
    /// 9464, binds 127.0.0.1, and other addresses than loopback are logged as a warning
    /// [default: off, unless the file sets metrics_listen]
    #[arg(long, value_name = "[ADDR:]PORT", value_parser = crate::config::parse_metrics_listen)]
    pub metrics_listen: Option<SocketAddr>,
    /// Certbot's configuration directory; lineages are read from its live/ [default: /etc/letsencrypt]
    #[arg(long, value_name = "DIR")]
    pub certbot_dir: Option<PathBuf>,
    /// Server certificate chain, PEM [default: tls/server.crt]
    #[arg(long, value_name = "FILE")]
    pub cert: Option<PathBuf>,
    /// Server private key, PEM: PKCS#1, SEC1 or PKCS#8 [default: tls/server.key]
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// CA bundle that client certificates must chain to, PEM [default: tls/ca.crt]
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// Certificate revocation list for client certificates, PEM or DER; repeat for several.
    /// SIGHUP reloads them
    #[arg(long, value_name = "FILE")]
    pub crl: Vec<PathBuf>,
    /// Let every client of the CA fetch every lineage and key, as the Go server did; the
    /// server warns about it at every start. Without it, [[access]] rules are required
    #[arg(long)]
    pub allow_all_clients: bool,
    /// Validate the configuration, TLS files, store and access policy, print a summary
    /// and exit: 0 when valid, 2 otherwise
    #[arg(long)]
    pub check_config: bool,
    /// With --check-config: print what the client certificate in FILE may fetch
    #[arg(long, value_name = "FILE", requires = "check_config")]
    pub explain: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ClientArgs {
    /// TOML configuration file [default: /etc/acme-dl/client.toml when it exists]
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Server URL, for example https://certs.example.net:8443 (required here or in the file)
    #[arg(long, value_name = "URL")]
    pub server: Option<String>,
    /// Directory that receives one directory per lineage [default: /etc/letsencrypt/live]
    #[arg(long, value_name = "DIR")]
    pub dest: Option<PathBuf>,
    /// Client certificate chain, PEM [default: tls/client.crt]
    #[arg(long, value_name = "FILE")]
    pub cert: Option<PathBuf>,
    /// Client private key, PEM: PKCS#1, SEC1 or PKCS#8 [default: tls/client.key]
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// CA bundle that the server certificate must chain to, PEM [default: tls/ca.crt]
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// Seconds allowed for the TCP connection and TLS handshake [default: 10]
    #[arg(long, value_name = "SECONDS")]
    pub connect_timeout: Option<u64>,
    /// Seconds allowed for each request and its response [default: 30]
    #[arg(long, value_name = "SECONDS")]
    pub request_timeout: Option<u64>,
    /// Seconds allowed for the whole run, retries and hooks included [default: 300]
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<u64>,
    /// Retries after a transient failure (refused, timed out, 503), with backoff [default: 3]
    #[arg(long, value_name = "N")]
    pub retries: Option<u32>,
    /// Wait a random delay up to DURATION first, for example 30m, so a fleet started by cron
    /// does not reach the server in the same second [default: 0]
    #[arg(long, value_name = "DURATION")]
    pub splay: Option<String>,
    /// Command run once after the run when any lineage changed, for example
    /// "systemctl reload nginx"
    #[arg(long, value_name = "COMMAND")]
    pub on_change: Option<String>,
    /// Command run before on_change, for example "nginx -t"; when it fails, the previous
    /// sets are restored and the run fails
    #[arg(long = "check-command", value_name = "COMMAND")]
    pub check_command: Option<String>,
    /// Seconds a hook may run before it is killed [default: 60]
    #[arg(long, value_name = "SECONDS")]
    pub hook_timeout: Option<u64>,
    /// Previous sets kept per lineage for --rollback [default: 2]
    #[arg(long, value_name = "N")]
    pub keep: Option<usize>,
    /// Days before the client certificate's end from which the client renews it through
    /// the server [default: the last third of its lifetime]
    #[arg(long, value_name = "DAYS")]
    pub renew_before_days: Option<u64>,
    /// Never renew the client certificate through the server; only warn as its end nears
    #[arg(long)]
    pub no_renew_identity: bool,
    /// Lock file that keeps two runs from installing at once [default: DEST/.acme-dl-client.lock]
    #[arg(long, value_name = "FILE")]
    pub lock_file: Option<PathBuf>,
    /// Exit 1 when a lineage was updated, 0 when nothing changed, as git diff --exit-code does
    #[arg(long)]
    pub exit_code: bool,
    /// Switch the named lineages back to their previous set, run their hooks, and exit
    #[arg(long)]
    pub rollback: bool,
    /// Check the installed sets and the client certificate as a Nagios plugin, without
    /// contacting the server or changing any file: print one status line and exit 0 (OK),
    /// 1 (WARNING), 2 (CRITICAL) or 3 (UNKNOWN)
    #[arg(long = "check", conflicts_with_all = ["rollback", "exit_code"])]
    pub monitor: bool,
    /// With --check: WARNING when a certificate has fewer than DAYS whole days left
    /// [default: 21]
    #[arg(long, value_name = "DAYS", requires = "monitor")]
    pub warn: Option<u32>,
    /// With --check: CRITICAL when a certificate has fewer than DAYS whole days left, at
    /// most --warn [default: 7]
    #[arg(long, value_name = "DAYS", requires = "monitor")]
    pub crit: Option<u32>,
    /// Lineages to fetch, or to check with --check, for example example.com [default:
    /// every lineage of the configuration file]
    #[arg(value_name = "LINEAGE")]
    pub lineages: Vec<String>,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Keep the generated PKI, store and configuration files in DIR (created when missing)
    #[arg(long, value_name = "DIR")]
    pub keep: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct PkiArgs {
    #[command(subcommand)]
    pub command: PkiCommand,
}

#[derive(Debug, Subcommand)]
pub enum PkiCommand {
    /// Create a root CA, an intermediate CA for client certificates, the trust bundle,
    /// the revocation lists and the index in a new directory
    Init(PkiInitArgs),
    /// Adopt an existing CA certificate and key, made with OpenSSL for example, as the root
    /// and create the client intermediate under it
    Import(PkiImportArgs),
    /// Issue a server certificate signed by the root
    Server(PkiServerArgs),
    /// Issue a client certificate signed by the client intermediate and print its
    /// [[access]] rule
    Client(PkiClientArgs),
    /// Revoke a certificate by serial, or every unexpired certificate of an identity, and
    /// write the revocation lists again
    Revoke(PkiRevokeArgs),
    /// Write the revocation lists again with a new CRL number and next update
    Crl(PkiCrlArgs),
    /// List every issued certificate with its state
    List(PkiListArgs),
}

/// Key algorithm of a generated key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KeyType {
    EcdsaP256,
    EcdsaP384,
    Ed25519,
    Rsa2048,
    Rsa3072,
    Rsa4096,
}

/// Reason code of a revocation (RFC 5280 section 5.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RevocationReason {
    Unspecified,
    KeyCompromise,
    AffiliationChanged,
    Superseded,
    CessationOfOperation,
    PrivilegeWithdrawn,
}

#[derive(Debug, Args)]
pub struct PkiDirArgs {
    /// Directory of the PKI, as made by pki init or pki import
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,
    /// File whose first line is the passphrase of the root key (ca.key), when it is
    /// encrypted
    #[arg(long, value_name = "FILE")]
    pub passphrase_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct PkiInitArgs {
    #[command(flatten)]
    pub pki: PkiDirArgs,
    /// Key algorithm of the CAs, and default of the certificates issued later
    #[arg(long, value_enum, default_value = "ecdsa-p256")]
    pub key_type: KeyType,
    /// Days the root and the client intermediate are valid
    #[arg(long, value_name = "N", default_value_t = 3650)]
    pub days: i64,
    /// Common name of the root CA; the client intermediate is named "NAME clients"
    #[arg(long, value_name = "NAME", default_value = "acme-dl fleet CA")]
    pub name: String,
}

#[derive(Debug, Args)]
pub struct PkiImportArgs {
    #[command(flatten)]
    pub pki: PkiDirArgs,
    /// Certificate of the existing CA, PEM
    #[arg(long, value_name = "FILE")]
    pub ca_cert: PathBuf,
    /// Key of the existing CA, PEM: PKCS#1, SEC1, PKCS#8, or encrypted PKCS#8 with
    /// --passphrase-file
    #[arg(long, value_name = "FILE")]
    pub ca_key: PathBuf,
    /// Key algorithm of the client intermediate, and default of the certificates issued
    /// later
    #[arg(long, value_enum, default_value = "ecdsa-p256")]
    pub key_type: KeyType,
    /// Days the client intermediate is valid, at most until the imported CA expires
    #[arg(long, value_name = "N", default_value_t = 3650)]
    pub days: i64,
}

#[derive(Debug, Args)]
pub struct PkiServerArgs {
    #[command(flatten)]
    pub pki: PkiDirArgs,
    /// Host name of the server: common name and first DNS name, or an IP address
    #[arg(long, value_name = "HOST")]
    pub name: String,
    /// Further IP address the certificate is valid for; repeat for several
    #[arg(long, value_name = "ADDR")]
    pub ip: Vec<std::net::IpAddr>,
    /// Further DNS name the certificate is valid for; repeat for several
    #[arg(long, value_name = "NAME")]
    pub dns: Vec<String>,
    /// Days the certificate is valid
    #[arg(long, value_name = "N", default_value_t = 365)]
    pub days: i64,
    /// Key algorithm [default: the one given to pki init]
    #[arg(long, value_enum)]
    pub key_type: Option<KeyType>,
    /// Directory receiving HOST.crt and HOST.key [default: DIR/servers]
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct PkiClientArgs {
    #[command(flatten)]
    pub pki: PkiDirArgs,
    /// Identity of the client: the certificate's common name, matched by cn:ID rules
    #[arg(long, value_name = "ID")]
    pub name: String,
    /// Lineage name or glob the printed [[access]] rule allows; repeat for several
    #[arg(long, value_name = "PATTERN")]
    pub lineage: Vec<String>,
    /// Print a rule that allows certificates only, never private keys
    #[arg(long)]
    pub certificates_only: bool,
    /// Days the certificate is valid
    #[arg(long, value_name = "N", default_value_t = 365)]
    pub days: i64,
    /// Key algorithm [default: the one given to pki init]
    #[arg(long, value_enum)]
    pub key_type: Option<KeyType>,
    /// Directory receiving ID.crt and ID.key [default: DIR/clients]
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct PkiRevokeArgs {
    #[command(flatten)]
    pub pki: PkiDirArgs,
    /// Serial number in hex (colons allowed), or an identity whose unexpired certificates
    /// are all revoked
    #[arg(value_name = "ID|SERIAL")]
    pub target: String,
    /// Reason code written into the revocation list
    #[arg(long, value_enum, default_value = "unspecified")]
    pub reason: RevocationReason,
    /// Revoke a serial the index does not list, issued by the root outside acme-dl, such
    /// as a certificate of an imported CA
    #[arg(long)]
    pub unindexed: bool,
    /// Days until the next update of the new revocation lists
    #[arg(long, value_name = "N", default_value_t = 30)]
    pub days: i64,
}

#[derive(Debug, Args)]
pub struct PkiCrlArgs {
    #[command(flatten)]
    pub pki: PkiDirArgs,
    /// Days until the next update of the new revocation lists
    #[arg(long, value_name = "N", default_value_t = 30)]
    pub days: i64,
}

#[derive(Debug, Args)]
pub struct PkiListArgs {
    /// Directory of the PKI, as made by pki init or pki import
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,
}
