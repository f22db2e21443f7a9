//! Account data (global and per room), room tags, and push rules.

use std::sync::Arc;

use ruma::{
    RoomId, UserId,
    api::client::{
        config::{
            get_global_account_data, get_room_account_data, set_global_account_data,
            set_room_account_data,
        },
        push::{
            delete_pushrule, get_pushers, get_pushrule, get_pushrule_actions, get_pushrule_enabled,
            get_pushrules_all, get_pushrules_global_scope, set_pusher, set_pushrule,
            set_pushrule_actions, set_pushrule_enabled,
        },
        tag::{create_tag, delete_tag, get_tags},
    },
    events::tag::Tags,
    push::Ruleset,
    serde::Raw,
};
use serde_json::{Value, json};

use crate::{Error, Result, Services, ruma_wrapper::Ruma};

fn own(request_user: &UserId, target: &UserId) -> Result<()> {
    if request_user != target {
        return Err(Error::forbidden(
            "You can only access your own account data.",
        ));
    }
    Ok(())
}

fn checked_room(services: &Services, user: &UserId, room_id: &RoomId) -> Result<()> {
    if services.rooms.membership(user, room_id)?.is_none() {
        return Err(Error::forbidden("You are not in this room."));
    }
    Ok(())
}

fn content(raw: &serde_json::value::RawValue) -> Result<Value> {
    let value: Value = serde_json::from_str(raw.get())?;
    if !value.is_object() {
        return Err(Error::bad_json("Account data must be a JSON object."));
    }
    Ok(value)
}

/// Server-managed types a client may not overwrite directly.
fn reject_managed(kind: &str) -> Result<()> {
    if kind == "m.push_rules" || kind == "m.fully_read" {
        return Err(Error::bad_json(format!(
            "{kind} is managed through its own endpoint."
        )));
    }
    Ok(())
}

pub async fn set_global(
    services: Arc<Services>,
    request: Ruma<set_global_account_data::v3::Request>,
) -> Result<set_global_account_data::v3::Response> {
    let b = &request.body;
    own(request.user(), &b.user_id)?;
    reject_managed(&b.event_type.to_string())?;
    services
        .account_data
        .set(
            &b.user_id,
            None,
            &b.event_type.to_string(),
            content(b.data.json())?,
        )
        .await?;
    Ok(set_global_account_data::v3::Response::new())
}

pub async fn get_global(
    services: Arc<Services>,
    request: Ruma<get_global_account_data::v3::Request>,
) -> Result<get_global_account_data::v3::Response> {
    let b = &request.body;
    own(request.user(), &b.user_id)?;
    let value = services
        .account_data
        .get(&b.user_id, None, &b.event_type.to_string())?
        .filter(|v| v.as_object().is_some_and(|m| !m.is_empty()));
    let value = value.ok_or_else(|| Error::not_found("No account data of that type."))?;
    Ok(get_global_account_data::v3::Response::new(Raw::from_json(
        serde_json::value::to_raw_value(&value)?,
    )))
}

pub async fn set_room(
    services: Arc<Services>,
    request: Ruma<set_room_account_data::v3::Request>,
) -> Result<set_room_account_data::v3::Response> {
    let b = &request.body;
    own(request.user(), &b.user_id)?;
    checked_room(&services, &b.user_id, &b.room_id)?;
    reject_managed(&b.event_type.to_string())?;
    services
        .account_data
        .set(
            &b.user_id,
            Some(&b.room_id),
            &b.event_type.to_string(),
            content(b.data.json())?,
        )
        .await?;
    Ok(set_room_account_data::v3::Response::new())
}

pub async fn get_room(
    services: Arc<Services>,
    request: Ruma<get_room_account_data::v3::Request>,
) -> Result<get_room_account_data::v3::Response> {
    let b = &request.body;
    own(request.user(), &b.user_id)?;
    let value = services
        .account_data
        .get(&b.user_id, Some(&b.room_id), &b.event_type.to_string())?
        .filter(|v| v.as_object().is_some_and(|m| !m.is_empty()));
    let value = value.ok_or_else(|| Error::not_found("No account data of that type."))?;
    Ok(get_room_account_data::v3::Response::new(Raw::from_json(
        serde_json::value::to_raw_value(&value)?,
    )))
}

fn tags_of(services: &Services, user: &UserId, room_id: &RoomId) -> Result<Value> {
    Ok(services
        .account_data
        .get(user, Some(room_id), "m.tag")?
        // Whatever else a client stored as `m.tag` holds no tags.
        .filter(|v| v.get("tags").is_some_and(Value::is_object))
        .unwrap_or_else(|| json!({ "tags": {} })))
}

