//! The archive member, seen by matrix-sdk clients in their default
//! configuration: in every room, with a device cross-signed by its own
//! identity, and a DM still named after the other person.

use std::path::Path;
use std::time::Duration;

use matrix_sdk::attachment::AttachmentConfig;
use matrix_sdk::ruma::api::client::room::create_room;
use matrix_sdk::ruma::events::InitialStateEvent;
use matrix_sdk::ruma::events::room::encryption::RoomEncryptionEventContent;
use matrix_sdk::ruma::events::room::message::RoomMessageEventContent;
use matrix_sdk::ruma::{OwnedRoomId, UserId};
use matrix_sdk::{RoomDisplayName, RoomState};
use serde_json::{Value, json};

use crate::client::{
    Api, alice_and_bob_in_room, initial_sync_settings, png, register_client,
    register_identity_based, sync_until, timeline_json, user_id,
};
use crate::federation::{Cluster, join_through};
use crate::harness::{TestServer, eventually, files_under, json_lines};
use crate::olm_device::OlmDevice;
use crate::vault::{
    assert_verifies, backup_and_restore, exclude, files_containing, vault_ok, vault_refused,
    verify_export,
};

#[tokio::test(flavor = "multi_thread")]
async fn an_encrypted_dm_has_the_archive_device_and_reads_as_a_dm() {
    let server = TestServer::start().await;
    let alice = register_client(&server, "alice").await;
    let bob = register_client(&server, "bob").await;
    for client in [&alice, &bob] {
        client
            .sync_once(initial_sync_settings())
            .await
            .expect("initial sync");
    }
    let bob_id = user_id("bob");
    let archive = user_id("archive");

    // matrix-sdk's own DM: trusted private chat, encrypted from the start.
    let room = alice.create_dm(&bob_id).await.expect("alice opens a DM");
    let room_id = room.room_id().to_owned();
    sync_until(&bob, "bob to see the invite", |response| {
        response.rooms.invited.contains_key(&room_id).then_some(())
    })
    .await;
    let invited = bob.get_room(&room_id).expect("the invited room");
    invited.join().await.expect("bob joins");
    sync_until(&alice, "alice to see bob join", |response| {
        response
            .rooms
            .joined
            .get(&room_id)
            .is_some_and(|r| !r.timeline.events.is_empty())
            .then_some(())
    })
    .await;

    let room = alice.get_room(&room_id).expect("alice's room");
    assert_eq!(room.state(), RoomState::Joined);
    assert!(
        room.latest_encryption_state()
            .await
            .expect("encryption state")
            .is_encrypted()
    );
    // Everyone sees that the conversation is archived...
    let members = room
        .members(matrix_sdk::RoomMemberships::JOIN)
        .await
        .expect("members");
    assert!(
        members.iter().any(|m| m.user_id() == archive),
        "the archive member is in the member list"
    );
    // ...and the DM is still named after bob, and still a DM.
    assert_eq!(
        room.display_name().await.expect("display name"),
        RoomDisplayName::Calculated("bob".into())
    );
    assert!(room.is_direct().await.expect("is direct"));

    // The archive's device is cross-signed by its own identity, so clients
    // that share keys only with owner-verified devices share with it.
    let devices = alice
        .encryption()
        .get_user_devices(&archive)
        .await
        .expect("archive's devices");
    let devices: Vec<_> = devices.devices().collect();
    assert_eq!(devices.len(), 1, "one archive device");
    assert!(
        devices[0].is_cross_signed_by_owner(),
        "the archive device is signed by its owner's identity"
    );

    // Both write; the vault keeps the ciphertext and, once the archive's
    // device has the room keys, the plaintext.
    let bob_room = bob.get_room(&room_id).expect("bob's room");
    let mut sent = Vec::new();
    for (room, text) in [
        (&room, "the budget is 4.2 million"),
        (&bob_room, "agreed, send it to the minister"),
        (&room, "sent at 14:00"),
    ] {
        let response = room
            .send(RoomMessageEventContent::text_plain(text))
            .await
            .expect("send an encrypted message");
        assert!(
            response.encryption_info.is_some(),
            "matrix-sdk encrypted it"
        );
        sent.push((response.response.event_id.to_string(), text));
    }
    let dir = server.data_dir();
    until_encrypted(&dir, 3, 0).await;
    for (event_id, text) in &sent {
        let shown = vault_ok(&dir, &["show", "--event", event_id]);
        assert!(shown.contains("m.room.encrypted"), "{shown}");
        assert!(shown.contains("decrypted by record"), "{shown}");
        assert!(shown.contains(text), "{shown}");
    }
    assert_verifies(&dir);

    // The export shows the plaintext, and proves it offline.
    let (out, summary, page) = export_room(&dir, room_id.as_str());
    assert_eq!(summary["decrypted"], 3, "{summary}");
    assert_eq!(summary["undecrypted"], 0, "{summary}");
    for (_, text) in &sent {
        assert!(page.contains(text), "the page lacks {text:?}");
    }
    assert!(page.contains("decrypted by the archive"));
    let checked = verify_export(&dir, &out);
    assert!(
        checked.status.success(),
        "{}",
        String::from_utf8_lossy(&checked.stdout)
    );
}

