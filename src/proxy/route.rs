//! Routing one message: §16.3 checks, §16.4 Route processing, §16.5/§16.6
//! next hop and request edits, §16.7 response handling, RFC 3581 rport.
//!
//! # Next hop
//! The top Route (after removing ours), else the Request-URI, else the
//! first `--upstream` chosen by a hash of Call-ID so that a dialog always
//! reaches the same upstream. Only IP literals are resolved here; a host
//! name goes to the upstreams when there are some and is dropped otherwise
//! (DNS never runs on the forwarding path; a resolver thread is future work).

use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};

use super::branch::{is_loop, local_to_tag, write_branch, BRANCH_LEN, OUR_BRANCH_PREFIX};
use crate::hash::Hash64;
use crate::location::record::BindingView;
use crate::location::{AorRecord, Replica};
use crate::registrar::canonical_aor;
use crate::registrar::lookup::best;
use crate::sip::scan::ListIter;
use crate::sip::{
    write_u32, Edits, HeaderName, Host, Message, Method, NameAddr, ParseError, Piece, Rport,
    SipUri, Uri, Via,
};

/// What the proxy needs to know about itself and its neighbours.
#[derive(Clone, Debug)]
pub struct ProxyConfig {
    /// The address in our Via sent-by and Record-Route (`--advertise`,
    /// default the first listen address).
    pub advertise: SocketAddr,
    /// Every address that means "this proxy" (listen addresses and the
    /// advertised one), for loop detection and Route processing.
    pub local: Vec<SocketAddr>,
    /// Where requests go when nothing else names a next hop (`--upstream`).
    pub upstreams: Vec<SocketAddr>,
    /// Add `Record-Route: <sip:advertise;lr>` to requests (`--record-route`).
    pub record_route: bool,
    /// Domains we are registrar for (`--domain`), lower case. Empty: no
    /// registrar, and REGISTER is forwarded like anything else.
    pub domains: Vec<Box<[u8]>>,
    /// Answer requests for local users with 302 (`--mode redirect`).
    pub redirect: bool,
    /// Send to a binding's registered source address (`--nat`).
    pub nat: bool,
}

impl ProxyConfig {
    /// A proxy at `addr` with no upstream and no record-routing.
    pub fn at(addr: SocketAddr) -> Self {
        ProxyConfig {
            advertise: addr,
            local: vec![addr],
            upstreams: Vec::new(),
            record_route: false,
            domains: Vec::new(),
            redirect: false,
            nat: false,
        }
    }

    /// True when host:port (port default 5060) is one of our addresses.
    /// A wildcard bind (0.0.0.0) is not an address peers write: with one,
    /// the advertised address is what names us.
    fn is_us(&self, host: &Host<'_>, port: Option<u16>) -> bool {
        let ip = match host {
            Host::V4(a) => IpAddr::V4(*a),
            Host::V6(a) => IpAddr::V6(*a),
            Host::Name(_) => return false,
        };
        let port = port.unwrap_or(5060);
        self.local
            .iter()
            .chain(std::iter::once(&self.advertise))
            .any(|a| a.port() == port && a.ip() == ip)
    }

    /// The digest realm for a request about `uri` (the To of a REGISTER,
    /// the From of an INVITE): its domain as configured when it is one of
    /// ours, else the first `--domain` (a UA that used our address).
    pub fn realm_for(&self, uri: &SipUri<'_>) -> Option<&[u8]> {
        self.domains
            .iter()
            .find(|d| d.eq_ignore_ascii_case(uri.host_raw))
            .or(self.domains.first())
            .map(|d| &d[..])
    }

    /// True when we are registrar for this URI's host (§10.3 step 1,
    /// §16.5): one of the `--domain`s, or, when there is any, one of our
    /// own addresses (what Kamailio calls "myself").
    pub fn is_local_domain(&self, uri: &SipUri<'_>) -> bool {
        !self.domains.is_empty()
            && (self
                .domains
                .iter()
                .any(|d| d.eq_ignore_ascii_case(uri.host_raw))
                || self.is_us(&uri.host, uri.port))
    }
}

/// A shard's view of the location service for one routing decision: its
/// replica and the time (Unix seconds) against which bindings are live.
#[derive(Clone, Copy)]
pub struct Lookup<'r> {
    /// The shard's replica.
    pub replica: &'r Replica,
    /// Now, in Unix seconds.
    pub now: u64,
}

/// Why a datagram was dropped; each reason is a counter, indexed by
/// `reason as usize`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum DropReason {
    /// Only line ends (an RFC 5626 keep-alive).
    KeepAlive,
    /// Not SIP, or a request so broken that no reply can be addressed.
    Malformed,
    /// A response whose top Via is not ours (§18.1.2: a response goes to
    /// the element named by its top Via).
    NotOurVia,
    /// A response with no Via left after ours.
    NoNextVia,
    /// The next hop is a host name and there is no upstream to use.
    Unresolved,
    /// The outgoing message did not fit its buffer or its edits.
    WriteFailed,
    /// A datagram larger than the receive buffer, cut by the kernel.
    Oversize,
    /// An ACK that would have been answered locally (an ACK gets no
    /// response, §17): dropped instead.
    AckNotAnswered,
    /// A REGISTER for a local domain whose owner shard's inbox was full and
    /// that could not be answered 503 either.
    InboxFull,
    /// A source outside `--allow` or inside `--deny`.
    Denied,
    /// A request from a known scanner's User-Agent (`--drop-scanners`).
    Scanner,
    /// A source over `--rate-limit`, banned for `--ban-time`.
    RateLimited,
    /// A request to authenticate from a source over `--auth-fail-limit`,
    /// banned for `--ban-time`.
    AuthBanned,
}

impl DropReason {
    /// Every reason, in counter-index order.
    pub const ALL: [DropReason; 13] = [
        DropReason::KeepAlive,
        DropReason::Malformed,
        DropReason::NotOurVia,
        DropReason::NoNextVia,
        DropReason::Unresolved,
        DropReason::WriteFailed,
        DropReason::Oversize,
        DropReason::AckNotAnswered,
        DropReason::InboxFull,
        DropReason::Denied,
        DropReason::Scanner,
        DropReason::RateLimited,
        DropReason::AuthBanned,
    ];

