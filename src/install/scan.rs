//! Reading what is installed at lineage paths, for a client run in which every set may
//! be current: the version a lineage links to, the leftovers of an interrupted install
//! and a pending-hooks marker.
//!
//! Each parent directory is listed once per scanner and each version store once per
//! lineage. Files are opened relative to the open store, so the kernel does not walk the
//! whole path and the lineage link again for each one. Removing leftovers is left to
//! `clean_up`, and hashing the files to the client.

use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{AtFlags, CWD, Dir, Mode, OFlags};
use rustix::io::Errno;

use super::{HOOKS_PENDING, STAGING_PREFIX, current_version, file_name, pending_hooks};

/// Listings of the directories that contain lineage paths, each taken once.
///
/// A listing is never refreshed, so a scanner serves one pass over the lineages of a run.
#[derive(Debug, Default)]
pub struct Scanner {
    parents: HashMap<PathBuf, Listing>,
}

/// A parent directory as the scanner found it.
#[derive(Debug)]
enum Listing {
    /// The path does not exist or is not a directory, so nothing is installed in it.
    Absent,
    /// The directory could not be opened or listed for another reason, such as missing
    /// read permission.
    Unreadable,
    /// The open directory and the names of its entries.
    Listed { dir: Dir, names: HashSet<OsString> },
}

/// The installed state of one lineage path.
///
/// It keeps the lineage's version store open while it lives, so a caller scanning many
/// lineages drops each one before scanning the next.
#[derive(Debug)]
pub struct ScannedLineage {
    dir: PathBuf,
    version: Option<PathBuf>,
    /// The open version store and the current version's name in it; `None` when files
    /// are read through the lineage path.
    store: Option<(Dir, OsString)>,
    leftovers: bool,
    hooks_pending: bool,
}

impl Scanner {
    /// Reads what is installed at the lineage path `dir`.
    ///
    /// When a directory on the way cannot be read, the result reads files through their
    /// paths, finds the version and the marker the way `install_set` does, and reports
    /// leftovers, so that `clean_up` looks for them itself.
    pub fn scan(&mut self, dir: &Path) -> ScannedLineage {
        let parent = match dir.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_owned(),
            _ => PathBuf::from("."),
        };
        let listing = self
            .parents
            .entry(parent.clone())
            .or_insert_with(|| list_parent(&parent));
        let (parent_dir, names) = match listing {
            Listing::Absent => return ScannedLineage::empty(dir),
            Listing::Unreadable => return ScannedLineage::by_path(dir),
            Listing::Listed {
                dir: parent_dir,
                names,
            } => (&*parent_dir, &*names),
        };
        let Ok(parent_fd) = parent_dir.fd() else {
            return ScannedLineage::by_path(dir);
        };

        let name = file_name(dir);
        let store_name = format!(".{name}.acme-dl");
        let link_staging = format!(".{name}.acme-dl-link");
        let version = if names.contains(OsStr::new(&name)) {
            rustix::fs::readlinkat(parent_fd, name.as_str(), Vec::new())
                .ok()
                .and_then(|target| {
                    own_version(&name, Path::new(OsStr::from_bytes(target.as_bytes())))
                })
        } else {
            None
        };

        let mut scanned = ScannedLineage::empty(dir);
        scanned.leftovers = names.contains(OsStr::new(&link_staging));
        if names.contains(OsStr::new(&store_name)) {
            let Ok((store, entries)) = list_store(parent_fd, &store_name) else {
                return ScannedLineage::by_path(dir);
            };
            scanned.leftovers |= entries
                .iter()
                .any(|entry| entry.as_bytes().starts_with(STAGING_PREFIX.as_bytes()));
            scanned.hooks_pending =
                version.is_some() && entries.contains(OsStr::new(HOOKS_PENDING));
            scanned.store = version.clone().map(|version| (store, version));
        }
        scanned.version = version.map(|version| parent.join(&store_name).join(version));
        scanned
    }
}

impl ScannedLineage {
    /// Returns the state of a lineage path under a directory that does not exist, where
    /// nothing is installed.
    fn empty(dir: &Path) -> ScannedLineage {
        ScannedLineage {
            dir: dir.to_owned(),
            version: None,
            store: None,
            leftovers: false,
            hooks_pending: false,
        }
    }

