//! A dual-stack edge end to end: UDP listens on 127.0.0.1 and [::1], and
//! requests and responses that cross from one IP family to the other. A
//! shard's socket has one family, so a message for the other leaves from
//! a shard whose socket has it (through the inbox), and our Via and
//! Record-Route name our address of the family each side is reached on
//! (RFC 5658's double Record-Route, as for a change of transport). Every
//! test runs on both I/O backends, and skips where there is no IPv6
//! loopback.

#[macro_use]
mod common;

use std::io::Write;
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::Duration;

use common::process::{listen_addrs, stream_addr, Proxy};
use common::sip::{call_ids_on_both_shards, read_message, response_to};

use sipshard::sip::{HeaderName, Message, Method};

/// sipshard on 127.0.0.1 and [::1] (two shards each) with `extra`, and
/// its IPv4 and IPv6 UDP addresses; None without IPv6 loopback or
/// io_uring.
fn start(io: &str, extra: &[&str]) -> Option<(Proxy, SocketAddr, SocketAddr)> {
    if UdpSocket::bind("[::1]:0").is_err() {
        eprintln!("skipping: no IPv6 loopback here");
        return None;
    }
    let mut args = vec!["--listen", "127.0.0.1:0", "--listen", "[::1]:0"];
    args.extend_from_slice(extra);
    let proxy = Proxy::start_listening(io, &args, &[])?;
    let addrs = listen_addrs(&proxy.banner);
    let (v4, v6) = match addrs[..] {
        [a, b] if a.is_ipv4() && b.is_ipv6() => (a, b),
        _ => panic!("two udp listens: {}", proxy.banner),
    };
    Some((proxy, v4, v6))
}

