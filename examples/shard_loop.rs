//! Drives a real [`Shard`] in-process, with no sockets: each datagram goes
//! through `Shard::handle` (guard, parse, route, write into a send slot) and
//! every batch of [`BATCH`] ends with `Shard::after_batch` (expiry tick,
//! log commit, gauges), as `shard::run` does between `recvmmsg` calls. A
//! fixed workload for `valgrind --tool=callgrind`, whose instruction counts
//! are repeatable on a machine shared with load tests, where timings are
//! not (perf/RESULTS.md, issue #6).
//!
//! The messages are built before the measured part; only `measure` (and what
//! it calls) is counted when run with `--toggle-collect`:
//!
//! ```text
//! cargo build --release --example shard_loop
//! valgrind --tool=callgrind --toggle-collect='*shard_loop::measure*' \
//!     target/release/examples/shard_loop SCENARIO N
//! ```
//!
//! Scenarios (N counts messages handed to the shard):
//! - `forward`: an INVITE to an IP Request-URI from a client and the callee's
//!   200 back through our Via, `--record-route` on (N/2 pairs);
//! - `options`: the same with OPTIONS;
//! - `register`: N REGISTERs of N distinct new users on a one-shard
//!   registrar for example.com (each answered 200);
//! - `refresh`: N users registered first (not measured), then each
//!   refreshes (CSeq 2);
//! - `grow`: N new users, timed one by one without valgrind: the slowest
//!   registrations and where the table was when they happened (the
//!   REGISTER latency p99 at 100,000 users).
//!
//! After N, `--state-dir DIR` logs the registrations as the server's flag
//! does, and `--expected-aors M` sizes the location table for M AORs.

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::Instant;

use mimalloc::MiMalloc;
use sipshard::io::{SendQueue, SEND_SLOT};
use sipshard::location::store;
use sipshard::proxy::ProxyConfig;
use sipshard::registrar::RegistrarConfig;
use sipshard::shard::{counters::ShardCounters, Shard, Shared};
use sipshard::sip::Message;
use sipshard::transport::Dest;
use sipshard::transport::Source;

// The server's allocator: the register path allocates, and what that costs
// depends on the allocator.
#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

/// Datagrams per loop iteration: what one `recvmmsg` returns at most.
const BATCH: usize = 32;

/// Send slots as a backend keeps them; only the count and the last
/// datagram are kept.
struct Slots {
    buf: Vec<u8>,
    last: usize,
    sent: usize,
    bytes: usize,
}

impl SendQueue for Slots {
    fn slot(&mut self) -> Option<&mut [u8]> {
        Some(&mut self.buf[..])
    }
    fn commit(&mut self, len: usize, _dest: Dest) {
        self.last = len;
        self.sent += 1;
        self.bytes += len;
    }
}

/// Messages laid end to end, with their sources.
#[derive(Default)]
struct Datagrams {
    bytes: Vec<u8>,
    spans: Vec<(usize, usize, Source)>,
}

impl Datagrams {
    fn push(&mut self, d: &[u8], src: SocketAddr) {
        let at = self.bytes.len();
        self.bytes.extend_from_slice(d);
        self.spans
            .push((at, d.len(), Source::udp(src, proxy_addr())));
    }
}

/// The proxy's address, where every datagram arrives.
fn proxy_addr() -> SocketAddr {
    "127.0.0.1:5060".parse().expect("literal")
}

const CLIENT: &str = "192.0.2.7:5060";
const CALLEE: &str = "192.0.2.44:5060";

