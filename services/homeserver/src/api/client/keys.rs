//! End-to-end encryption endpoints: device and one-time keys, cross-signing,
//! signatures, key changes, and to-device messages.

use std::{collections::BTreeMap, sync::Arc};

use ruma::{
    OwnedDeviceId, OwnedUserId, UInt,
    api::client::{
        keys::{
            claim_keys, get_key_changes, get_keys, upload_keys, upload_signatures,
            upload_signing_keys,
        },
        to_device::send_event_to_device,
        uiaa::AuthType,
    },
    serde::Raw,
    to_device::DeviceIdOrAllDevices,
};
use serde_json::Value;

use super::{messages::parse_token, uiaa};
use crate::{
    Error, Result, Services,
    ruma_wrapper::Ruma,
    service::e2ee::{MASTER, SELF_SIGNING, USER_SIGNING},
};

fn raw<T>(value: &Value) -> Raw<T> {
    crate::service::rooms::pdu::raw(value)
}

fn json_of<T>(raw: &Raw<T>) -> Result<Value> {
    Ok(serde_json::from_str(raw.json().get())?)
}

pub async fn upload(
    services: Arc<Services>,
    request: Ruma<upload_keys::v3::Request>,
) -> Result<upload_keys::v3::Response> {
    let (user, device) = (request.user(), request.device());
    let b = &request.body;
    let device_keys = b.device_keys.as_ref().map(json_of).transpose()?;
    let one_time = b
        .one_time_keys
        .iter()
        .map(|(id, k)| Ok((id.to_string(), json_of(k)?)))
        .collect::<Result<BTreeMap<_, _>>>()?;
    let fallback = b
        .fallback_keys
        .iter()
        .map(|(id, k)| Ok((id.to_string(), json_of(k)?)))
        .collect::<Result<BTreeMap<_, _>>>()?;
    services
        .e2ee
        .upload(user, device, device_keys, one_time, fallback)
        .await?;
    let counts = services
        .e2ee
        .one_time_key_counts(user, device)?
        .into_iter()
        .map(|(alg, n)| (alg.as_str().into(), UInt::try_from(n).unwrap_or_default()))
        .collect();
    Ok(upload_keys::v3::Response::new(counts))
}

pub async fn query(
    services: Arc<Services>,
    request: Ruma<get_keys::v3::Request>,
) -> Result<get_keys::v3::Response> {
    let requester = request.user();
    let mut response = get_keys::v3::Response::new();
    for (user, devices) in &request.body.device_keys {
        if !services.is_local(user) {
            response.failures.insert(
                user.server_name().to_string(),
                serde_json::json!({ "error": "federation is not enabled" }),
            );
            continue;
        }
        let mut by_device = BTreeMap::new();
        for (device_id, mut keys) in services.e2ee.all_device_keys(user)? {
            if !devices.is_empty() && !devices.contains(&device_id) {
                continue;
            }
            if let Some(info) = services.users.device(user, &device_id)? {
                keys["unsigned"] = serde_json::json!({ "device_display_name": info.display_name });
            }
            by_device.insert(device_id, raw(&keys));
        }
        response.device_keys.insert(user.clone(), by_device);
        if let Some(master) = services.e2ee.cross_signing_key(user, MASTER)? {
            response.master_keys.insert(user.clone(), raw(&master));
        }
        if let Some(key) = services.e2ee.cross_signing_key(user, SELF_SIGNING)? {
            response.self_signing_keys.insert(user.clone(), raw(&key));
        }
        if user == requester
            && let Some(key) = services.e2ee.cross_signing_key(user, USER_SIGNING)?
        {
            response.user_signing_keys.insert(user.clone(), raw(&key));
        }
    }
    Ok(response)
}

