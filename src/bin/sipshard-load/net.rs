//! Sockets: binding with large buffers, and waiting for input on several.

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use sipshard::io::mmsg::Mmsg;
use sipshard::io::Backend;

/// A UDP socket on `addr` with 8 MB receive and send buffers.
pub fn bind(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    let b = sipshard::io::socket::bind_shard_socket(
        addr,
        &sipshard::io::socket::SocketOptions {
            recv_buffer: Some(8 << 20),
            send_buffer: Some(8 << 20),
        },
    )?;
    Ok(b.socket)
}

/// `n` sockets on kernel-chosen ports of 127.0.0.1.
pub fn bind_loopback(n: usize) -> std::io::Result<Vec<UdpSocket>> {
    (0..n)
        .map(|_| bind(SocketAddr::from(([127, 0, 0, 1], 0))))
        .collect()
}

/// `pollfd`s for a set of descriptors, waiting for input.
pub fn pollfds(fds: impl IntoIterator<Item = RawFd>) -> Vec<libc::pollfd> {
    fds.into_iter()
        .map(|fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect()
}

/// Waits up to `timeout_ms` for input on `fds`; false on timeout.
pub fn wait_input(fds: &mut [libc::pollfd], timeout_ms: i32) -> bool {
    // SAFETY: fds is a valid array of pollfd of the given length.
    let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
    n > 0
}

/// Receives on `ios` until `stop` is set, calling `on(datagram, now)` for
/// every datagram (`now`: microseconds since `start`, per batch). One
/// batch per readiness: a second recvmmsg on an emptied socket would block
/// for its timeout.
pub fn receive_until(
    stop: &AtomicBool,
    ios: &mut [Mmsg],
    start: Instant,
    mut on: impl FnMut(&[u8], u64),
) {
    let mut fds = pollfds(ios.iter().map(|io| io.as_raw_fd()));
    while !stop.load(Ordering::Relaxed) {
        if !wait_input(&mut fds, 50) {
            continue;
        }
        for (i, f) in fds.iter_mut().enumerate() {
            if f.revents & libc::POLLIN == 0 {
                continue;
            }
            f.revents = 0;
            let now = start.elapsed().as_micros() as u64;
            let _ = ios[i].poll(|d, _| on(d.bytes, now));
        }
    }
}
