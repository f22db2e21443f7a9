//! Archipel's archive vault.
//!
//! Every event the homeserver persists reaches the vault through a durable
//! outbox written in the event's own batch. The vault turns each into a
//! sealed [`record::Record`] (content under a per-record data key, wrapped by
//! the vault key), appends it as a leaf of an RFC 6962 Merkle log
//! ([`merkle`], stored by [`log::Log`]), and signs C2SP checkpoints
//! ([`checkpoint`]). [`verify`] recomputes all of it from the stored records.
//!
//! Deliberately knows nothing about Matrix beyond an event's top-level JSON
//! fields, and nothing about the homeserver: the appliance moves captured
//! events from the homeserver's outbox into [`Vault::capture`].

pub mod checkpoint;
pub mod columns;
mod config;
pub mod coverage;
pub mod decryption;
mod error;
pub mod export;
pub mod import;
pub mod log;
pub mod media;
pub mod megolm;
pub mod merkle;
pub mod procedure;
pub mod record;
pub mod retention;
pub mod seal;
pub mod transfer;
pub mod verify;
pub mod witness;

use std::{
    io::Write,
    path::{Path, PathBuf},
    sync::Mutex,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use archipel_store::{Batch, Store, Written};
use base64::{Engine, engine::general_purpose::STANDARD as B64};
use ed25519_dalek::{SigningKey, VerifyingKey};
use serde::Deserialize;
use serde_json::{Value, value::RawValue};

pub use config::{Organisation, VaultConfig};
pub use error::{Error, Refusal, Result};
use log::{Log, META_CURSOR, META_SIZE, node_key};
pub use media::MediaSource;
use merkle::{Frontier, Hash};
use record::{Entry, EventEntry, MediaCopy, Record};
use seal::{DataKey, VaultKey};

/// When the vault signs a checkpoint.
#[derive(Clone, Debug)]
pub struct CheckpointPolicy {
    /// After this many new records...
    pub every_records: u64,
    /// ...or this long after the last checkpoint, if anything was added.
    pub every: Duration,
}

impl Default for CheckpointPolicy {
    fn default() -> Self {
        Self {
            every_records: 1000,
            every: Duration::from_secs(60),
        }
    }
}

/// One event from the homeserver's capture outbox.
#[derive(Clone, Debug)]
pub struct CapturedEvent {
    /// The event's position in the homeserver's stream (the outbox key).
    pub position: u64,
    /// The full event JSON as persisted, with its `event_id`: sealed as it is.
    pub event: Box<RawValue>,
    /// The local media files the event references.
    pub media: Vec<MediaSource>,
    /// For a peer's event the homeserver soft-failed: why.
    pub soft_failed: Option<String>,
    /// The bridge (application service) whose user sent it, by its ID.
    pub bridge: Option<String>,
}

/// The event types counted as messages in [`Vault::messages_per_day`].
const MESSAGE_TYPES: &[&str] = &["m.room.message", "m.room.encrypted", "m.sticker"];
const DAY_MS: u64 = 86_400_000;

/// The log's metadata key counting the messages archived on `day` (days
/// since the epoch).
fn day_key(day: u64) -> Vec<u8> {
    let mut key = b"messages_on_day_".to_vec();
    key.extend_from_slice(&day.to_be_bytes());
    key
}

/// The top-level fields of an event that a record keeps in the clear, read
/// without parsing the rest (the content is sealed as the text it came in).
/// A field of an unexpected shape reads as absent.
#[derive(Default)]
struct EventFields {
    event_id: Option<String>,
    room_id: Option<String>,
    sender: Option<String>,
    event_type: Option<String>,
    origin_server_ts: Option<u64>,
    /// For a redaction: the event it redacts (top level before room
    /// version 11, in the content since).
    redacts: Option<String>,
}

impl EventFields {
    fn read(event: &RawValue) -> Self {
        #[derive(Deserialize)]
        struct Top<'a> {
            #[serde(borrow)]
            event_id: Option<&'a RawValue>,
            #[serde(borrow)]
            room_id: Option<&'a RawValue>,
            #[serde(borrow)]
            sender: Option<&'a RawValue>,
            #[serde(borrow, rename = "type")]
            event_type: Option<&'a RawValue>,
            #[serde(borrow)]
            origin_server_ts: Option<&'a RawValue>,
            #[serde(borrow)]
            redacts: Option<&'a RawValue>,
            #[serde(borrow)]
            content: Option<&'a RawValue>,
        }
        #[derive(Deserialize)]
        struct Content<'a> {
            #[serde(borrow)]
            redacts: Option<&'a RawValue>,
        }
        fn text(raw: Option<&RawValue>) -> Option<String> {
            raw.and_then(|raw| serde_json::from_str(raw.get()).ok())
        }
        let Ok(top) = serde_json::from_str::<Top>(event.get()) else {
            // Not an object, or one serde will not take field by field
            // (a repeated field): read it whole, the last of a field wins.
            return Self::from_value(&serde_json::from_str(event.get()).unwrap_or_default());
        };
        let redacts = text(top.redacts).or_else(|| {
            top.content
                .and_then(|content| serde_json::from_str::<Content>(content.get()).ok())
                .and_then(|content| text(content.redacts))
        });
        Self {
            event_id: text(top.event_id),
            room_id: text(top.room_id),
            sender: text(top.sender),
            event_type: text(top.event_type),
            origin_server_ts: top
                .origin_server_ts
                .and_then(|raw| serde_json::from_str(raw.get()).ok()),
            redacts,
        }
    }

    fn from_value(event: &Value) -> Self {
        let text = |pointer: &str| {
            event
                .pointer(pointer)
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        Self {
            event_id: text("/event_id"),
            room_id: text("/room_id"),
            sender: text("/sender"),
            event_type: text("/type"),
            origin_server_ts: event.get("origin_server_ts").and_then(Value::as_u64),
            redacts: text("/redacts").or_else(|| text("/content/redacts")),
        }
    }
}

