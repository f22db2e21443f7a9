//! Which events and state a user may see: one event, a room's state, and the
//! events around one.

use crate::{Error, Result, Services, service::rooms::Pdu};

/// The room's state as `user` may see it: current while joined or
/// previewing a world-readable room, as it was when they left if they were
/// ever joined, none otherwise.
pub fn state_for_viewer(
    services: &Services,
    user: &ruma::UserId,
    room_id: &ruma::RoomId,
) -> Result<Vec<Pdu>> {
    match state_position(services, user, room_id)? {
        None => services.rooms.current_state(room_id),
        Some(at) => services.rooms.state_at(room_id, at),
    }
}

/// `None` for the current state, or the position whose state `user` sees.
pub fn state_position(
    services: &Services,
    user: &ruma::UserId,
    room_id: &ruma::RoomId,
) -> Result<Option<u64>> {
    let viewer = services.rooms.viewer(user, room_id)?;
    if viewer.is_joined() || viewer.is_peeking() {
        Ok(None)
    } else if viewer.ever_joined() {
        Ok(Some(viewer.upto()))
    } else {
        Err(Error::forbidden("You are not in this room."))
    }
}

/// An event the user may see, with its position, or M_NOT_FOUND.
pub fn visible_event(
    services: &Services,
    user: &ruma::UserId,
    room_id: &ruma::RoomId,
    event_id: &ruma::EventId,
) -> Result<(u64, Pdu)> {
    let count = services.rooms.visible_position(user, room_id, event_id)?;
    let pdu = services
        .rooms
        .get_pdu(event_id)?
        .ok_or_else(|| Error::not_found("Event not found."))?;
    Ok((count, pdu))
}

/// The events around the one at `count`: up to `n.0` before it (newest
/// first) and `n.1` after it up to `upto`, of those `keep` lets through.
pub fn around(
    services: &Services,
    room_id: &ruma::RoomId,
    count: u64,
    upto: u64,
    n: (usize, usize),
    keep: impl Fn(u64, &Pdu) -> bool,
) -> Result<(Positioned, Positioned)> {
    let rooms = &services.rooms;
    let mut before = rooms.events_before(room_id, count.saturating_sub(1), n.0)?;
    before.retain(|(c, p)| keep(*c, p));
    let mut after = rooms.events_after(room_id, count, upto, n.1)?;
    after.retain(|(c, p)| keep(*c, p));
    Ok((before, after))
}

/// Events with their stream positions.
pub type Positioned = Vec<(u64, Pdu)>;
