//! `/sync` (v3): initial, incremental and long-polling.
//!
//! A sync token is a position in the global stream (see `counter`). A sync
//! gathers everything the user may see in `(since, upto]`, where `upto` is the
//! highest position below every change still being committed.

mod room;
mod sliding;

pub use sliding::sync as sliding_sync;

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use ruma::{
    OneTimeKeyAlgorithm, UInt,
    api::client::sync::sync_events::{
        DeviceLists,
        v3::{self, GlobalAccountData, Presence, Rooms, ToDevice},
    },
    presence::PresenceState,
};
use serde_json::json;

use crate::{
    Result, Services,
    counter::parse_token,
    ops::filter::{excludes_every_type, excludes_type, passes, resolve_sync_filter, type_allowed},
    ruma_wrapper::Ruma,
    service::rooms::pdu::raw,
};

const MAX_TIMEOUT: Duration = Duration::from_secs(300);

pub struct SyncContext<'a> {
    pub services: &'a Services,
    pub user: &'a ruma::UserId,
    pub device: &'a ruma::DeviceId,
    pub since: u64,
    /// Where the device's to-device messages were delivered up to: behind
    /// `since` when more were waiting than one response carries.
    pub to_device_since: u64,
    pub upto: u64,
    pub full_state: bool,
    pub filter: ruma::api::client::filter::FilterDefinition,
    /// The user's push rules, for the unread counts.
    pub push_rules: crate::push::RulesetOnce,
}

pub async fn sync(
    services: Arc<Services>,
    request: Ruma<v3::Request>,
) -> Result<axum::response::Response> {
    let _syncing = services.syncing.enter();
    serialize(sync_response(services.clone(), request).await?)
}

/// The response as JSON. ruma leaves `rooms` out when only `knock` holds
/// rooms (its `Rooms::is_empty` does not look at knocks): they go back in.
fn serialize(response: v3::Response) -> Result<axum::response::Response> {
    use axum::response::IntoResponse;
    use ruma::api::OutgoingResponse;
    if !response.rooms.is_empty() || response.rooms.knock.is_empty() {
        return Ok(crate::ruma_wrapper::RumaResponse(response).into_response());
    }
    let knock = serde_json::to_value(&response.rooms.knock).map_err(crate::Error::internal)?;
    let http = response
        .try_into_http_response::<Vec<u8>>()
        .map_err(crate::Error::internal)?;
    let mut body: serde_json::Value =
        serde_json::from_slice(http.body()).map_err(crate::Error::internal)?;
    body["rooms"] = json!({ "knock": knock });
    Ok(crate::ruma_wrapper::json_response(&body))
}

async fn sync_response(
    services: Arc<Services>,
    request: Ruma<v3::Request>,
) -> Result<v3::Response> {
    let (user, device) = (request.user().to_owned(), request.device().to_owned());
    let body = &request.body;
    let (since, to_device_since) = match body.since.as_deref() {
        Some(token) => parse_since(token)?,
        None => (0, 0),
    };
    // A token is never ahead of what the node has handed out.
    let mut since = since.min(services.counter.visible());
    let mut to_device_since = to_device_since.min(since);
    let filter = resolve_sync_filter(&services, &user, body.filter.as_ref())?;
    // Answered before the request timeout cuts it.
    let longest = Duration::from_secs(services.config.request_timeout_secs)
        .saturating_sub(Duration::from_secs(10))
        .min(MAX_TIMEOUT);
    let timeout = body.timeout.unwrap_or_default().min(longest);
    let deadline = tokio::time::Instant::now() + timeout;

    services.presence.syncing(&user, &body.set_presence).await?;
    // Everything up to the token reached the device; drop its delivered
    // to-device messages.
    if to_device_since > 0 {
        services
            .e2ee
            .ack_to_device(&user, &device, to_device_since)
            .await?;
    }

    let mut watch = services.counter.watch();
    loop {
        watch.borrow_and_update();
        let upto = services.counter.visible().max(since);
        let ctx = SyncContext {
            services: &services,
            user: &user,
            device: &device,
            since,
            to_device_since,
            upto,
            full_state: body.full_state,
            filter: filter.clone(),
            push_rules: Default::default(),
        };
        let mut response = build(&ctx)?;
        let wait = since > 0
            && !body.full_state
            && is_empty(&response)
            && tokio::time::Instant::now() < deadline;
        if !wait {
            add_key_counts(&services, &user, &device, &mut response)?;
            return Ok(response);
        }
        // Nothing in `(since, upto]` was for this device, so what the next
        // wake-up brings is all in `(upto, visible]`: look only there,
        // rather than gather the growing range again on every change.
        since = upto;
        to_device_since = upto;
        if tokio::time::timeout_at(deadline, watch.changed())
            .await
            .is_err()
        {
            add_key_counts(&services, &user, &device, &mut response)?;
            return Ok(response);
        }
    }
}

