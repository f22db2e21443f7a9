//! Opening a node's data: the homeserver's database and the vault's, and
//! the homeserver and vault over them.

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

/// An opened node.
pub fn open(config: &Config) -> Result<Node> {
    open_with(config, false)
}

/// Opens one of the node's databases. If it is locked by the running node
/// and `may_follow`, follows it read-only instead (with its scratch folder
/// in `scratch`, shared by both databases).
fn open_store(
    data_dir: &Path,
    path: &Path,
    columns: &[ColumnSpec],
    options: &StoreOptions,
    may_follow: bool,
    scratch: &mut Option<tempfile::TempDir>,
) -> Result<Store> {
    match Store::open(path, columns, options) {
        Ok(store) => Ok(store),
        Err(e) if e.to_string().contains("lock") && may_follow => {
            let root = match scratch {
                Some(root) => root,
                None => scratch.insert(
                    tempfile::Builder::new()
                        .prefix("archipel-follower-")
                        .tempdir()
                        .context("creating a scratch folder to read the running node's database")?,
                ),
            };
            let dir = root
                .path()
                .join(path.strip_prefix(data_dir).unwrap_or(path));
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            Store::open_follower(path, &dir, columns, options)
                .context("reading the running node's database")
        }
        Err(e) if e.to_string().contains("lock") => Err(Running {
            data_dir: data_dir.to_path_buf(),
            cause: e.to_string(),
        }
        .into()),
        Err(e) => Err(e.into()),
    }
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
    // Two databases: the homeserver's, whose write-ahead log every
    // acknowledged message waits on, and the vault's, so that archiving
    // never adds its bytes to a client's fsync. The capture outbox in the
    // first hands events to the second (see `capture.rs`).
    let budget = config.node.cache_mib << 20;
    let homeserver_options = StoreOptions {
        cache_bytes: budget - budget / 4,
        ..StoreOptions::default()
    };
    let vault_options = StoreOptions {
        cache_bytes: budget / 4,
        ..StoreOptions::default()
    };
    let mut scratch = None;
    // The console keeps its sessions beside the accounts they sign in.
    let columns = [
        archipel_homeserver::columns::COLUMNS,
        crate::sessions::COLUMNS,
    ]
    .concat();
    let store = open_store(
        data_dir,
        &data_dir.join("db"),
        &columns,
        &homeserver_options,
        may_follow,
        &mut scratch,
    )?;
    let vault_dir = data_dir.join("vault");
    std::fs::create_dir_all(&vault_dir)
        .with_context(|| format!("creating {}", vault_dir.display()))?;
    let vault_store = open_store(
        data_dir,
        &vault_dir.join("db"),
        archipel_vault::columns::COLUMNS,
        &vault_options,
        scratch.is_some(),
        &mut scratch,
    )?;
    let homeserver = Homeserver::open(
        config.homeserver.clone(),
        config.federation.clone(),
        store.clone(),
        data_dir,
    )
    .context("starting the homeserver")?;
    let vault = open_vault(config, vault_store).context("opening the archive vault")?;
    if let Some(archive) = &homeserver.services.archive_member {
        vault.watch_archive_member(archive.as_str());
    }
    if scratch.is_none() {
        crate::erasure::complete_purges(&homeserver.services, &vault)
            .context("finishing an interrupted erasure")?;
        vault
            .remove_unfinished_media()
            .context("removing half-sealed media files")?;
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
    let wanted = config.homeserver.server_name.as_str();
    match crate::config::read_server_name(dir) {
        Some(existing) if existing == wanted => Ok(()),
        Some(existing) => anyhow::bail!(
            "{} belongs to server `{existing}`, but the configuration says `{wanted}`; a node's server name cannot change",
            dir.display(),
        ),
        None => {
            // Durably: an empty file after a power cut would make the node
            // refuse its own data.
            let path = dir.join("server_name");
            archipel_store::create_durably(&path, format!("{wanted}\n").as_bytes(), 0o600)
                .with_context(|| format!("writing {}", path.display()))
        }
    }
}
