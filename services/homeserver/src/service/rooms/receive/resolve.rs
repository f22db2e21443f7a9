//! State resolution when the room's graph forks (v2, and v2.1 with its
//! conflicted subgraph from room version 12 on), and auth chains, which it
//! and joins read. Both are bounded: a peer chooses how long a chain is.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};

use ruma::{
    EventId, OwnedEventId,
    room_version_rules::RoomVersionRules,
    state_res::{StateMap, resolve, utils::event_id_set::EventIdSet},
};

use super::super::{Pdu, Rooms, snapshot::State};
use crate::{Error, Result};

/// The most events an auth chain is followed through: walking it costs
/// time and memory in proportion, and a peer chooses how long it is. A
/// room with tens of thousands of members stays well within it.
const MAX_AUTH_CHAIN: usize = 100_000;

impl Rooms {
    /// The state the given snapshots resolve to, and its ID if it is one of them.
    /// `pending`: an event not stored yet that the states may hold.
    pub(super) fn resolve_ids(
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

    pub(super) fn auth_chain_with(
        &self,
        start: impl IntoIterator<Item = OwnedEventId>,
        fetch: &dyn Fn(&EventId) -> Result<Option<Pdu>>,
    ) -> Result<HashSet<OwnedEventId>> {
        walk_auth_chain(start, fetch, &mut |_, _| {})
    }
}

/// Every event reachable through `auth_events` from `start`, excluding
/// `start`, followed through at most [`MAX_AUTH_CHAIN`] events. `on_edge`
/// sees each event read and each of its auth events.
pub(super) fn walk_auth_chain(
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
pub(super) fn conflicted_subgraph(
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

/// Runs CPU-heavy work (state resolution, checking a room's state at a
/// join) on this worker while the runtime hands its other tasks to the
/// other workers, so that one peer's forks do not hold up every request.
pub(super) fn heavy<T>(work: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(work)
        }
        _ => work(),
    }
}
