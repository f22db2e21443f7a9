//! The node's archive member: in every room from its creation, listed as a
//! service member, left out of room summaries, and beyond anyone's reach.

use http::{Method, StatusCode};
use serde_json::json;

use crate::harness::TestNode;

const V3: &str = "/_matrix/client/v3";
const ARCHIVE: &str = "@archive:localhost";

#[tokio::test]
async fn a_new_dm_has_the_archive_member_but_is_named_after_the_other_person() {
    let node = TestNode::start(|_| {});
    let alice = node.register("alice").await;
    let bob = node.register("bob").await;
    let room = node
        .create_room(
            &alice,
            json!({ "is_direct": true, "preset": "trusted_private_chat", "invite": ["@bob:localhost"],
                    "initial_state": [{ "type": "m.room.encryption", "state_key": "",
                                        "content": { "algorithm": "m.megolm.v1.aes-sha2" } }] }),
        )
        .await;

    // Everyone sees it in the member list, with its display name.
    let members = node
        .request(
            Method::GET,
            &format!("{V3}/rooms/{room}/joined_members"),
            Some(&alice),
            None,
        )
        .await
        .ok();
    assert_eq!(members["joined"][ARCHIVE]["display_name"], "Archive");

    // It joined before the room was encrypted: it gets every room key.
    let initial = node.sync(&alice, None).await;
    let timeline = &initial["rooms"]["join"][&room]["timeline"]["events"];
    let position = |kind: &str, key: Option<&str>| {
        timeline
            .as_array()
            .expect("timeline")
            .iter()
            .position(|e| e["type"] == kind && key.is_none_or(|k| e["state_key"] == k))
    };
    let archive_joined = position("m.room.member", Some(ARCHIVE)).expect("archive member event");
    let encrypted = position("m.room.encryption", None).expect("encryption event");
    assert!(archive_joined < encrypted, "{timeline}");
    assert_eq!(
        initial["rooms"]["join"][&room]["state"]["events"]
            .as_array()
            .into_iter()
            .flatten()
            .chain(timeline.as_array().into_iter().flatten())
            .find(|e| e["type"] == "io.element.functional_members")
            .map(|e| e["content"].clone()),
        Some(json!({ "service_members": [ARCHIVE] })),
        "listed as a service member"
    );

    // The summary leaves it out: a DM stays "Bob".
    let summary = &initial["rooms"]["join"][&room]["summary"];
    assert_eq!(summary["m.heroes"], json!(["@bob:localhost"]), "{summary}");
    assert_eq!(summary["m.joined_member_count"], 1, "{summary}");
    assert_eq!(summary["m.invited_member_count"], 1, "{summary}");

    node.join(&bob, &room).await.ok();
    let bobs = node.sync(&bob, None).await;
    let summary = &bobs["rooms"]["join"][&room]["summary"];
    assert_eq!(
        summary["m.heroes"],
        json!(["@alice:localhost"]),
        "{summary}"
    );
    assert_eq!(summary["m.joined_member_count"], 2, "{summary}");
}

#[tokio::test]
async fn the_archive_member_cannot_be_signed_in_to_deactivated_or_registered() {
    let node = TestNode::start(|_| {});
    node.register("alice").await;
    for password in ["", "archive", "correct horse"] {
        let login = json!({ "type": "m.login.password", "identifier": { "type": "m.id.user", "user": "archive" }, "password": password });
        let reply = node
            .request(Method::POST, &format!("{V3}/login"), None, Some(login))
            .await;
        assert_ne!(reply.status, StatusCode::OK, "{}", reply.body);
    }
    let register = json!({ "username": "archive", "password": "correct horse", "auth": { "type": "m.login.dummy" } });
    node.request(
        Method::POST,
        &format!("{V3}/register"),
        None,
        Some(register),
    )
    .await
    .err(StatusCode::BAD_REQUEST, "M_USER_IN_USE");

    let services = &node.homeserver.services;
    let archive = ruma::UserId::parse(ARCHIVE).expect("user id");
    let refused = archipel_homeserver::ops::users::deactivate_user(services, &archive)
        .await
        .expect_err("deactivating the archive member");
    assert!(refused.to_string().contains("archive member"), "{refused}");
    services
        .users
        .set_password(&archive, "a password".into())
        .await
        .expect_err("giving the archive member a password");
    assert!(services.users.is_active(&archive).expect("account"));
}

#[tokio::test]
async fn a_banned_archive_member_stays_out_and_people_still_join() {
    let node = TestNode::start(|_| {});
    let alice = node.register("alice").await;
    let bob = node.register("bob").await;
    let room = node
        .create_room(&alice, json!({ "preset": "public_chat" }))
        .await;
    node.request(
        Method::POST,
        &format!("{V3}/rooms/{room}/ban"),
        Some(&alice),
        Some(json!({ "user_id": ARCHIVE, "reason": "not here" })),
    )
    .await
    .ok();
    node.join(&bob, &room).await.ok();
    let members = node
        .request(
            Method::GET,
            &format!("{V3}/rooms/{room}/members"),
            Some(&bob),
            None,
        )
        .await
        .ok();
    let archive = members["chunk"]
        .as_array()
        .expect("chunk")
        .iter()
        .find(|e| e["state_key"] == ARCHIVE)
        .expect("the archive's member event");
    assert_eq!(archive["content"]["membership"], "ban");
}

#[tokio::test]
async fn a_node_without_an_archive_member_adds_nobody() {
    let node = TestNode::start(|c| c.archive_member.enabled = false);
    let alice = node.register("alice").await;
    let room = node.create_room(&alice, json!({})).await;
    let members = node
        .request(
            Method::GET,
            &format!("{V3}/rooms/{room}/joined_members"),
            Some(&alice),
            None,
        )
        .await
        .ok();
    assert_eq!(
        members["joined"].as_object().expect("joined").len(),
        1,
        "{members}"
    );
}
