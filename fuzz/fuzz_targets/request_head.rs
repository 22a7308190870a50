//! The connection guard's request-head scanner, on attacker bytes: no panic; fed in the
//! chunks the input suggests it agrees with a one-shot scan; a head it calls complete ends
//! with an empty line and fits the limit.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ords_guard::conn::{scan_head, Head, HeadScan};

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
