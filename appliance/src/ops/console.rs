//! The console's accounts: sign-ins, authenticators and auditors. People
//! sign in with their Matrix account; these are the changes around it
//! that the audit trail must show.

use anyhow::Result;
use ruma::UserId;

use super::{Actor, Node, audited};
use crate::sessions::Sessions;

/// Records a sign-in to the console, done or refused (the reason, never
/// what was typed).
pub fn sign_in(node: Node<'_>, actor: &Actor, done: Result<()>) -> Result<()> {
    audited(node, actor, "console sign-in", actor.name(), done)
}

/// Records that `user` enrolled an authenticator at sign-in.
pub fn enrolled(node: Node<'_>, actor: &Actor, user: &UserId) -> Result<()> {
    audited(
        node,
        actor,
        "console authenticator enrol",
        user.as_str(),
        Ok(()),
    )
}

/// Makes `user` an auditor (read-only: the audit trail and the rights),
/// or stops them being one.
pub fn set_auditor(
    node: Node<'_>,
    sessions: &Sessions,
    actor: &Actor,
    user: &UserId,
    auditor: bool,
) -> Result<()> {
    let done = (|| {
        if !node.services.users.is_active(user)? {
            anyhow::bail!("{user} does not exist or is deactivated");
        }
        sessions.set_auditor(user, auditor)
    })();
    let action = if auditor {
        "console auditor add"
    } else {
        "console auditor remove"
    };
    audited(node, actor, action, user.as_str(), done)
}

/// Forgets `user`'s authenticator and ends their console sessions: they
/// enrol a new one at their next sign-in (a lost phone).
pub fn reset_authenticator(
    node: Node<'_>,
    sessions: &Sessions,
    actor: &Actor,
    user: &UserId,
) -> Result<()> {
    let done = sessions.remove_factor(user);
    audited(
        node,
        actor,
        "console authenticator reset",
        user.as_str(),
        done,
    )
}

/// The node's console sessions and authenticators.
pub fn sessions(node: Node<'_>) -> Result<Sessions> {
    let console = &node.config.console;
    Sessions::new(
        &node.services.store,
        console.session_idle_secs,
        console.session_max_secs,
    )
}

/// Ends `user`'s console sessions (after a password reset or a
/// deactivation).
pub fn end_sessions(node: Node<'_>, user: &UserId) -> Result<()> {
    sessions(node)?.end_all(user).map(drop)
}