/// Removing the archive member raises an alarm, and what is said after is a
/// listed gap, never a silent one.
#[tokio::test(flavor = "multi_thread")]
async fn removing_the_archive_member_raises_the_alarm_and_leaves_listed_gaps() {
    let server = TestServer::start().await;
    let alice = register_client(&server, "alice").await;
    alice
        .sync_once(initial_sync_settings())
        .await
        .expect("initial sync");
    let archive = user_id("archive");
    let mut request = matrix_sdk::ruma::api::client::room::create_room::v3::Request::new();
    request.name = Some("cabinet".into());
    request.initial_state = vec![
        matrix_sdk::ruma::events::InitialStateEvent::with_empty_state_key(
            matrix_sdk::ruma::events::room::encryption::RoomEncryptionEventContent::with_recommended_defaults(),
        )
        .to_raw_any(),
    ];
    let room = alice.create_room(request).await.expect("create a room");
    let room_id = room.room_id().to_owned();
    room.kick_user(&archive, Some("no archive here"))
        .await
        .expect("alice removes the archive member");
    alice
        .sync_once(initial_sync_settings())
        .await
        .expect("sync");
    let secret = room
        .send(RoomMessageEventContent::text_plain("off the record"))
        .await
        .expect("send")
        .response
        .event_id
        .to_string();

    let dir = server.data_dir();
    let status = eventually("the gap to be listed", Duration::from_secs(30), || {
        let (dir, secret) = (dir.clone(), secret.clone());
        async move {
            let status = vault_ok(&dir, &["status"]);
            status.contains(&secret).then_some(status)
        }
    })
    .await;
    assert!(
        status.contains(&format!(
            "ALARM: the archive member was removed from {room_id} by @alice:localhost"
        )),
        "{status}"
    );
    assert!(
        status.contains("0 decrypted, 1 without their room key"),
        "{status}"
    );
    let verified = vault_ok(&dir, &["verify"]);
    assert!(verified.contains("ALARM"), "{verified}");
    assert!(verified.contains("GAP: record"), "{verified}");
    let shown = vault_ok(&dir, &["show", "--event", &secret]);
    assert!(shown.contains("not decrypted"), "{shown}");
}

/// Two federating nodes: alice on a.test makes a private room with
/// `request` and invites bob of b.test, who joins.
async fn bob_of_b_in_a_room_of_alice(
    mut request: create_room::v3::Request,
) -> (Cluster, matrix_sdk::Client, matrix_sdk::Client, OwnedRoomId) {
    let cluster = Cluster::start(&[("a.test", &["b.test"]), ("b.test", &["a.test"])]).await;
    let alice = register_client(cluster.node("a.test"), "alice").await;
    let bob = register_client(cluster.node("b.test"), "bob").await;
    for client in [&alice, &bob] {
        client
            .sync_once(initial_sync_settings())
            .await
            .expect("first sync");
    }
    request.preset = Some(create_room::v3::RoomPreset::PrivateChat);
    request.invite = vec![UserId::parse("@bob:b.test").expect("user ID")];
    let room_id = alice
        .create_room(request)
        .await
        .expect("alice creates the room")
        .room_id()
        .to_owned();
    sync_until(&bob, "the invite on b.test", |response| {
        response.rooms.invited.contains_key(&room_id).then_some(())
    })
    .await;
    join_through(&bob, &room_id, "a.test")
        .await
        .expect("bob joins from b.test");
    (cluster, alice, bob, room_id)
}

