//! `archipel vault import whatsapp` on a running node: an export comes in
//! once with its media and provenance, reads back in an export that checks
//! offline, and a file with a line that cannot be read brings in nothing.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::client::{png, register_client};
use crate::harness::{TestServer, json_lines};
use crate::vault::{archived, conversation_folder, vault_ok, vault_refused, verify_export};

/// An iOS export in English: `_chat.txt` with the marks iOS inserts, and
/// the photo it attached.
pub fn ios_export(dir: &Path, photo: &[u8]) -> PathBuf {
    let chat = "\u{200e}[12/03/2024, 14:05:33] Piet: Messages and calls are end-to-end encrypted.\r\n\
                [12/03/2024, 14:05:40] Jan: Can you send the board?\r\n\
                [12/03/2024, 14:06:01] Piet: \u{200e}<attached: 00000003-PHOTO-2024-03-12-14-06-01.jpg>\r\n\
                [12/03/2024, 14:07:12] Piet: The budget line is on the left:\r\n\
                three million for 2025\r\n";
    let path = dir.join("WhatsApp Chat - Piet.zip");
    let mut zip = zip::ZipWriter::new(std::fs::File::create(&path).expect("create"));
    let options = zip::write::SimpleFileOptions::default();
    zip.start_file("_chat.txt", options).expect("entry");
    zip.write_all(chat.as_bytes()).expect("write");
    zip.start_file("00000003-PHOTO-2024-03-12-14-06-01.jpg", options)
        .expect("entry");
    zip.write_all(photo).expect("write");
    zip.finish().expect("finish");
    path
}

