//! User-interactive authentication for endpoints that need it.

use ruma::{
    UserId,
    api::client::uiaa::{AuthData, AuthType},
};

use crate::ops::users::identify;
use crate::{Error, Result, Services};

/// What a completed authentication proved.
#[derive(Default)]
pub struct Completed {
    /// The registration token used, to be counted once the request succeeds.
    pub registration_token: Option<String>,
}

/// Checks `auth` against `flows`; on an incomplete flow, answers with the
/// UIAA challenge (401) so the client can continue.
pub async fn require(
    services: &Services,
    auth: Option<&AuthData>,
    flows: &[Vec<AuthType>],
    user: Option<&UserId>,
) -> Result<Completed> {
    let Some(auth) = auth else {
        return Err(Error::Uiaa(Box::new(services.uiaa.challenge(flows, None))));
    };
    let allowed = |stage: &AuthType| flows.iter().any(|f| f.contains(stage));
    let session = auth.session().map(str::to_owned).unwrap_or_else(|| {
        services
            .uiaa
            .challenge(flows, None)
            .session
            .unwrap_or_default()
    });
    let mut completed = Completed::default();
    let stage = match auth {
        AuthData::Dummy(_) if allowed(&AuthType::Dummy) => AuthType::Dummy,
        AuthData::Password(password) if allowed(&AuthType::Password) => {
            let Some(user) = user else {
                return Err(Error::forbidden("Password authentication needs a user."));
            };
            let claimed = match &password.identifier {
                ruma::api::client::uiaa::UserIdentifier::Matrix(id) => {
                    identify(services, None, Some(&id.user))?
                }
                _ => return Err(Error::forbidden("Only user identifiers are supported.")),
            };
            if claimed != user
                || !services
                    .users
                    .check_password(user, &password.password)
                    .await?
            {
                let mut info = services.uiaa.challenge(flows, Some(&session));
                info.auth_error = Some(ruma::api::error::StandardErrorBody::new(
                    ruma::api::error::ErrorKind::Forbidden,
                    "Invalid password.".into(),
                ));
                return Err(Error::Uiaa(Box::new(info)));
            }
            AuthType::Password
        }
        AuthData::RegistrationToken(token) if allowed(&AuthType::RegistrationToken) => {
            if !services.users.registration_token_valid(&token.token)? {
                return Err(Error::forbidden("Invalid or expired registration token."));
            }
            completed.registration_token = Some(token.token.clone());
            AuthType::RegistrationToken
        }
        _ => {
            return Err(Error::Uiaa(Box::new(
                services.uiaa.challenge(flows, Some(&session)),
            )));
        }
    };
    if services.uiaa.complete(&session, stage, flows) {
        Ok(completed)
    } else {
        Err(Error::Uiaa(Box::new(
            services.uiaa.challenge(flows, Some(&session)),
        )))
    }
}
