//! Password change and account deactivation.

use std::sync::Arc;

use ruma::api::client::{
    account::{ThirdPartyIdRemovalStatus, change_password, deactivate},
    uiaa::AuthType,
};

use super::uiaa;
use crate::{Result, Services, ops::users, ruma_wrapper::Ruma};

pub async fn change_password(
    services: Arc<Services>,
    request: Ruma<change_password::v3::Request>,
) -> Result<change_password::v3::Response> {
    let (user, own_device) = request.signed_in()?;
    uiaa::require(
        &services,
        request.body.auth.as_ref(),
        &[vec![AuthType::Password]],
        Some(user),
    )
    .await?;
    services
        .users
        .set_password(user, request.body.new_password.clone())
        .await?;
    if request.body.logout_devices {
        users::end_sessions(&services, user, Some(own_device)).await?;
    }
    Ok(change_password::v3::Response::new())
}

pub async fn deactivate(
    services: Arc<Services>,
    request: Ruma<deactivate::v3::Request>,
) -> Result<deactivate::v3::Response> {
    let user = request.signed_in()?.0.to_owned();
    uiaa::require(
        &services,
        request.body.auth.as_ref(),
        &[vec![AuthType::Password]],
        Some(&user),
    )
    .await?;
    users::deactivate_user(&services, &user).await?;
    Ok(deactivate::v3::Response::new(
        ThirdPartyIdRemovalStatus::NoSupport,
    ))
}
