//! `run`: UAC flows send OPTIONS requests (R-URI = the sink) through the
//! proxy at `--rate` per second (0 = as fast as the sockets take them) for
//! `--duration` seconds; the sink answers each with 200 to its top Via; the
//! UAC matches answers by the sequence number and send time stamped in the
//! Via branch. Traffic is spread over `--flows` source ports so the
//! kernel's 4-tuple hash reaches every shard. Report: sent, forwarded
//! (reached the sink), answered, loss, achieved rate, latency p50/p99/p99.9.
//! With `--users N --domain D` the R-URIs cycle over `sip:uNNNNNNN@D` (N
//! users the server's location service knows): the run first registers
//! them with the sink as Contact (unless `--no-register`, when an earlier
//! `register` with the same `--sink` did), so every request is a lookup.
//!
//! `--transport tcp|tls|ws|wss` puts the UAC on `--flows` connections of
//! that transport instead ([`crate::stream_run`]); the sink stays on UDP,
//! so the proxy carries each request from the caller's transport to UDP.

use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sipshard::io::mmsg::Mmsg;
use sipshard::io::BATCH;
use sipshard::transport::{Dest, Transport};

use crate::conn::{parse_transport, tls_config, Dialer};
use crate::net::{bind_loopback, receive_until};
use crate::register::{register_users, RegConfig};
use crate::report::{RunReport, StreamReport};
use crate::sink::Sink;
use crate::stream_run;
use crate::templates::{options, options_stamp, ReqTo, MAX_USERS};

#[derive(clap::Args)]
pub struct Args {
    /// The proxy to send through.
    #[arg(long)]
    target: SocketAddr,
    /// Requests per second; 0 sends as fast as possible.
    #[arg(long, default_value_t = 10_000)]
    rate: u64,
    /// Seconds of sending (answers are awaited one more second).
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// UAC source sockets (ports) to spread the traffic over: UDP
    /// sockets, or connections with --transport tcp|tls|ws|wss.
    #[arg(long, default_value_t = 8)]
    flows: usize,
    /// The caller's transport: udp, or tcp, tls, ws, wss (connections to
    /// --target, each message framed by Content-Length on TCP and TLS,
    /// one per WebSocket frame on WS and WSS; the WebSocket handshake asks
    /// for the `sip` subprotocol). The sink is always on UDP.
    #[arg(long, default_value = "udp", value_parser = parse_transport)]
    transport: Transport,
    /// CA certificates (PEM) the server's certificate must chain to, for
    /// --transport tls and wss; it must name the target's IP address.
    /// TLS 1.3 only; sessions resume when the server offers tickets.
    #[arg(long)]
    tls_ca: Option<PathBuf>,
    /// Address of the sink (UAS) socket.
    #[arg(long, default_value = "127.0.0.1:0")]
    sink: SocketAddr,
    /// Address requests to N registered users `sip:uNNNNNNN@DOMAIN` in
    /// turn (0: to the sink's address directly, a plain proxy run).
    #[arg(long, default_value_t = 0)]
    users: u32,
    /// Domain of the users (with --users).
    #[arg(long, default_value = "example.com")]
    domain: String,
    /// With --users: do not register them first (an earlier `register`
    /// with the same --sink did).
    #[arg(long)]
    no_register: bool,
    /// With --users: REGISTERs per second when registering them first
    /// (0 = as fast as possible); users missing a 200 are retried up
    /// to 5 times, and the run stops if any is still missing.
    #[arg(long, default_value_t = 20_000)]
    register_rate: u64,
    /// With --users: the Expires the users register with.
    #[arg(long, default_value_t = 3600)]
    expires: u32,
    /// Print one machine-readable line (key=value) instead of prose.
    #[arg(long)]
    kv: bool,
}

pub fn main(mut cfg: Args) -> std::io::Result<()> {
    cfg.flows = cfg.flows.max(1);
    if cfg.users > MAX_USERS {
        return Err(std::io::Error::other(format!(
            "--users is at most {MAX_USERS}"
        )));
    }
    if cfg.transport.is_stream() {
        return main_stream(&cfg);
    }
    let sink = Sink::start(cfg.sink)?;
    if cfg.users > 0 && !cfg.no_register {
        register_first(&cfg, sink.addr)?;
    }
    let uac = bind_loopback(cfg.flows)?;
    let start = Instant::now();
    let receiver = Receiver::start(&uac, start)?;
    let users = (cfg.users > 0).then_some((cfg.users, cfg.domain.as_str()));
    let sent = send(&cfg, uac, sink.addr, users, start)?;
    let send_time = start.elapsed();
    // Let the last answers arrive.
    std::thread::sleep(Duration::from_secs(1));
    let mut lat = receiver.stop()?;
    let forwarded = sink.received.load(Ordering::Relaxed);
    drop(sink);
    lat.sort_unstable();
    let report = RunReport {
        sent,
        forwarded,
        secs: send_time.as_secs_f64(),
        lat,
        flows: cfg.flows,
        users: cfg.users,
        domain: &cfg.domain,
        stream: None,
    };
    print(&cfg, &report);
    Ok(())
}

