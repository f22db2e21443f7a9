//! `/messages` and `/relations`: paginating a room's history.
//!
//! Pagination tokens are stream positions: token `t` is the point right
//! after the event at position `t`.

use std::sync::Arc;

use ruma::{
    EventId, RoomId, UInt, UserId,
    api::{
        Direction,
        client::{
            message::get_message_events,
            relations::{
                get_relating_events, get_relating_events_with_rel_type,
                get_relating_events_with_rel_type_and_event_type,
            },
            room::get_event_by_timestamp,
        },
    },
    events::{AnyMessageLikeEvent, StateEventType},
    serde::Raw,
};

use crate::ops::filter::event_matches;
use crate::{
    Error, Result, Services,
    counter::parse_token,
    ruma_wrapper::Ruma,
    service::rooms::{Pdu, pdu::raw},
};

const MAX_LIMIT: usize = 1000;

/// How many events past the nearest one `/timestamp_to_event` looks at
/// for one the user may see.
const NEAR_TS_SEARCH: usize = 100;

/// `/timestamp_to_event` (jump to a date): the event nearest to a time, in
/// the asked direction, that the user may see.
pub async fn event_at_time(
    services: Arc<Services>,
    request: Ruma<get_event_by_timestamp::v1::Request>,
) -> Result<get_event_by_timestamp::v1::Response> {
    let body = &request.body;
    let rooms = &services.rooms;
    let viewer = rooms.viewer(request.user(), &body.room_id)?;
    let upto = viewer.upto().min(services.counter.visible());
    let forward = body.dir == Direction::Forward;
    let not_found = || Error::not_found("No event of this room was found near that time.");
    let at = rooms
        .position_near_ts(&body.room_id, u64::from(body.ts.get()), forward, upto)?
        .ok_or_else(not_found)?;
    let near = if forward {
        rooms.events_after(&body.room_id, at - 1, upto, NEAR_TS_SEARCH)?
    } else {
        rooms.events_before(&body.room_id, at, NEAR_TS_SEARCH)?
    };
    let (_, pdu) = near
        .into_iter()
        .find(|(count, _)| viewer.sees(*count))
        .ok_or_else(not_found)?;
    Ok(get_event_by_timestamp::v1::Response::new(
        pdu.event_id.clone(),
        pdu.origin_server_ts,
    ))
}

pub async fn messages(
    services: Arc<Services>,
    request: Ruma<get_message_events::v3::Request>,
) -> Result<get_message_events::v3::Response> {
    let body = &request.body;
    let user = request.user();
    let device = request.sender_device.as_deref();
    crate::ops::filter::check_room_event_filter(&body.filter)?;
    let viewer = services.rooms.viewer(user, &body.room_id)?;
    let upto = viewer.upto().min(services.counter.visible());
    let limit = usize::try_from(body.limit)
        .unwrap_or(10)
        .clamp(1, MAX_LIMIT);
    let to = body.to.as_deref().map(parse_token).transpose()?;

    let (from, events) = match body.dir {
        Direction::Backward => {
            let from = body
                .from
                .as_deref()
                .map(parse_token)
                .transpose()?
                .unwrap_or(upto)
                .min(upto);
            let mut events = services.rooms.events_before(&body.room_id, from, limit)?;
            if let Some(to) = to {
                events.retain(|(c, _)| *c > to);
            }
            (from, events)
        }
        _ => {
            let from = body
                .from
                .as_deref()
                .map(parse_token)
                .transpose()?
                .unwrap_or(0)
                .min(upto);
            let until = to.unwrap_or(upto).min(upto);
            (
                from,
                services
                    .rooms
                    .events_after(&body.room_id, from, until, limit)?,
            )
        }
    };

    let mut response = get_message_events::v3::Response::new();
    response.start = from.to_string();
    if events.len() == limit {
        response.end = events.last().map(|(c, _)| match body.dir {
            Direction::Backward => c.saturating_sub(1).to_string(),
            _ => c.to_string(),
        });
    } else if body.dir == Direction::Forward {
        response.end = events.last().map(|(c, _)| c.to_string());
    }
    let shown: Vec<(u64, Pdu)> = events
        .into_iter()
        .filter(|(c, p)| viewer.sees(*c) && event_matches(&body.filter, p))
        .collect();
    if !body.filter.lazy_load_options.is_disabled() {
        let mut senders: Vec<&UserId> = shown.iter().map(|(_, p)| &*p.sender).collect();
        senders.sort();
        senders.dedup();
        for sender in senders {
            if let Some(member) = services.rooms.state_pdu(
                &body.room_id,
                &StateEventType::RoomMember,
                sender.as_str(),
            )? {
                response.state.push(member.to_state_event());
            }
        }
    }
    let mut chunk = Vec::with_capacity(shown.len());
    for (count, mut pdu) in shown {
        services
            .rooms
            .bundle_relations(&mut pdu, user, upto, &|c| viewer.sees(c))?;
        viewer.annotate(count, &mut pdu);
        chunk.push(pdu.to_room_event(device));
    }
    response.chunk = chunk;
    Ok(response)
}

