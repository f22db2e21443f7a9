//! The vault's procedures: records managers and delegates, roles, room
//! classification, exclusion requests and decisions, legal holds, and
//! destruction lists.
//!
//! The vault records each step with the records manager or sender it
//! names (`by`): the person signed in to the web console, the only place
//! these steps are taken (appointing records managers and delegates is
//! the operator's, from the command line too). Each step is also recorded
//! as the action of who carried it out and from where. Reasons and notes
//! are sealed in the vault's own step and not repeated here.

use anyhow::Result;
use archipel_vault::{
    procedure::{Classification, ExclusionRequest, Hold, HoldScope, Role},
    retention::DestructionList,
};

use super::{Actor, Node, audited};
use crate::erasure;

/// Checks the whole vault: every record, checkpoint and media copy
/// against the log, and every decryption record against its ciphertext.
/// `progress` hears `(records done, records expected)`.
pub fn verify(
    node: Node<'_>,
    progress: &mut dyn FnMut(u64, u64),
) -> archipel_vault::Result<archipel_vault::verify::Report> {
    let vault = node.vault;
    let media_dir = node.config.node.data_dir.join("vault").join("media");
    let mut report =
        archipel_vault::verify::verify(vault.log(), &media_dir, &vault.verifying_key(), progress)?;
    let mismatches = vault.verify_decryptions(&report.decryptions)?;
    report.findings.extend(mismatches);
    let last = LastVerify {
        at: jiff::Timestamp::now().as_second(),
        records: report.records,
        problems: report.findings.len(),
    };
    if let Err(e) = keep_last_verify(&node.config.node.data_dir, &last) {
        tracing::warn!(error = %e, "keeping the outcome of the vault's verification");
    }
    Ok(report)
}

/// The file in the data folder that keeps the newest verification's
/// outcome, for the consoles.
const LAST_VERIFY: &str = "vault-verify.json";

/// The outcome of the newest complete verification of the vault.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct LastVerify {
    /// When it finished (Unix seconds).
    pub at: i64,
    pub records: u64,
    /// Findings: none means the vault verified.
    pub problems: usize,
}

fn keep_last_verify(data_dir: &std::path::Path, last: &LastVerify) -> std::io::Result<()> {
    use std::{io::Write, os::unix::fs::PermissionsExt};
    let mut file = tempfile::NamedTempFile::new_in(data_dir)?;
    // Written by `archipel vault verify` as root too: the node (its own
    // user) reads it. Counts and a time, nothing secret.
    file.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o644))?;
    file.write_all(&serde_json::to_vec(last)?)?;
    file.persist(data_dir.join(LAST_VERIFY))
        .map(|_| ())
        .map_err(|e| e.error)
}

/// The newest verification's outcome, if the vault was ever verified.
pub fn last_verify(data_dir: &std::path::Path) -> Option<LastVerify> {
    serde_json::from_slice(&std::fs::read(data_dir.join(LAST_VERIFY)).ok()?).ok()
}

/// Makes `user` a records manager, or stops them being one.
pub fn set_records_manager(node: Node<'_>, actor: &Actor, user: &str, manager: bool) -> Result<()> {
    let done = node
        .vault
        .set_records_manager(user, manager, actor.name())
        .map_err(Into::into);
    let action = if manager {
        "vault records-manager add"
    } else {
        "vault records-manager remove"
    };
    audited(node, actor, action, user, done)
}

/// Lets `delegate` request exclusions on `user`'s behalf.
pub fn add_delegate(node: Node<'_>, actor: &Actor, user: &str, delegate: &str) -> Result<()> {
    let done = node
        .vault
        .add_delegate(user, delegate, actor.name())
        .map_err(Into::into);
    let object = format!("{delegate} for {user}");
    audited(node, actor, "vault delegate", &object, done)
}

/// Sets `user`'s role, as the records manager `by`.
pub fn set_role(node: Node<'_>, actor: &Actor, user: &str, role: Role, by: &str) -> Result<()> {
    let done = node.vault.set_role(user, role, by).map_err(Into::into);
    let object = format!("{user} {role} (as {by})");
    audited(node, actor, "vault role", &object, done)
}

