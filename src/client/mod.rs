//! The client: for each lineage, compare local hashes with the server's, fetch the set
//! when it is stale, verify it as a whole and install it. Then run the hooks.
//!
//! All lineages of a run share one connection. Each lineage succeeds or fails on its own.
//! Checking a set is left to `verify`, writing it to `install`, commands to `hooks`.

mod backoff;
mod connection;
mod hooks;
mod local;
mod lock;
pub mod monitor;
mod pipeline;
mod renewal;

use std::fmt;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use tracing::{error, info, warn};

use crate::config::{ClientSettings, LineageSettings};
use crate::install::{self, InstallOptions, NewFile};
use crate::lineage::LineageName;
use crate::protocol::{CHECK_PATH, CheckResponse, DOWNLOAD_PREFIX};
use crate::status::ExitStatus;
use crate::tls;
use crate::verify::{self, DownloadedSet};

pub use connection::{Connection, ServerUrl};
use hooks::HookContext;
use local::LocalSet;

/// Writes an error message on stderr, unless the log already goes there.
macro_rules! print_error {
    ($($argument:tt)*) => {
        if !crate::logging::logs_to_stderr() {
            eprintln!("acme-dl: error: {}", format!($($argument)*));
        }
    };
}

/// Failure to synchronize a lineage.
#[derive(Debug)]
pub enum SyncError {
    /// Bad settings: URL, TLS files.
    Config(String),
    /// No trustworthy connection to the server: refused, timed out, or its certificate failed.
    Unreachable { server: String, reason: String },
    /// The server's certificate is not trusted or not valid for the URL's host.
    Untrusted { server: String, reason: String },
    /// The server is saturated or restarting (503, 429); worth retrying later.
    Unavailable {
        reason: String,
        retry_after: Option<Duration>,
    },
    /// The server refused: an HTTP error status, or a TLS alert against our certificate.
    Rejected { reason: String },
    /// The downloaded set failed a check; nothing was installed.
    Verification(verify::VerifyError),
    /// Reading or writing the local files failed.
    Local(String),
}

impl SyncError {
    /// Returns the exit status this failure maps to.
    pub fn exit_status(&self) -> ExitStatus {
        match self {
            SyncError::Config(_) => ExitStatus::Config,
            SyncError::Unreachable { .. }
            | SyncError::Untrusted { .. }
            | SyncError::Unavailable { .. } => ExitStatus::Unreachable,
            SyncError::Rejected { .. } => ExitStatus::Rejected,
            SyncError::Verification(_) => ExitStatus::Verification,
            SyncError::Local(_) => ExitStatus::Install,
        }
    }

    /// Returns true for failures that a later attempt may not meet.
    fn is_transient(&self) -> bool {
        matches!(
            self,
            SyncError::Unreachable { .. } | SyncError::Unavailable { .. }
        )
    }
}

impl fmt::Display for SyncError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SyncError::Config(reason) | SyncError::Local(reason) => f.write_str(reason),
            SyncError::Unreachable { server, reason } => write!(f, "server {server}: {reason}"),
            SyncError::Untrusted { server, reason } => {
                write!(f, "server {server}: TLS handshake failed: {reason}")
            }
            SyncError::Unavailable { reason, .. } => write!(f, "server unavailable: {reason}"),
            SyncError::Rejected { reason } => write!(f, "rejected by the server: {reason}"),
            SyncError::Verification(failure) => {
                write!(f, "verification failed, nothing installed: {failure}")
            }
        }
    }
}

impl std::error::Error for SyncError {}

/// Result of synchronizing one lineage.
#[derive(Debug)]
pub enum LineageOutcome {
    UpToDate,
    Updated(Update),
    Failed(SyncError),
    /// Installed, then put back because a check command failed.
    Restored {
        command: String,
        reason: String,
    },
}

/// Record of an installed update.
#[derive(Debug, Clone)]
pub struct Update {
    pub dir: PathBuf,
    pub files: Vec<PathBuf>,
    pub serial: String,
    /// The version that was current before, for restoring it.
    previous: Option<PathBuf>,
    /// True when `--rollback` put an earlier set back, rather than a run installing one.
    rolled_back: bool,
}

