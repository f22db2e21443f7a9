//! Durability: SIGKILL the server while a client is sending; after a
//! restart every acknowledged event is there, in order, and in the vault.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::{Method, StatusCode};
use tokio::time::Instant;

use crate::client::{Api, join, send_path, text_content};
use crate::harness::{TestServer, eventually};

/// A message the server acknowledged with an event ID.
#[derive(Clone, Debug)]
struct Ack {
    body: String,
    event_id: String,
}

/// The request that was cut off by the crash.
#[derive(Debug)]
struct Interrupted {
    txn: String,
    body: String,
}

/// Upper bound on the sender loop, should the kill never come.
const MAX_SENDS: usize = 20_000;

#[tokio::test(flavor = "multi_thread")]
async fn acknowledged_events_survive_sigkill() {
    let mut server = TestServer::start().await;
    let session = Api::new(server.url()).register("alice").await;
    let alice = Api::new(server.url()).with_token(&session.access_token);
    let room = alice.create_room().await;

    // Send as fast as the server acknowledges, one request at a time, until
    // a request fails because the server is gone.
    let acked: Arc<Mutex<Vec<Ack>>> = Arc::default();
    let sender = tokio::spawn({
        let (alice, room, acked) = (alice.clone(), room.clone(), Arc::clone(&acked));
        async move {
            for n in 0..MAX_SENDS {
                let txn = format!("crash-{n}");
                let body = format!("crash {n}");
                let content = serde_json::to_vec(&text_content(&body)).expect("JSON");
                let result = alice
                    .try_request(
                        Method::PUT,
                        &send_path(&room, &txn),
                        Some(("application/json", content)),
                    )
                    .await;
                match result {
                    Ok(reply) if reply.status == StatusCode::OK => {
                        let event_id = reply.json()["event_id"]
                            .as_str()
                            .unwrap_or_else(|| panic!("send {n}: no event_id: {}", reply.text()))
                            .to_owned();
                        acked.lock().expect("lock").push(Ack { body, event_id });
                    }
                    Ok(reply) => panic!("send {n} failed: {} {}", reply.status, reply.text()),
                    Err(_) => return Interrupted { txn, body },
                }
            }
            panic!("the server was never killed ({MAX_SENDS} messages sent)");
        }
    });

    let started = Instant::now();
    eventually("50 acknowledged messages and 1 s of sending", Duration::from_secs(120), || {
        let count = acked.lock().expect("lock").len();
        async move { (count >= 50 && started.elapsed() >= Duration::from_secs(1)).then_some(()) }
    })
    .await;
    server.kill().await;
    let interrupted = join(sender).await;
    let acked = acked.lock().expect("lock").clone();

    server.restart().await;
    // Access tokens survive the crash too.
    let alice = Api::new(server.url()).with_token(&session.access_token);

    for (index, ack) in acked.iter().enumerate() {
        let reply = alice.event(&room, &ack.event_id).await;
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "acknowledged message #{index} ({}) is lost after the crash: {}",
            ack.event_id,
            reply.text()
        );
        assert_eq!(reply.json()["content"]["body"], ack.body.as_str());
    }

    // The timeline holds the acknowledged messages in order, possibly
    // followed by the interrupted one if it was committed before the kill.
    let expected: Vec<(String, String)> = acked
        .iter()
        .map(|ack| (ack.event_id.clone(), ack.body.clone()))
        .collect();
    let stored = alice.messages_with_prefix(&room, "crash ").await;
    assert!(
        stored.len() == expected.len()
            || (stored.len() == expected.len() + 1
                && stored
                    .last()
                    .is_some_and(|(_, body)| *body == interrupted.body)),
        "after the crash the timeline has {} crash messages, {} were acknowledged (interrupted: \
         {interrupted:?}); last stored: {:?}",
        stored.len(),
        expected.len(),
        stored.last()
    );
    assert_eq!(
        stored[..expected.len()],
        expected[..],
        "acknowledged messages out of order"
    );

    // A client retries the interrupted request with the same transaction
    // ID; the message must then be there exactly once.
    let retried = alice
        .send_text_ok(&room, &interrupted.txn, &interrupted.body)
        .await;
    if let Some((committed, _)) = stored.get(expected.len()) {
        assert_eq!(
            &retried, committed,
            "the retried transaction must return the stored event"
        );
    }
    let after = alice.messages_with_prefix(&room, "crash ").await;
    assert_eq!(
        after.len(),
        expected.len() + 1,
        "the retried message is missing or duplicated"
    );
    assert_eq!(after.last(), Some(&(retried, interrupted.body.clone())));

    // The restarted server is fully usable.
    alice.get("/_matrix/client/v3/sync?timeout=0").await.ok();
    alice
        .send_text_ok(&room, "after-crash", "after the crash")
        .await;

    // Every acknowledged event is in the archive too, and its log verifies.
    server.stop().await;
    let dir = server.data_dir();
    let archived: std::collections::HashSet<String> = crate::vault::archived(&dir)
        .iter()
        .filter_map(|r| r["event_id"].as_str().map(str::to_owned))
        .collect();
    for (index, ack) in acked.iter().enumerate() {
        assert!(
            archived.contains(&ack.event_id),
            "acknowledged message #{index} ({}) is missing from the vault after the crash",
            ack.event_id
        );
    }
    crate::vault::assert_verifies(&dir);
}
