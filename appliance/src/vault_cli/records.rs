//! `vault list`, `vault prove` and `vault show`: single records, their
//! proofs and their originals.

use std::io::Write;

use anyhow::{Context, Result, bail};
use archipel_vault::{Vault, checkpoint::Checkpoint, merkle};
use base64::{Engine, engine::general_purpose::STANDARD as B64};
use serde_json::json;

use crate::args::RecordRef;

pub(super) fn list(
    vault: &Vault,
    room: Option<String>,
    json: bool,
    out: &mut dyn Write,
) -> Result<()> {
    let log = vault.log();
    for seq in 0..log.size()? {
        let record = log.record(seq)?;
        let Some(event) = record.event() else {
            continue;
        };
        if room.as_ref().is_some_and(|r| *r != event.room_id) {
            continue;
        }
        if json {
            say!(
                out,
                "{}",
                json!({
                    "seq": seq,
                    "event_id": event.event_id,
                    "room_id": event.room_id,
                    "sender": event.sender,
                    "type": event.event_type,
                    "origin_server_ts": event.origin_server_ts,
                    "redacts": event.redacts,
                    "media": event.media.len(),
                    "soft_failed": event.soft_failed,
                })
            );
        } else {
            say!(
                out,
                "{seq:>8}  {}  {}  {}  {}",
                event.event_id,
                event.room_id,
                event.sender,
                event.event_type
            );
        }
    }
    Ok(())
}

pub(super) fn prove(
    vault: &Vault,
    record: &RecordRef,
    json: bool,
    out: &mut dyn Write,
) -> Result<()> {
    let log = vault.log();
    let seq = resolve(log, record)?;
    let latest = log
        .latest_checkpoint()?
        .context("no checkpoint signed yet: nothing to prove against")?;
    let checkpoint = Checkpoint::open(&latest.note, &vault.verifying_key())
        .context("the newest checkpoint does not verify; run `archipel vault verify`")?;
    if seq >= checkpoint.size {
        bail!(
            "record {seq} came after the newest checkpoint ({} records); it is in the next one",
            checkpoint.size
        );
    }
    let leaf = log.leaf_hash(seq)?;
    let proof = log.inclusion_proof(seq, checkpoint.size)?;
    let valid = merkle::verify_inclusion(seq, checkpoint.size, &leaf, &proof, &checkpoint.root);
    if json {
        say!(
            out,
            "{}",
            json!({
                "seq": seq,
                "leaf_hash": B64.encode(leaf),
                "tree_size": checkpoint.size,
                "proof": proof.iter().map(|h| B64.encode(h)).collect::<Vec<_>>(),
                "checkpoint": latest.note,
                "valid": valid,
            })
        );
    } else {
        say!(out, "record {seq}, leaf hash {}", B64.encode(leaf));
        say!(
            out,
            "inclusion proof in the tree of {} records:",
            checkpoint.size
        );
        for hash in &proof {
            say!(out, "  {}", B64.encode(hash));
        }
        say!(out, "checkpoint:\n{}", latest.note.trim_end());
        say!(
            out,
            "{}",
            if valid {
                "proof verifies"
            } else {
                "PROOF DOES NOT VERIFY"
            }
        );
    }
    if !valid {
        bail!("the inclusion proof of record {seq} does not verify; run `archipel vault verify`");
    }
    Ok(())
}

pub(super) fn show(vault: &Vault, record: &RecordRef, out: &mut dyn Write) -> Result<()> {
    let log = vault.log();
    let seq = resolve(log, record)?;
    let event = vault.open_event(seq)?;
    say!(out, "{}", serde_json::to_string_pretty(&event)?);
    if let Some(decryption) = vault.decryption_of(seq)? {
        let decrypted = vault.open_decryption(decryption)?;
        let plaintext: serde_json::Value = serde_json::from_str(&decrypted.plaintext)
            .context("the decrypted plaintext is not JSON")?;
        say!(out, "decrypted by record {decryption}:");
        say!(out, "{}", serde_json::to_string_pretty(&plaintext)?);
        for copy in vault.log().record(decryption)?.media() {
            say!(
                out,
                "attachment {} decrypted and archived: {} bytes, SHA-256 {}",
                copy.mxc,
                copy.size,
                copy.sha256.as_deref().unwrap_or("-")
            );
        }
    } else if let Some(gap) = vault.pending_decryption(seq)? {
        say!(
            out,
            "not decrypted: the archive member never received the room key \
             (session {}, from device {})",
            gap.session_id,
            gap.device_id.as_deref().unwrap_or("unknown")
        );
    }
    Ok(())
}

fn resolve(log: &archipel_vault::log::Log, record: &RecordRef) -> Result<u64> {
    match (&record.event, record.seq) {
        (Some(event_id), _) => log
            .seq_of_event(event_id)?
            .with_context(|| format!("event {event_id} is not in the vault")),
        (None, Some(seq)) => Ok(seq),
        (None, None) => bail!("name a record with --event or --seq"),
    }
}
