//! The HTTP/2 abuse watch (`serve::conn::h2watch`) on attacker bytes, both ways: no panic,
//! and the same verdict whether the bytes come whole or in the chunks the input suggests
//! (a frame header or a kept payload prefix split across reads is read the same).
#![no_main]
use libfuzzer_sys::fuzz_target;
use ords_guard::serve::conn::h2watch::{H2Watch, Signal};
use std::sync::Arc;

fuzz_target!(|data: &[u8]| {
    let Some((&cut, rest)) = data.split_first() else {
        return;
    };
    // The first half as the client's bytes (after the preface), the rest as the server's.
    let (from_client, to_client) = rest.split_at(rest.len() / 2);
    let verdict = |chunked: bool| {
        let signal = Arc::new(Signal::default());
        let mut watch = H2Watch::new(signal.clone(), 16 + usize::from(cut) * 64);
        watch.read(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
        let step = if chunked { usize::from(cut % 13) + 1 } else { usize::MAX };
        for chunk in from_client.chunks(step.min(from_client.len().max(1))) {
            watch.read(chunk);
        }
        for chunk in to_client.chunks(step.min(to_client.len().max(1))) {
            watch.wrote(chunk);
        }
        signal.get()
    };
    assert_eq!(verdict(false), verdict(true));
});
