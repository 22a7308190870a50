//! HTTP/2 under the connection guard (SPEC §17): the connection is handed to the `h2` crate
//! (through pingora's handshake, with the guard's limits as its SETTINGS), and each stream
//! is served on a task of its own by the same app as an HTTP/1.1 request, with the same
//! per-request deadline and the guard's per-request checks first.
//!
//! What `h2` bounds itself, with the limits given here: a header list over
//! `limits.max_header_bytes` is answered 431 and reset (over 4 times that: GOAWAY), streams
//! beyond `limits.h2_max_concurrent_streams` are refused, CONTINUATION floods, malformed
//! requests (upper-case names, connection-specific headers) and resets of streams not yet
//! accepted end in a reset or a GOAWAY. pingora answers a `Host` that differs from
//! `:authority` with 400. SPEC §17's own bounds and the count of every abuse kind, h2's
//! included, are [`super::h2watch`]'s, read off the frames; the stream tasks a connection
//! runs (a stream the client resets leaves h2's count, not its task's) are bounded here.

use super::h2watch::{Abuse, H2Watch, Signal, MAX_IN_WINDOW};
use super::head::Malformed;
use super::{Conn, Guarded, Message, Refusal, DEADLINE, HARD_CUT_AFTER, LINGER, PROXY_LISTENER};
use crate::registry::Limits;
use pingora::apps::HttpServerApp;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::protocols::http::v2::server::{handshake, H2Accept, H2Options, HttpSession};
use pingora::protocols::http::ServerSession;
use pingora::protocols::{Digest, Stream};
use pingora::server::ShutdownWatch;
use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{timeout_at, Instant};

/// Stream tasks one connection may run, per announced concurrent stream: a task outlives
/// its stream for a moment (the log line), and a client that resets its streams frees h2's
/// count at once; past this the client is resetting streams faster than they are served.
const TASKS_PER_STREAM: usize = 2;

