//! `hold`: opens `--connections` connections to a server over TCP, TLS,
//! WS or WSS, uses each once (its handshakes done and one OPTIONS to the
//! server itself answered 200: RFC 3261 §11.2; sipshard answers it, and so
//! does perf/kamailio/proxy-transports.cfg), then holds them open and idle
//! until killed, or for `--hold` seconds at most. Once all have been
//! tried it prints one line (`holding=N ...`, flushed) and waits: a script
//! reads the server's memory before and after, for its cost per idle
//! connection.
//!
//! Only each connection's socket is kept (our TLS state and buffers are
//! dropped once it is answered), so 50,000 connections cost this process
//! little more than their descriptors; each is reset when this process
//! ends, leaving no TIME_WAIT behind. Its open-file limit is raised to
//! the hard limit (raise that with `ulimit -n`). One source address has
//! about 28,000 ephemeral ports, so connections are spread over
//! `--sources` consecutive loopback addresses from `--first-source` (by
//! default one per 20,000 connections).
//!
//! Loopback targets and sources only.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use sipshard::transport::Transport;

use crate::conn::{is_loopback, parse_transport, raise_fd_limit, tls_config, Dialer};
use crate::open::{open_many, Goal, Plan};
use crate::report::percentile;

/// Connections per source address, by default.
const PER_SOURCE: u64 = 20_000;
/// Descriptors kept free beside the connections.
const SPARE_FDS: u64 = 64;

#[derive(clap::Args)]
pub struct Args {
    /// The server's listener (a loopback address).
    #[arg(long)]
    target: SocketAddr,
    /// tcp, tls, ws or wss.
    #[arg(long, default_value = "tcp", value_parser = parse_transport)]
    transport: Transport,
    /// CA certificates (PEM) for tls and wss; the server's certificate
    /// must name the target's IP. Full handshakes (no resumption).
    #[arg(long)]
    tls_ca: Option<PathBuf>,
    /// Connections to open and hold.
    #[arg(long, default_value_t = 1000)]
    connections: u64,
    /// Source addresses to spread them over (default: one per 20,000).
    #[arg(long)]
    sources: Option<u8>,
    /// The first source address; the others follow it.
    #[arg(long, default_value = "127.0.0.1")]
    first_source: Ipv4Addr,
    /// Connections started per second; 0 as fast as --concurrency allows.
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Connections being opened at once, at most.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Seconds one connection may take to be answered.
    #[arg(long, default_value_t = 10.0)]
    timeout: f64,
    /// Seconds to hold them at most, if not killed first.
    #[arg(long, default_value_t = 600.0)]
    hold: f64,
    /// Print one machine-readable line (key=value) instead of prose.
    #[arg(long)]
    kv: bool,
}

/// `n` consecutive addresses from `first`; None when they would leave
/// 127.0.0.0/8.
fn sources(first: Ipv4Addr, n: u8) -> Option<Vec<IpAddr>> {
    let base = u32::from(first);
    let last = base.checked_add(u32::from(n.max(1)) - 1)?;
    let all: Vec<IpAddr> = (base..=last)
        .map(|a| IpAddr::V4(Ipv4Addr::from(a)))
        .collect();
    all.iter().all(|a| a.is_loopback()).then_some(all)
}

pub fn main(args: Args) -> std::io::Result<()> {
    let err = |m: String| std::io::Error::other(m);
    if !is_loopback(args.target) {
        return Err(err("--target must be a loopback address".into()));
    }
    let fds = raise_fd_limit();
    if fds < args.connections + SPARE_FDS {
        return Err(err(format!(
            "{} connections need {} descriptors; the limit is {fds} (raise it with ulimit -n)",
            args.connections,
            args.connections + SPARE_FDS
        )));
    }
    let n = args.sources.unwrap_or_else(|| {
        args.connections
            .div_ceil(PER_SOURCE)
            .clamp(1, u64::from(u8::MAX)) as u8
    });
    let sources = sources(args.first_source, n).ok_or_else(|| {
        err(format!(
            "--sources {n} from {} leave 127.0.0.0/8",
            args.first_source
        ))
    })?;
    let tls = match (&args.tls_ca, args.transport) {
        (Some(ca), _) => Some(tls_config(ca, false)?),
        (None, Transport::Tls | Transport::Wss) => {
            return Err(err("tls and wss need --tls-ca".into()))
        }
        (None, _) => None,
    };
    let dialer = Dialer::new(args.target, args.transport, tls)?;
    let plan = Plan {
        count: args.connections,
        rate: args.rate,
        concurrency: args.concurrency,
        timeout: Duration::from_secs_f64(args.timeout),
        goal: Goal::Answered,
        sources: if n > 1 || args.first_source != Ipv4Addr::LOCALHOST {
            sources
        } else {
            Vec::new()
        },
    };
    let mut held: Vec<TcpStream> = Vec::with_capacity(args.connections as usize);
    let mut r = open_many(&dialer, &plan, |conn| {
        let sock = conn.into_socket();
        // Closed with a reset when we exit, rather than in order: N
        // connections closed in order would leave N sockets in TIME_WAIT
        // on this host for a minute, holding the ports the next run needs.
        let _ = socket2::SockRef::from(&sock).set_linger(Some(Duration::ZERO));
        held.push(sock);
    });
    r.lat_us.sort_unstable();
    let pct = |p| percentile(&r.lat_us, p);
    let line = if args.kv {
        format!(
            "holding={} wanted={} failed={} faults={} secs={:.3} per_s={:.0} p50_us={} p99_us={} transport={} sources={n}",
            held.len(),
            args.connections,
            r.faults.total(),
            r.faults.list(),
            r.secs,
            r.ok as f64 / r.secs.max(1e-9),
            pct(0.5),
            pct(0.99),
            args.transport.via_token().to_ascii_lowercase(),
        )
    } else {
        format!(
            "holding {} of {} {} connections (opened in {:.2} s, {} failed: {}; first answer p50 {} us, p99 {} us) from {n} source address(es); until killed or {} s",
            held.len(),
            args.connections,
            args.transport.via_token(),
            r.secs,
            r.faults.total(),
            r.faults.list(),
            pct(0.5),
            pct(0.99),
            args.hold,
        )
    };
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")?;
    out.flush()?;
    drop(out);
    let until = Instant::now() + Duration::from_secs_f64(args.hold);
    while Instant::now() < until {
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(held);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_stay_on_loopback() {
        let first = Ipv4Addr::new(127, 0, 0, 1);
        assert_eq!(
            sources(first, 3),
            Some(vec![
                IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)),
                IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)),
                IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3)),
            ])
        );
        assert_eq!(sources(Ipv4Addr::new(127, 255, 255, 250), 10), None);
        assert_eq!(sources(Ipv4Addr::new(10, 0, 0, 1), 1), None);
        assert_eq!(sources(first, 0).map(|s| s.len()), Some(1));
    }
}
