//! Who did an administrative action, and its record in the vault's log.

use anyhow::{Context, Result};
use archipel_vault::Vault;

/// The local account a command came from, as the audit trail names it:
/// `root (uid 0)`.
pub fn local_actor(uid: Option<u32>) -> String {
    let Some(uid) = uid else {
        return "an unknown local account".into();
    };
    match nix::unistd::User::from_uid(uid.into()) {
        Ok(Some(user)) => format!("{} (uid {uid})", user.name),
        _ => format!("uid {uid}"),
    }
}

/// The local account this process runs as, as [`local_actor`] names it:
/// the actor of a command the CLI carries out on a stopped node's data.
pub fn own_actor() -> String {
    local_actor(Some(nix::unistd::getuid().as_raw()))
}

/// Records in the vault's log that `command` (a request's
/// [`Request::account_change`]) was carried out by `actor`, or failed, so
/// the trail of who created, deactivated or reset whom is as
/// tamper-evident as the archive. Called by every path that carries out
/// such a command: the admin socket, and the CLI on a stopped node.
pub fn record_account_change(
    vault: &Vault,
    actor: &str,
    command: &str,
    done: &Result<()>,
) -> Result<()> {
    let error = done.as_ref().err().map(|e| format!("{e:#}"));
    vault
        .record_admin_command(actor, command, error.as_deref())
        .context("the command ran, but the vault could not record it")
}
