//! The client: for each lineage, compare local hashes with the server's, fetch the set
//! when it is stale, check it against the announced hashes and install it.
//!
//! All lineages of a run share one connection. Each lineage succeeds or fails on its own,
//! and the run's exit status reports the first failure. Writing files is left to `install`.

mod connection;

use std::fmt;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use tracing::{error, info, warn};

use crate::config::ClientSettings;
use crate::install::{self, NewFile};
use crate::lineage::LineageName;
use crate::protocol::{
    CHECK_PATH, CheckRequest, CheckResponse, DOWNLOAD_PREFIX, MISSING_FILE_HASH, SET_FILES,
    SetFile, SetHashes, sha256_hex,
};
use crate::status::ExitStatus;
use crate::tls;

pub use connection::{Connection, ServerUrl};

/// Failure to synchronize a lineage.
#[derive(Debug)]
pub enum SyncError {
    /// Bad settings: URL, TLS files.
    Config(String),
    /// No trustworthy connection to the server: refused, timed out, or its certificate failed.
    Unreachable { server: String, reason: String },
    /// The server refused: an HTTP error status, or a TLS alert against our certificate.
    Rejected { reason: String },
    /// The downloaded files are not what the server announced.
    Verification { file: SetFile, reason: String },
    /// Reading or writing the local files failed.
    Local(String),
}

impl SyncError {
    /// Returns the exit status this failure maps to.
    pub fn exit_status(&self) -> ExitStatus {
        match self {
            SyncError::Config(_) => ExitStatus::Config,
            SyncError::Unreachable { .. } => ExitStatus::Unreachable,
            SyncError::Rejected { .. } => ExitStatus::Rejected,
            SyncError::Verification { .. } => ExitStatus::Verification,
            SyncError::Local(_) => ExitStatus::Install,
        }
    }
}

impl fmt::Display for SyncError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SyncError::Config(reason) | SyncError::Local(reason) => f.write_str(reason),
            SyncError::Unreachable { server, reason } => write!(f, "server {server}: {reason}"),
            SyncError::Rejected { reason } => write!(f, "rejected by the server: {reason}"),
            SyncError::Verification { file, reason } => {
                write!(f, "verification of {} failed: {reason}", file.file_name())
            }
        }
    }
}

impl std::error::Error for SyncError {}

/// Result of synchronizing one lineage.
#[derive(Debug)]
pub enum LineageOutcome {
    UpToDate,
    Updated { files: Vec<PathBuf> },
    Failed(SyncError),
}

/// The result of a run: one outcome per lineage, in the order requested.
#[derive(Debug)]
pub struct RunReport {
    pub outcomes: Vec<(LineageName, LineageOutcome)>,
}

impl RunReport {
    /// Returns 0 when every lineage is current or updated, else the first failure's status.
    pub fn exit_status(&self) -> ExitStatus {
        self.outcomes
            .iter()
            .find_map(|(_, outcome)| match outcome {
                LineageOutcome::Failed(error) => Some(error.exit_status()),
                _ => None,
            })
            .unwrap_or(ExitStatus::Success)
    }

    /// Returns true when any lineage was updated.
    pub fn changed(&self) -> bool {
        self.outcomes
            .iter()
            .any(|(_, outcome)| matches!(outcome, LineageOutcome::Updated { .. }))
    }

    /// Writes one line per lineage, for people running the client by hand.
    pub fn summary(&self) -> String {
        let mut text = String::new();
        for (lineage, outcome) in &self.outcomes {
            let line = match outcome {
                LineageOutcome::UpToDate => format!("{lineage}: up to date\n"),
                LineageOutcome::Updated { files } => {
                    let names: Vec<String> = files
                        .iter()
                        .filter_map(|path| path.file_name())
                        .map(|name| name.to_string_lossy().into_owned())
                        .collect();
                    format!("{lineage}: updated ({})\n", names.join(", "))
                }
                LineageOutcome::Failed(error) => format!("{lineage}: FAILED: {error}\n"),
            };
            text.push_str(&line);
        }
        text
    }
}

