//! Woo packages: archived chat made ready for a decision on a Woo request.
//!
//! A records manager selects conversations (a room, a period, a search's
//! hits): [`Vault::woo_candidates`] lists them as documents, one per
//! conversation per day. The Woo officer assesses each in a plan
//! ([`WooPlan`]): a judgement, and the passages to redact with their
//! grounds. [`Vault::woo_package`] then writes:
//!
//! ```text
//! OUT/
//!   documenten/<ID>.pdf     each document to publish, redacted: the text of a
//!                           redacted passage is not in the file, a black box
//!                           with its ground code is
//!   productierapport.xlsx   the inventory, in the columns the Rijksoverheid
//!                           Woo platform imports
//!   redaction-log.csv       every box: document, page, message, ground, size
//!   diwoo.xml               DiWoo metadata of the published documents
//!   proofs.jsonl            each record's leaf hash and inclusion proof
//!   checkpoint.txt          the signed checkpoint the proofs refer to
//!   verifier-key.txt
//!   manifest.txt            a signed note: every document with its judgement,
//!                           the SHA-256 of its PDF and the records it shows;
//!                           every other file's SHA-256
//!   README.txt
//! ```
//!
//! A document's number is the log position of its conversation's first
//! message that day: stable (the log only grows, and an erasure keeps its
//! record's place), and it names a record an auditor can look up. Nothing
//! secret leaves in a package: no data keys, no record bytes (they name
//! senders), only leaf hashes.

pub mod check;
mod files;
mod pdf;

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    path::Path,
};

use base64::{Engine, engine::general_purpose::STANDARD as B64};
use jiff::civil::Date;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::{clear_event, html::RoomContext};
use crate::{
    Error, Organisation, Result, Vault,
    checkpoint::sign_note,
    record::{Entry, EventEntry},
    write_file as write,
};

/// The record types a document shows: messages and stickers, and encrypted
/// events (shown from their decryption).
const MESSAGE_TYPES: [&str; 3] = ["m.room.message", "m.sticker", "m.room.encrypted"];

/// The Woo's grounds for withholding information as productierapporten and
/// redaction boxes write them (art. 5.1, 5.2 and 5.4; `dubbel`: assessed
/// in another document).
pub const GROUNDS: [&str; 20] = [
    "5.1.1a", "5.1.1b", "5.1.1c", "5.1.1d", "5.1.1e", "5.1.2a", "5.1.2b", "5.1.2c", "5.1.2d",
    "5.1.2e", "5.1.2f", "5.1.2g", "5.1.2h", "5.1.2i", "5.1.4", "5.1.5", "5.2", "5.4", "5.4a",
    "dubbel",
];

pub fn is_ground(code: &str) -> bool {
    GROUNDS.contains(&code)
}

/// The decision on a document.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Judgement {
    Public,
    PartlyPublic,
    NotPublic,
    AlreadyPublic,
}

impl Judgement {
    pub const ALL: [Judgement; 4] = [
        Self::Public,
        Self::PartlyPublic,
        Self::NotPublic,
        Self::AlreadyPublic,
    ];

    /// As the productierapport writes it.
    pub fn label(self) -> &'static str {
        match self {
            Self::Public => "Openbaar",
            Self::PartlyPublic => "Deels openbaar",
            Self::NotPublic => "Niet openbaar",
            Self::AlreadyPublic => "Reeds openbaar",
        }
    }

    /// As the manifest writes it (one word).
    fn code(self) -> &'static str {
        match self {
            Self::Public => "openbaar",
            Self::PartlyPublic => "deels-openbaar",
            Self::NotPublic => "niet-openbaar",
            Self::AlreadyPublic => "reeds-openbaar",
        }
    }

    /// Reads a judgement as a plan may write it: `deels openbaar`,
    /// `Deels openbaar`, `deels-openbaar`.
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim().to_lowercase().replace(['-', '_'], " ");
        Self::ALL
            .into_iter()
            .find(|j| j.label().to_lowercase() == text)
    }

    /// Whether the document is published as a PDF in the package.
    fn published(self) -> bool {
        matches!(self, Self::Public | Self::PartlyPublic)
    }
}

