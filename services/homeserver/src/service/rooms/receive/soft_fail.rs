//! The last check on a peer's event: the auth rules against the room's
//! current state. An event that fails it is soft-failed: stored and in the
//! room's graph (the archive keeps it like any other), but never shown to
//! clients or built upon.

use archipel_store::Batch;
use ruma::{room_version_rules::RoomVersionRules, state_res::check_state_dependent_auth_rules};

use super::{
    super::{Pdu, Rooms, snapshot::State},
    Received,
};
use crate::Result;

impl Rooms {
    /// Why `pdu` fails against the `current` state, if it does. A
    /// redaction that may not take effect fails too.
    pub(super) fn soft_fail_reason(
        &self,
        rules: &RoomVersionRules,
        pdu: &Pdu,
        current: &State,
    ) -> Result<Option<String>> {
        match check_state_dependent_auth_rules(&rules.authorization, pdu, |k, s| {
            self.pdu_in(current, k, s)
        }) {
            Err(e) => Ok(Some(e.to_string())),
            Ok(()) => self.redaction_refusal(pdu),
        }
    }

    /// Stores a soft-failed event with `batch` (the event as received and
    /// the state after it), out of the timeline, and hands it to the archive.
    pub(super) async fn store_soft_failed(
        &self,
        mut batch: Batch,
        pdu: &Pdu,
        why: String,
    ) -> Result<Received> {
        let event_id = &pdu.event_id;
        batch.put_json(&self.eventid_pdu, event_id.as_bytes(), pdu);
        let ticket = self.counter.next()?;
        self.capture_soft_failed(&mut batch, event_id, ticket.count, &why);
        self.store.commit_async(batch).await?;
        drop(ticket);
        tracing::info!(%event_id, room_id = %pdu.room_id, reason = %why, "soft-failed an event from a peer");
        Ok(Received::SoftFailed(why))
    }
}