/// Each client sends its text into encrypted room `room_id`, in order;
/// returns the event IDs with their texts.
async fn send_encrypted<'a>(
    room_id: &matrix_sdk::ruma::RoomId,
    messages: &[(&matrix_sdk::Client, &'a str)],
) -> Vec<(String, &'a str)> {
    let mut sent = Vec::new();
    for (client, text) in messages {
        let response = client
            .get_room(room_id)
            .expect("the room")
            .send(RoomMessageEventContent::text_plain(*text))
            .await
            .expect("send");
        assert!(response.encryption_info.is_some(), "encrypted");
        sent.push((response.response.event_id.to_string(), *text));
    }
    sent
}

/// Waits until the vault at `dir` has decrypted every message of `sent`
/// (and has no other encrypted event waiting), shows each text, and
/// verifies.
async fn assert_all_readable(dir: &Path, sent: &[(String, &str)]) {
    until_encrypted(dir, sent.len() as u64, 0).await;
    for (event_id, text) in sent {
        let shown = vault_ok(dir, &["show", "--event", event_id]);
        assert!(shown.contains(text), "{}: {shown}", dir.display());
    }
    assert_verifies(dir);
}

/// Exports room `room_id` of the node at `dir` into `export/` beside its
/// data folder: the folder, the summary and the conversation page.
fn export_room(dir: &Path, room_id: &str) -> (std::path::PathBuf, Value, String) {
    let out = dir.parent().expect("parent").join("export");
    let summary: Value = serde_json::from_str(&vault_ok(
        dir,
        &[
            "export",
            "--room",
            room_id,
            "--out",
            out.to_str().expect("path"),
            "--json",
        ],
    ))
    .expect("JSON");
    let page = files_under(&out)
        .into_iter()
        .find(|p| p.ends_with("conversation.html"))
        .map(|p| std::fs::read_to_string(p).expect("html"))
        .expect("a conversation page");
    (out, summary, page)
}

/// Waits until `vault status` counts `decrypted` encrypted events with
/// their plaintext and `undecrypted` still without their room key.
async fn until_encrypted(dir: &Path, decrypted: u64, undecrypted: u64) {
    let what = format!("{decrypted} decrypted and {undecrypted} undecrypted events");
    eventually(&what, Duration::from_secs(30), || {
        let dir = dir.to_owned();
        async move {
            let status: Value =
                serde_json::from_str(&vault_ok(&dir, &["status", "--json"])).expect("JSON");
            (status["encrypted"]["decrypted"] == decrypted
                && status["encrypted"]["undecrypted"] == undecrypted)
                .then_some(())
        }
    })
    .await;
}

/// A group of three in an encrypted private room: every message is
/// archived readable, also from a client that shares room keys only with
/// devices their owner signed.
#[tokio::test(flavor = "multi_thread")]
async fn an_encrypted_group_of_three_is_archived_readable() {
    let server = TestServer::start().await;
    let alice = register_client(&server, "alice").await;
    let bob = register_client(&server, "bob").await;
    // Carol's client is careful: room keys go to owner-signed devices only.
    let carol = register_identity_based(&server, "carol").await;
    for client in [&alice, &bob, &carol] {
        client
            .sync_once(initial_sync_settings())
            .await
            .expect("initial sync");
    }
    let mut request = create_room::v3::Request::new();
    request.preset = Some(create_room::v3::RoomPreset::PrivateChat);
    request.invite = vec![user_id("bob"), user_id("carol")];
    request.initial_state = vec![
        InitialStateEvent::with_empty_state_key(
            RoomEncryptionEventContent::with_recommended_defaults(),
        )
        .to_raw_any(),
    ];
    let room_id = alice
        .create_room(request)
        .await
        .expect("alice creates the room")
        .room_id()
        .to_owned();
    for (client, name) in [(&bob, "bob"), (&carol, "carol")] {
        sync_until(client, &format!("{name} to see the invite"), |response| {
            response.rooms.invited.contains_key(&room_id).then_some(())
        })
        .await;
        client
            .get_room(&room_id)
            .expect("the invited room")
            .join()
            .await
            .expect("join");
    }
    // Every sender sees everyone joined before the first message (the
    // summary's count leaves the archive member out).
    for client in [&alice, &bob, &carol] {
        sync_until(client, "all three joined", |_| {
            let room = client.get_room(&room_id)?;
            (room.joined_members_count() == 3).then_some(())
        })
        .await;
    }

    let sent = send_encrypted(
        &room_id,
        &[
            (&alice, "the draft is attached"),
            (&bob, "two remarks on page 3"),
            (&carol, "approved from my side"),
            (&alice, "then it goes out today"),
        ],
    )
    .await;
    assert_all_readable(&server.data_dir(), &sent).await;
}

/// A room key that reaches the archive after its message (a slow or
/// reordering client, a federation delay) still decrypts it, once it
/// arrives.
#[tokio::test(flavor = "multi_thread")]
async fn a_room_key_that_arrives_after_its_message_still_decrypts_it() {
    let server = TestServer::start().await;
    let api = Api::new(server.url());
    let session = api.register("dave").await;
    let dave = api.with_token(&session.access_token);
    let device = OlmDevice::new(server.url(), &user_id("dave"), &session).await;
    let room_id: OwnedRoomId = dave
        .post(
            "/_matrix/client/v3/createRoom",
            &json!({
                "preset": "private_chat",
                "initial_state": [{ "type": "m.room.encryption", "state_key": "",
                                    "content": { "algorithm": "m.megolm.v1.aes-sha2" } }],
            }),
        )
        .await
        .ok()["room_id"]
        .as_str()
        .expect("room_id")
        .try_into()
        .expect("a room ID");

    // The key is made and addressed to the archive's device, but held back.
    let archive = user_id("archive");
    let held = device.room_key_for(&room_id, &[&archive]).await;
    assert!(!held.is_empty(), "a room key for the archive's device");
    let event_id = device
        .send_encrypted(
            &room_id,
            "late-1",
            json!({ "msgtype": "m.text", "body": "said before the key was sent" }),
        )
        .await;
    let dir = server.data_dir();
    until_encrypted(&dir, 0, 1).await;
    let shown = vault_ok(&dir, &["show", "--event", &event_id]);
    assert!(shown.contains("not decrypted"), "{shown}");

    // The key arrives; the decryption record follows.
    for request in &held {
        device.send_to_device(request).await;
    }
    until_encrypted(&dir, 1, 0).await;
    let shown = vault_ok(&dir, &["show", "--event", &event_id]);
    assert!(shown.contains("said before the key was sent"), "{shown}");
    assert_verifies(&dir);
}

/// An exclusion of an encrypted message erases both its records: the
/// ciphertext and the decryption record. Nothing left on the node, or in a
/// backup made afterwards, reproduces the text, not even with the vault
/// key or the session key the archive's device keeps.
#[tokio::test(flavor = "multi_thread")]
async fn an_excluded_encrypted_message_leaves_no_readable_trace() {
    let mut server = TestServer::start().await;
    let pair = alice_and_bob_in_room(
        &server,
        vec![
            InitialStateEvent::with_empty_state_key(
                RoomEncryptionEventContent::with_recommended_defaults(),
            )
            .to_raw_any(),
        ],
    )
    .await;
    let private = pair
        .alice_room()
        .send(RoomMessageEventContent::text_plain(
            "the appointment with my doctor",
        ))
        .await
        .expect("send")
        .response
        .event_id
        .to_string();
    let dir = server.data_dir();
    until_encrypted(&dir, 1, 0).await;
    server.stop().await;

    let shown = vault_ok(&dir, &["show", "--event", &private]);
    assert!(shown.contains("the appointment with my doctor"), "{shown}");
    let decryption = shown
        .lines()
        .find_map(|l| l.strip_prefix("decrypted by record "))
        .and_then(|rest| rest.strip_suffix(':'))
        .expect("the decryption record's number")
        .to_owned();
    // The ciphertext is in the homeserver's files until the erasure: the
    // session key would decrypt it.
    let event: Value = serde_json::from_str(
        shown
            .split("\ndecrypted by record")
            .next()
            .expect("the ciphertext event"),
    )
    .expect("JSON");
    let ciphertext = event["content"]["ciphertext"]
        .as_str()
        .expect("ciphertext")
        .to_owned();
    let needle = &ciphertext.as_bytes()[8..44];
    assert!(!files_containing(&dir, needle).is_empty());
    // Search reads the decrypted text, and files it under the ciphertext's
    // record.
    let found = json_lines(&vault_ok(&dir, &["search", "doctor", "--json"]));
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0]["excerpt"], "the appointment with my doctor");
    assert_eq!(found[0]["msgtype"], "m.text");

    let reference = exclude(
        &mut server,
        &private,
        "alice",
        "a private appointment",
        "carol",
    )
    .await;

    for args in [
        vec!["show", "--event", private.as_str()],
        vec!["show", "--seq", decryption.as_str()],
    ] {
        vault_refused(&dir, &args, &format!("erased by decision {reference}"));
    }
    assert_verifies(&dir);
    assert!(
        json_lines(&vault_ok(&dir, &["search", "doctor", "--json"])).is_empty(),
        "an erased message is found by no search"
    );
    let status: Value = serde_json::from_str(&vault_ok(&dir, &["status", "--json"])).expect("JSON");
    assert_eq!(status["encrypted"]["undecrypted"], 0, "{status}");
    assert!(
        files_containing(&dir, needle).is_empty(),
        "the ciphertext is still on the node"
    );
    let (_backups, restored) = backup_and_restore(&dir);
    assert!(files_containing(&restored, needle).is_empty());
    vault_refused(
        &restored,
        &["show", "--seq", decryption.as_str()],
        &format!("erased by decision {reference}"),
    );
}

