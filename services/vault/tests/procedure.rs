//! The records procedures at the vault's level: who may ask, who may
//! decide, what a hold blocks, and that an erasure leaves a log that verifies.

mod common;

use archipel_vault::{
    CapturedEvent, Error, MediaSource, Vault,
    procedure::{Classification, HoldScope, Role},
};
use common::{event, event_with, open, refused, verifies};
use serde_json::json;

fn vault_with(events: Vec<CapturedEvent>) -> (tempfile::TempDir, Vault) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_store, vault) = open(dir.path(), 1000);
    vault.capture(events).expect("capture");
    vault
        .set_records_manager("@rm:test.example", true, "operator")
        .expect("records manager");
    (dir, vault)
}

#[test]
fn a_delegate_may_ask_and_an_approval_erases_content_and_media() {
    let files = tempfile::tempdir().expect("tempdir");
    let picture = files.path().join("pic");
    std::fs::write(&picture, b"holiday picture").expect("write");
    let shared = files.path().join("agenda");
    std::fs::write(&shared, b"the agenda, also sent to the team").expect("write");
    let with = |n, sources: &[(&str, &std::path::Path)]| {
        let mut captured = event(n);
        for (mxc, path) in sources {
            captured.media.push(MediaSource {
                mxc: (*mxc).into(),
                path: path.to_path_buf(),
                decrypted: false,
            });
        }
        captured
    };
    let (dir, vault) = vault_with(vec![
        with(0, &[("mxc://test.example/agenda", &shared)]),
        with(
            1,
            &[
                ("mxc://test.example/pic", &picture),
                ("mxc://test.example/agenda", &shared),
            ],
        ),
    ]);
    let blobs = dir.path().join("vault/media/blobs");
    assert_eq!(std::fs::read_dir(&blobs).expect("blobs").count(), 2);
    vault
        .add_delegate("@alice:test.example", "@secretary:test.example", "operator")
        .expect("delegate");
    let request = vault
        .request_exclusion(
            &["$event1".into()],
            "@secretary:test.example",
            "a holiday photo",
            None,
        )
        .expect("a delegate may ask");
    vault
        .decide(&request.reference, true, "@rm:test.example", None)
        .expect("approved");
    assert!(matches!(
        vault.open_event(1),
        Err(Error::Erased { seq: 1, .. })
    ));
    // The picture only the erased message referenced is gone, key and
    // file; the agenda the kept message references too stays.
    assert_eq!(std::fs::read_dir(&blobs).expect("blobs").count(), 1);
    let erased = archipel_vault::record::MediaCopy {
        mxc: "mxc://test.example/pic".into(),
        part: 0,
        size: 15,
        sealed_sha256: String::new(),
        sha256: Some(String::new()),
        decrypted: false,
    };
    assert!(matches!(
        vault.open_media_to(&erased, &mut Vec::new()),
        Err(Error::NotFound(_))
    ));
    let kept = vault.log().record(0).expect("record 0");
    let kept = &kept.event().expect("an event").media[0];
    let mut agenda = Vec::new();
    vault.open_media_to(kept, &mut agenda).expect("kept");
    assert_eq!(agenda, b"the agenda, also sent to the team");
    assert_eq!(
        vault.open_event(0).expect("kept")["content"]["body"],
        "message number 0"
    );
    assert_eq!(vault.pending_purges().expect("read").len(), 1);
    verifies(&dir, &vault);
}

#[test]
fn excluding_a_message_excludes_its_edits() {
    let edit = |n: u64, of: &str, sender: &str| {
        event_with(n, |e| {
            e["sender"] = json!(sender);
            e["content"] = json!({
                "msgtype": "m.text",
                "body": "* corrected",
                "m.new_content": { "msgtype": "m.text", "body": "corrected" },
                "m.relates_to": { "rel_type": "m.replace", "event_id": of },
            });
        })
    };
    let (dir, vault) = vault_with(vec![
        event(0),
        edit(1, "$event0", "@alice:test.example"),
        event(2),
        // Someone else's "edit" is not alice's to exclude.
        edit(3, "$event0", "@bob:test.example"),
        edit(4, "$event2", "@alice:test.example"),
        edit(5, "$event0", "@alice:test.example"),
    ]);
    let request = vault
        .request_exclusion(&["$event0".into()], "@alice:test.example", "private", None)
        .expect("request");
    assert_eq!(request.records, [0, 1, 5]);
    vault
        .decide(&request.reference, true, "@rm:test.example", None)
        .expect("approved");
    for erased in [0, 1, 5] {
        assert!(matches!(
            vault.open_event(erased),
            Err(Error::Erased { .. })
        ));
    }
    for kept in [2, 3, 4] {
        assert!(vault.open_event(kept).is_ok(), "record {kept} is kept");
    }
    verifies(&dir, &vault);
}

