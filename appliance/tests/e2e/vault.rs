//! The archive vault seen from outside: what matrix-sdk clients send is in
//! the vault, redacted and edited messages keep their originals, and
//! `archipel vault verify` names tampering done behind the node's back.

use std::path::Path;
use std::time::Duration;

use archipel_store::{Batch, Store, StoreOptions};
use matrix_sdk::{
    attachment::AttachmentConfig, ruma::events::room::message::RoomMessageEventContent,
};
use serde_json::{Value, json};

use crate::client::{alice_and_bob_in_room, png};
use crate::console_client::ConsoleClient;
use crate::harness::{TestServer, eventually, json_lines, run_archipel};

/// Sends a text message with matrix-sdk; returns its event ID.
pub async fn send_text(room: &matrix_sdk::Room, text: &str) -> String {
    room.send(RoomMessageEventContent::text_plain(text))
        .await
        .expect("send")
        .response
        .event_id
        .to_string()
}

/// Runs `archipel vault ARGS --data-dir DIR`; returns (success, stdout, stderr).
pub fn vault(data_dir: &Path, args: &[&str]) -> (bool, String, String) {
    let dir = data_dir.to_str().expect("path");
    let mut full = vec!["vault"];
    full.extend_from_slice(args);
    full.extend_from_slice(&["--data-dir", dir]);
    let output = run_archipel(&full);
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The archived records, as `archipel vault list --json` prints them.
pub fn archived(data_dir: &Path) -> Vec<Value> {
    let (ok, out, err) = vault(data_dir, &["list", "--json"]);
    assert!(ok, "vault list failed: {err}");
    json_lines(&out)
}

/// Waits until the vault at `data_dir` holds the record of `event_id`.
pub async fn wait_archived(data_dir: &Path, event_id: &str) {
    let (dir, event_id) = (data_dir.to_owned(), event_id.to_owned());
    crate::harness::eventually(
        &format!("{event_id} to be archived"),
        Duration::from_secs(30),
        || {
            let (dir, event_id) = (dir.clone(), event_id.clone());
            async move {
                archived(&dir)
                    .iter()
                    .any(|r| r["event_id"] == event_id.as_str())
                    .then_some(())
            }
        },
    )
    .await;
}

/// The original of an archived event, as `archipel vault show` prints it.
pub fn original(data_dir: &Path, event_id: &str) -> Value {
    let (ok, out, err) = vault(data_dir, &["show", "--event", event_id]);
    assert!(ok, "vault show {event_id} failed: {err}");
    serde_json::from_str(&out).expect("JSON")
}

pub fn assert_verifies(data_dir: &Path) {
    let (ok, out, err) = vault(data_dir, &["verify"]);
    assert!(ok, "vault verify failed:\n{out}\n{err}");
    assert!(out.contains("OK:"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn sent_redacted_and_edited_messages_are_all_archived() {
    let mut server = TestServer::start().await;
    let pair = alice_and_bob_in_room(&server, vec![]).await;
    let room = pair.alice_room();

    let mut sent = Vec::new();
    for n in 0..5 {
        sent.push(send_text(&room, &format!("archive me {n}")).await);
    }
    let edit = room
        .send_raw(
            "m.room.message",
            json!({
                "msgtype": "m.text",
                "body": "* archive me 0, edited",
                "m.new_content": { "msgtype": "m.text", "body": "archive me 0, edited" },
                "m.relates_to": { "rel_type": "m.replace", "event_id": sent[0] },
            }),
        )
        .await
        .expect("edit")
        .response
        .event_id
        .to_string();
    let redaction = room
        .redact(
            sent[1].as_str().try_into().expect("event id"),
            Some("typo"),
            None,
        )
        .await
        .expect("redact")
        .event_id
        .to_string();
    let picture = png(8, 8);
    let image = room
        .send_attachment(
            "chart.png",
            &mime::IMAGE_PNG,
            picture.clone(),
            AttachmentConfig::new(),
        )
        .await
        .expect("send an image")
        .event_id
        .to_string();
    let bob_reply = send_text(&pair.bob_room(), "noted").await;

    // A clean stop archives what is still in the outbox and signs a checkpoint.
    server.stop().await;
    let dir = server.data_dir();
    let records = archived(&dir);
    let ids: Vec<&str> = records
        .iter()
        .filter_map(|r| r["event_id"].as_str())
        .collect();
    for id in sent.iter().chain([&edit, &redaction, &image, &bob_reply]) {
        assert!(
            ids.contains(&id.as_str()),
            "{id} is not in the vault: {ids:?}"
        );
    }
    // The room's creation and membership are archived too, in stream order.
    assert_eq!(records[0]["type"], "m.room.create");
    let seqs: Vec<u64> = records
        .iter()
        .map(|r| r["seq"].as_u64().expect("seq"))
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] + 1 == w[1]), "{seqs:?}");

    // Redaction hides from clients, never from the vault: the original stays,
    // and the redaction itself says who hid what.
    assert_eq!(original(&dir, &sent[1])["content"]["body"], "archive me 1");
    let redaction_record = records
        .iter()
        .find(|r| r["event_id"] == redaction.as_str())
        .expect("archived");
    assert_eq!(redaction_record["redacts"], sent[1].as_str());
    assert_eq!(redaction_record["sender"], "@alice:localhost");

    // An edit keeps every version.
    assert_eq!(original(&dir, &sent[0])["content"]["body"], "archive me 0");
    assert_eq!(
        original(&dir, &edit)["content"]["m.new_content"]["body"],
        "archive me 0, edited"
    );

    // The picture is copied into the vault, sealed.
    let image_record = records
        .iter()
        .find(|r| r["event_id"] == image.as_str())
        .expect("archived");
    assert_eq!(image_record["media"], 1);
    let copies: Vec<_> = std::fs::read_dir(dir.join("vault/media/blobs"))
        .expect("media dir")
        .collect();
    assert_eq!(copies.len(), 1);
    let sealed = std::fs::read(copies[0].as_ref().expect("entry").path()).expect("read");
    assert!(
        !sealed
            .windows(picture.len().min(64))
            .any(|w| w == &picture[..picture.len().min(64)])
    );

    assert_verifies(&dir);
    let (ok, out, err) = vault(&dir, &["prove", "--event", &bob_reply, "--json"]);
    assert!(ok, "{err}");
    let proof: Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(proof["valid"], true);
    assert!(
        proof["checkpoint"]
            .as_str()
            .expect("note")
            .starts_with("localhost/archipel-vault\n")
    );

    let (_, status, _) = vault(&dir, &["status", "--json"]);
    let status: Value = serde_json::from_str(&status).expect("JSON");
    assert_eq!(status["records"].as_u64(), Some(records.len() as u64));
}

/// Opens the stopped node's vault database directly: the tool of someone
/// tampering with the archive behind the node's back.
pub fn open_store(data_dir: &Path) -> Store {
    Store::open(
        &data_dir.join("vault").join("db"),
        archipel_vault::columns::COLUMNS,
        &StoreOptions::default(),
    )
    .expect("open the vault's database")
}

pub fn seq_key(seq: u64) -> [u8; 8] {
    seq.to_be_bytes()
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_names_deleted_altered_and_truncated_records() {
    let mut server = TestServer::start().await;
    let pair = alice_and_bob_in_room(&server, vec![]).await;
    for n in 0..10 {
        send_text(&pair.alice_room(), &format!("tamper {n}")).await;
    }
    server.stop().await;
    let dir = server.data_dir();
    assert_verifies(&dir);
    let size = archived(&dir).len() as u64;

    let records_cf = archipel_vault::columns::SEQ_RECORD;
    // Deleting one record.
    let removed = {
        let store = open_store(&dir);
        let records = store.tree(records_cf).expect("tree");
        let bytes = records.get(seq_key(5)).expect("read").expect("record 5");
        let mut batch = Batch::new();
        batch.delete(&records, seq_key(5));
        store.commit(batch).expect("delete");
        bytes
    };
    let (ok, out, _) = vault(&dir, &["verify"]);
    assert!(!ok, "verify passed after a deletion:\n{out}");
    assert!(out.contains("record 5 is missing"), "{out}");

    // Putting it back, altered.
    {
        let store = open_store(&dir);
        let records = store.tree(records_cf).expect("tree");
        let altered = String::from_utf8(removed.clone())
            .expect("JSON")
            .replace("@alice:localhost", "@bob:localhost");
        assert_ne!(
            altered.as_bytes(),
            removed.as_slice(),
            "record 5 names alice"
        );
        let mut batch = Batch::new();
        batch.put(&records, seq_key(5), altered.as_bytes());
        store.commit(batch).expect("alter");
    }
    let (ok, out, _) = vault(&dir, &["verify", "--json"]);
    assert!(!ok);
    let report: Value = serde_json::from_str(&out).expect("JSON");
    let findings = report["findings"].as_array().expect("findings");
    assert!(
        findings.contains(&json!({ "finding": "altered", "seq": 5 })),
        "{findings:?}"
    );

    // Restoring it verifies again; cutting off the tail is truncation.
    {
        let store = open_store(&dir);
        let records = store.tree(records_cf).expect("tree");
        let mut batch = Batch::new();
        batch.put(&records, seq_key(5), &removed);
        store.commit(batch).expect("restore");
    }
    assert_verifies(&dir);
    {
        let store = open_store(&dir);
        let records = store.tree(records_cf).expect("tree");
        let meta = store
            .tree(archipel_vault::columns::VAULT_META)
            .expect("tree");
        let mut batch = Batch::new();
        for seq in size - 3..size {
            batch.delete(&records, seq_key(seq));
        }
        batch.put(&meta, b"log_size", (size - 3).to_be_bytes());
        store.commit(batch).expect("truncate");
    }
    let (ok, out, _) = vault(&dir, &["verify"]);
    assert!(!ok);
    assert!(
        out.contains(&format!(
            "the log was truncated: a checkpoint signed {size} records, the log holds {}",
            size - 3
        )),
        "{out}"
    );
}

/// Every file under `dir` that contains `needle`.
/// A folder backup target, with an operator's age key, for backups of a
/// stopped node; removed when dropped.
pub struct Backups {
    dir: tempfile::TempDir,
    identity: std::path::PathBuf,
    recipient: String,
    target: std::path::PathBuf,
    /// The key of the node backed up, as `create` printed it.
    node_key: std::sync::Mutex<String>,
}

impl Backups {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let identity = dir.path().join("operator.age");
        let recipient = run_archipel(&["backup", "keygen", identity.to_str().expect("path")]);
        let recipient = String::from_utf8_lossy(&recipient.stdout).trim().to_owned();
        let target = dir.path().join("usb");
        std::fs::create_dir(&target).expect("target");
        Self {
            dir,
            identity,
            recipient,
            target,
            node_key: std::sync::Mutex::default(),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    fn run(&self, args: &[&str]) -> std::process::Output {
        let mut full = vec!["backup"];
        full.extend(args);
        full.extend(["--target", self.target.to_str().expect("path")]);
        let output = run_archipel(&full);
        assert!(
            output.status.success(),
            "{full:?}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }

    /// Backs up the stopped node at `data_dir`; returns the backup's name.
    pub fn create(&self, data_dir: &Path) -> String {
        let output = self.run(&[
            "create",
            "--data-dir",
            data_dir.to_str().expect("path"),
            "--recipient",
            &self.recipient,
            "--json",
        ]);
        let results: Value = serde_json::from_slice(&output.stdout).expect("JSON");
        *self.node_key.lock().expect("lock") = results[0]["node_key"]
            .as_str()
            .expect("a node key")
            .to_owned();
        results[0]["name"].as_str().expect("a name").to_owned()
    }

    /// Restores backup `name` (the newest without one) into `to`; returns
    /// what the restore said.
    pub fn restore(&self, name: Option<&str>, to: &Path) -> String {
        let node_key = self.node_key.lock().expect("lock").clone();
        let mut args = vec!["restore"];
        args.extend(name);
        args.extend([
            "--identity",
            self.identity.to_str().expect("path"),
            "--node-key",
            &node_key,
            "--to",
            to.to_str().expect("path"),
        ]);
        String::from_utf8_lossy(&self.run(&args).stdout).into_owned()
    }
}

/// Backs up the stopped node at `dir` and restores the backup into a new
/// folder: the backups (removed when dropped) and the restored data folder.
pub fn backup_and_restore(dir: &Path) -> (Backups, std::path::PathBuf) {
    let backups = Backups::new();
    backups.create(dir);
    let restored = backups.path().join("restored");
    backups.restore(None, &restored);
    (backups, restored)
}

/// Excludes `event` through the web console: requested by `requester`
/// (its sender, or their delegate), approved by `approver` (made a records
/// manager, with an account if it has none); both local names, each
/// signing in for the first time. A stopped node is started for it and
/// stopped again. Returns the decision's reference.
pub async fn exclude(
    server: &mut TestServer,
    event: &str,
    requester: &str,
    reason: &str,
    approver: &str,
) -> String {
    let stopped = !server.is_running();
    if stopped {
        server.restart().await;
    }
    let api = crate::client::Api::new(server.url());
    let available = api
        .get(&format!(
            "/_matrix/client/v3/register/available?username={approver}"
        ))
        .await;
    if available.status == reqwest::StatusCode::OK {
        crate::client::register_at(server.url(), server.server_name(), approver).await;
    }
    let approver_id = format!("@{approver}:{}", server.server_name());
    vault_ok(
        &server.data_dir(),
        &["records-manager", "add", &approver_id],
    );
    let reference = ConsoleClient::sign_in(server, requester)
        .await
        .request_exclusion(&[event], reason, None)
        .await
        .expect("the exclusion is requested");
    let decided = ConsoleClient::sign_in(server, approver)
        .await
        .decide(&reference, true, "")
        .await;
    assert!(decided.contains("approved"), "{decided}");
    if stopped {
        server.stop().await;
    }
    reference
}

pub fn files_containing(dir: &Path, needle: &[u8]) -> Vec<std::path::PathBuf> {
    crate::harness::files_under(dir)
        .into_iter()
        .filter(|path| {
            std::fs::read(path)
                .map(|bytes| bytes.windows(needle.len()).any(|w| w == needle))
                .unwrap_or(false)
        })
        .collect()
}

/// The folder of the (first) conversation an export at `out` holds.
pub fn conversation_folder(out: &Path) -> std::path::PathBuf {
    std::fs::read_dir(out)
        .expect("export dir")
        .flatten()
        .map(|e| e.path())
        .find(|p| p.is_dir())
        .expect("a conversation folder")
}

/// `archipel vault verify-export` of `out` with the verifier key of the
/// node at `dir`.
pub fn verify_export(dir: &Path, out: &Path) -> std::process::Output {
    let status: Value = serde_json::from_str(&vault_ok(dir, &["status", "--json"])).expect("JSON");
    run_archipel(&[
        "vault",
        "verify-export",
        out.to_str().expect("path"),
        "--verifier-key",
        status["verifier_key"].as_str().expect("key"),
    ])
}

pub fn vault_ok(dir: &Path, args: &[&str]) -> String {
    let (ok, out, err) = vault(dir, args);
    assert!(ok, "vault {args:?} failed:\n{out}\n{err}");
    out
}

pub fn vault_refused(dir: &Path, args: &[&str], why: &str) {
    let (ok, out, err) = vault(dir, args);
    assert!(!ok, "vault {args:?} should have been refused:\n{out}");
    assert!(
        err.contains(why),
        "vault {args:?}: expected `{why}` in:\n{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_exclusion_takes_four_eyes_respects_holds_and_erases_everywhere() {
    // The database compresses its files, so the search below looks for a
    // string without repeats, and only its middle: compression may fold its
    // ends into matches with the text around it.
    const MARK: &str = "Zq8Lw3Tn5Vb1Xc7Mk2Rp9Hs4Jd6Fg0Ya8Ue3Io5Wl1Qx7Nt";
    let needle = &MARK.as_bytes()[4..40];
    let secret = format!("dinner with my partner {MARK}");
    let mut server = TestServer::start().await;
    let pair = alice_and_bob_in_room(&server, vec![]).await;
    let private = send_text(&pair.alice_room(), &secret).await;
    let business = send_text(&pair.alice_room(), "budget figures for Q3").await;
    let bob_token = pair.bob.access_token().expect("bob is logged in");
    server.stop().await;
    let dir = server.data_dir();
    let ids: Vec<String> = archived(&dir)
        .iter()
        .filter_map(|r| r["event_id"].as_str().map(str::to_owned))
        .collect();
    for id in [&private, &business] {
        assert!(
            ids.contains(id),
            "{id} was acknowledged but is not in the vault after a clean stop: {ids:?}\n{}",
            server.log_tail()
        );
    }

    // The records managers act in the web console, each signed in.
    server.restart().await;
    crate::client::Api::new(server.url())
        .register("carol")
        .await;
    vault_ok(&dir, &["records-manager", "add", "@alice:localhost"]);
    vault_ok(&dir, &["records-manager", "add", "@carol:localhost"]);
    let mut alice = ConsoleClient::sign_in(&server, "alice").await;
    let mut bob = ConsoleClient::sign_in(&server, "bob").await;
    let mut carol = ConsoleClient::sign_in(&server, "carol").await;
    let refused = bob
        .request_exclusion(&[&private], "not mine", None)
        .await
        .expect_err("bob did not send it");
    assert!(
        refused.contains(
            "only its sender (@alice:localhost), the owner of an imported chat, or their delegate"
        ),
        "{refused}"
    );
    let requested = alice
        .request_exclusion(&[&private], "a private appointment", Some("5.1.2e"))
        .await
        .expect("alice asks");
    assert_eq!(requested, "EX-000001");

    // Four eyes: the requester (a records manager herself) cannot approve,
    // and bob is no records manager at all.
    let refused = alice.decide("EX-000001", true, "").await;
    assert!(refused.contains("cannot also decide on it"), "{refused}");
    let (status, _) = bob
        .try_post("/requests/EX-000001/decide", &[("decision", "approve")])
        .await;
    assert_eq!(status, reqwest::StatusCode::FORBIDDEN);

    // A legal hold on the sender blocks the erasure, and nothing changes.
    let placed = carol
        .place_hold("user", "@alice:localhost", "Woo request 2026-17")
        .await;
    assert!(placed.starts_with("LH-000001 placed"), "{placed}");
    let refused = carol.decide("EX-000001", true, "").await;
    assert!(refused.contains("legal hold LH-000001"), "{refused}");
    assert_eq!(original(&dir, &private)["content"]["body"], secret.as_str());
    // The homeserver keeps the text in its files until the erasure (which
    // is what makes the search for it below meaningful).
    server.stop().await;
    assert!(!files_containing(&dir, needle).is_empty());
    server.restart().await;
    carol.follow(&server);
    let released = carol.release_hold("LH-000001").await;
    assert!(released.contains("LH-000001 released"), "{released}");

    let decided = carol.decide("EX-000001", true, "private").await;
    assert!(decided.contains("EX-000001 approved"), "{decided}");
    let refused = carol.decide("EX-000001", false, "").await;
    assert!(refused.contains("already approved"), "{refused}");
    server.stop().await;

    // Gone from the vault, gone from every file of the node; the log verifies.
    vault_refused(
        &dir,
        &["show", "--event", &private],
        "erased by decision EX-000001",
    );
    assert_eq!(
        original(&dir, &business)["content"]["body"],
        "budget figures for Q3"
    );
    assert_verifies(&dir);
    let leftovers = files_containing(&dir, needle);
    assert!(
        leftovers.is_empty(),
        "the erased text is still in {leftovers:?}"
    );
    // Nor is it in a backup made after the erasure, once restored.
    let (_backups, restored) = backup_and_restore(&dir);
    assert!(restored.join("vault/db").is_dir());
    let leftovers = files_containing(&restored, needle);
    assert!(
        leftovers.is_empty(),
        "the erased text is in the restored backup: {leftovers:?}"
    );

    // Every step is on record: the procedure's, with the people it names,
    let all = json_lines(&vault_ok(&dir, &["procedure", "--json"]));
    let (commands, steps): (Vec<_>, Vec<_>) = all
        .into_iter()
        .partition(|s| s["action"] == "admin_command");
    let actions: Vec<&str> = steps.iter().filter_map(|s| s["action"].as_str()).collect();
    assert_eq!(
        actions,
        [
            "add_records_manager",
            "add_records_manager",
            "request_exclusion",
            "place_hold",
            "release_hold",
            "decide_exclusion",
            "erasure",
        ]
    );
    assert_eq!(steps[2]["details"]["reason"], "a private appointment");
    assert_eq!(steps[2]["actor"], "@alice:localhost");
    assert_eq!(steps[5]["actor"], "@carol:localhost");
    assert_eq!(steps[6]["subject"], "EX-000001");
    // and each action, refused ones too, with who carried it out and from
    // where: the local account on the command line, the signed-in person
    // in the console.
    let me = format!("(uid {})", nix::unistd::getuid().as_raw());
    let recorded: Vec<(String, &str, &str)> = commands
        .iter()
        .filter(|c| {
            c["details"]["action"]
                .as_str()
                .is_some_and(|a| a.starts_with("vault"))
        })
        .map(|c| {
            let actor = c["actor"].as_str().expect("an actor");
            let origin = c["details"]["origin"].as_str().expect("an origin");
            let who = if actor.contains(&me) {
                "command line".to_owned()
            } else {
                assert!(origin.starts_with("web console from 127.0.0.1"), "{c}");
                actor.to_owned()
            };
            (
                who,
                c["subject"].as_str().expect("a subject"),
                c["details"]["outcome"].as_str().expect("an outcome"),
            )
        })
        .collect();
    let expected = [
        (
            "command line",
            "vault records-manager add @alice:localhost",
            "done",
        ),
        (
            "command line",
            "vault records-manager add @carol:localhost",
            "done",
        ),
        (
            "@bob:localhost",
            "vault request-exclusion 1 event(s) (as @bob:localhost)",
            "failed",
        ),
        (
            "@alice:localhost",
            "vault request-exclusion EX-000001 of 1 event(s) (as @alice:localhost)",
            "done",
        ),
        (
            "@alice:localhost",
            "vault decide approve EX-000001 (as @alice:localhost)",
            "failed",
        ),
        (
            "@carol:localhost",
            "vault hold place user @alice:localhost (as @carol:localhost)",
            "done",
        ),
        (
            "@carol:localhost",
            "vault decide approve EX-000001 (as @carol:localhost)",
            "failed",
        ),
        (
            "@carol:localhost",
            "vault hold release LH-000001 (as @carol:localhost)",
            "done",
        ),
        (
            "@carol:localhost",
            "vault decide approve EX-000001 (as @carol:localhost)",
            "done",
        ),
        (
            "@carol:localhost",
            "vault decide reject EX-000001 (as @carol:localhost)",
            "failed",
        ),
    ];
    let recorded: Vec<(&str, &str, &str)> = recorded
        .iter()
        .map(|(w, s, o)| (w.as_str(), *s, *o))
        .collect();
    assert_eq!(recorded, expected);
    // What people wrote stays sealed in the procedure's own steps.
    assert!(
        !commands
            .iter()
            .any(|c| c.to_string().contains("a private appointment")),
        "{commands:?}"
    );

    // Clients see the message erased, with the decision's reference.
    server.restart().await;
    let bob = crate::client::Api::new(server.url()).with_token(&bob_token);
    let room = pair.room_id.to_string();
    let event = bob.event(&room, &private).await.ok();
    assert_eq!(event["content"], json!({}), "{event}");
    assert_eq!(event["unsigned"]["io.archipel.erased"], "EX-000001");
    let timeline = bob.timeline(&room).await;
    assert!(!timeline.iter().any(|e| e.to_string().contains(MARK)));
    assert!(
        timeline
            .iter()
            .any(|e| e["content"]["body"] == "budget figures for Q3")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_export_reads_well_and_verifies_offline_and_tampering_shows() {
    let mut server = TestServer::start().await;
    let pair = alice_and_bob_in_room(&server, vec![]).await;
    pair.alice
        .account()
        .set_display_name(Some("Alice Minister"))
        .await
        .expect("display name");
    let room = pair.alice_room();
    let first = send_text(&room, "the first draft").await;
    room.send_raw(
        "m.room.message",
        json!({
            "msgtype": "m.text",
            "body": "* the final draft",
            "m.new_content": { "msgtype": "m.text", "body": "the final draft" },
            "m.relates_to": { "rel_type": "m.replace", "event_id": first },
        }),
    )
    .await
    .expect("edit");
    let hidden = send_text(&room, "sent to the wrong room").await;
    room.redact(
        hidden.as_str().try_into().expect("id"),
        Some("wrong room"),
        None,
    )
    .await
    .expect("redact");
    send_text(&room, "<b>not markup</b>").await;
    let private = send_text(&room, "private: call the dentist").await;
    let picture = png(6, 6);
    room.send_attachment(
        "chart.png",
        &mime::IMAGE_PNG,
        picture.clone(),
        AttachmentConfig::new(),
    )
    .await
    .expect("image");
    server.stop().await;
    let dir = server.data_dir();

    exclude(&mut server, &private, "alice", "private", "carol").await;

    let out = dir.parent().expect("parent").join("export");
    let out_str = out.to_str().expect("path");
    let room_id = pair.room_id.to_string();
    let summary: Value = serde_json::from_str(&vault_ok(
        &dir,
        &["export", "--room", &room_id, "--out", out_str, "--json"],
    ))
    .expect("JSON");
    assert_eq!(summary["conversations"], 1);
    assert_eq!(summary["erased"], 1);
    assert_eq!(summary["attachments"], 1);
    vault_refused(
        &dir,
        &["export", "--room", &room_id, "--out", out_str],
        "not empty",
    );

    let conversation = conversation_folder(&out);
    let page = std::fs::read_to_string(conversation.join("conversation.html")).expect("html");
    for expected in [
        "Alice Minister",
        "the first draft",
        "the final draft",
        "edited at",
        "sent to the wrong room",
        "hidden from chat clients by Alice Minister",
        "&lt;b&gt;not markup&lt;/b&gt;",
        "Erased from the archive by decision EX-000001",
        " CET",
        "<img src=\"attachments/",
    ] {
        assert!(page.contains(expected), "the page lacks {expected:?}");
    }
    assert!(!page.contains("call the dentist"));
    assert!(!page.contains("<b>not markup"));
    let attachment = std::fs::read_dir(conversation.join("attachments"))
        .expect("attachments")
        .flatten()
        .next()
        .expect("one attachment")
        .path();
    assert_eq!(std::fs::read(&attachment).expect("read"), picture);

    // Offline check with the key from a trusted source (the node's status).
    let status: Value = serde_json::from_str(&vault_ok(&dir, &["status", "--json"])).expect("JSON");
    let key = status["verifier_key"].as_str().expect("key").to_owned();
    let check = |target: &Path, key: &str| {
        run_archipel(&[
            "vault",
            "verify-export",
            target.to_str().expect("path"),
            "--verifier-key",
            key,
        ])
    };
    let good = check(&out, &key);
    assert!(
        good.status.success(),
        "{}",
        String::from_utf8_lossy(&good.stdout)
    );

    // One altered word in one exported line fails the check, naming the line.
    let records = conversation.join("records.jsonl");
    let original_lines = std::fs::read_to_string(&records).expect("jsonl");
    let altered = original_lines.replacen("the final draft", "the fatal draft", 1);
    assert_ne!(altered, original_lines);
    std::fs::write(&records, &altered).expect("write");
    let bad = check(&out, &key);
    let report = String::from_utf8_lossy(&bad.stdout);
    assert!(!bad.status.success(), "{report}");
    assert!(
        report.contains("differs from the archived original"),
        "{report}"
    );
    assert!(report.contains("records.jsonl line "), "{report}");

    // So does an altered record, or a checkpoint checked with another key.
    let mut lines = json_lines(&original_lines);
    let last = lines.last_mut().expect("lines");
    let record = last["record"]
        .as_str()
        .expect("record")
        .replace("@alice:localhost", "@mallory:localhost");
    last["record"] = Value::String(record);
    let rewritten: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(&records, &rewritten).expect("write");
    let bad = check(&out, &key);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stdout).contains("not in the signed log"));
    std::fs::write(&records, &original_lines).expect("restore");
    assert!(check(&out, &key).status.success());

    // A record cannot be passed off as erased: the line must carry the
    // erasure entry, proven in the log.
    let mut lines = json_lines(&original_lines);
    assert!(
        lines.iter().any(|l| l["erasure"]["record"].is_string()),
        "the erased record's line carries its erasure entry"
    );
    let hidden_line = lines
        .iter_mut()
        .find(|l| l["event"]["content"]["body"] == "the first draft")
        .expect("the first draft's line");
    hidden_line["data_key"] = Value::Null;
    hidden_line["event"] = Value::Null;
    hidden_line["erased"] = json!("EX-000001");
    let rewritten: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(&records, &rewritten).expect("write");
    let bad = check(&out, &key);
    let report = String::from_utf8_lossy(&bad.stdout);
    assert!(!bad.status.success(), "{report}");
    assert!(report.contains("without the erasure entry"), "{report}");
    std::fs::write(&records, &original_lines).expect("restore");

    // An altered attachment, or a missing one, is named too.
    let mut swapped = picture.clone();
    swapped[picture.len() / 2] ^= 0x40;
    std::fs::write(&attachment, &swapped).expect("write");
    let bad = check(&out, &key);
    let report = String::from_utf8_lossy(&bad.stdout);
    assert!(!bad.status.success(), "{report}");
    assert!(
        report.contains("differs from the archived file"),
        "{report}"
    );
    std::fs::remove_file(&attachment).expect("remove");
    let report = String::from_utf8_lossy(&check(&out, &key).stdout).into_owned();
    assert!(report.contains("cannot be read"), "{report}");
    std::fs::write(&attachment, &picture).expect("restore");
    assert!(check(&out, &key).status.success());

    // The page people read is the one the vault wrote.
    let html = conversation.join("conversation.html");
    std::fs::write(
        &html,
        page.replacen("the final draft", "the fatal draft", 1),
    )
    .expect("write");
    let report = String::from_utf8_lossy(&check(&out, &key).stdout).into_owned();
    assert!(
        report.contains("conversation.html differs from the page the vault wrote"),
        "{report}"
    );
    std::fs::write(&html, &page).expect("restore");

    // A line left out, or a whole conversation, is missed.
    let shortened: String = original_lines
        .lines()
        .skip(1)
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&records, &shortened).expect("write");
    let bad = check(&out, &key);
    let report = String::from_utf8_lossy(&bad.stdout);
    assert!(!bad.status.success(), "{report}");
    assert!(report.contains("of the export is missing"), "{report}");
    std::fs::write(&records, &original_lines).expect("restore");
    let aside = out.join("set-aside");
    std::fs::rename(&conversation, &aside).expect("move");
    let report = String::from_utf8_lossy(&check(&out, &key).stdout).into_owned();
    assert!(
        report.contains("is not one of the export's conversations"),
        "{report}"
    );
    std::fs::rename(&aside, &conversation).expect("move back");
    assert!(check(&out, &key).status.success());

    // Without a trusted key nothing is proven, and the check says so.
    let untrusted = run_archipel(&["vault", "verify-export", out.to_str().expect("path")]);
    assert!(!untrusted.status.success());
    assert!(
        String::from_utf8_lossy(&untrusted.stdout).contains("NOT PROVEN"),
        "{}",
        String::from_utf8_lossy(&untrusted.stdout)
    );

    let other_key =
        "localhost/archipel-vault+00000000+AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    assert!(!check(&out, other_key).status.success());
}

#[tokio::test(flavor = "multi_thread")]
async fn retention_is_planned_by_lists_that_wait_for_their_date() {
    let mut server = TestServer::start().await;
    let alice = crate::client::Api::new(server.url())
        .register("alice")
        .await;
    let alice = crate::client::Api::new(server.url()).with_token(&alice.access_token);
    let room = alice.create_room().await;
    for n in 0..3 {
        alice
            .send_text_ok(&room, &format!("r{n}"), "a business message")
            .await;
    }
    server.stop().await;
    let dir = server.data_dir();

    // Today nothing has expired: an official's business records stay 10 years.
    let status: Value =
        serde_json::from_str(&vault_ok(&dir, &["retention", "status", "--json"])).expect("JSON");
    assert_eq!(status["expired"], 0);
    assert!(status["to_destroy_later"].as_u64().expect("count") >= 3);
    let later: Value = serde_json::from_str(&vault_ok(
        &dir,
        &["retention", "status", "--as-of", "2040-01-01", "--json"],
    ))
    .expect("JSON");
    assert_eq!(later["expired"], status["to_destroy_later"]);

    // Records managers plan in the web console.
    server.restart().await;
    for name in ["rm", "rm2"] {
        crate::client::Api::new(server.url()).register(name).await;
        vault_ok(
            &dir,
            &["records-manager", "add", &format!("@{name}:localhost")],
        );
    }
    let mut rm = ConsoleClient::sign_in(&server, "rm").await;
    let mut rm2 = ConsoleClient::sign_in(&server, "rm2").await;
    let refused = rm.propose_destruction("").await;
    assert!(refused.contains("nothing to destroy"), "{refused}");
    let proposed = rm.propose_destruction("2040-01-01").await;
    assert!(proposed.starts_with("DL-000001 proposes"), "{proposed}");
    let refused = rm.approve_destruction("DL-000001").await;
    assert!(refused.contains("cannot also approve it"), "{refused}");
    let refused = rm2.approve_destruction("DL-000001").await;
    assert!(refused.contains("once that date has passed"), "{refused}");
    // Alice becomes a capstone official: her business records are kept
    // for good.
    let classified = rm2.classify(&room, "business").await;
    assert!(
        classified.ends_with("is classified business."),
        "{classified}"
    );
    let set = rm2.set_role("@alice:localhost", "capstone").await;
    assert_eq!(set, "@alice:localhost's role is capstone.");
    server.stop().await;
    let status: Value =
        serde_json::from_str(&vault_ok(&dir, &["retention", "status", "--json"])).expect("JSON");
    assert!(
        status["permanent"].as_u64().expect("count") >= 3,
        "{status}"
    );
    assert_verifies(&dir);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_vault_is_read_and_managed_while_the_node_runs() {
    let mut server = TestServer::start().await;
    let alice = crate::client::Api::new(server.url())
        .register("alice")
        .await;
    let alice = crate::client::Api::new(server.url()).with_token(&alice.access_token);
    let alice_id = "@alice:localhost".to_owned();
    let room = alice.create_room().await;
    let sent = alice
        .send_text_ok(&room, "live", "archived while running")
        .await;
    let dir = server.data_dir();

    crate::harness::eventually(
        "the message to be archived",
        std::time::Duration::from_secs(20),
        || {
            let dir = dir.clone();
            let sent = sent.clone();
            async move {
                archived(&dir)
                    .iter()
                    .any(|r| r["event_id"] == sent.as_str())
                    .then_some(())
            }
        },
    )
    .await;
    assert_verifies(&dir);
    assert_eq!(
        original(&dir, &sent)["content"]["body"],
        "archived while running"
    );
    // Changing commands go to the running node over its admin socket (the
    // operator's: records managers and delegates); the records managers'
    // procedure, erasure included, runs in the web console, without
    // stopping the node.
    crate::client::Api::new(server.url()).register("rm").await;
    vault_ok(&dir, &["records-manager", "add", "@rm:localhost"]);
    vault_ok(&dir, &["delegate", &alice_id, "@rm:localhost"]);
    let mut alice_console = ConsoleClient::sign_in(&server, "alice").await;
    let requested = alice_console
        .request_exclusion(&[&sent], "a private note", None)
        .await;
    assert_eq!(requested.as_deref(), Ok("EX-000001"));
    // Alice is no records manager: the console refuses her, and nothing
    // changes.
    let (status, _) = alice_console
        .try_post("/requests/EX-000001/decide", &[("decision", "approve")])
        .await;
    assert_eq!(status, reqwest::StatusCode::FORBIDDEN);
    let decided = ConsoleClient::sign_in(&server, "rm")
        .await
        .decide("EX-000001", true, "")
        .await;
    assert!(decided.contains("EX-000001 approved"), "{decided}");
    // Clients see it erased at once.
    let event = alice.event(&room, &sent).await.ok();
    assert_eq!(event["content"], json!({}), "{event}");
    assert_eq!(event["unsigned"]["io.archipel.erased"], "EX-000001");
    vault_refused(&dir, &["show", "--event", &sent], "erased by decision");
    assert_verifies(&dir);
    // The node audited each command.
    let log = server.log();
    for audited in ["records-manager", "delegate"] {
        assert!(
            log.contains("admin command")
                && log.contains(&format!("command=vault {{\"{audited}\"")),
            "`{audited}` is not in the audit log:\n{}",
            server.log_tail()
        );
    }
    // What people wrote is sealed in the vault, not in the journal.
    assert!(
        !log.contains("a private note"),
        "the exclusion's reason is in the log:\n{}",
        server.log_tail()
    );
    server.stop().await;
    // Stopped, the node's data is opened directly.
    vault_ok(&dir, &["records-manager", "add", "@rm2:localhost"]);
    assert_verifies(&dir);
}

/// The state event that replaced an excluded one carried its content for
/// clients (`unsigned.prev_content`): the exclusion scrubs that copy too.
#[tokio::test(flavor = "multi_thread")]
async fn an_excluded_state_event_leaves_no_copy_in_the_state_after_it() {
    const MARK: &str = "Vn4Qa8Zt2Lk6Wp0Ry3Hd7Jm1Xc5Bs9Ge4Tu8Ko2Fi6Nl0Pw";
    let needle = &MARK.as_bytes()[4..40];
    let mut server = TestServer::start().await;
    let api = crate::client::Api::new(server.url());
    let alice = api.with_token(&api.register("alice").await.access_token);
    let room = alice.create_room().await;
    let path = format!(
        "/_matrix/client/v3/rooms/{}/state/org.example.note/",
        crate::client::enc(&room)
    );
    let first = alice
        .put(&path, &json!({ "text": format!("my own note {MARK}") }))
        .await
        .ok()["event_id"]
        .as_str()
        .expect("event_id")
        .to_owned();
    alice
        .put(&path, &json!({ "text": "nothing to see" }))
        .await
        .ok();
    let dir = server.data_dir();
    eventually("both notes archived", Duration::from_secs(30), || {
        let dir = dir.clone();
        async move {
            let notes = archived(&dir)
                .iter()
                .filter(|r| r["type"] == "org.example.note")
                .count();
            (notes == 2).then_some(())
        }
    })
    .await;
    server.stop().await;
    assert!(!files_containing(&dir, needle).is_empty());

    exclude(&mut server, &first, "alice", "private", "carol").await;
    let leftovers = files_containing(&dir, needle);
    assert!(leftovers.is_empty(), "the note is still in {leftovers:?}");
    assert_verifies(&dir);
}

/// A node keeps a copy of a peer's file once its users have seen it; the
/// exclusion of the message that carried it removes that copy.
#[tokio::test(flavor = "multi_thread")]
async fn an_exclusion_removes_the_copy_of_a_peers_file() {
    use matrix_sdk::media::{MediaFormat, MediaRequestParameters};
    use matrix_sdk::ruma::events::room::MediaSource;

    let mut cluster =
        crate::federation::Cluster::start(&[("a.test", &["b.test"]), ("b.test", &["a.test"])])
            .await;
    let (alice, bob, room_id) = crate::federation::alice_and_bob_across(&cluster).await;
    let picture = crate::client::png(40, 40);
    let bob_room = bob.get_room(&room_id).expect("bob's room");
    let image = bob_room
        .send_attachment(
            "holiday.png",
            &mime::IMAGE_PNG,
            picture.clone(),
            AttachmentConfig::new(),
        )
        .await
        .expect("bob sends a picture")
        .event_id
        .to_string();
    let dir = cluster.node("a.test").data_dir();
    eventually("the picture on a.test", Duration::from_secs(60), || {
        let (dir, image) = (dir.clone(), image.clone());
        async move {
            archived(&dir)
                .iter()
                .any(|r| r["event_id"] == image.as_str())
                .then_some(())
        }
    })
    .await;
    let event = original(&dir, &image);
    let uri = event["content"]["url"].as_str().expect("url").to_owned();
    // Alice looks at it: a.test fetches and keeps a copy.
    let file = MediaRequestParameters {
        source: MediaSource::Plain(uri.into()),
        format: MediaFormat::File,
    };
    let seen = alice
        .media()
        .get_media_content(&file, false)
        .await
        .expect("alice sees the picture");
    assert!(seen == picture);
    let needle = &picture[picture.len() / 2..picture.len() / 2 + 32];
    cluster.node_mut("a.test").stop().await;
    assert!(!files_containing(&dir, needle).is_empty());

    // Bob is on another server: alice asks for him, as his delegate.
    vault_ok(&dir, &["delegate", "@bob:b.test", "@alice:a.test"]);
    exclude(
        cluster.node_mut("a.test"),
        &image,
        "alice",
        "a private picture",
        "carol",
    )
    .await;
    let leftovers = files_containing(&dir, needle);
    assert!(
        leftovers.is_empty(),
        "a.test still has the picture in {leftovers:?}"
    );
    assert_verifies(&dir);
}

/// A backup made before an exclusion still holds the excluded message:
/// restoring it erases the message again, by the ledger the newest backup
/// carries, so the shredded text does not come back.
#[tokio::test(flavor = "multi_thread")]
async fn restoring_an_older_backup_erases_again_what_was_erased_since() {
    const MARK: &str = "Tp3Ws7Yb1Dn5Qh9Kc2Mv6Rj0Xf4Lg8Ua3Ez7Ho1Ni5Bq9Ck";
    let needle = &MARK.as_bytes()[4..40];
    let mut server = TestServer::start().await;
    let pair = alice_and_bob_in_room(&server, vec![]).await;
    let private = send_text(&pair.alice_room(), &format!("my doctor's advice {MARK}")).await;
    send_text(&pair.alice_room(), "the quarterly figures").await;
    server.stop().await;
    let dir = server.data_dir();

    let backups = Backups::new();
    let before = backups.create(&dir);

    exclude(&mut server, &private, "alice", "medical", "carol").await;
    // Backups are named by the second.
    std::thread::sleep(Duration::from_millis(1100));
    let after = backups.create(&dir);
    assert_ne!(before, after);

    let restored = backups.path().join("restored");
    let said = backups.restore(Some(&before), &restored);
    assert!(
        said.contains("1 record(s) erased after this backup"),
        "{said}"
    );
    vault_refused(
        &restored,
        &["show", "--event", &private],
        "erased by decision EX-000001",
    );
    // Opening the restored node purged the homeserver's copies too.
    let leftovers = files_containing(&restored, needle);
    assert!(
        leftovers.is_empty(),
        "the erased text came back with the restore: {leftovers:?}"
    );
    assert_verifies(&restored);
    let steps = vault_ok(&restored, &["procedure", "--json"]);
    assert!(steps.contains("reapply_erasure"), "{steps}");
}
