//! The connection guard's request-head scanner and checker, on attacker bytes: no panic;
//! fed in the chunks the input suggests the scanner agrees with a one-shot scan; a head it
//! calls complete ends with an empty line and fits the limit; and a head `check` accepts
//! (or the head it rewrites it to) is one httparse, pingora's parser, reads whole, so
//! pingora never refuses or repairs what the guard let through, and sees an upgrade only
//! in a WebSocket handshake.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ords_guard::serve::conn::head::{check, Framing};
use ords_guard::serve::conn::{scan_head, Head, HeadScan};

fuzz_target!(|data: &[u8]| {
    let (Some(&a), Some(&b)) = (data.first(), data.get(1)) else {
        return;
    };
    let max_bytes = 16 + usize::from(a) * 8;
    let max_headers = 1 + usize::from(b % 16);
    let buf = &data[2..];
    let whole = scan_head(buf, max_bytes, max_headers);
    if let Head::Complete { len } = whole {
        assert!(len <= max_bytes && len <= buf.len());
        let head = &buf[..len];
        assert!(
            head.ends_with(b"\n\n") || head.ends_with(b"\n\r\n"),
            "{head:?}"
        );
        if let Ok(checked) = check(head) {
            let handed = checked.rewritten.as_deref().unwrap_or(head);
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut req = httparse::Request::new(&mut headers);
            assert_eq!(
                req.parse(handed),
                Ok(httparse::Status::Complete(handed.len())),
                "{}",
                handed.escape_ascii()
            );
            // pingora treats any `Upgrade` field as an upgrade: only a WebSocket handshake,
            // bodiless, keeps one (SPEC §17).
            let upgrade = req
                .headers
                .iter()
                .any(|h| h.name.eq_ignore_ascii_case("upgrade"));
            assert_eq!(upgrade, checked.websocket.is_some(), "{}", handed.escape_ascii());
            if checked.websocket.is_some() {
                assert_eq!(checked.framing, Framing::Empty);
                assert_eq!((req.method, req.version), (Some("GET"), Some(1)));
            }
            if let Some(rewritten) = &checked.rewritten {
                // The rewrite is itself accepted, as origin-form, framed the same way.
                let again = check(rewritten).expect("a rewritten head passes the check");
                assert_eq!(again.framing, checked.framing);
                assert_eq!(again.websocket, checked.websocket);
                assert!(req.path.is_some_and(|p| p.starts_with('/')));
            }
        }
    }
    // Chunk boundaries: after every byte equal to the first one of the input.
    let mut scan = HeadScan::default();
    let mut step = Head::Incomplete;
    for end in (1..=buf.len()).filter(|&n| n == buf.len() || buf[n - 1] == a) {
        step = scan.advance(&buf[..end], max_bytes, max_headers);
        if step != Head::Incomplete {
            assert_eq!(step, scan_head(&buf[..end], max_bytes, max_headers));
            break;
        }
    }
    if step == Head::Incomplete {
        assert_eq!(whole, Head::Incomplete);
    }
});