/// Serve an HTTP/2 connection until it closes, and until its streams' tasks are done (the
/// connection's place in `max_connections` covers them). `over`: the connection is beyond
/// `limits.max_connections`: its first stream is answered 503 and no other is taken. The
/// handshake (preface and SETTINGS) and the first stream must come by `first_until`; after
/// that the connection is closed with GOAWAY after `timeouts.client_idle_ms` with no stream
/// running, and on shutdown.
pub(super) async fn serve<A: HttpServerApp + Send + Sync + 'static>(
    guarded: &Arc<Guarded<A>>,
    mut conn: Box<Conn>,
    limits: &Limits,
    over: bool,
    first_until: Instant,
    shutdown: &ShutdownWatch,
) -> Option<Stream> {
    conn.message = Message::Passthrough;
    let abuse = Arc::new(Signal::default());
    conn.h2 = Some(Box::new(H2Watch::new(
        abuse.clone(),
        limits.max_header_bytes,
    )));
    let digest = Arc::new(Digest {
        ssl_digest: conn.io.get_ssl_digest(),
        timing_digest: conn.io.get_timing_digest(),
        proxy_digest: conn.io.get_proxy_digest(),
        socket_digest: conn.io.get_socket_digest(),
    });
    let mut options = H2Options::new();
    options
        // h2 refuses a list of this size or more: a list of exactly max_header_bytes passes.
        .max_header_list_size(u32::try_from(limits.max_header_bytes + 1).unwrap_or(u32::MAX))
        .max_concurrent_streams(limits.h2_max_concurrent_streams)
        // h2's own counts would close a connection below SPEC's windowed bounds, which the
        // watch keeps: resets of streams not yet accepted (20 by default), and stream
        // errors over the connection's whole life (1,024).
        .max_pending_accept_reset_streams(MAX_IN_WINDOW)
        .max_local_error_reset_streams(None);
    let mut h2 = match timeout_at(first_until, handshake(conn as Stream, Some(options))).await {
        Ok(Ok(h2)) => h2,
        _ => return None,
    };
    let tasks = limits.h2_max_concurrent_streams as usize * TASKS_PER_STREAM;
    let running = Arc::new(Semaphore::new(tasks));
    let mut stop = shutdown.clone();
    // No stream yet: the first must come as an HTTP/1.1 connection's first head must.
    let mut idle_until = first_until;
    // Once closing (GOAWAY sent): streams accepted meanwhile are served, within their own
    // deadlines; the connection ends when h2 has nothing left or at this instant.
    let mut closing: Option<Instant> = None;
    let busy_until = || Instant::now() + limits.request_total + HARD_CUT_AFTER;
    loop {
        let accepted = tokio::select! {
            a = HttpSession::from_h2_conn(&mut h2, digest.clone()) => a,
            // Answered below (no await in here: the other branches' outputs are held).
            _ = abuse.notify.notified() => break,
            Ok(_) = stop.wait_for(|stop| *stop), if closing.is_none() => {
                h2.graceful_shutdown();
                closing = Some(busy_until());
                continue;
            }
            _ = tokio::time::sleep_until(idle_until), if closing.is_none() => {
                if running.available_permits() == tasks {
                    h2.graceful_shutdown();
                    closing = Some(Instant::now() + LINGER);
                } else {
                    // Streams run: idle is counted again from now.
                    idle_until = Instant::now() + limits.client_idle;
                }
                continue;
            }
            _ = tokio::time::sleep_until(closing.unwrap_or(idle_until)), if closing.is_some() => {
                break;
            }
        };
        let stream = match accepted {
            Ok(Some(H2Accept::Session(stream))) => stream,
            // pingora answered it (400) or reset it: a malformed request, never forwarded
            // (its reset counts toward invalid_frames in the watch).
            Ok(Some(H2Accept::Rejected)) => {
                if guarded.listener == PROXY_LISTENER {
                    guarded.guard.metrics.requests.inc("bad_request");
                }
                continue;
            }
            Ok(None) => break,
            Err(e) => {
                // h2's own GOAWAYs for abuse are named and counted from the watch below.
                tracing::debug!(target: "ords_guard::limits", listener = guarded.listener, error = %e, "HTTP/2 connection ended");
                break;
            }
        };
        let Ok(permit) = running.clone().try_acquire_owned() else {
            // Streams reset faster than they are served: more tasks than streams allowed.
            abuse.trip(Abuse::RapidReset);
            break;
        };
        idle_until = Instant::now() + limits.client_idle;
        if closing.is_some() {
            // Accepted while the GOAWAY travelled: it is served, so the connection waits.
            closing = Some(busy_until());
        }
        let task = StreamTask {
            app: guarded.app.clone(),
            guard: guarded.guard.clone(),
            listener: guarded.listener,
            limits: limits.clone(),
            over,
            shutdown: shutdown.clone(),
            _running: permit,
        };
        tokio::spawn(task.serve(ServerSession::new_http2(stream)));
        if over && closing.is_none() {
            // Its first stream is told why (503); the connection takes no more.
            h2.graceful_shutdown();
            closing = Some(busy_until());
        }
    }
    if let Some(kind) = abuse.get() {
        // Also when h2 noticed first and has sent its own GOAWAY: then this one is not sent.
        h2.abrupt_shutdown(kind.reason());
        flush_goaway(&mut h2, &digest).await;
        guarded.guard.metrics.h2_abuse.inc(kind.kind());
        tracing::warn!(target: "ords_guard::limits", listener = guarded.listener, kind = kind.kind(), peer = %digest.socket_digest.as_ref().and_then(|d| d.peer_addr()).map_or_else(|| "-".to_string(), |a| a.to_string()), "HTTP/2 connection closed for abuse with GOAWAY {}", kind.reason());
    }
    // The connection is gone (its streams' I/O fails from here); its place is held until
    // every stream's task has ended, as an HTTP/1.1 connection's is while its request runs.
    drop(h2);
    let all = u32::try_from(tasks).unwrap_or(u32::MAX);
    let _ = timeout_at(busy_until(), running.acquire_many(all)).await;
    None
}

