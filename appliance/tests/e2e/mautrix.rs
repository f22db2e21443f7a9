//! A real bridge from PyPI, mautrix-telegram, against a development node:
//! it runs offline as long as nobody logs in to Telegram, so its bot's
//! management room is what it can show. Plain and end-to-bridge encrypted.

use std::path::PathBuf;
use std::time::Duration;

use matrix_sdk::ruma::OwnedEventId;
use matrix_sdk::ruma::events::room::message::RoomMessageEventContent;
use serde_json::{Value, json};

use crate::client::{Api, decrypted_json, enc, register_client, sync_settings};
use crate::harness::{TestServer, eventually, json_lines};
use crate::vault::vault_ok;

const BOT: &str = "@telegrambot:localhost";

/// The Python with mautrix-telegram (`.ci/prerequisites` installs it).
fn bridge_python() -> PathBuf {
    std::env::var_os("BRIDGE_PYTHON")
        .map_or_else(|| "/var/tmp/bridge-venv/bin/python".into(), Into::into)
}

/// Runs the bridge's Python in `dir`, where the bridge writes its log
/// before its configuration says otherwise.
fn python(dir: &std::path::Path, args: &[&str]) -> String {
    let output = std::process::Command::new(bridge_python())
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the bridge's Python runs (.ci/prerequisites installs it)");
    assert!(
        output.status.success(),
        "python {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8")
}

/// A development node with mautrix-telegram registered and running.
struct Mautrix {
    server: TestServer,
    bridge: tokio::process::Child,
    /// Its configuration, registration, database and log.
    files: tempfile::TempDir,
}

impl Mautrix {
    /// Generates the bridge's registration from its example configuration,
    /// starts a node with it and then the bridge, and waits until the
    /// bridge says it is ready. `encrypted` turns end-to-bridge encryption
    /// on, in the bridge's default mode.
    async fn start(encrypted: bool) -> Self {
        let files = tempfile::tempdir().expect("a folder");
        let dir = files.path();
        let config = dir.join("config.yaml");
        let registration = dir.join("registration.yaml");
        let database = dir.join("telegram.db");
        let port = archipel_test_vm::ports::reserve().expect("a free loopback port");
        let example = python(
            dir,
            &[
                "-c",
                "import mautrix_telegram, os; print(os.path.join(os.path.dirname(mautrix_telegram.__file__), 'example-config.yaml'))",
            ],
        );
        std::fs::copy(example.trim(), &config).expect("the example configuration");
        let script = archipel_test_vm::package_dir().join("tests/e2e/bridge/configure.py");
        let configure = |homeserver: &str| {
            let port = port.to_string();
            let mut args = vec![
                script.to_str().expect("path"),
                config.to_str().expect("path"),
                homeserver,
                "localhost",
                &port,
                database.to_str().expect("path"),
            ];
            if encrypted {
                args.push("encrypted");
            }
            python(dir, &args);
        };
        configure("http://127.0.0.1:9");
        // The bridge writes its registration (and its tokens into its config).
        python(
            dir,
            &[
                "-m",
                "mautrix_telegram",
                "-g",
                "-c",
                config.to_str().expect("path"),
                "-r",
                registration.to_str().expect("path"),
            ],
        );
        let server =
            TestServer::start_with(&["--appservice", registration.to_str().expect("path")]).await;
        configure(server.url());
        let log = std::fs::File::create(dir.join("bridge.log")).expect("a log");
        let mut bridge = tokio::process::Command::new(bridge_python())
            .args(["-m", "mautrix_telegram", "-c"])
            .arg(&config)
            .arg("-r")
            .arg(&registration)
            .current_dir(dir)
            .stdout(log.try_clone().expect("the log"))
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("the bridge starts");
        let ready = format!("http://127.0.0.1:{port}/_matrix/mau/ready");
        let started = eventually("the bridge to be ready", Duration::from_secs(60), || {
            let ready = ready.clone();
            async move {
                reqwest::get(&ready)
                    .await
                    .ok()
                    .filter(|r| r.status().is_success())
                    .map(|_| ())
            }
        });
        let exited = bridge.wait();
        tokio::select! {
            () = started => {}
            status = exited => panic!(
                "the bridge exited ({status:?}):\n{}",
                std::fs::read_to_string(dir.join("bridge.log")).unwrap_or_default()
            ),
        }
        Self {
            server,
            bridge,
            files,
        }
    }

