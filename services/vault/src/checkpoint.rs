//! Signed checkpoints in the C2SP tlog-checkpoint format: a signed note
//! (C2SP signed-note) whose body is the log's origin, size and base64 root.
//!
//! ```text
//! ministerie.example/archipel-vault
//! 1042
//! 8vHkT5...base64 root...=
//!
//! — ministerie.example/archipel-vault Az3/7v...base64(key hash || signature)...
//! ```
//!
//! The signature is Ed25519 over the body (every line up to and including the
//! root's newline). The key hash is the first 4 bytes of
//! `SHA-256(name || "\n" || 0x01 || public key)`, so standard note verifiers
//! (for example Go's `golang.org/x/mod/sumdb/note`) check our checkpoints
//! with the verifier key [`verifier_key`] prints.

use base64::{Engine, engine::general_purpose::STANDARD as B64};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::merkle::Hash;

/// The signature type byte of Ed25519 in signed notes.
const ED25519: u8 = 0x01;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CheckpointError {
    #[error("not a signed note as expected: {0}")]
    Malformed(String),
    #[error("no signature by {0} on this note")]
    Unsigned(String),
    #[error("the signature by {0} does not verify: the note was altered")]
    BadSignature(String),
}

impl Checkpoint {
    /// The note body: origin, size and root, one per line.
    pub fn body(&self) -> String {
        format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            B64.encode(self.root)
        )
    }

    /// The signed note, signed by `key` under the key name `origin`.
    pub fn sign(&self, key: &SigningKey) -> String {
        sign_note(&self.origin, &self.body(), key)
    }

    /// Parses a signed note and checks the signature by `key` under the key
    /// name equal to the origin. Other signatures (witnesses) are ignored here.
    pub fn open(note: &str, key: &VerifyingKey) -> Result<Self, CheckpointError> {
        let (body, _) = split_note(note)?;
        let checkpoint = Self::parse_body(&body)?;
        open_note(note, &checkpoint.origin, key)?;
        Ok(checkpoint)
    }

    fn parse_body(body: &str) -> Result<Self, CheckpointError> {
        let mut lines = body.lines();
        let (Some(origin), Some(size), Some(root)) = (lines.next(), lines.next(), lines.next())
        else {
            return Err(CheckpointError::Malformed(
                "a checkpoint body has an origin, a size and a root line".into(),
            ));
        };
        if origin.is_empty() {
            return Err(CheckpointError::Malformed("empty origin".into()));
        }
        let size = size
            .parse::<u64>()
            .ok()
            .filter(|_| !size.starts_with('+') && (size == "0" || !size.starts_with('0')))
            .ok_or_else(|| CheckpointError::Malformed(format!("size {size:?} is not a number")))?;
        let root: Hash = B64
            .decode(root)
            .ok()
            .and_then(|r| r.try_into().ok())
            .ok_or_else(|| {
                CheckpointError::Malformed(format!("root {root:?} is not a base64 SHA-256 hash"))
            })?;
        Ok(Self {
            origin: origin.to_owned(),
            size,
            root,
        })
    }
}

/// A signed note (C2SP signed-note) of `body`, which ends in a newline,
/// signed by `key` under the key name `name`.
pub fn sign_note(name: &str, body: &str, key: &SigningKey) -> String {
    let signature = key.sign(body.as_bytes());
    let mut blob = key_hash(name, &key.verifying_key()).to_vec();
    blob.extend_from_slice(&signature.to_bytes());
    format!("{body}\n\u{2014} {name} {}\n", B64.encode(blob))
}

/// The body of a signed note (with its final newline) once the signature
/// by `key` under the key name `name` verifies. Other signatures are
/// ignored.
pub fn open_note(note: &str, name: &str, key: &VerifyingKey) -> Result<String, CheckpointError> {
    let (body, signatures) = split_note(note)?;
    let wanted_hash = key_hash(name, key);
    for line in signatures.lines() {
        let (signer, blob) = signature_line(line).map_err(CheckpointError::Malformed)?;
        if signer != name || blob.len() != 4 + 64 || blob[..4] != wanted_hash {
            continue;
        }
        let signature = Signature::from_slice(&blob[4..])
            .map_err(|e| CheckpointError::Malformed(format!("signature: {e}")))?;
        return key
            .verify(body.as_bytes(), &signature)
            .map(|()| body)
            .map_err(|_| CheckpointError::BadSignature(name.to_owned()));
    }
    Err(CheckpointError::Unsigned(name.to_owned()))
}

/// A note's signature line, `— <signer> <base64>`: the signer's name and
/// the decoded signature (key hash first), or what is wrong with it.
pub(crate) fn signature_line(line: &str) -> Result<(&str, Vec<u8>), String> {
    let rest = line
        .strip_prefix("\u{2014} ")
        .ok_or_else(|| format!("signature line without the em dash: {line:?}"))?;
    let (signer, blob) = rest
        .rsplit_once(' ')
        .ok_or_else(|| format!("signature line without a signature: {line:?}"))?;
    let blob = B64.decode(blob).map_err(|e| format!("signature: {e}"))?;
    Ok((signer, blob))
}

