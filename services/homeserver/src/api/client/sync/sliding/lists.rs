//! Which rooms a request selects: the user's rooms that may appear in a
//! list, sorted newest first, the lists' filters and ranges, and the room
//! subscriptions, with the settings each selected room is sent with.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, HashSet, btree_map::Entry},
    sync::Arc,
};

use ruma::{
    OwnedRoomId, RoomId, UInt,
    api::client::sync::sync_events::v5::{self, request::ListFilters},
    directory::RoomTypeFilter,
    events::{StateEventType, room::member::MembershipState},
};
use serde_json::Value;

use super::{Ctx, MAX_TIMELINE_LIMIT};
use crate::{
    Result,
    service::{rooms::MembershipRecord, sliding_sync::fingerprint},
};

/// The user's rooms that may appear in the lists, borrowed from their
/// room list.
pub struct Candidates<'a> {
    pub memberships: HashMap<&'a RoomId, &'a MembershipRecord>,
    /// Newest first: by the position of the latest event the user may
    /// see (for a room not joined, their membership event).
    pub order: Vec<&'a RoomId>,
    /// The rooms `m.direct` names.
    pub direct: HashSet<OwnedRoomId>,
}

/// How a selected room is sent: the widest of the settings of the lists
/// and subscription that select it.
#[derive(Clone, Debug, Default)]
pub struct RoomConfig {
    pub timeline_limit: u64,
    pub required_state: BTreeSet<(String, String)>,
    /// The fingerprint of `required_state` (see [`fingerprint`]).
    pub state_print: u64,
}

impl RoomConfig {
    fn new(timeline_limit: UInt, required_state: &[(StateEventType, String)]) -> Self {
        let mut config = Self {
            timeline_limit: u64::from(timeline_limit).min(MAX_TIMELINE_LIMIT),
            required_state: required_state
                .iter()
                .map(|(kind, key)| (kind.to_string(), key.clone()))
                .collect(),
            state_print: 0,
        };
        config.state_print = config.fingerprint();
        config
    }

    /// Takes in what `other` asks for too.
    fn widen(&mut self, other: &RoomConfig) {
        self.timeline_limit = self.timeline_limit.max(other.timeline_limit);
        self.required_state
            .extend(other.required_state.iter().cloned());
        self.state_print = self.fingerprint();
    }

    fn fingerprint(&self) -> u64 {
        fingerprint(
            self.required_state
                .iter()
                .map(|(kind, key)| (kind.as_str(), key.as_str())),
        )
    }
}

pub struct Selection {
    /// Every selected room with its settings: shared by the rooms of a
    /// list, copied only for a room that more than one selects.
    pub rooms: BTreeMap<OwnedRoomId, Arc<RoomConfig>>,
    /// The rooms in each list's ranges.
    pub by_list: BTreeMap<String, Vec<OwnedRoomId>>,
}

/// The rooms the user is in, invited to, knocking on or banned from, and
/// those they left since the connection's position (so the client sees its
/// own leave); never rooms left earlier.
pub fn candidates<'a>(
    ctx: &Ctx<'_>,
    room_list: &'a [(OwnedRoomId, MembershipRecord)],
) -> Result<Candidates<'a>> {
    let rooms = &ctx.services.rooms;
    let since = ctx.since();
    let mut memberships = HashMap::with_capacity(room_list.len());
    let mut keyed = Vec::with_capacity(room_list.len());
    for (room_id, membership) in room_list {
        let listed = match membership.membership.as_str() {
            "join" | "invite" | "knock" => true,
            "ban" => !membership.forgotten,
            "leave" => ctx.previous.is_some() && membership.count > since,
            _ => false,
        };
        if !listed {
            continue;
        }
        let latest = if membership.is_joined() {
            rooms
                .latest_position(room_id, ctx.upto)?
                .unwrap_or(membership.count)
        } else {
            membership.count
        };
        keyed.push((latest, &**room_id));
        memberships.insert(&**room_id, membership);
    }
    keyed.sort_by(|a, b| b.cmp(a));
    let direct = match ctx.services.account_data.get(ctx.user, None, "m.direct")? {
        Some(Value::Object(by_user)) => by_user
            .values()
            .filter_map(Value::as_array)
            .flatten()
            .filter_map(|r| r.as_str().and_then(|r| RoomId::parse(r).ok()))
            .collect(),
        _ => HashSet::new(),
    };
    Ok(Candidates {
        memberships,
        order: keyed.into_iter().map(|(_, room)| room).collect(),
        direct,
    })
}

