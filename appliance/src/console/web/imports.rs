//! The records managers' imports: a WhatsApp chat export uploaded and
//! brought into the vault for its owner ([`ops::imports::whatsapp`]), and
//! the chats imported so far.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use askama::Template;
use axum::{
    extract::{FromRequest, FromRequestParts, Multipart, Request, State},
    response::Response,
};
use tokio::io::AsyncWriteExt;

use super::{Nav, Refusal, Role, Signed, Texts, blocking, constant_time_eq, render};
use crate::{console::Console, ops};

/// The largest upload the import form takes: the export and its fields.
pub const MAX_UPLOAD: usize = 2 << 30;
/// The largest text field of the form.
const MAX_FIELD: usize = 8 << 10;

struct ImportedRow {
    room: String,
    owner: String,
    records: usize,
}

#[derive(Template)]
#[template(path = "console/imports.html")]
struct ImportsPage {
    nav: Option<Nav>,
    t: Texts,
    rooms: Vec<ImportedRow>,
    notice: Option<String>,
}

fn imports_page(
    console: &Console,
    signed: &Signed,
    notice: Option<String>,
) -> anyhow::Result<ImportsPage> {
    let vault = &console.node().vault;
    let size = vault.log().size()?;
    let rooms = vault
        .imported_rooms()?
        .into_iter()
        .map(|(room, owner)| {
            Ok(ImportedRow {
                records: vault.log().room_records(&room, size)?.len(),
                room,
                owner,
            })
        })
        .collect::<anyhow::Result<_>>()?;
    Ok(ImportsPage {
        nav: Some(signed.nav()),
        t: signed.texts,
        rooms,
        notice,
    })
}

/// `GET /imports`: the form, and the chats imported so far.
pub async fn imports(
    State(console): State<Arc<Console>>,
    signed: Signed,
) -> Result<Response, Refusal> {
    signed.require(Role::RecordsManager)?;
    let page = blocking(|| imports_page(&console, &signed, None))?;
    Ok(render(&page))
}

/// `POST /imports` (multipart): the export is written to a folder of its
/// own under the data folder as it arrives (never held in memory), after
/// the form's CSRF token is checked, then imported and removed.
pub async fn import(
    State(console): State<Arc<Console>>,
    request: Request,
) -> Result<Response, Refusal> {
    let (mut parts, body) = request.into_parts();
    let signed = Signed::from_request_parts(&mut parts, &console).await?;
    signed.require(Role::RecordsManager)?;
    let texts = signed.texts;
    let unreadable =
        |e: axum::extract::multipart::MultipartError| Refusal::BadRequest(e.body_text());
    let mut form = Multipart::from_request(Request::from_parts(parts, body), &console)
        .await
        .map_err(|e| Refusal::BadRequest(e.body_text()))?;
    let scratch = console.node().config.node.data_dir.join("imports");
    std::fs::create_dir_all(&scratch).map_err(|e| Refusal::Internal(e.into()))?;
    let upload = tempfile::Builder::new()
        .prefix(".upload-")
        .tempdir_in(&scratch)
        .map_err(|e| Refusal::Internal(e.into()))?;
    let mut fields: HashMap<String, String> = HashMap::new();
    let mut export = None;
    let checked = |fields: &HashMap<String, String>| {
        let sent = fields.get("csrf").map_or("", String::as_str);
        if constant_time_eq(sent.as_bytes(), signed.session.csrf.as_bytes()) {
            Ok(())
        } else {
            Err(Refusal::Forbidden(
                texts
                    .t("This form is from an earlier session. Open the page again and retry.")
                    .into(),
            ))
        }
    };
    while let Some(mut field) = form.next_field().await.map_err(unreadable)? {
        let name = field.name().unwrap_or_default().to_owned();
        if name == "export" {
            // The token comes first in the form: nothing is written for a
            // forged one.
            checked(&fields)?;
            let file_name = field
                .file_name()
                .and_then(|n| Path::new(n).file_name())
                .map(|n| n.to_string_lossy().into_owned())
                .filter(|n| !n.is_empty() && !n.starts_with('.'))
                .unwrap_or_else(|| "export.zip".to_owned());
            let path = upload.path().join(file_name);
            let mut file = tokio::fs::File::create(&path)
                .await
                .map_err(|e| Refusal::Internal(e.into()))?;
            while let Some(chunk) = field.chunk().await.map_err(unreadable)? {
                file.write_all(&chunk)
                    .await
                    .map_err(|e| Refusal::Internal(e.into()))?;
            }
            file.flush()
                .await
                .map_err(|e| Refusal::Internal(e.into()))?;
            export = Some(path);
        } else {
            let mut text = Vec::new();
            while let Some(chunk) = field.chunk().await.map_err(unreadable)? {
                if text.len() + chunk.len() > MAX_FIELD {
                    return Err(Refusal::BadRequest(
                        texts.f("{field} is too long.", &[("field", &name)]),
                    ));
                }
                text.extend_from_slice(&chunk);
            }
            fields.insert(name, String::from_utf8_lossy(&text).into_owned());
        }
    }
    checked(&fields)?;
    let Some(export) = export else {
        return Err(Refusal::BadRequest(
            texts.t("Choose the export file.").into(),
        ));
    };
    let field = |name: &str| fields.get(name).map_or("", |v| v.trim());
    let owner_name = Some(field("owner_name")).filter(|n| !n.is_empty());
    let time_zone = Some(field("time_zone"))
        .filter(|z| !z.is_empty())
        .unwrap_or("Europe/Amsterdam");
    let request = ops::imports::WhatsappImport {
        export: &export,
        owner: field("owner"),
        owner_name,
        declaration: field("declaration"),
        chat: None,
        time_zone,
    };
    let imported = tokio::task::block_in_place(|| {
        ops::imports::whatsapp(console.node(), &signed.actor(), &request)
    });
    drop(upload);
    let notice = match imported {
        Ok(imported) if imported.added == 0 => texts.f(
            "Nothing new: the vault holds all {known} message(s) of this export already.",
            &[("known", &imported.known)],
        ),
        Ok(imported) => texts.f(
            "Imported {added} record(s) into {room} ({known} already in the vault).",
            &[
                ("added", &imported.added),
                ("room", &imported.room_id),
                ("known", &imported.known),
            ],
        ),
        Err(e) => texts.f("Not imported: {error}", &[("error", &texts.error(&e))]),
    };
    let page = blocking(|| imports_page(&console, &signed, Some(notice)))?;
    Ok(render(&page))
}
