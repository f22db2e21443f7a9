//! `vault verify`: recompute the log from the stored records and hold it
//! against every signed checkpoint.
//!
//! Trusts nothing stored except the records themselves and the signatures
//! (checked with a key given from outside). Every problem is named: which
//! record is missing, altered or out of place, which stored hash disagrees,
//! which checkpoint the records no longer reproduce, and whether the log is
//! shorter than a size it once signed (truncation).

use std::fmt;

use base64::{Engine, engine::general_purpose::STANDARD as B64};
use ed25519_dalek::VerifyingKey;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::{
    Result,
    checkpoint::Checkpoint,
    log::Log,
    merkle::{self, Frontier, Hash, NodeSource},
    record::{Entry, Record},
};

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "finding", rename_all = "snake_case")]
pub enum Finding {
    /// No record at this position, though later records or the log size say there should be.
    Missing {
        seq: u64,
    },
    /// The record's bytes no longer hash to the leaf the log recorded.
    Altered {
        seq: u64,
    },
    /// The record's bytes are not a record at all.
    Unreadable {
        seq: u64,
        reason: String,
    },
    /// The record stored at `seq` says it belongs at `claims`.
    OutOfPlace {
        seq: u64,
        claims: u64,
    },
    /// A media copy of the record is gone or differs from what the record sealed.
    MediaMissing {
        seq: u64,
        part: u32,
    },
    MediaAltered {
        seq: u64,
        part: u32,
    },
    /// A record that was never erased has lost its data key.
    DataKeyMissing {
        seq: u64,
    },
    /// A stored interior hash of the log disagrees with its children (proofs
    /// served from it would not verify).
    NodeAltered {
        level: u32,
        index: u64,
    },
    /// The records no longer reproduce the root this checkpoint signed.
    CheckpointMismatch {
        size: u64,
    },
    /// A stored checkpoint whose signature does not check out.
    CheckpointInvalid {
        size: u64,
        reason: String,
    },
    /// The log holds fewer records than a checkpoint it signed.
    Truncated {
        checkpoint_size: u64,
        log_size: u64,
    },
    /// The log's recorded size disagrees with the records present.
    SizeMismatch {
        recorded: u64,
        found: u64,
    },
    /// A decryption record's plaintext is not what its session key makes of
    /// the ciphertext record it names.
    DecryptionMismatch {
        seq: u64,
        ciphertext_seq: u64,
        reason: String,
    },
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Missing { seq } => write!(f, "record {seq} is missing"),
            Self::Altered { seq } => write!(
                f,
                "record {seq} was altered: it no longer matches its leaf hash"
            ),
            Self::Unreadable { seq, reason } => write!(f, "record {seq} is unreadable: {reason}"),
            Self::OutOfPlace { seq, claims } => {
                write!(f, "record {seq} is out of place: it is record {claims}")
            }
            Self::MediaMissing { seq, part: 0 } => {
                write!(f, "record {seq}: a media file it references is missing")
            }
            Self::MediaMissing { seq, part } => {
                write!(f, "record {seq}: media copy {part} is missing")
            }
            Self::MediaAltered { seq, part: 0 } => {
                write!(f, "record {seq}: a media file it references was altered")
            }
            Self::MediaAltered { seq, part } => {
                write!(f, "record {seq}: media copy {part} was altered")
            }
            Self::DataKeyMissing { seq } => write!(
                f,
                "record {seq}: its data key is gone, without an erasure decision"
            ),
            Self::NodeAltered { level, index } => write!(
                f,
                "the log's stored hash over records {}..{} was altered",
                index << level,
                (index + 1) << level
            ),
            Self::CheckpointMismatch { size } => write!(
                f,
                "the records no longer reproduce the signed checkpoint at size {size}"
            ),
            Self::CheckpointInvalid { size, reason } => {
                write!(f, "the checkpoint at size {size} is invalid: {reason}")
            }
            Self::Truncated {
                checkpoint_size,
                log_size,
            } => write!(
                f,
                "the log was truncated: a checkpoint signed {checkpoint_size} records, the log holds {log_size}"
            ),
            Self::SizeMismatch { recorded, found } => write!(
                f,
                "the log says it holds {recorded} records, {found} were found"
            ),
            Self::DecryptionMismatch {
                seq,
                ciphertext_seq,
                reason,
            } => write!(
                f,
                "decryption record {seq} does not follow from record {ciphertext_seq}: {reason}"
            ),
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// Records found and hashed.
    pub records: u64,
    /// The log size as recorded.
    pub log_size: u64,
    /// The root recomputed from the records.
    #[serde(serialize_with = "as_base64")]
    pub root: Hash,
    pub checkpoints_checked: usize,
    /// The newest valid checkpoint: size.
    pub latest_checkpoint: Option<u64>,
    pub findings: Vec<Finding>,
    /// Each decryption record and the ciphertext record it names, for the
    /// check that needs the vault key ([`crate::Vault::verify_decryptions`]).
    #[serde(skip)]
    pub decryptions: Vec<(u64, u64)>,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.findings.is_empty()
    }
}

