//! `POST /search`: server-side search of messages, room names and topics
//! in the rooms a user is in (what the server can read: not the contents
//! of end-to-end encrypted rooms).
//!
//! Each request reads each room newest first, below the batch token, and
//! reads at most [`MAX_SCANNED`] events over all rooms: the results are
//! those newer than where any room's reading stopped, and the next batch
//! goes on from there. Terms match whole words, case-insensitively; every
//! term must occur.

use std::{collections::BTreeMap, sync::Arc};

use ruma::{
    OwnedRoomId, UInt,
    api::client::search::search_events::v3::{
        self, EventContextResult, OrderBy, ResultRoomEvents, SearchKeys, SearchResult, UserProfile,
    },
    events::{StateEventType, TimelineEventType},
};
use serde_json::Value;

use crate::{Error, Result, Services, ruma_wrapper::Ruma, service::rooms::Pdu};

/// Events read per request at most, over all rooms.
const MAX_SCANNED: usize = 20_000;
/// Results per page.
const PAGE: usize = 10;
/// Context events on either side of a result at most.
const MAX_CONTEXT: usize = 10;
/// The longest search term taken, in bytes.
const MAX_TERM_BYTES: usize = 512;

pub async fn search(services: Arc<Services>, request: Ruma<v3::Request>) -> Result<v3::Response> {
    // Reading thousands of events is blocking work: off the async workers.
    tokio::task::spawn_blocking(move || run(&services, &request))
        .await
        .map_err(Error::internal)?
}

fn run(services: &Services, request: &Ruma<v3::Request>) -> Result<v3::Response> {
    let user = request.user();
    let device = request.sender_device.as_deref();
    let Some(criteria) = &request.body.search_categories.room_events else {
        return Ok(v3::Response::new(Default::default()));
    };
    crate::ops::filter::check_room_event_filter(&criteria.filter)?;
    if criteria.search_term.len() > MAX_TERM_BYTES {
        return Err(Error::invalid_param(format!(
            "The search term is longer than {MAX_TERM_BYTES} bytes."
        )));
    }
    let mut terms = words(&criteria.search_term);
    let mut seen = std::collections::HashSet::new();
    terms.retain(|t| seen.insert(t.clone()));
    if terms.is_empty() {
        return Err(Error::invalid_param("The search term has no words."));
    }
    let keys = criteria.keys.clone().unwrap_or_else(|| {
        vec![
            SearchKeys::ContentBody,
            SearchKeys::ContentName,
            SearchKeys::ContentTopic,
        ]
    });
    let before = match request.body.next_batch.as_deref() {
        Some(token) => token
            .parse::<u64>()
            .map_err(|_| Error::invalid_param("Invalid next_batch."))?,
        // Below the batch token: from the newest on a first page.
        None => services.counter.visible() + 1,
    };
    let limit = criteria
        .filter
        .limit
        .and_then(|l| usize::try_from(l).ok())
        .unwrap_or(PAGE)
        .clamp(1, 100);

    let rooms = &services.rooms;
    let mut searched: Vec<OwnedRoomId> = rooms
        .rooms_of_shared(user)?
        .iter()
        .filter(|(room_id, m)| {
            m.is_joined() && crate::ops::filter::room_allowed(&criteria.filter, room_id)
        })
        .map(|(room_id, _)| room_id.clone())
        .collect();
    searched.sort();
    let per_room = (MAX_SCANNED / searched.len().max(1)).max(limit);

    // Matches in each room, newest first, down to where its reading
    // stopped; results are complete only above every room's stop.
    let mut found: Vec<(u64, f64, Pdu)> = Vec::new();
    let mut stopped_at = 0u64;
    for room_id in &searched {
        let viewer = rooms.viewer(user, room_id)?;
        let (mut matches, mut scanned, mut oldest) = (0, 0, 0);
        rooms.visit_newest(
            room_id,
            0,
            before.saturating_sub(1),
            per_room,
            |count, pdu| {
                scanned += 1;
                oldest = count;
                if viewer.sees(count)
                    && crate::ops::filter::event_matches(&criteria.filter, pdu)
                    && let Some(rank) = rank(pdu, &keys, &terms)
                {
                    found.push((count, rank, pdu.clone()));
                    matches += 1;
                }
                // Enough from this room: older ones come with the next batch.
                matches < limit
            },
        )?;
        if matches == limit || scanned == per_room {
            stopped_at = stopped_at.max(oldest.saturating_sub(1));
        }
    }
    found.retain(|(count, _, _)| *count > stopped_at);
    found.sort_by_key(|(count, _, _)| std::cmp::Reverse(*count));
    let next_batch = if found.len() > limit {
        found.truncate(limit);
        found.last().map(|(count, _, _)| *count)
    } else {
        (stopped_at > 0).then_some(stopped_at + 1)
    };
    if criteria.order_by == Some(OrderBy::Rank) {
        found.sort_by(|a, b| b.1.total_cmp(&a.1).then(b.0.cmp(&a.0)));
    }

    let context = &criteria.event_context;
    let (before_n, after_n) = (
        usize::try_from(context.before_limit)
            .unwrap_or(0)
            .min(MAX_CONTEXT),
        usize::try_from(context.after_limit)
            .unwrap_or(0)
            .min(MAX_CONTEXT),
    );
    let mut results = Vec::with_capacity(found.len());
    let mut state: BTreeMap<OwnedRoomId, Vec<_>> = BTreeMap::new();
    for (count, rank, pdu) in found {
        let viewer = rooms.viewer(user, &pdu.room_id)?;
        let mut result = SearchResult::new();
        result.rank = Some(rank);
        let mut context_result = EventContextResult::new();
        if before_n > 0 || after_n > 0 {
            let upto = viewer.upto().min(services.counter.visible());
            let (earlier, later) = crate::ops::events::around(
                services,
                &pdu.room_id,
                count,
                upto,
                (before_n, after_n),
                |c, _| viewer.sees(c),
            )?;
            context_result.start = earlier.last().map(|(c, _)| c.saturating_sub(1).to_string());
            context_result.end = later.last().map(|(c, _)| c.to_string());
            if context.include_profile {
                for (_, event) in earlier.iter().chain(&later) {
                    add_profile(services, &mut context_result.profile_info, event)?;
                }
                add_profile(services, &mut context_result.profile_info, &pdu)?;
            }
            context_result.events_before = earlier
                .iter()
                .map(|(_, p)| p.to_room_event(device))
                .collect();
            context_result.events_after =
                later.iter().map(|(_, p)| p.to_room_event(device)).collect();
        }
        result.context = context_result;
        if criteria.include_state == Some(true)
            && !state.contains_key(&pdu.room_id)
            && viewer.is_joined()
        {
            state.insert(
                pdu.room_id.clone(),
                rooms
                    .current_state(&pdu.room_id)?
                    .iter()
                    .map(Pdu::to_state_event)
                    .collect(),
            );
        }
        result.result = Some(pdu.to_room_event(device));
        results.push(result);
    }

    let mut room_events = ResultRoomEvents::new();
    room_events.count = UInt::try_from(results.len()).ok();
    room_events.highlights = terms;
    room_events.next_batch = next_batch.map(|n| n.to_string());
    room_events.results = results;
    room_events.state = state;
    let mut categories = v3::ResultCategories::new();
    categories.room_events = room_events;
    Ok(v3::Response::new(categories))
}

