//! What a token endpoint answered to a client credentials request, read per RFC 6749
//! §5.1 (success) and §5.2 (error) with SPEC §10's rules: `token_type` compared without
//! case, `bearer` only; no `access_token` is a failure; a missing `expires_in` means the
//! JWT's `exp`, else 300 s. Pure: the bytes and the time of receipt in, a token or the
//! reason out. A token is never part of an error's text.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::Value;
use std::fmt;

/// The lifetime assumed when neither `expires_in` nor a JWT `exp` gives one (SPEC §10).
pub const DEFAULT_LIFETIME: u64 = 300;
/// Longest access token kept; a longer one is refused as a failed fetch.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// A token as fetched.
#[derive(Clone, PartialEq, Eq)]
pub struct Fetched {
    pub access_token: String,
    /// `Bearer <access_token>`, built once here rather than on every request that sends it.
    pub bearer: http::HeaderValue,
    /// Seconds it lives, counted from receipt.
    pub lifetime: u64,
}

impl fmt::Debug for Fetched {
    // The token itself stays out of every debug print and log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fetched")
            .field(
                "access_token",
                &format_args!("<{} bytes>", self.access_token.len()),
            )
            .field("lifetime", &self.lifetime)
            .finish()
    }
}

/// Why a token request did not yield a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// An RFC 6749 §5.2 error answer: its `error` code (printable ASCII, bounded) and status.
    OAuth { status: u16, error: String },
    /// A 2xx whose body is not a usable token answer, or another status without an OAuth
    /// error body.
    Malformed { status: u16, why: &'static str },
}

impl Refused {
    /// `invalid_client`: the credentials are wrong (logged as an error, SPEC §10).
    pub fn is_invalid_client(&self) -> bool {
        matches!(self, Refused::OAuth { error, .. } if error == "invalid_client")
    }
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refused::OAuth { status, error } => {
                write!(
                    f,
                    "the token endpoint answered {status} with error `{error}`"
                )
            }
            Refused::Malformed { status, why } => {
                write!(f, "the token endpoint answered {status}, {why}")
            }
        }
    }
}

/// An OAuth error code as it may be logged: RFC 6749 §5.2 limits it to printable ASCII
/// without `"` and `\`; anything else (or a very long one) is not echoed.
fn loggable(code: &str) -> String {
    let ok = !code.is_empty()
        && code.len() <= 64
        && code
            .bytes()
            .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\');
    if ok {
        code.to_string()
    } else {
        "<unprintable>".to_string()
    }
}

/// The `exp` of a JWT, read without verifying (only to time the renewal: the remote API
/// verifies it), relative to `now`.
fn jwt_lifetime(token: &str, now: u64) -> Option<u64> {
    let mut parts = token.split('.');
    let (_, claims, _, None) = (parts.next()?, parts.next()?, parts.next()?, parts.next()) else {
        return None;
    };
    let bytes = URL_SAFE_NO_PAD.decode(claims.trim_end_matches('=')).ok()?;
    let exp = serde_json::from_slice::<Value>(&bytes)
        .ok()?
        .get("exp")?
        .as_u64()?;
    Some(exp.saturating_sub(now))
}

