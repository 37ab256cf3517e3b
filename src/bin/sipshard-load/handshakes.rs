//! `handshakes`: full TLS 1.3 handshakes against a server's TLS listener,
//! `--count` of them, started at `--rate` per second (0: as fast as the
//! server finishes them, `--concurrency` under way at once). The client
//! remembers no session (resumption disabled), so every handshake is a
//! full one: key exchange, the server's certificate signed for and
//! checked. Each connection ends with TLS close_notify and waits for the
//! server's end, so a handshake counts only once the server has done all
//! its work on it. Prints what was achieved and the handshake times; the
//! server's CPU per handshake is the caller's to read (its /proc).
//!
//! Loopback targets only: this opens connections by the thousand.

use std::path::PathBuf;
use std::time::Duration;

use sipshard::transport::Transport;

use crate::conn::{is_loopback, tls_config, Dialer};
use crate::open::{open_many, Goal, Plan};
use crate::report::percentile;

#[derive(clap::Args)]
pub struct Args {
    /// The server's TLS listener (a loopback address); its certificate
    /// must name the address's IP.
    #[arg(long)]
    target: std::net::SocketAddr,
    /// CA certificates (PEM) the server's certificate must chain to.
    #[arg(long)]
    tls_ca: PathBuf,
    /// Handshakes in all.
    #[arg(long, default_value_t = 1000)]
    count: u64,
    /// Handshakes started per second; 0 starts them as fast as
    /// --concurrency allows.
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Handshakes under way at once, at most.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Seconds one handshake may take before it counts as failed.
    #[arg(long, default_value_t = 10.0)]
    timeout: f64,
    /// Print one machine-readable line (key=value) instead of prose.
    #[arg(long)]
    kv: bool,
}

pub fn main(args: Args) -> std::io::Result<()> {
    if !is_loopback(args.target) {
        return Err(std::io::Error::other("--target must be a loopback address"));
    }
    let dialer = Dialer::new(
        args.target,
        Transport::Tls,
        Some(tls_config(&args.tls_ca, false)?),
    )?;
    let plan = Plan {
        count: args.count,
        rate: args.rate,
        concurrency: args.concurrency,
        timeout: Duration::from_secs_f64(args.timeout),
        goal: Goal::Handshake,
        sources: Vec::new(),
    };
    let mut r = open_many(&dialer, &plan, drop);
    r.lat_us.sort_unstable();
    let pct = |p| percentile(&r.lat_us, p);
    let rate = r.ok as f64 / r.secs.max(1e-9);
    let failed = r.faults.total();
    if args.kv {
        println!(
            "count={} ok={} failed={failed} faults={} secs={:.3} offered_per_s={} achieved_per_s={rate:.0} p50_us={} p90_us={} p99_us={} concurrency={}",
            args.count,
            r.ok,
            r.faults.list(),
            r.secs,
            args.rate,
            pct(0.5),
            pct(0.9),
            pct(0.99),
            args.concurrency,
        );
    } else {
        println!(
            "{} full TLS 1.3 handshakes in {:.2} s ({rate:.0}/s, {} at once at most), {failed} failed ({}); handshake time p50 {} us, p90 {} us, p99 {} us",
            r.ok,
            r.secs,
            args.concurrency,
            r.faults.list(),
            pct(0.5),
            pct(0.9),
            pct(0.99),
        );
    }
    Ok(())
}
