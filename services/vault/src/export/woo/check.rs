//! `vault verify-woo`: checks a Woo package offline, with nothing but the
//! package and the verifier key: the signed manifest names every document
//! and file with its SHA-256, and every record a document shows is proven
//! to be in the archive's signed log.

use std::{collections::BTreeMap, path::Path};

use base64::{Engine, engine::general_purpose::STANDARD as B64};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{
    Error, Result,
    export::check::{Signed, check_leaf},
    merkle::Hash,
};

/// One line of `proofs.jsonl`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ProofLine {
    pub seq: u64,
    /// Base64 leaf hash of the record (RFC 6962: SHA-256 of 0x00 and the
    /// record's bytes).
    pub leaf: String,
    pub proof: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct WooReport {
    pub checkpoint_size: u64,
    pub verifier_key: String,
    /// Whether the key came from the caller (trusted) or from the package.
    pub key_from_package: bool,
    pub matter: String,
    pub documents: usize,
    pub records: usize,
    pub problems: Vec<String>,
}

impl WooReport {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Checks the Woo package in `dir`; `key` as for
/// [`crate::export::check::verify_export`].
pub fn verify_woo(dir: &Path, key: Option<&str>) -> Result<WooReport> {
    let signed = Signed::open(dir, key)?;
    let mut lines = signed.manifest.lines();
    let refused = |what: &str| Error::Refused(format!("manifest.txt: {what}"));
    if lines.next() != Some(&format!("{} woo", signed.name)) {
        return Err(refused("it is not a Woo package manifest of this archive"));
    }
    let size: u64 = lines
        .next()
        .and_then(|l| l.strip_prefix("checkpoint "))
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| refused("its second line does not name the checkpoint's size"))?;
    let matter = lines
        .next()
        .and_then(|l| l.strip_prefix("matter "))
        .ok_or_else(|| refused("its third line does not name the matter"))?
        .to_owned();
    let mut report = WooReport {
        checkpoint_size: signed.checkpoint.size,
        verifier_key: signed.key_text.clone(),
        key_from_package: signed.key_from_export,
        matter,
        documents: 0,
        records: 0,
        problems: Vec::new(),
    };
    if size != signed.checkpoint.size {
        report.problems.push(format!(
            "manifest.txt is for a checkpoint of {size} records, checkpoint.txt signs {}",
            signed.checkpoint.size
        ));
    }
    let digest = |path: &Path| -> std::result::Result<String, String> {
        std::fs::read(path)
            .map(|bytes| B64.encode(Sha256::digest(bytes)))
            .map_err(|e| format!("{} cannot be read: {e}", path.display()))
    };
    let mut seqs = Vec::new();
    let mut published = Vec::new();
    for line in lines {
        let parts: Vec<&str> = line.split(' ').collect();
        match parts.as_slice() {
            ["document", id, _judgement, hash, records] => {
                report.documents += 1;
                if *hash != "-" {
                    let name = format!("{id}.pdf");
                    match digest(&dir.join("documenten").join(&name)) {
                        Ok(found) if found == *hash => {}
                        Ok(_) => report
                            .problems
                            .push(format!("documenten/{name} differs from the document made")),
                        Err(problem) => report.problems.push(problem),
                    }
                    published.push(name);
                }
                for seq in records.split(',').filter(|s| !s.is_empty()) {
                    match seq.parse::<u64>() {
                        Ok(seq) => seqs.push(seq),
                        Err(_) => report
                            .problems
                            .push(format!("document {id}: {seq:?} is not a record number")),
                    }
                }
            }
            ["file", name, hash] => match digest(&dir.join(name)) {
                Ok(found) if found == *hash => {}
                Ok(_) => report
                    .problems
                    .push(format!("{name} differs from the file made")),
                Err(problem) => report.problems.push(problem),
            },
            _ => report
                .problems
                .push(format!("manifest.txt: the line {line:?} is not understood")),
        }
    }
    if let Ok(entries) = std::fs::read_dir(dir.join("documenten")) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !published.contains(&name) {
                report.problems.push(format!(
                    "documenten/{name} is not a document of the package"
                ));
            }
        }
    }

    let proofs_path = dir.join("proofs.jsonl");
    let text = std::fs::read_to_string(&proofs_path)
        .map_err(|e| Error::io(format!("reading {}", proofs_path.display()), e))?;
    let mut proofs = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        match serde_json::from_str::<ProofLine>(line) {
            Ok(proof) => {
                proofs.insert(proof.seq, proof);
            }
            Err(e) => report
                .problems
                .push(format!("proofs.jsonl line {}: {e}", n + 1)),
        }
    }
    for seq in seqs {
        report.records += 1;
        let Some(line) = proofs.get(&seq) else {
            report
                .problems
                .push(format!("record {seq} has no proof in proofs.jsonl"));
            continue;
        };
        let Some(leaf) = B64
            .decode(&line.leaf)
            .ok()
            .and_then(|b| Hash::try_from(b).ok())
        else {
            report.problems.push(format!(
                "record {seq}: its leaf is not a base64 SHA-256 hash"
            ));
            continue;
        };
        if let Err(problem) = check_leaf(seq, &leaf, &line.proof, &signed.checkpoint) {
            report.problems.push(problem);
        }
    }
    Ok(report)
}
