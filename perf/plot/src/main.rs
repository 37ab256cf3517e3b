//! `sipshard-plot DIR`: draws the SVG plots of a sipshard-vs-Kamailio
//! benchmark run (issue #6) from the CSV files in DIR, writing each SVG
//! beside its data and printing its path.
//!
//! Inputs, each optional (a benchmark may be skipped on its own, and its
//! plots with it; stderr says so):
//!
//! - `forwarding.csv`: `target,round,offered_rps,achieved_rps,loss_pct,p50_us,p90_us,p99_us,p999_us,cpu_us_per_msg`
//!   -> `forwarding-rate.svg`, `forwarding-latency.svg`, `forwarding-cpu.svg`
//! - `calls.csv`: `target,round,pairs,offered_cps,achieved_cps,successful,failed,p50_ms,p90_ms,p99_ms,cpu_us_per_call`
//!   -> `calls-rate.svg`, `calls-latency.svg`
//! - `registration.csv`: `target,round,users,offered_rps,achieved_rps,p50_us,p99_us,cpu_us_per_reg,bytes_per_binding`
//!   -> `memory.svg`, `registration-cpu.svg`
//! - `transports.csv`: `target,round,transport,offered_rps,cpu_us_per_msg`,
//!   every row at one offered rate, `transport` a code 0=UDP 1=TCP 2=TLS
//!   3=WS (written by scripts/transport-bench.sh from its forwarding.csv)
//!   -> `transports-cpu.svg`, bars grouped by the caller's transport
//! - `connections.csv`: `target,round,transport,conns,bytes_per_conn`, every
//!   row at one connection count, `transport` 1=TCP 2=TLS
//!   -> `connections-memory.svg`, bars grouped by transport
//!
//! A file of the last two with more than one rate (or connection count) is
//! an error, as a malformed file is: its bars would mix incomparable rows.
//! transport-bench.sh writes them into a folder of their own
//! (`perf/transports/plots/`), because its own `forwarding.csv` has other
//! columns (a `transport` text column) that this tool would refuse.
//!
//! Each point is the median over rounds of one (target, x) cell, with
//! min–max whiskers. sipshard is always blue and Kamailio orange; any other
//! target (the bare relay, `sipshard-uring`) gets a colour of its own.
//!
//! This is a separate crate in the workspace (not a binary of `sipshard`) so
//! that the server never builds plotters.

#![deny(missing_docs)]
#![warn(rust_2018_idioms, unreachable_pub)]

mod chart;
mod error;
mod plots;
mod stats;
mod style;
mod table;

use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "usage: sipshard-plot DIR\n\
    Reads forwarding.csv, calls.csv, registration.csv, transports.csv and\n\
    connections.csv from DIR (each optional) and writes the SVG plots into\n\
    DIR, printing each path written.";

fn main() -> ExitCode {
    let args: Vec<_> = std::env::args_os().skip(1).collect();
    let dir = match args.as_slice() {
        [a] if a == "-h" || a == "--help" => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        [dir] => PathBuf::from(dir),
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    if !dir.is_dir() {
        eprintln!("sipshard-plot: {}: not a directory", dir.display());
        return ExitCode::FAILURE;
    }
    match plots::run(&dir) {
        Ok(out) => {
            for why in &out.skipped {
                eprintln!("sipshard-plot: {why}");
            }
            for path in &out.written {
                println!("{}", path.display());
            }
            if out.written.is_empty() {
                eprintln!("sipshard-plot: no plot written");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("sipshard-plot: {e}");
            ExitCode::FAILURE
        }
    }
}
