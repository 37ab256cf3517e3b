//! SIP over TCP, TLS and WebSocket, owned per shard: each shard binds
//! its own `SO_REUSEPORT` listener for every `tcp:` listen address, accepts
//! from it, opens its own connections to next hops, and is the only
//! reader, writer and closer of its connections, for their whole life
//! (ARCHITECTURE.md, "Ownership"). The kernel spreads new connections
//! over the shards' listeners by 4-tuple.
//!
//! Driven by the io_uring ring itself under `--io uring` (see `ring.rs`:
//! multishot accept and receive over provided buffers), or, on the
//! portable path, through an epoll set, level-triggered, polled without
//! waiting: the recvmmsg backend waits on the epoll descriptor beside its
//! UDP socket and says when to poll it, so a container that refuses
//! io_uring loses nothing. Everything after the bytes is shared.
//!
//! # Invariants
//! - A connection reads at most [`READ_CHUNK`] bytes per poll, so one busy
//!   peer cannot starve the others or the UDP socket.
//! - A connection holds bytes only while a message is partial (`rx`) or
//!   the kernel has not taken what it was sent (`tx`): an idle connection
//!   owns no buffer. `rx` never holds more than `max_message +
//!   READ_CHUNK` bytes; `tx` more than [`TX_LIMIT`]: a peer that does not
//!   read its responses is closed, not buffered for.
//! - A framing error closes the connection (RFC 3261 §18.3: the framing
//!   is lost), after the handler has had the chance to answer it.
//! - Nothing here panics on anything a peer sends.

mod conn;
mod deadline;
mod input;
mod outgoing;
mod output;
mod ring;
mod ws;

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::io;
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;

use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use socket2::{Domain, Protocol, Socket, Type};

use crate::transport::stream::{next_frame, Frame, FrameError};
use crate::transport::tls::TlsReloader;
use crate::transport::{ConnId, ConnTable, Transport};
use conn::Conn;
pub use deadline::{Deadline, Deadlines};
pub use outgoing::Outgoing;
pub use ring::{is_stream_tag, RingOp, STREAM_BUF, STREAM_BUFFERS, STREAM_GROUP};

/// Bytes read from one connection per poll.
pub const READ_CHUNK: usize = 65_536;

/// Bytes a connection may have waiting for the kernel before it is closed
/// as a peer that does not read (about a thousand SIP messages): the
/// default of `--max-write-queue`, and the bound of what a connection
/// may deliver while its messages wait for room.
pub const TX_LIMIT: usize = 1 << 20;

/// Connections accepted per listener per poll: a connection flood waits
/// in the listen backlog rather than holding up the shard.
const ACCEPTS_PER_POLL: usize = 64;

/// Why a message could not be sent: what the shard makes of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gone {
    /// Its connection had closed (a request to a registered flow gets 430,
    /// a response goes over a new connection).
    Closed,
    /// The connection to its next hop could not be made: refused,
    /// unreachable, timed out (RFC 3261 §16.9: a stateful proxy acts as
    /// if the next hop answered 503).
    Unreachable,
}

/// Messages for gone connections kept per batch for the shard to answer;
/// the rest are only counted.
const GONE_KEPT: usize = 64;

/// Events taken per `epoll_wait`.
const EVENTS: usize = 256;

/// Listen backlog of each shard's listener.
const BACKLOG: i32 = 1024;

/// The epoll token of listener `i`: from the top of the u64 range, where
/// no connection id falls (the table never hands out slot 0xff_ffff).
fn listener_token(i: usize) -> u64 {
    u64::MAX - i as u64
}

