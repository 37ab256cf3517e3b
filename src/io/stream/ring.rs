//! The connections driven by io_uring itself, where the backend is
//! io_uring and the kernel has multishot accept and receive (Linux 6.0):
//! each listener has one multishot `accept`, each connection one
//! multishot `recv` over a ring of provided buffers (an idle connection
//! holds no buffer, and nothing reads it with a system call), and a
//! connection with bytes the kernel did not take waits for room with a
//! one-shot `poll`. The streams say what they need as [`RingOp`]s; the
//! backend submits them and hands the completions back
//! ([`Streams::ring_completions`]). Everything after the bytes (TLS,
//! framing, WebSocket, the shard's handler, writing) is the epoll path's.
//!
//! A connection closed here is shut down first: its receive holds the
//! socket open in the ring until it ends, and the shutdown ends it.

use std::io;
use std::net::{Shutdown, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, RawFd};

use super::conn::Next;
use super::{Received, Streams};
use crate::io::bufring::BufRing;
use crate::transport::{ConnId, Source};

/// The buffer group of the connections' receives (the datagram socket's
/// is another).
pub const STREAM_GROUP: u16 = 8;

/// Receive buffers shared by a shard's connections: 64 x 16 KiB = 1 MiB,
/// whatever the number of connections. A receive that finds none ends
/// (`ENOBUFS`) and is armed again once the batch has given them back.
pub const STREAM_BUFFERS: u16 = 64;

/// Bytes of one receive buffer.
pub const STREAM_BUF: usize = 16_384;

/// What the shard's connections ask the ring to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RingOp {
    /// A multishot accept on a listener, with `SOCK_NONBLOCK`.
    Accept {
        /// The listener.
        fd: RawFd,
        /// The completions' user data.
        tag: u64,
    },
    /// A multishot receive on a connection, buffers from
    /// [`STREAM_GROUP`].
    Recv {
        /// The connection's socket.
        fd: RawFd,
        /// The completions' user data.
        tag: u64,
    },
    /// A one-shot poll for `POLLOUT` on a connection.
    Writable {
        /// The connection's socket.
        fd: RawFd,
        /// The completion's user data.
        tag: u64,
    },
}

const RECV: u64 = 0xa1;
const WRITABLE: u64 = 0xa2;
const ACCEPT: u64 = 0xa3;
const LOW: u64 = (1 << 56) - 1;

/// True for the user data of a stream operation ([`RingOp`]): the top
/// byte says which, where no datagram tag or send slot falls.
pub fn is_stream_tag(tag: u64) -> bool {
    matches!(tag >> 56, RECV | WRITABLE | ACCEPT)
}

fn tag(kind: u64, low: u64) -> u64 {
    (kind << 56) | (low & LOW)
}

/// The state of ring mode: the receive buffers, what the streams asked
/// since the backend last looked, and the completions it handed back.
#[derive(Default)]
pub(super) struct RingState {
    /// Taken out while a completion's bytes are handled.
    pub(super) bufs: Option<BufRing>,
    pub(super) ops: Vec<RingOp>,
    pub(super) done: Vec<(u64, i32, u32)>,
}

impl Streams {
    /// Switches the streams to ring mode: every listener gets a multishot
    /// accept and every connection a multishot receive, instead of their
    /// place in the epoll set. Returns the receive buffers, for the
    /// backend to register as [`STREAM_GROUP`] before it submits the
    /// operations. The streams must outlive the backend's ring.
    pub fn use_ring(&mut self) -> io::Result<&BufRing> {
        if self.ring.is_none() {
            let bufs = BufRing::new(STREAM_BUFFERS, STREAM_BUF)?;
            let mut ring = RingState {
                bufs: Some(bufs),
                ..RingState::default()
            };
            for (i, l) in self.listeners.iter().enumerate() {
                let _ = self.ctl(libc::EPOLL_CTL_DEL, l.sock.as_raw_fd(), 0, 0);
                ring.ops.push(RingOp::Accept {
                    fd: l.sock.as_raw_fd(),
                    tag: tag(ACCEPT, i as u64),
                });
            }
            for (id, conn) in self.conns.iter() {
                let fd = conn.sock.as_raw_fd();
                let _ = self.ctl(libc::EPOLL_CTL_DEL, fd, 0, 0);
                if !conn.connecting {
                    ring.ops.push(RingOp::Recv {
                        fd,
                        tag: tag(RECV, id.0),
                    });
                }
                if conn.writing {
                    ring.ops.push(RingOp::Writable {
                        fd,
                        tag: tag(WRITABLE, id.0),
                    });
                }
            }
            self.ring = Some(ring);
        }
        self.ring
            .as_ref()
            .and_then(|r| r.bufs.as_ref())
            .ok_or_else(|| io::Error::other("the receive buffers are in use"))
    }

