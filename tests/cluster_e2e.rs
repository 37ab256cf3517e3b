//! Several nodes sharing the location service through Redis
//! (`--cluster`, docs/cluster.md): real sipshard processes and a real
//! redis-server on loopback. Users registered through one node are found
//! from every node; a user reachable only through its node (a TCP flow,
//! NAT) is reached through it; a node that restarts loads what Redis
//! holds. Every test runs on both I/O backends.

#[macro_use]
mod common;

use std::io::Write;
use std::net::UdpSocket;
use std::time::{Duration, Instant};

use common::process::{port, socket, stream_addr, Proxy};
use common::redis::Redis;
use common::sip::{read_message, response_to};
use common::tcp::connect;
use sipshard::sip::Message;

/// A node of the cluster on `redis`: 2 shards, a registrar for
/// example.com, and `extra` flags.
fn node(io: &str, redis: &Redis, id: &str, extra: &[&str]) -> Option<Proxy> {
    let url = redis.url();
    let mut args = vec![
        "--listen",
        "127.0.0.1:0",
        "--domain",
        "example.com",
        "--cluster",
        &url,
        "--node-id",
        id,
    ];
    args.extend_from_slice(extra);
    Proxy::start_listening(io, &args, &[])
}

/// Nodes a, b and c on `redis`; None when io_uring is refused.
fn three_nodes(io: &str, redis: &Redis) -> Option<Vec<Proxy>> {
    ["a", "b", "c"]
        .iter()
        .map(|id| node(io, redis, id, &[]))
        .collect()
}

fn register(
    user: &str,
    ua: &UdpSocket,
    contact: &str,
    call: &str,
    cseq: u32,
    expires: u32,
) -> Vec<u8> {
    format!(
        "REGISTER sip:example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:{p};branch=z9hG4bKr{call}{cseq};rport\r\n\
Max-Forwards: 70\r\nTo: <sip:{user}@example.com>\r\nFrom: <sip:{user}@example.com>;tag=r\r\n\
Call-ID: {call}\r\nCSeq: {cseq} REGISTER\r\nContact: <{contact}>\r\nExpires: {expires}\r\n\
Content-Length: 0\r\n\r\n",
        p = port(ua)
    )
    .into_bytes()
}

/// Registers `user` at `ua`'s own address through `via`; asserts the 200.
fn register_at(user: &str, ua: &UdpSocket, via: &Proxy) {
    let contact = format!("sip:{user}@127.0.0.1:{}", port(ua));
    ua.send_to(
        &register(user, ua, &contact, &format!("reg-{user}"), 1, 600),
        via.addr,
    )
    .unwrap();
    let ok = common::process::recv(ua);
    assert!(
        ok.starts_with(b"SIP/2.0 200 "),
        "{}",
        String::from_utf8_lossy(&ok)
    );
}

fn options(user: &str, from: &UdpSocket, call: &str) -> Vec<u8> {
    format!(
        "OPTIONS sip:{user}@example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:{p};branch=z9hG4bKo{call};rport\r\nMax-Forwards: 70\r\n\
To: <sip:{user}@example.com>\r\nFrom: <sip:caller@example.net>;tag=c\r\nCall-ID: {call}\r\n\
CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
        p = port(from)
    )
    .into_bytes()
}

/// Asks `via` for `user` until the request reaches `ua` (the change may
/// still be on its way from another node), for 5 s at most; the request
/// as `ua` got it, or None.
fn reaches(user: &str, via: &Proxy, ua: &UdpSocket) -> Option<Vec<u8>> {
    let caller = socket();
    ua.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut n = 0;
    let mut buf = vec![0u8; 65536];
    while Instant::now() < deadline {
        n += 1;
        let call = format!("find-{user}-{}-{n}", via.addr.port());
        caller
            .send_to(&options(user, &caller, &call), via.addr)
            .unwrap();
        while let Ok((len, _)) = ua.recv_from(&mut buf) {
            let got = buf[..len].to_vec();
            if String::from_utf8_lossy(&got).contains(&call) {
                ua.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
                return Some(got);
            }
        }
    }
    ua.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    None
}

