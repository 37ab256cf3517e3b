//! `steer-cost`: what the `--steer call-id` program costs the kernel per
//! datagram. The program runs in the receive path of whichever CPU
//! delivers the datagram (on loopback, the sender's), so it never shows in
//! sipshard's own CPU time; the kernel times it here with
//! `BPF_PROG_TEST_RUN`, many runs per call, for messages whose Call-ID
//! sits at different depths.

use std::io;

use sipshard::io::steer::{program, sys};

#[derive(clap::Args)]
pub struct Args {
    /// Shards the program is built for.
    #[arg(long, default_value_t = 2)]
    shards: u32,
    /// Runs per measurement (the kernel reports their mean).
    #[arg(long, default_value_t = 200_000)]
    repeat: u32,
    /// Measurements per message; min, median and max are printed.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
}

/// A request whose Call-ID comes after `pad` bytes of other headers.
fn message(pad: usize) -> String {
    let filler = if pad == 0 {
        String::new()
    } else {
        format!("X-Pad: {}\r\n", "p".repeat(pad.saturating_sub(9)))
    };
    format!(
        "INVITE sip:bob@127.0.0.1:5070 SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-1-0\r\n\
From: sipp <sip:sipp@127.0.0.1:5061>;tag=1\r\n\
To: bob <sip:bob@127.0.0.1:5070>\r\n{filler}\
Call-ID: 1-4242@127.0.0.1\r\n\
CSeq: 1 INVITE\r\n\
Contact: sip:sipp@127.0.0.1:5061\r\n\
Max-Forwards: 70\r\n\
Content-Length: 0\r\n\r\n"
    )
}

pub fn main(a: Args) -> io::Result<()> {
    let prog = sys::load(&program::call_id_program(a.shards), "steer_cost")
        .map_err(|e| io::Error::other(e.to_string()))?;
    println!("call_id_offset_bytes,min_ns,median_ns,max_ns");
    for pad in [0usize, 250, 650, 1200] {
        let m = message(pad);
        let at = m.find("Call-ID").unwrap_or(0);
        let mut ns = Vec::with_capacity(a.rounds);
        for _ in 0..a.rounds {
            ns.push(sys::test_run(&prog, m.as_bytes(), a.repeat)?.1);
        }
        ns.sort_unstable();
        println!("{at},{},{},{}", ns[0], ns[ns.len() / 2], ns[ns.len() - 1]);
    }
    Ok(())
}
