//! Logging to the local syslog daemon, facility daemon, with stderr as a fallback.
//!
//! Events come from `tracing` macros with structured fields; this module formats them as
//! one greppable line (`message key=value ...`) and sends it to `/dev/log`. When that
//! socket cannot be reached, the program warns once on stderr and logs to stderr instead.

use std::fmt::{self, Write as _};
use std::io::Write as _;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::{Context, SubscriberExt};

/// The syslog socket of a Linux host.
pub const DEFAULT_SYSLOG_SOCKET: &str = "/dev/log";

/// Syslog facility daemon (3), shifted into the priority value as RFC 3164 defines it.
const FACILITY_DAEMON: u8 = 3 << 3;

/// True when every log line is also written to stderr.
static STDERR_LOGGING: AtomicBool = AtomicBool::new(false);

/// Returns true when log lines go to stderr, so error messages need not be repeated there.
pub fn logs_to_stderr() -> bool {
    STDERR_LOGGING.load(Ordering::Relaxed)
}

/// Log destinations and verbosity.
#[derive(Debug, Clone)]
pub struct LogOptions {
    /// Tag of every syslog line, for example `acme-dl`.
    pub tag: String,
    /// Path of the syslog socket; `None` disables syslog.
    pub syslog_socket: Option<PathBuf>,
    /// Also write every line to stderr.
    pub stderr: bool,
    /// Most verbose level that is logged.
    pub level: Level,
}

/// Installs the global logger. Call once, before the first event.
pub fn init(options: LogOptions) {
    let mut stderr = options.stderr;
    let syslog = match &options.syslog_socket {
        Some(path) => match connect(path) {
            Ok(socket) => Some(SyslogSocket {
                path: path.clone(),
                socket: Mutex::new(socket),
            }),
            Err(error) => {
                eprintln!(
                    "{}: warning: syslog socket {} cannot be reached ({error}); logging to \
                     stderr instead",
                    options.tag,
                    path.display()
                );
                stderr = true;
                None
            }
        },
        None => {
            stderr = true;
            None
        }
    };
    STDERR_LOGGING.store(stderr, Ordering::Relaxed);
    let layer = LineLayer {
        tag: options.tag,
        pid: std::process::id(),
        syslog,
        stderr,
        fallback_warned: AtomicBool::new(false),
    };
    let subscriber = tracing_subscriber::registry()
        .with(layer.with_filter(LevelFilter::from_level(options.level)));
    // A second call, as in unit tests that start several components, keeps the first logger.
    let _ = tracing::subscriber::set_global_default(subscriber);
}

fn connect(path: &Path) -> std::io::Result<UnixDatagram> {
    let socket = UnixDatagram::unbound()?;
    socket.connect(path)?;
    Ok(socket)
}

struct SyslogSocket {
    path: PathBuf,
    socket: Mutex<UnixDatagram>,
}

impl SyslogSocket {
    /// Sends one datagram, reconnecting once when the daemon was restarted.
    fn send(&self, datagram: &[u8]) -> std::io::Result<()> {
        let mut socket = self
            .socket
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if socket.send(datagram).is_ok() {
            return Ok(());
        }
        *socket = connect(&self.path)?;
        socket.send(datagram).map(|_| ())
    }
}

struct LineLayer {
    tag: String,
    pid: u32,
    syslog: Option<SyslogSocket>,
    stderr: bool,
    /// Set once the fallback to stderr has been announced.
    fallback_warned: AtomicBool,
}

impl<S: Subscriber> Layer<S> for LineLayer {
    fn on_event(&self, event: &Event<'_>, _context: Context<'_, S>) {
        let mut line = LineVisitor::default();
        event.record(&mut line);
        let text = line.finish();
        let level = *event.metadata().level();

        let mut sent = false;
        if let Some(syslog) = &self.syslog {
            let datagram = format!(
                "<{}>{} {}[{}]: {}",
                FACILITY_DAEMON | severity(level),
                syslog_timestamp(SystemTime::now()),
                self.tag,
                self.pid,
                text
            );
            sent = syslog.send(datagram.as_bytes()).is_ok();
        }
        if !sent && self.syslog.is_some() && !self.fallback_warned.swap(true, Ordering::Relaxed) {
            let _ = writeln!(
                std::io::stderr().lock(),
                "{}: warning: the syslog socket stopped accepting messages; logging to stderr \
                 until it does again",
                self.tag
            );
        }
        if self.stderr || !sent {
            // Stderr is unbuffered: one write per line keeps lines whole and costs one
            // system call instead of one per formatted piece.
            let line = format!("{}: {}: {}\n", self.tag, level_word(level), text);
            let _ = std::io::stderr().lock().write_all(line.as_bytes());
        }
    }
}

