//! A WhatsApp chat export as `archipel vault import whatsapp` reads it:
//! the chat's text, and the file (a ZIP archive or the text) it comes in.
#![no_main]

use archipel_vault::import::whatsapp::{Export, parse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    if let Ok(text) = std::str::from_utf8(bytes) {
        let lines = text.lines().count().max(1);
        match parse(text) {
            Ok(messages) => {
                // Each message starts on a later line than the one before.
                for pair in messages.windows(2) {
                    assert!(pair[0].line < pair[1].line);
                }
                assert!(messages.iter().all(|m| (1..=lines).contains(&m.line)));
            }
            Err(e) => assert!((1..=lines).contains(&e.line), "{e}"),
        }
    }
    // The file as handed over: read, unpacked and refused or not, never
    // more than it says.
    let dir = tempfile::tempdir().expect("a folder");
    let file = dir.path().join("WhatsApp Chat with Fuzz.zip");
    std::fs::write(&file, bytes).expect("write");
    let _ = Export::read(&file, &dir.path().join("scratch"));
});