pub async fn get_room_tags(
    services: Arc<Services>,
    request: Ruma<get_tags::v3::Request>,
) -> Result<get_tags::v3::Response> {
    let b = &request.body;
    own(request.user(), &b.user_id)?;
    let tags: Tags =
        serde_json::from_value(tags_of(&services, &b.user_id, &b.room_id)?["tags"].clone())
            .unwrap_or_default();
    Ok(get_tags::v3::Response::new(tags))
}

pub async fn put_tag(
    services: Arc<Services>,
    request: Ruma<create_tag::v3::Request>,
) -> Result<create_tag::v3::Response> {
    let b = &request.body;
    own(request.user(), &b.user_id)?;
    checked_room(&services, &b.user_id, &b.room_id)?;
    let mut tags = tags_of(&services, &b.user_id, &b.room_id)?;
    tags["tags"][&b.tag] = serde_json::to_value(&b.tag_info)?;
    services
        .account_data
        .set(&b.user_id, Some(&b.room_id), "m.tag", tags)
        .await?;
    Ok(create_tag::v3::Response::new())
}

pub async fn remove_tag(
    services: Arc<Services>,
    request: Ruma<delete_tag::v3::Request>,
) -> Result<delete_tag::v3::Response> {
    let b = &request.body;
    own(request.user(), &b.user_id)?;
    let mut tags = tags_of(&services, &b.user_id, &b.room_id)?;
    if let Some(map) = tags["tags"].as_object_mut() {
        map.remove(&b.tag);
    }
    services
        .account_data
        .set(&b.user_id, Some(&b.room_id), "m.tag", tags)
        .await?;
    Ok(delete_tag::v3::Response::new())
}

fn ruleset(services: &Services, user: &UserId) -> Result<Ruleset> {
    match services.account_data.get(user, None, "m.push_rules")? {
        Some(value) => Ok(serde_json::from_value(value["global"].clone())
            .unwrap_or_else(|_| Ruleset::server_default(user))),
        None => Ok(Ruleset::server_default(user)),
    }
}

async fn save_ruleset(services: &Services, user: &UserId, ruleset: &Ruleset) -> Result<()> {
    services
        .account_data
        .set(user, None, "m.push_rules", json!({ "global": ruleset }))
        .await?;
    // Counts made by the old rules are counted again.
    services.receipts.forget_counted(user);
    Ok(())
}

pub async fn push_rules(
    services: Arc<Services>,
    request: Ruma<get_pushrules_all::v3::Request>,
) -> Result<get_pushrules_all::v3::Response> {
    Ok(get_pushrules_all::v3::Response::new(ruleset(
        &services,
        request.user(),
    )?))
}

pub async fn push_rules_global(
    services: Arc<Services>,
    request: Ruma<get_pushrules_global_scope::v3::Request>,
) -> Result<get_pushrules_global_scope::v3::Response> {
    Ok(get_pushrules_global_scope::v3::Response::new(ruleset(
        &services,
        request.user(),
    )?))
}

pub async fn push_rule(
    services: Arc<Services>,
    request: Ruma<get_pushrule::v3::Request>,
) -> Result<get_pushrule::v3::Response> {
    let set = ruleset(&services, request.user())?;
    let rule = set
        .get(request.body.kind.clone(), &request.body.rule_id)
        .ok_or_else(|| Error::not_found("Push rule not found."))?;
    Ok(get_pushrule::v3::Response::new(rule.into()))
}

pub async fn set_push_rule(
    services: Arc<Services>,
    request: Ruma<set_pushrule::v3::Request>,
) -> Result<set_pushrule::v3::Response> {
    let b = &request.body;
    let mut set = ruleset(&services, request.user())?;
    set.insert(b.rule.clone(), b.after.as_deref(), b.before.as_deref())
        .map_err(|e| Error::bad_json(format!("Cannot insert rule: {e}")))?;
    save_ruleset(&services, request.user(), &set).await?;
    Ok(set_pushrule::v3::Response::new())
}

pub async fn delete_push_rule(
    services: Arc<Services>,
    request: Ruma<delete_pushrule::v3::Request>,
) -> Result<delete_pushrule::v3::Response> {
    let mut set = ruleset(&services, request.user())?;
    set.remove(request.body.kind.clone(), &request.body.rule_id)
        .map_err(|e| match e {
            ruma::push::RemovePushRuleError::NotFound => Error::not_found("Push rule not found."),
            other => Error::bad_json(other.to_string()),
        })?;
    save_ruleset(&services, request.user(), &set).await?;
    Ok(delete_pushrule::v3::Response::new())
}

