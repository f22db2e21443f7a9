//! The per-room sections of a sync response.

use ruma::{
    OwnedUserId, RoomId, UInt,
    api::client::sync::sync_events::v3::{
        Ephemeral, InviteState, InvitedRoom, JoinedRoom, LeftRoom, RoomAccountData, RoomSummary,
        State, StateEvents, Timeline,
    },
    events::{
        AnyStrippedStateEvent, StateEventType, TimelineEventType, room::member::MembershipState,
    },
    serde::Raw,
};
use serde_json::{Value, json};

use super::SyncContext;
use crate::{
    Result, Services,
    ops::filter::event_matches,
    ops::unread::unread_counts,
    service::rooms::{MembershipRecord, Pdu, Viewer, pdu::raw},
};

/// Timeline events per room when the filter does not say.
const DEFAULT_TIMELINE_LIMIT: usize = 10;
const MAX_TIMELINE_LIMIT: usize = 100;

struct TimelineSection {
    timeline: Timeline,
    state: Vec<Pdu>,
    senders: Vec<OwnedUserId>,
}

/// Timeline in `(after, upto]` plus the state the client needs before it.
/// With a `viewer`, only the events it sees (history visibility), and no
/// state unless it was ever joined; without, every event (a joined user's
/// events after their join, each marked as seen by a member).
fn timeline_and_state(
    ctx: &SyncContext<'_>,
    room_id: &RoomId,
    after: u64,
    upto: u64,
    full: bool,
    viewer: Option<&Viewer>,
) -> Result<TimelineSection> {
    let rooms = &ctx.services.rooms;
    let filter = &ctx.filter.room.timeline;
    let limit = filter
        .limit
        .and_then(|l| usize::try_from(l).ok())
        .unwrap_or(DEFAULT_TIMELINE_LIMIT)
        .clamp(1, MAX_TIMELINE_LIMIT);
    let (mut events, mut limited) = rooms.latest_events(room_id, after, upto, limit)?;
    if let Some(viewer) = viewer {
        let before = events.len();
        events.retain(|(c, _)| viewer.sees(*c));
        limited |= events.len() < before;
    }
    let first = events.first().map_or(upto + 1, |(c, _)| *c);

    let state = if viewer.is_some_and(|v| !v.ever_joined()) {
        Vec::new()
    } else if full {
        rooms.state_at(room_id, first - 1)?
    } else if limited {
        rooms.state_changes(room_id, after, first - 1)?
    } else {
        Vec::new()
    };

    let mut timeline = Timeline::new();
    timeline.limited = limited;
    timeline.prev_batch = Some(first.saturating_sub(1).to_string());
    let mut senders = Vec::new();
    for (count, mut pdu) in events {
        if event_matches(filter, &pdu) {
            if !senders.contains(&pdu.sender) {
                senders.push(pdu.sender.clone());
            }
            rooms.bundle_relations(&mut pdu, ctx.user, upto, &|c| {
                viewer.is_none_or(|v| v.sees(c))
            })?;
            Viewer::annotate_or_joined(viewer, count, &mut pdu);
            timeline.events.push(pdu.to_sync_event(Some(ctx.device)));
        }
    }
    Ok(TimelineSection {
        timeline,
        state,
        senders,
    })
}

fn state_section(ctx: &SyncContext<'_>, state: Vec<Pdu>, senders: &[OwnedUserId]) -> State {
    let filter = &ctx.filter.room.state;
    let lazy = !filter.lazy_load_options.is_disabled();
    let events = state
        .iter()
        .filter(|pdu| event_matches(filter, pdu))
        .filter(|pdu| {
            !lazy
                || pdu.kind != TimelineEventType::RoomMember
                || pdu.state_key.as_deref().is_some_and(|k| {
                    k == ctx.user.as_str() || senders.iter().any(|s| s.as_str() == k)
                })
        })
        .map(Pdu::to_sync_state_event)
        .collect();
    let mut section = StateEvents::new();
    section.events = events;
    State::Before(section)
}

pub fn joined(
    ctx: &SyncContext<'_>,
    room_id: &RoomId,
    membership: &MembershipRecord,
    account_data: Vec<(String, Value)>,
) -> Result<Option<JoinedRoom>> {
    let services = ctx.services;
    let newly_joined = membership.count > ctx.since;
    let full = ctx.since == 0 || newly_joined || ctx.full_state;
    // Events after the join are the member's; only earlier ones need the
    // history visibility rules.
    let viewer = if newly_joined {
        Some(services.rooms.viewer(ctx.user, room_id)?)
    } else {
        None
    };
    // A room joined since the token comes with its recent history, as far
    // as the new member may see it, not only what happened since.
    let after = if newly_joined { 0 } else { ctx.since };
    let TimelineSection {
        timeline,
        state,
        senders,
    } = timeline_and_state(ctx, room_id, after, ctx.upto, full, viewer.as_ref())?;

    let mut ephemeral = Ephemeral::new();
    if let Some(typing) = services.typing.changes(room_id, ctx.since, ctx.upto) {
        ephemeral.events.push(raw(
            &json!({ "type": "m.typing", "content": { "user_ids": typing } }),
        ));
    }
    if let Some(receipts) = services
        .receipts
        .changes(room_id, ctx.user, ctx.since, ctx.upto)?
    {
        ephemeral
            .events
            .push(raw(&json!({ "type": "m.receipt", "content": receipts })));
    }
    let mut room_account_data = RoomAccountData::new();
    room_account_data.events = account_data
        .iter()
        .map(|(kind, content)| raw(&json!({ "type": kind, "content": content })))
        .collect();

    if !full
        && timeline.events.is_empty()
        && state.is_empty()
        && ephemeral.is_empty()
        && room_account_data.is_empty()
    {
        return Ok(None);
    }
    let state_changed_members = full
        || state
            .iter()
            .any(|p| p.kind == TimelineEventType::RoomMember)
        || !timeline.events.is_empty();

    let mut room = JoinedRoom::new();
    room.state = state_section(ctx, state, &senders);
    room.timeline = timeline;
    room.ephemeral = ephemeral;
    room.account_data = room_account_data;
    room.unread_notifications = unread_counts(
        ctx.services,
        ctx.user,
        room_id,
        membership,
        ctx.upto,
        &ctx.push_rules,
    )?;
    if state_changed_members {
        room.summary = summary(ctx, room_id)?;
    }
    Ok(Some(room))
}

