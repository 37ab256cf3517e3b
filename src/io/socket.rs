//! UDP sockets for shards: `SO_REUSEPORT` so that every shard binds the same
//! address and the kernel spreads flows by 4-tuple hash, buffer sizes from
//! flags (with a warning when the kernel clamps them), and a receive
//! timeout so that a shard blocked in `recvmmsg` notices shutdown.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

/// How often a shard waiting for traffic wakes to check for shutdown.
pub const WAKE_INTERVAL: Duration = Duration::from_millis(100);

/// What one shard socket needs.
#[derive(Clone, Copy, Debug)]
pub struct SocketOptions {
    /// Requested SO_RCVBUF in bytes; None keeps the kernel default.
    pub recv_buffer: Option<usize>,
    /// Requested SO_SNDBUF in bytes; None keeps the kernel default.
    pub send_buffer: Option<usize>,
}

/// A bound socket and the warnings its setup produced (buffer clamps).
pub struct Bound {
    /// The socket, blocking, with a receive timeout of [`WAKE_INTERVAL`].
    pub socket: UdpSocket,
    /// Human-readable notes for the start-up banner.
    pub warnings: Vec<String>,
}

/// Binds a UDP socket to `addr` with `SO_REUSEPORT` set before bind.
pub fn bind_shard_socket(addr: SocketAddr, opts: &SocketOptions) -> io::Result<Bound> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_port(true)?;
    let mut warnings = Vec::new();
    if let Some(n) = opts.recv_buffer {
        socket.set_recv_buffer_size(n)?;
        // Linux reports twice the value it keeps for bookkeeping.
        let got = socket.recv_buffer_size()? / 2;
        if got < n {
            warnings.push(format!(
                "receive buffer clamped to {got} bytes (asked {n}); raise net.core.rmem_max"
            ));
        }
    }
    if let Some(n) = opts.send_buffer {
        socket.set_send_buffer_size(n)?;
        let got = socket.send_buffer_size()? / 2;
        if got < n {
            warnings.push(format!(
                "send buffer clamped to {got} bytes (asked {n}); raise net.core.wmem_max"
            ));
        }
    }
    socket.bind(&addr.into())?;
    socket.set_read_timeout(Some(WAKE_INTERVAL))?;
    Ok(Bound {
        socket: socket.into(),
        warnings,
    })
}
