//! The registrar, location service and redirect server end to end (RFC
//! 3261 §10.3, §16.5-16.6, §8.3; RFC 3327 Path): the real binary on
//! loopback, registering test UAs written here and calling them. Every test
//! runs on both I/O backends; the io_uring ones skip, saying why, where
//! io_uring is refused.

#[macro_use]
mod common;

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use common::process::{listen_addrs, nothing_arrives, port, recv, socket, Proxy};
use sipshard::sip::{HeaderName, Message};

const DOMAIN: &str = "example.com";

/// A REGISTER for `user`@example.com from `ua`, with `extra` header lines.
fn register(user: &str, ua: &UdpSocket, call: &str, cseq: u32, extra: &str) -> Vec<u8> {
    format!(
        "REGISTER sip:{DOMAIN} SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:{p};branch=z9hG4bKr{call}{cseq};rport\r\n\
Max-Forwards: 70\r\n\
To: <sip:{user}@{DOMAIN}>\r\n\
From: <sip:{user}@{DOMAIN}>;tag=r{cseq}\r\n\
Call-ID: {call}\r\n\
CSeq: {cseq} REGISTER\r\n\
{extra}Content-Length: 0\r\n\r\n",
        p = port(ua)
    )
    .into_bytes()
}

/// `Contact: <sip:user@127.0.0.1:PORT>` for a UA socket.
fn contact_of(user: &str, ua: &UdpSocket, params: &str) -> String {
    format!("Contact: <sip:{user}@127.0.0.1:{}>{params}\r\n", port(ua))
}

/// A request for `user`@example.com from `uac`.
fn call(method: &str, user: &str, uac: &UdpSocket, call: &str) -> Vec<u8> {
    format!(
        "{method} sip:{user}@{DOMAIN} SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:{p};branch=z9hG4bKc{call};rport\r\n\
Max-Forwards: 70\r\n\
To: <sip:{user}@{DOMAIN}>\r\n\
From: <sip:caller@elsewhere.example>;tag=c1\r\n\
Call-ID: {call}\r\n\
CSeq: 1 {method}\r\n\
Content-Length: 0\r\n\r\n",
        p = port(uac)
    )
    .into_bytes()
}

/// Sends `req` from `from` to the server and returns the response.
fn ask(proxy: &Proxy, from: &UdpSocket, req: &[u8]) -> Vec<u8> {
    from.send_to(req, proxy.addr).unwrap();
    recv(from)
}

fn status(data: &[u8]) -> u16 {
    Message::parse(data).unwrap().status().unwrap()
}

/// (contact URI, expires, q) of every Contact of a response.
fn contacts(data: &[u8]) -> Vec<(String, Option<u32>, Option<u16>)> {
    let m = Message::parse(data).unwrap();
    m.contacts()
        .map(|c| {
            let c = c.unwrap();
            let sipshard::sip::Contact::Addr(a) = &c else {
                panic!("star in a response")
            };
            (
                String::from_utf8_lossy(a.uri).into_owned(),
                c.expires(),
                c.q(),
            )
        })
        .collect()
}

fn start(io: &str, extra: &[&str]) -> Option<Proxy> {
    let mut args = vec!["--domain", DOMAIN];
    args.extend_from_slice(extra);
    Proxy::start(io, &args)
}

