//! Delivers to each bridge the events it is interested in, as
//! transactions (`PUT /_matrix/app/v1/transactions/{txnId}` with the
//! bridge's `hs_token`): in stream order, one in flight per bridge, at most
//! [`MAX_EVENTS`] each. A transaction is stored before it is sent and kept
//! until the bridge acknowledges it, so a retry (after a restart too)
//! sends the same events under the same ID, which the bridge deduplicates.
//! A bridge that fails is tried again after 2, 4, ... up to 512 seconds
//! while the others go on.
//!
//! A bridge is interested in an event (as Synapse decides) when its
//! sender, or the user a membership event is about, is in the bridge's
//! user namespaces; when the room's ID or one of its aliases is in its
//! namespaces; or when one of the room's joined local members is.

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use ruma::{OwnedRoomId, UserId, events::TimelineEventType};
use serde_json::Value;

use super::Registration;
use crate::{
    Error, Result, Services,
    service::{appservice_state::InFlight, rooms::Pdu},
};

/// Events in one transaction at most (Synapse's limit).
pub const MAX_EVENTS: usize = 100;
/// Outbox entries looked at in one go for one bridge.
const SCAN: usize = 1000;
const FIRST_RETRY: Duration = Duration::from_secs(2);
const LONGEST_RETRY: Duration = Duration::from_secs(512);

struct Backoff {
    until: Instant,
    pause: Duration,
}

/// Typing and receipts for the bridges that asked for them
/// (`receive_ephemeral`), best effort as in sync: from the rooms each
/// bridge has been sent events of since the node started, the changes
/// after the position each was sent up to. Not kept across a restart.
struct Ephemeral {
    rooms: HashMap<String, std::collections::HashSet<OwnedRoomId>>,
    sent_up_to: HashMap<String, u64>,
    start: u64,
}

impl Ephemeral {
    fn new(start: u64) -> Self {
        Self {
            rooms: HashMap::new(),
            sent_up_to: HashMap::new(),
            start,
        }
    }

    /// The typing and receipt events of the bridge's rooms changed since
    /// last time, up to `upto`, in the shape of a sync's ephemeral events
    /// with their `room_id`.
    fn take(
        &mut self,
        services: &Services,
        registration: &Registration,
        upto: u64,
    ) -> Result<Vec<Value>> {
        let after = *self.sent_up_to.get(&registration.id).unwrap_or(&self.start);
        self.sent_up_to.insert(registration.id.clone(), upto);
        let mut out = Vec::new();
        let Some(rooms) = self.rooms.get(&registration.id) else {
            return Ok(out);
        };
        for room in rooms {
            if let Some(users) = services.typing.changes(room, after, upto) {
                out.push(serde_json::json!({
                    "type": "m.typing",
                    "room_id": room,
                    "content": { "user_ids": users },
                }));
            }
            if let Some(content) =
                services
                    .receipts
                    .changes(room, &registration.sender, after, upto)?
            {
                out.push(serde_json::json!({
                    "type": "m.receipt",
                    "room_id": room,
                    "content": content,
                }));
            }
        }
        Ok(out)
    }
}

