//! §16.5 the next hop: the route set's, else the location service's for
//! a Request-URI in a domain we serve (§10.3 step 1: REGISTER goes to the
//! registrar), else the Request-URI's, else an upstream.

use std::net::{IpAddr, SocketAddr};

use super::checks::{bad_extension, Checked};
use super::health::Health;
use super::route_set::RouteSet;
use super::{reply, Action, DropReason, Lookup, ProxyConfig};
use crate::hash::Hash64;
use crate::location::record::{AorRecord, BindingView};
use crate::registrar::canonical_aor;
use crate::registrar::lookup::{best, live_count, nth_live};
use crate::registrar::reply::SUPPORTED as REGISTRAR_SUPPORTED;
use crate::sip::scan::ListIter;
use crate::sip::{HeaderName, Host, Message, Method, NameAddr, SipUri, Uri};
use crate::transport::{ConnId, Dest, Transport, TransportAddr};

/// Where a request goes, and the binding it was located through.
pub struct NextHop<'r> {
    /// The address, and the transport to reach it over.
    pub dest: TransportAddr,
    /// The connection to reach it on: the flow a binding registered over
    /// (RFC 5626), owned by whichever shard accepted it.
    pub flow: Option<ConnId>,
    /// The binding, when the location service chose it (§16.6 step 2: its
    /// contact becomes the Request-URI and its Path the route set).
    pub located: Option<BindingView<'r>>,
    /// The AOR's record when it has other live bindings to fork to (only
    /// for the best binding: a picked one is a fork already).
    pub forks: Option<&'r AorRecord>,
}

/// §16.5: the next hop of a checked request, or what it gets instead
/// (REGISTER for the registrar, 404, 480, a redirect, a drop).
pub fn next_hop<'r>(
    msg: &Message<'_>,
    cfg: &ProxyConfig,
    loc: Lookup<'r>,
    local: SocketAddr,
    checked: &Checked<'_>,
    set: &RouteSet<'_>,
    to: Dest,
) -> Result<NextHop<'r>, Action<'r>> {
    // An in-dialog request for a client on a connection: back on it.
    if let Some((flow, transport)) = set.flow {
        return Ok(NextHop {
            dest: TransportAddr {
                transport,
                addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            },
            flow: Some(flow),
            located: None,
            forks: None,
        });
    }
    let mut next = set.next;
    // No Route left and a Request-URI in a domain we are responsible for:
    // the registrar takes REGISTER (§10.3 step 1), the location service
    // gives every other request its target.
    let mut located: Option<BindingView<'r>> = None;
    let mut forks: Option<&'r AorRecord> = None;
    if let (None, None, Uri::Sip(u)) = (&next, set.new_ruri, &checked.ruri) {
        if cfg.is_local_domain(u, local) {
            if msg.method() == Some(Method::Register) {
                // §10.3 step 2: the registrar is the UAS and processes
                // Require as §8.2.2.3 says, before authenticating (step 3).
                let supported = REGISTRAR_SUPPORTED;
                if let Some(a) = bad_extension(msg, HeaderName::Require, supported, to) {
                    return Err(a);
                }
                return Err(Action::Register);
            }
            let mut aor = [0u8; 512];
            let Some(aor) = canonical_aor(u, &mut aor) else {
                return Err(reply(404, ("Not Found", ""), to));
            };
            let Some(record) = loc.replica.lookup(aor) else {
                return Err(reply(404, ("Not Found", ""), to));
            };
            let binding = match loc.pick {
                None => best(record, loc.now),
                Some(i) => nth_live(record, i, loc.now),
            };
            let Some(binding) = binding else {
                return Err(reply(480, ("Temporarily Unavailable", ""), to));
            };
            if cfg.redirect {
                return Err(Action::Redirect { record, to });
            }
            if loc.pick.is_none() && live_count(record, loc.now) > 1 {
                forks = Some(record);
            }
            next = Some(binding_target(&binding, cfg.nat));
            located = Some(binding);
        }
    }
    let next = match next {
        Some(t) => t,
        None => match set.new_ruri.map(Uri::parse) {
            Some(Ok(Uri::Sip(u))) => target_of(&u),
            Some(_) => Target::Unresolved,
            None => match &checked.ruri {
                Uri::Sip(u) if !checked.ruri_is_us => target_of(u),
                _ => Target::Unresolved,
            },
        },
    };
    let dest = match next {
        Target::Addr(a) => a,
        Target::Flow(flow, dest) => {
            return Ok(NextHop {
                dest,
                flow: Some(flow),
                located,
                forks,
            })
        }
        Target::Unresolved => match pick_upstream(msg, &cfg.upstreams, &cfg.health) {
            Pick::Up(a) => a,
            // Every upstream failed its probes: a caller that can try
            // another proxy should (RFC 3263 §4.3), rather than wait for
            // a request sent where nothing answers.
            Pick::AllDown => {
                return Err(reply(
                    503,
                    ("Service Unavailable", " (no upstream answers)"),
                    to,
                ))
            }
            Pick::NoUpstream if checked.ruri_is_us && set.new_ruri.is_none() => {
                return Err(reply(404, ("Not Found", ""), to))
            }
            Pick::NoUpstream => return Err(Action::Drop(DropReason::Unresolved)),
        },
    };
    Ok(NextHop {
        dest,
        flow: None,
        located,
        forks,
    })
}