/// §10.3 step 8 and §16.6: a REGISTER is answered 200 with the binding,
/// its remaining expires, Date and `Supported: path`; an INVITE for the
/// AOR reaches the contact with the Request-URI rewritten, and the
/// response comes back. Unknown users get 404; OPTIONS to the domain 200.
fn register_then_call(io: &str) {
    let Some(proxy) = start(io, &[]) else { return };
    let (alice, caller) = (socket(), socket());
    let first = register(
        "alice",
        &alice,
        "reg-a",
        1,
        &contact_of("alice", &alice, ""),
    );
    let ok = ask(&proxy, &alice, &first);
    // A retransmission (its 200 was lost) gets 200 again, not 500, and
    // changes nothing.
    let again = ask(&proxy, &alice, &first);
    assert_eq!(status(&again), 200);
    assert_eq!(contacts(&again), contacts(&ok));
    let m = Message::parse(&ok).unwrap();
    assert_eq!(m.status(), Some(200), "{}", String::from_utf8_lossy(&ok));
    let want = format!("sip:alice@127.0.0.1:{}", port(&alice));
    assert_eq!(contacts(&ok), vec![(want.clone(), Some(3600), None)]);
    assert!(m
        .header(HeaderName::Date)
        .is_some_and(|d| d.ends_with(b"GMT")));
    assert_eq!(m.header(HeaderName::Supported), Some(&b"path"[..]));
    assert!(m.to().unwrap().tag().is_some());

    caller
        .send_to(&call("INVITE", "alice", &caller, "call-1"), proxy.addr)
        .unwrap();
    let got = recv(&alice);
    let inv = Message::parse(&got).unwrap();
    assert_eq!(inv.request_uri_bytes(), Some(want.as_bytes()));
    assert_eq!(inv.max_forwards(), Ok(Some(69)));
    let reply = format!(
        "SIP/2.0 486 Busy Here\r\n{}To: <sip:alice@{DOMAIN}>;tag=b\r\nFrom: <sip:caller@elsewhere.example>;tag=c1\r\n\
Call-ID: call-1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n",
        inv.values(HeaderName::Via)
            .map(|v| format!("Via: {}\r\n", String::from_utf8_lossy(v.text)))
            .collect::<String>()
    );
    alice.send_to(reply.as_bytes(), proxy.addr).unwrap();
    assert_eq!(status(&recv(&caller)), 486);

    assert_eq!(
        status(&ask(
            &proxy,
            &caller,
            &call("INVITE", "nobody", &caller, "c2")
        )),
        404
    );
    let options = format!(
        "OPTIONS sip:{DOMAIN} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{};branch=z9hG4bKo1\r\n\
To: <sip:{DOMAIN}>\r\nFrom: <sip:x@{DOMAIN}>;tag=1\r\nCall-ID: o1\r\nCSeq: 1 OPTIONS\r\n\r\n",
        port(&caller)
    );
    assert_eq!(status(&ask(&proxy, &caller, options.as_bytes())), 200);
    // An ACK for a user we cannot find is not answered (§17).
    caller
        .send_to(&call("ACK", "nobody", &caller, "c2"), proxy.addr)
        .unwrap();
    assert!(nothing_arrives(&caller));
    let exit = proxy.stop_and_report();
    assert!(exit.contains("registered=1"), "{exit}");
}

