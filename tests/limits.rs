//! Limits (issue #6): each configurable limit, hit over real connections, answers with a
//! clear status (or, for an idle connection, a close) instead of hanging.

mod common;

use common::*;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn get_with_headers(n: usize, value_len: usize) -> Vec<u8> {
    let mut r = b"GET /public/x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n".to_vec();
    for i in 0..n {
        r.extend_from_slice(format!("X-H{i}: {}\r\n", "v".repeat(value_len)).as_bytes());
    }
    r.extend_from_slice(b"\r\n");
    r
}

#[tokio::test]
async fn oversized_heads_are_431_and_never_forwarded() {
    let backend = Backend::start().await;
    let g = Guard::start(Options {
        extra: "limits:\n  max_header_bytes: 2048\n  max_headers: 10\n".into(),
        ..Options::new(&backend)
    })
    .await;

    // Within both limits (9 headers, ~1.5 KiB): forwarded.
    let (code, _) = g.raw(&get_with_headers(7, 150)).await;
    assert_eq!(code, 200);
    assert_eq!(backend.count(), 1);

    let (code, text) = g.raw(&get_with_headers(1, 3000)).await;
    assert_eq!(code, 431, "{text}");
    assert!(text.contains("application/problem+json"), "{text}");
    assert!(text.contains("limits.max_header_bytes"), "{text}");
    assert!(text.contains("Connection: close"), "{text}");

    // 2 + 9 = 11 header lines, each short.
    let (code, text) = g.raw(&get_with_headers(9, 1)).await;
    assert_eq!(code, 431, "{text}");
    assert!(text.contains("more than 10 header lines"), "{text}");

    // Logged with the limit and the peer, never the header's content.
    let log = g
        .output_with(r#""limit":"max_header_bytes","status":431"#)
        .await;
    assert!(
        log.contains(r#""limit":"max_header_bytes","status":431,"peer":"127.0.0.1""#),
        "{log}"
    );
    assert!(!log.contains(&"v".repeat(150)), "header content logged");

    // pingora's own ceiling (1 MiB) is far away: ours answered, and nothing passed.
    assert_eq!(backend.count(), 1);
    assert_eq!(
        g.metric("ords_guard_limit_rejections_total{limit=\"max_header_bytes\"}")
            .await,
        1.0
    );
    assert_eq!(
        g.metric("ords_guard_limit_rejections_total{limit=\"max_headers\"}")
            .await,
        1.0
    );
}

#[tokio::test]
async fn slow_heads_are_408_and_idle_connections_are_closed() {
    let backend = Backend::start().await;
    let g = Guard::start(Options {
        timeouts: "  client_header_ms: 300\n  client_idle_ms: 300\n".into(),
        ..Options::new(&backend)
    })
    .await;

    // Slowloris: half a head, then nothing. The read below ends when the guard answers.
    let (code, text) = g.raw(b"GET /public/x HTTP/1.1\r\nHost: a\r\n").await;
    assert_eq!(code, 408, "{text}");
    assert!(text.contains("timeouts.client_header_ms"), "{text}");

    // A connection that never sends a byte is closed without an answer.
    let (code, text) = g.raw(b"").await;
    assert_eq!((code, text.as_str()), (0, ""));

    // Keep-alive: the response arrives, then the idle connection is closed (read_to_end
    // returns only because the guard closes it; `raw` bounds the wait at 10 s).
    let (code, text) = g.raw(b"GET /public/x HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert_eq!(code, 200, "{text}");
    assert!(text.ends_with("backend ok"), "{text}");

    assert_eq!(backend.count(), 1);
    assert_eq!(
        g.metric("ords_guard_limit_rejections_total{limit=\"client_header_timeout\"}")
            .await,
        1.0
    );
}

#[tokio::test]
async fn request_total_bounds_a_slow_upstream_and_a_stalled_body() {
    let backend = Backend::start().await;
    let g = Guard::start(Options {
        // upstream_read_ms stays 30 s: only the total can end these.
        timeouts: "  request_total_ms: 700\n".into(),
        ..Options::new(&backend)
    })
    .await;

    let r = g.http.get(g.url("/public/slow")).send().await.unwrap();
    assert_eq!(r.status(), 504);
    assert_eq!(
        r.headers()["content-type"].to_str().unwrap(),
        "application/problem+json"
    );

    // The body promises 100 bytes and sends 10.
    let (code, text) = g
        .raw(b"POST /public/x HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n0123456789")
        .await;
    assert_eq!(code, 408, "{text}");

    assert_eq!(
        g.metric("ords_guard_limit_rejections_total{limit=\"request_total_timeout\"}")
            .await,
        2.0
    );
    // Fast requests are unaffected.
    let r = g.http.get(g.url("/public/x")).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn connections_beyond_the_limit_get_503() {
    let backend = Backend::start().await;
    let g = Guard::start(Options {
        extra: "limits:\n  max_connections: 2\n".into(),
        timeouts: "  client_header_ms: 30000\n".into(),
        ..Options::new(&backend)
    })
    .await;
    let open = "ords_guard_connections{listener=\"proxy\"}";

    let first = TcpStream::connect(g.proxy).await.unwrap();
    let _second = TcpStream::connect(g.proxy).await.unwrap();
    g.wait_metric(open, |v| v == 2.0).await;

    let (code, text) = g.raw(b"GET /public/x HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert_eq!(code, 503, "{text}");
    assert!(text.contains("Retry-After: 1"), "{text}");
    assert!(text.contains("limits.max_connections"), "{text}");
    assert_eq!(backend.count(), 0);

    // A place frees up: served again.
    drop(first);
    g.wait_metric(open, |v| v == 1.0).await;
    let (code, _) = g
        .raw(b"GET /public/x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        .await;
    assert_eq!(code, 200);
    assert_eq!(
        g.metric("ords_guard_limit_rejections_total{limit=\"max_connections\"}")
            .await,
        1.0
    );
}

#[tokio::test]
async fn token_body_and_bearer_limits_are_configurable() {
    let backend = Backend::start().await;
    let g = Guard::start(Options {
        extra: "limits:\n  max_token_body_bytes: 256\n  max_bearer_bytes: 1024\n".into(),
        ..Options::new(&backend)
    })
    .await;

    let padded = format!(
        "grant_type=client_credentials&client_id=example-client&client_secret={EXAMPLE_SECRET}&x={}",
        "p".repeat(200)
    );
    let r = g
        .http
        .post(g.url("/oauth/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(padded)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["error"], "invalid_request");
    assert!(
        v["error_description"]
            .as_str()
            .unwrap()
            .contains("larger than 256 bytes"),
        "{v}"
    );

    // A real token fits; a longer one is refused unparsed.
    let token = g.token("example-client", EXAMPLE_SECRET, None).await;
    assert!(token.len() < 1024, "{}", token.len());
    let r = g.get_as("/example/1", &token).await;
    assert_eq!(r.status(), 200);
    let r = g.get_as("/example/1", "a".repeat(1025)).await;
    assert_eq!(r.status(), 401);
    let www = r.headers()["www-authenticate"].to_str().unwrap();
    assert!(
        www.contains("invalid_token") && www.contains("too long"),
        "{www}"
    );
}

#[tokio::test]
async fn idle_upstream_connections_are_closed() {
    let backend = Backend::start().await;
    let g = Guard::start(Options {
        timeouts: "  upstream_idle_ms: 200\n".into(),
        ..Options::new(&backend)
    })
    .await;
    let r = g.http.get(g.url("/public/x")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    // The pooled connection is closed by the proxy once idle (the default keeps it 60 s).
    eventually("the upstream connection to close", || async {
        backend.closed.load(std::sync::atomic::Ordering::Acquire) > 0
    })
    .await;
}

#[tokio::test]
async fn a_refused_head_reaches_a_client_still_sending() {
    // The client keeps writing a huge head; the 431 must still arrive (no reset eats it).
    let backend = Backend::start().await;
    let g = Guard::start(Options {
        extra: "limits:\n  max_header_bytes: 1024\n".into(),
        ..Options::new(&backend)
    })
    .await;
    let mut s = TcpStream::connect(g.proxy).await.unwrap();
    let mut head = b"GET /public/x HTTP/1.1\r\nHost: a\r\nX-Big: ".to_vec();
    head.extend(std::iter::repeat_n(b'a', 64 * 1024));
    let _ = s.write_all(&head).await;
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf))
        .await
        .expect("an answer within 10 s");
    let text = String::from_utf8_lossy(&buf);
    assert!(text.starts_with("HTTP/1.1 431 "), "{text}");
}

#[tokio::test]
async fn limits_hold_for_every_request_on_a_keep_alive_connection() {
    let backend = Backend::start().await;
    let g = Guard::start(Options {
        extra: "limits:\n  max_header_bytes: 2048\n".into(),
        ..Options::new(&backend)
    })
    .await;
    let mut s = TcpStream::connect(g.proxy).await.unwrap();
    s.write_all(b"GET /public/x HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    // Read the first response whole (its body is `backend ok`), keeping the connection.
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.ends_with(b"backend ok") {
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut chunk))
            .await
            .expect("first response within 10 s")
            .unwrap();
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&buf));
        buf.extend_from_slice(&chunk[..n]);
    }
    assert!(buf.starts_with(b"HTTP/1.1 200 "));

    let mut second = b"GET /public/x HTTP/1.1\r\nHost: a\r\nX-Big: ".to_vec();
    second.extend(std::iter::repeat_n(b'a', 3000));
    second.extend_from_slice(b"\r\n\r\n");
    s.write_all(&second).await.unwrap();
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut rest))
        .await
        .expect("second response within 10 s");
    let text = String::from_utf8_lossy(&rest);
    assert!(text.starts_with("HTTP/1.1 431 "), "{text}");
    assert_eq!(backend.count(), 1);
}

/// A backend that holds every request until the test lets one go, counting the
/// connections it accepted and the requests it has at once.
struct HeldBackend {
    addr: std::net::SocketAddr,
    release: std::sync::Arc<tokio::sync::Semaphore>,
    accepted: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    arrived: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    peak: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl HeldBackend {
    async fn start() -> HeldBackend {
        use std::sync::atomic::{AtomicUsize, Ordering::AcqRel};
        use std::sync::Arc;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let release = Arc::new(tokio::sync::Semaphore::new(0));
        let [accepted, arrived, peak, at_once] =
            std::array::from_fn(|_| Arc::new(AtomicUsize::new(0)));
        let b = HeldBackend {
            addr,
            release: release.clone(),
            accepted: accepted.clone(),
            arrived: arrived.clone(),
            peak: peak.clone(),
        };
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                accepted.fetch_add(1, AcqRel);
                let (release, arrived, peak, at_once) = (
                    release.clone(),
                    arrived.clone(),
                    peak.clone(),
                    at_once.clone(),
                );
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    loop {
                        // Bodiless GETs: a request is its head.
                        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                            let mut chunk = [0u8; 4096];
                            match s.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                        }
                        let end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
                        buf.drain(..end);
                        arrived.fetch_add(1, AcqRel);
                        peak.fetch_max(at_once.fetch_add(1, AcqRel) + 1, AcqRel);
                        release.acquire().await.unwrap().forget();
                        at_once.fetch_sub(1, AcqRel);
                        let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
                        if s.write_all(ok).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        b
    }

    fn get(n: &std::sync::atomic::AtomicUsize) -> usize {
        n.load(std::sync::atomic::Ordering::Acquire)
    }
}

/// `n` GETs of a public path at once, each on its own connection: status and body.
fn send_public(g: &Guard, n: usize) -> Vec<tokio::task::JoinHandle<(u16, String)>> {
    (0..n)
        .map(|_| {
            let (http, url) = (g.http.clone(), g.url("/public/x"));
            tokio::spawn(async move {
                let r = http.get(url).send().await.unwrap();
                (r.status().as_u16(), r.text().await.unwrap())
            })
        })
        .collect()
}

/// A guard in front of `b` allowing it two connections, waiting at most `connect_ms`.
async fn guard_allowing_two(b: &HeldBackend, connect_ms: u64) -> Guard {
    let mut o = Options::new(&Backend::start().await);
    o.upstream = format!("http://{}", b.addr);
    o.connect_ms = connect_ms;
    o.extra = "limits:\n  max_upstream_connections: 2\n".into();
    // One worker, so a connection given back to pingora's pool is the one the next request
    // takes. With two, that request can run on the other thread while the first is still
    // dropping the pool's lock, and pingora then opens a new connection instead (its
    // `reused_stream` needs the last reference): a rare third `accepted` in CI.
    o.threads = 1;
    Guard::start(o).await
}

#[tokio::test]
async fn requests_beyond_max_upstream_connections_wait_for_one_and_reuse_it() {
    let b = HeldBackend::start().await;
    let g = guard_allowing_two(&b, 20_000).await;
    let sends = send_public(&g, 3);
    eventually("two requests at the backend", || async {
        HeldBackend::get(&b.arrived) == 2
    })
    .await;
    g.wait_metric("ords_guard_upstream_requests_waiting", |v| v == 1.0)
        .await;
    assert_eq!(
        HeldBackend::get(&b.arrived),
        2,
        "the third waits at the proxy"
    );

    // A client that gives up while in line leaves it: its request never goes out.
    let mut gone = TcpStream::connect(g.proxy).await.unwrap();
    gone.write_all(b"GET /public/gone HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    g.wait_metric("ords_guard_upstream_requests_waiting", |v| v == 2.0)
        .await;
    drop(gone);
    g.wait_metric("ords_guard_upstream_requests_waiting", |v| v == 1.0)
        .await;

    // One answer frees a connection: the waiting request goes out on it.
    b.release.add_permits(1);
    eventually("the waiting request at the backend", || async {
        HeldBackend::get(&b.arrived) == 3
    })
    .await;
    assert_eq!(g.metric("ords_guard_upstream_requests_waiting").await, 0.0);
    b.release.add_permits(2);
    for s in sends {
        assert_eq!(s.await.unwrap(), (200, "ok".to_string()));
    }
    assert_eq!(HeldBackend::get(&b.peak), 2);
    assert_eq!(
        HeldBackend::get(&b.arrived),
        3,
        "the departed client's request was dropped"
    );
    assert_eq!(
        HeldBackend::get(&b.accepted),
        2,
        "the freed connection was reused"
    );
}

#[tokio::test]
async fn a_request_that_finds_no_upstream_connection_within_the_connect_timeout_gets_502() {
    let b = HeldBackend::start().await;
    let g = guard_allowing_two(&b, 300).await;
    let held = send_public(&g, 2);
    eventually("two requests at the backend", || async {
        HeldBackend::get(&b.arrived) == 2
    })
    .await;

    let r = g.http.get(g.url("/public/third")).send().await.unwrap();
    assert_eq!(r.status(), 502);
    assert_eq!(
        r.headers()["content-type"].to_str().unwrap(),
        "application/problem+json"
    );
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["status"], 502);
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("connection limit"),
        "{body}"
    );
    assert_eq!(HeldBackend::get(&b.arrived), 2, "never sent to the backend");
    assert_eq!(
        g.metric("ords_guard_upstream_errors_total{kind=\"connection_limit\"}")
            .await,
        1.0
    );
    assert_eq!(
        g.metric("ords_guard_upstream_errors_total{kind=\"connect\"}")
            .await,
        0.0
    );
    let line = g.output_with("upstream_connection_limit").await;
    assert!(line.contains("/public/third"), "{line}");

    b.release.add_permits(3);
    for h in held {
        assert_eq!(h.await.unwrap().0, 200);
    }
    let r = g.http.get(g.url("/public/x")).send().await.unwrap();
    assert_eq!(r.status(), 200, "served again once a connection is free");
    assert_eq!(HeldBackend::get(&b.accepted), 2);
}
