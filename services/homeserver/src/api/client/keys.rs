//! End-to-end encryption endpoints: device and one-time keys, cross-signing,
//! signatures, key changes, and to-device messages.

use std::{collections::BTreeMap, sync::Arc};

use ruma::{
    OwnedDeviceId, OwnedUserId, UInt, UserId,
    api::client::{
        keys::{
            claim_keys, get_key_changes, get_keys, upload_keys, upload_signatures,
            upload_signing_keys,
        },
        to_device::send_event_to_device,
        uiaa::AuthType,
    },
    api::federation::keys as federation_keys,
    serde::Raw,
};
use serde_json::{Value, json};

use super::uiaa;
use crate::{
    Error, Result, Services,
    ruma_wrapper::Ruma,
    service::e2ee::{MASTER, SELF_SIGNING, USER_SIGNING},
};
use crate::{
    counter::parse_token,
    ops::{
        edu,
        keys::{claim_local, local_keys},
    },
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
    let new_device_keys = device_keys.is_some();
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
    if new_device_keys {
        edu::send_device_update(&services, user, device, false).await?;
    }
    let counts = services
        .e2ee
        .one_time_key_counts(user, device)?
        .into_iter()
        .map(|(alg, n)| (alg.as_str().into(), UInt::try_from(n).unwrap_or_default()))
        .collect();
    Ok(upload_keys::v3::Response::new(counts))
}

/// How long a peer may take to answer a key query or claim.
fn peer_timeout(requested: Option<std::time::Duration>) -> std::time::Duration {
    requested
        .unwrap_or(std::time::Duration::from_secs(10))
        .min(std::time::Duration::from_secs(30))
}

/// Asks each peer in turn, within the timeout; a peer that fails or is not
/// allowlisted becomes an entry in `failures`.
async fn ask_peers<T, F, Fut>(
    services: &Services,
    servers: impl IntoIterator<Item = ruma::OwnedServerName>,
    timeout: std::time::Duration,
    failures: &mut BTreeMap<String, Value>,
    mut ask: F,
) -> Vec<T>
where
    F: FnMut(ruma::OwnedServerName) -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let mut answers = Vec::new();
    for server in servers {
        let outcome = match services.federation.require_peer(&server) {
            Ok(()) => tokio::time::timeout(timeout, ask(server.clone()))
                .await
                .unwrap_or_else(|_| {
                    Err(Error::remote(format!("{server} did not answer in time.")))
                }),
            Err(e) => Err(e),
        };
        match outcome {
            Ok(answer) => answers.push(answer),
            Err(e) => {
                failures.insert(
                    server.to_string(),
                    serde_json::json!({ "error": e.to_string() }),
                );
            }
        }
    }
    answers
}

