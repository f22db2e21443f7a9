//! Decryption records: the plaintext of encrypted events, linked to the
//! ciphertext records they were decrypted from.
//!
//! Capture keeps an encrypted event exactly as the server received it, and
//! notes in the same batch which Megolm session and message index it needs
//! (a *pending* decryption). When the archive member's device holds that
//! session's key, [`Vault::record_decryptions`] decrypts the logged
//! ciphertext with it and appends a decryption record: the plaintext,
//! sealed, and the number of the session key record that holds the key,
//! sealed too. A session's key is logged once, the first time one of its
//! events is decrypted (again only if a key that reaches further back
//! decrypts an earlier event). The pending note goes in the same batch. A
//! pending decryption that never resolves is a gap, listed by
//! [`Vault::pending_decryptions`], never a silent one.
//!
//! Records written before session key records hold their session key
//! themselves, exported at their own event's index; they open and verify
//! as before.

use std::{collections::HashMap, sync::Arc};

use archipel_store::{Batch, key};
use base64::{Engine, engine::general_purpose::STANDARD as B64};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{
    Error, Result, Vault,
    log::META_SIZE,
    megolm::{self, SessionRef},
    now_ms,
    record::{DecryptionEntry, Entry, EventEntry, Record, SessionKeyEntry},
    seal::DataKey,
};

/// An encrypted event record still waiting for its room key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingDecryption {
    /// The encrypted event's record.
    pub seq: u64,
    pub room_id: String,
    pub event_id: String,
    pub sender: String,
    /// The sending device, as the event's content names it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    pub origin_server_ts: u64,
    pub session_id: String,
    pub message_index: u32,
}

/// An encrypted event record decrypted by the vault with a session key
/// the archive member's device exported ([`Vault::decrypt_session`]): what
/// a decryption record holds. Only the vault makes one, so the plaintext
/// it carries is the one the logged ciphertext decrypts to.
pub struct Decryption {
    pending: PendingDecryption,
    /// The room key that decrypted it, and the first index that key reaches.
    session_key: Arc<Value>,
    first_index: u32,
    plaintext: String,
    /// `plaintext`, parsed.
    event: Value,
}

impl Decryption {
    /// The encrypted event's record.
    pub fn seq(&self) -> u64 {
        self.pending.seq
    }

    /// The decrypted event JSON (`type`, `content`, `room_id`), as text.
    pub fn plaintext(&self) -> &str {
        &self.plaintext
    }

    /// The decrypted event, parsed.
    pub fn event(&self) -> &Value {
        &self.event
    }
}

/// A decryption, and the message's encrypted attachments decrypted.
pub struct FoundKey {
    pub decryption: Decryption,
    /// Its attachments' plaintext, checked against the hashes the message
    /// names: sealed into the vault with the decryption record.
    pub attachments: Vec<crate::MediaSource>,
}

/// What a decryption record seals (read back by [`decrypted_from`]).
#[derive(Serialize)]
struct SealedDetails<'a> {
    plaintext: &'a str,
}

/// A decryption record, opened.
#[derive(Clone, Debug)]
pub struct Decrypted {
    /// The decryption record's own sequence number.
    pub seq: u64,
    /// The decrypted event JSON (`type`, `content`, `room_id`), as text.
    pub plaintext: String,
    /// Where the exported room key that decrypts the ciphertext record is:
    /// in a session key record, or (an older record) in this one.
    pub session_key: SessionKeyAt,
}

/// Where a decryption record's session key is.
#[derive(Clone, Debug, PartialEq)]
pub enum SessionKeyAt {
    /// In session key record `seq` ([`Vault::open_session_key`]).
    Record(u64),
    /// In the decryption record itself, exported at its event's index.
    Own(Value),
}

