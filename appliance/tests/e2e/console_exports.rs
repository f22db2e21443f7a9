//! A records manager's export from the web console: made for one room,
//! downloaded as a ZIP archive that reads in a browser and verifies
//! against the vault's key; refused to everyone else, and recorded.

use std::io::Read as _;

use reqwest::StatusCode;

use crate::client::Api;
use crate::console_client::ConsoleClient;
use crate::harness::TestServer;
use crate::vault::{vault_ok, verify_export};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_records_manager_downloads_an_export_that_verifies() {
    let server = TestServer::start().await;
    let api = Api::new(server.url());
    let alice = api.with_token(&api.register("alice").await.access_token);
    api.register("rita").await;
    let room = alice.create_room().await;
    alice
        .send_text_ok(&room, "t1", "Het besluit van vanochtend")
        .await;
    let other = alice.create_room().await;
    alice.send_text_ok(&other, "t2", "Iets anders").await;
    vault_ok(
        &server.data_dir(),
        &["records-manager", "add", "@rita:localhost"],
    );

    // Only records managers export.
    let mut alice_console = ConsoleClient::sign_in(&server, "alice").await;
    let (status, _) = alice_console.download("/exports").await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let mut rita = ConsoleClient::sign_in(&server, "rita").await;
    let page = rita.get("/exports").await;
    assert!(page.contains("No exports."), "{page}");
    let said = rita
        .post(
            "/exports",
            &[
                ("room", room.as_str()),
                ("user", ""),
                ("from", ""),
                ("until", ""),
            ],
        )
        .await;
    assert!(said.contains("in 1 conversation(s)"), "{said}");
    let (status, refused) = rita.try_post("/exports", &[("from", "gisteren")]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(refused.contains("is not a date"), "{refused}");
    let page = rita.get("/exports").await;
    let name = page
        .split("href=\"/exports/")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a download link")
        .to_owned();
    assert!(
        name.starts_with("export-") && name.ends_with(".zip"),
        "{name}"
    );

    // Someone else's download is refused; the records manager's is a ZIP.
    let (status, _) = alice_console.download(&format!("/exports/{name}")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = rita.download("/exports/vault.key").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "only exports are served");
    let (status, bytes) = rita.download(&format!("/exports/{name}")).await;
    assert_eq!(status, StatusCode::OK);
    let work = tempfile::tempdir().expect("a folder");
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).expect("a ZIP archive");
    let mut pages = String::new();
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i).expect("an entry");
        if entry.name().expect("a name").ends_with(".html") {
            entry.read_to_string(&mut pages).expect("a page");
        }
    }
    assert!(
        pages.contains("Het besluit van vanochtend"),
        "the room's message"
    );
    assert!(!pages.contains("Iets anders"), "only the room asked for");
    archive.extract(work.path()).expect("unpack");
    let folder = work.path().join(name.trim_end_matches(".zip"));
    let verified = verify_export(&server.data_dir(), &folder);
    assert!(
        verified.status.success(),
        "{}{}",
        String::from_utf8_lossy(&verified.stdout),
        String::from_utf8_lossy(&verified.stderr)
    );

    // Nothing missing: the room is not encrypted, the member never left,
    // and capture catches up within a second or so.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let gaps = loop {
        let gaps = rita.get("/gaps").await;
        if gaps.contains("Archive up to date") || std::time::Instant::now() > deadline {
            break gaps;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    };
    for expected in [
        "No alarms.",
        "0 without their room key",
        "Archive up to date",
    ] {
        assert!(gaps.contains(expected), "{expected:?} not in\n{gaps}");
    }

    // Both recorded, with the records manager as the actor.
    let trail = rita.get("/audit").await;
    for expected in ["vault export download", &format!("room {room}")] {
        assert!(trail.contains(expected), "{expected:?} not in the trail");
    }
}