#[allow(clippy::too_many_arguments)]
fn relations(
    services: &Services,
    user: &UserId,
    room_id: &RoomId,
    event_id: &EventId,
    rel_type: Option<String>,
    event_type: Option<String>,
    from: Option<&str>,
    limit: Option<UInt>,
) -> Result<(Vec<Raw<AnyMessageLikeEvent>>, Option<String>)> {
    services.rooms.visible_position(user, room_id, event_id)?;
    let viewer = services.rooms.viewer(user, room_id)?;
    let upto = viewer.upto().min(services.counter.visible());
    let limit = limit
        .and_then(|l| usize::try_from(l).ok())
        .unwrap_or(50)
        .clamp(1, MAX_LIMIT);
    let after = from.map(parse_token).transpose()?.unwrap_or(0).min(upto);
    let related = services.rooms.relations(event_id, after, MAX_LIMIT)?;
    let mut chunk = Vec::new();
    let mut next = None;
    for (count, kind, pdu) in related {
        // The index is keyed by target alone: an event elsewhere may name it.
        if pdu.room_id != room_id || count > upto || !viewer.sees(count) {
            continue;
        }
        if rel_type.as_ref().is_some_and(|r| *r != kind)
            || event_type
                .as_ref()
                .is_some_and(|t| *t != pdu.kind.to_string())
        {
            continue;
        }
        if chunk.len() == limit {
            next = Some(count.saturating_sub(1).to_string());
            break;
        }
        chunk.push(raw(&pdu.to_client_value(None, true)));
    }
    Ok((chunk, next))
}

pub async fn relating(
    services: Arc<Services>,
    request: Ruma<get_relating_events::v1::Request>,
) -> Result<get_relating_events::v1::Response> {
    let b = &request.body;
    let (chunk, next) = relations(
        &services,
        request.user(),
        &b.room_id,
        &b.event_id,
        None,
        None,
        b.from.as_deref(),
        b.limit,
    )?;
    let mut response = get_relating_events::v1::Response::new(chunk);
    response.next_batch = next;
    Ok(response)
}

pub async fn relating_with_type(
    services: Arc<Services>,
    request: Ruma<get_relating_events_with_rel_type::v1::Request>,
) -> Result<get_relating_events_with_rel_type::v1::Response> {
    let b = &request.body;
    let rel = Some(b.rel_type.to_string());
    let (chunk, next) = relations(
        &services,
        request.user(),
        &b.room_id,
        &b.event_id,
        rel,
        None,
        b.from.as_deref(),
        b.limit,
    )?;
    let mut response = get_relating_events_with_rel_type::v1::Response::new(chunk);
    response.next_batch = next;
    Ok(response)
}

pub async fn relating_with_type_and_event(
    services: Arc<Services>,
    request: Ruma<get_relating_events_with_rel_type_and_event_type::v1::Request>,
) -> Result<get_relating_events_with_rel_type_and_event_type::v1::Response> {
    let b = &request.body;
    let (rel, kind) = (Some(b.rel_type.to_string()), Some(b.event_type.to_string()));
    let (chunk, next) = relations(
        &services,
        request.user(),
        &b.room_id,
        &b.event_id,
        rel,
        kind,
        b.from.as_deref(),
        b.limit,
    )?;
    let mut response = get_relating_events_with_rel_type_and_event_type::v1::Response::new(chunk);
    response.next_batch = next;
    Ok(response)
}
