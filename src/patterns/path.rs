//! Request-target normalisation (SPEC §3).
//!
//! The decision is taken on the normalised path and the upstream receives exactly that path,
//! so the proxy and the backend can never disagree about which resource was asked for.
//! Anything a backend might read differently from us — dot segments, encoded separators,
//! backslashes, matrix parameters, control bytes, bad encodings — is refused outright.

pub use crate::config::PathParameters;
use std::borrow::Cow;
use std::fmt;

/// Why a request target was refused (400). The text is safe to show the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    AsteriskForm,
    AuthorityForm,
    DotSegment,
    EncodedSlash,
    Backslash,
    ControlCharacter,
    BadPercentEncoding,
    NotUtf8,
    MatrixParameter,
    DoubleEncoding,
    Fragment,
    Empty,
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PathError::AsteriskForm => "asterisk-form request targets (`*`) are not accepted",
            PathError::AuthorityForm => {
                "the request target must be an absolute path (`/...`) or an absolute URL"
            }
            PathError::DotSegment => "the path contains a `.` or `..` segment",
            PathError::EncodedSlash => "the path contains an encoded `/` or `\\`",
            PathError::Backslash => "the path contains a `\\`",
            PathError::ControlCharacter => "the path contains a NUL or control character",
            PathError::BadPercentEncoding => {
                "the path contains a `%` not followed by two hex digits"
            }
            PathError::NotUtf8 => "the percent-decoded path is not valid UTF-8",
            PathError::MatrixParameter => {
                "the path contains a `;` (matrix parameters are not accepted)"
            }
            PathError::DoubleEncoding => {
                "the path contains an encoded `%` that forms another escape (double encoding)"
            }
            PathError::Fragment => "the request target contains a `#`",
            PathError::Empty => "the request target is empty",
        })
    }
}

impl std::error::Error for PathError {}

/// A normalised request target: the path the decision reads and the upstream receives, and
/// the original query string (without `?`), untouched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub path: String,
    pub query: Option<String>,
    /// Under `path_parameters: strip`, the path with each segment's `;...` removed, when
    /// that differs from `path`: the decision reads it, the upstream gets `path`.
    pub stripped: Option<String>,
}

impl Target {
    /// The path the access decision is taken on.
    pub fn decision_path(&self) -> &str {
        self.stripped.as_deref().unwrap_or(&self.path)
    }

    /// Path and query as sent upstream.
    pub fn path_and_query(&self) -> String {
        match &self.query {
            Some(q) => format!("{}?{}", self.path, q),
            None => self.path.clone(),
        }
    }

    /// Whether `wire` (a request target as received) is byte for byte what
    /// [`Self::path_and_query`] gives, so it can go upstream as it is.
    pub fn is_wire_form(&self, wire: &[u8]) -> bool {
        let Some(rest) = wire.strip_prefix(self.path.as_bytes()) else {
            return false;
        };
        match &self.query {
            None => rest.is_empty(),
            Some(q) => rest.strip_prefix(b"?") == Some(q.as_bytes()),
        }
    }
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// Normalise a raw request target (origin-form or absolute-form) as received on the wire.
pub fn normalise(raw: &[u8]) -> Result<Target, PathError> {
    normalise_with(raw, PathParameters::Reject)
}

/// [`normalise`], reading a raw `;` in the path as `params` says (SPEC §11).
pub fn normalise_with(raw: &[u8], params: PathParameters) -> Result<Target, PathError> {
    if raw.is_empty() {
        return Err(PathError::Empty);
    }
    if raw == b"*" {
        return Err(PathError::AsteriskForm);
    }
    let origin = if raw[0] == b'/' {
        Cow::Borrowed(raw)
    } else {
        strip_absolute_form(raw)?
    };
    let origin: &[u8] = &origin;
    let (path, query) = match origin.iter().position(|&b| b == b'?') {
        Some(i) => (&origin[..i], Some(&origin[i + 1..])),
        None => (origin, None),
    };
    if origin.contains(&b'#') {
        return Err(PathError::Fragment);
    }
    let query = match query {
        Some(q) => {
            if q.iter().any(|&b| b < 0x20 || b == 0x7f) {
                return Err(PathError::ControlCharacter);
            }
            // Raw non-ASCII in a query is not HTTP; refuse rather than guess an encoding.
            Some(String::from_utf8(q.to_vec()).map_err(|_| PathError::NotUtf8)?)
        }
        None => None,
    };
    let path = normalise_path_with(path, params)?;
    let stripped = match params {
        PathParameters::Strip if path.contains(';') => Some(strip_parameters(&path)?),
        _ => None,
    };
    Ok(Target {
        path,
        query,
        stripped,
    })
}

/// A normalised path without its matrix parameters, as a servlet container reads it: each
/// segment's `;...` removed, then `//` merged again (`/;x/admin` is `/admin`). A segment
/// that is a dot segment once its parameters are gone (`/..;x/`) is refused.
fn strip_parameters(path: &str) -> Result<String, PathError> {
    let mut out = String::with_capacity(path.len());
    for (i, seg) in path.split('/').enumerate() {
        let name = seg.split_once(';').map_or(seg, |(name, _)| name);
        if name == "." || name == ".." {
            return Err(PathError::DotSegment);
        }
        if i > 0 && !out.ends_with('/') {
            out.push('/');
        }
        out.push_str(name);
    }
    if out.is_empty() {
        out.push('/');
    }
    Ok(out)
}

/// RFC 9112 §3.2.2: reduce `http://host[:port]/p?q` to `/p?q`.
fn strip_absolute_form(raw: &[u8]) -> Result<Cow<'_, [u8]>, PathError> {
    let scheme_len = if starts_with_ignore_case(raw, b"http://") {
        7
    } else if starts_with_ignore_case(raw, b"https://") {
        8
    } else {
        return Err(PathError::AuthorityForm);
    };
    let rest = &raw[scheme_len..];
    Ok(
        match rest
            .iter()
            .position(|&b| b == b'/' || b == b'?' || b == b'#')
        {
            Some(i) if rest[i] == b'/' => Cow::Borrowed(&rest[i..]),
            // `http://host?q`: an empty path means `/`.
            Some(i) => Cow::Owned([b"/".as_slice(), &rest[i..]].concat()),
            None => Cow::Borrowed(b"/"),
        },
    )
}

