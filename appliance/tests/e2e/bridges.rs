//! Application services (bridges) on a development node, spoken to over
//! raw HTTP as a bridge does, with a bridge's own HTTP server on the other
//! side receiving what the node sends: registration and masquerading
//! inside the namespaces and the spec's errors outside them, the ping,
//! transactions in order with their retries under the same ID (across a
//! restart too), `?ts=`, exclusive namespaces, and login.

use std::net::SocketAddr;
use std::sync::{
    Arc, Mutex,
    atomic::{AtomicBool, Ordering},
};
use std::time::Duration;

use axum::{
    Json, Router,
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    routing::{post, put},
};
use serde_json::{Value, json};

use crate::client::{Api, enc};
use crate::harness::{TestServer, eventually};

const AS_TOKEN: &str = "as_token_0123456789abcdef0123456789abcdef";
const HS_TOKEN: &str = "hs_token_0123456789abcdef0123456789abcdef";
const PUPPET_TOKEN: &str = "puppet_as_token_0123456789abcdef0123456789";

/// What the bridge's side saw.
#[derive(Default)]
struct Seen {
    /// (transaction ID, its events), in the order they arrived, refused
    /// ones included.
    transactions: Vec<(String, Vec<Value>)>,
    pings: Vec<Value>,
    /// The users and aliases the node asked about.
    queries: Vec<String>,
    /// Typing and receipts.
    ephemeral: Vec<Value>,
    /// Requests with a wrong or no `hs_token`.
    unauthorized: usize,
}

#[derive(Clone, Default)]
struct Bridge {
    seen: Arc<Mutex<Seen>>,
    /// While set, transactions are answered with 500.
    refuse: Arc<AtomicBool>,
    /// The node's client API, once it runs: queries create what they are
    /// asked about there.
    node: Arc<Mutex<String>>,
}

/// `GET /_matrix/app/v1/users/{userId}`: the bridge registers the user it
/// is asked about, unless its name says it is nobody.
async fn user_query(
    State(bridge): State<Bridge>,
    Path(user): Path<String>,
    headers: HeaderMap,
) -> (StatusCode, Json<Value>) {
    bridge.seen.lock().expect("lock").queries.push(user.clone());
    if !authorized(&headers) || user.contains("nobody") {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({"errcode": "M_NOT_FOUND"})),
        );
    }
    let node = bridge.node.lock().expect("lock").clone();
    let localpart = user
        .trim_start_matches('@')
        .split(':')
        .next()
        .unwrap_or_default();
    Api::new(&node)
        .with_token(AS_TOKEN)
        .post(
            "/_matrix/client/v3/register",
            &json!({"type": "m.login.application_service", "username": localpart, "inhibit_login": true}),
        )
        .await
        .ok();
    (StatusCode::OK, Json(json!({})))
}

/// `GET /_matrix/app/v1/rooms/{roomAlias}`: the bridge makes a room with
/// the alias it is asked about.
async fn alias_query(
    State(bridge): State<Bridge>,
    Path(alias): Path<String>,
    headers: HeaderMap,
) -> (StatusCode, Json<Value>) {
    bridge
        .seen
        .lock()
        .expect("lock")
        .queries
        .push(alias.clone());
    if !authorized(&headers) {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({"errcode": "M_NOT_FOUND"})),
        );
    }
    let node = bridge.node.lock().expect("lock").clone();
    let name = alias
        .trim_start_matches('#')
        .split(':')
        .next()
        .unwrap_or_default();
    Api::new(&node)
        .with_token(AS_TOKEN)
        .post(
            &format!(
                "/_matrix/client/v3/createRoom?user_id={}",
                enc("@bridgebot:localhost")
            ),
            &json!({"room_alias_name": name, "preset": "public_chat"}),
        )
        .await
        .ok();
    (StatusCode::OK, Json(json!({})))
}

fn authorized(headers: &HeaderMap) -> bool {
    headers.get("authorization").and_then(|v| v.to_str().ok())
        == Some(&format!("Bearer {HS_TOKEN}"))
}

