//! The io_uring backend: one multishot `recvmsg` per socket over a ring of
//! provided buffers (the kernel picks a buffer per datagram and keeps the
//! receive armed), sends queued as `sendmsg` SQEs (hard-linked in order;
//! only the last of a batch completes on success), and one
//! `io_uring_enter` per loop iteration that both submits the sends and
//! waits for completions (with a timeout, so shutdown is noticed); none
//! when completions are already posted and nothing is to be submitted.
//!
//! As with mmsg, a datagram in carries the local address it was sent to
//! (the multishot receive's `msghdr` asks for [`RECV_SPACE`] bytes of
//! control messages, which the kernel writes into each provided buffer
//! between the source address and the payload) and a datagram out may
//! name its source address (a control message in its send slot).
//!
//! # Invariants
//! - The provided-buffer ring, the receive buffers, the `msghdr` of the
//!   multishot receive and every send slot (buffer, `iovec`, `msghdr`,
//!   socket address, control buffer) are allocated once, never move, and
//!   outlive the ring's use of them: the ring is dropped (cancelling
//!   everything) before them.
//! - A receive buffer is given back to the ring only after its datagram has
//!   been handled; a send slot is reused only after the completion of the
//!   last send of its linked chain (which runs after it).
//!
//! Needs Linux 6.0 (multishot recvmsg) and a seccomp profile that allows
//! io_uring; [`Uring::new`] fails otherwise and the server falls back to
//! mmsg under `--io auto`.

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::io;
use std::mem::{size_of, zeroed};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::ptr;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::{cqueue, opcode, squeue, types, IoUring};

use super::cmsg::{self, Space, RECV_SPACE, SEND_SPACE};
use super::mmsg::{from_storage, to_storage};
use super::socket::WAKE_INTERVAL;
use super::{Backend, Datagram, SendQueue, RECV_SLOT, SEND_SLOT};
use crate::transport::Dest;

/// Receive buffers in the provided ring (a power of two, as the kernel
/// requires). 256 x 16 KiB = 4 MiB per shard; fewer risks ENOBUFS (the
/// multishot receive stops and is re-armed) under bursts.
pub const RING_BUFFERS: u16 = 256;

/// Send slots a shard can have in flight at once.
pub const SEND_SLOTS: usize = 128;

/// Submission queue entries: room for every send slot, the receive, and
/// re-arms.
const SQ_ENTRIES: u32 = 512;

const BUF_GROUP: u16 = 7;
/// Marks the tag of a send that is not the last of its linked chain: it
/// completes only when it fails (`CQE_SKIP_SUCCESS`); the chain's slots
/// are freed by the completion of its last send.
const CHAIN_MID: u64 = 1 << 32;
/// No previous send in the chain.
const NO_PREV: u16 = u16::MAX;
const RECV_TAG: u64 = u64::MAX;
/// The read of the wake eventfd (and, minus one, its cancellation).
const WAKE_TAG: u64 = u64::MAX - 2;
/// Room before the payload in each receive buffer for the kernel's
/// `io_uring_recvmsg_out` header, the source address and the control
/// messages.
const RECV_HEADROOM: usize = 16 + size_of::<libc::sockaddr_storage>() + RECV_SPACE;
const RECV_BUF: usize = RECV_HEADROOM + RECV_SLOT;

/// Page-aligned memory for the provided-buffer ring's entries.
struct RingMem {
    ptr: *mut types::BufRingEntry,
    layout: Layout,
}

impl RingMem {
    fn new(entries: u16) -> io::Result<Self> {
        let layout = Layout::from_size_align(
            usize::from(entries) * size_of::<types::BufRingEntry>(),
            4096,
        )
        .map_err(|_| io::Error::other("bad buffer ring layout"))?;
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { alloc_zeroed(layout) }.cast::<types::BufRingEntry>();
        if ptr.is_null() {
            return Err(io::Error::other("cannot allocate the buffer ring"));
        }
        Ok(RingMem { ptr, layout })
    }
}

impl Drop for RingMem {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout.
        unsafe { dealloc(self.ptr.cast(), self.layout) };
    }
}

