//! Unread counts: what notifies a user in a room since their read receipt.

use crate::{Result, Services, service::rooms::MembershipRecord};
use ruma::{
    RoomId, UInt, UserId, api::client::sync::sync_events::UnreadNotificationsCount, push::Action,
};

/// What notifies the user since their read receipt, or since their own
/// latest event when that is newer (what they sent, they have read up to,
/// as matrix-sdk counts it), by their push rules: the notification and
/// highlight counts. At most 1,000 events are looked at.
pub fn unread_counts(
    services: &Services,
    user: &UserId,
    room_id: &RoomId,
    membership: &MembershipRecord,
    upto: u64,
    push_rules: &crate::push::RulesetOnce,
) -> Result<UnreadNotificationsCount> {
    let rooms = &services.rooms;
    let read_upto = read_position(services, user, room_id, membership.count)?;
    let mut counts = UnreadNotificationsCount::new();
    counts.notification_count = Some(UInt::MIN);
    counts.highlight_count = Some(UInt::MIN);
    if rooms
        .latest_position(room_id, upto)?
        .is_none_or(|newest| newest <= read_upto)
    {
        // Nothing since the receipt: nothing to read.
        return Ok(counts);
    }
    // Counted before from the same read position: only what came since.
    let kept = services
        .receipts
        .counted(user, room_id)
        .filter(|k| k.read_upto == read_upto && k.counted_upto <= upto);
    let from = kept.map_or(read_upto, |k| k.counted_upto);
    let mut unread = Vec::new();
    let mut own = false;
    rooms.visit_newest(room_id, from, upto, 1000, |_, pdu| {
        if pdu.sender == user {
            own = true;
            return false;
        }
        unread.push(pdu.clone());
        true
    })?;
    // An own event among the new ones: only what follows it counts.
    let (mut notifications, mut highlights) = match kept {
        Some(k) if !own => (k.notifications, k.highlights),
        _ => (0, 0),
    };
    if !unread.is_empty() {
        let ruleset = push_rules.get(services, user)?;
        let context = crate::push::room_context(services, user, room_id)?;
        for pdu in &unread {
            let actions = crate::push::actions_in(ruleset, &context, pdu);
            if actions.iter().any(Action::should_notify) {
                notifications += 1;
            }
            if actions.iter().any(Action::is_highlight) {
                highlights += 1;
            }
        }
    }
    services.receipts.keep_counted(
        user,
        room_id,
        crate::service::receipts::Counted {
            read_upto,
            counted_upto: upto,
            notifications,
            highlights,
        },
    );
    counts.notification_count = UInt::try_from(notifications).ok();
    counts.highlight_count = UInt::try_from(highlights).ok();
    Ok(counts)
}

/// The position the user has read the room up to by their receipts (the
/// unthreaded or main-thread ones), or `joined_at` when it is later.
pub fn read_position(
    services: &Services,
    user: &UserId,
    room_id: &RoomId,
    joined_at: u64,
) -> Result<u64> {
    let mut read_upto = joined_at;
    for event_id in services.receipts.read_up_to(room_id, user)? {
        if let Some((_, count)) = services.rooms.position(&event_id)? {
            read_upto = read_upto.max(count);
        }
    }
    Ok(read_upto)
}
