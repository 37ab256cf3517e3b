//! `--steer` end to end: one peer's requests, each with its own Call-ID,
//! sent from one socket to two shards; the exit line's per-shard counts
//! show where the kernel put them.
//!
//! - `call-id` (the default): exactly where `hash::call_id_shard` says,
//!   which spreads the one peer over both shards;
//! - with `bpf(2)` refused by a seccomp filter (a container): `flow`, said
//!   at start-up, and the peer on one shard;
//! - `flow` and `shared` for contrast;
//! - one shard: nothing to steer, and the banner says flow.

mod common;

use std::time::Duration;

use common::process::{port, socket, spawn, Proxy};
use sipshard::hash::call_id_shard;

const REQUESTS: usize = 2_000;

fn call_id(i: usize) -> String {
    format!("{i}-31415@127.0.0.1")
}

/// Sends `REQUESTS` OPTIONS for the proxy itself (it answers them) from
/// one socket, stops the proxy, and returns the per-shard counts of its
/// exit line and everything it wrote after the banner.
fn one_peer(proxy: Proxy) -> (Vec<u64>, String) {
    let addr = proxy.addr;
    let uac = socket();
    for i in 0..REQUESTS {
        let m = format!(
            "OPTIONS sip:{addr} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{};branch=z9hG4bKs{i}\r\n\
To: <sip:x@127.0.0.1>\r\nFrom: <sip:y@127.0.0.1>;tag=1\r\nCall-ID: {}\r\nCSeq: 1 OPTIONS\r\n\
Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
            port(&uac),
            call_id(i)
        );
        uac.send_to(m.as_bytes(), addr).unwrap();
        // Paced, so that no datagram is lost to a full buffer and the
        // counts can be compared exactly.
        if i % 100 == 99 {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    let rest = proxy.stop_and_read();
    let per_shard: Vec<u64> = rest
        .split("per_shard_received=[")
        .nth(1)
        .and_then(|s| s.split(']').next())
        .map(|s| s.split(',').filter_map(|n| n.parse().ok()).collect())
        .unwrap_or_default();
    assert_eq!(per_shard.len(), 2, "{rest}");
    assert_eq!(
        per_shard.iter().sum::<u64>(),
        REQUESTS as u64,
        "none lost: {rest}"
    );
    (per_shard, rest)
}

fn call_id_spreads_one_peer_where_the_hash_says(io: &str) {
    let Some(proxy) = Proxy::start(io, &[]) else {
        return;
    };
    if !proxy.banner.contains("steer=call-id") {
        // Only an environment that refuses bpf(2) may say otherwise.
        assert!(proxy.banner.contains("steer=flow"), "{}", proxy.banner);
        eprintln!("skipped: eBPF refused here: {}", proxy.banner.trim());
        return;
    }
    let (per_shard, _) = one_peer(proxy);
    let mut expected = [0u64; 2];
    for i in 0..REQUESTS {
        expected[call_id_shard(call_id(i).as_bytes(), 2) as usize] += 1;
    }
    assert_eq!(
        per_shard, expected,
        "the kernel chose as hash::call_id_shard does"
    );
    assert!(
        per_shard.iter().all(|&n| n as usize >= REQUESTS / 4),
        "one peer over both shards: {per_shard:?}"
    );
}

fn refused_bpf_falls_back_to_flow_and_says_so(io: &str) {
    let Some(mut proxy) = Proxy::start_refusing(io, &[], &[libc::SYS_bpf]) else {
        return;
    };
    assert!(proxy.banner.contains("steer=flow"), "{}", proxy.banner);
    let warning = proxy.next_line();
    assert!(
        warning.contains("--steer call-id unavailable") && warning.contains("using flow"),
        "{warning}"
    );
    let (per_shard, _) = one_peer(proxy);
    assert!(
        per_shard.contains(&(REQUESTS as u64)),
        "flow: one peer, one shard: {per_shard:?}"
    );
}

fn flow_keeps_one_peer_on_one_shard(io: &str) {
    let Some(proxy) = Proxy::start(io, &["--steer", "flow"]) else {
        return;
    };
    assert!(proxy.banner.contains("steer=flow"), "{}", proxy.banner);
    let (per_shard, _) = one_peer(proxy);
    assert!(per_shard.contains(&(REQUESTS as u64)), "{per_shard:?}");
}

fn shared_spreads_one_peer(io: &str) {
    let Some(proxy) = Proxy::start(io, &["--steer", "shared"]) else {
        return;
    };
    assert!(proxy.banner.contains("steer=shared"), "{}", proxy.banner);
    let (per_shard, _) = one_peer(proxy);
    assert!(per_shard.iter().all(|&n| n > 0), "{per_shard:?}");
}

/// One shard has nothing to steer: no program is loaded and the banner
/// says flow, the choice in force, not the call-id asked for by default.
#[test]
fn one_shard_loads_no_program_and_says_flow() {
    let (mut child, banner, _err) =
        spawn(&["--listen", "127.0.0.1:0", "--shards", "1", "--io", "mmsg"]);
    let _ = child.kill();
    let _ = child.wait();
    assert!(banner.contains("1 shard(s)"), "{banner}");
    assert!(banner.contains("steer=flow"), "{banner}");
}

on_both_backends!(
    call_id_spreads_one_peer_where_the_hash_says,
    refused_bpf_falls_back_to_flow_and_says_so,
    flow_keeps_one_peer_on_one_shard,
    shared_spreads_one_peer,
);
