//! Room state: current, and as it was at a stream position.

use std::collections::BTreeMap;

use archipel_store::{Tree, key};
use ruma::{EventId, OwnedEventId, RoomId, events::StateEventType};

use super::{Pdu, Rooms, append::state_key_bytes};
use crate::Result;

impl Rooms {
    pub fn get_pdu(&self, event_id: &EventId) -> Result<Option<Pdu>> {
        Ok(self.eventid_pdu.get_json(event_id.as_bytes())?)
    }

    /// The event as created, even if it was redacted since.
    pub fn get_original_pdu(&self, event_id: &EventId) -> Result<Option<Pdu>> {
        self.read_original(|tree| tree.get_json(event_id.as_bytes()))
    }

    /// The stored JSON of the event as created, even if it was redacted since.
    pub(super) fn original_pdu_text(&self, event_id: &EventId) -> Result<Option<Vec<u8>>> {
        self.read_original(|tree| tree.get(event_id.as_bytes()))
    }

    /// Reads with `read` from the kept original (written when a redaction
    /// replaced the event), else from the event as stored.
    fn read_original<T>(
        &self,
        read: impl Fn(&Tree) -> archipel_store::Result<Option<T>>,
    ) -> Result<Option<T>> {
        match read(&self.eventid_originalpdu)? {
            Some(original) => Ok(Some(original)),
            None => Ok(read(&self.eventid_pdu)?),
        }
    }

    /// The room and stream position of an event.
    pub fn position(&self, event_id: &EventId) -> Result<Option<(ruma::OwnedRoomId, u64)>> {
        Ok(self
            .eventid_position
            .get(event_id.as_bytes())?
            .and_then(|b| super::append::decode_position(&b)))
    }

    pub fn state_event_id(
        &self,
        room_id: &RoomId,
        kind: &StateEventType,
        state_key: &str,
    ) -> Result<Option<OwnedEventId>> {
        let bytes = self
            .roomid_statekey_eventid
            .get(state_key_bytes(room_id, kind, state_key))?;
        Ok(bytes
            .map(|b| self.roomid_statekey_eventid.decode_str(&b))
            .transpose()?)
    }

    pub fn state_pdu(
        &self,
        room_id: &RoomId,
        kind: &StateEventType,
        state_key: &str,
    ) -> Result<Option<Pdu>> {
        match self.state_event_id(room_id, kind, state_key)? {
            Some(id) => self.get_pdu(&id),
            None => Ok(None),
        }
    }

    /// The current state events of `wanted` (type and state key) that
    /// exist, in two batched reads: their event IDs, then the events.
    pub fn state_pdus(
        &self,
        room_id: &RoomId,
        wanted: &[(StateEventType, &str)],
    ) -> Result<Vec<Pdu>> {
        let keys: Vec<Vec<u8>> = wanted
            .iter()
            .map(|(kind, state_key)| state_key_bytes(room_id, kind, state_key))
            .collect();
        let ids = self
            .roomid_statekey_eventid
            .get_many(&keys)?
            .into_iter()
            .flatten()
            .map(|id| self.roomid_statekey_eventid.decode_str(&id))
            .collect::<archipel_store::Result<Vec<OwnedEventId>>>()?;
        let ids: Vec<&[u8]> = ids.iter().map(|id| id.as_bytes()).collect();
        self.eventid_pdu
            .get_many(&ids)?
            .into_iter()
            .flatten()
            .map(|pdu| Ok(self.eventid_pdu.decode_json(&pdu)?))
            .collect()
    }

    /// The content of a state event, as JSON text.
    pub fn state_content(
        &self,
        room_id: &RoomId,
        kind: &StateEventType,
        state_key: &str,
    ) -> Result<Option<String>> {
        Ok(self
            .state_pdu(room_id, kind, state_key)?
            .map(|pdu| pdu.content.get().to_owned()))
    }

    /// The content of a state event, as JSON.
    pub fn state_json(
        &self,
        room_id: &RoomId,
        kind: &StateEventType,
        state_key: &str,
    ) -> Result<Option<serde_json::Value>> {
        Ok(self
            .state_pdu(room_id, kind, state_key)?
            .map(|pdu| pdu.content_value()))
    }

    /// The room's current state.
    pub fn current_state(&self, room_id: &RoomId) -> Result<Vec<Pdu>> {
        self.current_state_under(key::prefix([room_id.as_bytes()]))
    }

    /// The room's current state events of one type (the children of a
    /// space, say), without reading the rest.
    pub fn current_state_of_type(
        &self,
        room_id: &RoomId,
        kind: &StateEventType,
    ) -> Result<Vec<Pdu>> {
        self.current_state_under(key::prefix([
            room_id.as_bytes(),
            kind.to_string().as_bytes(),
        ]))
    }

    fn current_state_under(&self, prefix: Vec<u8>) -> Result<Vec<Pdu>> {
        let mut out = Vec::new();
        for row in self.roomid_statekey_eventid.scan_prefix(prefix) {
            let (_, value) = row?;
            let id: OwnedEventId = self.roomid_statekey_eventid.decode_str(&value)?;
            if let Some(pdu) = self.get_pdu(&id)? {
                out.push(pdu);
            }
        }
        Ok(out)
    }

    /// State as it was right after stream position `at` (inclusive).
    pub fn state_at(&self, room_id: &RoomId, at: u64) -> Result<Vec<Pdu>> {
        self.state_changes(room_id, 0, at)
    }

    /// The latest value of each piece of state that changed in `(after, upto]`.
    pub fn state_changes(&self, room_id: &RoomId, after: u64, upto: u64) -> Result<Vec<Pdu>> {
        let mut latest: BTreeMap<Vec<u8>, OwnedEventId> = BTreeMap::new();
        for row in self
            .roomid_statekey_count_eventid
            .scan_prefix(key::prefix([room_id.as_bytes()]))
        {
            let (k, value) = row?;
            let Some((state, count)) = key::split_last_u64(&k) else {
                continue;
            };
            if count > after && count <= upto {
                let id: OwnedEventId = self.roomid_statekey_count_eventid.decode_str(&value)?;
                latest.insert(state.to_vec(), id);
            }
        }
        let mut out = Vec::with_capacity(latest.len());
        for id in latest.values() {
            if let Some(pdu) = self.get_pdu(id)? {
                out.push(pdu);
            }
        }
        Ok(out)
    }

    /// The state event that held `(kind, state_key)` right after position `at`.
    pub fn state_pdu_at(
        &self,
        room_id: &RoomId,
        kind: &StateEventType,
        state_key: &str,
        at: u64,
    ) -> Result<Option<Pdu>> {
        let state = state_key_bytes(room_id, kind, state_key);
        let mut prefix = state.clone();
        prefix.push(key::SEP);
        let from = key::with_u64(state, at);
        if let Some(row) = self
            .roomid_statekey_count_eventid
            .scan_rev_from(from, prefix)
            .next()
        {
            let (_, value) = row?;
            let id: OwnedEventId = self.roomid_statekey_count_eventid.decode_str(&value)?;
            return self.get_pdu(&id);
        }
        Ok(None)
    }
}
