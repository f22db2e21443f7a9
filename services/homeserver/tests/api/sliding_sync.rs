//! Simplified sliding sync (MSC4186) as Element X speaks it: lists, room
//! subscriptions, positions and the extensions.

use std::time::Duration;

use http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::harness::{Reply, TestNode, event_ids, txn};

const SSS: &str = "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync";
const V3: &str = "/_matrix/client/v3";

async fn sliding(node: &TestNode, token: &str, pos: Option<&str>, body: Value) -> Reply {
    let path = match pos {
        Some(pos) => format!("{SSS}?pos={pos}&timeout=0"),
        None => SSS.to_owned(),
    };
    node.request(Method::POST, &path, Some(token), Some(body))
        .await
}

/// Element X's room list: one list, a few rooms, their names and latest event.
fn room_list(end: u64, timeline_limit: u64) -> Value {
    json!({
        "conn_id": "room-list",
        "lists": { "all_rooms": {
            "ranges": [[0, end]],
            "timeline_limit": timeline_limit,
            "required_state": [
                ["m.room.name", ""], ["m.room.create", ""], ["m.room.member", "$ME"],
                ["m.room.member", "$LAZY"], ["m.room.encryption", ""]
            ],
        }},
    })
}

fn pos(reply: &Value) -> String {
    reply["pos"].as_str().expect("pos").to_owned()
}

