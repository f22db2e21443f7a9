//! `POST /_matrix/client/v1/appservice/{appserviceId}/ping`: a bridge asks
//! the node to reach it, as every mautrix bridge does when it starts.

use std::{sync::Arc, time::Instant};

use ruma::api::client::appservice::request_ping;

use crate::{Error, Result, Services, ruma_wrapper::Ruma};

/// Of a bridge's answer, at most this much is handed back.
const MAX_BODY: usize = 1000;

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
    let Some(url) = &registration.url else {
        return Err(Error::url_not_set());
    };
    let mut body = serde_json::json!({});
    if let Some(txn) = &request.body.transaction_id {
        body["transaction_id"] = serde_json::Value::String(txn.to_string());
    }
    let client = crate::appservice::sender::client()?;
    let started = Instant::now();
    let response = client
        .post(format!("{url}/_matrix/app/v1/ping"))
        .bearer_auth(registration.hs_token())
        .json(&body)
        .send()
        .await
        .map_err(|e| {
            Error::connection_failed(
                e.is_timeout(),
                format!("The application service could not be reached: {e}"),
            )
        })?;
    let status = response.status();
    if !status.is_success() {
        let text = response.text().await.unwrap_or_default();
        let text: String = text.chars().take(MAX_BODY).collect();
        tracing::warn!(appservice = %registration.id, %status, "a bridge answered its ping with an error");
        return Err(Error::bad_status(status, text));
    }
    Ok(request_ping::v1::Response::new(started.elapsed()))
}
