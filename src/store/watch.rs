//! Change notification for lineage directories, so that an unchanged lineage costs no
//! `stat` call per request.
//!
//! Each watched lineage has a generation. Any change inside its `live/` or `archive/`
//! directory, the loss of a watch, or an overflow of the kernel's event queue gives it a
//! new generation. A snapshot taken at one generation is current while the generation
//! stays the same. Events are read without blocking before every lookup, and the kernel
//! queues an event before the change's system call returns, so a change that finished
//! before a request arrived is always seen by that request.

use std::collections::HashMap;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::OwnedFd;
use std::path::Path;

use rustix::fs::inotify::{self, CreateFlags, ReadFlags, WatchFlags};

use crate::lineage::LineageName;

/// Events that can change what a lineage's links resolve to or what its files contain.
fn watch_flags() -> WatchFlags {
    WatchFlags::CREATE
        | WatchFlags::DELETE
        | WatchFlags::MOVED_FROM
        | WatchFlags::MOVED_TO
        | WatchFlags::MODIFY
        | WatchFlags::CLOSE_WRITE
        | WatchFlags::ATTRIB
        | WatchFlags::DELETE_SELF
        | WatchFlags::MOVE_SELF
        | WatchFlags::ONLYDIR
}

/// The watches of one lineage.
#[derive(Debug)]
struct Watched {
    descriptors: Vec<i32>,
    generation: u64,
}

/// An inotify instance watching the directories of the lineages asked for so far.
#[derive(Debug)]
pub(super) struct Watcher {
    fd: OwnedFd,
    lineages: HashMap<LineageName, Watched>,
    owners: HashMap<i32, LineageName>,
    next_generation: u64,
}

impl Watcher {
    pub(super) fn new() -> io::Result<Watcher> {
        let fd = inotify::init(CreateFlags::NONBLOCK | CreateFlags::CLOEXEC)?;
        Ok(Watcher {
            fd,
            lineages: HashMap::new(),
            owners: HashMap::new(),
            next_generation: 1,
        })
    }

    /// Returns the lineage's generation, watching its directories first when they are not
    /// watched yet. `None` means the lineage cannot be watched, so callers must `stat`.
    pub(super) fn generation(&mut self, root: &Path, lineage: &LineageName) -> Option<u64> {
        self.read_events();
        if let Some(watched) = self.lineages.get(lineage) {
            return Some(watched.generation);
        }
        let live = root.join("live").join(lineage.as_str());
        let archive = root.join("archive").join(lineage.as_str());
        let mut descriptors = Vec::with_capacity(2);
        for (dir, required) in [(live, true), (archive, false)] {
            match inotify::add_watch(&self.fd, &dir, watch_flags()) {
                Ok(descriptor) => descriptors.push(descriptor),
                Err(rustix::io::Errno::NOENT) if !required => {}
                Err(_) => {
                    // Out of watches, or the lineage does not exist: stat instead.
                    for descriptor in descriptors {
                        self.forget(descriptor);
                        let _ = inotify::remove_watch(&self.fd, descriptor);
                    }
                    return None;
                }
            }
        }
        let generation = self.new_generation();
        for descriptor in &descriptors {
            self.owners.insert(*descriptor, lineage.clone());
        }
        self.lineages.insert(
            lineage.clone(),
            Watched {
                descriptors,
                generation,
            },
        );
        Some(generation)
    }

    fn new_generation(&mut self) -> u64 {
        let generation = self.next_generation;
        self.next_generation += 1;
        generation
    }

