//! Account registration: closed by default, open with a registration token,
//! or fully open (`m.login.dummy`) on development nodes.

use std::{sync::Arc, time::Duration};

use ruma::{
    UserId,
    api::client::{
        account::{
            check_registration_token_validity, get_username_availability,
            register::{self, LoginType, RegistrationKind},
        },
        uiaa::AuthType,
    },
};

use super::uiaa;
use crate::{
    Error, Result, Services, ops::users, ruma_wrapper::Ruma, service::users::random_string,
};

fn flows(services: &Services) -> Result<Vec<Vec<AuthType>>> {
    if services.config.open_registration {
        return Ok(vec![
            vec![AuthType::Dummy],
            vec![AuthType::RegistrationToken],
        ]);
    }
    let now = crate::service::users::now_ms();
    if services
        .users
        .registration_tokens()?
        .iter()
        .any(|t| t.is_valid(now))
    {
        return Ok(vec![vec![AuthType::RegistrationToken]]);
    }
    Err(Error::forbidden(
        "Registration is disabled on this server; ask an administrator for an account or a registration token.",
    ))
}

/// Checks a requested localpart and builds the user ID.
fn new_user_id(services: &Services, username: Option<&str>) -> Result<ruma::OwnedUserId> {
    let localpart = match username {
        Some(name) => name.to_lowercase(),
        None => random_string(12).to_lowercase(),
    };
    if localpart.is_empty()
        || localpart.len() > 200
        || !localpart
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._=-/+".contains(c))
    {
        return Err(Error::invalid_username(
            "User names may contain only a-z, 0-9, and . _ = - / +",
        ));
    }
    let user_id = UserId::parse_with_server_name(localpart, services.server_name())
        .map_err(|e| Error::invalid_username(format!("Invalid user name: {e}")))?;
    if services.users.exists(&user_id)? {
        return Err(Error::user_in_use());
    }
    Ok(user_id)
}

/// Refuses a user ID in a bridge's exclusive namespace to anyone but it.
fn refuse_exclusive(services: &Services, user_id: &UserId) -> Result<()> {
    match services.appservices.exclusive_user(user_id) {
        Some(owner) => Err(Error::exclusive(format!(
            "{user_id} is reserved by the application service {}.",
            owner.id
        ))),
        None => Ok(()),
    }
}

/// A bridge registers one of its users: with its `as_token`, inside its
/// namespaces, whether registration is open or not, without interactive
/// authentication and without a password.
async fn register_appservice(
    services: &Services,
    appservice: Option<&crate::appservice::Registration>,
    body: register::v3::Request,
) -> Result<register::v3::Response> {
    let Some(registration) = appservice else {
        return Err(Error::missing_token());
    };
    let user_id = new_user_id(services, body.username.as_deref())?;
    if !registration.is_user(&user_id) {
        return Err(Error::exclusive(format!(
            "{user_id} is not in the namespaces of the application service {}.",
            registration.id
        )));
    }
    users::create_user(services, &user_id, None, false, None).await?;
    tracing::info!(user = %user_id, appservice = %registration.id, "registered by a bridge");
    registered(services, user_id, body).await
}

/// The answer to a registration: the new user, signed in on a new device
/// unless the request inhibits it.
async fn registered(
    services: &Services,
    user_id: ruma::OwnedUserId,
    body: register::v3::Request,
) -> Result<register::v3::Response> {
    let mut response = register::v3::Response::new(user_id.clone());
    if !body.inhibit_login {
        let session = services
            .users
            .login(
                &user_id,
                body.device_id,
                body.initial_device_display_name,
                body.refresh_token,
            )
            .await?;
        response.access_token = Some(session.access_token);
        response.device_id = Some(session.device_id);
        response.refresh_token = session.refresh_token;
        response.expires_in = session.expires_in_ms.map(Duration::from_millis);
    }
    Ok(response)
}

pub async fn register(
    services: Arc<Services>,
    request: Ruma<register::v3::Request>,
) -> Result<register::v3::Response> {
    let appservice = request.appservice;
    let body = request.body;
    if body.login_type == Some(LoginType::ApplicationService) {
        return register_appservice(&services, appservice.as_deref(), body).await;
    }
    if body.kind == RegistrationKind::Guest {
        return Err(Error::forbidden(
            "Guest access is not enabled on this server.",
        ));
    }
    let flows = flows(&services)?;
    let user_id = new_user_id(&services, body.username.as_deref())?;
    refuse_exclusive(&services, &user_id)?;
    // A request without `auth` asks which flows there are (matrix-rust-sdk
    // sends an empty body first): answer with them before anything else.
    if body.auth.is_none() {
        return Err(Error::Uiaa(Box::new(services.uiaa.challenge(&flows, None))));
    }
    let password = body
        .password
        .clone()
        .filter(|p| !p.is_empty())
        .ok_or_else(|| Error::missing_param("A password is required."))?;
    let completed = uiaa::require(&services, body.auth.as_ref(), &flows, None).await?;

    // A setup token registers its one administrator, and nobody else takes
    // that name while it is pending.
    let token = match &completed.registration_token {
        Some(token) => services.users.registration_token(token)?,
        None => None,
    };
    let admin = match token.as_ref().and_then(|t| t.for_user.as_ref()) {
        Some(reserved) if *reserved != user_id => {
            return Err(Error::forbidden(format!(
                "This setup token is for {reserved} only."
            )));
        }
        Some(_) => true,
        None if services.users.setup_token_for(&user_id)?.is_some() => {
            return Err(Error::user_in_use());
        }
        None => false,
    };
    users::create_user(
        &services,
        &user_id,
        Some(password),
        admin,
        completed.registration_token.as_deref(),
    )
    .await?;
    tracing::info!(user = %user_id, "registered");

    registered(&services, user_id, body).await
}

pub async fn available(
    services: Arc<Services>,
    request: Ruma<get_username_availability::v3::Request>,
) -> Result<get_username_availability::v3::Response> {
    let user_id = new_user_id(&services, Some(&request.body.username))?;
    refuse_exclusive(&services, &user_id)?;
    Ok(get_username_availability::v3::Response::new(true))
}

pub async fn token_validity(
    services: Arc<Services>,
    request: Ruma<check_registration_token_validity::v1::Request>,
) -> Result<check_registration_token_validity::v1::Response> {
    Ok(check_registration_token_validity::v1::Response::new(
        services
            .users
            .registration_token_valid(&request.body.token)?,
    ))
}
