//! Witnessing across nodes: each node's vault checkpoints are co-signed by
//! its peer, `vault verify` reports it, and a node that truncates its own
//! log is flagged by the peer that witnessed it.

use std::path::Path;

use archipel_store::Batch;
use matrix_sdk::ruma::events::room::message::RoomMessageEventContent;
use serde_json::Value;
use tokio::time::Instant;

use crate::client::{SYNC_DEADLINE, login_client, register_client};
use crate::federation::{Cluster, alice_and_bob_across};
use crate::vault::{open_store, seq_key, vault};

/// `archipel vault verify --json` of the node in `data_dir`.
fn verify_json(data_dir: &Path) -> Value {
    let (_, out, err) = vault(data_dir, &["verify", "--json"]);
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("verify --json: {e}\n{out}\n{err}"))
}

/// Waits until `check` holds for the node's `vault verify --json`.
async fn wait_for_verify(data_dir: &Path, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    let give_up = Instant::now() + SYNC_DEADLINE;
    loop {
        let report = verify_json(data_dir);
        if check(&report) {
            return report;
        }
        assert!(
            Instant::now() < give_up,
            "timed out waiting for {what}: {report:#}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}

/// Whether `witness` co-signed the newest checkpoint in `report`.
fn cosigned_newest(report: &Value, witness: &str) -> bool {
    report["witnessing"]["cosigned"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| {
            c["witness"] == witness
                && c["verifies"] == true
                && c["size"] == report["latest_checkpoint"]
        })
}

#[tokio::test(flavor = "multi_thread")]
async fn peers_cosign_checkpoints_and_flag_a_truncated_log() {
    let mut cluster = Cluster::start(&[("a.test", &["b.test"]), ("b.test", &["a.test"])]).await;
    let (alice, _bob, room_id) = alice_and_bob_across(&cluster).await;
    let room = alice.get_room(&room_id).expect("alice's room");
    for n in 0..6 {
        room.send(RoomMessageEventContent::text_plain(format!("bericht {n}")))
            .await
            .expect("alice sends");
    }

    // Each node's newest checkpoint gets co-signed by the other.
    let (dir_a, dir_b) = (
        cluster.node("a.test").data_dir(),
        cluster.node("b.test").data_dir(),
    );
    let report_a = wait_for_verify(&dir_a, "b.test to co-sign a.test's checkpoint", |r| {
        cosigned_newest(r, "b.test")
    })
    .await;
    wait_for_verify(&dir_b, "a.test to co-sign b.test's checkpoint", |r| {
        cosigned_newest(r, "a.test")
    })
    .await;
    let (ok, text, _) = vault(&dir_a, &["verify"]);
    assert!(ok, "{text}");
    assert!(
        text.contains("witness b.test: co-signed the checkpoint at"),
        "{text}"
    );
    // b.test's operator sees the peer on the federation page, co-signed
    // both ways. (Not a.test's: its actions would be records in the log
    // cut below.)
    let mut operator =
        crate::console_client::ConsoleClient::first_operator(cluster.node("b.test"), "boss").await;
    let page = operator.get("/federation").await;
    assert!(page.contains("<td>a.test</td>"), "{page}");
    assert_eq!(
        page.matches("records,").count(),
        2,
        "co-signed each way:\n{page}"
    );
    let size = report_a["latest_checkpoint"]
        .as_u64()
        .expect("a checkpoint size");

    // a.test's operator cuts off the tail of its log, checkpoints and all.
    cluster.node_mut("a.test").stop().await;
    let kept = size / 2;
    {
        let store = open_store(&dir_a);
        let records = store
            .tree(archipel_vault::columns::SEQ_RECORD)
            .expect("tree");
        let checkpoints = store
            .tree(archipel_vault::columns::SIZE_CHECKPOINT)
            .expect("tree");
        let meta = store
            .tree(archipel_vault::columns::VAULT_META)
            .expect("tree");
        let mut batch = Batch::new();
        for seq in kept..size {
            batch.delete(&records, seq_key(seq));
        }
        for at in kept + 1..=size {
            batch.delete(&checkpoints, at.to_be_bytes());
        }
        batch.put(&meta, b"log_size", kept.to_be_bytes());
        store.commit(batch).expect("truncate");
    }
    cluster.node_mut("a.test").restart().await;
    let alice = login_client(cluster.node("a.test"), "alice").await;
    alice
        .sync_once(crate::client::initial_sync_settings())
        .await
        .expect("alice syncs");
    alice
        .get_room(&room_id)
        .expect("alice's room")
        .send(RoomMessageEventContent::text_plain("na de ingreep"))
        .await
        .expect("alice sends after the truncation");

    // b.test refuses to co-sign the shorter log and keeps the alarm.
    let report_b = wait_for_verify(&dir_b, "b.test to flag a.test", |r| {
        r["witnessing"]["witnessed"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|w| w["origin"] == "a.test/archipel-vault" && w["alarm"].is_object())
    })
    .await;
    let flagged = report_b["witnessing"]["witnessed"]
        .as_array()
        .expect("witnessed")
        .iter()
        .find(|w| w["origin"] == "a.test/archipel-vault")
        .expect("a.test")
        .clone();
    let reason = flagged["alarm"]["reason"].as_str().expect("a reason");
    assert!(reason.contains("truncated"), "{reason}");
    assert_eq!(
        flagged["size"].as_u64(),
        Some(size),
        "the witnessed size stays"
    );
    let (_, text, _) = vault(&dir_b, &["verify"]);
    assert!(
        text.contains("ALARM witnessing a.test/archipel-vault"),
        "{text}"
    );
    // b.test's operator sees it on the federation page and the dashboard.
    let page = operator.get("/federation").await;
    assert!(page.contains("truncated"), "{page}");
    let page = operator.get("/dashboard").await;
    assert!(
        page.contains("a.test showed a log that does not extend the one this node co-signed"),
        "{page}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_erased_message_from_a_peer_is_gone_from_every_file_of_the_node() {
    // A string without repeats, searched for by its middle (see vault.rs).
    const MARK: &str = "Pv3Kx8Rm1Tq6Wz0Hn4Bj9Ls2Dc7Fy5Ga3Ue8Io1Nw6Qt4Xe";
    let needle = &MARK.as_bytes()[4..40];
    let mut cluster = Cluster::start(&[("a.test", &["b.test"]), ("b.test", &["a.test"])]).await;
    let (alice, bob, room_id) = alice_and_bob_across(&cluster).await;
    let _carol = register_client(cluster.node("a.test"), "carol").await;
    let private = bob
        .get_room(&room_id)
        .expect("bob's room")
        .send(RoomMessageEventContent::text_plain(format!(
            "mijn afspraak {MARK}"
        )))
        .await
        .expect("bob sends from b.test")
        .response
        .event_id
        .to_string();
    crate::federation::wait_for_texts(
        &alice,
        &room_id,
        &[("@bob:b.test".to_owned(), format!("mijn afspraak {MARK}"))],
    )
    .await;

    // On a.test, the message of b.test's user is excluded by the procedure.
    cluster.node_mut("a.test").stop().await;
    let dir = cluster.node("a.test").data_dir();
    assert!(
        !crate::vault::files_containing(&dir, needle).is_empty(),
        "a.test holds the message before the erasure"
    );
    // Bob is on another server: alice asks for him, as his delegate.
    crate::vault::vault_ok(&dir, &["delegate", "@bob:b.test", "@alice:a.test"]);
    crate::vault::exclude(
        cluster.node_mut("a.test"),
        &private,
        "alice",
        "a private appointment",
        "carol",
    )
    .await;
    let leftovers = crate::vault::files_containing(&dir, needle);
    assert!(
        leftovers.is_empty(),
        "the erased message is still in {leftovers:?}"
    );
    crate::vault::assert_verifies(&dir);
}
