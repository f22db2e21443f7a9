//! The procedures that need a person's decision: records managers and
//! delegates, roles, room classification, exclusion requests and their
//! four-eyes decisions, and legal holds.

use std::io::Write;

use anyhow::{Result, bail};
use archipel_homeserver::Services;
use archipel_vault::{
    Vault,
    procedure::{Classification, HoldScope, Role},
};

use crate::{
    args::{HoldCommand, ManagerCommand},
    erasure,
};

/// The actor of actions taken by whoever administers the node.
const OPERATOR: &str = "operator";

pub(super) fn managers(vault: &Vault, command: ManagerCommand, out: &mut dyn Write) -> Result<()> {
    match command {
        ManagerCommand::Add { user } => {
            vault.set_records_manager(&user, true, OPERATOR)?;
            say!(out, "{user} is a records manager");
            Ok(())
        }
        ManagerCommand::Remove { user } => {
            vault.set_records_manager(&user, false, OPERATOR)?;
            say!(out, "{user} is no longer a records manager");
            Ok(())
        }
        ManagerCommand::List => {
            for user in vault.records_managers()? {
                say!(out, "{user}");
            }
            Ok(())
        }
    }
}

pub(super) fn delegate(
    vault: &Vault,
    user: &str,
    delegate: &str,
    out: &mut dyn Write,
) -> Result<()> {
    vault.add_delegate(user, delegate, OPERATOR)?;
    say!(out, "{delegate} may now request exclusions for {user}");
    Ok(())
}

pub(super) fn role(
    vault: &Vault,
    user: &str,
    role: Role,
    by: &str,
    out: &mut dyn Write,
) -> Result<()> {
    vault.set_role(user, role, by)?;
    say!(out, "{user} is now {role}");
    Ok(())
}

pub(super) fn classify(
    vault: &Vault,
    room: &str,
    classification: Classification,
    by: &str,
    out: &mut dyn Write,
) -> Result<()> {
    vault.classify_room(room, classification, by)?;
    say!(out, "{room} is now classified {classification}");
    Ok(())
}

pub(super) fn request_exclusion(
    vault: &Vault,
    events: &[String],
    by: &str,
    reason: &str,
    ground: Option<&str>,
    out: &mut dyn Write,
) -> Result<()> {
    let request = vault.request_exclusion(events, by, reason, ground)?;
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
    services: &Services,
    vault: &Vault,
    reference: &str,
    approve: bool,
    by: &str,
    note: Option<&str>,
    out: &mut dyn Write,
) -> Result<()> {
    let request = vault.decide(reference, approve, by, note)?;
    if approve {
        let purged = erasure::complete_purges(services, vault)?;
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

pub(super) fn hold(vault: &Vault, command: HoldCommand, out: &mut dyn Write) -> Result<()> {
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
            let hold = vault.place_hold(scope, &reason, &by)?;
            say!(
                out,
                "{}: legal hold on {} placed by {by}",
                hold.reference,
                hold.scope
            );
            Ok(())
        }
        HoldCommand::Release { reference, by } => {
            let hold = vault.release_hold(&reference, &by)?;
            say!(
                out,
                "{}: legal hold on {} released by {by}",
                hold.reference,
                hold.scope
            );
            Ok(())
        }
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
