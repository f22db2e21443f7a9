//! `GET /notifications`: the events that notified the user by their push
//! rules, newest first, across the rooms they are in.
//!
//! Each request reads the user's rooms newest first below the `from`
//! token, at most [`MAX_SCANNED`] events over all rooms; what it returns is
//! complete down to where any room's reading stopped, and `next_token`
//! goes on from there.

use std::sync::Arc;

use ruma::{
    api::client::push::get_notifications::v3::{self, Notification},
    push::Action,
};

use crate::{Error, Result, Services, ruma_wrapper::Ruma, service::rooms::Pdu};

/// Events read per request at most, over all rooms.
const MAX_SCANNED: usize = 5_000;
const DEFAULT_LIMIT: usize = 20;
const MAX_LIMIT: usize = 100;

pub async fn notifications(
    services: Arc<Services>,
    request: Ruma<v3::Request>,
) -> Result<v3::Response> {
    let user = request.user();
    let body = &request.body;
    let before = match body.from.as_deref() {
        Some(token) => token
            .parse::<u64>()
            .map_err(|_| Error::invalid_param("Invalid from token."))?,
        None => services.counter.visible() + 1,
    };
    let limit = body
        .limit
        .and_then(|l| usize::try_from(l).ok())
        .unwrap_or(DEFAULT_LIMIT)
        .clamp(1, MAX_LIMIT);
    let only_highlights = body.only.as_deref() == Some("highlight");
    let rooms = &services.rooms;
    let ruleset = crate::push::ruleset(&services, user)?;

    let joined: Vec<_> = rooms
        .rooms_of_shared(user)?
        .iter()
        .filter(|(_, m)| m.is_joined())
        .map(|(room_id, m)| (room_id.clone(), m.count))
        .collect();
    let per_room = (MAX_SCANNED / joined.len().max(1)).max(limit);
    let mut candidates: Vec<(u64, Pdu, u64)> = Vec::new();
    let mut stopped_at = 0u64;
    for (room_id, joined_at) in &joined {
        // Read up to the receipt, or to the user's own latest message.
        let read_upto = crate::ops::unread::read_position(&services, user, room_id, *joined_at)?;
        let (mut scanned, mut taken, mut oldest, mut own_seen) = (0, 0, 0, false);
        let mut events = Vec::new();
        rooms.visit_newest(
            room_id,
            *joined_at,
            before.saturating_sub(1),
            per_room,
            |count, pdu| {
                scanned += 1;
                oldest = count;
                if pdu.sender == user {
                    own_seen = true;
                } else if !pdu.is_state() || pdu.kind.to_string() == "m.room.member" {
                    let read = own_seen || count <= read_upto;
                    events.push((count, pdu.clone(), if read { 0 } else { 1 }));
                    taken += 1;
                }
                taken < limit * 4
            },
        )?;
        if taken == limit * 4 || scanned == per_room {
            stopped_at = stopped_at.max(oldest.saturating_sub(1));
        }
        candidates.extend(events);
    }
    candidates.retain(|(count, _, _)| *count > stopped_at);
    candidates.sort_by_key(|(count, _, _)| std::cmp::Reverse(*count));

    let mut notifications = Vec::new();
    let mut next_token = (stopped_at > 0).then_some(stopped_at + 1);
    for (count, pdu, unread) in candidates {
        let actions = crate::push::actions(&services, &ruleset, user, &pdu)?;
        if !actions.iter().any(Action::should_notify) {
            continue;
        }
        let highlight = actions.iter().any(Action::is_highlight);
        if only_highlights && !highlight {
            continue;
        }
        if notifications.len() == limit {
            next_token = Some(count + 1);
            break;
        }
        let ts = pdu.origin_server_ts;
        notifications.push(Notification::new(
            actions,
            pdu.to_sync_event(request.sender_device.as_deref()),
            unread == 0,
            pdu.room_id.clone(),
            ts,
        ));
    }
    let mut response = v3::Response::new(notifications);
    response.next_token = next_token.map(|n| n.to_string());
    Ok(response)
}
