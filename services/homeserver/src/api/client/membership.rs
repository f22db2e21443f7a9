//! Joining, inviting, leaving, kicking, banning; member lists.

use std::{collections::BTreeMap, sync::Arc};

use ruma::{
    OwnedRoomId, OwnedServerName, RoomId, UserId,
    api::client::{
        knock::knock_room,
        membership::{
            ban_user, forget_room, get_member_events,
            invite_user::{self, v3::InvitationRecipient},
            join_room_by_id, join_room_by_id_or_alias, joined_members, joined_rooms, kick_user,
            leave_room, unban_user,
        },
    },
    events::{
        StateEventType, TimelineEventType,
        room::member::{MembershipState, RoomMemberEventContent},
    },
};
use serde_json::{Value, json};

use crate::{
    Error, Result, Services,
    ruma_wrapper::Ruma,
    service::{rooms::PduBuilder, users::Account},
};

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
            .append(
                room_id,
                user,
                PduBuilder::state(TimelineEventType::RoomMember, user.as_str(), content),
            )
            .await?;
    } else {
        super::federation_join::join_remote(services, user, room_id, reason, via).await?;
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
        .append(
            room_id,
            user,
            PduBuilder::state(TimelineEventType::RoomMember, user.as_str(), content),
        )
        .await?;
    Ok(())
}

pub async fn knock(
    services: Arc<Services>,
    request: Ruma<knock_room::v3::Request>,
) -> Result<knock_room::v3::Response> {
    let room_id: OwnedRoomId = match OwnedRoomId::try_from(request.body.room_id_or_alias.clone()) {
        Ok(room_id) => room_id,
        Err(alias) => super::directory::resolve_alias(&services, &alias).await?.0,
    };
    knock_room(
        &services,
        request.user(),
        &room_id,
        request.body.reason.as_deref(),
    )
    .await?;
    Ok(knock_room::v3::Response::new(room_id))
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
        return super::federation_join::invite_remote(
            services, sender, room_id, invitee, reason, is_direct,
        )
        .await;
    }
    if !services.users.is_active(invitee)? {
        return Err(Error::not_found(format!("{invitee} does not exist.")));
    }
    let profile = services.users.account(invitee)?;
    let content = member_content(MembershipState::Invite, profile.as_ref(), reason, is_direct);
    services
        .rooms
        .append(
            room_id,
            sender,
            PduBuilder::state(TimelineEventType::RoomMember, invitee.as_str(), content),
        )
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
        return super::federation_join::leave_remote(services, user, room_id, reason).await;
    }
    let content = member_content(MembershipState::Leave, None, reason, false);
    services
        .rooms
        .append(
            room_id,
            user,
            PduBuilder::state(TimelineEventType::RoomMember, user.as_str(), content),
        )
        .await?;
    Ok(())
}

/// Sets another user's membership (kick, ban, unban), keeping their profile fields.
async fn set_membership(
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
        .append(
            room_id,
            sender,
            PduBuilder::state(TimelineEventType::RoomMember, target.as_str(), content),
        )
        .await?;
    Ok(())
}

pub async fn join_by_id(
    services: Arc<Services>,
    request: Ruma<join_room_by_id::v3::Request>,
) -> Result<join_room_by_id::v3::Response> {
    join_room(
        &services,
        request.user(),
        &request.body.room_id,
        request.body.reason.as_deref(),
        &[],
    )
    .await?;
    Ok(join_room_by_id::v3::Response::new(
        request.body.room_id.clone(),
    ))
}

pub async fn join_by_id_or_alias(
    services: Arc<Services>,
    request: Ruma<join_room_by_id_or_alias::v3::Request>,
) -> Result<join_room_by_id_or_alias::v3::Response> {
    let mut via = request.body.via.clone();
    let room_id: OwnedRoomId = match OwnedRoomId::try_from(request.body.room_id_or_alias.clone()) {
        Ok(room_id) => room_id,
        Err(alias) => {
            let (room_id, servers) = super::directory::resolve_alias(&services, &alias).await?;
            via.extend(servers);
            room_id
        }
    };
    join_room(
        &services,
        request.user(),
        &room_id,
        request.body.reason.as_deref(),
        &via,
    )
    .await?;
    Ok(join_room_by_id_or_alias::v3::Response::new(room_id))
}

pub async fn invite(
    services: Arc<Services>,
    request: Ruma<invite_user::v3::Request>,
) -> Result<invite_user::v3::Response> {
    let InvitationRecipient::UserId(recipient) = &request.body.recipient else {
        return Err(Error::forbidden("Third-party invites are not supported."));
    };
    if !services
        .rooms
        .is_joined(request.user(), &request.body.room_id)?
    {
        return Err(Error::forbidden("You are not in this room."));
    }
    invite_user(
        &services,
        request.user(),
        &request.body.room_id,
        &recipient.user_id,
        recipient.reason.as_deref(),
        false,
    )
    .await?;
    Ok(invite_user::v3::Response::new())
}

