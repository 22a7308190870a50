//! SPEC §17's HTTP/2 abuse kinds, read off the connection's frames both ways.
//!
//! The `h2` crate bounds much of this itself, but tells its caller only "ENHANCE_YOUR_CALM"
//! (the GOAWAY's debug data, which names the bound, does not reach the accept call), and
//! its counts are not SPEC's (resets of streams not yet accepted, not resets in 10 s). So
//! the guard's connection reads the frame headers that pass (payloads are skipped, but for
//! the few bytes a decision needs) and keeps SPEC's bounds here:
//!
//! - `rapid_reset`: more than 100 RST_STREAM frames from the client within 10 s;
//! - `invalid_frames`: more than 100 streams the server resets with an error the client
//!   provoked (PROTOCOL_ERROR, STREAM_CLOSED, ...) within 10 s;
//! - `continuation_flood`: a header block continued by CONTINUATION frames that grows over
//!   `max_header_bytes` or takes more than 6 of them;
//! - `hpack`: a dynamic-table size update above the 4,096 bytes announced.
//!
//! A bound crossed trips the connection's [`Signal`]: the accept loop answers with GOAWAY
//! and closes. A GOAWAY `h2` sends for its own bounds is read on its way out and named by
//! its debug data, so every kind is counted whoever noticed it first.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU8, Ordering};
use tokio::sync::Notify;
use tokio::time::{Duration, Instant};

/// SPEC §17's window and count for resets and stream errors.
pub const WINDOW: Duration = Duration::from_secs(10);
pub const MAX_IN_WINDOW: usize = 100;
/// CONTINUATION frames one header block may take (SPEC §17; `h2` refuses a sixth
/// without END_HEADERS).
pub const MAX_CONTINUATIONS: u32 = 6;
/// The HPACK dynamic table size the server announces (h2's default; never changed).
pub const HEADER_TABLE_SIZE: u64 = 4096;

const PREFACE_LEN: usize = 24;
const HEAD_LEN: usize = 9;

const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const GOAWAY: u8 = 0x7;
const CONTINUATION: u8 = 0x9;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;

/// Error codes (RFC 9113 §7).
const PROTOCOL_ERROR: u32 = 0x1;
const COMPRESSION_ERROR: u32 = 0x9;
const ENHANCE_YOUR_CALM: u32 = 0xb;

/// A kind of abuse, as `ords_guard_h2_abuse_total{kind}` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Abuse {
    RapidReset,
    ContinuationFlood,
    Hpack,
    InvalidFrames,
}

impl Abuse {
    pub fn kind(self) -> &'static str {
        match self {
            Abuse::RapidReset => "rapid_reset",
            Abuse::ContinuationFlood => "continuation_flood",
            Abuse::Hpack => "hpack",
            Abuse::InvalidFrames => "invalid_frames",
        }
    }

    /// The GOAWAY's error code.
    pub fn reason(self) -> h2::Reason {
        match self {
            Abuse::Hpack => h2::Reason::COMPRESSION_ERROR,
            _ => h2::Reason::ENHANCE_YOUR_CALM,
        }
    }

    fn code(self) -> u8 {
        self as u8 + 1
    }

    fn from_code(code: u8) -> Option<Abuse> {
        [
            Abuse::RapidReset,
            Abuse::ContinuationFlood,
            Abuse::Hpack,
            Abuse::InvalidFrames,
        ]
        .into_iter()
        .find(|a| a.code() == code)
    }
}

/// The first abuse seen on a connection, shared by the connection's reads and writes and
/// the loop that accepts its streams (woken by `notify`).
#[derive(Debug, Default)]
pub struct Signal {
    kind: AtomicU8,
    pub notify: Notify,
}

impl Signal {
    /// Note `abuse`; true when it is the connection's first.
    pub fn trip(&self, abuse: Abuse) -> bool {
        let first = self
            .kind
            .compare_exchange(0, abuse.code(), Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        if first {
            self.notify.notify_one();
        }
        first
    }

    pub fn get(&self) -> Option<Abuse> {
        Abuse::from_code(self.kind.load(Ordering::Acquire))
    }
}

/// A frame's header, and the first bytes of its payload the watch asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FrameHead {
    len: usize,
    kind: u8,
    flags: u8,
}