/// The lowercase words of a text.
fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// How well `pdu` matches: the number of times the terms occur in the
/// searched fields, when every term occurs; none otherwise.
fn rank(pdu: &Pdu, keys: &[SearchKeys], terms: &[String]) -> Option<f64> {
    let field = match pdu.kind {
        TimelineEventType::RoomMessage => SearchKeys::ContentBody,
        TimelineEventType::RoomName => SearchKeys::ContentName,
        TimelineEventType::RoomTopic => SearchKeys::ContentTopic,
        _ => return None,
    };
    if !keys.contains(&field) {
        return None;
    }
    let name = match field {
        SearchKeys::ContentBody => "body",
        SearchKeys::ContentName => "name",
        _ => "topic",
    };
    let content = pdu.content_value();
    let text = content.get(name).and_then(Value::as_str)?;
    let found = words(text);
    let mut hits = 0usize;
    for term in terms {
        let n = found.iter().filter(|w| *w == term).count();
        if n == 0 {
            return None;
        }
        hits += n;
    }
    Some(hits as f64)
}

fn add_profile(
    services: &Services,
    profiles: &mut BTreeMap<ruma::OwnedUserId, UserProfile>,
    pdu: &Pdu,
) -> Result<()> {
    if profiles.contains_key(&pdu.sender) {
        return Ok(());
    }
    let content = services
        .rooms
        .state_json(
            &pdu.room_id,
            &StateEventType::RoomMember,
            pdu.sender.as_str(),
        )?
        .unwrap_or_default();
    let mut profile = UserProfile::new();
    profile.displayname = content["displayname"].as_str().map(str::to_owned);
    profile.avatar_url = content["avatar_url"].as_str().map(Into::into);
    profiles.insert(pdu.sender.clone(), profile);
    Ok(())
}
