use http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::harness::{TestNode, event_ids as ids, txn, urlencode};

const V3: &str = "/_matrix/client/v3";

#[tokio::test]
async fn state_put_get_and_power_levels() {
    let node = TestNode::start(|_| {});
    let alice = node.register("alice").await;
    let bob = node.register("bob").await;
    let room = node
        .create_room(&alice, json!({ "preset": "public_chat" }))
        .await;
    node.join(&bob, &room).await.ok();

    let put = node
        .request(
            Method::PUT,
            &format!("{V3}/rooms/{room}/state/m.room.topic/"),
            Some(&alice),
            Some(json!({ "topic": "Begroting" })),
        )
        .await
        .ok();
    let topic = node
        .request(
            Method::GET,
            &format!("{V3}/rooms/{room}/state/m.room.topic/"),
            Some(&bob),
            None,
        )
        .await
        .ok();
    assert_eq!(topic["topic"], "Begroting");
    // Without the trailing slash too.
    let topic = node
        .request(
            Method::GET,
            &format!("{V3}/rooms/{room}/state/m.room.topic"),
            Some(&bob),
            None,
        )
        .await
        .ok();
    assert_eq!(topic["topic"], "Begroting");
    // Same content again: same event.
    let again = node
        .request(
            Method::PUT,
            &format!("{V3}/rooms/{room}/state/m.room.topic/"),
            Some(&alice),
            Some(json!({ "topic": "Begroting" })),
        )
        .await
        .ok();
    assert_eq!(put["event_id"], again["event_id"]);

    // Bob has power 0; topics need 50.
    node.request(
        Method::PUT,
        &format!("{V3}/rooms/{room}/state/m.room.topic/"),
        Some(&bob),
        Some(json!({ "topic": "Mine" })),
    )
    .await
    .err(StatusCode::FORBIDDEN, "M_FORBIDDEN");
    let topic = node
        .request(
            Method::GET,
            &format!("{V3}/rooms/{room}/state/m.room.topic/"),
            Some(&bob),
            None,
        )
        .await
        .ok();
    assert_eq!(
        topic["topic"], "Begroting",
        "a rejected state event changed nothing"
    );

    // Custom state with a state key.
    node.request(
        Method::PUT,
        &format!("{V3}/rooms/{room}/state/nl.minbzk.status/dossier-1"),
        Some(&alice),
        Some(json!({ "open": true })),
    )
    .await
    .ok();
    let custom = node
        .request(
            Method::GET,
            &format!("{V3}/rooms/{room}/state/nl.minbzk.status/dossier-1"),
            Some(&alice),
            None,
        )
        .await
        .ok();
    assert_eq!(custom["open"], true);
    node.request(
        Method::GET,
        &format!("{V3}/rooms/{room}/state/nl.minbzk.status/other"),
        Some(&alice),
        None,
    )
    .await
    .err(StatusCode::NOT_FOUND, "M_NOT_FOUND");

    // Membership changes go through the membership endpoints.
    node.request(
        Method::PUT,
        &format!("{V3}/rooms/{room}/state/m.room.member/@bob:localhost"),
        Some(&alice),
        Some(json!({ "membership": "leave" })),
    )
    .await
    .err(StatusCode::FORBIDDEN, "M_FORBIDDEN");
    node.request(
        Method::PUT,
        &format!("{V3}/rooms/{room}/state/m.room.member/@alice:localhost"),
        Some(&alice),
        Some(json!({ "membership": "leave" })),
    )
    .await
    .err(StatusCode::FORBIDDEN, "M_FORBIDDEN");

    // A member's own profile in this room alone (Element's /myroomnick).
    let own = format!("{V3}/rooms/{room}/state/m.room.member/@alice:localhost");
    node.request(
        Method::PUT,
        &own,
        Some(&alice),
        Some(json!({ "membership": "join", "displayname": "Alice (BZK)" })),
    )
    .await
    .ok();
    let member = node
        .request(Method::GET, &own, Some(&alice), None)
        .await
        .ok();
    assert_eq!(member["displayname"], "Alice (BZK)");
    assert_eq!(member["membership"], "join");
    let profile = node
        .request(
            Method::GET,
            &format!("{V3}/profile/@alice:localhost"),
            Some(&alice),
            None,
        )
        .await
        .ok();
    assert_eq!(profile["displayname"], "alice", "the global name stays");
}

