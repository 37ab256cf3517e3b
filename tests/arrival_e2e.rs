//! The address a datagram arrived at (`IP_PKTINFO`) end to end: the real
//! binary on loopback, where every 127.0.0.0/8 address is ours, so a
//! client can reach the proxy at 127.0.0.2 or 127.0.0.3 while the proxy
//! would, left to the kernel, answer from 127.0.0.1. Every test runs on
//! both I/O backends; the io_uring ones skip, saying why, where io_uring
//! is refused.

#[macro_use]
mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::time::Duration;

use common::process::{listen_addrs, port, spawn, Proxy};
use sipshard::location::owner_of;
use sipshard::sip::{HeaderName, Message, Method};

/// Loopback addresses other than 127.0.0.1 (all of 127.0.0.0/8 is local).
const LO2: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const LO3: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);

/// Starts sipshard with exactly `args` (plus `--io`); None (with a note)
/// when io_uring is refused.
fn start(io: &str, args: &[&str]) -> Option<Proxy> {
    let mut all = args.to_vec();
    all.extend_from_slice(&["--io", io]);
    let (mut child, banner, err) = spawn(&all);
    if banner.contains("io_uring is not available") {
        eprintln!("skipping the io_uring run: {}", banner.trim());
        let _ = child.wait();
        return None;
    }
    let Some(&addr) = listen_addrs(&banner).first() else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("no address in banner: {banner}");
    };
    assert!(banner.contains(&format!("io={io}")), "{banner}");
    Some(Proxy {
        child,
        addr,
        banner,
        err,
    })
}

/// A UDP socket on `ip`, port chosen by the kernel, reads bounded by 3 s.
fn socket_on(ip: IpAddr) -> UdpSocket {
    let s = UdpSocket::bind(SocketAddr::new(ip, 0)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    s
}

/// The next datagram (within the socket's timeout) and its source address.
fn recv_from(s: &UdpSocket, what: &str) -> (Vec<u8>, SocketAddr) {
    let mut buf = vec![0u8; 65536];
    let (n, from) = s
        .recv_from(&mut buf)
        .unwrap_or_else(|e| panic!("{what}: no datagram within the timeout ({e})"));
    buf.truncate(n);
    (buf, from)
}

/// A request from `uac` for `bob` at the UAS socket, Via naming the UAC.
fn request(method: &str, uac: &UdpSocket, uas: &UdpSocket, branch: &str, extra: &str) -> String {
    let (uac, uas) = (uac.local_addr().unwrap(), uas.local_addr().unwrap());
    format!(
        "{method} sip:bob@{uas} SIP/2.0\r\n\
Via: SIP/2.0/UDP {uac};branch={branch}\r\n\
Max-Forwards: 70\r\n\
{extra}To: <sip:bob@{host}>\r\n\
From: <sip:alice@{host}>;tag=a1\r\n\
Call-ID: arrival-{branch}\r\n\
CSeq: 1 {method}\r\n\
Content-Length: 0\r\n\r\n",
        host = host(uas.ip()),
    )
}

/// An address as a URI host: IPv6 in brackets.
fn host(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(a) => a.to_string(),
        IpAddr::V6(a) => format!("[{a}]"),
    }
}

/// A UAS's response: the request's Vias, From, To (tagged), Call-ID, CSeq.
fn response_to(req: &[u8], code: u16, reason: &str) -> Vec<u8> {
    let m = Message::parse(req).unwrap();
    let mut out = format!("SIP/2.0 {code} {reason}\r\n");
    for v in m.values(HeaderName::Via) {
        out.push_str(&format!("Via: {}\r\n", String::from_utf8_lossy(v.text)));
    }
    let text = |h| String::from_utf8_lossy(m.header(h).unwrap()).into_owned();
    out.push_str(&format!(
        "From: {}\r\nTo: {};tag=b1\r\nCall-ID: {}\r\nCSeq: {}\r\nContent-Length: 0\r\n\r\n",
        text(HeaderName::From),
        text(HeaderName::To),
        text(HeaderName::CallId),
        text(HeaderName::CSeq),
    ));
    out.into_bytes()
}

fn text(d: &[u8]) -> String {
    String::from_utf8_lossy(d).into_owned()
}

