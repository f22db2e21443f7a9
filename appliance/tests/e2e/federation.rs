//! Federation between nodes with their own server names, data and TLS
//! certificates from a test CA, on loopback: chat across nodes, a closed
//! allowlist, catching up after downtime.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use matrix_sdk::Client;
use matrix_sdk::ruma::api::client::room::create_room::v3::{Request as CreateRoom, RoomPreset};
use matrix_sdk::ruma::events::room::message::RoomMessageEventContent;
use matrix_sdk::ruma::{OwnedRoomId, OwnedServerName, RoomId, RoomVersionId, ServerName};
use serde_json::Value;
use tempfile::TempDir;

use crate::client::{login_client, register_client, sync_until, timeline_json};
use crate::harness::{TestServer, eventually};
use crate::vault::{archived, assert_verifies};

/// A certificate authority made for one test, and certificates it issued.
pub struct TestCa {
    dir: TempDir,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl TestCa {
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("archipel-ca-")
            .tempdir()
            .expect("a folder for the test CA");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Archipel test CA");
        let key = rcgen::KeyPair::generate().expect("a CA key");
        let certificate = params.self_signed(&key).expect("the CA certificate");
        std::fs::write(dir.path().join("ca.pem"), certificate.pem()).expect("write ca.pem");
        let issuer = rcgen::Issuer::new(params, key);
        Self { dir, issuer }
    }

    pub fn bundle(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// A certificate and key for `name`: `(certificate.pem, key.pem)`.
    pub fn issue(&self, name: &str) -> (PathBuf, PathBuf) {
        let params = rcgen::CertificateParams::new(vec![name.to_owned()]).expect("params");
        let key = rcgen::KeyPair::generate().expect("a key");
        let certificate = params.signed_by(&key, &self.issuer).expect("a certificate");
        let cert_path = self.dir.path().join(format!("{name}.pem"));
        let key_path = self.dir.path().join(format!("{name}.key"));
        std::fs::write(&cert_path, certificate.pem()).expect("write the certificate");
        std::fs::write(&key_path, key.serialize_pem()).expect("write the key");
        (cert_path, key_path)
    }
}

/// A loopback port for a listener a test configures before the process
/// that binds it starts (a node's federation port, Synapse, Pebble).
pub fn free_port() -> u16 {
    archipel_test_vm::ports::reserve().expect("a free loopback port")
}

/// A TCP relay in front of a node's federation port. Cutting it drops
/// every open connection and refuses new ones until it is healed: a
/// network partition between nodes.
pub struct Relay {
    pub port: u16,
    cut: std::sync::Arc<std::sync::atomic::AtomicBool>,
    connections: std::sync::Arc<std::sync::Mutex<tokio::task::JoinSet<()>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl Relay {
    async fn start(target: u16) -> Self {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a relay port");
        let port = listener.local_addr().expect("relay address").port();
        let cut = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let connections = std::sync::Arc::new(std::sync::Mutex::new(tokio::task::JoinSet::new()));
        let accept = tokio::spawn({
            let (cut, connections) = (cut.clone(), connections.clone());
            async move {
                while let Ok((mut inbound, _)) = listener.accept().await {
                    if cut.load(Ordering::SeqCst) {
                        continue; // dropped: the peer sees the connection close
                    }
                    connections
                        .lock()
                        .expect("relay connections")
                        .spawn(async move {
                            if let Ok(mut outbound) =
                                tokio::net::TcpStream::connect(("127.0.0.1", target)).await
                            {
                                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound)
                                    .await;
                            }
                        });
                }
            }
        });
        Self {
            port,
            cut,
            connections,
            accept,
        }
    }

    /// Drops every connection and refuses new ones.
    pub fn cut(&self) {
        self.cut.store(true, std::sync::atomic::Ordering::SeqCst);
        self.connections
            .lock()
            .expect("relay connections")
            .abort_all();
    }

    pub fn heal(&self) {
        self.cut.store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.accept.abort();
        self.connections
            .lock()
            .expect("relay connections")
            .abort_all();
    }
}

/// Nodes named `*.test`, each federating with the peers it lists.
pub struct Cluster {
    /// Kept for the lifetime of the nodes: their certificates live in it.
    ca: TestCa,
    pub nodes: BTreeMap<String, TestServer>,
    /// Each node's federation port.
    pub ports: BTreeMap<String, u16>,
    /// With [`Cluster::start_with_relays`]: the relay peers reach each node through.
    pub relays: BTreeMap<String, Relay>,
}

impl Cluster {
    /// Starts one node per `(name, peers)`; peers reach each other directly.
    pub async fn start(specs: &[(&str, &[&str])]) -> Self {
        Self::start_inner(specs, false).await
    }

    /// Like [`Cluster::start`], but peers reach each node through a
    /// [`Relay`] the test can cut.
    pub async fn start_with_relays(specs: &[(&str, &[&str])]) -> Self {
        Self::start_inner(specs, true).await
    }