/// What to offer as documents.
#[derive(Clone, Debug, Default)]
pub struct WooSelection {
    pub room: Option<String>,
    /// Days with a message at or after this time (ms since the Unix epoch)...
    pub from_ms: Option<u64>,
    /// ...and before this one.
    pub until_ms: Option<u64>,
    /// Only days holding one of these records (a search's hits).
    pub records: Option<BTreeSet<u64>>,
}

/// A conversation's day that could be a document.
#[derive(Clone, Debug, Serialize)]
pub struct Candidate {
    /// The document number.
    pub id: u64,
    pub room_id: String,
    pub room_name: Option<String>,
    /// The day, in Europe/Amsterdam.
    pub date: String,
    /// Messages that day (erased ones left out).
    pub messages: usize,
}

/// The Woo officer's assessment: which documents, and what of each is
/// made public. `archipel vault woo plan` writes one to fill in.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WooPlan {
    /// The request's matter number (the productierapport's `Matter`).
    pub matter: String,
    /// The decision's name, for the README.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub decision: String,
    #[serde(default)]
    pub documents: Vec<PlannedDocument>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PlannedDocument {
    /// The document number, as [`Vault::woo_candidates`] gave it.
    pub id: u64,
    /// For the reader of the plan; not read.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub conversation: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub date: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messages: Option<usize>,
    /// openbaar, deels openbaar, niet openbaar or reeds openbaar.
    pub judgement: String,
    /// Grounds for the document as a whole (required when it is not public
    /// at all); the redactions' grounds are added to them.
    #[serde(default)]
    pub grounds: Vec<String>,
    /// Where an already public document was published.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub link: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub explanation: String,
    /// Opgeschort: held back because a third party objects.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub suspended: bool,
    #[serde(default)]
    pub redactions: Vec<PlannedRedaction>,
}

/// A passage to redact: every occurrence of `passage` in the document (in
/// one message when `message` names its event ID), names included.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PlannedRedaction {
    pub passage: String,
    pub ground: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct WooSummary {
    pub documents: usize,
    /// Documents published as PDFs...
    pub published: usize,
    /// ...and withheld whole or published before.
    pub not_included: usize,
    pub redactions: usize,
    pub pages: usize,
    pub records: usize,
    pub checkpoint_size: u64,
}

/// A conversation's day: its message records, erased ones included.
struct Day {
    date: Date,
    seqs: Vec<u64>,
}

/// One message of a document, as read.
pub(crate) struct Message {
    pub seq: u64,
    /// The decryption record it was read from.
    pub decryption: Option<u64>,
    pub event_id: String,
    pub ts: u64,
    pub sender: String,
    pub body: String,
}

/// A text with the byte ranges to redact, each with its grounds.
#[derive(Clone, Debug, Default)]
pub(crate) struct Marked {
    pub text: String,
    pub marks: Vec<(std::ops::Range<usize>, String)>,
}

/// A message as a document shows it: its time and sender, then its text.
pub(crate) struct Shown {
    pub event_id: String,
    pub header: Marked,
    pub body: Marked,
}

/// A document made ready: what the PDF shows.
pub(crate) struct Document {
    pub id: u64,
    pub title: String,
    pub date: Date,
    pub judgement: Judgement,
    pub grounds: BTreeSet<String>,
    pub planned: PlannedDocument,
    pub messages: Vec<Shown>,
    pub seqs: Vec<u64>,
    /// The conversation's first document in the package.
    pub family: u64,
}

