//! `archipel backup restore`: a backup unpacked into a new data folder,
//! with the erasures made since it was taken applied again.

use std::path::Path;

use anyhow::{Context, Result, bail};
use archipel_backup::{DecryptionKey, Unlock};
use serde_json::json;

use super::{
    KeyArgs, human_bytes,
    inspect::{Opened, checked_json, choose, decryption_key, open_manifest},
    progress::Bar,
};
use crate::{backup::OpenTarget, config::Config, node};

pub(super) fn restore(
    config: Option<&Config>,
    target: &OpenTarget,
    name: Option<&str>,
    key: &KeyArgs,
    to: &Path,
    json: bool,
) -> Result<()> {
    let pinned = key.node_key.as_deref();
    let key = decryption_key(key)?;
    let opened = open_manifest(config, target, name, &key, pinned)?;
    let check = |root: &Path| {
        let server_name = std::fs::read_to_string(root.join("server_name")).unwrap_or_default();
        if server_name.trim() != opened.server_name {
            return Err(format!(
                "the restored server_name file says `{}`, the manifest `{}`",
                server_name.trim(),
                opened.server_name
            ));
        }
        opened.check_vault(root)
    };
    let bar = Bar::new(json, opened.name.as_str());
    let checked = archipel_backup::restore(
        target.target.as_ref(),
        &opened.name,
        &Unlock::new(&key).trusting(&opened.node_key),
        to,
        Some(&check),
        &bar,
    );
    bar.finish();
    let checked = checked?;
    let reapplied = reapply_newer_erasures(target, &opened, &key, to)?;
    let vault = opened.vault_said();
    let config_files: Vec<(&String, &String)> = checked
        .manifest
        .metadata
        .iter()
        .filter(|(k, _)| k.starts_with("config/"))
        .collect();
    if json {
        let mut value = checked_json(&checked, target, &vault);
        value["restored_to"] = json!(to.display().to_string());
        value["erasures_reapplied"] = json!(reapplied);
        value["config_files"] = json!(
            config_files
                .iter()
                .map(|(k, v)| json!({"restored": to.join(k).display().to_string(), "was": v}))
                .collect::<Vec<_>>()
        );
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    println!(
        "{} restored into {}: {} files, {}; server name {}\n  {vault}",
        checked.name,
        to.display(),
        checked.files,
        human_bytes(checked.bytes),
        checked.manifest.server_name
    );
    if reapplied > 0 {
        println!(
            "  {reapplied} record(s) erased after this backup was made: erased again (the homeserver's copies are purged when the node starts)"
        );
    }
    if config_files.is_empty() {
        println!(
            "  start it with: archipel dev --data-dir {} --server-name {}",
            to.display(),
            checked.manifest.server_name
        );
    } else {
        println!("  the node's configuration and identity files, to put back in place:");
        for (restored, was) in config_files {
            println!("    {} -> {was}", to.join(restored).display());
        }
    }
    Ok(())
}

/// Erases again, in the vault restored into `to`, what was erased after
/// the restored backup was made: the newest complete backup on the target
/// (made by the same node) carries the ledger of every erasure up to it.
/// Returns how many records it erased.
fn reapply_newer_erasures(
    target: &OpenTarget,
    restored: &Opened,
    key: &DecryptionKey,
    to: &Path,
) -> Result<usize> {
    let newest = choose(target, None)?;
    if newest == restored.name {
        return Ok(0);
    }
    let manifest = archipel_backup::read_manifest(
        target.target.as_ref(),
        &newest,
        &Unlock::new(key).trusting(&restored.node_key),
    )
    .with_context(|| format!("reading the erasures of the newest backup {newest}"))?;
    let ledger: Vec<archipel_vault::procedure::ErasedEvent> =
        match manifest.metadata.get(crate::backup::VAULT_ERASURES) {
            Some(text) => serde_json::from_str(text)
                .with_context(|| format!("backup {newest}: its erasure ledger"))?,
            None => return Ok(0),
        };
    if ledger.is_empty() {
        return Ok(0);
    }
    let store = archipel_store::Store::open(
        &to.join("vault/db"),
        archipel_vault::columns::COLUMNS,
        &archipel_store::StoreOptions::default(),
    )?;
    let key_file = to.join("vault.key");
    if !key_file.is_file() {
        bail!(
            "{} erasure(s) were decided after backup {}, but the restored data has no vault.key to apply them with: put the vault key at {} and restore again",
            ledger.len(),
            restored.name,
            key_file.display()
        );
    }
    let vault = archipel_vault::Vault::open(
        store,
        &to.join("vault"),
        archipel_vault::seal::VaultKey::load(&key_file)?,
        node::node_signing_key(to)?,
        archipel_vault::origin_for(&restored.server_name),
        archipel_vault::CheckpointPolicy::default(),
    )?;
    let reapplied = vault.reapply_erasures(&ledger, &format!("restore (ledger of {newest})"))?;
    vault.checkpoint()?;
    Ok(reapplied)
}