/// The vault of one node: the log plus the keys that write and read it.
pub struct Vault {
    store: Store,
    log: Log,
    key: VaultKey,
    signer: SigningKey,
    origin: String,
    media_dir: PathBuf,
    policy: CheckpointPolicy,
    writer: Mutex<Writer>,
    /// Witnessing: peers' logs seen, cosignatures of ours, one witness step at a time.
    witnessed: archipel_store::Tree,
    cosignatures: archipel_store::Tree,
    witness_lock: Mutex<()>,
    /// The node's archive member, once the node says who it is.
    archive_member: std::sync::OnceLock<String>,
    recent_encrypted: Mutex<decryption::RecentEncrypted>,
}

/// The vault with appends held off ([`Vault::frozen`]).
pub struct Frozen<'a> {
    vault: &'a Vault,
    /// The signed checkpoint note over the whole log (empty for an empty log).
    pub checkpoint: String,
}

impl Frozen<'_> {
    /// Writes the vault for a backup: its database under `dest/db` (a
    /// RocksDB checkpoint) and its sealed media copies under `dest/media`
    /// (hard links).
    pub fn copy_to(&self, dest: &Path) -> Result<()> {
        std::fs::create_dir_all(dest)
            .map_err(|e| Error::io(format!("creating {}", dest.display()), e))?;
        self.vault.store.checkpoint(&dest.join("db"))?;
        archipel_store::link_tree(&self.vault.media_dir, &dest.join("media"), &|path| {
            !media::is_unfinished(path)
        })?;
        Ok(())
    }
}

/// The single writer's state: appends are serialized.
struct Writer {
    frontier: Frontier,
    checkpointed_size: u64,
    checkpointed_at: Instant,
}

/// The checkpoint origin of a node: `<server name>/archipel-vault`.
pub fn origin_for(server_name: &str) -> String {
    format!("{server_name}/archipel-vault")
}