/// One outgoing datagram's memory, at a fixed address while in flight.
struct SendSlot {
    buf: Box<[u8]>,
    iov: libc::iovec,
    name: libc::sockaddr_storage,
    /// The source address control message, when one is sent.
    ctrl: Space<SEND_SPACE>,
    hdr: libc::msghdr,
}

/// The send side handed to the shard's handler: free slots, and the SQEs
/// to push at the next submit.
pub struct SendSlots {
    slots: Box<[SendSlot]>,
    /// Per slot in flight, the slot sent just before it in the same
    /// linked chain ([`NO_PREV`] for the first).
    prev: Box<[u16]>,
    free: Vec<u16>,
    /// Slots committed since the last submit, to become SQEs.
    ready: Vec<u16>,
    /// Commits refused before the kernel (destinations not carried here).
    refused: usize,
    /// The socket's address: a source address equal to it needs no
    /// control message.
    bound: SocketAddr,
}

impl SendSlots {
    /// A send's completion: the end of a chain frees every slot of it; a
    /// send in the middle (which completes only on failure) frees none.
    fn complete(&mut self, tag: u64) {
        if tag & CHAIN_MID != 0 {
            return;
        }
        let Ok(mut i) = u16::try_from(tag) else {
            return;
        };
        while usize::from(i) < self.prev.len() {
            self.free.push(i);
            i = std::mem::replace(&mut self.prev[usize::from(i)], NO_PREV);
        }
    }
}

impl SendQueue for SendSlots {
    fn slot(&mut self) -> Option<&mut [u8]> {
        let i = *self.free.last()?;
        Some(&mut self.slots[usize::from(i)].buf[..])
    }

    fn commit(&mut self, len: usize, dest: Dest) {
        let Dest::Udp { peer, from } = dest else {
            self.refused += 1;
            return;
        };
        let Some(i) = self.free.pop() else { return };
        let s = &mut self.slots[usize::from(i)];
        let namelen = to_storage(&peer, &mut s.name);
        s.iov.iov_base = s.buf.as_mut_ptr().cast();
        s.iov.iov_len = len.min(SEND_SLOT);
        s.hdr.msg_name = ptr::addr_of_mut!(s.name).cast();
        s.hdr.msg_namelen = namelen;
        s.hdr.msg_iov = ptr::addr_of_mut!(s.iov);
        s.hdr.msg_iovlen = 1;
        let ctrl_len = match cmsg::needed_source(from, self.bound) {
            Some(ip) => cmsg::encode_source(ip, &mut s.ctrl.0),
            None => 0,
        };
        if ctrl_len > 0 {
            s.hdr.msg_control = s.ctrl.0.as_mut_ptr().cast();
            s.hdr.msg_controllen = ctrl_len as _;
        } else {
            s.hdr.msg_control = ptr::null_mut();
            s.hdr.msg_controllen = 0;
        }
        self.ready.push(i);
    }
}

/// A shard's socket driven through io_uring.
pub struct Uring {
    // Field order is drop order: the ring goes first, cancelling every
    // operation, before the memory they point into.
    ring: IoUring,
    socket: UdpSocket,
    /// The socket's address: the local address of a datagram that came
    /// with no control message.
    bound: SocketAddr,
    ring_mem: RingMem,
    bufs: Box<[u8]>,
    recv_hdr: Box<libc::msghdr>,
    send: SendSlots,
    recv_armed: bool,
    /// Buffers handled and waiting to be handed back to the kernel.
    returned: u16,
    tail: u16,
    cqes: Vec<(u64, i32, u32)>,
    /// Received datagrams not yet handled: (buffer id, length).
    backlog: std::collections::VecDeque<(u16, usize)>,
    failed_sends: usize,
    /// Send chains queued in the submission queue and not yet submitted:
    /// each posts one completion (its last send's), which the next wait
    /// must not mistake for traffic.
    chains_unsubmitted: usize,
    /// An eventfd whose read completes when another shard has mail for
    /// this one, ending the wait early.
    wake: Option<RawFd>,
    /// Where that read puts the counter (must not move while armed).
    wake_buf: Box<u64>,
    wake_armed: bool,
}

