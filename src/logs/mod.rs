//! Where log lines go, and pingora's own log lines that must neither flood nor mislead.
//!
//! Lines are written by a thread of their own (issue #15). A request appends its formatted
//! line to a shared buffer, which costs a lock and a copy and never waits for stdout. The
//! writer thread sleeps until a line comes, collects for [`LINGER`] (or until it holds
//! [`FLUSH_AT`] bytes) and writes the lot in one `write`. (tracing-appender, tried first,
//! wakes its writer for every line: at 12k lines/s that cost more CPU than writing from the
//! request thread.) Lines therefore reach stdout up to ~10 ms after their request ended. When stdout
//! stalls (a slow pipe, a paused log collector) and the buffer reaches [`BUFFER_CAP`],
//! lines are dropped and counted (`ords_guard_log_lines_dropped_total`), never waited for.
//!
//! Pingora's lines (issue #14):
//!
//! - "Accept() failed": pingora's accept loop logs every failed `accept()` and retries at
//!   once. Seen after a shutdown race (closed since: `server::Drain`): 288 million lines in
//!   ten minutes. At most [`ACCEPT_ERRORS_PER_SECOND`] pass; the shutdown watchdog
//!   (`server`) bounds how long.
//! - "SIGTERM received, gracefully exiting" and "SIGINT received, exiting": pingora's
//!   words for the shutdown our drain returns, whatever the signal was. Dropped: the drain
//!   logs the real signal and what it did.
//! - "failed to acquire reusable stream" (ERROR): a pooled upstream connection could not be
//!   taken (its idle watcher still held it) and pingora simply opened another. Routine,
//!   yet it read like an outage (issue #37): counted instead
//!   (`ords_guard_upstream_reuse_misses_total`) and logged at debug.

pub mod access;

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

pub const ACCEPT_ERRORS_PER_SECOND: u32 = 5;

/// How long the writer, woken by the first line after it went idle, collects more before
/// it writes: a line reaches stdout within about this, and a busy proxy's lines go out in
/// one `write` per period (~100 wake-ups a second however many lines).
pub const LINGER: Duration = Duration::from_millis(10);
/// A buffer this full is written at once.
pub const FLUSH_AT: usize = 64 * 1024;
/// Past this, while stdout does not take what is written, lines are dropped: a few seconds
/// of a busy proxy's access lines.
pub const BUFFER_CAP: usize = 8 * 1024 * 1024;

/// The buffer between the threads that log and the one that writes.
struct Shared {
    buffer: Mutex<Buffered>,
    /// Wakes the writer: the first line after it went idle, a buffer past [`FLUSH_AT`],
    /// the end of the process.
    wake: Condvar,
    finishing: AtomicBool,
    dropped: AtomicU64,
}

#[derive(Default)]
struct Buffered {
    bytes: Vec<u8>,
    /// The writer found nothing to write and sleeps until told.
    idle: bool,
}

