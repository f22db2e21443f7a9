//! Decryption into the vault: the encrypted events the vault captured, and
//! the room keys the archive member's device received, brought together.
//!
//! Either can come first. An event captured before its key waits in the
//! vault as a pending decryption until the key arrives; a key that arrived
//! first is in the device's store when the event is captured. So the
//! worker looks at new pending events after every capture batch, and at
//! the pending events of each session whose key arrives. At start it looks
//! at all of them once: keys may have arrived while the node was down.

use std::sync::Arc;

use anyhow::Result;
use archipel_archive_member::ArchiveMember;
use archipel_vault::{Vault, decryption::PendingDecryption};
use ruma::RoomId;
use tokio::sync::{Notify, mpsc, watch};

/// A session whose key the device just received: `(room, session ID)`.
pub type Session = (ruma::OwnedRoomId, String);

/// How many pending events one look takes at a time.
const PAGE: usize = 256;

/// Runs until `stop`: decrypts what it can after each capture batch
/// (`captured`) and for each session whose key arrives (`keys`).
pub async fn run(
    vault: Arc<Vault>,
    device: Arc<ArchiveMember>,
    captured: Arc<Notify>,
    mut keys: mpsc::UnboundedReceiver<Vec<Session>>,
    mut stop: watch::Receiver<bool>,
) {
    // The last pending event looked at: everything after it is new.
    let mut cursor = None;
    loop {
        if let Err(e) = look_at_new(&vault, &device, &mut cursor).await {
            tracing::warn!(error = %format!("{e:#}"), "decrypting archived events");
        }
        tokio::select! {
            _ = captured.notified() => {}
            Some(sessions) = keys.recv() => {
                if let Err(e) = look_at_sessions(&vault, &device, sessions).await {
                    tracing::warn!(error = %format!("{e:#}"), "decrypting archived events of new room keys");
                }
            }
            // The guard `wait_for` returns is dropped inside, so the
            // future stays `Send`.
            _ = async { drop(stop.wait_for(|stop| *stop).await) } => return,
        }
    }
}

async fn look_at_new(
    vault: &Arc<Vault>,
    device: &ArchiveMember,
    cursor: &mut Option<u64>,
) -> Result<()> {
    loop {
        let page = vault.pending_decryptions(*cursor, PAGE)?;
        let Some(last) = page.last() else {
            return Ok(());
        };
        *cursor = Some(last.seq);
        decrypt(vault, device, page).await?;
    }
}

async fn look_at_sessions(
    vault: &Arc<Vault>,
    device: &ArchiveMember,
    sessions: Vec<Session>,
) -> Result<()> {
    for (room_id, session_id) in sessions {
        let pending = vault.pending_in_session(room_id.as_str(), &session_id)?;
        decrypt(vault, device, pending).await?;
    }
    Ok(())
}

/// Asks the device for the key of each pending event and has the vault
/// append the decryption records of those it holds.
async fn decrypt(
    vault: &Arc<Vault>,
    device: &ArchiveMember,
    pending: Vec<PendingDecryption>,
) -> Result<()> {
    let mut found = Vec::new();
    for event in pending {
        let Ok(room_id) = RoomId::parse(&event.room_id) else {
            continue;
        };
        if let Some(key) = device
            .session_key(&room_id, &event.session_id, event.message_index)
            .await?
        {
            found.push((event.seq, key));
        }
    }
    if found.is_empty() {
        return Ok(());
    }
    let vault = vault.clone();
    let appended = tokio::task::spawn_blocking(move || vault.record_decryptions(found)).await??;
    tracing::debug!(count = appended.len(), "decryption records appended");
    Ok(())
}
