//! WhatsApp's "Export chat": a ZIP archive of the chat's text and its
//! media, or the text alone, from Android or iOS, in Dutch or English.
//!
//! [`text`] reads the chat's text; [`Export::read`] reads the file a person
//! hands over, and [`Export::events`] makes the chat's messages into events
//! of a room of their own, one per chat of one owner, for
//! [`crate::Vault::import`].
//!
//! Each message becomes an `m.room.message` whose content keeps what the
//! export said (`nl.archipel.import`: the export's hash, the line, the
//! author as the app wrote them, the device's local time). Its event ID is
//! a hash of the room, the time, the author, the text and how many
//! identical messages came before it, so a file imported twice, or a later
//! export of the same chat, adds only what the vault does not hold.

pub mod text;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD as B64URL};
use jiff::tz::TimeZone;
use serde_json::{Value, json, value::RawValue};
use sha2::{Digest, Sha256};

use crate::{CapturedEvent, Error, MediaSource, Result};
pub use text::{ChatMessage, ParseError, parse};

/// The largest chat text read (a chat of years is a few MB).
const MAX_TEXT: u64 = 64 << 20;
/// The largest file of an export (WhatsApp sends documents up to 2 GB).
const MAX_FILE: u64 = 2 << 30;
/// The most files an export may hold.
const MAX_ENTRIES: usize = 100_000;

/// The key under which an imported message's content says where it came
/// from.
pub const PROVENANCE_KEY: &str = "nl.archipel.import";

/// A file of the export: where it was unpacked, and what it is.
#[derive(Clone, Debug)]
struct File {
    path: PathBuf,
    sha256: String,
    size: u64,
}

/// An export as handed over, read and unpacked.
pub struct Export {
    /// The file's name, without its folder.
    pub file_name: String,
    /// SHA-256 (hex) of the file's bytes.
    pub sha256: String,
    /// The chat's name, from the name of its text ("WhatsApp Chat with
    /// Jan.txt") or else of the file ("WhatsApp Chat - Jan.zip"). It names
    /// the chat's room: set it before [`Export::room_id`] to name it
    /// otherwise.
    pub title: String,
    pub messages: Vec<ChatMessage>,
    files: HashMap<String, File>,
    /// Where the media were unpacked; removed with the export.
    _unpacked: tempfile::TempDir,
}

/// Whose chat it is, and the room the import makes of it.
pub struct Owner<'a> {
    /// The owner's Matrix user ID.
    pub user_id: &'a str,
    /// The owner's name as the export writes it: their messages are sent
    /// by `user_id`. Without it, every author is only a name.
    pub name: Option<&'a str>,
    /// The time zone the owner's phone was in (the export does not say).
    pub time_zone: &'a TimeZone,
}

impl Export {
    /// Reads the export at `path` (a `.zip` or the chat's `.txt`),
    /// unpacking its media under `scratch`. Refused, naming the line, if any
    /// line cannot be read or names a file the export does not hold.
    pub fn read(path: &Path, scratch: &Path) -> Result<Self> {
        let file_name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let refused = |why: String| Error::Refused(format!("{file_name}: {why}"));
        let sha256 = hash_file(path)?;
        std::fs::create_dir_all(scratch).map_err(|e| Error::io(scratch.display(), e))?;
        let unpacked = tempfile::Builder::new()
            .prefix(".import-")
            .tempdir_in(scratch)
            .map_err(|e| Error::io(scratch.display(), e))?;
        let mut files = HashMap::new();
        let (text, named) = if is_zip(path)? {
            unzip(path, unpacked.path(), &mut files).map_err(refused)?
        } else {
            let file = std::fs::File::open(path).map_err(|e| Error::io(path.display(), e))?;
            (read_text(file).map_err(refused)?, file_name.clone())
        };
        let messages = parse(&text).map_err(|e| refused(e.to_string()))?;
        for message in &messages {
            if let Some(name) = &message.attachment
                && !files.contains_key(name)
            {
                return Err(refused(format!(
                    "line {}: {name} is not in the export (export the chat with its media)",
                    message.line
                )));
            }
        }
        Ok(Self {
            title: title(if named == "_chat.txt" {
                &file_name
            } else {
                &named
            }),
            file_name,
            sha256,
            messages,
            files,
            _unpacked: unpacked,
        })
    }

    /// The room of this chat for `owner` on `server_name`: the same for
    /// every export of the chat.
    pub fn room_id(&self, owner: &Owner<'_>, server_name: &str) -> String {
        let hash = Sha256::digest(format!("whatsapp\n{}\n{}", owner.user_id, self.title));
        format!("!whatsapp_{}:{server_name}", &B64URL.encode(hash)[..24])
    }

