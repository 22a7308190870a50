//! The connection guard: what a client may hold and for how long, enforced before pingora
//! reads a byte. It wraps a listener's pingora app and, per connection:
//!
//! - counts it against `limits.max_connections` (over: 503, close);
//! - reads each request head itself, bounded by `limits.max_header_bytes` and
//!   `limits.max_headers` (over: 431) and by `timeouts.client_header_ms` (over: 408; nothing
//!   at all sent: closed silently), and checks it strictly ([`head::check`]: 400 or 501),
//!   then hands pingora the connection with the head put back;
//! - gives pingora only the bytes of the request it serves ([`framing`]): bytes of pipelined
//!   requests behind it stay here, and each is read, checked and served in turn;
//! - closes a keep-alive connection idle for `timeouts.client_idle_ms`;
//! - bounds each request by `timeouts.request_total_ms`: the proxy clips its own waits to
//!   that deadline (408/504, see [`deadline`]), and a request still running a second later
//!   is cut;
//! - lets a WebSocket handshake ([`head::Checked::websocket`]) the upstream answers 101
//!   become a tunnel ([`Tunnel`]): every byte passed both ways, bounded by
//!   `timeouts.client_idle_ms` with no byte either way instead of `request_total_ms`.
//!
//! pingora's own bounds are coarser (60 s per read, 1 MiB and 256 headers, no connection
//! limit), its answers to them are a bare close or a plain 400, and it closes a connection
//! on which a second request arrived before the first was answered.

pub mod framing;
pub mod h2watch;
pub mod head;
pub mod http2;

pub use head::{scan_head, Head, HeadScan};

use crate::registry::Limits;
use crate::serve::state::Guard;
use async_trait::async_trait;
use bytes::{Buf, BytesMut};
use framing::ChunkedScan;
use head::Framing;
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
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::time::{timeout_at, Instant, Sleep};

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

/// The `listener` name of the proxy's own listener (the others: `admin`).
pub const PROXY_LISTENER: &str = "proxy";
/// The egress listeners' name in logs and metrics (SPEC §10).
pub const EGRESS_LISTENER: &str = "egress";

/// Most bytes of pipelined requests held while pingora serves the one before them; past
/// this the guard stops reading until pingora is done (TCP pushes back on the client).
const MAX_HELD: usize = 64 * 1024;

/// Where pingora is in the request it was handed, so it reads no further.
#[derive(Debug)]
enum Message {
    /// The head (`left` bytes of it still at the front of `pending`), then the body.
    Head {
        left: usize,
        body: Framing,
    },
    Length(u64),
    Chunked(ChunkedScan),
    /// The request is whole: what arrives now is the next one's, and stays in `pending`.
    Done,
    /// HTTP/2: the connection is the h2 crate's, every byte passed on (what was read while
    /// looking for the preface first).
    Passthrough,
}

/// A WebSocket handshake's tunnel (SPEC §17), shared by the connection, which opens it when
/// the upstream's 101 goes out and notes every byte through it, and the guard's loop, which
/// bounds it by the time since the last byte either way.
#[derive(Debug)]
struct Tunnel {
    /// The `Sec-WebSocket-Accept` the upstream's 101 must carry.
    accept: String,
    open: AtomicBool,
    since: Instant,
    /// Milliseconds after `since` of the last byte either way.
    last_byte: AtomicU64,
}

impl Tunnel {
    fn new(accept: String) -> Tunnel {
        Tunnel {
            accept,
            open: AtomicBool::new(false),
            since: Instant::now(),
            last_byte: AtomicU64::new(0),
        }
    }

    fn is_open(&self) -> bool {
        self.open.load(Ordering::Acquire)
    }

