//! SIP over WebSocket (RFC 7118), server side: the opening handshake and
//! the frame codec of RFC 6455, over bytes the caller owns.
//!
//! Nothing here does I/O, reads a clock or allocates. [`parse_upgrade`]
//! borrows the request; [`decode`] unmasks a client frame in place in the
//! receive buffer and hands back the payload's range; the writers fill
//! caller buffers and return how much they wrote (0 when it does not fit).
//! Every function takes untrusted bytes without panicking.
//!
//! RFC 7118 §5 carries one SIP message in one WebSocket message, text or
//! binary, so no Content-Length framing is needed on top: a complete
//! message ([`Part::Whole`], or the fragments up to [`Part::Last`]) is
//! one SIP message.
//!
//! # Trade-offs
//! - Browsers send each message as one frame, so fragments are rare;
//!   joining them needs a buffer, which is the caller's. [`Reassembly`]
//!   only checks their order and counts their bytes.
//! - No extension is negotiated (`permessage-deflate` is not offered back),
//!   so a set RSV bit is always an error.
//! - Text messages must be UTF-8 (RFC 6455 §8.1), which can only be
//!   checked on the whole message: the caller applies [`check_text`] after
//!   joining the fragments.

use std::fmt;
use std::ops::Range;

use sha1::{Digest, Sha1};

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

/// Copies `pieces` one after another to the start of `out`; None, with
/// nothing written, when they do not fit.
fn write_all(out: &mut [u8], pieces: &[&[u8]]) -> Option<usize> {
    let total = pieces.iter().map(|p| p.len()).sum::<usize>();
    if out.len() < total {
        return None;
    }
    let mut n = 0;
    for p in pieces {
        out[n..n + p.len()].copy_from_slice(p);
        n += p.len();
    }
    Some(n)
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

// ---------------------------------------------------------------------------
// Frames (RFC 6455 §5)
// ---------------------------------------------------------------------------

/// Longest header [`encode_header`] writes: 2 bytes, 8 of extended length,
/// no mask (§5.2).
pub const MAX_HEADER_LEN: usize = 10;

/// A frame's opcode (§5.2, §11.8). The reserved ones (%x3-7, %xB-F) have
/// no variant: no extension is negotiated, so they are errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Opcode {
    /// A further fragment of the message in progress (§5.4).
    Continuation,
    /// A UTF-8 text message (§5.6); RFC 7118 §5 allows SIP in either kind.
    Text,
    /// A binary message (§5.6).
    Binary,
    /// Close (§5.5.1).
    Close,
    /// Ping (§5.5.2): answer with a pong carrying the same payload.
    Ping,
    /// Pong (§5.5.3).
    Pong,
}

impl Opcode {
    /// The opcode a frame's low four bits name; None for a reserved one.
    pub fn from_bits(bits: u8) -> Option<Opcode> {
        Some(match bits {
            0x0 => Opcode::Continuation,
            0x1 => Opcode::Text,
            0x2 => Opcode::Binary,
            0x8 => Opcode::Close,
            0x9 => Opcode::Ping,
            0xA => Opcode::Pong,
            _ => return None,
        })
    }

    /// The four bits on the wire.
    pub fn bits(self) -> u8 {
        match self {
            Opcode::Continuation => 0x0,
            Opcode::Text => 0x1,
            Opcode::Binary => 0x2,
            Opcode::Close => 0x8,
            Opcode::Ping => 0x9,
            Opcode::Pong => 0xA,
        }
    }

    /// True for close, ping and pong (§5.5: the opcodes with the high bit
    /// set), which have their own limits and may come between fragments.
    pub fn is_control(self) -> bool {
        self.bits() & 0x8 != 0
    }
}

/// One decoded client frame: its payload is unmasked in place and lies at
/// `payload` within the buffer given to [`decode`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// What the frame carries.
    pub opcode: Opcode,
    /// FIN: the last frame of its message (§5.2).
    pub fin: bool,
    /// Where the (unmasked) payload lies in the decoded buffer.
    pub payload: Range<usize>,
}

impl Frame {
    /// The payload, from the buffer the frame was decoded from (empty if
    /// handed another, shorter buffer).
    pub fn bytes<'b>(&self, buf: &'b [u8]) -> &'b [u8] {
        buf.get(self.payload.clone()).unwrap_or_default()
    }
}

