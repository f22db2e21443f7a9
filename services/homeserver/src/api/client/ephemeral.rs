//! Receipts, read markers, typing and presence.

use std::{sync::Arc, time::Duration};

use ruma::{
    api::client::{
        presence::{get_presence, set_presence},
        read_marker::set_read_marker,
        receipt::create_receipt::{self, v3::ReceiptType},
        typing::create_typing_event::{self, v3::Typing},
    },
    events::receipt::ReceiptThread,
    presence::PresenceState,
};
use serde_json::json;

use crate::ops::edu;
use crate::ops::events::visible_event;
use crate::{Error, Result, Services, ruma_wrapper::Ruma, service::users::now_ms};

pub async fn receipt(
    services: Arc<Services>,
    request: Ruma<create_receipt::v3::Request>,
) -> Result<create_receipt::v3::Response> {
    let (user, body) = (request.user(), &request.body);
    visible_event(&services, user, &body.room_id, &body.event_id)?;
    let thread = match &body.thread {
        ReceiptThread::Unthreaded => None,
        ReceiptThread::Main => Some("main".to_owned()),
        ReceiptThread::Thread(id) => Some(id.to_string()),
        _ => None,
    };
    match body.receipt_type {
        ReceiptType::FullyRead => {
            services
                .account_data
                .set(
                    user,
                    Some(&body.room_id),
                    "m.fully_read",
                    json!({ "event_id": body.event_id }),
                )
                .await?;
        }
        ReceiptType::Read => {
            services
                .receipts
                .set(
                    &body.room_id,
                    user,
                    "m.read",
                    &body.event_id,
                    thread.clone(),
                )
                .await?;
            edu::send_receipt(
                &services,
                &body.room_id,
                user,
                &body.event_id,
                thread.as_deref(),
            )
            .await?;
        }
        ReceiptType::ReadPrivate => {
            services
                .receipts
                .set(
                    &body.room_id,
                    user,
                    "m.read.private",
                    &body.event_id,
                    thread,
                )
                .await?
        }
        _ => return Err(Error::invalid_param("Unknown receipt type.")),
    }
    Ok(create_receipt::v3::Response::new())
}

pub async fn read_markers(
    services: Arc<Services>,
    request: Ruma<set_read_marker::v3::Request>,
) -> Result<set_read_marker::v3::Response> {
    let (user, body) = (request.user(), &request.body);
    if let Some(event_id) = &body.fully_read {
        visible_event(&services, user, &body.room_id, event_id)?;
        services
            .account_data
            .set(
                user,
                Some(&body.room_id),
                "m.fully_read",
                json!({ "event_id": event_id }),
            )
            .await?;
    }
    if let Some(event_id) = &body.read_receipt {
        visible_event(&services, user, &body.room_id, event_id)?;
        services
            .receipts
            .set(&body.room_id, user, "m.read", event_id, None)
            .await?;
    }
    if let Some(event_id) = &body.private_read_receipt {
        visible_event(&services, user, &body.room_id, event_id)?;
        services
            .receipts
            .set(&body.room_id, user, "m.read.private", event_id, None)
            .await?;
    }
    Ok(set_read_marker::v3::Response::new())
}

pub async fn typing(
    services: Arc<Services>,
    request: Ruma<create_typing_event::v3::Request>,
) -> Result<create_typing_event::v3::Response> {
    let (user, body) = (request.user(), &request.body);
    if body.user_id != user {
        return Err(Error::forbidden("You can only set your own typing state."));
    }
    if !services.rooms.is_joined(user, &body.room_id)? {
        return Err(Error::forbidden("You are not in this room."));
    }
    let timeout = match &body.state {
        Typing::Yes(info) => Some(info.timeout.max(Duration::from_secs(1))),
        _ => None,
    };
    services.typing.set(&body.room_id, user, timeout)?;
    edu::send_typing(&services, &body.room_id, user, timeout.is_some())?;
    Ok(create_typing_event::v3::Response::new())
}

pub async fn get_presence(
    services: Arc<Services>,
    request: Ruma<get_presence::v3::Request>,
) -> Result<get_presence::v3::Response> {
    let target = &request.body.user_id;
    if !services.rooms.share_a_room(request.user(), target)? {
        return Err(Error::forbidden("You do not share a room with that user."));
    }
    let record = services
        .presence
        .get(target)?
        .ok_or_else(|| Error::not_found("No presence for that user."))?;
    let mut response = get_presence::v3::Response::new(record.presence.clone());
    response.status_msg = record.status_msg;
    response.last_active_ago = Some(Duration::from_millis(
        now_ms().saturating_sub(record.last_active_ts),
    ));
    response.currently_active = Some(record.presence == PresenceState::Online);
    Ok(response)
}

pub async fn set_presence(
    services: Arc<Services>,
    request: Ruma<set_presence::v3::Request>,
) -> Result<set_presence::v3::Response> {
    if request.body.user_id != request.user() {
        return Err(Error::forbidden("You can only set your own presence."));
    }
    services
        .presence
        .set(
            request.user(),
            request.body.presence.clone(),
            Some(request.body.status_msg.clone()),
        )
        .await?;
    edu::send_presence(&services, request.user())?;
    Ok(set_presence::v3::Response::new())
}
