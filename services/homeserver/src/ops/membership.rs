//! Membership changes made on this node: join (through a peer when this node
//! is not in the room), knock, invite (a peer's user through their server),
//! leave, and another member's kick, ban and unban.

use crate::{
    Error, Result, Services,
    service::{rooms::PduBuilder, users::Account},
};
use ruma::{
    OwnedServerName, RoomId, UserId,
    events::{
        StateEventType,
        room::member::{MembershipState, RoomMemberEventContent},
    },
};
use serde_json::{Value, json};

/// The content of an `m.room.member` event, with the user's profile.
pub fn member_content(
    membership: MembershipState,
    profile: Option<&Account>,
    reason: Option<&str>,
    is_direct: bool,
) -> Value {
    let mut content = RoomMemberEventContent::new(membership);
    if let Some(profile) = profile {
        content.displayname = profile.displayname.clone();
        content.avatar_url = profile.avatar_url.clone();
    }
    content.reason = reason.map(ToOwned::to_owned);
    content.is_direct = is_direct.then_some(true);
    serde_json::to_value(content).unwrap_or_else(|_| json!({}))
}

/// Whether this server has members in the room, so that a membership
/// change is made here rather than through a peer.
fn is_resident(services: &Services, room_id: &RoomId) -> Result<bool> {
    Ok(services.rooms.exists(room_id)?
        && services
            .rooms
            .servers_in_room(room_id)?
            .iter()
            .any(|s| s == services.server_name()))
}

/// Joins `user` to `room_id`: locally when this server has members in the
/// room, otherwise through one of the peers in `via` (or the room's creator's).
pub async fn join_room(
    services: &Services,
    user: &UserId,
    room_id: &RoomId,
    reason: Option<&str>,
    via: &[OwnedServerName],
) -> Result<()> {
    if services.rooms.is_joined(user, room_id)? {
        return Ok(());
    }
    if is_resident(services, room_id)? {
        let profile = services.users.account(user)?;
        let mut content = member_content(MembershipState::Join, profile.as_ref(), reason, false);
        if let Some(authoriser) = restricted_join_authoriser(services, user, room_id)? {
            content["join_authorised_via_users_server"] = Value::String(authoriser.to_string());
        }
        services
            .rooms
            .append(room_id, user, PduBuilder::member(user, content))
            .await?;
    } else {
        super::remote_membership::join_remote(services, user, room_id, reason, via).await?;
    }
    crate::archive_member::join_after(services, room_id, user).await;
    Ok(())
}

/// For a restricted room (join rule `restricted` or `knock_restricted`)
/// that `user` may join without an invite, because they are in one of the
/// rooms it allows: a local member who may invite, to vouch for the join
/// (`join_authorised_via_users_server`, spec "Restricted rooms"). None
/// when the room is not restricted, the user is invited, or nothing
/// allows them (the auth rules then refuse the join).
fn restricted_join_authoriser(
    services: &Services,
    user: &UserId,
    room_id: &RoomId,
) -> Result<Option<ruma::OwnedUserId>> {
    let rooms = &services.rooms;
    let Some(rule) = rooms.state_json(room_id, &StateEventType::RoomJoinRules, "")? else {
        return Ok(None);
    };
    if !matches!(
        rule["join_rule"].as_str(),
        Some("restricted" | "knock_restricted")
    ) || rooms
        .membership(user, room_id)?
        .is_some_and(|m| m.membership == MembershipState::Invite)
    {
        return Ok(None);
    }
    let allowed = rule["allow"].as_array().is_some_and(|allow| {
        allow.iter().any(|a| {
            a["type"] == "m.room_membership"
                && a["room_id"]
                    .as_str()
                    .and_then(|r| RoomId::parse(r).ok())
                    .is_some_and(|r| rooms.is_joined(user, &r).unwrap_or(false))
        })
    });
    if !allowed {
        return Ok(None);
    }
    let levels = rooms.power_levels(room_id)?;
    Ok(rooms
        .joined_members(room_id)?
        .into_iter()
        .filter(|member| services.is_local(member) && !services.is_archive_member(member))
        .find(|member| levels.user_can_invite(member)))
}

