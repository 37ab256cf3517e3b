//! The opening handshake of SIP over WebSocket, server side (RFC 6455 §4
//! with the `sip` subprotocol of RFC 7118 §4): [`parse_upgrade`] reads a
//! client's request, [`write_accept`] and [`write_refusal`] write the
//! answer. Also the base64 (RFC 4648 §4) the key and the accept value need.

use std::fmt;

use sha1::{Digest, Sha1};

use super::write_all;
use crate::sip::scan;

// ---------------------------------------------------------------------------
// Opening handshake (RFC 6455 §4, RFC 7118 §4)
// ---------------------------------------------------------------------------

/// The GUID the server appends to the client's key before hashing
/// (RFC 6455 §1.3, §4.2.2 item 5.4): proves the answer came from a
/// WebSocket server, not a cache or a confused HTTP server.
const ACCEPT_GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// The only protocol version RFC 6455 defines (§4.1 item 9, §11.6).
const VERSION: &[u8] = b"13";

/// The subprotocol RFC 7118 §4 registers; compared exactly, as RFC 6455
/// §4.1 has the client check the echoed value.
const SUBPROTOCOL: &[u8] = b"sip";

/// Length of a `Sec-WebSocket-Accept` value: base64 of a 20-byte SHA-1
/// digest (RFC 4648 §4: 4 characters per 3 bytes, padded).
pub const ACCEPT_KEY_LEN: usize = 28;

const ACCEPT_HEAD: &[u8] = b"HTTP/1.1 101 Switching Protocols\r\n\
Upgrade: websocket\r\n\
Connection: Upgrade\r\n\
Sec-WebSocket-Accept: ";

const ACCEPT_TAIL: &[u8] = b"\r\nSec-WebSocket-Protocol: sip\r\n\r\n";

/// Exact length of the 101 response [`write_accept`] writes, so that a
/// caller can size its buffer once.
pub const ACCEPT_LEN: usize = ACCEPT_HEAD.len() + ACCEPT_KEY_LEN + ACCEPT_TAIL.len();

/// Every refusal, whole. `Content-Length: 0` lets an HTTP client see the
/// end of the answer before the close.
const REFUSALS: [(u16, &[u8]); 4] = [
    (
        400,
        b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
    ),
    (
        403,
        b"HTTP/1.1 403 Forbidden\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
    ),
    // RFC 6455 §4.2.2 item 4 / §4.4: name the version we speak. RFC 7231
    // §6.5.15 wants Upgrade in a 426, and RFC 7230 §6.7 wants the
    // `upgrade` option in Connection beside it.
    (
        426,
        b"HTTP/1.1 426 Upgrade Required\r\nUpgrade: websocket\r\n\
Sec-WebSocket-Version: 13\r\nConnection: Upgrade, close\r\nContent-Length: 0\r\n\r\n",
    ),
    // RFC 6585 §5.
    (
        431,
        b"HTTP/1.1 431 Request Header Fields Too Large\r\nConnection: close\r\n\
Content-Length: 0\r\n\r\n",
    ),
];

/// Length of the longest refusal [`write_refusal`] writes, for sizing a
/// buffer once.
pub const REFUSAL_MAX_LEN: usize = {
    let mut max = 0;
    let mut i = 0;
    while i < REFUSALS.len() {
        if REFUSALS[i].1.len() > max {
            max = REFUSALS[i].1.len();
        }
        i += 1;
    }
    max
};

/// A valid opening handshake (RFC 6455 §4.2.1, RFC 7118 §4): what the
/// caller needs to answer it with [`write_accept`], and to decide whether
/// to (an `Origin` allow-list, §10.2). Borrows the request bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Upgrade<'a> {
    /// `Sec-WebSocket-Key` as sent, trimmed: base64 of 16 bytes (§4.2.1
    /// item 5), the input of [`accept_key`].
    pub key: &'a [u8],
    /// `Origin` (§4.2.1 item 7): browsers always send it, other clients
    /// may not; the caller checks it against its allow-list (§10.2).
    pub origin: Option<&'a [u8]>,
    /// `Host` (§4.2.1 item 2), for virtual hosting and logs.
    pub host: &'a [u8],
    /// The request-target (§4.2.1 item 1): the resource name the client
    /// asked for, or an absolute URI holding it.
    pub path: &'a [u8],
    /// Bytes of the request, blank line included; frames start after them.
    pub len: usize,
}

