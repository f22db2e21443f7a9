//! Records procedures: roles, room classification, exclusion of private and
//! party-political items (request, four-eyes decision, crypto-shredding) and
//! legal holds. Every step is a procedure record in the Merkle log.

use std::{fmt, str::FromStr};

use archipel_store::key;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::{
    Error, Refusal, Result, Vault, columns as cf, media_path,
    record::{Entry, EventEntry, MediaCopy},
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// A minister, state secretary or secretary-general: their business
    /// records are kept permanently.
    Capstone,
    Official,
    External,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Classification {
    Business,
    Private,
    PartyPolitical,
}

macro_rules! named {
    ($type:ty, $($variant:ident = $name:literal),+) => {
        impl FromStr for $type {
            type Err = String;
            fn from_str(s: &str) -> std::result::Result<Self, String> {
                match s {
                    $($name => Ok(Self::$variant),)+
                    _ => Err(format!("`{s}`: expected one of {}", [$($name),+].join(", "))),
                }
            }
        }
        impl fmt::Display for $type {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(match self { $(Self::$variant => $name,)+ })
            }
        }
    };
}
named!(
    Role,
    Capstone = "capstone",
    Official = "official",
    External = "external"
);
named!(
    Classification,
    Business = "business",
    Private = "private",
    PartyPolitical = "party-political"
);

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExclusionRequest {
    pub reference: String,
    /// The records (sequence numbers) to exclude, and their event IDs.
    pub records: Vec<u64>,
    pub events: Vec<String>,
    pub requester: String,
    pub reason: String,
    /// A Woo ground code, e.g. `5.1.2e` (privacy).
    pub ground: Option<String>,
    pub requested_ts: u64,
    pub decision: Option<Decision>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub approved: bool,
    pub by: String,
    pub note: Option<String>,
    pub decided_ts: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HoldScope {
    Room(String),
    User(String),
}

impl fmt::Display for HoldScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Room(room) => write!(f, "room {room}"),
            Self::User(user) => write!(f, "user {user}"),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hold {
    pub reference: String,
    pub scope: HoldScope,
    pub reason: String,
    pub placed_by: String,
    pub placed_ts: u64,
    pub released_by: Option<String>,
    pub released_ts: Option<u64>,
}

impl Hold {
    pub fn active(&self) -> bool {
        self.released_ts.is_none()
    }

    pub(crate) fn covers(&self, room: &str, sender: &str) -> bool {
        self.active()
            && match &self.scope {
                HoldScope::Room(r) => r == room,
                HoldScope::User(u) => u == sender,
            }
    }
}

/// An event erased by a decision, as a backup's ledger lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErasedEvent {
    pub event_id: String,
    /// The decision's reference (EX-..., DL-...).
    pub reference: String,
}

/// An erased event whose copies outside the vault must be purged.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingPurge {
    pub event_id: String,
    /// The decision that erased it.
    pub reference: String,
}

/// Event types that may be excluded: messages, not the state a room runs on.
fn excludable(event_type: &str) -> bool {
    !event_type.starts_with("m.room.")
        || event_type == "m.room.message"
        || event_type == "m.room.encrypted"
}

const META_NEXT_REQUEST: &[u8] = b"next_request";
const META_NEXT_HOLD: &[u8] = b"next_hold";

/// An administrative action as the vault's log records it.
pub struct AdminAction<'a> {
    /// Who acted: a local account (`root (uid 0)`) or a signed-in person.
    pub actor: &'a str,
    /// Where from: the command line, the admin socket, a console.
    pub origin: &'a str,
    /// What was done: `user create`, `registration-token create`, ...
    pub action: &'a str,
    /// To what: a user ID, a token's use limit, ...
    pub object: &'a str,
    /// Why it failed, if it did.
    pub error: Option<&'a str>,
}

