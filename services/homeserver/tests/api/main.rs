//! In-process tests of the client API: the real router over a real RocksDB
//! store in a temporary folder, driven with raw HTTP requests. They cover the
//! endpoints the matrix-sdk end-to-end suite (in `appliance/tests`) does not
//! reach, quickly and with exact assertions on status codes and bodies.

mod archive_member;
mod bounds;
mod harness;
mod keys;
mod knocking;
mod push;
mod room_upgrade;
mod room_version_12;
mod rooms;
mod search;
mod sessions;
mod sliding_sync;
mod state;
mod url_preview;
mod user_data;
mod visibility;
