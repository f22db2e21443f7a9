//! `vault retention ...`: what the policy says of the archive, and the
//! destruction lists records managers propose and approve in the web
//! console.

use std::io::Write;

use anyhow::Result;

use crate::{
    args::RetentionCommand,
    ops::{self, Actor, Node},
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
                say!(out, "transferred:           {}", status.transferred);
            }
            Ok(())
        }
        RetentionCommand::Statement { reference } => {
            write!(
                out,
                "{}",
                ops::transfers::statement(node, actor, &reference)?
            )?;
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
