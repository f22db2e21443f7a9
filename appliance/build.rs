//! How the `archipel` binary is linked.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        // Relative relocations packed (DT_RELR, glibc 2.36 and later:
        // bookworm's): a position-independent binary's 120,000 pointers
        // take a few kilobytes instead of 3 MB that the loader reads, and
        // keeps resident, at every start.
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}