impl Vault {
    /// Opens the vault over `store` (opened with [`columns::COLUMNS`]), with
    /// sealed media copies under `dir`.
    pub fn open(
        store: Store,
        dir: &Path,
        key: VaultKey,
        signer: SigningKey,
        origin: String,
        policy: CheckpointPolicy,
    ) -> Result<Self> {
        let media_dir = dir.join("media");
        std::fs::create_dir_all(&media_dir)
            .map_err(|e| Error::io(format!("creating {}", media_dir.display()), e))?;
        let log = Log::open(&store)?;
        let size = log.size()?;
        let frontier = Frontier::load(&log, size)?;
        let checkpointed_size = log.latest_checkpoint()?.map_or(0, |c| c.size);
        index_rooms(&store, &log, size)?;
        index_steps(&store, &log, size)?;
        Ok(Self {
            witnessed: store.tree(columns::ORIGIN_WITNESSED)?,
            cosignatures: store.tree(columns::WITNESS_SIZE_COSIGNATURE)?,
            witness_lock: Mutex::new(()),
            archive_member: std::sync::OnceLock::new(),
            recent_encrypted: Default::default(),
            store,
            log,
            key,
            signer,
            origin,
            media_dir,
            policy,
            writer: Mutex::new(Writer {
                frontier,
                checkpointed_size,
                checkpointed_at: Instant::now(),
            }),
        })
    }

    /// The vault's database.
    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn log(&self) -> &Log {
        &self.log
    }

    pub(crate) fn recent_encrypted(
        &self,
    ) -> std::sync::MutexGuard<'_, decryption::RecentEncrypted> {
        self.recent_encrypted
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    pub fn origin(&self) -> &str {
        &self.origin
    }

    pub fn verifying_key(&self) -> VerifyingKey {
        self.signer.verifying_key()
    }

    /// A key derived from the vault key for `purpose` ([`VaultKey::derive`]).
    pub fn derived_key(&self, purpose: &str) -> zeroize::Zeroizing<[u8; 32]> {
        self.key.derive(purpose)
    }

    /// Seals and appends captured events in one atomic batch. Events at or
    /// below the capture cursor are skipped, so replaying the outbox after a
    /// crash appends nothing twice. Returns the new cursor once the batch is
    /// durable: the caller may then discard the outbox entries.
    pub fn capture(&self, events: Vec<CapturedEvent>) -> Result<u64> {
        let (cursor, written) = self.capture_unsynced(events)?;
        self.store.sync(written)?;
        Ok(cursor)
    }

    /// [`Vault::capture`] without waiting for stable storage: the batch is
    /// durable once [`Vault::sync`] returns for it (or for a later one, or a
    /// checkpoint is signed: a checkpoint only ever covers durable records).
    /// Until then a crash may lose it, cursor and all, and the caller must
    /// still hold the events to capture them again. Lets the capture pump
    /// pay one fsync for many batches.
    pub fn capture_unsynced(&self, events: Vec<CapturedEvent>) -> Result<(u64, Written)> {
        let mut writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let mut cursor = self.log.capture_cursor()?;
        let mut frontier = writer.frontier.clone();
        let mut batch = Batch::new();
        let mut media = media::BatchMedia::default();
        let mut coverage = std::collections::HashMap::new();
        let now = now_ms();
        let mut messages = 0u64;
        for captured in events {
            if captured.position <= cursor {
                continue;
            }
            cursor = captured.position;
            let appended = self.append_event(
                &mut batch,
                &mut frontier,
                &mut media,
                &mut coverage,
                now,
                &captured,
            )?;
            if let Some((_, entry)) = appended {
                if MESSAGE_TYPES.contains(&entry.event_type.as_str()) {
                    messages += 1;
                }
            } else if let Some(event_id) = EventFields::read(&captured.event).event_id {
                tracing::warn!(%event_id, "event captured twice; keeping the first record");
            }
        }
        batch.put(&self.log.meta, META_CURSOR, cursor.to_be_bytes());
        batch.put(&self.log.meta, META_SIZE, frontier.size().to_be_bytes());
        if messages > 0 {
            // The writer lock makes this read and write one step.
            let key = day_key(now / DAY_MS);
            let before = self.log.meta.get_u64(&key)?.unwrap_or(0);
            batch.put(&self.log.meta, key, (before + messages).to_be_bytes());
        }
        sync_files(&self.media_dir.join(media::BLOB_DIR), &media.sealed)?;
        // The vault's own log, never in a client's way; synced before the
        // caller discards the outbox entries (in the homeserver's database).
        let written = self.store.write(batch)?;
        writer.frontier = frontier;
        // Signing commits, and so syncs, everything written before it.
        self.checkpoint_if_due(&mut writer, false)?;
        Ok((cursor, written))
    }

