//! End-to-end encryption support: device keys, one-time and fallback keys,
//! cross-signing keys and signatures, and to-device messages.
//!
//! The server never sees plaintext: it stores and hands out what clients
//! upload, and tells room members when each other's devices change.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
};

use archipel_store::{Batch, Store, Tree, key};
use ruma::{DeviceId, OwnedDeviceId, OwnedUserId, UserId};
use serde_json::{Value, json};

use crate::{Error, Result, columns as cf, counter::Counter, service::key_changes::KeyChanges};

pub struct E2ee {
    store: Store,
    counter: Arc<Counter>,
    device_keys: Tree,
    one_time_keys: Tree,
    fallback_keys: Tree,
    cross_signing: Tree,
    key_changes: Arc<KeyChanges>,
    to_device: Tree,
    /// Each device's newest queued to-device message since the node
    /// started, and where the stream stood then: a sync learns without a
    /// read that nothing waits for its device (most wake-ups of a long
    /// poll).
    newest_to_device: parking_lot::Mutex<HashMap<(OwnedUserId, OwnedDeviceId), u64>>,
    opened_at: u64,
    /// Claims one at a time: a one-time key goes to one claimer only.
    claims: tokio::sync::Mutex<()>,
}

/// Cross-signing key usages, as stored.
pub const MASTER: &str = "master";
pub const SELF_SIGNING: &str = "self_signing";
pub const USER_SIGNING: &str = "user_signing";

impl E2ee {
    pub fn new(store: Store, counter: Arc<Counter>, key_changes: Arc<KeyChanges>) -> Result<Self> {
        Ok(Self {
            device_keys: store.tree(cf::USERDEVICEID_KEYS)?,
            one_time_keys: store.tree(cf::USERDEVICEID_KEYID_ONETIMEKEY)?,
            fallback_keys: store.tree(cf::USERDEVICEID_ALGORITHM_FALLBACKKEY)?,
            cross_signing: store.tree(cf::USERID_USAGE_CROSSSIGNINGKEY)?,
            key_changes,
            to_device: store.tree(cf::USERDEVICEID_COUNT_TODEVICE)?,
            newest_to_device: Default::default(),
            opened_at: counter.visible(),
            store,
            counter,
            claims: tokio::sync::Mutex::new(()),
        })
    }

    /// Stores what a device uploads. Device keys may not change once set,
    /// except for added signatures.
    pub async fn upload(
        &self,
        user: &UserId,
        device: &DeviceId,
        device_keys: Option<Value>,
        one_time_keys: BTreeMap<String, Value>,
        fallback_keys: BTreeMap<String, Value>,
    ) -> Result<()> {
        let mut batch = Batch::new();
        let ticket = self.counter.next()?;
        if let Some(keys) = device_keys {
            if keys.get("user_id").and_then(Value::as_str) != Some(user.as_str())
                || keys.get("device_id").and_then(Value::as_str) != Some(device.as_str())
            {
                return Err(Error::invalid_param(
                    "device_keys must name this user and device.",
                ));
            }
            let existing: Option<Value> = self
                .device_keys
                .get_json(key::key([user.as_bytes(), device.as_bytes()]))?;
            if existing.as_ref() != Some(&keys) {
                batch.put_json(
                    &self.device_keys,
                    key::key([user.as_bytes(), device.as_bytes()]),
                    &keys,
                );
                self.key_changes.note(&mut batch, ticket.count, user, None);
            }
        }
        for (key_id, value) in one_time_keys {
            batch.put_json(
                &self.one_time_keys,
                key::key([user.as_bytes(), device.as_bytes(), key_id.as_bytes()]),
                &value,
            );
        }
        for (key_id, value) in fallback_keys {
            let algorithm = key_id.split(':').next().unwrap_or_default().to_owned();
            let stored = json!({ "key_id": key_id, "key": value, "used": false });
            batch.put_json(
                &self.fallback_keys,
                key::key([user.as_bytes(), device.as_bytes(), algorithm.as_bytes()]),
                &stored,
            );
        }
        self.store.commit_async(batch).await?;
        Ok(())
    }

    /// Unclaimed one-time keys per algorithm.
    pub fn one_time_key_counts(
        &self,
        user: &UserId,
        device: &DeviceId,
    ) -> Result<BTreeMap<String, u64>> {
        let prefix = key::prefix([user.as_bytes(), device.as_bytes()]);
        let mut counts = BTreeMap::new();
        for row in self.one_time_keys.scan_prefix(prefix.clone()) {
            let (k, _) = row?;
            let key_id: String = self.one_time_keys.decode_str(&k[prefix.len()..])?;
            let algorithm = key_id.split(':').next().unwrap_or_default().to_owned();
            *counts.entry(algorithm).or_insert(0) += 1;
        }
        Ok(counts)
    }

