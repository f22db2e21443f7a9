//! Many idle and slow connections beside normal chat: the node keeps its
//! connection bounds, cuts clients that send no request in time, goes on
//! chatting, and stops on SIGTERM while a request still waits.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use matrix_sdk::ruma::api::client::room::create_room::v3::Request as CreateRoom;
use matrix_sdk::ruma::events::room::message::RoomMessageEventContent;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpSocket, TcpStream};

use crate::client::{api_for, login_client, sync_until, timeline_json, user_id};
use crate::harness::TestServer;

/// The bounds the test node keeps: small, so that a test reaches them.
const MAX_CONNECTIONS: usize = 400;
const MAX_PER_ADDRESS: usize = 150;
const HEADER_TIMEOUT_SECS: u64 = 3;
/// Where the idle and slow connections come from.
const ATTACKERS: [Ipv4Addr; 2] = [Ipv4Addr::new(127, 0, 0, 2), Ipv4Addr::new(127, 0, 0, 3)];
const SLOW_PER_ADDRESS: usize = 20;

fn config(root: &Path) -> String {
    let key = root.join("vault.key");
    archipel_vault::seal::VaultKey::load_or_generate(&key).expect("a vault key");
    format!(
        r#"[node]
data_dir = "{data}"
listen = "127.0.0.1:0"
max_connections = {MAX_CONNECTIONS}
max_connections_per_address = {MAX_PER_ADDRESS}
header_timeout_secs = {HEADER_TIMEOUT_SECS}
stop_grace_secs = 2

# The chat here sends faster than a person types.
[homeserver.rate_limit]
per_second = 100
burst = 200

[vault]
key_file = "{key}"
"#,
        data = root.join("data").display(),
        key = key.display(),
    )
}

/// A TCP connection to `server` from the loopback address `from`.
async fn connect_from(from: Ipv4Addr, server: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(IpAddr::V4(from), 0))?;
    socket.connect(server).await
}

/// Whether the server has closed `stream` (a read sees the end, or a
/// reset) within `wait`.
async fn closed_within(stream: &mut TcpStream, wait: Duration) -> bool {
    let mut byte = [0u8; 1];
    match tokio::time::timeout(wait, stream.read(&mut byte)).await {
        Ok(Ok(0)) | Ok(Err(_)) => true,
        Ok(Ok(_)) | Err(_) => false,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_and_slow_connections_leave_the_chat_working_and_are_cut() {
    let mut server = TestServer::start_configured("localhost", config).await;
    server.create_user("alice", false);
    server.create_user("bob", false);
    let address: SocketAddr = server
        .url()
        .trim_start_matches("http://")
        .parse()
        .expect("the client API's address");
    let (rss_before, _) = server.memory_kib();

    // From two other addresses, each up to its cap: idle connections that
    // never send a byte, and slow ones that send their headers a line at a
    // time.
    let mut idle = Vec::new();
    let mut slow = Vec::new();
    let mut over = Vec::new();
    for attacker in ATTACKERS {
        for _ in 0..MAX_PER_ADDRESS - SLOW_PER_ADDRESS {
            idle.push(connect_from(attacker, address).await.expect("connect"));
        }
        for _ in 0..SLOW_PER_ADDRESS {
            let mut stream = connect_from(attacker, address).await.expect("connect");
            stream
                .write_all(b"GET /_matrix/client/versions HTTP/1.1\r\n")
                .await
                .expect("write");
            slow.push(stream);
        }
        // Over this address's cap: closed at once.
        for _ in 0..10 {
            over.push(connect_from(attacker, address).await.expect("connect"));
        }
    }
    for stream in &mut over {
        assert!(
            closed_within(stream, Duration::from_secs(5)).await,
            "a connection over the per-address cap was kept open"
        );
    }
    let trickling = tokio::spawn(async move {
        for round in 0.. {
            for stream in &mut slow {
                if stream
                    .write_all(format!("X-{round}: y\r\n").as_bytes())
                    .await
                    .is_err()
                {
                    return slow;
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        slow
    });

    // Meanwhile alice and bob chat, from the ordinary address.
    let alice = login_client(&server, "alice").await;
    let bob = login_client(&server, "bob").await;
    let mut request = CreateRoom::new();
    request.invite = vec![user_id("bob")];
    let room = alice
        .create_room(request)
        .await
        .expect("alice creates a room");
    let room_id = room.room_id().to_owned();
    sync_until(&bob, "bob to see the invite", |response| {
        response.rooms.invited.contains_key(&room_id).then_some(())
    })
    .await;
    bob.join_room_by_id(&room_id).await.expect("bob joins");
    const MESSAGES: usize = 30;
    for i in 0..MESSAGES {
        room.send(RoomMessageEventContent::text_plain(format!("bericht {i}")))
            .await
            .expect("alice sends while the idle connections are held");
    }
    let mut seen = 0;
    sync_until(&bob, "bob to read every message", |response| {
        seen += timeline_json(response, &room_id)
            .iter()
            .filter(|event| {
                event["content"]["body"]
                    .as_str()
                    .is_some_and(|b| b.starts_with("bericht "))
            })
            .count();
        (seen == MESSAGES).then_some(())
    })
    .await;
    let (rss_during, _) = server.memory_kib();

    // Nobody sent a whole request within the header deadline: every idle
    // and slow connection is cut (the deadline is 3 s; the wait is long,
    // so that a busy machine does not fail the test).
    let deadline = Duration::from_secs(HEADER_TIMEOUT_SECS * 10);
    let started = Instant::now();
    let mut held_longest = Duration::ZERO;
    for stream in &mut idle {
        assert!(
            closed_within(stream, deadline.saturating_sub(started.elapsed())).await,
            "an idle connection was still open after {:?}",
            started.elapsed()
        );
        held_longest = started.elapsed();
    }
    let slow = trickling.await.expect("the slow writers");
    assert_eq!(slow.len(), SLOW_PER_ADDRESS * ATTACKERS.len());
    let (rss_after, peak) = server.memory_kib();
    println!(
        "held {} idle and {} slow connections from {} addresses ({} more refused), \
         all cut within {held_longest:?} of the chat's end; server RSS {rss_before} KiB \
         before, {rss_during} KiB during, {rss_after} KiB after, peak {peak} KiB",
        idle.len(),
        slow.len(),
        ATTACKERS.len(),
        over.len(),
    );

    // A client still gets in afterwards, and the chat goes on.
    let api = api_for(&server, &alice);
    api.get("/_matrix/client/v3/account/whoami").await.ok();

    // A long-poll waits for up to the request timeout; SIGTERM does not
    // wait for it beyond the stop grace (2 s here).
    let bob_api = api_for(&server, &bob);
    let since = bob_api.get("/_matrix/client/v3/sync").await.ok()["next_batch"]
        .as_str()
        .expect("next_batch")
        .to_owned();
    let waiting = tokio::spawn(async move {
        bob_api
            .try_request(
                reqwest::Method::GET,
                &format!("/_matrix/client/v3/sync?since={since}&timeout=100000"),
                None,
            )
            .await
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    server.stop().await;
    let _ = waiting.await;
}
