//! Installing downloaded files into a lineage directory on the client.
//!
//! Each file is written to a temporary file in the same directory, flushed to disk and
//! renamed over the old one, so a reader sees either the old or the new file and never
//! a partial one. The private key's temporary file is created with its final mode, so it
//! is never readable by others. Deciding what to install is left to `client`.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Mode of the private key file.
pub const KEY_MODE: u32 = 0o600;
/// Mode of certificate files.
pub const CERT_MODE: u32 = 0o644;
/// Mode of a lineage directory created by the client, as the deployed client creates it.
pub const DIR_MODE: u32 = 0o755;

/// A file to install: its name in the lineage directory, contents and mode.
#[derive(Debug)]
pub struct NewFile {
    pub name: &'static str,
    pub contents: Vec<u8>,
    pub mode: u32,
}

/// A failed install step, naming the path.
#[derive(Debug)]
pub struct InstallError {
    pub action: &'static str,
    pub path: PathBuf,
    pub error: io::Error,
}

impl std::fmt::Display for InstallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} failed: {}",
            self.action,
            self.path.display(),
            self.error
        )
    }
}

impl std::error::Error for InstallError {}

fn failed<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> InstallError + 'a {
    move |error| InstallError {
        action,
        path: path.to_owned(),
        error,
    }
}

/// Writes every file to a temporary file, then renames them all into `dir`.
///
/// A failure before the renames leaves the old files untouched and removes the temporary
/// files. An existing file's owner and group are given to its replacement.
pub fn install_files(dir: &Path, files: &[NewFile]) -> Result<(), InstallError> {
    DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
        .map_err(failed("creating directory", dir))?;

    let mut staged: Vec<(PathBuf, PathBuf)> = Vec::with_capacity(files.len());
    for file in files {
        let target = dir.join(file.name);
        match stage(dir, &target, file) {
            Ok(temporary) => staged.push((temporary, target)),
            Err(error) => {
                remove_all(&staged);
                return Err(error);
            }
        }
    }

    for (index, (temporary, target)) in staged.iter().enumerate() {
        if let Err(error) = fs::rename(temporary, target) {
            remove_all(&staged[index..]);
            return Err(InstallError {
                action: "renaming into",
                path: target.clone(),
                error,
            });
        }
    }
    File::open(dir)
        .and_then(|handle| handle.sync_all())
        .map_err(failed("syncing directory", dir))
}

/// Writes one temporary file next to `target` and returns its path.
fn stage(dir: &Path, target: &Path, file: &NewFile) -> Result<PathBuf, InstallError> {
    let temporary = dir.join(format!(".{}.acme-dl-{}.tmp", file.name, std::process::id()));
    // A leftover from a killed run with the same process id would make create_new fail.
    let _ = fs::remove_file(&temporary);

    // The mode applies at creation, before any byte exists; the umask can only narrow it.
    let mut handle = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(file.mode)
        .open(&temporary)
        .map_err(failed("creating", &temporary))?;
    let written = (|| {
        handle.set_permissions(fs::Permissions::from_mode(file.mode))?;
        if let Ok(old) = fs::metadata(target) {
            std::os::unix::fs::fchown(&handle, Some(old.uid()), Some(old.gid()))?;
            // chown clears no bits here, but a set-id bit never belongs on these files.
            handle.set_permissions(fs::Permissions::from_mode(file.mode))?;
        }
        handle.write_all(&file.contents)?;
        handle.sync_all()
    })();
    if let Err(error) = written {
        let _ = fs::remove_file(&temporary);
        return Err(InstallError {
            action: "writing",
            path: temporary,
            error,
        });
    }
    Ok(temporary)
}

fn remove_all(staged: &[(PathBuf, PathBuf)]) {
    for (temporary, _) in staged {
        let _ = fs::remove_file(temporary);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &'static str, contents: &str, mode: u32) -> NewFile {
        NewFile {
            name,
            contents: contents.as_bytes().to_vec(),
            mode,
        }
    }

    #[test]
    fn installs_files_with_modes() {
        let dir = tempfile::tempdir().unwrap();
        let lineage = dir.path().join("example.com");
        install_files(
            &lineage,
            &[
                file("privkey.pem", "key", KEY_MODE),
                file("fullchain.pem", "chain", CERT_MODE),
            ],
        )
        .unwrap();
        let key = fs::metadata(lineage.join("privkey.pem")).unwrap();
        assert_eq!(key.permissions().mode() & 0o7777, 0o600);
        let cert = fs::metadata(lineage.join("fullchain.pem")).unwrap();
        assert_eq!(cert.permissions().mode() & 0o7777, 0o644);
        let dir_mode = fs::metadata(&lineage).unwrap().permissions().mode() & 0o7777;
        assert_eq!(dir_mode, 0o755);
        assert_eq!(
            fs::read_to_string(lineage.join("privkey.pem")).unwrap(),
            "key"
        );
    }

    #[test]
    fn replaces_existing_files_and_leaves_no_temporaries() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("chain.pem"), "old").unwrap();
        install_files(dir.path(), &[file("chain.pem", "new", CERT_MODE)]).unwrap();
        assert_eq!(
            fs::read_to_string(dir.path().join("chain.pem")).unwrap(),
            "new"
        );
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("chain.pem")]);
    }

    #[test]
    fn failure_keeps_old_files() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("chain.pem"), "old").unwrap();
        // A directory in place of the second target makes its rename fail.
        fs::create_dir(dir.path().join("privkey.pem")).unwrap();
        fs::write(dir.path().join("privkey.pem/blocker"), "x").unwrap();
        let error = install_files(
            dir.path(),
            &[
                file("privkey.pem", "new key", KEY_MODE),
                file("chain.pem", "new", CERT_MODE),
            ],
        )
        .unwrap_err();
        assert!(error.to_string().contains("privkey.pem"), "{error}");
        assert_eq!(
            fs::read_to_string(dir.path().join("chain.pem")).unwrap(),
            "old"
        );
        let leftovers = fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".tmp")
            })
            .count();
        assert_eq!(leftovers, 0);
    }
}
