//! The connection guard: what a client may hold and for how long, enforced before pingora
//! reads a byte. It wraps a listener's pingora app and, per connection:
//!
//! - counts it against `limits.max_connections` (over: 503, close);
//! - reads each request head itself, bounded by `limits.max_header_bytes` and
//!   `limits.max_headers` (over: 431) and by `timeouts.client_header_ms` (over: 408; nothing
//!   at all sent: closed silently), then hands pingora the connection with the head put back;
//! - closes a keep-alive connection idle for `timeouts.client_idle_ms`;
//! - bounds each request by `timeouts.request_total_ms`: the proxy clips its own waits to
//!   that deadline (408/504, see [`deadline`]), and a request still running a second later
//!   is cut.
//!
//! pingora's own bounds are coarser (60 s per read, 1 MiB and 256 headers, no connection
//! limit), and its answers to them are a bare close or a plain 400.

use crate::registry::Limits;
use crate::state::Guard;
use async_trait::async_trait;
use bytes::{Buf, BytesMut};
use pingora::apps::{HttpPersistentSettings, HttpServerApp, ServerApp};
use pingora::protocols::http::ServerSession;
use pingora::protocols::raw_connect::ProxyDigest;
use pingora::protocols::tls::{SslDigest, TlsRef};
use pingora::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl, Stream,
    TimingDigest, UniqueID, UniqueIDType, ALPN,
};
use pingora::server::ShutdownWatch;
use prometheus::IntGauge;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::time::{timeout_at, Instant};

/// After `request_total_ms`, the proxy's clipped waits answer 408/504; a request still
/// running this much later (a peer trickling bytes) is cut without an answer.
const HARD_CUT_AFTER: Duration = Duration::from_secs(1);
/// After a refusal, how long and how much of the client's remaining input is read and
/// dropped so the refusal is not lost to a TCP reset (nginx's lingering close).
const LINGER: Duration = Duration::from_millis(500);
const LINGER_BYTES: usize = 1 << 20;

tokio::task_local! {
    static DEADLINE: Instant;
}

/// The deadline of the request being served on this task (`request_total_ms` after its
/// head was read), when it runs under a connection guard.
pub fn deadline() -> Option<Instant> {
    DEADLINE.try_with(|d| *d).ok()
}

/// Shortens waits so they end by the request's deadline (never below 1 ms: pingora reads a
/// zero timeout as none). The time left is read once, for all the waits of one step.
pub fn clipper() -> impl Fn(Duration) -> Duration {
    let left = deadline().map(|d| d.saturating_duration_since(Instant::now()));
    move |wait| match left {
        Some(left) => wait.min(left).max(Duration::from_millis(1)),
        None => wait,
    }
}

/// Where a request head ends, or why it never will.
#[derive(Debug, PartialEq, Eq)]
pub enum Head {
    /// More bytes are needed.
    Incomplete,
    /// The head is whole; `len` bytes including the empty line.
    Complete {
        len: usize,
    },
    TooLarge,
    TooManyHeaders,
}

/// Finds the end of an HTTP/1 request head as its bytes arrive (RFC 9112 §2.2: empty lines
/// before the request line are skipped; a bare LF ends a line, as httparse allows). Each
/// call scans only the bytes added since the last, so a head sent a byte at a time costs
/// linear time, not quadratic.
#[derive(Debug, Default)]
pub struct HeadScan {
    /// First byte not yet looked at.
    next: usize,
    /// Where the request line starts, once a byte other than CR/LF was seen.
    request_line: Option<usize>,
    /// Where the current line starts.
    line_start: usize,
    /// Header lines seen so far.
    headers: usize,
}

impl HeadScan {
    /// `buf` must be the previous call's `buf` with bytes appended.
    pub fn advance(&mut self, buf: &[u8], max_bytes: usize, max_headers: usize) -> Head {
        if self.request_line.is_none() {
            match buf[self.next..]
                .iter()
                .position(|b| *b != b'\r' && *b != b'\n')
            {
                Some(off) => {
                    self.next += off;
                    self.request_line = Some(self.next);
                    self.line_start = self.next;
                }
                None => self.next = buf.len(),
            }
        }
        if let Some(first) = self.request_line {
            while let Some(off) = memchr_lf(&buf[self.next..]) {
                let lf = self.next + off;
                self.next = lf + 1;
                let line = &buf[self.line_start..lf];
                if line.is_empty() || line == b"\r" {
                    return if self.next > max_bytes {
                        Head::TooLarge
                    } else {
                        Head::Complete { len: self.next }
                    };
                }
                if self.line_start > first {
                    self.headers += 1;
                    if self.headers > max_headers {
                        return Head::TooManyHeaders;
                    }
                }
                self.line_start = self.next;
            }
            self.next = buf.len();
        }
        if buf.len() >= max_bytes {
            Head::TooLarge
        } else {
            Head::Incomplete
        }
    }
}

