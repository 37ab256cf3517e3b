//! The client half of WebSocket (RFC 6455) that SIP over WebSocket (RFC
//! 7118) needs in the generator: the opening handshake with `sip` as the
//! subprotocol, masked frames out, the server's unmasked frames in.
//!
//! sipshard's own codec (`sipshard::transport::websocket`) is a server's:
//! its [`encode_header`] writes the header used here (the mask bit and key
//! are added on top), its [`accept_key`] checks the server's answer, and
//! its [`Opcode`] names frames; its `decode` refuses unmasked frames, as a
//! server must, so reading the server's frames is done here. Nothing here
//! does I/O; every function takes untrusted bytes without panicking.

use std::ops::Range;

use memchr::memmem;
use sipshard::transport::websocket::{
    accept_key, encode_header, payload_len, Opcode, MAX_HEADER_LEN,
};

/// The `Sec-WebSocket-Key` every connection sends. RFC 6455 §4.1 wants a
/// fresh random nonce per connection, which protects browsers against
/// cache poisoning by scripts; a load generator has nothing to protect,
/// and the server's work is the same for any key.
pub const KEY: &str = "c2lwc2hhcmQtbG9hZCAxMg==";

/// Longest handshake answer read before giving up on it.
pub const MAX_ANSWER: usize = 4096;

/// The opening handshake (RFC 6455 §4.1, RFC 7118 §4.1) for `host`.
pub fn upgrade_request(host: &str) -> String {
    format!(
        "GET / HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: sip\r\n\r\n"
    )
}

/// Why the server's handshake answer or frames are refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WsError {
    /// Not `101`, or no matching `Sec-WebSocket-Accept`, or no `sip`
    /// subprotocol, or no blank line within [`MAX_ANSWER`] bytes.
    Handshake,
    /// A masked server frame (§5.1: a client MUST close), RSV bits, a
    /// reserved opcode, a bad length, or a payload over the limit.
    Frame,
    /// A fragmented message: sipshard and Kamailio send each SIP message
    /// in one frame (RFC 7118 §5 allows fragments; not needed here).
    Fragmented,
}

impl WsError {
    /// The name it is counted under.
    pub fn as_str(self) -> &'static str {
        match self {
            WsError::Handshake => "ws_handshake",
            WsError::Frame => "ws_frame",
            WsError::Fragmented => "ws_fragmented",
        }
    }
}

/// Reads the server's answer to [`upgrade_request`] at the start of
/// `buf`: `Ok(None)` until its blank line has arrived, then its length
/// (the bytes after it are frames) once it is a 101 with our accept key
/// and `Sec-WebSocket-Protocol: sip`.
pub fn check_answer(buf: &[u8]) -> Result<Option<usize>, WsError> {
    let Some(end) = memmem::find(buf, b"\r\n\r\n") else {
        return if buf.len() > MAX_ANSWER {
            Err(WsError::Handshake)
        } else {
            Ok(None)
        };
    };
    let head = &buf[..end];
    let mut lines = head
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let status = lines.next().unwrap_or_default();
    let code = status.split(|&b| b == b' ').nth(1);
    if !status.starts_with(b"HTTP/1.1 ") || code != Some(&b"101"[..]) {
        return Err(WsError::Handshake);
    }
    let want = accept_key(KEY.as_bytes());
    let (mut accepted, mut sip) = (false, false);
    for line in lines {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
        if name.eq_ignore_ascii_case(b"sec-websocket-accept") {
            accepted = value == want;
        } else if name.eq_ignore_ascii_case(b"sec-websocket-protocol") {
            sip = value.eq_ignore_ascii_case(b"sip");
        }
    }
    if accepted && sip {
        Ok(Some(end + 4))
    } else {
        Err(WsError::Handshake)
    }
}