impl Uring {
    /// Sets up the ring for `socket`; fails when the kernel or a seccomp
    /// profile refuses io_uring or one of the operations used.
    pub fn new(socket: UdpSocket) -> io::Result<Self> {
        Uring::with_wake(socket, None)
    }

    /// As [`Uring::new`], also waking when the eventfd `wake` is written.
    pub fn with_wake(socket: UdpSocket, wake: Option<RawFd>) -> io::Result<Self> {
        let ring = IoUring::builder().build(SQ_ENTRIES)?;
        let mut probe = io_uring::Probe::new();
        ring.submitter().register_probe(&mut probe)?;
        if !probe.is_supported(opcode::RecvMsgMulti::CODE)
            || !probe.is_supported(opcode::SendMsg::CODE)
        {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "io_uring lacks recvmsg/sendmsg",
            ));
        }
        let ring_mem = RingMem::new(RING_BUFFERS)?;
        let bufs = vec![0u8; usize::from(RING_BUFFERS) * RECV_BUF].into_boxed_slice();
        // SAFETY: the ring memory is page aligned, RING_BUFFERS entries
        // long, and lives as long as `self` (dropped after the ring).
        unsafe {
            ring.submitter().register_buf_ring_with_flags(
                ring_mem.ptr as u64,
                RING_BUFFERS,
                BUF_GROUP,
                0,
            )?;
        }
        // SAFETY: all-zero is a valid msghdr.
        let mut recv_hdr: Box<libc::msghdr> = Box::new(unsafe { zeroed() });
        recv_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        // Multishot: the kernel reads only the lengths and writes the
        // control messages into each provided buffer.
        recv_hdr.msg_controllen = RECV_SPACE as _;
        let slots: Box<[SendSlot]> = (0..SEND_SLOTS)
            .map(|_| SendSlot {
                buf: vec![0u8; SEND_SLOT].into_boxed_slice(),
                // SAFETY: all-zero is valid for these C structs.
                iov: unsafe { zeroed() },
                // SAFETY: as above.
                name: unsafe { zeroed() },
                ctrl: Space::new(),
                // SAFETY: as above.
                hdr: unsafe { zeroed() },
            })
            .collect();
        let bound = socket.local_addr()?;
        let mut u = Uring {
            ring,
            socket,
            bound,
            ring_mem,
            bufs,
            recv_hdr,
            send: SendSlots {
                slots,
                prev: vec![NO_PREV; SEND_SLOTS].into_boxed_slice(),
                free: (0..SEND_SLOTS as u16).rev().collect(),
                ready: Vec::with_capacity(SEND_SLOTS),
                refused: 0,
                bound,
            },
            recv_armed: false,
            returned: 0,
            tail: 0,
            // The CQ is twice the SQ; no completion batch is larger.
            cqes: Vec::with_capacity(SQ_ENTRIES as usize * 2),
            backlog: std::collections::VecDeque::with_capacity(usize::from(RING_BUFFERS)),
            failed_sends: 0,
            chains_unsubmitted: 0,
            wake,
            wake_buf: Box::new(0),
            wake_armed: false,
        };
        for bid in 0..RING_BUFFERS {
            u.give_back(bid);
        }
        u.publish_tail();
        u.arm_recv()?;
        Ok(u)
    }

    /// Puts buffer `bid` at the ring's tail (published by `publish_tail`).
    fn give_back(&mut self, bid: u16) {
        let mask = RING_BUFFERS - 1;
        let idx = usize::from(self.tail.wrapping_add(self.returned) & mask);
        // SAFETY: idx < RING_BUFFERS, inside the ring memory.
        let entry = unsafe { &mut *self.ring_mem.ptr.add(idx) };
        let start = usize::from(bid) * RECV_BUF;
        // The kernel writes here: derive the address from a unique borrow.
        entry.set_addr(self.bufs[start..].as_mut_ptr() as u64);
        entry.set_len(RECV_BUF as u32);
        entry.set_bid(bid);
        self.returned += 1;
    }

    /// Makes the buffers given back visible to the kernel.
    fn publish_tail(&mut self) {
        if self.returned == 0 {
            return;
        }
        self.tail = self.tail.wrapping_add(self.returned);
        self.returned = 0;
        // SAFETY: the tail field lives in the first entry of our ring
        // memory; the kernel reads it, so it is written atomically with
        // release ordering after the entries.
        let tail = unsafe { &*types::BufRingEntry::tail(self.ring_mem.ptr).cast::<AtomicU16>() };
        tail.store(self.tail, Ordering::Release);
    }

    fn arm_recv(&mut self) -> io::Result<()> {
        let sqe = opcode::RecvMsgMulti::new(
            types::Fd(self.socket.as_raw_fd()),
            ptr::addr_of!(*self.recv_hdr),
            BUF_GROUP,
        )
        .build()
        .user_data(RECV_TAG);
        self.push(&sqe)?;
        self.recv_armed = true;
        Ok(())
    }

    /// Reads the wake eventfd: the completion ends the next wait.
    fn arm_wake(&mut self) -> io::Result<()> {
        let Some(fd) = self.wake else {
            return Ok(());
        };
        let buf: *mut u64 = &mut *self.wake_buf;
        let sqe = opcode::Read::new(types::Fd(fd), buf.cast(), 8)
            .build()
            .user_data(WAKE_TAG);
        self.push(&sqe)?;
        self.wake_armed = true;
        Ok(())
    }

    /// Pushes an SQE, submitting first when the queue is full.
    fn push(&mut self, sqe: &squeue::Entry) -> io::Result<()> {
        // SAFETY: every SQE built here points into memory owned by `self`
        // that stays put until its completion (see the module invariants).
        if unsafe { self.ring.submission().push(sqe) }.is_err() {
            self.ring.submit()?;
            // SAFETY: as above.
            unsafe { self.ring.submission().push(sqe) }
                .map_err(|_| io::Error::other("submission queue full"))?;
        }
        Ok(())
    }

    /// Turns committed send slots into SQEs, in the order they were
    /// committed, hard-linked so that the kernel runs each after the one
    /// before even when one has to wait for socket space (unlinked, a
    /// parked send can be overtaken and a 200 leave before its 180, which
    /// a UAC such as SIPp fails). A hard link goes on after a failure.
    fn queue_sends(&mut self) -> io::Result<()> {
        let n = self.send.ready.len();
        for k in 0..n {
            let i = self.send.ready[k];
            let hdr = ptr::addr_of!(self.send.slots[usize::from(i)].hdr);
            self.send.prev[usize::from(i)] = if k > 0 {
                self.send.ready[k - 1]
            } else {
                NO_PREV
            };
            // All but the last complete only on failure: the last one's
            // completion means the whole chain is done (hard links run
            // in order), and frees every slot of it.
            let (flags, tag) = if k + 1 < n {
                (
                    squeue::Flags::IO_HARDLINK | squeue::Flags::SKIP_SUCCESS,
                    CHAIN_MID | u64::from(i),
                )
            } else {
                (squeue::Flags::empty(), u64::from(i))
            };
            let sqe = opcode::SendMsg::new(types::Fd(self.socket.as_raw_fd()), hdr)
                .build()
                .flags(flags)
                .user_data(tag);
            if let Err(e) = self.push(&sqe) {
                self.send.ready.drain(..k);
                return Err(e);
            }
        }
        self.send.ready.clear();
        if n > 0 {
            self.chains_unsubmitted += 1;
        }
        Ok(())
    }

    /// The socket's local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }
}