/// Result of renewing the client's own certificate, when it was due.
#[derive(Debug)]
pub enum IdentityOutcome {
    Renewed(renewal::Renewed),
    Failed(SyncError),
}

/// The result of a run: one outcome per lineage, in the order requested.
#[derive(Debug)]
pub struct RunReport {
    pub outcomes: Vec<(LineageName, LineageOutcome)>,
    /// The first on_change command that failed, with its reason.
    pub hook_failure: Option<String>,
    /// The renewal of the client certificate, when one was due.
    pub identity: Option<IdentityOutcome>,
}

impl RunReport {
    /// Returns the run's status: the first failed lineage's, else a hook failure, else a
    /// failed renewal of the client certificate, else success (or `Updated` with
    /// `--exit-code` when something changed).
    pub fn exit_status(&self, exit_code: bool) -> ExitStatus {
        let first_failure = self.outcomes.iter().find_map(|(_, outcome)| match outcome {
            LineageOutcome::Failed(failure) => Some(failure.exit_status()),
            LineageOutcome::Restored { .. } => Some(ExitStatus::HookFailed),
            _ => None,
        });
        if let Some(status) = first_failure {
            return status;
        }
        if self.hook_failure.is_some() {
            return ExitStatus::HookFailed;
        }
        if let Some(IdentityOutcome::Failed(failure)) = &self.identity {
            return failure.exit_status();
        }
        if exit_code && self.changed() {
            return ExitStatus::Updated;
        }
        ExitStatus::Success
    }

    /// Returns the updated lineages with what was installed for each.
    fn updates(&self) -> Vec<(LineageName, Update)> {
        self.outcomes
            .iter()
            .filter_map(|(name, outcome)| match outcome {
                LineageOutcome::Updated(update) => Some((name.clone(), update.clone())),
                _ => None,
            })
            .collect()
    }

    /// Returns true when any lineage was updated and kept.
    pub fn changed(&self) -> bool {
        self.outcomes
            .iter()
            .any(|(_, outcome)| matches!(outcome, LineageOutcome::Updated(_)))
    }

    /// Writes one line per lineage, for people running the client by hand.
    pub fn summary(&self) -> String {
        let mut text = String::new();
        for (lineage, outcome) in &self.outcomes {
            let line = match outcome {
                LineageOutcome::UpToDate => format!("{lineage}: up to date\n"),
                LineageOutcome::Updated(update) => {
                    let names: Vec<String> = update
                        .files
                        .iter()
                        .filter_map(|path| path.file_name())
                        .map(|name| name.to_string_lossy().into_owned())
                        .collect();
                    let action = if update.rolled_back {
                        "rolled back to the previous set"
                    } else {
                        "updated"
                    };
                    format!(
                        "{lineage}: {action} ({}), serial {}\n",
                        names.join(", "),
                        update.serial
                    )
                }
                LineageOutcome::Failed(failure) => format!("{lineage}: FAILED: {failure}\n"),
                LineageOutcome::Restored { command, reason } => format!(
                    "{lineage}: RESTORED to the previous set because check {command:?} {reason}\n"
                ),
            };
            text.push_str(&line);
        }
        if let Some(failure) = &self.hook_failure {
            text.push_str(&format!("hook FAILED: {failure}\n"));
        }
        match &self.identity {
            Some(IdentityOutcome::Renewed(renewed)) => text.push_str(&format!(
                "client certificate: renewed, serial {}, valid until {}\n",
                renewed.serial,
                renewed.not_after.date()
            )),
            Some(IdentityOutcome::Failed(failure)) => {
                text.push_str(&format!("client certificate: renewal FAILED: {failure}\n"));
            }
            None => {}
        }
        text
    }
}

