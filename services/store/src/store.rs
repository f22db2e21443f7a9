use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    sync::Arc,
    sync::{Condvar, Mutex},
};

use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamilyDescriptor, DB, DBCompressionType, DBRecoveryMode,
    Options, WriteBufferManager, WriteOptions,
};

use crate::{
    Batch, Error, Result, Tree,
    tree::{PREFIX_LEN, stored_key, table_prefix},
};

/// Declares one table. Each subsystem keeps a list of these.
///
/// Tables declared with the same options share one RocksDB column family
/// ([`ColumnSpec::family`]), each under its own key prefix (see [`Tree`]):
/// a column family costs about 60 KiB of fixed memory and its own memtable,
/// table files and flushes, which eighty tables would pay eighty times.
#[derive(Clone, Copy, Debug)]
pub struct ColumnSpec {
    /// Named `key_value`, e.g. `roomid_count_eventid`.
    pub name: &'static str,
    /// Whether reads are mostly point lookups (adds a bloom filter).
    pub point_lookups: bool,
    /// Whether blocks are compressed (LZ4). Off for values that are
    /// ciphertext: compressing them costs a flush its CPU time and saves
    /// nothing (RocksDB stores such blocks uncompressed anyway).
    pub compressed: bool,
}

impl ColumnSpec {
    pub const fn new(name: &'static str) -> Self {
        Self {
            name,
            point_lookups: false,
            compressed: true,
        }
    }

    pub const fn lookups(name: &'static str) -> Self {
        Self {
            point_lookups: true,
            ..Self::new(name)
        }
    }

    /// The same table with its blocks stored uncompressed.
    pub const fn incompressible(self) -> Self {
        Self {
            compressed: false,
            ..self
        }
    }

    /// The column family that holds this table: one for each combination
    /// of options. The names cannot be table names, which read `key_value`.
    pub const fn family(&self) -> &'static str {
        match (self.point_lookups, self.compressed) {
            (true, true) => "tables:lookups",
            (false, true) => "tables:scans",
            (true, false) => "tables:lookups:uncompressed",
            (false, false) => "tables:scans:uncompressed",
        }
    }
}

/// Tuning for the database.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// Memory budget for the block cache and the memtables together, in bytes.
    pub cache_bytes: usize,
    /// Fsync every commit. Only tests of non-durable paths turn this off.
    pub durable: bool,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            cache_bytes: 16 << 20,
            durable: true,
        }
    }
}

pub(crate) struct Inner {
    pub(crate) db: DB,
    durable: bool,
    /// Opened with [`Store::open_follower`]: reads only.
    follower: bool,
    path: PathBuf,
    wal: WalSync,
}

/// Group commit: writers append to the write-ahead log without syncing, then
/// wait until one fsync covers their write. While one fsync runs, everyone
/// who wrote meanwhile waits for the next, which covers them all.
#[derive(Default)]
struct WalSync {
    state: Mutex<WalState>,
    synced: Condvar,
    /// Tests make the disk fail its syncs.
    #[cfg(test)]
    fail_syncs: std::sync::atomic::AtomicBool,
}

#[derive(Default)]
struct WalState {
    /// Writes that reached the log, numbered in order.
    written: u64,
    /// Every write up to this number is on stable storage.
    durable: u64,
    syncing: bool,
    /// Why a sync failed, once one has: then nothing more is written or
    /// acknowledged (the "fsyncgate" lesson: a failed fsync may have
    /// dropped dirty pages, which a later fsync no longer reports).
    failed: Option<String>,
}

/// A write that reached the log but may not be durable yet.
#[must_use = "a written batch is durable only after Store::sync"]
pub struct Written(u64);

/// The database: open once, share by cloning.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
    tables: Arc<BTreeMap<&'static str, ColumnSpec>>,
}

/// The memtables' allocation unit. Every memtable that holds anything
/// charges at least one block to the write budget; at RocksDB's default
/// (an eighth of the write buffer) a dozen column families written together
/// fill a small budget with nearly empty blocks, and RocksDB keeps flushing
/// tiny memtables (each flush a few fsyncs) to make room.
const ARENA_BLOCK: usize = 32 << 10;

/// The most a file RocksDB writes buffers in memory.
const WRITE_BUFFER: u64 = 16 << 10;

