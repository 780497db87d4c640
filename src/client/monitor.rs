//! `acme-dl client --check`: a Nagios plugin that checks the installed sets and the
//! client certificate from local files alone.
//!
//! It never contacts the server, takes no lock and opens every file read-only, so it may
//! run every few minutes, also while a normal run installs. The checks of a set are those
//! of `verify`; finding the current version of a lineage is left to `install`.

use std::cmp::Reverse;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::SystemTime;

use tracing::debug;

use super::renewal::CurrentCertificate;
use crate::cli::ClientArgs;
use crate::config::{ClientSettings, LineageSettings};
use crate::install;
use crate::status::{ExitStatus, MonitorState};
use crate::tls::{self, TlsFiles};
use crate::verify::{self, DownloadedSet};

/// Days left below which a certificate is WARNING when `--warn` is not given.
pub const DEFAULT_WARN_DAYS: u32 = 21;
/// Days left below which a certificate is CRITICAL when `--crit` is not given.
pub const DEFAULT_CRIT_DAYS: u32 = 7;

/// First word of the status line, which names the service in a monitoring system's view.
const PLUGIN_NAME: &str = "ACME-DL";
/// Name of the client certificate's item. It contains a space, which no lineage name can,
/// so the two never collide in the status line or the performance data.
const CLIENT_CERTIFICATE: &str = "client certificate";
const SECONDS_PER_DAY: i64 = 86_400;

/// Whole days left below which a certificate is WARNING or CRITICAL.
#[derive(Debug, Clone, Copy)]
struct Thresholds {
    warn_days: i64,
    crit_days: i64,
}

impl Thresholds {
    fn from_args(args: &ClientArgs) -> Result<Thresholds, String> {
        let warn = args.warn.unwrap_or(DEFAULT_WARN_DAYS);
        let crit = args.crit.unwrap_or(DEFAULT_CRIT_DAYS);
        for (flag, days) in [("--warn", warn), ("--crit", crit)] {
            if days == 0 {
                return Err(format!(
                    "invalid {flag} 0: expected a number of days of at least 1"
                ));
            }
        }
        if crit > warn {
            return Err(format!(
                "invalid thresholds: --crit {crit} is greater than --warn {warn}; pass a --crit \
                 at most as large as --warn"
            ));
        }
        Ok(Thresholds {
            warn_days: i64::from(warn),
            crit_days: i64::from(crit),
        })
    }
}

/// The state of one lineage or of the client certificate.
#[derive(Debug)]
struct Item {
    name: String,
    state: MonitorState,
    /// Text after the name in the status line, such as `62 days left`.
    summary: String,
    /// Whole days until the certificate's end, negative once it has ended. `None` when the
    /// certificate could not be read or verified.
    days_left: Option<i64>,
    /// Line of the long output, with paths, serial and dates.
    detail: String,
}

/// A reason why an item is CRITICAL before its dates could be judged.
#[derive(Debug)]
struct Problem {
    summary: String,
    detail: String,
}

impl Item {
    fn broken(name: &str, problem: Problem) -> Item {
        Item {
            name: name.to_owned(),
            state: MonitorState::Critical,
            summary: problem.summary,
            days_left: None,
            detail: format!("{name}: {}", problem.detail),
        }
    }

    /// Judges a certificate valid from `not_before` to `not_after` (seconds since the Unix
    /// epoch) at `now`.
    fn dated(
        name: &str,
        not_before: i64,
        not_after: i64,
        thresholds: Thresholds,
        now: i64,
        description: String,
    ) -> Item {
        let days_left = (not_after - now).div_euclid(SECONDS_PER_DAY);
        let end = date(not_after);
        let (state, summary) = if now < not_before {
            let start = tls::format_time(not_before.max(0) as u64);
            (MonitorState::Critical, format!("not valid before {start}"))
        } else if now > not_after {
            (MonitorState::Critical, format!("expired on {end}"))
        } else if days_left < thresholds.crit_days {
            (MonitorState::Critical, expires_in(days_left, &end))
        } else if days_left < thresholds.warn_days {
            (MonitorState::Warning, expires_in(days_left, &end))
        } else {
            (MonitorState::Ok, format!("{} left", days(days_left)))
        };
        Item {
            name: name.to_owned(),
            state,
            summary,
            days_left: Some(days_left),
            detail: format!(
                "{name}: {description}, valid from {} to {}",
                tls::format_time(not_before.max(0) as u64),
                tls::format_time(not_after.max(0) as u64)
            ),
        }
    }
}

