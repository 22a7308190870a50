//! Request heads as the connection guard sees them before pingora does: where a head ends
//! ([`HeadScan`]), and whether it is a request the proxy may hand on ([`check`]).
//!
//! [`check`] is RFC 9112 read strictly, because a head that two parsers read differently is
//! how requests are smuggled: the request line must be exactly `method SP target SP
//! HTTP/1.x`, header lines exactly `name: value`, and the body's framing unambiguous (one
//! `Content-Length` of digits, or `Transfer-Encoding: chunked` alone). It accepts nothing
//! httparse (pingora's parser) refuses, so pingora never answers a head with its own bare 400
//! or repairs one before forwarding it (the fuzz target `request_head` holds it to that).

/// Where a request head ends, or why it never will.
#[derive(Debug, PartialEq, Eq)]
pub enum Head {
    /// More bytes are needed.
    Incomplete,
    /// The head is whole; `len` bytes including the empty line.
    Complete {
        len: usize,
    },
    TooLarge,
    TooManyHeaders,
}

/// Finds the end of an HTTP/1 request head as its bytes arrive (RFC 9112 §2.2: empty lines
/// before the request line are skipped; a bare LF ends a line, as httparse allows). Each
/// call scans only the bytes added since the last, so a head sent a byte at a time costs
/// linear time, not quadratic.
#[derive(Debug, Default)]
pub struct HeadScan {
    /// First byte not yet looked at.
    next: usize,
    /// Where the request line starts, once a byte other than CR/LF was seen.
    request_line: Option<usize>,
    /// Where the current line starts.
    line_start: usize,
    /// Header lines seen so far.
    headers: usize,
}

impl HeadScan {
    /// `buf` must be the previous call's `buf` with bytes appended.
    pub fn advance(&mut self, buf: &[u8], max_bytes: usize, max_headers: usize) -> Head {
        if self.request_line.is_none() {
            match buf[self.next..]
                .iter()
                .position(|b| *b != b'\r' && *b != b'\n')
            {
                Some(off) => {
                    self.next += off;
                    self.request_line = Some(self.next);
                    self.line_start = self.next;
                }
                None => self.next = buf.len(),
            }
        }
        if let Some(first) = self.request_line {
            while let Some(off) = memchr_lf(&buf[self.next..]) {
                let lf = self.next + off;
                self.next = lf + 1;
                let line = &buf[self.line_start..lf];
                if line.is_empty() || line == b"\r" {
                    return if self.next > max_bytes {
                        Head::TooLarge
                    } else {
                        Head::Complete { len: self.next }
                    };
                }
                if self.line_start > first {
                    self.headers += 1;
                    if self.headers > max_headers {
                        return Head::TooManyHeaders;
                    }
                }
                self.line_start = self.next;
            }
            self.next = buf.len();
        }
        if buf.len() >= max_bytes {
            Head::TooLarge
        } else {
            Head::Incomplete
        }
    }
}

/// [`HeadScan`] over a whole buffer at once.
pub fn scan_head(buf: &[u8], max_bytes: usize, max_headers: usize) -> Head {
    HeadScan::default().advance(buf, max_bytes, max_headers)
}

fn memchr_lf(b: &[u8]) -> Option<usize> {
    memchr::memchr(b'\n', b)
}

/// Where a header field's name ends.
fn field_colon(field: &[u8]) -> Option<usize> {
    memchr::memchr(b':', field)
}

/// How the body of an accepted request is delimited (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body: neither `Content-Length` nor `Transfer-Encoding`, or a length of 0.
    Empty,
    Length(u64),
    Chunked,
}

/// A head [`check`] accepts.
#[derive(Debug, PartialEq, Eq)]
pub struct Checked {
    pub framing: Framing,
    /// The head to hand pingora in place of the received one, when it had to change: an
    /// absolute-form target reduced to origin-form with `Host` taken from it (RFC 9112
    /// §3.2.2), or protocol-upgrade fields dropped (every upgrade but WebSocket's).
    pub rewritten: Option<Vec<u8>>,
    /// A WebSocket opening handshake (RFC 6455 §4.1: `GET`, HTTP/1.1, `Upgrade: websocket`,
    /// `Connection: upgrade`, one `Sec-WebSocket-Key`, no body), passed on with its
    /// `Upgrade`: the `Sec-WebSocket-Accept` a 101 must carry for the connection to become
    /// a tunnel (SPEC §17).
    pub websocket: Option<String>,
}

