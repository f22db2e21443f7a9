//! The vault over a real RocksDB store: capture, proofs, checkpoints, and
//! `verify` naming every kind of tampering.

mod common;

use archipel_store::{Batch, Store};
use archipel_vault::{
    MediaSource, Vault,
    checkpoint::Checkpoint,
    columns, merkle,
    verify::{self, Finding},
};
use common::{event, open, signer};
use ed25519_dalek::SigningKey;

struct Fixture {
    dir: tempfile::TempDir,
    vault: Option<Vault>,
    store: Store,
    signer: SigningKey,
}

impl Fixture {
    fn with_records(n: u64, every_records: u64) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, vault) = open(dir.path(), every_records);
        for chunk in (0..n).collect::<Vec<_>>().chunks(7) {
            vault
                .capture(chunk.iter().map(|&i| event(i)).collect())
                .expect("capture");
        }
        vault.checkpoint().expect("checkpoint");
        Self {
            dir,
            vault: Some(vault),
            store,
            signer: signer(),
        }
    }

    fn vault(&self) -> &Vault {
        self.vault.as_ref().expect("open")
    }

    fn verify(&self) -> verify::Report {
        verify::verify(
            self.vault().log(),
            &self.dir.path().join("vault/media"),
            &self.signer.verifying_key(),
            |_, _| {},
        )
        .expect("verify runs")
    }

    fn tamper(&self, f: impl FnOnce(&mut Batch, &Store)) {
        let mut batch = Batch::new();
        f(&mut batch, &self.store);
        self.store.commit(batch).expect("tamper");
    }
}

fn tree(store: &Store, name: &'static str) -> archipel_store::Tree {
    store.tree(name).expect("tree")
}

#[test]
fn captured_events_read_back_and_the_log_verifies() {
    let fx = Fixture::with_records(50, 16);
    let log = fx.vault().log();
    assert_eq!(log.size().expect("size"), 50);
    assert_eq!(log.capture_cursor().expect("cursor"), 50);
    let seq = log
        .seq_of_event("$event17")
        .expect("index")
        .expect("captured");
    let original = fx.vault().open_event(seq).expect("opens");
    assert_eq!(original["content"]["body"], "message number 17");

    let report = fx.verify();
    assert!(report.ok(), "{:?}", report.findings);
    assert_eq!(report.records, 50);
    // After the batches (of 7) that pass 16 new records, 21 and 42, and the forced one at 50.
    let sizes: Vec<u64> = log
        .checkpoints()
        .expect("read")
        .iter()
        .map(|c| c.size)
        .collect();
    assert_eq!(sizes, vec![21, 42, 50]);
    assert_eq!(report.checkpoints_checked, 3);
    assert_eq!(report.latest_checkpoint, Some(50));
}

#[test]
fn replaying_the_outbox_appends_nothing_twice() {
    let fx = Fixture::with_records(10, 1000);
    let cursor = fx
        .vault()
        .capture((0..12).map(event).collect())
        .expect("capture");
    assert_eq!(cursor, 12);
    assert_eq!(fx.vault().log().size().expect("size"), 12);
}

#[test]
fn sealed_content_is_not_stored_in_the_clear() {
    let fx = Fixture::with_records(5, 1000);
    for row in tree(&fx.store, columns::SEQ_RECORD).iter() {
        let (_, bytes) = row.expect("row");
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains("message number"), "{text}");
    }
}

#[test]
fn proofs_verify_against_signed_checkpoints() {
    let fx = Fixture::with_records(37, 10);
    let log = fx.vault().log();
    let latest = log.latest_checkpoint().expect("read").expect("signed");
    let checkpoint =
        Checkpoint::open(&latest.note, &fx.signer.verifying_key()).expect("signature checks");
    assert_eq!(checkpoint.size, 37);
    for seq in 0..37 {
        let proof = log.inclusion_proof(seq, 37).expect("proof");
        let leaf = merkle::leaf_hash(&log.record_bytes(seq).expect("read").expect("present"));
        assert!(merkle::verify_inclusion(
            seq,
            37,
            &leaf,
            &proof,
            &checkpoint.root
        ));
    }
    let older = Checkpoint::open(
        &log.checkpoints().expect("read")[1].note,
        &fx.signer.verifying_key(),
    )
    .expect("valid");
    let proof = log.consistency_proof(older.size, 37).expect("proof");
    assert!(merkle::verify_consistency(
        older.size,
        37,
        &older.root,
        &checkpoint.root,
        &proof
    ));
}