/// The HTTP client the node speaks to bridges with.
pub(crate) fn client() -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(35))
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .user_agent(concat!("Archipel/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| Error::internal(format!("building the bridges' client: {e}")))
}

/// Sends bridges their transactions until the node stops.
pub async fn run(services: Arc<Services>) {
    let client = match client() {
        Ok(client) => client,
        Err(e) => {
            tracing::error!(error = %e, "bridges get no events");
            return;
        }
    };
    let mut watch = services.counter.watch();
    let mut backoff: HashMap<String, Backoff> = HashMap::new();
    let mut ephemeral = Ephemeral::new(services.counter.visible());
    // How far the outbox has been forgotten: pruned again only past it.
    let mut pruned = 0;
    loop {
        watch.borrow_and_update();
        if let Err(e) = pass(
            &services,
            &client,
            &mut backoff,
            &mut ephemeral,
            &mut pruned,
        )
        .await
        {
            tracing::warn!(error = %e, "delivering events to bridges");
        }
        let retry = backoff.values().map(|b| b.until).min();
        let retry = async {
            match retry {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            changed = watch.changed() => if changed.is_err() { return },
            () = retry => {}
        }
    }
}

/// Sends each bridge what came since its cursor, then forgets the outbox
/// every bridge has passed.
async fn pass(
    services: &Services,
    client: &reqwest::Client,
    backoff: &mut HashMap<String, Backoff>,
    ephemeral: &mut Ephemeral,
    pruned: &mut u64,
) -> Result<()> {
    let upto = services.counter.visible();
    let mut passed = upto;
    for registration in services.appservices.all() {
        let Some(url) = &registration.url else {
            continue;
        };
        let id = &registration.id;
        let mut state = services.appservice_state.get(id)?;
        loop {
            if backoff.get(id).is_some_and(|b| b.until > Instant::now()) {
                break;
            }
            if state.in_flight.is_none() {
                let (events, reached) = interesting(services, registration, state.cursor, upto)?;
                let edus = if registration.receive_ephemeral {
                    let rooms = ephemeral.rooms.entry(id.clone()).or_default();
                    for event in &events {
                        if let Some(room) = event["room_id"]
                            .as_str()
                            .and_then(|r| OwnedRoomId::try_from(r).ok())
                        {
                            rooms.insert(room);
                        }
                    }
                    ephemeral.take(services, registration, upto)?
                } else {
                    Vec::new()
                };
                if events.is_empty() && edus.is_empty() {
                    if reached > state.cursor {
                        state.cursor = reached;
                        services.appservice_state.set(id, &state).await?;
                    }
                    break;
                }
                let mut body = serde_json::json!({ "events": events });
                if !edus.is_empty() {
                    // The stable name, and the one older bridges read.
                    body["ephemeral"] = Value::Array(edus.clone());
                    body["de.sorunome.msc2409.ephemeral"] = Value::Array(edus);
                }
                let txn_id = state.next_txn.to_string();
                state.next_txn += 1;
                state.in_flight = Some(InFlight {
                    txn_id,
                    last: reached,
                    body: body.to_string(),
                });
                services.appservice_state.set(id, &state).await?;
            }
            let Some(flight) = state.in_flight.clone() else {
                break;
            };
            match send(client, url, registration.hs_token(), &flight).await {
                Ok(()) => {
                    state.cursor = state.cursor.max(flight.last);
                    state.in_flight = None;
                    state.last_success_ms = Some(crate::service::users::now_ms());
                    services.appservice_state.set(id, &state).await?;
                    backoff.remove(id);
                }
                Err(e) => {
                    let pause = backoff
                        .get(id)
                        .map_or(FIRST_RETRY, |b| (b.pause * 2).min(LONGEST_RETRY));
                    tracing::warn!(appservice = %id, txn_id = %flight.txn_id, error = %e, retry_in = ?pause, "a bridge did not take its transaction");
                    backoff.insert(
                        id.clone(),
                        Backoff {
                            until: Instant::now() + pause,
                            pause,
                        },
                    );
                    break;
                }
            }
        }
        passed = passed.min(state.cursor);
    }
    if passed > *pruned {
        services.rooms.prune_appservice_outbox(passed).await?;
        *pruned = passed;
    }
    Ok(())
}

/// The events after `cursor` (up to `upto`) the bridge is interested in,
/// as clients see them, at most [`MAX_EVENTS`]; and how far the outbox was
/// read.
fn interesting(
    services: &Services,
    registration: &Registration,
    cursor: u64,
    upto: u64,
) -> Result<(Vec<Value>, u64)> {
    let mut events = Vec::new();
    let mut reached = cursor;
    let mut rooms: HashMap<OwnedRoomId, bool> = HashMap::new();
    for (position, event_id) in services.rooms.appservice_outbox(cursor, SCAN)? {
        if position > upto || events.len() >= MAX_EVENTS {
            break;
        }
        reached = position;
        let Some(pdu) = services.rooms.get_pdu(&event_id)? else {
            continue;
        };
        if interested(services, registration, &pdu, &mut rooms)? {
            events.push(pdu.to_client_value(None, true));
        }
        if pdu.kind == TimelineEventType::RoomMember {
            rooms.remove(&pdu.room_id);
        }
    }
    Ok((events, reached))
}

fn interested(
    services: &Services,
    registration: &Registration,
    pdu: &Pdu,
    rooms: &mut HashMap<OwnedRoomId, bool>,
) -> Result<bool> {
    if registration.is_user(&pdu.sender) || registration.is_room(&pdu.room_id) {
        return Ok(true);
    }
    if pdu.kind == TimelineEventType::RoomMember
        && let Some(user) = pdu.state_key.as_deref().and_then(|k| UserId::parse(k).ok())
        && registration.is_user(&user)
    {
        return Ok(true);
    }
    if let Some(&known) = rooms.get(&pdu.room_id) {
        return Ok(known);
    }
    let server = services.server_name();
    let room = services
        .rooms
        .aliases_of(&pdu.room_id)?
        .iter()
        .any(|alias| registration.is_alias(alias))
        || services
            .rooms
            .joined_members(&pdu.room_id)?
            .iter()
            .any(|member| member.server_name() == server && registration.is_user(member));
    rooms.insert(pdu.room_id.clone(), room);
    Ok(room)
}

/// Sends one transaction; `Ok` once the bridge answered 2xx.
async fn send(
    client: &reqwest::Client,
    url: &str,
    hs_token: &str,
    flight: &InFlight,
) -> std::result::Result<(), String> {
    let response = client
        .put(format!(
            "{url}/_matrix/app/v1/transactions/{}",
            flight.txn_id
        ))
        .bearer_auth(hs_token)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(flight.body.clone())
        .send()
        .await
        .map_err(|e| format!("{e}"))?;
    if response.status().is_success() {
        Ok(())
    } else {
        Err(format!("it answered {}", response.status()))
    }
}
