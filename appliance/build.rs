//! How the `archipel` binary is linked.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=RUSTC_LINKER");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("linux") {
        return;
    }
    // Relative relocations packed (DT_RELR, glibc 2.36 and later:
    // bookworm's): a position-independent binary's 120,000 pointers take a
    // few kilobytes instead of 3 MB that the loader reads, and keeps
    // resident, at every start.
    println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");

    // The functions a node runs side by side at the start of the code
    // (layout/hot-functions, docs/release.md). Release builds only, and
    // only with the lld that rustc ships and links with on x86_64 Linux:
    // other linkers do not know the option.
    if std::env::var("PROFILE").as_deref() == Ok("release") && links_with_rust_lld() {
        let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
        // What callgrind saw run, then what only a native run did, as one
        // list.
        let mut names = String::new();
        for name in ["hot-functions", "native-functions"] {
            let list = Path::new(&dir).join("layout").join(name);
            println!("cargo:rerun-if-changed={}", list.display());
            names += &std::fs::read_to_string(&list)
                .unwrap_or_else(|e| panic!("{} is unreadable: {e}", list.display()));
            // A file without a final newline would join its last name to
            // the next file's first.
            if !names.ends_with('\n') {
                names.push('\n');
            }
        }
        let out = std::env::var("OUT_DIR").expect("cargo sets OUT_DIR");
        let ordering = Path::new(&out).join("symbol-ordering");
        std::fs::write(&ordering, names).expect("OUT_DIR is writable");
        println!(
            "cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={}",
            ordering.display()
        );
        // A listed function this build does not have (the list is older
        // than the code) is no error: it only costs memory.
        println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
    }
    if std::env::var("PROFILE").as_deref() == Ok("release") {
        link_static_libstdcxx();
    }
}

/// Links RocksDB's C++ standard library into the binary, in release
/// builds: the shared one is 2 MB of code and data, of which the loader
/// relocates and the process keeps resident about 1.5 MiB, where the few
/// functions RocksDB calls take a few pages, laid out with the rest
/// (layout/hot-functions). RocksDB's build asks for `-lstdc++`; the linker
/// takes the first `libstdc++` it finds in its search folders, so a
/// folder of our own that holds only the archive comes first. Without
/// the archive (another toolchain), the shared library is linked as
/// before. The GCC Runtime Library Exception allows this.
fn link_static_libstdcxx() {
    let cxx = std::env::var("CXX").unwrap_or_else(|_| "c++".into());
    let Ok(output) = Command::new(cxx)
        .arg("-print-file-name=libstdc++.a")
        .output()
    else {
        return;
    };
    let archive = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    // Without the archive the compiler prints the bare name.
    if !archive.is_absolute() || !archive.is_file() {
        return;
    }
    let out = std::env::var("OUT_DIR").expect("cargo sets OUT_DIR");
    let dir = Path::new(&out).join("static-libstdc++");
    let link = dir.join("libstdc++.a");
    let made = std::fs::create_dir_all(&dir)
        .and_then(|()| match std::fs::remove_file(&link) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        })
        .and_then(|()| std::os::unix::fs::symlink(&archive, &link));
    if made.is_ok() {
        println!("cargo:rustc-link-search=native={}", dir.display());
    }
}

/// Whether rustc links through its own lld: it does on x86_64 Linux when
/// it ships one (`gcc-ld/ld.lld` in its sysroot), unless a linker is
/// configured instead.
fn links_with_rust_lld() -> bool {
    if std::env::var_os("RUSTC_LINKER").is_some() {
        return false;
    }
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let Ok(target) = std::env::var("TARGET") else {
        return false;
    };
    let Ok(output) = Command::new(rustc).args(["--print", "sysroot"]).output() else {
        return false;
    };
    let sysroot = String::from_utf8_lossy(&output.stdout);
    Path::new(sysroot.trim())
        .join("lib/rustlib")
        .join(target)
        .join("bin/gcc-ld/ld.lld")
        .exists()
}