/// The REGISTER rules of §10.3: `*` only alone with Expires 0, 423 with
/// Min-Expires, the cap at --max-expires, expires=0 removing one binding,
/// Call-ID/CSeq ordering (500), a query, q kept, 480 once no binding is
/// left, and --max-contacts with `reject` (403).
fn register_rules(io: &str) {
    let Some(proxy) = start(
        io,
        &[
            "--max-expires",
            "7200",
            "--max-contacts",
            "2",
            "--over-contacts",
            "reject",
        ],
    ) else {
        return;
    };
    let (bob, bob2, bob3, caller) = (socket(), socket(), socket(), socket());
    let c1 = contact_of("bob", &bob, ";q=0.5");
    let c2 = contact_of("bob", &bob2, ";q=0.9;expires=99999");
    let ok = ask(
        &proxy,
        &bob,
        &register("bob", &bob, "reg-b", 2, &format!("{c1}{c2}")),
    );
    assert_eq!(status(&ok), 200);
    let got = contacts(&ok);
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!((got[0].1, got[0].2), (Some(3600), Some(500)));
    assert_eq!(
        (got[1].1, got[1].2),
        (Some(7200), Some(900)),
        "capped, q kept"
    );

    // The best binding (highest q) gets the call.
    caller
        .send_to(&call("INVITE", "bob", &caller, "q-1"), proxy.addr)
        .unwrap();
    assert!(Message::parse(&recv(&bob2)).unwrap().is_request());

    let bad_star = register("bob", &bob, "reg-b", 2, "Contact: *\r\n");
    assert_eq!(status(&ask(&proxy, &bob, &bad_star)), 400);
    let brief = ask(
        &proxy,
        &bob,
        &register(
            "bob",
            &bob,
            "reg-b",
            3,
            &contact_of("bob", &bob, ";expires=5"),
        ),
    );
    assert_eq!(status(&brief), 423);
    assert_eq!(Message::parse(&brief).unwrap().min_expires(), Ok(Some(60)));
    // §10.3 step 3: an AOR of a domain we do not serve.
    let foreign = String::from_utf8(register("bob", &bob, "reg-f", 1, &c1))
        .unwrap()
        .replace("To: <sip:bob@example.com>", "To: <sip:bob@other.example>");
    assert_eq!(status(&ask(&proxy, &bob, foreign.as_bytes())), 404);
    let stale = register("bob", &bob, "reg-b", 1, &c1);
    // (the stored CSeq is 2: a lower one is out of order)
    assert_eq!(status(&ask(&proxy, &bob, &stale)), 500, "CSeq not higher");
    let third = register("bob", &bob3, "reg-b3", 1, &contact_of("bob", &bob3, ""));
    assert_eq!(
        status(&ask(&proxy, &bob3, &third)),
        403,
        "over --max-contacts"
    );

    // expires=0 removes one binding; a query lists what is left.
    let remove = register(
        "bob",
        &bob,
        "reg-b",
        4,
        &contact_of("bob", &bob2, ";expires=0"),
    );
    assert_eq!(contacts(&ask(&proxy, &bob, &remove)).len(), 1);
    let query = ask(&proxy, &bob3, &register("bob", &bob3, "reg-q", 1, ""));
    assert_eq!(
        contacts(&query)
            .into_iter()
            .map(|c| c.0)
            .collect::<Vec<_>>(),
        vec![format!("sip:bob@127.0.0.1:{}", port(&bob))]
    );
    // `*` with Expires 0 removes the rest: the AOR is known, reachable
    // nowhere, so a call gets 480.
    let all = register("bob", &bob, "reg-b", 5, "Contact: *\r\nExpires: 0\r\n");
    let ok = ask(&proxy, &bob, &all);
    assert_eq!(status(&ok), 200);
    assert!(contacts(&ok).is_empty());
    assert_eq!(
        status(&ask(
            &proxy,
            &caller,
            &call("INVITE", "bob", &caller, "q-2")
        )),
        480
    );
    drop(proxy);
}

/// A REGISTER for a domain we are not registrar for is proxied like any
/// request (§10.3 step 1).
fn register_for_another_domain_is_forwarded(io: &str) {
    let Some(proxy) = start(io, &[]) else { return };
    let (ua, registrar) = (socket(), socket());
    let req = format!(
        "REGISTER sip:127.0.0.1:{} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{};branch=z9hG4bKf1\r\n\
To: <sip:ann@other.example>\r\nFrom: <sip:ann@other.example>;tag=1\r\nCall-ID: f1\r\n\
CSeq: 1 REGISTER\r\nContact: <sip:ann@127.0.0.1:{}>\r\n\r\n",
        port(&registrar),
        port(&ua),
        port(&ua)
    );
    ua.send_to(req.as_bytes(), proxy.addr).unwrap();
    let got = recv(&registrar);
    let m = Message::parse(&got).unwrap();
    assert_eq!(m.method(), Some(sipshard::sip::Method::Register));
    assert_eq!(m.vias().count(), 2, "forwarded with our Via on top");
}

/// Register on one shard and find it from the other: 16 users register
/// from 16 sockets (16 flows that SO_REUSEPORT spreads over the 2 shards)
/// and each is called from another socket. Every call arrives, REGISTERs
/// were handed to their owner shard, and both shards took traffic.
fn register_on_one_shard_found_from_another(io: &str) {
    let Some(proxy) = start(io, &[]) else { return };
    let uas: Vec<UdpSocket> = (0..16).map(|_| socket()).collect();
    let uac: Vec<UdpSocket> = (0..16).map(|_| socket()).collect();
    for (i, ua) in uas.iter().enumerate() {
        let user = format!("u{i}");
        let req = register(&user, ua, &format!("x{i}"), 1, &contact_of(&user, ua, ""));
        assert_eq!(status(&ask(&proxy, ua, &req)), 200);
    }
    for (i, ua) in uas.iter().enumerate() {
        let from = &uac[(i + 5) % uac.len()];
        from.send_to(
            &call("INVITE", &format!("u{i}"), from, &format!("y{i}")),
            proxy.addr,
        )
        .unwrap();
        let got = recv(ua);
        assert!(Message::parse(&got).unwrap().is_request());
    }
    let exit = proxy.stop_and_report();
    let per_shard = exit
        .split("per_shard_received=[")
        .nth(1)
        .and_then(|s| s.split(']').next())
        .unwrap_or_default()
        .split(',')
        .map(|n| n.parse::<u64>().unwrap_or(0))
        .collect::<Vec<_>>();
    assert!(
        per_shard.len() == 2 && per_shard.iter().all(|&n| n > 0),
        "{exit}"
    );
    assert!(!exit.contains("handed_off=0 "), "{exit}");
    assert!(exit.contains("registered=16"), "{exit}");
}

