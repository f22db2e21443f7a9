//! Clients for the tests: logged-in matrix-sdk clients, and a thin raw HTTP
//! client for asserting exact status codes, error codes and stored state.

use std::fmt::Write as _;
use std::time::Duration;

use archipel_archive_member::matrix_sdk_crypto::CollectStrategy;
use matrix_sdk::config::{RequestConfig, SyncSettings};
use matrix_sdk::encryption::EncryptionSettings;
use matrix_sdk::ruma::api::client::account::register;
use matrix_sdk::ruma::api::client::filter::FilterDefinition;
use matrix_sdk::ruma::api::client::room::{Visibility, create_room};
use matrix_sdk::ruma::api::client::sync::sync_events::v3::Filter;
use matrix_sdk::ruma::api::client::uiaa;
use matrix_sdk::ruma::events::AnyInitialStateEvent;
use matrix_sdk::ruma::serde::Raw;
use matrix_sdk::ruma::{EventId, OwnedRoomId, OwnedUserId, RoomId, UInt, UserId};
use matrix_sdk::sync::SyncResponse;
use matrix_sdk::{Client, ClientBuilder, Room, RoomState};
use reqwest::header::{CONTENT_TYPE, HeaderMap};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::harness::TestServer;

/// Password of every test account.
pub const PASSWORD: &str = "correct horse battery staple";

/// How long a test waits for something to arrive via sync.
pub const SYNC_DEADLINE: Duration = Duration::from_secs(90);

/// Long-poll timeout of each sync request.
const SYNC_POLL: Duration = Duration::from_secs(5);

/// Timeline limit asked for in every sync, above the largest burst a test
/// sends, so that no sync response is `limited`.
const SYNC_TIMELINE_LIMIT: u32 = 250;

/// The user ID `@name:localhost`.
pub fn user_id(name: &str) -> OwnedUserId {
    UserId::parse(format!("@{name}:localhost")).expect("valid user ID")
}

// ---------------------------------------------------------------------------
// matrix-sdk clients
// ---------------------------------------------------------------------------

/// A matrix-sdk client for `server` with in-memory stores, not logged in.
///
/// Automatic retries are off so that every server error surfaces in the test.
pub async fn new_client(server: &TestServer) -> Client {
    new_client_at(server.url()).await
}

/// A matrix-sdk client for the homeserver at `url`, not logged in.
pub async fn new_client_at(url: &str) -> Client {
    client_builder(url)
        .build()
        .await
        .expect("build a matrix-sdk client")
}

/// The builder of [`new_client_at`], for a client configured otherwise.
pub fn client_builder(url: &str) -> ClientBuilder {
    Client::builder().homeserver_url(url).request_config(
        RequestConfig::new()
            .disable_retry()
            .timeout(Duration::from_secs(60)),
    )
}

/// Registers `@name:localhost` through the `m.login.dummy` user-interactive
/// authentication flow and returns the logged-in client.
pub async fn register_client(server: &TestServer, name: &str) -> Client {
    register_at(server.url(), server.server_name(), name).await
}

/// Registers `@name:server_name` on the homeserver at `url` (Archipel or
/// another server) through `m.login.dummy`.
pub async fn register_at(url: &str, server_name: &str, name: &str) -> Client {
    register_as(new_client_at(url).await, server_name, name).await
}

/// Registers `@name:localhost` with a client that shares room keys only
/// with devices their owner signed: matrix-sdk's identity-based strategy,
/// the one Element X and Element Web use to exclude insecure devices. Like
/// Element X, it sets up its own cross-signing identity at sign-in (the
/// strategy refuses to send without one).
pub async fn register_identity_based(server: &TestServer, name: &str) -> Client {
    let client = client_builder(server.url())
        .with_room_key_recipient_strategy(CollectStrategy::IdentityBasedStrategy)
        .with_encryption_settings(EncryptionSettings {
            auto_enable_cross_signing: true,
            ..Default::default()
        })
        .build()
        .await
        .expect("build a matrix-sdk client");
    register_as(client, server.server_name(), name).await
}

