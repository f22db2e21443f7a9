//! The user's devices.

use std::sync::Arc;

use ruma::{
    MilliSecondsSinceUnixEpoch, UInt,
    api::client::{
        device::{self, delete_device, delete_devices, get_device, get_devices, update_device},
        uiaa::AuthType,
    },
};

use super::uiaa;
use crate::{
    Error, Result, Services, ops::users::remove_device, ruma_wrapper::Ruma, service::users,
};

fn to_ruma(device: users::Device) -> device::Device {
    let mut out = device::Device::new(device.device_id);
    out.display_name = device.display_name;
    out.last_seen_ip = device.last_seen_ip;
    out.last_seen_ts = device
        .last_seen_ts
        .and_then(UInt::new)
        .map(MilliSecondsSinceUnixEpoch);
    out
}

pub async fn list(
    services: Arc<Services>,
    request: Ruma<get_devices::v3::Request>,
) -> Result<get_devices::v3::Response> {
    let devices = services
        .users
        .devices(request.user())?
        .into_iter()
        .map(to_ruma)
        .collect();
    Ok(get_devices::v3::Response::new(devices))
}

pub async fn get(
    services: Arc<Services>,
    request: Ruma<get_device::v3::Request>,
) -> Result<get_device::v3::Response> {
    let device = services
        .users
        .device(request.user(), &request.body.device_id)?
        .ok_or_else(|| Error::not_found("Unknown device."))?;
    Ok(get_device::v3::Response::new(to_ruma(device)))
}

pub async fn update(
    services: Arc<Services>,
    request: Ruma<update_device::v3::Request>,
) -> Result<update_device::v3::Response> {
    // A bridge creates its users' devices this way (MSC4190, v1.17).
    if request.appservice.is_some()
        && services
            .users
            .create_device_without_session(
                request.user(),
                &request.body.device_id,
                request.body.display_name.clone(),
            )
            .await?
    {
        return Ok(update_device::v3::Response::new());
    }
    services
        .users
        .set_device_display_name(
            request.user(),
            &request.body.device_id,
            request.body.display_name.clone(),
        )
        .await?;
    Ok(update_device::v3::Response::new())
}

/// Removing a device takes the user's password, except from a bridge,
/// which has none to give (v1.17).
async fn require_password<T>(
    services: &Services,
    request: &Ruma<T>,
    auth: Option<&ruma::api::client::uiaa::AuthData>,
) -> Result<()> {
    if request.appservice.is_some() {
        return Ok(());
    }
    uiaa::require(
        services,
        auth,
        &[vec![AuthType::Password]],
        Some(request.user()),
    )
    .await?;
    Ok(())
}

pub async fn delete(
    services: Arc<Services>,
    request: Ruma<delete_device::v3::Request>,
) -> Result<delete_device::v3::Response> {
    let user = request.user();
    services
        .users
        .device(user, &request.body.device_id)?
        .ok_or_else(|| Error::not_found("Unknown device."))?;
    require_password(&services, &request, request.body.auth.as_ref()).await?;
    remove_device(&services, user, &request.body.device_id).await?;
    Ok(delete_device::v3::Response::new())
}

pub async fn delete_many(
    services: Arc<Services>,
    request: Ruma<delete_devices::v3::Request>,
) -> Result<delete_devices::v3::Response> {
    let user = request.user();
    require_password(&services, &request, request.body.auth.as_ref()).await?;
    for device_id in &request.body.devices {
        remove_device(&services, user, device_id).await?;
    }
    Ok(delete_devices::v3::Response::new())
}
