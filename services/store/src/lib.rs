//! Archipel's storage layer.
//!
//! One RocksDB database holds every subsystem's data. Each subsystem declares
//! its column families in one table ([`ColumnSpec`]) and owns them; the store
//! knows nothing about Matrix, archives or backups. What it does provide:
//!
//! - typed access to a column family ([`Tree`]) with byte keys built by
//!   [`key`] and JSON or big-endian integer values,
//! - atomic write batches across column families ([`Batch`]) that are durable
//!   (fsynced through the write-ahead log) before [`Store::commit`] returns;
//!   RocksDB groups concurrent committers so they share one fsync,
//! - consistent on-disk checkpoints ([`Store::checkpoint`]) for backups.

mod batch;
mod error;
pub mod key;
mod store;
mod tree;

pub use batch::Batch;
pub use error::{Error, Result};
pub use store::{ColumnSpec, Store, StoreOptions};
pub use tree::Tree;
