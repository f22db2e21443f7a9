//! URL previews: off by default, and when on, never to an address that is
//! not public unless the configuration allows its range.

use axum::{
    Router,
    http::{HeaderMap, header},
    response::{IntoResponse, Redirect},
    routing::get,
};
use http::{Method, StatusCode};

use crate::harness::{TestNode, urlencode};

/// The media endpoints before Matrix 1.11.
const LEGACY: &str = "/_matrix/media/v3";

const PAGE: &str = r#"<!doctype html><html><head>
<title>Rijksoverheid</title>
<script>document.write("<meta property='og:title' content='nep'>")</script>
<meta property="og:title" content="Kabinet presenteert begroting">
<meta property="og:description" content="De plannen voor 2027.">
<meta property="og:site_name" content="Rijksoverheid.nl">
<meta property="og:image" content="/logo.png">
</head><body><p>Tekst</p></body></html>"#;

/// A PNG of 4 by 3 pixels.
fn logo() -> Vec<u8> {
    let mut bytes = std::io::Cursor::new(Vec::new());
    image::RgbImage::from_pixel(4, 3, image::Rgb([21, 66, 115]))
        .write_to(&mut bytes, image::ImageFormat::Png)
        .expect("encode a PNG");
    bytes.into_inner()
}

/// A web server on `ip` with a page and its logo, a redirect to
/// `elsewhere` and a page whose image is there, a very long page and a
/// file that is no page.
async fn web_server(ip: &str, elsewhere: Option<String>) -> String {
    web_server_counting(ip, elsewhere, Default::default()).await
}

/// [`web_server`], counting the requests for its page in `hits`.
async fn web_server_counting(
    ip: &str,
    elsewhere: Option<String>,
    hits: std::sync::Arc<std::sync::atomic::AtomicUsize>,
) -> String {
    let long = format!(
        "<html><head><title>Lang</title></head><body>{}</body></html>",
        "<div>".repeat(1_000_000)
    );
    let mut app = Router::new()
        .route(
            "/page",
            get(move || async move {
                hits.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                html(PAGE.to_owned())
            }),
        )
        .route(
            "/logo.png",
            get(|| async { ([(header::CONTENT_TYPE, "image/png")], logo()) }),
        )
        .route("/long", get(move || async move { html(long) }))
        .route(
            "/file",
            get(|| async { ([(header::CONTENT_TYPE, "application/pdf")], "%PDF-1.7") }),
        );
    if let Some(target) = elsewhere {
        let page = format!(
            "<html><head><title>Elders</title><meta property=\"og:image\" content=\"{target}\"></head></html>"
        );
        app = app
            .route(
                "/redirect",
                get(move || async move { Redirect::temporary(&target) }),
            )
            .route("/image-elsewhere", get(move || async move { html(page) }));
    }
    let listener = tokio::net::TcpListener::bind((ip, 0))
        .await
        .expect("bind the web server");
    let address = listener.local_addr().expect("its address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{address}")
}

fn html(body: String) -> impl IntoResponse {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        "text/html; charset=utf-8".parse().expect("a header"),
    );
    (headers, body)
}

async fn preview(node: &TestNode, token: Option<&str>, url: &str) -> crate::harness::Reply {
    preview_at(node, "/_matrix/client/v1/media", token, url).await
}

/// A preview through the media endpoints under `base` (the current ones
/// or the legacy `/_matrix/media/v3`).
async fn preview_at(
    node: &TestNode,
    base: &str,
    token: Option<&str>,
    url: &str,
) -> crate::harness::Reply {
    node.request(
        Method::GET,
        &format!("{base}/preview_url?url={}", urlencode(url)),
        token,
        None,
    )
    .await
}

#[tokio::test]
async fn previews_are_off_by_default() {
    let site = web_server("127.0.0.1", None).await;
    let node = TestNode::start(|_| {});
    let alice = node.register("alice").await;
    preview(&node, Some(&alice), &format!("{site}/page"))
        .await
        .err(StatusCode::NOT_FOUND, "M_UNRECOGNIZED");
    preview_at(&node, LEGACY, Some(&alice), &format!("{site}/page"))
        .await
        .err(StatusCode::NOT_FOUND, "M_UNRECOGNIZED");
}

