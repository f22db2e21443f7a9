//! Creating an event: authorize, sign, and commit it with all its indexes.

use std::sync::Arc;

use archipel_store::{Batch, key};
use ruma::{
    CanonicalJsonObject, CanonicalJsonValue, EventId, MilliSecondsSinceUnixEpoch, OwnedEventId,
    RoomId, RoomVersionId, UserId,
    canonical_json::{redact, try_from_json_map},
    events::{StateEventType, TimelineEventType, room::member::MembershipState},
    room_version_rules::RoomVersionRules,
    state_res::{
        auth_types_for_event, check_state_dependent_auth_rules, check_state_independent_auth_rules,
    },
};
use serde_json::{Map, Value};

use super::{Pdu, PduBuilder, RoomMeta, Rooms, membership::MembershipRecord};
use crate::{Error, Result};

/// The largest PDU the spec allows, in bytes of canonical JSON.
pub const MAX_PDU_BYTES: usize = 65_536;
/// An event follows at most this many forward extremities.
const MAX_PREV_EVENTS: usize = 10;

/// What [`Rooms::append`] produced.
pub struct Appended {
    pub pdu: Arc<Pdu>,
    pub count: u64,
}

impl Rooms {
    /// Authorizes, signs and durably stores a new event in `room_id`.
    ///
    /// Returns only after the event and every index it touches are on disk.
    /// A rejected event changes nothing.
    pub async fn append(
        &self,
        room_id: &RoomId,
        sender: &UserId,
        builder: PduBuilder,
    ) -> Result<Appended> {
        let lock = self.room_lock(room_id);
        let serialized = lock.lock().await;

        let meta = self
            .meta(room_id)?
            .ok_or_else(|| Error::not_found("Unknown room."))?;
        let (mut pdu, _, version) = self.sign_new(room_id, sender, &builder, &meta)?;
        pdu.transaction = builder.transaction.clone();
        self.add_prev_content(&mut pdu)?;
        self.commit_new(pdu, version, Some(meta), serialized).await
    }

    /// Creates a room: `sender`'s `m.room.create` event with `content`,
    /// whose `room_version` says the room's version. Up to room version 11
    /// the room gets a random ID of this server; from version 12 on its ID
    /// is the create event's reference hash. The content names the creator
    /// where the version wants it (up to 10) and nowhere else.
    pub async fn create_room(&self, sender: &UserId, mut content: Value) -> Result<Appended> {
        let version = create_event_version(&content)?;
        let rules = room_rules(&version)?;
        if let Some(content) = content.as_object_mut() {
            if rules.authorization.use_room_create_sender {
                content.remove("creator");
            } else {
                content.insert("creator".into(), Value::String(sender.to_string()));
            }
        }
        let mut timestamp = MilliSecondsSinceUnixEpoch::now();
        // Two identical create events of one millisecond would name one
        // room: the later one moves on a millisecond.
        for _ in 0..16 {
            let room_id = (!rules.authorization.room_create_event_id_as_room_id)
                .then(|| RoomId::new_v1(&self.server_name));
            let mut object = Map::new();
            if let Some(room_id) = &room_id {
                object.insert("room_id".into(), Value::String(room_id.to_string()));
            }
            object.insert("sender".into(), Value::String(sender.to_string()));
            object.insert("origin_server_ts".into(), serde_json::to_value(timestamp)?);
            object.insert("type".into(), Value::String("m.room.create".into()));
            object.insert("content".into(), content.clone());
            object.insert("state_key".into(), Value::String(String::new()));
            object.insert("prev_events".into(), Value::Array(Vec::new()));
            object.insert("auth_events".into(), Value::Array(Vec::new()));
            object.insert("depth".into(), Value::from(1));
            let object = canonical(object)?;
            let (pdu, _) = self.sign(object, &rules)?;
            check_state_independent_auth_rules(&rules.authorization, &pdu, |_| None::<Pdu>)
                .map_err(|e| Error::bad_json(format!("Invalid creation content: {e}")))?;

            let lock = self.room_lock(&pdu.room_id);
            let serialized = lock.lock().await;
            if self.meta(&pdu.room_id)?.is_some() {
                timestamp = MilliSecondsSinceUnixEpoch(timestamp.0 + ruma::uint!(1));
                continue;
            }
            return self.commit_new(pdu, version, None, serialized).await;
        }
        Err(Error::internal("no free room ID for a new room"))
    }