impl Vault {
    fn tree(&self, name: &'static str) -> Result<archipel_store::Tree> {
        Ok(self.store.tree(name)?)
    }

    pub fn role(&self, user: &str) -> Result<Role> {
        Ok(self
            .tree(cf::USERID_ROLE)?
            .get_json(user.as_bytes())?
            .unwrap_or(Role::Official))
    }

    pub fn classification(&self, room: &str) -> Result<Classification> {
        Ok(self
            .tree(cf::ROOMID_CLASSIFICATION)?
            .get_json(room.as_bytes())?
            .unwrap_or(Classification::Business))
    }

    /// Every room classified, with its classification (a room not listed
    /// is business).
    pub fn classified_rooms(&self) -> Result<Vec<(String, Classification)>> {
        let mut rooms = Vec::new();
        for row in self.tree(cf::ROOMID_CLASSIFICATION)?.iter() {
            let (room, value) = row?;
            let classification = serde_json::from_slice(&value)
                .map_err(|e| Error::Corrupt(format!("a room's classification: {e}")))?;
            rooms.push((String::from_utf8_lossy(&room).into_owned(), classification));
        }
        Ok(rooms)
    }

    pub fn is_records_manager(&self, user: &str) -> Result<bool> {
        Ok(self
            .tree(cf::USERID_RECORDSMANAGER)?
            .contains(user.as_bytes())?)
    }

