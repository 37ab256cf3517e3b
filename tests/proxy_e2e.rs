//! The proxy end to end: the real binary on loopback, with test UAC and UAS
//! sockets written here (RFC 3261 §16, RFC 3581). Every test runs on both
//! I/O backends; the io_uring ones skip, saying why, where the kernel or a
//! seccomp profile refuses io_uring.

#[macro_use]
mod common;

use std::net::UdpSocket;
use std::time::Duration;

use common::process::{listen_addrs, nothing_arrives, port, recv, socket, spawn, Proxy};

use sipshard::sip::{HeaderName, Message, Rport};

/// A request from the UAC to the UAS through the proxy.
fn request(
    method: &str,
    uac: &UdpSocket,
    uas: &UdpSocket,
    branch: &str,
    call: &str,
    extra: &str,
) -> String {
    format!(
        "{method} sip:bob@127.0.0.1:{uas} SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:{uac};branch={branch}\r\n\
{extra}To: <sip:bob@127.0.0.1>\r\n\
From: <sip:alice@127.0.0.1>;tag=a1\r\n\
Call-ID: {call}\r\n\
CSeq: 1 {method}\r\n\
Content-Length: 0\r\n\r\n",
        uas = port(uas),
        uac = port(uac),
    )
}

/// A response from the UAS: the request's Via list, From, To (tagged),
/// Call-ID, CSeq, as a UAS builds it (§8.2.6).
fn response_to(req: &[u8], code: u16, reason: &str) -> Vec<u8> {
    let m = Message::parse(req).unwrap();
    let mut out = format!("SIP/2.0 {code} {reason}\r\n");
    for v in m.values(HeaderName::Via) {
        out.push_str(&format!("Via: {}\r\n", String::from_utf8_lossy(v.text)));
    }
    let to = String::from_utf8_lossy(m.header(HeaderName::To).unwrap());
    out.push_str(&format!(
        "From: {}\r\nTo: {to};tag=b1\r\nCall-ID: {}\r\nCSeq: {}\r\nContent-Length: 0\r\n\r\n",
        String::from_utf8_lossy(m.header(HeaderName::From).unwrap()),
        String::from_utf8_lossy(m.header(HeaderName::CallId).unwrap()),
        String::from_utf8_lossy(m.header(HeaderName::CSeq).unwrap()),
    ));
    out.into_bytes()
}

fn top_branch(d: &[u8]) -> Vec<u8> {
    Message::parse(d)
        .unwrap()
        .via()
        .unwrap()
        .branch
        .unwrap()
        .to_vec()
}

fn invite_goes_through_and_responses_come_back_without_our_via(io: &str) {
    let Some(proxy) = Proxy::start(io, &[]) else {
        return;
    };
    let (uac, uas) = (socket(), socket());
    let invite = request(
        "INVITE",
        &uac,
        &uas,
        "z9hG4bKc1",
        "call-1",
        "Max-Forwards: 70\r\n",
    );
    uac.send_to(invite.as_bytes(), proxy.addr).unwrap();
    let got = recv(&uas);
    let m = Message::parse(&got).unwrap();
    m.validate().unwrap();
    let vias: Vec<_> = m.vias().map(Result::unwrap).collect();
    assert_eq!(vias.len(), 2);
    assert_eq!(vias[0].port, Some(proxy.addr.port()), "our Via on top");
    assert_eq!(vias[1].branch, Some(&b"z9hG4bKc1"[..]));
    assert_eq!(m.max_forwards(), Ok(Some(69)));

    for (code, reason) in [(100, "Trying"), (180, "Ringing"), (200, "OK")] {
        uas.send_to(&response_to(&got, code, reason), proxy.addr)
            .unwrap();
        let back = recv(&uac);
        let r = Message::parse(&back).unwrap();
        assert_eq!(r.status(), Some(code));
        let vias: Vec<_> = r.vias().map(Result::unwrap).collect();
        assert_eq!(vias.len(), 1, "our Via removed");
        assert_eq!(vias[0].branch, Some(&b"z9hG4bKc1"[..]));
    }

    // ACK and BYE follow, and the BYE's 200 comes back.
    let ack = request("ACK", &uac, &uas, "z9hG4bKc2", "call-1", "");
    uac.send_to(ack.as_bytes(), proxy.addr).unwrap();
    assert_eq!(
        Message::parse(&recv(&uas)).unwrap().method(),
        Some(sipshard::sip::Method::Ack)
    );
    let bye = request("BYE", &uac, &uas, "z9hG4bKc3", "call-1", "");
    uac.send_to(bye.as_bytes(), proxy.addr).unwrap();
    let got_bye = recv(&uas);
    assert_eq!(
        Message::parse(&got_bye).unwrap().method(),
        Some(sipshard::sip::Method::Bye)
    );
    uas.send_to(&response_to(&got_bye, 200, "OK"), proxy.addr)
        .unwrap();
    assert_eq!(Message::parse(&recv(&uac)).unwrap().status(), Some(200));
    assert_eq!(proxy.terminate(), Some(0), "SIGTERM: clean exit");
}

