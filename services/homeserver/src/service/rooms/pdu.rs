//! A persisted data unit: one room event as this server stores it.

use ruma::{
    CanonicalJsonObject, CanonicalJsonValue, EventId, MilliSecondsSinceUnixEpoch, OwnedDeviceId,
    OwnedEventId, OwnedRoomId, OwnedTransactionId, OwnedUserId, RoomId, UInt, UserId,
    events::{
        AnyStrippedStateEvent, AnySyncTimelineEvent, AnyTimelineEvent, StateEventType,
        TimelineEventType,
    },
    room_version_rules::RoomVersionRules,
    serde::Raw,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, value::RawValue};

/// An event in the federation format, plus what this server knows about it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Pdu {
    pub event_id: OwnedEventId,
    pub room_id: OwnedRoomId,
    pub sender: OwnedUserId,
    pub origin_server_ts: MilliSecondsSinceUnixEpoch,
    #[serde(rename = "type")]
    pub kind: TimelineEventType,
    pub content: Box<RawValue>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_key: Option<String>,
    pub prev_events: Vec<OwnedEventId>,
    pub depth: UInt,
    pub auth_events: Vec<OwnedEventId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redacts: Option<OwnedEventId>,
    /// `prev_content` and friends for state events; `redacted_because` once redacted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unsigned: Option<Map<String, Value>>,
    pub hashes: Value,
    pub signatures: Value,
    /// The device and transaction that sent it, echoed only to that device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transaction: Option<(OwnedDeviceId, OwnedTransactionId)>,
}

impl Pdu {
    /// Builds the stored form from a signed federation PDU of a room under
    /// `rules`. Since room version 12 a room's `m.room.create` event carries
    /// no `room_id`: the room's ID is the event's, with `!` for `$`.
    pub fn from_signed(
        event_id: OwnedEventId,
        mut object: CanonicalJsonObject,
        rules: &RoomVersionRules,
    ) -> serde_json::Result<Self> {
        if implies_room_id(&object, rules) {
            object.insert(
                "room_id".into(),
                CanonicalJsonValue::String(room_id_of_create(&event_id).to_string()),
            );
        }
        object.insert(
            "event_id".into(),
            CanonicalJsonValue::String(event_id.to_string()),
        );
        // Through text: `content` is kept as raw JSON, which only a text deserializer yields.
        let mut pdu: Self = serde_json::from_str(&serde_json::to_string(&object)?)?;
        // Since room version 11 a redaction names its target in its content only.
        if rules.redaction.content_field_redacts {
            pdu.redacts = None;
        }
        Ok(pdu)
    }

    /// Whether this is a room's create event whose room ID is its own event
    /// ID (room version 12 on): the event itself names no room.
    pub fn room_id_is_implied(&self) -> bool {
        self.kind == TimelineEventType::RoomCreate
            && self.room_id.as_str().get(1..) == self.event_id.as_str().get(1..)
    }

    /// The PDU as federation sends it: no event ID, no local fields.
    pub fn to_federation_json(&self) -> Value {
        let mut value = serde_json::to_value(self).unwrap_or_default();
        if let Value::Object(map) = &mut value {
            map.remove("event_id");
            map.remove("transaction");
            map.remove("unsigned");
            if self.room_id_is_implied() {
                map.remove("room_id");
            }
        }
        value
    }

    /// The PDU as the archive keeps it: the federation form plus its event ID.
    pub fn to_archive_json(&self) -> Value {
        let mut value = self.to_federation_json();
        if let Value::Object(map) = &mut value {
            map.insert("event_id".into(), Value::String(self.event_id.to_string()));
        }
        value
    }

    pub fn content_value(&self) -> Value {
        serde_json::from_str(self.content.get()).unwrap_or(Value::Object(Map::new()))
    }

