//! The bridge between axum and ruma: an extractor that turns an HTTP request
//! into a typed ruma request with its authenticated sender, and a response
//! wrapper for ruma responses.

use std::{any::TypeId, sync::Arc};

use axum::{
    body::Body,
    extract::{ConnectInfo, FromRequest, FromRequestParts, Path},
    response::{IntoResponse, Response},
};
use bytes::{BufMut, Bytes, BytesMut};
use http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use ruma::{
    OwnedDeviceId, OwnedServerName, OwnedUserId,
    api::{
        IncomingRequest, OutgoingResponse,
        auth_scheme::{AccessToken, AccessTokenOptional, AppserviceToken, AppserviceTokenOptional},
        federation::authentication::{ServerSignatures, XMatrix},
    },
};

use crate::{
    Error, Services,
    appservice::Registration,
    router::{Bucket, Guard},
};

/// The device of a bridge's request that names none: handlers see a
/// device, and nothing is kept under it.
pub const APPSERVICE_DEVICE: &str = "_appservice";

/// Records in the node's trail that a bridge acts as a person's account
/// (double puppeting, through a registration the operator installed):
/// once per bridge and person each time the node starts, before the first
/// such request is carried out.
async fn record_puppeting(
    services: &Services,
    registration: &Registration,
    user: &ruma::UserId,
) -> Result<(), Error> {
    tracing::info!(appservice = %registration.id, user = %user, "a bridge acts as a person's account");
    let Some(trail) = services.admin_trail.get().cloned() else {
        return Ok(());
    };
    let (actor, user) = (registration.sender.clone(), user.to_string());
    let action = format!("bridge {} acts as", registration.id);
    tokio::task::spawn_blocking(move || trail.record(&actor, &action, &user, None))
        .await
        .map_err(Error::internal)?
        .map_err(Error::internal)
}

/// Who a bridge acts as: `?user_id=` (or its own user), which must be one
/// of its users and, except to register it, exist; and `?device_id=`, which
/// must be one of that user's devices.
fn masquerade(
    parts: &http::request::Parts,
    services: &Services,
    registration: &Registration,
    registering: bool,
) -> Result<(Option<OwnedUserId>, OwnedDeviceId), Error> {
    let query = |name: &str| query_param(parts, name);
    let user = match query("user_id") {
        Some(user) => ruma::UserId::parse(user.as_str())
            .map_err(|e| Error::invalid_param(format!("`user_id` is not a user ID: {e}")))?,
        None => registration.sender.clone(),
    };
    if !registration.is_user(&user) || user.server_name() != services.server_name() {
        return Err(Error::forbidden(
            "Application service cannot masquerade as this user.",
        ));
    }
    if registering {
        return Ok((None, OwnedDeviceId::from(APPSERVICE_DEVICE)));
    }
    if !services.users.exists(&user)? {
        return Err(Error::forbidden(
            "Application service has not registered this user.",
        ));
    }
    if !services.users.is_active(&user)? {
        return Err(Error::user_deactivated());
    }
    let device = match query("device_id").or_else(|| query("org.matrix.msc3202.device_id")) {
        Some(device) => {
            let device = OwnedDeviceId::from(device.as_str());
            if services.users.device(&user, &device)?.is_none() {
                return Err(Error::unknown_device(format!(
                    "{device} is not a device of {user}."
                )));
            }
            device
        }
        None => OwnedDeviceId::from(APPSERVICE_DEVICE),
    };
    Ok((Some(user), device))
}

/// A parsed request and who sent it.
pub struct Ruma<T> {
    pub body: T,
    /// Set when the endpoint takes an access token and one was given.
    pub sender_user: Option<OwnedUserId>,
    pub sender_device: Option<OwnedDeviceId>,
    /// The raw JSON body, for endpoints that keep unknown fields.
    pub json_body: Option<serde_json::Value>,
    /// Set on federation endpoints: the peer whose signature verified.
    pub origin: Option<OwnedServerName>,
    /// Set when a bridge sent the request with its `as_token` (acting as
    /// `sender_user`, one of its users).
    pub appservice: Option<Arc<Registration>>,
}