    pub fn records_managers(&self) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for row in self.tree(cf::USERID_RECORDSMANAGER)?.iter() {
            out.push(String::from_utf8_lossy(&row?.0).into_owned());
        }
        Ok(out)
    }

    pub(crate) fn require_records_manager(&self, actor: &str) -> Result<()> {
        if self.is_records_manager(actor)? {
            Ok(())
        } else {
            Err(Refusal::NotRecordsManager {
                actor: actor.to_owned(),
            }
            .into())
        }
    }

    /// Makes `user` a records manager, or stops them being one. `actor` is
    /// whoever administers the node (`operator` from its console).
    pub fn set_records_manager(&self, user: &str, manager: bool, actor: &str) -> Result<()> {
        let tree = self.tree(cf::USERID_RECORDSMANAGER)?;
        self.with_steps(|steps| {
            if manager {
                steps.batch.put(&tree, user.as_bytes(), b"");
            } else {
                steps.batch.delete(&tree, user.as_bytes());
            }
            let action = if manager {
                "add_records_manager"
            } else {
                "remove_records_manager"
            };
            steps.procedure(action, actor, user, &json!({}));
            Ok(())
        })
    }

    /// Lets `delegate` request exclusions on `user`'s behalf.
    pub fn add_delegate(&self, user: &str, delegate: &str, actor: &str) -> Result<()> {
        let tree = self.tree(cf::USERID_DELEGATE)?;
        self.with_steps(|steps| {
            steps
                .batch
                .put(&tree, key::key([user.as_bytes(), delegate.as_bytes()]), b"");
            steps.procedure(
                "add_delegate",
                actor,
                user,
                &json!({ "delegate": delegate }),
            );
            Ok(())
        })
    }

    fn is_delegate(&self, user: &str, delegate: &str) -> Result<bool> {
        Ok(self
            .tree(cf::USERID_DELEGATE)?
            .contains(key::key([user.as_bytes(), delegate.as_bytes()]))?)
    }

    pub fn set_role(&self, user: &str, role: Role, actor: &str) -> Result<()> {
        self.require_records_manager(actor)?;
        let tree = self.tree(cf::USERID_ROLE)?;
        self.with_steps(|steps| {
            steps.batch.put_json(&tree, user.as_bytes(), &role);
            steps.procedure("set_role", actor, user, &json!({ "role": role }));
            Ok(())
        })
    }

    pub fn classify_room(&self, room: &str, class: Classification, actor: &str) -> Result<()> {
        self.require_records_manager(actor)?;
        let tree = self.tree(cf::ROOMID_CLASSIFICATION)?;
        self.with_steps(|steps| {
            steps.batch.put_json(&tree, room.as_bytes(), &class);
            steps.procedure(
                "classify_room",
                actor,
                room,
                &json!({ "classification": class }),
            );
            Ok(())
        })
    }

    /// Records a request to exclude events from the archive as private or
    /// party-political. The requester must be their sender or a delegate.
    /// The records that edit record `seq` (`m.replace` by the same sender,
    /// later in the same room) and are not erased yet.
    fn edits_of(&self, seq: u64, original: &EventEntry) -> Result<Vec<u64>> {
        let mut edits = Vec::new();
        for later in self.log.room_records(&original.room_id, self.log.size()?)? {
            if later <= seq || self.log.erasure_of(later)?.is_some() {
                continue;
            }
            let record = self.log.record(later)?;
            let Some(event) = record.event() else {
                continue;
            };
            if event.sender != original.sender || !excludable(&event.event_type) {
                continue;
            }
            let content = self.open_sealed(later, &event.sealed)?;
            let relation = &content["content"]["m.relates_to"];
            if relation["rel_type"] == "m.replace"
                && relation["event_id"] == original.event_id.as_str()
            {
                edits.push(later);
            }
        }
        Ok(edits)
    }

    pub fn request_exclusion(
        &self,
        events: &[String],
        requester: &str,
        reason: &str,
        ground: Option<&str>,
    ) -> Result<ExclusionRequest> {
        if events.is_empty() {
            return Err(Refusal::NothingToExclude.into());
        }
        if reason.trim().is_empty() {
            return Err(Refusal::ExclusionWithoutReason.into());
        }
        let mut records = Vec::new();
        for event_id in events {
            let seq = self
                .log
                .seq_of_event(event_id)?
                .ok_or_else(|| Error::NotFound(format!("event {event_id} is not in the vault")))?;
            let record = self.log.record(seq)?;
            let Some(event) = record.event() else {
                return Err(Error::Corrupt(format!("record {seq} is not an event")));
            };
            if !excludable(&event.event_type) {
                return Err(Refusal::StateNotExcludable {
                    event_id: event_id.to_string(),
                    event_type: event.event_type.clone(),
                }
                .into());
            }
            let may = |who: &str| -> Result<bool> {
                Ok(who == requester || self.is_delegate(who, requester)?)
            };
            let owner = self.import_owner(&event.room_id)?;
            if !may(&event.sender)? && !owner.as_deref().map(may).transpose()?.unwrap_or(false) {
                return Err(Refusal::NotSenderOrDelegate {
                    requester: requester.to_owned(),
                    event_id: event_id.to_string(),
                    sender: event.sender.clone(),
                }
                .into());
            }
            if let Some(reference) = self.log.erasure_of(seq)? {
                return Err(Refusal::AlreadyErased {
                    event_id: event_id.to_string(),
                    reference,
                }
                .into());
            }
            records.push(seq);
            // An edit repeats the text it replaces: excluding a message
            // excludes its edits too.
            for edit in self.edits_of(seq, event)? {
                if !records.contains(&edit) {
                    records.push(edit);
                }
            }
        }
        let tree = self.tree(cf::REQUESTID_REQUEST)?;
        self.with_steps(|steps| {
            let reference = steps.take_reference(META_NEXT_REQUEST, "EX")?;
            let request = ExclusionRequest {
                reference: reference.clone(),
                records,
                events: events.to_vec(),
                requester: requester.to_owned(),
                reason: reason.to_owned(),
                ground: ground.map(str::to_owned),
                requested_ts: steps.now(),
                decision: None,
            };
            steps.batch.put_json(&tree, reference.as_bytes(), &request);
            steps.procedure(
                "request_exclusion",
                requester,
                &reference,
                &json!({
                    "records": request.records,
                    "events": request.events,
                    "reason": reason,
                    "ground": ground,
                }),
            );
            Ok(request)
        })
    }

    pub fn request(&self, reference: &str) -> Result<ExclusionRequest> {
        self.tree(cf::REQUESTID_REQUEST)?
            .get_json(reference.as_bytes())?
            .ok_or_else(|| Error::NotFound(format!("no exclusion request {reference}")))
    }

    pub fn requests(&self) -> Result<Vec<ExclusionRequest>> {
        let tree = self.tree(cf::REQUESTID_REQUEST)?;
        let mut out = Vec::new();
        for row in tree.iter() {
            let (_, v) = row?;
            out.push(
                serde_json::from_slice(&v)
                    .map_err(|e| Error::Corrupt(format!("an exclusion request: {e}")))?,
            );
        }
        Ok(out)
    }

    /// Decides on a request. Four eyes: the decider is a records manager who
    /// is neither the requester nor the sender. An approval erases the
    /// records' content (their data keys and media copies) unless a legal
    /// hold covers one of them, and queues the purge of the homeserver's
    /// copies ([`Vault::pending_purges`]).
    pub fn decide(
        &self,
        reference: &str,
        approve: bool,
        decider: &str,
        note: Option<&str>,
    ) -> Result<ExclusionRequest> {
        let mut request = self.request(reference)?;
        if let Some(decision) = &request.decision {
            return Err(Refusal::AlreadyDecided {
                reference: reference.to_owned(),
                approved: decision.approved,
                by: decision.by.clone(),
            }
            .into());
        }
        self.require_records_manager(decider)?;
        if decider == request.requester {
            return Err(Refusal::RequesterDecides {
                decider: decider.to_owned(),
                reference: reference.to_owned(),
            }
            .into());
        }
        let holds = if approve { self.holds()? } else { Vec::new() };
        let mut erased = Vec::new();
        for &seq in &request.records {
            let record = self.log.record(seq)?;
            let Some(event) = record.event() else {
                continue;
            };
            if decider == event.sender {
                return Err(Refusal::SenderDecides {
                    decider: decider.to_owned(),
                    event_id: event.event_id.clone(),
                }
                .into());
            }
            if self.import_owner(&event.room_id)?.as_deref() == Some(decider) {
                return Err(Refusal::OwnerDecides {
                    decider: decider.to_owned(),
                    event_id: event.event_id.clone(),
                }
                .into());
            }
            if approve {
                if let Some(hold) = holds
                    .iter()
                    .find(|h| h.covers(&event.room_id, &event.sender))
                {
                    return Err(Refusal::Held {
                        hold: hold.reference.clone(),
                        scope: hold.scope.to_string(),
                        event_id: event.event_id.clone(),
                    }
                    .into());
                }
                erased.push((seq, event.clone()));
            }
        }
        let requests = self.tree(cf::REQUESTID_REQUEST)?;
        self.with_steps(|steps| {
            request.decision = Some(Decision {
                approved: approve,
                by: decider.to_owned(),
                note: note.map(str::to_owned),
                decided_ts: steps.now(),
            });
            steps
                .batch
                .put_json(&requests, reference.as_bytes(), &request);
            steps.procedure(
                "decide_exclusion",
                decider,
                reference,
                &json!({ "approved": approve, "note": note }),
            );
            for (seq, event) in &erased {
                steps.erase(*seq, event, reference)?;
            }
            Ok(request)
        })
    }

    /// Deletes the sealed media copies of an erased record (its key is gone
    /// already; this only frees the space).
    pub(crate) fn remove_media_copies(&self, seq: u64, media: &[MediaCopy]) -> Result<()> {
        for copy in media.iter().filter(|c| c.sha256.is_none()) {
            let path = media_path(&self.media_dir, seq, copy.part);
            if let Err(e) = std::fs::remove_file(&path)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                return Err(Error::io(format!("removing {}", path.display()), e));
            }
        }
        Ok(())
    }

    /// Every event erased by a decision: the ledger a backup carries, so
    /// that restoring an older backup can erase again what was erased
    /// after it ([`Vault::reapply_erasures`]). Event IDs and references
    /// only, nothing of the content.
    pub fn erasure_ledger(&self) -> Result<Vec<ErasedEvent>> {
        let mut out = Vec::new();
        for row in self.log.erasures.iter() {
            let (k, v) = row?;
            let Some(seq) = archipel_store::key::parse_u64(&k) else {
                continue;
            };
            let erasure: crate::log::ErasureRef = serde_json::from_slice(&v)
                .map_err(|e| Error::Corrupt(format!("the erasure of record {seq}: {e}")))?;
            if let Entry::Event(event) = self.log.record(seq)?.entry {
                out.push(ErasedEvent {
                    event_id: event.event_id,
                    reference: erasure.reference,
                });
            }
        }
        Ok(out)
    }

    /// Erases again, after a restore of an older backup, every event of
    /// `ledger` (a newer backup's [`Vault::erasure_ledger`]) this vault
    /// still holds: by the same decisions, each a `reapply_erasure` step by
    /// `actor`, the homeserver's copies queued for purging as in the first
    /// erasure. Returns how many it erased.
    pub fn reapply_erasures(&self, ledger: &[ErasedEvent], actor: &str) -> Result<usize> {
        let mut erase = Vec::new();
        for erased in ledger {
            let Some(seq) = self.log.seq_of_event(&erased.event_id)? else {
                continue;
            };
            if self.log.erasure_of(seq)?.is_some() {
                continue;
            }
            if let Entry::Event(event) = self.log.record(seq)?.entry {
                erase.push((seq, event, erased.reference.clone()));
            }
        }
        if erase.is_empty() {
            return Ok(0);
        }
        self.with_steps(|steps| {
            for (seq, event, reference) in &erase {
                steps.procedure(
                    "reapply_erasure",
                    actor,
                    reference,
                    &json!({ "event_id": event.event_id }),
                );
                steps.erase(*seq, event, reference)?;
            }
            Ok(erase.len())
        })
    }

    /// Erased events whose homeserver copies still await purging.
    pub fn pending_purges(&self) -> Result<Vec<PendingPurge>> {
        let mut out = Vec::new();
        for row in self.log.pending_purges.iter() {
            let (_, v) = row?;
            out.push(
                serde_json::from_slice(&v)
                    .map_err(|e| Error::Corrupt(format!("a pending purge: {e}")))?,
            );
        }
        Ok(out)
    }

    /// Marks a purge done (the homeserver's copies are gone).
    pub fn purge_done(&self, event_id: &str) -> Result<()> {
        let mut batch = archipel_store::Batch::new();
        batch.delete(&self.log.pending_purges, event_id.as_bytes());
        Ok(self.store.commit(batch)?)
    }

    pub fn place_hold(&self, scope: HoldScope, reason: &str, actor: &str) -> Result<Hold> {
        self.require_records_manager(actor)?;
        if reason.trim().is_empty() {
            return Err(Refusal::HoldWithoutReason.into());
        }
        let tree = self.tree(cf::HOLDID_HOLD)?;
        self.with_steps(|steps| {
            let reference = steps.take_reference(META_NEXT_HOLD, "LH")?;
            let hold = Hold {
                reference: reference.clone(),
                scope: scope.clone(),
                reason: reason.to_owned(),
                placed_by: actor.to_owned(),
                placed_ts: steps.now(),
                released_by: None,
                released_ts: None,
            };
            steps.batch.put_json(&tree, reference.as_bytes(), &hold);
            steps.procedure(
                "place_hold",
                actor,
                &reference,
                &json!({ "scope": scope, "reason": reason }),
            );
            Ok(hold)
        })
    }

    pub fn release_hold(&self, reference: &str, actor: &str) -> Result<Hold> {
        self.require_records_manager(actor)?;
        let tree = self.tree(cf::HOLDID_HOLD)?;
        let mut hold: Hold = tree
            .get_json(reference.as_bytes())?
            .ok_or_else(|| Error::NotFound(format!("no legal hold {reference}")))?;
        if !hold.active() {
            return Err(Refusal::AlreadyReleased {
                reference: reference.to_owned(),
            }
            .into());
        }
        self.with_steps(|steps| {
            hold.released_by = Some(actor.to_owned());
            hold.released_ts = Some(steps.now());
            steps.batch.put_json(&tree, reference.as_bytes(), &hold);
            steps.procedure("release_hold", actor, reference, &json!({}));
            Ok(hold)
        })
    }

    pub fn holds(&self) -> Result<Vec<Hold>> {
        let mut out = Vec::new();
        for row in self.tree(cf::HOLDID_HOLD)?.iter() {
            let (_, v) = row?;
            out.push(
                serde_json::from_slice(&v)
                    .map_err(|e| Error::Corrupt(format!("a legal hold: {e}")))?,
            );
        }
        Ok(out)
    }

    /// Records an administrative action carried out on the node (a user
    /// created or deactivated, a password set, a registration token
    /// issued, administrators provisioned), whether it succeeded or not.
    /// Part of the log, so the trail is tamper-evident like every other
    /// step. Nothing in it is a secret: the caller names the action and
    /// its object, never a password or token.
    pub fn record_admin_action(&self, action: &AdminAction<'_>) -> Result<()> {
        self.with_steps(|steps| {
            let mut details = json!({
                "action": action.action,
                "object": action.object,
                "origin": action.origin,
                "outcome": if action.error.is_some() { "failed" } else { "done" },
            });
            if let Some(error) = action.error {
                details["error"] = json!(error);
            }
            let subject = format!("{} {}", action.action, action.object);
            steps.procedure("admin_command", action.actor, &subject, &details);
            Ok(())
        })
    }

    /// The procedure steps in the log, oldest first, with their details
    /// opened (needs the vault key).
    pub fn procedure_steps(&self) -> Result<Vec<Value>> {
        let mut out = Vec::new();
        for row in self.log.step_index.iter() {
            out.push(self.step(&row?.0)?);
        }
        Ok(out)
    }

    /// The newest `limit` procedure steps, newest first: what the audit
    /// page shows, read from the index without walking the log.
    pub fn newest_procedure_steps(&self, limit: usize) -> Result<Vec<Value>> {
        let mut out = Vec::new();
        for row in self
            .log
            .step_index
            .scan_rev_from(u64::MAX.to_be_bytes().to_vec(), Vec::new())
            .take(limit)
        {
            out.push(self.step(&row?.0)?);
        }
        Ok(out)
    }

    /// One indexed step, by its key (the sequence number).
    fn step(&self, key: &[u8]) -> Result<Value> {
        let seq = archipel_store::key::parse_u64(key)
            .ok_or_else(|| Error::Corrupt("a step index key is not a sequence number".into()))?;
        let record = self.log.record(seq)?;
        Ok(match &record.entry {
            Entry::Procedure(step) => json!({
                "seq": seq,
                "ts": record.captured_ts,
                "action": step.action,
                "actor": step.actor,
                "subject": step.subject,
                "details": self.open_sealed(seq, &step.sealed)?,
            }),
            Entry::Erasure(erasure) => json!({
                "seq": seq,
                "ts": record.captured_ts,
                "action": "erasure",
                "subject": erasure.reference,
                "details": { "erased_seq": erasure.erased_seq },
            }),
            Entry::Event(_) | Entry::Decryption(_) | Entry::SessionKey(_) => {
                return Err(Error::Corrupt(format!(
                    "the step index names record {seq}, which is no step"
                )));
            }
        })
    }
}