/// RFC 3327: a binding registered through an edge proxy (Path) is reached
/// through it: the INVITE goes to the Path hop with the Path as Route.
/// --nat: a binding is reached at the address its REGISTER came from,
/// whatever its Contact says.
fn path_and_nat(io: &str) {
    let Some(proxy) = start(io, &[]) else { return };
    let (ua, edge, caller) = (socket(), socket(), socket());
    let path = format!("<sip:127.0.0.1:{};lr>", port(&edge));
    let req = register(
        "carol",
        &ua,
        "p1",
        1,
        &format!("{}Path: {path}\r\n", contact_of("carol", &ua, "")),
    );
    let ok = ask(&proxy, &ua, &req);
    assert_eq!(status(&ok), 200);
    let ok = Message::parse(&ok).unwrap();
    assert_eq!(ok.header(HeaderName::Path), Some(path.as_bytes()));
    caller
        .send_to(&call("INVITE", "carol", &caller, "p-call"), proxy.addr)
        .unwrap();
    let got = recv(&edge);
    let m = Message::parse(&got).unwrap();
    assert_eq!(m.header(HeaderName::Route), Some(path.as_bytes()));
    assert_eq!(
        m.request_uri_bytes(),
        Some(format!("sip:carol@127.0.0.1:{}", port(&ua)).as_bytes())
    );
    drop(proxy);

    let Some(proxy) = start(io, &["--nat"]) else {
        return;
    };
    let (natted, caller) = (socket(), socket());
    // The Contact names a private address nobody can reach.
    let req = register(
        "dave",
        &natted,
        "n1",
        1,
        "Contact: <sip:dave@10.255.255.1:5060>\r\n",
    );
    assert_eq!(status(&ask(&proxy, &natted, &req)), 200);
    caller
        .send_to(&call("INVITE", "dave", &caller, "n-call"), proxy.addr)
        .unwrap();
    let got = recv(&natted);
    let m = Message::parse(&got).unwrap();
    assert_eq!(
        m.request_uri_bytes(),
        Some(&b"sip:dave@10.255.255.1:5060"[..])
    );
}

/// --mode redirect: a call for a registered user is answered 302 with
/// every binding (with q); unknown users 404; REGISTER still works.
fn redirect_mode(io: &str) {
    let Some(proxy) = start(io, &["--mode", "redirect"]) else {
        return;
    };
    assert!(proxy.banner.contains("redirect server"), "{}", proxy.banner);
    let (a, b, caller) = (socket(), socket(), socket());
    let contacts_hdr = format!(
        "{}{}",
        contact_of("erin", &a, ";q=0.4"),
        contact_of("erin", &b, ";q=1")
    );
    let ok = ask(&proxy, &a, &register("erin", &a, "r1", 1, &contacts_hdr));
    assert_eq!(status(&ok), 200);
    let moved = ask(&proxy, &caller, &call("INVITE", "erin", &caller, "m1"));
    assert_eq!(status(&moved), 302);
    let got = contacts(&moved);
    assert_eq!(
        got,
        vec![
            (format!("sip:erin@127.0.0.1:{}", port(&a)), None, Some(400)),
            (format!("sip:erin@127.0.0.1:{}", port(&b)), None, Some(1000)),
        ]
    );
    assert!(nothing_arrives(&a) && nothing_arrives(&b), "not forwarded");
    assert_eq!(
        status(&ask(&proxy, &caller, &call("INVITE", "zed", &caller, "m2"))),
        404
    );
    // No live binding left: 480, as in proxy mode.
    let gone = register("erin", &a, "r1", 2, "Contact: *\r\nExpires: 0\r\n");
    assert_eq!(status(&ask(&proxy, &a, &gone)), 200);
    assert_eq!(
        status(&ask(
            &proxy,
            &caller,
            &call("INVITE", "erin", &caller, "m3")
        )),
        480
    );
}

