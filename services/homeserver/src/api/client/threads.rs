//! Thread listing, and small endpoints clients call that this closed
//! appliance answers with "nothing here" (third-party IDs and networks).

use std::{collections::BTreeMap, sync::Arc};

use axum::response::Response;
use ruma::{
    OwnedEventId,
    api::client::{account::get_3pids, thirdparty::get_protocols, threads::get_threads},
};
use serde_json::json;

use crate::counter::parse_token;
use crate::{
    Result, Services,
    ruma_wrapper::{Ruma, json_response},
    service::rooms::pdu::raw,
};

/// How far back a thread listing looks.
const THREAD_SCAN: usize = 10_000;

struct ThreadSummary {
    root: OwnedEventId,
    latest_count: u64,
    latest: serde_json::Value,
    count: u64,
    participated: bool,
}

pub async fn threads(
    services: Arc<Services>,
    request: Ruma<get_threads::v1::Request>,
) -> Result<get_threads::v1::Response> {
    let user = request.user();
    let b = &request.body;
    let viewer = services.rooms.viewer(user, &b.room_id)?;
    let upto = viewer.upto().min(services.counter.visible());
    let mut summaries: BTreeMap<OwnedEventId, ThreadSummary> = BTreeMap::new();
    for (count, pdu) in services
        .rooms
        .events_before(&b.room_id, upto, THREAD_SCAN)?
    {
        let Some((rel_type, root)) = pdu.relation().filter(|_| viewer.sees(count)) else {
            continue;
        };
        if rel_type != "m.thread" {
            continue;
        }
        let summary = summaries
            .entry(root.clone())
            .or_insert_with(|| ThreadSummary {
                root,
                latest_count: count,
                latest: pdu.to_client_value(None, true),
                count: 0,
                participated: false,
            });
        summary.count += 1;
        summary.participated |= pdu.sender == user;
    }
    let mut threads: Vec<ThreadSummary> = summaries.into_values().collect();
    threads.sort_by_key(|t| std::cmp::Reverse(t.latest_count));

    let offset = b.from.as_deref().map(parse_token).transpose()?.unwrap_or(0) as usize;
    let limit = b
        .limit
        .and_then(|l| usize::try_from(l).ok())
        .unwrap_or(20)
        .clamp(1, 100);
    let participated_only = matches!(
        b.include,
        ruma::api::client::threads::get_threads::v1::IncludeThreads::Participated
    );
    // A user participates in a thread by writing its root or a reply.
    let mut chunk = Vec::new();
    let mut skipped = 0;
    let mut more = false;
    for thread in &threads {
        let Some(root) = services.rooms.get_pdu(&thread.root)? else {
            continue;
        };
        let participated = thread.participated || root.sender == user;
        if participated_only && !participated {
            continue;
        }
        if skipped < offset {
            skipped += 1;
            continue;
        }
        if chunk.len() == limit {
            more = true;
            break;
        }
        let mut event = root.to_client_value(request.sender_device.as_deref(), true);
        event["unsigned"]["m.relations"] = json!({
            "m.thread": { "latest_event": thread.latest, "count": thread.count, "current_user_participated": participated }
        });
        chunk.push(raw(&event));
    }
    let shown = chunk.len();
    let mut response = get_threads::v1::Response::new(chunk);
    if more {
        response.next_batch = Some((offset + shown).to_string());
    }
    Ok(response)
}

/// Accounts here have no third-party identifiers. The list is written out
/// even when empty: Element Web reads `threepids.length`, and ruma leaves an
/// empty list out.
pub async fn third_party_ids(
    _: Arc<Services>,
    _: Ruma<get_3pids::v3::Request>,
) -> Result<Response> {
    Ok(json_response(&json!({ "threepids": [] })))
}

pub async fn protocols(
    _: Arc<Services>,
    _: Ruma<get_protocols::v3::Request>,
) -> Result<get_protocols::v3::Response> {
    Ok(get_protocols::v3::Response::new(BTreeMap::new()))
}