/// To-device messages in one sync response; the rest follow in the next.
const MAX_TO_DEVICE: usize = 1000;

/// A sync token: the position every section has reached, then, after a
/// `_` when it is behind, the to-device position.
fn parse_since(token: &str) -> Result<(u64, u64)> {
    let since = parse_token(token)?;
    let to_device = match token.split_once('_') {
        Some((_, to_device)) => to_device
            .parse()
            .map_err(|_| crate::Error::invalid_param("Invalid sync token."))?,
        None => since,
    };
    Ok((since, to_device))
}

/// The rooms the user has a membership in, with it: only those the filter
/// names when it names any (the archive member, in every room, names none).
fn rooms_in_filter(
    ctx: &SyncContext<'_>,
) -> Result<Arc<Vec<(ruma::OwnedRoomId, crate::service::rooms::MembershipRecord)>>> {
    let Some(named) = &ctx.filter.room.rooms else {
        return ctx.services.rooms.rooms_of_shared(ctx.user);
    };
    let mut rooms = Vec::new();
    for room_id in named {
        if let Some(membership) = ctx.services.rooms.membership(ctx.user, room_id)? {
            rooms.push((room_id.clone(), membership));
        }
    }
    Ok(Arc::new(rooms))
}

fn is_empty(response: &v3::Response) -> bool {
    response.rooms.is_empty()
        && response.rooms.knock.is_empty()
        && response.presence.is_empty()
        && response.account_data.is_empty()
        && response.to_device.is_empty()
        && response.device_lists.is_empty()
}

