//! History visibility: which of a room's events a user, or a peer server,
//! may see (the spec's "history visibility" rules, client-server API §13.3
//! and server-server API "Server behaviour").
//!
//! For an event at position `c`, a user may see it when
//! 1. it is their own membership event;
//! 2. `m.room.history_visibility` was `world_readable` at the event;
//! 3. they were joined at the event;
//! 4. it was `shared` and they joined at some point after the event;
//! 5. it was `invited` and they were invited at the event.
//!
//! "At the event" is the state right before it; a visibility change is
//! judged by the more permissive of its old and new value, as Synapse does,
//! so that a room going private still shows the change itself.
//!
//! A peer server may see an event when the visibility was `world_readable`
//! or `shared`, or when one of its users was joined (or, for `invited`,
//! invited) at the event.

use std::collections::BTreeMap;

use archipel_store::key;
use ruma::{
    EventId, OwnedUserId, RoomId, ServerName, UserId,
    events::{StateEventType, room::member::MembershipState},
};

use super::{Rooms, append::state_key_bytes};
use crate::{Error, Result};

/// `m.room.history_visibility`, from least to most permissive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum HistoryVisibility {
    Joined,
    Invited,
    Shared,
    WorldReadable,
}

impl HistoryVisibility {
    fn parse(value: &serde_json::Value) -> Self {
        match value["history_visibility"].as_str() {
            Some("joined") => Self::Joined,
            Some("invited") => Self::Invited,
            Some("world_readable") => Self::WorldReadable,
            // The spec's default, also for unknown values.
            _ => Self::Shared,
        }
    }
}

/// A membership as far as visibility cares.
/// The room's visibility changes, oldest first.
struct Timeline(Vec<(u64, HistoryVisibility)>);

impl Timeline {
    /// The visibility now.
    fn current(&self) -> HistoryVisibility {
        self.0.last().map_or(HistoryVisibility::Shared, |(_, v)| *v)
    }

    /// The visibility that judges the event at `count`.
    fn at(&self, count: u64) -> HistoryVisibility {
        let before = self.0.partition_point(|(c, _)| *c < count);
        let old = before
            .checked_sub(1)
            .map_or(HistoryVisibility::Shared, |i| self.0[i].1);
        match self.0.get(before) {
            Some((c, new)) if *c == count => old.max(*new),
            _ => old,
        }
    }
}

/// One user's (or one server's users') membership changes, oldest first.
struct Memberships(Vec<(u64, OwnedUserId, MembershipState)>);

impl Memberships {
    /// Whether anyone here had `member` right before `count` (or set it at
    /// `count`, their own membership event).
    fn any_at(&self, count: u64, member: MembershipState) -> bool {
        let mut latest: BTreeMap<&UserId, &MembershipState> = BTreeMap::new();
        for (_, user, m) in self.0.iter().take_while(|(c, _, _)| *c <= count) {
            latest.insert(user, m);
        }
        latest.values().any(|m| **m == member)
    }

    /// The one user's membership at `count` (their own membership event
    /// included): `leave` before they had any.
    fn at(&self, count: u64) -> MembershipState {
        self.0
            .iter()
            .take_while(|(c, _, _)| *c <= count)
            .last()
            .map_or(MembershipState::Leave, |(_, _, m)| m.clone())
    }

    fn joined_after(&self, count: u64) -> bool {
        self.0
            .iter()
            .any(|(c, _, m)| *c >= count && *m == MembershipState::Join)
    }

    fn changed_at(&self, count: u64) -> bool {
        self.0.iter().any(|(c, _, _)| *c == count)
    }

    fn ever_joined(&self) -> bool {
        self.0.iter().any(|(_, _, m)| *m == MembershipState::Join)
    }
}

/// What one user may see of one room.
pub struct Viewer {
    visibility: Timeline,
    memberships: Memberships,
    upto: u64,
    joined: bool,
    /// No membership: previewing a world-readable room.
    peeking: bool,
}

impl Viewer {
    /// The last position the user may see anything at: unbounded while
    /// joined, their latest membership change otherwise.
    pub fn upto(&self) -> u64 {
        self.upto
    }

    pub fn is_joined(&self) -> bool {
        self.joined
    }

    /// Whether the user previews a world-readable room they have no
    /// membership in.
    pub fn is_peeking(&self) -> bool {
        self.peeking
    }

    /// Whether the user was ever joined: only then do they get the room's
    /// state (as it was when they left).
    pub fn ever_joined(&self) -> bool {
        self.memberships.ever_joined()
    }

    /// Adds `unsigned.membership` to the event at `count`: the user's
    /// membership when it was sent, which clients read (MSC4115) to tell a
    /// message sent before they joined from one they should have keys for.
    pub fn annotate(&self, count: u64, pdu: &mut super::Pdu) {
        pdu.set_viewer_membership(&self.memberships.at(count));
    }

    /// [`Self::annotate`] with a viewer when there is one; without, the
    /// user was joined throughout (a sync's events after their join).
    pub fn annotate_or_joined(viewer: Option<&Self>, count: u64, pdu: &mut super::Pdu) {
        match viewer {
            Some(viewer) => viewer.annotate(count, pdu),
            None => pdu.set_viewer_membership(&MembershipState::Join),
        }
    }