/// A note's body (with its final newline) and its signature lines.
fn split_note(note: &str) -> Result<(String, &str), CheckpointError> {
    let (body, signatures) = note
        .split_once("\n\n")
        .ok_or_else(|| CheckpointError::Malformed("no blank line before signatures".into()))?;
    Ok((format!("{body}\n"), signatures))
}

fn key_hash(name: &str, key: &VerifyingKey) -> [u8; 4] {
    let mut hasher = Sha256::new();
    hasher.update(name.as_bytes());
    hasher.update(b"\n");
    hasher.update([ED25519]);
    hasher.update(key.as_bytes());
    let digest = hasher.finalize();
    [digest[0], digest[1], digest[2], digest[3]]
}

/// The verifier key in the signed-note text form: `name+hash+base64(0x01 || key)`.
pub fn verifier_key(name: &str, key: &VerifyingKey) -> String {
    let hash: String = key_hash(name, key)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let mut blob = vec![ED25519];
    blob.extend_from_slice(key.as_bytes());
    format!("{name}+{hash}+{}", B64.encode(blob))
}

/// Parses a verifier key in the signed-note text form (see [`verifier_key`]).
pub fn parse_verifier_key(text: &str) -> Result<(String, VerifyingKey), CheckpointError> {
    let malformed = |why: &str| CheckpointError::Malformed(format!("verifier key: {why}"));
    // Names never hold a `+`; the base64 key may.
    let mut parts = text.trim().splitn(3, '+');
    let (Some(name), Some(hash), Some(blob)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(malformed("expected name+hash+key"));
    };
    let blob = B64
        .decode(blob)
        .map_err(|_| malformed("the key is not base64"))?;
    let (Some(&ED25519), Ok(bytes)) = (
        blob.first(),
        <[u8; 32]>::try_from(&blob[1.min(blob.len())..]),
    ) else {
        return Err(malformed("not an Ed25519 key"));
    };
    let key = VerifyingKey::from_bytes(&bytes).map_err(|_| malformed("not an Ed25519 key"))?;
    let expected: String = key_hash(name, &key)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    if expected != hash {
        return Err(malformed("the key hash does not match the name and key"));
    }
    Ok((name.to_owned(), key))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SigningKey {
        SigningKey::from_bytes(&[7u8; 32])
    }

    fn checkpoint() -> Checkpoint {
        Checkpoint {
            origin: "minaz.example/archipel-vault".into(),
            size: 1042,
            root: [0xAB; 32],
        }
    }

    #[test]
    fn a_signed_checkpoint_opens_with_the_key() {
        let note = checkpoint().sign(&key());
        assert!(note.starts_with("minaz.example/archipel-vault\n1042\n"));
        assert!(note.contains("\n\n\u{2014} minaz.example/archipel-vault "));
        assert_eq!(
            Checkpoint::open(&note, &key().verifying_key()),
            Ok(checkpoint())
        );
    }

    #[test]
    fn an_altered_or_foreign_checkpoint_is_refused() {
        let note = checkpoint().sign(&key());
        let altered = note.replace("\n1042\n", "\n1041\n");
        assert_eq!(
            Checkpoint::open(&altered, &key().verifying_key()),
            Err(CheckpointError::BadSignature(
                "minaz.example/archipel-vault".into()
            ))
        );
        let other = SigningKey::from_bytes(&[9u8; 32]).verifying_key();
        assert!(matches!(
            Checkpoint::open(&note, &other),
            Err(CheckpointError::Unsigned(_))
        ));
        assert!(matches!(
            Checkpoint::open("garbage", &key().verifying_key()),
            Err(CheckpointError::Malformed(_))
        ));
    }

    #[test]
    fn the_verifier_key_names_the_key_hash() {
        let text = verifier_key("minaz.example/archipel-vault", &key().verifying_key());
        let parts: Vec<&str> = text.split('+').collect();
        assert_eq!(parts[0], "minaz.example/archipel-vault");
        assert_eq!(parts[1].len(), 8);
        assert_eq!(B64.decode(parts[2]).expect("base64").len(), 33);
        let (name, parsed) = parse_verifier_key(&text).expect("parses");
        assert_eq!(name, "minaz.example/archipel-vault");
        assert_eq!(parsed, key().verifying_key());
        assert!(parse_verifier_key(&text.replacen("+", "+0", 1)).is_err());
        // A key whose base64 holds a `+` still parses.
        for seed in 0..64u8 {
            let key = SigningKey::from_bytes(&[seed; 32]).verifying_key();
            let text = verifier_key("n.example/v", &key);
            assert_eq!(parse_verifier_key(&text).expect("parses").1, key, "{text}");
        }
    }
}