/// Why a head was refused. The text names the rule, never the bytes sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Malformed {
    RequestLine,
    Method,
    Target,
    Version,
    TargetForm,
    AbsoluteForm,
    HeaderName,
    SpaceBeforeColon,
    ObsFold,
    HeaderValue,
    MissingHost,
    DuplicateHost,
    HostUserinfo,
    ContentLength,
    DuplicateContentLength,
    TransferEncodingAndLength,
    TransferEncodingHttp10,
    TransferEncoding,
    UnsupportedCoding,
    ConnectionOption,
    FramingLookalike,
}

impl Malformed {
    /// 400, except a transfer coding that is well formed but not one the proxy relays (501,
    /// RFC 9112 §6.1).
    pub fn status(self) -> u16 {
        match self {
            Malformed::UnsupportedCoding => 501,
            _ => 400,
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            Malformed::UnsupportedCoding => "Not Implemented",
            _ => "Bad Request",
        }
    }
}

impl std::fmt::Display for Malformed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Malformed::RequestLine => "the request line must be exactly `METHOD SP target SP HTTP/1.1` (one space each; a space in the target is sent as %20)",
            Malformed::Method => "the method is not an HTTP token",
            Malformed::Target => "the request target contains a tab, a control character or bytes that are not UTF-8",
            Malformed::Version => "the HTTP version must be `HTTP/1.1` or `HTTP/1.0`",
            Malformed::TargetForm => "the request target must be an absolute path (`/...`) or an absolute URL (`http://host/...`); CONNECT and authority-form targets are not proxied",
            Malformed::AbsoluteForm => "the absolute-form target must be `http://` or `https://`, an authority without userinfo, then the path",
            Malformed::HeaderName => "a header line has no `:` or its name is not an HTTP token",
            Malformed::SpaceBeforeColon => "a header name is followed by whitespace before the `:`",
            Malformed::ObsFold => "a header line starts with whitespace (obsolete line folding is not accepted)",
            Malformed::HeaderValue => "a header value contains a NUL, CR or other control character",
            Malformed::MissingHost => "an HTTP/1.1 request must carry a Host header",
            Malformed::DuplicateHost => "the request carries more than one Host header",
            Malformed::HostUserinfo => "the Host header must not carry userinfo (`@`)",
            Malformed::ContentLength => "Content-Length must be one decimal number",
            Malformed::DuplicateContentLength => "the request carries more than one Content-Length",
            Malformed::TransferEncodingAndLength => "the request carries both Transfer-Encoding and Content-Length",
            Malformed::TransferEncodingHttp10 => "an HTTP/1.0 request must not carry Transfer-Encoding",
            Malformed::TransferEncoding => "Transfer-Encoding must be sent once, with `chunked` as its only, final coding",
            Malformed::UnsupportedCoding => "only the `chunked` transfer coding is relayed",
            Malformed::ConnectionOption => "a Connection header option is not an HTTP token or names a field the proxy sets (Host, X-Forwarded-*), or there are 10 or more",
            Malformed::FramingLookalike => "a header name spells Content-Length or Transfer-Encoding with `_` (backends that read `_` as `-` would frame the body differently)",
        })
    }
}

impl std::error::Error for Malformed {}

/// pingora refuses ten or more `Connection` options.
const MAX_CONNECTION_OPTIONS: usize = 10;
/// The longest header name the `http` crate (pingora's header map) takes.
const MAX_NAME: usize = (1 << 16) - 1;

/// `tchar` (RFC 9110 §5.6.2), as a table: every header name byte is looked up.
const TCHAR: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'!' | b'#'
                    | b'$'
                    | b'%'
                    | b'&'
                    | b'\''
                    | b'*'
                    | b'+'
                    | b'-'
                    | b'.'
                    | b'^'
                    | b'_'
                    | b'`'
                    | b'|'
                    | b'~'
            );
        b += 1;
    }
    t
};

/// `tchar` (RFC 9110 §5.6.2).
pub fn is_tchar(b: u8) -> bool {
    TCHAR[usize::from(b)]
}

/// Field-value bytes (RFC 9110 §5.5): visible ASCII, SP, HTAB and obs-text.
fn is_value_byte(b: u8) -> bool {
    (b >= 0x20 || b == b'\t') && b != 0x7f
}

/// Whether every byte of a field value is a [`is_value_byte`]. Without an early exit, so
/// the compiler checks many bytes at once: a bearer token makes this the longest value of
/// most requests.
fn is_field_value(v: &[u8]) -> bool {
    v.iter().fold(true, |ok, b| ok & is_value_byte(*b))
}

/// Target bytes httparse accepts: visible ASCII and obs-text. The path rules of SPEC §3
/// (`path::normalise`) refuse more.
fn is_target_byte(b: u8) -> bool {
    (0x21..0x7f).contains(&b) || b >= 0x80
}

