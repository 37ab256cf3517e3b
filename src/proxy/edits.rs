//! §16.6 the edits of a forwarded request: our Via with the stateless
//! branch (§16.11), RFC 3581 `received`/`rport` on the client's Via,
//! Max-Forwards, Record-Route, and the Route and Request-URI changes the
//! route set and the location service decided. The text they insert is
//! written into a per-shard [`Scratch`], so forwarding allocates nothing.

use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};

use super::branch::{name_shard, write_branch, BRANCH_LEN};
use super::conn_param::CID_PARAM;
use super::nat::nat_edit;
use super::route_set::RouteSet;
use super::target::NextHop;
use super::ProxyConfig;
use crate::sip::{write_u32, Edits, HeaderName, Message, Method, Piece, Via, WriteError};
use crate::transport::{Source, Transport};

/// Per-shard room for the text the edits insert (our Via, Record-Route,
/// received/rport), so that routing allocates nothing.
#[derive(Clone, Debug)]
pub struct Scratch {
    via: [u8; 192],
    via_len: usize,
    rr: [u8; 96],
    rr_len: usize,
    /// Both Record-Route values, when the two sides differ (RFC 5658).
    rr_both: [u8; 320],
    rr_both_len: usize,
    nat: [u8; 512],
    nat_len: usize,
    ruri: [u8; 512],
    ruri_len: usize,
    old_ruri: [u8; 300],
    old_ruri_len: usize,
    branch: [u8; BRANCH_LEN],
    /// The transport and address `via[..via_prefix]` and `rr[..rr_len]`
    /// were written for: they change only with the arrival address (and
    /// only under a wildcard listen address), so they are formatted once,
    /// not per request (callgrind, perf/RESULTS.md, "Profiling the hot path").
    written_for: Option<(Transport, SocketAddr)>,
    via_prefix: usize,
    /// Under `--mode stateful`, the shard whose branches these are: named
    /// in each branch ([`branch::shard_of`](super::branch::shard_of)), so
    /// that a response reaching another shard is handed to this one.
    shard: Option<u8>,
}

impl Scratch {
    /// The scratch of shard `shard` of a stateful proxy: its branches
    /// name it.
    pub fn for_shard(shard: u8) -> Scratch {
        Scratch {
            shard: Some(shard),
            ..Scratch::default()
        }
    }

    /// The branch of the last request [`forward`] wrote.
    pub fn branch(&self) -> &[u8] {
        &self.branch
    }
}

impl Default for Scratch {
    fn default() -> Self {
        Scratch {
            via: [0; 192],
            via_len: 0,
            rr: [0; 96],
            rr_len: 0,
            rr_both: [0; 320],
            rr_both_len: 0,
            nat: [0; 512],
            nat_len: 0,
            ruri: [0; 512],
            ruri_len: 0,
            old_ruri: [0; 300],
            old_ruri_len: 0,
            branch: [0; BRANCH_LEN],
            written_for: None,
            via_prefix: 0,
            shard: None,
        }
    }
}

/// Appends to a fixed buffer without `core::fmt`, which cost more than
/// the rest of the NAT edit (callgrind, perf/RESULTS.md, "Profiling the
/// hot path").
pub(super) struct Out<'b> {
    buf: &'b mut [u8],
    /// Bytes written so far.
    pub(super) len: usize,
}

impl<'b> Out<'b> {
    pub(super) fn new(buf: &'b mut [u8]) -> Self {
        Out { buf, len: 0 }
    }

    /// Appends `b`; None when it does not fit.
    pub(super) fn bytes(&mut self, b: &[u8]) -> Option<()> {
        self.buf
            .get_mut(self.len..self.len + b.len())?
            .copy_from_slice(b);
        self.len += b.len();
        Some(())
    }

    pub(super) fn u32(&mut self, n: u32) -> Option<()> {
        self.bytes(write_u32(n, &mut [0u8; 10]))
    }

    /// `;cid=VALUE` when there is a connection to name, else nothing.
    fn flow_token(&mut self, cid: Option<&[u8]>) -> Option<()> {
        if let Some(cid) = cid {
            self.bytes(b";")?;
            self.bytes(CID_PARAM)?;
            self.bytes(b"=")?;
            self.bytes(cid)?;
        }
        Some(())
    }

