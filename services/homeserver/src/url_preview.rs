//! URL previews (`/media/preview_url`): the node fetches a page for its
//! user and answers with the page's OpenGraph title, description, site
//! name and URL, and the page's image, fetched under the same rules and
//! kept as the user's media.
//!
//! Off unless `[homeserver.url_previews] enabled`: a preview makes the node
//! fetch an address a user chose. When on, it never reaches an address that
//! is not public (loopback, private, link-local, shared, multicast and the
//! like) unless a range of `allowed_ranges` holds it. The host is resolved
//! once, every address checked, and the connection made to a checked
//! address, so a second lookup cannot lead elsewhere; redirects are followed
//! here, each hop checked the same way. At most `max_bytes` of a page are
//! read, in at most [`FETCH_TIMEOUT`].

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    time::{Duration, Instant},
};

use std::cell::{Cell, RefCell};

use html5ever::tendril::StrTendril;
use html5ever::tokenizer::{
    BufferQueue, TagKind, Token, TokenSink, TokenSinkResult, Tokenizer, TokenizerOpts,
    states::RawKind,
};
use ipnet::IpNet;
use serde_json::{Map, Value};

use crate::{Error, Result, config::UrlPreviewConfig};

/// How long one preview may take, redirects included.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// Redirects followed at most.
const MAX_REDIRECTS: usize = 5;
/// The longest text kept of a title or description, in characters.
const MAX_TEXT_CHARS: usize = 500;

/// How long a preview is reused.
const CACHE_FOR: Duration = Duration::from_secs(3600);
/// Previews kept at most; past that the oldest goes.
const CACHE_ENTRIES: usize = 1_000;

/// Previews made in the last hour, by URL: a link posted in a busy room is
/// fetched once, not once per member whose client previews it.
#[derive(Default)]
pub struct Cache {
    entries: parking_lot::Mutex<HashMap<String, (Instant, Value)>>,
}

impl Cache {
    pub fn get(&self, url: &str) -> Option<Value> {
        let entries = self.entries.lock();
        let (made, preview) = entries.get(url)?;
        (made.elapsed() < CACHE_FOR).then(|| preview.clone())
    }

    pub fn put(&self, url: &str, preview: Value) {
        let mut entries = self.entries.lock();
        entries.retain(|_, (made, _)| made.elapsed() < CACHE_FOR);
        if entries.len() >= CACHE_ENTRIES
            && let Some(oldest) = entries
                .iter()
                .min_by_key(|(_, (made, _))| *made)
                .map(|(url, _)| url.clone())
        {
            entries.remove(&oldest);
        }
        entries.insert(url.to_owned(), (Instant::now(), preview));
    }
}

/// A page's preview: its OpenGraph data, and the image it names, fetched.
pub struct Preview {
    pub data: Map<String, Value>,
    pub image: Option<Image>,
}

/// A page's image, read whole and decodable.
pub struct Image {
    pub content_type: String,
    pub bytes: Vec<u8>,
    pub width: u32,
    pub height: u32,
}

/// The preview of the page at `url`.
pub async fn preview(config: &UrlPreviewConfig, url: &str) -> Result<Preview> {
    if !config.enabled {
        return Err(Error::unrecognized(
            http::StatusCode::NOT_FOUND,
            "URL previews are off on this server.",
        ));
    }
    let url =
        reqwest::Url::parse(url).map_err(|e| Error::invalid_param(format!("Not a URL: {e}")))?;
    tokio::time::timeout(FETCH_TIMEOUT, page_preview(config, url.clone()))
        .await
        .map_err(|_| Error::remote(format!("{url} did not answer in time")))?
}