    /// Returns the state of a lineage whose directories could not be listed, found through
    /// paths.
    fn by_path(dir: &Path) -> ScannedLineage {
        ScannedLineage {
            dir: dir.to_owned(),
            version: current_version(dir),
            store: None,
            leftovers: true,
            hooks_pending: pending_hooks(dir).is_some(),
        }
    }

    /// Returns the version directory the lineage path links to, when acme-dl created the
    /// link.
    pub fn version(&self) -> Option<&Path> {
        self.version.as_deref()
    }

    /// Returns true when an interrupted install may have left a staging directory or a
    /// staging link, which `clean_up` removes.
    pub fn has_leftovers(&self) -> bool {
        self.leftovers
    }

    /// Returns true when the hooks for the current set have not finished.
    pub fn hooks_pending(&self) -> bool {
        self.hooks_pending
    }

    /// Opens the installed file `name` for reading. The open does not block on a FIFO.
    pub fn open(&self, name: &str) -> io::Result<File> {
        match &self.store {
            Some((store, version)) => {
                let path = Path::new(version).join(name);
                let flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC;
                let fd = rustix::fs::openat(store.fd()?, &path, flags, Mode::empty())?;
                Ok(File::from(fd))
            }
            None => OpenOptions::new()
                .read(true)
                .custom_flags(OFlags::NONBLOCK.bits() as i32)
                .open(self.dir.join(name)),
        }
    }

    /// Returns true when the installed file `name` exists. Links are followed, as
    /// `Path::exists` follows them.
    pub fn exists(&self, name: &str) -> bool {
        match &self.store {
            Some((store, version)) => store
                .fd()
                .and_then(|fd| {
                    rustix::fs::statat(fd, Path::new(version).join(name), AtFlags::empty())
                })
                .is_ok(),
            None => self.dir.join(name).exists(),
        }
    }
}

/// Returns the version that a lineage link's target names when the target has the form
/// acme-dl writes, `.NAME.acme-dl/VERSION`.
fn own_version(name: &str, target: &Path) -> Option<OsString> {
    let mut components = target.components();
    let (Some(Component::Normal(store)), Some(Component::Normal(version)), None) =
        (components.next(), components.next(), components.next())
    else {
        return None;
    };
    (store.as_bytes() == format!(".{name}.acme-dl").as_bytes()).then(|| version.to_owned())
}

fn list_parent(path: &Path) -> Listing {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    let fd = match rustix::fs::openat(CWD, path, flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(Errno::NOENT | Errno::NOTDIR) => return Listing::Absent,
        Err(_) => return Listing::Unreadable,
    };
    match read_names(fd) {
        Ok((dir, names)) => Listing::Listed { dir, names },
        Err(_) => Listing::Unreadable,
    }
}

fn list_store(parent: BorrowedFd<'_>, store_name: &str) -> io::Result<(Dir, HashSet<OsString>)> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    let fd = rustix::fs::openat(parent, store_name, flags, Mode::empty())?;
    read_names(fd)
}

