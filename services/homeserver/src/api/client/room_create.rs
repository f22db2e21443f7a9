//! `POST /createRoom`: the request goes to `ops::create_room`.

use std::sync::Arc;

use ruma::api::client::room::create_room;

use crate::{Result, Services, ops, ruma_wrapper::Ruma};

pub async fn create_room(
    services: Arc<Services>,
    request: Ruma<create_room::v3::Request>,
) -> Result<create_room::v3::Response> {
    if let Some(name) = &request.body.room_alias_name
        && let Ok(alias) = ruma::RoomAliasId::parse(format!("#{name}:{}", services.server_name()))
    {
        ops::directory::refuse_exclusive_alias(&services, &alias, request.appservice.as_deref())?;
    }
    let room_id = ops::create_room::create_room(&services, request.user(), &request.body).await?;
    Ok(create_room::v3::Response::new(room_id))
}
