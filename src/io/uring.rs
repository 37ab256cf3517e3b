//! The io_uring backend: one multishot `recvmsg` per socket over a ring of
//! provided buffers (the kernel picks a buffer per datagram and keeps the
//! receive armed), sends queued as `send`/`sendmsg` SQEs with
//! `MSG_DONTWAIT` (tried in order as they are submitted, never parked), and
//! one `io_uring_enter` per loop iteration that both submits the sends and
//! waits for completions (with a timeout, so shutdown is noticed); none
//! when completions are already posted and nothing is to be submitted.
//!
//! The ring is set up with `DEFER_TASKRUN` where the kernel has it (6.1):
//! a datagram's arrival then only notes that the receive can run, and the
//! shard's next wait runs it for every datagram that arrived meanwhile,
//! instead of the kernel interrupting the shard to run it (an IPI per
//! datagram when the shard is busy on its CPU). The socket is a
//! registered file (no file lookup per operation).
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
//!   been handled; a send slot is reused only after its send's
//!   completion.
//!
//! Needs Linux 6.0 (multishot recvmsg) and a seccomp profile that allows
//! io_uring; [`Uring::new`] fails otherwise and the server falls back to
//! mmsg under `--io auto`.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::ptr;
use std::time::Duration;

use io_uring::{cqueue, opcode, squeue, types, IoUring};

use super::bufring::BufRing;
use super::cmsg::{self, Space, RECV_SPACE, SEND_SPACE};
use super::mmsg::{from_storage, to_storage};
use super::socket::WAKE_INTERVAL;
use super::stream::{is_stream_tag, RingOp, Streams, STREAM_GROUP};
use super::{Backend, Datagram, SendQueue, MOST_SENDS_PER_MESSAGE, RECV_SLOT, SEND_SLOT};
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
/// The socket's index among the ring's registered files.
const SOCKET: types::Fixed = types::Fixed(0);
const RECV_TAG: u64 = u64::MAX;
/// The read of the wake eventfd (and, minus one, its cancellation).
const WAKE_TAG: u64 = u64::MAX - 2;
/// The poll of the shard's connections' epoll set (its cancel: one less).
const STREAMS_TAG: u64 = u64::MAX - 4;
/// Room before the payload in each receive buffer for the kernel's
/// `io_uring_recvmsg_out` header, the source address and the control
/// messages.
const RECV_HEADROOM: usize = 16 + size_of::<libc::sockaddr_storage>() + RECV_SPACE;
const RECV_BUF: usize = RECV_HEADROOM + RECV_SLOT;

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
    /// A send's completion frees its slot.
    fn complete(&mut self, tag: u64) {
        if let Ok(i) = u16::try_from(tag) {
            if usize::from(i) < self.slots.len() {
                self.free.push(i);
            }
        }
    }
}

impl SendQueue for SendSlots {
    fn slot(&mut self) -> Option<&mut [u8]> {
        let i = *self.free.last()?;
        Some(&mut self.slots[usize::from(i)].buf[..])
    }

    fn free(&self) -> usize {
        self.free.len()
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
    /// The datagrams' receive buffers.
    recv_bufs: BufRing,
    recv_hdr: Box<libc::msghdr>,
    send: SendSlots,
    recv_armed: bool,
    cqes: Vec<(u64, i32, u32)>,
    /// Received datagrams not yet handled: (buffer id, length).
    backlog: std::collections::VecDeque<(u16, usize)>,
    failed_sends: usize,
    /// Sends queued in the submission queue and not yet submitted: each
    /// posts its completion as it is submitted, which the next wait must
    /// not mistake for traffic.
    sends_unsubmitted: usize,
    /// An eventfd whose read completes when another shard has mail for
    /// this one, ending the wait early.
    wake: Option<RawFd>,
    /// Where that read puts the counter (must not move while armed).
    wake_buf: Box<u64>,
    wake_armed: bool,
    /// The shard's connections' epoll set, polled once at a time.
    streams: Option<RawFd>,
    /// The connections are in this ring (multishot accept and receive)
    /// rather than behind their epoll set; decided at the first watch.
    streams_in_ring: Option<bool>,
    /// Completions of stream operations, for the streams' next poll.
    stream_cqes: Vec<(u64, i32, u32)>,
    streams_armed: bool,
    /// Its poll completed since the shard last asked.
    streams_ready: bool,
    /// How the ring runs its deferred work: said at start-up.
    taskrun: Taskrun,
    /// The next poll must not sleep ([`Backend::skip_next_wait`]).
    no_wait: bool,
    /// The longest sleep of a poll.
    wake_interval: Duration,
}

impl Uring {
    /// Sets up the ring for `socket`; fails when the kernel or a seccomp
    /// profile refuses io_uring or one of the operations used.
    pub fn new(socket: UdpSocket) -> io::Result<Self> {
        Uring::with_wake(socket, None)
    }

