//! Decryption into the vault: the encrypted events the vault captured, and
//! the room keys the archive member's device received, brought together.
//!
//! Either can come first. An event captured before its key waits in the
//! vault as a pending decryption until the key arrives; a key that arrived
//! first is in the device's store when the event is captured. So the
//! worker looks at new pending events a moment after the capture pump
//! syncs (what is captured meanwhile joins them: it reads each session's
//! key once for many events, the vault imports it once, and one fsync
//! covers them all), and at the pending events of each session whose key
//! arrives. At start it looks at all of them once: keys may have
//! arrived while the node was down.
//!
//! An encrypted message's attachments (its `file`, its thumbnail's) are
//! fetched, checked against the hash the message names, decrypted into
//! `incoming` (in the device's folder, emptied at start and after every
//! batch) and sealed into the vault with the decryption record.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::Arc,
};

use anyhow::{Context, Result};
use archipel_archive_member::ArchiveMember;
use archipel_vault::{
    MediaSource, Vault,
    decryption::{Decryption, FoundKey, PendingDecryption},
};
use ruma::RoomId;
use serde_json::Value;
use tokio::sync::{Notify, mpsc, watch};

/// A session whose key the device just received: `(room, session ID)`.
pub type Session = (ruma::OwnedRoomId, String);

/// How many pending events one look takes at a time.
const PAGE: usize = 256;

/// How long the worker lets captures gather before it looks at them.
const GATHER: std::time::Duration = std::time::Duration::from_millis(100);

/// Runs until `stop`: decrypts what it can after each sync of captured
/// events (`captured`) and for each session whose key arrives (`keys`).
pub async fn run(
    vault: Arc<Vault>,
    device: Arc<ArchiveMember>,
    incoming: PathBuf,
    captured: Arc<Notify>,
    mut keys: mpsc::UnboundedReceiver<Vec<Session>>,
    mut stop: watch::Receiver<bool>,
) {
    let worker = Worker {
        vault,
        device,
        incoming,
    };
    // The last pending event looked at: everything after it is new.
    let mut cursor = None;
    loop {
        if let Err(e) = worker.look_at_new(&mut cursor).await {
            tracing::warn!(error = %format!("{e:#}"), "decrypting archived events");
        }
        tokio::select! {
            _ = captured.notified() => {
                // What the pump captures meanwhile joins this look: a
                // burst becomes one batch, one key read per session and
                // one sync.
                tokio::time::sleep(GATHER).await;
            }
            Some(sessions) = keys.recv() => {
                if let Err(e) = worker.look_at_sessions(sessions).await {
                    tracing::warn!(error = %format!("{e:#}"), "decrypting archived events of new room keys");
                }
            }
            // The guard `wait_for` returns is dropped inside, so the
            // future stays `Send`.
            _ = async { drop(stop.wait_for(|stop| *stop).await) } => return,
        }
    }
}

struct Worker {
    vault: Arc<Vault>,
    device: Arc<ArchiveMember>,
    /// Where attachments are decrypted before they are sealed.
    incoming: PathBuf,
}

impl Worker {
    async fn look_at_new(&self, cursor: &mut Option<u64>) -> Result<()> {
        loop {
            let page = self.vault.pending_decryptions(*cursor, PAGE)?;
            let Some(last) = page.last() else {
                return Ok(());
            };
            *cursor = Some(last.seq);
            self.decrypt(page).await?;
        }
    }

    async fn look_at_sessions(&self, sessions: Vec<Session>) -> Result<()> {
        for (room_id, session_id) in sessions {
            let pending = self
                .vault
                .pending_in_session(room_id.as_str(), &session_id)?;
            self.decrypt(pending).await?;
        }
        Ok(())
    }

    /// Asks the device for one key per session of the pending events (from
    /// the session's earliest pending index), has the vault decrypt them,
    /// fetches their attachments, and has the vault append the decryption
    /// records.
    async fn decrypt(&self, pending: Vec<PendingDecryption>) -> Result<()> {
        let mut by_session: BTreeMap<(String, String), Vec<PendingDecryption>> = BTreeMap::new();
        for event in pending {
            by_session
                .entry((event.room_id.clone(), event.session_id.clone()))
                .or_default()
                .push(event);
        }
        let mut keyed = Vec::new();
        for ((room_id, session_id), mut events) in by_session {
            let Ok(room_id) = RoomId::parse(&room_id) else {
                continue;
            };
            let Some(earliest) = events.iter().map(|e| e.message_index).min() else {
                continue;
            };
            let Some((key, from)) = self
                .device
                .session_key(&room_id, &session_id, earliest)
                .await?
            else {
                continue;
            };
            // Events before the first index the device holds stay pending.
            events.retain(|e| e.message_index >= from);
            keyed.push((events, key));
        }
        if keyed.is_empty() {
            return Ok(());
        }
        let vault = self.vault.clone();
        let decrypted = tokio::task::spawn_blocking(move || {
            let mut decrypted = Vec::new();
            for (events, key) in keyed {
                decrypted.extend(vault.decrypt_session(&events, key)?);
            }
            anyhow::Ok(decrypted)
        })
        .await??;
        let mut found = Vec::with_capacity(decrypted.len());
        for decryption in decrypted {
            let attachments = self.attachments(&decryption).await?;
            found.push(FoundKey {
                decryption,
                attachments,
            });
        }
        let vault = self.vault.clone();
        let appended = tokio::task::spawn_blocking(move || vault.record_decryptions(found)).await?;
        empty(&self.incoming)?;
        tracing::debug!(count = appended?.len(), "decryption records appended");
        Ok(())
    }

    /// The encrypted attachments of a decrypted message, decrypted into
    /// `incoming`. One that cannot be fetched or does not match its hash is
    /// logged and left out: the message's text is archived regardless.
    async fn attachments(&self, decryption: &Decryption) -> Result<Vec<MediaSource>> {
        let seq = decryption.seq();
        let plain: Value = serde_json::from_str(decryption.plaintext())?;
        let mut sources = Vec::new();
        for pointer in ["/content/file", "/content/info/thumbnail_file"] {
            let Some(file) = plain.pointer(pointer) else {
                continue;
            };
            let Some(mxc) = file["url"].as_str() else {
                continue;
            };
            std::fs::create_dir_all(&self.incoming)
                .with_context(|| format!("creating {}", self.incoming.display()))?;
            let path = self.incoming.join(format!("{seq}-{}", sources.len()));
            match self.device.download_attachment(file, &path).await {
                Ok(()) => sources.push(MediaSource {
                    mxc: mxc.to_owned(),
                    path,
                    decrypted: true,
                }),
                Err(e) => {
                    tracing::warn!(seq, %mxc, error = %e, "an encrypted attachment could not be archived");
                }
            }
        }
        Ok(sources)
    }
}

/// Removes the decrypted attachments in `dir` (sealed into the vault, or
/// left by a crash).
pub fn empty(dir: &Path) -> Result<()> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("removing {}", dir.display())),
    }
}
