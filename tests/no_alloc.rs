//! The hot path allocates nothing: a counting global allocator watches
//! parse -> read the proxy's fields -> validate -> write a forwarded request,
//! the same for a response (top Via removed), a locally built response, and
//! parse -> `proxy::route` -> write for a request and a response; and each
//! I/O backend receiving datagrams with their local address and answering
//! from it (a control message each way).
//!
//! Only allocations made by the thread under test are counted (the test
//! harness's own threads may allocate at any time). Logging is on: a drop
//! that writes no line (the drop log allows one per reason a second)
//! allocates nothing either.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::Ordering;

use sipshard::cli::{LogFormat, LogLevel};
use sipshard::io::mmsg::Mmsg;
use sipshard::io::socket::{bind_shard_socket, SocketOptions};
use sipshard::io::uring::{self, Uring};
use sipshard::io::{Backend, SendQueue};
use sipshard::location::{AorRecord, LocationOp, Replica};
use sipshard::proxy::{route, Action, Lookup, ProxyConfig, Scratch};
use sipshard::registrar::canonical_aor;
use sipshard::registrar::RegistrarConfig;
use sipshard::shard::{counters::ShardCounters, Shard, Shared};
use sipshard::sip::{Edits, Message, ResponseWriter, Uri};
use sipshard::transport::{Dest, Source};

struct Counting;

thread_local! {
    static ARMED: Cell<bool> = const { Cell::new(false) };
    /// Allocations this thread made while armed: each test counts its own.
    static ALLOCS: Cell<usize> = const { Cell::new(0) };
}

fn count_if_armed() {
    // try_with: the thread-locals may already be gone while a thread exits.
    if ARMED.try_with(Cell::get).unwrap_or(false) {
        let _ = ALLOCS.try_with(|n| n.set(n.get() + 1));
    }
}

fn allocs() -> usize {
    ALLOCS.with(Cell::get)
}

fn arm(on: bool) {
    ARMED.with(|a| a.set(on));
}

// SAFETY: forwards every call to the system allocator unchanged; it only
// counts calls while armed.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count_if_armed();
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count_if_armed();
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn forward_request(data: &[u8], out: &mut [u8]) -> usize {
    let msg = Message::parse(data).expect("request parses");
    msg.validate().expect("request validates");
    let via = msg.via().expect("via");
    let cseq = msg.cseq().expect("cseq");
    let call_id = msg.call_id().expect("call-id");
    let Ok(Uri::Sip(ruri)) = msg.request_uri() else {
        panic!("sip uri")
    };
    let mf = msg.max_forwards().expect("max-forwards").unwrap_or(70);
    let routes = msg.routes().count();
    let mut e = Edits::new();
    e.insert_top_via(&msg, b"SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKabc")
        .unwrap();
    e.set_max_forwards(&msg, u32::from(mf.saturating_sub(1)))
        .unwrap();
    if routes > 0 {
        e.remove_first_route(&msg).unwrap();
    }
    e.add_record_route(&msg, b"<sip:127.0.0.1;lr>").unwrap();
    let n = e.write(&msg, out).unwrap();
    n + via.branch.map_or(0, <[u8]>::len)
        + cseq.number as usize
        + call_id.len()
        + ruri.host_raw.len()
}

fn forward_response(data: &[u8], out: &mut [u8]) -> usize {
    let msg = Message::parse(data).expect("response parses");
    let _ = msg.via().expect("via").branch;
    let mut e = Edits::new();
    e.remove_top_via(&msg).unwrap();
    e.write(&msg, out).unwrap()
}

/// parse -> route -> write through the proxy, with received/rport,
/// Record-Route and our Via, as the shard does it.
fn proxy(cfg: &ProxyConfig, data: &[u8], src: Source, out: &mut [u8]) -> usize {
    let msg = Message::parse(data).expect("parses");
    let mut scratch = Scratch::default();
    let mut edits = Edits::new();
    let replica = Replica::default();
    let loc = Lookup::best(&replica, 0);
    match route(&msg, &src, cfg, loc, &mut scratch, &mut edits) {
        Action::Forward(_) => edits.write(&msg, out).expect("writes"),
        other => panic!("expected a forward, got {other:?}"),
    }
}

