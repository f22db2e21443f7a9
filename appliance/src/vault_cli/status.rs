//! `vault status` and `vault verify`: what the log holds, and the check of
//! every record, checkpoint, decryption and witness.

use std::io::Write;

use anyhow::{Result, bail};
use archipel_vault::{Vault, checkpoint::verifier_key, merkle::Hash, verify};
use base64::{Engine, engine::general_purpose::STANDARD as B64};
use serde_json::json;

use super::with_progress;
use crate::ops::Node;

pub(super) fn status(vault: &Vault, json: bool, out: &mut dyn Write) -> Result<()> {
    let log = vault.log();
    let size = log.size()?;
    let latest = log.latest_checkpoint()?;
    let verifier = verifier_key(vault.origin(), &vault.verifying_key());
    if json {
        let checkpoint = latest
            .as_ref()
            .map(|c| json!({ "size": c.size, "note": c.note }));
        say!(
            out,
            "{}",
            json!({
                "origin": vault.origin(),
                "records": size,
                "root": B64.encode(log.root(size)?),
                "capture_cursor": log.capture_cursor()?,
                "latest_checkpoint": checkpoint,
                "verifier_key": verifier,
                "encrypted": encryption_status(vault)?,
            })
        );
    } else {
        say!(out, "origin:        {}", vault.origin());
        say!(out, "records:       {size}");
        say!(out, "root:          {}", B64.encode(log.root(size)?));
        match latest {
            Some(c) => say!(out, "checkpoint:    signed at {} records", c.size),
            None => say!(out, "checkpoint:    none signed yet"),
        }
        say!(out, "verifier key:  {verifier}");
        print_encryption(out, &encryption_status(vault)?)?;
    }
    Ok(())
}

pub(super) fn verify(node: Node<'_>, json: bool, out: &mut dyn Write) -> Result<()> {
    let vault = node.vault;
    let report = with_progress(json, "verifying", |progress| {
        crate::ops::vault::verify(node, progress)
    })?;
    let witnessing = vault.witness_status()?;
    let encryption = encryption_status(vault)?;
    if json {
        let mut value = serde_json::to_value(&report)?;
        value["witnessing"] = serde_json::to_value(&witnessing)?;
        value["encrypted"] = serde_json::to_value(&encryption)?;
        say!(out, "{value}");
    } else {
        print_report(out, vault.origin(), &report)?;
        print_encryption(out, &encryption)?;
        print_witnessing(out, &witnessing)?;
    }
    if report.ok() {
        Ok(())
    } else {
        bail!(
            "vault verification failed: {} problem(s)",
            report.findings.len()
        )
    }
}

fn print_report(out: &mut dyn Write, origin: &str, report: &verify::Report) -> Result<()> {
    say!(
        out,
        "{origin}: {} records, root {}",
        report.records,
        B64.encode::<Hash>(report.root)
    );
    match report.latest_checkpoint {
        Some(size) => say!(
            out,
            "checked {} signed checkpoint(s); the newest covers {size} records",
            report.checkpoints_checked
        ),
        None => say!(out, "no signed checkpoint covers the log yet"),
    }
    if report.ok() {
        say!(
            out,
            "OK: every record is present, unaltered and in place; the records reproduce every checkpoint"
        );
        return Ok(());
    }
    say!(out, "FAILED: {} problem(s)", report.findings.len());
    const SHOWN: usize = 200;
    for finding in report.findings.iter().take(SHOWN) {
        say!(out, "  {finding}");
    }
    if report.findings.len() > SHOWN {
        say!(
            out,
            "  ... and {} more (use --json for all)",
            report.findings.len() - SHOWN
        );
    }
    Ok(())
}

/// Encrypted events in the vault: how many are decrypted, and the ones
/// whose room key never reached the archive member (the gaps).
#[derive(serde::Serialize)]
struct EncryptionStatus {
    decrypted: u64,
    undecrypted: u64,
    /// The first gaps, oldest first.
    gaps: Vec<archipel_vault::decryption::PendingDecryption>,
    /// Rooms the archive member was removed from: nothing said there since
    /// is decrypted.
    removed_from: Vec<archipel_vault::coverage::CoverageGap>,
}

/// How many gaps `vault status` and `vault verify` name one by one.
const GAPS_SHOWN: usize = 50;

fn encryption_status(vault: &archipel_vault::Vault) -> Result<EncryptionStatus> {
    Ok(EncryptionStatus {
        decrypted: vault.decryption_count()?,
        undecrypted: vault.pending_decryption_count()?,
        gaps: vault.pending_decryptions(None, GAPS_SHOWN)?,
        removed_from: vault.coverage_gaps()?,
    })
}

fn print_encryption(out: &mut dyn Write, status: &EncryptionStatus) -> Result<()> {
    for gap in &status.removed_from {
        let when = archipel_vault::export::amsterdam_time(gap.since_ts);
        if gap.membership == "refused" {
            say!(
                out,
                "ALARM: the archive member could not join {} after {} did, at {when}: \
                 encrypted messages there are not decrypted",
                gap.room_id,
                gap.by
            );
        } else {
            say!(
                out,
                "ALARM: the archive member was removed from {} by {} ({}) at {when}: \
                 encrypted messages there since are not decrypted",
                gap.room_id,
                gap.by,
                gap.membership
            );
        }
    }
    if status.decrypted == 0 && status.undecrypted == 0 {
        return Ok(());
    }
    say!(
        out,
        "encrypted:     {} decrypted, {} without their room key",
        status.decrypted,
        status.undecrypted
    );
    for gap in &status.gaps {
        say!(
            out,
            "  GAP: record {} ({}) in {} from {} (device {}), sent {}",
            gap.seq,
            gap.event_id,
            gap.room_id,
            gap.sender,
            gap.device_id.as_deref().unwrap_or("unknown"),
            archipel_vault::export::amsterdam_time(gap.origin_server_ts)
        );
    }
    if status.undecrypted > status.gaps.len() as u64 {
        say!(
            out,
            "  ... and {} more (use --json for the first {GAPS_SHOWN})",
            status.undecrypted - status.gaps.len() as u64
        );
    }
    Ok(())
}

fn print_witnessing(out: &mut dyn Write, status: &archipel_vault::witness::Status) -> Result<()> {
    if status.cosigned.is_empty() {
        say!(out, "witnesses: no peer has co-signed a checkpoint yet");
    }
    for c in &status.cosigned {
        if c.verifies {
            say!(
                out,
                "witness {}: co-signed the checkpoint at {} records",
                c.witness,
                c.size
            );
        } else {
            say!(
                out,
                "witness {}: the kept cosignature of the checkpoint at {} records does not verify",
                c.witness,
                c.size
            );
        }
    }
    for w in &status.witnessed {
        match &w.alarm {
            None => say!(
                out,
                "witnessing {}: co-signed up to {} records, consistent",
                w.origin,
                w.size
            ),
            Some(alarm) => say!(out, "ALARM witnessing {}: {}", w.origin, alarm.reason),
        }
    }
    Ok(())
}
