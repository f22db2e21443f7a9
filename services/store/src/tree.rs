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
            Some(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| Error::Corrupt {
                    column: self.name,
                    reason: e.to_string(),
                }),
        }
    }

    /// Reads a big-endian `u64`.
    pub fn get_u64(&self, key: impl AsRef<[u8]>) -> Result<Option<u64>> {
        match self.db.db.get_pinned_cf(self.handle(), key)? {
            None => Ok(None),
            Some(bytes) => crate::key::parse_u64(&bytes)
                .map(Some)
                .ok_or(Error::Corrupt {
                    column: self.name,
                    reason: "expected an 8-byte integer".into(),
                }),
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
