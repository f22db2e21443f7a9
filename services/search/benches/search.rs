//! Search over a large vault: indexing every message, the index's size,
//! and query latencies.
//!
//! ```sh
//! cargo bench -p archipel-search --bench search            # 1,000,000 messages
//! cargo bench -p archipel-search --bench search -- 100000  # fewer
//! ```
//!
//! The messages are Dutch-like sentences drawn from a fixed vocabulary
//! (some words common, some rare) in 1,000 rooms from 200 senders over a
//! year. Indexing reads them back from the vault (opening each sealed
//! record) as a running node does. Each query kind runs 200 times; the
//! table gives its median and 99th percentile.
//!
//! Prints a table; asserts nothing about speed.

use std::time::{Duration, Instant};

use archipel_search::{Query, Search};
use archipel_store::{Store, StoreOptions};
use archipel_vault::{CapturedEvent, CheckpointPolicy, Vault, columns::COLUMNS, seal::VaultKey};
use serde_json::{json, value::to_raw_value};

const BATCH: u64 = 1000;
const DAY: u64 = 86_400_000;
const START: u64 = 1_767_225_600_000; // 2026-01-01

const WORDS: &[&str] = &[
    "het",
    "de",
    "een",
    "besluit",
    "begroting",
    "minister",
    "overleg",
    "vergadering",
    "kabinet",
    "nota",
    "brief",
    "kamervragen",
    "woo-verzoek",
    "afspraak",
    "morgen",
    "vandaag",
    "graag",
    "bellen",
    "stuk",
    "versie",
    "concept",
    "advies",
    "directie",
    "beleid",
    "uitvoering",
    "planning",
    "budget",
    "risico",
    "juridisch",
    "communicatie",
    "persbericht",
    "reactie",
    "termijn",
    "besluiten",
    "besproken",
    "akkoord",
    "wijziging",
    "voorstel",
    "agenda",
    "notulen",
];

/// A deterministic generator (SplitMix64): the same messages every run.
struct Numbers(u64);

impl Numbers {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn message(n: u64, numbers: &mut Numbers) -> CapturedEvent {
    let length = 4 + numbers.below(20);
    let mut body = Vec::new();
    for _ in 0..length {
        // Skewed towards the first words: some common, some rare.
        let a = numbers.below(WORDS.len() as u64);
        let b = numbers.below(WORDS.len() as u64);
        body.push(WORDS[usize::try_from(a.min(b)).expect("small")]);
    }
    if numbers.below(1000) == 0 {
        body.push("zeldzaamwoord");
    }
    let event = json!({
        "event_id": format!("$bench{n}"),
        "room_id": format!("!room{}:bench.example", numbers.below(1000)),
        "sender": format!("@user{}:bench.example", numbers.below(200)),
        "type": "m.room.message",
        "origin_server_ts": START + numbers.below(365 * DAY),
        "content": { "msgtype": "m.text", "body": body.join(" ") },
    });
    CapturedEvent {
        position: n + 1,
        event: to_raw_value(&event).expect("JSON"),
        media: Vec::new(),
        soft_failed: None,
        bridge: None,
    }
}

/// Makes one query of a kind, drawing what varies.
type MakeQuery = Box<dyn Fn(&mut Numbers) -> Query>;

fn folder_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.metadata().map(|m| m.len()).unwrap_or(0))
                .sum()
        })
        .unwrap_or(0)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let at = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[at]
}

fn main() {
    let records: u64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let store =
        Store::open(&dir.path().join("db"), COLUMNS, &StoreOptions::default()).expect("store");
    let vault = Vault::open(
        store,
        &dir.path().join("vault"),
        VaultKey::generate(),
        ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]),
        "bench.example/archipel-vault".into(),
        CheckpointPolicy {
            every_records: 100_000,
            every: Duration::from_secs(3600),
        },
    )
    .expect("vault");

    let mut numbers = Numbers(42);
    let started = Instant::now();
    let mut n = 0;
    while n < records {
        let batch: Vec<_> = (n..(n + BATCH).min(records))
            .map(|i| message(i, &mut numbers))
            .collect();
        n += batch.len() as u64;
        vault.capture(batch).expect("captured");
    }
    let captured = started.elapsed();

    let index = dir.path().join("search");
    let search = Search::open(&index).expect("index");
    let started = Instant::now();
    let caught = search.catch_up(&vault, |_, _| {}).expect("indexed");
    let indexed = started.elapsed();
    assert_eq!(caught.indexed, records);
    let index_bytes = folder_bytes(&index);

    let kinds: Vec<(&str, MakeQuery)> = vec![
        (
            "one common word",
            Box::new(|_| Query {
                text: "besluit".into(),
                limit: 50,
                ..Query::default()
            }),
        ),
        (
            "two words",
            Box::new(|n: &mut Numbers| Query {
                text: format!(
                    "begroting {}",
                    WORDS[usize::try_from(n.below(40)).expect("small")]
                ),
                limit: 50,
                ..Query::default()
            }),
        ),
        (
            "a phrase",
            Box::new(|_| Query {
                text: "\"het besluit\"".into(),
                limit: 50,
                ..Query::default()
            }),
        ),
        (
            "a rare word",
            Box::new(|_| Query {
                text: "zeldzaamwoord".into(),
                limit: 50,
                ..Query::default()
            }),
        ),
        (
            "a word in one room",
            Box::new(|n: &mut Numbers| Query {
                text: "minister".into(),
                room: Some(format!("!room{}:bench.example", n.below(1000))),
                limit: 50,
                ..Query::default()
            }),
        ),
        (
            "a sender in a month",
            Box::new(|n: &mut Numbers| {
                let month = n.below(12);
                Query {
                    sender: Some(format!("@user{}:bench.example", n.below(200))),
                    from_ms: Some(START + month * 30 * DAY),
                    until_ms: Some(START + (month + 1) * 30 * DAY),
                    limit: 50,
                    ..Query::default()
                }
            }),
        ),
    ];

    println!("archipel-search: {records} messages, 1,000 rooms, 200 senders, a year");
    println!(
        "captured into the vault  {:>8.1} s  ({:.0} messages/s)",
        captured.as_secs_f64(),
        records as f64 / captured.as_secs_f64()
    );
    println!(
        "indexed from the vault   {:>8.1} s  ({:.0} messages/s)",
        indexed.as_secs_f64(),
        records as f64 / indexed.as_secs_f64()
    );
    println!(
        "index size               {:>8.1} MB ({:.0} bytes/message)",
        index_bytes as f64 / 1e6,
        index_bytes as f64 / records as f64
    );
    println!("query                       p50        p99   hits (first run)");
    let mut numbers = Numbers(7);
    for (name, make) in &kinds {
        let mut times = Vec::new();
        let mut first_hits = None;
        for _ in 0..200 {
            let query = make(&mut numbers);
            let started = Instant::now();
            let hits = search.search(&query).expect("searched");
            times.push(started.elapsed());
            first_hits.get_or_insert(hits.len());
        }
        times.sort_unstable();
        println!(
            "{name:<24} {:>8.2} ms {:>8.2} ms   {}",
            percentile(&times, 0.5).as_secs_f64() * 1e3,
            percentile(&times, 0.99).as_secs_f64() * 1e3,
            first_hits.unwrap_or(0)
        );
    }
}
