//! e-Depot transfers: a SIP as the Nationaal Archief's MDTO SIP
//! specification lays it out, packed in one tar container with its pakbon
//! beside it.
//!
//! ```text
//! OUT/
//!   TR-000001.tar                 the SIP:
//!     chatarchief/                  the archive (Archief)
//!       chatarchief.mdto.xml
//!       gesprek-<seq>/              a conversation (Dossier), named after its
//!         gesprek-<seq>.mdto.xml    first record in the log
//!         bericht-<seq>/            a message (Archiefstuk)
//!           bericht-<seq>.mdto.xml
//!           bericht.json            the event as its participants saw it
//!           bericht.json.bestand.mdto.xml
//!           bijlage-1.jpg           its attachments
//!           bijlage-1.jpg.bestand.mdto.xml
//!   pakbon.xml                    reference, container hash, counts
//! ```
//!
//! Each message's valuation (B, or V with its retention period) comes from
//! the retention policy as it stands; a message under a legal hold carries
//! that as a restriction on its use. Making a SIP records the transfer
//! ([`crate::transfer`]); its records are marked transferred only when a
//! records manager records the archive service's receipt.

pub mod mdto;

use std::{
    collections::BTreeMap,
    io::{BufWriter, Write},
    path::Path,
};

use jiff::civil::Date;
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use self::mdto::{Appraisal, Event, File, Object, Reference, SOURCE_LOG, SOURCE_MATRIX};
use super::{clear_event, woo::day_of};
use crate::{
    Error, Organisation, Result, Vault,
    export::{amsterdam_time, xml},
    record::{Entry, EventEntry},
    retention::{Judge, RetentionPolicy, Valuation},
};

/// What to transfer.
#[derive(Clone, Debug, Default)]
pub struct SipScope {
    pub room: Option<String>,
    /// Messages sent at or after this time (ms since the Unix epoch)...
    pub from_ms: Option<u64>,
    /// ...and before this one.
    pub until_ms: Option<u64>,
    /// Only permanent records past the policy's transfer term.
    pub due_only: bool,
    /// The top aggregation in the archive service's system the delivery
    /// goes to, as agreed with it.
    pub target: Option<String>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct SipSummary {
    pub reference: String,
    /// The container's file name, and its SHA-256 (hex).
    pub container: String,
    pub sha256: String,
    pub conversations: usize,
    pub messages: usize,
    pub permanent: usize,
    pub temporary: usize,
    /// Files other than sidecars, and their bytes.
    pub files: usize,
    pub bytes: u64,
    /// Left out: erased, not yet due, or transferred before.
    pub erased: usize,
    pub not_due: usize,
    pub transferred_before: usize,
}

/// A message chosen for the SIP.
struct Item {
    seq: u64,
    captured_ts: u64,
    entry: EventEntry,
    appraisal: Appraisal,
    restriction: (&'static str, Option<String>),
}

/// A writer that hashes what passes through it.
struct Hashing<W> {
    inner: W,
    hash: Sha256,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// The tar container being written: entries under a fixed time, and the
/// counts the pakbon gives.
struct Container<'a, W: Write> {
    tar: tar::Builder<Hashing<W>>,
    mtime: u64,
    /// xsd:dateTime of the checksums.
    checked_at: String,
    /// Where attachments are written on their way in (beside the SIP:
    /// they are plaintext).
    scratch: &'a Path,
    objects: usize,
    files: usize,
    bytes: u64,
    media_types: std::collections::BTreeSet<String>,
}

impl<W: Write> Container<'_, W> {
    fn dir(&mut self, path: &str) -> Result<()> {
        let mut header = tar::Header::new_ustar();
        header.set_entry_type(tar::EntryType::Directory);
        header.set_mode(0o755);
        header.set_size(0);
        header.set_mtime(self.mtime);
        self.tar
            .append_data(&mut header, format!("{path}/"), std::io::empty())
            .map_err(|e| Error::io(format!("writing {path}/ into the SIP"), e))
    }

    fn file(&mut self, path: &str, size: u64, data: impl std::io::Read) -> Result<()> {
        let mut header = tar::Header::new_ustar();
        header.set_mode(0o644);
        header.set_size(size);
        header.set_mtime(self.mtime);
        self.tar
            .append_data(&mut header, path, data)
            .map_err(|e| Error::io(format!("writing {path} into the SIP"), e))
    }

    /// A sidecar: an information object's.
    fn object(&mut self, path: &str, object: &Object<'_>) -> Result<()> {
        self.objects += 1;
        let text = object.xml();
        self.file(path, text.len() as u64, text.as_bytes())
    }

