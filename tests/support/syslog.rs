//! Reads the messages that rsyslogd wrote to the test log file.
//!
//! `scripts/start-rsyslog` configures rsyslogd to write every message of facility daemon to
//! [`LOG_FILE`], one line per message such as `daemon.info acme-dl[1234]: message text`. The
//! file is shared by every test and every earlier run, so a test puts a unique marker from
//! [`unique_marker`] in what it logs and searches for that marker.

use std::fs;
use std::os::unix::fs::FileTypeExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::skip_test;

/// File that rsyslogd writes facility-daemon messages to.
pub const LOG_FILE: &str = "/var/log/acme-dl-test.log";

/// Unix datagram socket that syslog clients write to.
pub const SOCKET: &str = "/dev/log";

/// Maximum time between sending a message and finding it in [`LOG_FILE`]. In
/// `tests/syslog_log_file.rs` on a 2-core machine it took under 50 ms.
pub const WAIT_TIMEOUT: Duration = Duration::from_secs(5);

/// Returns whether rsyslogd looks ready: [`SOCKET`] is a socket and [`LOG_FILE`] exists.
///
/// Otherwise reports the test as skipped and returns `false`, or panics under `CI=true`.
pub fn require_rsyslog() -> bool {
    let socket_ready = fs::metadata(SOCKET).is_ok_and(|metadata| metadata.file_type().is_socket());
    if !socket_ready {
        skip_test(&format!(
            "{SOCKET} is not a socket, so no syslog daemon is running (scripts/start-rsyslog \
             starts rsyslogd)"
        ));
        return false;
    }
    if !Path::new(LOG_FILE).is_file() {
        skip_test(&format!(
            "{LOG_FILE} does not exist (scripts/start-rsyslog configures rsyslogd to write it)"
        ));
        return false;
    }
    true
}

/// Returns a marker for one test's messages, built from `prefix`, the process ID, the current
/// time in nanoseconds and a per-process counter, so other tests and earlier runs do not repeat it.
pub fn unique_marker(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos());
    format!("{prefix}-{}-{nanos}-{count}", std::process::id())
}

/// Waits up to [`WAIT_TIMEOUT`] until a line of [`LOG_FILE`] contains `marker`, and returns every
/// line that contains it.
///
/// Returns `None` when rsyslogd is not set up, as [`require_rsyslog`] decides. Panics when no such
/// line appears in time.
pub fn wait_for_lines(marker: &str) -> Option<Vec<String>> {
    wait_for_line_count(marker, 1)
}

/// Waits up to [`WAIT_TIMEOUT`] until at least `count` lines of [`LOG_FILE`] contain `marker`, and
/// returns every line that contains it, which may be more than `count`.
///
/// Returns `None` when rsyslogd is not set up, as [`require_rsyslog`] decides. Panics when fewer
/// lines appear in time.
pub fn wait_for_line_count(marker: &str, count: usize) -> Option<Vec<String>> {
    if !require_rsyslog() {
        return None;
    }
    let deadline = Instant::now() + WAIT_TIMEOUT;
    loop {
        let lines = read_lines_containing(marker);
        if lines.len() >= count {
            return Some(lines);
        }
        if Instant::now() >= deadline {
            panic!(
                "found {} of {count} expected lines containing {marker:?} in {LOG_FILE} after \
                 {WAIT_TIMEOUT:?}: {lines:#?}",
                lines.len()
            );
        }
        thread::sleep(Duration::from_millis(50));
    }
}

fn read_lines_containing(marker: &str) -> Vec<String> {
    let bytes =
        fs::read(LOG_FILE).unwrap_or_else(|error| panic!("failed to read {LOG_FILE}: {error}"));
    String::from_utf8_lossy(&bytes)
        .lines()
        .filter(|line| line.contains(marker))
        .map(str::to_owned)
        .collect()
}
