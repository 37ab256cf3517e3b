//! The stateful proxy end to end (`--mode stateful`, RFC 3261 §16-17):
//! the real binary on loopback between a test UAC and UAS written here,
//! one named case per rule. Timers are shortened with `--t1` and
//! `--fr-timeout` so that nothing waits 32 s; nothing asserts a time,
//! only what arrives and in what order. Every test runs on both I/O
//! backends.

#[macro_use]
mod common;

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use common::metrics::{get, metrics_addr, sum_of};
use common::process::{counter, nothing_arrives, port, socket, Proxy};
use common::sip::{call_ids_on_both_shards, response_to};

use sipshard::sip::{HeaderName, Message, Method};

fn start(io: &str, extra: &[&str]) -> Option<Proxy> {
    let mut args = vec!["--listen", "127.0.0.1:0", "--mode", "stateful"];
    args.extend_from_slice(extra);
    Proxy::start_listening(io, &args, &[])
}

/// A request from `uac` for bob at the UAS's port.
fn request(method: &str, uac: &UdpSocket, uas: &UdpSocket, call: &str, branch: &str) -> String {
    format!(
        "{method} sip:bob@127.0.0.1:{uas} SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:{uac};branch=z9hG4bK{branch};rport\r\n\
To: <sip:bob@127.0.0.1>\r\nFrom: <sip:alice@127.0.0.1>;tag=a1\r\nCall-ID: {call}\r\n\
CSeq: 1 {method}\r\nContact: <sip:alice@127.0.0.1:{uac}>\r\nMax-Forwards: 70\r\n\
Content-Length: 0\r\n\r\n",
        uas = port(uas),
        uac = port(uac),
    )
}

/// The next datagram on `s` and its sender, or a panic naming `what`.
fn next(s: &UdpSocket, what: &str) -> (Vec<u8>, SocketAddr) {
    let mut buf = vec![0u8; 65536];
    match s.recv_from(&mut buf) {
        Ok((n, from)) => {
            buf.truncate(n);
            (buf, from)
        }
        Err(e) => panic!("no {what}: {e}"),
    }
}

fn status(m: &[u8]) -> Option<u16> {
    Message::parse(m).ok().and_then(|m| m.status())
}

fn method(m: &[u8]) -> Option<String> {
    let m = Message::parse(m).ok()?;
    m.method().map(|x| format!("{x:?}"))
}

fn header(m: &[u8], h: HeaderName) -> String {
    let m = Message::parse(m).unwrap();
    String::from_utf8_lossy(m.header(h).unwrap_or_default()).into_owned()
}

fn top_branch(m: &[u8]) -> String {
    let m = Message::parse(m).unwrap();
    String::from_utf8_lossy(m.via().unwrap().branch.unwrap()).into_owned()
}

/// Every datagram that arrives on `s` within `for_ms`.
fn all_within(s: &UdpSocket, for_ms: u64) -> Vec<Vec<u8>> {
    let end = Instant::now() + Duration::from_millis(for_ms);
    let mut got = Vec::new();
    let mut buf = vec![0u8; 65536];
    while let Some(left) = end.checked_duration_since(Instant::now()) {
        s.set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .unwrap();
        match s.recv_from(&mut buf) {
            Ok((n, _)) => got.push(buf[..n].to_vec()),
            Err(_) => break,
        }
    }
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    got
}

