//! Readable, verifiable exports of archived conversations.
//!
//! ```text
//! OUT/
//!   checkpoint.txt         the signed checkpoint every proof below refers to
//!   verifier-key.txt       the key that signed it (signed-note text form)
//!   README.txt             what this is and how to check it
//!   manifest.txt           a signed note naming every conversation folder,
//!                          the records the scope selected in it and the
//!                          SHA-256 of its conversation.html
//!   <conversation>/
//!     conversation.html    self-contained, for people
//!     records.jsonl        one line per record, for machines: the record
//!                          exactly as logged, its inclusion proof, its data
//!                          key and the opened event (or the erasure)
//!     attachments/         the files the messages carried
//! ```
//!
//! Each line carries the record's data key, so [`check`] can open the sealed
//! content inside the proven record and compare it with the event shown:
//! an altered line fails even though the export holds no secrets beyond
//! what it shows anyway.

pub mod check;
mod html;
pub mod sip;
pub mod woo;

pub use html::amsterdam_time;

use std::{
    collections::{BTreeMap, BTreeSet},
    io::Write,
    path::Path,
};

use base64::{Engine, engine::general_purpose::STANDARD as B64};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::{
    Error, Result, Vault,
    checkpoint::{Checkpoint, sign_note, verifier_key},
    decryption::SessionKeyAt,
    open_sealed_with,
    record::{Entry, EventEntry, MediaCopy, Record},
    seal::{DataKey, NONCE_LEN},
    write_file as write,
};

/// What to export.
#[derive(Clone, Debug, Default)]
pub struct ExportScope {
    /// Every record of this room...
    pub room: Option<String>,
    /// ...or every record this user sent, per conversation.
    pub user: Option<String>,
    /// Only events at or after this time (ms since the Unix epoch)...
    pub from_ms: Option<u64>,
    /// ...and before this one.
    pub until_ms: Option<u64>,
}

impl ExportScope {
    fn selects(&self, event: &EventEntry) -> bool {
        self.room.as_ref().is_none_or(|r| *r == event.room_id)
            && self.user.as_ref().is_none_or(|u| *u == event.sender)
            && self.from_ms.is_none_or(|t| event.origin_server_ts >= t)
            && self.until_ms.is_none_or(|t| event.origin_server_ts < t)
    }
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct ExportSummary {
    pub conversations: usize,
    pub records: u64,
    pub erased: u64,
    /// Encrypted events shown with their plaintext...
    pub decrypted: u64,
    /// ...and those whose room key never reached the archive.
    pub undecrypted: u64,
    pub attachments: u64,
    pub checkpoint_size: u64,
}

/// One line of `records.jsonl`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ExportLine {
    pub seq: u64,
    /// The record exactly as logged (its bytes are the Merkle leaf).
    pub record: String,
    /// Base64 inclusion proof in the tree of `tree_size` records.
    pub proof: Vec<String>,
    pub tree_size: u64,
    /// Base64 data key of the record; absent once erased.
    pub data_key: Option<String>,
    /// The original event; absent once erased.
    pub event: Option<Value>,
    /// The decision that erased the record.
    pub erased: Option<String>,
    /// The record's media copies, as files in `attachments/`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<ExportAttachment>,
    /// For an erased record: the erasure entry, proven in the same log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub erasure: Option<ErasureProof>,
    /// For an encrypted event the archive decrypted: the decryption record,
    /// proven in the same log, opened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decryption: Option<DecryptionProof>,
}

/// The decryption record of an encrypted event, its inclusion proof and
/// data key, and what it holds: `verify-export` decrypts the line's
/// ciphertext with the session key and compares the plaintext.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DecryptionProof {
    pub seq: u64,
    /// The decryption record exactly as hashed into the log.
    pub record: String,
    pub proof: Vec<String>,
    /// Base64 data key of the decryption record.
    pub data_key: String,
    /// The decrypted event JSON text, exactly as encrypted.
    pub plaintext: String,
    /// The exported room key that decrypts the ciphertext.
    pub session_key: Value,
    /// The session key record that holds it, proven in the same log, with
    /// its data key. Absent for an older decryption record, which holds
    /// the session key itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_record: Option<SessionKeyProof>,
    /// The message's encrypted attachments, decrypted, as files in
    /// `attachments/` (the decryption record names their SHA-256).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<ExportAttachment>,
}