async fn transaction(
    State(bridge): State<Bridge>,
    Path(txn_id): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    let mut seen = bridge.seen.lock().expect("lock");
    if !authorized(&headers) {
        seen.unauthorized += 1;
        return (
            StatusCode::FORBIDDEN,
            Json(json!({"errcode": "M_FORBIDDEN"})),
        );
    }
    let events = body["events"].as_array().cloned().unwrap_or_default();
    seen.ephemeral
        .extend(body["ephemeral"].as_array().cloned().unwrap_or_default());
    seen.transactions.push((txn_id, events));
    if bridge.refuse.load(Ordering::SeqCst) {
        return (StatusCode::INTERNAL_SERVER_ERROR, Json(json!({})));
    }
    (StatusCode::OK, Json(json!({})))
}

async fn ping(
    State(bridge): State<Bridge>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    let mut seen = bridge.seen.lock().expect("lock");
    if !authorized(&headers) {
        seen.unauthorized += 1;
        return (
            StatusCode::FORBIDDEN,
            Json(json!({"errcode": "M_FORBIDDEN"})),
        );
    }
    seen.pings.push(body);
    (StatusCode::OK, Json(json!({})))
}

/// Serves the bridge's side on a free loopback port; returns its address.
async fn serve(bridge: Bridge) -> SocketAddr {
    let port = archipel_test_vm::ports::reserve().expect("a free loopback port");
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .expect("the bridge listens");
    let app = Router::new()
        .route("/_matrix/app/v1/transactions/{txn}", put(transaction))
        .route("/_matrix/app/v1/ping", post(ping))
        .route(
            "/_matrix/app/v1/users/{user}",
            axum::routing::get(user_query),
        )
        .route(
            "/_matrix/app/v1/rooms/{alias}",
            axum::routing::get(alias_query),
        )
        .with_state(bridge);
    tokio::spawn(async move { axum::serve(listener, app).await });
    address
}

fn registration(address: SocketAddr) -> String {
    format!(
        "id: bridge\n\
         url: http://{address}\n\
         as_token: {AS_TOKEN}\n\
         hs_token: {HS_TOKEN}\n\
         sender_localpart: bridgesender0123456789\n\
         rate_limited: false\n\
         receive_ephemeral: true\n\
         namespaces:\n\
         \x20 users:\n\
         \x20 - exclusive: true\n\
         \x20   regex: '@bridge_.*:localhost'\n\
         \x20 - exclusive: true\n\
         \x20   regex: '@bridgebot:localhost'\n\
         \x20 aliases:\n\
         \x20 - exclusive: true\n\
         \x20   regex: '#bridge_.*:localhost'\n"
    )
}

/// The bridge's events of type `kind` so far, across accepted and refused
/// transactions, by event ID (first sighting).
fn events_seen(bridge: &Bridge) -> Vec<Value> {
    let seen = bridge.seen.lock().expect("lock");
    let mut out: Vec<Value> = Vec::new();
    for (_, events) in &seen.transactions {
        for event in events {
            if !out.iter().any(|e| e["event_id"] == event["event_id"]) {
                out.push(event.clone());
            }
        }
    }
    out
}

