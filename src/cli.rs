//! Command-line definitions. Every flag of `server` and `client` has a twin key in the
//! TOML configuration file; `config` merges the two, flags winning.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

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
}

#[derive(Debug, Clone, Args)]
pub struct ServerArgs {
    /// TOML configuration file [default: /etc/acme-dl/server.toml when it exists]
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address and port to listen on, IPv4 or [IPv6] [default: 0.0.0.0:8443]
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Option<SocketAddr>,
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
    #[arg(long, value_name = "COMMAND")]
    pub check: Option<String>,
    /// Seconds a hook may run before it is killed [default: 60]
    #[arg(long, value_name = "SECONDS")]
    pub hook_timeout: Option<u64>,
    /// Previous sets kept per lineage for --rollback [default: 2]
    #[arg(long, value_name = "N")]
    pub keep: Option<usize>,
    /// Lock file that keeps two runs from installing at once [default: DEST/.acme-dl-client.lock]
    #[arg(long, value_name = "FILE")]
    pub lock_file: Option<PathBuf>,
    /// Exit 1 when a lineage was updated, 0 when nothing changed, as git diff --exit-code does
    #[arg(long)]
    pub exit_code: bool,
    /// Switch the named lineages back to their previous set, run their hooks, and exit
    #[arg(long)]
    pub rollback: bool,
    /// Lineages to fetch, for example example.com [default: every lineage of the
    /// configuration file]
    #[arg(value_name = "LINEAGE")]
    pub lineages: Vec<String>,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Keep the generated PKI, store and configuration files in DIR (created when missing)
    #[arg(long, value_name = "DIR")]
    pub keep: Option<PathBuf>,
}
