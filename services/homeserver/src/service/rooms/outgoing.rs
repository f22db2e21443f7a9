//! The outgoing queue: events waiting to be sent to each peer.
//!
//! An event this server creates is queued for every other server with
//! members in the room, in the same batch as the event, so an event a
//! client was told is stored is never lost for a peer that is down. The
//! sender deletes an entry once the peer has acknowledged it.

use std::{collections::BTreeSet, sync::Arc};

use archipel_store::{Batch, key};
use ruma::{
    OwnedEventId, OwnedServerName, RoomId, ServerName, UserId,
    events::{TimelineEventType, room::member::MembershipState},
};

use super::{Pdu, Rooms};
use crate::Result;

impl Rooms {
    /// Servers with joined members in `room_id`, this one included.
    pub fn servers_in_room(&self, room_id: &RoomId) -> Result<Arc<Vec<OwnedServerName>>> {
        if let Some(servers) = self.servers.lock().get(room_id) {
            return Ok(servers.clone());
        }
        let mut servers = BTreeSet::new();
        for row in self
            .roomid_userid_membership
            .scan_prefix(key::prefix([room_id.as_bytes()]))
        {
            let (k, value) = row?;
            let record: super::MembershipRecord = serde_json::from_slice(&value)?;
            if record.membership == MembershipState::Join
                && let Some(user) = k.rsplit(|b| *b == key::SEP).next()
            {
                let user: ruma::OwnedUserId = self.roomid_userid_membership.decode_str(user)?;
                servers.insert(user.server_name().to_owned());
            }
        }
        let servers = Arc::new(servers.into_iter().collect::<Vec<_>>());
        self.servers
            .lock()
            .insert(room_id.to_owned(), servers.clone());
        Ok(servers)
    }

    /// Drops the cached server list after a membership change.
    pub(super) fn forget_servers(&self, room_id: &RoomId) {
        self.servers.lock().remove(room_id);
    }

    /// Queues `pdu` for the other servers in its room (and the server of a
    /// member event's target), except `origin`, as far as they are
    /// allowlisted peers: nothing is ever queued for another server.
    /// Returns whether any was.
    pub(super) fn queue_outgoing(
        &self,
        batch: &mut Batch,
        pdu: &Pdu,
        count: u64,
        origin: Option<&ServerName>,
    ) -> Result<bool> {
        if self.peers.is_empty() {
            return Ok(false);
        }
        let mut destinations: BTreeSet<OwnedServerName> = self
            .servers_in_room(&pdu.room_id)?
            .iter()
            .cloned()
            .collect();
        if pdu.kind == TimelineEventType::RoomMember
            && let Some(target) = pdu.state_key.as_deref()
            && let Ok(target) = UserId::parse(target)
        {
            destinations.insert(target.server_name().to_owned());
        }
        destinations.retain(|server| self.peers.contains(server));
        if let Some(origin) = origin {
            destinations.remove(origin);
        }
        for destination in &destinations {
            batch.put(
                &self.servername_count_eventid,
                key::with_u64(destination.as_bytes().to_vec(), count),
                pdu.event_id.as_bytes(),
            );
        }
        Ok(!destinations.is_empty())
    }

    /// Peers with something queued: one seek per peer, however long the
    /// queue of a peer that is away has grown.
    pub fn queued_destinations(&self) -> Result<BTreeSet<OwnedServerName>> {
        let mut out = BTreeSet::new();
        for peer in &self.peers {
            let mut prefix = peer.as_bytes().to_vec();
            prefix.push(key::SEP);
            if self
                .servername_count_eventid
                .scan_prefix(prefix)
                .next()
                .is_some()
            {
                out.insert(peer.clone());
            }
        }
        Ok(out)
    }

