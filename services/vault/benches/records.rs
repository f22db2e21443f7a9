//! Records management output for a Woo request and an e-Depot transfer:
//! a Woo package and a SIP of 10,000 messages.
//!
//! ```sh
//! cargo bench -p archipel-vault --bench records            # 10,000 messages
//! cargo bench -p archipel-vault --bench records -- 50000   # more
//! ```
//!
//! The messages are spread over 20 rooms and 60 days, from 40 senders, so
//! that the package holds about a thousand documents (one per room per
//! day). Half the documents are partly public with two redactions each,
//! a tenth are withheld, the rest public. Prints a table; asserts nothing
//! about speed.

use std::time::{Duration, Instant};

mod common;

use archipel_vault::{
    CapturedEvent, Organisation,
    export::{
        sip::SipScope,
        woo::{PlannedDocument, PlannedRedaction, WooPlan, WooSelection},
    },
    retention::RetentionPolicy,
};
use serde_json::{json, value::to_raw_value};

const ROOMS: u64 = 20;
const DAYS: u64 = 60;
const DAY_MS: u64 = 24 * 3600 * 1000;
/// 2026-01-05, 09:00 in Amsterdam.
const START_MS: u64 = 1_767_600_000_000;

fn main() {
    let messages: u64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(10_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, vault) = common::open(dir.path(), 16, 100_000);
    let organisation = Organisation {
        name: "ministerie van Benchmarks".into(),
        identifier: "https://identifier.overheid.nl/tooi/id/ministerie/mnre9999".into(),
    };

    eprintln!("capturing {messages} messages...");
    let names = (0..ROOMS).map(|room| {
        json!({
            "type": "m.room.name", "state_key": "", "content": { "name": format!("Overleg {room}") },
            "event_id": format!("$name{room}"), "room_id": room_id(room),
            "sender": "@user0:bench.example", "origin_server_ts": START_MS - 1000,
        })
    });
    let events: Vec<serde_json::Value> = names.chain((0..messages).map(message)).collect();
    for (n, chunk) in events.chunks(1000).enumerate() {
        let batch = chunk
            .iter()
            .enumerate()
            .map(|(i, event)| CapturedEvent {
                position: (n * 1000 + i) as u64 + 1,
                event: to_raw_value(event).expect("JSON"),
                media: Vec::new(),
                soft_failed: None,
                bridge: None,
            })
            .collect();
        vault.capture(batch).expect("capture");
    }
    vault.checkpoint().expect("checkpoint");

    eprintln!("planning and packaging...");
    let started = Instant::now();
    let candidates = vault
        .woo_candidates(&WooSelection::default())
        .expect("candidates");
    let plan_time = started.elapsed();
    let plan = WooPlan {
        matter: "WOO-BENCH".into(),
        decision: String::new(),
        documents: candidates
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let mut document = PlannedDocument {
                    id: c.id,
                    ..PlannedDocument::default()
                };
                match i % 10 {
                    0 => {
                        document.judgement = "niet openbaar".into();
                        document.grounds = vec!["5.1.2i".into()];
                    }
                    1..=5 => {
                        document.judgement = "deels openbaar".into();
                        document.redactions = vec![
                            redaction("06-12345678", "5.1.2e"),
                            redaction("persoonlijke opvatting", "5.2"),
                        ];
                    }
                    _ => document.judgement = "openbaar".into(),
                }
                document
            })
            .collect(),
    };
    let woo_out = dir.path().join("woo");
    let started = Instant::now();
    let woo = vault
        .woo_package(
            &plan,
            &organisation,
            "@bench:bench.example",
            &woo_out,
            |_, _| {},
        )
        .expect("woo package");
    let woo_time = started.elapsed();
    let woo_bytes = size_of_dir(&woo_out);

    eprintln!("making the SIP...");
    let sip_out = dir.path().join("sip");
    let started = Instant::now();
    let sip = vault
        .transfer_sip(
            &SipScope::default(),
            &RetentionPolicy::default(),
            &organisation,
            "@bench:bench.example",
            &sip_out,
            |_, _| {},
        )
        .expect("SIP");
    let sip_time = started.elapsed();
    let sip_bytes = size_of_dir(&sip_out);

    let rate = |n: u64, d: Duration| n as f64 / d.as_secs_f64();
    println!("Records management, {messages} messages in {ROOMS} rooms over {DAYS} days, one run");
    println!("{:<44} | {:>14}", "Measure", "Result");
    println!("{:-<44}-|-{:->14}", "", "");
    println!(
        "{:<44} | {:>14}",
        "Woo: documents (room-days)", woo.documents
    );
    println!(
        "{:<44} | {:>14.2}",
        "Woo: plan the documents (s)",
        plan_time.as_secs_f64()
    );
    println!(
        "{:<44} | {:>14}",
        "Woo: PDFs / pages / redactions",
        format!("{} / {} / {}", woo.published, woo.pages, woo.redactions)
    );
    println!(
        "{:<44} | {:>14.2}",
        "Woo: make the package (s)",
        woo_time.as_secs_f64()
    );
    println!(
        "{:<44} | {:>14.0}",
        "Woo: messages/s",
        rate(messages, woo_time)
    );
    println!(
        "{:<44} | {:>14.1}",
        "Woo: package size (MiB)",
        woo_bytes as f64 / (1 << 20) as f64
    );
    println!(
        "{:<44} | {:>14}",
        "SIP: messages / sidecars",
        format!(
            "{} / {}",
            sip.messages,
            sip.messages * 2 + sip.conversations + 1
        )
    );
    println!(
        "{:<44} | {:>14.2}",
        "SIP: make the container (s)",
        sip_time.as_secs_f64()
    );
    println!(
        "{:<44} | {:>14.0}",
        "SIP: messages/s",
        rate(sip.messages as u64, sip_time)
    );
    println!(
        "{:<44} | {:>14.1}",
        "SIP: container size (MiB)",
        sip_bytes as f64 / (1 << 20) as f64
    );
}

fn room_id(room: u64) -> String {
    format!("!room{room}:bench.example")
}

/// Message `n`: its room, day and sender spread evenly; some carry what
/// the plan redacts.
fn message(n: u64) -> serde_json::Value {
    let room = n % ROOMS;
    let day = (n / ROOMS) % DAYS;
    let body = match n % 7 {
        0 => format!("Bel me op 06-12345678 over punt {n} van de agenda."),
        1 => format!("Mijn persoonlijke opvatting over voorstel {n}: nog niet rijp."),
        _ => format!(
            "Bericht {n}: de nota over de begroting en de planning van het overleg gaat morgen naar de bewindspersoon."
        ),
    };
    json!({
        "type": "m.room.message",
        "content": { "msgtype": "m.text", "body": body },
        "event_id": format!("$bench{n:040}"),
        "room_id": room_id(room),
        "sender": format!("@user{}:bench.example", n % 40),
        "origin_server_ts": START_MS + day * DAY_MS + (n % 1000) * 1000,
    })
}

fn redaction(passage: &str, ground: &str) -> PlannedRedaction {
    PlannedRedaction {
        passage: passage.into(),
        ground: ground.into(),
        message: None,
    }
}

fn size_of_dir(dir: &std::path::Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).expect("a folder").flatten() {
        let meta = entry.metadata().expect("metadata");
        total += if meta.is_dir() {
            size_of_dir(&entry.path())
        } else {
            meta.len()
        };
    }
    total
}