/// Reads the frame headers of one direction of a connection as its bytes pass, in any
/// chunks, keeping the first `want(kind)` bytes of each payload.
#[derive(Debug, Default)]
struct Frames {
    /// Bytes still to pass over: the preface, or the rest of a payload.
    skip: usize,
    head: [u8; HEAD_LEN],
    have: usize,
    /// A frame whose payload's first `want` bytes are being kept in `kept`.
    keeping: Option<(FrameHead, usize)>,
    kept: Vec<u8>,
}

impl Frames {
    fn feed(
        &mut self,
        mut bytes: &[u8],
        want: impl Fn(u8) -> usize,
        mut frame: impl FnMut(FrameHead, &[u8]),
    ) {
        while !bytes.is_empty() {
            if self.skip > 0 {
                let n = self.skip.min(bytes.len());
                self.skip -= n;
                bytes = &bytes[n..];
                continue;
            }
            if let Some((head, want)) = self.keeping {
                let n = (want - self.kept.len()).min(bytes.len());
                self.kept.extend_from_slice(&bytes[..n]);
                bytes = &bytes[n..];
                if self.kept.len() == want {
                    frame(head, &self.kept);
                    self.kept.clear();
                    self.keeping = None;
                    self.skip = head.len - want;
                }
                continue;
            }
            let n = (HEAD_LEN - self.have).min(bytes.len());
            self.head[self.have..self.have + n].copy_from_slice(&bytes[..n]);
            self.have += n;
            bytes = &bytes[n..];
            if self.have < HEAD_LEN {
                continue;
            }
            self.have = 0;
            let h = &self.head;
            let head = FrameHead {
                len: usize::from(h[0]) << 16 | usize::from(h[1]) << 8 | usize::from(h[2]),
                kind: h[3],
                flags: h[4],
            };
            let want = want(head.kind).min(head.len);
            if want == 0 {
                frame(head, &[]);
                self.skip = head.len;
            } else {
                self.keeping = Some((head, want));
            }
        }
    }
}

/// A sliding count of events within [`WINDOW`].
#[derive(Debug, Default)]
struct Window(VecDeque<Instant>);

impl Window {
    /// Count one at `now`; true when that makes more than [`MAX_IN_WINDOW`].
    fn over(&mut self, now: Instant) -> bool {
        while self
            .0
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= WINDOW)
        {
            self.0.pop_front();
        }
        self.0.push_back(now);
        self.0.len() > MAX_IN_WINDOW
    }
}

/// A header block being continued: its CONTINUATION frames and bytes so far.
#[derive(Debug, Clone, Copy)]
struct Block {
    continuations: u32,
    bytes: usize,
}

/// One HTTP/2 connection's watch: what the client sent, what the server answered.
#[derive(Debug)]
pub struct H2Watch {
    signal: std::sync::Arc<Signal>,
    max_header_bytes: usize,
    from_client: Frames,
    to_client: Frames,
    resets: Window,
    stream_errors: Window,
    block: Option<Block>,
    /// The client sent a dynamic-table size update over what was announced (h2 answers it
    /// with a GOAWAY PROTOCOL_ERROR that does not say why).
    oversized_table: bool,
}

impl H2Watch {
    /// For a connection whose first bytes from the client are the preface.
    pub fn new(signal: std::sync::Arc<Signal>, max_header_bytes: usize) -> H2Watch {
        H2Watch {
            signal,
            max_header_bytes,
            from_client: Frames {
                skip: PREFACE_LEN,
                ..Frames::default()
            },
            to_client: Frames::default(),
            resets: Window::default(),
            stream_errors: Window::default(),
            block: None,
            oversized_table: false,
        }
    }

    /// Whether the connection has been found abusive (its reads then stop).
    pub fn tripped(&self) -> bool {
        self.signal.get().is_some()
    }