/// Why an opening handshake was refused; [`HandshakeError::status`] is the
/// HTTP answer, written by [`write_refusal`]. `Copy`, no heap, so it can
/// index a counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HandshakeError {
    /// The header block does not end within the caller's limit.
    TooLarge,
    /// The request line is not `<method> <target> HTTP/1.1` (§4.2.1 item 1).
    BadRequestLine,
    /// The method is not GET (§4.2.1 item 1).
    NotGet,
    /// A header line is not `name: value`: obsolete folding, white space
    /// before the colon, a control byte (RFC 7230 §3.2.4 says refuse).
    BadHeader,
    /// `Host` is missing, empty or repeated (§4.2.1 item 2).
    BadHost,
    /// `Upgrade` does not name `websocket` (§4.2.1 item 3).
    NotWebSocket,
    /// `Connection` lacks the `upgrade` option (§4.2.1 item 4).
    NoConnectionUpgrade,
    /// `Sec-WebSocket-Version` is missing or not 13 (§4.2.1 item 6).
    BadVersion,
    /// `Sec-WebSocket-Key` is missing, repeated (§11.3.1), or not base64
    /// of 16 bytes (§4.2.1 item 5).
    BadKey,
    /// `Sec-WebSocket-Protocol` does not offer `sip` (RFC 7118 §4).
    NoSipProtocol,
    /// `Origin` is repeated: an allow-list cannot judge two.
    BadOrigin,
}

impl HandshakeError {
    /// The status to answer with: 426 for a version we do not speak
    /// (§4.2.2 item 4), 431 for an oversized request (RFC 6585 §5), 400
    /// for the rest (§4.2.1: "such as 400 Bad Request").
    pub fn status(self) -> u16 {
        match self {
            HandshakeError::TooLarge => 431,
            HandshakeError::BadVersion => 426,
            _ => 400,
        }
    }

    /// A short description, for logs.
    pub const fn as_str(self) -> &'static str {
        match self {
            HandshakeError::TooLarge => "WebSocket handshake too large",
            HandshakeError::BadRequestLine => "bad HTTP request line",
            HandshakeError::NotGet => "WebSocket handshake is not a GET",
            HandshakeError::BadHeader => "bad HTTP header line",
            HandshakeError::BadHost => "missing or repeated Host",
            HandshakeError::NotWebSocket => "Upgrade does not name websocket",
            HandshakeError::NoConnectionUpgrade => "Connection lacks upgrade",
            HandshakeError::BadVersion => "Sec-WebSocket-Version is not 13",
            HandshakeError::BadKey => "bad Sec-WebSocket-Key",
            HandshakeError::NoSipProtocol => "Sec-WebSocket-Protocol does not offer sip",
            HandshakeError::BadOrigin => "repeated Origin",
        }
    }
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::error::Error for HandshakeError {}

