//! A node for fuzz targets: a homeserver on a RocksDB store in a temporary
//! folder (without fsync), a signed-in user with a room, and one
//! allowlisted peer whose signing key the target holds.

use std::sync::LazyLock;

use archipel_homeserver::{FederationConfig, Homeserver, HomeserverConfig, PeerConfig};
use archipel_store::{Store, StoreOptions};
use axum::{Router, body::Body};
use http_body_util::BodyExt;
use ruma::{
    CanonicalJsonObject, CanonicalJsonValue, RoomVersionId,
    api::federation::authentication::{ServerSignaturesInput, XMatrix},
    serde::{Base64, base64::Standard},
    server_name,
    signatures::Ed25519KeyPair,
};
use tower::ServiceExt;

pub struct Node {
    pub runtime: tokio::runtime::Runtime,
    pub client: Router,
    pub federation: Router,
    /// An access token of `@fuzz:a.test`.
    pub token: String,
    /// A room `@fuzz:a.test` created.
    pub room: String,
    /// The signing key of the peer `b.test`.
    pub peer_key: Ed25519KeyPair,
    /// The room's state and auth chain after `@peer:b.test` joined, the
    /// join last: event IDs a fuzzed PDU can point at.
    pub known_events: Vec<String>,
    _homeserver: Homeserver,
    _dir: tempfile::TempDir,
}

pub static NODE: LazyLock<Node> = LazyLock::new(Node::start);

impl Node {
    fn start() -> Self {
        // libFuzzer aborts on any panic, even one the node catches and
        // answers (a 500, which the targets report themselves): the node
        // runs with the default hook, as it does in production.
        let _ = std::panic::take_hook();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let _entered = runtime.enter();
        let dir = tempfile::tempdir().expect("a temporary folder");
        let document = Ed25519KeyPair::generate();
        let peer_key = Ed25519KeyPair::from_der(&document, "0".into()).expect("the key");
        let mut config = HomeserverConfig {
            server_name: server_name!("a.test").to_owned(),
            open_registration: true,
            ..HomeserverConfig::default()
        };
        // Every input reaches its handler instead of a 429.
        config.rate_limit.enabled = false;
        // Peers' certificates would be checked against this CA; none is
        // ever reached.
        let ca = rcgen::generate_simple_self_signed(["b.test".to_owned()]).expect("a CA");
        let ca_bundle = dir.path().join("ca.pem");
        std::fs::write(&ca_bundle, ca.cert.pem()).expect("the CA bundle");
        let federation = FederationConfig {
            ca_bundle: Some(ca_bundle),
            // Never bound: the routers are called in-process.
            listen: Some(([127, 0, 0, 1], 1).into()),
            peers: vec![PeerConfig {
                server_name: server_name!("b.test").to_owned(),
                // Nothing listens there: nothing leaves the machine.
                address: Some(([127, 0, 0, 1], 1).into()),
                keys: [(
                    "ed25519:0".to_owned(),
                    Base64::<Standard, _>::new(peer_key.public_key().to_vec()).encode(),
                )]
                .into(),
            }],
            ..FederationConfig::default()
        };
        let options = StoreOptions {
            durable: false,
            ..StoreOptions::default()
        };
        let store = Store::open(
            &dir.path().join("db"),
            archipel_homeserver::columns::COLUMNS,
            &options,
        )
        .expect("a store");
        let homeserver =
            Homeserver::open(config, federation, store, dir.path()).expect("a homeserver");
        let client = homeserver.router();
        let federation = homeserver.federation_router();
        let mut node = Self {
            runtime,
            client,
            federation,
            token: String::new(),
            room: String::new(),
            peer_key,
            known_events: Vec::new(),
            _homeserver: homeserver,
            _dir: dir,
        };
        let registered = node.call_client(
            "POST",
            "/_matrix/client/v3/register",
            None,
            br#"{"username":"fuzz","password":"fuzz fuzz fuzz","auth":{"type":"m.login.dummy"}}"#,
        );
        node.token = registered.1["access_token"]
            .as_str()
            .expect("registered")
            .to_owned();
        let token = node.token.clone();
        let created = node.call_client(
            "POST",
            "/_matrix/client/v3/createRoom",
            Some(&token),
            br#"{"name":"fuzz","preset":"public_chat","room_version":"12"}"#,
        );
        node.room = created.1["room_id"].as_str().expect("a room").to_owned();
        node.join_peer();
        node
    }