    /// A file and its sidecar beside it.
    fn payload(
        &mut self,
        dir: &str,
        name: &str,
        bytes: &[u8],
        media_type: Option<&str>,
        represents: Reference,
    ) -> Result<()> {
        let sha256_hex = hex(&Sha256::digest(bytes));
        self.file(&format!("{dir}/{name}"), bytes.len() as u64, bytes)?;
        let (_, _, list) = mdto::format_of(name, media_type);
        if list != "PRONOM-register" {
            self.media_types
                .insert(media_type.unwrap_or("application/octet-stream").to_owned());
        }
        let sidecar = File {
            name,
            size: bytes.len() as u64,
            media_type,
            sha256_hex: &sha256_hex,
            checked_at: &self.checked_at,
            represents,
        }
        .xml();
        self.files += 1;
        self.bytes += bytes.len() as u64;
        self.file(
            &format!("{dir}/{name}.bestand.mdto.xml"),
            sidecar.len() as u64,
            sidecar.as_bytes(),
        )
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `2026-12-05T14:05:33+01:00`, Europe/Amsterdam.
fn zoned(ms: u64) -> String {
    let timestamp = jiff::Timestamp::from_millisecond(i64::try_from(ms).unwrap_or(i64::MAX))
        .unwrap_or_default();
    let tz = jiff::tz::TimeZone::get("Europe/Amsterdam").unwrap_or(jiff::tz::TimeZone::UTC);
    timestamp
        .to_zoned(tz)
        .strftime("%Y-%m-%dT%H:%M:%S%:z")
        .to_string()
}

/// `.jpg` from a file name, if it has a plain extension.
fn extension(name: &str) -> String {
    name.rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .filter(|e| !e.is_empty() && e.len() <= 8 && e.bytes().all(|b| b.is_ascii_alphanumeric()))
        .map(|e| format!(".{e}"))
        .unwrap_or_default()
}

impl Vault {
    /// Writes a SIP of the messages `scope` selects into the new folder
    /// `out`, valued by `policy`, made by `organisation`, and records the
    /// transfer as `actor`'s. `progress` hears (messages written, all).
    pub fn transfer_sip(
        &self,
        scope: &SipScope,
        policy: &RetentionPolicy,
        organisation: &Organisation,
        actor: &str,
        out: &Path,
        mut progress: impl FnMut(u64, u64),
    ) -> Result<SipSummary> {
        super::refuse_non_empty(out)?;
        let size = self.log.size()?;
        let now = crate::now_ms();
        let mut summary = SipSummary::default();
        let mut judge = Judge::new(self, policy)?;
        let candidates: Vec<u64> = match &scope.room {
            Some(room) => self.log.room_records(room, size)?,
            None => (0..size).collect(),
        };
        let mut rooms: BTreeMap<String, Vec<Item>> = BTreeMap::new();
        for seq in candidates {
            let record = self.log.record(seq)?;
            let Entry::Event(entry) = record.entry else {
                continue;
            };
            let ts = entry.origin_server_ts;
            if !super::woo::is_message(&entry)
                || scope.from_ms.is_some_and(|t| ts < t)
                || scope.until_ms.is_some_and(|t| ts >= t)
            {
                continue;
            }
            if self.log.erasure_of(seq)?.is_some() {
                summary.erased += 1;
                continue;
            }
            if self.transferred(seq)?.is_some() {
                summary.transferred_before += 1;
                continue;
            }
            let made = self.made_at(record.captured_ts, &entry);
            let appraisal = match judge.valuation(&entry)? {
                Valuation::Permanent => Appraisal::Permanent,
                Valuation::DestroyAfter { years } => Appraisal::Temporary {
                    years,
                    from: day_of(made),
                },
            };
            let due = appraisal == Appraisal::Permanent
                && policy.due_for_transfer(now.saturating_sub(made));
            if scope.due_only && !due {
                summary.not_due += 1;
                continue;
            }
            let restriction = match judge.hold(&entry) {
                Some(hold) => (
                    "Overig",
                    Some(format!(
                        "juridische bewaarplicht {}: {}",
                        hold.reference, hold.reason
                    )),
                ),
                None => ("Nader te bepalen", None),
            };
            rooms.entry(entry.room_id.clone()).or_default().push(Item {
                seq,
                captured_ts: record.captured_ts,
                entry,
                appraisal,
                restriction,
            });
        }
        let total: usize = rooms.values().map(Vec::len).sum();
        if total == 0 {
            return Err(Error::Refused(
                "the selection holds no message to transfer".into(),
            ));
        }

        std::fs::create_dir_all(out)
            .map_err(|e| Error::io(format!("creating {}", out.display()), e))?;
        let part = out.join(".sip.tar.part");
        let file = std::fs::File::create(&part)
            .map_err(|e| Error::io(format!("creating {}", part.display()), e))?;
        let mut container = Container {
            tar: tar::Builder::new(Hashing {
                inner: BufWriter::new(file),
                hash: Sha256::new(),
            }),
            mtime: now / 1000,
            checked_at: jiff::Timestamp::from_millisecond(now as i64)
                .unwrap_or_default()
                .strftime("%Y-%m-%dT%H:%M:%SZ")
                .to_string(),
            scratch: out,
            objects: 0,
            files: 0,
            bytes: 0,
            media_types: Default::default(),
        };
        let top = "chatarchief";
        let archive = Reference {
            name: format!("Chatarchief {}", organisation.name),
            id: Some((self.origin.clone(), SOURCE_LOG.to_owned())),
        };
        container.dir(top)?;
        let mut dossiers = Vec::new();
        let mut records = Vec::new();
        let mut done = 0;
        let mut covers: Option<(Date, Date)> = None;
        let mut any_permanent = false;
        let mut longest = 0;
        for (room, items) in &rooms {
            let records_of_room = self.log.room_records(room, size)?;
            let first = records_of_room.first().copied().unwrap_or(0);
            let folder = format!("{top}/gesprek-{first}");
            container.dir(&folder)?;
            // The messages shown, each with its sender's name then.
            let wanted: std::collections::BTreeSet<u64> = items.iter().map(|i| i.seq).collect();
            let mut shown: BTreeMap<u64, (Value, String)> = BTreeMap::new();
            let context = self.follow_room(
                room,
                &records_of_room,
                &wanted,
                |seq, entry, event, context| {
                    shown.insert(seq, (event, context.display_name(&entry.sender)));
                    Ok(())
                },
            )?;
            let room_name = context.name().unwrap_or(room).to_owned();
            let dossier = Reference {
                name: format!("Chatgesprek {room_name}"),
                id: Some((room.clone(), "Matrix room_id".to_owned())),
            };
            let mut parts = Vec::new();
            for item in items {
                let Some((event, sender)) = shown.remove(&item.seq) else {
                    continue;
                };
                let name = format!(
                    "Chatbericht van {sender} in {room_name}, {}",
                    amsterdam_time(item.entry.origin_server_ts)
                );
                let message = Reference {
                    name: name.clone(),
                    id: Some((item.entry.event_id.clone(), SOURCE_MATRIX.to_owned())),
                };
                let dir = format!("{folder}/bericht-{}", item.seq);
                container.dir(&dir)?;
                let files =
                    self.write_message(&mut container, &dir, item, event, &message, size)?;
                let day = day_of(item.entry.origin_server_ts);
                container.object(
                    &format!("{dir}/bericht-{}.mdto.xml", item.seq),
                    &Object {
                        ids: vec![
                            (item.entry.event_id.clone(), SOURCE_MATRIX.to_owned()),
                            (
                                format!("{}#{}", self.origin, item.seq),
                                SOURCE_LOG.to_owned(),
                            ),
                        ],
                        name,
                        level: "Archiefstuk",
                        covers: Some((day, day)),
                        events: vec![
                            Event {
                                kind: "Verzending",
                                time: zoned(item.entry.origin_server_ts),
                                actor: Some(item.entry.sender.clone()),
                                result: None,
                            },
                            Event {
                                kind: "Opname",
                                time: zoned(item.captured_ts),
                                actor: None,
                                result: Some(format!(
                                    "vastgelegd op positie {} van het archieflog {}",
                                    item.seq, self.origin
                                )),
                            },
                        ],
                        appraisal: item.appraisal,
                        part_of: Some(Reference {
                            name: dossier.name.clone(),
                            id: dossier.id.clone(),
                        }),
                        parts: Vec::new(),
                        representations: files,
                        involved: vec![("Afzender", item.entry.sender.clone())],
                        creator: organisation,
                        restriction: item.restriction.clone(),
                    },
                )?;
                match item.appraisal {
                    Appraisal::Permanent => {
                        summary.permanent += 1;
                        any_permanent = true;
                    }
                    Appraisal::Temporary { years, .. } => {
                        summary.temporary += 1;
                        longest = longest.max(years);
                    }
                }
                covers = Some(match covers {
                    None => (day, day),
                    Some((a, b)) => (a.min(day), b.max(day)),
                });
                parts.push(message);
                records.push(item.seq);
                done += 1;
                progress(done, total as u64);
            }
            let days = items.iter().map(|i| day_of(i.entry.origin_server_ts));
            let span = days.clone().min().zip(days.max());
            container.object(
                &format!("{folder}/gesprek-{first}.mdto.xml"),
                &Object {
                    ids: vec![dossier.id.clone().expect("a dossier has an ID")],
                    name: dossier.name.clone(),
                    level: "Dossier",
                    covers: span,
                    events: Vec::new(),
                    appraisal: aggregate(items.iter().map(|i| i.appraisal)),
                    part_of: Some(Reference {
                        name: archive.name.clone(),
                        id: archive.id.clone(),
                    }),
                    parts,
                    representations: Vec::new(),
                    involved: Vec::new(),
                    creator: organisation,
                    restriction: ("Nader te bepalen", None),
                },
            )?;
            dossiers.push(dossier);
        }
        summary.conversations = dossiers.len();
        summary.messages = records.len();
        let first_day = covers.map_or_else(|| day_of(now), |(a, _)| a);
        container.object(
            &format!("{top}/{top}.mdto.xml"),
            &Object {
                ids: vec![archive.id.clone().expect("the archive has an ID")],
                name: archive.name.clone(),
                level: "Archief",
                covers,
                events: Vec::new(),
                appraisal: if any_permanent {
                    Appraisal::Permanent
                } else {
                    Appraisal::Temporary {
                        years: longest,
                        from: first_day,
                    }
                },
                part_of: None,
                parts: dossiers,
                representations: Vec::new(),
                involved: Vec::new(),
                creator: organisation,
                restriction: ("Nader te bepalen", None),
            },
        )?;

        let objects = container.objects;
        summary.files = container.files;
        summary.bytes = container.bytes;
        let media_types = std::mem::take(&mut container.media_types);
        let checked_at = std::mem::take(&mut container.checked_at);
        let mut hashing = container
            .tar
            .into_inner()
            .map_err(|e| Error::io("finishing the SIP", e))?;
        hashing
            .flush()
            .map_err(|e| Error::io("writing the SIP", e))?;
        summary.sha256 = hex(&hashing.hash.finalize_reset());
        let file = hashing
            .inner
            .into_inner()
            .map_err(|e| Error::io("writing the SIP", e.into_error()))?;
        file.sync_all()
            .map_err(|e| Error::io("writing the SIP", e))?;

        let transfer = self.record_transfer(&records, &summary.sha256, actor)?;
        summary.reference = transfer.reference.clone();
        summary.container = format!("{}.tar", transfer.reference);
        let container_path = out.join(&summary.container);
        std::fs::rename(&part, &container_path)
            .map_err(|e| Error::io(format!("naming {}", container_path.display()), e))?;
        let pakbon = pakbon(
            &summary,
            scope,
            organisation,
            actor,
            &checked_at,
            objects,
            &media_types,
        );
        crate::write_file(&out.join("pakbon.xml"), pakbon.as_bytes())?;
        Ok(summary)
    }

    /// Writes a message's files into `dir`: `bericht.json` and its
    /// attachments, each with its sidecar. Returns their names.
    fn write_message<W: Write>(
        &self,
        container: &mut Container<'_, W>,
        dir: &str,
        item: &Item,
        event: Value,
        message: &Reference,
        size: u64,
    ) -> Result<Vec<String>> {
        let represents = || Reference {
            name: message.name.clone(),
            id: message.id.clone(),
        };
        let decryption = match item.entry.event_type.as_str() {
            "m.room.encrypted" => self.decryption_proof(item.seq, size)?,
            _ => None,
        };
        let shown = match &decryption {
            Some((proof, _, _)) => clear_event(&event, &proof.plaintext),
            None => event,
        };
        let json = serde_json::to_vec_pretty(&shown).expect("events serialize");
        container.payload(
            dir,
            "bericht.json",
            &json,
            Some("application/json"),
            represents(),
        )?;
        let mut names = vec!["bericht.json".to_owned()];
        // The event's own media, then those of its decryption.
        let original = shown["content"]["filename"]
            .as_str()
            .or_else(|| shown["content"]["body"].as_str())
            .unwrap_or("");
        let media_type = shown["content"]["info"]["mimetype"].as_str();
        let own_key = match item.entry.media.is_empty() {
            true => None,
            false => Some(self.data_key(item.seq)?),
        };
        let own = own_key.iter().flat_map(|key| {
            item.entry
                .media
                .iter()
                .map(move |copy| (key, item.seq, copy))
        });
        let decrypted = decryption
            .iter()
            .flat_map(|(proof, key, media)| media.iter().map(move |copy| (key, proof.seq, copy)));
        for (n, (key, seq, copy)) in own.chain(decrypted).enumerate() {
            let name = format!("bijlage-{}{}", n + 1, extension(original));
            // Beside the SIP, not in a shared temporary folder: it is plaintext.
            let temp = tempfile::NamedTempFile::new_in(container.scratch)
                .map_err(|e| Error::io("a temporary file for an attachment", e))?;
            self.export_media(key, seq, copy, temp.path())?;
            let bytes = std::fs::read(temp.path())
                .map_err(|e| Error::io("reading an attachment back", e))?;
            let kind = if n == 0 { media_type } else { None };
            container.payload(dir, &name, &bytes, kind, represents())?;
            names.push(name);
        }
        Ok(names)
    }
}

/// An aggregation's valuation: permanent if any part is, else the longest
/// period from the earliest start.
fn aggregate(parts: impl Iterator<Item = Appraisal>) -> Appraisal {
    let mut longest: Option<(u32, Date)> = None;
    for part in parts {
        match part {
            Appraisal::Permanent => return Appraisal::Permanent,
            Appraisal::Temporary { years, from } => {
                longest = Some(match longest {
                    None => (years, from),
                    Some((y, f)) => (y.max(years), f.min(from)),
                });
            }
        }
    }
    let (years, from) = longest.unwrap_or((0, Date::default()));
    Appraisal::Temporary { years, from }
}

fn pakbon(
    summary: &SipSummary,
    scope: &SipScope,
    organisation: &Organisation,
    actor: &str,
    created: &str,
    objects: usize,
    media_types: &std::collections::BTreeSet<String>,
) -> String {
    let formats: String = media_types
        .iter()
        .map(|t| format!("    <formaat>{}</formaat>\n", xml(t)))
        .collect();
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <pakbon>\n\
         \x20 <identificatie>{reference}</identificatie>\n\
         \x20 <naam>Overbrenging chatarchief {organisation_name}, {reference}</naam>\n\
         \x20 <doellocatie>{target}</doellocatie>\n\
         \x20 <container naam=\"{container}\" algoritme=\"SHA-256\">{sha}</container>\n\
         \x20 <aangemaakt>{created}</aangemaakt>\n\
         \x20 <archiefvormer identificatie=\"{organisation_id}\">{organisation_name}</archiefvormer>\n\
         \x20 <contactpersoon>{actor}</contactpersoon>\n\
         \x20 <aantalInformatieobjecten>{objects}</aantalInformatieobjecten>\n\
         \x20 <aantalBestanden>{files}</aantalBestanden>\n\
         \x20 <aantalBestandenZonderMetagegevens>{files}</aantalBestandenZonderMetagegevens>\n\
         \x20 <omvangBestanden>{bytes}</omvangBestanden>\n\
         \x20 <bijzondereFormaten>\n{formats}  </bijzondereFormaten>\n\
         </pakbon>\n",
        reference = xml(&summary.reference),
        organisation_name = xml(&organisation.name),
        organisation_id = xml(&organisation.identifier),
        target = xml(scope
            .target
            .as_deref()
            .unwrap_or("nader overeen te komen met de archiefdienst")),
        container = xml(&summary.container),
        sha = summary.sha256,
        actor = xml(actor),
        files = summary.files,
        bytes = summary.bytes,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attachment_names_keep_only_a_plain_extension() {
        assert_eq!(extension("foto 1.JPG"), ".jpg");
        assert_eq!(extension("rapport.tar.gz"), ".gz");
        assert_eq!(extension("geen-extensie"), "");
        assert_eq!(extension("x.<script>"), "");
        assert_eq!(extension("x.verylongextension"), "");
    }

    #[test]
    fn an_aggregation_is_permanent_if_any_part_is() {
        let day = |d| Date::new(2026, 1, d).expect("a date");
        let temporary = |years, d| Appraisal::Temporary {
            years,
            from: day(d),
        };
        assert_eq!(
            aggregate([temporary(10, 3), Appraisal::Permanent].into_iter()),
            Appraisal::Permanent
        );
        assert_eq!(
            aggregate([temporary(10, 3), temporary(1, 2)].into_iter()),
            temporary(10, 2)
        );
    }
}