#[test]
fn a_rejection_erases_nothing() {
    let (dir, vault) = vault_with(vec![event(0)]);
    let request = vault
        .request_exclusion(&["$event0".into()], "@alice:test.example", "mine", None)
        .expect("request");
    let decided = vault
        .decide(
            &request.reference,
            false,
            "@rm:test.example",
            Some("a business message"),
        )
        .expect("rejected");
    assert!(!decided.decision.expect("decided").approved);
    assert!(vault.open_event(0).is_ok());
    assert!(vault.pending_purges().expect("read").is_empty());
    verifies(&dir, &vault);
}

#[test]
fn procedure_rules_are_enforced() {
    let state = event_with(1, |e| {
        e["type"] = json!("m.room.member");
        e["state_key"] = json!("@alice:test.example");
    });
    let (_dir, vault) = vault_with(vec![event(0), state]);
    refused(
        vault.request_exclusion(&["$event1".into()], "@alice:test.example", "x", None),
        "room state cannot be excluded",
    );
    refused(
        vault.request_exclusion(&["$event0".into()], "@alice:test.example", " ", None),
        "needs a reason",
    );
    refused(
        vault.set_role("@alice:test.example", Role::Capstone, "@alice:test.example"),
        "not a records manager",
    );
    vault
        .set_role("@minister:test.example", Role::Capstone, "@rm:test.example")
        .expect("role");
    assert_eq!(
        vault.role("@minister:test.example").expect("role"),
        Role::Capstone
    );
    assert_eq!(
        vault.role("@alice:test.example").expect("role"),
        Role::Official
    );
    vault
        .classify_room(
            "!room:test.example",
            Classification::PartyPolitical,
            "@rm:test.example",
        )
        .expect("classify");
    assert_eq!(
        vault.classification("!room:test.example").expect("read"),
        Classification::PartyPolitical
    );

    // A records manager who sent the message cannot decide on it either.
    vault
        .set_records_manager("@alice:test.example", true, "operator")
        .expect("records manager");
    vault
        .add_delegate("@alice:test.example", "@secretary:test.example", "operator")
        .expect("delegate");
    let request = vault
        .request_exclusion(
            &["$event0".into()],
            "@secretary:test.example",
            "private",
            None,
        )
        .expect("request");
    refused(
        vault.decide(&request.reference, true, "@alice:test.example", None),
        "cannot decide on its exclusion",
    );
}

#[test]
fn a_room_hold_blocks_until_released() {
    let (_dir, vault) = vault_with(vec![event(0)]);
    let hold = vault
        .place_hold(
            HoldScope::Room("!room:test.example".into()),
            "litigation",
            "@rm:test.example",
        )
        .expect("hold");
    let request = vault
        .request_exclusion(&["$event0".into()], "@alice:test.example", "private", None)
        .expect("request");
    refused(
        vault.decide(&request.reference, true, "@rm:test.example", None),
        &hold.reference,
    );
    assert!(vault.open_event(0).is_ok());
    vault
        .release_hold(&hold.reference, "@rm:test.example")
        .expect("release");
    vault
        .decide(&request.reference, true, "@rm:test.example", None)
        .expect("approved once released");
    assert!(vault.open_event(0).is_err());
}

#[test]
fn the_audit_trail_reads_its_index_and_an_older_log_gets_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, vault) = open(dir.path(), 1000);
    vault.capture((0..3).map(event).collect()).expect("capture");
    vault
        .set_records_manager("@rm:test.example", true, "operator")
        .expect("records manager");
    vault.capture((3..6).map(event).collect()).expect("capture");
    vault
        .set_role("@alice:test.example", Role::Capstone, "@rm:test.example")
        .expect("role");
    let newest: Vec<_> = vault
        .newest_procedure_steps(10)
        .expect("steps")
        .iter()
        .map(|s| s["action"].as_str().expect("an action").to_owned())
        .collect();
    assert_eq!(newest, ["set_role", "add_records_manager"]);
    assert_eq!(vault.newest_procedure_steps(1).expect("steps").len(), 1);
    let all = vault.procedure_steps().expect("steps");
    assert_eq!(all.len(), 2);
    assert_eq!(all[0]["seq"], 3);

    // A log written before the index: it is built at the next open.
    drop(vault);
    {
        let index = store.tree(archipel_vault::columns::SEQ_STEP).expect("tree");
        let meta = store
            .tree(archipel_vault::columns::VAULT_META)
            .expect("tree");
        let mut batch = archipel_store::Batch::new();
        batch.delete_range(&index, [0u8; 8], [0xff; 8]);
        batch.delete(&meta, b"step_index_built");
        store.commit(batch).expect("forget the index");
        assert!(index.iter().next().is_none());
    }
    drop(store);
    let (_store, vault) = open(dir.path(), 1000);
    assert_eq!(vault.procedure_steps().expect("steps"), all);
}
