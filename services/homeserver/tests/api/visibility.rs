//! History visibility: who reads which of a room's events (security review
//! H2 and H3).

use http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::harness::TestNode;

const V3: &str = "/_matrix/client/v3";

/// The bodies of the `m.room.message` events in a list of client events.
fn texts(events: &Value) -> Vec<String> {
    events
        .as_array()
        .map(|events| {
            events
                .iter()
                .filter(|e| e["type"] == "m.room.message")
                .filter_map(|e| e["content"]["body"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

async fn history(node: &TestNode, token: &str, room: &str) -> Vec<String> {
    let reply = node
        .request(
            Method::GET,
            &format!("{V3}/rooms/{room}/messages?dir=b&limit=100"),
            Some(token),
            None,
        )
        .await
        .ok();
    texts(&reply["chunk"])
}

async fn post(node: &TestNode, token: &str, path: &str, body: Value) -> Value {
    node.request(
        Method::POST,
        &format!("{V3}{path}"),
        Some(token),
        Some(body),
    )
    .await
    .ok()
}

async fn room_with_visibility(node: &TestNode, alice: &str, visibility: &str) -> String {
    node.create_room(
        alice,
        json!({
            "preset": "public_chat",
            "initial_state": [{
                "type": "m.room.history_visibility",
                "state_key": "",
                "content": { "history_visibility": visibility }
            }]
        }),
    )
    .await
}

#[tokio::test]
async fn a_member_of_a_joined_only_room_reads_nothing_from_before_their_join() {
    let node = TestNode::start(|_| {});
    let alice = node.register("alice").await;
    let bob = node.register("bob").await;
    let room = room_with_visibility(&node, &alice, "joined").await;
    let before = node.send_text(&alice, &room, "said before bob came").await;
    node.join(&bob, &room).await.ok();
    node.send_text(&alice, &room, "said to bob").await;

    assert_eq!(history(&node, &bob, &room).await, ["said to bob"]);
    let sync = node.sync(&bob, None).await;
    assert_eq!(
        texts(&sync["rooms"]["join"][&room]["timeline"]["events"]),
        ["said to bob"]
    );
    for path in [
        format!("{V3}/rooms/{room}/event/{before}"),
        format!("{V3}/rooms/{room}/context/{before}"),
    ] {
        node.request(Method::GET, &path, Some(&bob), None)
            .await
            .err(StatusCode::NOT_FOUND, "M_NOT_FOUND");
    }
    let context = node
        .request(
            Method::GET,
            &format!("{V3}/rooms/{room}/context/{before}"),
            Some(&alice),
            None,
        )
        .await
        .ok();
    assert_eq!(context["event"]["content"]["body"], "said before bob came");
}

#[tokio::test]
async fn shared_history_is_read_by_a_member_who_joins_later() {
    let node = TestNode::start(|_| {});
    let alice = node.register("alice").await;
    let bob = node.register("bob").await;
    let room = room_with_visibility(&node, &alice, "shared").await;
    node.send_text(&alice, &room, "said before bob came").await;
    node.join(&bob, &room).await.ok();
    assert_eq!(history(&node, &bob, &room).await, ["said before bob came"]);
}

/// Each message's `unsigned.membership` (MSC4115) by its body, in `events`.
fn memberships(events: &Value) -> Vec<(String, String)> {
    events
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["type"] == "m.room.message")
        .map(|e| {
            (
                e["content"]["body"].as_str().unwrap_or_default().to_owned(),
                e["unsigned"]["membership"]
                    .as_str()
                    .unwrap_or("(none)")
                    .to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn events_say_what_the_reader_was_when_they_were_sent() {
    let node = TestNode::start(|_| {});
    let alice = node.register("alice").await;
    let bob = node.register("bob").await;
    let room = room_with_visibility(&node, &alice, "shared").await;
    let before = node.send_text(&alice, &room, "before").await;
    node.join(&bob, &room).await.ok();
    let after = node.send_text(&alice, &room, "after").await;
    let pair = |body: &str, membership: &str| (body.to_owned(), membership.to_owned());

    // A newly joined room in /sync comes with its history.
    let sync = node.sync(&bob, None).await;
    let timeline = &sync["rooms"]["join"][&room]["timeline"]["events"];
    assert_eq!(
        memberships(timeline),
        [pair("before", "leave"), pair("after", "join")]
    );
    let since = sync["next_batch"].as_str().expect("next_batch").to_owned();
    node.send_text(&alice, &room, "later").await;
    let sync = node.sync(&bob, Some(&since)).await;
    let timeline = &sync["rooms"]["join"][&room]["timeline"]["events"];
    assert_eq!(memberships(timeline), [pair("later", "join")]);

    let messages = node
        .request(
            Method::GET,
            &format!("{V3}/rooms/{room}/messages?dir=f&limit=100"),
            Some(&bob),
            None,
        )
        .await
        .ok();
    assert_eq!(
        memberships(&messages["chunk"]),
        [
            pair("before", "leave"),
            pair("after", "join"),
            pair("later", "join")
        ]
    );
    let event = node
        .request(
            Method::GET,
            &format!("{V3}/rooms/{room}/event/{before}"),
            Some(&bob),
            None,
        )
        .await
        .ok();
    assert_eq!(event["unsigned"]["membership"], "leave");
    let context = node
        .request(
            Method::GET,
            &format!("{V3}/rooms/{room}/context/{after}?limit=4"),
            Some(&bob),
            None,
        )
        .await
        .ok();
    assert_eq!(context["event"]["unsigned"]["membership"], "join");
    assert_eq!(
        memberships(&context["events_before"]),
        [pair("before", "leave")]
    );
    // The sender's own view: joined throughout.
    let sync = node.sync(&alice, None).await;
    let timeline = &sync["rooms"]["join"][&room]["timeline"]["events"];
    assert!(
        memberships(timeline).iter().all(|(_, m)| m == "join"),
        "{timeline}"
    );
}

#[tokio::test]
async fn an_invitee_reads_invited_history_only_from_their_invite() {
    let node = TestNode::start(|_| {});
    let alice = node.register("alice").await;
    let bob = node.register("bob").await;
    let room = room_with_visibility(&node, &alice, "invited").await;
    node.send_text(&alice, &room, "before the invite").await;
    post(
        &node,
        &alice,
        &format!("/rooms/{room}/invite"),
        json!({ "user_id": "@bob:localhost" }),
    )
    .await;
    node.send_text(&alice, &room, "after the invite").await;
    node.join(&bob, &room).await.ok();
    assert_eq!(history(&node, &bob, &room).await, ["after the invite"]);
}

#[tokio::test]
async fn an_invitee_who_declines_reads_nothing_of_the_room() {
    let node = TestNode::start(|_| {});
    let alice = node.register("alice").await;
    let bob = node.register("bob").await;
    let room = node
        .create_room(&alice, json!({ "preset": "private_chat" }))
        .await;
    node.send_text(&alice, &room, "the secret").await;
    post(
        &node,
        &alice,
        &format!("/rooms/{room}/invite"),
        json!({ "user_id": "@bob:localhost" }),
    )
    .await;
    post(&node, &bob, &format!("/rooms/{room}/leave"), json!({})).await;
    node.send_text(&alice, &room, "after bob declined").await;

    assert!(history(&node, &bob, &room).await.is_empty());
    for path in ["state", "members"] {
        node.request(
            Method::GET,
            &format!("{V3}/rooms/{room}/{path}"),
            Some(&bob),
            None,
        )
        .await
        .err(StatusCode::FORBIDDEN, "M_FORBIDDEN");
    }
    let sync = node.sync(&bob, None).await;
    let left = &sync["rooms"]["leave"][&room];
    assert!(texts(&left["timeline"]["events"]).is_empty(), "{left}");
    assert!(
        left["state"]["events"]
            .as_array()
            .is_none_or(|s| s.is_empty()),
        "{left}"
    );
}

#[tokio::test]
async fn an_outsider_banned_in_advance_reads_nothing_of_the_room() {
    let node = TestNode::start(|_| {});
    let alice = node.register("alice").await;
    let mallory = node.register("mallory").await;
    let room = node
        .create_room(
            &alice,
            json!({ "preset": "private_chat", "name": "Beraad" }),
        )
        .await;
    let secret = node.send_text(&alice, &room, "the secret").await;
    post(
        &node,
        &alice,
        &format!("/rooms/{room}/ban"),
        json!({ "user_id": "@mallory:localhost" }),
    )
    .await;

    assert!(history(&node, &mallory, &room).await.is_empty());
    for path in ["state", "members", "state/m.room.name/"] {
        node.request(
            Method::GET,
            &format!("{V3}/rooms/{room}/{path}"),
            Some(&mallory),
            None,
        )
        .await
        .err(StatusCode::FORBIDDEN, "M_FORBIDDEN");
    }
    node.request(
        Method::GET,
        &format!("{V3}/rooms/{room}/context/{secret}"),
        Some(&mallory),
        None,
    )
    .await
    .err(StatusCode::NOT_FOUND, "M_NOT_FOUND");
}

async fn relations(node: &TestNode, token: &str, room: &str, root: &str) -> Vec<String> {
    let reply = node
        .request(
            Method::GET,
            &format!("/_matrix/client/v1/rooms/{room}/relations/{root}"),
            Some(token),
            None,
        )
        .await
        .ok();
    texts(&reply["chunk"])
}

async fn reply_in_thread(node: &TestNode, token: &str, room: &str, root: &str, text: &str) {
    let content = json!({
        "msgtype": "m.text",
        "body": text,
        "m.relates_to": { "rel_type": "m.thread", "event_id": root }
    });
    node.send_message(token, room, content).await;
}

#[tokio::test]
async fn a_kicked_member_reads_no_thread_replies_after_the_kick() {
    let node = TestNode::start(|_| {});
    let alice = node.register("alice").await;
    let bob = node.register("bob").await;
    let room = node
        .create_room(&alice, json!({ "preset": "public_chat" }))
        .await;
    node.join(&bob, &room).await.ok();
    let root = node.send_text(&alice, &room, "the thread").await;
    reply_in_thread(&node, &alice, &room, &root, "while bob was in").await;
    post(
        &node,
        &alice,
        &format!("/rooms/{room}/kick"),
        json!({ "user_id": "@bob:localhost" }),
    )
    .await;
    reply_in_thread(&node, &alice, &room, &root, "after bob was kicked").await;

    assert_eq!(relations(&node, &alice, &room, &root).await.len(), 2);
    assert_eq!(
        relations(&node, &bob, &room, &root).await,
        ["while bob was in"]
    );
}

#[tokio::test]
async fn relations_list_only_events_of_the_room_asked_about() {
    let node = TestNode::start(|_| {});
    let alice = node.register("alice").await;
    let bob = node.register("bob").await;
    let room = node
        .create_room(&alice, json!({ "preset": "public_chat" }))
        .await;
    node.join(&bob, &room).await.ok();
    let root = node.send_text(&alice, &room, "the thread").await;
    // Bob's own room names the event of the other room.
    let elsewhere = node.create_room(&bob, json!({})).await;
    reply_in_thread(&node, &bob, &elsewhere, &root, "from another room").await;

    assert!(relations(&node, &alice, &room, &root).await.is_empty());
}

#[tokio::test]
async fn anyone_previews_a_world_readable_room_without_joining() {
    let node = TestNode::start(|_| {});
    let alice = node.register("alice").await;
    let carol = node.register("carol").await;
    let room = room_with_visibility(&node, &alice, "shared").await;
    node.send_text(&alice, &room, "before it was readable")
        .await;
    node.request(
        Method::PUT,
        &format!("{V3}/rooms/{room}/state/m.room.history_visibility/"),
        Some(&alice),
        Some(json!({ "history_visibility": "world_readable" })),
    )
    .await
    .ok();
    let readable = node.send_text(&alice, &room, "for everyone").await;

    // What was sent while the room was readable, and its current state.
    assert_eq!(history(&node, &carol, &room).await, ["for everyone"]);
    let state = node
        .request(
            Method::GET,
            &format!("{V3}/rooms/{room}/state"),
            Some(&carol),
            None,
        )
        .await
        .ok();
    assert!(
        state
            .as_array()
            .is_some_and(|s| s.iter().any(|e| e["type"] == "m.room.create")),
        "{state}"
    );
    let members = node
        .request(
            Method::GET,
            &format!("{V3}/rooms/{room}/members"),
            Some(&carol),
            None,
        )
        .await
        .ok();
    assert_eq!(members["chunk"][0]["state_key"], "@alice:localhost");
    let event = node
        .request(
            Method::GET,
            &format!("{V3}/rooms/{room}/event/{readable}"),
            Some(&carol),
            None,
        )
        .await
        .ok();
    assert_eq!(event["content"]["body"], "for everyone");

    // A room that is not world-readable stays closed.
    let closed = room_with_visibility(&node, &alice, "shared").await;
    for path in ["state", "members", "messages?dir=b"] {
        node.request(
            Method::GET,
            &format!("{V3}/rooms/{closed}/{path}"),
            Some(&carol),
            None,
        )
        .await
        .err(StatusCode::FORBIDDEN, "M_FORBIDDEN");
    }
}
