//! Minimal Matrix client-server API client: exactly the calls the benchmark
//! needs, over plain HTTP, with no caching or retries beyond honouring
//! `429 M_LIMIT_EXCEEDED`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use reqwest::{Method, StatusCode, Url};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

/// Upper bound for any single request. Long-polling syncs use a 30 s server
/// timeout, so this must comfortably exceed that.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// How many times a rate-limited request is retried before giving up.
const MAX_RATE_LIMIT_RETRIES: u32 = 20;

/// A logged-in device: what is needed to act as a user.
#[derive(Debug, Clone)]
pub struct Session {
    pub user_id: String,
    pub device_id: String,
    access_token: String,
}

/// Handle to one homeserver. Cheap to clone; clones share the connection pool
/// and counters.
#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    base: Url,
    txn_prefix: String,
    txn_counter: Arc<AtomicU64>,
    rate_limited: Arc<AtomicU64>,
}

/// The subset of a `/sync` response the benchmark looks at.
#[derive(Debug, Deserialize)]
pub struct SyncResponse {
    pub next_batch: String,
    #[serde(default)]
    pub rooms: SyncRooms,
}

#[derive(Debug, Default, Deserialize)]
pub struct SyncRooms {
    #[serde(default)]
    pub join: HashMap<String, JoinedRoom>,
}

#[derive(Debug, Default, Deserialize)]
pub struct JoinedRoom {
    #[serde(default)]
    pub timeline: Timeline,
}

#[derive(Debug, Default, Deserialize)]
pub struct Timeline {
    #[serde(default)]
    pub events: Vec<TimelineEvent>,
}

#[derive(Debug, Deserialize)]
pub struct TimelineEvent {
    #[serde(default)]
    pub content: Value,
}

impl SyncResponse {
    pub fn parse(body: &[u8]) -> Result<Self> {
        serde_json::from_slice(body).context("decoding /sync response")
    }

    /// Whether any joined room's timeline holds a message with this exact body.
    pub fn contains_message_body(&self, body: &str) -> bool {
        self.rooms
            .join
            .values()
            .flat_map(|room| &room.timeline.events)
            .any(|event| event.content.get("body").and_then(Value::as_str) == Some(body))
    }
}

#[derive(Debug, Deserialize)]
struct AuthResponse {
    user_id: String,
    access_token: String,
    device_id: String,
}

#[derive(Debug, Deserialize)]
struct MatrixError {
    #[serde(default)]
    errcode: String,
    #[serde(default)]
    error: String,
    #[serde(default)]
    retry_after_ms: Option<u64>,
}