    async fn start_inner(specs: &[(&str, &[&str])], relayed: bool) -> Self {
        let ca = TestCa::new();
        let ports: BTreeMap<&str, u16> =
            specs.iter().map(|(name, _)| (*name, free_port())).collect();
        let mut relays = BTreeMap::new();
        if relayed {
            for (name, port) in &ports {
                relays.insert((*name).to_owned(), Relay::start(*port).await);
            }
        }
        let address = |name: &str| relays.get(name).map_or(ports[name], |r: &Relay| r.port);
        let mut nodes = BTreeMap::new();
        for (name, peers) in specs {
            let (certificate, key) = ca.issue(name);
            let mut file = format!(
                "[federation]\nlisten = \"127.0.0.1:{}\"\ntls_certificate = \"{}\"\ntls_private_key = \"{}\"\nca_bundle = \"{}\"\n",
                ports[name],
                certificate.display(),
                key.display(),
                ca.bundle().display()
            );
            for peer in *peers {
                file.push_str(&format!(
                    "\n[[federation.peers]]\nserver_name = \"{peer}\"\naddress = \"127.0.0.1:{}\"\n",
                    address(peer)
                ));
            }
            nodes.insert(
                (*name).to_owned(),
                TestServer::start_federated(name, &file).await,
            );
        }
        let ports = ports
            .into_iter()
            .map(|(name, port)| (name.to_owned(), port))
            .collect();
        Self {
            ca,
            nodes,
            ports,
            relays,
        }
    }

    pub fn node(&self, name: &str) -> &TestServer {
        &self.nodes[name]
    }

    pub fn node_mut(&mut self, name: &str) -> &mut TestServer {
        self.nodes.get_mut(name).expect("a node of the cluster")
    }

    /// Cuts every relay: no node reaches another.
    pub fn partition(&self) {
        self.relays.values().for_each(Relay::cut);
    }

