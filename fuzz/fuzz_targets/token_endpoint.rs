//! The token endpoint's form and Basic parsing: no panic, only RFC 6749 statuses, and the
//! presented secret never echoed.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ords_guard::oauth::endpoint::{TokenEndpoint, TokenRequest};
use std::future::Future;
use std::sync::OnceLock;

fuzz_target!(|data: &[u8]| {
    static EP: OnceLock<TokenEndpoint> = OnceLock::new();
    let ep = EP.get_or_init(TokenEndpoint::default);
    // First line: Authorization header value; the rest: the form body.
    let (auth, body) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&data[..0], data),
    };
    let req = TokenRequest {
        method: "POST",
        content_type: Some(b"application/x-www-form-urlencoded"),
        authorization: if auth.is_empty() { vec![] } else { vec![auth] },
        body: Some(body),
        client_addr: None,
    };
    // The fuzz registry holds `sha256:` secrets only, so nothing waits on the argon2 pool:
    // the answer is ready at the first poll.
    let mut answer = std::pin::pin!(ep.handle(ords_guard_fuzz::registry(), &req));
    let std::task::Poll::Ready(reply) = answer
        .as_mut()
        .poll(&mut std::task::Context::from_waker(std::task::Waker::noop()))
    else {
        panic!("a sha256-only registry never waits");
    };
    assert!(
        matches!(reply.status, 200 | 400 | 401 | 405 | 429),
        "status {}",
        reply.status
    );
    // The registered secret is never in a reply, whatever was presented.
    assert!(!String::from_utf8_lossy(&reply.body).contains("fuzz-secret"));
});