/// Registers `client` as `@name:server_name` through `m.login.dummy`.
pub async fn register_as(client: Client, server_name: &str, name: &str) -> Client {
    let auth = client.matrix_auth();

    let mut request = register::v3::Request::new();
    request.username = Some(name.to_owned());
    request.password = Some(PASSWORD.to_owned());
    request.initial_device_display_name = Some(format!("{name} (e2e)"));

    // The first request, without auth data, starts a UIAA session.
    let session = match auth.register(request.clone()).await {
        Ok(_) => None,
        Err(err) => {
            let info = err
                .as_uiaa_response()
                .unwrap_or_else(|| panic!("register {name}: expected a UIAA challenge, got {err}"));
            assert!(
                info.flows
                    .iter()
                    .any(|flow| flow.stages == [uiaa::AuthType::Dummy]),
                "register {name}: no m.login.dummy flow offered: {:?}",
                info.flows
            );
            info.session.clone()
        }
    };
    if !auth.logged_in() {
        let mut dummy = uiaa::Dummy::new();
        dummy.session = session;
        request.auth = Some(uiaa::AuthData::Dummy(dummy));
        auth.register(request)
            .await
            .unwrap_or_else(|err| panic!("register {name} with m.login.dummy: {err}"));
    }
    assert!(
        auth.logged_in(),
        "register {name}: the client has no session"
    );
    let expected = UserId::parse(format!("@{name}:{server_name}")).expect("valid user ID");
    assert_eq!(client.user_id(), Some(&*expected));
    client
}

/// Logs `@name:localhost` in with its password.
pub async fn login_client(server: &TestServer, name: &str) -> Client {
    let client = new_client(server).await;
    client
        .matrix_auth()
        .login_username(name, PASSWORD)
        .initial_device_display_name(&format!("{name} (e2e)"))
        .await
        .unwrap_or_else(|err| panic!("log {name} in: {err}"));
    client
}

/// Raw HTTP access with the same access token as `client`.
pub fn api_for(server: &TestServer, client: &Client) -> Api {
    Api::new(server.url()).with_token(&client.access_token().expect("the client is logged in"))
}

/// Sync settings used by every test: a short long-poll and a timeline limit
/// big enough that responses are never `limited`.
pub fn sync_settings() -> SyncSettings {
    let mut filter = FilterDefinition::default();
    filter.room.timeline.limit = Some(UInt::from(SYNC_TIMELINE_LIMIT));
    SyncSettings::default()
        .timeout(SYNC_POLL)
        .filter(Filter::FilterDefinition(filter))
}

/// Sync settings for a first sync that should return at once.
pub fn initial_sync_settings() -> SyncSettings {
    sync_settings().timeout(Duration::ZERO)
}

/// Syncs `client` until `check` returns `Some` for a response, failing the
/// test with `what` after [`SYNC_DEADLINE`].
pub async fn sync_until<T>(
    client: &Client,
    what: &str,
    mut check: impl FnMut(&SyncResponse) -> Option<T>,
) -> T {
    let give_up = Instant::now() + SYNC_DEADLINE;
    loop {
        let response = client
            .sync_once(sync_settings())
            .await
            .unwrap_or_else(|err| panic!("sync while waiting for {what}: {err}"));
        if let Some(value) = check(&response) {
            return value;
        }
        assert!(
            Instant::now() < give_up,
            "timed out after {SYNC_DEADLINE:?} waiting for {what}"
        );
    }
}

/// The timeline events of `room_id` in a sync response, as JSON, in order.
///
/// Panics if the timeline is `limited`: with the filter of
/// [`sync_settings`] it never should be, and a gap would hide events.
pub fn timeline_json(response: &SyncResponse, room_id: &RoomId) -> Vec<Value> {
    let Some(room) = response.rooms.joined.get(room_id) else {
        return Vec::new();
    };
    assert!(
        !room.timeline.limited,
        "sync returned a limited timeline for {room_id} despite a timeline limit of \
         {SYNC_TIMELINE_LIMIT}"
    );
    room.timeline
        .events
        .iter()
        .map(|event| serde_json::from_str(event.raw().json().get()).expect("event is JSON"))
        .collect()
}

/// The ephemeral events (typing, receipts) of `room_id` in a sync response.
pub fn ephemeral_json(response: &SyncResponse, room_id: &RoomId) -> Vec<Value> {
    response
        .rooms
        .joined
        .get(room_id)
        .map(|room| {
            room.ephemeral
                .iter()
                .map(|event| serde_json::from_str(event.json().get()).expect("event is JSON"))
                .collect()
        })
        .unwrap_or_default()
}

