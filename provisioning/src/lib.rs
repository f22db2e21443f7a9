//! Archipel's provisioning file: what ministry IT puts on the configuration
//! partition (label `ARCHIPEL-CFG`) before the first boot.
//!
//! [`check`] reads and validates a file and names the field and line of
//! every mistake; the result, a [`Provisioning`], says everything the node
//! needs: its hostname, network and time servers, server name, TLS (an
//! ACME directory or certificate files), the CA bundle it trusts for
//! federation, its federation peers, the first administrators (password
//! hashes or one-time setup tokens, never passwords), backup recipients
//! and targets, and the retention policy. Paths in the file are relative
//! to the file itself (the configuration partition).
//!
//! The schema is in [`schema`]; the example in `examples/` passes [`check`].

pub mod schema;

mod check;

pub use check::{Problem, Problems, check, check_str, line_of};
pub use schema::Provisioning;
