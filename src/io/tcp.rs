//! SIP over TCP, owned per shard, on the portable path: each shard binds
//! its own `SO_REUSEPORT` listener for every `tcp:` listen address, accepts
//! from it, opens its own connections to next hops, and is the only
//! reader, writer and closer of its connections, for their whole life
//! (ARCHITECTURE.md, "Ownership"). The kernel spreads new connections
//! over the shards' listeners by 4-tuple.
//!
//! Driven through an epoll set, level-triggered, polled without waiting:
//! the shard's backend (io_uring or recvmmsg) waits on the epoll
//! descriptor beside its UDP socket and says when to poll it, so both
//! backends carry TCP the same way, and a container that refuses io_uring
//! loses nothing.
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

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;

use rustls::ClientConfig;

use socket2::{Domain, Protocol, Socket, Type};

use super::ws::{self, WsConn};
use crate::transport::stream::{Frame, FrameError, Framer, PONG};
use crate::transport::tls::{TlsClientSession, TlsError, TlsReloader, TlsSession};
use crate::transport::{ConnId, ConnTable, Source, Transport};

/// Bytes read from one connection per poll.
pub const READ_CHUNK: usize = 65_536;

/// Bytes a connection may have waiting for the kernel before it is closed
/// as a peer that does not read (about a thousand SIP messages).
pub const TX_LIMIT: usize = 1 << 20;

/// Connections accepted per listener per poll: a connection flood waits
/// in the listen backlog rather than holding up the shard.
const ACCEPTS_PER_POLL: usize = 64;

/// Messages for gone connections kept per batch for the shard to answer;
/// the rest are only counted.
const GONE_KEPT: usize = 64;

/// A connect of ours must complete within this (ms).
pub const CONNECT_MS: u64 = 10_000;

/// A message begun must be complete within this (ms): 64 x T1, the time
/// a UDP transaction would have been given (RFC 3261 §17.1.1.2).
pub const MESSAGE_MS: u64 = 32_000;

/// How long a connection may stay silent by default (ms): ten minutes,
/// well above the 2-minute CRLF keep-alive RFC 5626 §4.4.1 has UAs send on
/// a registered flow.
pub const DEFAULT_IDLE_MS: u64 = 600_000;

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
    /// Connections closed at accept because the table was full.
    pub refused: u64,
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
    /// TLS connections closed for a failed handshake or a TLS error.
    pub tls_failed: u64,
}

/// Messages for this shard's connections, queued while the shard handles
/// a batch and handed to the connections after it ([`Streams::send_all`]),
/// so that a handler can answer on the connection it is reading.
#[derive(Debug, Default)]
pub struct Outgoing {
    bytes: Vec<u8>,
    items: Vec<(To, usize, usize)>,
}

/// Where a queued message goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum To {
    /// A connection of this shard.
    Conn(ConnId),
    /// This shard's own connection to a next hop over a transport (TCP
    /// or TLS), opened if absent.
    Peer(SocketAddr, Transport),
}

impl Outgoing {
    /// Queues `data` for connection `conn`.
    pub fn push(&mut self, conn: ConnId, data: &[u8]) {
        self.queue(To::Conn(conn), data);
    }

    /// Queues `data` for this shard's connection to `peer` over
    /// `transport` (TCP or TLS), which is opened if the shard has none.
    pub fn push_to(&mut self, peer: SocketAddr, transport: Transport, data: &[u8]) {
        self.queue(To::Peer(peer, transport), data);
    }

