//! Joining and leaving through this server: make_join and make_leave hand
//! out a template, send_join and send_leave take the signed event (send_join
//! answers with the room's state); invites from peers are countersigned.

use std::sync::Arc;

use ruma::{
    CanonicalJsonValue, EventId, OwnedUserId, UserId,
    api::federation::membership::{
        create_invite, create_join_event, create_leave_event, prepare_join_event,
        prepare_leave_event,
    },
    events::room::member::MembershipState,
};
use serde_json::value::to_raw_value;

use crate::{
    Error, Result, Services,
    ops::peer_event::{VerifiedPdu, verify_pdu},
    ruma_wrapper::Ruma,
    service::rooms::{Received, Relay},
};

/// A peer asks only for its own users.
fn require_own_user(origin: &ruma::ServerName, user: &UserId) -> Result<()> {
    if user.server_name() == origin {
        Ok(())
    } else {
        Err(Error::forbidden(format!(
            "{origin} may only act for its own users."
        )))
    }
}

pub async fn make_join(
    services: Arc<Services>,
    request: Ruma<prepare_join_event::v1::Request>,
) -> Result<prepare_join_event::v1::Response> {
    let body = &request.body;
    require_own_user(request.origin(), &body.user_id)?;
    let (version, template) =
        services
            .rooms
            .member_template(&body.room_id, &body.user_id, MembershipState::Join)?;
    if !body.ver.contains(&version) {
        return Err(Error::incompatible_room_version(version));
    }
    let mut response = prepare_join_event::v1::Response::new(to_raw_value(&template)?);
    response.room_version = Some(version);
    Ok(response)
}

pub async fn make_leave(
    services: Arc<Services>,
    request: Ruma<prepare_leave_event::v1::Request>,
) -> Result<prepare_leave_event::v1::Response> {
    let body = &request.body;
    require_own_user(request.origin(), &body.user_id)?;
    let (version, template) =
        services
            .rooms
            .member_template(&body.room_id, &body.user_id, MembershipState::Leave)?;
    Ok(prepare_leave_event::v1::Response::new(
        Some(version),
        to_raw_value(&template)?,
    ))
}

/// Checks a peer's signed join or leave of its own user and places it in
/// the room, relaying it to the room's other servers.
async fn take_member_event(
    services: &Services,
    origin: &ruma::ServerName,
    room_id: &ruma::RoomId,
    event_id: &EventId,
    raw: &serde_json::value::RawValue,
    membership: MembershipState,
) -> Result<()> {
    let (_, rules) = services.rooms.rules(room_id)?;
    let pdu = verify_pdu(services, raw, room_id, &rules).await?;
    let Some(member) = member_event(&pdu, event_id)?
        .filter(|m| m.membership == membership && m.target.as_deref() == Some(&*m.sender))
    else {
        return Err(Error::bad_json(format!(
            "This endpoint takes a {membership} event of its sender."
        )));
    };
    require_own_user(origin, &member.sender)?;
    match services
        .rooms
        .receive(&pdu.event_id, pdu.object, Relay::AllBut(origin))
        .await?
    {
        Received::Accepted(_) | Received::AlreadyKnown => Ok(()),
        Received::Rejected(why) | Received::SoftFailed(why) => Err(Error::forbidden(format!(
            "The {membership} is not allowed: {why}"
        ))),
        Received::Missing(ids) => Err(Error::bad_json(format!(
            "The {membership} follows events this server does not have: {ids:?}"
        ))),
    }
}

pub async fn send_join(
    services: Arc<Services>,
    request: Ruma<create_join_event::v2::Request>,
) -> Result<create_join_event::v2::Response> {
    let origin = request.origin().to_owned();
    let body = request.body;
    take_member_event(
        &services,
        &origin,
        &body.room_id,
        &body.event_id,
        &body.pdu,
        MembershipState::Join,
    )
    .await?;
    let (state, chain) = services.rooms.state_and_auth_chain(&body.event_id)?;
    let mut room_state = create_join_event::v2::RoomState::new();
    room_state.state = services.rooms.federation_events(state)?;
    room_state.auth_chain = services.rooms.federation_events(chain)?;
    room_state.servers_in_room = Some(
        services
            .rooms
            .servers_in_room(&body.room_id)?
            .iter()
            .map(|s| s.to_string())
            .collect(),
    );
    Ok(create_join_event::v2::Response::new(room_state))
}

