//! Stored filters, and applying filters to events.

use std::sync::Arc;

use ruma::api::client::filter::{
    FilterDefinition, RoomEventFilter, UrlFilter, create_filter, get_filter,
};

use crate::{Error, Result, Services, ruma_wrapper::Ruma, service::rooms::Pdu};

pub async fn create(
    services: Arc<Services>,
    request: Ruma<create_filter::v3::Request>,
) -> Result<create_filter::v3::Response> {
    if request.body.user_id != request.user() {
        return Err(Error::forbidden(
            "You can only create filters for yourself.",
        ));
    }
    let filter = serde_json::to_value(&request.body.filter)?;
    let id = services.filters.create(request.user(), &filter).await?;
    Ok(create_filter::v3::Response::new(id))
}

pub async fn get(
    services: Arc<Services>,
    request: Ruma<get_filter::v3::Request>,
) -> Result<get_filter::v3::Response> {
    if request.body.user_id != request.user() {
        return Err(Error::forbidden("You can only read your own filters."));
    }
    let filter = services
        .filters
        .get(request.user(), &request.body.filter_id)?
        .ok_or_else(|| Error::not_found("Unknown filter."))?;
    Ok(get_filter::v3::Response::new(serde_json::from_value(
        filter,
    )?))
}

/// Resolves the `filter` parameter of `/sync`: a stored filter ID or inline JSON.
pub fn resolve_sync_filter(
    services: &Services,
    user: &ruma::UserId,
    filter: Option<&ruma::api::client::sync::sync_events::v3::Filter>,
) -> Result<FilterDefinition> {
    use ruma::api::client::sync::sync_events::v3::Filter;
    match filter {
        None => Ok(FilterDefinition::default()),
        Some(Filter::FilterDefinition(definition)) => Ok(definition.clone()),
        Some(Filter::FilterId(id)) => match services.filters.get(user, id)? {
            Some(value) => Ok(serde_json::from_value(value)?),
            None => Err(Error::not_found("Unknown filter.")),
        },
        Some(_) => Ok(FilterDefinition::default()),
    }
}

/// `*` matches any run of characters, as the spec's type filters allow.
fn glob_match(pattern: &str, value: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == value,
        Some((head, tail)) => {
            value.starts_with(head)
                && (0..=value.len() - head.len()).any(|i| {
                    let rest = &value[head.len() + i..];
                    value.is_char_boundary(head.len() + i) && glob_match(tail, rest)
                })
        }
    }
}

/// Whether a room event passes a room event filter.
pub fn event_matches(filter: &RoomEventFilter, pdu: &Pdu) -> bool {
    let kind = pdu.kind.to_string();
    if filter.not_types.iter().any(|t| glob_match(t, &kind)) {
        return false;
    }
    if let Some(types) = &filter.types
        && !types.iter().any(|t| glob_match(t, &kind))
    {
        return false;
    }
    if filter.not_senders.contains(&pdu.sender) {
        return false;
    }
    if let Some(senders) = &filter.senders
        && !senders.contains(&pdu.sender)
    {
        return false;
    }
    if let Some(url_filter) = &filter.url_filter {
        let has_url = pdu.content_value().get("url").is_some();
        match url_filter {
            UrlFilter::EventsWithUrl if !has_url => return false,
            UrlFilter::EventsWithoutUrl if has_url => return false,
            _ => {}
        }
    }
    true
}

pub fn room_allowed(filter: &RoomEventFilter, room_id: &ruma::RoomId) -> bool {
    !filter.not_rooms.iter().any(|r| r == room_id)
        && filter
            .rooms
            .as_ref()
            .is_none_or(|rooms| rooms.iter().any(|r| r == room_id))
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    #[test]
    fn globs() {
        assert!(glob_match("m.*", "m.room.message"));
        assert!(glob_match("*", "x"));
        assert!(glob_match("m.room.message", "m.room.message"));
        assert!(!glob_match("m.room.member", "m.room.message"));
        assert!(glob_match("m.*.message", "m.room.message"));
    }
}
