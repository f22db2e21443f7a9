//! `/versions`, `.well-known`, capabilities.

use std::{collections::BTreeMap, sync::Arc};

use axum::response::Response;
use ruma::{
    RoomVersionId,
    api::client::discovery::{
        discover_homeserver, get_capabilities,
        get_capabilities::v3::{Capabilities, RoomVersionStability, RoomVersionsCapability},
        get_supported_versions,
    },
};
use serde_json::json;

use crate::{
    Error, Result, Services,
    config::SUPPORTED_ROOM_VERSIONS,
    ruma_wrapper::{Ruma, json_response},
};

/// The spec versions this server implements.
const VERSIONS: &[&str] = &[
    "r0.6.1", "v1.1", "v1.2", "v1.3", "v1.4", "v1.5", "v1.6", "v1.7", "v1.8", "v1.9", "v1.10",
    "v1.11", "v1.12",
];

pub async fn versions(
    _: Arc<Services>,
    _: Ruma<get_supported_versions::Request>,
) -> Result<get_supported_versions::Response> {
    let mut response =
        get_supported_versions::Response::new(VERSIONS.iter().map(|v| (*v).to_owned()).collect());
    response.unstable_features = BTreeMap::from([
        ("org.matrix.msc3916.stable".to_owned(), true),
        // Simplified sliding sync (MSC4186), which Element X requires.
        ("org.matrix.simplified_msc3575".to_owned(), true),
    ]);
    Ok(response)
}

pub async fn well_known_client(
    services: Arc<Services>,
    _: Ruma<discover_homeserver::Request>,
) -> Result<discover_homeserver::Response> {
    let base_url = services.config.public_base_url.clone().ok_or_else(|| {
        Error::not_found("This server does not publish client discovery information.")
    })?;
    Ok(discover_homeserver::Response::new(
        discover_homeserver::HomeserverInfo::new(base_url),
    ))
}

pub async fn well_known_server(services: Arc<Services>) -> Response {
    match &services.config.federation_endpoint {
        Some(endpoint) => json_response(&json!({ "m.server": endpoint })),
        None => axum::response::IntoResponse::into_response(Error::not_found(
            "This server does not federate.",
        )),
    }
}

pub async fn capabilities(
    services: Arc<Services>,
    _: Ruma<get_capabilities::v3::Request>,
) -> Result<get_capabilities::v3::Response> {
    let available: BTreeMap<RoomVersionId, RoomVersionStability> = SUPPORTED_ROOM_VERSIONS
        .iter()
        .map(|v| (v.clone(), RoomVersionStability::Stable))
        .collect();
    let mut capabilities = Capabilities::new();
    capabilities.room_versions =
        RoomVersionsCapability::new(services.config.default_room_version.clone(), available);
    capabilities.change_password.enabled = true;
    capabilities.thirdparty_id_changes.enabled = false;
    Ok(get_capabilities::v3::Response::new(capabilities))
}