/// Runs the client with resolved settings and returns its exit status.
pub async fn run(settings: ClientSettings) -> ExitStatus {
    if settings.rollback {
        return rollback(&settings).await;
    }
    let started = Instant::now();
    if !settings.splay.is_zero() {
        let delay = backoff::random_below(settings.splay);
        info!(
            delay_ms = delay.as_millis() as u64,
            "waiting a random delay before the run (splay)"
        );
        tokio::time::sleep(delay).await;
    }
    let deadline = Instant::now() + settings.run_timeout;
    let _lock = match lock::acquire(&settings.lock_file, deadline).await {
        Ok(Some(lock)) => lock,
        Ok(None) => {
            error!(lock = %settings.lock_file.display(), "another run held the lock for the whole run timeout");
            print_error!(
                "another run holds the lock {}; nothing was done",
                settings.lock_file.display()
            );
            return ExitStatus::Locked;
        }
        Err(failure) => {
            error!(lock = %settings.lock_file.display(), error = %failure, "opening the lock file failed");
            print_error!(
                "opening the lock file {}: {failure}",
                settings.lock_file.display()
            );
            return ExitStatus::Install;
        }
    };

    let report = match sync_and_run_hooks(&settings, deadline).await {
        Ok(report) => report,
        Err(failure) => {
            error!(error = %failure, "client run failed");
            print_error!("{failure}");
            return failure.exit_status();
        }
    };
    let status = report.exit_status(settings.exit_code);
    info!(
        changed = report.changed(),
        status = status.code(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "client run finished"
    );
    if std::io::stdout().is_terminal() {
        print!("{}", report.summary());
    }
    status
}

/// Synchronizes every lineage, then runs the hooks of those that changed.
pub async fn sync_and_run_hooks(
    settings: &ClientSettings,
    deadline: Instant,
) -> Result<RunReport, SyncError> {
    let mut report = sync(settings, deadline).await?;
    run_hooks(settings, &mut report, deadline).await;
    Ok(report)
}

/// Synchronizes every lineage of the settings over one connection, without hooks.
pub async fn sync(settings: &ClientSettings, deadline: Instant) -> Result<RunReport, SyncError> {
    let url = ServerUrl::parse(&settings.server).map_err(SyncError::Config)?;
    renewal::finish_interrupted(&settings.tls)?;
    // An unreadable certificate is reported by the TLS set-up below.
    let identity = renewal::CurrentCertificate::read(&settings.tls.cert).ok();
    if let Some(current) = &identity {
        reject_expired(current, &settings.tls)?;
    }
    let config = tls::client_config(&settings.tls)
        .map_err(|failure| SyncError::Config(failure.to_string()))?;
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

    let options = InstallOptions {
        keep_previous: settings.keep_previous,
        ..InstallOptions::default()
    };
    // Every check goes out at once; each lineage below then takes its response, or sends
    // its check again when the pipeline did not bring one.
    // A set that cannot be read now fails again below, with its lineage's error.
    let mut scanner = install::Scanner::default();
    let mut locals: Vec<Option<LocalSet>> = settings
        .lineages
        .iter()
        .map(|lineage| LocalSet::read(lineage, &mut scanner).ok())
        .collect();
    drop(scanner);
    let pipelined: Vec<&[u8]> = locals
        .iter()
        .flatten()
        .map(|local| local.check_body.as_slice())
        .collect();
    connection.pipeline_checks(&pipelined).await;

    let mut outcomes = Vec::with_capacity(settings.lineages.len());
    for (lineage, local) in settings.lineages.iter().zip(locals.iter_mut()) {
        let options = InstallOptions {
            ownership: lineage.ownership,
            ..options
        };
        let outcome = match sync_with_retries(
            &mut connection,
            lineage,
            local.take(),
            &options,
            settings.retries,
            deadline,
        )
        .await
        {
            Ok(outcome) => outcome,
            Err(failure) => {
                log_failure(&lineage.name, &failure);
                LineageOutcome::Failed(failure)
            }
        };
        outcomes.push((lineage.name.clone(), outcome));
    }
    let identity = match identity {
        Some(current) => renew_if_due(&mut connection, settings, &current, &outcomes).await,
        None => None,
    };
    Ok(RunReport {
        outcomes,
        hook_failure: None,
        identity,
    })
}

/// Fails the run before connecting when the client certificate has expired: the server
/// would refuse the handshake, and such a certificate cannot renew itself.
fn reject_expired(
    current: &renewal::CurrentCertificate,
    tls: &tls::TlsFiles,
) -> Result<(), SyncError> {
    if current.not_after > time::OffsetDateTime::now_utc() {
        return Ok(());
    }
    Err(SyncError::Config(format!(
        "client certificate {} ({}, serial {}) expired on {}: the server refuses it, and an \
         expired certificate cannot renew itself. On the CA host run acme-dl pki client \
         --dir PKI_DIR --name {}, then install the new certificate and key as {} and {}",
        tls.cert.display(),
        current.common_name,
        current.serial,
        current.not_after.date(),
        current.common_name,
        tls.cert.display(),
        tls.key.display()
    )))
}

/// Renews the client certificate when it is in its renewal window, unless renewal is
/// off or the connection already failed for the lineages.
async fn renew_if_due(
    connection: &mut Connection,
    settings: &ClientSettings,
    current: &renewal::CurrentCertificate,
    outcomes: &[(LineageName, LineageOutcome)],
) -> Option<IdentityOutcome> {
    let now = time::OffsetDateTime::now_utc();
    if now < current.renew_from(&settings.identity_renewal) {
        return None;
    }
    let days_left = (current.not_after - now).whole_days();
    if !settings.identity_renewal.enabled {
        warn!(
            cert = %settings.tls.cert.display(),
            serial = %current.serial,
            not_after = %current.not_after.date(),
            days_left = days_left,
            "client certificate nears its end and renewal is off; issue a new one with acme-dl pki client"
        );
        return None;
    }
    let unreachable = outcomes.iter().any(|(_, outcome)| {
        matches!(
            outcome,
            LineageOutcome::Failed(SyncError::Unreachable { .. } | SyncError::Untrusted { .. })
        )
    });
    if unreachable {
        // The lineages' failure already names the cause; the next run renews.
        return None;
    }
    match renewal::renew(connection, &settings.tls, current).await {
        Ok(renewed) => {
            info!(
                cert = %settings.tls.cert.display(),
                previous_serial = %renewed.previous_serial,
                serial = %renewed.serial,
                not_after = %renewed.not_after.date(),
                "client certificate renewed"
            );
            Some(IdentityOutcome::Renewed(renewed))
        }
        Err(failure) => {
            error!(
                cert = %settings.tls.cert.display(),
                serial = %current.serial,
                not_after = %current.not_after.date(),
                days_left = days_left,
                status = failure.exit_status().code(),
                error = %failure,
                "client certificate renewal failed"
            );
            if !std::io::stdout().is_terminal() {
                print_error!("renewing the client certificate: {failure}");
            }
            Some(IdentityOutcome::Failed(failure))
        }
    }
}

fn log_failure(lineage: &LineageName, failure: &SyncError) {
    match failure {
        SyncError::Verification(check) => error!(
            lineage = %lineage,
            file = check.file.file_name(),
            check = ?check.check,
            error = %check.detail,
            "verification failed; nothing installed"
        ),
        _ => error!(
            lineage = %lineage,
            status = failure.exit_status().code(),
            error = %failure,
            "lineage failed"
        ),
    }
    // On a terminal the run's summary names the failure on stdout already.
    if !std::io::stdout().is_terminal() {
        print_error!("lineage {lineage}: {failure}");
    }
}

/// Retries a lineage after transient failures, with backoff, until `deadline`.
/// `local` is the lineage's installed set as read at the start of the run, used by the
/// first attempt; retries read it again.
async fn sync_with_retries(
    connection: &mut Connection,
    lineage: &LineageSettings,
    mut local: Option<LocalSet>,
    options: &InstallOptions,
    retries: u32,
    deadline: Instant,
) -> Result<LineageOutcome, SyncError> {
    let mut attempt = 0;
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let result = match tokio::time::timeout(
            remaining,
            sync_lineage(connection, lineage, local.take(), options),
        )
        .await
        {
            Ok(result) => result,
            Err(_) => {
                return Err(SyncError::Unreachable {
                    server: connection.url().to_string(),
                    reason: "the run timeout expired".to_owned(),
                });
            }
        };
        let failure = match result {
            Err(failure) if failure.is_transient() && attempt < retries => failure,
            other => return other,
        };
        let retry_after = match &failure {
            SyncError::Unavailable { retry_after, .. } => *retry_after,
            _ => None,
        };
        let delay = backoff::delay(attempt, retry_after);
        if Instant::now() + delay >= deadline {
            return Err(failure);
        }
        attempt += 1;
        warn!(
            lineage = %lineage.name,
            attempt = attempt,
            delay_ms = delay.as_millis() as u64,
            error = %failure,
            "transient failure; retrying"
        );
        tokio::time::sleep(delay).await;
    }
}