pub async fn leave(
    services: Arc<Services>,
    request: Ruma<leave_room::v3::Request>,
) -> Result<leave_room::v3::Response> {
    leave_room(
        &services,
        request.user(),
        &request.body.room_id,
        request.body.reason.as_deref(),
    )
    .await?;
    Ok(leave_room::v3::Response::new())
}

pub async fn forget(
    services: Arc<Services>,
    request: Ruma<forget_room::v3::Request>,
) -> Result<forget_room::v3::Response> {
    services
        .rooms
        .forget(request.user(), &request.body.room_id)
        .await?;
    Ok(forget_room::v3::Response::new())
}

pub async fn kick(
    services: Arc<Services>,
    request: Ruma<kick_user::v3::Request>,
) -> Result<kick_user::v3::Response> {
    let current = services
        .rooms
        .membership(&request.body.user_id, &request.body.room_id)?;
    if !current.is_some_and(|m| {
        matches!(
            m.membership,
            MembershipState::Join | MembershipState::Invite
        )
    }) {
        return Err(Error::forbidden("That user is not in the room."));
    }
    set_membership(
        &services,
        request.user(),
        &request.body.room_id,
        &request.body.user_id,
        MembershipState::Leave,
        request.body.reason.as_deref(),
    )
    .await?;
    if services.is_archive_member(&request.body.user_id) {
        crate::archive_member::rejoin(&services, &request.body.room_id).await;
    }
    Ok(kick_user::v3::Response::new())
}

pub async fn ban(
    services: Arc<Services>,
    request: Ruma<ban_user::v3::Request>,
) -> Result<ban_user::v3::Response> {
    set_membership(
        &services,
        request.user(),
        &request.body.room_id,
        &request.body.user_id,
        MembershipState::Ban,
        request.body.reason.as_deref(),
    )
    .await?;
    Ok(ban_user::v3::Response::new())
}

pub async fn unban(
    services: Arc<Services>,
    request: Ruma<unban_user::v3::Request>,
) -> Result<unban_user::v3::Response> {
    let current = services
        .rooms
        .membership(&request.body.user_id, &request.body.room_id)?;
    if current.is_none_or(|m| m.membership != MembershipState::Ban) {
        return Err(Error::forbidden("That user is not banned."));
    }
    set_membership(
        &services,
        request.user(),
        &request.body.room_id,
        &request.body.user_id,
        MembershipState::Leave,
        request.body.reason.as_deref(),
    )
    .await?;
    Ok(unban_user::v3::Response::new())
}

pub async fn joined(
    services: Arc<Services>,
    request: Ruma<joined_rooms::v3::Request>,
) -> Result<joined_rooms::v3::Response> {
    Ok(joined_rooms::v3::Response::new(
        services.rooms.joined_rooms(request.user())?,
    ))
}

pub async fn members(
    services: Arc<Services>,
    request: Ruma<get_member_events::v3::Request>,
) -> Result<get_member_events::v3::Response> {
    let room_id = &request.body.room_id;
    let state = super::events::state_for_viewer(&services, request.user(), room_id)?;
    let wanted = request.body.membership.as_ref().map(|m| m.to_string());
    let unwanted = request.body.not_membership.as_ref().map(|m| m.to_string());
    let chunk = state
        .iter()
        .filter(|pdu| pdu.kind == TimelineEventType::RoomMember)
        .filter(|pdu| {
            let membership = pdu.content_value()["membership"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            wanted.as_ref().is_none_or(|w| *w == membership)
                && unwanted.as_ref().is_none_or(|u| *u != membership)
        })
        .map(|pdu| pdu.to_state_event())
        .collect();
    Ok(get_member_events::v3::Response::new(chunk))
}

pub async fn joined_members_of(
    services: Arc<Services>,
    request: Ruma<joined_members::v3::Request>,
) -> Result<joined_members::v3::Response> {
    let room_id = &request.body.room_id;
    if !services.rooms.is_joined(request.user(), room_id)? {
        return Err(Error::forbidden("You are not in this room."));
    }
    let mut joined = BTreeMap::new();
    for user in services.rooms.joined_members(room_id)? {
        let content = services
            .rooms
            .state_pdu(room_id, &StateEventType::RoomMember, user.as_str())?
            .map(|p| p.content_value())
            .unwrap_or_default();
        let mut member = joined_members::v3::RoomMember::new();
        member.display_name = content["displayname"].as_str().map(str::to_owned);
        member.avatar_url = content["avatar_url"].as_str().map(Into::into);
        joined.insert(user, member);
    }
    Ok(joined_members::v3::Response::new(joined))
}
