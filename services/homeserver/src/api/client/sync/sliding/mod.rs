//! Simplified sliding sync (MSC4186, the unstable shape Element X and the
//! matrix-sdk speak): `POST /_matrix/client/unstable/org.matrix.simplified_msc3575/sync`.
//!
//! A client keeps a connection per `conn_id`; each response hands out a
//! position (`pos`). The node keeps, per position, which rooms the
//! connection was sent and how far (see [`crate::service::sliding_sync`]),
//! so that the next request sends only what changed, a repeated request
//! gets the same answer again, and a restart of the node does not force
//! the client to start over.
//!
//! Each request names lists (ranges over the user's rooms, sorted by their
//! latest event, newest first) and room subscriptions; the rooms they
//! select are sent when they were never sent on the connection or changed
//! since. Extensions carry to-device messages, key changes and counts,
//! account data, receipts and typing.

mod extensions;
mod lists;
mod room;

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use ruma::{DeviceId, OwnedRoomId, UserId, api::client::sync::sync_events::v5};

use crate::{Error, Result, Services, ruma_wrapper::Ruma, service::sliding_sync::Snapshot};

/// The longest a long poll waits.
const MAX_TIMEOUT: Duration = Duration::from_secs(300);
/// Lists and room subscriptions one request may name.
const MAX_LISTS: usize = 64;
const MAX_SUBSCRIPTIONS: usize = 1000;
/// Timeline events one room gets at most in one response.
const MAX_TIMELINE_LIMIT: u64 = 100;

/// What one request works with.
pub struct Ctx<'a> {
    pub services: &'a Services,
    pub user: &'a UserId,
    pub device: &'a DeviceId,
    pub request: &'a v5::Request,
    /// What the connection was sent up to the request's position; none on
    /// a new connection.
    pub previous: Option<&'a Snapshot>,
    /// Where this response reaches in the stream.
    pub upto: u64,
    /// Where the to-device messages this response carries start.
    pub to_device_since: u64,
    /// The user's push rules, for the unread counts.
    pub push_rules: crate::push::RulesetOnce,
}

impl Ctx<'_> {
    /// The stream position the connection had reached: 0 on a new one.
    pub fn since(&self) -> u64 {
        self.previous.map_or(0, |p| p.upto)
    }
}

pub async fn sync(services: Arc<Services>, request: Ruma<v5::Request>) -> Result<v5::Response> {
    let _syncing = services.syncing.enter();
    let (user, device) = (request.user().to_owned(), request.device().to_owned());
    let body = &request.body;
    let conn_id = body.conn_id.as_deref().unwrap_or_default();
    if body.lists.len() > MAX_LISTS || body.room_subscriptions.len() > MAX_SUBSCRIPTIONS {
        return Err(Error::invalid_param(format!(
            "At most {MAX_LISTS} lists and {MAX_SUBSCRIPTIONS} room subscriptions per request."
        )));
    }
    let pos = body.pos.as_deref().map(parse_pos).transpose()?;
    let mut previous = match pos {
        Some(pos) => Some(services.sliding_sync.load(&user, &device, conn_id, pos)?),
        None => None,
    };
    // The to-device messages up to the extension's token reached the
    // device: they go.
    let mut to_device_since = 0;
    if extensions::enabled(body.extensions.to_device.enabled) {
        to_device_since = match body.extensions.to_device.since.as_deref() {
            Some(since) => since
                .parse()
                .map_err(|_| Error::invalid_param("Invalid to_device since token."))?,
            None => 0,
        };
        to_device_since = to_device_since.min(services.counter.visible());
        if to_device_since > 0 {
            services
                .e2ee
                .ack_to_device(&user, &device, to_device_since)
                .await?;
        }
    }
    services.presence.syncing(&user, &body.set_presence).await?;

    // A missing timeout means an answer at once (as Synapse reads it).
    let longest = Duration::from_secs(services.config.request_timeout_secs)
        .saturating_sub(Duration::from_secs(10))
        .min(MAX_TIMEOUT);
    let timeout = body.timeout.unwrap_or_default().min(longest);
    let deadline = tokio::time::Instant::now() + timeout;
    let mut watch = services.counter.watch();
    loop {
        watch.borrow_and_update();
        let upto = services
            .counter
            .visible()
            .max(previous.as_ref().map_or(0, |p| p.upto));
        let (mut response, snapshot) = build(&Ctx {
            services: &services,
            user: &user,
            device: &device,
            request: body,
            previous: previous.as_ref(),
            upto,
            to_device_since,
            push_rules: Default::default(),
        })?;
        let quiet = is_empty(&response);
        let wait = pos.is_some() && quiet && tokio::time::Instant::now() < deadline;
        if wait {
            // Nothing in `(since, upto]` was for this connection, so the
            // next wake-up looks only at what comes after `upto`.
            if let Some(previous) = &mut previous {
                previous.upto = upto;
            }
            to_device_since = to_device_since.max(upto);
            if tokio::time::timeout_at(deadline, watch.changed())
                .await
                .is_ok()
            {
                continue;
            }
        }
        extensions::add_key_counts(&services, body, &user, &device, &mut response)?;
        response.txn_id = body.txn_id.clone();
        response.pos = match (pos, quiet) {
            // Nothing was sent: the position the client holds still says
            // what it has.
            (Some(pos), true) => pos.to_string(),
            _ => services
                .sliding_sync
                .save(&user, &device, conn_id, pos, &snapshot)
                .await?
                .to_string(),
        };
        return Ok(response);
    }
}

