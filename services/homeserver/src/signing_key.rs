//! The node's ed25519 signing key: signs every event this server creates.

use std::{fs, path::Path};

use ruma::signatures::Ed25519KeyPair;

use crate::{Error, Result};

/// Loads the key from `path`, generating it (mode 0600) on first start.
pub fn load_or_generate(path: &Path) -> Result<Ed25519KeyPair> {
    let document = if path.exists() {
        fs::read(path)
            .map_err(|e| Error::internal(format!("reading signing key {}: {e}", path.display())))?
    } else {
        let document = Ed25519KeyPair::generate();
        archipel_store::create_durably(path, &document, 0o600).map_err(|e| {
            Error::internal(format!("creating signing key {}: {e}", path.display()))
        })?;
        tracing::info!(path = %path.display(), "generated a new server signing key");
        document.to_vec()
    };
    let probe = Ed25519KeyPair::from_der(&document, "0".into()).map_err(|e| {
        Error::internal(format!(
            "signing key {} is not a valid ed25519 key: {e}",
            path.display()
        ))
    })?;
    let version = key_version(&probe.public_key());
    Ed25519KeyPair::from_der(&document, version).map_err(|e| {
        Error::internal(format!(
            "signing key {} is not a valid ed25519 key: {e}",
            path.display()
        ))
    })
}

/// A short, stable key ID derived from the public key (`ed25519:<id>`).
fn key_version(public_key: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(public_key);
    let mut id = String::from("a_");
    for byte in &digest[..3] {
        id.push_str(&format!("{byte:02x}"));
    }
    id
}
