//! Issue #14, bounded shutdown: SIGTERM with connections in every state ends the process
//! with 0 within the grace period plus the watchdog's bound, and the log stays small and
//! says what happened.

mod common;

use common::*;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The test config's `shutdown_grace_ms` plus the watchdog's 5 s, plus slack for a busy
/// machine.
const EXIT_WITHIN: Duration = Duration::from_secs(5 + 5 + 3);

/// Read until the peer has sent `n` status lines (bounded).
async fn responses(s: &mut TcpStream, n: usize) -> String {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(10);
    while String::from_utf8_lossy(&buf).matches("HTTP/1.1 ").count() < n {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, s.read(&mut chunk)).await {
            Ok(Ok(0)) | Err(_) => break,
            Ok(Ok(k)) => buf.extend_from_slice(&chunk[..k]),
            Ok(Err(_)) => break,
        }
    }
    String::from_utf8_lossy(&buf).into_owned()
}

#[tokio::test]
async fn sigterm_exits_in_bounded_time_whatever_the_connections_do() {
    for cycle in 0..4 {
        let backend = Backend::start().await;
        let mut g = Guard::start(Options::new(&backend)).await;
        // Keep-alive, one request answered, left open.
        let mut keep = TcpStream::connect(g.proxy).await.unwrap();
        keep.write_all(b"GET /public/a HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .unwrap();
        assert!(responses(&mut keep, 1).await.starts_with("HTTP/1.1 200"));
        // Two requests back to back on one connection.
        let mut piped = TcpStream::connect(g.proxy).await.unwrap();
        piped
            .write_all(b"GET /public/b HTTP/1.1\r\nHost: t\r\n\r\nGET /example/x HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .unwrap();
        let _ = responses(&mut piped, 1).await;
        // Idle: connected, nothing sent. Half-open: half a head.
        let _idle = TcpStream::connect(g.proxy).await.unwrap();
        let mut half = TcpStream::connect(g.proxy).await.unwrap();
        half.write_all(b"GET /public/c HTTP/1.1\r\nHo")
            .await
            .unwrap();
        // A head pingora refuses (both framings).
        let mut refused = TcpStream::connect(g.proxy).await.unwrap();
        refused
            .write_all(b"POST /public/d HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n")
            .await
            .unwrap();
        // A body still arriving: a request in flight.
        let mut slow = TcpStream::connect(g.proxy).await.unwrap();
        slow.write_all(b"POST /public/e HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\nabc")
            .await
            .unwrap();
        // Admin connections too.
        let _admin_idle = TcpStream::connect(g.admin).await.unwrap();

        let started = Instant::now();
        g.signal("TERM");
        let status = g.wait_exit(EXIT_WITHIN);
        assert!(status.success(), "cycle {cycle}: {status}: {}", g.output());
        assert!(
            started.elapsed() < EXIT_WITHIN,
            "cycle {cycle}: exited after {:?}",
            started.elapsed()
        );
        let log = std::fs::read_to_string(&g.log).unwrap();
        assert!(
            log.len() < 256 * 1024,
            "cycle {cycle}: {} bytes of log",
            log.len()
        );
        assert!(
            log.contains("drained: stopping the listeners and exiting"),
            "cycle {cycle}: {log}"
        );
        assert!(log.contains("\"signal\":\"SIGTERM\""));
        assert!(
            !log.contains("SIGINT received"),
            "pingora's misleading line: {log}"
        );
    }
}
