//! The upstream prober (`--probe-interval`): one thread that sends an
//! OPTIONS to every `--upstream` each interval and writes what it learns
//! into the proxy's [`Health`], which the shards read when they pick an
//! upstream. It is not a shard: a probe is neither forwarded nor answered
//! by one, its answers come back to the prober's own socket (its Via
//! names it, with `rport`), and a slow or dead upstream costs the
//! forwarding path nothing.
//!
//! A round sends every probe, then takes answers until the next round is
//! due: an upstream that sent any response but 503 before then answered
//! (a 503 says it will not serve), any other missed. Over UDP the OPTIONS
//! goes from one socket per address family; over TCP it goes on a fresh
//! connection (connect, send, read the answer, close) within the round;
//! a TLS upstream is counted as answering when a TCP connect succeeds,
//! which says its port is open but not that its SIP server is well.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tracing::{info, warn};

use crate::proxy::{Change, Health};
use crate::sip::Message;
use crate::transport::{Transport, TransportAddr};

/// How often a waiting prober looks at its stop flag.
const STOP_CHECK: Duration = Duration::from_millis(200);

/// The prober's settings.
#[derive(Clone, Debug)]
pub struct ProbeConfig {
    /// The upstreams, indexed like the health states.
    pub upstreams: Vec<TransportAddr>,
    /// Time between rounds, and the wait for answers.
    pub interval: Duration,
    /// Misses in a row that take an upstream out.
    pub threshold: u32,
    /// Our address, for the probes' From and the family's source address.
    pub advertise: SocketAddr,
}

/// Starts the prober thread; it runs until `stop` is set.
pub fn start(
    cfg: ProbeConfig,
    health: Arc<Health>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("probe".into())
        .spawn(move || Prober::new(cfg, health).run(&stop))
}

struct Prober {
    cfg: ProbeConfig,
    health: Arc<Health>,
    v4: Option<UdpSocket>,
    v6: Option<UdpSocket>,
    round: u64,
}

impl Prober {
    fn new(cfg: ProbeConfig, health: Arc<Health>) -> Prober {
        let needs = |v6: bool| {
            cfg.upstreams
                .iter()
                .any(|u| u.transport == Transport::Udp && u.addr.is_ipv6() == v6)
        };
        let bind = |any: IpAddr| {
            // From our own address when it is of this family, so the
            // upstream sees the source it knows.
            let ip = if cfg.advertise.ip().is_ipv6() == any.is_ipv6() {
                cfg.advertise.ip()
            } else {
                any
            };
            let s = UdpSocket::bind((ip, 0))
                .or_else(|_| UdpSocket::bind((any, 0)))
                .map_err(|e| {
                    warn!("probe: no UDP socket for {any}: {e}; those upstreams count as missing")
                })
                .ok()?;
            s.set_read_timeout(Some(STOP_CHECK)).ok()?;
            Some(s)
        };
        Prober {
            v4: needs(false)
                .then(|| bind(IpAddr::V4(Ipv4Addr::UNSPECIFIED)))
                .flatten(),
            v6: needs(true)
                .then(|| bind(IpAddr::V6(Ipv6Addr::UNSPECIFIED)))
                .flatten(),
            cfg,
            health,
            round: 0,
        }
    }

    fn run(mut self, stop: &AtomicBool) {
        while !stop.load(Ordering::Relaxed) {
            self.round = self.round.wrapping_add(1);
            let rtt = self.one_round(stop);
            // A round cut short by the stop says nothing about anyone.
            if stop.load(Ordering::Relaxed) {
                break;
            }
            for (i, answer) in rtt.iter().enumerate() {
                let u = &self.cfg.upstreams[i];
                match answer {
                    Some(us) => {
                        if self.health.answered(i, *us) == Change::Up {
                            info!("upstream {u} answers its probes again: back in the rotation");
                        }
                    }
                    None => {
                        if self.health.missed(i, self.cfg.threshold) == Change::Down {
                            warn!(
                                "upstream {u} missed {} probes in a row: out of the rotation",
                                self.cfg.threshold
                            );
                        }
                    }
                }
            }
        }
    }

    /// Probes every upstream once and waits for the answers until the
    /// next round is due: each upstream's round trip in microseconds, or
    /// None. The TCP and TLS probes run each on a thread of the round, so
    /// one upstream whose connect hangs costs the others nothing; a
    /// thread that cannot be made counts as a miss.
    fn one_round(&self, stop: &AtomicBool) -> Vec<Option<u64>> {
        let started = Instant::now();
        let due = started + self.cfg.interval;
        let mut rtt: Vec<Option<u64>> = vec![None; self.cfg.upstreams.len()];
        std::thread::scope(|scope| {
            let mut streams = Vec::new();
            for (i, u) in self.cfg.upstreams.iter().enumerate() {
                if u.transport == Transport::Udp {
                    self.send_udp(i, u.addr);
                    continue;
                }
                let sip = u.transport == Transport::Tcp;
                let probe = std::thread::Builder::new()
                    .name("probe-stream".into())
                    .spawn_scoped(scope, move || self.over_tcp(i, u.addr, due, sip));
                if let Ok(h) = probe {
                    streams.push((i, h));
                }
            }
            self.take_udp_answers(started, due, stop, &mut rtt);
            for (i, h) in streams {
                rtt[i] = h.join().ok().flatten();
            }
        });
        rtt
    }

