//! The authz check reader (SPEC §14) on attacker bytes: the check's own method and target
//! and its headers (`X-Forwarded-*`, `X-Original-*`), read as each HTTP API reads them. No
//! panic; a check it accepts names a decidable method and an origin-form target, read from
//! exactly one header; what it reads normalises without a panic. Input: the API (first
//! byte), then the check's method, target and `Name: value` header lines, one per line.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ords_guard::serve::authz::{original, HttpApi};

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let api = [HttpApi::ForwardAuth, HttpApi::AuthRequest, HttpApi::ExtAuthz][usize::from(which % 3)];
    let mut lines = rest.split(|&b| b == b'\n');
    let method = std::str::from_utf8(lines.next().unwrap_or_default()).unwrap_or("GET");
    let raw_path = lines.next().unwrap_or_default();
    let mut headers = http::HeaderMap::new();
    for line in lines {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(&line[..colon]),
            http::HeaderValue::from_bytes(line[colon + 1..].trim_ascii()),
        ) else {
            continue;
        };
        headers.append(name, value);
    }
    let Ok(o) = original(api, method, raw_path, &headers) else {
        return;
    };
    assert!(
        !o.method.is_empty() && o.method.bytes().all(|b| b.is_ascii_uppercase() || b == b'-') && o.method != "CONNECT",
        "{:?}",
        o.method
    );
    assert_eq!(o.target.first(), Some(&b'/'), "{}", o.target.escape_ascii());
    let from = match api {
        HttpApi::ForwardAuth => Some("x-forwarded-uri"),
        HttpApi::AuthRequest if headers.contains_key("x-original-uri") => Some("x-original-uri"),
        _ => None,
    };
    if let Some(name) = from {
        assert_eq!(headers.get_all(name).iter().count(), 1);
    }
    let _ = ords_guard::patterns::path::normalise(&o.target);
});
