//! Joining through this server: make_join hands out a template, send_join
//! takes the signed join and answers with the room's state.

use std::sync::Arc;

use ruma::{
    CanonicalJsonValue,
    api::federation::membership::{create_join_event, prepare_join_event},
};
use serde_json::value::to_raw_value;

use super::{events::federation_events, pdu::verify_pdu};
use crate::{Error, Result, Services, ruma_wrapper::Ruma, service::rooms::Received};

pub async fn make_join(
    services: Arc<Services>,
    request: Ruma<prepare_join_event::v1::Request>,
) -> Result<prepare_join_event::v1::Response> {
    let body = &request.body;
    if body.user_id.server_name() != request.origin() {
        return Err(Error::forbidden(format!(
            "{} may only join its own users.",
            request.origin()
        )));
    }
    let (version, template) = services.rooms.join_template(&body.room_id, &body.user_id)?;
    if !body.ver.contains(&version) {
        return Err(Error::incompatible_room_version(version));
    }
    let mut response = prepare_join_event::v1::Response::new(to_raw_value(&template)?);
    response.room_version = Some(version);
    Ok(response)
}

pub async fn send_join(
    services: Arc<Services>,
    request: Ruma<create_join_event::v2::Request>,
) -> Result<create_join_event::v2::Response> {
    let origin = request.origin().to_owned();
    let body = request.body;
    let (_, rules) = services.rooms.rules(&body.room_id)?;
    let pdu = verify_pdu(&services, &body.pdu, &body.room_id, &rules).await?;
    if pdu.event_id != body.event_id {
        return Err(Error::bad_json(format!(
            "The event's ID is {}, not {}.",
            pdu.event_id, body.event_id
        )));
    }
    let field = |name: &str| match pdu.object.get(name) {
        Some(CanonicalJsonValue::String(s)) => Some(s.clone()),
        _ => None,
    };
    let membership = match pdu.object.get("content") {
        Some(CanonicalJsonValue::Object(content)) => match content.get("membership") {
            Some(CanonicalJsonValue::String(m)) => Some(m.clone()),
            _ => None,
        },
        _ => None,
    };
    let sender = field("sender").unwrap_or_default();
    if field("type").as_deref() != Some("m.room.member")
        || membership.as_deref() != Some("join")
        || field("state_key").as_deref() != Some(sender.as_str())
    {
        return Err(Error::bad_json(
            "send_join takes a join event of its sender.",
        ));
    }
    if !sender.ends_with(&format!(":{origin}")) {
        return Err(Error::forbidden(format!(
            "{origin} may only join its own users."
        )));
    }
    match services
        .rooms
        .receive(&pdu.event_id, pdu.object, Some(&origin))
        .await?
    {
        Received::Accepted(_) | Received::AlreadyKnown => {}
        Received::Rejected(why) | Received::SoftFailed(why) => {
            return Err(Error::forbidden(format!("The join is not allowed: {why}")));
        }
        Received::Missing(ids) => {
            return Err(Error::bad_json(format!(
                "The join follows events this server does not have: {ids:?}"
            )));
        }
    }
    let (state, chain) = services.rooms.state_and_auth_chain(&body.event_id)?;
    let mut room_state = create_join_event::v2::RoomState::new();
    room_state.state = federation_events(&services, state)?;
    room_state.auth_chain = federation_events(&services, chain)?;
    room_state.servers_in_room = Some(
        services
            .rooms
            .servers_in_room(&body.room_id)?
            .iter()
            .map(|s| s.to_string())
            .collect(),
    );
    Ok(create_join_event::v2::Response::new(room_state))
}