    /// The relation this event declares (`m.relates_to`), if any.
    pub fn relation(&self) -> Option<(String, OwnedEventId)> {
        #[derive(Deserialize)]
        struct ExtractRelation {
            #[serde(rename = "m.relates_to")]
            relates_to: Option<RelatesTo>,
        }
        #[derive(Deserialize)]
        struct RelatesTo {
            rel_type: Option<String>,
            event_id: Option<OwnedEventId>,
            #[serde(rename = "m.in_reply_to")]
            in_reply_to: Option<InReplyTo>,
        }
        #[derive(Deserialize)]
        struct InReplyTo {
            event_id: OwnedEventId,
        }
        let relates_to = serde_json::from_str::<ExtractRelation>(self.content.get())
            .ok()?
            .relates_to?;
        match (relates_to.rel_type, relates_to.event_id) {
            (Some(rel_type), Some(event_id)) => Some((rel_type, event_id)),
            _ => relates_to
                .in_reply_to
                .map(|r| ("m.in_reply_to".to_owned(), r.event_id)),
        }
    }

    /// The event as a client sees it.
    pub fn to_client_value(
        &self,
        viewer_device: Option<&ruma::DeviceId>,
        with_room_id: bool,
    ) -> Value {
        let mut map = Map::new();
        map.insert("event_id".into(), Value::String(self.event_id.to_string()));
        map.insert("type".into(), Value::String(self.kind.to_string()));
        map.insert("sender".into(), Value::String(self.sender.to_string()));
        map.insert(
            "origin_server_ts".into(),
            serde_json::to_value(self.origin_server_ts).unwrap_or_default(),
        );
        map.insert("content".into(), self.content_value());
        if with_room_id {
            map.insert("room_id".into(), Value::String(self.room_id.to_string()));
        }
        if let Some(state_key) = &self.state_key {
            map.insert("state_key".into(), Value::String(state_key.clone()));
        }
        if let Some(redacts) = self.redacts_id() {
            map.insert("redacts".into(), Value::String(redacts.to_string()));
        }
        let mut unsigned = self.unsigned.clone().unwrap_or_default();
        let now = MilliSecondsSinceUnixEpoch::now().get();
        unsigned.insert(
            "age".into(),
            Value::from(u64::from(now).saturating_sub(self.origin_server_ts.get().into())),
        );
        if let (Some((device, txn)), Some(viewer)) = (&self.transaction, viewer_device)
            && device == viewer
        {
            unsigned.insert("transaction_id".into(), Value::String(txn.to_string()));
        }
        map.insert("unsigned".into(), Value::Object(unsigned));
        Value::Object(map)
    }

    /// Tells the user an event is served to what their membership was when
    /// it was sent (`unsigned.membership`, MSC4115).
    pub fn set_viewer_membership(
        &mut self,
        membership: &ruma::events::room::member::MembershipState,
    ) {
        self.unsigned
            .get_or_insert_default()
            .insert("membership".into(), Value::String(membership.to_string()));
    }

    pub fn to_sync_event(
        &self,
        viewer_device: Option<&ruma::DeviceId>,
    ) -> Raw<AnySyncTimelineEvent> {
        raw(&self.to_client_value(viewer_device, false))
    }

    pub fn to_room_event(&self, viewer_device: Option<&ruma::DeviceId>) -> Raw<AnyTimelineEvent> {
        raw(&self.to_client_value(viewer_device, true))
    }

    pub fn to_state_event<T>(&self) -> Raw<T> {
        raw(&self.to_client_value(None, true))
    }

    pub fn to_sync_state_event<T>(&self) -> Raw<T> {
        raw(&self.to_client_value(None, false))
    }

    pub fn to_stripped_state_event(&self) -> Raw<AnyStrippedStateEvent> {
        raw(&serde_json::json!({
            "type": self.kind.to_string(),
            "state_key": self.state_key,
            "sender": self.sender,
            "content": self.content_value(),
        }))
    }

    /// The event a redaction removes: `content.redacts` (v11) or the top-level field.
    pub fn redacts_id(&self) -> Option<OwnedEventId> {
        if self.kind != TimelineEventType::RoomRedaction {
            return None;
        }
        #[derive(Deserialize)]
        struct Redacts {
            redacts: Option<OwnedEventId>,
        }
        self.redacts.clone().or_else(|| {
            serde_json::from_str::<Redacts>(self.content.get())
                .ok()
                .and_then(|r| r.redacts)
        })
    }