/// §16.2, §16.7: an INVITE gets 100 Trying from the proxy at once (no To
/// tag, §8.2.6.2), the next hop's 180 and 200 come back, and the ACK of
/// the 2xx (a new transaction, end to end) goes through.
fn an_invite_gets_100_at_once_then_the_answers(io: &str) {
    let Some(proxy) = start(io, &[]) else {
        return;
    };
    let (uac, uas) = (socket(), socket());
    uac.send_to(
        request("INVITE", &uac, &uas, "st-1", "c1").as_bytes(),
        proxy.addr,
    )
    .unwrap();
    let (trying, from) = next(&uac, "100 Trying");
    assert_eq!(status(&trying), Some(100));
    assert_eq!(from, proxy.addr);
    assert!(
        !header(&trying, HeaderName::To).contains("tag="),
        "a 100 has no To tag"
    );
    let (invite, _) = next(&uas, "INVITE");
    assert!(top_branch(&invite).starts_with("z9hG4bKsS"));
    for code in [180, 200] {
        uas.send_to(&response_to(&invite, code, "x"), proxy.addr)
            .unwrap();
        let (got, _) = next(&uac, "a response");
        assert_eq!(status(&got), Some(code));
        assert_eq!(header(&got, HeaderName::Via).matches("SIP/2.0").count(), 1);
    }
    let ack = request("ACK", &uac, &uas, "st-1", "c1ack")
        .replace("To: <sip:bob@127.0.0.1>", "To: <sip:bob@127.0.0.1>;tag=b1");
    uac.send_to(ack.as_bytes(), proxy.addr).unwrap();
    let (got, _) = next(&uas, "the 2xx ACK");
    assert_eq!(method(&got).as_deref(), Some("Ack"));
    let report = proxy.stop_and_report();
    assert_eq!(counter(&report, "tx_created"), 1, "{report}");
}

/// §17.2.1: a retransmitted INVITE is absorbed: the next hop sees it
/// once, and the caller gets the last response again (100, then 180).
fn a_retransmitted_invite_is_absorbed(io: &str) {
    let Some(proxy) = start(io, &[]) else {
        return;
    };
    let (uac, uas) = (socket(), socket());
    let invite = request("INVITE", &uac, &uas, "st-2", "c2");
    uac.send_to(invite.as_bytes(), proxy.addr).unwrap();
    assert_eq!(status(&next(&uac, "100").0), Some(100));
    let (fwd, _) = next(&uas, "INVITE");
    uac.send_to(invite.as_bytes(), proxy.addr).unwrap();
    assert_eq!(status(&next(&uac, "100 again").0), Some(100));
    uas.send_to(&response_to(&fwd, 180, "Ringing"), proxy.addr)
        .unwrap();
    assert_eq!(status(&next(&uac, "180").0), Some(180));
    uac.send_to(invite.as_bytes(), proxy.addr).unwrap();
    assert_eq!(status(&next(&uac, "180 again").0), Some(180));
    assert!(nothing_arrives(&uas), "the next hop saw the INVITE once");
    let report = proxy.stop_and_report();
    assert_eq!(counter(&report, "tx_absorbed"), 2, "{report}");
}

/// §17.1.1.2: an INVITE lost on its way to the callee (which the caller,
/// holding our 100, does not send again) is recovered by our own
/// retransmission (Timer A), and the call completes.
fn a_lost_invite_is_recovered_by_our_retransmission(io: &str) {
    let Some(proxy) = start(io, &["--t1", "100"]) else {
        return;
    };
    let (uac, uas) = (socket(), socket());
    let invite = request("INVITE", &uac, &uas, "st-lost", "cl");
    uac.send_to(invite.as_bytes(), proxy.addr).unwrap();
    assert_eq!(status(&next(&uac, "100").0), Some(100));
    let (first, _) = next(&uas, "INVITE");
    // "Lost": the callee never saw that one. Our copy comes T1 later.
    let (again, _) = next(&uas, "our retransmission");
    assert_eq!(again, first, "the same request again");
    uas.send_to(&response_to(&again, 200, "OK"), proxy.addr)
        .unwrap();
    assert_eq!(status(&next(&uac, "200").0), Some(200));
    let _ = all_within(&uas, 300);
    assert!(all_within(&uas, 1_000).is_empty(), "no copy after the 200");
    assert!(
        nothing_arrives(&uac),
        "the caller sent it once and got one 200"
    );
}

/// §17.1.1.2: the proxy retransmits an INVITE the next hop does not
/// answer, doubling the interval (Timer A), and stops at its 100.
fn a_silent_next_hop_gets_the_invite_again(io: &str) {
    let Some(proxy) = start(io, &["--t1", "100"]) else {
        return;
    };
    let (uac, uas) = (socket(), socket());
    uac.send_to(
        request("INVITE", &uac, &uas, "st-3", "c3").as_bytes(),
        proxy.addr,
    )
    .unwrap();
    // At 0, 100, 300 and 700 ms (the loop may be up to 100 ms late).
    let copies = all_within(&uas, 1_000);
    assert!(copies.len() >= 3, "{} copies", copies.len());
    let branch = top_branch(&copies[0]);
    assert!(copies.iter().all(|c| top_branch(c) == branch), "one branch");
    uas.send_to(&response_to(&copies[0], 100, "Trying"), proxy.addr)
        .unwrap();
    let _ = all_within(&uas, 300);
    assert!(all_within(&uas, 1_000).is_empty(), "no copy after its 100");
    let report = proxy.stop_and_report();
    assert!(counter(&report, "tx_resent") >= 2, "{report}");
}

