//! `/voip/turnServer`: where clients relay the media of voice and video
//! calls, from `[homeserver.turn]`.

use std::{sync::Arc, time::Duration};

use axum::response::Response;
use base64::{Engine, engine::general_purpose::STANDARD as B64};
use hmac::{Hmac, Mac};
use ruma::api::client::voip::get_turn_server_info;
use serde_json::json;

use crate::{
    Result, Services,
    ruma_wrapper::{Ruma, json_response},
    service::users::now_ms,
};

/// The TURN servers and credentials for the signed-in user. With none
/// configured, an empty object, as clients expect (they then call without
/// a relay).
pub async fn turn_server(
    services: Arc<Services>,
    request: Ruma<get_turn_server_info::v3::Request>,
) -> Result<Response> {
    let turn = &services.config.turn;
    if turn.uris.is_empty() {
        return Ok(json_response(&json!({})));
    }
    let (username, password, ttl) = match &turn.shared_secret {
        Some(secret) => {
            let ttl = Duration::from_secs(turn.user_lifetime_secs);
            let expires = (now_ms() / 1000).saturating_add(ttl.as_secs());
            let (username, password) = rest_credentials(secret, request.user(), expires);
            (username, password, ttl.as_secs())
        }
        None => (
            turn.username.clone().unwrap_or_default(),
            turn.password.clone().unwrap_or_default(),
            // Fixed credentials do not expire: ask again once a day.
            86_400,
        ),
    };
    Ok(json_response(&json!({
        "username": username,
        "password": password,
        "uris": turn.uris,
        "ttl": ttl,
    })))
}

/// Credentials of the TURN REST API (what coturn's `use-auth-secret`
/// checks): the username is `<expiry>:<user ID>`, the password the base64
/// HMAC-SHA1 of the username under the shared secret.
fn rest_credentials(secret: &str, user: &ruma::UserId, expires: u64) -> (String, String) {
    let username = format!("{expires}:{user}");
    let mut mac =
        Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(username.as_bytes());
    let password = B64.encode(mac.finalize().into_bytes());
    (username, password)
}

#[cfg(test)]
mod tests {
    use super::rest_credentials;

    #[test]
    fn rest_credentials_are_what_coturn_computes() {
        // `echo -n "1700000000:@alice:localhost" | openssl dgst -sha1 -hmac geheim -binary | base64`
        let user = ruma::UserId::parse("@alice:localhost").expect("user");
        let (username, password) = rest_credentials("geheim", &user, 1_700_000_000);
        assert_eq!(username, "1700000000:@alice:localhost");
        assert_eq!(password, "lBBrodQAYlhjI2ScuiWJxIQMEUw=");
    }
}