    fn queue(&mut self, to: To, data: &[u8]) {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(data);
        self.items.push((to, start, data.len()));
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Drops what is queued (a shard with no connections); returns how
    /// many messages that was.
    pub fn clear(&mut self) -> usize {
        let n = self.items.len();
        self.items.clear();
        self.bytes.clear();
        n
    }
}

struct Listener {
    sock: TcpListener,
    transport: Transport,
    local: SocketAddr,
}

struct Conn {
    sock: TcpStream,
    transport: Transport,
    peer: SocketAddr,
    local: SocketAddr,
    framer: Framer,
    /// Bytes of a partial message (or of whole ones left for want of a
    /// send slot), front first.
    rx: Vec<u8>,
    /// Bytes the kernel has not taken yet.
    tx: Vec<u8>,
    /// EPOLLOUT is armed (`tx` is not empty, or a connect is under way).
    writing: bool,
    /// A connect of ours not yet complete: `tx` waits for it.
    connecting: bool,
    /// When it was accepted or opened, in the shard's milliseconds.
    since_ms: u64,
    /// When it last delivered bytes.
    last_rx_ms: u64,
    /// When `rx` last went from empty to holding a partial message.
    partial_since_ms: u64,
    /// Its TLS state, for a connection accepted on a `tls:` listener:
    /// what is read is ciphertext, `rx` holds plaintext, and what is sent
    /// is encrypted before `tx`.
    tls: Option<Box<Tls>>,
    /// Keep-alive pings framed and not yet answered.
    pongs_due: usize,
    /// Its WebSocket state, for a connection accepted on a `ws:` or
    /// `wss:` listener: `rx` holds frames, not a byte stream of SIP.
    ws: Option<Box<WsConn>>,
    /// The next hop this connection was opened to, as it is known in
    /// `Streams::outbound`; None for an accepted one.
    opened_to: Option<SocketAddr>,
}

/// A connection's TLS side: the server's for one we accepted, the
/// client's for one we opened to a next hop.
enum Tls {
    Server(TlsSession),
    Client(TlsClientSession),
}

impl Tls {
    fn receive(&mut self, cipher: &[u8], plain: &mut Vec<u8>) -> Result<(), TlsError> {
        match self {
            Tls::Server(s) => s.receive(cipher, plain),
            Tls::Client(c) => c.receive(cipher, plain),
        }
    }

    fn send(&mut self, plain: &[u8]) -> Result<(), TlsError> {
        match self {
            Tls::Server(s) => s.send(plain),
            Tls::Client(c) => c.send(plain),
        }
    }

    fn take_outgoing(&mut self, out: &mut Vec<u8>) {
        match self {
            Tls::Server(s) => s.take_outgoing(out),
            Tls::Client(c) => c.take_outgoing(out),
        }
    }

    fn is_handshaking(&self) -> bool {
        match self {
            Tls::Server(s) => s.is_handshaking(),
            Tls::Client(c) => c.is_handshaking(),
        }
    }

    fn peer_closed(&self) -> bool {
        match self {
            Tls::Server(s) => s.peer_closed(),
            Tls::Client(c) => c.peer_closed(),
        }
    }
}

/// How a connection's handling ended.
pub(super) enum Next {
    /// Read everything; wait for more.
    Idle,
    /// Whole messages are left in `rx` for want of room to answer.
    Stalled,
    /// Close it.
    Close,
    /// Close it once the answers queued for it are sent.
    CloseAfterSend,
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
    /// Messages for connections that had gone, for the shard to answer.
    gone: Vec<Vec<u8>>,
    /// The shard's clock, in milliseconds, as of the last `set_now`.
    now_ms: u64,
    /// When the deadlines were last checked.
    swept_ms: u64,
    /// How long a connection may stay silent.
    idle_ms: u64,
    /// Ids to close after a sweep (kept for its capacity).
    expired: Vec<ConnId>,
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
            gone: Vec::new(),
            now_ms: 0,
            swept_ms: 0,
            idle_ms: DEFAULT_IDLE_MS,
            expired: Vec::new(),
            tls: None,
            plain: Vec::new(),
            cipher: Vec::new(),
            ws_origins: Vec::new(),
            ws_replies: Vec::new(),
            ws_frame: Vec::new(),
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