impl Uring {
    /// Stops the multishot receive and waits (at most about a second) for
    /// every operation in flight to complete, so that no buffer the kernel
    /// may still write or read is freed under it.
    fn quiesce(&mut self) {
        let _ = self.queue_sends();
        if self.recv_armed {
            let cancel = opcode::AsyncCancel::new(RECV_TAG)
                .build()
                .user_data(RECV_TAG - 1);
            let _ = self.push(&cancel);
        }
        if self.wake_armed {
            let cancel = opcode::AsyncCancel::new(WAKE_TAG)
                .build()
                .user_data(WAKE_TAG - 1);
            let _ = self.push(&cancel);
        }
        let ts = types::Timespec::new().nsec(10_000_000);
        for _ in 0..100 {
            if !self.recv_armed && !self.wake_armed && self.send.free.len() == SEND_SLOTS {
                return;
            }
            let args = types::SubmitArgs::new().timespec(&ts);
            let _ = self.ring.submitter().submit_with_args(1, &args);
            for c in self.ring.completion() {
                match c.user_data() {
                    WAKE_TAG => self.wake_armed = false,
                    RECV_TAG => {
                        if !cqueue::more(c.flags()) {
                            self.recv_armed = false;
                        }
                    }
                    tag => self.send.complete(tag),
                }
            }
        }
    }
}