pub async fn claim(
    services: Arc<Services>,
    request: Ruma<claim_keys::v3::Request>,
) -> Result<claim_keys::v3::Response> {
    let mut claimed = BTreeMap::new();
    let mut failures = BTreeMap::new();
    for (user, devices) in &request.body.one_time_keys {
        if !services.is_local(user) {
            failures.insert(
                user.server_name().to_string(),
                serde_json::json!({ "error": "federation is not enabled" }),
            );
            continue;
        }
        let mut by_device = BTreeMap::new();
        for (device, algorithm) in devices {
            if let Some((key_id, key)) = services
                .e2ee
                .claim(user, device, algorithm.as_str())
                .await?
            {
                let id = key_id
                    .as_str()
                    .try_into()
                    .map_err(|_| Error::internal("stored key ID is invalid"))?;
                by_device.insert(device.clone(), BTreeMap::from([(id, raw(&key))]));
            }
        }
        claimed.insert(user.clone(), by_device);
    }
    let mut response = claim_keys::v3::Response::new(claimed);
    response.failures = failures;
    Ok(response)
}

pub async fn changes(
    services: Arc<Services>,
    request: Ruma<get_key_changes::v3::Request>,
) -> Result<get_key_changes::v3::Response> {
    let from = parse_token(&request.body.from)?;
    let to = parse_token(&request.body.to)?.min(services.counter.visible());
    let (mut changed, mut left) = (Vec::new(), Vec::new());
    for user in services.rooms.key_changes(from, to)? {
        if services.rooms.share_a_room(request.user(), &user)? {
            changed.push(user);
        } else {
            left.push(user);
        }
    }
    Ok(get_key_changes::v3::Response::new(changed, left))
}

pub async fn upload_signing(
    services: Arc<Services>,
    request: Ruma<upload_signing_keys::v3::Request>,
) -> Result<upload_signing_keys::v3::Response> {
    let user = request.user();
    let b = &request.body;
    // Replacing an existing master key needs the password; the first upload does not.
    if services.e2ee.cross_signing_key(user, MASTER)?.is_some() {
        uiaa::require(
            &services,
            b.auth.as_ref(),
            &[vec![AuthType::Password]],
            Some(user),
        )
        .await?;
    }
    let mut keys = Vec::new();
    if let Some(k) = &b.master_key {
        keys.push((MASTER, json_of(k)?));
    }
    if let Some(k) = &b.self_signing_key {
        keys.push((SELF_SIGNING, json_of(k)?));
    }
    if let Some(k) = &b.user_signing_key {
        keys.push((USER_SIGNING, json_of(k)?));
    }
    services.e2ee.set_cross_signing_keys(user, keys).await?;
    Ok(upload_signing_keys::v3::Response::new())
}

pub async fn upload_sigs(
    services: Arc<Services>,
    request: Ruma<upload_signatures::v3::Request>,
) -> Result<upload_signatures::v3::Response> {
    let body = request.json_body.clone().unwrap_or_default();
    let Some(users) = body.as_object() else {
        return Err(Error::bad_json("Expected an object of signed keys."));
    };
    for (user, keys) in users {
        let user: OwnedUserId = user
            .as_str()
            .try_into()
            .map_err(|_| Error::bad_json("Invalid user ID."))?;
        for (key_id, signed) in keys.as_object().into_iter().flatten() {
            if let Err(e) = services.e2ee.add_signatures(&user, key_id, signed).await {
                tracing::debug!(error = %e, %user, key_id, "signature not stored");
            }
        }
    }
    Ok(upload_signatures::v3::Response::new())
}

pub async fn send_to_device(
    services: Arc<Services>,
    request: Ruma<send_event_to_device::v3::Request>,
) -> Result<send_event_to_device::v3::Response> {
    let sender = request.user();
    let b = &request.body;
    let mut targets: Vec<(OwnedUserId, OwnedDeviceId, Value)> = Vec::new();
    for (user, devices) in &b.messages {
        if !services.is_local(user) {
            continue;
        }
        for (target, content) in devices {
            let content = json_of(content)?;
            match target {
                DeviceIdOrAllDevices::DeviceId(device) => {
                    targets.push((user.clone(), device.clone(), content))
                }
                DeviceIdOrAllDevices::AllDevices => {
                    for device in services.users.devices(user)? {
                        targets.push((user.clone(), device.device_id, content.clone()));
                    }
                }
            }
        }
    }
    services
        .e2ee
        .send_to_device(sender, &b.event_type.to_string(), targets)
        .await?;
    Ok(send_event_to_device::v3::Response::new())
}
