//! The vault's side of archiving encrypted chat: capturing Megolm messages,
//! then decrypting them and appending their decryption records, as the
//! node's decryption worker does (a look every few hundred events, one
//! imported key per session, kept for the session's next events).
//!
//! ```sh
//! cargo bench -p archipel-vault --bench decryption           # 20,000 messages
//! cargo bench -p archipel-vault --bench decryption -- 50000  # more
//! ```
//!
//! Four senders, each starting a new Megolm session every 100 messages
//! (matrix-sdk's default), in one room; the vault gets its share of a
//! node's default memory budget (2 MiB). CPU time counts every thread of
//! the process (RocksDB's flushes and compactions too), each phase until
//! its last memtable is flushed. Prints a table; asserts nothing about
//! speed.

use std::{collections::HashMap, time::Duration};

mod common;

use archipel_vault::{
    CapturedEvent,
    decryption::{FoundKey, PendingDecryption},
    megolm::RoomKey,
};
use nix::sys::resource::UsageWho;
use serde_json::{Value, json, value::to_raw_value};
use vodozemac::megolm::{GroupSession, InboundGroupSession, SessionConfig};

const ROOM: &str = "!encrypted:bench.example";
const SENDERS: u64 = 4;
/// matrix-sdk's default rotation: a new session every 100 messages.
const PER_SESSION: u64 = 100;
/// Events per capture batch, and pending events per look.
const BATCH: usize = 256;

fn main() {
    let messages: u64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(20_000);
    eprintln!("encrypting {messages} messages...");
    let (events, exports) = encrypted_chat(messages);
    eprintln!("capturing...");
    let captured = run(&events, None);
    eprintln!("capturing and decrypting...");
    let decrypted = run(&events, Some(&exports));

    let per = |d: Duration| d.as_secs_f64() * 1e6 / messages as f64;
    let overhead = decrypted.cpu.saturating_sub(captured.cpu);
    println!(
        "Vault, {messages} Megolm messages ({SENDERS} senders, a session per {PER_SESSION} messages), 2 MiB cache"
    );
    println!("{:<50} | {:>10}", "Measure", "Result");
    println!("{:-<50}-|-{:->10}", "", "");
    println!(
        "{:<50} | {:>10.1}",
        "capture: CPU, all threads (µs/message)",
        per(captured.cpu)
    );
    println!(
        "{:<50} | {:>10.1}",
        "capture and decryption: CPU, all threads",
        per(decrypted.cpu)
    );
    println!(
        "{:<50} | {:>10.1}",
        "decryption's share (µs/message)",
        per(overhead)
    );
    println!(
        "{:<50} | {:>10.1}",
        "  Megolm decryption (its thread)",
        per(decrypted.decrypting)
    );
    println!(
        "{:<50} | {:>10.1}",
        "  decryption records (its thread)",
        per(decrypted.recording)
    );
    println!(
        "{:<50} | {:>10.0}",
        "decryption records (per second of its thread)",
        messages as f64 / (decrypted.decrypting + decrypted.recording).as_secs_f64()
    );
    println!(
        "{:<50} | {:>10.1}",
        "database size, capture only (MiB)", captured.mib
    );
    println!(
        "{:<50} | {:>10.1}",
        "database size, with decryption (MiB)", decrypted.mib
    );
}

/// What one pass cost.
struct Pass {
    /// Every thread's CPU time, until the last memtable was flushed.
    cpu: Duration,
    /// The capturing thread's CPU time decrypting, and appending the
    /// decryption records.
    decrypting: Duration,
    recording: Duration,
    mib: f64,
}

