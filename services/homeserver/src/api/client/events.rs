//! Sending events and state, redacting, reading single events and context.

use std::sync::Arc;

use ruma::{
    UInt,
    api::client::{
        context::get_context,
        message::send_message_event,
        redact::redact_event,
        room::get_room_event,
        state::{get_state_event_for_key, get_state_events, send_state_event},
    },
    events::{StateEventType, TimelineEventType},
};
use serde_json::{Value, json};

use crate::{
    Error, Result, Services,
    ops::events::{around, state_for_viewer, state_position, visible_event},
    ruma_wrapper::Ruma,
    service::rooms::{Pdu, PduBuilder},
};

fn content_of(raw: &serde_json::value::RawValue) -> Result<Value> {
    let value: Value = serde_json::from_str(raw.get())
        .map_err(|e| Error::bad_json(format!("Invalid content: {e}")))?;
    if !value.is_object() {
        return Err(Error::bad_json("Event content must be a JSON object."));
    }
    Ok(value)
}

pub async fn send_message(
    services: Arc<Services>,
    request: Ruma<send_message_event::v3::Request>,
) -> Result<send_message_event::v3::Response> {
    let (user, device) = (request.user(), request.device());
    let body = &request.body;
    if let Some(event_id) = services.rooms.txn_event(user, device, &body.txn_id)? {
        return Ok(send_message_event::v3::Response::new(event_id));
    }
    if !services.rooms.is_joined(user, &body.room_id)? {
        return Err(Error::forbidden("You are not in this room."));
    }
    let kind = TimelineEventType::from(body.event_type.to_string());
    if matches!(kind, TimelineEventType::RoomRedaction) {
        return Err(Error::forbidden(
            "Use the redact endpoint to redact events.",
        ));
    }
    let mut builder = PduBuilder::new(kind, content_of(body.body.json())?);
    builder.transaction = Some((device.to_owned(), body.txn_id.clone()));
    // A bridge gives a message the time it was sent on the other network.
    builder.timestamp = body.timestamp.filter(|_| request.appservice.is_some());
    let appended = services.rooms.append(&body.room_id, user, builder).await?;
    Ok(send_message_event::v3::Response::new(
        appended.pdu.event_id.clone(),
    ))
}

pub async fn send_state(
    services: Arc<Services>,
    request: Ruma<send_state_event::v3::Request>,
) -> Result<send_state_event::v3::Response> {
    let user = request.user();
    let body = &request.body;
    let content = content_of(body.body.json())?;
    // The state path changes one membership: a member's own profile in
    // this room (Element's /myroomnick, a bridge naming its user in one
    // portal). Joins, leaves, invites and bans take the membership
    // endpoints and their checks.
    if body.event_type == StateEventType::RoomMember
        && !(body.state_key == user.as_str()
            && content["membership"] == "join"
            && services.rooms.is_joined(user, &body.room_id)?)
    {
        return Err(Error::forbidden(
            "Use the membership endpoints to change membership.",
        ));
    }
    if body.event_type == StateEventType::RoomCanonicalAlias {
        for alias in content["alias"].as_str().into_iter().chain(
            content["alt_aliases"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str),
        ) {
            let alias =
                ruma::RoomAliasId::parse(alias).map_err(|_| Error::bad_json("Invalid alias."))?;
            if services.rooms.resolve_alias(&alias)?.as_deref() != Some(&*body.room_id) {
                return Err(Error::bad_json(format!(
                    "{alias} does not point to this room."
                )));
            }
        }
    }
    if !services.rooms.is_joined(user, &body.room_id)? {
        return Err(Error::forbidden("You are not in this room."));
    }
    // Setting state to exactly what it is creates no event (idempotent PUT).
    if let Some(current) =
        services
            .rooms
            .state_pdu(&body.room_id, &body.event_type, &body.state_key)?
        && current.content_value() == content
        && current.sender == user
    {
        return Ok(send_state_event::v3::Response::new(current.event_id));
    }
    let mut builder =
        PduBuilder::state(body.event_type.to_string(), body.state_key.clone(), content);
    builder.timestamp = body.timestamp.filter(|_| request.appservice.is_some());
    let appended = services.rooms.append(&body.room_id, user, builder).await?;
    Ok(send_state_event::v3::Response::new(
        appended.pdu.event_id.clone(),
    ))
}

pub async fn get_state(
    services: Arc<Services>,
    request: Ruma<get_state_events::v3::Request>,
) -> Result<get_state_events::v3::Response> {
    let state = state_for_viewer(&services, request.user(), &request.body.room_id)?;
    Ok(get_state_events::v3::Response::new(
        state.iter().map(Pdu::to_state_event).collect(),
    ))
}

