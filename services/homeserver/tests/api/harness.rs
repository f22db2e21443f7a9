use std::sync::atomic::{AtomicU64, Ordering};

use archipel_homeserver::{Homeserver, HomeserverConfig, columns::COLUMNS};
use archipel_store::{Store, StoreOptions};
use axum::{Router, body::Body};
use http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

pub struct TestNode {
    pub router: Router,
    pub homeserver: Homeserver,
    _dir: tempfile::TempDir,
}

pub struct Reply {
    pub status: StatusCode,
    pub body: Value,
}

impl Reply {
    #[track_caller]
    pub fn ok(self) -> Value {
        assert_eq!(
            self.status,
            StatusCode::OK,
            "expected 200, got {}: {}",
            self.status,
            self.body
        );
        self.body
    }

    #[track_caller]
    pub fn err(self, status: StatusCode, errcode: &str) -> Value {
        assert_eq!(self.status, status, "body: {}", self.body);
        assert_eq!(self.body["errcode"], errcode, "body: {}", self.body);
        self.body
    }
}

/// Percent-encodes `s` for a query string.
pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

static TXN: AtomicU64 = AtomicU64::new(0);

/// The event IDs in a list of client events (a timeline, a chunk).
pub fn event_ids(events: &Value) -> Vec<String> {
    events
        .as_array()
        .expect("a list of events")
        .iter()
        .map(|e| e["event_id"].as_str().unwrap_or_default().to_owned())
        .collect()
}

pub fn txn() -> String {
    format!("t{}", TXN.fetch_add(1, Ordering::Relaxed))
}

impl TestNode {
    pub fn start(configure: impl FnOnce(&mut HomeserverConfig)) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = HomeserverConfig {
            open_registration: true,
            ..HomeserverConfig::default()
        };
        config.rate_limit.enabled = false;
        configure(&mut config);
        let store = Store::open(&dir.path().join("db"), COLUMNS, &StoreOptions::default())
            .expect("open store");
        let homeserver = Homeserver::open(config, Default::default(), store, dir.path())
            .expect("open homeserver");
        Self {
            router: homeserver.router(),
            homeserver,
            _dir: dir,
        }
    }

    pub async fn request(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        let mut builder = Request::builder().method(method).uri(path);
        if let Some(token) = token {
            builder = builder.header("authorization", format!("Bearer {token}"));
        }
        let body = body.map_or_else(Body::empty, |b| Body::from(b.to_string()));
        let response = self
            .router
            .clone()
            .oneshot(builder.body(body).expect("request"))
            .await
            .expect("response");
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Reply { status, body }
    }

    /// The device an access token belongs to (`/account/whoami`).
    pub async fn device_id(&self, token: &str) -> String {
        let whoami = self
            .request(
                Method::GET,
                "/_matrix/client/v3/account/whoami",
                Some(token),
                None,
            )
            .await
            .ok();
        whoami["device_id"].as_str().expect("device_id").to_owned()
    }

    /// Registers `name` with m.login.dummy and returns its access token.
    pub async fn register(&self, name: &str) -> String {
        let body = json!({ "username": name, "password": "correct horse", "auth": { "type": "m.login.dummy" } });
        let reply = self
            .request(
                Method::POST,
                "/_matrix/client/v3/register",
                None,
                Some(body),
            )
            .await
            .ok();
        reply["access_token"]
            .as_str()
            .expect("access_token")
            .to_owned()
    }

    /// Signs `name` (registered with [`TestNode::register`]) in again on
    /// another device, `device_id`.
    pub async fn login_device(&self, name: &str, device_id: &str) {
        let login = json!({ "type": "m.login.password", "identifier": { "type": "m.id.user", "user": name }, "password": "correct horse", "device_id": device_id });
        self.request(Method::POST, "/_matrix/client/v3/login", None, Some(login))
            .await
            .ok();
    }

    pub async fn create_room(&self, token: &str, body: Value) -> String {
        let reply = self
            .request(
                Method::POST,
                "/_matrix/client/v3/createRoom",
                Some(token),
                Some(body),
            )
            .await
            .ok();
        reply["room_id"].as_str().expect("room_id").to_owned()
    }

    pub async fn send_text(&self, token: &str, room: &str, text: &str) -> String {
        self.send_message(token, room, json!({ "msgtype": "m.text", "body": text }))
            .await
    }

    /// Sends an `m.room.message` with `content` (a mention, a reply, an
    /// edit); its event ID.
    pub async fn send_message(&self, token: &str, room: &str, content: Value) -> String {
        let path = format!(
            "/_matrix/client/v3/rooms/{room}/send/m.room.message/{}",
            txn()
        );
        let reply = self
            .request(Method::PUT, &path, Some(token), Some(content))
            .await
            .ok();
        reply["event_id"].as_str().expect("event_id").to_owned()
    }

    pub async fn join(&self, token: &str, room: &str) -> Reply {
        self.request(
            Method::POST,
            &format!("/_matrix/client/v3/join/{room}"),
            Some(token),
            Some(json!({})),
        )
        .await
    }

    pub async fn sync(&self, token: &str, since: Option<&str>) -> Value {
        let path = match since {
            Some(since) => format!("/_matrix/client/v3/sync?since={since}&timeout=0"),
            None => "/_matrix/client/v3/sync".to_owned(),
        };
        self.request(Method::GET, &path, Some(token), None)
            .await
            .ok()
    }
}