/// Why the frame stream is broken; every one ends the connection with the
/// Close status [`FrameError::close_code`] (§7.1.7).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameError {
    /// RSV1-3 set, with no extension to give them meaning (§5.2).
    ReservedBits,
    /// A reserved opcode (§5.2).
    ReservedOpcode,
    /// A client frame without a mask (§5.1: the server MUST close).
    Unmasked,
    /// A control frame without FIN (§5.5: never fragmented).
    FragmentedControl,
    /// A control frame payload over 125 bytes (§5.5).
    ControlTooLong,
    /// A 64-bit length with its top bit set (§5.2).
    BadLength,
    /// A payload, or a fragmented message, over the caller's limit (§7.4.1
    /// 1009 "too big to process").
    TooLarge,
    /// A continuation frame with no message in progress (§5.4).
    UnexpectedContinuation,
    /// A new text or binary frame while a fragmented message is still in
    /// progress (§5.4: fragments of different messages never interleave).
    ExpectedContinuation,
    /// A Close payload of one byte or with a code no endpoint may send
    /// (§5.5.1, §7.4).
    BadClose,
    /// A text message or Close reason that is not UTF-8 (§8.1, §5.5.1).
    InvalidUtf8,
}

impl FrameError {
    /// The status to close with (§7.4.1): 1009 when too big, 1007 for bad
    /// UTF-8, 1002 (protocol error) for the rest.
    pub fn close_code(self) -> u16 {
        match self {
            FrameError::TooLarge => close::TOO_BIG,
            FrameError::InvalidUtf8 => close::INVALID_DATA,
            _ => close::PROTOCOL_ERROR,
        }
    }

    /// A short description, for logs.
    pub const fn as_str(self) -> &'static str {
        match self {
            FrameError::ReservedBits => "WebSocket frame with RSV bits set",
            FrameError::ReservedOpcode => "WebSocket frame with a reserved opcode",
            FrameError::Unmasked => "unmasked WebSocket client frame",
            FrameError::FragmentedControl => "fragmented WebSocket control frame",
            FrameError::ControlTooLong => "WebSocket control frame over 125 bytes",
            FrameError::BadLength => "WebSocket frame length with the top bit set",
            FrameError::TooLarge => "WebSocket message too large",
            FrameError::UnexpectedContinuation => "WebSocket continuation with no message",
            FrameError::ExpectedContinuation => "WebSocket message interleaved with another",
            FrameError::BadClose => "bad WebSocket close payload",
            FrameError::InvalidUtf8 => "WebSocket text is not UTF-8",
        }
    }
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::error::Error for FrameError {}

/// Close status codes (RFC 6455 §7.4.1) a server sends.
pub mod close {
    /// Normal closure.
    pub const NORMAL: u16 = 1000;
    /// Going away: the server is shutting down.
    pub const GOING_AWAY: u16 = 1001;
    /// A protocol error.
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// A kind of data the endpoint cannot accept.
    pub const UNSUPPORTED_DATA: u16 = 1003;
    /// Data inconsistent with its type, such as text that is not UTF-8.
    pub const INVALID_DATA: u16 = 1007;
    /// A message that violates policy.
    pub const POLICY_VIOLATION: u16 = 1008;
    /// A message too big to process.
    pub const TOO_BIG: u16 = 1009;
    /// An unexpected condition on the server.
    pub const INTERNAL_ERROR: u16 = 1011;
}

/// Decodes the client frame at the start of `buf` (§5.2) and unmasks its
/// payload in place (§5.3). Returns the frame and the bytes it took, or
/// `Ok(None)`, with `buf` untouched, while the frame is incomplete. Errors
/// come as soon as the bytes that show them have arrived, in a fixed order,
/// so a prefix of the input gives either None or the error the whole
/// input gives. A payload over `max_payload` is refused from its length
/// alone, before any of it is buffered. Call it once per frame: a second
/// call on the same bytes would unmask them again.
pub fn decode(buf: &mut [u8], max_payload: usize) -> Result<Option<(Frame, usize)>, FrameError> {
    let (b0, b1) = match *buf {
        [b0, b1, ..] => (b0, b1),
        _ => return Ok(None),
    };
    let fin = b0 & 0x80 != 0;
    // §5.2: RSV1-3 MUST be 0 unless an extension defines them.
    if b0 & 0x70 != 0 {
        return Err(FrameError::ReservedBits);
    }
    let opcode = Opcode::from_bits(b0 & 0x0f).ok_or(FrameError::ReservedOpcode)?;
    // §5.1: a server MUST close the connection on an unmasked client frame.
    if b1 & 0x80 == 0 {
        return Err(FrameError::Unmasked);
    }
    let len7 = b1 & 0x7f;
    // §5.5: control frames carry at most 125 bytes and are never fragmented.
    if opcode.is_control() {
        if !fin {
            return Err(FrameError::FragmentedControl);
        }
        if len7 > 125 {
            return Err(FrameError::ControlTooLong);
        }
    }
    // §5.2: 7-bit length, or 126 and 16 bits, or 127 and 64 bits, network
    // order. The minimal form is not enforced; nothing depends on it.
    let (len, at) = match len7 {
        126 => match buf.get(2..4) {
            Some(&[hi, lo]) => (u64::from(u16::from_be_bytes([hi, lo])), 4),
            _ => return Ok(None),
        },
        127 => match buf.get(2..10).and_then(|b| <[u8; 8]>::try_from(b).ok()) {
            Some(b) => (u64::from_be_bytes(b), 10),
            None => return Ok(None),
        },
        n => (u64::from(n), 2),
    };
    // §5.2: "the most significant bit MUST be 0".
    if len >> 63 != 0 {
        return Err(FrameError::BadLength);
    }
    let len = match usize::try_from(len) {
        Ok(len) if len <= max_payload => len,
        _ => return Err(FrameError::TooLarge),
    };
    let key = match buf.get(at..at + 4) {
        Some(&[a, b, c, d]) => [a, b, c, d],
        _ => return Ok(None),
    };
    let start = at + 4;
    let end = start.checked_add(len).ok_or(FrameError::TooLarge)?;
    let Some(payload) = buf.get_mut(start..end) else {
        return Ok(None);
    };
    apply_mask(payload, key);
    Ok(Some((
        Frame {
            opcode,
            fin,
            payload: start..end,
        },
        end,
    )))
}

