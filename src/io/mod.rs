//! Datagram I/O for the shards: sockets (`socket.rs`) and the batched
//! `recvmmsg`/`sendmmsg` backend (`mmsg.rs`). All `unsafe` of the crate's
//! I/O lives under this module, each block with its `// SAFETY:` note.
//!
//! The io_uring backend of ARCHITECTURE.md is not built yet (issue #3);
//! `mmsg` is the portable one and the reference the other will be tested
//! against.

pub mod mmsg;
pub mod socket;

/// Datagrams moved per system call. 32 is what quinn and aquatic settle on:
/// enough to amortise the syscall, small enough that one batch of 64 KiB
/// buffers (2 MiB per direction) stays cheap per shard.
pub const BATCH: usize = 32;

/// Bytes per receive buffer: the largest UDP payload, so no datagram is
/// ever cut short (a cut one is detected and dropped).
pub const RECV_SLOT: usize = 65_536;

/// Bytes per send buffer: a received datagram plus the lines a proxy adds
/// (Via, Record-Route, received/rport) with room to spare.
pub const SEND_SLOT: usize = RECV_SLOT + 1024;
