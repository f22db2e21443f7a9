//! `POST /rooms/{roomId}/upgrade`: a new room of another version takes the
//! old one's place (spec "Room Upgrades").
//!
//! The new room gets the old one's settings (join rules, history
//! visibility, guest access, name, topic, avatar, encryption, server ACL,
//! power levels), its bans and its local aliases, and names the old room
//! as its predecessor; the old room gets a tombstone naming the new one,
//! and only moderators may speak in it from then on. From room version 12
//! on the upgrader, and any `additional_creators` asked for, are the new
//! room's creators.

use std::sync::Arc;

use ruma::{
    Int, RoomId,
    api::client::room::upgrade_room,
    events::{
        StateEventType, TimelineEventType, room::member::MembershipState,
        room::power_levels::UserPowerLevel,
    },
};
use serde_json::{Value, json};

use crate::ops::membership::member_content;
use crate::{
    Error, Result, Services, archive_member,
    config::SUPPORTED_ROOM_VERSIONS,
    ruma_wrapper::Ruma,
    service::rooms::{PduBuilder, power_levels, room_rules},
};

/// The state a new room takes over from the old one.
const CARRIED_OVER: &[StateEventType] = &[
    StateEventType::RoomJoinRules,
    StateEventType::RoomHistoryVisibility,
    StateEventType::RoomGuestAccess,
    StateEventType::RoomName,
    StateEventType::RoomTopic,
    StateEventType::RoomAvatar,
    StateEventType::RoomEncryption,
    StateEventType::RoomServerAcl,
];

