//! Media upload and download: the legacy `/_matrix/media/v3` endpoints and
//! the authenticated `/_matrix/client/v1/media` ones.

use std::sync::Arc;

use ruma::{
    OwnedMxcUri, ServerName, UInt,
    api::client::{
        authenticated_media as auth,
        media::{self, create_content, get_content_thumbnail::v3::Method},
    },
    http_headers::{ContentDisposition, ContentDispositionType},
};

use crate::{Error, Result, Services, ruma_wrapper::Ruma};

/// Types browsers may show inline; everything else is an attachment, so an
/// uploaded HTML file cannot run script on the server's origin.
const INLINE_TYPES: &[&str] = &[
    "image/png",
    "image/jpeg",
    "image/gif",
    "image/webp",
    "video/mp4",
    "video/webm",
    "audio/mpeg",
    "audio/ogg",
    "text/plain",
];

fn disposition(content_type: &str, filename: Option<String>) -> ContentDisposition {
    let kind = if INLINE_TYPES.contains(&content_type) {
        ContentDispositionType::Inline
    } else {
        ContentDispositionType::Attachment
    };
    ContentDisposition::new(kind).with_filename(filename)
}

pub async fn upload(
    services: Arc<Services>,
    request: Ruma<create_content::v3::Request>,
) -> Result<create_content::v3::Response> {
    let b = request.body;
    let user = request
        .sender_user
        .as_deref()
        .ok_or_else(Error::missing_token)?;
    if b.file.len() as u64 > services.config.max_upload_size {
        return Err(Error::too_large(format!(
            "Uploads are limited to {} bytes.",
            services.config.max_upload_size
        )));
    }
    let media_id = services
        .media
        .create(user, b.content_type, b.filename, b.file)
        .await?;
    let uri = OwnedMxcUri::from(format!("mxc://{}/{media_id}", services.server_name()));
    Ok(create_content::v3::Response::new(uri))
}

/// The local media ID holding `mxc://server/media_id`: this server's own,
/// or a copy of a peer's, fetched over federation the first time.
async fn local_id(services: &Services, server: &ServerName, media_id: &str) -> Result<String> {
    if server == services.server_name() {
        return Ok(media_id.to_owned());
    }
    services.federation.require_peer(server)?;
    if let Some(copy) = services.media.remote_copy(server, media_id)? {
        return Ok(copy);
    }
    let answer = services
        .federation
        .send(
            server,
            ruma::api::federation::authenticated_media::get_content::v1::Request::new(
                media_id.to_owned(),
            ),
        )
        .await?;
    let ruma::api::federation::authenticated_media::FileOrLocation::File(content) = answer.content
    else {
        return Err(Error::not_found(format!(
            "{server} offers the media only at another location, which this server does not follow."
        )));
    };
    if content.file.len() as u64 > services.config.max_upload_size {
        return Err(Error::too_large(format!(
            "The media on {server} is larger than this server accepts."
        )));
    }
    let filename = content.content_disposition.and_then(|d| d.filename);
    services
        .media
        .store_remote(
            server,
            media_id,
            content.content_type,
            filename,
            content.file,
        )
        .await
}

async fn fetch(
    services: &Services,
    server: &ServerName,
    media_id: &str,
) -> Result<(String, Option<String>, Vec<u8>)> {
    let media_id = local_id(services, server, media_id).await?;
    let (meta, bytes) = services
        .media
        .read(&media_id)
        .await?
        .ok_or_else(|| Error::not_found("Media not found."))?;
    Ok((
        meta.content_type
            .unwrap_or_else(|| "application/octet-stream".into()),
        meta.filename,
        bytes,
    ))
}

async fn thumbnail(
    services: &Services,
    server: &ServerName,
    media_id: &str,
    width: UInt,
    height: UInt,
    method: Option<&Method>,
) -> Result<(String, Vec<u8>)> {
    let media_id = local_id(services, server, media_id).await?;
    let crop = matches!(method, Some(Method::Crop));
    let (w, h) = (
        u32::try_from(width).unwrap_or(u32::MAX),
        u32::try_from(height).unwrap_or(u32::MAX),
    );
    services
        .media
        .thumbnail(&media_id, w, h, crop)
        .await?
        .ok_or_else(|| Error::not_found("Media not found."))
}

