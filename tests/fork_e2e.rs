//! Forking end to end (`--mode stateful`, RFC 3261 §16.6-§16.7, §16.10):
//! a user registered from several devices is called on all of them, by
//! q-value, through the real binary on loopback with two shards and
//! `--steer flow`, so that each device's responses may reach the shard
//! that does not hold the transaction. The devices and the caller are
//! test UAs written here; one named case per rule, on both backends.

#[macro_use]
mod common;

use std::net::UdpSocket;
use std::time::Duration;

use common::process::{counter, nothing_arrives, port, recv, socket, Proxy};
use common::sip::response_to;
use sipshard::sip::Message;

const DOMAIN: &str = "example.com";

fn start(io: &str) -> Option<Proxy> {
    Proxy::start(
        io,
        &["--mode", "stateful", "--domain", DOMAIN, "--steer", "flow"],
    )
}

/// One device of bob's, registered with `q` (None: no q, counted 1.0).
fn device(proxy: &Proxy, q: Option<&str>) -> UdpSocket {
    let ua = socket();
    let q = q.map(|q| format!(";q={q}")).unwrap_or_default();
    let p = port(&ua);
    let register = format!(
        "REGISTER sip:{DOMAIN} SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:{p};branch=z9hG4bKreg{p};rport\r\n\
Max-Forwards: 70\r\nTo: <sip:bob@{DOMAIN}>\r\nFrom: <sip:bob@{DOMAIN}>;tag=r{p}\r\n\
Call-ID: reg-{p}\r\nCSeq: 1 REGISTER\r\nContact: <sip:bob@127.0.0.1:{p}>{q}\r\n\
Content-Length: 0\r\n\r\n"
    );
    ua.send_to(register.as_bytes(), proxy.addr).unwrap();
    assert_eq!(status(&recv(&ua)), Some(200), "REGISTER from {p}");
    ua
}

/// Waits for the other shard's replica to hold what the owner answered
/// 200 for (a few microseconds usually; the test does not depend on it).
fn replicas_settle() {
    std::thread::sleep(Duration::from_millis(100));
}

/// A request from `caller` for bob.
fn call(method: &str, caller: &UdpSocket, call_id: &str) -> Vec<u8> {
    format!(
        "{method} sip:bob@{DOMAIN} SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:{p};branch=z9hG4bK{call_id}{method};rport\r\n\
Max-Forwards: 70\r\nTo: <sip:bob@{DOMAIN}>\r\nFrom: <sip:alice@elsewhere.example>;tag=a1\r\n\
Call-ID: {call_id}\r\nCSeq: 1 {method}\r\nContent-Length: 0\r\n\r\n",
        p = port(caller)
    )
    .into_bytes()
}

/// The CANCEL of `call`'s INVITE (§9.1: same branch, Call-ID, CSeq
/// number).
fn cancel(caller: &UdpSocket, call_id: &str) -> Vec<u8> {
    String::from_utf8(call("INVITE", caller, call_id))
        .unwrap()
        .replacen("INVITE sip:", "CANCEL sip:", 1)
        .replace("CSeq: 1 INVITE", "CSeq: 1 CANCEL")
        .into_bytes()
}

fn status(m: &[u8]) -> Option<u16> {
    Message::parse(m).ok()?.status()
}

fn ruri(m: &[u8]) -> String {
    let m = Message::parse(m).unwrap();
    String::from_utf8_lossy(m.request_uri_bytes().unwrap()).into_owned()
}

fn method_of(m: &[u8]) -> String {
    String::from_utf8_lossy(m.split(|&b| b == b' ').next().unwrap()).into_owned()
}

fn top_branch(m: &[u8]) -> String {
    let m = Message::parse(m).unwrap();
    String::from_utf8_lossy(m.via().unwrap().branch.unwrap()).into_owned()
}

/// The next request a device gets that is `method` (our retransmissions
/// of one already seen are skipped).
fn next_request(ua: &UdpSocket, method: &str) -> Vec<u8> {
    loop {
        let m = recv(ua);
        if method_of(&m) == method {
            return m;
        }
    }
}

/// The next response the caller gets other than 100 Trying.
fn next_answer(caller: &UdpSocket) -> Vec<u8> {
    loop {
        let m = recv(caller);
        if status(&m) != Some(100) {
            return m;
        }
    }
}

