//! The bridges' outbox: every event since the bridges last took theirs
//! (`count_appservice`, written in the event's own batch while a bridge is
//! installed; see [`crate::appservice::sender`]).

use super::Rooms;
use crate::Result;

impl Rooms {
    /// Up to `limit` entries of the bridges' outbox after position
    /// `after`, oldest first: (position, event ID).
    pub fn appservice_outbox(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, ruma::OwnedEventId)>> {
        let mut out = Vec::new();
        for row in self
            .count_appservice
            .scan_from(after.saturating_add(1).to_be_bytes().to_vec(), Vec::new())
            .take(limit)
        {
            let (key, value) = row?;
            let position = u64::from_be_bytes(
                <[u8; 8]>::try_from(&key[..])
                    .map_err(|_| crate::Error::internal("an outbox key is not a position"))?,
            );
            out.push((position, self.count_appservice.decode_str(&value)?));
        }
        Ok(out)
    }

    /// Forgets the bridges' outbox up to `upto`: every bridge has been
    /// sent that far.
    pub async fn prune_appservice_outbox(&self, upto: u64) -> Result<()> {
        let mut batch = archipel_store::Batch::new();
        batch.delete_range(
            &self.count_appservice,
            0u64.to_be_bytes(),
            upto.saturating_add(1).to_be_bytes(),
        );
        Ok(self.store.commit_async(batch).await?)
    }
}
