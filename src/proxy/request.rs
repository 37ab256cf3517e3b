//! One request through §16 in order: §16.3 checks, §16.4 the route set,
//! §16.5 the next hop, §16.6 the edits. Each step is a function of its own
//! file; this one only chains them.

use super::checks::check;
use super::edits::{forward, Scratch};
use super::nat::reply_dest;
use super::route_set::RouteSet;
use super::target::{next_hop, NextHop};
use super::{Action, DropReason, Lookup, ProxyConfig};
use crate::sip::{Edits, Message, Via};
use crate::transport::{Dest, Source, Transport};

/// §16.3 steps 1-5 alone, for a caller that must run step 6 (Proxy-
/// Authorization, which the shard checks) in between: the answer they
/// give (400, 482, 483, 420; 200 to OPTIONS for us), a drop (no Via), or
/// None when the request passes them.
pub fn check_request(
    msg: &Message<'_>,
    src: &Source,
    cfg: &ProxyConfig,
) -> Option<Action<'static>> {
    let Ok(via) = msg.via() else {
        return Some(Action::Drop(DropReason::Malformed));
    };
    check(msg, cfg, src.local, answers_to(&via, src)).err()
}

/// Where the answers to a request with top Via `via` go: back to the
/// client (§18.2.2, RFC 3581), from the address it reached.
fn answers_to(via: &Via<'_>, src: &Source) -> Dest {
    reply_dest(Some(via), src)
}

/// Routes a request (not an ACK of our own answer: [`super::route`] took
/// those). `edits` is filled when the action is `Forward`.
pub(super) fn route_request<'e, 'r: 'e>(
    msg: &Message<'_>,
    src: &Source,
    cfg: &ProxyConfig,
    loc: Lookup<'r>,
    scratch: &'e mut Scratch,
    edits: &mut Edits<'e>,
) -> Action<'r> {
    // Without a Via there is nowhere to send even a 400.
    let Ok(via) = msg.via() else {
        return Action::Drop(DropReason::Malformed);
    };
    let to = answers_to(&via, src);
    let checked = match check(msg, cfg, src.local, to) {
        Ok(c) => c,
        Err(answer) => return answer,
    };
    let set = match RouteSet::read(msg, cfg, src.local, src.conn, checked.ruri_is_us, to) {
        Ok(s) => s,
        Err(answer) => return answer,
    };
    let hop = match next_hop(msg, cfg, loc, src.local, &checked, &set, to) {
        Ok(h) => h,
        Err(action) => return action,
    };
    let max_forwards = checked.max_forwards;
    match forward(
        msg,
        &via,
        src,
        cfg,
        &set,
        max_forwards,
        &hop,
        scratch,
        edits,
    ) {
        Ok(()) => {
            let to = hop_dest(&hop, src);
            match hop.forks {
                Some(record) => Action::Fork { to, record },
                None => Action::Forward(to),
            }
        }
        Err(_) => Action::Drop(DropReason::WriteFailed),
    }
}

/// Where the request for `hop` leaves.
fn hop_dest(hop: &NextHop<'_>, src: &Source) -> Dest {
    match (hop.flow, hop.dest.transport) {
        // A registered flow: on its connection, through its owner.
        (Some(flow), _) => Dest::Conn(flow),
        // From the address the request reached: the one our Via names
        // (to the other IP family, the shard sending it picks its own).
        (None, Transport::Udp) => Dest::Udp {
            peer: hop.dest.addr,
            from: Some(src.local.ip()).filter(|ip| ip.is_ipv4() == hop.dest.addr.is_ipv4()),
        },
        // This shard's own connection to the next hop.
        (None, transport) => Dest::Outbound {
            peer: hop.dest.addr,
            transport,
        },
    }
}
