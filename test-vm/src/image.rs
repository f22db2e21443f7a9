//! The appliance disk image and the per-machine disks made from it.

use std::fs;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail, ensure};
use nix::fcntl::{Flock, FlockArg};

use crate::workspace_root;

/// The image's binary is the release tarball's: built as `dist build`
/// builds it (docs/release.md), so one optimised build serves both.
const PROFILE: &str = "dist";
const TARGET: &str = "x86_64-unknown-linux-gnu";

/// A built image: `archipel.raw` and where its configuration partition's
/// file system starts.
pub struct Image {
    pub raw: PathBuf,
    pub cfg_offset: u64,
}

impl Image {
    /// The image named by `ARCHIPEL_IMAGE` (an `archipel.raw` with its
    /// `archipel.cfg-offset` beside it), else the one `image/build` makes in
    /// `ARCHIPEL_IMAGE_DIR` (default `/var/tmp/archipel-image`) around the
    /// release binary, rebuilt when the binary or `image/` changed.
    pub fn get() -> Result<Self> {
        if let Some(raw) = std::env::var_os("ARCHIPEL_IMAGE") {
            return Self::at(PathBuf::from(raw));
        }
        let out = std::env::var_os("ARCHIPEL_IMAGE_DIR")
            .map_or_else(|| PathBuf::from("/var/tmp/archipel-image"), PathBuf::from);
        fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
        let _lock = lock(&out)?;
        let binary = release_binary()?;
        let key = format!("{:016x}\n", inputs_hash(&binary)?);
        let stamp = out.join("test-vm.key");
        let raw = out.join("archipel.raw");
        if !raw.exists() || fs::read_to_string(&stamp).ok().as_deref() != Some(&key) {
            build(&out, &binary)?;
            fs::write(&stamp, key)?;
        }
        Self::at(raw)
    }

    fn at(raw: PathBuf) -> Result<Self> {
        let offset_file = raw.with_file_name("archipel.cfg-offset");
        let cfg_offset = fs::read_to_string(&offset_file)
            .with_context(|| format!("reading {}", offset_file.display()))?
            .trim()
            .parse()
            .with_context(|| format!("{} holds no number", offset_file.display()))?;
        ensure!(raw.exists(), "no image at {}", raw.display());
        Ok(Self { raw, cfg_offset })
    }

    /// A copy of the image at `disk` with `provisioning`'s files on its
    /// `ARCHIPEL-CFG` partition, as ministry IT would put them there.
    pub fn disk_with(&self, provisioning: &Path, disk: &Path) -> Result<()> {
        {
            // Not while another test rebuilds the image.
            let _lock = lock(self.raw.parent().unwrap_or(Path::new("/")))?;
            run(Command::new("cp")
                .arg("--sparse=always")
                .arg(&self.raw)
                .arg(disk))?;
        }
        let mut mcopy = Command::new("mcopy");
        mcopy
            .env("MTOOLS_SKIP_CHECK", "1")
            .arg("-i")
            .arg(format!("{}@@{}", disk.display(), self.cfg_offset))
            .args(["-s", "-D", "o"]);
        for entry in fs::read_dir(provisioning)? {
            mcopy.arg(entry?.path());
        }
        run(mcopy.arg("::")).context("putting the provisioning files on ARCHIPEL-CFG (mtools)")
    }
}

/// Holds `dir`'s build lock until dropped.
fn lock(dir: &Path) -> Result<Flock<fs::File>> {
    let path = dir.join(".test-vm.lock");
    let file = fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
    Flock::lock(file, FlockArg::LockExclusive)
        .map_err(|(_, e)| anyhow::anyhow!("locking {}: {e}", path.display()))
}

