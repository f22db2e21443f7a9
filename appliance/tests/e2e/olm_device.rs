//! A client device driven step by step: matrix-sdk-crypto's `OlmMachine`
//! (the crypto of every matrix-sdk client) over plain HTTP, for the tests
//! that need to choose when a room key is sent, which a full client does
//! for them.

use archipel_archive_member::matrix_sdk_crypto::{
    EncryptionSettings, OlmMachine, types::requests::ToDeviceRequest,
};
use archipel_archive_member::{Connection, Transport, TransportFuture};
use matrix_sdk::ruma::{
    OwnedDeviceId, RoomId, UserId,
    api::client::{keys::claim_keys, message::send_message_event},
    events::{AnyMessageLikeEventContent, MessageLikeEventType},
    serde::Raw,
};
use serde_json::Value;

use crate::client::Session;

/// A device of `user`, its keys uploaded.
pub struct OlmDevice {
    pub machine: OlmMachine,
    connection: Connection,
}

impl OlmDevice {
    pub async fn new(base: &str, user: &UserId, session: &Session) -> Self {
        let device_id: OwnedDeviceId = session.device_id.as_str().into();
        let machine = OlmMachine::new(user, &device_id).await;
        let connection = Connection::new(
            Box::new(HttpTransport {
                http: reqwest::Client::new(),
                base: base.trim_end_matches('/').to_owned(),
            }),
            session.access_token.clone(),
        );
        let device = Self {
            machine,
            connection,
        };
        device.send_outgoing().await;
        device
    }

    pub async fn send_outgoing(&self) {
        self.connection
            .send_outgoing(&self.machine)
            .await
            .expect("the device's requests");
    }

    /// Makes the Megolm session of `room_id` and returns the to-device
    /// messages that share it with every device of `members`, unsent.
    pub async fn room_key_for(
        &self,
        room_id: &RoomId,
        members: &[&UserId],
    ) -> Vec<std::sync::Arc<ToDeviceRequest>> {
        self.machine
            .update_tracked_users(members.iter().copied())
            .await
            .expect("track the members");
        self.send_outgoing().await;
        if let Some((id, claim)) = self
            .machine
            .get_missing_sessions(members.iter().copied())
            .await
            .expect("missing Olm sessions")
        {
            let mut request = claim_keys::v3::Request::new(claim.one_time_keys.clone());
            request.timeout = claim.timeout;
            let response = self
                .connection
                .send_ruma("keys claim", request)
                .await
                .expect("claim one-time keys");
            self.machine
                .mark_request_as_sent(&id, &response)
                .await
                .expect("mark the claim sent");
        }
        self.machine
            .share_room_key(
                room_id,
                members.iter().copied(),
                EncryptionSettings::default(),
            )
            .await
            .expect("share the room key")
    }

    pub async fn send_to_device(&self, request: &ToDeviceRequest) {
        self.connection
            .send_to_device(&self.machine, request)
            .await
            .expect("send the room key");
    }

    /// Encrypts `content` (an `m.room.message` content) for `room_id` and
    /// sends it; returns the event ID.
    pub async fn send_encrypted(&self, room_id: &RoomId, txn: &str, content: Value) -> String {
        let content: Raw<AnyMessageLikeEventContent> =
            Raw::new(&content).expect("content").cast_unchecked();
        let encrypted = self
            .machine
            .encrypt_room_event_raw(room_id, "m.room.message", &content)
            .await
            .expect("encrypt");
        let request = send_message_event::v3::Request::new_raw(
            room_id.to_owned(),
            txn.into(),
            MessageLikeEventType::RoomEncrypted,
            encrypted.content.cast_unchecked(),
        );
        let response = self
            .connection
            .send_ruma("send", request)
            .await
            .expect("send the encrypted event");
        response.event_id.to_string()
    }
}

/// Requests over HTTP to the node under test.
struct HttpTransport {
    http: reqwest::Client,
    base: String,
}

impl Transport for HttpTransport {
    fn send(&self, request: http::Request<bytes::Bytes>) -> TransportFuture<'_> {
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
            let response = self
                .http
                .request(parts.method, format!("{}{path}", self.base))
                .headers(parts.headers)
                .body(body)
                .send()
                .await
                .map_err(|e| e.to_string())?;
            let mut answer = http::Response::builder().status(response.status());
            for (name, value) in response.headers() {
                answer = answer.header(name, value);
            }
            let body = response.bytes().await.map_err(|e| e.to_string())?;
            answer.body(body).map_err(|e| e.to_string())
        })
    }
}
