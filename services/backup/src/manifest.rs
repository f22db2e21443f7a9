//! The manifest: what a backup holds, signed with the node's Ed25519 key.
//!
//! Two signed documents, both JSON:
//! - the *signed manifest* `{"manifest": {...}, "signer", "signature"}` is the
//!   archive's last tar entry and says what the archive holds;
//! - the *manifest object* `{"signed_manifest": {...}, "seal": {...},
//!   "signer", "signature"}` is stored (encrypted) beside the archive; its
//!   seal adds the size and SHA-256 of the encrypted archive object, so a
//!   truncated or altered archive is named before or without decrypting it.
//!
//! Signatures cover the exact bytes of the signed JSON value (kept as raw
//! JSON when read), prefixed by a context string, so re-serializing never
//! changes what was signed.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// The manifest format this crate writes and reads.
pub const FORMAT: u32 = 1;
/// Name of the tar entry that holds the signed manifest; always the last.
pub const MANIFEST_ENTRY: &str = "ARCHIPEL-BACKUP-MANIFEST.json";

const MANIFEST_CONTEXT: &[u8] = b"archipel-backup manifest v1\n";
const SEAL_CONTEXT: &[u8] = b"archipel-backup seal v1\n";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub name: String,
    pub created: Timestamp,
    pub server_name: String,
    /// Caller-supplied facts, e.g. `vault_checkpoint` -> the signed
    /// checkpoint note current when the snapshot was taken.
    pub metadata: BTreeMap<String, String>,
    /// Public recipient strings (`age1...`) or the passphrase marker.
    pub recipients: Vec<String>,
    pub compression: String,
    /// Every directory and file, in archive order, paths relative to the
    /// backup's root with `/` separators.
    pub entries: Vec<Entry>,
    /// Sum of the file sizes.
    pub total_bytes: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub path: String,
    pub kind: EntryKind,
    /// Permission bits (e.g. 0o600 for the node's key).
    pub mode: u32,
    #[serde(default)]
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    Dir,
    File,
}

/// The encrypted archive object's name and size, and the hash of the signed
/// manifest it carries. (No hash of the ciphertext: age authenticates every
/// 64 KiB chunk and the end of the stream, and the embedded manifest must
/// equal this one, so a hash would add CPU time and no check.)
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seal {
    pub archive_object: String,
    pub archive_size: u64,
    pub signed_manifest_sha256: String,
}

#[derive(Serialize, Deserialize)]
struct SignedManifestJson {
    manifest: Box<RawValue>,
    signer: String,
    signature: String,
}

#[derive(Serialize, Deserialize)]
struct ManifestObjectJson {
    signed_manifest: Box<RawValue>,
    seal: Box<RawValue>,
    signer: String,
    signature: String,
}

/// A manifest object read back and checked: signatures valid, seal bound to
/// the manifest.
#[derive(Debug)]
pub struct OpenedManifest {
    pub manifest: Manifest,
    pub seal: Seal,
    /// The signed manifest's exact bytes, as the archive's last entry must hold them.
    pub signed_manifest: Vec<u8>,
    pub signer: VerifyingKey,
}

pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut out, byte| {
            let _ = write!(out, "{byte:02x}");
            out
        })
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

pub fn key_text(key: &VerifyingKey) -> String {
    BASE64.encode(key.as_bytes())
}

fn sign(key: &SigningKey, context: &[u8], body: &[u8]) -> String {
    let mut message = Vec::with_capacity(context.len() + body.len());
    message.extend_from_slice(context);
    message.extend_from_slice(body);
    BASE64.encode(key.sign(&message).to_bytes())
}

fn verify(key: &VerifyingKey, context: &[u8], body: &[u8], signature: &str) -> bool {
    let Ok(bytes) = BASE64.decode(signature) else {
        return false;
    };
    let Ok(signature) = Signature::from_slice(&bytes) else {
        return false;
    };
    let mut message = Vec::with_capacity(context.len() + body.len());
    message.extend_from_slice(context);
    message.extend_from_slice(body);
    key.verify_strict(&message, &signature).is_ok()
}

