//! Stateless request handlers.

pub mod client;
