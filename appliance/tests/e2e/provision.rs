//! `archipel provision check`: the shipped example passes; mistakes in the
//! tables handed to the node's configuration are named with their table's
//! line, and the exit status says so.

use std::path::Path;

use crate::harness::run_archipel;

fn example() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../provisioning/examples/bzk/provisioning.toml")
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
