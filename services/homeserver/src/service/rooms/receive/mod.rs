//! Events from peers: authorized against the state before them, placed in
//! the room's graph, and the current state resolved when the graph forks.
//!
//! [`Rooms::receive`] runs the spec's checks on a peer's event in their
//! order ("Checks performed on receipt of a PDU"); the caller has done the
//! first three (format, signatures, content hash: `ops::peer_event`):
//!
//! 1. prerequisites (`prerequisites.rs`): every prev and auth event is
//!    here, or the caller is told which to fetch;
//! 2. the auth rules against the event's own auth events, then against the
//!    state before it (`authorize.rs`): failing either rejects it;
//! 3. the auth rules against the room's current state (`soft_fail.rs`):
//!    failing that soft-fails it: stored, never shown to clients or built
//!    upon;
//! 4. placing it (`place.rs`): indexed, the forward extremities moved on,
//!    the current state resolved when the graph forks (`resolve.rs`), and
//!    queued for the room's other servers.
//!
//! Joining through a peer, and a peer's invites and leaves of rooms this
//! server is not in, are in `join.rs`.

mod authorize;
mod join;
mod place;
mod prerequisites;
mod resolve;
mod soft_fail;
#[cfg(test)]
mod tests;

use archipel_store::Batch;
use ruma::{
    CanonicalJsonObject, EventId, OwnedEventId, OwnedRoomId, RoomId, RoomVersionId, ServerName,
    room_version_rules::RoomVersionRules,
};

pub use join::JoinedRoom;

use super::{Pdu, Rooms, append::room_rules};
use crate::{Error, Result};

/// Which servers an event placed by [`Rooms::receive`] is sent on to.
#[derive(Clone, Copy)]
pub enum Relay<'a> {
    /// None: a peer's event, which its origin sends to the room itself.
    Nowhere,
    /// The room's servers but this one: a join or leave a peer handed this
    /// server to place in the room.
    AllBut(&'a ServerName),
    /// Every server of the room: an event made here with a peer's help,
    /// such as a countersigned invite.
    All,
}

/// What became of an event from a peer.
#[derive(Debug)]
pub enum Received {
    /// Stored and placed in the room at this stream position.
    Accepted(u64),
    /// Stored, but it fails the auth rules against the room's current state.
    SoftFailed(String),
    /// Fails the auth rules against its auth events or the state before it.
    Rejected(String),
    /// This server has it already.
    AlreadyKnown,
    /// Events it follows or is authorized by that this server lacks.
    Missing(Vec<OwnedEventId>),
}

impl Rooms {
    /// Whether this server has the event, placed or rejected.
    pub fn is_known(&self, event_id: &EventId) -> Result<bool> {
        Ok(self.eventid_pdu.contains(event_id.as_bytes())?
            || self.eventid_rejected.contains(event_id.as_bytes())?)
    }

    /// The rules of a room this server knows.
    pub fn rules(&self, room_id: &RoomId) -> Result<(RoomVersionId, RoomVersionRules)> {
        let meta = self
            .meta(room_id)?
            .ok_or_else(|| Error::not_found(format!("This server is not in {room_id}.")))?;
        let rules = room_rules(&meta.version)?;
        Ok((meta.version, rules))
    }

    /// Places an event, already checked for signatures and hashes, and
    /// queues it for other servers as `relay` says.
    ///
    /// One event of a room at a time: the room's lock is held from reading
    /// its state and extremities until the write that replaces them. The
    /// fsync comes after the lock is released, so that writers to other
    /// rooms share it; the stream ticket is dropped only after the sync, so
    /// that no reader's position passes an event that is not yet durable.
    pub async fn receive(
        &self,
        event_id: &EventId,
        object: CanonicalJsonObject,
        relay: Relay<'_>,
    ) -> Result<Received> {
        let room_id = room_of(event_id, &object)?;
        let lock = self.room_lock(&room_id);
        let serialized = lock.lock().await;
        if self.is_known(event_id)? {
            return Ok(Received::AlreadyKnown);
        }
        let meta = self
            .meta(&room_id)?
            .ok_or_else(|| Error::not_found(format!("This server is not in {room_id}.")))?;
        let rules = room_rules(&meta.version)?;
        let pdu = Pdu::from_signed(event_id.to_owned(), object.clone(), &rules)
            .map_err(|e| Error::bad_json(format!("Malformed event {event_id}: {e}")))?;
        if pdu.room_id != room_id {
            return Err(Error::bad_json(format!(
                "Event {event_id} names another room."
            )));
        }

        let missing = self.missing_prerequisites(&pdu)?;
        if !missing.is_empty() {
            return Ok(Received::Missing(missing));
        }

        let (state_before, state_before_id) = self.state_before(&rules, &pdu, &meta)?;
        if let Err(why) = self.authorize(&rules, &pdu, &state_before) {
            return self.reject(event_id, &room_id, why).await;
        }

        let mut batch = Batch::new();
        let mut original = object;
        original.remove("unsigned");
        batch.put_json(&self.eventid_federationjson, event_id.as_bytes(), &original);
        let (after, after_id) =
            self.state_after(&mut batch, &pdu, state_before, state_before_id, &meta)?;

        let current = self.load_state(meta.state_id)?;
        if let Some(why) = self.soft_fail_reason(&rules, &pdu, &current)? {
            return self.store_soft_failed(batch, &pdu, why).await;
        }

        let ticket = self.counter.next()?;
        let states = place::States {
            current,
            after,
            after_id,
        };
        let placed = self.place(&mut batch, pdu, &meta, states, ticket.count, relay)?;
        let written = self.store.write_async(batch).await?;
        if placed.membership_changed {
            self.forget_servers(&room_id);
        }
        drop(serialized);
        self.store.sync_async(written).await?;
        drop(ticket);
        if placed.queued {
            self.outgoing.notify_one();
        }
        Ok(Received::Accepted(placed.count))
    }
}

/// The room an event is in: its `room_id`, or for a create event without
/// one (room version 12 on), the room its hash names.
fn room_of(event_id: &EventId, object: &CanonicalJsonObject) -> Result<OwnedRoomId> {
    match object.get("room_id") {
        Some(ruma::CanonicalJsonValue::String(id)) => OwnedRoomId::try_from(id.as_str())
            .map_err(|e| Error::bad_json(format!("Malformed event {event_id}: {e}"))),
        _ => Ok(super::pdu::room_id_of_create(event_id)),
    }
}
