//! Server-side room key backup endpoints.

use std::{collections::BTreeMap, sync::Arc};

use http::StatusCode;
use ruma::{
    UInt,
    api::{
        client::backup::{
            RoomKeyBackup, add_backup_keys, add_backup_keys_for_room, add_backup_keys_for_session,
            create_backup_version, delete_backup_keys, delete_backup_keys_for_room,
            delete_backup_keys_for_session, delete_backup_version, get_backup_info,
            get_backup_keys, get_backup_keys_for_room, get_backup_keys_for_session,
            get_latest_backup_info, update_backup_version,
        },
        error::{ErrorKind, WrongRoomKeysVersionErrorData},
    },
    serde::Raw,
};
use serde_json::Value;

use crate::{Error, Result, Services, ruma_wrapper::Ruma, service::key_backup::BackupKeys};

fn raw<T>(value: &Value) -> Raw<T> {
    crate::service::rooms::pdu::raw(value)
}

fn parse_version(version: &str) -> Result<u64> {
    version
        .parse()
        .map_err(|_| Error::not_found("Unknown backup version."))
}

/// Writes go only to the current version, as the spec requires.
fn current_version(services: &Services, user: &ruma::UserId, version: &str) -> Result<u64> {
    let requested = parse_version(version)?;
    match services.key_backup.latest(user)? {
        Some((latest, _)) if latest == requested => Ok(requested),
        Some((latest, _)) => Err(Error::Matrix {
            status: StatusCode::FORBIDDEN,
            kind: ErrorKind::WrongRoomKeysVersion(WrongRoomKeysVersionErrorData::new(
                latest.to_string(),
            )),
            message: "That is not the current backup version.".into(),
        }),
        None => Err(Error::not_found("No backup exists.")),
    }
}

fn etag_and_count(
    services: &Services,
    user: &ruma::UserId,
    version: u64,
) -> Result<(String, UInt)> {
    let meta = services.key_backup.get(user, version)?.unwrap_or_default();
    let count = services.key_backup.count(user, version)?;
    Ok((
        meta["etag"].as_u64().unwrap_or(0).to_string(),
        UInt::try_from(count).unwrap_or_default(),
    ))
}

fn sessions_json(
    sessions: &BTreeMap<String, Raw<ruma::api::client::backup::KeyBackupData>>,
) -> Result<BTreeMap<String, Value>> {
    sessions
        .iter()
        .map(|(id, data)| Ok((id.clone(), serde_json::from_str(data.json().get())?)))
        .collect()
}

/// A backup's algorithm as the spec requires it (`algorithm` and
/// `auth_data`): what is stored is read back into every answer about the
/// version, so anything else is refused here.
fn algorithm(raw: &Raw<ruma::api::client::backup::BackupAlgorithm>) -> Result<Value> {
    raw.deserialize()
        .map_err(|e| Error::bad_json(format!("The backup's algorithm is not valid: {e}")))?;
    Ok(serde_json::from_str(raw.json().get())?)
}

pub async fn create_version(
    services: Arc<Services>,
    request: Ruma<create_backup_version::v3::Request>,
) -> Result<create_backup_version::v3::Response> {
    let algorithm = algorithm(&request.body.algorithm)?;
    let version = services
        .key_backup
        .create(request.user(), algorithm)
        .await?;
    Ok(create_backup_version::v3::Response::new(
        version.to_string(),
    ))
}

pub async fn update_version(
    services: Arc<Services>,
    request: Ruma<update_backup_version::v3::Request>,
) -> Result<update_backup_version::v3::Response> {
    let algorithm = algorithm(&request.body.algorithm)?;
    services
        .key_backup
        .update(
            request.user(),
            parse_version(&request.body.version)?,
            algorithm,
        )
        .await?;
    Ok(update_backup_version::v3::Response::new())
}

pub async fn latest(
    services: Arc<Services>,
    request: Ruma<get_latest_backup_info::v3::Request>,
) -> Result<get_latest_backup_info::v3::Response> {
    let user = request.user();
    let (version, meta) = services
        .key_backup
        .latest(user)?
        .ok_or_else(|| Error::not_found("No backup exists."))?;
    let (etag, count) = etag_and_count(&services, user, version)?;
    Ok(get_latest_backup_info::v3::Response::new(
        raw(&meta["algorithm"]),
        count,
        etag,
        version.to_string(),
    ))
}

pub async fn info(
    services: Arc<Services>,
    request: Ruma<get_backup_info::v3::Request>,
) -> Result<get_backup_info::v3::Response> {
    let user = request.user();
    let version = parse_version(&request.body.version)?;
    let meta = services
        .key_backup
        .get(user, version)?
        .ok_or_else(|| Error::not_found("Unknown backup version."))?;
    let (etag, count) = etag_and_count(&services, user, version)?;
    Ok(get_backup_info::v3::Response::new(
        raw(&meta["algorithm"]),
        count,
        etag,
        version.to_string(),
    ))
}

pub async fn delete_version(
    services: Arc<Services>,
    request: Ruma<delete_backup_version::v3::Request>,
) -> Result<delete_backup_version::v3::Response> {
    services
        .key_backup
        .delete(request.user(), parse_version(&request.body.version)?)
        .await?;
    Ok(delete_backup_version::v3::Response::new())
}

