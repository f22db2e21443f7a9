//! `archipel backup list` and `archipel backup verify`: what the targets
//! hold, and a backup opened and checked part by part.

use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use archipel_backup::{BackupName, CheckedBackup, DecryptionKey, PartsCheck, SecretString, Unlock};
use base64::{Engine, engine::general_purpose::STANDARD as B64};
use serde_json::{Value, json};

use super::{KeyArgs, human_bytes, progress::Bar};
use crate::{
    backup::{OpenTarget, VAULT_CHECKPOINT, write::NODE_KEY},
    config::Config,
    node,
};

pub(super) fn list(targets: &[OpenTarget], json: bool) -> Result<()> {
    let mut rows = Vec::new();
    for target in targets {
        let backups = archipel_backup::list(target.target.as_ref())?;
        if json {
            rows.extend(backups.iter().map(|b| {
                json!({
                    "target": target.name, "name": b.name.as_str(),
                    "created": b.created().to_string(), "complete": b.complete,
                    "archive_size": b.archive_size,
                })
            }));
            continue;
        }
        println!("{} ({}):", target.name, target.target.describe());
        if backups.is_empty() {
            println!("  no backups");
        }
        for backup in &backups {
            println!(
                "  {}  {:>10}  {}",
                backup.name,
                backup.archive_size.map_or("-".into(), human_bytes),
                if backup.complete {
                    "complete"
                } else {
                    "INCOMPLETE (a failed or running backup)"
                }
            );
        }
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    }
    Ok(())
}

/// The backup `name`, or the newest complete one.
pub(super) fn choose(target: &OpenTarget, name: Option<&str>) -> Result<BackupName> {
    if let Some(name) = name {
        return Ok(BackupName::parse(name)?);
    }
    archipel_backup::list(target.target.as_ref())?
        .into_iter()
        .rev()
        .find(|b| b.complete)
        .map(|b| b.name)
        .ok_or_else(|| anyhow!("{}: no complete backup", target.target.describe()))
}

pub(super) fn decryption_key(args: &KeyArgs) -> Result<DecryptionKey> {
    if args.passphrase {
        let passphrase = match std::env::var("ARCHIPEL_BACKUP_PASSPHRASE") {
            Ok(passphrase) => passphrase,
            Err(_) => rpassword::prompt_password("Backup passphrase: ")
                .context("reading the passphrase")?,
        };
        return Ok(DecryptionKey::from_passphrase(SecretString::from(
            passphrase,
        )));
    }
    let Some(path) = &args.identity else {
        bail!(
            "give the age identity that opens the backup (--identity FILE), or --passphrase for a recovery copy"
        );
    };
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    DecryptionKey::parse_identity_file(&text).with_context(|| format!("{}", path.display()))
}

/// Opens the backup `name` (default: the newest complete) in `target` with
/// `key` and checks all of it: the manifest's signatures by the node's key
/// (`pinned`, or the node's own from `config`), every file's hash, and the
/// vault it holds against its checkpoint. Returns the check and what the
/// vault said. What `archipel backup verify` and the web console run.
pub(crate) fn check(
    config: Option<&Config>,
    target: &OpenTarget,
    name: Option<&str>,
    key: &DecryptionKey,
    pinned: Option<&str>,
    progress: &dyn archipel_backup::Progress,
) -> Result<(CheckedBackup, String)> {
    let opened = open_manifest(config, target, name, key, pinned)?;
    let check = |root: &Path| opened.check_vault(root);
    // The vault's database can be large: unpack it beside the node's data
    // (same encrypted disk) rather than in a memory-backed /tmp.
    let scratch_in = config
        .map(|c| c.node.data_dir.clone())
        .filter(|dir| dir.is_dir())
        .unwrap_or_else(std::env::temp_dir);
    let parts = PartsCheck {
        parts: &["vault/db", "vault/media"],
        scratch_in: &scratch_in,
        check: &check,
    };
    let checked = archipel_backup::verify_parts(
        target.target.as_ref(),
        &opened.name,
        &Unlock::new(key).trusting(&opened.node_key),
        &parts,
        progress,
    )?;
    Ok((checked, opened.vault_said()))
}

