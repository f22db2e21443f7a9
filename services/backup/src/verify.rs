//! `verify`: decrypt a backup and check all of it, writing nothing.

use crate::error::Result;
use crate::manifest::Manifest;
use crate::naming::BackupName;
use crate::open::{CheckedBackup, Discard, Unlock, check_archive, open_backup};
use crate::progress::{Phase, Progress};
use crate::target::Target;

/// Checks the backup `name` in `target` end to end: the manifest's
/// signatures, the archive's size and hash, and every entry's content.
pub fn verify(
    target: &dyn Target,
    name: &BackupName,
    unlock: &Unlock<'_>,
    progress: &dyn Progress,
) -> Result<CheckedBackup> {
    let backup = open_backup(target, name, unlock)?;
    progress.begin(Phase::Verify, backup.opened.manifest.total_bytes);
    check_archive(target, &backup, unlock, &mut Discard, progress)
}

/// Reads and checks only the manifest object (small): what `list` shows in
/// detail, without downloading the archive.
pub fn read_manifest(
    target: &dyn Target,
    name: &BackupName,
    unlock: &Unlock<'_>,
) -> Result<Manifest> {
    Ok(open_backup(target, name, unlock)?.opened.manifest)
}
