//! The frame codec of SIP over WebSocket, server side (RFC 6455 §5, RFC
//! 7118 §5): [`decode`] unmasks a client frame in place, [`encode_header`]
//! and [`close_payload`] write a server's, [`Reassembly`] checks the order
//! and size of a message's fragments (§5.4).

use std::fmt;
use std::ops::Range;

use super::write_all;

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

/// §5.2: the payload length of the frame at the start of `buf`, a 7-bit
/// length, or 126 and 16 bits, or 127 and 64 bits, network order; with
/// the bytes up to the masking key (or the payload, unmasked). None while
/// they have not all arrived. The minimal form is not enforced; nothing
/// depends on it.
pub fn payload_len(buf: &[u8]) -> Option<(u64, usize)> {
    Some(match buf.get(1)? & 0x7f {
        126 => match buf.get(2..4)? {
            &[hi, lo] => (u64::from(u16::from_be_bytes([hi, lo])), 4),
            _ => return None,
        },
        127 => (
            u64::from_be_bytes(<[u8; 8]>::try_from(buf.get(2..10)?).ok()?),
            10,
        ),
        n => (u64::from(n), 2),
    })
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
    let Some((len, at)) = payload_len(buf) else {
        return Ok(None);
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
    // For `arbitrary_bytes_never_panic`, which also reads its bytes as a
    // handshake.
    use crate::transport::websocket::parse_upgrade;
    use proptest::prelude::*;

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
