//! The shards' I/O: UDP sockets (`socket.rs`), the control messages
//! that carry a datagram's local address (`cmsg.rs`), the two datagram
//! backends, and TCP, TLS and WebSocket listeners and connections
//! (`stream/`), which both
//! backends wait on. All `unsafe` of the crate's I/O lives under this module,
//! each block with its `// SAFETY:` note.
//!
//! Two backends behind one trait: `uring` (io_uring: multishot recvmsg over
//! a provided-buffer ring, sends queued as SQEs, one `io_uring_enter` per
//! loop) and `mmsg` (recvmmsg/sendmmsg), the portable fallback for
//! containers whose seccomp profile refuses io_uring. Which one runs is
//! chosen in exactly one place, [`crate::server`].

pub mod bufring;
pub mod cmsg;
pub mod eventfd;
pub mod mmsg;
pub mod socket;
pub mod steer;
pub mod stream;
pub mod uring;

use std::io;
use std::net::SocketAddr;

use crate::transport::Dest;

/// Where a shard writes outgoing datagrams.
pub trait SendQueue {
    /// The next free send buffer, or None when every buffer is in flight.
    fn slot(&mut self) -> Option<&mut [u8]>;
    /// Queues the first `len` bytes of the buffer `slot` returned for
    /// `dest`. A [`Dest::Udp`] goes to its peer, from its `from` address
    /// when given (an `IP_PKTINFO`/`IPV6_PKTINFO` control message; the
    /// kernel refuses an address that is not ours) or from what the
    /// socket's binding picks when None. A [`Dest::Conn`] never reaches a
    /// backend (the shard's `Sends` hands it to the connection's owner);
    /// one that did would not be sent: the slot stays free, and it is
    /// counted as refused, like a datagram the kernel refuses
    /// ([`Backend::flush`] reports both).
    fn commit(&mut self, len: usize, dest: Dest);

    /// Free send buffers (a queue that never runs out says `usize::MAX`):
    /// the backends handle a received datagram only with at least
    /// [`MOST_SENDS_PER_MESSAGE`] free.
    fn free(&self) -> usize {
        usize::MAX
    }
}

/// The most messages the shard sends for one it received: one forward or
/// answer in the stateless proxy; under `--mode stateful`, an INVITE's
/// forward and its 100 Trying, a CANCEL's 200 and ours, or a response's
/// forward with our ACK or an owed CANCEL.
pub const MOST_SENDS_PER_MESSAGE: usize = 3;

/// One received datagram as a backend hands it to the shard.
pub struct Datagram<'a> {
    /// The bytes (cut to the buffer when `truncated`).
    pub bytes: &'a [u8],
    /// The source, when the kernel gave one the backend could read.
    pub source: Option<SocketAddr>,
    /// Our address it arrived at: the IP the kernel reported
    /// (`IP_PKTINFO`/`IPV6_PKTINFO`) with the socket's port, or the
    /// socket's bound address when it reported none (a socket that was not
    /// set up by `socket.rs`). On a wildcard socket this is the address to
    /// name in Via and Record-Route and to answer from.
    pub local: SocketAddr,
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

    /// Pushes queued sends to the kernel; returns how many were refused,
    /// by the kernel or at commit (a destination no backend carries).
    fn flush(&mut self) -> usize;

    /// As [`Backend::flush`], for a caller whose next call is `poll`: a
    /// backend may leave the sends for that `poll` to hand to the kernel
    /// together with its wait, in one system call (io_uring). Refusals
    /// the kernel reports are counted by a later flush.
    fn flush_before_poll(&mut self) -> usize {
        self.flush()
    }

    /// Also waits for the shard's connections ([`stream::Streams`]), so
    /// that a shard asleep for want of datagrams wakes for a connection.
    /// Called after every batch while the shard has a listener or a
    /// connection: io_uring takes the streams into its ring where the
    /// kernel lets it (multishot accept and receive) and submits what they
    /// asked for since the last call; otherwise the backend waits on their
    /// epoll set.
    fn watch_streams(&mut self, streams: &mut stream::Streams);

    /// True when the streams may have work since the last call: the shard
    /// polls them then (in epoll mode a poll that finds nothing costs one
    /// `epoll_wait`). In ring mode their completions are handed over
    /// here.
    fn streams_ready(&mut self, streams: &mut stream::Streams) -> bool;

    /// Makes the next `poll` return without sleeping: work waits outside
    /// the backend that no descriptor will announce (a connection's
    /// messages held for want of a send slot). Without it, a burst over
    /// one connection forwarded to a next hop that does not answer would
    /// move one batch per wake interval.
    fn skip_next_wait(&mut self);

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

