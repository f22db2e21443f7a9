//! The records managers' exports: a room's or a person's conversations,
//! over a period, to read and to verify, as a ZIP archive to download.
//! Kept on the node for a day; making and downloading each is recorded.

use std::sync::Arc;

use askama::Template;
use axum::{
    body::Body,
    extract::{Path, State},
    http::{HeaderValue, header},
    response::{IntoResponse, Response},
};
use serde::Deserialize;

use super::{Nav, Posted, Refusal, Role, Signed, Texts, blocking, render, when};
use crate::{console::Console, ops};

struct ExportRow {
    name: String,
    size: String,
    made: String,
}

#[derive(Template)]
#[template(path = "console/exports.html")]
struct ExportsPage {
    nav: Option<Nav>,
    t: Texts,
    exports: Vec<ExportRow>,
    /// How long exports stay.
    kept: String,
    notice: Option<String>,
    /// The export just made, to download.
    made: Option<String>,
}

fn exports_page(
    console: &Console,
    signed: &Signed,
    notice: Option<String>,
    made: Option<String>,
) -> anyhow::Result<ExportsPage> {
    let exports = ops::exports::list(console.node())?
        .into_iter()
        .map(|file| ExportRow {
            size: indicatif::HumanBytes(file.bytes).to_string(),
            made: when(file.made),
            name: file.name,
        })
        .collect();
    Ok(ExportsPage {
        nav: Some(signed.nav()),
        t: signed.texts,
        exports,
        kept: signed.texts.f(
            "Exports stay on the node for {hours} hours; making and downloading each is in the audit trail.",
            &[("hours", &(ops::exports::KEPT_SECS / 3600))],
        ),
        notice,
        made,
    })
}

/// `GET /exports`: the form, and the exports waiting to be downloaded.
pub async fn exports(
    State(console): State<Arc<Console>>,
    signed: Signed,
) -> Result<Response, Refusal> {
    signed.require(Role::RecordsManager)?;
    let page = blocking(|| exports_page(&console, &signed, None, None))?;
    Ok(render(&page))
}

#[derive(Deserialize)]
pub struct NewExport {
    #[serde(default)]
    room: String,
    #[serde(default)]
    user: String,
    /// `YYYY-MM-DD`, from the start of that day (UTC).
    #[serde(default)]
    from: String,
    /// `YYYY-MM-DD`, up to the start of that day (UTC).
    #[serde(default)]
    until: String,
}

/// `POST /exports`: makes an export of the scope given.
pub async fn create(
    State(console): State<Arc<Console>>,
    posted: Posted<NewExport>,
) -> Result<Response, Refusal> {
    let Posted { signed, form } = posted;
    signed.require(Role::RecordsManager)?;
    let texts = signed.texts;
    let optional = |text: &str| Some(text.trim().to_owned()).filter(|t| !t.is_empty());
    let scope = archipel_vault::export::ExportScope {
        room: optional(&form.room),
        user: optional(&form.user),
        from_ms: super::day_start(&form.from, texts)?,
        until_ms: super::day_start(&form.until, texts)?,
    };
    let made = blocking(|| {
        Ok(ops::exports::create(
            console.node(),
            &signed.actor(),
            &scope,
        ))
    });
    let (notice, file) = match made? {
        Ok((file, summary)) => (
            texts.f(
                "Exported {records} record(s) in {conversations} conversation(s).",
                &[
                    ("records", &summary.records.to_string()),
                    ("conversations", &summary.conversations.to_string()),
                ],
            ),
            Some(file.name),
        ),
        Err(e) => (
            texts.f("Not exported: {error}", &[("error", &texts.error(&e))]),
            None,
        ),
    };
    let page = blocking(|| exports_page(&console, &signed, Some(notice), file))?;
    Ok(render(&page))
}

/// `GET /exports/{name}`: the export's ZIP archive, read from disk as it
/// is sent.
pub async fn download(
    State(console): State<Arc<Console>>,
    signed: Signed,
    Path(name): Path<String>,
) -> Result<Response, Refusal> {
    signed.require(Role::RecordsManager)?;
    let (file, bytes) =
        blocking(|| Ok(ops::exports::open(console.node(), &signed.actor(), &name)))?.map_err(
            |e| {
                if e.downcast_ref::<ops::exports::NoSuchExport>().is_some() {
                    Refusal::NotFound(signed.texts.t("No such export.").into())
                } else {
                    Refusal::Internal(e)
                }
            },
        )?;
    let file = tokio::fs::File::from_std(file);
    let body = futures::stream::try_unfold(file, |mut file| async move {
        use tokio::io::AsyncReadExt;
        let mut buffer = vec![0; 256 * 1024];
        let n = file.read(&mut buffer).await?;
        if n == 0 {
            return Ok::<_, std::io::Error>(None);
        }
        buffer.truncate(n);
        Ok(Some((bytes::Bytes::from(buffer), file)))
    });
    let disposition = HeaderValue::from_str(&format!("attachment; filename=\"{name}\""))
        .map_err(|e| Refusal::Internal(anyhow::anyhow!("{e}")))?;
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/zip"),
            ),
            (header::CONTENT_DISPOSITION, disposition),
            (header::CONTENT_LENGTH, HeaderValue::from(bytes)),
        ],
        Body::from_stream(body),
    )
        .into_response())
}