fn raw(value: &impl Serialize) -> Box<RawValue> {
    let text = serde_json::to_string(value).expect("manifest types serialize");
    RawValue::from_string(text).expect("serde_json writes valid JSON")
}

/// The signed manifest, as stored as the archive's last entry.
pub fn sign_manifest(manifest: &Manifest, key: &SigningKey) -> Vec<u8> {
    let body = raw(manifest);
    let signature = sign(key, MANIFEST_CONTEXT, body.get().as_bytes());
    let document = SignedManifestJson {
        manifest: body,
        signer: key_text(&key.verifying_key()),
        signature,
    };
    serde_json::to_vec_pretty(&document).expect("manifest types serialize")
}

/// The manifest object's plaintext.
pub fn seal_manifest(signed_manifest: &[u8], seal: &Seal, key: &SigningKey) -> Vec<u8> {
    let body = raw(seal);
    let signature = sign(key, SEAL_CONTEXT, body.get().as_bytes());
    let signed_manifest = RawValue::from_string(
        String::from_utf8(signed_manifest.to_vec()).expect("the signed manifest is JSON text"),
    )
    .expect("the signed manifest is JSON");
    let document = ManifestObjectJson {
        signed_manifest,
        seal: body,
        signer: key_text(&key.verifying_key()),
        signature,
    };
    serde_json::to_vec_pretty(&document).expect("manifest types serialize")
}

/// Reads and checks a manifest object: both signatures by one key (the
/// trusted one if given), the seal bound to this manifest, the manifest
/// about the backup `name`.
pub fn open_manifest_object(
    bytes: &[u8],
    name: &str,
    trusted: Option<&VerifyingKey>,
) -> Result<OpenedManifest> {
    let invalid = |detail: String| Error::Manifest {
        name: name.to_owned(),
        detail,
    };
    let object: ManifestObjectJson = serde_json::from_slice(bytes)
        .map_err(|error| invalid(format!("not a manifest object: {error}")))?;
    let signed_manifest = object.signed_manifest.get().as_bytes().to_vec();
    let (manifest, signer) = open_signed_manifest(&signed_manifest, name, trusted)?;
    if object.signer != key_text(&signer)
        || !verify(
            &signer,
            SEAL_CONTEXT,
            object.seal.get().as_bytes(),
            &object.signature,
        )
    {
        return Err(Error::BadSignature {
            name: name.to_owned(),
            signer: object.signer,
        });
    }
    let seal: Seal = serde_json::from_str(object.seal.get())
        .map_err(|error| invalid(format!("seal: {error}")))?;
    if seal.signed_manifest_sha256 != sha256_hex(&signed_manifest) {
        return Err(invalid("the seal belongs to another manifest".to_owned()));
    }
    Ok(OpenedManifest {
        manifest,
        seal,
        signed_manifest,
        signer,
    })
}