    /// Algorithms with a fallback key not yet handed out.
    pub fn unused_fallback_key_types(
        &self,
        user: &UserId,
        device: &DeviceId,
    ) -> Result<Vec<String>> {
        let prefix = key::prefix([user.as_bytes(), device.as_bytes()]);
        let mut out = Vec::new();
        for row in self.fallback_keys.scan_prefix(prefix.clone()) {
            let (k, v) = row?;
            let stored: Value = self.fallback_keys.decode_json(&v)?;
            if stored["used"] == Value::Bool(false) {
                out.push(self.fallback_keys.decode_str(&k[prefix.len()..])?);
            }
        }
        Ok(out)
    }

    pub fn device_keys(&self, user: &UserId, device: &DeviceId) -> Result<Option<Value>> {
        Ok(self
            .device_keys
            .get_json(key::key([user.as_bytes(), device.as_bytes()]))?)
    }

    /// All of a user's device keys, by device.
    pub fn all_device_keys(&self, user: &UserId) -> Result<BTreeMap<OwnedDeviceId, Value>> {
        let prefix = key::prefix([user.as_bytes()]);
        let mut out = BTreeMap::new();
        for row in self.device_keys.scan_prefix(prefix.clone()) {
            let (k, v) = row?;
            let device: OwnedDeviceId = self.device_keys.decode_str(&k[prefix.len()..])?;
            out.insert(device, self.device_keys.decode_json(&v)?);
        }
        Ok(out)
    }

    /// Hands out one key of `algorithm` for the device: a one-time key if any is
    /// left (and deletes it), else the fallback key.
    pub async fn claim(
        &self,
        user: &UserId,
        device: &DeviceId,
        algorithm: &str,
    ) -> Result<Option<(String, Value)>> {
        let _one_at_a_time = self.claims.lock().await;
        // Key IDs are `algorithm:id`: look for `user 0xFF device 0xFF algorithm:`.
        let mut otk_prefix = key::prefix([user.as_bytes(), device.as_bytes()]);
        otk_prefix.extend_from_slice(algorithm.as_bytes());
        otk_prefix.push(b':');
        if let Some(row) = self.one_time_keys.scan_prefix(otk_prefix).next() {
            let (k, v) = row?;
            let base = key::prefix([user.as_bytes(), device.as_bytes()]);
            let key_id: String = self.one_time_keys.decode_str(&k[base.len()..])?;
            let value: Value = self.one_time_keys.decode_json(&v)?;
            let mut batch = Batch::new();
            batch.delete(&self.one_time_keys, &k);
            self.store.commit_async(batch).await?;
            return Ok(Some((key_id, value)));
        }
        let fallback_key = key::key([user.as_bytes(), device.as_bytes(), algorithm.as_bytes()]);
        if let Some(mut stored) = self.fallback_keys.get_json::<Value>(&fallback_key)? {
            let key_id = stored["key_id"].as_str().unwrap_or_default().to_owned();
            let value = stored["key"].clone();
            if stored["used"] != Value::Bool(true) {
                stored["used"] = Value::Bool(true);
                let mut batch = Batch::new();
                batch.put_json(&self.fallback_keys, &fallback_key, &stored);
                self.store.commit_async(batch).await?;
            }
            return Ok(Some((key_id, value)));
        }
        Ok(None)
    }

    pub fn cross_signing_key(&self, user: &UserId, usage: &str) -> Result<Option<Value>> {
        Ok(self
            .cross_signing
            .get_json(key::key([user.as_bytes(), usage.as_bytes()]))?)
    }