fn retransmission_and_cancel_get_the_branch_of_the_invite(io: &str) {
    let Some(proxy) = Proxy::start(io, &[]) else {
        return;
    };
    let (uac, uas) = (socket(), socket());
    let invite = request("INVITE", &uac, &uas, "z9hG4bKr1", "call-2", "");
    uac.send_to(invite.as_bytes(), proxy.addr).unwrap();
    let first = top_branch(&recv(&uas));
    uac.send_to(invite.as_bytes(), proxy.addr).unwrap();
    assert_eq!(top_branch(&recv(&uas)), first);
    let cancel = request("CANCEL", &uac, &uas, "z9hG4bKr1", "call-2", "");
    uac.send_to(cancel.as_bytes(), proxy.addr).unwrap();
    let got = recv(&uas);
    assert_eq!(
        Message::parse(&got).unwrap().method(),
        Some(sipshard::sip::Method::Cancel)
    );
    assert_eq!(top_branch(&got), first);
}

fn max_forwards_zero_is_483(io: &str) {
    let Some(proxy) = Proxy::start(io, &[]) else {
        return;
    };
    let (uac, uas) = (socket(), socket());
    let invite = request(
        "INVITE",
        &uac,
        &uas,
        "z9hG4bKm1",
        "call-3",
        "Max-Forwards: 0\r\n",
    );
    uac.send_to(invite.as_bytes(), proxy.addr).unwrap();
    let r = recv(&uac);
    let m = Message::parse(&r).unwrap();
    assert_eq!(m.status(), Some(483));
    assert!(
        m.to().unwrap().tag().is_some(),
        "a final response carries a To tag"
    );
    assert!(nothing_arrives(&uas));
}

fn a_request_sent_back_to_the_proxy_is_482(io: &str) {
    let Some(proxy) = Proxy::start(io, &[]) else {
        return;
    };
    let (uac, uas) = (socket(), socket());
    let invite = request("INVITE", &uac, &uas, "z9hG4bKl1", "call-4", "");
    uac.send_to(invite.as_bytes(), proxy.addr).unwrap();
    let forwarded = recv(&uas);
    // The "UAS" sends the request straight back: a loop.
    uas.send_to(&forwarded, proxy.addr).unwrap();
    // The 482 follows the Via path: to our Via, then on to the UAC.
    let r = recv(&uac);
    assert_eq!(Message::parse(&r).unwrap().status(), Some(482));
}

fn rport_and_received_let_responses_reach_a_client_behind_nat(io: &str) {
    let Some(proxy) = Proxy::start(io, &[]) else {
        return;
    };
    let (uac, uas) = (socket(), socket());
    // The client names a port it does not listen on, and asks for rport.
    let invite = format!(
        "INVITE sip:bob@127.0.0.1:{} SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.77:9;branch=z9hG4bKn1;rport\r\n\
To: <sip:bob@127.0.0.1>\r\nFrom: <sip:alice@127.0.0.1>;tag=a1\r\nCall-ID: call-5\r\nCSeq: 1 INVITE\r\n\r\n",
        port(&uas)
    );
    uac.send_to(invite.as_bytes(), proxy.addr).unwrap();
    let got = recv(&uas);
    let client_via = Message::parse(&got)
        .unwrap()
        .vias()
        .nth(1)
        .unwrap()
        .unwrap();
    assert_eq!(client_via.rport, Rport::Value(port(&uac)));
    assert_eq!(client_via.received, Some(&b"127.0.0.1"[..]));
    uas.send_to(&response_to(&got, 180, "Ringing"), proxy.addr)
        .unwrap();
    assert_eq!(Message::parse(&recv(&uac)).unwrap().status(), Some(180));
}