async fn wait_for_body(bridge: &Bridge, body: &str) -> Value {
    let (bridge, body) = (bridge.clone(), body.to_owned());
    eventually(
        &format!("the bridge to get {body:?}"),
        Duration::from_secs(30),
        || {
            let (bridge, body) = (bridge.clone(), body.clone());
            async move {
                events_seen(&bridge)
                    .into_iter()
                    .find(|e| e["content"]["body"] == body.as_str())
            }
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bridge_registers_masquerades_and_gets_its_events_in_order() {
    let bridge = Bridge::default();
    let address = serve(bridge.clone()).await;
    let files = tempfile::tempdir().expect("a folder");
    let file = files.path().join("bridge.yaml");
    std::fs::write(&file, registration(address)).expect("write");
    // Double puppeting: a registration with no URL whose shared namespace
    // holds every local user.
    let puppets = files.path().join("doublepuppet.yaml");
    std::fs::write(
        &puppets,
        format!(
            "id: doublepuppet\nurl: null\nas_token: {PUPPET_TOKEN}\n\
             hs_token: puppet_hs_token_0123456789abcdef0123456789\n\
             sender_localpart: doublepuppet0123456789\nrate_limited: false\n\
             io.element.msc4190: true\n\
             namespaces:\n  users:\n  - exclusive: false\n    regex: '@.*:localhost'\n"
        ),
    )
    .expect("write");
    let mut server = TestServer::start_with(&[
        "--appservice",
        file.to_str().expect("path"),
        "--appservice",
        puppets.to_str().expect("path"),
    ])
    .await;
    *bridge.node.lock().expect("lock") = server.url().to_owned();
    let api = Api::new(server.url());
    let bridge_api = api.with_token(AS_TOKEN);
    let bot = "@bridgebot:localhost";
    let as_bot = |path: &str| {
        let sep = if path.contains('?') { '&' } else { '?' };
        format!("{path}{sep}user_id={}", enc(bot))
    };

    // Before its bot is registered, the bridge hears so (and registers it).
    bridge_api
        .get(&as_bot("/_matrix/client/versions"))
        .await
        .assert_error(StatusCode::FORBIDDEN, "M_FORBIDDEN");
    let registered = bridge_api
        .post(
            &as_bot("/_matrix/client/v3/register"),
            &json!({"type": "m.login.application_service", "username": "bridgebot", "inhibit_login": true}),
        )
        .await
        .ok();
    assert_eq!(registered["user_id"], bot);
    assert!(registered.get("access_token").is_none(), "{registered}");
    bridge_api
        .post(
            "/_matrix/client/v3/register",
            &json!({"type": "m.login.application_service", "username": "bridgebot"}),
        )
        .await
        .assert_error(StatusCode::BAD_REQUEST, "M_USER_IN_USE");
    bridge_api
        .post(
            "/_matrix/client/v3/register",
            &json!({"type": "m.login.application_service", "username": "mallory"}),
        )
        .await
        .assert_error(StatusCode::BAD_REQUEST, "M_EXCLUSIVE");
    api.post(
        "/_matrix/client/v3/register",
        &json!({"type": "m.login.application_service", "username": "bridge_1"}),
    )
    .await
    .assert_error(StatusCode::UNAUTHORIZED, "M_MISSING_TOKEN");
    let whoami = bridge_api
        .get(&as_bot("/_matrix/client/v3/account/whoami"))
        .await
        .ok();
    assert_eq!(whoami["user_id"], bot);
    assert!(whoami.get("device_id").is_none(), "{whoami}");
    // Its own user, without `user_id`.
    let own = bridge_api
        .get("/_matrix/client/v3/account/whoami")
        .await
        .ok();
    assert_eq!(own["user_id"], "@bridgesender0123456789:localhost");

    // Ordinary users: not inside the exclusive namespaces, and not
    // masqueraded as.
    let alice = api.register("alice").await;
    let alice_api = api.with_token(&alice.access_token);
    api.post(
        "/_matrix/client/v3/register",
        &json!({"username": "bridge_mallory", "password": "a long password", "auth": {"type": "m.login.dummy"}}),
    )
    .await
    .assert_error(StatusCode::BAD_REQUEST, "M_EXCLUSIVE");
    bridge_api
        .get(&format!(
            "/_matrix/client/v3/account/whoami?user_id={}",
            enc("@alice:localhost")
        ))
        .await
        .assert_error(StatusCode::FORBIDDEN, "M_FORBIDDEN");
    bridge_api
        .get(&format!(
            "/_matrix/client/v3/account/whoami?user_id={}",
            enc("@bridge_9:localhost")
        ))
        .await
        .assert_error(StatusCode::FORBIDDEN, "M_FORBIDDEN");
    bridge_api
        .get(&as_bot(
            "/_matrix/client/v3/account/whoami?device_id=NOSUCH",
        ))
        .await
        .assert_error(StatusCode::BAD_REQUEST, "M_UNKNOWN_DEVICE");
    api.with_token("as_token_wrong_0123456789abcdef0123456789")
        .get(&as_bot("/_matrix/client/v3/account/whoami"))
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "M_UNKNOWN_TOKEN");

    // A bridge makes its users' devices (MSC4190) and acts through them,
    // and removes them without a password.
    bridge_api
        .put(
            &as_bot("/_matrix/client/v3/devices/BRIDGEDEV1"),
            &json!({"display_name": "bridge device"}),
        )
        .await
        .ok();
    let whoami = bridge_api
        .get(&as_bot(
            "/_matrix/client/v3/account/whoami?device_id=BRIDGEDEV1",
        ))
        .await
        .ok();
    assert_eq!(whoami["device_id"], "BRIDGEDEV1");
    let devices = bridge_api
        .get(&as_bot("/_matrix/client/v3/devices"))
        .await
        .ok();
    assert_eq!(
        devices["devices"][0]["display_name"], "bridge device",
        "{devices}"
    );
    bridge_api
        .request(
            reqwest::Method::DELETE,
            &as_bot("/_matrix/client/v3/devices/BRIDGEDEV1"),
            Some(("application/json", b"{}".to_vec())),
        )
        .await
        .ok();
    bridge_api
        .get(&as_bot(
            "/_matrix/client/v3/account/whoami?device_id=BRIDGEDEV1",
        ))
        .await
        .assert_error(StatusCode::BAD_REQUEST, "M_UNKNOWN_DEVICE");

    // The ping reaches the bridge with its hs_token; others may not ping.
    let pinged = bridge_api
        .post(
            &as_bot("/_matrix/client/v1/appservice/bridge/ping"),
            &json!({"transaction_id": "ping-1"}),
        )
        .await
        .ok();
    assert!(pinged["duration_ms"].is_u64(), "{pinged}");
    assert_eq!(
        bridge.seen.lock().expect("lock").pings,
        vec![json!({"transaction_id": "ping-1"})]
    );
    bridge_api
        .post("/_matrix/client/v1/appservice/other/ping", &json!({}))
        .await
        .assert_error(StatusCode::FORBIDDEN, "M_FORBIDDEN");
    alice_api
        .post("/_matrix/client/v1/appservice/bridge/ping", &json!({}))
        .await
        .assert_error(StatusCode::FORBIDDEN, "M_FORBIDDEN");

    // The operator sees the bridge in the console, and can ping it.
    let mut operator = crate::console_client::ConsoleClient::first_operator(&server, "op").await;
    let page = operator.get("/bridges").await;
    assert!(
        page.contains(&format!("http://{address}"))
            && page.contains("@bridgesender0123456789:localhost"),
        "{page}"
    );
    let pinged = operator.post("/bridges/bridge/ping", &[]).await;
    assert!(pinged.starts_with("bridge answered in"), "{pinged}");
    let refused = operator.post("/bridges/nosuch/ping", &[]).await;
    assert!(refused.contains("no bridge nosuch"), "{refused}");

    // Alice invites the bot: the bridge hears of it, the bot joins, and the
    // room's messages follow in order.
    let room = alice_api
        .post(
            "/_matrix/client/v3/createRoom",
            &json!({"invite": [bot], "is_direct": true, "name": "Telegram"}),
        )
        .await
        .ok()["room_id"]
        .as_str()
        .expect("a room")
        .to_owned();
    let invite = eventually(
        "the bridge to hear of the invite",
        Duration::from_secs(30),
        || {
            let bridge = bridge.clone();
            async move {
                events_seen(&bridge)
                    .into_iter()
                    .find(|e| e["type"] == "m.room.member" && e["state_key"] == bot)
            }
        },
    )
    .await;
    assert_eq!(invite["content"]["membership"], "invite");
    assert_eq!(invite["room_id"], room.as_str());
    bridge_api
        .post(
            &as_bot(&format!("/_matrix/client/v3/join/{}", enc(&room))),
            &json!({}),
        )
        .await
        .ok();
    // A direct chat with the bot reads as one to the bridge: the archive
    // member, which clients see, is left out of the members it reads.
    let members = |api: Api, path: String| async move {
        api.get(&path).await.ok()["joined"]
            .as_object()
            .map(|joined| joined.len())
    };
    let path = format!("/_matrix/client/v3/rooms/{}/joined_members", enc(&room));
    assert_eq!(members(bridge_api.clone(), as_bot(&path)).await, Some(2));
    assert_eq!(members(alice_api.clone(), path).await, Some(3));
    for n in 1..=3 {
        alice_api
            .put(
                &format!(
                    "/_matrix/client/v3/rooms/{}/send/m.room.message/t{n}",
                    enc(&room)
                ),
                &json!({"msgtype": "m.text", "body": format!("hello {n}")}),
            )
            .await
            .ok();
    }
    wait_for_body(&bridge, "hello 3").await;
    let bodies: Vec<String> = events_seen(&bridge)
        .iter()
        .filter_map(|e| e["content"]["body"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(bodies, ["hello 1", "hello 2", "hello 3"]);

    // Typing and read receipts reach a bridge that asked for them.
    alice_api
        .put(
            &format!(
                "/_matrix/client/v3/rooms/{}/typing/{}",
                enc(&room),
                enc("@alice:localhost")
            ),
            &json!({"typing": true, "timeout": 10000}),
        )
        .await
        .ok();
    let hello = wait_for_body(&bridge, "hello 3").await;
    alice_api
        .post(
            &format!(
                "/_matrix/client/v3/rooms/{}/receipt/m.read/{}",
                enc(&room),
                enc(hello["event_id"].as_str().expect("an event"))
            ),
            &json!({}),
        )
        .await
        .ok();
    for kind in ["m.typing", "m.receipt"] {
        let (bridge, room) = (bridge.clone(), room.clone());
        let found = eventually(
            &format!("the bridge to get {kind}"),
            Duration::from_secs(30),
            || {
                let (bridge, room) = (bridge.clone(), room.clone());
                async move {
                    bridge
                        .seen
                        .lock()
                        .expect("lock")
                        .ephemeral
                        .iter()
                        .find(|e| e["type"] == kind && e["room_id"] == room.as_str())
                        .cloned()
                }
            },
        )
        .await;
        assert!(found.to_string().contains("@alice:localhost"), "{found}");
    }

    // The bot sends with the other network's time; an ordinary user's
    // `ts` is ignored.
    let sent = bridge_api
        .put(
            &as_bot(&format!(
                "/_matrix/client/v3/rooms/{}/send/m.room.message/b1?ts=1600000000000",
                enc(&room)
            )),
            &json!({"msgtype": "m.text", "body": "from telegram"}),
        )
        .await
        .ok();
    let event_id = sent["event_id"].as_str().expect("an event").to_owned();
    let event = alice_api
        .get(&format!(
            "/_matrix/client/v3/rooms/{}/event/{}",
            enc(&room),
            enc(&event_id)
        ))
        .await
        .ok();
    assert_eq!(event["origin_server_ts"], 1_600_000_000_000u64);
    assert_eq!(event["sender"], bot);
    let mine = alice_api
        .put(
            &format!(
                "/_matrix/client/v3/rooms/{}/send/m.room.message/a9?ts=1600000000000",
                enc(&room)
            ),
            &json!({"msgtype": "m.text", "body": "mine"}),
        )
        .await
        .ok();
    let mine = alice_api
        .get(&format!(
            "/_matrix/client/v3/rooms/{}/event/{}",
            enc(&room),
            enc(mine["event_id"].as_str().expect("an event"))
        ))
        .await
        .ok();
    assert!(mine["origin_server_ts"].as_u64().expect("a time") > 1_700_000_000_000);

    // A user or alias of the bridge that does not exist yet: the node asks
    // the bridge, which creates it, or says there is none.
    alice_api
        .post(
            &format!("/_matrix/client/v3/rooms/{}/invite", enc(&room)),
            &json!({"user_id": "@bridge_ghost1:localhost"}),
        )
        .await
        .ok();
    alice_api
        .post(
            &format!("/_matrix/client/v3/rooms/{}/invite", enc(&room)),
            &json!({"user_id": "@bridge_nobody:localhost"}),
        )
        .await
        .assert_error(StatusCode::NOT_FOUND, "M_NOT_FOUND");
    let resolved = alice_api
        .get(&format!(
            "/_matrix/client/v3/directory/room/{}",
            enc("#bridge_portal:localhost")
        ))
        .await
        .ok();
    assert!(resolved["room_id"].is_string(), "{resolved}");
    // A portal the bridge makes has the archive member from its start, as
    // a room any local user makes: an encrypted portal's keys reach it.
    let archive_in_portal = bridge_api
        .get(&as_bot(&format!(
            "/_matrix/client/v3/rooms/{}/state/m.room.member/{}",
            enc(resolved["room_id"].as_str().expect("a room")),
            enc("@archive:localhost")
        )))
        .await
        .ok();
    assert_eq!(
        archive_in_portal["membership"], "join",
        "{archive_in_portal}"
    );
    assert_eq!(
        bridge.seen.lock().expect("lock").queries,
        [
            "@bridge_ghost1:localhost",
            "@bridge_nobody:localhost",
            "#bridge_portal:localhost"
        ]
    );

    // Double puppeting: the installed registration acts as Alice herself,
    // and the trail says so once; it has no URL, so nothing is sent to it.
    let puppet = api.with_token(PUPPET_TOKEN);
    for n in 0..2 {
        let sent = puppet
            .put(
                &format!(
                    "/_matrix/client/v3/rooms/{}/send/m.room.message/p{n}?user_id={}",
                    enc(&room),
                    enc("@alice:localhost")
                ),
                &json!({"msgtype": "m.text", "body": format!("from Alice's phone {n}")}),
            )
            .await
            .ok();
        let event = alice_api
            .get(&format!(
                "/_matrix/client/v3/rooms/{}/event/{}",
                enc(&room),
                enc(sent["event_id"].as_str().expect("an event"))
            ))
            .await
            .ok();
        assert_eq!(event["sender"], "@alice:localhost");
    }
    puppet
        .post(
            "/_matrix/client/v1/appservice/doublepuppet/ping",
            &json!({}),
        )
        .await
        .assert_error(StatusCode::BAD_REQUEST, "M_URL_NOT_SET");
    // It makes its devices itself (MSC4190): it does not log in.
    puppet
        .post(
            "/_matrix/client/v3/login",
            &json!({"type": "m.login.application_service", "identifier": {"type": "m.id.user", "user": "@alice:localhost"}}),
        )
        .await
        .assert_error(StatusCode::BAD_REQUEST, "M_APPSERVICE_LOGIN_UNSUPPORTED");
    let steps = crate::harness::json_lines(&crate::vault::vault_ok(
        &server.data_dir(),
        &["procedure", "--json"],
    ));
    let puppeting: Vec<&Value> = steps
        .iter()
        .filter(|s| s["details"]["action"] == "bridge doublepuppet acts as")
        .collect();
    assert_eq!(puppeting.len(), 1, "{puppeting:?}");
    assert_eq!(puppeting[0]["details"]["object"], "@alice:localhost");

    // Exclusive aliases: the bridge's own, nobody else's.
    alice_api
        .put(
            &format!(
                "/_matrix/client/v3/directory/room/{}",
                enc("#bridge_chat:localhost")
            ),
            &json!({"room_id": room}),
        )
        .await
        .assert_error(StatusCode::BAD_REQUEST, "M_EXCLUSIVE");
    bridge_api
        .put(
            &as_bot(&format!(
                "/_matrix/client/v3/directory/room/{}",
                enc("#bridge_chat:localhost")
            )),
            &json!({"room_id": room}),
        )
        .await
        .ok();

    // A bridge that fails gets the same transaction again, under the same
    // ID, after the node restarts too; nothing acknowledged is lost.
    // Everything so far is through first, so that the next transaction
    // holds only what is sent while the bridge is down.
    wait_for_body(&bridge, "mine").await;
    bridge.refuse.store(true, Ordering::SeqCst);
    alice_api
        .put(
            &format!(
                "/_matrix/client/v3/rooms/{}/send/m.room.message/t4",
                enc(&room)
            ),
            &json!({"msgtype": "m.text", "body": "while the bridge is down"}),
        )
        .await
        .ok();
    wait_for_body(&bridge, "while the bridge is down").await;
    let refused_txn = {
        let seen = bridge.seen.lock().expect("lock");
        seen.transactions.last().expect("a transaction").clone()
    };
    server.stop().await;
    // A command on the stopped node loads the node's bridges too: Alice
    // deactivated there leaves the DM, and the bridge hears of it.
    let deactivated = crate::harness::run_archipel(&[
        "user",
        "deactivate",
        "alice",
        "--data-dir",
        server.data_dir().to_str().expect("path"),
    ]);
    assert!(deactivated.status.success(), "{deactivated:?}");
    bridge.refuse.store(false, Ordering::SeqCst);
    server.restart_on_same_port().await;
    eventually(
        "the refused transaction again",
        Duration::from_secs(30),
        || {
            let (bridge, refused) = (bridge.clone(), refused_txn.clone());
            async move {
                let seen = bridge.seen.lock().expect("lock");
                (seen.transactions.iter().filter(|t| **t == refused).count() >= 2).then_some(())
            }
        },
    )
    .await;
    eventually(
        "Alice's leave at the bridge",
        Duration::from_secs(30),
        || {
            let (bridge, room) = (bridge.clone(), room.clone());
            async move {
                events_seen(&bridge)
                    .into_iter()
                    .find(|e| {
                        e["type"] == "m.room.member"
                            && e["state_key"] == "@alice:localhost"
                            && e["room_id"] == room.as_str()
                            && e["content"]["membership"] == "leave"
                    })
                    .map(|_| ())
            }
        },
    )
    .await;
    {
        let seen = bridge.seen.lock().expect("lock");
        assert_eq!(seen.unauthorized, 0);
        // Transaction IDs only grow: no ID was used for other events.
        let mut ids: Vec<(String, Vec<Value>)> = Vec::new();
        for (txn, events) in &seen.transactions {
            if let Some((_, before)) = ids.iter().find(|(id, _)| id == txn) {
                assert_eq!(
                    before, events,
                    "transaction {txn} was sent with other events"
                );
            } else {
                ids.push((txn.clone(), events.clone()));
            }
        }
        // No event went out under two transaction IDs: nothing is
        // delivered twice.
        let mut delivered: Vec<&Value> = ids
            .iter()
            .flat_map(|(_, events)| events.iter().map(|e| &e["event_id"]))
            .collect();
        let all = delivered.len();
        delivered.sort_by_key(|id| id.to_string());
        delivered.dedup();
        assert_eq!(
            delivered.len(),
            all,
            "an event was sent in two transactions"
        );
    }

    // A bridge's bot logs in to encrypt, with its as_token.
    let flows = api.get("/_matrix/client/v3/login").await.ok();
    assert!(
        flows["flows"]
            .as_array()
            .expect("flows")
            .iter()
            .any(|f| f["type"] == "m.login.application_service"),
        "{flows}"
    );
    let login = bridge_api
        .post(
            "/_matrix/client/v3/login",
            &json!({"type": "m.login.application_service", "identifier": {"type": "m.id.user", "user": bot}}),
        )
        .await
        .ok();
    assert_eq!(login["user_id"], bot);
    assert!(login["access_token"].is_string());
    api.post(
        "/_matrix/client/v3/login",
        &json!({"type": "m.login.application_service", "identifier": {"type": "m.id.user", "user": bot}}),
    )
    .await
    .assert_error(StatusCode::UNAUTHORIZED, "M_MISSING_TOKEN");

    // Bridged messages are archived like any other.
    crate::vault::wait_archived(&server.data_dir(), &event_id).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_broken_registration_file_stops_the_node_naming_the_field() {
    let files = tempfile::tempdir().expect("a folder");
    let file = files.path().join("bridge.yaml");
    let broken = registration(SocketAddr::from(([127, 0, 0, 1], 9)))
        .replace("'@bridge_.*:localhost'", "'@bridge_(:localhost'");
    std::fs::write(&file, broken).expect("write");
    let output = crate::harness::run_archipel(&[
        "dev",
        "--data-dir",
        files.path().join("data").to_str().expect("path"),
        "--listen",
        "127.0.0.1:0",
        "--appservice",
        file.to_str().expect("path"),
    ]);
    assert!(!output.status.success());
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(said.contains("namespaces.users[0].regex"), "{said}");
    assert!(said.contains("bridge.yaml"), "{said}");
    assert!(
        !said.contains(AS_TOKEN) && !said.contains(HS_TOKEN),
        "no token in: {said}"
    );
}