fn as_base64<S: serde::Serializer>(hash: &Hash, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&B64.encode(hash))
}

/// Recomputes the log from its records and checks it against every checkpoint
/// signed by `key`. `progress` hears `(records done, records expected)`.
pub fn verify(
    log: &Log,
    media_dir: &std::path::Path,
    key: &VerifyingKey,
    mut progress: impl FnMut(u64, u64),
) -> Result<Report> {
    let mut findings = Vec::new();
    let recorded_size = log.size()?;

    let mut signed: Vec<(u64, Hash)> = Vec::new();
    for stored in log.checkpoints()? {
        match Checkpoint::open(&stored.note, key) {
            Ok(checkpoint) if checkpoint.size == stored.size => {
                signed.push((checkpoint.size, checkpoint.root));
            }
            Ok(checkpoint) => findings.push(Finding::CheckpointInvalid {
                size: stored.size,
                reason: format!(
                    "it is filed at size {} but signs size {}",
                    stored.size, checkpoint.size
                ),
            }),
            Err(e) => findings.push(Finding::CheckpointInvalid {
                size: stored.size,
                reason: e.to_string(),
            }),
        }
    }
    let expected_total = recorded_size.max(signed.last().map_or(0, |c| c.0));
    let mut pending_checkpoints = signed.iter().peekable();

    // From the records themselves: what the checkpoints must match.
    let mut from_records = Frontier::default();
    // From the stored leaf hashes: checks the stored interior nodes proofs use.
    let mut from_stored = Frontier::default();
    let mut seq = 0u64;
    // Erased records have lost their keys and media on purpose; known only
    // once their erasure entry (later in the log) is read.
    let mut erased = std::collections::HashSet::new();
    let mut deferred: Vec<Finding> = Vec::new();
    let mut decryptions = Vec::new();
    let mut media_checked = std::collections::HashSet::new();

    let mut check_checkpoints = |frontier: &Frontier, findings: &mut Vec<Finding>| {
        while let Some(&&(size, root)) = pending_checkpoints.peek() {
            if size > frontier.size() {
                break;
            }
            if size == frontier.size() && frontier.root() != root {
                findings.push(Finding::CheckpointMismatch { size });
            }
            pending_checkpoints.next();
        }
    };
    check_checkpoints(&from_records, &mut findings);

    for row in log.records.iter() {
        let (k, bytes) = row?;
        let Some(at) = archipel_store::key::parse_u64(&k) else {
            findings.push(Finding::Unreadable {
                seq,
                reason: "a record key is not a sequence number".into(),
            });
            continue;
        };
        while seq < at {
            findings.push(Finding::Missing { seq });
            let stand_in = stored_leaf(log, seq).unwrap_or([0; 32]);
            append_checked(log, &mut from_stored, stand_in, &mut findings);
            from_records.append(stand_in);
            check_checkpoints(&from_records, &mut findings);
            seq += 1;
        }
        let leaf = merkle::leaf_hash(&bytes);
        match Record::from_bytes(&bytes) {
            Ok(record) => {
                if record.seq != seq {
                    findings.push(Finding::OutOfPlace {
                        seq,
                        claims: record.seq,
                    });
                }
                check_media(log, media_dir, &record, &mut media_checked, &mut deferred);
                if record.sealed().is_some() && !log.has_data_key(seq)? {
                    deferred.push(Finding::DataKeyMissing { seq });
                }
                match &record.entry {
                    Entry::Erasure(erasure) => {
                        erased.insert(erasure.erased_seq);
                    }
                    Entry::Decryption(decryption) => {
                        decryptions.push((seq, decryption.ciphertext_seq));
                    }
                    Entry::Event(_) | Entry::Procedure(_) | Entry::SessionKey(_) => {}
                }
            }
            Err(e) => findings.push(Finding::Unreadable {
                seq,
                reason: e.to_string(),
            }),
        }
        let stored = stored_leaf(log, seq);
        if stored != Some(leaf) {
            findings.push(Finding::Altered { seq });
        }
        append_checked(log, &mut from_stored, stored.unwrap_or(leaf), &mut findings);
        from_records.append(leaf);
        check_checkpoints(&from_records, &mut findings);
        seq += 1;
        if seq.is_multiple_of(4096) {
            progress(seq, expected_total);
        }
    }
    let found = seq;
    findings.extend(deferred.into_iter().filter(|f| match f {
        Finding::DataKeyMissing { seq } | Finding::MediaMissing { seq, .. } => {
            !erased.contains(seq)
        }
        _ => true,
    }));
    // Records missing at the end, up to the recorded size.
    while seq < recorded_size {
        findings.push(Finding::Missing { seq });
        seq += 1;
    }
    if found != recorded_size {
        findings.push(Finding::SizeMismatch {
            recorded: recorded_size,
            found,
        });
    }
    if let Some(&(largest, _)) = signed.last()
        && largest > found
    {
        findings.push(Finding::Truncated {
            checkpoint_size: largest,
            log_size: found,
        });
    }
    progress(found, expected_total);
    Ok(Report {
        records: found,
        log_size: recorded_size,
        root: from_records.root(),
        checkpoints_checked: signed.len(),
        latest_checkpoint: signed.iter().map(|c| c.0).filter(|&s| s <= found).max(),
        findings,
        decryptions,
    })
}

