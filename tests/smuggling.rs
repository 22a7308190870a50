//! Request smuggling: framing vectors sent over raw sockets to the real binary, in front of
//! a raw-socket backend that records every byte it receives and parses it strictly.
//!
//! Each vector hides a request for the protected `/example/secret` where a lenient reader
//! might take it for a request (in a body, behind a bad length, in a chunk). For every one:
//! the backend never receives `/example/secret` (anything hidden that the guard did read as
//! a request met the decision: 401), everything it receives is framed unambiguously, the
//! client's answers are the expected statuses, and the proxy keeps serving.

mod common;

use common::{content_length, Backend, Guard, Options};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const HIDDEN: &str = "GET /example/secret HTTP/1.1\r\nHost: a\r\n\r\n";
/// Sent after every vector on the same connection: if the guard kept the connection, this
/// is answered (200) and closes it.
const AFTER: &str = "GET /public/after HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";

/// One request as the strict backend parsed it.
#[derive(Debug, Clone)]
struct Received {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Received {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct Record {
    requests: Vec<Received>,
    /// Framing the strict parser could not read one way only.
    violations: Vec<String>,
    /// Every byte received, all connections.
    bytes: Vec<u8>,
}

enum Parsed {
    Incomplete,
    Violation(String),
    Request(Received, usize),
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A strict HTTP/1.1 request reader: CRLF only, one way to frame the body.
fn parse(buf: &[u8]) -> Parsed {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Parsed::Incomplete;
    };
    let head = &buf[..end];
    let text = match std::str::from_utf8(head) {
        Ok(t) => t,
        Err(_) => return Parsed::Violation("head is not UTF-8".into()),
    };
    let mut lines = text.split("\r\n");
    let line = lines.next().unwrap_or_default();
    let parts: Vec<&str> = line.split(' ').collect();
    if parts.len() != 3 || parts.iter().any(|p| p.is_empty()) || parts[2] != "HTTP/1.1" {
        return Parsed::Violation(format!("request line {line:?}"));
    }
    let mut headers = Vec::new();
    for l in lines {
        if l.contains('\n') || l.contains('\r') || l.contains('\0') {
            return Parsed::Violation(format!("bare CR/LF or NUL in {l:?}"));
        }
        let Some((name, value)) = l.split_once(':') else {
            return Parsed::Violation(format!("header line {l:?}"));
        };
        if name.is_empty() || !name.bytes().all(is_tchar) {
            return Parsed::Violation(format!("header name {name:?}"));
        }
        headers.push((name.to_string(), value.trim().to_string()));
    }
    let named = |n: &str| -> Vec<&str> {
        headers
            .iter()
            .filter(|(k, _)| {
                k.eq_ignore_ascii_case(n) || k.replace('_', "-").eq_ignore_ascii_case(n)
            })
            .map(|(_, v)| v.as_str())
            .collect()
    };
    let (lengths, encodings) = (named("content-length"), named("transfer-encoding"));
    let body_start = end + 4;
    let (body, len) = match (lengths.as_slice(), encodings.as_slice()) {
        ([], []) => (Vec::new(), body_start),
        ([cl], []) => {
            if cl.is_empty() || !cl.bytes().all(|b| b.is_ascii_digit()) {
                return Parsed::Violation(format!("Content-Length {cl:?}"));
            }
            let n: usize = match cl.parse() {
                Ok(n) => n,
                Err(_) => return Parsed::Violation(format!("Content-Length {cl:?}")),
            };
            if buf.len() < body_start + n {
                return Parsed::Incomplete;
            }
            (buf[body_start..body_start + n].to_vec(), body_start + n)
        }
        ([], [te]) if te.eq_ignore_ascii_case("chunked") => match dechunk(&buf[body_start..]) {
            Ok(Some((body, used))) => (body, body_start + used),
            Ok(None) => return Parsed::Incomplete,
            Err(e) => return Parsed::Violation(e),
        },
        _ => {
            return Parsed::Violation(format!(
                "framing: Content-Length {lengths:?}, Transfer-Encoding {encodings:?}"
            ))
        }
    };
    Parsed::Request(
        Received {
            method: parts[0].into(),
            target: parts[1].into(),
            headers,
            body,
        },
        len,
    )
}

/// A chunked body, strictly: hex sizes, CRLF everywhere, no extensions, trailers allowed.
#[allow(clippy::type_complexity)]
fn dechunk(mut b: &[u8]) -> Result<Option<(Vec<u8>, usize)>, String> {
    let total = b.len();
    let mut body = Vec::new();
    loop {
        let Some(eol) = b.windows(2).position(|w| w == b"\r\n") else {
            return Ok(None);
        };
        let size = &b[..eol];
        if size.is_empty() || size.len() > 16 || !size.iter().all(u8::is_ascii_hexdigit) {
            return Err(format!("chunk size {:?}", String::from_utf8_lossy(size)));
        }
        let n = usize::from_str_radix(std::str::from_utf8(size).unwrap(), 16).unwrap();
        b = &b[eol + 2..];
        if n == 0 {
            // Trailers, then the empty line.
            loop {
                let Some(eol) = b.windows(2).position(|w| w == b"\r\n") else {
                    return Ok(None);
                };
                let line = &b[..eol];
                b = &b[eol + 2..];
                if line.is_empty() {
                    return Ok(Some((body, total - b.len())));
                }
                if line.contains(&b'\n') || line.contains(&b'\r') {
                    return Err("bare CR/LF in a trailer".into());
                }
            }
        }
        if b.len() < n + 2 {
            return Ok(None);
        }
        if &b[n..n + 2] != b"\r\n" {
            return Err("chunk data not followed by CRLF".into());
        }
        body.extend_from_slice(&b[..n]);
        b = &b[n + 2..];
    }
}

/// The strict backend: answers every request it parses `200 ok` (HEAD without a body) on
/// a kept-alive connection, and records what it got.
async fn strict_backend() -> (std::net::SocketAddr, Arc<Mutex<Record>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let record = Arc::new(Mutex::new(Record::default()));
    let rec = record.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            let rec = rec.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 8192];
                loop {
                    match parse(&buf) {
                        Parsed::Request(req, len) => {
                            let head = req.method == "HEAD";
                            rec.lock().unwrap().requests.push(req);
                            buf.drain(..len);
                            let reply: &[u8] = if head {
                                b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
                            } else {
                                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
                            };
                            if s.write_all(reply).await.is_err() {
                                return;
                            }
                            continue;
                        }
                        Parsed::Violation(v) => {
                            rec.lock().unwrap().violations.push(v);
                            return;
                        }
                        Parsed::Incomplete => {}
                    }
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            rec.lock().unwrap().bytes.extend_from_slice(&chunk[..n]);
                            buf.extend_from_slice(&chunk[..n]);
                        }
                    }
                }
            });
        }
    });
    (addr, record)
}

