//! Federation between nodes with their own server names, data and TLS
//! certificates from a test CA, on loopback: chat across nodes, a closed
//! allowlist, catching up after downtime.

use std::collections::BTreeMap;
use std::path::PathBuf;

use matrix_sdk::Client;
use matrix_sdk::ruma::api::client::room::create_room::v3::{Request as CreateRoom, RoomPreset};
use matrix_sdk::ruma::events::room::message::RoomMessageEventContent;
use matrix_sdk::ruma::{OwnedRoomId, OwnedServerName, RoomId, ServerName};
use serde_json::Value;
use tempfile::TempDir;

use crate::client::{login_client, register_client, sync_until, timeline_json};
use crate::harness::TestServer;
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

/// A free loopback port for a federation listener.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

/// Nodes named `*.test`, each federating with the peers it lists.
pub struct Cluster {
    /// Kept for the lifetime of the nodes: their certificates live in it.
    _ca: TestCa,
    pub nodes: BTreeMap<String, TestServer>,
}

impl Cluster {
    /// Starts one node per `(name, peers)`.
    pub async fn start(specs: &[(&str, &[&str])]) -> Self {
        let ca = TestCa::new();
        let ports: BTreeMap<&str, u16> =
            specs.iter().map(|(name, _)| (*name, free_port())).collect();
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
                    ports[peer]
                ));
            }
            nodes.insert(
                (*name).to_owned(),
                TestServer::start_federated(name, &file).await,
            );
        }
        Self { _ca: ca, nodes }
    }

    pub fn node(&self, name: &str) -> &TestServer {
        &self.nodes[name]
    }

    pub fn node_mut(&mut self, name: &str) -> &mut TestServer {
        self.nodes.get_mut(name).expect("a node of the cluster")
    }
}

fn server(name: &str) -> OwnedServerName {
    ServerName::parse(name).expect("a server name")
}

/// A public room created by `client`.
async fn public_room(client: &Client) -> OwnedRoomId {
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
async fn wait_for_texts(
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
    let alice = register_client(cluster.node("a.test"), "alice").await;
    let bob = register_client(cluster.node("b.test"), "bob").await;

    let room_id = public_room(&alice).await;
    bob.join_room_by_id_or_alias(
        <&matrix_sdk::ruma::RoomOrAliasId>::from(&*room_id),
        &[server("a.test")],
    )
    .await
    .expect("bob on b.test joins the room on a.test");

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
    let why = refusal(
        carol
            .join_room_by_id_or_alias(
                <&matrix_sdk::ruma::RoomOrAliasId>::from(&*room_id),
                &[server("a.test")],
            )
            .await,
    );
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
    let alice = register_client(cluster.node("a.test"), "alice").await;
    let bob = register_client(cluster.node("b.test"), "bob").await;
    let room_id = public_room(&alice).await;
    bob.join_room_by_id_or_alias(
        <&matrix_sdk::ruma::RoomOrAliasId>::from(&*room_id),
        &[server("a.test")],
    )
    .await
    .expect("bob joins");
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
