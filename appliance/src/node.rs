//! Opening a node's data: one store, and the homeserver and vault over it.

use std::{path::Path, sync::Arc};

use anyhow::{Context, Result};
use archipel_homeserver::Homeserver;
use archipel_store::{ColumnSpec, Store, StoreOptions};
use archipel_vault::{Vault, seal::VaultKey};

use crate::config::Config;

/// The store, homeserver and vault of one data folder.
pub struct Node {
    pub homeserver: Homeserver,
    pub vault: Arc<Vault>,
    /// The follower's scratch folder, when reading a running node's database.
    _scratch: Option<tempfile::TempDir>,
}

/// The node whose data a command would open is running: its database is
/// locked. Commands that change the data go to the node itself instead.
#[derive(Debug)]
pub struct Running {
    pub data_dir: std::path::PathBuf,
    pub cause: String,
}

impl std::fmt::Display for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the node with data in {} is running (its database is in use: {})",
            self.data_dir.display(),
            self.cause
        )
    }
}

impl std::error::Error for Running {}

/// Every column family of the node: the homeserver's and the vault's.
fn columns() -> Vec<ColumnSpec> {
    [
        archipel_homeserver::columns::COLUMNS,
        archipel_vault::columns::COLUMNS,
    ]
    .concat()
}

/// An opened node.
pub fn open(config: &Config) -> Result<Node> {
    open_with(config, false)
}

/// Opens a node for commands that only read. If the node is running (its
/// database locked), reads follow the running node's database instead
/// (RocksDB secondary mode): current as of the moment of opening.
pub fn open_for_reading(config: &Config) -> Result<Node> {
    open_with(config, true)
}

fn open_with(config: &Config, may_follow: bool) -> Result<Node> {
    let data_dir = &config.node.data_dir;
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating data folder {}", data_dir.display()))?;
    restrict_permissions(data_dir)?;
    check_server_name(config, data_dir)?;
    let options = StoreOptions {
        cache_bytes: config.node.cache_mib << 20,
        ..StoreOptions::default()
    };
    let db = data_dir.join("db");
    let mut scratch = None;
    let store = match Store::open(&db, &columns(), &options) {
        Ok(store) => store,
        Err(e) if e.to_string().contains("lock") && may_follow => {
            let dir = tempfile::Builder::new()
                .prefix("archipel-follower-")
                .tempdir()
                .context("creating a scratch folder to read the running node's database")?;
            let store = Store::open_follower(&db, dir.path(), &columns(), &options)
                .context("reading the running node's database")?;
            scratch = Some(dir);
            store
        }
        Err(e) if e.to_string().contains("lock") => {
            return Err(Running {
                data_dir: data_dir.clone(),
                cause: e.to_string(),
            }
            .into());
        }
        Err(e) => return Err(e.into()),
    };
    let homeserver = Homeserver::open(config.homeserver.clone(), store.clone(), data_dir)
        .context("starting the homeserver")?;
    let vault = open_vault(config, store).context("opening the archive vault")?;
    if scratch.is_none() {
        crate::erasure::complete_purges(&homeserver.services, &vault)
            .context("finishing an interrupted erasure")?;
    }
    Ok(Node {
        homeserver,
        vault: Arc::new(vault),
        _scratch: scratch,
    })
}

fn open_vault(config: &Config, store: Store) -> Result<Vault> {
    let data_dir = &config.node.data_dir;
    let key = match &config.vault.key_file {
        Some(path) => VaultKey::load(path)?,
        None => VaultKey::load_or_generate(&data_dir.join("vault.key"))?,
    };
    let signer = node_signing_key(data_dir)?;
    Ok(Vault::open(
        store,
        &data_dir.join("vault"),
        key,
        signer,
        archipel_vault::origin_for(config.homeserver.server_name.as_str()),
        config.vault.checkpoint_policy(),
    )?)
}

/// The node's ed25519 key (the one that signs its Matrix events) also signs
/// the vault's checkpoints.
pub fn node_signing_key(data_dir: &Path) -> Result<ed25519_dalek::SigningKey> {
    use ed25519_dalek::pkcs8::DecodePrivateKey;
    let path = data_dir.join("signing.key");
    let der = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    ed25519_dalek::SigningKey::from_pkcs8_der(&der)
        .map_err(|e| anyhow::anyhow!("{}: not an ed25519 key: {e}", path.display()))
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
