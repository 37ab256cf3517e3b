//! A ring of provided buffers for io_uring (Linux 5.19): memory the
//! kernel picks a buffer from for each completed receive, so that a
//! receive armed on many sockets holds no memory until data arrives. The
//! datagram socket's multishot `recvmsg` uses one; the connections'
//! multishot `recv` another.
//!
//! # Invariants
//! - The entries and the buffers are allocated once and never move; the
//!   owner keeps them alive until the ring that reads them is dropped.
//! - A buffer is given back only once its bytes have been handled: the
//!   kernel may write into it as soon as the tail is published.

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::io;
use std::mem::size_of;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::{types, IoUring};

/// Page-aligned memory for the ring's entries.
struct Entries {
    ptr: *mut types::BufRingEntry,
    layout: Layout,
}

impl Drop for Entries {
    fn drop(&mut self) {
        // SAFETY: allocated in `BufRing::new` with this layout.
        unsafe { dealloc(self.ptr.cast(), self.layout) };
    }
}

/// `count` buffers of `size` bytes and the ring that offers them.
pub struct BufRing {
    entries: Entries,
    bufs: Box<[u8]>,
    size: usize,
    count: u16,
    /// Buffers given back since the last publish.
    returned: u16,
    tail: u16,
}

// SAFETY: the entries' pointer is owned memory that only this value
// reaches; moving it to another thread moves the ownership with it.
unsafe impl Send for BufRing {}

impl BufRing {
    /// Allocates `count` (a power of two) buffers of `size` bytes, every
    /// one offered to the kernel once the ring is registered.
    pub fn new(count: u16, size: usize) -> io::Result<BufRing> {
        if !count.is_power_of_two() {
            return Err(io::Error::other("a buffer ring's size is a power of two"));
        }
        let layout =
            Layout::from_size_align(usize::from(count) * size_of::<types::BufRingEntry>(), 4096)
                .map_err(|_| io::Error::other("bad buffer ring layout"))?;
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { alloc_zeroed(layout) }.cast::<types::BufRingEntry>();
        if ptr.is_null() {
            return Err(io::Error::other("cannot allocate the buffer ring"));
        }
        let mut ring = BufRing {
            entries: Entries { ptr, layout },
            bufs: vec![0u8; usize::from(count) * size].into_boxed_slice(),
            size,
            count,
            returned: 0,
            tail: 0,
        };
        for bid in 0..count {
            ring.give_back(bid);
        }
        ring.publish();
        Ok(ring)
    }

    /// Registers the ring with `ring` as buffer group `group`.
    ///
    /// # Safety
    /// `self` must outlive every operation `ring` runs with this group:
    /// drop the ring first.
    pub unsafe fn register(&self, ring: &IoUring, group: u16) -> io::Result<()> {
        // SAFETY: the entries are page aligned and `count` long; the
        // caller keeps them alive for as long as the ring uses them.
        unsafe {
            ring.submitter().register_buf_ring_with_flags(
                self.entries.ptr as u64,
                self.count,
                group,
                0,
            )
        }
    }

    /// The first `len` bytes of buffer `bid` (empty for an id not ours).
    pub fn bytes(&self, bid: u16, len: usize) -> &[u8] {
        let start = usize::from(bid) * self.size;
        self.bufs
            .get(start..start + len.min(self.size))
            .unwrap_or_default()
    }

    /// Puts buffer `bid` at the ring's tail (offered again at the next
    /// [`BufRing::publish`]).
    pub fn give_back(&mut self, bid: u16) {
        if bid >= self.count {
            return;
        }
        let mask = self.count - 1;
        let idx = usize::from(self.tail.wrapping_add(self.returned) & mask);
        // SAFETY: idx < count, inside the entries.
        let entry = unsafe { &mut *self.entries.ptr.add(idx) };
        let start = usize::from(bid) * self.size;
        // The kernel writes here: derive the address from a unique borrow.
        entry.set_addr(self.bufs[start..].as_mut_ptr() as u64);
        entry.set_len(self.size as u32);
        entry.set_bid(bid);
        self.returned += 1;
    }

    /// Makes the buffers given back visible to the kernel.
    pub fn publish(&mut self) {
        if self.returned == 0 {
            return;
        }
        self.tail = self.tail.wrapping_add(self.returned);
        self.returned = 0;
        // SAFETY: the tail field lives in the first entry of our ring
        // memory; the kernel reads it, so it is written atomically with
        // release ordering after the entries.
        let tail = unsafe { &*types::BufRingEntry::tail(self.entries.ptr).cast::<AtomicU16>() };
        tail.store(self.tail, Ordering::Release);
    }
}