/// Where a request for a binding goes: the first Path hop (RFC 3327
/// §5.1), else the connection its REGISTER came on (RFC 5626 §5.3: a UA
/// registered over TCP, TLS or WebSocket is reached over that flow, from
/// whichever shard), else the address its REGISTER came from under
/// `--nat`, else the contact's host.
pub(super) fn binding_target(b: &BindingView<'_>, nat: bool) -> Target {
    if let Some(first) = ListIter::new(b.path).next() {
        return match NameAddr::parse(first.text).map(|n| n.parsed_uri()) {
            Ok(Ok(Uri::Sip(u))) => target_of(&u),
            _ => Target::Unresolved,
        };
    }
    if let Some(flow) = b.conn() {
        let over = TransportAddr {
            transport: b.transport(),
            addr: b.peer(),
        };
        return Target::Flow(flow, over);
    }
    if nat {
        return Target::Addr(TransportAddr::udp(b.peer()));
    }
    match Uri::parse(b.contact) {
        Ok(Uri::Sip(u)) => target_of(&u),
        _ => Target::Unresolved,
    }
}

/// A next hop before resolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// An address and its transport.
    Addr(TransportAddr),
    /// A connection (a registered flow), and the peer and transport it is.
    Flow(ConnId, TransportAddr),
    /// A host name (DNS never runs here), or a URI we cannot send to.
    Unresolved,
}

/// The next hop a SIP URI names: its `maddr` or host, at its port, over
/// the transport it asks for (RFC 3263 §4.1 without DNS: its `transport`
/// parameter, else TLS for `sips:`, else UDP; the default port 5061 for
/// TLS, 5060 otherwise, §4.2). A transport we do not speak (SCTP) is
/// unresolved.
pub fn target_of(u: &SipUri<'_>) -> Target {
    let transport = match u.param(b"transport") {
        Some(Some(t)) => match Transport::from_token(t) {
            Some(t) => t,
            None => return Target::Unresolved,
        },
        _ if u.secure => Transport::Tls,
        _ => Transport::Udp,
    };
    let secure = matches!(transport, Transport::Tls | Transport::Wss);
    let port = u.port.unwrap_or(if secure { 5061 } else { 5060 });
    let at = |ip| {
        Target::Addr(TransportAddr {
            transport,
            addr: SocketAddr::new(ip, port),
        })
    };
    if let Some(m) = u.maddr() {
        if let Ok(Host::V4(a)) = Host::parse(m) {
            return at(IpAddr::V4(a));
        }
    }
    match u.host {
        Host::V4(a) => at(IpAddr::V4(a)),
        Host::V6(a) => at(IpAddr::V6(a)),
        Host::Name(_) => Target::Unresolved,
    }
}

/// What [`pick_upstream`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Pick {
    /// This upstream.
    Up(TransportAddr),
    /// There are upstreams, and every one is out of the rotation.
    AllDown,
    /// There is no `--upstream`.
    NoUpstream,
}

/// The upstream for this dialog: a hash of Call-ID, so that every request
/// of a dialog reaches the same one. One out of the rotation
/// (`--probe-interval`) is skipped: its dialogs move to the next one in
/// the rotation, and only theirs move. Allocates nothing.
pub(super) fn pick_upstream(
    msg: &Message<'_>,
    upstreams: &[TransportAddr],
    health: &Health,
) -> Pick {
    let n = upstreams.len();
    if n == 0 {
        return Pick::NoUpstream;
    }
    let call_id = msg.header(HeaderName::CallId).unwrap_or_default();
    let h = Hash64::default().add(call_id).finish();
    let first = (h % n as u64) as usize;
    (0..n)
        .map(|k| (first + k) % n)
        .find(|&i| health.is_up(i))
        .and_then(|i| upstreams.get(i).copied())
        .map_or(Pick::AllDown, Pick::Up)
}