fn record_route_then_an_in_dialog_request_is_loose_routed(io: &str) {
    let Some(proxy) = Proxy::start(io, &["--record-route"]) else {
        return;
    };
    let (uac, uas) = (socket(), socket());
    let invite = request("INVITE", &uac, &uas, "z9hG4bKrr1", "call-6", "");
    uac.send_to(invite.as_bytes(), proxy.addr).unwrap();
    let got = recv(&uas);
    let rr: Vec<Vec<u8>> = Message::parse(&got)
        .unwrap()
        .record_routes()
        .map(|r| r.unwrap().uri.to_vec())
        .collect();
    let ours = format!("sip:{};lr", proxy.addr);
    assert_eq!(rr, vec![ours.clone().into_bytes()]);
    // The UAC's BYE carries the route set; the proxy removes its own entry.
    let bye = request(
        "BYE",
        &uac,
        &uas,
        "z9hG4bKrr2",
        "call-6",
        &format!("Route: <{ours}>\r\n"),
    );
    uac.send_to(bye.as_bytes(), proxy.addr).unwrap();
    let got = recv(&uas);
    let m = Message::parse(&got).unwrap();
    assert_eq!(m.method(), Some(sipshard::sip::Method::Bye));
    assert_eq!(m.routes().count(), 0);
}

/// §16.6 step 4, §12.2, §10.2: with --record-route, only a request that
/// can create a dialog (no To tag; not REGISTER, OPTIONS, CANCEL, ACK)
/// gets our Record-Route; the ACK and BYE of the dialog do not.
fn record_route_only_on_requests_that_can_create_a_dialog(io: &str) {
    let Some(proxy) = Proxy::start(io, &["--record-route"]) else {
        return;
    };
    let (uac, uas) = (socket(), socket());
    let rr_count = |method: &str, branch: &str, to_tag: bool| {
        let mut req = request(method, &uac, &uas, branch, "call-rr", "");
        if to_tag {
            req = req.replace("To: <sip:bob@127.0.0.1>", "To: <sip:bob@127.0.0.1>;tag=b1");
        }
        uac.send_to(req.as_bytes(), proxy.addr).unwrap();
        let got = recv(&uas);
        let m = Message::parse(&got).unwrap();
        assert_eq!(m.method().map(|m| m.to_string()).as_deref(), Some(method));
        m.record_routes().count()
    };
    assert_eq!(rr_count("INVITE", "z9hG4bKrd1", false), 1, "initial INVITE");
    assert_eq!(rr_count("ACK", "z9hG4bKrd2", true), 0, "ACK in the dialog");
    assert_eq!(rr_count("INVITE", "z9hG4bKrd3", true), 0, "re-INVITE");
    assert_eq!(rr_count("BYE", "z9hG4bKrd4", true), 0, "BYE in the dialog");
    assert_eq!(rr_count("REGISTER", "z9hG4bKrd5", false), 0, "REGISTER");
    assert_eq!(rr_count("OPTIONS", "z9hG4bKrd6", false), 0, "OPTIONS");
}