fn state_types(room: &Value) -> Vec<(String, String)> {
    let mut types: Vec<(String, String)> = room["required_state"]
        .as_array()
        .expect("required_state")
        .iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap_or_default().to_owned(),
                e["state_key"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    types.sort();
    types
}

#[tokio::test]
async fn versions_advertise_simplified_sliding_sync() {
    let node = TestNode::start(|_| {});
    let versions = node
        .request(Method::GET, "/_matrix/client/versions", None, None)
        .await
        .ok();
    assert_eq!(
        versions["unstable_features"]["org.matrix.simplified_msc3575"],
        true
    );
}

#[tokio::test]
async fn lists_sort_newest_first_and_send_only_changes() {
    let node = TestNode::start(|_| {});
    let alice = node.register("alice").await;
    let bob = node.register("bob").await;
    let first = node.create_room(&alice, json!({ "name": "Eerste" })).await;
    let second = node.create_room(&alice, json!({ "name": "Tweede" })).await;
    let third = node
        .create_room(
            &alice,
            json!({ "name": "Derde", "invite": ["@bob:localhost"] }),
        )
        .await;
    node.join(&bob, &third).await.ok();
    node.send_text(&bob, &third, "hallo").await;
    let latest_in_first = node.send_text(&alice, &first, "nieuwste").await;

    let reply = sliding(&node, &alice, None, room_list(1, 1)).await.ok();
    assert_eq!(reply["lists"]["all_rooms"]["count"], 3);
    let rooms = reply["rooms"].as_object().expect("rooms");
    // The two rooms with the latest events, the newest first.
    assert_eq!(rooms.len(), 2, "{reply}");
    assert!(rooms.contains_key(&first) && rooms.contains_key(&third));
    assert!(!rooms.contains_key(&second));
    let room = &rooms[&first];
    assert_eq!(room["initial"], true);
    assert_eq!(room["name"], "Eerste");
    assert_eq!(event_ids(&room["timeline"]), vec![latest_in_first.clone()]);
    assert_eq!(room["limited"], true);
    assert!(room["bump_stamp"].as_u64().is_some());
    assert_eq!(room["joined_count"], 1);
    // $ME and $LAZY: alice's own member event, the only sender.
    assert_eq!(
        state_types(room),
        vec![
            ("m.room.create".to_owned(), String::new()),
            ("m.room.member".to_owned(), "@alice:localhost".to_owned()),
            ("m.room.name".to_owned(), String::new()),
        ]
    );
    // $LAZY in the other room: bob, who sent its latest event, and alice ($ME).
    let members: Vec<_> = state_types(&rooms[&third])
        .into_iter()
        .filter(|(kind, _)| kind == "m.room.member")
        .map(|(_, key)| key)
        .collect();
    assert_eq!(members, vec!["@alice:localhost", "@bob:localhost"]);

    // prev_batch pages back with /messages.
    let prev = room["prev_batch"].as_str().expect("prev_batch");
    let older = node
        .request(
            Method::GET,
            &format!("{V3}/rooms/{first}/messages?dir=b&from={prev}&limit=50"),
            Some(&alice),
            None,
        )
        .await
        .ok();
    let older = event_ids(&older["chunk"]);
    assert!(!older.is_empty() && !older.contains(&latest_in_first));

    // Only what changed comes next: one new event in one room.
    let at = pos(&reply);
    let newer = node.send_text(&bob, &third, "nog iets").await;
    let next = sliding(&node, &alice, Some(&at), room_list(1, 1))
        .await
        .ok();
    let rooms = next["rooms"].as_object().expect("rooms");
    assert_eq!(rooms.len(), 1, "{next}");
    let room = &rooms[&third];
    assert!(room.get("initial").is_none());
    assert_eq!(event_ids(&room["timeline"]), vec![newer]);
    assert_eq!(room["num_live"], 1);
    assert!(room.get("limited").is_none_or(|l| l == false), "{room}");

    // Nothing new: no rooms, and the same position.
    let quiet = sliding(&node, &alice, Some(&pos(&next)), room_list(1, 1))
        .await
        .ok();
    assert!(
        quiet
            .get("rooms")
            .is_none_or(|r| r.as_object().is_some_and(|r| r.is_empty()))
    );
    assert_eq!(pos(&quiet), pos(&next));

    // A wider range brings the room not sent yet, from scratch.
    let wider = sliding(&node, &alice, Some(&pos(&quiet)), room_list(2, 1))
        .await
        .ok();
    let rooms = wider["rooms"].as_object().expect("rooms");
    assert_eq!(rooms.keys().collect::<Vec<_>>(), vec![&second]);
    assert_eq!(rooms[&second]["initial"], true);
}

#[tokio::test]
async fn a_repeated_position_gets_the_same_answer_an_unknown_one_m_unknown_pos() {
    let node = TestNode::start(|_| {});
    let alice = node.register("alice").await;
    let room = node.create_room(&alice, json!({})).await;
    let start = pos(&sliding(&node, &alice, None, room_list(9, 5)).await.ok());
    let event = node.send_text(&alice, &room, "een").await;

    // The answer was lost on the way: the client asks again from the
    // same position and gets the event again.
    for _ in 0..2 {
        let reply = sliding(&node, &alice, Some(&start), room_list(9, 5))
            .await
            .ok();
        assert_eq!(
            event_ids(&reply["rooms"][&room]["timeline"]),
            vec![event.clone()]
        );
    }
    // Another connection of the same device does not know the position.
    let mut other = room_list(9, 5);
    other["conn_id"] = json!("encryption");
    sliding(&node, &alice, Some(&start), other)
        .await
        .err(StatusCode::BAD_REQUEST, "M_UNKNOWN_POS");
    for bad in ["12345", "nonsense"] {
        sliding(&node, &alice, Some(bad), room_list(9, 5))
            .await
            .err(StatusCode::BAD_REQUEST, "M_UNKNOWN_POS");
    }
    // Nor does another user.
    let bob = node.register("bob").await;
    sliding(&node, &bob, Some(&start), room_list(9, 5))
        .await
        .err(StatusCode::BAD_REQUEST, "M_UNKNOWN_POS");

    // Once the client moved on, positions before the one it named go
    // with the next answer that hands out a new one.
    let moved = pos(&sliding(&node, &alice, Some(&start), room_list(9, 5))
        .await
        .ok());
    node.send_text(&alice, &room, "twee").await;
    let on = sliding(&node, &alice, Some(&moved), room_list(9, 5))
        .await
        .ok();
    assert_ne!(pos(&on), moved);
    sliding(&node, &alice, Some(&start), room_list(9, 5))
        .await
        .err(StatusCode::BAD_REQUEST, "M_UNKNOWN_POS");
}

#[tokio::test]
async fn a_long_poll_wakes_on_a_new_message() {
    let node = TestNode::start(|_| {});
    let alice = node.register("alice").await;
    let room = node.create_room(&alice, json!({})).await;
    let start = pos(&sliding(&node, &alice, None, room_list(9, 5)).await.ok());

    let path = format!("{SSS}?pos={start}&timeout=20000");
    let poll = node.request(Method::POST, &path, Some(&alice), Some(room_list(9, 5)));
    let send = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        node.send_text(&alice, &room, "wakker").await
    };
    let (reply, event) = tokio::join!(poll, send);
    let reply = reply.ok();
    assert_eq!(event_ids(&reply["rooms"][&room]["timeline"]), vec![event]);
}