/// Expiry: a binding registered for 2 s is gone on every shard after it
/// lapses (calls from 8 flows all get 480; a query finds nothing).
fn expiry_removes_a_binding_on_every_shard(io: &str) {
    let Some(proxy) = start(io, &["--min-expires", "1", "--default-expires", "2"]) else {
        return;
    };
    let ua = socket();
    let req = register("frank", &ua, "e1", 1, &contact_of("frank", &ua, ""));
    assert_eq!(contacts(&ask(&proxy, &ua, &req))[0].1, Some(2));
    let callers: Vec<UdpSocket> = (0..8).map(|_| socket()).collect();
    for (i, c) in callers.iter().enumerate() {
        c.send_to(&call("OPTIONS", "frank", c, &format!("e-a{i}")), proxy.addr)
            .unwrap();
        assert!(Message::parse(&recv(&ua)).unwrap().is_request());
    }
    std::thread::sleep(Duration::from_millis(3200));
    for (i, c) in callers.iter().enumerate() {
        let r = ask(&proxy, c, &call("OPTIONS", "frank", c, &format!("e-b{i}")));
        assert_eq!(status(&r), 480);
    }
    let query = ask(&proxy, &ua, &register("frank", &ua, "e2", 1, ""));
    assert!(contacts(&query).is_empty());
}