/// Checks one lineage and installs a new set when the server has one.
async fn sync_lineage(
    connection: &mut Connection,
    lineage: &LineageSettings,
    local: Option<LocalSet>,
    options: &InstallOptions,
) -> Result<LineageOutcome, SyncError> {
    let name = &lineage.name;
    let LocalSet {
        check_body,
        hashes,
        missing,
        pending_hooks,
    } = match local {
        Some(local) => local,
        None => LocalSet::read(lineage, &mut install::Scanner::default())?,
    };
    if let Some(missing) = missing {
        info!(lineage = %name, file = %missing, "configured file missing; fetching the set again");
    }
    let reply = connection.post_json(CHECK_PATH, check_body).await?;
    ensure_ok(&reply, "check")?;
    let answer: CheckResponse =
        serde_json::from_slice(&reply.body).map_err(|failure| SyncError::Rejected {
            reason: format!("the check response is not valid JSON: {failure}"),
        })?;
    // A lineage fetched without its key is current when its certificates are, whatever
    // key hash the server announces.
    let only_key_differs = lineage.privkey.is_none()
        && answer.server_hashes.as_ref().is_some_and(|server| {
            server.fullchain_hash == hashes.fullchain_hash && server.chain_hash == hashes.chain_hash
        });
    if !answer.update_required || only_key_differs {
        info!(lineage = %name, outcome = "up-to-date", "check");
        if let Some(version) = pending_hooks {
            warn!(lineage = %name, "the hooks of an earlier run did not finish; running them now");
            return Ok(LineageOutcome::Updated(Update {
                dir: lineage.dir.clone(),
                files: installed_files(lineage),
                serial: installed_serial(lineage),
                // A failing check keeps this set: there is no older one known to restore.
                previous: Some(version),
                rolled_back: false,
            }));
        }
        return Ok(LineageOutcome::UpToDate);
    }
    info!(lineage = %name, outcome = "update-required", "check");
    if answer.server_hashes.is_none() {
        warn!(lineage = %name, "server sent no hashes; the set is verified without them");
    }

    let mut downloaded = Vec::with_capacity(3);
    for file in crate::protocol::SET_FILES {
        if file == crate::protocol::SetFile::Privkey && lineage.privkey.is_none() {
            downloaded.push(None);
            continue;
        }
        let path = format!("{DOWNLOAD_PREFIX}{name}/{}", file.file_name());
        let reply = connection.get(&path).await?;
        ensure_ok(&reply, file.file_name())?;
        downloaded.push(Some(reply.body.to_vec()));
    }
    let [fullchain, privkey, chain] = <[Option<Vec<u8>>; 3]>::try_from(downloaded)
        .unwrap_or_else(|_| unreachable!("three files were handled"));
    let set = DownloadedSet {
        fullchain: fullchain.unwrap_or_default(),
        privkey,
        chain: chain.unwrap_or_default(),
    };
    let verified = verify::verify_set(
        name,
        &set,
        answer.server_hashes.as_ref(),
        &lineage.names,
        SystemTime::now(),
    )
    .map_err(SyncError::Verification)?;

    let files = set_files(lineage, &set, &verified)?;
    let installed = install::install_set(&lineage.dir, &files, options)
        .map_err(|failure| SyncError::Local(failure.to_string()))?;
    let paths: Vec<PathBuf> = files
        .iter()
        .map(|file| lineage.dir.join(&file.name))
        .collect();
    for path in &paths {
        info!(lineage = %name, path = %path.display(), "file installed");
    }
    install::set_hooks_pending(&lineage.dir, true);
    info!(
        lineage = %name,
        dir = %lineage.dir.display(),
        version = %installed.version.display(),
        serial = %verified.serial,
        not_after = %time::OffsetDateTime::from_unix_timestamp(verified.not_after)
            .map_or_else(|_| verified.not_after.to_string(), |date| date.date().to_string()),
        "set installed"
    );
    Ok(LineageOutcome::Updated(Update {
        dir: lineage.dir.clone(),
        files: paths,
        serial: verified.serial,
        previous: installed.previous,
        rolled_back: false,
    }))
}

