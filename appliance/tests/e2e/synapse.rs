//! Interoperability with the reference homeserver: Synapse (from PyPI,
//! `.ci/run` installs it) federates with an Archipel node over TLS with
//! certificates from the test CA, each trusting only that CA and only the
//! other. Server names are IP literals with ports, so neither side needs
//! DNS or `.well-known`.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use matrix_sdk::media::{MediaFormat, MediaRequestParameters, MediaThumbnailSettings};
use matrix_sdk::ruma::api::client::room::create_room::v3::{Request as CreateRoom, RoomPreset};
use matrix_sdk::ruma::events::room::MediaSource;
use matrix_sdk::ruma::events::room::message::RoomMessageEventContent;
use tempfile::TempDir;
use tokio::process::{Child, Command};
use tokio::time::Instant;

use crate::client::register_at;
use crate::client::{SYNC_DEADLINE, sync_settings};
use crate::federation::{TestCa, free_port, join_through, public_room, wait_for_texts};
use crate::harness::TestServer;

/// The Python that runs Synapse: `SYNAPSE_PYTHON`, or the venv `.ci/run` makes.
fn synapse_python() -> PathBuf {
    std::env::var_os("SYNAPSE_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp/synapse-venv/bin/python"))
}

/// A Synapse homeserver on 127.0.0.2, federating only with `peer`.
pub struct Synapse {
    dir: TempDir,
    child: Child,
    pub server_name: String,
    pub client_url: String,
}

impl Synapse {
    pub async fn start(ca: &TestCa, peer: &str) -> Self {
        let python = synapse_python();
        assert!(
            python.exists(),
            "Synapse is not installed at {} (set SYNAPSE_PYTHON, or run .ci/run)",
            python.display()
        );
        let dir = tempfile::Builder::new()
            .prefix("archipel-synapse-")
            .tempdir()
            .expect("a folder for Synapse");
        let (federation_port, client_port) = (free_port(), free_port());
        let server_name = format!("127.0.0.2:{federation_port}");
        let (certificate, key) = ca.issue("127.0.0.2");
        let path = |name: &str| dir.path().join(name).display().to_string();
        let limit = "{per_second: 1000, burst_count: 10000}";
        let config = format!(
            r#"server_name: "{server_name}"
public_baseurl: "http://127.0.0.2:{client_port}/"
pid_file: {pid}
report_stats: false
listeners:
  - port: {federation_port}
    bind_addresses: ["127.0.0.2"]
    type: http
    tls: true
    resources: [{{names: [federation], compress: false}}]
  - port: {client_port}
    bind_addresses: ["127.0.0.2"]
    type: http
    tls: false
    resources: [{{names: [client], compress: false}}]
tls_certificate_path: {certificate}
tls_private_key_path: {key}
database:
  name: sqlite3
  args: {{database: {db}}}
log_config: {log_config}
media_store_path: {media}
signing_key_path: {signing_key}
federation_verify_certificates: true
federation_custom_ca_list: [{ca}]
federation_domain_whitelist: ["{peer}"]
# Synapse refuses loopback peers unless loopback leaves this list.
federation_ip_range_blacklist: ["0.0.0.0/2", "64.0.0.0/3", "96.0.0.0/4", "112.0.0.0/5", "120.0.0.0/6", "124.0.0.0/7", "126.0.0.0/8", "128.0.0.0/1", "::/0"]
ip_range_blacklist: ["0.0.0.0/0", "::/0"]
trusted_key_servers: []
suppress_key_server_warning: true
url_preview_enabled: false
enable_metrics: false
enable_registration: true
enable_registration_without_verification: true
registration_shared_secret: "archipel-interop"
rc_message: {limit}
rc_registration: {limit}
rc_login: {{address: {limit}, account: {limit}, failed_attempts: {limit}}}
rc_joins: {{local: {limit}, remote: {limit}}}
rc_joins_per_room: {limit}
rc_invites: {{per_room: {limit}, per_user: {limit}, per_issuer: {limit}}}
rc_room_creation: {limit}
rc_presence: {{per_user: {limit}}}
rc_key_requests: {limit}
rc_profile: {limit}
rc_federation: {{window_size: 1000, sleep_limit: 10000, sleep_delay: 0, reject_limit: 10000, concurrent: 1000}}
federation_rr_transactions_per_room_per_second: 1000
"#,
            pid = path("homeserver.pid"),
            certificate = certificate.display(),
            key = key.display(),
            db = path("homeserver.db"),
            log_config = path("log.config"),
            media = path("media"),
            signing_key = path("signing.key"),
            ca = ca.bundle().display(),
        );
        std::fs::write(dir.path().join("homeserver.yaml"), config).expect("write homeserver.yaml");
        let log_config = format!(
            "version: 1\nformatters:\n  precise:\n    format: '%(asctime)s %(name)s %(levelname)s %(request)s %(message)s'\nhandlers:\n  file:\n    class: logging.FileHandler\n    formatter: precise\n    filename: {}\nroot:\n  level: INFO\n  handlers: [file]\ndisable_existing_loggers: false\n",
            path("homeserver.log")
        );
        std::fs::write(dir.path().join("log.config"), log_config).expect("write log.config");
        let keys = std::process::Command::new(&python)
            .args(["-m", "synapse.app.homeserver", "--generate-keys", "-c"])
            .arg(dir.path().join("homeserver.yaml"))
            .output()
            .expect("run Synapse to make its signing key");
        assert!(
            keys.status.success(),
            "Synapse could not make its keys: {}",
            String::from_utf8_lossy(&keys.stderr)
        );
        let child = Command::new(&python)
            .args(["-m", "synapse.app.homeserver", "-c"])
            .arg(dir.path().join("homeserver.yaml"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::File::create(dir.path().join("stderr.log")).expect("stderr log"),
            ))
            .kill_on_drop(true)
            .spawn()
            .expect("start Synapse");
        let synapse = Self {
            dir,
            child,
            server_name,
            client_url: format!("http://127.0.0.2:{client_port}"),
        };
        synapse.wait_ready().await;
        synapse
    }

