//! Witnessing: peer nodes co-sign each other's checkpoints, so a node that
//! rewrites or truncates its own log is caught by the peers that saw it.
//!
//! A witness keeps, per peer log (origin), the newest checkpoint it
//! co-signed. It co-signs a new checkpoint only if a consistency proof shows
//! the new log extends the one it saw; a smaller log, or a log that does not
//! extend it, is kept as an alarm with the offending checkpoint as evidence,
//! and nothing more is co-signed for that log.
//!
//! Cosignatures follow C2SP tlog-cosignature (`cosignature/v1`): an Ed25519
//! signature over `cosignature/v1\ntime <t>\n` and the checkpoint body, in a
//! signed-note line `— <witness> base64(key ID || time || signature)` with
//! the key ID hashed over the signature type 0x04.

use archipel_store::{Batch, key};
use base64::{Engine, engine::general_purpose::STANDARD as B64};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{
    Error, Result, Vault,
    checkpoint::Checkpoint,
    merkle::{self, Hash},
};

/// The signature type byte of a timestamped Ed25519 cosignature.
const COSIGNATURE_V1: u8 = 0x04;

/// What a witness remembers of one peer's log.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Witnessed {
    pub origin: String,
    /// The newest checkpoint co-signed.
    pub size: u64,
    pub root: String,
    pub note: String,
    /// When it was co-signed (ms since the epoch).
    pub at: u64,
    /// Set once the peer showed a log that does not extend this one.
    pub alarm: Option<Alarm>,
}

/// Evidence that a peer rewrote or truncated its log.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Alarm {
    pub reason: String,
    /// The checkpoint the peer presented, as signed by it.
    pub note: String,
    pub at: u64,
}

/// Why a witness did not co-sign.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// The request's old size is not the size the witness last co-signed:
    /// resend with a proof from `size`.
    #[error("this witness last co-signed {size} records; prove consistency from there")]
    Conflict { size: u64 },
    /// The peer's log does not extend the one witnessed.
    #[error("{0}")]
    Inconsistent(String),
    /// Not a checkpoint of that peer, or not signed by it.
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Vault(#[from] Error),
}

impl From<archipel_store::Error> for Refusal {
    fn from(e: archipel_store::Error) -> Self {
        Self::Vault(e.into())
    }
}

/// A cosignature this node holds for one of its checkpoints.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Cosignature {
    pub witness: String,
    /// The witness's public key, base64.
    pub key: String,
    /// The signed-note line.
    pub line: String,
}

impl Vault {
    /// Witness side: co-signs the peer's checkpoint `note` for log `origin`
    /// signed by `key`, if it extends the newest one co-signed before
    /// (`old_size` and `proof` prove that). Returns the cosignature line.
    pub fn witness(
        &self,
        origin: &str,
        key: &VerifyingKey,
        note: &str,
        old_size: u64,
        proof: &[Hash],
        witness_name: &str,
    ) -> std::result::Result<String, Refusal> {
        let checkpoint =
            Checkpoint::open(note, key).map_err(|e| Refusal::Invalid(e.to_string()))?;
        if checkpoint.origin != origin {
            return Err(Refusal::Invalid(format!(
                "the checkpoint is of {}, not of {origin}",
                checkpoint.origin
            )));
        }
        let _serial = self.witness_lock.lock().unwrap_or_else(|p| p.into_inner());
        let previous: Option<Witnessed> = self.witnessed.get_json(origin.as_bytes())?;
        let now = crate::now_ms();
        if let Some(previous) = &previous {
            if let Some(alarm) = &previous.alarm {
                return Err(Refusal::Inconsistent(format!(
                    "{origin} was caught before: {}",
                    alarm.reason
                )));
            }
            let inconsistency = if checkpoint.size < previous.size {
                Some(format!(
                    "{origin} presents {} records after this witness co-signed {}: its log was truncated",
                    checkpoint.size, previous.size
                ))
            } else if old_size != previous.size {
                return Err(Refusal::Conflict {
                    size: previous.size,
                });
            } else {
                let old_root = decode_root(&previous.root)?;
                (!merkle::verify_consistency(
                    previous.size,
                    checkpoint.size,
                    &old_root,
                    &checkpoint.root,
                    proof,
                ))
                .then(|| {
                    format!(
                        "{origin}'s log of {} records does not extend the {} records this witness co-signed: it was rewritten",
                        checkpoint.size, previous.size
                    )
                })
            };
            if let Some(reason) = inconsistency {
                let mut flagged = previous.clone();
                flagged.alarm = Some(Alarm {
                    reason: reason.clone(),
                    note: note.to_owned(),
                    at: now,
                });
                let mut batch = Batch::new();
                batch.put_json(&self.witnessed, origin.as_bytes(), &flagged);
                self.store.commit(batch)?;
                tracing::error!(%origin, %reason, "a peer's vault log is inconsistent");
                return Err(Refusal::Inconsistent(reason));
            }
        }
        let record = Witnessed {
            origin: origin.to_owned(),
            size: checkpoint.size,
            root: B64.encode(checkpoint.root),
            note: note.to_owned(),
            at: now,
            alarm: None,
        };
        let mut batch = Batch::new();
        batch.put_json(&self.witnessed, origin.as_bytes(), &record);
        self.store.commit(batch)?;
        Ok(cosign(
            &self.signer,
            witness_name,
            &checkpoint.body(),
            now / 1000,
        ))
    }

