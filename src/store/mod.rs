//! Read-only access to Certbot's store on the server: `live/<lineage>/<file>`.
//!
//! Certbot's `live/` files are relative links into `archive/`. They are followed, but a
//! file is served only when the path it finally opens lies inside the Certbot directory
//! and is a regular, non-empty file. Choosing which lineage a client may read is left to
//! the server.

use std::fmt;
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

mod snapshot;
mod watch;

pub use snapshot::{Current, Snapshot, SnapshotCache, warn_stale};

use crate::lineage::LineageName;
use crate::protocol::SetFile;

/// Largest store file read; Certbot's PEM files are a few kilobytes.
const MAX_FILE_SIZE: u64 = 1024 * 1024;

/// One file read from the store.
#[derive(Debug, Clone)]
pub struct StoreFile {
    pub bytes: Vec<u8>,
    pub modified: SystemTime,
    /// The path the file was finally read from, after following links.
    pub resolved: PathBuf,
}

/// Failure to serve a store file.
#[derive(Debug)]
pub enum StoreError {
    /// `live/<lineage>` does not exist.
    LineageNotFound { lineage: LineageName },
    /// The lineage exists but one of its files is missing or a dangling link.
    FileMissing {
        lineage: LineageName,
        file: SetFile,
        detail: String,
    },
    /// A link resolves outside the Certbot directory.
    OutsideStore {
        lineage: LineageName,
        file: SetFile,
        target: PathBuf,
    },
    /// The file is a directory, device, FIFO or socket, is empty, or is too large.
    Unusable {
        lineage: LineageName,
        file: SetFile,
        reason: String,
    },
    /// Reading failed.
    Io {
        lineage: LineageName,
        file: SetFile,
        error: io::Error,
    },
}

impl StoreError {
    /// Returns true when the lineage itself is unknown, as opposed to broken.
    pub fn is_not_found(&self) -> bool {
        matches!(self, StoreError::LineageNotFound { .. })
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::LineageNotFound { lineage } => {
                write!(f, "lineage {lineage} not found in the store")
            }
            StoreError::FileMissing {
                lineage,
                file,
                detail,
            } => {
                write!(
                    f,
                    "lineage {lineage}: {} is missing: {detail}",
                    file.file_name()
                )
            }
            StoreError::OutsideStore {
                lineage,
                file,
                target,
            } => write!(
                f,
                "lineage {lineage}: {} resolves to {}, outside archive/{lineage}/ and \
                 live/{lineage}/ of the Certbot directory; refusing to read it",
                file.file_name(),
                target.display()
            ),
            StoreError::Unusable {
                lineage,
                file,
                reason,
            } => {
                write!(
                    f,
                    "lineage {lineage}: {} is unusable: {reason}",
                    file.file_name()
                )
            }
            StoreError::Io {
                lineage,
                file,
                error,
            } => {
                write!(
                    f,
                    "lineage {lineage}: reading {} failed: {error}",
                    file.file_name()
                )
            }
        }
    }
}

impl std::error::Error for StoreError {}

/// Certbot's configuration directory, opened for reading.
#[derive(Debug, Clone)]
pub struct Store {
    /// The directory with every link resolved, the prefix every served file must have.
    root: PathBuf,
}