    /// The chat as events of [`Export::room_id`]: its name first, then
    /// each message, with the media it attached.
    pub fn events(&self, owner: &Owner<'_>, server_name: &str) -> Vec<CapturedEvent> {
        let room_id = self.room_id(owner, server_name);
        let ms = |message: &ChatMessage| {
            message
                .time
                .to_zoned(owner.time_zone.clone())
                .map(|t| u64::try_from(t.timestamp().as_millisecond()).unwrap_or(0))
                .unwrap_or(0)
        };
        let mut events = Vec::with_capacity(self.messages.len() + 1);
        let first = self.messages.first().map_or(0, ms);
        events.push(captured(
            json!({
                "type": "m.room.name",
                "state_key": "",
                "room_id": room_id,
                "event_id": event_id(&room_id, &["name", &self.title]),
                "sender": owner.user_id,
                "origin_server_ts": first,
                "content": {
                    "name": format!("WhatsApp: {}", self.title),
                    PROVENANCE_KEY: { "source": "whatsapp", "file_sha256": self.sha256 },
                },
            }),
            Vec::new(),
        ));
        let mut seen: HashMap<(String, Option<String>, String), usize> = HashMap::new();
        for message in &self.messages {
            let local_time = message.time.to_string();
            let occurrence = seen
                .entry((
                    local_time.clone(),
                    message.author.clone(),
                    message.text.clone(),
                ))
                .or_default();
            *occurrence += 1;
            let id = event_id(
                &room_id,
                &[
                    &local_time,
                    message.author.as_deref().unwrap_or(""),
                    &message.text,
                    &occurrence.to_string(),
                ],
            );
            let sender = match &message.author {
                Some(author) if Some(author.as_str()) == owner.name => owner.user_id.to_owned(),
                Some(author) => format!("whatsapp:{author}"),
                None => "whatsapp".to_owned(),
            };
            let mut content = json!({
                "msgtype": if message.author.is_some() { "m.text" } else { "m.notice" },
                "body": message.text,
                PROVENANCE_KEY: {
                    "source": "whatsapp",
                    "file_sha256": self.sha256,
                    "line": message.line,
                    "author": message.author,
                    "local_time": local_time,
                    "media_omitted": message.media_omitted,
                },
            });
            let mut media = Vec::new();
            if let Some(name) = &message.attachment {
                let file = &self.files[name];
                let mxc = format!("mxc://{server_name}/whatsapp_{}", &file.sha256[..32]);
                let caption = message.text.lines().skip(1).collect::<Vec<_>>().join("\n");
                content["msgtype"] = json!(msgtype(name));
                content["body"] = json!(if caption.trim().is_empty() {
                    name.clone()
                } else {
                    caption
                });
                content["filename"] = json!(name);
                content["url"] = json!(mxc);
                content["info"] = json!({ "size": file.size, "mimetype": mimetype(name) });
                media.push(MediaSource {
                    mxc,
                    path: file.path.clone(),
                    decrypted: false,
                });
            }
            events.push(captured(
                json!({
                    "type": "m.room.message",
                    "room_id": room_id,
                    "event_id": id,
                    "sender": sender,
                    "origin_server_ts": ms(message),
                    "content": content,
                }),
                media,
            ));
        }
        events
    }
}

fn captured(event: Value, media: Vec<MediaSource>) -> CapturedEvent {
    CapturedEvent {
        position: 0,
        event: RawValue::from_string(event.to_string()).expect("JSON is JSON"),
        media,
        soft_failed: None,
        bridge: None,
    }
}

fn event_id(room_id: &str, parts: &[&str]) -> String {
    let mut hash = Sha256::new();
    hash.update(room_id);
    for part in parts {
        hash.update([0]);
        hash.update(part);
    }
    format!("$whatsapp_{}", B64URL.encode(hash.finalize()))
}

/// The chat's name from the export's file name, as the apps name them.
fn title(file_name: &str) -> String {
    let stem = Path::new(file_name)
        .file_stem()
        .map_or_else(String::new, |s| s.to_string_lossy().into_owned());
    let stem = stem.trim();
    for prefix in [
        "WhatsApp Chat with ",
        "WhatsApp-chat met ",
        "WhatsApp Chat - ",
        "WhatsApp-chat - ",
    ] {
        if let Some(name) = stem.strip_prefix(prefix) {
            return name.trim().to_owned();
        }
    }
    stem.to_owned()
}

fn extension(name: &str) -> String {
    Path::new(name)
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default()
}

fn msgtype(name: &str) -> &'static str {
    match extension(name).as_str() {
        "jpg" | "jpeg" | "png" | "webp" | "gif" | "heic" => "m.image",
        "mp4" | "3gp" | "mov" => "m.video",
        "opus" | "ogg" | "m4a" | "aac" | "mp3" | "amr" => "m.audio",
        _ => "m.file",
    }
}

