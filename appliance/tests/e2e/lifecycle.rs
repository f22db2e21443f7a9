//! Process lifecycle: `--version`, clean shutdown and restart.

use matrix_sdk::RoomState;
use matrix_sdk::room::MessagesOptions;
use matrix_sdk::ruma::UInt;
use matrix_sdk::ruma::api::client::room::create_room;
use matrix_sdk::ruma::events::room::message::RoomMessageEventContent;
use serde_json::Value;

use crate::client::{Api, initial_sync_settings, login_client, register_client};
use crate::harness::{TestServer, run_archipel};

#[test]
fn version_flag_prints_the_version() {
    let output = run_archipel(&["--version"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "archipel --version failed: {output:?}"
    );
    assert!(
        stdout.contains("archipel") && stdout.contains(env!("CARGO_PKG_VERSION")),
        "archipel --version printed {stdout:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn data_survives_a_clean_restart() {
    let mut server = TestServer::start().await;
    let alice = register_client(&server, "alice").await;
    let token = alice.access_token().expect("access token");

    let mut request = create_room::v3::Request::new();
    request.name = Some("kept".to_owned());
    let room = alice.create_room(request).await.expect("create a room");
    let room_id = room.room_id().to_owned();
    let bodies: Vec<String> = (1..=5).map(|n| format!("before restart {n}")).collect();
    for body in &bodies {
        room.send(RoomMessageEventContent::text_plain(body))
            .await
            .expect("send");
    }

    server.restart().await;

    // The existing session is still valid.
    let api = Api::new(server.url()).with_token(&token);
    let whoami = api.get("/_matrix/client/v3/account/whoami").await.ok();
    assert_eq!(whoami["user_id"], "@alice:localhost");

    // Password login works, and a fresh client finds the room and history.
    let again = login_client(&server, "alice").await;
    again
        .sync_once(initial_sync_settings())
        .await
        .expect("sync after restart");
    let room = again
        .get_room(&room_id)
        .expect("the room survived the restart");
    assert_eq!(room.state(), RoomState::Joined);
    assert_eq!(room.name().as_deref(), Some("kept"));

    let mut options = MessagesOptions::backward();
    options.limit = UInt::from(50_u32);
    let page = room.messages(options).await.expect("history after restart");
    let mut history: Vec<String> = page
        .chunk
        .iter()
        .filter_map(|event| {
            let event: Value = serde_json::from_str(event.raw().json().get()).ok()?;
            (event["type"] == "m.room.message")
                .then(|| event["content"]["body"].as_str().map(str::to_owned))
                .flatten()
        })
        .collect();
    history.reverse();
    assert_eq!(history, bodies, "history after restart");

    // And the room keeps working.
    room.send(RoomMessageEventContent::text_plain("after restart"))
        .await
        .expect("send after restart");
}

/// Under systemd (`Type=notify`, `WatchdogSec=`): the node says when it is
/// ready, pings the watchdog while it runs, and says when it stops.
#[tokio::test(flavor = "multi_thread")]
async fn systemd_hears_ready_watchdog_and_stopping() {
    use std::time::Duration;
    let dir = tempfile::tempdir().expect("tempdir");
    let socket_path = dir.path().join("notify");
    let socket = tokio::net::UnixDatagram::bind(&socket_path).expect("a notify socket");
    let mut child = tokio::process::Command::new(crate::harness::archipel_bin())
        .args(["dev", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .env("NOTIFY_SOCKET", &socket_path)
        .env("WATCHDOG_USEC", "400000")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn archipel");
    let mut buffer = [0u8; 256];
    let mut next = async || {
        let n = tokio::time::timeout(Duration::from_secs(60), socket.recv(&mut buffer))
            .await
            .expect("a notification in time")
            .expect("recv");
        String::from_utf8_lossy(&buffer[..n]).into_owned()
    };
    assert_eq!(next().await, "READY=1");
    // Pings at twice the rate asked for: several within a second.
    let mut pings = 0;
    let until = tokio::time::Instant::now() + Duration::from_secs(1);
    while tokio::time::Instant::now() < until {
        if next().await == "WATCHDOG=1" {
            pings += 1;
        }
    }
    assert!(pings >= 2, "{pings} watchdog pings in a second");
    let pid = nix::unistd::Pid::from_raw(child.id().expect("running") as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
    loop {
        match next().await.as_str() {
            "WATCHDOG=1" => continue,
            state => {
                assert_eq!(state, "STOPPING=1");
                break;
            }
        }
    }
    let status = child.wait().await.expect("wait");
    assert!(status.success(), "{status}");
}
