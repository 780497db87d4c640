//! Installing a verified certificate set on the client, whole and atomically.
//!
//! Each set is written into a new version directory next to the lineage directory, and
//! the lineage path becomes a symbolic link switched to it by one rename, as Certbot does
//! with its own links. After a crash at any instant the lineage path names either the
//! complete old set or the complete new one. File data is flushed before the rename that
//! publishes it, so the same is true after a power loss. What to install is left to `client`.
//!
//! ```text
//! live/example.com -> .example.com.acme-dl/set-0007
//! live/.example.com.acme-dl/set-0006/{fullchain,privkey,chain,cert}.pem   previous set
//! live/.example.com.acme-dl/set-0007/...                                  current set
//! ```

mod owner;
mod scan;

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

pub use owner::{resolve_group, resolve_user};
pub use scan::{ScannedLineage, Scanner};

/// Default mode of the private key file.
pub const KEY_MODE: u32 = 0o600;
/// Default mode of certificate files.
pub const CERT_MODE: u32 = 0o644;
/// Mode of the directories the client creates.
pub const DIR_MODE: u32 = 0o755;

const VERSION_PREFIX: &str = "set-";
/// Highest version number; names with more digits are not acme-dl's.
const MAX_VERSION: u64 = 999_999_999_999_999_999;
/// Lock file inside a lineage's version store.
const STORE_LOCK: &str = ".lock";
const STAGING_PREFIX: &str = ".tmp-";

/// A file of a set: its name in the lineage directory and its contents.
#[derive(Debug, Clone)]
pub struct NewFile {
    pub name: String,
    pub contents: Vec<u8>,
    /// True for files holding a private key, which get the key mode.
    pub private: bool,
}

/// Owner, group and modes of installed files.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ownership {
    /// Owner; `None` keeps the owner of the file being replaced, else the process's user.
    pub uid: Option<u32>,
    /// Group; `None` keeps the group of the file being replaced, else the process's group.
    pub gid: Option<u32>,
    /// Mode of key files; `None` keeps the replaced file's mode without bits for others,
    /// else `KEY_MODE`.
    pub key_mode: Option<u32>,
    /// Mode of certificate files; `None` keeps the replaced file's mode, else `CERT_MODE`.
    pub cert_mode: Option<u32>,
}

/// Options of an install.
#[derive(Debug, Clone, Copy)]
pub struct InstallOptions {
    pub ownership: Ownership,
    /// Number of previous sets kept for rollback.
    pub keep_previous: usize,
}

impl Default for InstallOptions {
    fn default() -> InstallOptions {
        InstallOptions {
            ownership: Ownership::default(),
            keep_previous: 2,
        }
    }
}

/// The steps of an install, in order, where a fault can be injected in tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    CreateStaging,
    /// After the file with this index was written and flushed.
    WroteFile(usize),
    PublishVersion,
    CreateLink,
    SwitchLink,
    MoveLegacy,
    Prune,
}

/// A simulated crash: the install stops where it is, without cleaning up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Crash;

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

fn crashed(step: Step) -> InstallError {
    InstallError {
        action: "simulated crash at",
        path: PathBuf::from(format!("{step:?}")),
        error: io::Error::other("fault injected"),
    }
}

/// The outcome of a successful install.
#[derive(Debug, Clone)]
pub struct Installed {
    /// The version directory now current.
    pub version: PathBuf,
    /// The version directory that was current before, if any, for restoring it.
    pub previous: Option<PathBuf>,
}

/// Paths that make up a lineage's installation.
#[derive(Debug, Clone)]
pub struct Layout {
    /// The lineage path services use, a link to the current version.
    pub dir: PathBuf,
    /// The directory that contains the versions.
    pub store: PathBuf,
    parent: PathBuf,
    name: String,
}

