//! Events from peers: authorized against the state before them, placed in
//! the room's graph, and the current state resolved when the graph forks.
//!
//! The caller has already checked each event's signatures and hashes; this
//! module applies the auth rules three times, as the spec orders: against
//! the event's own auth events and against the state before it (failing
//! either rejects it), then against the current state (failing that
//! soft-fails it: stored, but never shown to clients or built upon).

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};

use archipel_store::Batch;
use ruma::{
    CanonicalJsonObject, EventId, OwnedEventId, RoomId, RoomVersionId, ServerName, UserId,
    events::{StateEventType, TimelineEventType, room::member::MembershipState},
    room_version_rules::RoomVersionRules,
    state_res::{
        StateMap, check_state_dependent_auth_rules, check_state_independent_auth_rules, resolve,
        utils::event_id_set::EventIdSet,
    },
};

use super::{Pdu, PduBuilder, RoomMeta, Rooms, append::room_rules, snapshot::State};
use crate::{Error, Result};

/// The most events an auth chain is followed through: walking it costs
/// time and memory in proportion, and a peer chooses how long it is. A
/// room with tens of thousands of members stays well within it.
const MAX_AUTH_CHAIN: usize = 100_000;

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

/// A room this server joined through a peer.
pub struct JoinedRoom {
    pub count: u64,
    pub join: Arc<Pdu>,
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

    /// The member event `user_id` would sign to join or leave `room_id`
    /// (make_join, make_leave).
    pub fn member_template(
        &self,
        room_id: &RoomId,
        user_id: &UserId,
        membership: MembershipState,
    ) -> Result<(RoomVersionId, CanonicalJsonObject)> {
        let meta = self
            .meta(room_id)?
            .ok_or_else(|| Error::not_found(format!("This server is not in {room_id}.")))?;
        let builder = PduBuilder::state(
            TimelineEventType::RoomMember,
            user_id.as_str(),
            serde_json::json!({ "membership": membership }),
        );
        let (object, version, _) = self.build_event(room_id, user_id, &builder, &meta)?;
        Ok((version, object))
    }

