//! Placing a peer's event in the room: the state after it, then (if it
//! passed every check) the timeline index, the forward extremities, the
//! current state (resolved when the graph forks), and the queues to the
//! room's other servers. Everything goes into the caller's batch.

use std::sync::Arc;

use archipel_store::Batch;
use ruma::{OwnedEventId, events::StateEventType};

use super::{
    super::{Pdu, RoomMeta, Rooms, append::room_rules, snapshot::State},
    Relay,
};
use crate::Result;

/// The room's state around an event being placed.
pub(super) struct States {
    /// The room's current state before the event.
    pub current: Arc<State>,
    /// The state right after the event.
    pub after: Arc<State>,
    /// The snapshot of [`Self::after`].
    pub after_id: u64,
}

/// What placing an event changed, for the caller to act on after writing.
pub(super) struct Placed {
    pub count: u64,
    /// The event is queued for other servers.
    pub queued: bool,
    /// The room's members changed, so its list of servers is stale.
    pub membership_changed: bool,
}

impl Rooms {
    /// The state after `pdu`, saved as a snapshot (the state before it
    /// when it is no state event) and recorded as the event's.
    pub(super) fn state_after(
        &self,
        batch: &mut Batch,
        pdu: &Pdu,
        before: Arc<State>,
        before_id: Option<u64>,
        meta: &RoomMeta,
    ) -> Result<(Arc<State>, u64)> {
        let mut after = before;
        if let Some(state_key) = &pdu.state_key {
            Arc::make_mut(&mut after).insert(
                (pdu.state_event_type(), state_key.clone()),
                pdu.event_id.clone(),
            );
        }
        let after_id = match (before_id, &pdu.state_key) {
            (Some(id), None) => id,
            _ => self.save_state(batch, Some(meta.state_id), &after)?,
        };
        batch.put(
            &self.eventid_stateid,
            pdu.event_id.as_bytes(),
            after_id.to_be_bytes(),
        );
        Ok((after, after_id))
    }

    /// Places `pdu` at stream position `count`: indexed, a forward
    /// extremity in place of the ones it follows, the current state moved
    /// on, and queued for other servers as `relay` says.
    pub(super) fn place(
        &self,
        batch: &mut Batch,
        mut pdu: Pdu,
        meta: &RoomMeta,
        states: States,
        count: u64,
        relay: Relay<'_>,
    ) -> Result<Placed> {
        let rules = room_rules(&meta.version)?;
        self.add_prev_content(&mut pdu)?;
        self.index_pdu(batch, &pdu, count, &meta.version)?;

        let mut extremities: Vec<OwnedEventId> = meta
            .extremities
            .iter()
            .filter(|id| !pdu.prev_events.contains(id))
            .cloned()
            .collect();
        extremities.push(pdu.event_id.clone());
        let (new_current, new_current_id) = if extremities.len() == 1 {
            (states.after, states.after_id)
        } else {
            let mut ids = Vec::new();
            for id in &extremities {
                ids.push(match self.state_id_after(id)? {
                    Some(state) => state,
                    None if *id == pdu.event_id => states.after_id,
                    None => meta.state_id,
                });
            }
            // The event is not stored yet: resolution reads it from here.
            let (state, existing) = self.resolve_ids(&rules, &ids, Some(&pdu))?;
            let id = match existing {
                Some(id) => id,
                None => self.save_state(batch, Some(meta.state_id), &state)?,
            };
            (state, id)
        };
        let mut membership_changed = false;
        for (kind, _, changed) in super::super::snapshot::delta(&states.current, &new_current) {
            let Some(changed) = changed else { continue };
            let changed_pdu = if changed == pdu.event_id {
                Some(pdu.clone())
            } else {
                self.get_pdu(&changed)?
            };
            if let Some(changed_pdu) = changed_pdu {
                self.index_current_state(batch, &changed_pdu, count);
            }
            membership_changed |= kind == StateEventType::RoomMember.to_string();
        }
        let new_meta = RoomMeta {
            version: meta.version.clone(),
            extremities,
            depth: u64::from(pdu.depth).max(meta.depth),
            last_count: count,
            state_id: new_current_id,
        };
        batch.put_json(&self.roomid_meta, pdu.room_id.as_bytes(), &new_meta);
        let queued = match relay {
            Relay::Nowhere => false,
            Relay::AllBut(origin) => self.queue_outgoing(batch, &pdu, count, Some(origin))?,
            Relay::All => self.queue_outgoing(batch, &pdu, count, None)?,
        };
        Ok(Placed {
            count,
            queued,
            membership_changed,
        })
    }
}