/// A session key record, its inclusion proof and its data key.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SessionKeyProof {
    pub seq: u64,
    /// The session key record exactly as hashed into the log.
    pub record: String,
    pub proof: Vec<String>,
    /// Base64 data key of the session key record.
    pub data_key: String,
}

/// The erasure entry of an erased record and its inclusion proof: an export
/// cannot call a record erased that the log does not say was.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ErasureProof {
    pub seq: u64,
    /// The erasure record exactly as hashed into the log.
    pub record: String,
    /// Base64 hashes: the inclusion proof in the checkpoint's tree.
    pub proof: Vec<String>,
}

/// A media copy in an export: the file, and the nonce it was sealed with, so
/// that `verify-export` can seal the file again and compare it with the
/// sealed copy's hash in the record.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ExportAttachment {
    /// Which of the record's media files (1, 2, ...).
    pub part: u32,
    /// Name of the file in the conversation's `attachments/`.
    pub file: String,
    /// For an older record's own copy: base64 of the nonce it was sealed
    /// with (the checker reseals the file). Empty for a file the vault holds
    /// once: the record names its SHA-256.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub nonce: String,
}

/// A selected record, opened.
pub(crate) struct Opened {
    pub seq: u64,
    pub entry: EventEntry,
    pub event: Option<Value>,
    pub erased: Option<String>,
    /// The sender's display name at the time.
    pub display_name: String,
    /// (part, file name in `attachments/`).
    pub attachments: Vec<(u32, String)>,
    /// The decryption record an encrypted event is shown from; `event` is
    /// then the decrypted event.
    pub decrypted_by: Option<u64>,
}

impl Vault {
    /// Record `seq` as hashed into the log, and its inclusion proof (base64)
    /// in the tree of `size` records.
    fn proven(&self, seq: u64, bytes: Vec<u8>, size: u64) -> Result<(String, Vec<String>)> {
        let record =
            String::from_utf8(bytes).map_err(|e| Error::Corrupt(format!("record {seq}: {e}")))?;
        let proof = self
            .log
            .inclusion_proof(seq, size)?
            .iter()
            .map(|h| B64.encode(h))
            .collect();
        Ok((record, proof))
    }