impl Store {
    fn options(
        path: &Path,
        columns: &[ColumnSpec],
        options: &StoreOptions,
    ) -> (Options, Vec<ColumnFamilyDescriptor>) {
        let cache = Cache::new_lru_cache(options.cache_bytes);
        // Memtables are charged to the block cache: one budget bounds both,
        // and memtables are flushed when they would take more than half.
        let write_buffers = WriteBufferManager::new_write_buffer_manager_with_cache(
            options.cache_bytes / 2,
            false,
            cache.clone(),
        );
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
        db_opts.set_write_buffer_manager(&write_buffers);
        // A crash loses nothing that was synced: writes go straight to the
        // log file (no user-space buffering); `flush_wal(true)` fsyncs it.
        db_opts.set_manual_wal_flush(false);
        // Every file RocksDB writes (the log, the manifest, a flush's or a
        // compaction's table) buffers its writes: 64 KiB from the start, and
        // after a write larger than the room left, twice that, up to 1 MiB,
        // for as long as the file is open. Sixteen kilobytes hold a block
        // and a usual write batch; a larger write goes to the file directly.
        db_opts.set_writable_file_max_buffer_size(WRITE_BUFFER);

        let families: BTreeMap<&str, &ColumnSpec> =
            columns.iter().map(|spec| (spec.family(), spec)).collect();
        let descriptors: Vec<ColumnFamilyDescriptor> = families
            .into_iter()
            .map(|(family, spec)| {
                let mut table = BlockBasedOptions::default();
                table.set_block_cache(&cache);
                if spec.point_lookups {
                    table.set_bloom_filter(10.0, false);
                }
                let mut cf_opts = Options::default();
                cf_opts.set_block_based_table_factory(&table);
                cf_opts.set_compression_type(if spec.compressed {
                    DBCompressionType::Lz4
                } else {
                    DBCompressionType::None
                });
                cf_opts.set_write_buffer_size((options.cache_bytes / 4).clamp(1 << 20, 64 << 20));
                cf_opts.set_arena_block_size(ARENA_BLOCK);
                ColumnFamilyDescriptor::new(family, cf_opts)
            })
            .collect();

        // RocksDB opens a database only with all its column families: the
        // ones of an earlier layout (a column family per table, moved into
        // the shared ones at open) and any a newer release added.
        let mut all = descriptors;
        for name in DB::list_cf(&db_opts, path).unwrap_or_default() {
            if name != "default" && !all.iter().any(|d| d.name() == name) {
                all.push(ColumnFamilyDescriptor::new(name, Options::default()));
            }
        }
        (db_opts, all)
    }

