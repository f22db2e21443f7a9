//! WhatsApp exports imported as records: with their media and provenance,
//! once however often the file comes, and nothing of a file with a line
//! that cannot be read.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};

use archipel_vault::Error;
use archipel_vault::import::Provenance;
use archipel_vault::import::whatsapp::{Export, Owner, PROVENANCE_KEY};
use common::{open, verifies};
use jiff::tz::TimeZone;

const SERVER: &str = "test.example";
const JAN: &str = "@jan:test.example";
const PHOTO: &[u8] = b"\xff\xd8\xff\xe0 not really a JPEG, but bytes all the same";

/// An Android export in Dutch, as its ZIP archive.
const CHAT: &str = "12-03-2024 14:05 - Berichten en gesprekken worden end-to-end versleuteld.\n\
                    12-03-2024 14:05 - Jan de Vries: Goedemiddag\n\
                    13-03-2024 09:01 - Piet: Zie: de notitie\n\
                    en de bijlage\n\
                    13-03-2024 09:02 - Piet: IMG-20240313-WA0001.jpg (bestand bijgevoegd)\n\
                    de foto van het bord\n\
                    13-03-2024 09:03 - Jan de Vries: Goedemiddag\n\
                    13-03-2024 09:03 - Jan de Vries: Goedemiddag\n";

fn zip(dir: &Path, name: &str, entries: &[(&str, &[u8])]) -> PathBuf {
    let path = dir.join(name);
    let mut zip = zip::ZipWriter::new(std::fs::File::create(&path).expect("create"));
    for (entry, bytes) in entries {
        zip.start_file(*entry, zip::write::SimpleFileOptions::default())
            .expect("an entry");
        zip.write_all(bytes).expect("write");
    }
    zip.finish().expect("finish");
    path
}

fn provenance(export: &Export) -> Provenance {
    Provenance {
        source: "whatsapp".into(),
        file_name: export.file_name.clone(),
        file_sha256: export.sha256.clone(),
        importer: "@rm:test.example".into(),
        owner: JAN.into(),
        declaration: "My own phone's export, complete.".into(),
    }
}

#[test]
fn an_export_is_imported_once_with_its_media_and_provenance() {
    let dir = tempfile::tempdir().expect("dir");
    let (_store, vault) = open(dir.path(), 1000);
    let file = zip(
        dir.path(),
        "WhatsApp Chat with Piet.zip",
        &[
            ("WhatsApp Chat with Piet.txt", CHAT.as_bytes()),
            ("IMG-20240313-WA0001.jpg", PHOTO),
        ],
    );
    let amsterdam = TimeZone::get("Europe/Amsterdam").expect("a time zone");
    let owner = Owner {
        user_id: JAN,
        name: Some("Jan de Vries"),
        time_zone: &amsterdam,
    };
    let export = Export::read(&file, &dir.path().join("scratch")).expect("readable");
    assert_eq!(export.title, "Piet");
    let room = export.room_id(&owner, SERVER);
    let events = export.events(&owner, SERVER);
    let imported = vault
        .import(&provenance(&export), &room, &events)
        .expect("imported");
    // The room's name and six messages (two the same, both kept).
    assert_eq!((imported.added, imported.known), (7, 0));
    let step = imported.step.expect("a provenance step");

    let size = vault.log().size().expect("size");
    let records = vault.log().room_records(&room, size).expect("records");
    assert_eq!(records.len(), 7);
    let opened: Vec<_> = records
        .iter()
        .map(|&seq| vault.open_event(seq).expect("opened"))
        .collect();
    assert_eq!(opened[0]["content"]["name"], "WhatsApp: Piet");
    let hello = &opened[2];
    assert_eq!(hello["sender"], JAN, "the owner's messages are the owner's");
    assert_eq!(hello["content"]["body"], "Goedemiddag");
    // 14:05 in Amsterdam in March is 13:05 UTC.
    assert_eq!(hello["origin_server_ts"], 1_710_248_700_000u64);
    assert_eq!(hello["content"][PROVENANCE_KEY]["line"], 2);
    assert_eq!(
        hello["content"][PROVENANCE_KEY]["file_sha256"],
        export.sha256
    );
    assert_eq!(opened[1]["content"]["msgtype"], "m.notice");
    assert_eq!(opened[3]["sender"], "whatsapp:Piet");
    assert_eq!(
        opened[3]["content"]["body"],
        "Zie: de notitie\nen de bijlage"
    );
    let photo = &opened[4];
    assert_eq!(photo["content"]["msgtype"], "m.image");
    assert_eq!(photo["content"]["body"], "de foto van het bord");
    assert_eq!(photo["content"]["info"]["size"], PHOTO.len());
    assert_ne!(opened[5]["event_id"], opened[6]["event_id"]);

    let record = vault.log().record(records[4]).expect("the photo's record");
    let copy = &record.event().expect("an event").media[0];
    let mut bytes = Vec::new();
    vault.open_media_to(copy, &mut bytes).expect("the photo");
    assert_eq!(bytes, PHOTO);

    let details = vault.open_event(step).expect("the step");
    assert_eq!(details["provenance"]["owner"], JAN);
    assert_eq!(details["provenance"]["file_sha256"], export.sha256);
    assert_eq!(
        details["provenance"]["declaration"],
        "My own phone's export, complete."
    );
    assert_eq!(details["records"]["count"], 7);

    // The same file again adds nothing, not even a step.
    let again = Export::read(&file, &dir.path().join("scratch")).expect("readable");
    let imported = vault
        .import(&provenance(&again), &room, &again.events(&owner, SERVER))
        .expect("imported");
    assert_eq!(
        (imported.added, imported.known, imported.step),
        (0, 7, None)
    );
    assert_eq!(vault.log().size().expect("size"), size);

    // A later export of the same chat adds only its new message.
    let later = format!("{CHAT}14-03-2024 10:00 - Piet: Nog iets\n");
    let file = zip(
        dir.path(),
        "WhatsApp Chat with Piet (2).zip",
        &[
            ("WhatsApp Chat with Piet.txt", later.as_bytes()),
            ("IMG-20240313-WA0001.jpg", PHOTO),
        ],
    );
    let later = Export::read(&file, &dir.path().join("scratch")).expect("readable");
    assert_eq!(
        later.title, "Piet",
        "named by its text, not the renamed archive"
    );
    let imported = vault
        .import(&provenance(&later), &room, &later.events(&owner, SERVER))
        .expect("imported");
    assert_eq!((imported.added, imported.known), (1, 7));

    // The owner stands for the chat's other authors: they (or their
    // delegate) may ask for Piet's message to go, and may not decide on
    // it; another records manager does.
    vault
        .set_records_manager("@rm:test.example", true, "operator")
        .expect("a records manager");
    let piets = opened[3]["event_id"]
        .as_str()
        .expect("an event ID")
        .to_owned();
    common::refused(
        vault.request_exclusion(
            std::slice::from_ref(&piets),
            "@eve:test.example",
            "private",
            None,
        ),
        "may not request the exclusion",
    );
    vault
        .add_delegate(JAN, "@sec:test.example", "operator")
        .expect("a delegate");
    let request = vault
        .request_exclusion(&[piets], "@sec:test.example", "a private chat", None)
        .expect("requested for the owner");
    vault
        .set_records_manager(JAN, true, "operator")
        .expect("a records manager");
    common::refused(
        vault.decide(&request.reference, true, JAN, None),
        "imported",
    );
    vault
        .decide(&request.reference, true, "@rm:test.example", None)
        .expect("decided");
    assert!(vault.open_event(records[3]).is_err(), "erased");
    verifies(&dir, &vault);
    drop((export, again, later));
    assert_eq!(
        std::fs::read_dir(dir.path().join("scratch"))
            .expect("scratch")
            .count(),
        0,
        "the unpacked media are gone"
    );
}