    /// Stores a new event of this server's, signed and authorized, under
    /// its room's lock (`serialized`): its indexes, the room's state and
    /// metadata, the archive's and the peers' queues.
    async fn commit_new(
        &self,
        pdu: Pdu,
        version: RoomVersionId,
        meta: Option<RoomMeta>,
        serialized: tokio::sync::MutexGuard<'_, ()>,
    ) -> Result<Appended> {
        let room_id = pdu.room_id.clone();

        let ticket = self.counter.next()?;
        let count = ticket.count;
        let depth = u64::from(pdu.depth);
        let mut batch = Batch::new();
        self.index_pdu(&mut batch, &pdu, count, &version)?;
        let parent = meta.as_ref().map(|meta| meta.state_id);
        let state_id = match &pdu.state_key {
            Some(state_key) => {
                let mut state = match parent {
                    Some(parent) => (*self.load_state(parent)?).clone(),
                    None => Default::default(),
                };
                state.insert(
                    (pdu.state_event_type(), state_key.clone()),
                    pdu.event_id.clone(),
                );
                self.index_current_state(&mut batch, &pdu, count);
                self.save_state(&mut batch, parent, &state)?
            }
            None => parent.ok_or_else(|| Error::internal("a room without state"))?,
        };
        batch.put(
            &self.eventid_stateid,
            pdu.event_id.as_bytes(),
            state_id.to_be_bytes(),
        );
        let meta = RoomMeta {
            version,
            extremities: vec![pdu.event_id.clone()],
            depth,
            last_count: count,
            state_id,
        };
        batch.put_json(&self.roomid_meta, room_id.as_bytes(), &meta);
        let queued = self.queue_outgoing(&mut batch, &pdu, count, None)?;

        let written = self.store.write_async(batch).await?;
        if pdu.kind == TimelineEventType::RoomMember {
            self.forget_servers(&room_id);
        }
        // The next event of this room may be built now; its fsync will cover
        // this one too if ours has not run yet.
        drop(serialized);
        self.store.sync_async(written).await?;
        drop(ticket);
        if queued {
            self.outgoing.notify_one();
        }
        Ok(Appended {
            pdu: Arc::new(pdu),
            count,
        })
    }

    /// A new event of this server's, signed and authorized against the
    /// current state, but not stored: an invite goes to the invitee's
    /// server for its signature first.
    pub fn prepare_event(
        &self,
        room_id: &RoomId,
        sender: &UserId,
        builder: &PduBuilder,
    ) -> Result<(OwnedEventId, CanonicalJsonObject, RoomVersionId)> {
        let meta = self
            .meta(room_id)?
            .ok_or_else(|| Error::not_found("Unknown room."))?;
        let (pdu, object, version) = self.sign_new(room_id, sender, builder, &meta)?;
        Ok((pdu.event_id, object, version))
    }

    fn sign_new(
        &self,
        room_id: &RoomId,
        sender: &UserId,
        builder: &PduBuilder,
        meta: &RoomMeta,
    ) -> Result<(Pdu, CanonicalJsonObject, RoomVersionId)> {
        let (object, version, rules) = self.build_event(room_id, sender, builder, meta)?;
        let (pdu, object) = self.sign(object, &rules)?;
        check_state_independent_auth_rules(&rules.authorization, &pdu, |id| {
            self.get_pdu(id).ok().flatten()
        })
        .map_err(|e| Error::forbidden(format!("Event not allowed: {e}")))?;
        check_state_dependent_auth_rules(&rules.authorization, &pdu, |kind, state_key| {
            self.state_event_id(room_id, kind, state_key)
                .ok()
                .flatten()
                .and_then(|id| self.get_pdu(&id).ok().flatten())
        })
        .map_err(|e| Error::forbidden(format!("Event not allowed: {e}")))?;
        if let Some(why) = self.redaction_refusal(&pdu)? {
            return Err(Error::forbidden(why));
        }
        Ok((pdu, object, version))
    }

    /// Hashes and signs an event of this server's; its event ID is the
    /// reference hash.
    fn sign(
        &self,
        mut object: CanonicalJsonObject,
        rules: &RoomVersionRules,
    ) -> Result<(Pdu, CanonicalJsonObject)> {
        ruma::signatures::hash_and_sign_event(
            self.server_name.as_str(),
            &*self.keypair,
            &mut object,
            &rules.redaction,
        )
        .map_err(Error::internal)?;
        let event_id = ruma::signatures::reference_hash(&object, rules).map_err(Error::internal)?;
        let event_id = OwnedEventId::try_from(format!("${event_id}")).map_err(Error::internal)?;
        let pdu = Pdu::from_signed(event_id, object.clone(), rules).map_err(Error::internal)?;
        Ok((pdu, object))
    }

