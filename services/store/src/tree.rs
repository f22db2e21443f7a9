use std::sync::Arc;

use rocksdb::{DB, DBRawIteratorWithThreadMode, ReadOptions};
use serde::de::DeserializeOwned;

use crate::{Error, Result, store::Inner};

/// A key and its value.
pub type Row = (Box<[u8]>, Box<[u8]>);

/// The bytes that start every stored key of one table.
pub(crate) const PREFIX_LEN: usize = 4;

/// One table: a sorted map from byte keys to byte values.
///
/// Tables declared with the same options share a RocksDB column family
/// (each column family costs its fixed memory and its own memtable, table
/// files and flushes). A table's keys are stored after its prefix, the
/// FNV-1a hash of its name ([`table_prefix`]); every read adds it and every
/// key a read returns comes without it, and each iterator is bounded to it
/// inside RocksDB, so no scan ever reaches a neighbouring table.
#[derive(Clone)]
pub struct Tree {
    pub(crate) db: Arc<Inner>,
    pub(crate) name: &'static str,
    pub(crate) family: &'static str,
    pub(crate) prefix: [u8; PREFIX_LEN],
}

/// The key prefix of the table named `name`: 32-bit FNV-1a of the name,
/// big-endian. Stored data depends on it: it never changes.
pub(crate) const fn table_prefix(name: &str) -> [u8; PREFIX_LEN] {
    let bytes = name.as_bytes();
    let mut hash: u32 = 0x811c_9dc5;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u32;
        hash = hash.wrapping_mul(0x0100_0193);
        i += 1;
    }
    hash.to_be_bytes()
}

/// `key` as a table with `prefix` stores it.
pub(crate) fn stored_key(prefix: [u8; PREFIX_LEN], key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(PREFIX_LEN + key.len());
    out.extend_from_slice(&prefix);
    out.extend_from_slice(key);
    out
}