/// The release `archipel` binary: `ARCHIPEL_BINARY`, else built by cargo
/// the way `dist build` builds it (a no-op when that is up to date; about
/// 20 minutes cold on 2 cores).
pub fn release_binary() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("ARCHIPEL_BINARY") {
        return Ok(PathBuf::from(path));
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    eprintln!("test-vm: building the release binary (cargo build --profile {PROFILE})");
    let mut build = Command::new(&cargo);
    // A test runs with the variables cargo sets for its package
    // (CARGO_PKG_NAME, CARGO_MANIFEST_DIR...). Build scripts that watch
    // them in cargo's own environment (ring's, through
    // rerun-if-env-changed) would see them changed since `dist build`
    // made the binary from a shell, and half the build would run again.
    for (name, _) in std::env::vars_os() {
        if name.to_str().is_some_and(set_by_cargo_for_a_package) {
            build.env_remove(name);
        }
    }
    // Its progress shows on the test's output.
    let status = build
        .current_dir(workspace_root())
        .args([
            "build",
            "--locked",
            "--profile",
            PROFILE,
            "--target",
            TARGET,
            "-p",
            "archipel",
        ])
        .status()?;
    ensure!(
        status.success(),
        "building the release binary failed ({status})"
    );
    let metadata = Command::new(&cargo)
        .current_dir(workspace_root())
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .output()?;
    let metadata: serde_json::Value = serde_json::from_slice(&metadata.stdout)?;
    let target = metadata["target_directory"]
        .as_str()
        .context("cargo metadata names no target directory")?;
    Ok(Path::new(target)
        .join(TARGET)
        .join(PROFILE)
        .join("archipel"))
}

/// Whether cargo sets the environment variable `name` for a package's
/// build scripts, compilation, or tests and binaries.
fn set_by_cargo_for_a_package(name: &str) -> bool {
    ["CARGO_PKG_", "CARGO_MANIFEST_", "CARGO_BIN_"]
        .iter()
        .any(|prefix| name.starts_with(prefix))
        || matches!(
            name,
            "CARGO_CRATE_NAME"
                | "CARGO_PRIMARY_PACKAGE"
                | "CARGO_TARGET_TMPDIR"
                | "CARGO_RUSTC_CURRENT_DIR"
                | "OUT_DIR"
        )
}

/// What the image is made of: the binary and everything under `image/`.
fn inputs_hash(binary: &Path) -> Result<u64> {
    let mut hasher = DefaultHasher::new();
    let mut files = vec![binary.to_owned()];
    let mut dirs = vec![workspace_root().join("image")];
    while let Some(dir) = dirs.pop() {
        for entry in fs::read_dir(&dir)? {
            let path = entry?.path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files.sort();
    for file in files {
        file.hash(&mut hasher);
        if file.is_symlink() {
            fs::read_link(&file)?.hash(&mut hasher);
            continue;
        }
        let mut bytes = Vec::new();
        fs::File::open(&file)
            .and_then(|mut f| f.read_to_end(&mut bytes))
            .with_context(|| format!("reading {}", file.display()))?;
        bytes.hash(&mut hasher);
    }
    Ok(hasher.finish())
}

fn build(out: &Path, binary: &Path) -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!(
            "building the image needs root (mmdebstrap, chroot); run the VM tests as root, \
             or build it once with `sudo image/build --binary {}` and set ARCHIPEL_IMAGE",
            binary.display()
        );
    }
    let log = out.join("test-vm-build.log");
    eprintln!(
        "test-vm: building the image in {} (log: {})",
        out.display(),
        log.display()
    );
    let status = Command::new(workspace_root().join("image/build"))
        .arg("--out")
        .arg(out)
        .arg("--binary")
        .arg(binary)
        .stdout(fs::File::create(&log)?)
        .stderr(fs::File::options().append(true).open(&log)?)
        .status()
        .context("running image/build")?;
    if !status.success() {
        let text = fs::read_to_string(&log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(30).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        bail!("image/build failed ({status}):\n{}", tail.join("\n"));
    }
    Ok(())
}

/// Runs a command, failing with its output if it fails.
pub(crate) fn run(command: &mut Command) -> Result<()> {
    let output = command
        .output()
        .with_context(|| format!("running {command:?}"))?;
    if !output.status.success() {
        bail!(
            "{command:?} failed ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}
