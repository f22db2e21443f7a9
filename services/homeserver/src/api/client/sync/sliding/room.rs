//! One room of a sliding sync response: its timeline, the state the
//! request asked for, its name, heroes, counts and bump stamp.

use std::collections::BTreeMap;

use js_option::JsOption;
use ruma::{
    OwnedMxcUri, OwnedUserId, RoomId, UInt,
    api::client::sync::sync_events::v5::response::{Hero, Room},
    events::{
        AnySyncTimelineEvent, StateEventType, TimelineEventType, room::member::MembershipState,
    },
    serde::Raw,
};

use super::{Ctx, lists::RoomConfig};
use crate::{
    Result,
    service::{
        rooms::{MembershipRecord, Pdu, Viewer, bumps},
        sliding_sync::SentRoom,
    },
};

/// Heroes named for a room without a name.
const MAX_HEROES: usize = 5;

pub struct Built {
    pub room: Room,
    pub sent: SentRoom,
    /// Sent from scratch (the client had nothing of it, or its
    /// membership changed).
    pub fresh: bool,
}

/// The room's part of the response, or none when the connection already
/// has everything of it.
pub fn build(
    ctx: &Ctx<'_>,
    room_id: &RoomId,
    membership: &MembershipRecord,
    config: &RoomConfig,
    is_dm: bool,
    previously: Option<SentRoom>,
) -> Result<Option<Built>> {
    let rooms = &ctx.services.rooms;
    let state_print = config.state_print;
    let joined = membership.is_joined();
    let invited = matches!(membership.membership.as_str(), "invite" | "knock");
    // A room left is sent up to the leave.
    let upto = if joined || invited {
        ctx.upto
    } else {
        membership.count.min(ctx.upto)
    };
    let membership_changed = previously.is_none_or(|p| membership.count > p.upto);
    let fresh = previously.is_none() || (membership_changed && (joined || invited));
    let sent = SentRoom {
        upto,
        timeline_limit: config.timeline_limit,
        required_state: state_print,
    };
    let mut room = Room::new();
    room.initial = fresh.then_some(true);
    room.is_dm = Some(is_dm);

    if invited {
        if !fresh {
            return Ok(None);
        }
        room.invite_state = Some(crate::api::client::sync::room::invite_state(
            ctx.services,
            room_id,
            membership,
        )?);
        room.bump_stamp = UInt::try_from(membership.count).ok();
        return Ok(Some(Built { room, sent, fresh }));
    }

    let (wider, new_state) = match previously {
        Some(p) if !fresh => (
            config.timeline_limit > p.timeline_limit,
            state_print != p.required_state,
        ),
        _ => (false, false),
    };
    let newest = rooms.latest_position(room_id, upto)?.unwrap_or(0);
    // The user's own read receipt starts the room's unread counts over:
    // the room is sent again with them, if nothing else.
    let read_moved = match previously {
        Some(p) if joined => ctx
            .services
            .receipts
            .read_moved(room_id, ctx.user, p.upto, upto)?,
        _ => false,
    };
    if !fresh
        && !wider
        && !new_state
        && !membership_changed
        && !read_moved
        && previously.is_some_and(|p| newest <= p.upto)
    {
        return Ok(None);
    }

    // The timeline: the latest events the user may see, after what the
    // connection has (from the start when sent afresh or widened).
    let after = match previously {
        Some(p) if !fresh && !wider => p.upto,
        _ => 0,
    };
    let limit = usize::try_from(config.timeline_limit).unwrap_or(usize::MAX);
    let (mut events, mut limited) = rooms.latest_events(room_id, after, upto, limit)?;
    // What a member sees since joining needs no history rules; anything
    // older or after leaving does.
    let before_join = |(count, _): &(u64, Pdu)| *count <= membership.count;
    let viewer = if !joined || (fresh && events.iter().any(before_join)) {
        Some(rooms.viewer(ctx.user, room_id)?)
    } else {
        None
    };
    if let Some(viewer) = &viewer {
        let before = events.len();
        events.retain(|(c, _)| viewer.sees(*c));
        limited |= events.len() < before;
    }
    let first = events.first().map_or(upto + 1, |(c, _)| *c);
    let since = ctx.since();
    let mut senders: Vec<OwnedUserId> = Vec::new();
    let mut num_live = 0u64;
    let mut bump = None;
    for (count, pdu) in &events {
        for user in [Some(pdu.sender.as_str()), member_target(pdu)]
            .into_iter()
            .flatten()
        {
            if let Ok(user) = ruma::UserId::parse(user)
                && !senders.contains(&user)
            {
                senders.push(user);
            }
        }
        if ctx.previous.is_some() && *count > since {
            num_live += 1;
        }
        if bumps(pdu) {
            bump = Some(*count);
        }
    }

    // The state asked for: all of it when sent afresh or asked differently,
    // else what changed (in the timeline, or before it when limited).
    let state = if fresh || new_state {
        required_state(ctx, room_id, config, upto, joined, &senders)?
    } else {
        let changed = if limited {
            rooms.state_changes(room_id, after, upto)?
        } else {
            events
                .iter()
                .filter(|(_, pdu)| pdu.is_state())
                .map(|(_, pdu)| pdu.clone())
                .collect()
        };
        let mut state: Vec<Pdu> = changed
            .into_iter()
            .filter(|pdu| wants(config, ctx.user, &senders, pdu))
            .collect();
        if lazy_members(config) {
            for sender in &senders {
                let known = state.iter().any(|p| {
                    p.kind == TimelineEventType::RoomMember
                        && p.state_key.as_deref() == Some(sender.as_str())
                });
                if !known
                    && let Some(pdu) = rooms.state_pdu_at(
                        room_id,
                        &StateEventType::RoomMember,
                        sender.as_str(),
                        upto,
                    )?
                {
                    state.push(pdu);
                }
            }
        }
        state
    };
    let members_changed = fresh
        || state
            .iter()
            .any(|p| p.kind == TimelineEventType::RoomMember)
        || events
            .iter()
            .any(|(_, p)| p.kind == TimelineEventType::RoomMember);

    room.timeline = Vec::with_capacity(events.len());
    for (count, mut pdu) in events {
        rooms.bundle_relations(&mut pdu, ctx.user, upto, &|_| true)?;
        Viewer::annotate_or_joined(viewer.as_ref(), count, &mut pdu);
        room.timeline.push(pdu.to_sync_event(Some(ctx.device)));
    }
    room.required_state = state.iter().map(Pdu::to_sync_state_event).collect();
    room.limited = limited;
    room.prev_batch = Some(first.saturating_sub(1).to_string());
    room.num_live = (ctx.previous.is_some()).then(|| UInt::try_from(num_live).unwrap_or_default());
    room.bump_stamp = if joined {
        match bump {
            Some(bump) => UInt::try_from(bump).ok(),
            None => rooms
                .bump_position(room_id, upto)?
                .and_then(|b| UInt::try_from(b).ok()),
        }
    } else {
        UInt::try_from(membership.count).ok()
    };

    // The name and avatar, from the state being sent when it is all the
    // request asked for.
    let whole = fresh || new_state;
    let content = |kind: StateEventType| -> Result<Option<serde_json::Value>> {
        let asked = config
            .required_state
            .contains(&(kind.to_string(), String::new()));
        if whole && asked {
            let kind = TimelineEventType::from(kind.to_string());
            return Ok(state
                .iter()
                .find(|p| p.kind == kind && p.state_key.as_deref() == Some(""))
                .map(Pdu::content_value));
        }
        rooms.state_json(room_id, &kind, "")
    };
    let name =
        content(StateEventType::RoomName)?.and_then(|c| c["name"].as_str().map(str::to_owned));
    room.name = name.clone().filter(|n| !n.is_empty());
    if fresh
        || state
            .iter()
            .any(|p| p.kind == TimelineEventType::RoomAvatar)
    {
        room.avatar = match content(StateEventType::RoomAvatar)? {
            None => JsOption::Undefined,
            Some(content) => content["url"]
                .as_str()
                .map_or(JsOption::Null, |url| JsOption::Some(OwnedMxcUri::from(url))),
        };
    }
    if members_changed {
        add_members(ctx, room_id, room.name.is_none(), &mut room)?;
    }
    if joined {
        room.unread_notifications = crate::ops::unread::unread_counts(
            ctx.services,
            ctx.user,
            room_id,
            membership,
            upto,
            &ctx.push_rules,
        )?;
    }
    Ok(Some(Built { room, sent, fresh }))
}

