//! The node's accounts: users and registration tokens.

use anyhow::{Context, Result, anyhow, bail};
use archipel_homeserver::{
    ops::users,
    service::users::{Account, RegistrationToken},
};
use ruma::{OwnedUserId, UserId};

use super::{Actor, Node, audited};
use crate::config::Config;

/// A local user ID from a localpart (`alice`) or a full user ID, refused
/// if it belongs to another server.
pub fn user_id(config: &Config, user: &str) -> Result<OwnedUserId> {
    let server_name = &config.homeserver.server_name;
    let id = UserId::parse_with_server_name(user.to_lowercase(), server_name)
        .with_context(|| format!("`{user}` is not a valid user ID or localpart"))?;
    if id.server_name() != server_name {
        bail!("{id} is not a user of this server ({server_name})");
    }
    Ok(id)
}

/// Creates `user` with `password`; `admin` makes them a server
/// administrator.
pub async fn create_user(
    node: Node<'_>,
    actor: &Actor,
    user: &str,
    password: String,
    admin: bool,
) -> Result<OwnedUserId> {
    let id = user_id(node.config, user)?;
    let created = users::create_user(node.services, &id, Some(password), admin, None)
        .await
        .map(|()| id.clone())
        .map_err(|e| anyhow!("creating {id}: {e}"));
    let action = if admin {
        "user create (server administrator)"
    } else {
        "user create"
    };
    audited(node, actor, action, id.as_str(), created)
}

/// Creates `user` as a server administrator from an argon2id hash of
/// their password (the provisioning file's form).
pub async fn create_admin_hashed(
    node: Node<'_>,
    actor: &Actor,
    id: &UserId,
    password_hash: String,
) -> Result<()> {
    let created = users::create_user_hashed(node.services, id, password_hash, true)
        .await
        .map_err(|e| anyhow!("creating {id}: {e}"));
    audited(
        node,
        actor,
        "user create (server administrator, from a password hash)",
        id.as_str(),
        created,
    )
}

/// A one-time registration token that makes `id`, and only `id`, a server
/// administrator when they register with it.
pub async fn create_setup_token(
    node: Node<'_>,
    actor: &Actor,
    id: &UserId,
    token: &str,
) -> Result<()> {
    let created = node
        .services
        .users
        .create_setup_token(token, id)
        .await
        .map_err(|e| anyhow!("a setup token for {id}: {e}"));
    audited(node, actor, "setup token create", id.as_str(), created)
}

/// The local users, with their accounts.
pub fn list_users(node: Node<'_>) -> Result<Vec<(OwnedUserId, Account)>> {
    Ok(node.services.users.list()?)
}

/// Deactivates `user`: they leave every room, their sessions end (the
/// console's too), their history stays.
pub async fn deactivate_user(node: Node<'_>, actor: &Actor, user: &str) -> Result<OwnedUserId> {
    let id = user_id(node.config, user)?;
    let done = async {
        if !node.services.users.exists(&id)? {
            bail!("{id} does not exist");
        }
        users::deactivate_user(node.services, &id)
            .await
            .map_err(|e| anyhow!("deactivating {id}: {e}"))?;
        tokio::task::block_in_place(|| super::console::end_sessions(node, &id))
    }
    .await;
    audited(
        node,
        actor,
        "user deactivate",
        id.as_str(),
        done.map(|()| id.clone()),
    )
}

/// Sets `user`'s password and ends their sessions (the console's too):
/// whoever signed in with the old one is signed out.
pub async fn set_password(
    node: Node<'_>,
    actor: &Actor,
    user: &str,
    password: String,
) -> Result<OwnedUserId> {
    let id = user_id(node.config, user)?;
    let done = async {
        if !node.services.users.is_active(&id)? {
            bail!("{id} does not exist or is deactivated");
        }
        node.services
            .users
            .set_password(&id, password)
            .await
            .map_err(|e| anyhow!("{e}"))?;
        users::end_sessions(node.services, &id, None)
            .await
            .map_err(|e| anyhow!("ending {id}'s sessions: {e}"))?;
        tokio::task::block_in_place(|| super::console::end_sessions(node, &id))
    }
    .await;
    audited(
        node,
        actor,
        "user passwd",
        id.as_str(),
        done.map(|()| id.clone()),
    )
}

/// Signs one of `user`'s devices out and forgets it (its keys too): a
/// lost phone. The account stays.
pub async fn remove_device(
    node: Node<'_>,
    actor: &Actor,
    user: &str,
    device: &str,
) -> Result<OwnedUserId> {
    let id = user_id(node.config, user)?;
    let done = async {
        let device = <&ruma::DeviceId>::from(device);
        if node.services.users.device(&id, device)?.is_none() {
            bail!("{id} has no device {device}");
        }
        users::remove_device(node.services, &id, device)
            .await
            .map_err(|e| anyhow!("{e}"))
    }
    .await;
    audited(
        node,
        actor,
        "device remove",
        &format!("{id} {device}"),
        done.map(|()| id.clone()),
    )
}

/// Makes `user` a server administrator (an operator of the node and its
/// console), or not.
pub async fn set_admin(
    node: Node<'_>,
    actor: &Actor,
    user: &str,
    admin: bool,
) -> Result<OwnedUserId> {
    let id = user_id(node.config, user)?;
    let done = node
        .services
        .users
        .set_admin(&id, admin)
        .await
        .map(|()| id.clone())
        .map_err(|e| anyhow!("{e}"));
    let action = if admin {
        "user admin grant"
    } else {
        "user admin revoke"
    };
    audited(node, actor, action, id.as_str(), done)
}

/// Issues a registration token: `token` (random if `None`), for `uses`
/// registrations (unlimited if `None`).
pub async fn create_token(
    node: Node<'_>,
    actor: &Actor,
    token: Option<String>,
    uses: Option<u32>,
) -> Result<RegistrationToken> {
    let created = node
        .services
        .users
        .create_registration_token(token, uses, None)
        .await
        .map_err(|e| anyhow!("{e}"));
    // The token is a secret: the trail names only what it allows.
    let object = match uses {
        Some(n) => format!("for {n} registration(s)"),
        None => "for unlimited registrations".to_owned(),
    };
    audited(node, actor, "registration-token create", &object, created)
}

/// The registration tokens.
pub fn list_tokens(node: Node<'_>) -> Result<Vec<RegistrationToken>> {
    Ok(node.services.users.registration_tokens()?)
}
