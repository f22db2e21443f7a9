//! Woo packages on a running node: `vault woo plan` lists the documents of
//! a selection, the Woo officer's plan becomes a package whose PDFs no
//! longer hold the redacted passages (pdftotext finds the ground codes in
//! their place), whose productierapport reads back in the Woo platform's
//! columns, and which `vault verify-woo` checks against the archive.

use std::path::Path;
use std::process::Command;

use calamine::{Data, Reader, Xlsx, open_workbook};
use serde_json::Value;

use crate::client::alice_and_bob_in_room;
use crate::harness::{TestServer, json_lines, run_archipel};
use crate::vault::{send_text, vault_ok, vault_refused};

const COLUMNS: [&str; 12] = [
    "ID",
    "Matter",
    "Family ID",
    "Document",
    "File type",
    "Datum",
    "Beoordeling",
    "Beoordelingsgrond",
    "Toelichting",
    "Opgeschort",
    "Publieke link",
    "Gerelateerd ID",
];

/// The plan's document whose `conversation` holds `room` and whose date
/// is `date` (any date when `None`).
fn document<'a>(plan: &'a mut toml::Table, room: &str, date: Option<&str>) -> &'a mut toml::Table {
    plan["documents"]
        .as_array_mut()
        .expect("documents")
        .iter_mut()
        .filter_map(toml::Value::as_table_mut)
        .find(|d| {
            d["conversation"].as_str().is_some_and(|c| c.contains(room))
                && date.is_none_or(|date| d["date"].as_str() == Some(date))
        })
        .unwrap_or_else(|| panic!("a document of {room} on {date:?}"))
}

fn redaction(passage: &str, ground: &str) -> toml::Value {
    let mut table = toml::Table::new();
    table.insert("passage".into(), passage.into());
    table.insert("ground".into(), ground.into());
    toml::Value::Table(table)
}