/// Runs the check, prints the plugin output on stdout and returns its state as the exit
/// status. Only a debug line is logged, since monitoring runs it every few minutes.
pub fn run(args: &ClientArgs) -> ExitStatus {
    let (state, output) = check(args, SystemTime::now());
    print!("{output}");
    debug!(
        state = state.label(),
        status = output.lines().next().unwrap_or_default(),
        "monitor check finished"
    );
    ExitStatus::Monitor(state)
}

/// Checks every lineage of the run that `args` describe, and the client certificate, at
/// `now`. Returns the worst state and the complete plugin output.
fn check(args: &ClientArgs, now: SystemTime) -> (MonitorState, String) {
    let thresholds = match Thresholds::from_args(args) {
        Ok(thresholds) => thresholds,
        Err(reason) => return unknown(&reason),
    };
    // The same resolution as a normal run: a configuration that run would reject is
    // UNKNOWN here, even in a setting the check does not use, such as the server URL.
    let settings = match ClientSettings::resolve(args) {
        Ok(settings) => settings,
        Err(failure) => return unknown(&format!("invalid configuration: {failure}")),
    };
    let now = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |since| since.as_secs() as i64);

    let mut items: Vec<Item> = settings
        .lineages
        .iter()
        .map(|lineage| check_lineage(lineage, thresholds, now))
        .collect();
    items.push(check_client_certificate(&settings.tls, thresholds, now));
    // Worst first: by state, then fewest days left, with unreadable sets before both.
    items.sort_by_key(|item| (Reverse(item.state), item.days_left.unwrap_or(i64::MIN)));

    let state = items
        .iter()
        .map(|item| item.state)
        .max()
        .unwrap_or(MonitorState::Ok);
    (state, render(state, &items, thresholds))
}

fn unknown(reason: &str) -> (MonitorState, String) {
    let state = MonitorState::Unknown;
    let line = format!("{PLUGIN_NAME} {} - {}\n", state.label(), one_line(reason));
    (state, line)
}

/// Formats the status line, its performance data and one long-output line per item.
///
/// Performance data follows the Nagios plugin guidelines: `'NAME'=DAYS;WARN:;CRIT:;;`.
/// The value is in whole days and has no unit, since the guidelines define none for days.
/// A threshold `21:` raises an alert for values below 21, which is the rule of the status.
fn render(state: MonitorState, items: &[Item], thresholds: Thresholds) -> String {
    let entry = |item: &Item| format!("{} {}", item.name, item.summary);
    let problems: Vec<String> = items
        .iter()
        .filter(|item| item.state != MonitorState::Ok)
        .map(entry)
        .collect();
    let healthy: Vec<String> = items
        .iter()
        .filter(|item| item.state == MonitorState::Ok)
        .map(entry)
        .collect();
    let mut text = problems.join("; ");
    if !problems.is_empty() && !healthy.is_empty() {
        text.push_str("; ");
    }
    text.push_str(&healthy.join(", "));

    // Lineage names are DNS names, so no label contains a quote that would need doubling.
    let performance: Vec<String> = items
        .iter()
        .filter_map(|item| {
            let days_left = item.days_left?;
            Some(format!(
                "'{}'={days_left};{}:;{}:;;",
                item.name, thresholds.warn_days, thresholds.crit_days
            ))
        })
        .collect();

    let mut output = format!("{PLUGIN_NAME} {} - {}", state.label(), one_line(&text));
    if !performance.is_empty() {
        output.push_str(" | ");
        output.push_str(&performance.join(" "));
    }
    output.push('\n');
    for item in items {
        output.push_str(&one_line(&item.detail));
        output.push('\n');
    }
    output
}

fn check_lineage(lineage: &LineageSettings, thresholds: Thresholds, now: i64) -> Item {
    let name = lineage.name.as_str();
    let installed = match read_installed(lineage) {
        Ok(installed) => installed,
        Err(problem) => return Item::broken(name, problem),
    };
    let verified = verify::verify_installed(
        &lineage.name,
        &installed.set,
        installed.cert.as_deref(),
        &lineage.names,
    );
    match verified {
        Ok(verified) => Item::dated(
            name,
            verified.not_before,
            verified.not_after,
            thresholds,
            now,
            format!("serial {}, in {}", verified.serial, installed.dir.display()),
        ),
        Err(failure) => Item::broken(
            name,
            Problem {
                summary: format!("invalid set: {failure}"),
                detail: format!("invalid set in {}: {failure}", installed.dir.display()),
            },
        ),
    }
}