impl Store {
    /// Opens a Certbot configuration directory such as `/etc/letsencrypt`.
    pub fn open(certbot_dir: &Path) -> io::Result<Store> {
        let root = fs::canonicalize(certbot_dir).map_err(|error| {
            io::Error::new(
                error.kind(),
                format!("Certbot directory {}: {error}", certbot_dir.display()),
            )
        })?;
        if !root.join("live").is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "Certbot directory {} has no live/ directory; set --certbot-dir to the \
                     directory Certbot was run with (its --config-dir)",
                    root.display()
                ),
            ));
        }
        Ok(Store { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Lists the lineages of `live/`, sorted; entries that are not lineage names are skipped.
    pub fn lineages(&self) -> Vec<LineageName> {
        let mut names: Vec<LineageName> = fs::read_dir(self.root.join("live"))
            .into_iter()
            .flatten()
            .flatten()
            .filter(|entry| entry.path().is_dir())
            .filter_map(|entry| LineageName::parse(&entry.file_name().to_string_lossy()).ok())
            .collect();
        names.sort();
        names
    }

    /// Reads one file of a lineage, refusing anything that resolves outside the store.
    pub fn read_file(&self, lineage: &LineageName, file: SetFile) -> Result<StoreFile, StoreError> {
        let lineage_dir = self.root.join("live").join(lineage.as_str());
        if let Err(error) = fs::symlink_metadata(&lineage_dir) {
            return Err(if error.kind() == io::ErrorKind::NotFound {
                StoreError::LineageNotFound {
                    lineage: lineage.clone(),
                }
            } else {
                StoreError::Io {
                    lineage: lineage.clone(),
                    file,
                    error,
                }
            });
        }
        let path = lineage_dir.join(file.file_name());
        let io_error = |error| StoreError::Io {
            lineage: lineage.clone(),
            file,
            error,
        };

        // Stat before opening: opening a FIFO planted in the store would block.
        let metadata = match fs::metadata(&path) {
            Ok(metadata) => metadata,
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                return Err(StoreError::FileMissing {
                    lineage: lineage.clone(),
                    file,
                    detail: describe_missing(&path),
                });
            }
            Err(error) => return Err(io_error(error)),
        };
        self.check_usable(lineage, file, &metadata)?;

        let mut handle = open_nonblocking(&path).map_err(io_error)?;
        let resolved = opened_path(&handle).unwrap_or_else(|| path.clone());
        // Certbot's links point into the lineage's own archive; anything else, another
        // lineage's key or the ACME account key included, is refused.
        let archive = self.root.join("archive").join(lineage.as_str());
        if !resolved.starts_with(&archive) && !resolved.starts_with(&lineage_dir) {
            return Err(StoreError::OutsideStore {
                lineage: lineage.clone(),
                file,
                target: resolved,
            });
        }
        // The file may have been swapped between the stat and the open.
        let metadata = handle.metadata().map_err(io_error)?;
        self.check_usable(lineage, file, &metadata)?;

        let mut bytes = Vec::with_capacity(metadata.len() as usize);
        (&mut handle)
            .take(MAX_FILE_SIZE + 1)
            .read_to_end(&mut bytes)
            .map_err(io_error)?;
        if bytes.is_empty() || bytes.len() as u64 > MAX_FILE_SIZE {
            return Err(StoreError::Unusable {
                lineage: lineage.clone(),
                file,
                reason: format!("size changed while reading ({} bytes)", bytes.len()),
            });
        }
        let modified = metadata.modified().unwrap_or(SystemTime::UNIX_EPOCH);
        Ok(StoreFile {
            bytes,
            modified,
            resolved,
        })
    }

    fn check_usable(
        &self,
        lineage: &LineageName,
        file: SetFile,
        metadata: &fs::Metadata,
    ) -> Result<(), StoreError> {
        let reason = if !metadata.is_file() {
            Some("not a regular file".to_owned())
        } else if metadata.nlink() > 1 {
            // A hard link can bring a file from outside the store under a path inside it.
            Some(format!(
                "it has {} hard links; a store file must have one",
                metadata.nlink()
            ))
        } else if metadata.len() == 0 {
            Some("the file is empty".to_owned())
        } else if metadata.len() > MAX_FILE_SIZE {
            Some(format!(
                "{} bytes is more than the 1 MiB limit",
                metadata.len()
            ))
        } else {
            None
        };
        match reason {
            Some(reason) => Err(StoreError::Unusable {
                lineage: lineage.clone(),
                file,
                reason,
            }),
            None => Ok(()),
        }
    }
}

/// Opens a file for reading without blocking: a FIFO swapped in after the type check
/// would otherwise block the thread, and with it the server, until someone writes to it.
fn open_nonblocking(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open(path)
}

/// Returns the path the kernel opened, which no later link swap can change.
fn opened_path(file: &File) -> Option<PathBuf> {
    use std::os::fd::AsRawFd;
    fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd())).ok()
}

