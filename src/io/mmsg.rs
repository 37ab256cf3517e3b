//! The `recvmmsg`/`sendmmsg` backend: one system call receives up to
//! [`BATCH`] datagrams into fixed buffers, one sends the batch of replies
//! and forwards. Portable to every Linux a container allows, and the
//! reference for the io_uring backend.
//!
//! Each datagram in carries the local address it was sent to and each
//! datagram out may name the address to leave from: one `IP_PKTINFO` or
//! `IPV6_PKTINFO` control message (`cmsg.rs`) in a control buffer of its
//! own slot.
//!
//! # Invariants
//! - Buffers, control buffers included, are allocated once per shard; a
//!   batch never allocates.
//! - The C structures (`mmsghdr`, `iovec`, `sockaddr_storage`) are built on
//!   the stack for each call and point only into `self`'s buffers, which
//!   outlive the call.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::ptr;
use std::time::Duration;

use super::cmsg::{self, Space, RECV_SPACE, SEND_SPACE};
use super::eventfd::drain as drain_eventfd;
use super::socket::WAKE_INTERVAL;
use super::stream::Streams;
use super::{Backend, Datagram, SendQueue, BATCH, MOST_SENDS_PER_MESSAGE, RECV_SLOT, SEND_SLOT};
use crate::transport::Dest;

/// Datagrams received by the last [`Mmsg::recv`].
pub struct RecvBatch {
    data: Box<[u8]>,
    lens: [usize; BATCH],
    addrs: [Option<SocketAddr>; BATCH],
    locals: [SocketAddr; BATCH],
    truncated: [bool; BATCH],
    /// Where the kernel writes each datagram's control messages.
    ctrl: Box<[Space<RECV_SPACE>; BATCH]>,
    count: usize,
}

impl RecvBatch {
    fn new() -> Self {
        RecvBatch {
            data: vec![0u8; BATCH * RECV_SLOT].into_boxed_slice(),
            lens: [0; BATCH],
            addrs: [None; BATCH],
            locals: [UNSPECIFIED; BATCH],
            truncated: [false; BATCH],
            ctrl: Box::new([Space::new(); BATCH]),
            count: 0,
        }
    }

    /// Number of datagrams in the batch.
    pub fn len(&self) -> usize {
        self.count
    }

    /// True when the batch is empty.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Datagram `i`: its bytes, its source, our address it came to, and
    /// whether the kernel cut it short (larger than [`RECV_SLOT`]; such a
    /// datagram must be dropped).
    pub fn get(&self, i: usize) -> Option<Datagram<'_>> {
        if i >= self.count {
            return None;
        }
        let start = i * RECV_SLOT;
        let bytes = self.data.get(start..start + self.lens[i].min(RECV_SLOT))?;
        Some(Datagram {
            bytes,
            source: self.addrs[i],
            local: self.locals[i],
            truncated: self.truncated[i],
        })
    }
}

const UNSPECIFIED: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0));

/// Datagrams waiting for the next [`Mmsg::flush`].
pub struct SendBatch {
    data: Box<[u8]>,
    lens: [usize; BATCH],
    addrs: [SocketAddr; BATCH],
    /// Each datagram's control message (its source address), if any.
    ctrl: Box<[Space<SEND_SPACE>; BATCH]>,
    ctrl_lens: [usize; BATCH],
    /// The socket's address: a source address equal to it needs no
    /// control message.
    bound: SocketAddr,
    count: usize,
    /// Commits refused before the kernel (destinations not carried here).
    refused: usize,
}

impl SendBatch {
    fn new(bound: SocketAddr) -> Self {
        SendBatch {
            bound,
            data: vec![0u8; BATCH * SEND_SLOT].into_boxed_slice(),
            lens: [0; BATCH],
            addrs: [UNSPECIFIED; BATCH],
            ctrl: Box::new([Space::new(); BATCH]),
            ctrl_lens: [0; BATCH],
            count: 0,
            refused: 0,
        }
    }

