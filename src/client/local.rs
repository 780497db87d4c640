//! The installed set of a lineage as the client reads it before the check: the hashes
//! of the installed files, a configured file that is missing, and hooks an earlier run
//! left pending. Leftovers of an interrupted install are removed on the way.
//!
//! Each installed file is read once per run. Which directories are listed is left to
//! `install::Scanner`.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use crate::config::LineageSettings;
use crate::install::{self, ScannedLineage, Scanner};
use crate::protocol::{CheckRequest, MISSING_FILE_HASH, SetHashes, sha256_hex};

use super::SyncError;

/// Largest local file hashed; certificate files are a few kilobytes.
const MAX_LOCAL_FILE: u64 = 1024 * 1024;

/// A lineage's installed set, read at the start of a run.
#[derive(Debug)]
pub(super) struct LocalSet {
    /// Body of the lineage's check request.
    pub check_body: Vec<u8>,
    /// Hashes of the installed files, as the check sends them.
    pub hashes: SetHashes,
    /// First configured file missing from a set that acme-dl installed.
    pub missing: Option<String>,
    /// Current version, when the hooks of an earlier run did not finish for it.
    pub pending_hooks: Option<PathBuf>,
}

impl LocalSet {
    /// Reads the installed set of `lineage`, after removing what an interrupted install
    /// left beside it.
    pub fn read(lineage: &LineageSettings, scanner: &mut Scanner) -> Result<LocalSet, SyncError> {
        let installed = scanner.scan(&lineage.dir);
        // A run killed mid-install leaves a staging directory or link. A current lineage
        // is never installed again, so the cleaning happens here.
        if installed.has_leftovers() {
            install::clean_up(&lineage.dir);
        }

        let fullchain = read_hash(lineage, &installed, &lineage.fullchain)?;
        let privkey = match &lineage.privkey {
            Some(name) => read_hash(lineage, &installed, name)?,
            None => None,
        };
        let chain = read_hash(lineage, &installed, &lineage.chain)?;
        let mut read = vec![
            (&lineage.fullchain, fullchain.is_none()),
            (&lineage.chain, chain.is_none()),
        ];
        if let Some(name) = &lineage.privkey {
            read.push((name, privkey.is_none()));
        }
        // A directory left by another client is left alone until the next renewal, as the
        // migration promises, so only a set acme-dl installed can miss a file.
        let missing = match installed.version() {
            Some(_) => configured_names(lineage)
                .into_iter()
                .find(
                    |name| match read.iter().find(|(read_name, _)| read_name == name) {
                        Some((_, absent)) => *absent,
                        None => !installed.exists(name),
                    },
                )
                .cloned(),
            None => None,
        };

        let or_missing =
            |hash: Option<String>| hash.unwrap_or_else(|| MISSING_FILE_HASH.to_owned());
        let mut hashes = SetHashes {
            fullchain_hash: or_missing(fullchain),
            privkey_hash: or_missing(privkey),
            chain_hash: or_missing(chain),
        };
        if missing.is_some() {
            // The lineage's table names a file the installed set lacks (a new `combined`,
            // or a deleted cert.pem). A missing full chain makes the server send the set
            // again.
            hashes.fullchain_hash = MISSING_FILE_HASH.to_owned();
        }
        let request = CheckRequest {
            domain: lineage.name.to_string(),
            hashes: hashes.clone(),
        };
        let check_body = serde_json::to_vec(&request)
            .map_err(|failure| SyncError::Local(failure.to_string()))?;

        let pending_hooks = if installed.hooks_pending() {
            installed.version().map(Path::to_owned)
        } else {
            None
        };
        Ok(LocalSet {
            check_body,
            hashes,
            missing,
            pending_hooks,
        })
    }
}

/// Returns the names of the files a lineage's table configures, the three protocol files
/// first.
pub(super) fn configured_names(lineage: &LineageSettings) -> Vec<&String> {
    let mut names = vec![&lineage.fullchain];
    names.extend(lineage.privkey.iter());
    names.push(&lineage.chain);
    names.extend(lineage.cert.iter().chain(lineage.combined.iter()));
    names.extend(lineage.pkcs12.iter().map(|(name, _)| name));
    names
}

/// Hashes an installed file, or returns `None` when it does not exist.
fn read_hash(
    lineage: &LineageSettings,
    installed: &ScannedLineage,
    name: &str,
) -> Result<Option<String>, SyncError> {
    match installed.open(name).and_then(read_local) {
        Ok(bytes) => Ok(Some(sha256_hex(&bytes))),
        Err(failure) if failure.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(failure) => Err(SyncError::Local(format!(
            "reading {}: {failure}",
            lineage.dir.join(name).display()
        ))),
    }
}

/// Opens an installed file by path without blocking on a FIFO and reads it as
/// [`read_local`] does.
pub(super) fn read_path(path: &Path) -> io::Result<Vec<u8>> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open(path)?;
    read_local(file)
}