/// The pending note of an encrypted event being captured, if it is a
/// Megolm message: written in the capture's own batch.
pub(crate) fn note_pending(
    vault: &Vault,
    batch: &mut Batch,
    seq: u64,
    entry: &EventEntry,
    event: &str,
) {
    if entry.event_type != "m.room.encrypted" {
        return;
    }
    let size = event.len();
    let Ok(event) = serde_json::from_str::<Value>(event) else {
        return;
    };
    let Some(SessionRef {
        session_id,
        message_index,
        device_id,
    }) = megolm::session_of(&event["content"])
    else {
        return;
    };
    let pending = PendingDecryption {
        seq,
        room_id: entry.room_id.clone(),
        event_id: entry.event_id.clone(),
        sender: entry.sender.clone(),
        device_id,
        origin_server_ts: entry.origin_server_ts,
        session_id,
        message_index,
    };
    let log = vault.log();
    batch.put(
        &log.session_index,
        session_key(&pending.room_id, &pending.session_id, seq),
        b"",
    );
    batch.put_json(&log.pending_decryptions, seq.to_be_bytes(), &pending);
    vault
        .recent_encrypted()
        .keep(seq, &pending.event_id, event, size);
}

/// Encrypted events just captured, kept for the decryption worker so that
/// it need not read back and open their records, which it would do for
/// every message of a chat: by record, with the event's ID (a record
/// number a failed write gave out is given out again). Bounded by the
/// events' size; one that falls out, or was kept before a restart, is read
/// from the log. Holds ciphertext only, and forgets an erased event.
#[derive(Default)]
pub(crate) struct RecentEncrypted {
    events: std::collections::BTreeMap<u64, (String, Value, usize)>,
    bytes: usize,
}

/// What [`RecentEncrypted`] holds at most, in bytes of event JSON: a few
/// seconds of a busy node's encrypted messages.
const RECENT_BYTES: usize = 1 << 20;

impl RecentEncrypted {
    /// Keeps event record `seq`, `size` bytes of JSON.
    fn keep(&mut self, seq: u64, event_id: &str, event: Value, size: usize) {
        if let Some((_, _, replaced)) = self.events.insert(seq, (event_id.to_owned(), event, size))
        {
            self.bytes -= replaced;
        }
        self.bytes += size;
        while self.bytes > RECENT_BYTES {
            let Some((_, (_, _, dropped))) = self.events.pop_first() else {
                break;
            };
            self.bytes -= dropped;
        }
    }

    /// Event record `seq`, if kept and still the event `event_id`.
    fn take(&mut self, seq: u64, event_id: &str) -> Option<Value> {
        let (kept_id, event, size) = self.events.remove(&seq)?;
        self.bytes -= size;
        (kept_id == event_id).then_some(event)
    }

    fn forget(&mut self, seq: u64) {
        if let Some((_, _, size)) = self.events.remove(&seq) {
            self.bytes -= size;
        }
    }
}

/// Drops the pending note of event record `seq`, if it has one, in
/// `batch`: for an erased event, whose key must decrypt nothing later.
pub(crate) fn forget_pending(vault: &Vault, batch: &mut Batch, seq: u64) -> Result<()> {
    vault.recent_encrypted().forget(seq);
    if let Some(pending) = vault.pending_decryption(seq)? {
        let log = vault.log();
        batch.delete(&log.pending_decryptions, seq.to_be_bytes());
        batch.delete(&log.session_index, session_key_of(&pending));
    }
    Ok(())
}

fn session_key(room_id: &str, session_id: &str, seq: u64) -> Vec<u8> {
    key::with_u64(key::key([room_id.as_bytes(), session_id.as_bytes()]), seq)
}

