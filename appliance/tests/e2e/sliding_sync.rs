//! Element X's way of syncing: matrix-sdk's `SyncService`, with its
//! `RoomListService` (the room list) and its encryption sync (to-device
//! messages and keys), over simplified sliding sync (MSC4186).

use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use matrix_sdk::Client;
use matrix_sdk::RoomState;
use matrix_sdk::ruma::api::client::receipt::create_receipt::v3::ReceiptType;
use matrix_sdk::ruma::api::client::room::create_room;
use matrix_sdk::ruma::events::InitialStateEvent;
use matrix_sdk::ruma::events::room::encryption::RoomEncryptionEventContent;
use matrix_sdk::ruma::events::room::message::RoomMessageEventContent;
use matrix_sdk::ruma::{OwnedRoomId, RoomId};
use matrix_sdk::sliding_sync::VersionBuilder;
use matrix_sdk_ui::Timeline;
use matrix_sdk_ui::eyeball_im::{Vector, VectorDiff};
use matrix_sdk_ui::room_list_service::RoomListItem;
use matrix_sdk_ui::room_list_service::filters::new_filter_non_left;
use matrix_sdk_ui::sync_service::{State, SyncService};
use matrix_sdk_ui::timeline::RoomExt;
use serde_json::json;
use tokio::time::timeout;

use crate::client::{
    Api, SYNC_DEADLINE, client_builder, register_as, register_client, sync_settings, user_id,
};
use crate::harness::{TestServer, eventually};

const SSS: &str = "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync";

/// A client as Element X builds one: sliding sync found through `/versions`.
async fn element_x(server: &TestServer, name: &str) -> Client {
    let client = client_builder(server.url())
        .sliding_sync_version_builder(VersionBuilder::DiscoverNative)
        .build()
        .await
        .expect("build a client that discovers sliding sync");
    register_as(client, server.server_name(), name).await
}

/// Applies the room list's updates until `done` holds for it.
async fn until_list(
    sync: &SyncService,
    stream: &mut (impl Stream<Item = Vec<VectorDiff<RoomListItem>>> + Unpin),
    items: &mut Vector<RoomListItem>,
    what: &str,
    done: impl Fn(&Vector<RoomListItem>) -> bool,
) {
    let wait = async {
        while !done(items) {
            let diffs = stream.next().await.expect("the room list stream ended");
            for diff in diffs {
                diff.apply(items);
            }
        }
    };
    if timeout(SYNC_DEADLINE, wait).await.is_err() {
        let ids: Vec<_> = items
            .iter()
            .map(|r| {
                (
                    r.room_id().to_owned(),
                    r.state(),
                    r.recency_stamp(),
                    r.latest_event_timestamp(),
                )
            })
            .collect();
        panic!(
            "the room list never showed {what}: {ids:?} (sync service: {:?})",
            sync.state().get()
        );
    }
}

fn position(items: &Vector<RoomListItem>, room_id: &RoomId) -> Option<usize> {
    items.iter().position(|r| r.room_id() == room_id)
}

/// Waits until the timeline holds a message with `body`.
async fn until_message(timeline: &Timeline, body: &str) {
    eventually(
        &format!("the timeline shows {body:?}"),
        SYNC_DEADLINE,
        || async {
            timeline
                .items()
                .await
                .iter()
                .filter_map(|item| item.as_event())
                .any(|event| {
                    event
                        .content()
                        .as_message()
                        .is_some_and(|m| m.body() == body)
                })
                .then_some(())
        },
    )
    .await;
}