/// XORs `data` with the masking key, byte i with key byte i mod 4 (§5.3).
/// Four bytes at a time so that the compiler vectorises it.
fn apply_mask(data: &mut [u8], key: [u8; 4]) {
    let mut quads = data.chunks_exact_mut(4);
    for quad in &mut quads {
        for (b, k) in quad.iter_mut().zip(key) {
            *b ^= k;
        }
    }
    // The remainder starts at a multiple of 4, so at key byte 0.
    for (b, k) in quads.into_remainder().iter_mut().zip(key) {
        *b ^= k;
    }
}

/// Writes the header of a server frame (§5.2) with a payload of `len`
/// bytes to the start of `out`; never masked (§5.1: a server MUST NOT mask).
/// Returns its length (2, 4 or 10; see [`MAX_HEADER_LEN`]), or 0 when
/// `out` is too short or the frame would be an invalid control frame
/// (fragmented or over 125 bytes, §5.5). RFC 7118 §5 needs no fragments:
/// send each SIP message as one frame with `fin`.
pub fn encode_header(opcode: Opcode, fin: bool, len: usize, out: &mut [u8]) -> usize {
    if opcode.is_control() && (!fin || len > 125) {
        return 0;
    }
    let b0 = u8::from(fin) << 7 | opcode.bits();
    let len64 = len as u64;
    let mut head = [0u8; MAX_HEADER_LEN];
    head[0] = b0;
    let n = if len <= 125 {
        head[1] = len as u8;
        2
    } else if let Ok(len16) = u16::try_from(len) {
        head[1] = 126;
        head[2..4].copy_from_slice(&len16.to_be_bytes());
        4
    } else if len64 >> 63 == 0 {
        head[1] = 127;
        head[2..10].copy_from_slice(&len64.to_be_bytes());
        10
    } else {
        return 0;
    };
    write_all(out, &[&head[..n]]).unwrap_or(0)
}

/// True for a status an endpoint may put in a Close frame (§7.4.1,
/// §7.4.2): the defined codes but 1004 (reserved) and 1005, 1006, 1015
/// (only for reporting), the later IANA codes 1012-1014, and 3000-4999
/// for libraries and applications.
fn is_sendable_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// Writes a Close payload (§5.5.1) with `code` (see [`close`]) and no
/// reason to the start of `out`: 2 bytes, or 0 when `out` is shorter or
/// the code is one no endpoint may send (§7.4).
pub fn close_payload(code: u16, out: &mut [u8]) -> usize {
    if !is_sendable_close_code(code) {
        return 0;
    }
    write_all(out, &[&code.to_be_bytes()]).unwrap_or(0)
}

/// Reads a client's Close payload (§5.5.1): None when empty (no status),
/// else the code and the reason. A one-byte payload or a code no endpoint
/// may send is [`FrameError::BadClose`]; a reason that is not UTF-8 is
/// [`FrameError::InvalidUtf8`].
pub fn parse_close(payload: &[u8]) -> Result<Option<(u16, &[u8])>, FrameError> {
    let (code, reason) = match *payload {
        [] => return Ok(None),
        [hi, lo, ref reason @ ..] => (u16::from_be_bytes([hi, lo]), reason),
        [_] => return Err(FrameError::BadClose),
    };
    if !is_sendable_close_code(code) {
        return Err(FrameError::BadClose);
    }
    check_text(reason)?;
    Ok(Some((code, reason)))
}

