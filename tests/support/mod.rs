//! Helpers shared by the integration tests, which include them with `mod support;`.
//!
//! `certbot` runs a real Certbot against a local Pebble ACME server, and `syslog` reads what
//! rsyslogd wrote to the test log file. Each helper prints a reason and lets the test return early
//! when a program it needs is missing, except under `CI=true`, where it panics instead so that CI
//! never passes by skipping. `scripts/test` installs and starts everything that CI needs.

// Each test binary uses only some of these helpers.
#![allow(dead_code)]

pub mod certbot;
pub mod harness;
pub mod syslog;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

/// Returns whether the tests run in CI, which `CI=true` in the environment marks.
pub fn is_ci() -> bool {
    std::env::var("CI").is_ok_and(|value| value == "true")
}

/// Reports that the current test is skipped because of `reason`, or panics under `CI=true`.
///
/// `reason` should say what is missing and which script provides it. The message goes straight to
/// the process's standard error, which the test harness does not capture, so it shows up in
/// `cargo test` output even when the test passes.
pub fn skip_test(reason: &str) {
    if is_ci() {
        panic!("{reason}, and tests must not be skipped under CI=true");
    }
    let thread = std::thread::current();
    let test_name = thread.name().unwrap_or("test");
    print_uncaptured(&format!("skipped {test_name}: {reason}"));
}

/// Writes one line to standard error even while the test harness captures test output.
pub fn print_uncaptured(line: &str) {
    // Ignoring a failed write is fine because the line is information only.
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// Returns the path of the executable `name` in a directory of `PATH`, or `None`.
pub fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|directory| directory.join(name))
        .find(|candidate| {
            candidate.metadata().is_ok_and(|metadata| {
                metadata.is_file() && metadata.permissions().mode() & 0o111 != 0
            })
        })
}

/// Returns the path of the executable `name` on `PATH`, or reports the test as skipped with
/// [`skip_test`] and returns `None`. Panics under `CI=true` when `name` is missing.
pub fn require_program(name: &str) -> Option<PathBuf> {
    let program = find_program(name);
    if program.is_none() {
        skip_test(&format!(
            "{name} not found on PATH (scripts/install-test-deps installs it)"
        ));
    }
    program
}