/// The files of a lineage as installed.
#[derive(Debug)]
struct InstalledSet {
    /// The version directory read, or the lineage directory when no acme-dl version is
    /// current (a directory left by the Go client).
    dir: PathBuf,
    set: DownloadedSet,
    /// The leaf alone, when the lineage installs it and it exists.
    cert: Option<Vec<u8>>,
}

/// Reads the set the lineage path links to. The link is resolved once, so every file comes
/// from one version even while a run switches it. When a file vanished because a run
/// pruned that version meanwhile, the set is read once more from the new current version.
fn read_installed(lineage: &LineageSettings) -> Result<InstalledSet, Problem> {
    let version = install::current_version(&lineage.dir);
    let first = read_version(lineage, version.as_deref());
    if first.is_err() {
        let current = install::current_version(&lineage.dir);
        if current != version {
            return read_version(lineage, current.as_deref());
        }
    }
    first
}

fn read_version(
    lineage: &LineageSettings,
    version: Option<&Path>,
) -> Result<InstalledSet, Problem> {
    if version.is_none() && !lineage.dir.exists() {
        return Err(Problem {
            summary: "not installed".to_owned(),
            detail: format!("{} not found", lineage.dir.display()),
        });
    }
    let dir = version.unwrap_or(&lineage.dir);
    let set = DownloadedSet {
        fullchain: read_required(dir, &lineage.fullchain)?,
        privkey: match &lineage.privkey {
            Some(name) => Some(read_required(dir, name)?),
            None => None,
        },
        chain: read_required(dir, &lineage.chain)?,
    };
    // A directory left by the Go client lacks cert.pem and the other outputs of acme-dl,
    // and a normal run leaves it so until the next renewal. A version that acme-dl
    // installed has every configured file.
    let cert = match &lineage.cert {
        Some(name) if version.is_some() => Some(read_required(dir, name)?),
        Some(name) => read_file(dir, name)?,
        None => None,
    };
    if version.is_some() {
        // NOTE: only the presence of these outputs is checked, not their contents.
        let outputs = lineage.combined.iter();
        for name in outputs.chain(lineage.pkcs12.iter().map(|(name, _)| name)) {
            if !dir.join(name).is_file() {
                return Err(missing(dir, name));
            }
        }
    }
    Ok(InstalledSet {
        dir: dir.to_owned(),
        set,
        cert,
    })
}

fn read_required(dir: &Path, name: &str) -> Result<Vec<u8>, Problem> {
    read_file(dir, name)?.ok_or_else(|| missing(dir, name))
}

/// Reads one file of a set; `None` when it does not exist.
fn read_file(dir: &Path, name: &str) -> Result<Option<Vec<u8>>, Problem> {
    let path = dir.join(name);
    match super::local::read_path(&path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(failure) if failure.kind() == ErrorKind::NotFound => Ok(None),
        Err(failure) => {
            let mut detail = format!("reading {} failed: {failure}", path.display());
            if failure.kind() == ErrorKind::PermissionDenied {
                detail.push_str(
                    "; the check reads the private key to match it with the certificate, so \
                     run it as the files' owner, or give their group read access with group \
                     and key_mode in the lineage's table",
                );
            }
            Err(Problem {
                summary: format!("{name} unreadable: {failure}"),
                detail,
            })
        }
    }
}

fn missing(dir: &Path, name: &str) -> Problem {
    Problem {
        summary: format!("{name} missing"),
        detail: format!("{} not found", dir.join(name).display()),
    }
}

/// Judges the client's own certificate: when it expires, or its key or the CA bundle
/// cannot be loaded, every run fails before it fetches anything.
fn check_client_certificate(files: &TlsFiles, thresholds: Thresholds, now: i64) -> Item {
    let invalid = |reason: String| Problem {
        summary: format!("invalid: {reason}"),
        detail: reason,
    };
    let current = match CurrentCertificate::read(&files.cert) {
        Ok(current) => current,
        Err(reason) => return Item::broken(CLIENT_CERTIFICATE, invalid(reason)),
    };
    if let Err(failure) = tls::client_config(files) {
        return Item::broken(CLIENT_CERTIFICATE, invalid(failure.to_string()));
    }
    Item::dated(
        CLIENT_CERTIFICATE,
        current.not_before.unix_timestamp(),
        current.not_after.unix_timestamp(),
        thresholds,
        now,
        format!(
            "{}, serial {}, in {}",
            current.common_name,
            current.serial,
            files.cert.display()
        ),
    )
}

