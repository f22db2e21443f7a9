//! e-Depot transfers on a running node: `vault transfer sip` makes a SIP
//! whose every sidecar validates against the MDTO-XML 1.0.1 schema (as do
//! the Nationaal Archief's own examples, and broken sidecars do not), with
//! each file's size and SHA-256 and each message's valuation from the
//! retention policy; the receipt recorded in the console marks its records
//! transferred, and their destruction ends with a signed statement.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use matrix_sdk::attachment::AttachmentConfig;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::client::{alice_and_bob_in_room, png};
use crate::console_client::ConsoleClient;
use crate::harness::{TestServer, files_under, json_lines};
use crate::vault::{send_text, vault_ok, vault_refused};

/// The MDTO-XML 1.0.1 schema: `ARCHIPEL_MDTO_XSD`, else beside the
/// project in `shared/data/mdto/`.
fn schema() -> PathBuf {
    let path = std::env::var_os("ARCHIPEL_MDTO_XSD").map_or_else(
        || archipel_test_vm::workspace_root().join("../shared/data/mdto/MDTO-XML1.0.1.xsd"),
        PathBuf::from,
    );
    assert!(
        path.exists(),
        "the MDTO schema is not at {} (set ARCHIPEL_MDTO_XSD)",
        path.display()
    );
    path
}