/// Whether `event` is `@user` joining (their membership becoming `join`).
pub fn is_join_of(event: &Value, user: &UserId) -> bool {
    event["type"] == "m.room.member"
        && event["state_key"] == user.as_str()
        && event["content"]["membership"] == "join"
}

/// Two registered users sharing a private room created by alice.
pub struct Pair {
    pub alice: Client,
    pub bob: Client,
    pub room_id: OwnedRoomId,
}

impl Pair {
    pub fn alice_room(&self) -> Room {
        self.alice
            .get_room(&self.room_id)
            .expect("alice knows the room")
    }

    pub fn bob_room(&self) -> Room {
        self.bob
            .get_room(&self.room_id)
            .expect("bob knows the room")
    }
}

/// Registers alice and bob; alice creates a private room with
/// `initial_state` and invites bob; bob sees the invite via sync and joins;
/// both clients have synced the join when this returns.
pub async fn alice_and_bob_in_room(
    server: &TestServer,
    initial_state: Vec<Raw<AnyInitialStateEvent>>,
) -> Pair {
    let alice = register_client(server, "alice").await;
    let bob = register_client(server, "bob").await;
    let bob_id = user_id("bob");

    // A first sync uploads each device's keys and sets the sync tokens.
    for client in [&alice, &bob] {
        client
            .sync_once(initial_sync_settings())
            .await
            .expect("initial sync");
    }

    let mut request = create_room::v3::Request::new();
    request.preset = Some(create_room::v3::RoomPreset::PrivateChat);
    request.visibility = Visibility::Private;
    request.name = Some("e2e".to_owned());
    request.invite = vec![bob_id.clone()];
    request.initial_state = initial_state;
    let room = alice
        .create_room(request)
        .await
        .expect("alice creates a room");
    let room_id = room.room_id().to_owned();

    sync_until(&bob, "bob to see the invite", |response| {
        response.rooms.invited.contains_key(&room_id).then_some(())
    })
    .await;
    let invited = bob
        .get_room(&room_id)
        .expect("bob's client knows the invited room");
    assert_eq!(invited.state(), RoomState::Invited);
    invited.join().await.expect("bob joins");

    sync_until(&alice, "alice to see bob join", |response| {
        timeline_json(response, &room_id)
            .iter()
            .any(|event| is_join_of(event, &bob_id))
            .then_some(())
    })
    .await;
    sync_until(&bob, "bob's sync to list the room as joined", |response| {
        response.rooms.joined.contains_key(&room_id).then_some(())
    })
    .await;
    assert_eq!(
        bob.get_room(&room_id).expect("room").state(),
        RoomState::Joined
    );

    Pair {
        alice,
        bob,
        room_id,
    }
}

/// Awaits a spawned task, re-raising its panic in the test.
pub async fn join<T>(handle: tokio::task::JoinHandle<T>) -> T {
    match handle.await {
        Ok(value) => value,
        Err(err) if err.is_panic() => std::panic::resume_unwind(err.into_panic()),
        Err(err) => panic!("task failed: {err}"),
    }
}

// ---------------------------------------------------------------------------
// Raw HTTP
// ---------------------------------------------------------------------------

/// A response of the raw client.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub bytes: Vec<u8>,
}

impl Reply {
    /// The body as JSON (`Null` if it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.bytes).unwrap_or(Value::Null)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }

    /// Asserts a 200 response and returns its JSON body.
    #[track_caller]
    pub fn ok(&self) -> Value {
        assert_eq!(
            self.status,
            StatusCode::OK,
            "unexpected response: {}",
            self.text()
        );
        self.json()
    }

    /// Asserts a standard error response: the HTTP status and the `errcode`.
    #[track_caller]
    pub fn assert_error(&self, status: StatusCode, errcode: &str) {
        let body = self.json();
        assert!(
            self.status == status && body["errcode"] == errcode,
            "expected {status} {errcode}, got {} {}",
            self.status,
            self.text()
        );
        assert!(
            body["error"].is_string() || body.get("error").is_none(),
            "`error` must be a string: {}",
            self.text()
        );
    }

