//! Per-user account data, global and per room (tags, push rules, fully-read markers...).

use std::sync::Arc;

use archipel_store::{Batch, Store, Tree, key};
use ruma::{OwnedRoomId, RoomId, UserId};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{Result, columns as cf, counter::Counter};

#[derive(Serialize, Deserialize)]
struct Entry {
    count: u64,
    content: Value,
}

pub struct AccountData {
    store: Store,
    counter: Arc<Counter>,
    tree: Tree,
}

fn entry_key(user: &UserId, room: Option<&RoomId>, kind: &str) -> Vec<u8> {
    key::key([
        user.as_bytes(),
        room.map_or(&b""[..], |r| r.as_bytes()),
        kind.as_bytes(),
    ])
}

impl AccountData {
    pub fn new(store: Store, counter: Arc<Counter>) -> Result<Self> {
        Ok(Self {
            tree: store.tree(cf::USERID_ROOMID_TYPE_ACCOUNTDATA)?,
            store,
            counter,
        })
    }

    pub fn get(&self, user: &UserId, room: Option<&RoomId>, kind: &str) -> Result<Option<Value>> {
        Ok(self
            .tree
            .get_json::<Entry>(entry_key(user, room, kind))?
            .map(|e| e.content))
    }

    pub async fn set(
        &self,
        user: &UserId,
        room: Option<&RoomId>,
        kind: &str,
        content: Value,
    ) -> Result<u64> {
        let ticket = self.counter.next()?;
        let mut batch = Batch::new();
        batch.put_json(
            &self.tree,
            entry_key(user, room, kind),
            &Entry {
                count: ticket.count,
                content,
            },
        );
        self.store.commit_async(batch).await?;
        Ok(ticket.count)
    }

    /// Removing account data stores an empty object, which clients treat as deleted.
    pub async fn remove(&self, user: &UserId, room: Option<&RoomId>, kind: &str) -> Result<u64> {
        self.set(user, room, kind, Value::Object(Default::default()))
            .await
    }

    /// Entries changed in `(after, upto]`: `(room or None for global, type, content)`.
    pub fn changes(
        &self,
        user: &UserId,
        after: u64,
        upto: u64,
    ) -> Result<Vec<(Option<OwnedRoomId>, String, Value)>> {
        let prefix = key::prefix([user.as_bytes()]);
        let mut out = Vec::new();
        for row in self.tree.scan_prefix(prefix.clone()) {
            let (k, v) = row?;
            let entry: Entry = self.tree.decode_json(&v)?;
            if entry.count <= after || entry.count > upto {
                continue;
            }
            let rest = &k[prefix.len()..];
            let mut parts = key::split(rest);
            let room = parts.next().unwrap_or_default();
            let kind = parts.next().unwrap_or_default();
            let room = if room.is_empty() {
                None
            } else {
                Some(self.tree.decode_str(room)?)
            };
            out.push((room, self.tree.decode_str(kind)?, entry.content));
        }
        Ok(out)
    }
}
