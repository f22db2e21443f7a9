//! `vault verify-export`: checks an export offline, with nothing but the
//! export and the verifier key.
//!
//! For every line of every `records.jsonl`: the record hashes to a leaf
//! whose inclusion proof reaches the root of the signed checkpoint; the
//! event shown is exactly what the record sealed (opened with the line's
//! data key); every attachment is the media copy the record sealed (sealed
//! again with the line's data key and nonce, it hashes to the copy's hash in
//! the record); an erased record is erased in the log too (no data key).
//!
//! The signed `manifest.txt` then shows the export whole: exactly its
//! folders, each with exactly the records the scope selected, and each
//! `conversation.html` as the vault wrote it.

use std::path::{Path, PathBuf};

use base64::{Engine, engine::general_purpose::STANDARD as B64};
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::{ExportAttachment, ExportLine, Manifest};
use crate::{
    Error, Result,
    checkpoint::{Checkpoint, open_note, parse_verifier_key},
    merkle::{self, Hash},
    record::{Entry, MediaCopy, Record},
    seal::DataKey,
};

/// What a package's signatures vouch for: its checkpoint, and the body of
/// its signed `manifest.txt`.
pub(crate) struct Signed {
    pub key_text: String,
    /// Whether the key came from the package itself (untrusted).
    pub key_from_export: bool,
    /// The vault's name, from the key.
    pub name: String,
    pub checkpoint: Checkpoint,
    pub manifest: String,
}