/// Checks that a whole text message is UTF-8 (§8.1: otherwise fail the
/// connection, close status 1007). Fragments may split a character, so
/// apply it to the joined message, not to each frame.
pub fn check_text(message: &[u8]) -> Result<(), FrameError> {
    std::str::from_utf8(message)
        .map(|_| ())
        .map_err(|_| FrameError::InvalidUtf8)
}

/// What one frame means for the message it belongs to, from
/// [`Reassembly::push`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    /// A control frame (§5.5): handle it now. It may come between the
    /// fragments of a message (§5.4) and does not touch that message.
    Control(Opcode),
    /// A whole message (Text or Binary) in one frame: one SIP message.
    Whole(Opcode),
    /// The first fragment of a message of this kind: start a buffer.
    First(Opcode),
    /// A middle fragment: append it.
    Middle,
    /// The last fragment: append it; the message of this kind is complete.
    Last(Opcode),
}

/// Where the data message in progress stands (§5.4): checks the order of
/// fragments and counts their bytes against a message limit, keeping none
/// of them. After an error the connection is failed, so the state after
/// one does not matter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reassembly {
    max_message: usize,
    /// The kind of the fragmented message in progress, if one is.
    kind: Option<Opcode>,
    /// Its payload bytes so far.
    len: usize,
}

impl Reassembly {
    /// No message in progress; messages over `max_message` bytes, whole or
    /// summed over their fragments, are refused.
    pub fn new(max_message: usize) -> Reassembly {
        Reassembly {
            max_message,
            kind: None,
            len: 0,
        }
    }

    /// The largest message it lets through.
    pub fn max_message(&self) -> usize {
        self.max_message
    }

    /// The kind of the fragmented message in progress, None between
    /// messages.
    pub fn in_progress(&self) -> Option<Opcode> {
        self.kind
    }

