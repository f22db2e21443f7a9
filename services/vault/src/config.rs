//! The vault's part of the node configuration (`[vault]`).

use std::{path::PathBuf, time::Duration};

use serde::Deserialize;

use crate::{CheckpointPolicy, retention::RetentionPolicy};

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VaultConfig {
    /// The vault key: a file of 64 hex digits (256 bits), mode 0600, placed by
    /// provisioning. Required on production nodes; a development node
    /// generates one in its data folder.
    pub key_file: Option<PathBuf>,
    /// Sign a checkpoint after this many new records...
    pub checkpoint_every_records: u64,
    /// ...or after this many seconds, if anything was added.
    pub checkpoint_interval_secs: u64,
    /// What is kept, for how long, and when it is transferred.
    pub retention: RetentionPolicy,
    /// Whose archive this is: the publisher of Woo packages and the
    /// archive creator (archiefvormer) in e-Depot transfers. Both are
    /// refused until it is set.
    pub organisation: Option<Organisation>,
}

/// A government organisation, as the Woo and e-Depot metadata name it.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Organisation {
    /// Its name, e.g. "ministerie van Binnenlandse Zaken en Koninkrijksrelaties".
    pub name: String,
    /// Its TOOI URI, e.g.
    /// `https://identifier.overheid.nl/tooi/id/ministerie/mnre1034`.
    pub identifier: String,
}

impl Default for VaultConfig {
    fn default() -> Self {
        Self {
            key_file: None,
            checkpoint_every_records: 1000,
            checkpoint_interval_secs: 60,
            retention: RetentionPolicy::default(),
            organisation: None,
        }
    }
}

impl VaultConfig {
    pub fn checkpoint_policy(&self) -> CheckpointPolicy {
        CheckpointPolicy {
            every_records: self.checkpoint_every_records.max(1),
            every: Duration::from_secs(self.checkpoint_interval_secs.max(1)),
        }
    }
}