fn build(ctx: &SyncContext<'_>) -> Result<v3::Response> {
    let services = ctx.services;
    let mut response = v3::Response::new(ctx.upto.to_string());

    let (global_filter, room_filter) = (&ctx.filter.account_data, &ctx.filter.room.account_data);
    let no_rooms = ctx.filter.room.rooms.as_ref().is_some_and(Vec::is_empty)
        || excludes_every_type(room_filter.types.as_deref(), &room_filter.not_types);
    let account_data = if no_rooms
        && excludes_every_type(global_filter.types.as_deref(), &global_filter.not_types)
    {
        Vec::new()
    } else {
        services
            .account_data
            .changes(ctx.user, ctx.since, ctx.upto)?
    };
    let mut room_account_data: BTreeMap<ruma::OwnedRoomId, Vec<(String, serde_json::Value)>> =
        BTreeMap::new();
    let mut global = GlobalAccountData::new();
    for (room, kind, content) in account_data {
        match room {
            Some(room) => {
                if type_allowed(room_filter.types.as_deref(), &room_filter.not_types, &kind) {
                    room_account_data
                        .entry(room)
                        .or_default()
                        .push((kind, content));
                }
            }
            None => {
                if passes(global_filter, &kind, None) {
                    global
                        .events
                        .push(raw(&json!({ "type": kind, "content": content })));
                }
            }
        }
    }
    response.account_data = global;

    let mut rooms = Rooms::new();
    for (room_id, membership) in rooms_in_filter(ctx)?.iter() {
        if !crate::ops::filter::room_allowed(&ctx.filter.room.timeline, room_id)
            || ctx.filter.room.not_rooms.contains(room_id)
        {
            continue;
        }
        let account_data = room_account_data.remove(room_id).unwrap_or_default();
        match membership.membership.as_str() {
            "join" => {
                if let Some(joined) = room::joined(ctx, room_id, membership, account_data)? {
                    rooms.join.insert(room_id.clone(), joined);
                }
            }
            "knock" if membership.count > ctx.since && membership.count <= ctx.upto => {
                let mut state = v3::KnockState::new();
                state.events = room::invite_state(services, room_id, membership)?;
                rooms
                    .knock
                    .insert(room_id.clone(), v3::KnockedRoom::from(state));
            }
            "invite" if membership.count > ctx.since && membership.count <= ctx.upto => {
                rooms
                    .invite
                    .insert(room_id.clone(), room::invited(ctx, room_id, membership)?);
            }
            // A leave shows once in the sync after it, even when the room
            // was forgotten meanwhile (a rejected invite often is): the
            // client must learn it is gone. A first sync shows no
            // forgotten room.
            "leave" | "ban"
                if membership.count > ctx.since
                    && membership.count <= ctx.upto
                    && (ctx.since > 0
                        || (ctx.filter.room.include_leave && !membership.forgotten)) =>
            {
                rooms
                    .leave
                    .insert(room_id.clone(), room::left(ctx, room_id, membership)?);
            }
            _ => {}
        }
    }
    response.rooms = rooms;

    let mut presence = Presence::new();
    let changes = if excludes_type(&ctx.filter.presence, "m.presence") {
        Vec::new()
    } else {
        services.presence.changes(ctx.since, ctx.upto)?
    };
    for (user, record) in changes {
        if passes(&ctx.filter.presence, "m.presence", Some(&user))
            && services.rooms.share_a_room(ctx.user, &user)?
        {
            let mut content = json!({ "presence": record.presence, "last_active_ago": crate::service::users::now_ms().saturating_sub(record.last_active_ts) });
            if let Some(msg) = &record.status_msg {
                content["status_msg"] = json!(msg);
            }
            if record.presence == PresenceState::Online {
                content["currently_active"] = json!(true);
            }
            presence.events.push(raw(
                &json!({ "type": "m.presence", "sender": user, "content": content }),
            ));
        }
    }
    response.presence = presence;

    let (messages, last) = services.e2ee.to_device_messages(
        ctx.user,
        ctx.device,
        ctx.to_device_since,
        ctx.upto,
        MAX_TO_DEVICE,
    )?;
    if messages.len() == MAX_TO_DEVICE {
        // The rest come with the next sync, which acknowledges only these.
        response.next_batch = format!("{}_{last}", ctx.upto);
    }
    let mut to_device = ToDevice::new();
    to_device.events = messages.iter().map(raw).collect();
    response.to_device = to_device;

    if ctx.since > 0 {
        // Nobody learns of the devices of people they never met.
        let mut lists = DeviceLists::new();
        (lists.changed, lists.left) = services
            .rooms
            .device_list_changes(ctx.user, ctx.since, ctx.upto)?;
        response.device_lists = lists;
    }

    Ok(response)
}

/// The device's one-time and fallback key counts, which every response
/// carries but none waits for: added once the response is final, not on
/// every wake-up of a long poll.
fn add_key_counts(
    services: &Services,
    user: &ruma::UserId,
    device: &ruma::DeviceId,
    response: &mut v3::Response,
) -> Result<()> {
    let (counts, fallback) = key_counts(services, user, device)?;
    response.device_one_time_keys_count = counts;
    response.device_unused_fallback_key_types = Some(fallback);
    Ok(())
}

/// The device's one-time key counts (`signed_curve25519` always, so that
/// the client knows to upload) and its unused fallback key types.
pub fn key_counts(
    services: &Services,
    user: &ruma::UserId,
    device: &ruma::DeviceId,
) -> Result<(
    BTreeMap<OneTimeKeyAlgorithm, UInt>,
    Vec<OneTimeKeyAlgorithm>,
)> {
    let mut counts: BTreeMap<OneTimeKeyAlgorithm, UInt> = services
        .e2ee
        .one_time_key_counts(user, device)?
        .into_iter()
        .map(|(alg, n)| {
            (
                OneTimeKeyAlgorithm::from(alg.as_str()),
                UInt::try_from(n).unwrap_or_default(),
            )
        })
        .collect();
    counts
        .entry(OneTimeKeyAlgorithm::SignedCurve25519)
        .or_insert_with(|| UInt::from(0u32));
    let fallback = services
        .e2ee
        .unused_fallback_key_types(user, device)?
        .iter()
        .map(|a| OneTimeKeyAlgorithm::from(a.as_str()))
        .collect();
    Ok((counts, fallback))
}
