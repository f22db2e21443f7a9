//! The archive outbox: every event this server persists is written to
//! `count_vaultcapture` in the event's own batch. The vault drains it in
//! stream order and the appliance discards what the vault holds.

use std::collections::BTreeMap;

use ruma::{EventId, MxcUri};
use serde_json::{
    Map, Value,
    value::{RawValue, to_raw_value},
};

use super::{
    Pdu, Rooms,
    append::{room_rules, stripped_copy},
};
use crate::{Error, Result};

/// An event waiting in the outbox.
#[derive(Clone, Debug)]
pub struct CapturedEvent {
    /// The event's stream position (the outbox key).
    pub position: u64,
    /// The event as created (federation form with its `event_id`), before
    /// any redaction: JSON text, handed to the vault as it is.
    pub event: Box<RawValue>,
    /// For a peer's event that was soft-failed (kept out of the timeline,
    /// shown to nobody): why.
    pub soft_failed: Option<String>,
}

/// The first element of a soft-failed event's outbox entry:
/// `["soft-failed", why, event ID]`.
pub(super) const SOFT_FAILED: &str = "soft-failed";

impl Rooms {
    /// Outbox entries after `after` and at most `upto`, oldest first.
    ///
    /// `upto` must be a position below which every commit has finished
    /// (`Counter::visible`): commits land out of order, and a reader that ran
    /// ahead of a slow one would skip its event for good.
    pub fn captured(&self, after: u64, upto: u64, limit: usize) -> Result<Vec<CapturedEvent>> {
        let mut out = Vec::new();
        for row in self
            .count_vaultcapture
            .scan_from((after + 1).to_be_bytes().to_vec(), Vec::new())
        {
            let (k, v) = row?;
            let Some(position) = archipel_store::key::parse_u64(&k) else {
                continue;
            };
            if position > upto || out.len() >= limit {
                break;
            }
            let (event, soft_failed) = self.outbox_event(&v)?;
            out.push(CapturedEvent {
                position,
                event,
                soft_failed,
            });
        }
        Ok(out)
    }

    /// How many events wait in the outbox for the vault (until the vault
    /// has them durably), counting at most `limit`.
    pub fn outbox_len(&self, limit: usize) -> Result<usize> {
        let mut count = 0;
        for row in self.count_vaultcapture.iter().take(limit) {
            row?;
            count += 1;
        }
        Ok(count)
    }

    /// The event an outbox entry stands for, as created. An entry holds the
    /// event's ID: the event itself is in the same batch, and its original
    /// is kept if a redaction comes before the vault takes it. Entries of
    /// older versions hold the stored PDU, or the archive's form itself.
    fn outbox_event(&self, entry: &[u8]) -> Result<(Box<RawValue>, Option<String>)> {
        if entry.first() == Some(&b'{') {
            let value = match serde_json::from_slice::<Pdu>(entry) {
                Ok(pdu) => pdu.to_archive_json(),
                Err(_) => serde_json::from_slice(entry)?,
            };
            return Ok((to_raw_value(&value)?, None));
        }
        if entry.first() == Some(&b'[') {
            let (marker, why, event_id): (String, String, String) = serde_json::from_slice(entry)?;
            if marker != SOFT_FAILED {
                return Err(Error::internal(
                    "an archive outbox entry of an unknown kind",
                ));
            }
            let (event, _) = self.outbox_event(event_id.as_bytes())?;
            return Ok((event, Some(why)));
        }
        let event_id = std::str::from_utf8(entry)
            .ok()
            .and_then(|id| EventId::parse(id).ok())
            .ok_or_else(|| Error::internal("an archive outbox entry holds no event ID"))?;
        let stored = self.original_pdu_text(&event_id)?.ok_or_else(|| {
            Error::internal(format!(
                "the archive outbox names {event_id}, which is not stored"
            ))
        })?;
        match archive_form(&stored) {
            Ok(event) => Ok((event, None)),
            // Stored text the quick form cannot take (escaped field names):
            // the same form through the typed PDU.
            Err(_) => Ok((
                to_raw_value(&serde_json::from_slice::<Pdu>(&stored)?.to_archive_json())?,
                None,
            )),
        }
    }

    /// Drops the outbox entries at or below `through`, the vault's capture
    /// cursor once it is durable: the vault takes entries in order, so it
    /// holds every one of them. One range tombstone, however many entries.
    /// Not synced: after a crash they are read again and the vault skips
    /// them (and the pump clears them again when it starts).
    pub fn discard_captured(&self, through: u64) -> Result<()> {
        let mut batch = archipel_store::Batch::new();
        batch.delete_range(
            &self.count_vaultcapture,
            0u64.to_be_bytes(),
            through.saturating_add(1).to_be_bytes(),
        );
        let _unsynced = self.store.write(batch)?;
        Ok(())
    }
}