    /// The next free buffer, or None when the batch is full (flush first).
    pub fn slot(&mut self) -> Option<&mut [u8]> {
        if self.count == BATCH {
            return None;
        }
        let start = self.count * SEND_SLOT;
        self.data.get_mut(start..start + SEND_SLOT)
    }

    /// Queues the first `len` bytes of the buffer [`slot`](Self::slot)
    /// returned, for `dest` (see [`SendQueue::commit`]: a datagram, from
    /// the address it names; a connection is refused and counted).
    pub fn commit(&mut self, len: usize, dest: Dest) {
        let Dest::Udp { peer, from } = dest else {
            self.refused += 1;
            return;
        };
        let i = self.count;
        if i < BATCH {
            self.lens[i] = len.min(SEND_SLOT);
            self.addrs[i] = peer;
            self.ctrl_lens[i] = match cmsg::needed_source(from, self.bound) {
                Some(ip) => cmsg::encode_source(ip, &mut self.ctrl[i].0),
                None => 0,
            };
            self.count += 1;
        }
    }

    /// Number of queued datagrams.
    pub fn len(&self) -> usize {
        self.count
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
}

impl SendQueue for SendBatch {
    fn slot(&mut self) -> Option<&mut [u8]> {
        SendBatch::slot(self)
    }

    fn commit(&mut self, len: usize, dest: Dest) {
        SendBatch::commit(self, len, dest)
    }

    fn free(&self) -> usize {
        BATCH - self.count
    }
}

impl Backend for Mmsg {
    type Send = SendBatch;

