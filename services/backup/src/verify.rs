//! `verify`: decrypt a backup and check all of it, writing nothing but
//! the parts a caller asks to check itself.

use std::path::Path;

use crate::error::{Error, Result};
use crate::manifest::Manifest;
use crate::naming::BackupName;
use crate::open::{CheckedBackup, Discard, Unlock, check_archive, open_backup};
use crate::progress::{Phase, Progress};
use crate::restore::{Extractor, RestoreCheck};
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

/// Parts of a backup that [`verify_parts`] unpacks for the caller's own
/// check, e.g. the vault's database to recompute its log.
pub struct PartsCheck<'a> {
    /// Entry paths to unpack, each with everything under it (`vault/db`).
    pub parts: &'a [&'a str],
    /// Where the scratch directory (mode 0700, removed afterwards) is made.
    pub scratch_in: &'a Path,
    /// Runs on the scratch directory once every entry checked out.
    pub check: RestoreCheck<'a>,
}

/// [`verify`], and then `parts.check` on the parts it names, unpacked into
/// a scratch directory that is removed again whatever the outcome.
pub fn verify_parts(
    target: &dyn Target,
    name: &BackupName,
    unlock: &Unlock<'_>,
    parts: &PartsCheck<'_>,
    progress: &dyn Progress,
) -> Result<CheckedBackup> {
    let backup = open_backup(target, name, unlock)?;
    let scratch = tempfile::Builder::new()
        .prefix(".archipel-verify-")
        .tempdir_in(parts.scratch_in)
        .map_err(|source| Error::RestoreWrite {
            path: parts.scratch_in.to_owned(),
            source,
        })?;
    progress.begin(Phase::Verify, backup.opened.manifest.total_bytes);
    let mut extractor = Extractor::new(scratch.path(), Some(parts.parts));
    let checked = check_archive(target, &backup, unlock, &mut extractor, progress)?;
    extractor.settle()?;
    (parts.check)(scratch.path()).map_err(Error::ContentCheck)?;
    Ok(checked)
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
