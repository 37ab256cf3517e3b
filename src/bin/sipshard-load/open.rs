//! Opening many connections, for `handshakes` and `hold`: `count` of them,
//! started at `rate` per second (0: as fast as the window allows) with at
//! most `concurrency` under way at once, each driven to a [`Goal`] within
//! `timeout`, all from one thread. Every connection ends counted: reached
//! its goal, or failed under a [`Fault`]'s name (`timeout` for one that
//! took too long), so the loop ends after `count` connections have been
//! started and the last one has ended or timed out.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use crate::conn::{poll_set, wait, Conn, Dialer, Fault, Faults, Phase};
use crate::templates::{options, options_stamp, ReqTo};

/// Longest wait in ppoll, µs.
const MAX_WAIT_US: u64 = 1000;

/// What each connection is opened for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Goal {
    /// Its handshakes done (TLS, WebSocket); then TLS close_notify (or a
    /// TCP shutdown) and the server's end of the stream awaited, so the
    /// server has done all its work on it before it counts.
    Handshake,
    /// Ready, then one OPTIONS to the server itself answered 200; then
    /// handed to the caller, in use and idle.
    Answered,
}

/// How many, how fast, from where.
pub struct Plan {
    pub count: u64,
    /// Connections started per second; 0 as fast as `concurrency` allows.
    pub rate: u64,
    pub concurrency: usize,
    /// Longest a connection may take to reach its goal.
    pub timeout: Duration,
    pub goal: Goal,
    /// Local addresses taken in turn (empty: the kernel's choice).
    pub sources: Vec<IpAddr>,
}

/// What happened to them.
#[derive(Debug, Default)]
pub struct Opened {
    /// Connections that reached their goal.
    pub ok: u64,
    pub faults: Faults,
    /// Microseconds from each one's start to its handshakes' end
    /// ([`Goal::Handshake`]) or its 200 ([`Goal::Answered`]).
    pub lat_us: Vec<u32>,
    /// Seconds from the first start to the last end.
    pub secs: f64,
}

/// One connection under way.
struct Slot {
    conn: Conn,
    /// Its handshakes ended after this many µs ([`Goal::Handshake`]),
    /// and close_notify was queued.
    closing: Option<u32>,
    /// The OPTIONS was sent ([`Goal::Answered`]).
    asked: bool,
}

/// Opens `plan.count` connections with `dialer`; each that reaches
/// [`Goal::Answered`] is handed to `keep`, the others are closed.
pub fn open_many(dialer: &Dialer, plan: &Plan, mut keep: impl FnMut(Conn)) -> Opened {
    let mut r = Opened::default();
    let start = Instant::now();
    let mut started = 0u64;
    let mut flight: Vec<Slot> = Vec::with_capacity(plan.concurrency);
    let (mut fds, mut scratch, mut msg) = (Vec::new(), vec![0u8; 1 << 16], Vec::new());
    let mut done: Vec<(usize, Option<Fault>)> = Vec::new();
    loop {
        let elapsed = start.elapsed();
        while started < plan.count && flight.len() < plan.concurrency.max(1) {
            if plan.rate > 0 && started >= (elapsed.as_secs_f64() * plan.rate as f64) as u64 {
                break;
            }
            let source = (!plan.sources.is_empty())
                .then(|| plan.sources[(started % plan.sources.len() as u64) as usize]);
            started += 1;
            match dialer.start(source) {
                Ok(conn) => flight.push(Slot {
                    conn,
                    closing: None,
                    asked: false,
                }),
                Err(f) => r.faults.add(f),
            }
        }
        if flight.is_empty() {
            if started >= plan.count {
                break;
            }
            std::thread::sleep(Duration::from_micros(MAX_WAIT_US / 4));
            continue;
        }
        poll_set(flight.iter().map(|s| &s.conn), &mut fds);
        wait(&mut fds, MAX_WAIT_US);
        done.clear();
        for (i, (slot, f)) in flight.iter_mut().zip(&fds).enumerate() {
            if slot.conn.started.elapsed() > plan.timeout {
                done.push((i, Some(Fault("timeout"))));
                continue;
            }
            if f.revents == 0 {
                continue;
            }
            let (mut answered, mut other) = (false, false);
            let got = slot
                .conn
                .ready(f.revents, &mut scratch, &mut |m| match options_stamp(m) {
                    Some(_) => answered = true,
                    None => other = true,
                });
            let outcome = match got {
                // A server that resets rather than answering close_notify
                // has still done the handshake.
                Err(Fault("reset")) if slot.closing.is_some() => Some(None),
                Err(fault) => Some(Some(fault)),
                Ok(_) => step(plan.goal, slot, answered, other, dialer.target, &mut msg),
            };
            if let Some(fault) = outcome {
                if fault.is_none() {
                    let lat = match plan.goal {
                        Goal::Handshake => slot.closing.unwrap_or_default(),
                        Goal::Answered => micros(slot.conn.started),
                    };
                    r.lat_us.push(lat);
                }
                done.push((i, fault));
            }
        }
        for &(i, fault) in done.iter().rev() {
            let slot = flight.swap_remove(i);
            match fault {
                Some(f) => r.faults.add(f),
                None => {
                    r.ok += 1;
                    if plan.goal == Goal::Answered {
                        keep(slot.conn);
                    }
                }
            }
        }
    }
    r.secs = start.elapsed().as_secs_f64();
    r
}