    async fn wait_ready(&self) {
        let give_up = Instant::now() + Duration::from_secs(60);
        let url = format!("{}/_matrix/client/versions", self.client_url);
        loop {
            if reqwest::get(&url)
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return;
            }
            assert!(
                Instant::now() < give_up,
                "Synapse did not start within 60 s:\n{}",
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The end of Synapse's logs, for failure messages.
    pub fn log_tail(&self) -> String {
        let mut out = String::new();
        for name in ["stderr.log", "homeserver.log"] {
            let text = std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = lines[lines.len().saturating_sub(40)..].join("\n");
            out.push_str(&format!("----- {name} -----\n{tail}\n"));
        }
        out
    }
}

/// Syncs `client` until the room's history (read back with /messages, as
/// Synapse may answer a sync with a limited timeline) holds every one of
/// `expected` (sender, body), in that order.
async fn wait_for_history(
    client: &matrix_sdk::Client,
    room_id: &matrix_sdk::ruma::RoomId,
    expected: &[(String, String)],
) {
    let give_up = Instant::now() + SYNC_DEADLINE;
    loop {
        client.sync_once(sync_settings()).await.expect("sync");
        if let Some(room) = client.get_room(room_id) {
            let mut options = matrix_sdk::room::MessagesOptions::backward();
            options.limit = matrix_sdk::ruma::UInt::from(100u32);
            let page = room.messages(options).await.expect("messages");
            let mut seen: Vec<(String, String)> = page
                .chunk
                .iter()
                .filter_map(|event| {
                    serde_json::from_str::<serde_json::Value>(event.raw().json().get()).ok()
                })
                .filter(|e| e["type"] == "m.room.message")
                .map(|e| {
                    (
                        e["sender"].as_str().unwrap_or_default().to_owned(),
                        e["content"]["body"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect();
            seen.reverse();
            let in_order: Vec<&(String, String)> =
                seen.iter().filter(|item| expected.contains(item)).collect();
            if in_order == expected.iter().collect::<Vec<_>>() {
                return;
            }
        }
        assert!(
            Instant::now() < give_up,
            "the history never held {expected:?}"
        );
    }
}

impl Drop for Synapse {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn users_on_archipel_and_synapse_chat_in_rooms_created_on_either() {
    let ca = TestCa::new();
    let archipel_port = free_port();
    let archipel_name = format!("127.0.0.1:{archipel_port}");
    let synapse = Synapse::start(&ca, &archipel_name).await;

    let (certificate, key) = ca.issue("127.0.0.1");
    let federation = format!(
        "[federation]\nlisten = \"127.0.0.1:{archipel_port}\"\ntls_certificate = \"{}\"\ntls_private_key = \"{}\"\nca_bundle = \"{}\"\n\n[[federation.peers]]\nserver_name = \"{}\"\n",
        certificate.display(),
        key.display(),
        ca.bundle().display(),
        synapse.server_name,
    );
    let archipel = TestServer::start_federated(&archipel_name, &federation).await;

    let alice = register_at(archipel.url(), &archipel_name, "alice").await;
    let sam = register_at(&synapse.client_url, &synapse.server_name, "sam").await;
    let room_id = public_room(&alice).await;
    if let Err(e) = join_through(&sam, &room_id, &archipel_name).await {
        panic!("sam on Synapse could not join: {e}\n{}", synapse.log_tail());
    }

    let alice_room = alice.get_room(&room_id).expect("alice's room");
    alice_room
        .send(RoomMessageEventContent::text_plain("Hallo vanuit Archipel"))
        .await
        .expect("alice sends");
    let mut expected = vec![(
        format!("@alice:{archipel_name}"),
        "Hallo vanuit Archipel".to_owned(),
    )];
    wait_for_history(&sam, &room_id, &expected).await;

    sam.get_room(&room_id)
        .expect("sam's room")
        .send(RoomMessageEventContent::text_plain("Hallo vanuit Synapse"))
        .await
        .expect("sam sends");
    expected.push((
        format!("@sam:{}", synapse.server_name),
        "Hallo vanuit Synapse".to_owned(),
    ));
    wait_for_texts(&alice, &room_id, &expected).await;

    // Media: Synapse fetches Archipel's file and a thumbnail of it over
    // federation for its user.
    let image = crate::client::png(64, 64);
    let mxc = alice
        .media()
        .upload(&mime::IMAGE_PNG, image.clone(), None)
        .await
        .expect("alice uploads on Archipel")
        .content_uri;
    let file = MediaRequestParameters {
        source: MediaSource::Plain(mxc.clone()),
        format: MediaFormat::File,
    };
    let downloaded = match sam.media().get_media_content(&file, false).await {
        Ok(bytes) => bytes,
        Err(e) => panic!(
            "sam could not download Archipel's media: {e}\n{}",
            synapse.log_tail()
        ),
    };
    assert!(downloaded == image, "Synapse served other bytes");
    let thumbnail = MediaRequestParameters {
        source: MediaSource::Plain(mxc),
        format: MediaFormat::Thumbnail(MediaThumbnailSettings::new(
            matrix_sdk::ruma::UInt::from(32_u32),
            matrix_sdk::ruma::UInt::from(32_u32),
        )),
    };
    let thumb = match sam.media().get_media_content(&thumbnail, false).await {
        Ok(bytes) => bytes,
        Err(e) => panic!(
            "sam could not get a thumbnail of Archipel's media: {e}\n{}",
            synapse.log_tail()
        ),
    };
    assert!(crate::client::looks_like_image(&thumb), "not an image");

    // And the other way round: a room on Synapse, of Synapse's default
    // version (12), joined from Archipel through Synapse.
    let mut request = CreateRoom::new();
    request.preset = Some(RoomPreset::PublicChat);
    let synapse_room = sam
        .create_room(request)
        .await
        .expect("sam creates a room on Synapse")
        .room_id()
        .to_owned();
    assert_eq!(
        synapse_room.server_name(),
        None,
        "Synapse made a room of version 12: {synapse_room}"
    );
    if let Err(e) = join_through(&alice, &synapse_room, &synapse.server_name).await {
        panic!(
            "alice on Archipel could not join through Synapse: {e}\n{}",
            synapse.log_tail()
        );
    }
    sam.get_room(&synapse_room)
        .expect("sam's room")
        .send(RoomMessageEventContent::text_plain("Welkom in mijn kamer"))
        .await
        .expect("sam sends");
    let mut expected = vec![(
        format!("@sam:{}", synapse.server_name),
        "Welkom in mijn kamer".to_owned(),
    )];
    wait_for_texts(&alice, &synapse_room, &expected).await;
    alice
        .get_room(&synapse_room)
        .expect("alice's copy of the room")
        .send(RoomMessageEventContent::text_plain("Dank, ik ben er"))
        .await
        .expect("alice sends");
    expected.push((
        format!("@alice:{archipel_name}"),
        "Dank, ik ben er".to_owned(),
    ));
    wait_for_history(&sam, &synapse_room, &expected).await;
}