    /// The OPTIONS for upstream `i` of this round, from `from` over
    /// `transport`: its branch names both, so an answer from an earlier
    /// round or another upstream matches nothing.
    fn options(&self, i: usize, to: SocketAddr, from: SocketAddr, transport: &str) -> String {
        let round = self.round;
        format!(
            "OPTIONS sip:{to} SIP/2.0\r\n\
Via: SIP/2.0/{transport} {from};branch={};rport\r\n\
Max-Forwards: 70\r\n\
From: <sip:sipshard@{adv}>;tag=probe{round}\r\n\
To: <sip:{to}>\r\n\
Call-ID: probe-{i}-{round}@{adv}\r\n\
CSeq: {round} OPTIONS\r\n\
Accept: application/sdp\r\n\
Content-Length: 0\r\n\r\n",
            branch(i, round),
            adv = self.cfg.advertise.ip(),
        )
    }

    fn send_udp(&self, i: usize, to: SocketAddr) {
        let sock = if to.is_ipv6() { &self.v6 } else { &self.v4 };
        let Some(sock) = sock else { return };
        let Ok(from) = sock.local_addr() else { return };
        let from = if from.ip().is_unspecified() {
            SocketAddr::new(self.cfg.advertise.ip(), from.port())
        } else {
            from
        };
        let msg = self.options(i, to, from, "UDP");
        // A send that fails is a missed probe: nothing answers it.
        let _ = sock.send_to(msg.as_bytes(), to);
    }

    /// Answers to this round's UDP probes, until `due` (or stop): each
    /// upstream's round trip, in microseconds.
    fn take_udp_answers(
        &self,
        started: Instant,
        due: Instant,
        stop: &AtomicBool,
        rtt: &mut [Option<u64>],
    ) {
        let mut buf = [0u8; 4096];
        while Instant::now() < due && !stop.load(Ordering::Relaxed) {
            let mut got = false;
            for sock in [&self.v4, &self.v6].into_iter().flatten() {
                if let Ok(n) = sock.recv(&mut buf) {
                    got = true;
                    if let Some(i) = self.answer_to(&buf[..n]) {
                        if let Some(slot) = rtt.get_mut(i) {
                            slot.get_or_insert(micros(started.elapsed()));
                        }
                    }
                }
            }
            if !got && self.v4.is_none() && self.v6.is_none() {
                std::thread::sleep(STOP_CHECK.min(due.saturating_duration_since(Instant::now())));
            }
        }
    }

    /// The upstream a response answers in this round (not a 503), if
    /// any: its top Via's branch is one of ours.
    fn answer_to(&self, bytes: &[u8]) -> Option<usize> {
        let msg = Message::parse(bytes).ok()?;
        let status = msg.status()?;
        if status == 503 || status < 200 {
            return None;
        }
        let via = msg.via().ok()?;
        (0..self.cfg.upstreams.len())
            .find(|&i| via.branch == Some(branch(i, self.round).as_bytes()))
    }

    /// Over TCP (`sip` true): an OPTIONS on a fresh connection and its
    /// final answer; over TLS only the connect. The round trip, or None.
    fn over_tcp(&self, i: usize, to: SocketAddr, due: Instant, sip: bool) -> Option<u64> {
        let started = Instant::now();
        let left = due
            .saturating_duration_since(started)
            .max(Duration::from_millis(1));
        let mut c = TcpStream::connect_timeout(&to, left).ok()?;
        if !sip {
            return Some(micros(started.elapsed()));
        }
        c.set_read_timeout(Some(left)).ok()?;
        let from = c.local_addr().ok()?;
        c.write_all(self.options(i, to, from, "TCP").as_bytes())
            .ok()?;
        let mut buf = Vec::with_capacity(1024);
        let mut chunk = [0u8; 2048];
        while Instant::now() < due && buf.len() < 65_536 {
            let n = c.read(&mut chunk).ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&chunk[..n]);
            // Provisionals first, then the final: each message ends at
            // its Content-Length (§18.3); these have no body to wait for.
            let mut rest = &buf[..];
            while let Some(end) = rest.windows(4).position(|w| w == b"\r\n\r\n") {
                if self.answer_to(&rest[..end + 4]) == Some(i) {
                    return Some(micros(started.elapsed()));
                }
                rest = &rest[end + 4..];
            }
        }
        None
    }
}

