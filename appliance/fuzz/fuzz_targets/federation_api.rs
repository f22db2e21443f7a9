//! The federation API as a peer reaches it: the `X-Matrix` header, path
//! decoding and, for requests the harness signs as the allowlisted peer
//! `b.test`, every handler's body (transactions with their PDUs and EDUs,
//! joins, invites, queries, backfill, keys).
#![no_main]

use arbitrary::Arbitrary;
use archipel_fuzz::NODE;
use libfuzzer_sys::fuzz_target;

const PATHS: &[&str] = &[
    "/_matrix/federation/v1/send/{}",
    "/_matrix/federation/v1/make_join/{}/{}",
    "/_matrix/federation/v2/send_join/{}/{}",
    "/_matrix/federation/v1/make_leave/{}/{}",
    "/_matrix/federation/v2/send_leave/{}/{}",
    "/_matrix/federation/v2/invite/{}/{}",
    "/_matrix/federation/v1/event/{}",
    "/_matrix/federation/v1/state/{}?{}",
    "/_matrix/federation/v1/state_ids/{}?{}",
    "/_matrix/federation/v1/event_auth/{}/{}",
    "/_matrix/federation/v1/backfill/{}?{}",
    "/_matrix/federation/v1/get_missing_events/{}",
    "/_matrix/federation/v1/query/profile?{}",
    "/_matrix/federation/v1/query/directory?{}",
    "/_matrix/federation/v1/user/devices/{}",
    "/_matrix/federation/v1/user/keys/query",
    "/_matrix/federation/v1/user/keys/claim",
    "/_matrix/federation/v1/media/download/{}",
    "/_matrix/federation/v1/version",
    "/_matrix/key/v2/server",
];

const METHODS: &[&str] = &["GET", "POST", "PUT"];

#[derive(Arbitrary, Debug)]
struct Input {
    method: u8,
    path: u8,
    sign: bool,
    x_matrix: Option<String>,
    parts: Vec<String>,
    raw: String,
    body: Vec<u8>,
}

fuzz_target!(|input: Input| {
    let node = &*NODE;
    let uri = node.uri(PATHS, input.path, &input.parts, input.raw);
    let method = METHODS[usize::from(input.method) % METHODS.len()];
    let (status, _) = node.call_federation(
        method,
        &uri,
        input.x_matrix.as_deref(),
        input.sign,
        &input.body,
    );
    assert_ne!(status, 500, "{method} {uri} answered 500");
});