impl Vault {
    /// The documents `selection` offers, by room and day.
    pub fn woo_candidates(&self, selection: &WooSelection) -> Result<Vec<Candidate>> {
        let size = self.log.size()?;
        let seqs: Vec<u64> = match &selection.room {
            Some(room) => self.log.room_records(room, size)?,
            None => (0..size).collect(),
        };
        let mut days: BTreeMap<(String, Date), (u64, usize, bool)> = BTreeMap::new();
        let mut names: HashMap<String, String> = HashMap::new();
        for seq in seqs {
            let Entry::Event(event) = self.log.record(seq)?.entry else {
                continue;
            };
            if event.event_type == "m.room.name" {
                if let Some(name) = self
                    .open_unerased(seq)?
                    .and_then(|e| e["content"]["name"].as_str().map(str::to_owned))
                {
                    names.insert(event.room_id.clone(), name);
                }
                continue;
            }
            if !is_message(&event) {
                continue;
            }
            let in_period = selection
                .from_ms
                .is_none_or(|t| event.origin_server_ts >= t)
                && selection
                    .until_ms
                    .is_none_or(|t| event.origin_server_ts < t);
            let hit = selection.records.as_ref().is_none_or(|r| r.contains(&seq));
            let erased = self.log.erasure_of(seq)?.is_some();
            let day = days
                .entry((event.room_id.clone(), day_of(event.origin_server_ts)))
                .or_insert((seq, 0, false));
            day.1 += usize::from(!erased);
            day.2 |= in_period && hit && !erased;
        }
        Ok(days
            .into_iter()
            .filter(|(_, (_, messages, selected))| *selected && *messages > 0)
            .map(|((room_id, date), (id, messages, _))| Candidate {
                id,
                room_name: names.get(&room_id).cloned(),
                room_id,
                date: date.to_string(),
                messages,
            })
            .collect())
    }