    /// The oldest `limit` events queued for `destination`, with their
    /// positions, as far as they are durable: an event whose write has not
    /// been synced yet (or any before it) stays here, so that no peer ever
    /// holds an event this server could lose in a crash.
    pub fn queued_for(
        &self,
        destination: &ServerName,
        limit: usize,
    ) -> Result<Vec<(u64, OwnedEventId)>> {
        let mut prefix = destination.as_bytes().to_vec();
        prefix.push(key::SEP);
        let durable = self.counter.visible();
        let mut out = Vec::new();
        for row in self.servername_count_eventid.scan_prefix(prefix) {
            let (k, value) = row?;
            if let Some((_, count)) = key::split_last_u64(&k) {
                let event_id: ruma::OwnedEventId =
                    self.servername_count_eventid.decode_str(&value)?;
                if count > durable {
                    break;
                }
                out.push((count, event_id));
                if out.len() == limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// How many events wait for `destination`, counting at most `limit`.
    pub fn queue_len(&self, destination: &ServerName, limit: usize) -> Result<usize> {
        let mut prefix = destination.as_bytes().to_vec();
        prefix.push(key::SEP);
        let mut count = 0;
        for row in self
            .servername_count_eventid
            .scan_prefix(prefix)
            .take(limit)
        {
            row?;
            count += 1;
        }
        Ok(count)
    }

    /// The position of the oldest event queued for `destination` that is
    /// still being written, if the queue holds nothing older.
    pub fn queue_waits_at(&self, destination: &ServerName) -> Result<Option<u64>> {
        let mut prefix = destination.as_bytes().to_vec();
        prefix.push(key::SEP);
        let Some(row) = self.servername_count_eventid.scan_prefix(prefix).next() else {
            return Ok(None);
        };
        let (k, _) = row?;
        Ok(key::split_last_u64(&k)
            .map(|(_, count)| count)
            .filter(|count| *count > self.counter.visible()))
    }

    /// Removes entries `destination` has acknowledged.
    pub async fn dequeue(&self, destination: &ServerName, counts: &[u64]) -> Result<()> {
        let mut batch = Batch::new();
        for count in counts {
            batch.delete(
                &self.servername_count_eventid,
                key::with_u64(destination.as_bytes().to_vec(), *count),
            );
        }
        self.store.commit_async(batch).await?;
        Ok(())
    }

    /// The events `ids` names that federation may send, as it sends them
    /// (see [`Self::federation_json`]); the others are left out.
    pub fn federation_events(
        &self,
        ids: impl IntoIterator<Item = ruma::OwnedEventId>,
    ) -> Result<Vec<Box<serde_json::value::RawValue>>> {
        let mut out = Vec::new();
        for id in ids {
            if let Some(json) = self.federation_json(&id)? {
                out.push(serde_json::value::to_raw_value(&json)?);
            }
        }
        Ok(out)
    }

    /// An event as federation sends it: exactly as received from its
    /// origin, or as this server signed it.
    /// A redacted event is sent in its redacted form, which its signatures
    /// still cover.
    /// An event still being written is not there yet: a peer could hold it
    /// after a crash that this server's store lost.
    pub fn federation_json(&self, event_id: &ruma::EventId) -> Result<Option<serde_json::Value>> {
        if self
            .position(event_id)?
            .is_some_and(|(_, count)| count > self.counter.visible())
        {
            return Ok(None);
        }
        let Some(pdu) = self.get_pdu(event_id)? else {
            return Ok(None);
        };
        let Some(received) = self
            .eventid_federationjson
            .get_json::<ruma::CanonicalJsonObject>(event_id.as_bytes())?
        else {
            return Ok(Some(pdu.to_federation_json()));
        };
        let redacted = pdu.unsigned.as_ref().is_some_and(|u| {
            u.contains_key("redacted_because") || u.contains_key("io.archipel.erased")
        });
        if !redacted {
            return Ok(Some(serde_json::to_value(received)?));
        }
        let version = self.meta(&pdu.room_id)?.map(|meta| meta.version);
        let rules = super::room_rules(&version.unwrap_or(ruma::RoomVersionId::V11))?;
        let stripped = ruma::canonical_json::redact(received, &rules.redaction, None)
            .map_err(crate::Error::internal)?;
        Ok(Some(serde_json::to_value(stripped)?))
    }

    /// `event` (federation JSON of an event in `room_id`) in its redacted
    /// form, under the room version's redaction rules.
    pub fn redacted_federation_json(
        &self,
        room_id: &ruma::RoomId,
        event: serde_json::Value,
    ) -> Result<serde_json::Value> {
        let version = self.meta(room_id)?.map(|meta| meta.version);
        let rules = super::room_rules(&version.unwrap_or(ruma::RoomVersionId::V11))?;
        let object: ruma::CanonicalJsonObject = serde_json::from_value(event)?;
        let stripped = ruma::canonical_json::redact(object, &rules.redaction, None)
            .map_err(crate::Error::internal)?;
        Ok(serde_json::to_value(stripped)?)
    }
}

#[cfg(test)]
mod tests {
    use ruma::{server_name, user_id};
    use serde_json::json;

    use super::super::{PduBuilder, testing};

    #[tokio::test]
    async fn an_event_leaves_for_peers_only_once_it_is_durable() {
        let dir = tempfile::tempdir().expect("tempdir");
        let peer = server_name!("b.test");
        let (rooms, counter, _store) = testing::rooms(dir.path(), [peer.to_owned()].into());
        let alice = user_id!("@alice:a.test");
        let room = &*testing::room_of(&rooms, alice).await;

        // A write that took its position earlier is still on its way to disk.
        let earlier = counter.next().expect("a position");
        let invite = rooms
            .append(
                room,
                alice,
                PduBuilder::state(
                    "m.room.member",
                    "@bob:b.test",
                    json!({ "membership": "invite" }),
                ),
            )
            .await
            .expect("invite");
        let event_id = &invite.pdu.event_id;
        assert!(
            rooms.queued_for(peer, 50).expect("queue").is_empty(),
            "nothing goes out past a position still being written"
        );
        assert_eq!(
            rooms.queue_waits_at(peer).expect("queue"),
            Some(invite.count)
        );
        assert!(
            rooms.federation_json(event_id).expect("read").is_none(),
            "peers cannot fetch it either"
        );

        drop(earlier);
        assert!(
            counter
                .wait_visible(invite.count, std::time::Duration::from_secs(1))
                .await
        );
        let queued = rooms.queued_for(peer, 50).expect("queue");
        assert_eq!(queued, vec![(invite.count, event_id.clone())]);
        assert_eq!(rooms.queue_waits_at(peer).expect("queue"), None);
        assert!(rooms.federation_json(event_id).expect("read").is_some());
    }
}
