//! `archipel vault transfer sip|list`: SIPs for the archive service, and
//! the transfers made.

use std::io::Write;

use anyhow::Result;
use archipel_vault::export::sip::SipScope;

use crate::{
    args::TransferCommand,
    ops::{self, Actor, Node},
};

pub(super) fn transfer(
    node: Node<'_>,
    actor: &Actor,
    command: TransferCommand,
    out: &mut dyn Write,
) -> Result<()> {
    match command {
        TransferCommand::Sip {
            room,
            from,
            until,
            due,
            target,
            out: folder,
            json,
        } => {
            let scope = SipScope {
                room,
                from_ms: from,
                until_ms: until,
                due_only: due,
                target,
            };
            let summary = ops::transfers::sip(node, actor, &scope, &folder)?;
            if json {
                say!(out, "{}", serde_json::to_string(&summary)?);
            } else {
                say!(
                    out,
                    "made {} in {}: {} message(s) in {} conversation(s) ({} permanent, {} temporary), {} file(s) of {} bytes; SHA-256 {}",
                    summary.reference,
                    folder.join(&summary.container).display(),
                    summary.messages,
                    summary.conversations,
                    summary.permanent,
                    summary.temporary,
                    summary.files,
                    summary.bytes,
                    summary.sha256
                );
                say!(
                    out,
                    "left out: {} erased, {} not yet due, {} transferred before",
                    summary.erased,
                    summary.not_due,
                    summary.transferred_before
                );
                say!(
                    out,
                    "once the archive service confirms receipt, record it in the web console (Retention)"
                );
            }
        }
        TransferCommand::List { json } => {
            let transfers = node.vault.transfers()?;
            for transfer in &transfers {
                if json {
                    say!(out, "{}", serde_json::to_string(transfer)?);
                } else {
                    let confirmed = match (&transfer.confirmed_by, &transfer.receipt) {
                        (Some(by), Some(receipt)) => format!("confirmed by {by}: {receipt}"),
                        _ => "awaiting the archive service's receipt".to_owned(),
                    };
                    say!(
                        out,
                        "{} {} record(s), made by {} on {}; {confirmed}",
                        transfer.reference,
                        transfer.records.len(),
                        transfer.made_by,
                        archipel_vault::export::amsterdam_time(transfer.made_ts)
                    );
                }
            }
            if transfers.is_empty() && !json {
                say!(out, "no transfers");
            }
        }
    }
    Ok(())
}
