//! Knocking and restricted joins on rooms this node hosts.

use http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::harness::TestNode;

const V3: &str = "/_matrix/client/v3";

fn join_rules(rule: Value) -> Value {
    json!({ "initial_state": [{ "type": "m.room.join_rules", "state_key": "", "content": rule }] })
}

fn member_event(events: &Value, user: &str) -> Option<Value> {
    events
        .as_array()?
        .iter()
        .rev()
        .find(|e| e["type"] == "m.room.member" && e["state_key"] == user)
        .cloned()
}

#[tokio::test]
async fn a_knock_is_seen_and_answered_with_an_invite() {
    let node = TestNode::start(|_| {});
    let alice = node.register("alice").await;
    let bob = node.register("bob").await;
    let room = node
        .create_room(&alice, join_rules(json!({ "join_rule": "knock" })))
        .await;
    let since = node.sync(&alice, None).await["next_batch"]
        .as_str()
        .expect("next_batch")
        .to_owned();
    let bobs_since = node.sync(&bob, None).await["next_batch"]
        .as_str()
        .expect("next_batch")
        .to_owned();

    // Without a knock, bob cannot join.
    node.join(&bob, &room)
        .await
        .err(StatusCode::FORBIDDEN, "M_FORBIDDEN");
    let knocked = node
        .request(
            Method::POST,
            &format!("{V3}/knock/{room}"),
            Some(&bob),
            Some(json!({ "reason": "Ik werk aan de begroting" })),
        )
        .await
        .ok();
    assert_eq!(knocked["room_id"], room.as_str());

    // Alice sees the knock with its reason; bob sees the room he knocked on.
    let sync = node.sync(&alice, Some(&since)).await;
    let knock = member_event(
        &sync["rooms"]["join"][&room]["timeline"]["events"],
        "@bob:localhost",
    )
    .expect("the knock in alice's timeline");
    assert_eq!(knock["content"]["membership"], "knock");
    assert_eq!(knock["content"]["reason"], "Ik werk aan de begroting");
    let bobs = node.sync(&bob, Some(&bobs_since)).await;
    let stripped: Vec<&str> = bobs["rooms"]["knock"][&room]["knock_state"]["events"]
        .as_array()
        .expect("knock_state")
        .iter()
        .filter_map(|e| e["type"].as_str())
        .collect();
    assert!(stripped.contains(&"m.room.create") && stripped.contains(&"m.room.join_rules"));

    // Alice lets him in.
    node.request(
        Method::POST,
        &format!("{V3}/rooms/{room}/invite"),
        Some(&alice),
        Some(json!({ "user_id": "@bob:localhost" })),
    )
    .await
    .ok();
    node.join(&bob, &room).await.ok();
}

#[tokio::test]
async fn knocking_where_the_room_does_not_let_you_is_refused() {
    let node = TestNode::start(|_| {});
    let alice = node.register("alice").await;
    let bob = node.register("bob").await;
    let public = node
        .create_room(&alice, json!({ "preset": "public_chat" }))
        .await;
    let private = node.create_room(&alice, json!({})).await;
    for room in [&public, &private] {
        node.request(
            Method::POST,
            &format!("{V3}/knock/{room}"),
            Some(&bob),
            Some(json!({})),
        )
        .await
        .err(StatusCode::FORBIDDEN, "M_FORBIDDEN");
    }
    // Already in: nothing to knock for.
    node.request(
        Method::POST,
        &format!("{V3}/knock/{public}"),
        Some(&alice),
        Some(json!({})),
    )
    .await
    .err(StatusCode::FORBIDDEN, "M_FORBIDDEN");
}

#[tokio::test]
async fn a_restricted_room_admits_the_members_of_the_rooms_it_allows() {
    let node = TestNode::start(|_| {});
    let alice = node.register("alice").await;
    let bob = node.register("bob").await;
    let space = node
        .create_room(
            &alice,
            json!({ "preset": "public_chat", "creation_content": { "type": "m.space" } }),
        )
        .await;
    let room = node
        .create_room(
            &alice,
            join_rules(json!({
                "join_rule": "restricted",
                "allow": [{ "type": "m.room_membership", "room_id": space }],
            })),
        )
        .await;

    // Not in the space: refused.
    node.join(&bob, &room)
        .await
        .err(StatusCode::FORBIDDEN, "M_FORBIDDEN");
    // In the space: in, vouched for by a member who may invite.
    node.join(&bob, &space).await.ok();
    node.join(&bob, &room).await.ok();
    let member = node
        .request(
            Method::GET,
            &format!("{V3}/rooms/{room}/state/m.room.member/@bob:localhost"),
            Some(&bob),
            None,
        )
        .await
        .ok();
    assert_eq!(member["membership"], "join");
    assert_eq!(
        member["join_authorised_via_users_server"],
        "@alice:localhost"
    );
}
