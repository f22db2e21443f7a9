//! The records of the log. A record's stored bytes are its Merkle leaf: they
//! are hashed exactly as stored, never re-serialized.
//!
//! What stays in the clear is what retention, holds and export listings need
//! without the vault key (who, where, when, what kind). The content itself is
//! sealed.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The record's position in the log (its leaf index).
    pub seq: u64,
    /// When the vault captured it, in milliseconds since the Unix epoch.
    pub captured_ts: u64,
    pub entry: Entry,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Entry {
    /// A room event as the homeserver persisted it, before any redaction.
    Event(EventEntry),
    /// A step of a records procedure: a classification, a role, an exclusion
    /// request or decision, a legal hold. Who and what in the clear, the
    /// details (reasons, notes) sealed like an event.
    Procedure(ProcedureEntry),
    /// The content of record `erased_seq` was destroyed (its data key and
    /// media copies). Holds no personal data: only the decision's reference.
    Erasure(ErasureEntry),
    /// The plaintext of an encrypted event record, sealed, and where the
    /// Megolm session key that decrypts that record's ciphertext to it is.
    Decryption(DecryptionEntry),
    /// A Megolm session's key, sealed: what the decryption records of that
    /// session's events refer to. Kept as long as the log: without the
    /// ciphertext records it decrypts nothing, and an erasure shreds those.
    SessionKey(SessionKeyEntry),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecryptionEntry {
    /// The record of the encrypted event, as it was captured.
    pub ciphertext_seq: u64,
    pub room_id: String,
    pub event_id: String,
    pub sender: String,
    /// `{"plaintext": <the decrypted JSON text, exactly>}`, sealed with the
    /// record's data key. A record written before session key records
    /// (`key_seq` absent) holds the key here too, as `"session_key"`.
    pub sealed: String,
    /// The encrypted attachments of the message, decrypted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub media: Vec<MediaCopy>,
    /// The session key record whose key decrypts the ciphertext.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_seq: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionKeyEntry {
    pub room_id: String,
    pub session_id: String,
    /// The first message index the key decrypts.
    pub first_index: u32,
    /// The exported room key (as the archive member's device exported it,
    /// ratcheted to `first_index`), sealed with the record's data key.
    pub sealed: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcedureEntry {
    /// What happened, e.g. `request_exclusion`, `decide_exclusion`, `place_hold`.
    pub action: String,
    /// Who did it (a Matrix user ID, or `operator` for the node's console).
    pub actor: String,
    /// What it is about: a request or hold reference, a room or user ID.
    pub subject: String,
    /// The step's details as JSON, sealed with the record's data key.
    pub sealed: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErasureEntry {
    pub erased_seq: u64,
    /// The decision or destruction list that ordered it, e.g. `EX-000003`.
    pub reference: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventEntry {
    pub room_id: String,
    pub event_id: String,
    pub sender: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub origin_server_ts: u64,
    /// For a redaction: the event it redacts. The vault keeps that event's
    /// original; this record says who asked to hide it, and when.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redacts: Option<String>,
    /// The full event JSON, sealed with the record's data key (base64 of
    /// nonce and ciphertext).
    pub sealed: String,
    /// The media files the event references.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub media: Vec<MediaCopy>,
    /// For a peer's event the node soft-failed (in the room's graph, shown
    /// to nobody): why. Kept as evidence, never as a message anyone read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub soft_failed: Option<String>,
    /// For an event a bridge's user sent: the bridge (application
    /// service), by its registration's ID. Its provenance, as an import's
    /// is in its content.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bridge: Option<String>,
}

/// A file an event references, as the vault keeps it.
///
/// The vault holds one sealed copy of each file, however many records
/// reference it ([`crate::media`]); a record names it by its `mxc://` URI
/// and commits to its bytes through `sha256`. Records written before that
/// hold a copy of their own instead (`part`, `sealed_sha256`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediaCopy {
    /// The `mxc://` URI the event references.
    pub mxc: String,
    /// A record's own copy (older records): which sealed part holds it (1, 2, ...).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub part: u32,
    /// Size of the original bytes.
    pub size: u64,
    /// A record's own copy (older records): SHA-256 (base64) of the sealed
    /// file, so the leaf covers the copy.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sealed_sha256: String,
    /// SHA-256 (base64) of the file's bytes: the vault's one copy of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Whether these are the decrypted bytes of the encrypted file at `mxc`
    /// (an attachment of an encrypted message).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub decrypted: bool,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl Record {
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("records serialize")
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    pub fn event(&self) -> Option<&EventEntry> {
        match &self.entry {
            Entry::Event(event) => Some(event),
            _ => None,
        }
    }

    /// The media files the record references: an event's, or the
    /// decrypted attachments of a decryption record.
    pub fn media(&self) -> &[MediaCopy] {
        match &self.entry {
            Entry::Event(event) => &event.media,
            Entry::Decryption(decryption) => &decryption.media,
            Entry::Procedure(_) | Entry::Erasure(_) | Entry::SessionKey(_) => &[],
        }
    }

    /// The sealed part of the record, if it has one.
    pub fn sealed(&self) -> Option<&str> {
        match &self.entry {
            Entry::Event(event) => Some(&event.sealed),
            Entry::Procedure(step) => Some(&step.sealed),
            Entry::Decryption(decryption) => Some(&decryption.sealed),
            Entry::SessionKey(key) => Some(&key.sealed),
            Entry::Erasure(_) => None,
        }
    }
}
