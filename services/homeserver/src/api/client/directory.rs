//! Room aliases and the public room directory.

use std::sync::Arc;

use ruma::{
    OwnedRoomId, RoomAliasId, RoomId, UInt,
    api::client::{
        alias::{create_alias, delete_alias, get_alias},
        directory::{
            get_public_rooms, get_public_rooms_filtered, get_room_visibility, set_room_visibility,
        },
        room::get_summary,
        room::{Visibility, aliases},
    },
    directory::PublicRoomsChunk,
    events::StateEventType,
};

use crate::{
    Error, Result, Services,
    ops::directory::{chunk, previewable_summary, refuse_exclusive_alias, resolve_alias},
    ruma_wrapper::{Ruma, json_response},
};

pub async fn create(
    services: Arc<Services>,
    request: Ruma<create_alias::v3::Request>,
) -> Result<create_alias::v3::Response> {
    let body = &request.body;
    if !services.rooms.is_joined(request.user(), &body.room_id)? {
        return Err(Error::forbidden("You are not in this room."));
    }
    refuse_exclusive_alias(&services, &body.room_alias, request.appservice.as_deref())?;
    services
        .rooms
        .set_alias(&body.room_alias, &body.room_id)
        .await?;
    Ok(create_alias::v3::Response::new())
}

pub async fn resolve(
    services: Arc<Services>,
    request: Ruma<get_alias::v3::Request>,
) -> Result<get_alias::v3::Response> {
    let (room_id, servers) = resolve_alias(&services, &request.body.room_alias).await?;
    Ok(get_alias::v3::Response::new(room_id, servers))
}

pub async fn delete(
    services: Arc<Services>,
    request: Ruma<delete_alias::v3::Request>,
) -> Result<delete_alias::v3::Response> {
    let alias = &request.body.room_alias;
    let room_id = services
        .rooms
        .resolve_alias(alias)?
        .ok_or_else(|| Error::not_found("Room alias not found."))?;
    let is_moderator = services.rooms.is_joined(request.user(), &room_id)?
        && services
            .rooms
            .power_levels(&room_id)?
            .user_can_send_state(request.user(), StateEventType::RoomCanonicalAlias);
    if !is_moderator {
        return Err(Error::forbidden("You may not remove this alias."));
    }
    services.rooms.remove_alias(alias).await?;
    drop_from_canonical_alias(&services, &room_id, request.user(), alias).await?;
    Ok(delete_alias::v3::Response::new())
}

/// A deleted alias no longer resolves, so the room stops naming it: its
/// `m.room.canonical_alias` event is sent again without it (as the
/// moderator who deleted it), when it named it.
async fn drop_from_canonical_alias(
    services: &Services,
    room_id: &RoomId,
    sender: &ruma::UserId,
    alias: &RoomAliasId,
) -> Result<()> {
    let Some(content) =
        services
            .rooms
            .state_content(room_id, &StateEventType::RoomCanonicalAlias, "")?
    else {
        return Ok(());
    };
    let Ok(serde_json::Value::Object(mut content)) = serde_json::from_str(&content) else {
        return Ok(());
    };
    let mut changed = false;
    if content.get("alias").and_then(|a| a.as_str()) == Some(alias.as_str()) {
        content.remove("alias");
        changed = true;
    }
    if let Some(serde_json::Value::Array(alt)) = content.get_mut("alt_aliases") {
        let before = alt.len();
        alt.retain(|a| a.as_str() != Some(alias.as_str()));
        changed |= alt.len() != before;
    }
    if changed {
        let builder = crate::service::rooms::PduBuilder::state(
            ruma::events::TimelineEventType::RoomCanonicalAlias,
            "",
            serde_json::Value::Object(content),
        );
        services.rooms.append(room_id, sender, builder).await?;
    }
    Ok(())
}

pub async fn room_aliases(
    services: Arc<Services>,
    request: Ruma<aliases::v3::Request>,
) -> Result<aliases::v3::Response> {
    if !services
        .rooms
        .is_joined(request.user(), &request.body.room_id)?
    {
        return Err(Error::forbidden("You are not in this room."));
    }
    Ok(aliases::v3::Response::new(
        services.rooms.aliases_of(&request.body.room_id)?,
    ))
}

pub async fn get_visibility(
    services: Arc<Services>,
    request: Ruma<get_room_visibility::v3::Request>,
) -> Result<get_room_visibility::v3::Response> {
    if !services.rooms.exists(&request.body.room_id)? {
        return Err(Error::not_found("Unknown room."));
    }
    let visibility = if services.rooms.is_published(&request.body.room_id)? {
        Visibility::Public
    } else {
        Visibility::Private
    };
    Ok(get_room_visibility::v3::Response::new(visibility))
}