pub async fn push_rule_enabled(
    services: Arc<Services>,
    request: Ruma<get_pushrule_enabled::v3::Request>,
) -> Result<get_pushrule_enabled::v3::Response> {
    let set = ruleset(&services, request.user())?;
    let rule = set
        .get(request.body.kind.clone(), &request.body.rule_id)
        .ok_or_else(|| Error::not_found("Push rule not found."))?;
    Ok(get_pushrule_enabled::v3::Response::new(rule.enabled()))
}

pub async fn set_push_rule_enabled(
    services: Arc<Services>,
    request: Ruma<set_pushrule_enabled::v3::Request>,
) -> Result<set_pushrule_enabled::v3::Response> {
    let mut set = ruleset(&services, request.user())?;
    set.set_enabled(
        request.body.kind.clone(),
        &request.body.rule_id,
        request.body.enabled,
    )
    .map_err(|_| Error::not_found("Push rule not found."))?;
    save_ruleset(&services, request.user(), &set).await?;
    Ok(set_pushrule_enabled::v3::Response::new())
}

pub async fn push_rule_actions(
    services: Arc<Services>,
    request: Ruma<get_pushrule_actions::v3::Request>,
) -> Result<get_pushrule_actions::v3::Response> {
    let set = ruleset(&services, request.user())?;
    let rule = set
        .get(request.body.kind.clone(), &request.body.rule_id)
        .ok_or_else(|| Error::not_found("Push rule not found."))?;
    Ok(get_pushrule_actions::v3::Response::new(
        rule.actions().to_vec(),
    ))
}

pub async fn set_push_rule_actions(
    services: Arc<Services>,
    request: Ruma<set_pushrule_actions::v3::Request>,
) -> Result<set_pushrule_actions::v3::Response> {
    let mut set = ruleset(&services, request.user())?;
    set.set_actions(
        request.body.kind.clone(),
        &request.body.rule_id,
        request.body.actions.clone(),
    )
    .map_err(|_| Error::not_found("Push rule not found."))?;
    save_ruleset(&services, request.user(), &set).await?;
    Ok(set_pushrule_actions::v3::Response::new())
}

/// The user's pushers.
pub async fn pushers(
    services: Arc<Services>,
    request: Ruma<get_pushers::v3::Request>,
) -> Result<get_pushers::v3::Response> {
    let pushers = services
        .pushers
        .list(request.user())?
        .into_iter()
        .filter_map(|p| serde_json::from_value(p).ok())
        .collect();
    Ok(get_pushers::v3::Response::new(pushers))
}

/// Adds, replaces or (with `kind: null`) removes a pusher. Only HTTP
/// pushers to a gateway the operator listed in `[homeserver.push]` are
/// taken: the node posts to no other address.
pub async fn set_pushers(
    services: Arc<Services>,
    request: Ruma<set_pusher::v3::Request>,
) -> Result<set_pusher::v3::Response> {
    let user = request.user();
    let body = request.json_body.clone().unwrap_or_default();
    let text = |field: &str, longest: usize| -> Result<String> {
        let value = body[field]
            .as_str()
            .filter(|v| !v.is_empty())
            .ok_or_else(|| Error::missing_param(format!("`{field}` is required.")))?;
        if value.len() > longest {
            return Err(Error::invalid_param(format!(
                "`{field}` is longer than {longest} bytes."
            )));
        }
        Ok(value.to_owned())
    };
    let (app_id, pushkey) = (text("app_id", 64)?, text("pushkey", 512)?);
    match body["kind"].as_str() {
        None if body["kind"].is_null() => {
            services.pushers.remove(user, &app_id, &pushkey).await?;
        }
        Some("http") => {
            let url = body["data"]["url"].as_str().unwrap_or_default();
            if !services.config.push.allows(url) {
                return Err(Error::invalid_param(format!(
                    "This server sends push notifications only to the gateways its operator \
                     configured; {url:?} is not one of them."
                )));
            }
            let mut pusher = body.clone();
            if let Some(map) = pusher.as_object_mut() {
                map.remove("append");
            }
            let append = body["append"].as_bool().unwrap_or(false);
            services
                .pushers
                .set(user, pusher, append, services.counter.visible())
                .await?;
        }
        _ => {
            return Err(Error::invalid_param(
                "Only pushers of kind `http` are supported.",
            ));
        }
    }
    Ok(set_pusher::v3::Response::new())
}
