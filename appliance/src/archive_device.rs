//! The archive member's device in a running node: its crypto store (in
//! `archive-member/` of the data folder, sealed with a key derived from the
//! vault key), signed in by the node itself, talking to the node's own
//! router in process.

use std::{path::Path, sync::Arc};

use anyhow::{Context, Result};
use archipel_archive_member::{ArchiveMember, DeviceStore, Transport, TransportFuture};
use archipel_homeserver::Services;
use archipel_vault::Vault;
use axum::body::Body;
use http_body_util::BodyExt;
use tower::ServiceExt;

/// What the crypto store's key is derived for.
const STORE_KEY_PURPOSE: &str = "archive member crypto store";
/// The device's folder in the data folder.
pub const STORE_DIR: &str = "archive-member";
/// Where the decryption worker decrypts attachments before the vault
/// seals them: plaintext, so emptied at start and after every batch.
pub fn incoming_dir(data_dir: &Path) -> std::path::PathBuf {
    data_dir.join(STORE_DIR).join("incoming")
}

/// Starts the archive member's device, or `None` when the node has no
/// archive member.
pub async fn start(
    services: &Arc<Services>,
    router: axum::Router,
    vault: &Vault,
    data_dir: &Path,
) -> Result<Option<Arc<ArchiveMember>>> {
    let Some(user) = services.archive_member.clone() else {
        return Ok(None);
    };
    let dir = data_dir.join(STORE_DIR);
    let store = DeviceStore::open(&dir, &vault.derived_key(STORE_KEY_PURPOSE)).await?;
    // A fresh token each start, held only in memory: the account has no
    // password, and nothing outside the process can sign in as it.
    let session = services
        .users
        .login(
            &user,
            Some(store.device_id().to_owned()),
            Some(services.config.archive_member.display_name.clone()),
            false,
        )
        .await
        .context("signing in the archive member's device")?;
    let member = ArchiveMember::start(
        &user,
        store,
        session.access_token,
        Box::new(RouterTransport {
            router,
            // A sync full of to-device messages, or an attachment.
            max_response: (services.config.max_upload_size as usize).max(64 << 20) + (1 << 20),
        }),
    )
    .await?;
    Ok(Some(Arc::new(member)))
}

/// Requests go straight into the homeserver's router.
struct RouterTransport {
    router: axum::Router,
    /// Largest response body read.
    max_response: usize,
}

impl Transport for RouterTransport {
    fn send(&self, request: http::Request<bytes::Bytes>) -> TransportFuture<'_> {
        Box::pin(async move {
            let response = self
                .router
                .clone()
                .oneshot(request.map(Body::from))
                .await
                .map_err(|e| e.to_string())?;
            let (parts, body) = response.into_parts();
            let body = http_body_util::Limited::new(body, self.max_response)
                .collect()
                .await
                .map_err(|e| e.to_string())?
                .to_bytes();
            Ok(http::Response::from_parts(parts, body))
        })
    }
}

/// Rooms the archive member could not join go on record in the vault, as
/// a gap (`archive_member_refused`).
pub struct RefusedInVault(pub Arc<Vault>);

impl archipel_homeserver::archive_member::RefusedJoins for RefusedInVault {
    fn refused(&self, room_id: &ruma::RoomId, by: &ruma::UserId, reason: &str) {
        let (vault, room, by, reason) = (
            self.0.clone(),
            room_id.to_string(),
            by.to_string(),
            reason.to_owned(),
        );
        // The vault's write syncs: off the async threads.
        tokio::task::spawn_blocking(move || {
            if let Err(e) = vault.note_refused_join(&room, &by, &reason) {
                tracing::error!(%room, error = %e, "recording a room the archive member could not join");
            }
        });
    }
}
