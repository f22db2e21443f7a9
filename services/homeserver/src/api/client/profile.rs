//! Profiles (display name, avatar) and the user directory.

use std::sync::Arc;

use ruma::{
    UserId,
    api::client::{
        profile::{
            get_avatar_url, get_display_name, get_profile, set_avatar_url, set_display_name,
        },
        user_directory::search_users,
    },
    api::federation::query::get_profile_information,
    events::StateEventType,
};
use serde_json::{Value, json};

use crate::{Error, Result, Services, ruma_wrapper::Ruma, service::rooms::PduBuilder};

fn account(services: &Services, user: &UserId) -> Result<crate::service::users::Account> {
    services
        .users
        .account(user)?
        .filter(|a| !a.deactivated)
        .ok_or_else(|| Error::not_found("Profile not found."))
}

/// A user's profile fields: a local account's, or asked of the user's
/// server when it is a peer.
async fn profile_fields(services: &Services, user: &UserId) -> Result<Vec<(String, Value)>> {
    if !services.is_local(user) {
        services.federation.require_peer(user.server_name())?;
        let answer = services
            .federation
            .send(
                user.server_name(),
                get_profile_information::v1::Request::new(user.to_owned()),
            )
            .await?;
        return Ok(answer
            .iter()
            .map(|(field, value)| (field.clone(), value.clone()))
            .collect());
    }
    let account = account(services, user)?;
    let mut fields = Vec::new();
    if let Some(name) = account.displayname {
        fields.push(("displayname".to_owned(), Value::String(name)));
    }
    if let Some(url) = account.avatar_url {
        fields.push(("avatar_url".to_owned(), Value::String(url.to_string())));
    }
    Ok(fields)
}

fn field(fields: &[(String, Value)], name: &str) -> Option<String> {
    fields
        .iter()
        .find(|(field, _)| field == name)
        .and_then(|(_, value)| value.as_str().map(str::to_owned))
}

pub async fn profile(
    services: Arc<Services>,
    request: Ruma<get_profile::v3::Request>,
) -> Result<get_profile::v3::Response> {
    let mut response = get_profile::v3::Response::new();
    for (field, value) in profile_fields(&services, &request.body.user_id).await? {
        response.set(field, value);
    }
    Ok(response)
}

pub async fn displayname(
    services: Arc<Services>,
    request: Ruma<get_display_name::v3::Request>,
) -> Result<get_display_name::v3::Response> {
    let fields = profile_fields(&services, &request.body.user_id).await?;
    Ok(get_display_name::v3::Response::new(field(
        &fields,
        "displayname",
    )))
}

pub async fn avatar_url(
    services: Arc<Services>,
    request: Ruma<get_avatar_url::v3::Request>,
) -> Result<get_avatar_url::v3::Response> {
    let fields = profile_fields(&services, &request.body.user_id).await?;
    let url = field(&fields, "avatar_url").map(ruma::OwnedMxcUri::from);
    Ok(get_avatar_url::v3::Response::new(url))
}

/// Rewrites the user's member event in every joined room with the new profile.
async fn propagate(
    services: &Services,
    user: &UserId,
    field: &str,
    value: Option<String>,
) -> Result<()> {
    for room_id in services.rooms.joined_rooms(user)? {
        let Some(current) =
            services
                .rooms
                .state_pdu(&room_id, &StateEventType::RoomMember, user.as_str())?
        else {
            continue;
        };
        let mut content = current.content_value();
        match &value {
            Some(v) => content[field] = Value::String(v.clone()),
            None => {
                if let Some(map) = content.as_object_mut() {
                    map.remove(field);
                }
            }
        }
        if content == current.content_value() {
            continue;
        }
        let builder = PduBuilder::member(user, content);
        if let Err(e) = services.rooms.append(&room_id, user, builder).await {
            tracing::warn!(room = %room_id, error = %e, "could not update member event after a profile change");
        }
    }
    Ok(())
}

pub async fn set_displayname(
    services: Arc<Services>,
    request: Ruma<set_display_name::v3::Request>,
) -> Result<set_display_name::v3::Response> {
    let user = request.user();
    if request.body.user_id != user {
        return Err(Error::forbidden("You can only change your own profile."));
    }
    let name = request.body.displayname.clone().filter(|n| !n.is_empty());
    if name.as_ref().is_some_and(|n| n.len() > 256) {
        return Err(Error::invalid_param("Display names are at most 256 bytes."));
    }
    services.users.set_displayname(user, name.clone()).await?;
    propagate(&services, user, "displayname", name).await?;
    Ok(set_display_name::v3::Response::new())
}

pub async fn set_avatar(
    services: Arc<Services>,
    request: Ruma<set_avatar_url::v3::Request>,
) -> Result<set_avatar_url::v3::Response> {
    let user = request.user();
    if request.body.user_id != user {
        return Err(Error::forbidden("You can only change your own profile."));
    }
    let url = request
        .body
        .avatar_url
        .clone()
        .filter(|u| !u.as_str().is_empty());
    services.users.set_avatar_url(user, url.clone()).await?;
    propagate(&services, user, "avatar_url", url.map(|u| u.to_string())).await?;
    Ok(set_avatar_url::v3::Response::new())
}

pub async fn search(
    services: Arc<Services>,
    request: Ruma<search_users::v3::Request>,
) -> Result<search_users::v3::Response> {
    let limit = usize::try_from(request.body.limit)
        .unwrap_or(10)
        .clamp(1, 100);
    let (found, limited) = services.users.search(&request.body.search_term, limit)?;
    let results = found
        .into_iter()
        .map(|(user_id, account)| {
            let mut user = search_users::v3::User::new(user_id);
            user.display_name = account.displayname;
            user.avatar_url = account.avatar_url;
            user
        })
        .collect();
    let _ = json!({});
    Ok(search_users::v3::Response::new(results, limited))
}