fn trim_ows(v: &[u8]) -> &[u8] {
    let start = v.iter().position(|b| !matches!(b, b' ' | b'\t'));
    let end = v.iter().rposition(|b| !matches!(b, b' ' | b'\t'));
    match (start, end) {
        (Some(s), Some(e)) => &v[s..=e],
        _ => &[],
    }
}

/// Where the request line starts: after the empty lines (CRLF or LF) a client may send
/// first (RFC 9112 §2.2). A CR that ends no line there is refused, as httparse refuses it.
fn request_start(head: &[u8]) -> Result<usize, Malformed> {
    let mut i = 0;
    loop {
        match head.get(i..i + 2) {
            Some(b"\r\n") => i += 2,
            _ if head.get(i) == Some(&b'\n') => i += 1,
            _ if head.get(i) == Some(&b'\r') => return Err(Malformed::RequestLine),
            _ => return Ok(i),
        }
    }
}

/// The lines of a whole head (as [`HeadScan`] found it) from the request line on, each
/// without its LF or CRLF, up to the empty line that ends it. A CR anywhere else stays in
/// the line, for the byte rules to refuse.
fn lines(head: &[u8], start: usize) -> impl Iterator<Item = &[u8]> {
    let mut rest = &head[start..];
    std::iter::from_fn(move || {
        let end = memchr_lf(rest).unwrap_or(rest.len());
        let line = &rest[..end];
        rest = rest.get(end + 1..).unwrap_or_default();
        Some(line.strip_suffix(b"\r").unwrap_or(line))
    })
    .take_while(|l| !l.is_empty())
}

/// The value of the first field named `name` (any letter case) in a whole head, request or
/// response, without its surrounding whitespace.
pub fn field<'a>(head: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    lines(head, 0).skip(1).find_map(|line| {
        let colon = field_colon(line)?;
        line[..colon]
            .eq_ignore_ascii_case(name)
            .then(|| trim_ows(&line[colon + 1..]))
    })
}

/// The parts of an accepted request line.
struct RequestLine<'a> {
    method: &'a [u8],
    target: &'a [u8],
    version: &'a [u8],
}

fn request_line(line: &[u8]) -> Result<RequestLine<'_>, Malformed> {
    let mut parts = line.split(|b| *b == b' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Malformed::RequestLine);
    };
    if method.is_empty() || target.is_empty() || version.is_empty() {
        return Err(Malformed::RequestLine);
    }
    if !method.iter().all(|b| is_tchar(*b)) {
        return Err(Malformed::Method);
    }
    // httparse also wants the target to be UTF-8; pingora would escape it otherwise.
    if !target.iter().all(|b| is_target_byte(*b)) || std::str::from_utf8(target).is_err() {
        return Err(Malformed::Target);
    }
    if version != b"HTTP/1.1" && version != b"HTTP/1.0" {
        return Err(Malformed::Version);
    }
    Ok(RequestLine {
        method,
        target,
        version,
    })
}

/// An absolute-form target split into its authority and origin-form rest (`/` when the URL
/// has no path).
fn absolute_form(target: &[u8]) -> Result<(&[u8], &[u8]), Malformed> {
    let Some(colon) = target.iter().position(|b| *b == b':') else {
        return Err(Malformed::TargetForm);
    };
    let (scheme, rest) = (&target[..colon], &target[colon + 1..]);
    let Some(rest) = rest.strip_prefix(b"//") else {
        // `host:port`: authority-form, as CONNECT sends it.
        return Err(Malformed::TargetForm);
    };
    if !scheme.eq_ignore_ascii_case(b"http") && !scheme.eq_ignore_ascii_case(b"https") {
        return Err(Malformed::AbsoluteForm);
    }
    let end = rest
        .iter()
        .position(|b| matches!(b, b'/' | b'?' | b'#'))
        .unwrap_or(rest.len());
    let (authority, origin) = rest.split_at(end);
    // reg-name / IPv4 / IP-literal and a port (RFC 3986 §3.2): no userinfo, nothing else.
    let authority_byte = |b: &u8| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:[]%".contains(b);
    if authority.is_empty() || !authority.iter().all(authority_byte) {
        return Err(Malformed::AbsoluteForm);
    }
    // `http://host` and `http://host?q` have the path `/` (RFC 9112 §3.2.4): the rewrite
    // puts it in.
    Ok((authority, origin))
}