    pub fn content_type(&self) -> String {
        self.headers
            .get(CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    }
}

/// A raw client-server API client, optionally with an access token.
#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

/// A session returned by `/register` or `/login`.
pub struct Session {
    pub access_token: String,
    pub device_id: String,
}

impl Api {
    pub fn new(base: &str) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .expect("build an HTTP client");
        Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
            token: None,
        }
    }

    /// The same client with `token` as its access token.
    pub fn with_token(&self, token: &str) -> Self {
        Self {
            token: Some(token.to_owned()),
            ..self.clone()
        }
    }

    /// The same client without an access token.
    pub fn anonymous(&self) -> Self {
        Self {
            token: None,
            ..self.clone()
        }
    }

    /// Sends a request; `path` starts with `/_matrix/...` and is already
    /// percent-encoded (see [`enc`]). Transport errors are returned, HTTP
    /// errors are not.
    pub async fn try_request(
        &self,
        method: Method,
        path: &str,
        body: Option<(&str, Vec<u8>)>,
    ) -> reqwest::Result<Reply> {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some((content_type, bytes)) = body {
            request = request.header(CONTENT_TYPE, content_type).body(bytes);
        }
        let response = request.send().await?;
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.bytes().await?.to_vec();
        Ok(Reply {
            status,
            headers,
            bytes,
        })
    }

    pub async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<(&str, Vec<u8>)>,
    ) -> Reply {
        let description = format!("{method} {path}");
        self.try_request(method, path, body)
            .await
            .unwrap_or_else(|err| panic!("{description}: {err}"))
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.request(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Reply {
        self.request(Method::POST, path, Some(json_body(body)))
            .await
    }

    pub async fn put(&self, path: &str, body: &Value) -> Reply {
        self.request(Method::PUT, path, Some(json_body(body))).await
    }

    /// Sends raw bytes as `application/json`, for malformed-body tests.
    pub async fn raw_json(&self, method: Method, path: &str, body: &[u8]) -> Reply {
        self.request(method, path, Some(("application/json", body.to_vec())))
            .await
    }

    /// Registers `@name:localhost` with the `m.login.dummy` UIAA flow.
    pub async fn register(&self, name: &str) -> Session {
        const PATH: &str = "/_matrix/client/v3/register";
        let mut body = json!({ "username": name, "password": PASSWORD });
        let first = self.post(PATH, &body).await;
        let reply = if first.status == StatusCode::UNAUTHORIZED {
            let challenge = first.json();
            let flows = challenge["flows"].as_array().cloned().unwrap_or_default();
            assert!(
                flows
                    .iter()
                    .any(|flow| flow["stages"] == json!(["m.login.dummy"])),
                "register {name}: no m.login.dummy flow offered: {challenge}"
            );
            body["auth"] = json!({ "type": "m.login.dummy", "session": challenge["session"] });
            self.post(PATH, &body).await
        } else {
            first
        };
        let session = reply.ok();
        assert_eq!(
            session["user_id"],
            user_id(name).as_str(),
            "register {name}"
        );
        Session {
            access_token: session["access_token"]
                .as_str()
                .expect("access_token")
                .to_owned(),
            device_id: session["device_id"].as_str().expect("device_id").to_owned(),
        }
    }

    /// `POST /login` with a password; returns the raw reply.
    /// Registers `name` with [`PASSWORD`] through `m.login.registration_token`.
    /// Answers with the first reply when it is not a UIAA challenge (e.g.
    /// registration closed: no valid token left).
    pub async fn register_with_token(&self, name: &str, token: &str) -> Reply {
        const PATH: &str = "/_matrix/client/v3/register";
        let mut body = json!({ "username": name, "password": PASSWORD });
        let challenge = self.post(PATH, &body).await;
        if challenge.status != StatusCode::UNAUTHORIZED {
            return challenge;
        }
        body["auth"] = json!({
            "type": "m.login.registration_token",
            "token": token,
            "session": challenge.json()["session"].clone(),
        });
        self.post(PATH, &body).await
    }

    pub async fn login_reply(&self, name: &str, password: &str) -> Reply {
        let body = json!({
            "type": "m.login.password",
            "identifier": { "type": "m.id.user", "user": name },
            "password": password,
        });
        self.post("/_matrix/client/v3/login", &body).await
    }

    /// Logs in with the correct password.
    pub async fn login(&self, name: &str) -> Session {
        let session = self.login_reply(name, PASSWORD).await.ok();
        assert_eq!(session["user_id"], user_id(name).as_str(), "login {name}");
        Session {
            access_token: session["access_token"]
                .as_str()
                .expect("access_token")
                .to_owned(),
            device_id: session["device_id"].as_str().expect("device_id").to_owned(),
        }
    }

    /// Creates a private room and returns its ID.
    pub async fn create_room(&self) -> String {
        let reply = self
            .post(
                "/_matrix/client/v3/createRoom",
                &json!({ "preset": "private_chat" }),
            )
            .await;
        reply.ok()["room_id"].as_str().expect("room_id").to_owned()
    }

    pub async fn joined_rooms(&self) -> Vec<String> {
        let body = self.get("/_matrix/client/v3/joined_rooms").await.ok();
        let mut rooms: Vec<String> = serde_json::from_value(body["joined_rooms"].clone())
            .expect("joined_rooms is a list of strings");
        rooms.sort();
        rooms
    }

    /// `PUT /rooms/{room}/send/m.room.message/{txn}` with a text body.
    pub async fn send_text(&self, room: &str, txn: &str, text: &str) -> Reply {
        self.put(&send_path(room, txn), &text_content(text)).await
    }

    /// Sends a text message and returns its event ID.
    pub async fn send_text_ok(&self, room: &str, txn: &str, text: &str) -> String {
        let reply = self.send_text(room, txn, text).await;
        reply.ok()["event_id"]
            .as_str()
            .expect("event_id")
            .to_owned()
    }

    /// `GET /rooms/{room}/event/{event}`.
    pub async fn event(&self, room: &str, event_id: &str) -> Reply {
        self.get(&format!(
            "/_matrix/client/v3/rooms/{}/event/{}",
            enc(room),
            enc(event_id)
        ))
        .await
    }

    /// The whole visible timeline of `room`, oldest first, read with
    /// `/messages` backwards from the end.
    pub async fn timeline(&self, room: &str) -> Vec<Value> {
        let mut events = Vec::new();
        let mut from: Option<String> = None;
        for _ in 0..1000 {
            let mut path = format!(
                "/_matrix/client/v3/rooms/{}/messages?dir=b&limit=100",
                enc(room)
            );
            if let Some(token) = &from {
                write!(path, "&from={}", enc(token)).expect("write to a String");
            }
            let page = self.get(&path).await.ok();
            let chunk = page["chunk"].as_array().cloned().unwrap_or_default();
            if chunk.is_empty() {
                break;
            }
            events.extend(chunk);
            match page["end"].as_str() {
                Some(end) => from = Some(end.to_owned()),
                None => break,
            }
        }
        events.reverse();
        events
    }

    /// IDs of the events in the timeline of `room`, oldest first.
    pub async fn timeline_ids(&self, room: &str) -> Vec<String> {
        self.timeline(room)
            .await
            .iter()
            .map(|event| event["event_id"].as_str().expect("event_id").to_owned())
            .collect()
    }

    /// Bodies of the `m.room.message` events in `room` whose body starts with
    /// `prefix`, oldest first, with their event IDs.
    pub async fn messages_with_prefix(&self, room: &str, prefix: &str) -> Vec<(String, String)> {
        self.timeline(room)
            .await
            .iter()
            .filter(|event| event["type"] == "m.room.message")
            .filter_map(|event| {
                let body = event["content"]["body"].as_str()?;
                body.starts_with(prefix).then(|| {
                    (
                        event["event_id"].as_str().expect("event_id").to_owned(),
                        body.to_owned(),
                    )
                })
            })
            .collect()
    }

    /// `POST /_matrix/media/v3/upload`.
    pub async fn upload(&self, content_type: &str, bytes: Vec<u8>) -> Reply {
        self.request(
            Method::POST,
            "/_matrix/media/v3/upload",
            Some((content_type, bytes)),
        )
        .await
    }

    /// `GET /_matrix/client/v1/media/download/{mxc}` (authenticated media).
    pub async fn download(&self, mxc: &str) -> Reply {
        let (server, media_id) = split_mxc(mxc);
        self.get(&format!(
            "/_matrix/client/v1/media/download/{}/{}",
            enc(server),
            enc(media_id)
        ))
        .await
    }
}

/// `/_matrix/client/v3/rooms/{room}/send/m.room.message/{txn}`.
pub fn send_path(room: &str, txn: &str) -> String {
    format!(
        "/_matrix/client/v3/rooms/{}/send/m.room.message/{}",
        enc(room),
        enc(txn)
    )
}

pub fn text_content(text: &str) -> Value {
    json!({ "msgtype": "m.text", "body": text })
}

fn json_body(value: &Value) -> (&'static str, Vec<u8>) {
    (
        "application/json",
        serde_json::to_vec(value).expect("serialize JSON"),
    )
}

/// `mxc://server/id` → `(server, id)`.
pub fn split_mxc(mxc: &str) -> (&str, &str) {
    mxc.strip_prefix("mxc://")
        .and_then(|rest| rest.split_once('/'))
        .unwrap_or_else(|| panic!("not an mxc URI: {mxc}"))
}

/// Percent-encodes a path segment or query value.
pub fn enc(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            write!(out, "%{byte:02X}").expect("write to a String");
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Test data
// ---------------------------------------------------------------------------

/// A valid `width`×`height` RGB PNG with a colour gradient, uncompressed
/// (stored deflate blocks), so its size is predictable.
pub fn png(width: u32, height: u32) -> Vec<u8> {
    let mut raw = Vec::new();
    for y in 0..height {
        raw.push(0); // filter: none
        for x in 0..width {
            raw.extend([shade(x, width), shade(y, height), 0x80]);
        }
    }

    let mut zlib = vec![0x78, 0x01];
    let mut blocks = raw.chunks(0xFFFF).peekable();
    while let Some(block) = blocks.next() {
        zlib.push(u8::from(blocks.peek().is_none()));
        let len = u16::try_from(block.len()).expect("block fits in u16");
        zlib.extend(len.to_le_bytes());
        zlib.extend((!len).to_le_bytes());
        zlib.extend(block);
    }
    zlib.extend(adler32(&raw).to_be_bytes());

    let mut ihdr = Vec::new();
    ihdr.extend(width.to_be_bytes());
    ihdr.extend(height.to_be_bytes());
    ihdr.extend([8, 2, 0, 0, 0]); // 8-bit RGB, deflate, no filter, no interlace

    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png_chunk(&mut png, *b"IHDR", &ihdr);
    png_chunk(&mut png, *b"IDAT", &zlib);
    png_chunk(&mut png, *b"IEND", &[]);
    png
}

/// `n` of `of` as a colour intensity.
fn shade(n: u32, of: u32) -> u8 {
    u8::try_from(n * 255 / of).expect("n < of")
}

fn png_chunk(out: &mut Vec<u8>, kind: [u8; 4], data: &[u8]) {
    out.extend(
        u32::try_from(data.len())
            .expect("chunk fits in u32")
            .to_be_bytes(),
    );
    let start = out.len();
    out.extend(kind);
    out.extend(data);
    let crc = crc32(&out[start..]);
    out.extend(crc.to_be_bytes());
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFF_u32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn adler32(bytes: &[u8]) -> u32 {
    let (mut a, mut b) = (1_u32, 0_u32);
    for &byte in bytes {
        a = (a + u32::from(byte)) % 65521;
        b = (b + a) % 65521;
    }
    (b << 16) | a
}

/// `len` pseudo-random (incompressible) bytes.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend(state.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Whether `bytes` start like a PNG, JPEG, GIF or WebP image.
pub fn looks_like_image(bytes: &[u8]) -> bool {
    bytes.starts_with(b"\x89PNG\r\n\x1a\n")
        || bytes.starts_with(&[0xFF, 0xD8, 0xFF])
        || bytes.starts_with(b"GIF8")
        || (bytes.starts_with(b"RIFF") && bytes.get(8..12) == Some(b"WEBP"))
}

/// Syncs `client` until the encrypted event `event_id` in `room` decrypts,
/// and returns the clear event. The room key travels as a to-device
/// message and may arrive in a later sync than the event itself.
pub async fn decrypted_json(client: &Client, room: &Room, event_id: &EventId) -> Value {
    use matrix_sdk::deserialized_responses::TimelineEventKind;
    let give_up = Instant::now() + SYNC_DEADLINE;
    loop {
        let event = room.event(event_id, None).await.expect("fetch the event");
        match event.kind {
            TimelineEventKind::Decrypted(decrypted) => {
                return serde_json::from_str(decrypted.event.json().get()).expect("event JSON");
            }
            TimelineEventKind::UnableToDecrypt { utd_info, .. } => {
                assert!(
                    Instant::now() < give_up,
                    "{} could not decrypt {event_id}: {utd_info:?}",
                    client.user_id().expect("logged in")
                );
            }
            TimelineEventKind::PlainText { event } => {
                panic!(
                    "the server returned a plaintext event: {}",
                    event.json().get()
                );
            }
        }
        client.sync_once(sync_settings()).await.expect("sync");
    }
}