impl Layout {
    /// Computes the layout of a lineage directory. A link that points outside acme-dl's
    /// store (set up by an operator) is refused, since installing would replace it.
    pub fn new(dir: &Path) -> Result<Layout, InstallError> {
        let dir = dir.to_owned();
        if let Ok(target) = fs::read_link(&dir) {
            let ours = target.components().count() == 2
                && target
                    .to_string_lossy()
                    .starts_with(&format!(".{}.acme-dl/", file_name(&dir)));
            // Following an operator's link would turn the directory it points to, with
            // whatever else it contains, into acme-dl's link; so it is refused instead.
            if !ours {
                return Err(InstallError {
                    action: "installing into",
                    path: dir,
                    error: io::Error::other(format!(
                        "it is a symbolic link to {} that acme-dl did not create; set dir in \
                         the lineage's table to the real directory, or remove the link",
                        target.display()
                    )),
                });
            }
        }
        let parent = match dir.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_owned(),
            _ => PathBuf::from("."),
        };
        let name = file_name(&dir);
        let store = parent.join(format!(".{name}.acme-dl"));
        Ok(Layout {
            dir,
            store,
            parent,
            name,
        })
    }

    fn link_staging(&self) -> PathBuf {
        self.parent.join(format!(".{}.acme-dl-link", self.name))
    }

    fn link_target(&self, version: &Path) -> PathBuf {
        PathBuf::from(format!(".{}.acme-dl", self.name)).join(file_name(version))
    }

    /// Returns the version directory the lineage path links to, if it is one of ours.
    pub fn current(&self) -> Option<PathBuf> {
        let target = fs::read_link(&self.dir).ok()?;
        let version = self.parent.join(target);
        version.starts_with(&self.store).then_some(version)
    }

    /// Returns the version directories, oldest first.
    pub fn versions(&self) -> Vec<(u64, PathBuf)> {
        let mut versions: Vec<(u64, PathBuf)> = fs::read_dir(&self.store)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| {
                let name = entry.file_name().to_string_lossy().into_owned();
                let digits = name.strip_prefix(VERSION_PREFIX)?;
                if digits.is_empty()
                    || digits.len() > 18
                    || !digits.bytes().all(|b| b.is_ascii_digit())
                {
                    return None;
                }
                let number = digits.parse().ok()?;
                Some((number, entry.path()))
            })
            .collect();
        versions.sort();
        versions
    }
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Installs a set as a new version and switches the lineage path to it.
pub fn install_set(
    dir: &Path,
    files: &[NewFile],
    options: &InstallOptions,
) -> Result<Installed, InstallError> {
    install_set_with_faults(dir, files, options, &mut |_| Ok(()))
}

/// Installs a set, calling `fault` after each step; a `Crash` stops the install on the spot.
pub fn install_set_with_faults(
    dir: &Path,
    files: &[NewFile],
    options: &InstallOptions,
    fault: &mut dyn FnMut(Step) -> Result<(), Crash>,
) -> Result<Installed, InstallError> {
    let layout = Layout::new(dir)?;
    let mut step = |step: Step| fault(step).map_err(|Crash| crashed(step));
    create_dirs(&layout.store)?;
    // Two runs that do not share a lock file must still not interleave on one lineage.
    let _lock = lock_store(&layout)?;
    remove_leftovers(&layout);

    let previous = layout.current();
    remove_unlinked_versions(&layout, previous.as_deref());
    let legacy = previous.is_none() && fs::symlink_metadata(&layout.dir).is_ok_and(|m| m.is_dir());
    let highest = layout.versions().last().map_or(0, |(number, _)| *number);
    let number = highest
        .checked_add(if legacy { 2 } else { 1 })
        .filter(|number| *number <= MAX_VERSION)
        .ok_or_else(|| InstallError {
            action: "numbering a new version in",
            path: layout.store.clone(),
            error: io::Error::other(
                "version numbers are exhausted; remove the old set-* directories",
            ),
        })?;
    let version = layout.store.join(format!("{VERSION_PREFIX}{number:04}"));
    let staging = layout
        .store
        .join(format!("{STAGING_PREFIX}{VERSION_PREFIX}{number:04}"));

    DirBuilder::new()
        .mode(DIR_MODE)
        .create(&staging)
        .map_err(failed("creating directory", &staging))?;
    set_mode(&staging, DIR_MODE)?;
    step(Step::CreateStaging)?;
    let inherited_from = previous.clone().unwrap_or_else(|| layout.dir.clone());
    for (index, file) in files.iter().enumerate() {
        if let Err(error) = write_file(&staging, &inherited_from, file, &options.ownership) {
            let _ = fs::remove_dir_all(&staging);
            return Err(error);
        }
        step(Step::WroteFile(index))?;
    }
    // Relative links of a legacy directory point one level less deep than a version's.
    let depth_fix = if legacy { "../" } else { "" };
    if let Err(error) = carry_over(&inherited_from, &staging, files, depth_fix) {
        let _ = fs::remove_dir_all(&staging);
        return Err(error);
    }
    sync_dir(&staging)?;
    fs::rename(&staging, &version).map_err(failed("publishing", &version))?;
    sync_dir(&layout.store)?;
    step(Step::PublishVersion)?;

    switch_link(&layout, &version, &mut step)?;

    let previous = if legacy {
        let moved = layout
            .store
            .join(format!("{VERSION_PREFIX}{:04}", number - 1));
        fs::rename(layout.link_staging(), &moved)
            .map_err(failed("moving previous set to", &moved))?;
        sync_dir(&layout.store)?;
        step(Step::MoveLegacy)?;
        Some(moved)
    } else {
        previous
    };

    // The replaced set stays whatever --keep is, because a failed check command restores it.
    let protected: Vec<&Path> = previous.iter().map(PathBuf::as_path).collect();
    prune(&layout, &version, &protected, options.keep_previous);
    step(Step::Prune)?;
    Ok(Installed { version, previous })
}

