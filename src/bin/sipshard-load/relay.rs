//! `relay`: forwards every datagram it receives to `--to`, doing no SIP
//! work at all: the floor a proxy's CPU cost per message is compared with.

use std::net::SocketAddr;
use std::time::Instant;

use sipshard::io::mmsg::Mmsg;
use sipshard::io::Backend;
use sipshard::transport::Dest;

use crate::net::bind;

#[derive(clap::Args)]
pub struct Args {
    /// Where to listen.
    #[arg(long)]
    listen: SocketAddr,
    /// Where to send everything.
    #[arg(long)]
    to: SocketAddr,
    /// Stop after this many seconds.
    #[arg(long, default_value_t = 3600.0)]
    duration: f64,
}

pub fn main(
    Args {
        listen,
        to,
        duration,
    }: Args,
) -> std::io::Result<()> {
    let mut io = Mmsg::new(bind(listen)?);
    eprintln!("relay listening on {} -> {to}", io.local_addr()?);
    let start = Instant::now();
    while start.elapsed().as_secs_f64() < duration {
        io.poll(|d, send| {
            if let Some(slot) = send.slot() {
                slot[..d.bytes.len()].copy_from_slice(d.bytes);
                send.commit(d.bytes.len(), Dest::udp(to));
            }
        })?;
        io.flush();
    }
    Ok(())
}