    /// `@peer:b.test` joins the room over federation, so that the peer's
    /// events reach the auth rules' later checks.
    fn join_peer(&mut self) {
        let room = &self.room;
        let (status, template) = self.call_federation(
            "GET",
            &format!("/_matrix/federation/v1/make_join/{room}/@peer:b.test?ver=11"),
            None,
            true,
            b"",
        );
        assert_eq!(status, 200, "make_join: {template}");
        let mut event: CanonicalJsonObject =
            serde_json::from_value(template["event"].clone()).expect("a join template");
        event.insert(
            "origin_server_ts".into(),
            CanonicalJsonValue::Integer(1_800_000_000_000_u64.try_into().expect("small")),
        );
        let event_id = self.sign_pdu(&mut event).expect("a signed join");
        let body = serde_json::to_vec(&event).expect("JSON");
        let (status, joined) = self.call_federation(
            "PUT",
            &format!("/_matrix/federation/v2/send_join/{room}/{event_id}"),
            None,
            true,
            &body,
        );
        assert_eq!(status, 200, "send_join: {joined}");
        let (status, ids) = self.call_federation(
            "GET",
            &format!("/_matrix/federation/v1/state_ids/{room}?event_id={event_id}"),
            None,
            true,
            b"",
        );
        assert_eq!(status, 200, "state_ids: {ids}");
        for list in ["auth_chain_ids", "pdu_ids"] {
            for id in ids[list].as_array().into_iter().flatten() {
                let id = id.as_str().expect("an event ID").to_owned();
                if !self.known_events.contains(&id) {
                    self.known_events.push(id);
                }
            }
        }
        self.known_events.retain(|id| id != &event_id);
        self.known_events.push(event_id);
    }

    /// Hashes and signs `event` as `b.test` (room version 12, the fuzz
    /// room's) and returns its event ID.
    pub fn sign_pdu(&self, event: &mut CanonicalJsonObject) -> Option<String> {
        let rules = RoomVersionId::V12.rules()?;
        ruma::signatures::hash_and_sign_event("b.test", &self.peer_key, event, &rules.redaction)
            .ok()?;
        let hash = ruma::signatures::reference_hash(event, &rules).ok()?;
        Some(format!("${hash}"))
    }

    /// A target's URI: template number `index` of `templates` filled with
    /// `parts`, or `raw` when `index` is past them.
    pub fn uri(&self, templates: &[&str], index: u8, parts: &[String], raw: String) -> String {
        match templates.get(usize::from(index)) {
            Some(template) => self.fill(template, parts),
            None => raw,
        }
    }

    /// A path from `template`, each `{}` filled with the next of `parts`:
    /// the fuzz room when it is empty or missing, `@fuzz:a.test` for `@`.
    fn fill(&self, template: &str, parts: &[String]) -> String {
        let mut parts = parts.iter();
        let mut uri = String::new();
        let mut pieces = template.split("{}").peekable();
        while let Some(piece) = pieces.next() {
            uri.push_str(piece);
            if pieces.peek().is_some() {
                match parts.next().map(String::as_str) {
                    None | Some("") => uri.push_str(&self.room),
                    Some("@") => uri.push_str("@fuzz:a.test"),
                    Some(part) => uri.push_str(part),
                }
            }
        }
        uri
    }

    /// One request to the client API: its status and JSON body (null if none).
    pub fn call_client(
        &self,
        method: &str,
        uri: &str,
        token: Option<&str>,
        body: &[u8],
    ) -> (u16, serde_json::Value) {
        let authorization = token.map(|token| format!("Bearer {token}"));
        self.call(&self.client, method, uri, authorization, body)
    }

    /// One request to the federation API from `b.test`, signed as the spec
    /// says when `sign` and the body is JSON, else with `x_matrix` as given.
    pub fn call_federation(
        &self,
        method: &str,
        uri: &str,
        x_matrix: Option<&str>,
        sign: bool,
        body: &[u8],
    ) -> (u16, serde_json::Value) {
        let authorization = if sign {
            self.x_matrix(method, uri, body)
        } else {
            x_matrix.map(str::to_owned)
        };
        self.call(&self.federation, method, uri, authorization, body)
    }

    fn x_matrix(&self, method: &str, uri: &str, body: &[u8]) -> Option<String> {
        let request = http::Request::builder()
            .method(method)
            .uri(uri)
            .body(body)
            .ok()?;
        // Only a request in origin form (`/path?query`) can be signed; a
        // peer sends nothing else.
        request.uri().path_and_query()?;
        let input = ServerSignaturesInput::new(
            server_name!("b.test").to_owned(),
            server_name!("a.test").to_owned(),
            &self.peer_key,
        );
        let header = XMatrix::try_from_http_request(&request, input).ok()?;
        Some(header.to_string())
    }

    /// One request to `router`: its status and JSON body (null if none, or
    /// 0 if the method or URI is not one HTTP can carry).
    fn call(
        &self,
        router: &Router,
        method: &str,
        uri: &str,
        authorization: Option<String>,
        body: &[u8],
    ) -> (u16, serde_json::Value) {
        let Ok(mut request) = http::Request::builder()
            .method(method)
            .uri(uri)
            .body(Body::from(body.to_vec()))
        else {
            return (0, serde_json::Value::Null);
        };
        if let Some(value) = authorization.and_then(|value| value.parse().ok()) {
            request.headers_mut().insert("authorization", value);
        }
        self.runtime.block_on(async {
            let response = router.clone().oneshot(request).await.expect("infallible");
            let status = response.status().as_u16();
            let bytes = response
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            (status, serde_json::from_slice(&bytes).unwrap_or_default())
        })
    }
}
