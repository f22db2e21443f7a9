//! Reading `m.room.power_levels` for checks the auth rules leave to the server.

use std::collections::BTreeMap;

use ruma::{Int, OwnedUserId, UserId};
use serde::Deserialize;

/// The parts of the power levels content this server consults directly.
#[derive(Debug, Deserialize)]
pub struct PowerLevels {
    #[serde(default)]
    pub users: BTreeMap<OwnedUserId, Int>,
    #[serde(default)]
    pub users_default: Int,
    #[serde(default)]
    pub events: BTreeMap<String, Int>,
    #[serde(default)]
    pub events_default: Int,
    #[serde(default = "fifty")]
    pub state_default: Int,
    #[serde(default = "fifty")]
    pub redact: Int,
    #[serde(default = "fifty")]
    pub kick: Int,
    #[serde(default = "fifty")]
    pub ban: Int,
    #[serde(default)]
    pub invite: Int,
}

fn fifty() -> Int {
    Int::from(50)
}

impl PowerLevels {
    /// Without a power levels event the creator has 100 and everyone else 0.
    pub fn parse(content: Option<&str>) -> Self {
        content
            .and_then(|c| serde_json::from_str(c).ok())
            .unwrap_or_default()
    }

    pub fn user_level(&self, user: &UserId) -> Int {
        self.users.get(user).copied().unwrap_or(self.users_default)
    }

    pub fn event_level(&self, event_type: &str, is_state: bool) -> Int {
        self.events.get(event_type).copied().unwrap_or(if is_state {
            self.state_default
        } else {
            self.events_default
        })
    }
}

impl Default for PowerLevels {
    fn default() -> Self {
        PowerLevels {
            users: BTreeMap::new(),
            users_default: Int::from(0),
            events: BTreeMap::new(),
            events_default: Int::from(0),
            state_default: fifty(),
            redact: fifty(),
            kick: fifty(),
            ban: fifty(),
            invite: Int::from(0),
        }
    }
}

/// The power levels a new room starts with (as Synapse and the spec's presets do).
pub fn initial_content(creator: &UserId, extra_admins: &[OwnedUserId]) -> serde_json::Value {
    let mut users = serde_json::Map::new();
    users.insert(creator.to_string(), 100.into());
    for admin in extra_admins {
        users.insert(admin.to_string(), 100.into());
    }
    serde_json::json!({
        "users": users,
        "users_default": 0,
        "events": {
            "m.room.name": 50,
            "m.room.power_levels": 100,
            "m.room.history_visibility": 100,
            "m.room.canonical_alias": 50,
            "m.room.avatar": 50,
            "m.room.tombstone": 100,
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
