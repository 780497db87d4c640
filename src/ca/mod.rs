//! `acme-dl pki`: the fleet's private CA. A root signs server certificates and an
//! intermediate dedicated to client certificates; an index records everything issued, and
//! revocation lists are generated from it. Certificate generation itself is `crate::pki`.
//!
//! One file per command group: `init` (init and import), `issue` (server and client),
//! `crl` (revoke and crl), `list`, and `renew`, which the server runs for a client;
//! `files`, `keys`, `certs` and `index` are shared.

/// Prints a line on stdout, ignoring a closed pipe: `pki list | head` must not panic, and
/// the files are written before anything is printed.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

/// Prints text on stdout without a line end, ignoring a closed pipe like `say!`.
macro_rules! say_raw {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stdout().lock(), $($arg)*);
    }};
}

mod certs;
mod crl;
mod files;
mod index;
mod init;
mod issue;
mod keys;
mod list;
mod renew;

use std::fmt;
use std::path::Path;

pub use keys::encode_key as encode_private_key;
pub use renew::{RenewalError, RenewalRequest, Renewed, renew};

use crate::cli::PkiCommand;
use crate::status::ExitStatus;

/// A failed pki command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaError {
    /// A flag value, an input file or the state of the PKI directory is wrong: exit 2.
    Invalid(String),
    /// Writing the PKI directory or an output directory failed: exit 6.
    Io(String),
}

impl CaError {
    fn io(action: &str, path: &Path, error: &std::io::Error) -> CaError {
        CaError::Io(format!("{action} {}: {error}", path.display()))
    }

    fn status(&self) -> ExitStatus {
        match self {
            CaError::Invalid(_) => ExitStatus::Config,
            CaError::Io(_) => ExitStatus::Install,
        }
    }
}

impl fmt::Display for CaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CaError::Invalid(message) | CaError::Io(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for CaError {}

impl From<crate::pki::PkiError> for CaError {
    fn from(error: crate::pki::PkiError) -> CaError {
        CaError::Invalid(error.to_string())
    }
}

/// Runs a pki command, prints its result on stdout or its error on stderr, logs what it
/// issued, revoked and wrote, and returns the exit status.
pub fn run(command: &PkiCommand) -> ExitStatus {
    let result = match command {
        PkiCommand::Init(args) => init::init(args),
        PkiCommand::Import(args) => init::import(args),
        PkiCommand::Server(args) => issue::server(args),
        PkiCommand::Client(args) => issue::client(args),
        PkiCommand::Revoke(args) => crl::revoke(args),
        PkiCommand::Crl(args) => crl::regenerate(args),
        PkiCommand::List(args) => list::list(args),
    };
    match result {
        Ok(()) => ExitStatus::Success,
        Err(error) => {
            tracing::error!(error = %error, "pki command failed");
            if !crate::logging::logs_to_stderr() {
                eprintln!("acme-dl: error: {error}");
            }
            error.status()
        }
    }
}