/// Points the lineage path at `version` with one rename. A real directory in its place,
/// left by an older client, is swapped out atomically and left at the staging link path.
fn switch_link(
    layout: &Layout,
    version: &Path,
    step: &mut dyn FnMut(Step) -> Result<(), InstallError>,
) -> Result<(), InstallError> {
    let staging = layout.link_staging();
    let _ = fs::remove_file(&staging);
    std::os::unix::fs::symlink(layout.link_target(version), &staging)
        .map_err(failed("creating link", &staging))?;
    step(Step::CreateLink)?;

    let is_real_dir = fs::symlink_metadata(&layout.dir).is_ok_and(|m| m.is_dir());
    if is_real_dir {
        rustix::fs::renameat_with(
            rustix::fs::CWD,
            &staging,
            rustix::fs::CWD,
            &layout.dir,
            rustix::fs::RenameFlags::EXCHANGE,
        )
        .map_err(|errno| InstallError {
            action: "exchanging the directory with a link at",
            path: layout.dir.clone(),
            error: errno.into(),
        })?;
    } else {
        fs::rename(&staging, &layout.dir).map_err(failed("switching link", &layout.dir))?;
    }
    sync_dir(&layout.parent)?;
    step(Step::SwitchLink)
}

/// Points the lineage path back at `previous`, or removes it when there was none.
pub fn restore(dir: &Path, previous: Option<&Path>) -> Result<(), InstallError> {
    let layout = Layout::new(dir)?;
    let _lock = lock_store(&layout)?;
    match previous {
        Some(version) if !version.is_dir() => Err(InstallError {
            action: "restoring",
            path: version.to_owned(),
            error: io::Error::new(
                io::ErrorKind::NotFound,
                "the previous set no longer exists; the new set stays installed",
            ),
        }),
        Some(version) => switch_link(&layout, version, &mut |_| Ok(())),
        None => {
            fs::remove_file(&layout.dir).map_err(failed("removing link", &layout.dir))?;
            sync_dir(&layout.parent)
        }
    }
}

/// Switches a lineage back to the newest version older than the current one.
pub fn rollback(dir: &Path) -> Result<PathBuf, InstallError> {
    let layout = Layout::new(dir)?;
    // Without a store there is nothing to lock or to roll back to.
    if layout.current().is_none() {
        return Err(InstallError {
            action: "rolling back",
            path: layout.dir.clone(),
            error: io::Error::new(io::ErrorKind::NotFound, "not a set installed by acme-dl"),
        });
    }
    let _lock = lock_store(&layout)?;
    let current = layout.current().ok_or_else(|| InstallError {
        action: "rolling back",
        path: layout.dir.clone(),
        error: io::Error::new(io::ErrorKind::NotFound, "not a set installed by acme-dl"),
    })?;
    let versions = layout.versions();
    let current_number = versions
        .iter()
        .find(|(_, path)| *path == current)
        .map(|(n, _)| *n);
    let previous = versions
        .iter()
        .rev()
        .find(|(number, _)| Some(*number) < current_number)
        .map(|(_, path)| path.clone())
        .ok_or_else(|| InstallError {
            action: "rolling back",
            path: layout.dir.clone(),
            error: io::Error::new(io::ErrorKind::NotFound, "no previous set is kept"),
        })?;
    switch_link(&layout, &previous, &mut |_| Ok(()))?;
    Ok(previous)
}

