//! Bad input: every rejected request gets the right HTTP status and
//! `errcode`, and leaves nothing behind.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::time::{Instant, sleep};

use crate::client::{Api, Reply, enc, noise, send_path, text_content};
use crate::harness::{TestServer, dir_size};

/// Registers alice, creates a private room, and returns her API handle,
/// the room ID and the room's event IDs so far.
async fn alice_with_room(server: &TestServer) -> (Api, String, Vec<String>) {
    let anonymous = Api::new(server.url());
    let session = anonymous.register("alice").await;
    let alice = anonymous.with_token(&session.access_token);
    let room = alice.create_room().await;
    let timeline = alice.timeline_ids(&room).await;
    (alice, room, timeline)
}

/// Asserts that a rejected `PUT .../send/m.room.message/{txn}` consumed
/// nothing: the timeline is unchanged, and the transaction ID still works
/// for a valid request.
async fn assert_send_left_no_trace(alice: &Api, room: &str, before: &[String], txn: &str) {
    assert_eq!(
        alice.timeline_ids(room).await,
        before,
        "a rejected send changed the timeline"
    );
    let body = format!("valid retry of {txn}");
    let event_id = alice.send_text_ok(room, txn, &body).await;
    let stored = alice.event(room, &event_id).await.ok();
    assert_eq!(
        stored["content"]["body"],
        body.as_str(),
        "retry of {txn}: {stored}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_bodies_are_rejected_and_not_stored() {
    let server = TestServer::start().await;
    let (alice, room, before) = alice_with_room(&server).await;
    let rooms_before = alice.joined_rooms().await;

    // Not JSON at all.
    alice
        .raw_json(Method::PUT, &send_path(&room, "txn-not-json"), b"{not json")
        .await
        .assert_error(StatusCode::BAD_REQUEST, "M_NOT_JSON");
    alice
        .raw_json(Method::POST, "/_matrix/client/v3/createRoom", b"{not json")
        .await
        .assert_error(StatusCode::BAD_REQUEST, "M_NOT_JSON");

    // Valid JSON of the wrong shape.
    alice
        .post("/_matrix/client/v3/createRoom", &json!({ "preset": 5 }))
        .await
        .assert_error(StatusCode::BAD_REQUEST, "M_BAD_JSON");
    alice
        .post(
            "/_matrix/client/v3/createRoom",
            &json!({ "invite": "@bob:localhost" }),
        )
        .await
        .assert_error(StatusCode::BAD_REQUEST, "M_BAD_JSON");
    alice
        .put(
            &send_path(&room, "txn-not-an-object"),
            &json!(["event content", "is an object"]),
        )
        .await
        .assert_error(StatusCode::BAD_REQUEST, "M_BAD_JSON");

    assert_eq!(
        alice.joined_rooms().await,
        rooms_before,
        "a rejected createRoom made a room"
    );
    assert_send_left_no_trace(&alice, &room, &before, "txn-not-json").await;
    let before = alice.timeline_ids(&room).await;
    assert_send_left_no_trace(&alice, &room, &before, "txn-not-an-object").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_and_unknown_tokens_are_rejected() {
    let server = TestServer::start().await;
    let (alice, room, before) = alice_with_room(&server).await;
    let anonymous = alice.anonymous();
    let bogus = alice.with_token("syt_this_is_not_a_token");

    for path in [
        "/_matrix/client/v3/sync",
        "/_matrix/client/v3/account/whoami",
    ] {
        anonymous
            .get(path)
            .await
            .assert_error(StatusCode::UNAUTHORIZED, "M_MISSING_TOKEN");
        bogus
            .get(path)
            .await
            .assert_error(StatusCode::UNAUTHORIZED, "M_UNKNOWN_TOKEN");
    }

    anonymous
        .send_text(&room, "txn-anonymous", "nobody")
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "M_MISSING_TOKEN");
    bogus
        .send_text(&room, "txn-bogus", "impostor")
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "M_UNKNOWN_TOKEN");
    assert_eq!(
        alice.timeline_ids(&room).await,
        before,
        "an unauthenticated send was stored"
    );

    let rooms_before = alice.joined_rooms().await;
    bogus
        .post("/_matrix/client/v3/createRoom", &json!({}))
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "M_UNKNOWN_TOKEN");
    assert_eq!(alice.joined_rooms().await, rooms_before);

    // A token stops working once its session logs out.
    let second = alice.anonymous().login("alice").await;
    let second = alice.with_token(&second.access_token);
    let whoami = second.get("/_matrix/client/v3/account/whoami").await.ok();
    assert_eq!(whoami["user_id"], "@alice:localhost");
    second
        .post("/_matrix/client/v3/logout", &json!({}))
        .await
        .ok();
    second
        .get("/_matrix/client/v3/account/whoami")
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "M_UNKNOWN_TOKEN");
    // The other session is unaffected.
    alice.get("/_matrix/client/v3/account/whoami").await.ok();
}