fn stored_leaf(log: &Log, seq: u64) -> Option<Hash> {
    log.node(0, seq).ok()
}

/// Appends a stored leaf and compares every interior node it completes with
/// the stored one.
fn append_checked(log: &Log, frontier: &mut Frontier, leaf: Hash, findings: &mut Vec<Finding>) {
    for (level, index, hash) in frontier.append(leaf) {
        if level > 0 && log.node(level, index).ok() != Some(hash) {
            findings.push(Finding::NodeAltered { level, index });
        }
    }
}

fn check_media(
    log: &Log,
    media_dir: &std::path::Path,
    record: &Record,
    checked: &mut std::collections::HashSet<std::path::PathBuf>,
    findings: &mut Vec<Finding>,
) {
    for copy in record.media() {
        // A file the vault holds once, on record in its media index; or an
        // older record's own copy, whose sealed hash the record holds.
        let (path, sealed_sha256) = if copy.sha256.is_some() {
            match crate::media::sealed_file_of(log, media_dir, copy) {
                Some(file) => file,
                None => {
                    findings.push(Finding::MediaMissing {
                        seq: record.seq,
                        part: copy.part,
                    });
                    continue;
                }
            }
        } else {
            (
                crate::media_path(media_dir, record.seq, copy.part),
                copy.sealed_sha256.clone(),
            )
        };
        // A file many records reference is read once.
        if !checked.insert(path.clone()) {
            continue;
        }
        match sha256_of_file(&path) {
            Ok(hash) => {
                if hash != sealed_sha256 {
                    findings.push(Finding::MediaAltered {
                        seq: record.seq,
                        part: copy.part,
                    });
                }
            }
            Err(_) => findings.push(Finding::MediaMissing {
                seq: record.seq,
                part: copy.part,
            }),
        }
    }
}

/// SHA-256 (base64) of a file, read as a stream.
fn sha256_of_file(path: &std::path::Path) -> std::io::Result<String> {
    let mut hash = Sha256::new();
    std::io::copy(&mut std::fs::File::open(path)?, &mut hash)?;
    Ok(B64.encode(hash.finalize()))
}
