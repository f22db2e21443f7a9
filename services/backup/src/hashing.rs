//! SHA-256 and byte counts taken while data streams past, so that nothing
//! is read twice.

use std::io::{self, Read, Write};

use sha2::{Digest, Sha256};

use crate::manifest::hex;
use crate::progress::Progress;

/// Hashes and counts what is read through it, and remembers whether the
/// inner reader failed (to tell a source's error from the pipeline's).
pub struct HashingReader<'p, R> {
    inner: R,
    hasher: Sha256,
    count: u64,
    progress: Option<&'p dyn Progress>,
    failed: Option<io::Error>,
}

impl<'p, R: Read> HashingReader<'p, R> {
    pub fn new(inner: R, progress: Option<&'p dyn Progress>) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            count: 0,
            progress,
            failed: None,
        }
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    /// The inner reader's own error, if it failed.
    pub fn take_failure(&mut self) -> Option<io::Error> {
        self.failed.take()
    }

    pub fn inner_mut(&mut self) -> &mut R {
        &mut self.inner
    }

    pub fn finish(self) -> (u64, String) {
        (self.count, hex(&self.hasher.finalize()))
    }
}

impl<R: Read> Read for HashingReader<'_, R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        match self.inner.read(out) {
            Ok(read) => {
                self.hasher.update(&out[..read]);
                self.count += read as u64;
                if let Some(progress) = self.progress {
                    progress.advance(read as u64);
                }
                Ok(read)
            }
            Err(error) => {
                let copy = io::Error::new(error.kind(), error.to_string());
                self.failed = Some(error);
                Err(copy)
            }
        }
    }
}

/// Counts the bytes that pass (the encrypted archive, in either
/// direction) and keeps the inner reader's or writer's own error (a full
/// disk, a failed upload or download) for the report.
pub struct Counted<T> {
    inner: T,
    count: u64,
    failed: Option<io::Error>,
}

impl<T> Counted<T> {
    pub fn new(inner: T) -> Self {
        Self {
            inner,
            count: 0,
            failed: None,
        }
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn take_failure(&mut self) -> Option<io::Error> {
        self.failed.take()
    }

    pub fn into_inner(self) -> T {
        self.inner
    }

    fn keep(&mut self, error: io::Error) -> io::Error {
        let copy = io::Error::new(error.kind(), error.to_string());
        self.failed = Some(error);
        copy
    }
}

impl<W: Write> Write for Counted<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        match self.inner.write(data) {
            Ok(written) => {
                self.count += written as u64;
                Ok(written)
            }
            Err(error) => Err(self.keep(error)),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush().map_err(|error| self.keep(error))
    }
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        match self.inner.read(out) {
            Ok(read) => {
                self.count += read as u64;
                Ok(read)
            }
            Err(error) => Err(self.keep(error)),
        }
    }
}