/// `GET /_matrix/federation/v1/media/download/{mediaId}`: this server's
/// media for a peer (never a copy of another server's).
/// `GET /_matrix/federation/v1/media/thumbnail/{mediaId}`: a thumbnail of
/// this server's own media for a peer.
pub async fn federation_thumbnail(
    services: Arc<Services>,
    request: Ruma<ruma::api::federation::authenticated_media::get_content_thumbnail::v1::Request>,
) -> Result<ruma::api::federation::authenticated_media::get_content_thumbnail::v1::Response> {
    use ruma::api::federation::authenticated_media::{
        Content, ContentMetadata, FileOrLocation, get_content_thumbnail,
    };
    let b = &request.body;
    let own = services
        .media
        .meta(&b.media_id)?
        .is_some_and(|meta| meta.uploader.is_some());
    if !own {
        return Err(Error::not_found("Media not found."));
    }
    let (content_type, bytes) = thumbnail(
        &services,
        services.server_name(),
        &b.media_id,
        b.width,
        b.height,
        b.method.as_ref(),
    )
    .await?;
    let d = disposition(&content_type, None);
    Ok(get_content_thumbnail::v1::Response::new(
        ContentMetadata::new(),
        FileOrLocation::File(Content::new(bytes, content_type, d)),
    ))
}

pub async fn federation_download(
    services: Arc<Services>,
    request: Ruma<ruma::api::federation::authenticated_media::get_content::v1::Request>,
) -> Result<ruma::api::federation::authenticated_media::get_content::v1::Response> {
    use ruma::api::federation::authenticated_media::{
        Content, ContentMetadata, FileOrLocation, get_content,
    };
    let (meta, bytes) = services
        .media
        .read(&request.body.media_id)
        .await?
        .filter(|(meta, _)| meta.uploader.is_some())
        .ok_or_else(|| Error::not_found("Media not found."))?;
    let content_type = meta
        .content_type
        .unwrap_or_else(|| "application/octet-stream".into());
    let d = disposition(&content_type, meta.filename);
    Ok(get_content::v1::Response::new(
        ContentMetadata::new(),
        FileOrLocation::File(Content::new(bytes, content_type, d)),
    ))
}

pub async fn download(
    services: Arc<Services>,
    request: Ruma<auth::get_content::v1::Request>,
) -> Result<auth::get_content::v1::Response> {
    let (content_type, filename, bytes) =
        fetch(&services, &request.body.server_name, &request.body.media_id).await?;
    let d = disposition(&content_type, filename);
    Ok(auth::get_content::v1::Response::new(bytes, content_type, d))
}

pub async fn download_as(
    services: Arc<Services>,
    request: Ruma<auth::get_content_as_filename::v1::Request>,
) -> Result<auth::get_content_as_filename::v1::Response> {
    let (content_type, _, bytes) =
        fetch(&services, &request.body.server_name, &request.body.media_id).await?;
    let d = disposition(&content_type, Some(request.body.filename.clone()));
    Ok(auth::get_content_as_filename::v1::Response::new(
        bytes,
        content_type,
        d,
    ))
}

pub async fn thumbnail_v1(
    services: Arc<Services>,
    request: Ruma<auth::get_content_thumbnail::v1::Request>,
) -> Result<auth::get_content_thumbnail::v1::Response> {
    let b = &request.body;
    let method = b.method.as_ref().map(|m| {
        if m.as_str() == "crop" {
            Method::Crop
        } else {
            Method::Scale
        }
    });
    let (content_type, bytes) = thumbnail(
        &services,
        &b.server_name,
        &b.media_id,
        b.width,
        b.height,
        method.as_ref(),
    )
    .await?;
    let d = disposition(&content_type, None);
    Ok(auth::get_content_thumbnail::v1::Response::new(
        bytes,
        content_type,
        d,
    ))
}