fn register(user: u32, cseq: u32) -> Vec<u8> {
    // What `sipshard-load register` sends.
    format!(
        "REGISTER sip:example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:40000;branch=z9hG4bK{user:07}.{cseq:010}.0000001234567;rport\r\n\
Max-Forwards: 70\r\nTo: <sip:u{user:07}@example.com>\r\nFrom: <sip:u{user:07}@example.com>;tag=r{user:07}\r\n\
Call-ID: {user:07}-0000abcd@sipshard-load\r\nCSeq: {cseq:010} REGISTER\r\n\
Contact: <sip:u{user:07}@127.0.0.1:40000>\r\nExpires: 3600\r\nContent-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

fn request(method: &str, n: u32) -> Vec<u8> {
    let sdp = "v=0\r\no=alice 2890844526 2890844526 IN IP4 192.0.2.7\r\ns=-\r\n\
c=IN IP4 192.0.2.7\r\nt=0 0\r\nm=audio 49172 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";
    format!(
        "{method} sip:bob@192.0.2.44 SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.7:5060;branch=z9hG4bK{n:08x}-load;rport\r\n\
Max-Forwards: 70\r\nTo: <sip:bob@biloxi.example.com>\r\n\
From: <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
Call-ID: {n:08x}-a84b4c76e66710@pc33.atlanta.example.com\r\nCSeq: 314159 {method}\r\n\
Contact: <sip:alice@192.0.2.7:5060>\r\nContent-Type: application/sdp\r\n\
Content-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    )
    .into_bytes()
}

/// The callee's 200 to what we forwarded: our Via and Record-Route on top,
/// the rest copied, as a UAS builds it (§8.2.6.2, §12.1.1).
fn ok_for(forwarded: &[u8]) -> Vec<u8> {
    let msg = Message::parse(forwarded).expect("we wrote it");
    let mut out = b"SIP/2.0 200 OK\r\n".to_vec();
    for v in msg.values(sipshard::sip::HeaderName::Via) {
        out.extend_from_slice(b"Via: ");
        out.extend_from_slice(v.text);
        out.extend_from_slice(b"\r\n");
    }
    for v in msg.values(sipshard::sip::HeaderName::RecordRoute) {
        out.extend_from_slice(b"Record-Route: ");
        out.extend_from_slice(v.text);
        out.extend_from_slice(b"\r\n");
    }
    let head = std::str::from_utf8(forwarded).expect("ascii");
    for line in head.split("\r\n").skip(1) {
        if line.is_empty() {
            break;
        }
        for name in ["To:", "From:", "Call-ID:", "CSeq:"] {
            if line.starts_with(name) {
                out.extend_from_slice(line.as_bytes());
                if name == "To:" {
                    out.extend_from_slice(b";tag=callee1");
                }
                out.extend_from_slice(b"\r\n");
            }
        }
    }
    out.extend_from_slice(b"Contact: <sip:bob@192.0.2.44:5060>\r\nContent-Length: 0\r\n\r\n");
    out
}

/// The measured part: every datagram through the shard, a batch at a time.
#[inline(never)]
fn measure(shard: &mut Shard<'_>, d: &Datagrams, out: &mut Slots) {
    for batch in d.spans.chunks(BATCH) {
        for &(at, len, src) in batch {
            shard.handle(black_box(&d.bytes[at..at + len]), &src, out);
        }
        shard.after_batch();
    }
}

/// The same, each datagram timed on its own (for `grow`): nanoseconds per
/// datagram, the batch's chores charged to its last datagram, as its
/// answer waits for them.
fn timed(shard: &mut Shard<'_>, d: &Datagrams, out: &mut Slots) -> Vec<u64> {
    let mut ns = Vec::with_capacity(d.spans.len());
    for batch in d.spans.chunks(BATCH) {
        for (i, &(at, len, src)) in batch.iter().enumerate() {
            let t = Instant::now();
            shard.handle(&d.bytes[at..at + len], &src, out);
            if i + 1 == batch.len() {
                shard.after_batch();
            }
            ns.push(t.elapsed().as_nanos() as u64);
        }
    }
    ns
}

fn main() {
    let mut args = std::env::args().skip(1);
    let scenario = args.next().unwrap_or_else(|| "forward".into());
    let n: u32 = args.next().and_then(|s| s.parse().ok()).unwrap_or(10_000);
    let mut state_dir = None;
    let mut expected_aors = 0;
    while let (Some(flag), Some(value)) = (args.next(), args.next()) {
        match flag.as_str() {
            "--state-dir" => state_dir = Some(std::path::PathBuf::from(value)),
            "--expected-aors" => expected_aors = value.parse().unwrap_or(0),
            _ => eprintln!("ignored: {flag} {value}"),
        }
    }

    let mut proxy = ProxyConfig::at("127.0.0.1:5060".parse().expect("literal"));
    proxy.record_route = true;
    proxy.domains = vec![b"example.com"[..].into()];
    let registrar = RegistrarConfig {
        expected_aors,
        ..RegistrarConfig::default()
    };
    let shared = Shared::new(proxy, registrar, vec![0]).expect("inbox");
    let counters = ShardCounters::default();
    let mut shard = match &state_dir {
        Some(dir) => {
            let _ = std::fs::remove_dir_all(dir);
            let mut stores = store::adopt(dir, store::Fsync::Never, &[Vec::new()]).expect("state");
            let now = sipshard::shard::unix_now();
            let loc = shared.registrar.owner(0, 1, now, stores.pop());
            Shard::new(0, &shared, &counters, loc)
        }
        None => Shard::alone(&shared, &counters),
    };
    let mut out = Slots {
        buf: vec![0u8; SEND_SLOT],
        last: 0,
        sent: 0,
        bytes: 0,
    };
    let client: SocketAddr = CLIENT.parse().expect("literal");
    let callee: SocketAddr = CALLEE.parse().expect("literal");
    let reg_src: SocketAddr = "127.0.0.1:40000".parse().expect("literal");

    let mut d = Datagrams::default();
    match scenario.as_str() {
        "forward" | "options" => {
            let method = if scenario == "forward" {
                "INVITE"
            } else {
                "OPTIONS"
            };
            for i in 0..n / 2 {
                let req = request(method, i);
                shard.handle(&req, &Source::udp(client, proxy_addr()), &mut out);
                let ok = ok_for(&out.buf[..out.last]);
                d.push(&req, client);
                d.push(&ok, callee);
            }
            // The warm-up above forwarded them once: they are stateless,
            // so the shard does the same work again.
        }
        "register" | "grow" => {
            for u in 0..n {
                d.push(&register(u, 1), reg_src);
            }
        }
        "refresh" => {
            let mut first = Datagrams::default();
            for u in 0..n {
                first.push(&register(u, 1), reg_src);
                d.push(&register(u, 2), reg_src);
            }
            let mut sink = Slots {
                buf: vec![0u8; SEND_SLOT],
                last: 0,
                sent: 0,
                bytes: 0,
            };
            for batch in first.spans.chunks(BATCH) {
                for &(at, len, src) in batch {
                    shard.handle(&first.bytes[at..at + len], &src, &mut sink);
                }
                shard.after_batch();
            }
        }
        other => {
            eprintln!("unknown scenario {other}: forward, options, register, refresh or grow");
            std::process::exit(2);
        }
    }
    out.sent = 0;
    out.bytes = 0;

    if scenario == "grow" {
        let ns = timed(&mut shard, &d, &mut out);
        report_growth(&ns);
    } else {
        measure(&mut shard, &d, &mut out);
    }
    let messages = d.spans.len();
    println!(
        "scenario={scenario} messages={messages} sent={} bytes_out={} aors={}",
        out.sent,
        out.bytes,
        shard.location.replica.len()
    );
    if out.sent != messages {
        eprintln!(
            "warning: {} datagrams sent for {messages} handled",
            out.sent
        );
    }
}

/// Percentiles of the per-registration times, and the slowest ones with
/// the number of users registered when each happened.
fn report_growth(ns: &[u64]) {
    let mut sorted = ns.to_vec();
    sorted.sort_unstable();
    let pct = |p: f64| sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)];
    println!(
        "ns per registration: p50={} p99={} p99.9={} max={} total_ms={}",
        pct(0.5),
        pct(0.99),
        pct(0.999),
        pct(1.0),
        ns.iter().sum::<u64>() / 1_000_000
    );
    // What a client would see: REGISTERs arriving every 100 µs (10,000/s,
    // as scripts/compare.sh offers) at one FIFO server whose service time
    // is the measured one plus 14 µs per message for the kernel and the
    // system calls (17.7 µs CPU per REGISTER measured end to end at commit
    // 3e5e002, of which ~3.3 µs is this in-process work).
    let (gap, extra) = (100_000u64, 14_000u64);
    let mut free_at = 0u64;
    let mut latency: Vec<u64> = ns
        .iter()
        .enumerate()
        .map(|(i, &t)| {
            let arrive = i as u64 * gap;
            let start = arrive.max(free_at);
            free_at = start + t + extra;
            free_at - arrive
        })
        .collect();
    latency.sort_unstable();
    let lat = |p: f64| latency[((latency.len() as f64 * p) as usize).min(latency.len() - 1)];
    println!(
        "queue at 10,000/s, ns: p50={} p99={} p99.9={} max={}",
        lat(0.5),
        lat(0.99),
        lat(0.999),
        lat(1.0)
    );
    let mut slowest: Vec<(u64, usize)> = ns.iter().enumerate().map(|(i, &t)| (t, i)).collect();
    slowest.sort_unstable_by(|a, b| b.cmp(a));
    for (t, i) in slowest.iter().take(12) {
        println!("slow: {t} ns at user {i}");
    }
}
