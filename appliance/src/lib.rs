//! The `archipel` binary's parts: the command line ([`cli`]) and what it
//! wires together. A library so that the fuzz targets (`appliance/fuzz`)
//! reach the admin socket's protocol; the binary is `main.rs`.

pub mod admin;
mod archive_device;
mod args;
mod backup;
mod capture;
pub mod cli;
mod config;
mod console;
mod decryption;
mod erasure;
mod local_console;
mod node;
mod ops;
mod provision;
mod reports;
mod serve;
mod sessions;
mod systemd;
mod tls;
mod users;
mod vault_cli;
mod witness;

pub use console::web::{Route as ConsoleRoute, route_table as console_routes};

/// Hands the free pages inside glibc's heap back to the system. glibc only
/// returns memory at the top of its heap on its own; RocksDB's freed blocks
/// and memtables in the middle stay resident until trimmed.
#[allow(unsafe_code)]
fn trim_malloc() {
    // SAFETY: malloc_trim is thread-safe (it takes the arena locks) and
    // only releases pages no allocation uses.
    unsafe { libc::malloc_trim(0) };
}
