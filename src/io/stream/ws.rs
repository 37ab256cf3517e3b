//! A WebSocket connection's input (RFC 6455 with RFC 7118), for the
//! shard that owns it: the opening handshake, then frames, each whole
//! WebSocket message one SIP message. Runs over the connection's buffered
//! plaintext (after TLS for `wss:`) with the codec of
//! `transport/websocket/`; what must be written back (the 101 or the
//! refusal, pongs, the closing frame) is appended to `replies` for the
//! caller to send, encrypted if need be.

use super::conn::Next;
use super::Received;
use crate::transport::websocket::{
    check_text, close, close_payload, decode, encode_header, parse_upgrade, write_accept,
    write_refusal, Opcode, Part, Reassembly, ACCEPT_LEN, MAX_HEADER_LEN, REFUSAL_MAX_LEN,
};
use crate::transport::Source;

/// Bytes an opening handshake may take (browsers send well under 2 KiB).
pub const MAX_UPGRADE: usize = 8192;

/// A WebSocket connection's state.
#[derive(Debug)]
pub struct WsConn {
    /// The opening handshake is done: frames follow.
    open: bool,
    reassembly: Reassembly,
    /// The data message being joined, or a whole one waiting for room.
    message: Vec<u8>,
    /// `message` is whole and not yet handled (no room last time).
    ready: bool,
}

impl WsConn {
    /// A connection whose handshake has not come yet; messages over
    /// `max_message` bytes close it (1009).
    pub fn new(max_message: usize) -> WsConn {
        WsConn {
            open: false,
            reassembly: Reassembly::new(max_message),
            message: Vec::new(),
            ready: false,
        }
    }

    /// True once the handshake is done: what is sent to the connection
    /// goes in frames ([`frame_message`]).
    pub fn is_open(&self) -> bool {
        self.open
    }
}

/// Appends one server frame (unmasked, §5.1) carrying `data` as a text
/// message (RFC 7118 §5: SIP is sent as text where it is UTF-8, which a
/// message we write is).
pub fn frame_message(data: &[u8], out: &mut Vec<u8>) {
    let mut header = [0u8; MAX_HEADER_LEN];
    let n = encode_header(Opcode::Text, true, data.len(), &mut header);
    out.extend_from_slice(&header[..n]);
    out.extend_from_slice(data);
}

/// A control frame (§5.5) with `payload` (at most 125 bytes).
fn control(opcode: Opcode, payload: &[u8], out: &mut Vec<u8>) {
    let mut header = [0u8; MAX_HEADER_LEN];
    let n = encode_header(opcode, true, payload.len(), &mut header);
    out.extend_from_slice(&header[..n]);
    out.extend_from_slice(payload);
}

/// The Close frame for `code` (§5.5.1), after which the connection ends:
/// an orderly end for a normal closure, else a broken frame stream.
fn closing(code: u16, out: &mut Vec<u8>) -> Next {
    let mut payload = [0u8; 2];
    let n = close_payload(code, &mut payload);
    control(Opcode::Close, &payload[..n], out);
    if code == close::NORMAL {
        Next::CloseAfterSend
    } else {
        Next::Unframeable
    }
}

/// An HTTP refusal of the handshake (§4.2.2 item 4, §10.2 for 403).
fn refuse(status: u16, out: &mut Vec<u8>) -> Next {
    let mut buf = [0u8; REFUSAL_MAX_LEN];
    let n = write_refusal(status, &mut buf);
    out.extend_from_slice(&buf[..n]);
    Next::Unframeable
}

/// Takes what the connection has buffered in `rx` (plaintext, front
/// first): the handshake, then frames; hands each whole message to
/// `handle` (false: no room, the message waits) and appends what must be
/// written back to `replies`. `origins` is the `--ws-origin` allow-list
/// (empty: any origin). Leaves in `rx` only what is not decoded yet.
pub fn input(
    ws: &mut WsConn,
    rx: &mut Vec<u8>,
    src: &Source,
    origins: &[String],
    replies: &mut Vec<u8>,
    handle: &mut impl FnMut(Received<'_>, &Source) -> bool,
) -> Next {
    if ws.ready {
        if !handle(Received::Message(&ws.message), src) {
            return Next::Stalled;
        }
        ws.ready = false;
        ws.message.clear();
    }
    if !ws.open {
        match parse_upgrade(rx, MAX_UPGRADE) {
            Ok(None) => return Next::Idle,
            Err(e) => return refuse(e.status(), replies),
            Ok(Some(up)) => {
                // §10.2: a browser's page from elsewhere is refused.
                let allowed = origins.is_empty()
                    || up.origin.is_some_and(|o| {
                        origins.iter().any(|a| a.as_bytes().eq_ignore_ascii_case(o))
                    });
                if !allowed {
                    return refuse(403, replies);
                }
                let mut accept = [0u8; ACCEPT_LEN];
                let n = write_accept(up.key, &mut accept);
                replies.extend_from_slice(&accept[..n]);
                let len = up.len;
                ws.open = true;
                rx.drain(..len);
            }
        }
    }
    let mut at = 0;
    let max = ws_max(ws);
    let next = loop {
        let (frame, used) = match decode(&mut rx[at..], max) {
            Ok(None) => break Next::Idle,
            Ok(Some(f)) => f,
            Err(e) => break closing(e.close_code(), replies),
        };
        let payload = frame.payload.start + at..frame.payload.end + at;
        at += used;
        let part = match ws.reassembly.push(&frame) {
            Ok(p) => p,
            Err(e) => break closing(e.close_code(), replies),
        };
        let kind = match part {
            Part::Control(Opcode::Ping) => {
                control(Opcode::Pong, &rx[payload], replies);
                continue;
            }
            Part::Control(Opcode::Close) => break closing(close::NORMAL, replies),
            Part::Control(_) => continue,
            Part::First(_) | Part::Middle => {
                if matches!(part, Part::First(_)) {
                    ws.message.clear();
                }
                ws.message.extend_from_slice(&rx[payload]);
                continue;
            }
            Part::Whole(kind) => {
                ws.message.clear();
                ws.message.extend_from_slice(&rx[payload]);
                kind
            }
            Part::Last(kind) => {
                ws.message.extend_from_slice(&rx[payload]);
                kind
            }
        };
        // §8.1: a text message must be UTF-8.
        if kind == Opcode::Text && check_text(&ws.message).is_err() {
            break closing(close::INVALID_DATA, replies);
        }
        if !handle(Received::Message(&ws.message), src) {
            ws.ready = true;
            break Next::Stalled;
        }
        ws.message.clear();
    };
    rx.drain(..at);
    if ws.message.capacity() > 2 * ws_max(ws) {
        ws.message = Vec::new();
    }
    next
}

/// The message limit the reassembly was built with.
fn ws_max(ws: &WsConn) -> usize {
    ws.reassembly.max_message()
}
