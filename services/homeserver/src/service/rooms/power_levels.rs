//! The power levels of a room, as the auth rules read them, for the checks
//! they leave to the server.

use ruma::{
    OwnedUserId, RoomId, UserId,
    events::{
        StateEventType,
        room::{
            create::RoomCreateEventContent,
            power_levels::{RoomPowerLevels, RoomPowerLevelsEventContent},
        },
    },
    room_version_rules::AuthorizationRules,
};

use super::Rooms;
use crate::Result;

impl Rooms {
    /// The room's current power levels: its power levels event (the
    /// defaults without one) and its creators, whom room version 12 on
    /// ranks above every level.
    pub fn power_levels(&self, room_id: &RoomId) -> Result<RoomPowerLevels> {
        let (_, rules) = self.rules(room_id)?;
        let content = self
            .state_content(room_id, &StateEventType::RoomPowerLevels, "")?
            .and_then(|c| serde_json::from_str::<RoomPowerLevelsEventContent>(&c).ok());
        let creators = self.creators(room_id, &rules.authorization)?;
        Ok(RoomPowerLevels::new(
            content.into(),
            &rules.authorization,
            creators,
        ))
    }

    /// The room's creators: the create event's sender, and from room
    /// version 12 on its `additional_creators`.
    pub fn creators(
        &self,
        room_id: &RoomId,
        rules: &AuthorizationRules,
    ) -> Result<Vec<OwnedUserId>> {
        let Some(create) = self.state_pdu(room_id, &StateEventType::RoomCreate, "")? else {
            return Ok(Vec::new());
        };
        let mut creators = vec![create.sender.clone()];
        if rules.additional_room_creators
            && let Ok(content) =
                serde_json::from_str::<RoomCreateEventContent>(create.content.get())
        {
            creators.extend(content.additional_creators);
        }
        Ok(creators)
    }
}

/// The power levels a new room starts with (as Synapse and the spec's
/// presets do). `admins` get 100, unless the room's creators outrank every
/// level (room version 12 on): then they are not listed, as the auth rules
/// require, and replacing the room takes more than 100.
pub fn initial_content(admins: &[&UserId], rules: &AuthorizationRules) -> serde_json::Value {
    let mut users = serde_json::Map::new();
    if !rules.explicitly_privilege_room_creators {
        for admin in admins {
            users.insert(admin.to_string(), 100.into());
        }
    }
    let tombstone = if rules.explicitly_privilege_room_creators {
        150
    } else {
        100
    };
    serde_json::json!({
        "users": users,
        "users_default": 0,
        "events": {
            "m.room.name": 50,
            "m.room.power_levels": 100,
            "m.room.history_visibility": 100,
            "m.room.canonical_alias": 50,
            "m.room.avatar": 50,
            "m.room.tombstone": tombstone,
            "m.room.server_acl": 100,
            "m.room.encryption": 100,
        },
        "events_default": 0,
        "state_default": 50,
        "ban": 50,
        "kick": 50,
        "redact": 50,
        "invite": 0,
        "notifications": { "room": 50 },
    })
}
