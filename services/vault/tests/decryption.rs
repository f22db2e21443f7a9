//! Decryption records from captured Megolm messages: the same plaintext
//! whether the vault decrypts an event it captured just now or one it reads
//! back from its log (after a restart).

mod common;

use archipel_vault::{CapturedEvent, Vault};
use serde_json::{Value, json};
use vodozemac::megolm::{GroupSession, InboundGroupSession, SessionConfig, SessionKey};

const ROOM: &str = "!room:test.example";

/// Message `n` of `session`, as the server receives it.
fn encrypted(session: &mut GroupSession, n: u64) -> CapturedEvent {
    let plain = json!({ "type": "m.room.message", "room_id": ROOM,
                        "content": { "msgtype": "m.text", "body": format!("secret {n}") } });
    let message = session.encrypt(plain.to_string());
    common::event_with(n, |event| {
        *event = json!({
            "event_id": format!("$enc{n}"), "room_id": ROOM, "sender": "@alice:test.example",
            "type": "m.room.encrypted", "origin_server_ts": 1_700_000_000_000u64 + n,
            "content": { "algorithm": "m.megolm.v1.aes-sha2", "session_id": session.session_id(),
                         "ciphertext": message.to_base64(), "device_id": "DEV", "sender_key": "unused" },
        });
    })
}

/// The key as the archive member's device exports it.
fn export(key: &SessionKey) -> Value {
    let mut inbound = InboundGroupSession::new(key, SessionConfig::version_1());
    json!({
        "algorithm": "m.megolm.v1.aes-sha2", "room_id": ROOM, "session_id": inbound.session_id(),
        "session_key": inbound.export_at(0).expect("index").to_base64(),
        "sender_key": "unused", "sender_claimed_keys": {}, "forwarding_curve25519_key_chain": []
    })
}

/// Decrypts and records every pending event; returns the plaintext bodies.
fn decrypt_all(vault: &Vault, key: &Value) -> Vec<String> {
    let pending = vault.pending_decryptions(None, 100).expect("pending");
    let found = vault
        .decrypt_session(
            &pending,
            &mut archipel_vault::megolm::RoomKey::import(key.clone()).expect("a key"),
        )
        .expect("decrypts")
        .into_iter()
        .map(|decryption| archipel_vault::decryption::FoundKey {
            decryption,
            attachments: Vec::new(),
        })
        .collect();
    let appended = vault.record_decryptions(found).expect("records");
    appended
        .into_iter()
        .map(|seq| {
            let plain: Value =
                serde_json::from_str(&vault.open_decryption(seq).expect("opens").plaintext)
                    .expect("JSON");
            plain["content"]["body"]
                .as_str()
                .expect("a body")
                .to_owned()
        })
        .collect()
}

#[test]
fn captured_messages_decrypt_alike_before_and_after_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut session = GroupSession::new(SessionConfig::version_1());
    let key = export(&session.session_key());
    {
        let (_store, vault) = common::open(dir.path(), 1000);
        vault
            .capture((0..3).map(|n| encrypted(&mut session, n)).collect())
            .expect("capture");
        assert_eq!(
            decrypt_all(&vault, &key),
            ["secret 0", "secret 1", "secret 2"]
        );
        vault
            .capture((3..5).map(|n| encrypted(&mut session, n)).collect())
            .expect("capture");
    }
    // Reopened: what was captured before is read back from the log.
    let (_store, vault) = common::open(dir.path(), 1000);
    assert_eq!(decrypt_all(&vault, &key), ["secret 3", "secret 4"]);
    assert_eq!(vault.pending_decryption_count().expect("count"), 0);
    assert_eq!(vault.decryption_count().expect("count"), 5);
    common::verifies(&dir, &vault);
}