/// `ua` answers `req` with `code`, its own To tag.
fn answer(proxy: &Proxy, ua: &UdpSocket, req: &[u8], code: u16) {
    let tagged = String::from_utf8(response_to(req, code, "X"))
        .unwrap()
        .replace(";tag=b1", &format!(";tag=t{}", port(ua)));
    ua.send_to(tagged.as_bytes(), proxy.addr).unwrap();
}

/// A cancelled device does what a UAS does (§9.2): 200 to the CANCEL,
/// 487 to the INVITE; the proxy then ACKs the 487 hop by hop.
fn cancelled(proxy: &Proxy, ua: &UdpSocket, invite: &[u8]) {
    let c = next_request(ua, "CANCEL");
    assert_eq!(
        top_branch(&c),
        top_branch(invite),
        "§9.1: the INVITE's branch"
    );
    assert_eq!(ruri(&c), ruri(invite));
    answer(proxy, ua, &c, 200);
    answer(proxy, ua, invite, 487);
    let ack = next_request(ua, "ACK");
    assert_eq!(top_branch(&ack), top_branch(invite), "§17.1.1.3");
}

/// §16.6, §16.7 steps 5 and 10: devices of equal q ring together, each
/// with its contact as Request-URI and a branch of its own; both 180s
/// reach the caller; the first 200 goes up and the other device gets a
/// CANCEL, whose 487 the caller never sees.
fn equal_q_devices_ring_together_and_the_answer_cancels_the_rest(io: &str) {
    let Some(proxy) = start(io) else { return };
    let (desk, soft, caller) = (device(&proxy, None), device(&proxy, None), socket());
    replicas_settle();
    caller
        .send_to(&call("INVITE", &caller, "fork-1"), proxy.addr)
        .unwrap();
    assert_eq!(status(&recv(&caller)), Some(100));
    let on_desk = next_request(&desk, "INVITE");
    let on_soft = next_request(&soft, "INVITE");
    assert_eq!(ruri(&on_desk), format!("sip:bob@127.0.0.1:{}", port(&desk)));
    assert_eq!(ruri(&on_soft), format!("sip:bob@127.0.0.1:{}", port(&soft)));
    assert_ne!(top_branch(&on_desk), top_branch(&on_soft));
    answer(&proxy, &desk, &on_desk, 180);
    answer(&proxy, &soft, &on_soft, 180);
    assert_eq!(status(&next_answer(&caller)), Some(180));
    assert_eq!(status(&next_answer(&caller)), Some(180));
    answer(&proxy, &desk, &on_desk, 200);
    assert_eq!(status(&next_answer(&caller)), Some(200));
    cancelled(&proxy, &soft, &on_soft);
    assert!(nothing_arrives(&caller), "no 487 after the 200");
    let report = proxy.stop_and_report();
    assert_eq!(counter(&report, "tx_created"), 1, "{report}");
}

/// §16.6: a lower q is tried only once every higher one has failed; the
/// caller then gets the best answer of all (§16.7 step 6: the lowest
/// class, the first in it).
fn a_lower_q_rings_only_after_the_higher_failed(io: &str) {
    let Some(proxy) = start(io) else { return };
    let desk = device(&proxy, Some("1.0"));
    let (soft, cell) = (device(&proxy, Some("0.5")), device(&proxy, Some("0.5")));
    let caller = socket();
    replicas_settle();
    caller
        .send_to(&call("INVITE", &caller, "fork-2"), proxy.addr)
        .unwrap();
    let on_desk = next_request(&desk, "INVITE");
    assert!(
        nothing_arrives(&soft) && nothing_arrives(&cell),
        "q 0.5 waits"
    );
    answer(&proxy, &desk, &on_desk, 486);
    assert_eq!(method_of(&next_request(&desk, "ACK")), "ACK");
    let on_soft = next_request(&soft, "INVITE");
    let on_cell = next_request(&cell, "INVITE");
    answer(&proxy, &soft, &on_soft, 404);
    answer(&proxy, &cell, &on_cell, 480);
    let best = next_answer(&caller);
    assert_eq!(status(&best), Some(486));
    // The desk's own answer, kept until the others ended (its To tag, its
    // reason phrase), not one the proxy wrote.
    let text = String::from_utf8_lossy(&best);
    assert!(text.contains(&format!("tag=t{}", port(&desk))), "{text}");
    assert!(text.starts_with("SIP/2.0 486 X\r\n"), "{text}");
    assert!(nothing_arrives(&caller), "one final answer");
}

