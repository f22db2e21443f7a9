//! `vault retention ...`: what the policy says of the archive, and
//! destruction lists proposed by one records manager and approved by
//! another.

use std::io::Write;

use anyhow::Result;

use crate::{
    args::RetentionCommand,
    ops::{Actor, Node, vault as ops},
};

pub(super) fn retention(
    node: Node<'_>,
    actor: &Actor,
    command: RetentionCommand,
    out: &mut dyn Write,
) -> Result<()> {
    let (vault, policy) = (node.vault, &node.config.vault.retention);
    match command {
        RetentionCommand::Status { as_of, json } => {
            let status =
                vault.retention_status(policy, as_of.unwrap_or_else(archipel_vault::now_ms))?;
            if json {
                say!(out, "{}", serde_json::to_string(&status)?);
            } else {
                say!(out, "permanent:             {}", status.permanent);
                say!(
                    out,
                    "  due for transfer:    {} (after {} years)",
                    status.due_for_transfer,
                    policy.transfer_years
                );
                say!(out, "to destroy later:      {}", status.to_destroy_later);
                say!(out, "expired:               {}", status.expired);
                say!(out, "expired but held:      {}", status.held);
                say!(out, "erased:                {}", status.erased);
            }
            Ok(())
        }
        RetentionCommand::Propose { by, as_of } => {
            let as_of = as_of.unwrap_or_else(archipel_vault::now_ms);
            let list = ops::propose_destruction(node, actor, as_of, &by)?;
            say!(
                out,
                "{}: {} expired record(s) proposed for destruction by {by}; another records manager must approve",
                list.reference,
                list.records.len()
            );
            Ok(())
        }
        RetentionCommand::Approve { reference, by } => {
            let (list, purged) = ops::approve_destruction(node, actor, &reference, &by)?;
            say!(
                out,
                "{reference} approved by {by}: {} record(s) destroyed ({purged} homeserver copies purged), {} held back by a legal hold, {} kept (no longer expired under the current roles and policy)",
                list.records.len() - list.held_back.len() - list.kept.len(),
                list.held_back.len(),
                list.kept.len()
            );
            Ok(())
        }
        RetentionCommand::Show { reference } => {
            say!(
                out,
                "{}",
                serde_json::to_string_pretty(&vault.destruction_list(&reference)?)?
            );
            Ok(())
        }
    }
}
