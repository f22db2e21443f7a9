//! Two users chatting in a private room: delivery via sync, back-pagination,
//! edits, redactions, read receipts and typing notifications.

use std::time::Duration;

use matrix_sdk::room::MessagesOptions;
use matrix_sdk::ruma::api::client::receipt::create_receipt;
use matrix_sdk::ruma::events::receipt::{ReceiptThread, ReceiptType};
use matrix_sdk::ruma::events::room::message::{ReplacementMetadata, RoomMessageEventContent};
use matrix_sdk::ruma::{OwnedEventId, RoomId, UInt};
use matrix_sdk::sync::SyncResponse;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::client::{
    Pair, SYNC_DEADLINE, alice_and_bob_in_room, api_for, ephemeral_json, join, sync_settings,
    sync_until, timeline_json, user_id,
};
use crate::harness::TestServer;

const MESSAGE_COUNT: usize = 100;

/// `(event_id, body)` of the `m.room.message` events from `sender` in `events`.
fn messages_from(events: &[Value], sender: &str) -> Vec<(String, String)> {
    events
        .iter()
        .filter(|event| event["type"] == "m.room.message" && event["sender"] == sender)
        .map(|event| {
            (
                event["event_id"].as_str().expect("event_id").to_owned(),
                event["content"]["body"]
                    .as_str()
                    .expect("text body")
                    .to_owned(),
            )
        })
        .collect()
}

/// Sends text messages as alice and returns `(event_id, body)` for each.
async fn send_texts(pair: &Pair, bodies: &[String]) -> Vec<(String, String)> {
    let room = pair.alice_room();
    let mut sent = Vec::with_capacity(bodies.len());
    for body in bodies {
        let result = room
            .send(RoomMessageEventContent::text_plain(body))
            .await
            .unwrap_or_else(|err| panic!("alice sends {body:?}: {err}"));
        sent.push((result.response.event_id.to_string(), body.clone()));
    }
    sent
}