    pub fn state_event_type(&self) -> StateEventType {
        self.kind.to_string().into()
    }

    pub fn is_state(&self) -> bool {
        self.state_key.is_some()
    }
}

pub fn raw<T>(value: &Value) -> Raw<T> {
    Raw::from_json(serde_json::value::to_raw_value(value).unwrap_or_else(|_| empty_object()))
}

fn empty_object() -> Box<RawValue> {
    RawValue::from_string("{}".to_owned()).unwrap_or_default()
}

impl ruma::state_res::Event for Pdu {
    type Id = OwnedEventId;

    fn event_id(&self) -> &Self::Id {
        &self.event_id
    }

    fn room_id(&self) -> Option<&RoomId> {
        (!self.room_id_is_implied()).then_some(&*self.room_id)
    }

    fn sender(&self) -> &UserId {
        &self.sender
    }

    fn origin_server_ts(&self) -> MilliSecondsSinceUnixEpoch {
        self.origin_server_ts
    }

    fn event_type(&self) -> &TimelineEventType {
        &self.kind
    }

    fn content(&self) -> &RawValue {
        &self.content
    }

    fn state_key(&self) -> Option<&str> {
        self.state_key.as_deref()
    }

    fn prev_events(&self) -> Box<dyn DoubleEndedIterator<Item = &Self::Id> + '_> {
        Box::new(self.prev_events.iter())
    }

    fn auth_events(&self) -> Box<dyn DoubleEndedIterator<Item = &Self::Id> + '_> {
        Box::new(self.auth_events.iter())
    }

    fn redacts(&self) -> Option<&Self::Id> {
        self.redacts.as_ref()
    }

    fn rejected(&self) -> bool {
        false
    }
}

/// What a caller asks to send; the timeline fills in the rest.
#[derive(Clone, Debug)]
pub struct PduBuilder {
    pub kind: TimelineEventType,
    pub content: Value,
    pub state_key: Option<String>,
    pub redacts: Option<OwnedEventId>,
    pub transaction: Option<(OwnedDeviceId, OwnedTransactionId)>,
    pub timestamp: Option<MilliSecondsSinceUnixEpoch>,
}

impl PduBuilder {
    pub fn new(kind: impl Into<TimelineEventType>, content: Value) -> Self {
        Self {
            kind: kind.into(),
            content,
            state_key: None,
            redacts: None,
            transaction: None,
            timestamp: None,
        }
    }

    pub fn state(
        kind: impl Into<TimelineEventType>,
        state_key: impl Into<String>,
        content: Value,
    ) -> Self {
        Self {
            state_key: Some(state_key.into()),
            ..Self::new(kind, content)
        }
    }

    /// The `m.room.member` event that sets `target`'s membership.
    pub fn member(target: &ruma::UserId, content: Value) -> Self {
        Self::state(TimelineEventType::RoomMember, target.as_str(), content)
    }
}

/// Whether `object` is a create event that names no room because, under
/// `rules` (room version 12 on), the room's ID is its own.
pub fn implies_room_id(object: &CanonicalJsonObject, rules: &RoomVersionRules) -> bool {
    rules.authorization.room_create_event_id_as_room_id
        && !object.contains_key("room_id")
        && matches!(object.get("type"), Some(CanonicalJsonValue::String(t)) if t == "m.room.create")
}

/// The ID of the room a create event of room version 12 or later makes.
pub fn room_id_of_create(event_id: &EventId) -> OwnedRoomId {
    let hash = event_id.as_str().trim_start_matches('$');
    OwnedRoomId::try_from(format!("!{hash}")).expect("an event ID hash is a valid room ID")
}

/// The create event's ID of a room of version 12 or later.
pub fn create_event_id_of(room_id: &RoomId) -> Option<OwnedEventId> {
    let hash = room_id.as_str().strip_prefix('!')?;
    EventId::parse(format!("${hash}")).ok()
}

/// Looks up the stored event ID by its string form.
pub fn parse_event_id(s: &str) -> Option<OwnedEventId> {
    EventId::parse(s).ok()
}
