//! The example passes; every kind of mistake names its field and line.

use std::path::{Path, PathBuf};

use archipel_provisioning::{Problem, check, check_str};

/// Read from the folder cargo or nextest names at run time, not the one
/// the binary was compiled in (a shared target folder may hold a binary
/// compiled in another checkout).
fn example() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .expect("run under cargo or nextest")
        .join("examples/bzk/provisioning.toml")
}

fn example_text() -> String {
    std::fs::read_to_string(example()).expect("example")
}

/// The problems of the example with `from` replaced by `to` (once).
fn problems_after(from: &str, to: &str) -> Vec<Problem> {
    let text = example_text();
    assert!(text.contains(from), "the example contains {from:?}");
    let changed = text.replacen(from, to, 1);
    let base = example().parent().expect("folder").to_owned();
    match check_str(&changed, Path::new("provisioning.toml"), &base) {
        Ok(_) => panic!("{from:?} -> {to:?} should be refused"),
        Err(problems) => problems.problems,
    }
}

/// The 1-based line of the first line of the example containing `needle`.
fn line_of(needle: &str) -> usize {
    example_text()
        .lines()
        .position(|l| l.contains(needle))
        .expect("needle in the example")
        + 1
}

fn assert_one(problems: &[Problem], field: &str, line: usize, says: &str) {
    assert_eq!(problems.len(), 1, "{problems:#?}");
    let problem = &problems[0];
    assert_eq!(problem.field, field, "{problem:#?}");
    assert_eq!(problem.line, Some(line), "{problem:#?}");
    assert!(problem.message.contains(says), "{problem:#?}");
}

#[test]
fn the_example_passes() {
    let provisioning = check(&example()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        provisioning.server.name.get_ref(),
        "bzk.rijksoverheid.example"
    );
    assert_eq!(provisioning.admins.len(), 2);
    assert_eq!(provisioning.federation.peers.len(), 2);
    assert_eq!(provisioning.push.gateways.len(), 1);
}

#[test]
fn a_push_gateway_must_be_a_notify_url_with_its_roots() {
    let gateway = "https://push.rijksoverheid.example/_matrix/push/v1/notify";
    for wrong in [
        "https://push.rijksoverheid.example/notify",
        "ftp://push.rijksoverheid.example/_matrix/push/v1/notify",
        "https:///_matrix/push/v1/notify",
    ] {
        let problems = problems_after(gateway, wrong);
        assert_one(
            &problems,
            "push.gateways[0]",
            line_of(gateway),
            "ending in /_matrix/push/v1/notify",
        );
    }
    let problems = problems_after(
        "ca_bundle = \"ca/rijks-root.pem\"\n\n# Previews",
        "\n# Previews",
    );
    assert!(
        problems
            .iter()
            .any(|p| p.field == "push.gateways[0]" && p.message.contains("push.ca_bundle")),
        "{problems:#?}"
    );
}

#[test]
fn a_preview_range_must_be_an_address_range() {
    let range = "allowed_ranges = [\"10.40.0.0/16\"]";
    for wrong in ["10.40.0.0", "10.40.0.0/33", "intranet/16", "::1/129"] {
        let problems = problems_after(range, &format!("allowed_ranges = [\"{wrong}\"]"));
        assert_one(
            &problems,
            "url_previews.allowed_ranges[0]",
            line_of(range),
            "an address range with its prefix length",
        );
    }
}

#[test]
fn the_management_network_is_an_address_range_on_a_free_port() {
    let networks = "networks = [\"10.20.0.0/24\"]";
    for wrong in ["10.20.0.0", "beheer/24", "10.20.0.0/40", "fd00::/64"] {
        let problems = problems_after(networks, &format!("networks = [\"{wrong}\"]"));
        assert_one(
            &problems,
            "management.networks[0]",
            line_of(networks),
            "an IPv4 address range with its prefix length",
        );
    }
    for taken in ["443", "8448", "8008"] {
        let problems = problems_after("port = 9443", &format!("port = {taken}"));
        assert_one(
            &problems,
            "management.port",
            line_of("port = 9443"),
            "the management port must be free",
        );
    }
}

