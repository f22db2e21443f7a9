//! Push notifications: the events that notify a user with pushers, by
//! their push rules, posted to the push gateways the operator configured
//! (push gateway API `POST /_matrix/push/v1/notify`).
//!
//! Each pusher keeps the stream position it was notified up to, so a
//! restart sends what was missed and nothing twice. A gateway that fails
//! is tried again with growing pauses while the other pushers go on; one
//! that rejects a pushkey has that pusher removed.

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use ruma::{
    OwnedUserId, RoomId, UInt, UserId,
    events::StateEventType,
    push::{Action, PushConditionRoomCtx, Ruleset, Tweak},
};
use serde_json::{Value, json};

use crate::{
    Error, Result, Services,
    service::{pushers::StoredPusher, rooms::Pdu},
};

/// Events one pass notifies a pusher of at most; the rest follow next.
const MAX_EVENTS_PER_PASS: usize = 100;
const FIRST_RETRY: Duration = Duration::from_secs(1);
const LONGEST_RETRY: Duration = Duration::from_secs(600);

/// A pusher's gateway that failed: when to try again, and the pause after.
struct Backoff {
    until: Instant,
    pause: Duration,
}

type PusherId = (OwnedUserId, String, String);

/// Notifies pushers of new events until the node stops.
pub async fn run(services: Arc<Services>) {
    let client = match client(&services) {
        Ok(client) => client,
        Err(e) => {
            tracing::error!(error = %e, "push notifications are off");
            return;
        }
    };
    let mut watch = services.counter.watch();
    let mut backoff: HashMap<PusherId, Backoff> = HashMap::new();
    loop {
        watch.borrow_and_update();
        if let Err(e) = pass(&services, &client, &mut backoff).await {
            tracing::warn!(error = %e, "delivering push notifications");
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
            () = services.pushers.changed.notified() => {}
            () = retry => {}
        }
    }
}

fn client(services: &Services) -> Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(30))
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .user_agent(concat!("Archipel/", env!("CARGO_PKG_VERSION")));
    if let Some(bundle) = &services.config.push.ca_bundle {
        builder = builder.tls_backend_preconfigured(crate::tls::client_config(bundle)?);
    }
    builder
        .build()
        .map_err(|e| Error::internal(format!("building the push client: {e}")))
}

/// Notifies each pusher of what came since its position.
async fn pass(
    services: &Services,
    client: &reqwest::Client,
    backoff: &mut HashMap<PusherId, Backoff>,
) -> Result<()> {
    let upto = services.counter.visible();
    let now = Instant::now();
    let mut progress = Vec::new();
    for (user, mut stored) in services.pushers.all()? {
        let id = (
            user.clone(),
            stored.app_id().to_owned(),
            stored.pushkey().to_owned(),
        );
        if stored.cursor >= upto || backoff.get(&id).is_some_and(|b| b.until > now) {
            continue;
        }
        let (events, complete) = new_events(services, &user, stored.cursor, upto)?;
        let mut reached = if complete {
            upto
        } else {
            events.last().map_or(upto, |(count, _)| *count)
        };
        let mut removed = false;
        for (count, pdu) in &events {
            let Some(tweaks) = notifies(services, &user, pdu)? else {
                continue;
            };
            match deliver(services, client, &user, &stored, pdu, &tweaks).await {
                Ok(true) => {}
                Ok(false) => {
                    tracing::info!(user = %user, app_id = %id.1, "push gateway rejected a pushkey; pusher removed");
                    services.pushers.remove(&user, &id.1, &id.2).await?;
                    removed = true;
                    break;
                }
                Err(e) => {
                    let pause = backoff
                        .get(&id)
                        .map_or(FIRST_RETRY, |b| (b.pause * 2).min(LONGEST_RETRY));
                    tracing::warn!(user = %user, app_id = %id.1, error = %e, retry_in = ?pause, "push gateway failed");
                    backoff.insert(
                        id.clone(),
                        Backoff {
                            until: Instant::now() + pause,
                            pause,
                        },
                    );
                    reached = count - 1;
                    break;
                }
            }
        }
        if removed {
            continue;
        }
        if reached == upto || events.iter().any(|(c, _)| *c <= reached) {
            backoff.retain(|k, b| k != &id || b.until > Instant::now());
        }
        if reached > stored.cursor {
            stored.cursor = reached;
            progress.push((user, stored));
        }
    }
    services.pushers.advance(&progress).await
}

