//! Megolm, as far as the vault needs it: which session and message index
//! an encrypted event names, and its decryption with a session key the
//! archive member's device exported. The decryption is vodozemac's (the
//! library every matrix-sdk client decrypts with); the vault only checks
//! that what comes out belongs where it claims to.
//!
//! The log holds the exported session key beside the plaintext (in a
//! session key record the decryption record names, or in an older
//! decryption record itself), so anyone with the vault key can decrypt
//! the logged ciphertext again and see that the plaintext was not
//! substituted: [`decrypt`] is what capture and `vault verify` both run.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::Value;
use vodozemac::megolm::{ExportedSessionKey, InboundGroupSession, MegolmMessage, SessionConfig};

/// The one algorithm room messages are encrypted with.
pub const MEGOLM_V1: &str = "m.megolm.v1.aes-sha2";

/// What an `m.room.encrypted` event with Megolm content names: the
/// session, and where in it the message is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionRef {
    pub session_id: String,
    pub message_index: u32,
    /// The sending device as the content names it (deprecated, but sent by
    /// every current client): for the list of events whose key never came.
    pub device_id: Option<String>,
}

#[derive(Deserialize)]
struct EncryptedContent {
    algorithm: String,
    session_id: Option<String>,
    ciphertext: Option<Value>,
    device_id: Option<String>,
}

/// The session an encrypted event's content names, or `None` when it is
/// not a Megolm message (another algorithm, a malformed content).
pub fn session_of(content: &Value) -> Option<SessionRef> {
    let content: EncryptedContent = serde_json::from_value(content.clone()).ok()?;
    if content.algorithm != MEGOLM_V1 {
        return None;
    }
    let message = MegolmMessage::from_base64(content.ciphertext?.as_str()?).ok()?;
    Some(SessionRef {
        session_id: content.session_id?,
        message_index: message.message_index(),
        device_id: content.device_id,
    })
}

/// An exported room key, as matrix-sdk-crypto writes one (the fields the
/// vault checks; the rest stays in the sealed record as it came).
#[derive(Deserialize)]
struct ExportedRoomKey {
    algorithm: String,
    room_id: String,
    session_id: String,
    session_key: String,
}

/// Why a ciphertext did not decrypt to a plaintext of its own room.
#[derive(Debug, thiserror::Error)]
pub enum DecryptError {
    #[error("the event is not a Megolm message")]
    NotMegolm,
    #[error("the session key is not an exported room key: {0}")]
    BadKey(String),
    #[error("the session key is for {0}, not for this event's room and session")]
    OtherSession(String),
    #[error("Megolm decryption failed: {0}")]
    Megolm(String),
    #[error("the plaintext is not JSON naming this room: {0}")]
    BadPlaintext(String),
}

/// Decrypts `event` (an `m.room.encrypted` event as captured) with
/// `session_key` (an exported room key). Returns the plaintext exactly as
/// it was encrypted: JSON text that names the event's room.
pub fn decrypt(event: &Value, session_key: &Value) -> Result<String, DecryptError> {
    RoomKey::import(session_key.clone())?.decrypt(event)
}

/// One session's exported room key, imported once: it decrypts that
/// session's events from its first index on, and gives the export it was
/// imported from (what the session key record seals). Events taken in
/// index order cost one ratchet step each.
pub struct RoomKey {
    /// The export as the device wrote it.
    export: Arc<Value>,
    room_id: String,
    session_id: String,
    session: InboundGroupSession,
}

impl RoomKey {
    /// Imports an exported room key.
    pub fn import(export: Value) -> Result<Self, DecryptError> {
        let key = ExportedRoomKey::deserialize(&export)
            .map_err(|e| DecryptError::BadKey(e.to_string()))?;
        if key.algorithm != MEGOLM_V1 {
            return Err(DecryptError::OtherSession(format!(
                "session {} in {}",
                key.session_id, key.room_id
            )));
        }
        let exported = ExportedSessionKey::from_base64(&key.session_key)
            .map_err(|e| DecryptError::BadKey(e.to_string()))?;
        Ok(Self {
            export: Arc::new(export),
            room_id: key.room_id,
            session_id: key.session_id,
            session: InboundGroupSession::import(&exported, SessionConfig::version_1()),
        })
    }

    /// Decrypts `event`, which must be of this key's room and session.
    pub fn decrypt(&mut self, event: &Value) -> Result<String, DecryptError> {
        self.decrypt_parsed(event).map(|(plaintext, _)| plaintext)
    }

