//! Media repository: upload, authenticated download and thumbnails.

use matrix_sdk::media::{MediaFormat, MediaRequestParameters, MediaThumbnailSettings};
use matrix_sdk::ruma::UInt;
use matrix_sdk::ruma::events::room::MediaSource;
use reqwest::StatusCode;

use crate::client::{Api, api_for, enc, looks_like_image, png, register_client, split_mxc};
use crate::harness::TestServer;

#[tokio::test(flavor = "multi_thread")]
async fn upload_download_and_thumbnail_round_trip() {
    let server = TestServer::start().await;
    let alice = register_client(&server, "alice").await;
    let bob = register_client(&server, "bob").await;

    // The server must advertise spec v1.11+ so clients use authenticated media.
    let versions = Api::new(server.url())
        .get("/_matrix/client/versions")
        .await
        .ok();
    let advertises_v1_11 = versions["versions"].as_array().is_some_and(|versions| {
        versions
            .iter()
            .filter_map(|version| version.as_str())
            .any(|version| {
                version
                    .strip_prefix("v1.")
                    .and_then(|minor| minor.parse::<u32>().ok())
                    .is_some_and(|minor| minor >= 11)
            })
    });
    assert!(
        advertises_v1_11,
        "/versions must include v1.11 or later: {versions}"
    );

    let image = png(64, 64);
    assert!(image.len() > 4096, "the test image should be a few KB");
    let uploaded = alice
        .media()
        .upload(&mime::IMAGE_PNG, image.clone(), None)
        .await
        .expect("alice uploads a PNG");
    let mxc = uploaded.content_uri;
    let (server_name, media_id) = split_mxc(mxc.as_str());
    assert_eq!(server_name, "localhost", "mxc URI: {mxc}");

    // Download through matrix-sdk (authenticated endpoint), by another user.
    let file = MediaRequestParameters {
        source: MediaSource::Plain(mxc.clone()),
        format: MediaFormat::File,
    };
    let downloaded = bob
        .media()
        .get_media_content(&file, false)
        .await
        .expect("bob downloads");
    assert!(
        downloaded == image,
        "downloaded bytes differ from the upload"
    );

    // Thumbnail through matrix-sdk.
    let thumbnail = MediaRequestParameters {
        source: MediaSource::Plain(mxc.clone()),
        format: MediaFormat::Thumbnail(MediaThumbnailSettings::new(
            UInt::from(32_u32),
            UInt::from(32_u32),
        )),
    };
    let thumb = bob
        .media()
        .get_media_content(&thumbnail, false)
        .await
        .expect("bob gets a thumbnail");
    assert!(
        looks_like_image(&thumb),
        "the thumbnail is not an image ({} bytes)",
        thumb.len()
    );

    // The same over raw HTTP: exact bytes and content types.
    let api = api_for(&server, &bob);
    let reply = api.download(mxc.as_str()).await;
    assert_eq!(reply.status, StatusCode::OK, "download: {}", reply.text());
    assert!(reply.bytes == image, "raw download differs from the upload");
    assert_eq!(reply.content_type(), "image/png");

    let path = format!(
        "/_matrix/client/v1/media/thumbnail/{}/{}?width=32&height=32&method=scale",
        enc(server_name),
        enc(media_id)
    );
    let reply = api.get(&path).await;
    assert_eq!(reply.status, StatusCode::OK, "thumbnail: {}", reply.text());
    assert!(
        reply.content_type().starts_with("image/"),
        "thumbnail type: {}",
        reply.content_type()
    );
    assert!(
        looks_like_image(&reply.bytes),
        "the raw thumbnail is not an image"
    );

    // Authenticated media requires an access token, and so do the legacy
    // endpoints: media is for the node's users.
    api.anonymous()
        .download(mxc.as_str())
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "M_MISSING_TOKEN");
    let legacy_download = format!(
        "/_matrix/media/v3/download/{}/{}",
        enc(server_name),
        enc(media_id)
    );
    let legacy_thumbnail = format!(
        "/_matrix/media/v3/thumbnail/{}/{}?width=32&height=32",
        enc(server_name),
        enc(media_id)
    );
    for path in [&legacy_download, &legacy_thumbnail] {
        api.anonymous()
            .get(path)
            .await
            .assert_error(StatusCode::UNAUTHORIZED, "M_MISSING_TOKEN");
        assert_eq!(api.get(path).await.status, StatusCode::OK, "{path}");
    }
    // A path that merely contains `/upload` gets no upload-sized body.
    let reply = api
        .request(
            reqwest::Method::GET,
            &format!("/_matrix/media/v3/download/{}/upload", enc(server_name)),
            Some(("application/octet-stream", vec![0; 2 * 1024 * 1024])),
        )
        .await;
    reply.assert_error(StatusCode::PAYLOAD_TOO_LARGE, "M_TOO_LARGE");

    // Thumbnails come in a few sizes, so asking for every size in turn
    // caches a few files, not one per size.
    for edge in 33..=60 {
        let path = format!(
            "/_matrix/client/v1/media/thumbnail/{}/{}?width={edge}&height={edge}&method=crop",
            enc(server_name),
            enc(media_id)
        );
        let reply = api.get(&path).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}: {}", reply.text());
    }
    let cached = std::fs::read_dir(server.data_dir().join("media").join("thumbnails"))
        .expect("the thumbnail cache")
        .flatten()
        .filter(|entry| {
            entry
                .file_name()
                .to_string_lossy()
                .starts_with(&format!("{media_id}-"))
        })
        .count();
    assert!(cached <= 3, "{cached} thumbnails cached for one image");

    // Unknown media.
    api.download("mxc://localhost/doesnotexist0000")
        .await
        .assert_error(StatusCode::NOT_FOUND, "M_NOT_FOUND");
}