/// The top Via's value as written, e.g. `SIP/2.0/UDP 127.0.0.2:5060;branch=…`.
fn top_via(m: &Message<'_>) -> String {
    m.values(HeaderName::Via)
        .next()
        .map(|v| text(v.text))
        .unwrap_or_default()
}

/// With `--listen` on a wildcard and no `--advertise`, the proxy is the
/// address the request came to: a UAC sends to `front` (an address other
/// than 127.0.0.1 the kernel would pick as source); the INVITE reaches
/// the UAS from `front`, with our Via and Record-Route naming `front`; the
/// UAS's 200, sent to our Via, reaches the UAC from `front`; a BYE whose
/// Route names `front` has it removed; the INVITE sent back to `front` is
/// a loop, and the 482 reaches the UAC.
fn check_wildcard_names_the_arrival_address(io: &str, listen: &str, front: IpAddr, ua: IpAddr) {
    let Some(proxy) = start(io, &["--listen", listen, "--shards", "2", "--record-route"]) else {
        return;
    };
    assert!(proxy.addr.ip().is_unspecified(), "{}", proxy.banner);
    let front = SocketAddr::new(front, proxy.addr.port());
    let (uac, uas) = (socket_on(ua), socket_on(ua));

    let invite = request("INVITE", &uac, &uas, "z9hG4bKw1", "");
    uac.send_to(invite.as_bytes(), front).unwrap();
    let (got, from) = recv_from(&uas, "the INVITE at the UAS");
    let m = Message::parse(&got).unwrap();
    m.validate().unwrap();
    assert_eq!(m.method(), Some(Method::Invite));
    assert_eq!(from, front, "forwarded from the address it came to");
    let via = top_via(&m);
    assert!(
        via.starts_with(&format!("SIP/2.0/UDP {front};branch=z9hG4bK")),
        "our Via names the arrival address: {via}\n{}",
        text(&got)
    );
    let rr: Vec<String> = m
        .values(HeaderName::RecordRoute)
        .map(|v| text(v.text))
        .collect();
    assert_eq!(rr, vec![format!("<sip:{front};lr>")], "{}", text(&got));

    // The INVITE sent straight back to `front` (by an element at the
    // arrival address, so that no `received` is added to our Via): our
    // Via, with the branch we would write for it now, names us, so it is a
    // loop (§16.3 step 4); the 482 goes to our Via, which is us too, and
    // on to the UAC.
    let bouncer = socket_on(front.ip());
    bouncer.send_to(&got, front).unwrap();
    let (back, from) = recv_from(&uac, "the 482 at the UAC");
    assert_eq!(
        Message::parse(&back).unwrap().status(),
        Some(482),
        "{}",
        text(&back)
    );
    assert_eq!(from, front);

    // The UAS answers to our Via, that is to `front`; the 200 reaches the
    // UAC from `front`, without our Via.
    uas.send_to(&response_to(&got, 200, "OK"), front).unwrap();
    let (back, from) = recv_from(&uac, "the 200 at the UAC");
    let r = Message::parse(&back).unwrap();
    assert_eq!(r.status(), Some(200), "{}", text(&back));
    assert_eq!(from, front, "the 200 leaves from the arrival address");
    assert_eq!(r.vias().count(), 1, "our Via removed: {}", text(&back));

    // In the dialog, the route set's entry for us is removed (§16.4).
    let bye = request(
        "BYE",
        &uac,
        &uas,
        "z9hG4bKw2",
        &format!("Route: <sip:{front};lr>\r\n"),
    );
    uac.send_to(bye.as_bytes(), front).unwrap();
    let (got, from) = recv_from(&uas, "the BYE at the UAS");
    let m = Message::parse(&got).unwrap();
    assert_eq!(m.method(), Some(Method::Bye), "{}", text(&got));
    assert_eq!(m.routes().count(), 0, "our Route removed: {}", text(&got));
    assert_eq!(m.vias().count(), 2, "through us once: {}", text(&got));
    assert_eq!(from, front);

    assert_eq!(proxy.terminate(), Some(0), "SIGTERM: clean exit");
}