/// [`HeadScan`] over a whole buffer at once.
pub fn scan_head(buf: &[u8], max_bytes: usize, max_headers: usize) -> Head {
    HeadScan::default().advance(buf, max_bytes, max_headers)
}

fn memchr_lf(b: &[u8]) -> Option<usize> {
    b.iter().position(|c| *c == b'\n')
}

/// Why a connection was answered and closed by the guard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    Connections,
    HeaderBytes,
    Headers,
    HeaderTimeout,
}

impl Refusal {
    fn limit(self) -> &'static str {
        match self {
            Refusal::Connections => "max_connections",
            Refusal::HeaderBytes => "max_header_bytes",
            Refusal::Headers => "max_headers",
            Refusal::HeaderTimeout => "client_header_timeout",
        }
    }

    /// Status line, title, detail, extra headers.
    fn response(self, l: &Limits) -> (u16, &'static str, String, &'static str) {
        match self {
            Refusal::Connections => (
                503,
                "Service Unavailable",
                format!("ords-guard already holds {} connections (limits.max_connections); retry shortly", l.max_connections),
                "Retry-After: 1\r\n",
            ),
            Refusal::HeaderBytes => (
                431,
                "Request Header Fields Too Large",
                format!("the request line and headers exceed {} bytes (limits.max_header_bytes)", l.max_header_bytes),
                "",
            ),
            Refusal::Headers => (
                431,
                "Request Header Fields Too Large",
                format!("the request has more than {} header lines (limits.max_headers)", l.max_headers),
                "",
            ),
            Refusal::HeaderTimeout => (
                408,
                "Request Timeout",
                format!("the request head did not arrive within {} ms (timeouts.client_header_ms)", l.client_header.as_millis()),
                "",
            ),
        }
    }
}

/// A connection with bytes already read from it put back in front.
#[derive(Debug)]
struct Conn {
    pending: BytesMut,
    io: Stream,
}

/// Wraps a listener's app with the guard. `listener` names it in logs and metrics.
pub struct Guarded<A> {
    app: Arc<A>,
    guard: Arc<Guard>,
    listener: &'static str,
    open: AtomicUsize,
    /// This listener's `ords_guard_connections` series, resolved once.
    open_gauge: IntGauge,
}

impl<A> Guarded<A> {
    pub fn new(app: A, guard: Arc<Guard>, listener: &'static str) -> Self {
        let open_gauge = guard.metrics.connections.with_label_values(&[listener]);
        Guarded {
            app: Arc::new(app),
            guard,
            listener,
            open: AtomicUsize::new(0),
            open_gauge,
        }
    }

    /// Take a place in the connection count; the number of places now taken.
    fn enter(&self) -> (Slot<'_, A>, usize) {
        self.open_gauge.inc();
        let open = self.open.fetch_add(1, Ordering::AcqRel) + 1;
        (Slot { guarded: self }, open)
    }
}

/// Holds one place in the connection count for as long as the connection lives.
struct Slot<'a, A> {
    guarded: &'a Guarded<A>,
}

impl<A> Drop for Slot<'_, A> {
    fn drop(&mut self) {
        self.guarded.open.fetch_sub(1, Ordering::AcqRel);
        self.guarded.open_gauge.dec();
    }
}

enum Read {
    /// A whole head is at the front of `pending`.
    Head,
    /// Nothing arrived (idle), or the peer closed or failed: close without a word.
    Gone,
    Refused(Refusal),
}

