//! Transfers to the archive service: the SIP made into a new folder, the
//! archive service's receipt recorded by a records manager (its records
//! may then be destroyed here), and the signed statement of destruction
//! of an approved destruction list. Each is recorded in the audit trail.

use std::path::Path;

use anyhow::{Result, bail};
use archipel_vault::export::sip::{SipScope, SipSummary};
use archipel_vault::transfer::Transfer;

use super::{Actor, Node, audited};

/// Makes a SIP of `scope` into the new folder `out`, and records the
/// transfer.
pub fn sip(node: Node<'_>, actor: &Actor, scope: &SipScope, out: &Path) -> Result<SipSummary> {
    let made = (|| {
        let Some(organisation) = &node.config.vault.organisation else {
            bail!(
                "the vault's organisation is not set: add [vault.organisation] with its name and identifier (its TOOI URI) to the configuration"
            );
        };
        let existed = out.exists();
        let made = node.vault.transfer_sip(
            scope,
            &node.config.vault.retention,
            organisation,
            actor.name(),
            out,
            |_, _| {},
        );
        if made.is_err() && !existed {
            // Nothing half-made is left in a folder the SIP made.
            let _ = std::fs::remove_dir_all(out);
        }
        Ok(made?)
    })();
    let object = match &made {
        Ok(summary) => format!(
            "{}: {} message(s) into {}",
            summary.reference,
            summary.messages,
            out.display()
        ),
        Err(_) => format!("into {}", out.display()),
    };
    audited(node, actor, "vault transfer sip", &object, made)
}

/// Records, as the records manager `by`, that the archive service
/// confirmed receipt of transfer `reference`.
pub fn confirm(
    node: Node<'_>,
    actor: &Actor,
    reference: &str,
    receipt: &str,
    by: &str,
) -> Result<Transfer> {
    let done = node
        .vault
        .confirm_transfer(reference, by, receipt)
        .map_err(Into::into);
    audited(
        node,
        actor,
        "vault transfer confirm",
        &format!("{reference} (as {by})"),
        done,
    )
}

/// The signed statement of destruction of approved list `reference`.
pub fn statement(node: Node<'_>, actor: &Actor, reference: &str) -> Result<String> {
    let done = (|| {
        let organisation = node
            .config
            .vault
            .organisation
            .as_ref()
            .map_or("(organisation not set)", |o| o.name.as_str());
        Ok(node.vault.destruction_statement(
            reference,
            &node.config.vault.retention,
            organisation,
        )?)
    })();
    audited(node, actor, "vault destruction statement", reference, done)
}