#[tokio::test(flavor = "multi_thread")]
async fn forbidden_actions_are_rejected_and_not_stored() {
    let server = TestServer::start().await;
    let (alice, room, before) = alice_with_room(&server).await;
    let session = alice.anonymous().register("carol").await;
    let carol = alice.with_token(&session.access_token);

    // Carol is not in alice's private room.
    carol
        .send_text(&room, "txn-intruder", "let me in")
        .await
        .assert_error(StatusCode::FORBIDDEN, "M_FORBIDDEN");
    carol
        .get(&format!(
            "/_matrix/client/v3/rooms/{}/messages?dir=b",
            enc(&room)
        ))
        .await
        .assert_error(StatusCode::FORBIDDEN, "M_FORBIDDEN");
    carol
        .post(
            &format!("/_matrix/client/v3/rooms/{}/join", enc(&room)),
            &json!({}),
        )
        .await
        .assert_error(StatusCode::FORBIDDEN, "M_FORBIDDEN");

    assert_eq!(
        alice.timeline_ids(&room).await,
        before,
        "a forbidden request changed the room"
    );
    assert!(
        carol.joined_rooms().await.is_empty(),
        "carol must not have joined"
    );

    // A wrong password is also M_FORBIDDEN.
    alice
        .anonymous()
        .login_reply("alice", "not the password")
        .await
        .assert_error(StatusCode::FORBIDDEN, "M_FORBIDDEN");
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_events_and_state_are_not_found() {
    let server = TestServer::start().await;
    let (alice, room, _) = alice_with_room(&server).await;

    alice
        .event(&room, "$doesnotexist0000000000000000000000000000000")
        .await
        .assert_error(StatusCode::NOT_FOUND, "M_NOT_FOUND");
    // A state event that was never set (clients probe m.room.encryption).
    alice
        .get(&format!(
            "/_matrix/client/v3/rooms/{}/state/m.room.encryption/",
            enc(&room)
        ))
        .await
        .assert_error(StatusCode::NOT_FOUND, "M_NOT_FOUND");
    alice
        .download("mxc://localhost/doesnotexist0000")
        .await
        .assert_error(StatusCode::NOT_FOUND, "M_NOT_FOUND");
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_endpoints_and_methods_are_unrecognized() {
    let server = TestServer::start().await;
    let (alice, _, _) = alice_with_room(&server).await;

    alice
        .get("/_matrix/client/v3/this/endpoint/does/not/exist")
        .await
        .assert_error(StatusCode::NOT_FOUND, "M_UNRECOGNIZED");
    alice
        .anonymous()
        .get("/_matrix/client/v3/this/endpoint/does/not/exist")
        .await
        .assert_error(StatusCode::NOT_FOUND, "M_UNRECOGNIZED");
    // Element X asks for OAuth metadata first and signs in with a password
    // when it is unrecognized: this node has no OAuth server.
    for path in [
        "/_matrix/client/v1/auth_metadata",
        "/_matrix/client/unstable/org.matrix.msc2965/auth_metadata",
    ] {
        alice
            .anonymous()
            .get(path)
            .await
            .assert_error(StatusCode::NOT_FOUND, "M_UNRECOGNIZED");
    }
    alice
        .request(Method::DELETE, "/_matrix/client/v3/createRoom", None)
        .await
        .assert_error(StatusCode::METHOD_NOT_ALLOWED, "M_UNRECOGNIZED");
    alice
        .post("/_matrix/client/versions", &json!({}))
        .await
        .assert_error(StatusCode::METHOD_NOT_ALLOWED, "M_UNRECOGNIZED");
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_events_are_rejected_and_not_stored() {
    let server = TestServer::start().await;
    let (alice, room, before) = alice_with_room(&server).await;
    let huge = "x".repeat(70 * 1024);

    alice
        .send_text(&room, "txn-huge", &huge)
        .await
        .assert_error(StatusCode::PAYLOAD_TOO_LARGE, "M_TOO_LARGE");
    let topic_path = format!(
        "/_matrix/client/v3/rooms/{}/state/m.room.topic/",
        enc(&room)
    );
    alice
        .put(&topic_path, &json!({ "topic": huge }))
        .await
        .assert_error(StatusCode::PAYLOAD_TOO_LARGE, "M_TOO_LARGE");

    alice
        .get(&topic_path)
        .await
        .assert_error(StatusCode::NOT_FOUND, "M_NOT_FOUND");
    assert_send_left_no_trace(&alice, &room, &before, "txn-huge").await;

    // Just under the limit is fine.
    let big = "y".repeat(60 * 1024);
    let event_id = alice.send_text_ok(&room, "txn-big", &big).await;
    let stored = alice.event(&room, &event_id).await.ok();
    assert_eq!(
        stored["content"]["body"].as_str().map(str::len),
        Some(big.len())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_uploads_are_rejected_and_not_stored() {
    const LIMIT: usize = 1024 * 1024;
    let server = TestServer::start_with(&["--max-upload-size", &LIMIT.to_string()]).await;
    let (alice, _, _) = alice_with_room(&server).await;

    let config = alice.get("/_matrix/client/v1/media/config").await.ok();
    assert_eq!(
        config["m.upload.size"],
        json!(LIMIT),
        "media config: {config}"
    );

    let size_before = dir_size(&server.data_dir());
    alice
        .upload("application/octet-stream", noise(2 * LIMIT, 1))
        .await
        .assert_error(StatusCode::PAYLOAD_TOO_LARGE, "M_TOO_LARGE");
    let growth = dir_size(&server.data_dir()).saturating_sub(size_before);
    assert!(
        growth < (LIMIT / 2) as u64,
        "the data directory grew by {growth} bytes after a rejected 2 MiB upload"
    );

    // Below the limit, uploads work and round-trip.
    let small = noise(LIMIT / 2, 2);
    let uploaded = alice
        .upload("application/octet-stream", small.clone())
        .await
        .ok();
    let mxc = uploaded["content_uri"].as_str().expect("content_uri");
    let reply = alice.download(mxc).await;
    assert_eq!(reply.status, StatusCode::OK, "download: {}", reply.text());
    assert!(
        reply.bytes == small,
        "downloaded bytes differ from the upload"
    );
}

/// Sends `attempt` until the server answers 429; returns the replies before
/// it and the 429 reply. Gives up after `max_attempts`.
async fn hammer<F, Fut>(what: &str, max_attempts: usize, mut attempt: F) -> (Vec<Reply>, Reply)
where
    F: FnMut(usize) -> Fut,
    Fut: Future<Output = Reply>,
{
    let mut accepted = Vec::new();
    for n in 0..max_attempts {
        let reply = attempt(n).await;
        if reply.status == StatusCode::TOO_MANY_REQUESTS {
            return (accepted, reply);
        }
        accepted.push(reply);
    }
    panic!("{what}: no 429 after {max_attempts} requests with --rate-limit");
}

/// Checks a 429 reply and returns its `retry_after_ms`.
#[track_caller]
fn retry_after(reply: &Reply) -> Duration {
    reply.assert_error(StatusCode::TOO_MANY_REQUESTS, "M_LIMIT_EXCEEDED");
    let body = reply.json();
    let millis = body["retry_after_ms"]
        .as_u64()
        .unwrap_or_else(|| panic!("429 without a numeric retry_after_ms: {body}"));
    assert!(
        millis <= 10 * 60 * 1000,
        "implausible retry_after_ms: {millis}"
    );
    Duration::from_millis(millis)
}

/// Repeats `attempt`, honouring each `retry_after_ms`, until it succeeds.
async fn retry_until_ok<F, Fut>(what: &str, mut wait: Duration, mut attempt: F) -> Value
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Reply>,
{
    let give_up = Instant::now() + Duration::from_secs(120);
    loop {
        sleep(wait).await;
        let reply = attempt().await;
        if reply.status != StatusCode::TOO_MANY_REQUESTS {
            return reply.ok();
        }
        wait = retry_after(&reply);
        assert!(
            Instant::now() + wait < give_up,
            "{what}: still rate limited after 120 s"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn rate_limits_reject_with_retry_after_and_store_nothing() {
    let server = TestServer::start_with(&["--rate-limit"]).await;
    let (alice, room, _) = alice_with_room(&server).await;
    let anonymous = alice.anonymous();

    // Password guessing.
    let (failures, limited) = hammer("failed logins", 200, |_| {
        anonymous.login_reply("alice", "wrong password")
    })
    .await;
    for reply in &failures {
        reply.assert_error(StatusCode::FORBIDDEN, "M_FORBIDDEN");
    }
    let wait = retry_after(&limited);
    let session = retry_until_ok("login after the limit", wait, || {
        anonymous.login_reply("alice", crate::client::PASSWORD)
    })
    .await;
    assert_eq!(session["user_id"], "@alice:localhost");

    // Message flooding: every accepted message is stored, the rejected one
    // is not, and it goes through once the client honours retry_after_ms.
    let (accepted, limited) = hammer("message flood", 1000, |n| {
        let (alice, room) = (alice.clone(), room.clone());
        async move {
            alice
                .send_text(&room, &format!("flood-{n}"), &format!("flood {n}"))
                .await
        }
    })
    .await;
    let accepted_ids: Vec<String> = accepted
        .iter()
        .map(|reply| {
            reply.ok()["event_id"]
                .as_str()
                .expect("event_id")
                .to_owned()
        })
        .collect();
    let wait = retry_after(&limited);
    let rejected = accepted.len();
    let stored: Vec<String> = alice
        .messages_with_prefix(&room, "flood ")
        .await
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(
        stored, accepted_ids,
        "the timeline must hold exactly the accepted messages"
    );

    let path = send_path(&room, &format!("flood-{rejected}"));
    let content = text_content(&format!("flood {rejected}"));
    let sent = retry_until_ok("the rejected message", wait, || alice.put(&path, &content)).await;
    let stored = alice.messages_with_prefix(&room, "flood ").await;
    assert_eq!(stored.len(), accepted_ids.len() + 1);
    assert_eq!(
        stored.last().map(|(id, _)| id.as_str()),
        sent["event_id"].as_str()
    );
}
