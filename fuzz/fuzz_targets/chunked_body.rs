//! The connection guard's chunked-body scanner, on attacker bytes: no panic; fed in the
//! chunks the input suggests it agrees with a one-shot scan; and where it says a body ends,
//! a reader built on httparse's chunk-size parser (as pingora's is) finds the same end, so
//! the guard and pingora never disagree about where the next request starts.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ords_guard::serve::conn::framing::ChunkedScan;

/// Where a chunked body at the front of `b` ends, read as pingora does: httparse's chunk
/// sizes, then the first CRLFCRLF from the last chunk's CRLF on. `None` if it does not
/// (yet) or httparse refuses it.
fn lenient_end(b: &[u8]) -> Option<usize> {
    let mut at = 0;
    loop {
        let (used, size) = match httparse::parse_chunk_size(&b[at..]) {
            Ok(httparse::Status::Complete(v)) => v,
            _ => return None,
        };
        at += used;
        if size == 0 {
            // From the size line's own CRLF.
            let from = at - 2;
            let end = b[from..].windows(4).position(|w| w == b"\r\n\r\n")?;
            return Some(from + end + 4);
        }
        let size = usize::try_from(size).ok()?;
        at = at.checked_add(size)?.checked_add(2)?;
        if at > b.len() {
            return None;
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&split, body)) = data.split_first() else {
        return;
    };
    let mut whole = ChunkedScan::default();
    let one = whole.advance(body);
    let mut parts = ChunkedScan::default();
    let mut taken = 0;
    let mut failed = None;
    for piece in body.split_inclusive(|b| *b == split) {
        match parts.advance(piece) {
            Ok(n) => {
                taken += n;
                if parts.is_done() {
                    break;
                }
            }
            Err(e) => {
                failed = Some(e);
                break;
            }
        }
    }
    match one {
        Ok(n) => {
            assert_eq!(failed, None);
            assert_eq!(taken, n);
            assert_eq!(whole.is_done(), parts.is_done());
            if whole.is_done() {
                assert_eq!(lenient_end(body), Some(n), "{}", body.escape_ascii());
            }
        }
        Err(e) => assert_eq!(failed, Some(e)),
    }
});
