//! The server-server API, served only on the federation listener. Every
//! endpoint but the key and version queries requires an `X-Matrix`
//! signature from an allowlisted peer (checked by the extractor before the
//! body is read).

mod events;
mod membership;
mod query;
mod send;
pub mod witness;

use std::sync::Arc;

use axum::response::Response;
use ruma::api::federation::discovery::{get_server_keys, get_server_version};

use crate::{
    Result, Services,
    router::RumaRouter,
    ruma_wrapper::{Ruma, json_response},
};

/// Registers every federation endpoint.
pub fn routes(router: axum::Router<Arc<Services>>) -> axum::Router<Arc<Services>> {
    router
        .ruma_raw(server_keys)
        .ruma(version)
        .ruma(send::send_transaction)
        .ruma(membership::make_join)
        .ruma(membership::send_join)
        .ruma(membership::make_leave)
        .ruma(membership::send_leave)
        .ruma(membership::invite)
        .ruma(events::event)
        .ruma(events::missing_events)
        .ruma(events::state_ids)
        .ruma(events::state)
        .ruma(events::event_auth)
        .ruma(events::backfill)
        .ruma(query::keys_query)
        .ruma(query::keys_claim)
        .ruma(query::devices)
        .ruma(query::profile)
        .ruma(query::directory)
        .ruma(witness::add_checkpoint)
        .ruma(crate::api::client::media::federation_download)
        .ruma(crate::api::client::media::federation_thumbnail)
}

async fn server_keys(
    services: Arc<Services>,
    _: Ruma<get_server_keys::v2::Request>,
) -> Result<Response> {
    let document = services.federation.own_keys_document()?;
    Ok(json_response(&serde_json::to_value(document)?))
}

async fn version(
    _: Arc<Services>,
    _: Ruma<get_server_version::v1::Request>,
) -> Result<get_server_version::v1::Response> {
    let mut server = get_server_version::v1::Server::new();
    server.name = Some("Archipel".to_owned());
    server.version = Some(env!("CARGO_PKG_VERSION").to_owned());
    let mut response = get_server_version::v1::Response::new();
    response.server = Some(server);
    Ok(response)
}
