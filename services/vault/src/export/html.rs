//! One conversation as a self-contained HTML page: no scripts, no external
//! resources, attachments referenced beside it.

use std::collections::HashMap;

use serde_json::Value;

use super::{ExportScope, Opened};
use crate::checkpoint::Checkpoint;

/// A room's name, topic and members' display names, as the scan reaches them.
pub(crate) struct RoomContext {
    room_id: String,
    name: Option<String>,
    topic: Option<String>,
    display_names: HashMap<String, String>,
}

impl RoomContext {
    pub fn new(room_id: &str) -> Self {
        Self {
            room_id: room_id.to_owned(),
            name: None,
            topic: None,
            display_names: HashMap::new(),
        }
    }

    /// Follows the room's state through an event.
    pub fn observe(&mut self, event: &Value) {
        let text = |pointer: &str| event.pointer(pointer).and_then(Value::as_str);
        match text("/type") {
            Some("m.room.name") => self.name = text("/content/name").map(str::to_owned),
            Some("m.room.topic") => self.topic = text("/content/topic").map(str::to_owned),
            Some("m.room.member") => {
                if let (Some(user), Some(name)) = (text("/state_key"), text("/content/displayname"))
                {
                    self.display_names.insert(user.to_owned(), name.to_owned());
                }
            }
            _ => {}
        }
    }

    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    pub fn display_name(&self, user: &str) -> String {
        self.display_names
            .get(user)
            .cloned()
            .unwrap_or_else(|| user.to_owned())
    }
}

