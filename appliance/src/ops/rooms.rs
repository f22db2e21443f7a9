//! The rooms as an operator sees them: their metadata and members, never
//! their messages.

use anyhow::{Context, Result};
use ruma::{RoomId, events::StateEventType};
use serde_json::Value;

use super::Node;

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
