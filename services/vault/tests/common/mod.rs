//! Shared by the vault's integration tests.
#![allow(dead_code)]

use std::time::Duration;

use archipel_store::{Store, StoreOptions};
use archipel_vault::{
    CapturedEvent, CheckpointPolicy, Error, Vault, columns::COLUMNS, seal::VaultKey, verify,
};
use ed25519_dalek::SigningKey;
use serde_json::{Value, json, value::to_raw_value};

pub fn signer() -> SigningKey {
    SigningKey::from_bytes(&[42u8; 32])
}

pub fn open(dir: &std::path::Path, every_records: u64) -> (Store, Vault) {
    let store = Store::open(&dir.join("db"), COLUMNS, &StoreOptions::default()).expect("store");
    let key = VaultKey::load_or_generate(&dir.join("vault.key")).expect("key");
    let vault = Vault::open(
        store.clone(),
        &dir.join("vault"),
        key,
        signer(),
        "test.example/archipel-vault".into(),
        CheckpointPolicy {
            every_records,
            every: Duration::from_secs(3600),
        },
    )
    .expect("vault");
    (store, vault)
}

pub fn event(n: u64) -> CapturedEvent {
    event_with(n, |_| {})
}

/// Event `n` with its JSON changed by `edit` before capture.
pub fn event_with(n: u64, edit: impl FnOnce(&mut Value)) -> CapturedEvent {
    let mut event = json!({
        "event_id": format!("$event{n}"),
        "room_id": "!room:test.example",
        "sender": "@alice:test.example",
        "type": "m.room.message",
        "origin_server_ts": 1_700_000_000_000u64 + n,
        "content": { "msgtype": "m.text", "body": format!("message number {n}") },
    });
    edit(&mut event);
    CapturedEvent {
        position: n + 1,
        event: to_raw_value(&event).expect("JSON"),
        media: Vec::new(),
        soft_failed: None,
        bridge: None,
    }
}

/// Asserts that a procedure step was refused for the reason `why`.
pub fn refused<T: std::fmt::Debug>(result: Result<T, Error>, why: &str) {
    match result {
        Err(Error::Rule(rule)) => assert!(rule.to_string().contains(why), "{rule}"),
        other => panic!("expected a refusal ({why}), got {other:?}"),
    }
}

/// Asserts that the vault in `dir` verifies without findings; returns the
/// report.
pub fn verifies(dir: &tempfile::TempDir, vault: &Vault) -> verify::Report {
    let report = verify::verify(
        vault.log(),
        &dir.path().join("vault/media"),
        &signer().verifying_key(),
        |_, _| {},
    )
    .expect("verify runs");
    assert!(report.ok(), "{:?}", report.findings);
    report
}
