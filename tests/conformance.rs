//! RFC 9112 strictness over raw sockets: request lines that are not exactly `method SP
//! target SP version`, heads pingora would refuse with a bare 400 or repair, and
//! pipelined requests, each served in order and decided on its own.

mod common;

use common::{content_length, Backend, Guard, Options, ADMIN_SECRET};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Every refusal is problem+json with its status, and closes the connection.
fn assert_problem(text: &str, status: u16, what: &str) {
    assert!(
        text.starts_with(&format!("HTTP/1.1 {status} ")),
        "{what}: {text}"
    );
    assert!(
        text.contains("Content-Type: application/problem+json")
            && text.contains(&format!("\"status\":{status}")),
        "{what}: {text}"
    );
}

#[tokio::test]
async fn malformed_request_lines_and_heads_are_400_problems_never_forwarded() {
    let backend = Backend::start().await;
    let g = Guard::start(Options::new(&backend)).await;
    let heads: [&[u8]; 17] = [
        // A raw space in the target: pingora would escape it to %20 and forward it.
        b"GET /public/a b HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET /public/a\tb HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET  /public/a HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET /public/a  HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET /public/a http/1.1\r\nHost: a\r\n\r\n",
        b"GET /public/a HTTP/1.2\r\nHost: a\r\n\r\n",
        b"GET /public/a HTTP/2.0\r\nHost: a\r\n\r\n",
        b"GET /public/a\r\nHost: a\r\n\r\n",
        b"G@T /public/a HTTP/1.1\r\nHost: a\r\n\r\n",
        // Heads httparse cannot parse (pingora's plain 400 before).
        b"GET /public/a HTTP/1.1\r\nHost: a\r\nBad(Name): 1\r\n\r\n",
        b"GET /public/a HTTP/1.1\r\nHost: a\r\nNo colon\r\n\r\n",
        // Headers pingora refuses once it has parsed them.
        b"GET /public/a HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        b"GET /public/a HTTP/1.1\r\nHost: a\r\nConnection: close, :authority\r\n\r\n",
        b"GET /public/a HTTP/1.1\r\nHost: a\r\nConnection: Host\r\n\r\n",
        b"GET /public/a HTTP/1.1\r\n\r\n",
        // Authority-form and CONNECT.
        b"CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\n\r\n",
        b"OPTIONS a.example:443 HTTP/1.1\r\nHost: a\r\n\r\n",
    ];
    for head in heads {
        let what = String::from_utf8_lossy(head).escape_debug().to_string();
        let (code, text) = g.raw(head).await;
        assert_eq!(code, 400, "{what}: {text}");
        assert_problem(&text, 400, &what);
        assert!(text.contains("Connection: close"), "{what}: {text}");
    }
    let (code, text) = g
        .raw(b"POST /public/a HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n")
        .await;
    assert_eq!(code, 501, "{text}");
    assert_problem(&text, 501, "gzip, chunked");
    assert_eq!(backend.count(), 0, "{:?}", backend.requests());
    assert_eq!(
        g.metric("ords_guard_requests_total{decision=\"bad_request\"}")
            .await,
        18.0
    );
    // The refusal is logged as a decision, with the rule and no request bytes.
    let log = g.output_with("request head refused").await;
    assert!(
        log.contains("request head refused") && log.contains("bad_request"),
        "{log}"
    );
    assert!(!log.contains("Bad(Name)"), "{log}");
    // The proxy keeps serving.
    let (code, _) = g
        .raw(b"GET /public/a HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        .await;
    assert_eq!(code, 200);
}

/// Read `n` whole responses (Content-Length bodies) from `s`, bounded in time.
async fn read_responses(s: &mut tokio::net::TcpStream, n: usize) -> Vec<(u16, String)> {
    let mut buf = Vec::new();
    let mut out = Vec::new();
    let mut chunk = [0u8; 8192];
    tokio::time::timeout(Duration::from_secs(10), async {
        while out.len() < n {
            let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                let k = s.read(&mut chunk).await.unwrap();
                assert!(k > 0, "closed after {} responses: {out:?}", out.len());
                buf.extend_from_slice(&chunk[..k]);
                continue;
            };
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let len = content_length(&head);
            if buf.len() < end + 4 + len {
                let k = s.read(&mut chunk).await.unwrap();
                assert!(k > 0, "closed inside a response");
                buf.extend_from_slice(&chunk[..k]);
                continue;
            }
            let body = String::from_utf8_lossy(&buf[end + 4..end + 4 + len]).into_owned();
            let code = head.split(' ').nth(1).unwrap().parse().unwrap();
            out.push((code, body));
            buf.drain(..end + 4 + len);
        }
    })
    .await
    .expect("responses within 10 s");
    out
}

#[tokio::test]
async fn pipelined_requests_are_served_in_order_each_decided_alone() {
    let backend = Backend::start().await;
    let g = Guard::start(Options::new(&backend)).await;
    let token = g.token("admin-client", ADMIN_SECRET, None).await;
    let mut s = tokio::net::TcpStream::connect(g.proxy).await.unwrap();
    let batch = format!(
        "GET /public/1 HTTP/1.1\r\nHost: a\r\n\r\n\
         GET /example/2 HTTP/1.1\r\nHost: a\r\n\r\n\
         POST /public/3 HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello\
         POST /example/orders/4 HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {token}\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n\
         GET /public/5 HTTP/1.1\r\nHost: a\r\n\r\n"
    );
    // All at once, in one write: nothing is read back before the last is sent.
    s.write_all(batch.as_bytes()).await.unwrap();
    let got = read_responses(&mut s, 5).await;
    let codes: Vec<u16> = got.iter().map(|(c, _)| *c).collect();
    assert_eq!(codes, [200, 401, 200, 200, 200], "{got:?}");
    assert!(got[1].1.contains("\"status\":401"), "{got:?}");
    let targets: Vec<String> = backend.requests().into_iter().map(|r| r.target).collect();
    assert_eq!(
        targets,
        ["/public/1", "/public/3", "/example/orders/4", "/public/5"]
    );
    assert_eq!(
        backend.requests()[2].header("x-ords-client-id"),
        Some("admin-client")
    );
    // The connection is still open and serves the next request.
    s.write_all(b"GET /public/6 HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(read_responses(&mut s, 1).await[0].0, 200);
    // A malformed head in the middle ends the batch there, answered in order.
    let mut s = tokio::net::TcpStream::connect(g.proxy).await.unwrap();
    s.write_all(
        b"GET /public/7 HTTP/1.1\r\nHost: a\r\n\r\nGET /public/8 HTTP/9.9\r\nHost: a\r\n\r\nGET /public/9 HTTP/1.1\r\nHost: a\r\n\r\n",
    )
    .await
    .unwrap();
    let got = read_responses(&mut s, 2).await;
    assert_eq!(got[0].0, 200);
    assert_eq!(got[1].0, 400);
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut rest)).await;
    assert!(rest.is_empty(), "{}", String::from_utf8_lossy(&rest));
    assert!(!backend.requests().iter().any(|r| r.target == "/public/9"));
}