/// Escapes text for HTML element content and attribute values.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `2026-11-23 14:05:09 CET`, in Europe/Amsterdam.
pub fn amsterdam_time(ms: u64) -> String {
    let Ok(timestamp) = jiff::Timestamp::from_millisecond(ms as i64) else {
        return format!("{ms} ms");
    };
    match jiff::tz::TimeZone::get("Europe/Amsterdam") {
        Ok(tz) => timestamp
            .to_zoned(tz)
            .strftime("%Y-%m-%d %H:%M:%S %Z")
            .to_string(),
        Err(_) => timestamp.strftime("%Y-%m-%d %H:%M:%S UTC").to_string(),
    }
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2em;color:#1b1b1b}\
table{border-collapse:collapse;width:100%}td{border-top:1px solid #ddd;padding:.4em;vertical-align:top}\
td.time,td.ref{white-space:nowrap;color:#555;font-size:.9em}small{color:#666}\
.body{white-space:pre-wrap}.note{color:#8a4b00;font-size:.9em;margin-top:.3em}\
.erased{color:#a00}.meta{color:#555}img{max-width:24em;display:block;margin-top:.3em}";

pub(crate) fn render(
    context: &RoomContext,
    opened: &[Opened],
    scope: &ExportScope,
    checkpoint: &Checkpoint,
) -> String {
    let seq_of: HashMap<&str, u64> = opened
        .iter()
        .map(|o| (o.entry.event_id.as_str(), o.seq))
        .collect();
    let link = |event_id: &str| match seq_of.get(event_id) {
        Some(seq) => format!("<a href=\"#r{seq}\">#{seq}</a>"),
        None => format!("<code>{}</code>", escape(event_id)),
    };
    // Notes on messages from later events: edits and redactions.
    let mut notes: HashMap<&str, Vec<String>> = HashMap::new();
    for o in opened {
        let Some(event) = &o.event else { continue };
        if let Some(target) = replaced(event) {
            notes.entry(target).or_default().push(format!(
                "edited at {} in {}",
                amsterdam_time(o.entry.origin_server_ts),
                link(&o.entry.event_id)
            ));
        }
        if let Some(target) = o.entry.redacts.as_deref() {
            notes.entry(target).or_default().push(format!(
                "hidden from chat clients by {} at {} ({}); the archive keeps the original",
                escape(&o.display_name),
                amsterdam_time(o.entry.origin_server_ts),
                link(&o.entry.event_id)
            ));
        }
    }

    let title = context
        .name
        .clone()
        .unwrap_or_else(|| context.room_id.clone());
    let mut rows = String::new();
    for o in opened {
        let what = match &o.event {
            None => format!(
                "<em class=\"erased\">Erased from the archive by decision {}.</em>",
                escape(o.erased.as_deref().unwrap_or("?"))
            ),
            Some(event) => describe(event, o, &link),
        };
        let extra: String = notes
            .get(o.entry.event_id.as_str())
            .map(|n| {
                n.iter()
                    .map(|note| format!("<div class=\"note\">{note}</div>"))
                    .collect()
            })
            .unwrap_or_default();
        rows.push_str(&format!(
            "<tr id=\"r{seq}\"><td class=\"time\">{time}</td><td>{name}<br><small>{sender}</small></td>\
             <td>{what}{extra}</td><td class=\"ref\">#{seq}</td></tr>\n",
            seq = o.seq,
            time = amsterdam_time(o.entry.origin_server_ts),
            name = escape(&o.display_name),
            sender = escape(&o.entry.sender),
        ));
    }
    let range = match (scope.from_ms, scope.until_ms) {
        (None, None) => "all time".to_owned(),
        (from, until) => format!(
            "{} to {}",
            from.map_or("the start".into(), amsterdam_time),
            until.map_or("the checkpoint".into(), amsterdam_time)
        ),
    };
    format!(
        "<!DOCTYPE html>\n<html lang=\"nl\"><head><meta charset=\"utf-8\">\
         <title>{title}</title><style>{STYLE}</style></head><body>\n\
         <h1>{title}</h1>\n<p class=\"meta\">Room <code>{room}</code>{topic}. Archived records from {range}. \
         Times are Europe/Amsterdam. Each record is in the archive log checkpointed at {size} records \
         (<code>{origin}</code>); records.jsonl beside this page carries the proofs.</p>\n\
         <table>\n{rows}</table>\n</body></html>\n",
        title = escape(&title),
        room = escape(&context.room_id),
        topic = context
            .topic
            .as_deref()
            .map(|t| format!(" — {}", escape(t)))
            .unwrap_or_default(),
        size = checkpoint.size,
        origin = escape(&checkpoint.origin),
    )
}

/// The event an `m.replace` edit replaces.
fn replaced(event: &Value) -> Option<&str> {
    let relation = event.pointer("/content/m.relates_to")?;
    (relation.get("rel_type")?.as_str()? == "m.replace")
        .then(|| relation.get("event_id")?.as_str())
        .flatten()
}

fn describe(event: &Value, o: &Opened, link: &dyn Fn(&str) -> String) -> String {
    let kind = event["type"].as_str().unwrap_or(&o.entry.event_type);
    let mut out = describe_kind(kind, event, o, link);
    if let Some(record) = o.decrypted_by {
        out.push_str(&format!(
            "<div class=\"note\">end-to-end encrypted; decrypted by the archive (record #{record})</div>"
        ));
    }
    if let Some(why) = &o.entry.soft_failed {
        out.push_str(&format!(
            "<div class=\"note\">soft-failed: kept as evidence, never shown to the room's members ({})</div>",
            escape(why)
        ));
    }
    out
}

fn describe_kind(kind: &str, event: &Value, o: &Opened, link: &dyn Fn(&str) -> String) -> String {
    let text = |pointer: &str| event.pointer(pointer).and_then(Value::as_str);
    let body = |t: &str| format!("<div class=\"body\">{}</div>", escape(t));
    match kind {
        "m.room.message" if replaced(event).is_some() => format!(
            "Edit of {}: {}",
            link(replaced(event).unwrap_or_default()),
            body(
                text("/content/m.new_content/body")
                    .or(text("/content/body"))
                    .unwrap_or_default()
            )
        ),
        "m.room.message" => {
            let mut out = body(text("/content/body").unwrap_or_default());
            let image = text("/content/msgtype") == Some("m.image");
            for (_, name) in &o.attachments {
                let href = format!("attachments/{}", escape(name));
                if image {
                    out.push_str(&format!(
                        "<a href=\"{href}\"><img src=\"{href}\" alt=\"\"></a>"
                    ));
                } else {
                    out.push_str(&format!("<a href=\"{href}\">{}</a>", escape(name)));
                }
            }
            out
        }
        "m.room.redaction" => format!(
            "Hid {} from chat clients{}",
            link(o.entry.redacts.as_deref().unwrap_or_default()),
            text("/content/reason")
                .map(|r| format!(": {}", escape(r)))
                .unwrap_or_default()
        ),
        "m.room.encrypted" => "<em class=\"erased\">End-to-end encrypted message whose room key \
             never reached the archive: its content is a gap in the archive.</em>"
            .into(),
        "m.reaction" => format!(
            "Reacted {} to {}",
            escape(text("/content/m.relates_to/key").unwrap_or_default()),
            link(text("/content/m.relates_to/event_id").unwrap_or_default())
        ),
        "m.room.member" => format!(
            "<span class=\"meta\">{} — membership: {}</span>",
            escape(text("/state_key").unwrap_or_default()),
            escape(text("/content/membership").unwrap_or_default())
        ),
        "m.room.name" => format!(
            "<span class=\"meta\">Named the room “{}”</span>",
            escape(text("/content/name").unwrap_or_default())
        ),
        "m.room.topic" => format!(
            "<span class=\"meta\">Set the topic: {}</span>",
            escape(text("/content/topic").unwrap_or_default())
        ),
        other => format!("<span class=\"meta\">{}</span>", escape(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            escape("<script>\"x\" & 'y'</script>"),
            "&lt;script&gt;&quot;x&quot; &amp; &#39;y&#39;&lt;/script&gt;"
        );
    }

    #[test]
    fn times_are_amsterdam_with_daylight_saving() {
        // 2026-01-15 12:00 UTC is 13:00 CET; 2026-07-15 12:00 UTC is 14:00 CEST.
        assert_eq!(amsterdam_time(1_768_478_400_000), "2026-01-15 13:00:00 CET");
        assert_eq!(
            amsterdam_time(1_784_116_800_000),
            "2026-07-15 14:00:00 CEST"
        );
    }
}