/// Checks a signed manifest and returns it with its signer.
pub fn open_signed_manifest(
    bytes: &[u8],
    name: &str,
    trusted: Option<&VerifyingKey>,
) -> Result<(Manifest, VerifyingKey)> {
    let invalid = |detail: String| Error::Manifest {
        name: name.to_owned(),
        detail,
    };
    let document: SignedManifestJson = serde_json::from_slice(bytes)
        .map_err(|error| invalid(format!("not a signed manifest: {error}")))?;
    let bad_signature = || Error::BadSignature {
        name: name.to_owned(),
        signer: document.signer.clone(),
    };
    let key_bytes: [u8; 32] = BASE64
        .decode(&document.signer)
        .ok()
        .and_then(|bytes| bytes.try_into().ok())
        .ok_or_else(bad_signature)?;
    let signer = VerifyingKey::from_bytes(&key_bytes).map_err(|_| bad_signature())?;
    if !verify(
        &signer,
        MANIFEST_CONTEXT,
        document.manifest.get().as_bytes(),
        &document.signature,
    ) {
        return Err(bad_signature());
    }
    if let Some(trusted) = trusted
        && trusted != &signer
    {
        return Err(Error::UntrustedSigner {
            name: name.to_owned(),
            signer: key_text(&signer),
            trusted: key_text(trusted),
        });
    }
    let manifest: Manifest = serde_json::from_str(document.manifest.get())
        .map_err(|error| invalid(format!("unreadable: {error}")))?;
    if manifest.format != FORMAT {
        return Err(invalid(format!(
            "format {} is not supported (this build reads format {FORMAT})",
            manifest.format
        )));
    }
    if manifest.name != name {
        return Err(invalid(format!(
            "it describes backup {}, not this one",
            manifest.name
        )));
    }
    Ok((manifest, signer))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest() -> Manifest {
        Manifest {
            format: FORMAT,
            name: "archipel-20260512T020000Z".to_owned(),
            created: "2026-05-12T02:00:00Z".parse().expect("valid timestamp"),
            server_name: "bzk.example".to_owned(),
            metadata: BTreeMap::from([(
                "vault_checkpoint".to_owned(),
                "bzk.example/vault\n12\nabc=\n".to_owned(),
            )]),
            recipients: vec!["age1example".to_owned()],
            compression: "zstd".to_owned(),
            entries: vec![
                Entry {
                    path: "media".to_owned(),
                    kind: EntryKind::Dir,
                    mode: 0o755,
                    size: 0,
                    sha256: None,
                },
                Entry {
                    path: "media/a".to_owned(),
                    kind: EntryKind::File,
                    mode: 0o644,
                    size: 3,
                    sha256: Some(sha256_hex(b"abc")),
                },
            ],
            total_bytes: 3,
        }
    }

    fn seal_for(signed: &[u8]) -> Seal {
        Seal {
            archive_object: "archipel-20260512T020000Z.tar.zst.age".to_owned(),
            archive_size: 1234,
            signed_manifest_sha256: sha256_hex(signed),
        }
    }

    #[test]
    fn signed_manifest_round_trips() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let signed = sign_manifest(&manifest(), &key);
        let object = seal_manifest(&signed, &seal_for(&signed), &key);
        let opened = open_manifest_object(
            &object,
            "archipel-20260512T020000Z",
            Some(&key.verifying_key()),
        )
        .expect("opens");
        assert_eq!(opened.manifest, manifest());
        assert_eq!(opened.signed_manifest, signed);
        assert_eq!(opened.seal.archive_size, 1234);
    }

    #[test]
    fn an_edited_manifest_fails_its_signature() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let signed = String::from_utf8(sign_manifest(&manifest(), &key)).expect("JSON text");
        let edited = signed.replace("bzk.example", "evil.example");
        let error = open_signed_manifest(edited.as_bytes(), "archipel-20260512T020000Z", None)
            .expect_err("edited");
        assert!(matches!(error, Error::BadSignature { .. }), "{error}");
    }

    #[test]
    fn another_signer_is_refused_when_a_key_is_trusted() {
        let node = SigningKey::from_bytes(&[7; 32]);
        let stranger = SigningKey::from_bytes(&[8; 32]);
        let signed = sign_manifest(&manifest(), &stranger);
        let error = open_signed_manifest(
            &signed,
            "archipel-20260512T020000Z",
            Some(&node.verifying_key()),
        )
        .expect_err("stranger");
        assert!(matches!(error, Error::UntrustedSigner { .. }), "{error}");
        assert!(open_signed_manifest(&signed, "archipel-20260512T020000Z", None).is_ok());
    }

    #[test]
    fn a_seal_from_another_manifest_is_refused() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let signed = sign_manifest(&manifest(), &key);
        let mut other = manifest();
        other.total_bytes = 4;
        let other_signed = sign_manifest(&other, &key);
        let object = seal_manifest(&signed, &seal_for(&other_signed), &key);
        let error = open_manifest_object(&object, "archipel-20260512T020000Z", None)
            .expect_err("mismatched seal");
        assert!(error.to_string().contains("another manifest"), "{error}");
    }

    #[test]
    fn a_manifest_for_another_backup_is_refused() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let signed = sign_manifest(&manifest(), &key);
        let error =
            open_signed_manifest(&signed, "archipel-20270101T000000Z", None).expect_err("renamed");
        assert!(error.to_string().contains("not this one"), "{error}");
    }
}
