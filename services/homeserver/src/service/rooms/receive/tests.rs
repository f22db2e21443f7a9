//! Tests of the peer-event pipeline: a join's state, the auth chain's
//! bound, the conflicted subgraph.

use std::collections::BTreeSet;

use ruma::{
    CanonicalJsonObject, CanonicalJsonValue, EventId, OwnedEventId, RoomVersionId,
    events::StateEventType, user_id,
};
use serde_json::json;

use super::super::{PduBuilder, Rooms, testing};

fn signed(rooms: &Rooms, id: &EventId) -> (OwnedEventId, CanonicalJsonObject) {
    let json = rooms.federation_json(id).expect("read").expect("stored");
    (
        id.to_owned(),
        serde_json::from_value(json).expect("an object"),
    )
}

#[tokio::test]
async fn a_join_refuses_room_state_that_fails_the_auth_rules() {
    // The resident server's room: Alice made it, Eve joined without power.
    let resident_dir = tempfile::tempdir().expect("tempdir");
    let (resident, _, _) = testing::rooms(resident_dir.path(), BTreeSet::new());
    let (alice, eve, carol) = (
        user_id!("@alice:a.test"),
        user_id!("@eve:a.test"),
        user_id!("@carol:a.test"),
    );
    let created = resident
        .create_room(alice, json!({ "room_version": "11" }))
        .await
        .expect("create the room");
    let room = &*created.pdu.room_id;
    let mut state = vec![created.pdu.event_id.clone()];
    for (sender, builder) in [
        (
            alice,
            PduBuilder::state(
                "m.room.member",
                alice.as_str(),
                json!({ "membership": "join" }),
            ),
        ),
        (
            alice,
            PduBuilder::state(
                "m.room.power_levels",
                "",
                json!({ "users": { alice: 100 } }),
            ),
        ),
        (
            alice,
            PduBuilder::state("m.room.join_rules", "", json!({ "join_rule": "public" })),
        ),
        (
            eve,
            PduBuilder::state(
                "m.room.member",
                eve.as_str(),
                json!({ "membership": "join" }),
            ),
        ),
    ] {
        let appended = resident
            .append(room, sender, builder)
            .await
            .expect("build the room");
        state.push(appended.pdu.event_id.clone());
    }
    let join = resident
        .append(
            room,
            carol,
            PduBuilder::state(
                "m.room.member",
                carol.as_str(),
                json!({ "membership": "join" }),
            ),
        )
        .await
        .expect("Carol's join")
        .pdu
        .event_id
        .clone();

    // What a dishonest resident hands the joining server: power levels
    // by which Eve gave herself 100, in place of Alice's.
    let (_, mut forged) = signed(&resident, &state[2]);
    let forged_id = EventId::parse("$forged-power-levels").expect("an event ID");
    forged.insert("sender".into(), CanonicalJsonValue::String(eve.to_string()));
    forged.insert(
        "content".into(),
        serde_json::from_value(json!({ "users": { alice: 100, eve: 100 } })).expect("content"),
    );
    forged.insert(
        "auth_events".into(),
        serde_json::from_value(json!([state[0], state[2], state[4]])).expect("ids"),
    );
    let mut events: Vec<_> = state.iter().map(|id| signed(&resident, id)).collect();
    events.push((forged_id.clone(), forged));
    let mut forged_state = state.clone();
    forged_state[2] = forged_id.clone();

    let joiner_dir = tempfile::tempdir().expect("tempdir");
    let (joiner, _, _) = testing::rooms(joiner_dir.path(), BTreeSet::new());
    let refused = joiner
        .complete_join(
            room,
            RoomVersionId::V11,
            events.clone(),
            forged_state,
            signed(&resident, &join),
        )
        .await
        .err()
        .expect("the join is refused");
    assert!(
        refused.to_string().contains(forged_id.as_str()),
        "{refused}"
    );
    assert!(
        joiner.meta(room).expect("read").is_none(),
        "no room is joined"
    );
    assert!(
        joiner.get_pdu(&forged_id).expect("read").is_none(),
        "nothing is stored"
    );

    // The room's true state joins, with Eve still without power.
    joiner
        .complete_join(
            room,
            RoomVersionId::V11,
            events,
            state,
            signed(&resident, &join),
        )
        .await
        .expect("the join");
    let power = joiner
        .state_content(room, &StateEventType::RoomPowerLevels, "")
        .expect("read")
        .expect("power levels");
    assert!(!power.contains(eve.as_str()), "{power}");
}

#[test]
fn an_auth_chain_longer_than_the_bound_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (rooms, _, _) = testing::rooms(dir.path(), BTreeSet::new());
    // A chain without end: each event is authorized by the next one.
    let event = |n: usize| -> super::super::Pdu {
        serde_json::from_value(json!({
            "event_id": format!("$e{n}"),
            "room_id": "!r:a.test",
            "sender": "@eve:a.test",
            "origin_server_ts": 0,
            "type": "m.room.member",
            "state_key": "@eve:a.test",
            "content": { "membership": "join" },
            "prev_events": [],
            "depth": 1,
            "auth_events": [format!("$e{}", n + 1)],
            "hashes": {},
            "signatures": {},
        }))
        .expect("an event")
    };
    let fetch = |id: &EventId| -> crate::Result<Option<super::super::Pdu>> {
        Ok(Some(event(id.as_str()[2..].parse().expect("a number"))))
    };
    let refused = rooms
        .auth_chain_with([OwnedEventId::try_from("$e0").expect("an ID")], &fetch)
        .expect_err("the walk stops");
    assert!(refused.to_string().contains("100000"), "{refused}");
}

#[test]
fn the_conflicted_subgraph_holds_the_paths_between_conflicted_events() {
    // c <- p1 <- p2 <- x, and c <- y: each event names its auth events.
    let graph: [(&str, &[&str]); 5] = [
        ("c", &[]),
        ("p1", &["c"]),
        ("p2", &["p1"]),
        ("x", &["p2"]),
        ("y", &["c"]),
    ];
    let event = |name: &str, auth: &[&str]| -> super::super::Pdu {
        serde_json::from_value(json!({
            "event_id": format!("${name}"),
            "room_id": "!r:a.test",
            "sender": "@alice:a.test",
            "origin_server_ts": 0,
            "type": "m.room.topic",
            "state_key": "",
            "content": { "topic": name },
            "prev_events": [],
            "depth": 1,
            "auth_events": auth.iter().map(|a| format!("${a}")).collect::<Vec<_>>(),
            "hashes": {},
            "signatures": {},
        }))
        .expect("an event")
    };
    let fetch = |id: &EventId| -> crate::Result<Option<super::super::Pdu>> {
        Ok(graph
            .iter()
            .find(|(name, _)| id.as_str()[1..] == **name)
            .map(|(name, auth)| event(name, auth)))
    };
    let id = |name: &str| OwnedEventId::try_from(format!("${name}")).expect("an ID");
    let mut conflicted = ruma::state_res::StateMap::new();
    conflicted.insert(
        (StateEventType::RoomTopic, String::new()),
        vec![id("x"), id("p1"), id("y")],
    );
    let subgraph = super::resolve::conflicted_subgraph(&conflicted, &fetch).expect("found");
    let mut names: Vec<String> = subgraph
        .iter()
        .map(|id| id.as_str()[1..].to_owned())
        .collect();
    names.sort();
    // p2 lies between x and p1; c lies below every conflicted event
    // but between none of them.
    assert_eq!(names, ["p1", "p2", "x", "y"]);
}