/// The status codes of the responses in `bytes`, in order (bodies skipped by their length).
fn statuses(mut bytes: &[u8]) -> Vec<u16> {
    let mut out = Vec::new();
    while let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") {
        let head = String::from_utf8_lossy(&bytes[..end]).into_owned();
        let code = head
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let len = content_length(&head);
        out.push(code);
        let next = (end + 4 + len).min(bytes.len());
        bytes = &bytes[next..];
    }
    out
}

/// Send `request` then [`AFTER`] on one connection; the statuses answered until it closed.
async fn exchange(g: &Guard, request: &[u8]) -> (Vec<u16>, String) {
    let mut s = tokio::net::TcpStream::connect(g.proxy).await.unwrap();
    s.write_all(request).await.unwrap();
    // The guard may already have closed after refusing: the rest then has nowhere to go.
    let _ = s.write_all(AFTER.as_bytes()).await;
    let mut got = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), async {
        let mut chunk = [0u8; 8192];
        loop {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    assert!(
        read.is_ok(),
        "no close within 10 s after {:?}",
        String::from_utf8_lossy(request)
    );
    (statuses(&got), String::from_utf8_lossy(&got).into_owned())
}

/// `POST /public/v` with the given framing headers and body.
fn post(fields: &str, body: &str) -> String {
    format!("POST /public/v HTTP/1.1\r\nHost: a\r\n{fields}\r\n{body}")
}

fn chunked(body: &str) -> String {
    post("Transfer-Encoding: chunked\r\n", body)
}

/// (name, request bytes, statuses the client must get, in order).
fn vectors() -> Vec<(&'static str, String, Vec<u16>)> {
    let hidden_len = HIDDEN.len();
    let ok = vec![200, 200];
    let refused = vec![400];
    vec![
        // Content-Length with Transfer-Encoding (CL.TE, TE.CL).
        ("cl.te", post("Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", &format!("0\r\n\r\n{HIDDEN}")), refused.clone()),
        ("te.cl", post("Transfer-Encoding: chunked\r\nContent-Length: 4\r\n", &format!("5c\r\n{HIDDEN}\r\n0\r\n\r\n")), refused.clone()),
        ("te with cl 0", post("Transfer-Encoding: chunked\r\nContent-Length: 0\r\n", &format!("0\r\n\r\n{HIDDEN}")), refused.clone()),
        // Two Content-Lengths.
        ("two cl differ", post("Content-Length: 0\r\nContent-Length: 42\r\n", HIDDEN), refused.clone()),
        ("two cl same", post(&format!("Content-Length: {hidden_len}\r\nContent-Length: {hidden_len}\r\n"), HIDDEN), refused.clone()),
        ("cl list", post(&format!("Content-Length: 0, {hidden_len}\r\n"), HIDDEN), refused.clone()),
        ("cl list same", post(&format!("Content-Length: {hidden_len},{hidden_len}\r\n"), HIDDEN), refused.clone()),
        // Malformed lengths.
        ("cl plus", post(&format!("Content-Length: +{hidden_len}\r\n"), HIDDEN), refused.clone()),
        ("cl minus", post("Content-Length: -1\r\n", HIDDEN), refused.clone()),
        ("cl hex", post("Content-Length: 0x2a\r\n", HIDDEN), refused.clone()),
        ("cl space inside", post("Content-Length: 4 2\r\n", HIDDEN), refused.clone()),
        ("cl trailing letter", post("Content-Length: 42a\r\n", HIDDEN), refused.clone()),
        ("cl empty", post("Content-Length: \r\n", HIDDEN), refused.clone()),
        ("cl overflow u64", post("Content-Length: 18446744073709551658\r\n", HIDDEN), refused.clone()),
        ("cl 20 digits", post("Content-Length: 00000000000000000042\r\n", HIDDEN), refused.clone()),
        ("cl underscore", post(&format!("Content_Length: {hidden_len}\r\n"), HIDDEN), refused.clone()),
        ("cl ows and zeros", post(&format!("Content-Length:  0{hidden_len} \r\n"), HIDDEN), ok.clone()),
        // Transfer-Encoding obfuscations.
        ("te xchunked", post("Transfer-Encoding: xchunked\r\n", &format!("0\r\n\r\n{HIDDEN}")), refused.clone()),
        ("te chunked, identity", post("Transfer-Encoding: chunked, identity\r\n", &format!("0\r\n\r\n{HIDDEN}")), refused.clone()),
        ("te identity, chunked", post("Transfer-Encoding: identity, chunked\r\n", &format!("0\r\n\r\n{HIDDEN}")), vec![501]),
        ("te chunked twice", post("Transfer-Encoding: chunked, chunked\r\n", &format!("0\r\n\r\n{HIDDEN}")), refused.clone()),
        ("second te header", post("Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n", &format!("0\r\n\r\n{HIDDEN}")), refused.clone()),
        ("space before colon", post("Transfer-Encoding : chunked\r\n", &format!("0\r\n\r\n{HIDDEN}")), refused.clone()),
        ("vertical tab", post("Transfer-Encoding:\x0bchunked\r\n", &format!("0\r\n\r\n{HIDDEN}")), refused.clone()),
        ("obs-fold", post("Transfer-Encoding:\r\n chunked\r\n", &format!("0\r\n\r\n{HIDDEN}")), refused.clone()),
        ("quoted te", post("Transfer-Encoding: \"chunked\"\r\n", &format!("0\r\n\r\n{HIDDEN}")), refused.clone()),
        ("te underscore", post("Transfer_Encoding: chunked\r\n", &format!("0\r\n\r\n{HIDDEN}")), refused.clone()),
        ("te nul", post("Transfer-Encoding: chunked\x00\r\n", &format!("0\r\n\r\n{HIDDEN}")), refused.clone()),
        ("http/1.0 te", format!("POST /public/v HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{HIDDEN}"), refused.clone()),
        ("te case and ows", post("Transfer-Encoding:  Chunked \r\n", "5\r\nhello\r\n0\r\n\r\n"), ok.clone()),
        // Chunk-size tricks: refused as the body passes, before the hidden bytes.
        ("chunk 0x", chunked(&format!("0x5c\r\n{HIDDEN}\r\n0\r\n\r\n")), refused.clone()),
        ("chunk leading space", chunked(&format!(" 5c\r\n{HIDDEN}\r\n0\r\n\r\n")), refused.clone()),
        ("chunk trailing space", chunked(&format!("5c \r\n{HIDDEN}\r\n0\r\n\r\n")), refused.clone()),
        ("chunk overflow", chunked(&format!("1000000000000005c\r\n{HIDDEN}\r\n0\r\n\r\n")), refused.clone()),
        ("chunk negative", chunked(&format!("-5c\r\n{HIDDEN}\r\n0\r\n\r\n")), refused.clone()),
        ("chunk bare lf", chunked(&format!("5\nhello\r\n0\r\n\r\n{HIDDEN}")), refused.clone()),
        ("chunk missing crlf", chunked(&format!("5\r\nhello{HIDDEN}0\r\n\r\n")), refused.clone()),
        ("chunk extension lf", chunked(&format!("5;a\n{HIDDEN}\r\nhello\r\n0\r\n\r\n")), refused.clone()),
        ("last chunk bare lf", chunked(&format!("0\r\n\n{HIDDEN}")), refused.clone()),
        ("chunk extension", chunked("5;name=\"v\"\r\nhello\r\n0;x\r\n\r\n"), ok.clone()),
        ("chunk trailers", chunked("5\r\nhello\r\n0\r\nX-Sum: 1\r\n\r\n"), ok.clone()),
        // NUL and CR in header values, bare CR line ends.
        ("nul in value", post("X-Note: a\x00b\r\nContent-Length: 0\r\n", HIDDEN), refused.clone()),
        ("cr in value", post("X-Note: a\rContent-Length: 0\r\n", HIDDEN), refused.clone()),
        ("bare cr line end", format!("POST /public/v HTTP/1.1\rHost: a\r\nContent-Length: 0\r\n\r\n{HIDDEN}"), refused.clone()),
        // Bodies on GET, HEAD and OPTIONS: a body, never a request.
        ("get with body", format!("GET /public/v HTTP/1.1\r\nHost: a\r\nContent-Length: {hidden_len}\r\n\r\n{HIDDEN}"), ok.clone()),
        ("head with body", format!("HEAD /public/v HTTP/1.1\r\nHost: a\r\nContent-Length: {hidden_len}\r\n\r\n{HIDDEN}"), ok.clone()),
        ("options chunked", format!("OPTIONS /public/v HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{HIDDEN}\r\n0\r\n\r\n", hidden_len), ok.clone()),
        // The hidden request right behind a body: pipelined, so decided (401), not forwarded.
        ("pipelined behind body", format!("POST /public/v HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello{HIDDEN}"), vec![200, 401, 200]),
        ("pipelined behind chunks", chunked(&format!("5\r\nhello\r\n0\r\n\r\n{HIDDEN}")), vec![200, 401, 200]),
        // Expect: 100-continue, body sent at once.
        ("expect continue", post(&format!("Expect: 100-continue\r\nContent-Length: {hidden_len}\r\n"), HIDDEN), ok.clone()),
        ("expect on protected", format!("POST /example/x HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: {hidden_len}\r\n\r\n{HIDDEN}"), vec![401, 200]),
        // Upgrade: ignored, so no tunnel opens past the decision.
        ("upgrade h2c", format!("GET /public/v HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n{HIDDEN}"), vec![200, 401, 200]),
        ("upgrade websocket", format!("GET /public/v HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n{HIDDEN}"), vec![200, 401, 200]),
        // Request lines.
        ("space in target", format!("GET /public/v {HIDDEN}"), refused.clone()),
        ("absolute-form hides nothing", format!("POST http://a/public/v HTTP/1.1\r\nHost: b\r\nContent-Length: {hidden_len}\r\n\r\n{HIDDEN}"), ok.clone()),
    ]
}

#[tokio::test]
async fn framing_vectors_never_smuggle_a_request() {
    let (addr, record) = strict_backend().await;
    // The guard's options want a Backend; point the upstream at the strict one instead.
    let placeholder = Backend::start().await;
    let mut o = Options::new(&placeholder);
    o.upstream = format!("http://{addr}");
    let g = Guard::start(o).await;
    let vectors = vectors();
    assert!(vectors.len() >= 40, "{} vectors", vectors.len());
    for (name, request, want) in vectors {
        let (got, text) = exchange(&g, request.as_bytes()).await;
        assert_eq!(got, want, "{name}: answers {text}");
        if want[0] >= 400 {
            assert!(text.contains("application/problem+json"), "{name}: {text}");
        }
        // Keeps serving: a new connection gets through.
        let (after, text) = exchange(&g, b"").await;
        assert_eq!(after, vec![200], "{name}: then {text}");
        let rec = std::mem::take(&mut *record.lock().unwrap());
        assert!(
            rec.violations.is_empty(),
            "{name}: ambiguous framing reached the backend: {:?}",
            rec.violations
        );
        assert!(
            !rec.requests.iter().any(|r| r.target.contains("/example/")),
            "{name}: a hidden request reached the backend: {:?}",
            rec.requests
        );
        for r in &rec.requests {
            assert!(
                r.target == "/public/v" || r.target == "/public/after",
                "{name}: {r:?}"
            );
            // Nothing of an upgrade reaches the backend but a WebSocket handshake's (which
            // this backend answers 200: no tunnel, the hidden request behind it is read as
            // the next request and refused).
            let websocket = name == "upgrade websocket" && r.target == "/public/v";
            assert!(
                r.header("upgrade").is_some() == websocket && r.header("http2-settings").is_none(),
                "{name}: {r:?}"
            );
            if r.target == "/public/v" && name.contains("body") && !name.contains("pipelined") {
                assert_eq!(
                    r.body,
                    HIDDEN.as_bytes(),
                    "{name}: the body arrives as a body"
                );
            }
        }
        let forwarded = rec
            .requests
            .iter()
            .filter(|r| r.target == "/public/v")
            .count();
        let expect_forwarded = usize::from(want[0] == 200);
        assert_eq!(forwarded, expect_forwarded, "{name}: {:?}", rec.requests);
    }
}