/// Users registered through each of three nodes are found from every
/// node, and Redis holds a key per AOR.
fn registered_anywhere_is_found_everywhere(io: &str) {
    let Some(redis) = Redis::start(false) else {
        return;
    };
    let Some(nodes) = three_nodes(io, &redis) else {
        return;
    };
    let uas: Vec<UdpSocket> = (0..3).map(|_| socket()).collect();
    for (i, ua) in uas.iter().enumerate() {
        register_at(&format!("u{i}"), ua, &nodes[i]);
    }
    for (j, via) in nodes.iter().enumerate() {
        for (i, ua) in uas.iter().enumerate() {
            let got = reaches(&format!("u{i}"), via, ua);
            assert!(
                got.is_some(),
                "u{i} (registered through node {i}) not found from node {j}"
            );
        }
    }
    let keys = redis.command(&[b"KEYS", b"sipshard:aor:*"]);
    let text = String::from_utf8_lossy(&keys);
    for i in 0..3 {
        assert!(
            text.contains(&format!("sipshard:aor:sip:u{i}@example.com")),
            "{text}"
        );
    }
}

/// §10.3 across nodes: a UA that moves from node a to node b refreshes
/// its binding there (the same Call-ID, a higher CSeq); a REGISTER with
/// Expires 0 through node c removes it everywhere.
fn a_binding_moves_between_nodes_and_is_removed_everywhere(io: &str) {
    let Some(redis) = Redis::start(false) else {
        return;
    };
    let (Some(a), Some(b), Some(c)) = (
        node(io, &redis, "a", &[]),
        node(io, &redis, "b", &[]),
        node(io, &redis, "c", &[]),
    ) else {
        return;
    };
    let ua = socket();
    let contact = format!("sip:mover@127.0.0.1:{}", port(&ua));
    for (via, cseq) in [(&a, 1), (&b, 2)] {
        // Wait until the first change has reached b, as a UA re-registering
        // an hour later would find it.
        if cseq == 2 {
            assert!(reaches("mover", &b, &ua).is_some());
        }
        ua.send_to(
            &register("mover", &ua, &contact, "mover-1", cseq, 600),
            via.addr,
        )
        .unwrap();
        let ok = common::process::recv(&ua);
        assert!(
            ok.starts_with(b"SIP/2.0 200 "),
            "{}",
            String::from_utf8_lossy(&ok)
        );
    }
    // A stale REGISTER (CSeq 1 again) through c: a retransmission (200,
    // nothing changes) while c has only a's change, refused (500) once
    // b's CSeq 2 has reached c. Not before c has a's change: to a node
    // that has never heard of the binding it is a new REGISTER (which the
    // merge would order after b's, by its stamp: docs/cluster.md).
    assert!(reaches("mover", &c, &ua).is_some());
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        ua.send_to(&register("mover", &ua, &contact, "mover-1", 1, 600), c.addr)
            .unwrap();
        let r = common::process::recv(&ua);
        if r.starts_with(b"SIP/2.0 500 ") {
            break;
        }
        assert!(
            r.starts_with(b"SIP/2.0 200 "),
            "{}",
            String::from_utf8_lossy(&r)
        );
        assert!(Instant::now() < deadline, "c never saw b's CSeq 2");
        std::thread::sleep(Duration::from_millis(20));
    }
    ua.send_to(&register("mover", &ua, &contact, "mover-1", 3, 0), c.addr)
        .unwrap();
    let ok = common::process::recv(&ua);
    assert!(
        ok.starts_with(b"SIP/2.0 200 "),
        "{}",
        String::from_utf8_lossy(&ok)
    );
    // Gone from every node: 480 (known AOR, no binding) everywhere. A
    // node the removal has not reached yet forwards to the UA instead.
    let caller = socket();
    caller
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    ua.set_read_timeout(Some(Duration::from_millis(10)))
        .unwrap();
    for via in [&a, &b, &c] {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut buf = [0u8; 9000];
        loop {
            caller
                .send_to(&options("mover", &caller, "gone"), via.addr)
                .unwrap();
            if let Ok((n, _)) = caller.recv_from(&mut buf) {
                if buf.starts_with(b"SIP/2.0 480 ") {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "{}",
                    String::from_utf8_lossy(&buf[..n])
                );
            }
            assert!(
                Instant::now() < deadline,
                "node {} still has the binding",
                via.addr
            );
            while ua.recv_from(&mut buf).is_ok() {}
        }
    }
}