    /// Reads every queued event and gives each lineage it concerns a new generation.
    fn read_events(&mut self) {
        let mut buffer = [MaybeUninit::<u8>::uninit(); 4096];
        let mut changed: Vec<(i32, bool)> = Vec::new();
        let mut overflowed = false;
        {
            let mut reader = inotify::Reader::new(&self.fd, &mut buffer);
            loop {
                match reader.next() {
                    Ok(event) => {
                        if event.events().contains(ReadFlags::QUEUE_OVERFLOW) {
                            overflowed = true;
                        } else {
                            // A watch on a moved or deleted directory no longer covers the
                            // lineage's path.
                            let removed = event.events().intersects(
                                ReadFlags::IGNORED | ReadFlags::MOVE_SELF | ReadFlags::DELETE_SELF,
                            );
                            changed.push((event.wd(), removed));
                        }
                    }
                    Err(rustix::io::Errno::INTR) => {}
                    // WOULDBLOCK: nothing more queued. Any other error leaves the
                    // generations as they are; the periodic stat still notices changes.
                    Err(_) => break,
                }
            }
        }
        if overflowed {
            // Events were lost: every lineage may have changed.
            let names: Vec<LineageName> = self.lineages.keys().cloned().collect();
            for name in names {
                let generation = self.new_generation();
                if let Some(watched) = self.lineages.get_mut(&name) {
                    watched.generation = generation;
                }
            }
        }
        for (descriptor, removed) in changed {
            let Some(lineage) = self.owners.get(&descriptor).cloned() else {
                continue;
            };
            if removed {
                // Watched again, at a new generation, on the next lookup.
                self.unwatch(&lineage);
            } else {
                let generation = self.new_generation();
                if let Some(watched) = self.lineages.get_mut(&lineage) {
                    watched.generation = generation;
                }
            }
        }
    }

    /// Drops every watch of a lineage.
    fn unwatch(&mut self, lineage: &LineageName) {
        if let Some(watched) = self.lineages.remove(lineage) {
            for descriptor in watched.descriptors {
                self.forget(descriptor);
                // Fails harmlessly for the watch the kernel already dropped.
                let _ = inotify::remove_watch(&self.fd, descriptor);
            }
        }
    }

    fn forget(&mut self, descriptor: i32) {
        self.owners.remove(&descriptor);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn lineage_dirs(root: &Path, name: &str) {
        fs::create_dir_all(root.join("live").join(name)).unwrap();
        fs::create_dir_all(root.join("archive").join(name)).unwrap();
    }

    #[test]
    fn generation_changes_with_live_or_archive() {
        let dir = tempfile::tempdir().unwrap();
        lineage_dirs(dir.path(), "a.example");
        lineage_dirs(dir.path(), "b.example");
        let a = LineageName::parse("a.example").unwrap();
        let b = LineageName::parse("b.example").unwrap();
        let mut watcher = Watcher::new().unwrap();

        let a1 = watcher.generation(dir.path(), &a).unwrap();
        let b1 = watcher.generation(dir.path(), &b).unwrap();
        assert_eq!(watcher.generation(dir.path(), &a), Some(a1));

        fs::write(dir.path().join("archive/a.example/cert2.pem"), "x").unwrap();
        let a2 = watcher.generation(dir.path(), &a).unwrap();
        assert_ne!(a2, a1, "a new archive file went unnoticed");
        assert_eq!(watcher.generation(dir.path(), &b), Some(b1));

        std::os::unix::fs::symlink(
            "../../archive/a.example/cert2.pem",
            dir.path().join("live/a.example/cert.pem"),
        )
        .unwrap();
        let a3 = watcher.generation(dir.path(), &a).unwrap();
        assert_ne!(a3, a2, "a new link went unnoticed");
    }

    #[test]
    fn watcher_follows_replaced_directory() {
        let dir = tempfile::tempdir().unwrap();
        lineage_dirs(dir.path(), "a.example");
        let a = LineageName::parse("a.example").unwrap();
        let mut watcher = Watcher::new().unwrap();
        let first = watcher.generation(dir.path(), &a).unwrap();

        fs::rename(
            dir.path().join("live/a.example"),
            dir.path().join("live/old"),
        )
        .unwrap();
        fs::create_dir(dir.path().join("live/a.example")).unwrap();
        let second = watcher.generation(dir.path(), &a).unwrap();
        assert_ne!(second, first);

        fs::write(dir.path().join("live/a.example/fullchain.pem"), "x").unwrap();
        let third = watcher.generation(dir.path(), &a).unwrap();
        assert_ne!(third, second, "the new directory is not watched");
    }

    #[test]
    fn watcher_skips_missing_lineage() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("live")).unwrap();
        let mut watcher = Watcher::new().unwrap();
        let missing = LineageName::parse("missing.example").unwrap();
        assert_eq!(watcher.generation(dir.path(), &missing), None);
        assert!(watcher.owners.is_empty());
    }
}