    /// Adds `captured` to `batch` as the next record, with its indexes and
    /// what it says of the archive member's coverage; returns its sequence
    /// number and entry. Nothing if the vault holds that event already.
    fn append_event(
        &self,
        batch: &mut Batch,
        frontier: &mut Frontier,
        media: &mut media::BatchMedia,
        coverage: &mut std::collections::HashMap<String, bool>,
        now: u64,
        captured: &CapturedEvent,
    ) -> Result<Option<(u64, EventEntry)>> {
        let mut fields = EventFields::read(&captured.event);
        let event_id = fields.event_id.take().ok_or_else(|| {
            Error::Corrupt(format!(
                "captured event at position {} has no event_id",
                captured.position
            ))
        })?;
        if self.log.seq_of_event(&event_id)?.is_some() {
            return Ok(None);
        }
        let seq = frontier.size();
        let (entry, key) = self.seal_event(batch, seq, captured, fields, event_id, media)?;
        decryption::note_pending(self, batch, seq, &entry, captured.event.get());
        batch.put(
            &self.log.event_index,
            entry.event_id.as_bytes(),
            seq.to_be_bytes(),
        );
        batch.put(
            &self.log.room_index,
            Log::room_key(&entry.room_id, seq),
            b"",
        );
        let record = Record {
            seq,
            captured_ts: now,
            entry: Entry::Event(entry.clone()),
        };
        self.append(batch, frontier, &record, Some(&key));
        self.note_coverage(batch, frontier, now, &entry, captured.event.get(), coverage)?;
        Ok(Some((seq, entry)))
    }

    /// How many messages were archived on each of the last `days` days
    /// (UTC), oldest first, today last.
    pub fn messages_per_day(&self, days: u64) -> Result<Vec<u64>> {
        let today = now_ms() / DAY_MS;
        (today.saturating_sub(days.saturating_sub(1))..=today)
            .map(|day| Ok(self.log.meta.get_u64(day_key(day))?.unwrap_or(0)))
            .collect()
    }

    /// Waits until a [`Vault::capture_unsynced`] batch is on stable storage.
    pub fn sync(&self, written: Written) -> Result<()> {
        Ok(self.store.sync(written)?)
    }

    fn seal_event(
        &self,
        batch: &mut Batch,
        seq: u64,
        captured: &CapturedEvent,
        fields: EventFields,
        event_id: String,
        media: &mut media::BatchMedia,
    ) -> Result<(EventEntry, DataKey)> {
        let key = DataKey::generate();
        let sealed = B64.encode(key.seal(captured.event.get().as_bytes(), seq, 0));
        let mut copies = Vec::new();
        for source in &captured.media {
            match self.store_media(batch, seq, source, media) {
                Ok(copy) => copies.push(copy),
                // Gone from the homeserver meanwhile (erased, say): the
                // record says what it referenced, the vault has no copy.
                Err(Error::Io(e)) => {
                    tracing::warn!(mxc = %source.mxc, error = %e, "a referenced media file could not be archived");
                }
                Err(e) => return Err(e),
            }
        }
        let entry = EventEntry {
            room_id: fields.room_id.unwrap_or_default(),
            event_id,
            sender: fields.sender.unwrap_or_default(),
            event_type: fields.event_type.unwrap_or_default(),
            origin_server_ts: fields.origin_server_ts.unwrap_or_default(),
            redacts: fields.redacts,
            sealed,
            media: copies,
            soft_failed: captured.soft_failed.clone(),
            bridge: captured.bridge.clone(),
        };
        Ok((entry, key))
    }

