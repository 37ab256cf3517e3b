//! The routing rules end to end through [`super::route`]: a message in,
//! the action and the bytes that would be sent out.
//!
//! One named test per case: `route_case!` rows (a config tweak, the
//! message, its source, the expected action and checks on the forwarded
//! message); the few cases that compare several routings are functions
//! over the same helpers.

use std::net::SocketAddr;

use super::branch::{BRANCH_LEN, OUR_BRANCH_PREFIX};
use super::*;
use crate::sip::{Rport, Via};
use crate::transport::{ConnId, Dest, Source, Transport, TransportAddr};

const US: &str = "192.0.2.10:5060";
/// The caller, at the address its Via names.
const CALLER: &str = "192.0.2.1:5060";
/// The Request-URI of [`invite`], an IP literal that is not us.
const BOB: &str = "sip:bob@192.0.2.4:5062";
/// Where responses come from: the callee at [`BOB`].
const CALLEE: &str = "192.0.2.4:5062";

fn cfg() -> ProxyConfig {
    ProxyConfig::at(US.parse().unwrap())
}

/// [`cfg`] with `tweak` applied.
fn config(tweak: impl FnOnce(&mut ProxyConfig)) -> ProxyConfig {
    let mut c = cfg();
    tweak(&mut c);
    c
}

fn record_route(c: &mut ProxyConfig) {
    c.record_route = true;
}

/// Us on a second address too (RFC 5658 double Record-Route).
fn two_addresses(c: &mut ProxyConfig) {
    c.local.push(addr("198.51.100.10:5060"));
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// An upstream over UDP.
fn udp(s: &str) -> TransportAddr {
    TransportAddr::udp(addr(s))
}

/// A datagram to `s`, from the address the message came to.
fn to(s: &str) -> Dest {
    Dest::Udp {
        peer: addr(s),
        from: Some(addr(US).ip()),
    }
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
    route_from(cfg, replica, now, data, &Source::udp(addr(src), addr(US)))
}

/// Routes `data` as received from `source`; the action and, for a
/// forward, the bytes that would be sent.
fn route_from<'r>(
    cfg: &ProxyConfig,
    replica: &'r Replica,
    now: u64,
    data: &[u8],
    source: &Source,
) -> (Action<'r>, Vec<u8>) {
    let msg = Message::parse(data).unwrap();
    let mut scratch = Scratch::default();
    let mut edits = Edits::new();
    let loc = Lookup::best(replica, now);
    let action = route(&msg, source, cfg, loc, &mut scratch, &mut edits);
    let mut out = vec![0u8; data.len() + 512];
    let n = match action {
        Action::Forward(_) => edits.write(&msg, &mut out).unwrap(),
        _ => 0,
    };
    out.truncate(n);
    (action, out)
}

/// The datagram that forwarding `data` from `src` sends (default config).
fn forwarded(data: &[u8], src: &str) -> Vec<u8> {
    let (action, out) = run(&cfg(), data, src);
    assert!(matches!(action, Action::Forward(_)), "{action:?}");
    out
}

/// Runs `check` on the forwarded message `out`.
fn check_out(out: &[u8], check: impl FnOnce(&Message<'_>)) {
    check(&Message::parse(out).unwrap());
}

/// A request from [`CALLER`], with `extra` header lines after its Via.
fn request(method: &str, uri: &str, extra: &str) -> Vec<u8> {
    format!(
        "{method} {uri} SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKabc\r\n\
{extra}To: <sip:bob@example.com>\r\n\
From: <sip:alice@example.com>;tag=1\r\n\
Call-ID: call-1@192.0.2.1\r\n\
CSeq: 1 {method}\r\n\
Content-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

fn invite(extra: &str) -> Vec<u8> {
    request("INVITE", BOB, extra)
}

/// `data` with every `from` replaced by `to`, byte for byte.
fn sub(data: Vec<u8>, from: impl AsRef<[u8]>, to: impl AsRef<[u8]>) -> Vec<u8> {
    let (from, to) = (from.as_ref(), to.as_ref());
    let mut out = Vec::with_capacity(data.len());
    let mut rest = &data[..];
    while let Some(at) = rest.windows(from.len()).position(|w| w == from) {
        out.extend_from_slice(&rest[..at]);
        out.extend_from_slice(to);
        rest = &rest[at + from.len()..];
    }
    out.extend_from_slice(rest);
    out
}

/// `data` with a To tag: a request inside a dialog.
fn tagged(data: Vec<u8>, tag: &str) -> Vec<u8> {
    let to = "To: <sip:bob@example.com>";
    sub(data, to, format!("{to};tag={tag}"))
}

/// An in-dialog request (To tag `b1`) to [`BOB`].
fn in_dialog(method: &str) -> Vec<u8> {
    tagged(request(method, BOB, ""), "b1")
}

/// The ACK of an answer we gave: its To tag is our local one.
fn ack_of_our_answer() -> Vec<u8> {
    let probe = tagged(request("ACK", BOB, ""), "x");
    let ours = local_to_tag(&Message::parse(&probe).unwrap());
    tagged(request("ACK", BOB, ""), std::str::from_utf8(&ours).unwrap())
}

/// [`invite`] with `params` after the client's branch.
fn with_via_params(extra: &str, params: &[u8]) -> Vec<u8> {
    let mut branch = b"z9hG4bKabc".to_vec();
    branch.extend_from_slice(params);
    sub(invite(extra), "z9hG4bKabc", branch)
}

/// [`invite`] with `line` (a whole Via header) below the client's Via.
fn with_via_below(line: &str) -> Vec<u8> {
    let top = "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKabc";
    sub(invite(""), top, format!("{top}\r\n{line}"))
}

/// [`invite`] from a strict previous hop: the Request-URI is us (§16.4).
fn strict_invite(extra: &str) -> Vec<u8> {
    sub(
        invite(extra),
        "INVITE sip:bob@192.0.2.4:5062",
        "INVITE sip:192.0.2.10:5060",
    )
}

/// A response from the callee with `top` and `next` Via lines.
fn response(top: &str, next: &str) -> Vec<u8> {
    format!(
        "SIP/2.0 180 Ringing\r\n{top}{next}To: <sip:bob@example.com>;tag=b\r\n\
From: <sip:alice@example.com>;tag=1\r\nCall-ID: call-1@192.0.2.1\r\nCSeq: 1 INVITE\r\n\r\n"
    )
    .into_bytes()
}

/// The branch of the top Via of `data`.
fn top_branch(data: &[u8]) -> String {
    let m = Message::parse(data).unwrap();
    let top = m.via().unwrap();
    String::from_utf8_lossy(top.branch.unwrap()).into_owned()
}

/// The Via line we put on an INVITE from 203.0.113.5:40000.
fn our_via() -> String {
    let fwd = forwarded(&invite(""), "203.0.113.5:40000");
    format!(
        "Via: SIP/2.0/UDP 192.0.2.10:5060;branch={}\r\n",
        top_branch(&fwd)
    )
}

/// The client's Via: the second one of a forwarded request.
fn client_via<'a>(m: &Message<'a>) -> Via<'a> {
    m.vias().nth(1).unwrap().unwrap()
}

/// The Route URIs of `m`, which must be valid.
fn routes(m: &Message<'_>) -> Vec<String> {
    m.validate().unwrap();
    m.routes()
        .map(|r| String::from_utf8(r.unwrap().uri.to_vec()).unwrap())
        .collect()
}

fn ruri<'a>(m: &Message<'a>) -> &'a str {
    std::str::from_utf8(m.request_uri_bytes().unwrap()).unwrap()
}

