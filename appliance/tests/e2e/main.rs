//! End-to-end tests: each test starts the real `archipel` binary on its own
//! data directory and port, and drives it over HTTP with the matrix-sdk crate
//! (and, where exact status codes or stored state matter, with raw requests).

mod browser;
mod client;
mod harness;
mod olm_device;

mod acme;
mod archive_member;
mod backup;
mod bridges;
mod chat;
mod cli;
mod console;
mod console_client;
mod console_exports;
mod console_operator;
mod crash;
mod encryption;
mod errors;
mod federation;
mod federation_e2ee;
mod federation_edus;
mod federation_witness;
mod imports;
mod lifecycle;
mod load;
mod local_console;
mod mautrix;
mod media;
mod metrics;
mod provision;
mod sliding_sync;
mod synapse;
mod transfers;
mod vault;
mod woo;
