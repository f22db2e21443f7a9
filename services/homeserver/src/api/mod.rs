//! Stateless request handlers.

pub mod client;
pub mod federation;