#[tokio::test]
async fn an_address_that_is_not_public_is_refused_unless_allowed() {
    let site = web_server("127.0.0.1", None).await;
    let node = TestNode::start(|config| config.url_previews.enabled = true);
    let alice = node.register("alice").await;
    for url in [
        format!("{site}/page"),
        "http://localhost:9/page".to_owned(),
        "http://10.0.0.1/".to_owned(),
        "http://[::1]:9/".to_owned(),
        "http://169.254.169.254/latest/meta-data/".to_owned(),
    ] {
        let body = preview(&node, Some(&alice), &url)
            .await
            .err(StatusCode::FORBIDDEN, "M_FORBIDDEN");
        assert!(
            body["error"]
                .as_str()
                .is_some_and(|e| e.contains("not a public address")),
            "{url}: {body}"
        );
    }
    for url in ["file:///etc/passwd", "gopher://example.org/", "geen url"] {
        preview(&node, Some(&alice), url)
            .await
            .err(StatusCode::BAD_REQUEST, "M_INVALID_PARAM");
    }
    preview(&node, None, &format!("{site}/page"))
        .await
        .err(StatusCode::UNAUTHORIZED, "M_MISSING_TOKEN");
}

#[tokio::test]
async fn an_allowed_range_is_previewed_and_each_redirect_is_checked() {
    // 127.0.0.2 is allowed; 127.0.0.1 is not.
    let hidden = web_server("127.0.0.1", None).await;
    let site = web_server("127.0.0.2", Some(format!("{hidden}/logo.png"))).await;
    let node = TestNode::start(|config| {
        config.url_previews.enabled = true;
        config.url_previews.allowed_ranges = vec!["127.0.0.2/32".parse().expect("a range")];
    });
    let alice = node.register("alice").await;

    let data = preview(&node, Some(&alice), &format!("{site}/page"))
        .await
        .ok();
    assert_eq!(data["og:title"], "Kabinet presenteert begroting", "{data}");
    assert_eq!(data["og:description"], "De plannen voor 2027.");
    assert_eq!(data["og:site_name"], "Rijksoverheid.nl");
    assert_eq!(data["og:url"], format!("{site}/page"));

    // The page's image, fetched and kept as Alice's media.
    let mxc = data["og:image"].as_str().expect("og:image");
    let media = mxc
        .strip_prefix("mxc://localhost/")
        .expect("an mxc URI of this node");
    assert_eq!(data["og:image:width"], 4);
    assert_eq!(data["og:image:height"], 3);
    assert_eq!(data["og:image:type"], "image/png");
    assert_eq!(data["matrix:image:size"], logo().len());
    let (meta, bytes) = node
        .homeserver
        .services
        .media
        .read(media)
        .await
        .expect("read")
        .expect("stored");
    assert_eq!(bytes, logo());
    assert_eq!(meta.content_type.as_deref(), Some("image/png"));

    // The legacy path answers the same.
    let legacy = preview_at(&node, LEGACY, Some(&alice), &format!("{site}/page"))
        .await
        .ok();
    assert_eq!(legacy["og:title"], "Kabinet presenteert begroting");

    // A redirect to an address that is not allowed is not followed, and
    // an image there is left out of the page's preview.
    preview(&node, Some(&alice), &format!("{site}/redirect"))
        .await
        .err(StatusCode::FORBIDDEN, "M_FORBIDDEN");
    let data = preview(&node, Some(&alice), &format!("{site}/image-elsewhere"))
        .await
        .ok();
    assert_eq!(data["og:title"], "Elders");
    assert!(data.get("og:image").is_none(), "{data}");

    // A page of megabytes is read only as far as the limit: its head.
    let data = preview(&node, Some(&alice), &format!("{site}/long"))
        .await
        .ok();
    assert_eq!(data["og:title"], "Lang");

    // What is no page is named by its URL only.
    let data = preview(&node, Some(&alice), &format!("{site}/file"))
        .await
        .ok();
    assert_eq!(
        data,
        serde_json::json!({ "og:url": format!("{site}/file") })
    );
}

#[tokio::test]
async fn a_preview_is_made_once_and_given_again() {
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let site = web_server_counting("127.0.0.3", None, hits.clone()).await;
    let node = TestNode::start(|config| {
        config.url_previews.enabled = true;
        config.url_previews.allowed_ranges = vec!["127.0.0.3/32".parse().expect("a range")];
    });
    let alice = node.register("alice").await;
    let bob = node.register("bob").await;
    let first = preview(&node, Some(&alice), &format!("{site}/page"))
        .await
        .ok();
    let second = preview(&node, Some(&bob), &format!("{site}/page"))
        .await
        .ok();
    assert_eq!(first, second);
    assert_eq!(hits.load(std::sync::atomic::Ordering::Relaxed), 1);
}