async fn page_preview(config: &UrlPreviewConfig, url: reqwest::Url) -> Result<Preview> {
    let page = get(config, url, "text/html").await?;
    let is_html = page.content_type.starts_with("text/html")
        || page.content_type.starts_with("application/xhtml");
    if !is_html {
        // Nothing to read but where it is.
        let mut data = Map::new();
        data.insert("og:url".into(), Value::String(page.url.to_string()));
        return Ok(Preview { data, image: None });
    }
    let mut data = open_graph(&String::from_utf8_lossy(&page.body), &page.url);
    let image = match data.remove("og:image") {
        Some(Value::String(source)) => match image_at(config, &page.url, &source).await {
            Ok(image) => image,
            Err(e) => {
                tracing::debug!(page = %page.url, error = %e, "the page's image is left out");
                None
            }
        },
        _ => None,
    };
    Ok(Preview { data, image })
}

/// The image at `source` (relative to the page), if it is one this node
/// decodes and no larger than `max_bytes`. SVG is left out: it is a
/// document, not a picture.
async fn image_at(
    config: &UrlPreviewConfig,
    page: &reqwest::Url,
    source: &str,
) -> Result<Option<Image>> {
    let url = page
        .join(source)
        .map_err(|e| Error::remote(format!("the image URL {source:?}: {e}")))?;
    let fetched = get(config, url, "image/*").await?;
    if !fetched.complete
        || !fetched.content_type.starts_with("image/")
        || fetched.content_type.starts_with("image/svg")
    {
        return Ok(None);
    }
    let dimensions = image::ImageReader::new(std::io::Cursor::new(&fetched.body))
        .with_guessed_format()
        .ok()
        .and_then(|reader| reader.into_dimensions().ok());
    Ok(dimensions.map(|(width, height)| Image {
        content_type: fetched.content_type,
        bytes: fetched.body,
        width,
        height,
    }))
}

/// What one fetch brought: where it ended up after redirects, its type,
/// and its body up to `max_bytes` (`complete` when that was all of it).
struct Fetched {
    url: reqwest::Url,
    content_type: String,
    body: Vec<u8>,
    complete: bool,
}

/// Fetches `url`, following redirects by hand, each hop to a checked
/// address only.
async fn get(config: &UrlPreviewConfig, mut url: reqwest::Url, accept: &str) -> Result<Fetched> {
    for _ in 0..=MAX_REDIRECTS {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Error::invalid_param(
                "Only http and https URLs are previewed.",
            ));
        }
        let host = url
            .host_str()
            .ok_or_else(|| Error::invalid_param("The URL names no host."))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = url
            .port_or_known_default()
            .ok_or_else(|| Error::invalid_param("The URL names no port."))?;
        let address = public_address(&host, port, &config.allowed_ranges).await?;
        let client = client(config, &url, &host, address)?;
        let response = client
            .get(url.clone())
            .header(reqwest::header::ACCEPT, accept)
            .send()
            .await
            .map_err(|e| Error::remote(format!("fetching {url}: {e}")))?;
        if response.status().is_redirection() {
            let location = response
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|l| l.to_str().ok())
                .ok_or_else(|| Error::remote(format!("{url} redirects nowhere")))?;
            url = url
                .join(location)
                .map_err(|e| Error::remote(format!("{url} redirects to no URL: {e}")))?;
            continue;
        }
        if !response.status().is_success() {
            return Err(Error::remote(format!(
                "{url} answered {}",
                response.status()
            )));
        }
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|t| t.to_str().ok())
            .unwrap_or_default()
            .to_ascii_lowercase();
        let (body, complete) = read_limited(response, config.max_bytes).await?;
        return Ok(Fetched {
            url,
            content_type,
            body,
            complete,
        });
    }
    Err(Error::remote(format!(
        "{url}: more than {MAX_REDIRECTS} redirects"
    )))
}

/// A client that connects to `host` at `address` only.
fn client(
    config: &UrlPreviewConfig,
    url: &reqwest::Url,
    host: &str,
    address: SocketAddr,
) -> Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder()
        .timeout(FETCH_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .user_agent(concat!(
            "Archipel/",
            env!("CARGO_PKG_VERSION"),
            " (URL preview)"
        ))
        .resolve(host, address);
    if url.scheme() == "https"
        && let Some(bundle) = &config.ca_bundle
    {
        builder = builder.tls_backend_preconfigured(crate::tls::client_config(bundle)?);
    }
    builder
        .build()
        .map_err(|e| Error::internal(format!("building the preview client: {e}")))
}

