//! The stateful proxy over connections (`--mode stateful`, RFC 3261
//! §17 over a reliable transport): a caller on TCP, upstreams on TCP, and
//! a device registered over TCP forked to beside one on UDP. Over a
//! connection the transport retransmits, so the proxy does not: that is
//! the difference from UDP these tests hold, besides everything a
//! transaction does on both. The real binary on loopback, two shards,
//! both backends.

#[macro_use]
mod common;

use std::io::Write;
use std::net::{TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use common::process::{counter, nothing_arrives, port, recv, socket, stream_addr, Proxy};
use common::sip::{read_message, response_to};
use common::tcp::{connect, TcpUas};
use sipshard::sip::{HeaderName, Message};

fn status(m: &[u8]) -> Option<u16> {
    Message::parse(m).ok()?.status()
}

fn method_of(m: &[u8]) -> String {
    String::from_utf8_lossy(m.split(|&b| b == b' ').next().unwrap_or_default()).into_owned()
}

fn header(m: &[u8], h: HeaderName) -> String {
    let m = Message::parse(m).unwrap();
    String::from_utf8_lossy(m.header(h).unwrap_or_default()).into_owned()
}

fn top_branch(m: &[u8]) -> String {
    let m = Message::parse(m).unwrap();
    String::from_utf8_lossy(m.via().unwrap().branch.unwrap()).into_owned()
}

/// A request from the TCP client `c` for bob at `to`.
fn over_tcp(method: &str, c: &TcpStream, to: &str, call: &str) -> String {
    let me = c.local_addr().unwrap();
    format!(
        "{method} sip:bob@{to} SIP/2.0\r\n\
Via: SIP/2.0/TCP {me};branch=z9hG4bK{call};rport\r\n\
To: <sip:bob@127.0.0.1>\r\nFrom: <sip:alice@127.0.0.1>;tag=a1\r\nCall-ID: {call}\r\n\
CSeq: 1 {method}\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    )
}

/// A request from the UDP client `c` for bob at `to`.
fn over_udp(method: &str, c: &UdpSocket, to: &str, call: &str) -> String {
    format!(
        "{method} sip:bob@{to} SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:{p};branch=z9hG4bK{call};rport\r\n\
To: <sip:bob@{to}>\r\nFrom: <sip:alice@127.0.0.1>;tag=a1\r\nCall-ID: {call}\r\n\
CSeq: 1 {method}\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
        p = port(c)
    )
}

/// The next message on `c` that is not 100 Trying.
fn next_answer(c: &UdpSocket) -> Vec<u8> {
    loop {
        let m = recv(c);
        if status(&m) != Some(100) {
            return m;
        }
    }
}

/// §17.2 over TCP: the caller's INVITE gets 100 Trying from the proxy at
/// once, the next hop's 180 and 487 come back on the connection, the
/// caller's CANCEL is matched to the INVITE's transaction (200 at once,
/// a CANCEL to the ringing branch) and its ACK of the 487 ends at the
/// proxy, which ACKed the next hop itself.
fn a_caller_on_tcp_gets_a_transaction(io: &str) {
    let Some(proxy) = Proxy::start(io, &["--listen", "tcp:127.0.0.1:0", "--mode", "stateful"])
    else {
        return;
    };
    let tcp = stream_addr(&proxy.banner, "tcp");
    let mut caller = connect(tcp);
    let mut buf = Vec::new();
    let uas = socket();
    let callee = format!("127.0.0.1:{}", port(&uas));
    let invite = over_tcp("INVITE", &caller, &callee, "tcp-tx-1");
    caller.write_all(invite.as_bytes()).unwrap();
    assert_eq!(
        status(&read_message(&mut caller, &mut buf)),
        Some(100),
        "the proxy's 100, before the next hop answered anything"
    );
    let fwd = recv(&uas);
    assert!(header(&fwd, HeaderName::Via).starts_with("SIP/2.0/UDP "));
    uas.send_to(&response_to(&fwd, 180, "Ringing"), proxy.addr)
        .unwrap();
    assert_eq!(status(&read_message(&mut caller, &mut buf)), Some(180));
    let cancel = invite
        .replacen("INVITE sip:", "CANCEL sip:", 1)
        .replace("1 INVITE", "1 CANCEL");
    caller.write_all(cancel.as_bytes()).unwrap();
    let ok = read_message(&mut caller, &mut buf);
    assert_eq!(status(&ok), Some(200));
    assert_eq!(header(&ok, HeaderName::CSeq), "1 CANCEL");
    let theirs = recv(&uas);
    assert_eq!(method_of(&theirs), "CANCEL");
    assert_eq!(top_branch(&theirs), top_branch(&fwd));
    uas.send_to(&response_to(&theirs, 200, "OK"), proxy.addr)
        .unwrap();
    uas.send_to(&response_to(&fwd, 487, "Request Terminated"), proxy.addr)
        .unwrap();
    assert_eq!(status(&read_message(&mut caller, &mut buf)), Some(487));
    assert_eq!(method_of(&recv(&uas)), "ACK", "hop by hop");
    let ack = invite
        .replacen("INVITE sip:", "ACK sip:", 1)
        .replace("1 INVITE", "1 ACK")
        .replace("To: <sip:bob@127.0.0.1>", "To: <sip:bob@127.0.0.1>;tag=b1");
    caller.write_all(ack.as_bytes()).unwrap();
    assert!(nothing_arrives(&uas), "the caller's ACK ends at the proxy");
    let report = proxy.stop_and_report();
    assert_eq!(counter(&report, "tx_created"), 1, "{report}");
}

/// The first of two TCP upstreams to get a message within `ms`: its
/// index, the message and its connection.
fn first_of(ups: &mut [TcpUas; 2], ms: u64) -> Option<(usize, Vec<u8>, usize)> {
    let end = Instant::now() + Duration::from_millis(ms);
    while Instant::now() < end {
        for (i, u) in ups.iter_mut().enumerate() {
            if let Some((m, conn)) = u.next_within(5) {
                return Some((i, m, conn));
            }
        }
    }
    None
}

/// §17.1.1.2 over TCP: toward a TCP upstream the proxy does not
/// retransmit (Timer A is for unreliable transports), and when the
/// upstream stays silent past `--fr-timeout` (Timer B) the request fails
/// over to the next TCP upstream, whose answer reaches the caller.
fn a_silent_tcp_upstream_gets_no_retransmission_and_is_failed_over(io: &str) {
    let mut ups = [TcpUas::new(), TcpUas::new()];
    let (a, b) = (
        format!("tcp:127.0.0.1:{}", ups[0].port()),
        format!("tcp:127.0.0.1:{}", ups[1].port()),
    );
    let args = [
        "--mode",
        "stateful",
        "--upstream",
        &a,
        "--upstream",
        &b,
        "--t1",
        "50",
        "--fr-timeout",
        "800",
    ];
    let Some(proxy) = Proxy::start(io, &args) else {
        return;
    };
    let caller = socket();
    let invite = over_udp("INVITE", &caller, "example.net", "tcp-fo-1");
    caller.send_to(invite.as_bytes(), proxy.addr).unwrap();
    assert_eq!(status(&recv(&caller)), Some(100));
    let (silent, first, _) = first_of(&mut ups, 3000).expect("the INVITE at an upstream");
    assert_eq!(method_of(&first), "INVITE");
    assert!(header(&first, HeaderName::Via).starts_with("SIP/2.0/TCP "));
    // Over UDP, T1 = 50 ms would have sent it again 3 times by 400 ms.
    assert!(
        ups[silent].next_within(400).is_none(),
        "no retransmission over TCP"
    );
    let other = 1 - silent;
    let (second, conn) = ups[other].next();
    assert_eq!(method_of(&second), "INVITE");
    assert_ne!(
        top_branch(&second),
        top_branch(&first),
        "a branch of its own"
    );
    ups[other].conns[conn]
        .0
        .write_all(&response_to(&second, 200, "OK"))
        .unwrap();
    assert_eq!(status(&next_answer(&caller)), Some(200));
    let report = proxy.stop_and_report();
    assert_eq!(counter(&report, "tx_timeouts"), 1, "{report}");
}

/// §16.9: a TCP upstream that refuses the connection counts as a 503 at
/// once, so the call fails over to the next upstream without waiting for
/// `--fr-timeout` (30 s here, longer than the test).
fn a_refused_tcp_upstream_fails_over_at_once(io: &str) {
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_port = dead.local_addr().unwrap().port();
    drop(dead);
    let mut live = TcpUas::new();
    let (a, b) = (
        format!("tcp:127.0.0.1:{dead_port}"),
        format!("tcp:127.0.0.1:{}", live.port()),
    );
    let args = [
        "--mode",
        "stateful",
        "--upstream",
        &a,
        "--upstream",
        &b,
        "--fr-timeout",
        "30000",
    ];
    let Some(proxy) = Proxy::start(io, &args) else {
        return;
    };
    let caller = socket();
    // Calls whose Call-IDs hash to either upstream: each reaches the
    // live one.
    for k in 0..6 {
        let call = format!("refused-{k}");
        let invite = over_udp("INVITE", &caller, "example.net", &call);
        caller.send_to(invite.as_bytes(), proxy.addr).unwrap();
        let (got, conn) = live.next();
        assert_eq!(header(&got, HeaderName::CallId), call);
        live.conns[conn]
            .0
            .write_all(&response_to(&got, 200, "OK"))
            .unwrap();
        let answer = next_answer(&caller);
        assert_eq!(status(&answer), Some(200));
        assert_eq!(header(&answer, HeaderName::CallId), call);
    }
    let report = proxy.stop_and_report();
    assert!(counter(&report, "connect_failed") >= 1, "{report}");
    assert_eq!(counter(&report, "tx_timeouts"), 0, "{report}");
}

/// §16.6 over a connection: a device registered over TCP (RFC 5626: only
/// its flow reaches it) and one on UDP ring together; the TCP one's 200
/// goes up and the UDP one is cancelled.
fn a_device_on_tcp_is_forked_to_beside_one_on_udp(io: &str) {
    let args = [
        "--listen",
        "tcp:127.0.0.1:0",
        "--mode",
        "stateful",
        "--domain",
        "example.com",
    ];
    let Some(proxy) = Proxy::start(io, &args) else {
        return;
    };
    let tcp = stream_addr(&proxy.banner, "tcp");
    let mut desk = connect(tcp);
    let mut buf = Vec::new();
    let me = desk.local_addr().unwrap();
    // A Contact nothing listens at: only the flow reaches the device.
    let register = format!(
        "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/TCP {me};branch=z9hG4bKregd\r\n\
To: <sip:bob@example.com>\r\nFrom: <sip:bob@example.com>;tag=r1\r\nCall-ID: reg-desk\r\n\
CSeq: 1 REGISTER\r\nContact: <sip:bob@127.0.0.1:9;transport=tcp>\r\nExpires: 600\r\n\
Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    );
    desk.write_all(register.as_bytes()).unwrap();
    assert_eq!(status(&read_message(&mut desk, &mut buf)), Some(200));
    let soft = socket();
    let register = format!(
        "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{p};branch=z9hG4bKregs\r\n\
To: <sip:bob@example.com>\r\nFrom: <sip:bob@example.com>;tag=r2\r\nCall-ID: reg-soft\r\n\
CSeq: 1 REGISTER\r\nContact: <sip:bob@127.0.0.1:{p}>\r\nMax-Forwards: 70\r\n\
Content-Length: 0\r\n\r\n",
        p = port(&soft)
    );
    soft.send_to(register.as_bytes(), proxy.addr).unwrap();
    assert_eq!(status(&recv(&soft)), Some(200));
    std::thread::sleep(Duration::from_millis(100));
    let caller = socket();
    let invite = over_udp("INVITE", &caller, "example.com", "tcp-fork-1");
    caller.send_to(invite.as_bytes(), proxy.addr).unwrap();
    let on_desk = read_message(&mut desk, &mut buf);
    assert_eq!(method_of(&on_desk), "INVITE");
    assert!(header(&on_desk, HeaderName::Via).starts_with("SIP/2.0/TCP "));
    let on_soft = recv(&soft);
    assert_eq!(method_of(&on_soft), "INVITE");
    soft.send_to(&response_to(&on_soft, 180, "Ringing"), proxy.addr)
        .unwrap();
    assert_eq!(status(&next_answer(&caller)), Some(180));
    desk.write_all(&response_to(&on_desk, 200, "OK")).unwrap();
    assert_eq!(status(&next_answer(&caller)), Some(200));
    // (Skipping a retransmission of the INVITE that crossed the 180.)
    let cancel = loop {
        let m = recv(&soft);
        if method_of(&m) != "INVITE" {
            break m;
        }
    };
    assert_eq!(method_of(&cancel), "CANCEL");
    assert_eq!(top_branch(&cancel), top_branch(&on_soft));
}

on_both_backends!(
    a_caller_on_tcp_gets_a_transaction,
    a_silent_tcp_upstream_gets_no_retransmission_and_is_failed_over,
    a_refused_tcp_upstream_fails_over_at_once,
    a_device_on_tcp_is_forked_to_beside_one_on_udp,
);
