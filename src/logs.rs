//! pingora's own log lines that must neither flood nor mislead (issue #14).
//!
//! - "Accept() failed": pingora's accept loop logs every failed `accept()` and retries at
//!   once. Seen after a shutdown race (closed since: `server::Drain`): 288 million lines in
//!   ten minutes. At most [`ACCEPT_ERRORS_PER_SECOND`] pass; the shutdown watchdog
//!   (`server`) bounds how long.
//! - "SIGTERM received, gracefully exiting" and "SIGINT received, exiting": pingora's
//!   words for the shutdown our drain returns, whatever the signal was. Dropped: the drain
//!   logs the real signal and what it did.

use std::sync::Mutex;
use std::time::{Duration, Instant};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

pub const ACCEPT_ERRORS_PER_SECOND: u32 = 5;

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
}
