//! One backup of a snapshot written to each target: what `archipel backup
//! create` and the schedule both do.

use std::time::Instant;

use anyhow::{Result, anyhow};
use archipel_backup::{CreateOptions, Progress};
use base64::{Engine, engine::general_purpose::STANDARD as B64};

use super::{OpenTarget, Snapshot};
use crate::{config::Config, node};

/// One target's outcome of `create`.
pub struct Written {
    pub target: String,
    pub outcome: Result<(archipel_backup::BackupInfo, f64)>,
}

/// Writes one backup of `snapshot` to each target, one after the other. A
/// failing target does not stop the others.
pub fn write_backups(
    config: &Config,
    snapshot: &Snapshot,
    targets: &[OpenTarget],
    recipients: &[String],
    progress: &dyn Fn(&str) -> Box<dyn Progress>,
) -> Vec<Written> {
    let (sources, mut metadata) = super::sources(config, snapshot);
    let signing_key = node::node_signing_key(&config.node.data_dir);
    if let Ok(key) = &signing_key {
        metadata.insert(NODE_KEY.into(), B64.encode(key.verifying_key().as_bytes()));
    }
    targets
        .iter()
        .map(|target| {
            let outcome = (|| {
                let signing_key = signing_key
                    .as_ref()
                    .map_err(|e| anyhow!("the node key: {e:#}"))?
                    .clone();
                let mut options = CreateOptions::new(
                    config.homeserver.server_name.as_str(),
                    signing_key,
                    super::encryption(target, recipients)?,
                );
                options.metadata.clone_from(&metadata);
                let started = Instant::now();
                let bar = progress(&target.name);
                let info =
                    archipel_backup::create(&sources, &options, target.target.as_ref(), &*bar)?;
                Ok((info, started.elapsed().as_secs_f64()))
            })();
            Written {
                target: target.name.clone(),
                outcome,
            }
        })
        .collect()
}

/// The manifest's record of the node's public key (base64), which signs the
/// manifest and the vault's checkpoints.
pub(super) const NODE_KEY: &str = "node_key";
