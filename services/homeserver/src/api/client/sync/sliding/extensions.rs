//! The sliding sync extensions: `to_device`, `e2ee`, `account_data`,
//! `receipts` and `typing`. Unknown ones are ignored.

use std::collections::{BTreeMap, BTreeSet};

use ruma::{
    DeviceId, OwnedRoomId, UserId,
    api::client::sync::sync_events::v5::{
        self,
        request::ExtensionRoomConfig,
        response::{AccountData, E2EE, Extensions, Receipts, ToDevice, Typing},
    },
    push::Ruleset,
};
use serde_json::{Value, json};

use super::{
    Ctx,
    lists::{Candidates, Selection},
};
use crate::{Result, Services, service::rooms::pdu::raw};

/// To-device messages one response carries when the client does not say.
const DEFAULT_TO_DEVICE_LIMIT: u64 = 100;
const MAX_TO_DEVICE_LIMIT: u64 = 1000;

pub fn enabled(flag: Option<bool>) -> bool {
    flag == Some(true)
}

/// The extensions' part of a response. `fresh` holds the rooms sent from
/// scratch in it, with the IDs of their timeline events.
pub fn build(
    ctx: &Ctx<'_>,
    selection: &Selection,
    candidates: &Candidates<'_>,
    fresh: &BTreeMap<OwnedRoomId, Vec<String>>,
) -> Result<Extensions> {
    let requested = &ctx.request.extensions;
    let mut extensions = Extensions::default();
    if enabled(requested.to_device.enabled) {
        extensions.to_device = Some(to_device(ctx, &requested.to_device)?);
    }
    if enabled(requested.e2ee.enabled) && ctx.previous.is_some() {
        // Nobody learns of the devices of people they never met: nothing
        // on a new connection.
        let mut e2ee = E2EE::default();
        (e2ee.device_lists.changed, e2ee.device_lists.left) = ctx
            .services
            .rooms
            .device_list_changes(ctx.user, ctx.since(), ctx.upto)?;
        extensions.e2ee = e2ee;
    }
    let account_data = &requested.account_data;
    if enabled(account_data.enabled) {
        let rooms = rooms_for(
            selection,
            account_data.lists.as_deref(),
            account_data.rooms.as_deref(),
        );
        extensions.account_data = self::account_data(ctx, &rooms, fresh)?;
    }
    let receipts = &requested.receipts;
    if enabled(receipts.enabled) {
        let rooms = rooms_for(
            selection,
            receipts.lists.as_deref(),
            receipts.rooms.as_deref(),
        );
        extensions.receipts = self::receipts(ctx, &rooms, candidates, fresh)?;
    }
    let typing = &requested.typing;
    if enabled(typing.enabled) {
        let mut section = Typing::default();
        for room_id in rooms_for(selection, typing.lists.as_deref(), typing.rooms.as_deref()) {
            if !candidates
                .memberships
                .get(&*room_id)
                .is_some_and(|m| m.is_joined())
            {
                continue;
            }
            let since = if fresh.contains_key(&room_id) {
                0
            } else {
                ctx.since()
            };
            if let Some(users) = ctx.services.typing.changes(&room_id, since, ctx.upto) {
                section.rooms.insert(
                    room_id,
                    raw(&json!({ "type": "m.typing", "content": { "user_ids": users } })),
                );
            }
        }
        extensions.typing = section;
    }
    Ok(extensions)
}

/// The rooms an extension covers: those of the lists it names and the
/// rooms it names (`*` for every list or every subscription); all the
/// selected rooms when it names neither.
fn rooms_for(
    selection: &Selection,
    lists: Option<&[String]>,
    rooms: Option<&[ExtensionRoomConfig]>,
) -> BTreeSet<OwnedRoomId> {
    if lists.is_none() && rooms.is_none() {
        return selection.rooms.keys().cloned().collect();
    }
    let mut out = BTreeSet::new();
    for name in lists.unwrap_or_default() {
        for (list, in_range) in &selection.by_list {
            if name == "*" || name == list {
                out.extend(in_range.iter().cloned());
            }
        }
    }
    for room in rooms.unwrap_or_default() {
        match room {
            ExtensionRoomConfig::AllSubscribed => out.extend(selection.rooms.keys().cloned()),
            ExtensionRoomConfig::Room(room_id) if selection.rooms.contains_key(room_id) => {
                out.insert(room_id.clone());
            }
            _ => {}
        }
    }
    out
}

fn to_device(ctx: &Ctx<'_>, request: &v5::request::ToDevice) -> Result<ToDevice> {
    let limit = request
        .limit
        .map_or(DEFAULT_TO_DEVICE_LIMIT, u64::from)
        .clamp(1, MAX_TO_DEVICE_LIMIT);
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let (messages, last) = ctx.services.e2ee.to_device_messages(
        ctx.user,
        ctx.device,
        ctx.to_device_since,
        ctx.upto,
        limit,
    )?;
    // With the limit reached, the rest follow from the last one sent.
    let next = if messages.len() == limit {
        last
    } else {
        ctx.upto
    };
    let mut section = ToDevice::default();
    section.next_batch = next.to_string();
    section.events = messages.iter().map(raw).collect();
    Ok(section)
}

