//! WebSocket through the real binary (SPEC §17): a handshake is decided like any request;
//! refused, it gets the ordinary 401 and the connection stays HTTP/1.1; forwarded and
//! answered 101, the connection is a tunnel both ways (tokio-tungstenite's client and echo
//! server), outliving `request_total_ms` and closed after `client_idle_ms` without a byte.

mod common;

use common::*;
use futures_util::{SinkExt, StreamExt};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

/// A WebSocket echo server; `handshakes` holds the headers of every handshake it accepted.
struct EchoServer {
    addr: SocketAddr,
    handshakes: Arc<Mutex<Vec<http::HeaderMap>>>,
}

async fn echo_server() -> EchoServer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let handshakes = Arc::new(Mutex::new(Vec::new()));
    let seen = handshakes.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let record = |req: &tokio_tungstenite::tungstenite::handshake::server::Request,
                              resp| {
                    seen.lock().unwrap().push(req.headers().clone());
                    Ok(resp)
                };
                let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(stream, record).await else {
                    return;
                };
                while let Some(Ok(msg)) = ws.next().await {
                    if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    EchoServer { addr, handshakes }
}

type Client =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The next message, within a bound: a tunnel that does not pass it fails the test.
async fn next(ws: &mut Client) -> Message {
    tokio::time::timeout(Duration::from_secs(20), ws.next())
        .await
        .expect("no message through the tunnel within 20 s")
        .expect("the tunnel closed")
        .expect("a WebSocket error")
}

async fn guard_before(server: &EchoServer, timeouts: &str) -> Guard {
    let unused = Backend::start().await;
    Guard::start(Options {
        upstream: format!("http://{}", server.addr),
        timeouts: timeouts.into(),
        ..Options::new(&unused)
    })
    .await
}

fn ws_request(
    g: &Guard,
    path: &str,
    token: Option<&str>,
) -> tokio_tungstenite::tungstenite::handshake::client::Request {
    let url = g.url(path).replacen("http://", "ws://", 1);
    let mut req = url.into_client_request().unwrap();
    if let Some(t) = token {
        req.headers_mut()
            .insert("authorization", format!("Bearer {t}").parse().unwrap());
    }
    req
}

#[tokio::test]
async fn a_websocket_is_decided_then_tunnelled_both_ways() {
    let server = echo_server().await;
    let g = guard_before(&server, "").await;

    // No token: the ordinary 401, never forwarded.
    let refused = tokio_tungstenite::connect_async(ws_request(&g, "/example/chat", None)).await;
    let Err(WsError::Http(resp)) = refused else {
        panic!("expected an HTTP refusal, got {refused:?}");
    };
    assert_eq!(resp.status(), 401);
    assert!(resp.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Bearer realm=\"ords-guard\""));
    assert!(server.handshakes.lock().unwrap().is_empty());

    // With a token: forwarded with the identity headers, without the token, then a tunnel.
    let token = g.token("example-client", EXAMPLE_SECRET, None).await;
    let (mut ws, resp) =
        tokio_tungstenite::connect_async(ws_request(&g, "/example/chat", Some(&token)))
            .await
            .unwrap();
    assert_eq!(resp.status(), 101);
    {
        let seen = server.handshakes.lock().unwrap();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0]["x-ords-client-id"], "example-client");
        assert_eq!(seen[0]["x-ords-privilege"], "example_priv");
        assert!(seen[0].get("authorization").is_none());
        assert!(seen[0]["upgrade"]
            .to_str()
            .unwrap()
            .eq_ignore_ascii_case("websocket"));
    }
    ws.send(Message::text("hello through the guard"))
        .await
        .unwrap();
    assert_eq!(
        next(&mut ws).await,
        Message::text("hello through the guard")
    );
    // A large binary message, many reads and writes each way.
    let big: Vec<u8> = (0..256 * 1024).map(|i| (i % 251) as u8).collect();
    ws.send(Message::binary(big.clone())).await.unwrap();
    assert_eq!(next(&mut ws).await, Message::binary(big));
    ws.close(None).await.unwrap();
    while let Some(Ok(_)) = ws.next().await {}

    // Logged once the tunnel closed, decided as any request.
    let log = g.output_with("\"protocol\":\"WebSocket\"").await;
    let line = log
        .lines()
        .find(|l| l.contains("\"protocol\":\"WebSocket\""))
        .unwrap();
    assert!(line.contains("\"status\":101"), "{line}");
    assert!(line.contains("\"client_id\":\"example-client\""), "{line}");
    assert!(!log.contains(&token), "the token never reaches the log");
}

/// Pacing, not synchronisation: messages every 250 ms keep the tunnel busy past
/// `request_total_ms`; then nothing is sent and the guard closes it.
#[tokio::test]
async fn a_tunnel_outlives_request_total_and_closes_when_idle() {
    let server = echo_server().await;
    let g = guard_before(&server, "  request_total_ms: 800\n  client_idle_ms: 1500\n").await;
    let token = g.token("example-client", EXAMPLE_SECRET, None).await;
    let (mut ws, _) =
        tokio_tungstenite::connect_async(ws_request(&g, "/example/chat", Some(&token)))
            .await
            .unwrap();
    for i in 0..8 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        ws.send(Message::text(format!("ping {i}"))).await.unwrap();
        assert_eq!(
            next(&mut ws).await,
            Message::text(format!("ping {i}")),
            "message {i}, {} ms into the tunnel: {}",
            (i + 1) * 250,
            g.output()
        );
    }
    // Idle: closed by the guard (no close frame: the TCP connection ends).
    let end = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match ws.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(end.is_ok(), "the idle tunnel stayed open: {}", g.output());
    // A routine end, not an error line: the access line says how it ended.
    let log = g.output_with("\"protocol\":\"WebSocket\"").await;
    assert!(!log.contains("Fail to proxy"), "{log}");
    let line = log
        .lines()
        .find(|l| l.contains("\"protocol\":\"WebSocket\""))
        .unwrap();
    assert!(line.contains("\"status\":101"), "{line}");
    assert!(line.contains("\"error\":\"ReadTimedout\""), "{line}");
}

