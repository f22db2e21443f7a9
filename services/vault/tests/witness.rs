//! Witnessing between two vaults: a peer's checkpoints are co-signed while
//! its log only grows; a truncated or rewritten log raises an alarm that
//! stays, with the peer's own signed checkpoint as evidence.

mod common;

use archipel_vault::{
    Vault,
    witness::{Refusal, verify_cosignature},
};
use common::{event, open, signer};

const ORIGIN: &str = "test.example/archipel-vault";

fn capture(vault: &Vault, range: std::ops::Range<u64>) {
    vault.capture(range.map(event).collect()).expect("capture");
    vault.checkpoint().expect("checkpoint");
}

/// Presents the logged vault's newest checkpoint to the witness, as the
/// node does: from the size the witness last co-signed.
fn present(logged: &Vault, witness: &Vault, old_size: u64) -> Result<String, Refusal> {
    let (_, note, proof) = logged
        .for_witness(old_size)
        .expect("a proof")
        .expect("a checkpoint");
    witness.witness(
        ORIGIN,
        &signer().verifying_key(),
        &note,
        old_size,
        &proof,
        "witness.example",
    )
}

#[test]
fn a_growing_log_is_cosigned_and_the_cosignature_is_kept() {
    let (logged_dir, witness_dir) = (
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
    );
    let (_, logged) = open(logged_dir.path(), 1000);
    let (_, witness) = open(witness_dir.path(), 1000);

    capture(&logged, 0..10);
    let line = present(&logged, &witness, 0).expect("the first checkpoint is co-signed");
    logged
        .add_cosignature(10, "witness.example", &signer().verifying_key(), &line)
        .expect("the cosignature is kept");

    capture(&logged, 10..25);
    // Presenting from a size the witness did not co-sign is a conflict
    // that names the size it did.
    match present(&logged, &witness, 0) {
        Err(Refusal::Conflict { size }) => assert_eq!(size, 10),
        other => panic!("expected a conflict, got {other:?}"),
    }
    let line = present(&logged, &witness, 10).expect("a log that grew is co-signed");
    let note = logged
        .log()
        .checkpoint_at(25)
        .expect("read")
        .expect("checkpoint");
    let body = &note[..note.find("\n\n").expect("a note") + 1];
    verify_cosignature(&line, "witness.example", &signer().verifying_key(), body)
        .expect("the cosignature verifies");
    // A cosignature by another key is refused.
    let other = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
    assert!(
        logged
            .add_cosignature(25, "witness.example", &other.verifying_key(), &line)
            .is_err()
    );
    logged
        .add_cosignature(25, "witness.example", &signer().verifying_key(), &line)
        .expect("kept");
    assert_eq!(logged.newest_cosigned("witness.example").expect("read"), 25);
    assert_eq!(logged.newest_cosigned("witness").expect("read"), 0);
    let sizes = logged.cosigned_sizes().expect("cosignatures");
    assert_eq!(sizes.len(), 1);
    assert_eq!((sizes[0].0.as_str(), sizes[0].1), ("witness.example", 25));

    let seen = witness.witnessed().expect("witnessed");
    assert_eq!(seen.len(), 1);
    assert_eq!((seen[0].size, seen[0].alarm.is_none()), (25, true));
}

#[test]
fn a_truncated_log_raises_an_alarm_that_stays() {
    let (logged_dir, witness_dir) = (
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
    );
    let (_, logged) = open(logged_dir.path(), 1000);
    let (_, witness) = open(witness_dir.path(), 1000);
    capture(&logged, 0..20);
    present(&logged, &witness, 0).expect("co-signed");

    // The same node, its log started over with fewer records.
    let shorter_dir = tempfile::tempdir().expect("dir");
    let (_, shorter) = open(shorter_dir.path(), 1000);
    capture(&shorter, 0..12);
    match present(&shorter, &witness, 20) {
        Err(Refusal::Inconsistent(reason)) => assert!(reason.contains("truncated"), "{reason}"),
        other => panic!("expected an alarm, got {other:?}"),
    }
    let seen = witness.witnessed().expect("witnessed");
    let alarm = seen[0].alarm.as_ref().expect("an alarm");
    assert!(
        alarm.note.contains("\n12\n"),
        "the evidence is the presented checkpoint"
    );

    // The alarm stays: even the honest log is no longer co-signed.
    capture(&logged, 20..30);
    assert!(matches!(
        present(&logged, &witness, 20),
        Err(Refusal::Inconsistent(_))
    ));
}

#[test]
fn a_rewritten_log_raises_an_alarm() {
    let (logged_dir, witness_dir) = (
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
    );
    let (_, logged) = open(logged_dir.path(), 1000);
    let (_, witness) = open(witness_dir.path(), 1000);
    capture(&logged, 0..8);
    present(&logged, &witness, 0).expect("co-signed");

    // Another history of the same node: different records, then more.
    let forged_dir = tempfile::tempdir().expect("dir");
    let (_, forged) = open(forged_dir.path(), 1000);
    capture(&forged, 100..116);
    match present(&forged, &witness, 8) {
        Err(Refusal::Inconsistent(reason)) => assert!(reason.contains("rewritten"), "{reason}"),
        other => panic!("expected an alarm, got {other:?}"),
    }
}

#[test]
fn a_checkpoint_not_signed_by_the_peer_is_refused() {
    let (logged_dir, witness_dir) = (
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
    );
    let (_, logged) = open(logged_dir.path(), 1000);
    let (_, witness) = open(witness_dir.path(), 1000);
    capture(&logged, 0..5);
    let (_, note, proof) = logged.for_witness(0).expect("proof").expect("checkpoint");
    let other = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
    assert!(matches!(
        witness.witness(ORIGIN, &other.verifying_key(), &note, 0, &proof, "w"),
        Err(Refusal::Invalid(_))
    ));
    assert!(matches!(
        witness.witness(
            "other.example/archipel-vault",
            &signer().verifying_key(),
            &note,
            0,
            &proof,
            "w"
        ),
        Err(Refusal::Invalid(_))
    ));
    assert!(
        witness.witnessed().expect("witnessed").is_empty(),
        "nothing is stored"
    );
}
