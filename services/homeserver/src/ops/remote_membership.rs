//! Joining a room that lives on a peer: make_join, sign, send_join, and
//! take in the room's state after checking every event's signatures.

use ruma::{
    CanonicalJsonObject, CanonicalJsonValue, MilliSecondsSinceUnixEpoch, OwnedEventId,
    OwnedServerName, RoomId, RoomVersionId, ServerName, UserId,
    api::federation::membership::{
        create_invite, create_join_event, create_leave_event, prepare_join_event,
        prepare_leave_event,
    },
    events::{StateEventType, room::member::MembershipState},
    room_version_rules::RoomVersionRules,
    signatures::hash_and_sign_event,
};
use serde_json::value::to_raw_value;

use super::membership::member_content;
use crate::{
    Error, Result, Services,
    config::SUPPORTED_ROOM_VERSIONS,
    ops::peer_event::{event_id_of, verify_pdu},
    service::rooms::{PduBuilder, Received, Relay, room_rules},
};

pub async fn join_remote(
    services: &Services,
    user: &UserId,
    room_id: &RoomId,
    reason: Option<&str>,
    via: &[OwnedServerName],
) -> Result<()> {
    through_peers(services, user, room_id, via, "join", |server| async move {
        join_through(services, user, room_id, reason, &server).await
    })
    .await
}

/// Tries `attempt` through each peer that may be in the room (those in
/// `via`, the inviter's server, the room's own) until one succeeds; a
/// server outside the allowlist is never tried.
async fn through_peers<F, Fut>(
    services: &Services,
    user: &UserId,
    room_id: &RoomId,
    via: &[OwnedServerName],
    what: &str,
    mut attempt: F,
) -> Result<()>
where
    F: FnMut(OwnedServerName) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let mut candidates: Vec<OwnedServerName> = via.to_vec();
    // Invited: the inviter's server is in the room.
    if let Some(invite) = services.rooms.membership(user, room_id)?
        && invite.membership == MembershipState::Invite
    {
        candidates.push(invite.sender.server_name().to_owned());
    }
    if let Some(server) = room_id.server_name() {
        candidates.push(server.to_owned());
    }
    candidates.dedup();
    candidates.retain(|s| s != services.server_name());
    if candidates.is_empty() {
        return Err(Error::not_found(format!(
            "This server is not in {room_id} and knows no server to {what} it through."
        )));
    }
    let mut last_error = None;
    for server in candidates {
        if let Err(e) = services.federation.require_peer(&server) {
            last_error = Some(e);
            continue;
        }
        match attempt(server.clone()).await {
            Ok(()) => return Ok(()),
            Err(e) => {
                tracing::info!(%room_id, %server, error = %e, "{what} through a peer failed");
                last_error = Some(e);
            }
        }
    }
    Err(last_error
        .unwrap_or_else(|| Error::not_found(format!("No server could help {what} the room."))))
}

/// A member event made from a peer's template and signed by this server.
struct Signed {
    event_id: OwnedEventId,
    event: CanonicalJsonObject,
    version: RoomVersionId,
    rules: RoomVersionRules,
}

/// Fills in and signs a peer's make_join or make_leave template
/// (`template`: the event and the room version the peer gave).
fn sign_template(
    services: &Services,
    user: &UserId,
    room_id: &RoomId,
    server: &ServerName,
    template: (&serde_json::value::RawValue, Option<RoomVersionId>),
    membership: MembershipState,
    reason: Option<&str>,
) -> Result<Signed> {
    let (template, version) = template;
    let version =
        version.ok_or_else(|| Error::remote(format!("{server} did not say the room's version")))?;
    if !SUPPORTED_ROOM_VERSIONS.contains(&version) {
        return Err(Error::unsupported_room_version(format!(
            "{room_id} has room version {version}, which this server does not support."
        )));
    }
    let rules = room_rules(&version)?;
    let mut event: CanonicalJsonObject = serde_json::from_str(template.get()).map_err(|e| {
        Error::remote(format!(
            "{server} sent a malformed {membership} template: {e}"
        ))
    })?;
    let expect = |key: &str, value: &str| matches!(event.get(key), Some(CanonicalJsonValue::String(s)) if s == value);
    if !expect("type", "m.room.member")
        || !expect("sender", user.as_str())
        || !expect("state_key", user.as_str())
        || !expect("room_id", room_id.as_str())
    {
        return Err(Error::remote(format!(
            "{server} sent a {membership} template for something else"
        )));
    }
    let profile = services.users.account(user)?;
    let profile = if membership == MembershipState::Join {
        profile.as_ref()
    } else {
        None
    };
    let content = member_content(membership, profile, reason, false);
    event.insert(
        "content".into(),
        serde_json::from_value(content).map_err(Error::internal)?,
    );
    event.insert(
        "origin_server_ts".into(),
        serde_json::from_value(serde_json::to_value(MilliSecondsSinceUnixEpoch::now())?)
            .map_err(Error::internal)?,
    );
    for local in ["event_id", "hashes", "signatures", "unsigned"] {
        event.remove(local);
    }
    hash_and_sign_event(
        services.server_name().as_str(),
        &*services.signing_key,
        &mut event,
        &rules.redaction,
    )
    .map_err(Error::internal)?;
    let event_id = event_id_of(&event, &rules)?;
    Ok(Signed {
        event_id,
        event,
        version,
        rules,
    })
}