/// Reads a client's opening handshake from the start of `buf` (RFC 6455
/// §4.2.1, RFC 7118 §4). `Ok(None)` while the header block (up to the
/// blank line) is incomplete; [`HandshakeError::TooLarge`] once it cannot
/// end within `max_len` bytes, so a slow client cannot grow the buffer.
/// The caller still checks [`Upgrade::origin`] before accepting.
pub fn parse_upgrade(buf: &[u8], max_len: usize) -> Result<Option<Upgrade<'_>>, HandshakeError> {
    let window = &buf[..buf.len().min(max_len)];
    let Some(end) = memchr::memmem::find(window, b"\r\n\r\n") else {
        return if buf.len() >= max_len {
            Err(HandshakeError::TooLarge)
        } else {
            Ok(None)
        };
    };
    let mut lines = Lines(Some(&buf[..end]));
    let path = request_target(lines.next().unwrap_or_default())?;

    let mut host = None;
    let mut origin = None;
    let mut key = None;
    let (mut upgrade, mut connection, mut sip) = (false, false, false);
    let (mut version_13, mut version_other) = (false, false);
    for line in lines {
        // RFC 7230 §3.2: field-name ":" OWS field-value OWS. A name must be
        // a token, which also refuses obs-fold (a leading SP/HT) and white
        // space before the colon (§3.2.4).
        let colon = scan::find_byte(line, b':').ok_or(HandshakeError::BadHeader)?;
        let (name, raw) = (&line[..colon], &line[colon + 1..]);
        if !scan::is_token(name) || raw.iter().any(|&b| (b < b' ' && b != b'\t') || b == 0x7f) {
            return Err(HandshakeError::BadHeader);
        }
        let value = scan::trim(raw);
        let is = |n: &str| name.eq_ignore_ascii_case(n.as_bytes());
        if is("host") {
            if host.is_some() {
                return Err(HandshakeError::BadHost);
            }
            host = Some(value);
        } else if is("upgrade") {
            // §4.2.1 item 3: "websocket", ASCII case-insensitive.
            upgrade |= has_token(value, b"websocket", true);
        } else if is("connection") {
            // §4.2.1 item 4: a list holding "Upgrade", case-insensitive.
            connection |= has_token(value, b"upgrade", true);
        } else if is("sec-websocket-version") {
            if value == VERSION {
                version_13 = true;
            } else {
                version_other = true;
            }
        } else if is("sec-websocket-key") {
            // §11.3.1: "MUST NOT appear more than once".
            if key.is_some() {
                return Err(HandshakeError::BadKey);
            }
            key = Some(value);
        } else if is("sec-websocket-protocol") {
            // §11.3.4: repeated lines are one list.
            sip |= has_token(value, SUBPROTOCOL, false);
        } else if is("origin") {
            if origin.is_some() {
                return Err(HandshakeError::BadOrigin);
            }
            origin = Some(value);
        }
    }

    let host = host
        .filter(|h| !h.is_empty())
        .ok_or(HandshakeError::BadHost)?;
    if !upgrade {
        return Err(HandshakeError::NotWebSocket);
    }
    if !connection {
        return Err(HandshakeError::NoConnectionUpgrade);
    }
    // After Upgrade and Connection, so that only a WebSocket client of
    // another version gets the 426 telling it which one we speak.
    if !version_13 || version_other {
        return Err(HandshakeError::BadVersion);
    }
    let key = key
        .filter(|k| is_valid_key(k))
        .ok_or(HandshakeError::BadKey)?;
    if !sip {
        return Err(HandshakeError::NoSipProtocol);
    }
    Ok(Some(Upgrade {
        key,
        origin,
        host,
        path,
        len: end + 4,
    }))
}

/// The lines of a header block, split at CRLF. A bare CR or LF stays
/// inside a line, where the control-byte check refuses it.
struct Lines<'a>(Option<&'a [u8]>);

impl<'a> Iterator for Lines<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let rest = self.0?;
        match memchr::memmem::find(rest, b"\r\n") {
            Some(i) => {
                self.0 = Some(&rest[i + 2..]);
                Some(&rest[..i])
            }
            None => {
                self.0 = None;
                Some(rest)
            }
        }
    }
}

/// The target of `GET <target> HTTP/1.1` (§4.2.1 item 1).
fn request_target(line: &[u8]) -> Result<&[u8], HandshakeError> {
    let mut parts = line.splitn(3, |&b| b == b' ');
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(HandshakeError::BadRequestLine);
    };
    if !scan::is_token(method)
        || target.is_empty()
        || !target.iter().all(|&b| b.is_ascii_graphic())
        || version != b"HTTP/1.1"
    {
        return Err(HandshakeError::BadRequestLine);
    }
    // Methods are case-sensitive (RFC 7231 §4.1).
    if method != b"GET" {
        return Err(HandshakeError::NotGet);
    }
    Ok(target)
}

