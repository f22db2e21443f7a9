//! The vault's procedures from the command line: the operator appoints
//! records managers and delegates, and anyone on the node reads the
//! requests, holds and steps. What records managers decide (roles,
//! classification, exclusions, holds) they decide signed in to the web
//! console, never here.

use std::io::Write;

use anyhow::Result;
use archipel_vault::Vault;

use crate::{
    args::{HoldCommand, ManagerCommand},
    ops::{Actor, Node, vault as ops},
};

pub(super) fn managers(
    node: Node<'_>,
    actor: &Actor,
    command: ManagerCommand,
    out: &mut dyn Write,
) -> Result<()> {
    match command {
        ManagerCommand::Add { user } => {
            ops::set_records_manager(node, actor, &user, true)?;
            say!(out, "{user} is a records manager");
            Ok(())
        }
        ManagerCommand::Remove { user } => {
            ops::set_records_manager(node, actor, &user, false)?;
            say!(out, "{user} is no longer a records manager");
            Ok(())
        }
        ManagerCommand::List => {
            for user in node.vault.records_managers()? {
                say!(out, "{user}");
            }
            Ok(())
        }
    }
}

pub(super) fn delegate(
    node: Node<'_>,
    actor: &Actor,
    user: &str,
    delegate: &str,
    out: &mut dyn Write,
) -> Result<()> {
    ops::add_delegate(node, actor, user, delegate)?;
    say!(out, "{delegate} may now request exclusions for {user}");
    Ok(())
}

pub(super) fn requests(vault: &Vault, json: bool, out: &mut dyn Write) -> Result<()> {
    for request in vault.requests()? {
        if json {
            say!(out, "{}", serde_json::to_string(&request)?);
        } else {
            let state = match &request.decision {
                None => "pending".to_owned(),
                Some(d) if d.approved => format!("approved by {}", d.by),
                Some(d) => format!("rejected by {}", d.by),
            };
            say!(
                out,
                "{}  {}  {} record(s)  {state}  reason: {}",
                request.reference,
                request.requester,
                request.records.len(),
                request.reason
            );
        }
    }
    Ok(())
}

pub(super) fn hold(vault: &Vault, command: HoldCommand, out: &mut dyn Write) -> Result<()> {
    match command {
        HoldCommand::List { json } => {
            for hold in vault.holds()? {
                if json {
                    say!(out, "{}", serde_json::to_string(&hold)?);
                } else {
                    say!(
                        out,
                        "{}  {}  {}  placed by {}  reason: {}",
                        hold.reference,
                        hold.scope,
                        if hold.active() { "active" } else { "released" },
                        hold.placed_by,
                        hold.reason
                    );
                }
            }
            Ok(())
        }
    }
}

pub(super) fn steps(vault: &Vault, json: bool, out: &mut dyn Write) -> Result<()> {
    for step in vault.procedure_steps()? {
        if json {
            say!(out, "{step}");
        } else {
            say!(
                out,
                "{:>8}  {}  {}  {}  {}",
                step["seq"],
                step["action"].as_str().unwrap_or_default(),
                step["actor"].as_str().unwrap_or("-"),
                step["subject"].as_str().unwrap_or_default(),
                step["details"]
            );
        }
    }
    Ok(())
}
