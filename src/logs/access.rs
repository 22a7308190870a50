//! The access log line (SPEC §6), one per request: written straight into a reused
//! per-thread buffer (integers by itoa, the latency by ryu, strings through serde_json's
//! string writer) and handed to the batched writer. The subscriber's formatter, which the proxy
//! used before, visits every field through `dyn Debug`/`Display` and cost ~7 µs of the
//! proxy thread's ~40 µs per request (issue #15). The line keeps the subscriber's shape:
//! in JSON `{"timestamp":…,"level":"INFO",fields…,"target":"ords_guard::access"}`, in text
//! `TIMESTAMP  INFO ords_guard::access: key=value …`; the same filter (`RUST_LOG`,
//! `--log-level`) turns it on and off.

use std::cell::RefCell;
use std::fmt::Display;
use std::io::Write;
use std::sync::OnceLock;

pub const TARGET: &str = "ords_guard::access";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
}

static FORMAT: OnceLock<Format> = OnceLock::new();

/// Set once, by the process's logging set-up; until then no access line is written.
pub fn set_format(f: Format) {
    let _ = FORMAT.set(f);
}

thread_local! {
    static BUFFER: RefCell<(Vec<u8>, Clock)> = RefCell::new((Vec::with_capacity(512), Clock::default()));
}

/// Format one line with `fields` and hand it to the writer: nothing before a format is set,
/// or when the filter (`RUST_LOG`, `--log-level`) keeps `ords_guard::access` at INFO out
/// (the callsite caches the filter's answer).
pub fn write(fields: impl FnOnce(&mut Line<'_>)) {
    let Some(&format) = FORMAT.get() else { return };
    if !tracing::enabled!(target: "ords_guard::access", tracing::Level::INFO) {
        return;
    }
    BUFFER.with(|b| {
        let mut b = b.borrow_mut();
        let (buf, clock) = &mut *b;
        buf.clear();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let mut line = Line { buf, format };
        line.begin(clock, now);
        fields(&mut line);
        line.end();
        super::append_line(buf);
    });
}

/// The line being formatted.
pub struct Line<'a> {
    buf: &'a mut Vec<u8>,
    format: Format,
}

impl Line<'_> {
    fn begin(&mut self, clock: &mut Clock, since_epoch: std::time::Duration) {
        match self.format {
            Format::Json => self.buf.extend_from_slice(b"{\"timestamp\":\""),
            Format::Text => {}
        }
        clock.write(self.buf, since_epoch);
        match self.format {
            Format::Json => self.buf.extend_from_slice(b"\",\"level\":\"INFO\""),
            Format::Text => {
                self.buf.extend_from_slice(b"  INFO ");
                self.buf.extend_from_slice(TARGET.as_bytes());
                self.buf.push(b':');
            }
        }
    }

    fn end(&mut self) {
        match self.format {
            Format::Json => {
                self.buf.extend_from_slice(b",\"target\":\"");
                self.buf.extend_from_slice(TARGET.as_bytes());
                self.buf.extend_from_slice(b"\"}\n");
            }
            Format::Text => self.buf.push(b'\n'),
        }
    }

    fn key(&mut self, key: &str) {
        match self.format {
            Format::Json => {
                self.buf.extend_from_slice(b",\"");
                self.buf.extend_from_slice(key.as_bytes());
                self.buf.extend_from_slice(b"\":");
            }
            Format::Text => {
                self.buf.push(b' ');
                self.buf.extend_from_slice(key.as_bytes());
                self.buf.push(b'=');
            }
        }
    }

    /// A string, escaped (JSON string rules in both formats, as the text formatter's
    /// `Debug` quoting is for what these fields hold).
    pub fn str(&mut self, key: &str, value: &str) -> &mut Self {
        self.key(key);
        // Writing a str to a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *self.buf, value);
        self
    }

    /// A value whose `Display` never needs escaping, quoted in JSON, bare in text, like the
    /// subscriber's `%value`: an IP address, or an HTTP method (httparse admits only token
    /// characters there, never `"` or `\`). Any other client input goes through
    /// [`Line::str`].
    pub fn display(&mut self, key: &str, value: impl Display) -> &mut Self {
        self.key(key);
        let json = self.format == Format::Json;
        if json {
            self.buf.push(b'"');
        }
        let _ = write!(self.buf, "{value}");
        if json {
            self.buf.push(b'"');
        }
        self
    }

    pub fn uint(&mut self, key: &str, value: u64) -> &mut Self {
        self.key(key);
        self.buf
            .extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
        self
    }

    /// A finite float, shortest round-trip form (what serde_json writes).
    pub fn float(&mut self, key: &str, value: f64) -> &mut Self {
        self.key(key);
        if value.is_finite() {
            self.buf
                .extend_from_slice(ryu::Buffer::new().format_finite(value).as_bytes());
        } else {
            self.buf.extend_from_slice(b"null");
        }
        self
    }
}