async fn create_named(client: &Client, name: &str) -> OwnedRoomId {
    let mut request = create_room::v3::Request::new();
    request.name = Some(name.to_owned());
    client
        .create_room(request)
        .await
        .expect("create a room")
        .room_id()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn element_x_syncs_its_room_list_and_encrypted_rooms_through_a_restart() {
    let mut server = TestServer::start().await;
    let alice = element_x(&server, "alice").await;
    let bob = register_client(&server, "bob").await;

    let meeting = create_named(&alice, "Overleg").await;
    let notes = create_named(&alice, "Notities").await;
    // Bob invites alice to an encrypted room.
    let mut request = create_room::v3::Request::new();
    request.name = Some("Geheim".to_owned());
    request.invite = vec![user_id("alice")];
    request.initial_state = vec![
        InitialStateEvent::with_empty_state_key(
            RoomEncryptionEventContent::with_recommended_defaults(),
        )
        .to_raw_any(),
    ];
    let secret = bob
        .create_room(request)
        .await
        .expect("bob creates an encrypted room")
        .room_id()
        .to_owned();

    let sync = Arc::new(
        SyncService::builder(alice.clone())
            .build()
            .await
            .expect("build the sync service"),
    );
    sync.start().await;
    // As Element X does: a sync service that stopped on an error (the node
    // away, a request cut off) is started again, and goes on from where it
    // was.
    let keeper = {
        let sync = sync.clone();
        tokio::spawn(async move {
            loop {
                if matches!(sync.state().get(), State::Error(_)) {
                    sync.start().await;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };
    let rooms = sync.room_list_service();
    let all = rooms.all_rooms().await.expect("the all-rooms list");
    let (stream, controller) = all.entries_with_dynamic_adapters(50);
    let mut stream = pin!(stream);
    controller.set_filter(Box::new(new_filter_non_left()));
    let mut items = Vector::new();

    // The rooms appear, the invite among them, newest first.
    until_list(&sync, &mut stream, &mut items, "three rooms", |items| {
        items.len() == 3
    })
    .await;
    let invite = position(&items, &secret).expect("the invite is listed");
    assert_eq!(items[invite].state(), RoomState::Invited);

    // A message moves its room to the top. The client sorts by the latest
    // event's time and, on a tie, by name: the message goes a few
    // milliseconds after bob's invite, so that its time is later.
    tokio::time::sleep(Duration::from_millis(5)).await;
    alice
        .get_room(&meeting)
        .expect("alice's room")
        .send(RoomMessageEventContent::text_plain("agenda"))
        .await
        .expect("send");
    until_list(&sync, &mut stream, &mut items, "Overleg on top", |items| {
        position(items, &meeting) == Some(0)
    })
    .await;
    assert!(position(&items, &notes).is_some());

    // The invite is accepted from the room list.
    rooms
        .room(&secret)
        .expect("the invited room")
        .join()
        .await
        .expect("alice joins");
    until_list(&sync, &mut stream, &mut items, "Geheim joined", |items| {
        position(items, &secret).is_some_and(|i| items[i].state() == RoomState::Joined)
    })
    .await;

    // Bob sees alice join, and encrypts for her device: the room key
    // reaches it over the encryption connection, and the timeline opened
    // through a subscription reads his messages.
    let bobs_room = bob.get_room(&secret).expect("bob's room");
    eventually("bob sees alice join", SYNC_DEADLINE, || async {
        bob.sync_once(sync_settings()).await.expect("bob syncs");
        let members = bobs_room
            .members(matrix_sdk::RoomMemberships::JOIN)
            .await
            .expect("members");
        members
            .iter()
            .any(|m| m.user_id() == user_id("alice"))
            .then_some(())
    })
    .await;
    for body in ["geheim bericht", "tweede", "derde"] {
        bobs_room
            .send(RoomMessageEventContent::text_plain(body))
            .await
            .expect("bob sends");
    }
    rooms.subscribe_to_rooms(&[&secret]).await;
    let room = rooms.room(&secret).expect("the room");
    let timeline = room.timeline().await.expect("a timeline");
    until_message(&timeline, "geheim bericht").await;
    until_message(&timeline, "derde").await;

    // Unread counts come from receipts: three unread, none once read.
    eventually("three unread messages", SYNC_DEADLINE, || async {
        (room.num_unread_messages() == 3).then_some(())
    })
    .await;
    timeline
        .mark_as_read(ReceiptType::Read)
        .await
        .expect("mark as read");
    eventually("no unread messages", SYNC_DEADLINE, || async {
        (room.num_unread_messages() == 0).then_some(())
    })
    .await;

    // A position handed out before a restart of the node is good after it.
    let api = Api::new(server.url()).with_token(&alice.access_token().expect("token"));
    let probe = json!({ "conn_id": "probe", "lists": { "all": { "ranges": [[0, 9]], "timeline_limit": 1 } } });
    let before = api.post(SSS, &probe).await.ok();
    let pos = before["pos"].as_str().expect("pos").to_owned();

    server.restart_on_same_port().await;

    bobs_room
        .send(RoomMessageEventContent::text_plain("na de herstart"))
        .await
        .expect("bob sends after the restart");
    let api = Api::new(server.url()).with_token(&alice.access_token().expect("token"));
    let after = api.post(&format!("{SSS}?pos={pos}"), &probe).await.ok();
    assert!(
        after["rooms"].get(secret.as_str()).is_some(),
        "the connection continued where it was: {after}"
    );
    assert!(after["rooms"][secret.as_str()].get("initial").is_none());

    // The sync service, which failed while the node was away, is started
    // again and brings the message.
    until_message(&timeline, "na de herstart").await;
    keeper.abort();
    sync.stop().await;
}