    /// Places an event, already checked for signatures and hashes, and
    /// queues it for other servers as `relay` says.
    pub async fn receive(
        &self,
        event_id: &EventId,
        object: CanonicalJsonObject,
        relay: Relay<'_>,
    ) -> Result<Received> {
        let room_id = match object.get("room_id") {
            Some(ruma::CanonicalJsonValue::String(id)) => ruma::OwnedRoomId::try_from(id.as_str())
                .map_err(|e| Error::bad_json(format!("Malformed event {event_id}: {e}")))?,
            // Only a create event names no room (room version 12 on).
            _ => super::pdu::room_id_of_create(event_id),
        };
        let lock = self.room_lock(&room_id);
        let serialized = lock.lock().await;
        if self.is_known(event_id)? {
            return Ok(Received::AlreadyKnown);
        }
        let meta = self
            .meta(&room_id)?
            .ok_or_else(|| Error::not_found(format!("This server is not in {room_id}.")))?;
        let version = meta.version.clone();
        let rules = room_rules(&version)?;
        let mut pdu = Pdu::from_signed(event_id.to_owned(), object.clone(), &rules)
            .map_err(|e| Error::bad_json(format!("Malformed event {event_id}: {e}")))?;
        if pdu.room_id != room_id {
            return Err(Error::bad_json(format!(
                "Event {event_id} names another room."
            )));
        }

        let mut missing = Vec::new();
        for id in pdu.prev_events.iter().chain(&pdu.auth_events) {
            if !self.eventid_pdu.contains(id.as_bytes())? && !missing.contains(id) {
                missing.push(id.clone());
            }
        }
        if !missing.is_empty() {
            return Ok(Received::Missing(missing));
        }

        let mut prev_states = Vec::new();
        for prev in &pdu.prev_events {
            prev_states.push(self.state_id_after(prev)?.unwrap_or(meta.state_id));
        }
        let (state_before, state_before_id) = self.resolve_ids(&rules, &prev_states, None)?;

        if let Err(why) = self.authorize(&rules, &pdu, &state_before) {
            let mut batch = Batch::new();
            batch.put(&self.eventid_rejected, event_id.as_bytes(), why.as_bytes());
            self.store.commit_async(batch).await?;
            tracing::info!(%event_id, %room_id, reason = %why, "rejected an event from a peer");
            return Ok(Received::Rejected(why));
        }

        let mut batch = Batch::new();
        let mut original = object;
        original.remove("unsigned");
        batch.put_json(&self.eventid_federationjson, event_id.as_bytes(), &original);
        let mut state_after = state_before.clone();
        if let Some(state_key) = &pdu.state_key {
            Arc::make_mut(&mut state_after).insert(
                (pdu.state_event_type(), state_key.clone()),
                pdu.event_id.clone(),
            );
        }
        let state_after_id = match (state_before_id, &pdu.state_key) {
            (Some(id), None) => id,
            _ => self.save_state(&mut batch, Some(meta.state_id), &state_after)?,
        };
        batch.put(
            &self.eventid_stateid,
            event_id.as_bytes(),
            state_after_id.to_be_bytes(),
        );

        let current = self.load_state(meta.state_id)?;
        let soft_fail =
            match check_state_dependent_auth_rules(&rules.authorization, &pdu, |k, s| {
                self.pdu_in(&current, k, s)
            }) {
                Err(e) => Some(e.to_string()),
                // A redaction that may not take effect is not shown either.
                Ok(()) => self.redaction_refusal(&pdu)?,
            };
        if let Some(why) = soft_fail {
            batch.put_json(&self.eventid_pdu, event_id.as_bytes(), &pdu);
            // Kept out of the timeline, but it is in the room's graph: the
            // archive keeps it like any other event.
            let ticket = self.counter.next()?;
            self.capture_soft_failed(&mut batch, event_id, ticket.count, &why);
            self.store.commit_async(batch).await?;
            drop(ticket);
            tracing::info!(%event_id, %room_id, reason = %why, "soft-failed an event from a peer");
            return Ok(Received::SoftFailed(why));
        }

        self.add_prev_content(&mut pdu)?;
        let ticket = self.counter.next()?;
        let count = ticket.count;
        self.index_pdu(&mut batch, &pdu, count, &version)?;

        let mut extremities: Vec<OwnedEventId> = meta
            .extremities
            .iter()
            .filter(|id| !pdu.prev_events.contains(id))
            .cloned()
            .collect();
        extremities.push(pdu.event_id.clone());
        let (new_current, new_current_id) = if extremities.len() == 1 {
            (state_after.clone(), state_after_id)
        } else {
            let mut ids = Vec::new();
            for id in &extremities {
                ids.push(match self.state_id_after(id)? {
                    Some(state) => state,
                    None if *id == pdu.event_id => state_after_id,
                    None => meta.state_id,
                });
            }
            // The event is not stored yet: resolution reads it from here.
            let (state, existing) = self.resolve_ids(&rules, &ids, Some(&pdu))?;
            let id = match existing {
                Some(id) => id,
                None => self.save_state(&mut batch, Some(meta.state_id), &state)?,
            };
            (state, id)
        };
        let mut membership_changed = false;
        for (kind, _, changed) in super::snapshot::delta(&current, &new_current) {
            let Some(changed) = changed else { continue };
            let changed_pdu = if changed == pdu.event_id {
                Some(pdu.clone())
            } else {
                self.get_pdu(&changed)?
            };
            if let Some(changed_pdu) = changed_pdu {
                self.index_current_state(&mut batch, &changed_pdu, count);
            }
            membership_changed |= kind == StateEventType::RoomMember.to_string();
        }
        let depth = u64::from(pdu.depth).max(meta.depth);
        let new_meta = RoomMeta {
            version,
            extremities,
            depth,
            last_count: count,
            state_id: new_current_id,
        };
        batch.put_json(&self.roomid_meta, room_id.as_bytes(), &new_meta);
        let queued = match relay {
            Relay::Nowhere => false,
            Relay::AllBut(origin) => self.queue_outgoing(&mut batch, &pdu, count, Some(origin))?,
            Relay::All => self.queue_outgoing(&mut batch, &pdu, count, None)?,
        };
        let written = self.store.write_async(batch).await?;
        if membership_changed {
            self.forget_servers(&room_id);
        }
        drop(serialized);
        self.store.sync_async(written).await?;
        drop(ticket);
        if queued {
            self.outgoing.notify_one();
        }
        Ok(Received::Accepted(count))
    }