/// §17.1.2.2, §16.7 step 6: a non-INVITE nobody answers gets 408 from
/// the proxy when Timer F (`--fr-timeout`) runs out, after our own
/// retransmissions (Timer E).
fn no_answer_in_time_gets_408(io: &str) {
    let Some(proxy) = start(io, &["--t1", "100", "--fr-timeout", "800"]) else {
        return;
    };
    let (uac, uas) = (socket(), socket());
    uac.send_to(
        request("MESSAGE", &uac, &uas, "st-4", "c4").as_bytes(),
        proxy.addr,
    )
    .unwrap();
    let (got, _) = next(&uac, "408");
    assert_eq!(status(&got), Some(408));
    assert!(all_within(&uas, 100).len() >= 2, "retransmitted meanwhile");
    let report = proxy.stop_and_report();
    assert_eq!(counter(&report, "tx_timeouts"), 1, "{report}");
}

/// §17.1.1.3, §17.2.1: a non-2xx final to an INVITE is ACKed by the
/// proxy toward the next hop (same branch, the response's To tag); the
/// caller gets it, and again (Timer G) until it ACKs; its ACK ends there.
fn a_non_2xx_final_is_acked_hop_by_hop(io: &str) {
    let Some(proxy) = start(io, &["--t1", "100"]) else {
        return;
    };
    let (uac, uas) = (socket(), socket());
    let invite = request("INVITE", &uac, &uas, "st-5", "c5");
    uac.send_to(invite.as_bytes(), proxy.addr).unwrap();
    assert_eq!(status(&next(&uac, "100").0), Some(100));
    let (fwd, _) = next(&uas, "INVITE");
    uas.send_to(&response_to(&fwd, 486, "Busy Here"), proxy.addr)
        .unwrap();
    let (ack, _) = next(&uas, "our ACK");
    assert_eq!(method(&ack).as_deref(), Some("Ack"));
    assert_eq!(top_branch(&ack), top_branch(&fwd), "the INVITE's branch");
    assert!(header(&ack, HeaderName::To).contains("tag=b1"));
    assert_eq!(status(&next(&uac, "486").0), Some(486));
    assert_eq!(status(&next(&uac, "486 again (Timer G)").0), Some(486));
    let ack = invite
        .replace("INVITE sip:", "ACK sip:")
        .replace("1 INVITE", "1 ACK")
        .replace("To: <sip:bob@127.0.0.1>", "To: <sip:bob@127.0.0.1>;tag=b1");
    uac.send_to(ack.as_bytes(), proxy.addr).unwrap();
    assert!(nothing_arrives(&uas), "the caller's ACK ends at the proxy");
    let _ = all_within(&uac, 200);
    assert!(all_within(&uac, 600).is_empty(), "no 486 after the ACK");
}