/// A send queue over one preallocated buffer, as a backend provides.
struct OneSlot {
    buf: Vec<u8>,
    sent: usize,
}

impl SendQueue for OneSlot {
    fn slot(&mut self) -> Option<&mut [u8]> {
        Some(&mut self.buf[..])
    }
    fn commit(&mut self, len: usize, _dest: Dest) {
        self.sent += len;
    }
}

fn reply(data: &[u8], out: &mut [u8]) -> usize {
    let msg = Message::parse(data).expect("request parses");
    let mut w = ResponseWriter::new(&msg, 200, &[b"OK"], Some(b"tag1"), out).unwrap();
    w.header("Allow", b"INVITE, ACK, CANCEL, BYE, OPTIONS")
        .unwrap();
    w.finish().unwrap()
}

#[test]
fn parse_route_write_allocates_nothing() {
    let dir = format!("{}/tests/data", env!("CARGO_MANIFEST_DIR"));
    let invite = std::fs::read(format!("{dir}/invite_softphone.sip")).unwrap();
    let ack = std::fs::read(format!("{dir}/ack.sip")).unwrap();
    let ok = std::fs::read(format!("{dir}/ok_record_route.sip")).unwrap();
    let options = std::fs::read(format!("{dir}/options_keepalive.sip")).unwrap();
    let mut out = vec![0u8; 4096];
    let mut cfg = ProxyConfig::at("127.0.0.1:5060".parse().unwrap());
    cfg.record_route = true;
    let client = Source::udp(
        "192.0.2.7:40000".parse().unwrap(),
        "127.0.0.1:5060".parse().unwrap(),
    );
    let invite_v4 = String::from_utf8(invite.clone()).unwrap().replace(
        "sip:bob@biloxi.example.com SIP/2.0",
        "sip:bob@192.0.2.44 SIP/2.0",
    );
    let mut forwarded = vec![0u8; 4096];
    let n = proxy(&cfg, invite_v4.as_bytes(), client, &mut forwarded);
    let ours = Message::parse(&forwarded[..n])
        .unwrap()
        .via()
        .unwrap()
        .branch
        .unwrap()
        .to_vec();
    let ringing = format!(
        "SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch={}\r\n\
Via: SIP/2.0/UDP 192.168.1.34:5062;branch=z9hG4bKx;rport=40000;received=192.0.2.7\r\n\
To: <sip:bob@b>;tag=2\r\nFrom: <sip:a@a>;tag=1\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n\r\n",
        String::from_utf8_lossy(&ours)
    );
    let mut queue = OneSlot {
        buf: vec![0u8; 4096],
        sent: 0,
    };
    let counters = ShardCounters::default();
    // A shard that is also registrar for example.com, with carol
    // registered (registration may allocate: it is not the forwarding
    // path), so that the location-routed INVITE below is measured.
    let mut shard_cfg = cfg.clone();
    shard_cfg.domains = vec![b"example.com"[..].into()];
    let mut shared = Shared::new(shard_cfg, RegistrarConfig::default(), vec![0]).unwrap();
    // Every access check on, so that they are measured too.
    shared.guard.allow = vec!["0.0.0.0/0".parse().unwrap(), "::/0".parse().unwrap()];
    shared.guard.deny = vec!["198.51.100.0/24".parse().unwrap()];
    shared.guard.drop_scanners = true;
    shared.guard.rate = Some(sipshard::admit::ratelimit::Limits {
        per_second: 1_000_000,
        burst: 1_000_000,
        ban_ms: 1000,
    });
    let mut shard = Shard::alone(&shared, &counters);
    let register = b"REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.50:5060;branch=z9hG4bKreg1\r\n\
Max-Forwards: 70\r\nTo: <sip:carol@example.com>\r\nFrom: <sip:carol@example.com>;tag=r\r\nCall-ID: reg-1\r\n\
CSeq: 1 REGISTER\r\nContact: <sip:carol@192.0.2.50:5070>\r\nPath: <sip:192.0.2.60:5060;lr>\r\n\
Content-Length: 0\r\n\r\n";
    shard.handle(register, &client, &mut queue);
    assert_eq!(counters.registered.load(Ordering::Relaxed), 1);
    let to_carol = invite_v4.replace(
        "sip:bob@192.0.2.44 SIP/2.0",
        "sip:carol@example.com SIP/2.0",
    );
    let unknown = invite_v4.replace(
        "sip:bob@192.0.2.44 SIP/2.0",
        "sip:nobody@example.com SIP/2.0",
    );
    // Warm up once so that lazily initialised runtime state (memchr's CPU
    // feature probe) is not counted.
    forward_request(&invite, &mut out);
    // Logging on, as in the server: the first drop of each reason writes
    // its line (which may allocate) now; the drops below, in the same
    // second of the shard's clock, only count.
    let _log = sipshard::telemetry::logging::init(LogLevel::Info, LogFormat::Text).unwrap();
    shard.handle(b"\x00garbage", &client, &mut queue);
    shard.handle(b"\r\n\r\n", &client, &mut queue);

    // A location lookup as the forwarding path will do it: canonical AOR
    // of the Request-URI into a stack buffer, then the replica.
    let mut replica = Replica::default();
    replica.apply(LocationOp::Set(AorRecord::new(
        b"sip:bob@biloxi.example.com",
        &[],
    )));
    let lookup = |data: &[u8]| -> bool {
        let msg = Message::parse(data).unwrap();
        let Ok(Uri::Sip(u)) = msg.request_uri() else {
            return false;
        };
        let mut buf = [0u8; 256];
        canonical_aor(&u, &mut buf).is_some_and(|aor| replica.lookup(aor).is_some())
    };
    assert!(lookup(&invite));

    arm(true);
    let mut total = 0;
    for _ in 0..100 {
        assert!(lookup(&invite));
        total += forward_request(&invite, &mut out);
        total += forward_request(&ack, &mut out);
        total += forward_response(&ok, &mut out);
        total += reply(&options, &mut out);
        total += proxy(&cfg, invite_v4.as_bytes(), client, &mut out);
        total += proxy(
            &cfg,
            ringing.as_bytes(),
            Source::udp(
                "192.0.2.44:5060".parse().unwrap(),
                "127.0.0.1:5060".parse().unwrap(),
            ),
            &mut out,
        );
        // The shard's whole per-datagram path: forwards (one routed by
        // the location service, with the binding's Path as Route), local
        // replies (483 for Max-Forwards 0 with received/rport on its Via;
        // 404 for an unknown user) and drops.
        for d in [
            invite_v4.as_bytes(),
            ringing.as_bytes(),
            &options[..],
            b"\x00garbage",
            b"\r\n\r\n",
            to_carol.as_bytes(),
            unknown.as_bytes(),
        ] {
            shard.handle(d, &client, &mut queue);
        }
    }
    arm(false);

    assert!(total > 0);
    assert!(queue.sent > 0);
    // Per iteration: two forwarded requests, a forwarded response, a 483
    // and a 404, one datagram that is not SIP and one keep-alive.
    assert_eq!(counters.forwarded_requests.load(Ordering::Relaxed), 200);
    assert_eq!(counters.forwarded_responses.load(Ordering::Relaxed), 100);
    assert_eq!(counters.replies[4].load(Ordering::Relaxed), 200);
    assert_eq!(counters.parse_errors.load(Ordering::Relaxed), 101);
    assert_eq!(allocs(), 0, "allocations on the hot path");

    // The counter works: an allocation while armed is seen.
    arm(true);
    let v: Vec<u8> = Vec::with_capacity(std::hint::black_box(16));
    arm(false);
    drop(v);
    assert_eq!(allocs(), 1);
}

