//! Presence: online, unavailable or offline, with an optional status message.

use std::sync::Arc;

use archipel_store::{Batch, Store, Tree};
use ruma::{OwnedUserId, UserId};
use serde::{Deserialize, Serialize};

use crate::{Result, columns as cf, counter::Counter, service::users::now_ms};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PresenceRecord {
    pub presence: String,
    #[serde(default)]
    pub status_msg: Option<String>,
    pub last_active_ts: u64,
    pub count: u64,
}

pub struct Presence {
    store: Store,
    counter: Arc<Counter>,
    tree: Tree,
}

impl Presence {
    pub fn new(store: Store, counter: Arc<Counter>) -> Result<Self> {
        Ok(Self {
            tree: store.tree(cf::USERID_PRESENCE)?,
            store,
            counter,
        })
    }

    pub fn get(&self, user: &UserId) -> Result<Option<PresenceRecord>> {
        Ok(self.tree.get_json(user.as_bytes())?)
    }

    /// Records the user's presence. Only a change of state or message is a
    /// sync-visible change; activity alone just refreshes `last_active_ts`.
    pub async fn set(
        &self,
        user: &UserId,
        presence: &str,
        status_msg: Option<Option<String>>,
    ) -> Result<()> {
        let previous = self.get(user)?;
        let status_msg = match status_msg {
            Some(msg) => msg,
            None => previous.as_ref().and_then(|p| p.status_msg.clone()),
        };
        let changed = previous
            .as_ref()
            .is_none_or(|p| p.presence != presence || p.status_msg != status_msg);
        if !changed {
            return Ok(());
        }
        let ticket = self.counter.next()?;
        let record = PresenceRecord {
            presence: presence.to_owned(),
            status_msg,
            last_active_ts: now_ms(),
            count: ticket.count,
        };
        let mut batch = Batch::new();
        batch.put_json(&self.tree, user.as_bytes(), &record);
        self.store.commit_async(batch).await?;
        Ok(())
    }

    /// Presence records changed in `(after, upto]`.
    pub fn changes(&self, after: u64, upto: u64) -> Result<Vec<(OwnedUserId, PresenceRecord)>> {
        let mut out = Vec::new();
        for row in self.tree.iter() {
            let (k, v) = row?;
            let Ok(record) = serde_json::from_slice::<PresenceRecord>(&v) else {
                continue;
            };
            if record.count > after
                && record.count <= upto
                && let Ok(user) = UserId::parse(String::from_utf8_lossy(&k).as_ref())
            {
                out.push((user, record));
            }
        }
        Ok(out)
    }
}