    /// The event `sender` would create now, unsigned: on top of every
    /// forward extremity, with the auth events the current state gives it.
    /// Also the template a joining peer signs (make_join). A room's create
    /// event is [`Rooms::create_room`]'s.
    pub(super) fn build_event(
        &self,
        room_id: &RoomId,
        sender: &UserId,
        builder: &PduBuilder,
        meta: &RoomMeta,
    ) -> Result<(CanonicalJsonObject, RoomVersionId, RoomVersionRules)> {
        if builder.kind == TimelineEventType::RoomCreate {
            return Err(Error::forbidden("The room already exists."));
        }
        let version = meta.version.clone();
        let rules = room_rules(&version)?;

        let content_raw = serde_json::value::to_raw_value(&builder.content)?;
        let auth_types = auth_types_for_event(
            &builder.kind,
            sender,
            builder.state_key.as_deref(),
            &content_raw,
            &rules.authorization,
        )
        .map_err(|e| Error::bad_json(format!("Invalid event content: {e}")))?;
        let mut auth_events = Vec::new();
        for (kind, state_key) in &auth_types {
            if let Some(id) = self.state_event_id(room_id, kind, state_key)?
                && !auth_events.contains(&id)
            {
                auth_events.push(id);
            }
        }

        let prev_events: Vec<OwnedEventId> = meta
            .extremities
            .iter()
            .take(MAX_PREV_EVENTS)
            .cloned()
            .collect();
        let timestamp = builder
            .timestamp
            .unwrap_or_else(MilliSecondsSinceUnixEpoch::now);

        let mut object = Map::new();
        object.insert("room_id".into(), Value::String(room_id.to_string()));
        object.insert("sender".into(), Value::String(sender.to_string()));
        object.insert("origin_server_ts".into(), serde_json::to_value(timestamp)?);
        object.insert("type".into(), Value::String(builder.kind.to_string()));
        object.insert("content".into(), builder.content.clone());
        if let Some(state_key) = &builder.state_key {
            object.insert("state_key".into(), Value::String(state_key.clone()));
        }
        object.insert("prev_events".into(), serde_json::to_value(&prev_events)?);
        object.insert("auth_events".into(), serde_json::to_value(&auth_events)?);
        object.insert("depth".into(), Value::from(meta.depth + 1));
        if let Some(redacts) = &builder.redacts
            && !rules.redaction.content_field_redacts
        {
            object.insert("redacts".into(), Value::String(redacts.to_string()));
        }
        Ok((canonical(object)?, version, rules))
    }

    /// State events carry what they replace, for clients.
    pub(super) fn add_prev_content(&self, pdu: &mut Pdu) -> Result<()> {
        if let Some(state_key) = &pdu.state_key
            && let Some(prev_id) =
                self.state_event_id(&pdu.room_id, &pdu.state_event_type(), state_key)?
            && prev_id != pdu.event_id
            && let Some(prev) = self.get_pdu(&prev_id)?
        {
            let mut unsigned = Map::new();
            unsigned.insert("prev_content".into(), prev.content_value());
            unsigned.insert("prev_sender".into(), Value::String(prev.sender.to_string()));
            unsigned.insert("replaces_state".into(), Value::String(prev_id.to_string()));
            pdu.unsigned = Some(unsigned);
        }
        Ok(())
    }