    /// The decryption record of event record `seq` within the first `size`
    /// records, proven and opened; `None` when it has none (or it came later).
    fn decryption_proof(
        &self,
        seq: u64,
        size: u64,
    ) -> Result<Option<(DecryptionProof, DataKey, Vec<MediaCopy>)>> {
        let Some(dseq) = self.decryption_of(seq)?.filter(|&d| d < size) else {
            return Ok(None);
        };
        let key = match self.data_key(dseq) {
            Ok(key) => key,
            Err(Error::Erased { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let bytes = self
            .log
            .record_bytes(dseq)?
            .ok_or_else(|| Error::NotFound(format!("record {dseq} is not in the vault")))?;
        let Entry::Decryption(entry) = Record::from_bytes(&bytes)
            .map_err(|e| Error::Corrupt(format!("record {dseq} does not parse: {e}")))?
            .entry
        else {
            return Err(Error::Corrupt(format!(
                "record {dseq} is filed as the decryption of {seq} but is none"
            )));
        };
        let opened = crate::decryption::decrypted_from(
            dseq,
            &entry,
            open_sealed_with(&key, dseq, &entry.sealed)?,
        )?;
        let (session_key, key_record) = match opened.session_key {
            SessionKeyAt::Own(session_key) => (session_key, None),
            SessionKeyAt::Record(key_seq) => {
                let (session_key, data_key) = self.open_session_key(key_seq, dseq)?;
                let bytes = self.log.record_bytes(key_seq)?.ok_or_else(|| {
                    Error::NotFound(format!("record {key_seq} is not in the vault"))
                })?;
                let (record, proof) = self.proven(key_seq, bytes, size)?;
                let proof = SessionKeyProof {
                    seq: key_seq,
                    record,
                    proof,
                    data_key: B64.encode(data_key.expose()),
                };
                (session_key, Some(proof))
            }
        };
        let (record, proof) = self.proven(dseq, bytes, size)?;
        Ok(Some((
            DecryptionProof {
                seq: dseq,
                record,
                proof,
                data_key: B64.encode(key.expose()),
                plaintext: opened.plaintext,
                session_key,
                key_record,
                attachments: Vec::new(),
            },
            key,
            entry.media,
        )))
    }

    fn erasure_proof(&self, seq: u64, size: u64) -> Result<ErasureProof> {
        let bytes = self
            .log
            .record_bytes(seq)?
            .ok_or_else(|| Error::NotFound(format!("erasure record {seq} is not in the vault")))?;
        let (record, proof) = self.proven(seq, bytes, size)?;
        Ok(ErasureProof { seq, record, proof })
    }

    /// Writes an export of `scope` into the new directory `out`, proven
    /// against the newest signed checkpoint: records after it are left out,
    /// so sign one first ([`Vault::checkpoint`]) to cover everything. A
    /// follower of a running node cannot sign; it asks the node. `progress` hears
    /// `(records scanned, records in the log)`.
    pub fn export(
        &self,
        scope: &ExportScope,
        out: &Path,
        mut progress: impl FnMut(u64, u64),
    ) -> Result<ExportSummary> {
        refuse_non_empty(out)?;
        let stored = self
            .log
            .latest_checkpoint()?
            .ok_or_else(|| Error::NotFound("the vault is empty: nothing to export".into()))?;
        let size = stored.size;

        // Which conversations, and which of their records, are in scope.
        let mut selected: BTreeMap<String, BTreeSet<u64>> = BTreeMap::new();
        let candidates: Vec<u64> = match &scope.room {
            Some(room) => self.log.room_records(room, size)?,
            None => (0..size).collect(),
        };
        let total = candidates.len() as u64;
        for (n, &seq) in candidates.iter().enumerate() {
            if let Entry::Event(event) = self.log.record(seq)?.entry
                && scope.selects(&event)
            {
                selected.entry(event.room_id).or_default().insert(seq);
            }
            if n % 4096 == 0 {
                progress(n as u64, total * 2);
            }
        }

        std::fs::create_dir_all(out)
            .map_err(|e| Error::io(format!("creating {}", out.display()), e))?;
        write(&out.join("checkpoint.txt"), stored.note.as_bytes())?;
        let verifier = self.write_verifier_key(out)?;
        write(
            &out.join("README.txt"),
            readme(scope, size, &verifier).as_bytes(),
        )?;

        let checkpoint = Checkpoint::open(&stored.note, &self.verifying_key())
            .map_err(|e| Error::Corrupt(format!("the newest checkpoint: {e}")))?;
        let mut summary = ExportSummary {
            conversations: selected.len(),
            checkpoint_size: size,
            ..ExportSummary::default()
        };
        let mut names = BTreeSet::new();
        let mut manifest = Manifest {
            checkpoint_size: size,
            conversations: Vec::new(),
        };
        let mut done = 0;
        for (room, seqs) in &selected {
            let name = unique_name(room, &mut names);
            let dir = out.join(&name);
            let attachments = dir.join("attachments");
            std::fs::create_dir_all(&attachments)
                .map_err(|e| Error::io(format!("creating {}", attachments.display()), e))?;
            let mut lines = Vec::new();
            let mut opened = Vec::new();
            // The room's state (names, members) comes from all its events,
            // selected or not, up to the checkpoint.
            let mut context = html::RoomContext::new(room);
            for seq in self.log.room_records(room, size)? {
                let bytes = self
                    .log
                    .record_bytes(seq)?
                    .ok_or_else(|| Error::NotFound(format!("record {seq} is not in the vault")))?;
                let record = Record::from_bytes(&bytes)
                    .map_err(|e| Error::Corrupt(format!("record {seq} does not parse: {e}")))?;
                let Entry::Event(entry) = record.entry else {
                    continue;
                };
                if entry.room_id != *room {
                    continue;
                }
                let erasure = self.log.erasure_record_of(seq)?;
                let erased = erasure.as_ref().map(|e| e.reference.clone());
                let key = match &erased {
                    Some(_) => None,
                    None => Some(self.data_key(seq)?),
                };
                let event = key
                    .as_ref()
                    .map(|key| open_sealed_with(key, seq, &entry.sealed))
                    .transpose()?;
                if let Some(event) = &event {
                    context.observe(event);
                }
                if !seqs.contains(&seq) {
                    continue;
                }
                let mut files = Vec::new();
                let mut shipped = Vec::new();
                if let Some(key) = &key {
                    for (i, copy) in entry.media.iter().enumerate() {
                        let part = i as u32 + 1;
                        let name = attachment_name(seq, part, event.as_ref());
                        let nonce = self.export_media(key, seq, copy, &attachments.join(&name))?;
                        shipped.push(ExportAttachment {
                            part,
                            file: name.clone(),
                            nonce,
                        });
                        files.push((part, name));
                        summary.attachments += 1;
                    }
                }
                let mut decryption = match &event {
                    Some(_) if entry.event_type == "m.room.encrypted" => {
                        self.decryption_proof(seq, size)?
                    }
                    _ => None,
                };
                // The decrypted message's attachments, after the event's own.
                if let Some((proof, key, media)) = &mut decryption {
                    let clear = event
                        .as_ref()
                        .map(|event| clear_event(event, &proof.plaintext));
                    for (i, copy) in media.iter().enumerate() {
                        let part = i as u32 + 1;
                        let name = attachment_name(seq, files.len() as u32 + 1, clear.as_ref());
                        let nonce =
                            self.export_media(key, proof.seq, copy, &attachments.join(&name))?;
                        proof.attachments.push(ExportAttachment {
                            part,
                            file: name.clone(),
                            nonce,
                        });
                        files.push((files.len() as u32 + 1, name));
                        summary.attachments += 1;
                    }
                }
                let decryption = decryption.map(|(proof, _, _)| proof);
                if entry.event_type == "m.room.encrypted" && erased.is_none() {
                    summary.decrypted += u64::from(decryption.is_some());
                    summary.undecrypted += u64::from(decryption.is_none());
                }
                let shown = match (&event, &decryption) {
                    (Some(event), Some(decryption)) => {
                        Some(clear_event(event, &decryption.plaintext))
                    }
                    _ => event.clone(),
                };
                let (record, proof) = self.proven(seq, bytes, size)?;
                let line = ExportLine {
                    seq,
                    record,
                    proof,
                    tree_size: size,
                    data_key: key.as_ref().map(|key| B64.encode(key.expose())),
                    event: event.clone(),
                    erased: erased.clone(),
                    attachments: shipped,
                    erasure: erasure
                        .as_ref()
                        .map(|e| self.erasure_proof(e.record, size))
                        .transpose()?,
                    decryption: decryption.clone(),
                };
                lines.push(serde_json::to_string(&line).expect("lines serialize"));
                summary.records += 1;
                summary.erased += u64::from(erased.is_some());
                opened.push(Opened {
                    seq,
                    display_name: context.display_name(&entry.sender),
                    entry,
                    event: shown,
                    erased,
                    attachments: files,
                    decrypted_by: decryption.map(|d| d.seq),
                });
                done += 1;
                if done % 1024 == 0 {
                    progress(total + done, total * 2);
                }
            }
            let mut jsonl = lines.join("\n");
            jsonl.push('\n');
            write(&dir.join("records.jsonl"), jsonl.as_bytes())?;
            let page = html::render(&context, &opened, scope, &checkpoint);
            write(&dir.join("conversation.html"), page.as_bytes())?;
            manifest.conversations.push(ManifestEntry {
                folder: name,
                html_sha256: B64.encode(Sha256::digest(page.as_bytes())),
                seqs: seqs.iter().copied().collect(),
            });
        }
        write(
            &out.join("manifest.txt"),
            sign_note(&self.origin, &manifest.body(&self.origin), &self.signer).as_bytes(),
        )?;
        progress(total * 2, total * 2);
        Ok(summary)
    }
}

/// Text for XML content and attribute values: escaped, and without the
/// characters XML 1.0 cannot hold.
pub(crate) fn xml(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => {}
            c => out.push(c),
        }
    }
    out
}

impl Vault {
    /// Walks a room's `records` (in log order) up to the last of `wanted`,
    /// following the room's state (its name, members' display names)
    /// through every event still readable, and hands `found` each wanted
    /// one that is, with the state as of it. Returns the state at the end.
    pub(crate) fn follow_room(
        &self,
        room: &str,
        records: &[u64],
        wanted: &BTreeSet<u64>,
        mut found: impl FnMut(u64, EventEntry, Value, &html::RoomContext) -> Result<()>,
    ) -> Result<html::RoomContext> {
        let last = wanted.last().copied().unwrap_or(0);
        let mut context = html::RoomContext::new(room);
        for &seq in records {
            if seq > last {
                break;
            }
            let Entry::Event(entry) = self.log.record(seq)?.entry else {
                continue;
            };
            let event = match self.open_sealed(seq, &entry.sealed) {
                Ok(event) => event,
                Err(Error::Erased { .. }) => continue,
                Err(e) => return Err(e),
            };
            context.observe(&event);
            if wanted.contains(&seq) {
                found(seq, entry, event, &context)?;
            }
        }
        Ok(context)
    }

