//! How far each bridge has been sent: its cursor in the bridges' outbox,
//! the transaction in flight (kept until the bridge acknowledges it, so a
//! retry, after a restart too, sends the same events under the same
//! transaction ID), and the next transaction ID.

use archipel_store::{Batch, Store, Tree};
use serde::{Deserialize, Serialize};

use crate::{Result, columns as cf};

/// A transaction sent and not yet acknowledged.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct InFlight {
    pub txn_id: String,
    /// The outbox position its last event came from.
    pub last: u64,
    /// The request body, exactly as sent.
    pub body: String,
}

/// One bridge's state.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct State {
    /// Outbox positions up to this one have been delivered or skipped.
    pub cursor: u64,
    pub next_txn: u64,
    pub in_flight: Option<InFlight>,
    /// When the last transaction was acknowledged (ms since the epoch).
    #[serde(default)]
    pub last_success_ms: Option<u64>,
}

pub struct AppserviceState {
    store: Store,
    tree: Tree,
}

impl AppserviceState {
    pub fn new(store: &Store) -> Result<Self> {
        Ok(Self {
            store: store.clone(),
            tree: store.tree(cf::APPSERVICEID_STATE)?,
        })
    }

    pub fn get(&self, id: &str) -> Result<State> {
        Ok(self.tree.get_json(id.as_bytes())?.unwrap_or_default())
    }

    /// Stores `state`, durably.
    pub async fn set(&self, id: &str, state: &State) -> Result<()> {
        let mut batch = Batch::new();
        batch.put_json(&self.tree, id.as_bytes(), state);
        self.store.commit_async(batch).await?;
        Ok(())
    }
}
