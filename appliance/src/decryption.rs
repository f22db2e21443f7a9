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
    collections::{BTreeMap, HashMap},
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use anyhow::{Context, Result};
use archipel_archive_member::ArchiveMember;
use archipel_vault::{
    MediaSource, Vault,
    decryption::{Decryption, FoundKey, PendingDecryption},
    megolm::RoomKey,
};
use ruma::RoomId;
use tokio::sync::{Notify, mpsc, watch};

/// A session whose key the device just received: `(room, session ID)`.
pub type Session = (ruma::OwnedRoomId, String);

/// How many pending events one look takes at a time.
const PAGE: usize = 256;

/// How long the worker lets captures gather before it looks at them.
const GATHER: std::time::Duration = std::time::Duration::from_millis(100);

/// How many sessions' room keys the worker keeps imported between looks.
const KEPT_KEYS: usize = 64;

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
        keys_kept: Mutex::default(),
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
    /// The room keys of the sessions looked at last, imported: a chat's
    /// next messages are mostly of the same sessions, whose keys need not
    /// be read from the device's store and imported again every look.
    keys_kept: Mutex<KeysKept>,
}

/// Imported room keys by `(room, session)`, with when each was last used.
#[derive(Default)]
struct KeysKept {
    keys: HashMap<Session, (u64, RoomKey)>,
    uses: u64,
}

impl KeysKept {
    /// The key of `session`, taken out, if kept and it reaches back to
    /// `earliest`.
    fn take(&mut self, session: &Session, earliest: u32) -> Option<RoomKey> {
        let (_, key) = self.keys.remove(session)?;
        (key.first_index() <= earliest).then_some(key)
    }

    /// Keeps `key`, forgetting the least recently used beyond [`KEPT_KEYS`].
    fn keep(&mut self, session: Session, key: RoomKey) {
        self.uses += 1;
        self.keys.insert(session, (self.uses, key));
        if self.keys.len() > KEPT_KEYS
            && let Some(oldest) = self
                .keys
                .iter()
                .min_by_key(|(_, (used, _))| *used)
                .map(|(session, _)| session.clone())
        {
            self.keys.remove(&oldest);
        }
    }

    fn forget(&mut self, session: &Session) {
        self.keys.remove(session);
    }
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
            // The key that arrived may reach further back than the one kept.
            self.keys_kept
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .forget(&(room_id.clone(), session_id.clone()));
            let pending = self
                .vault
                .pending_in_session(room_id.as_str(), &session_id)?;
            self.decrypt(pending).await?;
        }
        Ok(())
    }

    /// Takes one key per session of the pending events (kept from an
    /// earlier look, or asked of the device, from the session's earliest
    /// pending index), has the vault decrypt them, fetches their
    /// attachments, and has the vault append the decryption records.
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
            let session = (room_id, session_id);
            let kept = self
                .keys_kept
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take(&session, earliest);
            let key = match kept {
                Some(key) => key,
                None => {
                    let Some(export) = self
                        .device
                        .session_key(&session.0, &session.1, earliest)
                        .await?
                    else {
                        continue;
                    };
                    match RoomKey::import(export) {
                        Ok(key) => key,
                        Err(e) => {
                            tracing::warn!(error = %e, "a session key could not be read; its events stay pending");
                            continue;
                        }
                    }
                }
            };
            // Events before the first index the key holds stay pending.
            events.retain(|e| e.message_index >= key.first_index());
            keyed.push((session, events, key));
        }
        if keyed.is_empty() {
            return Ok(());
        }
        let vault = self.vault.clone();
        let (decrypted, keys) = tokio::task::spawn_blocking(move || {
            let mut decrypted = Vec::new();
            let mut keys = Vec::with_capacity(keyed.len());
            for (session, events, mut key) in keyed {
                decrypted.extend(vault.decrypt_session(&events, &mut key)?);
                keys.push((session, key));
            }
            anyhow::Ok((decrypted, keys))
        })
        .await??;
        {
            let mut kept = self.keys_kept.lock().unwrap_or_else(|p| p.into_inner());
            for (session, key) in keys {
                kept.keep(session, key);
            }
        }
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
        let plain = decryption.event();
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

#[cfg(test)]
mod tests {
    use archipel_archive_member::matrix_sdk_crypto::vodozemac::megolm::{
        GroupSession, InboundGroupSession, SessionConfig,
    };
    use serde_json::json;

    use super::*;

    /// A new session's key, exported at `index`.
    fn new_key(index: u32) -> (Session, RoomKey) {
        let session = GroupSession::new(SessionConfig::version_1());
        let mut inbound =
            InboundGroupSession::new(&session.session_key(), SessionConfig::version_1());
        let export = json!({
            "algorithm": "m.megolm.v1.aes-sha2", "room_id": "!r:x", "session_id": session.session_id(),
            "session_key": inbound.export_at(index).expect("index").to_base64(),
            "sender_key": "unused", "sender_claimed_keys": {}, "forwarding_curve25519_key_chain": []
        });
        let id = (RoomId::parse("!r:x").expect("room"), session.session_id());
        (id, RoomKey::import(export).expect("a key"))
    }

    #[test]
    fn kept_keys_are_bounded_and_given_only_for_indexes_they_reach() {
        let mut kept = KeysKept::default();
        let (from_five, key) = new_key(5);
        kept.keep(from_five.clone(), key);
        assert!(
            kept.take(&from_five, 4).is_none(),
            "a key exported at 5 cannot decrypt 4"
        );
        assert!(kept.take(&from_five, 5).is_none(), "and was let go");

        let mut sessions: Vec<Session> = (0..KEPT_KEYS)
            .map(|_| {
                let (session, key) = new_key(0);
                kept.keep(session.clone(), key);
                session
            })
            .collect();
        // The first, used again, outlives the second.
        let again = kept.take(&sessions[0], 0).expect("kept");
        kept.keep(sessions[0].clone(), again);
        let (last, key) = new_key(0);
        kept.keep(last.clone(), key);
        sessions.push(last);
        assert_eq!(kept.keys.len(), KEPT_KEYS);
        assert!(kept.take(&sessions[1], 0).is_none(), "the least used went");
        assert!(kept.take(&sessions[0], 3).is_some());
        kept.forget(&sessions[2]);
        assert!(kept.take(&sessions[2], 0).is_none());
        assert!(kept.take(&sessions[KEPT_KEYS], 0).is_some());
    }
}