    /// [`RoomKey::decrypt`], with the plaintext also parsed (its room is
    /// checked on the parsed JSON, which the caller need not parse again).
    pub fn decrypt_parsed(&mut self, event: &Value) -> Result<(String, Value), DecryptError> {
        let room_id = event["room_id"].as_str().unwrap_or_default();
        let content = &event["content"];
        if content["algorithm"] != MEGOLM_V1 {
            return Err(DecryptError::NotMegolm);
        }
        let ciphertext = content["ciphertext"]
            .as_str()
            .ok_or(DecryptError::NotMegolm)?;
        if self.room_id != room_id || content["session_id"] != self.session_id.as_str() {
            return Err(DecryptError::OtherSession(format!(
                "session {} in {}",
                self.session_id, self.room_id
            )));
        }
        let message = MegolmMessage::from_base64(ciphertext)
            .map_err(|e| DecryptError::Megolm(e.to_string()))?;
        let decrypted = self
            .session
            .decrypt(&message)
            .map_err(|e| DecryptError::Megolm(e.to_string()))?;
        let plaintext = String::from_utf8(decrypted.plaintext)
            .map_err(|e| DecryptError::BadPlaintext(e.to_string()))?;
        // A message re-sent into another room decrypts, but is not this room's.
        let named: Value = serde_json::from_str(&plaintext)
            .map_err(|e| DecryptError::BadPlaintext(e.to_string()))?;
        if named["room_id"] != room_id {
            return Err(DecryptError::BadPlaintext(format!(
                "it names room {}",
                named["room_id"]
            )));
        }
        Ok((plaintext, named))
    }

    /// The first message index this key decrypts.
    pub fn first_index(&self) -> u32 {
        self.session.first_known_index()
    }

    /// The export the key was imported from: it decrypts the session from
    /// [`RoomKey::first_index`] on (what a session key record seals).
    pub fn export(&self) -> Arc<Value> {
        Arc::clone(&self.export)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use vodozemac::megolm::{GroupSession, SessionKey};

    use super::*;

    fn encrypted(session: &mut GroupSession, room: &str, plaintext: &Value) -> Value {
        let message = session.encrypt(plaintext.to_string());
        json!({
            "type": "m.room.encrypted", "room_id": room, "event_id": "$e", "sender": "@a:x",
            "content": { "algorithm": MEGOLM_V1, "session_id": session.session_id(),
                         "ciphertext": message.to_base64(), "device_id": "DEV",
                         "sender_key": "unused" }
        })
    }

    /// The key as the device would export it: from the session's start
    /// (`key`, taken before the first message), ratcheted to `index`.
    fn export(key: &SessionKey, room: &str, index: u32) -> Value {
        let mut inbound = InboundGroupSession::new(key, SessionConfig::version_1());
        json!({
            "algorithm": MEGOLM_V1, "room_id": room, "session_id": inbound.session_id(),
            "session_key": inbound.export_at(index).expect("index").to_base64(),
            "sender_key": "unused", "sender_claimed_keys": {}, "forwarding_curve25519_key_chain": []
        })
    }

    #[test]
    fn an_exported_key_decrypts_from_its_index_on_and_only_its_own_room() {
        let mut session = GroupSession::new(SessionConfig::version_1());
        let start = session.session_key();
        let first =
            json!({ "type": "m.room.message", "room_id": "!r:x", "content": { "body": "one" } });
        let second =
            json!({ "type": "m.room.message", "room_id": "!r:x", "content": { "body": "two" } });
        let one = encrypted(&mut session, "!r:x", &first);
        let two = encrypted(&mut session, "!r:x", &second);

        let reference = session_of(&two["content"]).expect("a Megolm message");
        assert_eq!(reference.message_index, 1);
        assert_eq!(reference.device_id.as_deref(), Some("DEV"));

        let from_one = export(&start, "!r:x", 1);
        let plain = decrypt(&two, &from_one).expect("decrypts");
        assert_eq!(serde_json::from_str::<Value>(&plain).expect("JSON"), second);
        // The key exported at index 1 cannot reach back to index 0.
        assert!(matches!(
            decrypt(&one, &from_one),
            Err(DecryptError::Megolm(_))
        ));
        assert!(decrypt(&one, &export(&start, "!r:x", 0)).is_ok());

        // A key of another room, and a plaintext of another room, are refused.
        assert!(matches!(
            decrypt(&two, &export(&start, "!other:x", 0)),
            Err(DecryptError::OtherSession(_))
        ));
        let moved = encrypted(&mut session, "!r:x", &json!({ "room_id": "!other:x" }));
        assert!(matches!(
            decrypt(&moved, &export(&start, "!r:x", 0)),
            Err(DecryptError::BadPlaintext(_))
        ));
        assert!(session_of(&json!({ "algorithm": "m.olm.v1.curve25519-aes-sha2" })).is_none());
    }

    #[test]
    fn one_imported_key_decrypts_its_session_from_its_first_index_on() {
        let mut session = GroupSession::new(SessionConfig::version_1());
        let start = session.session_key();
        let events: Vec<Value> = (0..4)
            .map(|n| {
                encrypted(
                    &mut session,
                    "!r:x",
                    &json!({ "type": "m.room.message", "room_id": "!r:x", "content": { "body": n } }),
                )
            })
            .collect();
        let mut key = RoomKey::import(export(&start, "!r:x", 1)).expect("a key");
        assert_eq!(key.first_index(), 1);
        assert!(matches!(
            key.decrypt(&events[0]),
            Err(DecryptError::Megolm(_))
        ));
        // In order, skipping one, and back: each event decrypts.
        for index in [1, 3, 2] {
            let plain = key.decrypt(&events[index]).expect("decrypts");
            assert_eq!(
                serde_json::from_str::<Value>(&plain).expect("JSON")["content"]["body"],
                index
            );
        }
        // What a session key record seals is the export, as imported.
        assert_eq!(*key.export(), export(&start, "!r:x", 1));
        assert_eq!(key.first_index(), 1, "decrypting does not move it");
    }
}