    /// Adds `record` and its Merkle nodes to `batch`, advancing `frontier`.
    fn append(
        &self,
        batch: &mut Batch,
        frontier: &mut Frontier,
        record: &Record,
        key: Option<&DataKey>,
    ) {
        let bytes = record.to_bytes();
        let seq = record.seq;
        batch.put(&self.log.records, seq.to_be_bytes(), &bytes);
        if let Some(key) = key {
            batch.put(
                &self.log.data_keys,
                seq.to_be_bytes(),
                self.key.wrap(key, seq),
            );
        }
        for (level, index, hash) in frontier.append(merkle::leaf_hash(&bytes)) {
            batch.put(&self.log.nodes, node_key(level, index), hash);
        }
    }

    /// Adds a procedure step to `batch` as the next record; its details are
    /// sealed. Returns its sequence number.
    fn append_step(
        &self,
        batch: &mut Batch,
        frontier: &mut Frontier,
        now: u64,
        step: Step<'_>,
    ) -> u64 {
        let seq = frontier.size();
        let key = DataKey::generate();
        let plain = serde_json::to_vec(step.details).expect("JSON values serialize");
        let record = Record {
            seq,
            captured_ts: now,
            entry: Entry::Procedure(record::ProcedureEntry {
                action: step.action.to_owned(),
                actor: step.actor.to_owned(),
                subject: step.subject.to_owned(),
                sealed: B64.encode(key.seal(&plain, seq, 0)),
            }),
        };
        self.append(batch, frontier, &record, Some(&key));
        batch.put(&self.log.step_index, seq.to_be_bytes(), b"");
        seq
    }

