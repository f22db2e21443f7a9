//! The node's archive member: an account the node owns (`@archive:<server>`
//! by default) that is a member of every room with a local member.
//!
//! It is there for two reasons. Clients share the keys of encrypted rooms
//! with every member's devices, so the archive's device receives them like
//! anyone else's and the vault can keep the plaintext; and everyone sees in
//! the member list that the conversation is archived.
//!
//! It joins a room a local user creates as part of `createRoom`, and a room
//! a local user joins right after that join (the node is then resident and
//! appends the archive's membership itself). In a room that anyone may not
//! join, the local member invites it first. It never leads a DM's name:
//! rooms made here list it as a service member (`m.member_hints`, under the
//! name Element reads), and room summaries leave it out of heroes and
//! counts. Kicked from a public room, it joins again.
//!
//! This module spans the users and rooms services; handlers call it.

use ruma::{
    RoomId, UserId,
    events::{
        StateEventType,
        room::join_rules::{JoinRule, RoomJoinRulesEventContent},
        room::member::MembershipState,
    },
};
use serde_json::json;

use crate::{Error, Result, Services, ops::membership::member_content, service::rooms::PduBuilder};

/// The state event that lists a room's service members. ruma reads it as
/// MSC4171's `m.member_hints`; Element Web reads only this name.
pub const MEMBER_HINTS: &str = "io.element.functional_members";

/// Where the node records a room its archive member could not join (the
/// vault, in the appliance): nothing said there is decrypted, and that
/// must be on record.
pub trait RefusedJoins: Send + Sync {
    fn refused(&self, room_id: &RoomId, by: &UserId, reason: &str);
}

impl Services {
    /// Whether `user` is the node's archive member.
    pub fn is_archive_member(&self, user: &UserId) -> bool {
        self.archive_member.as_deref() == Some(user)
    }
}

/// The state event that marks the archive member as a service member of a
/// room created here, or `None` when the node has none.
pub fn member_hints(services: &Services) -> Option<PduBuilder> {
    let archive = services.archive_member.as_ref()?;
    Some(PduBuilder::state(
        MEMBER_HINTS,
        "",
        json!({ "service_members": [archive] }),
    ))
}

/// Makes the archive member a member of `room_id`, where `local_member` (a
/// local user who just created or joined it) is joined. Nothing to do when
/// it already is, or when the node has no archive member.
pub async fn join(services: &Services, room_id: &RoomId, local_member: &UserId) -> Result<()> {
    let Some(archive) = services.archive_member.as_deref() else {
        return Ok(());
    };
    if local_member == archive {
        return Ok(());
    }
    let current = services.rooms.membership(archive, room_id)?;
    match current.as_ref().map(|m| m.membership.as_str()) {
        Some("join") => return Ok(()),
        Some("ban") => {
            return Err(Error::forbidden(format!(
                "{archive} is banned from {room_id}: this room is not archived."
            )));
        }
        _ => {}
    }
    let profile = services.users.account(archive)?;
    let invited = current.is_some_and(|m| m.membership == MembershipState::Invite);
    if !invited && !anyone_may_join(services, room_id)? {
        services
            .rooms
            .append(
                room_id,
                local_member,
                membership_of(archive, MembershipState::Invite, profile.as_ref()),
            )
            .await?;
    }
    services
        .rooms
        .append(
            room_id,
            archive,
            membership_of(archive, MembershipState::Join, profile.as_ref()),
        )
        .await?;
    tracing::info!(room = %room_id, "archive member joined");
    Ok(())
}

/// [`join`] after a local user joined a room: a failure (the user may not
/// invite, the archive member is banned, a peer refuses) does not undo
/// their join; it is logged and recorded ([`RefusedJoins`]).
pub async fn join_after(services: &Services, room_id: &RoomId, local_member: &UserId) {
    if let Err(e) = join(services, room_id, local_member).await {
        tracing::warn!(room = %room_id, user = %local_member, error = %e,
            "the archive member could not join the room");
        if let Some(record) = services.refused_joins.get() {
            record.refused(room_id, local_member, &e.to_string());
        }
    }
}

/// After the archive member was kicked: it joins again where anyone may
/// (a public room). Elsewhere the gap stays open, on record in the vault,
/// until a local member brings it back (any local user's next join does).
pub async fn rejoin(services: &Services, room_id: &RoomId) {
    let Some(archive) = services.archive_member.as_deref() else {
        return;
    };
    match anyone_may_join(services, room_id) {
        Ok(true) => {}
        Ok(false) => return,
        Err(e) => {
            tracing::warn!(room = %room_id, error = %e, "reading the join rule");
            return;
        }
    }
    // The archive member itself is the local member it joins beside.
    let profile = services.users.account(archive).ok().flatten();
    let joined = services
        .rooms
        .append(
            room_id,
            archive,
            membership_of(archive, MembershipState::Join, profile.as_ref()),
        )
        .await;
    match joined {
        Ok(_) => tracing::info!(room = %room_id, "archive member joined again after a kick"),
        Err(e) => {
            tracing::warn!(room = %room_id, error = %e, "the archive member could not join again")
        }
    }
}

/// The archive member's own membership event.
fn membership_of(
    archive: &UserId,
    membership: MembershipState,
    profile: Option<&crate::service::users::Account>,
) -> PduBuilder {
    PduBuilder::member(archive, member_content(membership, profile, None, false))
}

fn anyone_may_join(services: &Services, room_id: &RoomId) -> Result<bool> {
    let Some(pdu) = services
        .rooms
        .state_pdu(room_id, &StateEventType::RoomJoinRules, "")?
    else {
        return Ok(false);
    };
    let content: RoomJoinRulesEventContent =
        serde_json::from_value(pdu.content_value()).map_err(Error::internal)?;
    Ok(content.join_rule == JoinRule::Public)
}