    /// The content of record `seq`, none if it was erased.
    pub(crate) fn open_unerased(&self, seq: u64) -> Result<Option<Value>> {
        match self.open_event(seq) {
            Ok(event) => Ok(Some(event)),
            Err(Error::Erased { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The room and day of document `id`, and the message records of that
    /// day up to `size`; refused if `id` is no document's number.
    fn woo_day(&self, id: u64, size: u64) -> Result<(String, Day)> {
        let not_a_document = || {
            Error::Refused(format!(
                "{id} is not a document number (see `archipel vault woo plan`)"
            ))
        };
        if id >= size {
            return Err(not_a_document());
        }
        let Entry::Event(event) = self.log.record(id)?.entry else {
            return Err(not_a_document());
        };
        if !is_message(&event) {
            return Err(not_a_document());
        }
        let date = day_of(event.origin_server_ts);
        let mut seqs = Vec::new();
        for seq in self.log.room_records(&event.room_id, size)? {
            if let Entry::Event(other) = self.log.record(seq)?.entry
                && is_message(&other)
                && day_of(other.origin_server_ts) == date
            {
                seqs.push(seq);
            }
        }
        if seqs.first() != Some(&id) {
            return Err(not_a_document());
        }
        Ok((event.room_id, Day { date, seqs }))
    }

    /// Writes the Woo package `plan` asks for into the new folder `out`,
    /// proven against the newest signed checkpoint (sign one first).
    /// `reviewer` is named in the redaction log. The plan is checked whole
    /// before anything is written. `progress` hears (documents done, all).
    pub fn woo_package(
        &self,
        plan: &WooPlan,
        organisation: &Organisation,
        reviewer: &str,
        out: &Path,
        mut progress: impl FnMut(u64, u64),
    ) -> Result<WooSummary> {
        super::refuse_non_empty(out)?;
        let stored = self
            .log
            .latest_checkpoint()?
            .ok_or_else(|| Error::NotFound("the vault is empty: nothing to package".into()))?;
        let size = stored.size;
        check_plan(plan)?;

        // Read every document, room by room, following each room's state
        // for its members' names.
        let mut by_room: BTreeMap<String, Vec<(&PlannedDocument, Day)>> = BTreeMap::new();
        for planned in &plan.documents {
            let (room, day) = self.woo_day(planned.id, size)?;
            by_room.entry(room).or_default().push((planned, day));
        }
        let total = plan.documents.len() as u64;
        let mut documents = Vec::new();
        for (room, planned) in by_room {
            let wanted: BTreeSet<u64> = planned.iter().flat_map(|(_, d)| d.seqs.clone()).collect();
            let (name, messages) = self.read_messages(&room, &wanted, size)?;
            let family = planned.iter().map(|(p, _)| p.id).min().unwrap_or(0);
            for (planned, day) in planned {
                let shown: Vec<&Message> = day
                    .seqs
                    .iter()
                    .filter_map(|seq| messages.get(seq))
                    .collect();
                documents.push(make_document(
                    planned,
                    day.date,
                    name.as_deref(),
                    &shown,
                    family,
                )?);
                progress(documents.len() as u64, total);
            }
        }
        documents.sort_by_key(|d| d.id);

        // Render, then write.
        let mut summary = WooSummary {
            documents: documents.len(),
            checkpoint_size: size,
            ..WooSummary::default()
        };
        let mut pdfs = Vec::new();
        let mut boxes = Vec::new();
        for document in &documents {
            summary.records += document.seqs.len();
            if !document.judgement.published() {
                summary.not_included += 1;
                continue;
            }
            let rendered = pdf::render(document, &plan.matter);
            summary.published += 1;
            summary.pages += rendered.pages;
            summary.redactions += rendered.boxes.len();
            boxes.extend(rendered.boxes.iter().map(|b| (document.id, b.clone())));
            pdfs.push((document.id, rendered.bytes));
        }
        let docs_dir = out.join("documenten");
        std::fs::create_dir_all(&docs_dir)
            .map_err(|e| Error::io(format!("creating {}", docs_dir.display()), e))?;
        let mut pdf_hashes = HashMap::new();
        for (id, bytes) in &pdfs {
            write(&docs_dir.join(format!("{id}.pdf")), bytes)?;
            pdf_hashes.insert(*id, B64.encode(Sha256::digest(bytes)));
        }
        let now = crate::now_ms();
        let files = [
            (
                "productierapport.xlsx",
                files::productierapport(&documents, &plan.matter)?,
            ),
            (
                "redaction-log.csv",
                files::redaction_log(&boxes, reviewer, now).into_bytes(),
            ),
            (
                "diwoo.xml",
                files::diwoo(&documents, organisation, now).into_bytes(),
            ),
            ("proofs.jsonl", self.proofs(&documents, size)?.into_bytes()),
            ("checkpoint.txt", stored.note.clone().into_bytes()),
        ];
        let mut body = format!(
            "{} woo\ncheckpoint {size}\nmatter {}\n",
            self.origin,
            plan.matter.trim()
        );
        for document in &documents {
            let seqs: Vec<String> = document.seqs.iter().map(u64::to_string).collect();
            body.push_str(&format!(
                "document {} {} {} {}\n",
                document.id,
                document.judgement.code(),
                pdf_hashes.get(&document.id).map_or("-", String::as_str),
                seqs.join(",")
            ));
        }
        for (name, bytes) in &files {
            write(&out.join(name), bytes)?;
            body.push_str(&format!(
                "file {name} {}\n",
                B64.encode(Sha256::digest(bytes))
            ));
        }
        let verifier = self.write_verifier_key(out)?;
        write(
            &out.join("manifest.txt"),
            sign_note(&self.origin, &body, &self.signer).as_bytes(),
        )?;
        write(
            &out.join("README.txt"),
            readme(plan, &summary, &verifier).as_bytes(),
        )?;
        Ok(summary)
    }

    /// The messages among `wanted` in `room`, read as their participants
    /// saw them, with the room's name at the end.
    fn read_messages(
        &self,
        room: &str,
        wanted: &BTreeSet<u64>,
        size: u64,
    ) -> Result<(Option<String>, HashMap<u64, Message>)> {
        let mut messages = HashMap::new();
        let records = self.log.room_records(room, size)?;
        let context = self.follow_room(room, &records, wanted, |seq, entry, event, context| {
            let decryption = match entry.event_type.as_str() {
                "m.room.encrypted" => self.decryption_of(seq)?.filter(|&d| d < size),
                _ => None,
            };
            let plaintext = match decryption {
                Some(d) => match self.open_decryption(d) {
                    Ok(opened) => Some(opened.plaintext),
                    Err(Error::Erased { .. }) => None,
                    Err(e) => return Err(e),
                },
                None => None,
            };
            let shown = match &plaintext {
                Some(plaintext) => clear_event(&event, plaintext),
                None => event,
            };
            if let Some(body) = message_body(&shown, &entry) {
                messages.insert(
                    seq,
                    Message {
                        seq,
                        decryption: decryption.filter(|_| plaintext.is_some()),
                        event_id: entry.event_id.clone(),
                        ts: entry.origin_server_ts,
                        sender: sender_name(context, &shown, &entry),
                        body,
                    },
                );
            }
            Ok(())
        })?;
        Ok((context.name().map(str::to_owned), messages))
    }

    /// One line per record the documents show: its leaf hash and its
    /// inclusion proof in the tree of `size` records.
    fn proofs(&self, documents: &[Document], size: u64) -> Result<String> {
        let mut out = String::new();
        let seqs: BTreeSet<u64> = documents.iter().flat_map(|d| d.seqs.clone()).collect();
        for seq in seqs {
            let line = check::ProofLine {
                seq,
                leaf: B64.encode(self.log.leaf_hash(seq)?),
                proof: self
                    .log
                    .inclusion_proof(seq, size)?
                    .iter()
                    .map(|h| B64.encode(h))
                    .collect(),
            };
            out.push_str(&serde_json::to_string(&line).expect("lines serialize"));
            out.push('\n');
        }
        Ok(out)
    }
}

pub(crate) fn is_message(event: &EventEntry) -> bool {
    MESSAGE_TYPES.contains(&event.event_type.as_str()) && event.soft_failed.is_none()
}

/// The Europe/Amsterdam day of a time.
pub(crate) fn day_of(ms: u64) -> Date {
    let timestamp = jiff::Timestamp::from_millisecond(i64::try_from(ms).unwrap_or(i64::MAX))
        .unwrap_or_default();
    match jiff::tz::TimeZone::get("Europe/Amsterdam") {
        Ok(tz) => timestamp.to_zoned(tz).date(),
        Err(_) => timestamp.to_zoned(jiff::tz::TimeZone::UTC).date(),
    }
}

/// `14:05`, Europe/Amsterdam.
pub(crate) fn clock(ms: u64) -> String {
    let timestamp = jiff::Timestamp::from_millisecond(i64::try_from(ms).unwrap_or(i64::MAX))
        .unwrap_or_default();
    let tz = jiff::tz::TimeZone::get("Europe/Amsterdam").unwrap_or(jiff::tz::TimeZone::UTC);
    timestamp.to_zoned(tz).strftime("%H:%M").to_string()
}

/// What a reader sees of a message; none for what is no message to a
/// reader (a reaction sent encrypted, say).
fn message_body(event: &Value, entry: &EventEntry) -> Option<String> {
    let content = &event["content"];
    let text = |v: &Value| v.as_str().unwrap_or("").to_owned();
    match event["type"].as_str() {
        Some("m.room.encrypted") => {
            Some("[versleuteld bericht: de sleutel heeft het archief niet bereikt]".to_owned())
        }
        Some("m.sticker") => Some(format!("[sticker: {}]", text(&content["body"]))),
        Some("m.room.message") => {
            if content["m.relates_to"]["rel_type"] == "m.replace" {
                let new = &content["m.new_content"];
                return Some(format!("(bewerkt) {}", text(&new["body"])));
            }
            let body = text(&content["body"]);
            Some(match content["msgtype"].as_str() {
                Some("m.image" | "m.file" | "m.video" | "m.audio") => {
                    let file = content["filename"].as_str().unwrap_or(&body);
                    let caption = if content["filename"].is_string() && body != file {
                        format!(" {body}")
                    } else {
                        String::new()
                    };
                    format!("[bijlage: {file}]{caption}")
                }
                Some("m.emote") => format!("* {body}"),
                _ => body,
            })
        }
        _ if entry.event_type == "m.room.message" => Some(String::new()),
        _ => None,
    }
}

/// Who sent a message, by name: an imported message's author as the chat
/// named them, else the sender's display name at the time.
fn sender_name(context: &RoomContext, event: &Value, entry: &EventEntry) -> String {
    event["content"][crate::import::whatsapp::PROVENANCE_KEY]["author"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| context.display_name(&entry.sender))
}

/// Checks what can be checked of a plan without the vault.
fn check_plan(plan: &WooPlan) -> Result<()> {
    let refuse = |text: String| Err(Error::Refused(text));
    let matter = plan.matter.trim();
    if matter.chars().count() < 2 || matter.chars().any(char::is_control) {
        return refuse(
            "the plan's `matter` (the request's matter number) needs at least two characters on one line"
                .into(),
        );
    }
    if plan.documents.is_empty() {
        return refuse("the plan names no documents".into());
    }
    let mut seen = BTreeSet::new();
    for document in &plan.documents {
        let id = document.id;
        if !seen.insert(id) {
            return refuse(format!("document {id} is in the plan twice"));
        }
        let Some(judgement) = Judgement::parse(&document.judgement) else {
            return refuse(format!(
                "document {id}: the judgement {:?} is none of openbaar, deels openbaar, niet openbaar, reeds openbaar",
                document.judgement
            ));
        };
        for ground in document
            .grounds
            .iter()
            .chain(document.redactions.iter().map(|r| &r.ground))
        {
            if !is_ground(ground.trim()) {
                return refuse(format!(
                    "document {id}: {ground:?} is not a Woo ground (5.1.1a-e, 5.1.2a-i, 5.1.4, 5.1.5, 5.2, 5.4, 5.4a, dubbel)"
                ));
            }
        }
        let has_redactions = !document.redactions.is_empty();
        match judgement {
            Judgement::Public if has_redactions || !document.grounds.is_empty() => {
                return refuse(format!(
                    "document {id} is openbaar but has redactions or grounds: make it deels openbaar"
                ));
            }
            Judgement::PartlyPublic if !has_redactions => {
                return refuse(format!(
                    "document {id} is deels openbaar but redacts nothing: add its redactions"
                ));
            }
            Judgement::NotPublic if document.grounds.is_empty() => {
                return refuse(format!("document {id} is niet openbaar: name its grounds"));
            }
            Judgement::NotPublic | Judgement::AlreadyPublic if has_redactions => {
                return refuse(format!(
                    "document {id} is {} and is not published here: it takes no redactions",
                    judgement.label().to_lowercase()
                ));
            }
            Judgement::AlreadyPublic if document.link.trim().is_empty() => {
                return refuse(format!(
                    "document {id} is reeds openbaar: give the `link` where it was published"
                ));
            }
            _ => {}
        }
        for (n, redaction) in document.redactions.iter().enumerate() {
            if normalize(&redaction.passage).trim().is_empty() {
                return refuse(format!("document {id}: redaction {} has no passage", n + 1));
            }
        }
    }
    Ok(())
}

/// The text as the documents show it: without the invisible marks chat
/// apps insert, carriage returns or tabs.
pub(crate) fn normalize(text: &str) -> String {
    text.chars()
        .filter(|c| {
            !matches!(c, '\r' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2064}' | '\u{FEFF}')
        })
        .map(|c| if c == '\t' { ' ' } else { c })
        .collect()
}

/// Reads a document's messages and applies its redactions; refused if a
/// redaction's passage is not in it (a typo would otherwise publish what
/// was meant to be redacted).
fn make_document(
    planned: &PlannedDocument,
    date: Date,
    room_name: Option<&str>,
    messages: &[&Message],
    family: u64,
) -> Result<Document> {
    let id = planned.id;
    let judgement = Judgement::parse(&planned.judgement).expect("checked before");
    let mut texts: Vec<(String, String, Marked, Marked)> = messages
        .iter()
        .map(|m| {
            (
                m.event_id.clone(),
                clock(m.ts),
                Marked::new(normalize(&m.sender)),
                Marked::new(normalize(&m.body)),
            )
        })
        .collect();
    let mut grounds: BTreeSet<String> = planned
        .grounds
        .iter()
        .map(|g| g.trim().to_owned())
        .collect();
    let mut name_redacted = false;
    for (n, redaction) in planned.redactions.iter().enumerate() {
        let passage = normalize(&redaction.passage);
        let ground = redaction.ground.trim().to_owned();
        if let Some(message) = &redaction.message
            && !texts.iter().any(|(event_id, ..)| event_id == message)
        {
            return Err(Error::Refused(format!(
                "document {id}: redaction {} names the message {message}, which is not in it",
                n + 1
            )));
        }
        let mut found = 0;
        for (event_id, _, sender, body) in &mut texts {
            if redaction.message.as_ref().is_some_and(|m| m != event_id) {
                continue;
            }
            found += sender.mark(&passage, &ground) + body.mark(&passage, &ground);
        }
        if room_name.is_some_and(|name| normalize(name).contains(&passage)) {
            name_redacted = true;
            found += 1;
        }
        if found == 0 {
            return Err(Error::Refused(format!(
                "document {id}: the passage of redaction {} is not in the document; nothing was made",
                n + 1
            )));
        }
        grounds.insert(ground);
    }
    let day = date.strftime("%-d-%-m-%Y").to_string();
    let title = match room_name {
        Some(name) if !name_redacted => format!("Chat {}, {day}", normalize(name)),
        _ => format!("Chatgesprek {id}, {day}"),
    };
    let mut seqs: Vec<u64> = messages
        .iter()
        .flat_map(|m| std::iter::once(m.seq).chain(m.decryption))
        .collect();
    seqs.sort_unstable();
    Ok(Document {
        id,
        title,
        date,
        judgement,
        grounds,
        planned: planned.clone(),
        messages: texts
            .into_iter()
            .map(|(event_id, time, sender, body)| {
                let mut header = Marked::new(format!("{time}  "));
                header.append(sender);
                Shown {
                    event_id,
                    header,
                    body,
                }
            })
            .collect(),
        seqs,
        family,
    })
}

impl Marked {
    fn new(text: String) -> Self {
        Self {
            text,
            marks: Vec::new(),
        }
    }

    /// Marks every occurrence of `passage`; returns how many.
    fn mark(&mut self, passage: &str, ground: &str) -> usize {
        let found: Vec<usize> = self.text.match_indices(passage).map(|(at, _)| at).collect();
        for &at in &found {
            self.marks.push((at..at + passage.len(), ground.to_owned()));
        }
        found.len()
    }

    fn append(&mut self, other: Marked) {
        let offset = self.text.len();
        self.text.push_str(&other.text);
        self.marks.extend(
            other
                .marks
                .into_iter()
                .map(|(range, ground)| (range.start + offset..range.end + offset, ground)),
        );
    }

    /// The text as runs: `(text, None)` shown, `(text, Some(grounds))`
    /// redacted; overlapping marks make one run naming all their grounds.
    pub fn runs(&self) -> Vec<(&str, Option<String>)> {
        let mut marks = self.marks.clone();
        marks.sort_by_key(|(range, _)| (range.start, range.end));
        let mut merged: Vec<(std::ops::Range<usize>, BTreeSet<String>)> = Vec::new();
        for (range, ground) in marks {
            match merged.last_mut() {
                Some((last, grounds)) if range.start < last.end => {
                    last.end = last.end.max(range.end);
                    grounds.insert(ground);
                }
                _ => merged.push((range, BTreeSet::from([ground]))),
            }
        }
        let mut runs = Vec::new();
        let mut at = 0;
        for (range, grounds) in merged {
            if range.start > at {
                runs.push((&self.text[at..range.start], None));
            }
            let label: Vec<String> = grounds.into_iter().collect();
            runs.push((&self.text[range.clone()], Some(label.join(", "))));
            at = range.end;
        }
        if at < self.text.len() {
            runs.push((&self.text[at..], None));
        }
        runs
    }
}

fn readme(plan: &WooPlan, summary: &WooSummary, verifier: &str) -> String {
    let decision = if plan.decision.trim().is_empty() {
        String::new()
    } else {
        format!(" ({})", plan.decision.trim())
    };
    format!(
        "Archipel Woo package for matter {matter}{decision}.\n\n\
         {documents} documents: {published} published in documenten/ (each named after its\n\
         document number), {not_included} withheld whole or published before. Redacted passages\n\
         are removed from the PDFs, not covered: each black box names its Woo ground.\n\n\
         productierapport.xlsx  the inventory, for the Woo platform\n\
         redaction-log.csv      every redaction: document, page, message, ground, size\n\
         diwoo.xml              DiWoo metadata of the published documents\n\
         manifest.txt           signed by the archive: every document, its judgement, the\n\
         \x20                      SHA-256 of its PDF and the archive records it shows\n\
         proofs.jsonl           each record's place in the archive's log, proven against\n\
         \x20                      checkpoint.txt (a signed checkpoint of {size} records)\n\n\
         Check it offline with:\n  archipel vault verify-woo <this folder> --verifier-key '{verifier}'\n\
         (take the key from a trusted source, not from this folder).\n",
        matter = plan.matter.trim(),
        documents = summary.documents,
        published = summary.published,
        not_included = summary.not_included,
        size = summary.checkpoint_size,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grounds_are_the_woo_codes() {
        for code in [
            "5.1.1a", "5.1.1e", "5.1.2e", "5.1.2i", "5.1.4", "5.2", "5.4a", "dubbel",
        ] {
            assert!(is_ground(code), "{code}");
        }
        for code in ["5.1.1", "5.1.1f", "5.1.2j", "5.3", "5.1.2E", "", "5.2 "] {
            assert!(!is_ground(code), "{code}");
        }
    }

    #[test]
    fn judgements_read_as_written() {
        assert_eq!(
            Judgement::parse("Deels openbaar"),
            Some(Judgement::PartlyPublic)
        );
        assert_eq!(
            Judgement::parse("deels-openbaar"),
            Some(Judgement::PartlyPublic)
        );
        assert_eq!(
            Judgement::parse(" niet openbaar "),
            Some(Judgement::NotPublic)
        );
        assert_eq!(Judgement::parse("openbaar"), Some(Judgement::Public));
        assert_eq!(Judgement::parse("geheim"), None);
    }

    #[test]
    fn overlapping_redactions_make_one_box_with_both_grounds() {
        let mut text = Marked::new("bel Jan de Vries op 0612345678".into());
        assert_eq!(text.mark("Jan de Vries", "5.1.2e"), 1);
        assert_eq!(text.mark("Vries op 06", "5.2"), 1);
        assert_eq!(text.mark("nergens", "5.2"), 0);
        let runs = text.runs();
        assert_eq!(
            runs,
            vec![
                ("bel ", None),
                ("Jan de Vries op 06", Some("5.1.2e, 5.2".to_owned())),
                ("12345678", None),
            ]
        );
    }

    #[test]
    fn a_plan_is_checked_before_anything_is_read() {
        let document = |judgement: &str| PlannedDocument {
            id: 7,
            judgement: judgement.into(),
            ..PlannedDocument::default()
        };
        let plan = |documents| WooPlan {
            matter: "WOO-1".into(),
            decision: String::new(),
            documents,
        };
        assert!(check_plan(&plan(vec![document("openbaar")])).is_ok());
        let refused = |plan: WooPlan| check_plan(&plan).expect_err("refused").to_string();
        assert!(refused(plan(vec![document("")])).contains("judgement"));
        assert!(refused(plan(vec![document("deels openbaar")])).contains("redacts nothing"));
        assert!(refused(plan(vec![document("niet openbaar")])).contains("grounds"));
        assert!(refused(plan(vec![document("reeds openbaar")])).contains("link"));
        assert!(refused(plan(vec![document("openbaar"), document("openbaar")])).contains("twice"));
        let mut bad_ground = document("deels openbaar");
        bad_ground.redactions.push(PlannedRedaction {
            passage: "x".into(),
            ground: "5.1.3".into(),
            message: None,
        });
        assert!(refused(plan(vec![bad_ground])).contains("not a Woo ground"));
        let mut no_matter = plan(vec![document("openbaar")]);
        no_matter.matter = "W".into();
        assert!(refused(no_matter).contains("matter"));
    }
}
