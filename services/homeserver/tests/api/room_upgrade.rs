//! Room upgrades: a new room of another version in the old one's place.

use http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::harness::{Reply, TestNode, urlencode};

const V3: &str = "/_matrix/client/v3";

async fn upgrade(node: &TestNode, token: &str, room: &str, version: &str) -> Reply {
    node.request(
        Method::POST,
        &format!("{V3}/rooms/{room}/upgrade"),
        Some(token),
        Some(json!({ "new_version": version })),
    )
    .await
}

async fn state(node: &TestNode, token: &str, room: &str, kind: &str, key: &str) -> Value {
    node.request(
        Method::GET,
        &format!("{V3}/rooms/{room}/state/{kind}/{key}"),
        Some(token),
        None,
    )
    .await
    .ok()
}

#[tokio::test]
async fn the_new_room_takes_the_old_ones_place() {
    let node = TestNode::start(|_| {});
    let alice = node.register("alice").await;
    let bob = node.register("bob").await;
    node.register("carol").await;
    let old = node
        .create_room(
            &alice,
            json!({
                "room_version": "10", "preset": "public_chat", "visibility": "public",
                "name": "Begroting", "topic": "Alles over 2027", "room_alias_name": "begroting",
                "initial_state": [{ "type": "m.room.encryption", "state_key": "",
                    "content": { "algorithm": "m.megolm.v1.aes-sha2" } }],
            }),
        )
        .await;
    node.join(&bob, &old).await.ok();
    node.request(
        Method::POST,
        &format!("{V3}/rooms/{old}/ban"),
        Some(&alice),
        Some(json!({ "user_id": "@carol:localhost" })),
    )
    .await
    .ok();

    let reply = upgrade(&node, &alice, &old, "11").await.ok();
    let new = reply["replacement_room"]
        .as_str()
        .expect("replacement_room")
        .to_owned();
    assert_ne!(new, old);

    let create = state(&node, &alice, &new, "m.room.create", "").await;
    assert_eq!(create["room_version"], "11");
    assert_eq!(create["predecessor"]["room_id"], old.as_str());
    assert_eq!(
        state(&node, &alice, &new, "m.room.name", "").await["name"],
        "Begroting"
    );
    assert_eq!(
        state(&node, &alice, &new, "m.room.topic", "").await["topic"],
        "Alles over 2027"
    );
    assert_eq!(
        state(&node, &alice, &new, "m.room.encryption", "").await["algorithm"],
        "m.megolm.v1.aes-sha2"
    );
    assert_eq!(
        state(&node, &alice, &new, "m.room.member", "@carol:localhost").await["membership"],
        "ban"
    );
    assert_eq!(
        state(&node, &alice, &new, "m.room.canonical_alias", "").await["alias"],
        "#begroting:localhost"
    );
    // The alias and the directory listing moved.
    let resolved = node
        .request(
            Method::GET,
            &format!("{V3}/directory/room/{}", urlencode("#begroting:localhost")),
            Some(&alice),
            None,
        )
        .await
        .ok();
    assert_eq!(resolved["room_id"], new.as_str());
    let listed = node
        .request(
            Method::GET,
            &format!("{V3}/publicRooms"),
            Some(&alice),
            None,
        )
        .await
        .ok();
    let listed: Vec<&str> = listed["chunk"]
        .as_array()
        .expect("chunk")
        .iter()
        .filter_map(|r| r["room_id"].as_str())
        .collect();
    assert_eq!(listed, vec![new.as_str()]);

    // The old room points to the new one; bob may no longer speak there,
    // and follows to the new room.
    let tombstone = state(&node, &alice, &old, "m.room.tombstone", "").await;
    assert_eq!(tombstone["replacement_room"], new.as_str());
    node.request(
        Method::PUT,
        &format!("{V3}/rooms/{old}/send/m.room.message/t-old"),
        Some(&bob),
        Some(json!({ "msgtype": "m.text", "body": "nog hier?" })),
    )
    .await
    .err(StatusCode::FORBIDDEN, "M_FORBIDDEN");
    node.join(&bob, &new).await.ok();
}

#[tokio::test]
async fn only_who_may_and_only_once_to_a_version_this_node_has() {
    let node = TestNode::start(|_| {});
    let alice = node.register("alice").await;
    let bob = node.register("bob").await;
    let room = node
        .create_room(&alice, json!({ "preset": "public_chat" }))
        .await;
    node.join(&bob, &room).await.ok();
    upgrade(&node, &bob, &room, "11")
        .await
        .err(StatusCode::FORBIDDEN, "M_FORBIDDEN");
    for version in ["9", "99"] {
        upgrade(&node, &alice, &room, version)
            .await
            .err(StatusCode::BAD_REQUEST, "M_UNSUPPORTED_ROOM_VERSION");
    }
    upgrade(&node, &alice, &room, "11").await.ok();
    upgrade(&node, &alice, &room, "11")
        .await
        .err(StatusCode::FORBIDDEN, "M_FORBIDDEN");
}