    /// Bytes the client sent, as they are handed to h2.
    pub fn read(&mut self, bytes: &[u8]) {
        let mut found = None;
        let (block, resets, oversized) =
            (&mut self.block, &mut self.resets, &mut self.oversized_table);
        let max_header_bytes = self.max_header_bytes;
        self.from_client.feed(
            bytes,
            // A HEADERS frame's padding and priority fields, then a size update's bytes.
            |kind| if kind == HEADERS { 1 + 5 + 6 } else { 0 },
            |head, kept| match head.kind {
                HEADERS => {
                    // Unless the block goes on in a CONTINUATION right where kept ends.
                    let whole = head.len > kept.len() || head.flags & END_HEADERS != 0;
                    if oversized_table_update(head.flags, kept, whole) {
                        *oversized = true;
                        found = Some(Abuse::Hpack);
                    }
                    *block = (head.flags & END_HEADERS == 0).then_some(Block {
                        continuations: 0,
                        bytes: head.len,
                    });
                }
                CONTINUATION => {
                    if let Some(b) = block.as_mut() {
                        b.continuations += 1;
                        b.bytes += head.len;
                        if b.continuations > MAX_CONTINUATIONS || b.bytes > max_header_bytes {
                            found = Some(Abuse::ContinuationFlood);
                        }
                    }
                    if head.flags & END_HEADERS != 0 {
                        *block = None;
                    }
                }
                RST_STREAM if resets.over(Instant::now()) => found = Some(Abuse::RapidReset),
                _ => {}
            },
        );
        if let Some(abuse) = found {
            self.signal.trip(abuse);
        }
    }

    /// Bytes written to the client (h2's frames).
    pub fn wrote(&mut self, bytes: &[u8]) {
        let mut found = None;
        let (errors, oversized) = (&mut self.stream_errors, self.oversized_table);
        self.to_client.feed(
            bytes,
            |kind| match kind {
                RST_STREAM => 4,
                // Last stream, error code, and the debug data's first bytes.
                GOAWAY => 8 + 32,
                _ => 0,
            },
            |head, kept| match head.kind {
                RST_STREAM if kept.len() == 4 => {
                    let code = u32::from_be_bytes([kept[0], kept[1], kept[2], kept[3]]);
                    if provoked(code) && errors.over(Instant::now()) {
                        found = Some(Abuse::InvalidFrames);
                    }
                }
                GOAWAY if kept.len() >= 8 => {
                    let code = u32::from_be_bytes([kept[4], kept[5], kept[6], kept[7]]);
                    if let Some(abuse) = goaway_kind(code, &kept[8..], oversized) {
                        found = Some(abuse);
                    }
                }
                _ => {}
            },
        );
        if let Some(abuse) = found {
            self.signal.trip(abuse);
        }
    }
}

/// Stream errors a client causes (RFC 9113 §7); not NO_ERROR, CANCEL or INTERNAL_ERROR,
/// which the server's own state or its upstream explain.
fn provoked(code: u32) -> bool {
    matches!(code, 0x1 | 0x3 | 0x5 | 0x6 | 0x7 | 0x9 | 0xb)
}

/// The kind of a GOAWAY h2 sent for one of its own bounds, by its debug data.
fn goaway_kind(code: u32, debug: &[u8], oversized_table: bool) -> Option<Abuse> {
    match code {
        ENHANCE_YOUR_CALM => match debug {
            b"too_many_continuations" => Some(Abuse::ContinuationFlood),
            b"header_list_way_too_large" => Some(Abuse::Hpack),
            b"too_many_resets" => Some(Abuse::RapidReset),
            b"too_many_internal_resets" | b"too_many_data_frames" => Some(Abuse::InvalidFrames),
            _ => None,
        },
        COMPRESSION_ERROR => Some(Abuse::Hpack),
        PROTOCOL_ERROR if oversized_table => Some(Abuse::Hpack),
        _ => None,
    }
}

/// Whether a HEADERS frame's header block opens with a dynamic-table size update (RFC 7541
/// §6.3: `001` and a 5-bit-prefix integer) above [`HEADER_TABLE_SIZE`]. `kept` is the
/// payload's first bytes, `whole` whether an integer that does not end within them cannot
/// go on elsewhere (the frame holds more, or ends the block): then it is far over any
/// table size, or malformed; one cut by the frame's end, the block going on in a
/// CONTINUATION, is left to h2.
fn oversized_table_update(flags: u8, kept: &[u8], whole: bool) -> bool {
    let mut at = 0;
    if flags & PADDED != 0 {
        at += 1;
    }
    if flags & PRIORITY != 0 {
        at += 5;
    }
    let Some(fragment) = kept.get(at..) else {
        return false;
    };
    match fragment.first() {
        Some(b) if b & 0xe0 == 0x20 => match hpack_integer(fragment, 5) {
            Some(n) => n > HEADER_TABLE_SIZE,
            None => whole,
        },
        _ => false,
    }
}