impl Rooms {
    /// Destroys this server's copies of an event's content, as the archive's
    /// exclusion procedure ordered (`reference`): clients see it redacted,
    /// and the original kept for redactions is deleted. Returns the media
    /// the original referenced, for the caller to delete. Idempotent.
    pub fn erase_content(&self, event_id: &EventId, reference: &str) -> Result<Vec<String>> {
        let Some(original) = self.get_original_pdu(event_id)? else {
            return Ok(Vec::new());
        };
        let media = media_references(&original.to_archive_json());
        let version = self
            .meta(&original.room_id)?
            .map(|meta| meta.version)
            .unwrap_or(ruma::RoomVersionId::V11);
        let mut erased = stripped_copy(&original, &room_rules(&version)?)?;
        let mut unsigned = Map::new();
        unsigned.insert(
            "io.archipel.erased".into(),
            Value::String(reference.to_owned()),
        );
        erased.unsigned = Some(unsigned);
        let rules = room_rules(&version)?;
        let mut batch = archipel_store::Batch::new();
        batch.put_json(&self.eventid_pdu, event_id.as_bytes(), &erased);
        batch.delete(&self.eventid_originalpdu, event_id.as_bytes());
        // A peer's event as it was received: only its redacted form stays,
        // which its signatures still cover.
        if let Some(received) = self
            .eventid_federationjson
            .get_json::<ruma::CanonicalJsonObject>(event_id.as_bytes())?
        {
            let redacted = ruma::canonical_json::redact(received, &rules.redaction, None)
                .map_err(crate::Error::internal)?;
            batch.put_json(&self.eventid_federationjson, event_id.as_bytes(), &redacted);
        }
        self.scrub_prev_content(&mut batch, &original)?;
        self.store.commit(batch)?;
        Ok(media)
    }

    /// For an erased state event: the state event that replaced it carries
    /// its content as `unsigned.prev_content` for clients; that copy goes
    /// too (`replaces_state` stays, naming what was erased).
    fn scrub_prev_content(&self, batch: &mut archipel_store::Batch, erased: &Pdu) -> Result<()> {
        let Some(state_key) = &erased.state_key else {
            return Ok(());
        };
        let kind = erased.state_event_type().to_string();
        let prefix = archipel_store::key::prefix([
            erased.room_id.as_bytes(),
            kind.as_bytes(),
            state_key.as_bytes(),
        ]);
        for row in self.roomid_statekey_count_eventid.scan_prefix(prefix) {
            let (_, later) = row?;
            for tree in [&self.eventid_pdu, &self.eventid_originalpdu] {
                let Some(mut pdu) = tree.get_json::<Pdu>(&later)? else {
                    continue;
                };
                let Some(unsigned) = pdu.unsigned.as_mut() else {
                    continue;
                };
                if unsigned.get("replaces_state").and_then(Value::as_str)
                    != Some(erased.event_id.as_str())
                {
                    continue;
                }
                unsigned.remove("prev_content");
                unsigned.remove("prev_sender");
                batch.put_json(tree, &later, &pdu);
            }
        }
        Ok(())
    }
}

/// A stored PDU's JSON in the archive's form ([`Pdu::to_archive_json`]):
/// without the fields only this server keeps (`transaction`, `unsigned`),
/// every other field's text as stored, none of it parsed further.
fn archive_form(stored: &[u8]) -> serde_json::Result<Box<RawValue>> {
    let mut fields: BTreeMap<&str, &RawValue> = serde_json::from_slice(stored)?;
    fields.remove("transaction");
    fields.remove("unsigned");
    to_raw_value(&fields)
}

