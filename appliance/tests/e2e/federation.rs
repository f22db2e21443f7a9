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

use crate::client::{register_client, sync_until, timeline_json};
use crate::harness::TestServer;

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
    pub ca: TestCa,
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
        Self { ca, nodes }
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