/// Checks that a forwarded request is valid, goes to Request-URI `uri`
/// and keeps the Routes `left`.
fn uri_and_routes(uri: &'static str, left: &'static [&'static str]) -> impl Fn(&Message<'_>) {
    move |m| {
        assert_eq!(ruri(m), uri);
        assert_eq!(routes(m), left);
    }
}

/// Checks that a forwarded message carries `n` Record-Routes.
fn record_routes(n: usize) -> impl Fn(&Message<'_>) {
    move |m| assert_eq!(m.record_routes().count(), n)
}

/// The option-tags a 420 would list for this action.
fn listed(data: &[u8], action: Action<'_>) -> Vec<String> {
    let Action::BadExtension {
        header, supported, ..
    } = action
    else {
        panic!("not a 420: {action:?}");
    };
    let msg = Message::parse(data).unwrap();
    let tags = unsupported(&msg, header, supported)
        .map(|t| String::from_utf8(t.to_vec()).unwrap())
        .collect();
    tags
}

/// One named test per routing case, like the parser's `sip_case!`:
///
/// ```text
/// route_case! {
///     [/// doc]
///     name, [cfg: TWEAK,] msg: BYTES, from: SRC,
///     EXPECT [, out: CHECK] [, lists: TAGS]
/// }
/// ```
///
/// routes `BYTES` from `SRC` with [`cfg`], `TWEAK` (an
/// `FnOnce(&mut ProxyConfig)`) applied. `EXPECT` is `want: ACTION` (the
/// action equals it) or `matches: PATTERN [if GUARD]`; `CHECK` is an
/// `FnOnce(&Message)` run on the forwarded message; `TAGS` are the
/// option-tags the 420 lists.
macro_rules! route_case {
    ($(#[$attr:meta])* $name:ident, $(cfg: $tweak:expr,)? msg: $msg:expr, from: $src:expr,
        $($expect:tt)+) => {
        $(#[$attr])*
        #[test]
        fn $name() {
            let c = route_case!(@cfg $($tweak)?);
            let data: Vec<u8> = $msg;
            let (action, out) = run(&c, &data, $src);
            route_case!(@expect action data out; $($expect)+);
        }
    };
    (@cfg) => { cfg() };
    (@cfg $tweak:expr) => { config($tweak) };
    (@expect $action:ident $data:ident $out:ident; want: $want:expr $(, $($rest:tt)*)?) => {
        assert_eq!($action, $want);
        route_case!(@expect $action $data $out; $($($rest)*)?);
    };
    (@expect $action:ident $data:ident $out:ident;
        matches: $pat:pat $(if $guard:expr)? $(, $($rest:tt)*)?) => {
        assert!(matches!($action, $pat $(if $guard)?), "{:?}", $action);
        route_case!(@expect $action $data $out; $($($rest)*)?);
    };
    (@expect $action:ident $data:ident $out:ident; out: $check:expr $(, $($rest:tt)*)?) => {
        check_out(&$out, $check);
        route_case!(@expect $action $data $out; $($($rest)*)?);
    };
    (@expect $action:ident $data:ident $out:ident; lists: $tags:expr $(, $($rest:tt)*)?) => {
        assert_eq!(listed(&$data, $action), $tags);
        route_case!(@expect $action $data $out; $($($rest)*)?);
    };
    (@expect $action:ident $data:ident $out:ident;) => {
        let _ = (&$out, &$data);
    };
}

// §16.6: a forwarded request.

route_case! {
    invite_is_forwarded_with_our_via_and_one_hop_less,
    msg: invite("Max-Forwards: 70\r\n"), from: CALLER, want: Action::Forward(to(CALLEE)),
    out: |m| {
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
}

// Listening on 0.0.0.0:5060 and advertising 192.0.2.10:5060: a request
// for another host on port 5060 is forwarded, not taken as addressed to us.
route_case! {
    a_wildcard_bind_does_not_make_every_host_us,
    cfg: |c| c.local.push(addr("0.0.0.0:5060")),
    msg: request("INVITE", "sip:bob@192.0.2.4", ""), from: CALLER,
    want: Action::Forward(to("192.0.2.4:5060"))
}

route_case! {
    missing_max_forwards_becomes_70,
    msg: invite(""), from: CALLER, want: Action::Forward(to(CALLEE)),
    out: |m| assert_eq!(m.max_forwards(), Ok(Some(70)))
}

route_case! {
    max_forwards_zero_is_483_to_the_via_port,
    msg: invite("Max-Forwards: 0\r\n"), from: "192.0.2.1:7000",
    want: Action::Reply { code: 483, reason: ("Too Many Hops", ""), to: to(CALLER) }
}

// §16.3 step 4 and §16.11: our own request back is a loop; sent on to
// another target (a spiral), it is not.
route_case! {
    a_request_that_comes_back_is_482,
    msg: forwarded(&invite("Max-Forwards: 70\r\n"), CALLER), from: CALLEE,
    matches: Action::Reply { code: 482, .. }
}

route_case! {
    a_spiral_is_not_a_loop,
    msg: sub(
        forwarded(&invite("Max-Forwards: 70\r\n"), CALLER),
        "INVITE sip:bob@192.0.2.4:5062",
        "INVITE sip:bob@192.0.2.5:5062"
    ),
    from: CALLEE, want: Action::Forward(to("192.0.2.5:5062"))
}

// An ACK: never answered, and ours ends here.

// A valid INVITE would be forwarded; its ACK carrying our local To tag
// acknowledges an answer we gave, and ends here.
route_case! {
    the_ack_of_our_own_answer_is_not_forwarded,
    msg: ack_of_our_answer(), from: CALLER, want: Action::Drop(DropReason::AckNotAnswered)
}

route_case! {
    the_ack_of_the_callees_answer_is_forwarded,
    msg: tagged(request("ACK", BOB, ""), "callee-tag"), from: CALLER,
    matches: Action::Forward(_)
}

route_case! {
    an_ack_is_never_answered,
    msg: request("ACK", BOB, "Max-Forwards: 0\r\n"), from: CALLER,
    want: Action::Drop(DropReason::AckNotAnswered)
}

// RFC 3581 and §18.2.1: received and rport.

route_case! {
    rport_and_received_are_filled_in,
    msg: with_via_params("", b";rport"), from: "203.0.113.5:40000",
    matches: Action::Forward(_),
    out: |m| {
        let client = client_via(m);
        assert_eq!(client.rport, Rport::Value(40000));
        assert_eq!(client.received, Some(&b"203.0.113.5"[..]));
    }
}

route_case! {
    received_is_filled_in_without_rport,
    msg: invite(""), from: "203.0.113.5:5060", matches: Action::Forward(_),
    out: |m| {
        let client = client_via(m);
        assert_eq!(client.rport, Rport::Absent);
        assert_eq!(client.received, Some(&b"203.0.113.5"[..]));
    }
}

route_case! {
    a_reply_to_an_rport_client_goes_to_its_source_port,
    msg: with_via_params("Max-Forwards: 0\r\n", b";rport"), from: "203.0.113.5:40000",
    matches: Action::Reply { to: dest, .. } if dest == to("203.0.113.5:40000")
}

/// Client Via parameters of which only received and rport may change.
const CAFE: &[u8] = b";x=\"caf\xe9\";rport;lr";

/// Checks that the client's Via kept [`CAFE`] but for `received` and
/// the port 40000.
fn kept_cafe(received: &'static str) -> impl Fn(&Message<'_>) {
    move |m| {
        let mut want = b";branch=z9hG4bKabc;x=\"caf\xe9\";lr;received=".to_vec();
        want.extend_from_slice(received.as_bytes());
        want.extend_from_slice(b";rport=40000");
        assert_eq!(client_via(m).params, &want[..]);
    }
}

route_case! {
    /// The client's other Via parameters go on byte for byte (only
    /// received, §18.2.1, and rport, RFC 3581 §4, change), over IPv4 and
    /// IPv6 sources,
    /// non-ASCII bytes of a quoted value included (the `core::fmt` writer
    /// this replaced sent each such byte as a two-byte UTF-8 char).
    the_client_via_keeps_its_other_parameters_byte_for_byte,
    msg: with_via_params("", CAFE), from: "203.0.113.5:40000",
    matches: Action::Forward(_), out: kept_cafe("203.0.113.5")
}

route_case! {
    the_client_via_keeps_its_other_parameters_byte_for_byte_over_ipv6,
    msg: with_via_params("", CAFE), from: "[2001:db8::7]:40000",
    matches: Action::Forward(_), out: kept_cafe("2001:db8::7")
}

route_case! {
    a_client_cannot_choose_where_responses_go,
    msg: with_via_params("", b";received=198.51.100.66;rport=9;x=1"), from: "203.0.113.5:40000",
    matches: Action::Forward(_),
    out: |m| {
        let client = client_via(m);
        assert_eq!(client.received, Some(&b"203.0.113.5"[..]));
        assert_eq!(client.rport, Rport::Value(40000));
        assert_eq!(client.branch, Some(&b"z9hG4bKabc"[..]));
        assert!(client.params().any(|p| p.name == b"x"), "other params kept");
        assert_eq!(client.params().filter(|p| p.name == b"received").count(), 1);
    }
}

// §16.6 step 4: Record-Route, only where a dialog can start.

route_case! {
    record_route_goes_on_top, cfg: record_route,
    msg: invite("Record-Route: <sip:192.0.2.99;lr>\r\n"), from: CALLER, matches: Action::Forward(_),
    out: |m| {
        let rr: Vec<_> = m.record_routes().map(|r| r.unwrap().uri).collect();
        assert_eq!(rr, vec![&b"sip:192.0.2.10:5060;lr"[..], b"sip:192.0.2.99;lr"]);
    }
}

/// Rows of [`route_case!`] with Record-Route on, from [`CALLER`], each
/// forwarded with this many Record-Routes: `name: msg => count;`.
macro_rules! record_route_case {
    ($($name:ident: $msg:expr => $count:expr;)+) => {$(
        route_case! {
            $name, cfg: record_route, msg: $msg, from: CALLER,
            matches: Action::Forward(_), out: record_routes($count)
        }
    )+};
}

// Record-Route only where a dialog can start: without a To tag, by a
// method that can start one.
record_route_case! {
    an_initial_invite_is_record_routed: invite("") => 1;
    an_initial_subscribe_is_record_routed: request("SUBSCRIBE", BOB, "") => 1;
    an_initial_refer_is_record_routed: request("REFER", BOB, "") => 1;
    an_initial_message_is_record_routed: request("MESSAGE", BOB, "") => 1;
    an_initial_unknown_method_is_record_routed: request("NEWMETHOD", BOB, "") => 1;
    a_re_invite_is_not_record_routed: in_dialog("INVITE") => 0;
    an_ack_in_a_dialog_is_not_record_routed: in_dialog("ACK") => 0;
    a_bye_is_not_record_routed: in_dialog("BYE") => 0;
    an_update_is_not_record_routed: in_dialog("UPDATE") => 0;
    a_notify_is_not_record_routed: in_dialog("NOTIFY") => 0;
    an_unknown_method_in_a_dialog_is_not_record_routed: in_dialog("NEWMETHOD") => 0;
    a_register_is_not_record_routed: request("REGISTER", BOB, "") => 0;
    options_is_not_record_routed: request("OPTIONS", BOB, "") => 0;
    a_cancel_is_not_record_routed: request("CANCEL", BOB, "") => 0;
    an_ack_outside_a_dialog_is_not_record_routed: request("ACK", BOB, "") => 0;
}

// §16.4 and §16.6 steps 6-7: Route, loose and strict routers.

route_case! {
    a_broken_route_is_400,
    msg: invite("Route: <sip:192.0.2.20;lr\r\n"), from: CALLER,
    matches: Action::Reply { code: 400, reason: ("Bad ", "Route"), .. }
}

route_case! {
    our_loose_route_is_removed_and_the_next_one_followed,
    msg: invite("Route: <sip:192.0.2.10:5060;lr>, <sip:192.0.2.20;lr>\r\n"), from: CALLER,
    want: Action::Forward(to("192.0.2.20:5060")),
    out: uri_and_routes(BOB, &["sip:192.0.2.20;lr"])
}

route_case! {
    strict_router_request_uri_is_restored_from_the_last_route,
    msg: strict_invite("Route: <sip:192.0.2.30:5080>\r\n"), from: CALLER,
    want: Action::Forward(to("192.0.2.30:5080")),
    out: uri_and_routes("sip:192.0.2.30:5080", &[])
}

route_case! {
    strict_previous_hop_with_our_route_on_the_same_line,
    msg: strict_invite("Route: <sip:192.0.2.10:5060;lr>, <sip:192.0.2.30:5080>\r\n"), from: CALLER,
    want: Action::Forward(to("192.0.2.30:5080")),
    out: uri_and_routes("sip:192.0.2.30:5080", &[])
}

// §16.6 step 6: our Route, then a strict router on the same line.
route_case! {
    a_strict_router_next_hop_gets_its_uri_as_request_uri,
    msg: invite("Route: <sip:192.0.2.10:5060;lr>, <sip:192.0.2.40:5070>, <sip:192.0.2.41;lr>\r\n"),
    from: CALLER, want: Action::Forward(to("192.0.2.40:5070")),
    out: uri_and_routes("sip:192.0.2.40:5070", &["sip:192.0.2.41;lr", BOB])
}

route_case! {
    a_strict_router_next_hop_alone_on_the_next_line_gets_its_uri_as_request_uri,
    msg: invite("Route: <sip:192.0.2.10:5060;lr>\r\nRoute: <sip:192.0.2.40:5070>\r\n"),
    from: CALLER, want: Action::Forward(to("192.0.2.40:5070")),
    out: uri_and_routes("sip:192.0.2.40:5070", &[BOB])
}

// A strict router first, with no Route of ours before it.
route_case! {
    a_strict_router_first_gets_its_uri_as_request_uri,
    msg: invite("Route: <sip:192.0.2.40:5070>\r\n"), from: CALLER,
    want: Action::Forward(to("192.0.2.40:5070")),
    out: uri_and_routes("sip:192.0.2.40:5070", &[BOB])
}

// RFC 5658 double Record-Route: a proxy on two addresses (or two
// transports) left one entry per side; both name us.
route_case! {
    every_route_naming_us_at_the_top_is_removed, cfg: two_addresses,
    msg: invite("Route: <sip:192.0.2.10;lr>, <sip:198.51.100.10;lr;transport=tcp>, <sip:192.0.2.20;lr>\r\n"),
    from: CALLER, want: Action::Forward(to("192.0.2.20:5060")),
    out: uri_and_routes(BOB, &["sip:192.0.2.20;lr"])
}

route_case! {
    every_route_naming_us_at_the_top_is_removed_one_per_line, cfg: two_addresses,
    msg: invite("Route: <sip:192.0.2.10;lr>\r\nRoute: <sip:198.51.100.10;lr>\r\nRoute: <sip:192.0.2.20;lr>\r\n"),
    from: CALLER, want: Action::Forward(to("192.0.2.20:5060")),
    out: uri_and_routes(BOB, &["sip:192.0.2.20;lr"])
}

route_case! {
    every_route_naming_us_at_the_top_is_removed_with_or_without_port, cfg: two_addresses,
    msg: invite("Route: <sip:192.0.2.10;lr>\r\nRoute: <sip:192.0.2.10:5060;lr>, <sip:192.0.2.20;lr>\r\n"),
    from: CALLER, want: Action::Forward(to("192.0.2.20:5060")),
    out: uri_and_routes(BOB, &["sip:192.0.2.20;lr"])
}

route_case! {
    with_only_our_routes_the_request_uri_is_next, cfg: two_addresses,
    msg: invite("Route: <sip:192.0.2.10;lr>, <sip:198.51.100.10;lr>\r\n"),
    from: CALLER, want: Action::Forward(to(CALLEE)),
    out: uri_and_routes(BOB, &[])
}

route_case! {
    our_route_below_anothers_is_not_ours_to_remove, cfg: two_addresses,
    msg: invite("Route: <sip:192.0.2.20;lr>, <sip:192.0.2.10;lr>\r\n"),
    from: CALLER, want: Action::Forward(to("192.0.2.20:5060")),
    out: uri_and_routes(BOB, &["sip:192.0.2.20;lr", "sip:192.0.2.10;lr"])
}

// Two of ours, then a strict router (§16.6 step 6).
route_case! {
    two_of_our_routes_then_a_strict_router, cfg: two_addresses,
    msg: invite("Route: <sip:192.0.2.10;lr>, <sip:198.51.100.10;lr>, <sip:192.0.2.40:5070>, <sip:192.0.2.41;lr>\r\n"),
    from: CALLER, want: Action::Forward(to("192.0.2.40:5070")),
    out: uri_and_routes("sip:192.0.2.40:5070", &["sip:192.0.2.41;lr", BOB])
}

// A strict previous hop (§16.4): the last Route becomes the
// Request-URI, and both of ours go.
route_case! {
    a_strict_previous_hop_removes_both_of_our_routes, cfg: two_addresses,
    msg: strict_invite("Route: <sip:192.0.2.10;lr>, <sip:198.51.100.10;lr>, <sip:192.0.2.30:5080>\r\n"),
    from: CALLER, want: Action::Forward(to("192.0.2.30:5080")),
    out: uri_and_routes("sip:192.0.2.30:5080", &[])
}

route_case! {
    a_strict_previous_hop_removes_both_of_our_routes_one_per_line, cfg: two_addresses,
    msg: strict_invite("Route: <sip:192.0.2.10;lr>\r\nRoute: <sip:198.51.100.10;lr>\r\nRoute: <sip:192.0.2.30:5080>\r\n"),
    from: CALLER, want: Action::Forward(to("192.0.2.30:5080")),
    out: uri_and_routes("sip:192.0.2.30:5080", &[])
}

// §16.5: the next hop.

route_case! {
    host_names_are_dropped_without_upstreams,
    msg: request("INVITE", "sip:bob@example.com", ""), from: CALLER,
    want: Action::Drop(DropReason::Unresolved)
}

route_case! {
    a_user_at_us_with_nowhere_to_go_is_404,
    msg: request("INVITE", "sip:bob@192.0.2.10", ""), from: CALLER,
    matches: Action::Reply { code: 404, .. }
}

route_case! {
    a_user_at_us_with_nowhere_to_go_goes_upstream,
    cfg: |c| c.upstreams = vec![udp("198.51.100.1:5060")],
    msg: request("INVITE", "sip:bob@192.0.2.10", ""), from: CALLER,
    want: Action::Forward(to("198.51.100.1:5060"))
}

// §16.3: validation, and requests to us.

route_case! {
    options_to_us_is_answered,
    msg: request("OPTIONS", "sip:192.0.2.10", ""), from: CALLER,
    want: Action::Reply { code: 200, reason: ("OK", ""), to: to(CALLER) }
}

// §16.3 step 3 lets a proxy answer OPTIONS addressed to itself.
route_case! {
    options_to_us_is_answered_even_at_max_forwards_zero,
    msg: request("OPTIONS", "sip:192.0.2.10", "Max-Forwards: 0\r\n"), from: CALLER,
    matches: Action::Reply { code: 200, .. }
}

route_case! {
    invalid_request_gets_400_with_the_reason,
    msg: sub(invite(""), "Call-ID: call-1@192.0.2.1\r\n", ""), from: CALLER,
    want: Action::Reply { code: 400, reason: ("Missing ", "Call-ID"), to: to(CALLER) }
}

route_case! {
    a_request_without_via_is_dropped_as_malformed,
    msg: sub(invite(""), "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKabc\r\n", ""), from: CALLER,
    want: Action::Drop(DropReason::Malformed)
}

/// The 400 for a Via that is not SIP/2.0, to [`CALLER`].
fn via_not_sip_2_0() -> Action<'static> {
    Action::Reply {
        code: 400,
        reason: ("Via Not SIP/2.0", ""),
        to: to(CALLER),
    }
}

route_case! {
    a_via_that_is_not_sip_2_0_is_400_never_forwarded,
    msg: sub(invite(""), "SIP/2.0/UDP", "SIP/3.0/UDP"), from: CALLER, want: via_not_sip_2_0()
}

route_case! {
    a_top_via_of_another_protocol_is_400_never_forwarded,
    msg: sub(invite(""), "SIP/2.0/UDP", "FOO/2.0/UDP"), from: CALLER, want: via_not_sip_2_0()
}

route_case! {
    a_lower_via_that_is_not_sip_2_0_is_400_never_forwarded,
    msg: with_via_below("Via: SIP/3.0/UDP 192.0.2.99;branch=z9hG4bKx"), from: CALLER,
    want: via_not_sip_2_0()
}

route_case! {
    a_lower_via_of_another_protocol_is_400_never_forwarded,
    msg: with_via_below("Via: FOO/2.0/UDP 192.0.2.99;branch=z9hG4bKx"), from: CALLER,
    want: via_not_sip_2_0()
}

// §16.3 step 5 and §8.2.2.3: option-tags, 420.

// Every tag of Proxy-Require, over two lines.
route_case! {
    proxy_require_we_lack_is_420,
    msg: invite("Proxy-Require: foo, bar\r\nProxy-Require: baz\r\nRequire: qux\r\n"),
    from: "192.0.2.1:7000",
    want: Action::BadExtension {
        header: HeaderName::ProxyRequire,
        supported: PROXY_SUPPORTED,
        to: to(CALLER),
    },
    lists: ["foo", "bar", "baz"]
}

// Require is for the UAS: a proxy forwards it untouched.
route_case! {
    require_is_not_ours,
    msg: invite("Require: 100rel\r\n"), from: CALLER, want: Action::Forward(to(CALLEE)),
    out: |m| assert_eq!(m.header(HeaderName::Require), Some(&b"100rel"[..]))
}

// §8.2.2.3: Proxy-Require is ignored in a CANCEL and an ACK.
route_case! {
    a_cancel_ignores_proxy_require,
    msg: request("CANCEL", BOB, "Proxy-Require: foo\r\n"), from: CALLER,
    want: Action::Forward(to(CALLEE))
}

route_case! {
    an_ack_ignores_proxy_require,
    msg: request("ACK", BOB, "Proxy-Require: foo\r\n"), from: CALLER,
    want: Action::Forward(to(CALLEE))
}

route_case! {
    options_to_us_checks_require,
    msg: request("OPTIONS", "sip:192.0.2.10", "Require: foo\r\n"), from: CALLER,
    matches: Action::BadExtension { header: HeaderName::Require, .. },
    lists: ["foo"]
}

route_case! {
    options_to_us_checks_proxy_require,
    msg: request("OPTIONS", "sip:192.0.2.10", "Proxy-Require: foo\r\n"), from: CALLER,
    matches: Action::BadExtension { header: HeaderName::ProxyRequire, .. },
    lists: ["foo"]
}

fn example_com_is_ours(c: &mut ProxyConfig) {
    c.domains = vec![b"example.com".to_vec().into_boxed_slice()];
}

// §10.3 step 2: the registrar checks Require like any UAS.
route_case! {
    the_registrar_supports_path, cfg: example_com_is_ours,
    msg: request("REGISTER", "sip:example.com", "Require: path\r\n"), from: CALLER,
    want: Action::Register
}

route_case! {
    the_registrar_supports_nothing_else, cfg: example_com_is_ours,
    msg: request("REGISTER", "sip:example.com", "Require: path, gruu\r\n"), from: CALLER,
    matches: Action::BadExtension { header: HeaderName::Require, .. },
    lists: ["gruu"]
}

// The proxy in front of it supports nothing (§16.3 step 5).
route_case! {
    the_proxy_in_front_of_the_registrar_supports_nothing, cfg: example_com_is_ours,
    msg: request("REGISTER", "sip:example.com", "Proxy-Require: path\r\n"), from: CALLER,
    matches: Action::BadExtension { header: HeaderName::ProxyRequire, .. },
    lists: ["path"]
}

// §16.7: responses along the Via path.

const CLIENT_VIA: &str = "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKabc\r\n";

route_case! {
    responses_follow_the_via_path,
    msg: response(&our_via(), "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKabc;received=203.0.113.5\r\n"),
    from: CALLEE, want: Action::Forward(to("203.0.113.5:5060")),
    out: |m| {
        assert_eq!(m.vias().count(), 1);
        assert_eq!(m.via().unwrap().branch, Some(&b"z9hG4bKabc"[..]));
    }
}

route_case! {
    responses_follow_the_via_path_to_its_rport,
    msg: response(&our_via(), "Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKabc;rport=40000;received=203.0.113.5\r\n"),
    from: CALLEE, want: Action::Forward(to("203.0.113.5:40000"))
}

route_case! {
    a_response_with_no_next_via_is_dropped,
    msg: response(&our_via(), ""), from: CALLEE, want: Action::Drop(DropReason::NoNextVia)
}

route_case! {
    a_response_to_a_host_name_is_dropped,
    msg: response(&our_via(), "Via: SIP/2.0/UDP client.example.com;branch=z9hG4bKabc\r\n"),
    from: CALLEE, want: Action::Drop(DropReason::Unresolved)
}

// A Via that is not SIP/2.0, ours or the next one: malformed.
route_case! {
    a_response_whose_next_via_is_not_sip_2_0_is_malformed,
    msg: response(&our_via(), "Via: SIP/3.0/UDP 192.0.2.1:5060;branch=z9hG4bKabc\r\n"),
    from: CALLEE, want: Action::Drop(DropReason::Malformed)
}

route_case! {
    a_response_whose_top_via_is_not_sip_2_0_is_malformed,
    msg: response(&our_via().replace("SIP/2.0/UDP", "FOO/2.0/UDP"), CLIENT_VIA),
    from: CALLEE, want: Action::Drop(DropReason::Malformed)
}

route_case! {
    responses_not_for_us_are_dropped,
    msg: response("Via: SIP/2.0/UDP 192.0.2.77:5060;branch=z9hG4bKsS0000000000000000aaaaaaaa\r\n", CLIENT_VIA),
    from: CALLEE, want: Action::Drop(DropReason::NotOurVia)
}

route_case! {
    responses_with_a_branch_not_ours_are_dropped,
    msg: response("Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKforeign\r\n", CLIENT_VIA),
    from: CALLEE, want: Action::Drop(DropReason::NotOurVia)
}

// Cases that compare several routings.

#[test]
fn retransmission_and_cancel_get_the_same_branch() {
    let a = forwarded(&invite(""), CALLER);
    let b = forwarded(&invite(""), CALLER);
    let (action, c) = run(&cfg(), &request("CANCEL", BOB, ""), CALLER);
    assert_eq!(action, Action::Forward(to(CALLEE)));
    assert_eq!(top_branch(&a), top_branch(&b));
    assert_eq!(top_branch(&a), top_branch(&c));
}

#[test]
fn host_names_go_upstream_by_call_id() {
    let data = request("INVITE", "sip:bob@example.com", "");
    let c = config(|c| c.upstreams = vec![udp("198.51.100.1:5060"), udp("198.51.100.2:5060")]);
    let (a1, _) = run(&c, &data, CALLER);
    let (a2, _) = run(&c, &data, CALLER);
    assert_eq!(a1, a2);
    assert!(
        matches!(a1, Action::Forward(a) if a.peer().is_some_and(|p| c.upstreams.contains(&TransportAddr::udp(p))))
    );
    let mut seen = std::collections::HashSet::new();
    for i in 0..32 {
        let d = sub(data.clone(), "call-1@", format!("call-{i}@"));
        if let (Action::Forward(a), _) = run(&c, &d, CALLER) {
            seen.insert(a);
        }
    }
    assert_eq!(seen.len(), 2, "Call-IDs spread over both upstreams");
}

/// --probe-interval: an upstream out of the rotation gets no new dialog;
/// its dialogs go to the next one, the others' stay where they were; with
/// every upstream out, 503.
#[test]
fn an_upstream_out_of_the_rotation_is_skipped_and_all_out_is_503() {
    let data = request("INVITE", "sip:bob@example.com", "");
    let c = config(|c| {
        c.upstreams = vec![udp("198.51.100.1:5060"), udp("198.51.100.2:5060")];
        c.health = std::sync::Arc::new(crate::proxy::Health::new(2));
    });
    let calls: Vec<Vec<u8>> = (0..32)
        .map(|i| sub(data.clone(), "call-1@", format!("call-{i}@")))
        .collect();
    let before: Vec<Action<'_>> = calls.iter().map(|d| run(&c, d, CALLER).0).collect();
    for _ in 0..3 {
        c.health.missed(0, 3);
    }
    assert!(!c.health.is_up(0));
    let second = Action::Forward(Dest::Udp {
        peer: addr("198.51.100.2:5060"),
        from: Some(addr(US).ip()),
    });
    for (d, was) in calls.iter().zip(&before) {
        let (now, _) = run(&c, d, CALLER);
        assert_eq!(now, second, "every dialog on the one left");
        if *was == second {
            assert_eq!(&now, was, "the others' dialogs did not move");
        }
    }
    c.health.missed(1, 1);
    let (a, _) = run(&c, &data, CALLER);
    assert!(matches!(a, Action::Reply { code: 503, .. }), "{a:?}");
    // One answer brings it back.
    c.health.answered(0, 100);
    let (a, _) = run(&c, &data, CALLER);
    assert!(matches!(a, Action::Forward(_)), "{a:?}");
}

#[test]
fn drop_reasons_are_listed_in_counter_order() {
    for (i, r) in DropReason::ALL.iter().enumerate() {
        assert_eq!(*r as usize, i, "{}", r.name());
    }
}

/// Routes `data` as received from `src` on connection `conn` (TCP).
fn run_on_conn(
    cfg: &ProxyConfig,
    data: &[u8],
    src: &str,
    conn: ConnId,
) -> (Action<'static>, Vec<u8>) {
    static EMPTY: std::sync::OnceLock<Replica> = std::sync::OnceLock::new();
    let source = Source {
        peer: addr(src),
        local: addr(US),
        transport: Transport::Tcp,
        conn: Some(conn),
    };
    route_from(cfg, EMPTY.get_or_init(Replica::default), 0, data, &source)
}

// §18.2.2: a request that came on a connection carries the connection in
// our Via, and its responses go back on it; a forged one goes nowhere.
#[test]
fn responses_to_a_request_from_a_connection_go_back_on_it() {
    let cfg = cfg();
    let conn = ConnId::new(1, 42, 7);
    let req = sub(invite(""), "SIP/2.0/UDP 192.0.2.1", "SIP/2.0/TCP 192.0.2.1");
    let (action, fwd) = run_on_conn(&cfg, &req, "192.0.2.1:40000", conn);
    assert_eq!(action, Action::Forward(to(CALLEE)), "leaves over UDP");
    let m = Message::parse(&fwd).unwrap();
    let ours = m.via().unwrap();
    assert_eq!(cfg.conn_key.of_via(&ours), Some(Ok(conn)));
    let top = format!(
        "Via: {}\r\n",
        String::from_utf8_lossy(m.top_via_value().unwrap().text)
    );
    let next = "Via: SIP/2.0/TCP 192.0.2.1:5060;branch=z9hG4bKabc;received=192.0.2.1\r\n";
    let (action, out) = run(&cfg, &response(&top, next), CALLEE);
    assert_eq!(action, Action::Forward(Dest::Conn(conn)));
    check_out(&out, |m| {
        assert_eq!(m.vias().count(), 1);
        assert!(m.via().unwrap().params().any(|p| p.name == b"received"));
    });
    // Another client's connection named with a tag we did not write.
    let forged = {
        let cid = String::from_utf8(cfg.conn_key.write(conn).to_vec()).unwrap();
        let other = format!("{:016x}{}", ConnId::new(1, 43, 7).0, &cid[16..]);
        top.replace(&cid, &other)
    };
    let (action, _) = run(&cfg, &response(&forged, next), CALLEE);
    assert_eq!(action, Action::Drop(DropReason::NotOurVia));
    // A datagram's request carries no cid.
    assert!(!String::from_utf8_lossy(&forwarded(&invite(""), "192.0.2.1:5060")).contains("cid="));
}

// RFC 3263 §4.1 without DNS: the next hop's transport comes from its
// URI's `transport` parameter, else TLS for sips:, else UDP; our Via names
// the leg the request leaves on.
#[test]
fn the_next_hops_transport_comes_from_its_uri_or_upstream() {
    let tcp = sub(invite(""), BOB, "sip:bob@192.0.2.4:5062;transport=TCP");
    let (action, out) = run(&cfg(), &tcp, "192.0.2.1:5060");
    assert_eq!(
        action,
        Action::Forward(Dest::Outbound {
            peer: addr(CALLEE),
            transport: Transport::Tcp
        })
    );
    check_out(&out, |m| {
        let top = m.via().unwrap();
        assert_eq!(top.transport, b"TCP");
    });
    let sips = sub(invite(""), BOB, "sips:bob@192.0.2.4");
    let (action, _) = run(&cfg(), &sips, "192.0.2.1:5060");
    assert_eq!(
        action,
        Action::Forward(Dest::Outbound {
            peer: addr("192.0.2.4:5061"),
            transport: Transport::Tls
        }),
        "sips: defaults to TLS on 5061"
    );
    let sctp = sub(invite(""), BOB, "sip:bob@192.0.2.4;transport=sctp");
    let (action, _) = run(&cfg(), &sctp, "192.0.2.1:5060");
    assert_eq!(action, Action::Drop(DropReason::Unresolved));
    // A loose Route with transport=tcp wins over the Request-URI.
    let routed = invite("Route: <sip:198.51.100.9;lr;transport=tcp>\r\n");
    let (action, _) = run(&cfg(), &routed, "192.0.2.1:5060");
    assert_eq!(
        action,
        Action::Forward(Dest::Outbound {
            peer: addr("198.51.100.9:5060"),
            transport: Transport::Tcp
        })
    );
    // An upstream over TCP, for a Request-URI with a host name.
    let named = sub(invite(""), BOB, "sip:bob@example.net");
    let c = config(|c| {
        c.upstreams = vec![TransportAddr {
            transport: Transport::Tcp,
            addr: addr("198.51.100.1:5060"),
        }]
    });
    let (action, out) = run(&c, &named, "192.0.2.1:5060");
    assert_eq!(
        action,
        Action::Forward(Dest::Outbound {
            peer: addr("198.51.100.1:5060"),
            transport: Transport::Tcp
        })
    );
    check_out(&out, |m| assert_eq!(m.via().unwrap().transport, b"TCP"));
}

// RFC 5658 and RFC 5626 §5.3: a dialog-creating request from a
// connection gets two Record-Route values, the client's side naming its
// transport and connection; an in-dialog request from the far side goes
// back on that connection, one from the connection goes on as routed.
#[test]
fn record_route_names_the_connection_and_in_dialog_requests_go_back_on_it() {
    let cfg = config(record_route);
    let conn = ConnId::new(0, 5, 3);
    let req = sub(invite(""), "SIP/2.0/UDP 192.0.2.1", "SIP/2.0/TCP 192.0.2.1");
    let (_, fwd) = run_on_conn(&cfg, &req, "192.0.2.1:40000", conn);
    let rr = {
        let m = Message::parse(&fwd).unwrap();
        String::from_utf8_lossy(m.header(HeaderName::RecordRoute).unwrap()).into_owned()
    };
    let cid = String::from_utf8(cfg.conn_key.write(conn).to_vec()).unwrap();
    assert_eq!(
        rr,
        format!("<sip:{US};lr>, <sip:{US};transport=tcp;lr;cid={cid}>"),
        "the next hop's side first"
    );
    // The callee's BYE: its route set is the Record-Route as it came.
    let bye = sub(
        in_dialog("BYE"),
        "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKabc",
        format!("Via: SIP/2.0/UDP {CALLEE};branch=z9hG4bKbye\r\nRoute: {rr}"),
    );
    let bye = sub(
        bye,
        "BYE sip:bob@192.0.2.4:5062",
        "BYE sip:alice@10.0.0.9:5060;transport=tcp",
    );
    let (action, out) = run(&cfg, &bye, CALLEE);
    assert_eq!(action, Action::Forward(Dest::Conn(conn)));
    check_out(&out, |m| {
        assert_eq!(m.count_of(HeaderName::Route), 0, "both ours removed");
        assert_eq!(m.via().unwrap().transport, b"TCP");
    });
    // The caller's own BYE, on the connection: routed by its target.
    let reversed = format!("<sip:{US};transport=tcp;lr;cid={cid}>, <sip:{US};lr>");
    let bye = sub(
        in_dialog("BYE"),
        "Via:",
        format!("Route: {reversed}\r\nVia:"),
    );
    let (action, _) = run_on_conn(&cfg, &bye, "192.0.2.1:40000", conn);
    assert_eq!(action, Action::Forward(to(CALLEE)));
    // A datagram's dialog keeps one Record-Route value.
    let (_, fwd) = run(&cfg, &invite(""), "192.0.2.1:5060");
    let m = Message::parse(&fwd).unwrap();
    assert_eq!(
        m.header(HeaderName::RecordRoute).unwrap(),
        format!("<sip:{US};lr>").as_bytes()
    );
}
