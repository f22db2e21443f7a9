use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    sync::Arc,
};

use rocksdb::{BlockBasedOptions, Cache, ColumnFamilyDescriptor, DB, DBCompressionType, DBRecoveryMode, Options, WriteOptions};

use crate::{Batch, Error, Result, Tree};

/// Declares one column family. Each subsystem keeps a table of these.
#[derive(Clone, Copy, Debug)]
pub struct ColumnSpec {
    /// Named `key_value`, e.g. `roomid_count_eventid`.
    pub name: &'static str,
    /// Whether reads are mostly point lookups (adds a bloom filter).
    pub point_lookups: bool,
}

impl ColumnSpec {
    pub const fn new(name: &'static str) -> Self {
        Self { name, point_lookups: false }
    }

    pub const fn lookups(name: &'static str) -> Self {
        Self { name, point_lookups: true }
    }
}

/// Tuning for the database.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// Shared block cache, in bytes.
    pub cache_bytes: usize,
    /// Fsync every commit. Only tests of non-durable paths turn this off.
    pub durable: bool,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self { cache_bytes: 64 << 20, durable: true }
    }
}

pub(crate) struct Inner {
    pub(crate) db: DB,
    durable: bool,
    path: PathBuf,
}

/// The database: open once, share by cloning.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
    names: Arc<BTreeSet<&'static str>>,
}

impl Store {
    /// Opens (or creates) the database at `path` with the given column families.
    ///
    /// After an unclean shutdown RocksDB replays its write-ahead log up to the
    /// last intact record (point-in-time recovery), so every commit that
    /// returned is there and a torn tail write is dropped instead of refusing to open.
    pub fn open(path: &Path, columns: &[ColumnSpec], options: &StoreOptions) -> Result<Self> {
        let cache = Cache::new_lru_cache(options.cache_bytes);
        let mut db_opts = Options::default();
        db_opts.create_if_missing(true);
        db_opts.create_missing_column_families(true);
        db_opts.set_wal_recovery_mode(DBRecoveryMode::PointInTime);
        db_opts.set_max_background_jobs(2);
        db_opts.set_keep_log_file_num(4);
        db_opts.set_max_total_wal_size(64 << 20);
        db_opts.set_max_open_files(512);
        db_opts.set_compression_type(DBCompressionType::Lz4);
        db_opts.set_enable_pipelined_write(true);

        let descriptors: Vec<ColumnFamilyDescriptor> = columns
            .iter()
            .map(|spec| {
                let mut table = BlockBasedOptions::default();
                table.set_block_cache(&cache);
                if spec.point_lookups {
                    table.set_bloom_filter(10.0, false);
                }
                let mut cf_opts = Options::default();
                cf_opts.set_block_based_table_factory(&table);
                cf_opts.set_compression_type(DBCompressionType::Lz4);
                cf_opts.set_write_buffer_size(8 << 20);
                ColumnFamilyDescriptor::new(spec.name, cf_opts)
            })
            .collect();

        // Keep column families that exist on disk but are no longer declared,
        // rather than refusing to open: an older binary may run on newer data.
        let mut all = descriptors;
        if let Ok(existing) = DB::list_cf(&db_opts, path) {
            for name in existing {
                if name != "default" && !columns.iter().any(|c| c.name == name) {
                    all.push(ColumnFamilyDescriptor::new(name, Options::default()));
                }
            }
        }

        let db = DB::open_cf_descriptors(&db_opts, path, all)
            .map_err(|source| Error::Open { path: path.to_owned(), source })?;
        let names = columns.iter().map(|c| c.name).collect();
        Ok(Self {
            inner: Arc::new(Inner { db, durable: options.durable, path: path.to_owned() }),
            names: Arc::new(names),
        })
    }