    /// What the bridge logged, for a failure's message.
    fn log(&self) -> String {
        std::fs::read_to_string(self.files.path().join("bridge.log")).unwrap_or_default()
    }

    /// Waits until the vault's search for `words` finds a message of the
    /// bridge's bot, through the bridge as its source.
    async fn archived_from_bot(&self, words: &str) -> Vec<Value> {
        let data = self.server.data_dir();
        let found = eventually("the bot's reply archived", Duration::from_secs(30), || {
            let data = data.clone();
            let words = words.to_owned();
            async move {
                let found = json_lines(&vault_ok(
                    &data,
                    &["search", &words, "--source", "telegram", "--json"],
                ));
                (!found.is_empty()).then_some(found)
            }
        })
        .await;
        assert!(found.iter().all(|hit| hit["sender"] == BOT), "{found:?}");
        found
    }
}

/// The bot's commands in its management room, with the start of its
/// answer to each.
const COMMANDS: [(&str, &str); 3] = [
    ("help", "This is a management room"),
    ("ping", "You're not logged in"),
    ("version", "[mautrix-telegram]"),
];

/// The notices and messages the bot sent into `room`, oldest first.
async fn bot_said(api: &Api, room: &str) -> Vec<String> {
    let page = api
        .get(&format!(
            "/_matrix/client/v3/rooms/{}/messages?dir=b&limit=100",
            enc(room)
        ))
        .await
        .ok();
    let mut said: Vec<String> = page["chunk"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["sender"] == BOT && e["type"] == "m.room.message")
        .filter_map(|e| e["content"]["body"].as_str().map(str::to_owned))
        .collect();
    said.reverse();
    said
}

