//! Fuzz digest authentication: the input is parsed as Digest credentials
//! on its own, and handled as a datagram by a shard that is registrar for
//! example.com with --auth-file (alice, bob) and --auth-invite, its clock
//! fixed so that nonces minted for the seed corpus (same key, same time)
//! stay fresh. Oracles: nothing panics; everything sent parses; a 401 or
//! 407 carries one challenge per algorithm for realm example.com.
#![no_main]

mod capture;

use libfuzzer_sys::fuzz_target;
use sipshard::auth::{AuthConfig, CredentialStore, Credentials, Ha1, NonceKey, DEFAULT_ALGORITHMS};
use sipshard::proxy::ProxyConfig;
use sipshard::registrar::RegistrarConfig;
use sipshard::shard::{counters::ShardCounters, Shard, Shared};
use sipshard::sip::{HeaderName, Message, ParseError};

/// The clock and key the seed corpus was made with (fuzz/seeds.py).
const NOW: u64 = 1_700_000_000;
const KEY: [u8; 32] = [42; 32];

fn users() -> CredentialStore {
    let mut text = String::new();
    for (user, password) in [("alice", "wonderland"), ("bob", "builder")] {
        let h = Ha1::of(user.as_bytes(), b"example.com", password.as_bytes());
        let hex = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        text += &format!(
            "{user}:example.com:{}:{}\n",
            hex(&h.md5.unwrap()),
            hex(&h.sha256.unwrap())
        );
    }
    CredentialStore::parse(&text).unwrap()
}

fuzz_target!(|data: &[u8]| {
    let _ = Credentials::parse(data);

    let mut cfg = ProxyConfig::at("127.0.0.1:5060".parse().unwrap());
    cfg.domains = vec![b"example.com"[..].into()];
    let mut shared =
        Shared::with_inbox_capacity(cfg, RegistrarConfig::default(), vec![0], 16).unwrap();
    shared.auth = Some(AuthConfig {
        users: users(),
        key: NonceKey::new(&KEY),
        nonce_ttl: 300,
        invite: true,
        algorithms: DEFAULT_ALGORITHMS.to_vec(),
        failure_limit: None,
    });
    let counters = ShardCounters::default();
    let mut shard = Shard::alone(&shared, &counters);
    shard.now = NOW;
    let mut q = capture::Capture::new(data.len() + 4096);
    let src = sipshard::transport::Source::udp(
        "192.0.2.7:40000".parse().unwrap(),
        "127.0.0.1:5060".parse().unwrap(),
    );
    shard.handle(data, &src, &mut q);
    for out in &q.sent {
        let m = match Message::parse(out) {
            Ok(m) => m,
            Err(ParseError::TooManyHeaders) => continue,
            Err(e) => panic!("sent a datagram that does not parse: {e}"),
        };
        let header = match m.status() {
            Some(401) => HeaderName::WwwAuthenticate,
            Some(407) => HeaderName::ProxyAuthenticate,
            _ => continue,
        };
        let challenges: Vec<&[u8]> = m
            .headers()
            .filter(|h| h.name == header)
            .map(|h| h.value)
            .collect();
        assert_eq!(challenges.len(), DEFAULT_ALGORITHMS.len());
        for c in challenges {
            assert!(c.starts_with(b"Digest realm=\"example.com\", nonce=\""));
        }
    }
});