/// The branch of upstream `i`'s probe in round `round`.
fn branch(i: usize, round: u64) -> String {
    format!("z9hG4bKprobe-{i}-{round}")
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prober(upstreams: Vec<TransportAddr>) -> Prober {
        Prober::new(
            ProbeConfig {
                upstreams,
                interval: Duration::from_millis(300),
                threshold: 2,
                advertise: "127.0.0.1:5060".parse().unwrap(),
            },
            Arc::new(Health::new(2)),
        )
    }

    /// The answer `code` to the OPTIONS `req`, echoing its top Via as an
    /// upstream would.
    fn echoing(req: &[u8], code: u16) -> String {
        let m = Message::parse(req).unwrap();
        let via = String::from_utf8_lossy(m.top_via_value().unwrap().text);
        format!(
            "SIP/2.0 {code} X\r\nVia: {via}\r\nTo: <sip:u>;tag=u\r\nFrom: <sip:p>;tag=p\r\n\
Call-ID: x\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
        )
    }

    /// A UDP "upstream" that answers every OPTIONS with `code`, echoing
    /// its Via.
    fn answering(code: u16) -> (UdpSocket, std::thread::JoinHandle<()>) {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let t = s.try_clone().unwrap();
        let h = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok((n, from)) = t.recv_from(&mut buf) {
                t.send_to(echoing(&buf[..n], code).as_bytes(), from)
                    .unwrap();
            }
        });
        (s, h)
    }

    #[test]
    fn an_answering_upstream_counts_and_a_silent_one_does_not() {
        let (up, _h) = answering(200);
        let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut p = prober(vec![
            TransportAddr::udp(up.local_addr().unwrap()),
            TransportAddr::udp(silent.local_addr().unwrap()),
        ]);
        p.round = 1;
        p.send_udp(0, up.local_addr().unwrap());
        p.send_udp(1, silent.local_addr().unwrap());
        let mut rtt = vec![None, None];
        let now = Instant::now();
        p.take_udp_answers(
            now,
            now + Duration::from_millis(300),
            &AtomicBool::new(false),
            &mut rtt,
        );
        assert!(rtt[0].is_some(), "{rtt:?}");
        assert_eq!(rtt[1], None);
        // The silent one received a well-formed OPTIONS naming our socket.
        let mut buf = [0u8; 2048];
        let n = silent.recv(&mut buf).unwrap();
        let m = Message::parse(&buf[..n]).unwrap();
        m.validate().unwrap();
        assert_eq!(m.via().unwrap().branch, Some(&b"z9hG4bKprobe-1-1"[..]));
    }

    #[test]
    fn a_503_or_an_answer_from_another_round_is_no_answer() {
        let p = prober(vec![TransportAddr::udp("127.0.0.1:9".parse().unwrap())]);
        let answer = |code: u16, b: &str| {
            format!(
                "SIP/2.0 {code} X\r\nVia: SIP/2.0/UDP 127.0.0.1:1;branch={b}\r\nTo: <sip:u>;tag=u\r\n\
From: <sip:p>;tag=p\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
            )
        };
        assert_eq!(
            p.answer_to(answer(200, "z9hG4bKprobe-0-0").as_bytes()),
            Some(0)
        );
        assert_eq!(
            p.answer_to(answer(404, "z9hG4bKprobe-0-0").as_bytes()),
            Some(0)
        );
        assert_eq!(
            p.answer_to(answer(503, "z9hG4bKprobe-0-0").as_bytes()),
            None
        );
        assert_eq!(
            p.answer_to(answer(200, "z9hG4bKprobe-0-7").as_bytes()),
            None
        );
        assert_eq!(p.answer_to(b"garbage"), None);
    }

    /// A TCP "upstream" that answers one OPTIONS with 200, after a 100
    /// when `trying` (which the prober must read past).
    fn tcp_answering(trying: bool) -> (SocketAddr, std::thread::JoinHandle<()>) {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let h = std::thread::spawn(move || {
            let (mut c, _) = l.accept().unwrap();
            let mut buf = [0u8; 2048];
            let n = c.read(&mut buf).unwrap();
            let mut answer = String::new();
            if trying {
                answer += &echoing(&buf[..n], 100);
            }
            answer += &echoing(&buf[..n], 200);
            c.write_all(answer.as_bytes()).unwrap();
        });
        (addr, h)
    }

    #[test]
    fn a_tcp_upstream_that_never_answers_costs_the_others_nothing() {
        // Accepts (the kernel does, from its backlog) and never answers:
        // its probe waits the whole round.
        let mute = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let (live, h) = tcp_answering(false);
        let tcp = |addr| TransportAddr {
            transport: Transport::Tcp,
            addr,
        };
        let mut p = prober(vec![tcp(mute.local_addr().unwrap()), tcp(live)]);
        p.round = 1;
        let rtt = p.one_round(&AtomicBool::new(false));
        assert_eq!(rtt[0], None);
        assert!(rtt[1].is_some(), "{rtt:?}");
        h.join().unwrap();
    }

    #[test]
    fn over_tcp_an_options_gets_its_answer_and_a_closed_port_is_missed() {
        let (addr, h) = tcp_answering(true);
        let p = prober(vec![TransportAddr {
            transport: Transport::Tcp,
            addr,
        }]);
        let due = Instant::now() + Duration::from_secs(2);
        assert!(p.over_tcp(0, addr, due, true).is_some());
        h.join().unwrap();
        // Nothing listens there any more.
        let due = Instant::now() + Duration::from_millis(300);
        assert_eq!(p.over_tcp(0, addr, due, true), None);
    }
}