/// True when the comma list `value` holds `token`.
fn has_token(value: &[u8], token: &[u8], ignore_case: bool) -> bool {
    scan::ListIter::new(value).any(|item| {
        if ignore_case {
            item.text.eq_ignore_ascii_case(token)
        } else {
            item.text == token
        }
    })
}

/// §4.2.1 item 5: base64 that decodes to exactly 16 bytes.
fn is_valid_key(key: &[u8]) -> bool {
    let mut raw = [0u8; 18];
    key.len() == 24 && base64_decode(key, &mut raw) == Some(16)
}

/// The `Sec-WebSocket-Accept` value for a client's key (RFC 6455 §4.2.2
/// item 5.4): base64(SHA-1(key ‖ GUID)).
pub fn accept_key(key: &[u8]) -> [u8; ACCEPT_KEY_LEN] {
    let digest = Sha1::new()
        .chain_update(key)
        .chain_update(ACCEPT_GUID)
        .finalize();
    let mut out = [0u8; ACCEPT_KEY_LEN];
    let n = base64_encode(&digest, &mut out);
    debug_assert_eq!(n, Some(ACCEPT_KEY_LEN), "20 bytes encode to 28 characters");
    out
}

/// Writes the 101 answer to a handshake with `key` (RFC 6455 §4.2.2 item
/// 5, RFC 7118 §4: `Sec-WebSocket-Protocol: sip`) to the start of `out`;
/// returns its length, [`ACCEPT_LEN`], or 0 when `out` is shorter.
pub fn write_accept(key: &[u8], out: &mut [u8]) -> usize {
    write_all(out, &[ACCEPT_HEAD, &accept_key(key), ACCEPT_TAIL]).unwrap_or(0)
}

/// Writes a refusal with `Connection: close` to the start of `out`: 400,
/// 403 (an Origin the allow-list refuses, §4.2.2 item 3), 426 (with
/// `Sec-WebSocket-Version: 13`, §4.4), or 431 (RFC 6585 §5); any other
/// status is written as 400. Returns its length, or 0 when `out` is
/// shorter ([`REFUSAL_MAX_LEN`] always fits).
pub fn write_refusal(status: u16, out: &mut [u8]) -> usize {
    let text = REFUSALS
        .iter()
        .find(|(s, _)| *s == status)
        .unwrap_or(&REFUSALS[0])
        .1;
    write_all(out, &[text]).unwrap_or(0)
}

// ---------------------------------------------------------------------------
// Base64 (RFC 4648 §4), for the key and the accept value only
// ---------------------------------------------------------------------------

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Encodes `input` with padding into the start of `out`; None when `out`
/// is shorter than the encoding.
fn base64_encode(input: &[u8], out: &mut [u8]) -> Option<usize> {
    let need = input.len().div_ceil(3) * 4;
    let out = out.get_mut(..need)?;
    for (chunk, quad) in input.chunks(3).zip(out.chunks_exact_mut(4)) {
        let byte = |i: usize| u32::from(chunk.get(i).copied().unwrap_or(0));
        let n = byte(0) << 16 | byte(1) << 8 | byte(2);
        let sextet = |shift: u32| B64[(n >> shift) as usize & 63];
        quad[0] = sextet(18);
        quad[1] = sextet(12);
        quad[2] = if chunk.len() > 1 { sextet(6) } else { b'=' };
        quad[3] = if chunk.len() > 2 { sextet(0) } else { b'=' };
    }
    Some(need)
}

/// The value of a base64 character.
fn b64_value(c: u8) -> Option<u32> {
    let v = match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => return None,
    };
    Some(u32::from(v))
}