impl<T> Ruma<T> {
    /// The authenticated user; only call on endpoints that require a token
    /// (see [`Ruma::signed_in`] for the others).
    pub fn user(&self) -> &ruma::UserId {
        self.sender_user
            .as_deref()
            .expect("endpoint requires authentication")
    }

    pub fn device(&self) -> &ruma::DeviceId {
        self.sender_device
            .as_deref()
            .expect("endpoint requires authentication")
    }

    /// The user and device of an endpoint whose token is optional, or
    /// `M_MISSING_TOKEN`.
    pub fn signed_in(&self) -> Result<(&ruma::UserId, &ruma::DeviceId), Error> {
        match (self.sender_user.as_deref(), self.sender_device.as_deref()) {
            (Some(user), Some(device)) => Ok((user, device)),
            _ => Err(Error::missing_token()),
        }
    }

    /// The verified peer; only call on federation endpoints that require a signature.
    pub fn origin(&self) -> &ruma::ServerName {
        self.origin
            .as_deref()
            .expect("endpoint requires a server signature")
    }
}

/// Largest body a peer may send (a transaction holds up to 50 events of 64 KiB).
pub const MAX_FEDERATION_BODY: usize = 4 * 1024 * 1024;

/// Reads the `X-Matrix` header and refuses a server outside the allowlist,
/// before any of the body is read.
fn federation_origin(parts: &http::request::Parts, services: &Services) -> Result<XMatrix, Error> {
    let header = parts
        .headers
        .get(http::header::AUTHORIZATION)
        .ok_or_else(|| Error::unauthorized("Missing X-Matrix authorization."))?;
    let xmatrix = XMatrix::try_from(header)
        .map_err(|e| Error::unauthorized(format!("Malformed X-Matrix authorization: {e}")))?;
    services.federation.require_peer(&xmatrix.origin)?;
    if xmatrix
        .destination
        .as_deref()
        .is_some_and(|destination| destination != services.server_name())
    {
        return Err(Error::unauthorized(format!(
            "This request is addressed to another server, not {}.",
            services.server_name()
        )));
    }
    Ok(xmatrix)
}

/// Is the token required, optional, or not looked at.
fn token_policy<A: 'static>() -> (bool, bool) {
    let id = TypeId::of::<A>();
    if id == TypeId::of::<AccessToken>() || id == TypeId::of::<AppserviceToken>() {
        (true, true)
    } else if id == TypeId::of::<AccessTokenOptional>()
        || id == TypeId::of::<AppserviceTokenOptional>()
    {
        (true, false)
    } else {
        // NoAuthentication, NoAccessToken, and federation's ServerSignatures.
        (false, false)
    }
}

fn access_token(parts: &http::request::Parts) -> Option<String> {
    if let Some(value) = parts
        .headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        && let Some(token) = value.strip_prefix("Bearer ")
    {
        return Some(token.trim().to_owned());
    }
    query_param(parts, "access_token")
}

/// A query parameter's value, percent-decoded.
fn query_param(parts: &http::request::Parts, name: &str) -> Option<String> {
    parts.uri.query().and_then(|q| {
        q.split('&').find_map(|pair| {
            pair.strip_prefix(name)
                .and_then(|rest| rest.strip_prefix('='))
                .map(percent_decode)
        })
    })
}

fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

/// Whether the matched endpoint is a media upload, whose body is the file
/// (up to `max_upload_size`) rather than JSON.
fn is_media_upload<T: 'static>() -> bool {
    TypeId::of::<T>() == TypeId::of::<ruma::api::client::media::create_content::v3::Request>()
}

