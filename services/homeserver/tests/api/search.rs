//! `POST /search`: messages, names and topics in the user's rooms.

use http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::harness::{Reply, TestNode};

const V3: &str = "/_matrix/client/v3";

async fn search(node: &TestNode, token: &str, criteria: Value, next: Option<&str>) -> Reply {
    let path = match next {
        Some(next) => format!("{V3}/search?next_batch={next}"),
        None => format!("{V3}/search"),
    };
    node.request(
        Method::POST,
        &path,
        Some(token),
        Some(json!({ "search_categories": { "room_events": criteria } })),
    )
    .await
}

fn result_ids(reply: &Value) -> Vec<String> {
    reply["search_categories"]["room_events"]["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| {
            r["result"]["event_id"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}

#[tokio::test]
async fn every_word_must_occur_in_a_room_the_user_is_in() {
    let node = TestNode::start(|_| {});
    let alice = node.register("alice").await;
    let bob = node.register("bob").await;
    let shared = node
        .create_room(&alice, json!({ "invite": ["@bob:localhost"] }))
        .await;
    node.join(&bob, &shared).await.ok();
    let bobs = node.create_room(&bob, json!({})).await;
    let first = node
        .send_text(&bob, &shared, "De begroting voor 2027 is klaar.")
        .await;
    node.send_text(&bob, &shared, "Alleen de begroting.").await;
    let second = node
        .send_text(&alice, &shared, "BEGROTING 2027: akkoord")
        .await;
    // In a room alice is not in: never found for her.
    node.send_text(&bob, &bobs, "begroting 2027 geheim").await;

    let reply = search(
        &node,
        &alice,
        json!({ "search_term": "begroting 2027" }),
        None,
    )
    .await
    .ok();
    assert_eq!(result_ids(&reply), vec![second.clone(), first.clone()]);
    let events = &reply["search_categories"]["room_events"];
    assert_eq!(events["highlights"], json!(["begroting", "2027"]));
    assert!(events.get("next_batch").is_none());

    // Ranked: the message with the most hits first.
    node.send_text(&bob, &shared, "begroting begroting 2027")
        .await;
    let ranked = search(
        &node,
        &alice,
        json!({ "search_term": "begroting 2027", "order_by": "rank" }),
        None,
    )
    .await
    .ok();
    let ids = result_ids(&ranked);
    assert_eq!(ids.len(), 3);
    assert_eq!(
        ranked["search_categories"]["room_events"]["results"][0]["rank"],
        3.0
    );

    // Room names count too, and the filter narrows to rooms.
    node.request(
        Method::PUT,
        &format!("{V3}/rooms/{shared}/state/m.room.name/"),
        Some(&alice),
        Some(json!({ "name": "Begroting 2027" })),
    )
    .await
    .ok();
    let names = search(
        &node,
        &alice,
        json!({ "search_term": "begroting", "keys": ["content.name"], "filter": { "rooms": [shared] } }),
        None,
    )
    .await
    .ok();
    assert_eq!(result_ids(&names).len(), 1);
}

#[tokio::test]
async fn pages_follow_each_other_without_gaps_or_repeats() {
    let node = TestNode::start(|_| {});
    let alice = node.register("alice").await;
    let one = node.create_room(&alice, json!({})).await;
    let two = node.create_room(&alice, json!({})).await;
    let mut sent = Vec::new();
    for i in 0..25 {
        let room = if i % 2 == 0 { &one } else { &two };
        sent.push(node.send_text(&alice, room, &format!("notulen {i}")).await);
        node.send_text(&alice, room, "iets anders").await;
    }
    let criteria = json!({ "search_term": "notulen", "filter": { "limit": 10 } });
    let mut seen = Vec::new();
    let mut next: Option<String> = None;
    for _ in 0..10 {
        let reply = search(&node, &alice, criteria.clone(), next.as_deref())
            .await
            .ok();
        seen.extend(result_ids(&reply));
        next = reply["search_categories"]["room_events"]["next_batch"]
            .as_str()
            .map(str::to_owned);
        if next.is_none() {
            break;
        }
    }
    sent.reverse();
    assert_eq!(seen, sent);
}

#[tokio::test]
async fn results_come_with_context_and_only_what_the_user_may_see() {
    let node = TestNode::start(|_| {});
    let alice = node.register("alice").await;
    let bob = node.register("bob").await;
    let room = node
        .create_room(
            &alice,
            json!({ "preset": "public_chat", "initial_state": [{
                "type": "m.room.history_visibility", "state_key": "",
                "content": { "history_visibility": "joined" },
            }] }),
        )
        .await;
    node.send_text(&alice, &room, "vertrouwelijk voor de komst")
        .await;
    node.join(&bob, &room).await.ok();
    let before = node.send_text(&alice, &room, "welkom").await;
    let hit = node
        .send_text(&alice, &room, "vertrouwelijk na de komst")
        .await;
    let after = node.send_text(&alice, &room, "tot ziens").await;

    let reply = search(
        &node,
        &bob,
        json!({
            "search_term": "vertrouwelijk",
            "event_context": { "before_limit": 1, "after_limit": 1, "include_profile": true },
        }),
        None,
    )
    .await
    .ok();
    // What was said before bob joined stays hidden from him.
    assert_eq!(result_ids(&reply), vec![hit]);
    let context = &reply["search_categories"]["room_events"]["results"][0]["context"];
    assert_eq!(context["events_before"][0]["event_id"], before.as_str());
    assert_eq!(context["events_after"][0]["event_id"], after.as_str());
    assert_eq!(
        context["profile_info"]["@alice:localhost"]["displayname"],
        "alice"
    );
}

#[tokio::test]
async fn a_search_without_words_or_too_long_is_refused() {
    let node = TestNode::start(|_| {});
    let alice = node.register("alice").await;
    for term in ["   ".to_owned(), "?!".to_owned(), "woord ".repeat(200)] {
        search(&node, &alice, json!({ "search_term": term }), None)
            .await
            .err(StatusCode::BAD_REQUEST, "M_INVALID_PARAM");
    }
    search(
        &node,
        &alice,
        json!({ "search_term": "x" }),
        Some("nonsense"),
    )
    .await
    .err(StatusCode::BAD_REQUEST, "M_INVALID_PARAM");
}