#[test]
fn the_log_survives_a_reopen() {
    let mut fx = Fixture::with_records(21, 1000);
    let root = fx.vault().log().root(21).expect("root");
    drop(fx.vault.take());
    let dir = fx.dir.path().to_owned();
    drop(fx.store);
    let (store, vault) = open(&dir, 1000);
    vault.capture(vec![event(21)]).expect("capture");
    vault.checkpoint().expect("checkpoint");
    assert_eq!(vault.log().root(21).expect("root"), root);
    fx.store = store;
    fx.vault = Some(vault);
    assert!(fx.verify().ok());
}

#[test]
fn a_deleted_record_is_named() {
    let fx = Fixture::with_records(30, 1000);
    fx.tamper(|b, s| b.delete(&tree(s, columns::SEQ_RECORD), 12u64.to_be_bytes()));
    let report = fx.verify();
    assert_eq!(report.findings, vec![Finding::Missing { seq: 12 }]);
}

#[test]
fn an_altered_record_is_named_even_with_its_hashes_rewritten() {
    let fx = Fixture::with_records(30, 1000);
    let records = tree(&fx.store, columns::SEQ_RECORD);
    let bytes = records
        .get(9u64.to_be_bytes())
        .expect("read")
        .expect("present");
    let altered = String::from_utf8(bytes)
        .expect("json")
        .replace("@alice:test.example", "@mallory:test.example");
    fx.tamper(|b, _| b.put(&records, 9u64.to_be_bytes(), altered.as_bytes()));
    let report = fx.verify();
    assert!(
        report.findings.contains(&Finding::Altered { seq: 9 }),
        "{:?}",
        report.findings
    );
    assert!(
        report
            .findings
            .contains(&Finding::CheckpointMismatch { size: 30 })
    );

    // An attacker who also rewrites the stored leaf is still caught by the signed root.
    let leaf = merkle::leaf_hash(altered.as_bytes());
    let nodes = tree(&fx.store, columns::LEVEL_INDEX_NODE);
    let mut key = [0u8; 12];
    key[4..].copy_from_slice(&9u64.to_be_bytes());
    fx.tamper(|b, _| b.put(&nodes, key, leaf));
    let report = fx.verify();
    assert!(!report.findings.contains(&Finding::Altered { seq: 9 }));
    assert!(
        report
            .findings
            .contains(&Finding::CheckpointMismatch { size: 30 }),
        "{:?}",
        report.findings
    );
    assert!(
        report
            .findings
            .iter()
            .any(|f| matches!(f, Finding::NodeAltered { level: 1, index: 4 })),
        "{:?}",
        report.findings
    );
}

#[test]
fn a_truncated_log_is_reported_as_truncation() {
    let fx = Fixture::with_records(30, 1000);
    fx.tamper(|b, s| {
        let records = tree(s, columns::SEQ_RECORD);
        for seq in 25..30u64 {
            b.delete(&records, seq.to_be_bytes());
        }
        b.put(
            &tree(s, columns::VAULT_META),
            b"log_size",
            25u64.to_be_bytes(),
        );
    });
    let report = fx.verify();
    assert!(
        report.findings.contains(&Finding::Truncated {
            checkpoint_size: 30,
            log_size: 25
        }),
        "{:?}",
        report.findings
    );
}