/// Appends a client frame to `out`: FIN, `opcode`, the mask bit, `mask`
/// and `payload` masked with it (§5.2, §5.3). False, with nothing
/// appended, for a frame the header writer refuses (a control frame over
/// 125 bytes).
pub fn push_frame(out: &mut Vec<u8>, opcode: Opcode, payload: &[u8], mask: [u8; 4]) -> bool {
    let mut head = [0u8; MAX_HEADER_LEN];
    let n = encode_header(opcode, true, payload.len(), &mut head);
    if n == 0 {
        return false;
    }
    head[1] |= 0x80;
    out.extend_from_slice(&head[..n]);
    out.extend_from_slice(&mask);
    let at = out.len();
    out.extend_from_slice(payload);
    for (i, b) in out[at..].iter_mut().enumerate() {
        *b ^= mask[i % 4];
    }
    true
}

/// A whole server frame at the front of a buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerFrame {
    pub opcode: Opcode,
    /// Where its payload is in the buffer.
    pub payload: Range<usize>,
    /// Bytes the frame takes, header included.
    pub len: usize,
}

/// The server frame at the start of `buf` (§5.2): `Ok(None)` while it is
/// incomplete; an error for a masked frame, set RSV bits, a reserved
/// opcode, a 64-bit length with its top bit set, a payload over
/// `max_payload`, or a fragment.
pub fn next_server_frame(buf: &[u8], max_payload: usize) -> Result<Option<ServerFrame>, WsError> {
    let (b0, b1) = match *buf {
        [b0, b1, ..] => (b0, b1),
        _ => return Ok(None),
    };
    if b0 & 0x70 != 0 || b1 & 0x80 != 0 {
        return Err(WsError::Frame);
    }
    let opcode = Opcode::from_bits(b0 & 0x0f).ok_or(WsError::Frame)?;
    if b0 & 0x80 == 0 || opcode == Opcode::Continuation {
        return Err(WsError::Fragmented);
    }
    let Some((len, at)) = payload_len(buf) else {
        return Ok(None);
    };
    let len = match usize::try_from(len) {
        Ok(len) if len <= max_payload => len,
        _ => return Err(WsError::Frame),
    };
    let end = at + len;
    if buf.len() < end {
        return Ok(None);
    }
    Ok(Some(ServerFrame {
        opcode,
        payload: at..end,
        len: end,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sipshard::transport::websocket::decode;

    /// A server frame as sipshard writes one: its header, then the payload.
    fn server_frame(opcode: Opcode, payload: &[u8]) -> Vec<u8> {
        let mut head = [0u8; MAX_HEADER_LEN];
        let n = encode_header(opcode, true, payload.len(), &mut head);
        let mut out = head[..n].to_vec();
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn our_frames_are_masked_and_sipshards_server_decodes_them() {
        for len in [0, 5, 125, 126, 300, 65_535, 65_536] {
            let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let mut out = vec![0xaa];
            assert!(push_frame(&mut out, Opcode::Text, &payload, [1, 2, 3, 4]));
            let wire = &mut out[1..];
            assert_eq!(wire[1] & 0x80, 0x80, "mask bit");
            let (frame, used) = decode(wire, 1 << 20).unwrap().unwrap();
            assert_eq!(used, wire.len());
            assert_eq!(frame.opcode, Opcode::Text);
            assert!(frame.fin);
            assert_eq!(frame.bytes(wire), &payload[..], "len {len}");
        }
        // RFC 6455 §5.7: a masked "Hello".
        let mut out = Vec::new();
        push_frame(&mut out, Opcode::Text, b"Hello", [0x37, 0xfa, 0x21, 0x3d]);
        assert_eq!(
            out,
            [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]
        );
        // A control frame cannot carry 126 bytes.
        let mut out = Vec::new();
        assert!(!push_frame(&mut out, Opcode::Pong, &[0; 126], [0; 4]));
        assert!(out.is_empty());
    }

    #[test]
    fn server_frames_read_back_at_every_length_form() {
        for len in [0usize, 1, 125, 126, 65_535, 65_536, 70_000] {
            let payload = vec![b'x'; len];
            let wire = server_frame(Opcode::Text, &payload);
            let f = next_server_frame(&wire, 1 << 20).unwrap().unwrap();
            assert_eq!(f.opcode, Opcode::Text);
            assert_eq!(f.len, wire.len());
            assert_eq!(&wire[f.payload], &payload[..]);
        }
        // RFC 6455 §5.7: an unmasked "Hello", then a ping.
        let hello = [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x89, 0x00];
        let f = next_server_frame(&hello, 100).unwrap().unwrap();
        assert_eq!(&hello[f.payload.clone()], b"Hello");
        let g = next_server_frame(&hello[f.len..], 100).unwrap().unwrap();
        assert_eq!((g.opcode, g.len), (Opcode::Ping, 2));
    }

    #[test]
    fn a_split_server_frame_waits_and_two_frames_come_apart() {
        let mut wire = server_frame(Opcode::Text, &[b'a'; 300]);
        let first = wire.len();
        wire.extend(server_frame(Opcode::Binary, b"SIP/2.0 200 OK\r\n\r\n"));
        for cut in 0..first {
            assert_eq!(
                next_server_frame(&wire[..cut], 1 << 20),
                Ok(None),
                "cut {cut}"
            );
        }
        let f = next_server_frame(&wire, 1 << 20).unwrap().unwrap();
        assert_eq!(f.len, first);
        let g = next_server_frame(&wire[first..], 1 << 20).unwrap().unwrap();
        assert_eq!(g.opcode, Opcode::Binary);
        assert_eq!(&wire[first..][g.payload], b"SIP/2.0 200 OK\r\n\r\n");
    }

    #[test]
    fn bad_server_frames_are_refused() {
        let max = 1000;
        // Masked (§5.1), RSV bits, reserved opcode.
        assert_eq!(
            next_server_frame(&[0x81, 0x80, 0, 0, 0, 0], max),
            Err(WsError::Frame)
        );
        assert_eq!(next_server_frame(&[0xc1, 0x00], max), Err(WsError::Frame));
        assert_eq!(next_server_frame(&[0x83, 0x00], max), Err(WsError::Frame));
        // Over the limit, from the length alone; a 64-bit length with the top bit.
        assert_eq!(
            next_server_frame(&[0x81, 126, 0x03, 0xe9], max),
            Err(WsError::Frame)
        );
        let mut huge = vec![0x81, 127];
        huge.extend_from_slice(&u64::MAX.to_be_bytes());
        assert_eq!(next_server_frame(&huge, max), Err(WsError::Frame));
        // Fragments: no FIN, or a continuation.
        assert_eq!(
            next_server_frame(&[0x01, 0x01, b'a'], max),
            Err(WsError::Fragmented)
        );
        assert_eq!(
            next_server_frame(&[0x80, 0x01, b'a'], max),
            Err(WsError::Fragmented)
        );
        // Anything at all never panics.
        for a in 0..=255u8 {
            for b in 0..=255u8 {
                let _ = next_server_frame(&[a, b, 0xff, 0xff, 0xff], max);
            }
        }
    }

    #[test]
    fn the_handshake_answer_must_accept_our_key_and_sip() {
        let accept = String::from_utf8(accept_key(KEY.as_bytes()).to_vec()).unwrap();
        let good = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
sec-websocket-accept: {accept}\r\nSec-WebSocket-Protocol: SIP\r\n\r\n"
        );
        let mut bytes = good.clone().into_bytes();
        bytes.extend_from_slice(&[0x81, 0x00]);
        assert_eq!(check_answer(&bytes), Ok(Some(good.len())));
        for cut in 0..good.len() {
            assert_eq!(check_answer(&bytes[..cut]), Ok(None), "cut {cut}");
        }
        let no_sip = good.replace("Sec-WebSocket-Protocol: SIP\r\n", "");
        assert_eq!(check_answer(no_sip.as_bytes()), Err(WsError::Handshake));
        let wrong_key = good.replace(&accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        assert_eq!(check_answer(wrong_key.as_bytes()), Err(WsError::Handshake));
        let refused = good.replace("101 Switching Protocols", "400 Bad Request");
        assert_eq!(check_answer(refused.as_bytes()), Err(WsError::Handshake));
        assert_eq!(
            check_answer(&[b'x'; MAX_ANSWER + 1]),
            Err(WsError::Handshake)
        );
        assert!(upgrade_request("127.0.0.1:5060").contains("Sec-WebSocket-Protocol: sip\r\n"));
    }
}
