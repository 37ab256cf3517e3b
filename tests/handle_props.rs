//! Property tests for the shard's whole per-datagram path (parse -> route
//! -> write, or a local reply), the same oracles as the `route_packet` fuzz
//! target so that every CI run exercises them: nothing panics on mutated
//! real messages or arbitrary bytes, and whatever is sent parses again.

mod common;

use proptest::prelude::*;
use sipshard::io::SendQueue;
use sipshard::proxy::ProxyConfig;
use sipshard::registrar::RegistrarConfig;
use sipshard::shard::{counters::ShardCounters, Shard, Shared};
use sipshard::sip::{Message, ParseError, MAX_HEADERS};
use sipshard::transport::Dest;
use sipshard::transport::Source;

struct Capture {
    buf: Vec<u8>,
    sent: Option<usize>,
}

impl SendQueue for Capture {
    fn slot(&mut self) -> Option<&mut [u8]> {
        Some(&mut self.buf[..])
    }
    fn commit(&mut self, len: usize, _dest: Dest) {
        self.sent = Some(len);
    }
}

fn seeds() -> Vec<Vec<u8>> {
    let dir = format!("{}/tests/data", env!("CARGO_MANIFEST_DIR"));
    let mut v: Vec<Vec<u8>> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "sip"))
        .map(|e| std::fs::read(e.path()).unwrap())
        .collect();
    v.sort();
    v
}

/// Runs one datagram through a lone shard that is also registrar for
/// example.com, so REGISTER and location lookups are exercised too.
fn run(mut cfg: ProxyConfig, data: &[u8], q: &mut Capture) {
    cfg.domains = vec![b"example.com"[..].into()];
    let shared = Shared::with_inbox_capacity(cfg, RegistrarConfig::default(), vec![0], 16).unwrap();
    let counters = ShardCounters::default();
    let src = Source::udp(
        "192.0.2.7:40000".parse().unwrap(),
        "127.0.0.1:5060".parse().unwrap(),
    );
    Shard::alone(&shared, &counters).handle(data, &src, q);
}

fn check(data: &[u8]) {
    let mut cfg = ProxyConfig::at("127.0.0.1:5060".parse().unwrap());
    cfg.record_route = true;
    cfg.upstreams = vec!["127.0.0.9:5060".parse().unwrap()];
    let mut q = Capture {
        buf: vec![0u8; data.len() + 2048],
        sent: None,
    };
    run(cfg, data, &mut q);
    if let Some(len) = q.sent {
        let input = Message::parse(data).expect("only parsed input is answered or forwarded");
        match Message::parse(&q.buf[..len]) {
            Ok(_) => {}
            Err(ParseError::TooManyHeaders) => assert!(input.header_count() + 3 > MAX_HEADERS),
            Err(e) => panic!("sent a datagram that does not parse: {e}"),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, .. ProptestConfig::default() })]

    #[test]
    fn mutated_real_messages(
        pick in any::<prop::sample::Index>(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 0..10),
    ) {
        let all = seeds();
        let mut data = all[pick.index(all.len())].clone();
        common::mutate(&mut data, &edits);
        check(&data);
    }

    #[test]
    fn arbitrary_bytes(data in prop::collection::vec(any::<u8>(), 0..600)) {
        check(&data);
    }
}

#[test]
fn every_seed_is_forwarded_or_answered() {
    for data in seeds() {
        let mut cfg = ProxyConfig::at("127.0.0.1:5060".parse().unwrap());
        cfg.upstreams = vec!["127.0.0.9:5060".parse().unwrap()];
        let mut q = Capture {
            buf: vec![0u8; data.len() + 2048],
            sent: None,
        };
        run(cfg, &data, &mut q);
        let first = String::from_utf8_lossy(&data[..data.len().min(40)]).into_owned();
        // The 200 OK's top Via is not ours, so it is dropped; every
        // request is forwarded or answered.
        if !first.starts_with("SIP/2.0") {
            assert!(q.sent.is_some(), "{first}");
        }
    }
}