pub async fn query(
    services: Arc<Services>,
    request: Ruma<get_keys::v3::Request>,
) -> Result<get_keys::v3::Response> {
    let requester = request.user();
    let mut response = get_keys::v3::Response::new();
    let mut remote: BTreeMap<ruma::OwnedServerName, BTreeMap<OwnedUserId, Vec<OwnedDeviceId>>> =
        BTreeMap::new();
    for (user, devices) in &request.body.device_keys {
        if !services.is_local(user) {
            remote
                .entry(user.server_name().to_owned())
                .or_default()
                .insert(user.clone(), devices.clone());
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
        if user == requester
            && let Some(key) = services.e2ee.cross_signing_key(user, USER_SIGNING)?
        {
            response.user_signing_keys.insert(user.clone(), raw(&key));
        }
    }
    let timeout = peer_timeout(request.body.timeout);
    let answers = ask_peers(
        &services,
        remote.keys().cloned().collect::<Vec<_>>(),
        timeout,
        &mut response.failures,
        |server| {
            let users = remote.get(&server).cloned().unwrap_or_default();
            let services = services.clone();
            async move {
                let asked: Vec<OwnedUserId> = users.keys().cloned().collect();
                let answer = services
                    .federation
                    .send(&server, federation_keys::get_keys::v1::Request::new(users))
                    .await?;
                Ok((server, asked, answer))
            }
        },
    )
    .await;
    for (server, asked, answer) in answers {
        // A peer answers only for its own users.
        let ours = |user: &UserId| user.server_name() == server && asked.iter().any(|u| u == user);
        response
            .device_keys
            .extend(answer.device_keys.into_iter().filter(|(u, _)| ours(u)));
        response
            .master_keys
            .extend(answer.master_keys.into_iter().filter(|(u, _)| ours(u)));
        response.self_signing_keys.extend(
            answer
                .self_signing_keys
                .into_iter()
                .filter(|(u, _)| ours(u)),
        );
    }
    Ok(response)
}

pub async fn claim(
    services: Arc<Services>,
    request: Ruma<claim_keys::v3::Request>,
) -> Result<claim_keys::v3::Response> {
    let mut claimed = BTreeMap::new();
    let mut failures = BTreeMap::new();
    let mut remote: BTreeMap<
        ruma::OwnedServerName,
        ruma::api::federation::keys::claim_keys::v1::OneTimeKeyClaims,
    > = BTreeMap::new();
    for (user, devices) in &request.body.one_time_keys {
        if !services.is_local(user) {
            remote
                .entry(user.server_name().to_owned())
                .or_default()
                .insert(user.clone(), devices.clone());
            continue;
        }
        claimed.insert(user.clone(), claim_local(&services, user, devices).await?);
    }
    let timeout = peer_timeout(request.body.timeout);
    let answers = ask_peers(
        &services,
        remote.keys().cloned().collect::<Vec<_>>(),
        timeout,
        &mut failures,
        |server| {
            let users = remote.get(&server).cloned().unwrap_or_default();
            let services = services.clone();
            async move {
                let answer = services
                    .federation
                    .send(
                        &server,
                        federation_keys::claim_keys::v1::Request::new(users),
                    )
                    .await?;
                Ok((server, answer))
            }
        },
    )
    .await;
    for (server, answer) in answers {
        claimed.extend(
            answer
                .one_time_keys
                .into_iter()
                .filter(|(user, _)| user.server_name() == server),
        );
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
    let (changed, left) = services
        .rooms
        .device_list_changes(request.user(), from, to)?;
    Ok(get_key_changes::v3::Response::new(changed, left))
}

pub async fn upload_signing(
    services: Arc<Services>,
    request: Ruma<upload_signing_keys::v3::Request>,
) -> Result<upload_signing_keys::v3::Response> {
    let user = request.user();
    let b = &request.body;
    // Replacing an existing master key needs the password; the first upload
    // does not, nor does a bridge's (it has no password: v1.17).
    if request.appservice.is_none() && services.e2ee.cross_signing_key(user, MASTER)?.is_some() {
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
    edu::send_signing_key_update(&services, user).await?;
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
    let signer = request.user();
    let mut failures: BTreeMap<OwnedUserId, BTreeMap<String, upload_signatures::v3::Failure>> =
        BTreeMap::new();
    for (user, keys) in users {
        let user: OwnedUserId = user
            .as_str()
            .try_into()
            .map_err(|_| Error::bad_json("Invalid user ID."))?;
        for (key_id, signed) in keys.as_object().into_iter().flatten() {
            if let Err(e) = services
                .e2ee
                .add_signatures(signer, &user, key_id, signed)
                .await
            {
                let failure = serde_json::from_value(json!({
                    "errcode": "M_INVALID_SIGNATURE",
                    "error": e.to_string(),
                }))?;
                failures
                    .entry(user.clone())
                    .or_default()
                    .insert(key_id.clone(), failure);
                continue;
            }
            if !services.is_local(&user) {
                continue;
            }
            // Peers learn of new signatures as a change of the signed key.
            match <&ruma::DeviceId>::from(key_id.as_str()) {
                device if services.users.device(&user, device)?.is_some() => {
                    edu::send_device_update(&services, &user, device, false).await?
                }
                _ => edu::send_signing_key_update(&services, &user).await?,
            }
        }
    }
    let mut response = upload_signatures::v3::Response::new();
    response.failures = failures;
    Ok(response)
}

pub async fn send_to_device(
    services: Arc<Services>,
    request: Ruma<send_event_to_device::v3::Request>,
) -> Result<send_event_to_device::v3::Response> {
    let sender = request.user();
    let b = &request.body;
    let mut targets: Vec<(OwnedUserId, OwnedDeviceId, Value)> = Vec::new();
    let mut remote = Vec::new();
    for (user, devices) in &b.messages {
        for (target, content) in devices {
            let content = json_of(content)?;
            if !services.is_local(user) {
                remote.push((user.clone(), target.clone(), content));
                continue;
            }
            for device in edu::local_devices(&services, user, target)? {
                targets.push((user.clone(), device, content.clone()));
            }
        }
    }
    edu::send_to_device(&services, sender, &b.event_type.to_string(), remote).await?;
    services
        .e2ee
        .send_to_device(sender, &b.event_type.to_string(), targets)
        .await?;
    Ok(send_event_to_device::v3::Response::new())
}
