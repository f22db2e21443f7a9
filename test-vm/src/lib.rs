//! Boots the Archipel appliance image under qemu and checks it from the
//! host, the way ministry IT meets it: a disk with a provisioning file on
//! its `ARCHIPEL-CFG` partition, a UEFI machine (OVMF) with or without a
//! TPM2 (swtpm), and clients that only see the ports the firewall opens.
//!
//! - [`image`]: the disk image, built by `image/build` around the release
//!   binary (or taken from `ARCHIPEL_IMAGE`), and per-machine copies that
//!   carry a provisioning folder.
//! - [`provisioning`]: the machines' provisioning folders.
//! - [`pki`]: a test certificate authority for the machines' TLS
//!   certificates and the federation CA bundle.
//! - [`vm`]: one machine under qemu (software emulation: KVM does not work
//!   on these hosts), its serial console on a pipe, power off over QMP.
//! - [`ports`]: loopback ports reserved across concurrent test processes.
//! - [`matrix`]: matrix-sdk clients that reach a machine through qemu's
//!   port forwarding, over TLS, by its server name.

pub mod image;
pub mod matrix;
pub mod pki;
pub mod ports;
pub mod provisioning;
pub mod vm;

use std::path::PathBuf;

/// The folder of the package whose test runs, as cargo and nextest tell a
/// test at run time. Not `env!("CARGO_MANIFEST_DIR")`: a shared target
/// folder may hold a test binary compiled in another checkout of the
/// workspace, and that would be its path.
pub fn package_dir() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .expect("tests run under cargo or nextest, which set CARGO_MANIFEST_DIR")
}

/// The workspace's root folder.
pub fn workspace_root() -> PathBuf {
    package_dir()
        .parent()
        .expect("test-vm lives in the workspace")
        .to_owned()
}

/// A folder for one test's machines (disks, consoles, logs) under
/// `ARCHIPEL_VM_DIR`, else `/var/tmp` (disks are hundreds of MB; `/tmp` may
/// be a small tmpfs).
pub fn scratch(prefix: &str) -> std::io::Result<tempfile::TempDir> {
    let root = std::env::var_os("ARCHIPEL_VM_DIR")
        .map_or_else(|| PathBuf::from("/var/tmp"), PathBuf::from);
    tempfile::Builder::new().prefix(prefix).tempdir_in(root)
}

/// Removes `scratch` after a passing test; keeps it, and says where, after
/// a failing one.
pub fn keep_on_error<T>(
    scratch: tempfile::TempDir,
    result: anyhow::Result<T>,
) -> anyhow::Result<T> {
    if result.is_err() {
        eprintln!("machine folders kept: {}", scratch.keep().display());
    }
    result
}