/// What the backends' loopback tests share: both must behave the same.
#[cfg(test)]
pub(crate) mod testing {
    use std::net::{IpAddr, SocketAddr, UdpSocket};
    use std::time::{Duration, Instant};

    use socket2::{Domain, Protocol, Socket, Type};

    use super::socket::{bind_shard_socket, enable_pktinfo, SocketOptions, WAKE_INTERVAL};
    use super::{Backend, SendQueue};
    use crate::transport::Dest;

    /// A shard socket on `addr`, set up as the server sets one up.
    pub fn shard_socket(addr: &str) -> UdpSocket {
        let opts = SocketOptions {
            recv_buffer: None,
            send_buffer: None,
        };
        bind_shard_socket(addr.parse().unwrap(), &opts)
            .unwrap()
            .socket
    }

    /// A dual-stack socket on `[::]:0` (IPv4 traffic v4-mapped), with
    /// pktinfo on.
    pub fn dual_stack_socket() -> UdpSocket {
        let s = Socket::new(Domain::IPV6, Type::DGRAM, Some(Protocol::UDP)).unwrap();
        s.set_only_v6(false).unwrap();
        enable_pktinfo(&s).unwrap();
        let any: SocketAddr = "[::]:0".parse().unwrap();
        s.bind(&any.into()).unwrap();
        s.set_read_timeout(Some(WAKE_INTERVAL)).unwrap();
        s.into()
    }

    /// True when this machine has an IPv6 loopback.
    pub fn have_ipv6_loopback() -> bool {
        UdpSocket::bind("[::1]:0").is_ok()
    }

    /// `ip` as a socket of the listen family sees it (v4-mapped on IPv6).
    fn as_seen(ip: IpAddr, v6: bool) -> IpAddr {
        match ip {
            IpAddr::V4(v4) if v6 => IpAddr::V6(v4.to_ipv6_mapped()),
            ip => ip,
        }
    }

