//! Read receipts (`m.read`, `m.read.private`), threaded or not.

use std::sync::Arc;

use archipel_store::{Batch, Store, Tree, key};
use std::collections::HashMap;

use parking_lot::Mutex;
use ruma::{EventId, OwnedEventId, OwnedRoomId, OwnedUserId, RoomId, UserId};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::{Result, columns as cf, counter::Counter, service::users::now_ms};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Receipt {
    pub count: u64,
    pub event_id: OwnedEventId,
    pub ts: u64,
    pub receipt_type: String,
    #[serde(default)]
    pub thread_id: Option<String>,
}

pub struct Receipts {
    store: Store,
    counter: Arc<Counter>,
    tree: Tree,
    /// Unread counts as last counted, per user and room, so that the next
    /// count reads only what came since (see [`Receipts::counted`]).
    counted: Mutex<HashMap<(OwnedUserId, OwnedRoomId), Counted>>,
    /// Where each room's latest receipt is in the stream, so that a look
    /// for receipts newer than a position reads no room without any.
    latest: Mutex<Latest>,
}

/// The stream position of the latest receipt of rooms that got one since
/// the node started; any other room's latest is at most `floor`.
struct Latest {
    by_room: HashMap<OwnedRoomId, u64>,
    floor: u64,
}

impl Latest {
    fn after(&self, room: &RoomId, position: u64) -> bool {
        self.by_room.get(room).copied().unwrap_or(self.floor) > position
    }

    fn note(&mut self, room: &RoomId, count: u64) {
        if self.by_room.len() >= MAX_LATEST && !self.by_room.contains_key(room) {
            // The floor rises to cover the rooms forgotten.
            self.floor = self.by_room.drain().fold(self.floor, |m, (_, c)| m.max(c));
        }
        // A room noted anew starts from the floor: a receipt of it that was
        // forgotten may be newer than this one, noted late.
        let latest = self.by_room.entry(room.to_owned()).or_insert(self.floor);
        *latest = (*latest).max(count);
    }
}

/// A room's unread counts for a user as counted up to a position, from
/// their read position then.
#[derive(Clone, Copy, Debug)]
pub struct Counted {
    pub read_upto: u64,
    pub counted_upto: u64,
    pub notifications: u64,
    pub highlights: u64,
}

/// Counts kept at most; past it, all are counted afresh.
const MAX_COUNTED: usize = 65_536;
/// Rooms whose latest receipt is kept at most; past it, all are forgotten.
const MAX_LATEST: usize = 65_536;

impl Receipts {
    pub fn new(store: Store, counter: Arc<Counter>) -> Result<Self> {
        Ok(Self {
            tree: store.tree(cf::ROOMID_USERID_TYPE_RECEIPT)?,
            store,
            counted: Mutex::new(HashMap::new()),
            latest: Mutex::new(Latest {
                by_room: HashMap::new(),
                // Every receipt stored so far is at most here.
                floor: counter.visible(),
            }),
            counter,
        })
    }

    pub async fn set(
        &self,
        room: &RoomId,
        user: &UserId,
        receipt_type: &str,
        event_id: &EventId,
        thread_id: Option<String>,
    ) -> Result<()> {
        let thread = thread_id.clone().unwrap_or_default();
        let k = key::key([
            room.as_bytes(),
            user.as_bytes(),
            receipt_type.as_bytes(),
            thread.as_bytes(),
        ]);
        let ticket = self.counter.next()?;
        // Noted before the position becomes visible, so that no reader up
        // to it skips the room.
        self.latest.lock().note(room, ticket.count);
        let receipt = Receipt {
            count: ticket.count,
            event_id: event_id.to_owned(),
            ts: now_ms(),
            receipt_type: receipt_type.to_owned(),
            thread_id,
        };
        let mut batch = Batch::new();
        batch.put_json(&self.tree, k, &receipt);
        self.store.commit_async(batch).await?;
        Ok(())
    }

    fn all(&self, room: &RoomId) -> Result<Vec<(OwnedUserId, Receipt)>> {
        let prefix = key::prefix([room.as_bytes()]);
        let mut out = Vec::new();
        for row in self.tree.scan_prefix(prefix.clone()) {
            let (k, v) = row?;
            let user = key::split(&k[prefix.len()..]).next().unwrap_or_default();
            out.push((self.tree.decode_str(user)?, self.tree.decode_json(&v)?));
        }
        Ok(out)
    }

