//! Pushers: where each user's devices want push notifications, and how far
//! each pusher was notified (spec "Push Notifications").

use archipel_store::{Batch, Store, Tree, key};
use ruma::{OwnedUserId, UserId};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{Result, columns as cf};

/// One pusher as kept.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StoredPusher {
    /// As the client set it (the spec's `Pusher`).
    pub pusher: Value,
    /// The stream position the pusher was notified up to.
    pub cursor: u64,
}

impl StoredPusher {
    pub fn app_id(&self) -> &str {
        self.pusher["app_id"].as_str().unwrap_or_default()
    }

    pub fn pushkey(&self) -> &str {
        self.pusher["pushkey"].as_str().unwrap_or_default()
    }
}

pub struct Pushers {
    store: Store,
    tree: Tree,
    /// Woken when a pusher is added or removed.
    pub changed: tokio::sync::Notify,
}

fn pusher_key(user: &UserId, app_id: &str, pushkey: &str) -> Vec<u8> {
    key::key([user.as_bytes(), app_id.as_bytes(), pushkey.as_bytes()])
}

impl Pushers {
    pub fn new(store: Store) -> Result<Self> {
        Ok(Self {
            tree: store.tree(cf::USERID_PUSHKEY_PUSHER)?,
            store,
            changed: tokio::sync::Notify::new(),
        })
    }

    /// The user's pushers, as their clients set them.
    pub fn list(&self, user: &UserId) -> Result<Vec<Value>> {
        self.tree
            .scan_prefix_json::<StoredPusher>(key::prefix([user.as_bytes()]))
            .map(|row| Ok(row?.1.pusher))
            .collect()
    }

    /// Every pusher on the node, with its user.
    pub fn all(&self) -> Result<Vec<(OwnedUserId, StoredPusher)>> {
        let mut out = Vec::new();
        for row in self.tree.iter() {
            let (k, v) = row?;
            let user = key::split(&k).next().unwrap_or_default();
            out.push((self.tree.decode_str(user)?, self.tree.decode_json(&v)?));
        }
        Ok(out)
    }

    /// Adds or replaces the user's pusher for its app ID and pushkey,
    /// notified from `cursor` on. Unless `append`, the same app ID and
    /// pushkey go from every other user (a device signed in anew).
    pub async fn set(&self, user: &UserId, pusher: Value, append: bool, cursor: u64) -> Result<()> {
        let stored = StoredPusher { pusher, cursor };
        let mut batch = Batch::new();
        if !append {
            for (other, existing) in self.all()? {
                if other != user
                    && existing.app_id() == stored.app_id()
                    && existing.pushkey() == stored.pushkey()
                {
                    batch.delete(
                        &self.tree,
                        pusher_key(&other, existing.app_id(), existing.pushkey()),
                    );
                }
            }
        }
        batch.put_json(
            &self.tree,
            pusher_key(user, stored.app_id(), stored.pushkey()),
            &stored,
        );
        self.store.commit_async(batch).await?;
        self.changed.notify_one();
        Ok(())
    }

    pub async fn remove(&self, user: &UserId, app_id: &str, pushkey: &str) -> Result<()> {
        let mut batch = Batch::new();
        batch.delete(&self.tree, pusher_key(user, app_id, pushkey));
        self.store.commit_async(batch).await?;
        self.changed.notify_one();
        Ok(())
    }

    /// Records how far each pusher was notified; a pusher removed
    /// meanwhile stays removed.
    pub async fn advance(&self, progress: &[(OwnedUserId, StoredPusher)]) -> Result<()> {
        let mut batch = Batch::new();
        for (user, stored) in progress {
            let k = pusher_key(user, stored.app_id(), stored.pushkey());
            if self.tree.contains(&k)? {
                batch.put_json(&self.tree, k, stored);
            }
        }
        if !batch.is_empty() {
            self.store.commit_async(batch).await?;
        }
        Ok(())
    }
}