/// Reads an opened installed file, rejecting FIFOs, devices and huge files, which would
/// block the run or exhaust memory.
fn read_local(mut file: File) -> io::Result<Vec<u8>> {
    let metadata = file.metadata()?;
    if !metadata.is_file() {
        return Err(io::Error::other(
            "not a regular file; remove it or point dir elsewhere",
        ));
    }
    if metadata.len() > MAX_LOCAL_FILE {
        return Err(io::Error::other(format!(
            "{} bytes is more than a certificate file can be (1 MiB)",
            metadata.len()
        )));
    }

    // One read requests a byte more than the size. On Linux a read of a regular file on
    // a local file system returns fewer bytes than requested only at the file's end, so
    // no second read is needed to find the end. A file that grew since the size was taken is read on, up
    // to the limit. Even a short read in the middle would only give a wrong hash, which
    // makes the server send the set again.
    let size = metadata.len() as usize;
    let mut bytes = vec![0; size + 1];
    let count = loop {
        match file.read(&mut bytes) {
            Err(failure) if failure.kind() == io::ErrorKind::Interrupted => continue,
            result => break result?,
        }
    };
    bytes.truncate(count);
    if count > size {
        file.take(MAX_LOCAL_FILE + 1 - count as u64)
            .read_to_end(&mut bytes)?;
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::install::{Crash, InstallOptions, NewFile, Step, install_set_with_faults};
    use crate::lineage::LineageName;

    fn lineage(dest: &Path) -> LineageSettings {
        LineageSettings::with_defaults(LineageName::parse("example.com").unwrap(), dest)
    }

    fn files(names: &[&str]) -> Vec<NewFile> {
        names
            .iter()
            .map(|name| NewFile {
                name: (*name).to_owned(),
                contents: format!("contents of {name}\n").into_bytes(),
                private: *name == "privkey.pem",
            })
            .collect()
    }

    fn request(local: &LocalSet) -> CheckRequest {
        serde_json::from_slice(&local.check_body).unwrap()
    }

    const ALL: [&str; 4] = ["fullchain.pem", "privkey.pem", "chain.pem", "cert.pem"];

    #[test]
    fn local_set_hashes_installed_files() {
        let dest = tempfile::tempdir().unwrap();
        let lineage = lineage(dest.path());
        install::install_set(&lineage.dir, &files(&ALL), &InstallOptions::default()).unwrap();

        let local = LocalSet::read(&lineage, &mut Scanner::default()).unwrap();
        let hashes = request(&local).hashes;
        assert_eq!(
            hashes.fullchain_hash,
            sha256_hex(b"contents of fullchain.pem\n")
        );
        assert_eq!(
            hashes.privkey_hash,
            sha256_hex(b"contents of privkey.pem\n")
        );
        assert_eq!(hashes.chain_hash, sha256_hex(b"contents of chain.pem\n"));
        assert_eq!(local.missing, None);
        assert_eq!(local.pending_hooks, None);
    }

    #[test]
    fn local_set_without_install_hashes_zeros() {
        let dest = tempfile::tempdir().unwrap();
        let local = LocalSet::read(&lineage(dest.path()), &mut Scanner::default()).unwrap();
        let hashes = request(&local).hashes;
        assert_eq!(hashes.fullchain_hash, MISSING_FILE_HASH);
        assert_eq!(hashes.privkey_hash, MISSING_FILE_HASH);
        assert_eq!(hashes.chain_hash, MISSING_FILE_HASH);
        assert_eq!(local.missing, None);
    }

    #[test]
    fn local_set_notices_missing_cert() {
        let dest = tempfile::tempdir().unwrap();
        let lineage = lineage(dest.path());
        install::install_set(&lineage.dir, &files(&ALL[..3]), &InstallOptions::default()).unwrap();

        let local = LocalSet::read(&lineage, &mut Scanner::default()).unwrap();
        assert_eq!(local.missing.as_deref(), Some("cert.pem"));
        let hashes = request(&local).hashes;
        assert_eq!(hashes.fullchain_hash, MISSING_FILE_HASH);
        assert_eq!(hashes.chain_hash, sha256_hex(b"contents of chain.pem\n"));
    }

    #[test]
    fn local_set_removes_leftovers_of_crash() {
        let dest = tempfile::tempdir().unwrap();
        let lineage = lineage(dest.path());
        install::install_set(&lineage.dir, &files(&ALL), &InstallOptions::default()).unwrap();
        let _ = install_set_with_faults(
            &lineage.dir,
            &files(&ALL),
            &InstallOptions::default(),
            &mut |step| {
                if step == Step::WroteFile(1) {
                    Err(Crash)
                } else {
                    Ok(())
                }
            },
        );
        let store = dest.path().join(".example.com.acme-dl");
        assert!(
            store.join(".tmp-set-0002").is_dir(),
            "the crash left no staging directory"
        );

        let local = LocalSet::read(&lineage, &mut Scanner::default()).unwrap();
        assert!(!store.join(".tmp-set-0002").exists());
        assert_eq!(local.missing, None);
    }

    #[test]
    fn local_set_finds_pending_hooks() {
        let dest = tempfile::tempdir().unwrap();
        let lineage = lineage(dest.path());
        let installed =
            install::install_set(&lineage.dir, &files(&ALL), &InstallOptions::default()).unwrap();
        install::set_hooks_pending(&lineage.dir, true);

        let local = LocalSet::read(&lineage, &mut Scanner::default()).unwrap();
        assert_eq!(local.pending_hooks, Some(installed.version));
    }
}