/// Runs the client with resolved settings and returns its exit status.
pub async fn run(settings: ClientSettings) -> ExitStatus {
    let report = match sync(&settings).await {
        Ok(report) => report,
        Err(failure) => {
            error!(error = %failure, "client run failed");
            eprintln!("acme-dl: error: {failure}");
            return failure.exit_status();
        }
    };
    if std::io::stdout().is_terminal() {
        print!("{}", report.summary());
    }
    report.exit_status()
}

/// Synchronizes every lineage of the settings over one connection.
pub async fn sync(settings: &ClientSettings) -> Result<RunReport, SyncError> {
    let url = ServerUrl::parse(&settings.server).map_err(SyncError::Config)?;
    let config =
        tls::client_config(&settings.tls).map_err(|error| SyncError::Config(error.to_string()))?;
    let mut connection = Connection::new(
        url,
        config,
        settings.connect_timeout,
        settings.request_timeout,
    );
    info!(
        server = %connection.url(),
        dest = %settings.dest.display(),
        lineages = settings.lineages.len(),
        "client run started"
    );

    let mut outcomes = Vec::with_capacity(settings.lineages.len());
    for lineage in &settings.lineages {
        let outcome = match sync_lineage(&mut connection, &settings.dest, lineage).await {
            Ok(outcome) => outcome,
            Err(failure) => {
                error!(lineage = %lineage, status = failure.exit_status().code(), error = %failure, "lineage failed");
                eprintln!("acme-dl: error: lineage {lineage}: {failure}");
                LineageOutcome::Failed(failure)
            }
        };
        outcomes.push((lineage.clone(), outcome));
    }
    let report = RunReport { outcomes };
    info!(
        changed = report.changed(),
        status = report.exit_status().code(),
        "client run finished"
    );
    Ok(report)
}

/// Checks one lineage and installs a new set when the server has one.
async fn sync_lineage(
    connection: &mut Connection,
    dest: &Path,
    lineage: &LineageName,
) -> Result<LineageOutcome, SyncError> {
    let dir = dest.join(lineage.as_str());
    let local = local_hashes(&dir)?;
    let request = CheckRequest {
        domain: lineage.to_string(),
        hashes: local.clone(),
    };
    let body = serde_json::to_vec(&request).map_err(|error| SyncError::Local(error.to_string()))?;
    let reply = connection.post_json(CHECK_PATH, body).await?;
    ensure_ok(&reply, "check")?;
    let answer: CheckResponse =
        serde_json::from_slice(&reply.body).map_err(|error| SyncError::Rejected {
            reason: format!("the check response is not valid JSON: {error}"),
        })?;
    if !answer.update_required {
        info!(lineage = %lineage, outcome = "up-to-date", "check");
        return Ok(LineageOutcome::UpToDate);
    }
    info!(lineage = %lineage, outcome = "update-required", "check");
    if answer.server_hashes.is_none() {
        warn!(lineage = %lineage, "server sent no hashes; downloads are installed unverified");
    }

    let mut files = Vec::with_capacity(SET_FILES.len() + 1);
    for file in SET_FILES {
        let path = format!("{DOWNLOAD_PREFIX}{lineage}/{}", file.file_name());
        let reply = connection.get(&path).await?;
        ensure_ok(&reply, file.file_name())?;
        if let Some(expected) = answer
            .server_hashes
            .as_ref()
            .and_then(|hashes| hashes.get(file))
        {
            let actual = sha256_hex(&reply.body);
            if actual != expected {
                return Err(SyncError::Verification {
                    file,
                    reason: format!(
                        "SHA-256 {actual} differs from {expected} announced by the check; the \
                         set probably changed on the server during the download, so the next \
                         run will fetch it again"
                    ),
                });
            }
        }
        if reply.body.is_empty() {
            return Err(SyncError::Verification {
                file,
                reason: "the file is empty".to_owned(),
            });
        }
        let mode = if file.is_private_key() {
            install::KEY_MODE
        } else {
            install::CERT_MODE
        };
        files.push(NewFile {
            name: file.file_name(),
            contents: reply.body.to_vec(),
            mode,
        });
    }
    if let Some(leaf) = files
        .first()
        .and_then(|fullchain| first_pem_block(&fullchain.contents))
    {
        files.push(NewFile {
            name: SetFile::Cert.file_name(),
            contents: leaf,
            mode: install::CERT_MODE,
        });
    }

    install::install_files(&dir, &files).map_err(|error| SyncError::Local(error.to_string()))?;
    let paths: Vec<PathBuf> = files.iter().map(|file| dir.join(file.name)).collect();
    for path in &paths {
        info!(lineage = %lineage, path = %path.display(), "file installed");
    }
    Ok(LineageOutcome::Updated { files: paths })
}

