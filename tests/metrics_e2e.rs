//! `--metrics-listen`: a running server's counters, inbox depths and
//! handling-time histogram scraped over HTTP (issue #5, observability), on
//! both I/O backends.

#[macro_use]
mod common;

use std::time::Duration;

use common::metrics::{get, metrics_addr, sum_of};
use common::process::{recv, socket, Proxy};

fn counters_are_scraped(io: &str) {
    let Some(mut proxy) = Proxy::start(
        io,
        &[
            "--metrics-listen",
            "127.0.0.1:0",
            "--advertise",
            "127.0.0.1:5060",
        ],
    ) else {
        return;
    };
    let addr = metrics_addr(&mut proxy);
    let ua = socket();
    let options = format!(
        "OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {};branch=z9hG4bKmet\r\n\
To: <sip:127.0.0.1>\r\nFrom: <sip:m@127.0.0.1>;tag=1\r\nCall-ID: met\r\nCSeq: 1 OPTIONS\r\n\r\n",
        ua.local_addr().unwrap()
    );
    ua.send_to(options.as_bytes(), proxy.addr).unwrap();
    recv(&ua);
    ua.send_to(b"\x00garbage", proxy.addr).unwrap();
    // A response whose top Via is not ours: counted by class, then dropped.
    let stray = "SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP 192.0.2.9;branch=z9hG4bKx\r\n\
To: <sip:a@b>;tag=2\r\nFrom: <sip:c@d>;tag=1\r\nCall-ID: r\r\nCSeq: 1 INVITE\r\n\r\n";
    ua.send_to(stray.as_bytes(), proxy.addr).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let (status, body) = get(addr, "/metrics");
    assert!(status.contains("200"), "{status}");
    let sum = |prefix: &str| sum_of(&body, prefix);
    assert_eq!(sum("sipshard_received_total{"), 3, "{body}");
    assert_eq!(sum("sipshard_responses_total{"), 1, "{body}");
    assert_eq!(
        sum("sipshard_responses_total{shard=\"0\",class=\"1xx\"}")
            + sum("sipshard_responses_total{shard=\"1\",class=\"1xx\"}"),
        1,
        "{body}"
    );
    assert_eq!(
        sum("sipshard_replies_total{shard=\"0\",class=\"2xx\"}")
            + sum("sipshard_replies_total{shard=\"1\",class=\"2xx\"}"),
        1
    );
    assert_eq!(sum("sipshard_parse_errors_total{"), 1);
    let options_lines: u64 = body
        .lines()
        .filter(|l| l.starts_with("sipshard_requests_total{") && l.contains("method=\"OPTIONS\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    assert_eq!(options_lines, 1, "{body}");
    assert!(body.contains(&format!("io=\"{io}\"")), "{body}");
    // Inbox depth, per shard (a plain proxy gets no mail).
    for shard in 0..2 {
        let depth = format!("sipshard_inbox_depth{{shard=\"{shard}\"}} 0\n");
        assert!(body.contains(&depth), "{body}");
    }
    assert!(body.contains("sipshard_inbox_capacity{shard=\"0\"} "));

    // One datagram in 64 is timed: three so far, none timed; 128 more from
    // the same source (so the same shard) make two samples.
    assert_eq!(sum("sipshard_handle_seconds_count{"), 0, "{body}");
    for _ in 0..128 {
        ua.send_to(b"\x00garbage", proxy.addr).unwrap();
    }
    std::thread::sleep(Duration::from_millis(300));
    let (_, body) = get(addr, "/metrics");
    assert_eq!(sum_of(&body, "sipshard_received_total{"), 131, "{body}");
    assert_eq!(sum_of(&body, "sipshard_handle_seconds_count{"), 2, "{body}");
    assert_eq!(
        sum_of(&body, "sipshard_handle_seconds_bucket{le=\"+Inf\""),
        2,
        "{body}"
    );
    assert!(body.contains("# TYPE sipshard_handle_seconds histogram"));
    assert!(get(addr, "/other").0.contains("404"));
    assert_eq!(proxy.terminate(), Some(0));
}

on_both_backends!(counters_are_scraped);
