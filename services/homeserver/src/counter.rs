//! The global stream counter.
//!
//! Every change a client can sync (an event, a receipt, account data, a
//! to-device message, a key change) takes a number from one counter, and sync
//! tokens are positions in that stream. Numbers are handed out before the
//! change is committed, so changes can commit out of order; a reader must not
//! move its token past a number that is still in flight, or it would skip it
//! forever. [`Counter::visible`] is therefore the highest number below every
//! in-flight one.
//!
//! Numbers are reserved on disk in blocks so a restart never reuses one.

use std::collections::BTreeSet;

use archipel_store::{Batch, Store, Tree};
use parking_lot::Mutex;
use tokio::sync::watch;

use crate::{Error, Result};

const RESERVE_KEY: &[u8] = b"counter_reserved";
const BLOCK: u64 = 4096;

struct State {
    next: u64,
    reserved: u64,
    in_flight: BTreeSet<u64>,
}

pub struct Counter {
    store: Store,
    tree: Tree,
    state: Mutex<State>,
    visible: watch::Sender<u64>,
}

/// A reserved stream position. Committing or dropping it makes it visible.
pub struct Ticket<'a> {
    counter: &'a Counter,
    pub count: u64,
}

impl Counter {
    pub fn open(store: Store) -> Result<Self> {
        let tree = store.tree(crate::columns::GLOBAL)?;
        let reserved = tree.get_u64(RESERVE_KEY)?.unwrap_or(1);
        // Everything below `reserved` may have been handed out before a crash.
        let next = reserved;
        let (visible, _) = watch::channel(next - 1);
        Ok(Self {
            store,
            tree,
            state: Mutex::new(State {
                next,
                reserved,
                in_flight: BTreeSet::new(),
            }),
            visible,
        })
    }

    /// Takes the next stream position.
    pub fn next(&self) -> Result<Ticket<'_>> {
        let mut state = self.state.lock();
        if state.next >= state.reserved {
            let reserved = state.next + BLOCK;
            let mut batch = Batch::new();
            batch.put(&self.tree, RESERVE_KEY, reserved.to_be_bytes());
            // Rare (once per block) and short: a synchronous commit is fine here.
            self.store.commit(batch)?;
            state.reserved = reserved;
        }
        let count = state.next;
        state.next += 1;
        state.in_flight.insert(count);
        Ok(Ticket {
            counter: self,
            count,
        })
    }

    /// The highest position whose changes, and all before it, are committed.
    pub fn visible(&self) -> u64 {
        *self.visible.borrow()
    }

    /// Waits until `count` is visible, at most `timeout`; whether it is.
    pub async fn wait_visible(&self, count: u64, timeout: std::time::Duration) -> bool {
        let mut visible = self.watch();
        tokio::time::timeout(timeout, visible.wait_for(|v| *v >= count))
            .await
            .is_ok_and(|seen| seen.is_ok())
    }

    /// A receiver that changes whenever [`Counter::visible`] moves.
    pub fn watch(&self) -> watch::Receiver<u64> {
        self.visible.subscribe()
    }

    fn finish(&self, count: u64) {
        let mut state = self.state.lock();
        state.in_flight.remove(&count);
        let visible = match state.in_flight.first() {
            Some(lowest) => lowest - 1,
            None => state.next - 1,
        };
        drop(state);
        self.visible.send_if_modified(|v| {
            if *v != visible {
                *v = visible;
                true
            } else {
                false
            }
        });
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        self.counter.finish(self.count);
    }
}

/// The position a pagination or sync token names (a sync token may carry
/// a to-device position after a `_`).
pub fn parse_token(token: &str) -> Result<u64> {
    let token = token.trim_start_matches(['s', 't']);
    token
        .split_once('_')
        .map_or(token, |(position, _)| position)
        .parse()
        .map_err(|_| Error::invalid_param("Invalid pagination token."))
}

#[cfg(test)]
mod tests {
    use super::*;
    use archipel_store::{ColumnSpec, Store, StoreOptions};

    fn counter(dir: &std::path::Path) -> Counter {
        let store =
            Store::open(dir, &[ColumnSpec::new("global")], &StoreOptions::default()).expect("open");
        Counter::open(store).expect("counter")
    }

    #[test]
    fn visibility_waits_for_the_lowest_in_flight_position() {
        let dir = tempfile::tempdir().expect("tempdir");
        let c = counter(dir.path());
        let start = c.visible();
        let a = c.next().expect("a");
        let b = c.next().expect("b");
        drop(b);
        assert_eq!(c.visible(), start, "b committed but a is still in flight");
        drop(a);
        assert_eq!(c.visible(), start + 2);
    }

    #[test]
    fn restart_never_reuses_a_position() {
        let dir = tempfile::tempdir().expect("tempdir");
        let used = {
            let c = counter(dir.path());
            let t = c.next().expect("t");
            t.count
        };
        let c = counter(dir.path());
        assert!(c.next().expect("t").count > used);
    }
}
