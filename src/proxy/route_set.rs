//! §16.4 Route processing: which Route values are ours and go, whether
//! the previous hop was a strict router (our address in the Request-URI),
//! and where the route set points next.

use std::net::SocketAddr;

use super::conn_param::{parse_nat_value, CID_PARAM, FLOW_TRANSPORT_PARAM, NAT_PARAM};
use super::target::{target_of, Target};
use super::{reply, Action, ProxyConfig};
use crate::sip::{HeaderName, Message, ParseError, Uri};
use crate::transport::{ConnId, Dest, Transport, TransportAddr};

/// What §16.4 makes of a request's Route header, read once, used by the
/// next-hop choice and by the edits.
#[derive(Clone, Copy, Debug, Default)]
pub struct RouteSet<'m> {
    /// A strict router sent it (the Request-URI is ours): the last Route
    /// value, the real target, becomes the Request-URI and leaves the set.
    pub new_ruri: Option<&'m [u8]>,
    /// Route values naming us at the top, removed: the first, and every
    /// one right after it that names us too (RFC 5658 double Record-Route
    /// leaves two, one per interface or transport).
    pub ours: usize,
    /// How many Route values are read once the last one, when it moves
    /// into the Request-URI, is gone.
    pub routes_left: usize,
    /// §16.6 step 6: the next hop is a strict router (no `lr`): the index
    /// of its Route value. It gets the request with its own URI as
    /// Request-URI, and the Request-URI goes to the end of the route set.
    pub strict_next: Option<usize>,
    /// The next hop the route set names, if it names one.
    pub next: Option<Target>,
    /// A flow token in one of our Route values (our Record-Route on the
    /// side of a client that came on a connection, RFC 5626 §5.3), for a
    /// request that did not come on that connection: the request goes
    /// back over it, whatever the rest says.
    pub flow: Option<(ConnId, Transport)>,
}

impl<'m> RouteSet<'m> {
    /// Reads the Route values of `msg`; a Route that does not parse gets
    /// 400, sent to `to`.
    pub fn read(
        msg: &Message<'m>,
        cfg: &ProxyConfig,
        local: SocketAddr,
        arrived_on: Option<ConnId>,
        ruri_is_us: bool,
        to: Dest,
    ) -> Result<RouteSet<'m>, Action<'static>> {
        let mut set = RouteSet {
            routes_left: usize::MAX,
            ..RouteSet::default()
        };
        // A Request-URI that is ours comes from a strict router: the real
        // target is the last Route value.
        if ruri_is_us {
            if let Some(last) = msg.routes().flatten().last() {
                set.new_ruri = Some(last.uri);
                set.routes_left = msg.values(HeaderName::Route).count() - 1;
            }
        }
        let mut nat = None;
        for (i, r) in msg.routes().enumerate().take(set.routes_left) {
            let Ok(r) = r else {
                return Err(reply(
                    400,
                    ParseError::Invalid(HeaderName::Route).reason(),
                    to,
                ));
            };
            let Ok(Uri::Sip(u)) = r.parsed_uri() else {
                set.next = Some(Target::Unresolved);
                break;
            };
            if i == set.ours && cfg.is_us(&u.host, u.port, local) {
                set.ours += 1;
                // A flow token we wrote, for a request from the other
                // side (one from the flow itself goes on as routed).
                if let Some(Some(v)) = u.param(CID_PARAM) {
                    let named = u.param(FLOW_TRANSPORT_PARAM);
                    let over = match named.or_else(|| u.param(b"transport")) {
                        Some(Some(t)) => Transport::from_token(t),
                        _ => None,
                    };
                    if let (Some(id), Some(t)) = (cfg.conn_key.read(v), over) {
                        if arrived_on != Some(id) {
                            set.flow = Some((id, t));
                        }
                    }
                }
                // Another node of a cluster routing to a NAT binding of
                // ours: to the address its REGISTER came from.
                if let Some(Some(v)) = u.param(NAT_PARAM) {
                    nat = parse_nat_value(v);
                }
                continue;
            }
            set.next = Some(target_of(&u));
            if !u.is_loose_router() && set.new_ruri.is_none() {
                set.strict_next = Some(i);
            }
            break;
        }
        if let (None, Some(peer)) = (set.next, nat) {
            set.next = Some(Target::Addr(TransportAddr::udp(peer)));
        }
        Ok(set)
    }

    /// The last Route value moves into the Request-URI.
    pub fn remove_last_route(&self) -> bool {
        self.new_ruri.is_some()
    }
}
