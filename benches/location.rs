//! Location service benchmarks: what a call for a registered user costs on
//! the forwarding path, with a replica of 1,000,000 AORs (one binding
//! each).
//!
//! - `lookup/hit`, `lookup/miss`: canonical AOR -> replica lookup -> best
//!   binding (the part of routing the location service adds);
//! - `route/located_invite`: the whole `proxy::route` + write of an INVITE
//!   for a registered user (R-URI rewritten, Path pushed as Route);
//! - `route/direct_invite`: the same INVITE addressed to an IP, for the
//!   ratio;
//! - `register/apply`: one REGISTER refresh applied by the owner (decode,
//!   §10.3, re-pack), without I/O.
//!
//! Run: `cargo bench --bench location`; results go in perf/RESULTS.md.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use sipshard::location::Binding;
use sipshard::location::{AorRecord, LocationOp, Replica};
use sipshard::proxy::{route, Action, Lookup, ProxyConfig, Scratch};
use sipshard::registrar::canonical_aor;
use sipshard::registrar::lookup::best;
use sipshard::registrar::save::apply;
use sipshard::registrar::RegistrarConfig;
use sipshard::sip::{Edits, Message, Uri};
use sipshard::transport::Source;

const AORS: usize = 1_000_000;

fn replica() -> Replica {
    let mut r = Replica::default();
    for i in 0..AORS {
        let b = Binding {
            contact: format!("sip:u{i:07}@192.0.2.{}:5070", i % 250 + 1)
                .into_bytes()
                .into(),
            q: None,
            expires_at: u64::MAX,
            call_id: i as u64,
            cseq: 1,
            path: if i % 2 == 0 {
                b"<sip:192.0.2.254:5060;lr>"[..].into()
            } else {
                Box::new([])
            },
            params: Box::new([]),
            source: Source::udp(
                "192.0.2.1:5070".parse().unwrap(),
                "192.0.2.100:5060".parse().unwrap(),
            ),
            created_at: 0,
            stamp: 0,
            node: Box::default(),
        };
        let aor = format!("sip:u{i:07}@example.com");
        r.apply(LocationOp::Set(AorRecord::new(aor.as_bytes(), &[b])));
    }
    r
}

fn invite(ruri: &str) -> Vec<u8> {
    format!(
        "INVITE {ruri} SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK74bf9;rport\r\n\
Max-Forwards: 70\r\nTo: <sip:u0424242@example.com>\r\nFrom: <sip:alice@elsewhere.example>;tag=9fxced76sl\r\n\
Call-ID: 3848276298220188511@198.51.100.7\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@198.51.100.7>\r\n\
Content-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

fn lookup(replica: &Replica, ruri: &[u8]) -> usize {
    let Ok(Uri::Sip(u)) = Uri::parse(ruri) else {
        return 0;
    };
    let mut buf = [0u8; 512];
    let Some(aor) = canonical_aor(&u, &mut buf) else {
        return 0;
    };
    replica
        .lookup(aor)
        .and_then(|r| best(r, 1))
        .map_or(1, |b| b.contact.len())
}

fn route_and_write(cfg: &ProxyConfig, replica: &Replica, data: &[u8], out: &mut [u8]) -> usize {
    let msg = Message::parse(data).unwrap();
    let mut scratch = Scratch::default();
    let mut edits = Edits::new();
    let loc = Lookup::best(replica, 1);
    let src = Source::udp("198.51.100.7:5060".parse().unwrap(), cfg.advertise);
    match route(&msg, &src, cfg, loc, &mut scratch, &mut edits) {
        Action::Forward(_) => edits.write(&msg, out).unwrap(),
        other => panic!("{other:?}"),
    }
}

fn benches(c: &mut Criterion) {
    let replica = replica();
    let mut g = c.benchmark_group("lookup");
    g.bench_function("hit", |b| {
        b.iter(|| lookup(&replica, black_box(b"sip:u0424242@Example.COM")))
    });
    g.bench_function("miss", |b| {
        b.iter(|| lookup(&replica, black_box(b"sip:nobody42@example.com")))
    });
    g.finish();

    let mut cfg = ProxyConfig::at("192.0.2.10:5060".parse().unwrap());
    cfg.domains = vec![b"example.com"[..].into()];
    let located = invite("sip:u0424242@example.com");
    let direct = invite("sip:u0424242@192.0.2.43:5070");
    let mut out = vec![0u8; 4096];
    let mut g = c.benchmark_group("route");
    g.bench_function("located_invite", |b| {
        b.iter(|| route_and_write(&cfg, &replica, black_box(&located), &mut out))
    });
    g.bench_function("direct_invite", |b| {
        b.iter(|| route_and_write(&cfg, &replica, black_box(&direct), &mut out))
    });
    g.finish();

    let reg =
        b"REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.7:5070;branch=z9hG4bKr2\r\n\
Max-Forwards: 70\r\nTo: <sip:u0424242@example.com>\r\nFrom: <sip:u0424242@example.com>;tag=r\r\n\
Call-ID: 424242\r\nCSeq: 2 REGISTER\r\nContact: <sip:u0424242@192.0.2.43:5070>\r\nExpires: 3600\r\n\
Content-Length: 0\r\n\r\n";
    let cfg_reg = RegistrarConfig::default();
    let rec = replica.lookup(b"sip:u0424242@example.com").unwrap();
    c.bench_function("register/apply", |b| {
        b.iter(|| {
            let msg = Message::parse(black_box(reg)).unwrap();
            let current = rec.to_bindings();
            let next = apply(
                &current,
                &msg,
                Source::udp(
                    "192.0.2.7:5070".parse().unwrap(),
                    "192.0.2.100:5060".parse().unwrap(),
                ),
                1,
                &cfg_reg,
            )
            .unwrap();
            AorRecord::new(rec.aor(), &next).len()
        })
    });
}

criterion_group!(location, benches);
criterion_main!(location);