/// The event IDs of a room's timeline in a response.
pub fn event_ids(timeline: &[Raw<AnySyncTimelineEvent>]) -> Vec<String> {
    timeline
        .iter()
        .filter_map(|e| e.get_field::<String>("event_id").ok().flatten())
        .collect()
}

fn member_target(pdu: &Pdu) -> Option<&str> {
    (pdu.kind == TimelineEventType::RoomMember)
        .then_some(pdu.state_key.as_deref())
        .flatten()
}

fn lazy_members(config: &RoomConfig) -> bool {
    config
        .required_state
        .iter()
        .any(|(kind, key)| kind == "m.room.member" && key == "$LAZY")
}

/// Whether the request's `required_state` asks for this state event.
fn wants(config: &RoomConfig, user: &ruma::UserId, senders: &[OwnedUserId], pdu: &Pdu) -> bool {
    let kind = pdu.kind.to_string();
    let Some(state_key) = pdu.state_key.as_deref() else {
        return false;
    };
    config.required_state.iter().any(|(k, key)| {
        (k == "*" || *k == kind)
            && match key.as_str() {
                "*" => true,
                "$ME" => state_key == user.as_str(),
                "$LAZY" => {
                    kind == "m.room.member" && senders.iter().any(|s| s.as_str() == state_key)
                }
                key => key == state_key,
            }
    })
}

