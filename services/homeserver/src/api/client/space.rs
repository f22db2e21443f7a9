//! `/hierarchy`: the rooms of a space, and of the spaces within it.

use std::{
    collections::{HashSet, VecDeque},
    sync::Arc,
};

use axum::response::Response;
use ruma::{OwnedRoomId, RoomId, api::client::space::get_hierarchy, events::StateEventType};
use serde_json::{Value, json};

use crate::ops::directory::previewable_summary;
use crate::{
    Error, Result, Services,
    ruma_wrapper::{Ruma, json_response},
};

/// Rooms one page holds when the client does not say, and at most.
const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 100;
/// How deep the walk goes when the client does not say, and at most.
const MAX_DEPTH: usize = 10;
/// Rooms one walk visits at most: a page past these is empty.
const MAX_ROOMS: usize = 1000;

/// The space `room_id` and the rooms below it, breadth first, each with
/// its `m.space.child` events. Only rooms this node holds and the user may
/// preview are listed (members, invitees, and rooms they could join or
/// read); the rest are left out, and a space the user may not preview is
/// refused. `from` is the number of rooms earlier pages held.
pub async fn hierarchy(
    services: Arc<Services>,
    request: Ruma<get_hierarchy::v1::Request>,
) -> Result<Response> {
    let body = &request.body;
    let user = request.user();
    let limit = body
        .limit
        .map_or(DEFAULT_LIMIT, |l| usize::try_from(l).unwrap_or(MAX_LIMIT))
        .clamp(1, MAX_LIMIT);
    let max_depth = body
        .max_depth
        .map_or(MAX_DEPTH, |d| usize::try_from(d).unwrap_or(MAX_DEPTH))
        .min(MAX_DEPTH);
    let skip = match &body.from {
        Some(from) => from
            .parse::<usize>()
            .map_err(|_| Error::invalid_param("Invalid pagination token."))?,
        None => 0,
    };

    let mut rooms = Vec::new();
    let mut seen = HashSet::from([body.room_id.clone()]);
    let mut queue = VecDeque::from([(body.room_id.clone(), 0usize)]);
    let mut listed = 0;
    let mut more = false;
    while let Some((room_id, depth)) = queue.pop_front() {
        let Some(mut summary) = previewable_summary(&services, user, &room_id)? else {
            if room_id == body.room_id {
                return Err(Error::forbidden("You may not see this space."));
            }
            continue;
        };
        let children = children(&services, &room_id, body.suggested_only)?;
        if depth < max_depth {
            for (child, _) in &children {
                if seen.len() < MAX_ROOMS && seen.insert(child.clone()) {
                    queue.push_back((child.clone(), depth + 1));
                }
            }
        }
        listed += 1;
        if listed <= skip {
            continue;
        }
        if rooms.len() == limit {
            more = true;
            break;
        }
        summary["children_state"] = Value::Array(children.into_iter().map(|(_, e)| e).collect());
        rooms.push(summary);
    }
    let mut response = json!({ "rooms": rooms });
    if more {
        response["next_batch"] = json!((skip + limit).to_string());
    }
    Ok(json_response(&response))
}

/// The children a space names (`m.space.child` events with a `via`), in
/// their `order` (then by room ID), with each event as `/hierarchy` shows
/// it.
fn children(
    services: &Services,
    room_id: &RoomId,
    suggested_only: bool,
) -> Result<Vec<(OwnedRoomId, Value)>> {
    let mut children: Vec<(String, OwnedRoomId, Value)> = Vec::new();
    for pdu in services
        .rooms
        .current_state_of_type(room_id, &StateEventType::SpaceChild)?
    {
        let content = pdu.content_value();
        let has_via = content["via"].as_array().is_some_and(|via| !via.is_empty());
        if !has_via || (suggested_only && content["suggested"] != true) {
            continue;
        }
        let Some(child) = pdu.state_key.as_deref().and_then(|k| RoomId::parse(k).ok()) else {
            continue;
        };
        // The spec's `order`: printable ASCII, at most 50 characters.
        let order = content["order"]
            .as_str()
            .filter(|o| o.len() <= 50 && o.chars().all(|c| (' '..='~').contains(&c)))
            .map_or_else(|| "\u{7f}".to_owned(), str::to_owned);
        let event = json!({
            "type": StateEventType::SpaceChild.to_string(),
            "state_key": child,
            "content": content,
            "sender": pdu.sender,
            "origin_server_ts": pdu.origin_server_ts,
        });
        children.push((order, child, event));
    }
    children.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    Ok(children.into_iter().map(|(_, id, e)| (id, e)).collect())
}
