//! The read side of the vault's Merkle log in RocksDB: records, stored
//! subtree hashes, checkpoints, proofs. Needs neither the vault key nor the
//! signing key, so auditors can run it against a read-only copy.

use archipel_store::{Store, Tree, key};

use crate::{
    Error, Result,
    columns::{self as cf},
    merkle::{self, Hash, NodeSource},
    record::Record,
};

/// Keys in `vault_meta`.
pub(crate) const META_SIZE: &[u8] = b"log_size";
pub(crate) const META_CURSOR: &[u8] = b"capture_cursor";

#[derive(Clone)]
pub struct Log {
    pub(crate) meta: Tree,
    pub(crate) records: Tree,
    pub(crate) data_keys: Tree,
    pub(crate) nodes: Tree,
    pub(crate) checkpoints: Tree,
    pub(crate) event_index: Tree,
    pub(crate) erasures: Tree,
    pub(crate) room_index: Tree,
    pub(crate) step_index: Tree,
    pub(crate) pending_purges: Tree,
    pub(crate) pending_decryptions: Tree,
    pub(crate) session_index: Tree,
    pub(crate) decryptions: Tree,
    pub(crate) session_keys: Tree,
    pub(crate) coverage_gaps: Tree,
    pub(crate) blobs: Tree,
    pub(crate) mxc_blobs: Tree,
    pub(crate) blob_refs: Tree,
}

/// Where the erasure of a record is on record.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct ErasureRef {
    /// The decision's reference (EX-..., DL-...).
    pub reference: String,
    /// The erasure entry's sequence number in the log.
    pub record: u64,
}

/// A stored checkpoint note.
#[derive(Clone, Debug)]
pub struct StoredCheckpoint {
    pub size: u64,
    pub note: String,
}

impl Log {
    pub fn open(store: &Store) -> Result<Self> {
        Ok(Self {
            meta: store.tree(cf::VAULT_META)?,
            records: store.tree(cf::SEQ_RECORD)?,
            data_keys: store.tree(cf::SEQ_DATAKEY)?,
            nodes: store.tree(cf::LEVEL_INDEX_NODE)?,
            checkpoints: store.tree(cf::SIZE_CHECKPOINT)?,
            event_index: store.tree(cf::EVENTID_SEQ)?,
            erasures: store.tree(cf::SEQ_ERASURE)?,
            room_index: store.tree(cf::ROOMID_SEQ)?,
            step_index: store.tree(cf::SEQ_STEP)?,
            pending_purges: store.tree(cf::EVENTID_PENDINGPURGE)?,
            pending_decryptions: store.tree(cf::SEQ_PENDINGDECRYPTION)?,
            session_index: store.tree(cf::ROOMID_SESSIONID_SEQ)?,
            decryptions: store.tree(cf::SEQ_DECRYPTIONSEQ)?,
            session_keys: store.tree(cf::ROOMID_SESSIONID_KEYSEQ)?,
            coverage_gaps: store.tree(cf::ROOMID_COVERAGEGAP)?,
            blobs: store.tree(cf::BLOB_BLOB)?,
            mxc_blobs: store.tree(cf::MXC_BLOB)?,
            blob_refs: store.tree(cf::BLOB_SEQ)?,
        })
    }

    /// The number of records the log says it holds.
    pub fn size(&self) -> Result<u64> {
        Ok(self.meta.get_u64(META_SIZE)?.unwrap_or(0))
    }

    /// The highest homeserver stream position captured so far.
    pub fn capture_cursor(&self) -> Result<u64> {
        Ok(self.meta.get_u64(META_CURSOR)?.unwrap_or(0))
    }

    pub fn record_bytes(&self, seq: u64) -> Result<Option<Vec<u8>>> {
        Ok(self.records.get(seq.to_be_bytes())?)
    }

    pub fn record(&self, seq: u64) -> Result<Record> {
        let bytes = self
            .record_bytes(seq)?
            .ok_or_else(|| Error::NotFound(format!("record {seq} is not in the vault")))?;
        Record::from_bytes(&bytes)
            .map_err(|e| Error::Corrupt(format!("record {seq} does not parse: {e}")))
    }

    /// The record that captured `event_id`.
    pub fn seq_of_event(&self, event_id: &str) -> Result<Option<u64>> {
        Ok(self.event_index.get_u64(event_id.as_bytes())?)
    }

    pub fn root(&self, size: u64) -> Result<Hash> {
        merkle::root(self, size)
    }

