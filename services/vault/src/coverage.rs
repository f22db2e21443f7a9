//! Where the archive member is not: the rooms it was removed from.
//!
//! The archive member holds the room keys of encrypted rooms because it is
//! a member. Removed (kicked, banned, or leaving by someone else's doing),
//! it receives no new keys, so what is said there after is ciphertext only.
//! Capture sees that membership event like any other; the vault then
//! appends a step `archive_member_removed` (who, which room, from when) and
//! keeps the room as an open gap until the member's join is captured
//! (`archive_member_returned`). `vault status` and `vault verify` show
//! each open gap as an alarm.

use std::collections::HashMap;

use archipel_store::Batch;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::{Result, Step, Vault, merkle::Frontier, record::EventEntry};

/// A room the archive member was removed from and has not come back to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoverageGap {
    pub room_id: String,
    /// Who removed it; for a refused join, the local user it followed.
    pub by: String,
    /// `leave` or `ban`; `refused` for a join the room did not allow.
    pub membership: String,
    /// The membership event, and when its sender's server says it was sent.
    pub event_id: String,
    pub since_ts: u64,
    /// The step that opened the gap.
    pub record: u64,
}

impl Vault {
    /// Tells the vault which user is the node's archive member, so that
    /// capture notices when it is removed from a room. Set once.
    pub fn watch_archive_member(&self, user_id: &str) {
        let _ = self.archive_member.set(user_id.to_owned());
    }

    /// The rooms the archive member was removed from, by room.
    pub fn coverage_gaps(&self) -> Result<Vec<CoverageGap>> {
        let mut gaps = Vec::new();
        for row in self.log().coverage_gaps.iter() {
            let (_, value) = row?;
            gaps.push(
                serde_json::from_slice(&value)
                    .map_err(|e| crate::Error::Corrupt(format!("a coverage gap: {e}")))?,
            );
        }
        Ok(gaps)
    }

    /// The archive member could not join `room_id` after `by`, a local
    /// user, joined it (it may not be invited there, it is banned, a peer
    /// refused it): appends a step `archive_member_refused` and opens a gap
    /// for the room, unless one is open already. Its join, when it comes,
    /// closes the gap as after a removal.
    pub fn note_refused_join(&self, room_id: &str, by: &str, reason: &str) -> Result<()> {
        let gaps = self.log().coverage_gaps.clone();
        if gaps.contains(room_id.as_bytes())? {
            return Ok(());
        }
        self.with_steps(|steps| {
            let record = steps.procedure(
                "archive_member_refused",
                by,
                room_id,
                &json!({ "reason": reason }),
            );
            let gap = CoverageGap {
                room_id: room_id.to_owned(),
                by: by.to_owned(),
                membership: "refused".to_owned(),
                event_id: String::new(),
                since_ts: steps.now(),
                record,
            };
            steps.batch.put_json(&gaps, room_id.as_bytes(), &gap);
            Ok(())
        })?;
        tracing::warn!(room = %room_id, %by, %reason, "the archive member could not join a room");
        Ok(())
    }

    /// Notes a change of the archive member's membership in `entry` (an
    /// event being captured) in the same batch. `changed` holds the rooms
    /// whose gap this batch opened (`true`) or closed (`false`) so far.
    pub(crate) fn note_coverage(
        &self,
        batch: &mut Batch,
        frontier: &mut Frontier,
        now: u64,
        entry: &EventEntry,
        event: &str,
        changed: &mut HashMap<String, bool>,
    ) -> Result<()> {
        let Some(archive) = self.archive_member.get() else {
            return Ok(());
        };
        if entry.event_type != "m.room.member" || !event.contains(archive.as_str()) {
            return Ok(());
        }
        let event: Value = serde_json::from_str(event).unwrap_or_default();
        if event["state_key"] != archive.as_str() {
            return Ok(());
        }
        let membership = event["content"]["membership"].as_str().unwrap_or_default();
        let gaps = &self.log().coverage_gaps;
        let room = entry.room_id.as_bytes();
        let open = match changed.get(&entry.room_id) {
            Some(&open) => open,
            None => gaps.contains(room)?,
        };
        match membership {
            "leave" | "ban" if !open => {
                let details = json!({
                    "event_id": entry.event_id,
                    "membership": membership,
                    "reason": event["content"]["reason"],
                });
                let record = self.append_step(
                    batch,
                    frontier,
                    now,
                    Step {
                        action: "archive_member_removed",
                        actor: &entry.sender,
                        subject: &entry.room_id,
                        details: &details,
                    },
                );
                let gap = CoverageGap {
                    room_id: entry.room_id.clone(),
                    by: entry.sender.clone(),
                    membership: membership.to_owned(),
                    event_id: entry.event_id.clone(),
                    since_ts: entry.origin_server_ts,
                    record,
                };
                batch.put_json(gaps, room, &gap);
                changed.insert(entry.room_id.clone(), true);
                tracing::warn!(room = %entry.room_id, by = %entry.sender, "the archive member was removed from a room");
            }
            "join" if open => {
                let details = json!({ "event_id": entry.event_id });
                self.append_step(
                    batch,
                    frontier,
                    now,
                    Step {
                        action: "archive_member_returned",
                        actor: &entry.sender,
                        subject: &entry.room_id,
                        details: &details,
                    },
                );
                batch.delete(gaps, room);
                changed.insert(entry.room_id.clone(), false);
            }
            _ => {}
        }
        Ok(())
    }
}
