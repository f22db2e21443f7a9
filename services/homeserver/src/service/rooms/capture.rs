//! The archive outbox: every event this server persists is written to
//! `count_vaultcapture` in the event's own batch. The vault drains it in
//! stream order and the appliance discards what the vault holds.

use ruma::{EventId, MxcUri};
use serde_json::{Map, Value};

use super::{
    Pdu, Rooms,
    append::{room_rules, stripped_copy},
};
use crate::Result;

/// An event waiting in the outbox.
#[derive(Clone, Debug)]
pub struct CapturedEvent {
    /// The event's stream position (the outbox key).
    pub position: u64,
    /// The event as created (federation form with its `event_id`), before any redaction.
    pub event: Value,
}

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
            // The stored PDU; an entry written before the outbox held PDUs
            // already holds the archive's form.
            let event = match serde_json::from_slice::<Pdu>(&v) {
                Ok(pdu) => pdu.to_archive_json(),
                Err(_) => serde_json::from_slice(&v)?,
            };
            out.push(CapturedEvent { position, event });
        }
        Ok(out)
    }

    /// Drops outbox entries the vault has durably taken over (at or below `through`).
    /// Not synced: after a crash they are read again and the vault skips them.
    pub fn discard_captured(&self, positions: impl IntoIterator<Item = u64>) -> Result<()> {
        let mut batch = archipel_store::Batch::new();
        for position in positions {
            batch.delete(&self.count_vaultcapture, position.to_be_bytes());
        }
        if !batch.is_empty() {
            let _unsynced = self.store.write(batch)?;
        }
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
        self.store.commit(batch)?;
        Ok(media)
    }
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
    use super::*;

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