impl Signed {
    /// Opens `checkpoint.txt` and `manifest.txt` in `dir` with `key` (the
    /// verifier key in signed-note text form from a trusted source), or
    /// else with the package's own `verifier-key.txt`.
    pub fn open(dir: &Path, key: Option<&str>) -> Result<Self> {
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read_to_string(&path)
                .map_err(|e| Error::io(format!("reading {}", path.display()), e))
        };
        let (key_text, key_from_export) = match key {
            Some(key) => (key.trim().to_owned(), false),
            None => (read("verifier-key.txt")?.trim().to_owned(), true),
        };
        let (name, verifying_key) =
            parse_verifier_key(&key_text).map_err(|e| Error::Refused(e.to_string()))?;
        let checkpoint = Checkpoint::open(&read("checkpoint.txt")?, &verifying_key)
            .map_err(|e| Error::Refused(format!("checkpoint.txt: {e}")))?;
        let manifest = open_note(&read("manifest.txt")?, &name, &verifying_key)
            .map_err(|e| Error::Refused(format!("manifest.txt: {e}")))?;
        Ok(Self {
            key_text,
            key_from_export,
            name,
            checkpoint,
            manifest,
        })
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct ExportReport {
    pub checkpoint_size: u64,
    pub verifier_key: String,
    /// Whether the key came from the caller (trusted) or from the export itself.
    pub key_from_export: bool,
    pub records: u64,
    pub problems: Vec<String>,
}

impl ExportReport {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Checks the export in `dir`. `key` is the verifier key in signed-note
/// text form from a trusted source; without it the export's own
/// `verifier-key.txt` is used (and the report says so).
pub fn verify_export(dir: &Path, key: Option<&str>) -> Result<ExportReport> {
    let Signed {
        key_text,
        key_from_export,
        name,
        checkpoint,
        manifest,
    } = Signed::open(dir, key)?;
    let manifest = Manifest::parse(&manifest, &name)
        .map_err(|e| Error::Refused(format!("manifest.txt: {e}")))?;

    let mut report = ExportReport {
        checkpoint_size: checkpoint.size,
        verifier_key: key_text,
        key_from_export,
        records: 0,
        problems: Vec::new(),
    };
    if manifest.checkpoint_size != checkpoint.size {
        report.problems.push(format!(
            "manifest.txt is for a checkpoint of {} records, checkpoint.txt signs {}",
            manifest.checkpoint_size, checkpoint.size
        ));
    }
    let files = record_files(dir)?;
    for file in &files {
        let text = std::fs::read_to_string(file)
            .map_err(|e| Error::io(format!("reading {}", file.display()), e))?;
        let conversation = file.parent().unwrap_or(dir);
        let folder = conversation
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let shown = format!("{folder}/records.jsonl");
        let mut seqs = Vec::new();
        for (n, line) in text.lines().enumerate() {
            report.records += 1;
            match check_line(line, &checkpoint, conversation) {
                Ok(seq) => seqs.push(seq),
                Err(problem) => report
                    .problems
                    .push(format!("{shown} line {}: {problem}", n + 1)),
            }
        }
        let Some(listed) = manifest.conversations.iter().find(|c| c.folder == folder) else {
            report.problems.push(format!(
                "{folder}/ is not one of the export's conversations (manifest.txt)"
            ));
            continue;
        };
        for seq in &seqs {
            if !listed.seqs.contains(seq) {
                report.problems.push(format!(
                    "{shown}: record {seq} is not one the export selected for this conversation"
                ));
            }
        }
        for seq in &listed.seqs {
            if !seqs.contains(seq) {
                report
                    .problems
                    .push(format!("{shown}: record {seq} of the export is missing"));
            }
        }
        let page = conversation.join("conversation.html");
        match std::fs::read(&page) {
            Ok(bytes) if B64.encode(Sha256::digest(&bytes)) == listed.html_sha256 => {}
            Ok(_) => report.problems.push(format!(
                "{folder}/conversation.html differs from the page the vault wrote"
            )),
            Err(e) => report
                .problems
                .push(format!("{folder}/conversation.html cannot be read: {e}")),
        }
    }
    for listed in &manifest.conversations {
        if !files
            .iter()
            .any(|f| f.parent().and_then(|p| p.file_name()) == Some(listed.folder.as_ref()))
        {
            report.problems.push(format!(
                "the conversation {}/ of the export is missing",
                listed.folder
            ));
        }
    }
    Ok(report)
}

fn record_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in
        std::fs::read_dir(dir).map_err(|e| Error::io(format!("reading {}", dir.display()), e))?
    {
        let path = entry
            .map_err(|e| Error::io(format!("reading {}", dir.display()), e))?
            .path()
            .join("records.jsonl");
        if path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    if files.is_empty() {
        return Err(Error::NotFound(format!(
            "{} holds no conversation (no */records.jsonl)",
            dir.display()
        )));
    }
    Ok(files)
}

/// Checks one line of `records.jsonl`; returns the record's number.
fn check_line(
    line: &str,
    checkpoint: &Checkpoint,
    conversation: &Path,
) -> std::result::Result<u64, String> {
    let line: ExportLine =
        serde_json::from_str(line).map_err(|e| format!("not an export line: {e}"))?;
    let record = Record::from_bytes(line.record.as_bytes())
        .map_err(|e| format!("the record does not parse: {e}"))?;
    if record.seq != line.seq {
        return Err(format!(
            "the line says record {} but holds record {}",
            line.seq, record.seq
        ));
    }
    if line.tree_size != checkpoint.size {
        return Err(format!(
            "the proof is for {} records, the checkpoint signs {}",
            line.tree_size, checkpoint.size
        ));
    }
    check_inclusion(line.seq, &line.record, &line.proof, checkpoint)?;
    let Some(sealed) = record.sealed() else {
        return Err(format!("record {} is not a conversation record", line.seq));
    };
    let seq = line.seq;
    let checked = match (&line.data_key, &line.event, &line.erased) {
        (Some(key), Some(event), None) => {
            let (key, original) = open_shown(line.seq, key, sealed, "record")?;
            if original != *event {
                return Err(format!(
                    "record {}: the event shown differs from the archived original",
                    line.seq
                ));
            }
            check_attachments(
                line.seq,
                record.media(),
                &line.attachments,
                &key,
                conversation,
            )?;
            match &line.decryption {
                Some(decryption) => {
                    check_decryption(line.seq, original, decryption, checkpoint, conversation)
                }
                None => Ok(()),
            }
        }
        (None, None, Some(reference)) => check_erasure(&line, reference, checkpoint),
        _ => Err(format!(
            "record {}: a line carries either a data key and its event, or an erasure",
            line.seq
        )),
    };
    checked.map(|()| seq)
}

/// Each media file of record `seq` (`copies`) is shipped (`attachments`),
/// and each shipped file is the one the record archived. `key` is the
/// record's data key, for older records' own copies.
fn check_attachments(
    seq: u64,
    copies: &[MediaCopy],
    attachments: &[ExportAttachment],
    key: &DataKey,
    conversation: &Path,
) -> std::result::Result<(), String> {
    for (i, copy) in copies.iter().enumerate() {
        let part = i as u32 + 1;
        let Some(shipped) = attachments.iter().find(|a| a.part == part) else {
            return Err(format!(
                "record {seq}: its attachment {} (part {part}) is not in the export",
                copy.mxc
            ));
        };
        // A name, never a path: an export must not make the checker read
        // files outside it.
        if shipped.file.is_empty()
            || shipped.file.contains(['/', '\\'])
            || shipped.file.starts_with('.')
        {
            return Err(format!(
                "record {seq}: the attachment name `{}` is not a plain file name",
                shipped.file
            ));
        }
        let path = conversation.join("attachments").join(&shipped.file);
        let unreadable = |e: std::io::Error| {
            format!(
                "record {seq}: attachment attachments/{} cannot be read: {e}",
                shipped.file
            )
        };
        // A file the vault holds once: the record names its SHA-256.
        if let Some(sha256) = &copy.sha256 {
            let mut hash = Sha256::new();
            std::fs::File::open(&path)
                .and_then(|mut file| std::io::copy(&mut file, &mut hash))
                .map_err(unreadable)?;
            if &B64.encode(hash.finalize()) != sha256 {
                return Err(format!(
                    "record {seq}: attachment attachments/{} differs from the archived file",
                    shipped.file
                ));
            }
            continue;
        }
        let bytes = std::fs::read(&path).map_err(unreadable)?;
        let nonce = B64
            .decode(&shipped.nonce)
            .map_err(|_| format!("record {seq}: the attachment's nonce is not base64"))?;
        let resealed = key
            .reseal(&bytes, &nonce, seq, copy.part)
            .ok_or_else(|| format!("record {seq}: the attachment's nonce is too short"))?;
        if B64.encode(Sha256::digest(&resealed)) != copy.sealed_sha256 {
            return Err(format!(
                "record {seq}: attachment attachments/{} differs from the archived copy",
                shipped.file
            ));
        }
    }
    if let Some(extra) = attachments
        .iter()
        .find(|a| a.part == 0 || a.part as usize > copies.len())
    {
        return Err(format!(
            "record {seq}: attachment attachments/{} is not one the record archived",
            extra.file
        ));
    }
    Ok(())
}

/// Record `seq` as an export shows it (`record`, with its inclusion
/// `proof`), checked to be in the signed log, and read; `what` names it
/// in errors.
fn proven_record(
    seq: u64,
    record: &str,
    proof: &[String],
    checkpoint: &Checkpoint,
    what: &str,
) -> std::result::Result<Record, String> {
    check_inclusion(seq, record, proof, checkpoint)?;
    Record::from_bytes(record.as_bytes()).map_err(|e| format!("{what} does not parse: {e}"))
}

/// `record` (the bytes hashed into the log) is record `seq` of the
/// checkpoint's tree, by `proof`.
fn check_inclusion(
    seq: u64,
    record: &str,
    proof: &[String],
    checkpoint: &Checkpoint,
) -> std::result::Result<(), String> {
    check_leaf(
        seq,
        &merkle::leaf_hash(record.as_bytes()),
        proof,
        checkpoint,
    )
}

/// `leaf` is the leaf hash of record `seq` of the checkpoint's tree, by
/// `proof` (base64 hashes).
pub(crate) fn check_leaf(
    seq: u64,
    leaf: &Hash,
    proof: &[String],
    checkpoint: &Checkpoint,
) -> std::result::Result<(), String> {
    let proof: Vec<Hash> = proof
        .iter()
        .map(|h| B64.decode(h).ok().and_then(|b| b.try_into().ok()))
        .collect::<Option<_>>()
        .ok_or("the proof is not a list of base64 SHA-256 hashes")?;
    if merkle::verify_inclusion(seq, checkpoint.size, leaf, &proof, &checkpoint.root) {
        Ok(())
    } else {
        Err(format!(
            "record {seq} is not in the signed log (its proof does not reach the checkpoint's root)"
        ))
    }
}

/// A decryption shown for record `seq`: its record is in the signed log,
/// names record `seq`, seals exactly the plaintext shown, names a session
/// key record in the signed log that seals exactly the session key shown
/// (an older record seals that key itself), and that session key decrypts
/// the archived ciphertext to that plaintext.
fn check_decryption(
    seq: u64,
    ciphertext: Value,
    decryption: &super::DecryptionProof,
    checkpoint: &Checkpoint,
    conversation: &Path,
) -> std::result::Result<(), String> {
    let dseq = decryption.seq;
    let record = proven_record(
        dseq,
        &decryption.record,
        &decryption.proof,
        checkpoint,
        &format!("the decryption record of {seq}"),
    )?;
    let Entry::Decryption(entry) = &record.entry else {
        return Err(format!("record {dseq} is not a decryption record"));
    };
    if record.seq != dseq || entry.ciphertext_seq != seq {
        return Err(format!(
            "record {dseq} is shown as the decryption of {seq}, but is not"
        ));
    }
    let (key, sealed) = open_shown(dseq, &decryption.data_key, &entry.sealed, "decryption")?;
    let archived_key = match (entry.key_seq, &decryption.key_record) {
        (None, _) => sealed["session_key"].clone(),
        (Some(key_seq), Some(shown)) if shown.seq == key_seq && key_seq < dseq => {
            check_key_record(shown, checkpoint)?
        }
        (Some(key_seq), _) => {
            return Err(format!(
                "record {dseq}: its session key record {key_seq} is not shown"
            ));
        }
    };
    if sealed["plaintext"] != decryption.plaintext.as_str()
        || archived_key != decryption.session_key
    {
        return Err(format!(
            "record {dseq}: the plaintext or session key shown differs from the archived one"
        ));
    }
    let derived = crate::megolm::decrypt(&ciphertext, &decryption.session_key)
        .map_err(|e| format!("record {dseq}: {e}"))?;
    if derived != decryption.plaintext {
        return Err(format!(
            "record {dseq}: its session key decrypts record {seq} to another plaintext"
        ));
    }
    check_attachments(
        dseq,
        &entry.media,
        &decryption.attachments,
        &key,
        conversation,
    )
}

/// A session key record shown in the signed log: its sealed key.
fn check_key_record(
    shown: &super::SessionKeyProof,
    checkpoint: &Checkpoint,
) -> std::result::Result<Value, String> {
    let seq = shown.seq;
    let record = proven_record(
        seq,
        &shown.record,
        &shown.proof,
        checkpoint,
        &format!("session key record {seq}"),
    )?;
    let Entry::SessionKey(entry) = &record.entry else {
        return Err(format!("record {seq} is not a session key record"));
    };
    if record.seq != seq {
        return Err(format!("record {seq} is shown as another record"));
    }
    let (_, key) = open_shown(seq, &shown.data_key, &entry.sealed, "session key record")?;
    Ok(key)
}

/// Record `seq`'s sealed JSON (`sealed`, base64), opened with the data
/// key an export shows for it (`data_key`, base64): the key, and the JSON.
/// `what` names the record in errors.
fn open_shown(
    seq: u64,
    data_key: &str,
    sealed: &str,
    what: &str,
) -> std::result::Result<(DataKey, Value), String> {
    let key: [u8; 32] = B64
        .decode(data_key)
        .ok()
        .and_then(|k| k.try_into().ok())
        .ok_or_else(|| format!("the {what}'s data key is not 32 base64 bytes"))?;
    let sealed = B64
        .decode(sealed)
        .map_err(|_| format!("the sealed {what} is not base64"))?;
    let key = DataKey::from_bytes(key);
    let plain = key
        .open(&sealed, seq, 0)
        .map_err(|_| format!("record {seq}: the data key does not open the record"))?;
    let value = serde_json::from_slice(&plain)
        .map_err(|_| format!("record {seq}: the sealed content is not JSON"))?;
    Ok((key, value))
}

/// An erased record's line carries the erasure entry, proven in the log,
/// naming this record and this decision.
fn check_erasure(
    line: &ExportLine,
    reference: &str,
    checkpoint: &Checkpoint,
) -> std::result::Result<(), String> {
    let seq = line.seq;
    let erasure = line
        .erasure
        .as_ref()
        .ok_or_else(|| format!("record {seq} is shown erased without the erasure entry"))?;
    let entry = proven_record(
        erasure.seq,
        &erasure.record,
        &erasure.proof,
        checkpoint,
        &format!("the erasure record of {seq}"),
    )?;
    match entry.entry {
        Entry::Erasure(e)
            if entry.seq == erasure.seq && e.erased_seq == seq && e.reference == reference =>
        {
            Ok(())
        }
        _ => Err(format!(
            "record {seq} is shown erased by {reference}, but record {} is not that erasure",
            erasure.seq
        )),
    }
}
