//! Presence: online, unavailable or offline, with an optional status message.

use std::sync::Arc;

use archipel_store::{Batch, Store, Tree};
use ruma::{OwnedUserId, UserId, presence::PresenceState};
use serde::{Deserialize, Serialize};

use crate::{Result, columns as cf, counter::Counter, service::users::now_ms};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PresenceRecord {
    pub presence: PresenceState,
    #[serde(default)]
    pub status_msg: Option<String>,
    pub last_active_ts: u64,
    pub count: u64,
}

pub struct Presence {
    store: Store,
    counter: Arc<Counter>,
    tree: Tree,
    /// Each user's latest change by its stream position, so that a sync
    /// reads only the changes in its range, not every user's presence.
    by_count: Tree,
}

impl Presence {
    pub fn new(store: Store, counter: Arc<Counter>) -> Result<Self> {
        let presence = Self {
            tree: store.tree(cf::USERID_PRESENCE)?,
            by_count: store.tree(cf::COUNT_USERID_PRESENCE)?,
            store,
            counter,
        };
        presence.index_older_records()?;
        Ok(presence)
    }

    /// Indexes the records of a database made before the index existed.
    fn index_older_records(&self) -> Result<()> {
        if self.store.is_follower() || self.by_count.iter().next().is_some() {
            return Ok(());
        }
        let mut batch = Batch::new();
        for row in self.tree.iter() {
            let (user, value) = row?;
            let record: PresenceRecord = self.tree.decode_json(&value)?;
            batch.put(&self.by_count, record.count.to_be_bytes(), &user);
        }
        if !batch.is_empty() {
            self.store.commit(batch)?;
        }
        Ok(())
    }

    pub fn get(&self, user: &UserId) -> Result<Option<PresenceRecord>> {
        Ok(self.tree.get_json(user.as_bytes())?)
    }

    /// What a sync's `set_presence` says: `offline` leaves the user's
    /// presence as it is, `unavailable` sets it, anything else makes the
    /// user online.
    pub async fn syncing(&self, user: &UserId, set_presence: &PresenceState) -> Result<()> {
        match set_presence {
            PresenceState::Offline => Ok(()),
            PresenceState::Unavailable => self.set(user, PresenceState::Unavailable, None).await,
            _ => self.set(user, PresenceState::Online, None).await,
        }
    }

    /// Records the user's presence. Only a change of state or message is a
    /// sync-visible change; activity alone just refreshes `last_active_ts`.
    pub async fn set(
        &self,
        user: &UserId,
        presence: PresenceState,
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
            presence,
            status_msg,
            last_active_ts: now_ms(),
            count: ticket.count,
        };
        let mut batch = Batch::new();
        batch.put_json(&self.tree, user.as_bytes(), &record);
        if let Some(previous) = previous {
            batch.delete(&self.by_count, previous.count.to_be_bytes());
        }
        batch.put(&self.by_count, record.count.to_be_bytes(), user.as_bytes());
        self.store.commit_async(batch).await?;
        Ok(())
    }

    /// Presence records changed in `(after, upto]`, each user's latest.
    pub fn changes(&self, after: u64, upto: u64) -> Result<Vec<(OwnedUserId, PresenceRecord)>> {
        let mut out = Vec::new();
        for row in self
            .by_count
            .scan_from((after + 1).to_be_bytes().to_vec(), Vec::new())
        {
            let (k, user) = row?;
            let Some(count) = archipel_store::key::parse_u64(&k) else {
                continue;
            };
            if count > upto {
                break;
            }
            let user: OwnedUserId = self.by_count.decode_str(&user)?;
            // Two changes of one user at once can leave an older entry
            // behind: only the one the record names counts.
            if let Some(record) = self.get(&user)?
                && record.count == count
            {
                out.push((user, record));
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use archipel_store::StoreOptions;

    #[tokio::test]
    async fn changes_come_from_the_index_and_older_records_are_indexed_at_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(
            dir.path(),
            crate::columns::COLUMNS,
            &StoreOptions::default(),
        )
        .expect("store");
        let counter = Arc::new(Counter::open(store.clone()).expect("counter"));
        // A record written before the index existed.
        let older = PresenceRecord {
            presence: PresenceState::Unavailable,
            status_msg: None,
            last_active_ts: 1,
            count: counter.next().expect("ticket").count,
        };
        let mut batch = Batch::new();
        batch.put_json(
            &store.tree(cf::USERID_PRESENCE).expect("tree"),
            b"@old:localhost",
            &older,
        );
        store.commit(batch).expect("commit");

        let presence = Presence::new(store, counter.clone()).expect("presence");
        let alice = UserId::parse("@alice:localhost").expect("user");
        presence
            .set(&alice, PresenceState::Online, None)
            .await
            .expect("set");
        let first = counter.visible();
        presence
            .set(&alice, PresenceState::Unavailable, None)
            .await
            .expect("set");
        let upto = counter.visible();

        let users = |after| -> Vec<(String, String)> {
            presence
                .changes(after, upto)
                .expect("changes")
                .into_iter()
                .map(|(user, record)| (user.to_string(), record.presence.to_string()))
                .collect()
        };
        assert_eq!(
            users(0),
            [
                ("@old:localhost".to_owned(), "unavailable".to_owned()),
                ("@alice:localhost".to_owned(), "unavailable".to_owned())
            ],
            "each user once, with the latest change"
        );
        assert_eq!(
            users(first),
            [("@alice:localhost".to_owned(), "unavailable".to_owned())]
        );
        assert!(users(upto).is_empty());
    }
}