    /// The name in reports and the exit line.
    pub fn name(self) -> &'static str {
        match self {
            DropReason::KeepAlive => "keepalive",
            DropReason::Malformed => "malformed",
            DropReason::NotOurVia => "not_our_via",
            DropReason::NoNextVia => "no_next_via",
            DropReason::Unresolved => "unresolved",
            DropReason::WriteFailed => "write_failed",
            DropReason::Oversize => "oversize",
            DropReason::AckNotAnswered => "ack_not_answered",
            DropReason::InboxFull => "inbox_full",
            DropReason::Denied => "denied",
            DropReason::Scanner => "scanner",
            DropReason::RateLimited => "rate_limited",
            DropReason::AuthBanned => "auth_banned",
        }
    }
}

/// What to do with one datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action<'r> {
    /// Send the edited message to this address.
    Forward(SocketAddr),
    /// Answer the request locally with this status, sent to `to`.
    Reply {
        /// Status code.
        code: u16,
        /// Reason phrase in two pieces (see [`ParseError::reason`]).
        reason: (&'static str, &'static str),
        /// Where the response goes (§18.2.2, RFC 3581).
        to: SocketAddr,
    },
    /// Drop it and count why.
    Drop(DropReason),
    /// A REGISTER for a local domain: the AOR's owner shard applies it
    /// (§10.3) and answers.
    Register,
    /// Answer 302 listing these bindings (`--mode redirect`, §8.3).
    Redirect {
        /// The AOR's record (its live bindings become Contacts).
        record: &'r AorRecord,
        /// Where the response goes.
        to: SocketAddr,
    },
}

/// Per-shard room for the text the edits insert (our Via, Record-Route,
/// received/rport), so that routing allocates nothing.
#[derive(Clone, Debug)]
pub struct Scratch {
    via: [u8; 128],
    via_len: usize,
    rr: [u8; 80],
    rr_len: usize,
    nat: [u8; 512],
    nat_len: usize,
    ruri: [u8; 512],
    ruri_len: usize,
    old_ruri: [u8; 300],
    old_ruri_len: usize,
    branch: [u8; BRANCH_LEN],
    /// The address `via[..via_prefix]` and `rr[..rr_len]` were written
    /// for: they depend only on `--advertise`, so they are formatted once,
    /// not per request (callgrind, perf/RESULTS.md issue #6).
    written_for: Option<SocketAddr>,
    via_prefix: usize,
}

impl Default for Scratch {
    fn default() -> Self {
        Scratch {
            via: [0; 128],
            via_len: 0,
            rr: [0; 80],
            rr_len: 0,
            nat: [0; 512],
            nat_len: 0,
            ruri: [0; 512],
            ruri_len: 0,
            old_ruri: [0; 300],
            old_ruri_len: 0,
            branch: [0; BRANCH_LEN],
            written_for: None,
            via_prefix: 0,
        }
    }
}

/// Appends to a fixed buffer without `core::fmt`, which cost more than
/// the rest of the NAT edit (callgrind, perf/RESULTS.md issue #6).
struct Out<'b> {
    buf: &'b mut [u8],
    len: usize,
}

impl<'b> Out<'b> {
    fn new(buf: &'b mut [u8]) -> Self {
        Out { buf, len: 0 }
    }

    /// Appends `b`; None when it does not fit.
    fn bytes(&mut self, b: &[u8]) -> Option<()> {
        self.buf
            .get_mut(self.len..self.len + b.len())?
            .copy_from_slice(b);
        self.len += b.len();
        Some(())
    }

    fn u32(&mut self, n: u32) -> Option<()> {
        self.bytes(write_u32(n, &mut [0u8; 10]))
    }

    /// An address as `Display` writes it: dotted quad, or the RFC 5952
    /// text of an IPv6 address (through `fmt`: rare, and its rules are not
    /// worth repeating).
    fn ip(&mut self, ip: IpAddr) -> Option<()> {
        match ip {
            IpAddr::V4(a) => {
                for (i, o) in a.octets().into_iter().enumerate() {
                    if i > 0 {
                        self.bytes(b".")?;
                    }
                    self.u32(u32::from(o))?;
                }
                Some(())
            }
            IpAddr::V6(a) => {
                let n = fmt_into(self.buf.get_mut(self.len..)?, format_args!("{a}"))?;
                self.len += n;
                Some(())
            }
        }
    }
}

/// Writes formatted text into a fixed buffer; None when it does not fit.
fn fmt_into(buf: &mut [u8], args: std::fmt::Arguments<'_>) -> Option<usize> {
    let mut cursor = std::io::Cursor::new(buf);
    cursor.write_fmt(args).ok()?;
    usize::try_from(cursor.position()).ok()
}

/// Routes one message. `edits` is filled when the action is `Forward`.
pub fn route<'e, 'r: 'e>(
    msg: &Message<'_>,
    src: SocketAddr,
    cfg: &ProxyConfig,
    loc: Lookup<'r>,
    scratch: &'e mut Scratch,
    edits: &mut Edits<'e>,
) -> Action<'r> {
    if msg.is_request() {
        if msg.method() == Some(Method::Ack) && acks_local_answer(msg) {
            // §17.1.1.3: the ACK of a non-2xx answer we gave (a 404, a
            // 407...) ends here; forwarded, it would reach a callee that
            // never saw the INVITE.
            return Action::Drop(DropReason::AckNotAnswered);
        }
        match route_request(msg, src, cfg, loc, scratch, edits) {
            // §17: an ACK gets no response, whatever is wrong with it.
            Action::Reply { .. } | Action::Redirect { .. } if msg.method() == Some(Method::Ack) => {
                Action::Drop(DropReason::AckNotAnswered)
            }
            action => action,
        }
    } else {
        route_response(msg, cfg, edits)
    }
}

/// True when `ack`'s To tag is the one our own answers carry
/// ([`local_to_tag`]) for its transaction.
fn acks_local_answer(ack: &Message<'_>) -> bool {
    ack.to()
        .ok()
        .and_then(|t| t.tag())
        .is_some_and(|tag| tag == local_to_tag(ack))
}

