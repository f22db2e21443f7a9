//! Shared by the end-to-end tests: a node-shaped data directory, keys, and
//! comparing a restored tree with its sources.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use archipel_backup::{CreateOptions, Encryption, Progress, Source};
use ed25519_dalek::SigningKey;
use rand::{RngCore as _, SeedableRng as _};

pub const SERVER_NAME: &str = "bzk.archipel.test";

pub fn node_key() -> SigningKey {
    SigningKey::from_bytes(&[42; 32])
}

pub fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; len];
    rand::rngs::StdRng::seed_from_u64(seed).fill_bytes(&mut bytes);
    bytes
}

pub fn write(path: &Path, bytes: &[u8], mode: u32) {
    fs::create_dir_all(path.parent().expect("a file has a parent")).expect("create parent");
    fs::write(path, bytes).expect("write test file");
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("set mode");
}

/// A data directory shaped like a node's: a RocksDB-like checkpoint, the
/// vault's, media with nested directories, an empty file, an empty
/// directory, one large random file, the node key and the config.
pub fn make_node(root: &Path, large_file_bytes: usize) -> Vec<Source> {
    let db = root.join("checkpoint/db");
    write(&db.join("CURRENT"), b"MANIFEST-000005\n", 0o644);
    write(&db.join("000012.sst"), &random_bytes(1, 300_000), 0o644);
    write(&db.join("000013.log"), b"", 0o644);
    let json: String = (0..2000)
        .map(|i| {
            format!(
                "{{\"event_id\":\"$ev{i}\",\"type\":\"m.room.message\",\"body\":\"hallo {i}\"}}\n"
            )
        })
        .collect();
    write(&db.join("OPTIONS-000007"), json.as_bytes(), 0o644);

    let vault = root.join("checkpoint/vault");
    write(&vault.join("000004.sst"), &random_bytes(2, 70_000), 0o644);
    write(&vault.join("CURRENT"), b"MANIFEST-000002\n", 0o644);

    let media = root.join("media");
    write(
        &media.join("ab/cd/abcdef0123"),
        &random_bytes(3, 4096),
        0o644,
    );
    write(
        &media.join("ab/ce/large.bin"),
        &random_bytes(4, large_file_bytes),
        0o640,
    );
    write(&media.join("zz/empty"), b"", 0o644);
    fs::create_dir_all(media.join("empty-dir")).expect("empty dir");
    let long_name = "n".repeat(120);
    write(
        &media.join(format!("{long_name}/{long_name}")),
        b"a path longer than 100 bytes",
        0o644,
    );

    write(
        &root.join("signing.key"),
        b"ed25519 secret for the test",
        0o600,
    );
    write(
        &root.join("archipel.toml"),
        b"server_name = \"bzk.archipel.test\"\n",
        0o644,
    );

    vec![
        Source::new("db", db),
        Source::new("vault/db", vault),
        Source::new("media", media),
        Source::new("signing.key", root.join("signing.key")),
        Source::new("archipel.toml", root.join("archipel.toml")),
    ]
}

pub fn options(encryption: Encryption, time: &str) -> CreateOptions {
    let mut options = CreateOptions::new(SERVER_NAME, node_key(), encryption);
    options.time = Some(time.parse().expect("valid time"));
    options.metadata.insert(
        "vault_checkpoint".to_owned(),
        "bzk.archipel.test/vault\n42\nq6b1c0ffee=\n".to_owned(),
    );
    options
}

/// Every file and directory under `root`: relative path -> (mode, content).
pub fn tree(root: &Path) -> BTreeMap<PathBuf, (u32, Option<Vec<u8>>)> {
    let mut found = BTreeMap::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).expect("read dir") {
            let entry = entry.expect("dir entry");
            let path = entry.path();
            let metadata = entry.metadata().expect("metadata");
            let relative = path.strip_prefix(root).expect("under root").to_owned();
            let mode = metadata.permissions().mode() & 0o7777;
            if metadata.is_dir() {
                found.insert(relative, (mode, None));
                stack.push(path);
            } else {
                found.insert(relative, (mode, Some(fs::read(&path).expect("read file"))));
            }
        }
    }
    found
}

/// Asserts that `restored` holds exactly the sources, byte for byte, with
/// their permissions.
pub fn assert_restored(sources: &[Source], restored: &Path) {
    for source in sources {
        let restored_path = restored.join(&source.name);
        if source.path.is_dir() {
            let expected = tree(&source.path);
            let actual = tree(&restored_path);
            assert_eq!(
                expected.keys().collect::<Vec<_>>(),
                actual.keys().collect::<Vec<_>>(),
                "entries of {}",
                source.name
            );
            for (path, expected_entry) in &expected {
                assert!(
                    actual[path] == *expected_entry,
                    "{}/{} differs after restore",
                    source.name,
                    path.display()
                );
            }
        } else {
            assert_eq!(
                fs::read(&restored_path).expect("restored file"),
                fs::read(&source.path).expect("source file")
            );
            let mode =
                |path: &Path| fs::metadata(path).expect("metadata").permissions().mode() & 0o7777;
            assert_eq!(
                mode(&restored_path),
                mode(&source.path),
                "mode of {}",
                source.name
            );
        }
    }
}

/// Sums what the library reports.
#[derive(Default)]
pub struct CountingProgress {
    pub total: AtomicU64,
    pub advanced: AtomicU64,
}

impl Progress for CountingProgress {
    fn begin(&self, _phase: archipel_backup::Phase, total_bytes: u64) {
        self.total.store(total_bytes, Ordering::Relaxed);
        self.advanced.store(0, Ordering::Relaxed);
    }

    fn advance(&self, bytes: u64) {
        self.advanced.fetch_add(bytes, Ordering::Relaxed);
    }
}

/// Names of everything in a directory, hidden names included.
pub fn dir_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}