/// RFC 3339 UTC with microseconds, as the subscriber writes it; the date and time of day
/// are formatted once a second.
#[derive(Default)]
struct Clock {
    second: u64,
    text: String,
}

impl Clock {
    fn write(&mut self, out: &mut Vec<u8>, since_epoch: std::time::Duration) {
        let second = since_epoch.as_secs();
        if self.text.is_empty() || second != self.second {
            self.second = second;
            self.text = chrono::DateTime::from_timestamp(second as i64, 0)
                .unwrap_or_default()
                .format("%Y-%m-%dT%H:%M:%S")
                .to_string();
        }
        out.extend_from_slice(self.text.as_bytes());
        let mut micros = since_epoch.subsec_micros();
        let mut digits = [b'0'; 6];
        for d in digits.iter_mut().rev() {
            *d = b'0' + (micros % 10) as u8;
            micros /= 10;
        }
        out.push(b'.');
        out.extend_from_slice(&digits);
        out.push(b'Z');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn line(format: Format, at: Duration, fields: impl FnOnce(&mut Line<'_>)) -> String {
        let mut buf = Vec::new();
        let mut clock = Clock::default();
        let mut l = Line {
            buf: &mut buf,
            format,
        };
        l.begin(&mut clock, at);
        fields(&mut l);
        l.end();
        String::from_utf8(buf).unwrap()
    }

    fn fields(l: &mut Line<'_>) {
        l.display("method", "GET")
            .str("path", "/a\"b\\c\u{1}")
            .display("client_addr", std::net::IpAddr::from([127, 0, 0, 1]))
            .uint("status", 200)
            .float("latency_ms", 0.1 + 0.2);
    }

    #[test]
    fn json_lines_parse_and_keep_the_subscribers_shape() {
        let at = Duration::new(1_796_299_111, 120_226_999);
        let text = line(Format::Json, at, fields);
        assert!(text.ends_with('\n'));
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["timestamp"], "2026-12-03T11:58:31.120226Z");
        assert_eq!(v["level"], "INFO");
        assert_eq!(v["method"], "GET");
        assert_eq!(v["path"], "/a\"b\\c\u{1}");
        assert_eq!(v["client_addr"], "127.0.0.1");
        assert_eq!(v["status"], 200);
        assert_eq!(
            v["latency_ms"],
            0.1 + 0.2,
            "shortest form that reads back exactly"
        );
        assert_eq!(v["target"], TARGET);
        assert!(text.starts_with("{\"timestamp\":"), "{text}");
    }

    #[test]
    fn text_lines_read_like_the_subscribers() {
        let text = line(Format::Text, Duration::new(0, 5_000), |l| {
            l.display("method", "GET")
                .str("path", "/x")
                .uint("status", 404);
        });
        assert_eq!(
            text,
            "1970-01-01T00:00:00.000005Z  INFO ords_guard::access: method=GET path=\"/x\" status=404\n"
        );
    }

    #[test]
    fn the_clock_reformats_when_the_second_changes() {
        let mut clock = Clock::default();
        let mut out = Vec::new();
        clock.write(&mut out, Duration::new(59, 999_999_000));
        out.push(b' ');
        clock.write(&mut out, Duration::new(60, 0));
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "1970-01-01T00:00:59.999999Z 1970-01-01T00:01:00.000000Z"
        );
    }
}