    fn poll<F>(&mut self, mut handle: F) -> io::Result<()>
    where
        F: FnMut(Datagram<'_>, &mut SendBatch),
    {
        let n = self.recv_wakeable()?;
        for i in 0..n {
            // A batch in is no larger than a batch out, but the inbox's
            // answers may be queued already and a datagram can make up to
            // MOST_SENDS_PER_MESSAGE sends: send what is queued when the
            // next one might not fit (one more sendmmsg, never a drop).
            if self.send.free() < MOST_SENDS_PER_MESSAGE {
                self.failed_early += Mmsg::flush(self).failed;
            }
            if let Some(d) = self.recv.get(i) {
                handle(d, &mut self.send);
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> usize {
        // Nothing queued makes no system call.
        Mmsg::flush(self).failed + std::mem::take(&mut self.failed_early)
    }

    fn send_queue(&mut self) -> &mut SendBatch {
        &mut self.send
    }

    fn watch_streams(&mut self, streams: &mut Streams) {
        if self.streams.is_none() {
            self.streams = Some(streams.fd());
        }
    }

    /// Always: under load this loop never sleeps in `poll` (datagrams are
    /// waiting), so it cannot tell; the epoll set is polled once per
    /// batch, one `epoll_wait` more per `recvmmsg`.
    fn streams_ready(&mut self, _: &mut Streams) -> bool {
        self.streams.is_some()
    }

    fn skip_next_wait(&mut self) {
        self.no_wait = true;
    }

    fn name(&self) -> &'static str {
        "mmsg"
    }
}

/// A shard's socket with its receive and send batches.
pub struct Mmsg {
    socket: UdpSocket,
    /// The socket's address: the local address of a datagram that came
    /// with no control message.
    bound: SocketAddr,
    /// What the last `recv` brought.
    pub recv: RecvBatch,
    /// What the next `flush` sends.
    pub send: SendBatch,
    /// An eventfd that ends the wait for traffic early (inbox mail).
    wake: Option<RawFd>,
    /// The shard's connections' epoll set, which ends the wait too.
    streams: Option<RawFd>,
    /// The next poll must not sleep ([`Backend::skip_next_wait`]).
    no_wait: bool,
    /// The longest sleep of a poll with a wake fd or streams.
    wake_interval: Duration,
    /// Sends that failed in a flush made in the middle of a batch, for
    /// the next [`Backend::flush`] to report.
    failed_early: usize,
}

/// Outcome of a flush.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Flushed {
    /// Datagrams the kernel accepted.
    pub sent: usize,
    /// Datagrams refused (unreachable, wrong family, a source address not
    /// ours...), skipped, and commits to a destination not carried here.
    pub failed: usize,
}

impl Mmsg {
    /// Wraps a bound socket (blocking, with a receive timeout; with
    /// [`enable_pktinfo`](super::socket::enable_pktinfo) for the local
    /// address of each datagram, else every datagram reports the bound
    /// address).
    pub fn new(socket: UdpSocket) -> Self {
        let bound = socket.local_addr().unwrap_or(UNSPECIFIED);
        Mmsg {
            socket,
            bound,
            recv: RecvBatch::new(),
            send: SendBatch::new(bound),
            wake: None,
            streams: None,
            no_wait: false,
            wake_interval: WAKE_INTERVAL,
            failed_early: 0,
        }
    }

    /// Sets the longest sleep of a poll (tests make it long, so that a
    /// poll that sleeps when it must not is seen without a stopwatch).
    #[cfg(test)]
    pub(crate) fn set_wake_interval(&mut self, d: Duration) {
        self.wake_interval = d;
    }

    /// Also wakes up when `fd` (an eventfd) becomes readable, so that a
    /// shard sleeping here sees inbox mail at once rather than after the
    /// receive timeout. Costs a `poll` call whenever the socket is empty.
    pub fn with_wake(mut self, fd: RawFd) -> Self {
        self.wake = Some(fd);
        self
    }

    /// Receives at most as many datagrams as there are free send slots,
    /// waiting up to the wake interval for the socket or the wake fd.
    fn recv_wakeable(&mut self) -> io::Result<usize> {
        let room = BATCH - self.send.len();
        if room == 0 {
            return Ok(0);
        }
        if self.wake.is_none() && self.streams.is_none() {
            return self.recv_some(room, libc::MSG_WAITFORONE);
        }
        let n = self.recv_some(room, libc::MSG_DONTWAIT)?;
        // Answers queued before this poll (inbox mail) must not wait for
        // the next datagram: do not sleep with them unsent; nor with
        // work held elsewhere.
        if n > 0 || !self.send.is_empty() || std::mem::take(&mut self.no_wait) {
            return Ok(n);
        }
        let pollfd = |fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // The socket, then the doorbell and the epoll set where given (a
        // negative fd is ignored by poll).
        let mut fds = [
            pollfd(self.socket.as_raw_fd()),
            pollfd(self.wake.unwrap_or(-1)),
            pollfd(self.streams.unwrap_or(-1)),
        ];
        let ms = libc::c_int::try_from(self.wake_interval.as_millis()).unwrap_or(libc::c_int::MAX);
        // SAFETY: `fds` is a live array of three pollfd structs.
        let r = unsafe { libc::poll(fds.as_mut_ptr(), 3, ms) };
        if r <= 0 {
            return Ok(0); // timeout or EINTR
        }
        if let (Some(wake), true) = (self.wake, fds[1].revents != 0) {
            drain_eventfd(wake);
        }
        if fds[0].revents != 0 {
            return self.recv_some(room, libc::MSG_DONTWAIT);
        }
        Ok(0)
    }

    /// The socket's local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// Receives a batch: waits for the first datagram up to the socket's
    /// timeout, then takes whatever else is already queued
    /// (`MSG_WAITFORONE`). Returns the count; 0 on timeout or EINTR.
    pub fn recv(&mut self) -> io::Result<usize> {
        self.recv_some(BATCH, libc::MSG_WAITFORONE)
    }

    /// `recvmmsg` of at most `max` datagrams with these flags.
    fn recv_some(&mut self, max: usize, flags: libc::c_int) -> io::Result<usize> {
        self.recv.count = 0;
        let max = max.min(BATCH);
        // SAFETY: sockaddr_storage, iovec and mmsghdr are plain C structs
        // for which all-zero bytes are a valid value.
        let mut names: [libc::sockaddr_storage; BATCH] = unsafe { zeroed() };
        // SAFETY: as above.
        let mut iovs: [libc::iovec; BATCH] = unsafe { zeroed() };
        // SAFETY: as above.
        let mut hdrs: [libc::mmsghdr; BATCH] = unsafe { zeroed() };
        let base = self.recv.data.as_mut_ptr();
        for i in 0..max {
            // SAFETY: i * RECV_SLOT + RECV_SLOT <= data.len() by construction.
            iovs[i].iov_base = unsafe { base.add(i * RECV_SLOT) }.cast();
            iovs[i].iov_len = RECV_SLOT;
            point(
                &mut hdrs[i],
                &mut names[i],
                size_of::<libc::sockaddr_storage>() as libc::socklen_t,
                &mut iovs[i],
            );
            let ctrl = &mut self.recv.ctrl[i].0;
            hdrs[i].msg_hdr.msg_control = ctrl.as_mut_ptr().cast();
            hdrs[i].msg_hdr.msg_controllen = ctrl.len() as _;
        }
        // SAFETY: every header up to `max` points into `names`, `iovs` and
        // our buffers (data and control), all alive for the duration of the
        // call; vlen is `max`.
        let n = unsafe {
            libc::recvmmsg(
                self.socket.as_raw_fd(),
                hdrs.as_mut_ptr(),
                max as libc::c_uint,
                flags,
                ptr::null_mut(),
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock
                | io::ErrorKind::TimedOut
                | io::ErrorKind::Interrupted => Ok(0),
                _ => Err(e),
            };
        }
        let n = n as usize;
        for i in 0..n {
            self.recv.lens[i] = hdrs[i].msg_len as usize;
            self.recv.truncated[i] = hdrs[i].msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
            self.recv.addrs[i] = from_storage(&names[i]);
            let ctrl = &self.recv.ctrl[i].0;
            let len = (hdrs[i].msg_hdr.msg_controllen as usize).min(ctrl.len());
            self.recv.locals[i] = cmsg::local_addr(&ctrl[..len], self.bound);
        }
        self.recv.count = n;
        Ok(n)
    }

    /// Sends every queued datagram, retrying after partial sends and
    /// skipping (and counting) one that the kernel refuses; counts the
    /// commits refused since the last flush as well.
    pub fn flush(&mut self) -> Flushed {
        let mut out = Flushed {
            sent: 0,
            failed: std::mem::take(&mut self.send.refused),
        };
        let mut next = 0;
        let count = self.send.count;
        while next < count {
            // SAFETY: plain C structs; all-zero is valid.
            let mut names: [libc::sockaddr_storage; BATCH] = unsafe { zeroed() };
            // SAFETY: as above.
            let mut iovs: [libc::iovec; BATCH] = unsafe { zeroed() };
            // SAFETY: as above.
            let mut hdrs: [libc::mmsghdr; BATCH] = unsafe { zeroed() };
            let base = self.send.data.as_mut_ptr();
            let todo = count - next;
            for j in 0..todo {
                let i = next + j;
                let namelen = to_storage(&self.send.addrs[i], &mut names[j]);
                // SAFETY: i * SEND_SLOT + SEND_SLOT <= data.len().
                iovs[j].iov_base = unsafe { base.add(i * SEND_SLOT) }.cast();
                iovs[j].iov_len = self.send.lens[i];
                point(&mut hdrs[j], &mut names[j], namelen, &mut iovs[j]);
                let ctrl_len = self.send.ctrl_lens[i];
                if ctrl_len > 0 {
                    let ctrl = &mut self.send.ctrl[i].0;
                    hdrs[j].msg_hdr.msg_control = ctrl.as_mut_ptr().cast();
                    hdrs[j].msg_hdr.msg_controllen = ctrl_len as _;
                }
            }
            // SAFETY: the headers point into live stack arrays and our send
            // buffers (data and control, the control length never more than
            // its buffer); vlen is the number of filled headers.
            let n = unsafe {
                libc::sendmmsg(
                    self.socket.as_raw_fd(),
                    hdrs.as_mut_ptr(),
                    todo as libc::c_uint,
                    0,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                // The first datagram was refused: skip it and go on.
                out.failed += 1;
                next += 1;
            } else {
                out.sent += n as usize;
                next += n as usize;
            }
        }
        self.send.count = 0;
        out
    }
}

impl AsRawFd for Mmsg {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.socket.as_raw_fd()
    }
}

/// Points one `mmsghdr` at its address slot and its single `iovec`.
fn point(
    hdr: &mut libc::mmsghdr,
    name: &mut libc::sockaddr_storage,
    namelen: libc::socklen_t,
    iov: &mut libc::iovec,
) {
    hdr.msg_hdr.msg_name = ptr::addr_of_mut!(*name).cast();
    hdr.msg_hdr.msg_namelen = namelen;
    hdr.msg_hdr.msg_iov = ptr::addr_of_mut!(*iov);
    hdr.msg_hdr.msg_iovlen = 1;
}

/// Writes `addr` as a C socket address; returns its length.
pub(crate) fn to_storage(addr: &SocketAddr, out: &mut libc::sockaddr_storage) -> libc::socklen_t {
    match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and aligned for
            // sockaddr_in.
            unsafe { ptr::write(ptr::addr_of_mut!(*out).cast::<libc::sockaddr_in>(), sin) };
            size_of::<libc::sockaddr_in>() as libc::socklen_t
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: sockaddr_storage is larger than and aligned for
            // sockaddr_in6.
            unsafe { ptr::write(ptr::addr_of_mut!(*out).cast::<libc::sockaddr_in6>(), sin6) };
            size_of::<libc::sockaddr_in6>() as libc::socklen_t
        }
    }
}

/// Reads a C socket address the kernel filled in.
pub(crate) fn from_storage(s: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match libc::c_int::from(s.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in, and
            // sockaddr_storage is aligned for it.
            let sin = unsafe { &*ptr::addr_of!(*s).cast::<libc::sockaddr_in>() };
            let ip = Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes());
            Some(SocketAddr::V4(SocketAddrV4::new(
                ip,
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6.
            let sin6 = unsafe { &*ptr::addr_of!(*s).cast::<libc::sockaddr_in6>() };
            let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            Some(SocketAddr::V6(SocketAddrV6::new(
                ip,
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::socket::{bind_shard_socket, SocketOptions};
    use crate::io::testing;

    #[test]
    fn addresses_round_trip_through_c() {
        for a in ["127.0.0.1:5060", "[::1]:5070", "[2001:db8::1]:1"] {
            let addr: SocketAddr = a.parse().unwrap();
            // SAFETY: all-zero is a valid sockaddr_storage.
            let mut s: libc::sockaddr_storage = unsafe { zeroed() };
            to_storage(&addr, &mut s);
            assert_eq!(from_storage(&s), Some(addr));
        }
    }

    #[test]
    fn a_batch_goes_out_and_comes_back_on_loopback() {
        let opts = SocketOptions {
            recv_buffer: None,
            send_buffer: None,
        };
        let a = bind_shard_socket("127.0.0.1:0".parse().unwrap(), &opts).unwrap();
        let b = bind_shard_socket("127.0.0.1:0".parse().unwrap(), &opts).unwrap();
        let mut a = Mmsg::new(a.socket);
        let mut b = Mmsg::new(b.socket);
        let to = b.local_addr().unwrap();
        for i in 0..5u8 {
            let slot = a.send.slot().unwrap();
            slot[..3].copy_from_slice(&[b'm', b'0' + i, b'!']);
            a.send.commit(3, Dest::udp(to));
        }
        assert_eq!(a.flush(), Flushed { sent: 5, failed: 0 });
        let mut got = Vec::new();
        while got.len() < 5 {
            let n = b.recv().unwrap();
            for i in 0..n {
                let d = b.recv.get(i).unwrap();
                assert!(!d.truncated);
                assert_eq!(d.source, Some(a.local_addr().unwrap()));
                assert_eq!(d.local, to);
                got.push(d.bytes.to_vec());
            }
        }
        assert_eq!(got[0], b"m0!");
        assert_eq!(got[4], b"m4!");
    }

    #[test]
    fn a_refused_datagram_is_skipped_not_fatal() {
        let opts = SocketOptions {
            recv_buffer: None,
            send_buffer: None,
        };
        let a = bind_shard_socket("127.0.0.1:0".parse().unwrap(), &opts).unwrap();
        let b = bind_shard_socket("127.0.0.1:0".parse().unwrap(), &opts).unwrap();
        let mut a = Mmsg::new(a.socket);
        let mut b = Mmsg::new(b.socket);
        // An IPv6 destination from an IPv4 socket is refused by the kernel.
        a.send.slot().unwrap()[0] = b'x';
        a.send.commit(1, Dest::udp("[::1]:9".parse().unwrap()));
        a.send.slot().unwrap()[0] = b'y';
        a.send.commit(1, Dest::udp(b.local_addr().unwrap()));
        assert_eq!(a.flush(), Flushed { sent: 1, failed: 1 });
        assert_eq!(b.recv().unwrap(), 1);
        assert_eq!(b.recv.get(0).unwrap().bytes, b"y");
    }

    #[test]
    fn a_wildcard_socket_tells_127_0_0_1_from_127_0_0_2() {
        testing::answers_leave_from_where_requests_came(
            testing::shard_socket("0.0.0.0:0"),
            "127.0.0.1:0",
            &["127.0.0.1", "127.0.0.2"],
            Mmsg::new,
        );
    }

    #[test]
    fn a_wildcard_ipv6_socket_reports_and_answers_from_loopback() {
        if !testing::have_ipv6_loopback() {
            eprintln!("skipping: no IPv6 loopback here");
            return;
        }
        testing::answers_leave_from_where_requests_came(
            testing::shard_socket("[::]:0"),
            "[::1]:0",
            &["::1"],
            Mmsg::new,
        );
    }

    #[test]
    fn a_dual_stack_socket_reports_ipv4_v4_mapped() {
        if !testing::have_ipv6_loopback() {
            eprintln!("skipping: no IPv6 here");
            return;
        }
        testing::answers_leave_from_where_requests_came(
            testing::dual_stack_socket(),
            "127.0.0.1:0",
            &["127.0.0.1", "127.0.0.2"],
            Mmsg::new,
        );
    }

    #[test]
    fn a_connection_and_a_foreign_source_are_refused_and_counted() {
        testing::refusals_are_counted(Mmsg::new);
    }

    #[test]
    fn a_batch_leaves_in_commit_order() {
        testing::a_batch_leaves_in_commit_order(Mmsg::new);
    }

    #[test]
    fn a_poll_told_not_to_wait_does_not_sleep() {
        // With a wake fd (as a shard has), the wait is poll(2)'s.
        let wake = crate::io::eventfd::EventFd::new().unwrap();
        let mut io = Mmsg::new(testing::shard_socket("127.0.0.1:0")).with_wake(wake.fd());
        io.set_wake_interval(Duration::from_secs(60));
        testing::a_poll_told_not_to_wait_does_not_sleep(io);
    }

    #[test]
    fn a_socket_without_pktinfo_reports_its_bound_address() {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = a.local_addr().unwrap();
        let mut a = Mmsg::new(a);
        UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .send_to(b"z", to)
            .unwrap();
        assert_eq!(a.recv().unwrap(), 1);
        assert_eq!(a.recv.get(0).unwrap().local, to);
    }
}
