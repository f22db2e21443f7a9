//! `archipel provision check`: the shipped example passes; mistakes in the
//! tables handed to the node's configuration are named with their table's
//! line, and the exit status says so.

use std::path::Path;

use crate::harness::{json_lines, run_archipel};

fn example() -> std::path::PathBuf {
    archipel_test_vm::package_dir().join("../provisioning/examples/bzk/provisioning.toml")
}

#[test]
fn the_example_passes_and_node_tables_are_checked_as_the_node_reads_them() {
    let example = example();
    let output = run_archipel(&["provision", "check", example.to_str().expect("path")]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir(dir.path().join("ca")).expect("ca");
    std::fs::copy(
        example.parent().expect("folder").join("ca/rijks-root.pem"),
        dir.path().join("ca/rijks-root.pem"),
    )
    .expect("copy the CA bundle");
    let text = std::fs::read_to_string(&example).expect("example");
    let bad = text
        .replacen("every_hours = 24", "every_hours = 5", 1)
        .replacen(
            "destroy_after_years = 10",
            "destroy_after_years = \"ten\"",
            1,
        );
    let file = dir.path().join("provisioning.toml");
    std::fs::write(&file, &bad).expect("write");
    let output = run_archipel(&["provision", "check", file.to_str().expect("path"), "--json"]);
    assert!(!output.status.success());
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    let line_of = |needle: &str| bad.lines().position(|l| l == needle).expect(needle) + 1;
    assert_eq!(report["problems"][0]["field"], "backup", "{report}");
    assert_eq!(
        report["problems"][0]["line"],
        line_of("[backup]"),
        "{report}"
    );
    assert!(
        report["problems"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("every_hours")),
        "{report}"
    );
    assert_eq!(report["problems"][1]["field"], "retention", "{report}");
    assert_eq!(
        report["problems"][1]["line"],
        line_of("[retention]"),
        "{report}"
    );
}

/// A copy of the example (with its CA file) in a folder of its own, to edit.
fn example_copy() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir(dir.path().join("ca")).expect("ca");
    let example = example();
    std::fs::copy(
        example.parent().expect("folder").join("ca/rijks-root.pem"),
        dir.path().join("ca/rijks-root.pem"),
    )
    .expect("copy the CA bundle");
    let file = dir.path().join("provisioning.toml");
    std::fs::copy(&example, &file).expect("copy the example");
    (dir, file)
}