async fn wait_for_reply(api: &Api, room: &str, starts: &str) -> String {
    let (api, room, starts) = (api.clone(), room.to_owned(), starts.to_owned());
    eventually(
        &format!("the bot to say {starts:?}"),
        Duration::from_secs(60),
        || {
            let (api, room, starts) = (api.clone(), room.clone(), starts.clone());
            async move {
                bot_said(&api, &room)
                    .await
                    .into_iter()
                    .find(|body| body.starts_with(&starts))
            }
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn mautrix_telegram_answers_in_a_dm_and_the_exchange_is_archived() {
    let mut mautrix = Mautrix::start(false).await;

    // Alice opens a direct chat with the bot, as Element does.
    let api = Api::new(mautrix.server.url());
    let alice = api.register("alice").await;
    let alice_api = api.with_token(&alice.access_token);
    let room = alice_api
        .post(
            "/_matrix/client/v3/createRoom",
            &json!({"invite": [BOT], "is_direct": true, "preset": "trusted_private_chat"}),
        )
        .await
        .ok()["room_id"]
        .as_str()
        .expect("a room")
        .to_owned();
    wait_for_reply(&alice_api, &room, "Hello, I'm a Telegram bridge bot").await;
    for (n, (command, reply)) in COMMANDS.into_iter().enumerate() {
        alice_api
            .put(
                &format!(
                    "/_matrix/client/v3/rooms/{}/send/m.room.message/c{n}",
                    enc(&room)
                ),
                &json!({"msgtype": "m.text", "body": command}),
            )
            .await
            .ok();
        wait_for_reply(&alice_api, &room, reply).await;
    }

    // The exchange is in the vault, the bot's side too.
    let found = mautrix.archived_from_bot("logged").await;
    assert_eq!(found[0]["room"], room.as_str());
    mautrix.bridge.kill().await.ok();
}

/// Syncs Alice's client until the bot has said more in `room` than
/// `said` holds, adding what it said to `said`: the text of a notice or
/// message, decrypted when it came encrypted.
async fn sync_until_bot_said_more(
    alice: &matrix_sdk::Client,
    room: &matrix_sdk::Room,
    said: &mut Vec<String>,
    mautrix: &Mautrix,
) {
    let known = said.len();
    let give_up = std::time::Instant::now() + Duration::from_secs(60);
    while said.len() == known {
        let response = alice.sync_once(sync_settings()).await.expect("sync");
        let events = response
            .rooms
            .joined
            .get(room.room_id())
            .map(|joined| &joined.timeline.events);
        for event in events.into_iter().flatten() {
            let mut json: Value =
                serde_json::from_str(event.raw().json().get()).expect("event JSON");
            if json["sender"] != BOT {
                continue;
            }
            if json["type"] == "m.room.encrypted" {
                let id: OwnedEventId =
                    serde_json::from_value(json["event_id"].clone()).expect("an ID");
                json = decrypted_json(alice, room, &id).await;
            }
            if json["type"] == "m.room.message" {
                said.push(
                    json["content"]["body"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                );
            }
        }
        assert!(
            std::time::Instant::now() < give_up,
            "the bot said nothing after {said:?}; its log:\n{}",
            mautrix.log()
        );
    }
}

/// End-to-bridge encryption in the bridge's default mode: its bot logs in
/// as the application service, uploads its keys and syncs for its
/// to-device messages, so it reads what a matrix-sdk client says in an
/// encrypted DM and answers each command. (mautrix-python's bot answers
/// in a management room in the clear; it encrypts in portals, which need
/// a Telegram login.) The archive member holds Alice's room keys, so the
/// vault reads her commands, and the exchange has no gap.
#[tokio::test(flavor = "multi_thread")]
async fn mautrix_telegram_reads_an_encrypted_dm_and_the_archive_reads_it_too() {
    let mut mautrix = Mautrix::start(true).await;
    let alice = register_client(&mautrix.server, "alice").await;
    alice
        .sync_once(sync_settings().timeout(Duration::ZERO))
        .await
        .expect("initial sync");
    let bot = matrix_sdk::ruma::OwnedUserId::try_from(BOT).expect("the bot's ID");
    let room = alice.create_dm(&bot).await.expect("alice opens a DM");
    assert!(
        room.latest_encryption_state()
            .await
            .expect("encryption state")
            .is_encrypted()
    );
    let mut said = Vec::new();
    sync_until_bot_said_more(&alice, &room, &mut said, &mautrix).await;
    assert!(
        said[0].starts_with("Hello, I'm a Telegram bridge bot"),
        "{said:?}"
    );
    let mut sent = Vec::new();
    for (command, reply) in COMMANDS {
        let response = room
            .send(RoomMessageEventContent::text_plain(command))
            .await
            .expect("alice sends");
        assert!(response.encryption_info.is_some(), "encrypted");
        sent.push(response.response.event_id.to_string());
        sync_until_bot_said_more(&alice, &room, &mut said, &mautrix).await;
        let answer = said.last().expect("an answer");
        assert!(answer.starts_with(reply), "{command}: {said:?}");
    }

    // Alice's encrypted commands are decrypted in the vault, and the
    // bot's answers are found by their words, the bridge their source.
    let found = mautrix.archived_from_bot("logged").await;
    assert_eq!(found[0]["room"], room.room_id().as_str());
    let data = mautrix.server.data_dir();
    let commands = sent.len() as u64;
    eventually(
        "Alice's commands decrypted in the vault",
        Duration::from_secs(30),
        || {
            let data = data.clone();
            async move {
                let status: Value =
                    serde_json::from_str(&vault_ok(&data, &["status", "--json"])).expect("JSON");
                (status["encrypted"]["undecrypted"] == 0
                    && status["encrypted"]["decrypted"] == commands)
                    .then_some(())
            }
        },
    )
    .await;
    for (event_id, (command, _)) in sent.iter().zip(COMMANDS) {
        let shown = vault_ok(&data, &["show", "--event", event_id]);
        assert!(shown.contains(command), "{shown}");
    }
    mautrix.bridge.kill().await.ok();
}