fn mimetype(name: &str) -> &'static str {
    match extension(name).as_str() {
        "jpg" | "jpeg" => "image/jpeg",
        "png" => "image/png",
        "webp" => "image/webp",
        "gif" => "image/gif",
        "heic" => "image/heic",
        "mp4" => "video/mp4",
        "3gp" => "video/3gpp",
        "mov" => "video/quicktime",
        "opus" | "ogg" => "audio/ogg",
        "m4a" => "audio/mp4",
        "aac" => "audio/aac",
        "mp3" => "audio/mpeg",
        "amr" => "audio/amr",
        "pdf" => "application/pdf",
        "vcf" => "text/vcard",
        "txt" => "text/plain",
        "docx" => "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "xlsx" => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        _ => "application/octet-stream",
    }
}

fn hash_file(path: &Path) -> Result<String> {
    let mut file = std::fs::File::open(path).map_err(|e| Error::io(path.display(), e))?;
    let mut hash = Sha256::new();
    std::io::copy(&mut file, &mut hash).map_err(|e| Error::io(path.display(), e))?;
    Ok(hex(&hash.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn is_zip(path: &Path) -> Result<bool> {
    let mut magic = [0u8; 4];
    let mut file = std::fs::File::open(path).map_err(|e| Error::io(path.display(), e))?;
    let read = file
        .read(&mut magic)
        .map_err(|e| Error::io(path.display(), e))?;
    Ok(read == 4 && magic == *b"PK\x03\x04")
}

/// The chat's text, at most [`MAX_TEXT`] bytes of UTF-8.
fn read_text(reader: impl Read) -> std::result::Result<String, String> {
    let mut bytes = Vec::new();
    reader
        .take(MAX_TEXT + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("the chat's text cannot be read: {e}"))?;
    if bytes.len() as u64 > MAX_TEXT {
        return Err(format!(
            "the chat's text is larger than {} MB",
            MAX_TEXT >> 20
        ));
    }
    String::from_utf8(bytes).map_err(|e| {
        format!(
            "the chat's text is not UTF-8 (at byte {})",
            e.utf8_error().valid_up_to()
        )
    })
}

/// Which of an archive's text files is the chat: iOS's `_chat.txt`,
/// Android's `WhatsApp Chat with ….txt`, or the only text file.
fn chat_entry(names: &[String]) -> Option<&String> {
    let texts: Vec<&String> = names.iter().filter(|n| extension(n) == "txt").collect();
    texts
        .iter()
        .find(|n| n.as_str() == "_chat.txt")
        .or_else(|| {
            texts
                .iter()
                .find(|n| n.starts_with("WhatsApp Chat") || n.starts_with("WhatsApp-chat"))
        })
        .or(if texts.len() == 1 {
            texts.first()
        } else {
            None
        })
        .copied()
}

/// Unpacks the archive at `path` into `into`: the chat's text and name are
/// returned, every other file is unpacked and listed in `files` by its name.
fn unzip(
    path: &Path,
    into: &Path,
    files: &mut HashMap<String, File>,
) -> std::result::Result<(String, String), String> {
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut archive =
        zip::ZipArchive::new(file).map_err(|e| format!("not a readable ZIP archive: {e}"))?;
    if archive.len() > MAX_ENTRIES {
        return Err(format!("more than {MAX_ENTRIES} files in the archive"));
    }
    let mut names = Vec::with_capacity(archive.len());
    for i in 0..archive.len() {
        let entry = archive
            .by_index(i)
            .map_err(|e| format!("file {i} of the archive: {e}"))?;
        let name = entry
            .enclosed_name()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .ok_or_else(|| format!("{:?} is not a file name", entry.name()))?;
        names.push(if entry.is_dir() { String::new() } else { name });
    }
    let chat = chat_entry(&names)
        .cloned()
        .ok_or("no chat text (_chat.txt or WhatsApp Chat ….txt) in the archive")?;
    let mut text = None;
    for (i, name) in names.iter().enumerate() {
        if name.is_empty() {
            continue;
        }
        let mut entry = archive
            .by_index(i)
            .map_err(|e| format!("{name} in the archive: {e}"))?;
        if *name == chat && text.is_none() {
            text = Some(read_text(&mut entry)?);
            continue;
        }
        let to = into.join(format!("{i}"));
        let mut out = std::fs::File::create(&to).map_err(|e| format!("unpacking {name}: {e}"))?;
        let mut hash = Sha256::new();
        let mut size = 0u64;
        let mut buffer = vec![0u8; 64 << 10];
        loop {
            let n = entry
                .read(&mut buffer)
                .map_err(|e| format!("{name} in the archive: {e}"))?;
            if n == 0 {
                break;
            }
            size += n as u64;
            if size > MAX_FILE {
                return Err(format!("{name} is larger than {} GB", MAX_FILE >> 30));
            }
            hash.update(&buffer[..n]);
            out.write_all(&buffer[..n])
                .map_err(|e| format!("unpacking {name}: {e}"))?;
        }
        files.insert(
            name.clone(),
            File {
                path: to,
                sha256: hex(&hash.finalize()),
                size,
            },
        );
    }
    let text = text.ok_or_else(|| "no chat text in the archive".to_owned())?;
    Ok((text, chat))
}