    /// Sets how long a connection may deliver nothing before it is closed
    /// (`--tcp-idle-timeout`).
    pub fn set_idle_timeout(&mut self, idle: std::time::Duration) {
        self.idle_ms = u64::try_from(idle.as_millis()).unwrap_or(u64::MAX).max(1);
    }

    /// Advances the clock the deadlines run on (the shard's milliseconds)
    /// and, once a second, closes the connections past one: a connect
    /// not done in [`CONNECT_MS`], a partial message not completed in
    /// [`MESSAGE_MS`] (a slow sender holding a buffer), and a connection
    /// silent for the idle timeout.
    pub fn tick(&mut self, now_ms: u64) {
        self.now_ms = now_ms;
        if now_ms < self.swept_ms + 1000 || self.conns.is_empty() {
            return;
        }
        self.swept_ms = now_ms;
        let mut expired = std::mem::take(&mut self.expired);
        for (id, c) in self.conns.iter() {
            let handshaking = c.tls.as_ref().is_some_and(|t| t.is_handshaking());
            let late_connect = (c.connecting || handshaking) && now_ms >= c.since_ms + CONNECT_MS;
            let slow_message = !c.rx.is_empty() && now_ms >= c.partial_since_ms + MESSAGE_MS;
            let idle = now_ms >= c.last_rx_ms + self.idle_ms;
            if late_connect || slow_message || idle {
                expired.push(id);
            }
        }
        for &id in &expired {
            if let Some(c) = self.conns.get(id) {
                if c.connecting {
                    self.counts.connect_failed += 1;
                }
            }
            self.counts.timed_out += 1;
            self.close(id);
        }
        expired.clear();
        self.expired = expired;
    }

    /// The messages `send_all` found no connection for since the last
    /// call.
    pub fn take_gone(&mut self) -> Vec<Vec<u8>> {
        std::mem::take(&mut self.gone)
    }

    /// True with no listener and no connection: nothing to poll.
    pub fn is_idle(&self) -> bool {
        self.listeners.is_empty() && self.conns.is_empty()
    }

    /// Connections open.
    pub fn open(&self) -> usize {
        self.conns.len()
    }

    /// The counts since the last call, cleared.
    pub fn take_counts(&mut self) -> StreamCounts {
        std::mem::take(&mut self.counts)
    }

