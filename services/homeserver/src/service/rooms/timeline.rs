//! Reading a room's timeline in stream order.

use archipel_store::key;
use ruma::{DeviceId, EventId, OwnedEventId, OwnedUserId, RoomId, TransactionId, UserId};

use super::{Pdu, Rooms};
use crate::Result;

/// Events looked at, newest first, to find the one that last bumped a room.
const BUMP_LOOKBACK: usize = 100;

/// A room's newest timeline positions: of any event, and of one that
/// bumps it (0: not known).
#[derive(Clone, Copy, Debug, Default)]
pub struct Newest {
    pub any: u64,
    pub bump: u64,
}

/// Events that move a room up a room list: what people say, not what
/// changes around it (MSC4186's default bump types).
pub fn bumps(pdu: &Pdu) -> bool {
    matches!(
        pdu.kind.to_string().as_str(),
        "m.room.create"
            | "m.room.message"
            | "m.room.encrypted"
            | "m.sticker"
            | "m.call.invite"
            | "m.poll.start"
            | "m.beacon_info"
    )
}

/// Relations one bundle looks at, at most: a message with more (reactions,
/// mostly) is summarized from its first ones.
pub const MAX_BUNDLED_RELATIONS: usize = 1000;

impl Rooms {
    /// The event a client's earlier request with this transaction ID created.
    pub fn txn_event(
        &self,
        user: &UserId,
        device: &DeviceId,
        txn: &TransactionId,
    ) -> Result<Option<OwnedEventId>> {
        let bytes = self.txn_eventid.get(key::key([
            user.as_bytes(),
            device.as_bytes(),
            txn.as_bytes(),
        ]))?;
        Ok(bytes.map(|b| self.txn_eventid.decode_str(&b)).transpose()?)
    }

    /// Up to `limit` events with position in `(after, upto]`, oldest first.
    pub fn events_after(
        &self,
        room_id: &RoomId,
        after: u64,
        upto: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Pdu)>> {
        let prefix = key::prefix([room_id.as_bytes()]);
        let from = key::with_u64(room_id.as_bytes().to_vec(), after.saturating_add(1));
        let mut out = Vec::new();
        for row in self.roomid_count_eventid.scan_from(from, prefix) {
            if out.len() >= limit {
                break;
            }
            let (k, v) = row?;
            let Some((_, count)) = key::split_last_u64(&k) else {
                continue;
            };
            if count > upto {
                break;
            }
            if let Some(pdu) = self.pdu_from_id_bytes(&v)? {
                out.push((count, pdu));
            }
        }
        Ok(out)
    }

    /// Up to `limit` events with position at most `before`, newest first.
    pub fn events_before(
        &self,
        room_id: &RoomId,
        before: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Pdu)>> {
        self.events_between_rev(room_id, 0, before, limit)
    }

    /// Up to `limit` events with position in `(after, upto]`, newest first.
    /// Positions are checked before events are read, so an empty range costs one seek.
    fn events_between_rev(
        &self,
        room_id: &RoomId,
        after: u64,
        upto: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Pdu)>> {
        let prefix = key::prefix([room_id.as_bytes()]);
        let from = key::with_u64(room_id.as_bytes().to_vec(), upto);
        let mut out = Vec::new();
        for row in self.roomid_count_eventid.scan_rev_from(from, prefix) {
            if out.len() >= limit {
                break;
            }
            let (k, v) = row?;
            let Some((_, count)) = key::split_last_u64(&k) else {
                continue;
            };
            if count > upto {
                continue;
            }
            if count <= after {
                break;
            }
            if let Some(pdu) = self.pdu_from_id_bytes(&v)? {
                out.push((count, pdu));
            }
        }
        Ok(out)
    }

