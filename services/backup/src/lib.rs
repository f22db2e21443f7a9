//! Archipel's backups: encrypted, signed snapshots of a node, written to a
//! local directory or S3-compatible object storage.
//!
//! This crate knows nothing about RocksDB, Matrix or the vault. The caller
//! hands it named [`Source`]s (a RocksDB checkpoint it made, the vault's
//! checkpoint, the media directory, the node key, the config) and facts for
//! the manifest (the server name, the vault checkpoint note); on restore it
//! gets the same layout back under a new data directory.
//!
//! # Layers
//!
//! ```text
//! files ──tar──> zstd (level 3, multithreaded) ──> age ──> target object
//! ```
//!
//! One pass, streaming: every file is read once, hashed (SHA-256) on the
//! way into the tar stream, and nothing unencrypted is ever written to a
//! disk. age encrypts either to X25519 recipients (`age1...`; the private
//! keys live off the node) or to a passphrase (scrypt), for an offline
//! recovery copy. age forbids mixing the two in one file, so a recovery copy
//! is a separate backup.
//!
//! # Objects
//!
//! A backup is named after its UTC start time, `archipel-20260512T020000Z`
//! (sorts by time as a string), and is three objects side by side:
//!
//! | object | content |
//! |---|---|
//! | `<name>.tar.zst.age` | the archive: `age(zstd(tar))` |
//! | `<name>.recipients.txt` | the public recipients, one a line, in the clear |
//! | `<name>.manifest.age` | the manifest object, age-encrypted, written last |
//!
//! A backup is *complete* exactly when its manifest object exists: targets
//! make an object visible only once it is whole (a directory target writes a
//! hidden temporary file, fsyncs and renames it; S3 completes a multipart
//! upload), and the manifest object is written only after the archive. A
//! failed run removes what it wrote and never touches other backups.
//!
//! The recipients sidecar lets a wrong key be told which keys would work
//! (an age header does not name its recipients). It is not trusted for
//! anything else; the same list is inside the signed manifest.
//!
//! # The archive
//!
//! A tar stream (GNU headers, long names supported): for each source its
//! directory tree or file under the source's name (`db/000012.sst`,
//! `vault/db/...`, `signing.key`), parents before children, names sorted;
//! then, as the last entry, `ARCHIPEL-BACKUP-MANIFEST.json`: the signed
//! manifest.
//!
//! # The manifest
//!
//! The signed manifest is `{"manifest": {...}, "signer": <base64 Ed25519
//! public key>, "signature": <base64>}`, the signature over
//! `"archipel-backup manifest v1\n"` followed by the exact bytes of the
//! `manifest` value. Its fields:
//!
//! - `format` (1), `name`, `created` (RFC 3339), `server_name`;
//! - `metadata`: caller's facts, e.g. `vault_checkpoint`;
//! - `recipients`: the public recipient strings;
//! - `compression` (`zstd`);
//! - `entries`: `{path, kind: dir|file, mode, size, sha256}` for every
//!   directory and file, in archive order;
//! - `total_bytes`: the sum of file sizes.
//!
//! The manifest object is `{"signed_manifest": <the signed manifest>,
//! "seal": {archive_object, archive_size, signed_manifest_sha256}, "signer",
//! "signature"}`, the signature over `"archipel-backup seal v1\n"` and the
//! `seal` value's bytes. The seal names a truncated archive from its size
//! before anything is downloaded, and binds the archive to this manifest.
//! (Alterations are found by age itself: every 64 KiB chunk and the end of
//! the stream are authenticated.)
//!
//! # Reading
//!
//! [`verify`] and [`restore`] decrypt the manifest object (a wrong key gets
//! an error listing the recipients from the sidecar), check both
//! signatures (against the node's key when the caller passes it), compare
//! the archive's size with the seal, then stream the archive and check every
//! entry's path, kind, size and hash, that nothing is missing or extra, that
//! the embedded manifest is the same, and that the ciphertext's size
//! matches the seal. [`restore`] unpacks into a hidden sibling of the
//! destination and renames it into place only after all of that (and the
//! caller's own check) passed.
//!
//! # Threads
//!
//! The API is blocking. Creating runs two threads (reading and hashing;
//! compressing, encrypting and writing) plus zstd's workers; reading runs
//! two (reading and decrypting; decompressing, checking and writing). The
//! S3 target runs its own small tokio runtime: call this crate from a plain
//! thread (`spawn_blocking` in async code), not from inside an async task.

mod age_stream;
mod create;
mod error;
mod hashing;
mod list;
mod manifest;
mod naming;
mod open;
mod pipe;
mod progress;
mod restore;
mod retention;
pub mod target;
mod verify;

pub use age::secrecy::SecretString;
pub use age_stream::{DecryptionKey, Encryption, PASSPHRASE_RECIPIENT};
pub use create::{BackupInfo, CreateOptions, Source, create};
pub use error::{Error, Result};
pub use list::{BackupSummary, list};
pub use manifest::{Entry, EntryKind, MANIFEST_ENTRY, Manifest, sha256_hex};
/// For tools that build a backup by hand, e.g. the fuzz targets.
pub use manifest::{Seal, seal_manifest, sign_manifest};
pub use naming::BackupName;
pub use open::{CheckedBackup, Unlock};
pub use progress::{NoProgress, Phase, Progress};
pub use restore::{RestoreCheck, restore};
pub use retention::{KeepReason, PruneReport, RetentionPolicy, prune, retain};
pub use target::{DirTarget, S3Config, S3Target, Target};
pub use verify::{PartsCheck, read_manifest, verify, verify_parts};