/// A raw connection: what the client wrote, then the answers read until `answers` whole
/// responses (each `Content-Length`-framed) arrived.
async fn exchange(addr: SocketAddr, wire: &str, answers: usize) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(wire.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(Duration::from_secs(10), async {
        while String::from_utf8_lossy(&got).matches("HTTP/1.1 ").count() < answers
            || !complete(&got, answers)
        {
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {answers} answers: {}", String::from_utf8_lossy(&got)));
    String::from_utf8(got).unwrap()
}

/// Whether the last of `answers` responses has its whole body.
fn complete(got: &[u8], answers: usize) -> bool {
    let text = String::from_utf8_lossy(got);
    let Some(last) = text.split("HTTP/1.1 ").nth(answers) else {
        return false;
    };
    let Some((head, body)) = last.split_once("\r\n\r\n") else {
        return false;
    };
    let len = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse::<usize>().unwrap())
        })
        .unwrap_or(0);
    body.len() >= len
}

const HANDSHAKE: &str = "GET /example/chat HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n";

/// No tunnel opens without the upstream's 101: a refused handshake, or one the upstream
/// answers 200, leaves an HTTP/1.1 connection whose next bytes are the next request, read
/// and decided as such.
#[tokio::test]
async fn without_a_101_the_connection_stays_http_1_1() {
    let backend = Backend::start().await;
    let g = Guard::start(Options::new(&backend)).await;
    let token = g.token("example-client", EXAMPLE_SECRET, None).await;

    // Refused, with a request pipelined right behind the handshake: 401, then that
    // request's own answer.
    let got = exchange(
        g.proxy,
        &format!("{HANDSHAKE}\r\nGET /public/after HTTP/1.1\r\nHost: a\r\n\r\n"),
        2,
    )
    .await;
    let mut answers = got.split("HTTP/1.1 ").skip(1);
    assert!(answers.next().unwrap().starts_with("401 "), "{got}");
    let second = answers.next().unwrap();
    assert!(second.starts_with("200 "), "{got}");
    assert!(second.ends_with("backend ok"), "{got}");
    assert_eq!(
        backend.count(),
        1,
        "only the pipelined request was forwarded"
    );

    // Forwarded, answered 200 by a backend that does not speak WebSocket: the next request
    // on the connection is an HTTP request again (a WebSocket frame there would be a 400).
    let got = exchange(
        g.proxy,
        &format!("{HANDSHAKE}Authorization: Bearer {token}\r\n\r\nGET /public/again HTTP/1.1\r\nHost: a\r\n\r\n"),
        2,
    )
    .await;
    let answers: Vec<&str> = got.split("HTTP/1.1 ").skip(1).collect();
    assert!(answers[0].starts_with("200 "), "{got}");
    assert!(answers[1].starts_with("200 "), "{got}");
    assert_eq!(backend.count(), 3);
}

/// An upstream that answers 101 without the `Sec-WebSocket-Accept` owed for the key
/// ords-guard sent it has not shown it read the handshake: here an HTTP endpoint that
/// relays a status and a header the client chose, the accept for the client's own key
/// among them. What the client sent behind the handshake never reaches it, and the
/// connection ends.
#[tokio::test]
async fn a_101_without_the_accept_opens_no_tunnel() {
    use tokio::net::TcpListener;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = listener.local_addr().unwrap();
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<Vec<u8>>();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0);
            got.extend_from_slice(&buf[..n]);
        }
        let text = String::from_utf8_lossy(&got).to_ascii_lowercase();
        let relayed = text
            .lines()
            .find_map(|l| l.strip_prefix("x-relay-accept:"))
            .map(|v| v.trim().to_string())
            .unwrap_or_default();
        // The relayed value as sent (base64 is case-sensitive): from the raw bytes.
        let raw = String::from_utf8_lossy(&got).to_string();
        let start = text.find(&relayed).unwrap_or(0);
        let relayed = &raw[start..start + relayed.len()];
        s.write_all(format!("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {relayed}\r\n\r\n").as_bytes())
            .await
            .unwrap();
        // Everything after the handshake, until the proxy closes the connection.
        let head = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        let mut after = got.split_off(head);
        while let Ok(n) = s.read(&mut buf).await {
            if n == 0 {
                break;
            }
            after.extend_from_slice(&buf[..n]);
        }
        let _ = done_tx.send(after);
    });
    let unused = Backend::start().await;
    let g = Guard::start(Options {
        upstream: format!("http://{upstream}"),
        ..Options::new(&unused)
    })
    .await;
    let token = g.token("example-client", EXAMPLE_SECRET, None).await;
    let mut s = tokio::net::TcpStream::connect(g.proxy).await.unwrap();
    s.write_all(
        // RFC 6455's example accept for HANDSHAKE's key: what the client can compute.
        format!("{HANDSHAKE}Authorization: Bearer {token}\r\nX-Relay-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\nGET /example/admin HTTP/1.1\r\nHost: a\r\nX-ORDS-Client-Id: admin\r\n\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    let mut answer = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut answer)).await;
    assert!(closed.is_ok(), "the connection ends");
    let after = tokio::time::timeout(Duration::from_secs(20), done_rx)
        .await
        .expect("the upstream connection ends")
        .unwrap();
    assert!(
        after.is_empty(),
        "reached the upstream: {}",
        String::from_utf8_lossy(&after)
    );
    g.output_with("without the Sec-WebSocket-Accept").await;
}
