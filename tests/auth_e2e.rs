//! Digest authentication end to end (RFC 3261 §22, RFC 7616, RFC 8760):
//! the real binary on loopback, with a credentials file written by
//! `sipshard passwd`, answering challenges computed here with the RustCrypto
//! hashes. Every test runs on both I/O backends.

#[macro_use]
mod common;

use std::io::Write;
use std::net::UdpSocket;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use common::process::{nothing_arrives, port, recv, socket, Proxy};
use md5::Md5;
use sha2::{Digest, Sha256};
use sipshard::hash::call_id_shard;
use sipshard::location::owner_of;
use sipshard::sip::{HeaderName, Message};

const DOMAIN: &str = "example.test";

/// A credentials file with alice and bob (password "secret-NAME"),
/// written by the binary's own `passwd` command.
fn users_file(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sipshard-auth-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("users");
    for user in ["alice", "bob"] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_sipshard"))
            .args(["passwd", file.to_str().unwrap(), user, DOMAIN])
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        writeln!(child.stdin.take().unwrap(), "secret-{user}").unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(!text.contains("secret"), "no password in the file: {text}");
    file
}

fn start(io: &str, file: &std::path::Path, extra: &[&str]) -> Option<Proxy> {
    let mut args = vec![
        "--domain",
        DOMAIN,
        "--auth-file",
        file.to_str().unwrap(),
        "--stats-interval",
        "0",
    ];
    args.extend_from_slice(extra);
    Proxy::start(io, &args)
}