#[tokio::test]
async fn messages_paginate_both_ways_with_filters() {
    let node = TestNode::start(|_| {});
    let alice = node.register("alice").await;
    let room = node.create_room(&alice, json!({})).await;
    let mut sent = Vec::new();
    for i in 0..6 {
        sent.push(node.send_text(&alice, &room, &format!("m{i}")).await);
        let path = format!("{V3}/rooms/{room}/send/nl.minbzk.ping/{}", txn());
        node.request(Method::PUT, &path, Some(&alice), Some(json!({})))
            .await
            .ok();
    }
    let filter = "%7B%22types%22%3A%5B%22m.room.message%22%5D%7D";
    let back = node
        .request(
            Method::GET,
            &format!("{V3}/rooms/{room}/messages?dir=b&limit=4&filter={filter}"),
            Some(&alice),
            None,
        )
        .await
        .ok();
    let first_page = ids(&back["chunk"]);
    assert_eq!(
        first_page,
        vec![sent[5].clone(), sent[4].clone()],
        "4 events back, 2 of them messages"
    );
    let end = back["end"].as_str().expect("end");
    let more = node
        .request(
            Method::GET,
            &format!("{V3}/rooms/{room}/messages?dir=b&limit=4&from={end}&filter={filter}"),
            Some(&alice),
            None,
        )
        .await
        .ok();
    assert_eq!(ids(&more["chunk"]), vec![sent[3].clone(), sent[2].clone()]);

    let forward = node
        .request(
            Method::GET,
            &format!("{V3}/rooms/{room}/messages?dir=f&limit=100&filter={filter}"),
            Some(&alice),
            None,
        )
        .await
        .ok();
    assert_eq!(ids(&forward["chunk"]), sent);
}

#[tokio::test]
async fn context_relations_edits_replies_threads_and_reactions() {
    let node = TestNode::start(|_| {});
    let alice = node.register("alice").await;
    let room = node.create_room(&alice, json!({})).await;
    let before = node.send_text(&alice, &room, "before").await;
    let root = node.send_text(&alice, &room, "root").await;
    let after = node.send_text(&alice, &room, "after").await;

    let relate = |content: Value, kind: &'static str| {
        let (node, alice, room) = (&node, alice.clone(), room.clone());
        async move {
            let path = format!("{V3}/rooms/{room}/send/{kind}/{}", txn());
            node.request(Method::PUT, &path, Some(&alice), Some(content))
                .await
                .ok()["event_id"]
                .as_str()
                .expect("event_id")
                .to_owned()
        }
    };
    let edit = relate(json!({ "msgtype": "m.text", "body": "* root!", "m.new_content": { "msgtype": "m.text", "body": "root!" }, "m.relates_to": { "rel_type": "m.replace", "event_id": root } }), "m.room.message").await;
    let reply = relate(json!({ "msgtype": "m.text", "body": "a reply", "m.relates_to": { "m.in_reply_to": { "event_id": root } } }), "m.room.message").await;
    let in_thread = relate(json!({ "msgtype": "m.text", "body": "in thread", "m.relates_to": { "rel_type": "m.thread", "event_id": root } }), "m.room.message").await;
    let reaction = relate(
        json!({ "m.relates_to": { "rel_type": "m.annotation", "event_id": root, "key": "👍" } }),
        "m.reaction",
    )
    .await;

    let context = node
        .request(
            Method::GET,
            &format!("{V3}/rooms/{room}/context/{root}?limit=2"),
            Some(&alice),
            None,
        )
        .await
        .ok();
    assert_eq!(context["event"]["event_id"], root.as_str());
    assert_eq!(ids(&context["events_before"]), vec![before.clone()]);
    assert_eq!(ids(&context["events_after"]), vec![after.clone()]);

    let all = node
        .request(
            Method::GET,
            &format!("/_matrix/client/v1/rooms/{room}/relations/{root}"),
            Some(&alice),
            None,
        )
        .await
        .ok();
    let all = ids(&all["chunk"]);
    for id in [&edit, &in_thread, &reaction] {
        assert!(all.contains(id), "{id} missing from relations {all:?}");
    }
    let edits = node
        .request(
            Method::GET,
            &format!("/_matrix/client/v1/rooms/{room}/relations/{root}/m.replace"),
            Some(&alice),
            None,
        )
        .await
        .ok();
    assert_eq!(ids(&edits["chunk"]), vec![edit.clone()]);
    let reactions = node
        .request(
            Method::GET,
            &format!("/_matrix/client/v1/rooms/{room}/relations/{root}/m.annotation/m.reaction"),
            Some(&alice),
            None,
        )
        .await
        .ok();
    assert_eq!(ids(&reactions["chunk"]), vec![reaction]);
    let reply_event = node
        .request(
            Method::GET,
            &format!("{V3}/rooms/{room}/event/{reply}"),
            Some(&alice),
            None,
        )
        .await
        .ok();
    assert_eq!(
        reply_event["content"]["m.relates_to"]["m.in_reply_to"]["event_id"],
        root.as_str()
    );
}