    /// Visits at most `limit` events in `(after, upto]`, newest first, as
    /// long as `visit` returns true.
    pub fn visit_newest(
        &self,
        room_id: &RoomId,
        after: u64,
        upto: u64,
        limit: usize,
        mut visit: impl FnMut(u64, &Pdu) -> bool,
    ) -> Result<()> {
        let prefix = key::prefix([room_id.as_bytes()]);
        let from = key::with_u64(room_id.as_bytes().to_vec(), upto);
        for row in self
            .roomid_count_eventid
            .scan_rev_from(from, prefix)
            .take(limit)
        {
            let (k, v) = row?;
            let Some((_, count)) = key::split_last_u64(&k) else {
                continue;
            };
            if count > upto {
                continue;
            }
            if count <= after {
                break;
            }
            if let Some(pdu) = self.pdu_from_id_bytes(&v)?
                && !visit(count, &pdu)
            {
                break;
            }
        }
        Ok(())
    }

    /// The newest `limit` events in `(after, upto]`, oldest first, and
    /// whether older ones in that range were left out.
    pub fn latest_events(
        &self,
        room_id: &RoomId,
        after: u64,
        upto: u64,
        limit: usize,
    ) -> Result<(Vec<(u64, Pdu)>, bool)> {
        if self
            .meta(room_id)?
            .is_some_and(|meta| meta.last_count <= after)
        {
            return Ok((Vec::new(), false));
        }
        let mut events = self.events_between_rev(room_id, after, upto, limit + 1)?;
        let limited = events.len() > limit;
        events.truncate(limit);
        events.reverse();
        Ok((events, limited))
    }

    /// The position of the room's newest event at or before `upto`: from
    /// memory when the newest known is that old, else one seek.
    pub fn latest_position(&self, room_id: &RoomId, upto: u64) -> Result<Option<u64>> {
        if let Some(newest) = self.known_newest(room_id)?
            && newest.any <= upto
        {
            return Ok(Some(newest.any).filter(|n| *n > 0));
        }
        self.seek_latest_position(room_id, upto)
    }

    /// The position of the newest event at or before `upto` that moves the
    /// room up a room list ([`bumps`]), looking at most [`BUMP_LOOKBACK`]
    /// events back; past those, the newest event's position.
    pub fn bump_position(&self, room_id: &RoomId, upto: u64) -> Result<Option<u64>> {
        if let Some(newest) = self.known_newest(room_id)?
            && newest.bump > 0
            && newest.bump <= upto
        {
            return Ok(Some(newest.bump));
        }
        let events = self.events_between_rev(room_id, 0, upto, BUMP_LOOKBACK)?;
        let found = events.iter().find(|(_, pdu)| bumps(pdu));
        if let Some((count, _)) = found {
            self.raise_newest(room_id, *count, true);
        }
        Ok(found.or(events.first()).map(|(count, _)| *count))
    }

    /// What memory holds of the room's newest positions, learnt with one
    /// seek the first time (indexing keeps it after).
    fn known_newest(&self, room_id: &RoomId) -> Result<Option<Newest>> {
        if let Some(known) = self.newest.lock().get(room_id).copied() {
            return Ok(Some(known));
        }
        let Some(newest) = self.seek_latest_position(room_id, u64::MAX)? else {
            return Ok(None);
        };
        self.raise_newest(room_id, newest, false);
        Ok(self.newest.lock().get(room_id).copied())
    }

    /// Notes an event at `count` in the room's timeline (one that `bumps`
    /// the room, or not). Raised as the event is indexed, before its batch
    /// is written: a reader asking up to a position below it reads the
    /// store, and no reader asks beyond the visible position, which passes
    /// it only once the write is done. (A failed write leaves it ahead,
    /// which only moves the room up a room list.)
    pub(super) fn raise_newest(&self, room_id: &RoomId, count: u64, bumps: bool) {
        let mut newest = self.newest.lock();
        let entry = newest.entry(room_id.to_owned()).or_default();
        entry.any = entry.any.max(count);
        if bumps {
            entry.bump = entry.bump.max(count);
        }
    }

