//! The device's requests to the client API: the ones `OlmMachine` asks
//! for, and sync.

use bytes::{Bytes, BytesMut};
use matrix_sdk_crypto::types::requests::{AnyOutgoingRequest, OutgoingRequest};
use ruma::api::{
    IncomingResponse, MatrixVersion, OutgoingRequest as RumaRequest, SupportedVersions,
    auth_scheme::SendAccessToken,
    client::{keys::get_keys, to_device::send_event_to_device},
};

use crate::{ArchiveMember, Error, Result};

/// The base URL requests are built with; the transport ignores the host.
const BASE_URL: &str = "http://archipel.internal";

impl ArchiveMember {
    /// Sends everything the `OlmMachine` has queued (key uploads, key
    /// queries, signatures) and tells it what came back.
    pub(crate) async fn send_outgoing(&self) -> Result<()> {
        for request in self.machine.outgoing_requests().await? {
            self.send_request(request).await?;
        }
        Ok(())
    }

    pub(crate) async fn send_request(&self, request: OutgoingRequest) -> Result<()> {
        let id = request.request_id();
        match request.request() {
            AnyOutgoingRequest::KeysUpload(upload) => {
                let response = self.send_ruma("keys upload", upload.clone()).await?;
                self.machine.mark_request_as_sent(id, &response).await?;
            }
            AnyOutgoingRequest::KeysQuery(query) => {
                let mut request = get_keys::v3::Request::new();
                request.device_keys = query.device_keys.clone();
                request.timeout = query.timeout;
                let response = self.send_ruma("keys query", request).await?;
                self.machine.mark_request_as_sent(id, &response).await?;
            }
            AnyOutgoingRequest::KeysClaim(claim) => {
                let response = self.send_ruma("keys claim", claim.clone()).await?;
                self.machine.mark_request_as_sent(id, &response).await?;
            }
            AnyOutgoingRequest::ToDeviceRequest(to_device) => {
                let request = send_event_to_device::v3::Request::new_raw(
                    to_device.event_type.clone(),
                    to_device.txn_id.clone(),
                    to_device.messages.clone(),
                );
                let response = self.send_ruma("to-device", request).await?;
                self.machine.mark_request_as_sent(id, &response).await?;
            }
            AnyOutgoingRequest::SignatureUpload(signatures) => {
                let response = self
                    .send_ruma("signature upload", signatures.clone())
                    .await?;
                self.machine.mark_request_as_sent(id, &response).await?;
            }
            AnyOutgoingRequest::RoomMessage(message) => {
                // Only interactive verification sends room messages, and
                // nobody verifies with the archive member in a room.
                tracing::warn!(room = %message.room_id, "the archive member sends no room messages; dropped");
            }
        }
        Ok(())
    }

    /// Sends one ruma request, signed in as the device.
    pub(crate) async fn send_ruma<R>(
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