    pub fn heal(&self) {
        self.relays.values().for_each(Relay::heal);
    }
}

pub fn server(name: &str) -> OwnedServerName {
    ServerName::parse(name).expect("a server name")
}

/// `client` joins `room_id` through the server `via`.
pub async fn join_through(
    client: &Client,
    room_id: &RoomId,
    via: &str,
) -> Result<matrix_sdk::Room, matrix_sdk::Error> {
    client
        .join_room_by_id_or_alias(
            <&matrix_sdk::ruma::RoomOrAliasId>::from(room_id),
            &[server(via)],
        )
        .await
}

/// A public room created by `client`.
pub async fn public_room(client: &Client) -> OwnedRoomId {
    let mut request = CreateRoom::new();
    request.preset = Some(RoomPreset::PublicChat);
    request.name = Some("Interdepartementaal overleg".to_owned());
    client
        .create_room(request)
        .await
        .expect("create a public room")
        .room_id()
        .to_owned()
}

/// Alice on a.test and bob on b.test, both in a public room made on a.test.
pub async fn alice_and_bob_across(cluster: &Cluster) -> (Client, Client, OwnedRoomId) {
    let alice = register_client(cluster.node("a.test"), "alice").await;
    let bob = register_client(cluster.node("b.test"), "bob").await;
    let room_id = public_room(&alice).await;
    join_through(&bob, &room_id, "a.test")
        .await
        .expect("bob on b.test joins the room on a.test");
    (alice, bob, room_id)
}

/// The bodies of the text messages in a timeline, with their senders.
fn texts(events: &[Value]) -> Vec<(String, String)> {
    events
        .iter()
        .filter(|e| e["type"] == "m.room.message")
        .map(|e| {
            (
                e["sender"].as_str().unwrap_or_default().to_owned(),
                e["content"]["body"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// Syncs `client` until the room's timeline holds every one of `expected`
/// (sender, body) pairs, and returns them in the order seen.
pub async fn wait_for_texts(
    client: &Client,
    room_id: &RoomId,
    expected: &[(String, String)],
) -> Vec<(String, String)> {
    let mut seen = Vec::new();
    sync_until(client, "the conversation to arrive", |response| {
        seen.extend(texts(&timeline_json(response, room_id)));
        expected
            .iter()
            .all(|item| seen.contains(item))
            .then_some(())
    })
    .await;
    seen
}

#[tokio::test(flavor = "multi_thread")]
async fn users_on_two_nodes_chat_in_a_room_created_on_one() {
    let cluster = Cluster::start(&[("a.test", &["b.test"]), ("b.test", &["a.test"])]).await;
    let (alice, bob, room_id) = alice_and_bob_across(&cluster).await;

    let alice_room = alice.get_room(&room_id).expect("alice's room");
    alice_room
        .send(RoomMessageEventContent::text_plain("Goedemorgen vanuit A"))
        .await
        .expect("alice sends");
    let mut expected = vec![(
        "@alice:a.test".to_owned(),
        "Goedemorgen vanuit A".to_owned(),
    )];
    wait_for_texts(&bob, &room_id, &expected).await;

    let bob_room = bob.get_room(&room_id).expect("bob's room");
    bob_room
        .send(RoomMessageEventContent::text_plain("Goedemorgen vanuit B"))
        .await
        .expect("bob sends");
    expected.push(("@bob:b.test".to_owned(), "Goedemorgen vanuit B".to_owned()));
    wait_for_texts(&alice, &room_id, &expected).await;
}

/// The error a client got, as text.
fn refusal<T: std::fmt::Debug>(result: Result<T, matrix_sdk::Error>) -> String {
    let err = result.expect_err("the request must be refused");
    let status = err
        .as_client_api_error()
        .map(|e| e.status_code.as_u16())
        .unwrap_or_default();
    assert_eq!(status, 403, "expected 403 M_FORBIDDEN, got {err:?}");
    err.to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_federation_is_closed_to_servers_outside_the_allowlist() {
    // c.test lists a.test as a peer, but a.test does not list c.test.
    let cluster = Cluster::start(&[
        ("a.test", &["b.test"]),
        ("b.test", &["a.test"]),
        ("c.test", &["a.test"]),
    ])
    .await;
    let alice = register_client(cluster.node("a.test"), "alice").await;
    let bob = register_client(cluster.node("b.test"), "bob").await;
    let carol = register_client(cluster.node("c.test"), "carol").await;
    let room_id = public_room(&alice).await;
    let room = alice.get_room(&room_id).expect("alice's room");

    // C cannot join A's room: A refuses C before reading its request.
    let why = refusal(join_through(&carol, &room_id, "a.test").await);
    assert!(why.contains("not a federation peer"), "{why}");

    // A never reaches out to C: inviting a user of C fails before any
    // request is made (the refusal names the allowlist).
    let carol_id = matrix_sdk::ruma::UserId::parse("@carol:c.test").expect("user ID");
    let why = refusal(room.invite_user_by_id(&carol_id).await);
    assert!(why.contains("c.test is not a federation peer"), "{why}");

    // An allowlisted peer's user is invited, sees the invite, and joins through it.
    let bob_id = matrix_sdk::ruma::UserId::parse("@bob:b.test").expect("user ID");
    room.invite_user_by_id(&bob_id)
        .await
        .expect("alice invites bob on b.test");
    sync_until(&bob, "bob's invite", |response| {
        response.rooms.invited.contains_key(&room_id).then_some(())
    })
    .await;
    bob.join_room_by_id(&room_id)
        .await
        .expect("bob accepts the invite");
    sync_until(&alice, "bob's join on a.test", |response| {
        timeline_json(response, &room_id)
            .iter()
            .any(|e| {
                e["type"] == "m.room.member"
                    && e["state_key"] == "@bob:b.test"
                    && e["content"]["membership"] == "join"
            })
            .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_peer_that_was_down_catches_up_and_both_vaults_keep_the_conversation() {
    let mut cluster = Cluster::start(&[("a.test", &["b.test"]), ("b.test", &["a.test"])]).await;
    let (alice, bob, room_id) = alice_and_bob_across(&cluster).await;
    let room = alice.get_room(&room_id).expect("alice's room");
    room.send(RoomMessageEventContent::text_plain("voor de storing"))
        .await
        .expect("alice sends");
    let mut expected = vec![("@alice:a.test".to_owned(), "voor de storing".to_owned())];
    wait_for_texts(&bob, &room_id, &expected).await;

    // B goes away; A's users keep talking.
    cluster.node_mut("b.test").stop().await;
    for n in 1..=5 {
        let body = format!("tijdens de storing {n}");
        room.send(RoomMessageEventContent::text_plain(&body))
            .await
            .expect("alice sends while b.test is down");
        expected.push(("@alice:a.test".to_owned(), body));
    }
    // A's metrics show what waits for B.
    let queued = |scrape: &prometheus_parse::Scrape| {
        crate::metrics::value(
            scrape,
            "archipel_federation_queue_events",
            &[("peer", "b.test")],
        )
    };
    let waiting = queued(&crate::metrics::scrape(cluster.node("a.test")).await);
    assert!(waiting >= Some(5.0), "{waiting:?}");

    // B comes back and receives what it missed, in order.
    cluster.node_mut("b.test").restart().await;
    let bob = login_client(cluster.node("b.test"), "bob").await;
    let seen = wait_for_texts(&bob, &room_id, &expected).await;
    let order: Vec<&(String, String)> =
        seen.iter().filter(|item| expected.contains(item)).collect();
    assert_eq!(
        order,
        expected.iter().collect::<Vec<_>>(),
        "B received the messages out of order"
    );
    eventually(
        "a.test's queue for b.test to empty",
        Duration::from_secs(20),
        || async {
            (queued(&crate::metrics::scrape(cluster.node("a.test")).await) == Some(0.0))
                .then_some(())
        },
    )
    .await;

    // Both vaults hold the whole conversation, remote senders included, and verify.
    for name in ["a.test", "b.test"] {
        let records = archived(&cluster.node(name).data_dir());
        let messages = records
            .iter()
            .filter(|r| r["type"] == "m.room.message" && r["sender"] == "@alice:a.test")
            .count();
        assert_eq!(messages, expected.len(), "{name}'s vault: {records:?}");
        assert!(
            records
                .iter()
                .any(|r| r["type"] == "m.room.member" && r["sender"] == "@bob:b.test"),
            "{name}'s vault lacks bob's join"
        );
        assert_verifies(&cluster.node(name).data_dir());
    }
}

/// Hand-made federation requests to one node, signed (or not) as a test needs.
struct Peer {
    http: reqwest::Client,
    base: String,
    destination: String,
}

impl Peer {
    fn new(cluster: &Cluster, destination: &str) -> Self {
        let ca = std::fs::read(cluster.ca.bundle()).expect("read the CA");
        let port = cluster.ports[destination];
        let http = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&ca).expect("a PEM CA"))
            .resolve(
                destination,
                std::net::SocketAddr::from(([127, 0, 0, 1], port)),
            )
            .build()
            .expect("an HTTPS client");
        Self {
            http,
            base: format!("https://{destination}:{port}"),
            destination: destination.to_owned(),
        }
    }

    /// Sends `body` to `path`, signed by `origin` with `key` when given.
    async fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        signer: Option<(&str, &ruma::signatures::Ed25519KeyPair)>,
    ) -> (u16, Value) {
        let bytes = body
            .map(|b| serde_json::to_vec(b).expect("JSON"))
            .unwrap_or_default();
        let mut request = self
            .http
            .request(
                method.parse().expect("a method"),
                format!("{}{path}", self.base),
            )
            .body(bytes.clone());
        if let Some((origin, key)) = signer {
            let unsigned = http::Request::builder()
                .method(method)
                .uri(path)
                .body(bytes)
                .expect("a request");
            let xmatrix = ruma::api::federation::authentication::XMatrix::try_from_http_request(
                &unsigned,
                ruma::api::federation::authentication::ServerSignaturesInput::new(
                    ServerName::parse(origin).expect("origin"),
                    ServerName::parse(&self.destination).expect("destination"),
                    key,
                ),
            )
            .expect("sign the request");
            let header = http::HeaderValue::from(&xmatrix);
            request = request.header("authorization", header.to_str().expect("ASCII"));
        }
        let response = request.send().await.expect("the node answers");
        let status = response.status().as_u16();
        let json = response.json().await.unwrap_or(Value::Null);
        (status, json)
    }
}

/// A node's signing key, read from its data folder, under the ID it publishes.
async fn signing_key(cluster: &Cluster, name: &str) -> ruma::signatures::Ed25519KeyPair {
    let der = std::fs::read(cluster.node(name).data_dir().join("signing.key")).expect("the key");
    let (_, document) = Peer::new(cluster, name)
        .send("GET", "/_matrix/key/v2/server", None, None)
        .await;
    let key_id = document["verify_keys"]
        .as_object()
        .and_then(|keys| keys.keys().next().cloned())
        .expect("a published key");
    let version = key_id.trim_start_matches("ed25519:").to_owned();
    ruma::signatures::Ed25519KeyPair::from_der(&der, version).expect("an ed25519 key")
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_federation_requests_get_the_right_error_and_change_nothing() {
    let cluster = Cluster::start(&[("a.test", &["b.test"]), ("b.test", &["a.test"])]).await;
    let alice = register_client(cluster.node("a.test"), "alice").await;
    let room_id = public_room(&alice).await;
    let a = Peer::new(&cluster, "a.test");
    let b_key = signing_key(&cluster, "b.test").await;
    let state_ids = format!("/_matrix/federation/v1/state_ids/{room_id}?event_id=%24x");

    // Unsigned.
    let (status, body) = a.send("GET", &state_ids, None, None).await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (401, Some("M_UNAUTHORIZED")),
        "{body}"
    );

    // From a server outside the allowlist: refused before anything else.
    let stranger = ruma::signatures::Ed25519KeyPair::from_der(
        &ruma::signatures::Ed25519KeyPair::generate(),
        "x".to_owned(),
    )
    .expect("a key");
    let (status, body) = a
        .send("GET", &state_ids, None, Some(("c.test", &stranger)))
        .await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (403, Some("M_FORBIDDEN")),
        "{body}"
    );
    assert!(
        body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("not a federation peer"),
        "{body}"
    );

    // Claiming to be b.test with another key.
    let forged = ruma::signatures::Ed25519KeyPair::from_der(
        &ruma::signatures::Ed25519KeyPair::generate(),
        b_key.version().to_owned(),
    )
    .expect("a key");
    let (status, body) = a
        .send("GET", &state_ids, None, Some(("b.test", &forged)))
        .await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (401, Some("M_UNAUTHORIZED")),
        "{body}"
    );

    // Signed by b.test: an event of a user who is not in the room fails
    // auth; a malformed one is dropped; neither enters the room.
    let api = crate::client::api_for(cluster.node("a.test"), &alice);
    let state = api
        .get(&format!("/_matrix/client/v3/rooms/{room_id}/state"))
        .await
        .ok();
    let id_of = |kind: &str| {
        state
            .as_array()
            .and_then(|events| events.iter().find(|e| e["type"] == kind))
            .map(|e| e["event_id"].clone())
            .expect("a state event")
    };
    let latest = api
        .get(&format!(
            "/_matrix/client/v3/rooms/{room_id}/messages?dir=b&limit=1"
        ))
        .await
        .ok()["chunk"][0]["event_id"]
        .clone();
    let rules = version_rules(&api, &room_id).await;
    let mut auth_events = vec![id_of("m.room.power_levels")];
    if rules.event_format.allow_room_create_in_auth_events {
        auth_events.push(id_of("m.room.create"));
    }
    let mut intruder: ruma::CanonicalJsonObject = serde_json::from_value(serde_json::json!({
        "room_id": room_id,
        "sender": "@mallory:b.test",
        "type": "m.room.message",
        "content": { "msgtype": "m.text", "body": "ongevraagd" },
        "origin_server_ts": 1_700_000_000_000u64,
        "prev_events": [latest],
        "auth_events": auth_events,
        "depth": 100,
    }))
    .expect("canonical JSON");
    ruma::signatures::hash_and_sign_event("b.test", &b_key, &mut intruder, &rules.redaction)
        .expect("sign the event");
    let intruder_id = format!(
        "${}",
        ruma::signatures::reference_hash(&intruder, &rules).expect("hash")
    );
    let transaction = serde_json::json!({
        "origin": "b.test",
        "origin_server_ts": 1_700_000_000_000u64,
        "pdus": [intruder, { "room_id": room_id, "type": "m.room.message" }],
    });
    let (status, body) = a
        .send(
            "PUT",
            "/_matrix/federation/v1/send/t1",
            Some(&transaction),
            Some(("b.test", &b_key)),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let result = &body["pdus"][&intruder_id];
    assert!(
        result["error"].is_string(),
        "the intruder's event was not refused: {body}"
    );
    assert_eq!(body["pdus"].as_object().map(|p| p.len()), Some(1), "{body}");
    api.get(&format!(
        "/_matrix/client/v3/rooms/{room_id}/event/{intruder_id}"
    ))
    .await
    .assert_error(reqwest::StatusCode::NOT_FOUND, "M_NOT_FOUND");

    // Oversized: more events than a transaction may hold, and a body over the limit.
    let many = serde_json::json!({
        "origin": "b.test",
        "origin_server_ts": 1_700_000_000_000u64,
        "pdus": vec![serde_json::json!({}); 51],
    });
    let (status, body) = a
        .send(
            "PUT",
            "/_matrix/federation/v1/send/t2",
            Some(&many),
            Some(("b.test", &b_key)),
        )
        .await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (413, Some("M_TOO_LARGE")),
        "{body}"
    );
    let huge = serde_json::json!({
        "origin": "b.test",
        "origin_server_ts": 1_700_000_000_000u64,
        "pdus": [],
        "padding": "x".repeat(5 * 1024 * 1024),
    });
    let (status, body) = a
        .send(
            "PUT",
            "/_matrix/federation/v1/send/t3",
            Some(&huge),
            Some(("b.test", &b_key)),
        )
        .await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (413, Some("M_TOO_LARGE")),
        "{body}"
    );
}

/// The room's current state as a server's client API reports it:
/// `(type, state_key) -> event_id`.
/// The rules of `room_id`'s version, as its create event names it.
async fn version_rules(
    api: &crate::client::Api,
    room_id: &RoomId,
) -> ruma::room_version_rules::RoomVersionRules {
    let create = api
        .get(&format!(
            "/_matrix/client/v3/rooms/{room_id}/state/m.room.create/"
        ))
        .await
        .ok();
    let version = create["room_version"].as_str().expect("room_version");
    ruma::RoomVersionId::try_from(version)
        .expect("a room version")
        .rules()
        .expect("rules of a known version")
}

async fn state_map(
    api: &crate::client::Api,
    room_id: &RoomId,
) -> BTreeMap<(String, String), String> {
    let state = api
        .get(&format!("/_matrix/client/v3/rooms/{room_id}/state"))
        .await
        .ok();
    state
        .as_array()
        .expect("the state is a list")
        .iter()
        .map(|e| {
            (
                (
                    e["type"].as_str().unwrap_or_default().to_owned(),
                    e["state_key"].as_str().unwrap_or_default().to_owned(),
                ),
                e["event_id"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn conflicting_state_changes_during_a_partition_end_the_same_on_both_nodes() {
    conflicting_state_changes_during_a_partition(RoomVersionId::V11).await;
}

/// Room version 12: the room is named by its create event, its creator
/// outranks every level, and state resolution v2.1 settles the fork.
#[tokio::test(flavor = "multi_thread")]
async fn conflicting_state_changes_in_a_version_12_room_end_the_same_on_both_nodes() {
    conflicting_state_changes_during_a_partition(RoomVersionId::V12).await;
}

async fn conflicting_state_changes_during_a_partition(version: RoomVersionId) {
    let cluster =
        Cluster::start_with_relays(&[("a.test", &["b.test"]), ("b.test", &["a.test"])]).await;
    let alice = register_client(cluster.node("a.test"), "alice").await;
    let bob = register_client(cluster.node("b.test"), "bob").await;
    let dave = register_client(cluster.node("b.test"), "dave").await;

    // Alice (100, or as creator above all) may ban bob (50); bob may
    // change the room's name.
    let creator_listed = version != RoomVersionId::V12;
    let mut users = serde_json::json!({ "@bob:b.test": 50 });
    if creator_listed {
        users["@alice:a.test"] = serde_json::json!(100);
    }
    let mut request = CreateRoom::new();
    request.room_version = Some(version.clone());
    request.preset = Some(RoomPreset::PublicChat);
    request.name = Some("Overleg".to_owned());
    request.power_level_content_override = Some(
        serde_json::from_value(serde_json::json!({
            "users": users, "ban": 50, "kick": 50, "state_default": 50,
        }))
        .expect("power levels"),
    );
    let room_id = alice
        .create_room(request)
        .await
        .expect("alice creates the room")
        .room_id()
        .to_owned();
    if version == RoomVersionId::V12 {
        assert_eq!(
            room_id.server_name(),
            None,
            "a hash names the room: {room_id}"
        );
    }
    for client in [&bob, &dave] {
        join_through(client, &room_id, "a.test")
            .await
            .expect("a user of b.test joins");
    }
    sync_until(&alice, "both joins from b.test on a.test", |response| {
        let joined: Vec<Value> = timeline_json(response, &room_id)
            .into_iter()
            .filter(|e| e["type"] == "m.room.member" && e["content"]["membership"] == "join")
            .collect();
        joined
            .iter()
            .any(|e| e["state_key"] == "@dave:b.test")
            .then_some(())
    })
    .await;

    // Cut the nodes apart; each side changes the room.
    cluster.partition();
    let bob_id = matrix_sdk::ruma::UserId::parse("@bob:b.test").expect("user ID");
    let alice_room = alice.get_room(&room_id).expect("alice's room");
    alice_room
        .ban_user(&bob_id, Some("partition test"))
        .await
        .expect("alice bans bob on a.test");
    alice_room
        .set_room_topic("Besluitvorming")
        .await
        .expect("alice sets the topic on a.test");
    bob.get_room(&room_id)
        .expect("bob's room")
        .set_name("Bobs overleg".to_owned())
        .await
        .expect("bob renames the room on b.test");

    // Heal: both nodes exchange what they missed and must agree.
    cluster.heal();
    let on_a = crate::client::api_for(cluster.node("a.test"), &alice);
    let on_b = crate::client::api_for(cluster.node("b.test"), &dave);
    let give_up = tokio::time::Instant::now() + crate::client::SYNC_DEADLINE;
    let (a, b) = loop {
        let (a, b) = (
            state_map(&on_a, &room_id).await,
            state_map(&on_b, &room_id).await,
        );
        if a == b && a.contains_key(&("m.room.topic".to_owned(), String::new())) {
            break (a, b);
        }
        assert!(
            tokio::time::Instant::now() < give_up,
            "the nodes never agreed on the room's state:\na.test: {a:#?}\nb.test: {b:#?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    };
    assert_eq!(a, b);

    // What they agree on: the ban (a power event) wins, so bob's rename,
    // made concurrently by a user now banned, is not part of the state;
    // alice's topic is.
    let event = |api: &crate::client::Api, kind: &str, key: &str| {
        let path = format!("/_matrix/client/v3/rooms/{room_id}/state/{kind}/{key}");
        let api = api.clone();
        async move { api.get(&path).await.ok() }
    };
    assert_eq!(
        event(&on_a, "m.room.member", bob_id.as_str()).await["membership"],
        "ban"
    );
    assert_eq!(
        event(&on_b, "m.room.member", bob_id.as_str()).await["membership"],
        "ban"
    );
    for api in [&on_a, &on_b] {
        assert_eq!(event(api, "m.room.name", "").await["name"], "Overleg");
        assert_eq!(
            event(api, "m.room.topic", "").await["topic"],
            "Besluitvorming"
        );
    }

    // The rename that lost (soft-failed on a.test) is still part of the
    // room's graph, and both vaults keep it; a.test's marks it as shown to
    // nobody.
    for name in ["a.test", "b.test"] {
        let give_up = tokio::time::Instant::now() + crate::client::SYNC_DEADLINE;
        loop {
            let records = archived(&cluster.node(name).data_dir());
            if let Some(rename) = records
                .iter()
                .find(|r| r["type"] == "m.room.name" && r["sender"] == "@bob:b.test")
            {
                if name == "a.test" {
                    assert!(rename["soft_failed"].is_string(), "{rename}");
                }
                break;
            }
            assert!(
                tokio::time::Instant::now() < give_up,
                "{name}'s vault lacks bob's rename: {records:?}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        }
    }

    // The room goes on after the fork: dave on b.test is heard on a.test.
    dave.get_room(&room_id)
        .expect("dave's room")
        .send(RoomMessageEventContent::text_plain("Na de storing"))
        .await
        .expect("dave sends");
    let expected = [("@dave:b.test".to_owned(), "Na de storing".to_owned())];
    wait_for_texts(&alice, &room_id, &expected).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_peer_backfills_joined_only_history_only_redacted() {
    let cluster = Cluster::start(&[("a.test", &["b.test"]), ("b.test", &["a.test"])]).await;
    let alice = register_client(cluster.node("a.test"), "alice").await;
    let bob = register_client(cluster.node("b.test"), "bob").await;
    let room_id = public_room(&alice).await;
    let room = alice.get_room(&room_id).expect("alice's room");
    room.send_state_event(
        matrix_sdk::ruma::events::room::history_visibility::RoomHistoryVisibilityEventContent::new(
            matrix_sdk::ruma::events::room::history_visibility::HistoryVisibility::Joined,
        ),
    )
    .await
    .expect("make the history visible to members only");
    let before = room
        .send(RoomMessageEventContent::text_plain(
            "voor b.test erbij kwam",
        ))
        .await
        .expect("send")
        .response
        .event_id;
    join_through(&bob, &room_id, "a.test")
        .await
        .expect("bob on b.test joins the room on a.test");
    let after = room
        .send(RoomMessageEventContent::text_plain("toen b.test erbij was"))
        .await
        .expect("send")
        .response
        .event_id;

    let a = Peer::new(&cluster, "a.test");
    let b_key = signing_key(&cluster, "b.test").await;
    let (status, body) = a
        .send(
            "GET",
            &format!("/_matrix/federation/v1/backfill/{room_id}?v={after}&limit=100"),
            None,
            Some(("b.test", &b_key)),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let api = crate::client::api_for(cluster.node("a.test"), &alice);
    let rules = version_rules(&api, &room_id).await;
    let pdus = body["pdus"].as_array().expect("pdus");
    let find = |id: &str| {
        let event = pdus
            .iter()
            .find(|p| {
                let object: ruma::CanonicalJsonObject =
                    serde_json::from_value((*p).clone()).expect("a PDU");
                ruma::signatures::reference_hash(&object, &rules)
                    .is_ok_and(|hash| format!("${hash}") == id)
            })
            .unwrap_or_else(|| panic!("{id} not backfilled: {body}"));
        event["content"].clone()
    };
    assert_eq!(find(before.as_str()), serde_json::json!({}), "{body}");
    assert_eq!(
        find(after.as_str())["body"],
        "toen b.test erbij was",
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_peers_user_redacts_only_what_the_room_lets_them() {
    let cluster = Cluster::start(&[("a.test", &["b.test"]), ("b.test", &["a.test"])]).await;
    let (alice, bob, room_id) = alice_and_bob_across(&cluster).await;
    let hers = alice
        .get_room(&room_id)
        .expect("alice's room")
        .send(RoomMessageEventContent::text_plain("mijn bericht"))
        .await
        .expect("send")
        .response
        .event_id;
    let bobs_room = bob.get_room(&room_id).expect("bob's room");
    let his = bobs_room
        .send(RoomMessageEventContent::text_plain("zijn bericht"))
        .await
        .expect("send")
        .response
        .event_id;

    // Bob, at power level 0, redacts alice's message: b.test signs it, so
    // it is a valid event of b.test's, but it may not take effect.
    let api = crate::client::api_for(cluster.node("a.test"), &alice);
    let state = state_map(&api, &room_id).await;
    let id_of = |kind: &str, state_key: &str| {
        state
            .get(&(kind.to_owned(), state_key.to_owned()))
            .cloned()
            .expect("a state event")
    };
    let latest = api
        .get(&format!(
            "/_matrix/client/v3/rooms/{room_id}/messages?dir=b&limit=1"
        ))
        .await
        .ok()["chunk"][0]["event_id"]
        .clone();
    let bob_id = bob.user_id().expect("bob's ID").to_string();
    let rules = version_rules(&api, &room_id).await;
    let mut auth_events = vec![
        id_of("m.room.power_levels", ""),
        id_of("m.room.member", &bob_id),
    ];
    if rules.event_format.allow_room_create_in_auth_events {
        auth_events.push(id_of("m.room.create", ""));
    }
    let mut redaction: ruma::CanonicalJsonObject = serde_json::from_value(serde_json::json!({
        "room_id": room_id,
        "sender": bob_id,
        "type": "m.room.redaction",
        "content": { "redacts": hers },
        "origin_server_ts": 1_700_000_000_000u64,
        "prev_events": [latest],
        "auth_events": auth_events,
        "depth": 1000,
    }))
    .expect("canonical JSON");
    let b_key = signing_key(&cluster, "b.test").await;
    ruma::signatures::hash_and_sign_event("b.test", &b_key, &mut redaction, &rules.redaction)
        .expect("sign the event");
    let redaction_id = format!(
        "${}",
        ruma::signatures::reference_hash(&redaction, &rules).expect("hash")
    );
    let transaction = serde_json::json!({
        "origin": "b.test",
        "origin_server_ts": 1_700_000_000_000u64,
        "pdus": [redaction],
    });
    let (status, body) = Peer::new(&cluster, "a.test")
        .send(
            "PUT",
            "/_matrix/federation/v1/send/redact1",
            Some(&transaction),
            Some(("b.test", &b_key)),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["pdus"][&redaction_id],
        serde_json::json!({}),
        "the redaction is a valid event of the room's"
    );

    // His own message he may redact, through his own node.
    bobs_room
        .redact(&his, Some("typfout"), None)
        .await
        .expect("bob redacts his own message");
    let event = |id: String| {
        let api = &api;
        let room_id = &room_id;
        async move {
            api.get(&format!("/_matrix/client/v3/rooms/{room_id}/event/{id}"))
                .await
                .ok()
        }
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while event(his.to_string()).await["content"]["body"].is_string() {
        assert!(
            std::time::Instant::now() < deadline,
            "bob's redaction of his own message never reached a.test"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(
        event(hers.to_string()).await["content"]["body"],
        "mijn bericht",
        "a peer's user at power level 0 redacted a local user's message"
    );
    // The redacted message reads as such once its batch is written; the
    // redaction joins the timeline once that batch is synced too.
    let redactions = || async {
        let timeline = api
            .get(&format!(
                "/_matrix/client/v3/rooms/{room_id}/messages?dir=b&limit=50"
            ))
            .await
            .ok();
        let shown: Vec<Value> = timeline["chunk"]
            .as_array()
            .expect("chunk")
            .iter()
            .filter(|e| e["type"] == "m.room.redaction")
            .cloned()
            .collect();
        shown
    };
    let mut shown = redactions().await;
    while shown.is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "bob's redaction never joined a.test's timeline"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        shown = redactions().await;
    }
    assert_eq!(
        shown.len(),
        1,
        "only bob's own redaction is shown: {shown:?}"
    );
    assert_ne!(shown[0]["event_id"], redaction_id.as_str(), "{shown:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn large_to_device_messages_do_not_hold_up_what_follows_them() {
    let cluster =
        Cluster::start_with_relays(&[("a.test", &["b.test"]), ("b.test", &["a.test"])]).await;
    let (alice, bob, room_id) = alice_and_bob_across(&cluster).await;
    bob.sync_once(crate::client::initial_sync_settings())
        .await
        .expect("bob's first sync");

    // While b.test is out of reach, five to-device messages of about
    // 900 KB each queue up: together more than a peer takes in one
    // transaction, and a message after them.
    cluster.partition();
    let api = crate::client::api_for(cluster.node("a.test"), &alice);
    let pad = "x".repeat(900_000);
    for i in 0..5 {
        let body = serde_json::json!({
            "messages": { bob.user_id().expect("bob").as_str(): { "*": { "n": i, "pad": pad } } }
        });
        api.put(
            &format!("/_matrix/client/v3/sendToDevice/m.test.large/big{i}"),
            &body,
        )
        .await
        .ok();
    }
    alice
        .get_room(&room_id)
        .expect("alice's room")
        .send(RoomMessageEventContent::text_plain("na de grote berichten"))
        .await
        .expect("send");
    cluster.heal();

    let mut large = 0;
    let mut text = false;
    sync_until(&bob, "the message and the to-device messages", |response| {
        large += response
            .to_device
            .iter()
            .filter(|event| {
                event
                    .as_raw()
                    .get_field::<String>("type")
                    .ok()
                    .flatten()
                    .as_deref()
                    == Some("m.test.large")
            })
            .count();
        text |= timeline_json(response, &room_id)
            .iter()
            .any(|event| event["content"]["body"] == "na de grote berichten");
        (text && large == 5).then_some(())
    })
    .await;
}