/// Builds the files of a lineage from a verified set: the protocol files, the leaf and
/// the combined PEM when configured.
fn set_files(
    lineage: &LineageSettings,
    set: &DownloadedSet,
    verified: &verify::VerifiedSet,
) -> Result<Vec<NewFile>, SyncError> {
    let file = |name: &str, contents: &[u8], private: bool| NewFile {
        name: name.to_owned(),
        contents: contents.to_vec(),
        private,
    };
    let mut files = vec![
        file(&lineage.fullchain, &set.fullchain, false),
        file(&lineage.chain, &set.chain, false),
    ];
    let key = lineage.privkey.as_ref().zip(set.privkey.as_ref());
    if let Some((name, key)) = key {
        files.insert(1, file(name, key, true));
    }
    if let Some(cert) = &lineage.cert {
        files.push(file(cert, &verified.leaf_pem, false));
    }
    if let Some(combined) = &lineage.combined {
        let mut contents = set.fullchain.clone();
        if !contents.ends_with(b"\n") {
            contents.push(b'\n');
        }
        contents.extend_from_slice(key.map(|(_, key)| key.as_slice()).unwrap_or_default());
        files.push(file(combined, &contents, true));
    }
    if let Some((name, password_file)) = &lineage.pkcs12 {
        let password = std::fs::read_to_string(password_file).map_err(|failure| {
            SyncError::Config(format!(
                "reading the PKCS#12 password file {}: {failure}",
                password_file.display()
            ))
        })?;
        let password = password.lines().next().unwrap_or_default();
        let pfx = crate::pkcs12::build(
            &verified.certificates_der,
            verified.key_pkcs8_der.as_deref().unwrap_or_default(),
            password,
            lineage.name.as_str(),
        )
        .map_err(|failure| SyncError::Config(format!("building {name}: {failure}")))?;
        files.push(file(name, &pfx, true));
    }
    Ok(files)
}