fn summary(ctx: &SyncContext<'_>, room_id: &RoomId) -> Result<RoomSummary> {
    // The archive member is in every room: counted, it would turn a DM into
    // "Bob and 1 other" in clients that do not read `m.member_hints`.
    let mut members = ctx.services.rooms.members(room_id)?;
    members.retain(|(user, _)| !ctx.services.is_archive_member(user));
    let joined = members
        .iter()
        .filter(|(_, m)| m.membership == MembershipState::Join)
        .count();
    let invited = members
        .iter()
        .filter(|(_, m)| m.membership == MembershipState::Invite)
        .count();
    let mut summary = RoomSummary::new();
    summary.joined_member_count = UInt::try_from(joined as u64).ok();
    summary.invited_member_count = UInt::try_from(invited as u64).ok();
    let has_name = ctx
        .services
        .rooms
        .state_event_id(room_id, &StateEventType::RoomName, "")?
        .is_some()
        || ctx
            .services
            .rooms
            .state_event_id(room_id, &StateEventType::RoomCanonicalAlias, "")?
            .is_some();
    if !has_name {
        summary.heroes = members
            .into_iter()
            .filter(|(u, m)| {
                u != ctx.user
                    && matches!(
                        m.membership,
                        MembershipState::Join | MembershipState::Invite
                    )
            })
            .map(|(u, _)| u)
            .take(5)
            .collect();
    }
    Ok(summary)
}

pub fn invited(
    ctx: &SyncContext<'_>,
    room_id: &RoomId,
    membership: &MembershipRecord,
) -> Result<InvitedRoom> {
    let mut state = InviteState::new();
    state.events = invite_state(ctx.services, room_id, membership)?;
    Ok(InvitedRoom::from(state))
}

/// What an invitee sees of the room before joining: the stripped state the
/// inviting server sent along, or the room's own state at the invite, with
/// the inviter's and the invite's member events. The invite itself is
/// whole, as Synapse gives it: with its ID and time, clients date and sort
/// the invite by when it was sent, not by when they first saw it.
pub fn invite_state(
    services: &Services,
    room_id: &RoomId,
    membership: &MembershipRecord,
) -> Result<Vec<Raw<AnyStrippedStateEvent>>> {
    let rooms = &services.rooms;
    let mut events = Vec::new();
    if let Some(stripped) = &membership.invite_state {
        // An invite from a peer: the room's state is what the peer sent.
        for event in stripped {
            events.push(raw(event));
        }
        if let Some(invite) = rooms.get_pdu(&membership.event_id)? {
            events.push(invite.to_sync_state_event());
        }
        return Ok(events);
    }
    for kind in [
        StateEventType::RoomCreate,
        StateEventType::RoomJoinRules,
        StateEventType::RoomName,
        StateEventType::RoomAvatar,
        StateEventType::RoomCanonicalAlias,
        StateEventType::RoomEncryption,
        StateEventType::RoomTopic,
    ] {
        if let Some(pdu) = rooms.state_pdu_at(room_id, &kind, "", membership.count)? {
            events.push(pdu.to_stripped_state_event());
        }
    }
    if let Some(inviter) = rooms.state_pdu_at(
        room_id,
        &StateEventType::RoomMember,
        membership.sender.as_str(),
        membership.count,
    )? {
        events.push(inviter.to_stripped_state_event());
    }
    if let Some(invite) = rooms.get_pdu(&membership.event_id)? {
        events.push(invite.to_sync_state_event());
    }
    Ok(events)
}

pub fn left(
    ctx: &SyncContext<'_>,
    room_id: &RoomId,
    membership: &MembershipRecord,
) -> Result<LeftRoom> {
    let TimelineSection {
        timeline,
        state,
        senders,
    } = timeline_and_state(
        ctx,
        room_id,
        ctx.since,
        membership.count,
        ctx.since == 0 || ctx.full_state,
        Some(&ctx.services.rooms.viewer(ctx.user, room_id)?),
    )?;
    let mut room = LeftRoom::new();
    room.state = state_section(ctx, state, &senders);
    room.timeline = timeline;
    Ok(room)
}
