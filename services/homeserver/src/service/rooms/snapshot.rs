//! State snapshots: the room state right after each event.
//!
//! Federation needs the state at any event, not only the current one: an
//! incoming event is authorized against the state before it (the state after
//! its `prev_events`, resolved when they fork). Every event maps to a
//! snapshot ID; events that change no state share their predecessor's. A
//! snapshot is stored as the changes against a parent snapshot, with a full
//! copy every [`MAX_CHAIN`] links, so reading one costs a few lookups and a
//! member joining a large room costs one entry, not the whole member list.

use std::{collections::HashMap, sync::Arc, sync::atomic::Ordering};

use archipel_store::Batch;
use ruma::{EventId, OwnedEventId, events::StateEventType, state_res::StateMap};
use serde::{Deserialize, Serialize};

use super::Rooms;
use crate::{Error, Result};

/// A full copy is written at least every this many deltas.
const MAX_CHAIN: u32 = 32;
/// Snapshots kept decoded in memory.
const CACHE_ENTRIES: usize = 32;

pub type State = StateMap<OwnedEventId>;

#[derive(Serialize, Deserialize)]
struct Stored {
    /// The snapshot these changes apply to; none for a full copy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    parent: Option<u64>,
    /// Deltas between this one and the nearest full copy.
    #[serde(default)]
    chain: u32,
    /// `(type, state_key, event)`; no event means the entry is gone.
    changes: Vec<(String, String, Option<OwnedEventId>)>,
}

impl Rooms {
    /// The state right after `event_id`, if this server has placed the event.
    pub fn state_id_after(&self, event_id: &EventId) -> Result<Option<u64>> {
        Ok(self.eventid_stateid.get_u64(event_id.as_bytes())?)
    }

    /// The state a snapshot ID stands for.
    pub fn load_state(&self, id: u64) -> Result<Arc<State>> {
        Ok(self.load(id)?.state)
    }

    /// A snapshot's state and the length of its delta chain.
    fn load(&self, id: u64) -> Result<Cached> {
        if let Some(cached) = self.snapshots.lock().get(&id) {
            return Ok(cached.clone());
        }
        let mut links = Vec::new();
        let mut chain_length = None;
        let mut next = Some(id);
        while let Some(current) = next {
            let stored: Stored = self
                .stateid_snapshot
                .get_json(current.to_be_bytes())?
                .ok_or_else(|| Error::internal(format!("state snapshot {current} is missing")))?;
            next = stored.parent;
            chain_length.get_or_insert(stored.chain);
            links.push(stored);
        }
        let mut state = State::new();
        let chain_length = chain_length.unwrap_or(0);
        for stored in links.into_iter().rev() {
            for (kind, state_key, event) in stored.changes {
                let key = (StateEventType::from(kind), state_key);
                match event {
                    Some(event) => state.insert(key, event),
                    None => state.remove(&key),
                };
            }
        }
        let cached = Cached {
            state: Arc::new(state),
            chain: chain_length,
        };
        self.remember(id, cached.clone());
        Ok(cached)
    }

    fn remember(&self, id: u64, cached: Cached) {
        let mut cache = self.snapshots.lock();
        if cache.len() >= CACHE_ENTRIES {
            cache.clear();
        }
        cache.insert(id, cached);
    }

    /// Writes a snapshot of `state` into `batch`, as changes against
    /// `parent` where that is smaller, and returns its ID.
    pub(super) fn save_state(
        &self,
        batch: &mut Batch,
        parent: Option<u64>,
        state: &State,
    ) -> Result<u64> {
        let id = self.next_state_id.fetch_add(1, Ordering::Relaxed);
        let mut stored = Stored {
            parent: None,
            chain: 0,
            changes: full_changes(state),
        };
        if let Some(parent_id) = parent {
            let Cached {
                state: parent_state,
                chain: parent_chain,
            } = self.load(parent_id)?;
            let delta = delta(&parent_state, state);
            if parent_chain < MAX_CHAIN && delta.len() * 2 < state.len().max(1) {
                stored = Stored {
                    parent: Some(parent_id),
                    chain: parent_chain + 1,
                    changes: delta,
                };
            }
        }
        batch.put_json(&self.stateid_snapshot, id.to_be_bytes(), &stored);
        self.remember(
            id,
            Cached {
                state: Arc::new(state.clone()),
                chain: stored.chain,
            },
        );
        Ok(id)
    }
}

/// The next unused snapshot ID, from the highest one stored.
pub(super) fn first_free_id(rooms_tree: &archipel_store::Tree) -> Result<u64> {
    Ok(match rooms_tree.last()? {
        Some((key, _)) => archipel_store::key::parse_u64(&key).map_or(1, |id| id + 1),
        None => 1,
    })
}

fn full_changes(state: &State) -> Vec<(String, String, Option<OwnedEventId>)> {
    let mut changes: Vec<_> = state
        .iter()
        .map(|((kind, key), event)| (kind.to_string(), key.clone(), Some(event.clone())))
        .collect();
    changes.sort();
    changes
}

/// What turns `from` into `to`.
pub fn delta(from: &State, to: &State) -> Vec<(String, String, Option<OwnedEventId>)> {
    let mut changes = Vec::new();
    for (key, event) in to {
        if from.get(key) != Some(event) {
            changes.push((key.0.to_string(), key.1.clone(), Some(event.clone())));
        }
    }
    for key in from.keys() {
        if !to.contains_key(key) {
            changes.push((key.0.to_string(), key.1.clone(), None));
        }
    }
    changes.sort();
    changes
}

/// A decoded snapshot.
#[derive(Clone)]
pub(super) struct Cached {
    state: Arc<State>,
    /// Deltas between it and the nearest full copy.
    chain: u32,
}

/// Memory for decoded snapshots.
pub(super) type SnapshotCache = parking_lot::Mutex<HashMap<u64, Cached>>;
