//! Consistent snapshots of a lineage, cached until its files change.
//!
//! Certbot repoints the four links of a lineage one after another during a renewal, so a
//! read at the wrong moment mixes two renewals. A snapshot is taken only when its files
//! belong together; until a new consistent set appears, the last one keeps being served.
//!
//! While inotify reports no change in a lineage's `live/` and `archive/` directories, a
//! request costs one non-blocking read of the event queue and no `stat` call. The files'
//! identities are still compared at least once a second, because inotify does not report
//! every change (another host writing to a network file system). A lineage that cannot be
//! watched costs four `stat` calls per request.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tracing::warn;

use super::watch::Watcher;
use super::{Store, StoreError, StoreFile};
use crate::lineage::LineageName;
use crate::protocol::{SET_FILES, SetFile, SetHashes, sha256_hex};
use crate::verify::{self, Check};

/// Maximum time a watched, unchanged snapshot is trusted without comparing identities.
const RECHECK_INTERVAL: Duration = Duration::from_secs(1);

/// Identity of a file: device, inode, size, and modification time in seconds and nanoseconds.
type FileIdentity = (u64, u64, u64, i64, i64);

/// The files of one consistent set, as read together.
#[derive(Debug)]
pub struct Snapshot {
    pub hashes: SetHashes,
    files: Vec<(SetFile, StoreFile)>,
    /// Identity of each file when it was read.
    identities: Vec<FileIdentity>,
    /// Every file is directly in the lineage's `live/` or `archive/` directory, where
    /// inotify reports its changes.
    watchable: bool,
}

impl Snapshot {
    /// Returns one file of the snapshot, or `None` for a `cert.pem` the lineage lacks.
    pub fn file(&self, wanted: SetFile) -> Option<&StoreFile> {
        self.files
            .iter()
            .find(|(file, _)| *file == wanted)
            .map(|(_, stored)| stored)
    }
}

/// State of a lineage on disk, as `current` found it.
#[derive(Debug)]
pub enum Current {
    /// The files on disk are consistent; this is them.
    Fresh(Arc<Snapshot>),
    /// The files on disk do not belong together (a renewal in progress); this is the last
    /// consistent set, with the reason.
    Stale(Arc<Snapshot>, String),
    /// The files on disk do not belong together and no consistent set was seen before.
    Unavailable(String),
}

/// A cached snapshot and when it was last known to match the disk.
#[derive(Debug)]
struct Entry {
    snapshot: Arc<Snapshot>,
    /// Watch generation at which the identities last matched; `None` when unwatched.
    generation: Option<u64>,
    checked: Instant,
}

#[derive(Debug, Default)]
struct CacheState {
    entries: HashMap<LineageName, Entry>,
    /// `None` when inotify is unavailable, so every request compares identities.
    watcher: Option<Watcher>,
    watcher_failed: bool,
}

/// The last consistent snapshot of each lineage.
#[derive(Debug, Default)]
pub struct SnapshotCache {
    state: Mutex<CacheState>,
}

const FILES: [SetFile; 4] = [
    SetFile::Fullchain,
    SetFile::Privkey,
    SetFile::Chain,
    SetFile::Cert,
];

impl SnapshotCache {
    /// Returns the lineage's current consistent set, reading and checking the files only
    /// when they changed since the last snapshot.
    pub fn current(&self, store: &Store, lineage: &LineageName) -> Result<Current, StoreError> {
        let now = Instant::now();
        let (cached, generation) = {
            let mut state = self.lock();
            let generation = state.generation(store, lineage);
            match state.entries.get(lineage) {
                Some(entry)
                    if generation.is_some()
                        && entry.generation == generation
                        && now.duration_since(entry.checked) < RECHECK_INTERVAL =>
                {
                    return Ok(Current::Fresh(entry.snapshot.clone()));
                }
                entry => (entry.map(|entry| entry.snapshot.clone()), generation),
            }
        };
        // The generation was read before the stat calls: a change after it gives the
        // lineage a newer one, so this check cannot hide it.
        let identities = identities(store, lineage)?;
        if let Some(snapshot) = &cached
            && snapshot.identities == identities
        {
            self.remember(lineage, snapshot.clone(), generation, now);
            return Ok(Current::Fresh(snapshot.clone()));
        }

        let mut files = Vec::with_capacity(FILES.len());
        for file in FILES {
            match store.read_file(lineage, file) {
                Ok(stored) => files.push((file, stored)),
                Err(StoreError::FileMissing { .. }) if file == SetFile::Cert => {}
                Err(error) => return Err(error),
            }
        }
        let bytes = |wanted: SetFile| {
            files
                .iter()
                .find(|(file, _)| *file == wanted)
                .map(|(_, stored)| stored.bytes.as_slice())
        };
        let consistency = verify::check_consistency(
            bytes(SetFile::Fullchain).unwrap_or_default(),
            bytes(SetFile::Privkey).unwrap_or_default(),
            bytes(SetFile::Chain).unwrap_or_default(),
            bytes(SetFile::Cert),
            lineage,
        );
        match consistency {
            Ok(()) => {}
            // A file that is not PEM or contains no usable key is broken, not half renewed.
            Err(failure) if matches!(failure.check, Check::Pem | Check::PrivateKey) => {
                return Err(StoreError::Unusable {
                    lineage: lineage.clone(),
                    file: failure.file,
                    reason: failure.detail,
                });
            }
            Err(failure) => {
                let reason = format!("{failure} (a renewal in progress?)");
                return Ok(match cached {
                    Some(snapshot) => Current::Stale(snapshot, reason),
                    None => Current::Unavailable(reason),
                });
            }
        }

        let hash = |file: SetFile| sha256_hex(bytes(file).unwrap_or_default());
        let snapshot = Arc::new(Snapshot {
            hashes: SetHashes {
                fullchain_hash: hash(SetFile::Fullchain),
                privkey_hash: hash(SetFile::Privkey),
                chain_hash: hash(SetFile::Chain),
            },
            watchable: files.iter().all(|(_, stored)| {
                let parent = stored.resolved.parent();
                parent == Some(&store.root().join("live").join(lineage.as_str()))
                    || parent == Some(&store.root().join("archive").join(lineage.as_str()))
            }),
            files,
            identities,
        });
        self.remember(lineage, snapshot.clone(), generation, now);
        Ok(Current::Fresh(snapshot))
    }