#[tokio::test]
async fn subscriptions_widen_the_timeline_and_ignore_strangers_rooms() {
    let node = TestNode::start(|_| {});
    let alice = node.register("alice").await;
    let bob = node.register("bob").await;
    let room = node.create_room(&alice, json!({})).await;
    let bobs = node.create_room(&bob, json!({})).await;
    let mut sent = Vec::new();
    for i in 0..5 {
        sent.push(node.send_text(&alice, &room, &format!("m{i}")).await);
    }
    let listed = sliding(&node, &alice, None, room_list(9, 1)).await.ok();
    assert_eq!(event_ids(&listed["rooms"][&room]["timeline"]).len(), 1);

    // The room is opened: a subscription asks for more of its timeline.
    let mut opened = room_list(9, 1);
    opened["room_subscriptions"] = json!({
        room.clone(): { "timeline_limit": 3, "required_state": [["m.room.create", ""]] },
        bobs.clone(): { "timeline_limit": 3, "required_state": [["*", "*"]] },
    });
    let reply = sliding(&node, &alice, Some(&pos(&listed)), opened)
        .await
        .ok();
    assert_eq!(
        event_ids(&reply["rooms"][&room]["timeline"]),
        sent[2..].to_vec()
    );
    assert!(reply["rooms"].get(&bobs).is_none(), "{reply}");
}

#[tokio::test]
async fn invites_come_with_their_stripped_state_and_a_leave_shows_once() {
    let node = TestNode::start(|_| {});
    let alice = node.register("alice").await;
    let bob = node.register("bob").await;
    let room = node
        .create_room(
            &alice,
            json!({ "name": "Uitnodiging", "invite": ["@bob:localhost"] }),
        )
        .await;
    let mut body = room_list(9, 5);
    body["lists"]["invites"] =
        json!({ "ranges": [[0, 9]], "timeline_limit": 0, "filters": { "is_invite": true } });
    let reply = sliding(&node, &bob, None, body.clone()).await.ok();
    assert_eq!(reply["lists"]["invites"]["count"], 1);
    let invited = &reply["rooms"][&room];
    assert!(invited.get("timeline").is_none());
    let stripped: Vec<&str> = invited["invite_state"]
        .as_array()
        .expect("invite_state")
        .iter()
        .filter_map(|e| e["type"].as_str())
        .collect();
    assert!(stripped.contains(&"m.room.create") && stripped.contains(&"m.room.name"));

    // Accepting it: the room comes again, now with its timeline.
    node.join(&bob, &room).await.ok();
    let joined = sliding(&node, &bob, Some(&pos(&reply)), body.clone())
        .await
        .ok();
    assert_eq!(joined["lists"]["invites"]["count"], 0);
    let room_now = &joined["rooms"][&room];
    assert_eq!(room_now["initial"], true);
    assert!(
        !room_now["timeline"]
            .as_array()
            .expect("timeline")
            .is_empty()
    );

    // Leaving: the leave comes once, then the room is gone from the list.
    node.request(
        Method::POST,
        &format!("{V3}/rooms/{room}/leave"),
        Some(&bob),
        Some(json!({})),
    )
    .await
    .ok();
    let left = sliding(&node, &bob, Some(&pos(&joined)), body.clone())
        .await
        .ok();
    let timeline = &left["rooms"][&room]["timeline"];
    let last = timeline.as_array().and_then(|t| t.last()).expect("leave");
    assert_eq!(last["content"]["membership"], "leave");
    let after = sliding(&node, &bob, Some(&pos(&left)), body).await.ok();
    assert_eq!(after["lists"]["all_rooms"]["count"], 0);
    assert!(after.get("rooms").is_none_or(|r| r.get(&room).is_none()));
}