    /// Appends procedure records built by `f` in one batch, committed with
    /// fsync (a person is told it is done), and signs a checkpoint over them.
    pub(crate) fn with_steps<T>(&self, f: impl FnOnce(&mut Steps<'_>) -> Result<T>) -> Result<T> {
        let mut writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let mut steps = Steps {
            vault: self,
            batch: Batch::new(),
            frontier: writer.frontier.clone(),
            now: now_ms(),
            erased_media: Vec::new(),
            media: media::BatchMedia::default(),
        };
        let out = f(&mut steps)?;
        let Steps {
            mut batch,
            frontier,
            erased_media,
            media,
            ..
        } = steps;
        batch.put(&self.log.meta, META_SIZE, frontier.size().to_be_bytes());
        sync_files(&self.media_dir.join(media::BLOB_DIR), &media.sealed)?;
        self.store.commit(batch)?;
        writer.frontier = frontier;
        self.checkpoint_if_due(&mut writer, true)?;
        // The keys are gone; removing the sealed copies only frees the space.
        for (seq, media) in erased_media {
            self.remove_media_copies(seq, &media)?;
        }
        media::remove_files(&media.released)?;
        Ok(out)
    }

    /// Holds appends off while `f` runs, with a checkpoint signed over the
    /// whole log first: what `f` copies of the vault ([`Frozen::copy_to`])
    /// is exactly that checkpoint, and whatever `f` copies from elsewhere
    /// meanwhile (the homeserver's database) is the same point in time or
    /// later. Keep `f` short: capture waits for it.
    pub fn frozen<T>(&self, f: impl FnOnce(&Frozen<'_>) -> T) -> Result<T> {
        let mut writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        self.checkpoint_if_due(&mut writer, true)?;
        let size = writer.frontier.size();
        // Empty for an empty log: nothing is signed yet.
        let checkpoint = self.log.checkpoint_at(size)?.unwrap_or_default();
        Ok(f(&Frozen {
            vault: self,
            checkpoint,
        }))
    }

    /// Signs a checkpoint now if anything was appended since the last one.
    pub fn checkpoint(&self) -> Result<()> {
        let mut writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        self.checkpoint_if_due(&mut writer, true)
    }

    /// For a periodic tick: signs a checkpoint if the policy's time has come.
    pub fn tick(&self) -> Result<()> {
        let mut writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        self.checkpoint_if_due(&mut writer, false)
    }

    fn checkpoint_if_due(&self, writer: &mut Writer, force: bool) -> Result<()> {
        let size = writer.frontier.size();
        if size == writer.checkpointed_size {
            return Ok(());
        }
        let due = force
            || size - writer.checkpointed_size >= self.policy.every_records
            || writer.checkpointed_at.elapsed() >= self.policy.every;
        if !due {
            return Ok(());
        }
        let root: Hash = writer.frontier.root();
        let note = checkpoint::Checkpoint {
            origin: self.origin.clone(),
            size,
            root,
        }
        .sign(&self.signer);
        let mut batch = Batch::new();
        batch.put(&self.log.checkpoints, size.to_be_bytes(), note.as_bytes());
        self.store.commit(batch)?;
        writer.checkpointed_size = size;
        writer.checkpointed_at = Instant::now();
        tracing::debug!(size, "vault checkpoint signed");
        Ok(())
    }

    /// The original event JSON of record `seq` (or a procedure step's
    /// details). Requires the vault key; an erased record is gone for good.
    pub fn open_event(&self, seq: u64) -> Result<Value> {
        let record = self.log.record(seq)?;
        let Some(sealed) = record.sealed() else {
            return Err(Error::NotFound(format!(
                "record {seq} is an erasure entry: it has no content"
            )));
        };
        self.open_sealed(seq, sealed)
    }

    /// The bytes of media copy `part` of record `seq`. Requires the vault key.
    pub fn open_media(&self, seq: u64, part: u32) -> Result<Vec<u8>> {
        self.open_media_sealed(&self.data_key(seq)?, seq, part)
            .map(|(plain, _)| plain)
    }

    /// A media copy opened, and its sealed bytes.
    pub(crate) fn open_media_sealed(
        &self,
        key: &DataKey,
        seq: u64,
        part: u32,
    ) -> Result<(Vec<u8>, Vec<u8>)> {
        let path = self.media_path(seq, part);
        let sealed = std::fs::read(&path)
            .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        Ok((key.open(&sealed, seq, part)?, sealed))
    }

    pub(crate) fn data_key(&self, seq: u64) -> Result<DataKey> {
        match self.log.data_keys.get(seq.to_be_bytes())? {
            Some(wrapped) => self.key.unwrap(&wrapped, seq),
            None => match self.log.erasure_of(seq)? {
                Some(reference) => Err(Error::Erased { seq, reference }),
                None => Err(Error::Corrupt(format!(
                    "record {seq} has lost its data key without an erasure decision"
                ))),
            },
        }
    }

    pub(crate) fn open_sealed(&self, seq: u64, sealed: &str) -> Result<Value> {
        open_sealed_with(&self.data_key(seq)?, seq, sealed)
    }

    fn media_path(&self, seq: u64, part: u32) -> PathBuf {
        media_path(&self.media_dir, seq, part)
    }
}

/// Opens a record's sealed JSON with its data key.
pub(crate) fn open_sealed_with(key: &DataKey, seq: u64, sealed: &str) -> Result<Value> {
    let sealed = B64
        .decode(sealed)
        .map_err(|e| Error::Corrupt(format!("record {seq}: sealed content: {e}")))?;
    let plain = key.open(&sealed, seq, 0)?;
    serde_json::from_slice(&plain)
        .map_err(|e| Error::Corrupt(format!("record {seq}: sealed content: {e}")))
}

/// Builds an index once over every record of a log kept before the index
/// existed (`built` marks it done): `put` adds one record's entries.
fn index_once(
    store: &Store,
    log: &Log,
    size: u64,
    built: &[u8],
    mut put: impl FnMut(&mut Batch, u64, &Record),
) -> Result<()> {
    if log.meta.contains(built)? {
        return Ok(());
    }
    let mut batch = Batch::new();
    for seq in 0..size {
        put(&mut batch, seq, &log.record(seq)?);
    }
    batch.put(&log.meta, built, b"");
    Ok(store.commit(batch)?)
}

/// The records of each room.
fn index_rooms(store: &Store, log: &Log, size: u64) -> Result<()> {
    index_once(
        store,
        log,
        size,
        b"room_index_built",
        |batch, seq, record| {
            if let Some(event) = record.event() {
                batch.put(&log.room_index, Log::room_key(&event.room_id, seq), b"");
            }
        },
    )
}

/// The procedure steps and erasures.
fn index_steps(store: &Store, log: &Log, size: u64) -> Result<()> {
    index_once(
        store,
        log,
        size,
        b"step_index_built",
        |batch, seq, record| {
            if matches!(record.entry, Entry::Procedure(_) | Entry::Erasure(_)) {
                batch.put(&log.step_index, seq.to_be_bytes(), b"");
            }
        },
    )
}

/// A procedure step: who did what to what, and the details (sealed).
pub(crate) struct Step<'a> {
    pub action: &'a str,
    pub actor: &'a str,
    pub subject: &'a str,
    pub details: &'a Value,
}

/// Records being added in one procedure batch.
pub(crate) struct Steps<'a> {
    vault: &'a Vault,
    pub batch: Batch,
    frontier: Frontier,
    now: u64,
    /// Own media copies of (older) records erased in this batch, removed
    /// once it commits.
    erased_media: Vec<(u64, Vec<MediaCopy>)>,
    /// Stored files the batch's erasures release.
    media: media::BatchMedia,
}