/// Read until `pending` starts with a whole request head, within the limits. Nothing may
/// arrive until `idle_until`; the head then has `client_header` from its first byte, or
/// until `head_until` when that is given (a new connection's first request).
async fn read_head(
    conn: &mut Conn,
    l: &Limits,
    idle_until: Instant,
    mut head_until: Option<Instant>,
    shutdown: &ShutdownWatch,
) -> Read {
    let mut scan = HeadScan::default();
    let mut shutdown = shutdown.clone();
    loop {
        if !conn.pending.is_empty() {
            match scan.advance(&conn.pending, l.max_header_bytes, l.max_headers) {
                Head::Complete { .. } => return Read::Head,
                Head::TooLarge => return Read::Refused(Refusal::HeaderBytes),
                Head::TooManyHeaders => return Read::Refused(Refusal::Headers),
                Head::Incomplete => {}
            }
        }
        let idle = conn.pending.is_empty();
        let until = match head_until {
            Some(t) => t,
            None if idle => idle_until,
            None => *head_until.insert(Instant::now() + l.client_header),
        };
        conn.pending.reserve(4096);
        let read = timeout_at(until, conn.io.read_buf(&mut conn.pending));
        let read = tokio::select! {
            r = read => r,
            // Draining: a connection between requests is closed at once.
            Ok(_) = shutdown.wait_for(|stop| *stop), if idle => return Read::Gone,
        };
        match read {
            Ok(Ok(0)) | Ok(Err(_)) => return Read::Gone,
            Ok(Ok(_)) => {}
            Err(_) if conn.pending.is_empty() => return Read::Gone,
            Err(_) => return Read::Refused(Refusal::HeaderTimeout),
        }
    }
}

/// Answer with a problem document, then close, reading what the client still sends for a
/// moment so the answer is not destroyed by a reset.
async fn refuse(io: &mut Stream, status: u16, title: &str, detail: &str, extra: &str) {
    let body = crate::proxy::problem(status, title, detail);
    let head = format!(
        "HTTP/1.1 {status} {title}\r\nContent-Type: application/problem+json\r\nContent-Length: {}\r\nConnection: close\r\n{extra}\r\n",
        body.len()
    );
    let wrote = async {
        io.write_all(head.as_bytes()).await?;
        io.write_all(&body).await?;
        io.flush().await
    };
    if timeout_at(Instant::now() + LINGER, wrote).await.is_err() {
        return;
    }
    Shutdown::shutdown(io.as_mut()).await;
    let mut sink = vec![0u8; 16 * 1024];
    let mut drained = 0;
    let until = Instant::now() + LINGER;
    while drained < LINGER_BYTES {
        match timeout_at(until, io.read(&mut sink)).await {
            Ok(Ok(n)) if n > 0 => drained += n,
            _ => break,
        }
    }
}

#[async_trait]
impl<A: HttpServerApp + Send + Sync + 'static> ServerApp for Guarded<A> {
    /// HTTP/1 only (the listeners offer no h2): pingora's own `ServerApp` for an HTTP app
    /// loops over keep-alive requests itself; this loop does the same with each head read
    /// by [`read_head`] first.
    async fn process_new(self: &Arc<Self>, io: Stream, shutdown: &ShutdownWatch) -> Option<Stream> {
        let metrics = &self.guard.metrics;
        let (_slot, open) = self.enter();
        // Limits are read per connection: a reload applies to connections opened after it.
        let limits = self.guard.registry().limits.clone();
        let mut conn = Box::new(Conn {
            pending: BytesMut::new(),
            io,
        });
        let mut settings: Option<HttpPersistentSettings> = None;
        // A new connection has `client_header` for its first head, counted from now.
        let mut idle_until = Instant::now() + limits.client_header;
        let mut head_until = Some(idle_until);
        let over = open > limits.max_connections;
        loop {
            let refusal =
                match read_head(&mut conn, &limits, idle_until, head_until, shutdown).await {
                    Read::Gone => return None,
                    Read::Refused(r) => Some(r),
                    Read::Head if over => Some(Refusal::Connections),
                    Read::Head => None,
                };
            if let Some(r) = refusal {
                metrics.limit_rejections.inc(r.limit());
                let (status, title, detail, extra) = r.response(&limits);
                let peer = conn
                    .io
                    .get_socket_digest()
                    .and_then(|d| d.peer_addr().and_then(|a| a.as_inet()).map(|a| a.ip()))
                    .map_or_else(|| "-".to_string(), |ip| ip.to_string());
                tracing::warn!(target: "ords_guard::limits", listener = self.listener, limit = r.limit(), status, peer, "request refused by a limit");
                refuse(&mut conn.io, status, title, &detail, extra).await;
                return None;
            }
            let mut session = ServerSession::new_http1(conn);
            match settings.take() {
                Some(s) => s.apply_to_session(&mut session),
                None => {
                    session.set_keepalive(Some(limits.client_idle.as_secs().max(1)));
                    session.set_keepalive_reuses_remaining(
                        self.app
                            .server_options()
                            .and_then(|o| o.keepalive_request_limit),
                    );
                }
            }
            if *shutdown.borrow() {
                session.set_keepalive(None);
            }
            let deadline = Instant::now() + limits.request_total;
            let served = timeout_at(
                deadline + HARD_CUT_AFTER,
                DEADLINE.scope(deadline, self.app.process_new_http(session, shutdown)),
            )
            .await;
            let reused = match served {
                Ok(reused) => reused?,
                Err(_) => {
                    metrics
                        .limit_rejections
                        .inc(crate::metrics::REQUEST_TOTAL_TIMEOUT);
                    tracing::warn!(target: "ords_guard::limits", listener = self.listener, limit = "request_total_timeout", "request cut: still running after timeouts.request_total_ms");
                    return None;
                }
            };
            let (stream, next) = reused.consume();
            conn = match stream.into_any().downcast::<Conn>() {
                Ok(c) => c,
                // Not the stream handed in: nothing to guard it with, so close.
                Err(_) => return None,
            };
            settings = next;
            idle_until = Instant::now() + limits.client_idle;
            head_until = None;
        }
    }

    async fn cleanup(&self) {
        self.app.http_cleanup().await
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if !self.pending.is_empty() {
            let n = self.pending.len().min(buf.remaining());
            buf.put_slice(&self.pending[..n]);
            self.pending.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

#[async_trait]
impl Shutdown for Conn {
    async fn shutdown(&mut self) {
        Shutdown::shutdown(self.io.as_mut()).await
    }
}

impl UniqueID for Conn {
    fn id(&self) -> UniqueIDType {
        self.io.id()
    }
}

impl Ssl for Conn {
    fn get_ssl(&self) -> Option<&TlsRef> {
        self.io.get_ssl()
    }
    fn get_ssl_digest(&self) -> Option<Arc<SslDigest>> {
        self.io.get_ssl_digest()
    }
    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.io.selected_alpn_proto()
    }
}

impl GetTimingDigest for Conn {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.io.get_timing_digest()
    }
    fn get_read_pending_time(&self) -> Duration {
        self.io.get_read_pending_time()
    }
    fn get_write_pending_time(&self) -> Duration {
        self.io.get_write_pending_time()
    }
}

