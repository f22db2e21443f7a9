//! A device's requests to the client API: the ones an `OlmMachine` asks
//! for, and any other ruma request, signed in as the device.

use bytes::{Bytes, BytesMut};
use matrix_sdk_crypto::{
    OlmMachine,
    types::requests::{AnyOutgoingRequest, OutgoingRequest, ToDeviceRequest},
};
use ruma::api::{
    IncomingResponse, MatrixVersion, OutgoingRequest as RumaRequest, SupportedVersions,
    auth_scheme::SendAccessToken,
    client::{keys::get_keys, to_device::send_event_to_device},
};

use crate::{Error, Result, Transport};

/// The base URL requests are built with; the transport ignores the host.
const BASE_URL: &str = "http://archipel.internal";

/// A device's way to the client API: a transport and the device's access
/// token. The archive member uses it, and so can any other `OlmMachine`
/// (the tests drive a client device with one).
pub struct Connection {
    transport: Box<dyn Transport>,
    access_token: String,
}

impl Connection {
    pub fn new(transport: Box<dyn Transport>, access_token: String) -> Self {
        Self {
            transport,
            access_token,
        }
    }

    /// Sends everything `machine` has queued (key uploads, key queries,
    /// claims, to-device messages, signatures) and tells it what came back.
    pub async fn send_outgoing(&self, machine: &OlmMachine) -> Result<()> {
        for request in machine.outgoing_requests().await? {
            self.send_request(machine, request).await?;
        }
        Ok(())
    }

    /// Sends one of `machine`'s to-device requests (a room key share) and
    /// marks it sent.
    pub async fn send_to_device(
        &self,
        machine: &OlmMachine,
        request: &ToDeviceRequest,
    ) -> Result<()> {
        let http = send_event_to_device::v3::Request::new_raw(
            request.event_type.clone(),
            request.txn_id.clone(),
            request.messages.clone(),
        );
        let response = self.send_ruma("to-device", http).await?;
        machine
            .mark_request_as_sent(&request.txn_id, &response)
            .await?;
        Ok(())
    }

    pub async fn send_request(&self, machine: &OlmMachine, request: OutgoingRequest) -> Result<()> {
        let id = request.request_id();
        match request.request() {
            AnyOutgoingRequest::KeysUpload(upload) => {
                let response = self.send_ruma("keys upload", upload.clone()).await?;
                machine.mark_request_as_sent(id, &response).await?;
            }
            AnyOutgoingRequest::KeysQuery(query) => {
                let mut request = get_keys::v3::Request::new();
                request.device_keys = query.device_keys.clone();
                request.timeout = query.timeout;
                let response = self.send_ruma("keys query", request).await?;
                machine.mark_request_as_sent(id, &response).await?;
            }
            AnyOutgoingRequest::KeysClaim(claim) => {
                let response = self.send_ruma("keys claim", claim.clone()).await?;
                machine.mark_request_as_sent(id, &response).await?;
            }
            AnyOutgoingRequest::ToDeviceRequest(to_device) => {
                self.send_to_device(machine, to_device).await?;
            }
            AnyOutgoingRequest::SignatureUpload(signatures) => {
                let response = self
                    .send_ruma("signature upload", signatures.clone())
                    .await?;
                machine.mark_request_as_sent(id, &response).await?;
            }
            AnyOutgoingRequest::RoomMessage(message) => {
                // Only interactive verification sends room messages, and
                // nobody verifies with the archive member in a room.
                tracing::warn!(room = %message.room_id, "a device connection sends no room messages; dropped");
            }
        }
        Ok(())
    }

    /// Sends one ruma request, signed in as the device.
    pub async fn send_ruma<R>(
        &self,
        endpoint: &'static str,
        request: R,
    ) -> Result<R::IncomingResponse>
    where
        R: RumaRequest,
        for<'a> R::Authentication:
            ruma::api::auth_scheme::AuthScheme<Input<'a> = SendAccessToken<'a>>,
        for<'a> R::PathBuilder: ruma::api::path_builder::PathBuilder<
                Input<'a> = std::borrow::Cow<'a, SupportedVersions>,
            >,
    {
        let failed = |message: String| Error::Request { endpoint, message };
        let versions = SupportedVersions {
            versions: [MatrixVersion::V1_11].into(),
            features: Default::default(),
        };
        let http = request
            .try_into_http_request::<BytesMut>(
                BASE_URL,
                SendAccessToken::Always(&self.access_token),
                std::borrow::Cow::Owned(versions),
            )
            .map_err(|e| failed(e.to_string()))?
            .map(BytesMut::freeze);
        let response = self.transport.send(http).await.map_err(failed)?;
        R::IncomingResponse::try_from_http_response(response.map(|body: Bytes| body))
            .map_err(|e| failed(e.to_string()))
    }
}