pub async fn config_v1(
    services: Arc<Services>,
    _: Ruma<auth::get_media_config::v1::Request>,
) -> Result<auth::get_media_config::v1::Response> {
    Ok(auth::get_media_config::v1::Response::new(
        UInt::try_from(services.config.max_upload_size).unwrap_or(UInt::MAX),
    ))
}

#[allow(deprecated)] // Served for clients older than Matrix 1.11.
pub async fn config_v3(
    services: Arc<Services>,
    _: Ruma<media::get_media_config::v3::Request>,
) -> Result<media::get_media_config::v3::Response> {
    Ok(media::get_media_config::v3::Response::new(
        UInt::try_from(services.config.max_upload_size).unwrap_or(UInt::MAX),
    ))
}

#[allow(deprecated)]
pub async fn download_v3(
    services: Arc<Services>,
    request: Ruma<media::get_content::v3::Request>,
) -> Result<media::get_content::v3::Response> {
    let (content_type, filename, bytes) =
        fetch(&services, &request.body.server_name, &request.body.media_id).await?;
    let d = disposition(&content_type, filename);
    Ok(media::get_content::v3::Response::new(
        bytes,
        content_type,
        d,
    ))
}

#[allow(deprecated)]
pub async fn thumbnail_v3(
    services: Arc<Services>,
    request: Ruma<media::get_content_thumbnail::v3::Request>,
) -> Result<media::get_content_thumbnail::v3::Response> {
    let b = &request.body;
    let (content_type, bytes) = thumbnail(
        &services,
        &b.server_name,
        &b.media_id,
        b.width,
        b.height,
        b.method.as_ref(),
    )
    .await?;
    let d = disposition(&content_type, None);
    Ok(media::get_content_thumbnail::v3::Response::new(
        bytes,
        content_type,
        d,
    ))
}

/// A preview of the page at a URL (off unless the node's configuration
/// turns previews on; see [`crate::url_preview`]). The page's image is
/// stored as the user's media and named by its mxc URI. A preview made in
/// the last hour is given again.
async fn preview_data(
    services: &Services,
    user: &ruma::UserId,
    url: &str,
) -> Result<serde_json::Value> {
    if let Some(cached) = services.previews.get(url) {
        return Ok(cached);
    }
    let preview = crate::url_preview::preview(&services.config.url_previews, url).await?;
    let mut data = preview.data;
    if let Some(image) = preview.image {
        data.insert("matrix:image:size".into(), image.bytes.len().into());
        data.insert("og:image:width".into(), image.width.into());
        data.insert("og:image:height".into(), image.height.into());
        data.insert("og:image:type".into(), image.content_type.clone().into());
        let media_id = services
            .media
            .create(user, Some(image.content_type), None, image.bytes)
            .await?;
        data.insert(
            "og:image".into(),
            format!("mxc://{}/{media_id}", services.server_name()).into(),
        );
    }
    let data = serde_json::Value::Object(data);
    services.previews.put(url, data.clone());
    Ok(data)
}

pub async fn preview_v1(
    services: Arc<Services>,
    request: Ruma<auth::get_media_preview::v1::Request>,
) -> Result<auth::get_media_preview::v1::Response> {
    let data = preview_data(&services, request.user(), &request.body.url).await?;
    Ok(auth::get_media_preview::v1::Response::from_serialize(
        &data,
    )?)
}

#[allow(deprecated)] // Served for clients older than Matrix 1.11.
pub async fn preview_v3(
    services: Arc<Services>,
    request: Ruma<media::get_media_preview::v3::Request>,
) -> Result<media::get_media_preview::v3::Response> {
    let data = preview_data(&services, request.user(), &request.body.url).await?;
    Ok(media::get_media_preview::v3::Response::from_serialize(
        &data,
    )?)
}
