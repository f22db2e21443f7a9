//! The admin socket's protocol as a running node reads it: one request
//! line, bounded in size, parsed into a command. The audit journal's line
//! for a command must not depend on any secret or free text it carries
//! (passwords, password hashes, tokens, reasons, notes): changing those
//! must leave the line as it was.
#![no_main]

use std::sync::LazyLock;

use archipel::admin::{Request, read_request};
use libfuzzer_sys::fuzz_target;

/// What the journal must never show.
const WITHHELD: &[&str] = &[
    "password",
    "password_hash",
    "setup_token",
    "token",
    "reason",
    "note",
];

static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a runtime")
});

fuzz_target!(|line: &[u8]| {
    let Ok(request) = RUNTIME.block_on(read_request(line)) else {
        return;
    };
    let described = request.describe();
    let mut changed = serde_json::to_value(&request).expect("a request serializes");
    replace_withheld(&mut changed);
    let changed: Request =
        serde_json::from_value(changed).expect("a request with other secrets still parses");
    assert_eq!(
        described,
        changed.describe(),
        "the audit line shows a secret or free text"
    );
});

/// Gives every withheld string field another value.
fn replace_withheld(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(object) => {
            for (key, value) in object.iter_mut() {
                match value {
                    serde_json::Value::String(text) if WITHHELD.contains(&key.as_str()) => {
                        text.push_str("-changed");
                    }
                    _ => replace_withheld(value),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(replace_withheld),
        _ => {}
    }
}