    /// Takes the next decoded frame and says what it means, or refuses a
    /// continuation with no message, a data frame inside another message
    /// (§5.4), or a message over the limit.
    pub fn push(&mut self, frame: &Frame) -> Result<Part, FrameError> {
        let len = frame.payload.len();
        match (frame.opcode, self.kind) {
            (op, _) if op.is_control() => Ok(Part::Control(op)),
            (Opcode::Continuation, None) => Err(FrameError::UnexpectedContinuation),
            (Opcode::Continuation, Some(kind)) => {
                let total = self
                    .len
                    .checked_add(len)
                    .filter(|&t| t <= self.max_message)
                    .ok_or(FrameError::TooLarge)?;
                if frame.fin {
                    self.kind = None;
                    self.len = 0;
                    Ok(Part::Last(kind))
                } else {
                    self.len = total;
                    Ok(Part::Middle)
                }
            }
            (_, Some(_)) => Err(FrameError::ExpectedContinuation),
            (op, None) => {
                if len > self.max_message {
                    Err(FrameError::TooLarge)
                } else if frame.fin {
                    Ok(Part::Whole(op))
                } else {
                    self.kind = Some(op);
                    self.len = len;
                    Ok(Part::First(op))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // -- Handshake ---------------------------------------------------------

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

    // -- Frames ------------------------------------------------------------

    /// A client frame (test-only): the server header from
    /// [`encode_header`], the mask bit set, the key, and the payload masked
    /// with it (§5.3).
    fn client_frame(opcode: Opcode, fin: bool, payload: &[u8], key: [u8; 4]) -> Vec<u8> {
        let mut head = [0u8; MAX_HEADER_LEN];
        let n = encode_header(opcode, fin, payload.len(), &mut head);
        assert!(n > 0, "{opcode:?} fin={fin} len={}", payload.len());
        let mut frame = head[..n].to_vec();
        frame[1] |= 0x80;
        frame.extend_from_slice(&key);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        frame
    }

    /// Decodes one frame that must be complete and valid.
    fn one(bytes: &[u8]) -> (Frame, Vec<u8>, usize) {
        let mut buf = bytes.to_vec();
        let (frame, used) = decode(&mut buf, 1 << 20)
            .unwrap_or_else(|e| panic!("{bytes:02x?}: {e}"))
            .expect("complete");
        let payload = frame.bytes(&buf).to_vec();
        (frame, payload, used)
    }

    /// The error a frame's bytes give.
    fn refused(bytes: &[u8], max: usize) -> FrameError {
        decode(&mut bytes.to_vec(), max).expect_err("refused")
    }

    const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

    #[test]
    fn rfc_6455_section_5_7_masked_hello() {
        let bytes = [
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        let (frame, payload, used) = one(&bytes);
        assert_eq!((frame.opcode, frame.fin), (Opcode::Text, true));
        assert_eq!(payload, b"Hello");
        assert_eq!(frame.payload, 6..11);
        assert_eq!(used, bytes.len());
        assert_eq!(client_frame(Opcode::Text, true, b"Hello", KEY), bytes);
    }

    #[test]
    fn rfc_6455_section_5_7_unmasked_hello_is_refused() {
        // The unmasked example is a server's frame; from a client it is an
        // error (§5.1), closed with 1002.
        let e = refused(&[0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f], 1024);
        assert_eq!(e, FrameError::Unmasked);
        assert_eq!(e.close_code(), 1002);
        // ... and exactly what the server writes.
        let mut head = [0u8; MAX_HEADER_LEN];
        assert_eq!(encode_header(Opcode::Text, true, 5, &mut head), 2);
        assert_eq!(head[..2], [0x81, 0x05]);
    }

    #[test]
    fn rfc_6455_section_5_7_fragmented_text() {
        // 0x01 0x03 "Hel", then 0x80 0x02 "lo", here masked as a client
        // sends them.
        let first = client_frame(Opcode::Text, false, b"Hel", KEY);
        let last = client_frame(Opcode::Continuation, true, b"lo", [1, 2, 3, 4]);
        assert_eq!(first[..2], [0x01, 0x83]);
        assert_eq!(last[..2], [0x80, 0x82]);
        let mut msg = Reassembly::new(64);
        let (f, p, _) = one(&first);
        assert_eq!(
            (f.opcode, f.fin, &p[..]),
            (Opcode::Text, false, &b"Hel"[..])
        );
        assert_eq!(msg.push(&f), Ok(Part::First(Opcode::Text)));
        assert_eq!(msg.in_progress(), Some(Opcode::Text));
        let (f, p, _) = one(&last);
        assert_eq!(
            (f.opcode, f.fin, &p[..]),
            (Opcode::Continuation, true, &b"lo"[..])
        );
        assert_eq!(msg.push(&f), Ok(Part::Last(Opcode::Text)));
        assert_eq!(msg.in_progress(), None);
    }

    #[test]
    fn rfc_6455_section_5_7_ping_and_masked_pong() {
        let (f, p, _) = one(&client_frame(Opcode::Ping, true, b"Hello", KEY));
        assert_eq!((f.opcode, &p[..]), (Opcode::Ping, &b"Hello"[..]));
        // The RFC's masked pong, byte for byte.
        let pong = [
            0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        let (f, p, _) = one(&pong);
        assert_eq!(
            (f.opcode, f.fin, &p[..]),
            (Opcode::Pong, true, &b"Hello"[..])
        );
        // The unmasked ping the server would send.
        let mut head = [0u8; MAX_HEADER_LEN];
        assert_eq!(encode_header(Opcode::Ping, true, 5, &mut head), 2);
        assert_eq!(head[..2], [0x89, 0x05]);
    }

    #[test]
    fn rfc_6455_section_5_7_256_bytes_take_a_16_bit_length() {
        let mut head = [0u8; MAX_HEADER_LEN];
        assert_eq!(encode_header(Opcode::Binary, true, 256, &mut head), 4);
        assert_eq!(head[..4], [0x82, 0x7E, 0x01, 0x00]);
        let payload: Vec<u8> = (0..=255).collect();
        let frame = client_frame(Opcode::Binary, true, &payload, KEY);
        assert_eq!(frame[..4], [0x82, 0xFE, 0x01, 0x00]);
        let (f, p, used) = one(&frame);
        assert_eq!((f.opcode, p, used), (Opcode::Binary, payload, 4 + 4 + 256));
    }

    #[test]
    fn rfc_6455_section_5_7_64_kib_take_a_64_bit_length() {
        let mut head = [0u8; MAX_HEADER_LEN];
        assert_eq!(encode_header(Opcode::Binary, true, 65536, &mut head), 10);
        assert_eq!(
            head,
            [0x82, 0x7F, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00]
        );
        let payload: Vec<u8> = (0..65536u32).map(|i| i as u8 ^ (i >> 8) as u8).collect();
        let frame = client_frame(Opcode::Binary, true, &payload, KEY);
        assert_eq!(frame[..2], [0x82, 0xFF]);
        let (f, p, used) = one(&frame);
        assert_eq!((f.opcode, p, used), (Opcode::Binary, payload, 14 + 65536));
        // The last length of each form, and the first of the next.
        for (len, n) in [(125, 2), (126, 4), (65535, 4), (65536, 10)] {
            assert_eq!(encode_header(Opcode::Text, true, len, &mut head), n);
        }
    }

    #[test]
    fn lengths_need_not_be_minimal() {
        // "Hi" with a 16-bit and with a 64-bit length.
        let masked = [b'H' ^ 1, b'i' ^ 2];
        let short = [&[0x81u8, 0xFE, 0, 2, 1, 2, 3, 4][..], &masked[..]].concat();
        let long = [
            &[0x81u8, 0xFF, 0, 0, 0, 0, 0, 0, 0, 2, 1, 2, 3, 4][..],
            &masked[..],
        ]
        .concat();
        assert_eq!(one(&short).1, b"Hi");
        assert_eq!(one(&long).1, b"Hi");
    }

    #[test]
    fn reserved_bits_are_refused() {
        for rsv in [0x40, 0x20, 0x10] {
            assert_eq!(
                refused(&[0x81 | rsv, 0x80, 0, 0, 0, 0], 64),
                FrameError::ReservedBits
            );
        }
    }

    #[test]
    fn reserved_opcodes_are_refused() {
        for op in (0x3..=0x7).chain(0xB..=0xF) {
            assert_eq!(Opcode::from_bits(op), None);
            assert_eq!(
                refused(&[0x80 | op, 0x80, 0, 0, 0, 0], 64),
                FrameError::ReservedOpcode
            );
        }
        for op in [0x0, 0x1, 0x2, 0x8, 0x9, 0xA] {
            assert_eq!(Opcode::from_bits(op).map(Opcode::bits), Some(op));
        }
    }

    #[test]
    fn control_frames_are_short_and_whole() {
        for op in [0x88, 0x89, 0x8A] {
            assert_eq!(refused(&[op, 0x80 | 126], 1024), FrameError::ControlTooLong);
            assert_eq!(refused(&[op, 0x80 | 127], 1024), FrameError::ControlTooLong);
            assert_eq!(
                refused(&[op & 0x0f, 0x80], 1024),
                FrameError::FragmentedControl
            );
        }
        let mut head = [0u8; MAX_HEADER_LEN];
        assert_eq!(encode_header(Opcode::Ping, true, 126, &mut head), 0);
        assert_eq!(encode_header(Opcode::Close, false, 2, &mut head), 0);
        let (f, p, _) = one(&client_frame(Opcode::Ping, true, &[7; 125], KEY));
        assert_eq!((f.opcode, p.len()), (Opcode::Ping, 125));
    }

    #[test]
    fn too_large_is_refused_from_the_length_alone() {
        let e = refused(&[0x82, 0x80 | 126, 0x01, 0x00], 255);
        assert_eq!(e, FrameError::TooLarge);
        assert_eq!(e.close_code(), 1009);
        assert_eq!(
            refused(&[0x82, 0xFF, 0, 0, 0, 1, 0, 0, 0, 0], 1 << 20),
            FrameError::TooLarge
        );
        // Exactly the limit is fine.
        let mut frame = client_frame(Opcode::Binary, true, &[1; 255], KEY);
        assert!(decode(&mut frame, 255).unwrap().is_some());
    }

    #[test]
    fn the_top_bit_of_a_64_bit_length_is_refused() {
        assert_eq!(
            refused(&[0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0], usize::MAX),
            FrameError::BadLength
        );
    }

    #[test]
    fn an_incomplete_frame_waits_and_is_left_alone() {
        let frame = client_frame(Opcode::Binary, true, &[9; 300], KEY);
        for n in 0..frame.len() {
            let mut buf = frame[..n].to_vec();
            assert_eq!(decode(&mut buf, 1024), Ok(None), "{n}");
            assert_eq!(buf, frame[..n], "{n}");
        }
    }

    #[test]
    fn only_the_first_frame_is_consumed() {
        let mut two = client_frame(Opcode::Text, true, b"one", KEY);
        let first = two.len();
        two.extend(client_frame(Opcode::Text, true, b"two", KEY));
        let (f, used) = decode(&mut two, 64).unwrap().unwrap();
        assert_eq!((used, f.bytes(&two)), (first, &b"one"[..]));
        let (f, _) = decode(&mut two[used..], 64).unwrap().unwrap();
        assert_eq!(f.bytes(&two[used..]), b"two");
    }

    #[test]
    fn an_empty_frame() {
        let (f, p, used) = one(&[0x81, 0x80, 1, 2, 3, 4]);
        assert_eq!(
            (f.opcode, p.len(), used, f.payload),
            (Opcode::Text, 0, 6, 6..6)
        );
    }

    #[test]
    fn encode_header_needs_room() {
        assert_eq!(encode_header(Opcode::Text, true, 5, &mut [0u8; 1]), 0);
        assert_eq!(encode_header(Opcode::Text, true, 300, &mut [0u8; 3]), 0);
        assert_eq!(encode_header(Opcode::Text, true, 70000, &mut [0u8; 9]), 0);
        assert_eq!(
            encode_header(Opcode::Text, false, 70000, &mut [0u8; 10]),
            10
        );
    }

    // -- Messages (§5.4, RFC 7118 §5) --------------------------------------

    fn frame(opcode: Opcode, fin: bool, len: usize) -> Frame {
        Frame {
            opcode,
            fin,
            payload: 0..len,
        }
    }

    #[test]
    fn a_continuation_needs_a_message() {
        let mut msg = Reassembly::new(100);
        let e = msg.push(&frame(Opcode::Continuation, true, 1));
        assert_eq!(e, Err(FrameError::UnexpectedContinuation));
        assert_eq!(e.unwrap_err().close_code(), 1002);
    }

    #[test]
    fn messages_do_not_interleave() {
        let mut msg = Reassembly::new(100);
        assert_eq!(
            msg.push(&frame(Opcode::Binary, false, 1)),
            Ok(Part::First(Opcode::Binary))
        );
        assert_eq!(
            msg.push(&frame(Opcode::Text, true, 1)),
            Err(FrameError::ExpectedContinuation)
        );
    }

    #[test]
    fn control_frames_come_between_fragments() {
        let mut msg = Reassembly::new(100);
        let steps = [
            (frame(Opcode::Text, false, 10), Part::First(Opcode::Text)),
            (frame(Opcode::Ping, true, 3), Part::Control(Opcode::Ping)),
            (frame(Opcode::Continuation, false, 10), Part::Middle),
            (frame(Opcode::Pong, true, 0), Part::Control(Opcode::Pong)),
            (
                frame(Opcode::Continuation, true, 10),
                Part::Last(Opcode::Text),
            ),
            (
                frame(Opcode::Binary, true, 100),
                Part::Whole(Opcode::Binary),
            ),
            (frame(Opcode::Close, true, 2), Part::Control(Opcode::Close)),
        ];
        for (f, part) in steps {
            assert_eq!(msg.push(&f), Ok(part), "{f:?}");
        }
        assert_eq!(msg.in_progress(), None);
    }

    #[test]
    fn a_message_is_limited_over_its_fragments() {
        let mut msg = Reassembly::new(100);
        assert!(msg.push(&frame(Opcode::Text, false, 60)).is_ok());
        assert_eq!(
            msg.push(&frame(Opcode::Continuation, true, 41)),
            Err(FrameError::TooLarge)
        );
        let mut msg = Reassembly::new(100);
        assert!(msg.push(&frame(Opcode::Text, false, 60)).is_ok());
        assert_eq!(
            msg.push(&frame(Opcode::Continuation, true, 40)),
            Ok(Part::Last(Opcode::Text))
        );
        assert_eq!(
            msg.push(&frame(Opcode::Text, true, 101)),
            Err(FrameError::TooLarge)
        );
    }

    #[test]
    fn close_payloads() {
        let mut out = [0u8; 2];
        assert_eq!(close_payload(close::NORMAL, &mut out), 2);
        assert_eq!(out, [0x03, 0xE8]);
        assert_eq!(parse_close(&out), Ok(Some((1000, &b""[..]))));
        assert_eq!(close_payload(close::TOO_BIG, &mut out[..1]), 0);
        for never in [0, 999, 1004, 1005, 1006, 1015, 2999, 5000] {
            assert_eq!(close_payload(never, &mut out), 0, "{never}");
            assert_eq!(
                parse_close(&never.to_be_bytes()),
                Err(FrameError::BadClose),
                "{never}"
            );
        }
        assert_eq!(parse_close(b""), Ok(None));
        assert_eq!(parse_close(&[0x03]), Err(FrameError::BadClose));
        assert_eq!(parse_close(b"\x0f\xa0bye"), Ok(Some((4000, &b"bye"[..]))));
        assert_eq!(parse_close(b"\x03\xe8\xff"), Err(FrameError::InvalidUtf8));
    }

    #[test]
    fn text_must_be_utf8() {
        assert_eq!(check_text("INVITE sip:å@example.com".as_bytes()), Ok(()));
        let e = check_text(b"\xc3");
        assert_eq!(e, Err(FrameError::InvalidUtf8));
        assert_eq!(e.unwrap_err().close_code(), 1007);
    }

    // -- Properties --------------------------------------------------------

    const OPCODES: [Opcode; 6] = [
        Opcode::Continuation,
        Opcode::Text,
        Opcode::Binary,
        Opcode::Close,
        Opcode::Ping,
        Opcode::Pong,
    ];

    /// A frame a client may send: control frames whole and short.
    fn any_frame() -> impl Strategy<Value = (Opcode, bool, Vec<u8>, [u8; 4])> {
        let payload = prop_oneof![
            8 => prop::collection::vec(any::<u8>(), 0..300),
            1 => prop::collection::vec(any::<u8>(), 65_530..65_542),
        ];
        (
            prop::sample::select(OPCODES.to_vec()),
            any::<bool>(),
            payload,
            any::<[u8; 4]>(),
        )
            .prop_map(|(op, fin, mut payload, key)| {
                if op.is_control() {
                    payload.truncate(125);
                }
                (op, fin || op.is_control(), payload, key)
            })
    }

    proptest! {
        /// Encoded with any mask key, a frame decodes to what it was.
        #[test]
        fn encode_then_decode((op, fin, payload, key) in any_frame()) {
            let mut bytes = client_frame(op, fin, &payload, key);
            let len = bytes.len();
            let (f, used) = decode(&mut bytes, payload.len()).unwrap().unwrap();
            prop_assert_eq!((f.opcode, f.fin, used), (op, fin, len));
            prop_assert_eq!(f.payload.end, len);
            prop_assert_eq!(f.bytes(&bytes), &payload[..]);
        }

        /// A stream of frames cut anywhere, fed as it arrives, gives the same
        /// frames as the whole stream: decode waits on a partial frame.
        #[test]
        fn any_split_gives_the_same_frames(
            frames in prop::collection::vec(any_frame(), 1..6),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
        ) {
            let stream: Vec<u8> = frames
                .iter()
                .flat_map(|(op, fin, p, key)| client_frame(*op, *fin, p, *key))
                .collect();
            let mut cuts: Vec<usize> = cuts.iter().map(|c| c.index(stream.len() + 1)).collect();
            cuts.push(stream.len());
            cuts.sort_unstable();
            let mut pending = Vec::new();
            let mut got = Vec::new();
            let mut from = 0;
            for cut in cuts {
                pending.extend_from_slice(&stream[from..cut]);
                from = cut;
                while let Some((f, used)) = decode(&mut pending, 1 << 17).unwrap() {
                    got.push((f.opcode, f.fin, f.bytes(&pending).to_vec()));
                    pending.drain(..used);
                }
            }
            prop_assert!(pending.is_empty());
            let want: Vec<_> = frames.into_iter().map(|(op, fin, p, _)| (op, fin, p)).collect();
            prop_assert_eq!(got, want);
        }

        /// Any bytes: nothing panics, every decoded frame lies inside what
        /// it consumed, and a prefix of the input gives either None or the
        /// answer the whole input gives.
        #[test]
        fn arbitrary_bytes_never_panic(
            mut bytes in prop::collection::vec(any::<u8>(), 0..300),
            tame in any::<bool>(),
            max in 0usize..400,
        ) {
            if tame && bytes.len() >= 2 {
                // Mostly well-formed first bytes, to get past the header.
                bytes[0] &= 0x8f;
                bytes[1] |= 0x80;
            }
            let whole = decode(&mut bytes.clone(), max);
            for n in 0..bytes.len() {
                let part = decode(&mut bytes[..n].to_vec(), max);
                prop_assert!(part == Ok(None) || part == whole, "{n}: {part:?} vs {whole:?}");
            }
            let mut buf = bytes.clone();
            let mut at = 0;
            let mut msg = Reassembly::new(max);
            while let Ok(Some((f, used))) = decode(&mut buf[at..], max) {
                prop_assert!(used > 0 && f.payload.end == used && f.payload.len() <= max);
                let payload = f.bytes(&buf[at..]);
                if f.opcode == Opcode::Close {
                    let _ = parse_close(payload);
                }
                let _ = check_text(payload);
                if msg.push(&f).is_err() {
                    break;
                }
                at += used;
            }
            let _ = parse_upgrade(&bytes, max);
            let _ = parse_upgrade(&bytes, usize::MAX);
        }

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

        /// Every close payload we write parses back.
        #[test]
        fn close_payloads_parse_back(code in any::<u16>()) {
            let mut out = [0u8; 2];
            let raw = code.to_be_bytes();
            match close_payload(code, &mut out) {
                0 => prop_assert_eq!(parse_close(&raw), Err(FrameError::BadClose)),
                n => prop_assert_eq!(parse_close(&out[..n]), Ok(Some((code, &b""[..])))),
            }
        }
    }
}
