//! An eventfd: the doorbell a shard sleeping in `poll`/`recvmmsg` or in
//! `io_uring_enter` waits on next to its socket, rung by other shards when
//! they put mail in its inbox.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// A non-blocking eventfd.
#[derive(Debug)]
pub struct EventFd(OwnedFd);

impl EventFd {
    /// A new eventfd with its counter at zero.
    pub fn new() -> io::Result<EventFd> {
        // SAFETY: eventfd takes no pointers; a non-negative result is a new
        // descriptor that we own from here on.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd was just returned by eventfd and is owned by no one else.
        Ok(EventFd(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// Adds one to the counter, waking a waiter. A failure can only be a
    /// counter at its maximum, when the waiter wakes anyway: ignored.
    pub fn ring(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to our eventfd.
        let _ = unsafe { libc::write(self.0.as_raw_fd(), (&one as *const u64).cast(), 8) };
    }

    /// The descriptor, for a backend to wait on.
    pub fn fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

/// Reads (and so clears) an eventfd's counter; returns it, 0 when it was
/// already clear.
pub fn drain(fd: RawFd) -> u64 {
    let mut n: u64 = 0;
    // SAFETY: reads at most 8 bytes into a live u64; the fd is
    // non-blocking, so a clear counter returns EAGAIN at once.
    let r = unsafe { libc::read(fd, (&mut n as *mut u64).cast(), 8) };
    if r == 8 {
        n
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rings_add_up_and_drain_clears() {
        let e = EventFd::new().unwrap();
        assert_eq!(drain(e.fd()), 0);
        e.ring();
        e.ring();
        assert_eq!(drain(e.fd()), 2);
        assert_eq!(drain(e.fd()), 0);
    }
}
