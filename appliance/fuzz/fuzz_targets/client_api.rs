//! The client API as a client reaches it: method, path and query decoding,
//! access tokens, JSON bodies and every handler behind them (filters,
//! sends, state, keys, account data...), as `@fuzz:a.test` or signed out.
#![no_main]

use arbitrary::Arbitrary;
use archipel_fuzz::NODE;
use libfuzzer_sys::fuzz_target;

/// Paths of the client API; `{}` is filled from the input, or with the
/// fuzz room and user when the input leaves it empty.
const PATHS: &[&str] = &[
    "/_matrix/client/v3/rooms/{}/send/{}/{}",
    "/_matrix/client/v3/rooms/{}/state/{}/{}",
    "/_matrix/client/v3/rooms/{}/messages?{}",
    "/_matrix/client/v3/rooms/{}/context/{}?{}",
    "/_matrix/client/v1/rooms/{}/relations/{}?{}",
    "/_matrix/client/v1/rooms/{}/threads?{}",
    "/_matrix/client/v3/rooms/{}/redact/{}/{}",
    "/_matrix/client/v3/rooms/{}/members?{}",
    "/_matrix/client/v3/rooms/{}/invite",
    "/_matrix/client/v3/rooms/{}/receipt/{}/{}",
    "/_matrix/client/v3/rooms/{}/typing/{}",
    "/_matrix/client/v3/join/{}",
    "/_matrix/client/v3/createRoom",
    "/_matrix/client/v3/sync?{}",
    "/_matrix/client/v3/user/{}/filter",
    "/_matrix/client/v3/user/{}/filter/{}",
    "/_matrix/client/v3/user/{}/account_data/{}",
    "/_matrix/client/v3/user/{}/rooms/{}/tags/{}",
    "/_matrix/client/v3/pushrules/global/{}/{}",
    "/_matrix/client/v3/keys/upload",
    "/_matrix/client/v3/keys/query",
    "/_matrix/client/v3/keys/claim",
    "/_matrix/client/v3/keys/signatures/upload",
    "/_matrix/client/v3/keys/device_signing/upload",
    "/_matrix/client/v3/room_keys/version",
    "/_matrix/client/v3/sendToDevice/{}/{}",
    "/_matrix/client/v3/profile/{}/{}",
    "/_matrix/client/v3/directory/room/{}",
    "/_matrix/client/v3/publicRooms?{}",
    "/_matrix/client/v3/user_directory/search",
    "/_matrix/client/v3/login",
    "/_matrix/client/v3/register?{}",
    "/_matrix/client/v3/account/password",
    "/_matrix/client/v3/delete_devices",
    "/_matrix/client/v3/devices/{}",
    "/_matrix/client/v3/presence/{}/status",
    "/_matrix/client/v1/media/download/{}/{}?{}",
    "/_matrix/client/v1/media/thumbnail/{}/{}?{}",
    "/_matrix/media/v3/upload?{}",
    "/_matrix/client/versions",
];

const METHODS: &[&str] = &["GET", "POST", "PUT", "DELETE"];

#[derive(Arbitrary, Debug)]
struct Input {
    method: u8,
    /// An index into [`PATHS`], or past it: `raw` is the whole path.
    path: u8,
    signed_in: bool,
    parts: Vec<String>,
    raw: String,
    body: Vec<u8>,
}

fuzz_target!(|input: Input| {
    let node = &*NODE;
    let uri = node.uri(PATHS, input.path, &input.parts, input.raw);
    let method = METHODS[usize::from(input.method) % METHODS.len()];
    let token = input.signed_in.then_some(node.token.as_str());
    let (status, _) = node.call_client(method, &uri, token, &input.body);
    // A handler that panics is caught and answered 500: that is a finding.
    assert_ne!(status, 500, "{method} {uri} answered 500");
});
