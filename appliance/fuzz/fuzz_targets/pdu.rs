//! PDUs as an allowlisted peer sends them in a transaction: format checks,
//! content hashes and signatures, the auth rules against the event's auth
//! events and the room's state, prev_events the node must fetch, and the
//! EDUs beside them. `@peer:b.test` is a member of the room, so well-formed
//! events get past the membership check to the rules behind it.
#![no_main]

use std::sync::atomic::{AtomicU64, Ordering};

use arbitrary::Arbitrary;
use archipel_fuzz::NODE;
use libfuzzer_sys::fuzz_target;
use ruma::{CanonicalJsonObject, CanonicalJsonValue};
use serde_json::json;

const TYPES: &[&str] = &[
    "m.room.message",
    "m.room.member",
    "m.room.power_levels",
    "m.room.join_rules",
    "m.room.create",
    "m.room.redaction",
    "m.room.history_visibility",
    "m.room.name",
    "m.room.encrypted",
    "m.room.third_party_invite",
    "m.reaction",
];

#[derive(Arbitrary, Debug)]
struct Input {
    kind: u8,
    /// A type of the input's own when `kind` is past [`TYPES`].
    other_kind: String,
    state_key: Option<String>,
    /// JSON; `{}` if it is not.
    content: Vec<u8>,
    /// Indices into the known events, or fuzzed IDs.
    prev: Vec<Reference>,
    auth: Vec<Reference>,
    depth: u64,
    /// Fields merged over the event last (JSON object), before signing.
    overrides: Vec<u8>,
    sign: bool,
    /// Fields merged over the signed event (breaking hash or signature).
    after_signing: Vec<u8>,
    /// EDUs beside the PDU (JSON array).
    edus: Vec<u8>,
}

#[derive(Arbitrary, Debug)]
enum Reference {
    Known(u8),
    Other(String),
}

static TRANSACTION: AtomicU64 = AtomicU64::new(0);

fn object(bytes: &[u8]) -> CanonicalJsonObject {
    serde_json::from_slice(bytes).unwrap_or_default()
}

fn ids(node: &archipel_fuzz::Node, references: &[Reference]) -> Vec<String> {
    references
        .iter()
        .map(|reference| match reference {
            Reference::Known(i) => {
                node.known_events[usize::from(*i) % node.known_events.len()].clone()
            }
            Reference::Other(id) => id.clone(),
        })
        .collect()
}

fuzz_target!(|input: Input| {
    let node = &*NODE;
    let kind = TYPES
        .get(usize::from(input.kind))
        .map_or(input.other_kind.as_str(), |kind| kind);
    let prev = match ids(node, &input.prev) {
        prev if prev.is_empty() => vec![node.known_events.last().expect("the join").clone()],
        prev => prev,
    };
    let mut event = json!({
        "type": kind,
        "room_id": node.room,
        "sender": "@peer:b.test",
        "origin_server_ts": 1_800_000_000_000_u64,
        "depth": input.depth,
        "prev_events": prev,
        "auth_events": ids(node, &input.auth),
        "content": serde_json::from_slice::<serde_json::Value>(&input.content)
            .unwrap_or_else(|_| json!({})),
    });
    if let Some(state_key) = &input.state_key {
        event["state_key"] = json!(state_key);
    }
    let Ok(mut event) = serde_json::from_value::<CanonicalJsonObject>(event) else {
        return;
    };
    event.extend(object(&input.overrides));
    if input.sign {
        node.sign_pdu(&mut event);
    }
    event.extend(object(&input.after_signing));
    let edus: Vec<CanonicalJsonValue> = serde_json::from_slice(&input.edus).unwrap_or_default();
    let transaction = json!({
        "origin": "b.test",
        "origin_server_ts": 1_800_000_000_000_u64,
        "pdus": [event],
        "edus": edus,
    });
    let body = serde_json::to_vec(&transaction).expect("JSON");
    let id = TRANSACTION.fetch_add(1, Ordering::Relaxed);
    let uri = format!("/_matrix/federation/v1/send/fuzz{id}");
    let (status, answer) = node.call_federation("PUT", &uri, None, true, &body);
    assert_ne!(status, 500, "{answer}");
});