/// The rooms the lists' ranges and the subscriptions select; fills in each
/// list's count.
pub fn select(
    ctx: &Ctx<'_>,
    candidates: &Candidates<'_>,
    response: &mut v5::Response,
) -> Result<Selection> {
    let mut selection = Selection {
        rooms: BTreeMap::new(),
        by_list: BTreeMap::new(),
    };
    for (name, list) in &ctx.request.lists {
        let mut matching = Vec::new();
        for room_id in &candidates.order {
            if let Some(filters) = &list.filters
                && !passes(ctx, candidates, room_id, filters)?
            {
                continue;
            }
            matching.push(*room_id);
        }
        let mut in_range = Vec::new();
        for (start, end) in &list.ranges {
            let start = usize::try_from(u64::from(*start)).unwrap_or(usize::MAX);
            let end = usize::try_from(u64::from(*end)).unwrap_or(usize::MAX);
            if start >= matching.len() || start > end {
                continue;
            }
            for room_id in &matching[start..=end.min(matching.len() - 1)] {
                if !in_range.iter().any(|r| r == room_id) {
                    in_range.push((*room_id).to_owned());
                }
            }
        }
        let config = Arc::new(RoomConfig::new(
            list.room_details.timeline_limit,
            &list.room_details.required_state,
        ));
        for room_id in &in_range {
            select_with(&mut selection, room_id, &config);
        }
        let mut count = v5::response::List::default();
        count.count = UInt::try_from(matching.len()).unwrap_or(UInt::MAX);
        response.lists.insert(name.clone(), count);
        selection.by_list.insert(name.clone(), in_range);
    }
    // Subscriptions name rooms the user has a part in; others are ignored.
    for (room_id, subscription) in &ctx.request.room_subscriptions {
        let Some(membership) = candidates.memberships.get(&**room_id) else {
            continue;
        };
        if !matches!(membership.membership.as_str(), "join" | "invite" | "knock") {
            continue;
        }
        let config = RoomConfig::new(subscription.timeline_limit, &subscription.required_state);
        select_with(&mut selection, room_id, &Arc::new(config));
    }
    Ok(selection)
}

/// Selects a room with `config`, widening what it was selected with.
fn select_with(selection: &mut Selection, room_id: &OwnedRoomId, config: &Arc<RoomConfig>) {
    match selection.rooms.entry(room_id.clone()) {
        Entry::Vacant(vacant) => {
            vacant.insert(config.clone());
        }
        Entry::Occupied(mut occupied) => Arc::make_mut(occupied.get_mut()).widen(config),
    }
}

fn passes(
    ctx: &Ctx<'_>,
    candidates: &Candidates<'_>,
    room_id: &RoomId,
    filters: &ListFilters,
) -> Result<bool> {
    let membership = candidates.memberships[room_id];
    if let Some(is_dm) = filters.is_dm
        && candidates.direct.contains(room_id) != is_dm
    {
        return Ok(false);
    }
    if let Some(is_invite) = filters.is_invite
        && (membership.membership == MembershipState::Invite) != is_invite
    {
        return Ok(false);
    }
    if let Some(is_encrypted) = filters.is_encrypted
        && state_of(ctx, room_id, membership, &StateEventType::RoomEncryption)?.is_some()
            != is_encrypted
    {
        return Ok(false);
    }
    if !filters.room_types.is_empty() || !filters.not_room_types.is_empty() {
        let create = state_of(ctx, room_id, membership, &StateEventType::RoomCreate)?;
        let kind = create
            .as_ref()
            .and_then(|c| c["type"].as_str())
            .map(str::to_owned);
        let is = |filter: &RoomTypeFilter| match (filter, &kind) {
            (RoomTypeFilter::Default, None) => true,
            (RoomTypeFilter::Default, Some(_)) => false,
            (filter, Some(kind)) => filter.as_str() == Some(kind.as_str()),
            (_, None) => false,
        };
        if !filters.room_types.is_empty() && !filters.room_types.iter().any(is) {
            return Ok(false);
        }
        if filters.not_room_types.iter().any(is) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The content of a room's state event `kind`: from the invite's stripped
/// state when the node is not in the room, else from the room.
fn state_of(
    ctx: &Ctx<'_>,
    room_id: &RoomId,
    membership: &MembershipRecord,
    kind: &StateEventType,
) -> Result<Option<Value>> {
    if let Some(stripped) = &membership.invite_state {
        return Ok(stripped
            .iter()
            .find(|e| e["type"].as_str() == Some(&kind.to_string()))
            .map(|e| e["content"].clone()));
    }
    ctx.services.rooms.state_json(room_id, kind, "")
}