/// An HPACK integer (RFC 7541 §5.1) with an `prefix`-bit prefix at the start of `bytes`;
/// `None` when it does not end within them (it is then over any table size kept here).
fn hpack_integer(bytes: &[u8], prefix: u32) -> Option<u64> {
    let max = (1u64 << prefix) - 1;
    let first = u64::from(*bytes.first()?) & max;
    if first < max {
        return Some(first);
    }
    let mut n = max;
    for (i, b) in bytes[1..].iter().enumerate() {
        n = n.checked_add(u64::from(b & 0x7f) << (7 * i as u32).min(56))?;
        if b & 0x80 == 0 {
            return Some(n);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = payload.len() as u32;
        let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    fn watch() -> (H2Watch, Arc<Signal>) {
        let signal = Arc::new(Signal::default());
        let mut w = H2Watch::new(signal.clone(), 1000);
        w.read(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
        (w, signal)
    }

    /// Fed one byte at a time and all at once, the same frames are seen.
    fn feed_both_ways(bytes: &[u8]) -> (Option<Abuse>, Option<Abuse>) {
        let (mut whole, a) = watch();
        whole.read(bytes);
        let (mut bytewise, b) = watch();
        for byte in bytes {
            bytewise.read(std::slice::from_ref(byte));
        }
        (a.get(), b.get())
    }

    /// The fuzz target's property on a fixed pseudo-random sample: frames built from random
    /// kinds, flags and lengths, read whole and in random chunks, give one verdict.
    #[test]
    fn chunking_never_changes_the_verdict() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..2000 {
            let mut bytes = Vec::new();
            for _ in 0..(next() % 40) {
                let kinds = [HEADERS, CONTINUATION, RST_STREAM, GOAWAY, 0, 4, 8];
                let kind = kinds[(next() % kinds.len() as u64) as usize];
                let len = (next() % 48) as usize;
                let payload: Vec<u8> = (0..len).map(|_| next() as u8).collect();
                bytes.extend(frame(kind, next() as u8, 1, &payload));
            }
            let step = (next() % 11 + 1) as usize;
            let (client, server) = bytes.split_at(bytes.len() / 2);
            let verdict = |step: usize| {
                let (mut w, signal) = watch();
                client.chunks(step).for_each(|c| w.read(c));
                server.chunks(step).for_each(|c| w.wrote(c));
                signal.get()
            };
            assert_eq!(verdict(usize::MAX), verdict(step), "{bytes:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn resets_over_100_in_10_s_are_rapid_reset() {
        let (mut w, signal) = watch();
        let rst = frame(RST_STREAM, 0, 1, &8u32.to_be_bytes());
        for _ in 0..MAX_IN_WINDOW {
            w.read(&rst);
        }
        assert_eq!(signal.get(), None, "100 are allowed");
        // Ten seconds on, the old ones no longer count.
        tokio::time::advance(WINDOW).await;
        for _ in 0..MAX_IN_WINDOW {
            w.read(&rst);
        }
        assert_eq!(signal.get(), None);
        w.read(&rst);
        assert_eq!(signal.get(), Some(Abuse::RapidReset));
        assert!(w.tripped());
    }

    #[tokio::test(start_paused = true)]
    async fn provoked_stream_errors_over_100_are_invalid_frames() {
        let (mut w, signal) = watch();
        // The server's own resets (CANCEL, INTERNAL_ERROR) are not the client's doing.
        for code in [0x8u32, 0x2, 0x0] {
            for _ in 0..200 {
                w.wrote(&frame(RST_STREAM, 0, 3, &code.to_be_bytes()));
            }
        }
        assert_eq!(signal.get(), None);
        let bytes: Vec<u8> = (0..=MAX_IN_WINDOW)
            .flat_map(|_| frame(RST_STREAM, 0, 3, &PROTOCOL_ERROR.to_be_bytes()))
            .collect();
        // Split across writes anywhere.
        for chunk in bytes.chunks(7) {
            w.wrote(chunk);
        }
        assert_eq!(signal.get(), Some(Abuse::InvalidFrames));
    }

    #[test]
    fn continuation_floods_by_count_or_size() {
        let block = |n: usize, each: usize, end: bool| {
            let mut b = frame(HEADERS, 0, 1, &vec![0x82; each]);
            for i in 0..n {
                let flags = if end && i + 1 == n { END_HEADERS } else { 0 };
                b.extend(frame(CONTINUATION, flags, 1, &vec![0x82; each]));
            }
            b
        };
        // Six CONTINUATION frames, the last ending the block, within 1,000 bytes: fine.
        assert_eq!(feed_both_ways(&block(6, 10, true)), (None, None));
        let flood = Some(Abuse::ContinuationFlood);
        assert_eq!(feed_both_ways(&block(7, 10, true)), (flood, flood));
        assert_eq!(feed_both_ways(&block(2, 600, true)), (flood, flood));
        // One HEADERS frame is not a continued block, whatever its size (h2 answers 431).
        assert_eq!(
            feed_both_ways(&frame(HEADERS, END_HEADERS, 1, &vec![0x82; 5000])),
            (None, None)
        );
    }

    #[test]
    fn table_size_updates_above_the_announced_size_are_hpack() {
        // 001 + 5-bit prefix: 4096 = 31 + 4065 (0xe1 0x1f).
        let update = |n: &[u8], flags: u8, lead: &[u8]| {
            let mut payload = lead.to_vec();
            payload.extend_from_slice(n);
            payload.push(0x82);
            frame(HEADERS, flags | END_HEADERS, 1, &payload)
        };
        assert_eq!(
            feed_both_ways(&update(&[0x3f, 0xe1, 0x1f], 0, &[])),
            (None, None)
        );
        assert_eq!(feed_both_ways(&update(&[0x20], 0, &[])), (None, None));
        let hpack = Some(Abuse::Hpack);
        assert_eq!(
            feed_both_ways(&update(&[0x3f, 0xe2, 0x1f], 0, &[])),
            (hpack, hpack)
        );
        // Behind padding and priority fields.
        let lead = [0u8, 0, 0, 0, 1, 16];
        assert_eq!(
            feed_both_ways(&update(&[0x3f, 0xff, 0xff, 0x7f], PADDED | PRIORITY, &lead)),
            (hpack, hpack)
        );
        // An integer that never ends within the bytes kept.
        assert_eq!(
            feed_both_ways(&update(&[0x3f, 0xff, 0xff, 0xff, 0xff, 0xff], 0, &[])),
            (hpack, hpack)
        );
        // One the HEADERS frame cuts (it goes on in a CONTINUATION): not judged here.
        let cut = frame(HEADERS, 0, 1, &[0x3f, 0xe1]);
        assert_eq!(feed_both_ways(&cut), (None, None));
    }

    #[test]
    fn h2s_own_goaways_are_named_by_their_debug_data() {
        let goaway = |code: u32, debug: &[u8]| {
            let mut p = 1u32.to_be_bytes().to_vec();
            p.extend_from_slice(&code.to_be_bytes());
            p.extend_from_slice(debug);
            frame(GOAWAY, 0, 0, &p)
        };
        for (code, debug, want) in [
            (
                ENHANCE_YOUR_CALM,
                &b"too_many_continuations"[..],
                Some(Abuse::ContinuationFlood),
            ),
            (
                ENHANCE_YOUR_CALM,
                b"header_list_way_too_large",
                Some(Abuse::Hpack),
            ),
            (
                ENHANCE_YOUR_CALM,
                b"too_many_resets",
                Some(Abuse::RapidReset),
            ),
            (
                ENHANCE_YOUR_CALM,
                b"too_many_internal_resets",
                Some(Abuse::InvalidFrames),
            ),
            (COMPRESSION_ERROR, b"", Some(Abuse::Hpack)),
            (PROTOCOL_ERROR, b"", None),
            (0, b"", None),
        ] {
            let (mut w, signal) = watch();
            for chunk in goaway(code, debug).chunks(5) {
                w.wrote(chunk);
            }
            assert_eq!(signal.get(), want, "{code} {debug:?}");
        }
        // The first kind stays: the guard's own GOAWAY after it changes nothing.
        let (mut w, signal) = watch();
        assert!(signal.trip(Abuse::RapidReset));
        w.wrote(&goaway(COMPRESSION_ERROR, b""));
        assert_eq!(signal.get(), Some(Abuse::RapidReset));
    }
}
