//! Fuzz the registrar with state: the input is a sequence of datagrams
//! (split at "\n--\n"), each handled by one shard that owns every AOR of
//! example.com (`--max-contacts 3`), with the clock moved on by the first
//! byte of each piece and the expiry wheel run between them. This reaches
//! §10.3 with bindings already there: refreshes, CSeq order, Call-ID
//! replacement, `*`, max-contacts, expiry, queries, and the 200's binding
//! list. Oracles: nothing panics; everything sent parses as a response;
//! no AOR in the replica has more than --max-contacts bindings; after a 200
//! that lists bindings, the replica has the REGISTER's AOR with at least
//! that many; and every AOR confirmed so is still in the replica for the
//! next 100 s (its record lives at least min-expires + max-expires, 130 s):
//! a REGISTER must never lose another AOR's record, as hash collisions
//! once did.
#![no_main]

mod capture;

use libfuzzer_sys::fuzz_target;
use sipshard::proxy::ProxyConfig;
use sipshard::registrar::aor_of;
use sipshard::registrar::RegistrarConfig;
use sipshard::shard::{counters::ShardCounters, Shard, Shared};
use sipshard::sip::{Message, ParseError};

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
    let location = shared.registrar.owner(0, 1, start, None);
    let mut shard = Shard::new(0, &shared, &counters, location);
    shard.now = start;
    let mut q = capture::Capture::new(8192);
    let src = sipshard::transport::Source::udp(
        "192.0.2.7:40000".parse().unwrap(),
        "127.0.0.1:5060".parse().unwrap(),
    );
    let mut confirmed: Vec<(Box<[u8]>, u64)> = Vec::new();
    for piece in data.split_inner(b"\n--\n").take(32) {
        let (step, datagram) = piece.split_first().unwrap_or((&0, &[]));
        shard.now += u64::from(*step);
        let before = q.sent.len();
        shard.handle(datagram, &src, &mut q);
        if q.sent.len() > before {
            if let Some(aor) = check_binding_kept(&shard, datagram, &q.sent[before]) {
                confirmed.push((aor, shard.now));
            }
        }
        shard.after_batch();
        for (aor, at) in &confirmed {
            if shard.now < at + 100 {
                assert!(
                    shard.location.replica.lookup(aor).is_some(),
                    "{} was lost",
                    String::from_utf8_lossy(aor)
                );
            }
        }
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

/// After a 200 to a REGISTER listing N bindings, the AOR is in the replica
/// with at least N; returns the AOR.
fn check_binding_kept(shard: &Shard<'_>, request: &[u8], answer: &[u8]) -> Option<Box<[u8]>> {
    let (Ok(req), Ok(resp)) = (Message::parse(request), Message::parse(answer)) else {
        return None;
    };
    if resp.status() != Some(200) || req.method().map(|m| m.as_bytes()) != Some(&b"REGISTER"[..]) {
        return None;
    }
    let listed = resp.contacts().count();
    if listed == 0 {
        return None;
    }
    let aor = aor_of(&req).ok()?;
    let kept = shard.location.replica.lookup(&aor).map_or(0, |r| r.len());
    assert!(
        kept >= listed,
        "200 listed {listed} binding(s), the replica has {kept} for {}",
        String::from_utf8_lossy(&aor)
    );
    Some(aor)
}

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