    fn touch(&self) {
        let ms = self.since.elapsed().as_millis();
        self.last_byte
            .store(u64::try_from(ms).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    fn last_byte(&self) -> Instant {
        self.since + Duration::from_millis(self.last_byte.load(Ordering::Relaxed))
    }
}

/// A connection with bytes already read from it put back in front, handed to pingora one
/// request at a time.
#[derive(Debug)]
struct Conn {
    pending: BytesMut,
    io: Stream,
    message: Message,
    /// The client closed its side (after sending what is in `pending`).
    eof: bool,
    /// The request being served is a WebSocket handshake: its tunnel, opened (and every byte
    /// passed through from then on) when the response head written is a 101.
    handshake: Option<Arc<Tunnel>>,
    /// HTTP/2: the frames both ways, read for abuse (SPEC §17).
    h2: Option<Box<h2watch::H2Watch>>,
}

impl Conn {
    /// Read more from the client into `pending`; `Ok(0)` when it has closed.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<usize>> {
        if self.eof {
            return Poll::Ready(Ok(0));
        }
        self.pending.reserve(4096);
        let n = std::task::ready!(tokio_util::io::poll_read_buf(
            Pin::new(&mut self.io),
            cx,
            &mut self.pending
        ))?;
        self.eof = n == 0;
        Poll::Ready(Ok(n))
    }

    /// Whether pingora has read all of the request it was handed.
    fn request_whole(&self) -> bool {
        match &self.message {
            Message::Head { .. } => false,
            Message::Length(left) => *left == 0,
            Message::Chunked(scan) => scan.is_done(),
            Message::Done | Message::Passthrough => true,
        }
    }

    /// Move `n` bytes from the front of `pending` to `buf`.
    fn hand_over(&mut self, buf: &mut ReadBuf<'_>, n: usize) {
        buf.put_slice(&self.pending[..n]);
        self.pending.advance(n);
    }
}

/// Wraps a listener's app with the guard. `listener` names it in logs and metrics.
pub struct Guarded<A> {
    app: Arc<A>,
    guard: Arc<Guard>,
    listener: &'static str,
    open: AtomicUsize,
    /// This listener's `ords_guard_connections` series, resolved once.
    open_gauge: IntGauge,
    /// HTTP/2 is served beside HTTP/1.1 (`http2`, SPEC §17).
    http2: bool,
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
            http2: false,
        }
    }

    /// HTTP/2 too: h2 when TLS selected it by ALPN, h2c when a plain connection opens with
    /// the preface.
    pub fn with_http2(mut self, on: bool) -> Self {
        self.http2 = on;
        self
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
    /// A whole head of this many bytes is at the front of `pending`.
    Head(usize),
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
    timer: &mut Pin<Box<Sleep>>,
) -> Read {
    let mut scan = HeadScan::default();
    let mut shutdown = shutdown.clone();
    loop {
        if !conn.pending.is_empty() {
            match scan.advance(&conn.pending, l.max_header_bytes, l.max_headers) {
                Head::Complete { len } => return Read::Head(len),
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
        timer.as_mut().reset(until);
        let read = tokio::select! {
            biased;
            r = conn.io.read_buf(&mut conn.pending) => Ok(r),
            () = timer.as_mut() => Err(()),
            // Draining: a connection between requests is closed at once.
            Ok(_) = shutdown.wait_for(|stop| *stop), if idle => return Read::Gone,
        };
        match read {
            Ok(Ok(0)) | Ok(Err(_)) => return Read::Gone,
            Ok(Ok(_)) => {}
            Err(()) if conn.pending.is_empty() => return Read::Gone,
            Err(()) => return Read::Refused(Refusal::HeaderTimeout),
        }
    }
}

/// What an HTTP/2 client sends first (RFC 9113 §3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Whether the connection speaks HTTP/2: TLS selected `h2` by ALPN, or a plain connection
/// begins with the preface (read into `pending` until it does or cannot, by `until`; what
/// was read stays there for whichever protocol it is).
async fn speaks_h2(conn: &mut Conn, until: Instant) -> bool {
    if conn.io.get_ssl_digest().is_some() {
        return conn.io.selected_alpn_proto() == Some(ALPN::H2);
    }
    while conn.pending.len() < H2_PREFACE.len() && H2_PREFACE.starts_with(&conn.pending) {
        conn.pending.reserve(H2_PREFACE.len());
        match timeout_at(until, conn.io.read_buf(&mut conn.pending)).await {
            Ok(Ok(n)) if n > 0 => {}
            // Closed, failed or silent: the HTTP/1.1 reader says so as it always has.
            _ => return false,
        }
    }
    conn.pending.starts_with(H2_PREFACE)
}

/// The client's address, for log lines written before pingora has a session.
fn peer(io: &Stream) -> String {
    io.get_socket_digest()
        .and_then(|d| d.peer_addr().and_then(|a| a.as_inet()).map(|a| a.ip()))
        .map_or_else(|| "-".to_string(), |ip| ip.to_string())
}

/// Answer with a problem document, then close, reading what the client still sends for a
/// moment so the answer is not destroyed by a reset.
async fn refuse(io: &mut Stream, status: u16, title: &str, detail: &str, extra: &str) {
    let body = crate::serve::pipeline::problem(status, title, detail);
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
            message: Message::Done,
            eof: false,
            handshake: None,
            h2: None,
        });
        let mut settings: Option<HttpPersistentSettings> = None;
        // A new connection has `client_header` for its first head, counted from now.
        let mut idle_until = Instant::now() + limits.client_header;
        let mut head_until = Some(idle_until);
        let over = open > limits.max_connections;
        // One timer per connection for the head and idle waits, one for the request's cut,
        // each moved on per request: a timer moved later costs tokio nothing, where a new
        // one per request could wake the runtime's driver each time (an eventfd write per
        // request, `bench/syscalls.sh`; issue #37).
        let mut head_timer = Box::pin(tokio::time::sleep_until(idle_until));
        let mut cut_timer = Box::pin(tokio::time::sleep_until(idle_until));
        if self.http2 && speaks_h2(&mut conn, idle_until).await {
            return http2::serve(self, conn, &limits, over, idle_until, shutdown).await;
        }
        loop {
            let (refusal, len) = match read_head(
                &mut conn,
                &limits,
                idle_until,
                head_until,
                shutdown,
                &mut head_timer,
            )
            .await
            {
                Read::Gone => return None,
                Read::Refused(r) => (Some(r), 0),
                Read::Head(_) if over => (Some(Refusal::Connections), 0),
                Read::Head(len) => (None, len),
            };
            if let Some(r) = refusal {
                metrics.limit_rejections.inc(r.limit());
                let (status, title, detail, extra) = r.response(&limits);
                tracing::warn!(target: "ords_guard::limits", listener = self.listener, limit = r.limit(), status, peer = %peer(&conn.io), "request refused by a limit");
                refuse(&mut conn.io, status, title, &detail, extra).await;
                return None;
            }
            let mut tunnel = None;
            match head::check(&conn.pending[..len]) {
                Ok(checked) => {
                    if let Some(accept) = checked.websocket {
                        tunnel = Some(Arc::new(Tunnel::new(accept)));
                    }
                    let mut left = len;
                    if let Some(head) = checked.rewritten {
                        left = head.len();
                        let mut pending = BytesMut::from(&head[..]);
                        pending.extend_from_slice(&conn.pending[len..]);
                        conn.pending = pending;
                    }
                    conn.message = Message::Head {
                        left,
                        body: checked.framing,
                    };
                }
                Err(malformed) => {
                    // A decision like the proxy's own 400s; the admin listener's are not
                    // proxied requests.
                    if self.listener == PROXY_LISTENER {
                        metrics.requests.inc("bad_request");
                    }
                    tracing::warn!(target: "ords_guard::access", listener = self.listener, status = malformed.status(), decision = "bad_request", client_addr = %peer(&conn.io), reason = %malformed, "request head refused");
                    refuse(
                        &mut conn.io,
                        malformed.status(),
                        malformed.title(),
                        &format!("{malformed}; the request was not forwarded"),
                        "",
                    )
                    .await;
                    return None;
                }
            }
            conn.handshake = tunnel.clone();
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
            let serve = DEADLINE.scope(deadline, self.app.process_new_http(session, shutdown));
            let served = match &tunnel {
                None => {
                    cut_timer.as_mut().reset(deadline + HARD_CUT_AFTER);
                    tokio::select! {
                        biased;
                        r = serve => Ok(r),
                        () = cut_timer.as_mut() => Err(Cut::RequestTotal),
                    }
                }
                Some(tunnel) => {
                    bound_tunnel(serve, deadline + HARD_CUT_AFTER, tunnel, limits.client_idle).await
                }
            };
            let reused = match served {
                Ok(reused) => reused?,
                Err(Cut::RequestTotal) => {
                    metrics
                        .limit_rejections
                        .inc(crate::serve::metrics::REQUEST_TOTAL_TIMEOUT);
                    tracing::warn!(target: "ords_guard::limits", listener = self.listener, limit = "request_total_timeout", "request cut: still running after timeouts.request_total_ms");
                    return None;
                }
                Err(Cut::TunnelIdle) => {
                    tracing::info!(target: "ords_guard::limits", listener = self.listener, limit = "client_idle", "WebSocket tunnel closed: no byte either way within timeouts.client_idle_ms");
                    return None;
                }
            };
            let (stream, next) = reused.consume();
            conn = match stream.into_any().downcast::<Conn>() {
                Ok(c) => c,
                // Not the stream handed in: nothing to guard it with, so close.
                Err(_) => return None,
            };
            if !conn.request_whole() {
                // pingora kept the connection without reading the whole request: where the
                // next one starts is unknown, so it ends here.
                return None;
            }
            settings = next;
            idle_until = Instant::now() + limits.client_idle;
            head_until = None;
        }
    }

    async fn cleanup(&self) {
        self.app.http_cleanup().await
    }
}

