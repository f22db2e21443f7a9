//! Backups end to end: `archipel backup` on a node that matrix-sdk clients
//! are using, restored onto a fresh data folder that then serves the same
//! history and whose vault verifies to the manifest's checkpoint; and what
//! the CLI says about wrong keys, damaged backups and bad destinations.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use matrix_sdk::ruma::events::room::message::RoomMessageEventContent;
use reqwest::StatusCode;
use serde_json::Value;

use crate::client::{Api, alice_and_bob_in_room, login_client, png, sync_until};
use crate::harness::{TestServer, run_archipel_with_env};
use crate::vault::{archived, files_containing, vault};

#[path = "../../../services/backup/tests/common/s3_server.rs"]
mod s3_server;

/// Runs `archipel backup ARGS`; returns (success, stdout, stderr).
fn backup(args: &[&str]) -> (bool, String, String) {
    backup_with_env(args, &[])
}

fn backup_with_env(args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let mut full = vec!["backup"];
    full.extend_from_slice(args);
    let output = run_archipel_with_env(&full, env);
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn backup_ok(args: &[&str]) -> String {
    backup_ok_with_env(args, &[])
}

fn backup_ok_with_env(args: &[&str], env: &[(&str, &str)]) -> String {
    let (ok, out, err) = backup_with_env(args, env);
    assert!(ok, "backup {args:?} failed:\n{out}\n{err}");
    out
}

fn backup_refused(args: &[&str], why: &str) -> String {
    let (ok, out, err) = backup(args);
    assert!(!ok, "backup {args:?} should have failed:\n{out}");
    assert!(
        err.contains(why),
        "backup {args:?}: expected `{why}` in:\n{err}"
    );
    err
}

/// An operator's age identity, kept outside any node: (identity file, recipient).
fn operator_key(dir: &Path, name: &str) -> (PathBuf, String) {
    let file = dir.join(format!("{name}.age"));
    let out = backup_ok(&["keygen", file.to_str().expect("path")]);
    (file, out.trim().to_owned())
}

fn path(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

/// The (size, base64 root) a signed checkpoint note commits to.
fn checkpoint_of(note: &str) -> (u64, String) {
    let mut lines = note.lines().skip(1);
    let size = lines
        .next()
        .and_then(|l| l.parse().ok())
        .expect("size line");
    let root = lines.next().expect("root line").to_owned();
    (size, root)
}

/// Chat, a backup while messages are still being sent, a restore onto a
/// fresh data folder: the restored node starts, its clients see the history
/// up to the snapshot (media too), and its vault verifies with the root of
/// the manifest's checkpoint.
#[tokio::test(flavor = "multi_thread")]
async fn a_backup_taken_during_chat_restores_onto_a_fresh_node() {
    let server = TestServer::start().await;
    let work = tempfile::tempdir().expect("temp dir");
    let (identity, recipient) = operator_key(work.path(), "operator");
    let usb = work.path().join("usb");
    std::fs::create_dir(&usb).expect("target dir");

    let pair = alice_and_bob_in_room(&server, Vec::new()).await;
    let room = pair.alice_room();
    let image = png(48, 48);
    let uploaded = pair
        .alice
        .media()
        .upload(&mime::IMAGE_PNG, image.clone(), None)
        .await
        .expect("alice uploads a PNG");
    let mxc = uploaded.content_uri.to_string();
    for n in 0..5 {
        room.send(RoomMessageEventContent::text_plain(format!("before {n}")))
            .await
            .expect("send");
    }

    // Alice keeps sending while the backup is made.
    let api = Api::new(server.url()).with_token(&pair.alice.access_token().expect("token"));
    let room_id = pair.room_id.to_string();
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sender = tokio::spawn({
        let (api, room_id, acked, stop) =
            (api.clone(), room_id.clone(), acked.clone(), stop.clone());
        async move {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let body = format!("during {n}");
                let reply = api.send_text(&room_id, &format!("during-{n}"), &body).await;
                assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
                acked.lock().expect("lock").push(body);
                n += 1;
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let acked_before_backup = acked.lock().expect("lock").clone();
    let data_dir = server.data_dir();
    let created = tokio::task::spawn_blocking({
        let (data_dir, usb, recipient) = (data_dir.clone(), usb.clone(), recipient.clone());
        move || {
            backup_ok(&[
                "create",
                "--data-dir",
                path(&data_dir),
                "--target",
                path(&usb),
                "--recipient",
                &recipient,
                "--json",
            ])
        }
    })
    .await
    .expect("backup create");
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    sender.await.expect("sender");
    let acked_all = acked.lock().expect("lock").clone();
    let created: Value = serde_json::from_str(&created).expect("create --json");
    let created = &created[0];
    assert_eq!(created["ok"], true, "{created}");
    let name = created["name"].as_str().expect("name").to_owned();
    assert!(
        acked_before_backup.len() > 3 && acked_all.len() > acked_before_backup.len(),
        "messages were being sent during the backup: {} before, {} in all",
        acked_before_backup.len(),
        acked_all.len()
    );
    // No snapshot is left in the node's data folder.
    let leftovers: Vec<_> = std::fs::read_dir(&data_dir)
        .expect("data dir")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(".backup"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    let listed = backup_ok(&["list", "--target", path(&usb), "--json"]);
    let listed: Value = serde_json::from_str(&listed).expect("list --json");
    assert_eq!(listed[0]["name"], name.as_str());
    assert_eq!(listed[0]["complete"], true);

    // Away from the node, the backup is trusted only with the node's key
    // as `create` printed it, never on its own word.
    let node_key = created["node_key"].as_str().expect("node_key").to_owned();
    backup_refused(
        &[
            "verify",
            &name,
            "--target",
            path(&usb),
            "--identity",
            path(&identity),
        ],
        "give the key you trust with --node-key",
    );
    let verified = backup_ok(&[
        "verify",
        &name,
        "--target",
        path(&usb),
        "--identity",
        path(&identity),
        "--node-key",
        &node_key,
        "--json",
    ]);
    let verified: Value = serde_json::from_str(&verified).expect("verify --json");
    assert!(
        verified["vault"]
            .as_str()
            .expect("vault")
            .contains("as in the manifest's checkpoint"),
        "{verified}"
    );
    let note = verified["vault_checkpoint"]
        .as_str()
        .expect("checkpoint")
        .to_owned();
    let (size, root) = checkpoint_of(&note);
    assert!(size > 8, "the vault held the chat: {note}");

    // A new machine: nothing but the backup and the operator's identity.
    let restored_server = TestServer::start_prepared("localhost", |data| {
        let restored = backup_ok(&[
            "restore",
            "--target",
            path(&usb),
            "--identity",
            path(&identity),
            "--node-key",
            &node_key,
            "--to",
            path(data),
            "--json",
        ]);
        let restored: Value = serde_json::from_str(&restored).expect("restore --json");
        assert_eq!(restored["name"], name.as_str());
        // Before the node runs again: the restored vault is the manifest's checkpoint.
        let (ok, out, err) = vault(data, &["verify", "--json"]);
        assert!(ok, "vault verify on the restored data:\n{out}\n{err}");
        let report: Value = serde_json::from_str(out.trim()).expect("verify --json");
        assert_eq!(report["log_size"], size, "{report}");
        assert_eq!(report["root"], root.as_str(), "{report}");
    })
    .await;

    let alice = login_client(&restored_server, "alice").await;
    sync_until(&alice, "alice's restored room", |response| {
        response
            .rooms
            .joined
            .contains_key(&pair.room_id)
            .then_some(())
    })
    .await;
    let restored_api =
        Api::new(restored_server.url()).with_token(&alice.access_token().expect("token"));
    let bodies: Vec<String> = restored_api
        .messages_with_prefix(&room_id, "")
        .await
        .into_iter()
        .map(|(_, body)| body)
        .collect();
    for n in 0..5 {
        assert!(
            bodies.contains(&format!("before {n}")),
            "before {n} in {bodies:?}"
        );
    }
    for body in &acked_before_backup {
        assert!(
            bodies.contains(body),
            "{body} (acknowledged before the backup) is restored"
        );
    }
    let restored_during = bodies.iter().filter(|b| b.starts_with("during ")).count();
    assert!(
        restored_during < acked_all.len(),
        "messages sent after the snapshot are not in it ({restored_during} of {})",
        acked_all.len()
    );
    let media = restored_api
        .get(&format!(
            "/_matrix/client/v1/media/download/localhost/{}",
            mxc.rsplit('/').next().expect("media id")
        ))
        .await;
    assert_eq!(media.status, StatusCode::OK);
    assert_eq!(media.bytes, image, "the uploaded image is restored");

    // The restored node archives what its copied outbox still held, and
    // every restored message is in its vault.
    let restored_dir = restored_server.data_dir();
    crate::harness::eventually(
        "the restored vault to hold every message",
        Duration::from_secs(20),
        || {
            let dir = restored_dir.clone();
            let bodies = bodies.len();
            async move {
                let records = archived(&dir)
                    .into_iter()
                    .filter(|r| r["type"] == "m.room.message")
                    .count();
                (records >= bodies).then_some(())
            }
        },
    )
    .await;
    let (ok, out, err) = vault(&restored_dir, &["verify"]);
    assert!(
        ok,
        "vault verify on the running restored node:\n{out}\n{err}"
    );
}

/// A stopped node, one backup: every way a backup can be wrong is told
/// apart and named, and nothing is half-restored.
#[tokio::test(flavor = "multi_thread")]
async fn wrong_keys_damage_and_bad_destinations_are_named() {
    let mut server = TestServer::start().await;
    let session = Api::new(server.url()).register("alice").await;
    let alice = Api::new(server.url()).with_token(&session.access_token);
    let room = alice.create_room().await;
    alice.send_text_ok(&room, "t1", "a secret plan").await;
    server.stop().await;

    let work = tempfile::tempdir().expect("temp dir");
    let (identity, recipient) = operator_key(work.path(), "operator");
    let (stranger, _) = operator_key(work.path(), "stranger");
    let usb = work.path().join("usb");
    std::fs::create_dir(&usb).expect("target dir");
    let data_dir = server.data_dir();
    let out = backup_ok(&[
        "create",
        "--data-dir",
        path(&data_dir),
        "--target",
        path(&usb),
        "--recipient",
        &recipient,
    ]);
    assert!(out.contains("written to"), "{out}");
    let name = out.split_whitespace().next().expect("name").to_owned();
    let node_key = out
        .split("signed by the node key ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .expect("the node key")
        .to_owned();

    // Nothing readable is in the target.
    for needle in [&b"a secret plan"[..], b"@alice:localhost", b"ed25519"] {
        assert!(
            files_containing(&usb, needle).is_empty(),
            "{} appears in the target",
            String::from_utf8_lossy(needle)
        );
    }

    // A wrong identity is told which keys the backup is encrypted to.
    let err = backup_refused(
        &[
            "verify",
            "--target",
            path(&usb),
            "--identity",
            path(&stranger),
        ],
        &recipient,
    );
    assert!(
        !err.contains("AGE-SECRET-KEY"),
        "no secret in the message: {err}"
    );

    let restore_refused = |to: &Path, why: &str| {
        backup_refused(
            &[
                "restore",
                "--target",
                path(&usb),
                "-i",
                path(&identity),
                "--node-key",
                &node_key,
                "--to",
                path(to),
            ],
            why,
        );
    };

    // Restoring needs an empty destination, and refuses without touching it.
    let occupied = work.path().join("occupied");
    std::fs::create_dir(&occupied).expect("dir");
    std::fs::write(occupied.join("keep-me"), b"x").expect("file");
    restore_refused(&occupied, "not empty");
    assert_eq!(std::fs::read(occupied.join("keep-me")).expect("kept"), b"x");

    // The node's own data folder knows its key: another node's backup is refused.
    let mut other = TestServer::start().await;
    other.stop().await;
    backup_refused(
        &[
            "verify",
            "--data-dir",
            path(&other.data_dir()),
            "--target",
            path(&usb),
            "-i",
            path(&identity),
        ],
        "made by another node",
    );

    // One flipped byte in the archive: named, and a restore switches nothing.
    let archive = usb.join(format!("{name}.tar.zst.age"));
    let original = std::fs::read(&archive).expect("archive");
    let mut flipped = original.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x40;
    std::fs::write(&archive, &flipped).expect("flip");
    backup_refused(
        &[
            "verify",
            "--target",
            path(&usb),
            "-i",
            path(&identity),
            "--node-key",
            &node_key,
        ],
        &format!("{name}.tar.zst.age is damaged or was altered"),
    );
    let fresh = work.path().join("fresh");
    restore_refused(&fresh, "damaged or was altered");
    assert!(!fresh.exists(), "a failed restore leaves no destination");
    let strays: Vec<_> = std::fs::read_dir(work.path())
        .expect("work dir")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
        .collect();
    assert!(strays.is_empty(), "no staging folder is left: {strays:?}");

    // Truncated: named from its size before anything is decrypted.
    std::fs::write(&archive, &original[..original.len() - 1000]).expect("truncate");
    backup_refused(
        &[
            "verify",
            "--target",
            path(&usb),
            "-i",
            path(&identity),
            "--node-key",
            &node_key,
        ],
        "is truncated",
    );
    std::fs::write(&archive, &original).expect("put back");
    backup_ok(&[
        "verify",
        "--target",
        path(&usb),
        "-i",
        path(&identity),
        "--node-key",
        &node_key,
    ]);

    // A target that is not there fails the backup visibly and keeps the others.
    backup_refused(
        &[
            "create",
            "--data-dir",
            path(&data_dir),
            "--target",
            path(&work.path().join("unplugged")),
            "--recipient",
            &recipient,
        ],
        "is the backup disk mounted?",
    );
    let listed = backup_ok(&["list", "--target", path(&usb)]);
    assert!(
        listed.contains(&name) && listed.contains("complete"),
        "{listed}"
    );

    // Bad recipients are refused before anything is written.
    backup_refused(
        &[
            "create",
            "--data-dir",
            path(&data_dir),
            "--target",
            path(&usb),
            "--recipient",
            "age1nope",
        ],
        "not an age X25519 recipient",
    );
}

/// A production node's `[backup]`: one `archipel backup create` writes to a
/// directory, to S3-compatible storage (a real server on loopback) and to a
/// passphrase recovery copy; each verifies with its own key; new hardware
/// restores from S3 with nothing but the bucket and the identity, and gets
/// the node's configuration files back.
#[tokio::test(flavor = "multi_thread")]
async fn a_configured_node_backs_up_to_a_directory_s3_and_a_recovery_copy() {
    let mut server = TestServer::start().await;
    let session = Api::new(server.url()).register("alice").await;
    let alice = Api::new(server.url()).with_token(&session.access_token);
    let room = alice.create_room().await;
    alice
        .send_text_ok(&room, "t1", "kept in three places")
        .await;
    server.stop().await;

    let work = tempfile::tempdir().expect("temp dir");
    let s3 = s3_server::S3Server::start(&work.path().join("s3"));
    let (identity, recipient) = operator_key(work.path(), "operator");
    let usb = work.path().join("usb");
    let recovery = work.path().join("recovery");
    for dir in [&usb, &recovery] {
        std::fs::create_dir(dir).expect("target dir");
    }
    let secret = work.path().join("s3.secret");
    std::fs::write(&secret, format!("{}\n", s3_server::SECRET_KEY)).expect("secret");
    let passphrase = "correct horse battery staple";
    let passphrase_file = work.path().join("recovery.passphrase");
    std::fs::write(&passphrase_file, passphrase).expect("passphrase");
    let data_dir = server.data_dir();
    let config = work.path().join("archipel.toml");
    std::fs::write(
        &config,
        format!(
            r#"[node]
data_dir = "{data}"
[homeserver]
server_name = "localhost"
[vault]
key_file = "{data}/vault.key"
[backup]
recipients = ["{recipient}"]
[[backup.targets]]
name = "usb"
directory = "{usb}"
[[backup.targets]]
name = "objects"
s3 = {{ endpoint = "http://127.0.0.1:{port}", bucket = "{bucket}", prefix = "bzk/node-1", access_key_id = "{access}", secret_access_key_file = "{secret}", allow_http = true }}
[[backup.targets]]
name = "recovery"
directory = "{recovery}"
passphrase_file = "{passphrase}"
"#,
            data = path(&data_dir),
            usb = path(&usb),
            port = s3.port,
            bucket = s3_server::BUCKET,
            access = s3_server::ACCESS_KEY,
            secret = path(&secret),
            recovery = path(&recovery),
            passphrase = path(&passphrase_file),
        ),
    )
    .expect("config");
    let cfg = path(&config);

    let created = backup_ok(&["create", "--config", cfg, "--json"]);
    let created: Value = serde_json::from_str(&created).expect("create --json");
    let targets: Vec<&str> = created
        .as_array()
        .expect("array")
        .iter()
        .map(|r| {
            assert_eq!(r["ok"], true, "{r}");
            r["target"].as_str().expect("target")
        })
        .collect();
    assert_eq!(targets, ["usb", "objects", "recovery"]);
    let node_key = created[0]["node_key"]
        .as_str()
        .expect("node_key")
        .to_owned();
    let listed: Value =
        serde_json::from_str(&backup_ok(&["list", "--config", cfg, "--json"])).expect("list");
    assert_eq!(listed.as_array().expect("array").len(), 3, "{listed}");
    assert!(
        s3.stored_files()
            .iter()
            .any(|f| f.starts_with("backups/bzk/node-1/archipel-")),
        "{:?}",
        s3.stored_files()
    );

    // Each copy opens with its own key only.
    backup_ok(&[
        "verify",
        "--config",
        cfg,
        "--target",
        "objects",
        "-i",
        path(&identity),
    ]);
    backup_refused(
        &[
            "verify",
            "--config",
            cfg,
            "--target",
            "recovery",
            "-i",
            path(&identity),
        ],
        "passphrase",
    );
    let verified = backup_ok_with_env(
        &[
            "verify",
            "--config",
            cfg,
            "--target",
            "recovery",
            "--passphrase",
        ],
        &[("ARCHIPEL_BACKUP_PASSPHRASE", passphrase)],
    );
    assert!(verified.contains(": OK"), "{verified}");

    // New hardware: the bucket, its credentials and the operator's identity.
    let restored = work.path().join("new-hardware/data");
    std::fs::create_dir(work.path().join("new-hardware")).expect("parent");
    let out = backup_ok_with_env(
        &[
            "restore",
            "--target",
            "s3://backups/bzk/node-1",
            "--s3-endpoint",
            &format!("http://127.0.0.1:{}", s3.port),
            "-i",
            path(&identity),
            "--node-key",
            &node_key,
            "--to",
            path(&restored),
        ],
        &[
            ("AWS_ACCESS_KEY_ID", s3_server::ACCESS_KEY),
            ("AWS_SECRET_ACCESS_KEY", s3_server::SECRET_KEY),
        ],
    );
    assert!(out.contains("to put back in place"), "{out}");
    assert_eq!(
        std::fs::read_to_string(restored.join("config/archipel.toml")).expect("config back"),
        std::fs::read_to_string(&config).expect("config")
    );
    assert_eq!(
        std::fs::read(restored.join("config/vault.key")).expect("vault key back"),
        std::fs::read(data_dir.join("vault.key")).expect("vault key")
    );
    let (ok, out, err) = vault(&restored, &["verify"]);
    assert!(ok, "the restored vault verifies:\n{out}\n{err}");

    // Pruning keeps the newest; a dry run deletes nothing.
    let pruned: Value = serde_json::from_str(&backup_ok(&[
        "prune",
        "--config",
        cfg,
        "--dry-run",
        "--json",
    ]))
    .expect("prune --json");
    assert_eq!(pruned.as_array().expect("array").len(), 3, "{pruned}");
    for report in pruned.as_array().expect("array") {
        assert_eq!(report["report"]["kept"].as_array().expect("kept").len(), 1);
        assert!(
            report["report"]["deleted"]
                .as_array()
                .expect("deleted")
                .is_empty()
        );
    }
}