fn malformed_request_gets_400_and_garbage_is_dropped(io: &str) {
    let Some(proxy) = Proxy::start(io, &[]) else {
        return;
    };
    let (uac, uas) = (socket(), socket());
    let bad =
        request("INVITE", &uac, &uas, "z9hG4bKb1", "call-7", "").replace("Call-ID: call-7\r\n", "");
    uac.send_to(bad.as_bytes(), proxy.addr).unwrap();
    let r = recv(&uac);
    assert!(
        r.starts_with(b"SIP/2.0 400 Missing Call-ID\r\n"),
        "{}",
        String::from_utf8_lossy(&r)
    );
    for junk in [
        &b"\x00\x01\x02\xff\xfe"[..],
        b"\r\n\r\n",
        b"INVITE",
        &[0x80; 1400],
    ] {
        uac.send_to(junk, proxy.addr).unwrap();
    }
    assert!(nothing_arrives(&uac), "garbage gets no answer");
    let options = format!(
        "OPTIONS sip:{} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{};branch=z9hG4bKo1\r\nTo: <sip:x@127.0.0.1>\r\n\
From: <sip:y@127.0.0.1>;tag=1\r\nCall-ID: opt-1\r\nCSeq: 1 OPTIONS\r\n\r\n",
        proxy.addr,
        port(&uac)
    );
    uac.send_to(options.as_bytes(), proxy.addr).unwrap();
    let r = recv(&uac);
    let m = Message::parse(&r).unwrap();
    assert_eq!(m.status(), Some(200), "still answering after garbage");
    assert!(m.header(HeaderName::Allow).is_some());
    assert!(m.header(HeaderName::Accept).is_some());
    assert!(m.header(HeaderName::Supported).is_some());
}

/// §16.3 step 5: a Proxy-Require we do not support gets 420 with the tags
/// in Unsupported and is not forwarded; Require, for the UAS, passes.
fn proxy_require_we_lack_is_420_with_unsupported(io: &str) {
    let Some(proxy) = Proxy::start(io, &[]) else {
        return;
    };
    let (uac, uas) = (socket(), socket());
    let invite = request(
        "INVITE",
        &uac,
        &uas,
        "z9hG4bKpr1",
        "call-pr",
        "Proxy-Require: foo, bar\r\n",
    );
    uac.send_to(invite.as_bytes(), proxy.addr).unwrap();
    let r = recv(&uac);
    let m = Message::parse(&r).unwrap();
    assert_eq!(m.status(), Some(420), "{}", String::from_utf8_lossy(&r));
    let tags: Vec<&[u8]> = m.values(HeaderName::Unsupported).map(|v| v.text).collect();
    assert_eq!(tags, [&b"foo"[..], b"bar"]);
    assert!(nothing_arrives(&uas), "not forwarded");
    let invite = request(
        "INVITE",
        &uac,
        &uas,
        "z9hG4bKpr2",
        "call-pr2",
        "Require: foo\r\n",
    );
    uac.send_to(invite.as_bytes(), proxy.addr).unwrap();
    let got = recv(&uas);
    assert_eq!(
        Message::parse(&got).unwrap().header(HeaderName::Require),
        Some(&b"foo"[..])
    );
}

/// §20.42: a Via that is not SIP/2.0/<transport>, on top or below, gets
/// 400 and is not forwarded; a response whose next Via is so is dropped.
fn a_via_that_is_not_sip_2_0_is_400_and_never_forwarded(io: &str) {
    let Some(proxy) = Proxy::start(io, &[]) else {
        return;
    };
    let (uac, uas) = (socket(), socket());
    let good = request("INVITE", &uac, &uas, "z9hG4bKv1", "call-via", "");
    let top = format!("Via: SIP/2.0/UDP 127.0.0.1:{};branch=z9hG4bKv1", port(&uac));
    for bad in ["SIP/3.0/UDP", "FOO/2.0/UDP"] {
        let bad_top = good.replace("SIP/2.0/UDP", bad);
        let bad_below = good.replace(
            &top,
            &format!("{top}\r\nVia: {bad} 192.0.2.9;branch=z9hG4bKx"),
        );
        for data in [bad_top, bad_below] {
            uac.send_to(data.as_bytes(), proxy.addr).unwrap();
            let r = recv(&uac);
            assert!(
                r.starts_with(b"SIP/2.0 400 Via Not SIP/2.0\r\n"),
                "{}",
                String::from_utf8_lossy(&r)
            );
            assert!(nothing_arrives(&uas), "not forwarded: {data}");
        }
    }
    // A response with a next Via of another protocol is dropped.
    uac.send_to(good.as_bytes(), proxy.addr).unwrap();
    let got = recv(&uas);
    let resp = String::from_utf8(response_to(&got, 180, "Ringing")).unwrap();
    let at = resp.rfind("SIP/2.0/UDP").unwrap();
    let mut bad = resp.clone();
    bad.replace_range(at..at + 11, "SIP/3.0/UDP");
    uas.send_to(bad.as_bytes(), proxy.addr).unwrap();
    assert!(nothing_arrives(&uac), "a response along a bad Via");
    uas.send_to(resp.as_bytes(), proxy.addr).unwrap();
    assert_eq!(Message::parse(&recv(&uac)).unwrap().status(), Some(180));
}