/// An encrypted private room between two ministries: each node's archive
/// member is in it, receives the room keys like any member, and each vault
/// holds the plaintext of the whole conversation.
#[tokio::test(flavor = "multi_thread")]
async fn a_federated_encrypted_room_is_archived_readable_on_both_nodes() {
    let mut request = create_room::v3::Request::new();
    request.initial_state = vec![
        InitialStateEvent::with_empty_state_key(
            RoomEncryptionEventContent::with_recommended_defaults(),
        )
        .to_raw_any(),
    ];
    let (cluster, alice, bob, room_id) = bob_of_b_in_a_room_of_alice(request).await;
    // b.test's archive member follows bob in (invited by him: the room is
    // private), before anyone speaks.
    let archive_b = UserId::parse("@archive:b.test").expect("user ID");
    for client in [&alice, &bob] {
        sync_until(client, "b.test's archive member to join", |response| {
            timeline_json(response, &room_id)
                .iter()
                .any(|e| {
                    e["type"] == "m.room.member"
                        && e["state_key"] == archive_b.as_str()
                        && e["content"]["membership"] == "join"
                })
                .then_some(())
        })
        .await;
    }

    let sent = send_encrypted(
        &room_id,
        &[
            (&alice, "the joint letter is ready for review"),
            (&bob, "our minister signs on Friday"),
        ],
    )
    .await;
    for node in ["a.test", "b.test"] {
        assert_all_readable(&cluster.node(node).data_dir(), &sent).await;
    }
}

