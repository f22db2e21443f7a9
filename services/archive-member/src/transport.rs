//! How the device reaches the node's client API.

use std::{future::Future, pin::Pin};

use bytes::Bytes;

/// A response on its way back from the client API.
pub type TransportFuture<'a> =
    Pin<Box<dyn Future<Output = Result<http::Response<Bytes>, String>> + Send + 'a>>;

/// Carries one HTTP request to the node's client API and brings back its
/// response. The appliance hands the request to the homeserver's router in
/// process: no socket, no TLS, the same authentication as any client.
pub trait Transport: Send + Sync {
    fn send(&self, request: http::Request<Bytes>) -> TransportFuture<'_>;
}