fn starts_with_ignore_case(s: &[u8], prefix: &[u8]) -> bool {
    s.len() >= prefix.len() && s[..prefix.len()].eq_ignore_ascii_case(prefix)
}

/// Normalise the path component: decode unreserved characters, upper-case the hex of the
/// rest, merge `//`, and refuse the ambiguous.
pub fn normalise_path(path: &[u8]) -> Result<String, PathError> {
    normalise_path_with(path, PathParameters::Reject)
}

/// [`normalise_path`]; under [`PathParameters::Strip`] a raw `;` is kept (an encoded one,
/// `%3B`, is still refused: a backend that decodes first would read a parameter we did not).
pub fn normalise_path_with(path: &[u8], params: PathParameters) -> Result<String, PathError> {
    if path.first() != Some(&b'/') {
        return Err(PathError::AuthorityForm);
    }
    let mut out: Vec<u8> = Vec::with_capacity(path.len());
    // Fully decoded bytes, only to check UTF-8.
    let mut decoded: Vec<u8> = Vec::with_capacity(path.len());
    let mut i = 0;
    while i < path.len() {
        let b = path[i];
        match b {
            b'%' => {
                let (h, l) = match (
                    path.get(i + 1).and_then(|&c| hex(c)),
                    path.get(i + 2).and_then(|&c| hex(c)),
                ) {
                    (Some(h), Some(l)) => (h, l),
                    _ => return Err(PathError::BadPercentEncoding),
                };
                let d = h << 4 | l;
                match d {
                    b'/' | b'\\' => return Err(PathError::EncodedSlash),
                    b';' => return Err(PathError::MatrixParameter),
                    0..=0x1f | 0x7f => return Err(PathError::ControlCharacter),
                    _ if is_unreserved(d) => out.push(d),
                    _ => out.extend_from_slice(&[
                        b'%',
                        HEX[(d >> 4) as usize],
                        HEX[(d & 15) as usize],
                    ]),
                }
                decoded.push(d);
                i += 3;
                continue;
            }
            b'\\' => return Err(PathError::Backslash),
            b';' if params == PathParameters::Reject => return Err(PathError::MatrixParameter),
            0..=0x1f | 0x7f => return Err(PathError::ControlCharacter),
            0x80..=0xff => {
                // Raw non-ASCII is not valid in a request target; carry it percent-encoded
                // so the upstream sees a well-formed URI.
                out.extend_from_slice(&[b'%', HEX[(b >> 4) as usize], HEX[(b & 15) as usize]]);
            }
            b'/' if out.last() == Some(&b'/') => {} // merge `//`
            _ => out.push(b),
        }
        decoded.push(b);
        i += 1;
    }
    if std::str::from_utf8(&decoded).is_err() {
        return Err(PathError::NotUtf8);
    }
    // `%252e` decodes to `%2e`: a backend that decodes twice reads `.` where we saw none.
    if decoded
        .windows(3)
        .any(|w| w[0] == b'%' && hex(w[1]).is_some() && hex(w[2]).is_some())
    {
        return Err(PathError::DoubleEncoding);
    }
    // Dot segments are checked after decoding, so `%2e%2E` is caught with `..`.
    if out
        .split(|&b| b == b'/')
        .any(|seg| seg == b"." || seg == b"..")
    {
        return Err(PathError::DotSegment);
    }
    // Only ASCII was pushed to `out`.
    Ok(String::from_utf8(out).expect("normalised path is ASCII"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wire_form_is_exactly_path_and_query() {
        let t = |path: &str, query: Option<&str>| Target {
            path: path.into(),
            query: query.map(Into::into),
            stripped: None,
        };
        for (target, wire, same) in [
            (t("/a/b", None), "/a/b", true),
            (t("/a/b", None), "/a/b?", false),
            (t("/a/b", None), "/a/b/", false),
            (t("/a/b", None), "/a/./b", false),
            (t("/a/b", Some("x=1")), "/a/b?x=1", true),
            (t("/a/b", Some("x=1")), "/a/b?x=12", false),
            (t("/a/b", Some("x=1")), "/a/b", false),
            (t("/a/b", Some("")), "/a/b?", true),
            (t("/a/b", Some("")), "/a/b", false),
        ] {
            assert_eq!(
                target.is_wire_form(wire.as_bytes()),
                same,
                "{target:?} {wire}"
            );
            assert_eq!(target.path_and_query() == wire, same, "{target:?} {wire}");
        }
    }

    fn ok(raw: &str) -> String {
        normalise(raw.as_bytes())
            .unwrap_or_else(|e| panic!("{raw:?} refused: {e}"))
            .path_and_query()
    }
    fn err(raw: &[u8]) -> PathError {
        match normalise(raw) {
            Ok(t) => panic!("{:?} accepted as {:?}", String::from_utf8_lossy(raw), t),
            Err(e) => e,
        }
    }

    #[test]
    fn ordinary_paths_pass_unchanged() {
        assert_eq!(ok("/"), "/");
        assert_eq!(ok("/example/employees/7"), "/example/employees/7");
        assert_eq!(ok("/example/?q=1&r=a%2Fb"), "/example/?q=1&r=a%2Fb");
        assert_eq!(ok("/x/"), "/x/");
        assert_eq!(ok("/a.b/c..d/...x/.hidden"), "/a.b/c..d/...x/.hidden");
    }

    #[test]
    fn normalisation() {
        assert_eq!(ok("//example///x"), "/example/x");
        assert_eq!(ok("/%65xample/%7e"), "/example/~");
        assert_eq!(ok("/a%20b/%c3%a9"), "/a%20b/%C3%A9");
        assert_eq!(ok("/a%3fb"), "/a%3Fb");
        assert_eq!(ok("/%2A"), "/%2A");
        assert_eq!(ok("http://evil.example/example/x?y=1"), "/example/x?y=1");
        assert_eq!(ok("HTTPS://h:8443"), "/");
        assert_eq!(ok("http://h?x=1"), "/?x=1");
        assert_eq!(ok("/\u{e9}"), "/%C3%A9");
        // An encoded `%` that forms no escape is just a percent sign.
        assert_eq!(ok("/100%25-off"), "/100%25-off");
    }

    /// At least 40 hostile targets, each refused with the right reason.
    #[test]
    fn hostile_paths_are_refused() {
        use PathError::*;
        let cases: &[(&[u8], PathError)] = &[
            (b"/..", DotSegment),
            (b"/.", DotSegment),
            (b"/example/..", DotSegment),
            (b"/example/../admin", DotSegment),
            (b"/example/./x", DotSegment),
            (b"/public/../example/x", DotSegment),
            (b"/%2e%2e/example", DotSegment),
            (b"/%2E%2E/example", DotSegment),
            (b"/%2e./example", DotSegment),
            (b"/.%2e/example", DotSegment),
            (b"/%2e/example", DotSegment),
            (b"/example/%2e", DotSegment),
            (b"/public//../example", DotSegment),
            (b"/public/..//example", DotSegment),
            (b"http://h/public/../example", DotSegment),
            (b"/public%2f..%2fexample", EncodedSlash),
            (b"/public%2F..%2Fexample", EncodedSlash),
            (b"/example%2fx", EncodedSlash),
            (b"/%2f%2fexample", EncodedSlash),
            (b"/public%5c..%5cexample", EncodedSlash),
            (b"/public%5C..%5Cexample", EncodedSlash),
            (b"/public\\..\\example", Backslash),
            (b"/example\\x", Backslash),
            (b"\\example", AuthorityForm),
            (b"/example%00", ControlCharacter),
            (b"/example\x00/x", ControlCharacter),
            (b"/example%0a", ControlCharacter),
            (b"/example%0D%0AX-Injected:1", ControlCharacter),
            (b"/ex\tample", ControlCharacter),
            (b"/ex\x7fample", ControlCharacter),
            (b"/example%7F", ControlCharacter),
            (b"/example%", BadPercentEncoding),
            (b"/example%2", BadPercentEncoding),
            (b"/example%zz", BadPercentEncoding),
            (b"/example%%32%65", BadPercentEncoding),
            (b"/example%g0", BadPercentEncoding),
            (b"/%c0%ae%c0%ae/example", NotUtf8),
            (b"/%c0%af", NotUtf8),
            (b"/%ff", NotUtf8),
            (b"/\xff", NotUtf8),
            (b"/admin;jsessionid=1", MatrixParameter),
            (b"/example;/x", MatrixParameter),
            (b"/example%3b/x", MatrixParameter),
            (b"/example%3B", MatrixParameter),
            (b"/..;/example", MatrixParameter),
            (b"/public/%252e%252e/example", DoubleEncoding),
            (b"/public%252f..%252fexample", DoubleEncoding),
            (b"/x%25%32%65", DoubleEncoding),
            (b"/%255c", DoubleEncoding),
            (b"*", AsteriskForm),
            (b"example.com:443", AuthorityForm),
            (b"example/x", AuthorityForm),
            (b"ftp://h/example", AuthorityForm),
            (b"", Empty),
            (b"/example#frag", Fragment),
            (b"/example?x=\x01", ControlCharacter),
        ];
        assert!(cases.len() >= 40);
        for (raw, want) in cases {
            assert_eq!(err(raw), *want, "{:?}", String::from_utf8_lossy(raw));
        }
    }

    /// SPEC §11 `path_parameters: strip`: decided without `;...`, forwarded with it; every
    /// other refusal stands, inside a parameter too.
    #[test]
    fn strip_decides_without_matrix_parameters() {
        let strip = |raw: &str| {
            normalise_with(raw.as_bytes(), PathParameters::Strip)
                .map(|t| (t.decision_path().to_string(), t.path_and_query()))
        };
        let both = |d: &str, f: &str| Ok((d.to_string(), f.to_string()));
        assert_eq!(
            strip("/example/orders;jsessionid=AB12?x=1"),
            both("/example/orders", "/example/orders;jsessionid=AB12?x=1")
        );
        assert_eq!(strip("/admin;x"), both("/admin", "/admin;x"));
        assert_eq!(strip("/a;v=1/b;v=2/"), both("/a/b/", "/a;v=1/b;v=2/"));
        assert_eq!(strip("/;x/admin"), both("/admin", "/;x/admin"));
        assert_eq!(strip("/admin/;x"), both("/admin/", "/admin/;x"));
        assert_eq!(strip("/;x"), both("/", "/;x"));
        assert_eq!(strip("/a;%41"), both("/a", "/a;A"));
        assert_eq!(strip("//a;x//b"), both("/a/b", "/a;x/b"));
        assert_eq!(strip("/plain/x"), both("/plain/x", "/plain/x"));
        use PathError::*;
        for (raw, want) in [
            ("/public/..;x/admin", DotSegment),
            ("/public/.;x/admin", DotSegment),
            ("/..;/example", DotSegment),
            ("/public/%2e%2e;x/admin", DotSegment),
            ("/public/../admin;x", DotSegment),
            ("/example%3bx", MatrixParameter),
            ("/example%3B/x", MatrixParameter),
            ("/a;x%2f..%2fadmin", EncodedSlash),
            ("/a;x%5cadmin", EncodedSlash),
            ("/a;x\\y", Backslash),
            ("/a;x%00", ControlCharacter),
            ("/a;x%zz", BadPercentEncoding),
            ("/a;x%ff", NotUtf8),
            ("/a;x%252e", DoubleEncoding),
        ] {
            assert_eq!(strip(raw), Err(want), "{raw}");
        }
        // Under the default the same `;` is refused.
        assert_eq!(
            normalise(b"/example/orders;jsessionid=AB12"),
            Err(MatrixParameter)
        );
    }

    #[test]
    fn output_is_a_fixed_point() {
        for raw in ["//a//b/", "/%41%62", "/a%20b", "/%e2%82%ac"] {
            let once = ok(raw);
            assert_eq!(ok(&once), once);
        }
    }
}