    /// `io`, whose wake interval is a minute, told to skip its next wait
    /// with nothing to receive: the poll returns at once, not after the
    /// minute (a bound of 20 s tells the two apart on any machine).
    pub fn a_poll_told_not_to_wait_does_not_sleep<B: Backend>(mut io: B) {
        // The first poll may have set-up to do; then nothing is pending.
        io.skip_next_wait();
        io.poll(|_, _| {}).unwrap();
        io.skip_next_wait();
        let start = Instant::now();
        io.poll(|_, _| panic!("nothing was sent")).unwrap();
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "slept {:?}",
            start.elapsed()
        );
    }

    /// A client on `client` sends one datagram to each of `targets` at the
    /// port of `socket` (the backend's socket, wrapped by `wrap`); the
    /// backend answers each, echoing it, from the address it came to. Checks
    /// the `local` each datagram reports and the source each answer has.
    pub fn answers_leave_from_where_requests_came<B: Backend>(
        socket: UdpSocket,
        client: &str,
        targets: &[&str],
        wrap: impl FnOnce(UdpSocket) -> B,
    ) {
        let listen = socket.local_addr().unwrap();
        let port = listen.port();
        let mut io = wrap(socket);
        let client = client_socket(client);
        let targets: Vec<IpAddr> = targets.iter().map(|t| t.parse().unwrap()).collect();
        for (k, ip) in targets.iter().enumerate() {
            client
                .send_to(&[b'0' + k as u8], SocketAddr::new(*ip, port))
                .unwrap();
        }
        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut refused = 0;
        while got.len() < targets.len() && Instant::now() < deadline {
            io.poll(|d, send| {
                let source = d.source.expect("a source");
                got.push((d.bytes.to_vec(), source, d.local));
                let slot = send.slot().expect("a free slot");
                slot[..d.bytes.len()].copy_from_slice(d.bytes);
                let dest = Dest::Udp {
                    peer: source,
                    from: Some(d.local.ip()),
                };
                send.commit(d.bytes.len(), dest);
            })
            .unwrap();
            refused += io.flush();
        }
        assert_eq!(got.len(), targets.len(), "every datagram came");
        let client_addr = client.local_addr().unwrap();
        let seen = SocketAddr::new(
            as_seen(client_addr.ip(), listen.is_ipv6()),
            client_addr.port(),
        );
        for (bytes, source, local) in &got {
            let k = usize::from(bytes[0] - b'0');
            let want = SocketAddr::new(as_seen(targets[k], listen.is_ipv6()), port);
            assert_eq!(*local, want, "local address of datagram {k}");
            assert_eq!(*source, seen);
        }
        // The answers: each from the address its request was sent to.
        let mut buf = [0u8; 16];
        for _ in &targets {
            let (n, from) = client.recv_from(&mut buf).expect("an answer");
            assert_eq!(n, 1);
            let k = usize::from(buf[0] - b'0');
            assert_eq!(from, SocketAddr::new(targets[k], port), "answer {k}");
        }
        for _ in 0..3 {
            io.poll(|_, _| {}).unwrap();
            refused += io.flush();
        }
        assert_eq!(refused, 0);
    }

    /// The peer of these tests: a socket on `addr` that waits at most 5 s
    /// for an answer, so a missing one fails the test instead of hanging.
    fn client_socket(addr: &str) -> UdpSocket {
        let client = UdpSocket::bind(addr).unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        client
    }

    /// A run of datagrams committed at once leaves in the order committed,
    /// whether or not each carries a source-address control message (the
    /// two take different system calls or opcodes): a 200 overtaking its
    /// 180 fails a strict UAC.
    pub fn a_batch_leaves_in_commit_order<B: Backend>(wrap: impl FnOnce(UdpSocket) -> B) {
        const N: u8 = 100;
        let mut io = wrap(shard_socket("0.0.0.0:0"));
        let client = client_socket("127.0.0.1:0");
        let to = client.local_addr().unwrap();
        let mut refused = 0;
        for k in 0..N {
            if io.send_queue().slot().is_none() {
                refused += io.flush();
            }
            let send = io.send_queue();
            send.slot().expect("a free slot after a flush")[0] = k;
            let from = (k % 2 == 1).then(|| to.ip());
            send.commit(1, Dest::Udp { peer: to, from });
        }
        refused += io.flush();
        assert_eq!(refused, 0);
        let mut buf = [0u8; 4];
        for k in 0..N {
            let (n, _) = client.recv_from(&mut buf).expect("every datagram");
            assert_eq!((n, buf[0]), (1, k), "datagram {k} in order");
        }
    }

    /// A wildcard IPv4 backend refuses, and counts, a send to a connection
    /// and one from an address that is not ours; sends the rest, a
    /// `from: None` one from the address the route picks.
    pub fn refusals_are_counted<B: Backend>(wrap: impl FnOnce(UdpSocket) -> B) {
        let mut io = wrap(shard_socket("0.0.0.0:0"));
        let client = client_socket("127.0.0.1:0");
        let to = client.local_addr().unwrap();
        let send = io.send_queue();
        for (byte, dest) in [
            (b'c', Dest::Conn(crate::transport::ConnId::new(0, 1, 1))),
            (
                b'x',
                Dest::Udp {
                    peer: to,
                    from: Some("192.0.2.1".parse().unwrap()),
                },
            ),
            (b'y', Dest::udp(to)),
        ] {
            send.slot().unwrap()[0] = byte;
            send.commit(1, dest);
        }
        let mut refused = io.flush();
        // io_uring learns of the kernel's refusal from a completion.
        for _ in 0..10 {
            if refused >= 2 {
                break;
            }
            io.poll(|_, _| {}).unwrap();
            refused += io.flush();
        }
        assert_eq!(refused, 2);
        let mut buf = [0u8; 4];
        let (n, from) = client.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"y");
        assert_eq!(from.ip(), to.ip(), "the route picks 127.0.0.1");
        client.set_nonblocking(true).unwrap();
        assert!(client.recv_from(&mut buf).is_err(), "nothing else came");
    }
}
