//! Archipel's storage layer.
//!
//! One RocksDB database holds every subsystem's data. Each subsystem declares
//! its tables in one list ([`ColumnSpec`]) and owns them; the store knows
//! nothing about Matrix, archives or backups. Tables with the same options
//! share a RocksDB column family, each under its own key prefix. What it
//! does provide:
//!
//! - typed access to a table ([`Tree`]) with byte keys built by
//!   [`key`] and JSON or big-endian integer values,
//! - atomic write batches across tables ([`Batch`]) that are durable
//!   (the write-ahead log fsynced) before [`Store::commit`] returns; concurrent
//!   committers share one fsync (group commit, [`Store::sync`]),
//! - consistent on-disk checkpoints ([`Store::checkpoint`]) for backups,
//!   and hard-linked copies of file trees to go with them ([`link_tree`]),
//! - small files made once (keys, the server name) that a power cut can
//!   never leave empty or half written ([`create_durably`]).

mod batch;
mod error;
mod files;
pub mod key;
mod store;
mod tree;

pub use batch::Batch;
pub use error::{Error, Result};
pub use files::{create_durably, link_tree, replace_durably};
pub use store::{ColumnSpec, Store, StoreOptions, Written};
pub use tree::{Row, Tree};
