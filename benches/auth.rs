//! What digest authentication adds to a request: one shard handling an
//! initial INVITE from a local user, end to end (parse, check, route, write
//! into a send slot).
//!
//! - `auth/invite_plain`: `--auth-file` off, the INVITE is forwarded;
//! - `auth/invite_md5`, `auth/invite_sha256`: `--auth-invite` on and the
//!   INVITE carries valid Proxy-Authorization, so it is checked and
//!   forwarded (the same datagram each time: a retransmission, which the
//!   nonce-count check lets through, so the full check runs every time);
//! - `auth/invite_challenge`: no credentials, answered 407 with two
//!   challenges and a fresh nonce.
//!
//! Run: `cargo bench --bench auth`; results go in perf/RESULTS.md.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use md5::Md5;
use sha2::{Digest, Sha256};
use sipshard::auth::{Algorithm, AuthConfig, CredentialStore, Ha1, NonceKey};
use sipshard::io::SendQueue;
use sipshard::proxy::ProxyConfig;
use sipshard::registrar::RegistrarConfig;
use sipshard::shard::{counters::ShardCounters, Shard, Shared};
use sipshard::transport::Dest;
use sipshard::transport::Source;

struct OneSlot(Vec<u8>, usize);

impl SendQueue for OneSlot {
    fn slot(&mut self) -> Option<&mut [u8]> {
        Some(&mut self.0[..])
    }
    fn commit(&mut self, len: usize, _dest: Dest) {
        self.1 += len;
    }
}

fn hex<D: Digest>(s: &str) -> String {
    D::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn shared(auth: bool) -> Shared {
    let mut cfg = ProxyConfig::at("127.0.0.1:5060".parse().unwrap());
    cfg.domains = vec![b"example.com"[..].into()];
    let mut shared = Shared::new(cfg, RegistrarConfig::default(), vec![0]).unwrap();
    if auth {
        let h = Ha1::of(b"alice", b"example.com", b"wonderland");
        let line = format!(
            "alice:example.com:{}:{}",
            String::from_utf8_lossy(&h.md5.unwrap()),
            String::from_utf8_lossy(&h.sha256.unwrap())
        );
        shared.auth = Some(AuthConfig {
            users: CredentialStore::parse(&line).unwrap(),
            key: NonceKey::new(&[5; 32]),
            nonce_ttl: 3600,
            invite: true,
            // Both, so that the SHA-256 answers below are checked, not refused.
            algorithms: vec![Algorithm::Sha256, Algorithm::Md5],
            failure_limit: None,
        });
    }
    shared
}

fn invite(credentials: Option<String>) -> Vec<u8> {
    let auth = credentials.map_or(String::new(), |c| format!("Proxy-Authorization: {c}\r\n"));
    format!(
        "INVITE sip:bob@192.0.2.44 SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.7:5060;branch=z9hG4bK74bf9;rport\r\n\
Max-Forwards: 70\r\n\
To: <sip:bob@example.com>\r\n\
From: \"Alice\" <sip:alice@example.com>;tag=9fxced76sl\r\n\
Call-ID: 3848276298220188511@atlanta.example.com\r\n\
CSeq: 1 INVITE\r\n\
Contact: <sip:alice@192.0.2.7:5060>\r\n\
{auth}Content-Type: application/sdp\r\n\
Content-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

fn credentials(nonce: &str, alg: &str) -> String {
    let uri = "sip:bob@192.0.2.44";
    let h = |s: String| {
        if alg == "MD5" {
            hex::<Md5>(&s)
        } else {
            hex::<Sha256>(&s)
        }
    };
    let ha1 = h("alice:example.com:wonderland".to_string());
    let ha2 = h(format!("INVITE:{uri}"));
    let response = h(format!("{ha1}:{nonce}:00000001:abcdef:auth:{ha2}"));
    format!(
        "Digest username=\"alice\", realm=\"example.com\", nonce=\"{nonce}\", uri=\"{uri}\", \
response=\"{response}\", algorithm={alg}, cnonce=\"abcdef\", qop=auth, nc=00000001"
    )
}

fn bench(c: &mut Criterion) {
    let src = Source::udp(
        "192.0.2.7:5060".parse().unwrap(),
        "127.0.0.1:5060".parse().unwrap(),
    );
    let mut g = c.benchmark_group("auth");
    let mut run = |name: &str, auth: bool, data: &dyn Fn(&Shared, u64) -> Vec<u8>, want: &str| {
        let shared = shared(auth);
        let counters = ShardCounters::default();
        let mut shard = Shard::alone(&shared, &counters);
        let datagram = data(&shared, shard.now);
        let mut q = OneSlot(vec![0u8; 4096], 0);
        shard.handle(&datagram, &src, &mut q);
        let first = String::from_utf8_lossy(&q.0[..24]).into_owned();
        assert!(first.starts_with(want), "{name}: {first}");
        g.bench_function(name, |b| {
            b.iter(|| shard.handle(black_box(&datagram), &src, &mut q))
        });
    };
    let nonce = |s: &Shared, now: u64| {
        let key = &s.auth.as_ref().unwrap().key;
        String::from_utf8(key.mint(now, 1, b"example.com").to_vec()).unwrap()
    };
    run(
        "invite_plain",
        false,
        &|_, _| invite(None),
        "INVITE sip:bob@192.0.2.4",
    );
    run(
        "invite_md5",
        true,
        &|s, now| invite(Some(credentials(&nonce(s, now), "MD5"))),
        "INVITE sip:bob@192.0.2.4",
    );
    run(
        "invite_sha256",
        true,
        &|s, now| invite(Some(credentials(&nonce(s, now), "SHA-256"))),
        "INVITE sip:bob@192.0.2.4",
    );
    run(
        "invite_challenge",
        true,
        &|_, _| invite(None),
        "SIP/2.0 407",
    );
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
