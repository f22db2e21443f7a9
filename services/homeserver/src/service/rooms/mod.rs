//! Rooms: the event graph, room state, membership, aliases and the directory.
//!
//! Every event this server creates goes through [`Rooms::append`], which
//! authorizes it against the room's current state with the spec's auth rules
//! (ruma's state-res), signs it, and commits it in one durable batch together
//! with every index it touches and its archive capture record.

mod alias;
mod append;
mod bridges;
mod capture;
mod membership;
mod outgoing;
pub mod pdu;
pub mod power_levels;
mod receive;
pub mod snapshot;
mod state;
mod timeline;
mod visibility;

use std::{
    collections::{BTreeSet, HashMap},
    sync::{Arc, atomic::AtomicU64},
};

use archipel_store::{Store, Tree};
use parking_lot::Mutex;
use ruma::{
    OwnedEventId, OwnedRoomId, OwnedServerName, OwnedUserId, RoomId, RoomVersionId,
    signatures::Ed25519KeyPair,
};
use serde::{Deserialize, Serialize};

pub use append::room_rules;
pub use capture::{CapturedEvent, media_references};
pub use membership::MembershipRecord;
pub use pdu::{Pdu, PduBuilder, implies_room_id, room_id_of_create};
pub use receive::{JoinedRoom, Received, Relay};
pub use timeline::bumps;
pub use visibility::{ServerViewer, Viewer};

use crate::{Result, columns as cf, counter::Counter, service::key_changes::KeyChanges};

/// Per-room facts kept beside the events.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RoomMeta {
    pub version: RoomVersionId,
    /// The forward extremities: the newest events, which no event follows
    /// yet. The next event this server creates follows all of them.
    pub extremities: Vec<OwnedEventId>,
    /// The greatest depth of any event in the room.
    pub depth: u64,
    pub last_count: u64,
    /// The current state: the extremities' states, resolved.
    pub state_id: u64,
}

/// A user's rooms with their membership in each (see [`Rooms::rooms_of_shared`]).
pub type RoomList = Arc<Vec<(OwnedRoomId, MembershipRecord)>>;

pub struct Rooms {
    store: Store,
    counter: Arc<Counter>,
    server_name: OwnedServerName,
    keypair: Arc<Ed25519KeyPair>,
    eventid_pdu: Tree,
    eventid_originalpdu: Tree,
    eventid_position: Tree,
    roomid_count_eventid: Tree,
    roomid_meta: Tree,
    roomid_statekey_eventid: Tree,
    roomid_statekey_count_eventid: Tree,
    userid_roomid_membership: Tree,
    roomid_userid_membership: Tree,
    txn_eventid: Tree,
    alias_roomid: Tree,
    roomid_published: Tree,
    targetid_count_relation: Tree,
    count_vaultcapture: Tree,
    /// The bridges' outbox (see [`Rooms::appservice_outbox`]).
    count_appservice: Tree,
    eventid_stateid: Tree,
    stateid_snapshot: Tree,
    eventid_federationjson: Tree,
    eventid_rejected: Tree,
    servername_count_eventid: Tree,
    next_state_id: AtomicU64,
    snapshots: snapshot::SnapshotCache,
    /// Servers with members in each room, for the outgoing queue.
    servers: Mutex<HashMap<OwnedRoomId, Arc<Vec<OwnedServerName>>>>,
    /// The allowlisted peers events are queued for (none: federation is off).
    peers: BTreeSet<OwnedServerName>,
    /// Woken when events are queued for peers.
    pub outgoing: Arc<tokio::sync::Notify>,
    /// Whether events go to the archive outbox (off only on benchmark dev nodes).
    capture: bool,
    /// Whether events go to the bridges' outbox (only while one is installed).
    bridged: bool,
    key_changes: Arc<KeyChanges>,
    locks: Mutex<HashMap<OwnedRoomId, Arc<tokio::sync::Mutex<()>>>>,
    /// The newest timeline positions of each room looked up so far, raised
    /// as events are indexed: a room list sorts and stamps rooms by them
    /// without reading each room (see [`Rooms::latest_position`]).
    newest: Mutex<HashMap<OwnedRoomId, timeline::Newest>>,
    /// Users' room lists as last read (see [`Rooms::rooms_of_shared`]).
    room_lists: Mutex<HashMap<OwnedUserId, (u64, RoomList)>>,
    /// The position of each user's latest membership change, raised as it
    /// is indexed.
    membership_changed: Mutex<HashMap<OwnedUserId, u64>>,
}

impl Rooms {
    /// The device-list stream, which membership changes write: shared with
    /// E2EE, which writes the rest.
    pub fn key_changes(&self) -> Arc<KeyChanges> {
        self.key_changes.clone()
    }

