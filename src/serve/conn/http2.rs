//! HTTP/2 under the connection guard (SPEC §17): the connection is handed to the `h2` crate
//! (through pingora's handshake, with the guard's limits as its SETTINGS), and each stream
//! is served on a task of its own by the same app as an HTTP/1.1 request, with the same
//! per-request deadline and the guard's per-request limits checked first.
//!
//! What `h2` bounds itself, with the limits given here: a header list over
//! `limits.max_header_bytes` is answered 431 and reset (over 4 times that: GOAWAY), streams
//! beyond `limits.h2_max_concurrent_streams` are refused, CONTINUATION floods, malformed
//! requests (upper-case names, connection-specific headers) and rapid resets end in a
//! reset or a GOAWAY. pingora answers a `Host` that differs from `:authority` with 400.

use super::{Conn, Guarded, Message, Refusal, DEADLINE, HARD_CUT_AFTER, LINGER, PROXY_LISTENER};
use crate::registry::Limits;
use pingora::apps::HttpServerApp;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::protocols::http::v2::server::{handshake, H2Accept, H2Options, HttpSession};
use pingora::protocols::http::ServerSession;
use pingora::protocols::{Digest, Stream};
use pingora::server::ShutdownWatch;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::time::{timeout_at, Instant};

/// Streams of one connection still being served.
struct Running(Arc<AtomicUsize>);

impl Running {
    fn enter(count: &Arc<AtomicUsize>) -> Running {
        count.fetch_add(1, Ordering::AcqRel);
        Running(count.clone())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Serve an HTTP/2 connection until it closes. `over`: the connection is beyond
/// `limits.max_connections`, so its streams are answered 503. The handshake (the preface
/// and SETTINGS) must be done by `handshake_until`; the connection is closed with GOAWAY
/// after `timeouts.client_idle_ms` with no stream, and on shutdown.
pub(super) async fn serve<A: HttpServerApp + Send + Sync + 'static>(
    guarded: &Arc<Guarded<A>>,
    mut conn: Box<Conn>,
    limits: &Limits,
    over: bool,
    handshake_until: Instant,
    shutdown: &ShutdownWatch,
) -> Option<Stream> {
    conn.message = Message::Passthrough;
    let digest = Arc::new(Digest {
        ssl_digest: conn.io.get_ssl_digest(),
        timing_digest: conn.io.get_timing_digest(),
        proxy_digest: conn.io.get_proxy_digest(),
        socket_digest: conn.io.get_socket_digest(),
    });
    let mut options = H2Options::new();
    options
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        .max_concurrent_streams(limits.h2_max_concurrent_streams);
    let mut h2 = match timeout_at(handshake_until, handshake(conn as Stream, Some(options))).await {
        Ok(Ok(h2)) => h2,
        _ => return None,
    };
    let running = Arc::new(AtomicUsize::new(0));
    let mut stop = shutdown.clone();
    let mut idle_until = Instant::now() + limits.client_idle;
    // Once closing (GOAWAY sent), what runs may finish, within its own deadline.
    let mut closing: Option<Instant> = None;
    loop {
        let accepted = tokio::select! {
            a = HttpSession::from_h2_conn(&mut h2, digest.clone()) => a,
            Ok(_) = stop.wait_for(|stop| *stop), if closing.is_none() => {
                h2.graceful_shutdown();
                closing = Some(Instant::now() + limits.request_total + HARD_CUT_AFTER);
                continue;
            }
            _ = tokio::time::sleep_until(idle_until), if closing.is_none() => {
                if running.load(Ordering::Acquire) == 0 {
                    h2.graceful_shutdown();
                    closing = Some(Instant::now() + LINGER);
                } else {
                    idle_until = Instant::now() + limits.client_idle;
                }
                continue;
            }
            _ = tokio::time::sleep_until(closing.unwrap_or(idle_until)), if closing.is_some() => {
                return None;
            }
        };
        let stream = match accepted {
            Ok(Some(H2Accept::Session(stream))) => stream,
            // pingora answered it (400) or reset it: a malformed request, never forwarded.
            Ok(Some(H2Accept::Rejected)) => {
                if guarded.listener == PROXY_LISTENER {
                    guarded.guard.metrics.requests.inc("bad_request");
                }
                continue;
            }
            Ok(None) => return None,
            Err(e) => {
                tracing::debug!(target: "ords_guard::limits", listener = guarded.listener, error = %e, "HTTP/2 connection ended");
                return None;
            }
        };
        idle_until = Instant::now() + limits.client_idle;
        let task = Stream2 {
            app: guarded.app.clone(),
            guard: guarded.guard.clone(),
            listener: guarded.listener,
            limits: limits.clone(),
            over,
            shutdown: shutdown.clone(),
            running: Running::enter(&running),
        };
        tokio::spawn(task.serve(ServerSession::new_http2(stream)));
        if over && closing.is_none() {
            // Its first stream is told why (503); the connection takes no more.
            h2.graceful_shutdown();
            closing = Some(Instant::now() + LINGER);
        }
    }
}

/// One stream's task: what it needs of the connection.
struct Stream2<A> {
    app: Arc<A>,
    guard: Arc<crate::serve::state::Guard>,
    listener: &'static str,
    limits: Limits,
    over: bool,
    shutdown: ShutdownWatch,
    running: Running,
}

impl<A: HttpServerApp + Send + Sync + 'static> Stream2<A> {
    async fn serve(self, session: ServerSession) {
        let _running = self.running;
        if let Some(r) = refusal(session.req_header(), &self.limits, self.over) {
            self.guard.metrics.limit_rejections.inc(r.limit());
            tracing::warn!(target: "ords_guard::limits", listener = self.listener, limit = r.limit(), protocol = "HTTP/2", "request refused by a limit");
            answer(session, r, &self.limits).await;
            return;
        }
        // The same deadline as an HTTP/1.1 request's, from the moment the stream's head is in.
        let deadline = Instant::now() + self.limits.request_total;
        let served = timeout_at(
            deadline + HARD_CUT_AFTER,
            DEADLINE.scope(deadline, self.app.process_new_http(session, &self.shutdown)),
        )
        .await;
        if served.is_err() {
            self.guard
                .metrics
                .limit_rejections
                .inc(crate::serve::metrics::REQUEST_TOTAL_TIMEOUT);
            tracing::warn!(target: "ords_guard::limits", listener = self.listener, limit = "request_total_timeout", protocol = "HTTP/2", "request cut: still running after timeouts.request_total_ms");
        }
    }
}