pub async fn upgrade(
    services: Arc<Services>,
    request: Ruma<upgrade_room::v3::Request>,
) -> Result<upgrade_room::v3::Response> {
    let user = request.user();
    let old = &request.body.room_id;
    let version = &request.body.new_version;
    if !SUPPORTED_ROOM_VERSIONS.contains(version) {
        return Err(Error::unsupported_room_version(format!(
            "Room version {version} is not supported; use 10, 11 or 12."
        )));
    }
    let rooms = &services.rooms;
    if !rooms.is_joined(user, old)? {
        return Err(Error::forbidden("You are not in this room."));
    }
    if rooms
        .state_event_id(old, &StateEventType::RoomTombstone, "")?
        .is_some()
    {
        return Err(Error::forbidden("This room has already been replaced."));
    }
    let old_levels_content = rooms.state_json(old, &StateEventType::RoomPowerLevels, "")?;
    let levels = rooms.power_levels(old)?;
    if !levels.user_can_send_state(user, StateEventType::RoomTombstone) {
        return Err(Error::forbidden(
            "Your power level is too low to replace this room.",
        ));
    }
    let rules = room_rules(version)?.authorization;
    let additional_creators = &request.body.additional_creators;
    if !additional_creators.is_empty() && !rules.additional_room_creators {
        return Err(Error::invalid_param(format!(
            "Room version {version} has no additional creators."
        )));
    }

    let append = |room: &RoomId, kind: TimelineEventType, key: &str, content: Value| {
        let (room, services) = (room.to_owned(), services.clone());
        let builder = PduBuilder::state(kind, key, content);
        async move { services.rooms.append(&room, user, builder).await }
    };

    // The create event: the old one's content (a space stays a space),
    // this version, and where the room came from.
    let mut create = rooms
        .state_json(old, &StateEventType::RoomCreate, "")?
        .and_then(|c| c.as_object().cloned())
        .unwrap_or_default();
    create.remove("predecessor");
    create.remove("additional_creators");
    create.insert("room_version".into(), json!(version));
    if !additional_creators.is_empty() {
        create.insert("additional_creators".into(), json!(additional_creators));
    }
    let last_event = rooms
        .events_before(old, services.counter.visible(), 1)?
        .into_iter()
        .next()
        .map(|(_, pdu)| pdu.event_id);
    create.insert(
        "predecessor".into(),
        json!({ "room_id": old, "event_id": last_event }),
    );
    let new = rooms
        .create_room(user, Value::Object(create))
        .await?
        .pdu
        .room_id
        .clone();
    let profile = services.users.account(user)?;
    append(
        &new,
        TimelineEventType::RoomMember,
        user.as_str(),
        member_content(MembershipState::Join, profile.as_ref(), None, false),
    )
    .await?;

    // The old power levels, with the upgrader raised for as long as the
    // settings and bans are copied, when they would not be allowed to. The
    // creators of a room of version 12 or later outrank every level and are
    // not listed.
    let mut new_levels = old_levels_content
        .clone()
        .unwrap_or_else(|| power_levels::initial_content(&[user], &rules));
    let needed = CARRIED_OVER
        .iter()
        .map(|kind| levels.for_state(kind.clone()))
        .chain([
            levels.ban,
            levels.for_state(StateEventType::RoomPowerLevels),
        ])
        .max()
        .unwrap_or_default();
    let own = levels.for_user(user);
    let raised = !rules.explicitly_privilege_room_creators && own < needed;
    if raised {
        new_levels["users"][user.as_str()] = json!(needed);
    } else if !rules.explicitly_privilege_room_creators && own == UserPowerLevel::Infinite {
        // A creator of the old room keeps the lead in one without creators' rank.
        new_levels["users"][user.as_str()] = json!(levels.max().max(Int::from(100)));
    }
    if rules.explicitly_privilege_room_creators
        && let Some(users) = new_levels["users"].as_object_mut()
    {
        users.remove(user.as_str());
        for creator in additional_creators {
            users.remove(creator.as_str());
        }
    }
    append(&new, TimelineEventType::RoomPowerLevels, "", new_levels).await?;
    for kind in CARRIED_OVER {
        if let Some(state) = rooms.state_json(old, kind, "")? {
            append(&new, kind.to_string().into(), "", state).await?;
        }
    }
    // The archive member is in before anyone says anything there.
    if let Some(hints) = archive_member::member_hints(&services) {
        rooms.append(&new, user, hints).await?;
    }
    archive_member::join(&services, &new, user).await?;
    for (member, record) in rooms.members(old)? {
        if record.membership == MembershipState::Ban {
            append(
                &new,
                TimelineEventType::RoomMember,
                member.as_str(),
                json!({ "membership": "ban" }),
            )
            .await?;
        }
    }
    if raised && let Some(original) = old_levels_content.clone() {
        append(&new, TimelineEventType::RoomPowerLevels, "", original).await?;
    }

    // Local aliases and the directory listing move along.
    for alias in rooms.aliases_of(old)? {
        rooms.remove_alias(&alias).await?;
        rooms.set_alias(&alias, &new).await?;
    }
    if let Some(canonical) = rooms
        .state_json(old, &StateEventType::RoomCanonicalAlias, "")?
        .filter(|c| c.as_object().is_some_and(|c| !c.is_empty()))
    {
        append(&new, TimelineEventType::RoomCanonicalAlias, "", canonical).await?;
        append(old, TimelineEventType::RoomCanonicalAlias, "", json!({})).await?;
    }
    if rooms.is_published(old)? {
        rooms.set_published(&new, true).await?;
        rooms.set_published(old, false).await?;
    }

    // The old room points to the new one, and only moderators speak on.
    append(
        old,
        TimelineEventType::RoomTombstone,
        "",
        json!({ "body": "This room has been replaced", "replacement_room": new }),
    )
    .await?;
    if let Some(mut restricted) = old_levels_content {
        let floor = Int::from(50).max(levels.users_default + Int::from(1));
        restricted["events_default"] = json!(levels.events_default.max(floor));
        restricted["invite"] = json!(levels.invite.max(floor));
        if levels.user_can_send_state(user, StateEventType::RoomPowerLevels)
            && let Err(e) = append(old, TimelineEventType::RoomPowerLevels, "", restricted).await
        {
            tracing::warn!(room = %old, error = %e, "restricting the replaced room");
        }
    }
    tracing::info!(old = %old, new = %new, version = %version, by = %user, "room upgraded");
    Ok(upgrade_room::v3::Response::new(new))
}