fn refused(result: Result<Export, Error>) -> String {
    match result {
        Err(Error::Refused(why)) => why,
        Err(other) => panic!("refused for another reason: {other:?}"),
        Ok(_) => panic!("read"),
    }
}

#[test]
fn a_file_that_cannot_be_read_is_refused_with_its_line() {
    let dir = tempfile::tempdir().expect("dir");
    let scratch = dir.path().join("scratch");
    let text = dir.path().join("chat.txt");
    std::fs::write(&text, format!("Beste lezer,\n{CHAT}")).expect("write");
    let why = refused(Export::read(&text, &scratch));
    assert!(why.starts_with("chat.txt: line 1:"), "{why}");

    let missing = zip(
        dir.path(),
        "WhatsApp Chat with Piet.zip",
        &[("WhatsApp Chat with Piet.txt", CHAT.as_bytes())],
    );
    let why = refused(Export::read(&missing, &scratch));
    assert!(
        why.contains("line 5: IMG-20240313-WA0001.jpg is not in the export"),
        "{why}"
    );

    let no_chat = zip(dir.path(), "photos.zip", &[("IMG-1.jpg", PHOTO)]);
    assert!(refused(Export::read(&no_chat, &scratch)).contains("no chat text"));

    let latin1 = dir.path().join("latin1.txt");
    std::fs::write(&latin1, b"12-03-2024 14:05 - Jan: caf\xe9\n").expect("write");
    assert!(refused(Export::read(&latin1, &scratch)).contains("not UTF-8"));

    // A chat's text is read up to its bound, and no further.
    let huge = dir.path().join("huge.zip");
    let mut zip = zip::ZipWriter::new(std::fs::File::create(&huge).expect("create"));
    zip.start_file(
        "_chat.txt",
        zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored)
            .large_file(true),
    )
    .expect("an entry");
    let line = "12-03-2024 14:05 - Jan: ".to_owned() + &"a".repeat(1000) + "\n";
    for _ in 0..(65 << 20) / line.len() + 1 {
        zip.write_all(line.as_bytes()).expect("write");
    }
    zip.finish().expect("finish");
    assert!(refused(Export::read(&huge, &scratch)).contains("larger than 64 MB"));

    let broken = dir.path().join("broken.zip");
    std::fs::write(&broken, b"PK\x03\x04 and then nothing a ZIP archive needs").expect("write");
    assert!(refused(Export::read(&broken, &scratch)).contains("not a readable ZIP archive"));
}