fn wildcard_listen_names_the_arrival_address_in_via_and_record_route(io: &str) {
    check_wildcard_names_the_arrival_address(
        io,
        "0.0.0.0:0",
        IpAddr::V4(LO2),
        IpAddr::V4(Ipv4Addr::LOCALHOST),
    );
}

/// A local answer (200 to an OPTIONS for us) leaves from the address the
/// OPTIONS came to, not from the one the kernel would choose (127.0.0.1).
fn a_local_answer_leaves_from_the_arrival_address(io: &str) {
    let Some(proxy) = start(io, &["--listen", "0.0.0.0:0", "--shards", "2"]) else {
        return;
    };
    let front = SocketAddr::new(IpAddr::V4(LO3), proxy.addr.port());
    let uac = socket_on(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let options = format!(
        "OPTIONS sip:{front} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{};branch=z9hG4bKo3\r\n\
Max-Forwards: 70\r\nTo: <sip:{front}>\r\nFrom: <sip:alice@127.0.0.1>;tag=o3\r\n\
Call-ID: arrival-o3\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
        port(&uac)
    );
    uac.send_to(options.as_bytes(), front).unwrap();
    let (back, from) = recv_from(&uac, "the answer to OPTIONS");
    let m = Message::parse(&back).unwrap();
    assert_eq!(m.status(), Some(200), "answered by us: {}", text(&back));
    assert!(m.header(HeaderName::Allow).is_some(), "{}", text(&back));
    assert_eq!(from, front, "answered from the address asked");
    assert_eq!(proxy.terminate(), Some(0), "SIGTERM: clean exit");
}

/// A port free on both 127.0.0.1 and 127.0.0.2 (UDP) at the time of asking.
fn free_port_on_both() -> u16 {
    for _ in 0..50 {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let p = a.local_addr().unwrap().port();
        if UdpSocket::bind((LO2, p)).is_ok() {
            return p;
        }
    }
    panic!("no UDP port free on both 127.0.0.1 and 127.0.0.2");
}

/// Starts sipshard on 127.0.0.1:P and 127.0.0.2:P (one port), retrying
/// with another port when someone took it in between.
fn start_on_one_port_twice(io: &str, extra: &[&str]) -> Option<(Proxy, u16)> {
    for _ in 0..5 {
        let p = free_port_on_both();
        let (a, b) = (format!("127.0.0.1:{p}"), format!("127.0.0.2:{p}"));
        let mut args = vec!["--listen", &a, "--listen", &b, "--io", io];
        args.extend_from_slice(extra);
        let (mut child, banner, err) = spawn(&args);
        if banner.contains("io_uring is not available") {
            eprintln!("skipping the io_uring run: {}", banner.trim());
            let _ = child.wait();
            return None;
        }
        let addrs = listen_addrs(&banner);
        if addrs.len() != 2 {
            eprintln!("retrying with another port: {}", banner.trim());
            let _ = child.kill();
            let _ = child.wait();
            continue;
        }
        assert_eq!(addrs, [a.parse().unwrap(), b.parse().unwrap()], "{banner}");
        assert!(banner.contains(&format!("io={io}")), "{banner}");
        let proxy = Proxy {
            child,
            addr: addrs[0],
            banner,
            err,
        };
        return Some((proxy, p));
    }
    panic!("could not start on one port on 127.0.0.1 and 127.0.0.2");
}

/// Two listen addresses with one port, two shards each (four in all): a
/// REGISTER that came to one of them is answered from it, whichever
/// shard owns the AOR, including one whose socket is bound to the other
/// address (that owner answers from its own socket, naming the arrival
/// address as source).
fn register_answers_leave_from_the_listen_address_asked(io: &str) {
    const USERS: usize = 40;
    const SHARDS: usize = 4; // 2 listen addresses × --shards 2
    let Some((proxy, p)) =
        start_on_one_port_twice(io, &["--shards", "2", "--domain", "example.com"])
    else {
        return;
    };
    let users: Vec<String> = (0..USERS).map(|i| format!("arrival{i}")).collect();
    // The owners fall on the shards of both addresses (shards 0-1 are
    // 127.0.0.1's, 2-3 127.0.0.2's).
    let owners: Vec<usize> = users
        .iter()
        .map(|u| owner_of(format!("sip:{u}@example.com").as_bytes(), SHARDS))
        .collect();
    assert!(owners.iter().any(|&o| o < 2), "{owners:?}");
    assert!(owners.iter().any(|&o| o >= 2), "{owners:?}");

    let ua = socket_on(IpAddr::V4(Ipv4Addr::LOCALHOST));
    for (round, ip) in [LO2, Ipv4Addr::LOCALHOST].into_iter().enumerate() {
        let front = SocketAddr::new(IpAddr::V4(ip), p);
        for (i, user) in users.iter().enumerate() {
            let reg = format!(
                "REGISTER sip:example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:{ua};branch=z9hG4bKg{round}x{i}\r\n\
Max-Forwards: 70\r\nTo: <sip:{user}@example.com>\r\n\
From: <sip:{user}@example.com>;tag=g{i}\r\nCall-ID: arrival-reg-{user}\r\n\
CSeq: {cseq} REGISTER\r\nContact: <sip:{user}@127.0.0.1:{ua}>\r\n\
Expires: 300\r\nContent-Length: 0\r\n\r\n",
                ua = port(&ua),
                cseq = round + 1,
            );
            ua.send_to(reg.as_bytes(), front).unwrap();
            let what = format!("the answer to {user}'s REGISTER to {front}");
            let (back, from) = recv_from(&ua, &what);
            let m = Message::parse(&back).unwrap();
            assert_eq!(m.status(), Some(200), "{what}: {}", text(&back));
            assert_eq!(
                from, front,
                "{what} (owner shard {}) came from {from}",
                owners[i]
            );
        }
    }
    assert_eq!(proxy.terminate(), Some(0), "SIGTERM: clean exit");
}

/// A request bounced straight back to the arrival address by an element
/// at another address (as `a_request_sent_back_to_the_proxy_is_482` in
/// proxy_e2e.rs does with `--listen 127.0.0.1:0`): the 482 should reach
/// the UAC. It does not under a wildcard: the loop is detected, but as
/// the bounce came from 127.0.0.1 our Via (127.0.0.2) gets
/// `received=127.0.0.1`, so the 482 is sent to 127.0.0.1:PORT, where it
/// arrives at 127.0.0.1 and its top Via (127.0.0.2) is not us for that
/// arrival address: dropped as `not_our_via`. Before the arrival address
/// (1f61d3c) our Via named 127.0.0.1 and the 482 went through.
fn a_loop_bounced_from_another_address_gets_its_482(io: &str) {
    let Some(proxy) = start(io, &["--listen", "0.0.0.0:0", "--shards", "2"]) else {
        return;
    };
    let front = SocketAddr::new(IpAddr::V4(LO2), proxy.addr.port());
    let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let (uac, uas) = (socket_on(lo), socket_on(lo));
    let invite = request("INVITE", &uac, &uas, "z9hG4bKb1", "");
    uac.send_to(invite.as_bytes(), front).unwrap();
    let (got, _) = recv_from(&uas, "the INVITE at the UAS");
    uas.send_to(&got, front).unwrap();
    let (back, _) = recv_from(&uac, "the 482 at the UAC");
    assert_eq!(
        Message::parse(&back).unwrap().status(),
        Some(482),
        "{}",
        text(&back)
    );
}

on_both_backends!(
    wildcard_listen_names_the_arrival_address_in_via_and_record_route,
    a_local_answer_leaves_from_the_arrival_address,
    register_answers_leave_from_the_listen_address_asked,
    ipv6_wildcard_listen_names_the_arrival_address,
    a_loop_bounced_from_another_address_gets_its_482,
);

/// The IPv6 wildcard: a request to [::1] names [::1] in our Via and
/// Record-Route (before, the stand-in 127.0.0.1 did, an IPv4 address on
/// an IPv6 path).
fn ipv6_wildcard_listen_names_the_arrival_address(io: &str) {
    if UdpSocket::bind("[::1]:0").is_err() {
        eprintln!("skipping: no IPv6 loopback here");
        return;
    }
    let lo6 = IpAddr::V6(std::net::Ipv6Addr::LOCALHOST);
    check_wildcard_names_the_arrival_address(io, "[::]:0", lo6, lo6);
}