#[tokio::test]
async fn an_unnamed_room_has_heroes_and_a_dm_is_one() {
    let node = TestNode::start(|_| {});
    let alice = node.register("alice").await;
    let bob = node.register("bob").await;
    node.request(
        Method::PUT,
        &format!("{V3}/profile/@bob:localhost/displayname"),
        Some(&bob),
        Some(json!({ "displayname": "Bob" })),
    )
    .await
    .ok();
    let dm = node
        .create_room(
            &alice,
            json!({ "is_direct": true, "invite": ["@bob:localhost"] }),
        )
        .await;
    node.join(&bob, &dm).await.ok();
    node.request(
        Method::PUT,
        &format!("{V3}/user/@alice:localhost/account_data/m.direct"),
        Some(&alice),
        Some(json!({ "@bob:localhost": [dm.clone()] })),
    )
    .await
    .ok();
    let mut body = room_list(9, 1);
    body["lists"]["dms"] =
        json!({ "ranges": [[0, 9]], "timeline_limit": 1, "filters": { "is_dm": true } });
    let reply = sliding(&node, &alice, None, body).await.ok();
    assert_eq!(reply["lists"]["dms"]["count"], 1);
    let room = &reply["rooms"][&dm];
    assert_eq!(room["is_dm"], true);
    assert!(room.get("name").is_none());
    // Bob, never alice herself nor the archive member.
    let heroes = room["heroes"].as_array().expect("heroes");
    assert_eq!(heroes.len(), 1, "{room}");
    assert_eq!(heroes[0]["user_id"], "@bob:localhost");
    assert_eq!(heroes[0]["displayname"], "Bob");
    assert_eq!(room["joined_count"], 2);
}

#[tokio::test]
async fn extensions_carry_to_device_keys_account_data_receipts_and_typing() {
    let node = TestNode::start(|_| {});
    let alice = node.register("alice").await;
    let bob = node.register("bob").await;
    let room = node
        .create_room(&alice, json!({ "invite": ["@bob:localhost"] }))
        .await;
    node.join(&bob, &room).await.ok();
    let event = node.send_text(&bob, &room, "lees mij").await;
    node.request(
        Method::POST,
        &format!("{V3}/rooms/{room}/receipt/m.read.private/{event}"),
        Some(&alice),
        Some(json!({})),
    )
    .await
    .ok();
    let alice_device = node.device_id(&alice).await;
    node.request(
        Method::PUT,
        &format!("{V3}/sendToDevice/m.test/{}", txn()),
        Some(&bob),
        Some(json!({ "messages": { "@alice:localhost": { alice_device.clone(): { "n": 1 } } } })),
    )
    .await
    .ok();

    let body = |since: Option<&str>| {
        let mut body = room_list(9, 1);
        body["extensions"] = json!({
            "to_device": { "enabled": true, "since": since },
            "e2ee": { "enabled": true },
            "account_data": { "enabled": true },
            "receipts": { "enabled": true },
            "typing": { "enabled": true },
        });
        body
    };
    let reply = sliding(&node, &alice, None, body(None)).await.ok();
    let ext = &reply["extensions"];
    let to_device = ext["to_device"]["events"].as_array().expect("to_device");
    assert_eq!(to_device.len(), 1);
    assert_eq!(to_device[0]["content"]["n"], 1);
    let next_batch = ext["to_device"]["next_batch"].as_str().expect("next_batch");
    assert_eq!(
        ext["e2ee"]["device_one_time_keys_count"]["signed_curve25519"],
        0
    );
    let global: Vec<&str> = ext["account_data"]["global"]
        .as_array()
        .expect("global account data")
        .iter()
        .filter_map(|e| e["type"].as_str())
        .collect();
    assert!(global.contains(&"m.push_rules"), "{global:?}");
    // Alice's own private receipt, so her client can count what is unread.
    let receipt = &ext["receipts"]["rooms"][&room]["content"][&event];
    assert!(
        receipt["m.read.private"]["@alice:localhost"].is_object(),
        "{ext}"
    );

    // Typing, and the to-device message acknowledged: it does not come again.
    node.request(
        Method::PUT,
        &format!("{V3}/rooms/{room}/typing/@bob:localhost"),
        Some(&bob),
        Some(json!({ "typing": true, "timeout": 30000 })),
    )
    .await
    .ok();
    let next = sliding(&node, &alice, Some(&pos(&reply)), body(Some(next_batch)))
        .await
        .ok();
    let ext = &next["extensions"];
    assert!(
        ext["to_device"]["events"]
            .as_array()
            .is_none_or(Vec::is_empty),
        "{ext}"
    );
    assert_eq!(
        ext["typing"]["rooms"][&room]["content"]["user_ids"],
        json!(["@bob:localhost"])
    );
}

