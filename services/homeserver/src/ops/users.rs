//! Accounts and sessions: creating an account with its default push rules,
//! resolving a login identifier, ending sessions (and telling the user's
//! contacts their devices changed), deactivation.

use ruma::{DeviceId, OwnedUserId, UserId, api::client::uiaa::UserIdentifier, push::Ruleset};

use super::{edu, membership};
use crate::{Error, Result, Services};

/// Creates an account with the spec's default push rules, counting a use
/// of the registration `token` it registered with.
pub async fn create_user(
    services: &Services,
    user_id: &UserId,
    password: Option<String>,
    admin: bool,
    token: Option<&str>,
) -> Result<()> {
    services
        .users
        .create(user_id, password, admin, token)
        .await?;
    set_default_push_rules(services, user_id).await
}

/// Creates an account from a password hash (provisioning's administrators).
pub async fn create_user_hashed(
    services: &Services,
    user_id: &UserId,
    password_hash: String,
    admin: bool,
) -> Result<()> {
    services
        .users
        .create_hashed(user_id, Some(password_hash), admin, None)
        .await?;
    set_default_push_rules(services, user_id).await
}

async fn set_default_push_rules(services: &Services, user_id: &UserId) -> Result<()> {
    let rules = serde_json::json!({ "global": Ruleset::server_default(user_id) });
    services
        .account_data
        .set(user_id, None, "m.push_rules", rules)
        .await?;
    Ok(())
}

/// Leaves every room, ends every session and locks the account.
pub async fn deactivate_user(services: &Services, user: &UserId) -> Result<()> {
    services.users.refuse_if_node_owned(user)?;
    for room in services.rooms.joined_rooms(user)? {
        membership::leave_room(services, user, &room, None).await?;
    }
    for device in services.users.devices(user)? {
        services.e2ee.remove_device(user, &device.device_id).await?;
        services
            .sliding_sync
            .remove_device(user, &device.device_id)
            .await?;
    }
    services.users.deactivate(user).await?;
    tracing::info!(user = %user, "deactivated");
    Ok(())
}

/// Ends a device's session and forgets its keys; its contacts see a device-list change.
pub async fn remove_device(services: &Services, user: &UserId, device: &DeviceId) -> Result<()> {
    edu::send_device_update(services, user, device, true).await?;
    services.users.remove_device(user, device).await?;
    services.sliding_sync.remove_device(user, device).await?;
    services.e2ee.remove_device(user, device).await
}

/// Ends every session of `user` but `keep`'s: after a password change, so
/// that only who knows the new password stays signed in.
pub async fn end_sessions(
    services: &Services,
    user: &UserId,
    keep: Option<&DeviceId>,
) -> Result<()> {
    for device in services.users.devices(user)? {
        if Some(&*device.device_id) != keep {
            remove_device(services, user, &device.device_id).await?;
        }
    }
    Ok(())
}

/// Resolves a login identifier (`alice` or `@alice:server`) to a local user ID.
pub fn identify(
    services: &Services,
    identifier: Option<&UserIdentifier>,
    user: Option<&str>,
) -> Result<OwnedUserId> {
    let name = match (identifier, user) {
        (Some(UserIdentifier::Matrix(id)), _) => id.user.clone(),
        (Some(_), _) => return Err(Error::unknown("Only user identifiers are supported.")),
        (None, Some(user)) => user.to_owned(),
        (None, None) => return Err(Error::missing_param("Missing identifier.")),
    };
    let user_id = UserId::parse_with_server_name(name.to_lowercase(), services.server_name())
        .map_err(|_| Error::invalid_username("That is not a valid user ID."))?;
    if !services.is_local(&user_id) {
        return Err(Error::unknown("That user is not on this server."));
    }
    Ok(user_id)
}
