//! EDUs waiting for each peer, and the transactions already taken from each.
//!
//! To-device messages, device-list updates and receipts are queued in
//! RocksDB, like events, and leave the queue only when the peer has
//! acknowledged them. Typing notices and presence are worth nothing late:
//! they wait in memory and are dropped if the peer is away.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};

use archipel_store::{Batch, key};
use ruma::{OwnedServerName, ServerName};
use serde_json::Value;

use super::Federation;
use crate::Result;

/// Ephemeral EDUs kept per peer; older ones give way.
const MAX_EPHEMERAL: usize = 100;
/// Transactions remembered per server to recognise a retry.
const RECENT_TRANSACTIONS: usize = 1024;

/// Transactions a peer sent recently, oldest first.
#[derive(Default)]
pub(super) struct Recent {
    order: VecDeque<(OwnedServerName, String)>,
    seen: HashSet<(OwnedServerName, String)>,
}

impl Federation {
    /// Queues `edu` durably for each of `destinations` that is a peer.
    pub async fn queue_edu(&self, destinations: &[OwnedServerName], edu: &Value) -> Result<()> {
        let destinations: Vec<&OwnedServerName> =
            destinations.iter().filter(|d| self.allows(d)).collect();
        if destinations.is_empty() {
            return Ok(());
        }
        let ticket = self.counter.next()?;
        let mut batch = Batch::new();
        for destination in destinations {
            batch.put_json(
                &self.servername_count_edu,
                key::with_u64(destination.as_bytes().to_vec(), ticket.count),
                edu,
            );
        }
        self.store.commit_async(batch).await?;
        drop(ticket);
        self.outgoing.notify_one();
        Ok(())
    }

    /// Hands `edu` to the next transaction for each of `destinations` that
    /// is a peer, if one goes out soon; nothing is stored.
    pub fn queue_ephemeral(&self, destinations: &[OwnedServerName], edu: Value) {
        let mut ephemeral = self.ephemeral.lock();
        for destination in destinations.iter().filter(|d| self.allows(d)) {
            let queue = ephemeral.entry(destination.clone()).or_default();
            if queue.len() == MAX_EPHEMERAL {
                queue.pop_front();
            }
            queue.push_back(edu.clone());
        }
        drop(ephemeral);
        self.outgoing.notify_one();
    }

    /// Peers with EDUs waiting.
    pub fn edu_destinations(&self) -> BTreeSet<OwnedServerName> {
        let mut out: BTreeSet<OwnedServerName> = self
            .ephemeral
            .lock()
            .iter()
            .filter(|(_, queue)| !queue.is_empty())
            .map(|(server, _)| server.clone())
            .collect();
        for peer in self.config.peer_names() {
            if self
                .servername_count_edu
                .scan_prefix(server_prefix(&peer))
                .next()
                .is_some()
            {
                out.insert(peer);
            }
        }
        out
    }

    /// The oldest `limit` durable EDUs for `destination`, with their positions.
    pub fn queued_edus(&self, destination: &ServerName, limit: usize) -> Result<Vec<(u64, Value)>> {
        let mut out = Vec::new();
        for row in self
            .servername_count_edu
            .scan_prefix(server_prefix(destination))
            .take(limit)
        {
            let (k, value) = row?;
            if let Some((_, count)) = key::split_last_u64(&k) {
                out.push((count, self.servername_count_edu.decode_json(&value)?));
            }
        }
        Ok(out)
    }

    /// Takes the ephemeral EDUs waiting for `destination`, at most `limit`.
    pub fn take_ephemeral(&self, destination: &ServerName, limit: usize) -> Vec<Value> {
        let mut ephemeral = self.ephemeral.lock();
        let Some(queue) = ephemeral.get_mut(destination) else {
            return Vec::new();
        };
        let n = queue.len().min(limit);
        queue.drain(..n).collect()
    }

    /// Removes durable EDUs `destination` has acknowledged.
    pub async fn dequeue_edus(&self, destination: &ServerName, counts: &[u64]) -> Result<()> {
        if counts.is_empty() {
            return Ok(());
        }
        let mut batch = Batch::new();
        for count in counts {
            batch.delete(
                &self.servername_count_edu,
                key::with_u64(destination.as_bytes().to_vec(), *count),
            );
        }
        self.store.commit_async(batch).await?;
        Ok(())
    }

    /// Woken when an EDU is queued.
    pub fn outgoing(&self) -> &tokio::sync::Notify {
        &self.outgoing
    }

    /// Whether the transaction `txn_id` from `origin` is new; a retry of
    /// one already applied is not. Call [`Federation::applied`] once it is.
    pub fn is_new_transaction(&self, origin: &ServerName, txn_id: &str) -> bool {
        !self
            .recent
            .lock()
            .seen
            .contains(&(origin.to_owned(), txn_id.to_owned()))
    }

    /// Records that the transaction `txn_id` from `origin` was applied.
    pub fn applied(&self, origin: &ServerName, txn_id: &str) {
        let mut recent = self.recent.lock();
        let entry = (origin.to_owned(), txn_id.to_owned());
        if recent.seen.insert(entry.clone()) {
            recent.order.push_back(entry);
            if recent.order.len() > RECENT_TRANSACTIONS
                && let Some(oldest) = recent.order.pop_front()
            {
                recent.seen.remove(&oldest);
            }
        }
    }
}

fn server_prefix(server: &ServerName) -> Vec<u8> {
    let mut prefix = server.as_bytes().to_vec();
    prefix.push(key::SEP);
    prefix
}

/// Ephemeral EDUs per peer.
pub(super) type Ephemeral = HashMap<OwnedServerName, VecDeque<Value>>;