    /// The auth rules against the event's own auth events and the state before it.
    fn authorize(
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

    fn pdu_in(&self, state: &State, kind: &StateEventType, state_key: &str) -> Option<Pdu> {
        let id = state.get(&(kind.clone(), state_key.to_owned()))?;
        self.get_pdu(id).ok().flatten()
    }

    /// The state the given snapshots resolve to, and its ID if it is one of them.
    /// `pending`: an event not stored yet that the states may hold.
    fn resolve_ids(
        &self,
        rules: &RoomVersionRules,
        ids: &[u64],
        pending: Option<&Pdu>,
    ) -> Result<(Arc<State>, Option<u64>)> {
        let mut distinct: Vec<u64> = ids.to_vec();
        distinct.sort_unstable();
        distinct.dedup();
        match distinct.as_slice() {
            [] => Err(Error::internal("resolving no state")),
            [one] => Ok((self.load_state(*one)?, Some(*one))),
            many => {
                let states = many
                    .iter()
                    .map(|id| self.load_state(*id))
                    .collect::<Result<Vec<_>>>()?;
                let state = heavy(|| self.resolve_states(rules, &states, pending))?;
                let existing = many
                    .iter()
                    .zip(&states)
                    .find(|(_, s)| ***s == state)
                    .map(|(id, _)| *id);
                Ok((Arc::new(state), existing))
            }
        }
    }

    /// State resolution v2 over forked states. `pending`: an event not
    /// stored yet that the states may hold.
    pub fn resolve_states(
        &self,
        rules: &RoomVersionRules,
        states: &[Arc<State>],
        pending: Option<&Pdu>,
    ) -> Result<State> {
        let v2 = rules
            .state_res
            .v2_rules()
            .ok_or_else(|| Error::internal("room version without state resolution v2"))?;
        let fetch = |id: &EventId| -> Result<Option<Pdu>> {
            match pending {
                Some(pdu) if pdu.event_id == id => Ok(Some(pdu.clone())),
                _ => self.get_pdu(id),
            }
        };
        let mut chains = Vec::new();
        for state in states {
            let chain = self.auth_chain_with(state.values().cloned(), &fetch)?;
            chains.push(chain.into_iter().collect::<EventIdSet<OwnedEventId>>());
        }
        resolve(
            &rules.authorization,
            v2,
            states.iter().map(|s| &**s),
            chains,
            |id| fetch(id).ok().flatten(),
            |conflicted| conflicted_subgraph(conflicted, &fetch).ok(),
        )
        .map_err(|e| Error::internal(format!("state resolution failed: {e}")))
    }

    /// Every event reachable through `auth_events` from `start`, excluding `start`.
    pub fn auth_chain(
        &self,
        start: impl IntoIterator<Item = OwnedEventId>,
    ) -> Result<HashSet<OwnedEventId>> {
        self.auth_chain_with(start, &|id| self.get_pdu(id))
    }

    fn auth_chain_with(
        &self,
        start: impl IntoIterator<Item = OwnedEventId>,
        fetch: &dyn Fn(&EventId) -> Result<Option<Pdu>>,
    ) -> Result<HashSet<OwnedEventId>> {
        walk_auth_chain(start, fetch, &mut |_, _| {})
    }

    /// Finishes joining a room through a peer (after send_join): stores the
    /// room's state and auth chain, then the join on top of that state.
    /// Every event must have been checked for signatures and hashes.
    pub async fn complete_join(
        &self,
        room_id: &RoomId,
        version: RoomVersionId,
        events: Vec<(OwnedEventId, CanonicalJsonObject)>,
        state: Vec<OwnedEventId>,
        join: (OwnedEventId, CanonicalJsonObject),
    ) -> Result<JoinedRoom> {
        let rules = room_rules(&version)?;
        let lock = self.room_lock(room_id);
        let serialized = lock.lock().await;
        let meta = self.meta(room_id)?;

        // The state and its auth chain, each event checked against its own
        // auth events before anything is stored: the resident server chose
        // them, and a state event that fails (a power level someone gave
        // themselves) would otherwise become the room's state here.
        let mut received = Vec::new();
        for (id, object) in events {
            let pdu = Pdu::from_signed(id.clone(), object.clone(), &rules)
                .map_err(|e| Error::remote(format!("malformed event {id} from the room: {e}")))?;
            if pdu.room_id != room_id {
                return Err(Error::remote(format!("event {id} belongs to another room")));
            }
            if !self.eventid_pdu.contains(id.as_bytes())? {
                received.push((pdu, object));
            }
        }
        let (accepted, refused) = heavy(|| self.authorize_outliers(&rules, received));
        let refused_state: Vec<String> = refused
            .into_iter()
            .filter(|(id, _)| state.contains(id))
            .map(|(id, why)| format!("{id}: {why}"))
            .collect();
        if !refused_state.is_empty() {
            return Err(Error::remote(format!(
                "the room state fails the auth rules ({})",
                refused_state.join("; ")
            )));
        }
        let mut batch = Batch::new();
        let mut outliers = Vec::new();
        for (pdu, mut original) in accepted {
            original.remove("unsigned");
            batch.put_json(
                &self.eventid_federationjson,
                pdu.event_id.as_bytes(),
                &original,
            );
            batch.put_json(&self.eventid_pdu, pdu.event_id.as_bytes(), &pdu);
            outliers.push(pdu);
        }

        let by_id: std::collections::HashMap<&OwnedEventId, &Pdu> =
            outliers.iter().map(|pdu| (&pdu.event_id, pdu)).collect();
        let mut state_before = State::new();
        for id in &state {
            let pdu = match by_id.get(id) {
                Some(pdu) => (*pdu).clone(),
                None => self
                    .get_pdu(id)?
                    .ok_or_else(|| Error::remote(format!("state event {id} was not sent")))?,
            };
            let state_key = pdu.state_key.clone().ok_or_else(|| {
                Error::remote(format!("{id} in the room state is not a state event"))
            })?;
            state_before.insert((pdu.state_event_type(), state_key), id.clone());
        }
        let (join_id, join_object) = join;
        let join = Pdu::from_signed(join_id.clone(), join_object.clone(), &rules)
            .map_err(|e| Error::remote(format!("malformed join event: {e}")))?;
        // Written now: the join's auth check below reads these events.
        self.store.commit_async(batch).await?;
        self.authorize(&rules, &join, &state_before)
            .map_err(|e| Error::remote(format!("the join event fails the auth rules: {e}")))?;

        // The room's state enters the timeline before the join, oldest
        // first, so clients and the archive see how the room came to be.
        let mut batch = Batch::new();
        let mut tickets = Vec::new();
        let mut placed: Vec<&Pdu> = outliers
            .iter()
            .filter(|pdu| state.contains(&pdu.event_id))
            .collect();
        placed.sort_by_key(|pdu| (pdu.depth, pdu.origin_server_ts));
        let before_id =
            self.save_state(&mut batch, meta.as_ref().map(|m| m.state_id), &state_before)?;
        for pdu in placed {
            let ticket = self.counter.next()?;
            self.index_pdu(&mut batch, pdu, ticket.count, &version)?;
            self.index_current_state(&mut batch, pdu, ticket.count);
            batch.put(
                &self.eventid_stateid,
                pdu.event_id.as_bytes(),
                before_id.to_be_bytes(),
            );
            tickets.push(ticket);
        }
        let ticket = self.counter.next()?;
        let count = ticket.count;
        let mut original = join_object;
        original.remove("unsigned");
        batch.put_json(&self.eventid_federationjson, join_id.as_bytes(), &original);
        self.index_pdu(&mut batch, &join, count, &version)?;
        self.index_current_state(&mut batch, &join, count);
        let mut state_after = state_before;
        if let Some(state_key) = &join.state_key {
            state_after.insert(
                (join.state_event_type(), state_key.clone()),
                join_id.clone(),
            );
        }
        let after_id = self.save_state(&mut batch, Some(before_id), &state_after)?;
        batch.put(
            &self.eventid_stateid,
            join_id.as_bytes(),
            after_id.to_be_bytes(),
        );
        let new_meta = RoomMeta {
            version,
            extremities: vec![join_id],
            depth: u64::from(join.depth),
            last_count: count,
            state_id: after_id,
        };
        batch.put_json(&self.roomid_meta, room_id.as_bytes(), &new_meta);
        let written = self.store.write_async(batch).await?;
        self.forget_servers(room_id);
        drop(serialized);
        self.store.sync_async(written).await?;
        drop(tickets);
        drop(ticket);
        Ok(JoinedRoom {
            count,
            join: Arc::new(join),
        })
    }

    /// Checks events a peer sent without their place in the room's graph
    /// (a room's state and auth chain) each against its auth events, which
    /// must be among them, stored here, or accepted before it. Returns the
    /// accepted events and why each other one was refused.
    #[allow(clippy::type_complexity)]
    fn authorize_outliers(
        &self,
        rules: &RoomVersionRules,
        mut pending: Vec<(Pdu, CanonicalJsonObject)>,
    ) -> (Vec<(Pdu, CanonicalJsonObject)>, Vec<(OwnedEventId, String)>) {
        // Each event is checked once all of its auth events among these
        // were (Kahn's order, oldest first as far as it allows), so the
        // work stays linear in the events whatever order they came in.
        pending.sort_by_key(|(pdu, _)| pdu.depth);
        let index: std::collections::HashMap<OwnedEventId, usize> = pending
            .iter()
            .enumerate()
            .map(|(i, (pdu, _))| (pdu.event_id.clone(), i))
            .collect();
        let mut waiting_on = vec![0_usize; pending.len()];
        let mut dependents = vec![Vec::new(); pending.len()];
        for (i, (pdu, _)) in pending.iter().enumerate() {
            for id in &pdu.auth_events {
                if let Some(&auth) = index.get(id) {
                    waiting_on[i] += 1;
                    dependents[auth].push(i);
                }
            }
        }
        let mut ready: std::collections::VecDeque<usize> =
            (0..pending.len()).filter(|&i| waiting_on[i] == 0).collect();
        let mut pending: Vec<Option<(Pdu, CanonicalJsonObject)>> =
            pending.into_iter().map(Some).collect();
        let mut accepted: std::collections::HashMap<OwnedEventId, (Pdu, CanonicalJsonObject)> =
            std::collections::HashMap::new();
        let mut refused = Vec::new();
        while let Some(i) = ready.pop_front() {
            let Some((pdu, object)) = pending[i].take() else {
                continue;
            };
            let fetch = |id: &EventId| match accepted.get(id) {
                Some((pdu, _)) => Some(pdu.clone()),
                None => self.get_pdu(id).ok().flatten(),
            };
            match authorize_by_auth_events(rules, &pdu, &fetch) {
                Ok(()) => {
                    accepted.insert(pdu.event_id.clone(), (pdu, object));
                }
                Err(why) => refused.push((pdu.event_id.clone(), why)),
            }
            for &dependent in &dependents[i] {
                waiting_on[dependent] -= 1;
                if waiting_on[dependent] == 0 {
                    ready.push_back(dependent);
                }
            }
        }
        for (pdu, _) in pending.into_iter().flatten() {
            refused.push((pdu.event_id, "its auth events form a cycle".into()));
        }
        (accepted.into_values().collect(), refused)
    }

    /// The state before an event and the auth chain of that state, as a
    /// resident server hands them to a joining one.
    pub fn state_and_auth_chain(
        &self,
        event_id: &EventId,
    ) -> Result<(Vec<OwnedEventId>, Vec<OwnedEventId>)> {
        let pdu = self
            .get_pdu(event_id)?
            .ok_or_else(|| Error::not_found(format!("Unknown event {event_id}.")))?;
        let (_, rules) = self.rules(&pdu.room_id)?;
        let mut prev_states = Vec::new();
        for prev in &pdu.prev_events {
            if let Some(id) = self.state_id_after(prev)? {
                prev_states.push(id);
            }
        }
        let state = if prev_states.is_empty() {
            Arc::new(State::new())
        } else {
            self.resolve_ids(&rules, &prev_states, None)?.0
        };
        let state: Vec<OwnedEventId> = state.values().cloned().collect();
        let mut chain_start = state.clone();
        chain_start.extend(pdu.auth_events.iter().cloned());
        let chain = self.auth_chain(chain_start)?;
        Ok((state, chain.into_iter().collect()))
    }

    /// Records that `user` rejected an invite to a room this server is not
    /// in: the leave was sent through a peer, and the invite leaves sync.
    pub async fn store_remote_leave(
        &self,
        event_id: &EventId,
        object: CanonicalJsonObject,
        rules: &RoomVersionRules,
    ) -> Result<u64> {
        let pdu = Pdu::from_signed(event_id.to_owned(), object.clone(), rules)
            .map_err(|e| Error::bad_json(format!("Malformed leave: {e}")))?;
        self.store_outlier_membership(pdu, object, None).await
    }

    /// Keeps a peer's invite for a room this server is not in yet.
    pub async fn store_remote_invite(
        &self,
        event_id: &EventId,
        object: CanonicalJsonObject,
        invite_state: Vec<serde_json::Value>,
        rules: &RoomVersionRules,
    ) -> Result<u64> {
        let pdu = Pdu::from_signed(event_id.to_owned(), object.clone(), rules)
            .map_err(|e| Error::bad_json(format!("Malformed invite: {e}")))?;
        self.store_outlier_membership(pdu, object, Some(invite_state))
            .await
    }

    /// A membership of a local user in a room this server holds no graph
    /// of: the event is kept as received and the membership recorded.
    async fn store_outlier_membership(
        &self,
        pdu: Pdu,
        object: CanonicalJsonObject,
        invite_state: Option<Vec<serde_json::Value>>,
    ) -> Result<u64> {
        let event_id = pdu.event_id.clone();
        let membership = super::append::membership_of(&pdu);
        let invitee = pdu
            .state_key
            .as_deref()
            .and_then(|key| ruma::UserId::parse(key).ok())
            .ok_or_else(|| Error::bad_json("The member event names no user."))?;
        let lock = self.room_lock(&pdu.room_id);
        let _serialized = lock.lock().await;
        let ticket = self.counter.next()?;
        let count = ticket.count;
        let mut batch = Batch::new();
        let mut original = object;
        original.remove("unsigned");
        batch.put_json(&self.eventid_federationjson, event_id.as_bytes(), &original);
        batch.put_json(&self.eventid_pdu, event_id.as_bytes(), &pdu);
        let record = super::MembershipRecord {
            membership,
            count,
            event_id: pdu.event_id.clone(),
            sender: pdu.sender.clone(),
            forgotten: false,
            invite_state,
        };
        let key = archipel_store::key::key([invitee.as_bytes(), pdu.room_id.as_bytes()]);
        batch.put_json(&self.userid_roomid_membership, key, &record);
        self.raise_membership_changed(&invitee, count);
        let key = archipel_store::key::key([pdu.room_id.as_bytes(), invitee.as_bytes()]);
        batch.put_json(&self.roomid_userid_membership, key, &record);
        self.store.commit_async(batch).await?;
        drop(ticket);
        Ok(count)
    }
}

/// Every event reachable through `auth_events` from `start`, excluding
/// `start`, followed through at most [`MAX_AUTH_CHAIN`] events. `on_edge`
/// sees each event read and each of its auth events.
fn walk_auth_chain(
    start: impl IntoIterator<Item = OwnedEventId>,
    fetch: &dyn Fn(&EventId) -> Result<Option<Pdu>>,
    on_edge: &mut dyn FnMut(&OwnedEventId, &OwnedEventId),
) -> Result<HashSet<OwnedEventId>> {
    let mut seen = HashSet::new();
    let mut todo: Vec<OwnedEventId> = Vec::new();
    let mut follow = |pdu: Pdu, todo: &mut Vec<OwnedEventId>| {
        for auth in &pdu.auth_events {
            on_edge(&pdu.event_id, auth);
        }
        todo.extend(pdu.auth_events);
    };
    for id in start {
        if let Some(pdu) = fetch(&id)? {
            follow(pdu, &mut todo);
        }
    }
    while let Some(id) = todo.pop() {
        if !seen.insert(id.clone()) {
            continue;
        }
        if seen.len() > MAX_AUTH_CHAIN {
            return Err(Error::forbidden(format!(
                "The auth chain is longer than this server follows ({MAX_AUTH_CHAIN} events)."
            )));
        }
        if let Some(pdu) = fetch(&id)? {
            follow(pdu, &mut todo);
        }
    }
    Ok(seen)
}

/// The conflicted state subgraph of state resolution v2.1 (room version
/// 12 on): every event on an auth chain path from one conflicted state
/// event to another, the conflicted events included. Found in two passes:
/// down the conflicted events' auth chains, noting which events each one
/// authorizes, then up from the conflicted events along those notes.
fn conflicted_subgraph(
    conflicted: &StateMap<Vec<OwnedEventId>>,
    fetch: &dyn Fn(&EventId) -> Result<Option<Pdu>>,
) -> Result<EventIdSet<OwnedEventId>> {
    let targets: Vec<OwnedEventId> = conflicted.values().flatten().cloned().collect();
    let mut authorizes: HashMap<OwnedEventId, Vec<OwnedEventId>> = HashMap::new();
    walk_auth_chain(targets.iter().cloned(), fetch, &mut |event, auth| {
        authorizes
            .entry(auth.clone())
            .or_default()
            .push(event.clone());
    })?;
    let mut subgraph: HashSet<OwnedEventId> = targets.iter().cloned().collect();
    let mut todo = targets;
    while let Some(id) = todo.pop() {
        for child in authorizes.get(&id).into_iter().flatten() {
            if subgraph.insert(child.clone()) {
                todo.push(child.clone());
            }
        }
    }
    Ok(subgraph.into_iter().collect())
}

/// The auth rules an event must pass against its own auth events, found
/// with `fetch`: the state-independent rules, then the state-dependent
/// ones against the state its auth events make up.
fn authorize_by_auth_events(
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
        .then(|| super::pdu::create_event_id_of(&pdu.room_id))
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

/// Runs CPU-heavy work (state resolution, checking a room's state at a
/// join) on this worker while the runtime hands its other tasks to the
/// other workers, so that one peer's forks do not hold up every request.
fn heavy<T>(work: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(work)
        }
        _ => work(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use ruma::{
        CanonicalJsonObject, CanonicalJsonValue, EventId, OwnedEventId, RoomVersionId,
        events::StateEventType, user_id,
    };
    use serde_json::json;

    use super::super::{PduBuilder, Rooms, testing};

    fn signed(rooms: &Rooms, id: &EventId) -> (OwnedEventId, CanonicalJsonObject) {
        let json = rooms.federation_json(id).expect("read").expect("stored");
        (
            id.to_owned(),
            serde_json::from_value(json).expect("an object"),
        )
    }

    #[tokio::test]
    async fn a_join_refuses_room_state_that_fails_the_auth_rules() {
        // The resident server's room: Alice made it, Eve joined without power.
        let resident_dir = tempfile::tempdir().expect("tempdir");
        let (resident, _, _) = testing::rooms(resident_dir.path(), BTreeSet::new());
        let (alice, eve, carol) = (
            user_id!("@alice:a.test"),
            user_id!("@eve:a.test"),
            user_id!("@carol:a.test"),
        );
        let created = resident
            .create_room(alice, json!({ "room_version": "11" }))
            .await
            .expect("create the room");
        let room = &*created.pdu.room_id;
        let mut state = vec![created.pdu.event_id.clone()];
        for (sender, builder) in [
            (
                alice,
                PduBuilder::state(
                    "m.room.member",
                    alice.as_str(),
                    json!({ "membership": "join" }),
                ),
            ),
            (
                alice,
                PduBuilder::state(
                    "m.room.power_levels",
                    "",
                    json!({ "users": { alice: 100 } }),
                ),
            ),
            (
                alice,
                PduBuilder::state("m.room.join_rules", "", json!({ "join_rule": "public" })),
            ),
            (
                eve,
                PduBuilder::state(
                    "m.room.member",
                    eve.as_str(),
                    json!({ "membership": "join" }),
                ),
            ),
        ] {
            let appended = resident
                .append(room, sender, builder)
                .await
                .expect("build the room");
            state.push(appended.pdu.event_id.clone());
        }
        let join = resident
            .append(
                room,
                carol,
                PduBuilder::state(
                    "m.room.member",
                    carol.as_str(),
                    json!({ "membership": "join" }),
                ),
            )
            .await
            .expect("Carol's join")
            .pdu
            .event_id
            .clone();

        // What a dishonest resident hands the joining server: power levels
        // by which Eve gave herself 100, in place of Alice's.
        let (_, mut forged) = signed(&resident, &state[2]);
        let forged_id = EventId::parse("$forged-power-levels").expect("an event ID");
        forged.insert("sender".into(), CanonicalJsonValue::String(eve.to_string()));
        forged.insert(
            "content".into(),
            serde_json::from_value(json!({ "users": { alice: 100, eve: 100 } })).expect("content"),
        );
        forged.insert(
            "auth_events".into(),
            serde_json::from_value(json!([state[0], state[2], state[4]])).expect("ids"),
        );
        let mut events: Vec<_> = state.iter().map(|id| signed(&resident, id)).collect();
        events.push((forged_id.clone(), forged));
        let mut forged_state = state.clone();
        forged_state[2] = forged_id.clone();

        let joiner_dir = tempfile::tempdir().expect("tempdir");
        let (joiner, _, _) = testing::rooms(joiner_dir.path(), BTreeSet::new());
        let refused = joiner
            .complete_join(
                room,
                RoomVersionId::V11,
                events.clone(),
                forged_state,
                signed(&resident, &join),
            )
            .await
            .err()
            .expect("the join is refused");
        assert!(
            refused.to_string().contains(forged_id.as_str()),
            "{refused}"
        );
        assert!(
            joiner.meta(room).expect("read").is_none(),
            "no room is joined"
        );
        assert!(
            joiner.get_pdu(&forged_id).expect("read").is_none(),
            "nothing is stored"
        );

        // The room's true state joins, with Eve still without power.
        joiner
            .complete_join(
                room,
                RoomVersionId::V11,
                events,
                state,
                signed(&resident, &join),
            )
            .await
            .expect("the join");
        let power = joiner
            .state_content(room, &StateEventType::RoomPowerLevels, "")
            .expect("read")
            .expect("power levels");
        assert!(!power.contains(eve.as_str()), "{power}");
    }

    #[test]
    fn an_auth_chain_longer_than_the_bound_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (rooms, _, _) = testing::rooms(dir.path(), BTreeSet::new());
        // A chain without end: each event is authorized by the next one.
        let event = |n: usize| -> super::Pdu {
            serde_json::from_value(json!({
                "event_id": format!("$e{n}"),
                "room_id": "!r:a.test",
                "sender": "@eve:a.test",
                "origin_server_ts": 0,
                "type": "m.room.member",
                "state_key": "@eve:a.test",
                "content": { "membership": "join" },
                "prev_events": [],
                "depth": 1,
                "auth_events": [format!("$e{}", n + 1)],
                "hashes": {},
                "signatures": {},
            }))
            .expect("an event")
        };
        let fetch = |id: &EventId| -> crate::Result<Option<super::Pdu>> {
            Ok(Some(event(id.as_str()[2..].parse().expect("a number"))))
        };
        let refused = rooms
            .auth_chain_with([OwnedEventId::try_from("$e0").expect("an ID")], &fetch)
            .expect_err("the walk stops");
        assert!(refused.to_string().contains("100000"), "{refused}");
    }

    #[test]
    fn the_conflicted_subgraph_holds_the_paths_between_conflicted_events() {
        // c <- p1 <- p2 <- x, and c <- y: each event names its auth events.
        let graph: [(&str, &[&str]); 5] = [
            ("c", &[]),
            ("p1", &["c"]),
            ("p2", &["p1"]),
            ("x", &["p2"]),
            ("y", &["c"]),
        ];
        let event = |name: &str, auth: &[&str]| -> super::Pdu {
            serde_json::from_value(json!({
                "event_id": format!("${name}"),
                "room_id": "!r:a.test",
                "sender": "@alice:a.test",
                "origin_server_ts": 0,
                "type": "m.room.topic",
                "state_key": "",
                "content": { "topic": name },
                "prev_events": [],
                "depth": 1,
                "auth_events": auth.iter().map(|a| format!("${a}")).collect::<Vec<_>>(),
                "hashes": {},
                "signatures": {},
            }))
            .expect("an event")
        };
        let fetch = |id: &EventId| -> crate::Result<Option<super::Pdu>> {
            Ok(graph
                .iter()
                .find(|(name, _)| id.as_str()[1..] == **name)
                .map(|(name, auth)| event(name, auth)))
        };
        let id = |name: &str| OwnedEventId::try_from(format!("${name}")).expect("an ID");
        let mut conflicted = super::StateMap::new();
        conflicted.insert(
            (StateEventType::RoomTopic, String::new()),
            vec![id("x"), id("p1"), id("y")],
        );
        let subgraph = super::conflicted_subgraph(&conflicted, &fetch).expect("found");
        let mut names: Vec<String> = subgraph
            .iter()
            .map(|id| id.as_str()[1..].to_owned())
            .collect();
        names.sort();
        // p2 lies between x and p1; c lies below every conflicted event
        // but between none of them.
        assert_eq!(names, ["p1", "p2", "x", "y"]);
    }
}