/// Decodes canonical base64 into the start of `out`: whole quads, padding
/// only at the end, no white space, and zero pad bits (§3.5 allows
/// refusing others), so each value has one spelling. None on anything else
/// or when `out` is too short.
fn base64_decode(input: &[u8], out: &mut [u8]) -> Option<usize> {
    if !input.len().is_multiple_of(4) {
        return None;
    }
    let quads = input.len() / 4;
    let mut n = 0;
    for (i, quad) in input.chunks_exact(4).enumerate() {
        let pad = if i + 1 == quads {
            quad.iter().rev().take_while(|&&c| c == b'=').count()
        } else {
            0
        };
        if pad > 2 {
            return None;
        }
        let mut v = 0u32;
        for &c in &quad[..4 - pad] {
            v = v << 6 | b64_value(c)?;
        }
        v <<= 6 * pad as u32;
        let bytes = [(v >> 16) as u8, (v >> 8) as u8, v as u8];
        let keep = 3 - pad;
        if bytes[keep..].iter().any(|&b| b != 0) {
            return None;
        }
        out.get_mut(n..n + keep)?.copy_from_slice(&bytes[..keep]);
        n += keep;
    }
    Some(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The handshake of RFC 6455 §1.3 with the `sip` subprotocol of RFC
    /// 7118 §4.
    const REQUEST: &str = "GET /chat HTTP/1.1\r\n\
Host: server.example.com\r\n\
Upgrade: websocket\r\n\
Connection: Upgrade\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Origin: http://example.com\r\n\
Sec-WebSocket-Protocol: sip\r\n\
Sec-WebSocket-Version: 13\r\n\
\r\n";

    const MAX: usize = 8192;

    /// REQUEST with its first `from` replaced by `to`.
    fn with(from: &str, to: &str) -> Vec<u8> {
        assert!(REQUEST.contains(from), "{from:?}");
        REQUEST.replacen(from, to, 1).into_bytes()
    }

    /// One named test per handshake: `upgrade_case!(name, bytes, |up| ..)`
    /// for requests that are accepted, `upgrade_case!(name, bytes, Err(e))`
    /// for requests refused with `e`.
    macro_rules! upgrade_case {
        ($name:ident, $bytes:expr, |$up:ident| $body:block) => {
            #[test]
            fn $name() {
                let data: Vec<u8> = $bytes;
                let $up = parse_upgrade(&data, MAX)
                    .unwrap_or_else(|e| panic!("{}: {e}", String::from_utf8_lossy(&data)))
                    .expect("complete");
                $body
            }
        };
        ($name:ident, $bytes:expr, Err($err:expr)) => {
            #[test]
            fn $name() {
                let data: Vec<u8> = $bytes;
                assert_eq!(parse_upgrade(&data, MAX), Err($err));
            }
        };
    }

    upgrade_case!(accepts_the_rfc_example, REQUEST.into(), |up| {
        assert_eq!(up.key, b"dGhlIHNhbXBsZSBub25jZQ==");
        assert_eq!(up.origin, Some(&b"http://example.com"[..]));
        assert_eq!(up.host, b"server.example.com");
        assert_eq!(up.path, b"/chat");
        assert_eq!(up.len, REQUEST.len());
    });

    upgrade_case!(
        names_and_tokens_ignore_case,
        REQUEST
            .replace("Upgrade: websocket", "UPGRADE:WebSocket")
            .replace("Connection: Upgrade", "connection:  keep-alive, upgrade ")
            .replace("Sec-WebSocket-Key:", "sec-websocket-key:")
            .into_bytes(),
        |up| {
            assert_eq!(up.key, b"dGhlIHNhbXBsZSBub25jZQ==");
        }
    );

    upgrade_case!(
        sip_may_be_one_of_several_protocols,
        with(
            "Sec-WebSocket-Protocol: sip",
            "Sec-WebSocket-Protocol: chat, sip"
        ),
        |up| {
            assert_eq!(up.host, b"server.example.com");
        }
    );

    upgrade_case!(
        protocol_lines_add_up,
        with(
            "Sec-WebSocket-Protocol: sip",
            "Sec-WebSocket-Protocol: chat\r\nSec-WebSocket-Protocol: sip"
        ),
        |up| {
            assert_eq!(up.path, b"/chat");
        }
    );

    upgrade_case!(
        origin_is_optional,
        with("Origin: http://example.com\r\n", ""),
        |up| {
            assert_eq!(up.origin, None);
        }
    );

    upgrade_case!(
        an_absolute_target_is_the_path,
        with("GET /chat ", "GET ws://server.example.com/chat "),
        |up| {
            assert_eq!(up.path, b"ws://server.example.com/chat");
        }
    );

    upgrade_case!(
        frames_after_the_request_are_not_consumed,
        [REQUEST.as_bytes(), &[0x81u8, 0x80, 0, 0, 0, 0][..]].concat(),
        |up| {
            assert_eq!(up.len, REQUEST.len());
        }
    );

    upgrade_case!(
        post_is_refused,
        with("GET ", "POST "),
        Err(HandshakeError::NotGet)
    );
    upgrade_case!(
        http_1_0_is_refused,
        with("HTTP/1.1", "HTTP/1.0"),
        Err(HandshakeError::BadRequestLine)
    );
    upgrade_case!(
        a_missing_target_is_refused,
        with("GET /chat ", "GET "),
        Err(HandshakeError::BadRequestLine)
    );
    upgrade_case!(
        a_double_space_is_refused,
        with("GET /chat ", "GET  /chat "),
        Err(HandshakeError::BadRequestLine)
    );
    upgrade_case!(
        folded_lines_are_refused,
        with(
            "Origin: http://example.com\r\n",
            "Origin:\r\n http://example.com\r\n"
        ),
        Err(HandshakeError::BadHeader)
    );
    upgrade_case!(
        space_before_colon_is_refused,
        with("Host:", "Host :"),
        Err(HandshakeError::BadHeader)
    );
    upgrade_case!(
        a_line_without_colon_is_refused,
        with("Origin: http://example.com", "Origin http://example.com"),
        Err(HandshakeError::BadHeader)
    );
    upgrade_case!(
        a_bare_lf_is_refused,
        with(
            "Host: server.example.com\r\n",
            "Host: server.example.com\nX: y\r\n"
        ),
        Err(HandshakeError::BadHeader)
    );
    upgrade_case!(
        a_nul_is_refused,
        with("http://example.com", "http://exa\0mple.com"),
        Err(HandshakeError::BadHeader)
    );
    upgrade_case!(
        host_is_required,
        with("Host: server.example.com\r\n", ""),
        Err(HandshakeError::BadHost)
    );
    upgrade_case!(
        host_once,
        with("Host: server.example.com\r\n", "Host: a\r\nHost: b\r\n"),
        Err(HandshakeError::BadHost)
    );
    upgrade_case!(
        upgrade_is_required,
        with("Upgrade: websocket\r\n", ""),
        Err(HandshakeError::NotWebSocket)
    );
    upgrade_case!(
        upgrade_to_something_else_is_refused,
        with("Upgrade: websocket", "Upgrade: h2c"),
        Err(HandshakeError::NotWebSocket)
    );
    upgrade_case!(
        connection_must_name_upgrade,
        with("Connection: Upgrade", "Connection: keep-alive"),
        Err(HandshakeError::NoConnectionUpgrade)
    );
    upgrade_case!(
        version_8_gets_426,
        with("Version: 13", "Version: 8"),
        Err(HandshakeError::BadVersion)
    );
    upgrade_case!(
        a_missing_version_gets_426,
        with("Sec-WebSocket-Version: 13\r\n", ""),
        Err(HandshakeError::BadVersion)
    );
    upgrade_case!(
        a_second_version_gets_426,
        with(
            "Sec-WebSocket-Version: 13",
            "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Version: 8"
        ),
        Err(HandshakeError::BadVersion)
    );
    upgrade_case!(
        a_key_is_required,
        with("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", ""),
        Err(HandshakeError::BadKey)
    );
    upgrade_case!(
        a_key_of_15_bytes_is_refused,
        with("dGhlIHNhbXBsZSBub25jZQ==", "dGhlIHNhbXBsZSBub25j"),
        Err(HandshakeError::BadKey)
    );
    upgrade_case!(
        a_key_of_17_bytes_is_refused,
        with("dGhlIHNhbXBsZSBub25jZQ==", "dGhlIHNhbXBsZSBub25jZQAA"),
        Err(HandshakeError::BadKey)
    );
    upgrade_case!(
        a_key_that_is_not_base64_is_refused,
        with("dGhlIHNhbXBsZSBub25jZQ==", "dGhlIHNhbXBsZSBub25jZ!=="),
        Err(HandshakeError::BadKey)
    );
    upgrade_case!(
        a_second_key_is_refused,
        with(
            "Origin:",
            "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA==\r\nOrigin:"
        ),
        Err(HandshakeError::BadKey)
    );
    upgrade_case!(
        no_protocol_is_refused,
        with("Sec-WebSocket-Protocol: sip\r\n", ""),
        Err(HandshakeError::NoSipProtocol)
    );
    upgrade_case!(
        another_protocol_is_refused,
        with("Protocol: sip", "Protocol: chat, sipx"),
        Err(HandshakeError::NoSipProtocol)
    );
    upgrade_case!(
        a_second_origin_is_refused,
        with("Origin: http://example.com", "Origin: a\r\nOrigin: b"),
        Err(HandshakeError::BadOrigin)
    );

    #[test]
    fn an_incomplete_request_waits() {
        for n in 0..REQUEST.len() {
            assert_eq!(
                parse_upgrade(&REQUEST.as_bytes()[..n], MAX),
                Ok(None),
                "{n}"
            );
        }
    }

    #[test]
    fn the_header_block_must_end_within_the_limit() {
        let req = REQUEST.as_bytes();
        assert!(parse_upgrade(req, req.len()).is_ok_and(|u| u.is_some()));
        assert_eq!(
            parse_upgrade(req, req.len() - 1),
            Err(HandshakeError::TooLarge)
        );
        // Refused as soon as the limit is reached, complete or not.
        assert_eq!(
            parse_upgrade(&req[..100], 100),
            Err(HandshakeError::TooLarge)
        );
        assert_eq!(parse_upgrade(&req[..99], 100), Ok(None));
        assert_eq!(HandshakeError::TooLarge.status(), 431);
    }

    #[test]
    fn statuses_of_refusals() {
        assert_eq!(HandshakeError::BadVersion.status(), 426);
        assert_eq!(HandshakeError::NoSipProtocol.status(), 400);
        assert_eq!(HandshakeError::BadKey.status(), 400);
        assert_eq!(
            HandshakeError::NoSipProtocol.to_string(),
            "Sec-WebSocket-Protocol does not offer sip"
        );
    }

    #[test]
    fn accept_key_of_rfc_6455_section_1_3() {
        assert_eq!(
            &accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn writes_the_101() {
        let mut out = [0u8; 512];
        let n = write_accept(b"dGhlIHNhbXBsZSBub25jZQ==", &mut out);
        assert_eq!(n, ACCEPT_LEN);
        assert_eq!(
            std::str::from_utf8(&out[..n]).unwrap(),
            "HTTP/1.1 101 Switching Protocols\r\n\
Upgrade: websocket\r\n\
Connection: Upgrade\r\n\
Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\
Sec-WebSocket-Protocol: sip\r\n\
\r\n"
        );
        assert_eq!(write_accept(b"x", &mut out[..ACCEPT_LEN - 1]), 0);
    }

    #[test]
    fn writes_refusals() {
        let mut out = [0u8; REFUSAL_MAX_LEN];
        let text = |status, out: &mut [u8]| {
            let n = write_refusal(status, out);
            String::from_utf8(out[..n].to_vec()).unwrap()
        };
        let bad = text(400, &mut out);
        assert!(bad.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{bad}");
        assert!(bad.contains("\r\nConnection: close\r\n"), "{bad}");
        assert!(bad.ends_with("\r\nContent-Length: 0\r\n\r\n"), "{bad}");
        let forbidden = text(403, &mut out);
        assert!(forbidden.starts_with("HTTP/1.1 403 Forbidden\r\n"));
        assert!(forbidden.contains("\r\nConnection: close\r\n"));
        let upgrade = text(426, &mut out);
        assert!(upgrade.starts_with("HTTP/1.1 426 Upgrade Required\r\n"));
        assert!(upgrade.contains("\r\nSec-WebSocket-Version: 13\r\n"));
        assert!(upgrade.contains("\r\nUpgrade: websocket\r\n"));
        assert!(upgrade.contains("\r\nConnection: Upgrade, close\r\n"));
        assert!(text(431, &mut out).starts_with("HTTP/1.1 431 "));
        assert_eq!(text(500, &mut out), bad);
        assert_eq!(write_refusal(400, &mut out[..10]), 0);
        assert_eq!(write_refusal(426, &mut out), REFUSAL_MAX_LEN);
    }

    #[test]
    fn base64_vectors_of_rfc_4648_section_10() {
        let vectors: [(&[u8], &[u8]); 7] = [
            (b"", b""),
            (b"f", b"Zg=="),
            (b"fo", b"Zm8="),
            (b"foo", b"Zm9v"),
            (b"foob", b"Zm9vYg=="),
            (b"fooba", b"Zm9vYmE="),
            (b"foobar", b"Zm9vYmFy"),
        ];
        for (raw, text) in vectors {
            let mut out = [0u8; 8];
            let n = base64_encode(raw, &mut out).unwrap();
            assert_eq!(&out[..n], text);
            let n = base64_decode(text, &mut out).unwrap();
            assert_eq!(&out[..n], raw);
        }
        assert_eq!(base64_encode(b"foo", &mut [0u8; 3]), None);
    }

    #[test]
    fn base64_decoding_is_strict() {
        let mut out = [0u8; 8];
        for bad in [
            &b"Zg="[..], // not whole quads
            b"Zg=a",     // padding inside
            b"Z===",     // three pad characters
            b"Zg==Zg==", // padding before the end
            b"Zh==",     // non-zero pad bits (§3.5)
            b"Zm9=",     // non-zero pad bits
            b"Zm 9",     // white space
            b"Zm9v\r\n", // line break
            b"Zm9-",     // base64url alphabet
        ] {
            assert_eq!(base64_decode(bad, &mut out), None, "{bad:?}");
        }
        assert_eq!(base64_decode(b"Zm9vYmFy", &mut out[..5]), None);
    }

    // -- Properties --------------------------------------------------------

    proptest! {
        /// Handshakes with arbitrary bytes spliced in never panic, and one
        /// that still passes is answered in full.
        #[test]
        fn handshakes_never_panic(
            at in any::<prop::sample::Index>(),
            junk in prop::collection::vec(any::<u8>(), 0..40),
        ) {
            let base = REQUEST.as_bytes();
            let at = at.index(base.len());
            let req = [&base[..at], &junk[..], &base[at..]].concat();
            let whole = parse_upgrade(&req, MAX);
            if let Ok(Some(up)) = whole {
                prop_assert!(up.len <= req.len());
                let mut out = [0u8; ACCEPT_LEN];
                prop_assert_eq!(write_accept(up.key, &mut out), ACCEPT_LEN);
            }
        }

        /// Base64 decodes what it encodes.
        #[test]
        fn base64_round_trip(raw in prop::collection::vec(any::<u8>(), 0..64)) {
            let mut text = [0u8; 88];
            let n = base64_encode(&raw, &mut text).unwrap();
            let mut back = [0u8; 66];
            let m = base64_decode(&text[..n], &mut back).unwrap();
            prop_assert_eq!(&back[..m], &raw[..]);
        }
    }
}