/// Credentials alice sends for an INVITE to `uri` (RFC 7616 §3.4.1, MD5).
fn alice_credentials(nonce: &str, nc: u32, password: &str, uri: &str) -> String {
    use md5::{Digest, Md5};
    let h = |s: String| -> String {
        Md5::digest(s.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    };
    let ha1 = h(format!("alice:example.com:{password}"));
    let ha2 = h(format!("INVITE:{uri}"));
    let response = h(format!("{ha1}:{nonce}:{nc:08x}:c0ffee:auth:{ha2}"));
    format!(
        "Digest username=\"alice\", realm=\"example.com\", nonce=\"{nonce}\", uri=\"{uri}\", \
response=\"{response}\", algorithm=MD5, cnonce=\"c0ffee\", qop=auth, nc={nc:08x}"
    )
}

#[test]
fn digest_checks_and_challenges_allocate_nothing() {
    use sipshard::auth::{AuthConfig, CredentialStore, Ha1, NonceKey};
    let mut cfg = ProxyConfig::at("127.0.0.1:5060".parse().unwrap());
    cfg.domains = vec![b"example.com"[..].into()];
    let mut shared = Shared::new(cfg, RegistrarConfig::default(), vec![0]).unwrap();
    let ha1 = Ha1::of(b"alice", b"example.com", b"wonderland");
    let line = format!(
        "alice:example.com:{}:{}",
        String::from_utf8_lossy(&ha1.md5.unwrap()),
        String::from_utf8_lossy(&ha1.sha256.unwrap())
    );
    shared.auth = Some(AuthConfig {
        users: CredentialStore::parse(&line).unwrap(),
        key: NonceKey::new(&[7; 32]),
        nonce_ttl: 300,
        invite: true,
        algorithms: sipshard::auth::DEFAULT_ALGORITHMS.to_vec(),
        failure_limit: Some((1_000_000, 60_000)),
    });
    let counters = ShardCounters::default();
    let mut shard = Shard::alone(&shared, &counters);
    let nonce = shared
        .auth
        .as_ref()
        .unwrap()
        .key
        .mint(shard.now, 1, b"example.com");
    let nonce = std::str::from_utf8(&nonce).unwrap();
    let uri = "sip:bob@192.0.2.44";
    let invite = |n: u32, auth: Option<String>| {
        let auth = auth.map_or(String::new(), |a| format!("Proxy-Authorization: {a}\r\n"));
        format!(
            "INVITE {uri} SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.7:5060;branch=z9hG4bKinv{n}\r\n\
Max-Forwards: 70\r\nTo: <sip:bob@example.com>\r\nFrom: <sip:alice@example.com>;tag=a{n}\r\n\
Call-ID: auth-{n}\r\nCSeq: {n} INVITE\r\n{auth}Content-Length: 0\r\n\r\n"
        )
        .into_bytes()
    };
    // Made before arming: 100 answered INVITEs with rising nonce-counts,
    // one without credentials and one with a wrong password.
    let answered: Vec<Vec<u8>> = (1..=100)
        .map(|n| invite(n, Some(alice_credentials(nonce, n, "wonderland", uri))))
        .collect();
    let bare = invite(1000, None);
    let wrong = invite(1001, Some(alice_credentials(nonce, 1, "guess", uri)));
    let mut queue = OneSlot {
        buf: vec![0u8; 4096],
        sent: 0,
    };
    let client = Source::udp(
        "192.0.2.7:5060".parse().unwrap(),
        "127.0.0.1:5060".parse().unwrap(),
    );
    shard.handle(&bare, &client, &mut queue); // warm-up
    arm(true);
    for a in &answered {
        shard.handle(a, &client, &mut queue);
        shard.handle(&bare, &client, &mut queue);
        shard.handle(&wrong, &client, &mut queue);
    }
    arm(false);
    assert_eq!(counters.auth_accepted.load(Ordering::Relaxed), 100);
    assert_eq!(counters.forwarded_requests.load(Ordering::Relaxed), 100);
    assert_eq!(counters.auth_failures.load(Ordering::Relaxed), 100);
    assert_eq!(counters.auth_challenges.load(Ordering::Relaxed), 201);
    assert_eq!(allocs(), 0, "allocations while checking credentials");
}

/// A wildcard shard socket: datagrams to 127.0.0.2 come with that local
/// address, and the answers must leave from it.
fn wildcard_socket() -> std::net::UdpSocket {
    let opts = SocketOptions {
        recv_buffer: None,
        send_buffer: None,
    };
    bind_shard_socket("0.0.0.0:0".parse().unwrap(), &opts)
        .unwrap()
        .socket
}

/// Two rounds of 8 datagrams through `io`, each answered from the address
/// it came to; the second round is measured (the first may warm up).
fn answer_rounds<B: Backend>(mut io: B, port: u16) {
    use std::time::{Duration, Instant};
    let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let ours: std::net::SocketAddr =
        ("127.0.0.2".parse::<std::net::IpAddr>().unwrap(), port).into();
    let mut buf = [0u8; 64];
    for round in 0..2 {
        for _ in 0..8 {
            client.send_to(b"ping", ours).unwrap();
        }
        let mut got = 0;
        let mut refused = 0;
        let deadline = Instant::now() + Duration::from_secs(5);
        let before = allocs();
        arm(round == 1);
        while got < 8 && Instant::now() < deadline {
            io.poll(|d, send| {
                got += 1;
                let Some(slot) = send.slot() else { return };
                slot[..d.bytes.len()].copy_from_slice(d.bytes);
                let Some(peer) = d.source else { return };
                let dest = Dest::Udp {
                    peer,
                    from: Some(d.local.ip()),
                };
                send.commit(d.bytes.len(), dest);
            })
            .unwrap();
            refused += io.flush();
        }
        arm(false);
        assert_eq!(allocs() - before, 0, "allocations in {}", io.name());
        assert_eq!((got, refused), (8, 0));
        for _ in 0..8 {
            let (n, from) = client.recv_from(&mut buf).unwrap();
            assert_eq!((&buf[..n], from), (&b"ping"[..], ours));
        }
    }
}

/// Steering happens in the kernel before a backend reads anything, so the
/// same loop runs under every `--steer`; run it with the Call-ID program
/// attached as well as without (`flow`, `shared`: no program).
#[test]
fn the_backends_carry_local_addresses_without_allocating() {
    for steered in [false, true] {
        let socket = || {
            let s = wildcard_socket();
            if steered {
                if let Err(e) = sipshard::io::steer::attach_call_id(&s, 1) {
                    eprintln!("no Call-ID steering here: {e}");
                }
            }
            let port = s.local_addr().unwrap().port();
            (s, port)
        };
        let (s, port) = socket();
        answer_rounds(Mmsg::new(s), port);
        match uring::probe() {
            Ok(_) => {
                let (s, port) = socket();
                answer_rounds(Uring::new(s).unwrap(), port);
            }
            Err(e) => eprintln!("skipping the io_uring run: io_uring is refused here: {e}"),
        }
    }
}

/// Framing a connection's bytes (pings, pongs, pipelined messages, a body
/// still on its way) allocates nothing either.
#[test]
fn stream_framing_allocates_nothing() {
    use sipshard::transport::stream::{next_frame, Frame};
    let dir = format!("{}/tests/data", env!("CARGO_MANIFEST_DIR"));
    let options = std::fs::read(format!("{dir}/options_keepalive.sip")).unwrap();
    let mut stream = b"\r\n\r\n\r\n".to_vec();
    stream.extend_from_slice(&options);
    stream.extend_from_slice(b"MESSAGE sip:b SIP/2.0\r\nl: 5\r\n\r\nhello\r\n\r\n");
    stream.extend_from_slice(b"MESSAGE sip:b SIP/2.0\r\nContent-Length: 5\r\n\r\nhel");
    let (mut messages, mut pings) = (0, 0);
    arm(true);
    let mut at = 0;
    loop {
        match next_frame(&stream[at..], 4096) {
            Ok(Frame::Incomplete) | Err(_) => break,
            Ok(f) => {
                messages += usize::from(matches!(f, Frame::Message { .. }));
                pings += usize::from(matches!(f, Frame::Ping { .. }));
                at += f.consumed();
            }
        }
    }
    arm(false);
    assert_eq!((messages, pings), (2, 2));
    assert_eq!(allocs(), 0, "allocations while framing");
}
