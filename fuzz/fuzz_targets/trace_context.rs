//! W3C trace context from a client (SPEC §15): any `traceparent`/`tracestate` bytes are
//! continued or replaced, never a panic, and what goes upstream is always a well-formed
//! version-00 `traceparent` — keeping the client's trace id exactly when it was valid.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ords_guard::traces::{export::Counts, Settings, Traces};
use std::sync::OnceLock;

fn traces() -> &'static Traces {
    static T: OnceLock<Traces> = OnceLock::new();
    T.get_or_init(|| {
        let t = Traces::new(Counts::default());
        // Nothing listens there: recorded spans are dropped, which is fine here.
        t.sync(Some(&Settings {
            endpoint: "http://127.0.0.1:9/v1/traces".into(),
            sample_ratio: 0.0,
            service_name: "fuzz".into(),
            headers: Vec::new(),
        }));
        t
    })
}

fn well_formed(tp: &str) -> bool {
    let p: Vec<&str> = tp.split('-').collect();
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    p.len() == 4 && p[0] == "00" && hex(p[1], 32) && hex(p[2], 16) && hex(p[3], 2) && p[1].bytes().any(|b| b != b'0') && p[2].bytes().any(|b| b != b'0')
}

fuzz_target!(|data: &[u8]| {
    let (parent, state) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let mut headers = http::HeaderMap::new();
    if let Ok(v) = http::HeaderValue::from_bytes(parent) {
        headers.insert("traceparent", v);
    }
    if let Ok(v) = http::HeaderValue::from_bytes(state) {
        headers.insert("tracestate", v);
    }
    let Some(mut trace) = traces().server(&headers) else {
        panic!("tracing is set");
    };
    let sent = trace.upstream("backend", 80);
    assert!(well_formed(&sent.traceparent), "{}", sent.traceparent);
    let incoming = std::str::from_utf8(parent).unwrap_or("");
    let continued = sent.keep_tracestate;
    if continued {
        // The caller's trace, lower-case as it must have been to be valid.
        assert_eq!(incoming.get(3..35), sent.traceparent.get(3..35), "{incoming}");
    }
});
