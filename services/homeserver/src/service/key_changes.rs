//! The device-list stream: at which stream position a user's devices or
//! cross-signing keys changed, or a user started or stopped sharing a room
//! (room members track each other's devices). Syncs and `/keys/changes`
//! read it; key uploads, signatures, device removals, peers' device-list
//! updates and membership changes write it.

use std::sync::atomic::{AtomicU64, Ordering};

use archipel_store::{Batch, Store, Tree, key};
use ruma::{OwnedRoomId, OwnedUserId, RoomId, UserId};

use crate::{Result, columns as cf};

pub struct KeyChanges {
    tree: Tree,
    /// The newest position noted: a sync's wake-up learns without a read
    /// that no device list changed since it last looked (most wake-ups of
    /// a long poll are someone's message).
    newest: AtomicU64,
}

/// One change: whose devices, and the room whose membership changed, if
/// that is what changed.
pub type KeyChange = (OwnedUserId, Option<OwnedRoomId>);

impl KeyChanges {
    pub fn open(store: &Store) -> Result<Self> {
        let tree = store.tree(cf::COUNT_USERID_KEYCHANGE)?;
        let newest = match tree.last()? {
            Some((k, _)) => key::parse_u64(&k).unwrap_or(u64::MAX),
            None => 0,
        };
        Ok(Self {
            tree,
            newest: AtomicU64::new(newest),
        })
    }

    /// Notes in `batch` that `user`'s device list changed at `count`, a
    /// position not yet visible; `room` when it is a membership change.
    pub fn note(&self, batch: &mut Batch, count: u64, user: &UserId, room: Option<&RoomId>) {
        let value = match room {
            Some(room) => key::key([user.as_bytes(), room.as_bytes()]),
            None => user.as_bytes().to_vec(),
        };
        batch.put(&self.tree, count.to_be_bytes(), value);
        // Raised before the position becomes visible, so that no reader
        // that may see it skips the read.
        self.newest.fetch_max(count, Ordering::SeqCst);
    }

    /// The changes in `(after, upto]`, oldest first.
    pub fn between(&self, after: u64, upto: u64) -> Result<Vec<KeyChange>> {
        let mut out = Vec::new();
        if self.newest.load(Ordering::SeqCst) <= after {
            return Ok(out);
        }
        for row in self
            .tree
            .scan_from((after + 1).to_be_bytes().to_vec(), Vec::new())
        {
            let (k, v) = row?;
            let Some(count) = key::parse_u64(&k) else {
                continue;
            };
            if count > upto {
                break;
            }
            let mut parts = key::split(&v);
            let user = self.tree.decode_str(parts.next().unwrap_or_default())?;
            let room = parts
                .next()
                .map(|room| self.tree.decode_str(room))
                .transpose()?;
            out.push((user, room));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_are_read_back_in_their_range_and_survive_a_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(
            dir.path(),
            crate::columns::COLUMNS,
            &archipel_store::StoreOptions::default(),
        )
        .expect("store");
        let changes = KeyChanges::open(&store).expect("key changes");
        let alice = ruma::user_id!("@alice:x");
        let bob = ruma::user_id!("@bob:x");
        let room = ruma::room_id!("!r:x");
        assert!(changes.between(0, 100).expect("read").is_empty());
        let mut batch = Batch::new();
        changes.note(&mut batch, 5, alice, None);
        changes.note(&mut batch, 7, bob, Some(room));
        store.commit(batch).expect("commit");
        assert_eq!(
            changes.between(0, 100).expect("read"),
            vec![
                (alice.to_owned(), None),
                (bob.to_owned(), Some(room.to_owned()))
            ]
        );
        assert_eq!(changes.between(5, 6).expect("read"), vec![]);
        assert_eq!(changes.between(4, 5).expect("read").len(), 1);
        assert!(changes.between(7, 100).expect("read").is_empty());
        drop(changes);
        let reopened = KeyChanges::open(&store).expect("key changes");
        assert_eq!(reopened.between(6, 100).expect("read").len(), 1);
    }
}