fn ensure_ok(reply: &connection::Reply, what: &str) -> Result<(), SyncError> {
    if reply.status == hyper::StatusCode::OK {
        return Ok(());
    }
    let body = String::from_utf8_lossy(&reply.body);
    let detail: String = body.trim().chars().take(200).collect();
    Err(SyncError::Rejected {
        reason: format!("{what}: HTTP {}: {detail}", reply.status),
    })
}

/// Hashes the local copies; a missing file hashes to 64 zeros, as the protocol requires.
fn local_hashes(dir: &Path) -> Result<SetHashes, SyncError> {
    let hash = |file: SetFile| -> Result<String, SyncError> {
        let path = dir.join(file.file_name());
        match std::fs::read(&path) {
            Ok(bytes) => Ok(sha256_hex(&bytes)),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                Ok(MISSING_FILE_HASH.to_owned())
            }
            Err(error) => Err(SyncError::Local(format!(
                "reading {}: {error}",
                path.display()
            ))),
        }
    };
    Ok(SetHashes {
        fullchain_hash: hash(SetFile::Fullchain)?,
        privkey_hash: hash(SetFile::Privkey)?,
        chain_hash: hash(SetFile::Chain)?,
    })
}

/// Returns the first PEM block of a file, with its trailing newline: the leaf of a full chain.
fn first_pem_block(pem: &[u8]) -> Option<Vec<u8>> {
    const BEGIN: &[u8] = b"-----BEGIN CERTIFICATE-----";
    const END: &[u8] = b"-----END CERTIFICATE-----";
    let start = find(pem, BEGIN)?;
    let end = start + find(&pem[start..], END)? + END.len();
    let mut block = pem[start..end].to_vec();
    block.push(b'\n');
    Some(block)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_hashes_use_zeros_for_missing_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("chain.pem"), b"abc").unwrap();
        let hashes = local_hashes(dir.path()).unwrap();
        assert_eq!(hashes.fullchain_hash, MISSING_FILE_HASH);
        assert_eq!(hashes.privkey_hash, MISSING_FILE_HASH);
        assert_eq!(hashes.chain_hash, sha256_hex(b"abc"));
    }

    #[test]
    fn first_block_of_full_chain_is_the_leaf() {
        let pem = b"-----BEGIN CERTIFICATE-----\nAAA\n-----END CERTIFICATE-----\n\
                    -----BEGIN CERTIFICATE-----\nBBB\n-----END CERTIFICATE-----\n";
        let leaf = first_pem_block(pem).unwrap();
        assert_eq!(
            leaf,
            b"-----BEGIN CERTIFICATE-----\nAAA\n-----END CERTIFICATE-----\n"
        );
        assert_eq!(first_pem_block(b"no pem here"), None);
    }

    #[test]
    fn report_status_is_first_failure() {
        let name = |n: &str| LineageName::parse(n).unwrap();
        let report = RunReport {
            outcomes: vec![
                (name("a.example"), LineageOutcome::UpToDate),
                (
                    name("b.example"),
                    LineageOutcome::Failed(SyncError::Rejected { reason: "x".into() }),
                ),
                (
                    name("c.example"),
                    LineageOutcome::Failed(SyncError::Local("y".into())),
                ),
            ],
        };
        assert_eq!(report.exit_status(), ExitStatus::Rejected);
        assert!(!report.changed());
    }
}