fn expires_in(days_left: i64, end: &str) -> String {
    match days_left {
        0 => format!("expires in less than a day ({end})"),
        _ => format!("expires in {} ({end})", days(days_left)),
    }
}

fn days(count: i64) -> String {
    match count {
        1 => "1 day".to_owned(),
        _ => format!("{count} days"),
    }
}

/// Returns the UTC date of a time in seconds since the Unix epoch, such as `2026-12-07`.
fn date(seconds: i64) -> String {
    let time = tls::format_time(seconds.max(0) as u64);
    time.split(' ').next().unwrap_or_default().to_owned()
}

/// Keeps a message on one line and out of the performance data, which starts at `|`.
fn one_line(text: &str) -> String {
    text.replace(['\n', '\r'], " ").replace('|', "/")
}

/// Reports a command-line error. Under `client --check` it prints an UNKNOWN status line
/// and returns 3, so a monitoring system shows a broken check command as such and not as
/// CRITICAL. Otherwise clap prints the error and exits as usual: 2, or 0 for `--help`.
pub fn usage_error(error: clap::Error) -> ExitCode {
    let monitoring = std::env::args_os().skip(1).any(|arg| arg == "--check");
    if !monitoring || !error.use_stderr() {
        error.exit();
    }
    let rendered = error.render().to_string();
    let first = rendered.lines().next().unwrap_or_default();
    let reason = first.strip_prefix("error: ").unwrap_or(first);
    println!(
        "{PLUGIN_NAME} {} - invalid arguments: {}",
        MonitorState::Unknown.label(),
        one_line(reason)
    );
    eprint!("{rendered}");
    ExitCode::from(MonitorState::Unknown.code())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn thresholds() -> Thresholds {
        Thresholds {
            warn_days: 21,
            crit_days: 7,
        }
    }

    fn item_with_days_left(days: i64, now: i64) -> Item {
        let not_after = now + days * SECONDS_PER_DAY + 3600;
        Item::dated(
            "a.example",
            now - 3600,
            not_after,
            thresholds(),
            now,
            String::new(),
        )
    }

    #[test]
    fn days_left_below_threshold_raises_state() {
        let now = 1_800_000_000;
        for (days, expected) in [
            (62, MonitorState::Ok),
            (21, MonitorState::Ok),
            (20, MonitorState::Warning),
            (7, MonitorState::Warning),
            (6, MonitorState::Critical),
            (0, MonitorState::Critical),
        ] {
            let item = item_with_days_left(days, now);
            assert_eq!(item.state, expected, "{days} days left");
            assert_eq!(item.days_left, Some(days), "{days} days left");
        }
    }

    #[test]
    fn expired_and_future_certificates_are_critical() {
        let now = 1_800_000_000;
        let expired = Item::dated(
            "a.example",
            now - 90 * SECONDS_PER_DAY,
            now - 1,
            thresholds(),
            now,
            String::new(),
        );
        assert_eq!(expired.state, MonitorState::Critical);
        assert!(
            expired.summary.starts_with("expired on "),
            "{}",
            expired.summary
        );
        assert_eq!(expired.days_left, Some(-1));

        let future = Item::dated(
            "a.example",
            now + 60,
            now + 90 * SECONDS_PER_DAY,
            thresholds(),
            now,
            String::new(),
        );
        assert_eq!(future.state, MonitorState::Critical);
        assert!(
            future.summary.starts_with("not valid before "),
            "{}",
            future.summary
        );
    }

    #[test]
    fn status_line_lists_problems_first_with_performance_data() {
        let now = 1_800_000_000;
        let mut items = vec![item_with_days_left(62, now), item_with_days_left(3, now)];
        items[0].name = "b.example".to_owned();
        items.sort_by_key(|item| (Reverse(item.state), item.days_left.unwrap_or(i64::MIN)));
        let output = render(MonitorState::Critical, &items, thresholds());
        let first = output.lines().next().unwrap();
        assert!(
            first.starts_with("ACME-DL CRITICAL - a.example expires in 3 days ("),
            "{first}"
        );
        assert!(first.contains("); b.example 62 days left | "), "{first}");
        assert!(
            first.ends_with("| 'a.example'=3;21:;7:;; 'b.example'=62;21:;7:;;"),
            "{first}"
        );
        assert_eq!(output.lines().count(), 3, "{output}");
    }

    #[test]
    fn messages_stay_out_of_performance_data() {
        assert_eq!(one_line("a|b\nc"), "a/b c");
    }
}