impl Drop for Uring {
    fn drop(&mut self) {
        self.quiesce();
    }
}

impl Backend for Uring {
    type Send = SendSlots;

    fn poll<F>(&mut self, mut handle: F) -> io::Result<()>
    where
        F: FnMut(Datagram<'_>, &mut SendSlots),
    {
        if !self.recv_armed {
            self.arm_recv()?;
        }
        if self.wake.is_some() && !self.wake_armed {
            self.arm_wake()?;
        }
        self.queue_sends()?;
        // Completions already posted (those of the sends the last flush
        // submitted) and nothing to submit: take them without entering
        // the kernel. Otherwise wait for a completion when nothing is left
        // from last time, or when every send slot is in flight (nothing
        // could be handled).
        let posted = !self.ring.completion().is_empty();
        let to_submit = !self.ring.submission().is_empty();
        if !posted && (self.backlog.is_empty() || self.send.free.is_empty()) {
            // One entry submits the last batch's sends and waits for what
            // comes next: their chains' completions, plus one more (a
            // datagram, the doorbell, a failed send) or the timeout.
            let want = 1 + self.chains_unsubmitted;
            self.chains_unsubmitted = 0;
            let ts = types::Timespec::from(WAKE_INTERVAL);
            let args = types::SubmitArgs::new().timespec(&ts);
            match self.ring.submitter().submit_with_args(want, &args) {
                Ok(_) => {}
                Err(e)
                    if e.raw_os_error() == Some(libc::ETIME)
                        || e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        } else if to_submit || !posted {
            self.chains_unsubmitted = 0;
            self.ring.submit()?;
        }
        // Take every completion: finished sends free their slots now;
        // received datagrams join the backlog, each holding its buffer
        // until it is handled. (The CQ holds at most `cqes`' capacity.)
        self.cqes.clear();
        self.cqes.extend(
            self.ring
                .completion()
                .map(|c| (c.user_data(), c.result(), c.flags())),
        );
        for k in 0..self.cqes.len() {
            let (tag, result, flags) = self.cqes[k];
            if tag == WAKE_TAG {
                self.wake_armed = false;
                continue;
            }
            if tag != RECV_TAG {
                if result < 0 {
                    self.failed_sends += 1;
                }
                self.send.complete(tag);
                continue;
            }
            if !cqueue::more(flags) {
                // The multishot receive ended (ENOBUFS when every buffer
                // is held): re-armed on the next loop.
                self.recv_armed = false;
            }
            match cqueue::buffer_select(flags) {
                Some(bid) if result >= 0 => self.backlog.push_back((bid, result as usize)),
                Some(bid) => self.give_back(bid),
                // ENOBUFS: every buffer is held; re-armed next loop.
                None if result == -libc::ENOBUFS || result >= 0 => {}
                // Anything else (EINVAL on a kernel without multishot,
                // EBADF...) would fail again at once: report it.
                None => return Err(io::Error::from_raw_os_error(-result)),
            }
        }
        // Handle as many datagrams as there are free send slots, oldest
        // first, so that no answer or forward is dropped for want of a
        // slot; the rest wait (and, holding buffers, slow the receive).
        let n = self.backlog.len().min(self.send.free.len());
        for _ in 0..n {
            let Some((bid, len)) = self.backlog.pop_front() else {
                break;
            };
            let start = usize::from(bid) * RECV_BUF;
            let buf = &self.bufs[start..start + len.min(RECV_BUF)];
            if let Ok(out) = types::RecvMsgOut::parse(buf, &self.recv_hdr) {
                let source = name_to_addr(out.name_data());
                let local = cmsg::local_addr(out.control_data(), self.bound);
                handle(
                    Datagram {
                        bytes: out.payload_data(),
                        source,
                        local,
                        truncated: out.is_payload_truncated(),
                    },
                    &mut self.send,
                );
            }
            self.give_back(bid);
        }
        self.publish_tail();
        Ok(())
    }

    fn flush(&mut self) -> usize {
        // Nothing new: no system call (the next poll submits anything else).
        if !self.send.ready.is_empty() && self.queue_sends().is_ok() {
            self.chains_unsubmitted = 0;
            let _ = self.ring.submit();
        }
        std::mem::take(&mut self.failed_sends) + std::mem::take(&mut self.send.refused)
    }

    fn flush_before_poll(&mut self) -> usize {
        // Queued, not submitted: the next poll's wait submits them.
        let _ = self.queue_sends();
        std::mem::take(&mut self.failed_sends) + std::mem::take(&mut self.send.refused)
    }

    fn send_queue(&mut self) -> &mut SendSlots {
        &mut self.send
    }

    fn name(&self) -> &'static str {
        "uring"
    }
}

/// Checks that io_uring with everything this backend uses works here, on a
/// throwaway loopback socket: `--io auto` decides with it, once, at start.
pub fn probe() -> io::Result<()> {
    let socket = UdpSocket::bind("127.0.0.1:0")?;
    let to = socket.local_addr()?;
    let mut u = Uring::new(socket)?;
    // A real round trip: a kernel can know the opcode and still lack
    // multishot receive (before 6.0), which only shows when used.
    UdpSocket::bind("127.0.0.1:0")?.send_to(b"probe", to)?;
    let mut got = false;
    for _ in 0..10 {
        u.poll(|d, _| got |= d.bytes == b"probe")?;
        if got {
            return Ok(());
        }
    }
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "io_uring multishot receive got nothing",
    ))
}