    /// Whether the user may see the event at position `count`.
    pub fn sees(&self, count: u64) -> bool {
        if count > self.upto {
            return false;
        }
        if self.memberships.changed_at(count) {
            return true;
        }
        match self.visibility.at(count) {
            HistoryVisibility::WorldReadable => true,
            _ if self.memberships.any_at(count, MembershipState::Join) => true,
            HistoryVisibility::Shared => self.memberships.joined_after(count),
            HistoryVisibility::Invited => self.memberships.any_at(count, MembershipState::Invite),
            HistoryVisibility::Joined => false,
        }
    }
}

/// What one peer server may see of one room.
pub struct ServerViewer {
    visibility: Timeline,
    memberships: Memberships,
}

impl ServerViewer {
    pub fn sees(&self, count: u64) -> bool {
        match self.visibility.at(count) {
            HistoryVisibility::WorldReadable | HistoryVisibility::Shared => true,
            HistoryVisibility::Invited => {
                self.memberships.any_at(count, MembershipState::Join)
                    || self.memberships.any_at(count, MembershipState::Invite)
            }
            HistoryVisibility::Joined => self.memberships.any_at(count, MembershipState::Join),
        }
    }
}

impl Rooms {
    /// What `user` may see of `room_id`; M_FORBIDDEN if they never had a
    /// membership in it, unless the room is world-readable now: then
    /// anyone may preview it (its current state, and the events that were
    /// world-readable when sent).
    pub fn viewer(&self, user: &UserId, room_id: &RoomId) -> Result<Viewer> {
        let visibility = self.visibility_timeline(room_id)?;
        let Some(record) = self.membership(user, room_id)? else {
            if visibility.current() == HistoryVisibility::WorldReadable {
                return Ok(Viewer {
                    visibility,
                    memberships: Memberships(Vec::new()),
                    upto: u64::MAX,
                    joined: false,
                    peeking: true,
                });
            }
            return Err(Error::forbidden("You are not in this room."));
        };
        let joined = record.is_joined();
        Ok(Viewer {
            visibility,
            memberships: self.member_history(room_id, user.as_str(), |_| true)?,
            upto: if joined { u64::MAX } else { record.count },
            joined,
            peeking: false,
        })
    }

    /// Like [`Rooms::viewer`], for an event: the event's position if the user
    /// may see it and it is durable, M_NOT_FOUND otherwise (whether it
    /// exists or not).
    pub fn visible_position(
        &self,
        user: &UserId,
        room_id: &RoomId,
        event_id: &EventId,
    ) -> Result<u64> {
        let not_found = || Error::not_found("Event not found.");
        let viewer = self.viewer(user, room_id).map_err(|_| not_found())?;
        match self.position(event_id)? {
            Some((room, count))
                if room == room_id && viewer.sees(count) && count <= self.counter.visible() =>
            {
                Ok(count)
            }
            _ => Err(not_found()),
        }
    }

    /// What the peer `server` may see of `room_id`.
    pub fn server_viewer(&self, server: &ServerName, room_id: &RoomId) -> Result<ServerViewer> {
        Ok(ServerViewer {
            visibility: self.visibility_timeline(room_id)?,
            memberships: self.member_history(room_id, "", |user| user.server_name() == server)?,
        })
    }

    fn visibility_timeline(&self, room_id: &RoomId) -> Result<Timeline> {
        let mut state = state_key_bytes(room_id, &StateEventType::RoomHistoryVisibility, "");
        state.push(key::SEP);
        let mut out = Vec::new();
        for (count, pdu) in self.state_history(state)? {
            out.push((count, HistoryVisibility::parse(&pdu.content_value())));
        }
        Ok(Timeline(out))
    }

    /// The member events of `room_id` whose state key starts with
    /// `state_key_prefix` and names a user `wanted` accepts, oldest first.
    fn member_history(
        &self,
        room_id: &RoomId,
        state_key_prefix: &str,
        wanted: impl Fn(&UserId) -> bool,
    ) -> Result<Memberships> {
        let mut prefix = key::key([
            room_id.as_bytes(),
            StateEventType::RoomMember.to_string().as_bytes(),
            state_key_prefix.as_bytes(),
        ]);
        if !state_key_prefix.is_empty() {
            prefix.push(key::SEP);
        }
        let mut out = Vec::new();
        for (count, pdu) in self.state_history(prefix)? {
            let Some(user) = pdu.state_key.as_deref().and_then(|k| UserId::parse(k).ok()) else {
                continue;
            };
            if wanted(&user) {
                let membership = pdu.content_value()["membership"]
                    .as_str()
                    .map_or(MembershipState::Leave, MembershipState::from);
                out.push((count, user, membership));
            }
        }
        out.sort_by_key(|(count, _, _)| *count);
        Ok(Memberships(out))
    }

    /// Every state event under `prefix` in the state history, with its position.
    fn state_history(&self, prefix: Vec<u8>) -> Result<Vec<(u64, super::Pdu)>> {
        let mut out = Vec::new();
        for row in self.roomid_statekey_count_eventid.scan_prefix(prefix) {
            let (k, value) = row?;
            let Some((_, count)) = key::split_last_u64(&k) else {
                continue;
            };
            let id: ruma::OwnedEventId = self.roomid_statekey_count_eventid.decode_str(&value)?;
            if let Some(pdu) = self.get_pdu(&id)? {
                out.push((count, pdu));
            }
        }
        out.sort_by_key(|(count, _)| *count);
        Ok(out)
    }
}
