//! Who is in which room.

use std::sync::Arc;

use archipel_store::key;
use ruma::{
    OwnedEventId, OwnedRoomId, OwnedUserId, RoomId, UserId, events::room::member::MembershipState,
};
use serde::{Deserialize, Serialize};

use super::Rooms;
use crate::Result;

/// A user's latest membership in a room.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MembershipRecord {
    pub membership: MembershipState,
    /// Stream position of the member event.
    pub count: u64,
    pub event_id: OwnedEventId,
    pub sender: OwnedUserId,
    /// The user forgot this room: it no longer appears in their sync.
    #[serde(default)]
    pub forgotten: bool,
    /// For an invite into a room this server is not in: the stripped state
    /// the inviting server sent along, for the invitee's client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invite_state: Option<Vec<serde_json::Value>>,
}

impl MembershipRecord {
    pub fn is_joined(&self) -> bool {
        self.membership == MembershipState::Join
    }
}

impl Rooms {
    pub fn membership(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
    ) -> Result<Option<MembershipRecord>> {
        Ok(self
            .userid_roomid_membership
            .get_json(key::key([user_id.as_bytes(), room_id.as_bytes()]))?)
    }

    pub fn is_joined(&self, user_id: &UserId, room_id: &RoomId) -> Result<bool> {
        Ok(self
            .membership(user_id, room_id)?
            .is_some_and(|m| m.is_joined()))
    }

    /// Every room the user has a membership in, with that membership.
    pub fn rooms_of(&self, user_id: &UserId) -> Result<Vec<(OwnedRoomId, MembershipRecord)>> {
        Ok(self.rooms_of_shared(user_id)?.as_ref().clone())
    }

    /// [`Rooms::rooms_of`], shared: a syncing user's list is read once and
    /// kept until a membership of theirs changes, rather than decoded
    /// again on every wake-up of their long poll.
    pub fn rooms_of_shared(&self, user_id: &UserId) -> Result<super::RoomList> {
        let changed = self
            .membership_changed
            .lock()
            .get(user_id)
            .copied()
            .unwrap_or(0);
        if let Some((read_at, list)) = self.room_lists.lock().get(user_id)
            && *read_at >= changed
        {
            return Ok(list.clone());
        }
        // Every change at or below the visible position is written, so a
        // list read after it holds them; one raised above it is read again.
        let read_at = self.counter.visible();
        let list = Arc::new(self.read_rooms_of(user_id)?);
        let mut lists = self.room_lists.lock();
        if lists.len() >= MAX_KEPT_ROOM_LISTS {
            lists.clear();
        }
        lists.insert(user_id.to_owned(), (read_at, list.clone()));
        Ok(list)
    }

    /// Notes a change of the user's membership at `count`, as it is
    /// indexed (before its batch is written): their kept room list is read
    /// again once a reader's visible position could include it.
    pub(super) fn raise_membership_changed(&self, user_id: &UserId, count: u64) {
        let mut changed = self.membership_changed.lock();
        let entry = changed.entry(user_id.to_owned()).or_default();
        *entry = (*entry).max(count);
    }

    fn read_rooms_of(&self, user_id: &UserId) -> Result<Vec<(OwnedRoomId, MembershipRecord)>> {
        let prefix = key::prefix([user_id.as_bytes()]);
        let mut out = Vec::new();
        for row in self.userid_roomid_membership.scan_prefix(prefix.clone()) {
            let (k, v) = row?;
            let tree = &self.userid_roomid_membership;
            out.push((tree.decode_str(&k[prefix.len()..])?, tree.decode_json(&v)?));
        }
        Ok(out)
    }

    pub fn joined_rooms(&self, user_id: &UserId) -> Result<Vec<OwnedRoomId>> {
        Ok(self
            .rooms_of(user_id)?
            .into_iter()
            .filter(|(_, m)| m.is_joined())
            .map(|(r, _)| r)
            .collect())
    }

    /// Every user with a membership in the room, with that membership.
    pub fn members(&self, room_id: &RoomId) -> Result<Vec<(OwnedUserId, MembershipRecord)>> {
        let prefix = key::prefix([room_id.as_bytes()]);
        let mut out = Vec::new();
        for row in self.roomid_userid_membership.scan_prefix(prefix.clone()) {
            let (k, v) = row?;
            let tree = &self.roomid_userid_membership;
            out.push((tree.decode_str(&k[prefix.len()..])?, tree.decode_json(&v)?));
        }
        Ok(out)
    }

    pub fn joined_members(&self, room_id: &RoomId) -> Result<Vec<OwnedUserId>> {
        Ok(self
            .members(room_id)?
            .into_iter()
            .filter(|(_, m)| m.is_joined())
            .map(|(u, _)| u)
            .collect())
    }

    /// Whether two users are joined to at least one common room.
    pub fn share_a_room(&self, a: &UserId, b: &UserId) -> Result<bool> {
        if a == b {
            return Ok(true);
        }
        for room in self.joined_rooms(a)? {
            if self.is_joined(b, &room)? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Whether two users have ever been in a room together (and one may
    /// since have left): who may learn that the other's devices are no
    /// longer theirs to track.
    pub fn shared_a_room_once(&self, a: &UserId, b: &UserId) -> Result<bool> {
        let rooms_of_b: std::collections::HashSet<OwnedRoomId> = self
            .rooms_of(b)?
            .into_iter()
            .map(|(room, _)| room)
            .collect();
        Ok(self
            .rooms_of(a)?
            .into_iter()
            .any(|(room, _)| rooms_of_b.contains(&room)))
    }

    /// Hides a room the user has left from their sync.
    pub async fn forget(&self, user_id: &UserId, room_id: &RoomId) -> Result<()> {
        let Some(mut record) = self.membership(user_id, room_id)? else {
            return Ok(());
        };
        if record.is_joined() || record.membership == MembershipState::Invite {
            return Err(crate::Error::unknown(
                "Leave the room before forgetting it.",
            ));
        }
        record.forgotten = true;
        // A position of its own, so that the kept room list is read again.
        let ticket = self.counter.next()?;
        self.raise_membership_changed(user_id, ticket.count);
        let mut batch = archipel_store::Batch::new();
        batch.put_json(
            &self.userid_roomid_membership,
            key::key([user_id.as_bytes(), room_id.as_bytes()]),
            &record,
        );
        self.store.commit_async(batch).await?;
        drop(ticket);
        Ok(())
    }
}

/// Users whose room lists are kept at once; past it, all are read afresh.
const MAX_KEPT_ROOM_LISTS: usize = 1024;
