//! §16.7 responses: a response must carry our Via on top; ours is
//! removed and the response goes to the next Via's `received`/`rport`, or
//! its sent-by (§18.2.2). Nothing else is kept: a stateless proxy forwards
//! every response it gets.

use std::net::{IpAddr, SocketAddr};

use super::branch::OUR_BRANCH_PREFIX;
use super::{Action, DropReason, ProxyConfig};
use crate::sip::{Edits, Host, Message, Rport};
use crate::transport::{Dest, Source};

/// §16.7: a response must carry our Via on top; it goes to the next Via's
/// received/rport, or its sent-by.
pub(super) fn route_response(
    msg: &Message<'_>,
    src: &Source,
    cfg: &ProxyConfig,
    edits: &mut Edits<'_>,
) -> Action<'static> {
    let mut vias = msg.vias();
    let Some(Ok(top)) = vias.next() else {
        return Action::Drop(DropReason::Malformed);
    };
    // §20.42: a Via of another protocol than SIP/2.0 is malformed; the
    // next one is where the response would go.
    if !top.is_sip_2_0() {
        return Action::Drop(DropReason::Malformed);
    }
    // Under a wildcard listen address our Via names whichever of the
    // host's addresses a request arrived at, and its response may come
    // back to another (a UA that answers to our Via's `received`): with
    // our branch, any address at our port is ours then.
    let our_address = cfg.is_us(&top.host, top.port, src.local)
        || (cfg.advertise_arrival
            && top.port.unwrap_or(5060) == src.local.port()
            && !matches!(top.host, Host::Name(_)));
    let ours = our_address && top.branch.is_some_and(|b| b.starts_with(OUR_BRANCH_PREFIX));
    if !ours {
        return Action::Drop(DropReason::NotOurVia);
    }
    let next = match vias.next() {
        Some(Ok(v)) if v.is_sip_2_0() => v,
        Some(_) => return Action::Drop(DropReason::Malformed),
        None => return Action::Drop(DropReason::NoNextVia),
    };
    // The request came on a connection: back on it (§18.2.2), through
    // the shard that owns it.
    match cfg.conn_key.of_via(&top) {
        None => {}
        Some(Ok(id)) => {
            if edits.remove_top_via(msg).is_err() {
                return Action::Drop(DropReason::WriteFailed);
            }
            return Action::Forward(Dest::Conn(id));
        }
        // A `cid` we did not write: a forged or mangled Via.
        Some(Err(())) => return Action::Drop(DropReason::NotOurVia),
    }
    let ip = match next.received.map(Host::parse) {
        Some(Ok(Host::V4(a))) => IpAddr::V4(a),
        Some(Ok(Host::V6(a))) => IpAddr::V6(a),
        _ => match next.host {
            Host::V4(a) => IpAddr::V4(a),
            Host::V6(a) => IpAddr::V6(a),
            Host::Name(_) => return Action::Drop(DropReason::Unresolved),
        },
    };
    let port = match next.rport {
        Rport::Value(p) => p,
        _ => next.port.unwrap_or(5060),
    };
    if edits.remove_top_via(msg).is_err() {
        return Action::Drop(DropReason::WriteFailed);
    }
    // From the address the request came to, which is the one the client
    // sent it to (our Via named that address to the next hop).
    Action::Forward(Dest::Udp {
        peer: SocketAddr::new(ip, port),
        from: Some(src.local.ip()),
    })
}