/// What the manifest says about the node, checked against what this
/// machine knows of it.
pub(super) struct Opened {
    pub(super) name: BackupName,
    pub(super) node_key: ed25519_dalek::VerifyingKey,
    vault_checkpoint: String,
    pub(super) server_name: String,
    /// What [`Opened::check_vault`] found, for the report.
    vault_said: std::sync::Mutex<String>,
}

impl Opened {
    /// The check of the vault unpacked under `root` (by verify or restore).
    pub(super) fn check_vault(&self, root: &Path) -> std::result::Result<(), String> {
        let said = crate::backup::check_vault(root, &self.node_key, &self.vault_checkpoint)?;
        *self.vault_said.lock().unwrap_or_else(|p| p.into_inner()) = said;
        Ok(())
    }

    pub(super) fn vault_said(self) -> String {
        self.vault_said
            .into_inner()
            .unwrap_or_else(|p| p.into_inner())
    }
}

pub(super) fn open_manifest(
    config: Option<&Config>,
    target: &OpenTarget,
    name: Option<&str>,
    key: &DecryptionKey,
    pinned: Option<&str>,
) -> Result<Opened> {
    let name = choose(target, name)?;
    let manifest =
        archipel_backup::read_manifest(target.target.as_ref(), &name, &Unlock::new(key))?;
    let node_key = manifest
        .metadata
        .get(NODE_KEY)
        .and_then(|text| B64.decode(text).ok())
        .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
        .and_then(|bytes| ed25519_dalek::VerifyingKey::from_bytes(&bytes).ok())
        .ok_or_else(|| anyhow!("backup {name}: the manifest does not name the node's key"))?;
    // The backup must be the node's own: the key given, or the one in the
    // node's data. Anyone who can write to a target can sign a backup and
    // name their own key in it.
    let known = match pinned {
        Some(text) => Some(
            B64.decode(text.trim())
                .ok()
                .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
                .and_then(|bytes| ed25519_dalek::VerifyingKey::from_bytes(&bytes).ok())
                .ok_or_else(|| anyhow!("--node-key {text}: not an ed25519 public key in base64"))?,
        ),
        None => config
            .and_then(|c| node::node_signing_key(&c.node.data_dir).ok())
            .map(|k| k.verifying_key()),
    };
    match known {
        Some(known) if known != node_key => bail!(
            "backup {name} was made by another node (key {}), not this one ({})",
            B64.encode(node_key.as_bytes()),
            B64.encode(known.as_bytes())
        ),
        Some(_) => {}
        None => bail!(
            "backup {name} says it was signed by the node key {}; without the node's data \
             here, give the key you trust with --node-key (`backup create` printed it)",
            B64.encode(node_key.as_bytes())
        ),
    }
    Ok(Opened {
        name,
        node_key,
        vault_checkpoint: manifest
            .metadata
            .get(VAULT_CHECKPOINT)
            .cloned()
            .unwrap_or_default(),
        server_name: manifest.server_name,
        vault_said: std::sync::Mutex::default(),
    })
}

pub(super) fn checked_json(checked: &CheckedBackup, target: &OpenTarget, vault: &str) -> Value {
    json!({
        "target": target.name, "name": checked.name.as_str(),
        "server_name": checked.manifest.server_name,
        "created": checked.manifest.created.to_string(),
        "files": checked.files, "bytes": checked.bytes, "archive_size": checked.archive_size,
        "signer": checked.signer, "vault": vault,
        "vault_checkpoint": checked.manifest.metadata.get(VAULT_CHECKPOINT),
    })
}

pub(super) fn verify(
    config: Option<&Config>,
    target: &OpenTarget,
    name: Option<&str>,
    key: &KeyArgs,
    json: bool,
) -> Result<()> {
    let pinned = key.node_key.as_deref();
    let key = decryption_key(key)?;
    let bar_name = choose(target, name)?;
    let bar = Bar::new(json, bar_name.as_str());
    let checked = check(config, target, Some(bar_name.as_str()), &key, pinned, &bar);
    bar.finish();
    let (checked, vault) = checked?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&checked_json(&checked, target, &vault))?
        );
    } else {
        println!(
            "{} in {}: OK\n  {} files, {} (every hash checked), signed by the node key {}\n  {vault}",
            checked.name,
            target.name,
            checked.files,
            human_bytes(checked.bytes),
            checked.signer
        );
    }
    Ok(())
}