    pub fn leaf_hash(&self, seq: u64) -> Result<Hash> {
        self.node(0, seq)
    }

    pub fn inclusion_proof(&self, seq: u64, size: u64) -> Result<Vec<Hash>> {
        if seq >= size || size > self.size()? {
            return Err(Error::NotFound(format!(
                "record {seq} is not in a log of {size} records (the log holds {})",
                self.size()?
            )));
        }
        merkle::inclusion_proof(self, seq, size)
    }

    pub fn consistency_proof(&self, old: u64, new: u64) -> Result<Vec<Hash>> {
        if old > new || new > self.size()? {
            return Err(Error::NotFound(format!(
                "no consistency proof from {old} to {new} records (the log holds {})",
                self.size()?
            )));
        }
        merkle::consistency_proof(self, old, new)
    }

    /// Every stored checkpoint, oldest first.
    pub fn checkpoints(&self) -> Result<Vec<StoredCheckpoint>> {
        let mut out = Vec::new();
        for row in self.checkpoints.iter() {
            let (k, v) = row?;
            let size = key::parse_u64(&k)
                .ok_or_else(|| Error::Corrupt("a checkpoint key is not a log size".into()))?;
            out.push(StoredCheckpoint {
                size,
                note: String::from_utf8_lossy(&v).into_owned(),
            });
        }
        Ok(out)
    }

    /// The checkpoint note signed at `size`, if there is one.
    pub fn checkpoint_at(&self, size: u64) -> Result<Option<String>> {
        Ok(self
            .checkpoints
            .get(size.to_be_bytes())?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    /// The newest checkpoint: one read, however many were signed.
    pub fn latest_checkpoint(&self) -> Result<Option<StoredCheckpoint>> {
        let Some((k, v)) = self.checkpoints.last()? else {
            return Ok(None);
        };
        let size = key::parse_u64(&k)
            .ok_or_else(|| Error::Corrupt("a checkpoint key is not a log size".into()))?;
        Ok(Some(StoredCheckpoint {
            size,
            note: String::from_utf8_lossy(&v).into_owned(),
        }))
    }

    /// The records of `room` below `size`, in log order.
    pub fn room_records(&self, room: &str, size: u64) -> Result<Vec<u64>> {
        let mut out = Vec::new();
        for row in self
            .room_index
            .scan_prefix(archipel_store::key::prefix([room.as_bytes()]))
        {
            let (k, _) = row?;
            match archipel_store::key::split_last_u64(&k) {
                Some((_, seq)) if seq < size => out.push(seq),
                Some(_) => break,
                None => {
                    return Err(Error::Corrupt(
                        "a room index key has no record number".into(),
                    ));
                }
            }
        }
        Ok(out)
    }

    pub(crate) fn room_key(room: &str, seq: u64) -> Vec<u8> {
        archipel_store::key::with_u64(room.as_bytes().to_vec(), seq)
    }

    /// The decision that erased record `seq`, if one did.
    pub fn erasure_of(&self, seq: u64) -> Result<Option<String>> {
        Ok(self.erasure_record_of(seq)?.map(|e| e.reference))
    }

    /// The decision that erased record `seq`, and the erasure entry's place.
    pub fn erasure_record_of(&self, seq: u64) -> Result<Option<ErasureRef>> {
        Ok(self.erasures.get_json(seq.to_be_bytes())?)
    }

    /// Whether the record's data key still exists (false once shredded).
    pub fn has_data_key(&self, seq: u64) -> Result<bool> {
        Ok(self.data_keys.contains(seq.to_be_bytes())?)
    }
}

pub(crate) fn node_key(level: u32, index: u64) -> [u8; 12] {
    let mut out = [0u8; 12];
    out[..4].copy_from_slice(&level.to_be_bytes());
    out[4..].copy_from_slice(&index.to_be_bytes());
    out
}

impl NodeSource for Log {
    type Error = Error;

    fn node(&self, level: u32, index: u64) -> Result<Hash> {
        let bytes = self.nodes.get(node_key(level, index))?.ok_or_else(|| {
            Error::Corrupt(format!(
                "the log's hash of records {}..{} is missing",
                index << level,
                (index + 1) << level
            ))
        })?;
        bytes.as_slice().try_into().map_err(|_| {
            Error::Corrupt(format!(
                "the log's hash of records {}..{} is not 32 bytes",
                index << level,
                (index + 1) << level
            ))
        })
    }
}