/// Why the guard cut a request it had handed pingora.
enum Cut {
    RequestTotal,
    TunnelIdle,
}

/// Serve a WebSocket handshake: until its tunnel opens, by the request's deadline (`cut_at`)
/// as any request; once open, for as long as a byte passes either way within `idle`.
/// pingora's own waits in the tunnel are set to `idle` too (see the proxy) and end an idle
/// tunnel first, cleanly; this is the bound that holds whatever they do.
async fn bound_tunnel<F: std::future::Future>(
    serve: F,
    cut_at: Instant,
    tunnel: &Tunnel,
    idle: Duration,
) -> Result<F::Output, Cut> {
    tokio::pin!(serve);
    loop {
        let open = tunnel.is_open();
        let until = if open {
            tunnel.last_byte() + idle + HARD_CUT_AFTER
        } else {
            cut_at
        };
        match timeout_at(until, &mut serve).await {
            Ok(out) => return Ok(out),
            // Opened meanwhile, or a byte since: look again.
            Err(_) if tunnel.is_open() != open => {}
            Err(_) if open && Instant::now() < tunnel.last_byte() + idle + HARD_CUT_AFTER => {}
            Err(_) if open => return Err(Cut::TunnelIdle),
            Err(_) => return Err(Cut::RequestTotal),
        }
    }
}

