//! Room version 12: the room's ID is its create event's hash, and its
//! creators outrank every power level.

use http::{Method, StatusCode};
use ruma::{EventId, RoomId};
use serde_json::{Value, json};

use crate::harness::{TestNode, txn};

const V3: &str = "/_matrix/client/v3";

async fn state(node: &TestNode, token: &str, room: &str, kind: &str) -> Value {
    node.request(
        Method::GET,
        &format!("{V3}/rooms/{room}/state/{kind}/"),
        Some(token),
        None,
    )
    .await
    .ok()
}

async fn put_state(
    node: &TestNode,
    token: &str,
    room: &str,
    kind: &str,
    content: Value,
) -> crate::harness::Reply {
    node.request(
        Method::PUT,
        &format!("{V3}/rooms/{room}/state/{kind}/"),
        Some(token),
        Some(content),
    )
    .await
}

#[tokio::test]
async fn a_new_room_is_named_by_its_create_event_and_its_creator_outranks_all() {
    let node = TestNode::start(|_| {});
    let alice = node.register("alice").await;
    let bob = node.register("bob").await;
    let room = node
        .create_room(
            &alice,
            json!({ "room_version": "12", "preset": "public_chat" }),
        )
        .await;

    // `!` and the create event's reference hash, no server name.
    let room_id = RoomId::parse(&room).expect("a room ID");
    assert_eq!(room_id.server_name(), None, "{room}");
    let create_id = EventId::parse(format!("${}", &room[1..])).expect("an event ID");
    let rooms = &node.homeserver.services.rooms;
    let create = rooms
        .federation_json(&create_id)
        .expect("read")
        .expect("the create event is the one the room ID names");
    assert_eq!(create["type"], "m.room.create");
    assert!(
        create.get("room_id").is_none(),
        "the create event names no room: {create}"
    );
    assert_eq!(create["content"]["room_version"], "12");
    assert!(create["content"].get("creator").is_none());
    let power_levels = state(&node, &alice, &room, "m.room.power_levels").await;
    assert!(
        power_levels["users"].get("@alice:localhost").is_none(),
        "creators are not listed: {power_levels}"
    );
    assert_eq!(power_levels["events"]["m.room.tombstone"], 150);

    // Clients still see the room ID on the create event.
    let reply = node
        .request(
            Method::GET,
            &format!("{V3}/rooms/{room}/event/{create_id}"),
            Some(&alice),
            None,
        )
        .await
        .ok();
    assert_eq!(reply["room_id"], room.as_str());

    // Bob, at 100, cannot give himself the lead; Alice's rank has no number.
    node.join(&bob, &room).await.ok();
    let mut levels = power_levels.clone();
    levels["users"]["@bob:localhost"] = json!(100);
    put_state(&node, &alice, &room, "m.room.power_levels", levels.clone())
        .await
        .ok();
    levels["users"]["@alice:localhost"] = json!(50);
    put_state(&node, &bob, &room, "m.room.power_levels", levels)
        .await
        .err(StatusCode::FORBIDDEN, "M_FORBIDDEN");
    put_state(
        &node,
        &alice,
        &room,
        "m.room.name",
        json!({ "name": "Crisisoverleg" }),
    )
    .await
    .ok();
    // Bob at 100 may not tombstone the room (150); Alice may kick Bob.
    put_state(
        &node,
        &bob,
        &room,
        "m.room.tombstone",
        json!({ "body": "weg", "replacement_room": "!elders" }),
    )
    .await
    .err(StatusCode::FORBIDDEN, "M_FORBIDDEN");
    node.request(
        Method::POST,
        &format!("{V3}/rooms/{room}/kick"),
        Some(&alice),
        Some(json!({ "user_id": "@bob:localhost" })),
    )
    .await
    .ok();
}

#[tokio::test]
async fn a_power_levels_event_listing_a_creator_is_refused() {
    let node = TestNode::start(|_| {});
    let alice = node.register("alice").await;
    let reply = node
        .request(
            Method::POST,
            &format!("{V3}/createRoom"),
            Some(&alice),
            Some(json!({ "room_version": "12",
                "power_level_content_override": { "users": { "@alice:localhost": 100 } } })),
        )
        .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.body);
}