    /// True in ring mode.
    pub fn in_ring(&self) -> bool {
        self.ring.is_some()
    }

    /// What the streams asked of the ring since the last call, in order.
    pub fn ring_ops(&mut self) -> Vec<RingOp> {
        self.ring
            .as_mut()
            .map(|r| std::mem::take(&mut r.ops))
            .unwrap_or_default()
    }

    /// Gives back the vector [`Streams::ring_ops`] returned, emptied, for
    /// its capacity.
    pub fn ring_ops_done(&mut self, mut ops: Vec<RingOp>) {
        if let Some(r) = self.ring.as_mut() {
            if r.ops.is_empty() {
                ops.clear();
                r.ops = ops;
            }
        }
    }

    /// Where the backend puts the completions of stream operations (user
    /// data, result, flags), for the next [`Streams::poll`].
    pub fn ring_completions(&mut self) -> Option<&mut Vec<(u64, i32, u32)>> {
        self.ring.as_mut().map(|r| &mut r.done)
    }

    /// The connection a tag's low bits name, on this shard.
    fn conn_of(&self, tag: u64) -> ConnId {
        ConnId((u64::from(self.shard) << 56) | (tag & LOW))
    }

    /// Handles the completions the backend handed over: accepted
    /// connections, received bytes, room to write.
    pub(super) fn poll_ring(&mut self, handle: &mut impl FnMut(Received<'_>, &Source) -> bool) {
        let Some(ring) = self.ring.as_mut() else {
            return;
        };
        let done = std::mem::take(&mut ring.done);
        let Some(mut bufs) = ring.bufs.take() else {
            ring.done = done;
            return;
        };
        for &(t, res, flags) in &done {
            let more = io_uring::cqueue::more(flags);
            match t >> 56 {
                ACCEPT => self.accepted(t & LOW, res, more),
                WRITABLE => {
                    let id = self.conn_of(t);
                    if let Some(conn) = self.conns.get_mut(id) {
                        conn.writing = false;
                        if !self.write_out(id) {
                            self.close(id);
                        }
                    }
                }
                _ => {
                    let id = self.conn_of(t);
                    let bid = io_uring::cqueue::buffer_select(flags);
                    let bytes = match (bid, usize::try_from(res)) {
                        (Some(b), Ok(n)) => bufs.bytes(b, n),
                        _ => &[],
                    };
                    self.received(id, res, bytes, more, handle);
                    if let Some(b) = bid {
                        bufs.give_back(b);
                    }
                }
            }
        }
        bufs.publish();
        if let Some(ring) = self.ring.as_mut() {
            ring.bufs = Some(bufs);
            if ring.done.is_empty() {
                let mut done = done;
                done.clear();
                ring.done = done;
            }
        }
    }

    /// A completion of listener `i`'s accept: `res` is the new socket.
    fn accepted(&mut self, i: u64, res: i32, more: bool) {
        let Some(l) = self.listeners.get(i as usize) else {
            return;
        };
        let fd = l.sock.as_raw_fd();
        if res >= 0 {
            // SAFETY: a successful accept's result is a new descriptor,
            // ours alone.
            let sock = unsafe { TcpStream::from_raw_fd(res) };
            if let Ok(peer) = sock.peer_addr() {
                self.adopt(i as usize, sock, peer);
            }
        }
        if !more {
            // Ended (an error such as EMFILE, or the kernel's choice):
            // armed again; a listener that keeps failing costs one
            // completion per loop.
            self.push_op(RingOp::Accept {
                fd,
                tag: tag(ACCEPT, i),
            });
        }
    }

    /// A completion of `id`'s receive: `bytes` (with `res` their length),
    /// the end of the stream (0) or an error.
    fn received(
        &mut self,
        id: ConnId,
        res: i32,
        bytes: &[u8],
        more: bool,
        handle: &mut impl FnMut(Received<'_>, &Source) -> bool,
    ) {
        let Some(fd) = self.conns.get(id).map(|c| c.sock.as_raw_fd()) else {
            return;
        };
        if res == 0 || (res < 0 && res != -libc::ENOBUFS) {
            // The peer closed, or the connection failed.
            return self.after(id, Next::Close);
        }
        if !more {
            // Ended for want of a buffer (or by the kernel's choice):
            // armed again, after the buffers of this batch are back.
            self.push_op(RingOp::Recv {
                fd,
                tag: tag(RECV, id.0),
            });
        }
        if bytes.is_empty() || self.closing.contains(&id) {
            return;
        }
        let stalled = self.stalled.contains(&id);
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        conn.last_rx_ms = self.now_ms;
        conn.heard = true;
        if stalled {
            // Its earlier messages wait for room: these wait behind them
            // (it is on the stalled list already).
            match self.input_held(id, bytes) {
                Next::Stalled => {}
                next => self.after(id, next),
            }
            return;
        }
        let next = self.input(id, bytes, handle);
        self.after(id, next);
    }

    pub(super) fn push_op(&mut self, op: RingOp) {
        if let Some(r) = self.ring.as_mut() {
            r.ops.push(op);
        }
    }

    /// Starts watching a new connection: for its bytes (unless a connect
    /// is under way) and, when `writable`, for room to write.
    pub(super) fn watch_new(
        &mut self,
        id: ConnId,
        fd: RawFd,
        reading: bool,
        writable: bool,
    ) -> bool {
        if self.ring.is_some() {
            if reading {
                self.push_op(RingOp::Recv {
                    fd,
                    tag: tag(RECV, id.0),
                });
            }
            if writable {
                self.push_op(RingOp::Writable {
                    fd,
                    tag: tag(WRITABLE, id.0),
                });
            }
            return true;
        }
        let mut events = libc::EPOLLIN | libc::EPOLLRDHUP;
        if writable {
            events |= libc::EPOLLOUT;
        }
        self.ctl(libc::EPOLL_CTL_ADD, fd, events as u32, id.0)
            .is_ok()
    }

    /// Watches `id` for room to write as well (its `tx` holds bytes).
    pub(super) fn watch_writable(&mut self, id: ConnId, fd: RawFd) -> bool {
        if self.ring.is_some() {
            self.push_op(RingOp::Writable {
                fd,
                tag: tag(WRITABLE, id.0),
            });
            return true;
        }
        let events = (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLOUT) as u32;
        self.ctl(libc::EPOLL_CTL_MOD, fd, events, id.0).is_ok()
    }

    /// Stops watching `id` for room to write (its `tx` is empty); in ring
    /// mode the one-shot poll has ended already.
    pub(super) fn unwatch_writable(&mut self, id: ConnId, fd: RawFd) -> bool {
        if self.ring.is_some() {
            return true;
        }
        let events = (libc::EPOLLIN | libc::EPOLLRDHUP) as u32;
        self.ctl(libc::EPOLL_CTL_MOD, fd, events, id.0).is_ok()
    }

    /// A connect of ours completed: in ring mode its receive starts now.
    pub(super) fn connected(&mut self, id: ConnId, fd: RawFd) {
        if self.ring.is_some() {
            self.push_op(RingOp::Recv {
                fd,
                tag: tag(RECV, id.0),
            });
        }
    }

    /// Stops reading `id`, which closes once its answers are written. In
    /// ring mode what it still delivers is ignored.
    pub(super) fn stop_reading(&mut self, fd: RawFd) {
        if self.ring.is_none() {
            let _ = self.ctl(libc::EPOLL_CTL_DEL, fd, 0, 0);
        }
    }

    /// Ends the ring's hold on a socket about to close.
    pub(super) fn release(&self, sock: &TcpStream) {
        if self.ring.is_some() {
            let _ = sock.shutdown(Shutdown::Both);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::stream::{bind_listener, Outgoing};
    use crate::io::uring::{probe, Uring};
    use crate::io::Backend;
    use crate::transport::Transport;
    use socket2::{Domain, SockRef, Socket, Type};
    use std::io::{Read, Write};
    use std::net::{SocketAddr, UdpSocket};
    use std::time::{Duration, Instant};

    #[test]
    fn tags_name_their_kind_and_connection() {
        let id = ConnId::new(3, 0x12_3456, 0xdead_beef);
        for kind in [RECV, WRITABLE, ACCEPT] {
            let t = tag(kind, id.0);
            assert!(is_stream_tag(t));
            assert_eq!(t >> 56, kind);
            assert_eq!(ConnId((3u64 << 56) | (t & LOW)), id);
        }
        // The datagram backend's own tags and send slots are not ours.
        for t in [u64::MAX, u64::MAX - 2, u64::MAX - 4, 0, 127] {
            assert!(!is_stream_tag(t));
        }
    }

    /// A shard's io_uring backend with its streams in the ring.
    struct Rig {
        io: Uring,
        s: Streams,
        addr: SocketAddr,
        out: Outgoing,
        got: Vec<(Vec<u8>, ConnId)>,
        /// Messages the handler may still take (it has no room after).
        room: usize,
    }

    /// None when io_uring is refused here (old kernel, seccomp).
    fn rig() -> Option<Rig> {
        if let Err(e) = probe() {
            eprintln!("skipping: io_uring is refused here: {e}");
            return None;
        }
        let io = Uring::new(UdpSocket::bind("127.0.0.1:0").unwrap()).unwrap();
        let l = bind_listener("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = l.local_addr().unwrap();
        let s = Streams::new(0, vec![(l, Transport::Tcp)], 256, 4096).unwrap();
        let mut r = Rig {
            io,
            s,
            addr,
            out: Outgoing::default(),
            got: Vec::new(),
            room: usize::MAX,
        };
        r.io.watch_streams(&mut r.s);
        assert!(r.s.in_ring(), "io_uring takes the streams");
        Some(r)
    }

    impl Rig {
        /// One turn of the shard loop: wait (100 ms at most), hand the
        /// completions over, poll, send what was queued, submit what the
        /// streams asked for.
        fn turn(&mut self) {
            self.io.poll(|_, _| {}).unwrap();
            let (got, room) = (&mut self.got, &mut self.room);
            if self.io.streams_ready(&mut self.s) || self.s.has_stalled() {
                self.s.poll(|r, src| {
                    if *room == 0 {
                        return false;
                    }
                    *room -= 1;
                    if let Received::Message(m) = r {
                        got.push((m.to_vec(), src.conn.unwrap()));
                    }
                    true
                });
            }
            self.s.send_all(&mut self.out);
            self.io.watch_streams(&mut self.s);
        }

        /// Turns until `done` holds, 5 s at most.
        fn until(&mut self, done: impl Fn(&Rig) -> bool) {
            let deadline = Instant::now() + Duration::from_secs(5);
            while !done(self) {
                assert!(Instant::now() < deadline, "not within 5 s");
                self.turn();
            }
        }
    }

    fn options(i: usize) -> Vec<u8> {
        format!("OPTIONS sip:{i} SIP/2.0\r\nContent-Length: 0\r\n\r\n").into_bytes()
    }

    #[test]
    fn the_ring_accepts_reads_answers_and_sees_the_close() {
        let Some(mut r) = rig() else { return };
        let mut c = TcpStream::connect(r.addr).unwrap();
        c.write_all(&[options(1), options(2)].concat()).unwrap();
        r.until(|r| r.got.len() == 2);
        assert_eq!(r.got[0].0, options(1));
        assert_eq!(r.got[1].0, options(2));
        r.out.push(r.got[0].1, b"answer");
        r.turn();
        let mut buf = [0u8; 6];
        c.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"answer");
        drop(c);
        r.until(|r| r.s.open() == 0);
        let counts = r.s.take_counts();
        assert_eq!((counts.accepted, counts.closed), (1, 1));
    }

    #[test]
    fn a_slow_reader_gets_every_byte_once_it_reads() {
        let Some(mut r) = rig() else { return };
        let sock = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        sock.set_recv_buffer_size(4096).unwrap();
        sock.connect(&r.addr.into()).unwrap();
        let mut c: TcpStream = sock.into();
        r.until(|r| r.s.open() == 1);
        let (id, conn) = r.s.conns.iter().next().unwrap();
        SockRef::from(&conn.sock)
            .set_send_buffer_size(4096)
            .unwrap();
        // 256 KiB of answers: far more than the two sockets hold.
        let chunk: Vec<u8> = (0..4096u32).map(|i| (i % 251) as u8).collect();
        for _ in 0..64 {
            r.out.push(id, &chunk);
        }
        r.turn();
        let conn = r.s.conns.get(id).unwrap();
        assert!(
            conn.writing && !conn.tx.is_empty(),
            "the rest waits for room"
        );
        let reader = std::thread::spawn(move || {
            let mut all = vec![0u8; 64 * 4096];
            // The connection is handed back, still open.
            c.read_exact(&mut all).map(|_| (all, c))
        });
        r.until(|_| reader.is_finished());
        let (all, _c) = reader.join().unwrap().unwrap();
        assert!(all.chunks(4096).all(|c| c == &chunk[..]), "in order, whole");
        let conn = r.s.conns.get(id).unwrap();
        assert!(!conn.writing && conn.tx.is_empty());
    }

    #[test]
    fn messages_wait_in_order_while_there_is_no_room() {
        let Some(mut r) = rig() else { return };
        let mut c = TcpStream::connect(r.addr).unwrap();
        r.room = 1;
        c.write_all(&[options(1), options(2), options(3)].concat())
            .unwrap();
        r.until(|r| r.got.len() == 1 && r.s.has_stalled());
        // More arrives while the first ones wait: it waits behind them.
        c.write_all(&[options(4), options(5)].concat()).unwrap();
        for _ in 0..3 {
            r.turn();
        }
        assert_eq!(r.got.len(), 1);
        r.room = usize::MAX;
        r.until(|r| r.got.len() == 5);
        for (i, (m, _)) in r.got.iter().enumerate() {
            assert_eq!(m, &options(i + 1));
        }
    }

    #[test]
    fn tls_bytes_that_arrive_while_messages_wait_are_decrypted_behind_them() {
        use crate::transport::tls::testpki::{Pki, BOTH, SERVER_NAME};
        use crate::transport::tls::TlsReloader;
        use crate::transport::Source;
        use rustls::pki_types::ServerName;
        use rustls::{ClientConnection, StreamOwned};
        use std::sync::Arc;

        let Some(mut r) = rig() else { return };
        let pki = Pki::new("ring-stalled");
        let l = bind_listener("127.0.0.1:0".parse().unwrap()).unwrap();
        r.addr = l.local_addr().unwrap();
        r.s = Streams::new(0, vec![(l, Transport::Tls)], 256, 4096).unwrap();
        r.s.set_tls(Arc::new(TlsReloader::new(pki.settings()).unwrap()));
        r.io = Uring::new(UdpSocket::bind("127.0.0.1:0").unwrap()).unwrap();
        r.io.watch_streams(&mut r.s);
        assert!(r.s.in_ring());
        let cfg = pki.client_config(BOTH, false);
        let addr = r.addr;
        let client = std::thread::spawn(move || {
            let name = ServerName::try_from(SERVER_NAME).unwrap();
            let conn = ClientConnection::new(cfg, name).unwrap();
            let mut tls = StreamOwned::new(conn, TcpStream::connect(addr).unwrap());
            tls.write_all(&[options(1), options(2), options(3)].concat())
                .unwrap();
            tls
        });
        r.room = 1;
        r.until(|r| r.got.len() == 1 && r.s.has_stalled());
        let mut tls = client.join().unwrap();
        // Two more records, as a second receive of the same batch would
        // deliver them, the connection being stalled by then.
        let mut cipher = Vec::new();
        for i in [4, 5] {
            tls.conn.writer().write_all(&options(i)).unwrap();
        }
        while tls.conn.wants_write() {
            tls.conn.write_tls(&mut cipher).unwrap();
        }
        let id = r.got[0].1;
        let mut no_room = |_: Received<'_>, _: &Source| false;
        let len = i32::try_from(cipher.len()).unwrap();
        r.s.received(id, len, &cipher, true, &mut no_room);
        let rx = &r.s.conns.get(id).unwrap().rx;
        assert_eq!(
            rx,
            &[options(2), options(3), options(4), options(5)].concat()
        );
        r.room = usize::MAX;
        r.until(|r| r.got.len() == 5);
        for (i, (m, _)) in r.got.iter().enumerate() {
            assert_eq!(m, &options(i + 1));
        }
        assert_eq!(r.s.open(), 1, "still open");
        assert_eq!(r.s.take_counts().frame_errors, 0);
    }

    #[test]
    fn more_connections_than_buffers_are_all_read() {
        let Some(mut r) = rig() else { return };
        let n = usize::from(STREAM_BUFFERS) + 16;
        let mut clients: Vec<TcpStream> = (0..n)
            .map(|_| TcpStream::connect(r.addr).unwrap())
            .collect();
        r.until(|r| r.s.open() == n);
        // Every one sends before the ring runs again: more receives
        // complete at once than there are buffers; those left without one
        // end, are armed again, and deliver later.
        for (i, c) in clients.iter_mut().enumerate() {
            c.write_all(&options(i)).unwrap();
        }
        r.until(|r| r.got.len() == n);
        let mut seen: Vec<Vec<u8>> = r.got.iter().map(|(m, _)| m.clone()).collect();
        seen.sort();
        let mut sent: Vec<Vec<u8>> = (0..n).map(options).collect();
        sent.sort();
        assert_eq!(seen, sent);
    }
}
