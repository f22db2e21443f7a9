//! Creating a room: presets, initial state, invites, room versions 10 to 12.

use ruma::{
    OwnedRoomId, RoomAliasId, UserId,
    api::client::room::{
        Visibility,
        create_room::{self, v3::RoomPreset},
    },
    events::{TimelineEventType, room::member::MembershipState},
};
use serde_json::{Value, json};

use super::membership::{invite_user, member_content};
use crate::{
    Error, Result, Services, archive_member,
    config::SUPPORTED_ROOM_VERSIONS,
    service::rooms::{PduBuilder, power_levels, room_rules},
};

/// Creates the room `body` asks for, with `sender` as its creator: every
/// part of the request is checked before anything is written.
pub async fn create_room(
    services: &Services,
    sender: &UserId,
    body: &create_room::v3::Request,
) -> Result<OwnedRoomId> {
    let version = body
        .room_version
        .clone()
        .unwrap_or_else(|| services.config.default_room_version.clone());
    if !SUPPORTED_ROOM_VERSIONS.contains(&version) {
        return Err(Error::unsupported_room_version(format!(
            "Room version {version} is not supported; use 10, 11 or 12."
        )));
    }
    // A peer's user is invited through federation: refuse one of another
    // server before anything is written.
    for invitee in &body.invite {
        if !services.is_local(invitee) {
            services.federation.require_peer(invitee.server_name())?;
        }
    }

    // Validate everything the client sent before writing anything.
    let alias = match &body.room_alias_name {
        Some(name) => {
            let alias = RoomAliasId::parse(format!("#{name}:{}", services.server_name()))
                .map_err(|_| Error::invalid_param("Invalid room_alias_name."))?;
            if services.rooms.resolve_alias(&alias)?.is_some() {
                return Err(Error::room_in_use("That room alias is taken."));
            }
            Some(alias)
        }
        None => None,
    };
    let mut create_content: serde_json::Map<String, Value> = match &body.creation_content {
        Some(raw) => serde_json::from_str(raw.json().get())
            .map_err(|e| Error::bad_json(format!("Invalid creation_content: {e}")))?,
        None => serde_json::Map::new(),
    };
    let rules = room_rules(&version)?.authorization;
    create_content.insert("room_version".into(), Value::String(version.to_string()));
    let mut initial_state = Vec::new();
    for raw in &body.initial_state {
        let event: Value = serde_json::from_str(raw.json().get())
            .map_err(|e| Error::bad_json(format!("Invalid initial_state: {e}")))?;
        let kind = event["type"]
            .as_str()
            .ok_or_else(|| Error::bad_json("initial_state events need a type."))?
            .to_owned();
        let state_key = event["state_key"].as_str().unwrap_or_default().to_owned();
        if kind == "m.room.create" || kind == "m.room.member" || kind == "m.room.power_levels" {
            return Err(Error::bad_json(format!(
                "{kind} cannot be set in initial_state."
            )));
        }
        initial_state.push(PduBuilder::state(kind, state_key, event["content"].clone()));
    }

    let preset = body.preset.clone().unwrap_or(match body.visibility {
        Visibility::Public => RoomPreset::PublicChat,
        _ => RoomPreset::PrivateChat,
    });
    let (join_rule, guest_access, trusted) = match preset {
        RoomPreset::PublicChat => ("public", "forbidden", false),
        RoomPreset::TrustedPrivateChat => ("invite", "can_join", true),
        _ => ("invite", "can_join", false),
    };

    // A trusted private chat makes its invitees admins: from room version
    // 12 on, creators beside the one who creates it.
    if trusted && rules.additional_room_creators && !body.invite.is_empty() {
        let mut creators: Vec<Value> = match create_content.remove("additional_creators") {
            Some(Value::Array(listed)) => listed,
            Some(_) => return Err(Error::bad_json("additional_creators must be a list.")),
            None => Vec::new(),
        };
        for invitee in &body.invite {
            let invitee = Value::String(invitee.to_string());
            if !creators.contains(&invitee) {
                creators.push(invitee);
            }
        }
        create_content.insert("additional_creators".into(), Value::Array(creators));
    }

    let rooms = &services.rooms;
    let room_id = rooms
        .create_room(sender, Value::Object(create_content))
        .await?
        .pdu
        .room_id
        .clone();

    let profile = services.users.account(sender)?;
    let join = member_content(
        MembershipState::Join,
        profile.as_ref(),
        None,
        body.is_direct,
    );
    rooms
        .append(&room_id, sender, PduBuilder::member(sender, join))
        .await?;

    let mut admins = vec![sender];
    if trusted {
        admins.extend(body.invite.iter().map(|invitee| &**invitee));
    }
    let mut power_levels = power_levels::initial_content(&admins, &rules);
    if let Some(overrides) = &body.power_level_content_override {
        let overrides: Value = serde_json::from_str(overrides.json().get())?;
        merge(&mut power_levels, overrides);
    }
    // The room's own state events (state key ""), in the order they are
    // sent; the archive member joins after the presets, before the
    // client's initial state.
    let room_state = |kind: TimelineEventType, content: Value| PduBuilder::state(kind, "", content);
    let presets = [
        Some(room_state(TimelineEventType::RoomPowerLevels, power_levels)),
        alias.as_ref().map(|alias| {
            room_state(
                TimelineEventType::RoomCanonicalAlias,
                json!({ "alias": alias }),
            )
        }),
        Some(room_state(
            TimelineEventType::RoomJoinRules,
            json!({ "join_rule": join_rule }),
        )),
        Some(room_state(
            TimelineEventType::RoomHistoryVisibility,
            json!({ "history_visibility": "shared" }),
        )),
        Some(room_state(
            TimelineEventType::RoomGuestAccess,
            json!({ "guest_access": guest_access }),
        )),
    ];
    for builder in presets.into_iter().flatten() {
        rooms.append(&room_id, sender, builder).await?;
    }

    // The archive member is in before anything is said or encrypted, and
    // never leads the room's name.
    if let Some(hints) = archive_member::member_hints(services) {
        rooms.append(&room_id, sender, hints).await?;
    }
    archive_member::join(services, &room_id, sender).await?;

    let named = [
        body.name
            .as_ref()
            .map(|name| room_state(TimelineEventType::RoomName, json!({ "name": name }))),
        body.topic
            .as_ref()
            .map(|topic| room_state(TimelineEventType::RoomTopic, json!({ "topic": topic }))),
    ];
    for builder in initial_state.into_iter().chain(named.into_iter().flatten()) {
        rooms.append(&room_id, sender, builder).await?;
    }
    for invitee in &body.invite {
        invite_user(services, sender, &room_id, invitee, None, body.is_direct).await?;
    }
    if let Some(alias) = &alias {
        rooms.set_alias(alias, &room_id).await?;
    }
    if body.visibility == Visibility::Public {
        rooms.set_published(&room_id, true).await?;
    }
    tracing::info!(room = %room_id, creator = %sender, "room created");
    Ok(room_id)
}

fn merge(base: &mut Value, overrides: Value) {
    match (base, overrides) {
        (Value::Object(base), Value::Object(overrides)) => {
            for (k, v) in overrides {
                merge(base.entry(k).or_insert(Value::Null), v);
            }
        }
        (base, overrides) => *base = overrides,
    }
}