/// `archipel provision apply FILE --root ROOT --json`: its report, or its error.
fn apply(file: &Path, root: &Path) -> Result<serde_json::Value, String> {
    let output = run_archipel(&[
        "provision",
        "apply",
        file.to_str().expect("path"),
        "--root",
        root.to_str().expect("path"),
        "--json",
    ]);
    if output.status.success() {
        Ok(serde_json::from_slice(&output.stdout).expect("a JSON report"))
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

/// What changed, by path or account.
fn changed(report: &serde_json::Value) -> Vec<String> {
    report["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .filter(|c| c["outcome"] != "unchanged")
        .map(|c| c["what"].as_str().expect("what").to_owned())
        .collect()
}

/// Every file under `root` (but the databases) with its contents and mode.
fn tree(root: &Path) -> std::collections::BTreeMap<std::path::PathBuf, (Vec<u8>, u32)> {
    use std::os::unix::fs::PermissionsExt;
    crate::harness::files_under(root)
        .into_iter()
        .filter(|path| !path.to_string_lossy().contains("/db/"))
        .map(|path| {
            let mode = std::fs::metadata(&path)
                .expect("metadata")
                .permissions()
                .mode();
            let contents = std::fs::read(&path).expect("read");
            (path, (contents, mode & 0o7777))
        })
        .collect()
}

/// A configuration for the node `apply` provisioned under `root`, on loopback.
fn node_config(root: &Path) -> String {
    format!(
        "[node]\ndata_dir = \"{}\"\nlisten = \"127.0.0.1:0\"\n[homeserver]\nserver_name = \"bzk.rijksoverheid.example\"\n\
         [vault]\nkey_file = \"{}\"\n",
        root.join("var/lib/archipel").display(),
        root.join("etc/archipel/vault.key").display()
    )
}

#[test]
fn apply_provisions_the_system_and_a_second_apply_changes_nothing() {
    use std::os::unix::fs::PermissionsExt;
    let (dir, file) = example_copy();
    let root = dir.path().join("root");

    let first = apply(&file, &root).expect("the example applies");
    let made = changed(&first);
    for path in [
        "/etc/archipel/archipel.toml",
        "/etc/archipel/tls/acme-ca.pem",
        "/etc/archipel/tls/peers-ca.pem",
        "/etc/archipel/tls/push-ca.pem",
        "/etc/archipel/vault.key",
        "/etc/archipel/system/hostname",
        "/etc/archipel/system/20-archipel.network",
        "/etc/archipel/system/50-archipel-time.conf",
        "/etc/archipel/system/management.nft",
        "administrator @beheer:bzk.rijksoverheid.example",
        "administrator @beheer-nood:bzk.rijksoverheid.example",
    ] {
        assert!(made.iter().any(|m| m == path), "{path} not in {made:?}");
    }
    let read = |path: &str| std::fs::read_to_string(root.join(path)).expect(path);
    let config = read("etc/archipel/archipel.toml");
    for expected in [
        "server_name = \"bzk.rijksoverheid.example\"",
        "directory = \"https://acme.bzk.example/directory\"",
        "ca_bundle = \"/etc/archipel/tls/acme-ca.pem\"",
        "server_name = \"minbuza.rijksoverheid.example\"",
        "address = \"10.30.0.5:8448\"",
        "transfer_years = 20",
        "every_hours = 24",
        "gateways = [\"https://push.rijksoverheid.example/_matrix/push/v1/notify\"]",
        "ca_bundle = \"/etc/archipel/tls/push-ca.pem\"",
        "allowed_ranges = [\"10.40.0.0/16\"]",
        "[console]\nlisten = \"0.0.0.0:9443\"",
    ] {
        assert!(config.contains(expected), "{expected} not in\n{config}");
    }
    // The firewall admits the management network to the console's port.
    let rules = read("etc/archipel/system/management.nft");
    for expected in [
        "flush set inet archipel management\n",
        "add element inet archipel management { 10.20.0.0/24 }",
        "add element inet archipel management_port { 9443 }",
    ] {
        assert!(rules.contains(expected), "{expected} not in\n{rules}");
    }
    assert_eq!(read("etc/archipel/system/hostname"), "archipel-bzk\n");
    let network = read("etc/archipel/system/20-archipel.network");
    assert!(
        network.contains("Address=10.20.0.5/24")
            && network.contains("Gateway=10.20.0.1")
            && network.contains("DNS=10.20.0.3"),
        "{network}"
    );
    assert!(
        read("etc/archipel/system/50-archipel-time.conf")
            .contains("NTP=ntp1.bzk.example ntp2.bzk.example")
    );
    let key_mode = std::fs::metadata(root.join("etc/archipel/vault.key"))
        .expect("the vault key")
        .permissions()
        .mode();
    assert_eq!(key_mode & 0o777, 0o600);
    // The written configuration is what the node reads.
    let output = run_archipel(&[
        "check-config",
        "--config",
        root.join("etc/archipel/archipel.toml")
            .to_str()
            .expect("path"),
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    // Again: nothing changes, not a byte, not a mode.
    let before = tree(&root);
    let second = apply(&file, &root).expect("applies again");
    assert_eq!(second["changed"], 0, "{second}");
    assert!(changed(&second).is_empty(), "{second}");
    assert_eq!(tree(&root), before);

    // The administrators: one with the hash's password, one pending setup.
    let config_file = dir.path().join("node.toml");
    std::fs::write(&config_file, node_config(&root)).expect("write");
    let output = run_archipel(&[
        "user",
        "list",
        "--json",
        "--config",
        config_file.to_str().expect("path"),
    ]);
    let users = String::from_utf8_lossy(&output.stdout);
    assert!(
        users.contains("\"user_id\":\"@beheer:bzk.rijksoverheid.example\"")
            && users.contains("\"admin\":true"),
        "{users}"
    );
    assert!(!users.contains("beheer-nood"), "{users}");
    // The vault's log records each administrator once: the second apply
    // created nothing and recorded nothing.
    let output = run_archipel(&[
        "vault",
        "procedure",
        "--json",
        "--config",
        config_file.to_str().expect("path"),
    ]);
    let procedure = String::from_utf8_lossy(&output.stdout);
    let created: Vec<&str> = json_lines(&procedure)
        .into_iter()
        .filter(|step| step["action"] == "admin_command")
        .map(|step| {
            assert_eq!(step["details"]["outcome"], "done", "{step}");
            match step["subject"].as_str() {
                Some(s) if s.contains("@beheer:") => "beheer",
                Some(s) if s.contains("@beheer-nood:") => "beheer-nood",
                _ => panic!("an unexpected step: {step}"),
            }
        })
        .collect();
    assert_eq!(created, ["beheer", "beheer-nood"], "{procedure}");

    // One edit: the files it touches change, and only those.
    let text = std::fs::read_to_string(&file).expect("read");
    std::fs::write(
        &file,
        text.replace("\"ntp2.bzk.example\"", "\"ntp3.bzk.example\""),
    )
    .expect("write");
    let third = apply(&file, &root).expect("applies the edit");
    let mut edited = changed(&third);
    edited.sort();
    assert_eq!(
        edited,
        [
            "/etc/archipel/archipel.toml",
            "/etc/archipel/system/50-archipel-time.conf"
        ],
        "{third}"
    );

    // The network for one NIC only: the others keep the image's DHCP.
    let text = std::fs::read_to_string(&file).expect("read");
    std::fs::write(
        &file,
        text.replace(
            "# mac = \"52:54:00:12:34:56\"",
            "mac = \"52:54:00:AB:34:56\"",
        ),
    )
    .expect("write");
    let fourth = apply(&file, &root).expect("applies the edit");
    let mut edited = changed(&fourth);
    edited.sort();
    assert_eq!(
        edited,
        [
            "/etc/archipel/archipel.toml",
            "/etc/archipel/system/20-archipel.network"
        ],
        "{fourth}"
    );
    let network = read("etc/archipel/system/20-archipel.network");
    assert!(
        network.contains("MACAddress=52:54:00:ab:34:56") && !network.contains("Name="),
        "{network}"
    );
}

#[test]
fn a_bad_file_or_another_server_name_changes_nothing() {
    let (dir, file) = example_copy();
    let root = dir.path().join("root");
    let text = std::fs::read_to_string(&file).expect("read");

    // A mistake: refused with its line, and nothing at all is written.
    std::fs::write(&file, text.replace("hostname = ", "hostnaem = ")).expect("write");
    let err = apply(&file, &root).expect_err("refused");
    assert!(
        err.contains("hostnaem") && err.contains("nothing was applied"),
        "{err}"
    );
    assert!(!root.exists());

    // A file the node would refuse as a whole: named, nothing written.
    std::fs::write(
        &file,
        text.replace("address = \"10.30.0.5:8448\"", "address = \"minbuza:8448\""),
    )
    .expect("write");
    let err = apply(&file, &root).expect_err("refused");
    assert!(err.contains("federation.peers[1].address"), "{err}");
    assert!(!root.exists());

    // Provisioned once; then a file for another server refuses to touch it.
    std::fs::write(&file, &text).expect("write");
    apply(&file, &root).expect("applies");
    let before = tree(&root);
    std::fs::write(
        &file,
        text.replace(
            "name = \"bzk.rijksoverheid.example\"",
            "name = \"ezk.rijksoverheid.example\"",
        )
        .replace("hostname = \"archipel-bzk\"", "hostname = \"archipel-ezk\""),
    )
    .expect("write");
    let err = apply(&file, &root).expect_err("refused");
    assert!(
        err.contains("cannot change") && err.contains("bzk.rijksoverheid.example"),
        "{err}"
    );
    assert_eq!(tree(&root), before);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_setup_token_registers_its_administrator_once() {
    use crate::client::Api;
    use reqwest::StatusCode;

    let (dir, file) = example_copy();
    let root = dir.path().join("root");
    apply(&file, &root).expect("the example applies");
    let applied_root = root.clone();
    let server = crate::harness::TestServer::start_configured("bzk.rijksoverheid.example", |_| {
        node_config(&applied_root)
    })
    .await;
    let api = Api::new(server.url());
    const TOKEN: &str = "zV8q-3mTw-Lp9x-Rk2d-Hy7c";
    // The token is for beheer-nood only.
    api.register_with_token("mallory", TOKEN)
        .await
        .assert_error(StatusCode::FORBIDDEN, "M_FORBIDDEN");
    // Its holder chooses the password and is an administrator.
    let registered = api.register_with_token("beheer-nood", TOKEN).await.ok();
    assert_eq!(
        registered["user_id"],
        "@beheer-nood:bzk.rijksoverheid.example"
    );
    // Once.
    api.register_with_token("beheer-nood2", TOKEN)
        .await
        .assert_error(StatusCode::FORBIDDEN, "M_FORBIDDEN");
    let output = run_archipel(&[
        "user",
        "list",
        "--json",
        "--config",
        server.root().join("archipel.toml").to_str().expect("path"),
    ]);
    let users = String::from_utf8_lossy(&output.stdout);
    let line = users
        .lines()
        .find(|l| l.contains("@beheer-nood:"))
        .unwrap_or_else(|| panic!("{users}"));
    assert!(line.contains("\"admin\":true"), "{line}");
    // And another apply does not recreate the token or touch the account.
    let again = apply(&file, &root).expect("applies on the running node");
    assert_eq!(again["changed"], 0, "{again}");
    assert!(server.log().contains("provision apply: administrators"));
    assert!(!server.log().contains(TOKEN), "no token in the log");
}

#[test]
fn a_bridge_ships_in_the_provisioning_file_and_a_broken_one_is_refused() {
    let (dir, file) = example_copy();
    let registration = "id: telegram\n\
        url: http://127.0.0.1:29317\n\
        as_token: as_0123456789abcdef0123456789abcdef\n\
        hs_token: hs_0123456789abcdef0123456789abcdef\n\
        sender_localpart: telegrambridge\n\
        namespaces:\n  users:\n  - exclusive: true\n    regex: '@telegram_.*:bzk\\.example'\n";
    std::fs::write(dir.path().join("telegram.yaml"), registration).expect("write");
    let text = std::fs::read_to_string(&file).expect("the example");
    let with_bridge = format!("{text}\n[[bridges]]\nregistration = \"telegram.yaml\"\n");
    std::fs::write(&file, &with_bridge).expect("write");
    let root = dir.path().join("root");
    apply(&file, &root).expect("a provisioning file with a bridge applies");
    let config = std::fs::read_to_string(root.join("etc/archipel/archipel.toml")).expect("config");
    assert!(
        config.contains("appservices = [\"/etc/archipel/bridges/bridge-0.yaml\"]"),
        "{config}"
    );
    let copied = root.join("etc/archipel/bridges/bridge-0.yaml");
    assert_eq!(
        std::fs::read_to_string(&copied).expect("copied"),
        registration
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&copied)
            .expect("copied")
            .permissions()
            .mode()
            & 0o777,
        0o600,
        "its tokens are the node's alone"
    );

    // A registration the node could not read stops the check, by field and
    // line, before anything is written.
    std::fs::write(
        dir.path().join("telegram.yaml"),
        registration.replace("'@telegram_.*:bzk\\.example'", "'@telegram_(:x'"),
    )
    .expect("write");
    let output = run_archipel(&["provision", "check", file.to_str().expect("path"), "--json"]);
    assert!(!output.status.success());
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    let problem = &report["problems"][0];
    assert_eq!(problem["field"], "bridges[0].registration", "{report}");
    assert_eq!(
        problem["line"],
        with_bridge
            .lines()
            .position(|l| l == "registration = \"telegram.yaml\"")
            .expect("the line")
            + 1
    );
    assert!(
        problem["message"]
            .as_str()
            .is_some_and(|m| m.contains("namespaces.users[0].regex")),
        "{report}"
    );
    assert!(
        !report.to_string().contains("0123456789abcdef"),
        "no token in {report}"
    );
}