/// --state-dir: a binding that got a 200 survives `kill -9`, and comes back
/// with its remaining expiry.
fn restart_from_state_dir_after_kill_9(io: &str) {
    let dir = std::env::temp_dir().join(format!("sipshard-e2e-state-{}-{io}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let dir_s = dir.to_str().unwrap().to_string();
    // The first run syncs every loop iteration, the second keeps the
    // default (interval): a kill -9 loses nothing under either.
    let Some(mut proxy) = start(io, &["--state-dir", &dir_s, "--fsync", "always"]) else {
        return;
    };
    let note = proxy.next_line();
    assert!(note.contains("loaded 0 AOR"), "{note}");
    let ua = socket();
    for i in 0..20 {
        let user = format!("g{i}");
        let req = register(
            &user,
            &ua,
            &format!("k{i}"),
            1,
            &contact_of(&user, &ua, ";expires=600"),
        );
        assert_eq!(status(&ask(&proxy, &ua, &req)), 200);
    }
    proxy.kill9();

    let Some(mut proxy) = start(io, &["--state-dir", &dir_s]) else {
        return;
    };
    let note = proxy.next_line();
    assert!(
        note.contains("loaded 20 AOR(s), 20 live binding(s)"),
        "{note}"
    );
    let caller = socket();
    for i in 0..20 {
        caller
            .send_to(
                &call("INVITE", &format!("g{i}"), &caller, &format!("k-call{i}")),
                proxy.addr,
            )
            .unwrap();
        let got = recv(&ua);
        assert_eq!(
            Message::parse(&got).unwrap().request_uri_bytes(),
            Some(format!("sip:g{i}@127.0.0.1:{}", port(&ua)).as_bytes())
        );
    }
    let query = ask(&proxy, &ua, &register("g3", &ua, "k-q", 1, ""));
    let left = contacts(&query)[0].1.unwrap();
    assert!((590..=600).contains(&left), "remaining expiry {left}");
    drop(proxy);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Issue #12: the 200 to a REGISTER lists each binding's Contact as the UA
/// sent it, with its parameters (RFC 5626 `+sip.instance` and `reg-id`,
/// RFC 3840 feature tags), plus the `expires` and `q` the registrar
/// states: RFC 5626/5627 UAs find their binding there by its instance.
fn ok_gives_back_the_contacts_parameters(io: &str) {
    let Some(proxy) = start(io, &[]) else { return };
    let ua = socket();
    let instance = "+sip.instance=\"<urn:uuid:00000000-0000-1000-8000-000A95A0E128>\"";
    let contact = format!(
        "Contact: <sip:erin@127.0.0.1:{};ob>;{instance};reg-id=1;q=0.5;expires=600;+sip.ice;audio\r\n",
        port(&ua)
    );
    let ok = ask(&proxy, &ua, &register("erin", &ua, "gb1", 1, &contact));
    assert_eq!(status(&ok), 200);
    let want = format!(
        "Contact: <sip:erin@127.0.0.1:{};ob>;{instance};reg-id=1;+sip.ice;audio;expires=600;q=0.5\r\n",
        port(&ua)
    );
    let text = String::from_utf8_lossy(&ok);
    assert!(text.contains(&want), "{text}");
    // A query from elsewhere sees them too; a refresh replaces them.
    let other = socket();
    let query = ask(&proxy, &other, &register("erin", &other, "gb2", 1, ""));
    let text = String::from_utf8_lossy(&query);
    assert!(
        text.contains(&format!("{instance};reg-id=1;+sip.ice;audio;expires=")),
        "{text}"
    );
    let refresh = format!(
        "Contact: <sip:erin@127.0.0.1:{};ob>;{instance};reg-id=2\r\n",
        port(&ua)
    );
    let ok = ask(&proxy, &ua, &register("erin", &ua, "gb1", 2, &refresh));
    let text = String::from_utf8_lossy(&ok);
    assert!(
        text.contains(&format!(";ob>;{instance};reg-id=2;expires=3600\r\n")),
        "{text}"
    );
}

/// The ports `tests/data/state-v2` names: bob's first Path hop and the
/// address every REGISTER of it came from (dave's, reached under --nat).
/// The test binds them, so its two runs (one per backend) take turns.
const FIXTURE_PATH_HOP: &str = "127.0.0.1:25091";
const FIXTURE_UA: &str = "127.0.0.1:25070";
static FIXTURE_PORTS: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A copy of `tests/data/state-v2` in a fresh directory.
fn copy_state_v2(io: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("sipshard-e2e-v2-{}-{io}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let from = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/state-v2");
    for dent in std::fs::read_dir(from).unwrap() {
        let path = dent.unwrap().path();
        if path.extension().is_some_and(|e| e == "log" || e == "snap") {
            std::fs::copy(&path, dir.join(path.file_name().unwrap())).unwrap();
        }
    }
    dir
}

/// Issue #12: a --state-dir written by the sipshard of format version 2
/// (`tests/data/state-v2`, see its make.py) comes back whole after the
/// upgrade: every AOR's bindings with their q and remaining expiry, Path
/// routing, and the address each REGISTER came from (--nat); and the
/// directory is rewritten in version 3.
fn state_dir_of_format_2_comes_back_whole(io: &str) {
    let _turn = FIXTURE_PORTS.lock().unwrap_or_else(|e| e.into_inner());
    let dir = copy_state_v2(io);
    let dir_s = dir.to_str().unwrap().to_string();
    let Some(mut proxy) = start(io, &["--state-dir", &dir_s]) else {
        return;
    };
    let note = proxy.next_line();
    assert!(
        note.contains("loaded 4 AOR(s), 7 live binding(s) from 8 file(s), 8 file(s) of an older format rewritten in today's"),
        "{note}"
    );
    // Every binding lapses at 3943782592 or a second later (year 2094).
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let left = |at: u64| Some(u32::try_from(at - now).unwrap());
    let near = |got: Vec<(String, Option<u32>, Option<u16>)>,
                want: Vec<(&str, u64, Option<u16>)>| {
        assert_eq!(got.len(), want.len(), "{got:?}");
        for ((uri, expires, q), (want_uri, at, want_q)) in got.iter().zip(want) {
            assert_eq!((uri.as_str(), *q), (want_uri, want_q));
            let (e, w) = (expires.unwrap(), left(at).unwrap());
            assert!(e.abs_diff(w) <= 2, "{uri}: expires {e}, want {w}");
        }
    };
    let (exp, ua) = (3_943_782_592, socket());
    let query = |user: &str| {
        let ok = ask(
            &proxy,
            &ua,
            &register(user, &ua, &format!("q-{user}"), 1, ""),
        );
        assert_eq!(status(&ok), 200, "{}", String::from_utf8_lossy(&ok));
        contacts(&ok)
    };
    near(
        query("alice"),
        vec![
            ("sip:alice@192.0.2.10:5060", exp, Some(900)),
            ("sip:alice@192.0.2.11:5062;transport=udp", exp, Some(500)),
            ("sip:alice@192.0.2.13:5064", exp + 1, Some(700)),
        ],
    );
    near(
        query("bob"),
        vec![
            ("sip:bob@192.0.2.20:5070", exp, Some(1000)),
            ("sip:bob@192.0.2.21", exp, Some(100)),
        ],
    );
    near(
        query("carol"),
        vec![("sip:carol@[2001:db8::30]:5060", exp, None)],
    );
    near(query("dave"), vec![("sip:dave@192.0.2.40", exp + 1, None)]);

    // Bob's best binding (q=1), through his Path.
    let edge = UdpSocket::bind(FIXTURE_PATH_HOP).expect("the fixture's Path hop port is free");
    edge.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let caller = socket();
    caller
        .send_to(&call("INVITE", "bob", &caller, "v2-bob"), proxy.addr)
        .unwrap();
    let got = recv(&edge);
    let m = Message::parse(&got).unwrap();
    assert_eq!(m.request_uri_bytes(), Some(&b"sip:bob@192.0.2.20:5070"[..]));
    let route: Vec<_> = m
        .values(HeaderName::Route)
        .map(|v| String::from_utf8_lossy(v.text).into_owned())
        .collect();
    assert_eq!(
        route.join(", "),
        "<sip:127.0.0.1:25091;lr>, <sip:p2.example.net;lr>"
    );
    drop(proxy);

    // The start rewrote every file in today's version (4).
    for dent in std::fs::read_dir(&dir).unwrap() {
        let path = dent.unwrap().path();
        let head = std::fs::read(&path).unwrap();
        assert_eq!(head[8..12], 4u32.to_le_bytes(), "{}", path.display());
    }
    // --nat: dave is reached where his REGISTER came from.
    let Some(proxy) = start(io, &["--state-dir", &dir_s, "--nat"]) else {
        return;
    };
    let natted = UdpSocket::bind(FIXTURE_UA).expect("the fixture's UA port is free");
    natted
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    caller
        .send_to(&call("INVITE", "dave", &caller, "v2-dave"), proxy.addr)
        .unwrap();
    let m = recv(&natted);
    assert_eq!(
        Message::parse(&m).unwrap().request_uri_bytes(),
        Some(&b"sip:dave@192.0.2.40"[..])
    );
    drop(proxy);
    let _ = std::fs::remove_dir_all(&dir);
}

/// With two listen addresses, a REGISTER sent to the second is answered
/// from the second, whichever shard owns its AOR (the owner's answer goes
/// back through the inbox of the shard it arrived on).
fn answers_leave_from_the_address_the_register_came_to(io: &str) {
    let Some(proxy) = start(io, &["--listen", "127.0.0.2:0"]) else {
        return;
    };
    let second = listen_addrs(&proxy.banner)[1];
    assert_eq!(second.ip().to_string(), "127.0.0.2");
    let ua = socket();
    for i in 0..12 {
        let user = format!("m{i}");
        let req = register(
            &user,
            &ua,
            &format!("la{i}"),
            1,
            &contact_of(&user, &ua, ""),
        );
        ua.send_to(&req, second).unwrap();
        let mut buf = [0u8; 4096];
        let (n, from) = ua.recv_from(&mut buf).unwrap();
        assert_eq!(status(&buf[..n]), 200);
        assert_eq!(from, second, "user {user}");
    }
}

// Each scenario on each backend, as its own named test.
on_both_backends!(
    register_then_call,
    register_rules,
    register_for_another_domain_is_forwarded,
    register_on_one_shard_found_from_another,
    path_and_nat,
    redirect_mode,
    expiry_removes_a_binding_on_every_shard,
    restart_from_state_dir_after_kill_9,
    state_dir_of_format_2_comes_back_whole,
    ok_gives_back_the_contacts_parameters,
    answers_leave_from_the_address_the_register_came_to,
);

/// Flags that contradict each other stop the server with a clear message.
#[test]
fn registrar_flags_are_checked() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sipshard"))
        .args(["--mode", "redirect", "--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("needs --domain"));
    let _: Option<SocketAddr> = None;
}
