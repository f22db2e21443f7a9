//! Shared by the vault's benchmarks.
#![allow(dead_code)]

use std::{path::Path, time::Duration};

use archipel_store::{Store, StoreOptions};
use archipel_vault::{CheckpointPolicy, Vault, columns::COLUMNS, seal::VaultKey};
use ed25519_dalek::SigningKey;
use nix::sys::resource::UsageWho;

/// The key every benchmark's vault signs its checkpoints with.
pub fn signer() -> SigningKey {
    SigningKey::from_bytes(&[7u8; 32])
}

/// A new vault in `dir`, its store given `cache_mib` of memory, signing a
/// checkpoint every `every_records`.
pub fn open(dir: &Path, cache_mib: usize, every_records: u64) -> (Store, Vault) {
    let store = Store::open(
        &dir.join("db"),
        COLUMNS,
        &StoreOptions {
            cache_bytes: cache_mib << 20,
            ..StoreOptions::default()
        },
    )
    .expect("store");
    let vault = Vault::open(
        store.clone(),
        &dir.join("vault"),
        VaultKey::generate(),
        signer(),
        "bench.example/archipel-vault".into(),
        CheckpointPolicy {
            every_records,
            every: Duration::from_secs(3600),
        },
    )
    .expect("vault");
    (store, vault)
}

/// CPU time so far, user and system, of the process (every thread) or
/// of the calling thread.
pub fn cpu_time(who: UsageWho) -> Duration {
    let usage = nix::sys::resource::getrusage(who).expect("getrusage");
    let time = |t: nix::sys::time::TimeVal| {
        Duration::from_secs(t.tv_sec() as u64) + Duration::from_micros(t.tv_usec() as u64)
    };
    time(usage.user_time()) + time(usage.system_time())
}
