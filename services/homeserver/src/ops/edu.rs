//! EDUs both ways: typing, receipts, presence, device-list and
//! cross-signing updates, and to-device messages. Each goes out to the
//! servers that share a room with the user (or hold the recipient).
//!
//! A peer speaks only for its own users: an EDU about a user of another
//! server, or about a room the user is not in, is dropped.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::Duration,
};

use ruma::{
    DeviceId, OwnedServerName, OwnedUserId, RoomId, ServerName, UserId,
    api::federation::transactions::edu::Edu, events::room::member::MembershipState, serde::Raw,
    to_device::DeviceIdOrAllDevices,
};
use serde_json::{Value, json};

use crate::{Result, Services, service::users::random_string};

/// How long a peer's typing notice lasts unless renewed or ended.
const REMOTE_TYPING: Duration = Duration::from_secs(30);

/// Applies one EDU from `origin`. Malformed or foreign EDUs are dropped
/// with a log line: an EDU has no answer to carry an error.
pub async fn receive(services: &Services, origin: &ServerName, raw: &Raw<Edu>) -> Result<()> {
    let edu = match raw.deserialize() {
        Ok(edu) => edu,
        Err(e) => {
            tracing::info!(%origin, error = %e, "dropped a malformed EDU");
            return Ok(());
        }
    };
    let speaks_for = |user: &UserId| {
        let ok = user.server_name() == origin;
        if !ok {
            tracing::info!(%origin, %user, "dropped an EDU about another server's user");
        }
        ok
    };
    match edu {
        Edu::Typing(typing) => {
            if speaks_for(&typing.user_id)
                && services.rooms.is_joined(&typing.user_id, &typing.room_id)?
            {
                let timeout = typing.typing.then_some(REMOTE_TYPING);
                services
                    .typing
                    .set(&typing.room_id, &typing.user_id, timeout)?;
            }
        }
        Edu::Receipt(receipts) => {
            for (room_id, map) in receipts.receipts {
                for (user, data) in map.read {
                    if !speaks_for(&user) || !services.rooms.is_joined(&user, &room_id)? {
                        continue;
                    }
                    let thread = match data.data.thread {
                        ruma::events::receipt::ReceiptThread::Main => Some("main".to_owned()),
                        ruma::events::receipt::ReceiptThread::Thread(id) => Some(id.to_string()),
                        _ => None,
                    };
                    for event_id in data.event_ids {
                        if services.rooms.get_pdu(&event_id)?.is_some() {
                            services
                                .receipts
                                .set(&room_id, &user, "m.read", &event_id, thread.clone())
                                .await?;
                        }
                    }
                }
            }
        }
        Edu::Presence(presence) => {
            // Kept only for the peer's users who are in a room with this
            // node (every sync reads them), and at most a transaction's worth.
            for update in presence.push.into_iter().take(MAX_PRESENCE) {
                if speaks_for(&update.user_id)
                    && services
                        .rooms
                        .rooms_of(&update.user_id)?
                        .iter()
                        .any(|(_, record)| record.membership == MembershipState::Join)
                {
                    services
                        .presence
                        .set(
                            &update.user_id,
                            update.presence.clone(),
                            Some(update.status_msg),
                        )
                        .await?;
                }
            }
        }
        Edu::DeviceListUpdate(update) => {
            if speaks_for(&update.user_id) {
                services.e2ee.note_key_change(&update.user_id).await?;
            }
        }
        Edu::SigningKeyUpdate(update) => {
            if speaks_for(&update.user_id) {
                services.e2ee.note_key_change(&update.user_id).await?;
            }
        }
        Edu::DirectToDevice(message) => {
            if speaks_for(&message.sender) {
                let mut targets = Vec::new();
                for (user, devices) in message.messages {
                    if !services.is_local(&user) {
                        continue;
                    }
                    for (target, content) in devices {
                        let content: Value = serde_json::from_str(content.json().get())?;
                        for device in local_devices(services, &user, &target)? {
                            targets.push((user.clone(), device, content.clone()));
                        }
                    }
                }
                services
                    .e2ee
                    .send_to_device(&message.sender, &message.ev_type.to_string(), targets)
                    .await?;
            }
        }
        _ => tracing::debug!(%origin, "ignored an EDU of an unknown type"),
    }
    Ok(())
}

/// Presence updates taken from one EDU.
const MAX_PRESENCE: usize = 100;

/// The devices `target` names among `user`'s.
pub fn local_devices(
    services: &Services,
    user: &UserId,
    target: &DeviceIdOrAllDevices,
) -> Result<Vec<ruma::OwnedDeviceId>> {
    Ok(match target {
        // Kept only for a device that exists, so nothing waits for ever.
        DeviceIdOrAllDevices::DeviceId(device) => services
            .users
            .device(user, device)?
            .map(|d| d.device_id)
            .into_iter()
            .collect(),
        DeviceIdOrAllDevices::AllDevices => services
            .users
            .devices(user)?
            .into_iter()
            .map(|d| d.device_id)
            .collect(),
    })
}

/// Peers with members in `room_id`.
fn peers_in_room(services: &Services, room_id: &RoomId) -> Result<Vec<OwnedServerName>> {
    Ok(services
        .rooms
        .servers_in_room(room_id)?
        .iter()
        .filter(|server| services.federation.allows(server))
        .cloned()
        .collect())
}