    fn ctl(&self, op: libc::c_int, fd: RawFd, events: u32, token: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event { events, u64: token };
        // SAFETY: `ev` is a live epoll_event; the kernel copies it.
        if unsafe { libc::epoll_ctl(self.epoll.as_raw_fd(), op, fd, &mut ev) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Accepts, reads and writes what is ready, without waiting. `handle`
    /// gets each message with its source and returns false when it has no
    /// room to handle it (no free send slot): the message and those after
    /// it stay buffered for the next poll.
    pub fn poll(&mut self, mut handle: impl FnMut(Received<'_>, &Source) -> bool) {
        // Messages left over from last time go first, in arrival order.
        let stalled = std::mem::take(&mut self.stalled);
        for (k, &id) in stalled.iter().enumerate() {
            match self.handle_buffered(id, &mut handle) {
                Next::Stalled => {
                    // Still no room: keep the rest for the next poll.
                    self.stalled.extend_from_slice(&stalled[k..]);
                    return;
                }
                next => self.after(id, next),
            }
        }
        // SAFETY: `events` is a live array of EVENTS epoll_event structs.
        let n = unsafe {
            libc::epoll_wait(
                self.epoll.as_raw_fd(),
                self.events.as_mut_ptr(),
                EVENTS as libc::c_int,
                0,
            )
        };
        for k in 0..usize::try_from(n).unwrap_or(0) {
            let libc::epoll_event { events, u64: token } = self.events[k];
            if token > listener_token(self.listeners.len()) {
                self.accept((u64::MAX - token) as usize);
                continue;
            }
            let id = ConnId(token);
            if events & libc::EPOLLOUT as u32 != 0 && !self.write_out(id) {
                self.close(id);
                continue;
            }
            let readable = libc::EPOLLIN | libc::EPOLLHUP | libc::EPOLLERR | libc::EPOLLRDHUP;
            if events & readable as u32 != 0 && !self.stalled.contains(&id) {
                let next = self.read(id, &mut handle);
                self.after(id, next);
            }
        }
    }

    /// Acts on how a connection's handling ended; arms EPOLLOUT when it
    /// left bytes for the kernel (a pong).
    fn after(&mut self, id: ConnId, next: Next) {
        let pongs = self
            .conns
            .get_mut(id)
            .map_or(0, |c| std::mem::take(&mut c.pongs_due));
        for _ in 0..pongs {
            if !matches!(next, Next::Close) && !self.send(id, PONG) {
                return self.close(id);
            }
        }
        match next {
            Next::Idle => {}
            Next::Stalled => self.stalled.push(id),
            Next::Close => return self.close(id),
            Next::CloseAfterSend => {
                // Read no more from it; `send_all` closes it.
                self.closing.push(id);
                if let Some(conn) = self.conns.get(id) {
                    let _ = self.ctl(libc::EPOLL_CTL_DEL, conn.sock.as_raw_fd(), 0, 0);
                }
                return;
            }
        }
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        if conn.tx.is_empty() || conn.writing {
            return;
        }
        conn.writing = true;
        let fd = conn.sock.as_raw_fd();
        let events = (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLOUT) as u32;
        if self.ctl(libc::EPOLL_CTL_MOD, fd, events, id.0).is_err() {
            self.close(id);
        }
    }

    fn accept(&mut self, i: usize) {
        let Some(l) = self.listeners.get(i) else {
            return;
        };
        let (transport, local) = (l.transport, l.local);
        for _ in 0..ACCEPTS_PER_POLL {
            let Some(l) = self.listeners.get(i) else {
                return;
            };
            let (sock, peer) = match l.sock.accept() {
                Ok(a) => a,
                // WouldBlock: the backlog is empty. Anything else (EMFILE,
                // a connection reset before it was taken) ends this round.
                Err(_) => return,
            };
            if sock.set_nonblocking(true).is_err() {
                continue;
            }
            // SIP messages are whole writes; waiting for an ACK to
            // coalesce them only adds latency.
            let _ = sock.set_nodelay(true);
            let local = sock.local_addr().unwrap_or(local);
            let fd = sock.as_raw_fd();
            let conn = Conn {
                sock,
                transport,
                peer,
                local,
                framer: Framer::default(),
                rx: Vec::new(),
                tx: Vec::new(),
                writing: false,
                connecting: false,
                opened_to: None,
                since_ms: self.now_ms,
                last_rx_ms: self.now_ms,
                partial_since_ms: self.now_ms,
                tls: None,
                pongs_due: 0,
                ws: matches!(transport, Transport::Ws | Transport::Wss)
                    .then(|| Box::new(WsConn::new(self.max_message))),
            };
            let mut conn = conn;
            if matches!(transport, Transport::Tls | Transport::Wss) {
                // The configuration current at accept: a reload (SIGHUP)
                // applies to the connections that follow.
                let session = self.tls.as_ref().map(|r| TlsSession::new(r.current()));
                match session {
                    Some(Ok(s)) => conn.tls = Some(Box::new(Tls::Server(s))),
                    _ => {
                        self.counts.refused += 1;
                        continue;
                    }
                }
            }
            let Ok(id) = self.conns.insert(conn) else {
                // Full: the connection is dropped (closed) at once.
                self.counts.refused += 1;
                continue;
            };
            let events = (libc::EPOLLIN | libc::EPOLLRDHUP) as u32;
            if self.ctl(libc::EPOLL_CTL_ADD, fd, events, id.0).is_err() {
                self.conns.remove(id);
                self.counts.refused += 1;
                continue;
            }
            self.counts.accepted += 1;
        }
    }

    /// Reads once from `id` and handles the messages now whole.
    fn read(&mut self, id: ConnId, handle: &mut impl FnMut(Received<'_>, &Source) -> bool) -> Next {
        let Some(conn) = self.conns.get_mut(id) else {
            return Next::Idle;
        };
        let n = match conn.sock.read(&mut self.scratch) {
            Ok(0) => return Next::Close,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Next::Idle,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Next::Idle,
            Err(_) => return Next::Close,
        };
        conn.last_rx_ms = self.now_ms;
        let Some(tls) = conn.tls.as_mut() else {
            return self.handle_read(id, n, handle);
        };
        // TLS: decrypt into `plain`; handshake records and alerts go out.
        let mut plain = std::mem::take(&mut self.plain);
        let mut cipher = std::mem::take(&mut self.cipher);
        plain.clear();
        cipher.clear();
        let received = tls.receive(&self.scratch[..n], &mut plain);
        tls.take_outgoing(&mut cipher);
        let peer_closed = tls.peer_closed();
        let sent = cipher.is_empty() || self.send_raw(id, &cipher);
        self.cipher = cipher;
        if received.is_err() {
            // The alert is queued or written; the framing is lost.
            self.plain = plain;
            self.counts.tls_failed += 1;
            return Next::CloseAfterSend;
        }
        let next = if !sent {
            Next::Close
        } else {
            self.handle_plain(id, &plain, handle)
        };
        self.plain = plain;
        if peer_closed && matches!(next, Next::Idle) {
            return Next::CloseAfterSend;
        }
        next
    }

    /// Handles `n` bytes just read into the read buffer (plaintext).
    fn handle_read(
        &mut self,
        id: ConnId,
        n: usize,
        handle: &mut impl FnMut(Received<'_>, &Source) -> bool,
    ) -> Next {
        let scratch = std::mem::take(&mut self.scratch);
        let next = self.handle_plain(id, &scratch[..n], handle);
        self.scratch = scratch;
        next
    }

    /// Frames and handles `bytes`, plaintext that `id` delivered after
    /// what its `rx` holds.
    fn handle_plain(
        &mut self,
        id: ConnId,
        bytes: &[u8],
        handle: &mut impl FnMut(Received<'_>, &Source) -> bool,
    ) -> Next {
        let Some(conn) = self.conns.get_mut(id) else {
            return Next::Idle;
        };
        if !conn.rx.is_empty() || conn.ws.is_some() {
            conn.rx.extend_from_slice(bytes);
            return self.handle_buffered(id, handle);
        }
        // The common case: whole messages straight from the read buffer;
        // only a partial tail is copied.
        let max = self.max_message;
        let (used, next) = frame_all(id, conn, bytes, max, handle);
        if used < bytes.len() {
            conn.partial_since_ms = self.now_ms;
        }
        conn.rx.extend_from_slice(&bytes[used..]);
        next
    }

    /// Handles the whole messages in `id`'s `rx`.
    fn handle_buffered(
        &mut self,
        id: ConnId,
        handle: &mut impl FnMut(Received<'_>, &Source) -> bool,
    ) -> Next {
        let max = self.max_message;
        let Some(conn) = self.conns.get_mut(id) else {
            return Next::Idle;
        };
        if conn.ws.is_some() {
            return self.handle_ws(id, handle);
        }
        let rx = std::mem::take(&mut conn.rx);
        let (used, next) = frame_all(id, conn, &rx, max, handle);
        conn.rx = rx;
        conn.rx.drain(..used);
        if used > 0 && !conn.rx.is_empty() {
            // A new partial message starts its own clock.
            conn.partial_since_ms = self.now_ms;
        }
        if conn.rx.is_empty() && conn.rx.capacity() > READ_CHUNK {
            // A large message is done: give its memory back.
            conn.rx = Vec::new();
        }
        next
    }

    /// Handles what a WebSocket connection has buffered (see `ws.rs`) and
    /// writes back what that calls for.
    fn handle_ws(
        &mut self,
        id: ConnId,
        handle: &mut impl FnMut(Received<'_>, &Source) -> bool,
    ) -> Next {
        let Some(conn) = self.conns.get_mut(id) else {
            return Next::Idle;
        };
        let Some(mut ws) = conn.ws.take() else {
            return Next::Idle;
        };
        let src = source_of(id, conn);
        let mut rx = std::mem::take(&mut conn.rx);
        let before = rx.len();
        let mut replies = std::mem::take(&mut self.ws_replies);
        replies.clear();
        let next = ws::input(
            &mut ws,
            &mut rx,
            &src,
            &self.ws_origins,
            &mut replies,
            handle,
        );
        if let Some(conn) = self.conns.get_mut(id) {
            if !rx.is_empty() && rx.len() != before {
                conn.partial_since_ms = self.now_ms;
            }
            conn.rx = rx;
            conn.ws = Some(ws);
        }
        let sent = replies.is_empty() || self.send_stream(id, &replies);
        self.ws_replies = replies;
        if sent {
            next
        } else {
            Next::Close
        }
    }

    /// Hands every queued message to its connection (each of this shard).
    pub fn send_all(&mut self, out: &mut Outgoing) {
        for k in 0..out.items.len() {
            let (to, start, len) = out.items[k];
            let data = &out.bytes[start..start + len];
            let id = match to {
                To::Conn(id) if self.conns.get(id).is_none() => {
                    self.counts.sends_to_gone += 1;
                    // Kept for the shard to answer (a 430 for a request
                    // to a flow), a bounded number per batch.
                    if self.gone.len() < GONE_KEPT {
                        self.gone.push(data.to_vec());
                    }
                    continue;
                }
                To::Conn(id) => id,
                To::Peer(peer, transport) => match self.connection_to(peer, transport) {
                    Some(id) => id,
                    None => {
                        self.counts.connect_failed += 1;
                        continue;
                    }
                },
            };
            if !self.send(id, data) {
                self.close(id);
            }
        }
        out.items.clear();
        out.bytes.clear();
        // Connections that lost their framing: their answers are written
        // (or were refused by the kernel); now they close.
        for id in std::mem::take(&mut self.closing) {
            if let Some(conn) = self.conns.get_mut(id) {
                let _ = conn.sock.write(&conn.tx);
            }
            self.counts.frame_errors += 1;
            self.close(id);
        }
        if out.bytes.capacity() > 4 * TX_LIMIT {
            out.bytes = Vec::new();
        }
    }

    /// This shard's connection to `peer`: the open one, or a new one whose
    /// connect is under way (what is sent meanwhile waits for it). None
    /// when the table is full or the socket cannot be made.
    fn connection_to(&mut self, peer: SocketAddr, transport: Transport) -> Option<ConnId> {
        if let Some(&id) = self.outbound.get(&(peer, transport)) {
            if self.conns.get(id).is_some() {
                return Some(id);
            }
        }
        // TLS toward the next hop's address (a URI host here is an IP:
        // its certificate must name that IP).
        let tls = match transport {
            Transport::Tcp => None,
            Transport::Tls => {
                let cfg = self.tls_client.clone()?;
                let name = rustls::pki_types::ServerName::from(peer.ip());
                Some(Box::new(Tls::Client(
                    TlsClientSession::new(cfg, name).ok()?,
                )))
            }
            _ => return None,
        };
        let socket =
            Socket::new(Domain::for_address(peer), Type::STREAM, Some(Protocol::TCP)).ok()?;
        socket.set_nonblocking(true).ok()?;
        let _ = socket.set_nodelay(true);
        match socket.connect(&peer.into()) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
            Err(_) => return None,
        }
        let sock: TcpStream = socket.into();
        let local = sock.local_addr().ok()?;
        let fd = sock.as_raw_fd();
        let mut conn = Conn {
            sock,
            transport,
            peer,
            local,
            framer: Framer::default(),
            rx: Vec::new(),
            tx: Vec::new(),
            writing: true,
            connecting: true,
            opened_to: Some(peer),
            since_ms: self.now_ms,
            last_rx_ms: self.now_ms,
            partial_since_ms: self.now_ms,
            tls,
            pongs_due: 0,
            ws: None,
        };
        // The ClientHello waits for the connect with what follows.
        if let Some(tls) = conn.tls.as_mut() {
            tls.take_outgoing(&mut conn.tx);
        }
        let id = self.conns.insert(conn).ok()?;
        let events = (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLOUT) as u32;
        if self.ctl(libc::EPOLL_CTL_ADD, fd, events, id.0).is_err() {
            self.conns.remove(id);
            return None;
        }
        self.outbound.insert((peer, transport), id);
        self.counts.opened += 1;
        Some(id)
    }

    /// Sends one SIP message to `id`: in a frame of its own on an open
    /// WebSocket (RFC 7118 §5), then as [`Streams::send_stream`] does.
    fn send(&mut self, id: ConnId, data: &[u8]) -> bool {
        let framed = self
            .conns
            .get(id)
            .and_then(|c| c.ws.as_ref())
            .is_some_and(|w| w.is_open());
        if !framed {
            return self.send_stream(id, data);
        }
        let mut frame = std::mem::take(&mut self.ws_frame);
        frame.clear();
        ws::frame_message(data, &mut frame);
        let sent = self.send_stream(id, &frame);
        self.ws_frame = frame;
        sent
    }

    /// Sends `data` (plaintext) to `id`: encrypted first on a TLS
    /// connection. False when the connection must close.
    fn send_stream(&mut self, id: ConnId, data: &[u8]) -> bool {
        let Some(tls) = self.conns.get_mut(id).and_then(|c| c.tls.as_mut()) else {
            return self.send_raw(id, data);
        };
        let mut cipher = std::mem::take(&mut self.cipher);
        cipher.clear();
        let ok = tls.send(data).is_ok();
        tls.take_outgoing(&mut cipher);
        let sent = self.send_raw(id, &cipher);
        self.cipher = cipher;
        ok && sent
    }

    /// Writes `data` to `id` as it is, or queues what the kernel does not
    /// take. False when the connection must close (an error, or over
    /// [`TX_LIMIT`]); true also when it is gone (counted).
    fn send_raw(&mut self, id: ConnId, data: &[u8]) -> bool {
        let Some(conn) = self.conns.get_mut(id) else {
            self.counts.sends_to_gone += 1;
            return true;
        };
        if !conn.tx.is_empty() || conn.connecting {
            if conn.tx.len() + data.len() > TX_LIMIT {
                self.counts.overflows += 1;
                return false;
            }
            conn.tx.extend_from_slice(data);
            return true;
        }
        let mut sent = 0;
        while sent < data.len() {
            match conn.sock.write(&data[sent..]) {
                Ok(0) => return false,
                Ok(n) => sent += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => return false,
            }
        }
        if sent == data.len() {
            return true;
        }
        conn.tx.extend_from_slice(&data[sent..]);
        let (fd, events) = (
            conn.sock.as_raw_fd(),
            (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLOUT) as u32,
        );
        conn.writing = true;
        self.ctl(libc::EPOLL_CTL_MOD, fd, events, id.0).is_ok()
    }

    /// Writes what `id` has waiting; false when it must close. The first
    /// call on a connection of ours is the end of its connect.
    fn write_out(&mut self, id: ConnId) -> bool {
        let Some(conn) = self.conns.get_mut(id) else {
            return true;
        };
        if conn.connecting {
            // Refused, unreachable, timed out: what waited is lost, as a
            // datagram to that address would be.
            if !matches!(conn.sock.take_error(), Ok(None)) {
                self.counts.connect_failed += 1;
                return false;
            }
            conn.connecting = false;
            conn.local = conn.sock.local_addr().unwrap_or(conn.local);
        }
        let mut sent = 0;
        while sent < conn.tx.len() {
            match conn.sock.write(&conn.tx[sent..]) {
                Ok(0) => return false,
                Ok(n) => sent += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => return false,
            }
        }
        conn.tx.drain(..sent);
        if !conn.tx.is_empty() || !conn.writing {
            return true;
        }
        conn.tx = Vec::new();
        conn.writing = false;
        let fd = conn.sock.as_raw_fd();
        let events = (libc::EPOLLIN | libc::EPOLLRDHUP) as u32;
        self.ctl(libc::EPOLL_CTL_MOD, fd, events, id.0).is_ok()
    }

    /// Closes `id`: the socket is closed (and so leaves the epoll set).
    fn close(&mut self, id: ConnId) {
        if let Some(conn) = self.conns.remove(id) {
            self.counts.closed += 1;
            if let Some(peer) = conn.opened_to {
                let key = (peer, conn.transport);
                if self.outbound.get(&key) == Some(&id) {
                    self.outbound.remove(&key);
                }
            }
        }
    }
}

/// Where the messages of connection `id` come from.
fn source_of(id: ConnId, conn: &Conn) -> Source {
    Source {
        peer: conn.peer,
        local: conn.local,
        transport: conn.transport,
        conn: Some(id),
    }
}

/// Frames and handles the messages at the front of `buf`, a connection's
/// bytes; returns how many bytes were used and what next. A ping is
/// answered here (RFC 5626 §3.5.1).
fn frame_all(
    id: ConnId,
    conn: &mut Conn,
    buf: &[u8],
    max_message: usize,
    handle: &mut impl FnMut(Received<'_>, &Source) -> bool,
) -> (usize, Next) {
    let src = source_of(id, conn);
    let mut at = 0;
    loop {
        let rest = &buf[at..];
        match conn.framer.next(rest, max_message) {
            Ok(Frame::Incomplete) => return (at, Next::Idle),
            Ok(Frame::Skip { len }) => at += len,
            Ok(Frame::Ping { len }) => {
                // Answered once the frames are handled (encrypted on TLS).
                conn.pongs_due += 1;
                at += len;
            }
            Ok(Frame::Message { len }) => {
                if !handle(Received::Message(&rest[..len]), &src) {
                    return (at, Next::Stalled);
                }
                at += len;
            }
            Err(e) => {
                handle(Received::Unframeable(rest, e), &src);
                return (at, Next::CloseAfterSend);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
        s.set_idle_timeout(Duration::from_secs(60));
        let (mut got, mut room) = (Vec::new(), usize::MAX);
        let mut quiet = TcpStream::connect(addr).unwrap();
        let mut slow = TcpStream::connect(addr).unwrap();
        slow.write_all(b"OPTIONS sip:x SIP/2.0\r\nVia: ").unwrap();
        poll_until(&mut s, &mut got, &mut room, |s, _| {
            s.conns.iter().any(|(_, c)| !c.rx.is_empty()) && s.open() == 2
        });
        // Half a minute on, the slow message is past MESSAGE_MS.
        s.tick(MESSAGE_MS - 1000);
        assert_eq!(s.open(), 2);
        s.tick(MESSAGE_MS + 1000);
        assert_eq!(s.open(), 1, "the unfinished message");
        quiet.write_all(MSG).unwrap();
        poll_until(&mut s, &mut got, &mut room, |_, g| !g.is_empty());
        // It spoke at MESSAGE_MS + 1000: silent from then on.
        s.tick(MESSAGE_MS + 60_000);
        assert_eq!(s.open(), 1);
        s.tick(MESSAGE_MS + 62_000);
        assert_eq!(s.open(), 0, "silent past the idle timeout");
        assert_eq!(s.take_counts().timed_out, 2);
        quiet
            .set_read_timeout(Some(Duration::from_secs(1)))
            .unwrap();
        let mut byte = [0u8; 1];
        assert!(matches!(quiet.read(&mut byte), Ok(0) | Err(_)));
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