#[test]
fn a_forged_checkpoint_is_refused() {
    let fx = Fixture::with_records(8, 1000);
    let checkpoints = tree(&fx.store, columns::SIZE_CHECKPOINT);
    let forged = Checkpoint {
        origin: "test.example/archipel-vault".into(),
        size: 8,
        root: [1; 32],
    }
    .sign(&SigningKey::from_bytes(&[1u8; 32]));
    fx.tamper(|b, _| b.put(&checkpoints, 8u64.to_be_bytes(), forged.as_bytes()));
    let report = fx.verify();
    assert!(
        report
            .findings
            .iter()
            .any(|f| matches!(f, Finding::CheckpointInvalid { size: 8, .. })),
        "{:?}",
        report.findings
    );
}

/// Every file is sealed once, however many events (and URIs) reference
/// it, in chunks, never held whole; verify reads each once.
#[test]
fn a_file_is_sealed_once_however_often_it_is_referenced() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_store, vault) = open(dir.path(), 1000);
    // Larger than a sealing chunk, with a marker in its second chunk.
    let mut bytes = vec![b'x'; 100_000];
    bytes[70_000..70_007].copy_from_slice(b"picture");
    let file = dir.path().join("upload");
    std::fs::write(&file, &bytes).expect("write");
    let referencing = |n, mxc: &str| {
        let mut captured = event(n);
        captured.media.push(MediaSource {
            mxc: mxc.into(),
            path: file.clone(),
            decrypted: false,
        });
        captured
    };
    // Twice in one batch, once later, and once under another URI.
    vault
        .capture(vec![
            referencing(0, "mxc://test.example/abc"),
            referencing(1, "mxc://test.example/abc"),
        ])
        .expect("capture");
    vault
        .capture(vec![
            referencing(2, "mxc://test.example/abc"),
            referencing(3, "mxc://test.example/forwarded"),
        ])
        .expect("capture");
    vault.checkpoint().expect("checkpoint");
    let blobs = dir.path().join("vault/media/blobs");
    let sealed: Vec<_> = std::fs::read_dir(&blobs)
        .expect("dir")
        .map(|e| e.expect("entry").path())
        .collect();
    assert_eq!(sealed.len(), 1, "one sealed copy: {sealed:?}");
    let on_disk = std::fs::read(&sealed[0]).expect("read");
    assert!(!on_disk.windows(7).any(|w| w == b"picture"));
    for seq in 0..4 {
        let record = vault.log().record(seq).expect("record");
        let copy = &record.event().expect("an event").media[0];
        assert_eq!(copy.size, 100_000);
        let mut opened = Vec::new();
        vault.open_media_to(copy, &mut opened).expect("opens");
        assert_eq!(opened, bytes, "record {seq}");
    }

    let media_dir = dir.path().join("vault/media");
    let report = verify::verify(
        vault.log(),
        &media_dir,
        &signer().verifying_key(),
        |_, _| {},
    )
    .expect("verify");
    assert!(report.ok(), "{:?}", report.findings);
    std::fs::write(&sealed[0], b"replaced").expect("write");
    let report = verify::verify(
        vault.log(),
        &media_dir,
        &signer().verifying_key(),
        |_, _| {},
    )
    .expect("verify");
    assert_eq!(
        report.findings,
        vec![Finding::MediaAltered { seq: 0, part: 0 }]
    );
}

#[test]
fn messages_are_counted_per_day_and_state_is_not() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_store, vault) = open(dir.path(), 1000);
    assert_eq!(vault.messages_per_day(3).expect("read"), [0, 0, 0]);
    vault.capture((0..5).map(event).collect()).expect("capture");
    vault
        .capture(vec![
            common::event_with(5, |e| e["type"] = "m.room.encrypted".into()),
            common::event_with(6, |e| {
                e["type"] = "m.room.topic".into();
                e["state_key"] = "".into();
            }),
        ])
        .expect("capture");
    let days = vault.messages_per_day(30).expect("read");
    assert_eq!(days.len(), 30);
    assert_eq!(days[29], 6, "today's: five messages and an encrypted one");
    assert!(days[..29].iter().all(|&n| n == 0));
}
