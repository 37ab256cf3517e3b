//! A connection's state, its TLS side, and the framing of its plaintext
//! into SIP messages (RFC 3261 §18.3, RFC 5626 §3.5.1 pings).

use std::net::{SocketAddr, TcpStream};

use super::ws::WsConn;
use super::Received;
use crate::transport::stream::{Frame, Framer};
use crate::transport::tls::{TlsClientSession, TlsError, TlsSession};
use crate::transport::{ConnId, Source, Transport};

pub(super) struct Conn {
    pub(super) sock: TcpStream,
    pub(super) transport: Transport,
    pub(super) peer: SocketAddr,
    pub(super) local: SocketAddr,
    pub(super) framer: Framer,
    /// Bytes of a partial message (or of whole ones left for want of a
    /// send slot), front first.
    pub(super) rx: Vec<u8>,
    /// Bytes the kernel has not taken yet.
    pub(super) tx: Vec<u8>,
    /// EPOLLOUT is armed (`tx` is not empty, or a connect is under way).
    pub(super) writing: bool,
    /// A connect of ours not yet complete: `tx` waits for it.
    pub(super) connecting: bool,
    /// When it was accepted or opened, in the shard's milliseconds.
    pub(super) since_ms: u64,
    /// When it last delivered bytes.
    pub(super) last_rx_ms: u64,
    /// It has delivered bytes (the first-byte deadline is met).
    pub(super) heard: bool,
    /// When `rx` last went from empty to holding a partial message.
    pub(super) partial_since_ms: u64,
    /// Its TLS state, for a connection accepted on a `tls:` listener:
    /// what is read is ciphertext, `rx` holds plaintext, and what is sent
    /// is encrypted before `tx`.
    pub(super) tls: Option<Box<Tls>>,
    /// Keep-alive pings framed and not yet answered.
    pub(super) pongs_due: usize,
    /// Its WebSocket state, for a connection accepted on a `ws:` or
    /// `wss:` listener: `rx` holds frames, not a byte stream of SIP.
    pub(super) ws: Option<Box<WsConn>>,
    /// The next hop this connection was opened to, as it is known in
    /// `Streams::outbound`; None for an accepted one.
    pub(super) opened_to: Option<SocketAddr>,
}

impl Conn {
    /// A connection just accepted or opened at `now_ms`, with nothing
    /// buffered, no TLS and no WebSocket yet.
    pub(super) fn new(
        sock: TcpStream,
        transport: Transport,
        peer: SocketAddr,
        local: SocketAddr,
        now_ms: u64,
    ) -> Conn {
        Conn {
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
            since_ms: now_ms,
            last_rx_ms: now_ms,
            heard: false,
            partial_since_ms: now_ms,
            tls: None,
            pongs_due: 0,
            ws: None,
        }
    }
}

/// A connection's TLS side: the server's for one we accepted, the
/// client's for one we opened to a next hop.
pub(super) enum Tls {
    Server(TlsSession),
    Client(TlsClientSession),
}

impl Tls {
    pub(super) fn receive(&mut self, cipher: &[u8], plain: &mut Vec<u8>) -> Result<(), TlsError> {
        match self {
            Tls::Server(s) => s.receive(cipher, plain),
            Tls::Client(c) => c.receive(cipher, plain),
        }
    }

    pub(super) fn send(&mut self, plain: &[u8]) -> Result<(), TlsError> {
        match self {
            Tls::Server(s) => s.send(plain),
            Tls::Client(c) => c.send(plain),
        }
    }

    pub(super) fn take_outgoing(&mut self, out: &mut Vec<u8>) {
        match self {
            Tls::Server(s) => s.take_outgoing(out),
            Tls::Client(c) => c.take_outgoing(out),
        }
    }

    pub(super) fn is_handshaking(&self) -> bool {
        match self {
            Tls::Server(s) => s.is_handshaking(),
            Tls::Client(c) => c.is_handshaking(),
        }
    }

    pub(super) fn peer_closed(&self) -> bool {
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
    /// Its bytes cannot be framed (§18.3, or a broken WebSocket
    /// handshake or frame stream): close it once its answers are sent,
    /// counted as unframeable.
    Unframeable,
}

/// Where the messages of connection `id` come from.
pub(super) fn source_of(id: ConnId, conn: &Conn) -> Source {
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
pub(super) fn frame_all(
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
                return (at, Next::Unframeable);
            }
        }
    }
}