    /// Writes `verifier-key.txt` into `out`: the key that signed the
    /// checkpoint and manifest, in signed-note text form. Returns it.
    pub(crate) fn write_verifier_key(&self, out: &Path) -> Result<String> {
        let verifier = verifier_key(&self.origin, &self.verifying_key());
        write(
            &out.join("verifier-key.txt"),
            format!("{verifier}\n").as_bytes(),
        )?;
        Ok(verifier)
    }
}

/// Refuses to write into `out` if it holds anything: an export goes into a
/// new folder.
fn refuse_non_empty(out: &Path) -> Result<()> {
    if out.exists()
        && std::fs::read_dir(out)
            .map_err(|e| Error::io(format!("reading {}", out.display()), e))?
            .next()
            .is_some()
    {
        return Err(Error::Refused(format!(
            "{} exists and is not empty; export into a new folder",
            out.display()
        )));
    }
    Ok(())
}

/// What an export holds, signed by the vault: proof that no conversation,
/// record or page was left out or changed after the export was made.
///
/// ```text
/// ministerie.example/archipel-vault export
/// checkpoint 1042
/// room-abc 3q2+7w...base64 SHA-256 of conversation.html... 17,18,25
/// ```
#[derive(Debug, PartialEq, Eq)]
pub struct Manifest {
    pub checkpoint_size: u64,
    pub conversations: Vec<ManifestEntry>,
}

#[derive(Debug, PartialEq, Eq)]
pub struct ManifestEntry {
    /// The conversation's folder name (letters, digits, `-` and `_`).
    pub folder: String,
    pub html_sha256: String,
    /// The records the export's scope selected, ascending.
    pub seqs: Vec<u64>,
}

impl Manifest {
    /// The note body. Its second line is not a number, so a manifest can
    /// never pass for a checkpoint signed by the same key.
    fn body(&self, origin: &str) -> String {
        let mut body = format!("{origin} export\ncheckpoint {}\n", self.checkpoint_size);
        for entry in &self.conversations {
            let seqs: Vec<String> = entry.seqs.iter().map(u64::to_string).collect();
            body.push_str(&format!(
                "{} {} {}\n",
                entry.folder,
                entry.html_sha256,
                seqs.join(",")
            ));
        }
        body
    }