#[test]
fn an_unknown_key_is_named() {
    let problems = problems_after("hostname = ", "hostnaam = ");
    assert_one(
        &problems,
        "machine.hostnaam",
        line_of("hostname = "),
        "unknown field",
    );
}

#[test]
fn a_wrong_type_is_named() {
    let problems = problems_after("version = 1", "version = \"one\"");
    assert_one(&problems, "version", line_of("version = 1"), "invalid type");
}

#[test]
fn an_invalid_server_name_is_named() {
    let problems = problems_after(
        "name = \"bzk.rijksoverheid.example\"",
        "name = \"bzk rijksoverheid\"",
    );
    assert_one(
        &problems,
        "server.name",
        line_of("name = \"bzk.rijksoverheid.example\""),
        "not a valid Matrix server name",
    );
}

#[test]
fn a_missing_required_field_is_named() {
    let problems = problems_after("[server]\n", "[servr]\n");
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert!(
        problems[0].field == "servr" || problems[0].message.contains("servr"),
        "{problems:#?}"
    );
    let problems = problems_after("hostname = \"archipel-bzk\"\n", "");
    assert_one(
        &problems,
        "machine.hostname",
        line_of("[machine]"),
        "missing field",
    );
}

#[test]
fn a_plaintext_password_is_refused() {
    let problems = problems_after(
        "password_hash = \"$argon2id",
        "password = \"Welkom01\"\n#password_hash = \"$argon2id",
    );
    assert_one(
        &problems,
        "admins[0].password",
        line_of("password_hash = \"$argon2id"),
        "plaintext passwords are refused",
    );
}

#[test]
fn a_malformed_mac_address_is_named() {
    let problems = problems_after("# mac = \"52:54:00:12:34:56\"", "mac = \"52:54:00:12:34\"");
    assert_one(
        &problems,
        "network.mac",
        line_of("# mac = "),
        "a MAC address",
    );
}

#[test]
fn several_problems_are_all_named_in_file_order() {
    let text = example_text()
        .replacen("hostname = \"archipel-bzk\"", "hostname = \"-bad-\"", 1)
        .replacen("gateway = \"10.20.0.1\"", "gateway = \"10.20.0\"", 1)
        .replacen(
            "setup_token = \"zV8q-3mTw-Lp9x-Rk2d-Hy7c\"",
            "setup_token = \"short\"",
            1,
        );
    let base = example().parent().expect("folder").to_owned();
    let problems = check_str(&text, Path::new("p.toml"), &base)
        .expect_err("refused")
        .problems;
    let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "machine.hostname",
            "network.gateway",
            "admins[1].setup_token"
        ]
    );
}

#[test]
fn files_are_named_inside_the_provisioning_folder() {
    // Copied to /etc/archipel/tls readable by the node: an absolute path
    // or `..` would copy any file the root can read (the vault's key).
    for outside in [
        "/var/lib/archipel/vault.key",
        "../../var/lib/archipel/vault.key",
        "ca/../../secret.pem",
    ] {
        let problems = problems_after(
            "acme_ca_bundle = \"ca/rijks-root.pem\"",
            &format!("acme_ca_bundle = \"{outside}\""),
        );
        assert_one(
            &problems,
            "tls.acme_ca_bundle",
            line_of("acme_ca_bundle = "),
            "no absolute path",
        );
    }
}

#[test]
fn files_must_be_there_and_tls_must_be_one_kind() {
    let problems = problems_after(
        "acme_ca_bundle = \"ca/rijks-root.pem\"",
        "acme_ca_bundle = \"ca/missing.pem\"",
    );
    assert_one(
        &problems,
        "tls.acme_ca_bundle",
        line_of("acme_ca_bundle = "),
        "is not there",
    );
    let problems = problems_after(
        "# certificate = \"tls/fullchain.pem\"",
        "certificate = \"tls/fullchain.pem\"",
    );
    assert!(
        problems
            .iter()
            .any(|p| p.field == "tls.acme_directory" && p.message.contains("not both")),
        "{problems:#?}"
    );
}