/// The state the request asks for, as of `at`.
fn required_state(
    ctx: &Ctx<'_>,
    room_id: &RoomId,
    config: &RoomConfig,
    at: u64,
    joined: bool,
    senders: &[OwnedUserId],
) -> Result<Vec<Pdu>> {
    let rooms = &ctx.services.rooms;
    // A wildcard type needs every piece of state to look at.
    if config.required_state.iter().any(|(kind, _)| kind == "*") {
        let all = if joined {
            rooms.current_state(room_id)?
        } else {
            rooms.state_at(room_id, at)?
        };
        return Ok(all
            .into_iter()
            .filter(|pdu| wants(config, ctx.user, senders, pdu))
            .collect());
    }
    // A member's state is the current one, and the state keys named one
    // by one are read in one batch; a room left is seen as it was when
    // they left.
    let as_left = |kind: &StateEventType, key: &str| rooms.state_pdu_at(room_id, kind, key, at);
    let mut out: BTreeMap<(String, String), Pdu> = BTreeMap::new();
    let mut add = |pdu: Pdu| {
        let key = (
            pdu.kind.to_string(),
            pdu.state_key.clone().unwrap_or_default(),
        );
        out.insert(key, pdu);
    };
    let mut named: Vec<(StateEventType, &str)> = Vec::new();
    for (kind, key) in &config.required_state {
        let kind_type = StateEventType::from(kind.as_str());
        match key.as_str() {
            "*" => {
                let of_type = if joined {
                    rooms.current_state_of_type(room_id, &kind_type)?
                } else {
                    rooms
                        .state_at(room_id, at)?
                        .into_iter()
                        .filter(|p| p.kind.to_string() == *kind)
                        .collect()
                };
                of_type.into_iter().for_each(&mut add);
            }
            "$LAZY" if joined => named.extend(
                senders
                    .iter()
                    .map(|sender| (kind_type.clone(), sender.as_str())),
            ),
            "$LAZY" => {
                for sender in senders {
                    if let Some(pdu) = as_left(&kind_type, sender.as_str())? {
                        add(pdu);
                    }
                }
            }
            key => {
                let key = if key == "$ME" { ctx.user.as_str() } else { key };
                if joined {
                    named.push((kind_type, key));
                } else if let Some(pdu) = as_left(&kind_type, key)? {
                    add(pdu);
                }
            }
        }
    }
    if !named.is_empty() {
        rooms
            .state_pdus(room_id, &named)?
            .into_iter()
            .for_each(&mut add);
    }
    Ok(out.into_values().collect())
}

/// The member counts and, for a room without a name, its heroes: who the
/// client names it after (joined first, then invited, then those who left;
/// never the user nor the archive member, which is in every room).
fn add_members(ctx: &Ctx<'_>, room_id: &RoomId, unnamed: bool, room: &mut Room) -> Result<()> {
    let rooms = &ctx.services.rooms;
    let mut members = rooms.members(room_id)?;
    members.retain(|(user, _)| !ctx.services.is_archive_member(user));
    let count = |m: MembershipState| members.iter().filter(|(_, r)| r.membership == m).count();
    room.joined_count = UInt::try_from(count(MembershipState::Join)).ok();
    room.invited_count = UInt::try_from(count(MembershipState::Invite)).ok();
    if !unnamed {
        return Ok(());
    }
    let mut heroes = Vec::new();
    for wanted in [
        MembershipState::Join,
        MembershipState::Invite,
        MembershipState::Leave,
    ] {
        for (user, record) in &members {
            if heroes.len() == MAX_HEROES {
                break;
            }
            if record.membership != wanted || user == ctx.user {
                continue;
            }
            let content = rooms
                .state_json(room_id, &StateEventType::RoomMember, user.as_str())?
                .unwrap_or_default();
            let mut hero = Hero::new(user.clone());
            hero.name = content["displayname"].as_str().map(str::to_owned);
            hero.avatar = content["avatar_url"].as_str().map(OwnedMxcUri::from);
            heroes.push(hero);
        }
    }
    room.heroes = Some(heroes);
    Ok(())
}
