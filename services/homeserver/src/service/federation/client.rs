//! The outgoing side: finding a peer, signing a request with `X-Matrix`,
//! sending it over TLS that trusts only the configured CA bundle.

use std::{
    error::Error as _,
    time::{Duration, Instant},
};

use bytes::Bytes;
use ruma::{
    CanonicalJsonObject, ServerName,
    api::{
        IncomingResponse, OutgoingRequest, auth_scheme::AuthScheme,
        federation::authentication::ServerSignaturesInput, path_builder::PathBuilder,
    },
};

use super::Federation;
use crate::{Error, FederationConfig, Result, tls};

/// A peer's answers are read up to this size.
const MAX_RESPONSE: usize = 64 * 1024 * 1024;
/// Largest `.well-known/matrix/server` or key document read from a peer.
const MAX_SMALL_RESPONSE: usize = 256 * 1024;
/// How long a discovered address is used before asking again.
const DISCOVERY_TTL: Duration = Duration::from_secs(3600);

pub(super) struct Destination {
    base_url: String,
    until: Instant,
}

/// The HTTPS client: the configured trust roots only, static peer addresses
/// pinned in its resolver, no proxies, no redirects (a redirect could lead
/// off the allowlist).
pub(super) fn build(config: &FederationConfig) -> Result<reqwest::Client> {
    let ca_bundle = config
        .ca_bundle
        .as_ref()
        .ok_or_else(|| Error::internal("federation.ca_bundle is required when federation is on"))?;
    let mut builder = reqwest::Client::builder()
        .tls_backend_preconfigured(tls::client_config(ca_bundle)?)
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(90))
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .user_agent(concat!("Archipel/", env!("CARGO_PKG_VERSION")));
    for peer in &config.peers {
        if let Some(address) = peer.address {
            builder = builder.resolve(peer.server_name.host(), address);
        }
    }
    builder
        .build()
        .map_err(|e| Error::internal(format!("building the federation client: {e}")))
}

/// An error and its causes on one line (TLS failures hide in the causes).
fn describe(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

impl Federation {
    fn client(&self) -> Result<&reqwest::Client> {
        self.client
            .as_ref()
            .ok_or_else(|| Error::forbidden("Federation is off on this server."))
    }

    /// Where `server` is reached: its configured address, or discovery.
    async fn base_url(&self, server: &ServerName) -> Result<String> {
        if let Some(peer) = self.config.peer(server)
            && let Some(address) = peer.address
        {
            return Ok(format!("https://{}:{}", server.host(), address.port()));
        }
        if server.port().is_some() || server.is_ip_literal() {
            return Ok(format!("https://{server}"));
        }
        if let Some(known) = self.destinations.lock().get(server)
            && known.until > Instant::now()
        {
            return Ok(known.base_url.clone());
        }
        let base_url = match self.well_known(server).await {
            Some(delegated) if delegated.contains(':') => format!("https://{delegated}"),
            Some(delegated) => format!("https://{delegated}:8448"),
            None => format!("https://{server}:8448"),
        };
        self.destinations.lock().insert(
            server.to_owned(),
            Destination {
                base_url: base_url.clone(),
                until: Instant::now() + DISCOVERY_TTL,
            },
        );
        Ok(base_url)
    }

    /// `m.server` from `https://<server>/.well-known/matrix/server`, if any.
    async fn well_known(&self, server: &ServerName) -> Option<String> {
        let url = format!("https://{server}/.well-known/matrix/server");
        let response = self.client().ok()?.get(&url).send().await.ok()?;
        if !response.status().is_success() {
            return None;
        }
        let body = read_limited(response, MAX_SMALL_RESPONSE).await.ok()?;
        let body: serde_json::Value = serde_json::from_slice(&body).ok()?;
        let delegated = body.get("m.server")?.as_str()?.trim().to_owned();
        (!delegated.is_empty()).then_some(delegated)
    }

    /// An unsigned GET of a JSON object (key documents).
    pub(super) async fn get_json(
        &self,
        server: &ServerName,
        path: &str,
    ) -> Result<CanonicalJsonObject> {
        self.require_peer(server)?;
        let url = format!("{}{path}", self.base_url(server).await?);
        let response = self
            .client()?
            .get(&url)
            .send()
            .await
            .map_err(|e| Error::remote(describe(&e)))?;
        let status = response.status();
        let body = read_limited(response, MAX_SMALL_RESPONSE).await?;
        if !status.is_success() {
            return Err(Error::remote(format!("{url} answered {status}")));
        }
        serde_json::from_slice(&body)
            .map_err(|e| Error::remote(format!("{url} answered with bad JSON: {e}")))
    }

    /// Sends a signed federation request to an allowlisted peer.
    pub async fn send<T>(&self, destination: &ServerName, request: T) -> Result<T::IncomingResponse>
    where
        T: OutgoingRequest,
        for<'a> T::Authentication: AuthScheme<Input<'a> = ServerSignaturesInput<'a>>,
        for<'a> T::PathBuilder: PathBuilder<Input<'a> = ()>,
    {
        self.require_peer(destination)?;
        let client = self.client()?;
        let base_url = self.base_url(destination).await?;
        let signing = ServerSignaturesInput::new(
            self.server_name.clone(),
            destination.to_owned(),
            &self.keypair,
        );
        let http_request = request
            .try_into_http_request::<Vec<u8>>(&base_url, signing, ())
            .map_err(|e| Error::internal(format!("building a request to {destination}: {e}")))?;
        let path = http_request.uri().path().to_owned();
        let request = reqwest::Request::try_from(http_request)
            .map_err(|e| Error::internal(format!("building a request to {destination}: {e}")))?;
        let response = client.execute(request).await.map_err(|e| {
            Error::remote(format!(
                "{destination} could not be reached: {}",
                describe(&e)
            ))
        })?;
        let status = response.status();
        let mut http_response = http::Response::builder().status(status);
        if let Some(content_type) = response.headers().get(http::header::CONTENT_TYPE) {
            http_response = http_response.header(http::header::CONTENT_TYPE, content_type);
        }
        let body = read_limited(response, MAX_RESPONSE).await?;
        let http_response = http_response
            .body(body)
            .map_err(|e| Error::internal(format!("reading the answer of {destination}: {e}")))?;
        T::IncomingResponse::try_from_http_response(http_response).map_err(|e| {
            let message = format!("{destination} answered {path} with {status}: {e}");
            match status {
                http::StatusCode::FORBIDDEN => Error::forbidden(message),
                http::StatusCode::NOT_FOUND => Error::not_found(message),
                _ => Error::remote(message),
            }
        })
    }
}

async fn read_limited(mut response: reqwest::Response, limit: usize) -> Result<Bytes> {
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| Error::remote(format!("reading an answer: {}", describe(&e))))?
    {
        if body.len() + chunk.len() > limit {
            return Err(Error::remote(format!(
                "an answer exceeded {} KiB",
                limit / 1024
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(body))
}
