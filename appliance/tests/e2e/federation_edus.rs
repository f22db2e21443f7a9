//! What else crosses between nodes besides room events: typing notices,
//! read receipts, presence, profiles, room aliases, and rejecting an
//! invite to a room that lives on the other node.

use matrix_sdk::ruma::api::client::alias::create_alias;
use matrix_sdk::ruma::api::client::presence::set_presence;
use matrix_sdk::ruma::api::client::receipt::create_receipt;
use matrix_sdk::ruma::events::receipt::ReceiptThread;
use matrix_sdk::ruma::events::room::message::RoomMessageEventContent;
use matrix_sdk::ruma::presence::PresenceState;
use matrix_sdk::ruma::{RoomAliasId, UserId};
use serde_json::Value;

use crate::chat::typing_starts_and_stops;
use crate::client::{api_for, ephemeral_json, register_client, sync_until, timeline_json};
use crate::federation::{Cluster, public_room, server};

#[tokio::test(flavor = "multi_thread")]
async fn typing_receipts_presence_profiles_and_aliases_cross_nodes() {
    let cluster = Cluster::start(&[("a.test", &["b.test"]), ("b.test", &["a.test"])]).await;
    let alice = register_client(cluster.node("a.test"), "alice").await;
    let bob = register_client(cluster.node("b.test"), "bob").await;
    let dave = register_client(cluster.node("b.test"), "dave").await;
    let bob_id = UserId::parse("@bob:b.test").expect("user ID");
    let dave_id = UserId::parse("@dave:b.test").expect("user ID");
    bob.account()
        .set_display_name(Some("Bob van Buitenlandse Zaken"))
        .await
        .expect("bob sets a display name");

    // An alias on a.test resolves on b.test, and bob joins by it.
    let room_id = public_room(&alice).await;
    let alias = RoomAliasId::parse("#overleg:a.test").expect("alias");
    alice
        .send(create_alias::v3::Request::new(
            alias.clone(),
            room_id.clone(),
        ))
        .await
        .expect("alice publishes an alias");
    let resolved = bob
        .resolve_room_alias(&alias)
        .await
        .expect("b.test resolves a.test's alias");
    assert_eq!(resolved.room_id, room_id);
    assert!(
        resolved.servers.contains(&server("a.test")),
        "{:?}",
        resolved.servers
    );
    bob.join_room_by_id_or_alias((&*alias).into(), &[])
        .await
        .expect("bob joins by the alias");

    // Profiles: alice looks up bob's display name on b.test.
    let profile = alice
        .account()
        .fetch_user_profile_of(&bob_id)
        .await
        .expect("a.test asks b.test for bob's profile");
    assert_eq!(
        profile.get("displayname").and_then(Value::as_str),
        Some("Bob van Buitenlandse Zaken")
    );

    // Read receipts both ways.
    let alice_room = alice.get_room(&room_id).expect("alice's room");
    let sent = alice_room
        .send(RoomMessageEventContent::text_plain("lees mij"))
        .await
        .expect("alice sends");
    let read = sent.response.event_id;
    sync_until(&bob, "alice's message on b.test", |response| {
        timeline_json(response, &room_id)
            .iter()
            .any(|e| e["event_id"] == read.as_str())
            .then_some(())
    })
    .await;
    let bob_room = bob.get_room(&room_id).expect("bob's room");
    bob_room
        .send_single_receipt(
            create_receipt::v3::ReceiptType::Read,
            ReceiptThread::Unthreaded,
            read.clone(),
        )
        .await
        .expect("bob sends a read receipt");
    sync_until(&alice, "bob's read receipt on a.test", |response| {
        ephemeral_json(response, &room_id)
            .iter()
            .any(|e| {
                e["type"] == "m.receipt"
                    && e["content"][read.as_str()]["m.read"][bob_id.as_str()].is_object()
            })
            .then_some(())
    })
    .await;

    // Typing: bob types until alice's sync shows it, then stops.
    typing_starts_and_stops(&bob_room, &alice, &room_id, bob_id.as_str()).await;

    // Presence: bob says he is away with a message; alice sees it.
    let mut request = set_presence::v3::Request::new(bob_id.clone(), PresenceState::Unavailable);
    request.status_msg = Some("in overleg".to_owned());
    bob.send(request).await.expect("bob sets his presence");
    sync_until(&alice, "bob's presence on a.test", |response| {
        response
            .presence
            .iter()
            .filter_map(|raw| serde_json::from_str::<Value>(raw.json().get()).ok())
            .any(|e| {
                e["sender"] == bob_id.as_str()
                    && e["content"]["presence"] == "unavailable"
                    && e["content"]["status_msg"] == "in overleg"
            })
            .then_some(())
    })
    .await;

    // Dave on b.test rejects an invite to a second room, one b.test is not
    // in: the leave goes through a.test (make_leave, send_leave).
    let room_id = public_room(&alice).await;
    let alice_room = alice.get_room(&room_id).expect("alice's second room");
    alice_room
        .invite_user_by_id(&dave_id)
        .await
        .expect("alice invites dave");
    sync_until(&dave, "dave's invite", |response| {
        response.rooms.invited.contains_key(&room_id).then_some(())
    })
    .await;
    dave.get_room(&room_id)
        .expect("dave's invited room")
        .leave()
        .await
        .expect("dave rejects the invite");
    sync_until(&alice, "dave's rejection on a.test", |response| {
        timeline_json(response, &room_id)
            .iter()
            .any(|e| {
                e["type"] == "m.room.member"
                    && e["state_key"] == dave_id.as_str()
                    && e["sender"] == dave_id.as_str()
                    && e["content"]["membership"] == "leave"
            })
            .then_some(())
    })
    .await;
    // The invite is gone from dave's account on b.test.
    let full_sync = api_for(cluster.node("b.test"), &dave)
        .get("/_matrix/client/v3/sync?timeout=0")
        .await
        .ok();
    assert!(
        full_sync["rooms"]["invite"][room_id.as_str()].is_null(),
        "dave still has the invite: {}",
        full_sync["rooms"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn media_of_one_node_downloads_through_the_other() {
    use matrix_sdk::media::{MediaFormat, MediaRequestParameters, MediaThumbnailSettings};
    use matrix_sdk::ruma::events::room::MediaSource;

    let cluster = Cluster::start(&[
        ("a.test", &["b.test"]),
        ("b.test", &["a.test"]),
        ("c.test", &["a.test"]),
    ])
    .await;
    let alice = register_client(cluster.node("a.test"), "alice").await;
    let bob = register_client(cluster.node("b.test"), "bob").await;
    let image = crate::client::png(64, 64);
    let mxc = alice
        .media()
        .upload(&mime::IMAGE_PNG, image.clone(), None)
        .await
        .expect("alice uploads a PNG on a.test")
        .content_uri;

    // Bob's server fetches the file from a.test (once) and serves it.
    let file = MediaRequestParameters {
        source: MediaSource::Plain(mxc.clone()),
        format: MediaFormat::File,
    };
    for _ in 0..2 {
        let downloaded = bob
            .media()
            .get_media_content(&file, false)
            .await
            .expect("bob downloads a.test's media through b.test");
        assert!(downloaded == image, "the bytes differ from the upload");
    }
    let thumbnail = MediaRequestParameters {
        source: MediaSource::Plain(mxc.clone()),
        format: MediaFormat::Thumbnail(MediaThumbnailSettings::new(
            matrix_sdk::ruma::UInt::from(32_u32),
            matrix_sdk::ruma::UInt::from(32_u32),
        )),
    };
    let thumb = bob
        .media()
        .get_media_content(&thumbnail, false)
        .await
        .expect("bob gets a thumbnail of a.test's media");
    assert!(crate::client::looks_like_image(&thumb), "not an image");

    // A server outside a.test's allowlist gets nothing: c.test asks, a.test refuses.
    let carol = register_client(cluster.node("c.test"), "carol").await;
    let err = carol
        .media()
        .get_media_content(&file, false)
        .await
        .expect_err("a.test refuses c.test");
    assert!(err.to_string().contains("not a federation peer"), "{err}");
}