/// An image sent in an encrypted room: the homeserver holds only its
/// ciphertext; the archive fetches it, checks its hash, decrypts it and
/// keeps the picture itself, which the export shows and proves.
#[tokio::test(flavor = "multi_thread")]
async fn an_encrypted_image_is_archived_decrypted() {
    let server = TestServer::start().await;
    let pair = alice_and_bob_in_room(
        &server,
        vec![
            InitialStateEvent::with_empty_state_key(
                RoomEncryptionEventContent::with_recommended_defaults(),
            )
            .to_raw_any(),
        ],
    )
    .await;
    let room_id = pair.room_id.clone();
    let picture = png(9, 7);
    let image = pair
        .alice_room()
        .send_attachment(
            "org-chart.png",
            &mime::IMAGE_PNG,
            picture.clone(),
            AttachmentConfig::new(),
        )
        .await
        .expect("send an encrypted image")
        .event_id
        .to_string();
    let dir = server.data_dir();
    until_encrypted(&dir, 1, 0).await;
    let shown = eventually("the image to be archived", Duration::from_secs(30), || {
        let (dir, image) = (dir.clone(), image.clone());
        async move {
            let shown = vault_ok(&dir, &["show", "--event", &image]);
            shown.contains("decrypted and archived").then_some(shown)
        }
    })
    .await;
    assert!(shown.contains("org-chart.png"), "{shown}");
    assert!(
        shown.contains(&format!("{} bytes", picture.len())),
        "{shown}"
    );
    // On the node the picture is sealed, never in the clear.
    assert!(files_containing(&dir, &picture[16..48]).is_empty());
    assert_verifies(&dir);

    let (out, summary, page) = export_room(&dir, room_id.as_str());
    assert_eq!(summary["attachments"], 1, "{summary}");
    let exported: Vec<_> = files_under(&out)
        .into_iter()
        .filter(|p| p.parent().is_some_and(|d| d.ends_with("attachments")))
        .collect();
    assert_eq!(exported.len(), 1, "{exported:?}");
    assert_eq!(std::fs::read(&exported[0]).expect("read"), picture);
    let name = exported[0]
        .file_name()
        .and_then(|n| n.to_str())
        .expect("a name");
    assert!(page.contains(name), "the page links the picture");
    let checked = verify_export(&dir, &out);
    assert!(
        checked.status.success(),
        "{}",
        String::from_utf8_lossy(&checked.stdout)
    );
    // A picture swapped in the export is caught.
    let mut swapped = picture.clone();
    swapped[picture.len() / 2] ^= 0x10;
    std::fs::write(&exported[0], &swapped).expect("write");
    let checked = verify_export(&dir, &out);
    assert!(!checked.status.success());
    assert!(String::from_utf8_lossy(&checked.stdout).contains("differs from the archived file"));
}