fn parse_pos(pos: &str) -> Result<u64> {
    pos.parse().map_err(|_| Error::unknown_pos())
}

/// The response for the request's lists, subscriptions and extensions, and
/// what the connection will have been sent once the client has it.
fn build(ctx: &Ctx<'_>) -> Result<(v5::Response, Snapshot)> {
    let mut response = v5::Response::new(String::new());
    let room_list = ctx.services.rooms.rooms_of_shared(ctx.user)?;
    let candidates = lists::candidates(ctx, &room_list)?;
    let selection = lists::select(ctx, &candidates, &mut response)?;

    let mut snapshot = Snapshot {
        upto: ctx.upto,
        rooms: ctx.previous.map(|p| p.rooms.clone()).unwrap_or_default(),
    };
    // Rooms the user no longer has (and was told so) are forgotten.
    snapshot
        .rooms
        .retain(|room_id, _| candidates.memberships.contains_key(&**room_id));

    let mut sent_fresh = Vec::new();
    for (room_id, config) in &selection.rooms {
        let Some(membership) = candidates.memberships.get(&**room_id) else {
            continue;
        };
        let previously = snapshot.rooms.get(room_id).copied();
        if let Some(built) = room::build(
            ctx,
            room_id,
            membership,
            config,
            candidates.direct.contains(room_id),
            previously,
        )? {
            if built.fresh {
                sent_fresh.push(room_id.clone());
            }
            snapshot.rooms.insert(room_id.clone(), built.sent);
            response.rooms.insert(room_id.clone(), built.room);
        }
    }
    let timelines: BTreeMap<OwnedRoomId, Vec<String>> = response
        .rooms
        .iter()
        .filter(|(id, _)| sent_fresh.contains(id))
        .map(|(id, room)| (id.clone(), room::event_ids(&room.timeline)))
        .collect();
    response.extensions = extensions::build(ctx, &selection, &candidates, &timelines)?;
    Ok((response, snapshot))
}

/// Whether a long poll has nothing to say yet (the key counts and the
/// to-device token do not count: they come with every answer).
fn is_empty(response: &v5::Response) -> bool {
    let ext = &response.extensions;
    response.rooms.is_empty()
        && ext.to_device.as_ref().is_none_or(|t| t.events.is_empty())
        && ext.e2ee.device_lists.is_empty()
        && ext.account_data.is_empty()
        && ext.receipts.is_empty()
        && ext.typing.is_empty()
}
