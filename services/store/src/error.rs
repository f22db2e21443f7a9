use std::path::PathBuf;

/// Errors from the storage layer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("opening database at {path}: {source}")]
    Open {
        path: PathBuf,
        source: rocksdb::Error,
    },
    #[error("database error: {0}")]
    Rocks(#[from] rocksdb::Error),
    #[error("table `{0}` is not declared")]
    UnknownColumn(String),
    #[error("tables `{0}` and `{1}` have the same key prefix: rename one")]
    PrefixClash(&'static str, &'static str),
    /// A follower found the layout of an earlier release, which only the
    /// database's owner can move to the current one.
    #[error(
        "{path} has the layout of an earlier release (table `{table}` in its own column family): start the node with this release first"
    )]
    EarlierLayout { path: PathBuf, table: &'static str },
    #[error("stored value in `{column}` is corrupt: {reason}")]
    Corrupt {
        column: &'static str,
        reason: String,
    },
    #[error("storage task failed: {0}")]
    Task(String),
    #[error("checkpoint target {0} already exists")]
    CheckpointExists(PathBuf),
    /// A sync of the write-ahead log failed once: what it held may not be on
    /// disk, and a later sync that succeeds would not prove otherwise. The
    /// database takes no more writes until it is opened again.
    #[error(
        "the disk failed to sync the database's log ({0}); no more writes until the node restarts"
    )]
    SyncFailed(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
