//! Reading a room's graph: single events, missing events, state, auth chains, backfill.

use std::{collections::HashSet, sync::Arc};

use ruma::{
    EventId, MilliSecondsSinceUnixEpoch, OwnedEventId, RoomId, ServerName,
    api::federation::{
        authorization::get_event_authorization,
        backfill::get_backfill,
        event::{get_event, get_missing_events, get_room_state, get_room_state_ids},
    },
};
use serde_json::value::{RawValue, to_raw_value};

use crate::{Error, Result, Services, ruma_wrapper::Ruma};

/// Peers read only the rooms their users are in.
pub fn require_in_room(services: &Services, origin: &ServerName, room_id: &RoomId) -> Result<()> {
    if services
        .rooms
        .servers_in_room(room_id)?
        .iter()
        .any(|s| s == origin)
    {
        Ok(())
    } else {
        Err(Error::forbidden(format!(
            "{origin} has no members in {room_id}."
        )))
    }
}

/// Timeline events for the peer `origin`: those its users may not see
/// (history visibility) in their redacted form, which keeps the graph
/// whole and tells nothing.
fn events_for(
    services: &Services,
    origin: &ServerName,
    room_id: &RoomId,
    ids: impl IntoIterator<Item = OwnedEventId>,
) -> Result<Vec<Box<RawValue>>> {
    let viewer = services.rooms.server_viewer(origin, room_id)?;
    let mut out = Vec::new();
    for id in ids {
        let Some(json) = services.rooms.federation_json(&id)? else {
            continue;
        };
        let visible = services
            .rooms
            .position(&id)?
            .is_some_and(|(_, count)| viewer.sees(count));
        if visible {
            out.push(to_raw_value(&json)?);
        } else {
            out.push(to_raw_value(
                &services.rooms.redacted_federation_json(room_id, json)?,
            )?);
        }
    }
    Ok(out)
}

fn event_room(services: &Services, event_id: &EventId) -> Result<ruma::OwnedRoomId> {
    services
        .rooms
        .get_pdu(event_id)?
        .map(|pdu| pdu.room_id)
        .ok_or_else(|| Error::not_found(format!("Unknown event {event_id}.")))
}

pub async fn event(
    services: Arc<Services>,
    request: Ruma<get_event::v1::Request>,
) -> Result<get_event::v1::Response> {
    let room_id = event_room(&services, &request.body.event_id)?;
    require_in_room(&services, request.origin(), &room_id)?;
    let pdu = events_for(
        &services,
        request.origin(),
        &room_id,
        [request.body.event_id.clone()],
    )?
    .pop()
    .ok_or_else(|| Error::not_found("Unknown event."))?;
    Ok(get_event::v1::Response::new(
        services.server_name().to_owned(),
        MilliSecondsSinceUnixEpoch::now(),
        pdu,
    ))
}

pub async fn missing_events(
    services: Arc<Services>,
    request: Ruma<get_missing_events::v1::Request>,
) -> Result<get_missing_events::v1::Response> {
    let body = &request.body;
    require_in_room(&services, request.origin(), &body.room_id)?;
    let limit = usize::try_from(body.limit).unwrap_or(10).min(100);
    let min_depth = u64::from(body.min_depth);
    let earliest: HashSet<&EventId> = body.earliest_events.iter().map(|id| &**id).collect();
    let mut start = Vec::new();
    for id in &body.latest_events {
        if let Some(pdu) = services.rooms.get_pdu(id)? {
            start.extend(pdu.prev_events.iter().cloned());
        }
    }
    let found = walk_back(&services, &body.room_id, start, limit, |pdu| {
        !earliest.contains(&*pdu.event_id) && u64::from(pdu.depth) >= min_depth
    })?;
    let events = events_for(
        &services,
        request.origin(),
        &body.room_id,
        found.into_iter().map(|(_, id)| id),
    )?;
    Ok(get_missing_events::v1::Response::new(events))
}

pub async fn state_ids(
    services: Arc<Services>,
    request: Ruma<get_room_state_ids::v1::Request>,
) -> Result<get_room_state_ids::v1::Response> {
    require_in_room(&services, request.origin(), &request.body.room_id)?;
    let (state, chain) = state_at(&services, &request.body.room_id, &request.body.event_id)?;
    Ok(get_room_state_ids::v1::Response::new(chain, state))
}

pub async fn state(
    services: Arc<Services>,
    request: Ruma<get_room_state::v1::Request>,
) -> Result<get_room_state::v1::Response> {
    require_in_room(&services, request.origin(), &request.body.room_id)?;
    let (state, chain) = state_at(&services, &request.body.room_id, &request.body.event_id)?;
    Ok(get_room_state::v1::Response::new(
        services.rooms.federation_events(chain)?,
        services.rooms.federation_events(state)?,
    ))
}

/// The state before `event_id` and its auth chain.
fn state_at(
    services: &Services,
    room_id: &RoomId,
    event_id: &EventId,
) -> Result<(Vec<OwnedEventId>, Vec<OwnedEventId>)> {
    if event_room(services, event_id)? != room_id {
        return Err(Error::not_found(format!("{event_id} is not in {room_id}.")));
    }
    services.rooms.state_and_auth_chain(event_id)
}

pub async fn event_auth(
    services: Arc<Services>,
    request: Ruma<get_event_authorization::v1::Request>,
) -> Result<get_event_authorization::v1::Response> {
    let body = &request.body;
    require_in_room(&services, request.origin(), &body.room_id)?;
    if event_room(&services, &body.event_id)? != body.room_id {
        return Err(Error::not_found("The event is not in that room."));
    }
    let chain = services.rooms.auth_chain([body.event_id.clone()])?;
    Ok(get_event_authorization::v1::Response::new(
        services.rooms.federation_events(chain)?,
    ))
}

pub async fn backfill(
    services: Arc<Services>,
    request: Ruma<get_backfill::v1::Request>,
) -> Result<get_backfill::v1::Response> {
    let body = &request.body;
    require_in_room(&services, request.origin(), &body.room_id)?;
    let limit = usize::try_from(body.limit).unwrap_or(10).min(100);
    let mut found = walk_back(&services, &body.room_id, body.v.clone(), limit, |_| true)?;
    found.reverse();
    Ok(get_backfill::v1::Response::new(
        services.server_name().to_owned(),
        MilliSecondsSinceUnixEpoch::now(),
        events_for(
            &services,
            request.origin(),
            &body.room_id,
            found.into_iter().map(|(_, id)| id),
        )?,
    ))
}

/// Up to `limit` events of `room_id` reached from `start` through
/// `prev_events`, following only events `follow` accepts; `(depth, ID)`,
/// shallowest first.
fn walk_back(
    services: &Services,
    room_id: &RoomId,
    start: Vec<OwnedEventId>,
    limit: usize,
    follow: impl Fn(&crate::service::rooms::Pdu) -> bool,
) -> Result<Vec<(ruma::UInt, OwnedEventId)>> {
    let mut seen: HashSet<OwnedEventId> = HashSet::new();
    let mut frontier = start;
    let mut found = Vec::new();
    while let Some(id) = frontier.pop() {
        if found.len() >= limit || !seen.insert(id.clone()) {
            continue;
        }
        let Some(pdu) = services.rooms.get_pdu(&id)? else {
            continue;
        };
        if pdu.room_id != room_id || !follow(&pdu) {
            continue;
        }
        frontier.extend(pdu.prev_events.iter().cloned());
        found.push((pdu.depth, id));
    }
    found.sort();
    Ok(found)
}