#[tokio::test]
async fn redaction_hides_content_from_clients_but_keeps_the_original() {
    let node = TestNode::start(|_| {});
    let alice = node.register("alice").await;
    let bob = node.register("bob").await;
    let room = node
        .create_room(&alice, json!({ "preset": "public_chat" }))
        .await;
    node.join(&bob, &room).await.ok();
    let secret = node.send_text(&bob, &room, "vertrouwelijk").await;
    let mine = node.send_text(&alice, &room, "mine").await;

    // Bob (power 0) may not redact alice's event; alice (100) may redact bob's.
    node.request(
        Method::PUT,
        &format!("{V3}/rooms/{room}/redact/{mine}/{}", txn()),
        Some(&bob),
        Some(json!({})),
    )
    .await
    .err(StatusCode::FORBIDDEN, "M_FORBIDDEN");
    // Nor as a state event, which only needs the state level (v11 moved
    // `redacts` into the content).
    node.request(
        Method::PUT,
        &format!("{V3}/rooms/{room}/state/m.room.redaction/x"),
        Some(&alice),
        Some(json!({ "redacts": mine })),
    )
    .await
    .err(StatusCode::FORBIDDEN, "M_FORBIDDEN");
    let intact = node
        .request(
            Method::GET,
            &format!("{V3}/rooms/{room}/event/{mine}"),
            Some(&bob),
            None,
        )
        .await
        .ok();
    assert_eq!(intact["content"]["body"], "mine", "{intact}");
    let redaction = node
        .request(
            Method::PUT,
            &format!("{V3}/rooms/{room}/redact/{secret}/{}", txn()),
            Some(&alice),
            Some(json!({ "reason": "test" })),
        )
        .await
        .ok();

    let seen = node
        .request(
            Method::GET,
            &format!("{V3}/rooms/{room}/event/{secret}"),
            Some(&bob),
            None,
        )
        .await
        .ok();
    assert_eq!(
        seen["content"],
        json!({}),
        "content gone for clients: {seen}"
    );
    assert_eq!(
        seen["unsigned"]["redacted_because"]["event_id"],
        redaction["event_id"]
    );

    let rooms = &node.homeserver.services.rooms;
    let original = rooms
        .get_original_pdu(&ruma::EventId::parse(secret.as_str()).expect("event id"))
        .expect("read")
        .expect("original kept");
    assert!(original.content.get().contains("vertrouwelijk"));
}