/// In a peer's room where only moderators may invite, the archive member
/// of the joining user's node cannot follow them in: that node's vault
/// records the room as a gap and raises the alarm.
#[tokio::test(flavor = "multi_thread")]
async fn a_peer_room_that_refuses_the_archive_member_is_a_listed_gap() {
    let mut request = create_room::v3::Request::new();
    request.power_level_content_override = Some(
        matrix_sdk::ruma::serde::Raw::new(&json!({ "invite": 50 }))
            .expect("JSON")
            .cast_unchecked(),
    );
    let (cluster, _alice, _bob, room_id) = bob_of_b_in_a_room_of_alice(request).await;
    let dir = cluster.node("b.test").data_dir();
    let status = eventually("the refusal on record", Duration::from_secs(30), || {
        let dir = dir.clone();
        async move {
            let status = vault_ok(&dir, &["status"]);
            status.contains("ALARM").then_some(status)
        }
    })
    .await;
    assert!(
        status.contains(&format!(
            "ALARM: the archive member could not join {room_id} after @bob:b.test did"
        )),
        "{status}"
    );
    let steps = vault_ok(&dir, &["procedure", "--json"]);
    assert!(steps.contains("archive_member_refused"), "{steps}");
    let verified = vault_ok(&dir, &["verify"]);
    assert!(verified.contains("ALARM"), "{verified}");
}
