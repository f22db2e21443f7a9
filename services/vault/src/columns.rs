//! Every column family the vault owns, in one table.

use archipel_store::ColumnSpec;

/// Log size, capture cursor, checkpoint bookkeeping.
pub const VAULT_META: &str = "vault_meta";
/// The sealed records, by sequence number: the leaves of the Merkle log.
pub const SEQ_RECORD: &str = "vault_seq_record";
/// Each record's data key, wrapped by the vault key. Deleting one shreds the record.
pub const SEQ_DATAKEY: &str = "vault_seq_datakey";
/// Every complete subtree hash of the Merkle log, by level and index.
pub const LEVEL_INDEX_NODE: &str = "vault_level_index_node";
/// Signed checkpoints, by log size.
pub const SIZE_CHECKPOINT: &str = "vault_size_checkpoint";
/// Where an event's capture record is.
pub const EVENTID_SEQ: &str = "vault_eventid_seq";

pub const COLUMNS: &[ColumnSpec] = &[
    ColumnSpec::lookups(VAULT_META),
    ColumnSpec::new(SEQ_RECORD),
    ColumnSpec::lookups(SEQ_DATAKEY),
    ColumnSpec::lookups(LEVEL_INDEX_NODE),
    ColumnSpec::new(SIZE_CHECKPOINT),
    ColumnSpec::lookups(EVENTID_SEQ),
];