    fn seek_latest_position(&self, room_id: &RoomId, upto: u64) -> Result<Option<u64>> {
        let prefix = key::prefix([room_id.as_bytes()]);
        let from = key::with_u64(room_id.as_bytes().to_vec(), upto);
        for row in self.roomid_count_eventid.scan_rev_from(from, prefix) {
            let (k, _) = row?;
            if let Some((_, count)) = key::split_last_u64(&k)
                && count <= upto
            {
                return Ok(Some(count));
            }
        }
        Ok(None)
    }

    /// The position of the event nearest to `ts` (milliseconds) among
    /// positions up to `upto`: with `forward` the first sent at or after it,
    /// else the last sent at or before it. Found by bisecting positions, one
    /// seek a step, since send times rise with them; where a peer's clock
    /// was off the answer is near, not exact (as Synapse's is).
    pub fn position_near_ts(
        &self,
        room_id: &RoomId,
        ts: u64,
        forward: bool,
        upto: u64,
    ) -> Result<Option<u64>> {
        let sent = |pdu: &Pdu| u64::from(pdu.origin_server_ts.get());
        let (Some((mut lo, _)), Some((mut hi, _))) = (
            self.events_after(room_id, 0, upto, 1)?.pop(),
            self.events_before(room_id, upto, 1)?.pop(),
        ) else {
            return Ok(None);
        };
        let mut found = None;
        while lo <= hi {
            let mid = lo + (hi - lo) / 2;
            if forward {
                // The first event in [mid, hi].
                match self.events_after(room_id, mid - 1, hi, 1)?.pop() {
                    None => hi = mid - 1,
                    Some((at, pdu)) if sent(&pdu) >= ts => {
                        found = Some(at);
                        hi = mid - 1;
                    }
                    Some((at, _)) => lo = at + 1,
                }
            } else {
                // The last event in [lo, mid].
                match self.events_between_rev(room_id, lo - 1, mid, 1)?.pop() {
                    None => lo = mid + 1,
                    Some((at, pdu)) if sent(&pdu) <= ts => {
                        found = Some(at);
                        lo = mid + 1;
                    }
                    Some((at, _)) => hi = at - 1,
                }
            }
        }
        Ok(found)
    }

    /// The event a timeline entry (`roomid_count_eventid`) names.
    fn pdu_from_id_bytes(&self, bytes: &[u8]) -> Result<Option<Pdu>> {
        let id: OwnedEventId = self.roomid_count_eventid.decode_str(bytes)?;
        self.get_pdu(&id)
    }

    /// Events relating to `target`, oldest first: `(rel_type, event)`.
    pub fn relations(
        &self,
        target: &EventId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, String, Pdu)>> {
        let mut out = Vec::new();
        for (count, rel_type, id) in self.relation_ids(target, after, limit)? {
            if let Some(pdu) = self.get_pdu(&id)? {
                out.push((count, rel_type, pdu));
            }
        }
        Ok(out)
    }

    /// Up to `limit` relations to `target` after position `after`, oldest
    /// first, without reading the relating events: `(position, rel_type,
    /// event ID)`.
    fn relation_ids(
        &self,
        target: &EventId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, String, OwnedEventId)>> {
        let prefix = key::prefix([target.as_bytes()]);
        let from = key::with_u64(target.as_bytes().to_vec(), after.saturating_add(1));
        let mut out = Vec::new();
        for row in self.targetid_count_relation.scan_from(from, prefix) {
            if out.len() >= limit {
                break;
            }
            let (k, v) = row?;
            let Some((_, count)) = key::split_last_u64(&k) else {
                continue;
            };
            let Ok(value) = serde_json::from_slice::<serde_json::Value>(&v) else {
                continue;
            };
            let rel_type = value["rel_type"].as_str().unwrap_or_default().to_owned();
            if let Some(id) = value["event_id"]
                .as_str()
                .and_then(|s| EventId::parse(s).ok())
            {
                out.push((count, rel_type, id));
            }
        }
        Ok(out)
    }