/// The guard's limits on one stream: the connection count, and the header count with the
/// pseudo-header fields (h2 has no bound on the count; it bounds the bytes itself).
fn refusal(req: &RequestHeader, l: &Limits, over: bool) -> Option<Refusal> {
    if over {
        return Some(Refusal::Connections);
    }
    let pseudo =
        2 + usize::from(req.uri.scheme().is_some()) + usize::from(req.uri.authority().is_some());
    (req.headers.len() + pseudo > l.max_headers).then_some(Refusal::Headers)
}

/// The refusal as a problem document on the stream, bounded in time like HTTP/1.1's.
async fn answer(mut session: ServerSession, r: Refusal, l: &Limits) {
    let (status, title, detail, extra) = r.response(l);
    let body = crate::serve::pipeline::problem(status, title, &detail);
    let Ok(mut head) = ResponseHeader::build(status, Some(3)) else {
        return;
    };
    let _ = head.insert_header(http::header::CONTENT_TYPE, "application/problem+json");
    let _ = head.insert_header(http::header::CONTENT_LENGTH, body.len());
    if !extra.is_empty() {
        let _ = head.insert_header(http::header::RETRY_AFTER, "1");
    }
    let _ = timeout_at(Instant::now() + LINGER, async {
        session.write_response_header(Box::new(head)).await?;
        session.write_response_body(body.into(), true).await?;
        session.finish().await
    })
    .await;
}