    /// Parses a note body written by [`Manifest::body`] for `origin`.
    pub fn parse(body: &str, origin: &str) -> std::result::Result<Self, String> {
        let mut lines = body.lines();
        if lines.next() != Some(&format!("{origin} export")) {
            return Err(format!("it is not an export manifest of {origin}"));
        }
        let checkpoint_size = lines
            .next()
            .and_then(|l| l.strip_prefix("checkpoint "))
            .and_then(|n| n.parse().ok())
            .ok_or("its second line does not name the checkpoint's size")?;
        let mut conversations = Vec::new();
        for line in lines {
            let mut parts = line.split(' ');
            let (Some(folder), Some(html_sha256), Some(seqs), None) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                return Err(format!("the line {line:?} is not `folder hash records`"));
            };
            let seqs = seqs
                .split(',')
                .filter(|seq| !seq.is_empty())
                .map(str::parse)
                .collect::<std::result::Result<Vec<u64>, _>>()
                .map_err(|_| format!("the records of {folder} are not a list of numbers"))?;
            conversations.push(ManifestEntry {
                folder: folder.to_owned(),
                html_sha256: html_sha256.to_owned(),
                seqs,
            });
        }
        Ok(Self {
            checkpoint_size,
            conversations,
        })
    }
}

/// Parses `2026-11-01` (midnight, Europe/Amsterdam) or an RFC 3339 time
/// (`2026-11-01T09:30:00+01:00`) into milliseconds since the Unix epoch.
pub fn parse_time(text: &str) -> std::result::Result<u64, String> {
    let timestamp = if let Ok(date) = text.parse::<jiff::civil::Date>() {
        date.to_zoned(jiff::tz::TimeZone::get("Europe/Amsterdam").map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?
            .timestamp()
    } else {
        text.parse::<jiff::Timestamp>().map_err(|_| {
            format!("`{text}`: expected a date (2026-11-01) or an RFC 3339 time (2026-11-01T09:30:00+01:00)")
        })?
    };
    u64::try_from(timestamp.as_millisecond()).map_err(|_| format!("`{text}` is before 1970"))
}

/// A folder name for a room: its ID made safe for file systems.
/// An encrypted event as its participants saw it: its `type` and
/// `content` from the plaintext, the rest (sender, time, ID) as logged.
fn clear_event(event: &Value, plaintext: &str) -> Value {
    let mut clear = event.clone();
    if let Ok(mut plain) = serde_json::from_str::<Value>(plaintext) {
        clear["type"] = plain["type"].take();
        clear["content"] = plain["content"].take();
    }
    clear
}

fn unique_name(room: &str, taken: &mut BTreeSet<String>) -> String {
    let base: String = room
        .trim_start_matches('!')
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut name = format!("room-{base}");
    let mut n = 2;
    while !taken.insert(name.clone()) {
        name = format!("room-{base}-{n}");
        n += 1;
    }
    name
}

/// `<seq>-<part>-<the file's own name>`, made safe.
impl Vault {
    /// Writes the bytes of media `copy` of record `seq` to `path`. Returns
    /// the nonce of an older record's own copy (empty for a file the vault
    /// holds once).
    fn export_media(
        &self,
        key: &DataKey,
        seq: u64,
        copy: &MediaCopy,
        path: &Path,
    ) -> Result<String> {
        if copy.sha256.is_some() {
            let file = std::fs::File::create(path)
                .map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
            let mut out = std::io::BufWriter::new(file);
            self.open_media_to(copy, &mut out)?;
            out.flush()
                .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
            return Ok(String::new());
        }
        let (bytes, sealed) = self.open_media_sealed(key, seq, copy.part)?;
        write(path, &bytes)?;
        Ok(B64.encode(&sealed[..sealed.len().min(NONCE_LEN)]))
    }
}

fn attachment_name(seq: u64, part: u32, event: Option<&Value>) -> String {
    let original = event
        .and_then(|e| {
            e.pointer("/content/filename")
                .or_else(|| e.pointer("/content/body"))
        })
        .and_then(Value::as_str)
        .unwrap_or("attachment");
    let safe: String = original
        .chars()
        .filter(|c| !c.is_control())
        .map(|c| if c == '/' || c == '\\' { '_' } else { c })
        .take(100)
        .collect();
    let safe = safe.trim_start_matches('.');
    format!(
        "{seq}-{part}-{}",
        if safe.is_empty() { "attachment" } else { safe }
    )
}

fn readme(scope: &ExportScope, size: u64, verifier: &str) -> String {
    let what = match (&scope.room, &scope.user) {
        (Some(room), _) => format!("room {room}"),
        (None, Some(user)) => format!("messages sent by {user}"),
        (None, None) => "every conversation".into(),
    };
    format!(
        "Archipel archive export: {what}.\n\n\
         Each folder is one conversation: conversation.html to read, records.jsonl to check,\n\
         attachments/ for the files. Times are Europe/Amsterdam.\n\n\
         Every record is proven to be in the archive's log as signed in checkpoint.txt\n\
         (a C2SP signed note over {size} records) by the key in verifier-key.txt:\n  {verifier}\n\
         manifest.txt, signed by the same key, names every folder, the records selected\n\
         in it and a hash of its conversation.html: nothing can be left out or changed.\n\n\
         Check it offline with:\n  archipel vault verify-export <this folder> --verifier-key '<the key, from a trusted source>'\n"
    )
}
