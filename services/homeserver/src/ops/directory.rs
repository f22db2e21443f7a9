//! Room aliases, including a peer's, and what a room's summary shows to whom.

use crate::{Error, Result, Services};
use ruma::{
    OwnedRoomId, OwnedServerName, RoomAliasId, RoomId, RoomVersionId, UInt,
    api::federation::query::get_room_information,
    directory::{PublicRoomsChunk, PublicRoomsChunkInit},
    events::{StateEventType, room::member::MembershipState},
    room::{JoinRuleKind, RoomSummary},
};

/// The room `alias` names and servers to join it through. A peer's alias
/// is asked of the peer.
pub async fn resolve_alias(
    services: &Services,
    alias: &RoomAliasId,
) -> Result<(OwnedRoomId, Vec<OwnedServerName>)> {
    if alias.server_name() != services.server_name() {
        services.federation.require_peer(alias.server_name())?;
        let answer = services
            .federation
            .send(
                alias.server_name(),
                get_room_information::v1::Request::new(alias.to_owned()),
            )
            .await?;
        return Ok((answer.room_id, answer.servers));
    }
    let mut room_id = services.rooms.resolve_alias(alias)?;
    // An alias in a bridge's namespace that does not exist yet: the bridge
    // is asked, and may create its room.
    if room_id.is_none()
        && crate::appservice::query(services, crate::appservice::Query::Alias(alias)).await
    {
        room_id = services.rooms.resolve_alias(alias)?;
    }
    let room_id = room_id.ok_or_else(|| Error::not_found("Room alias not found."))?;
    Ok((room_id, vec![services.server_name().to_owned()]))
}

/// A room's summary as JSON, if this node holds the room and `user` may
/// preview it: a member or invitee, or anyone for a room they could join
/// or read (public, knockable, world-readable).
pub fn previewable_summary(
    services: &Services,
    user: &ruma::UserId,
    room_id: &RoomId,
) -> Result<Option<serde_json::Value>> {
    let rooms = &services.rooms;
    let Some(create) = rooms.state_pdu(room_id, &StateEventType::RoomCreate, "")? else {
        return Ok(None);
    };
    let chunk = chunk(services, room_id)?;
    let open = matches!(
        chunk.join_rule,
        JoinRuleKind::Public | JoinRuleKind::Knock | JoinRuleKind::KnockRestricted
    ) || chunk.world_readable;
    let member = rooms
        .membership(user, room_id)?
        .is_some_and(|m| m.is_joined() || m.membership == MembershipState::Invite);
    if !open && !member {
        return Ok(None);
    }
    let create = create.content_value();
    let encryption = rooms
        .state_pdu(room_id, &StateEventType::RoomEncryption, "")?
        .and_then(|p| p.content_value()["algorithm"].as_str().map(Into::into));
    let mut summary = RoomSummary::new(
        room_id.to_owned(),
        chunk.join_rule.clone().into(),
        chunk.guest_can_join,
        chunk.num_joined_members,
        chunk.world_readable,
    );
    summary.canonical_alias = chunk.canonical_alias;
    summary.name = chunk.name;
    summary.topic = chunk.topic;
    summary.avatar_url = chunk.avatar_url;
    summary.room_type = create["type"].as_str().map(Into::into);
    summary.room_version = create["room_version"]
        .as_str()
        .and_then(|v| RoomVersionId::try_from(v).ok())
        .or(Some(RoomVersionId::V1));
    summary.encryption = encryption;
    // The summary's `join_rule` is required, but ruma leaves out the
    // default ("public"): written out here.
    let mut body = serde_json::to_value(&summary)?;
    body["join_rule"] = serde_json::Value::String(chunk.join_rule.as_str().to_owned());
    Ok(Some(body))
}

pub fn chunk(services: &Services, room_id: &RoomId) -> Result<PublicRoomsChunk> {
    let rooms = &services.rooms;
    let content = |kind: StateEventType| -> Result<serde_json::Value> {
        Ok(rooms
            .state_pdu(room_id, &kind, "")?
            .map(|p| p.content_value())
            .unwrap_or_default())
    };
    let joined = rooms.joined_members(room_id)?.len() as u64;
    let history = content(StateEventType::RoomHistoryVisibility)?;
    let guest = content(StateEventType::RoomGuestAccess)?;
    let mut chunk: PublicRoomsChunk = PublicRoomsChunkInit {
        num_joined_members: UInt::try_from(joined).unwrap_or_default(),
        room_id: room_id.to_owned(),
        world_readable: history["history_visibility"] == "world_readable",
        guest_can_join: guest["guest_access"] == "can_join",
    }
    .into();
    chunk.name = content(StateEventType::RoomName)?["name"]
        .as_str()
        .map(str::to_owned);
    chunk.topic = content(StateEventType::RoomTopic)?["topic"]
        .as_str()
        .map(str::to_owned);
    chunk.canonical_alias = content(StateEventType::RoomCanonicalAlias)?["alias"]
        .as_str()
        .and_then(|a| a.try_into().ok());
    chunk.avatar_url = content(StateEventType::RoomAvatar)?["url"]
        .as_str()
        .map(Into::into);
    if let Some(rule) = content(StateEventType::RoomJoinRules)?["join_rule"].as_str() {
        chunk.join_rule = rule.into();
    }
    Ok(chunk)
}

/// Refuses an alias in a bridge's exclusive namespace to anyone but that
/// bridge (`by`: the bridge asking, if one is).
pub fn refuse_exclusive_alias(
    services: &Services,
    alias: &ruma::RoomAliasId,
    by: Option<&crate::appservice::Registration>,
) -> Result<()> {
    match services.appservices.exclusive_alias(alias) {
        Some(owner) if by.is_none_or(|by| by.id != owner.id) => {
            Err(crate::Error::exclusive(format!(
                "{alias} is reserved by the application service {}.",
                owner.id
            )))
        }
        _ => Ok(()),
    }
}