    fn over(
        db: DB,
        path: &Path,
        columns: &[ColumnSpec],
        options: &StoreOptions,
        follower: bool,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                db,
                durable: options.durable,
                follower,
                path: path.to_owned(),
                wal: WalSync::default(),
            }),
            tables: Arc::new(columns.iter().map(|c| (c.name, *c)).collect()),
        }
    }

    /// Refuses two tables whose names hash to the same key prefix: they
    /// would read each other's rows.
    fn check_prefixes(columns: &[ColumnSpec]) -> Result<()> {
        let mut seen: BTreeMap<[u8; PREFIX_LEN], &'static str> = BTreeMap::new();
        for spec in columns {
            if let Some(other) = seen.insert(table_prefix(spec.name), spec.name)
                && other != spec.name
            {
                return Err(Error::PrefixClash(other, spec.name));
            }
        }
        Ok(())
    }

    /// Opens a read-only follower of the database at `path` while its owner
    /// (a running node) keeps it open: RocksDB's secondary mode, which reads
    /// the owner's files and log as of now. `scratch` is a private folder
    /// for the follower's own bookkeeping. Writes fail.
    pub fn open_follower(
        path: &Path,
        scratch: &Path,
        columns: &[ColumnSpec],
        options: &StoreOptions,
    ) -> Result<Self> {
        Self::check_prefixes(columns)?;
        let (mut db_opts, all) = Self::options(path, columns, options);
        db_opts.create_if_missing(false);
        // Secondary instances keep every table file open.
        db_opts.set_max_open_files(-1);
        // A follower cannot move tables out of an earlier layout; its owner
        // does that when it opens.
        if let Some(table) = columns
            .iter()
            .find(|spec| all.iter().any(|d| d.name() == spec.name))
        {
            return Err(Error::EarlierLayout {
                path: path.to_owned(),
                table: table.name,
            });
        }
        let open_error = |source| Error::Open {
            path: path.to_owned(),
            source,
        };
        let db = DB::open_cf_descriptors_as_secondary(&db_opts, path, scratch, all)
            .map_err(open_error)?;
        db.try_catch_up_with_primary().map_err(open_error)?;
        Ok(Self::over(db, path, columns, options, true))
    }

    /// Opens (or creates) the database at `path` with the given tables.
    ///
    /// After an unclean shutdown RocksDB replays its write-ahead log up to the
    /// last intact record (point-in-time recovery), so every commit that
    /// returned is there and a torn tail write is dropped instead of refusing to open.
    ///
    /// A database of the earlier layout, a column family per table, has
    /// its tables moved into the shared column families first.
    pub fn open(path: &Path, columns: &[ColumnSpec], options: &StoreOptions) -> Result<Self> {
        Self::check_prefixes(columns)?;
        let (db_opts, all) = Self::options(path, columns, options);
        let open_error = |source| Error::Open {
            path: path.to_owned(),
            source,
        };
        let mut db = DB::open_cf_descriptors(&db_opts, path, all).map_err(open_error)?;
        for spec in columns {
            if db.cf_handle(spec.name).is_some() {
                Self::move_table(&mut db, spec).map_err(open_error)?;
            }
        }
        Ok(Self::over(db, path, columns, options, false))
    }

    /// Moves a table of the earlier layout from its own column family into
    /// its shared one, in batches of a few MiB, synced before the old column
    /// family is dropped. Moving again what a crash interrupted writes the
    /// same rows again.
    fn move_table(db: &mut DB, spec: &ColumnSpec) -> Result<(), rocksdb::Error> {
        const BATCH_BYTES: usize = 4 << 20;
        let prefix = table_prefix(spec.name);
        let mut rows = 0u64;
        {
            let (Some(old), Some(new)) = (db.cf_handle(spec.name), db.cf_handle(spec.family()))
            else {
                return Ok(());
            };
            let mut batch = rocksdb::WriteBatch::default();
            let mut raw = db.raw_iterator_cf(old);
            raw.seek_to_first();
            while let Some((key, value)) = raw.item() {
                batch.put_cf(new, stored_key(prefix, key), value);
                rows += 1;
                if batch.size_in_bytes() >= BATCH_BYTES {
                    db.write(&batch)?;
                    batch.clear();
                }
                raw.next();
            }
            raw.status()?;
            db.write(&batch)?;
            db.flush_wal(true)?;
        }
        db.drop_cf(spec.name)?;
        tracing::info!(
            table = spec.name,
            family = spec.family(),
            rows,
            "moved a table into its shared column family"
        );
        Ok(())
    }

    /// Whether this is a read-only follower of a running node's database:
    /// what a writer does once at open (an index of older data, say) is
    /// then its owner's to do.
    pub fn is_follower(&self) -> bool {
        self.inner.follower
    }

    /// A handle to a declared table.
    pub fn tree(&self, name: &'static str) -> Result<Tree> {
        let spec = self
            .tables
            .get(name)
            .ok_or_else(|| Error::UnknownColumn(name.to_owned()))?;
        Ok(Tree {
            db: self.inner.clone(),
            name,
            family: spec.family(),
            prefix: table_prefix(name),
        })
    }

    /// The column families that hold the declared tables.
    fn families(&self) -> BTreeSet<&'static str> {
        self.tables.values().map(ColumnSpec::family).collect()
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Writes the batch atomically and, unless the store was opened
    /// non-durable, waits until it is on stable storage. Blocking: call from
    /// a blocking context (see [`Store::commit_async`]).
    pub fn commit(&self, batch: Batch) -> Result<()> {
        let written = self.write(batch)?;
        self.sync(written)
    }

    /// [`Store::commit`] on the blocking thread pool.
    pub async fn commit_async(&self, batch: Batch) -> Result<()> {
        let written = self.write_async(batch).await?;
        self.sync_async(written).await
    }

    /// Writes the batch atomically to the log and memtables without waiting
    /// for stable storage. Callers that serialize writers (one writer per
    /// room) write under their lock and [`Store::sync`] after releasing it,
    /// so the fsync is shared instead of serialized.
    pub fn write(&self, batch: Batch) -> Result<Written> {
        if let Some(why) = &self
            .inner
            .wal
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .failed
        {
            return Err(Error::SyncFailed(why.clone()));
        }
        let mut opts = WriteOptions::default();
        opts.set_sync(false);
        self.inner.db.write_opt(&batch.inner, &opts)?;
        let mut state = self
            .inner
            .wal
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        state.written += 1;
        Ok(Written(state.written))
    }

    pub async fn write_async(&self, batch: Batch) -> Result<Written> {
        let store = self.clone();
        blocking(move || store.write(batch)).await
    }

    /// Waits until `written` is on stable storage, fsyncing the log if no
    /// one else is about to.
    pub fn sync(&self, written: Written) -> Result<()> {
        if !self.inner.durable {
            return Ok(());
        }
        let wal = &self.inner.wal;
        let mut state = wal.state.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if state.durable >= written.0 {
                return Ok(());
            }
            if let Some(why) = &state.failed {
                return Err(Error::SyncFailed(why.clone()));
            }
            if state.syncing {
                state = wal.synced.wait(state).unwrap_or_else(|e| e.into_inner());
                continue;
            }
            state.syncing = true;
            let target = state.written;
            drop(state);
            let result = self.sync_wal();
            state = wal.state.lock().unwrap_or_else(|e| e.into_inner());
            state.syncing = false;
            match result {
                Ok(()) => state.durable = state.durable.max(target),
                Err(e) => {
                    tracing::error!(error = %e, path = %self.inner.path.display(), "the disk failed to sync the database's log: no more writes");
                    state.failed = Some(e.to_string());
                }
            }
            wal.synced.notify_all();
        }
    }

    /// Syncs the write-ahead log to stable storage.
    fn sync_wal(&self) -> Result<()> {
        #[cfg(test)]
        if self
            .inner
            .wal
            .fail_syncs
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            return Err(Error::Io {
                path: self.inner.path.clone(),
                source: std::io::Error::other("an injected I/O error"),
            });
        }
        Ok(self.inner.db.flush_wal(true)?)
    }

    pub async fn sync_async(&self, written: Written) -> Result<()> {
        let store = self.clone();
        blocking(move || store.sync(written)).await
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
        for name in self.families() {
            if let Some(cf) = self.inner.db.cf_handle(name) {
                self.inner.db.flush_cf(cf)?;
            }
        }
        Ok(())
    }

    /// Rewrites the whole database so that deleted and overwritten values
    /// are physically gone: memtables flushed, every column family compacted
    /// down to its last level, obsolete log and table files deleted. Erasure
    /// procedures call it; it costs a full rewrite of the data.
    pub fn purge_deleted(&self) -> Result<()> {
        let db = &self.inner.db;
        let handles: Vec<&rocksdb::ColumnFamily> = std::iter::once("default")
            .chain(self.families())
            .filter_map(|name| db.cf_handle(name))
            .collect();
        let mut flush = rocksdb::FlushOptions::default();
        flush.set_wait(true);
        db.flush_cfs_opt(&handles, &flush)?;
        let mut compact = rocksdb::CompactOptions::default();
        compact.set_bottommost_level_compaction(rocksdb::BottommostLevelCompaction::Force);
        compact.set_exclusive_manual_compaction(true);
        for cf in &handles {
            db.compact_range_cf_opt(*cf, None::<&[u8]>, None::<&[u8]>, &compact);
        }
        // A fresh flush switches to a new write-ahead log, so the old ones
        // (which held the values) become obsolete and are deleted.
        db.flush_cfs_opt(&handles, &flush)?;
        db.flush_wal(true)?;
        Ok(())
    }

    /// Approximate bytes the database holds, for status displays: its
    /// table files and what its memtables hold that is not in them yet.
    pub fn approximate_size(&self) -> u64 {
        let property = |cf, name| {
            self.inner
                .db
                .property_int_value_cf(cf, name)
                .ok()
                .flatten()
                .unwrap_or(0)
        };
        self.families()
            .into_iter()
            .filter_map(|name| self.inner.db.cf_handle(name))
            .map(|cf| {
                property(cf, "rocksdb.total-sst-files-size")
                    + property(cf, "rocksdb.cur-size-all-mem-tables")
            })
            .sum()
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => result,
        Err(e) => Err(Error::Task(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Row, key};

    const COLUMNS: &[ColumnSpec] = &[ColumnSpec::new("a_b"), ColumnSpec::lookups("c_d")];

    #[test]
    fn after_a_failed_sync_nothing_more_is_written_or_acknowledged() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path(), COLUMNS, &StoreOptions::default()).expect("open");
        let ab = store.tree("a_b").expect("a_b");
        let put = |value: &[u8]| {
            let mut batch = Batch::new();
            batch.put(&ab, b"k", value);
            store.commit(batch)
        };
        put(b"1").expect("a healthy disk");
        store
            .inner
            .wal
            .fail_syncs
            .store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(put(b"2").is_err(), "a failed sync acknowledged a write");
        // The disk seems fine again; the store does not believe it.
        store
            .inner
            .wal
            .fail_syncs
            .store(false, std::sync::atomic::Ordering::Relaxed);
        match put(b"3") {
            Err(Error::SyncFailed(_)) => {}
            other => panic!("a write after a failed sync: {other:?}"),
        }
    }

    #[test]
    fn a_damaged_row_fails_a_scan_as_it_fails_a_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path(), COLUMNS, &StoreOptions::default()).expect("open");
        let ab = store.tree("a_b").expect("a_b");
        let mut batch = Batch::new();
        batch.put_json(&ab, key::key([b"room", b"1"]), &1u32);
        batch.put(&ab, key::key([b"room", b"2"]), b"{not json");
        batch.put(&ab, b"\xff\xfe", b"2");
        store.commit(batch).expect("commit");

        let read: Vec<Result<(Box<[u8]>, u32)>> =
            ab.scan_prefix_json(key::prefix([b"room"])).collect();
        assert_eq!(read.len(), 2, "the damaged row is not skipped");
        assert!(matches!(read[0], Ok((_, 1))));
        assert!(
            matches!(&read[1], Err(Error::Corrupt { column: "a_b", .. })),
            "{:?}",
            read[1]
        );
        assert!(matches!(
            ab.get_json::<u32>(key::key([b"room", b"2"])),
            Err(Error::Corrupt { .. })
        ));

        let id: String = ab.decode_str(b"!room:a.test").expect("a string");
        assert_eq!(id, "!room:a.test");
        assert!(matches!(
            ab.decode_str::<String>(b"\xff\xfe"),
            Err(Error::Corrupt { column: "a_b", .. })
        ));
    }

    #[test]
    fn batch_is_atomic_across_columns_and_survives_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let store = Store::open(dir.path(), COLUMNS, &StoreOptions::default()).expect("open");
            let (ab, cd) = (
                store.tree("a_b").expect("a_b"),
                store.tree("c_d").expect("c_d"),
            );
            let mut batch = Batch::new();
            batch.put(&ab, key::key([b"room", b"x"]), b"1");
            batch.put_json(&cd, b"k", &vec![1, 2, 3]);
            store.commit(batch).expect("commit");
        }
        let store = Store::open(dir.path(), COLUMNS, &StoreOptions::default()).expect("reopen");
        let ab = store.tree("a_b").expect("a_b");
        assert_eq!(
            ab.get(key::key([b"room", b"x"])).expect("get"),
            Some(b"1".to_vec())
        );
        let v: Vec<u32> = store
            .tree("c_d")
            .expect("c_d")
            .get_json(b"k")
            .expect("get")
            .expect("present");
        assert_eq!(v, vec![1, 2, 3]);
    }

    #[test]
    fn concurrent_commits_share_syncs_and_all_land() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path(), COLUMNS, &StoreOptions::default()).expect("open");
        let threads: Vec<_> = (0..8u32)
            .map(|t| {
                let store = store.clone();
                std::thread::spawn(move || {
                    let tree = store.tree("a_b").expect("a_b");
                    for i in 0..50u32 {
                        let mut batch = Batch::new();
                        batch.put(&tree, format!("{t}-{i}"), b"x");
                        store.commit(batch).expect("commit");
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("thread");
        }
        let tree = store.tree("a_b").expect("a_b");
        assert_eq!(tree.iter().count(), 400);
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
        let found: Vec<_> = t
            .scan_prefix(key::prefix([b"r"]))
            .map(|r| r.expect("row").0)
            .collect();
        assert_eq!(found.len(), 3);
    }

    /// A new store with two tables in one column family, each under a
    /// prefix chosen here so that the second starts right after the first.
    fn with_neighbours() -> (tempfile::TempDir, Store, Tree, Tree) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path(), COLUMNS, &StoreOptions::default()).expect("open");
        let ab = store.tree("a_b").expect("a_b");
        let first = Tree {
            prefix: [0, 0, 0, 7],
            ..ab.clone()
        };
        let second = Tree {
            prefix: [0, 0, 0, 8],
            ..ab
        };
        (dir, store, first, second)
    }

    #[test]
    fn tables_that_share_a_column_family_never_see_each_other() {
        let (_dir, store, first, second) = with_neighbours();
        let mut batch = Batch::new();
        for k in [&b""[..], b"a", b"m", b"\xff\xff"] {
            batch.put(&first, k, b"1");
            batch.put(&second, k, b"2");
        }
        store.commit(batch).expect("commit");

        for (tree, value) in [(&first, b"1"), (&second, b"2")] {
            let rows: Vec<Row> = tree.iter().map(|r| r.expect("row")).collect();
            assert_eq!(rows.len(), 4, "{:?}", tree.prefix);
            assert!(rows.iter().all(|(_, v)| &v[..] == value));
            assert_eq!(rows[0].0.as_ref(), b"", "keys come without the prefix");
            let (last, _) = tree.last().expect("last").expect("a row");
            assert_eq!(last.as_ref(), b"\xff\xff");
            let back: Vec<Row> = tree
                .scan_rev_from(b"\xff\xff\xff".to_vec(), Vec::new())
                .map(|r| r.expect("row"))
                .collect();
            assert_eq!(back.len(), 4);
            assert_eq!(tree.get(b"m").expect("get").as_deref(), Some(&value[..]));
        }

        // A range delete of one table leaves the other whole.
        let mut batch = Batch::new();
        batch.delete_range(&first, b"", b"\xff\xff\xff");
        store.commit(batch).expect("commit");
        assert_eq!(first.iter().count(), 0);
        assert!(first.last().expect("last").is_none());
        assert_eq!(second.iter().count(), 4);
    }

    #[test]
    fn scans_bounded_to_their_prefix_find_all_of_it_and_no_more() {
        let (_dir, store, first, second) = with_neighbours();
        let mut batch = Batch::new();
        for k in [
            &b"p"[..],
            b"p\xff",
            b"p\xff\x00",
            b"p\xff\xff",
            b"q",
            b"\xff\xff",
        ] {
            batch.put(&first, k, b"1");
            batch.put(&second, k, b"2");
        }
        store.commit(batch).expect("commit");
        let keys = |rows: Vec<Result<Row>>| -> Vec<Vec<u8>> {
            rows.into_iter()
                .map(|r| r.expect("row").0.to_vec())
                .collect()
        };

        let forward = keys(first.scan_prefix(b"p\xff".to_vec()).collect());
        assert_eq!(forward, [&b"p\xff"[..], b"p\xff\x00", b"p\xff\xff"]);
        // From before the prefix, a scan starts at its first key.
        let from = keys(first.scan_from(b"a".to_vec(), b"p\xff".to_vec()).collect());
        assert_eq!(from, forward);
        // Backward from past the prefix's last key, and from inside it.
        let back = keys(
            first
                .scan_rev_from(b"p\xff\xff\xff".to_vec(), b"p\xff".to_vec())
                .collect(),
        );
        assert_eq!(back, [&b"p\xff\xff"[..], b"p\xff\x00", b"p\xff"]);
        let back = keys(
            first
                .scan_rev_from(b"p\xff\x00\x05".to_vec(), b"p\xff".to_vec())
                .collect(),
        );
        assert_eq!(back, [&b"p\xff\x00"[..], b"p\xff"]);
        // A prefix of all 0xff ends where the next table starts.
        let last = first.scan_prefix(b"\xff".to_vec());
        assert_eq!(keys(last.collect()), [b"\xff\xff"]);
        let values: Vec<Row> = second
            .scan_rev_from(b"p\x00".to_vec(), b"p".to_vec())
            .map(|r| r.expect("row"))
            .collect();
        assert_eq!(values.len(), 1);
        assert_eq!(&values[0].1[..], b"2");
    }

    #[test]
    fn a_batched_read_answers_each_key_in_its_order() {
        let (_dir, store, first, second) = with_neighbours();
        let mut batch = Batch::new();
        batch.put(&first, b"b", b"1b");
        batch.put(&first, b"a", b"1a");
        batch.put(&second, b"c", b"2c");
        store.commit(batch).expect("commit");
        store.flush().expect("flush");
        let mut batch = Batch::new();
        batch.put(&first, b"d", b"1d");
        store.commit(batch).expect("commit");
        // From a table file and from the memtable, unsorted, repeated,
        // and a key of the neighbouring table.
        let values = first
            .get_many(&[&b"d"[..], b"b", b"c", b"a", b"b"])
            .expect("read");
        let expected: Vec<Option<Vec<u8>>> = vec![
            Some(b"1d".to_vec()),
            Some(b"1b".to_vec()),
            None,
            Some(b"1a".to_vec()),
            Some(b"1b".to_vec()),
        ];
        assert_eq!(values, expected);
        assert!(first.get_many::<&[u8]>(&[]).expect("read").is_empty());
    }

    /// A database of the earlier layout at `path`: a column family per table.
    fn earlier_layout(path: &Path, tables: &[&str]) -> DB {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        DB::open_cf(&opts, path, tables).expect("open")
    }

    #[test]
    fn tables_of_the_earlier_layout_move_into_their_column_family() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let db = earlier_layout(dir.path(), &["a_b", "c_d", "z_later"]);
            for (cf, n) in [("a_b", 3000u32), ("c_d", 2)] {
                let cf = db.cf_handle(cf).expect("cf");
                for i in 0..n {
                    db.put_cf(cf, key::with_u64(b"k".to_vec(), i.into()), [7u8; 2000])
                        .expect("put");
                }
            }
            db.put_cf(db.cf_handle("z_later").expect("cf"), b"x", b"y")
                .expect("put");
        }
        for _ in 0..2 {
            let store = Store::open(dir.path(), COLUMNS, &StoreOptions::default()).expect("open");
            let ab = store.tree("a_b").expect("a_b");
            assert_eq!(ab.iter().count(), 3000);
            let (last, value) = ab.last().expect("last").expect("a row");
            assert_eq!(key::split_last_u64(&last), Some((&b"k"[..], 2999)));
            assert_eq!(value.as_ref(), [7u8; 2000]);
            assert_eq!(store.tree("c_d").expect("c_d").iter().count(), 2);
        }
        let families = DB::list_cf(&Options::default(), dir.path()).expect("list");
        assert!(
            !families.iter().any(|f| f == "a_b" || f == "c_d"),
            "{families:?}"
        );
        // A column family this release does not know stays as it was.
        assert!(families.iter().any(|f| f == "z_later"), "{families:?}");
    }

    #[test]
    fn a_follower_does_not_read_the_earlier_layout_as_empty() {
        let dir = tempfile::tempdir().expect("tempdir");
        let _owner = earlier_layout(dir.path(), &["a_b"]);
        let scratch = tempfile::tempdir().expect("tempdir");
        match Store::open_follower(
            dir.path(),
            scratch.path(),
            COLUMNS,
            &StoreOptions::default(),
        ) {
            Err(Error::EarlierLayout { table: "a_b", .. }) => {}
            Err(e) => panic!("another error: {e}"),
            Ok(_) => panic!("a follower read the earlier layout"),
        }
    }

    #[test]
    fn tables_whose_prefixes_clash_are_refused() {
        // Two names with the same FNV-1a hash.
        assert_eq!(table_prefix("t439599"), table_prefix("t622382"));
        let dir = tempfile::tempdir().expect("tempdir");
        let clash = [ColumnSpec::new("t439599"), ColumnSpec::lookups("t622382")];
        assert!(matches!(
            Store::open(dir.path(), &clash, &StoreOptions::default()),
            Err(Error::PrefixClash("t439599", "t622382"))
        ));
    }

    #[test]
    fn checkpoint_is_a_readable_copy() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store =
            Store::open(&dir.path().join("db"), COLUMNS, &StoreOptions::default()).expect("open");
        let t = store.tree("a_b").expect("a_b");
        let mut batch = Batch::new();
        batch.put(&t, b"k", b"v");
        store.commit(batch).expect("commit");
        let target = dir.path().join("snap");
        store.checkpoint(&target).expect("checkpoint");
        assert!(matches!(
            store.checkpoint(&target),
            Err(Error::CheckpointExists(_))
        ));
        let copy = Store::open(&target, COLUMNS, &StoreOptions::default()).expect("open copy");
        assert_eq!(
            copy.tree("a_b").expect("a_b").get(b"k").expect("get"),
            Some(b"v".to_vec())
        );
    }
}
