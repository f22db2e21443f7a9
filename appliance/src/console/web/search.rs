//! The records managers' search: the archive's messages by their words and
//! filters ([`ops::search`]), each search recorded.

use std::sync::Arc;

use askama::Template;
use axum::{extract::State, response::Response};
use serde::Deserialize;

use super::{Nav, Posted, Refusal, Role, Signed, Texts, blocking, render, when};
use crate::{console::Console, ops};

/// The choices of the form's lists: value, label.
const MSGTYPES: &[(&str, &str)] = &[
    ("", "any type"),
    ("m.text", "text"),
    ("m.image", "image"),
    ("m.file", "file"),
    ("m.audio", "audio"),
    ("m.video", "video"),
    ("m.notice", "notice"),
];
const SOURCES: &[(&str, &str)] = &[
    ("", "any source"),
    ("matrix", "chat on this node"),
    ("whatsapp", "WhatsApp import"),
];
const CLASSIFICATIONS: &[(&str, &str)] = &[
    ("", "any classification"),
    ("business", "business"),
    ("private", "private"),
    ("party-political", "party-political"),
];

/// The form as sent, shown again above its results.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Asked {
    #[serde(default)]
    words: String,
    #[serde(default)]
    room: String,
    #[serde(default)]
    sender: String,
    #[serde(default)]
    from: String,
    #[serde(default)]
    until: String,
    #[serde(default)]
    msgtype: String,
    #[serde(default)]
    source: String,
    #[serde(default)]
    classification: String,
}

struct FoundRow {
    seq: u64,
    when: String,
    room: String,
    sender: String,
    excerpt: String,
}

#[derive(Template)]
#[template(path = "console/search.html")]
struct SearchPage {
    nav: Option<Nav>,
    t: Texts,
    asked: Asked,
    msgtypes: &'static [(&'static str, &'static str)],
    sources: &'static [(&'static str, &'static str)],
    classifications: &'static [(&'static str, &'static str)],
    found: Option<Vec<FoundRow>>,
    notice: Option<String>,
}

fn page(
    signed: &Signed,
    asked: Asked,
    found: Option<Vec<FoundRow>>,
    notice: Option<String>,
) -> SearchPage {
    SearchPage {
        nav: Some(signed.nav()),
        t: signed.texts,
        asked,
        msgtypes: MSGTYPES,
        sources: SOURCES,
        classifications: CLASSIFICATIONS,
        found,
        notice,
    }
}

/// `GET /search`: the form.
pub async fn form(signed: Signed) -> Result<Response, Refusal> {
    signed.require(Role::RecordsManager)?;
    Ok(render(&page(&signed, Asked::default(), None, None)))
}

fn given(value: &str) -> Option<String> {
    Some(value.trim().to_owned()).filter(|v| !v.is_empty())
}

/// `POST /search`: the messages found, recorded in the audit trail.
pub async fn search(
    State(console): State<Arc<Console>>,
    posted: Posted<Asked>,
) -> Result<Response, Refusal> {
    let Posted { signed, form } = posted;
    signed.require(Role::RecordsManager)?;
    let texts = signed.texts;
    let classification = match given(&form.classification) {
        Some(name) => Some(name.parse().map_err(Refusal::BadRequest)?),
        None => None,
    };
    let asked = ops::search::Asked {
        query: archipel_search::Query {
            text: form.words.clone(),
            room: given(&form.room),
            sender: given(&form.sender),
            from_ms: super::day_start(&form.from, texts)?,
            until_ms: super::day_start(&form.until, texts)?,
            msgtype: given(&form.msgtype),
            source: given(&form.source),
            limit: 200,
            ..archipel_search::Query::default()
        },
        classification,
    };
    let found = blocking(|| Ok(ops::search::search(console.node(), &signed.actor(), &asked)))?;
    let (found, notice) = match found {
        Ok(found) => {
            let rows = found
                .into_iter()
                .map(|f| FoundRow {
                    seq: f.hit.seq,
                    when: when(i64::try_from(f.hit.ts / 1000).unwrap_or(0)),
                    room: f.hit.room,
                    sender: f.hit.sender,
                    excerpt: f.excerpt,
                })
                .collect();
            (Some(rows), None)
        }
        Err(e) => (
            None,
            Some(texts.f("Not searched: {error}", &[("error", &texts.error(&e))])),
        ),
    };
    Ok(render(&page(&signed, form, found, notice)))
}