impl Vault {
    /// Pending decryptions after record `after` (all with `None`), in log
    /// order, at most `limit`.
    pub fn pending_decryptions(
        &self,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<PendingDecryption>> {
        let from = after.map_or(0, |seq| seq + 1);
        let mut out = Vec::new();
        for row in self
            .log()
            .pending_decryptions
            .scan_from(from.to_be_bytes().to_vec(), Vec::new())
            .take(limit)
        {
            let (_, value) = row?;
            out.push(decode_pending(&value)?);
        }
        Ok(out)
    }

    /// How many encrypted events wait for their key.
    pub fn pending_decryption_count(&self) -> Result<u64> {
        let mut count = 0;
        for row in self.log().pending_decryptions.iter() {
            row?;
            count += 1;
        }
        Ok(count)
    }

    /// Event record `seq`'s pending decryption, if it waits for its key.
    pub fn pending_decryption(&self, seq: u64) -> Result<Option<PendingDecryption>> {
        self.log()
            .pending_decryptions
            .get(seq.to_be_bytes())?
            .map(|value| decode_pending(&value))
            .transpose()
    }

    /// How many encrypted events have their decryption record.
    pub fn decryption_count(&self) -> Result<u64> {
        let mut count = 0;
        for row in self.log().decryptions.iter() {
            row?;
            count += 1;
        }
        Ok(count)
    }

    /// The pending decryptions of one Megolm session.
    pub fn pending_in_session(
        &self,
        room_id: &str,
        session_id: &str,
    ) -> Result<Vec<PendingDecryption>> {
        let prefix = key::prefix([room_id.as_bytes(), session_id.as_bytes()]);
        let mut out = Vec::new();
        for row in self.log().session_index.scan_prefix(prefix) {
            let (k, _) = row?;
            let Some((_, seq)) = key::split_last_u64(&k) else {
                continue;
            };
            if let Some(value) = self.log().pending_decryptions.get(seq.to_be_bytes())? {
                out.push(decode_pending(&value)?);
            }
        }
        Ok(out)
    }

    /// The decryption record of event record `seq`, if it has one.
    pub fn decryption_of(&self, seq: u64) -> Result<Option<u64>> {
        Ok(self.log().decryptions.get_u64(seq.to_be_bytes())?)
    }

    /// Opens decryption record `seq`. Requires the vault key.
    pub fn open_decryption(&self, seq: u64) -> Result<Decrypted> {
        let record = self.log().record(seq)?;
        let Entry::Decryption(entry) = &record.entry else {
            return Err(Error::NotFound(format!(
                "record {seq} is not a decryption record"
            )));
        };
        let sealed = self.open_sealed(seq, &entry.sealed)?;
        decrypted_from(seq, entry, sealed)
    }

    /// The exported room key decryption record `seq` refers to in session
    /// key record `key_seq`, and that record's data key. Requires the vault
    /// key.
    pub fn open_session_key(&self, key_seq: u64, seq: u64) -> Result<(Value, DataKey)> {
        let record = self.log().record(key_seq)?;
        let Entry::SessionKey(key_entry) = &record.entry else {
            return Err(not_a_key_record(seq, key_seq));
        };
        if key_seq >= seq {
            return Err(not_a_key_record(seq, key_seq));
        }
        // Never erased: its loss leaves the decryption unverifiable.
        let data_key = self.data_key(key_seq).map_err(|e| match e {
            Error::Erased { .. } => Error::Corrupt(format!(
                "session key record {key_seq}, which decryption record {seq} needs, is erased"
            )),
            e => e,
        })?;
        let export = crate::open_sealed_with(&data_key, key_seq, &key_entry.sealed)?;
        Ok((export, data_key))
    }

    /// Decrypts the pending events `pending`, all of one session, with
    /// `key` (that session's room key, imported from the archive member's
    /// device's export: the caller may keep it for the session's next
    /// events), checking that each plaintext belongs to its room. An event
    /// no longer pending (decrypted already, erased) is left out, as is one
    /// the key does not decrypt (logged; it stays pending).
    pub fn decrypt_session(
        &self,
        pending: &[PendingDecryption],
        key: &mut megolm::RoomKey,
    ) -> Result<Vec<Decryption>> {
        let mut in_order: Vec<&PendingDecryption> = pending.iter().collect();
        in_order.sort_by_key(|p| p.message_index);
        let (session_key, first_index) = (key.export(), key.first_index());
        let mut decrypted = Vec::with_capacity(pending.len());
        for pending in in_order {
            let recent = self.recent_encrypted().take(pending.seq, &pending.event_id);
            let event = match recent.map_or_else(|| self.open_event(pending.seq), Ok) {
                Ok(event) => event,
                Err(Error::Erased { .. }) => continue,
                Err(e) => return Err(e),
            };
            let (plaintext, event) = match key.decrypt_parsed(&event) {
                Ok(decrypted) => decrypted,
                Err(e) => {
                    tracing::warn!(seq = pending.seq, event_id = %pending.event_id, error = %e,
                        "a session key did not decrypt an archived event; it stays pending");
                    continue;
                }
            };
            decrypted.push(Decryption {
                pending: pending.clone(),
                session_key: Arc::clone(&session_key),
                first_index,
                plaintext,
                event,
            });
        }
        Ok(decrypted)
    }

    /// Appends a decryption record for each of `found`, in one durable
    /// batch, and a session key record before the first of a session whose
    /// key the log does not hold yet (or not as far back); each such event
    /// is no longer pending. One that stopped pending meanwhile (erased,
    /// say) is skipped. Returns the sequence numbers of the decryption
    /// records appended.
    pub fn record_decryptions(&self, found: Vec<FoundKey>) -> Result<Vec<u64>> {
        let mut writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let mut frontier = writer.frontier.clone();
        let mut batch = Batch::new();
        let mut media = crate::media::BatchMedia::default();
        let mut appended = Vec::new();
        // The session key records this batch can refer to, by session: the
        // first index each reaches, and where it is.
        let mut key_records: HashMap<(String, String), Option<(u32, u64)>> = HashMap::new();
        let now = now_ms();
        // Checked under the writer's lock: an erasure comes first or sees
        // the record.
        let still_pending = self.log().pending_decryptions.get_many(
            &found
                .iter()
                .map(|f| f.decryption.pending.seq.to_be_bytes())
                .collect::<Vec<_>>(),
        )?;
        for (
            FoundKey {
                decryption:
                    Decryption {
                        pending,
                        session_key,
                        first_index,
                        plaintext,
                        ..
                    },
                attachments,
            },
            still_pending,
        ) in found.into_iter().zip(still_pending)
        {
            let ciphertext_seq = pending.seq;
            if still_pending.is_none() {
                continue;
            }
            let session = (pending.room_id.clone(), pending.session_id.clone());
            let logged = match key_records.get(&session) {
                Some(logged) => *logged,
                None => {
                    let logged = self.session_key_record(&session.0, &session.1)?;
                    key_records.insert(session.clone(), logged);
                    logged
                }
            };
            let key_seq = match logged {
                Some((reaches, key_seq)) if reaches <= pending.message_index => key_seq,
                _ => {
                    let key_seq = frontier.size();
                    self.append_session_key(
                        &mut batch,
                        &mut frontier,
                        now,
                        &session,
                        first_index,
                        &session_key,
                    );
                    key_records.insert(session, Some((first_index, key_seq)));
                    key_seq
                }
            };
            let seq = frontier.size();
            let mut copies = Vec::new();
            for source in &attachments {
                copies.push(self.store_media(&mut batch, seq, source, &mut media)?);
            }
            let key = DataKey::generate();
            let plain = serde_json::to_vec(&SealedDetails {
                plaintext: &plaintext,
            })
            .expect("JSON values serialize");
            let record = Record {
                seq,
                captured_ts: now,
                entry: Entry::Decryption(DecryptionEntry {
                    ciphertext_seq,
                    room_id: pending.room_id.clone(),
                    event_id: pending.event_id.clone(),
                    sender: pending.sender.clone(),
                    sealed: B64.encode(key.seal(&plain, seq, 0)),
                    media: copies,
                    key_seq: Some(key_seq),
                }),
            };
            self.append(&mut batch, &mut frontier, &record, Some(&key));
            let log = self.log();
            batch.put(
                &log.decryptions,
                ciphertext_seq.to_be_bytes(),
                seq.to_be_bytes(),
            );
            batch.put(
                &log.room_index,
                crate::log::Log::room_key(&pending.room_id, seq),
                b"",
            );
            batch.delete(&log.pending_decryptions, ciphertext_seq.to_be_bytes());
            batch.delete(&log.session_index, session_key_of(&pending));
            appended.push(seq);
        }
        if appended.is_empty() {
            return Ok(appended);
        }
        batch.put(&self.log().meta, META_SIZE, frontier.size().to_be_bytes());
        crate::sync_files(&self.media_dir.join(crate::media::BLOB_DIR), &media.sealed)?;
        let written = self.store().write(batch)?;
        writer.frontier = frontier;
        self.checkpoint_if_due(&mut writer, false)?;
        drop(writer);
        // Synced once the writer's lock is released, as capture does: a
        // capture meanwhile shares this fsync rather than wait behind it.
        self.store().sync(written)?;
        Ok(appended)
    }

    /// The session key record of `session` in `room_id` that reaches
    /// furthest back, if the log holds one: (first index, record).
    fn session_key_record(&self, room_id: &str, session_id: &str) -> Result<Option<(u32, u64)>> {
        let Some(value) = self
            .log()
            .session_keys
            .get(key::key([room_id.as_bytes(), session_id.as_bytes()]))?
        else {
            return Ok(None);
        };
        let (index, seq) = value
            .split_first_chunk::<4>()
            .and_then(|(index, seq)| Some((*index, <[u8; 8]>::try_from(seq).ok()?)))
            .ok_or_else(|| Error::Corrupt(format!("the session key entry of {session_id}")))?;
        Ok(Some((u32::from_be_bytes(index), u64::from_be_bytes(seq))))
    }

    /// Appends a session key record for `session` (room, session),
    /// reaching from `first_index`, in `batch`; it becomes the session's
    /// record to refer to.
    fn append_session_key(
        &self,
        batch: &mut Batch,
        frontier: &mut crate::merkle::Frontier,
        now: u64,
        (room_id, session_id): &(String, String),
        first_index: u32,
        export: &Value,
    ) {
        let seq = frontier.size();
        let key = DataKey::generate();
        let plain = serde_json::to_vec(export).expect("JSON values serialize");
        let record = Record {
            seq,
            captured_ts: now,
            entry: Entry::SessionKey(SessionKeyEntry {
                room_id: room_id.clone(),
                session_id: session_id.clone(),
                first_index,
                sealed: B64.encode(key.seal(&plain, seq, 0)),
            }),
        };
        self.append(batch, frontier, &record, Some(&key));
        let mut value = first_index.to_be_bytes().to_vec();
        value.extend_from_slice(&seq.to_be_bytes());
        batch.put(
            &self.log().session_keys,
            key::key([room_id.as_bytes(), session_id.as_bytes()]),
            value,
        );
    }
}

impl Vault {
    /// Decrypts the ciphertext record of each decryption record in
    /// `decryptions` (from [`crate::verify::verify`]'s report) with the
    /// session key it holds, and names each whose plaintext differs. Pairs
    /// with an erased side are skipped: their content is gone on purpose.
    pub fn verify_decryptions(
        &self,
        decryptions: &[(u64, u64)],
    ) -> Result<Vec<crate::verify::Finding>> {
        let mut findings = Vec::new();
        for &(seq, ciphertext_seq) in decryptions {
            let mismatch = |reason: String| crate::verify::Finding::DecryptionMismatch {
                seq,
                ciphertext_seq,
                reason,
            };
            if ciphertext_seq >= seq {
                findings.push(mismatch("it names a later record".into()));
                continue;
            }
            let decrypted = match self.open_decryption(seq) {
                Ok(decrypted) => decrypted,
                Err(Error::Erased { .. }) => continue,
                Err(e) => {
                    findings.push(mismatch(e.to_string()));
                    continue;
                }
            };
            let event = match self.open_event(ciphertext_seq) {
                Ok(event) => event,
                Err(Error::Erased { .. }) => continue,
                Err(e) => {
                    findings.push(mismatch(e.to_string()));
                    continue;
                }
            };
            let session_key = match decrypted.session_key {
                SessionKeyAt::Own(key) => key,
                SessionKeyAt::Record(key_seq) => match self.open_session_key(key_seq, seq) {
                    Ok((key, _)) => key,
                    Err(e) => {
                        findings.push(mismatch(e.to_string()));
                        continue;
                    }
                },
            };
            match megolm::decrypt(&event, &session_key) {
                Ok(plaintext) if plaintext == decrypted.plaintext => {}
                Ok(_) => findings.push(mismatch(
                    "its session key decrypts the ciphertext to another plaintext".into(),
                )),
                Err(e) => findings.push(mismatch(e.to_string())),
            }
        }
        Ok(findings)
    }
}

fn session_key_of(pending: &PendingDecryption) -> Vec<u8> {
    session_key(&pending.room_id, &pending.session_id, pending.seq)
}

fn decode_pending(value: &[u8]) -> Result<PendingDecryption> {
    serde_json::from_slice(value)
        .map_err(|e| Error::Corrupt(format!("a pending decryption note: {e}")))
}

/// Decryption record `seq` (`entry`), its sealed details read.
pub(crate) fn decrypted_from(
    seq: u64,
    entry: &DecryptionEntry,
    mut sealed: Value,
) -> Result<Decrypted> {
    let plaintext = match sealed["plaintext"].take() {
        Value::String(text) => text,
        _ => {
            return Err(Error::Corrupt(format!(
                "decryption record {seq} holds no plaintext"
            )));
        }
    };
    let session_key = match entry.key_seq {
        Some(key_seq) => SessionKeyAt::Record(key_seq),
        None => SessionKeyAt::Own(sealed["session_key"].take()),
    };
    Ok(Decrypted {
        seq,
        plaintext,
        session_key,
    })
}

/// Decryption record `seq` names record `key_seq` as its session key
/// record, which it is not (or not an earlier one).
pub(crate) fn not_a_key_record(seq: u64, key_seq: u64) -> Error {
    Error::Corrupt(format!(
        "decryption record {seq} names record {key_seq} as its session key record, which it is not"
    ))
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use vodozemac::megolm::{GroupSession, InboundGroupSession, SessionConfig};

    use super::*;
    use crate::{CapturedEvent, CheckpointPolicy, columns::COLUMNS, seal::VaultKey};

    const ROOM: &str = "!room:test.example";

    fn open(dir: &std::path::Path) -> Vault {
        let options = archipel_store::StoreOptions::default();
        let store = archipel_store::Store::open(&dir.join("db"), COLUMNS, &options).expect("store");
        let key = VaultKey::load_or_generate(&dir.join("vault.key")).expect("key");
        Vault::open(
            store,
            &dir.join("vault"),
            key,
            ed25519_dalek::SigningKey::from_bytes(&[7; 32]),
            "test.example/archipel-vault".into(),
            CheckpointPolicy {
                every_records: 1000,
                every: std::time::Duration::from_secs(3600),
            },
        )
        .expect("vault")
    }

    fn export(inbound: &mut InboundGroupSession) -> Value {
        json!({
            "algorithm": megolm::MEGOLM_V1, "room_id": ROOM, "session_id": inbound.session_id(),
            "session_key": inbound.export_at(0).expect("index").to_base64(),
        })
    }

    /// Appends a decryption record as the vault wrote them before session
    /// key records: the session key sealed in the record itself.
    fn append_with_own_key(vault: &Vault, pending: &PendingDecryption, plain: &str, key: &Value) {
        let mut writer = vault.writer.lock().expect("lock");
        let mut frontier = writer.frontier.clone();
        let mut batch = Batch::new();
        let seq = frontier.size();
        let data_key = DataKey::generate();
        let sealed = json!({ "plaintext": plain, "session_key": key }).to_string();
        let record = Record {
            seq,
            captured_ts: now_ms(),
            entry: Entry::Decryption(DecryptionEntry {
                ciphertext_seq: pending.seq,
                room_id: pending.room_id.clone(),
                event_id: pending.event_id.clone(),
                sender: pending.sender.clone(),
                sealed: B64.encode(data_key.seal(sealed.as_bytes(), seq, 0)),
                media: Vec::new(),
                key_seq: None,
            }),
        };
        vault.append(&mut batch, &mut frontier, &record, Some(&data_key));
        let log = vault.log();
        batch.put(
            &log.decryptions,
            pending.seq.to_be_bytes(),
            seq.to_be_bytes(),
        );
        batch.put(&log.room_index, crate::log::Log::room_key(ROOM, seq), b"");
        batch.delete(&log.pending_decryptions, pending.seq.to_be_bytes());
        batch.delete(&log.session_index, session_key_of(pending));
        batch.put(&log.meta, META_SIZE, frontier.size().to_be_bytes());
        let written = vault.store().write(batch).expect("write");
        vault.store().sync(written).expect("sync");
        writer.frontier = frontier;
    }

    #[test]
    fn records_that_hold_their_own_session_key_still_open_verify_and_export() {
        let dir = tempfile::tempdir().expect("tempdir");
        let vault = open(dir.path());
        let mut session = GroupSession::new(SessionConfig::version_1());
        let mut inbound =
            InboundGroupSession::new(&session.session_key(), SessionConfig::version_1());
        let mut plaintexts = Vec::new();
        let mut events = Vec::new();
        for n in 0..2u64 {
            let plain = json!({ "type": "m.room.message", "room_id": ROOM,
                                "content": { "msgtype": "m.text", "body": format!("old {n}") } })
            .to_string();
            let event = json!({
                "event_id": format!("$old{n}"), "room_id": ROOM, "sender": "@a:test.example",
                "type": "m.room.encrypted", "origin_server_ts": 1_700_000_000_000u64 + n,
                "content": { "algorithm": megolm::MEGOLM_V1, "session_id": session.session_id(),
                             "ciphertext": session.encrypt(&plain).to_base64(), "device_id": "DEV" },
            });
            events.push(CapturedEvent {
                position: n + 1,
                event: serde_json::value::to_raw_value(&event).expect("JSON"),
                media: Vec::new(),
                soft_failed: None,
                bridge: None,
            });
            plaintexts.push(plain);
        }
        vault.capture(events).expect("capture");
        let pending = vault.pending_decryptions(None, 10).expect("pending");
        let key = export(&mut inbound);
        append_with_own_key(&vault, &pending[0], &plaintexts[0], &key);
        // The second holds the key of another session: verify must say so.
        let mut other = InboundGroupSession::new(
            &GroupSession::new(SessionConfig::version_1()).session_key(),
            SessionConfig::version_1(),
        );
        append_with_own_key(&vault, &pending[1], &plaintexts[1], &export(&mut other));

        let first = vault
            .decryption_of(pending[0].seq)
            .expect("index")
            .expect("one");
        let opened = vault.open_decryption(first).expect("opens");
        assert_eq!(opened.plaintext, plaintexts[0]);
        assert_eq!(opened.session_key, SessionKeyAt::Own(key));

        let report = crate::verify::verify(
            vault.log(),
            &dir.path().join("vault/media"),
            &ed25519_dalek::SigningKey::from_bytes(&[7; 32]).verifying_key(),
            |_, _| {},
        )
        .expect("verify runs");
        assert!(report.ok(), "{:?}", report.findings);
        let findings = vault
            .verify_decryptions(&report.decryptions)
            .expect("checks");
        let second = vault
            .decryption_of(pending[1].seq)
            .expect("index")
            .expect("one");
        assert!(
            matches!(findings.as_slice(),
                [crate::verify::Finding::DecryptionMismatch { seq, .. }] if *seq == second),
            "{findings:?}"
        );

        vault.checkpoint().expect("checkpoint");
        let out = dir.path().join("export");
        let scope = crate::export::ExportScope {
            room: Some(ROOM.into()),
            ..Default::default()
        };
        let summary = vault.export(&scope, &out, |_, _| {}).expect("exports");
        assert_eq!(summary.decrypted, 2);
        let checked = crate::export::check::verify_export(&out, None).expect("checks");
        // The first checks; the second's key is not its ciphertext's.
        let problems = &checked.problems;
        assert!(
            problems.iter().all(|p| !p.contains("line 1:")),
            "{problems:?}"
        );
        assert!(
            problems
                .iter()
                .any(|p| p.contains(&format!("record {second}: the session key is for"))),
            "{problems:?}"
        );
    }

    #[test]
    fn recent_encrypted_events_are_bounded_and_given_only_to_their_own_id() {
        let mut recent = RecentEncrypted::default();
        recent.keep(1, "$a", json!({ "n": 1 }), 100);
        assert_eq!(
            recent.take(1, "$other"),
            None,
            "a record number given out again"
        );
        assert_eq!(recent.take(1, "$a"), None, "taken once only");
        recent.keep(1, "$a", json!({ "n": 1 }), 100);
        assert_eq!(recent.take(1, "$a"), Some(json!({ "n": 1 })));
        assert_eq!(recent.bytes, 0);

        let half = RECENT_BYTES / 2;
        for seq in 0..4 {
            recent.keep(seq, "$e", json!(seq), half);
        }
        assert_eq!(recent.bytes, RECENT_BYTES);
        assert_eq!(recent.take(0, "$e"), None, "the oldest fell out");
        assert_eq!(recent.take(1, "$e"), None);
        recent.forget(2);
        assert_eq!(recent.take(2, "$e"), None, "an erased event is forgotten");
        assert_eq!(recent.take(3, "$e"), Some(json!(3)));
        assert_eq!(recent.bytes, 0);
    }
}
