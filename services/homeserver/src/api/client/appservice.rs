//! `POST /_matrix/client/v1/appservice/{appserviceId}/ping`: a bridge asks
//! the node to reach it, as every mautrix bridge does when it starts.

use std::sync::Arc;

use ruma::api::client::appservice::request_ping;

use crate::{Error, Result, Services, ruma_wrapper::Ruma};

pub async fn ping(
    _: Arc<Services>,
    request: Ruma<request_ping::v1::Request>,
) -> Result<request_ping::v1::Response> {
    let Some(registration) = &request.appservice else {
        return Err(Error::forbidden(
            "Only an application service may ping, with its as_token.",
        ));
    };
    if registration.id != request.body.appservice_id {
        return Err(Error::forbidden(format!(
            "This token is not the application service {}'s.",
            request.body.appservice_id
        )));
    }
    let txn = request
        .body
        .transaction_id
        .as_ref()
        .map(ToString::to_string);
    let took = crate::appservice::ping(registration, txn.as_deref()).await?;
    Ok(request_ping::v1::Response::new(took))
}
