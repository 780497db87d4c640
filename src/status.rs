//! Exit statuses, documented in the README. Scripts and monitoring depend on these
//! numbers, so a status keeps its number once released.

use std::process::ExitCode;

/// Exit status of a run of acme-dl.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// Every requested lineage is current or was updated; the server stopped cleanly.
    Success,
    /// A lineage was updated and `--exit-code` was given.
    Updated,
    /// Bad flags or configuration: unreadable or invalid file, URL, certificate or key.
    Config,
    /// The server could not be reached: refused, timed out, or its certificate failed.
    Unreachable,
    /// The server rejected the request: an HTTP error (such as unknown lineage) or a TLS
    /// alert against the client's certificate.
    Rejected,
    /// A downloaded file differs from what the server announced, or is empty.
    Verification,
    /// Reading or writing local files failed; the old files are kept.
    Install,
    /// Files were updated but a hook failed, or a check command failed and the previous
    /// sets were restored.
    HookFailed,
    /// Another run held the lock for the whole run timeout.
    Locked,
    /// The result of `client --check`, whose codes are those of a Nagios plugin in
    /// place of the statuses above.
    Monitor(MonitorState),
}

/// States of a monitoring plugin, from the least to the most severe. The exit codes are
/// those of the Nagios plugin API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum MonitorState {
    Ok,
    Warning,
    Critical,
    /// The check itself could not run, for example on an invalid configuration.
    Unknown,
}

impl MonitorState {
    /// Returns the exit code: 0, 1, 2 or 3.
    pub fn code(self) -> u8 {
        match self {
            MonitorState::Ok => 0,
            MonitorState::Warning => 1,
            MonitorState::Critical => 2,
            MonitorState::Unknown => 3,
        }
    }

    /// Returns the name printed in the status line, such as `WARNING`.
    pub fn label(self) -> &'static str {
        match self {
            MonitorState::Ok => "OK",
            MonitorState::Warning => "WARNING",
            MonitorState::Critical => "CRITICAL",
            MonitorState::Unknown => "UNKNOWN",
        }
    }
}

impl ExitStatus {
    /// Returns the process exit code.
    pub fn code(self) -> u8 {
        match self {
            ExitStatus::Success => 0,
            ExitStatus::Updated => 1,
            ExitStatus::Config => 2,
            ExitStatus::Unreachable => 3,
            ExitStatus::Rejected => 4,
            ExitStatus::Verification => 5,
            ExitStatus::Install => 6,
            ExitStatus::HookFailed => 7,
            ExitStatus::Locked => 8,
            ExitStatus::Monitor(state) => state.code(),
        }
    }
}

impl From<ExitStatus> for ExitCode {
    fn from(status: ExitStatus) -> ExitCode {
        ExitCode::from(status.code())
    }
}