pub async fn get_state_for_key(
    services: Arc<Services>,
    request: Ruma<get_state_event_for_key::v3::Request>,
) -> Result<get_state_event_for_key::v3::Response> {
    let body = &request.body;
    let pdu = match state_position(&services, request.user(), &body.room_id)? {
        None => services
            .rooms
            .state_pdu(&body.room_id, &body.event_type, &body.state_key)?,
        Some(at) => {
            services
                .rooms
                .state_pdu_at(&body.room_id, &body.event_type, &body.state_key, at)?
        }
    };
    let pdu = pdu.ok_or_else(|| Error::not_found("No such state event."))?;
    let value = match body.format {
        ruma::api::client::state::get_state_event_for_key::v3::StateEventFormat::Event => {
            pdu.to_client_value(None, true)
        }
        _ => pdu.content_value(),
    };
    Ok(get_state_event_for_key::v3::Response::new(
        serde_json::value::to_raw_value(&value)?,
    ))
}

pub async fn redact(
    services: Arc<Services>,
    request: Ruma<redact_event::v3::Request>,
) -> Result<redact_event::v3::Response> {
    let (user, device) = (request.user(), request.device());
    let body = &request.body;
    if let Some(event_id) = services.rooms.txn_event(user, device, &body.txn_id)? {
        return Ok(redact_event::v3::Response::new(event_id));
    }
    if !services.rooms.is_joined(user, &body.room_id)? {
        return Err(Error::forbidden("You are not in this room."));
    }
    // Who may redact what is the rooms service's to check.
    services
        .rooms
        .get_pdu(&body.event_id)?
        .filter(|p| p.room_id == body.room_id)
        .ok_or_else(|| Error::not_found("Unknown event."))?;
    let mut content = json!({ "redacts": body.event_id });
    if let Some(reason) = &body.reason {
        content["reason"] = Value::String(reason.clone());
    }
    let mut builder = PduBuilder::new(TimelineEventType::RoomRedaction, content);
    builder.redacts = Some(body.event_id.clone());
    builder.transaction = Some((device.to_owned(), body.txn_id.clone()));
    let appended = services.rooms.append(&body.room_id, user, builder).await?;
    Ok(redact_event::v3::Response::new(
        appended.pdu.event_id.clone(),
    ))
}

pub async fn get_event(
    services: Arc<Services>,
    request: Ruma<get_room_event::v3::Request>,
) -> Result<get_room_event::v3::Response> {
    let user = request.user();
    let (count, mut pdu) = visible_event(
        &services,
        user,
        &request.body.room_id,
        &request.body.event_id,
    )?;
    let viewer = services.rooms.viewer(user, &request.body.room_id)?;
    let upto = viewer.upto().min(services.counter.visible());
    services
        .rooms
        .bundle_relations(&mut pdu, user, upto, &|c| viewer.sees(c))?;
    viewer.annotate(count, &mut pdu);
    Ok(get_room_event::v3::Response::new(
        pdu.to_room_event(request.sender_device.as_deref()),
    ))
}

pub async fn context(
    services: Arc<Services>,
    request: Ruma<get_context::v3::Request>,
) -> Result<get_context::v3::Response> {
    let body = &request.body;
    let device = request.sender_device.as_deref();
    crate::ops::filter::check_room_event_filter(&body.filter)?;
    let (count, pdu) = visible_event(&services, request.user(), &body.room_id, &body.event_id)?;
    let viewer = services.rooms.viewer(request.user(), &body.room_id)?;
    let upto = viewer.upto().min(services.counter.visible());
    let limit = usize::try_from(body.limit.min(UInt::from(100u32))).unwrap_or(10);
    let before_n = limit / 2;
    let after_n = limit - before_n;
    let (before, after) = around(
        &services,
        &body.room_id,
        count,
        upto,
        (before_n, after_n),
        |c, p| viewer.sees(c) && crate::ops::filter::event_matches(&body.filter, p),
    )?;
    let bundled = |(at, mut pdu): (u64, Pdu)| -> Result<_> {
        services
            .rooms
            .bundle_relations(&mut pdu, request.user(), upto, &|c| viewer.sees(c))?;
        viewer.annotate(at, &mut pdu);
        Ok(pdu.to_room_event(device))
    };
    let mut response = get_context::v3::Response::new();
    response.start = Some(
        before
            .last()
            .map_or(count, |(c, _)| *c)
            .saturating_sub(1)
            .to_string(),
    );
    response.end = Some(after.last().map_or(count, |(c, _)| *c).to_string());
    response.events_before = before.into_iter().map(bundled).collect::<Result<_>>()?;
    response.events_after = after.into_iter().map(bundled).collect::<Result<_>>()?;
    response.event = Some(bundled((count, pdu))?);
    if viewer.ever_joined() {
        response.state = services
            .rooms
            .state_at(&body.room_id, count)?
            .iter()
            .map(Pdu::to_state_event)
            .collect();
    }
    Ok(response)
}