pub async fn send_leave(
    services: Arc<Services>,
    request: Ruma<create_leave_event::v2::Request>,
) -> Result<create_leave_event::v2::Response> {
    let origin = request.origin().to_owned();
    let body = request.body;
    take_member_event(
        &services,
        &origin,
        &body.room_id,
        &body.event_id,
        &body.pdu,
        MembershipState::Leave,
    )
    .await?;
    Ok(create_leave_event::v2::Response::new())
}

/// A peer invites one of this server's users: check, countersign, keep.
pub async fn invite(
    services: Arc<Services>,
    request: Ruma<create_invite::v2::Request>,
) -> Result<create_invite::v2::Response> {
    let origin = request.origin().to_owned();
    let body = request.body;
    if !crate::config::SUPPORTED_ROOM_VERSIONS.contains(&body.room_version) {
        return Err(Error::incompatible_room_version(body.room_version));
    }
    let rules = crate::service::rooms::room_rules(&body.room_version)?;
    let pdu = verify_pdu(&services, &body.event, &body.room_id, &rules).await?;
    let Some(member) =
        member_event(&pdu, &body.event_id)?.filter(|m| m.membership == MembershipState::Invite)
    else {
        return Err(Error::bad_json("The event is not an invite."));
    };
    if member.sender.server_name() != origin {
        return Err(Error::forbidden(format!(
            "{origin} may only invite on behalf of its own users."
        )));
    }
    let invitee = member
        .target
        .ok_or_else(|| Error::bad_json("The invite names no user."))?;
    if invitee.server_name() != services.server_name() {
        return Err(Error::bad_json(format!(
            "{invitee} is not a user of this server."
        )));
    }
    if !services.users.is_active(&invitee)? {
        return Err(Error::not_found(format!("{invitee} does not exist.")));
    }
    let mut signed = pdu.object;
    ruma::signatures::sign_event(
        services.server_name().as_str(),
        &*services.signing_key,
        &mut signed,
        &rules.redaction,
    )
    .map_err(Error::internal)?;
    // A room this server is in gets the invite as a room event from the
    // inviting server; only an invite into a room unknown here is kept aside.
    if services.rooms.meta(&body.room_id)?.is_none() {
        let stripped = body
            .invite_room_state
            .iter()
            .filter_map(stripped_state)
            .collect();
        services
            .rooms
            .store_remote_invite(&pdu.event_id, signed.clone(), stripped, &rules)
            .await?;
    }
    Ok(create_invite::v2::Response::new(to_raw_value(&signed)?))
}

/// What send_join and invite check of a peer's member event.
struct MemberEvent {
    membership: MembershipState,
    sender: OwnedUserId,
    /// The user the event is about (`state_key`), if it names one.
    target: Option<OwnedUserId>,
}

/// Checks the event's ID against the one in the request path, and reads
/// it as a member event (`None` for any other kind of event).
fn member_event(pdu: &VerifiedPdu, event_id: &EventId) -> Result<Option<MemberEvent>> {
    if pdu.event_id != event_id {
        return Err(Error::bad_json(format!(
            "The event's ID is {}, not {event_id}.",
            pdu.event_id
        )));
    }
    let string = |value: Option<&CanonicalJsonValue>| match value {
        Some(CanonicalJsonValue::String(s)) => Some(s.clone()),
        _ => None,
    };
    if string(pdu.object.get("type")).as_deref() != Some("m.room.member") {
        return Ok(None);
    }
    let membership = match pdu.object.get("content") {
        Some(CanonicalJsonValue::Object(content)) => string(content.get("membership")),
        _ => None,
    };
    let sender = string(pdu.object.get("sender")).and_then(|s| UserId::parse(s).ok());
    let (Some(membership), Some(sender)) = (membership, sender) else {
        return Ok(None);
    };
    let target = string(pdu.object.get("state_key")).and_then(|s| UserId::parse(s).ok());
    Ok(Some(MemberEvent {
        membership: MembershipState::from(membership.as_str()),
        sender,
        target,
    }))
}

/// A piece of invite state in the stripped form clients read.
#[allow(deprecated)] // Older servers still send stripped events.
fn stripped_state(
    state: &ruma::api::federation::membership::RawStrippedState,
) -> Option<serde_json::Value> {
    use ruma::api::federation::membership::RawStrippedState;
    let full: serde_json::Value = match state {
        RawStrippedState::Stripped(raw) => serde_json::from_str(raw.json().get()).ok()?,
        RawStrippedState::Pdu(raw) => serde_json::from_str(raw.get()).ok()?,
        _ => return None,
    };
    let mut stripped = serde_json::Map::new();
    for key in ["type", "state_key", "content", "sender"] {
        stripped.insert(key.to_owned(), full.get(key)?.clone());
    }
    Some(serde_json::Value::Object(stripped))
}
