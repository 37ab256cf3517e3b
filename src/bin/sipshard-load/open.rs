//! Opening many connections, for `handshakes`: `count` of them,
//! started at `rate` per second (0: as fast as the window allows) with at
//! most `concurrency` under way at once, each driven to a [`Goal`] within
//! `timeout`, all from one thread. Every connection ends counted: reached
//! its goal, or failed under a [`Fault`]'s name (`timeout` for one that
//! took too long), so the loop ends after `count` connections have been
//! started and the last one has ended or timed out.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::conn::{poll_set, wait, Conn, Dialer, Fault, Faults, Phase};

/// Longest wait in ppoll, µs.
const MAX_WAIT_US: u64 = 1000;

/// What each connection is opened for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Goal {
    /// Its handshakes done (TLS, WebSocket); then TLS close_notify (or a
    /// TCP shutdown) and the server's end of the stream awaited, so the
    /// server has done all its work on it before it counts.
    Handshake,
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
    /// Microseconds from each one's start to its handshakes' end.
    pub lat_us: Vec<u32>,
    /// Seconds from the first start to the last end.
    pub secs: f64,
}

/// One connection under way.
struct Slot {
    conn: Conn,
    /// Its handshakes ended after this many µs, and close_notify was
    /// queued.
    closing: Option<u32>,
}

/// Opens `plan.count` connections with `dialer`, each to its goal.
pub fn open_many(dialer: &Dialer, plan: &Plan) -> Opened {
    let mut r = Opened::default();
    let start = Instant::now();
    let mut started = 0u64;
    let mut flight: Vec<Slot> = Vec::with_capacity(plan.concurrency);
    let (mut fds, mut scratch) = (Vec::new(), vec![0u8; 1 << 16]);
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
            // What the server sends before its end (TLS 1.3 session
            // tickets are not messages) is dropped.
            let got = slot.conn.ready(f.revents, &mut scratch, &mut |_| {});
            let outcome = match got {
                // A server that resets rather than answering close_notify
                // has still done the handshake.
                Err(Fault("reset")) if slot.closing.is_some() => Some(None),
                Err(fault) => Some(Some(fault)),
                Ok(_) => step(plan.goal, slot),
            };
            if let Some(fault) = outcome {
                if fault.is_none() {
                    r.lat_us.push(slot.closing.unwrap_or_default());
                }
                done.push((i, fault));
            }
        }
        for &(i, fault) in done.iter().rev() {
            flight.swap_remove(i);
            match fault {
                Some(f) => r.faults.add(f),
                None => r.ok += 1,
            }
        }
    }
    r.secs = start.elapsed().as_secs_f64();
    r
}

/// Moves `slot` towards `goal` after a readiness: None while under way,
/// `Some(None)` once reached, `Some(Some(fault))` when it failed.
fn step(goal: Goal, slot: &mut Slot) -> Option<Option<Fault>> {
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
        let r = open_many(&dialer, &plan(20, 5000));
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
        let r = open_many(&dialer, &plan(6, 100));
        assert_eq!((r.ok, r.faults.list()), (0, "timeout:6".to_string()));
        assert!(began.elapsed() < Duration::from_secs(2));
        // Nothing listening: refused, counted.
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let dialer = Dialer::new(addr, Transport::Tcp, None).unwrap();
        let r = open_many(&dialer, &plan(3, 1000));
        assert_eq!((r.ok, r.faults.list()), (0, "refused:3".to_string()));
    }
}
