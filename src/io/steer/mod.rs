//! `--steer call-id`: the kernel picks a listen address's shard socket
//! from a hash of the datagram's Call-ID, so every message of a dialog,
//! from either side, reaches the same shard in arrival order, while one
//! peer's dialogs spread over every shard.
//!
//! The program ([`program`]) is assembled here in Rust ([`asm`]) and
//! loaded with raw `bpf(2)` ([`sys`]): `cargo build` needs nothing but
//! stable Rust. Where the kernel refuses it (no CAP_BPF, a seccomp
//! profile, a kernel before 5.3), the caller falls back to the kernel's
//! 4-tuple hash (`flow`) and says so.

pub mod asm;
pub mod program;
pub mod sys;

use std::fmt;
use std::os::fd::{AsRawFd, OwnedFd};

/// Why Call-ID steering is not in force.
#[derive(Debug)]
pub enum Refused {
    /// The kernel would not load the program.
    Load(sys::LoadError),
    /// The kernel would not attach it to the socket group.
    Attach(std::io::Error),
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refused::Load(e) => write!(f, "eBPF program not loaded: {e}"),
            Refused::Attach(e) => write!(f, "SO_ATTACH_REUSEPORT_EBPF refused: {e}"),
        }
    }
}

/// The Call-ID program for groups of `shards` sockets, loaded (and so
/// verified: about 0.9 s of system time on the machine of perf/RESULTS.md,
/// so it is loaded once and attached to every group).
pub fn load_call_id(shards: u32) -> Result<OwnedFd, Refused> {
    sys::load(&program::call_id_program(shards), "sipshard_steer").map_err(Refused::Load)
}

/// Steers the reuseport group of `socket` (bound with `SO_REUSEPORT`,
/// with its sockets bound in shard order) with `prog`. The group keeps
/// the program after its descriptor is closed.
pub fn attach<S: AsRawFd>(socket: &S, prog: &OwnedFd) -> Result<(), Refused> {
    sys::attach_reuseport(socket, prog).map_err(Refused::Attach)
}

/// [`load_call_id`] then [`attach`], for one group.
pub fn attach_call_id<S: AsRawFd>(socket: &S, shards: u32) -> Result<(), Refused> {
    attach(socket, &load_call_id(shards)?)
}

/// Gives the choice of socket back to the kernel's 4-tuple hash for the
/// group of `socket`. Used when another address's group refused the
/// program; an error (no program, a kernel before 5.8) leaves nothing to
/// undo that matters, so it is ignored.
pub fn detach<S: AsRawFd>(socket: &S) {
    let _ = sys::detach_reuseport(socket);
}

#[cfg(test)]
mod tests;
