//! Steps 4 and 5 of the spec's checks on a peer's event: the auth rules
//! against the event's own auth events, then against the state before it.
//! Failing either rejects the event: it is remembered as rejected, and
//! nothing builds on it.

use std::sync::Arc;

use archipel_store::Batch;
use ruma::{
    EventId, RoomId,
    events::{StateEventType, TimelineEventType},
    room_version_rules::RoomVersionRules,
    state_res::{check_state_dependent_auth_rules, check_state_independent_auth_rules},
};

use super::super::{Pdu, RoomMeta, Rooms, snapshot::State};
use crate::Result;

impl Rooms {
    /// The state before `pdu`: its prev events' states, resolved when
    /// they differ, and the snapshot's ID when it is one of them.
    pub(super) fn state_before(
        &self,
        rules: &RoomVersionRules,
        pdu: &Pdu,
        meta: &RoomMeta,
    ) -> Result<(Arc<State>, Option<u64>)> {
        let mut prev_states = Vec::new();
        for prev in &pdu.prev_events {
            prev_states.push(self.state_id_after(prev)?.unwrap_or(meta.state_id));
        }
        self.resolve_ids(rules, &prev_states, None)
    }

    /// The auth rules against the event's own auth events and the state before it.
    pub(super) fn authorize(
        &self,
        rules: &RoomVersionRules,
        pdu: &Pdu,
        state_before: &State,
    ) -> std::result::Result<(), String> {
        let fetch = |id: &EventId| self.get_pdu(id).ok().flatten();
        authorize_by_auth_events(rules, pdu, &fetch)?;
        check_state_dependent_auth_rules(&rules.authorization, pdu, |k, s| {
            self.pdu_in(state_before, k, s)
        })
        .map_err(|e| format!("against the state before it: {e}"))
    }

    /// Remembers `event_id` as rejected, for `why`.
    pub(super) async fn reject(
        &self,
        event_id: &EventId,
        room_id: &RoomId,
        why: String,
    ) -> Result<super::Received> {
        let mut batch = Batch::new();
        batch.put(&self.eventid_rejected, event_id.as_bytes(), why.as_bytes());
        self.store.commit_async(batch).await?;
        tracing::info!(%event_id, %room_id, reason = %why, "rejected an event from a peer");
        Ok(super::Received::Rejected(why))
    }

    pub(super) fn pdu_in(
        &self,
        state: &State,
        kind: &StateEventType,
        state_key: &str,
    ) -> Option<Pdu> {
        let id = state.get(&(kind.clone(), state_key.to_owned()))?;
        self.get_pdu(id).ok().flatten()
    }
}

/// The auth rules an event must pass against its own auth events, found
/// with `fetch`: the state-independent rules, then the state-dependent
/// ones against the state its auth events make up.
pub(super) fn authorize_by_auth_events(
    rules: &RoomVersionRules,
    pdu: &Pdu,
    fetch: &dyn Fn(&EventId) -> Option<Pdu>,
) -> std::result::Result<(), String> {
    check_state_independent_auth_rules(&rules.authorization, pdu, fetch)?;
    let mut auth_state = std::collections::HashMap::new();
    // From room version 12 on the create event is no auth event: the
    // room's ID names it.
    let create = (rules.authorization.room_create_event_id_as_room_id
        && pdu.kind != TimelineEventType::RoomCreate)
        .then(|| super::super::pdu::create_event_id_of(&pdu.room_id))
        .flatten();
    for id in pdu.auth_events.iter().chain(&create) {
        if let Some(auth) = fetch(id)
            && let Some(state_key) = &auth.state_key
        {
            auth_state.insert((auth.state_event_type(), state_key.clone()), auth);
        }
    }
    check_state_dependent_auth_rules(&rules.authorization, pdu, |k, s| {
        auth_state.get(&(k.clone(), s.to_owned())).cloned()
    })
    .map_err(|e| format!("against its auth events: {e}"))
}
