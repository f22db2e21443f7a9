//! The server administration API on the client listener: registration
//! tokens, in the shape of Synapse's admin API
//! (`/_synapse/admin/v1/registration_tokens`), so that the tools
//! administrators already use work against Archipel. Only server
//! administrators may call it; every call is audited.

use std::sync::Arc;

use ruma::UInt;

use crate::{
    Error, Result, Services, ruma_wrapper::Ruma, service::users::RegistrationToken,
    service::users::now_ms,
};

/// A registration token as the admin API shows it.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct TokenInfo {
    pub token: String,
    pub uses_allowed: Option<UInt>,
    /// Registrations started with the token but not finished: Archipel
    /// counts a use only when the account exists, so always 0.
    pub pending: UInt,
    pub completed: UInt,
    pub expiry_time: Option<UInt>,
}

impl From<RegistrationToken> for TokenInfo {
    fn from(token: RegistrationToken) -> Self {
        Self {
            token: token.token,
            uses_allowed: token.uses_allowed.map(UInt::from),
            pending: UInt::MIN,
            completed: UInt::from(token.completed),
            expiry_time: token.expiry_time.and_then(UInt::new),
        }
    }
}

/// `POST /_synapse/admin/v1/registration_tokens/new`
pub mod new_token {
    pub mod v1 {
        use ruma::{
            UInt,
            api::{auth_scheme::AccessToken, request, response},
            metadata,
        };

        metadata! {
            method: POST,
            rate_limited: false,
            authentication: AccessToken,
            path: "/_synapse/admin/v1/registration_tokens/new",
        }

        #[request]
        #[derive(Default)]
        pub struct Request {
            /// The token text; random when absent.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub token: Option<String>,
            /// How many accounts it may register; unlimited when absent.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub uses_allowed: Option<UInt>,
            /// When it stops working, in milliseconds since the Unix epoch.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub expiry_time: Option<UInt>,
            /// The length of a random token (1 to 64, default 16).
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub length: Option<UInt>,
        }

        #[response]
        pub struct Response {
            #[ruma_api(body)]
            pub token: super::super::TokenInfo,
        }
    }
}

/// `GET /_synapse/admin/v1/registration_tokens`
pub mod list_tokens {
    pub mod v1 {
        use ruma::{
            api::{auth_scheme::AccessToken, request, response},
            metadata,
        };

        metadata! {
            method: GET,
            rate_limited: false,
            authentication: AccessToken,
            path: "/_synapse/admin/v1/registration_tokens",
        }

        #[request]
        #[derive(Default)]
        pub struct Request {
            /// `true`: only tokens that still work; `false`: only those that
            /// no longer do; absent: all.
            #[ruma_api(query)]
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub valid: Option<bool>,
        }

        #[response]
        pub struct Response {
            pub registration_tokens: Vec<super::super::TokenInfo>,
        }
    }
}

/// Refuses anyone but a server administrator.
fn require_admin(services: &Services, user: &ruma::UserId) -> Result<()> {
    if services.users.account(user)?.is_some_and(|a| a.admin) {
        Ok(())
    } else {
        Err(Error::forbidden("Only server administrators may do this."))
    }
}

/// Records an admin API action in the node's trail, if one is installed.
/// A failure to record fails the request: an action the trail does not
/// show must not look done.
async fn record(
    services: &Arc<Services>,
    admin: &ruma::UserId,
    action: &'static str,
    object: String,
    error: Option<String>,
) -> Result<()> {
    let Some(trail) = services.admin_trail.get().cloned() else {
        return Ok(());
    };
    let admin = admin.to_owned();
    tokio::task::spawn_blocking(move || trail.record(&admin, action, &object, error.as_deref()))
        .await
        .map_err(Error::internal)?
        .map_err(Error::internal)
}

pub async fn new_token(
    services: Arc<Services>,
    request: Ruma<new_token::v1::Request>,
) -> Result<new_token::v1::Response> {
    let admin = request.user().to_owned();
    require_admin(&services, &admin)?;
    let body = request.body;
    let uses = body
        .uses_allowed
        .map(u32::try_from)
        .transpose()
        .map_err(|_| Error::invalid_param("uses_allowed must be at most 4294967295."))?;
    let token = match (body.token, body.length) {
        (Some(_), Some(_)) => {
            return Err(Error::invalid_param(
                "Give either token or length, not both.",
            ));
        }
        (Some(token), None) => Some(token),
        (None, Some(length)) if (1..=64).contains(&u64::from(length)) => Some(
            crate::service::users::random_string(usize::try_from(u64::from(length)).unwrap_or(16)),
        ),
        (None, Some(_)) => return Err(Error::invalid_param("length must be between 1 and 64.")),
        (None, None) => None,
    };
    let expiry = body.expiry_time.map(u64::from);
    if expiry.is_some_and(|t| t <= now_ms()) {
        return Err(Error::invalid_param("expiry_time is in the past."));
    }
    let made = services
        .users
        .create_registration_token(token, uses, expiry)
        .await;
    match &made {
        Ok(_) => {
            tracing::info!(target: "archipel::audit", admin = %admin, uses = ?uses, expiry = ?expiry, "admin API: registration token created")
        }
        Err(e) => {
            tracing::warn!(target: "archipel::audit", admin = %admin, error = %e, "admin API: registration token refused")
        }
    }
    // The token is a secret: the trail names only what it allows.
    let object = match uses {
        Some(n) => format!("for {n} registration(s)"),
        None => "for unlimited registrations".to_owned(),
    };
    let error = made.as_ref().err().map(ToString::to_string);
    record(
        &services,
        &admin,
        "registration-token create",
        object,
        error,
    )
    .await?;
    Ok(new_token::v1::Response {
        token: made?.into(),
    })
}

pub async fn list_tokens(
    services: Arc<Services>,
    request: Ruma<list_tokens::v1::Request>,
) -> Result<list_tokens::v1::Response> {
    let admin = request.user().to_owned();
    require_admin(&services, &admin)?;
    tracing::info!(target: "archipel::audit", admin = %admin, "admin API: registration tokens listed");
    let now = now_ms();
    let registration_tokens = services
        .users
        .registration_tokens()?
        .into_iter()
        // Setup tokens are provisioning's, bound to one administrator.
        .filter(|t| t.for_user.is_none())
        .filter(|t| {
            request
                .body
                .valid
                .is_none_or(|valid| t.is_valid(now) == valid)
        })
        .map(TokenInfo::from)
        .collect();
    Ok(list_tokens::v1::Response {
        registration_tokens,
    })
}