/// §16.4 with RFC 5658 double Record-Route: every Route naming us at the
/// top goes, and the request leaves once, straight for the next hop.
fn double_record_route_both_our_routes_are_removed(io: &str) {
    let Some(proxy) = Proxy::start(io, &[]) else {
        return;
    };
    let (uac, uas) = (socket(), socket());
    let ours = format!("<sip:{0};lr>, <sip:{0};transport=tcp;lr>", proxy.addr);
    let bye = request(
        "BYE",
        &uac,
        &uas,
        "z9hG4bKdr1",
        "call-drr",
        &format!("Max-Forwards: 70\r\nRoute: {ours}\r\n"),
    );
    uac.send_to(bye.as_bytes(), proxy.addr).unwrap();
    let got = recv(&uas);
    let m = Message::parse(&got).unwrap();
    assert_eq!(m.method(), Some(sipshard::sip::Method::Bye));
    assert_eq!(m.routes().count(), 0, "{}", String::from_utf8_lossy(&got));
    assert_eq!(m.vias().count(), 2, "through us once");
    assert_eq!(m.max_forwards(), Ok(Some(69)));
}

/// Responses sent back to back leave in the order they came: a 200 that
/// overtakes its 180 fails the call at a strict UAC such as SIPp. (The
/// first io_uring version queued sends last-in-first-out and did this.)
fn back_to_back_responses_keep_their_order(io: &str) {
    let Some(proxy) = Proxy::start(io, &[]) else {
        return;
    };
    let (uac, uas) = (socket(), socket());
    for call in 0..20 {
        let invite = request(
            "INVITE",
            &uac,
            &uas,
            &format!("z9hG4bKo{call}"),
            &format!("order-{call}"),
            "",
        );
        uac.send_to(invite.as_bytes(), proxy.addr).unwrap();
        let got = recv(&uas);
        // Four datagrams, sent as fast as the socket takes them.
        for (c, r) in [
            (100, "Trying"),
            (180, "Ringing"),
            (183, "Session Progress"),
            (200, "OK"),
        ] {
            uas.send_to(&response_to(&got, c, r), proxy.addr).unwrap();
        }
        let order: Vec<u16> = (0..4)
            .map(|_| Message::parse(&recv(&uac)).unwrap().status().unwrap())
            .collect();
        assert_eq!(order, vec![100, 180, 183, 200], "call {call}");
    }
}

// Each scenario on each backend, as its own named test.
on_both_backends!(
    back_to_back_responses_keep_their_order,
    invite_goes_through_and_responses_come_back_without_our_via,
    retransmission_and_cancel_get_the_branch_of_the_invite,
    max_forwards_zero_is_483,
    a_request_sent_back_to_the_proxy_is_482,
    rport_and_received_let_responses_reach_a_client_behind_nat,
    record_route_then_an_in_dialog_request_is_loose_routed,
    malformed_request_gets_400_and_garbage_is_dropped,
    proxy_require_we_lack_is_420_with_unsupported,
    a_via_that_is_not_sip_2_0_is_400_and_never_forwarded,
    double_record_route_both_our_routes_are_removed,
    record_route_only_on_requests_that_can_create_a_dialog,
);