/// The `mxc://` URIs an event's content references: the file, its
/// thumbnail, and their encrypted-attachment forms.
pub fn media_references(event: &Value) -> Vec<String> {
    const POINTERS: [&str; 4] = [
        "/content/url",
        "/content/file/url",
        "/content/info/thumbnail_url",
        "/content/info/thumbnail_file/url",
    ];
    let mut out: Vec<String> = POINTERS
        .iter()
        .filter_map(|p| event.pointer(p).and_then(Value::as_str))
        .filter(|uri| <&MxcUri>::from(*uri).is_valid())
        .map(str::to_owned)
        .collect();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use archipel_store::{Batch, Store};
    use ruma::user_id;
    use serde_json::json;

    use super::*;
    use crate::{counter::Counter, service::rooms::PduBuilder};

    #[test]
    fn the_archive_form_drops_what_only_this_server_keeps() {
        let stored = br#"{"content":{"body":"hi","z":1,"a":[1,2]},"event_id":"$e","transaction":["DEV","t1"],"type":"m.room.message","unsigned":{"age":5}}"#;
        let form = archive_form(stored).expect("archive form");
        assert_eq!(
            form.get(),
            r#"{"content":{"body":"hi","z":1,"a":[1,2]},"event_id":"$e","type":"m.room.message"}"#,
            "local fields dropped, the rest as stored"
        );
        assert!(archive_form(b"[1]").is_err(), "not an object");
    }

    fn parsed(captured: &CapturedEvent) -> Value {
        serde_json::from_str(captured.event.get()).expect("the outbox hands out JSON")
    }

    fn rooms(dir: &std::path::Path) -> (Rooms, Arc<Counter>, Store) {
        super::super::testing::rooms(dir, Default::default())
    }

    #[tokio::test]
    async fn the_outbox_gives_each_event_as_created_even_if_redacted_before_the_vault_took_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (rooms, counter, store) = rooms(dir.path());
        let alice = user_id!("@alice:a.test");
        let room = &*super::super::testing::room_of(&rooms, alice).await;
        let message = rooms
            .append(
                room,
                alice,
                PduBuilder::new(
                    "m.room.message",
                    json!({ "msgtype": "m.text", "body": "kept" }),
                ),
            )
            .await
            .expect("send");
        let event_id = message.pdu.event_id.clone();
        let mut redaction = PduBuilder::new("m.room.redaction", json!({ "redacts": event_id }));
        redaction.redacts = Some(event_id.clone());
        rooms.append(room, alice, redaction).await.expect("redact");
        let own_copy = rooms.get_pdu(&event_id).expect("read").expect("stored");
        assert_eq!(
            own_copy.content_value(),
            json!({}),
            "clients see it redacted"
        );

        let captured = rooms.captured(0, counter.visible(), 100).expect("outbox");
        assert_eq!(captured.len(), 4, "{captured:?}");
        let archived = captured
            .iter()
            .find(|c| c.position == message.count)
            .expect("the message is in the outbox");
        let archived = parsed(archived);
        assert_eq!(archived["content"]["body"], "kept");
        assert_eq!(archived["event_id"], event_id.as_str());
        assert_eq!(archived["sender"], alice.as_str());
        // The stored text, taken apart only at the top, is the typed form.
        assert_eq!(archived, message.pdu.to_archive_json());
        assert!(archived.get("unsigned").is_none() && archived.get("transaction").is_none());

        // Entries written by older versions hold the stored PDU, or the
        // archive's form itself.
        let mut older = Batch::new();
        let pdu_json = serde_json::to_vec(&*message.pdu).expect("json");
        older.put(&rooms.count_vaultcapture, 1000u64.to_be_bytes(), &pdu_json);
        let archive_json =
            serde_json::to_vec(&json!({ "event_id": "$old", "type": "x" })).expect("json");
        older.put(
            &rooms.count_vaultcapture,
            1001u64.to_be_bytes(),
            &archive_json,
        );
        older.put(
            &rooms.count_vaultcapture,
            1002u64.to_be_bytes(),
            b"$missing",
        );
        let _ = store.write(older).expect("write");
        let mut after = rooms.captured(999, 1001, 100).expect("outbox").into_iter();
        let from_pdu = parsed(&after.next().expect("the PDU entry"));
        assert_eq!(from_pdu["content"]["body"], "kept");
        assert_eq!(from_pdu["event_id"], event_id.as_str());
        assert_eq!(
            parsed(&after.next().expect("the archive-form entry"))["event_id"],
            "$old"
        );

        // What the vault holds leaves the outbox.
        rooms.discard_captured(1001).expect("discard");
        let left: Vec<u64> = rooms
            .captured(0, 1001, 100)
            .map(|entries| entries.iter().map(|e| e.position).collect())
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(left.is_empty(), "{left:?}");

        // The entry above the discarded ones stays, and as it names an event
        // that is not stored, it is an error, never a silent gap in the
        // archive.
        match rooms.captured(1001, 1002, 100) {
            Err(error) => assert!(error.to_string().contains("$missing"), "{error}"),
            Ok(entries) => panic!("read past a missing event: {entries:?}"),
        }
    }

    #[test]
    fn finds_plain_and_encrypted_attachments() {
        let event = serde_json::json!({
            "content": {
                "url": "mxc://a.example/plain",
                "info": { "thumbnail_file": { "url": "mxc://a.example/thumb" } },
                "file": { "url": "not a uri" },
            }
        });
        assert_eq!(
            media_references(&event),
            vec!["mxc://a.example/plain", "mxc://a.example/thumb"]
        );
    }
}
