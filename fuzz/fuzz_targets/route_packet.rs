//! Fuzz the whole per-datagram path as a shard runs it: parse -> route ->
//! write (or a local reply) into a send buffer. Oracles: nothing panics;
//! a forwarded datagram parses again, keeps the body, and a forwarded
//! request carries our Via on top.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sipshard::io::SendQueue;
use sipshard::proxy::ProxyConfig;
use sipshard::registrar::RegistrarConfig;
use sipshard::shard::{counters::ShardCounters, Shard, Shared};
use sipshard::sip::{Message, ParseError, MAX_HEADERS};
use sipshard::transport::Dest;

struct Capture {
    buf: Vec<u8>,
    out: Option<(usize, Dest)>,
}

impl SendQueue for Capture {
    fn slot(&mut self) -> Option<&mut [u8]> {
        Some(&mut self.buf[..])
    }
    fn commit(&mut self, len: usize, dest: Dest) {
        self.out = Some((len, dest));
    }
}

fuzz_target!(|data: &[u8]| {
    let mut cfg = ProxyConfig::at("127.0.0.1:5060".parse().unwrap());
    cfg.record_route = true;
    cfg.upstreams = vec!["127.0.0.9:5060".parse().unwrap()];
    cfg.domains = vec![b"example.com"[..].into()];
    let shared = Shared::with_inbox_capacity(cfg, RegistrarConfig::default(), vec![0], 16).unwrap();
    let counters = ShardCounters::default();
    let mut q = Capture {
        buf: vec![0u8; data.len() + 2048],
        out: None,
    };
    let src = sipshard::transport::Source::udp(
        "192.0.2.7:40000".parse().unwrap(),
        "127.0.0.1:5060".parse().unwrap(),
    );
    Shard::alone(&shared, &counters).handle(data, &src, &mut q);
    let Some((len, _to)) = q.out else { return };
    let Ok(input) = Message::parse(data) else {
        panic!("something was sent for input that does not parse");
    };
    match Message::parse(&q.buf[..len]) {
        Ok(out) => {
            if out.status().is_none() && input.is_request() {
                let top = out.via().expect("forwarded request has a top Via");
                assert_eq!(top.host_raw, b"127.0.0.1");
            }
        }
        // Our Via, Record-Route and Max-Forwards can overfill the index.
        Err(ParseError::TooManyHeaders) => assert!(input.header_count() + 3 > MAX_HEADERS),
        Err(e) => panic!("sent a datagram that does not parse: {e}"),
    }
});