    fn remember(
        &self,
        lineage: &LineageName,
        snapshot: Arc<Snapshot>,
        generation: Option<u64>,
        checked: Instant,
    ) {
        let generation = generation.filter(|_| snapshot.watchable);
        self.lock().entries.insert(
            lineage.clone(),
            Entry {
                snapshot,
                generation,
                checked,
            },
        );
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CacheState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl CacheState {
    /// Returns the lineage's watch generation, starting inotify on first use.
    fn generation(&mut self, store: &Store, lineage: &LineageName) -> Option<u64> {
        if self.watcher.is_none() && !self.watcher_failed {
            match Watcher::new() {
                Ok(watcher) => self.watcher = Some(watcher),
                Err(error) => {
                    self.watcher_failed = true;
                    warn!(
                        error = %error,
                        "inotify is unavailable; every request will stat the lineage's files"
                    );
                }
            }
        }
        self.watcher.as_mut()?.generation(store.root(), lineage)
    }
}

/// Stats the files a lineage's links point to; a renewal changes at least one inode.
fn identities(store: &Store, lineage: &LineageName) -> Result<Vec<FileIdentity>, StoreError> {
    let dir = store.root().join("live").join(lineage.as_str());
    if std::fs::symlink_metadata(&dir).is_err() {
        return Err(StoreError::LineageNotFound {
            lineage: lineage.clone(),
        });
    }
    let mut identities = Vec::with_capacity(FILES.len());
    for file in FILES {
        let identity = match std::fs::metadata(dir.join(file.file_name())) {
            Ok(metadata) => (
                metadata.dev(),
                metadata.ino(),
                metadata.size(),
                metadata.mtime(),
                metadata.mtime_nsec(),
            ),
            Err(_) => (0, 0, 0, 0, 0),
        };
        identities.push(identity);
    }
    debug_assert_eq!(SET_FILES.len() + 1, identities.len());
    Ok(identities)
}

/// Logs that a stale snapshot is being served.
pub fn warn_stale(lineage: &LineageName, reason: &str) {
    warn!(lineage = %lineage, reason = %reason, "lineage inconsistent on disk; serving its last consistent set");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::{Authority, LeafSpec, Usage};
    use std::fs;
    use std::os::unix::fs::symlink;
    use std::path::Path;

    fn write_version(root: &Path, issuer: &Authority, number: u32) {
        let archive = root.join("archive/example.com");
        fs::create_dir_all(&archive).unwrap();
        fs::create_dir_all(root.join("live/example.com")).unwrap();
        let mut spec = LeafSpec::new("example.com", Usage::Server, 30);
        spec.dns_names = vec!["example.com".into()];
        let leaf = issuer.issue(&spec).unwrap();
        let files = [
            ("cert", leaf.cert_pem.clone()),
            ("chain", issuer.cert_pem().to_owned()),
            (
                "fullchain",
                format!("{}{}", leaf.cert_pem, issuer.cert_pem()),
            ),
            ("privkey", leaf.key_pem),
        ];
        for (stem, text) in files {
            fs::write(archive.join(format!("{stem}{number}.pem")), text).unwrap();
        }
    }

    fn point(root: &Path, stem: &str, number: u32) {
        let link = root.join(format!("live/example.com/{stem}.pem"));
        let _ = fs::remove_file(&link);
        symlink(
            format!("../../archive/example.com/{stem}{number}.pem"),
            link,
        )
        .unwrap();
    }

    fn point_all(root: &Path, number: u32) {
        for stem in ["cert", "chain", "fullchain", "privkey"] {
            point(root, stem, number);
        }
    }

    #[test]
    fn snapshots_follow_renewals_and_survive_half_done_ones() {
        let dir = tempfile::tempdir().unwrap();
        let issuer = Authority::new_root("snapshot test CA", 30).unwrap();
        write_version(dir.path(), &issuer, 1);
        write_version(dir.path(), &issuer, 2);
        point_all(dir.path(), 1);
        let store = Store::open(dir.path()).unwrap();
        let lineage = LineageName::parse("example.com").unwrap();
        let cache = SnapshotCache::default();

        let Current::Fresh(first) = cache.current(&store, &lineage).unwrap() else {
            panic!("not fresh")
        };
        let Current::Fresh(again) = cache.current(&store, &lineage).unwrap() else {
            panic!("not fresh")
        };
        assert!(
            Arc::ptr_eq(&first, &again),
            "unchanged files were read again"
        );

        // Halfway through a renewal: the last consistent set is served.
        point(dir.path(), "fullchain", 2);
        point(dir.path(), "cert", 2);
        let Current::Stale(stale, reason) = cache.current(&store, &lineage).unwrap() else {
            panic!("not stale")
        };
        assert!(Arc::ptr_eq(&stale, &first));
        assert!(reason.contains("private key does not match"), "{reason}");
        // A cache that never saw a consistent set has nothing to offer.
        assert!(matches!(
            SnapshotCache::default().current(&store, &lineage).unwrap(),
            Current::Unavailable(_)
        ));

        point_all(dir.path(), 2);
        let Current::Fresh(second) = cache.current(&store, &lineage).unwrap() else {
            panic!("not fresh")
        };
        assert_ne!(second.hashes, first.hashes);
        assert_eq!(
            second.file(SetFile::Privkey).unwrap().bytes,
            fs::read(dir.path().join("archive/example.com/privkey2.pem")).unwrap()
        );
    }

    #[test]
    fn snapshot_in_subdirectory_is_compared_every_time() {
        // inotify on archive/<lineage>/ does not report changes inside its subdirectories.
        let dir = tempfile::tempdir().unwrap();
        let issuer = Authority::new_root("snapshot test CA", 30).unwrap();
        write_version(dir.path(), &issuer, 1);
        write_version(dir.path(), &issuer, 2);
        let archive = dir.path().join("archive/example.com");
        fs::create_dir_all(archive.join("sets/next")).unwrap();
        for stem in ["cert", "chain", "fullchain", "privkey"] {
            fs::rename(
                archive.join(format!("{stem}1.pem")),
                archive.join(format!("sets/{stem}.pem")),
            )
            .unwrap();
            fs::rename(
                archive.join(format!("{stem}2.pem")),
                archive.join(format!("sets/next/{stem}.pem")),
            )
            .unwrap();
            let link = dir.path().join(format!("live/example.com/{stem}.pem"));
            let _ = fs::remove_file(&link);
            symlink(format!("../../archive/example.com/sets/{stem}.pem"), link).unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        let lineage = LineageName::parse("example.com").unwrap();
        let cache = SnapshotCache::default();
        let Current::Fresh(first) = cache.current(&store, &lineage).unwrap() else {
            panic!("not fresh")
        };

        for stem in ["cert", "chain", "fullchain", "privkey"] {
            fs::rename(
                archive.join(format!("sets/next/{stem}.pem")),
                archive.join(format!("sets/{stem}.pem")),
            )
            .unwrap();
        }
        let Current::Fresh(second) = cache.current(&store, &lineage).unwrap() else {
            panic!("not fresh")
        };
        assert_ne!(
            second.hashes, first.hashes,
            "a change in a subdirectory went unseen"
        );
    }

    #[test]
    fn broken_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let issuer = Authority::new_root("snapshot test CA", 30).unwrap();
        write_version(dir.path(), &issuer, 1);
        point_all(dir.path(), 1);
        let store = Store::open(dir.path()).unwrap();
        let lineage = LineageName::parse("example.com").unwrap();
        let cache = SnapshotCache::default();
        assert!(matches!(
            cache.current(&store, &lineage).unwrap(),
            Current::Fresh(_)
        ));

        fs::write(
            dir.path().join("archive/example.com/chain1.pem"),
            "-----BEGIN CERTIFICATE-----\n",
        )
        .unwrap();
        let error = cache.current(&store, &lineage).unwrap_err();
        assert!(
            matches!(
                error,
                StoreError::Unusable {
                    file: SetFile::Chain,
                    ..
                }
            ),
            "{error}"
        );
    }
}