#[tokio::test]
async fn threads_are_listed_with_their_summary() {
    let node = TestNode::start(|_| {});
    let alice = node.register("alice").await;
    let bob = node.register("bob").await;
    let room = node
        .create_room(&alice, json!({ "preset": "public_chat" }))
        .await;
    node.join(&bob, &room).await.ok();
    let root = node.send_text(&alice, &room, "thread root").await;
    let other_root = node.send_text(&alice, &room, "quiet root").await;
    for (who, text) in [(&bob, "reply 1"), (&bob, "reply 2")] {
        let content = json!({ "msgtype": "m.text", "body": text, "m.relates_to": { "rel_type": "m.thread", "event_id": root } });
        node.send_message(who, &room, content).await;
    }
    let listed = node
        .request(
            Method::GET,
            &format!("/_matrix/client/v1/rooms/{room}/threads?include=all"),
            Some(&alice),
            None,
        )
        .await
        .ok();
    let chunk = listed["chunk"].as_array().expect("chunk");
    assert_eq!(chunk.len(), 1, "only rooted threads: {listed}");
    assert_eq!(chunk[0]["event_id"], root.as_str());
    assert_ne!(chunk[0]["event_id"], other_root.as_str());
    let summary = &chunk[0]["unsigned"]["m.relations"]["m.thread"];
    assert_eq!(summary["count"], 2);
    assert_eq!(summary["latest_event"]["content"]["body"], "reply 2");
    assert_eq!(
        summary["current_user_participated"], true,
        "alice wrote the root"
    );
    let mine = node
        .request(
            Method::GET,
            &format!("/_matrix/client/v1/rooms/{room}/threads?include=participated"),
            Some(&bob),
            None,
        )
        .await
        .ok();
    assert_eq!(mine["chunk"].as_array().expect("chunk").len(), 1);
    // Writing the root is participating too.
    let hers = node
        .request(
            Method::GET,
            &format!("/_matrix/client/v1/rooms/{room}/threads?include=participated"),
            Some(&alice),
            None,
        )
        .await
        .ok();
    assert_eq!(hers["chunk"].as_array().expect("chunk").len(), 1, "{hers}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filter_of_many_wildcards_answers_at_once_and_long_filters_are_refused() {
    let node = std::sync::Arc::new(TestNode::start(|_| {}));
    let alice = node.register("alice").await;
    let room = node.create_room(&alice, json!({})).await;
    node.send_text(&alice, &room, "hallo").await;

    // Forty wildcards and a letter that never comes: a backtracking
    // matcher never finishes this.
    let pattern = format!("{}z", "*".repeat(40));
    let filter = json!({ "types": [pattern], "not_types": [pattern] }).to_string();
    let path = format!(
        "{V3}/rooms/{room}/messages?dir=b&limit=50&filter={}",
        urlencode(&filter)
    );
    let (request_node, token) = (node.clone(), alice.clone());
    let request = tokio::spawn(async move {
        request_node
            .request(Method::GET, &path, Some(&token), None)
            .await
    });
    let reply = tokio::time::timeout(std::time::Duration::from_secs(60), request)
        .await
        .expect("the request hangs")
        .expect("the request task");
    assert!(reply.ok()["chunk"].as_array().expect("chunk").is_empty());

    let many: Vec<String> = (0..101).map(|i| format!("m.type{i}")).collect();
    let filter = json!({ "room": { "timeline": { "types": many } } });
    node.request(
        Method::POST,
        &format!("{V3}/user/@alice:localhost/filter"),
        Some(&alice),
        Some(filter.clone()),
    )
    .await
    .err(StatusCode::BAD_REQUEST, "M_INVALID_PARAM");
    let path = format!("{V3}/sync?filter={}", urlencode(&filter.to_string()));
    node.request(Method::GET, &path, Some(&alice), None)
        .await
        .err(StatusCode::BAD_REQUEST, "M_INVALID_PARAM");
}