impl AsyncRead for Conn {
    /// pingora reads the request it was handed and nothing past it: the head, then the
    /// body as its framing delimits it. Once the request is whole, reads return nothing
    /// (pending) while what the client sends next is kept for the guard, except that a
    /// client gone with nothing more sent reads as closed, as it would without the guard.
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        loop {
            match &mut this.message {
                // An abusive HTTP/2 client is read no further: the GOAWAY is on its way.
                Message::Passthrough if this.h2.as_ref().is_some_and(|w| w.tripped()) => {
                    return Poll::Pending;
                }
                Message::Passthrough if this.pending.is_empty() => {
                    let filled = buf.filled().len();
                    let read = Pin::new(&mut this.io).poll_read(cx, buf);
                    let new = &buf.filled()[filled..];
                    if !new.is_empty() {
                        if let Some(tunnel) = &this.handshake {
                            tunnel.touch();
                        }
                        if let Some(watch) = &mut this.h2 {
                            watch.read(new);
                        }
                    }
                    return read;
                }
                Message::Passthrough => {
                    let n = this.pending.len().min(buf.remaining());
                    if let Some(watch) = &mut this.h2 {
                        watch.read(&this.pending[..n]);
                    }
                    this.hand_over(buf, n);
                    return Poll::Ready(Ok(()));
                }
                Message::Head { left, body } => {
                    let n = (*left).min(buf.remaining());
                    let body = *body;
                    *left -= n;
                    if *left == 0 {
                        this.message = match body {
                            Framing::Empty => Message::Done,
                            Framing::Length(n) => Message::Length(n),
                            Framing::Chunked => Message::Chunked(ChunkedScan::default()),
                        };
                    }
                    this.hand_over(buf, n);
                    return Poll::Ready(Ok(()));
                }
                Message::Length(0) => this.message = Message::Done,
                &mut Message::Length(left) => {
                    if this.pending.is_empty() && std::task::ready!(this.poll_fill(cx))? == 0 {
                        // Closed mid-body: pingora sees the end and fails the request.
                        return Poll::Ready(Ok(()));
                    }
                    let n = this.pending.len().min(buf.remaining());
                    let n = n.min(usize::try_from(left).unwrap_or(usize::MAX));
                    this.message = Message::Length(left - n as u64);
                    this.hand_over(buf, n);
                    return Poll::Ready(Ok(()));
                }
                Message::Chunked(scan) => {
                    if scan.is_done() {
                        this.message = Message::Done;
                        continue;
                    }
                    if this.pending.is_empty() && std::task::ready!(this.poll_fill(cx))? == 0 {
                        return Poll::Ready(Ok(()));
                    }
                    let Message::Chunked(scan) = &mut this.message else {
                        unreachable!()
                    };
                    let avail = this.pending.len().min(buf.remaining());
                    let n = scan
                        .advance(&this.pending[..avail])
                        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
                    this.hand_over(buf, n);
                    return Poll::Ready(Ok(()));
                }
                Message::Done => {
                    // pingora only reads now to notice a client that went away while it
                    // waits for the upstream. Hold what the client pipelines meanwhile.
                    while this.pending.len() < MAX_HELD {
                        match std::task::ready!(this.poll_fill(cx))? {
                            0 if this.pending.is_empty() => return Poll::Ready(Ok(())),
                            // Closed after sending more requests: it awaits their answers.
                            0 => return Poll::Pending,
                            _ => {}
                        }
                    }
                    return Poll::Pending;
                }
            }
        }
    }
}