/// The address to fetch `host` from: every address it resolves to must be
/// public, or in an allowed range.
async fn public_address(host: &str, port: u16, allowed: &[IpNet]) -> Result<SocketAddr> {
    let addresses: Vec<SocketAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| Error::remote(format!("{host} cannot be resolved: {e}")))?
            .collect(),
    };
    let Some(first) = addresses.first().copied() else {
        return Err(Error::remote(format!("{host} has no address")));
    };
    if let Some(refused) = addresses
        .iter()
        .find(|a| !is_public(a.ip()) && !allowed.iter().any(|r| r.contains(&a.ip())))
    {
        return Err(Error::forbidden(format!(
            "{host} leads to {}, which is not a public address.",
            refused.ip()
        )));
    }
    Ok(first)
}

/// Whether `ip` is an address of the public internet.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_unspecified()
                || v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_multicast()
                || v4.is_broadcast()
                || v4.is_documentation()
                // Shared address space (RFC 6598), the IETF's, benchmarking, reserved.
                || (a == 100 && (64..128).contains(&b))
                || (a == 192 && b == 0)
                || (a == 198 && (18..20).contains(&b))
                || a >= 240
                || a == 0)
        }
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public(IpAddr::V4(v4)),
            None => {
                !(v6.is_unspecified()
                    || v6.is_loopback()
                    || v6.is_multicast()
                    || v6.is_unique_local()
                    || v6.is_unicast_link_local()
                    // Documentation (2001:db8::/32) and NAT64 (64:ff9b::/96).
                    || (v6.segments()[0] == 0x2001 && v6.segments()[1] == 0xdb8)
                    || (v6.segments()[0] == 0x64 && v6.segments()[1] == 0xff9b))
            }
        },
    }
}

