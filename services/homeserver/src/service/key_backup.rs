//! Server-side room key backup: opaque, client-encrypted session keys.

use std::collections::BTreeMap;

use archipel_store::{Batch, Store, Tree, key};
use ruma::UserId;
use serde_json::{Value, json};

use crate::{Error, Result, columns as cf};

pub struct KeyBackup {
    store: Store,
    versions: Tree,
    keys: Tree,
}

/// `rooms -> sessions -> key data`.
pub type BackupKeys = BTreeMap<String, BTreeMap<String, Value>>;

impl KeyBackup {
    pub fn new(store: Store) -> Result<Self> {
        Ok(Self {
            versions: store.tree(cf::USERID_VERSION_BACKUP)?,
            keys: store.tree(cf::USERID_VERSION_ROOM_SESSION_BACKUPKEY)?,
            store,
        })
    }

    fn version_key(user: &UserId, version: u64) -> Vec<u8> {
        key::with_u64(user.as_bytes().to_vec(), version)
    }

    /// The newest version: `(version, {algorithm, auth_data, etag})`.
    pub fn latest(&self, user: &UserId) -> Result<Option<(u64, Value)>> {
        let mut prefix = user.as_bytes().to_vec();
        prefix.push(key::SEP);
        let from = Self::version_key(user, u64::MAX);
        for row in self.versions.scan_rev_from(from, prefix) {
            let (k, v) = row?;
            let Some((_, version)) = key::split_last_u64(&k) else {
                continue;
            };
            let value: Value = self.versions.decode_json(&v)?;
            if value["deleted"] != Value::Bool(true) {
                return Ok(Some((version, value)));
            }
        }
        Ok(None)
    }

    pub fn get(&self, user: &UserId, version: u64) -> Result<Option<Value>> {
        let value: Option<Value> = self.versions.get_json(Self::version_key(user, version))?;
        Ok(value.filter(|v| v["deleted"] != Value::Bool(true)))
    }

    pub async fn create(&self, user: &UserId, algorithm: Value) -> Result<u64> {
        let mut prefix = user.as_bytes().to_vec();
        prefix.push(key::SEP);
        let last = self
            .versions
            .scan_rev_from(Self::version_key(user, u64::MAX), prefix)
            .next()
            .transpose()?
            .and_then(|(k, _)| key::split_last_u64(&k).map(|(_, v)| v))
            .unwrap_or(0);
        let version = last + 1;
        let mut batch = Batch::new();
        batch.put_json(
            &self.versions,
            Self::version_key(user, version),
            &json!({ "algorithm": algorithm, "etag": 0 }),
        );
        self.store.commit_async(batch).await?;
        Ok(version)
    }

    pub async fn update(&self, user: &UserId, version: u64, algorithm: Value) -> Result<()> {
        let mut current = self
            .get(user, version)?
            .ok_or_else(|| Error::not_found("Unknown backup version."))?;
        current["algorithm"] = algorithm;
        let mut batch = Batch::new();
        batch.put_json(&self.versions, Self::version_key(user, version), &current);
        self.store.commit_async(batch).await?;
        Ok(())
    }

    pub async fn delete(&self, user: &UserId, version: u64) -> Result<()> {
        self.get(user, version)?
            .ok_or_else(|| Error::not_found("Unknown backup version."))?;
        let mut batch = Batch::new();
        batch.put_json(
            &self.versions,
            Self::version_key(user, version),
            &json!({ "deleted": true }),
        );
        for row in self.keys.scan_prefix(key::prefix([
            user.as_bytes(),
            version.to_string().as_bytes(),
        ])) {
            let (k, _) = row?;
            batch.delete(&self.keys, &k);
        }
        self.store.commit_async(batch).await?;
        Ok(())
    }