/// Where a locally generated response to this request goes: the source
/// address, at the source port when the client asked for rport (RFC 3581
/// §4), else at the port its Via names (§18.2.2).
pub fn reply_address(via: &Via<'_>, src: SocketAddr) -> SocketAddr {
    match via.rport {
        Rport::Requested | Rport::Value(_) => src,
        Rport::Absent => SocketAddr::new(src.ip(), via.port.unwrap_or(5060)),
    }
}

fn reply(code: u16, reason: (&'static str, &'static str), to: SocketAddr) -> Action<'static> {
    Action::Reply { code, reason, to }
}

fn route_request<'e, 'r: 'e>(
    msg: &Message<'_>,
    src: SocketAddr,
    cfg: &ProxyConfig,
    loc: Lookup<'r>,
    scratch: &'e mut Scratch,
    edits: &mut Edits<'e>,
) -> Action<'r> {
    // Without a Via there is nowhere to send a 400.
    let Ok(via) = msg.via() else {
        return Action::Drop(DropReason::Malformed);
    };
    let to = reply_address(&via, src);
    // §16.3 step 1: reasonable syntax.
    if let Err(e) = msg.validate() {
        return reply(e.status(), e.reason(), to);
    }
    let Ok(ruri) = msg.request_uri() else {
        return reply(400, ParseError::BadRequestUri.reason(), to);
    };
    let ruri_is_us = matches!(&ruri, Uri::Sip(u) if cfg.is_us(&u.host, u.port));
    let to_us_without_user = matches!(&ruri, Uri::Sip(u)
        if u.user.is_none() && (cfg.is_us(&u.host, u.port) || cfg.is_local_domain(u)));
    let method = msg.method();
    // OPTIONS to the proxy itself (§11.2): answered here, even at
    // Max-Forwards 0 (§16.3 step 3 allows it).
    if method == Some(Method::Options) && to_us_without_user {
        return reply(200, ("OK", ""), to);
    }
    // §16.3 step 3: Max-Forwards.
    let max_forwards = msg.max_forwards().ok().flatten();
    if max_forwards == Some(0) {
        return reply(483, ("Too Many Hops", ""), to);
    }
    // §16.3 step 4: loop detection. A Via we wrote with the branch we would
    // write now means this very request came back.
    let looped = msg
        .vias()
        .flatten()
        .any(|v| cfg.is_us(&v.host, v.port) && v.branch.is_some_and(|b| is_loop(msg, b)));
    if looped {
        return reply(482, ("Loop Detected", ""), to);
    }

    // §16.4 Route processing. A Request-URI that is ours comes from a
    // strict router: the real target is the last Route value.
    let mut new_ruri: Option<&[u8]> = None;
    let mut remove_last_route = false;
    if ruri_is_us {
        if let Some(last) = msg.routes().flatten().last() {
            new_ruri = Some(last.uri);
            remove_last_route = true;
        }
    }
    let mut remove_top_route = false;
    // §16.6 step 6: a next hop without `lr` is a strict router: it gets
    // the request with its own URI as Request-URI, and the Request-URI
    // goes to the end of the route set. (Index of that Route value.)
    let mut strict_next: Option<usize> = None;
    let mut next: Option<Target> = None;
    for (i, r) in msg.routes().enumerate() {
        let Ok(r) = r else {
            return reply(400, ParseError::Invalid(HeaderName::Route).reason(), to);
        };
        let Ok(Uri::Sip(u)) = r.parsed_uri() else {
            next = Some(Target::Unresolved);
            break;
        };
        if i == 0 && cfg.is_us(&u.host, u.port) {
            remove_top_route = true;
            continue;
        }
        next = Some(target_of(&u.host, u.port, u.maddr()));
        if !u.is_loose_router() && !remove_last_route && i <= 1 {
            strict_next = Some(i);
        }
        break;
    }
    if remove_last_route && remove_top_route && msg.routes().count() == 1 {
        // The only Route was ours and moved into the Request-URI.
        remove_top_route = false;
    }
    // §16.5: no Route left and a Request-URI in a domain we are
    // responsible for: the registrar takes REGISTER (§10.3 step 1), the
    // location service gives every other request its target.
    let mut located: Option<BindingView<'r>> = None;
    if let (None, None, Uri::Sip(u)) = (&next, new_ruri, &ruri) {
        if cfg.is_local_domain(u) {
            if method == Some(Method::Register) {
                return Action::Register;
            }
            let mut aor = [0u8; 512];
            let Some(aor) = canonical_aor(u, &mut aor) else {
                return reply(404, ("Not Found", ""), to);
            };
            let Some(record) = loc.replica.lookup(aor) else {
                return reply(404, ("Not Found", ""), to);
            };
            let Some(binding) = best(record, loc.now) else {
                return reply(480, ("Temporarily Unavailable", ""), to);
            };
            if cfg.redirect {
                return Action::Redirect { record, to };
            }
            next = Some(binding_target(&binding, cfg.nat));
            located = Some(binding);
        }
    }
    let next = match next {
        Some(t) => t,
        None => match new_ruri.map(Uri::parse) {
            Some(Ok(Uri::Sip(u))) => target_of(&u.host, u.port, u.maddr()),
            Some(_) => Target::Unresolved,
            None => match &ruri {
                Uri::Sip(u) if !ruri_is_us => target_of(&u.host, u.port, u.maddr()),
                _ => Target::Unresolved,
            },
        },
    };
    let dest = match next {
        Target::Addr(a) => a,
        Target::Unresolved => match pick_upstream(msg, &cfg.upstreams) {
            Some(a) => a,
            None if ruri_is_us && new_ruri.is_none() => return reply(404, ("Not Found", ""), to),
            None => return Action::Drop(DropReason::Unresolved),
        },
    };

    // The edits (§16.6): our Via with the stateless branch, RFC 3581
    // received/rport on the client's Via, Max-Forwards, Record-Route, and
    // the Route/R-URI changes decided above.
    write_branch(msg, &mut scratch.branch);
    if scratch.written_for != Some(cfg.advertise) {
        let Some(via_len) = fmt_into(
            &mut scratch.via,
            format_args!("SIP/2.0/UDP {};branch=", cfg.advertise),
        ) else {
            return Action::Drop(DropReason::WriteFailed);
        };
        scratch.via_prefix = via_len;
        scratch.rr_len =
            fmt_into(&mut scratch.rr, format_args!("<sip:{};lr>", cfg.advertise)).unwrap_or(0);
        scratch.written_for = Some(cfg.advertise);
    }
    scratch.via_len = scratch.via_prefix;
    let Some(slot) = scratch
        .via
        .get_mut(scratch.via_len..scratch.via_len + BRANCH_LEN)
    else {
        return Action::Drop(DropReason::WriteFailed);
    };
    slot.copy_from_slice(&scratch.branch);
    scratch.via_len += BRANCH_LEN;
    let strict_uri = strict_next
        .and_then(|i| msg.routes().nth(i))
        .and_then(Result::ok)
        .map(|r| r.uri);
    if let Some(uri) = new_ruri.or(strict_uri) {
        let Some(slot) = scratch.ruri.get_mut(..uri.len()) else {
            return Action::Drop(DropReason::WriteFailed);
        };
        slot.copy_from_slice(uri);
        scratch.ruri_len = uri.len();
    }
    if strict_next.is_some() {
        // The old Request-URI becomes the last Route value.
        let old = msg.request_uri_bytes().unwrap_or_default();
        let Some(len) = fmt_into(
            &mut scratch.old_ruri,
            format_args!("Route: <{}>\r\n", Ascii(old)),
        ) else {
            return Action::Drop(DropReason::WriteFailed);
        };
        scratch.old_ruri_len = len;
    }
    let nat = nat_edit(msg, &via, src, &mut scratch.nat);
    scratch.nat_len = nat.map_or(0, |n| n.len);

    let scratch: &'e Scratch = scratch;
    let ok = (|| {
        edits.insert_top_via(msg, &scratch.via[..scratch.via_len])?;
        if let Some(n) = nat {
            edits.replace(
                n.start,
                n.end,
                &[Piece::Bytes(&scratch.nat[..scratch.nat_len])],
            )?;
        }
        let mf = max_forwards.map_or(70, |n| u32::from(n) - 1);
        edits.set_max_forwards(msg, mf)?;
        if cfg.record_route && scratch.rr_len > 0 {
            edits.add_record_route(msg, &scratch.rr[..scratch.rr_len])?;
        }
        // Our Route and the one after it (a strict router's, or the last
        // one moving into the Request-URI) may share a line: one edit.
        let two = msg.values(HeaderName::Route).count() == 2;
        match (remove_top_route, strict_next, remove_last_route) {
            (true, Some(1), _) | (true, None, true) if two || strict_next == Some(1) => {
                edits.remove_first_two_values(msg, HeaderName::Route)?
            }
            (true, _, true) => {
                edits.remove_first_route(msg)?;
                edits.remove_last_route(msg)?;
            }
            (true, _, false) | (false, Some(_), _) => edits.remove_first_route(msg)?,
            (false, None, true) => edits.remove_last_route(msg)?,
            (false, None, false) => {}
        }
        if strict_next.is_some() {
            edits.set_request_uri(msg, &scratch.ruri[..scratch.ruri_len])?;
            edits.insert(
                msg.headers_end(),
                &[Piece::Bytes(&scratch.old_ruri[..scratch.old_ruri_len])],
            )?;
        }
        if remove_last_route {
            edits.set_request_uri(msg, &scratch.ruri[..scratch.ruri_len])?;
        }
        // §16.6 step 2 and RFC 3327 §5.1: the target becomes the
        // Request-URI and the binding's Path its route set.
        if let Some(b) = located {
            edits.set_request_uri(msg, b.contact)?;
            if !b.path.is_empty() {
                edits.insert(
                    msg.headers_end(),
                    &[
                        Piece::Bytes(b"Route: "),
                        Piece::Bytes(b.path),
                        Piece::Bytes(b"\r\n"),
                    ],
                )?;
            }
        }
        Ok::<(), crate::sip::WriteError>(())
    })();
    if ok.is_err() {
        return Action::Drop(DropReason::WriteFailed);
    }
    Action::Forward(dest)
}