/// Peers sharing at least one room with `user`.
fn peers_of(services: &Services, user: &UserId) -> Result<Vec<OwnedServerName>> {
    let mut out = BTreeSet::new();
    for room_id in services.rooms.joined_rooms(user)? {
        out.extend(peers_in_room(services, &room_id)?);
    }
    Ok(out.into_iter().collect())
}

/// Tells the room's peers that `user` started or stopped typing.
pub fn send_typing(
    services: &Services,
    room_id: &RoomId,
    user: &UserId,
    typing: bool,
) -> Result<()> {
    if !services.federation.enabled() {
        return Ok(());
    }
    let edu = json!({
        "edu_type": "m.typing",
        "content": { "room_id": room_id, "user_id": user, "typing": typing },
    });
    services
        .federation
        .queue_ephemeral(&peers_in_room(services, room_id)?, edu);
    Ok(())
}

/// Tells the room's peers that `user` has read up to `event_id`.
pub async fn send_receipt(
    services: &Services,
    room_id: &RoomId,
    user: &UserId,
    event_id: &ruma::EventId,
    thread: Option<&str>,
) -> Result<()> {
    if !services.federation.enabled() {
        return Ok(());
    }
    let mut data = json!({ "ts": crate::service::users::now_ms() });
    if let Some(thread) = thread {
        data["thread_id"] = json!(thread);
    }
    let edu = json!({
        "edu_type": "m.receipt",
        "content": { room_id.as_str(): { "m.read": { user.as_str(): {
            "event_ids": [event_id], "data": data,
        } } } },
    });
    services
        .federation
        .queue_edu(&peers_in_room(services, room_id)?, &edu)
        .await
}

/// Tells the peers sharing a room with `user` about their presence.
pub fn send_presence(services: &Services, user: &UserId) -> Result<()> {
    if !services.federation.enabled() {
        return Ok(());
    }
    let Some(record) = services.presence.get(user)? else {
        return Ok(());
    };
    let mut update = json!({
        "user_id": user,
        "presence": record.presence,
        "last_active_ago": crate::service::users::now_ms().saturating_sub(record.last_active_ts),
        "currently_active": record.presence == ruma::presence::PresenceState::Online,
    });
    if let Some(msg) = &record.status_msg {
        update["status_msg"] = json!(msg);
    }
    let edu = json!({ "edu_type": "m.presence", "content": { "push": [update] } });
    services
        .federation
        .queue_ephemeral(&peers_of(services, user)?, edu);
    Ok(())
}

/// Tells the peers sharing a room with `user` that a device changed: new
/// keys, or the device is gone.
pub async fn send_device_update(
    services: &Services,
    user: &UserId,
    device: &DeviceId,
    deleted: bool,
) -> Result<()> {
    if !services.federation.enabled() {
        return Ok(());
    }
    let mut content = json!({
        "user_id": user,
        "device_id": device,
        "stream_id": services.counter.visible(),
        "prev_id": [],
        "deleted": deleted,
    });
    if !deleted {
        if let Some(keys) = services.e2ee.device_keys(user, device)? {
            content["keys"] = keys;
        }
        if let Some(name) = services
            .users
            .device(user, device)?
            .and_then(|d| d.display_name)
        {
            content["device_display_name"] = json!(name);
        }
    }
    let edu = json!({ "edu_type": "m.device_list_update", "content": content });
    services
        .federation
        .queue_edu(&peers_of(services, user)?, &edu)
        .await
}

/// Tells the peers sharing a room with `user` that their cross-signing
/// keys changed.
pub async fn send_signing_key_update(services: &Services, user: &UserId) -> Result<()> {
    use crate::service::e2ee::{MASTER, SELF_SIGNING};
    if !services.federation.enabled() {
        return Ok(());
    }
    let mut content = json!({ "user_id": user });
    if let Some(key) = services.e2ee.cross_signing_key(user, MASTER)? {
        content["master_key"] = key;
    }
    if let Some(key) = services.e2ee.cross_signing_key(user, SELF_SIGNING)? {
        content["self_signing_key"] = key;
    }
    let edu = json!({ "edu_type": "m.signing_key_update", "content": content });
    services
        .federation
        .queue_edu(&peers_of(services, user)?, &edu)
        .await
}

/// Sends to-device messages for remote users, one EDU per server.
/// `messages` maps each remote user to device targets and contents.
pub async fn send_to_device(
    services: &Services,
    sender: &UserId,
    event_type: &str,
    messages: Vec<(OwnedUserId, DeviceIdOrAllDevices, Value)>,
) -> Result<()> {
    type Targets = BTreeMap<OwnedUserId, BTreeMap<String, Value>>;
    let mut by_server: BTreeMap<OwnedServerName, Targets> = BTreeMap::new();
    for (user, target, content) in messages {
        services.federation.require_peer(user.server_name())?;
        let target = match target {
            DeviceIdOrAllDevices::DeviceId(device) => device.to_string(),
            _ => "*".to_owned(),
        };
        by_server
            .entry(user.server_name().to_owned())
            .or_default()
            .entry(user)
            .or_default()
            .insert(target, content);
    }
    for (server, messages) in by_server {
        let edu = json!({
            "edu_type": "m.direct_to_device",
            "content": {
                "sender": sender,
                "type": event_type,
                "message_id": random_string(16),
                "messages": messages,
            },
        });
        services.federation.queue_edu(&[server], &edu).await?;
    }
    Ok(())
}