/// Binds a shard's listener to `addr` with `SO_REUSEPORT`, non-blocking.
pub fn bind_listener(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// What a connection delivered.
#[derive(Debug)]
pub enum Received<'a> {
    /// One whole SIP message, framed by its Content-Length (§18.3).
    Message(&'a [u8]),
    /// Bytes that cannot be framed, from the front of what is buffered:
    /// answer them if they parse as a request; the connection closes.
    Unframeable(&'a [u8], FrameError),
}

/// What the streams did since the counts were last taken.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StreamCounts {
    /// Connections accepted.
    pub accepted: u64,
    /// Connections closed at accept because the table was full (or TLS
    /// had no configuration).
    pub refused: u64,
    /// Connections closed at accept because their IP address had its
    /// share of connections already.
    pub refused_per_ip: u64,
    /// Connections closed (by the peer, an error, a framing error or an
    /// overflow).
    pub closed: u64,
    /// Connections closed for a framing error.
    pub frame_errors: u64,
    /// Connections closed because the peer did not read ([`TX_LIMIT`]).
    pub overflows: u64,
    /// Bytes to a connection that was gone.
    pub sends_to_gone: u64,
    /// Connections opened to next hops.
    pub opened: u64,
    /// Messages to a next hop whose connection could not be made.
    pub connect_failed: u64,
    /// Connections closed at a deadline (connect, message, idle).
    pub timed_out: u64,
    /// The same, by the deadline that fired (`Deadline as usize`).
    pub timed_out_by: [u64; 4],
    /// TLS connections closed for a failed handshake or a TLS error.
    pub tls_failed: u64,
    /// TLS handshakes completed, ours to next hops included.
    pub tls_handshakes: u64,
    /// Connections accepted, by transport (`Transport as usize`).
    pub accepted_by: [u64; 5],
    /// Connections closed, by transport.
    pub closed_by: [u64; 5],
    /// Connections refused at accept (`refused`), by transport.
    pub refused_by: [u64; 5],
    /// Connections refused at accept for their address
    /// (`refused_per_ip`), by transport.
    pub refused_per_ip_by: [u64; 5],
    /// TLS connections closed for a TLS error (`tls_failed`), by
    /// transport (TLS or WSS).
    pub tls_failed_by: [u64; 5],
}

impl StreamCounts {
    /// Counts a connection refused at accept (the table full, no TLS
    /// configuration).
    fn refused(&mut self, transport: Transport) {
        self.refused += 1;
        self.refused_by[transport as usize] += 1;
    }
}

struct Listener {
    sock: TcpListener,
    transport: Transport,
    local: SocketAddr,
}

/// One shard's listeners and connections.
pub struct Streams {
    epoll: OwnedFd,
    listeners: Vec<Listener>,
    conns: ConnTable<Conn>,
    events: Vec<libc::epoll_event>,
    scratch: Box<[u8]>,
    max_message: usize,
    /// Connections stalled with whole messages in `rx`: handled first at
    /// the next poll.
    stalled: Vec<ConnId>,
    /// Connections to close once their answers are sent.
    closing: Vec<ConnId>,
    /// This shard's connections to next hops, by address and transport.
    outbound: HashMap<(SocketAddr, Transport), ConnId>,
    /// The client side of outbound TLS; None when it could not be set up
    /// (no roots): a TLS next hop then counts as a failed connect.
    tls_client: Option<Arc<ClientConfig>>,
    /// The name a next hop's certificate must carry, where it is not its
    /// IP address (TLS upstreams given by name).
    tls_names: HashMap<(SocketAddr, Transport), ServerName<'static>>,
    /// Messages that could not be sent, and why, for the shard to answer.
    gone: Vec<(Gone, Vec<u8>)>,
    /// The shard's clock, in milliseconds, as of the last `set_now`.
    now_ms: u64,
    /// When the deadlines were last checked.
    swept_ms: u64,
    /// How long a connection may take at each stage.
    deadlines: Deadlines,
    /// Bytes a connection may have waiting for the kernel.
    tx_limit: usize,
    /// Ids to close after a sweep, and why (kept for its capacity).
    expired: Vec<(ConnId, Deadline)>,
    /// The TLS configuration for `tls:` listeners, reloaded on SIGHUP.
    tls: Option<Arc<TlsReloader>>,
    /// Plaintext a TLS record gave (kept for its capacity).
    plain: Vec<u8>,
    /// Ciphertext to write (kept for its capacity).
    cipher: Vec<u8>,
    /// Allowed `Origin`s for WebSocket handshakes (`--ws-origin`; empty:
    /// any).
    ws_origins: Vec<String>,
    /// What a WebSocket connection's input calls for (kept for its
    /// capacity).
    ws_replies: Vec<u8>,
    /// A SIP message in its WebSocket frame (kept for its capacity).
    ws_frame: Vec<u8>,
    /// Accepted connections open, by the peer's IP address.
    per_ip: HashMap<IpAddr, u32>,
    /// Most accepted connections per IP address; 0: no limit.
    max_per_ip: u32,
    /// The shard these streams belong to (the top byte of their ids).
    shard: u8,
    /// Ring mode ([`ring`]): None while the epoll set drives them.
    ring: Option<ring::RingState>,
    /// Connections open, by transport (`Transport as usize`).
    open_by: [usize; 5],
    counts: StreamCounts,
}

impl Streams {
    /// Shard `shard`'s streams over `listeners` (bound by
    /// [`bind_listener`]), with at most `max_conns` connections and
    /// messages of at most `max_message` bytes.
    pub fn new(
        shard: u8,
        listeners: Vec<(TcpListener, Transport)>,
        max_conns: usize,
        max_message: usize,
    ) -> io::Result<Streams> {
        // SAFETY: epoll_create1 takes no pointers; a non-negative result is
        // a new descriptor that we own from here on.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd was just returned by epoll_create1, owned by no one else.
        let epoll = unsafe { OwnedFd::from_raw_fd(fd) };
        let mut s = Streams {
            epoll,
            listeners: Vec::new(),
            // Slot 0xff_ffff is never handed out (see `listener_token`).
            conns: ConnTable::starting_at(
                shard,
                max_conns.clamp(1, (1 << 24) - 1),
                RandomState::new().hash_one(shard) as u32,
            ),
            events: vec![libc::epoll_event { events: 0, u64: 0 }; EVENTS],
            scratch: vec![0u8; READ_CHUNK].into_boxed_slice(),
            max_message,
            stalled: Vec::new(),
            closing: Vec::new(),
            outbound: HashMap::new(),
            tls_client: None,
            tls_names: HashMap::new(),
            gone: Vec::new(),
            now_ms: 0,
            swept_ms: 0,
            deadlines: Deadlines::default(),
            tx_limit: TX_LIMIT,
            expired: Vec::new(),
            tls: None,
            plain: Vec::new(),
            cipher: Vec::new(),
            ws_origins: Vec::new(),
            ws_replies: Vec::new(),
            ws_frame: Vec::new(),
            per_ip: HashMap::new(),
            max_per_ip: 0,
            shard,
            ring: None,
            open_by: [0; 5],
            counts: StreamCounts::default(),
        };
        for (i, (sock, transport)) in listeners.into_iter().enumerate() {
            let local = sock.local_addr()?;
            s.ctl(
                libc::EPOLL_CTL_ADD,
                sock.as_raw_fd(),
                libc::EPOLLIN as u32,
                listener_token(i),
            )?;
            s.listeners.push(Listener {
                sock,
                transport,
                local,
            });
        }
        Ok(s)
    }

    /// The epoll descriptor: readable when a listener or a connection has
    /// something to do. The backend waits on it.
    pub fn fd(&self) -> RawFd {
        self.epoll.as_raw_fd()
    }

    /// True when connections hold whole messages not handled for want of
    /// a send slot: the next loop polls again without waiting.
    pub fn has_stalled(&self) -> bool {
        !self.stalled.is_empty()
    }

    /// Gives the configuration of TLS connections to next hops.
    pub fn set_tls_client(&mut self, cfg: Arc<ClientConfig>) {
        self.tls_client = Some(cfg);
    }

    /// Sets the names the certificates of next hops at these addresses
    /// must carry (TLS upstreams given by name); any other is checked
    /// against its IP address.
    pub fn set_tls_names(&mut self, names: HashMap<(SocketAddr, Transport), ServerName<'static>>) {
        self.tls_names = names;
    }

    /// Gives the TLS configuration `tls:` listeners accept with; without
    /// it a TLS connection is refused at accept.
    pub fn set_tls(&mut self, tls: Arc<TlsReloader>) {
        self.tls = Some(tls);
    }

    /// Sets the `Origin`s a WebSocket handshake may come from
    /// (`--ws-origin`); empty lets any in.
    pub fn set_ws_origins(&mut self, origins: Vec<String>) {
        self.ws_origins = origins;
    }

    /// Sets how many bytes a connection may have waiting for the kernel
    /// before it is closed as a peer that does not read
    /// (`--max-write-queue`).
    pub fn set_max_write_queue(&mut self, bytes: usize) {
        self.tx_limit = bytes.max(1);
    }

    /// Sets how many connections this shard accepts from one IP address
    /// (`--max-connections-per-ip`, this shard's share); 0: no limit.
    pub fn set_max_per_ip(&mut self, n: usize) {
        self.max_per_ip = u32::try_from(n).unwrap_or(u32::MAX);
    }

    /// The messages that could not be sent since the last call: those
    /// `send_all` found no connection for, and those that waited for a
    /// connect that failed.
    pub fn take_gone(&mut self) -> Vec<(Gone, Vec<u8>)> {
        std::mem::take(&mut self.gone)
    }

    /// Keeps the messages in `pending`, the plaintext that waited on a
    /// connection of ours whose connect failed, for the shard
    /// ([`Gone::Unreachable`]); a bounded number per batch.
    fn keep_unreachable(&mut self, pending: &[u8]) {
        let mut rest = pending;
        while let Ok(Frame::Message { len }) = next_frame(rest, usize::MAX) {
            let (msg, after) = rest.split_at(len.min(rest.len()));
            if self.gone.len() < GONE_KEPT {
                self.gone.push((Gone::Unreachable, msg.to_vec()));
            }
            rest = after;
        }
    }

    /// True with no listener and no connection: nothing to poll.
    pub fn is_idle(&self) -> bool {
        self.listeners.is_empty() && self.conns.is_empty()
    }

    /// Connections open.
    pub fn open(&self) -> usize {
        self.conns.len()
    }

    /// Connections open, by transport (`Transport as usize`).
    pub fn open_by(&self) -> [usize; 5] {
        self.open_by
    }

    /// The counts since the last call, cleared.
    pub fn take_counts(&mut self) -> StreamCounts {
        std::mem::take(&mut self.counts)
    }

    pub(super) fn ctl(
        &self,
        op: libc::c_int,
        fd: RawFd,
        events: u32,
        token: u64,
    ) -> io::Result<()> {
        let mut ev = libc::epoll_event { events, u64: token };
        // SAFETY: `ev` is a live epoll_event; the kernel copies it.
        if unsafe { libc::epoll_ctl(self.epoll.as_raw_fd(), op, fd, &mut ev) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::Source;
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::time::{Duration, Instant};

    fn streams(max_conns: usize) -> (Streams, SocketAddr) {
        let l = bind_listener("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = l.local_addr().unwrap();
        let s = Streams::new(0, vec![(l, Transport::Tcp)], max_conns, 4096).unwrap();
        (s, addr)
    }

    const MSG: &[u8] = b"OPTIONS sip:x SIP/2.0\r\nContent-Length: 0\r\n\r\n";

    /// Polls until `until` holds or a second passes, collecting messages.
    fn poll_until(
        s: &mut Streams,
        got: &mut Vec<(Vec<u8>, Source)>,
        room: &mut usize,
        until: impl Fn(&Streams, &[(Vec<u8>, Source)]) -> bool,
    ) {
        let deadline = Instant::now() + Duration::from_secs(1);
        while !until(s, got) && Instant::now() < deadline {
            s.poll(|r, src| {
                if *room == 0 {
                    return false;
                }
                *room -= 1;
                if let Received::Message(m) = r {
                    got.push((m.to_vec(), *src));
                }
                true
            });
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn messages_arrive_with_their_connection_and_answers_go_back() {
        let (mut s, addr) = streams(8);
        let mut c = TcpStream::connect(addr).unwrap();
        c.write_all(&[MSG, MSG].concat()).unwrap();
        let (mut got, mut room) = (Vec::new(), usize::MAX);
        poll_until(&mut s, &mut got, &mut room, |_, g| g.len() == 2);
        assert_eq!(got.len(), 2);
        let src = got[0].1;
        assert_eq!(src.transport, Transport::Tcp);
        assert_eq!(src.peer, c.local_addr().unwrap());
        assert_eq!(src.local, addr);
        let conn = src.conn.unwrap();
        assert_eq!(conn.shard(), 0);
        let mut out = Outgoing::default();
        out.push(conn, b"answer");
        s.send_all(&mut out);
        assert!(out.is_empty());
        let mut buf = [0u8; 6];
        c.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"answer");
        assert_eq!(s.take_counts().accepted, 1);
    }

    #[test]
    fn without_room_messages_wait_in_order() {
        let (mut s, addr) = streams(8);
        let mut c = TcpStream::connect(addr).unwrap();
        let three: Vec<u8> = (1..=3)
            .flat_map(|i| {
                format!("OPTIONS sip:{i} SIP/2.0\r\nContent-Length: 0\r\n\r\n").into_bytes()
            })
            .collect();
        c.write_all(&three).unwrap();
        let (mut got, mut room) = (Vec::new(), 1);
        poll_until(&mut s, &mut got, &mut room, |_, g| !g.is_empty());
        assert_eq!(got.len(), 1);
        assert!(s.has_stalled(), "two left for want of room");
        room = 5;
        poll_until(&mut s, &mut got, &mut room, |_, g| g.len() == 3);
        let firsts: Vec<u8> = got.iter().map(|(m, _)| m[12]).collect();
        assert_eq!(firsts, b"123", "in arrival order");
        assert!(!s.has_stalled());
    }

    #[test]
    fn a_ping_is_answered_and_a_closed_peer_is_closed() {
        let (mut s, addr) = streams(8);
        let mut c = TcpStream::connect(addr).unwrap();
        c.write_all(b"\r\n\r\n").unwrap();
        let (mut got, mut room) = (Vec::new(), usize::MAX);
        poll_until(&mut s, &mut got, &mut room, |s, _| s.open() == 1);
        c.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
        let mut pong = [0u8; 2];
        // The ping may take another poll to be read.
        poll_until(&mut s, &mut got, &mut room, |_, _| false);
        c.read_exact(&mut pong).unwrap();
        assert_eq!(&pong, b"\r\n");
        drop(c);
        poll_until(&mut s, &mut got, &mut room, |s, _| s.open() == 0);
        assert_eq!(s.open(), 0);
        assert_eq!(s.take_counts().closed, 1);
    }

    #[test]
    fn past_the_limit_a_connection_is_refused() {
        let (mut s, addr) = streams(1);
        let _a = TcpStream::connect(addr).unwrap();
        let mut b = TcpStream::connect(addr).unwrap();
        let (mut got, mut room) = (Vec::new(), usize::MAX);
        poll_until(&mut s, &mut got, &mut room, |s, _| s.counts.refused == 1);
        assert_eq!(s.open(), 1);
        b.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
        let mut byte = [0u8; 1];
        assert!(
            matches!(b.read(&mut byte), Ok(0) | Err(_)),
            "closed at accept"
        );
    }

    /// A connection to `addr` from `ip` (any loopback address).
    fn connect_from(ip: &str, addr: SocketAddr) -> TcpStream {
        let sock = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        let from: SocketAddr = format!("{ip}:0").parse().unwrap();
        sock.bind(&from.into()).unwrap();
        sock.connect(&addr.into()).unwrap();
        sock.into()
    }

    #[test]
    fn one_address_gets_its_share_and_others_still_get_in() {
        let (mut s, addr) = streams(8);
        s.set_max_per_ip(2);
        let (mut got, mut room) = (Vec::new(), usize::MAX);
        let a = connect_from("127.0.0.1", addr);
        let _b = connect_from("127.0.0.1", addr);
        poll_until(&mut s, &mut got, &mut room, |s, _| s.open() == 2);
        let mut c = connect_from("127.0.0.1", addr);
        let _d = connect_from("127.0.0.2", addr);
        poll_until(&mut s, &mut got, &mut room, |s, _| s.open() == 3);
        let counts = s.take_counts();
        assert_eq!((counts.accepted, counts.refused_per_ip), (3, 1));
        assert_eq!(counts.refused, 0, "the table had room");
        c.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
        assert!(
            matches!(c.read(&mut [0u8; 1]), Ok(0) | Err(_)),
            "closed at accept"
        );
        // One of 127.0.0.1's closes: it may have another.
        drop(a);
        poll_until(&mut s, &mut got, &mut room, |s, _| s.open() == 2);
        let _e = connect_from("127.0.0.1", addr);
        poll_until(&mut s, &mut got, &mut room, |s, _| s.open() == 3);
        assert_eq!(s.open(), 3);
        assert_eq!(s.take_counts().refused_per_ip, 0);
    }

    #[test]
    fn a_peer_that_does_not_read_is_closed_past_the_limit() {
        let (mut s, addr) = streams(8);
        let mut c = TcpStream::connect(addr).unwrap();
        c.write_all(MSG).unwrap();
        let (mut got, mut room) = (Vec::new(), usize::MAX);
        poll_until(&mut s, &mut got, &mut room, |_, g| !g.is_empty());
        let conn = got[0].1.conn.unwrap();
        // The peer reads nothing: its socket buffers fill, then `tx`.
        let chunk = vec![b'x'; 64 * 1024];
        let mut out = Outgoing::default();
        for _ in 0..(TX_LIMIT / chunk.len() + 64) {
            out.push(conn, &chunk);
            s.send_all(&mut out);
            if s.open() == 0 {
                break;
            }
        }
        assert_eq!(s.open(), 0);
        assert_eq!(s.take_counts().overflows, 1);
        drop(c);
    }

    #[test]
    fn silence_and_a_message_left_unfinished_close_at_their_deadlines() {
        let (mut s, addr) = streams(8);
        let message = Deadlines::default().message.as_millis() as u64;
        s.set_deadlines(Deadlines {
            first_byte: Duration::from_secs(40),
            idle: Duration::from_secs(60),
            ..Deadlines::default()
        });
        let (mut got, mut room) = (Vec::new(), usize::MAX);
        let mut quiet = TcpStream::connect(addr).unwrap();
        let mut slow = TcpStream::connect(addr).unwrap();
        slow.write_all(b"OPTIONS sip:x SIP/2.0\r\nVia: ").unwrap();
        poll_until(&mut s, &mut got, &mut room, |s, _| {
            s.conns.iter().any(|(_, c)| !c.rx.is_empty()) && s.open() == 2
        });
        // Half a minute on, the slow message is past its deadline.
        s.tick(message - 1000);
        assert_eq!(s.open(), 2);
        s.tick(message + 1000);
        assert_eq!(s.open(), 1, "the unfinished message");
        quiet.write_all(MSG).unwrap();
        poll_until(&mut s, &mut got, &mut room, |_, g| !g.is_empty());
        // It spoke at message + 1000 (before its first-byte deadline):
        // silent from then on.
        s.tick(message + 60_000);
        assert_eq!(s.open(), 1);
        s.tick(message + 62_000);
        assert_eq!(s.open(), 0, "silent past the idle timeout");
        let counts = s.take_counts();
        assert_eq!(counts.timed_out, 2);
        let by = |d: Deadline| counts.timed_out_by[d as usize];
        assert_eq!((by(Deadline::Message), by(Deadline::Idle)), (1, 1));
        assert_eq!(by(Deadline::FirstByte), 0);
        quiet
            .set_read_timeout(Some(Duration::from_secs(1)))
            .unwrap();
        let mut byte = [0u8; 1];
        assert!(matches!(quiet.read(&mut byte), Ok(0) | Err(_)));
    }

    #[test]
    fn a_connection_that_says_nothing_closes_at_the_first_byte_deadline() {
        let (mut s, addr) = streams(8);
        let (mut got, mut room) = (Vec::new(), usize::MAX);
        let mut mute = TcpStream::connect(addr).unwrap();
        let mut pinger = TcpStream::connect(addr).unwrap();
        // A keep-alive is a first byte too.
        pinger.write_all(b"\r\n\r\n").unwrap();
        poll_until(&mut s, &mut got, &mut room, |s, _| {
            s.open() == 2 && s.conns.iter().any(|(_, c)| c.heard)
        });
        let first_byte = Deadlines::default().first_byte.as_millis() as u64;
        s.tick(first_byte - 1000);
        assert_eq!(s.open(), 2);
        s.tick(first_byte + 1000);
        assert_eq!(s.open(), 1, "the mute one");
        let counts = s.take_counts();
        assert_eq!(counts.timed_out_by[Deadline::FirstByte as usize], 1);
        mute.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
        assert!(matches!(mute.read(&mut [0u8; 1]), Ok(0) | Err(_)));
        drop(pinger);
    }

    #[test]
    fn unframeable_bytes_are_shown_then_the_connection_closes() {
        let (mut s, addr) = streams(8);
        let mut c = TcpStream::connect(addr).unwrap();
        c.write_all(b"OPTIONS sip:x SIP/2.0\r\nCSeq: 1 OPTIONS\r\n\r\n")
            .unwrap();
        let mut refused = None;
        let deadline = Instant::now() + Duration::from_secs(1);
        while refused.is_none() && Instant::now() < deadline {
            s.poll(|r, _| {
                if let Received::Unframeable(bytes, e) = r {
                    refused = Some((bytes.len(), e));
                }
                true
            });
        }
        assert_eq!(refused, Some((42, FrameError::NoContentLength)));
        s.send_all(&mut Outgoing::default());
        assert_eq!(s.open(), 0);
        c.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
        let mut byte = [0u8; 1];
        assert!(matches!(c.read(&mut byte), Ok(0) | Err(_)));
    }
}