fn hex<D: Digest>(s: &str) -> String {
    D::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A challenge's parameters.
struct Challenge {
    nonce: String,
    stale: bool,
}

/// The challenges of a 401/407 in order: (algorithm, challenge).
fn challenges(resp: &[u8], header: HeaderName) -> Vec<(String, Challenge)> {
    let m = Message::parse(resp).unwrap();
    m.headers()
        .filter(|h| h.name == header)
        .map(|h| {
            let v = String::from_utf8(h.value.to_vec()).unwrap();
            let param = |name: &str| {
                v.split(", ")
                    .find_map(|p| p.strip_prefix(&format!("{name}=")))
                    .map(|p| p.trim_matches('"').to_string())
            };
            assert!(v.starts_with("Digest realm=\"example.test\""), "{v}");
            assert_eq!(param("qop").as_deref(), Some("auth"), "{v}");
            (
                param("algorithm").unwrap(),
                Challenge {
                    nonce: param("nonce").unwrap(),
                    stale: param("stale").as_deref() == Some("true"),
                },
            )
        })
        .collect()
}

/// The credentials a UA computes for `method` `uri` (RFC 7616 §3.4.1).
fn credentials(
    user: &str,
    password: &str,
    nonce: &str,
    nc: u32,
    alg: &str,
    method: &str,
    uri: &str,
) -> String {
    let h = |s: &str| {
        if alg == "MD5" {
            hex::<Md5>(s)
        } else {
            hex::<Sha256>(s)
        }
    };
    let ha1 = h(&format!("{user}:{DOMAIN}:{password}"));
    let ha2 = h(&format!("{method}:{uri}"));
    let response = h(&format!("{ha1}:{nonce}:{nc:08x}:0a4f113b:auth:{ha2}"));
    format!(
        "Digest username=\"{user}\", realm=\"{DOMAIN}\", nonce=\"{nonce}\", uri=\"{uri}\", \
response=\"{response}\", algorithm={alg}, cnonce=\"0a4f113b\", qop=auth, nc={nc:08x}"
    )
}

fn register(to_user: &str, ua: &UdpSocket, cseq: u32, auth: Option<&str>) -> Vec<u8> {
    let auth = auth.map_or(String::new(), |a| format!("Authorization: {a}\r\n"));
    format!(
        "REGISTER sip:{DOMAIN} SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:{p};branch=z9hG4bKa{to_user}{cseq};rport\r\n\
Max-Forwards: 70\r\n\
To: <sip:{to_user}@{DOMAIN}>\r\n\
From: <sip:{to_user}@{DOMAIN}>;tag=a{cseq}\r\n\
Call-ID: reg-{to_user}-{p}\r\n\
CSeq: {cseq} REGISTER\r\n\
Contact: <sip:{to_user}@127.0.0.1:{p}>\r\n\
{auth}Content-Length: 0\r\n\r\n",
        p = port(ua)
    )
    .into_bytes()
}

fn invite(
    from_user: &str,
    from_domain: &str,
    to_user: &str,
    ua: &UdpSocket,
    cseq: u32,
    auth: Option<&str>,
) -> Vec<u8> {
    let auth = auth.map_or(String::new(), |a| format!("Proxy-Authorization: {a}\r\n"));
    format!(
        "INVITE sip:{to_user}@{DOMAIN} SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:{p};branch=z9hG4bKi{from_user}{cseq};rport\r\n\
Max-Forwards: 70\r\n\
To: <sip:{to_user}@{DOMAIN}>\r\n\
From: <sip:{from_user}@{from_domain}>;tag=i{cseq}\r\n\
Call-ID: call-{from_user}-{p}\r\n\
CSeq: {cseq} INVITE\r\n\
{auth}Content-Length: 0\r\n\r\n",
        p = port(ua)
    )
    .into_bytes()
}

fn ask(proxy: &Proxy, ua: &UdpSocket, req: &[u8]) -> Vec<u8> {
    ua.send_to(req, proxy.addr).unwrap();
    recv(ua)
}

fn status(data: &[u8]) -> u16 {
    Message::parse(data).unwrap().status().unwrap()
}

fn field(line: &str, key: &str) -> u64 {
    line.split_whitespace()
        .find_map(|f| f.strip_prefix(&format!("{key}=")))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{key} in {line}"))
}

const REG_URI: &str = "sip:example.test";

/// [`credentials`] for a REGISTER to the domain.
fn reg_credentials(user: &str, password: &str, nonce: &str, nc: u32, alg: &str) -> String {
    credentials(user, password, nonce, nc, alg, "REGISTER", REG_URI)
}

/// Sends `user`'s REGISTER without credentials; the nonce of its 401.
fn first_nonce(proxy: &Proxy, ua: &UdpSocket, user: &str) -> String {
    let r = ask(proxy, ua, &register(user, ua, 1, None));
    assert_eq!(status(&r), 401, "{}", String::from_utf8_lossy(&r));
    challenges(&r, HeaderName::WwwAuthenticate)[0]
        .1
        .nonce
        .clone()
}

fn registration(io: &str) {
    let file = users_file(&format!("reg-{io}"));
    let Some(proxy) = start(io, &file, &["--auth-algorithm", "sha-256,md5"]) else {
        return;
    };
    assert!(proxy.banner.contains("listening on"), "{}", proxy.banner);
    let alice = socket();

    // No credentials: 401 offering SHA-256 first, then MD5, one nonce.
    let r = ask(&proxy, &alice, &register("alice", &alice, 1, None));
    assert_eq!(status(&r), 401, "{}", String::from_utf8_lossy(&r));
    let ch = challenges(&r, HeaderName::WwwAuthenticate);
    let algs: Vec<&str> = ch.iter().map(|(a, _)| a.as_str()).collect();
    assert_eq!(algs, ["SHA-256", "MD5"]);
    assert_eq!(ch[0].1.nonce, ch[1].1.nonce);
    assert!(!ch[0].1.stale);
    let nonce = ch[0].1.nonce.clone();

    // A wrong password: challenged again, nothing registered.
    let wrong = reg_credentials("alice", "guess", &nonce, 1, "SHA-256");
    let r = ask(&proxy, &alice, &register("alice", &alice, 2, Some(&wrong)));
    assert_eq!(status(&r), 401);

    // The right one, with MD5: 200 and the binding.
    let md5 = reg_credentials("alice", "secret-alice", &nonce, 1, "MD5");
    let r = ask(&proxy, &alice, &register("alice", &alice, 3, Some(&md5)));
    assert_eq!(status(&r), 200, "{}", String::from_utf8_lossy(&r));
    assert!(Message::parse(&r)
        .unwrap()
        .header(HeaderName::Contact)
        .is_some());

    // A refresh with SHA-256 and the next nonce-count.
    let sha = reg_credentials("alice", "secret-alice", &nonce, 2, "SHA-256");
    let r = ask(&proxy, &alice, &register("alice", &alice, 4, Some(&sha)));
    assert_eq!(status(&r), 200);
    // The same credentials on a new request: a replay, refused.
    let r = ask(&proxy, &alice, &register("alice", &alice, 5, Some(&sha)));
    assert_eq!(status(&r), 401, "replayed nonce-count");

    // Bob's valid credentials do not register alice (403), nor does a
    // user who is not in the file get anything but a challenge.
    let bob = socket();
    let nonce_b = first_nonce(&proxy, &bob, "bob");
    let as_bob = reg_credentials("bob", "secret-bob", &nonce_b, 1, "SHA-256");
    let r = ask(&proxy, &bob, &register("alice", &bob, 2, Some(&as_bob)));
    assert_eq!(status(&r), 403);
    let carol = reg_credentials("carol", "x", &nonce_b, 1, "SHA-256");
    let r = ask(&proxy, &bob, &register("carol", &bob, 3, Some(&carol)));
    assert_eq!(status(&r), 401);
    // A forged nonce is a challenge too.
    let forged = credentials(
        "bob",
        "secret-bob",
        &"0".repeat(48),
        1,
        "MD5",
        "REGISTER",
        REG_URI,
    );
    let r = ask(&proxy, &bob, &register("bob", &bob, 4, Some(&forged)));
    assert_eq!(status(&r), 401);

    // Without --auth-invite an INVITE from alice is routed unchallenged.
    let caller = socket();
    caller
        .send_to(
            &invite("alice", DOMAIN, "alice", &caller, 1, None),
            proxy.addr,
        )
        .unwrap();
    let got = recv(&alice);
    assert!(
        got.starts_with(b"INVITE "),
        "{}",
        String::from_utf8_lossy(&got)
    );

    let exit = proxy.stop_and_report();
    assert_eq!(field(&exit, "auth_accepted"), 2, "{exit}");
    // Failures: wrong password, replay, bob as alice, carol, forged.
    assert_eq!(field(&exit, "auth_failures"), 5, "{exit}");
    // Challenges: the first, wrong, replay (alice); first, carol, forged (bob).
    assert_eq!(field(&exit, "auth_challenges"), 6, "{exit}");
    let _ = std::fs::remove_dir_all(file.parent().unwrap());
}

fn invites_from_local_users(io: &str) {
    let file = users_file(&format!("inv-{io}"));
    let extra = [
        "--auth-invite",
        "--metrics-listen",
        "127.0.0.1:0",
        "--auth-algorithm",
        "sha-256,md5",
    ];
    let Some(mut proxy) = start(io, &file, &extra) else {
        return;
    };
    let metrics = common::metrics::metrics_addr(&mut proxy);
    let bob = socket();
    let nonce = first_nonce(&proxy, &bob, "bob");
    let c = reg_credentials("bob", "secret-bob", &nonce, 1, "MD5");
    assert_eq!(
        status(&ask(&proxy, &bob, &register("bob", &bob, 2, Some(&c)))),
        200
    );

    let alice = socket();
    // An initial INVITE from alice@example.test: 407.
    let r = ask(
        &proxy,
        &alice,
        &invite("alice", DOMAIN, "bob", &alice, 1, None),
    );
    assert_eq!(status(&r), 407, "{}", String::from_utf8_lossy(&r));
    let ch = challenges(&r, HeaderName::ProxyAuthenticate);
    assert_eq!(ch.len(), 2);
    let nonce = ch[0].1.nonce.clone();
    assert!(nothing_arrives(&bob), "not forwarded");
    // Its ACK (same branch, the 407's To tag) ends at the proxy too.
    let to_tag = Message::parse(&r)
        .unwrap()
        .to()
        .unwrap()
        .tag()
        .unwrap()
        .to_vec();
    let ack = String::from_utf8(invite("alice", DOMAIN, "bob", &alice, 1, None))
        .unwrap()
        .replacen("INVITE sip:", "ACK sip:", 1)
        .replace("1 INVITE", "1 ACK")
        .replace(
            &format!("To: <sip:bob@{DOMAIN}>"),
            &format!(
                "To: <sip:bob@{DOMAIN}>;tag={}",
                String::from_utf8_lossy(&to_tag)
            ),
        );
    alice.send_to(ack.as_bytes(), proxy.addr).unwrap();
    assert!(nothing_arrives(&bob), "the ACK of our 407 is not forwarded");
    // Answered (in the ACK-less way of a test UA): forwarded to bob.
    let uri = format!("sip:bob@{DOMAIN}");
    let c = credentials(
        "alice",
        "secret-alice",
        &nonce,
        1,
        "SHA-256",
        "INVITE",
        &uri,
    );
    alice
        .send_to(
            &invite("alice", DOMAIN, "bob", &alice, 2, Some(&c)),
            proxy.addr,
        )
        .unwrap();
    let got = recv(&bob);
    assert!(
        got.starts_with(b"INVITE sip:bob@127.0.0.1"),
        "{}",
        String::from_utf8_lossy(&got)
    );
    // Alice's credentials do not make a call from bob's name.
    let c = credentials(
        "alice",
        "secret-alice",
        &nonce,
        2,
        "SHA-256",
        "INVITE",
        &uri,
    );
    let r = ask(
        &proxy,
        &alice,
        &invite("bob", DOMAIN, "bob", &alice, 3, Some(&c)),
    );
    assert_eq!(status(&r), 403);
    // A call from another domain is not ours to authenticate.
    let outside = socket();
    outside
        .send_to(
            &invite("carol", "elsewhere.example", "bob", &outside, 1, None),
            proxy.addr,
        )
        .unwrap();
    assert!(recv(&bob).starts_with(b"INVITE "));
    let (_, body) = common::metrics::get(metrics, "/metrics");
    let sum = |name: &str| common::metrics::sum_of(&body, name);
    assert_eq!(sum("sipshard_auth_accepted_total{"), 2, "{body}");
    assert_eq!(sum("sipshard_auth_challenges_total{"), 2, "{body}");
    assert_eq!(sum("sipshard_auth_failures_total{"), 1, "the 403: {body}");
    let exit = proxy.stop_and_report();
    assert_eq!(field(&exit, "auth_accepted"), 2, "{exit}");
    let _ = std::fs::remove_dir_all(file.parent().unwrap());
}

fn stale_nonce(io: &str) {
    let file = users_file(&format!("stale-{io}"));
    let extra = ["--nonce-ttl", "1", "--auth-algorithm", "sha-256,md5"];
    let Some(proxy) = start(io, &file, &extra) else {
        return;
    };
    let alice = socket();
    let nonce = first_nonce(&proxy, &alice, "alice");
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let c = reg_credentials("alice", "secret-alice", &nonce, 1, "SHA-256");
    let r = ask(&proxy, &alice, &register("alice", &alice, 2, Some(&c)));
    assert_eq!(status(&r), 401);
    let ch = challenges(&r, HeaderName::WwwAuthenticate);
    assert!(ch.iter().all(|(_, c)| c.stale), "stale=true on both");
    // The new nonce works at once.
    let c = reg_credentials("alice", "secret-alice", &ch[0].1.nonce, 1, "SHA-256");
    assert_eq!(
        status(&ask(
            &proxy,
            &alice,
            &register("alice", &alice, 3, Some(&c))
        )),
        200
    );
    let exit = proxy.stop_and_report();
    assert_eq!(
        field(&exit, "auth_failures"),
        0,
        "a stale nonce is not a failure: {exit}"
    );
    let _ = std::fs::remove_dir_all(file.parent().unwrap());
}

/// The default, with no --auth-algorithm: exactly one challenge, MD5, so
/// that a UA reading only the first challenge and knowing only MD5, or one
/// refusing a 401 that names an algorithm it lacks, can register.
fn the_default_challenge_is_one_md5(io: &str) {
    let file = users_file(&format!("def-{io}"));
    let Some(proxy) = start(io, &file, &[]) else {
        return;
    };
    let alice = socket();
    let r = ask(&proxy, &alice, &register("alice", &alice, 1, None));
    assert_eq!(status(&r), 401, "{}", String::from_utf8_lossy(&r));
    let m = Message::parse(&r).unwrap();
    let headers = m
        .headers()
        .filter(|h| h.name == HeaderName::WwwAuthenticate)
        .count();
    assert_eq!(headers, 1, "{}", String::from_utf8_lossy(&r));
    let ch = challenges(&r, HeaderName::WwwAuthenticate);
    let algs: Vec<&str> = ch.iter().map(|(a, _)| a.as_str()).collect();
    assert_eq!(algs, ["MD5"]);
    let md5 = reg_credentials("alice", "secret-alice", &ch[0].1.nonce, 1, "MD5");
    let r = ask(&proxy, &alice, &register("alice", &alice, 2, Some(&md5)));
    assert_eq!(status(&r), 200, "{}", String::from_utf8_lossy(&r));
    drop(proxy);
    let _ = std::fs::remove_dir_all(file.parent().unwrap());
}

/// `--auth-algorithm md5`: one MD5 challenge, SHA-256 answers refused.
fn algorithm_choice(io: &str) {
    let file = users_file(&format!("alg-{io}"));
    let Some(proxy) = start(io, &file, &["--auth-algorithm", "md5"]) else {
        return;
    };
    let alice = socket();
    let r = ask(&proxy, &alice, &register("alice", &alice, 1, None));
    let ch = challenges(&r, HeaderName::WwwAuthenticate);
    let algs: Vec<&str> = ch.iter().map(|(a, _)| a.as_str()).collect();
    assert_eq!(algs, ["MD5"]);
    let nonce = ch[0].1.nonce.clone();
    let sha = reg_credentials("alice", "secret-alice", &nonce, 1, "SHA-256");
    let r = ask(&proxy, &alice, &register("alice", &alice, 2, Some(&sha)));
    assert_eq!(status(&r), 401, "SHA-256 is not offered");
    let md5 = reg_credentials("alice", "secret-alice", &nonce, 2, "MD5");
    let r = ask(&proxy, &alice, &register("alice", &alice, 3, Some(&md5)));
    assert_eq!(status(&r), 200);
    drop(proxy);
    let _ = std::fs::remove_dir_all(file.parent().unwrap());
}

/// With --state-dir the nonce key is kept: a nonce from before a restart
/// is still good after it (and the binding is still there).
fn nonces_survive_a_restart(io: &str) {
    let file = users_file(&format!("keep-{io}"));
    let state = file.parent().unwrap().join("state");
    let state_arg = state.to_str().unwrap().to_string();
    let Some(proxy) = start(io, &file, &["--state-dir", &state_arg]) else {
        return;
    };
    let alice = socket();
    let nonce = first_nonce(&proxy, &alice, "alice");
    let c = reg_credentials("alice", "secret-alice", &nonce, 1, "MD5");
    assert_eq!(
        status(&ask(
            &proxy,
            &alice,
            &register("alice", &alice, 2, Some(&c))
        )),
        200
    );
    assert_eq!(proxy.terminate(), Some(0));
    let Some(proxy) = start(io, &file, &["--state-dir", &state_arg]) else {
        return;
    };
    let c = reg_credentials("alice", "secret-alice", &nonce, 2, "MD5");
    let r = ask(&proxy, &alice, &register("alice", &alice, 3, Some(&c)));
    assert_eq!(status(&r), 200, "{}", String::from_utf8_lossy(&r));
    let exit = proxy.stop_and_report();
    assert_eq!(field(&exit, "auth_failures"), 0, "{exit}");
    assert_eq!(field(&exit, "auth_challenges"), 0, "{exit}");
    let _ = std::fs::remove_dir_all(file.parent().unwrap());
}

/// `--auth-fail-limit 3`: a guesser's fourth wrong password in a minute
/// bans its address; its next guesses get no answer, while the user, from
/// another address, still registers.
fn guessing_gets_the_source_banned(io: &str) {
    let file = users_file(&format!("ban-{io}"));
    let extra = ["--auth-fail-limit", "3", "--ban-time", "60"];
    let Some(proxy) = start(io, &file, &extra) else {
        return;
    };
    let guesser = UdpSocket::bind("127.0.0.2:0").unwrap();
    guesser
        .set_read_timeout(Some(std::time::Duration::from_secs(3)))
        .unwrap();
    let nonce = first_nonce(&proxy, &guesser, "alice");
    for (nc, guess) in ["123456", "password", "alice", "qwerty"].iter().enumerate() {
        let c = reg_credentials("alice", guess, &nonce, nc as u32 + 1, "MD5");
        let r = ask(
            &proxy,
            &guesser,
            &register("alice", &guesser, nc as u32 + 2, Some(&c)),
        );
        assert_eq!(status(&r), 401, "guess {guess}");
    }
    // Banned: even the right password gets no answer from this address.
    let c = reg_credentials("alice", "secret-alice", &nonce, 5, "MD5");
    guesser
        .send_to(&register("alice", &guesser, 6, Some(&c)), proxy.addr)
        .unwrap();
    assert!(nothing_arrives(&guesser), "a banned source is not answered");
    // The ban holds on every shard, not only on the one that decided it
    // (alice's owner): a REGISTER that the kernel steers to the other
    // shard (by its Call-ID) for a user the other shard owns is dropped
    // too.
    let alices = owner_of(format!("sip:alice@{DOMAIN}").as_bytes(), 2) as u32;
    let other = (0..200)
        .map(|i| format!("user{i}"))
        .find(|u| {
            let call_id = format!("reg-{u}-{}", port(&guesser));
            owner_of(format!("sip:{u}@{DOMAIN}").as_bytes(), 2) as u32 != alices
                && call_id_shard(call_id.as_bytes(), 2) != alices
        })
        .expect("a user owned by, and steered to, the other shard");
    let other = other.as_str();
    guesser
        .send_to(&register(other, &guesser, 7, None), proxy.addr)
        .unwrap();
    assert!(
        nothing_arrives(&guesser),
        "banned on the shard that owns {other} too"
    );
    // Alice, from her own address, is not affected.
    let alice = socket();
    let nonce = first_nonce(&proxy, &alice, "alice");
    let c = reg_credentials("alice", "secret-alice", &nonce, 1, "MD5");
    assert_eq!(
        status(&ask(
            &proxy,
            &alice,
            &register("alice", &alice, 2, Some(&c))
        )),
        200
    );
    let exit = proxy.stop_and_report();
    assert_eq!(field(&exit, "auth_failures"), 4, "{exit}");
    assert_eq!(field(&exit, "auth_bans"), 1, "{exit}");
    assert_eq!(field(&exit, "auth_banned"), 2, "{exit}");
    let _ = std::fs::remove_dir_all(file.parent().unwrap());
}

/// §16.3: a request is checked (steps 1-5: Max-Forwards, loops,
/// Proxy-Require...) before its Proxy-Authorization (step 6), so an
/// unauthenticated INVITE that fails a check gets that check's answer, not
/// a 407 it could never get past.
fn proxy_checks_come_before_the_challenge(io: &str) {
    let file = users_file(&format!("order-{io}"));
    let Some(proxy) = start(io, &file, &["--auth-invite"]) else {
        return;
    };
    let alice = socket();
    let plain = invite("alice", DOMAIN, "bob", &alice, 1, None);
    assert_eq!(status(&ask(&proxy, &alice, &plain)), 407, "the baseline");
    let text = String::from_utf8(plain).unwrap();
    let required = text.replace(
        "Max-Forwards: 70\r\n",
        "Max-Forwards: 70\r\nProxy-Require: foo\r\n",
    );
    let r = ask(&proxy, &alice, required.as_bytes());
    assert_eq!(status(&r), 420, "{}", String::from_utf8_lossy(&r));
    let m = Message::parse(&r).unwrap();
    assert_eq!(m.header(HeaderName::Unsupported), Some(&b"foo"[..]));
    let exhausted = text.replace("Max-Forwards: 70", "Max-Forwards: 0");
    assert_eq!(status(&ask(&proxy, &alice, exhausted.as_bytes())), 483);
}

on_both_backends!(
    proxy_checks_come_before_the_challenge,
    guessing_gets_the_source_banned,
    registration,
    invites_from_local_users,
    stale_nonce,
    algorithm_choice,
    nonces_survive_a_restart,
    the_default_challenge_is_one_md5
);

#[test]
fn bad_auth_flags_and_files_are_refused_with_a_reason() {
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_sipshard"))
            .args(["--listen", "127.0.0.1:0", "--io", "mmsg"])
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = run(&["--auth-file", "/nonexistent/users"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--auth-file needs --domain"), "{err}");
    let (code, err) = run(&["--domain", DOMAIN, "--auth-file", "/nonexistent/users"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("cannot read /nonexistent/users"), "{err}");
    let (code, err) = run(&["--domain", DOMAIN, "--auth-fail-limit", "5"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--auth-fail-limit needs --auth-file"), "{err}");
    let (code, err) = run(&["--domain", DOMAIN, "--auth-invite"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--auth-invite needs --auth-file"), "{err}");
    let dir = std::env::temp_dir().join(format!("sipshard-authbad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("users");
    std::fs::write(&bad, "alice:example.test:nothex:\n").unwrap();
    let (code, err) = run(&["--domain", DOMAIN, "--auth-file", bad.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("line 1: the MD5 HA1 is not 32 hex digits"),
        "{err}"
    );
    std::fs::write(&bad, "# nobody yet\n").unwrap();
    let (code, err) = run(&["--domain", DOMAIN, "--auth-file", bad.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("has no users"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
