//! Opening a node's data: the store and the homeserver over it.

use std::path::Path;

use anyhow::{Context, Result};
use archipel_homeserver::{Homeserver, columns::COLUMNS};
use archipel_store::{Store, StoreOptions};

use crate::config::Config;

pub fn open(config: &Config) -> Result<Homeserver> {
    let data_dir = &config.node.data_dir;
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating data folder {}", data_dir.display()))?;
    restrict_permissions(data_dir)?;
    check_server_name(config, data_dir)?;
    let options = StoreOptions {
        cache_bytes: config.node.cache_mib << 20,
        ..StoreOptions::default()
    };
    let store = Store::open(&data_dir.join("db"), COLUMNS, &options).map_err(|e| {
        if e.to_string().contains("lock") {
            anyhow::anyhow!(
                "the database in {} is in use: is the node running? ({e})",
                data_dir.display()
            )
        } else {
            anyhow::anyhow!(e)
        }
    })?;
    Homeserver::open(config.homeserver.clone(), store, data_dir).context("starting the homeserver")
}

fn restrict_permissions(dir: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("restricting {}", dir.display()))
}

/// A node's server name is fixed at its first start: every ID it ever made contains it.
fn check_server_name(config: &Config, dir: &Path) -> Result<()> {
    let path = dir.join("server_name");
    let wanted = config.homeserver.server_name.as_str();
    match std::fs::read_to_string(&path) {
        Ok(existing) if existing.trim() == wanted => Ok(()),
        Ok(existing) => anyhow::bail!(
            "{} belongs to server `{}`, but the configuration says `{wanted}`; a node's server name cannot change",
            dir.display(),
            existing.trim()
        ),
        Err(_) => std::fs::write(&path, format!("{wanted}\n"))
            .with_context(|| format!("writing {}", path.display())),
    }
}