/// Reads the source address the kernel wrote before the payload.
fn name_to_addr(name: &[u8]) -> Option<SocketAddr> {
    // SAFETY: all-zero is a valid sockaddr_storage.
    let mut s: libc::sockaddr_storage = unsafe { zeroed() };
    let n = name.len().min(size_of::<libc::sockaddr_storage>());
    // SAFETY: copies at most size_of::<sockaddr_storage>() bytes into it.
    unsafe { ptr::copy_nonoverlapping(name.as_ptr(), ptr::addr_of_mut!(s).cast::<u8>(), n) };
    from_storage(&s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::testing;

    /// Runs `f` unless io_uring is refused here (old kernel, seccomp).
    fn unless_refused(f: impl FnOnce()) {
        match probe() {
            Ok(()) => f(),
            Err(e) => eprintln!("skipping: io_uring is refused here: {e}"),
        }
    }

    fn wrap(s: UdpSocket) -> Uring {
        Uring::new(s).unwrap()
    }

    #[test]
    fn a_wildcard_socket_tells_127_0_0_1_from_127_0_0_2() {
        unless_refused(|| {
            testing::answers_leave_from_where_requests_came(
                testing::shard_socket("0.0.0.0:0"),
                "127.0.0.1:0",
                &["127.0.0.1", "127.0.0.2"],
                wrap,
            )
        });
    }

    #[test]
    fn a_wildcard_ipv6_socket_reports_and_answers_from_loopback() {
        if !testing::have_ipv6_loopback() {
            eprintln!("skipping: no IPv6 loopback here");
            return;
        }
        unless_refused(|| {
            testing::answers_leave_from_where_requests_came(
                testing::shard_socket("[::]:0"),
                "[::1]:0",
                &["::1"],
                wrap,
            )
        });
    }

    #[test]
    fn a_dual_stack_socket_reports_ipv4_v4_mapped() {
        if !testing::have_ipv6_loopback() {
            eprintln!("skipping: no IPv6 here");
            return;
        }
        unless_refused(|| {
            testing::answers_leave_from_where_requests_came(
                testing::dual_stack_socket(),
                "127.0.0.1:0",
                &["127.0.0.1", "127.0.0.2"],
                wrap,
            )
        });
    }

    #[test]
    fn a_connection_and_a_foreign_source_are_refused_and_counted() {
        unless_refused(|| testing::refusals_are_counted(wrap));
    }
}