impl<T> FromRequest<Arc<Services>> for Ruma<T>
where
    T: IncomingRequest + Send + 'static,
    T::Authentication: 'static,
{
    type Rejection = Error;

    async fn from_request(
        request: Request<Body>,
        services: &Arc<Services>,
    ) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = request.into_parts();
        let mut path_args: Vec<String> =
            match Path::<Vec<String>>::from_request_parts(&mut parts, services).await {
                Ok(Path(args)) => args,
                Err(_) => Vec::new(),
            };
        // Routes registered without a trailing empty state key.
        while path_args.len() < T::_path_parameters().len() {
            path_args.push(String::new());
        }
        let remote = parts
            .extensions
            .get::<ConnectInfo<std::net::SocketAddr>>()
            .map(|ci| ci.0.ip().to_string())
            .unwrap_or_default();

        // Authenticate before reading the body: an unauthenticated client
        // cannot make the server buffer anything.
        let signed = TypeId::of::<T::Authentication>() == TypeId::of::<ServerSignatures>();
        let xmatrix = if signed {
            Some(federation_origin(&parts, services)?)
        } else {
            None
        };
        let guard = parts.extensions.get::<Guard>().copied().unwrap_or_default();
        let (wants_token, requires_token) = if guard.requires_token {
            (true, true)
        } else {
            token_policy::<T::Authentication>()
        };
        let (mut sender_user, mut sender_device) = (None, None);
        let token = access_token(&parts);
        // A bridge's token is looked at on every endpoint: `/versions` too
        // tells a bridge whose user is not registered yet (as Synapse does).
        let appservice = token
            .as_deref()
            .and_then(|token| services.appservices.by_token(token));
        if let Some(registration) = &appservice {
            let registering = TypeId::of::<T>()
                == TypeId::of::<ruma::api::client::account::register::v3::Request>();
            let (user, device) = masquerade(&parts, services, registration, registering)?;
            if let Some(user) = &user
                && !registration.owns(user)
                && services.appservices.first_puppeting(registration, user)
            {
                record_puppeting(services, registration, user).await?;
            }
            sender_user = user;
            sender_device = Some(device);
        } else if wants_token {
            match token {
                Some(token) => {
                    let (user, device) = services.users.authenticate(&token)?;
                    if !services.users.is_active(&user)? {
                        return Err(Error::unknown_token(false));
                    }
                    sender_user = Some(user);
                    sender_device = Some(device);
                }
                None if requires_token => return Err(Error::missing_token()),
                None => {}
            }
        }

        let bucket = guard
            .rate_limit
            .or(T::RATE_LIMITED.then_some(Bucket::Writes));
        // A bridge registered as not rate limited, and its own user, are not.
        let exempt = appservice.as_ref().is_some_and(|registration| {
            !registration.rate_limited || sender_user.as_ref() == Some(&registration.sender)
        });
        if let Some(bucket) = bucket.filter(|_| !exempt) {
            let who = sender_user
                .as_ref()
                .map(|u| u.to_string())
                .unwrap_or(remote);
            services
                .rate_limit
                .check(&format!("{} {who}", bucket.name()), bucket == Bucket::Reads)?;
        }

        let upload = is_media_upload::<T>();
        let limit = if signed {
            MAX_FEDERATION_BODY
        } else if upload {
            usize::try_from(services.config.max_upload_size).unwrap_or(usize::MAX)
        } else {
            services.config.max_request_size
        };
        let bytes = match read_limited(body, limit).await {
            Ok(bytes) => bytes,
            Err(BodyError::TooLarge) => {
                return Err(Error::too_large(format!(
                    "Request body exceeds the limit of {limit} bytes."
                )));
            }
            Err(BodyError::Read(e)) => {
                return Err(Error::bad_json(format!(
                    "Could not read the request body: {e}"
                )));
            }
        };

        // The signature covers the body exactly as sent.
        let mut origin = None;
        if let Some(xmatrix) = xmatrix {
            let keys = services
                .federation
                .public_keys(vec![xmatrix.origin.clone()])
                .await?;
            let signed_request = http::Request::builder()
                .method(parts.method.clone())
                .uri(parts.uri.clone())
                .body(&bytes[..])
                .map_err(Error::internal)?;
            xmatrix
                .verify_request(&signed_request, services.server_name(), &keys)
                .map_err(|e| {
                    Error::unauthorized(format!(
                        "The X-Matrix signature of {} does not verify: {e}",
                        xmatrix.origin
                    ))
                })?;
            services.federation.heard_from(&xmatrix.origin);
            origin = Some(xmatrix.origin);
        }

        let takes_json = parts.method != Method::GET && !upload;
        let mut json_body = None;
        let bytes = if takes_json {
            if bytes.is_empty() {
                Bytes::from_static(b"{}")
            } else {
                match serde_json::from_slice::<serde_json::Value>(&bytes) {
                    Ok(mut value) if value.is_object() => {
                        let bytes = if drop_empty_auth(&mut value) {
                            Bytes::from(serde_json::to_vec(&value).map_err(Error::internal)?)
                        } else {
                            bytes
                        };
                        json_body = Some(value);
                        bytes
                    }
                    Ok(_) => {
                        return Err(Error::bad_json("The request body must be a JSON object."));
                    }
                    Err(e) => {
                        return Err(Error::not_json(format!(
                            "The request body is not valid JSON: {e}"
                        )));
                    }
                }
            }
        } else {
            bytes
        };

        let request = Request::from_parts(parts, bytes);
        // Some of ruma's request types panic on input they did not expect
        // (`/login` without a `type`): that is bad input, not a fault here.
        let parsed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            T::try_from_http_request(request, &path_args)
        }))
        .map_err(|_| Error::bad_json("Invalid request: the body does not fit this endpoint."))?;
        let body = parsed.map_err(|e| Error::bad_json(format!("Invalid request: {e}")))?;
        Ok(Self {
            body,
            sender_user,
            sender_device,
            json_body,
            origin,
            appservice,
        })
    }
}

