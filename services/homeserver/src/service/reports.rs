//! Reports of events and rooms that users flag for the operators (spec
//! "Reporting content"), kept in the order they came.

use archipel_store::{Batch, Store, Tree};
use ruma::{EventId, OwnedEventId, OwnedRoomId, OwnedUserId, RoomId, UserId};
use serde::{Deserialize, Serialize};

use crate::{Error, Result, columns as cf, service::users::now_ms};

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

/// The longest reason taken, in bytes: a report is a note to the operator.
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

    /// Keeps a report of `room_id` (or of `event_id` in it) by `reporter`
    /// durably, stamped with the time. An empty reason is none; a longer
    /// one than [`MAX_REASON_BYTES`] is refused. Its key is the time and a
    /// random tail, so that reports made at once never collide.
    pub async fn add(
        &self,
        reporter: &UserId,
        room_id: &RoomId,
        event_id: Option<&EventId>,
        reason: Option<&str>,
    ) -> Result<()> {
        if reason.is_some_and(|r| r.len() > MAX_REASON_BYTES) {
            return Err(Error::invalid_param(format!(
                "The reason is longer than {MAX_REASON_BYTES} bytes."
            )));
        }
        let report = Report {
            ts: now_ms(),
            reporter: reporter.to_owned(),
            room_id: room_id.to_owned(),
            event_id: event_id.map(ToOwned::to_owned),
            reason: reason.filter(|r| !r.is_empty()).map(str::to_owned),
        };
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
            out.push(self.tree.decode_json(&value)?);
        }
        Ok(out)
    }
}