    /// Writes an event and its timeline, relation, transaction, redaction
    /// and archive indexes. The room's state and metadata are the caller's.
    pub(super) fn index_pdu(
        &self,
        batch: &mut Batch,
        pdu: &Pdu,
        count: u64,
        version: &RoomVersionId,
    ) -> Result<()> {
        let room = pdu.room_id.as_bytes();
        let event_id = pdu.event_id.as_bytes();
        batch.put_json(&self.eventid_pdu, event_id, pdu);
        batch.put(
            &self.eventid_position,
            event_id,
            encode_position(&pdu.room_id, count),
        );
        batch.put(
            &self.roomid_count_eventid,
            key::with_u64(room.to_vec(), count),
            event_id,
        );
        self.raise_newest(&pdu.room_id, count, super::timeline::bumps(pdu));
        if let Some((device, txn)) = &pdu.transaction {
            batch.put(
                &self.txn_eventid,
                key::key([pdu.sender.as_bytes(), device.as_bytes(), txn.as_bytes()]),
                event_id,
            );
        }

        if let Some((rel_type, target)) = pdu.relation() {
            let value = serde_json::json!({ "rel_type": rel_type, "event_id": pdu.event_id });
            batch.put_json(
                &self.targetid_count_relation,
                key::with_u64(target.as_bytes().to_vec(), count),
                &value,
            );
        }

        if let Some(target_id) = pdu.redacts_id()
            && pdu.state_key.is_none()
            && let Some(target) = self.get_pdu(&target_id)?
            && target.room_id == pdu.room_id
        {
            let rules = room_rules(version)?;
            let redacted = redacted_copy(&target, pdu, &rules)?;
            if !self.eventid_originalpdu.contains(target_id.as_bytes())? {
                batch.put_json(&self.eventid_originalpdu, target_id.as_bytes(), &target);
            }
            batch.put_json(&self.eventid_pdu, target_id.as_bytes(), &redacted);
        }

        self.capture_batch(batch, &pdu.event_id, count);
        Ok(())
    }

    /// Why a redaction may not take effect, or `None` when it may (or
    /// `pdu` is no redaction). The auth rules of room versions 3 and later
    /// accept every redaction and leave this to the servers that apply
    /// them: a redaction applies when its sender has the room's `redact`
    /// power level, or redacts an event of its own server's users (that
    /// server vouches for them; this server checks its own users here, so
    /// for them only their own events). Checked against the current state.
    pub(super) fn redaction_refusal(&self, pdu: &Pdu) -> Result<Option<String>> {
        if pdu.kind != TimelineEventType::RoomRedaction {
            return Ok(None);
        }
        if pdu.state_key.is_some() {
            return Ok(Some("A redaction cannot be a state event.".into()));
        }
        if let Some(target) = pdu.redacts_id()
            && let Some(target) = self.get_pdu(&target)?
        {
            let vouched = pdu.sender.server_name() != self.server_name
                && target.sender.server_name() == pdu.sender.server_name();
            if target.sender == pdu.sender || vouched {
                return Ok(None);
            }
        }
        let levels = self.power_levels(&pdu.room_id)?;
        Ok((!levels.user_can_redact_event_of_other(&pdu.sender))
            .then(|| "Only the sender and moderators may redact an event.".into()))
    }

    /// The archive's outbox entry, in the event's own atomic batch, so an
    /// acknowledged event is never missing from the archive. It names the
    /// event, stored in the same batch, rather than copying it: a copy would
    /// double the bytes every send adds to the memtables (and so the
    /// flushes, whose fsyncs the clients' own fsyncs queue behind). [`Rooms::captured`]
    /// reads the event as created, its original if a redaction came first.
    ///
    /// The bridges' outbox entry goes in the same batch, while a bridge is
    /// installed: a bridge is sent every event it is interested in.
    pub(super) fn capture_batch(&self, batch: &mut Batch, event_id: &EventId, count: u64) {
        if self.capture {
            batch.put(
                &self.count_vaultcapture,
                count.to_be_bytes(),
                event_id.as_bytes(),
            );
        }
        if self.bridged {
            batch.put(
                &self.count_appservice,
                count.to_be_bytes(),
                event_id.as_bytes(),
            );
        }
    }

    /// [`Rooms::capture_batch`] for a peer's event that failed the checks
    /// against the room's current state (soft-failed: in the room's graph,
    /// never shown to anyone): the vault keeps it marked as such, with why.
    pub(super) fn capture_soft_failed(
        &self,
        batch: &mut Batch,
        event_id: &EventId,
        count: u64,
        why: &str,
    ) {
        if self.capture {
            let entry = serde_json::json!([super::capture::SOFT_FAILED, why, event_id]);
            batch.put(
                &self.count_vaultcapture,
                count.to_be_bytes(),
                entry.to_string().as_bytes(),
            );
        }
    }
}