    /// An address as `Display` writes it: dotted quad, or the RFC 5952
    /// text of an IPv6 address (through `fmt`: rare, and its rules are not
    /// worth repeating).
    pub(super) fn ip(&mut self, ip: IpAddr) -> Option<()> {
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

/// `;transport=tcp` (or tls, ws, wss) for a URI reached over a stream;
/// nothing for UDP, the default (§19.1.1).
struct TransportParam(Transport);

impl std::fmt::Display for TransportParam {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Transport::Udp => Ok(()),
            t => write!(f, ";transport={}", t.via_token().to_ascii_lowercase()),
        }
    }
}

/// `<sip:there;transport=..;lr;cid=..>, <sip:here;transport=..;lr;cid=..>`:
/// the Record-Route value of the next hop's side (`out_leg`, our cached
/// `<sip:..;lr>`, naming `out_cid`'s connection when the request leaves on
/// a registered flow), then ours on the client's side (naming `cid`'s
/// when it came on a connection).
fn write_rr_both(
    buf: &mut [u8],
    out_leg: &[u8],
    out_cid: Option<&[u8]>,
    here: SocketAddr,
    transport: Transport,
    cid: Option<&[u8]>,
) -> Option<usize> {
    let mut w = Out::new(buf);
    // The cached value ends with `>`: the flow token goes before it.
    w.bytes(out_leg.strip_suffix(b">")?)?;
    w.flow_token(out_cid)?;
    w.bytes(b">, ")?;
    let mut n = w.len;
    n += fmt_into(
        buf.get_mut(n..)?,
        format_args!("<sip:{here}{};lr", TransportParam(transport)),
    )?;
    let mut w = Out::new(buf.get_mut(n..)?);
    w.flow_token(cid)?;
    w.bytes(b">")?;
    n += w.len;
    Some(n)
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

/// True for a request that can create a dialog, the only kind that gets
/// our Record-Route (§16.6 step 4; §12.1.1: the route set is taken from
/// the response that creates the dialog):
/// - one with a To tag is already in a dialog, whose route set it cannot
///   change (§12.2); an ACK or BYE gets nothing from a Record-Route. §16.6
///   step 4 would have one in there too, but only for a UA that rebuilds a
///   failed dialog, and says the proxy stays on the path without it;
/// - REGISTER (§10.2: Record-Route "has no meaning in REGISTER requests
///   or responses"), OPTIONS (answered without a dialog, §11), CANCEL and
///   ACK (§9, §17) never create one;
/// - an unknown method may have dialog semantics, so it keeps it (§16.6
///   step 4).
fn may_create_dialog(msg: &Message<'_>) -> bool {
    let in_dialog = msg.to().ok().and_then(|t| t.tag()).is_some();
    let never = matches!(
        msg.method(),
        Some(Method::Register | Method::Options | Method::Cancel | Method::Ack)
    );
    !in_dialog && !never
}

/// Writes the edits that forward `msg` (received from `src`, its top Via
/// `via`) along `set` to `hop`: its binding when the location service
/// chose one, leaving over its transport (the one our Via names), on its
/// flow when it has one. Fails when a text does not fit its room or the
/// edits their list: the request is then dropped, never sent half-edited.
#[allow(clippy::too_many_arguments)]
pub fn forward<'e>(
    msg: &Message<'_>,
    via: &Via<'_>,
    src: &Source,
    cfg: &ProxyConfig,
    set: &RouteSet<'_>,
    max_forwards: Option<u8>,
    hop: &NextHop<'e>,
    scratch: &'e mut Scratch,
    edits: &mut Edits<'e>,
) -> Result<(), WriteError> {
    let (leg, located) = (hop.dest.transport, hop.located);
    let strict_next = set.strict_next;
    write_branch(msg, &mut scratch.branch);
    if let Some(shard) = scratch.shard {
        name_shard(&mut scratch.branch, shard);
    }
    // The transport our Via names is the one the request leaves on, and
    // the address the one it arrived at (or the advertised one); over UDP
    // to the other IP family, ours of that family, so that the responses
    // come back over it.
    let arrival = cfg.advertised(src.local);
    let ours = match (leg, hop.flow) {
        (Transport::Udp, None) => (
            leg,
            cfg.leaving_for(src.local, hop.dest.addr).unwrap_or(arrival),
        ),
        _ => (leg, arrival),
    };
    if scratch.written_for != Some(ours) {
        let (transport, addr) = ours;
        let via_len = fmt_into(
            &mut scratch.via,
            format_args!("SIP/2.0/{transport} {addr};branch="),
        )
        .ok_or(WriteError::BufferTooSmall)?;
        scratch.via_prefix = via_len;
        scratch.rr_len = fmt_into(
            &mut scratch.rr,
            format_args!("<sip:{addr}{};lr>", TransportParam(transport)),
        )
        .unwrap_or(0);
        scratch.written_for = Some(ours);
    }
    scratch.via_len = scratch.via_prefix;
    let slot = scratch
        .via
        .get_mut(scratch.via_len..scratch.via_len + BRANCH_LEN)
        .ok_or(WriteError::BufferTooSmall)?;
    slot.copy_from_slice(&scratch.branch);
    scratch.via_len += BRANCH_LEN;
    if let Some(conn) = src.conn {
        // Its responses go back on the connection it came on (§18.2.2).
        let cid = cfg.conn_key.write(conn);
        let mut w = Out::new(
            scratch
                .via
                .get_mut(scratch.via_len..)
                .ok_or(WriteError::BufferTooSmall)?,
        );
        w.flow_token(Some(&cid)).ok_or(WriteError::BufferTooSmall)?;
        scratch.via_len += w.len;
    }
    let strict_uri = strict_next
        .and_then(|i| msg.routes().nth(i))
        .and_then(Result::ok)
        .map(|r| r.uri);
    if let Some(uri) = set.new_ruri.or(strict_uri) {
        let slot = scratch
            .ruri
            .get_mut(..uri.len())
            .ok_or(WriteError::BufferTooSmall)?;
        slot.copy_from_slice(uri);
        scratch.ruri_len = uri.len();
    }
    if strict_next.is_some() {
        // The old Request-URI becomes the last Route value.
        let old = msg.request_uri_bytes().unwrap_or_default();
        scratch.old_ruri_len = fmt_into(
            &mut scratch.old_ruri,
            format_args!("Route: <{}>\r\n", Ascii(old)),
        )
        .ok_or(WriteError::BufferTooSmall)?;
    }
    // RFC 5658: when the request came on a connection, or leaves on
    // another transport than it came on, two Record-Route values, one per
    // side: the top one for the next hop's side (the leg it leaves on),
    // the other for the client's, over its transport. Each side reached
    // over a connection that must be kept (the client's, or the flow of
    // the binding it goes to) is named by a flow token (RFC 5626 §5.3),
    // so that in-dialog requests from the other side go over it: a UA on
    // a flow is often behind a NAT, where its Contact reaches nothing.
    scratch.rr_both_len = 0;
    // The two sides also differ when the request crosses IP families.
    let crosses =
        src.conn.is_some() || src.transport != leg || ours.1.is_ipv4() != arrival.is_ipv4();
    if cfg.record_route && crosses && may_create_dialog(msg) {
        let here = SocketAddr::new(arrival.ip(), src.local.port());
        let cid = src.conn.map(|c| cfg.conn_key.write(c));
        let out_cid = hop.flow.map(|c| cfg.conn_key.write(c));
        scratch.rr_both_len = write_rr_both(
            &mut scratch.rr_both,
            &scratch.rr[..scratch.rr_len],
            out_cid.as_ref().map(|c| &c[..]),
            here,
            src.transport,
            cid.as_ref().map(|c| &c[..]),
        )
        .ok_or(WriteError::BufferTooSmall)?;
    }
    let nat = nat_edit(msg, via, src.peer, &mut scratch.nat);
    scratch.nat_len = nat.map_or(0, |n| n.len);

    let scratch: &'e Scratch = scratch;
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
    if cfg.record_route && scratch.rr_len > 0 && may_create_dialog(msg) {
        if scratch.rr_both_len > 0 {
            edits.add_record_route(msg, &scratch.rr_both[..scratch.rr_both_len])?;
        } else {
            edits.add_record_route(msg, &scratch.rr[..scratch.rr_len])?;
        }
    }
    // Our Routes and the one right after them (a strict router's, or the
    // last one moving into the Request-URI) may share lines: they go as
    // one prefix of the route set.
    let remove_last_route = set.remove_last_route();
    let last_follows = remove_last_route && set.ours == set.routes_left;
    let with_next = usize::from(strict_next.is_some() || last_follows);
    edits.remove_first_values(msg, HeaderName::Route, set.ours + with_next)?;
    if remove_last_route && !last_follows {
        edits.remove_last_route(msg)?;
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
    // §16.6 step 2 and RFC 3327 §5.1: the target becomes the Request-URI
    // and the binding's Path its route set.
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
    Ok(())
}
