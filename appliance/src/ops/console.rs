//! The console's accounts: sign-ins, authenticators and auditors. People
//! sign in with their Matrix account; these are the changes around it
//! that the audit trail must show.

use anyhow::{Result, anyhow, bail};
use ruma::{OwnedUserId, UserId};

use super::{Actor, Node, Origin, audited};
use crate::{
    admin::protocol::LocalAction,
    sessions::{Sessions, Stage},
};

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
pub fn set_auditor(node: Node<'_>, actor: &Actor, user: &UserId, auditor: bool) -> Result<()> {
    let done = (|| {
        if !node.services.users.is_active(user)? {
            anyhow::bail!("{user} does not exist or is deactivated");
        }
        sessions(node)?.set_auditor(user, auditor)
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
pub fn reset_authenticator(node: Node<'_>, actor: &Actor, user: &UserId) -> Result<()> {
    let done = sessions(node).and_then(|sessions| sessions.remove_factor(user));
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

/// Signs an operator in at the machine's own screen: their password and a
/// code from their authenticator. Returns the session the local console
/// presents with each action. Recorded, refused or not.
pub async fn local_sign_in(
    node: Node<'_>,
    user: &str,
    password: &str,
    code: &str,
) -> Result<String> {
    let id = super::accounts::user_id(node.config, user.trim())?;
    let actor = Actor::person(id.as_str(), Origin::LocalConsole);
    let right = node
        .services
        .users
        .check_password(&id, password)
        .await
        .map_err(|e| anyhow!("{e}"))?;
    let signed_in = tokio::task::block_in_place(|| {
        let sessions = sessions(node)?;
        if !right {
            bail!("wrong user name or password");
        }
        if !operator(node, &id)? {
            bail!("{id} is not an operator (a server administrator)");
        }
        if !sessions.check_code(&id, code)? {
            bail!("wrong or already used code");
        }
        Ok(sessions.start(Some(id.clone()), Stage::SignedIn)?.0)
    });
    if signed_in.is_err() {
        // Slows down guessing at the keyboard.
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
    let recorded = tokio::task::block_in_place(|| {
        audited(
            node,
            &actor,
            "console sign-in",
            id.as_str(),
            signed_in.as_ref().map(drop).map_err(|e| anyhow!("{e}")),
        )
    });
    recorded.and(signed_in)
}

fn operator(node: Node<'_>, user: &UserId) -> Result<bool> {
    Ok(node
        .services
        .users
        .account(user)?
        .is_some_and(|account| account.admin && !account.deactivated))
}

/// Carries out `action` for the operator signed in with `session` at the
/// machine's screen; returns what to show them.
pub fn local_action(
    admin: &std::sync::Arc<crate::admin::server::Admin>,
    session: &str,
    action: LocalAction,
) -> Result<String> {
    let node = admin.node();
    let sessions = sessions(node)?;
    let user: OwnedUserId = sessions
        .touch(session)?
        .and_then(|s| s.signed_in().map(ToOwned::to_owned))
        .ok_or_else(|| anyhow!("the session has ended: sign in again"))?;
    if !operator(node, &user)? {
        bail!("{user} is no longer an operator");
    }
    let actor = Actor::person(user.as_str(), Origin::LocalConsole);
    let server = node.config.homeserver.server_name.to_string();
    match action {
        LocalAction::SetupLink => {
            let made = sessions.create_setup_link().and_then(|token| {
                let base = console_url(node)
                    .ok_or_else(|| anyhow!("the web console is off (no [console] listen)"))?;
                Ok(format!("{base}/setup/{token}"))
            });
            audited(
                node,
                &actor,
                "console setup-link create",
                "an operator's account",
                made,
            )
        }
        LocalAction::VerifyVault => {
            let checked = super::vault::verify(node, &mut |_, _| {})
                .map_err(anyhow::Error::from)
                .and_then(|report| {
                    if report.ok() {
                        Ok(format!("the vault verifies: {} records", report.records))
                    } else {
                        Err(anyhow!(
                            "the vault does not verify: {} problem(s)",
                            report.findings.len()
                        ))
                    }
                });
            audited(node, &actor, "vault verify", "the whole log", checked)
        }
        LocalAction::BackupNow => super::backups::start(admin, &actor),
        LocalAction::Restart => audited(
            node,
            &actor,
            "node restart",
            &server,
            Ok("restarting the node".to_owned()),
        ),
        LocalAction::Reboot => audited(
            node,
            &actor,
            "machine reboot",
            &server,
            Ok("rebooting the machine".to_owned()),
        ),
    }
}

/// The address the management listener got, once bound.
static BOUND: std::sync::OnceLock<std::net::SocketAddr> = std::sync::OnceLock::new();

/// Notes the address the management listener got.
pub fn console_bound(address: std::net::SocketAddr) {
    let _ = BOUND.set(address);
}

/// Where the web console is reached: on loopback plain HTTP, elsewhere
/// HTTPS by the server's name (the name its certificate carries).
pub fn console_url(node: Node<'_>) -> Option<String> {
    let configured = node.config.console.listen?;
    let listen = BOUND.get().copied().unwrap_or(configured);
    Some(if listen.ip().is_loopback() {
        format!("http://{listen}")
    } else {
        format!(
            "https://{}:{}",
            node.config.homeserver.server_name,
            listen.port()
        )
    })
}
