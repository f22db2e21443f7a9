//! The homeserver's one error type, mapped once to a Matrix error response.

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use ruma::api::{
    client::uiaa::UiaaInfo,
    error::{
        ErrorKind, LimitExceededErrorData, RetryAfter, StandardErrorBody, UnknownTokenErrorData,
    },
};

/// An error a request ends with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Matrix error: what the client did wrong, or what is not there.
    #[error("{kind:?}: {message}")]
    Matrix {
        status: StatusCode,
        kind: ErrorKind,
        message: String,
    },
    /// User-interactive authentication needs another stage.
    #[error("user-interactive authentication required")]
    Uiaa(Box<UiaaInfo>),
    /// Storage failed; the request changed nothing.
    #[error("storage: {0}")]
    Store(#[from] archipel_store::Error),
    /// A bug or an impossible state; logged, reported as M_UNKNOWN.
    #[error("internal: {0}")]
    Internal(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    fn matrix(status: StatusCode, kind: ErrorKind, message: impl Into<String>) -> Self {
        Self::Matrix {
            status,
            kind,
            message: message.into(),
        }
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::matrix(StatusCode::FORBIDDEN, ErrorKind::Forbidden, message)
    }

    /// A federation request without a valid `X-Matrix` signature.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::matrix(StatusCode::UNAUTHORIZED, ErrorKind::Unauthorized, message)
    }

    /// A peer server could not be reached or answered with nonsense.
    pub fn remote(message: impl Into<String>) -> Self {
        Self::matrix(StatusCode::BAD_GATEWAY, ErrorKind::Unknown, message)
    }

    /// A peer's server cannot handle the room's version.
    pub fn incompatible_room_version(version: ruma::RoomVersionId) -> Self {
        Self::matrix(
            StatusCode::BAD_REQUEST,
            ErrorKind::IncompatibleRoomVersion(
                ruma::api::error::IncompatibleRoomVersionErrorData::new(version.clone()),
            ),
            format!("Your server does not support room version {version}."),
        )
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::matrix(StatusCode::NOT_FOUND, ErrorKind::NotFound, message)
    }

    pub fn bad_json(message: impl Into<String>) -> Self {
        Self::matrix(StatusCode::BAD_REQUEST, ErrorKind::BadJson, message)
    }

    pub fn not_json(message: impl Into<String>) -> Self {
        Self::matrix(StatusCode::BAD_REQUEST, ErrorKind::NotJson, message)
    }

    pub fn invalid_param(message: impl Into<String>) -> Self {
        Self::matrix(StatusCode::BAD_REQUEST, ErrorKind::InvalidParam, message)
    }

    pub fn missing_param(message: impl Into<String>) -> Self {
        Self::matrix(StatusCode::BAD_REQUEST, ErrorKind::MissingParam, message)
    }

    pub fn too_large(message: impl Into<String>) -> Self {
        Self::matrix(StatusCode::PAYLOAD_TOO_LARGE, ErrorKind::TooLarge, message)
    }

    pub fn missing_token() -> Self {
        Self::matrix(
            StatusCode::UNAUTHORIZED,
            ErrorKind::MissingToken,
            "Missing access token.",
        )
    }

    pub fn unknown_token(soft_logout: bool) -> Self {
        let mut data = UnknownTokenErrorData::new();
        data.soft_logout = soft_logout;
        Self::matrix(
            StatusCode::UNAUTHORIZED,
            ErrorKind::UnknownToken(data),
            "Unknown or expired access token.",
        )
    }

    /// The request took longer than the node lets one take.
    pub fn timed_out(message: impl Into<String>) -> Self {
        Self::matrix(StatusCode::SERVICE_UNAVAILABLE, ErrorKind::Unknown, message)
    }

    pub fn unrecognized(status: StatusCode, message: impl Into<String>) -> Self {
        Self::matrix(status, ErrorKind::Unrecognized, message)
    }

    pub fn limit_exceeded(retry_after: std::time::Duration) -> Self {
        let mut data = LimitExceededErrorData::new();
        data.retry_after = Some(RetryAfter::Delay(retry_after));
        Self::matrix(
            StatusCode::TOO_MANY_REQUESTS,
            ErrorKind::LimitExceeded(data),
            "Too many requests; slow down.",
        )
    }

    pub fn user_in_use() -> Self {
        Self::matrix(
            StatusCode::BAD_REQUEST,
            ErrorKind::UserInUse,
            "That user ID is already taken.",
        )
    }

    pub fn invalid_username(message: impl Into<String>) -> Self {
        Self::matrix(StatusCode::BAD_REQUEST, ErrorKind::InvalidUsername, message)
    }

    pub fn room_in_use(message: impl Into<String>) -> Self {
        Self::matrix(StatusCode::BAD_REQUEST, ErrorKind::RoomInUse, message)
    }

    pub fn unsupported_room_version(message: impl Into<String>) -> Self {
        Self::matrix(
            StatusCode::BAD_REQUEST,
            ErrorKind::UnsupportedRoomVersion,
            message,
        )
    }

    /// A user ID or alias in a bridge's exclusive namespace.
    pub fn exclusive(message: impl Into<String>) -> Self {
        Self::matrix(StatusCode::BAD_REQUEST, ErrorKind::Exclusive, message)
    }

    /// `M_UNKNOWN_DEVICE`: a bridge named a device its user does not have.
    pub fn unknown_device(message: impl Into<String>) -> Self {
        let kind = serde_json::from_value(serde_json::json!({ "errcode": "M_UNKNOWN_DEVICE" }))
            .unwrap_or(ErrorKind::Unknown);
        Self::matrix(StatusCode::BAD_REQUEST, kind, message)
    }

    /// A bridge's ping, answered by the bridge with an error status.
    pub fn bad_status(status: StatusCode, body: String) -> Self {
        let mut data = ruma::api::error::BadStatusErrorData::new();
        data.status = Some(status);
        data.body = Some(body);
        Self::matrix(
            StatusCode::BAD_GATEWAY,
            ErrorKind::BadStatus(data),
            "The application service answered with an error.",
        )
    }

    /// A bridge's ping that reached nothing, or nothing in time.
    pub fn connection_failed(timed_out: bool, message: impl Into<String>) -> Self {
        if timed_out {
            Self::matrix(
                StatusCode::GATEWAY_TIMEOUT,
                ErrorKind::ConnectionTimeout,
                message,
            )
        } else {
            Self::matrix(
                StatusCode::BAD_GATEWAY,
                ErrorKind::ConnectionFailed,
                message,
            )
        }
    }

    /// A bridge that creates its devices itself (MSC4190) logging in.
    pub fn appservice_login_unsupported() -> Self {
        Self::matrix(
            StatusCode::BAD_REQUEST,
            ErrorKind::AppserviceLoginUnsupported,
            "This application service creates its devices itself (MSC4190); it does not log in.",
        )
    }

    /// A bridge's ping with no URL to ping.
    pub fn url_not_set() -> Self {
        Self::matrix(
            StatusCode::BAD_REQUEST,
            ErrorKind::UrlNotSet,
            "The application service has no URL.",
        )
    }

    pub fn user_deactivated() -> Self {
        Self::matrix(
            StatusCode::FORBIDDEN,
            ErrorKind::UserDeactivated,
            "This account has been deactivated.",
        )
    }

    /// A sliding sync position the connection does not know (any more).
    pub fn unknown_pos() -> Self {
        Self::matrix(
            StatusCode::BAD_REQUEST,
            ErrorKind::UnknownPos,
            "Unknown position: start the connection over.",
        )
    }

    pub fn unknown(message: impl Into<String>) -> Self {
        Self::matrix(StatusCode::BAD_REQUEST, ErrorKind::Unknown, message)
    }

    pub fn internal(message: impl std::fmt::Display) -> Self {
        Self::Internal(message.to_string())
    }

    /// The Matrix error code, for logs and tests.
    pub fn errcode(&self) -> String {
        match self {
            Self::Matrix { kind, .. } => kind.errcode().to_string(),
            Self::Uiaa(_) => "M_FORBIDDEN".into(),
            _ => "M_UNKNOWN".into(),
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let (status, body, retry_after) = match self {
            Self::Matrix {
                status,
                kind,
                message,
            } => {
                let retry = match &kind {
                    ErrorKind::LimitExceeded(data) => match data.retry_after {
                        Some(RetryAfter::Delay(d)) => Some(d.as_secs().max(1)),
                        _ => None,
                    },
                    _ => None,
                };
                (
                    status,
                    serde_json::to_vec(&StandardErrorBody::new(kind, message)),
                    retry,
                )
            }
            Self::Uiaa(info) => (StatusCode::UNAUTHORIZED, serde_json::to_vec(&info), None),
            Self::Store(e) => {
                tracing::error!(error = %e, "storage error");
                let body = StandardErrorBody::new(
                    ErrorKind::Unknown,
                    "The server could not store or read data.".into(),
                );
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    serde_json::to_vec(&body),
                    None,
                )
            }
            Self::Internal(e) => {
                tracing::error!(error = %e, "internal error");
                let body =
                    StandardErrorBody::new(ErrorKind::Unknown, "Internal server error.".into());
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    serde_json::to_vec(&body),
                    None,
                )
            }
        };
        let mut response = (status, body.unwrap_or_default()).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Some(secs) = retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Self::bad_json(format!("Invalid JSON: {e}"))
    }
}
