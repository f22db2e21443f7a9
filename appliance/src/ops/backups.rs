//! Backups asked for by an operator, beside the schedule's.

use std::sync::Arc;

use anyhow::Result;

use super::{Actor, audited};
use crate::{
    admin::server::Admin,
    backup::schedule::{self, Running},
};

/// Starts a backup to every target now, in the background: the outcome is
/// in the backup status and the log, as a scheduled run's is. Refused when
/// no target is configured or a run is in progress.
pub fn start(admin: &Arc<Admin>, actor: &Actor) -> Result<String> {
    let node = admin.node();
    let claimed = if node.config.backup.targets.is_empty() {
        Err(anyhow::anyhow!(
            "no backup targets are configured ([[backup.targets]])"
        ))
    } else {
        Running::claim()
    };
    let running = audited(node, actor, "backup now", "every backup target", claimed)?;
    let admin = admin.clone();
    tokio::spawn(async move {
        let config = admin.config().clone();
        if let Err(e) = schedule::run_once(&admin, &config, running).await {
            tracing::error!(target: "archipel::backup", error = %format!("{e:#}"), "backup asked for by an operator failed");
        }
    });
    Ok(format!(
        "a backup to {} target(s) has started",
        node.config.backup.targets.len()
    ))
}

/// What each target holds, from its listing alone (no key needed): the
/// complete backups, the newest of them, and leftovers of runs that did
/// not finish.
pub struct TargetContents {
    pub target: String,
    pub listed: Result<Vec<archipel_backup::BackupSummary>>,
}

/// Lists every configured target, one after the other.
pub fn contents(admin: &Admin) -> Vec<TargetContents> {
    admin
        .config()
        .backup
        .targets
        .iter()
        .map(|target| TargetContents {
            target: target.name.clone(),
            listed: target
                .open()
                .and_then(|open| Ok(archipel_backup::list(open.target.as_ref())?)),
        })
        .collect()
}

/// Checks the newest complete backup in the target named `target` end to
/// end (decrypted, every file's hash, the manifest's signature by this
/// node, the vault against its checkpoint), as `archipel backup verify`
/// does. Only for a recovery-copy target, whose passphrase the node holds:
/// the others open with the backup key, which is kept off the node.
pub fn verify(admin: &Admin, actor: &Actor, target: &str) -> Result<String> {
    let node = admin.node();
    let checked = (|| {
        let config = node
            .config
            .backup
            .targets
            .iter()
            .find(|t| t.name == target)
            .ok_or_else(|| anyhow::anyhow!("no backup target is called {target}"))?;
        let Some(passphrase_file) = &config.passphrase_file else {
            anyhow::bail!(
                "{target}'s backups open only with the backup key, kept off the node: \
                 `archipel backup verify --target {target} --identity FILE` where the key is"
            );
        };
        let passphrase = crate::backup::read_secret(passphrase_file)?;
        let key = archipel_backup::DecryptionKey::from_passphrase(
            archipel_backup::SecretString::from(passphrase),
        );
        let open = config.open()?;
        let (checked, vault) = crate::backup::cli::check_backup(
            Some(node.config),
            &open,
            None,
            &key,
            None,
            &archipel_backup::NoProgress,
        )?;
        Ok(format!(
            "{} in {target}: OK, {} files, {} (every hash checked), signed by this node; {vault}",
            checked.name,
            checked.files,
            indicatif::HumanBytes(checked.bytes)
        ))
    })();
    audited(node, actor, "backup verify", target, checked)
}
