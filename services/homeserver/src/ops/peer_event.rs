//! Checking a peer's event before it is placed: format, event ID,
//! signatures of every server that must have signed it, content hash.

use ruma::{
    CanonicalJsonObject, CanonicalJsonValue, EventId, OwnedEventId, OwnedRoomId, RoomId,
    ServerName,
    canonical_json::redact,
    room_version_rules::RoomVersionRules,
    signatures::{
        Verified, reference_hash, required_server_signatures_to_verify_event, verify_event,
    },
    state_res::check_pdu_format,
};
use serde_json::value::RawValue;

use crate::{
    Error, Result, Services,
    service::rooms::{Received, Relay, implies_room_id, room_id_of_create},
};

/// A peer's event whose signatures and hash were checked.
pub struct VerifiedPdu {
    pub event_id: OwnedEventId,
    pub room_id: OwnedRoomId,
    pub object: CanonicalJsonObject,
}

/// The room an event claims to belong to.
pub fn room_of(raw: &RawValue) -> Result<OwnedRoomId> {
    #[derive(serde::Deserialize)]
    struct RoomOf {
        room_id: OwnedRoomId,
    }
    serde_json::from_str::<RoomOf>(raw.get())
        .map(|r| r.room_id)
        .map_err(|e| Error::bad_json(format!("The event names no valid room: {e}")))
}

/// The event ID of a PDU in room version 4 and later: its reference hash.
pub fn event_id_of(object: &CanonicalJsonObject, rules: &RoomVersionRules) -> Result<OwnedEventId> {
    let hash = reference_hash(object, rules)
        .map_err(|e| Error::bad_json(format!("The event cannot be hashed: {e}")))?;
    EventId::parse(format!("${hash}")).map_err(Error::internal)
}

/// Checks a PDU of `room_id` under `rules`. An event whose content hash
/// does not match keeps only what redaction keeps, as the spec requires.
pub async fn verify_pdu(
    services: &Services,
    raw: &RawValue,
    room_id: &RoomId,
    rules: &RoomVersionRules,
) -> Result<VerifiedPdu> {
    let mut object: CanonicalJsonObject = serde_json::from_str(raw.get())
        .map_err(|e| Error::bad_json(format!("The event is not canonical JSON: {e}")))?;
    // From room version 12 on a room's create event names no room: the
    // room's ID is the event's own.
    let implied = implies_room_id(&object, rules);
    match object.get("room_id") {
        Some(CanonicalJsonValue::String(id)) if id == room_id.as_str() => {}
        None if implied => {}
        _ => {
            return Err(Error::bad_json(format!(
                "The event does not belong to {room_id}."
            )));
        }
    }
    check_pdu_format(&object, &rules.event_format)
        .map_err(|e| Error::bad_json(format!("Malformed event: {e}")))?;
    // Clients' and servers' local fields are not part of the event.
    object.remove("unsigned");
    object.remove("event_id");
    let event_id = event_id_of(&object, rules)?;
    if implied && room_id_of_create(&event_id) != room_id {
        return Err(Error::bad_json(format!(
            "The create event {event_id} is not the one of {room_id}."
        )));
    }
    let signers = required_server_signatures_to_verify_event(&object, &rules.signatures)
        .map_err(|e| Error::bad_json(format!("Event {event_id}: {e}")))?;
    for signer in &signers {
        if *signer != services.server_name() && !services.federation.allows(signer) {
            return Err(Error::forbidden(format!(
                "Event {event_id} comes from {signer}, which is not a federation peer of this server."
            )));
        }
    }
    let keys = services
        .federation
        .public_keys(signers.into_iter().collect())
        .await?;
    match verify_event(&keys, &object, rules) {
        Ok(Verified::All) => {}
        Ok(Verified::Signatures) => {
            tracing::info!(%event_id, "content hash mismatch: keeping the redacted form");
            object = redact(object, &rules.redaction, None)
                .map_err(|e| Error::bad_json(format!("Event {event_id}: {e}")))?;
        }
        Err(e) => {
            return Err(Error::forbidden(format!(
                "Event {event_id} has no valid signature: {e}"
            )));
        }
    }
    Ok(VerifiedPdu {
        event_id,
        room_id: room_id.to_owned(),
        object,
    })
}

/// Takes in one event of a transaction from `origin`, fetching the events
/// it follows from `origin` when this server lacks them. Returns the event
/// ID and what became of it.
pub async fn ingest(
    services: &Services,
    origin: &ServerName,
    raw: &RawValue,
) -> Result<(OwnedEventId, std::result::Result<(), String>)> {
    let room_id = room_of(raw)?;
    let (_, rules) = services.rooms.rules(&room_id)?;
    let pdu = verify_pdu(services, raw, &room_id, &rules).await?;
    let event_id = pdu.event_id.clone();
    let mut outcome = services
        .rooms
        .receive(&event_id, pdu.object.clone(), Relay::Nowhere)
        .await?;
    if let Received::Missing(_) = outcome {
        fetch_missing(services, origin, &room_id, &rules, &event_id).await?;
        outcome = services
            .rooms
            .receive(&event_id, pdu.object, Relay::Nowhere)
            .await?;
    }
    let result = match outcome {
        Received::Accepted(_) | Received::AlreadyKnown => Ok(()),
        // Soft-failed events were accepted as far as the sender is concerned.
        Received::SoftFailed(_) => Ok(()),
        Received::Rejected(why) => Err(why),
        Received::Missing(ids) => Err(format!(
            "this server lacks earlier events: {}",
            ids.iter()
                .map(|id| id.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    };
    Ok((event_id, result))
}

/// Asks `origin` for the events between this server's newest ones and
/// `latest`, and places them oldest first.
async fn fetch_missing(
    services: &Services,
    origin: &ServerName,
    room_id: &RoomId,
    rules: &RoomVersionRules,
    latest: &EventId,
) -> Result<()> {
    use ruma::api::federation::event::get_missing_events::v1;

    let earliest = services
        .rooms
        .meta(room_id)?
        .map(|meta| meta.extremities)
        .unwrap_or_default();
    let mut request = v1::Request::new(room_id.to_owned(), earliest, vec![latest.to_owned()]);
    request.limit = ruma::UInt::from(100u32);
    let response = services.federation.send(origin, request).await?;
    let mut events = Vec::new();
    for raw in &response.events {
        match verify_pdu(services, raw, room_id, rules).await {
            Ok(pdu) => events.push(pdu),
            Err(e) => tracing::info!(%origin, error = %e, "dropped a missing event"),
        }
    }
    events.sort_by_key(|pdu| match pdu.object.get("depth") {
        Some(CanonicalJsonValue::Integer(depth)) => i64::from(*depth),
        _ => 0,
    });
    for pdu in events {
        let outcome = services
            .rooms
            .receive(&pdu.event_id, pdu.object, Relay::Nowhere)
            .await?;
        tracing::debug!(event_id = %pdu.event_id, ?outcome, "placed a missing event");
    }
    Ok(())
}
