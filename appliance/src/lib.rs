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