/// Drive the connection a moment longer so its GOAWAY is written (streams that arrive
/// meanwhile are dropped: reset).
async fn flush_goaway(h2: &mut h2::server::Connection<Stream, bytes::Bytes>, digest: &Arc<Digest>) {
    let _ = timeout_at(Instant::now() + LINGER, async {
        while let Ok(Some(_)) = HttpSession::from_h2_conn(h2, digest.clone()).await {}
    })
    .await;
}

/// One stream's task: what it needs of the connection.
struct StreamTask<A> {
    app: Arc<A>,
    guard: Arc<crate::serve::state::Guard>,
    listener: &'static str,
    limits: Limits,
    over: bool,
    shutdown: ShutdownWatch,
    /// The connection's count of running stream tasks.
    _running: OwnedSemaphorePermit,
}

/// Why the guard answers a stream itself.
enum Refused {
    Limit(Refusal),
    Malformed(Malformed),
}

impl<A: HttpServerApp + Send + Sync + 'static> StreamTask<A> {
    async fn serve(self, session: ServerSession) {
        match refusal(session.req_header(), &self.limits, self.over) {
            Some(Refused::Limit(r)) => {
                self.guard.metrics.limit_rejections.inc(r.limit());
                tracing::warn!(target: "ords_guard::limits", listener = self.listener, limit = r.limit(), protocol = "HTTP/2", "request refused by a limit");
                let (status, title, detail, extra) = r.response(&self.limits);
                answer(session, status, title, &detail, !extra.is_empty()).await;
                return;
            }
            Some(Refused::Malformed(m)) => {
                if self.listener == PROXY_LISTENER {
                    self.guard.metrics.requests.inc("bad_request");
                }
                tracing::warn!(target: "ords_guard::access", listener = self.listener, status = m.status(), decision = "bad_request", protocol = "HTTP/2", reason = %m, "request head refused");
                let detail = format!("{m}; the request was not forwarded");
                answer(session, m.status(), m.title(), &detail, false).await;
                return;
            }
            None => {}
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

/// The guard's checks on one stream: the connection count; the header count with the
/// pseudo-header fields (h2 bounds the bytes, not the count); and the framing look-alikes
/// the HTTP/1.1 reader refuses (`content_length`), which would reach an HTTP/1.1 backend
/// beside the framing pingora writes.
fn refusal(req: &RequestHeader, l: &Limits, over: bool) -> Option<Refused> {
    if over {
        return Some(Refused::Limit(Refusal::Connections));
    }
    // :method, :scheme and :path, and :authority when sent (h2 keeps no :scheme in the URI
    // without an authority, so it is counted as sent: every request but CONNECT has it).
    let pseudo = 3 + usize::from(req.uri.authority().is_some());
    if req.headers.len() + pseudo > l.max_headers {
        return Some(Refused::Limit(Refusal::Headers));
    }
    let lookalike = req.headers.keys().any(|name| {
        name.as_str().eq_ignore_ascii_case("content_length")
            || name.as_str().eq_ignore_ascii_case("transfer_encoding")
    });
    lookalike.then_some(Refused::Malformed(Malformed::FramingLookalike))
}

/// A problem document on the stream, bounded in time like HTTP/1.1's refusals.
async fn answer(mut session: ServerSession, status: u16, title: &str, detail: &str, retry: bool) {
    let body = crate::serve::pipeline::problem(status, title, detail);
    let Ok(mut head) = ResponseHeader::build(status, Some(3)) else {
        return;
    };
    let _ = head.insert_header(http::header::CONTENT_TYPE, "application/problem+json");
    let _ = head.insert_header(http::header::CONTENT_LENGTH, body.len());
    if retry {
        let _ = head.insert_header(http::header::RETRY_AFTER, "1");
    }
    let _ = timeout_at(Instant::now() + LINGER, async {
        session.write_response_header(Box::new(head)).await?;
        session.write_response_body(body.into(), true).await?;
        session.finish().await
    })
    .await;
}