async fn put(
    services: &Services,
    user: &ruma::UserId,
    version: &str,
    keys: BackupKeys,
) -> Result<(String, UInt)> {
    let version = current_version(services, user, version)?;
    services.key_backup.put_keys(user, version, keys).await?;
    etag_and_count(services, user, version)
}

pub async fn add_keys(
    services: Arc<Services>,
    request: Ruma<add_backup_keys::v3::Request>,
) -> Result<add_backup_keys::v3::Response> {
    let mut keys = BackupKeys::new();
    for (room, backup) in &request.body.rooms {
        keys.insert(room.to_string(), sessions_json(&backup.sessions)?);
    }
    let (etag, count) = put(&services, request.user(), &request.body.version, keys).await?;
    Ok(add_backup_keys::v3::Response::new(etag, count))
}

pub async fn add_room_keys(
    services: Arc<Services>,
    request: Ruma<add_backup_keys_for_room::v3::Request>,
) -> Result<add_backup_keys_for_room::v3::Response> {
    let keys = BackupKeys::from([(
        request.body.room_id.to_string(),
        sessions_json(&request.body.sessions)?,
    )]);
    let (etag, count) = put(&services, request.user(), &request.body.version, keys).await?;
    Ok(add_backup_keys_for_room::v3::Response::new(etag, count))
}

pub async fn add_session_key(
    services: Arc<Services>,
    request: Ruma<add_backup_keys_for_session::v3::Request>,
) -> Result<add_backup_keys_for_session::v3::Response> {
    let b = &request.body;
    let data: Value = serde_json::from_str(b.session_data.json().get())?;
    let keys = BackupKeys::from([(
        b.room_id.to_string(),
        BTreeMap::from([(b.session_id.clone(), data)]),
    )]);
    let (etag, count) = put(&services, request.user(), &b.version, keys).await?;
    Ok(add_backup_keys_for_session::v3::Response::new(etag, count))
}

pub async fn get_keys(
    services: Arc<Services>,
    request: Ruma<get_backup_keys::v3::Request>,
) -> Result<get_backup_keys::v3::Response> {
    let keys = services.key_backup.keys(
        request.user(),
        parse_version(&request.body.version)?,
        None,
        None,
    )?;
    let rooms = keys
        .into_iter()
        .filter_map(|(room, sessions)| {
            let room = room.as_str().try_into().ok()?;
            Some((
                room,
                RoomKeyBackup::new(sessions.iter().map(|(s, d)| (s.clone(), raw(d))).collect()),
            ))
        })
        .collect();
    Ok(get_backup_keys::v3::Response::new(rooms))
}

pub async fn get_room_keys(
    services: Arc<Services>,
    request: Ruma<get_backup_keys_for_room::v3::Request>,
) -> Result<get_backup_keys_for_room::v3::Response> {
    let b = &request.body;
    let keys = services.key_backup.keys(
        request.user(),
        parse_version(&b.version)?,
        Some(b.room_id.as_str()),
        None,
    )?;
    let sessions = keys
        .into_values()
        .flatten()
        .map(|(s, d)| (s, raw(&d)))
        .collect();
    Ok(get_backup_keys_for_room::v3::Response::new(sessions))
}

pub async fn get_session_key(
    services: Arc<Services>,
    request: Ruma<get_backup_keys_for_session::v3::Request>,
) -> Result<get_backup_keys_for_session::v3::Response> {
    let b = &request.body;
    let keys = services.key_backup.keys(
        request.user(),
        parse_version(&b.version)?,
        Some(b.room_id.as_str()),
        Some(&b.session_id),
    )?;
    let data = keys
        .into_values()
        .flatten()
        .next()
        .map(|(_, d)| d)
        .ok_or_else(|| Error::not_found("No key for that session."))?;
    Ok(get_backup_keys_for_session::v3::Response::new(raw(&data)))
}

pub async fn delete_keys(
    services: Arc<Services>,
    request: Ruma<delete_backup_keys::v3::Request>,
) -> Result<delete_backup_keys::v3::Response> {
    let user = request.user();
    let version = parse_version(&request.body.version)?;
    services
        .key_backup
        .delete_keys(user, version, None, None)
        .await?;
    let (etag, count) = etag_and_count(&services, user, version)?;
    Ok(delete_backup_keys::v3::Response::new(etag, count))
}

pub async fn delete_room_keys(
    services: Arc<Services>,
    request: Ruma<delete_backup_keys_for_room::v3::Request>,
) -> Result<delete_backup_keys_for_room::v3::Response> {
    let user = request.user();
    let version = parse_version(&request.body.version)?;
    services
        .key_backup
        .delete_keys(user, version, Some(request.body.room_id.as_str()), None)
        .await?;
    let (etag, count) = etag_and_count(&services, user, version)?;
    Ok(delete_backup_keys_for_room::v3::Response::new(etag, count))
}

pub async fn delete_session_key(
    services: Arc<Services>,
    request: Ruma<delete_backup_keys_for_session::v3::Request>,
) -> Result<delete_backup_keys_for_session::v3::Response> {
    let b = &request.body;
    let user = request.user();
    let version = parse_version(&b.version)?;
    services
        .key_backup
        .delete_keys(user, version, Some(b.room_id.as_str()), Some(&b.session_id))
        .await?;
    let (etag, count) = etag_and_count(&services, user, version)?;
    Ok(delete_backup_keys_for_session::v3::Response::new(
        etag, count,
    ))
}
