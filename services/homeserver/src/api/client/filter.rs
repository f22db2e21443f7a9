//! `/user/{userId}/filter`: storing and reading a user's filters.

use std::sync::Arc;

use ruma::api::client::filter::{create_filter, get_filter};

use crate::{Error, Result, Services, ops::filter::check, ruma_wrapper::Ruma};

pub async fn create(
    services: Arc<Services>,
    request: Ruma<create_filter::v3::Request>,
) -> Result<create_filter::v3::Response> {
    if request.body.user_id != request.user() {
        return Err(Error::forbidden(
            "You can only create filters for yourself.",
        ));
    }
    check(&request.body.filter)?;
    let filter = serde_json::to_value(&request.body.filter)?;
    let id = services.filters.create(request.user(), &filter).await?;
    Ok(create_filter::v3::Response::new(id))
}

pub async fn get(
    services: Arc<Services>,
    request: Ruma<get_filter::v3::Request>,
) -> Result<get_filter::v3::Response> {
    if request.body.user_id != request.user() {
        return Err(Error::forbidden("You can only read your own filters."));
    }
    let filter = services
        .filters
        .get(request.user(), &request.body.filter_id)?
        .ok_or_else(|| Error::not_found("Unknown filter."))?;
    Ok(get_filter::v3::Response::new(serde_json::from_value(
        filter,
    )?))
}