/// §16.10: a CANCEL is answered 200 at once and sent to the ringing
/// branch; its 487 comes back to the caller. A CANCEL that matches
/// nothing gets 481.
fn cancel_is_answered_and_passed_on(io: &str) {
    let Some(proxy) = start(io, &[]) else {
        return;
    };
    let (uac, uas) = (socket(), socket());
    let invite = request("INVITE", &uac, &uas, "st-6", "c6");
    uac.send_to(invite.as_bytes(), proxy.addr).unwrap();
    assert_eq!(status(&next(&uac, "100").0), Some(100));
    let (fwd, _) = next(&uas, "INVITE");
    uas.send_to(&response_to(&fwd, 180, "Ringing"), proxy.addr)
        .unwrap();
    assert_eq!(status(&next(&uac, "180").0), Some(180));
    let cancel = invite
        .replace("INVITE sip:", "CANCEL sip:")
        .replace("1 INVITE", "1 CANCEL");
    uac.send_to(cancel.as_bytes(), proxy.addr).unwrap();
    let (ok, _) = next(&uac, "200 to the CANCEL");
    assert_eq!(status(&ok), Some(200));
    assert_eq!(header(&ok, HeaderName::CSeq), "1 CANCEL");
    let (theirs, _) = next(&uas, "CANCEL at the next hop");
    assert_eq!(method(&theirs).as_deref(), Some("Cancel"));
    assert_eq!(top_branch(&theirs), top_branch(&fwd));
    uas.send_to(&response_to(&theirs, 200, "OK"), proxy.addr)
        .unwrap();
    uas.send_to(&response_to(&fwd, 487, "Request Terminated"), proxy.addr)
        .unwrap();
    let (got, _) = next(&uac, "487");
    assert_eq!(status(&got), Some(487));
    assert_eq!(
        method(&next(&uas, "ACK of the 487").0).as_deref(),
        Some("Ack")
    );

    let stray = request("CANCEL", &uac, &uas, "st-6b", "nothing");
    uac.send_to(stray.as_bytes(), proxy.addr).unwrap();
    assert_eq!(status(&next(&uac, "481").0), Some(481));
    assert!(nothing_arrives(&uas));
}

/// §9.1, §16.10: a CANCEL that comes before the next hop has sent any
/// provisional is answered 200 at once, but the proxy's own CANCEL waits
/// for one (it could overtake its INVITE); then the 487 comes back to the
/// caller.
fn a_cancel_before_any_provisional_waits_for_one(io: &str) {
    // T1 of 2 s: no retransmission of the INVITE within the test.
    let Some(proxy) = start(io, &["--t1", "2000"]) else {
        return;
    };
    let (uac, uas) = (socket(), socket());
    let invite = request("INVITE", &uac, &uas, "st-6c", "c6c");
    uac.send_to(invite.as_bytes(), proxy.addr).unwrap();
    assert_eq!(status(&next(&uac, "100").0), Some(100));
    let (fwd, _) = next(&uas, "INVITE");
    let cancel = invite
        .replace("INVITE sip:", "CANCEL sip:")
        .replace("1 INVITE", "1 CANCEL");
    uac.send_to(cancel.as_bytes(), proxy.addr).unwrap();
    let (ok, _) = next(&uac, "200 to the CANCEL");
    assert_eq!(status(&ok), Some(200));
    assert_eq!(header(&ok, HeaderName::CSeq), "1 CANCEL");
    assert!(nothing_arrives(&uas), "no CANCEL before a provisional");
    // Any provisional will do, a 100 too (§9.1; it is not forwarded).
    uas.send_to(&response_to(&fwd, 100, "Trying"), proxy.addr)
        .unwrap();
    let (theirs, _) = next(&uas, "CANCEL once it answered");
    assert_eq!(method(&theirs).as_deref(), Some("Cancel"));
    assert_eq!(top_branch(&theirs), top_branch(&fwd));
    uas.send_to(&response_to(&theirs, 200, "OK"), proxy.addr)
        .unwrap();
    uas.send_to(&response_to(&fwd, 487, "Request Terminated"), proxy.addr)
        .unwrap();
    assert_eq!(status(&next(&uac, "487").0), Some(487));
}