    /// The `m.receipt` event content for receipts changed in `(after, upto]`,
    /// as seen by `viewer` (private receipts only for their owner).
    pub fn changes(
        &self,
        room: &RoomId,
        viewer: &UserId,
        after: u64,
        upto: u64,
    ) -> Result<Option<Value>> {
        if !self.latest.lock().after(room, after) {
            return Ok(None);
        }
        let mut content: Map<String, Value> = Map::new();
        for (user, receipt) in self.all(room)? {
            if receipt.count <= after || receipt.count > upto {
                continue;
            }
            if receipt.receipt_type == "m.read.private" && user != viewer {
                continue;
            }
            let mut data = json!({ "ts": receipt.ts });
            if let Some(thread) = &receipt.thread_id {
                data["thread_id"] = Value::String(thread.clone());
            }
            let by_event = content
                .entry(receipt.event_id.to_string())
                .or_insert_with(|| json!({}));
            let by_type = by_event.as_object_mut().map(|m| {
                m.entry(receipt.receipt_type.clone())
                    .or_insert_with(|| json!({}))
            });
            if let Some(Value::Object(by_user)) = by_type {
                by_user.insert(user.to_string(), data);
            }
        }
        Ok((!content.is_empty()).then_some(Value::Object(content)))
    }

    /// The counts last kept for the user in the room.
    pub fn counted(&self, user: &UserId, room: &RoomId) -> Option<Counted> {
        self.counted
            .lock()
            .get(&(user.to_owned(), room.to_owned()))
            .copied()
    }

    /// Keeps counts, unless newer ones are kept already.
    pub fn keep_counted(&self, user: &UserId, room: &RoomId, counted: Counted) {
        let mut kept = self.counted.lock();
        if kept.len() >= MAX_COUNTED {
            kept.clear();
        }
        let entry = kept
            .entry((user.to_owned(), room.to_owned()))
            .or_insert(counted);
        if counted.counted_upto >= entry.counted_upto {
            *entry = counted;
        }
    }

    /// Forgets the user's kept counts (their push rules changed).
    pub fn forget_counted(&self, user: &UserId) {
        self.counted.lock().retain(|(u, _), _| u != user);
    }

    /// The user's read receipts in the room that count for the room as a
    /// whole: public or private, unthreaded or on the main timeline.
    fn read_receipts(&self, room: &RoomId, user: &UserId) -> Result<Vec<Receipt>> {
        let prefix = key::prefix([room.as_bytes(), user.as_bytes()]);
        let mut out = Vec::new();
        for row in self.tree.scan_prefix_json::<Receipt>(prefix) {
            let (_, receipt) = row?;
            if receipt.thread_id.as_deref().is_none_or(|t| t == "main") {
                out.push(receipt);
            }
        }
        Ok(out)
    }

    /// The events the user last marked read.
    pub fn read_up_to(&self, room: &RoomId, user: &UserId) -> Result<Vec<OwnedEventId>> {
        Ok(self
            .read_receipts(room, user)?
            .into_iter()
            .map(|receipt| receipt.event_id)
            .collect())
    }

    /// Whether the user's latest read receipt in the room, where their
    /// unread counts last started over, is in `(after, upto]`.
    pub fn read_moved(&self, room: &RoomId, user: &UserId, after: u64, upto: u64) -> Result<bool> {
        if !self.latest.lock().after(room, after) {
            return Ok(false);
        }
        Ok(self
            .read_receipts(room, user)?
            .iter()
            .map(|receipt| receipt.count)
            .max()
            .is_some_and(|at| at > after && at <= upto))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room(i: usize) -> OwnedRoomId {
        RoomId::parse(format!("!r{i}:example.org")).expect("room ID")
    }

    #[test]
    fn rooms_forgotten_past_the_bound_stay_covered_by_the_floor() {
        let mut latest = Latest {
            by_room: HashMap::new(),
            floor: 5,
        };
        for i in 0..MAX_LATEST {
            latest.note(&room(i), 10 + i as u64);
        }
        let highest = 10 + MAX_LATEST as u64 - 1;
        // A room never noted is at most at the floor.
        assert!(!latest.after(&room(MAX_LATEST + 1), 5));
        assert!(latest.after(&room(MAX_LATEST + 1), 4));
        // One room more: the others are forgotten, and the floor covers
        // the newest of them.
        latest.note(&room(MAX_LATEST), 7);
        assert_eq!(latest.by_room.len(), 1);
        assert!(latest.after(&room(0), highest - 1));
        assert!(!latest.after(&room(0), highest));
        assert!(!latest.after(&room(MAX_LATEST), highest));
        // A count noted late never lowers a room's latest.
        latest.note(&room(MAX_LATEST), highest + 2);
        latest.note(&room(MAX_LATEST), highest + 1);
        assert!(latest.after(&room(MAX_LATEST), highest + 1));
    }
}