/// IPv6 end to end: listen on [::1], Via and Record-Route carry the
/// bracketed address, and responses find their way back.
#[test]
fn ipv6_loopback() {
    let Ok(probe) = UdpSocket::bind("[::1]:0") else {
        eprintln!("skipping: no IPv6 loopback here");
        return;
    };
    drop(probe);
    let (child, banner, err) = spawn(&["--listen", "[::1]:0", "--shards", "2", "--record-route"]);
    let addr = *listen_addrs(&banner)
        .first()
        .unwrap_or_else(|| panic!("{banner}"));
    let proxy = Proxy {
        child,
        addr,
        banner,
        err,
    };
    let bind6 = || {
        let s = UdpSocket::bind("[::1]:0").unwrap();
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        s
    };
    let (uac, uas) = (bind6(), bind6());
    let invite = format!(
        "INVITE sip:bob@[::1]:{} SIP/2.0\r\nVia: SIP/2.0/UDP [::1]:{};branch=z9hG4bK6a;rport\r\n\
To: <sip:bob@[::1]>\r\nFrom: <sip:alice@[::1]>;tag=a6\r\nCall-ID: v6-1\r\nCSeq: 1 INVITE\r\n\r\n",
        port(&uas),
        port(&uac)
    );
    uac.send_to(invite.as_bytes(), proxy.addr).unwrap();
    let got = recv(&uas);
    let m = Message::parse(&got).unwrap();
    let top = m.via().unwrap();
    assert_eq!(top.host_raw, b"[::1]");
    assert_eq!(top.port, Some(proxy.addr.port()));
    let rr = m.record_routes().next().unwrap().unwrap();
    assert_eq!(
        rr.uri,
        format!("sip:[::1]:{};lr", proxy.addr.port()).as_bytes()
    );
    let client = m.vias().nth(1).unwrap().unwrap();
    assert_eq!(client.rport, Rport::Value(port(&uac)));
    uas.send_to(&response_to(&got, 200, "OK"), proxy.addr)
        .unwrap();
    assert_eq!(Message::parse(&recv(&uac)).unwrap().status(), Some(200));
    assert_eq!(proxy.terminate(), Some(0));
}

/// Several --listen addresses at once: each is bound (port 0 resolved per
/// address), listed in the banner, and answers.
#[test]
fn several_listen_addresses() {
    let (child, banner, err) = spawn(&[
        "--listen",
        "127.0.0.1:0",
        "--listen",
        "127.0.0.2:0",
        "--shards",
        "1",
    ]);
    let addrs = listen_addrs(&banner);
    assert_eq!(addrs.len(), 2, "{banner}");
    let proxy = Proxy {
        child,
        addr: addrs[0],
        banner,
        err,
    };
    let uac = socket();
    for addr in &addrs {
        let m = format!(
            "OPTIONS sip:{addr} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{};branch=z9hG4bKm{}\r\n\
To: <sip:x@127.0.0.1>\r\nFrom: <sip:y@127.0.0.1>;tag=1\r\nCall-ID: multi-{}\r\nCSeq: 1 OPTIONS\r\n\r\n",
            port(&uac),
            addr.port(),
            addr.port()
        );
        uac.send_to(m.as_bytes(), addr).unwrap();
        let mut buf = [0u8; 2048];
        let (n, from) = uac.recv_from(&mut buf).unwrap();
        assert_eq!(from, *addr, "answered from the address asked");
        assert_eq!(Message::parse(&buf[..n]).unwrap().status(), Some(200));
    }
    assert_eq!(proxy.terminate(), Some(0));
}

/// An ACK is never answered (§17), even when it is broken or has run out
/// of hops: it is dropped and counted.
#[test]
fn an_ack_gets_no_answer() {
    let Some(proxy) = Proxy::start("mmsg", &[]) else {
        return;
    };
    let (uac, uas) = (socket(), socket());
    let ack = request(
        "ACK",
        &uac,
        &uas,
        "z9hG4bKa0",
        "ack-1",
        "Max-Forwards: 0\r\n",
    );
    uac.send_to(ack.as_bytes(), proxy.addr).unwrap();
    assert!(nothing_arrives(&uac), "no 483 for an ACK");
    assert!(nothing_arrives(&uas), "and it is not forwarded");
    assert_eq!(proxy.terminate(), Some(0));
}