/// Returns the syslog severity of a tracing level (RFC 5424, table 2).
fn severity(level: Level) -> u8 {
    match level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        Level::DEBUG | Level::TRACE => 7,
    }
}

fn level_word(level: Level) -> &'static str {
    match level {
        Level::ERROR => "error",
        Level::WARN => "warning",
        Level::INFO => "info",
        Level::DEBUG => "debug",
        Level::TRACE => "trace",
    }
}

/// Formats the RFC 3164 timestamp (`Dec  4 15:04:05`) in UTC.
fn syslog_timestamp(now: SystemTime) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let seconds = now
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (_, month, day) = civil_from_days((seconds / 86_400) as i64);
    let time = seconds % 86_400;
    format!(
        "{} {:>2} {:02}:{:02}:{:02}",
        MONTHS[(month - 1) as usize],
        day,
        time / 3600,
        time / 60 % 60,
        time % 60
    )
}

/// Converts days since 1970-01-01 to (year, month, day), Howard Hinnant's algorithm.
pub(crate) fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Collects an event into `message key=value key="quoted value"`.
#[derive(Default)]
struct LineVisitor {
    message: String,
    fields: String,
}

impl LineVisitor {
    fn finish(mut self) -> String {
        if !self.fields.is_empty() {
            if !self.message.is_empty() {
                self.message.push(' ');
            }
            self.message.push_str(&self.fields);
        }
        self.message
    }

    fn push_field(&mut self, name: &str, value: &str) {
        if !self.fields.is_empty() {
            self.fields.push(' ');
        }
        self.fields.push_str(name);
        self.fields.push('=');
        if !value.is_empty() && value.chars().all(is_plain) {
            self.fields.push_str(value);
        } else {
            // Quoting escapes newlines and other control characters, so a field cannot
            // split the line or forge another entry.
            let _ = write!(self.fields, "{value:?}");
        }
    }
}

/// Escapes control characters, so that a message from a peer cannot split a log line.
fn escape_controls(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            escaped.extend(c.escape_default());
        } else {
            escaped.push(c);
        }
    }
    escaped
}

fn is_plain(c: char) -> bool {
    c.is_ascii_graphic() && c != '"' && c != '=' && c != '\\'
}

impl Visit for LineVisitor {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = escape_controls(value);
        } else {
            self.push_field(field.name(), value);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let text = format!("{value:?}");
        self.record_str(field, &text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamp_has_rfc3164_shape() {
        let time = UNIX_EPOCH + Duration::from_secs(1_796_397_262); // 2026-12-04 15:14:22 UTC
        assert_eq!(syslog_timestamp(time), "Dec  4 15:14:22");
    }

    #[test]
    fn civil_from_days_handles_leap_years() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(19_783), (2024, 3, 1));
    }

    #[test]
    fn fields_with_spaces_or_newlines_are_quoted() {
        let mut line = LineVisitor {
            message: "check".into(),
            ..LineVisitor::default()
        };
        line.push_field("lineage", "example.com");
        line.push_field("reason", "two words");
        line.push_field("client", "evil\nroot");
        line.push_field("empty", "");
        assert_eq!(
            line.finish(),
            r#"check lineage=example.com reason="two words" client="evil\nroot" empty="""#
        );
    }

    #[test]
    fn daemon_priorities_match_rfc3164() {
        assert_eq!(FACILITY_DAEMON | severity(Level::INFO), 30);
        assert_eq!(FACILITY_DAEMON | severity(Level::ERROR), 27);
        assert_eq!(FACILITY_DAEMON | severity(Level::WARN), 28);
    }
}