    /// Every peer log this node witnesses, with any alarm.
    pub fn witnessed(&self) -> Result<Vec<Witnessed>> {
        let mut out = Vec::new();
        for row in self.witnessed.iter() {
            let (_, value) = row?;
            out.push(
                serde_json::from_slice(&value)
                    .map_err(|e| Error::Corrupt(format!("a witnessed log: {e}")))?,
            );
        }
        Ok(out)
    }

    /// Node side: the newest checkpoint and a consistency proof from
    /// `old_size`, to present to a witness.
    pub fn for_witness(&self, old_size: u64) -> Result<Option<(u64, String, Vec<Hash>)>> {
        let Some(latest) = self.log.latest_checkpoint()? else {
            return Ok(None);
        };
        let proof = if old_size <= latest.size {
            self.log.consistency_proof(old_size, latest.size)?
        } else {
            Vec::new()
        };
        Ok(Some((latest.size, latest.note, proof)))
    }

    /// Keeps a witness's cosignature of the checkpoint at `size`, after
    /// checking it against the witness's `key`.
    pub fn add_cosignature(
        &self,
        size: u64,
        witness: &str,
        key: &VerifyingKey,
        line: &str,
    ) -> Result<()> {
        let note = self
            .log
            .checkpoint_at(size)?
            .ok_or_else(|| Error::NotFound(format!("no checkpoint at size {size}")))?;
        let checkpoint = Checkpoint::open(&note, &self.verifying_key())
            .map_err(|e| Error::Corrupt(format!("the checkpoint at size {size}: {e}")))?;
        verify_cosignature(line, witness, key, &checkpoint.body())
            .map_err(|e| Error::Refused(format!("the cosignature of {witness}: {e}")))?;
        let cosignature = Cosignature {
            witness: witness.to_owned(),
            key: B64.encode(key.as_bytes()),
            line: line.to_owned(),
        };
        let mut batch = Batch::new();
        batch.put_json(
            &self.cosignatures,
            key::with_u64(witness.as_bytes().to_vec(), size),
            &cosignature,
        );
        self.store.commit(batch)?;
        Ok(())
    }

    /// The size of the newest checkpoint `witness` co-signed (0 if none):
    /// one seek, however many it co-signed.
    pub fn newest_cosigned(&self, witness: &str) -> Result<u64> {
        let mut prefix = witness.as_bytes().to_vec();
        prefix.push(key::SEP);
        let from = key::with_u64(witness.as_bytes().to_vec(), u64::MAX);
        match self.cosignatures.scan_rev_from(from, prefix).next() {
            Some(row) => {
                let (k, _) = row?;
                Ok(key::split_last_u64(&k).map_or(0, |(_, size)| size))
            }
            None => Ok(0),
        }
    }

    /// The newest checkpoint size each witness co-signed.
    pub fn cosigned_sizes(&self) -> Result<Vec<(String, u64, Cosignature)>> {
        let mut newest: std::collections::BTreeMap<String, (u64, Cosignature)> = Default::default();
        for row in self.cosignatures.iter() {
            let (k, value) = row?;
            let Some((_, size)) = key::split_last_u64(&k) else {
                continue;
            };
            let cosignature: Cosignature = serde_json::from_slice(&value)
                .map_err(|e| Error::Corrupt(format!("a cosignature: {e}")))?;
            newest.insert(cosignature.witness.clone(), (size, cosignature));
        }
        Ok(newest
            .into_iter()
            .map(|(witness, (size, c))| (witness, size, c))
            .collect())
    }
}

