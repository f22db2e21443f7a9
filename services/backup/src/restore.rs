//! `restore`: rebuild a node's data directory from a backup, all or nothing.
//!
//! Entries are unpacked into a hidden temporary sibling of the destination
//! while every hash is checked; then permissions are set, the file system
//! is synced, the caller's own check runs (e.g. the vault verifies its log
//! in the restored data), and only then is the temporary directory renamed
//! onto the destination. Any failure removes the temporary directory and
//! leaves the destination as it was.

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::manifest::Entry;
use crate::naming::BackupName;
use crate::open::{CheckedBackup, EntrySink, Unlock, check_archive, open_backup};
use crate::progress::{Phase, Progress};
use crate::target::Target;

/// A caller's check of the restored data, run on the temporary directory
/// before it is switched into place; an `Err` aborts the restore.
pub type RestoreCheck<'a> = &'a (dyn Fn(&Path) -> std::result::Result<(), String> + Sync);

/// Restores the backup `name` into `destination`, which must not exist or
/// be an empty directory, on the same file system as its parent.
pub fn restore(
    target: &dyn Target,
    name: &BackupName,
    unlock: &Unlock<'_>,
    destination: &Path,
    check: Option<RestoreCheck<'_>>,
    progress: &dyn Progress,
) -> Result<CheckedBackup> {
    let (parent, file_name) = check_destination(destination)?;
    let backup = open_backup(target, name, unlock)?;
    let mut prefix = OsString::from(".");
    prefix.push(&file_name);
    prefix.push(".restore-");
    let staging = tempfile::Builder::new()
        .prefix(&prefix)
        .tempdir_in(&parent)
        .map_err(|source| Error::RestoreWrite {
            path: parent.clone(),
            source,
        })?;

    // A node's data is private to it: the new folder is too, from the start.
    fs::set_permissions(staging.path(), fs::Permissions::from_mode(0o700)).map_err(|source| {
        Error::RestoreWrite {
            path: staging.path().to_owned(),
            source,
        }
    })?;
    progress.begin(Phase::Restore, backup.opened.manifest.total_bytes);
    let mut extractor = Extractor::new(staging.path(), None);
    let checked = check_archive(target, &backup, unlock, &mut extractor, progress)?;
    extractor.settle()?;
    if let Some(check) = check {
        check(staging.path()).map_err(Error::RestoreCheck)?;
    }

    // Re-check just before switching: a destination that filled up in the
    // meantime makes the rename fail (ENOTEMPTY) and nothing is replaced.
    check_destination(destination)?;
    let staged = staging.keep();
    if let Err(source) = fs::rename(&staged, destination) {
        let _ = fs::remove_dir_all(&staged);
        return Err(Error::Destination {
            path: destination.to_owned(),
            reason: format!(
                "could not be switched into place ({source}); it must be on the same file system as its parent and not a mount point"
            ),
        });
    }
    File::open(&parent)
        .and_then(|dir| dir.sync_all())
        .map_err(|source| Error::RestoreWrite {
            path: parent.clone(),
            source,
        })?;
    Ok(checked)
}

fn check_destination(destination: &Path) -> Result<(PathBuf, OsString)> {
    let refuse = |reason: String| Error::Destination {
        path: destination.to_owned(),
        reason,
    };
    match fs::symlink_metadata(destination) {
        Ok(metadata) if metadata.is_dir() => {
            let mut entries = fs::read_dir(destination)
                .map_err(|error| refuse(format!("cannot be read: {error}")))?;
            if entries.next().is_some() {
                return Err(refuse(
                    "is not empty; restore only into a new or empty directory".to_owned(),
                ));
            }
        }
        Ok(_) => return Err(refuse("exists and is not a directory".to_owned())),
        Err(error) if error.kind() == io::ErrorKind::NotFound => {}
        Err(error) => return Err(refuse(format!("cannot be used: {error}"))),
    }
    let file_name = destination
        .file_name()
        .ok_or_else(|| refuse("has no directory name".to_owned()))?
        .to_owned();
    let parent = match destination.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_owned(),
        _ => PathBuf::from("."),
    };
    if !parent.is_dir() {
        return Err(refuse(format!(
            "cannot be created: its parent {} is not a directory",
            parent.display()
        )));
    }
    Ok((parent, file_name))
}

/// Writes checked entries under the staging directory. Paths were checked
/// to be plain relative paths before they get here, and the staging
/// directory is new, so nothing lands outside it.
pub(crate) struct Extractor<'a> {
    root: &'a Path,
    placed: Vec<(PathBuf, u32)>,
    /// Only entries at or under these paths; `None`: all of them.
    only: Option<&'a [&'a str]>,
}

impl<'a> Extractor<'a> {
    pub(crate) fn new(root: &'a Path, only: Option<&'a [&'a str]>) -> Self {
        Self {
            root,
            placed: Vec::new(),
            only,
        }
    }

    fn path(&self, entry: &Entry) -> PathBuf {
        self.root.join(&entry.path)
    }

    fn wanted(&self, entry: &Entry) -> bool {
        self.only.is_none_or(|parts| {
            parts.iter().any(|part| {
                entry.path == *part
                    || entry
                        .path
                        .strip_prefix(part)
                        .is_some_and(|rest| rest.starts_with('/'))
            })
        })
    }

    /// Permissions last (a read-only directory would refuse its own
    /// entries), deepest first; then one sync for the whole file system.
    pub(crate) fn settle(&mut self) -> Result<()> {
        for (path, mode) in self.placed.iter().rev() {
            // Permission bits only: a manifest cannot make a file setuid,
            // setgid or sticky.
            let mode = *mode & 0o777;
            fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(|source| {
                Error::RestoreWrite {
                    path: path.clone(),
                    source,
                }
            })?;
        }
        let root = File::open(self.root).map_err(|source| Error::RestoreWrite {
            path: self.root.to_owned(),
            source,
        })?;
        nix::unistd::syncfs(&root).map_err(|errno| Error::RestoreWrite {
            path: self.root.to_owned(),
            source: io::Error::from(errno),
        })
    }
}

impl EntrySink for Extractor<'_> {
    fn directory(&mut self, entry: &Entry) -> Result<()> {
        if !self.wanted(entry) {
            return Ok(());
        }
        let path = self.path(entry);
        fs::create_dir_all(&path).map_err(|source| Error::RestoreWrite {
            path: path.clone(),
            source,
        })?;
        self.placed.push((path, entry.mode));
        Ok(())
    }

    fn file(&mut self, entry: &Entry) -> Result<Box<dyn Write + '_>> {
        if !self.wanted(entry) {
            return Ok(Box::new(io::sink()));
        }
        let path = self.path(entry);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(|source| Error::RestoreWrite {
                path: parent.to_owned(),
                source,
            })?;
        }
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(|source| Error::RestoreWrite {
                path: path.clone(),
                source,
            })?;
        self.placed.push((path, entry.mode));
        Ok(Box::new(file))
    }
}
