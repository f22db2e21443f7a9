//! End-to-end encryption across nodes: device keys and one-time keys are
//! fetched from the peer, room keys travel as to-device messages over
//! federation, and device-list changes reach the other node.

use matrix_sdk::ruma::api::client::room::create_room::v3::{Request as CreateRoom, RoomPreset};
use matrix_sdk::ruma::events::InitialStateEvent;
use matrix_sdk::ruma::events::room::encryption::RoomEncryptionEventContent;
use matrix_sdk::ruma::events::room::message::RoomMessageEventContent;
use matrix_sdk::ruma::{OwnedRoomId, UserId};
use serde_json::Value;

use tokio::time::Instant;

use crate::client::{
    SYNC_DEADLINE, api_for, decrypted_json, initial_sync_settings, login_client, register_client,
    sync_settings, sync_until, timeline_json,
};
use crate::federation::{Cluster, join_through};

#[tokio::test(flavor = "multi_thread")]
async fn an_encrypted_room_across_two_nodes_works() {
    let cluster = Cluster::start(&[("a.test", &["b.test"]), ("b.test", &["a.test"])]).await;
    let alice = register_client(cluster.node("a.test"), "alice").await;
    let bob = register_client(cluster.node("b.test"), "bob").await;
    // Each client uploads its device keys on its first sync.
    for client in [&alice, &bob] {
        client
            .sync_once(initial_sync_settings())
            .await
            .expect("first sync");
    }

    let mut request = CreateRoom::new();
    request.preset = Some(RoomPreset::PublicChat);
    request.initial_state = vec![
        InitialStateEvent::with_empty_state_key(
            RoomEncryptionEventContent::with_recommended_defaults(),
        )
        .to_raw_any(),
    ];
    let room_id: OwnedRoomId = alice
        .create_room(request)
        .await
        .expect("alice creates an encrypted room")
        .room_id()
        .to_owned();
    join_through(&bob, &room_id, "a.test")
        .await
        .expect("bob on b.test joins");
    let bob_id = UserId::parse("@bob:b.test").expect("user ID");
    sync_until(&alice, "bob's join on a.test", |response| {
        timeline_json(response, &room_id)
            .iter()
            .any(|e| e["type"] == "m.room.member" && e["state_key"] == bob_id.as_str())
            .then_some(())
    })
    .await;

    // A to B: alice's client fetches bob's device keys and a one-time key
    // from b.test through a.test, and sends the room key to bob's device.
    let alice_room = alice.get_room(&room_id).expect("alice's room");
    let secret = "vertrouwelijk: de begroting";
    let sent = alice_room
        .send(RoomMessageEventContent::text_plain(secret))
        .await
        .expect("alice sends an encrypted message");
    assert!(
        sent.encryption_info.is_some(),
        "the message was not encrypted"
    );
    sync_until(&bob, "alice's encrypted message on b.test", |response| {
        timeline_json(response, &room_id)
            .iter()
            .any(|e| e["event_id"] == sent.response.event_id.as_str())
            .then_some(())
    })
    .await;
    let bob_room = bob.get_room(&room_id).expect("bob's room");
    let clear = decrypted_json(&bob, &bob_room, &sent.response.event_id).await;
    assert_eq!(clear["content"]["body"], secret, "decrypted: {clear}");
    assert_eq!(clear["sender"], "@alice:a.test", "decrypted: {clear}");

    // B to A.
    let reply = "ontvangen, dank";
    let sent = bob_room
        .send(RoomMessageEventContent::text_plain(reply))
        .await
        .expect("bob sends an encrypted reply");
    sync_until(&alice, "bob's encrypted reply on a.test", |response| {
        timeline_json(response, &room_id)
            .iter()
            .any(|e| e["event_id"] == sent.response.event_id.as_str())
            .then_some(())
    })
    .await;
    let clear = decrypted_json(&alice, &alice_room, &sent.response.event_id).await;
    assert_eq!(clear["content"]["body"], reply, "decrypted: {clear}");

    // Neither server holds the plaintext.
    for (name, client) in [("a.test", &alice), ("b.test", &bob)] {
        let timeline = api_for(cluster.node(name), client)
            .timeline(room_id.as_str())
            .await;
        let everything = Value::Array(timeline).to_string();
        assert!(
            !everything.contains(secret) && !everything.contains(reply),
            "{name} stores plaintext"
        );
    }

    // A new device of bob's is announced to a.test: alice's client sees
    // bob's device list change and can encrypt for the new device.
    let bob_phone = login_client(cluster.node("b.test"), "bob").await;
    let phone_id = bob_phone.device_id().expect("a device ID").to_owned();
    bob_phone
        .sync_once(initial_sync_settings())
        .await
        .expect("bob's phone uploads its keys");
    let give_up = Instant::now() + SYNC_DEADLINE;
    loop {
        alice.sync_once(sync_settings()).await.expect("alice syncs");
        let devices = alice
            .encryption()
            .get_user_devices(&bob_id)
            .await
            .expect("bob's devices as alice's client knows them");
        if devices.devices().any(|d| d.device_id() == phone_id) {
            break;
        }
        assert!(
            Instant::now() < give_up,
            "alice's client never learnt of bob's new device {phone_id}"
        );
    }
}
