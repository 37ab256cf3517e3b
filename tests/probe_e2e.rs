//! Upstream health (`--probe-interval`, `--probe-threshold`) end to end:
//! the real binary with two UDP upstreams played here, one that answers
//! its OPTIONS probes and one that says nothing until told to. Every test
//! runs on both I/O backends.

#[macro_use]
mod common;

use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::metrics::{get, metrics_addr};
use common::process::{socket, Proxy};

use sipshard::sip::{HeaderName, Message, Method};

/// An upstream: answers OPTIONS 200 while `answering`, and keeps the
/// Call-ID of every INVITE it receives (the forwarded calls).
struct Upstream {
    addr: std::net::SocketAddr,
    answering: Arc<AtomicBool>,
    invites: Arc<std::sync::Mutex<Vec<String>>>,
    done: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Upstream {
    fn start(answering: bool) -> Upstream {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        s.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let addr = s.local_addr().unwrap();
        let answering = Arc::new(AtomicBool::new(answering));
        let invites = Arc::new(std::sync::Mutex::new(Vec::new()));
        let done = Arc::new(AtomicBool::new(false));
        let (a, i, d) = (answering.clone(), invites.clone(), done.clone());
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while !d.load(Ordering::Relaxed) {
                let Ok((n, from)) = s.recv_from(&mut buf) else {
                    continue;
                };
                let Ok(m) = Message::parse(&buf[..n]) else {
                    continue;
                };
                let call =
                    String::from_utf8_lossy(m.header(HeaderName::CallId).unwrap_or_default());
                match m.method() {
                    Some(Method::Options) if a.load(Ordering::Relaxed) => {
                        let ok = common::sip::response_to(&buf[..n], 200, "OK");
                        s.send_to(&ok, from).unwrap();
                    }
                    Some(Method::Invite) => i.lock().unwrap().push(call.into_owned()),
                    _ => {}
                }
            }
        });
        Upstream {
            addr,
            answering,
            invites,
            done,
            thread: Some(thread),
        }
    }

    /// The calls of `tag` whose INVITE arrived, once each (a stateful
    /// proxy retransmits INVITEs nobody answers).
    fn invites(&self, tag: &str) -> Vec<String> {
        let mut calls: Vec<String> = self
            .invites
            .lock()
            .unwrap()
            .iter()
            .filter(|c| c.ends_with(&format!("-{tag}")))
            .cloned()
            .collect();
        calls.sort();
        calls.dedup();
        calls
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.done.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// `sipshard_upstream_up` of `upstream` in the metrics body.
fn up(body: &str, upstream: &str) -> Option<u64> {
    let label = format!("upstream=\"{upstream}\"");
    body.lines()
        .find(|l| l.starts_with("sipshard_upstream_up{") && l.contains(&label))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// Waits up to 10 s for `upstream`'s state in the metrics to be `want`.
fn wait_state(metrics: std::net::SocketAddr, upstream: &str, want: u64) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if up(&get(metrics, "/metrics").1, upstream) == Some(want) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// `n` INVITEs for a host name (so they go to an upstream), each its
/// own Call-ID.
fn calls(caller: &UdpSocket, proxy: std::net::SocketAddr, tag: &str, n: usize) {
    let port = caller.local_addr().unwrap().port();
    for k in 0..n {
        let invite = format!(
            "INVITE sip:bob@example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK{tag}{k}\r\n\
To: <sip:bob@example.com>\r\nFrom: <sip:alice@127.0.0.1>;tag=a\r\n\
Call-ID: {k}-{tag}\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        );
        caller.send_to(invite.as_bytes(), proxy).unwrap();
    }
    // Let them arrive.
    std::thread::sleep(Duration::from_millis(300));
}

/// An upstream that stops answering its probes leaves the rotation after
/// --probe-threshold misses (metric, log line): every new call goes to
/// the other; once it answers again it is back, and takes calls again.
/// With both silent, a call gets 503.
fn a_silent_upstream_leaves_the_rotation_and_comes_back(io: &str) {
    leaves_and_comes_back(io, &[]);
}

/// The same under `--mode stateful`, where an upstream out of the
/// rotation is not failed over to either.
fn a_silent_upstream_leaves_the_rotation_and_comes_back_stateful(io: &str) {
    leaves_and_comes_back(io, &["--mode", "stateful"]);
}

fn leaves_and_comes_back(io: &str, mode: &[&str]) {
    let a = Upstream::start(true);
    let b = Upstream::start(false);
    let (ua, ub) = (format!("udp:{}", a.addr), format!("udp:{}", b.addr));
    let mut args = vec![
        "--upstream",
        &ua,
        "--upstream",
        &ub,
        "--probe-interval",
        "1",
        "--probe-threshold",
        "2",
        "--metrics-listen",
        "127.0.0.1:0",
    ];
    args.extend_from_slice(mode);
    let Some(mut proxy) = Proxy::start(io, &args) else {
        return;
    };
    let metrics = metrics_addr(&mut proxy);
    assert!(wait_state(metrics, &ub, 0), "b never left the rotation");
    let body = get(metrics, "/metrics").1;
    assert_eq!(up(&body, &ua), Some(1));
    let series = |name: &str, u: &str| {
        let label = format!("upstream=\"{u}\"");
        body.lines()
            .find(|l| l.starts_with(name) && l.contains(&label))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .unwrap_or_else(|| panic!("no {name} for {u}:\n{body}"))
    };
    assert!(series("sipshard_upstream_probes_missed_total{", &ub) >= 2.0);
    assert_eq!(series("sipshard_upstream_probes_missed_total{", &ua), 0.0);
    assert!(series("sipshard_upstream_probe_rtt_seconds{", &ua) > 0.0);
    assert_eq!(series("sipshard_upstream_probe_rtt_seconds{", &ub), 0.0);
    let caller = socket();
    calls(&caller, proxy.addr, "out", 40);
    assert_eq!(
        a.invites("out").len(),
        40,
        "every call on the one in the rotation"
    );
    assert!(b.invites("out").is_empty());

    b.answering.store(true, Ordering::Relaxed);
    assert!(wait_state(metrics, &ub, 1), "b never came back");
    calls(&caller, proxy.addr, "back", 40);
    let (on_a, on_b) = (a.invites("back").len(), b.invites("back").len());
    assert_eq!(on_a + on_b, 40);
    assert!(on_b > 0 && on_a > 0, "calls spread again: {on_a} / {on_b}");

    a.answering.store(false, Ordering::Relaxed);
    b.answering.store(false, Ordering::Relaxed);
    assert!(wait_state(metrics, &ua, 0) && wait_state(metrics, &ub, 0));
    calls(&caller, proxy.addr, "none", 1);
    // (The stateful mode answered every earlier INVITE 100 Trying.)
    let answer = loop {
        let m = common::process::recv(&caller);
        if !m.starts_with(b"SIP/2.0 100 ") {
            break m;
        }
    };
    assert!(
        answer.starts_with(b"SIP/2.0 503 "),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    let log = proxy.stop_and_read();
    assert!(
        log.contains(&format!(
            "upstream {ub} missed 2 probes in a row: out of the rotation"
        )),
        "{log}"
    );
    assert!(
        log.contains(&format!(
            "upstream {ub} answers its probes again: back in the rotation"
        )),
        "{log}"
    );
}

on_both_backends!(
    a_silent_upstream_leaves_the_rotation_and_comes_back,
    a_silent_upstream_leaves_the_rotation_and_comes_back_stateful,
);
