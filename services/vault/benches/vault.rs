//! Vault throughput on a large log: sealing and appending, `verify`, proofs.
//!
//! ```sh
//! cargo bench -p archipel-vault --bench vault            # 1,000,000 records
//! cargo bench -p archipel-vault --bench vault -- 100000  # fewer
//! cargo bench -p archipel-vault --bench vault -- 100000 --cache-mib 64
//! ```
//!
//! The store gets the vault's share of a node's default memory budget
//! (2 MiB) unless `--cache-mib` says otherwise. The events look like the
//! homeserver's stored ones (hashes, signatures, prev and auth events).
//! Capture's CPU time counts every thread of the process (RocksDB's
//! flushes and compactions too) until the last memtable is flushed.
//!
//! Prints a table; asserts nothing about speed.

use std::time::{Duration, Instant};

mod common;

use archipel_vault::{CapturedEvent, verify};
use nix::sys::resource::UsageWho;
use serde_json::{json, value::to_raw_value};

const BATCH: u64 = 1000;

fn main() {
    let mut records: u64 = 1_000_000;
    let mut cache_mib: usize = 2;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--cache-mib" {
            let value = args.next().and_then(|v| v.parse().ok());
            cache_mib = value.expect("--cache-mib takes a number of MiB");
        } else if let Ok(n) = arg.parse() {
            records = n;
        }
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, vault) = common::open(dir.path(), cache_mib, 10_000);
    let signer = common::signer();

    eprintln!("capturing {records} events in batches of {BATCH}...");
    let started = Instant::now();
    let cpu_started = common::cpu_time(UsageWho::RUSAGE_SELF);
    let mut position = 0;
    while position < records {
        let batch = (position..(position + BATCH).min(records))
            .map(|n| CapturedEvent {
                position: n + 1,
                event: to_raw_value(&event(n)).expect("JSON"),
                media: Vec::new(),
                soft_failed: None,
                bridge: None,
            })
            .collect();
        vault.capture(batch).expect("capture");
        position = (position + BATCH).min(records);
    }
    vault.checkpoint().expect("checkpoint");
    let capture = started.elapsed();
    store.flush().expect("flush");
    let capture_cpu = common::cpu_time(UsageWho::RUSAGE_SELF) - cpu_started;

    eprintln!("verifying...");
    let started = Instant::now();
    let report = verify::verify(
        vault.log(),
        &dir.path().join("vault/media"),
        &signer.verifying_key(),
        |_, _| {},
    )
    .expect("verify");
    let verify_time = started.elapsed();
    assert!(
        report.ok(),
        "{:?}",
        &report.findings[..report.findings.len().min(5)]
    );

    let proofs = 10_000u64.min(records);
    let started = Instant::now();
    for i in 0..proofs {
        let seq = i * (records / proofs);
        vault.log().inclusion_proof(seq, records).expect("proof");
    }
    let proof_time = started.elapsed();

    eprintln!("exporting one room...");
    let out = dir.path().join("export");
    let started = Instant::now();
    vault.checkpoint().expect("checkpoint");
    let summary = vault
        .export(
            &archipel_vault::export::ExportScope {
                room: Some("!room7:bench.example".into()),
                ..Default::default()
            },
            &out,
            |_, _| {},
        )
        .expect("export");
    let export_time = started.elapsed();

    let rate = |n: u64, d: Duration| n as f64 / d.as_secs_f64();
    println!("Vault, {records} records (one message event each), {cache_mib} MiB cache");
    println!("{:<40} | {:>14}", "Measure", "Result");
    println!("{:-<40}-|-{:->14}", "", "");
    println!(
        "{:<40} | {:>14.0}",
        "capture: seal + append (records/s)",
        rate(records, capture)
    );
    println!(
        "{:<40} | {:>14.1}",
        "capture: CPU, all threads (µs/record)",
        capture_cpu.as_secs_f64() * 1e6 / records as f64
    );
    println!(
        "{:<40} | {:>14.0}",
        "verify (records/s)",
        rate(records, verify_time)
    );
    println!(
        "{:<40} | {:>14.1}",
        "verify, total (s)",
        verify_time.as_secs_f64()
    );
    println!(
        "{:<40} | {:>14.1}",
        "inclusion proof (µs each)",
        proof_time.as_secs_f64() * 1e6 / proofs as f64
    );
    println!(
        "{:<40} | {:>14}",
        "export: records of one room", summary.records
    );
    println!(
        "{:<40} | {:>14.1}",
        "export, total (s)",
        export_time.as_secs_f64()
    );
    println!(
        "{:<40} | {:>14.0}",
        "export (exported records/s)",
        rate(summary.records, export_time)
    );
    println!(
        "{:<40} | {:>14.1}",
        "database size (MiB)",
        store.approximate_size() as f64 / (1 << 20) as f64
    );
}

/// A message event as the homeserver stores it (its archive form).
fn event(n: u64) -> serde_json::Value {
    let id = |tag: &str, k: u64| format!("${tag}{k:040}");
    json!({
        "auth_events": [id("create", 0), id("power", 0), id("member", n % 50)],
        "content": {
            "msgtype": "m.text",
            "body": format!("benchmark message {n}: the quick brown fox jumps over the lazy dog"),
        },
        "depth": n + 10,
        "event_id": id("bench", n),
        "hashes": { "sha256": format!("{n:043}") },
        "origin_server_ts": 1_700_000_000_000u64 + n,
        "prev_events": [id("bench", n.saturating_sub(1))],
        "room_id": format!("!room{}:bench.example", n % 100),
        "sender": format!("@user{}:bench.example", n % 50),
        "signatures": { "bench.example": { "ed25519:a_1": format!("{n:086}") } },
        "type": "m.room.message",
    })
}
