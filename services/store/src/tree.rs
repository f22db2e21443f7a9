use std::sync::Arc;

use rocksdb::{Direction, IteratorMode, ReadOptions};
use serde::de::DeserializeOwned;

use crate::{Error, Result, store::Inner};

/// A key and its value.
pub type Row = (Box<[u8]>, Box<[u8]>);

/// One column family: a sorted map from byte keys to byte values.
#[derive(Clone)]
pub struct Tree {
    pub(crate) db: Arc<Inner>,
    pub(crate) name: &'static str,
}

impl Tree {
    pub(crate) fn handle(&self) -> &rocksdb::ColumnFamily {
        // Trees are only constructed for declared, opened column families.
        self.db
            .db
            .cf_handle(self.name)
            .expect("declared column family is open")
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    pub fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<Vec<u8>>> {
        Ok(self.db.db.get_cf(self.handle(), key)?)
    }

    pub fn contains(&self, key: impl AsRef<[u8]>) -> Result<bool> {
        Ok(self.db.db.get_pinned_cf(self.handle(), key)?.is_some())
    }

    /// Reads a JSON value.
    pub fn get_json<T: DeserializeOwned>(&self, key: impl AsRef<[u8]>) -> Result<Option<T>> {
        match self.db.db.get_pinned_cf(self.handle(), key)? {
            None => Ok(None),
            Some(bytes) => self.decode_json(&bytes).map(Some),
        }
    }

    /// Decodes a value of this column family as JSON. A value that does
    /// not decode is [`Error::Corrupt`], whether it was read alone or in a
    /// scan: no reader skips a damaged row without saying so.
    pub fn decode_json<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T> {
        serde_json::from_slice(bytes).map_err(|e| self.corrupt(e))
    }

    /// Decodes a string stored in this column family (a key, a part of
    /// one, or a value) as `T`: a user, room or event ID, or a `String`.
    /// Anything else is [`Error::Corrupt`].
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
        match self.db.db.get_pinned_cf(self.handle(), key)? {
            None => Ok(None),
            Some(bytes) => crate::key::parse_u64(&bytes)
                .map(Some)
                .ok_or_else(|| self.corrupt("expected an 8-byte integer")),
        }
    }

    /// All entries whose key starts with `prefix`, in key order.
    pub fn scan_prefix(&self, prefix: Vec<u8>) -> impl Iterator<Item = Result<Row>> + '_ {
        let mut opts = ReadOptions::default();
        opts.set_prefix_same_as_start(false);
        let iter = self.db.db.iterator_cf_opt(
            self.handle(),
            opts,
            IteratorMode::From(&prefix, Direction::Forward),
        );
        iter.map(|r| r.map_err(Error::from))
            .take_while(move |r| r.as_ref().map_or(true, |(k, _)| k.starts_with(&prefix)))
    }

    /// Entries from `from` (inclusive) forward while their key starts with `prefix`.
    pub fn scan_from(
        &self,
        from: Vec<u8>,
        prefix: Vec<u8>,
    ) -> impl Iterator<Item = Result<Row>> + '_ {
        let iter = self
            .db
            .db
            .iterator_cf(self.handle(), IteratorMode::From(&from, Direction::Forward));
        iter.map(|r| r.map_err(Error::from))
            .take_while(move |r| r.as_ref().map_or(true, |(k, _)| k.starts_with(&prefix)))
    }

    /// Entries from `from` (inclusive) backward while their key starts with `prefix`.
    pub fn scan_rev_from(
        &self,
        from: Vec<u8>,
        prefix: Vec<u8>,
    ) -> impl Iterator<Item = Result<Row>> + '_ {
        let iter = self
            .db
            .db
            .iterator_cf(self.handle(), IteratorMode::From(&from, Direction::Reverse));
        iter.map(|r| r.map_err(Error::from))
            .take_while(move |r| r.as_ref().map_or(true, |(k, _)| k.starts_with(&prefix)))
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

    /// The entry with the greatest key in the column family.
    pub fn last(&self) -> Result<Option<Row>> {
        self.db
            .db
            .iterator_cf(self.handle(), IteratorMode::End)
            .next()
            .transpose()
            .map_err(Error::from)
    }

    /// Every entry, in key order.
    pub fn iter(&self) -> impl Iterator<Item = Result<Row>> + '_ {
        self.db
            .db
            .iterator_cf(self.handle(), IteratorMode::Start)
            .map(|r| r.map_err(Error::from))
    }
}