/// Where a request for a binding goes: the first Path hop (RFC 3327
/// §5.1), else the address its REGISTER came from under `--nat`, else the
/// contact's host.
fn binding_target(b: &BindingView<'_>, nat: bool) -> Target {
    if let Some(first) = ListIter::new(b.path).next() {
        return match NameAddr::parse(first.text).map(|n| n.parsed_uri()) {
            Ok(Ok(Uri::Sip(u))) => target_of(&u.host, u.port, u.maddr()),
            _ => Target::Unresolved,
        };
    }
    if nat {
        return Target::Addr(b.peer());
    }
    match Uri::parse(b.contact) {
        Ok(Uri::Sip(u)) => target_of(&u.host, u.port, u.maddr()),
        _ => Target::Unresolved,
    }
}

/// A next hop before resolution.
enum Target {
    Addr(SocketAddr),
    Unresolved,
}

fn target_of(host: &Host<'_>, port: Option<u16>, maddr: Option<&[u8]>) -> Target {
    let port = port.unwrap_or(5060);
    if let Some(m) = maddr {
        if let Ok(Host::V4(a)) = Host::parse(m) {
            return Target::Addr(SocketAddr::new(IpAddr::V4(a), port));
        }
    }
    match host {
        Host::V4(a) => Target::Addr(SocketAddr::new(IpAddr::V4(*a), port)),
        Host::V6(a) => Target::Addr(SocketAddr::new(IpAddr::V6(*a), port)),
        Host::Name(_) => Target::Unresolved,
    }
}

/// The upstream for this dialog: a hash of Call-ID, so that every request
/// of a dialog reaches the same one.
fn pick_upstream(msg: &Message<'_>, upstreams: &[SocketAddr]) -> Option<SocketAddr> {
    if upstreams.is_empty() {
        return None;
    }
    let call_id = msg.header(HeaderName::CallId).unwrap_or_default();
    let h = Hash64::default().add(call_id).finish();
    upstreams
        .get((h % upstreams.len() as u64) as usize)
        .copied()
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
fn nat_edit(msg: &Message<'_>, via: &Via<'_>, src: SocketAddr, out: &mut [u8]) -> Option<NatEdit> {
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

/// Shows bytes that the parser has already checked to be tokens or
/// parameter values, without allocating.
struct Ascii<'a>(&'a [u8]);

impl std::fmt::Display for Ascii<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for &b in self.0 {
            std::fmt::Write::write_char(f, char::from(b))?;
        }
        Ok(())
    }
}

