//! `list`: the backups in a target, from object names and sizes alone (no
//! key needed).

use std::collections::BTreeMap;

use jiff::Timestamp;

use crate::error::Result;
use crate::naming::{ARCHIVE_SUFFIX, BackupName, MANIFEST_SUFFIX};
use crate::target::Target;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackupSummary {
    pub name: BackupName,
    /// Bytes of the encrypted archive, if it is there.
    pub archive_size: Option<u64>,
    /// Archive and manifest object both present. An incomplete backup is
    /// the leftover of a run that failed (or is still running).
    pub complete: bool,
}

impl BackupSummary {
    pub fn created(&self) -> Timestamp {
        self.name.created()
    }
}

/// Every backup in `target`, oldest first.
pub fn list(target: &dyn Target) -> Result<Vec<BackupSummary>> {
    let mut backups: BTreeMap<BackupName, (Option<u64>, bool)> = BTreeMap::new();
    for object in target.list()? {
        let Some((name, suffix)) = BackupName::from_object(&object.name) else {
            continue;
        };
        let (archive_size, has_manifest) = backups.entry(name).or_default();
        match suffix {
            ARCHIVE_SUFFIX => *archive_size = Some(object.size),
            MANIFEST_SUFFIX => *has_manifest = true,
            _ => {}
        }
    }
    Ok(backups
        .into_iter()
        .map(|(name, (archive_size, has_manifest))| BackupSummary {
            name,
            archive_size,
            complete: has_manifest && archive_size.is_some(),
        })
        .collect())
}