/// Check a whole request head (`head` ends with the empty line, as [`HeadScan`] found it).
pub fn check(head: &[u8]) -> Result<Checked, Malformed> {
    let start = request_start(head)?;
    let mut lines = lines(head, start);
    let line = request_line(lines.next().ok_or(Malformed::RequestLine)?)?;
    if line.method == b"CONNECT" {
        return Err(Malformed::TargetForm);
    }
    let absolute = match line.target[0] {
        b'/' => None,
        // Asterisk-form: valid syntax; the path rules answer it (SPEC §3).
        b'*' if line.target.len() == 1 => None,
        _ => Some(absolute_form(line.target)?),
    };
    let http10 = line.version == b"HTTP/1.0";
    let (mut hosts, mut lengths, mut encodings) = (0usize, 0usize, 0usize);
    let mut length = None;
    // Upgrade fields seen, whether the one `Upgrade` says exactly `websocket` (what pingora
    // passes upstream), whether `Connection` names `upgrade`, and an `HTTP2-Settings`.
    let (mut upgrades, mut upgrade_websocket, mut connection_upgrade, mut http2_settings) =
        (0usize, false, false, false);
    let mut keys: Vec<&[u8]> = Vec::new();
    let mut connection_options = 0;
    for field in lines {
        if matches!(field[0], b' ' | b'\t') {
            return Err(Malformed::ObsFold);
        }
        let colon = field_colon(field).ok_or(Malformed::HeaderName)?;
        let (name, value) = (&field[..colon], &field[colon + 1..]);
        if name.last().is_some_and(|b| matches!(b, b' ' | b'\t')) {
            return Err(Malformed::SpaceBeforeColon);
        }
        if name.is_empty() || name.len() > MAX_NAME || !name.iter().all(|b| is_tchar(*b)) {
            return Err(Malformed::HeaderName);
        }
        if !is_field_value(value) {
            return Err(Malformed::HeaderValue);
        }
        let value = trim_ows(value);
        if name.eq_ignore_ascii_case(b"host") {
            hosts += 1;
            if value.contains(&b'@') {
                return Err(Malformed::HostUserinfo);
            }
        } else if name.eq_ignore_ascii_case(b"content-length") {
            lengths += 1;
            if value.is_empty() || value.len() > 19 || !value.iter().all(u8::is_ascii_digit) {
                return Err(Malformed::ContentLength);
            }
            // At most 19 digits: always fits.
            length = std::str::from_utf8(value)
                .ok()
                .and_then(|v| v.parse::<u64>().ok());
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            encodings += 1;
            // RFC 9112 §6.3: chunked must be the final coding and applied once.
            let (mut codings, mut last_chunked, mut chunked_twice) = (0, false, false);
            for c in value
                .split(|b| *b == b',')
                .map(trim_ows)
                .filter(|c| !c.is_empty())
            {
                chunked_twice |= last_chunked;
                last_chunked = c.eq_ignore_ascii_case(b"chunked");
                codings += 1;
            }
            if !last_chunked || chunked_twice {
                return Err(Malformed::TransferEncoding);
            }
            if codings > 1 {
                return Err(Malformed::UnsupportedCoding);
            }
        } else if name.eq_ignore_ascii_case(b"connection") {
            // What pingora refuses when it builds the upstream request (with a bare cause),
            // refused here with the reason.
            for option in value.split(|b| *b == b',').map(trim_ows) {
                if option.is_empty() {
                    continue;
                }
                connection_options += 1;
                connection_upgrade |= option.eq_ignore_ascii_case(b"upgrade");
                let proxy_sets = [
                    &b"host"[..],
                    b"x-forwarded-for",
                    b"x-forwarded-host",
                    b"x-forwarded-proto",
                ]
                .iter()
                .any(|n| option.eq_ignore_ascii_case(n));
                if !option.iter().all(|b| is_tchar(*b))
                    || proxy_sets
                    || connection_options >= MAX_CONNECTION_OPTIONS
                {
                    return Err(Malformed::ConnectionOption);
                }
            }
        } else if name.eq_ignore_ascii_case(b"transfer_encoding")
            || name.eq_ignore_ascii_case(b"content_length")
        {
            return Err(Malformed::FramingLookalike);
        } else if name.eq_ignore_ascii_case(b"upgrade") {
            upgrades += 1;
            upgrade_websocket = value.eq_ignore_ascii_case(b"websocket");
        } else if name.eq_ignore_ascii_case(b"http2-settings") {
            http2_settings = true;
        } else if name.eq_ignore_ascii_case(b"sec-websocket-key") {
            keys.push(value);
        }
    }
    if hosts == 0 && !http10 {
        return Err(Malformed::MissingHost);
    }
    if hosts > 1 {
        return Err(Malformed::DuplicateHost);
    }
    if lengths > 1 {
        return Err(Malformed::DuplicateContentLength);
    }
    let framing = if encodings > 0 {
        if encodings > 1 {
            return Err(Malformed::TransferEncoding);
        }
        if lengths > 0 {
            return Err(Malformed::TransferEncodingAndLength);
        }
        if http10 {
            return Err(Malformed::TransferEncodingHttp10);
        }
        Framing::Chunked
    } else {
        match length {
            Some(0) | None => Framing::Empty,
            Some(n) => Framing::Length(n),
        }
    };
    // A handshake with a body is not one (where would the tunnel begin?): its upgrade goes.
    let handshake = upgrades == 1
        && keys.len() == 1
        && upgrade_websocket
        && connection_upgrade
        && line.method == b"GET"
        && line.version == b"HTTP/1.1"
        && framing == Framing::Empty;
    let websocket = handshake.then(|| websocket_accept(keys[0]));
    let drop_upgrade = (upgrades > 0 && !handshake) || http2_settings;
    let rewritten = (absolute.is_some() || drop_upgrade)
        .then(|| rewrite(head, start, &line, absolute, handshake));
    Ok(Checked {
        framing,
        rewritten,
        websocket,
    })
}

