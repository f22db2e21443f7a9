//! Chats from outside the homeserver, read for import into the vault.

pub mod whatsapp;
