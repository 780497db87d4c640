//! Running the operator's commands after a run: `check` before `on_change`.
//!
//! Each command runs once per run through `/bin/sh -c`, in its own process group so a
//! timeout kills everything it started. It receives the changed lineages and paths in
//! environment variables, never key material, and its output is logged line by line.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use tracing::{error, info, warn};

/// Most output lines logged per stream of a command; the rest are counted.
const MAX_LOGGED_LINES: usize = 50;

/// Facts about the run passed to a hook command.
#[derive(Debug, Clone, Default)]
pub struct HookContext {
    /// Lineages whose change the command reacts to.
    pub lineages: Vec<String>,
    /// Their installation directories.
    pub dirs: Vec<PathBuf>,
    /// Every installed file path, through the lineage directories.
    pub files: Vec<PathBuf>,
}

/// Failure of a hook command.
#[derive(Debug)]
pub enum HookError {
    Spawn(std::io::Error),
    Exit(std::process::ExitStatus),
    Timeout(Duration),
}

impl std::fmt::Display for HookError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HookError::Spawn(error) => write!(f, "starting /bin/sh failed: {error}"),
            HookError::Exit(status) => match (
                status.code(),
                std::os::unix::process::ExitStatusExt::signal(status),
            ) {
                (Some(code), _) => write!(f, "exited with status {code}"),
                (None, Some(signal)) => write!(f, "was killed by signal {signal}"),
                (None, None) => write!(f, "ended: {status}"),
            },
            HookError::Timeout(limit) => {
                write!(f, "timed out after {} s and was killed", limit.as_secs())
            }
        }
    }
}

/// Runs `command` with the context in its environment and waits at most `timeout`.
pub async fn run(
    kind: &str,
    command: &str,
    context: &HookContext,
    timeout: Duration,
) -> Result<(), HookError> {
    let join = |paths: &[PathBuf]| {
        paths
            .iter()
            .map(|path| path.display().to_string())
            .collect::<Vec<_>>()
            .join("\n")
    };
    info!(hook = kind, command = command, lineages = %context.lineages.join(" "), "running hook");
    let mut child = Command::new("/bin/sh")
        .arg("-c")
        .arg(command)
        .env("ACME_DL_CHANGED_LINEAGES", context.lineages.join(" "))
        .env("ACME_DL_CHANGED_DIRS", join(&context.dirs))
        .env("ACME_DL_CHANGED_FILES", join(&context.files))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(HookError::Spawn)?;

    let stdout = child
        .stdout
        .take()
        .map(|out| tokio::spawn(log_lines(kind.to_owned(), "stdout", out)));
    let stderr = child
        .stderr
        .take()
        .map(|err| tokio::spawn(log_lines(kind.to_owned(), "stderr", err)));
    let result = match tokio::time::timeout(timeout, child.wait()).await {
        Ok(Ok(status)) if status.success() => Ok(()),
        Ok(Ok(status)) => Err(HookError::Exit(status)),
        Ok(Err(error)) => Err(HookError::Spawn(error)),
        Err(_) => {
            if let Some(pid) = child
                .id()
                .and_then(|id| rustix::process::Pid::from_raw(id as i32))
            {
                let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
            }
            let _ = child.wait().await;
            Err(HookError::Timeout(timeout))
        }
    };
    // Output readers end when every process of the group has closed its pipes.
    for reader in [stdout, stderr].into_iter().flatten() {
        let _ = tokio::time::timeout(Duration::from_secs(1), reader).await;
    }
    match &result {
        Ok(()) => info!(hook = kind, command = command, "hook succeeded"),
        Err(failure) => error!(hook = kind, command = command, error = %failure, "hook failed"),
    }
    result
}

/// Maximum length of a logged output line, in bytes; the rest of a longer line is cut.
const MAX_LINE_BYTES: usize = 4096;

/// Logs a command's output line by line. Reading goes on to the end whatever the bytes
/// are, so a command never dies of a closed pipe because of what it printed.
async fn log_lines(kind: String, stream: &'static str, pipe: impl tokio::io::AsyncRead + Unpin) {
    use tokio::io::AsyncReadExt;
    let mut reader = BufReader::new(pipe);
    let mut line = Vec::new();
    let mut count = 0usize;
    loop {
        line.clear();
        // Read at most a line's worth at a time, so a huge line costs bounded memory.
        let mut limited = (&mut reader).take(MAX_LINE_BYTES as u64);
        match limited.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let complete = line.ends_with(b"\n");
        if !complete && line.len() >= MAX_LINE_BYTES {
            // Skip the rest of an over-long line, a bounded piece at a time.
            let mut rest = Vec::new();
            loop {
                rest.clear();
                let mut limited = (&mut reader).take(MAX_LINE_BYTES as u64);
                match limited.read_until(b'\n', &mut rest).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) if rest.ends_with(b"\n") => break,
                    Ok(_) => {}
                }
            }
        }
        count += 1;
        if count > MAX_LOGGED_LINES {
            continue;
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end_matches('\n');
        let suffix = if complete || line.len() < MAX_LINE_BYTES {
            ""
        } else {
            " [line cut]"
        };
        if stream == "stderr" {
            warn!(hook = %kind, stream = stream, "{text}{suffix}");
        } else {
            info!(hook = %kind, stream = stream, "{text}{suffix}");
        }
    }
    if count > MAX_LOGGED_LINES {
        info!(hook = %kind, stream = stream, omitted = count - MAX_LOGGED_LINES, "hook output cut");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context() -> HookContext {
        HookContext {
            lineages: vec!["a.example".into(), "b.example".into()],
            dirs: vec![PathBuf::from("/x/a.example")],
            files: vec![
                PathBuf::from("/x/a.example/fullchain.pem"),
                PathBuf::from("/x/a.example/privkey.pem"),
            ],
        }
    }

    #[tokio::test]
    async fn command_sees_environment() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("env");
        let command = format!(
            "printf '%s|%s' \"$ACME_DL_CHANGED_LINEAGES\" \"$ACME_DL_CHANGED_FILES\" > {}",
            out.display()
        );
        run("on_change", &command, &context(), Duration::from_secs(10))
            .await
            .unwrap();
        let text = std::fs::read_to_string(out).unwrap();
        assert_eq!(
            text,
            "a.example b.example|/x/a.example/fullchain.pem\n/x/a.example/privkey.pem"
        );
    }

    #[tokio::test]
    async fn odd_output_keeps_command_alive() {
        let command =
            "printf '\\377\\376\\n'; head -c 100000 /dev/zero | tr '\\0' x; echo; seq 1 20000";
        run("check", command, &context(), Duration::from_secs(20))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn failing_command_reports_status() {
        let error = run("check", "exit 3", &context(), Duration::from_secs(10))
            .await
            .unwrap_err();
        assert!(
            error.to_string().contains("exited with status 3"),
            "{error}"
        );
    }

    #[tokio::test]
    async fn slow_command_and_children_are_killed() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("survived");
        let command = format!("(sleep 2; touch {}) & sleep 30", marker.display());
        let started = std::time::Instant::now();
        let error = run(
            "on_change",
            &command,
            &context(),
            Duration::from_millis(300),
        )
        .await
        .unwrap_err();
        assert!(matches!(error, HookError::Timeout(_)), "{error}");
        assert!(started.elapsed() < Duration::from_secs(5));
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert!(!marker.exists(), "a child of the hook outlived the timeout");
    }
}