/// §16.7 step 5: a 6xx cancels the devices still ringing, starts no
/// lower q, and is the answer once they have ended.
fn a_6xx_ends_the_search(io: &str) {
    let Some(proxy) = start(io) else { return };
    let (desk, soft) = (device(&proxy, Some("1.0")), device(&proxy, Some("1.0")));
    let cell = device(&proxy, Some("0.1"));
    let caller = socket();
    replicas_settle();
    caller
        .send_to(&call("INVITE", &caller, "fork-3"), proxy.addr)
        .unwrap();
    let on_desk = next_request(&desk, "INVITE");
    let on_soft = next_request(&soft, "INVITE");
    answer(&proxy, &soft, &on_soft, 180);
    assert_eq!(status(&next_answer(&caller)), Some(180));
    answer(&proxy, &desk, &on_desk, 603);
    cancelled(&proxy, &soft, &on_soft);
    assert_eq!(status(&next_answer(&caller)), Some(603));
    assert!(nothing_arrives(&cell), "no lower q after a 6xx");
}

/// §16.10: the caller's CANCEL is answered 200 and cancels every fork;
/// the caller gets one 487.
fn a_cancel_cancels_every_fork(io: &str) {
    let Some(proxy) = start(io) else { return };
    let (desk, soft, caller) = (device(&proxy, None), device(&proxy, None), socket());
    replicas_settle();
    caller
        .send_to(&call("INVITE", &caller, "fork-4"), proxy.addr)
        .unwrap();
    let on_desk = next_request(&desk, "INVITE");
    let on_soft = next_request(&soft, "INVITE");
    answer(&proxy, &desk, &on_desk, 180);
    answer(&proxy, &soft, &on_soft, 183);
    let mut rang = [next_answer(&caller), next_answer(&caller)].map(|m| status(&m));
    rang.sort();
    assert_eq!(rang, [Some(180), Some(183)]);
    caller
        .send_to(&cancel(&caller, "fork-4"), proxy.addr)
        .unwrap();
    let ok = next_answer(&caller);
    assert_eq!(status(&ok), Some(200));
    assert!(String::from_utf8_lossy(&ok).contains("CSeq: 1 CANCEL"));
    cancelled(&proxy, &desk, &on_desk);
    cancelled(&proxy, &soft, &on_soft);
    assert_eq!(status(&next_answer(&caller)), Some(487));
    assert!(nothing_arrives(&caller), "one 487");
}

/// A request other than INVITE forks too; its first 2xx is the answer
/// and a later one goes nowhere (§16.7 step 5: only an INVITE's every
/// 2xx goes up). A non-INVITE is never cancelled (§9.1).
fn a_message_forks_and_its_first_2xx_answers(io: &str) {
    let Some(proxy) = start(io) else { return };
    let (desk, soft, caller) = (device(&proxy, None), device(&proxy, None), socket());
    replicas_settle();
    caller
        .send_to(&call("MESSAGE", &caller, "fork-5"), proxy.addr)
        .unwrap();
    let on_desk = next_request(&desk, "MESSAGE");
    let on_soft = next_request(&soft, "MESSAGE");
    answer(&proxy, &soft, &on_soft, 200);
    let got = next_answer(&caller);
    assert_eq!(status(&got), Some(200));
    assert!(String::from_utf8_lossy(&got).contains(&format!("tag=t{}", port(&soft))));
    answer(&proxy, &desk, &on_desk, 200);
    assert!(nothing_arrives(&caller), "one final answer");
    assert!(nothing_arrives(&desk), "no CANCEL for a MESSAGE");
}

/// The stateless mode does not fork: the best binding only (the newest
/// of equal q), as before.
fn the_stateless_mode_calls_the_best_device_only(io: &str) {
    let Some(proxy) = Proxy::start(io, &["--domain", DOMAIN, "--steer", "flow"]) else {
        return;
    };
    let (older, newer, caller) = (device(&proxy, None), device(&proxy, None), socket());
    replicas_settle();
    caller
        .send_to(&call("INVITE", &caller, "fork-6"), proxy.addr)
        .unwrap();
    let got = next_request(&newer, "INVITE");
    assert_eq!(ruri(&got), format!("sip:bob@127.0.0.1:{}", port(&newer)));
    assert!(nothing_arrives(&older));
}

on_both_backends!(
    equal_q_devices_ring_together_and_the_answer_cancels_the_rest,
    a_lower_q_rings_only_after_the_higher_failed,
    a_6xx_ends_the_search,
    a_cancel_cancels_every_fork,
    a_message_forks_and_its_first_2xx_answers,
    the_stateless_mode_calls_the_best_device_only,
);
