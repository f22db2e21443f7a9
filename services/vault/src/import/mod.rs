//! Chats from outside the homeserver, imported as records like captured
//! ones: classified, retained, excluded and exported as any room's.
//!
//! An import is one batch: its events and a procedure step `import` that
//! says where they came from (the file's name and SHA-256), who imported
//! them, whose chat it is and what the owner declared of it. It is all or
//! nothing, and events the vault holds already are not added again, so a
//! file imported twice adds nothing the second time.

pub mod whatsapp;

use serde::Serialize;
use serde_json::json;

use crate::{CapturedEvent, Result, Vault, columns as cf};

/// Where an import came from and who vouches for it.
#[derive(Clone, Debug, Serialize)]
pub struct Provenance {
    /// The export's format, e.g. `whatsapp`.
    pub source: String,
    /// The file's name, without its folder.
    pub file_name: String,
    /// SHA-256 (hex) of the file's bytes.
    pub file_sha256: String,
    /// Who imported it (a Matrix user ID, or the node's operator).
    pub importer: String,
    /// Whose chat it is (a Matrix user ID).
    pub owner: String,
    /// What the owner declared of the export (that it is theirs, complete,
    /// unaltered...).
    pub declaration: String,
}

/// What an import added.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Imported {
    pub room_id: String,
    /// Records added.
    pub added: usize,
    /// Events the vault held already.
    pub known: usize,
    /// The `import` step's record, if anything was added.
    pub step: Option<u64>,
}

impl Vault {
    /// Whose chat the room `room_id` holds, if an import made it.
    pub fn import_owner(&self, room_id: &str) -> Result<Option<String>> {
        let owner = self
            .store()
            .tree(cf::ROOMID_IMPORTOWNER)?
            .get(room_id.as_bytes())?;
        Ok(owner.map(|o| String::from_utf8_lossy(&o).into_owned()))
    }

    /// Every room an import made, with whose chat it holds.
    pub fn imported_rooms(&self) -> Result<Vec<(String, String)>> {
        let mut rooms = Vec::new();
        for row in self.store().tree(cf::ROOMID_IMPORTOWNER)?.iter() {
            let (room, owner) = row?;
            rooms.push((
                String::from_utf8_lossy(&room).into_owned(),
                String::from_utf8_lossy(&owner).into_owned(),
            ));
        }
        Ok(rooms)
    }

    /// Adds `events` (of `room_id`) from outside the homeserver in one
    /// batch, with a step recording `provenance`, committed and covered by
    /// a checkpoint before it returns. Events the vault holds are skipped;
    /// if all are, nothing is written.
    pub fn import(
        &self,
        provenance: &Provenance,
        room_id: &str,
        events: &[CapturedEvent],
    ) -> Result<Imported> {
        let owners = self.store().tree(cf::ROOMID_IMPORTOWNER)?;
        self.with_steps(|steps| {
            let mut seqs = Vec::new();
            let mut known = 0;
            for event in events {
                match steps.event(event)? {
                    Some(seq) => seqs.push(seq),
                    None => known += 1,
                }
            }
            if !seqs.is_empty() {
                steps
                    .batch
                    .put(&owners, room_id.as_bytes(), provenance.owner.as_bytes());
            }
            let step = match (seqs.first(), seqs.last()) {
                (Some(first), Some(last)) => Some(steps.procedure(
                    "import",
                    &provenance.importer,
                    room_id,
                    &json!({
                        "provenance": provenance,
                        "records": { "first": first, "last": last, "count": seqs.len() },
                    }),
                )),
                _ => None,
            };
            Ok(Imported {
                room_id: room_id.to_owned(),
                added: seqs.len(),
                known,
                step,
            })
        })
    }
}