fn pdftotext(pdf: &Path) -> String {
    let output = Command::new("pdftotext")
        .args(["-layout", pdf.to_str().expect("path"), "-"])
        .output()
        .expect("pdftotext runs (Debian poppler-utils)");
    assert!(output.status.success(), "pdftotext {}", pdf.display());
    String::from_utf8(output.stdout).expect("UTF-8")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_woo_package_redacts_for_good_and_checks_against_the_archive() {
    let server = TestServer::start().await;
    let pair = alice_and_bob_in_room(&server, vec![]).await;
    let dir = server.data_dir();
    let room = pair.room_id.to_string();
    send_text(
        &pair.alice_room(),
        "Het advies over de stikstofnorm is klaar.",
    )
    .await;
    let phone = send_text(
        &pair.bob_room(),
        "Bel Jan de Vries op 06-12345678 over de stikstofnorm.",
    )
    .await;
    let last = send_text(
        &pair.alice_room(),
        "Mijn opvatting: de norm is te streng voor de boeren.",
    )
    .await;
    // A second conversation, over two days, from a WhatsApp export.
    let files = tempfile::tempdir().expect("a folder");
    let chat = files.path().join("WhatsApp-chat met Piet.txt");
    std::fs::write(
        &chat,
        "12-03-2024 14:05 - Piet: Het stikstofdossier gaat morgen naar de ministerraad.\n\
         13-03-2024 09:12 - Piet: De ministerraad heeft besloten.\n",
    )
    .expect("write");
    vault_ok(
        &dir,
        &[
            "import",
            "whatsapp",
            chat.to_str().expect("path"),
            "--owner",
            "alice",
            "--chat",
            "Piet",
            "--declaration",
            "From my work phone.",
        ],
    );
    crate::vault::wait_archived(&dir, &last).await;

    // The plan: every conversation's day with the word, one document each.
    let text = vault_ok(
        &dir,
        &["woo", "plan", "--matter", "WOO-2026-014", "stikstofnorm"],
    );
    let only_room: toml::Table = toml::from_str(&text).expect("the plan is TOML");
    assert_eq!(
        only_room["documents"].as_array().map(Vec::len),
        Some(1),
        "{text}"
    );
    let text = vault_ok(&dir, &["woo", "plan", "--matter", "WOO-2026-014"]);
    assert!(text.starts_with("# Woo plan"), "{text}");
    let mut plan: toml::Table = toml::from_str(&text).expect("the plan is TOML");
    assert_eq!(
        plan["documents"].as_array().map(Vec::len),
        Some(3),
        "{text}"
    );
    let chat_doc = document(&mut plan, &room, None);
    assert_eq!(chat_doc["messages"].as_integer(), Some(3));
    let id = chat_doc["id"].as_integer().expect("an id");
    chat_doc.insert("judgement".into(), "deels openbaar".into());
    chat_doc.insert(
        "redactions".into(),
        toml::Value::Array(vec![
            redaction("Jan de Vries", "5.1.2e"),
            redaction("06-12345678", "5.1.2e"),
            redaction("de norm is te streng", "5.2"),
        ]),
    );
    let withheld = document(&mut plan, "WhatsApp", Some("2024-03-12"));
    withheld.insert("judgement".into(), "niet openbaar".into());
    withheld.insert("grounds".into(), toml::Value::Array(vec!["5.1.2i".into()]));
    let public = document(&mut plan, "WhatsApp", Some("2024-03-13"));
    public.insert("judgement".into(), "reeds openbaar".into());
    public.insert(
        "link".into(),
        "https://open.overheid.nl/documenten/123".into(),
    );

    let write_plan = |plan: &toml::Table, name: &str| {
        let path = files.path().join(name);
        std::fs::write(&path, toml::to_string(plan).expect("TOML")).expect("write");
        path.to_str().expect("path").to_owned()
    };
    let out = files.path().join("package");
    let out_arg = out.to_str().expect("path").to_owned();

    // A plan that would publish what it meant to redact is refused whole.
    let mut typo = plan.clone();
    document(&mut typo, &room, None)["redactions"]
        .as_array_mut()
        .expect("redactions")
        .push(redaction("06-1234567B", "5.1.2e"));
    let typo = write_plan(&typo, "typo.toml");
    vault_refused(
        &dir,
        &["woo", "package", &typo, "--out", &out_arg],
        "is not in the document",
    );
    assert!(!out.exists(), "nothing is made of a refused plan");
    let mut bad_ground = plan.clone();
    document(&mut bad_ground, &room, None)["redactions"]
        .as_array_mut()
        .expect("redactions")
        .push(redaction("advies", "5.1.3"));
    let bad_ground = write_plan(&bad_ground, "ground.toml");
    vault_refused(
        &dir,
        &["woo", "package", &bad_ground, "--out", &out_arg],
        "not a Woo ground",
    );
    let mut unknown = plan.clone();
    document(&mut unknown, &room, None).insert("id".into(), (id + 1).into());
    let unknown = write_plan(&unknown, "unknown.toml");
    vault_refused(
        &dir,
        &["woo", "package", &unknown, "--out", &out_arg],
        "is not a document number",
    );
    assert!(!out.exists());

    let plan_path = write_plan(&plan, "plan.toml");
    let made = vault_ok(
        &dir,
        &["woo", "package", &plan_path, "--out", &out_arg, "--json"],
    );
    let summary: Value = serde_json::from_str(&made).expect("JSON");
    assert_eq!(summary["documents"], 3, "{summary}");
    assert_eq!(summary["published"], 1);
    assert_eq!(summary["redactions"], 3);

    // The one published document: the redacted text is gone from the
    // file, its grounds are on the boxes.
    let pdfs: Vec<_> = std::fs::read_dir(out.join("documenten"))
        .expect("documenten")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(pdfs, vec![format!("{id}.pdf")]);
    let pdf = out.join("documenten").join(format!("{id}.pdf"));
    let shown = pdftotext(&pdf);
    for kept in [
        "WOO-2026-014",
        "Het advies over de stikstofnorm is klaar.",
        "Bel",
        "5.1.2e",
        "5.2",
        "over de stikstofnorm.",
    ] {
        assert!(shown.contains(kept), "{kept:?} in:\n{shown}");
    }
    for gone in ["Jan de Vries", "Vries", "12345678", "te streng"] {
        assert!(
            !shown.contains(gone),
            "{gone:?} is redacted, but in:\n{shown}"
        );
    }
    let bytes = std::fs::read(&pdf).expect("the PDF");
    assert!(!bytes.windows(8).any(|w| w == b"12345678"));

    // The productierapport, in the Woo platform's columns.
    let mut book: Xlsx<_> = open_workbook(out.join("productierapport.xlsx")).expect("xlsx");
    let sheet = book.worksheet_range("Productierapport").expect("the sheet");
    let rows: Vec<Vec<String>> = sheet
        .rows()
        .map(|row| row.iter().map(Data::to_string).collect())
        .collect();
    assert_eq!(rows[0], COLUMNS);
    assert_eq!(rows.len(), 4, "{rows:?}");
    let row = |judgement: &str| {
        rows.iter()
            .find(|r| r[6] == judgement)
            .unwrap_or_else(|| panic!("a row {judgement}: {rows:?}"))
    };
    let partly = row("Deels openbaar");
    assert_eq!(partly[0], id.to_string());
    assert_eq!(partly[1], "WOO-2026-014");
    assert_eq!(partly[4], "chat");
    assert_eq!(partly[7], "5.1.2e; 5.2");
    assert_eq!(row("Niet openbaar")[7], "5.1.2i");
    assert_eq!(row("Niet openbaar")[5], "2024-03-12");
    assert_eq!(
        row("Reeds openbaar")[10],
        "https://open.overheid.nl/documenten/123"
    );
    assert_eq!(
        row("Niet openbaar")[2],
        row("Reeds openbaar")[2],
        "one conversation, one family"
    );

    // The redaction log names every box, never its text.
    let log = std::fs::read_to_string(out.join("redaction-log.csv")).expect("log");
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(
        lines[0],
        "document,pagina,bericht,grond,tekens,beoordelaar,datum"
    );
    assert_eq!(lines.len(), 4, "{log}");
    assert_eq!(
        lines.iter().filter(|l| l.contains(&phone)).count(),
        2,
        "{log}"
    );
    assert!(!log.contains("Vries") && !log.contains("12345678"));

    // DiWoo metadata: well-formed, one entry per published document.
    let diwoo = out.join("diwoo.xml");
    let lint = Command::new("xmllint")
        .args(["--noout", diwoo.to_str().expect("path")])
        .status()
        .expect("xmllint runs (Debian libxml2-utils)");
    assert!(lint.success());
    let xml = std::fs::read_to_string(&diwoo).expect("diwoo");
    assert_eq!(xml.matches("<url>").count(), 1);
    assert!(xml.contains("c_3baef532"), "{xml}");

    // Checked offline against the archive's key, and a changed PDF found.
    let status: Value = serde_json::from_str(&vault_ok(&dir, &["status", "--json"])).expect("JSON");
    let key = status["verifier_key"].as_str().expect("key");
    let verify = |out: &str| run_archipel(&["vault", "verify-woo", out, "--verifier-key", key]);
    let checked = verify(&out_arg);
    assert!(
        checked.status.success(),
        "{}",
        String::from_utf8_lossy(&checked.stderr)
    );
    assert!(String::from_utf8_lossy(&checked.stdout).contains("OK"));
    let mut changed = bytes.clone();
    changed.extend_from_slice(b"\n% changed\n");
    std::fs::write(&pdf, changed).expect("write");
    let checked = verify(&out_arg);
    assert!(!checked.status.success());
    assert!(
        String::from_utf8_lossy(&checked.stdout).contains("differs from the document made"),
        "{}",
        String::from_utf8_lossy(&checked.stdout)
    );

    // Planning and packaging, refused or made, are in the audit trail.
    let steps = json_lines(&vault_ok(&dir, &["procedure", "--json"]));
    let count = |action: &str| {
        steps
            .iter()
            .filter(|s| s["details"]["action"] == action)
            .count()
    };
    assert_eq!(count("vault woo plan"), 2);
    assert_eq!(count("vault woo package"), 4);
}