/// §16.6 step 11, §16.8: Timer C (`--fr-inv-timeout`) runs from each
/// provisional; when it fires the ringing branch is cancelled and the
/// caller gets 408 (nothing better came).
fn timer_c_after_a_provisional_cancels_and_answers_408(io: &str) {
    let Some(proxy) = start(io, &["--fr-inv-timeout", "2000"]) else {
        return;
    };
    let (uac, uas) = (socket(), socket());
    let invite = request("INVITE", &uac, &uas, "st-6d", "c6d");
    uac.send_to(invite.as_bytes(), proxy.addr).unwrap();
    assert_eq!(status(&next(&uac, "100").0), Some(100));
    let (fwd, _) = next(&uas, "INVITE");
    uas.send_to(&response_to(&fwd, 180, "Ringing"), proxy.addr)
        .unwrap();
    assert_eq!(status(&next(&uac, "180").0), Some(180));
    // A second provisional, 1.5 s after the first, restarts Timer C:
    // nothing is cancelled when the first would have fired (2 s after
    // the 180, up to 0.1 s late).
    std::thread::sleep(Duration::from_millis(1500));
    uas.send_to(&response_to(&fwd, 183, "Progress"), proxy.addr)
        .unwrap();
    assert_eq!(status(&next(&uac, "183").0), Some(183));
    assert!(
        all_within(&uas, 900).is_empty(),
        "Timer C restarted by the 183"
    );
    let (theirs, _) = next(&uas, "CANCEL from Timer C");
    assert_eq!(method(&theirs).as_deref(), Some("Cancel"));
    assert_eq!(top_branch(&theirs), top_branch(&fwd));
    let (got, _) = next(&uac, "408");
    assert_eq!(status(&got), Some(408));
    uas.send_to(&response_to(&theirs, 200, "OK"), proxy.addr)
        .unwrap();
    uas.send_to(&response_to(&fwd, 487, "Request Terminated"), proxy.addr)
        .unwrap();
    assert_eq!(
        method(&next(&uas, "ACK of the 487").0).as_deref(),
        Some("Ack")
    );
    let report = proxy.stop_and_report();
    assert_eq!(counter(&report, "tx_timeouts"), 1, "{report}");
}

/// `--max-transactions`: a new request beyond the limit of its shard gets
/// 503 with Retry-After.
fn beyond_max_transactions_gets_503(io: &str) {
    let Some(proxy) = start(io, &["--max-transactions", "1"]) else {
        return;
    };
    let (uac, uas) = (socket(), socket());
    // Two shards, one transaction each, five calls on both shards.
    let calls = call_ids_on_both_shards("full", 5);
    for (k, call) in calls.iter().enumerate() {
        let m = request("MESSAGE", &uac, &uas, call, &format!("f{k}"));
        uac.send_to(m.as_bytes(), proxy.addr).unwrap();
    }
    let got = all_within(&uac, 1_000);
    let refused: Vec<_> = got.iter().filter(|m| status(m) == Some(503)).collect();
    assert_eq!(refused.len(), 3, "{} answers", got.len());
    assert!(refused
        .iter()
        .all(|m| header(m, HeaderName::RetryAfter) == "5"));
    // (With their retransmissions: Timer E runs at 500 ms.)
    let mut forwarded: Vec<String> = all_within(&uas, 300)
        .iter()
        .map(|m| header(m, HeaderName::CallId))
        .collect();
    forwarded.sort();
    forwarded.dedup();
    assert_eq!(forwarded.len(), 2, "one forwarded per shard: {forwarded:?}");
    let report = proxy.stop_and_report();
    assert_eq!(counter(&report, "tx_refused"), 3, "{report}");
}

/// `--max-transactions` counts finished transactions too (they linger
/// 32 s to absorb retransmissions), but one of those makes room for a
/// new request rather than it being refused: only a shard whose every
/// transaction waits for its final answer says 503.
fn a_finished_transaction_makes_room_at_max_transactions(io: &str) {
    // One caller, one port: `--steer flow` keeps it on one shard.
    let Some(proxy) = start(io, &["--max-transactions", "1", "--steer", "flow"]) else {
        return;
    };
    let (uac, uas) = (socket(), socket());
    let first = request("MESSAGE", &uac, &uas, "room-1", "r1");
    uac.send_to(first.as_bytes(), proxy.addr).unwrap();
    let (fwd, _) = next(&uas, "MESSAGE 1");
    uas.send_to(&response_to(&fwd, 200, "OK"), proxy.addr)
        .unwrap();
    assert_eq!(status(&next(&uac, "200").0), Some(200));
    let second = request("MESSAGE", &uac, &uas, "room-2", "r2");
    uac.send_to(second.as_bytes(), proxy.addr).unwrap();
    let (fwd, _) = next(&uas, "MESSAGE 2, in the first one's room");
    assert_eq!(header(&fwd, HeaderName::CallId), "room-2");
    let third = request("MESSAGE", &uac, &uas, "room-3", "r3");
    uac.send_to(third.as_bytes(), proxy.addr).unwrap();
    assert_eq!(status(&next(&uac, "503").0), Some(503));
    let report = proxy.stop_and_report();
    assert_eq!(counter(&report, "tx_evicted"), 1, "{report}");
    assert_eq!(counter(&report, "tx_refused"), 1, "{report}");
}