/// Captures `events` into a new vault in batches, and with `exports` (each
/// session's exported key) decrypts after each batch what it captured.
fn run(events: &[CapturedEvent], exports: Option<&HashMap<String, Value>>) -> Pass {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, vault) = common::open(dir.path(), 2, 10_000);
    let mut pass = Pass {
        cpu: Duration::ZERO,
        decrypting: Duration::ZERO,
        recording: Duration::ZERO,
        mib: 0.0,
    };
    let started = common::cpu_time(UsageWho::RUSAGE_SELF);
    let mut kept: HashMap<String, RoomKey> = HashMap::new();
    let mut cursor = None;
    for chunk in events.chunks(BATCH) {
        vault.capture(chunk.to_vec()).expect("capture");
        let Some(exports) = exports else {
            continue;
        };
        let page = vault.pending_decryptions(cursor, BATCH).expect("pending");
        let Some(last) = page.last() else {
            continue;
        };
        cursor = Some(last.seq);
        let phase = common::cpu_time(UsageWho::RUSAGE_THREAD);
        let mut by_session: HashMap<String, Vec<PendingDecryption>> = HashMap::new();
        for pending in page {
            by_session
                .entry(pending.session_id.clone())
                .or_default()
                .push(pending);
        }
        let mut found = Vec::new();
        for (session, pending) in by_session {
            let key = kept.entry(session.clone()).or_insert_with(|| {
                RoomKey::import(exports[&session].clone()).expect("an exported key")
            });
            for decryption in vault.decrypt_session(&pending, key).expect("decrypts") {
                found.push(FoundKey {
                    decryption,
                    attachments: Vec::new(),
                });
            }
        }
        let count = found.len();
        let decrypted = common::cpu_time(UsageWho::RUSAGE_THREAD);
        pass.decrypting += decrypted - phase;
        let appended = vault.record_decryptions(found).expect("records");
        assert_eq!(appended.len(), count, "every message decrypted");
        pass.recording += common::cpu_time(UsageWho::RUSAGE_THREAD) - decrypted;
    }
    store.flush().expect("flush");
    pass.cpu = common::cpu_time(UsageWho::RUSAGE_SELF) - started;
    pass.mib = store.approximate_size() as f64 / (1 << 20) as f64;
    pass
}

/// `messages` Megolm messages as the server receives them, the senders
/// taking turns, and each session's key as the archive member's device
/// exports it, by session ID.
fn encrypted_chat(messages: u64) -> (Vec<CapturedEvent>, HashMap<String, Value>) {
    let mut sessions: Vec<Option<GroupSession>> = (0..SENDERS).map(|_| None).collect();
    let mut exports = HashMap::new();
    let mut events = Vec::with_capacity(messages as usize);
    for n in 0..messages {
        let sender = n % SENDERS;
        let slot = &mut sessions[sender as usize];
        if (n / SENDERS).is_multiple_of(PER_SESSION) {
            *slot = None;
        }
        let session = slot.get_or_insert_with(|| {
            let session = GroupSession::new(SessionConfig::version_1());
            let mut inbound =
                InboundGroupSession::new(&session.session_key(), SessionConfig::version_1());
            exports.insert(
                session.session_id(),
                json!({
                    "algorithm": "m.megolm.v1.aes-sha2", "room_id": ROOM,
                    "session_id": session.session_id(),
                    "session_key": inbound.export_at(0).expect("index").to_base64(),
                    "sender_key": "7Kc6Y9mvtTKm3bpQfyLXMhC2NHGDaI0DNlZ3zn6iMUI",
                    "sender_claimed_keys": { "ed25519": "b4QeNxQCj1mJV8hUdnFXP/VOoaMOXC3xSUFGOjwQMaE" },
                    "forwarding_curve25519_key_chain": [],
                }),
            );
            session
        });
        let plain = json!({
            "type": "m.room.message", "room_id": ROOM,
            "content": { "msgtype": "m.text",
                         "body": format!("sender {sender}, message {n}: the minutes of today's meeting") },
        });
        let message = session.encrypt(plain.to_string());
        let id = |tag: &str, k: u64| format!("${tag}{k:040}");
        let event = json!({
            "auth_events": [id("create", 0), id("power", 0), id("member", sender)],
            "content": {
                "algorithm": "m.megolm.v1.aes-sha2", "ciphertext": message.to_base64(),
                "device_id": format!("DEVICE{sender}"), "session_id": session.session_id(),
                "sender_key": "7Kc6Y9mvtTKm3bpQfyLXMhC2NHGDaI0DNlZ3zn6iMUI",
            },
            "depth": n + 10,
            "event_id": id("encrypted", n),
            "hashes": { "sha256": format!("{n:043}") },
            "origin_server_ts": 1_700_000_000_000u64 + n,
            "prev_events": [id("encrypted", n.saturating_sub(1))],
            "room_id": ROOM,
            "sender": format!("@sender{sender}:bench.example"),
            "signatures": { "bench.example": { "ed25519:a_1": format!("{n:086}") } },
            "type": "m.room.encrypted",
        });
        events.push(CapturedEvent {
            position: n + 1,
            event: to_raw_value(&event).expect("JSON"),
            media: Vec::new(),
            soft_failed: None,
            bridge: None,
        });
    }
    (events, exports)
}