/// Lists the directory open as `fd`, and keeps it open for lookups relative to it.
fn read_names(fd: OwnedFd) -> io::Result<(Dir, HashSet<OsString>)> {
    let mut dir = Dir::new(fd)?;
    let mut names = HashSet::new();
    while let Some(entry) = dir.read() {
        let entry = entry?;
        names.insert(OsString::from_vec(entry.file_name().to_bytes().to_vec()));
    }
    Ok((dir, names))
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;
    use crate::install::{
        Crash, InstallOptions, NewFile, Step, clean_up, install_set, install_set_with_faults,
        set_hooks_pending,
    };

    fn set(tag: &str) -> Vec<NewFile> {
        ["fullchain.pem", "privkey.pem", "chain.pem"]
            .iter()
            .map(|name| NewFile {
                name: (*name).to_owned(),
                contents: format!("{tag} {name}\n").into_bytes(),
                private: *name == "privkey.pem",
            })
            .collect()
    }

    /// Installs set B over the set at `dir` and stops the install after `crash_at`.
    fn crash_install(dir: &Path, crash_at: Step) {
        let result =
            install_set_with_faults(dir, &set("B"), &InstallOptions::default(), &mut |step| {
                if step == crash_at { Err(Crash) } else { Ok(()) }
            });
        assert!(result.is_err(), "{crash_at:?}: no crash");
    }

    fn read_to_string(scanned: &ScannedLineage, name: &str) -> String {
        io::read_to_string(scanned.open(name).unwrap()).unwrap()
    }

    #[test]
    fn scan_finds_version_and_opens_its_files() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("example.com");
        install_set(&dir, &set("A"), &InstallOptions::default()).unwrap();

        let scanned = Scanner::default().scan(&dir);
        let expected = root.path().join(".example.com.acme-dl/set-0001");
        assert_eq!(scanned.version(), Some(expected.as_path()));
        assert_eq!(read_to_string(&scanned, "chain.pem"), "A chain.pem\n");
        assert!(scanned.exists("privkey.pem"));
        assert!(!scanned.exists("cert.pem"));
        assert_eq!(
            scanned.open("cert.pem").unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
        assert!(!scanned.has_leftovers());
        assert!(!scanned.hooks_pending());
    }

    #[test]
    fn scan_finds_staging_directory_of_crash() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("example.com");
        install_set(&dir, &set("A"), &InstallOptions::default()).unwrap();
        crash_install(&dir, Step::WroteFile(0));

        let scanned = Scanner::default().scan(&dir);
        assert!(scanned.has_leftovers());
        assert_eq!(
            read_to_string(&scanned, "fullchain.pem"),
            "A fullchain.pem\n"
        );
        drop(scanned);

        clean_up(&dir);
        assert!(!Scanner::default().scan(&dir).has_leftovers());
    }

    #[test]
    fn scan_finds_staging_link_of_crash() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("example.com");
        install_set(&dir, &set("A"), &InstallOptions::default()).unwrap();
        crash_install(&dir, Step::CreateLink);

        assert!(Scanner::default().scan(&dir).has_leftovers());
        clean_up(&dir);
        assert!(!Scanner::default().scan(&dir).has_leftovers());
    }

    #[test]
    fn scan_finds_pending_hooks_marker() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("example.com");
        install_set(&dir, &set("A"), &InstallOptions::default()).unwrap();

        set_hooks_pending(&dir, true);
        assert!(Scanner::default().scan(&dir).hooks_pending());
        set_hooks_pending(&dir, false);
        assert!(!Scanner::default().scan(&dir).hooks_pending());
    }

    #[test]
    fn scan_lists_shared_parent_once() {
        let root = tempfile::tempdir().unwrap();
        let first = root.path().join("a.example");
        let second = root.path().join("b.example");
        install_set(&first, &set("A"), &InstallOptions::default()).unwrap();
        install_set(&second, &set("B"), &InstallOptions::default()).unwrap();

        let mut scanner = Scanner::default();
        assert!(scanner.scan(&first).version().is_some());
        assert_eq!(
            read_to_string(&scanner.scan(&second), "privkey.pem"),
            "B privkey.pem\n"
        );
        assert_eq!(scanner.parents.len(), 1);
    }

    #[test]
    fn scan_reads_other_layouts_through_paths() {
        let root = tempfile::tempdir().unwrap();

        let absent = Scanner::default().scan(&root.path().join("missing/example.com"));
        assert_eq!(absent.version(), None);
        assert!(!absent.has_leftovers());
        assert!(!absent.exists("fullchain.pem"));

        // A real directory left by another client, and an operator's link to it.
        let legacy = root.path().join("legacy.example");
        fs::create_dir(&legacy).unwrap();
        fs::write(legacy.join("fullchain.pem"), "legacy\n").unwrap();
        let link = root.path().join("link.example");
        std::os::unix::fs::symlink("legacy.example", &link).unwrap();

        let mut scanner = Scanner::default();
        for dir in [&legacy, &link] {
            let scanned = scanner.scan(dir);
            assert_eq!(scanned.version(), None, "{}", dir.display());
            assert_eq!(read_to_string(&scanned, "fullchain.pem"), "legacy\n");
            assert!(scanned.exists("fullchain.pem"), "{}", dir.display());
            assert!(!scanned.exists("chain.pem"), "{}", dir.display());
        }
    }
}
