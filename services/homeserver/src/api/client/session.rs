//! Login, logout, token refresh, whoami.

use std::{sync::Arc, time::Duration};

use ruma::api::client::{
    account::whoami,
    session::{
        get_login_types::{
            self,
            v3::{ApplicationServiceLoginType, LoginType, PasswordLoginType},
        },
        login::{self, v3::LoginInfo},
        logout, logout_all, refresh_token,
    },
};

use crate::{Error, Result, Services, ops::users, ruma_wrapper::Ruma};

pub async fn login_types(
    services: Arc<Services>,
    _: Ruma<get_login_types::v3::Request>,
) -> Result<get_login_types::v3::Response> {
    let mut types = vec![LoginType::Password(PasswordLoginType::default())];
    // Bridges log their users in to encrypt (their default "sync mode").
    if !services.appservices.is_empty() {
        types.push(LoginType::ApplicationService(
            ApplicationServiceLoginType::default(),
        ));
    }
    Ok(get_login_types::v3::Response::new(types))
}

#[allow(deprecated)] // `user` is accepted from older clients.
pub async fn login(
    services: Arc<Services>,
    request: Ruma<login::v3::Request>,
) -> Result<login::v3::Response> {
    let appservice = request.appservice;
    let body = request.body;
    let user_id = match &body.login_info {
        LoginInfo::Password(password) => {
            let user_id = users::identify(
                &services,
                password.identifier.as_ref(),
                password.user.as_deref(),
            )?;
            if !services
                .users
                .check_password(&user_id, &password.password)
                .await?
            {
                tracing::info!(user = %user_id, "failed login");
                return Err(Error::forbidden("Invalid username or password."));
            }
            user_id
        }
        // A bridge logs in one of its users, with its `as_token`.
        LoginInfo::ApplicationService(login) => {
            let Some(registration) = appservice else {
                return Err(Error::missing_token());
            };
            if registration.creates_devices {
                return Err(Error::appservice_login_unsupported());
            }
            let user_id =
                users::identify(&services, login.identifier.as_ref(), login.user.as_deref())?;
            if !registration.is_user(&user_id) {
                return Err(Error::forbidden(
                    "Application service cannot log in as this user.",
                ));
            }
            if !services.users.exists(&user_id)? {
                return Err(Error::forbidden(
                    "Application service has not registered this user.",
                ));
            }
            user_id
        }
        _ => return Err(Error::unknown("Unsupported login type.")),
    };
    let session = services
        .users
        .login(
            &user_id,
            body.device_id.clone(),
            body.initial_device_display_name.clone(),
            body.refresh_token,
        )
        .await?;
    tracing::info!(user = %user_id, device = %session.device_id, "logged in");
    let mut response = login::v3::Response::new(user_id, session.access_token, session.device_id);
    response.refresh_token = session.refresh_token;
    response.expires_in = session.expires_in_ms.map(Duration::from_millis);
    Ok(response)
}

pub async fn refresh(
    services: Arc<Services>,
    request: Ruma<refresh_token::v3::Request>,
) -> Result<refresh_token::v3::Response> {
    let (_, session) = services.users.refresh(&request.body.refresh_token).await?;
    let mut response = refresh_token::v3::Response::new(session.access_token);
    response.refresh_token = session.refresh_token;
    response.expires_in_ms = session.expires_in_ms.map(Duration::from_millis);
    Ok(response)
}

pub async fn logout(
    services: Arc<Services>,
    request: Ruma<logout::v3::Request>,
) -> Result<logout::v3::Response> {
    users::remove_device(&services, request.user(), request.device()).await?;
    Ok(logout::v3::Response::new())
}

pub async fn logout_all(
    services: Arc<Services>,
    request: Ruma<logout_all::v3::Request>,
) -> Result<logout_all::v3::Response> {
    for device in services.users.devices(request.user())? {
        users::remove_device(&services, request.user(), &device.device_id).await?;
    }
    Ok(logout_all::v3::Response::new())
}

pub async fn whoami(
    _: Arc<Services>,
    request: Ruma<whoami::v3::Request>,
) -> Result<whoami::v3::Response> {
    let mut response = whoami::v3::Response::new(request.user().to_owned(), false);
    response.device_id = request
        .sender_device
        .clone()
        .filter(|device| device.as_str() != crate::ruma_wrapper::APPSERVICE_DEVICE);
    Ok(response)
}