pub async fn set_visibility(
    services: Arc<Services>,
    request: Ruma<set_room_visibility::v3::Request>,
) -> Result<set_room_visibility::v3::Response> {
    let room_id = &request.body.room_id;
    if !services.rooms.exists(room_id)? {
        return Err(Error::not_found("Unknown room."));
    }
    let levels = services.rooms.power_levels(room_id)?;
    if !services.rooms.is_joined(request.user(), room_id)?
        || levels.for_user(request.user()) < levels.state_default
    {
        return Err(Error::forbidden("Only room moderators may publish a room."));
    }
    services
        .rooms
        .set_published(room_id, request.body.visibility == Visibility::Public)
        .await?;
    Ok(set_room_visibility::v3::Response::new())
}

/// The room summary (MSC3266, `/room_summary`): what a client shows of a
/// room before joining it. Given to members and invitees, and to anyone
/// signed in for a room they could join or read (public, knockable or
/// world-readable); any other room, or one this node does not hold, is
/// not found, so that its existence does not leak.
pub async fn summary(
    services: Arc<Services>,
    request: Ruma<get_summary::v1::Request>,
) -> Result<axum::response::Response> {
    let room_id = match OwnedRoomId::try_from(request.body.room_id_or_alias.clone()) {
        Ok(room_id) => room_id,
        Err(alias) => resolve_alias(&services, &alias).await?.0,
    };
    let mut body = previewable_summary(&services, request.user(), &room_id)?
        .ok_or_else(|| Error::not_found("No room of this name is known here, or it is private."))?;
    if let Some(membership) = services.rooms.membership(request.user(), &room_id)? {
        body["membership"] = serde_json::Value::String(membership.membership.to_string());
    }
    Ok(json_response(&body))
}

/// One page of the directory.
struct Page {
    chunk: Vec<PublicRoomsChunk>,
    next: Option<String>,
    prev: Option<String>,
    total: u64,
}

fn public_rooms(
    services: &Services,
    limit: Option<UInt>,
    since: Option<&str>,
    term: Option<&str>,
) -> Result<Page> {
    let mut all = Vec::new();
    for room_id in services.rooms.published_rooms()? {
        let chunk = chunk(services, &room_id)?;
        let matches = term.is_none_or(|t| {
            let t = t.to_lowercase();
            [
                chunk.name.as_deref(),
                chunk.topic.as_deref(),
                chunk.canonical_alias.as_ref().map(|a| a.as_str()),
            ]
            .iter()
            .flatten()
            .any(|s| s.to_lowercase().contains(&t))
        });
        if matches {
            all.push(chunk);
        }
    }
    all.sort_by(|a, b| {
        b.num_joined_members
            .cmp(&a.num_joined_members)
            .then(a.room_id.cmp(&b.room_id))
    });
    let total = all.len() as u64;
    let offset: usize = since.and_then(|s| s.parse().ok()).unwrap_or(0);
    let limit = limit
        .and_then(|l| usize::try_from(l).ok())
        .unwrap_or(100)
        .clamp(1, 500);
    let next = (offset + limit < all.len()).then(|| (offset + limit).to_string());
    let prev = (offset > 0).then(|| offset.saturating_sub(limit).to_string());
    Ok(Page {
        chunk: all.into_iter().skip(offset).take(limit).collect(),
        next,
        prev,
        total,
    })
}

pub async fn list(
    services: Arc<Services>,
    request: Ruma<get_public_rooms::v3::Request>,
) -> Result<get_public_rooms::v3::Response> {
    let Page {
        chunk,
        next,
        prev,
        total,
    } = public_rooms(
        &services,
        request.body.limit,
        request.body.since.as_deref(),
        None,
    )?;
    let mut response = get_public_rooms::v3::Response::new(chunk);
    response.next_batch = next;
    response.prev_batch = prev;
    response.total_room_count_estimate = UInt::try_from(total).ok();
    Ok(response)
}

pub async fn list_filtered(
    services: Arc<Services>,
    request: Ruma<get_public_rooms_filtered::v3::Request>,
) -> Result<get_public_rooms_filtered::v3::Response> {
    let term = request.body.filter.generic_search_term.as_deref();
    let Page {
        chunk,
        next,
        prev,
        total,
    } = public_rooms(
        &services,
        request.body.limit,
        request.body.since.as_deref(),
        term,
    )?;
    let mut response = get_public_rooms_filtered::v3::Response::new();
    response.chunk = chunk;
    response.next_batch = next;
    response.prev_batch = prev;
    response.total_room_count_estimate = UInt::try_from(total).ok();
    Ok(response)
}