/// Removes an empty `auth` object from a request body; says whether it did.
///
/// Clients start user-interactive authentication with `"auth": {}` (Element's
/// first cross-signing upload, `/delete_devices`, `/account/password`): it
/// means "not authenticated yet", as an absent `auth` does. ruma reads it as
/// an incomplete fallback acknowledgement and would refuse the whole body.
fn drop_empty_auth(body: &mut serde_json::Value) -> bool {
    let Some(object) = body.as_object_mut() else {
        return false;
    };
    if object
        .get("auth")
        .and_then(serde_json::Value::as_object)
        .is_some_and(serde_json::Map::is_empty)
    {
        object.remove("auth");
        return true;
    }
    false
}

/// A ruma response, serialized to HTTP.
pub struct RumaResponse<T>(pub T);

impl<T: OutgoingResponse> IntoResponse for RumaResponse<T> {
    fn into_response(self) -> Response {
        match self.0.try_into_http_response::<BytesMut>() {
            Ok(response) => response
                .map(|body| Body::from(body.freeze()))
                .into_response(),
            Err(e) => Error::internal(format!("serializing response: {e}")).into_response(),
        }
    }
}

/// Turns a JSON value into an HTTP 200 response (for endpoints whose response
/// ruma models loosely).
pub fn json_response(value: &serde_json::Value) -> Response {
    let mut buf = BytesMut::new().writer();
    let _ = serde_json::to_writer(&mut buf, value);
    (
        StatusCode::OK,
        [(http::header::CONTENT_TYPE, "application/json")],
        buf.into_inner().freeze(),
    )
        .into_response()
}

enum BodyError {
    TooLarge,
    Read(axum::Error),
}

/// How much of an oversized body is read and discarded before answering.
/// A client still sending when the server answers and closes would see a
/// reset instead of `M_TOO_LARGE`; beyond this the connection is cut.
const DRAIN_LIMIT: usize = 64 * 1024 * 1024;

/// Reads a body of at most `limit` bytes. An oversized body is drained (up to
/// [`DRAIN_LIMIT`] more) so the client can read the error.
async fn read_limited(mut body: Body, limit: usize) -> Result<Bytes, BodyError> {
    let mut out = BytesMut::new();
    let mut drained = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(BodyError::Read)?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if drained > 0 || out.len() + data.len() > limit {
            drained += data.len();
            if drained > DRAIN_LIMIT {
                break;
            }
            continue;
        }
        out.put(data);
    }
    if drained > 0 {
        return Err(BodyError::TooLarge);
    }
    Ok(out.freeze())
}
