//! The PKI directory on disk: its file names, the lock that serializes commands, and
//! writes that leave either the old or the new file, never a partial one.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::CaError;

/// Mode of the PKI directory and of the default output directories.
pub const DIR_MODE: u32 = 0o700;
/// Mode of every private key file.
pub const KEY_MODE: u32 = 0o600;
/// Mode of certificates, the trust bundle, the revocation lists and the index.
pub const PUBLIC_MODE: u32 = 0o644;

/// Paths of the files in a PKI directory.
#[derive(Debug, Clone)]
pub struct Layout {
    pub dir: PathBuf,
}

impl Layout {
    pub fn new(dir: &Path) -> Layout {
        Layout {
            dir: dir.to_owned(),
        }
    }

    pub fn root_cert(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    pub fn root_key(&self) -> PathBuf {
        self.dir.join("ca.key")
    }

    pub fn client_ca_cert(&self) -> PathBuf {
        self.dir.join("client-ca.crt")
    }

    pub fn client_ca_key(&self) -> PathBuf {
        self.dir.join("client-ca.key")
    }

    /// Root and client intermediate: the server's `ca` setting.
    pub fn client_trust(&self) -> PathBuf {
        self.dir.join("client-trust.pem")
    }

    /// Returns the path of `crl.pem`, one revocation list per CA and the server's `crl`
    /// setting.
    pub fn crl(&self) -> PathBuf {
        self.dir.join("crl.pem")
    }

    pub fn index(&self) -> PathBuf {
        self.dir.join("index.json")
    }

    fn lock(&self) -> PathBuf {
        self.dir.join(".lock")
    }

    pub fn default_server_out(&self) -> PathBuf {
        self.dir.join("servers")
    }

    pub fn default_client_out(&self) -> PathBuf {
        self.dir.join("clients")
    }

    /// Fails unless the directory contains an index, which `pki init` and `pki import` write
    /// last.
    pub fn require_existing(&self) -> Result<(), CaError> {
        let index = self.index();
        match std::fs::metadata(&index) {
            Ok(metadata) if metadata.is_file() => Ok(()),
            Ok(_) => Err(CaError::Invalid(format!(
                "{} is not a regular file; the PKI directory {} is damaged",
                index.display(),
                self.dir.display()
            ))),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                Err(CaError::Invalid(format!(
                    "{} is not a PKI directory: {} not found; create one with acme-dl pki init",
                    self.dir.display(),
                    index.display()
                )))
            }
            Err(error) => Err(CaError::Invalid(format!(
                "reading {} failed: {error}; run the command as a user that can read the PKI \
                 directory",
                index.display()
            ))),
        }
    }
}

/// An exclusive lock on a PKI directory, held until dropped, so two commands cannot
/// interleave their reads and writes of the index.
#[derive(Debug)]
pub struct DirLock {
    _file: File,
}

impl DirLock {
    /// Waits for and takes the lock of `layout`'s directory.
    pub fn acquire(layout: &Layout) -> Result<DirLock, CaError> {
        let path = layout.lock();
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(KEY_MODE)
            .open(&path)
            .map_err(|error| CaError::io("opening the lock file", &path, &error))?;
        rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive)
            .map_err(|error| CaError::io("locking", &path, &error.into()))?;
        Ok(DirLock { _file: file })
    }
}

/// Creates `dir` and its missing parents, the last one with mode 0700, and sets 0700 on
/// it when it already exists.
pub fn create_private_dir(dir: &Path) -> Result<(), CaError> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
        .map_err(|error| CaError::io("creating directory", dir, &error))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(DIR_MODE))
        .map_err(|error| CaError::io("setting mode 0700 on", dir, &error))
}

/// Writes `contents` to `path` atomically with `mode`: a new file beside it, created with
/// O_EXCL and its final mode before any byte is written, flushed to disk, then renamed
/// over `path`. A reader sees the old file or the new one.
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<(), CaError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let temporary = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = write_new(&temporary, contents, mode).and_then(|()| {
        std::fs::rename(&temporary, path).map_err(|error| CaError::io("renaming to", path, &error))
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&temporary);
        return result;
    }
    sync_dir(dir)
}

/// Writes a file that must not exist yet, created with O_EXCL and `mode`.
pub fn write_new(path: &Path, contents: &[u8], mode: u32) -> Result<(), CaError> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|error| CaError::io("creating", path, &error))?;
    // The umask may have cleared bits of `mode`, such as the 0644 of a certificate.
    file.set_permissions(std::fs::Permissions::from_mode(mode))
        .and_then(|()| file.write_all(contents))
        .and_then(|()| file.sync_all())
        .map_err(|error| CaError::io("writing", path, &error))
}

fn sync_dir(dir: &Path) -> Result<(), CaError> {
    File::open(dir)
        .and_then(|directory| directory.sync_all())
        .map_err(|error| CaError::io("flushing directory", dir, &error))
}

/// Reads a file the operator gave or the PKI holds, naming it in the error.
pub fn read_text(what: &str, path: &Path) -> Result<String, CaError> {
    std::fs::read_to_string(path)
        .map_err(|error| CaError::Invalid(format!("reading {what} {}: {error}", path.display())))
}