/// Read a token endpoint's answer, received at `now` (Unix seconds).
pub fn read(status: u16, body: &[u8], now: u64) -> Result<Fetched, Refused> {
    let doc: Option<Value> = serde_json::from_slice(body).ok();
    let obj = doc.as_ref().and_then(Value::as_object);
    if !(200..300).contains(&status) {
        return Err(
            match obj.and_then(|o| o.get("error")).and_then(Value::as_str) {
                Some(code) => Refused::OAuth {
                    status,
                    error: loggable(code),
                },
                None => Refused::Malformed {
                    status,
                    why: "without an OAuth error body",
                },
            },
        );
    }
    let malformed = |why| Refused::Malformed { status, why };
    let obj = obj.ok_or(malformed("not a JSON object"))?;
    if let Some(code) = obj.get("error").and_then(Value::as_str) {
        // A 200 carrying an error: some servers do it; believe the error.
        return Err(Refused::OAuth {
            status,
            error: loggable(code),
        });
    }
    let token = obj
        .get("access_token")
        .and_then(Value::as_str)
        .ok_or(malformed("without access_token"))?;
    if token.is_empty() || token.len() > MAX_TOKEN_BYTES {
        return Err(malformed("with an empty or oversized access_token"));
    }
    // Sent in a header as it is: visible ASCII only (RFC 6750 b64token is narrower still).
    if !token.bytes().all(|b| (0x21..0x7f).contains(&b)) {
        return Err(malformed(
            "with an access_token that cannot travel in a header",
        ));
    }
    match obj.get("token_type").and_then(Value::as_str) {
        Some(t) if t.eq_ignore_ascii_case("bearer") => {}
        Some(_) => return Err(malformed("with a token_type other than bearer")),
        None => return Err(malformed("without token_type")),
    }
    let lifetime = match obj.get("expires_in") {
        Some(v) => v
            .as_u64()
            // Some servers send it as a string ("3600").
            .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
            .ok_or(malformed(
                "with an expires_in that is not a number of seconds",
            ))?,
        None => jwt_lifetime(token, now).unwrap_or(DEFAULT_LIFETIME),
    };
    if lifetime == 0 {
        return Err(malformed("with a token that has already expired"));
    }
    let mut bearer = http::HeaderValue::from_str(&format!("Bearer {token}"))
        .map_err(|_| malformed("with an access_token that cannot travel in a header"))?;
    bearer.set_sensitive(true);
    Ok(Fetched {
        access_token: token.to_string(),
        bearer,
        lifetime,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: u64 = 1_800_000_000;

    fn ok(v: Value) -> Result<Fetched, Refused> {
        read(200, v.to_string().as_bytes(), NOW)
    }

    fn jwt(exp: u64) -> String {
        let claims = URL_SAFE_NO_PAD.encode(json!({"exp": exp, "sub": "c"}).to_string());
        format!("eyJhbGciOiJFUzI1NiJ9.{claims}.c2ln")
    }

    #[test]
    fn a_token_answer_per_rfc6749_5_1() {
        let f =
            ok(json!({"access_token": "abc", "token_type": "bearer", "expires_in": 3600})).unwrap();
        assert_eq!((f.access_token.as_str(), f.lifetime), ("abc", 3600));
        // token_type without case; expires_in as a string.
        let f =
            ok(json!({"access_token": "abc", "token_type": "Bearer", "expires_in": "60"})).unwrap();
        assert_eq!(f.lifetime, 60);
        // No expires_in: the JWT's exp, else 300 s.
        let f = ok(json!({"access_token": jwt(NOW + 900), "token_type": "BEARER"})).unwrap();
        assert_eq!(f.lifetime, 900);
        let f = ok(json!({"access_token": "opaque", "token_type": "bearer"})).unwrap();
        assert_eq!(f.lifetime, DEFAULT_LIFETIME);
        assert!(
            !format!("{f:?}").contains("opaque"),
            "never the token in a debug print"
        );
    }

    #[test]
    fn what_is_not_a_token() {
        let cases = [
            json!({"token_type": "bearer", "expires_in": 60}),
            json!({"access_token": "a", "expires_in": 60}),
            json!({"access_token": "a", "token_type": "mac", "expires_in": 60}),
            json!({"access_token": "", "token_type": "bearer"}),
            json!({"access_token": "a b", "token_type": "bearer"}),
            json!({"access_token": "a\r\nX: y", "token_type": "bearer"}),
            json!({"access_token": 5, "token_type": "bearer"}),
            json!({"access_token": "a", "token_type": "bearer", "expires_in": -1}),
            json!({"access_token": "a", "token_type": "bearer", "expires_in": "soon"}),
            json!({"access_token": "a", "token_type": "bearer", "expires_in": 0}),
            json!({"access_token": jwt(NOW - 10), "token_type": "bearer"}),
            json!({"access_token": "x".repeat(MAX_TOKEN_BYTES + 1), "token_type": "bearer"}),
            json!(["access_token"]),
        ];
        for c in cases {
            let r = ok(c.clone());
            assert!(
                matches!(r, Err(Refused::Malformed { status: 200, .. })),
                "{c}: {r:?}"
            );
        }
        for body in [&b"<html>login</html>"[..], b"", b"\xff\xfe"] {
            assert!(matches!(
                read(200, body, NOW),
                Err(Refused::Malformed { .. })
            ));
        }
    }

    #[test]
    fn errors_per_rfc6749_5_2() {
        let e = read(
            401,
            br#"{"error":"invalid_client","error_description":"x"}"#,
            NOW,
        )
        .unwrap_err();
        assert!(e.is_invalid_client());
        assert_eq!(
            e.to_string(),
            "the token endpoint answered 401 with error `invalid_client`"
        );
        let e = read(400, br#"{"error":"invalid_scope"}"#, NOW).unwrap_err();
        assert_eq!(
            e,
            Refused::OAuth {
                status: 400,
                error: "invalid_scope".into()
            }
        );
        let e = read(200, br#"{"error":"invalid_grant"}"#, NOW).unwrap_err();
        assert!(matches!(e, Refused::OAuth { status: 200, .. }));
        let e = read(503, b"<html>down</html>", NOW).unwrap_err();
        assert_eq!(
            e,
            Refused::Malformed {
                status: 503,
                why: "without an OAuth error body"
            }
        );
        // A code that could forge a log line is not echoed.
        let e = read(400, br#"{"error":"bad\"\n{\"level\":\"INFO\"}"}"#, NOW).unwrap_err();
        assert_eq!(
            e,
            Refused::OAuth {
                status: 400,
                error: "<unprintable>".into()
            }
        );
    }
}