fn bind(addr: &str) -> UdpSocket {
    let s = UdpSocket::bind(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    s
}

/// The next datagram and where it came from, or a panic naming `what`.
fn recv(s: &UdpSocket, what: &str) -> (Vec<u8>, SocketAddr) {
    let mut buf = [0u8; 4096];
    match s.recv_from(&mut buf) {
        Ok((n, from)) => (buf[..n].to_vec(), from),
        Err(e) => panic!("no {what}: {e}"),
    }
}

fn header(m: &[u8], h: HeaderName) -> String {
    let m = Message::parse(m).unwrap();
    String::from_utf8_lossy(m.header(h).unwrap_or_default()).into_owned()
}

fn status(m: &[u8]) -> Option<u16> {
    Message::parse(m).unwrap().status()
}

/// The `family_crossed=` count of the stop line.
fn crossed(proxy: Proxy) -> u64 {
    let report = proxy.stop_and_report();
    report
        .split("family_crossed=")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no family_crossed in {report:?}"))
}

/// An IPv4 caller calls an IPv6 callee through us and the callee hangs
/// up: the INVITE leaves from our [::1] socket with our Via naming it and
/// two Record-Route values ([::1] on the callee's side, 127.0.0.1 on the
/// caller's); the 200 reaches the caller from our 127.0.0.1; the callee's
/// BYE, along that route set, reaches the caller from 127.0.0.1 with our
/// Via naming it, and its 200 returns to the callee from [::1]. Each of
/// the four messages crossed families once, on whichever shards the
/// Call-IDs landed.
fn a_call_crosses_from_ipv4_to_ipv6_and_back(io: &str) {
    let Some((proxy, v4, v6)) = start(io, &["--record-route"]) else {
        return;
    };
    let (uac, uas) = (bind("127.0.0.1:0"), bind("[::1]:0"));
    let (uac_at, uas_at) = (uac.local_addr().unwrap(), uas.local_addr().unwrap());
    let calls = call_ids_on_both_shards("dual", 8);
    for call in &calls {
        let invite = format!(
            "INVITE sip:bob@{uas_at} SIP/2.0\r\n\
Via: SIP/2.0/UDP {uac_at};branch=z9hG4bK{call};rport\r\n\
To: <sip:bob@[::1]>\r\nFrom: <sip:alice@127.0.0.1>;tag=a1\r\nCall-ID: {call}\r\n\
CSeq: 1 INVITE\r\nContact: <sip:alice@{uac_at}>\r\nMax-Forwards: 70\r\n\
Content-Length: 0\r\n\r\n"
        );
        uac.send_to(invite.as_bytes(), v4).unwrap();
        let (fwd, from) = recv(&uas, "INVITE at the IPv6 callee");
        assert_eq!(from, v6, "{call}: sent from our [::1] socket");
        let via = header(&fwd, HeaderName::Via);
        assert!(
            via.starts_with(&format!("SIP/2.0/UDP {v6};branch=")),
            "{call}: our Via names [::1]: {via}"
        );
        let m = Message::parse(&fwd).unwrap();
        let rr: Vec<String> = m
            .record_routes()
            .map(|r| String::from_utf8_lossy(r.unwrap().uri).into_owned())
            .collect();
        assert_eq!(
            rr,
            [format!("sip:{v6};lr"), format!("sip:{v4};lr")],
            "{call}: one Record-Route per side"
        );
        uas.send_to(&response_to(&fwd, 200, "OK"), from).unwrap();
        let (ok, from) = recv(&uac, "200 at the IPv4 caller");
        assert_eq!(status(&ok), Some(200), "{call}");
        assert_eq!(from, v4, "{call}: the 200 from our 127.0.0.1");

        // The callee hangs up along the route set it learnt.
        let bye = format!(
            "BYE sip:alice@{uac_at} SIP/2.0\r\n\
Via: SIP/2.0/UDP {uas_at};branch=z9hG4bKbye{call};rport\r\n\
Route: <sip:{v6};lr>, <sip:{v4};lr>\r\n\
From: <sip:bob@[::1]>;tag=b1\r\nTo: <sip:alice@127.0.0.1>;tag=a1\r\nCall-ID: {call}\r\n\
CSeq: 2 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        );
        uas.send_to(bye.as_bytes(), v6).unwrap();
        let (got, from) = recv(&uac, "BYE at the IPv4 caller");
        assert_eq!(from, v4, "{call}: the BYE from our 127.0.0.1");
        let m = Message::parse(&got).unwrap();
        assert_eq!(m.method(), Some(Method::Bye), "{call}");
        assert_eq!(m.count_of(HeaderName::Route), 0, "{call}: both Routes ours");
        let via = header(&got, HeaderName::Via);
        assert!(
            via.starts_with(&format!("SIP/2.0/UDP {v4};branch=")),
            "{call}: our Via names 127.0.0.1: {via}"
        );
        uac.send_to(&response_to(&got, 200, "OK"), from).unwrap();
        let (ok, from) = recv(&uas, "the BYE's 200 at the IPv6 callee");
        assert_eq!(status(&ok), Some(200), "{call}");
        assert_eq!(from, v6, "{call}: from our [::1]");
    }
    assert_eq!(crossed(proxy), 4 * calls.len() as u64);
}

/// The other way, without a dialog: an IPv6 client's OPTIONS for an IPv4
/// server leaves from our 127.0.0.1 naming it, with no Record-Route
/// (OPTIONS makes no dialog), and the answer returns from our [::1].
fn a_request_crosses_from_ipv6_to_ipv4(io: &str) {
    let Some((proxy, v4, v6)) = start(io, &["--record-route"]) else {
        return;
    };
    let (uac, uas) = (bind("[::1]:0"), bind("127.0.0.1:0"));
    let (uac_at, uas_at) = (uac.local_addr().unwrap(), uas.local_addr().unwrap());
    for call in call_ids_on_both_shards("dual6", 8) {
        let options = format!(
            "OPTIONS sip:bob@{uas_at} SIP/2.0\r\n\
Via: SIP/2.0/UDP {uac_at};branch=z9hG4bK{call}\r\n\
To: <sip:bob@127.0.0.1>\r\nFrom: <sip:alice@[::1]>;tag=a6\r\nCall-ID: {call}\r\n\
CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        );
        uac.send_to(options.as_bytes(), v6).unwrap();
        let (fwd, from) = recv(&uas, "OPTIONS at the IPv4 server");
        assert_eq!(from, v4, "{call}");
        assert!(header(&fwd, HeaderName::Via).starts_with(&format!("SIP/2.0/UDP {v4};")));
        assert_eq!(
            Message::parse(&fwd)
                .unwrap()
                .count_of(HeaderName::RecordRoute),
            0
        );
        uas.send_to(&response_to(&fwd, 200, "OK"), from).unwrap();
        let (ok, from) = recv(&uac, "200 at the IPv6 client");
        assert_eq!((status(&ok), from), (Some(200), v6), "{call}");
    }
    assert_eq!(crossed(proxy), 16);
}

/// IPv6 clients over TCP, with UDP listens of both families: the kernel
/// gives their connections to shards of either socket (each accepts on
/// its own listener), and every request
/// still leaves for its IPv6 next hop from our [::1] UDP socket, naming
/// it; each response comes back on its connection.
fn tcp_from_ipv6_reaches_an_ipv6_next_hop_from_any_shard(io: &str) {
    let Some((proxy, _, v6)) = start(io, &["--listen", "tcp:[::1]:0"]) else {
        return;
    };
    let tcp = stream_addr(&proxy.banner, "tcp");
    let uas = bind("[::1]:0");
    let uas_at = uas.local_addr().unwrap();
    // Enough connections that the kernel's hash puts some on the shards
    // of the IPv4 socket (4 listeners: all on one has odds 4 / 4^16).
    for k in 0..16 {
        let mut c = TcpStream::connect(tcp).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let me = c.local_addr().unwrap();
        let call = format!("{k}-v6tcp");
        let req = format!(
            "OPTIONS sip:bob@{uas_at} SIP/2.0\r\n\
Via: SIP/2.0/TCP {me};branch=z9hG4bK{call};rport\r\n\
To: <sip:bob@[::1]>\r\nFrom: <sip:alice@[::1]>;tag=t6\r\nCall-ID: {call}\r\n\
CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        );
        c.write_all(req.as_bytes()).unwrap();
        let (fwd, from) = recv(&uas, "OPTIONS at the IPv6 server");
        assert_eq!(from, v6, "{call}: from our [::1] socket");
        let via = header(&fwd, HeaderName::Via);
        assert!(
            via.starts_with(&format!("SIP/2.0/UDP {v6};")),
            "{call}: {via}"
        );
        uas.send_to(&response_to(&fwd, 200, "OK"), from).unwrap();
        let got = read_message(&mut c, &mut Vec::new());
        assert_eq!(status(&got), Some(200), "{call}");
    }
    // Each connection on a shard of the IPv4 socket crossed (all 16 on
    // the IPv6 ones: odds 1 in 2^16).
    assert!(crossed(proxy) > 0, "no connection landed on an IPv4 shard");
}

on_both_backends!(
    a_call_crosses_from_ipv4_to_ipv6_and_back,
    a_request_crosses_from_ipv6_to_ipv4,
    tcp_from_ipv6_reaches_an_ipv6_next_hop_from_any_shard,
);
