//! A shard: one thread, one socket, one loop. Receive a batch, handle each
//! datagram in place (parse, route, write the outgoing copy straight into a
//! send buffer), send the batch. It shares nothing mutable with other
//! shards but its counters, which only it writes.

pub mod counters;

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::io::{Backend, SendQueue};
use crate::proxy::branch::{transaction_hash, write_hex};
use crate::proxy::{nat_params, route, Action, DropReason, ProxyConfig, Scratch};
use crate::sip::{Edits, Message, Method, ParseError, ResponseWriter, ViaEdit};
use counters::{add, ShardCounters};

/// Methods a stateless proxy passes on, for `Allow` in answers to OPTIONS.
const ALLOW: &[u8] =
    b"INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE, PRACK, SUBSCRIBE, NOTIFY, REFER, MESSAGE";

/// Runs the shard loop until `stop` is set, then sends what is queued.
pub fn run<B: Backend>(
    mut io: B,
    cfg: &ProxyConfig,
    counters: &ShardCounters,
    stop: &AtomicBool,
) -> io::Result<()> {
    let mut scratch = Scratch::default();
    while !stop.load(Ordering::Relaxed) {
        io.poll(|d, send| {
            add(&counters.received, 1);
            let Some(src) = d.source else {
                counters.dropped(DropReason::Malformed);
                return;
            };
            if d.truncated {
                counters.dropped(DropReason::Oversize);
                return;
            }
            handle(d.bytes, src, cfg, &mut scratch, send, counters);
        })?;
        add(&counters.send_failed, io.flush() as u64);
    }
    add(&counters.send_failed, io.flush() as u64);
    Ok(())
}

/// Handles one datagram: never panics, never allocates.
pub fn handle<S: SendQueue>(
    bytes: &[u8],
    src: std::net::SocketAddr,
    cfg: &ProxyConfig,
    scratch: &mut Scratch,
    send: &mut S,
    counters: &ShardCounters,
) {
    let drop = |r: DropReason| counters.dropped(r);
    let msg = match Message::parse(bytes) {
        Ok(m) => m,
        Err(ParseError::Empty) => return drop(DropReason::KeepAlive),
        Err(_) => {
            add(&counters.parse_errors, 1);
            return drop(DropReason::Malformed);
        }
    };
    let mut edits = Edits::new();
    let action = route(&msg, src, cfg, scratch, &mut edits);
    let Some(slot) = send.slot() else {
        return drop(DropReason::WriteFailed);
    };
    match action {
        Action::Forward(to) => match edits.write(&msg, slot) {
            Ok(n) => {
                send.commit(n, to);
                let c = if msg.is_request() {
                    &counters.forwarded_requests
                } else {
                    &counters.forwarded_responses
                };
                add(c, 1);
            }
            Err(_) => drop(DropReason::WriteFailed),
        },
        Action::Reply { code, reason, to } => match write_reply(&msg, src, code, reason, slot) {
            Some(n) => {
                send.commit(n, to);
                add(&counters.replies[usize::from(code / 100).min(6)], 1);
            }
            None => drop(DropReason::WriteFailed),
        },
        Action::Drop(r) => drop(r),
    }
}

/// Builds a local response. The To tag is derived from the transaction, so
/// a retransmitted request gets the very same response (we keep no state).
fn write_reply(
    msg: &Message<'_>,
    src: std::net::SocketAddr,
    code: u16,
    reason: (&'static str, &'static str),
    out: &mut [u8],
) -> Option<usize> {
    let mut tag = [0u8; 16];
    write_hex(transaction_hash(msg), &mut tag);
    // RFC 3581 §4 / §18.2.1: the response's Via carries what we saw.
    let mut nat = [0u8; 512];
    let via_edit = nat_params(msg, src, &mut nat).map(|n| ViaEdit {
        start: n.start,
        end: n.end,
        text: &nat[..n.len],
    });
    let mut w = ResponseWriter::with_via_edit(
        msg,
        code,
        &[reason.0.as_bytes(), reason.1.as_bytes()],
        Some(&tag),
        via_edit,
        out,
    )
    .ok()?;
    if code == 200 && msg.method() == Some(Method::Options) {
        w.header("Allow", ALLOW).ok()?;
        w.header("Accept", b"application/sdp").ok()?;
        w.header("Supported", b"").ok()?;
    }
    w.header("Server", b"sipshard").ok()?;
    w.finish().ok()
}