/// §16.7: a response must carry our Via on top; it goes to the next Via's
/// received/rport, or its sent-by.
fn route_response(msg: &Message<'_>, cfg: &ProxyConfig, edits: &mut Edits<'_>) -> Action<'static> {
    let mut vias = msg.vias();
    let Some(Ok(top)) = vias.next() else {
        return Action::Drop(DropReason::Malformed);
    };
    let ours = cfg.is_us(&top.host, top.port)
        && top.branch.is_some_and(|b| b.starts_with(OUR_BRANCH_PREFIX));
    if !ours {
        return Action::Drop(DropReason::NotOurVia);
    }
    let next = match vias.next() {
        Some(Ok(v)) => v,
        Some(Err(_)) => return Action::Drop(DropReason::Malformed),
        None => return Action::Drop(DropReason::NoNextVia),
    };
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
    Action::Forward(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    const US: &str = "192.0.2.10:5060";

    fn cfg() -> ProxyConfig {
        ProxyConfig::at(US.parse().unwrap())
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    /// Routes `data` from `src`; returns the action and, for a forward,
    /// the datagram that would be sent.
    fn run(cfg: &ProxyConfig, data: &[u8], src: &str) -> (Action<'static>, Vec<u8>) {
        static EMPTY: std::sync::OnceLock<Replica> = std::sync::OnceLock::new();
        run_at(cfg, EMPTY.get_or_init(Replica::default), 0, data, src)
    }

    /// As `run`, with a location replica and a time.
    fn run_at<'r>(
        cfg: &ProxyConfig,
        replica: &'r Replica,
        now: u64,
        data: &[u8],
        src: &str,
    ) -> (Action<'r>, Vec<u8>) {
        let msg = Message::parse(data).unwrap();
        let mut scratch = Scratch::default();
        let mut edits = Edits::new();
        let loc = Lookup { replica, now };
        let action = route(&msg, addr(src), cfg, loc, &mut scratch, &mut edits);
        let mut out = vec![0u8; data.len() + 512];
        let n = match action {
            Action::Forward(_) => edits.write(&msg, &mut out).unwrap(),
            _ => 0,
        };
        out.truncate(n);
        (action, out)
    }

    fn invite(extra: &str) -> Vec<u8> {
        format!(
            "INVITE sip:bob@192.0.2.4:5062 SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKabc\r\n\
{extra}To: <sip:bob@example.com>\r\n\
From: <sip:alice@example.com>;tag=1\r\n\
Call-ID: call-1@192.0.2.1\r\n\
CSeq: 1 INVITE\r\n\
Content-Length: 0\r\n\r\n"
        )
        .into_bytes()
    }

    #[test]
    fn invite_is_forwarded_with_our_via_and_one_hop_less() {
        let (action, out) = run(&cfg(), &invite("Max-Forwards: 70\r\n"), "192.0.2.1:5060");
        assert_eq!(action, Action::Forward(addr("192.0.2.4:5062")));
        let m = Message::parse(&out).unwrap();
        m.validate().unwrap();
        let vias: Vec<_> = m.vias().map(Result::unwrap).collect();
        assert_eq!(vias.len(), 2);
        assert_eq!(vias[0].host_raw, b"192.0.2.10");
        assert_eq!(vias[0].port, Some(5060));
        assert!(vias[0].branch.unwrap().starts_with(OUR_BRANCH_PREFIX));
        assert_eq!(vias[0].branch.unwrap().len(), BRANCH_LEN);
        assert_eq!(vias[1].branch, Some(&b"z9hG4bKabc"[..]));
        assert_eq!(vias[1].received, None, "source equals sent-by");
        assert_eq!(m.max_forwards(), Ok(Some(69)));
        assert_eq!(m.record_routes().count(), 0);
    }

    #[test]
    fn a_wildcard_bind_does_not_make_every_host_us() {
        // Listening on 0.0.0.0:5060 and advertising 192.0.2.10:5060: a
        // request for another host on port 5060 is forwarded, not taken as
        // addressed to us.
        let mut c = ProxyConfig::at(US.parse().unwrap());
        c.local.push(addr("0.0.0.0:5060"));
        let data = String::from_utf8(invite(""))
            .unwrap()
            .replace("sip:bob@192.0.2.4:5062", "sip:bob@192.0.2.4");
        let (action, _) = run(&c, data.as_bytes(), "192.0.2.1:5060");
        assert_eq!(action, Action::Forward(addr("192.0.2.4:5060")));
    }

    #[test]
    fn the_ack_of_our_own_answer_is_not_forwarded() {
        // A valid INVITE would be forwarded; its ACK carrying our local
        // To tag acknowledges an answer we gave, and ends here.
        let ack = |tag: &str| {
            String::from_utf8(invite(""))
                .unwrap()
                .replace("INVITE sip", "ACK sip")
                .replace("1 INVITE", "1 ACK")
                .replace(
                    "To: <sip:bob@example.com>",
                    &format!("To: <sip:bob@example.com>;tag={tag}"),
                )
        };
        let probe = ack("x");
        let ours = local_to_tag(&Message::parse(probe.as_bytes()).unwrap());
        let ours = ack(std::str::from_utf8(&ours).unwrap());
        let (action, _) = run(&cfg(), ours.as_bytes(), "192.0.2.1:5060");
        assert_eq!(action, Action::Drop(DropReason::AckNotAnswered));
        let (action, _) = run(&cfg(), ack("callee-tag").as_bytes(), "192.0.2.1:5060");
        assert!(matches!(action, Action::Forward(_)), "{action:?}");
    }

    #[test]
    fn an_ack_is_never_answered() {
        let ack = String::from_utf8(invite("Max-Forwards: 0\r\n"))
            .unwrap()
            .replace("INVITE sip", "ACK sip")
            .replace("1 INVITE", "1 ACK");
        let (action, _) = run(&cfg(), ack.as_bytes(), "192.0.2.1:5060");
        assert_eq!(action, Action::Drop(DropReason::AckNotAnswered));
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i, "{}", r.name());
        }
    }

    #[test]
    fn missing_max_forwards_becomes_70() {
        let (_, out) = run(&cfg(), &invite(""), "192.0.2.1:5060");
        assert_eq!(Message::parse(&out).unwrap().max_forwards(), Ok(Some(70)));
    }

    #[test]
    fn max_forwards_zero_is_483_to_the_via_port() {
        let (action, _) = run(&cfg(), &invite("Max-Forwards: 0\r\n"), "192.0.2.1:7000");
        assert_eq!(
            action,
            Action::Reply {
                code: 483,
                reason: ("Too Many Hops", ""),
                to: addr("192.0.2.1:5060")
            }
        );
    }

    #[test]
    fn a_request_that_comes_back_is_482_a_spiral_is_not() {
        let (_, out) = run(&cfg(), &invite("Max-Forwards: 70\r\n"), "192.0.2.1:5060");
        let (action, _) = run(&cfg(), &out, "192.0.2.4:5062");
        assert!(
            matches!(action, Action::Reply { code: 482, .. }),
            "{action:?}"
        );
        let spiral = String::from_utf8(out).unwrap().replace(
            "INVITE sip:bob@192.0.2.4:5062",
            "INVITE sip:bob@192.0.2.5:5062",
        );
        let (action, _) = run(&cfg(), spiral.as_bytes(), "192.0.2.4:5062");
        assert_eq!(action, Action::Forward(addr("192.0.2.5:5062")));
    }

    #[test]
    fn retransmission_and_cancel_get_the_same_branch() {
        let (_, a) = run(&cfg(), &invite(""), "192.0.2.1:5060");
        let (_, b) = run(&cfg(), &invite(""), "192.0.2.1:5060");
        let cancel = String::from_utf8(invite(""))
            .unwrap()
            .replace("INVITE sip", "CANCEL sip")
            .replace("1 INVITE", "1 CANCEL");
        let (action, c) = run(&cfg(), cancel.as_bytes(), "192.0.2.1:5060");
        assert_eq!(action, Action::Forward(addr("192.0.2.4:5062")));
        let top = |d: &[u8]| {
            Message::parse(d)
                .unwrap()
                .via()
                .unwrap()
                .branch
                .unwrap()
                .to_vec()
        };
        assert_eq!(top(&a), top(&b));
        assert_eq!(top(&a), top(&c));
    }

    #[test]
    fn rport_and_received_are_filled_in() {
        let data = String::from_utf8(invite(""))
            .unwrap()
            .replace("z9hG4bKabc", "z9hG4bKabc;rport");
        let (_, out) = run(&cfg(), data.as_bytes(), "203.0.113.5:40000");
        let m = Message::parse(&out).unwrap();
        let client = m.vias().nth(1).unwrap().unwrap();
        assert_eq!(client.rport, Rport::Value(40000));
        assert_eq!(client.received, Some(&b"203.0.113.5"[..]));

        let (_, out) = run(&cfg(), &invite(""), "203.0.113.5:5060");
        let m = Message::parse(&out).unwrap();
        let client = m.vias().nth(1).unwrap().unwrap();
        assert_eq!(client.rport, Rport::Absent);
        assert_eq!(client.received, Some(&b"203.0.113.5"[..]));

        let data = String::from_utf8(invite("Max-Forwards: 0\r\n"))
            .unwrap()
            .replace("z9hG4bKabc", "z9hG4bKabc;rport");
        let (action, _) = run(&cfg(), data.as_bytes(), "203.0.113.5:40000");
        assert!(matches!(action, Action::Reply { to, .. } if to == addr("203.0.113.5:40000")));
    }

    /// The client's other Via parameters go on byte for byte (only
    /// received, §18.2.1, and rport, RFC 3581 §4, change), over IPv4 and
    /// IPv6 sources,
    /// non-ASCII bytes of a quoted value included (the `core::fmt` writer
    /// this replaced sent each such byte as a two-byte UTF-8 char).
    #[test]
    fn the_client_via_keeps_its_other_parameters_byte_for_byte() {
        let mut data = invite("");
        let at = data.windows(10).position(|w| w == b"z9hG4bKabc").unwrap() + 10;
        data.splice(at..at, b";x=\"caf\xe9\";rport;lr".iter().copied());
        for (src, received) in [
            ("203.0.113.5:40000", &b"203.0.113.5"[..]),
            ("[2001:db8::7]:40000", &b"2001:db8::7"[..]),
        ] {
            let (_, out) = run(&cfg(), &data, src);
            let m = Message::parse(&out).unwrap();
            let client = m.vias().nth(1).unwrap().unwrap();
            let mut want = b";branch=z9hG4bKabc;x=\"caf\xe9\";lr;received=".to_vec();
            want.extend_from_slice(received);
            want.extend_from_slice(b";rport=40000");
            assert_eq!(client.params, &want[..], "{src}");
        }
    }

    #[test]
    fn a_client_cannot_choose_where_responses_go() {
        let data = String::from_utf8(invite("")).unwrap().replace(
            "z9hG4bKabc",
            "z9hG4bKabc;received=198.51.100.66;rport=9;x=1",
        );
        let (_, out) = run(&cfg(), data.as_bytes(), "203.0.113.5:40000");
        let m = Message::parse(&out).unwrap();
        let client = m.vias().nth(1).unwrap().unwrap();
        assert_eq!(client.received, Some(&b"203.0.113.5"[..]));
        assert_eq!(client.rport, Rport::Value(40000));
        assert_eq!(client.branch, Some(&b"z9hG4bKabc"[..]));
        assert!(client.params().any(|p| p.name == b"x"), "other params kept");
        assert_eq!(client.params().filter(|p| p.name == b"received").count(), 1);
    }

    #[test]
    fn a_broken_route_is_400() {
        let (action, _) = run(
            &cfg(),
            &invite("Route: <sip:192.0.2.20;lr\r\n"),
            "192.0.2.1:5060",
        );
        assert!(
            matches!(
                action,
                Action::Reply {
                    code: 400,
                    reason: ("Bad ", "Route"),
                    ..
                }
            ),
            "{action:?}"
        );
    }

    #[test]
    fn record_route_goes_on_top() {
        let mut c = cfg();
        c.record_route = true;
        let (_, out) = run(
            &c,
            &invite("Record-Route: <sip:192.0.2.99;lr>\r\n"),
            "192.0.2.1:5060",
        );
        let m = Message::parse(&out).unwrap();
        let rr: Vec<_> = m.record_routes().map(|r| r.unwrap().uri).collect();
        assert_eq!(
            rr,
            vec![&b"sip:192.0.2.10:5060;lr"[..], b"sip:192.0.2.99;lr"]
        );
    }

    #[test]
    fn our_loose_route_is_removed_and_the_next_one_followed() {
        let (action, out) = run(
            &cfg(),
            &invite("Route: <sip:192.0.2.10:5060;lr>, <sip:192.0.2.20;lr>\r\n"),
            "192.0.2.1:5060",
        );
        assert_eq!(action, Action::Forward(addr("192.0.2.20:5060")));
        let m = Message::parse(&out).unwrap();
        let routes: Vec<_> = m.routes().map(|r| r.unwrap().uri).collect();
        assert_eq!(routes, vec![&b"sip:192.0.2.20;lr"[..]]);
        assert_eq!(m.request_uri_bytes(), Some(&b"sip:bob@192.0.2.4:5062"[..]));
    }

    #[test]
    fn strict_router_request_uri_is_restored_from_the_last_route() {
        let data = String::from_utf8(invite("Route: <sip:192.0.2.30:5080>\r\n"))
            .unwrap()
            .replace(
                "INVITE sip:bob@192.0.2.4:5062",
                "INVITE sip:192.0.2.10:5060",
            );
        let (action, out) = run(&cfg(), data.as_bytes(), "192.0.2.1:5060");
        assert_eq!(action, Action::Forward(addr("192.0.2.30:5080")));
        let m = Message::parse(&out).unwrap();
        assert_eq!(m.request_uri_bytes(), Some(&b"sip:192.0.2.30:5080"[..]));
        assert_eq!(m.routes().count(), 0);
    }

    #[test]
    fn a_strict_router_next_hop_gets_its_uri_as_request_uri() {
        // §16.6 step 6: our Route, then a strict router on the same line.
        let (action, out) = run(
            &cfg(),
            &invite(
                "Route: <sip:192.0.2.10:5060;lr>, <sip:192.0.2.40:5070>, <sip:192.0.2.41;lr>\r\n",
            ),
            "192.0.2.1:5060",
        );
        assert_eq!(action, Action::Forward(addr("192.0.2.40:5070")));
        let m = Message::parse(&out).unwrap();
        assert_eq!(m.request_uri_bytes(), Some(&b"sip:192.0.2.40:5070"[..]));
        let routes: Vec<_> = m.routes().map(|r| r.unwrap().uri).collect();
        assert_eq!(
            routes,
            vec![&b"sip:192.0.2.41;lr"[..], b"sip:bob@192.0.2.4:5062"]
        );
        // The same with the strict router alone on the next line.
        let (_, out) = run(
            &cfg(),
            &invite("Route: <sip:192.0.2.10:5060;lr>\r\nRoute: <sip:192.0.2.40:5070>\r\n"),
            "192.0.2.1:5060",
        );
        let m = Message::parse(&out).unwrap();
        assert_eq!(m.request_uri_bytes(), Some(&b"sip:192.0.2.40:5070"[..]));
        let routes: Vec<_> = m.routes().map(|r| r.unwrap().uri).collect();
        assert_eq!(routes, vec![&b"sip:bob@192.0.2.4:5062"[..]]);
        // A strict router first, with no Route of ours before it.
        let (action, out) = run(
            &cfg(),
            &invite("Route: <sip:192.0.2.40:5070>\r\n"),
            "192.0.2.1:5060",
        );
        assert_eq!(action, Action::Forward(addr("192.0.2.40:5070")));
        let m = Message::parse(&out).unwrap();
        m.validate().unwrap();
        assert_eq!(m.request_uri_bytes(), Some(&b"sip:192.0.2.40:5070"[..]));
        let routes: Vec<_> = m.routes().map(|r| r.unwrap().uri).collect();
        assert_eq!(routes, vec![&b"sip:bob@192.0.2.4:5062"[..]]);
        // Our Route and a loose next hop on one line: both are fine too.
        let (_, out) = run(
            &cfg(),
            &invite("Route: <sip:192.0.2.10:5060;lr>, <sip:192.0.2.20;lr>\r\n"),
            "192.0.2.1:5060",
        );
        let routes: Vec<_> = Message::parse(&out)
            .unwrap()
            .routes()
            .map(|r| r.unwrap().uri.to_vec())
            .collect();
        assert_eq!(routes, vec![b"sip:192.0.2.20;lr".to_vec()]);
    }

    #[test]
    fn strict_previous_hop_with_our_route_on_the_same_line() {
        let data = String::from_utf8(invite(
            "Route: <sip:192.0.2.10:5060;lr>, <sip:192.0.2.30:5080>\r\n",
        ))
        .unwrap()
        .replace(
            "INVITE sip:bob@192.0.2.4:5062",
            "INVITE sip:192.0.2.10:5060",
        );
        let (action, out) = run(&cfg(), data.as_bytes(), "192.0.2.1:5060");
        assert_eq!(action, Action::Forward(addr("192.0.2.30:5080")));
        let m = Message::parse(&out).unwrap();
        assert_eq!(m.request_uri_bytes(), Some(&b"sip:192.0.2.30:5080"[..]));
        assert_eq!(m.routes().count(), 0);
    }

    #[test]
    fn host_names_go_upstream_by_call_id_or_are_dropped() {
        let data = String::from_utf8(invite(""))
            .unwrap()
            .replace("sip:bob@192.0.2.4:5062", "sip:bob@example.com");
        let (action, _) = run(&cfg(), data.as_bytes(), "192.0.2.1:5060");
        assert_eq!(action, Action::Drop(DropReason::Unresolved));
        let mut c = cfg();
        c.upstreams = vec![addr("198.51.100.1:5060"), addr("198.51.100.2:5060")];
        let (a1, _) = run(&c, data.as_bytes(), "192.0.2.1:5060");
        let (a2, _) = run(&c, data.as_bytes(), "192.0.2.1:5060");
        assert_eq!(a1, a2);
        assert!(matches!(a1, Action::Forward(a) if c.upstreams.contains(&a)));
        let mut seen = std::collections::HashSet::new();
        for i in 0..32 {
            let d = data.replace("call-1@", &format!("call-{i}@"));
            if let (Action::Forward(a), _) = run(&c, d.as_bytes(), "192.0.2.1:5060") {
                seen.insert(a);
            }
        }
        assert_eq!(seen.len(), 2, "Call-IDs spread over both upstreams");
    }

    #[test]
    fn options_to_us_is_answered() {
        let data = String::from_utf8(invite(""))
            .unwrap()
            .replace("INVITE sip:bob@192.0.2.4:5062", "OPTIONS sip:192.0.2.10")
            .replace("1 INVITE", "1 OPTIONS");
        let (action, _) = run(&cfg(), data.as_bytes(), "192.0.2.1:5060");
        assert_eq!(
            action,
            Action::Reply {
                code: 200,
                reason: ("OK", ""),
                to: addr("192.0.2.1:5060")
            }
        );
    }

    #[test]
    fn options_to_us_is_answered_even_at_max_forwards_zero() {
        // §16.3 step 3 lets a proxy answer OPTIONS addressed to itself.
        let data = String::from_utf8(invite("Max-Forwards: 0\r\n"))
            .unwrap()
            .replace("INVITE sip:bob@192.0.2.4:5062", "OPTIONS sip:192.0.2.10")
            .replace("1 INVITE", "1 OPTIONS");
        let (action, _) = run(&cfg(), data.as_bytes(), "192.0.2.1:5060");
        assert!(
            matches!(action, Action::Reply { code: 200, .. }),
            "{action:?}"
        );
    }

    #[test]
    fn a_user_at_us_with_nowhere_to_go_is_404_or_goes_upstream() {
        let data = String::from_utf8(invite(""))
            .unwrap()
            .replace("sip:bob@192.0.2.4:5062", "sip:bob@192.0.2.10");
        let (action, _) = run(&cfg(), data.as_bytes(), "192.0.2.1:5060");
        assert!(
            matches!(action, Action::Reply { code: 404, .. }),
            "{action:?}"
        );
        let mut c = cfg();
        c.upstreams = vec![addr("198.51.100.1:5060")];
        let (action, _) = run(&c, data.as_bytes(), "192.0.2.1:5060");
        assert_eq!(action, Action::Forward(addr("198.51.100.1:5060")));
    }

    #[test]
    fn invalid_request_gets_400_with_the_reason() {
        let data = String::from_utf8(invite(""))
            .unwrap()
            .replace("Call-ID: call-1@192.0.2.1\r\n", "");
        let (action, _) = run(&cfg(), data.as_bytes(), "192.0.2.1:5060");
        assert_eq!(
            action,
            Action::Reply {
                code: 400,
                reason: ("Missing ", "Call-ID"),
                to: addr("192.0.2.1:5060")
            }
        );
        let no_via = String::from_utf8(invite(""))
            .unwrap()
            .replace("Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKabc\r\n", "");
        let (action, _) = run(&cfg(), no_via.as_bytes(), "192.0.2.1:5060");
        assert_eq!(action, Action::Drop(DropReason::Malformed));
    }

    fn response(top: &str, next: &str) -> Vec<u8> {
        format!(
            "SIP/2.0 180 Ringing\r\n{top}{next}To: <sip:bob@example.com>;tag=b\r\n\
From: <sip:alice@example.com>;tag=1\r\nCall-ID: call-1@192.0.2.1\r\nCSeq: 1 INVITE\r\n\r\n"
        )
        .into_bytes()
    }

    #[test]
    fn responses_follow_the_via_path() {
        let (_, fwd) = run(&cfg(), &invite(""), "203.0.113.5:40000");
        let ours = Message::parse(&fwd).unwrap();
        let top = ours.via().unwrap();
        let top_line = format!(
            "Via: SIP/2.0/UDP 192.0.2.10:5060;branch={}\r\n",
            String::from_utf8_lossy(top.branch.unwrap())
        );
        let next = "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKabc;received=203.0.113.5\r\n";
        let (action, out) = run(&cfg(), &response(&top_line, next), "192.0.2.4:5062");
        assert_eq!(action, Action::Forward(addr("203.0.113.5:5060")));
        let m = Message::parse(&out).unwrap();
        assert_eq!(m.vias().count(), 1);
        assert_eq!(m.via().unwrap().branch, Some(&b"z9hG4bKabc"[..]));

        let next =
            "Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKabc;rport=40000;received=203.0.113.5\r\n";
        let (action, _) = run(&cfg(), &response(&top_line, next), "192.0.2.4:5062");
        assert_eq!(action, Action::Forward(addr("203.0.113.5:40000")));

        let (action, _) = run(&cfg(), &response(&top_line, ""), "192.0.2.4:5062");
        assert_eq!(action, Action::Drop(DropReason::NoNextVia));

        let next = "Via: SIP/2.0/UDP client.example.com;branch=z9hG4bKabc\r\n";
        let (action, _) = run(&cfg(), &response(&top_line, next), "192.0.2.4:5062");
        assert_eq!(action, Action::Drop(DropReason::Unresolved));
    }

    #[test]
    fn responses_not_for_us_are_dropped() {
        let next = "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKabc\r\n";
        let foreign =
            "Via: SIP/2.0/UDP 192.0.2.77:5060;branch=z9hG4bKsS0000000000000000aaaaaaaa\r\n";
        let (action, _) = run(&cfg(), &response(foreign, next), "192.0.2.4:5062");
        assert_eq!(action, Action::Drop(DropReason::NotOurVia));
        let not_our_branch = "Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKforeign\r\n";
        let (action, _) = run(&cfg(), &response(not_our_branch, next), "192.0.2.4:5062");
        assert_eq!(action, Action::Drop(DropReason::NotOurVia));
    }
}
