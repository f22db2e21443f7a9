//! Reports of events and rooms that users flag for the operators (spec
//! "Reporting content"), kept in the order they came.

use archipel_store::{Batch, Store, Tree};
use ruma::{OwnedEventId, OwnedRoomId, OwnedUserId};
use serde::{Deserialize, Serialize};

use crate::{Result, columns as cf, service::users::now_ms};

/// One report, as kept.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Report {
    /// When it was made, in milliseconds since the epoch.
    pub ts: u64,
    pub reporter: OwnedUserId,
    pub room_id: OwnedRoomId,
    /// The event reported; none when the room itself is.
    pub event_id: Option<OwnedEventId>,
    pub reason: Option<String>,
}

/// The longest reason kept, in bytes: a report is a note to the operator.
pub const MAX_REASON_BYTES: usize = 4096;

pub struct Reports {
    store: Store,
    tree: Tree,
}

impl Reports {
    pub fn new(store: Store) -> Result<Self> {
        Ok(Self {
            tree: store.tree(cf::ID_REPORT)?,
            store,
        })
    }

    /// Keeps a report durably, stamped with the time. Its key is that
    /// time and a random tail, so that reports made at once never collide.
    pub async fn add(&self, mut report: Report) -> Result<()> {
        report.ts = now_ms();
        let mut key = report.ts.to_be_bytes().to_vec();
        key.extend_from_slice(&rand::random::<u64>().to_be_bytes());
        let mut batch = Batch::new();
        batch.put_json(&self.tree, key, &report);
        self.store.commit_async(batch).await?;
        Ok(())
    }

    /// The newest `limit` reports, newest first.
    pub fn newest(&self, limit: usize) -> Result<Vec<Report>> {
        let mut out = Vec::new();
        for row in self
            .tree
            .scan_rev_from(vec![0xff; 16], Vec::new())
            .take(limit)
        {
            let (_, value) = row?;
            if let Ok(report) = serde_json::from_slice(&value) {
                out.push(report);
            }
        }
        Ok(out)
    }
}
