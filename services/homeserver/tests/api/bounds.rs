//! Input that once reached a panic or lost data: each gets a clear answer.

use http::{Method, StatusCode};
use serde_json::json;

use crate::harness::{TestNode, txn};

const V3: &str = "/_matrix/client/v3";

#[tokio::test]
async fn out_of_range_tokens_and_missing_logins_are_answered() {
    let node = TestNode::start(|_| {});
    let alice = node.register("alice").await;
    let room = node.create_room(&alice, json!({})).await;
    node.send_text(&alice, &room, "hallo").await;

    // A token from beyond the end of time is read as "now".
    let max = u64::MAX;
    node.request(
        Method::GET,
        &format!("{V3}/sync?since={max}&timeout=0"),
        Some(&alice),
        None,
    )
    .await
    .ok();
    node.request(
        Method::GET,
        &format!("{V3}/rooms/{room}/messages?dir=f&from={max}"),
        Some(&alice),
        None,
    )
    .await
    .ok();

    // The password and deactivation endpoints take an optional token
    // (the spec's metadata): without one they ask for it.
    for (path, body) in [
        (
            "account/password",
            json!({ "new_password": "nieuw wachtwoord" }),
        ),
        ("account/deactivate", json!({})),
    ] {
        node.request(Method::POST, &format!("{V3}/{path}"), None, Some(body))
            .await
            .err(StatusCode::UNAUTHORIZED, "M_MISSING_TOKEN");
    }

    // A login body without a `type` makes ruma's parser panic: it is
    // answered as bad JSON, not as a fault of the node (found by fuzzing).
    for body in [json!({}), json!({ "identifier": {} })] {
        node.request(Method::POST, &format!("{V3}/login"), None, Some(body))
            .await
            .err(StatusCode::BAD_REQUEST, "M_BAD_JSON");
    }

    // A malformed percent escape in a query token.
    let reply = node
        .request(
            Method::GET,
            &format!("{V3}/account/whoami?access_token=%a\u{e9}"),
            None,
            None,
        )
        .await;
    reply.err(StatusCode::UNAUTHORIZED, "M_UNKNOWN_TOKEN");

    // Room tags stored as something other than an object.
    let tags = format!("{V3}/user/@alice:localhost/rooms/{room}/account_data/m.tag");
    node.request(
        Method::PUT,
        &tags,
        Some(&alice),
        Some(json!({ "tags": [1] })),
    )
    .await
    .ok();
    node.request(
        Method::PUT,
        &format!("{V3}/user/@alice:localhost/rooms/{room}/tags/u.werk"),
        Some(&alice),
        Some(json!({ "order": 0.5 })),
    )
    .await
    .ok();
    let stored = node
        .request(
            Method::GET,
            &format!("{V3}/user/@alice:localhost/rooms/{room}/tags"),
            Some(&alice),
            None,
        )
        .await
        .ok();
    assert_eq!(stored["tags"]["u.werk"]["order"], 0.5, "{stored}");
}

#[tokio::test]
async fn more_to_device_messages_than_one_sync_carries_all_arrive() {
    let node = TestNode::start(|_| {});
    let alice = node.register("alice").await;
    let bob = node.register("bob").await;
    let device = node.device_id(&bob).await;
    let first = node.sync(&bob, None).await;
    let mut since = first["next_batch"].as_str().expect("next_batch").to_owned();

    const SENT: usize = 1205;
    for i in 0..SENT {
        let body = json!({ "messages": { "@bob:localhost": { &device: { "n": i } } } });
        node.request(
            Method::PUT,
            &format!("{V3}/sendToDevice/m.test/{}", txn()),
            Some(&alice),
            Some(body),
        )
        .await
        .ok();
    }

    let mut received = Vec::new();
    for _ in 0..4 {
        let sync = node.sync(&bob, Some(&since)).await;
        since = sync["next_batch"].as_str().expect("next_batch").to_owned();
        for event in sync["to_device"]["events"].as_array().into_iter().flatten() {
            received.push(event["content"]["n"].as_u64().expect("n"));
        }
    }
    let expected: Vec<u64> = (0..SENT as u64).collect();
    assert_eq!(
        received.len(),
        SENT,
        "delivered {} of {SENT}",
        received.len()
    );
    assert_eq!(received, expected, "each once, in order");
}

#[tokio::test]
async fn nobody_learns_of_the_devices_of_people_they_never_met() {
    let node = TestNode::start(|_| {});
    let alice = node.register("alice").await;
    let since = node.sync(&alice, None).await["next_batch"]
        .as_str()
        .expect("next_batch")
        .to_owned();
    // Carol and dave, who share no room with alice, set up their devices.
    for name in ["carol", "dave"] {
        let token = node.register(name).await;
        let device = node.device_id(&token).await;
        let keys = json!({
            "user_id": format!("@{name}:localhost"),
            "device_id": device,
            "algorithms": ["m.olm.v1.curve25519-aes-sha2"],
            "keys": { format!("ed25519:{device}"): "key" },
        });
        node.request(
            Method::POST,
            &format!("{V3}/keys/upload"),
            Some(&token),
            Some(json!({ "device_keys": keys })),
        )
        .await
        .ok();
    }
    let sync = node.sync(&alice, Some(&since)).await;
    let lists = &sync["device_lists"];
    for list in ["changed", "left"] {
        let users: Vec<&str> = lists[list]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|u| u.as_str())
            .collect();
        assert!(
            !users.contains(&"@carol:localhost") && !users.contains(&"@dave:localhost"),
            "{list}: {users:?}"
        );
    }
    let changes = node
        .request(
            Method::GET,
            &format!(
                "{V3}/keys/changes?from={since}&to={}",
                sync["next_batch"].as_str().expect("next_batch")
            ),
            Some(&alice),
            None,
        )
        .await
        .ok();
    assert_eq!(changes["left"], json!([]), "{changes}");
}

#[tokio::test]
async fn to_device_messages_for_a_device_that_does_not_exist_are_not_kept() {
    let node = TestNode::start(|_| {});
    let alice = node.register("alice").await;
    node.register("bob").await;
    node.request(
        Method::PUT,
        &format!("{V3}/sendToDevice/m.test/{}", txn()),
        Some(&alice),
        Some(json!({ "messages": { "@bob:localhost": { "GHOST": { "n": 1 } } } })),
    )
    .await
    .ok();
    // A device of that name made later finds nothing waiting for it.
    let login = json!({ "type": "m.login.password", "identifier": { "type": "m.id.user", "user": "bob" }, "password": "correct horse", "device_id": "GHOST" });
    let session = node
        .request(Method::POST, &format!("{V3}/login"), None, Some(login))
        .await
        .ok();
    let token = session["access_token"].as_str().expect("token");
    let sync = node.sync(token, None).await;
    assert_eq!(
        sync["to_device"]["events"].as_array().map_or(0, Vec::len),
        0,
        "{}",
        sync["to_device"]
    );
}