#[tokio::test(flavor = "multi_thread")]
async fn a_whatsapp_export_is_imported_once_and_exported_like_a_room() {
    let server = TestServer::start().await;
    register_client(&server, "jan").await;
    let dir = server.data_dir();
    let files = tempfile::tempdir().expect("a folder");
    let photo = png(4, 4);
    let export = ios_export(files.path(), &photo);
    let export = export.to_str().expect("path");
    fn import(file: &str) -> Vec<&str> {
        vec![
            "import",
            "whatsapp",
            file,
            "--owner",
            "jan",
            "--owner-name",
            "Jan",
            "--declaration",
            "Exported from my work phone; complete and unaltered.",
        ]
    }
    vault_refused(
        &dir,
        &[
            "import",
            "whatsapp",
            export,
            "--owner",
            "nobody",
            "--declaration",
            "mine",
        ],
        "is not a user of this node",
    );

    let mut args = import(export);
    args.push("--json");
    let imported: Value = serde_json::from_str(&vault_ok(&dir, &args)).expect("JSON");
    // The chat's name and four messages.
    assert_eq!(imported["added"], 5, "{imported}");
    let room = imported["room_id"].as_str().expect("a room").to_owned();
    assert!(room.ends_with(":localhost"), "{room}");
    let again = vault_ok(&dir, &import(export));
    assert!(again.contains("nothing new"), "{again}");

    // A file with a line that cannot be read: refused with the line,
    // nothing of it imported.
    let before = archived(&dir).len();
    let broken = files.path().join("WhatsApp Chat with Ann.txt");
    std::fs::write(
        &broken,
        "12-03-2024 14:05 - Ann: hoi\n31-02-2024 09:00 - Ann: een dag die niet bestaat\n",
    )
    .expect("write");
    vault_refused(
        &dir,
        &import(broken.to_str().expect("path")),
        "WhatsApp Chat with Ann.txt: line 2: a date that does not exist",
    );
    assert_eq!(archived(&dir).len(), before, "nothing of it is archived");

    // Who imported what, from which file, on whose declaration.
    let steps = json_lines(&vault_ok(&dir, &["procedure", "--json"]));
    let step = steps
        .iter()
        .find(|step| step["action"] == "import")
        .expect("an import step");
    assert_eq!(step["subject"], room.as_str());
    let provenance = &step["details"]["provenance"];
    assert_eq!(provenance["owner"], "@jan:localhost");
    assert_eq!(provenance["file_name"], "WhatsApp Chat - Piet.zip");
    assert_eq!(provenance["file_sha256"].as_str().map(str::len), Some(64));
    assert_eq!(
        provenance["declaration"],
        "Exported from my work phone; complete and unaltered."
    );
    let audited = steps
        .iter()
        .filter(|step| step["details"]["action"] == "vault import whatsapp")
        .count();
    assert_eq!(audited, 4, "each attempt is in the audit trail");

    // Found by search like any message: by its words, its sender, its
    // source and type.
    let found = json_lines(&vault_ok(&dir, &["search", "budget", "left", "--json"]));
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0]["room"], room.as_str());
    assert_eq!(found[0]["source"], "whatsapp");
    assert_eq!(found[0]["sender"], "whatsapp:Piet");
    assert!(
        found[0]["excerpt"]
            .as_str()
            .is_some_and(|text| text.ends_with("three million for 2025")),
        "{}",
        found[0]
    );
    let from_jan = json_lines(&vault_ok(
        &dir,
        &["search", "--sender", "@jan:localhost", "--json"],
    ));
    assert_eq!(from_jan.len(), 1, "{from_jan:?}");
    let images = vault_ok(
        &dir,
        &["search", "--source", "whatsapp", "--type", "m.image"],
    );
    assert!(images.contains("1 message(s)"), "{images}");
    let steps = json_lines(&vault_ok(&dir, &["procedure", "--json"]));
    assert!(
        steps
            .iter()
            .any(|step| step["details"]["action"] == "vault search"
                && step["details"]["object"]
                    .as_str()
                    .is_some_and(|o| o.contains("budget left"))),
        "each search is in the audit trail"
    );

    // Exported like any room, and checked offline.
    let out = files.path().join("export");
    let out_str = out.to_str().expect("path");
    vault_ok(&dir, &["export", "--room", &room, "--out", out_str]);
    let page =
        std::fs::read_to_string(conversation_folder(&out).join("conversation.html")).expect("html");
    for expected in [
        "WhatsApp: Piet",
        "Can you send the board?",
        "three million for 2025",
        "<img src=\"attachments/",
    ] {
        assert!(page.contains(expected), "the page lacks {expected:?}");
    }
    let checked = verify_export(&dir, &out);
    assert!(
        checked.status.success(),
        "{}",
        String::from_utf8_lossy(&checked.stdout)
    );
}