#[tokio::test]
async fn bad_requests_are_refused() {
    let node = TestNode::start(|_| {});
    let alice = node.register("alice").await;
    let mut body = room_list(9, 1);
    body["conn_id"] = json!("x".repeat(65));
    sliding(&node, &alice, None, body)
        .await
        .err(StatusCode::BAD_REQUEST, "M_INVALID_PARAM");
    let lists: serde_json::Map<String, Value> = (0..65)
        .map(|i| {
            (
                format!("l{i}"),
                json!({ "ranges": [[0, 1]], "timeline_limit": 1 }),
            )
        })
        .collect();
    sliding(&node, &alice, None, json!({ "lists": lists }))
        .await
        .err(StatusCode::BAD_REQUEST, "M_INVALID_PARAM");
    sliding(&node, &alice, None, json!({ "lists": "nonsense" }))
        .await
        .err(StatusCode::BAD_REQUEST, "M_BAD_JSON");
    // A huge range is only as costly as the rooms there are.
    let mut body = room_list(u64::from(u32::MAX), 1);
    body["lists"]["all_rooms"]["ranges"] = json!([[0, 9_007_199_254_740_991u64], [5, 2]]);
    let reply = sliding(&node, &alice, None, body).await.ok();
    assert_eq!(reply["lists"]["all_rooms"]["count"], 0);
}

#[tokio::test]
async fn unread_counts_follow_push_rules_from_the_receipt_or_own_message() {
    let node = TestNode::start(|_| {});
    let alice = node.register("alice").await;
    let bob = node.register("bob").await;
    let room = node
        .create_room(&alice, json!({ "invite": ["@bob:localhost"] }))
        .await;
    node.join(&bob, &room).await.ok();
    let count = |reply: &Value| reply["rooms"][&room]["notification_count"].clone();

    node.send_text(&bob, &room, "een").await;
    // A mention, as clients make it: a highlight by alice's push rules.
    let read = node
        .send_message(
            &bob,
            &room,
            json!({
                "msgtype": "m.text", "body": "twee",
                "m.mentions": { "user_ids": ["@alice:localhost"] },
            }),
        )
        .await;
    let reply = sliding(&node, &alice, None, room_list(9, 1)).await.ok();
    assert_eq!(count(&reply), 2);
    assert_eq!(reply["rooms"][&room]["highlight_count"], 1);

    // What alice says herself, she has read up to.
    node.send_text(&alice, &room, "gelezen").await;
    let reply = sliding(&node, &alice, Some(&pos(&reply)), room_list(9, 1))
        .await
        .ok();
    assert_eq!(count(&reply), 0);

    node.send_text(&bob, &room, "drie").await;
    let reply = sliding(&node, &alice, Some(&pos(&reply)), room_list(9, 1))
        .await
        .ok();
    assert_eq!(count(&reply), 1);

    // A receipt on an older message leaves the newer one unread.
    node.request(
        Method::POST,
        &format!("{V3}/rooms/{room}/receipt/m.read/{read}"),
        Some(&alice),
        Some(json!({})),
    )
    .await
    .ok();
    let vier = node.send_text(&bob, &room, "vier").await;
    let reply = sliding(&node, &alice, Some(&pos(&reply)), room_list(9, 1))
        .await
        .ok();
    assert_eq!(count(&reply), 2);

    // Reading everything, with nothing new said: the room comes again,
    // with its counts back at 0.
    node.request(
        Method::POST,
        &format!("{V3}/rooms/{room}/receipt/m.read/{vier}"),
        Some(&alice),
        Some(json!({})),
    )
    .await
    .ok();
    let reply = sliding(&node, &alice, Some(&pos(&reply)), room_list(9, 1))
        .await
        .ok();
    assert_eq!(count(&reply), 0, "{reply}");
    assert_eq!(reply["rooms"][&room]["highlight_count"], 0);
    let reply = sliding(&node, &alice, Some(&pos(&reply)), room_list(9, 1))
        .await
        .ok();
    assert!(reply["rooms"].get(&room).is_none(), "sent again: {reply}");

    // Muted by a room rule without actions: nothing notifies.
    node.request(
        Method::PUT,
        &format!("{V3}/pushrules/global/room/{room}"),
        Some(&alice),
        Some(json!({ "actions": [] })),
    )
    .await
    .ok();
    node.send_text(&bob, &room, "vijf").await;
    let reply = sliding(&node, &alice, Some(&pos(&reply)), room_list(9, 1))
        .await
        .ok();
    assert_eq!(count(&reply), 0);
}