    /// Adds the bundled aggregations (spec "Aggregations of child events")
    /// to `pdu`'s `unsigned`, as far as `sees` lets the user see relating
    /// events up to position `upto`: the latest edit by the event's own
    /// sender (`m.replace`, the whole edit event), the thread's latest
    /// reply, size and whether `user` took part (`m.thread`), and the
    /// events that reference it (`m.reference`). At most
    /// [`MAX_BUNDLED_RELATIONS`] relations are looked at.
    pub fn bundle_relations(
        &self,
        pdu: &mut Pdu,
        user: &UserId,
        upto: u64,
        sees: &dyn Fn(u64) -> bool,
    ) -> Result<()> {
        let relations = self.relation_ids(&pdu.event_id, 0, MAX_BUNDLED_RELATIONS)?;
        if relations.is_empty() {
            return Ok(());
        }
        let mut latest_edit: Option<Pdu> = None;
        let (mut thread_count, mut thread_latest, mut participated) =
            (0u64, None, pdu.sender == user);
        let mut references = Vec::new();
        for (count, rel_type, id) in relations {
            if count > upto || !sees(count) {
                continue;
            }
            match rel_type.as_str() {
                "m.replace" => {
                    let Some(edit) = self.get_pdu(&id)? else {
                        continue;
                    };
                    let newer = latest_edit.as_ref().is_none_or(|latest| {
                        (edit.origin_server_ts, &edit.event_id)
                            > (latest.origin_server_ts, &latest.event_id)
                    });
                    if edit.sender == pdu.sender && newer {
                        latest_edit = Some(edit);
                    }
                }
                "m.thread" => {
                    let Some(reply) = self.get_pdu(&id)? else {
                        continue;
                    };
                    thread_count += 1;
                    participated |= reply.sender == user;
                    thread_latest = Some(reply);
                }
                "m.reference" => references.push(serde_json::json!({ "event_id": id })),
                _ => {}
            }
        }
        let mut bundled = serde_json::Map::new();
        if let Some(edit) = latest_edit {
            bundled.insert("m.replace".into(), edit.to_client_value(None, true));
        }
        if let Some(latest) = thread_latest {
            bundled.insert(
                "m.thread".into(),
                serde_json::json!({
                    "latest_event": latest.to_client_value(None, true),
                    "count": thread_count,
                    "current_user_participated": participated,
                }),
            );
        }
        if !references.is_empty() {
            bundled.insert(
                "m.reference".into(),
                serde_json::json!({ "chunk": references }),
            );
        }
        if !bundled.is_empty() {
            pdu.unsigned
                .get_or_insert_with(Default::default)
                .insert("m.relations".into(), serde_json::Value::Object(bundled));
        }
        Ok(())
    }

    /// Whose device lists `viewer` should fetch again after `(after,
    /// upto]`: `changed`, people it shares a room with whose devices
    /// changed or who joined or left a room it is in; `left`, people it
    /// shares no room with any more, who left one of its rooms. Joining or
    /// leaving a room concerns that room's members only: the archive
    /// member joining each new room is no news to everybody else.
    pub fn device_list_changes(
        &self,
        viewer: &UserId,
        after: u64,
        upto: u64,
    ) -> Result<(Vec<OwnedUserId>, Vec<OwnedUserId>)> {
        let (mut changed, mut left) = (Vec::new(), Vec::new());
        for (user, room) in self.key_changes.between(after, upto)? {
            if changed.contains(&user) || left.contains(&user) {
                continue;
            }
            if let Some(room) = room
                && user != viewer
                && !self.is_joined(viewer, &room)?
            {
                continue;
            }
            if self.share_a_room(viewer, &user)? {
                changed.push(user);
            } else if self.shared_a_room_once(viewer, &user)? {
                left.push(user);
            }
        }
        Ok((changed, left))
    }
}
