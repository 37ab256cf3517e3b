//! sipshard-load: an open-loop SIP load generator that plays UAC and UAS
//! at once, a bare UDP relay to measure the floor against, and a flood
//! from many loopback sources for the attack test.
//!
//! `run` ([`run`]): OPTIONS through a proxy to our own sink, measured.
//! `register` ([`register`]): REGISTERs of distinct users, measured.
//! `relay` ([`relay`]): every datagram forwarded untouched, the floor.
//! `flood` ([`flood`]): INVITEs and REGISTERs from many source addresses
//! and ports, each under a per-source rate limit.
//! `steer-cost` ([`steer_cost`]): the `--steer call-id` program's cost per
//! datagram, timed by the kernel.
//! `handshakes` ([`handshakes`]): full TLS 1.3 handshakes, measured.
//! `hold` ([`hold`]): connections opened, used once and held idle.
//!
//! The other modules serve them: [`conn`] makes and drives connections
//! (TCP, TLS, WebSocket) and [`open`] many of them, [`ws`] is the
//! WebSocket client half, [`net`] binds and polls sockets, [`sink`]
//! answers requests 200, [`templates`] writes the messages we send and
//! reads our stamps back from the answers, [`report`] turns what was
//! measured into one line of prose or of key=value pairs.

mod conn;
mod flood;
mod handshakes;
mod hold;
mod net;
mod open;
mod register;
mod relay;
mod report;
mod run;
mod sink;
mod steer_cost;
mod stream_run;
mod templates;
mod ws;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "sipshard-load",
    version,
    about = "SIP load generator (UAC + UAS sink, registrations, floods) and bare UDP relay"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Send requests through a proxy to our own sink and measure.
    Run(run::Args),
    /// Register users at a registrar and measure.
    Register(register::Args),
    /// Relay every datagram to --to, untouched (the floor).
    Relay(relay::Args),
    /// Flood a server from many loopback addresses and ports (attack test).
    Flood(flood::Args),
    /// Time the --steer call-id eBPF program in the kernel, per datagram.
    SteerCost(steer_cost::Args),
    /// Full TLS 1.3 handshakes against a server (no resumption), measured.
    Handshakes(handshakes::Args),
    /// Open connections (TCP, TLS, ...), one OPTIONS answered on each, and
    /// hold them idle until killed.
    Hold(hold::Args),
}

fn main() {
    let result = match Cli::parse().cmd {
        Cmd::Run(args) => run::main(args),
        Cmd::Register(args) => register::main(args),
        Cmd::Relay(args) => relay::main(args),
        Cmd::Flood(args) => flood::main(args),
        Cmd::SteerCost(args) => steer_cost::main(args),
        Cmd::Handshakes(args) => handshakes::main(args),
        Cmd::Hold(args) => hold::main(args),
    };
    if let Err(e) = result {
        eprintln!("sipshard-load: {e}");
        std::process::exit(1);
    }
}