impl Steps<'_> {
    pub fn now(&self) -> u64 {
        self.now
    }

    /// Appends an event from outside the homeserver (an import) as the next
    /// record, as capture would; returns its sequence number, or nothing if
    /// the vault holds it already.
    pub fn event(&mut self, event: &CapturedEvent) -> Result<Option<u64>> {
        let appended = self.vault.append_event(
            &mut self.batch,
            &mut self.frontier,
            &mut self.media,
            &mut std::collections::HashMap::new(),
            self.now,
            event,
        )?;
        Ok(appended.map(|(seq, _)| seq))
    }

    /// Appends a procedure step; `details` are sealed. Returns its sequence number.
    pub fn procedure(&mut self, action: &str, actor: &str, subject: &str, details: &Value) -> u64 {
        let step = Step {
            action,
            actor,
            subject,
            details,
        };
        self.vault
            .append_step(&mut self.batch, &mut self.frontier, self.now, step)
    }

    /// The next reference of a numbered series (`EX-000001`, ...), taken in
    /// this batch.
    pub fn take_reference(&mut self, counter: &[u8], prefix: &str) -> Result<String> {
        let meta = &self.vault.log.meta;
        let next = meta.get_u64(counter)?.unwrap_or(1);
        self.batch.put(meta, counter, (next + 1).to_be_bytes());
        Ok(format!("{prefix}-{next:06}"))
    }

    /// Erases event record `erased` by decision `reference`: destroys its
    /// data key, appends the erasure entry, queues the purge of the
    /// homeserver's copies, and removes its media copies once committed.
    /// An encrypted event's decryption record goes with it (its own
    /// erasure entry), and one still waiting for its key waits no more: the
    /// session key alone reproduces nothing. Returns the first erasure
    /// entry's sequence number.
    pub fn erase(&mut self, erased: u64, event: &EventEntry, reference: &str) -> Result<u64> {
        let seq = self.erase_record(erased, reference);
        self.batch.put_json(
            &self.vault.log.pending_purges,
            event.event_id.as_bytes(),
            &procedure::PendingPurge {
                event_id: event.event_id.clone(),
                reference: reference.to_owned(),
            },
        );
        self.erased_media.push((erased, event.media.clone()));
        self.vault
            .release_media(&mut self.batch, erased, &event.media, &mut self.media)?;
        if let Some(decryption) = self.vault.decryption_of(erased)? {
            self.erase_record(decryption, reference);
            let record = self.vault.log.record(decryption)?;
            self.vault.release_media(
                &mut self.batch,
                decryption,
                record.media(),
                &mut self.media,
            )?;
        }
        decryption::forget_pending(self.vault, &mut self.batch, erased)?;
        Ok(seq)
    }

    /// Destroys record `erased`'s data key and appends its erasure entry.
    fn erase_record(&mut self, erased: u64, reference: &str) -> u64 {
        let seq = self.frontier.size();
        let record = Record {
            seq,
            captured_ts: self.now,
            entry: Entry::Erasure(record::ErasureEntry {
                erased_seq: erased,
                reference: reference.to_owned(),
            }),
        };
        let log = &self.vault.log;
        self.batch.delete(&log.data_keys, erased.to_be_bytes());
        self.batch.put_json(
            &log.erasures,
            erased.to_be_bytes(),
            &log::ErasureRef {
                reference: reference.to_owned(),
                record: seq,
            },
        );
        self.vault
            .append(&mut self.batch, &mut self.frontier, &record, None);
        self.batch.put(&log.step_index, seq.to_be_bytes(), b"");
        seq
    }
}