impl Shared {
    fn new() -> Shared {
        Shared {
            buffer: Mutex::new(Buffered::default()),
            wake: Condvar::new(),
            finishing: AtomicBool::new(false),
            dropped: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Buffered> {
        self.buffer.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Append one line (or drop it, counted); whether the writer should be woken now.
    fn append(&self, line: &[u8], cap: usize) -> bool {
        let mut b = self.lock();
        if b.bytes.len() + line.len() > cap {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        let was = b.bytes.len();
        b.bytes.extend_from_slice(line);
        std::mem::take(&mut b.idle) || (was < FLUSH_AT && b.bytes.len() >= FLUSH_AT)
    }

    fn append_and_wake(&self, line: &[u8]) {
        if self.append(line, BUFFER_CAP) {
            self.wake.notify_one();
        }
    }

    fn finishing(&self) -> bool {
        self.finishing.load(Ordering::Acquire)
    }

    /// Tell the writer to write what is left and end. Under the lock, so a writer about to
    /// sleep cannot miss it.
    fn finish(&self) {
        let _b = self.lock();
        self.finishing.store(true, Ordering::Release);
        self.wake.notify_one();
    }

    /// The writer's loop: sleep while there is nothing, linger once there is, take what is
    /// buffered (swapping in the spare, so neither side allocates once both have grown),
    /// write it; until finishing and empty.
    fn run(&self, out: &mut dyn Write) {
        let mut spare = Vec::with_capacity(FLUSH_AT);
        loop {
            {
                let mut b = self.lock();
                while b.bytes.is_empty() && !self.finishing() {
                    b.idle = true;
                    b = self.wake.wait(b).unwrap_or_else(|e| e.into_inner());
                }
                b.idle = false;
                let until = Instant::now() + LINGER;
                while b.bytes.len() < FLUSH_AT && !self.finishing() {
                    let left = until.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    b = self
                        .wake
                        .wait_timeout(b, left)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
                std::mem::swap(&mut b.bytes, &mut spare);
            }
            if !spare.is_empty() {
                // Nothing to tell anyone if stdout is gone: the lines are lost either way.
                let _ = out.write_all(&spare).and_then(|_| out.flush());
                spare.clear();
            } else if self.finishing() {
                return;
            }
        }
    }
}

/// The `MakeWriter` the subscriber formats into: each event's line is one `write`.
#[derive(Clone)]
pub struct Batched(Arc<Shared>);

impl Write for Batched {
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        self.0.append_and_wake(line);
        Ok(line.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Batched {
    type Writer = Batched;
    fn make_writer(&'a self) -> Batched {
        self.clone()
    }
}

static SHARED: OnceLock<Arc<Shared>> = OnceLock::new();
/// Says when the writer thread has written everything and ended.
static WRITER_DONE: Mutex<Option<std::sync::mpsc::Receiver<()>>> = Mutex::new(None);

/// How long [`finish`] waits for a stalled stdout before the process goes on without it.
const FINISH_WITHIN: Duration = Duration::from_secs(2);

/// The process's log writer to stdout, its thread started (the first call; later calls
/// share it).
pub fn writer() -> Batched {
    let shared = SHARED.get_or_init(|| {
        let shared = Arc::new(Shared::new());
        let s = shared.clone();
        let (done, finished) = std::sync::mpsc::channel();
        let started = std::thread::Builder::new()
            .name("log-writer".into())
            .spawn(move || {
                s.run(&mut std::io::stdout());
                let _ = done.send(());
            });
        match started {
            Ok(_) => *WRITER_DONE.lock().unwrap_or_else(|e| e.into_inner()) = Some(finished),
            // No thread: nothing drains the buffer, so lines are dropped and counted once
            // it is full; say so where it can still be seen.
            Err(e) => eprintln!("error: cannot start the log writer thread: {e}"),
        }
        shared
    });
    Batched(shared.clone())
}

/// Hand one formatted line (ending in a newline) to the writer; nothing before [`writer`].
pub fn append_line(line: &[u8]) {
    if let Some(s) = SHARED.get() {
        s.append_and_wake(line);
    }
}

static REUSE_MISSES: AtomicU64 = AtomicU64::new(0);

/// Pooled upstream connections pingora could not take (it opened new ones instead).
pub fn upstream_reuse_misses() -> u64 {
    REUSE_MISSES.load(Ordering::Relaxed)
}

/// Lines dropped so far because stdout did not keep up.
pub fn dropped_lines() -> u64 {
    SHARED
        .get()
        .map_or(0, |s| s.dropped.load(Ordering::Relaxed))
}

/// Write what is buffered and stop the writer: before the process exits, or the last
/// lines are lost. Waits at most [`FINISH_WITHIN`] for a stdout that does not take them.
pub fn finish() {
    let Some(shared) = SHARED.get() else { return };
    shared.finish();
    if let Some(done) = WRITER_DONE.lock().unwrap_or_else(|e| e.into_inner()).take() {
        let _ = done.recv_timeout(FINISH_WITHIN);
    }
}

/// A layer whose only job is to veto those lines for every other layer.
#[derive(Default)]
pub struct PingoraNoise {
    accept_errors: Mutex<Window>,
}

#[derive(Default)]
struct Window {
    start: Option<Instant>,
    passed: u32,
}

impl PingoraNoise {
    /// Whether a line of `target` saying `message` is written at `now`.
    fn keep(&self, target: &str, message: &str, now: Instant) -> bool {
        if target == "pingora_core::server"
            && (message.starts_with("SIGINT received") || message.starts_with("SIGTERM received"))
        {
            return false;
        }
        if target == "pingora_core::connectors" && message == "failed to acquire reusable stream" {
            REUSE_MISSES.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(target: "ords_guard::upstream", "a pooled upstream connection could not be taken; a new one is opened");
            return false;
        }
        if target == "pingora_core::services::listening" && message.starts_with("Accept() failed") {
            let mut w = self.accept_errors.lock().unwrap_or_else(|e| e.into_inner());
            if w.start
                .is_none_or(|s| now.saturating_duration_since(s) >= Duration::from_secs(1))
            {
                *w = Window {
                    start: Some(now),
                    passed: 0,
                };
            }
            w.passed += 1;
            return w.passed <= ACCEPT_ERRORS_PER_SECOND;
        }
        true
    }
}

/// Reads a bridged `log` record's target and message (the event's own metadata says only
/// `log`).
#[derive(Default)]
struct Record {
    target: String,
    message: String,
}

impl Visit for Record {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "log.target" => self.target = value.to_string(),
            "message" => self.message = value.to_string(),
            _ => {}
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        match field.name() {
            "log.target" => self.target = format!("{value:?}"),
            "message" => self.message = format!("{value:?}"),
            _ => {}
        }
    }
}

impl<S: Subscriber> Layer<S> for PingoraNoise {
    fn event_enabled(&self, event: &Event<'_>, _: Context<'_, S>) -> bool {
        // pingora logs through the `log` crate; our own lines (the access log among them)
        // are tracing events and pass unread.
        if event.metadata().target() != "log" {
            return true;
        }
        let mut r = Record::default();
        event.record(&mut r);
        self.keep(&r.target, &r.message, Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared() -> Arc<Shared> {
        Arc::new(Shared::new())
    }

    #[test]
    fn lines_past_the_cap_are_dropped_and_counted_and_a_full_buffer_wakes_the_writer() {
        let s = shared();
        assert!(!s.append(b"one\n", 10));
        assert!(!s.append(b"two\n", 10));
        assert!(!s.append(b"three\n", 10), "would pass the cap");
        assert_eq!(s.dropped.load(Ordering::Relaxed), 1);
        assert_eq!(s.lock().bytes, b"one\ntwo\n");
        s.lock().idle = true;
        assert!(
            s.append(b"x\n", usize::MAX),
            "the first line after idle wakes the writer"
        );
        assert!(!s.append(b"y\n", usize::MAX), "the next does not");
        let big = vec![b'x'; FLUSH_AT];
        assert!(
            s.append(&big, usize::MAX),
            "crossing FLUSH_AT wakes the writer"
        );
        assert!(!s.append(b"more\n", usize::MAX), "only the crossing does");
    }

    /// Blocks every write until the test lets it go: a stalled stdout.
    struct Stalled {
        go: std::sync::mpsc::Receiver<()>,
        out: Arc<Mutex<Vec<u8>>>,
    }

    impl Write for Stalled {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.go.recv().map_err(|_| std::io::ErrorKind::BrokenPipe)?;
            self.out.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_stalled_stdout_never_blocks_the_logging_threads_and_loses_only_what_overflowed() {
        let s = shared();
        let out = Arc::new(Mutex::new(Vec::new()));
        let (go, gate) = std::sync::mpsc::channel();
        let writer = {
            let (s, out) = (s.clone(), out.clone());
            std::thread::spawn(move || s.run(&mut Stalled { go: gate, out }))
        };
        // The writer takes the first line and stalls writing it; the rest fill the cap.
        s.append(b"first\n", 64);
        let took_first = Instant::now() + Duration::from_secs(10);
        while !s.lock().bytes.is_empty() {
            assert!(
                Instant::now() < took_first,
                "the writer never took the first line"
            );
            std::thread::yield_now();
        }
        for i in 0..100 {
            s.append(format!("line {i:02}\n").as_bytes(), 64);
        }
        let dropped = s.dropped.load(Ordering::Relaxed);
        assert_eq!(dropped, 100 - 64 / 8, "8-byte lines, 64 bytes of room");
        s.finish();
        for _ in 0..2 {
            go.send(()).unwrap();
        }
        drop(go);
        writer.join().unwrap();
        let written = String::from_utf8(out.lock().unwrap().clone()).unwrap();
        let expected: String = std::iter::once("first\n".to_string())
            .chain((0..8).map(|i| format!("line {i:02}\n")))
            .collect();
        assert_eq!(written, expected);
    }

    const ACCEPT: &str = "pingora_core::services::listening";

    #[test]
    fn accept_errors_pass_a_few_a_second() {
        let n = PingoraNoise::default();
        let t0 = Instant::now();
        let passed = (0..1000)
            .filter(|_| n.keep(ACCEPT, "Accept() failed Os { code: 9 }", t0))
            .count();
        assert_eq!(passed, ACCEPT_ERRORS_PER_SECOND as usize);
        let t1 = t0 + Duration::from_secs(1);
        assert!(n.keep(ACCEPT, "Accept() failed again", t1));
        // Other lines of that module are not counted.
        assert!(n.keep(ACCEPT, "Shutting down 127.0.0.1:8080", t0));
    }

    #[test]
    fn pingoras_sigint_line_is_dropped_and_the_rest_kept() {
        let n = PingoraNoise::default();
        let now = Instant::now();
        assert!(!n.keep("pingora_core::server", "SIGINT received, exiting", now));
        assert!(!n.keep(
            "pingora_core::server",
            "SIGTERM received, gracefully exiting",
            now
        ));
        assert!(n.keep("pingora_core::server", "Bootstrap starting", now));
        assert!(n.keep("ords_guard::access", "SIGINT received", now));
    }

    #[test]
    fn a_pooled_connection_not_taken_is_counted_not_logged_as_an_error() {
        let n = PingoraNoise::default();
        let now = Instant::now();
        let before = upstream_reuse_misses();
        let line = "failed to acquire reusable stream";
        assert!(!n.keep("pingora_core::connectors", line, now));
        assert!(upstream_reuse_misses() > before);
        assert!(n.keep("pingora_core::connectors", "another line", now));
    }
}