#[tokio::test(flavor = "multi_thread")]
async fn hundred_messages_arrive_complete_in_order_and_paginate_back() {
    let server = TestServer::start().await;
    let pair = alice_and_bob_in_room(&server, Vec::new()).await;
    let alice = user_id("alice");

    // Bob syncs concurrently with alice's sending, as a live client would.
    let receiver = tokio::spawn({
        let bob = pair.bob.clone();
        let room_id = pair.room_id.clone();
        async move {
            let mut received = Vec::new();
            sync_until(&bob, "bob to receive all messages", |response| {
                received.extend(messages_from(
                    &timeline_json(response, &room_id),
                    alice.as_str(),
                ));
                (received.len() >= MESSAGE_COUNT).then_some(())
            })
            .await;
            received
        }
    });

    let bodies: Vec<String> = (1..=MESSAGE_COUNT)
        .map(|n| format!("message {n:03}"))
        .collect();
    let sent = send_texts(&pair, &bodies).await;
    let received = join(receiver).await;
    assert_eq!(
        received, sent,
        "bob must receive exactly alice's messages, complete and in sending order"
    );

    // Back-pagination from the end of the room returns the same messages,
    // newest first, and reaches the creation of the room.
    let bob_room = pair.bob_room();
    let mut paginated = Vec::new();
    let mut oldest: Option<Value> = None;
    let mut from: Option<String> = None;
    let mut pages = 0;
    loop {
        pages += 1;
        assert!(pages <= 100, "back-pagination does not terminate");
        let mut options = MessagesOptions::backward().from(from.as_deref());
        options.limit = UInt::from(25_u32);
        let page = bob_room
            .messages(options)
            .await
            .unwrap_or_else(|err| panic!("bob paginates back (page {pages}): {err}"));
        let events: Vec<Value> = page
            .chunk
            .iter()
            .map(|event| serde_json::from_str(event.raw().json().get()).expect("event JSON"))
            .collect();
        paginated.extend(messages_from(&events, user_id("alice").as_str()));
        if let Some(last) = events.last() {
            oldest = Some(last.clone());
        }
        match page.end {
            Some(end) if !events.is_empty() => from = Some(end),
            _ => break,
        }
    }
    let mut newest_first = sent.clone();
    newest_first.reverse();
    assert_eq!(
        paginated, newest_first,
        "back-pagination must return every message, newest first"
    );
    assert!(
        pages >= 5,
        "{MESSAGE_COUNT} messages in pages of 25 cannot fit in {pages} pages"
    );
    assert_eq!(
        oldest.as_ref().map(|event| event["type"].clone()),
        Some(json!("m.room.create")),
        "back-pagination must reach the start of the room"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn edits_and_redactions_reach_the_other_user() {
    let server = TestServer::start().await;
    let pair = alice_and_bob_in_room(&server, Vec::new()).await;
    let alice = user_id("alice");
    let room_id = pair.room_id.clone();

    let bodies = ["first", "second", "third"].map(str::to_owned);
    let sent = send_texts(&pair, &bodies).await;
    let mut received = Vec::new();
    sync_until(&pair.bob, "bob to receive three messages", |response| {
        received.extend(messages_from(
            &timeline_json(response, &room_id),
            alice.as_str(),
        ));
        (received.len() >= sent.len()).then_some(())
    })
    .await;
    assert_eq!(received, sent);
    let original: OwnedEventId = sent[1].0.parse().expect("event ID");
    let doomed: OwnedEventId = sent[0].0.parse().expect("event ID");

    // Edit: bob receives an m.replace event relating to the original.
    let edit = RoomMessageEventContent::text_plain("second, edited")
        .make_replacement(ReplacementMetadata::new(original.clone(), None));
    let edit_id = pair
        .alice_room()
        .send(edit)
        .await
        .expect("alice edits")
        .response
        .event_id;
    let edit_event = sync_until(&pair.bob, "bob to receive the edit", |response| {
        timeline_json(response, &room_id)
            .into_iter()
            .find(|event| event["event_id"] == edit_id.as_str())
    })
    .await;
    let content = &edit_event["content"];
    assert_eq!(
        content["m.relates_to"]["rel_type"], "m.replace",
        "edit: {edit_event}"
    );
    assert_eq!(
        content["m.relates_to"]["event_id"],
        original.as_str(),
        "edit: {edit_event}"
    );
    assert_eq!(
        content["m.new_content"]["body"], "second, edited",
        "edit: {edit_event}"
    );

    // Redaction: bob sees the redaction, and the redacted event has lost its
    // content when he fetches it.
    let redaction_id = pair
        .alice_room()
        .redact(&doomed, Some("test redaction"), None)
        .await
        .expect("alice redacts")
        .event_id;
    let redaction = sync_until(&pair.bob, "bob to receive the redaction", |response| {
        timeline_json(response, &room_id)
            .into_iter()
            .find(|event| event["event_id"] == redaction_id.as_str())
    })
    .await;
    assert_eq!(redaction["type"], "m.room.redaction");
    let redacts = redaction["content"]["redacts"]
        .as_str()
        .or(redaction["redacts"].as_str());
    assert_eq!(redacts, Some(doomed.as_str()), "redaction: {redaction}");

    let fetched = pair
        .bob_room()
        .event(&doomed, None)
        .await
        .expect("bob fetches the event");
    let fetched: Value = serde_json::from_str(fetched.raw().json().get()).expect("event JSON");
    assert_redacted(&fetched, redaction_id.as_str());

    let timeline = api_for(&server, &pair.bob).timeline(room_id.as_str()).await;
    let in_timeline = timeline
        .iter()
        .find(|event| event["event_id"] == doomed.as_str())
        .expect("the redacted event stays in the timeline");
    assert_redacted(in_timeline, redaction_id.as_str());
}

#[track_caller]
fn assert_redacted(event: &Value, redaction_id: &str) {
    assert_eq!(event["type"], "m.room.message", "{event}");
    assert_eq!(
        event["content"],
        json!({}),
        "redacted content must be empty: {event}"
    );
    let because = &event["unsigned"]["redacted_because"];
    assert_eq!(
        because["event_id"], redaction_id,
        "unsigned.redacted_because: {event}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn read_receipts_and_typing_reach_the_other_user() {
    let server = TestServer::start().await;
    let pair = alice_and_bob_in_room(&server, Vec::new()).await;
    let alice = user_id("alice");
    let bob = user_id("bob");
    let room_id = pair.room_id.clone();

    let sent = send_texts(&pair, &["read me".to_owned()]).await;
    let read: OwnedEventId = sent[0].0.parse().expect("event ID");
    sync_until(&pair.bob, "bob to receive the message", |response| {
        (!messages_from(&timeline_json(response, &room_id), alice.as_str()).is_empty())
            .then_some(())
    })
    .await;

    // Read receipt.
    pair.bob_room()
        .send_single_receipt(
            create_receipt::v3::ReceiptType::Read,
            ReceiptThread::Unthreaded,
            read.clone(),
        )
        .await
        .expect("bob sends a read receipt");
    sync_until(
        &pair.alice,
        "alice to receive bob's read receipt",
        |response| {
            ephemeral_json(response, &room_id)
                .iter()
                .any(|event| {
                    event["type"] == "m.receipt"
                        && event["content"][read.as_str()]["m.read"][bob.as_str()].is_object()
                })
                .then_some(())
        },
    )
    .await;
    let receipt = pair
        .alice_room()
        .load_user_receipt(ReceiptType::Read, ReceiptThread::Unthreaded, &bob)
        .await
        .expect("load bob's receipt");
    assert_eq!(receipt.map(|(event_id, _)| event_id), Some(read));

    typing_starts_and_stops(&pair.bob_room(), &pair.alice, &room_id, bob.as_str()).await;
}

/// `typer_room`'s user types until `watcher`'s sync shows it (the SDK
/// renews its 4 s notice when needed), then stops, until the sync shows
/// that too.
pub async fn typing_starts_and_stops(
    typer_room: &matrix_sdk::Room,
    watcher: &matrix_sdk::Client,
    room_id: &RoomId,
    typer: &str,
) {
    let give_up = Instant::now() + SYNC_DEADLINE;
    loop {
        typer_room.typing_notice(true).await.expect("typing notice");
        let response = watcher
            .sync_once(sync_settings().timeout(Duration::from_secs(2)))
            .await
            .expect("sync");
        if typing_users(&response, room_id).is_some_and(|users| users.iter().any(|u| u == typer)) {
            break;
        }
        assert!(Instant::now() < give_up, "{typer} was never seen typing");
    }
    typer_room.typing_notice(false).await.expect("stop typing");
    sync_until(watcher, &format!("{typer} to stop typing"), |response| {
        typing_users(response, room_id)
            .is_some_and(|users| !users.iter().any(|u| u == typer))
            .then_some(())
    })
    .await;
}

/// The users in the last `m.typing` event for `room_id`, if there is one.
pub fn typing_users(response: &SyncResponse, room_id: &RoomId) -> Option<Vec<String>> {
    ephemeral_json(response, room_id)
        .iter()
        .rev()
        .find(|event| event["type"] == "m.typing")
        .map(|event| {
            serde_json::from_value(event["content"]["user_ids"].clone())
                .expect("m.typing user_ids is a list of strings")
        })
}