/// Events from others in the user's joined rooms in `(after, upto]`,
/// oldest first, at most [`MAX_EVENTS_PER_PASS`]; and whether that is
/// all of them.
fn new_events(
    services: &Services,
    user: &UserId,
    after: u64,
    upto: u64,
) -> Result<(Vec<(u64, Pdu)>, bool)> {
    let rooms = &services.rooms;
    let mut events = Vec::new();
    let mut complete = true;
    for (room_id, membership) in rooms.rooms_of_shared(user)?.iter() {
        if !membership.is_joined()
            || rooms
                .latest_position(room_id, upto)?
                .is_none_or(|newest| newest <= after)
        {
            continue;
        }
        let from = after.max(membership.count);
        let found = rooms.events_after(room_id, from, upto, MAX_EVENTS_PER_PASS + 1)?;
        complete &= found.len() <= MAX_EVENTS_PER_PASS;
        events.extend(
            found
                .into_iter()
                .take(MAX_EVENTS_PER_PASS)
                .filter(|(_, pdu)| pdu.sender != user),
        );
    }
    events.sort_by_key(|(count, _)| *count);
    if events.len() > MAX_EVENTS_PER_PASS {
        events.truncate(MAX_EVENTS_PER_PASS);
        complete = false;
    }
    Ok((events, complete))
}

/// The user's push rules: theirs, or the server's defaults.
pub fn ruleset(services: &Services, user: &UserId) -> Result<Ruleset> {
    Ok(
        match services.account_data.get(user, None, "m.push_rules")? {
            Some(value) => serde_json::from_value(value["global"].clone())
                .unwrap_or_else(|_| Ruleset::server_default(user)),
            None => Ruleset::server_default(user),
        },
    )
}

/// The user's push rules, read once and only when first needed (a sync
/// response asks only for rooms with something unread).
#[derive(Default)]
pub struct RulesetOnce(std::cell::OnceCell<Ruleset>);

impl RulesetOnce {
    pub fn get(&self, services: &Services, user: &UserId) -> Result<&Ruleset> {
        if let Some(rules) = self.0.get() {
            return Ok(rules);
        }
        let loaded = ruleset(services, user)?;
        Ok(self.0.get_or_init(|| loaded))
    }
}

/// The room the push rules' conditions look at, for `user`: its member
/// count (the archive member not counted), the user's display name there
/// and its power levels.
pub fn room_context(
    services: &Services,
    user: &UserId,
    room_id: &RoomId,
) -> Result<PushConditionRoomCtx> {
    let rooms = &services.rooms;
    let member_count = rooms
        .joined_members(room_id)?
        .into_iter()
        .filter(|u| !services.is_archive_member(u))
        .count();
    let display_name = member_field(services, room_id, user, "displayname")?
        .unwrap_or_else(|| user.localpart().to_owned());
    let mut context = PushConditionRoomCtx::new(
        room_id.to_owned(),
        UInt::try_from(member_count).unwrap_or_default(),
        user.to_owned(),
        display_name,
    );
    if rooms.exists(room_id)? {
        context.power_levels = Some(rooms.power_levels(room_id)?.into());
    }
    Ok(context)
}

/// What `ruleset` says to do for `pdu` in `context`. The rules await
/// nothing here (no thread subscriptions), so this runs them to the end.
pub fn actions_in(ruleset: &Ruleset, context: &PushConditionRoomCtx, pdu: &Pdu) -> Vec<Action> {
    let event = pdu.to_sync_event(None);
    futures::executor::block_on(ruleset.get_actions(&event, context)).to_vec()
}

/// What `ruleset` says to do for `pdu`, for `user`.
pub fn actions(
    services: &Services,
    ruleset: &Ruleset,
    user: &UserId,
    pdu: &Pdu,
) -> Result<Vec<Action>> {
    let context = room_context(services, user, &pdu.room_id)?;
    Ok(actions_in(ruleset, &context, pdu))
}