impl Conn {
    /// A WebSocket handshake's answer is being written: a 101 that proves the upstream read
    /// the handshake (its `Sec-WebSocket-Accept`) opens the tunnel (what the client sent
    /// after its handshake, held until now, goes first); a final answer of any other status
    /// leaves the connection HTTP/1.1; in an open tunnel, a byte passes. A 101 without the
    /// proof is an upstream that may still read HTTP: the client's held bytes would reach
    /// it undecided, so they are dropped and the connection ends.
    fn note_write(&mut self, buf: &[u8]) {
        let Some(tunnel) = &self.handshake else {
            return;
        };
        if tunnel.is_open() {
            tunnel.touch();
        } else if buf.starts_with(b"HTTP/1.1 101 ") {
            if head::field(buf, b"sec-websocket-accept") == Some(tunnel.accept.as_bytes()) {
                self.message = Message::Passthrough;
                tunnel.touch();
                tunnel.open.store(true, Ordering::Release);
            } else {
                tracing::warn!(target: "ords_guard::limits", "the upstream answered a WebSocket handshake 101 without the Sec-WebSocket-Accept it owes: not tunnelled, connection closed");
                self.handshake = None;
                self.pending.clear();
                self.eof = true;
            }
        } else if !buf.starts_with(b"HTTP/1.1 1") {
            self.handshake = None;
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if self.handshake.is_some() && !buf.is_empty() {
            self.note_write(buf);
        }
        let wrote = Pin::new(&mut self.io).poll_write(cx, buf);
        if let (Some(watch), Poll::Ready(Ok(n))) = (&mut self.h2, &wrote) {
            watch.wrote(&buf[..*n]);
        }
        wrote
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
        if let Some(first) = bufs.iter().find(|b| !b.is_empty()) {
            if self.handshake.is_some() {
                self.note_write(first);
            }
        }
        let wrote = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        if let (Some(watch), Poll::Ready(Ok(n))) = (&mut self.h2, &wrote) {
            let mut left = *n;
            for b in bufs {
                let take = left.min(b.len());
                watch.wrote(&b[..take]);
                left -= take;
                if left == 0 {
                    break;
                }
            }
        }
        wrote
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

    /// On tokio's paused clock: a tunnel is bounded by the deadline until it opens, then by
    /// the time since its last byte, however long it lives.
    #[tokio::test(start_paused = true)]
    async fn a_tunnel_is_cut_only_after_idle_without_a_byte() {
        let idle = Duration::from_secs(10);
        let tunnel = Tunnel::new(String::new());
        let cut_at = Instant::now() + Duration::from_secs(5);
        let never = std::future::pending::<()>();
        let r = bound_tunnel(never, cut_at, &tunnel, idle).await;
        assert!(
            matches!(r, Err(Cut::RequestTotal)),
            "not open by the deadline"
        );
        assert_eq!(Instant::now(), cut_at);

        tunnel.touch();
        tunnel.open.store(true, Ordering::Release);
        let opened = Instant::now();
        // A byte every 8 s for 40 s, then silence.
        let busy_then_silent = async {
            for _ in 0..5 {
                tokio::time::sleep(Duration::from_secs(8)).await;
                tunnel.touch();
            }
            std::future::pending::<()>().await
        };
        let r = bound_tunnel(busy_then_silent, cut_at, &tunnel, idle).await;
        assert!(matches!(r, Err(Cut::TunnelIdle)));
        assert_eq!(
            opened.elapsed(),
            Duration::from_secs(40) + idle + HARD_CUT_AFTER
        );

        // A tunnel that ends by itself is served whole.
        let r = bound_tunnel(async { 7 }, cut_at, &tunnel, idle).await;
        assert!(matches!(r, Ok(7)));
    }
}
