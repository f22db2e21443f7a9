//! `vault verify-export`: checks an export offline, with nothing but the
//! export and the verifier key.
//!
//! For every line of every `records.jsonl`: the record hashes to a leaf
//! whose inclusion proof reaches the root of the signed checkpoint; the
//! event shown is exactly what the record sealed (opened with the line's
//! data key); an erased record is erased in the log too (no data key).

use std::path::{Path, PathBuf};

use base64::{Engine, engine::general_purpose::STANDARD as B64};
use serde::Serialize;
use serde_json::Value;

use super::ExportLine;
use crate::{
    Error, Result,
    checkpoint::{Checkpoint, parse_verifier_key},
    merkle::{self, Hash},
    record::Record,
    seal::DataKey,
};

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
    let read = |name: &str| {
        let path = dir.join(name);
        std::fs::read_to_string(&path)
            .map_err(|e| Error::io(format!("reading {}", path.display()), e))
    };
    let (key_text, key_from_export) = match key {
        Some(key) => (key.trim().to_owned(), false),
        None => (read("verifier-key.txt")?.trim().to_owned(), true),
    };
    let (_, verifying_key) =
        parse_verifier_key(&key_text).map_err(|e| Error::Refused(e.to_string()))?;
    let checkpoint = Checkpoint::open(&read("checkpoint.txt")?, &verifying_key)
        .map_err(|e| Error::Refused(format!("checkpoint.txt: {e}")))?;

    let mut report = ExportReport {
        checkpoint_size: checkpoint.size,
        verifier_key: key_text,
        key_from_export,
        records: 0,
        problems: Vec::new(),
    };
    for file in record_files(dir)? {
        let text = std::fs::read_to_string(&file)
            .map_err(|e| Error::io(format!("reading {}", file.display()), e))?;
        let shown = file
            .strip_prefix(dir)
            .unwrap_or(&file)
            .display()
            .to_string();
        for (n, line) in text.lines().enumerate() {
            report.records += 1;
            if let Err(problem) = check_line(line, &checkpoint) {
                report
                    .problems
                    .push(format!("{shown} line {}: {problem}", n + 1));
            }
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

fn check_line(line: &str, checkpoint: &Checkpoint) -> std::result::Result<(), String> {
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
    let proof: Vec<Hash> = line
        .proof
        .iter()
        .map(|h| B64.decode(h).ok().and_then(|b| b.try_into().ok()))
        .collect::<Option<_>>()
        .ok_or("the proof is not a list of base64 SHA-256 hashes")?;
    let leaf = merkle::leaf_hash(line.record.as_bytes());
    if !merkle::verify_inclusion(line.seq, checkpoint.size, &leaf, &proof, &checkpoint.root) {
        return Err(format!(
            "record {} is not in the signed log (its proof does not reach the checkpoint's root)",
            line.seq
        ));
    }
    let Some(sealed) = record.sealed() else {
        return Err(format!("record {} is not a conversation record", line.seq));
    };
    match (&line.data_key, &line.event, &line.erased) {
        (Some(key), Some(event), None) => {
            let key: [u8; 32] = B64
                .decode(key)
                .ok()
                .and_then(|k| k.try_into().ok())
                .ok_or("the data key is not 32 base64 bytes")?;
            let sealed = B64
                .decode(sealed)
                .map_err(|_| "the sealed content is not base64")?;
            let plain = DataKey::from_bytes(key)
                .open(&sealed, line.seq, 0)
                .map_err(|_| {
                    format!("record {}: the data key does not open the record", line.seq)
                })?;
            let original: Value = serde_json::from_slice(&plain)
                .map_err(|_| format!("record {}: the sealed content is not JSON", line.seq))?;
            if original != *event {
                return Err(format!(
                    "record {}: the event shown differs from the archived original",
                    line.seq
                ));
            }
            Ok(())
        }
        (None, None, Some(_)) => Ok(()),
        _ => Err(format!(
            "record {}: a line carries either a data key and its event, or an erasure",
            line.seq
        )),
    }
}
