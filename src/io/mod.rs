//! Datagram I/O for the shards: sockets (`socket.rs`), the control
//! messages that carry a datagram's local address (`cmsg.rs`) and the
//! two backends. All `unsafe` of the crate's I/O lives under this module,
//! each block with its `// SAFETY:` note.
//!
//! Two backends behind one trait: `uring` (io_uring: multishot recvmsg over
//! a provided-buffer ring, sends queued as SQEs, one `io_uring_enter` per
//! loop) and `mmsg` (recvmmsg/sendmmsg), the portable fallback for
//! containers whose seccomp profile refuses io_uring. Which one runs is
//! chosen in exactly one place, [`crate::server`].

pub mod cmsg;
pub mod eventfd;
pub mod mmsg;
pub mod socket;
pub mod uring;

use std::io;
use std::net::SocketAddr;

/// Where a shard writes outgoing datagrams.
pub trait SendQueue {
    /// The next free send buffer, or None when every buffer is in flight.
    fn slot(&mut self) -> Option<&mut [u8]>;
    /// Queues the first `len` bytes of the buffer `slot` returned for `to`.
    fn commit(&mut self, len: usize, to: SocketAddr);
}

/// One received datagram as a backend hands it to the shard.
pub struct Datagram<'a> {
    /// The bytes (cut to the buffer when `truncated`).
    pub bytes: &'a [u8],
    /// The source, when the kernel gave one the backend could read.
    pub source: Option<SocketAddr>,
    /// The datagram was larger than the receive buffer.
    pub truncated: bool,
}

/// A shard's I/O.
pub trait Backend {
    /// The send side handed to the datagram handler.
    type Send: SendQueue;

    /// Waits up to the wake interval for traffic and calls `handle` for
    /// each datagram received, with the send queue to answer into.
    fn poll<F>(&mut self, handle: F) -> io::Result<()>
    where
        F: FnMut(Datagram<'_>, &mut Self::Send);

    /// The send queue, for answers produced outside `poll` (inbox mail).
    /// `poll` handles no more datagrams than the queue has free slots.
    fn send_queue(&mut self) -> &mut Self::Send;

    /// Pushes queued sends to the kernel; returns how many were refused.
    fn flush(&mut self) -> usize;

    /// The backend's name for banners and metrics.
    fn name(&self) -> &'static str;
}

/// Datagrams moved per system call. 32 is what quinn and aquatic settle on:
/// enough to amortise the syscall, small enough that one batch of 64 KiB
/// buffers (2 MiB per direction) stays cheap per shard.
pub const BATCH: usize = 32;

/// Bytes per receive buffer. SIP over UDP stays under the path MTU (RFC
/// 3261 §18.1.1 moves larger requests to TCP), so 16 KiB is generous; a
/// larger datagram is cut by the kernel, detected, and dropped as oversize.
/// Raising it costs BATCH (mmsg) or RING_BUFFERS (uring) times as much
/// memory per shard.
pub const RECV_SLOT: usize = 16_384;

/// Bytes per send buffer: a received datagram plus the lines a proxy adds
/// (Via, Record-Route, received/rport) with room to spare.
pub const SEND_SLOT: usize = RECV_SLOT + 1024;