#[tokio::test]
async fn a_trusted_private_chat_makes_its_invitees_creators() {
    let node = TestNode::start(|_| {});
    let alice = node.register("alice").await;
    let bob = node.register("bob").await;
    let room = node
        .create_room(
            &alice,
            json!({ "room_version": "12", "preset": "trusted_private_chat",
                "invite": ["@bob:localhost"], "is_direct": true }),
        )
        .await;
    let create = state(&node, &alice, &room, "m.room.create").await;
    assert_eq!(create["additional_creators"], json!(["@bob:localhost"]));
    let power_levels = state(&node, &alice, &room, "m.room.power_levels").await;
    assert_eq!(power_levels["users"], json!({}), "{power_levels}");
    node.join(&bob, &room).await.ok();
    // Bob, a creator, may change what only the highest may.
    put_state(
        &node,
        &bob,
        &room,
        "m.room.history_visibility",
        json!({ "history_visibility": "joined" }),
    )
    .await
    .ok();
}

#[tokio::test]
async fn a_redaction_names_its_target_in_its_content() {
    let node = TestNode::start(|_| {});
    let alice = node.register("alice").await;
    let room = node
        .create_room(&alice, json!({ "room_version": "12" }))
        .await;
    let message = node.send_text(&alice, &room, "vergissing").await;
    let reply = node
        .request(
            Method::PUT,
            &format!("{V3}/rooms/{room}/redact/{message}/{}", txn()),
            Some(&alice),
            Some(json!({ "reason": "typo" })),
        )
        .await
        .ok();
    let redaction = EventId::parse(reply["event_id"].as_str().expect("event_id")).expect("id");
    let rooms = &node.homeserver.services.rooms;
    let federated = rooms
        .federation_json(&redaction)
        .expect("read")
        .expect("stored");
    assert_eq!(federated["content"]["redacts"], message.as_str());
    assert!(federated.get("redacts").is_none(), "{federated}");
    let event = node
        .request(
            Method::GET,
            &format!("{V3}/rooms/{room}/event/{message}"),
            Some(&alice),
            None,
        )
        .await
        .ok();
    assert_eq!(event["content"], json!({}), "the message is redacted");
}

#[tokio::test]
async fn a_room_upgraded_to_version_12_makes_the_upgrader_its_creator() {
    let node = TestNode::start(|_| {});
    let alice = node.register("alice").await;
    node.register("carol").await;
    let old = node
        .create_room(&alice, json!({ "room_version": "11", "name": "Kabinet" }))
        .await;
    let reply = node
        .request(
            Method::POST,
            &format!("{V3}/rooms/{old}/upgrade"),
            Some(&alice),
            Some(json!({ "new_version": "12", "additional_creators": ["@carol:localhost"] })),
        )
        .await
        .ok();
    let new = reply["replacement_room"]
        .as_str()
        .expect("replacement_room");
    assert_eq!(
        RoomId::parse(new).expect("room ID").server_name(),
        None,
        "{new}"
    );
    let create = state(&node, &alice, new, "m.room.create").await;
    assert_eq!(create["room_version"], "12");
    assert_eq!(create["predecessor"]["room_id"], old.as_str());
    assert_eq!(create["additional_creators"], json!(["@carol:localhost"]));
    let power_levels = state(&node, &alice, new, "m.room.power_levels").await;
    assert!(
        power_levels["users"].get("@alice:localhost").is_none()
            && power_levels["users"].get("@carol:localhost").is_none(),
        "creators are not listed: {power_levels}"
    );
    assert_eq!(
        state(&node, &alice, new, "m.room.name").await["name"],
        "Kabinet"
    );
    let tombstone = state(&node, &alice, &old, "m.room.tombstone").await;
    assert_eq!(tombstone["replacement_room"], new);

    // Additional creators need a version that has them.
    let other = node
        .create_room(&alice, json!({ "room_version": "10" }))
        .await;
    node.request(
        Method::POST,
        &format!("{V3}/rooms/{other}/upgrade"),
        Some(&alice),
        Some(json!({ "new_version": "11", "additional_creators": ["@carol:localhost"] })),
    )
    .await
    .err(StatusCode::BAD_REQUEST, "M_INVALID_PARAM");
}

#[tokio::test]
async fn version_12_is_offered_and_can_be_the_default() {
    let node = TestNode::start(|config| {
        config.default_room_version = ruma::RoomVersionId::V12;
    });
    let alice = node.register("alice").await;
    let capabilities = node
        .request(
            Method::GET,
            &format!("{V3}/capabilities"),
            Some(&alice),
            None,
        )
        .await
        .ok();
    assert_eq!(
        capabilities["capabilities"]["m.room_versions"]["available"]["12"],
        "stable"
    );
    let room = node.create_room(&alice, json!({})).await;
    let create = state(&node, &alice, &room, "m.room.create").await;
    assert_eq!(create["room_version"], "12");
    node.send_text(&alice, &room, "hallo").await;
}