/// Asks to join `room_id` (join rule `knock` or `knock_restricted`); a
/// member who may invite then lets the user in with an invite.
pub async fn knock_room(
    services: &Services,
    user: &UserId,
    room_id: &RoomId,
    reason: Option<&str>,
) -> Result<()> {
    let membership = services.rooms.membership(user, room_id)?;
    match membership.as_ref().map(|m| m.membership.as_str()) {
        Some("join") => return Err(Error::forbidden("You are already in this room.")),
        Some("invite") => return Err(Error::forbidden("You are invited: join instead.")),
        Some("ban") => return Err(Error::forbidden("You are banned from this room.")),
        Some("knock") => return Ok(()),
        _ => {}
    }
    if !is_resident(services, room_id)? {
        return Err(Error::forbidden(
            "Knocking on a room this server has no members in is not supported yet.",
        ));
    }
    let profile = services.users.account(user)?;
    let content = member_content(MembershipState::Knock, profile.as_ref(), reason, false);
    services
        .rooms
        .append(room_id, user, PduBuilder::member(user, content))
        .await?;
    Ok(())
}

pub async fn invite_user(
    services: &Services,
    sender: &UserId,
    room_id: &RoomId,
    invitee: &UserId,
    reason: Option<&str>,
    is_direct: bool,
) -> Result<()> {
    if !services.is_local(invitee) {
        services.federation.require_peer(invitee.server_name())?;
        return super::remote_membership::invite_remote(
            services, sender, room_id, invitee, reason, is_direct,
        )
        .await;
    }
    // A bridge's user that does not exist yet: the bridge is asked, and
    // may create it.
    if !services.users.exists(invitee)? {
        crate::appservice::query(services, crate::appservice::Query::User(invitee)).await;
    }
    if !services.users.is_active(invitee)? {
        return Err(Error::not_found(format!("{invitee} does not exist.")));
    }
    let profile = services.users.account(invitee)?;
    let content = member_content(MembershipState::Invite, profile.as_ref(), reason, is_direct);
    services
        .rooms
        .append(room_id, sender, PduBuilder::member(invitee, content))
        .await?;
    Ok(())
}

pub async fn leave_room(
    services: &Services,
    user: &UserId,
    room_id: &RoomId,
    reason: Option<&str>,
) -> Result<()> {
    let current = services.rooms.membership(user, room_id)?;
    if !current.as_ref().is_some_and(|m| {
        matches!(
            m.membership,
            MembershipState::Join | MembershipState::Invite | MembershipState::Knock
        )
    }) {
        return Err(Error::forbidden("You are not in this room."));
    }
    if services.rooms.meta(room_id)?.is_none() {
        // Invited to a peer's room this server is not in.
        return super::remote_membership::leave_remote(services, user, room_id, reason).await;
    }
    let content = member_content(MembershipState::Leave, None, reason, false);
    services
        .rooms
        .append(room_id, user, PduBuilder::member(user, content))
        .await?;
    Ok(())
}

/// Sets another user's membership (kick, ban, unban), keeping their profile fields.
pub async fn set_membership(
    services: &Services,
    sender: &UserId,
    room_id: &RoomId,
    target: &UserId,
    membership: MembershipState,
    reason: Option<&str>,
) -> Result<()> {
    let profile = services
        .rooms
        .state_pdu(room_id, &StateEventType::RoomMember, target.as_str())?
        .map(|pdu| pdu.content_value())
        .unwrap_or_else(|| json!({}));
    let mut content = json!({ "membership": membership });
    for field in ["displayname", "avatar_url"] {
        if let Some(value) = profile.get(field) {
            content[field] = value.clone();
        }
    }
    if let Some(reason) = reason {
        content["reason"] = Value::String(reason.to_owned());
    }
    services
        .rooms
        .append(room_id, sender, PduBuilder::member(target, content))
        .await?;
    Ok(())
}