fn ensure_ok(reply: &connection::Reply, what: &str) -> Result<(), SyncError> {
    if reply.status == hyper::StatusCode::OK {
        return Ok(());
    }
    let body = String::from_utf8_lossy(&reply.body);
    // The body comes from the server: control characters are escaped so that it cannot
    // move the cursor or forge a line on the operator's terminal.
    let detail: String = body
        .trim()
        .chars()
        .take(200)
        .flat_map(|c| {
            if c.is_control() {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect();
    let reason = format!("{what}: HTTP {}: {detail}", reply.status);
    if reply.status == hyper::StatusCode::SERVICE_UNAVAILABLE
        || reply.status == hyper::StatusCode::TOO_MANY_REQUESTS
    {
        return Err(SyncError::Unavailable {
            reason,
            retry_after: reply.retry_after,
        });
    }
    Err(SyncError::Rejected { reason })
}

/// Runs check commands, restoring the lineages whose check failed, then on_change commands.
async fn run_hooks(settings: &ClientSettings, report: &mut RunReport, deadline: Instant) {
    let hooks_of = |name: &LineageName| {
        settings
            .lineages
            .iter()
            .find(|lineage| &lineage.name == name)
            .map(|lineage| &lineage.hooks)
    };
    let checks = commands(&report.updates(), |name| {
        [
            hooks_of(name).and_then(|hooks| hooks.check.clone()),
            settings.hooks.check.clone(),
        ]
    });
    for (command, context, lineages) in checks {
        let Err(failure) = hooks::run(
            "check",
            &command,
            &context,
            hook_timeout(settings, deadline),
        )
        .await
        else {
            continue;
        };
        for (name, outcome) in report.outcomes.iter_mut() {
            let LineageOutcome::Updated(update) = outcome else {
                continue;
            };
            if !lineages.contains(name) {
                continue;
            }
            match install::restore(&update.dir, update.previous.as_deref()) {
                Ok(()) => {
                    warn!(lineage = %name, command = %command, "check failed; previous set restored")
                }
                Err(restore_failure) => {
                    error!(lineage = %name, error = %restore_failure, "restoring the previous set failed")
                }
            }
            print_error!("lineage {name}: check {command:?} {failure}; previous set restored");
            *outcome = LineageOutcome::Restored {
                command: command.clone(),
                reason: failure.to_string(),
            };
        }
    }

    run_on_change(settings, report, deadline).await;

    // The hooks had their run: a later run does not repeat them.
    for (name, outcome) in &report.outcomes {
        if matches!(
            outcome,
            LineageOutcome::Updated(_) | LineageOutcome::Restored { .. }
        ) && let Some(lineage) = settings
            .lineages
            .iter()
            .find(|lineage| &lineage.name == name)
        {
            install::set_hooks_pending(&lineage.dir, false);
        }
    }
}

/// Runs each on_change command of the updated lineages once, recording the first failure.
async fn run_on_change(settings: &ClientSettings, report: &mut RunReport, deadline: Instant) {
    let reloads = commands(&report.updates(), |name| {
        let own = settings
            .lineages
            .iter()
            .find(|lineage| &lineage.name == name)
            .and_then(|lineage| lineage.hooks.on_change.clone());
        [own, settings.hooks.on_change.clone()]
    });
    for (command, context, _) in reloads {
        if let Err(failure) = hooks::run(
            "on_change",
            &command,
            &context,
            hook_timeout(settings, deadline),
        )
        .await
        {
            print_error!("on_change {command:?} {failure}");
            report
                .hook_failure
                .get_or_insert(format!("{command:?} {failure}"));
        }
    }
}

/// Returns the time a hook may take: its own limit, cut to what is left of the run, but
/// at least a second, so a reload still gets a chance after a slow run.
fn hook_timeout(settings: &ClientSettings, deadline: Instant) -> Duration {
    let left = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_secs(1));
    settings.hook_timeout.min(left)
}

/// Groups changed lineages by command, keeping first-seen order, so each runs once.
fn commands<const N: usize>(
    changed: &[(LineageName, Update)],
    commands_of: impl Fn(&LineageName) -> [Option<String>; N],
) -> Vec<(String, HookContext, Vec<LineageName>)> {
    let mut grouped: Vec<(String, HookContext, Vec<LineageName>)> = Vec::new();
    for (name, update) in changed {
        for command in commands_of(name).into_iter().flatten() {
            let index = match grouped
                .iter()
                .position(|(existing, _, _)| *existing == command)
            {
                Some(index) => index,
                None => {
                    grouped.push((command, HookContext::default(), Vec::new()));
                    grouped.len() - 1
                }
            };
            let (_, context, lineages) = &mut grouped[index];
            if !lineages.contains(name) {
                lineages.push(name.clone());
                context.lineages.push(name.to_string());
                context.dirs.push(update.dir.clone());
                context.files.extend(update.files.iter().cloned());
            }
        }
    }
    grouped
}

/// Switches each named lineage back to its previous set and runs the hooks.
async fn rollback(settings: &ClientSettings) -> ExitStatus {
    let mut report = RunReport {
        outcomes: Vec::new(),
        hook_failure: None,
        identity: None,
    };
    for lineage in &settings.lineages {
        let outcome = match install::rollback(&lineage.dir) {
            Ok(version) => {
                info!(lineage = %lineage.name, version = %version.display(), "rolled back");
                LineageOutcome::Updated(Update {
                    dir: lineage.dir.clone(),
                    files: installed_files(lineage),
                    serial: installed_serial(lineage),
                    previous: install::current_version(&lineage.dir),
                    rolled_back: true,
                })
            }
            Err(failure) => {
                let failure = SyncError::Local(failure.to_string());
                log_failure(&lineage.name, &failure);
                LineageOutcome::Failed(failure)
            }
        };
        report.outcomes.push((lineage.name.clone(), outcome));
    }
    // The rolled-back set is checked and reloaded like a new one; a failing check keeps it.
    run_hooks(settings, &mut report, Instant::now() + settings.run_timeout).await;
    if std::io::stdout().is_terminal() {
        print!("{}", report.summary());
    }
    report.exit_status(false)
}

/// Returns the configured files of a lineage that exist at its path.
fn installed_files(lineage: &LineageSettings) -> Vec<PathBuf> {
    local::configured_names(lineage)
        .into_iter()
        .map(|name| lineage.dir.join(name))
        .filter(|path| Path::exists(path))
        .collect()
}

/// Returns the serial of the installed leaf, for the summary.
fn installed_serial(lineage: &LineageSettings) -> String {
    let bytes = std::fs::read(lineage.dir.join(&lineage.fullchain)).unwrap_or_default();
    crate::pem::parse(&bytes)
        .ok()
        .and_then(|blocks| blocks.into_iter().next())
        .map(|block| {
            crate::identity::Identity::from_der(&rustls::pki_types::CertificateDer::from(block.der))
                .serial
        })
        .unwrap_or_else(|| "unknown".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(dir: &str) -> Update {
        Update {
            dir: PathBuf::from(dir),
            files: vec![],
            serial: "01".into(),
            previous: None,
            rolled_back: false,
        }
    }

    #[test]
    fn summary_names_a_rollback() {
        let name = LineageName::parse("a.example").unwrap();
        let mut rolled_back = update("/x");
        rolled_back.rolled_back = true;
        let report = RunReport {
            outcomes: vec![(name, LineageOutcome::Updated(rolled_back))],
            hook_failure: None,
            identity: None,
        };
        let summary = report.summary();
        assert!(
            summary.contains("a.example: rolled back to the previous set"),
            "{summary}"
        );
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
            hook_failure: None,
            identity: None,
        };
        assert_eq!(report.exit_status(false), ExitStatus::Rejected);
        assert!(!report.changed());
    }

    #[test]
    fn exit_code_flag_reports_updates() {
        let name = LineageName::parse("a.example").unwrap();
        let mut report = RunReport {
            outcomes: vec![(name, LineageOutcome::Updated(update("/x")))],
            hook_failure: None,
            identity: None,
        };
        assert_eq!(report.exit_status(false), ExitStatus::Success);
        assert_eq!(report.exit_status(true), ExitStatus::Updated);
        report.identity = Some(IdentityOutcome::Failed(SyncError::Rejected {
            reason: "revoked".into(),
        }));
        assert_eq!(report.exit_status(true), ExitStatus::Rejected);
        report.hook_failure = Some("reload".into());
        assert_eq!(report.exit_status(true), ExitStatus::HookFailed);
    }

    #[test]
    fn each_command_runs_once_for_its_lineages() {
        let a = LineageName::parse("a.example").unwrap();
        let b = LineageName::parse("b.example").unwrap();
        let changed = vec![(a.clone(), update("/x/a")), (b.clone(), update("/x/b"))];
        let grouped = commands(&changed, |name| {
            let own = (name.as_str() == "b.example").then(|| "reload postfix".to_owned());
            [own, Some("reload nginx".to_owned())]
        });
        assert_eq!(grouped.len(), 2);
        assert_eq!(grouped[0].0, "reload nginx");
        assert_eq!(grouped[0].2, vec![a, b.clone()]);
        assert_eq!(grouped[1].0, "reload postfix");
        assert_eq!(grouped[1].2, vec![b]);
    }
}
