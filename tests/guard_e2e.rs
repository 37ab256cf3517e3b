//! Access control and size limits end to end (issue #5, first part):
//! `--deny`/`--allow` address blocks checked before parsing,
//! `--max-message-size` (513 for a request, RFC 3261 §21.5.14) and
//! `--drop-scanners`, on both I/O backends, each followed by a good request
//! that is still answered.

#[macro_use]
mod common;

use std::net::UdpSocket;
use std::time::Duration;

use common::process::{nothing_arrives, port, recv, Proxy};
use sipshard::hash::call_id_shard;
use sipshard::sip::Message;

fn socket_on(ip: &str) -> Option<UdpSocket> {
    let s = UdpSocket::bind((ip, 0)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    Some(s)
}

/// OPTIONS to the proxy itself, padded to `size` bytes with a header, with
/// an optional User-Agent.
fn options(from: &UdpSocket, call: &str, agent: Option<&str>, size: usize) -> Vec<u8> {
    let mut m = format!(
        "OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {};branch=z9hG4bK{call};rport\r\n\
To: <sip:127.0.0.1>\r\nFrom: <sip:guard@127.0.0.1>;tag=g\r\nCall-ID: {call}\r\nCSeq: 1 OPTIONS\r\n",
        from.local_addr().unwrap()
    );
    if let Some(a) = agent {
        m.push_str(&format!("User-Agent: {a}\r\n"));
    }
    let fixed = m.len() + "X-Pad: \r\n\r\n".len();
    if size > fixed {
        m.push_str(&format!("X-Pad: {}\r\n", "p".repeat(size - fixed)));
    }
    m.push_str("\r\n");
    m.into_bytes()
}

fn status(data: &[u8]) -> u16 {
    Message::parse(data).unwrap().status().unwrap()
}

/// The proxy answers OPTIONS to itself with 200; the request is sent to
/// the proxy's own address so that `sip:127.0.0.1` names it.
fn start(io: &str, extra: &[&str]) -> Option<Proxy> {
    let mut args = vec!["--advertise", "127.0.0.1:5060"];
    args.extend_from_slice(extra);
    Proxy::start(io, &args)
}

fn denied_and_unlisted_sources_are_dropped_unread(io: &str) {
    let (Some(good), Some(bad), Some(other)) = (
        socket_on("127.0.0.1"),
        socket_on("127.0.0.2"),
        socket_on("127.0.0.5"),
    ) else {
        eprintln!("skipping: 127.0.0.2 and .5 not usable here");
        return;
    };
    let Some(proxy) = start(io, &["--allow", "127.0.0.0/30", "--deny", "127.0.0.2"]) else {
        return;
    };
    bad.send_to(&options(&bad, "d1", None, 0), proxy.addr)
        .unwrap();
    assert!(nothing_arrives(&bad), "--deny");
    let other_port = port(&other);
    other
        .send_to(&options(&other, "d2", None, 0), proxy.addr)
        .unwrap();
    assert!(nothing_arrives(&other), "outside --allow ({other_port})");
    good.send_to(&options(&good, "d3", None, 0), proxy.addr)
        .unwrap();
    assert_eq!(status(&recv(&good)), 200);
    let exit = proxy.stop_and_report();
    assert!(exit.contains("denied=2"), "{exit}");
}

fn a_request_over_the_size_limit_gets_513(io: &str) {
    let Some(proxy) = start(io, &["--max-message-size", "1500"]) else {
        return;
    };
    let Some(ua) = socket_on("127.0.0.1") else {
        return;
    };
    ua.send_to(&options(&ua, "s1", None, 2000), proxy.addr)
        .unwrap();
    assert_eq!(status(&recv(&ua)), 513);
    ua.send_to(&options(&ua, "s2", None, 1400), proxy.addr)
        .unwrap();
    assert_eq!(status(&recv(&ua)), 200, "under the limit");
    // The default limit is 8 KiB.
    drop(proxy);
    let Some(proxy) = start(io, &[]) else { return };
    ua.send_to(&options(&ua, "s3", None, 9000), proxy.addr)
        .unwrap();
    assert_eq!(status(&recv(&ua)), 513);
}

fn scanners_are_dropped_when_asked(io: &str) {
    let Some(ua) = socket_on("127.0.0.1") else {
        return;
    };
    let Some(proxy) = start(io, &["--drop-scanners"]) else {
        return;
    };
    ua.send_to(
        &options(&ua, "sc1", Some("friendly-scanner"), 0),
        proxy.addr,
    )
    .unwrap();
    assert!(nothing_arrives(&ua));
    ua.send_to(&options(&ua, "sc2", Some("SIPp/v3.7"), 0), proxy.addr)
        .unwrap();
    assert_eq!(status(&recv(&ua)), 200);
    let exit = proxy.stop_and_report();
    assert!(exit.contains("scanner=1"), "{exit}");

    // Off by default.
    let Some(proxy) = start(io, &[]) else { return };
    ua.send_to(
        &options(&ua, "sc3", Some("friendly-scanner"), 0),
        proxy.addr,
    )
    .unwrap();
    assert_eq!(status(&recv(&ua)), 200);
}

/// --rate-limit: a source that floods gets its burst, one 503 with
/// Retry-After, then nothing for --ban-time; another source is answered
/// all along; after the ban the flooder is answered again. With
/// `--steer call-id` the flood's Call-IDs spread it over both shards, each
/// enforcing half the rate and burst, and a ban on one is mailed to the
/// other: the source gets about the burst in total, a 503 from each shard
/// that banned it on its own, and nothing from either after.
fn a_flooding_source_is_banned_and_others_are_not(io: &str) {
    let (Some(good), Some(flood)) = (socket_on("127.0.0.1"), socket_on("127.0.0.2")) else {
        eprintln!("skipping: 127.0.0.2 not usable here");
        return;
    };
    let Some(proxy) = start(
        io,
        &[
            "--rate-limit",
            "20",
            "--rate-burst",
            "10",
            "--ban-time",
            "2",
        ],
    ) else {
        return;
    };
    for i in 0..50 {
        flood
            .send_to(&options(&flood, &format!("f{i}"), None, 0), proxy.addr)
            .unwrap();
    }
    good.send_to(&options(&good, "g1", None, 0), proxy.addr)
        .unwrap();
    assert_eq!(status(&recv(&good)), 200, "another source is not limited");
    let mut codes = Vec::new();
    flood
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut buf = [0u8; 4096];
    while let Ok((n, _)) = flood.recv_from(&mut buf) {
        codes.push(status(&buf[..n]));
    }
    // Where the 50 went, and so what each shard allows and bans.
    let (burst, per_shard) = if proxy.banner.contains("steer=call-id") {
        let mut n = [0usize; 2];
        for i in 0..50 {
            n[call_id_shard(format!("f{i}").as_bytes(), 2) as usize] += 1;
        }
        (5, n.to_vec())
    } else {
        (10, vec![50])
    };
    let most_ok: usize = per_shard.iter().map(|&n| n.min(burst)).sum();
    let most_bans = per_shard.iter().filter(|&&n| n > burst).count();
    let ok = codes.iter().filter(|&&c| c == 200).count();
    let busy = codes.iter().filter(|&&c| c == 503).count();
    // The first shard to ban mails the ban to the other, which may get it
    // before its own share runs out: so at least one shard's burst, at
    // most every shard's (plus a token refilled while the flood is sent),
    // and one 503 from each shard that banned on its own.
    assert!(
        (burst..=most_ok + per_shard.len()).contains(&ok),
        "{codes:?}"
    );
    assert!((1..=most_bans).contains(&busy), "{codes:?}");
    // Banned on every shard: requests the kernel steers to each of them
    // get nothing.
    let steered_to = |shard: u32| {
        (0..64)
            .map(|i| format!("banned-{i}"))
            .filter(move |c| call_id_shard(c.as_bytes(), 2) == shard)
            .take(2)
    };
    for call in steered_to(0).chain(steered_to(1)) {
        flood
            .send_to(&options(&flood, &call, None, 0), proxy.addr)
            .unwrap();
    }
    assert!(nothing_arrives(&flood), "banned on every shard");
    std::thread::sleep(Duration::from_millis(2200));
    flood
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    flood
        .send_to(&options(&flood, "f-after", None, 0), proxy.addr)
        .unwrap();
    assert_eq!(status(&recv(&flood)), 200, "the ban is over");
    let exit = proxy.stop_and_report();
    assert!(exit.contains(&format!("sources_banned={busy} ")), "{exit}");
}

on_both_backends!(
    a_flooding_source_is_banned_and_others_are_not,
    denied_and_unlisted_sources_are_dropped_unread,
    a_request_over_the_size_limit_gets_513,
    scanners_are_dropped_when_asked,
);

/// A bad block or size stops the server with a clear message.
#[test]
fn bad_flags_are_refused() {
    for (args, want) in [
        (&["--deny", "10.0.0.0/33"][..], "--deny"),
        (&["--max-message-size", "100"][..], "--max-message-size 100"),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_sipshard"))
            .args(args)
            .args(["--listen", "127.0.0.1:0"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "{err}");
    }
}