/// Creates one file with its final mode before any byte is written, then flushes it.
fn write_file(
    staging: &Path,
    inherited_from: &Path,
    file: &NewFile,
    ownership: &Ownership,
) -> Result<(), InstallError> {
    let path = staging.join(&file.name);
    let old = fs::metadata(inherited_from.join(&file.name)).ok();
    let old_mode = old
        .as_ref()
        .map(|metadata| metadata.permissions().mode() & 0o777);
    let mode = if file.private {
        // A key never keeps bits for others, whatever the replaced file had.
        ownership
            .key_mode
            .or(old_mode.map(|mode| mode & 0o770))
            .unwrap_or(KEY_MODE)
    } else {
        ownership.cert_mode.or(old_mode).unwrap_or(CERT_MODE)
    };

    // The file is created readable by its owner only, before any byte is written. The
    // umask can only narrow that, and set_permissions below sets the final mode.
    let mut handle = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(failed("creating", &path))?;
    let uid = ownership.uid.or(old.as_ref().map(MetadataExt::uid));
    let gid = ownership.gid.or(old.as_ref().map(MetadataExt::gid));
    if uid.is_some() || gid.is_some() {
        std::os::unix::fs::fchown(&handle, uid, gid).map_err(failed("changing owner of", &path))?;
    }
    handle
        .set_permissions(fs::Permissions::from_mode(mode))
        .map_err(failed("setting mode of", &path))?;
    handle
        .write_all(&file.contents)
        .map_err(failed("writing", &path))?;
    handle.sync_all().map_err(failed("flushing", &path))
}

/// Copies the files an operator keeps beside a set (a README, a dhparam.pem, a folder)
/// from the previous version into the new one, so they stay at the lineage path.
/// `depth_fix` is prefixed to relative link targets when the new place is deeper.
fn carry_over(
    previous: &Path,
    staging: &Path,
    files: &[NewFile],
    depth_fix: &str,
) -> Result<(), InstallError> {
    let Ok(entries) = fs::read_dir(previous) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name_text = name.to_string_lossy();
        if name_text.starts_with('.') || files.iter().any(|file| file.name == name_text) {
            continue;
        }
        copy_entry(&entry.path(), &staging.join(&name), depth_fix)?;
    }
    Ok(())
}

/// Copies a file, link or directory tree, keeping modes and owners.
fn copy_entry(source: &Path, target: &Path, depth_fix: &str) -> Result<(), InstallError> {
    let Ok(metadata) = fs::symlink_metadata(source) else {
        return Ok(());
    };
    if metadata.file_type().is_symlink() {
        let link = fs::read_link(source).map_err(failed("reading link", source))?;
        let link = if link.is_relative() {
            Path::new(depth_fix).join(link)
        } else {
            link
        };
        std::os::unix::fs::symlink(link, target).map_err(failed("copying link to", target))?;
        return Ok(());
    }
    if metadata.is_dir() {
        DirBuilder::new()
            .create(target)
            .map_err(failed("creating directory", target))?;
        for entry in fs::read_dir(source)
            .map_err(failed("reading", source))?
            .flatten()
        {
            copy_entry(&entry.path(), &target.join(entry.file_name()), depth_fix)?;
        }
    } else if metadata.is_file() {
        fs::copy(source, target).map_err(failed("copying to", target))?;
    } else {
        return Ok(());
    }
    let _ = std::os::unix::fs::chown(target, Some(metadata.uid()), Some(metadata.gid()));
    set_mode(target, metadata.permissions().mode() & 0o7777)
}

fn set_mode(path: &Path, mode: u32) -> Result<(), InstallError> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(failed("setting mode of", path))
}

fn sync_dir(dir: &Path) -> Result<(), InstallError> {
    File::open(dir)
        .and_then(|handle| handle.sync_all())
        .map_err(failed("flushing directory", dir))
}

/// Marker in a version store: hooks for the current set have not finished.
const HOOKS_PENDING: &str = "hooks-pending";

