//! Completing an erasure outside the vault: after the vault destroys a
//! record's key, the homeserver's own copies of the event (and its media)
//! are purged, then the database is rewritten so no old value survives in
//! its files. Queued in the vault's batch, so a crash midway is finished at
//! the next start.

use anyhow::{Context, Result};
use archipel_homeserver::Services;
use archipel_vault::Vault;
use ruma::{EventId, MxcUri};

/// Purges what the vault has queued. Returns how many events were purged.
pub fn complete_purges(services: &Services, vault: &Vault) -> Result<usize> {
    let pending = vault.pending_purges()?;
    if pending.is_empty() {
        return Ok(0);
    }
    for purge in &pending {
        let event_id = <&EventId>::try_from(purge.event_id.as_str())
            .with_context(|| format!("queued purge of `{}`", purge.event_id))?;
        let media = services
            .rooms
            .erase_content(event_id, &purge.reference)
            .with_context(|| format!("erasing the homeserver's copy of {event_id}"))?;
        for uri in media {
            let Ok((server, media_id)) = <&MxcUri>::from(uri.as_str()).parts() else {
                continue;
            };
            if server == services.server_name() {
                services.media.delete(media_id)?;
            } else {
                // The copy this node fetched of a peer's file.
                services.media.delete_remote_copy(server, media_id)?;
            }
        }
    }
    services
        .store
        .purge_deleted()
        .context("rewriting the database without the erased content")?;
    vault
        .store()
        .purge_deleted()
        .context("rewriting the vault's database without the destroyed keys")?;
    // Done only once no file holds the old values: a crash before this
    // point purges (idempotently) again at the next start.
    for purge in &pending {
        vault.purge_done(&purge.event_id)?;
    }
    tracing::info!(
        events = pending.len(),
        "erased content purged from the homeserver"
    );
    Ok(pending.len())
}
