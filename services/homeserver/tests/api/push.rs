//! Push notifications to a push gateway on loopback (push gateway API
//! `POST /_matrix/push/v1/notify`), run by the test.

use std::sync::Arc;

use parking_lot::Mutex;
use std::time::Duration;

use axum::{Json, Router, extract::State, routing::post};
use http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::harness::{Reply, TestNode};

const V3: &str = "/_matrix/client/v3";

/// What the gateway does with the next notifications.
#[derive(Clone, Copy, PartialEq)]
enum Answer {
    Accept,
    Fail,
    Reject,
}

#[derive(Clone)]
struct Gateway {
    received: Arc<Mutex<Vec<Value>>>,
    answers: Arc<Mutex<Vec<Answer>>>,
}

impl Gateway {
    /// A gateway on a free loopback port; its notify URL.
    async fn start() -> (Self, String) {
        let gateway = Self {
            received: Arc::default(),
            answers: Arc::default(),
        };
        async fn notify(
            State(gateway): State<Gateway>,
            Json(body): Json<Value>,
        ) -> (StatusCode, Json<Value>) {
            gateway.received.lock().push(body.clone());
            let answer = {
                let mut answers = gateway.answers.lock();
                if answers.is_empty() {
                    Answer::Accept
                } else {
                    answers.remove(0)
                }
            };
            let pushkey = body["notification"]["devices"][0]["pushkey"].clone();
            match answer {
                Answer::Accept => (StatusCode::OK, Json(json!({ "rejected": [] }))),
                Answer::Fail => (StatusCode::INTERNAL_SERVER_ERROR, Json(json!({}))),
                Answer::Reject => (StatusCode::OK, Json(json!({ "rejected": [pushkey] }))),
            }
        }
        let app = Router::new()
            .route("/_matrix/push/v1/notify", post(notify))
            .with_state(gateway.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the gateway");
        let url = format!(
            "http://{}/_matrix/push/v1/notify",
            listener.local_addr().expect("the gateway's address")
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
        (gateway, url)
    }

    /// Waits until the gateway holds `n` notifications; them.
    async fn until(&self, n: usize) -> Vec<Value> {
        for _ in 0..500 {
            let received = self.received.lock().clone();
            if received.len() >= n {
                return received;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!(
            "the gateway never got {n} notifications: {:?}",
            self.received.lock()
        );
    }
}

async fn set_pusher(node: &TestNode, token: &str, url: &str, format: Option<&str>) -> Reply {
    let mut data = json!({ "url": url });
    if let Some(format) = format {
        data["format"] = json!(format);
    }
    node.request(
        Method::POST,
        &format!("{V3}/pushers/set"),
        Some(token),
        Some(json!({
            "kind": "http", "app_id": "nl.minbzk.chat", "pushkey": "telefoon-1",
            "app_display_name": "Chat", "device_display_name": "Telefoon",
            "lang": "nl", "data": data,
        })),
    )
    .await
}

/// A node with the gateway configured and its pusher running; alice and
/// bob in a room, alice with a pusher.
async fn node_with_pusher(format: Option<&str>) -> (TestNode, Gateway, String, String, String) {
    let (gateway, url) = Gateway::start().await;
    let gateway_url = url.clone();
    let node = TestNode::start(move |config| config.push.gateways = vec![gateway_url]);
    node.homeserver.spawn_pusher().expect("the pusher runs");
    let alice = node.register("alice").await;
    let bob = node.register("bob").await;
    let room = node
        .create_room(
            &alice,
            json!({ "name": "Overleg", "invite": ["@bob:localhost"] }),
        )
        .await;
    node.join(&bob, &room).await.ok();
    set_pusher(&node, &alice, &url, format).await.ok();
    (node, gateway, alice, bob, room)
}

#[tokio::test]
async fn a_message_from_someone_else_is_pushed_by_event_id_only() {
    let (node, gateway, alice, bob, room) = node_with_pusher(Some("event_id_only")).await;
    // Alice's own message notifies nobody; bob's notifies her.
    node.send_text(&alice, &room, "van alice").await;
    let event = node.send_text(&bob, &room, "geheim voorstel").await;
    let received = gateway.until(1).await;
    let notification = &received[0]["notification"];
    assert_eq!(notification["event_id"], event.as_str());
    assert_eq!(notification["room_id"], room.as_str());
    assert_eq!(notification["counts"]["unread"], 1);
    let device = &notification["devices"][0];
    assert_eq!(device["app_id"], "nl.minbzk.chat");
    assert_eq!(device["pushkey"], "telefoon-1");
    assert!(device["data"].get("url").is_none());
    // The gateway learns which event, not what it says.
    for field in ["content", "sender", "type", "room_name"] {
        assert!(
            notification.get(field).is_none(),
            "{field} in {notification}"
        );
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(gateway.received.lock().len(), 1);
}

#[tokio::test]
async fn a_full_notification_carries_the_message_and_a_mention_is_urgent() {
    let (node, gateway, _alice, bob, room) = node_with_pusher(None).await;
    // A mention as clients make it (intentional mentions).
    node.send_message(
        &bob,
        &room,
        json!({
            "msgtype": "m.text", "body": "alice, kijk even",
            "m.mentions": { "user_ids": ["@alice:localhost"] },
        }),
    )
    .await;
    let notification = gateway.until(1).await[0]["notification"].clone();
    assert_eq!(notification["content"]["body"], "alice, kijk even");
    assert_eq!(notification["sender"], "@bob:localhost");
    assert_eq!(notification["type"], "m.room.message");
    assert_eq!(notification["room_name"], "Overleg");
    // A mention: a highlight, sent with high priority.
    assert_eq!(notification["prio"], "high");
    assert_eq!(notification["devices"][0]["tweaks"]["highlight"], true);
}

#[tokio::test]
async fn a_failing_gateway_is_tried_again_and_a_rejected_pushkey_removed() {
    let (node, gateway, alice, bob, room) = node_with_pusher(None).await;
    gateway
        .answers
        .lock()
        .extend([Answer::Fail, Answer::Accept, Answer::Reject]);
    let first = node.send_text(&bob, &room, "een").await;
    // Refused once, delivered on the retry: the same event twice.
    let received = gateway.until(2).await;
    assert_eq!(received[0]["notification"]["event_id"], first.as_str());
    assert_eq!(received[1]["notification"]["event_id"], first.as_str());

    // The gateway rejects the pushkey: the pusher goes.
    node.send_text(&bob, &room, "twee").await;
    gateway.until(3).await;
    let mut pushers = Value::Null;
    for _ in 0..100 {
        pushers = node
            .request(Method::GET, &format!("{V3}/pushers"), Some(&alice), None)
            .await
            .ok();
        if pushers["pushers"].as_array().is_some_and(Vec::is_empty) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(pushers["pushers"], json!([]));
    node.send_text(&bob, &room, "drie").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(gateway.received.lock().len(), 3);
}

#[tokio::test]
async fn only_http_pushers_to_a_configured_gateway_are_taken() {
    let (gateway, url) = Gateway::start().await;
    let configured = url.clone();
    let node = TestNode::start(move |config| config.push.gateways = vec![configured]);
    let alice = node.register("alice").await;
    // Elsewhere: refused, so no user can make the node post to an
    // address of their choosing.
    for elsewhere in [
        "http://127.0.0.1:1/_matrix/push/v1/notify",
        "https://push.example.org/_matrix/push/v1/notify",
    ] {
        set_pusher(&node, &alice, elsewhere, None)
            .await
            .err(StatusCode::BAD_REQUEST, "M_INVALID_PARAM");
    }
    let email = json!({
        "kind": "email", "app_id": "m.email", "pushkey": "alice@example.org",
        "app_display_name": "E-mail", "device_display_name": "E-mail", "lang": "nl",
        "data": {},
    });
    node.request(
        Method::POST,
        &format!("{V3}/pushers/set"),
        Some(&alice),
        Some(email),
    )
    .await
    .err(StatusCode::BAD_REQUEST, "M_INVALID_PARAM");

    set_pusher(&node, &alice, &url, None).await.ok();
    let listed = node
        .request(Method::GET, &format!("{V3}/pushers"), Some(&alice), None)
        .await
        .ok();
    assert_eq!(listed["pushers"][0]["pushkey"], "telefoon-1");
    assert_eq!(listed["pushers"][0]["data"]["url"], url.as_str());
    // Pushers are no account data a client syncs.
    let sync = node.sync(&alice, None).await;
    assert!(!sync.to_string().contains("telefoon-1"));

    // kind null removes it.
    node.request(
        Method::POST,
        &format!("{V3}/pushers/set"),
        Some(&alice),
        Some(json!({ "kind": null, "app_id": "nl.minbzk.chat", "pushkey": "telefoon-1" })),
    )
    .await
    .ok();
    let listed = node
        .request(Method::GET, &format!("{V3}/pushers"), Some(&alice), None)
        .await
        .ok();
    assert_eq!(listed["pushers"], json!([]));
    drop(gateway);
}

#[tokio::test]
async fn the_notifications_list_shows_what_notified_newest_first() {
    let node = TestNode::start(|_| {});
    let alice = node.register("alice").await;
    let bob = node.register("bob").await;
    let room = node
        .create_room(&alice, json!({ "invite": ["@bob:localhost"] }))
        .await;
    node.join(&bob, &room).await.ok();
    let mut sent = Vec::new();
    for i in 0..5 {
        sent.push(node.send_text(&bob, &room, &format!("bericht {i}")).await);
    }
    let mention = node
        .send_message(
            &bob,
            &room,
            json!({
                "msgtype": "m.text", "body": "alice?",
                "m.mentions": { "user_ids": ["@alice:localhost"] },
            }),
        )
        .await;
    sent.push(mention.clone());
    // Alice read up to the second message.
    node.request(
        Method::POST,
        &format!("{V3}/rooms/{room}/receipt/m.read/{}", sent[1]),
        Some(&alice),
        Some(json!({})),
    )
    .await
    .ok();

    let ids = |reply: &Value| -> Vec<String> {
        reply["notifications"]
            .as_array()
            .expect("notifications")
            .iter()
            .map(|n| {
                n["event"]["event_id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned()
            })
            .collect()
    };
    // Pages of two, newest first, until the list ends.
    let mut seen = Vec::new();
    let mut from: Option<String> = None;
    let mut read = Vec::new();
    for _ in 0..10 {
        let path = match &from {
            Some(from) => format!("{V3}/notifications?limit=2&from={from}"),
            None => format!("{V3}/notifications?limit=2"),
        };
        let reply = node
            .request(Method::GET, &path, Some(&alice), None)
            .await
            .ok();
        seen.extend(ids(&reply));
        read.extend(
            reply["notifications"]
                .as_array()
                .expect("notifications")
                .iter()
                .map(|n| n["read"].as_bool().expect("read")),
        );
        from = reply["next_token"].as_str().map(str::to_owned);
        if from.is_none() {
            break;
        }
    }
    let mut expected = sent.clone();
    expected.reverse();
    // The invite and join of bob do not notify alice; messages do.
    assert_eq!(seen, expected);
    assert_eq!(read, vec![false, false, false, false, true, true]);

    let highlights = node
        .request(
            Method::GET,
            &format!("{V3}/notifications?only=highlight"),
            Some(&alice),
            None,
        )
        .await
        .ok();
    assert_eq!(ids(&highlights), vec![mention]);
    // Bob sent them all: nothing notified him.
    let bobs = node
        .request(
            Method::GET,
            &format!("{V3}/notifications"),
            Some(&bob),
            None,
        )
        .await
        .ok();
    assert_eq!(ids(&bobs), Vec::<String>::new());
}