    /// A handle to a declared column family.
    pub fn tree(&self, name: &'static str) -> Result<Tree> {
        if !self.names.contains(name) {
            return Err(Error::UnknownColumn(name.to_owned()));
        }
        Ok(Tree { db: self.inner.clone(), name })
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Writes the batch atomically and, unless the store was opened
    /// non-durable, waits until it is fsynced. Blocking: call from a blocking
    /// context (see [`Store::commit_async`]).
    pub fn commit(&self, batch: Batch) -> Result<()> {
        let mut opts = WriteOptions::default();
        opts.set_sync(self.inner.durable);
        self.inner.db.write_opt(batch.inner, &opts)?;
        Ok(())
    }

    /// [`Store::commit`] on the blocking thread pool, so concurrent committers
    /// join one RocksDB write group and share its fsync.
    pub async fn commit_async(&self, batch: Batch) -> Result<()> {
        let store = self.clone();
        match tokio_blocking(move || store.commit(batch)).await {
            Some(result) => result,
            None => Err(Error::Corrupt { column: "-", reason: "commit task panicked".into() }),
        }
    }

    /// Writes a consistent point-in-time copy of the database to `target`
    /// (hard links where possible). `target` must not exist.
    pub fn checkpoint(&self, target: &Path) -> Result<()> {
        if target.exists() {
            return Err(Error::CheckpointExists(target.to_owned()));
        }
        let checkpoint = rocksdb::checkpoint::Checkpoint::new(&self.inner.db)?;
        checkpoint.create_checkpoint(target)?;
        Ok(())
    }

    /// Flushes memtables and the WAL; called on clean shutdown.
    pub fn flush(&self) -> Result<()> {
        self.inner.db.flush_wal(true)?;
        for name in self.names.iter() {
            if let Some(cf) = self.inner.db.cf_handle(name) {
                self.inner.db.flush_cf(cf)?;
            }
        }
        Ok(())
    }

    /// Approximate live data size in bytes, for status displays.
    pub fn approximate_size(&self) -> u64 {
        self.names
            .iter()
            .filter_map(|name| self.inner.db.cf_handle(name))
            .filter_map(|cf| self.inner.db.property_int_value_cf(cf, "rocksdb.estimate-live-data-size").ok().flatten())
            .sum()
    }
}

async fn tokio_blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    tokio::task::spawn_blocking(f).await.ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key;

    const COLUMNS: &[ColumnSpec] = &[ColumnSpec::new("a_b"), ColumnSpec::lookups("c_d")];

    #[test]
    fn batch_is_atomic_across_columns_and_survives_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let store = Store::open(dir.path(), COLUMNS, &StoreOptions::default()).expect("open");
            let (ab, cd) = (store.tree("a_b").expect("a_b"), store.tree("c_d").expect("c_d"));
            let mut batch = Batch::new();
            batch.put(&ab, key::key([b"room", b"x"]), b"1");
            batch.put_json(&cd, b"k", &vec![1, 2, 3]);
            store.commit(batch).expect("commit");
        }
        let store = Store::open(dir.path(), COLUMNS, &StoreOptions::default()).expect("reopen");
        let ab = store.tree("a_b").expect("a_b");
        assert_eq!(ab.get(key::key([b"room", b"x"])).expect("get"), Some(b"1".to_vec()));
        let v: Vec<u32> = store.tree("c_d").expect("c_d").get_json(b"k").expect("get").expect("present");
        assert_eq!(v, vec![1, 2, 3]);
    }

    #[test]
    fn undeclared_column_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path(), COLUMNS, &StoreOptions::default()).expect("open");
        assert!(matches!(store.tree("nope"), Err(Error::UnknownColumn(_))));
    }

    #[test]
    fn prefix_scan_stops_at_prefix_end() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path(), COLUMNS, &StoreOptions::default()).expect("open");
        let t = store.tree("a_b").expect("a_b");
        let mut batch = Batch::new();
        for k in ["a\u{1}", "ab", "b"] {
            batch.put(&t, key::key([b"r", k.as_bytes()]), b"");
        }
        batch.put(&t, key::key([b"rr", b"x"]), b"");
        store.commit(batch).expect("commit");
        let found: Vec<_> = t.scan_prefix(key::prefix([b"r"])).map(|r| r.expect("row").0).collect();
        assert_eq!(found.len(), 3);
    }

    #[test]
    fn checkpoint_is_a_readable_copy() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("db"), COLUMNS, &StoreOptions::default()).expect("open");
        let t = store.tree("a_b").expect("a_b");
        let mut batch = Batch::new();
        batch.put(&t, b"k", b"v");
        store.commit(batch).expect("commit");
        let target = dir.path().join("snap");
        store.checkpoint(&target).expect("checkpoint");
        assert!(matches!(store.checkpoint(&target), Err(Error::CheckpointExists(_))));
        let copy = Store::open(&target, COLUMNS, &StoreOptions::default()).expect("open copy");
        assert_eq!(copy.tree("a_b").expect("a_b").get(b"k").expect("get"), Some(b"v".to_vec()));
    }
}