    pub fn new(
        store: Store,
        counter: Arc<Counter>,
        server_name: OwnedServerName,
        keypair: Arc<Ed25519KeyPair>,
        capture: bool,
        bridged: bool,
        peers: BTreeSet<OwnedServerName>,
    ) -> Result<Self> {
        let stateid_snapshot = store.tree(cf::STATEID_SNAPSHOT)?;
        Ok(Self {
            next_state_id: AtomicU64::new(snapshot::first_free_id(&stateid_snapshot)?),
            stateid_snapshot,
            eventid_stateid: store.tree(cf::EVENTID_STATEID)?,
            eventid_federationjson: store.tree(cf::EVENTID_FEDERATIONJSON)?,
            eventid_rejected: store.tree(cf::EVENTID_REJECTED)?,
            servername_count_eventid: store.tree(cf::SERVERNAME_COUNT_EVENTID)?,
            snapshots: Default::default(),
            servers: Mutex::new(HashMap::new()),
            peers,
            outgoing: Arc::new(tokio::sync::Notify::new()),
            eventid_pdu: store.tree(cf::EVENTID_PDU)?,
            eventid_originalpdu: store.tree(cf::EVENTID_ORIGINALPDU)?,
            eventid_position: store.tree(cf::EVENTID_POSITION)?,
            roomid_count_eventid: store.tree(cf::ROOMID_COUNT_EVENTID)?,
            roomid_meta: store.tree(cf::ROOMID_META)?,
            roomid_statekey_eventid: store.tree(cf::ROOMID_STATEKEY_EVENTID)?,
            roomid_statekey_count_eventid: store.tree(cf::ROOMID_STATEKEY_COUNT_EVENTID)?,
            userid_roomid_membership: store.tree(cf::USERID_ROOMID_MEMBERSHIP)?,
            roomid_userid_membership: store.tree(cf::ROOMID_USERID_MEMBERSHIP)?,
            txn_eventid: store.tree(cf::TXN_EVENTID)?,
            alias_roomid: store.tree(cf::ALIAS_ROOMID)?,
            roomid_published: store.tree(cf::ROOMID_PUBLISHED)?,
            targetid_count_relation: store.tree(cf::TARGETID_COUNT_RELATION)?,
            count_vaultcapture: store.tree(cf::COUNT_VAULTCAPTURE)?,
            count_appservice: store.tree(cf::COUNT_APPSERVICE)?,
            key_changes: Arc::new(KeyChanges::open(&store)?),
            capture,
            bridged,
            store,
            counter,
            server_name,
            keypair,
            locks: Mutex::new(HashMap::new()),
            newest: Mutex::new(HashMap::new()),
            room_lists: Mutex::new(HashMap::new()),
            membership_changed: Mutex::new(HashMap::new()),
        })
    }

    pub fn server_name(&self) -> &ruma::ServerName {
        &self.server_name
    }

    pub fn meta(&self, room_id: &RoomId) -> Result<Option<RoomMeta>> {
        Ok(self.roomid_meta.get_json(room_id.as_bytes())?)
    }

    pub fn exists(&self, room_id: &RoomId) -> Result<bool> {
        Ok(self.roomid_meta.contains(room_id.as_bytes())?)
    }

    /// Every room this server knows.
    pub fn all_rooms(&self) -> Result<Vec<OwnedRoomId>> {
        let mut rooms = Vec::new();
        for row in self.roomid_meta.iter() {
            let (key, _) = row?;
            rooms.push(self.roomid_meta.decode_str(&key)?);
        }
        Ok(rooms)
    }

    /// How many rooms this server knows.
    pub fn room_count(&self) -> Result<usize> {
        let mut count = 0;
        for row in self.roomid_meta.iter() {
            row?;
            count += 1;
        }
        Ok(count)
    }

    fn room_lock(&self, room_id: &RoomId) -> Arc<tokio::sync::Mutex<()>> {
        self.locks
            .lock()
            .entry(room_id.to_owned())
            .or_default()
            .clone()
    }
}

#[cfg(test)]
pub(crate) mod testing {
    use std::{collections::BTreeSet, sync::Arc};

    use archipel_store::{Store, StoreOptions};
    use ruma::{OwnedServerName, server_name, signatures::Ed25519KeyPair};

    use super::Rooms;
    use crate::counter::Counter;

    /// The rooms of a server `a.test` with the given peers, on a store that
    /// skips fsync.
    pub fn rooms(
        dir: &std::path::Path,
        peers: BTreeSet<OwnedServerName>,
    ) -> (Rooms, Arc<Counter>, Store) {
        let options = StoreOptions {
            durable: false,
            ..StoreOptions::default()
        };
        let store = Store::open(dir, crate::columns::COLUMNS, &options).expect("open the store");
        let counter = Arc::new(Counter::open(store.clone()).expect("counter"));
        let document = Ed25519KeyPair::generate();
        let key = Ed25519KeyPair::from_der(&document, "0".into()).expect("signing key");
        let rooms = Rooms::new(
            store.clone(),
            counter.clone(),
            server_name!("a.test").to_owned(),
            Arc::new(key),
            true,
            false,
            peers,
        )
        .expect("rooms");
        (rooms, counter, store)
    }

    /// A new room of `creator`'s, who has joined it.
    pub async fn room_of(rooms: &Rooms, creator: &ruma::UserId) -> ruma::OwnedRoomId {
        let created = rooms
            .create_room(creator, serde_json::json!({ "room_version": "12" }))
            .await
            .expect("create the room");
        let room_id = created.pdu.room_id.clone();
        let join = super::PduBuilder::state(
            "m.room.member",
            creator.as_str(),
            serde_json::json!({ "membership": "join" }),
        );
        rooms
            .append(&room_id, creator, join)
            .await
            .expect("join the room");
        room_id
    }
}