/// `run` with the UAC on connections (`--transport` other than udp).
fn main_stream(cfg: &Args) -> std::io::Result<()> {
    if cfg.users > 0 {
        return Err(std::io::Error::other(
            "--users registers over UDP: use it with --transport udp",
        ));
    }
    let tls = match (&cfg.tls_ca, cfg.transport) {
        (Some(ca), _) => Some(tls_config(ca, true)?),
        (None, Transport::Tls | Transport::Wss) => {
            return Err(std::io::Error::other(
                "--transport tls and wss need --tls-ca",
            ))
        }
        (None, _) => None,
    };
    let dialer = Dialer::new(cfg.target, cfg.transport, tls)?;
    let sink = Sink::start(cfg.sink)?;
    let conns = stream_run::dial(&dialer, cfg.flows)?;
    let start = Instant::now();
    let mut r = stream_run::run(
        conns,
        cfg.transport.via_token(),
        sink.addr,
        cfg.rate,
        Duration::from_secs_f64(cfg.duration),
        start,
    );
    let forwarded = sink.received.load(Ordering::Relaxed);
    drop(sink);
    r.lat.sort_unstable();
    let report = RunReport {
        sent: r.sent,
        forwarded,
        secs: r.secs,
        lat: r.lat,
        flows: cfg.flows,
        users: 0,
        domain: &cfg.domain,
        stream: Some(StreamReport {
            transport: cfg.transport.via_token(),
            unsent: r.unsent,
            other: r.other,
            lost_conns: r.faults.total(),
            faults: r.faults.list(),
        }),
    };
    print(cfg, &report);
    Ok(())
}

fn print(cfg: &Args, report: &RunReport) {
    if cfg.kv {
        println!("{}", report.kv());
    } else {
        println!("{}", report.prose());
    }
}

/// Registers the `--users` with `sink` as their Contact; an error unless
/// every one of them got its 200.
fn register_first(cfg: &Args, sink: SocketAddr) -> std::io::Result<()> {
    let reg = register_users(&RegConfig {
        target: cfg.target,
        users: cfg.users,
        domain: cfg.domain.clone(),
        rate: cfg.register_rate,
        flows: cfg.flows,
        contact: sink,
        refreshes: 0,
        expires: cfg.expires,
        retries: 5,
        call_id_to_owner: 0,
    })?;
    eprintln!(
        "registered {} of {} users at {} (Contact {sink}): {}",
        reg.bound,
        cfg.users,
        cfg.target,
        reg.prose()
    );
    if reg.bound < u64::from(cfg.users) {
        return Err(std::io::Error::other(format!(
            "only {} of {} users registered; not running",
            reg.bound, cfg.users
        )));
    }
    Ok(())
}

/// The thread that reads the answers on the flow sockets and keeps the
/// latency of every 200 it can match.
struct Receiver {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Vec<u32>>,
}

impl Receiver {
    fn start(socks: &[UdpSocket], start: Instant) -> std::io::Result<Receiver> {
        let mut ios: Vec<Mmsg> = socks
            .iter()
            .map(|s| s.try_clone().map(Mmsg::new))
            .collect::<Result<_, _>>()?;
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut lat_us: Vec<u32> = Vec::with_capacity(1 << 20);
                receive_until(&stop, &mut ios, start, |bytes, now| {
                    if let Some(sent) = options_stamp(bytes) {
                        lat_us.push(now.saturating_sub(sent).min(u64::from(u32::MAX)) as u32);
                    }
                });
                lat_us
            })
        };
        Ok(Receiver { stop, thread })
    }

    /// Stops it; the latencies, µs, in the order the answers came.
    fn stop(self) -> std::io::Result<Vec<u32>> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .join()
            .map_err(|_| std::io::Error::other("receiver panicked"))
    }
}

/// Sends OPTIONS for `--duration` seconds at `--rate`: open loop,
/// round-robin over the flows, batches of BATCH. Returns how many.
fn send(
    cfg: &Args,
    uac: Vec<UdpSocket>,
    sink: SocketAddr,
    users: Option<(u32, &str)>,
    start: Instant,
) -> std::io::Result<u64> {
    let mut senders: Vec<Mmsg> = uac.into_iter().map(Mmsg::new).collect();
    let mut sent: u64 = 0;
    let mut flow = 0;
    let until = Duration::from_secs_f64(cfg.duration);
    let mut msg = Vec::with_capacity(512);
    loop {
        let elapsed = start.elapsed();
        if elapsed >= until {
            break;
        }
        let due = if cfg.rate == 0 {
            sent + BATCH as u64
        } else {
            (elapsed.as_secs_f64() * cfg.rate as f64) as u64
        };
        if due <= sent {
            std::thread::sleep(Duration::from_micros(200));
            continue;
        }
        let io = &mut senders[flow];
        let local = io.local_addr()?;
        let to = match users {
            Some((n, domain)) => ReqTo::Users(n, domain),
            None => ReqTo::Sink(sink),
        };
        let n = (due - sent).min(BATCH as u64);
        for _ in 0..n {
            let ts = start.elapsed().as_micros() as u64;
            msg.clear();
            options(&mut msg, sent, ts, "UDP", local, to);
            if let Some(slot) = io.send.slot() {
                slot[..msg.len()].copy_from_slice(&msg);
                io.send.commit(msg.len(), Dest::udp(cfg.target));
            }
            sent += 1;
        }
        io.flush();
        flow = (flow + 1) % senders.len();
    }
    Ok(sent)
}
