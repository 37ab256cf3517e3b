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
//!
//! # Layout
//! - `handshake.rs`: the opening handshake (RFC 6455 §4, RFC 7118 §4) and
//!   its base64 (RFC 4648 §4).
//! - `frame.rs`: frames (RFC 6455 §5), Close payloads (§5.5.1, §7.4) and
//!   the order of fragments (§5.4).
//!
//! Both modules are private; everything public is re-exported here, so
//! callers name `crate::transport::websocket::X`.

mod frame;
mod handshake;

pub use frame::{
    check_text, close, close_payload, decode, encode_header, parse_close, payload_len, Frame,
    FrameError, Opcode, Part, Reassembly, MAX_HEADER_LEN,
};
pub use handshake::{
    accept_key, parse_upgrade, write_accept, write_refusal, HandshakeError, Upgrade,
    ACCEPT_KEY_LEN, ACCEPT_LEN, REFUSAL_MAX_LEN,
};

/// Copies `pieces` one after another to the start of `out`; None, with
/// nothing written, when they do not fit. Shared by the writers of both
/// halves.
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