/// Each format a WhatsApp export comes in, made here: (file name, the
/// chat's text, a word only it holds, a line of a multi-line message).
fn formats() -> Vec<(&'static str, String, &'static str, &'static str)> {
    vec![
        (
            "WhatsApp-chat met Anna.txt",
            "12-03-2024 14:05 - Berichten en gesprekken worden end-to-end versleuteld.\n\
             12-03-2024 14:05 - Anna: De nota over de dijkversterking\nkomt morgen\n\
             13-03-2024 09:12 - Anna: <Media weggelaten>\n"
                .to_owned(),
            "dijkversterking",
            "komt morgen",
        ),
        (
            "WhatsApp Chat with Bram.txt",
            "12/03/2024, 14:05 - Bram: The windfarm tender\nneeds a second reading\n\
             12/03/2024, 14:06 - Bram: IMG-20240312-WA0001.jpg (file attached)\n"
                .to_owned(),
            "windfarm",
            "needs a second reading",
        ),
        (
            "WhatsApp Chat with Cora.txt",
            "3/12/24, 2:05\u{202f}PM - Cora: The harbour levy\nis due in April\n\
             3/13/24, 9:12\u{202f}AM - Cora: thanks\n"
                .to_owned(),
            "harbour",
            "is due in April",
        ),
        (
            "_chat.txt",
            "\u{200e}[12-03-2024, 14:05:33] Dirk: Berichten en gesprekken worden end-to-end versleuteld.\n\
             [12-03-2024, 14:06:01] Dirk: De spoorboekjes\nzijn herzien\n\
             [12-03-2024, 14:07:12] Dirk: \u{200e}afbeelding weggelaten\n"
                .to_owned(),
            "spoorboekjes",
            "zijn herzien",
        ),
        (
            "Chat Eva.txt",
            "[12-03-2024 14:05:33] Eva: Het zorgakkoord\nligt ter tekening\n\
             [13-03-2024 09:00:00] Eva: Dit bericht is verwijderd\n"
                .to_owned(),
            "zorgakkoord",
            "ligt ter tekening",
        ),
        (
            "Chat Frits.txt",
            "[12/03/2024, 14:05:33] Frits: The broadband rollout\nis on schedule\n\
             [12/03/2024, 14:06:00] Frits: \u{200e}<attached: 00000003-PHOTO-2024-03-12-14-06-00.jpg>\n"
                .to_owned(),
            "broadband",
            "is on schedule",
        ),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn every_export_format_round_trips_into_search_and_export() {
    let server = TestServer::start().await;
    register_client(&server, "jan").await;
    let dir = server.data_dir();
    let files = tempfile::tempdir().expect("a folder");
    let photo = png(4, 4);
    for (n, (name, chat, word, line)) in formats().into_iter().enumerate() {
        // The ones that attach a picture come zipped with it.
        let path = if chat.contains("(file attached)") || chat.contains("<attached:") {
            let path = files.path().join(format!("export-{n}.zip"));
            let mut zip = zip::ZipWriter::new(std::fs::File::create(&path).expect("create"));
            let options = zip::write::SimpleFileOptions::default();
            zip.start_file(name, options).expect("entry");
            zip.write_all(chat.as_bytes()).expect("write");
            let picture = if chat.contains("<attached:") {
                "00000003-PHOTO-2024-03-12-14-06-00.jpg"
            } else {
                "IMG-20240312-WA0001.jpg"
            };
            zip.start_file(picture, options).expect("entry");
            zip.write_all(&photo).expect("write");
            zip.finish().expect("finish");
            path
        } else {
            let path = files.path().join(name);
            std::fs::write(&path, &chat).expect("write");
            path
        };
        let imported: Value = serde_json::from_str(&vault_ok(
            &dir,
            &[
                "import",
                "whatsapp",
                path.to_str().expect("path"),
                "--owner",
                "jan",
                "--chat",
                &format!("chat {n}"),
                "--declaration",
                "From my work phone.",
                "--json",
            ],
        ))
        .expect("JSON");
        let room = imported["room_id"].as_str().expect("a room").to_owned();

        // Found by its word, in its room, as an import.
        let found = json_lines(&vault_ok(&dir, &["search", word, "--json"]));
        assert_eq!(found.len(), 1, "{name}: {found:?}");
        assert_eq!(found[0]["room"], room.as_str(), "{name}");
        assert_eq!(found[0]["source"], "whatsapp", "{name}");
        assert!(
            found[0]["excerpt"]
                .as_str()
                .is_some_and(|t| t.contains(line)),
            "{name}: the whole message, its lines joined: {}",
            found[0]
        );

        // Exported with its text and pictures, and checked offline.
        let out = files.path().join(format!("out-{n}"));
        vault_ok(
            &dir,
            &[
                "export",
                "--room",
                &room,
                "--out",
                out.to_str().expect("path"),
            ],
        );
        let page = std::fs::read_to_string(conversation_folder(&out).join("conversation.html"))
            .expect("html");
        assert!(page.contains(word) && page.contains(line), "{name}: {page}");
        if chat.contains("attached") {
            assert!(
                page.contains("<img src=\"attachments/"),
                "{name}: the picture"
            );
        }
        let checked = verify_export(&dir, &out);
        assert!(
            checked.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&checked.stdout)
        );
    }
}