    /// As [`Uring::new`], also waking when the eventfd `wake` is written.
    pub fn with_wake(socket: UdpSocket, wake: Option<RawFd>) -> io::Result<Self> {
        let (ring, taskrun) = build_ring()?;
        ring.submitter().register_files(&[socket.as_raw_fd()])?;
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
        let recv_bufs = BufRing::new(RING_BUFFERS, RECV_BUF)?;
        // SAFETY: the buffers live as long as `self`, dropped after the
        // ring (field order).
        unsafe { recv_bufs.register(&ring, BUF_GROUP)? };
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
            recv_bufs,
            recv_hdr,
            send: SendSlots {
                slots,
                free: (0..SEND_SLOTS as u16).rev().collect(),
                ready: Vec::with_capacity(SEND_SLOTS),
                refused: 0,
                bound,
            },
            recv_armed: false,
            // The CQ is twice the SQ; no completion batch is larger.
            cqes: Vec::with_capacity(SQ_ENTRIES as usize * 2),
            backlog: std::collections::VecDeque::with_capacity(usize::from(RING_BUFFERS)),
            failed_sends: 0,
            sends_unsubmitted: 0,
            wake,
            wake_buf: Box::new(0),
            wake_armed: false,
            streams: None,
            streams_in_ring: None,
            stream_cqes: Vec::new(),
            streams_armed: false,
            streams_ready: false,
            taskrun,
            no_wait: false,
            wake_interval: WAKE_INTERVAL,
        };
        u.arm_recv()?;
        Ok(u)
    }

    /// Sets the longest sleep of a poll (tests make it long, so that a
    /// poll that sleeps when it must not is seen without a stopwatch).
    #[cfg(test)]
    pub(crate) fn set_wake_interval(&mut self, d: Duration) {
        self.wake_interval = d;
    }

    fn arm_recv(&mut self) -> io::Result<()> {
        let sqe = opcode::RecvMsgMulti::new(SOCKET, ptr::addr_of!(*self.recv_hdr), BUF_GROUP)
            .build()
            .user_data(RECV_TAG);
        self.push(&sqe)?;
        self.recv_armed = true;
        Ok(())
    }

    /// Polls the connections' epoll set, once: its completion ends the
    /// next wait, and it is armed again after the shard has polled the
    /// set (a multishot poll would not fire again for events the shard
    /// left unread in a level-triggered set).
    fn arm_streams(&mut self) -> io::Result<()> {
        let Some(fd) = self.streams else {
            return Ok(());
        };
        let sqe = opcode::PollAdd::new(types::Fd(fd), libc::POLLIN as u32)
            .build()
            .user_data(STREAMS_TAG);
        self.push(&sqe)?;
        self.streams_armed = true;
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
    /// committed. Each carries `MSG_DONTWAIT`, so the kernel tries it at
    /// once, in queue order, and completes it with `EAGAIN` (counted as a
    /// failed send, like a datagram the network drops) rather than parking
    /// it until the socket has room: a parked send could be overtaken by
    /// the next, and a 200 leave before its 180, which a UAC such as SIPp
    /// fails. (Hard links kept that order too, at the price of a task-work
    /// round per send; see docs/decisions.md.) A datagram that needs no
    /// source-address control message goes as a `sendto`-style `SEND`,
    /// which spares the kernel the copy of a `msghdr`.
    fn queue_sends(&mut self) -> io::Result<()> {
        let n = self.send.ready.len();
        let mut k = 0;
        while k < n {
            // One view of the queue for the batch: its tail is published
            // once, when the view is dropped.
            let mut sq = self.ring.submission();
            while k < n {
                let i = self.send.ready[k];
                let sqe = send_entry(&self.send.slots[usize::from(i)]).user_data(u64::from(i));
                // SAFETY: the slot's memory stays put until the send's
                // completion (see the module invariants).
                if unsafe { sq.push(&sqe) }.is_err() {
                    break;
                }
                k += 1;
                self.sends_unsubmitted += 1;
            }
            drop(sq);
            if k < n {
                // The queue is full: submit what it holds and go on.
                if let Err(e) = self.ring.submit() {
                    self.send.ready.drain(..k);
                    return Err(e);
                }
            }
        }
        self.send.ready.clear();
        Ok(())
    }

    /// Takes every completion: finished sends free their slots now;
    /// received datagrams join the backlog, each holding its buffer until
    /// it is handled. (The CQ holds at most `cqes`' capacity.)
    fn reap(&mut self) -> io::Result<()> {
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
            if is_stream_tag(tag) {
                self.stream_cqes.push((tag, result, flags));
                continue;
            }
            if tag == STREAMS_TAG {
                self.streams_armed = false;
                self.streams_ready = true;
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
                Some(bid) => self.recv_bufs.give_back(bid),
                // ENOBUFS: every buffer is held; re-armed next loop.
                None if result == -libc::ENOBUFS || result >= 0 => {}
                // Anything else (EINVAL on a kernel without multishot,
                // EBADF...) would fail again at once: report it.
                None => return Err(io::Error::from_raw_os_error(-result)),
            }
        }
        Ok(())
    }