/// A UA registered over TCP through node a is reached from node c through
/// a, over its connection (RFC 5626 §5.3: only a holds that flow), and
/// its answer comes back the same way.
fn a_tcp_user_is_called_through_its_node(io: &str) {
    let Some(redis) = Redis::start(false) else {
        return;
    };
    let (Some(a), Some(c)) = (
        node(io, &redis, "a", &["--listen", "tcp:127.0.0.1:0"]),
        node(io, &redis, "c", &[]),
    ) else {
        return;
    };
    let mut ua = connect(stream_addr(&a.banner, "tcp"));
    let me = ua.local_addr().unwrap();
    // A Contact nothing listens at: only the flow reaches the UA.
    let reg = format!(
        "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/TCP {me};branch=z9hG4bKtreg\r\n\
To: <sip:tina@example.com>\r\nFrom: <sip:tina@example.com>;tag=r1\r\nCall-ID: reg-tina\r\n\
CSeq: 1 REGISTER\r\nContact: <sip:tina@127.0.0.1:9;transport=tcp>\r\nExpires: 600\r\n\
Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    );
    ua.write_all(reg.as_bytes()).unwrap();
    let mut buf = Vec::new();
    let ok = read_message(&mut ua, &mut buf);
    assert!(
        ok.starts_with(b"SIP/2.0 200 "),
        "{}",
        String::from_utf8_lossy(&ok)
    );
    let caller = socket();
    let deadline = Instant::now() + Duration::from_secs(5);
    ua.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut n = 0;
    let got = loop {
        assert!(Instant::now() < deadline, "the INVITE never reached tina");
        n += 1;
        let invite = format!(
            "INVITE sip:tina@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{p};branch=z9hG4bKti{n}\r\n\
To: <sip:tina@example.com>\r\nFrom: <sip:bob@127.0.0.1>;tag=b\r\nCall-ID: call-tina-{n}\r\n\
CSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
            p = port(&caller)
        );
        caller.send_to(invite.as_bytes(), c.addr).unwrap();
        let mut one = [0u8; 1];
        // Read only when something came (a 404 goes to the caller while
        // c does not know tina yet).
        if ua.peek(&mut one).is_ok() {
            break read_message(&mut ua, &mut buf);
        }
        let mut drop_buf = [0u8; 9000];
        caller
            .set_read_timeout(Some(Duration::from_millis(10)))
            .unwrap();
        let _ = caller.recv_from(&mut drop_buf);
    };
    let m = Message::parse(&got).unwrap();
    assert_eq!(
        m.request_uri_bytes().unwrap(),
        b"sip:tina@127.0.0.1:9;transport=tcp"
    );
    let text = String::from_utf8_lossy(&got);
    assert_eq!(
        text.matches("\r\nVia: ").count() + text.matches("\r\nv: ").count(),
        3,
        "{text}"
    );
    ua.write_all(&response_to(&got, 200, "OK")).unwrap();
    caller
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let call = m.call_id().unwrap().to_vec();
    loop {
        let answer = common::process::recv(&caller);
        if String::from_utf8_lossy(&answer).contains(std::str::from_utf8(&call).unwrap()) {
            assert!(
                answer.starts_with(b"SIP/2.0 200 "),
                "{}",
                String::from_utf8_lossy(&answer)
            );
            break;
        }
    }
}

/// Under --nat, a UA registered through node a from an address its
/// Contact does not name is reached from node c through a, at the
/// address a saw (only a's socket may pass that NAT).
fn a_nat_user_is_called_through_its_node(io: &str) {
    let Some(redis) = Redis::start(false) else {
        return;
    };
    let (Some(a), Some(c)) = (
        node(io, &redis, "a", &["--nat"]),
        node(io, &redis, "c", &["--nat"]),
    ) else {
        return;
    };
    let ua = socket();
    // A private Contact: loopback where nothing listens.
    ua.send_to(
        &register("nat", &ua, "sip:nat@127.0.0.2:9", "reg-nat", 1, 600),
        a.addr,
    )
    .unwrap();
    let ok = common::process::recv(&ua);
    assert!(
        ok.starts_with(b"SIP/2.0 200 "),
        "{}",
        String::from_utf8_lossy(&ok)
    );
    let got = reaches("nat", &c, &ua).expect("reached through node a");
    let text = String::from_utf8_lossy(&got);
    assert!(
        text.starts_with("OPTIONS sip:nat@127.0.0.2:9 SIP/2.0\r\n"),
        "{text}"
    );
    let top_via = text
        .lines()
        .find(|l| l.starts_with("Via: ") || l.starts_with("v: "))
        .unwrap_or_default();
    let a_via = format!("SIP/2.0/UDP 127.0.0.1:{};", a.addr.port());
    assert!(top_via.contains(&a_via), "the top Via is node a's: {text}");
}

/// A node started after the others loads every binding from Redis, and
/// one restarted after kill -9 (with the bindings in Redis) finds them all.
fn a_starting_node_loads_what_redis_holds(io: &str) {
    let Some(redis) = Redis::start(false) else {
        return;
    };
    let Some(a) = node(io, &redis, "a", &[]) else {
        return;
    };
    let uas: Vec<UdpSocket> = (0..20).map(|_| socket()).collect();
    for (i, ua) in uas.iter().enumerate() {
        register_at(&format!("early{i}"), ua, &a);
    }
    // Every change is in the stream before the new node starts.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !String::from_utf8_lossy(&redis.command(&[b"XLEN", b"sipshard:changes"]))
        .contains(":20\r\n")
    {
        assert!(Instant::now() < deadline, "20 changes never reached Redis");
        std::thread::sleep(Duration::from_millis(20));
    }
    let Some(late) = node(io, &redis, "late", &[]) else {
        return;
    };
    for (i, ua) in uas.iter().enumerate() {
        assert!(
            reaches(&format!("early{i}"), &late, ua).is_some(),
            "early{i}"
        );
    }
    a.kill9();
    let Some(again) = node(io, &redis, "a", &[]) else {
        return;
    };
    for (i, ua) in uas.iter().enumerate() {
        assert!(
            reaches(&format!("early{i}"), &again, ua).is_some(),
            "early{i} after a restart"
        );
    }
}

/// A REGISTER storm through node b (with --state-dir), b killed with
/// kill -9 in the middle of it and restarted: every binding that got a
/// 200 is found from node a and from b again, whether or not its change
/// had left b's queue before the kill (b writes its state to Redis when
/// it is back).
fn a_node_killed_in_a_storm_loses_no_binding_that_got_a_200(io: &str) {
    let Some(redis) = Redis::start(false) else {
        return;
    };
    let dir =
        std::env::temp_dir().join(format!("sipshard-cluster-kill-{}-{io}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let state = dir.to_string_lossy().into_owned();
    let (Some(a), Some(b)) = (
        node(io, &redis, "a", &[]),
        node(io, &redis, "b", &["--state-dir", &state]),
    ) else {
        return;
    };
    let b_addr = b.addr;
    let ua = socket();
    let sender = ua.try_clone().unwrap();
    let users = 1000;
    // The 200s are read as they come (a socket buffer holds only about
    // 160 of them).
    let reader = ua.try_clone().unwrap();
    reader
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let collector = std::thread::spawn(move || {
        let mut ok = Vec::new();
        let mut buf = vec![0u8; 65536];
        while let Ok((n, _)) = reader.recv_from(&mut buf) {
            let text = String::from_utf8_lossy(&buf[..n]);
            if text.starts_with("SIP/2.0 200 ") {
                if let Some(id) = text
                    .split("Call-ID: storm-")
                    .nth(1)
                    .and_then(|t| t.split("\r\n").next())
                {
                    ok.push(id.to_string());
                }
            }
        }
        ok
    });
    let storm = std::thread::spawn(move || {
        for i in 0..users {
            let contact = format!("sip:s{i}@127.0.0.1:{}", port(&sender));
            let _ = sender.send_to(
                &register(
                    &format!("s{i}"),
                    &sender,
                    &contact,
                    &format!("storm-{i}"),
                    1,
                    600,
                ),
                b_addr,
            );
            std::thread::sleep(Duration::from_micros(500));
        }
    });
    // A quarter of the way in, Redis stalls for a second (DEBUG SLEEP),
    // so that the changes b answers meanwhile are only in its queue, and
    // b is killed then.
    std::thread::sleep(Duration::from_millis(60));
    let port = redis.port;
    let stall = std::thread::spawn(move || {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.write_all(b"DEBUG SLEEP 1\r\n").unwrap();
        let mut line = [0u8; 5];
        let _ = std::io::Read::read_exact(&mut s, &mut line);
        assert_eq!(&line, b"+OK\r\n", "DEBUG SLEEP refused");
    });
    std::thread::sleep(Duration::from_millis(150));
    b.kill9();
    storm.join().unwrap();
    stall.join().unwrap();
    let ok = collector.join().unwrap();
    assert!(
        !ok.is_empty() && ok.len() < users,
        "the kill fell inside the storm: {} of {users} got 200",
        ok.len()
    );
    // Some of them never reached Redis before the kill.
    let missing = ok
        .iter()
        .filter(|i| {
            let key = format!("sipshard:aor:sip:s{i}@example.com");
            redis.line(&[b"EXISTS", key.as_bytes()]).starts_with(b":0")
        })
        .count();
    eprintln!(
        "{} got 200, {missing} of them not in Redis at the kill",
        ok.len()
    );
    assert!(
        missing > 0,
        "every 200'd binding was in Redis before the kill: the test proves nothing"
    );
    let Some(b) = node(io, &redis, "b", &["--state-dir", &state]) else {
        return;
    };
    for i in &ok {
        let user = format!("s{i}");
        assert!(
            reaches(&user, &a, &ua).is_some(),
            "{user} (200 before the kill) not found from a"
        );
        assert!(
            reaches(&user, &b, &ua).is_some(),
            "{user} not found from b after its restart"
        );
    }
    drop(b);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Redis stopped for 10 seconds while users register through three
/// nodes, then restarted (its append-only file on): the nodes answer
/// throughout, and once it is back every node reaches every user.
fn every_node_converges_after_redis_was_away(io: &str) {
    let Some(mut redis) = Redis::start(true) else {
        return;
    };
    let Some(nodes) = three_nodes(io, &redis) else {
        return;
    };
    let uas: Vec<UdpSocket> = (0..30).map(|_| socket()).collect();
    let register_some = |range: std::ops::Range<usize>| {
        for i in range {
            register_at(&format!("o{i}"), &uas[i], &nodes[i % 3]);
        }
    };
    register_some(0..10);
    std::thread::sleep(Duration::from_millis(300));
    redis.stop();
    let away = Instant::now();
    register_some(10..20);
    std::thread::sleep(Duration::from_secs(10).saturating_sub(away.elapsed()));
    redis.restart();
    register_some(20..30);
    for (j, via) in nodes.iter().enumerate() {
        for (i, ua) in uas.iter().enumerate() {
            assert!(
                reaches(&format!("o{i}"), via, ua).is_some(),
                "o{i} not found from node {j}"
            );
        }
    }
}

/// VmHWM (peak) and VmRSS of a process, in KiB.
fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

/// A node started after 100,000 users registered through another loads
/// them all through bounded batches: its peak memory stays near what it
/// holds once loaded, and near the memory of the node that built the same
/// table from REGISTERs.
fn a_node_started_after_100000_registrations_loads_them_without_a_burst(io: &str) {
    // One at a time (the mmsg and uring runs would otherwise share the
    // two CPUs with each other's 100,000 REGISTERs).
    static HEAVY: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = HEAVY.lock().unwrap_or_else(|e| e.into_inner());
    let Some(redis) = Redis::start(false) else {
        return;
    };
    let users = 100_000;
    let Some(a) = node(io, &redis, "a", &["--expected-aors", "100000"]) else {
        return;
    };
    let target = a.addr.to_string();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sipshard-load"))
        .args([
            "register",
            "--target",
            &target,
            "--users",
            "100000",
            "--rate",
            "20000",
            "--flows",
            "8",
            "--retry-missing",
            "10",
            "--kv",
        ])
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(report.contains(" bound=100000 "), "{report}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let n = String::from_utf8_lossy(&redis.line(&[b"DBSIZE"]))
            .trim()
            .trim_start_matches(':')
            .parse::<usize>()
            .unwrap_or(0);
        if n > users {
            break;
        }
        assert!(Instant::now() < deadline, "only {n} keys in Redis");
        std::thread::sleep(Duration::from_millis(100));
    }
    let Some(mut late) = node(
        io,
        &redis,
        "late",
        &[
            "--expected-aors",
            "100000",
            "--metrics-listen",
            "127.0.0.1:0",
        ],
    ) else {
        return;
    };
    let metrics = common::metrics::metrics_addr(&mut late);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, body) = common::metrics::get(metrics, "/metrics");
        let aors: Vec<u64> = body
            .lines()
            .filter(|l| l.starts_with("sipshard_aors{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
            .collect();
        if aors.len() == 2 && aors.iter().all(|&n| n >= users as u64) {
            break;
        }
        assert!(Instant::now() < deadline, "loaded {aors:?} of {users}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let (peak, rss) = memory_kib(late.child.id());
    let (_, built) = memory_kib(a.child.id());
    eprintln!(
        "late node: peak {peak} KiB, RSS {rss} KiB; node a (built by REGISTERs): RSS {built} KiB"
    );
    assert!(
        peak <= rss + 32 * 1024,
        "a burst while loading: peak {peak} KiB, {rss} KiB once loaded"
    );
    assert!(
        peak <= built + built / 2,
        "peak {peak} KiB against {built} KiB for the same table built by REGISTERs"
    );
}

/// `rediss://`: nodes reach a Redis over TLS whose certificate a CA of
/// their own (`--cluster-ca`) vouches for, and share registrations so; a
/// node that trusts only the system's roots refuses that Redis.
fn nodes_share_registrations_over_rediss(io: &str) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};
    let dir = std::env::temp_dir().join(format!("sipshard-rediss-{}-{io}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "test CA rediss");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let mut params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    params
        .subject_alt_names
        .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    let (cert_file, key_file, ca_file) = (
        dir.join("cert.pem"),
        dir.join("key.pem"),
        dir.join("ca.pem"),
    );
    std::fs::write(&cert_file, cert.pem()).unwrap();
    std::fs::write(&key_file, key.serialize_pem()).unwrap();
    std::fs::write(&ca_file, ca_cert.pem()).unwrap();
    let Some(redis) = Redis::start_tls(cert_file, key_file, ca_file.clone()) else {
        return;
    };
    let url = redis.tls_url();
    let ca = ca_file.to_string_lossy().into_owned();
    let start = |id: &str, extra: &[&str]| {
        let mut args = vec![
            "--listen",
            "127.0.0.1:0",
            "--domain",
            "example.com",
            "--cluster",
            &url,
            "--node-id",
            id,
            "--metrics-listen",
            "127.0.0.1:0",
        ];
        args.extend_from_slice(extra);
        Proxy::start_listening(io, &args, &[])
    };
    let (Some(a), Some(b), Some(mut stranger)) = (
        start("a", &["--cluster-ca", &ca]),
        start("b", &["--cluster-ca", &ca]),
        start("stranger", &[]),
    ) else {
        return;
    };
    let ua = socket();
    register_at("tls-user", &ua, &a);
    assert!(
        reaches("tls-user", &b, &ua).is_some(),
        "not shared over rediss://"
    );
    let metrics = common::metrics::metrics_addr(&mut stranger);
    std::thread::sleep(Duration::from_millis(500));
    let (_, body) = common::metrics::get(metrics, "/metrics");
    assert!(
        body.contains("sipshard_cluster_link_up{side=\"tailer\"} 0"),
        "a node without the CA connected: {body}"
    );
    assert!(
        common::metrics::sum_of(&body, "sipshard_cluster_errors") > 0
            || body.contains("sipshard_cluster_synced 0")
    );
    let _ = std::fs::remove_dir_all(&dir);
}

on_both_backends!(
    registered_anywhere_is_found_everywhere,
    a_binding_moves_between_nodes_and_is_removed_everywhere,
    a_tcp_user_is_called_through_its_node,
    a_nat_user_is_called_through_its_node,
    a_starting_node_loads_what_redis_holds,
    a_node_killed_in_a_storm_loses_no_binding_that_got_a_200,
    every_node_converges_after_redis_was_away,
    a_node_started_after_100000_registrations_loads_them_without_a_burst,
    nodes_share_registrations_over_rediss,
);