pub(crate) fn media_path(media_dir: &Path, seq: u64, part: u32) -> PathBuf {
    media_dir.join(format!("{seq:016}.{part}"))
}

/// Writes a file and fsyncs it.
pub(crate) fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut file = std::fs::File::create(path)
        .map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| Error::io(format!("writing {}", path.display()), e))
}

/// Media copies are on disk before the batch that references them commits.
pub(crate) fn sync_files(dir: &Path, files: &[PathBuf]) -> Result<()> {
    if files.is_empty() {
        return Ok(());
    }
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(format!("syncing {}", dir.display()), e))
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(json: &str) -> EventFields {
        EventFields::read(&RawValue::from_string(json.to_owned()).expect("JSON"))
    }

    #[test]
    fn an_events_clear_fields_are_read_from_its_text() {
        let read = fields(
            r#"{"type":"m.room.redaction","event_id":"$r","room_id":"!a:x","sender":"@b:x",
                "origin_server_ts":17,"content":{"body":{"deep":[1,2]},"redacts":"$old"}}"#,
        );
        assert_eq!(read.event_id.as_deref(), Some("$r"));
        assert_eq!(read.room_id.as_deref(), Some("!a:x"));
        assert_eq!(read.sender.as_deref(), Some("@b:x"));
        assert_eq!(read.event_type.as_deref(), Some("m.room.redaction"));
        assert_eq!(read.origin_server_ts, Some(17));
        assert_eq!(read.redacts.as_deref(), Some("$old"), "from the content");

        let top = fields(r#"{"event_id":"$r","redacts":"$top","content":{"redacts":"$c"}}"#);
        assert_eq!(top.redacts.as_deref(), Some("$top"), "the top level first");

        // Odd shapes read as absent; a repeated field reads as its last.
        let odd = fields(r#"{"event_id":"$a","event_id":"$b","sender":5,"origin_server_ts":-1}"#);
        assert_eq!(odd.event_id.as_deref(), Some("$b"));
        assert_eq!((odd.sender, odd.origin_server_ts), (None, None));
        assert!(fields("[1]").event_id.is_none());
        assert_eq!(
            fields(r#"{"event_id":"\u0024e"}"#).event_id.as_deref(),
            Some("$e"),
            "escapes decoded"
        );
    }
}