    /// How this ring runs deferred work (the kernel may refuse the best).
    pub fn taskrun(&self) -> Taskrun {
        self.taskrun
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
        if self.streams_armed {
            let cancel = opcode::AsyncCancel::new(STREAMS_TAG)
                .build()
                .user_data(STREAMS_TAG - 1);
            let _ = self.push(&cancel);
        }
        let ts = types::Timespec::new().nsec(10_000_000);
        for _ in 0..100 {
            if !self.recv_armed
                && !self.wake_armed
                && !self.streams_armed
                && self.send.free.len() == SEND_SLOTS
            {
                return;
            }
            let args = types::SubmitArgs::new().timespec(&ts);
            let _ = self.ring.submitter().submit_with_args(1, &args);
            for c in self.ring.completion() {
                match c.user_data() {
                    WAKE_TAG => self.wake_armed = false,
                    STREAMS_TAG => self.streams_armed = false,
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
        // Armed again only once the shard has taken the last readiness.
        if self.streams.is_some() && !self.streams_armed && !self.streams_ready {
            self.arm_streams()?;
        }
        self.queue_sends()?;
        // Completions already posted and nothing to submit: take them
        // without entering the kernel. Otherwise wait for a completion
        // when nothing is left from last time, or when every send slot is
        // in flight (nothing could be handled).
        let posted = !self.ring.completion().is_empty();
        let to_submit = !self.ring.submission().is_empty();
        let may_sleep = !std::mem::take(&mut self.no_wait);
        if !posted
            && may_sleep
            && (self.backlog.is_empty() || self.send.free.len() < MOST_SENDS_PER_MESSAGE)
        {
            // One entry submits the last batch's sends and waits for what
            // comes next: their completions (posted as they are
            // submitted), plus one more (a datagram, the doorbell) or the
            // timeout. With deferred task work, the same entry runs the
            // receive that the datagrams' arrival queued.
            let want = 1 + self.sends_unsubmitted;
            self.sends_unsubmitted = 0;
            let ts = types::Timespec::from(self.wake_interval);
            let args = types::SubmitArgs::new().timespec(&ts);
            match self.ring.submitter().submit_with_args(want, &args) {
                Ok(_) => {}
                Err(e)
                    if e.raw_os_error() == Some(libc::ETIME)
                        || e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        } else if to_submit || !posted {
            self.sends_unsubmitted = 0;
            self.ring.submit()?;
        }
        self.reap()?;
        // Handle datagrams, oldest first, while the send slots have room
        // for what one may send, so that no answer or forward is dropped
        // for want of a slot; the rest wait (and, holding buffers, slow
        // the receive).
        while self.send.free.len() >= MOST_SENDS_PER_MESSAGE {
            let Some((bid, len)) = self.backlog.pop_front() else {
                break;
            };
            let buf = self.recv_bufs.bytes(bid, len);
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
            self.recv_bufs.give_back(bid);
        }
        self.recv_bufs.publish();
        Ok(())
    }

    fn flush(&mut self) -> usize {
        // Nothing new: no system call (the next poll submits anything else).
        // The kernel tries each send as it is submitted (`MSG_DONTWAIT`),
        // so they have reached it, or failed, when `submit` returns.
        if !self.send.ready.is_empty() && self.queue_sends().is_ok() {
            self.sends_unsubmitted = 0;
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

    fn watch_streams(&mut self, streams: &mut Streams) {
        let in_ring = *self.streams_in_ring.get_or_insert_with(|| {
            // Multishot accept (5.19) and receive (6.0) are as old as the
            // multishot recvmsg this backend needs; registering the
            // buffers can still fail (memory limits): epoll then.
            // SAFETY: the shard loop drops this backend before the streams.
            streams
                .use_ring()
                .and_then(|bufs| unsafe { bufs.register(&self.ring, STREAM_GROUP) })
                .is_ok()
        });
        if !in_ring {
            self.streams = Some(streams.fd());
            return;
        }
        let ops = streams.ring_ops();
        for op in &ops {
            let sqe = match *op {
                RingOp::Accept { fd, tag } => opcode::AcceptMulti::new(types::Fd(fd))
                    .flags(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC)
                    .build()
                    .user_data(tag),
                RingOp::Recv { fd, tag } => opcode::RecvMulti::new(types::Fd(fd), STREAM_GROUP)
                    .build()
                    .user_data(tag),
                RingOp::Writable { fd, tag } => {
                    opcode::PollAdd::new(types::Fd(fd), libc::POLLOUT as u32)
                        .build()
                        .user_data(tag)
                }
            };
            // A full queue is submitted first; an error here leaves the
            // connection unwatched until its deadline closes it.
            let _ = self.push(&sqe);
        }
        streams.ring_ops_done(ops);
    }

    fn streams_ready(&mut self, streams: &mut Streams) -> bool {
        if self.streams_in_ring != Some(true) {
            return std::mem::take(&mut self.streams_ready);
        }
        if self.stream_cqes.is_empty() {
            return false;
        }
        match streams.ring_completions() {
            Some(done) => done.append(&mut self.stream_cqes),
            None => self.stream_cqes.clear(),
        }
        true
    }

    fn skip_next_wait(&mut self) {
        self.no_wait = true;
    }

    fn name(&self) -> &'static str {
        "uring"
    }
}

/// The SQE that sends `slot`: a `sendto`-style `SEND` when it needs no
/// control message (no `msghdr` for the kernel to copy), else `SENDMSG`.
/// `MSG_DONTWAIT`: see [`Uring::queue_sends`].
fn send_entry(slot: &SendSlot) -> squeue::Entry {
    if slot.hdr.msg_controllen == 0 {
        opcode::Send::new(
            SOCKET,
            slot.iov.iov_base.cast::<u8>(),
            slot.iov.iov_len as u32,
        )
        .dest_addr(ptr::addr_of!(slot.name).cast())
        .dest_addr_len(slot.hdr.msg_namelen)
        .flags(libc::MSG_DONTWAIT)
        .build()
    } else {
        opcode::SendMsg::new(SOCKET, ptr::addr_of!(slot.hdr))
            .flags(libc::MSG_DONTWAIT as u32)
            .build()
    }
}

/// How a ring runs the work the kernel defers to the shard's thread (a
/// receive that a datagram's arrival made possible, mostly).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Taskrun {
    /// `SINGLE_ISSUER | DEFER_TASKRUN` (Linux 6.1): only when the shard
    /// enters the ring to wait, all of it at once; an arrival never
    /// interrupts the shard. What this backend is built for.
    Deferred,
    /// `COOP_TASKRUN` (Linux 5.19): at the shard's next system call,
    /// without an interrupt.
    Cooperative,
    /// The default: the kernel interrupts the shard (an IPI when it runs on
    /// another CPU) to run it.
    Interrupting,
}

/// Builds the ring with the cheapest task-work mode the kernel accepts.
/// `DEFER_TASKRUN` needs the ring to be created and used by one thread: the
/// shard's (see `server.rs`).
fn build_ring() -> io::Result<(IoUring, Taskrun)> {
    let mut deferred = IoUring::builder();
    deferred.setup_single_issuer().setup_defer_taskrun();
    if let Ok(ring) = deferred.build(SQ_ENTRIES) {
        return Ok((ring, Taskrun::Deferred));
    }
    let mut coop = IoUring::builder();
    coop.setup_coop_taskrun();
    if let Ok(ring) = coop.build(SQ_ENTRIES) {
        return Ok((ring, Taskrun::Cooperative));
    }
    Ok((IoUring::builder().build(SQ_ENTRIES)?, Taskrun::Interrupting))
}

/// Checks that io_uring with everything this backend uses works here, on a
/// throwaway loopback socket: the server checks with it, once, at start,
/// and says how the rings will run their deferred work.
pub fn probe() -> io::Result<Taskrun> {
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
            return Ok(u.taskrun);
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
            Ok(_) => f(),
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

    #[test]
    fn a_batch_of_sends_and_sendmsgs_leaves_in_commit_order() {
        unless_refused(|| testing::a_batch_leaves_in_commit_order(wrap));
    }

    #[test]
    fn a_poll_told_not_to_wait_does_not_sleep() {
        unless_refused(|| {
            let mut io = wrap(testing::shard_socket("127.0.0.1:0"));
            io.set_wake_interval(Duration::from_secs(60));
            testing::a_poll_told_not_to_wait_does_not_sleep(io);
        });
    }

    #[test]
    fn the_ring_defers_task_work_where_the_kernel_has_it() {
        unless_refused(|| {
            let u = wrap(testing::shard_socket("127.0.0.1:0"));
            // 6.1 has DEFER_TASKRUN; older kernels fall back, and say so.
            if kernel_at_least(6, 1) {
                assert_eq!(u.taskrun(), Taskrun::Deferred);
            }
        });
    }

    fn kernel_at_least(major: u32, minor: u32) -> bool {
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        let mut parts = release
            .trim()
            .split(['.', '-'])
            .map(|p| p.parse::<u32>().unwrap_or(0));
        let have = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
        have >= (major, minor)
    }
}
