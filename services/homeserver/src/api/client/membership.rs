//! Joining, inviting, leaving, kicking, banning; member lists.

use std::{collections::BTreeMap, sync::Arc};

use ruma::{
    OwnedRoomId,
    api::client::{
        knock::knock_room,
        membership::{
            ban_user, forget_room, get_member_events,
            invite_user::{self, v3::InvitationRecipient},
            join_room_by_id, join_room_by_id_or_alias, joined_members, joined_rooms, kick_user,
            leave_room, unban_user,
        },
    },
    events::{StateEventType, TimelineEventType, room::member::MembershipState},
};

use crate::{
    Error, Result, Services,
    ops::{
        directory::resolve_alias,
        events::state_for_viewer,
        membership::{invite_user, join_room, knock_room, leave_room, set_membership},
    },
    ruma_wrapper::Ruma,
};

pub async fn knock(
    services: Arc<Services>,
    request: Ruma<knock_room::v3::Request>,
) -> Result<knock_room::v3::Response> {
    let room_id: OwnedRoomId = match OwnedRoomId::try_from(request.body.room_id_or_alias.clone()) {
        Ok(room_id) => room_id,
        Err(alias) => resolve_alias(&services, &alias).await?.0,
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
            let (room_id, servers) = resolve_alias(&services, &alias).await?;
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

/// The archive member, to leave out of the member lists a bridge reads: a
/// bridge counts a room's members to tell a direct chat with its bot (two)
/// from a portal, and a direct chat must still read as one (as room
/// summaries leave it out of heroes). Clients see it as a member.
fn archive_member_hidden<'a, T>(services: &'a Services, request: &Ruma<T>) -> Option<&'a str> {
    request
        .appservice
        .as_ref()
        .and(services.archive_member.as_deref())
        .map(ruma::UserId::as_str)
}

pub async fn members(
    services: Arc<Services>,
    request: Ruma<get_member_events::v3::Request>,
) -> Result<get_member_events::v3::Response> {
    let room_id = &request.body.room_id;
    let state = state_for_viewer(&services, request.user(), room_id)?;
    let wanted = request.body.membership.as_ref().map(|m| m.to_string());
    let unwanted = request.body.not_membership.as_ref().map(|m| m.to_string());
    let hidden = archive_member_hidden(&services, &request);
    let chunk = state
        .iter()
        .filter(|pdu| pdu.kind == TimelineEventType::RoomMember)
        .filter(|pdu| pdu.state_key.as_deref() != hidden)
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
    let hidden = archive_member_hidden(&services, &request);
    let mut joined = BTreeMap::new();
    for user in services.rooms.joined_members(room_id)? {
        if Some(user.as_str()) == hidden {
            continue;
        }
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
