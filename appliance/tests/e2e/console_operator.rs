//! The operator's pages of the web console on a configured node, over
//! HTTP as a browser's forms send: backups run from the console and what
//! the targets hold, room admin handed to a member, federation peers, and
//! the effective configuration.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;

use crate::client::Api;
use crate::console_client::ConsoleClient;
use crate::harness::TestServer;

/// A secret written inline in the configuration.
const TURN_SECRET: &str = "turn-secret-never-shown";

/// A production node (`archipel run`) with its console on loopback and one
/// backup target, a folder locked with a passphrase.
async fn configured_node() -> TestServer {
    TestServer::start_configured("localhost", |root| {
        let key = root.join("vault.key");
        archipel_vault::seal::VaultKey::load_or_generate(&key).expect("a vault key");
        let usb = root.join("usb");
        std::fs::create_dir(&usb).expect("the target folder");
        let passphrase = root.join("usb.passphrase");
        std::fs::write(&passphrase, "correct horse battery staple").expect("a passphrase");
        format!(
            r#"[node]
data_dir = "{data}"
listen = "127.0.0.1:0"
[homeserver]
server_name = "localhost"
[homeserver.turn]
uris = ["turn:turn.localhost:3478"]
shared_secret = "{TURN_SECRET}"
[vault]
key_file = "{key}"
[console]
listen = "127.0.0.1:0"
[[backup.targets]]
name = "usb"
directory = "{usb}"
passphrase_file = "{passphrase}"
"#,
            data = root.join("data").display(),
            key = key.display(),
            usb = usb.display(),
            passphrase = passphrase.display(),
        )
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_backs_up_from_the_console_and_sees_what_the_target_holds() {
    let server = configured_node().await;
    server.create_user("boss", true);
    let mut boss = ConsoleClient::sign_in(&server, "boss").await;

    let page = boss.get("/backups").await;
    assert!(page.contains("usb") && page.contains("not yet"), "{page}");
    let page = boss.post("/backups/run", &[]).await;
    assert!(page.contains("The backup has started"), "{page}");

    // The outcome, once written, as the schedule's would be.
    let deadline = Instant::now() + Duration::from_secs(60);
    let page = loop {
        let page = boss.get("/backups").await;
        if page.contains(">written<") {
            break page;
        }
        assert!(Instant::now() < deadline, "not written in time:\n{page}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(page.contains("archipel-"), "the backup's name: {page}");
    let backups: Vec<_> = std::fs::read_dir(server.root().join("usb"))
        .expect("the target")
        .flatten()
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        backups.iter().any(|name| name.contains(".manifest")),
        "{backups:?}"
    );

    // A recovery copy (the node holds its passphrase) is checked end to end.
    let said = boss.post("/backups/usb/verify", &[]).await;
    assert!(
        said.contains("in usb: OK") && said.contains("signed by this node"),
        "{said}"
    );

    // What the target holds, from its listing.
    let contents = boss.get("/backups/contents").await;
    assert!(
        contents.contains("<td>usb</td>") && contents.contains("<td>1</td>"),
        "{contents}"
    );

    // Recorded with the operator as the actor.
    let trail = boss.get("/audit").await;
    assert!(trail.contains("backup now"), "{trail}");
    assert!(trail.contains("backup verify"), "{trail}");
    assert!(trail.contains("@boss:localhost"), "{trail}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_hands_room_admin_to_a_member_and_reads_the_configuration() {
    let server = configured_node().await;
    for (name, admin) in [("boss", true), ("alice", false), ("bob", false)] {
        server.create_user(name, admin);
    }
    let anonymous = Api::new(server.url());
    let alice_session = anonymous.login("alice").await;
    let alice = anonymous.with_token(&alice_session.access_token);
    let bob = anonymous.with_token(&anonymous.login("bob").await.access_token);
    let room = alice.create_room().await;
    alice
        .post(
            &format!("/_matrix/client/v3/rooms/{room}/invite"),
            &json!({ "user_id": "@bob:localhost" }),
        )
        .await
        .ok();
    bob.post(&format!("/_matrix/client/v3/rooms/{room}/join"), &json!({}))
        .await
        .ok();

    // Signed in just now, boss has the fresh code the change needs.
    let mut boss = ConsoleClient::sign_in(&server, "boss").await;
    let page = boss.get(&format!("/rooms/{room}")).await;
    assert!(page.contains("Hand room admin to a member"), "{page}");
    let said = boss
        .post(
            &format!("/rooms/{room}/admin"),
            &[("user", "@bob:localhost")],
        )
        .await;
    assert!(
        said.contains("@bob:localhost is now an admin of the room (power level 100)")
            && said.contains("@alice:localhost"),
        "{said}"
    );
    let levels = bob
        .get(&format!(
            "/_matrix/client/v3/rooms/{room}/state/m.room.power_levels/"
        ))
        .await
        .ok();
    assert_eq!(levels["users"]["@bob:localhost"], 100, "{levels}");
    // Only a member can be made admin, and only once.
    let said = boss
        .post(
            &format!("/rooms/{room}/admin"),
            &[("user", "@boss:localhost")],
        )
        .await;
    assert!(said.contains("not in the room"), "{said}");
    let said = boss
        .post(
            &format!("/rooms/{room}/admin"),
            &[("user", "@bob:localhost")],
        )
        .await;
    assert!(said.contains("an admin of the room already"), "{said}");

    // A lost phone: alice's device is signed out and forgotten.
    let page = boss.get("/users/@alice:localhost").await;
    assert!(page.contains(&alice_session.device_id), "{page}");
    let said = boss
        .post(
            &format!(
                "/users/@alice:localhost/devices/{}/remove",
                alice_session.device_id
            ),
            &[],
        )
        .await;
    assert!(said.contains("signed out and forgotten"), "{said}");
    alice
        .get("/_matrix/client/v3/account/whoami")
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "M_UNKNOWN_TOKEN");

    let trail = boss.get("/audit").await;
    for expected in ["room make-admin", "device remove"] {
        assert!(trail.contains(expected), "{expected:?} not in\n{trail}");
    }

    // The federation page of a node that does not federate.
    let page = boss.get("/federation").await;
    assert!(page.contains("Federation is off"), "{page}");

    // The settings the node runs with, defaults filled in.
    let page = boss.get("/configuration").await;
    for expected in [
        "archipel.toml",
        "server_name",
        "session_idle_secs: 900",
        "usb",
    ] {
        assert!(page.contains(expected), "{expected:?} not in\n{page}");
    }
    assert!(!page.contains(TURN_SECRET), "a secret on the page:\n{page}");
}
