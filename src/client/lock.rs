//! The lock that keeps two client runs from installing at the same time.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use rustix::fs::{FlockOperation, flock};
use tracing::info;

/// How often a waiting run retries the lock.
const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// An exclusive lock on a file, released when dropped or when the process dies.
#[derive(Debug)]
pub struct RunLock {
    _file: File,
}

/// Takes the lock, waiting until `deadline` while another run holds it.
///
/// Returns `Ok(None)` when the deadline passed, and an error when the file cannot be opened.
pub async fn acquire(path: &Path, deadline: Instant) -> std::io::Result<Option<RunLock>> {
    if let Some(parent) = path
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
    {
        // Created 0755 whatever the umask: this is usually the destination directory.
        crate::install::create_dirs(parent).map_err(|failure| failure.error)?;
    }
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)?;
    let mut logged = false;
    loop {
        match flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => return Ok(Some(RunLock { _file: file })),
            Err(rustix::io::Errno::WOULDBLOCK) => {}
            Err(errno) => return Err(errno.into()),
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        if !logged {
            info!(lock = %path.display(), "lock held by another run; waiting");
            logged = true;
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn second_holder_waits_until_deadline() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.lock");
        let first = acquire(&path, Instant::now()).await.unwrap();
        assert!(first.is_some());
        let second = acquire(&path, Instant::now() + Duration::from_millis(300))
            .await
            .unwrap();
        assert!(second.is_none());
        drop(first);
        let third = acquire(&path, Instant::now()).await.unwrap();
        assert!(third.is_some());
    }
}
