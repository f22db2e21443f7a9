//! This server's users' device keys, for the client API and for peers' queries and claims.

use crate::{
    Error, Result, Services,
    service::e2ee::{MASTER, SELF_SIGNING},
    service::rooms::pdu::raw,
};
use ruma::{OwnedDeviceId, UserId, serde::Raw};
use std::collections::BTreeMap;

pub fn local_keys(
    services: &Services,
    user: &UserId,
    devices: &[OwnedDeviceId],
) -> Result<UserKeys> {
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
    Ok(UserKeys {
        devices: by_device,
        master: services
            .e2ee
            .cross_signing_key(user, MASTER)?
            .as_ref()
            .map(raw),
        self_signing: services
            .e2ee
            .cross_signing_key(user, SELF_SIGNING)?
            .as_ref()
            .map(raw),
    })
}

/// One-time (or fallback) keys claimed for local devices.
pub async fn claim_local(
    services: &Services,
    user: &UserId,
    devices: &BTreeMap<OwnedDeviceId, ruma::OneTimeKeyAlgorithm>,
) -> Result<
    BTreeMap<OwnedDeviceId, BTreeMap<ruma::OwnedOneTimeKeyId, Raw<ruma::encryption::OneTimeKey>>>,
> {
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
    Ok(by_device)
}

/// A local user's device keys (all devices if `devices` is empty) and
/// public cross-signing keys, as both APIs hand them out.
pub struct UserKeys {
    pub devices: BTreeMap<OwnedDeviceId, Raw<ruma::encryption::DeviceKeys>>,
    pub master: Option<Raw<ruma::encryption::CrossSigningKey>>,
    pub self_signing: Option<Raw<ruma::encryption::CrossSigningKey>>,
}