/// Global account data (all of it on a new connection, with the push
/// rules even when the user never changed them), and the account data of
/// the covered rooms (all of it for rooms sent from scratch).
fn account_data(
    ctx: &Ctx<'_>,
    rooms: &BTreeSet<OwnedRoomId>,
    fresh: &BTreeMap<OwnedRoomId, Vec<String>>,
) -> Result<AccountData> {
    let store = &ctx.services.account_data;
    let mut section = AccountData::default();
    let changes = store.changes(ctx.user, ctx.since(), ctx.upto)?;
    let complete = if ctx.previous.is_some() && rooms.iter().any(|r| fresh.contains_key(r)) {
        store.changes(ctx.user, 0, ctx.upto)?
    } else {
        Vec::new()
    };
    let mut push_rules = false;
    for (room, kind, content) in changes {
        match room {
            None => {
                push_rules |= kind == "m.push_rules";
                section
                    .global
                    .push(raw(&json!({ "type": kind, "content": content })));
            }
            Some(room) if rooms.contains(&room) => {
                section
                    .rooms
                    .entry(room)
                    .or_default()
                    .push(raw(&json!({ "type": kind, "content": content })));
            }
            Some(_) => {}
        }
    }
    if ctx.previous.is_none() && !push_rules {
        section.global.push(raw(&json!({
            "type": "m.push_rules",
            "content": { "global": Ruleset::server_default(ctx.user) },
        })));
    }
    for (room, kind, content) in complete {
        if let Some(room) = room
            && fresh.contains_key(&room)
            && rooms.contains(&room)
        {
            let entries = section.rooms.entry(room).or_default();
            let event = raw(&json!({ "type": kind, "content": content }));
            if !entries.iter().any(|e| e.json().get() == event.json().get()) {
                entries.push(event);
            }
        }
    }
    Ok(section)
}

/// Receipts that changed in the covered rooms; for a room sent from
/// scratch, those on its timeline's events and the user's own (always, so
/// that the client can count what is unread).
fn receipts(
    ctx: &Ctx<'_>,
    rooms: &BTreeSet<OwnedRoomId>,
    candidates: &Candidates<'_>,
    fresh: &BTreeMap<OwnedRoomId, Vec<String>>,
) -> Result<Receipts> {
    let mut section = Receipts::default();
    for room_id in rooms {
        if !candidates
            .memberships
            .get(&**room_id)
            .is_some_and(|m| m.is_joined())
        {
            continue;
        }
        let content = match fresh.get(room_id) {
            Some(timeline) => ctx
                .services
                .receipts
                .changes(room_id, ctx.user, 0, ctx.upto)?
                .and_then(|all| own_or_on(all, ctx.user, timeline)),
            None => ctx
                .services
                .receipts
                .changes(room_id, ctx.user, ctx.since(), ctx.upto)?,
        };
        if let Some(content) = content {
            section.rooms.insert(
                room_id.clone(),
                raw(&json!({ "type": "m.receipt", "content": content })),
            );
        }
    }
    Ok(section)
}

/// The receipts of an `m.receipt` content on `events`, and the user's own
/// on any event.
fn own_or_on(content: Value, user: &UserId, events: &[String]) -> Option<Value> {
    let Value::Object(by_event) = content else {
        return None;
    };
    let mut kept = serde_json::Map::new();
    for (event_id, mut by_type) in by_event {
        if !events.contains(&event_id)
            && let Some(types) = by_type.as_object_mut()
        {
            for by_user in types.values_mut() {
                if let Some(users) = by_user.as_object_mut() {
                    users.retain(|u, _| u == user.as_str());
                }
            }
            types.retain(|_, by_user| by_user.as_object().is_some_and(|u| !u.is_empty()));
            if types.is_empty() {
                continue;
            }
        }
        kept.insert(event_id, by_type);
    }
    (!kept.is_empty()).then_some(Value::Object(kept))
}

/// The device's key counts, on every answer with the `e2ee` extension.
pub fn add_key_counts(
    services: &Services,
    request: &v5::Request,
    user: &UserId,
    device: &DeviceId,
    response: &mut v5::Response,
) -> Result<()> {
    if !enabled(request.extensions.e2ee.enabled) {
        return Ok(());
    }
    let (counts, fallback) = super::super::key_counts(services, user, device)?;
    let e2ee = &mut response.extensions.e2ee;
    e2ee.device_one_time_keys_count = counts;
    e2ee.device_unused_fallback_key_types = Some(fallback);
    Ok(())
}
