//! A token endpoint's answer, as egress reads it (SPEC §10, RFC 6749 §5): no panic on any
//! status and body; a token read is one a header can carry, with a lifetime; an error's
//! code is printable and bounded (it goes into logs).
#![no_main]
use libfuzzer_sys::fuzz_target;
use ords_guard::egress::answer::{read, Refused, MAX_TOKEN_BYTES};

fuzz_target!(|data: &[u8]| {
    let (status, body) = match data.split_first() {
        // Statuses around the ones that matter: 2xx, 4xx, 5xx.
        Some((s, rest)) => (100 + u16::from(*s) * 2, rest),
        None => (200, data),
    };
    match read(status, body, 1_800_000_000) {
        Ok(t) => {
            assert!((200..300).contains(&status));
            assert!(!t.access_token.is_empty() && t.access_token.len() <= MAX_TOKEN_BYTES);
            assert!(t.access_token.bytes().all(|b| (0x21..0x7f).contains(&b)));
            assert!(t.lifetime > 0);
        }
        Err(Refused::OAuth { error, .. }) => {
            assert!(error.len() <= 64 && error.bytes().all(|b| (0x20..0x7f).contains(&b)));
            assert!(!error.contains('"') && !error.contains('\\') || error == "<unprintable>");
        }
        Err(Refused::Malformed { .. }) => {}
    }
});
