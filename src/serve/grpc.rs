//! gRPC calls refused as gRPC answers them (SPEC §17): HTTP 200, trailers-only (one HEADERS
//! frame that ends the stream), `grpc-status` from the decision's HTTP status and the
//! problem's detail as `grpc-message`. The decision, its labels and counts are the ones any
//! request gets; only the answer's form differs.

use crate::serve::pipeline::Answer;
use pingora::http::ResponseHeader;

/// A gRPC call: `content-type: application/grpc`, or `application/grpc+proto` and the like.
pub fn is_call(headers: &http::HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.as_bytes().strip_prefix(b"application/grpc"))
        .is_some_and(|rest| rest.is_empty() || rest[0] == b'+' || rest[0] == b';')
}

/// The gRPC status for a refusal's HTTP status: SPEC §17's five, and gRPC's own mapping of
/// HTTP statuses for the rest (a timeout is DEADLINE_EXCEEDED, a bound RESOURCE_EXHAUSTED).
pub fn status(http: u16) -> u8 {
    match http {
        400 => 3,
        401 => 16,
        403 => 7,
        429 | 413 | 431 => 8,
        503 | 502 => 14,
        408 | 504 => 4,
        404 => 12,
        _ => 2,
    }
}

/// The answer as a trailers-only response. `http1`: the client speaks HTTP/1.1 (no gRPC
/// client does, but the connection must stay framed), so the end is a zero length.
pub fn trailers_only(a: &Answer, http1: bool) -> pingora::Result<ResponseHeader> {
    let mut h = ResponseHeader::build(200, Some(a.headers.len() + 4))?;
    h.insert_header(http::header::CONTENT_TYPE, "application/grpc")?;
    h.insert_header("grpc-status", status(a.status).to_string())?;
    h.insert_header("grpc-message", message(&detail(a)))?;
    for (k, v) in &a.headers {
        h.insert_header(*k, v.as_str())?;
    }
    if http1 {
        h.insert_header(http::header::CONTENT_LENGTH, "0")?;
    }
    Ok(h)
}

/// The problem document's `detail`, else its status's reason.
fn detail(a: &Answer) -> String {
    serde_json::from_slice::<serde_json::Value>(&a.body)
        .ok()
        .and_then(|v| v["detail"].as_str().map(str::to_string))
        .unwrap_or_else(|| {
            http::StatusCode::from_u16(a.status)
                .ok()
                .and_then(|s| s.canonical_reason())
                .unwrap_or("refused")
                .to_string()
        })
}

/// `grpc-message` is percent-encoded: every byte outside printable ASCII, and `%` itself
/// (the gRPC over HTTP/2 protocol).
fn message(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_calls_and_their_answers() {
        let h = |ct: &str| {
            let mut m = http::HeaderMap::new();
            m.insert(http::header::CONTENT_TYPE, ct.parse().unwrap());
            is_call(&m)
        };
        assert!(h("application/grpc"));
        assert!(h("application/grpc+proto"));
        assert!(h("application/grpc;charset=utf-8"));
        assert!(!h("application/grpc-web"));
        assert!(!h("application/json"));
        assert!(!is_call(&http::HeaderMap::new()));
        assert_eq!([400, 401, 403, 429, 503].map(status), [3, 16, 7, 8, 14]);
        assert_eq!(message("50% off: «no»"), "50%25 off: %C2%ABno%C2%BB");
        let a = Answer::problem(401, "Unauthorized", "send a token", None);
        let head = trailers_only(&a, false).unwrap();
        assert_eq!(head.status, 200);
        assert_eq!(head.headers["grpc-status"], "16");
        assert_eq!(head.headers["grpc-message"], "send a token");
        assert!(head.headers.get("content-length").is_none());
    }
}
