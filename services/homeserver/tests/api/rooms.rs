use http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::harness::{TestNode, event_ids, urlencode};

const V3: &str = "/_matrix/client/v3";

fn member_state(node_state: &serde_json::Value, user: &str) -> String {
    node_state
        .as_array()
        .expect("state")
        .iter()
        .find(|e| e["type"] == "m.room.member" && e["state_key"] == user)
        .map(|e| {
            e["content"]["membership"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn invite_join_kick_ban_unban_leave_and_forget() {
    let node = TestNode::start(|_| {});
    let alice = node.register("alice").await;
    let bob = node.register("bob").await;
    let room = node
        .create_room(&alice, json!({ "preset": "private_chat" }))
        .await;

    // Private room: bob cannot join uninvited.
    node.join(&bob, &room)
        .await
        .err(StatusCode::FORBIDDEN, "M_FORBIDDEN");

    node.request(
        Method::POST,
        &format!("{V3}/rooms/{room}/invite"),
        Some(&alice),
        Some(json!({ "user_id": "@bob:localhost" })),
    )
    .await
    .ok();
    let sync = node.sync(&bob, None).await;
    assert!(
        sync["rooms"]["invite"][&room]["invite_state"]["events"]
            .as_array()
            .expect("invite state")
            .iter()
            .any(|e| e["type"] == "m.room.create")
    );

    node.join(&bob, &room).await.ok();
    let joined = node
        .request(Method::GET, &format!("{V3}/joined_rooms"), Some(&bob), None)
        .await
        .ok();
    assert_eq!(joined["joined_rooms"], json!([room]));
    let members = node
        .request(
            Method::GET,
            &format!("{V3}/rooms/{room}/joined_members"),
            Some(&alice),
            None,
        )
        .await
        .ok();
    assert!(members["joined"]["@bob:localhost"].is_object());

    // Bob (power 0) cannot kick alice.
    node.request(
        Method::POST,
        &format!("{V3}/rooms/{room}/kick"),
        Some(&bob),
        Some(json!({ "user_id": "@alice:localhost" })),
    )
    .await
    .err(StatusCode::FORBIDDEN, "M_FORBIDDEN");

    node.request(
        Method::POST,
        &format!("{V3}/rooms/{room}/kick"),
        Some(&alice),
        Some(json!({ "user_id": "@bob:localhost", "reason": "test" })),
    )
    .await
    .ok();
    let state = node
        .request(
            Method::GET,
            &format!("{V3}/rooms/{room}/state"),
            Some(&alice),
            None,
        )
        .await
        .ok();
    assert_eq!(member_state(&state, "@bob:localhost"), "leave");
    let bob_sync = node.sync(&bob, Some("1")).await;
    assert!(
        bob_sync["rooms"]["leave"][&room].is_object(),
        "kicked room in leave section: {bob_sync}"
    );

    node.request(
        Method::POST,
        &format!("{V3}/rooms/{room}/ban"),
        Some(&alice),
        Some(json!({ "user_id": "@bob:localhost" })),
    )
    .await
    .ok();
    node.request(
        Method::POST,
        &format!("{V3}/rooms/{room}/invite"),
        Some(&alice),
        Some(json!({ "user_id": "@bob:localhost" })),
    )
    .await
    .err(StatusCode::FORBIDDEN, "M_FORBIDDEN");
    node.request(
        Method::POST,
        &format!("{V3}/rooms/{room}/unban"),
        Some(&alice),
        Some(json!({ "user_id": "@bob:localhost" })),
    )
    .await
    .ok();
    let state = node
        .request(
            Method::GET,
            &format!("{V3}/rooms/{room}/state"),
            Some(&alice),
            None,
        )
        .await
        .ok();
    assert_eq!(member_state(&state, "@bob:localhost"), "leave");

    // Bob can still read history up to when he left, not after.
    let after_kick = node.send_text(&alice, &room, "after bob left").await;
    node.request(
        Method::GET,
        &format!("{V3}/rooms/{room}/event/{after_kick}"),
        Some(&bob),
        None,
    )
    .await
    .err(StatusCode::NOT_FOUND, "M_NOT_FOUND");

    node.request(
        Method::POST,
        &format!("{V3}/rooms/{room}/leave"),
        Some(&alice),
        Some(json!({})),
    )
    .await
    .ok();
    node.request(
        Method::POST,
        &format!("{V3}/rooms/{room}/forget"),
        Some(&alice),
        Some(json!({})),
    )
    .await
    .ok();
    let alice_sync = node.sync(&alice, None).await;
    assert!(alice_sync["rooms"]["join"].get(&room).is_none());
}

#[tokio::test]
async fn aliases_directory_and_join_by_alias() {
    let node = TestNode::start(|_| {});
    let alice = node.register("alice").await;
    let bob = node.register("bob").await;
    let room = node
        .create_room(&alice, json!({ "preset": "public_chat", "visibility": "public", "room_alias_name": "koffie", "name": "Koffie", "topic": "Dagelijkse koffie" }))
        .await;

    let resolved = node
        .request(
            Method::GET,
            &format!("{V3}/directory/room/%23koffie:localhost"),
            None,
            None,
        )
        .await;
    let resolved = if resolved.status == StatusCode::UNAUTHORIZED {
        node.request(
            Method::GET,
            &format!("{V3}/directory/room/%23koffie:localhost"),
            Some(&bob),
            None,
        )
        .await
        .ok()
    } else {
        resolved.ok()
    };
    assert_eq!(resolved["room_id"], room.as_str());

    // The alias is taken.
    node.request(
        Method::POST,
        &format!("{V3}/createRoom"),
        Some(&bob),
        Some(json!({ "room_alias_name": "koffie" })),
    )
    .await
    .err(StatusCode::BAD_REQUEST, "M_ROOM_IN_USE");

    let public = node
        .request(Method::GET, &format!("{V3}/publicRooms"), Some(&bob), None)
        .await
        .ok();
    assert_eq!(public["chunk"][0]["room_id"], room.as_str());
    assert_eq!(public["chunk"][0]["name"], "Koffie");
    let filtered = node
        .request(
            Method::POST,
            &format!("{V3}/publicRooms"),
            Some(&bob),
            Some(json!({ "filter": { "generic_search_term": "thee" } })),
        )
        .await
        .ok();
    assert_eq!(filtered["chunk"], json!([]));

    let joined = node
        .request(
            Method::POST,
            &format!("{V3}/join/%23koffie:localhost"),
            Some(&bob),
            Some(json!({})),
        )
        .await
        .ok();
    assert_eq!(joined["room_id"], room.as_str());

    node.request(
        Method::PUT,
        &format!("{V3}/directory/list/room/{room}"),
        Some(&bob),
        Some(json!({ "visibility": "private" })),
    )
    .await
    .err(StatusCode::FORBIDDEN, "M_FORBIDDEN");
    node.request(
        Method::PUT,
        &format!("{V3}/directory/list/room/{room}"),
        Some(&alice),
        Some(json!({ "visibility": "private" })),
    )
    .await
    .ok();
    let public = node
        .request(Method::GET, &format!("{V3}/publicRooms"), Some(&bob), None)
        .await
        .ok();
    assert_eq!(public["chunk"], json!([]));

    node.request(
        Method::DELETE,
        &format!("{V3}/directory/room/%23koffie:localhost"),
        Some(&bob),
        None,
    )
    .await
    .err(StatusCode::FORBIDDEN, "M_FORBIDDEN");
    node.request(
        Method::DELETE,
        &format!("{V3}/directory/room/%23koffie:localhost"),
        Some(&alice),
        None,
    )
    .await
    .ok();
    node.request(
        Method::GET,
        &format!("{V3}/directory/room/%23koffie:localhost"),
        Some(&bob),
        None,
    )
    .await
    .err(StatusCode::NOT_FOUND, "M_NOT_FOUND");
}

#[tokio::test]
async fn room_versions_ten_and_eleven_and_nothing_else() {
    let node = TestNode::start(|_| {});
    let alice = node.register("alice").await;
    for version in ["10", "11"] {
        let room = node
            .create_room(&alice, json!({ "room_version": version }))
            .await;
        let create = node
            .request(
                Method::GET,
                &format!("{V3}/rooms/{room}/state/m.room.create/"),
                Some(&alice),
                None,
            )
            .await
            .ok();
        assert_eq!(create["room_version"], version);
        assert_eq!(
            create.get("creator").is_some(),
            version == "10",
            "creator only in v10: {create}"
        );
        node.send_text(&alice, &room, "works").await;
    }
    node.request(
        Method::POST,
        &format!("{V3}/createRoom"),
        Some(&alice),
        Some(json!({ "room_version": "9" })),
    )
    .await
    .err(StatusCode::BAD_REQUEST, "M_UNSUPPORTED_ROOM_VERSION");
}

#[tokio::test]
async fn sync_long_polls_until_something_happens() {
    let node = std::sync::Arc::new(TestNode::start(|_| {}));
    let alice = node.register("alice").await;
    let room = node.create_room(&alice, json!({})).await;
    let since = node.sync(&alice, None).await["next_batch"]
        .as_str()
        .expect("next_batch")
        .to_owned();

    let waiter = {
        let (node, alice, since) = (node.clone(), alice.clone(), since.clone());
        tokio::spawn(async move {
            node.request(
                Method::GET,
                &format!("{V3}/sync?since={since}&timeout=20000"),
                Some(&alice),
                None,
            )
            .await
            .ok()
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(
        !waiter.is_finished(),
        "sync returned before anything happened"
    );
    // What alice cannot see wakes her sync, which keeps waiting.
    let bob = node.register("bob").await;
    let elsewhere = node.create_room(&bob, json!({})).await;
    for text in ["not", "for", "alice"] {
        node.send_text(&bob, &elsewhere, text).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    if waiter.is_finished() {
        panic!(
            "sync returned with nothing for alice: {}",
            waiter.await.expect("sync task")
        );
    }
    let event = node.send_text(&alice, &room, "wake up").await;
    let response = waiter.await.expect("sync task");
    let events = response["rooms"]["join"][&room]["timeline"]["events"]
        .as_array()
        .expect("timeline")
        .clone();
    assert_eq!(events.len(), 1, "{response}");
    assert_eq!(events[0]["event_id"], event.as_str());
    assert!(
        events[0]["unsigned"]["transaction_id"].is_string(),
        "own events echo the transaction ID"
    );
}

#[tokio::test]
async fn limited_timelines_give_a_prev_batch_that_paginates() {
    let node = TestNode::start(|_| {});
    let alice = node.register("alice").await;
    let room = node.create_room(&alice, json!({})).await;
    let mut sent = Vec::new();
    for i in 0..15 {
        sent.push(node.send_text(&alice, &room, &format!("m{i}")).await);
    }
    let filter = json!({ "room": { "timeline": { "limit": 5 } } }).to_string();
    let path = format!("{V3}/sync?filter={}", urlencode(&filter));
    let sync = node
        .request(Method::GET, &path, Some(&alice), None)
        .await
        .ok();
    let timeline = &sync["rooms"]["join"][&room]["timeline"];
    assert_eq!(timeline["limited"], true);
    let ids = event_ids(&timeline["events"]);
    assert_eq!(ids, sent[10..].to_vec());
    let prev = timeline["prev_batch"].as_str().expect("prev_batch");
    let older = node
        .request(
            Method::GET,
            &format!("{V3}/rooms/{room}/messages?dir=b&from={prev}&limit=5"),
            Some(&alice),
            None,
        )
        .await
        .ok();
    let older = event_ids(&older["chunk"]);
    let mut expected = sent[5..10].to_vec();
    expected.reverse();
    assert_eq!(older, expected);

    // A stored filter gives the same.
    let stored = node
        .request(
            Method::POST,
            &format!("{V3}/user/@alice:localhost/filter"),
            Some(&alice),
            Some(serde_json::from_str(&filter).expect("json")),
        )
        .await
        .ok();
    let id = stored["filter_id"].as_str().expect("filter_id");
    let sync = node
        .request(
            Method::GET,
            &format!("{V3}/sync?filter={id}"),
            Some(&alice),
            None,
        )
        .await
        .ok();
    assert_eq!(
        sync["rooms"]["join"][&room]["timeline"]["events"]
            .as_array()
            .expect("events")
            .len(),
        5
    );
}

#[tokio::test]
async fn a_sync_filter_naming_rooms_gives_only_those() {
    let node = TestNode::start(|_| {});
    let alice = node.register("alice").await;
    let (named, other, empty) = (
        node.create_room(&alice, json!({})).await,
        node.create_room(&alice, json!({})).await,
        node.create_room(&alice, json!({})).await,
    );
    let since = node.sync(&alice, None).await["next_batch"]
        .as_str()
        .expect("next_batch")
        .to_owned();
    node.send_text(&alice, &named, "in the named room").await;
    node.send_text(&alice, &other, "in another").await;
    let sync = |rooms: serde_json::Value| {
        let filter = json!({ "room": { "rooms": rooms } }).to_string();
        let path = format!(
            "{V3}/sync?since={since}&timeout=0&filter={}",
            urlencode(&filter)
        );
        let (node, alice) = (&node, alice.clone());
        async move {
            node.request(Method::GET, &path, Some(&alice), None)
                .await
                .ok()
        }
    };
    let joined = |sync: &Value| -> Vec<String> {
        sync["rooms"]["join"]
            .as_object()
            .map(|rooms| rooms.keys().cloned().collect())
            .unwrap_or_default()
    };
    let named_only = sync(json!([named, empty, "!unknown:localhost"])).await;
    assert_eq!(
        joined(&named_only),
        std::slice::from_ref(&named),
        "{named_only}"
    );
    let none = sync(json!([])).await;
    assert!(joined(&none).is_empty(), "{none}");
}

#[tokio::test]
async fn a_room_joined_since_the_token_comes_with_its_recent_history() {
    let node = TestNode::start(|_| {});
    let alice = node.register("alice").await;
    let bob = node.register("bob").await;
    let room = node
        .create_room(&alice, json!({ "preset": "public_chat" }))
        .await;
    let mut sent = Vec::new();
    for i in 0..15 {
        sent.push(node.send_text(&alice, &room, &format!("m{i}")).await);
    }
    let since = node.sync(&bob, None).await["next_batch"]
        .as_str()
        .expect("next_batch")
        .to_owned();
    node.join(&bob, &room).await.ok();

    let sync = node.sync(&bob, Some(&since)).await;
    let timeline = &sync["rooms"]["join"][&room]["timeline"];
    assert_eq!(timeline["limited"], true, "{sync}");
    let ids = event_ids(&timeline["events"]);
    // The default limit of ten: alice's last nine messages, then bob's join.
    assert_eq!(ids.len(), 10, "{sync}");
    assert_eq!(ids[..9], sent[6..]);
    let prev = timeline["prev_batch"].as_str().expect("prev_batch");
    let older = node
        .request(
            Method::GET,
            &format!("{V3}/rooms/{room}/messages?dir=b&from={prev}&limit=3"),
            Some(&bob),
            None,
        )
        .await
        .ok();
    let older = event_ids(&older["chunk"]);
    assert_eq!(older, [sent[5].clone(), sent[4].clone(), sent[3].clone()]);
    // The room's state comes with it: bob learns who is there.
    let state = sync["rooms"]["join"][&room]["state"]["events"]
        .as_array()
        .expect("state");
    assert!(state.iter().any(|e| e["type"] == "m.room.create"), "{sync}");
}

#[tokio::test]
async fn deleting_an_alias_removes_it_from_the_canonical_alias() {
    let node = TestNode::start(|_| {});
    let alice = node.register("alice").await;
    let room = node
        .create_room(
            &alice,
            json!({ "preset": "public_chat", "room_alias_name": "koffie" }),
        )
        .await;
    node.request(
        Method::PUT,
        &format!("{V3}/directory/room/%23thee:localhost"),
        Some(&alice),
        Some(json!({ "room_id": room })),
    )
    .await
    .ok();
    let canonical = format!("{V3}/rooms/{room}/state/m.room.canonical_alias/");
    node.request(
        Method::PUT,
        &canonical,
        Some(&alice),
        Some(json!({ "alias": "#koffie:localhost", "alt_aliases": ["#thee:localhost"] })),
    )
    .await
    .ok();

    for alias in ["%23koffie:localhost", "%23thee:localhost"] {
        node.request(
            Method::DELETE,
            &format!("{V3}/directory/room/{alias}"),
            Some(&alice),
            None,
        )
        .await
        .ok();
    }
    let content = node
        .request(Method::GET, &canonical, Some(&alice), None)
        .await
        .ok();
    assert_eq!(content, json!({ "alt_aliases": [] }));
}

#[tokio::test]
async fn a_rejected_and_forgotten_invite_shows_once_in_leave() {
    let node = TestNode::start(|_| {});
    let alice = node.register("alice").await;
    let bob = node.register("bob").await;
    let room = node
        .create_room(&alice, json!({ "invite": ["@bob:localhost"] }))
        .await;
    let invited = node.sync(&bob, None).await;
    assert!(invited["rooms"]["invite"].get(&room).is_some(), "{invited}");
    let since = invited["next_batch"]
        .as_str()
        .expect("next_batch")
        .to_owned();
    for step in ["leave", "forget"] {
        node.request(
            Method::POST,
            &format!("{V3}/rooms/{room}/{step}"),
            Some(&bob),
            Some(json!({})),
        )
        .await
        .ok();
    }

    let once = node.sync(&bob, Some(&since)).await;
    let left = &once["rooms"]["leave"][&room];
    assert!(left.is_object(), "{once}");
    let next = once["next_batch"].as_str().expect("next_batch");
    let again = node.sync(&bob, Some(next)).await;
    assert!(again["rooms"]["leave"].get(&room).is_none(), "{again}");
    // A first sync, even one that asks for left rooms, shows none forgotten.
    let filter = json!({ "room": { "include_leave": true } }).to_string();
    let first = node
        .request(
            Method::GET,
            &format!("{V3}/sync?filter={}", urlencode(&filter)),
            Some(&bob),
            None,
        )
        .await
        .ok();
    assert!(first["rooms"]["leave"].get(&room).is_none(), "{first}");
}

#[tokio::test]
async fn timestamp_to_event_finds_the_nearest_event_either_way() {
    let node = TestNode::start(|_| {});
    let alice = node.register("alice").await;
    let bob = node.register("bob").await;
    let room = node.create_room(&alice, json!({})).await;
    let mut sent = Vec::new();
    for i in 0..6 {
        let id = node.send_text(&alice, &room, &format!("m{i}")).await;
        let event = node
            .request(
                Method::GET,
                &format!("{V3}/rooms/{room}/event/{id}"),
                Some(&alice),
                None,
            )
            .await
            .ok();
        sent.push((id, event["origin_server_ts"].as_u64().expect("ts")));
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let near = |ts: u64, dir: &'static str| {
        let path = format!("/_matrix/client/v1/rooms/{room}/timestamp_to_event?ts={ts}&dir={dir}");
        let (node, alice) = (&node, alice.clone());
        async move { node.request(Method::GET, &path, Some(&alice), None).await }
    };
    let (m2, t2) = sent[2].clone();
    let t3 = sent[3].1;
    for (ts, dir) in [(t2, "f"), (t2 - 1, "f"), (t2, "b"), (t3 - 1, "b")] {
        let found = near(ts, dir).await.ok();
        assert_eq!(found["event_id"], m2.as_str(), "{ts} {dir}: {found}");
        assert_eq!(found["origin_server_ts"], t2);
    }
    let last = sent[5].1;
    near(last + 60_000, "f")
        .await
        .err(StatusCode::NOT_FOUND, "M_NOT_FOUND");
    let first = near(0, "f").await.ok();
    assert!(first["event_id"].is_string(), "{first}");
    assert_ne!(
        first["event_id"],
        sent[0].0.as_str(),
        "the room's creation comes first"
    );
    node.request(
        Method::GET,
        &format!("/_matrix/client/v1/rooms/{room}/timestamp_to_event?ts={t2}&dir=f"),
        Some(&bob),
        None,
    )
    .await
    .err(StatusCode::FORBIDDEN, "M_FORBIDDEN");
}

#[tokio::test]
async fn a_room_summary_shows_what_one_may_join_and_hides_the_rest() {
    let node = TestNode::start(|_| {});
    let alice = node.register("alice").await;
    let bob = node.register("bob").await;
    let public = node
        .create_room(
            &alice,
            json!({ "preset": "public_chat", "room_alias_name": "plein", "name": "Plein", "topic": "Voor iedereen" }),
        )
        .await;
    let private = node
        .create_room(
            &alice,
            json!({
                "preset": "private_chat",
                "name": "Beraad",
                "initial_state": [{ "type": "m.room.encryption", "state_key": "", "content": { "algorithm": "m.megolm.v1.aes-sha2" } }]
            }),
        )
        .await;
    let summary = |token: Option<String>, room: String, unstable: bool| {
        let path = if unstable {
            format!("/_matrix/client/unstable/im.nheko.summary/rooms/{room}/summary")
        } else {
            format!("/_matrix/client/v1/room_summary/{room}")
        };
        let node = &node;
        async move {
            node.request(Method::GET, &path, token.as_deref(), None)
                .await
        }
    };

    for unstable in [false, true] {
        let seen = summary(Some(bob.clone()), "%23plein:localhost".into(), unstable)
            .await
            .ok();
        assert_eq!(seen["room_id"], public.as_str(), "{seen}");
        assert_eq!(seen["name"], "Plein");
        assert_eq!(seen["topic"], "Voor iedereen");
        assert_eq!(seen["canonical_alias"], "#plein:localhost");
        assert_eq!(seen["join_rule"], "public");
        assert_eq!(seen["room_version"], "12");
        assert!(seen["num_joined_members"].as_u64() >= Some(1), "{seen}");
        assert!(seen.get("membership").is_none(), "{seen}");
    }
    summary(Some(bob.clone()), private.clone(), false)
        .await
        .err(StatusCode::NOT_FOUND, "M_NOT_FOUND");
    summary(Some(bob.clone()), "!nowhere:localhost".into(), false)
        .await
        .err(StatusCode::NOT_FOUND, "M_NOT_FOUND");
    let own = summary(Some(alice.clone()), private.clone(), false)
        .await
        .ok();
    assert_eq!(own["membership"], "join", "{own}");
    assert_eq!(own["encryption"], "m.megolm.v1.aes-sha2");
    assert_eq!(own["join_rule"], "invite");
    summary(None, public.clone(), false)
        .await
        .err(StatusCode::UNAUTHORIZED, "M_MISSING_TOKEN");
}

#[tokio::test]
async fn a_space_hierarchy_lists_what_one_may_see_breadth_first() {
    let node = TestNode::start(|_| {});
    let alice = node.register("alice").await;
    let bob = node.register("bob").await;
    let public = |name: &str, space: bool| {
        let mut body = json!({ "preset": "public_chat", "name": name });
        if space {
            body["creation_content"] = json!({ "type": "m.space" });
        }
        body
    };
    let space = node.create_room(&alice, public("Ministerie", true)).await;
    let general = node.create_room(&alice, public("Algemeen", false)).await;
    let private = node
        .create_room(
            &alice,
            json!({ "preset": "private_chat", "name": "Beraad" }),
        )
        .await;
    let directorate = node.create_room(&alice, public("Directie", true)).await;
    let team = node.create_room(&alice, public("Team", false)).await;
    let add_child = |parent: String, child: String, order: &'static str, suggested: bool| {
        let path = format!("{V3}/rooms/{parent}/state/m.space.child/{child}");
        let (node, alice) = (&node, alice.clone());
        async move {
            node.request(
                Method::PUT,
                &path,
                Some(&alice),
                Some(json!({ "via": ["localhost"], "order": order, "suggested": suggested })),
            )
            .await
            .ok();
        }
    };
    add_child(space.clone(), general.clone(), "a", true).await;
    add_child(space.clone(), private.clone(), "b", false).await;
    add_child(space.clone(), directorate.clone(), "c", false).await;
    add_child(directorate.clone(), team.clone(), "a", false).await;

    let hierarchy = |query: String| {
        let path = format!("/_matrix/client/v1/rooms/{space}/hierarchy{query}");
        let (node, bob) = (&node, bob.clone());
        async move {
            node.request(Method::GET, &path, Some(&bob), None)
                .await
                .ok()
        }
    };
    let ids = |reply: &Value| -> Vec<String> {
        reply["rooms"]
            .as_array()
            .expect("rooms")
            .iter()
            .map(|r| r["room_id"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    // Bob, in none of them, sees the public rooms, breadth first in order.
    let all = hierarchy(String::new()).await;
    assert_eq!(
        ids(&all),
        [
            space.clone(),
            general.clone(),
            directorate.clone(),
            team.clone()
        ],
        "{all}"
    );
    assert_eq!(all["rooms"][0]["room_type"], "m.space");
    assert_eq!(all["rooms"][0]["join_rule"], "public");
    assert_eq!(
        all["rooms"][0]["children_state"].as_array().map(Vec::len),
        Some(3)
    );
    assert_eq!(
        all["rooms"][0]["children_state"][0]["state_key"],
        general.as_str()
    );
    assert!(all.get("next_batch").is_none(), "{all}");

    let shallow = hierarchy("?max_depth=1".into()).await;
    assert_eq!(
        ids(&shallow),
        [space.clone(), general.clone(), directorate.clone()]
    );
    let suggested = hierarchy("?suggested_only=true".into()).await;
    assert_eq!(ids(&suggested), [space.clone(), general.clone()]);
    let first = hierarchy("?limit=2".into()).await;
    assert_eq!(ids(&first), [space.clone(), general.clone()]);
    let next = first["next_batch"].as_str().expect("next_batch");
    let second = hierarchy(format!("?limit=2&from={next}")).await;
    assert_eq!(ids(&second), [directorate.clone(), team.clone()]);
    assert!(second.get("next_batch").is_none(), "{second}");

    // A private space is not bob's to walk.
    node.request(
        Method::GET,
        &format!("/_matrix/client/v1/rooms/{private}/hierarchy"),
        Some(&bob),
        None,
    )
    .await
    .err(StatusCode::FORBIDDEN, "M_FORBIDDEN");
}

#[tokio::test]
async fn events_carry_their_latest_edit_and_thread_summary() {
    let node = TestNode::start(|_| {});
    let alice = node.register("alice").await;
    let bob = node.register("bob").await;
    let room = node
        .create_room(&alice, json!({ "preset": "public_chat" }))
        .await;
    node.join(&bob, &room).await.ok();
    let edit = |target: &str, text: &str| {
        json!({
            "msgtype": "m.text", "body": format!("* {text}"),
            "m.new_content": { "msgtype": "m.text", "body": text },
            "m.relates_to": { "rel_type": "m.replace", "event_id": target },
        })
    };
    let reply = |root: &str, text: &str| {
        json!({
            "msgtype": "m.text", "body": text,
            "m.relates_to": { "rel_type": "m.thread", "event_id": root },
        })
    };
    let message = node.send_text(&alice, &room, "versie 1").await;
    node.send_message(&alice, &room, edit(&message, "versie 2"))
        .await;
    // The latest edit is the one sent last by the clock (ties go by event
    // ID, as the spec says): a millisecond apart, the order is certain.
    tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    let latest_edit = node
        .send_message(&alice, &room, edit(&message, "versie 3"))
        .await;
    // Only the sender's own edits count.
    node.send_message(&bob, &room, edit(&message, "niet van bob"))
        .await;
    let root = node.send_text(&alice, &room, "draad").await;
    node.send_message(&bob, &room, reply(&root, "eerste antwoord"))
        .await;
    let latest_reply = node
        .send_message(&alice, &room, reply(&root, "tweede antwoord"))
        .await;

    let history = node
        .request(
            Method::GET,
            &format!("{V3}/rooms/{room}/messages?dir=b&limit=50"),
            Some(&bob),
            None,
        )
        .await
        .ok();
    let find = |events: &Value, id: &str| -> Value {
        events
            .as_array()
            .and_then(|e| e.iter().find(|e| e["event_id"] == id).cloned())
            .unwrap_or_else(|| panic!("{id} in {events}"))
    };
    let bundled = find(&history["chunk"], &message)["unsigned"]["m.relations"].clone();
    assert_eq!(
        bundled["m.replace"]["event_id"],
        latest_edit.as_str(),
        "{bundled}"
    );
    assert_eq!(
        bundled["m.replace"]["content"]["m.new_content"]["body"],
        "versie 3"
    );
    let thread = find(&history["chunk"], &root)["unsigned"]["m.relations"]["m.thread"].clone();
    assert_eq!(thread["count"], 2, "{thread}");
    assert_eq!(thread["latest_event"]["event_id"], latest_reply.as_str());
    assert_eq!(thread["current_user_participated"], true);

    // The same on a single event and in a sync.
    let single = node
        .request(
            Method::GET,
            &format!("{V3}/rooms/{room}/event/{root}"),
            Some(&alice),
            None,
        )
        .await
        .ok();
    assert_eq!(single["unsigned"]["m.relations"]["m.thread"]["count"], 2);
    let filter = json!({ "room": { "timeline": { "limit": 50 } } }).to_string();
    let sync = node
        .request(
            Method::GET,
            &format!("{V3}/sync?filter={}", urlencode(&filter)),
            Some(&bob),
            None,
        )
        .await
        .ok();
    let timeline = &sync["rooms"]["join"][&room]["timeline"]["events"];
    assert_eq!(
        find(timeline, &message)["unsigned"]["m.relations"]["m.replace"]["event_id"],
        latest_edit.as_str()
    );
}
