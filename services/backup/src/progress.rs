//! Progress reporting. The library never prints; the CLI turns these calls
//! into a progress bar (indicatif) or JSON lines.

/// What is being measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Reading the sources into a new backup.
    Create,
    /// Decrypting a backup and checking every entry.
    Verify,
    /// Decrypting, checking and writing a backup into a destination.
    Restore,
}

/// Receives progress in bytes of file content (before compression). Calls
/// come from the thread that runs the operation.
pub trait Progress: Sync {
    /// The operation starts; `total_bytes` is the file content it will process.
    fn begin(&self, _phase: Phase, _total_bytes: u64) {}
    /// `bytes` more bytes of file content were processed.
    fn advance(&self, _bytes: u64) {}
    /// The entry at `path` (relative to the backup's root) is next.
    fn entry(&self, _path: &str) {}
}

/// Reports nothing.
pub struct NoProgress;

impl Progress for NoProgress {}