/// The tweaks of the notification `pdu` makes for `user` by their push
/// rules, or none when it does not notify.
fn notifies(services: &Services, user: &UserId, pdu: &Pdu) -> Result<Option<Vec<Tweak>>> {
    let ruleset = ruleset(services, user)?;
    let actions = actions(services, &ruleset, user, pdu)?;
    if !actions.iter().any(Action::should_notify) {
        return Ok(None);
    }
    Ok(Some(
        actions
            .iter()
            .filter_map(|a| match a {
                Action::SetTweak(tweak) => Some(tweak.clone()),
                _ => None,
            })
            .collect(),
    ))
}

fn member_field(
    services: &Services,
    room_id: &RoomId,
    user: &UserId,
    field: &str,
) -> Result<Option<String>> {
    Ok(services
        .rooms
        .state_json(room_id, &StateEventType::RoomMember, user.as_str())?
        .and_then(|c| c[field].as_str().map(str::to_owned)))
}

/// Posts one notification to the pusher's gateway: `Ok(false)` when the
/// gateway rejected the pushkey.
async fn deliver(
    services: &Services,
    client: &reqwest::Client,
    user: &UserId,
    stored: &StoredPusher,
    pdu: &Pdu,
    tweaks: &[Tweak],
) -> Result<bool> {
    let pusher = &stored.pusher;
    let url = pusher["data"]["url"].as_str().unwrap_or_default();
    // Only to a gateway the operator lists, even if the list changed
    // since the pusher was set.
    if !services.config.push.allows(url) {
        return Ok(false);
    }
    let membership = services.rooms.membership(user, &pdu.room_id)?;
    let unread = match &membership {
        Some(membership) => crate::ops::unread::unread_counts(
            services,
            user,
            &pdu.room_id,
            membership,
            services.counter.visible(),
            &RulesetOnce::default(),
        )?
        .notification_count
        .unwrap_or_default(),
        None => UInt::MIN,
    };
    let mut data = pusher["data"].clone();
    if let Some(map) = data.as_object_mut() {
        map.remove("url");
    }
    let tweaks: serde_json::Map<String, Value> = tweaks
        .iter()
        .filter_map(|t| match serde_json::to_value(t).ok()? {
            Value::Object(map) => Some((
                map.get("set_tweak")?.as_str()?.to_owned(),
                map.get("value").cloned().unwrap_or(Value::Bool(true)),
            )),
            _ => None,
        })
        .collect();
    let device = json!({
        "app_id": stored.app_id(),
        "pushkey": stored.pushkey(),
        "pushkey_ts": pusher["pushkey_ts"].as_u64().unwrap_or_default(),
        "data": data,
        "tweaks": tweaks,
    });
    let mut notification = json!({
        "event_id": pdu.event_id,
        "room_id": pdu.room_id,
        "counts": { "unread": unread },
        "prio": if tweaks.contains_key("highlight") { "high" } else { "low" },
        "devices": [device],
    });
    // `event_id_only`: the gateway (often outside the ministry) learns
    // which event, not what it says; the app fetches it.
    if pusher["data"]["format"].as_str() != Some("event_id_only") {
        notification["type"] = json!(pdu.kind.to_string());
        notification["sender"] = json!(pdu.sender);
        notification["content"] = pdu.content_value();
        if let Some(name) = member_field(services, &pdu.room_id, &pdu.sender, "displayname")? {
            notification["sender_display_name"] = json!(name);
        }
        if let Some(name) = room_name(services, &pdu.room_id)? {
            notification["room_name"] = json!(name);
        }
    }
    let response = client
        .post(url)
        .json(&json!({ "notification": notification }))
        .send()
        .await
        .map_err(|e| Error::remote(format!("push gateway {url}: {e}")))?;
    let status = response.status();
    if !status.is_success() {
        return Err(Error::remote(format!("push gateway {url}: HTTP {status}")));
    }
    let body: Value = response.json().await.unwrap_or_default();
    let rejected = body["rejected"]
        .as_array()
        .is_some_and(|r| r.iter().any(|k| k.as_str() == Some(stored.pushkey())));
    Ok(!rejected)
}

fn room_name(services: &Services, room_id: &RoomId) -> Result<Option<String>> {
    Ok(services
        .rooms
        .state_json(room_id, &StateEventType::RoomName, "")?
        .and_then(|c| c["name"].as_str().map(str::to_owned))
        .filter(|n| !n.is_empty()))
}
