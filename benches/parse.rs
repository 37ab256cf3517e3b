//! Parse and write benchmarks, with the rsip crate as a peer baseline on
//! the same messages in the same criterion groups.
//!
//! - `tokenize/*`: start line + header index (+ body framing). rsip's
//!   equivalent is `SipMessage::try_from`, which tokenizes every header.
//! - `parse_read/*`: tokenize, then read what a stateless proxy reads: top
//!   Via branch, CSeq, Call-ID and (for requests) the Request-URI host.
//! - `write/forward_invite`: from a parsed INVITE, write the forwarded copy
//!   (new top Via, Max-Forwards decremented) into a send buffer.
//! - `parse_forward/invite`: the two together, as the hot path does them.
//!
//! Run: `cargo bench --bench parse`; results go in perf/RESULTS.md.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use rsip::prelude::*;
use sipshard::sip::{Edits, Host, Message, Uri};

fn load(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

const MESSAGES: [(&str, &str); 3] = [
    ("invite", "invite_softphone.sip"),
    ("register", "register_contacts.sip"),
    ("ok200", "ok_record_route.sip"),
];

/// What a proxy reads, folded into one number so nothing is optimised out.
fn read_sipshard(msg: &Message<'_>) -> usize {
    let mut n = 0;
    if let Ok(via) = msg.via() {
        n += via.branch.map_or(0, <[u8]>::len);
    }
    if let Ok(cseq) = msg.cseq() {
        n += cseq.number as usize;
    }
    if let Ok(id) = msg.call_id() {
        n += id.len();
    }
    if msg.is_request() {
        if let Ok(Uri::Sip(u)) = msg.request_uri() {
            n += match u.host {
                Host::Name(h) => h.len(),
                Host::V4(_) => 4,
                Host::V6(_) => 16,
            };
        }
    }
    n
}

fn read_rsip(msg: &rsip::SipMessage) -> usize {
    let mut n = 0;
    if let Ok(via) = msg.via_header().and_then(|v| v.typed()) {
        n += via.branch().map_or(0, |b| b.to_string().len());
    }
    if let Ok(cseq) = msg.cseq_header().and_then(|c| c.typed()) {
        n += cseq.seq as usize;
    }
    if let Ok(id) = msg.call_id_header() {
        n += id.value().len();
    }
    if let rsip::SipMessage::Request(req) = msg {
        n += match &req.uri.host_with_port.host {
            rsip::Host::Domain(d) => d.to_string().len(),
            rsip::Host::IpAddr(_) => 4,
        };
    }
    n
}

fn tokenize(c: &mut Criterion) {
    for (label, file) in MESSAGES {
        let data = load(file);
        let mut g = c.benchmark_group(format!("tokenize/{label}"));
        g.throughput(Throughput::Bytes(data.len() as u64));
        g.bench_function("sipshard", |b| {
            b.iter(|| Message::parse(black_box(&data)).map(|m| m.header_count()))
        });
        g.bench_function("rsip", |b| {
            b.iter(|| {
                rsip::SipMessage::try_from(black_box(&data[..])).map(|m| m.headers().iter().count())
            })
        });
        g.finish();
    }
}

fn parse_read(c: &mut Criterion) {
    for (label, file) in MESSAGES {
        let data = load(file);
        let mut g = c.benchmark_group(format!("parse_read/{label}"));
        g.throughput(Throughput::Bytes(data.len() as u64));
        g.bench_function("sipshard", |b| {
            b.iter(|| Message::parse(black_box(&data)).map(|m| read_sipshard(&m)))
        });
        g.bench_function("rsip", |b| {
            b.iter(|| rsip::SipMessage::try_from(black_box(&data[..])).map(|m| read_rsip(&m)))
        });
        g.finish();
    }
}

const OUR_VIA: &[u8] = b"SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK5f3a9c2e71d04b88";

fn forward_sipshard(msg: &Message<'_>, out: &mut [u8]) -> usize {
    let mf = msg
        .max_forwards()
        .ok()
        .flatten()
        .map_or(70, |n| n.saturating_sub(1));
    let mut e = Edits::new();
    let _ = e.insert_top_via(msg, OUR_VIA);
    let _ = e.set_max_forwards(msg, u32::from(mf));
    e.write(msg, out).unwrap_or(0)
}

fn forward_rsip(mut req: rsip::Request) -> String {
    let mf = req
        .max_forwards_header()
        .ok()
        .and_then(|m| m.value().parse::<u32>().ok())
        .map_or(70, |n| n.saturating_sub(1));
    if let Ok(h) = req.max_forwards_header_mut() {
        *h = rsip::headers::MaxForwards::new(mf.to_string());
    }
    let via = rsip::Header::Via(rsip::headers::Via::new(
        std::str::from_utf8(OUR_VIA).unwrap_or_default(),
    ));
    let mut headers = rsip::Headers::default();
    headers.push(via);
    for h in req.headers.iter() {
        headers.push(h.clone());
    }
    req.headers = headers;
    req.to_string()
}

fn write(c: &mut Criterion) {
    let data = load("invite_softphone.sip");
    let mut out = vec![0u8; 4096];
    let msg = Message::parse(&data).unwrap();
    let rsip_req = rsip::Request::try_from(&data[..]).unwrap();
    let mut g = c.benchmark_group("write/forward_invite");
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.bench_function("sipshard", |b| {
        b.iter(|| forward_sipshard(black_box(&msg), &mut out))
    });
    g.bench_function("rsip", |b| {
        b.iter_batched(|| rsip_req.clone(), forward_rsip, BatchSize::SmallInput)
    });
    g.finish();

    let mut g = c.benchmark_group("parse_forward/invite");
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.bench_function("sipshard", |b| {
        b.iter(|| {
            let msg = Message::parse(black_box(&data)).unwrap();
            forward_sipshard(&msg, &mut out)
        })
    });
    g.bench_function("rsip", |b| {
        b.iter(|| forward_rsip(rsip::Request::try_from(black_box(&data[..])).unwrap()))
    });
    g.finish();
}

criterion_group!(benches, tokenize, parse_read, write);
criterion_main!(benches);