/// Ownership: with `--steer flow`, the next hop's responses reach
/// whichever shard the kernel hashes their 4-tuple to; those that reach
/// the other shard are mailed to the one our branch names, and every call
/// completes.
fn responses_on_another_shard_reach_their_transaction(io: &str) {
    let Some(proxy) = start(io, &["--steer", "flow"]) else {
        return;
    };
    let uas = socket();
    // Callers from many ports: the kernel spreads them over both shards,
    // while the UAS's answers all land on one.
    for k in 0..12 {
        let uac = socket();
        let call = format!("{k}-mail");
        let invite = request("INVITE", &uac, &uas, &call, &format!("m{k}"));
        uac.send_to(invite.as_bytes(), proxy.addr).unwrap();
        assert_eq!(status(&next(&uac, "100").0), Some(100), "{call}");
        let (fwd, _) = next(&uas, "INVITE");
        uas.send_to(&response_to(&fwd, 200, "OK"), proxy.addr)
            .unwrap();
        assert_eq!(status(&next(&uac, "200").0), Some(200), "{call}");
    }
    let report = proxy.stop_and_report();
    assert_eq!(counter(&report, "tx_created"), 12, "{report}");
    assert!(counter(&report, "tx_mailed") > 0, "{report}");
}

/// A burst of INVITEs, each making two sends (its forward and our 100):
/// none is dropped for want of a send slot (the backends keep room for
/// the most one message can send).
fn a_burst_of_invites_loses_none_for_want_of_send_slots(io: &str) {
    const N: usize = 300;
    let Some(proxy) = start(io, &[]) else {
        return;
    };
    // Room for the whole burst in our sockets (loopback datagrams cost
    // about 1 KiB of receive buffer each).
    let (uac, uas) = (socket(), socket());
    for s in [&uac, &uas] {
        let size: libc::c_int = 4 << 20;
        // SAFETY: setsockopt on a socket we own, with a c_int option.
        let rc = unsafe {
            libc::setsockopt(
                std::os::fd::AsRawFd::as_raw_fd(s),
                libc::SOL_SOCKET,
                libc::SO_RCVBUF,
                (&size as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        assert_eq!(rc, 0);
    }
    for k in 0..N {
        let m = request(
            "INVITE",
            &uac,
            &uas,
            &format!("{k}-burst"),
            &format!("b{k}"),
        );
        uac.send_to(m.as_bytes(), proxy.addr).unwrap();
    }
    let distinct = |msgs: Vec<Vec<u8>>| {
        let mut ids: Vec<String> = msgs.iter().map(|m| header(m, HeaderName::CallId)).collect();
        ids.sort();
        ids.dedup();
        ids.len()
    };
    let trying: Vec<Vec<u8>> = all_within(&uac, 400)
        .into_iter()
        .filter(|m| status(m) == Some(100))
        .collect();
    assert_eq!(distinct(trying), N, "a 100 for each");
    assert_eq!(distinct(all_within(&uas, 100)), N, "each forwarded");
    let report = proxy.stop_and_report();
    assert_eq!(counter(&report, "forwarded_requests"), N as u64, "{report}");
    assert_eq!(counter(&report, "write_failed"), 0, "{report}");
    assert_eq!(counter(&report, "tx_created"), N as u64, "{report}");
}

/// Two upstreams (two test UAS sockets) and a request that names no
/// address, so it goes to one of them (by a hash of its Call-ID); the
/// sockets in the order the proxy tries them.
fn two_upstreams(io: &str, extra: &[&str]) -> Option<(Proxy, [UdpSocket; 2])> {
    let (a, b) = (socket(), socket());
    let (ua, ub) = (
        format!("127.0.0.1:{}", port(&a)),
        format!("127.0.0.1:{}", port(&b)),
    );
    let mut args = vec!["--upstream", &ua, "--upstream", &ub];
    args.extend_from_slice(extra);
    Some((start(io, &args)?, [a, b]))
}

/// An INVITE for a user at a domain (no address: it goes upstream).
fn invite_upstream(uac: &UdpSocket, call: &str) -> String {
    format!(
        "INVITE sip:bob@example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:{uac};branch=z9hG4bK{call};rport\r\n\
To: <sip:bob@example.com>\r\nFrom: <sip:alice@example.com>;tag=a1\r\nCall-ID: {call}\r\n\
CSeq: 1 INVITE\r\nContact: <sip:alice@127.0.0.1:{uac}>\r\nMax-Forwards: 70\r\n\
Content-Length: 0\r\n\r\n",
        uac = port(uac),
    )
}

/// Which of the two upstreams got the request first (the other has
/// nothing yet): its index and the request.
fn first_to_get(ups: &[UdpSocket; 2]) -> (usize, Vec<u8>) {
    let end = Instant::now() + Duration::from_secs(2);
    let mut buf = vec![0u8; 65536];
    for s in ups {
        s.set_nonblocking(true).unwrap();
    }
    let mut got = None;
    while got.is_none() && Instant::now() < end {
        for (i, s) in ups.iter().enumerate() {
            if let Ok((n, _)) = s.recv_from(&mut buf) {
                got = Some((i, buf[..n].to_vec()));
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    for s in ups {
        s.set_nonblocking(false).unwrap();
    }
    let (i, m) = got.expect("the request at an upstream");
    let mut other = [0u8; 16];
    ups[1 - i].set_nonblocking(true).unwrap();
    assert!(
        ups[1 - i].recv_from(&mut other).is_err(),
        "one upstream at a time"
    );
    ups[1 - i].set_nonblocking(false).unwrap();
    (i, m)
}

/// §16.7 with failover: the first upstream answers 503, so the INVITE
/// goes to the next one (a new branch), whose 200 reaches the caller;
/// the 503 is ACKed hop by hop and never reaches the caller.
fn a_503_fails_over_to_the_next_upstream(io: &str) {
    let Some((proxy, ups)) = two_upstreams(io, &[]) else {
        return;
    };
    let uac = socket();
    uac.send_to(invite_upstream(&uac, "fo-503").as_bytes(), proxy.addr)
        .unwrap();
    assert_eq!(status(&next(&uac, "100").0), Some(100));
    let (i, fwd) = first_to_get(&ups);
    let (first, second) = (&ups[i], &ups[1 - i]);
    first
        .send_to(&response_to(&fwd, 503, "Service Unavailable"), proxy.addr)
        .unwrap();
    assert_eq!(
        method(&next(first, "ACK of the 503").0).as_deref(),
        Some("Ack")
    );
    let (again, _) = next(second, "the INVITE at the next upstream");
    assert_ne!(top_branch(&again), top_branch(&fwd), "a branch of its own");
    second
        .send_to(&response_to(&again, 200, "OK"), proxy.addr)
        .unwrap();
    let (ok, _) = next(&uac, "200 from the second upstream");
    assert_eq!(status(&ok), Some(200));
    let report = proxy.stop_and_report();
    assert_eq!(counter(&report, "forwarded_requests"), 2, "{report}");
}

/// Failover on silence: the first upstream never answers; at
/// `--fr-timeout` the request goes to the next, whose answer the caller
/// gets.
fn a_silent_upstream_fails_over_at_fr_timeout(io: &str) {
    let Some((proxy, ups)) = two_upstreams(io, &["--fr-timeout", "400"]) else {
        return;
    };
    let uac = socket();
    uac.send_to(invite_upstream(&uac, "fo-silent").as_bytes(), proxy.addr)
        .unwrap();
    assert_eq!(status(&next(&uac, "100").0), Some(100));
    let (i, _) = first_to_get(&ups);
    let second = &ups[1 - i];
    let (again, _) = next(second, "the INVITE at the next upstream");
    second
        .send_to(&response_to(&again, 486, "Busy Here"), proxy.addr)
        .unwrap();
    let (got, _) = next(&uac, "the next upstream's answer");
    assert_eq!(status(&got), Some(486));
    let report = proxy.stop_and_report();
    assert_eq!(counter(&report, "tx_timeouts"), 1, "{report}");
}

/// A 404 is an answer, not unavailability: it goes to the caller and no
/// other upstream is asked. With `--max-failover 0`, a 503 is not
/// retried either, and goes up as 500 (§16.7 step 6).
fn only_unavailability_fails_over(io: &str) {
    let Some((proxy, ups)) = two_upstreams(io, &[]) else {
        return;
    };
    let uac = socket();
    uac.send_to(invite_upstream(&uac, "fo-404").as_bytes(), proxy.addr)
        .unwrap();
    assert_eq!(status(&next(&uac, "100").0), Some(100));
    let (i, fwd) = first_to_get(&ups);
    ups[i]
        .send_to(&response_to(&fwd, 404, "Not Found"), proxy.addr)
        .unwrap();
    assert_eq!(status(&next(&uac, "404").0), Some(404));
    assert!(nothing_arrives(&ups[1 - i]), "no failover on a 404");
    drop(proxy);

    let Some((proxy, ups)) = two_upstreams(io, &["--max-failover", "0"]) else {
        return;
    };
    uac.send_to(invite_upstream(&uac, "fo-none").as_bytes(), proxy.addr)
        .unwrap();
    assert_eq!(status(&next(&uac, "100").0), Some(100));
    let (i, fwd) = first_to_get(&ups);
    ups[i]
        .send_to(&response_to(&fwd, 503, "Service Unavailable"), proxy.addr)
        .unwrap();
    assert_eq!(status(&next(&uac, "500").0), Some(500));
    assert!(nothing_arrives(&ups[1 - i]), "--max-failover 0");
}

/// Every transaction ends: with `--t1 50` Timer J is 3.2 s, so 3.2 s
/// after their answers the requests' transactions are gone
/// (`sipshard_transactions_open` back to 0), whatever the millisecond
/// within a wheel tick each was armed at.
fn every_transaction_ends_by_its_timers(io: &str) {
    let Some(mut proxy) = start(io, &["--t1", "50", "--metrics-listen", "127.0.0.1:0"]) else {
        return;
    };
    let metrics = metrics_addr(&mut proxy);
    let (uac, uas) = (socket(), socket());
    for k in 0..40 {
        let call = format!("{k}-end");
        let m = request("MESSAGE", &uac, &uas, &call, &format!("e{k}"));
        uac.send_to(m.as_bytes(), proxy.addr).unwrap();
        // (Skipping our retransmissions of earlier ones: T1 is 50 ms.)
        let fwd = loop {
            let (fwd, _) = next(&uas, "MESSAGE");
            if header(&fwd, HeaderName::CallId) == call {
                break fwd;
            }
        };
        uas.send_to(&response_to(&fwd, 200, "OK"), proxy.addr)
            .unwrap();
        let got = loop {
            let (got, _) = next(&uac, "200");
            if header(&got, HeaderName::CallId) == call {
                break got;
            }
        };
        assert_eq!(status(&got), Some(200));
        std::thread::sleep(Duration::from_millis(3));
    }
    let open = || sum_of(&get(metrics, "/metrics").1, "sipshard_transactions_open");
    assert!(open() > 0, "open while answered");
    let end = Instant::now() + Duration::from_secs(8);
    while open() > 0 && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        open(),
        0,
        "every transaction ended within 8 s (Timer J: 3.2 s)"
    );
}

/// The method names the tests compare (`Method` is `Debug`).
#[test]
fn method_names_are_as_the_tests_expect() {
    assert_eq!(format!("{:?}", Method::Ack), "Ack");
    assert_eq!(format!("{:?}", Method::Cancel), "Cancel");
}

on_both_backends!(
    an_invite_gets_100_at_once_then_the_answers,
    a_retransmitted_invite_is_absorbed,
    a_lost_invite_is_recovered_by_our_retransmission,
    a_silent_next_hop_gets_the_invite_again,
    no_answer_in_time_gets_408,
    a_non_2xx_final_is_acked_hop_by_hop,
    cancel_is_answered_and_passed_on,
    a_cancel_before_any_provisional_waits_for_one,
    timer_c_after_a_provisional_cancels_and_answers_408,
    beyond_max_transactions_gets_503,
    a_finished_transaction_makes_room_at_max_transactions,
    responses_on_another_shard_reach_their_transaction,
    a_burst_of_invites_loses_none_for_want_of_send_slots,
    a_503_fails_over_to_the_next_upstream,
    a_silent_upstream_fails_over_at_fr_timeout,
    only_unavailability_fails_over,
    every_transaction_ends_by_its_timers,
);
