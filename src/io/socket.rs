//! UDP sockets for shards: `SO_REUSEPORT` so that every shard binds the same
//! address and the kernel spreads flows by 4-tuple hash, buffer sizes from
//! flags (with a warning when the kernel clamps them), a receive timeout
//! so that a shard blocked in `recvmmsg` notices shutdown, and
//! `IP_PKTINFO`/`IPV6_RECVPKTINFO` so that each datagram says which of our
//! addresses it came to (see `cmsg.rs`).

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsFd, AsRawFd};
use std::time::Duration;

use socket2::{Domain, Protocol, SockRef, Socket, Type};

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
    enable_pktinfo(&socket)?;
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

/// Asks the kernel to report with each datagram the address it was sent to
/// (`IP_PKTINFO` on an IPv4 socket, `IPV6_RECVPKTINFO` on an IPv6 one, and
/// both on a dual-stack IPv6 socket, whose IPv4 traffic gets only the
/// former). Sending with a pktinfo message needs no option. Works before
/// or after bind.
pub fn enable_pktinfo<S: AsFd>(socket: &S) -> io::Result<()> {
    let socket = SockRef::from(socket);
    let fd = socket.as_raw_fd();
    if socket.domain()? == Domain::IPV4 {
        return set_flag(fd, libc::IPPROTO_IP, libc::IP_PKTINFO);
    }
    set_flag(fd, libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO)?;
    if !socket.only_v6()? {
        set_flag(fd, libc::IPPROTO_IP, libc::IP_PKTINFO)?;
    }
    Ok(())
}

/// Sets the boolean socket option `level`/`name` on `fd`.
fn set_flag(fd: std::os::fd::RawFd, level: libc::c_int, name: libc::c_int) -> io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: the value pointer and length describe `on`, a live c_int; the
    // kernel only reads it.
    let r = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            std::ptr::addr_of!(on).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