/// Records whether the hooks for the lineage's current set still have to run, so a run
/// killed between installing and reloading leaves the reload to the next run.
pub fn set_hooks_pending(dir: &Path, pending: bool) {
    let Ok(layout) = Layout::new(dir) else { return };
    let marker = layout.store.join(HOOKS_PENDING);
    if pending {
        let _ = File::create(&marker).and_then(|file| file.sync_all());
    } else {
        let _ = fs::remove_file(&marker);
    }
}

/// Returns the current version when its hooks have not finished.
pub fn pending_hooks(dir: &Path) -> Option<PathBuf> {
    let layout = Layout::new(dir).ok()?;
    if !layout.store.join(HOOKS_PENDING).exists() {
        return None;
    }
    layout.current()
}

/// Returns the version the lineage path links to now.
pub fn current_version(dir: &Path) -> Option<PathBuf> {
    Layout::new(dir).ok()?.current()
}

/// Removes what an interrupted install of the lineage at `dir` left behind.
pub fn clean_up(dir: &Path) {
    if let Ok(layout) = Layout::new(dir)
        && layout.store.is_dir()
        && let Ok(_lock) = lock_store(&layout)
    {
        remove_leftovers(&layout);
    }
}

/// Removes what an interrupted run left: staging directories and a staging link.
fn remove_leftovers(layout: &Layout) {
    for entry in fs::read_dir(&layout.store).into_iter().flatten().flatten() {
        if entry
            .file_name()
            .to_string_lossy()
            .starts_with(STAGING_PREFIX)
        {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
    let staging = layout.link_staging();
    match fs::symlink_metadata(&staging) {
        Ok(metadata) if metadata.is_dir() && contains_pem(&staging) => {
            // A crash after a directory exchange left the old directory here: keep it as
            // the oldest version rather than lose the operator's files.
            let number = layout
                .versions()
                .first()
                .map_or(1, |(n, _)| n.saturating_sub(1));
            let _ = fs::rename(
                &staging,
                layout.store.join(format!("{VERSION_PREFIX}{number:04}")),
            );
        }
        Ok(_) => {
            let _ = fs::remove_file(&staging);
        }
        Err(_) => {}
    }
}

fn contains_pem(dir: &Path) -> bool {
    fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .any(|entry| entry.file_name().to_string_lossy().ends_with(".pem"))
}

/// Deletes the oldest versions other than `current` beyond `keep`, never one of `protected`.
fn prune(layout: &Layout, current: &Path, protected: &[&Path], keep: usize) {
    let others: Vec<PathBuf> = layout
        .versions()
        .into_iter()
        .map(|(_, path)| path)
        .filter(|path| path != current)
        .collect();
    let excess = others.len().saturating_sub(keep);
    for path in others.iter().take(excess) {
        if !protected.contains(&path.as_path()) {
            let _ = fs::remove_dir_all(path);
        }
    }
}

/// Removes versions that the lineage path does not lead back to: those newer than the
/// current one, left by a run killed between publishing and switching, or every one when
/// there is no current version.
fn remove_unlinked_versions(layout: &Layout, current: Option<&Path>) {
    let versions = layout.versions();
    let current_number = current.and_then(|current| {
        versions
            .iter()
            .find(|(_, path)| path == current)
            .map(|(number, _)| *number)
    });
    for (number, path) in &versions {
        if current_number.is_none_or(|current| *number > current) {
            let _ = fs::remove_dir_all(path);
        }
    }
}

/// Creates a directory and its missing parents, each with `DIR_MODE` whatever the umask,
/// so services can traverse them.
pub fn create_dirs(path: &Path) -> Result<(), InstallError> {
    if path.as_os_str().is_empty() || path.exists() {
        return Ok(());
    }
    if let Some(parent) = path.parent() {
        create_dirs(parent)?;
    }
    match DirBuilder::new().mode(DIR_MODE).create(path) {
        Ok(()) => set_mode(path, DIR_MODE),
        Err(error) if error.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(error) => Err(InstallError {
            action: "creating directory",
            path: path.to_owned(),
            error,
        }),
    }
}

/// Locks a lineage's version store for the time of one install, rollback or clean-up.
fn lock_store(layout: &Layout) -> Result<File, InstallError> {
    let path = layout.store.join(STORE_LOCK);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(failed("opening lock", &path))?;
    rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive).map_err(|errno| {
        InstallError {
            action: "locking",
            path,
            error: errno.into(),
        }
    })?;
    Ok(file)
}

#[cfg(test)]
mod tests;
