//! `run --transport tcp|tls|ws|wss`: the UAC side of `run` over `--flows`
//! connections instead of UDP sockets. The sink stays on UDP, so the proxy
//! forwards each request from the caller's transport to UDP and each 200
//! back onto the caller's connection.
//!
//! One thread does it all: it sends what is due on the connections in
//! turn (a batch of up to [`BATCH`] messages per connection, as the UDP
//! sender hands a batch to one socket per sendmmsg), writes them at once,
//! and reads the answers between sends, waiting in ppoll until the next
//! request is due. A connection that fails or is closed by the server
//! leaves the rotation and is counted under its fault's name; the run goes
//! on over the others.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sipshard::io::BATCH;

use crate::conn::{poll_set, wait, Conn, Dialer, Fault, Faults, Phase};
use crate::templates::{options, options_stamp, ReqTo};

/// How long the connections may take to be ready (connect, TLS
/// handshake, WebSocket upgrade).
const DIAL_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait in ppoll when nothing is due, µs.
const MAX_WAIT_US: u64 = 1000;

/// What a run over connections measured, beside the sink's count.
pub struct StreamRun {
    /// Requests offered (queued or not).
    pub sent: u64,
    /// Requests not queued: their connection had failed, or held
    /// [`crate::conn`]'s cap of bytes the server had not taken.
    pub unsent: u64,
    /// Seconds spent sending.
    pub secs: f64,
    /// Latencies of the stamped 200s, µs, in the order they came.
    pub lat: Vec<u32>,
    /// Messages received that are not a 200 to one of ours.
    pub other: u64,
    /// Connections lost, by fault.
    pub faults: Faults,
}

/// Opens `n` connections and waits until every one is ready; an error
/// naming the fault if one fails, or if they are not all ready within
/// [`DIAL_TIMEOUT`] (a run over fewer flows than asked would not be the
/// run asked for).
pub fn dial(dialer: &Dialer, n: usize) -> io::Result<Vec<Conn>> {
    let failed = |f: Fault| io::Error::other(format!("connection to {}: {}", dialer.target, f.0));
    let mut conns = Vec::with_capacity(n);
    for _ in 0..n {
        conns.push(dialer.start(None).map_err(failed)?);
    }
    let deadline = Instant::now() + DIAL_TIMEOUT;
    let (mut fds, mut scratch) = (Vec::new(), vec![0u8; 1 << 16]);
    while conns.iter().any(|c| c.phase() != Phase::Ready) {
        if Instant::now() >= deadline {
            return Err(io::Error::other(format!(
                "connections to {} not ready within {DIAL_TIMEOUT:?}",
                dialer.target
            )));
        }
        poll_set(conns.iter(), &mut fds);
        wait(&mut fds, 10_000);
        for (c, f) in conns.iter_mut().zip(&fds) {
            if f.revents != 0 {
                c.ready(f.revents, &mut scratch, &mut |_| {})
                    .map_err(failed)?;
                if c.eof() {
                    return Err(failed(Fault("closed")));
                }
            }
        }
    }
    Ok(conns)
}

/// Sends OPTIONS to `sink` through the proxy over `conns` at `rate` per
/// second (0: as fast as they take them) for `duration`, reading the
/// answers meanwhile and for a second after. Latency stamps are
/// microseconds since `start`.
pub fn run(
    mut conns: Vec<Conn>,
    transport: &str,
    sink: SocketAddr,
    rate: u64,
    duration: Duration,
    start: Instant,
) -> StreamRun {
    let mut r = StreamRun {
        sent: 0,
        unsent: 0,
        secs: 0.0,
        lat: Vec::with_capacity(1 << 20),
        other: 0,
        faults: Faults::default(),
    };
    let linger = duration + Duration::from_secs(1);
    let mut secs = None;
    let (mut flow, mut msg) = (0, Vec::with_capacity(512));
    let (mut fds, mut scratch) = (Vec::new(), vec![0u8; 1 << 16]);
    let mut dead: Vec<usize> = Vec::new();
    loop {
        let elapsed = start.elapsed();
        if elapsed >= linger || conns.is_empty() {
            break;
        }
        let mut wait_us = MAX_WAIT_US;
        if elapsed < duration {
            let due = if rate == 0 {
                r.sent + BATCH as u64
            } else {
                (elapsed.as_secs_f64() * rate as f64) as u64
            };
            if due > r.sent {
                let n = (due - r.sent).min(BATCH as u64);
                flow %= conns.len();
                let conn = &mut conns[flow];
                let local = conn.local();
                let mut fault = None;
                for _ in 0..n {
                    r.sent += 1;
                    if fault.is_some() {
                        r.unsent += 1;
                        continue;
                    }
                    let ts = start.elapsed().as_micros() as u64;
                    msg.clear();
                    options(
                        &mut msg,
                        r.sent - 1,
                        ts,
                        transport,
                        local,
                        ReqTo::Sink(sink),
                    );
                    match conn.send(&msg) {
                        Ok(true) => {}
                        Ok(false) => r.unsent += 1,
                        Err(f) => {
                            r.unsent += 1;
                            fault = Some(f);
                        }
                    }
                }
                if fault.is_none() {
                    fault = conn.flush().err();
                }
                if let Some(f) = fault {
                    r.faults.add(f);
                    conns.swap_remove(flow);
                    continue;
                }
                flow += 1;
                wait_us = 0;
            } else if rate > 0 {
                let next = Duration::from_secs_f64((r.sent + 1) as f64 / rate as f64);
                wait_us = next
                    .saturating_sub(elapsed)
                    .as_micros()
                    .min(u128::from(MAX_WAIT_US)) as u64;
            }
        } else if secs.is_none() {
            secs = Some(elapsed.as_secs_f64());
        }
        poll_set(conns.iter(), &mut fds);
        if wait(&mut fds, wait_us) == 0 {
            continue;
        }
        let now = start.elapsed().as_micros() as u64;
        let (lat, other) = (&mut r.lat, &mut r.other);
        let mut on = |bytes: &[u8]| match options_stamp(bytes) {
            Some(sent) => lat.push(now.saturating_sub(sent).min(u64::from(u32::MAX)) as u32),
            None => *other += 1,
        };
        dead.clear();
        for (i, (c, f)) in conns.iter_mut().zip(&fds).enumerate() {
            if f.revents == 0 {
                continue;
            }
            match c.ready(f.revents, &mut scratch, &mut on) {
                Ok(_) if c.eof() => {
                    r.faults.add(Fault("closed"));
                    dead.push(i);
                }
                Ok(_) => {}
                Err(fault) => {
                    r.faults.add(fault);
                    dead.push(i);
                }
            }
        }
        for &i in dead.iter().rev() {
            conns.swap_remove(i);
        }
    }
    r.secs = secs.unwrap_or_else(|| start.elapsed().as_secs_f64().min(duration.as_secs_f64()));
    r
}
