//! The release files that the build machines cannot build (docs/release.md):
//! nixpkgs cannot be fetched here, so the flake and its modules are parsed
//! with `nix-instantiate --parse` and the workspace files they name must
//! exist; the release tarball's extra files must exist too.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::Command;

fn workspace_root() -> PathBuf {
    archipel_test_vm::package_dir()
        .parent()
        .expect("the appliance crate is inside the workspace")
        .to_owned()
}

/// `flake.nix` and every `.nix` file under `nix/`.
fn nix_files(root: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, files: &mut Vec<PathBuf>) {
        let entries =
            std::fs::read_dir(dir).unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()));
        for entry in entries {
            let path = entry.expect("a folder entry").path();
            if path.is_dir() {
                walk(&path, files);
            } else if path.extension().is_some_and(|ext| ext == "nix") {
                files.push(path);
            }
        }
    }
    let mut files = vec![root.join("flake.nix")];
    walk(&root.join("nix"), &mut files);
    files.sort();
    files
}

/// Parses `file`; the parsed expression, with path literals made absolute.
fn parse(file: &Path) -> Result<String, String> {
    let output = match Command::new("nix-instantiate")
        .arg("--parse")
        .arg(file)
        .output()
    {
        Ok(output) => output,
        Err(e) if e.kind() == ErrorKind::NotFound => panic!(
            "nix-instantiate is not installed, so the Nix files cannot be checked: \
             `apt-get install nix-bin` provides it (.ci/run installs it)"
        ),
        Err(e) => panic!("running nix-instantiate --parse {}: {e}", file.display()),
    };
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

/// The path literals in a parsed expression that point into the workspace.
fn workspace_paths(parsed: &str, root: &Path) -> Vec<PathBuf> {
    let prefix = format!("{}/", root.display());
    let mut paths = Vec::new();
    let mut rest = parsed;
    while let Some(start) = rest.find(&prefix) {
        let literal = &rest[start..];
        let end = literal
            .find(|c: char| c.is_whitespace() || matches!(c, ')' | ';' | ']' | '"'))
            .unwrap_or(literal.len());
        paths.push(PathBuf::from(&literal[..end]));
        rest = &literal[end..];
    }
    paths
}

#[test]
fn nix_files_parse_and_name_existing_files() {
    let root = workspace_root();
    let files = nix_files(&root);
    for expected in [
        "flake.nix",
        "nix/package.nix",
        "nix/module.nix",
        "nix/image.nix",
    ] {
        assert!(
            files.contains(&root.join(expected)),
            "{expected} is missing; found {files:?}"
        );
    }

    let mut problems = Vec::new();
    for file in &files {
        match parse(file) {
            Ok(parsed) => {
                for path in workspace_paths(&parsed, &root) {
                    if !path.exists() {
                        problems.push(format!(
                            "{}: names {}, which does not exist",
                            file.display(),
                            path.display()
                        ));
                    }
                }
            }
            Err(error) => problems.push(format!("{}: {error}", file.display())),
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_tarballs_extra_files_exist() {
    let manifest = archipel_test_vm::package_dir().join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest).expect("read appliance/Cargo.toml");
    let manifest_toml: toml::Table = toml::from_str(&text).expect("appliance/Cargo.toml parses");
    let include = manifest_toml["package"]["metadata"]["dist"]["include"]
        .as_array()
        .expect("[package.metadata.dist] has an include list");
    assert!(!include.is_empty(), "the include list is empty");
    let missing: Vec<_> = include
        .iter()
        .map(|entry| entry.as_str().expect("an include entry is a path"))
        .filter(|path| !manifest.with_file_name(path).exists())
        .collect();
    assert!(
        missing.is_empty(),
        "[package.metadata.dist] include names files that do not exist (relative to appliance/): {missing:?}"
    );
}