impl GetProxyDigest for Conn {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.io.get_proxy_digest()
    }
    fn set_proxy_digest(&mut self, digest: ProxyDigest) {
        self.io.set_proxy_digest(digest)
    }
}

impl GetSocketDigest for Conn {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.io.get_socket_digest()
    }
    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.io.set_socket_digest(digest)
    }
}

// Peeking is only used for the h2c preface, which is off: the default (unsupported) is right.
impl Peek for Conn {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_are_found_and_bounded() {
        let full = b"GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\n\r\nbody";
        assert_eq!(scan_head(full, 1024, 10), Head::Complete { len: 33 });
        assert_eq!(scan_head(&full[..20], 1024, 10), Head::Incomplete);
        assert_eq!(scan_head(b"", 1024, 10), Head::Incomplete);
        // Bare LF line ends and leading empty lines, as httparse accepts them.
        assert_eq!(
            scan_head(b"\r\n\r\nGET / HTTP/1.1\nHost: a\n\n", 1024, 10),
            Head::Complete { len: 28 }
        );
        // Leading empty lines alone are not a head.
        assert_eq!(scan_head(b"\r\n\r\n\r\n", 1024, 10), Head::Incomplete);
        assert_eq!(scan_head(full, 32, 10), Head::TooLarge);
        assert_eq!(scan_head(full, 33, 10), Head::Complete { len: 33 });
        assert_eq!(scan_head(&[b'a'; 64], 64, 10), Head::TooLarge);
        assert_eq!(scan_head(full, 1024, 2), Head::Complete { len: 33 });
        assert_eq!(scan_head(full, 1024, 1), Head::TooManyHeaders);
        // Fed a byte at a time, the scan agrees with the one-shot scan at every length.
        for head in [
            &full[..],
            b"\r\n\nGET / HTTP/1.1\nA: 1\r\n\r\n",
            b"GET / HTTP/1.1\r\na: 1\r\nb: 2\r\nc: 3\r\n\r\n",
        ] {
            for (max_bytes, max_headers) in [(1024, 10), (20, 10), (1024, 1)] {
                let mut scan = HeadScan::default();
                for n in 1..=head.len() {
                    let step = scan.advance(&head[..n], max_bytes, max_headers);
                    assert_eq!(step, scan_head(&head[..n], max_bytes, max_headers), "{n}");
                    if step != Head::Incomplete {
                        break;
                    }
                }
            }
        }
        // Counted before the head is whole, so a stream of short lines is refused early.
        assert_eq!(
            scan_head(b"GET / HTTP/1.1\r\na: 1\r\nb: 1\r\nc", 1024, 1),
            Head::TooManyHeaders
        );
    }
}