/// The `Sec-WebSocket-Accept` that proves a server read this `Sec-WebSocket-Key` (RFC 6455
/// §4.2.2): base64 of the SHA-1 of the key and the protocol's GUID.
pub fn websocket_accept(key: &[u8]) -> String {
    use base64::Engine;
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY);
    ctx.update(key);
    ctx.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    base64::engine::general_purpose::STANDARD.encode(ctx.finish())
}

/// The head pingora is handed instead: origin-form target and `Host` from an absolute-form
/// target, `HTTP2-Settings` and (but for a WebSocket handshake) `Upgrade` left out (RFC
/// 9110 §7.8 lets a server ignore an upgrade; relaying h2c's or an unknown one would open
/// a tunnel nothing watches). Only called on a head [`check`] accepted.
fn rewrite(
    head: &[u8],
    start: usize,
    line: &RequestLine<'_>,
    absolute: Option<(&[u8], &[u8])>,
    websocket: bool,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(head.len() + 8);
    out.extend_from_slice(line.method);
    out.push(b' ');
    match absolute {
        Some((_, origin)) => {
            if origin.first() != Some(&b'/') {
                out.push(b'/');
            }
            out.extend_from_slice(origin);
        }
        None => out.extend_from_slice(line.target),
    }
    out.push(b' ');
    out.extend_from_slice(line.version);
    out.extend_from_slice(b"\r\n");
    if let Some((authority, _)) = absolute {
        out.extend_from_slice(b"Host: ");
        out.extend_from_slice(authority);
        out.extend_from_slice(b"\r\n");
    }
    for field in lines(head, start).skip(1) {
        let name = &field[..field_colon(field).unwrap_or(0)];
        let dropped = (name.eq_ignore_ascii_case(b"upgrade") && !websocket)
            || name.eq_ignore_ascii_case(b"http2-settings")
            || (absolute.is_some() && name.eq_ignore_ascii_case(b"host"));
        if !dropped {
            out.extend_from_slice(field);
            out.extend_from_slice(b"\r\n");
        }
    }
    out.extend_from_slice(b"\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_values_are_checked_byte_for_byte() {
        for b in 0..=255u8 {
            let mut v = vec![b'a'; 70];
            v[37] = b;
            assert_eq!(is_field_value(&v), is_value_byte(b), "{b:#x}");
        }
        assert!(is_field_value(b""));
    }

    #[test]
    fn heads_are_found_and_bounded() {
        let full = b"GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\n\r\nbody";
        assert_eq!(scan_head(full, 1024, 10), Head::Complete { len: 33 });
        assert_eq!(scan_head(&full[..20], 1024, 10), Head::Incomplete);
        assert_eq!(scan_head(b"", 1024, 10), Head::Incomplete);
        // Bare LF line ends and leading empty lines, as httparse accepts them.
        assert_eq!(
            scan_head(b"\r\n\r\nGET / HTTP/1.1\nHost: a\n\n", 1024, 10),
            Head::Complete { len: 28 }
        );
        // Leading empty lines alone are not a head.
        assert_eq!(scan_head(b"\r\n\r\n\r\n", 1024, 10), Head::Incomplete);
        assert_eq!(scan_head(full, 32, 10), Head::TooLarge);
        assert_eq!(scan_head(full, 33, 10), Head::Complete { len: 33 });
        assert_eq!(scan_head(&[b'a'; 64], 64, 10), Head::TooLarge);
        assert_eq!(scan_head(full, 1024, 2), Head::Complete { len: 33 });
        assert_eq!(scan_head(full, 1024, 1), Head::TooManyHeaders);
        // Fed a byte at a time, the scan agrees with the one-shot scan at every length.
        for head in [
            &full[..],
            b"\r\n\nGET / HTTP/1.1\nA: 1\r\n\r\n",
            b"GET / HTTP/1.1\r\na: 1\r\nb: 2\r\nc: 3\r\n\r\n",
        ] {
            for (max_bytes, max_headers) in [(1024, 10), (20, 10), (1024, 1)] {
                let mut scan = HeadScan::default();
                for n in 1..=head.len() {
                    let step = scan.advance(&head[..n], max_bytes, max_headers);
                    assert_eq!(step, scan_head(&head[..n], max_bytes, max_headers), "{n}");
                    if step != Head::Incomplete {
                        break;
                    }
                }
            }
        }
        // Counted before the head is whole, so a stream of short lines is refused early.
        assert_eq!(
            scan_head(b"GET / HTTP/1.1\r\na: 1\r\nb: 1\r\nc", 1024, 1),
            Head::TooManyHeaders
        );
    }

    /// httparse (pingora's parser) reads an accepted head whole, as the fuzz target checks
    /// at scale.
    fn httparse_reads(head: &[u8]) {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut headers);
        let parsed = req.parse(head);
        assert_eq!(
            parsed,
            Ok(httparse::Status::Complete(head.len())),
            "{}",
            head.escape_ascii()
        );
    }

    fn checked(head: &[u8]) -> Result<Checked, Malformed> {
        let got = check(head);
        if let Ok(c) = &got {
            httparse_reads(c.rewritten.as_deref().unwrap_or(head));
        }
        got
    }

    #[test]
    fn strict_request_lines() {
        let ok = |line: &str| checked(format!("{line}\r\nHost: a\r\n\r\n").as_bytes());
        for line in [
            "GET / HTTP/1.1",
            "GET /a/b?c=d%20e HTTP/1.0",
            "PURGE /x HTTP/1.1",
            "OPTIONS * HTTP/1.1",
            "GET /caf\u{e9} HTTP/1.1",
        ] {
            assert!(ok(line).is_ok(), "{line}");
        }
        for (line, want) in [
            ("GET /a b HTTP/1.1", Malformed::RequestLine),
            ("GET  / HTTP/1.1", Malformed::RequestLine),
            ("GET / HTTP/1.1 ", Malformed::RequestLine),
            (" GET / HTTP/1.1", Malformed::RequestLine),
            ("GET /", Malformed::RequestLine),
            ("\rGET / HTTP/1.1", Malformed::RequestLine),
            ("\r\r\nGET / HTTP/1.1", Malformed::RequestLine),
            ("GET\t/ HTTP/1.1", Malformed::RequestLine),
            ("G\tT / HTTP/1.1", Malformed::Method),
            ("GET /a\tb HTTP/1.1", Malformed::Target),
            ("GET /a\x7fb HTTP/1.1", Malformed::Target),
            ("GET /a\rb HTTP/1.1", Malformed::Target),
            ("GE(T / HTTP/1.1", Malformed::Method),
            ("GET / http/1.1", Malformed::Version),
            ("GET / HTTP/1.2", Malformed::Version),
            ("GET / HTTP/2.0", Malformed::Version),
            ("GET / HTTP/1.10", Malformed::Version),
            ("GET / HTTP/1.1\r", Malformed::Version),
            ("CONNECT example.com:443 HTTP/1.1", Malformed::TargetForm),
            ("CONNECT /x HTTP/1.1", Malformed::TargetForm),
            ("GET example.com:443 HTTP/1.1", Malformed::TargetForm),
            ("GET x HTTP/1.1", Malformed::TargetForm),
            ("GET ftp://a/b HTTP/1.1", Malformed::AbsoluteForm),
            ("GET http://u@a/b HTTP/1.1", Malformed::AbsoluteForm),
            ("GET http:///b HTTP/1.1", Malformed::AbsoluteForm),
            ("GET http://a\"b/ HTTP/1.1", Malformed::AbsoluteForm),
        ] {
            assert_eq!(ok(line), Err(want), "{}", line.escape_debug());
        }
        // Raw non-UTF-8 in the target: httparse refuses it, so pingora would escape it.
        assert_eq!(
            checked(b"GET /?\xff HTTP/1.1\r\nHost: a\r\n\r\n"),
            Err(Malformed::Target)
        );
    }

    #[test]
    fn absolute_form_becomes_origin_form_with_its_authority() {
        let got =
            checked(b"GET http://api.example:8080/a?b=1 HTTP/1.1\r\nHost: other\r\nX: 1\r\n\r\n")
                .unwrap();
        assert_eq!(
            got.rewritten.as_deref(),
            Some(&b"GET /a?b=1 HTTP/1.1\r\nHost: api.example:8080\r\nX: 1\r\n\r\n"[..])
        );
        for (target, path) in [
            ("HTTPS://h", "/"),
            ("http://h?q", "/?q"),
            ("http://[::1]:1/x", "/x"),
        ] {
            let got =
                checked(format!("GET {target} HTTP/1.1\r\nHost: h\r\n\r\n").as_bytes()).unwrap();
            let head = String::from_utf8(got.rewritten.unwrap()).unwrap();
            assert!(
                head.starts_with(&format!("GET {path} HTTP/1.1\r\n")),
                "{head}"
            );
        }
        // Upgrades are ignored: the fields go, the rest stays as sent.
        let got = checked(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n").unwrap();
        assert_eq!(
            got.rewritten.as_deref(),
            Some(&b"GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\n\r\n"[..])
        );
        assert_eq!(
            checked(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
                .unwrap()
                .rewritten,
            None
        );
    }

    #[test]
    fn only_a_websocket_handshake_keeps_its_upgrade() {
        const WS: &str = "Host: a\r\nConnection: keep-alive, Upgrade\r\nUpgrade: WebSocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n";
        let head = |line: &str, fields: &str| {
            checked(format!("{line}\r\n{fields}\r\n").as_bytes())
                .unwrap_or_else(|e| panic!("{line} {fields}: {e:?}"))
        };
        let got = head("GET /chat HTTP/1.1", WS);
        // RFC 6455 §1.3's own example.
        assert_eq!(
            got.websocket.as_deref(),
            Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
        );
        assert_eq!(got.rewritten, None, "passed on as sent");
        // Absolute-form: reduced, the upgrade kept.
        let got = head("GET http://a/chat HTTP/1.1", WS);
        assert!(got.websocket.is_some());
        let rewritten = String::from_utf8(got.rewritten.unwrap()).unwrap();
        assert!(
            rewritten.contains("\r\nUpgrade: WebSocket\r\n"),
            "{rewritten}"
        );
        // Anything else is not a handshake: the upgrade is dropped, the request served.
        for (line, fields) in [
            ("POST /chat HTTP/1.1", WS.to_string()),
            ("GET /chat HTTP/1.0", WS.to_string()),
            ("GET /chat HTTP/1.1", format!("{WS}Content-Length: 3\r\n")),
            (
                "GET /chat HTTP/1.1",
                WS.replace("keep-alive, Upgrade", "keep-alive"),
            ),
            (
                "GET /chat HTTP/1.1",
                WS.replace("Upgrade: WebSocket", "Upgrade: websocket, h2c"),
            ),
            ("GET /chat HTTP/1.1", format!("{WS}Upgrade: websocket\r\n")),
            (
                "GET /chat HTTP/1.1",
                WS.replace("Upgrade: WebSocket", "Upgrade: h2c"),
            ),
            (
                "GET /chat HTTP/1.1",
                WS.replace("Sec-WebSocket-Key", "Sec-WebSocket-Nonce"),
            ),
            (
                "GET /chat HTTP/1.1",
                format!("{WS}Sec-WebSocket-Key: AQIDBAUGBwgJCgsMDQ4PEA==\r\n"),
            ),
        ] {
            let got = head(line, &fields);
            assert!(got.websocket.is_none(), "{line} {fields}");
            let rewritten = String::from_utf8(got.rewritten.unwrap()).unwrap();
            assert!(
                !rewritten.to_ascii_lowercase().contains("upgrade:"),
                "{rewritten}"
            );
        }
    }

    #[test]
    fn header_lines_and_framing() {
        let head = |fields: &str| checked(format!("POST /x HTTP/1.1\r\n{fields}\r\n").as_bytes());
        let framing = |fields: &str| head(fields).map(|c| c.framing);
        assert_eq!(framing("Host: a\r\n"), Ok(Framing::Empty));
        assert_eq!(
            framing("Host: a\r\nContent-Length: 0\r\n"),
            Ok(Framing::Empty)
        );
        assert_eq!(
            framing("Host: a\r\ncontent-length:  12 \r\n"),
            Ok(Framing::Length(12))
        );
        assert_eq!(
            framing("Host: a\r\nTransfer-Encoding: Chunked\r\n"),
            Ok(Framing::Chunked)
        );
        assert_eq!(
            framing("Host: a\r\nTransfer-Encoding: ,chunked\r\n"),
            Ok(Framing::Chunked)
        );
        assert_eq!(
            framing("Host:a\nX: é\n"),
            Ok(Framing::Empty),
            "bare LF, obs-text"
        );
        for (fields, want) in [
            ("", Malformed::MissingHost),
            ("Host: a\r\nHost: a\r\n", Malformed::DuplicateHost),
            ("Host: u@a\r\n", Malformed::HostUserinfo),
            (
                "Host: a\r\nContent-Length: 1\r\nContent-Length: 1\r\n",
                Malformed::DuplicateContentLength,
            ),
            (
                "Host: a\r\nContent-Length: 1, 1\r\n",
                Malformed::ContentLength,
            ),
            (
                "Host: a\r\nContent-Length: +1\r\n",
                Malformed::ContentLength,
            ),
            (
                "Host: a\r\nContent-Length: -1\r\n",
                Malformed::ContentLength,
            ),
            (
                "Host: a\r\nContent-Length: 0x10\r\n",
                Malformed::ContentLength,
            ),
            (
                "Host: a\r\nContent-Length: 1 2\r\n",
                Malformed::ContentLength,
            ),
            ("Host: a\r\nContent-Length: \r\n", Malformed::ContentLength),
            (
                "Host: a\r\nContent-Length: 99999999999999999999\r\n",
                Malformed::ContentLength,
            ),
            (
                "Host: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n",
                Malformed::TransferEncodingAndLength,
            ),
            (
                "Host: a\r\nTransfer-Encoding: xchunked\r\n",
                Malformed::TransferEncoding,
            ),
            (
                "Host: a\r\nTransfer-Encoding: chunked, identity\r\n",
                Malformed::TransferEncoding,
            ),
            (
                "Host: a\r\nTransfer-Encoding: chunked, chunked\r\n",
                Malformed::TransferEncoding,
            ),
            (
                "Host: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
                Malformed::TransferEncoding,
            ),
            (
                "Host: a\r\nTransfer-Encoding: \"chunked\"\r\n",
                Malformed::TransferEncoding,
            ),
            (
                "Host: a\r\nTransfer-Encoding: gzip, chunked\r\n",
                Malformed::UnsupportedCoding,
            ),
            (
                "Host: a\r\nTransfer-Encoding : chunked\r\n",
                Malformed::SpaceBeforeColon,
            ),
            (
                "Host: a\r\nTransfer-Encoding:\x0bchunked\r\n",
                Malformed::HeaderValue,
            ),
            ("Host: a\r\nX: a\x00b\r\n", Malformed::HeaderValue),
            ("Host: a\r\nX: a\rb\r\n", Malformed::HeaderValue),
            ("Host: a\r\nX: 1\r\n  folded\r\n", Malformed::ObsFold),
            ("Host: a\r\nX 1\r\n", Malformed::HeaderName),
            ("Host: a\r\n: 1\r\n", Malformed::HeaderName),
            ("Host: a\r\nX(: 1\r\n", Malformed::HeaderName),
            (
                "Host: a\r\nConnection: close, :authority\r\n",
                Malformed::ConnectionOption,
            ),
            (
                "Host: a\r\nConnection: X-Forwarded-For\r\n",
                Malformed::ConnectionOption,
            ),
            (
                "Host: a\r\nConnection: a,b,c,d,e\r\nConnection: f,g,h,i,j\r\n",
                Malformed::ConnectionOption,
            ),
            (
                "Host: a\r\nTransfer_Encoding: chunked\r\n",
                Malformed::FramingLookalike,
            ),
            (
                "Host: a\r\ncontent_length: 5\r\n",
                Malformed::FramingLookalike,
            ),
        ] {
            assert_eq!(framing(fields), Err(want), "{}", fields.escape_debug());
        }
        let http10 = |fields: &str| {
            checked(format!("POST /x HTTP/1.0\r\n{fields}\r\n").as_bytes()).map(|c| c.framing)
        };
        assert_eq!(http10(""), Ok(Framing::Empty), "HTTP/1.0 needs no Host");
        assert_eq!(
            http10("Transfer-Encoding: chunked\r\n"),
            Err(Malformed::TransferEncodingHttp10)
        );
        assert_eq!(Malformed::UnsupportedCoding.status(), 501);
        assert_eq!(Malformed::ObsFold.status(), 400);
    }
}