async fn join_through(
    services: &Services,
    user: &UserId,
    room_id: &RoomId,
    reason: Option<&str>,
    server: &ServerName,
) -> Result<()> {
    let mut request = prepare_join_event::v1::Request::new(room_id.to_owned(), user.to_owned());
    request.ver = SUPPORTED_ROOM_VERSIONS.to_vec();
    let template = services.federation.send(server, request).await?;
    let Signed {
        event_id,
        event,
        version,
        rules,
    } = sign_template(
        services,
        user,
        room_id,
        server,
        (&template.event, template.room_version),
        MembershipState::Join,
        reason,
    )?;

    let request = create_join_event::v2::Request::new(
        room_id.to_owned(),
        event_id.clone(),
        to_raw_value(&event)?,
    );
    let room_state = services.federation.send(server, request).await?.room_state;

    let mut events = Vec::new();
    let mut state = Vec::new();
    for raw in &room_state.state {
        let pdu = verify_pdu(services, raw, room_id, &rules)
            .await
            .map_err(|e| {
                Error::remote(format!("the room state from {server} does not verify: {e}"))
            })?;
        state.push(pdu.event_id.clone());
        events.push((pdu.event_id, pdu.object));
    }
    for raw in &room_state.auth_chain {
        match verify_pdu(services, raw, room_id, &rules).await {
            Ok(pdu) => events.push((pdu.event_id, pdu.object)),
            Err(e) => {
                tracing::info!(%server, error = %e, "dropped an auth event that does not verify")
            }
        }
    }
    // The resident server may have added its signature.
    let join = match &room_state.event {
        Some(raw) => {
            let signed = verify_pdu(services, raw, room_id, &rules).await?;
            if signed.event_id != event_id {
                return Err(Error::remote(format!(
                    "{server} returned another join event"
                )));
            }
            signed.object
        }
        None => event,
    };
    services
        .rooms
        .complete_join(room_id, version, events, state, (event_id, join))
        .await?;
    Ok(())
}

/// Rejects an invite to a room this server is not in: the leave goes
/// through the inviter's server (make_leave, sign, send_leave).
pub async fn leave_remote(
    services: &Services,
    user: &UserId,
    room_id: &RoomId,
    reason: Option<&str>,
) -> Result<()> {
    through_peers(services, user, room_id, &[], "leave", |server| async move {
        leave_through(services, user, room_id, reason, &server).await
    })
    .await
}

async fn leave_through(
    services: &Services,
    user: &UserId,
    room_id: &RoomId,
    reason: Option<&str>,
    server: &ServerName,
) -> Result<()> {
    let request = prepare_leave_event::v1::Request::new(room_id.to_owned(), user.to_owned());
    let template = services.federation.send(server, request).await?;
    let Signed {
        event_id,
        event,
        rules,
        ..
    } = sign_template(
        services,
        user,
        room_id,
        server,
        (&template.event, template.room_version),
        MembershipState::Leave,
        reason,
    )?;
    let request = create_leave_event::v2::Request::new(
        room_id.to_owned(),
        event_id.clone(),
        to_raw_value(&event)?,
    );
    services.federation.send(server, request).await?;
    services
        .rooms
        .store_remote_leave(&event_id, event, &rules)
        .await?;
    Ok(())
}

/// Invites a peer's user: the invitee's server countersigns the invite
/// before it enters the room.
pub async fn invite_remote(
    services: &Services,
    sender: &UserId,
    room_id: &RoomId,
    invitee: &UserId,
    reason: Option<&str>,
    is_direct: bool,
) -> Result<()> {
    let server = invitee.server_name();
    let content = member_content(MembershipState::Invite, None, reason, is_direct);
    let builder = PduBuilder::member(invitee, content);
    let (event_id, event, version) = services.rooms.prepare_event(room_id, sender, &builder)?;
    let rules = room_rules(&version)?;

    // The room as the invitee's client will first see it.
    let mut invite_state = Vec::new();
    for (kind, state_key) in [
        (StateEventType::RoomCreate, ""),
        (StateEventType::RoomJoinRules, ""),
        (StateEventType::RoomName, ""),
        (StateEventType::RoomAvatar, ""),
        (StateEventType::RoomCanonicalAlias, ""),
        (StateEventType::RoomEncryption, ""),
        (StateEventType::RoomTopic, ""),
        (StateEventType::RoomMember, sender.as_str()),
    ] {
        if let Some(id) = services.rooms.state_event_id(room_id, &kind, state_key)?
            && let Some(json) = services.rooms.federation_json(&id)?
        {
            invite_state.push(ruma::api::federation::membership::RawStrippedState::Pdu(
                to_raw_value(&json)?,
            ));
        }
    }
    let request = create_invite::v2::Request::new(
        room_id.to_owned(),
        event_id.clone(),
        version,
        to_raw_value(&event)?,
        invite_state,
    );
    let response = services.federation.send(server, request).await?;
    let signed = verify_pdu(services, &response.event, room_id, &rules).await?;
    if signed.event_id != event_id {
        return Err(Error::remote(format!("{server} returned another invite")));
    }
    let countersigned = matches!(
        signed.object.get("signatures"),
        Some(CanonicalJsonValue::Object(signatures)) if signatures.contains_key(server.as_str())
    );
    if !countersigned {
        return Err(Error::remote(format!("{server} did not sign the invite")));
    }
    // A server already in the room takes the invite as a room event; one
    // that is not has kept it from the invite request.
    let in_room = services
        .rooms
        .servers_in_room(room_id)?
        .iter()
        .any(|s| s == server);
    let relay = if in_room {
        Relay::All
    } else {
        Relay::AllBut(server)
    };
    match services
        .rooms
        .receive(&event_id, signed.object, relay)
        .await?
    {
        Received::Accepted(_) | Received::AlreadyKnown => Ok(()),
        Received::Rejected(why) | Received::SoftFailed(why) => Err(Error::forbidden(format!(
            "The invite is not allowed: {why}"
        ))),
        Received::Missing(_) => Err(Error::internal("the room lost its own events")),
    }
}
