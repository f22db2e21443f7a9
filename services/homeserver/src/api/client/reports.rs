//! Reporting an event or a room to the node's operators.

use std::sync::Arc;

use ruma::api::client::room::{report_content, report_room};

use crate::{Error, Result, Services, ruma_wrapper::Ruma};

/// Reports an event the user may see; any other is not found.
pub async fn event(
    services: Arc<Services>,
    request: Ruma<report_content::v3::Request>,
) -> Result<report_content::v3::Response> {
    let user = request.user();
    let body = &request.body;
    services
        .rooms
        .visible_position(user, &body.room_id, &body.event_id)?;
    services
        .reports
        .add(
            user,
            &body.room_id,
            Some(&body.event_id),
            body.reason.as_deref(),
        )
        .await?;
    tracing::info!(reporter = %user, room = %body.room_id, event = %body.event_id, "an event was reported");
    Ok(report_content::v3::Response::new())
}

/// Reports a room this node holds; any other is not found.
pub async fn room(
    services: Arc<Services>,
    request: Ruma<report_room::v3::Request>,
) -> Result<report_room::v3::Response> {
    let user = request.user();
    let body = &request.body;
    if services.rooms.meta(&body.room_id)?.is_none() {
        return Err(Error::not_found("No such room is known here."));
    }
    services
        .reports
        .add(user, &body.room_id, None, Some(&body.reason))
        .await?;
    tracing::info!(reporter = %user, room = %body.room_id, "a room was reported");
    Ok(report_room::v3::Response::new())
}
