//! Joining a room through a peer, and the memberships this server keeps
//! of rooms it is not in (a peer's invite, a leave handed back): the room's
//! state from send_join is checked as a whole before the join is placed on
//! top of it.

use std::sync::Arc;

use archipel_store::Batch;
use ruma::{
    CanonicalJsonObject, EventId, OwnedEventId, RoomId, RoomVersionId, UserId,
    events::room::member::MembershipState, room_version_rules::RoomVersionRules,
};

use super::{
    super::{Pdu, PduBuilder, RoomMeta, Rooms, append::room_rules, snapshot::State},
    authorize::authorize_by_auth_events,
    resolve::heavy,
};
use crate::{Error, Result};

/// A room this server joined through a peer.
pub struct JoinedRoom {
    pub count: u64,
    pub join: Arc<Pdu>,
}

impl Rooms {
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
        let builder = PduBuilder::member(user_id, serde_json::json!({ "membership": membership }));
        let (object, version, _) = self.build_event(room_id, user_id, &builder, &meta)?;
        Ok((version, object))
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
        let membership = super::super::append::membership_of(&pdu);
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
        let record = super::super::MembershipRecord {
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