/// `xmllint --schema`: (valid, what it said).
fn validate(file: &Path) -> (bool, String) {
    let output = Command::new("xmllint")
        .arg("--noout")
        .arg("--schema")
        .arg(schema())
        .arg(file)
        .output()
        .expect("xmllint runs (Debian libxml2-utils)");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The text of the first `<tag>` in `xml`.
fn element<'a>(xml: &'a str, tag: &str) -> &'a str {
    let open = format!("<{tag}>");
    let start = xml
        .find(&open)
        .unwrap_or_else(|| panic!("<{tag}> in {xml}"))
        + open.len();
    let end = xml[start..].find(&format!("</{tag}>")).expect("closed") + start;
    &xml[start..end]
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sip_validates_and_a_confirmed_transfer_ends_in_a_signed_destruction() {
    let server = TestServer::start().await;
    let pair = alice_and_bob_in_room(&server, vec![]).await;
    let dir = server.data_dir();
    let room = pair.room_id.to_string();
    let decision = send_text(
        &pair.alice_room(),
        "Besluit: de begroting <2027> gaat \"zo\" door & snel.",
    )
    .await;
    let picture = png(8, 8);
    let image = pair
        .bob_room()
        .send_attachment(
            "grafiek.png",
            &mime::IMAGE_PNG,
            picture.clone(),
            AttachmentConfig::new(),
        )
        .await
        .expect("send an image")
        .event_id
        .to_string();
    let last = send_text(&pair.bob_room(), "Genoteerd.").await;
    crate::vault::wait_archived(&dir, &last).await;
    for name in ["rm", "rm2"] {
        crate::client::Api::new(server.url()).register(name).await;
        vault_ok(
            &dir,
            &["records-manager", "add", &format!("@{name}:localhost")],
        );
    }
    let mut rm = ConsoleClient::sign_in(&server, "rm").await;
    let mut rm2 = ConsoleClient::sign_in(&server, "rm2").await;
    // Alice is a capstone official: her business messages are kept for good.
    rm.set_role("@alice:localhost", "capstone").await;

    let files = tempfile::tempdir().expect("a folder");
    let out = files.path().join("transfer");
    let out_arg = out.to_str().expect("path");
    vault_refused(
        &dir,
        &[
            "transfer",
            "sip",
            "--room",
            "!elsewhere:localhost",
            "--out",
            out_arg,
        ],
        "holds no message to transfer",
    );
    assert!(!out.exists(), "nothing is left of a refused SIP");
    let made: Value = serde_json::from_str(&vault_ok(
        &dir,
        &[
            "transfer", "sip", "--room", &room, "--out", out_arg, "--json",
        ],
    ))
    .expect("JSON");
    assert_eq!(made["reference"], "TR-000001", "{made}");
    assert_eq!(made["messages"], 3);
    assert_eq!(made["permanent"], 1);
    assert_eq!(made["temporary"], 2);
    assert_eq!(made["files"], 4, "three messages and a picture");

    // The container is what the pakbon says.
    let container = out.join("TR-000001.tar");
    let tar_bytes = std::fs::read(&container).expect("the container");
    let pakbon = std::fs::read_to_string(out.join("pakbon.xml")).expect("the pakbon");
    assert!(pakbon.contains(&sha256_hex(&tar_bytes)), "{pakbon}");
    assert_eq!(element(&pakbon, "identificatie"), "TR-000001");
    assert_eq!(element(&pakbon, "aantalBestanden"), "4");
    assert_eq!(element(&pakbon, "aantalInformatieobjecten"), "5");
    let lint = Command::new("xmllint")
        .arg("--noout")
        .arg(out.join("pakbon.xml"))
        .status()
        .expect("xmllint");
    assert!(lint.success());

    // Unpacked: a folder per aggregation with its sidecar inside, each
    // file with its sidecar beside it, all valid MDTO.
    let unpacked = files.path().join("unpacked");
    std::fs::create_dir_all(&unpacked).expect("a folder");
    let untar = Command::new("tar")
        .arg("-xf")
        .arg(&container)
        .arg("-C")
        .arg(&unpacked)
        .status()
        .expect("tar");
    assert!(untar.success());
    let all = files_under(&unpacked);
    let mut sidecars = 0;
    let mut by_event: BTreeMap<String, String> = BTreeMap::new();
    for path in &all {
        let name = path
            .file_name()
            .expect("a name")
            .to_string_lossy()
            .into_owned();
        assert!(
            !name.contains(|c: char| "<>:\"\\|?*#& ".contains(c)),
            "{name}: not a name a SIP may hold"
        );
        if name.ends_with(".mdto.xml") {
            sidecars += 1;
            let (valid, said) = validate(path);
            assert!(valid, "{} does not validate: {said}", path.display());
            let xml = std::fs::read_to_string(path).expect("a sidecar");
            assert!(xml.contains("MDTO-XML1.0.1.xsd"), "the version is named");
            if !name.ends_with(".bestand.mdto.xml") {
                // An aggregation's sidecar is inside its folder, named after it.
                let folder = path.parent().expect("a folder");
                assert_eq!(
                    format!(
                        "{}.mdto.xml",
                        folder.file_name().expect("named").to_string_lossy()
                    ),
                    name
                );
                if xml.contains("<begripLabel>Archiefstuk</begripLabel>") {
                    by_event.insert(
                        element(&xml, "identificatieKenmerk").to_owned(),
                        xml.clone(),
                    );
                }
            }
            continue;
        }
        if path.is_dir() {
            continue;
        }
        let sidecar = PathBuf::from(format!("{}.bestand.mdto.xml", path.display()));
        let xml = std::fs::read_to_string(&sidecar)
            .unwrap_or_else(|_| panic!("{} has no sidecar", path.display()));
        let bytes = std::fs::read(path).expect("a file");
        assert_eq!(element(&xml, "checksumWaarde"), sha256_hex(&bytes));
        assert_eq!(element(&xml, "omvang"), bytes.len().to_string());
        if name.ends_with(".png") {
            assert_eq!(bytes, picture, "the picture as sent");
            assert!(xml.contains("<begripCode>fmt/13</begripCode>"), "{xml}");
        }
        if name == "bericht.json" {
            let event: Value = serde_json::from_slice(&bytes).expect("JSON");
            assert!(event["event_id"].is_string());
        }
    }
    assert_eq!(sidecars, 5 + 4);
    let alice = &by_event[&decision];
    assert!(alice.contains("<begripCode>B</begripCode>"), "{alice}");
    assert!(!alice.contains("bewaartermijn"));
    for bob in [&by_event[&image], &by_event[&last]] {
        assert!(bob.contains("<begripCode>V</begripCode>"), "{bob}");
        assert!(
            bob.contains("<termijnLooptijd>P10Y</termijnLooptijd>"),
            "{bob}"
        );
    }

    // The Nationaal Archief's examples validate; broken sidecars do not.
    let examples = schema().parent().expect("a folder").join("examples");
    for example in std::fs::read_dir(&examples)
        .expect("the examples")
        .flatten()
    {
        let (valid, said) = validate(&example.path());
        assert!(valid, "{}: {said}", example.path().display());
    }
    let sidecar = all
        .iter()
        .find(|p| {
            p.to_string_lossy()
                .ends_with("bericht.json.bestand.mdto.xml")
        })
        .expect("a file's sidecar");
    let good = std::fs::read_to_string(sidecar).expect("sidecar");
    let start = good.find("<checksum>").expect("checksum");
    let end = good.find("</checksum>").expect("checksum") + "</checksum>".len();
    let checksum = &good[start..end];
    let format_start = good.find("<bestandsformaat>").expect("format");
    let swapped = format!(
        "{}{checksum}{}",
        &good[..format_start],
        good[format_start..].replacen(checksum, "", 1)
    );
    let message = all
        .iter()
        .find(|p| {
            let name = p.to_string_lossy();
            name.contains("bericht-")
                && name.ends_with(".mdto.xml")
                && !name.ends_with(".bestand.mdto.xml")
        })
        .expect("a message's sidecar");
    let object = std::fs::read_to_string(message).expect("sidecar");
    let start = object.find("<beperkingGebruik>").expect("a restriction");
    let end = object.find("</beperkingGebruik>").expect("closed") + "</beperkingGebruik>".len();
    let unrestricted = format!("{}{}", &object[..start], &object[end..]);
    let no_date = good
        .replace(element(&good, "checksumDatum"), "")
        .replace("<checksumDatum></checksumDatum>", "");
    for (what, text) in [
        ("a checksum before the format", swapped),
        ("no restriction on use", unrestricted),
        ("a checksum without its date", no_date),
    ] {
        let broken = files.path().join("broken.mdto.xml");
        std::fs::write(&broken, text).expect("write");
        let (valid, _) = validate(&broken);
        assert!(!valid, "{what} must not validate");
    }

    // The archive service's receipt, recorded by a records manager.
    let listed = vault_ok(&dir, &["transfer", "list"]);
    assert!(
        listed.contains("TR-000001 3 record(s)") && listed.contains("awaiting"),
        "{listed}"
    );
    rm.get("/retention").await;
    let refused = rm
        .post(
            "/retention/transfers/TR-000001/confirm",
            &[("receipt", " ")],
        )
        .await;
    assert!(refused.contains("receipt"), "{refused}");
    let confirmed = rm
        .post(
            "/retention/transfers/TR-000001/confirm",
            &[("receipt", "NA ontvangstbevestiging 2026-0042")],
        )
        .await;
    assert!(confirmed.starts_with("TR-000001 confirmed"), "{confirmed}");
    let again = rm
        .post(
            "/retention/transfers/TR-000001/confirm",
            &[("receipt", "again")],
        )
        .await;
    assert!(again.contains("already confirmed"), "{again}");
    let status: Value =
        serde_json::from_str(&vault_ok(&dir, &["retention", "status", "--json"])).expect("JSON");
    assert_eq!(status["transferred"], 3, "{status}");
    vault_refused(
        &dir,
        &["transfer", "sip", "--room", &room, "--out", out_arg],
        "is not empty",
    );
    let second = files.path().join("second");
    vault_refused(
        &dir,
        &[
            "transfer",
            "sip",
            "--room",
            &room,
            "--out",
            second.to_str().expect("path"),
        ],
        "holds no message to transfer",
    );

    // Transferred records go on a destruction list like expired ones, and
    // the approved list has its signed statement.
    let proposed = rm.propose_destruction("").await;
    assert!(proposed.starts_with("DL-000001 proposes 3"), "{proposed}");
    let approved = rm2.approve_destruction("DL-000001").await;
    assert!(approved.contains("3 record(s) destroyed"), "{approved}");
    let (code, statement) = rm.download("/retention/DL-000001/statement").await;
    assert!(code.is_success());
    let statement = String::from_utf8(statement).expect("text");
    for line in [
        "verklaring van vernietiging",
        "lijst DL-000001",
        "vastgesteld",
        "door @rm2:localhost",
        "vernietigd 3 archiefstuk(ken)",
        "categorie overgebracht naar de archiefdienst (TR-000001): 3 archiefstuk(ken)",
    ] {
        assert!(statement.contains(line), "{line:?} in:\n{statement}");
    }
    assert!(statement.contains("\n\n— "), "signed: {statement}");
    let printed = vault_ok(&dir, &["retention", "statement", "DL-000001"]);
    assert!(printed.contains("lijst DL-000001"), "{printed}");

    let steps = json_lines(&vault_ok(&dir, &["procedure", "--json"]));
    for action in [
        "vault transfer sip",
        "vault transfer confirm",
        "vault destruction statement",
    ] {
        assert!(
            steps.iter().any(|s| s["details"]["action"] == action),
            "{action} is in the audit trail"
        );
    }
    assert!(steps.iter().any(|s| s["action"] == "confirm_transfer"));
}