/// Classifies `room`, as the records manager `by`.
pub fn classify_room(
    node: Node<'_>,
    actor: &Actor,
    room: &str,
    classification: Classification,
    by: &str,
) -> Result<()> {
    let done = node
        .vault
        .classify_room(room, classification, by)
        .map_err(Into::into);
    let object = format!("{room} {classification} (as {by})");
    audited(node, actor, "vault classify", &object, done)
}

/// Asks for `events` to be excluded, as their sender (or a delegate) `by`.
pub fn request_exclusion(
    node: Node<'_>,
    actor: &Actor,
    events: &[String],
    by: &str,
    reason: &str,
    ground: Option<&str>,
) -> Result<ExclusionRequest> {
    let done = node
        .vault
        .request_exclusion(events, by, reason, ground)
        .map_err(Into::into);
    let object = match &done {
        Ok(request) => format!(
            "{} of {} event(s) (as {by})",
            request.reference,
            events.len()
        ),
        Err(_) => format!("{} event(s) (as {by})", events.len()),
    };
    audited(node, actor, "vault request-exclusion", &object, done)
}

/// Decides on an exclusion request, as the records manager `by`; an
/// approval erases the records and then every copy outside the vault.
/// Returns the request and how many homeserver copies were purged.
pub fn decide(
    node: Node<'_>,
    actor: &Actor,
    reference: &str,
    approve: bool,
    by: &str,
    note: Option<&str>,
) -> Result<(ExclusionRequest, usize)> {
    let done = (|| {
        let request = node.vault.decide(reference, approve, by, note)?;
        let purged = if approve { purge_copies(node)? } else { 0 };
        Ok((request, purged))
    })();
    let action = if approve {
        "vault decide approve"
    } else {
        "vault decide reject"
    };
    audited(node, actor, action, &format!("{reference} (as {by})"), done)
}

/// After an erasure: removes the erased records' copies outside the vault,
/// the homeserver's (returns how many) and the search index's.
fn purge_copies(node: Node<'_>) -> Result<usize> {
    let purged = erasure::complete_purges(node.services, node.vault)?;
    super::search::catch_up(node, |_, _| {})?;
    Ok(purged)
}

/// Places a legal hold on a room or a user, as the records manager `by`.
pub fn place_hold(
    node: Node<'_>,
    actor: &Actor,
    scope: HoldScope,
    reason: &str,
    by: &str,
) -> Result<Hold> {
    let object = format!("{scope} (as {by})");
    let done = node.vault.place_hold(scope, reason, by).map_err(Into::into);
    audited(node, actor, "vault hold place", &object, done)
}

/// Releases a legal hold, as the records manager `by`.
pub fn release_hold(node: Node<'_>, actor: &Actor, reference: &str, by: &str) -> Result<Hold> {
    let done = node.vault.release_hold(reference, by).map_err(Into::into);
    audited(
        node,
        actor,
        "vault hold release",
        &format!("{reference} (as {by})"),
        done,
    )
}

/// Proposes a destruction list of what has expired as of `as_of_ms`, as
/// the records manager `by`.
pub fn propose_destruction(
    node: Node<'_>,
    actor: &Actor,
    as_of_ms: u64,
    by: &str,
) -> Result<DestructionList> {
    let done = node
        .vault
        .propose_destruction(&node.config.vault.retention, as_of_ms, by)
        .map_err(Into::into);
    let object = match &done {
        Ok(list) => format!(
            "{} of {} record(s) (as {by})",
            list.reference,
            list.records.len()
        ),
        Err(_) => format!("(as {by})"),
    };
    audited(node, actor, "vault retention propose", &object, done)
}

/// Approves a destruction list, as the records manager `by`, and destroys
/// its records and every copy outside the vault. Returns the list and how
/// many homeserver copies were purged.
pub fn approve_destruction(
    node: Node<'_>,
    actor: &Actor,
    reference: &str,
    by: &str,
) -> Result<(DestructionList, usize)> {
    let done = (|| {
        let list = node
            .vault
            .approve_destruction(reference, by, &node.config.vault.retention)?;
        let purged = purge_copies(node)?;
        Ok((list, purged))
    })();
    audited(
        node,
        actor,
        "vault retention approve",
        &format!("{reference} (as {by})"),
        done,
    )
}
