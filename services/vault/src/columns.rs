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

/// Erased records: the reference of the decision that erased each.
pub const SEQ_ERASURE: &str = "vault_seq_erasure";
/// Roles of users (capstone official, official, external); official if absent.
pub const USERID_ROLE: &str = "vault_userid_role";
/// Users who may decide on requests (records managers).
pub const USERID_RECORDSMANAGER: &str = "vault_userid_recordsmanager";
/// Who may request exclusions on a user's behalf: `user 0xFF delegate`.
pub const USERID_DELEGATE: &str = "vault_userid_delegate";
/// Room classifications (business, private, party-political); business if absent.
pub const ROOMID_CLASSIFICATION: &str = "vault_roomid_classification";
/// Exclusion requests and their decisions, by reference (`EX-000001`).
pub const REQUESTID_REQUEST: &str = "vault_requestid_request";
/// Legal holds, by reference (`LH-000001`).
pub const HOLDID_HOLD: &str = "vault_holdid_hold";
/// Erased events whose copies outside the vault (the homeserver's) still
/// have to be purged: done after the erasure commits, redone after a crash.
pub const EVENTID_PENDINGPURGE: &str = "vault_eventid_pendingpurge";

/// Witnessing: the newest checkpoint co-signed per peer log (origin), and
/// any alarm about it.
pub const ORIGIN_WITNESSED: &str = "vault_origin_witnessed";
/// Cosignatures of this node's checkpoints: `witness 0xFF size`.
pub const WITNESS_SIZE_COSIGNATURE: &str = "vault_witness_size_cosignature";

/// The records of each room, in log order: `room 0xFF seq`.
pub const ROOMID_SEQ: &str = "vault_roomid_seq";
/// The procedure steps and erasures of the log, by sequence number: the
/// audit trail, read without walking every record.
pub const SEQ_STEP: &str = "vault_seq_step";
/// Destruction lists, by reference (`DL-000001`).
pub const LISTID_DESTRUCTIONLIST: &str = "vault_listid_destructionlist";

/// Encrypted events whose room key the archive member does not hold yet,
/// by sequence number: a visible gap until their decryption record comes.
pub const SEQ_PENDINGDECRYPTION: &str = "vault_seq_pendingdecryption";
/// The same, by Megolm session: `room 0xFF session 0xFF seq`.
pub const ROOMID_SESSIONID_SEQ: &str = "vault_roomid_sessionid_seq";
/// The decryption record of each decrypted event record.
pub const SEQ_DECRYPTIONSEQ: &str = "vault_seq_decryptionseq";
/// The session key record of each Megolm session that reaches furthest
/// back: `room 0xFF session` -> first index (4 bytes) and record (8 bytes).
pub const ROOMID_SESSIONID_KEYSEQ: &str = "vault_roomid_sessionid_keyseq";

/// Rooms the archive member was removed from and has not returned to.
pub const ROOMID_COVERAGEGAP: &str = "vault_roomid_coveragegap";

/// Rooms an import made ([`crate::import`]), and whose chat each holds:
/// its owner stands for the chat's other authors in exclusion requests.
pub const ROOMID_IMPORTOWNER: &str = "vault_roomid_importowner";

/// Media files the vault holds once each, by name ([`crate::media`]): the
/// wrapped key and hashes of each.
pub const BLOB_BLOB: &str = "vault_blob_blob";
/// The stored file each `mxc://` URI names.
pub const MXC_BLOB: &str = "vault_mxc_blob";
/// The records that reference each stored file: `name 0xFF seq`.
pub const BLOB_SEQ: &str = "vault_blob_seq";

/// Transfers to the archive service (e-Depot): reference -> transfer.
pub const TRANSFERID_TRANSFER: &str = "vault_transferid_transfer";
/// Records the archive service confirmed it received: seq -> the
/// transfer's reference.
pub const SEQ_TRANSFER: &str = "vault_seq_transfer";

pub const COLUMNS: &[ColumnSpec] = &[
    ColumnSpec::lookups(VAULT_META),
    // Sealed content and wrapped keys: ciphertext, which does not compress.
    ColumnSpec::new(SEQ_RECORD).incompressible(),
    ColumnSpec::lookups(SEQ_DATAKEY).incompressible(),
    ColumnSpec::lookups(LEVEL_INDEX_NODE),
    ColumnSpec::new(SIZE_CHECKPOINT),
    ColumnSpec::lookups(EVENTID_SEQ),
    ColumnSpec::lookups(SEQ_ERASURE),
    ColumnSpec::lookups(USERID_ROLE),
    ColumnSpec::lookups(USERID_RECORDSMANAGER),
    ColumnSpec::new(USERID_DELEGATE),
    ColumnSpec::lookups(ROOMID_CLASSIFICATION),
    ColumnSpec::new(REQUESTID_REQUEST),
    ColumnSpec::new(HOLDID_HOLD),
    ColumnSpec::new(EVENTID_PENDINGPURGE),
    ColumnSpec::new(LISTID_DESTRUCTIONLIST),
    ColumnSpec::new(ROOMID_SEQ),
    ColumnSpec::new(SEQ_STEP),
    ColumnSpec::lookups(ORIGIN_WITNESSED),
    ColumnSpec::new(WITNESS_SIZE_COSIGNATURE),
    ColumnSpec::new(SEQ_PENDINGDECRYPTION),
    ColumnSpec::new(ROOMID_SESSIONID_SEQ),
    ColumnSpec::lookups(SEQ_DECRYPTIONSEQ),
    ColumnSpec::lookups(ROOMID_SESSIONID_KEYSEQ),
    ColumnSpec::lookups(ROOMID_COVERAGEGAP),
    ColumnSpec::lookups(ROOMID_IMPORTOWNER),
    ColumnSpec::lookups(BLOB_BLOB),
    ColumnSpec::lookups(MXC_BLOB),
    ColumnSpec::new(BLOB_SEQ),
    ColumnSpec::new(TRANSFERID_TRANSFER),
    ColumnSpec::lookups(SEQ_TRANSFER),
];
