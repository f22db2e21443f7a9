//! Decryption records from captured Megolm messages: the same plaintext
//! whether the vault decrypts an event it captured just now or one it reads
//! back from its log (after a restart).

mod common;

use archipel_vault::{
    CapturedEvent, Vault,
    decryption::SessionKeyAt,
    export::{ExportScope, check::verify_export},
    record::Entry,
};
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

/// The session key records in the log: (record, first index it reaches).
fn key_records(vault: &Vault) -> Vec<(u64, u32)> {
    let log = vault.log();
    (0..log.size().expect("size"))
        .filter_map(|seq| match log.record(seq).expect("a record").entry {
            Entry::SessionKey(key) => Some((seq, key.first_index)),
            _ => None,
        })
        .collect()
}

/// The key exported from message `index` of the session `key` starts.
fn export_at(key: &SessionKey, index: u32) -> Value {
    let mut export = export(key);
    let mut inbound = InboundGroupSession::new(key, SessionConfig::version_1());
    export["session_key"] = inbound.export_at(index).expect("index").to_base64().into();
    export
}

#[test]
fn a_sessions_key_is_logged_once_and_again_only_to_reach_further_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_store, vault) = common::open(dir.path(), 1000);
    let mut session = GroupSession::new(SessionConfig::version_1());
    let start = session.session_key();
    vault
        .capture((0..6).map(|n| encrypted(&mut session, n)).collect())
        .expect("capture");

    // A key from index 2 on: messages 0 and 1 stay pending.
    assert_eq!(
        decrypt_all(&vault, &export_at(&start, 2)),
        ["secret 2", "secret 3", "secret 4", "secret 5"]
    );
    assert_eq!(vault.pending_decryption_count().expect("count"), 2);
    let first = key_records(&vault);
    assert_eq!(first.len(), 1, "one key record for the session: {first:?}");
    assert_eq!(first[0].1, 2);

    // Later messages of the session refer to the same record.
    vault
        .capture((6..8).map(|n| encrypted(&mut session, n)).collect())
        .expect("capture");
    assert_eq!(
        decrypt_all(&vault, &export_at(&start, 2)),
        ["secret 6", "secret 7"]
    );
    assert_eq!(key_records(&vault), first);

    // A key that reaches back (forwarded later) is logged as well.
    assert_eq!(
        decrypt_all(&vault, &export_at(&start, 0)),
        ["secret 0", "secret 1"]
    );
    let both = key_records(&vault);
    assert_eq!(both.len(), 2, "{both:?}");
    assert_eq!(both[1].1, 0);

    // Each decryption record names its key record, which holds the export.
    for n in 0..8u64 {
        let seq = vault
            .log()
            .seq_of_event(&format!("$enc{n}"))
            .expect("index")
            .expect("captured");
        let decryption = vault.decryption_of(seq).expect("index").expect("decrypted");
        let opened = vault.open_decryption(decryption).expect("opens");
        let key_seq = if n < 2 { both[1].0 } else { both[0].0 };
        assert_eq!(opened.session_key, SessionKeyAt::Record(key_seq));
        let (key, _) = vault.open_session_key(key_seq, decryption).expect("opens");
        assert_eq!(key, export_at(&start, if n < 2 { 0 } else { 2 }));
    }
    // A record that is not a session key record is refused as one.
    let last = vault.log().size().expect("size") - 1;
    assert!(vault.open_session_key(0, last).is_err(), "an event record");
    assert!(
        vault.open_session_key(both[1].0, both[1].0).is_err(),
        "not earlier than its decryption record"
    );

    let report = common::verifies(&dir, &vault);
    assert_eq!(report.decryptions.len(), 8);
    assert_eq!(
        vault
            .verify_decryptions(&report.decryptions)
            .expect("verifies")
            .len(),
        0
    );

    // The export shows each decryption with its key record, proven.
    vault.checkpoint().expect("checkpoint");
    let out = dir.path().join("export");
    let scope = ExportScope {
        room: Some(ROOM.into()),
        ..ExportScope::default()
    };
    let summary = vault.export(&scope, &out, |_, _| {}).expect("exports");
    assert_eq!(summary.decrypted, 8);
    let lines = records_jsonl(&out);
    let shown: Vec<u64> = lines
        .iter()
        .filter_map(|line| line["decryption"]["key_record"]["seq"].as_u64())
        .collect();
    assert_eq!(shown.len(), 8, "{lines:?}");
    assert!(
        shown
            .iter()
            .all(|seq| *seq == both[0].0 || *seq == both[1].0)
    );
    let checked = verify_export(&out, None).expect("checks");
    assert!(checked.ok(), "{:?}", checked.problems);
}

/// Every line of the export's `records.jsonl` files.
fn records_jsonl(out: &std::path::Path) -> Vec<Value> {
    let mut lines = Vec::new();
    for entry in std::fs::read_dir(out).expect("export") {
        let path = entry.expect("entry").path().join("records.jsonl");
        if let Ok(text) = std::fs::read_to_string(&path) {
            lines.extend(text.lines().map(|l| serde_json::from_str(l).expect("JSON")));
        }
    }
    lines
}
