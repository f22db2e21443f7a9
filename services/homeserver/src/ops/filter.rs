//! Filters: checking a client's filter before it is used or stored, and
//! applying it to events.

use ruma::api::client::filter::{Filter, FilterDefinition, RoomEventFilter, UrlFilter};

use crate::{Error, Result, Services, service::rooms::Pdu};

/// Resolves the `filter` parameter of `/sync`: a stored filter ID or inline JSON.
pub fn resolve_sync_filter(
    services: &Services,
    user: &ruma::UserId,
    filter: Option<&ruma::api::client::sync::sync_events::v3::Filter>,
) -> Result<FilterDefinition> {
    use ruma::api::client::sync::sync_events::v3::Filter as SyncFilter;
    let definition = match filter {
        None => FilterDefinition::default(),
        Some(SyncFilter::FilterDefinition(definition)) => definition.clone(),
        Some(SyncFilter::FilterId(id)) => match services.filters.get(user, id)? {
            Some(value) => serde_json::from_value(value)?,
            None => return Err(Error::not_found("Unknown filter.")),
        },
        Some(_) => FilterDefinition::default(),
    };
    check(&definition)?;
    Ok(definition)
}

/// At most this many entries in each list of a filter (`types`,
/// `not_types`, `senders`, `rooms`...): every event a request returns is
/// checked against them.
pub const MAX_FILTER_ENTRIES: usize = 100;
/// At most this many bytes in one type pattern (event types have at most 255).
const MAX_PATTERN_BYTES: usize = 255;

/// Refuses filters whose lists are longer than [`MAX_FILTER_ENTRIES`] or
/// whose type patterns are longer than an event type can be.
pub fn check(filter: &FilterDefinition) -> Result<()> {
    check_event_filter(&filter.presence)?;
    check_event_filter(&filter.account_data)?;
    let room = &filter.room;
    check_list("rooms", room.rooms.as_deref().unwrap_or_default())?;
    check_list("not_rooms", &room.not_rooms)?;
    for events in [
        &room.ephemeral,
        &room.state,
        &room.timeline,
        &room.account_data,
    ] {
        check_room_event_filter(events)?;
    }
    Ok(())
}

fn check_event_filter(filter: &Filter) -> Result<()> {
    check_types(filter.types.as_deref(), &filter.not_types)?;
    check_list("senders", filter.senders.as_deref().unwrap_or_default())?;
    check_list("not_senders", &filter.not_senders)
}

/// Like [`check`], for the filter of `/messages` and `/context`.
pub fn check_room_event_filter(filter: &RoomEventFilter) -> Result<()> {
    check_types(filter.types.as_deref(), &filter.not_types)?;
    check_list("senders", filter.senders.as_deref().unwrap_or_default())?;
    check_list("not_senders", &filter.not_senders)?;
    check_list("rooms", filter.rooms.as_deref().unwrap_or_default())?;
    check_list("not_rooms", &filter.not_rooms)
}

fn check_types(types: Option<&[String]>, not_types: &[String]) -> Result<()> {
    let types = types.unwrap_or_default();
    check_list("types", types)?;
    check_list("not_types", not_types)?;
    match types
        .iter()
        .chain(not_types)
        .find(|t| t.len() > MAX_PATTERN_BYTES)
    {
        Some(_) => Err(Error::invalid_param(format!(
            "A type pattern in the filter is longer than {MAX_PATTERN_BYTES} bytes."
        ))),
        None => Ok(()),
    }
}

fn check_list<T>(name: &str, list: &[T]) -> Result<()> {
    if list.len() > MAX_FILTER_ENTRIES {
        return Err(Error::invalid_param(format!(
            "The filter's {name} has {} entries; at most {MAX_FILTER_ENTRIES} are allowed.",
            list.len()
        )));
    }
    Ok(())
}

/// `*` matches any run of characters, as the spec's type filters allow.
///
/// Linear in the lengths: with `*` the only wildcard, taking each middle
/// piece at its first occurrence never loses a match.
fn glob_match(pattern: &str, value: &str) -> bool {
    let Some((head_and_middle, last)) = pattern.rsplit_once('*') else {
        return pattern == value;
    };
    let (first, middle) = head_and_middle
        .split_once('*')
        .unwrap_or((head_and_middle, ""));
    let Some(rest) = value.strip_prefix(first) else {
        return false;
    };
    let Some(mut rest) = rest.strip_suffix(last) else {
        return false;
    };
    for piece in middle.split('*') {
        match rest.find(piece) {
            Some(at) => rest = &rest[at + piece.len()..],
            None => return false,
        }
    }
    true
}

/// Whether an event type passes a filter's `types` and `not_types`.
pub fn type_allowed(types: Option<&[String]>, not_types: &[String], kind: &str) -> bool {
    !not_types.iter().any(|t| glob_match(t, kind))
        && types.is_none_or(|types| types.iter().any(|t| glob_match(t, kind)))
}

/// Whether an event of type `kind` from `sender` (if it has one) passes a
/// non-room event filter: presence, and account data.
pub fn passes(filter: &Filter, kind: &str, sender: Option<&ruma::UserId>) -> bool {
    type_allowed(filter.types.as_deref(), &filter.not_types, kind)
        && sender.is_none_or(|sender| {
            !filter.not_senders.iter().any(|s| s == sender)
                && filter
                    .senders
                    .as_ref()
                    .is_none_or(|senders| senders.iter().any(|s| s == sender))
        })
}

/// Whether a filter lets through no event of type `kind` at all, whoever
/// sent it: a section the sync need not gather.
pub fn excludes_type(filter: &Filter, kind: &str) -> bool {
    !type_allowed(filter.types.as_deref(), &filter.not_types, kind)
        || filter.senders.as_ref().is_some_and(Vec::is_empty)
}

/// Whether `types` and `not_types` let no event type through at all.
pub fn excludes_every_type(types: Option<&[String]>, not_types: &[String]) -> bool {
    types.is_some_and(<[String]>::is_empty) || not_types.iter().any(|t| t == "*")
}

/// Whether a room event passes a room event filter.
pub fn event_matches(filter: &RoomEventFilter, pdu: &Pdu) -> bool {
    let kind = pdu.kind.to_string();
    if !type_allowed(filter.types.as_deref(), &filter.not_types, &kind) {
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
        assert!(glob_match("*.*", "m.room"));
        assert!(!glob_match("m.*m", "m."));
        assert!(!glob_match("ab*ba", "aba"));
        assert!(glob_match("ab*ba", "abba"));
        assert!(glob_match("a*b*c", "aXbYbZc"));
        assert!(!glob_match("a*c*b", "acb2"));
        assert!(glob_match("**", ""));
        assert!(glob_match("é*", "é.x"));
    }
}