impl Api {
    pub fn new(base: Url) -> Result<Self> {
        let http = reqwest::Client::builder()
            .no_proxy()
            .tcp_nodelay(true)
            .pool_max_idle_per_host(256)
            .timeout(REQUEST_TIMEOUT)
            .build()
            .context("building HTTP client")?;
        let nonce = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or_default();
        Ok(Self {
            http,
            base,
            txn_prefix: format!("bench{}x{nonce}", std::process::id()),
            txn_counter: Arc::new(AtomicU64::new(0)),
            rate_limited: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Number of requests the server answered with 429 (and that were retried).
    pub fn rate_limited_count(&self) -> u64 {
        self.rate_limited.load(Ordering::Relaxed)
    }

    /// `true` once `GET /_matrix/client/versions` answers 200.
    pub async fn is_ready(&self) -> bool {
        let Ok(url) = self.url(&["_matrix", "client", "versions"]) else {
            return false;
        };
        matches!(
            self.http.get(url).timeout(Duration::from_secs(2)).send().await,
            Ok(resp) if resp.status().is_success()
        )
    }

    /// Registers `username` through the `m.login.dummy` user-interactive
    /// authentication flow and returns the logged-in session.
    pub async fn register(&self, username: &str, password: &str) -> Result<Session> {
        let url = self.client_v3(&["register"])?;
        let mut body = json!({
            "username": username,
            "password": password,
            "initial_device_display_name": "archipel-bench",
            "auth": { "type": "m.login.dummy" },
        });
        let (mut status, mut bytes) = self
            .call(Method::POST, url.clone(), None, Some(&body))
            .await?;
        if status == StatusCode::UNAUTHORIZED {
            // UIAA round trip: complete the session the server handed out.
            let challenge: Value =
                serde_json::from_slice(&bytes).context("decoding registration challenge")?;
            let session = challenge
                .get("session")
                .and_then(Value::as_str)
                .ok_or_else(|| anyhow!("registration 401 without a UIAA session: {challenge}"))?;
            body["auth"] = json!({ "type": "m.login.dummy", "session": session });
            (status, bytes) = self.call(Method::POST, url, None, Some(&body)).await?;
        }
        Self::decode::<AuthResponse>("POST /register", status, &bytes)
            .map(Session::from)
            .with_context(|| format!("registering {username}"))
    }

    /// Logs in with a password, which creates a brand-new device.
    pub async fn login(&self, username: &str, password: &str) -> Result<Session> {
        let body = json!({
            "type": "m.login.password",
            "identifier": { "type": "m.id.user", "user": username },
            "password": password,
            "initial_device_display_name": "archipel-bench",
        });
        let url = self.client_v3(&["login"])?;
        let auth: AuthResponse = self
            .request(Method::POST, url, None, Some(&body))
            .await
            .with_context(|| format!("logging in as {username}"))?;
        Ok(auth.into())
    }

    /// Creates a private room inviting `invite`; returns the room ID.
    pub async fn create_room(&self, who: &Session, name: &str, invite: &[&str]) -> Result<String> {
        #[derive(Deserialize)]
        struct Created {
            room_id: String,
        }
        let body = json!({ "preset": "private_chat", "name": name, "invite": invite });
        let url = self.client_v3(&["createRoom"])?;
        let created: Created = self
            .request(Method::POST, url, Some(who), Some(&body))
            .await
            .with_context(|| format!("{} creating room {name:?}", who.user_id))?;
        Ok(created.room_id)
    }

    pub async fn join(&self, who: &Session, room_id: &str) -> Result<()> {
        self.join_via(who, room_id, None).await
    }

    /// Joins `room_id`, through `server` when the room lives elsewhere.
    pub async fn join_via(&self, who: &Session, room_id: &str, server: Option<&str>) -> Result<()> {
        let mut url = self.client_v3(&["join", room_id])?;
        if let Some(server) = server {
            url.query_pairs_mut().append_pair("server_name", server);
        }
        let _: Value = self
            .request(Method::POST, url, Some(who), Some(&json!({})))
            .await
            .with_context(|| format!("{} joining {room_id}", who.user_id))?;
        Ok(())
    }

    /// Sends an `m.text` message with a fresh transaction ID; returns the event ID.
    pub async fn send_text(&self, who: &Session, room_id: &str, body: &str) -> Result<String> {
        #[derive(Deserialize)]
        struct Sent {
            event_id: String,
        }
        let txn = format!(
            "{}-{}",
            self.txn_prefix,
            self.txn_counter.fetch_add(1, Ordering::Relaxed)
        );
        let url = self.client_v3(&["rooms", room_id, "send", "m.room.message", &txn])?;
        let content = json!({ "msgtype": "m.text", "body": body });
        let sent: Sent = self
            .request(Method::PUT, url, Some(who), Some(&content))
            .await
            .with_context(|| format!("{} sending to {room_id}", who.user_id))?;
        Ok(sent.event_id)
    }

    /// Whether `who` can read event `event_id` of `room_id` on this server yet.
    pub async fn has_event(&self, who: &Session, room_id: &str, event_id: &str) -> Result<bool> {
        let url = self.client_v3(&["rooms", room_id, "event", event_id])?;
        let (status, bytes) = self.call(Method::GET, url, Some(who), None).await?;
        match status {
            StatusCode::OK => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => bail!("GET event {event_id}: {}", describe_error(status, &bytes)),
        }
    }

    /// `GET /sync`, returning the raw body so callers can time the transfer
    /// separately from JSON decoding. Without `since` this is an initial sync.
    pub async fn sync_raw(
        &self,
        who: &Session,
        since: Option<&str>,
        timeout_ms: Option<u64>,
    ) -> Result<Bytes> {
        let mut url = self.client_v3(&["sync"])?;
        {
            let mut query = url.query_pairs_mut();
            if let Some(since) = since {
                query.append_pair("since", since);
            }
            if let Some(timeout_ms) = timeout_ms {
                query.append_pair("timeout", &timeout_ms.to_string());
            }
        }
        let (status, bytes) = self.call(Method::GET, url, Some(who), None).await?;
        if !status.is_success() {
            bail!("GET /sync: {}", describe_error(status, &bytes));
        }
        Ok(bytes)
    }

    /// `POST` simplified sliding sync (MSC4186) with `body`, from `pos`,
    /// long-polling up to `timeout_ms`; the raw body.
    pub async fn sliding_sync_raw(
        &self,
        who: &Session,
        pos: Option<&str>,
        timeout_ms: u64,
        body: &Value,
    ) -> Result<Bytes> {
        let mut url = self.url(&[
            "_matrix",
            "client",
            "unstable",
            "org.matrix.simplified_msc3575",
            "sync",
        ])?;
        {
            let mut query = url.query_pairs_mut();
            if let Some(pos) = pos {
                query.append_pair("pos", pos);
            }
            query.append_pair("timeout", &timeout_ms.to_string());
        }
        let (status, bytes) = self.call(Method::POST, url, Some(who), Some(body)).await?;
        if !status.is_success() {
            bail!("sliding sync: {}", describe_error(status, &bytes));
        }
        Ok(bytes)
    }

    fn url(&self, segments: &[&str]) -> Result<Url> {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .map_err(|()| anyhow!("base URL {} cannot have a path", self.base))?
            .pop_if_empty()
            .extend(segments);
        Ok(url)
    }

    fn client_v3(&self, segments: &[&str]) -> Result<Url> {
        let mut all = vec!["_matrix", "client", "v3"];
        all.extend_from_slice(segments);
        self.url(&all)
    }

    /// Sends a request expecting a 2xx JSON answer.
    async fn request<T: DeserializeOwned>(
        &self,
        method: Method,
        url: Url,
        who: Option<&Session>,
        body: Option<&Value>,
    ) -> Result<T> {
        let what = format!("{method} {}", url.path());
        let (status, bytes) = self.call(method, url, who, body).await?;
        Self::decode(&what, status, &bytes)
    }

    fn decode<T: DeserializeOwned>(what: &str, status: StatusCode, bytes: &[u8]) -> Result<T> {
        if !status.is_success() {
            bail!("{what}: {}", describe_error(status, bytes));
        }
        serde_json::from_slice(bytes).with_context(|| format!("{what}: decoding response"))
    }

    /// Performs one request, transparently retrying when rate limited.
    async fn call(
        &self,
        method: Method,
        url: Url,
        who: Option<&Session>,
        body: Option<&Value>,
    ) -> Result<(StatusCode, Bytes)> {
        let mut attempt = 0;
        loop {
            let mut req = self.http.request(method.clone(), url.clone());
            if let Some(who) = who {
                req = req.bearer_auth(&who.access_token);
            }
            if let Some(body) = body {
                req = req.json(body);
            }
            let resp = req
                .send()
                .await
                .with_context(|| format!("{method} {}", url.path()))?;
            let status = resp.status();
            let bytes = resp
                .bytes()
                .await
                .with_context(|| format!("{method} {}: reading body", url.path()))?;
            if status != StatusCode::TOO_MANY_REQUESTS || attempt >= MAX_RATE_LIMIT_RETRIES {
                return Ok((status, bytes));
            }
            attempt += 1;
            self.rate_limited.fetch_add(1, Ordering::Relaxed);
            let wait_ms = serde_json::from_slice::<MatrixError>(&bytes)
                .ok()
                .and_then(|e| e.retry_after_ms)
                .unwrap_or(500)
                .min(10_000);
            tokio::time::sleep(Duration::from_millis(wait_ms)).await;
        }
    }
}

impl From<AuthResponse> for Session {
    fn from(auth: AuthResponse) -> Self {
        Self {
            user_id: auth.user_id,
            device_id: auth.device_id,
            access_token: auth.access_token,
        }
    }
}

fn describe_error(status: StatusCode, body: &[u8]) -> String {
    match serde_json::from_slice::<MatrixError>(body) {
        Ok(err) if !err.errcode.is_empty() => {
            format!("{status} {}: {}", err.errcode, err.error)
        }
        _ => {
            let text = String::from_utf8_lossy(body);
            let snippet: String = text.chars().take(300).collect();
            format!("{status}: {snippet}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_message_body_in_any_joined_room() {
        let body = br#"{
            "next_batch": "s1",
            "rooms": { "join": {
                "!a:localhost": { "timeline": { "events": [
                    { "type": "m.room.member", "content": { "membership": "join" } },
                    { "type": "m.room.message", "content": { "msgtype": "m.text", "body": "hello-7" } }
                ] } },
                "!b:localhost": {}
            } }
        }"#;
        let sync = SyncResponse::parse(body).expect("test input is valid");
        assert_eq!(sync.next_batch, "s1");
        assert!(sync.contains_message_body("hello-7"));
        assert!(!sync.contains_message_body("hello-8"));
    }

    #[test]
    fn sync_without_rooms_parses() {
        let sync = SyncResponse::parse(br#"{"next_batch":"s2"}"#).expect("test input is valid");
        assert!(sync.rooms.join.is_empty());
    }

    #[test]
    fn room_ids_are_path_encoded() {
        let api = Api::new(Url::parse("http://127.0.0.1:1/").expect("test input is valid"))
            .expect("test input is valid");
        let url = api
            .client_v3(&["rooms", "!abc:localhost", "send", "m.room.message", "t/1"])
            .expect("test input is valid");
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:1/_matrix/client/v3/rooms/!abc:localhost/send/m.room.message/t%2F1"
        );
    }
}
