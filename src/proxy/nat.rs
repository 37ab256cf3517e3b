//! RFC 3581 and §18.2.1: `received` and `rport` on the client's Via, and
//! where a response to a request goes. A client must not choose where
//! responses go, so its own `received`/`rport` values are replaced.

use std::net::{IpAddr, SocketAddr};

use super::edits::Out;
use crate::sip::{Host, Message, Rport, Via};
use crate::transport::{Dest, Source};

/// Where a locally generated response to this request goes: the source
/// address, at the source port when the client asked for rport (RFC 3581
/// §4), else at the port its Via names (§18.2.2).
pub fn reply_address(via: &Via<'_>, src: SocketAddr) -> SocketAddr {
    match via.rport {
        Rport::Requested | Rport::Value(_) => src,
        Rport::Absent => SocketAddr::new(src.ip(), via.port.unwrap_or(5060)),
    }
}

/// Where the answers to a request go (§18.2.2): back on the connection
/// it came on; for a datagram, to [`reply_address`] (the source when the
/// request has no readable Via), from the address it reached.
pub fn reply_dest(via: Option<&Via<'_>>, src: &Source) -> Dest {
    match src.conn {
        Some(conn) => Dest::Conn(conn),
        None => Dest::Udp {
            peer: via.map_or(src.peer, |v| reply_address(v, src.peer)),
            from: Some(src.local.ip()),
        },
    }
}

/// Where the RFC 3581 / §18.2.1 parameters go in the client's top Via:
/// replace bytes `start..end` of the message with the first `len` bytes
/// written to the caller's buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NatEdit {
    /// First byte replaced.
    pub start: usize,
    /// One past the last byte replaced.
    pub end: usize,
    /// Bytes of new text.
    pub len: usize,
}

/// The `received`/`rport` change to the client's top Via for a request
/// from `src`, with its text written into `out`; None when nothing changes
/// (or the Via does not parse). Used for forwarded requests and for the
/// Via of local responses alike.
pub fn nat_params(msg: &Message<'_>, src: SocketAddr, out: &mut [u8]) -> Option<NatEdit> {
    let via = msg.via().ok()?;
    nat_edit(msg, &via, src, out)
}

/// §18.2.1: add `received` when the source differs from sent-by; RFC 3581
/// §4: fill `rport` with the source port when the client asked for it.
pub(super) fn nat_edit(
    msg: &Message<'_>,
    via: &Via<'_>,
    src: SocketAddr,
    out: &mut [u8],
) -> Option<NatEdit> {
    let top = msg.top_via_value()?;
    let sent_by_ip = match via.host {
        Host::V4(a) => Some(IpAddr::V4(a)),
        Host::V6(a) => Some(IpAddr::V6(a)),
        Host::Name(_) => None,
    };
    let has_rport = via.rport != Rport::Absent;
    if !has_rport && via.received.is_none() && sent_by_ip == Some(src.ip()) {
        return None;
    }
    // Rewrite the parameters of the top Via: what the client wrote, except
    // any `received`/`rport` of its own (a client must not choose where
    // responses go: that would make us reflect them at anyone), then ours.
    let base = msg.bytes().as_ptr() as usize;
    let start = (via.params.as_ptr() as usize).checked_sub(base)?;
    let end = top.offset + top.text.len();
    if start > end {
        return None;
    }
    let mut w = Out::new(out);
    for p in via.params() {
        if p.name.eq_ignore_ascii_case(b"received") || p.name.eq_ignore_ascii_case(b"rport") {
            continue;
        }
        w.bytes(b";")?;
        w.bytes(p.name)?;
        if let Some(v) = p.value {
            w.bytes(b"=")?;
            w.bytes(v)?;
        }
    }
    w.bytes(b";received=")?;
    w.ip(src.ip())?;
    if has_rport {
        w.bytes(b";rport=")?;
        w.u32(u32::from(src.port()))?;
    }
    let len = w.len;
    Some(NatEdit { start, end, len })
}