/// Where a scan starts.
enum Start<'k> {
    First,
    Last,
    At(&'k [u8]),
    AtOrBefore(&'k [u8]),
}

impl Tree {
    pub(crate) fn handle(&self) -> &rocksdb::ColumnFamily {
        // Trees are only constructed for declared tables, whose column
        // families are opened with the store.
        self.db
            .db
            .cf_handle(self.family)
            .expect("declared column family is open")
    }

    /// `key` as stored: after the table's prefix.
    pub(crate) fn stored(&self, key: &[u8]) -> Vec<u8> {
        stored_key(self.prefix, key)
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    pub fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<Vec<u8>>> {
        Ok(self
            .db
            .db
            .get_cf(self.handle(), self.stored(key.as_ref()))?)
    }

    /// The values of `keys`, in their order, read in one batch (RocksDB's
    /// MultiGet: one pass through the memtables and table files for all).
    pub fn get_many<K: AsRef<[u8]>>(&self, keys: &[K]) -> Result<Vec<Option<Vec<u8>>>> {
        let stored: Vec<Vec<u8>> = keys.iter().map(|k| self.stored(k.as_ref())).collect();
        self.db
            .db
            .batched_multi_get_cf(self.handle(), &stored, false)
            .into_iter()
            .map(|value| Ok(value?.map(|v| v.to_vec())))
            .collect()
    }

    pub fn contains(&self, key: impl AsRef<[u8]>) -> Result<bool> {
        Ok(self
            .db
            .db
            .get_pinned_cf(self.handle(), self.stored(key.as_ref()))?
            .is_some())
    }

    /// Reads a JSON value.
    pub fn get_json<T: DeserializeOwned>(&self, key: impl AsRef<[u8]>) -> Result<Option<T>> {
        match self
            .db
            .db
            .get_pinned_cf(self.handle(), self.stored(key.as_ref()))?
        {
            None => Ok(None),
            Some(bytes) => self.decode_json(&bytes).map(Some),
        }
    }

    /// Decodes a value of this table as JSON. A value that does not decode
    /// is [`Error::Corrupt`], whether it was read alone or in a scan: no
    /// reader skips a damaged row without saying so.
    pub fn decode_json<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T> {
        serde_json::from_slice(bytes).map_err(|e| self.corrupt(e))
    }

    /// Decodes a string stored in this table (a key, a part of one, or a
    /// value) as `T`: a user, room or event ID, or a `String`. Anything
    /// else is [`Error::Corrupt`].
    pub fn decode_str<T>(&self, bytes: &[u8]) -> Result<T>
    where
        T: for<'a> TryFrom<&'a str>,
        for<'a> <T as TryFrom<&'a str>>::Error: std::fmt::Display,
    {
        let text = std::str::from_utf8(bytes).map_err(|e| self.corrupt(e))?;
        T::try_from(text).map_err(|e| self.corrupt(format!("{text:?}: {e}")))
    }

    fn corrupt(&self, reason: impl std::fmt::Display) -> Error {
        Error::Corrupt {
            column: self.name,
            reason: reason.to_string(),
        }
    }

    /// Reads a big-endian `u64`.
    pub fn get_u64(&self, key: impl AsRef<[u8]>) -> Result<Option<u64>> {
        match self
            .db
            .db
            .get_pinned_cf(self.handle(), self.stored(key.as_ref()))?
        {
            None => Ok(None),
            Some(bytes) => crate::key::parse_u64(&bytes)
                .map(Some)
                .ok_or_else(|| self.corrupt("expected an 8-byte integer")),
        }
    }

    /// All entries whose key starts with `prefix`, in key order.
    pub fn scan_prefix(&self, prefix: Vec<u8>) -> impl Iterator<Item = Result<Row>> + '_ {
        self.rows(Start::At(&prefix), true, &prefix)
    }

    /// Entries from `from` (inclusive) forward while their key starts with `prefix`.
    pub fn scan_from(
        &self,
        from: Vec<u8>,
        prefix: Vec<u8>,
    ) -> impl Iterator<Item = Result<Row>> + '_ {
        self.rows(Start::At(&from), true, &prefix)
    }

    /// Entries from `from` (inclusive) backward while their key starts with `prefix`.
    pub fn scan_rev_from(
        &self,
        from: Vec<u8>,
        prefix: Vec<u8>,
    ) -> impl Iterator<Item = Result<Row>> + '_ {
        self.rows(Start::AtOrBefore(&from), false, &prefix)
    }

    /// Entries whose key starts with `prefix`, in key order, with their
    /// values decoded as JSON (see [`Self::decode_json`]).
    pub fn scan_prefix_json<T: DeserializeOwned>(
        &self,
        prefix: Vec<u8>,
    ) -> impl Iterator<Item = Result<(Box<[u8]>, T)>> + '_ {
        self.scan_prefix(prefix)
            .map(|row| row.and_then(|(k, v)| Ok((k, self.decode_json(&v)?))))
    }

    /// Every entry, in key order, with its value decoded as JSON.
    pub fn iter_json<T: DeserializeOwned>(
        &self,
    ) -> impl Iterator<Item = Result<(Box<[u8]>, T)>> + '_ {
        self.iter()
            .map(|row| row.and_then(|(k, v)| Ok((k, self.decode_json(&v)?))))
    }

    /// The entry with the greatest key in the table.
    pub fn last(&self) -> Result<Option<Row>> {
        self.rows(Start::Last, false, &[]).next().transpose()
    }

    /// Every entry, in key order.
    pub fn iter(&self) -> impl Iterator<Item = Result<Row>> + '_ {
        self.rows(Start::First, true, &[])
    }

    /// The rows from `start` on, forward or backward, while their key
    /// starts with `prefix`.
    fn rows(&self, start: Start<'_>, forward: bool, prefix: &[u8]) -> Rows<'_> {
        // Bounded to the keys the scan can return, RocksDB leaves out the
        // table files and blocks that hold none of them.
        let prefix = self.stored(prefix);
        let mut opts = ReadOptions::default();
        opts.set_iterate_lower_bound(prefix.clone());
        if let Some(end) = successor(&prefix) {
            opts.set_iterate_upper_bound(end);
        }
        let mut raw = self.db.db.raw_iterator_cf_opt(self.handle(), opts);
        match start {
            Start::First => raw.seek_to_first(),
            Start::Last => raw.seek_to_last(),
            Start::At(key) => raw.seek(self.stored(key)),
            Start::AtOrBefore(key) => raw.seek_for_prev(self.stored(key)),
        }
        Rows {
            raw,
            forward,
            prefix,
            done: false,
        }
    }
}

/// The least key after every key that starts with `prefix`, if there is one.
fn successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let last = prefix.iter().rposition(|b| *b != 0xff)?;
    let mut end = prefix[..=last].to_vec();
    end[last] += 1;
    Some(end)
}

/// Rows of one table as they are read, keys without the table's prefix.
struct Rows<'a> {
    raw: DBRawIteratorWithThreadMode<'a, DB>,
    forward: bool,
    /// Stored keys that belong to the scan start with this.
    prefix: Vec<u8>,
    done: bool,
}

impl Iterator for Rows<'_> {
    type Item = Result<Row>;

    fn next(&mut self) -> Option<Result<Row>> {
        if self.done {
            return None;
        }
        let row = match self.raw.item() {
            Some((key, value)) if key.starts_with(&self.prefix) => {
                (Box::from(&key[PREFIX_LEN..]), Box::from(value))
            }
            Some(_) => {
                self.done = true;
                return None;
            }
            None => {
                self.done = true;
                return self.raw.status().err().map(|e| Err(e.into()));
            }
        };
        if self.forward {
            self.raw.next();
        } else {
            self.raw.prev();
        }
        Some(Ok(row))
    }
}
