//! Where backups are stored: a flat namespace of objects behind one trait.
//!
//! A target promises one thing the backup's safety rests on: an object
//! becomes visible under its name only when [`ObjectWriter::commit`]
//! succeeds, complete. A writer dropped without commit (an error, a full
//! disk, a lost connection) leaves no object behind.

mod dir;
mod s3;

use std::io::{Read, Write};

pub use dir::DirTarget;
pub use s3::{S3Config, S3Target};

use crate::error::Result;

/// One object in a target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectInfo {
    pub name: String,
    pub size: u64,
}

pub trait Target: Send + Sync {
    /// How errors name this target, e.g. `directory /mnt/backup` or `s3://bucket/prefix`.
    fn describe(&self) -> String;

    /// Every complete object (not writes in progress).
    fn list(&self) -> Result<Vec<ObjectInfo>>;

    /// Starts writing an object; it appears only on commit.
    fn create(&self, name: &str) -> Result<Box<dyn ObjectWriter>>;

    /// Streams an object's bytes.
    fn open(&self, name: &str) -> Result<Box<dyn Read + Send>>;

    fn delete(&self, name: &str) -> Result<()>;
}

pub trait ObjectWriter: Write + Send {
    /// Makes the object durable and visible under its name.
    fn commit(self: Box<Self>) -> Result<()>;
}