/// The body, or its first `max_bytes`, and whether that was all of it: a
/// page that is longer is previewed from its beginning, where its head is.
async fn read_limited(
    mut response: reqwest::Response,
    max_bytes: usize,
) -> Result<(Vec<u8>, bool)> {
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| Error::remote(format!("reading the page: {e}")))?
    {
        let room = max_bytes.saturating_sub(body.len());
        if chunk.len() > room {
            body.extend_from_slice(&chunk[..room]);
            return Ok((body, false));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((body, true))
}

/// The OpenGraph properties of a page (`og:title`, `og:description`,
/// `og:site_name`, `og:url`, `og:image` as the page gives it), with the `<title>` and the `description`
/// meta tag where the page has no OpenGraph ones. Read with html5ever's
/// tokenizer, which builds no tree: a hostile page's nesting costs nothing.
pub fn open_graph(page: &str, url: &reqwest::Url) -> Map<String, Value> {
    let tokenizer = Tokenizer::new(Found::default(), TokenizerOpts::default());
    let input = BufferQueue::default();
    input.push_back(StrTendril::from_slice(page));
    let _ = tokenizer.feed(&input);
    tokenizer.end();
    let found = tokenizer.sink;
    let properties = found.properties.into_inner();
    let mut data = Map::new();
    for key in [
        "og:title",
        "og:description",
        "og:site_name",
        "og:url",
        "og:image",
    ] {
        if let Some((_, value)) = properties.iter().find(|(k, _)| k == key) {
            data.insert(key.into(), Value::String(value.clone()));
        }
    }
    let title = clean(&found.title.into_inner().unwrap_or_default());
    if !data.contains_key("og:title") && !title.is_empty() {
        data.insert("og:title".into(), Value::String(title));
    }
    if !data.contains_key("og:description")
        && let Some(description) = found.description.into_inner()
    {
        data.insert("og:description".into(), Value::String(description));
    }
    data.entry("og:url")
        .or_insert_with(|| Value::String(url.to_string()));
    data
}

/// What the tokenizer found of a page so far.
#[derive(Default)]
struct Found {
    properties: RefCell<Vec<(String, String)>>,
    description: RefCell<Option<String>>,
    /// The first `<title>`'s text, while and after it is read.
    title: RefCell<Option<String>>,
    in_title: Cell<bool>,
}

impl TokenSink for Found {
    type Handle = ();

    fn process_token(&self, token: Token, _line: u64) -> TokenSinkResult<()> {
        match token {
            Token::TagToken(tag) if tag.kind == TagKind::StartTag => {
                let attr = |name: &str| {
                    tag.attrs
                        .iter()
                        .find(|a| &*a.name.local == name)
                        .map(|a| clean(&a.value))
                };
                match &*tag.name {
                    "meta" => {
                        let content = attr("content");
                        let mut properties = self.properties.borrow_mut();
                        if let (Some(property), Some(content)) = (attr("property"), content.clone())
                            && property.starts_with("og:")
                            && !properties.iter().any(|(k, _)| *k == property)
                            && properties.len() < 32
                        {
                            properties.push((property, content));
                        } else if attr("name")
                            .is_some_and(|n| n.eq_ignore_ascii_case("description"))
                        {
                            self.description
                                .borrow_mut()
                                .get_or_insert(content.unwrap_or_default());
                        }
                    }
                    // What the tree builder would tell the tokenizer: the
                    // text of these elements holds no tags.
                    "title" => {
                        let mut title = self.title.borrow_mut();
                        if title.is_none() {
                            *title = Some(String::new());
                            self.in_title.set(true);
                        }
                        return TokenSinkResult::RawData(RawKind::Rcdata);
                    }
                    "textarea" => return TokenSinkResult::RawData(RawKind::Rcdata),
                    "script" => return TokenSinkResult::RawData(RawKind::ScriptData),
                    "style" | "xmp" | "iframe" | "noembed" | "noframes" => {
                        return TokenSinkResult::RawData(RawKind::Rawtext);
                    }
                    "plaintext" => return TokenSinkResult::Plaintext,
                    _ => {}
                }
            }
            Token::TagToken(_) => self.in_title.set(false),
            Token::CharacterTokens(text) if self.in_title.get() => {
                if let Some(title) = self.title.borrow_mut().as_mut()
                    && title.len() < MAX_TEXT_CHARS * 4
                {
                    title.push_str(&text);
                }
            }
            _ => {}
        }
        TokenSinkResult::Continue
    }
}

/// Text with its whitespace collapsed, at most [`MAX_TEXT_CHARS`] long.
fn clean(text: &str) -> String {
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .take(MAX_TEXT_CHARS)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_addresses_are_public() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
        ] {
            assert!(
                !is_public(private.parse().expect("an address")),
                "{private}"
            );
        }
        for public in ["145.21.1.1", "9.9.9.9", "2a00:1450::1"] {
            assert!(is_public(public.parse().expect("an address")), "{public}");
        }
    }

    #[test]
    fn open_graph_reads_the_properties_and_falls_back_to_the_title() {
        let url = reqwest::Url::parse("https://www.rijksoverheid.nl/a").expect("a URL");
        let page = r#"<html><head><title> Rijksoverheid
            </title><meta property="og:title" content="Kabinet &amp; Kamer">
            <meta name="description" content="Nieuws"></head><body></body></html>"#;
        let data = open_graph(page, &url);
        assert_eq!(data["og:title"], "Kabinet & Kamer");
        assert_eq!(data["og:description"], "Nieuws");
        assert_eq!(data["og:url"], "https://www.rijksoverheid.nl/a");
        let data = open_graph("<title>Alleen een titel</title>", &url);
        assert_eq!(data["og:title"], "Alleen een titel");
        // A hostile page: deep nesting costs neither stack nor an error.
        let deep = "<div>".repeat(100_000) + "<title>diep</title>";
        assert_eq!(open_graph(&deep, &url)["og:title"], "diep");
    }
}
