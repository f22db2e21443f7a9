//! Sliding sync connections (MSC4186): what each connection of a device was
//! sent, kept per position, so that a client continues after a restart of
//! the node and a repeated request finds the state its answer was built on.
//!
//! A position is handed out with every response. The request that names it
//! may be repeated (a long poll the client cancelled, an answer lost on the
//! way), so the state behind the latest two positions is kept: the one the
//! client named and the one it was just given. Older ones are dropped when a
//! request names a newer one. Positions are written without waiting for
//! stable storage: one lost in a crash is answered `M_UNKNOWN_POS`, and the
//! client starts the connection over.

use std::{
    collections::BTreeMap,
    sync::atomic::{AtomicU64, Ordering},
};

use archipel_store::{Batch, Store, Tree, key};
use ruma::{DeviceId, OwnedRoomId, UserId};
use serde::{Deserialize, Serialize};

use crate::{Error, Result, columns as cf, service::users::now_ms};

/// The longest `conn_id` taken, in bytes.
pub const MAX_CONN_ID_BYTES: usize = 64;
/// Connections a device keeps; starting one more drops the least recently
/// used. Element X opens three.
pub const MAX_CONNECTIONS_PER_DEVICE: usize = 16;

/// What a connection had been sent when a position was handed out.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Snapshot {
    /// The stream position the answer reached.
    #[serde(rename = "u")]
    pub upto: u64,
    /// Every room sent on the connection.
    #[serde(rename = "r", default)]
    pub rooms: BTreeMap<OwnedRoomId, SentRoom>,
}

/// How far one room was sent, and with which settings.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct SentRoom {
    /// The stream position the room's timeline and state were sent up to.
    #[serde(rename = "s")]
    pub upto: u64,
    /// The most timeline events asked for the room.
    #[serde(rename = "l")]
    pub timeline_limit: u64,
    /// A fingerprint of the state asked for (see [`fingerprint`]).
    #[serde(rename = "c")]
    pub required_state: u64,
}

pub struct Connections {
    store: Store,
    tree: Tree,
    /// The next position handed out: rising across restarts, since it
    /// starts at the time in microseconds.
    next: AtomicU64,
}

impl Connections {
    pub fn new(store: Store) -> Result<Self> {
        Ok(Self {
            tree: store.tree(cf::USERDEVICECONN_POS_SLIDINGSYNC)?,
            store,
            next: AtomicU64::new(now_ms().saturating_mul(1000)),
        })
    }

    /// The state behind `pos` on the connection, or `M_UNKNOWN_POS` when
    /// the connection never handed it out or has dropped it.
    pub fn load(
        &self,
        user: &UserId,
        device: &DeviceId,
        conn_id: &str,
        pos: u64,
    ) -> Result<Snapshot> {
        check_conn_id(conn_id)?;
        self.tree
            .get_json(key::with_u64(connection(user, device, conn_id), pos))?
            .ok_or_else(Error::unknown_pos)
    }

    /// Keeps `snapshot` as a new position of the connection and returns it.
    /// Positions older than `after` (the one the request named) go; with
    /// none, the connection starts over and all its positions go.
    pub async fn save(
        &self,
        user: &UserId,
        device: &DeviceId,
        conn_id: &str,
        after: Option<u64>,
        snapshot: &Snapshot,
    ) -> Result<u64> {
        check_conn_id(conn_id)?;
        let conn = connection(user, device, conn_id);
        let mut batch = Batch::new();
        let mut conn_prefix = conn.clone();
        conn_prefix.push(key::SEP);
        for row in self.tree.scan_prefix(conn_prefix) {
            let (k, _) = row?;
            if key::split_last_u64(&k).is_some_and(|(_, pos)| after.is_none_or(|a| pos < a)) {
                batch.delete(&self.tree, k);
            }
        }
        if after.is_none() {
            self.drop_least_recent(user, device, conn_id, &mut batch)?;
        }
        let pos = self.next.fetch_add(1, Ordering::Relaxed);
        batch.put_json(&self.tree, key::with_u64(conn, pos), snapshot);
        // Not waited onto stable storage: see the module's note.
        let _not_synced = self.store.write_async(batch).await?;
        Ok(pos)
    }

    /// Makes room for a new connection of the device by dropping its least
    /// recently used one when it has [`MAX_CONNECTIONS_PER_DEVICE`].
    fn drop_least_recent(
        &self,
        user: &UserId,
        device: &DeviceId,
        conn_id: &str,
        batch: &mut Batch,
    ) -> Result<()> {
        let prefix = key::prefix([user.as_bytes(), device.as_bytes()]);
        // Each other connection's newest position, and its keys.
        let mut others: BTreeMap<Vec<u8>, (u64, Vec<Vec<u8>>)> = BTreeMap::new();
        for row in self.tree.scan_prefix(prefix.clone()) {
            let (k, _) = row?;
            let Some((head, pos)) = key::split_last_u64(&k) else {
                continue;
            };
            if &head[prefix.len()..] == conn_id.as_bytes() {
                continue;
            }
            let entry = others.entry(head.to_vec()).or_default();
            entry.0 = entry.0.max(pos);
            entry.1.push(k.to_vec());
        }
        if others.len() + 1 > MAX_CONNECTIONS_PER_DEVICE {
            let oldest = others.values().min_by_key(|(newest, _)| *newest);
            for k in oldest.map(|(_, keys)| keys).into_iter().flatten() {
                batch.delete(&self.tree, k);
            }
        }
        Ok(())
    }

    /// Forgets every connection of a device that is gone.
    pub async fn remove_device(&self, user: &UserId, device: &DeviceId) -> Result<()> {
        let mut batch = Batch::new();
        for row in self
            .tree
            .scan_prefix(key::prefix([user.as_bytes(), device.as_bytes()]))
        {
            batch.delete(&self.tree, row?.0);
        }
        if !batch.is_empty() {
            self.store.commit_async(batch).await?;
        }
        Ok(())
    }
}

fn connection(user: &UserId, device: &DeviceId, conn_id: &str) -> Vec<u8> {
    key::key([user.as_bytes(), device.as_bytes(), conn_id.as_bytes()])
}

fn check_conn_id(conn_id: &str) -> Result<()> {
    if conn_id.len() > MAX_CONN_ID_BYTES {
        return Err(Error::invalid_param(format!(
            "conn_id is longer than {MAX_CONN_ID_BYTES} bytes."
        )));
    }
    Ok(())
}

/// A fingerprint of a room's `required_state` setting, to notice when it
/// changes (FNV-1a: stable across builds, unlike the standard hasher).
pub fn fingerprint<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for b in bytes {
            hash ^= u64::from(*b);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    };
    for (kind, state_key) in pairs {
        eat(kind.as_bytes());
        eat(&[0xff]);
        eat(state_key.as_bytes());
        eat(&[0xfe]);
    }
    hash
}