fn describe_missing(path: &Path) -> String {
    match fs::read_link(path) {
        Ok(target) => format!("dangling link to {}", target.display()),
        Err(_) => "no such file".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::sha256_hex;
    use std::os::unix::fs::symlink;

    fn lineage(name: &str) -> LineageName {
        LineageName::parse(name).unwrap()
    }

    /// Builds `archive/<name>/*1.pem` and relative links in `live/<name>/`, as Certbot does.
    fn certbot_tree(root: &Path, name: &str) {
        let archive = root.join("archive").join(name);
        let live = root.join("live").join(name);
        fs::create_dir_all(&archive).unwrap();
        fs::create_dir_all(&live).unwrap();
        for file in ["cert", "chain", "fullchain", "privkey"] {
            fs::write(
                archive.join(format!("{file}1.pem")),
                format!("{file} of {name}\n"),
            )
            .unwrap();
            symlink(
                format!("../../archive/{name}/{file}1.pem"),
                live.join(format!("{file}.pem")),
            )
            .unwrap();
        }
    }

    #[test]
    fn reads_files_through_relative_links() {
        let dir = tempfile::tempdir().unwrap();
        certbot_tree(dir.path(), "example.com");
        let store = Store::open(dir.path()).unwrap();
        let file = store
            .read_file(&lineage("example.com"), SetFile::Chain)
            .unwrap();
        assert_eq!(file.bytes, b"chain of example.com\n");
        assert!(file.resolved.ends_with("archive/example.com/chain1.pem"));
        let key = store
            .read_file(&lineage("example.com"), SetFile::Privkey)
            .unwrap();
        assert_eq!(
            sha256_hex(&key.bytes),
            sha256_hex(
                b"privkey of example.com
"
            )
        );
    }

    #[test]
    fn unknown_lineage_is_not_found() {
        let dir = tempfile::tempdir().unwrap();
        certbot_tree(dir.path(), "example.com");
        let store = Store::open(dir.path()).unwrap();
        let error = store
            .read_file(&lineage("other.example"), SetFile::Chain)
            .unwrap_err();
        assert!(error.is_not_found(), "{error}");
    }

    #[test]
    fn link_outside_store_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::NamedTempFile::new().unwrap();
        fs::write(outside.path(), "secret").unwrap();
        certbot_tree(dir.path(), "example.com");
        let chain = dir.path().join("live/example.com/chain.pem");
        fs::remove_file(&chain).unwrap();
        symlink(outside.path(), &chain).unwrap();
        let store = Store::open(dir.path()).unwrap();
        let error = store
            .read_file(&lineage("example.com"), SetFile::Chain)
            .unwrap_err();
        assert!(matches!(error, StoreError::OutsideStore { .. }), "{error}");
    }

    #[test]
    fn link_to_another_lineage_or_account_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        certbot_tree(dir.path(), "example.com");
        certbot_tree(dir.path(), "other.example");
        let key = dir.path().join("live/example.com/privkey.pem");
        fs::remove_file(&key).unwrap();
        symlink("../../archive/other.example/privkey1.pem", &key).unwrap();
        let store = Store::open(dir.path()).unwrap();
        let error = store
            .read_file(&lineage("example.com"), SetFile::Privkey)
            .unwrap_err();
        assert!(matches!(error, StoreError::OutsideStore { .. }), "{error}");

        fs::create_dir_all(dir.path().join("accounts/acme/private")).unwrap();
        fs::write(
            dir.path().join("accounts/acme/private/private_key.json"),
            "{}",
        )
        .unwrap();
        fs::remove_file(&key).unwrap();
        symlink("../../accounts/acme/private/private_key.json", &key).unwrap();
        let error = store
            .read_file(&lineage("example.com"), SetFile::Privkey)
            .unwrap_err();
        assert!(matches!(error, StoreError::OutsideStore { .. }), "{error}");
    }

    #[test]
    fn hard_linked_file_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        certbot_tree(dir.path(), "example.com");
        let outside = dir.path().join("outside.pem");
        fs::write(&outside, "secret").unwrap();
        let target = dir.path().join("archive/example.com/chain1.pem");
        fs::remove_file(&target).unwrap();
        fs::hard_link(&outside, &target).unwrap();
        let store = Store::open(dir.path()).unwrap();
        let error = store
            .read_file(&lineage("example.com"), SetFile::Chain)
            .unwrap_err();
        assert!(error.to_string().contains("hard links"), "{error}");
    }

    #[test]
    fn opening_a_fifo_does_not_block() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::RUSR | rustix::fs::Mode::WUSR,
            0,
        )
        .unwrap();
        let handle = open_nonblocking(&fifo).unwrap();
        assert!(!handle.metadata().unwrap().is_file());
    }

    #[test]
    fn dangling_link_is_named() {
        let dir = tempfile::tempdir().unwrap();
        certbot_tree(dir.path(), "example.com");
        fs::remove_file(dir.path().join("archive/example.com/privkey1.pem")).unwrap();
        let store = Store::open(dir.path()).unwrap();
        let error = store
            .read_file(&lineage("example.com"), SetFile::Privkey)
            .unwrap_err();
        assert!(
            error.to_string().contains("dangling link to ../../archive"),
            "{error}"
        );
    }

    #[test]
    fn empty_file_and_directory_are_unusable() {
        let dir = tempfile::tempdir().unwrap();
        certbot_tree(dir.path(), "example.com");
        fs::write(dir.path().join("archive/example.com/privkey1.pem"), "").unwrap();
        let store = Store::open(dir.path()).unwrap();
        let error = store
            .read_file(&lineage("example.com"), SetFile::Privkey)
            .unwrap_err();
        assert!(matches!(error, StoreError::Unusable { .. }), "{error}");

        fs::remove_file(dir.path().join("live/example.com/cert.pem")).unwrap();
        fs::create_dir(dir.path().join("live/example.com/cert.pem")).unwrap();
        let error = store
            .read_file(&lineage("example.com"), SetFile::Cert)
            .unwrap_err();
        assert!(matches!(error, StoreError::Unusable { .. }), "{error}");
    }

    #[test]
    fn missing_live_directory_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let error = Store::open(dir.path()).unwrap_err();
        assert!(error.to_string().contains("no live/ directory"), "{error}");
    }
}
