//! Server signing keys: ours, published at `/_matrix/key/v2/server`, and
//! the peers', fetched from them (or pinned in the config) and cached.

use std::{
    collections::BTreeMap,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use archipel_store::Batch;
use base64::{Engine, engine::general_purpose::STANDARD_NO_PAD};
use ruma::{
    CanonicalJsonObject, CanonicalJsonValue, OwnedServerName, ServerName,
    serde::Base64,
    signatures::{PublicKeyMap, PublicKeySet, sign_json, verify_json},
};
use serde::{Deserialize, Serialize};

use super::Federation;
use crate::{Error, Result};

/// How long our key document says it may be cached.
const OWN_KEYS_VALIDITY: Duration = Duration::from_secs(7 * 24 * 3600);
/// A peer's keys are asked for again after at most this long.
const MAX_CACHE: Duration = Duration::from_secs(24 * 3600);

/// A server's public signing keys as this server trusts them.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ServerKeys {
    /// Key ID (`ed25519:...`) to unpadded base64 public key.
    pub keys: BTreeMap<String, String>,
    /// Until when they are used without asking the server again (ms since the epoch).
    pub valid_until_ms: u64,
    /// Pinned in the configuration: never fetched, never replaced.
    #[serde(default)]
    pub pinned: bool,
}

impl ServerKeys {
    fn fresh(&self) -> bool {
        self.pinned || self.valid_until_ms > now_ms()
    }

    /// The Ed25519 public keys, as bytes (a key that does not decode is left out).
    pub fn ed25519_keys(&self) -> Vec<[u8; 32]> {
        self.keys
            .values()
            .filter_map(|key| Base64::<ruma::serde::base64::Standard>::parse(key).ok())
            .filter_map(|key| <[u8; 32]>::try_from(key.as_bytes()).ok())
            .collect()
    }

    fn key_set(&self) -> Result<PublicKeySet> {
        self.keys
            .iter()
            .map(|(id, key)| {
                Base64::parse(key)
                    .map(|key| (id.clone(), key))
                    .map_err(|e| Error::internal(format!("signing key {id} is not base64: {e}")))
            })
            .collect()
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

impl Federation {
    /// The ID of this server's signing key (`ed25519:...`).
    pub fn own_key_id(&self) -> String {
        format!("ed25519:{}", self.keypair.version())
    }

    /// This server's key document, signed by the key it lists.
    pub fn own_keys_document(&self) -> Result<CanonicalJsonObject> {
        let valid_until = now_ms() + OWN_KEYS_VALIDITY.as_millis() as u64;
        let key = STANDARD_NO_PAD.encode(self.keypair.public_key());
        let document = serde_json::json!({
            "server_name": self.server_name,
            "valid_until_ts": valid_until,
            "verify_keys": { self.own_key_id(): { "key": key } },
            "old_verify_keys": {},
        });
        let mut object: CanonicalJsonObject =
            serde_json::from_value(document).map_err(Error::internal)?;
        sign_json(self.server_name.as_str(), &*self.keypair, &mut object)
            .map_err(Error::internal)?;
        Ok(object)
    }

    /// The public keys for verifying what `servers` signed.
    pub async fn public_keys(&self, servers: Vec<OwnedServerName>) -> Result<PublicKeyMap> {
        let mut map = PublicKeyMap::new();
        for server in &servers {
            let keys = if *server == self.server_name {
                ServerKeys {
                    keys: BTreeMap::from([(
                        self.own_key_id(),
                        STANDARD_NO_PAD.encode(self.keypair.public_key()),
                    )]),
                    valid_until_ms: u64::MAX,
                    pinned: true,
                }
            } else {
                self.server_keys(server).await?
            };
            map.insert(server.to_string(), keys.key_set()?);
        }
        Ok(map)
    }

    /// A peer's keys: pinned, cached, or fetched from the peer itself.
    pub async fn server_keys(&self, server: &ServerName) -> Result<ServerKeys> {
        self.require_peer(server)?;
        if let Some(peer) = self.config.peer(server)
            && !peer.keys.is_empty()
        {
            return Ok(ServerKeys {
                keys: peer.keys.clone(),
                valid_until_ms: u64::MAX,
                pinned: true,
            });
        }
        let cached = match self.keys.lock().get(server) {
            Some(keys) => Some(keys.clone()),
            None => self.servername_keys.get_json(server.as_bytes())?,
        };
        if let Some(keys) = &cached
            && keys.fresh()
        {
            self.keys.lock().insert(server.to_owned(), keys.clone());
            return Ok(keys.clone());
        }
        match self.fetch_keys(server).await {
            Ok(keys) => {
                let mut batch = Batch::new();
                batch.put_json(&self.servername_keys, server.as_bytes(), &keys);
                self.store.commit_async(batch).await?;
                self.keys.lock().insert(server.to_owned(), keys.clone());
                Ok(keys)
            }
            // Old events stay verifiable while their server is away.
            Err(e) => match cached {
                Some(keys) => {
                    tracing::debug!(%server, error = %e, "using expired signing keys");
                    Ok(keys)
                }
                None => Err(e),
            },
        }
    }

    /// Asks `server` for its key document and checks it is self-signed.
    async fn fetch_keys(&self, server: &ServerName) -> Result<ServerKeys> {
        let document = self
            .get_json(server, "/_matrix/key/v2/server")
            .await
            .map_err(|e| Error::remote(format!("fetching the signing keys of {server}: {e}")))?;
        parse_key_document(server, document)
    }
}

/// Checks a key document from `server`: its name, its self-signature, its keys.
pub(super) fn parse_key_document(
    server: &ServerName,
    document: CanonicalJsonObject,
) -> Result<ServerKeys> {
    let refuse = |why: &str| Error::remote(format!("the key document of {server} {why}"));
    match document.get("server_name") {
        Some(CanonicalJsonValue::String(name)) if name == server.as_str() => {}
        _ => return Err(refuse("is for another server")),
    }
    let Some(CanonicalJsonValue::Object(verify_keys)) = document.get("verify_keys") else {
        return Err(refuse("lists no keys"));
    };
    let mut keys = BTreeMap::new();
    for (id, entry) in verify_keys {
        if let CanonicalJsonValue::Object(entry) = entry
            && let Some(CanonicalJsonValue::String(key)) = entry.get("key")
        {
            keys.insert(id.clone(), key.clone());
        }
    }
    if keys.is_empty() {
        return Err(refuse("lists no keys"));
    }
    let set: PublicKeySet = keys
        .iter()
        .filter_map(|(id, key)| Base64::parse(key).ok().map(|key| (id.clone(), key)))
        .collect();
    let map = PublicKeyMap::from([(server.to_string(), set)]);
    verify_json(&map, &document).map_err(|e| refuse(&format!("is not self-signed: {e}")))?;
    let valid_until = match document.get("valid_until_ts") {
        Some(CanonicalJsonValue::Integer(ts)) => u64::try_from(i64::from(*ts)).unwrap_or(0),
        _ => 0,
    };
    Ok(ServerKeys {
        keys,
        valid_until_ms: valid_until.min(now_ms() + MAX_CACHE.as_millis() as u64),
        pinned: false,
    })
}
