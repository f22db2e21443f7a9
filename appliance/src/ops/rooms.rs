//! The rooms as an operator sees them: their metadata and members, never
//! their messages.

use anyhow::{Context, Result, anyhow, bail, ensure};
use archipel_homeserver::service::rooms::PduBuilder;
use ruma::{
    Int, RoomId, UserId,
    events::{
        StateEventType,
        room::power_levels::{RoomPowerLevelsEventContent, UserPowerLevel},
    },
};
use serde_json::Value;

use super::{Actor, Node, audited};

/// A room's metadata.
pub struct RoomSummary {
    pub room_id: String,
    pub name: String,
    pub version: String,
    pub joined: usize,
    pub encrypted: bool,
    pub creator: String,
    pub join_rule: String,
}

/// A room and its members with their membership.
pub struct RoomDetails {
    pub summary: RoomSummary,
    pub members: Vec<(String, String)>,
}

/// One state event's content, of the room's current state.
fn state_content(node: Node<'_>, room: &RoomId, kind: StateEventType) -> Result<Option<Value>> {
    let rooms = &node.services.rooms;
    let Some(pdu) = rooms.current_state_of_type(room, &kind)?.into_iter().next() else {
        return Ok(None);
    };
    Ok(Some(serde_json::from_str(pdu.content.get())?))
}

fn summary(node: Node<'_>, room: &RoomId) -> Result<RoomSummary> {
    let rooms = &node.services.rooms;
    let text = |value: Option<Value>, field: &str| {
        value
            .as_ref()
            .and_then(|v| v[field].as_str())
            .unwrap_or_default()
            .to_owned()
    };
    let create = state_content(node, room, StateEventType::RoomCreate)?;
    let creator = rooms
        .current_state_of_type(room, &StateEventType::RoomCreate)?
        .into_iter()
        .next()
        .map(|pdu| pdu.sender.to_string())
        .unwrap_or_default();
    Ok(RoomSummary {
        room_id: room.to_string(),
        name: text(state_content(node, room, StateEventType::RoomName)?, "name"),
        version: text(create, "room_version"),
        joined: rooms.joined_members(room)?.len(),
        encrypted: state_content(node, room, StateEventType::RoomEncryption)?.is_some(),
        creator,
        join_rule: text(
            state_content(node, room, StateEventType::RoomJoinRules)?,
            "join_rule",
        ),
    })
}

/// The rooms whose ID or name contains `query` (all when empty), at most
/// `limit`; and whether there were more.
pub fn find(node: Node<'_>, query: &str, limit: usize) -> Result<(Vec<RoomSummary>, bool)> {
    let needle = query.trim().to_lowercase();
    let mut found = Vec::new();
    for room in node.services.rooms.all_rooms()? {
        let summary = summary(node, &room)?;
        if !needle.is_empty()
            && !summary.room_id.to_lowercase().contains(&needle)
            && !summary.name.to_lowercase().contains(&needle)
        {
            continue;
        }
        if found.len() == limit {
            return Ok((found, true));
        }
        found.push(summary);
    }
    Ok((found, false))
}

/// One room's metadata and members.
pub fn details(node: Node<'_>, room: &str) -> Result<RoomDetails> {
    let room = <&RoomId>::try_from(room).with_context(|| format!("`{room}` is not a room ID"))?;
    if !node.services.rooms.exists(room)? {
        anyhow::bail!("this server does not know {room}");
    }
    let members = node
        .services
        .rooms
        .members(room)?
        .into_iter()
        .map(|(user, record)| (user.to_string(), record.membership.to_string()))
        .collect();
    Ok(RoomDetails {
        summary: summary(node, room)?,
        members,
    })
}

/// The level of a room's admin.
const ADMIN_LEVEL: i32 = 100;

/// Hands admin of `room` to `user`, a member from this node who is in the
/// room: when its admins left or lost their accounts. The power levels
/// change as a member of this node who may change them would change them
/// (the one with the most power), and `user` gets 100, or as much as that
/// member has. Rooms where no member of this node has that power stay as
/// they are: a server cannot take power in a room, only use its members'.
pub async fn make_admin(node: Node<'_>, actor: &Actor, room: &str, user: &str) -> Result<String> {
    let done = hand_admin(node, room, user).await;
    audited(
        node,
        actor,
        "room make-admin",
        &format!("{room}: {user}"),
        done,
    )
}

async fn hand_admin(node: Node<'_>, room: &str, user: &str) -> Result<String> {
    let rooms = &node.services.rooms;
    let room = <&RoomId>::try_from(room).with_context(|| format!("`{room}` is not a room ID"))?;
    let user = <&UserId>::try_from(user).with_context(|| format!("`{user}` is not a user ID"))?;
    let ours: &ruma::ServerName = &node.config.homeserver.server_name;
    ensure!(
        user.server_name() == ours,
        "{user} is not a user of this server"
    );
    ensure!(
        rooms.is_joined(user, room)?,
        "{user} is not in the room: someone in it invites them first"
    );
    let mut levels = rooms.power_levels(room)?;
    let admin_level = Int::from(ADMIN_LEVEL);
    if levels.for_user(user) >= UserPowerLevel::Int(admin_level) {
        bail!("{user} is an admin of the room already");
    }
    let granter = rooms
        .joined_members(room)?
        .into_iter()
        .filter(|member| member.server_name() == ours && member != user)
        .filter(|member| levels.user_can_change_user_power_level(member, user))
        .max_by_key(|member| levels.for_user(member))
        .ok_or_else(|| {
            anyhow!("no member of this server in the room may change its power levels")
        })?;
    let level = match levels.for_user(&granter) {
        UserPowerLevel::Int(level) => level.min(admin_level),
        _ => admin_level,
    };
    levels.users.insert(user.to_owned(), level);
    let content = RoomPowerLevelsEventContent::try_from(levels)
        .map_err(|e| anyhow!("the room's power levels: {e}"))?;
    let builder = PduBuilder::state(
        StateEventType::RoomPowerLevels.to_string(),
        "",
        serde_json::to_value(content)?,
    );
    rooms
        .append(room, &granter, builder)
        .await
        .map_err(|e| anyhow!("changing the power levels as {granter}: {e}"))?;
    Ok(format!(
        "{user} is now an admin of the room (power level {level}), set with the power of {granter}"
    ))
}
