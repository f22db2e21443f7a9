//! `archipel backup create`: a snapshot of the node, running or stopped,
//! written to each target.

use anyhow::{Context, Result, bail};
use serde_json::json;

use super::{TargetArgs, human_bytes, progress::Bar, targets::open_targets};
use crate::{
    admin::protocol as admin,
    backup::{
        Snapshot, VAULT_CHECKPOINT,
        write::{NODE_KEY, Written, write_backups},
    },
    config::Config,
    node,
};

/// A snapshot of the node: made here if it is stopped, by the node itself
/// (over its admin socket) if it runs.
fn take_snapshot(config: &Config) -> Result<Snapshot> {
    match node::open(config) {
        Ok(node) => crate::backup::snapshot(
            &config.node.data_dir,
            &node.homeserver.services,
            &node.vault,
        ),
        Err(e) if e.is::<node::Running>() => {
            let answer = admin::ask(config, &admin::Request::BackupSnapshot)?;
            let made: admin::SnapshotMade = serde_json::from_str(&answer)
                .context("the node's answer to the snapshot request")?;
            Ok(Snapshot::adopt(
                made.dir,
                made.vault_checkpoint,
                made.erasures,
            ))
        }
        Err(e) => Err(e),
    }
}

pub(super) fn create(
    config: &Config,
    args: &TargetArgs,
    recipients: &[String],
    json: bool,
) -> Result<()> {
    let targets = open_targets(Some(config), args, true)?;
    let recipients = if recipients.is_empty() {
        config.backup.recipients.clone()
    } else {
        archipel_backup::Encryption::to_recipients(recipients)?;
        recipients.to_vec()
    };
    let snapshot = take_snapshot(config)?;
    let written = write_backups(config, &snapshot, &targets, &recipients, &|name| {
        Box::new(Bar::new(json, name))
    });
    drop(snapshot);
    let mut failed = 0;
    let mut results = Vec::new();
    for Written { target, outcome } in written {
        match outcome {
            Ok((info, seconds)) => {
                let files = info
                    .manifest
                    .entries
                    .iter()
                    .filter(|e| e.kind == archipel_backup::EntryKind::File)
                    .count();
                let bytes = info.manifest.total_bytes;
                let node_key = info.manifest.metadata.get(NODE_KEY);
                if json {
                    results.push(json!({
                        "target": target, "ok": true, "name": info.name.as_str(),
                        "files": files, "bytes": bytes, "archive_size": info.archive_size,
                        "seconds": seconds,
                        "vault_checkpoint": info.manifest.metadata.get(VAULT_CHECKPOINT),
                        "node_key": node_key,
                    }));
                } else {
                    println!(
                        "{} written to {target}: {files} files, {} read, {} stored, in {seconds:.1} s ({}/s)\n  \
                         signed by the node key {} (a restore on new hardware needs it: --node-key)",
                        info.name,
                        human_bytes(bytes),
                        human_bytes(info.archive_size),
                        human_bytes((bytes as f64 / seconds.max(1e-3)) as u64),
                        node_key.map_or("?", String::as_str),
                    );
                }
            }
            Err(e) => {
                failed += 1;
                if json {
                    results.push(json!({"target": target, "ok": false, "error": format!("{e:#}")}));
                } else {
                    eprintln!("backup to {target} FAILED: {e:#}");
                }
            }
        }
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&results)?);
    }
    if failed > 0 {
        bail!("{failed} of {} backups failed", results.len().max(failed));
    }
    Ok(())
}
