//! What peers may ask about this server's users and aliases: device
//! keys, one-time keys, device lists, profiles and room aliases.

use std::{collections::BTreeMap, sync::Arc};

use ruma::{
    UInt, UserId,
    api::federation::{
        device::get_devices,
        keys::{claim_keys, get_keys},
        query::{get_profile_information, get_room_information},
    },
};
use serde_json::Value;

use crate::{
    Error, Result, Services,
    ops::keys::{claim_local, local_keys},
    ruma_wrapper::Ruma,
};

/// Refuses questions about users of other servers.
fn require_local(services: &Services, user: &UserId) -> Result<()> {
    if services.is_local(user) {
        Ok(())
    } else {
        Err(Error::invalid_param(format!(
            "{user} is not a user of this server."
        )))
    }
}

pub async fn keys_query(
    services: Arc<Services>,
    request: Ruma<get_keys::v1::Request>,
) -> Result<get_keys::v1::Response> {
    let mut response = get_keys::v1::Response::new(BTreeMap::new());
    for (user, devices) in &request.body.device_keys {
        if !services.is_local(user) {
            continue;
        }
        let keys = local_keys(&services, user, devices)?;
        response.device_keys.insert(user.clone(), keys.devices);
        if let Some(key) = keys.master {
            response.master_keys.insert(user.clone(), key);
        }
        if let Some(key) = keys.self_signing {
            response.self_signing_keys.insert(user.clone(), key);
        }
    }
    Ok(response)
}

pub async fn keys_claim(
    services: Arc<Services>,
    request: Ruma<claim_keys::v1::Request>,
) -> Result<claim_keys::v1::Response> {
    let mut claimed = BTreeMap::new();
    for (user, devices) in &request.body.one_time_keys {
        if services.is_local(user) {
            claimed.insert(user.clone(), claim_local(&services, user, devices).await?);
        }
    }
    Ok(claim_keys::v1::Response::new(claimed))
}

pub async fn devices(
    services: Arc<Services>,
    request: Ruma<get_devices::v1::Request>,
) -> Result<get_devices::v1::Response> {
    let user = &request.body.user_id;
    require_local(&services, user)?;
    let keys = local_keys(&services, user, &[])?;
    let mut devices = Vec::new();
    for (device_id, device_keys) in keys.devices {
        let mut device = get_devices::v1::UserDevice::new(device_id.clone(), device_keys);
        device.device_display_name = services
            .users
            .device(user, &device_id)?
            .and_then(|d| d.display_name);
        devices.push(device);
    }
    let stream_id = UInt::try_from(services.counter.visible()).unwrap_or_default();
    let mut response = get_devices::v1::Response::new(user.clone(), stream_id);
    response.devices = devices;
    response.master_key = keys.master;
    response.self_signing_key = keys.self_signing;
    Ok(response)
}

pub async fn profile(
    services: Arc<Services>,
    request: Ruma<get_profile_information::v1::Request>,
) -> Result<get_profile_information::v1::Response> {
    let user = &request.body.user_id;
    require_local(&services, user)?;
    let account = services
        .users
        .account(user)?
        .filter(|a| !a.deactivated)
        .ok_or_else(|| Error::not_found("Profile not found."))?;
    let field = request.body.field.as_ref().map(|f| f.as_str().to_owned());
    let wanted = |name: &str| field.as_deref().is_none_or(|f| f == name);
    let mut response = get_profile_information::v1::Response::new();
    if let Some(name) = account.displayname.filter(|_| wanted("displayname")) {
        response.set("displayname".into(), Value::String(name));
    }
    if let Some(url) = account.avatar_url.filter(|_| wanted("avatar_url")) {
        response.set("avatar_url".into(), Value::String(url.to_string()));
    }
    Ok(response)
}

pub async fn directory(
    services: Arc<Services>,
    request: Ruma<get_room_information::v1::Request>,
) -> Result<get_room_information::v1::Response> {
    let alias = &request.body.room_alias;
    if alias.server_name() != services.server_name() {
        return Err(Error::not_found(format!(
            "{alias} is not an alias of this server."
        )));
    }
    let room_id = services
        .rooms
        .resolve_alias(alias)?
        .ok_or_else(|| Error::not_found("Room alias not found."))?;
    let mut servers: Vec<_> = services.rooms.servers_in_room(&room_id)?.to_vec();
    servers.retain(|s| s == services.server_name() || services.federation.allows(s));
    Ok(get_room_information::v1::Response::new(room_id, servers))
}
