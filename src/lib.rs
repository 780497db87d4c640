//! acme-dl distributes Certbot certificate sets from the Certbot host to a fleet over
//! mutual TLS, speaking the protocol of the deployed Go pair. ARCHITECTURE.md maps the
//! modules from the wire up to the binary.

pub mod ca;
pub mod cli;
pub mod client;
pub mod config;
pub mod demo;
pub mod identity;
pub mod install;
pub mod lineage;
pub mod logging;
pub mod pem;
pub mod pkcs12;
pub mod pki;
pub mod policy;
pub mod protocol;
pub mod server;
pub mod status;
pub mod store;
pub mod tls;
pub mod verify;

use std::io::IsTerminal;

use tracing::{Level, error};

use cli::{Cli, Command};
use status::ExitStatus;

/// Runs the command of a parsed command line and returns the exit status.
pub fn run(cli: Cli) -> ExitStatus {
    let (tag, interactive) = match &cli.command {
        Command::Server(_) => ("acme-dl-server", false),
        Command::Client(_) => ("acme-dl", std::io::stderr().is_terminal()),
        Command::Demo(_) => ("acme-dl-demo", false),
        Command::Pki(_) => ("acme-dl-pki", false),
    };
    let demo = matches!(cli.command, Command::Demo(_));
    // A monitoring check runs every few minutes and logs only a debug line. So it opens the
    // syslog socket only with --verbose, and a missing socket adds nothing to its output.
    let quiet_monitor =
        matches!(&cli.command, Command::Client(args) if args.monitor) && !cli.log.verbose;
    let syslog = !cli.log.no_syslog && !demo && !quiet_monitor;
    logging::init(logging::LogOptions {
        tag: tag.to_owned(),
        syslog_socket: syslog.then(|| cli.log.syslog_socket.clone()),
        // A client run by hand shows its log; cron and systemd read syslog.
        stderr: cli.log.log_stderr || (interactive && cli.log.verbose),
        level: match (cli.log.verbose, demo) {
            (true, _) => Level::DEBUG,
            // The demonstration narrates on stdout; its components log warnings only.
            (false, true) => Level::WARN,
            (false, false) => Level::INFO,
        },
    });

    // One thread: the server starts its own worker threads (see `Server::serve`), and the
    // client's requests are sequential, so a multi-threaded runtime would only add wake-ups
    // between threads.
    let mut builder = tokio::runtime::Builder::new_current_thread();
    let runtime = match builder.enable_all().build() {
        Ok(runtime) => runtime,
        Err(failure) => {
            eprintln!("acme-dl: error: starting the async runtime failed: {failure}");
            return ExitStatus::Config;
        }
    };
    match cli.command {
        Command::Server(args) => runtime.block_on(run_server(&args)),
        Command::Client(args) if args.monitor => client::monitor::run(&args),
        Command::Client(args) => match config::ClientSettings::resolve(&args) {
            Ok(settings) => runtime.block_on(client::run(settings)),
            Err(failure) => config_failure(&failure),
        },
        Command::Demo(args) => runtime.block_on(demo::run(args.keep.as_deref())),
        // The pki commands print their results and log what they issued and revoked.
        Command::Pki(args) => ca::run(&args.command),
    }
}

async fn run_server(args: &cli::ServerArgs) -> ExitStatus {
    let settings = match config::ServerSettings::resolve(args) {
        Ok(settings) => settings,
        Err(failure) => return config_failure(&failure),
    };
    // A reload only warns about these files, so that a broken PKI directory cannot keep a
    // new revocation list or access policy from applying.
    if let Some(Err(failure)) = settings
        .renewal
        .as_ref()
        .map(config::RenewalSettings::check_files)
    {
        return config_failure(&failure);
    }
    if args.check_config {
        return match server::check_config(&settings, args.explain.as_deref()) {
            Ok(summary) => {
                print!("{summary}");
                ExitStatus::Success
            }
            Err(failure) => {
                eprintln!("acme-dl: error: {failure}");
                ExitStatus::Config
            }
        };
    }
    let reload_args = args.clone();
    let resolve = move || {
        config::ServerSettings::resolve(&reload_args).map_err(|failure| failure.to_string())
    };
    match server::run(settings, resolve).await {
        Ok(()) => ExitStatus::Success,
        Err(failure) => {
            error!(error = %failure, "server failed to start");
            if !logging::logs_to_stderr() {
                eprintln!("acme-dl: error: {failure}");
            }
            ExitStatus::Config
        }
    }
}

fn config_failure(failure: &config::ConfigError) -> ExitStatus {
    error!(error = %failure, "invalid configuration");
    if !logging::logs_to_stderr() {
        eprintln!("acme-dl: error: {failure}");
    }
    ExitStatus::Config
}
