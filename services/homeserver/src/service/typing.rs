//! Typing notifications: in memory only, they expire in seconds anyway.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
    time::{Duration, Instant},
};

use parking_lot::Mutex;
use ruma::{OwnedRoomId, OwnedUserId, RoomId, UserId};

use crate::{Result, counter::Counter};

#[derive(Default)]
struct RoomTyping {
    users: BTreeMap<OwnedUserId, Instant>,
    count: u64,
}

pub struct Typing {
    counter: Arc<Counter>,
    rooms: Mutex<HashMap<OwnedRoomId, RoomTyping>>,
}

/// Longest a client may ask to be shown typing.
const MAX_TIMEOUT: Duration = Duration::from_secs(120);

impl Typing {
    pub fn new(counter: Arc<Counter>) -> Self {
        Self {
            counter,
            rooms: Mutex::new(HashMap::new()),
        }
    }

    pub fn set(&self, room: &RoomId, user: &UserId, timeout: Option<Duration>) -> Result<()> {
        let mut rooms = self.rooms.lock();
        let entry = rooms.entry(room.to_owned()).or_default();
        let changed = match timeout {
            Some(timeout) => entry
                .users
                .insert(user.to_owned(), Instant::now() + timeout.min(MAX_TIMEOUT))
                .is_none(),
            None => entry.users.remove(user).is_some(),
        };
        if changed {
            let ticket = self.counter.next()?;
            entry.count = ticket.count;
        }
        Ok(())
    }

    /// The users typing in `room`, if that changed in `(after, upto]`.
    pub fn changes(&self, room: &RoomId, after: u64, upto: u64) -> Option<Vec<OwnedUserId>> {
        let rooms = self.rooms.lock();
        let entry = rooms.get(room)?;
        (entry.count > after && entry.count <= upto).then(|| entry.users.keys().cloned().collect())
    }

    /// Drops expired entries; called periodically.
    pub fn expire(&self) -> Result<()> {
        let now = Instant::now();
        let mut rooms = self.rooms.lock();
        for entry in rooms.values_mut() {
            let before = entry.users.len();
            entry.users.retain(|_, until| *until > now);
            if entry.users.len() != before {
                let ticket = self.counter.next()?;
                entry.count = ticket.count;
            }
        }
        rooms.retain(|_, e| !e.users.is_empty() || e.count > 0);
        Ok(())
    }
}
