//! End-to-end encryption between two matrix-sdk clients: the server relays
//! device keys, one-time keys and to-device room keys, and stores only
//! ciphertext.

use matrix_sdk::ruma::events::InitialStateEvent;
use matrix_sdk::ruma::events::room::encryption::RoomEncryptionEventContent;
use matrix_sdk::ruma::events::room::message::RoomMessageEventContent;
use serde_json::Value;

use crate::client::{alice_and_bob_in_room, api_for, decrypted_json, sync_until, timeline_json};
use crate::harness::TestServer;

#[tokio::test(flavor = "multi_thread")]
async fn encrypted_message_decrypts_on_the_other_client() {
    let server = TestServer::start().await;
    let encryption = InitialStateEvent::with_empty_state_key(
        RoomEncryptionEventContent::with_recommended_defaults(),
    )
    .to_raw_any();
    let pair = alice_and_bob_in_room(&server, vec![encryption]).await;
    let room_id = pair.room_id.clone();

    let alice_room = pair.alice_room();
    assert!(
        alice_room
            .latest_encryption_state()
            .await
            .expect("encryption state")
            .is_encrypted(),
        "the room must be encrypted"
    );

    let secret = "the owl flies at midnight";
    let sent = alice_room
        .send(RoomMessageEventContent::text_plain(secret))
        .await
        .expect("alice sends an encrypted message");
    assert!(
        sent.encryption_info.is_some(),
        "matrix-sdk did not encrypt the message"
    );
    let event_id = sent.response.event_id;

    sync_until(
        &pair.bob,
        "bob to receive the encrypted event",
        |response| {
            timeline_json(response, &room_id)
                .iter()
                .any(|event| event["event_id"] == event_id.as_str())
                .then_some(())
        },
    )
    .await;

    let clear = decrypted_json(&pair.bob, &pair.bob_room(), &event_id).await;
    assert_eq!(clear["type"], "m.room.message", "decrypted: {clear}");
    assert_eq!(clear["content"]["body"], secret, "decrypted: {clear}");
    assert_eq!(clear["sender"], "@alice:localhost", "decrypted: {clear}");

    // What the server stores and serves is ciphertext only.
    let api = api_for(&server, &pair.bob);
    let timeline = api.timeline(room_id.as_str()).await;
    let stored = timeline
        .iter()
        .find(|event| event["event_id"] == event_id.as_str())
        .expect("the event is in /messages");
    assert_eq!(stored["type"], "m.room.encrypted", "stored: {stored}");
    assert_eq!(
        stored["content"]["algorithm"], "m.megolm.v1.aes-sha2",
        "stored: {stored}"
    );
    assert!(
        stored["content"]["ciphertext"].is_string(),
        "stored: {stored}"
    );
    assert!(
        !timeline
            .iter()
            .any(|event| event["type"] == "m.room.message"),
        "an encrypted room must contain no plaintext m.room.message"
    );
    let fetched = api.event(room_id.as_str(), event_id.as_str()).await.ok();
    assert_eq!(fetched["type"], "m.room.encrypted", "GET /event: {fetched}");
    let everything = format!("{}{fetched}", Value::Array(timeline));
    assert!(
        !everything.contains(secret),
        "the plaintext reached the server"
    );
}