    /// Stores keys, keeping an existing key when it is better (fewer
    /// forwards, verified, or lower first known index), as the spec asks.
    pub async fn put_keys(&self, user: &UserId, version: u64, keys: BackupKeys) -> Result<()> {
        let mut meta = self
            .get(user, version)?
            .ok_or_else(|| Error::not_found("Unknown backup version."))?;
        let v = version.to_string();
        let mut batch = Batch::new();
        for (room, sessions) in keys {
            for (session, data) in sessions {
                let k = key::key([
                    user.as_bytes(),
                    v.as_bytes(),
                    room.as_bytes(),
                    session.as_bytes(),
                ]);
                if let Some(existing) = self.keys.get_json::<Value>(&k)?
                    && !is_better(&data, &existing)
                {
                    continue;
                }
                batch.put_json(&self.keys, k, &data);
            }
        }
        meta["etag"] = Value::from(meta["etag"].as_u64().unwrap_or(0) + 1);
        batch.put_json(&self.versions, Self::version_key(user, version), &meta);
        self.store.commit_async(batch).await?;
        Ok(())
    }

    /// Keys under the version, optionally for one room or one session.
    pub fn keys(
        &self,
        user: &UserId,
        version: u64,
        room: Option<&str>,
        session: Option<&str>,
    ) -> Result<BackupKeys> {
        let v = version.to_string();
        let prefix = match (room, session) {
            (Some(r), Some(s)) => {
                key::key([user.as_bytes(), v.as_bytes(), r.as_bytes(), s.as_bytes()])
            }
            (Some(r), None) => key::prefix([user.as_bytes(), v.as_bytes(), r.as_bytes()]),
            _ => key::prefix([user.as_bytes(), v.as_bytes()]),
        };
        let base = key::prefix([user.as_bytes(), v.as_bytes()]);
        let mut out = BackupKeys::new();
        for row in self.keys.scan_prefix(prefix) {
            let (k, val) = row?;
            let mut parts = key::split(&k[base.len()..]);
            let (Some(r), Some(s)) = (parts.next(), parts.next()) else {
                continue;
            };
            let tree = &self.keys;
            let value = tree.decode_json(&val)?;
            out.entry(tree.decode_str(r)?)
                .or_default()
                .insert(tree.decode_str(s)?, value);
        }
        Ok(out)
    }

    pub async fn delete_keys(
        &self,
        user: &UserId,
        version: u64,
        room: Option<&str>,
        session: Option<&str>,
    ) -> Result<()> {
        let mut meta = self
            .get(user, version)?
            .ok_or_else(|| Error::not_found("Unknown backup version."))?;
        let v = version.to_string();
        let prefix = match (room, session) {
            (Some(r), Some(s)) => {
                key::key([user.as_bytes(), v.as_bytes(), r.as_bytes(), s.as_bytes()])
            }
            (Some(r), None) => key::prefix([user.as_bytes(), v.as_bytes(), r.as_bytes()]),
            _ => key::prefix([user.as_bytes(), v.as_bytes()]),
        };
        let mut batch = Batch::new();
        for row in self.keys.scan_prefix(prefix) {
            let (k, _) = row?;
            batch.delete(&self.keys, &k);
        }
        meta["etag"] = Value::from(meta["etag"].as_u64().unwrap_or(0) + 1);
        batch.put_json(&self.versions, Self::version_key(user, version), &meta);
        self.store.commit_async(batch).await?;
        Ok(())
    }

    pub fn count(&self, user: &UserId, version: u64) -> Result<u64> {
        Ok(self
            .keys(user, version, None, None)?
            .values()
            .map(|s| s.len() as u64)
            .sum())
    }
}

fn is_better(new: &Value, old: &Value) -> bool {
    let verified = |v: &Value| v["is_verified"].as_bool().unwrap_or(false);
    let first = |v: &Value| v["first_message_index"].as_u64().unwrap_or(u64::MAX);
    let forwarded = |v: &Value| v["forwarded_count"].as_u64().unwrap_or(u64::MAX);
    (
        verified(new),
        std::cmp::Reverse(first(new)),
        std::cmp::Reverse(forwarded(new)),
    ) > (
        verified(old),
        std::cmp::Reverse(first(old)),
        std::cmp::Reverse(forwarded(old)),
    )
}