impl Rooms {
    /// Makes `pdu` the current value of its piece of state at `count`:
    /// the state indexes, membership, and device-list tracking.
    pub(super) fn index_current_state(&self, batch: &mut Batch, pdu: &Pdu, count: u64) {
        let Some(state_key) = &pdu.state_key else {
            return;
        };
        let room = pdu.room_id.as_bytes();
        let event_id = pdu.event_id.as_bytes();

        let kind = pdu.kind.to_string();
        let state = key::key([room, kind.as_bytes(), state_key.as_bytes()]);
        batch.put(&self.roomid_statekey_eventid, &state, event_id);
        batch.put(
            &self.roomid_statekey_count_eventid,
            key::with_u64(state, count),
            event_id,
        );

        if pdu.kind == TimelineEventType::RoomMember
            && let Ok(user_id) = UserId::parse(state_key.as_str())
        {
            let membership = membership_of(pdu);
            let record = MembershipRecord {
                membership: membership.clone(),
                count,
                event_id: pdu.event_id.clone(),
                sender: pdu.sender.clone(),
                forgotten: false,
                invite_state: None,
            };
            batch.put_json(
                &self.userid_roomid_membership,
                key::key([user_id.as_bytes(), room]),
                &record,
            );
            self.raise_membership_changed(&user_id, count);
            batch.put_json(
                &self.roomid_userid_membership,
                key::key([room, user_id.as_bytes()]),
                &record,
            );
            if matches!(
                membership,
                MembershipState::Join | MembershipState::Leave | MembershipState::Ban
            ) {
                // Room members track each other's devices; a change in
                // who shares a room is a device-list change, for the
                // members of that room.
                self.key_changes
                    .note(batch, count, &user_id, Some(&pdu.room_id));
            }
        }
    }
}

/// `target` with only the keys its room version keeps on redaction.
pub(super) fn stripped_copy(target: &Pdu, rules: &RoomVersionRules) -> Result<Pdu> {
    let json: CanonicalJsonObject = serde_json::from_value(serde_json::to_value(target)?)?;
    let mut redacted = redact(json, &rules.redaction, None).map_err(Error::internal)?;
    redacted.insert(
        "event_id".into(),
        CanonicalJsonValue::String(target.event_id.to_string()),
    );
    Ok(serde_json::from_str(&serde_json::to_string(&redacted)?)?)
}

fn redacted_copy(target: &Pdu, redaction: &Pdu, rules: &RoomVersionRules) -> Result<Pdu> {
    let mut pdu = stripped_copy(target, rules)?;
    let mut unsigned = Map::new();
    unsigned.insert(
        "redacted_because".into(),
        redaction.to_client_value(None, true),
    );
    pdu.unsigned = Some(unsigned);
    pdu.transaction = target.transaction.clone();
    Ok(pdu)
}

/// The membership a member event sets; one without is a custom, empty one.
pub(super) fn membership_of(pdu: &Pdu) -> MembershipState {
    #[derive(serde::Deserialize)]
    struct Membership {
        membership: MembershipState,
    }
    serde_json::from_str::<Membership>(pdu.content.get())
        .map_or_else(|_| MembershipState::from(""), |m| m.membership)
}

pub fn room_rules(version: &RoomVersionId) -> Result<RoomVersionRules> {
    version.rules().ok_or_else(|| {
        Error::unsupported_room_version(format!("Room version {version} is not supported."))
    })
}

/// `object` as canonical JSON within the spec's size limit.
fn canonical(object: Map<String, Value>) -> Result<CanonicalJsonObject> {
    let object: CanonicalJsonObject = try_from_json_map(object)
        .map_err(|e| Error::bad_json(format!("Event is not canonical JSON: {e}")))?;
    if serde_json::to_vec(&object)?.len() > MAX_PDU_BYTES {
        return Err(Error::too_large("Events may be at most 65536 bytes."));
    }
    Ok(object)
}

fn create_event_version(content: &Value) -> Result<RoomVersionId> {
    let version = content
        .get("room_version")
        .and_then(Value::as_str)
        .unwrap_or("1");
    RoomVersionId::try_from(version).map_err(|_| Error::bad_json("Invalid room_version."))
}

pub(super) fn encode_position(room_id: &RoomId, count: u64) -> Vec<u8> {
    let mut out = count.to_be_bytes().to_vec();
    out.extend_from_slice(room_id.as_bytes());
    out
}

pub(super) fn decode_position(bytes: &[u8]) -> Option<(ruma::OwnedRoomId, u64)> {
    if bytes.len() < 9 {
        return None;
    }
    let count = u64::from_be_bytes(bytes[..8].try_into().ok()?);
    let room = RoomId::parse(std::str::from_utf8(&bytes[8..]).ok()?).ok()?;
    Some((room, count))
}

/// Shorthand for the key of a piece of state.
pub(super) fn state_key_bytes(room_id: &RoomId, kind: &StateEventType, state_key: &str) -> Vec<u8> {
    key::key([
        room_id.as_bytes(),
        kind.to_string().as_bytes(),
        state_key.as_bytes(),
    ])
}