/// Moves `slot` towards `goal` after a readiness: None while under way,
/// `Some(None)` once reached, `Some(Some(fault))` when it failed.
fn step(
    goal: Goal,
    slot: &mut Slot,
    answered: bool,
    other: bool,
    target: SocketAddr,
    msg: &mut Vec<u8>,
) -> Option<Option<Fault>> {
    let conn = &mut slot.conn;
    let ready = conn.phase() == Phase::Ready;
    match goal {
        Goal::Handshake => {
            if slot.closing.is_some() {
                // Anything before the server's end (TLS 1.3 session
                // tickets) is read and dropped.
                return conn.eof().then_some(None);
            }
            if conn.eof() {
                return Some(Some(Fault("closed")));
            }
            if ready {
                slot.closing = Some(micros(conn.started));
                conn.close();
                if let Err(f) = conn.flush() {
                    return Some(Some(f));
                }
            }
            None
        }
        Goal::Answered => {
            if answered {
                return Some(None);
            }
            if other {
                return Some(Some(Fault("not_200")));
            }
            if conn.eof() {
                return Some(Some(Fault("closed")));
            }
            if ready && !slot.asked {
                slot.asked = true;
                msg.clear();
                let token = conn.transport().via_token();
                options(msg, 0, 0, token, conn.local(), ReqTo::Server(target));
                if let Err(f) = conn.send(msg).and_then(|_| conn.flush()) {
                    return Some(Some(f));
                }
            }
            None
        }
    }
}

/// Microseconds since `t`, saturated.
fn micros(t: Instant) -> u32 {
    t.elapsed().as_micros().min(u128::from(u32::MAX)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::TcpListener;

    use sipshard::transport::Transport;

    fn plan(count: u64, timeout_ms: u64) -> Plan {
        Plan {
            count,
            rate: 0,
            concurrency: 4,
            timeout: Duration::from_millis(timeout_ms),
            goal: Goal::Handshake,
            sources: Vec::new(),
        }
    }

    #[test]
    fn each_connection_counts_once_the_server_has_closed_it() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let dialer = Dialer::new(listener.local_addr().unwrap(), Transport::Tcp, None).unwrap();
        // A server that reads each connection to its end, then closes it.
        let server = std::thread::spawn(move || {
            for _ in 0..20 {
                let (mut s, _) = listener.accept().unwrap();
                let _ = s.read_to_end(&mut Vec::new());
            }
        });
        let r = open_many(&dialer, &plan(20, 5000), drop);
        server.join().unwrap();
        assert_eq!((r.ok, r.faults.list()), (20, "none".to_string()));
        assert_eq!(r.lat_us.len(), 20);
    }

    #[test]
    fn a_connection_the_server_never_ends_times_out() {
        // Connected by the kernel's backlog, never accepted, never closed.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let dialer = Dialer::new(listener.local_addr().unwrap(), Transport::Tcp, None).unwrap();
        let began = Instant::now();
        let r = open_many(&dialer, &plan(6, 100), drop);
        assert_eq!((r.ok, r.faults.list()), (0, "timeout:6".to_string()));
        assert!(began.elapsed() < Duration::from_secs(2));
        // Nothing listening: refused, counted.
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let dialer = Dialer::new(addr, Transport::Tcp, None).unwrap();
        let r = open_many(&dialer, &plan(3, 1000), drop);
        assert_eq!((r.ok, r.faults.list()), (0, "refused:3".to_string()));
    }

    /// A server answering one OPTIONS per connection with `status`, for
    /// `n` connections; each then stays open until the client goes.
    fn answering(listener: TcpListener, n: usize, status: u16) -> std::thread::JoinHandle<()> {
        std::thread::spawn(move || {
            let mut open = Vec::new();
            for _ in 0..n {
                let (mut s, _) = listener.accept().unwrap();
                let mut req = Vec::new();
                let mut buf = [0u8; 1024];
                while !req.ends_with(b"\r\n\r\n") {
                    let n = s.read(&mut buf).unwrap();
                    assert!(n > 0);
                    req.extend_from_slice(&buf[..n]);
                }
                let msg = sipshard::sip::Message::parse(&req).unwrap();
                assert_eq!(
                    msg.request_uri_bytes(),
                    Some(format!("sip:{}", s.local_addr().unwrap()).as_bytes())
                );
                let mut out = [0u8; 1024];
                let len = sipshard::sip::ResponseWriter::new(&msg, status, &[b"X"], None, &mut out)
                    .and_then(|w| w.finish())
                    .unwrap();
                std::io::Write::write_all(&mut s, &out[..len]).unwrap();
                open.push(s);
            }
        })
    }

    #[test]
    fn answered_connections_are_kept_and_others_counted() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let dialer = Dialer::new(listener.local_addr().unwrap(), Transport::Tcp, None).unwrap();
        let server = answering(listener, 5, 200);
        let mut plan = plan(5, 5000);
        plan.goal = Goal::Answered;
        let mut kept = Vec::new();
        let r = open_many(&dialer, &plan, |c| kept.push(c.into_socket()));
        server.join().unwrap();
        assert_eq!(
            (r.ok, kept.len(), r.faults.list()),
            (5, 5, "none".to_string())
        );

        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let dialer = Dialer::new(listener.local_addr().unwrap(), Transport::Tcp, None).unwrap();
        let server = answering(listener, 2, 404);
        let r = open_many(&dialer, &Plan { count: 2, ..plan }, |_| panic!("kept"));
        server.join().unwrap();
        assert_eq!((r.ok, r.faults.list()), (0, "not_200:2".to_string()));
    }
}
