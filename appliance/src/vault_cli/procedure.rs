//! The procedures that need a person's decision: records managers and
//! delegates, roles, room classification, exclusion requests and their
//! four-eyes decisions, and legal holds.

use std::io::Write;

use anyhow::{Result, bail};
use archipel_vault::{
    Vault,
    procedure::{Classification, HoldScope, Role},
};

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

pub(super) fn role(
    node: Node<'_>,
    actor: &Actor,
    user: &str,
    role: Role,
    by: &str,
    out: &mut dyn Write,
) -> Result<()> {
    ops::set_role(node, actor, user, role, by)?;
    say!(out, "{user} is now {role}");
    Ok(())
}

pub(super) fn classify(
    node: Node<'_>,
    actor: &Actor,
    room: &str,
    classification: Classification,
    by: &str,
    out: &mut dyn Write,
) -> Result<()> {
    ops::classify_room(node, actor, room, classification, by)?;
    say!(out, "{room} is now classified {classification}");
    Ok(())
}

pub(super) fn request_exclusion(
    node: Node<'_>,
    actor: &Actor,
    events: &[String],
    by: &str,
    reason: &str,
    ground: Option<&str>,
    out: &mut dyn Write,
) -> Result<()> {
    let request = ops::request_exclusion(node, actor, events, by, reason, ground)?;
    say!(
        out,
        "{}: exclusion of {} record(s) requested by {by}; a records manager must decide",
        request.reference,
        request.records.len()
    );
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

pub(super) fn decide(
    node: Node<'_>,
    actor: &Actor,
    reference: &str,
    approve: bool,
    by: &str,
    note: Option<&str>,
    out: &mut dyn Write,
) -> Result<()> {
    let (request, purged) = ops::decide(node, actor, reference, approve, by, note)?;
    if approve {
        say!(
            out,
            "{reference} approved by {by}: {} record(s) erased ({purged} homeserver copies purged); the log still verifies",
            request.records.len()
        );
    } else {
        say!(out, "{reference} rejected by {by}: nothing erased");
    }
    Ok(())
}

pub(super) fn hold(
    node: Node<'_>,
    actor: &Actor,
    command: HoldCommand,
    out: &mut dyn Write,
) -> Result<()> {
    match command {
        HoldCommand::Place {
            room,
            user,
            reason,
            by,
        } => {
            let scope = match (room, user) {
                (Some(room), _) => HoldScope::Room(room),
                (None, Some(user)) => HoldScope::User(user),
                (None, None) => bail!("name a --room or a --user"),
            };
            let hold = ops::place_hold(node, actor, scope, &reason, &by)?;
            say!(
                out,
                "{}: legal hold on {} placed by {by}",
                hold.reference,
                hold.scope
            );
            Ok(())
        }
        HoldCommand::Release { reference, by } => {
            let hold = ops::release_hold(node, actor, &reference, &by)?;
            say!(
                out,
                "{}: legal hold on {} released by {by}",
                hold.reference,
                hold.scope
            );
            Ok(())
        }
        HoldCommand::List { json } => {
            for hold in node.vault.holds()? {
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