    pub async fn set_cross_signing_keys(
        &self,
        user: &UserId,
        keys: Vec<(&'static str, Value)>,
    ) -> Result<()> {
        if keys.is_empty() {
            return Ok(());
        }
        let ticket = self.counter.next()?;
        let mut batch = Batch::new();
        for (usage, value) in keys {
            if value.get("user_id").and_then(Value::as_str) != Some(user.as_str()) {
                return Err(Error::invalid_param(format!(
                    "The {usage} key must name this user."
                )));
            }
            batch.put_json(
                &self.cross_signing,
                key::key([user.as_bytes(), usage.as_bytes()]),
                &value,
            );
        }
        self.key_changes.note(&mut batch, ticket.count, user, None);
        self.store.commit_async(batch).await?;
        Ok(())
    }

    /// Adds `signer`'s signatures of `target`'s key `key_id` (a device ID
    /// or a cross-signing public key), as `/keys/signatures/upload` allows:
    /// a user signs their own devices with their self-signing key, their
    /// own master key with one of their devices, and another user's master
    /// key with their user-signing key. Each signature is verified against
    /// the stored key; only `signer`'s own entry changes.
    pub async fn add_signatures(
        &self,
        signer: &UserId,
        target: &UserId,
        key_id: &str,
        signed: &Value,
    ) -> Result<()> {
        let device_key = key::key([target.as_bytes(), key_id.as_bytes()]);
        let (tree, k, mut stored, usage) =
            if let Some(v) = self.device_keys.get_json::<Value>(&device_key)? {
                (&self.device_keys, device_key, v, None)
            } else {
                let mut found = None;
                for usage in [MASTER, SELF_SIGNING, USER_SIGNING] {
                    let k = key::key([target.as_bytes(), usage.as_bytes()]);
                    if let Some(v) = self.cross_signing.get_json::<Value>(&k)?
                        && public_keys(&v).any(|(_, public)| public == key_id)
                    {
                        found = Some((&self.cross_signing, k, v, Some(usage)));
                        break;
                    }
                }
                found.ok_or_else(|| Error::not_found(format!("No key {key_id} for {target}.")))?
            };

        // The keys whose signature this key may carry from `signer`.
        let signing_keys: Vec<(String, String)> = match (target == signer, usage) {
            (true, None) => self.cross_signing_public(signer, SELF_SIGNING)?,
            (true, Some(MASTER)) => self
                .device_keys
                .scan_prefix_json::<Value>(key::prefix([signer.as_bytes()]))
                .map(|row| {
                    let (_, device) = row?;
                    Ok(public_keys(&device)
                        .map(|(id, public)| (id.to_owned(), public.to_owned()))
                        .collect::<Vec<_>>())
                })
                .collect::<Result<Vec<_>>>()?
                .into_iter()
                .flatten()
                .collect(),
            (false, Some(MASTER)) => self.cross_signing_public(signer, USER_SIGNING)?,
            _ => {
                return Err(Error::forbidden(format!(
                    "{signer} may not sign {target}'s key {key_id}."
                )));
            }
        };
        let offered = signed
            .get("signatures")
            .and_then(|s| s.get(signer.as_str()))
            .and_then(Value::as_object)
            .ok_or_else(|| Error::invalid_param(format!("No signature by {signer}.")))?;

        let mut unsigned = stored.clone();
        let object = unsigned
            .as_object_mut()
            .ok_or_else(|| Error::internal("stored key is not an object"))?;
        object.remove("unsigned");
        let mut verified = serde_json::Map::new();
        for (id, signature) in offered {
            let Some((_, public)) = signing_keys.iter().find(|(key, _)| key == id) else {
                continue;
            };
            object.insert(
                "signatures".into(),
                json!({ signer.as_str(): { id: signature } }),
            );
            let canonical: ruma::CanonicalJsonObject =
                serde_json::from_value(Value::Object(object.clone()))
                    .map_err(|_| Error::invalid_param("The key is not canonical JSON."))?;
            let mut keys = ruma::signatures::PublicKeyMap::new();
            let public = ruma::serde::Base64::parse(public.as_bytes())
                .map_err(|_| Error::internal("a stored public key is not base64"))?;
            keys.insert(signer.to_string(), [(id.clone(), public)].into());
            if ruma::signatures::verify_json(&keys, &canonical).is_ok() {
                verified.insert(id.clone(), signature.clone());
            }
        }
        if verified.is_empty() {
            return Err(Error::invalid_param(format!(
                "No valid signature by {signer} of {key_id}."
            )));
        }

        let signatures = stored
            .as_object_mut()
            .ok_or_else(|| Error::internal("stored key is not an object"))?
            .entry("signatures")
            .or_insert_with(|| json!({}));
        if !signatures.is_object() {
            *signatures = json!({});
        }
        let own = signatures
            .as_object_mut()
            .expect("an object")
            .entry(signer.as_str())
            .or_insert_with(|| json!({}));
        if !own.is_object() {
            *own = json!({});
        }
        own.as_object_mut().expect("an object").extend(verified);
        let ticket = self.counter.next()?;
        let mut batch = Batch::new();
        batch.put_json(tree, k, &stored);
        self.key_changes
            .note(&mut batch, ticket.count, target, None);
        self.store.commit_async(batch).await?;
        Ok(())
    }

    /// `user`'s cross-signing key of `usage`: `(key ID, public key)`.
    fn cross_signing_public(&self, user: &UserId, usage: &str) -> Result<Vec<(String, String)>> {
        Ok(self
            .cross_signing_key(user, usage)?
            .map(|key| {
                public_keys(&key)
                    .map(|(id, public)| (id.to_owned(), public.to_owned()))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Records that a peer's user changed their devices or cross-signing
    /// keys: local members sharing a room with them see it in their sync.
    pub async fn note_key_change(&self, user: &UserId) -> Result<()> {
        let ticket = self.counter.next()?;
        let mut batch = Batch::new();
        self.key_changes.note(&mut batch, ticket.count, user, None);
        self.store.commit_async(batch).await?;
        Ok(())
    }

    /// Forgets a removed device's keys and tells its user's contacts.
    pub async fn remove_device(&self, user: &UserId, device: &DeviceId) -> Result<()> {
        let ticket = self.counter.next()?;
        let mut batch = Batch::new();
        batch.delete(
            &self.device_keys,
            key::key([user.as_bytes(), device.as_bytes()]),
        );
        for tree in [&self.one_time_keys, &self.fallback_keys, &self.to_device] {
            for row in tree.scan_prefix(key::prefix([user.as_bytes(), device.as_bytes()])) {
                let (k, _) = row?;
                batch.delete(tree, &k);
            }
        }
        self.key_changes.note(&mut batch, ticket.count, user, None);
        self.store.commit_async(batch).await?;
        Ok(())
    }

    /// Queues a to-device message for each target device.
    pub async fn send_to_device(
        &self,
        sender: &UserId,
        event_type: &str,
        targets: Vec<(OwnedUserId, OwnedDeviceId, Value)>,
    ) -> Result<()> {
        let mut tickets = Vec::with_capacity(targets.len());
        let mut batch = Batch::new();
        let mut queued = Vec::with_capacity(targets.len());
        for (user, device, content) in targets {
            let ticket = self.counter.next()?;
            let event = json!({ "type": event_type, "sender": sender, "content": content });
            batch.put_json(
                &self.to_device,
                key::with_u64(key::key([user.as_bytes(), device.as_bytes()]), ticket.count),
                &event,
            );
            queued.push(((user, device), ticket.count));
            tickets.push(ticket);
        }
        self.store.commit_async(batch).await?;
        // Noted before the positions become visible, so that no sync that
        // may see them skips the read.
        let mut newest = self.newest_to_device.lock();
        for (device, count) in queued {
            let entry = newest.entry(device).or_default();
            *entry = (*entry).max(count);
        }
        drop(newest);
        drop(tickets);
        Ok(())
    }

    /// Whether a message for the device may be queued after `after`.
    fn may_have_to_device(&self, user: &UserId, device: &DeviceId, after: u64) -> bool {
        match self
            .newest_to_device
            .lock()
            .get(&(user.to_owned(), device.to_owned()))
        {
            Some(&newest) => newest > after,
            None => after < self.opened_at,
        }
    }

    /// Messages for the device in `(after, upto]`, oldest first.
    pub fn to_device_messages(
        &self,
        user: &UserId,
        device: &DeviceId,
        after: u64,
        upto: u64,
        limit: usize,
    ) -> Result<(Vec<Value>, u64)> {
        let mut out = Vec::new();
        let mut last = after;
        if !self.may_have_to_device(user, device, after) {
            return Ok((out, last));
        }
        let base = key::key([user.as_bytes(), device.as_bytes()]);
        let mut prefix = base.clone();
        prefix.push(key::SEP);
        for row in self
            .to_device
            .scan_from(key::with_u64(base, after + 1), prefix)
        {
            let (k, v) = row?;
            let Some((_, count)) = key::split_last_u64(&k) else {
                continue;
            };
            if count > upto || out.len() >= limit {
                break;
            }
            out.push(self.to_device.decode_json(&v)?);
            last = count;
        }
        Ok((out, last))
    }

    /// Deletes messages the device has acknowledged by syncing past them.
    pub async fn ack_to_device(&self, user: &UserId, device: &DeviceId, upto: u64) -> Result<()> {
        let base = key::key([user.as_bytes(), device.as_bytes()]);
        let mut prefix = base.clone();
        prefix.push(key::SEP);
        let mut batch = Batch::new();
        for row in self.to_device.scan_prefix(prefix) {
            let (k, _) = row?;
            match key::split_last_u64(&k) {
                Some((_, count)) if count <= upto => batch.delete(&self.to_device, &k),
                _ => break,
            }
        }
        if !batch.is_empty() {
            self.store.commit_async(batch).await?;
        }
        Ok(())
    }
}

/// The ed25519 keys a device or cross-signing key object lists:
/// `(key ID, public key)`.
fn public_keys(key: &Value) -> impl Iterator<Item = (&str, &str)> {
    key.get("keys")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter(|(id, _)| id.starts_with("ed25519:"))
        .filter_map(|(id, public)| Some((id.as_str(), public.as_str()?)))
}
