//! Fuzz the registrar with state: the input is a sequence of datagrams
//! (split at "\n--\n"), each handled by one shard that owns every AOR of
//! example.com (`--max-contacts 3`), with the clock moved on by the first
//! byte of each piece and the expiry wheel run between them. This reaches
//! §10.3 with bindings already there: refreshes, CSeq order, Call-ID
//! replacement, `*`, max-contacts, expiry, queries, and the 200's binding
//! list. Oracles: nothing panics; everything sent parses as a response;
//! no AOR in the replica has more than --max-contacts bindings, and every
//! binding it lists is live.
#![no_main]

use std::net::SocketAddr;

use libfuzzer_sys::fuzz_target;
use sipshard::io::SendQueue;
use sipshard::location::shard::LocationShard;
use sipshard::proxy::ProxyConfig;
use sipshard::registrar::register::RegistrarConfig;
use sipshard::shard::{counters::ShardCounters, Shard, Shared};
use sipshard::sip::{Message, ParseError};

struct Capture {
    buf: Vec<u8>,
    sent: Vec<Vec<u8>>,
}

impl SendQueue for Capture {
    fn slot(&mut self) -> Option<&mut [u8]> {
        Some(&mut self.buf[..])
    }
    fn commit(&mut self, len: usize, _to: SocketAddr) {
        self.sent.push(self.buf[..len].to_vec());
    }
}

const MAX_CONTACTS: usize = 3;

fuzz_target!(|data: &[u8]| {
    let mut cfg = ProxyConfig::at("127.0.0.1:5060".parse().unwrap());
    cfg.domains = vec![b"example.com"[..].into()];
    let registrar = RegistrarConfig {
        max_contacts: MAX_CONTACTS,
        min_expires: 10,
        default_expires: 60,
        max_expires: 120,
        ..RegistrarConfig::default()
    };
    let shared = Shared::with_inbox_capacity(cfg, registrar, vec![0], 16).unwrap();
    let counters = ShardCounters::default();
    let start = 1_700_000_000;
    let location = LocationShard::new(0, 1, start, &shared.registrar, None);
    let mut shard = Shard::new(0, &shared, &counters, location);
    shard.now = start;
    let mut q = Capture {
        buf: vec![0u8; 8192],
        sent: Vec::new(),
    };
    let src: SocketAddr = "192.0.2.7:40000".parse().unwrap();
    for piece in data.split_inner(b"\n--\n").take(32) {
        let (step, datagram) = piece.split_first().unwrap_or((&0, &[]));
        shard.now += u64::from(*step);
        shard.handle(datagram, src, &mut q);
        shard.after_batch();
    }
    for out in &q.sent {
        match Message::parse(out) {
            Ok(m) => assert!(m.status().is_some() || m.is_request()),
            Err(ParseError::TooManyHeaders) => {}
            Err(e) => panic!("sent a datagram that does not parse: {e}"),
        }
    }
    for rec in shard.location.replica.records() {
        let live = rec.bindings().count();
        assert!(live <= MAX_CONTACTS, "{live} bindings");
    }
});

/// Splitting a byte slice at a multi-byte separator.
trait SplitInner {
    fn split_inner<'a>(&'a self, sep: &'a [u8]) -> Box<dyn Iterator<Item = &'a [u8]> + 'a>;
}

impl SplitInner for [u8] {
    fn split_inner<'a>(&'a self, sep: &'a [u8]) -> Box<dyn Iterator<Item = &'a [u8]> + 'a> {
        let mut rest = Some(self);
        Box::new(std::iter::from_fn(move || {
            let s = rest?;
            match s.windows(sep.len()).position(|w| w == sep) {
                Some(i) => {
                    rest = Some(&s[i + sep.len()..]);
                    Some(&s[..i])
                }
                None => {
                    rest = None;
                    Some(s)
                }
            }
        }))
    }
}