fn decode_root(root: &str) -> std::result::Result<Hash, Refusal> {
    B64.decode(root)
        .ok()
        .and_then(|r| r.try_into().ok())
        .ok_or_else(|| Refusal::Vault(Error::Corrupt("a witnessed root is not a hash".into())))
}

fn key_id(name: &str, key: &VerifyingKey) -> [u8; 4] {
    let mut hasher = Sha256::new();
    hasher.update(name.as_bytes());
    hasher.update(b"\n");
    hasher.update([COSIGNATURE_V1]);
    hasher.update(key.as_bytes());
    let digest = hasher.finalize();
    [digest[0], digest[1], digest[2], digest[3]]
}

fn signed_message(time: u64, body: &str) -> String {
    format!("cosignature/v1\ntime {time}\n{body}")
}

/// A cosignature line by `name` over a checkpoint `body`, at `time` (seconds).
pub fn cosign(key: &SigningKey, name: &str, body: &str, time: u64) -> String {
    let signature = key.sign(signed_message(time, body).as_bytes());
    let mut blob = key_id(name, &key.verifying_key()).to_vec();
    blob.extend_from_slice(&time.to_be_bytes());
    blob.extend_from_slice(&signature.to_bytes());
    format!("\u{2014} {name} {}", B64.encode(blob))
}

/// Checks a cosignature line by `name` with `key` over `body`; returns its time.
pub fn verify_cosignature(
    line: &str,
    name: &str,
    key: &VerifyingKey,
    body: &str,
) -> std::result::Result<u64, String> {
    let (signer, blob) = crate::checkpoint::signature_line(line)?;
    if signer != name {
        return Err(format!("signed by {signer}, not {name}"));
    }
    if blob.len() != 4 + 8 + 64 || blob[..4] != key_id(name, key) {
        return Err("not a cosignature by this key".into());
    }
    let time = u64::from_be_bytes(blob[4..12].try_into().map_err(|_| "short time")?);
    let signature = Signature::from_slice(&blob[12..]).map_err(|e| e.to_string())?;
    key.verify(signed_message(time, body).as_bytes(), &signature)
        .map_err(|_| "the signature does not verify".to_owned())?;
    Ok(time)
}

/// Witnessing as `vault verify` reports it.
#[derive(Clone, Debug, Serialize)]
pub struct Status {
    /// Per witness, the newest of this node's checkpoints it co-signed.
    pub cosigned: Vec<CosignedBy>,
    /// Peers' logs this node witnesses, with any alarm.
    pub witnessed: Vec<Witnessed>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CosignedBy {
    pub witness: String,
    pub size: u64,
    /// When the witness co-signed (seconds since the epoch).
    pub time: Option<u64>,
    /// Whether the kept cosignature still verifies over the kept checkpoint.
    pub verifies: bool,
}

impl Status {
    pub fn alarms(&self) -> impl Iterator<Item = (&str, &Alarm)> {
        self.witnessed
            .iter()
            .filter_map(|w| w.alarm.as_ref().map(|a| (w.origin.as_str(), a)))
    }
}

impl Vault {
    pub fn witness_status(&self) -> Result<Status> {
        let mut cosigned = Vec::new();
        for (witness, size, cosignature) in self.cosigned_sizes()? {
            let time = self.check_cosignature(size, &cosignature);
            cosigned.push(CosignedBy {
                witness,
                size,
                time,
                verifies: time.is_some(),
            });
        }
        Ok(Status {
            cosigned,
            witnessed: self.witnessed()?,
        })
    }

    /// The time of a kept cosignature, if it verifies over the kept checkpoint.
    fn check_cosignature(&self, size: u64, cosignature: &Cosignature) -> Option<u64> {
        let note = self.log.checkpoint_at(size).ok()??;
        let body = Checkpoint::open(&note, &self.verifying_key()).ok()?.body();
        let key: [u8; 32] = B64.decode(&cosignature.key).ok()?.try_into().ok()?;
        let key = VerifyingKey::from_bytes(&key).ok()?;
        verify_cosignature(&cosignature.line, &cosignature.witness, &key, &body).ok()
    }
}
